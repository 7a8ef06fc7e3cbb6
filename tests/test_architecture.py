"""The layout is the architecture: a target imports the IR and the shared formatters, never another target."""

from __future__ import annotations

import ast
from pathlib import Path

from compiler.targets import TARGETS

TARGETS_DIR = Path(__file__).resolve().parent.parent / "compiler" / "targets"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_every_target_is_a_sub_package():
    for name, module in TARGETS.items():
        assert module == f"compiler.targets.{name}"
        assert (TARGETS_DIR / name / "__init__.py").is_file(), name
    assert not [p.name for p in TARGETS_DIR.glob("*.py") if p.name != "__init__.py"]


def test_no_target_imports_another():
    broken = []
    for name in TARGETS:
        for path in sorted((TARGETS_DIR / name).rglob("*.py")):
            for mod in _imports(path):
                parts = mod.split(".")
                if parts[:2] == ["compiler", "targets"] and len(parts) > 2 and parts[2] in TARGETS and parts[2] != name:
                    broken.append(f"{path.relative_to(TARGETS_DIR.parent.parent)} imports {mod}")
    assert not broken, "\n".join(broken)
