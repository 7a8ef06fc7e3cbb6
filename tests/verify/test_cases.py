"""Every case under tests/cases compiles to a tree in which verify finds every connection open."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from compiler.cli import cli
from compiler.verify import verify
from tests.conftest import REPO

CASES = sorted(p.name for p in (REPO / "tests" / "cases").iterdir() if (p / "platform.yaml").exists())


@pytest.mark.parametrize("case", CASES)
def test_verify_proves_every_connection_of_each_case(case, tmp_path):
    gen = tmp_path / "generated"
    result = CliRunner().invoke(cli, ["generate", "--spec", str(REPO / "tests/cases" / case / "platform.yaml"),
                                      "--out", str(gen), "--docs-out", str(tmp_path / "docs")])
    assert result.exit_code == 0, result.output
    report = verify(gen)
    assert not report.broken, "\n".join(b.format() for b in report.broken)
    assert report.connections > 0 and report.checks > report.connections
    # every layer a connection names was proved by a checker (pg_hba only where PostgreSQL is self-managed)
    import json
    named = {layer for f in (gen / "connections").glob("*.json")
             for c in json.loads(f.read_text())["connections"] for layer in c["layers"]}
    assert {"networkpolicy-egress", "networkpolicy-ingress", "kong", "cloud-firewall", "nftables",
            "cdn", "prometheus"} <= named
    assert named <= report.layers, f"named but never proved: {sorted(named - report.layers)}"


def test_the_committed_tree_is_proved():
    report = verify(REPO / "generated")
    assert not report.broken, "\n".join(b.format() for b in report.broken[:20])
