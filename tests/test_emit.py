"""Emission in two processes gives the same bytes as one, and a failure in the child surfaces."""

import os
from pathlib import Path

import pytest

from compiler import emit as emit_mod
from compiler import targets
from compiler.pipeline import compile_file
from tests import fake_target

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def plan(monkeypatch):
    monkeypatch.setattr(targets, "TARGETS", {"fake": "tests.fake_target", "monitoring": "compiler.targets.monitoring"})
    fake_target.FAIL["on"] = None
    yield compile_file(str(REPO / "platform.yaml")).plan
    fake_target.FAIL["on"] = None


def test_parallel_and_serial_emission_are_identical(plan, monkeypatch):
    jobs = emit_mod._jobs(plan, targets.select(None), list(plan.regions), True, True)
    assert len(jobs) >= emit_mod.PARALLEL_MIN_JOBS
    monkeypatch.setenv("PLATFORMC_JOBS", "2")  # the forked path really runs
    assert emit_mod._parallel(jobs, len(plan.regions))
    widened = []
    real_widen = emit_mod._widen
    monkeypatch.setattr(emit_mod, "_widen", lambda fd: (widened.append(fd), real_widen(fd)))
    parallel = emit_mod.emit(plan)
    assert len(widened) == 1  # the results pipe is widened (test_the_results_pipe_lets_the_child_run_ahead)
    monkeypatch.setenv("PLATFORMC_JOBS", "1")
    serial = emit_mod.emit(plan)
    assert parallel == serial
    assert list(parallel[0]["generated"]) == list(serial[0]["generated"])  # same order too


@pytest.mark.parametrize("job_index", [0, 1])  # one job for the parent, one for the child
def test_a_failure_on_either_side_is_raised(plan, job_index, monkeypatch):
    monkeypatch.setenv("PLATFORMC_JOBS", "2")
    jobs = emit_mod._jobs(plan, targets.select(None), list(plan.regions), True, True)
    fake_jobs = [j for j in jobs if j[1].startswith("fake/") and j[1] != "fake/global"]
    side = [j for j, child in zip(jobs, emit_mod._in_child(jobs)) if child == bool(job_index) and j in fake_jobs]
    fake_target.FAIL["on"] = side[0][1].split("/")[1]
    with pytest.raises(RuntimeError, match="injected failure"):
        emit_mod.emit(plan)


def test_the_child_takes_whole_regions(plan):
    """Each region's jobs are emitted in one process (its lazily built facts and YAML memo entries are not built
    twice): 4 regions in 7 in the child, the platform-wide jobs in the parent (which also writes)."""
    jobs = emit_mod._jobs(plan, targets.select(None), list(plan.regions), True, True)
    in_child = emit_mod._in_child(jobs)
    sides: dict = {}
    for (_, owner, _), child in zip(jobs, in_child):
        sides.setdefault(owner.split("/", 1)[1], set()).add(child)
    assert sides.pop("global") == {False}
    assert all(len(s) == 1 for s in sides.values())
    names = [r.name for r in plan.regions]
    assert [sides[n].pop() for n in names] == [i % 7 in (1, 3, 5, 6) for i in range(len(names))]
    assert 0 < sum(in_child) < len(jobs)


def test_the_default_is_the_measured_faster_choice(plan, monkeypatch):
    """Serial at 2 regions (a tie), forked from 12 (faster at 12, 24, 48 and 120: compiler/emit.py has the
    figures); PLATFORMC_JOBS overrides it."""
    monkeypatch.delenv("PLATFORMC_JOBS", raising=False)
    jobs = emit_mod._jobs(plan, targets.select(None), list(plan.regions), True, True)
    assert not emit_mod._parallel(jobs, 2)
    assert emit_mod._parallel(jobs, 12) == ((os.cpu_count() or 1) >= 2)
    assert emit_mod._parallel(jobs * 2, 24) == ((os.cpu_count() or 1) >= 2)
    assert emit_mod._parallel(jobs * 10, 120) == ((os.cpu_count() or 1) >= 2)
    monkeypatch.setenv("PLATFORMC_JOBS", "2")
    assert emit_mod._parallel(jobs, 2)
    monkeypatch.setenv("PLATFORMC_JOBS", "1")
    assert not emit_mod._parallel(jobs, 120)


@pytest.mark.skipif(not hasattr(__import__("fcntl"), "F_GETPIPE_SZ"), reason="pipe sizes are Linux's")
def test_the_results_pipe_lets_the_child_run_ahead():
    """The child's results pipe holds PIPE_BYTES, not the default 64 KiB: with one job's text the child would
    otherwise block whenever the parent is busy with its own jobs (emit._widen)."""
    import fcntl
    read_fd, write_fd = os.pipe()
    try:
        assert fcntl.fcntl(write_fd, fcntl.F_GETPIPE_SZ) < emit_mod.PIPE_BYTES
        emit_mod._widen(write_fd)
        assert fcntl.fcntl(write_fd, fcntl.F_GETPIPE_SZ) >= emit_mod.PIPE_BYTES
    finally:
        os.close(read_fd)
        os.close(write_fd)


def _reference_jobs(monkeypatch, block):
    monkeypatch.setattr(emit_mod, "REGION_BLOCK", block)
    plan = compile_file(str(REPO / "platform.yaml")).plan
    return plan, emit_mod._jobs(plan, targets.select(None), list(plan.regions), True, True)


def test_jobs_come_platform_wide_first_then_the_regions_block_by_block(monkeypatch):
    plan, jobs = _reference_jobs(monkeypatch, 5)
    owners = [owner for _, owner, _ in jobs]
    names = [r.name for r in plan.regions]
    platform_wide = [o for o in owners if o.endswith("/global")]
    assert owners[:len(platform_wide)] == platform_wide and "ansible/global" in platform_wide
    target_names = [m.NAME for m in targets.select(None) if hasattr(m, "emit_region")]
    expected = []
    for start in range(0, len(names), 5):
        block = names[start:start + 5]
        expected += [f"{t}/{n}" for t in target_names for n in block] + [f"docs/{n}" for n in block]
    assert owners[len(platform_wide):] == expected


def test_a_process_holds_one_blocks_facts_and_computes_each_once(monkeypatch):
    """Serial emission of the reference in blocks of 5: each region's deferred facts are computed once (the
    platform-wide jobs, first, read every region's data access; a region's DR partner, which runs its standby
    cluster, reads its wiring and data access: each is kept until its last reader is done), at most a block's
    regions and their DR partners hold them at a time, and none is held at the end."""
    plan, jobs = _reference_jobs(monkeypatch, 5)
    computed = []
    for r in plan.regions:
        for name in ("wiring", "identities", "secret_entries", "data_access"):
            later = r.__dict__[name]
            compute = later._compute
            later._compute = (lambda compute=compute, key=(r.name, name): (computed.append(key), compute())[1])
    holding = []
    real_run = emit_mod._run

    def run(job):
        out = real_run(job)
        holding.append(sum("wiring" in r.__dict__.get("_laters", {}) for r in plan.regions))
        return out
    monkeypatch.setattr(emit_mod, "_run", run)
    assert len(list(emit_mod._each(jobs))) == len(jobs)
    assert len(computed) == len(set(computed))  # none computed twice
    assert {n for n, _ in computed} == {r.name for r in plan.regions}
    assert 5 <= max(holding) <= 10
    assert not any("_laters" in r.__dict__ or "_derived" in r.__dict__ for r in plan.regions)


def test_emission_in_blocks_gives_the_same_files(monkeypatch):
    """Blocks of one region (each released as soon as it is done) and one block of all: the same bytes."""
    monkeypatch.setenv("PLATFORMC_JOBS", "1")
    monkeypatch.setattr(emit_mod, "REGION_BLOCK", 1)
    small = emit_mod.emit(compile_file(str(REPO / "platform.yaml")).plan)
    monkeypatch.setattr(emit_mod, "REGION_BLOCK", 1000)
    assert emit_mod.emit(compile_file(str(REPO / "platform.yaml")).plan) == small
