"""The deployed-facts lock (compiler/ir/deployed.py, generated/platform.lock.json): placement stays where it was
deployed, and R076-R078 refuse edits that would move franchises, a region's CIDR, a data volume or a formed Redis
cluster, positioned at the spec field that causes it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler import targets
from compiler.cli import main
from compiler.errors import SpecError
from compiler.ir import deployed
from compiler.pipeline import compile_file, compile_text
from compiler.resolve import allocate_shards
from tests.conftest import REPO

SPEC = REPO / "platform.yaml"
LOCK = REPO / "generated" / deployed.LOCK_FILE
CASES = ["two-region", "aws-only", "azure-only", "gcp-only"]


def reference_lock():
    return deployed.read(LOCK)


def edited(*pairs) -> str:
    text = SPEC.read_text()
    for old, new in pairs:
        assert text.count(old) >= 1, old
        text = text.replace(old, new, 1)
    return text


def position(text: str, needle: str, key: str, start: bool = False) -> tuple[int, int]:
    """1-based line and column of `key` on the first line holding (or, with `start`, starting with) `needle`."""
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith(needle) if start else needle in line:
            return i, line.index(key) + 1
    raise AssertionError(needle)


def refused(text: str, lock, code: str) -> list:
    with pytest.raises(SpecError) as exc:
        compile_text(text, "platform.yaml", lock=lock)
    found = [d for d in exc.value.diagnostics if d.code == code]
    assert found, [d.format() for d in exc.value.diagnostics]
    return found


def test_reference_compiles_clean_against_its_own_lock():
    compiled = compile_file(str(SPEC), strict=True, lock=reference_lock())
    assert compiled.warnings == []
    assert deployed.dumps(deployed.build(compiled.plan)) == LOCK.read_text()


@pytest.mark.parametrize("case", CASES)
def test_each_golden_case_reproduces_its_lock_from_it(case):
    """Compiling against the committed lock gives the same lock back, byte for byte (a lock from the fresh
    placement keeps it), and the golden's lock is the fresh one."""
    path = REPO / "tests/golden" / case / "generated" / deployed.LOCK_FILE
    lock = deployed.read(path)
    plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml"), lock=lock).plan
    assert deployed.dumps(deployed.build(plan)) == path.read_text()
    text = path.read_text()
    assert deployed.dumps(json.loads(text)) == text  # dumps is a fixed point of its own output


def test_no_lock_checks_nothing():
    text = edited(("cidr: 10.4.0.0/16", "cidr: 10.44.0.0/16"), ("franchises_per_shard: 1000", "franchises_per_shard: 500"))
    compile_text(text, "platform.yaml")  # no lock: a new repository, a test's spec


def test_capacity_growth_keeps_every_deployed_franchise_in_place():
    text = edited(("capacity_franchises: 20000", "capacity_franchises: 30000"))
    fresh = compile_text(text, "platform.yaml").plan
    lock = reference_lock()
    # without the lock, raising capacity re-homes most shards (ids 10,001-15,000 from EMEA to the Americas)
    assert sum(1 for s in fresh.shards if lock.shards.get(s.number, s.region) != s.region) >= 10
    plan = compile_text(text, "platform.yaml", lock=lock).plan
    now = {s.number: s.region for s in plan.shards}
    assert all(now[n] == region for n, region in lock.shards.items())
    assert sorted(now) == list(range(1, 31))
    # the 10 new shards go to the regions below their share: us-east-1 (22 % of 30: 7) gets 3 of them
    assert sorted(n for n, r in now.items() if r == "us-east-1") == [1, 2, 3, 4, 21, 22, 23]


def add_region(*more) -> str:
    return edited(("    traffic_share: 2\n", "    traffic_share: 1\n"),
                  ("regions:\n", "regions:\n  ap-east-9:\n    {geo: apac, cloud: gcp, cloud_region: asia-east2, "
                   "location: Hong Kong, role: standard,\n     traffic_share: 1, dr_partner: ap-southeast-1, "
                   "cidr: 10.12.0.0/16}\n"), *more)


def test_r076_a_region_added_without_capacity_gets_no_deployed_shard():
    text = add_region()
    [d] = refused(text, reference_lock(), "R076")
    assert (d.line, d.col) == position(text, "ap-east-9:", "ap-east-9")
    assert "region ap-east-9 gets no shard" in d.message and "raise sharding.capacity_franchises" in d.message
    plan = compile_text(add_region(("capacity_franchises: 20000", "capacity_franchises: 21000")), "platform.yaml",
                        lock=reference_lock()).plan
    assert [s.number for s in plan.region("ap-east-9").shards] == [21]
    assert all({s.number: s.region for s in plan.shards}[n] == r for n, r in reference_lock().shards.items())


def test_r076_franchises_per_shard_change_is_refused_at_the_field():
    text = edited(("franchises_per_shard: 1000", "franchises_per_shard: 500"))
    [d] = refused(text, reference_lock(), "R076")
    assert (d.file, (d.line, d.col)) == ("platform.yaml", position(text, "franchises_per_shard: 500", "franchises_per_shard"))
    assert "franchises_per_shard 1,000 was deployed; 500 changes every shard's franchise-id range" in d.message
    assert "docs/lock.md" in d.message and str(LOCK) in d.message


def test_r076_lowered_capacity_drops_deployed_shards():
    text = edited(("capacity_franchises: 20000", "capacity_franchises: 18000"))
    found = refused(text, reference_lock(), "R076")
    d = next(d for d in found if d.path == "sharding.capacity_franchises")
    assert (d.line, d.col) == position(text, "capacity_franchises: 18000", "capacity_franchises")
    assert "franchise ids 18,001-20,000 (shards 19-20) would lose their shard database" in d.message
    assert "raise capacity_franchises to at least 20,000" in d.message


def test_r076_a_removed_regions_franchises_would_move(tmp_path):
    data = json.loads(LOCK.read_text())
    data["franchises"][-1]["region"] = "ap-gone-1"  # deployed in a region the spec no longer declares
    path = tmp_path / deployed.LOCK_FILE
    path.write_text(deployed.dumps(data))
    [d] = refused(SPEC.read_text(), deployed.read(path), "R076")
    assert d.path == "regions" and (d.line, d.col) == position(SPEC.read_text(), "regions:", "regions")
    assert "franchise ids 19,001-20,000 (shard 20) deployed in ap-gone-1 would move to" in d.message
    assert "region ap-gone-1 is no longer declared" in d.message


def test_r076_an_unreadable_lock_is_positioned_at_the_lock(tmp_path):
    path = tmp_path / deployed.LOCK_FILE
    path.write_text('{"format": 1, "franchises": [')
    with pytest.raises(SpecError) as exc:
        deployed.read(path)
    [d] = exc.value.diagnostics
    assert (d.file, d.line, d.col, d.code) == (str(path), 1, 1, "R076")
    assert "cannot read the deployed-facts lock" in d.message and "git checkout" in d.message


def test_r077_a_deployed_regions_cidr_does_not_change():
    text = edited(("cidr: 10.4.0.0/16", "cidr: 10.44.0.0/16"))
    [d] = refused(text, reference_lock(), "R077")
    assert (d.path, (d.line, d.col)) == ("regions.eu-west-1.cidr", position(text, "cidr: 10.44.0.0/16", "cidr"))
    assert "region eu-west-1 was deployed with cidr 10.4.0.0/16; 10.44.0.0/16 would replace its network" in d.message


def test_r078_a_data_volume_never_shrinks():
    text = edited(("        disk_gib: 50\n", "        disk_gib: 10\n"))  # the Redis hosts' volume
    found = refused(text, reference_lock(), "R078")
    assert {d.path for d in found} == {"settings.datastores.redis.instance.disk_gib"}
    d = found[0]
    assert (d.line, d.col) == position(text, "disk_gib: 10", "disk_gib")
    assert "data volume was deployed at 50 GiB; it would shrink to 10 GiB" in d.message
    assert "GCP deletes and recreates the disk" in d.message


def test_r078_a_dr_partner_change_that_shrinks_another_regions_disks_points_at_the_partner():
    text = edited(("    dr_partner: ap-southeast-1\n    cidr: 10.11.0.0/16", "    dr_partner: ap-northeast-1\n    cidr: 10.11.0.0/16"))
    [d] = refused(text, reference_lock(), "R078")
    assert (d.path, (d.line, d.col)) == ("regions.ap-southeast-2.dr_partner",
                                         position(text, "    dr_partner: ap-northeast-1", "dr_partner", start=True))
    assert ("sixfb-ap-southeast-1-pg-2's data volume holds ap-southeast-2's DR standby cluster and was deployed at "
            "8,000 GiB; without it the volume would shrink to 6,000 GiB") in d.message


def test_r078_a_formed_redis_cluster_keeps_its_primaries():
    text = edited(("      primaries: 3", "      primaries: 4"))
    [d] = refused(text, reference_lock(), "R078")  # one line for every region whose cluster this moves
    assert (d.path, (d.line, d.col)) == ("settings.datastores.redis.primaries", position(text, "primaries: 4", "primaries"))
    assert "the Redis cluster was formed with 3 primaries; 4 would move existing Redis hosts" in d.message
    assert "(region ap-northeast-1, " in d.message


def test_r078_a_data_host_does_not_change_zone():
    text = edited(("    zones: 3", "    zones: 2"))
    found = refused(text, reference_lock(), "R078")
    d = found[0]
    assert (d.path, (d.line, d.col)) == ("settings.network.zones", position(text, "    zones: 2", "zones"))
    assert "was deployed in zone" in d.message and "replacing the host and its zonal data volume" in d.message


def shares_and_growth():
    return st.tuples(st.lists(st.integers(1, 50), min_size=1, max_size=12), st.integers(1, 40), st.integers(0, 40),
                     st.integers(0, 3))


@settings(max_examples=300, deadline=None)
@given(shares_and_growth(), st.randoms(use_true_random=False))
def test_placement_is_append_only_under_any_growth(case, rnd):
    """Whatever the shares, a lock from any earlier allocation keeps every shard's region when capacity grows,
    regions are added and shares change; every shard 1..N is placed exactly once."""
    shares, base, grow, added = case
    names = [f"r{i}" for i in range(len(shares))]

    def platform(shard_total, region_shares):
        return SimpleNamespace(
            sharding=SimpleNamespace(capacity_franchises=shard_total * 10, franchises_per_shard=10),
            regions={n: SimpleNamespace(traffic_share=s) for n, s in region_shares.items()})

    before = dict(zip(names, shares))
    if base < len(before):
        return  # R021 refuses the spec
    old = allocate_shards(platform(base, before))
    locked = {n: r for r, numbers in old.items() for n in numbers}
    after = dict(before)
    for r in after:
        after[r] = max(1, after[r] + rnd.randint(-5, 5))
    after.update({f"new{i}": rnd.randint(1, 20) for i in range(added)})
    total = base + grow
    new = allocate_shards(platform(total, after), locked)
    placed = sorted(n for numbers in new.values() for n in numbers)
    assert placed == list(range(1, total + 1))
    assert all(n in new[r] for n, r in locked.items())
    assert allocate_shards(platform(total, after), {n: r for r, ns in new.items() for n in ns}) == new


@pytest.fixture
def work(tmp_path, monkeypatch):
    shutil.copy(REPO / "tests/cases/two-region/platform.yaml", tmp_path / "platform.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(targets, "TARGETS", {"lock": "compiler.targets.lock"})
    return tmp_path


def run(*args):
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def test_generate_writes_the_lock_and_the_next_run_checks_it(work, capsys):
    assert run("generate") == 0
    lock = work / "generated" / deployed.LOCK_FILE
    written = lock.read_bytes()
    assert json.loads(written)["regions"]["use1"]["cidr"] == "10.20.0.0/16"
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("cidr: 10.20.0.0/16", "cidr: 10.30.0.0/16"))
    capsys.readouterr()
    assert run("generate") == 2
    err = capsys.readouterr().err
    assert "platform.yaml:30:" in err and "[R077] region use1 was deployed with cidr 10.20.0.0/16" in err
    assert lock.read_bytes() == written  # never written back by a refused run
    assert run("validate") == 2  # validate reads generated/ beside the spec
    assert run("generate", "--out", "elsewhere", "--docs-out", "elsewhere-docs") == 0  # another --out: its own lock
    assert run("generate", "--check", "--out", "elsewhere", "--docs-out", "elsewhere-docs") == 0


def _git(*args, cwd):
    import subprocess
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_diff_places_the_base_by_its_committed_lock_and_checks_the_working_side(tmp_path, monkeypatch, capsys):
    """Both sides of `platformc diff` read their lock: the base the one committed at the ref (a base placed by a
    lock that differs from the fresh placement has no phantom moves), the working side the one in generated/."""
    spec = tmp_path / "platform.yaml"
    text = (REPO / "tests/cases/two-region/platform.yaml").read_text()
    spec.write_text(text.replace("capacity_franchises: 3000", "capacity_franchises: 4000"))
    base = compile_text(text, "platform.yaml").plan  # deployed at 3,000: shards 1-4 use1, 5-6 euw1
    (tmp_path / "generated").mkdir()
    (tmp_path / "generated" / deployed.LOCK_FILE).write_text(deployed.dumps(deployed.build(base)))
    grown = compile_text(spec.read_text(), "platform.yaml", lock=deployed.read(tmp_path / "generated" / deployed.LOCK_FILE))
    assert {s.number: s.region for s in grown.plan.shards} == {1: "use1", 2: "use1", 3: "use1", 4: "use1", 5: "euw1",
                                                               6: "euw1", 7: "use1", 8: "euw1"}
    (tmp_path / "generated" / deployed.LOCK_FILE).write_text(deployed.dumps(deployed.build(grown.plan)))
    _git("init", "-q", cwd=tmp_path)
    _git("add", "-A", cwd=tmp_path)
    _git("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "spec", cwd=tmp_path)
    monkeypatch.chdir(tmp_path)
    assert run("diff", "--base", "HEAD") == 0
    assert capsys.readouterr().out == "no changes against HEAD\n"  # fresh placement would give use1 shards 1-5
    spec.write_text(spec.read_text().replace("cidr: 10.20.0.0/16", "cidr: 10.30.0.0/16"))
    assert run("diff", "--base", "HEAD") == 2
    assert "[R077] region use1 was deployed with cidr 10.20.0.0/16" in capsys.readouterr().err
