"""Golden files: tests/cases/<case>/platform.yaml compiled must equal tests/golden/<case>/ byte for byte.

tests/golden/<case>/generated/... and tests/golden/<case>/docs/... mirror the output roots
(each with its platformc manifest, so the comparison knows which file belongs to which region).
Refresh after an intended change with `make golden`, then review `git diff tests/golden`.

The reference case is the repository's own platform.yaml, whose expected output is the committed
generated/ and docs/ themselves: tests/golden/reference/{generated,docs} are links to them, so one
`make generate` refreshes both and reviewers read each change once.
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

from compiler import writer
from compiler.emit import emit
from compiler.pipeline import compile_file

ROOT = Path(__file__).resolve().parent
CASES = ROOT / "cases"
GOLDEN = ROOT / "golden"
UPDATE_HINT = "if the change is intended: `make golden`, then review `git diff tests/golden`"


def cases() -> list[str]:
    return sorted(p.parent.name for p in CASES.glob("*/platform.yaml"))


@lru_cache(maxsize=None)
def compiled(case: str):
    c = compile_file(str(CASES / case / "platform.yaml"))
    outputs, owners = emit(c.plan)
    return c.plan, outputs, owners


def scopes(case: str) -> list[str]:
    """One comparison per region plus one for the platform-wide files."""
    plan, _, _ = compiled(case)
    return list(plan.region_names) + ["global"]


def compare(case: str, scope: str) -> list[str]:
    """Lines describing every missing, differing or extra golden file of `scope` (empty = equal)."""
    _, outputs, owners = compiled(case)
    in_scope = {o for o in owners if o.endswith("/" + scope)}
    report = []
    for root, files in outputs.items():
        mine = {p: v for p, v in files.items() if v[0] in in_scope}
        plan = writer.plan_write(GOLDEN / case / root, mine, in_scope)
        plan.write.pop(writer.MANIFEST, None)  # the manifest is shared by all scopes
        report += writer.describe(plan, f"tests/golden/{case}/{root}", diff_lines=30)
    return report


def update() -> None:
    for case in cases():
        _, outputs, owners = compiled(case)
        for root, files in outputs.items():
            plan = writer.plan_write(GOLDEN / case / root, files, None)
            writer.apply(plan)
        print(f"updated tests/golden/{case}")


if __name__ == "__main__":
    if "--update" in sys.argv:
        update()
    else:
        print(__doc__)
