"""Who reads each secret reference, and at which deploy step.

Each target that reads secret references lists them with `secret_uses(plan, region)` (the same data its output
is built from); compiler/docs.py merges the lists into the region page's "Secret references" section, so an
operator creates every entry before the first step that reads it. The steps are those of the region's first
bring-up (the page's "First bring-up" section), in that order.
"""

from __future__ import annotations

import re

from compiler.model.base import SECRET_REF_PATTERN
from compiler.records import dataclass

_REF = re.compile(SECRET_REF_PATTERN)

# step -> (when it runs, in words); the dict's order is the bring-up order
STEPS = {
    "ansible": "the first Ansible run",
    "deck": "`deck file render` (before `helmfile apply`)",
    "helmfile": "`helmfile apply`",
}


@dataclass(frozen=True)
class SecretUse:
    """One reference (`scheme:entry[#field]`, as the spec spells it or compiler/ir/data_access.py derives it) that a
    generated file reads, the step that reads it and the file or object that does."""

    ref: str
    step: str  # a key of STEPS
    reader: str


def first_step(uses) -> str:
    """The earliest step among some uses of one reference."""
    order = list(STEPS)
    return min((u.step for u in uses), key=order.index)


def spec_references(settings) -> list[str]:
    """Every secret reference in a region's resolved settings (a walk of the models: no field list to keep)."""
    from pydantic import BaseModel
    out: list[str] = []
    stack = [settings]
    while stack:
        x = stack.pop()
        if isinstance(x, BaseModel):
            stack.extend(getattr(x, f) for f in reversed(type(x).model_fields))
        elif isinstance(x, dict):
            stack.extend(reversed(list(x.values())))
        elif isinstance(x, (list, tuple)):
            stack.extend(reversed(x))
        elif isinstance(x, str) and _REF.fullmatch(x) and x not in out:
            out.append(x)
    return out
