"""The no-op fast path of `platformc generate`.

A compile is a pure function of its inputs: the spec, the franchise registry it names, platformc's own
sources and templates, and the versions of the libraries that shape the bytes (PyYAML, Jinja2,
pydantic). After a successful generate we record a fingerprint of those inputs plus the SHA-256 of every
file written, outside the repository (~/.cache/platformc). The next plain `generate` whose fingerprint
matches and whose output files are byte-for-byte as recorded has nothing to do, and says so without
compiling. Anything else — a changed input, an edited or missing output file, --check, --region,
--target, --strict with warnings — takes the full path. CI never has this state, so its check is always
a full compile.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from compiler.cache import cache_dir

PACKAGE = Path(__file__).resolve().parent
SOURCES = (PACKAGE, PACKAGE.parent / "templates")
LIBRARIES = ("pyyaml", "jinja2", "pydantic", "pydantic-core")


def _state_file(spec: str, roots: dict) -> Path:
    key = json.dumps([os.path.abspath(spec), sorted((k, os.path.abspath(v)) for k, v in roots.items())])
    return Path(cache_dir()) / f"noop-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def fingerprint(spec: str, extra_inputs: list[str]) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256()
    for f in [spec, *extra_inputs]:
        digest = _sha(Path(f))
        if digest is None:
            return None
        h.update(f"{f}\0{digest}\0".encode())
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


def unchanged(spec: str, roots: dict, strict: bool) -> tuple[int, list[str]] | None:
    """(files unchanged, warnings to print) when nothing needs doing, else None."""
    try:
        state = json.loads(_state_file(spec, roots).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if strict and state.get("warnings"):
        return None
    if fingerprint(spec, state.get("extra_inputs", [])) != state.get("fingerprint"):
        return None
    count = 0
    for name, files in state.get("roots", {}).items():
        root = Path(roots.get(name, ""))
        for rel, digest in files.items():
            if _sha(root / rel) != digest:
                return None
            count += 1
    return count, state.get("warnings", [])


def record(spec: str, roots: dict, extra_inputs: list[str], warnings: list[str]) -> None:
    """Remember this successful run; a failure to write the state only costs the next run's speed."""
    state = {"fingerprint": fingerprint(spec, extra_inputs), "extra_inputs": extra_inputs, "warnings": warnings,
             "roots": {}}
    from compiler.writer import _read_manifest, MANIFEST
    for name, root in roots.items():
        root = Path(root)
        files = {rel: _sha(root / rel) for rel in _read_manifest(root)}
        files[MANIFEST] = _sha(root / MANIFEST)
        if None in files.values():
            return
        state["roots"][name] = files
    path = _state_file(spec, roots)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, sort_keys=True), "utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
