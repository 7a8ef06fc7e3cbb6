"""Write the output trees as one transaction; prune only what platformc provably wrote; touch nothing else.

Each output root (generated/, docs/) holds `.platformc-manifest.json`: every file platformc wrote there
and the owner that produced it (`<target>/<region>` or `<target>/global`). With that:
  * a file in the manifest that the compile no longer produces is removed, but only when its owner is in
    the run's scope (so `--region us-east-1` never prunes another region);
  * a file not in the manifest is someone else's: never overwritten, adopted or removed, even when it
    holds the very bytes platformc would write (the run is refused);
  * every manifest entry must be a plain relative path inside its root, reached through real directories
    (no `..`, no absolute path, no symbolic link on the way): a tampered manifest is refused, never followed.

One run writes every root in one transaction (`session` + `plan_write` + `commit`):
  1. the roots are checked (`check_roots`: not `/`, not the home directory, not a directory holding the spec
     or a git work tree, none inside another) and every root is locked before anything is read;
  2. an interrupted transaction found under a lock is finished first (journal below), and staging
     directories left by a killed run are swept;
  3. every root is planned: nothing outside the roots' staging directories is written until every root is
     known to be writable as asked. `generate` plans with a `Transaction`, job by job as the targets emit:
     each file is encoded once, hashed (the manifest and the no-op state record the digest; nothing is
     re-read), compared with the disk, and, when it is new or changed, written at once to
     `.platformc-staging-<id>/` inside its root and released, so the run holds one job's text at a time
     (a failure or refusal removes the staging; a killed run's staging, with no journal, is swept);
  4. prepare: each root gets a journal (`.platformc-journal.json`) listing what will change; the directories
     to create are made (one mkdir per new directory); with `plan_write` (the docs command, tests), files that
     do not exist yet are written straight to their place and changed files and the manifest to staging;
  5. commit: the first root's journal flips to "commit" (one atomic rename: the decision for all roots);
     staged files are renamed into place (a new one never over anything that appeared since; a changed
     one's old bytes kept as a hard link for a rollback), pruned files are moved into staging, the manifest
     is renamed last; then journals and staging are removed.
A failure before the decision rolls back (new files unlinked, staging dropped); a failure after it rolls
every root back to its old bytes. A killed run leaves a journal: the next run rolls it forward when the
decision was taken, back otherwise. Either way no root is ever left half-written, and no file exists that
the manifest does not account for. Durability against power loss (fsync) is not attempted.
"""

from __future__ import annotations

import difflib
import errno
import fcntl
import hashlib
import json
import json.encoder
import os
import shutil
import stat
import threading
from contextlib import contextmanager
from dataclasses import field
from pathlib import Path, PurePosixPath

from compiler.records import dataclass
from compiler.errors import FileSystemError, UsageError, WriteError

MANIFEST = ".platformc-manifest.json"
LOCK = ".platformc.lock"
JOURNAL = ".platformc-journal.json"
STAGING_PREFIX = ".platformc-staging-"
RESERVED = ".platformc"  # no output or manifest entry may start with this: it is the writer's namespace
DIFF_LINES = 40
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_json_str = json.encoder.encode_basestring_ascii  # json.dumps(str) with ensure_ascii, without an encoder per call
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


@dataclass
class Plan:
    """What a write would do for one root, computed without changing the disk (or, planned by a Transaction,
    with the new bytes already in the root's staging directory, which nothing but this run reads)."""

    root: Path  # as the user named it (messages)
    write: dict = field(default_factory=dict)  # rel path -> new bytes, or None when staged already (new or changed; MANIFEST when it changes)
    remove: list = field(default_factory=list)  # rel paths to prune
    unchanged: int = 0
    manifest: dict = field(default_factory=dict)  # the manifest after the write
    real: Path | None = None  # the resolved root
    new: set = field(default_factory=set)  # rel paths in `write` with nothing on disk (written in place)
    mkdirs: list = field(default_factory=list)  # rel dirs to create, parents first
    sha: dict = field(default_factory=dict)  # rel -> SHA-256 of every output (the manifest and the no-op state record these)
    manifest_bytes: bytes = b""
    pending: bool = False  # an interrupted write awaits recovery (only --check, which takes no lock, sees it)
    txid: str | None = None  # the transaction whose staging directory holds the files in `staged`
    staged: dict = field(default_factory=dict)  # rel -> index of its bytes in the staging directory (n<index>)
    replaced: set = field(default_factory=set)  # staged rel paths with old bytes on disk (kept for a rollback); the
    # others had nothing there (a first write: every file, so this set stays empty rather than listing them all)
    report: dict = field(default_factory=dict)  # --check: rel -> the lines `describe` prints for it

    @property
    def stale(self) -> bool:
        return bool(self.write or self.remove or self.pending)

    def digests(self) -> dict:
        """SHA-256 of every file this root holds after the write, from the bytes the run held (never re-read)."""
        out = dict(self.sha)
        out[MANIFEST] = hashlib.sha256(self.manifest_bytes).hexdigest()
        return out


# ---------------------------------------------------------------------------------------------- paths

def safe_relpath(rel: str) -> str:
    if type(rel) is str and rel and rel[0] != "/" and not rel.startswith(RESERVED) and "\\" not in rel \
            and "\0" not in rel:
        parts = rel.split("/")
        if "" not in parts and "." not in parts and ".." not in parts:
            return rel  # what the check below accepts, without a PurePosixPath per file (~9,000 at 120 regions)
    p = PurePosixPath(rel)
    if (not isinstance(rel, str) or p.is_absolute() or ".." in p.parts or not p.parts or rel != str(p)
            or "\\" in rel or "\0" in rel or p.parts[0].startswith(RESERVED)):
        raise WriteError(f"refusing output path {rel!r}: it must stay inside the output directory")
    return rel


def _is_within(inner: str, outer: str) -> bool:
    return inner == outer or inner.startswith(outer.rstrip("/") + "/")


def _git_top(start: str) -> str | None:
    d = start
    while True:
        if os.path.lexists(os.path.join(d, ".git")):
            return d
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def check_roots(roots: dict, spec: str | None = None) -> None:
    """Refuse output roots that platformc must never write into: {flag or name: path}. UsageError (exit 2).

    `/`, the home directory, a directory holding the spec or a git work tree (`--out .` in a project), a
    path under a regular file, and two roots that are the same or one inside the other."""
    home = os.path.realpath(os.path.expanduser("~"))
    spec_dir = None
    if spec and os.path.isfile(spec):
        spec_dir = os.path.dirname(os.path.realpath(spec))
    tops = {t for t in (_git_top(os.getcwd()), spec_dir and _git_top(spec_dir)) if t}
    reals = {}
    for flag, root in roots.items():
        given = str(root)
        real = os.path.realpath(root)
        why = None
        if real == "/":
            why = "that is the file-system root"
        elif real == home:
            why = "that is your home directory"
        elif spec_dir and _is_within(spec_dir, real):
            why = f"it holds the spec {spec}"
        else:
            for top in sorted(tops):
                if _is_within(top, real):
                    why = f"it holds a git work tree ({os.path.join(top, '.git')})"
            if why is None and os.path.lexists(os.path.join(real, ".git")):
                why = f"it holds a git work tree ({os.path.join(real, '.git')})"
        if why is None:
            d = real
            while not os.path.lexists(d):
                d = os.path.dirname(d)
            if not os.path.isdir(d):
                why = f"{d} is a file, not a directory"
        if why:
            raise UsageError(f"refusing {flag} {given!r}: {why}; give platformc an output directory of its own")
        reals[flag] = (given, real)
    items = list(reals.items())
    for i, (f1, (g1, r1)) in enumerate(items):
        for f2, (g2, r2) in items[i + 1:]:
            if _is_within(r1, r2) or _is_within(r2, r1):
                how = "are the same directory" if r1 == r2 else "one is inside the other"
                raise UsageError(f"refusing {f1} {g1!r} and {f2} {g2!r}: the output directories overlap ({how});"
                                 f" each needs a directory of its own")


def _real_root(root: Path) -> Path:
    real = os.path.realpath(root)
    if real == "/":
        raise UsageError(f"refusing to write into {str(root)!r}: that is the file-system root")
    if os.path.lexists(real) and not os.path.isdir(real):
        raise WriteError(f"{root} is a file where platformc writes a directory; move it away")
    return Path(real)


def _fs_error(exc: OSError, labels: dict, what: str = "") -> FileSystemError:
    """One line naming the file (as the user knows the root) and the system's reason."""
    name = os.fsdecode(exc.filename) if getattr(exc, "filename", None) else ""
    for real, label in labels.items():
        if name and _is_within(name, str(real)):
            rel = os.path.relpath(name, real)
            if rel.startswith(STAGING_PREFIX) or rel.startswith(JOURNAL):
                rel = f"{rel.split('/')[0]} (platformc's staging)"
            name = os.path.join(str(label), rel) if rel != "." else str(label)
            break
    reason = exc.strerror or str(exc)
    where = f"{name}: " if name else ""
    return FileSystemError(f"cannot write the output: {where}{reason}{what}")


# ------------------------------------------------------------------------------------------ manifest

def _manifest_problem(label, what: str) -> WriteError:
    return WriteError(f"{label}/{MANIFEST} {what}; restore it from git (or delete it to start over)")


def _read_manifest(root: Path, label=None) -> dict:
    return _load_manifest(Path(root), label or root)[0]


def _load_manifest(real: Path, label) -> tuple[dict, bytes | None]:
    """(files, raw bytes) of the manifest, every entry checked; ({}, None) when there is none."""
    try:
        fd = os.open(real / MANIFEST, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return {}, None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _manifest_problem(label, "is a symbolic link") from None
        raise _manifest_problem(label, f"is unreadable ({exc.strerror})") from None
    try:
        raw = _read_fd(fd)
    except OSError as exc:
        raise _manifest_problem(label, f"is unreadable ({exc.strerror})") from None
    finally:
        os.close(fd)
    try:
        data = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise _manifest_problem(label, f"is not valid JSON ({str(exc).splitlines()[0]})") from None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        raise _manifest_problem(label, "has no \"files\" mapping")
    for rel, owner in files.items():
        try:
            safe_relpath(rel)
        except WriteError:
            raise WriteError(f"{label}/{MANIFEST} lists {rel!r}, which is not a plain path inside {label}/; "
                             f"refusing to follow it (restore the manifest from git)") from None
        if not isinstance(owner, str):
            raise _manifest_problem(label, f"gives {rel!r} the owner {owner!r}, not a string")
    return dict(files), raw


def _manifest_bytes(files: dict, digests: dict | None = None, inputs: str | None = None) -> bytes:
    """The manifest: exactly `json.dumps(body, indent=2, sort_keys=True) + "\n"` (tests hold it to that), written in
    encoded blocks of entries. json's indenting encoder is its pure-Python one and kept every chunk of ~9,000 files
    (both mappings) alive until its join: at 120 regions the first manifest raised the run's peak by ~10 MiB, the
    largest step of the whole commit; the blocks raise it by about the manifest's own size."""
    rels = sorted(files)
    out = [b'{\n  "files": ']
    try:
        _json_blocks(((r, files[r]) for r in rels), out)
        out.append(b',\n  "generator": "platformc"')
        if inputs:
            out.append(f',\n  "inputs": {_json_str(inputs)}'.encode())
        out.append(b',\n  "note": "files platformc wrote here; do not edit"')
        if digests is not None:
            out.append(b',\n  "sha256": ')
            _json_blocks(((r, digests[r]) for r in rels if r in digests), out)
    except TypeError:  # a key or value that is not a string: never in platformc's own use; json's way
        return _manifest_bytes_json(files, digests, inputs)
    out.append(b"\n}\n")
    return b"".join(out)


def _json_blocks(pairs, out: list, block: int = 256) -> None:
    """A mapping of strings at depth 1 of an indent=2 document (json's layout), appended to `out` as encoded blocks."""
    lines, lead = [], b"{\n    "
    for k, v in pairs:
        lines.append(f"{_json_str(k)}: {_json_str(v)}")
        if len(lines) == block:
            out.append(lead + ",\n    ".join(lines).encode())
            lines, lead = [], b",\n    "
    if lines:
        out.append(lead + ",\n    ".join(lines).encode())
        lead = b""
    out.append(b"{}" if lead == b"{\n    " else b"\n  }")


def _manifest_bytes_json(files: dict, digests: dict | None = None, inputs: str | None = None) -> bytes:
    body = {"generator": "platformc", "note": "files platformc wrote here; do not edit",
            "files": dict(sorted(files.items()))}
    if inputs:  # what the tree was compiled from (noop.inputs_fingerprint): `platformc diff` trusts it only on a match
        body["inputs"] = inputs
    if digests is not None:  # the bytes platformc wrote: the proof a file may be pruned (_provably_ours)
        body["sha256"] = {rel: digests[rel] for rel in sorted(files) if rel in digests}
    return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()


_HEX64 = frozenset("0123456789abcdef")


def _recorded_inputs(raw: bytes | None) -> str | None:
    if not raw:
        return None
    try:
        got = json.loads(raw.decode("utf-8")).get("inputs")
    except (ValueError, AttributeError):
        return None
    return got if isinstance(got, str) else None


def _recorded_digests(raw: bytes | None) -> dict:
    """rel -> SHA-256 the manifest records for the bytes platformc wrote (entries that are not one are ignored:
    such a file cannot be proven platformc's, so it is never pruned)."""
    if not raw:
        return {}
    got = json.loads(raw.decode("utf-8")).get("sha256")
    if not isinstance(got, dict):
        return {}
    return {rel: d for rel, d in got.items() if isinstance(d, str) and len(d) == 64 and _HEX64.issuperset(d)}


def _provably_ours(real: Path, root, rel: str, digest: str | None) -> None:
    """WriteError unless removing the file at rel loses nothing platformc did not write: its bytes are the ones the
    manifest records (SHA-256), or, for an entry with no digest (a manifest from before digests), git holds exactly
    these bytes at HEAD, so they can be restored. A manifest entry alone (a bad merge, a hostile PR, a file edited
    since) never gets a file deleted."""
    try:
        fd = os.open(real / rel, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        raise FileSystemError(f"cannot read {root}/{rel}: {exc.strerror}") from None
    try:
        data = _read_fd(fd)
    finally:
        os.close(fd)
    if digest is not None and hashlib.sha256(data).hexdigest() == digest:
        return
    if digest is None and _committed_as_is(real / rel, data):
        return
    why = ("has changed since platformc wrote it" if digest is not None else
           "has no record of the bytes platformc wrote (and git does not hold them at HEAD)")
    raise WriteError(f"{root}/{MANIFEST} lists {rel!r} to prune, but {root}/{rel} {why}: platformc cannot "
                     f"prove it wrote that file, so it will not remove it; delete it yourself if it is no longer "
                     f"needed, or restore the manifest from git")


def _committed_as_is(path: Path, data: bytes) -> bool:
    """True when git's HEAD holds exactly these bytes at this path (the blob id of the bytes read): removing the
    file loses nothing. One `git rev-parse` per such file; only entries without a digest get here."""
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"HEAD:./{path.name}"], cwd=path.parent,
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return out.returncode == 0 and out.stdout.strip() == blob


def _read_fd(fd: int, size: int = 0) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, max(size + 1, 1 << 16))
        if not b:
            return b"".join(chunks)
        chunks.append(b)


# ---------------------------------------------------------------------------------------------- plan

class _Tree:
    """What is on disk under a root, asked lazily and cached per directory (lstat, never following links)."""

    def __init__(self, real: Path, label):
        self.real, self.label = real, label
        self.dirs: dict = {}  # rel dir -> "dir" | "missing"
        self.walked: dict | None = None  # manifest-less root: rel -> "dir" | "link" | "file" | "other"

    def walk(self) -> None:
        """A manifest-less root is listed once: then no per-file system call is needed."""
        found = {}
        if os.path.isdir(self.real):
            stack = [""]
            while stack:
                d = stack.pop()
                with os.scandir(self.real / d if d else self.real) as it:
                    for e in it:
                        rel = f"{d}/{e.name}" if d else e.name
                        if e.is_dir(follow_symlinks=False):
                            found[rel] = "dir"
                            stack.append(rel)
                        else:
                            found[rel] = "link" if e.is_symlink() else "file" if e.is_file(follow_symlinks=False) else "other"
        self.walked = found

    def kind(self, rel: str) -> str | None:
        """'dir', 'link', 'file', 'other', or None when nothing is there (its directories checked first)."""
        if self.walked is not None:
            return self.walked.get(rel)
        try:
            m = os.lstat(self.real / rel).st_mode
        except FileNotFoundError:
            return None
        return "dir" if stat.S_ISDIR(m) else "link" if stat.S_ISLNK(m) else "file" if stat.S_ISREG(m) else "other"

    def dir_state(self, rel_dir: str, for_rel: str) -> str:
        """'dir' or 'missing'; WriteError when a file or a symbolic link stands where a directory goes."""
        if rel_dir == "":
            return "dir" if os.path.isdir(self.real) else "missing"
        got = self.dirs.get(rel_dir)
        if got is not None:
            return got
        parent = rel_dir.rpartition("/")[0]
        if self.dir_state(parent, for_rel) == "missing":
            got = "missing"
        else:
            k = self.kind(rel_dir)
            if k in ("dir", None):
                got = "dir" if k else "missing"
            elif k == "link":
                raise WriteError(f"{self.label}/{rel_dir} is a symbolic link where platformc needs a directory "
                                 f"(for {self.label}/{for_rel}); platformc does not follow links: replace it "
                                 f"with a directory or move it away")
            else:
                raise WriteError(f"{self.label}/{rel_dir} is a file where platformc needs a directory "
                                 f"(for {self.label}/{for_rel}); move it away")
        self.dirs[rel_dir] = got
        return got


def _scope(owners_in_scope):
    if owners_in_scope is None:
        return lambda owner: True
    if callable(owners_in_scope):
        return owners_in_scope
    return owners_in_scope.__contains__


def _foreign(label, rel: str, kind: str, same: bool) -> WriteError:
    target = f"{label}/{rel}"
    if kind == "link":
        return WriteError(f"{target} is a symbolic link platformc did not write (platformc writes regular files "
                          f"and never follows links); remove it or move it away")
    if kind == "dir":
        return WriteError(f"{target} is a directory where platformc writes a file; move it away")
    if same:
        return WriteError(f"refusing to adopt {target}: platformc did not write it (not in {MANIFEST}), although "
                          f"it holds the very bytes platformc would write; delete it or move it away")
    return WriteError(f"refusing to overwrite {target}: platformc did not write it (not in {MANIFEST}); "
                      f"move it away or delete it")


def plan_write(root: Path, outputs: dict, owners_in_scope=None) -> Plan:
    """outputs: {rel path: (owner, text)}. owners_in_scope: owners whose stale files are pruned this run
    (None = all, a set, or a predicate). Reads only; WriteError when the root cannot be written as asked."""
    planner = Planner(root, owners_in_scope)
    for rel in sorted(outputs):
        owner, text = outputs[rel]
        planner.add_file(rel, owner, text)
    return planner.finish()


class Planner:
    """Plans one root file by file, as the outputs arrive (job by job). Each file is encoded once, hashed, and
    compared with the disk; what must be written is kept in `plan.write` (mode "keep": plan_write, then
    commit), written at once to the root's staging directory and released (mode "stage": a Transaction), or
    described and released (mode "check": --check). So a run holds one job's text at a time, not the platform's."""

    def __init__(self, root: Path, owners_in_scope=None, mode: str = "keep", txid: str | None = None,
                 inputs: str | None = None, full: bool = False):
        """inputs: the run's noop.inputs_fingerprint, recorded in the manifest by a full run (full=True); a
        partial run keeps the recorded one only when it is the same (else the tree's inputs are unknown)."""
        self.inputs, self.full = inputs, full
        root = Path(root)
        real = _real_root(root)
        self.plan = plan = Plan(root=root, real=real, txid=txid if mode == "stage" else None)
        self.mode = mode
        self.old, self.old_raw = _load_manifest(real, root)
        self.recorded = _recorded_digests(self.old_raw)
        plan.pending = os.path.lexists(real / JOURNAL)
        self.in_scope = _scope(owners_in_scope)
        self.tree = _Tree(real, root)
        if not self.old:
            self.tree.walk()  # nothing here is ours: list the root once (empty or absent: free)
        self.owners: dict = {}  # rel -> owner, for the outputs of this run (the scope is read at finish: a
        # --region run's scope is the owners it compiled, known once every job is in)
        self.mkdirs: set = set()
        self.staging: Path | None = None

    def add(self, owner: str, files: dict) -> None:
        """One job's files: {rel path: text}."""
        for rel, text in files.items():
            self.add_file(rel, owner, text)

    def add_file(self, rel: str, owner: str, text: str) -> None:
        plan, tree, real, root = self.plan, self.tree, self.plan.real, self.plan.root
        safe_relpath(rel)
        if rel in self.owners:
            raise RuntimeError(f"{root}/{rel} is emitted by both {self.owners[rel]} and {owner}")
        self.owners[rel] = owner
        data = text.encode("utf-8")
        plan.sha[rel] = hashlib.sha256(data).hexdigest()
        parent = rel.rpartition("/")[0]
        if tree.dir_state(parent, rel) == "missing":
            d = parent
            while d and d not in self.mkdirs and tree.dir_state(d, rel) == "missing":
                self.mkdirs.add(d)
                d = d.rpartition("/")[0]
            self._put(rel, data, None)
            return
        if rel not in self.old:
            kind = tree.kind(rel)
            if kind is not None:
                same = kind == "file" and _read_or_none(real / rel) == data
                raise _foreign(root, rel, kind, same)
            self._put(rel, data, None)
            return
        current = _read_own(real / rel, root, rel, len(data))
        if current == data:
            plan.unchanged += 1
        else:
            self._put(rel, data, current)

    def _put(self, rel: str, data: bytes, current: bytes | None) -> None:
        """A file to write; current: its bytes on disk (None: nothing there, _DIFFERENT: not read)."""
        plan = self.plan
        if self.mode == "keep":
            plan.write[rel] = data
            if current is None:
                plan.new.add(rel)
        elif self.mode == "check":
            plan.write[rel] = None
            if current is _DIFFERENT:
                current = _read_bytes(plan.real / rel)
            plan.report[rel] = _describe_file(str(plan.root), rel, current, data)
        else:
            if self.staging is None:
                self.staging = plan.real / f"{STAGING_PREFIX}{plan.txid}"
                os.mkdir(self.staging)
            idx = len(plan.staged)
            if idx % NEW_BUCKET == 0:
                os.mkdir(f"{self.staging}/g{idx // NEW_BUCKET}")
            _write_new(_npath(self.staging, idx, None), data)  # released after: the journal names it by its index
            plan.write[rel] = None
            plan.staged[rel] = idx
            if current is not None:
                plan.replaced.add(rel)

    def finish(self) -> Plan:
        """Every output added: what to prune, and the manifest."""
        plan, tree, real, root = self.plan, self.tree, self.plan.real, self.plan.root
        for rel, owner in sorted(self.old.items()):
            if rel in self.owners or not self.in_scope(owner):
                continue
            try:
                if tree.dir_state(rel.rpartition("/")[0], rel) == "missing":
                    continue
            except WriteError as exc:
                raise WriteError(f"{root}/{MANIFEST} lists {rel!r}, but {str(exc).split(' (for ')[0]}; "
                                 f"refusing to follow it") from None
            kind = tree.kind(rel)
            if kind is None:
                continue
            if kind == "dir":
                raise WriteError(f"{root}/{rel} is a directory where platformc's file was (it is to be pruned); "
                                 f"move it away")
            if kind != "file":
                raise WriteError(f"{root}/{MANIFEST} lists {rel!r}, but {root}/{rel} is not a regular file "
                                 f"platformc wrote ({kind}); refusing to remove it: move it away")
            _provably_ours(real, root, rel, self.recorded.get(rel))
            plan.remove.append(rel)
        new_manifest = {p: o for p, o in self.old.items() if not self.in_scope(o)}
        digests = {p: self.recorded[p] for p in new_manifest if p in self.recorded}
        new_manifest.update(self.owners)
        digests.update(plan.sha)
        plan.mkdirs = sorted(self.mkdirs)
        plan.manifest = new_manifest
        old_inputs = _recorded_inputs(self.old_raw)
        inputs = self.inputs if self.full else (old_inputs if old_inputs and old_inputs == self.inputs else None)
        plan.manifest_bytes = _manifest_bytes(new_manifest, digests, inputs)
        if self.mode == "check":  # the inputs record is no output: a tree is not stale for it alone
            stale = _manifest_bytes(new_manifest, digests, old_inputs) != self.old_raw
        else:
            stale = plan.manifest_bytes != self.old_raw
        if stale:
            plan.write[MANIFEST] = plan.manifest_bytes
        return plan

    def discard(self) -> None:
        """Drop what was staged (the run stopped before its journal existed)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
            self.staging = None


class Transaction:
    """One generate run over several roots, planned job by job: each job's files are compared with the disk and
    what changes is staged at once (the bytes are then released), so memory holds one job's text, never the
    platform's. Used inside `session` (every root locked); `commit` then writes the journals and makes the
    decision as `commit()` below does; any failure before that removes the staging and changes nothing."""

    def __init__(self, roots: dict, owners_in_scope=None, inputs: str | None = None, full: bool = False):
        self.txid = os.urandom(8).hex()
        self.labels = {}
        self.planners: dict = {}
        try:
            for name, root in roots.items():
                self.planners[name] = Planner(root, owners_in_scope, mode="stage", txid=self.txid, inputs=inputs,
                                              full=full)
                self.labels[self.planners[name].plan.real] = Path(root)
        except BaseException:
            self.abort()
            raise

    def add(self, name: str, owner: str, files: dict) -> None:
        try:
            self.planners[name].add(owner, files)
        except OSError as exc:
            self.abort()
            raise _fs_error(exc, self.labels, "; nothing was changed") from None
        except BaseException:
            self.abort()
            raise

    def commit(self) -> dict:
        """Plan the prunes and manifests, then write every root as one transaction; {name: Plan}."""
        try:
            plans = {name: p.finish() for name, p in self.planners.items()}
        except OSError as exc:
            self.abort()
            raise _fs_error(exc, self.labels, "; nothing was changed") from None
        except BaseException:
            self.abort()
            raise
        try:
            commit(list(plans.values()))
        except BaseException:
            self.abort(journaled=False)  # a root whose journal exists is the journal's to finish (or the next run's)
            raise
        return plans

    def abort(self, journaled: bool = True) -> None:
        """Remove the staging; journaled=False: only where no journal of this transaction names it."""
        for p in self.planners.values():
            if journaled or not _journal_names(p.plan.real, self.txid):
                p.discard()


def _journal_names(real: Path, txid: str) -> bool:
    try:
        return json.loads((real / JOURNAL).read_bytes()).get("txid") == txid
    except (OSError, ValueError, AttributeError):
        return False


def _read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


_DIFFERENT = b"\0<not the bytes platformc would write>"


def _read_own(path: Path, label, rel: str, size: int) -> bytes | None:
    """Current bytes of a file the manifest says is ours (None: gone). A size mismatch needs no read."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _foreign(label, rel, "link", False) from None
        raise FileSystemError(f"cannot read {label}/{rel}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise _foreign(label, rel, "dir", False)
        if not stat.S_ISREG(st.st_mode):
            raise WriteError(f"{label}/{rel} is not a regular file; move it away")
        if st.st_size != size:
            return _DIFFERENT  # changed: no need to read it
        return _read_fd(fd, st.st_size)
    finally:
        os.close(fd)


# ------------------------------------------------------------------------------------ locks, sessions

_held: dict = {}  # real root -> [thread id, fd, depth]
_held_guard = threading.Lock()


def _acquire(real: Path, label, created: list) -> None:
    me = threading.get_ident()
    with _held_guard:
        h = _held.get(real)
        if h is not None:
            if h[0] != me:
                raise WriteError(f"another platformc run holds {label}/{LOCK}; wait for it to finish")
            h[2] += 1
            return
    if not os.path.isdir(real):
        top = real
        while not os.path.lexists(top.parent):
            top = top.parent
        try:
            os.makedirs(real, exist_ok=True)
        except OSError as exc:
            raise _fs_error(exc, {}, f" (creating {label})") from None
        created.append((real, top))
    try:
        fd = os.open(real / LOCK, os.O_RDWR | os.O_CREAT | _CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM) or not os.path.exists(real / LOCK):
            raise _fs_error(exc, {real: label}) from None
        fd = os.open(real / LOCK, os.O_RDONLY | _CLOEXEC)  # a read-only tree can still be locked
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WriteError(f"another platformc run holds {label}/{LOCK}; wait for it to finish") from None
    with _held_guard:
        _held[real] = [me, fd, 1]


def _release(real: Path) -> None:
    with _held_guard:
        h = _held[real]
        h[2] -= 1
        if h[2]:
            return
        del _held[real]
    os.close(h[1])


@contextmanager
def session(roots, labels: dict | None = None):
    """Lock every root (creating it if need be), finish any interrupted transaction found there, sweep
    staging directories a killed run left. Re-entrant in one thread; another run gets WriteError."""
    reals = {}
    for r in roots:
        reals[_real_root(Path(r))] = (labels or {}).get(r, r)
    acquired, created = [], []
    ok = False
    me = threading.get_ident()
    with _held_guard:  # roots this thread holds already were recovered and swept when first locked: a
        # nested session (commit inside generate's) must not sweep the staging the outer one is filling
        held = {real for real in reals if real in _held and _held[real][0] == me}
    try:
        for real in sorted(reals):
            _acquire(real, reals[real], created)
            acquired.append(real)
        for real in sorted(reals):
            if real not in held:
                _recover(real, reals[real], acquired)
                _sweep(real)
        ok = True
        yield
    finally:
        for real in reversed(acquired):
            _release(real)
        if not ok:  # refused before anything was written: leave no root we created behind
            for real, top in created:
                _remove_if_only_lock(real, top)


@contextmanager
def locked(root: Path):
    """Hold an exclusive lock on the root so two runs never interleave their writes."""
    with session([root]):
        yield


def _remove_if_only_lock(real: Path, top: Path) -> None:
    try:
        if os.listdir(real) == [LOCK]:
            os.unlink(real / LOCK)
        d = real
        while _is_within(str(d), str(top)):
            os.rmdir(d)
            d = d.parent
    except OSError:
        pass


def _sweep(real: Path) -> None:
    """Staging left by a killed run (its journal, if any, was handled by _recover): removed."""
    try:
        entries = list(os.scandir(real))
    except OSError:
        return
    for e in entries:
        if e.name.startswith(STAGING_PREFIX) or e.name == JOURNAL + ".tmp":
            try:
                if e.is_dir(follow_symlinks=False):
                    shutil.rmtree(e.path)
                else:
                    os.unlink(e.path)
            except OSError:
                pass


# ------------------------------------------------------------------------------------------- journal

def _write_journal(real: Path, journal: dict) -> None:
    tmp = real / (JOURNAL + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _NOFOLLOW | _CLOEXEC, 0o644)
    try:
        try:
            _write_all(fd, json.dumps(journal, sort_keys=True).encode())
        finally:
            os.close(fd)
        os.replace(tmp, real / JOURNAL)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _read_journal(real: Path, label) -> dict | None:
    try:
        raw = (real / JOURNAL).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _fs_error(exc, {real: label}) from None

    def damaged(why):
        return WriteError(f"{label}/{JOURNAL} records an interrupted write but is damaged ({why}); platformc "
                          f"cannot tell how to finish it: compare {label} with git, then delete the journal")
    try:
        j = json.loads(raw)
        assert isinstance(j, dict) and j.get("platformc") == "journal"
        staging = j["staging"]
        assert isinstance(staging, str) and staging.startswith(STAGING_PREFIX) and "/" not in staging
        for rel in j["new"] + [e[0] for e in j["replace"] + j["remove"]] + j["mkdirs"]:
            safe_relpath(rel)
        for e in j["replace"] + j["remove"] + ([j["manifest"]] if j["manifest"] else []):
            assert isinstance(e[1], int)
        assert j["state"] in ("prepare", "commit", "rollback") and isinstance(j["roots"], list)
    except (ValueError, KeyError, TypeError, IndexError, AssertionError, WriteError) as exc:
        raise damaged(type(exc).__name__) from None
    return j


def _recover(real: Path, label, acquired: list) -> None:
    """Finish the transaction a killed or failed run left: forward if it was decided, else back."""
    j = _read_journal(real, label)
    if j is None:
        return
    roots = [Path(r) for r in j["roots"]]
    for other in roots:
        if other != real and other not in acquired and os.path.isdir(other):
            _acquire(other, other, [])
            acquired.append(other)
    primary = Path(j["primary"])
    pj = j if primary == real else (_read_journal(primary, primary) if os.path.isdir(primary) else None)
    forward = pj is not None and pj["txid"] == j["txid"] and pj["state"] == "commit"
    journals = []
    for r in roots:
        rj = j if r == real else (_read_journal(r, r) if os.path.isdir(r) else None)
        if rj is not None and rj["txid"] == j["txid"]:
            journals.append((r, rj))
    labels = {r: (label if r == real else r) for r, _ in journals}
    failed = None
    try:
        if forward:
            try:
                for r, rj in journals:
                    _forward(r, rj)
            except OSError as exc:  # cannot finish it: undo it, and say why
                failed, forward = exc, False
                pj["state"] = "rollback"
                _write_journal(primary, pj)
        if not forward:
            for r, rj in reversed(journals):
                _backward(r, rj)
    except OSError as exc:
        raise _fs_error(exc, labels, f"; an interrupted write in {label} could not be finished "
                                     f"(the next run tries again)") from None
    _finish(journals, pruned=forward)
    if failed is not None:
        raise _fs_error(failed, labels, "; an interrupted write could not be finished and was rolled back")


def _finish(journals: list, pruned: bool) -> None:
    for r, rj in journals:
        if pruned:
            for rel, _ in rj["remove"]:
                _prune_empty_dirs(r, (r / rel).parent)
        shutil.rmtree(r / rj["staging"], ignore_errors=True)
    for r, rj in journals[1:] + journals[:1]:  # the primary's journal (the decision) goes last
        try:
            os.unlink(r / JOURNAL)
        except OSError:
            pass


def _forward(real: Path, j: dict, live: bool = False) -> None:
    """Move the staged files into place (live: by the run that staged them, which knows each one is there;
    otherwise a recovery rolling an interrupted run forward, which skips what that run moved already)."""
    st = f"{real}/{j['staging']}"
    for rel, idx, had_old in j["replace"]:
        _forward_replace(f"{real}/{rel}", _npath(st, idx, j), f"{st}/b{idx}", had_old, live)
    for rel, idx in j["remove"]:
        dest, b = f"{real}/{rel}", f"{st}/b{idx}"
        if os.path.lexists(dest) and not os.path.lexists(b):
            os.rename(dest, b)  # kept in staging until the commit is complete: a rollback moves it back
    if j["manifest"]:
        idx, had_old = j["manifest"]
        _forward_replace(f"{real}/{MANIFEST}", _npath(st, idx, j), f"{st}/b{idx}", had_old, live)


def _forward_replace(dest: str, n: str, b: str, had_old: bool, live: bool = False) -> None:
    # live: n was staged by this run, so it is there (a missing one fails the replace, and the run rolls back);
    # not asking saves one lstat per file (9,000 at 120 regions, ~35 ms)
    if not live and not os.path.lexists(n):
        return  # done already
    if had_old and not os.path.lexists(b) and os.path.lexists(dest):
        try:
            os.link(dest, b)  # the old bytes, for a rollback: no copy
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
                raise
            os.rename(dest, b)
    elif not had_old and os.path.lexists(dest):  # planned where nothing was: never replace what appeared since
        raise FileExistsError(errno.EEXIST, "File exists (appeared while platformc was writing)", str(dest))
    os.replace(n, dest)


def _backward(real: Path, j: dict) -> None:
    st = f"{real}/{j['staging']}"
    entries = list(j["replace"])
    if j["manifest"]:
        entries.append([MANIFEST, *j["manifest"]])
    for rel, idx, had_old in reversed(entries):
        dest, n, b = f"{real}/{rel}", _npath(st, idx, j), f"{st}/b{idx}"
        if os.path.lexists(n):  # never renamed into place
            if had_old and os.path.lexists(b) and not os.path.lexists(dest):
                os.rename(b, dest)
            continue
        if had_old:
            if os.path.lexists(b):
                os.replace(b, dest)
        else:
            _unlink_regular(dest)
    for rel, idx in reversed(j["remove"]):
        dest, b = f"{real}/{rel}", f"{st}/b{idx}"
        if os.path.lexists(b) and not os.path.lexists(dest):
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.rename(b, dest)
    for rel in reversed(j["new"]):
        _unlink_regular(real / rel)
    for d in reversed(j["mkdirs"]):
        try:
            os.rmdir(real / d)
        except OSError:
            pass


def _unlink_regular(path: Path) -> None:
    try:
        if stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except FileNotFoundError:
        pass


# -------------------------------------------------------------------------------------------- commit

def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


NEW_BUCKET = 64  # staged new bytes go to <staging>/g<index // 64>/n<index>: one flat directory of every file
# made inode allocation the slowest part of a first write on ext4 (measured: ~0.85 s of sys time for 965
# files in one directory, 0.2-0.5 s in directories of 64, about what writing them in place costs)


def _npath(st, idx: int, j: dict | None) -> str:
    """Where index idx's new bytes are staged (a journal written before buckets names them flat). A str, as every
    path of the per-file loops: building pathlib objects for them cost ~0.3 s at 120 regions (9,000 files)."""
    if j is not None and not j.get("nbucket"):
        return f"{st}/n{idx}"
    return f"{st}/g{idx // NEW_BUCKET}/n{idx}"


def _journal_for(plan: Plan, txid: str, primary: Path, roots: list) -> dict:
    replace, remove, manifest = [], [], None
    idx = len(plan.staged)  # the indexes below are taken by the files a Transaction staged while planning
    for rel in sorted(plan.write):
        if rel in plan.staged:
            replace.append([rel, plan.staged[rel], rel in plan.replaced])
            continue
        if rel in plan.new:
            continue
        if rel == MANIFEST:
            manifest = [idx, os.path.lexists(plan.real / MANIFEST)]
        else:
            replace.append([rel, idx, True])
        idx += 1
    for rel in plan.remove:
        remove.append([rel, idx])
        idx += 1
    return {"platformc": "journal", "txid": txid, "primary": str(primary), "roots": [str(r) for r in roots],
            "state": "prepare", "staging": f"{STAGING_PREFIX}{txid}", "nbucket": NEW_BUCKET, "mkdirs": plan.mkdirs,
            "new": sorted(plan.new), "replace": replace, "remove": remove, "manifest": manifest}


def _materialize(plan: Plan, j: dict) -> None:
    """Prepare one root: directories, new files in place, changed files and the manifest in staging (files a
    Transaction staged while planning are there already)."""
    real = plan.real
    for d in j["mkdirs"]:
        path = f"{real}/{d}"  # a str: a Path per directory cost ~30 ms of parsing at 120 regions (4,000 of them)
        try:
            os.mkdir(path)
        except FileExistsError:
            if not os.path.isdir(path) or os.path.islink(path):
                raise
    st = real / j["staging"]
    rel = None
    try:
        for rel in j["new"]:
            _write_new(real / rel, plan.write[rel])
        for rel, idx, _ in j["replace"]:
            if rel not in plan.staged:
                path = Path(_npath(st, idx, j))
                os.makedirs(path.parent, exist_ok=True)
                path.write_bytes(plan.write[rel])
        if j["manifest"]:
            rel = MANIFEST
            path = Path(_npath(st, j["manifest"][0], j))
            os.makedirs(path.parent, exist_ok=True)
            path.write_bytes(plan.write[MANIFEST])
    except OSError as exc:
        if exc.filename is None and rel is not None:  # os.write names no file: say which one it was
            raise OSError(exc.errno, exc.strerror, str(real / rel)) from exc
        raise


def commit(plans: list) -> None:
    """Apply every plan as one transaction (see the module docstring). FileSystemError when the file
    system fails: every root is then as it was (or, if even the rollback failed, the next run finishes it)."""
    plans = sorted((p for p in plans if p.write or p.remove), key=lambda p: str(p.real))
    if not plans:
        return
    reals = [p.real for p in plans]
    for i, a in enumerate(reals):
        for b in reals[i + 1:]:
            if _is_within(str(a), str(b)) or _is_within(str(b), str(a)):
                raise UsageError(f"refusing to write {plans[i].root} and another output directory inside or "
                                 f"equal to it ({a}, {b}): the output directories overlap")
    with session([p.root for p in plans]):
        _transaction(plans)


def _transaction(plans: list) -> None:
    txids = {p.txid for p in plans if p.txid}
    if len(txids) > 1:
        raise RuntimeError("plans staged by different transactions cannot be committed together")
    txid = txids.pop() if txids else os.urandom(8).hex()
    reals = [p.real for p in plans]
    primary = reals[0]
    labels = {p.real: p.root for p in plans}
    journals = [_journal_for(p, txid, primary, reals) for p in plans]
    prepared = []
    try:
        for p, j in zip(plans, journals):  # the primary's journal first: a secondary never exists without it
            try:
                os.mkdir(p.real / j["staging"])
            except FileExistsError:
                if not p.staged:  # a Transaction's staging, made while planning; anything else is not ours
                    raise
            prepared.append((p.real, j))
            _write_journal(p.real, j)
        for p, j in zip(plans, journals):
            _materialize(p, j)
    except OSError as exc:
        _undo(prepared, labels, exc)
    journals[0]["state"] = "commit"
    try:
        _write_journal(primary, journals[0])  # the decision: from here on the next run rolls forward
    except OSError as exc:
        _undo(prepared, labels, exc)
    try:
        for p, j in zip(plans, journals):
            _forward(p.real, j, live=True)
    except OSError as exc:
        journals[0]["state"] = "rollback"
        try:
            _write_journal(primary, journals[0])
        except OSError:
            pass
        _undo(prepared, labels, exc)
    _finish(prepared, pruned=True)


def _undo(prepared: list, labels: dict, cause: OSError):
    try:
        for real, j in reversed(prepared):
            _backward(real, j)
    except OSError as exc:
        raise _fs_error(cause, labels, f"; rolling back failed too ({exc.strerror}): the next platformc "
                                       f"generate finishes the rollback") from None
    _finish(prepared, pruned=False)
    raise _fs_error(cause, labels, "; nothing was changed") from None


def apply(plan: Plan) -> None:
    """Write one planned root (a one-root transaction)."""
    commit([plan])


def write_file_atomic(path: Path, data: bytes) -> None:
    """Replace one file atomically (temp file beside it, then rename): never a truncated file."""
    path = Path(path)
    tmp = path.parent / f".{path.name}.platformc-tmp-{os.urandom(4).hex()}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_new(tmp, data)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise FileSystemError(f"cannot write {path}: {exc.strerror or exc}; {path} was left as it was") from None


def _prune_empty_dirs(root: Path, d: Path) -> None:
    while d != root and root in d.parents:
        try:
            d.rmdir()  # only succeeds when empty: foreign files keep their directory
        except OSError:
            return
        d = d.parent


# -------------------------------------------------------------------------------------------- report

def describe(plan: Plan, root_label: str, diff_lines: int = DIFF_LINES) -> list[str]:
    """Human report of a stale tree: one line per file plus a capped unified diff of each."""
    lines = []
    if plan.pending:
        lines.append(f"interrupted: {root_label}/{JOURNAL} records a write that did not finish; "
                     f"`platformc generate` completes it")
    for rel in sorted(plan.write):
        if rel == MANIFEST:
            continue
        if rel in plan.report and root_label == str(plan.root):
            lines.extend(plan.report[rel])
            continue
        data = plan.write[rel]
        if data is None:  # staged or described while planning: the bytes were released
            lines.append(f"changed: {root_label}/{rel}")
            continue
        lines.extend(_describe_file(root_label, rel, _read_bytes(plan.root / rel), data, diff_lines))
    for rel in plan.remove:
        lines.append(f"no longer generated: {root_label}/{rel}")
    if not lines and MANIFEST in plan.write:
        lines.append(f"stale: {root_label}/{MANIFEST}")
    return lines


def _describe_file(root_label: str, rel: str, old: bytes | None, data: bytes, diff_lines: int = DIFF_LINES) -> list[str]:
    kind = "missing" if old is None else "stale"
    lines = [f"{kind}: {root_label}/{rel}"]
    diff = list(difflib.unified_diff(
        (old or b"").decode("utf-8", "replace").splitlines(), data.decode("utf-8").splitlines(),
        f"{root_label}/{rel} (on disk)", f"{root_label}/{rel} (from the spec)", lineterm="", n=1))
    lines.extend("    " + x for x in diff[:diff_lines])
    if len(diff) > diff_lines:
        lines.append(f"    ... {len(diff) - diff_lines} more diff lines")
    return lines


def _read_bytes(p: Path) -> bytes | None:
    try:
        return p.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        return None
