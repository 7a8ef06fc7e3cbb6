"""Run the selected targets over the plan: {output root: {rel path: (owner, text)}}."""

from __future__ import annotations

from compiler import docs, targets
from compiler.errors import UsageError
from compiler.ir import PlatformPlan


class Outputs(dict):
    """root name -> {rel path: (owner, text)}; refuses two owners for one path (a bug)."""

    def add(self, root: str, owner: str, files: dict) -> None:
        tree = self.setdefault(root, {})
        for rel, text in files.items():
            if rel in tree and tree[rel][0] != owner:
                raise RuntimeError(f"{root}/{rel} is emitted by both {tree[rel][0]} and {owner}")
            if not text.endswith("\n"):
                text += "\n"
            tree[rel] = (owner, text)


def emit(plan: PlatformPlan, target_names=None, region_names=None, with_docs: bool = True) -> tuple[Outputs, set]:
    """Emit files for the chosen targets and regions; return them with the owners compiled."""
    regions = [plan.region(n) for n in region_names] if region_names else list(plan.regions)
    modules = targets.select(target_names)
    out, owners = Outputs(), set()
    for mod in modules:
        if hasattr(mod, "emit_region"):
            for r in regions:
                owner = f"{mod.NAME}/{r.name}"
                owners.add(owner)
                out.add("generated", owner, mod.emit_region(plan, r))
        if not region_names and hasattr(mod, "emit_global"):
            owners.add(f"{mod.NAME}/global")
            out.add("generated", f"{mod.NAME}/global", mod.emit_global(plan))
    if with_docs:
        for owner, files in docs.emit(plan, modules, regions, include_global=not region_names).items():
            owners.add(owner)
            out.add("docs", owner, files)
    out.setdefault("generated", {})
    return out, owners


def check_regions(plan: PlatformPlan, names) -> None:
    import difflib
    for n in names or ():
        if n not in plan.region_names:
            close = difflib.get_close_matches(n, plan.region_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"unknown region {n!r}{hint}")
