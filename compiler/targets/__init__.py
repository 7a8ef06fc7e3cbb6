"""The emitter registry.

A target is one module in this package with:

    NAME = "kong"                      # the --target name
    def emit_region(plan, region) -> dict[str, str]     # paths relative to generated/ (optional)
    def emit_global(plan) -> dict[str, str]             # platform-wide files (optional)
    def docs_region(plan, region) -> str                # a Markdown section for docs/regions/<r>.md (optional)

Adding a target is that module, its templates under templates/<name>/, one line in TARGETS
below, and its tests. Nothing else changes.
"""

from __future__ import annotations

import difflib
import importlib.util
from types import ModuleType

from compiler.errors import UsageError

# name -> module path; imported lazily so a run that selects one target loads only that one.
TARGETS: dict[str, str] = {
    "terraform": "compiler.targets.terraform",
    "kubernetes": "compiler.targets.kubernetes",
    "helm": "compiler.targets.helm",
    "kong": "compiler.targets.kong",
    "datastores": "compiler.targets.datastores",
    "ansible": "compiler.targets.ansible",
    "monitoring": "compiler.targets.monitoring",
    "connections": "compiler.targets.connections",
    "lock": "compiler.targets.lock",
}


def available() -> list[str]:
    """Registered targets whose module exists (targets land one at a time)."""
    out = []
    for name, mod in TARGETS.items():
        if importlib.util.find_spec(mod) is not None:
            out.append(name)
    return out


def load(name: str) -> ModuleType:
    if name not in TARGETS:
        close = difflib.get_close_matches(name, list(TARGETS), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known targets: {', '.join(TARGETS)}"
        raise UsageError(f"unknown target {name!r}{hint}")
    return importlib.import_module(TARGETS[name])


def select(names: tuple[str, ...] | list[str] | None) -> list[ModuleType]:
    chosen = list(names) if names else available()
    return [load(n) for n in chosen]
