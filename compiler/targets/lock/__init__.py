"""Lock target: generated/platform.lock.json, the deployed-facts lock (compiler/ir/deployed.py, docs/lock.md).

The facts a live platform cannot change by a spec edit (franchise placement, region CIDRs, data volumes and zones,
Redis primaries), computed once in the IR and dumped here as deterministic JSON; committed with the rest of
generated/, read back by the next compile and compared by the rules R076-R078.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan
from compiler.ir.deployed import LOCK_FILE, build, dumps

NAME = "lock"


def emit_global(plan: PlatformPlan) -> dict[str, str]:
    return {LOCK_FILE: dumps(build(plan))}
