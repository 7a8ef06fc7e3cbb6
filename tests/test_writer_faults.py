"""Issue #15, "files lost or half-written": one regression test (or group) per defect.

Each ran red on the writer before the transactional one (items 1-8 of the issue, the silent adoption
of an identical foreign file, exit 2 for lock/foreign errors, file-system failures as internal errors)
and runs green after. They go through the CLI with the fake target, like tests/test_cli.py.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from compiler import targets, writer
from compiler.cli import main
from tests import fake_target

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests/cases/two-region/platform.yaml"
REFUSED, FS_FAILED = 3, 4  # README's exit codes for a refused write and a file-system failure


@pytest.fixture
def work(tmp_path, monkeypatch):
    """tmp/box/proj holds the two-region spec (cwd); tmp/box is where escaping paths would land."""
    proj = tmp_path / "box" / "proj"
    proj.mkdir(parents=True)
    shutil.copy(FIXTURE, proj / "platform.yaml")
    monkeypatch.chdir(proj)
    monkeypatch.setattr(targets, "TARGETS", {"fake": "tests.fake_target"})
    fake_target.FAIL["on"] = None
    SANDBOX["dir"] = str(tmp_path)
    return proj


@pytest.fixture
def faults():
    """Fault injection undone on its own: `monkeypatch.undo()` would also undo the chdir into the sandbox."""
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def errors(capsys) -> list[str]:
    """stderr without the spec's warnings (the fixture has two): what the run said went wrong."""
    return [x for x in capsys.readouterr().err.strip().splitlines() if ": warning [" not in x]


SANDBOX = {"dir": None}


def run(*args):
    cwd = os.getcwd()
    assert SANDBOX["dir"] and cwd.startswith(SANDBOX["dir"]), f"refusing to run platformc outside the sandbox ({cwd})"
    assert targets.TARGETS == {"fake": "tests.fake_target"}
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def snapshot(root: Path) -> dict:
    """Every file and symlink under root (the lock file aside), with its bytes or link target."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = str(p.relative_to(root))
        if p.name == writer.LOCK:
            continue
        if p.is_symlink():
            out[rel] = ("link", os.readlink(p))
        elif p.is_file():
            out[rel] = p.read_bytes()
    return out


def leftovers(*roots) -> list[str]:
    return [str(p) for r in roots if Path(r).exists() for p in Path(r).rglob(".platformc-*")
            if p.name not in (writer.MANIFEST, writer.LOCK)]


def bump(work: Path) -> None:
    """A spec edit that changes a few files and prunes one (recommend is disabled)."""
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("tag: 2.3.1", "tag: 2.4.0").replace("max: 10}", "max: 9}")
                    .replace("    recommend:\n", "    recommend:\n      enabled: false\n"))


def expected_after_bump(tmp_path: Path) -> dict:
    """What a clean generate of the bumped spec writes (computed in a fresh project)."""
    other = tmp_path / "expected"
    other.mkdir()
    shutil.copy(Path("platform.yaml"), other / "platform.yaml")
    cwd = os.getcwd()
    os.chdir(other)
    try:
        assert run("generate") == 0
    finally:
        os.chdir(cwd)
    return {"generated": snapshot(other / "generated"), "docs": snapshot(other / "docs")}


# 1. --out X --docs-out X, and roots inside one another -------------------------------------------

@pytest.mark.parametrize("out,docs_out", [("gen", "gen"), ("gen", "gen/docs"), ("docs/gen", "docs"),
                                          ("gen", "./gen/"), ("gen", "gen/../gen")])
def test_overlapping_roots_are_refused(work, capsys, out, docs_out):
    assert run("generate", "--out", out, "--docs-out", docs_out) == 2
    err = capsys.readouterr().err
    assert "overlap" in err and "internal error" not in err
    assert not (work / "gen").exists() and not (work / "docs").exists()


def test_same_root_twice_never_deletes_the_tree(work, capsys):
    assert run("generate") == 0
    before = snapshot(work)
    assert run("generate", "--out", "generated", "--docs-out", "generated") == 2
    assert snapshot(work) == before


# 2. manifest entries outside the root ------------------------------------------------------------

@pytest.mark.parametrize("entry", ["../../victim.txt", "ABS", "fake/../../../victim.txt", "./x", "a//b",
                                   ".platformc-staging-x/f", "link/victim.txt"])
def test_tampered_manifest_entries_are_refused_never_followed(work, capsys, entry):
    victim = work.parent / "victim.txt"
    victim.write_text("precious\n")
    assert run("generate") == 0
    (work / "generated/link").symlink_to(work.parent)  # a symlinked directory inside the root
    if entry == "ABS":
        entry = str(victim)
    manifest = work / "generated" / writer.MANIFEST
    data = json.loads(manifest.read_text())
    data["files"][entry] = "fake/use1"  # use1 is compiled on every run: its stale entries are pruned
    manifest.write_text(json.dumps(data))
    before = snapshot(work / "generated")
    capsys.readouterr()
    assert run("generate") == REFUSED
    lines = errors(capsys)
    err = "\n".join(lines)
    assert len(lines) == 1 and writer.MANIFEST in err and repr(entry) in err, err
    assert victim.read_text() == "precious\n"
    assert snapshot(work / "generated") == before


def test_malformed_manifest_is_one_clear_line(work, capsys):
    assert run("generate") == 0
    for bad in ("{not json", '{"files": ["a"]}', '{"files": {"a.txt": 3}}', "[]"):
        (work / "generated" / writer.MANIFEST).write_text(bad)
        capsys.readouterr()
        assert run("generate") == REFUSED, bad
        lines = errors(capsys)
        err = "\n".join(lines)
        assert len(lines) == 1 and "internal error" not in err and writer.MANIFEST in err, err


# 3. --out / and --out . (the project holding the spec, a git work tree) --------------------------

@pytest.fixture
def no_writes_outside(work, monkeypatch):
    """Any write outside the test's directory fails loudly instead of happening (old code wrote into /)."""
    box = str(work.parent.parent)
    real = {n: getattr(os, n) for n in ("mkdir", "open", "replace", "rename", "unlink", "rmdir")}

    def guard(name):
        def wrapped(path, *a, **kw):
            p = os.path.abspath(os.fspath(path))
            writing = name != "open" or (a and a[0] & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writing and not (p.startswith(box) or p.startswith("/proc") or "platformc-test-cache" in p
                                or p.startswith(os.environ.get("PLATFORMC_CACHE_DIR", "//"))):
                raise PermissionError(errno.EPERM, f"test guard: write outside the sandbox: {p}")
            return real[name](path, *a, **kw)
        return wrapped

    for n in real:
        monkeypatch.setattr(os, n, guard(n))


@pytest.mark.parametrize("flag", ["--out", "--docs-out"])
def test_out_slash_is_refused(work, capsys, no_writes_outside, flag):
    assert run("generate", flag, "/") == 2
    err = capsys.readouterr().err
    assert "refusing" in err and "'/'" in err and "internal error" not in err


@pytest.mark.parametrize("out", [".", "..", "./", str(Path.home())])
def test_out_holding_the_spec_or_home_is_refused(work, capsys, no_writes_outside, out):
    before = snapshot(work.parent)
    assert run("generate", "--out", out) == 2
    assert "refusing" in capsys.readouterr().err
    assert snapshot(work.parent) == before


def test_out_holding_a_git_work_tree_is_refused(work, capsys):
    shutil.move(str(work / "platform.yaml"), work.parent / "platform.yaml")
    (work / "src").mkdir()
    (work / ".git").mkdir()
    assert run("generate", "--spec", "../platform.yaml", "--out", ".") == 2
    assert ".git" in capsys.readouterr().err
    assert sorted(os.listdir(work)) == [".git", "src"]


# 4. docs/ checked, locked and staged before generated/ is touched -------------------------------

def test_foreign_docs_file_leaves_generated_untouched(work, capsys):
    assert run("generate") == 0
    bump(work)
    before = snapshot(work / "generated")
    (work / "docs/overview.md").unlink()
    (work / "docs/overview.md").write_text("my own overview\n")  # not platformc's any more...
    data = json.loads((work / "docs" / writer.MANIFEST).read_text())
    del data["files"]["overview.md"]
    (work / "docs" / writer.MANIFEST).write_text(json.dumps(data))  # ...and the manifest says so
    capsys.readouterr()
    assert run("generate") == REFUSED
    assert "docs/overview.md" in capsys.readouterr().err
    assert snapshot(work / "generated") == before
    assert (work / "docs/overview.md").read_text() == "my own overview\n"


def test_foreign_file_in_a_new_docs_root_writes_nothing(work, capsys):
    (work / "docs").mkdir()
    (work / "docs/overview.md").write_text("hand written\n")
    assert run("generate") == REFUSED
    assert "did not write it" in capsys.readouterr().err
    assert not (work / "generated").exists() or snapshot(work / "generated") == {}
    assert snapshot(work / "docs") == {"overview.md": b"hand written\n"}


def test_docs_lock_held_leaves_generated_untouched(work, capsys):
    assert run("generate") == 0
    bump(work)
    before = snapshot(work)
    fd = os.open(work / "docs" / writer.LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another run holds docs/
    try:
        capsys.readouterr()
        assert run("generate") == REFUSED
        assert "another platformc run holds" in capsys.readouterr().err
    finally:
        os.close(fd)
    assert snapshot(work) == before


def _enospc_under(root: Path, monkeypatch):
    """Every write of file data under root fails with ENOSPC (os.write, Path.write_bytes / write_text)."""
    root = str(root.resolve())
    real_write = os.write
    real_wb, real_wt = Path.write_bytes, Path.write_text

    def where(fd):
        try:
            return os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return ""

    def write(fd, data):
        if where(fd).startswith(root + "/"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    def wb(self, data):
        if str(self.resolve()).startswith(root + "/"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_wb(self, data)

    def wt(self, data, *a, **kw):
        if str(self.resolve()).startswith(root + "/"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_wt(self, data, *a, **kw)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(Path, "write_bytes", wb)
    monkeypatch.setattr(Path, "write_text", wt)


def test_full_disk_under_docs_leaves_everything_as_it_was(work, capsys, faults):
    assert run("generate") == 0
    bump(work)
    before = snapshot(work)
    _enospc_under(work / "docs", faults)
    capsys.readouterr()
    assert run("generate") == FS_FAILED
    lines = errors(capsys)
    err = "\n".join(lines)
    assert len(lines) == 1 and "No space left on device" in err and "internal error" not in err, err
    faults.undo()
    assert snapshot(work) == before and not leftovers(work / "generated", work / "docs")
    assert run("generate") == 0  # the next run (disk freed) completes it
    assert not leftovers(work / "generated", work / "docs")


@pytest.fixture
def tiny_tmpfs(work):
    """A real 1 MiB tmpfs mounted at work/docs (root only); unmounted after the test."""
    mnt = work / "docs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(disk: Path) -> Path:
    """A foreign file that leaves no room on the disk."""
    filler = disk / "filler.bin"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"x" * 4096)
        except OSError:
            pass
    return filler


def test_real_full_disk_under_docs(work, capsys, tiny_tmpfs):
    filler = _fill(tiny_tmpfs)
    assert run("generate") == FS_FAILED
    err = "\n".join(errors(capsys))
    assert "No space left on device" in err and "internal error" not in err, err
    assert not (work / "generated").exists() or snapshot(work / "generated") == {}
    assert sorted(os.listdir(tiny_tmpfs)) in (["filler.bin"], [".platformc.lock", "filler.bin"])
    filler.unlink()
    assert run("generate") == 0 and (tiny_tmpfs / "overview.md").exists()


# 5. an error during the rename phase ------------------------------------------------------------

@pytest.mark.parametrize("nth", [1, 2, 3, 4])
def test_rename_failure_midway_leaves_the_tree_as_it_was(work, capsys, faults, tmp_path, nth):
    assert run("generate") == 0
    bump(work)
    before = snapshot(work)
    real = os.replace
    calls = {"n": 0}

    def flaky(src, dst, **kw):
        if ".platformc-journal" not in os.fspath(dst):  # the journal's own writes are not the tree's renames
            calls["n"] += 1
            if calls["n"] == nth:
                raise OSError(errno.EACCES, "Permission denied", os.fspath(dst))
        return real(src, dst, **kw)

    faults.setattr(os, "replace", flaky)
    capsys.readouterr()
    assert run("generate") == FS_FAILED
    lines = errors(capsys)
    err = "\n".join(lines)
    assert len(lines) == 1 and "Permission denied" in err and "internal error" not in err, err
    faults.undo()
    assert snapshot(work) == before and not leftovers(work / "generated", work / "docs")
    assert run("generate", "--check") == 1  # not "up to date": nothing half-applied hides the change
    assert run("generate") == 0
    expected = expected_after_bump(tmp_path)
    assert snapshot(work / "generated") == expected["generated"]
    assert snapshot(work / "docs") == expected["docs"]


def test_directory_where_a_file_is_to_be_pruned(work, capsys):
    assert run("generate") == 0
    doomed = work / "generated/fake/use1/services/recommend.yaml"
    doomed.unlink()
    doomed.mkdir()
    (doomed / "keep.txt").write_text("mine\n")
    bump(work)
    before = snapshot(work)
    capsys.readouterr()
    assert run("generate") == REFUSED
    lines = errors(capsys)
    err = "\n".join(lines)
    assert "recommend.yaml" in err and "directory" in err and len(lines) == 1, err
    assert snapshot(work) == before


def test_pending_commit_is_rolled_forward_by_the_next_run(work, faults, tmp_path):
    """A commit that stopped half-way (the process died between two renames) is finished next time."""
    assert run("generate") == 0
    bump(work)
    real = os.replace
    calls = {"n": 0}

    class Died(BaseException):
        pass

    def dies(src, dst, **kw):
        if ".platformc-journal" not in os.fspath(dst):
            calls["n"] += 1
            if calls["n"] == 3:
                raise Died()  # not an Exception: no rollback runs, as with kill -9
        return real(src, dst, **kw)

    faults.setattr(os, "replace", dies)
    with pytest.raises(Died):
        main(["--debug", "generate"])
    faults.undo()
    assert run("generate") == 0
    expected = expected_after_bump(tmp_path)
    assert snapshot(work / "generated") == expected["generated"]
    assert snapshot(work / "docs") == expected["docs"]
    assert not leftovers(work / "generated", work / "docs")


# 6. kill -9 during the write --------------------------------------------------------------------

KILLER = r"""
import os, signal, sys
sys.path.insert(0, {repo!r})
from compiler import targets
targets.TARGETS = {{"fake": "tests.fake_target"}}
real, n = os.{fn}, {{"calls": 0}}
def killing(*a, **kw):
    if {cond}:
        n["calls"] += 1
    if n["calls"] == {nth}:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*a, **kw)
os.{fn} = killing
from compiler.cli import main
main(["generate"])
"""


def _killed_run(work: Path, fn: str, nth: int, cond: str = "True") -> int:
    script = KILLER.format(repo=str(REPO), fn=fn, nth=nth, cond=cond)
    env = dict(os.environ, PLATFORMC_JOBS="1")
    return subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True).returncode


@pytest.mark.parametrize("fn,nth", [("replace", 1), ("replace", 2), ("replace", 4), ("replace", 7),
                                    ("mkdir", 2), ("rename", 1), ("unlink", 1)])
def test_kill_9_mid_write_is_recovered_by_the_next_run(work, tmp_path, fn, nth):
    assert run("generate") == 0
    bump(work)
    rc = _killed_run(work, fn, nth)
    assert rc in (-signal.SIGKILL, 0), rc
    assert run("generate") == 0
    assert not leftovers(work / "generated", work / "docs")
    expected = expected_after_bump(tmp_path)
    assert snapshot(work / "generated") == expected["generated"]
    assert snapshot(work / "docs") == expected["docs"]


@pytest.mark.parametrize("nth", [1, 3, 6])
def test_kill_9_during_a_first_write_leaves_no_orphans(work, tmp_path, nth):
    cond = "'/generated/fake/' in str(a[0]) and a[1] & os.O_CREAT"  # the writer creating an output file
    rc = _killed_run(work, "open", nth, cond)
    assert rc in (-signal.SIGKILL, 0), rc
    assert run("generate") == 0
    assert not leftovers(work / "generated", work / "docs")
    manifest = json.loads((work / "generated" / writer.MANIFEST).read_text())["files"]
    on_disk = {k for k in snapshot(work / "generated") if k != writer.MANIFEST}
    assert on_disk == set(manifest)  # every file is one platformc can prove it wrote


@pytest.mark.parametrize("fn,nth", [("replace", 1), ("replace", 3), ("replace", 9), ("mkdir", 1), ("mkdir", 4)])
def test_kill_9_during_a_first_write_is_finished_or_undone(work, fn, nth):
    """generate stages every file of an empty root while it plans, then renames them into place: a kill at any
    rename or directory creation leaves a journal (or only staging), and the next run ends with exactly the
    files its manifest lists."""
    rc = _killed_run(work, fn, nth)
    assert rc in (-signal.SIGKILL, 0), rc
    assert run("generate") == 0
    assert not leftovers(work / "generated", work / "docs")
    for root in ("generated", "docs"):
        manifest = json.loads((work / root / writer.MANIFEST).read_text())["files"]
        on_disk = {k for k in snapshot(work / root) if k != writer.MANIFEST}
        assert on_disk == set(manifest)


def test_staging_killed_before_the_journal_is_swept(work):
    """Killed while files were being staged (before any journal): the staging directory is all there is, and
    the next run sweeps it and writes the tree."""
    cond = "'.platformc-staging-' in str(a[0]) and str(a[0]).endswith('n3')"
    # the staged bytes are written through os.open (the writer's per-file loop) or, were that to change, io.open
    # (pathlib's write_bytes): the kill comes on opening the fourth staged file either way
    both = ("os.open = killing\nimport io, pathlib\nreal_io = io.open\n"
            "def killing_io(*a, **kw):\n    killing_check(*a)\n    return real_io(*a, **kw)\n"
            "io.open = pathlib.io.open = killing_io")
    script = (KILLER.replace("def killing(*a, **kw):\n", "def killing_check(*a):\n")
              .replace("    return real(*a, **kw)\n", "def killing(*a, **kw):\n    killing_check(*a)\n    return real(*a, **kw)\n")
              .replace("os.{fn} = killing", both).format(repo=str(REPO), fn="open", nth=1, cond=cond))
    env = dict(os.environ, PLATFORMC_JOBS="1")
    rc = subprocess.run([sys.executable, "-c", script], cwd=work, env=env, capture_output=True).returncode
    assert rc == -signal.SIGKILL, rc
    staged = [p for p in (work / "generated").iterdir() if p.name.startswith(writer.STAGING_PREFIX)]
    assert staged and not (work / "generated" / writer.JOURNAL).exists()
    assert sorted(p.name for p in (work / "generated").iterdir()) == sorted([writer.LOCK, staged[0].name])
    assert run("generate") == 0
    assert not leftovers(work / "generated", work / "docs")
    manifest = json.loads((work / "generated" / writer.MANIFEST).read_text())["files"]
    assert {k for k in snapshot(work / "generated") if k != writer.MANIFEST} == set(manifest)


def test_stale_staging_dir_is_swept(work):
    assert run("generate") == 0
    stale = work / "generated/.platformc-staging-deadbeef"
    (stale / "sub").mkdir(parents=True)
    (stale / "sub/f").write_text("half\n")
    assert run("generate") == 0  # even when the inputs are unchanged (the no-op path)
    assert not stale.exists()


# 7. `platformc schema` is atomic ----------------------------------------------------------------

def test_schema_write_is_atomic_on_a_full_disk(work, capsys, faults):
    out = work / "s.json"
    out.write_text("previous schema\n")
    _enospc_under(work, faults)
    assert run("schema", "--out", "s.json") == FS_FAILED
    lines = errors(capsys)
    err = "\n".join(lines)
    assert len(lines) == 1 and "No space left on device" in err and "internal error" not in err, err
    faults.undo()
    assert out.read_text() == "previous schema\n"
    assert sorted(os.listdir(work)) == ["platform.yaml", "s.json"]


def test_schema_on_a_real_full_disk(work, capsys, tiny_tmpfs):
    out = tiny_tmpfs / "s.json"
    out.write_text("previous schema\n")
    filler = _fill(tiny_tmpfs)
    assert run("schema", "--out", str(out)) == FS_FAILED  # the old code truncated s.json here
    assert out.read_text() == "previous schema\n" and sorted(os.listdir(tiny_tmpfs)) == ["filler.bin", "s.json"]
    filler.unlink()
    assert run("schema", "--out", str(out)) == 0 and out.read_text().startswith("{")


# 8. the no-op fingerprint is of the bytes compiled ------------------------------------------------

def test_spec_edited_during_a_run_is_not_frozen(work, faults):
    from compiler import emit as emit_mod
    real_stream = emit_mod.stream
    spec = work / "platform.yaml"

    def emit_then_edit(*a, **kw):
        yield from real_stream(*a, **kw)
        spec.write_text(spec.read_text().replace("max: 10}", "max: 9}"))  # saved while we compile

    faults.setattr(emit_mod, "stream", emit_then_edit)
    assert run("generate") == 0
    faults.undo()
    orders = work / "generated/fake/use1/services/orders.yaml"
    assert "replicas: 10" in orders.read_text()  # this run compiled the bytes it read
    assert run("generate") == 0
    assert "replicas: 9" in orders.read_text()  # the next one sees the edit


def _pipe_run(work: Path, data: bytes) -> subprocess.CompletedProcess:
    script = ("import sys; sys.path.insert(0, %r)\nfrom compiler import targets\n"
              "targets.TARGETS = {'fake': 'tests.fake_target'}\nfrom compiler.cli import main\n"
              "main(['generate', '--spec', '/dev/stdin'])\n" % str(REPO))
    return subprocess.run([sys.executable, "-c", script], cwd=work, input=data, capture_output=True)


def test_spec_from_a_pipe_works_every_time(work):
    data = (work / "platform.yaml").read_bytes()
    for _ in range(3):
        done = _pipe_run(work, data)
        assert done.returncode == 0, done.stderr.decode()
    assert (work / "generated/fake/use1/region.yaml").exists()
    changed = data.replace(b"max: 10}", b"max: 9}")
    assert _pipe_run(work, changed).returncode == 0
    assert "replicas: 9" in (work / "generated/fake/use1/services/orders.yaml").read_text()


# Never adopt a file platformc cannot prove it wrote; exit codes -------------------------------------

def test_identical_foreign_file_is_refused_not_adopted(work, capsys):
    assert run("generate") == 0
    good = (work / "generated/fake/use1/region.yaml").read_bytes()
    shutil.rmtree(work / "generated")
    (work / "generated/fake/use1").mkdir(parents=True)
    (work / "generated/fake/use1/region.yaml").write_bytes(good)  # someone's copy, same bytes
    capsys.readouterr()
    assert run("generate") == REFUSED
    err = capsys.readouterr().err
    assert "did not write it" in err and "region.yaml" in err
    assert snapshot(work / "generated") == {"fake/use1/region.yaml": good}


def test_lock_held_exits_with_its_own_code(work, capsys):
    (work / "generated").mkdir()
    fd = os.open(work / "generated" / writer.LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        assert run("generate") == REFUSED
    finally:
        os.close(fd)


# File-system failures: one clear line, never "internal error" -------------------------------------

def _one_clear_line(capsys) -> str:
    lines = errors(capsys)
    err = "\n".join(lines)
    assert len(lines) == 1 and "internal error" not in err and "Traceback" not in err, err
    return err


def test_dangling_symlink_at_an_output_path(work, capsys):
    (work / "generated/fake/use1").mkdir(parents=True)
    (work / "generated/fake/use1/region.yaml").symlink_to(work / "nowhere")
    assert run("generate") == REFUSED
    assert "symbolic link" in _one_clear_line(capsys)
    assert os.readlink(work / "generated/fake/use1/region.yaml") == str(work / "nowhere")


def test_parent_is_a_file(work, capsys):
    (work / "generated").mkdir()
    (work / "generated/fake").write_text("a file where a directory goes\n")
    assert run("generate") == REFUSED
    assert "generated/fake" in _one_clear_line(capsys)
    assert (work / "generated/fake").read_text() == "a file where a directory goes\n"


def test_out_is_a_file(work, capsys):
    (work / "out.txt").write_text("x\n")
    assert run("generate", "--out", "out.txt/sub") in (2, REFUSED)
    assert "out.txt" in _one_clear_line(capsys)


def test_read_only_file_system(work, capsys, faults):
    assert run("generate") == 0
    bump(work)
    before = snapshot(work)
    real_mkdir, real_open = os.mkdir, os.open

    def ro_open(path, flags, *a, **kw):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and str(work / "generated") in os.path.abspath(path) \
                and not str(path).endswith(writer.LOCK):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_open(path, flags, *a, **kw)

    def ro_mkdir(path, *a, **kw):
        if str(work / "generated") in os.path.abspath(path):
            raise OSError(errno.EROFS, "Read-only file system", os.fspath(path))
        return real_mkdir(path, *a, **kw)

    faults.setattr(os, "open", ro_open)
    faults.setattr(os, "mkdir", ro_mkdir)
    faults.setattr(Path, "write_bytes", lambda self, d: ro_open(self, os.O_WRONLY | os.O_CREAT))
    capsys.readouterr()
    assert run("generate") == FS_FAILED
    assert "Read-only file system" in _one_clear_line(capsys)
    faults.undo()
    assert snapshot(work) == before


def test_a_removed_region_is_pruned_by_a_full_run(work):
    """Files of an owner no longer compiled (a region removed from the spec) are stale in a full run."""
    assert run("generate") == 0
    manifest = work / "generated" / writer.MANIFEST
    data = json.loads(manifest.read_text())
    (work / "generated/fake/gone").mkdir()
    (work / "generated/fake/gone/region.yaml").write_text("old region\n")
    data["files"]["fake/gone/region.yaml"] = "fake/gone"  # as a run before the region was removed left it,
    data["sha256"]["fake/gone/region.yaml"] = hashlib.sha256(b"old region\n").hexdigest()  # with the bytes it wrote
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    assert run("generate", "--check") == 1
    assert run("generate") == 0
    assert not (work / "generated/fake/gone").exists()
    assert "fake/gone" not in manifest.read_text()


def test_target_run_prunes_only_that_targets_files(work):
    """--target prunes the stale files of the targets it compiled (a removed region's too), nothing else."""
    assert run("generate") == 0
    manifest = work / "generated" / writer.MANIFEST
    data = json.loads(manifest.read_text())
    for owner in ("fake/gone", "other/gone"):
        d = work / "generated" / owner
        d.mkdir(parents=True)
        (d / "f.yaml").write_text("old\n")
        data["files"][f"{owner}/f.yaml"] = owner
        data["sha256"][f"{owner}/f.yaml"] = hashlib.sha256(b"old\n").hexdigest()  # the bytes that run wrote
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    assert run("generate", "--target", "fake") == 0
    assert not (work / "generated/fake/gone").exists()
    assert (work / "generated/other/gone/f.yaml").read_text() == "old\n"  # another target's: untouched


def test_check_reports_an_interrupted_write(work, capsys):
    assert run("generate") == 0
    (work / "generated" / writer.JOURNAL).write_text("{}")  # as a killed run would leave it (damaged here)
    capsys.readouterr()
    assert run("generate", "--check") == 1
    assert "interrupted" in capsys.readouterr().err
    assert run("generate") == REFUSED  # a damaged journal is not guessed at
    assert "damaged" in capsys.readouterr().err
