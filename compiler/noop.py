"""The no-op fast path of `platformc generate`.

A compile is a pure function of its inputs: the spec, the franchise registry it names, platformc's own
sources and templates, and the versions of the libraries that shape the bytes (PyYAML, Jinja2,
pydantic). After a successful generate we record a fingerprint of those inputs plus the SHA-256 of every
file written, outside the repository (~/.cache/platformc). The next plain `generate` whose fingerprint
matches and whose output files are byte-for-byte as recorded has nothing to do, and says so without
compiling. Anything else — a changed input, an edited or missing output file, an interrupted write
(a journal or staging directory in a root), --check, --region, --target, --strict with warnings — takes
the full path. CI never has this state, so its check is always a full compile.

The fingerprint is of what was compiled, never of what is on disk afterwards: the spec's bytes are read
once and both fingerprinted and compiled (a spec saved during the run, or read from a pipe, cannot be
mistaken for the one compiled); platformc's sources are hashed before the compile (an edit during the run
only costs a recompile next time; the digest is kept under the files' stat state, see sources_digest); and a
registry modified since the run began is not recorded at all. The output digests come from the bytes the writer
held, not from re-reading the files it wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from compiler.cache import cache_dir, write_atomic
from compiler.locations import PACKAGE, TEMPLATES

# In a regular install the templates are inside the package (compiler/locations.py): the package's walk leaves them
# to their own root (_stats), so each file counts once and under the name a checkout gives it (templates/...), and
# the same sources give the same digest however platformc is installed.
SOURCES = (PACKAGE, TEMPLATES)
LIBRARIES = ("pyyaml", "jinja2", "pydantic", "pydantic-core")
RACY_NS = 1_000_000_000  # an input modified this close to the run's start may have changed under it


def _state_file(spec: str, roots: dict) -> Path:
    key = json.dumps([os.path.abspath(spec), sorted((k, os.path.abspath(v)) for k, v in roots.items())])
    return Path(cache_dir()) / f"noop-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _stats(root: Path) -> list[tuple]:
    """Every file under root, __pycache__ and the other SOURCES roots aside, in path order (part by part, as sorted
    Paths), with its state: (parts relative to root's parent, size, mtime_ns, ctime_ns, inode, device), from
    DirEntry.stat (one stat call, following a symlink as open does). The path is root's + the parts after the first."""
    out, stack = [], [(str(root), (root.name,))]
    roots = {os.fspath(r) for r in SOURCES}  # another root inside this one (an install's templates) is walked as itself
    while stack:
        d, parts = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.is_file():  # first: most entries are files (a symlink is what it points to)
                    st = e.stat()
                    out.append((parts + (e.name,), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev))
                elif e.is_dir() and e.name != "__pycache__" and e.path not in roots:
                    stack.append((e.path, parts + (e.name,)))
    out.sort()  # no two entries share their parts
    return out


def _versions(libs) -> dict:
    """Installed versions from the *.dist-info directory names on sys.path (one listdir per directory: the
    metadata scan of importlib.metadata cost ~0.1 s per run); importlib.metadata for what is not found."""
    import sys
    wanted = {lib.lower().replace("-", "_"): lib for lib in libs}
    found: dict = {}
    for d in sys.path:
        if len(found) == len(wanted):
            break
        try:
            names = os.listdir(d or ".")
        except OSError:
            continue
        for n in names:
            if n.endswith(".dist-info"):
                name, _, ver = n[:-10].partition("-")
                lib = wanted.get(name.lower().replace("-", "_").replace(".", "_"))
                if lib and lib not in found and ver:
                    found[lib] = ver
    for lib in libs:
        if lib not in found:
            from importlib.metadata import PackageNotFoundError, version
            try:
                found[lib] = version(lib)
            except PackageNotFoundError:
                found[lib] = "?"
    return found


_KEPT: list = []  # this process's last trusted (key, digest): a long-lived caller (the compile server) reads no file
_SOURCES_FORMAT = b"platformc-sources-1"


def _full_digest(walked: list, versions: dict) -> str:
    """The digest itself: every file's relative path and bytes in one SHA-256, in path order, then the versions."""
    h = hashlib.sha256()
    for root, files in walked:
        for parts, *_ in files:
            h.update(("/".join(parts) + "\0").encode())
            with open(os.path.join(root, *parts[1:]), "rb") as f:
                h.update(f.read())
    for lib in LIBRARIES:
        h.update(f"{lib}={versions[lib]}\0".encode())
    return h.hexdigest()


def _sources_file() -> str:
    roots = json.dumps([os.fspath(r) for r in SOURCES])  # one file per checkout: two worktrees never evict each other
    return os.path.join(cache_dir(), f"sources-{hashlib.sha256(roots.encode()).hexdigest()[:20]}.bin")


def sources_digest() -> str:
    """platformc's own sources and templates, and the library versions that shape the bytes: the SHA-256 of every
    file's relative path and bytes, in path order, then the versions (_full_digest).

    Kept in the cache directory under the state of every file (relative path, size, mtime, ctime, inode, device:
    a file written, replaced, added or removed changes it), the roots and the versions, so a run whose sources are
    as the last one's stats each file instead of reading and hashing ~1.8 MB. The value is the same either way (it
    is recorded in manifests as part of "inputs"). As git's index, an entry is trusted only when no file was
    modified within RACY_NS of its recording: a file written in the same clock tick as the recording could be
    written again without its stat changing. Such a run hashes in full and records nothing. A missing, unreadable
    or damaged file costs a full hash."""
    import marshal
    from operator import itemgetter
    walked = [(os.fspath(r), _stats(r)) for r in SOURCES]
    versions = _versions(LIBRARIES)
    # the key is the state itself (marshal version 2: no references, so equal states give equal bytes)
    key = marshal.dumps([w[0] for w in walked], 2) + marshal.dumps(sorted(versions.items()), 2) + b"".join(
        marshal.dumps(files, 2) for _root, files in walked)
    newest = max([max(map(itemgetter(i), files), default=0) for _root, files in walked for i in (2, 3)], default=0)
    if _KEPT and _KEPT[0][0] == key:
        return _KEPT[0][1]
    path = _sources_file()
    try:
        with open(path, "rb") as f:
            form, digest, recorded, kept_key = f.read().split(b"\n", 3)
        if (form == _SOURCES_FORMAT and kept_key == key and len(digest) == 64
                and not digest.strip(b"0123456789abcdef") and newest < int(recorded) - RACY_NS):
            _KEPT[:] = [(key, digest.decode("ascii"))]
            return _KEPT[0][1]
    except (OSError, ValueError):
        pass
    digest = _full_digest(walked, versions)
    recorded_ns = time.time_ns()  # after the reads: a file changed during them is newer than the stat recorded
    if newest >= recorded_ns - RACY_NS:
        return digest  # racy: a file may change again within its clock tick without its stat changing
    _KEPT[:] = [(key, digest)]
    write_atomic(path, b"\n".join((_SOURCES_FORMAT, digest.encode(), str(recorded_ns).encode(), key)))
    return digest


def inputs_fingerprint(spec_name: str, spec_bytes: bytes, registry_bytes: bytes | None,
                       sources: str | None = None) -> str:
    """What a generated tree was compiled from, recorded in its manifest ("inputs"): the spec's file name (the
    headers name it) and bytes, the franchise registry's bytes, and platformc's sources and libraries. Equal
    fingerprints, equal trees: `platformc diff` reads a base's committed generated/ instead of emitting it
    when the fingerprint of the base's spec and this platformc matches the one recorded."""
    h = hashlib.sha256(b"platformc-inputs-1\0")
    h.update(f"{os.path.basename(spec_name)}\0{hashlib.sha256(spec_bytes).hexdigest()}\0".encode())
    h.update(f"{hashlib.sha256(registry_bytes).hexdigest() if registry_bytes is not None else '-'}\0".encode())
    h.update((sources or sources_digest()).encode())
    return h.hexdigest()


def run_inputs(spec: str, spec_bytes: bytes, registry_file: str | None, sources: str, started_ns: int) -> str | None:
    """inputs_fingerprint of this run, or None when the registry it compiled is unknown (modified since the
    run began: its bytes now may not be the ones compiled)."""
    registry = None
    if registry_file:
        from compiler.registry import registry_path
        path = registry_path(spec, registry_file)
        try:
            if os.stat(path).st_mtime_ns >= started_ns - RACY_NS:
                return None
            with open(path, "rb") as f:
                registry = f.read()
        except OSError:
            return None
    return inputs_fingerprint(spec, spec_bytes, registry, sources)


def fingerprint(spec: str, extra_inputs: list[str], spec_bytes: bytes | None = None,
                sources: str | None = None) -> str | None:
    """Of the spec (its bytes as compiled, when given), the extra inputs, and the sources."""
    if spec_bytes is None:
        try:
            spec_bytes = Path(spec).read_bytes()
        except OSError:
            return None
    h = hashlib.sha256()
    h.update(f"{spec}\0{hashlib.sha256(spec_bytes).hexdigest()}\0".encode())
    for f in extra_inputs:
        digest = _sha(Path(f))
        if digest is None:
            return None
        h.update(f"{f}\0{digest}\0".encode())
    h.update((sources or sources_digest()).encode())
    return h.hexdigest()


def _interrupted(root: Path) -> bool:
    """A journal or staging directory in the root: the writer has work to finish (or sweep)."""
    from compiler.writer import JOURNAL, STAGING_PREFIX
    try:
        with os.scandir(root) as it:
            return any(e.name == JOURNAL or e.name.startswith(STAGING_PREFIX) for e in it)
    except OSError:
        return False


def unchanged(spec: str, roots: dict, strict: bool, spec_bytes: bytes | None = None,
              sources: str | None = None) -> tuple[int, list[str]] | None:
    """(files unchanged, warnings to print) when nothing needs doing, else None."""
    try:
        state = json.loads(_state_file(spec, roots).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if strict and state.get("warnings"):
        return None
    if fingerprint(spec, state.get("extra_inputs", []), spec_bytes, sources) != state.get("fingerprint"):
        return None
    count = 0
    for name, files in state.get("roots", {}).items():
        root = Path(roots.get(name, ""))
        if _interrupted(root):
            return None
        for rel, digest in files.items():
            if _sha(root / rel) != digest:
                return None
            count += 1
    return count, state.get("warnings", [])


def record(spec: str, roots: dict, extra_inputs: list[str], warnings: list[str], *, spec_bytes: bytes,
           plans: dict, sources: str | None = None, started_ns: int | None = None) -> None:
    """Remember this successful run; a failure to write the state only costs the next run's speed.

    plans: {root name: writer.Plan} of a full run (every owner in scope, so a root's manifest is exactly
    its outputs); their digests come from the bytes in memory."""
    started_ns = started_ns if started_ns is not None else time.time_ns()
    for f in extra_inputs:  # modified since the run began: what was compiled is unknown, record nothing
        try:
            if os.stat(f).st_mtime_ns >= started_ns - RACY_NS:
                return
        except OSError:
            return
    state = {"fingerprint": fingerprint(spec, extra_inputs, spec_bytes, sources), "extra_inputs": extra_inputs,
             "warnings": warnings, "roots": {}}
    if state["fingerprint"] is None:
        return
    for name in roots:
        plan = plans.get(name)
        if plan is None or plan.manifest.keys() != plan.sha.keys():  # views compare as sets, without building them
            return
        state["roots"][name] = plan.digests()
    write_atomic(str(_state_file(spec, roots)), json.dumps(state, sort_keys=True).encode("utf-8"))
