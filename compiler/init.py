"""`platformc init [FILE]`: a small, valid, commented spec to start from.

The starter (templates/init/platform.yaml) is two AWS regions in one geo, one node pool, one tier and two
services, every line commented; it validates, generates, and `platformc verify` finds every connection
(tests/test_init.py holds it to that). It is written atomically and never over an existing file.
"""

from __future__ import annotations

from pathlib import Path

from compiler.errors import UsageError
from compiler.render import TEMPLATES

STARTER = TEMPLATES / "init" / "platform.yaml"


def starter_text() -> str:
    return STARTER.read_text(encoding="utf-8")


def write_starter(path: str | Path, force: bool = False) -> Path:
    """Write the starter spec to `path`; refuses to replace a file unless `force`."""
    from compiler.writer import write_file_atomic
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{target} is a directory: name the spec file to write, e.g. {target / 'platform.yaml'}")
    if target.exists() and not force:
        raise UsageError(f"{target} already exists: pick another name, or pass --force to replace it")
    write_file_atomic(target, starter_text().encode("utf-8"))
    return target
