"""Write an output tree atomically, prune what platformc wrote before, never touch anything else.

Each output root (generated/, docs/) holds `.platformc-manifest.json`: every file platformc wrote
there and the owner that produced it (`<target>/<region>` or `<target>/global`). With that:
  * a file in the manifest that the current compile no longer produces is removed, but only when
    its owner was compiled this time (so `--region us-east-1` never prunes another region);
  * a file not in the manifest is someone else's: never overwritten or removed (identical bytes
    are adopted silently, anything else is an error);
  * changed files are first written to a staging directory inside the root, then renamed into
    place, so a failure while staging leaves the tree as it was.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from compiler.errors import WriteError

MANIFEST = ".platformc-manifest.json"
LOCK = ".platformc.lock"
DIFF_LINES = 40


@dataclass
class Plan:
    """What a write would do, computed without touching the disk."""

    root: Path
    write: dict = field(default_factory=dict)  # rel path -> new bytes (new or changed)
    remove: list = field(default_factory=list)  # rel paths to prune
    unchanged: int = 0
    manifest: dict = field(default_factory=dict)  # the manifest after the write

    @property
    def stale(self) -> bool:
        return bool(self.write or self.remove)


def safe_relpath(rel: str) -> str:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts or rel != str(p) or "\\" in rel:
        raise WriteError(f"refusing output path {rel!r}: it must stay inside the output directory")
    return rel


def _read_manifest(root: Path) -> dict:
    try:
        data = json.loads((root / MANIFEST).read_text("utf-8"))
        return dict(data.get("files", {}))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise WriteError(f"{root / MANIFEST} is unreadable ({exc}); restore it from git") from None


def _manifest_bytes(files: dict) -> bytes:
    body = {"generator": "platformc", "note": "files platformc wrote here; do not edit",
            "files": dict(sorted(files.items()))}
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


def plan_write(root: Path, outputs: dict, owners_in_scope: set | None) -> Plan:
    """outputs: {rel path: (owner, text)}. owners_in_scope: owners compiled now (None = all)."""
    old = _read_manifest(root)
    plan = Plan(root=root)
    new_manifest = {p: o for p, o in old.items()
                    if owners_in_scope is not None and o not in owners_in_scope}
    for rel, (owner, text) in sorted(outputs.items()):
        safe_relpath(rel)
        data = text.encode("utf-8")
        target = root / rel
        try:
            current = target.read_bytes()
        except FileNotFoundError:
            current = None
        except IsADirectoryError:
            raise WriteError(f"{target} is a directory where platformc writes a file") from None
        if current is not None and rel not in old and current != data:
            raise WriteError(f"refusing to overwrite {target}: platformc did not write it "
                             f"(not in {MANIFEST}); move it away or delete it")
        if current == data:
            plan.unchanged += 1
        else:
            plan.write[rel] = data
        new_manifest[rel] = owner
    for rel, owner in sorted(old.items()):
        if rel in outputs or (owners_in_scope is not None and owner not in owners_in_scope):
            continue
        if (root / rel).exists():
            plan.remove.append(rel)
    plan.manifest = new_manifest
    if _manifest_bytes(new_manifest) != _read_bytes(root / MANIFEST):
        plan.write[MANIFEST] = _manifest_bytes(new_manifest)
    return plan


def _read_bytes(p: Path) -> bytes | None:
    try:
        return p.read_bytes()
    except FileNotFoundError:
        return None


@contextmanager
def locked(root: Path):
    """Hold an exclusive lock on the root so two runs never interleave their writes."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise WriteError(f"another platformc run holds {root / LOCK}; wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def apply(plan: Plan) -> None:
    """Stage every changed file, then rename them into place, prune, and write the manifest last."""
    root = plan.root
    if not plan.stale:
        return
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".platformc-staging-", dir=root))
    try:
        staged = []
        for rel, data in plan.write.items():
            if rel == MANIFEST:
                continue
            tmp = staging / rel
            tmp.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            staged.append(rel)
        for rel in staged:  # same filesystem: each rename is atomic
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, dest)
        for rel in plan.remove:
            (root / rel).unlink(missing_ok=True)
            _prune_empty_dirs(root, (root / rel).parent)
        if MANIFEST in plan.write:
            tmp = staging / MANIFEST
            tmp.write_bytes(plan.write[MANIFEST])
            os.replace(tmp, root / MANIFEST)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _prune_empty_dirs(root: Path, d: Path) -> None:
    while d != root and root in d.parents:
        try:
            d.rmdir()  # only succeeds when empty: foreign files keep their directory
        except OSError:
            return
        d = d.parent


def describe(plan: Plan, root_label: str, diff_lines: int = DIFF_LINES) -> list[str]:
    """Human report of a stale tree: one line per file plus a capped unified diff of each."""
    lines = []
    for rel, data in sorted(plan.write.items()):
        if rel == MANIFEST:
            continue
        old = _read_bytes(plan.root / rel)
        kind = "missing" if old is None else "stale"
        lines.append(f"{kind}: {root_label}/{rel}")
        diff = list(difflib.unified_diff(
            (old or b"").decode("utf-8", "replace").splitlines(), data.decode("utf-8").splitlines(),
            f"{root_label}/{rel} (on disk)", f"{root_label}/{rel} (from the spec)", lineterm="", n=1))
        lines.extend("    " + x for x in diff[:diff_lines])
        if len(diff) > diff_lines:
            lines.append(f"    ... {len(diff) - diff_lines} more diff lines")
    for rel in plan.remove:
        lines.append(f"no longer generated: {root_label}/{rel}")
    if not lines and MANIFEST in plan.write:
        lines.append(f"stale: {root_label}/{MANIFEST}")
    return lines
