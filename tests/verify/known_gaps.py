"""What verify names broken in a generated tree that the compiler cannot yet fix, kept apart so that the tests still
prove everything else and fail as soon as a gap closes (or another opens).

- Azure has no postgres-sync.<internal domain> load balancer (compiler/targets/terraform/values.py
  postgres_endpoints: a third rule on PostgreSQL's port over the members' NIC IP configurations needs Floating IP,
  and the members do not hold the frontend's address yet). The DR partner's standby cluster dials it from the
  partner and the region's own connections file lists the flow: verify names both, once per Azure region whose
  partner keeps a standby of it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

_AZURE_SYNC = re.compile(r"^no internal load balancer answers postgres-sync\.(?P<owner>[a-z0-9-]+)\.internal\.")


def _cloud(tree: Path, region: str) -> str:
    path = Path(tree) / "connections" / f"{region}.json"
    return json.loads(path.read_text()).get("cloud", "") if path.exists() else ""


def azure_sync_gap(tree: Path, broken: list) -> tuple[list, list]:
    """(the Azure sync endpoint's breaks, every other break)."""
    gap, rest = [], []
    for b in broken:
        m = _AZURE_SYNC.match(b.message) if b.layer == "postgres-endpoint" else None
        (gap if m and _cloud(tree, m.group("owner")) == "azure" else rest).append(b)
    return gap, rest


def azure_sync_gap_lines(tree: Path, out: bytes) -> list[bytes]:
    """The lines of `platformc verify`'s output (`file:line: [layer] connection: message`) that are the Azure sync
    endpoint's breaks."""
    line = re.compile(rb"^\S+:\d+: \[postgres-endpoint\] \S+: (?P<message>.*)$")
    gap = []
    for raw in out.splitlines():
        m = line.match(raw)
        found = _AZURE_SYNC.match(m.group("message").decode()) if m else None
        if found and _cloud(tree, found.group("owner")) == "azure":
            gap.append(raw)
    return gap
