"""Shard allocation (compiler/resolve.py): exactly ceil(capacity / per_shard) shards, at least one per region,
in proportion to traffic; R021 says what to change."""

from __future__ import annotations

import math
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.errors import SpecError
from compiler.pipeline import compile_file, compile_text
from compiler.resolve import apportion
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.one_of(st.integers(1, 100), st.floats(0.01, 100)), min_size=1, max_size=150),
       st.integers(1, 400_000), st.integers(1, 5000))
def test_apportion_is_exact_and_proportional(shares, capacity, per_shard):
    total = math.ceil(capacity / per_shard)
    names = {f"r{i}": s for i, s in enumerate(shares)}
    if total < len(names):
        return  # R021 refuses the spec before the resolver runs
    count = apportion(total, names)
    assert list(count) == list(names)
    assert sum(count.values()) == total
    whole = sum(shares)
    for n, s in names.items():
        exact = total * s / whole
        assert count[n] >= 1
        assert count[n] <= max(1, math.ceil(exact - 1e-9)), (n, exact, count[n])  # never above its rounded-up share
        if all(total * x / whole >= 1 for x in shares):  # no region lifted to the minimum: plain largest remainder
            assert abs(count[n] - exact) < 1


def test_apportion_keeps_the_reference_allocation():
    shares = {"a": 22, "b": 14, "c": 8, "d": 6, "e": 12, "f": 8, "g": 6, "h": 4, "i": 7, "j": 5, "k": 6, "l": 2}
    assert list(apportion(20, shares).values()) == [4, 3, 2, 1, 2, 2, 1, 1, 1, 1, 1, 1]


def test_120_regions_get_exactly_the_capacitys_shards(tmp_path):
    """120 regions, capacity_franchises 120,000 at 1,000 per shard: 120 shards, ids up to 120,000 (it allocated 130)."""
    import scale
    spec = scale.write(tmp_path, 120)
    plan = compile_file(str(spec)).plan
    assert plan.spec.sharding.capacity_franchises == 120_000
    assert [s.number for s in plan.shards] == list(range(1, 121))
    assert all(len(r.shards) == 1 for r in plan.regions)
    assert max(s.last_id for s in plan.shards) == 120_000


def test_r021_says_what_to_change():
    text = (REPO / "tests/cases/two-region/platform.yaml").read_text().replace(
        "capacity_franchises: 3000", "capacity_franchises: 500")
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    message = str(exc.value)
    assert "[R021]" in message
    assert "raise sharding.capacity_franchises to at least 1,000 (2 x franchises_per_shard 500)" in message
    assert "or lower sharding.franchises_per_shard to 250 or less" in message
