"""noop.sources_digest kept under the sources' stat state: always the value a full hash gives (it is recorded in
manifests as "inputs"), never a stale one (an edit that keeps size and mtime, an added or removed file, other
library versions), a damaged cache costs only a recompute, and git's racy-timestamp rule: an entry recorded within
RACY_NS of a file's mtime or ctime is never trusted."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import types
from pathlib import Path

import pytest

from compiler import noop


def reference(roots, versions) -> str:
    """The formula, written out independently: each file's path relative to its root's parent and its bytes, in
    part-by-part path order, __pycache__ aside, then the library versions."""
    h = hashlib.sha256()
    for root in roots:
        files = sorted((p.relative_to(root.parent).parts, p) for p in root.rglob("*")
                       if p.is_file() and "__pycache__" not in p.relative_to(root).parts)
        for parts, p in files:
            h.update(("/".join(parts) + "\0").encode())
            h.update(p.read_bytes())
    for lib in noop.LIBRARIES:
        h.update(f"{lib}={versions[lib]}\0".encode())
    return h.hexdigest()


VERSIONS = {lib: "1.0" for lib in noop.LIBRARIES}


@pytest.fixture
def tree(tmp_path, monkeypatch):
    """A fake package and templates directory as SOURCES, a private cache directory, no entry kept in-process."""
    pkg, tpl = tmp_path / "src" / "compiler", tmp_path / "src" / "templates"
    for rel, text in {"__init__.py": "", "cli.py": "print('cli')\n", "a-b.py": "x = 1\n", "a/b.py": "y = 2\n",
                      "a/z/deep.py": "z = 3\n", "__pycache__/cli.cpython-311.pyc": "junk"}.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text)
    for rel, text in {"k8s/deploy.yaml.j2": "kind: {{ k }}\n", "README": "templates\n"}.items():
        (tpl / rel).parent.mkdir(parents=True, exist_ok=True)
        (tpl / rel).write_text(text)
    monkeypatch.setattr(noop, "SOURCES", (pkg, tpl))
    monkeypatch.setattr(noop, "PACKAGE", pkg)
    monkeypatch.setattr(noop, "_KEPT", [])
    monkeypatch.setattr(noop, "_versions", lambda libs: dict(VERSIONS))
    monkeypatch.setenv("PLATFORMC_CACHE_DIR", str(tmp_path / "cache"))
    return pkg, tpl


def later(monkeypatch, seconds=5):
    """noop's clock runs `seconds` ahead: what is on disk now is older than RACY_NS at the recording (as files
    edited minutes before a run), so the entry is trusted. Only noop's reference to the time module is replaced."""
    fake = types.SimpleNamespace(time_ns=lambda: time.time_ns() + int(seconds * 1e9))
    monkeypatch.setattr(noop, "time", fake)


def cache_files(tree) -> list:
    d = Path(os.environ["PLATFORMC_CACHE_DIR"])
    return sorted(d.glob("sources-*")) if d.is_dir() else []


def fresh() -> str:
    """The value with nothing kept in this process (the cache file alone, as the next run sees it)."""
    noop._KEPT.clear()
    return noop.sources_digest()


def test_the_real_sources_digest_is_the_formula():
    assert noop.sources_digest() == reference(noop.SOURCES, noop._versions(noop.LIBRARIES))


def test_kept_value_equals_a_full_hash_and_is_served_from_the_cache(tree, monkeypatch):
    later(monkeypatch)
    want = reference(tree, VERSIONS)
    assert noop.sources_digest() == want
    assert len(cache_files(tree)) == 1
    reads = []
    real_full = noop._full_digest
    monkeypatch.setattr(noop, "_full_digest", lambda *a: reads.append(1) or real_full(*a))
    assert fresh() == want and noop.sources_digest() == want
    assert reads == []  # served from the file, then from memory: nothing hashed


def test_an_edit_keeping_size_and_mtime_changes_the_value(tree, monkeypatch):
    later(monkeypatch)
    pkg, _ = tree
    before = noop.sources_digest()
    f = pkg / "a" / "b.py"
    st = f.stat()
    time.sleep(0.05)  # past the file system's clock tick (as a later edit would be): the new ctime differs
    f.write_text("y = 3\n")  # same size
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime forced back
    now = f.stat()
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns) and now.st_ctime_ns != st.st_ctime_ns
    want = reference(tree, VERSIONS)
    assert want != before
    assert noop.sources_digest() == want  # the in-process entry is not served
    assert fresh() == want  # nor the file's


def test_a_file_replaced_by_one_of_same_size_and_times_changes_the_value(tree, monkeypatch):
    later(monkeypatch)
    pkg, _ = tree
    before = noop.sources_digest()
    f = pkg / "cli.py"
    st = f.stat()
    tmp = pkg / "cli.py.new"
    tmp.write_text("print('CLI')\n")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, f)  # a new inode (the editor's save-by-rename), even within one clock tick
    assert f.stat().st_ino != st.st_ino and f.stat().st_size == st.st_size
    want = reference(tree, VERSIONS)
    assert want != before and noop.sources_digest() == want and fresh() == want


def test_added_and_removed_files_change_the_value(tree, monkeypatch):
    later(monkeypatch)
    pkg, tpl = tree
    first = noop.sources_digest()
    (tpl / "k8s" / "empty.j2").write_text("")  # even an empty file: its path is hashed
    added = noop.sources_digest()
    assert added != first and added == reference(tree, VERSIONS) == fresh()
    (pkg / "a" / "z" / "deep.py").unlink()
    removed = noop.sources_digest()
    assert removed not in (first, added) and removed == reference(tree, VERSIONS) == fresh()
    (pkg / "__pycache__" / "other.pyc").write_text("more junk")  # bytecode is not a source
    assert noop.sources_digest() == removed == fresh()


def test_library_versions_are_part_of_the_key(tree, monkeypatch):
    later(monkeypatch)
    first = noop.sources_digest()
    monkeypatch.setitem(VERSIONS, "jinja2", "9.9")
    assert noop.sources_digest() == reference(tree, VERSIONS) != first
    assert fresh() == reference(tree, VERSIONS)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "bad digest", "directory"])
def test_a_damaged_cache_costs_only_a_recompute(tree, monkeypatch, damage):
    later(monkeypatch)
    want = noop.sources_digest()
    [path] = cache_files(tree)
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(200))
    elif damage == "truncated":
        path.write_bytes(data[:len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "bad digest":
        form, digest, recorded, key = data.split(b"\n", 3)
        path.write_bytes(b"\n".join((form, b"z" * 64, recorded, key)))
    else:
        path.unlink()
        path.mkdir()
    assert fresh() == want == reference(tree, VERSIONS)
    if damage != "directory":  # written again: the same key and digest
        form, digest, _recorded, key = path.read_bytes().split(b"\n", 3)
        assert (form, digest.decode(), key) == (data.split(b"\n")[0], want, data.split(b"\n", 3)[3])
        assert fresh() == want


def test_racy_run_hashes_in_full_and_records_nothing(tree):
    """Real clock: the files were just written, so nothing may be recorded; an edit within the same clock tick,
    size and mtime kept (ctime may be unchanged too), is still seen."""
    pkg, _ = tree
    first = noop.sources_digest()
    assert first == reference(tree, VERSIONS)
    assert cache_files(tree) == [] and noop._KEPT == []
    f = pkg / "a-b.py"
    st = f.stat()
    f.write_text("x = 2\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert noop.sources_digest() == reference(tree, VERSIONS) != first


def test_an_entry_recorded_within_racy_ns_of_a_file_change_is_not_trusted(tree, monkeypatch):
    """The file's own record: served when recorded over RACY_NS after every file's mtime and ctime, not when a file
    changed within RACY_NS before its recording (whatever digest it holds)."""
    later(monkeypatch)
    want = noop.sources_digest()
    [path] = cache_files(tree)
    form, digest, recorded, key = path.read_bytes().split(b"\n", 3)
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for root in tree for p in root.rglob("*")
                 if p.is_file() and "__pycache__" not in p.parts)
    forged = b"f" * 64
    path.write_bytes(b"\n".join((form, forged, str(newest + noop.RACY_NS + 1).encode(), key)))
    assert fresh() == forged.decode()  # trusted: the file is what is served (so the next check means something)
    path.write_bytes(b"\n".join((form, forged, str(newest + noop.RACY_NS).encode(), key)))
    assert fresh() == want  # recorded within RACY_NS of the newest change: recomputed
    path.write_bytes(b"\n".join((form, forged, str(newest + noop.RACY_NS // 2).encode(), key)))
    assert fresh() == want


def test_fingerprints_follow_the_kept_digest(tree, monkeypatch, tmp_path):
    later(monkeypatch)
    pkg, _ = tree
    spec = tmp_path / "p.yaml"
    spec.write_text("x: 1\n")
    first = noop.fingerprint(str(spec), [])
    time.sleep(0.05)
    (pkg / "cli.py").write_text("print('cl!')\n")
    assert noop.fingerprint(str(spec), []) != first
    assert noop.inputs_fingerprint("p.yaml", b"x: 1\n", None) == noop.inputs_fingerprint(
        "p.yaml", b"x: 1\n", None, reference(tree, VERSIONS))


def test_an_install_with_the_templates_inside_the_package_digests_as_a_checkout(tree, monkeypatch, tmp_path):
    """A regular install carries templates/ inside the package (compiler/locations.py, pyproject.toml): the package's
    walk leaves them to their own root, so each file counts once and under the name a checkout gives it, and the same
    sources give the same digest (the manifests' "inputs", which `platformc diff` matches) however installed."""
    pkg, tpl = tree
    checkout = fresh()
    installed = tmp_path / "site" / "compiler"
    shutil.copytree(pkg, installed)
    shutil.copytree(tpl, installed / "templates")
    monkeypatch.setattr(noop, "SOURCES", (installed, installed / "templates"))
    monkeypatch.setattr(noop, "PACKAGE", installed)
    assert [parts for parts, *_ in noop._stats(installed)] == [parts for parts, *_ in noop._stats(pkg)]
    assert fresh() == checkout == reference((pkg, tpl), VERSIONS)
