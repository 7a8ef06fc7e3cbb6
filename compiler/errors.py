"""Diagnostics and the exceptions that carry them.

Every problem platformc reports about its input is a `Diagnostic`: a stable code, a position in
the spec file and a dotted path to the field. The CLI prints them one per line as
`FILE:LINE:COL: path.to.field: [CODE] message` and exits 2. Anything else that goes wrong is a
bug: exit 1 with one line (``--debug`` shows the traceback).
"""

from __future__ import annotations

from compiler.records import dataclass
from typing import Iterable, Sequence

Path = tuple  # a path into the spec: keys and list indexes, e.g. ("regions", "us-east-1", "cidr")


def dotted(path: Sequence) -> str:
    """Render a spec path the way users write it: regions.us-east-1.zones[0]."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part)
            if not part.isprintable():  # a key with a newline or a control byte: one diagnostic stays one line
                part = repr(part)
            out += ("." if out else "") + part
    return out or "<root>"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One finding about the spec, positioned in its file."""

    file: str
    line: int
    col: int
    path: str
    code: str
    message: str
    severity: str = "error"  # "error" or "warning"

    def format(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        tag = f"[{self.code}]" if self.severity == "error" else f"warning [{self.code}]"
        return f"{where}: {self.path}: {tag} {_one_line(self.message)}"


def _one_line(text: str) -> str:
    """A message quoting the spec stays one line: control characters are shown as escapes."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class PlatformcError(Exception):
    """Base of every error platformc reports on purpose (exit 2)."""

    exit_code = 2


class SpecError(PlatformcError):
    """The spec is invalid: one or more positioned diagnostics."""

    def __init__(self, diagnostics: Iterable[Diagnostic]):
        self.diagnostics = sorted(set(diagnostics))
        super().__init__("\n".join(d.format() for d in self.diagnostics))


class UsageError(PlatformcError):
    """A command-line argument names something that does not exist (region, target, file)."""


class WriteError(PlatformcError):
    """The output tree cannot be written as asked (foreign file in the way, lock held, path escape, a
    manifest entry outside its root): refused before anything changed. Exit 3."""

    exit_code = 3


class FileSystemError(WriteError, OSError):
    """A file-system operation failed while writing (read-only, full disk, permission): the write was
    rolled back, or the next run finishes it. One line, exit 4; still an OSError for callers."""

    exit_code = 4
