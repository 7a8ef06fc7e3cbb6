"""Shard databases and the franchise routing table.

The routing table (the seed's franchise_shard_map) lives in every shard database of every region:
any region routes any franchise, and an application that holds a pool to one of its region's
shards can look a franchise up without another pool (the core's connection budget counts shard
databases only). Its rows cover ALL franchises of the platform.

Each shard's franchises are written as one PostgreSQL int4multirange literal of closed id ranges,
expanded server-side with unnest() and generate_series(). Without a registry a shard is one range
(`{[1,1000]}`); with `sharding.registry_file` the explicit placements are grouped into ranges of
consecutive ids, so the file grows with the number of gaps, not with the number of franchises, and
even 10,000 scattered franchises stay a few dozen kilobytes.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan
from compiler.records import dataclass

RANGES_PER_LINE = 12


@dataclass(frozen=True)
class ShardRoute:
    """Where a shard's franchises are routed, and which franchise ids it holds."""

    shard: int
    host: str
    port: int
    region: str
    ranges: tuple[tuple[int, int], ...]  # closed, ascending, disjoint, not adjacent

    @property
    def count(self) -> int:
        return sum(last - first + 1 for first, last in self.ranges)

    def multirange(self) -> str:
        """`{[1,6], [9,9], ...}` with a line break every RANGES_PER_LINE ranges (whitespace the parser skips)."""
        parts = [f"[{a},{b}]" for a, b in self.ranges]
        lines = [", ".join(parts[i:i + RANGES_PER_LINE]) for i in range(0, len(parts), RANGES_PER_LINE)]
        return "{" + ",\n      ".join(lines) + "}"


_last: list = [None, None]  # (plan, routes): every region's shards.sql holds the same rows; compute them once


def routes(plan: PlatformPlan) -> list[ShardRoute]:
    if _last[0] is not plan:
        _last[:] = [plan, _compute(plan)]
    return _last[1]


def _compute(plan: PlatformPlan) -> list[ShardRoute]:
    if plan.registry:
        ranges: dict[int, list[list[int]]] = {s.number: [] for s in plan.shards}
        for home in plan.registry:  # sorted by franchise id
            spans = ranges[home.shard]
            if spans and spans[-1][1] + 1 == home.franchise_id:
                spans[-1][1] = home.franchise_id
            else:
                spans.append([home.franchise_id, home.franchise_id])
        held = {n: tuple((a, b) for a, b in spans) for n, spans in ranges.items()}
    else:
        held = {s.number: ((s.first_id, s.last_id),) for s in plan.shards}
    return [ShardRoute(s.number, s.host, s.port, s.region, held[s.number]) for s in plan.shards]


def franchises_per_shard(plan: PlatformPlan) -> dict[int, int]:
    """Once per plan: with a registry, every region's docs summing each shard's ranges cost regions x registry."""
    return plan.derived("franchises_per_shard", lambda: {r.shard: r.count for r in routes(plan)})
