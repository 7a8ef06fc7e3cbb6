"""Small value types shared by the data-tier modules: a setting with the reason it has its value."""

from __future__ import annotations

from compiler.records import dataclass
from compiler.ir.postgres_sizing import clamp  # noqa: F401 (the data tier's settings clamp with it)


@dataclass(frozen=True)
class Setting:
    """One directive: its name, value (bool, int, str or a list of arguments) and why it has that value.

    `why` is the formula or policy that produced the value; it is written as a comment above the
    directive and repeated in docs/regions/<region>.md.
    """

    name: str
    value: object
    why: str = ""


@dataclass(frozen=True)
class Section:
    title: str
    settings: tuple[Setting, ...]


def size_mb(mb: int) -> str:
    """A memory size as PostgreSQL/Redis-style text: whole gigabytes as `NGB`, else `NMB`."""
    return f"{mb // 1024}GB" if mb % 1024 == 0 else f"{mb}MB"




def duration_ms(ms: int) -> str:
    """A duration as PostgreSQL-style text: whole seconds as `Ns`, else `Nms`."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
