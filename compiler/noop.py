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
only costs a recompile next time); and a registry modified since the run began is not recorded at all.
The output digests come from the bytes the writer held, not from re-reading the files it wrote.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from compiler.cache import cache_dir

PACKAGE = Path(__file__).resolve().parent
SOURCES = (PACKAGE, PACKAGE.parent / "templates")
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


def sources_digest() -> str:
    """platformc's own sources and templates, and the library versions that shape the bytes."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256()
    for root in SOURCES:
        for p in sorted(root.rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                h.update(f"{p.relative_to(root.parent)}\0".encode())
                h.update(p.read_bytes())
    for lib in LIBRARIES:
        try:
            h.update(f"{lib}={version(lib)}\0".encode())
        except PackageNotFoundError:
            h.update(f"{lib}=?\0".encode())
    return h.hexdigest()


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
        if plan is None or set(plan.manifest) != set(plan.sha):
            return
        state["roots"][name] = plan.digests()
    path = _state_file(spec, roots)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(state, sort_keys=True), "utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
