"""verify's fork across regions (compiler/verify/parallel.py): whole processes print the same bytes and exit with the
same code forked and serial, on the reference tree and on broken ones; PLATFORMC_JOBS=1 keeps a run serial; whatever
fails in the fork leaves the regions to a serial run, so an error surfaces as a serial run raises it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compiler import verify as verify_pkg
from compiler.verify import VerifyError, parallel, verify
from tests.conftest import REPO

REFERENCE = REPO / "generated"  # committed, and what the spec compiles to (make check)
TIMING = re.compile(rb" in \d+\.\d\d s\n\Z")  # the summary's wall time, the one part of the output that may differ


def _run(tree: Path, jobs: str) -> tuple[int, bytes, bytes]:
    # one hash seed for both runs: the fork must not change the output, whatever else the seed might
    env = {**os.environ, "PLATFORMC_JOBS": jobs, "PLATFORMC_SERVER": "0", "PYTHONHASHSEED": "0"}
    p = subprocess.run([sys.executable, "-m", "compiler", "verify", str(tree)], cwd=REPO, env=env, capture_output=True)
    return p.returncode, TIMING.sub(b" in _ s\n", p.stdout), p.stderr


def _same_forked_and_serial(tree: Path) -> tuple[int, bytes, bytes]:
    serial, forked = _run(tree, "1"), _run(tree, "2")
    assert forked == serial
    return serial


def test_the_reference_tree_reads_the_same_forked_and_serial():
    code, out, err = _same_forked_and_serial(REFERENCE)
    assert code == 0, out + err
    assert out.endswith(b", 0 broken in _ s\n") and not err


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


@pytest.fixture
def broken_tree(tmp_path) -> Path:
    """The reference with breaks spread over the regions (each process of a fork meets some): a Service port, a
    host firewall rule's port, a deleted decK file and a deleted region root."""
    tree = tmp_path / "gen"
    shutil.copytree(REFERENCE, tree)
    regions = sorted(p.stem for p in (tree / "connections").glob("*.json"))
    first, middle, last = regions[0], regions[len(regions) // 2], regions[-1]
    service = tree / "kubernetes" / first / "booking.yaml"
    text = service.read_text()
    port = re.search(r"kind: Service\n(?:.*\n)*?    port: (\d+)", text)
    service.write_text(text[:port.start(1)] + str(int(port.group(1)) + 1) + text[port.end(1):])
    (tree / "kong" / middle / "kong.yaml").unlink()
    (tree / "terraform" / "regions" / last / "main.tf").unlink()
    _edit(tree / "ansible" / "inventories" / regions[3] / "group_vars" / "elasticsearch.yml", "- 9200", "- 9201")
    return tree


def test_a_broken_tree_reads_the_same_forked_and_serial(broken_tree):
    code, out, err = _same_forked_and_serial(broken_tree)
    assert code == 1
    regions = sorted(p.stem for p in (broken_tree / "connections").glob("*.json"))
    named = [r for r in regions if f"/{r}/".encode() in out]
    assert len(named) >= 4, out  # findings in regions either process may have checked


def test_an_unreadable_connections_file_reads_the_same_forked_and_serial(tmp_path):
    tree = tmp_path / "gen"
    shutil.copytree(REFERENCE, tree)
    last = sorted((tree / "connections").glob("*.json"))[-1]
    last.write_text(last.read_text()[:-10])
    code, out, err = _same_forked_and_serial(tree)
    assert code == 2 and b"not JSON" in err


def test_jobs_1_keeps_verify_serial(monkeypatch):
    forks = []

    def fork():
        forks.append(1)
        raise OSError("no fork here")

    monkeypatch.setattr(os, "fork", fork)
    monkeypatch.setenv("PLATFORMC_JOBS", "1")
    serial = verify(REFERENCE)
    assert not forks
    monkeypatch.setenv("PLATFORMC_JOBS", "2")
    fallback = verify(REFERENCE)  # the fork is tried, fails, and the regions are checked here
    assert forks
    assert (fallback.summary(), fallback.broken) == (serial.summary(), serial.broken)


def test_outcomes_come_back_in_region_order_from_both_processes(monkeypatch):
    monkeypatch.setenv("PLATFORMC_JOBS", "2")
    names = [f"r{i}" for i in range(13)]
    out = parallel.map_regions(lambda region: (region, os.getpid()), names)
    assert [region for region, _ in out] == names
    assert {pid for _, pid in out[0::2]} == {os.getpid()}
    assert len({pid for _, pid in out[1::2]} - {os.getpid()}) == 1  # the child's


@pytest.mark.parametrize("failure", ["raises", "dies"])
def test_a_failing_child_leaves_the_regions_to_the_caller(monkeypatch, failure):
    monkeypatch.setenv("PLATFORMC_JOBS", "2")
    parent = os.getpid()

    def check(region):
        if os.getpid() != parent:
            if failure == "dies":
                os._exit(3)
            raise ValueError(region)
        return region

    assert parallel.map_regions(check, [f"r{i}" for i in range(12)]) is None


def test_a_failing_parent_leaves_the_regions_to_the_caller(monkeypatch):
    monkeypatch.setenv("PLATFORMC_JOBS", "2")

    def check(region):
        raise ValueError(region)

    assert parallel.map_regions(check, [f"r{i}" for i in range(12)]) is None


def test_an_error_surfaces_as_in_a_serial_run(monkeypatch):
    real = verify_pkg.check_region

    def check_region(tree, mods, region):
        if region == tree.regions[-1]:
            raise VerifyError(f"{region}: broken on purpose")
        return real(tree, mods, region)

    monkeypatch.setattr(verify_pkg, "check_region", check_region)
    for jobs in ("1", "2"):
        monkeypatch.setenv("PLATFORMC_JOBS", jobs)
        with pytest.raises(VerifyError, match="broken on purpose"):
            verify(REFERENCE)


def test_few_regions_stay_serial(monkeypatch):
    monkeypatch.delenv("PLATFORMC_JOBS", raising=False)
    assert parallel.map_regions(lambda r: r, ["a"] * (parallel.FORK_MIN_REGIONS - 1)) is None
