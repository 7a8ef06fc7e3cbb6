"""The writer: atomic, minimal, pruning only its own files, never touching anyone else's."""

import os
import threading

import pytest

from compiler import writer
from compiler.errors import WriteError


def files(**kw):
    return {path.replace("__", "/"): ("t/" + owner, text) for path, (owner, text) in kw.items()}


def test_first_write_then_noop(tmp_path):
    out = {"a/x.txt": ("t/r1", "x\n"), "b.txt": ("t/global", "b\n")}
    writer.apply(writer.plan_write(tmp_path, out, None))
    assert (tmp_path / "a/x.txt").read_text() == "x\n"
    assert (tmp_path / writer.MANIFEST).exists()
    mtime = (tmp_path / "a/x.txt").stat().st_mtime_ns
    plan = writer.plan_write(tmp_path, out, None)
    assert not plan.stale and plan.unchanged == 2
    writer.apply(plan)
    assert (tmp_path / "a/x.txt").stat().st_mtime_ns == mtime  # unchanged files are not rewritten


def test_prunes_own_files_keeps_foreign_ones(tmp_path):
    writer.apply(writer.plan_write(tmp_path, {"d/old.txt": ("t/r1", "1\n"), "d/keep.txt": ("t/r1", "2\n")}, None))
    (tmp_path / "d/NOTES.md").write_text("mine\n")  # a file platformc did not write
    (tmp_path / "e").mkdir()
    writer.apply(writer.plan_write(tmp_path, {"d/keep.txt": ("t/r1", "2\n")}, None))
    assert not (tmp_path / "d/old.txt").exists()
    assert (tmp_path / "d/NOTES.md").read_text() == "mine\n"
    writer.apply(writer.plan_write(tmp_path, {}, None))
    assert not (tmp_path / "d/keep.txt").exists()
    assert (tmp_path / "d/NOTES.md").exists() and (tmp_path / "e").is_dir()


def test_pruning_is_scoped_to_the_owners_compiled(tmp_path):
    writer.apply(writer.plan_write(tmp_path, {"r1.txt": ("t/r1", "1\n"), "r2.txt": ("t/r2", "2\n")}, None))
    writer.apply(writer.plan_write(tmp_path, {"r1.txt": ("t/r1", "1b\n")}, {"t/r1"}))
    assert (tmp_path / "r2.txt").read_text() == "2\n"  # another region's file survives a --region run
    assert "r2.txt" in (tmp_path / writer.MANIFEST).read_text()


def test_refuses_to_overwrite_a_foreign_file(tmp_path):
    (tmp_path / "x.txt").write_text("hand written\n")
    with pytest.raises(WriteError, match="did not write it"):
        writer.plan_write(tmp_path, {"x.txt": ("t/r1", "generated\n"), "y.txt": ("t/r1", "y\n")}, None)
    assert sorted(os.listdir(tmp_path)) == ["x.txt"]


def test_refuses_a_foreign_file_with_identical_bytes(tmp_path):
    """Issue #15: adopting it silently (and pruning it later) touched a file platformc never wrote."""
    (tmp_path / "x.txt").write_text("same\n")
    with pytest.raises(WriteError, match="refusing to adopt .*x.txt: platformc did not write it"):
        writer.plan_write(tmp_path, {"x.txt": ("t/r1", "same\n")}, None)
    assert sorted(os.listdir(tmp_path)) == ["x.txt"]


@pytest.mark.parametrize("bad", ["../escape.txt", "/etc/passwd", "a/../../b", "a//b", "./a", ""])
def test_refuses_paths_outside_the_root(tmp_path, bad):
    with pytest.raises(WriteError):
        writer.plan_write(tmp_path, {bad: ("t/r1", "x\n")}, None)


def test_failure_while_staging_changes_nothing(tmp_path, monkeypatch):
    writer.apply(writer.plan_write(tmp_path, {"a.txt": ("t/r", "a1\n"), "b.txt": ("t/r", "b1\n")}, None))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    plan = writer.plan_write(tmp_path, {"a.txt": ("t/r", "a2\n"), "b.txt": ("t/r", "b2\n"), "c.txt": ("t/r", "c\n")}, None)
    real = type(tmp_path).write_bytes
    calls = {"n": 0}

    def flaky(self, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(type(tmp_path), "write_bytes", flaky)
    with pytest.raises(OSError):
        writer.apply(plan)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # staging dir removed too


def test_lock_keeps_concurrent_runs_apart(tmp_path):
    entered = threading.Event()
    release = threading.Event()

    def hold():
        with writer.locked(tmp_path):
            entered.set()
            release.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    entered.wait(5)
    try:
        with pytest.raises(WriteError, match="another platformc run"):
            with writer.locked(tmp_path):
                pass
    finally:
        release.set()
        t.join()


def test_describe_lists_missing_stale_and_removed(tmp_path):
    writer.apply(writer.plan_write(tmp_path, {"a.txt": ("t/r", "one\n"), "gone.txt": ("t/r", "x\n")}, None))
    plan = writer.plan_write(tmp_path, {"a.txt": ("t/r", "two\n"), "new.txt": ("t/r", "n\n")}, None)
    report = "\n".join(writer.describe(plan, "generated"))
    assert "stale: generated/a.txt" in report and "-one" in report and "+two" in report
    assert "missing: generated/new.txt" in report
    assert "no longer generated: generated/gone.txt" in report


def test_transaction_stages_each_job_and_keeps_no_bytes(tmp_path):
    """generate's path: each job's files are staged as they are added and released (the plans keep paths,
    owners and digests only), then committed as one transaction; abort leaves nothing behind."""
    import hashlib
    roots = {"gen": tmp_path / "gen", "docs": tmp_path / "docs"}
    with writer.session(list(roots.values())):
        tx = writer.Transaction(roots)
        tx.add("gen", "t/r1", {"r1/a.txt": "a\n", "r1/b.txt": "b\n"})
        staged = [p for p in roots["gen"].iterdir() if p.name.startswith(writer.STAGING_PREFIX)]
        assert len(staged) == 1 and sorted(p.name for p in (staged[0] / "g0").iterdir()) == ["n0", "n1"]
        tx.add("docs", "docs/r1", {"r1.md": "# r1\n"})
        plan = tx.planners["gen"].plan
        assert plan.write == {"r1/a.txt": None, "r1/b.txt": None}  # staged: no bytes held
        assert plan.sha["r1/a.txt"] == hashlib.sha256(b"a\n").hexdigest()
        plans = tx.commit()
    assert (roots["gen"] / "r1/a.txt").read_text() == "a\n" and (roots["docs"] / "r1.md").read_text() == "# r1\n"
    assert not [p for r in roots.values() for p in r.iterdir() if p.name.startswith(".platformc-s")]
    assert set(plans["gen"].digests()) == {"r1/a.txt", "r1/b.txt", writer.MANIFEST}
    # a refusal half-way (a foreign file) removes what was staged and changes nothing
    before = {p: p.read_bytes() for r in roots.values() for p in r.rglob("*") if p.is_file()}
    (roots["gen"] / "r2").mkdir()
    (roots["gen"] / "r2/c.txt").write_text("someone's\n")
    with writer.session(list(roots.values())):
        tx = writer.Transaction(roots)
        tx.add("gen", "t/r1", {"r1/a.txt": "a2\n"})
        with pytest.raises(WriteError, match="did not write it"):
            tx.add("gen", "t/r2", {"r2/c.txt": "c\n"})
    after = {p: p.read_bytes() for r in roots.values() for p in r.rglob("*") if p.is_file()}
    before[roots["gen"] / "r2/c.txt"] = b"someone's\n"
    assert after == before


def test_manifest_bytes_are_json_dumps_indent_2_sorted():
    """The manifest is written line by line (json's indenting encoder is pure Python and held copies of both mappings
    at the run's peak): its bytes stay exactly json.dumps(body, indent=2, sort_keys=True) + newline."""
    import json
    import random
    rng = random.Random(16)
    alphabet = "abcXYZ/._-0189 \"\\\t\n\x00\x7fé\u2028漢🙂"

    def s(n=10):
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, n)))

    cases = [({}, None, None), ({}, {}, ""), ({"a": "t/r"}, {"a": "0" * 64}, "f" * 64), ({"b": "t/r", "a": "t/r"}, {}, None)]
    for n in (255, 256, 257, 512, 1000):  # around the blocks the writer encodes entries in
        files = {f"t/r{i:04}/f{s()}": f"t/r{i % 7}" for i in range(n)}
        cases.append((files, {k: s(64) for k in list(files)[: n - 3]}, "0" * 64))
    for _ in range(500):
        files = {s(): s() for _ in range(rng.randint(0, 6))}
        digests = None if rng.random() < 0.3 else {k: s(64) for k in list(files) + [s()] if rng.random() < 0.7}
        cases.append((files, digests, rng.choice([None, "", s(64)])))
    for files, digests, inputs in cases:
        body = {"generator": "platformc", "note": "files platformc wrote here; do not edit", "files": files}
        if inputs:
            body["inputs"] = inputs
        if digests is not None:
            body["sha256"] = {rel: digests[rel] for rel in files if rel in digests}
        expected = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
        assert writer._manifest_bytes(files, digests, inputs) == expected, (files, digests, inputs)


def _relpath_by_pathlib(rel):
    """safe_relpath's rule as PurePosixPath states it (the check the fast path must agree with)."""
    from pathlib import PurePosixPath
    p = PurePosixPath(rel)
    return not (not isinstance(rel, str) or p.is_absolute() or ".." in p.parts or not p.parts or rel != str(p)
                or "\\" in rel or "\0" in rel or p.parts[0].startswith(writer.RESERVED))


@pytest.mark.parametrize("rel", [
    "a", "a/b.yaml", "kubernetes/us-east-1/ai.yaml", ".hidden/x", "a/.b", "a..b/c", "...", "a/.../b", " a/ b ",
    "", ".", "..", "./a", "a/.", "a/./b", "a/../b", "../a", "a/..", "/a", "//a", "///a", "a//b", "a/", "a/b/",
    "a\\b", "a\0b", ".platformc", ".platformc-manifest.json", ".platformc-x/y", "x/.platformc", "é/ü", "a b/c\td",
])
def test_safe_relpath_accepts_exactly_what_pathlib_does(rel):
    ok = _relpath_by_pathlib(rel)
    if ok:
        assert writer.safe_relpath(rel) == rel
    else:
        with pytest.raises(WriteError):
            writer.safe_relpath(rel)
