"""Every case, every region: the compiled output equals the golden files byte for byte."""

import pytest

from tests import golden_harness as gh

PARAMS = [(case, scope) for case in gh.cases() for scope in gh.scopes(case)]


@pytest.mark.parametrize("case,scope", PARAMS, ids=[f"{c}-{s}" for c, s in PARAMS])
def test_golden(case, scope):
    report = gh.compare(case, scope)
    assert not report, f"{case}/{scope} differs from tests/golden ({gh.UPDATE_HINT}):\n" + "\n".join(report)
