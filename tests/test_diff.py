"""platformc diff: fixture pairs (spec A, tests/cases/diff/base.yaml, against a patched spec B) give the expected report —
files per target and region, the changes in words, risk flags, affected deploy units, cost delta (goldens in
tests/cases/diff/<pair>.txt and .md; refresh with PLATFORMC_UPDATE_DIFF_GOLDEN=1 and review the diff) —
and `diff --base HEAD` on an unchanged tree says "no changes"."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from compiler import diff as d
from compiler.cli import main
from compiler.pipeline import compile_text

REPO = Path(__file__).resolve().parent.parent
BASE = (REPO / "tests/cases/diff/base.yaml").read_text()
GOLDEN = REPO / "tests/cases/diff"
UPDATE = os.environ.get("PLATFORMC_UPDATE_DIFF_GOLDEN") == "1"

PAIRS = {
    # scaling and rollout: HPA, Redis maxmemory, canary weights; no risk
    "scaling": [("replicas: {min: 3, max: 10}", "replicas: {min: 3, max: 16}"),
                ("redis: {maxmemory_mb: 2048}", "redis: {maxmemory_mb: 3072}"),
                ("stable_weight: 80, canary_weight: 20", "stable_weight: 50, canary_weight: 50")],
    # risky: PostgreSQL resized, a secret reference changed, the bastion opened to another range
    "risky": [("postgres:\n      instance: {vcpus: 4, memory_gib: 32, instance_types: {aws: r6i.xlarge,",
               "postgres:\n      instance: {vcpus: 8, memory_gib: 64, instance_types: {aws: r6i.2xlarge,"),
              ('admin_password: "aws-sm:acme/postgres/admin"', 'admin_password: "aws-sm:acme/postgres/admin-v2"'),
              ("  kubernetes:\n    min_nodes: 6", "  network: {admin_cidrs: [10.255.0.0/24, 192.0.2.0/24]}\n  kubernetes:\n    min_nodes: 6")],
    # a node pool grows: compute and the cost delta
    "nodes": [("        min_nodes: 5\n        max_nodes: 16", "        min_nodes: 8\n        max_nodes: 16")],
}


def _patched(patches) -> str:
    text = BASE
    for old, new in patches:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def base():
    return compile_text(BASE, "platform.yaml")


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_fixture_pair_matches_golden(base, pair):
    new = compile_text(_patched(PAIRS[pair]), "platform.yaml")
    report = d.diff(base, new, "spec A")
    for ext, render in (("txt", d.render_text), ("md", d.render_markdown)):
        got, path = render(report), GOLDEN / f"{pair}.{ext}"
        if UPDATE:
            path.write_text(got, "utf-8")
        assert path.exists(), f"{path} missing: PLATFORMC_UPDATE_DIFF_GOLDEN=1 pytest tests/test_diff.py"
        assert got == path.read_text("utf-8"), f"{path} differs (intended? PLATFORMC_UPDATE_DIFF_GOLDEN=1, review the diff)"


def test_risk_flags_and_affected_units(base):
    report = d.diff(base, compile_text(_patched(PAIRS["risky"]), "platform.yaml"), "A")
    risks = d.grouped(report.risks, report.regions)
    assert any("PostgreSQL resized (r6i.xlarge → r6i.2xlarge)" in r for r in risks)
    assert any("secret reference changed at datastores.postgres.admin_password" in r for r in risks)
    assert any("firewall opened wider: admins->bastion:22/tcp from 10.255.0.0/24, 192.0.2.0/24" in r for r in risks)
    assert "terraform/regions/use1" in report.affected and "ansible/inventories/use1" in report.affected
    scaling = d.diff(base, compile_text(_patched(PAIRS["scaling"]), "platform.yaml"), "A")
    assert scaling.risks == []
    words = d.grouped(scaling.changes, scaling.regions)
    assert "euw1: Redis maxmemory 2048 → 3072 MiB" in words
    assert "all 2 regions: orders: canary 80/20 → canary 50/50" in words
    assert "all 2 regions: orders HPA max 10 → 16" in words


def test_identical_specs_have_no_changes(base):
    report = d.diff(base, compile_text(BASE, "platform.yaml"), "A")
    assert report.empty and d.render_text(report) == "no changes against A\n"


def test_region_removed_and_shards_moved_are_risks(base):
    text = BASE.replace("traffic_share: 60, dr_partner: euw1", "traffic_share: 50, dr_partner: euw1") \
               .replace("    traffic_share: 40\n", "    traffic_share: 50\n") \
               .replace("workload_share: 60", "workload_share: 50").replace("workload_share: 40", "workload_share: 50") \
               .replace("traffic_share: 60, settings", "traffic_share: 50, settings").replace("traffic_share: 40, settings", "traffic_share: 50, settings")
    report = d.diff(base, compile_text(text, "platform.yaml"), "A")
    assert any("shard ranges moved" in r for _, r in report.risks), report.risks


def test_affected_units_from_paths():
    callers = {"terraform/modules/aws/network": {"terraform/regions/use1", "terraform/regions/use2"}}
    got = d.affected_units(["generated/terraform/modules/aws/network/main.tf", "kong/use1/kong.yaml",
                            "helm/use1/kong.values.yaml", "helm/use1/charts/secrets-user/templates/x.yaml",
                            "datastores/euw1/redis.conf", "ansible/roles/common/tasks/main.yml"], callers, ["use1", "euw1"])
    assert got == ["ansible/inventories/euw1", "ansible/inventories/use1", "helm/use1/kong", "helm/use1/secrets-user",
                   "kong/use1", "terraform/regions/use1", "terraform/regions/use2"]



def test_a_global_chart_affects_its_release_in_every_region():
    got = d.affected_units(["helm/global/charts/kong-home-routing/templates/configmap.yaml"], {}, ["use1", "euw1"])
    assert got == ["helm/euw1/kong-home-routing", "helm/use1/kong-home-routing"]


def run(*args) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def _git(*args, cwd):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_diff_base_head_on_an_unchanged_tree(tmp_path, monkeypatch, capsys):
    _git("init", "-q", cwd=tmp_path)
    (tmp_path / "platform.yaml").write_text(BASE)
    _git("add", "platform.yaml", cwd=tmp_path)
    _git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "spec", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run("diff", "--base", "HEAD") == 0
    assert capsys.readouterr().out == "no changes against HEAD\n"
    (tmp_path / "platform.yaml").write_text(_patched(PAIRS["scaling"]))
    assert run("diff", "--base", "HEAD", "--affected") == 0
    assert "kubernetes/use1" in capsys.readouterr().out.splitlines()
    assert sorted(os.listdir(tmp_path)) == [".git", "platform.yaml"]  # nothing checked out or left behind


def test_unknown_ref_is_a_usage_error(tmp_path, monkeypatch):
    _git("init", "-q", cwd=tmp_path)
    (tmp_path / "platform.yaml").write_text(BASE)
    monkeypatch.chdir(tmp_path)
    assert run("diff", "--base", "no-such-ref") == 2
