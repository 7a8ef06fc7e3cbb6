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


def routes(plan: PlatformPlan, keep: bool = True) -> list[ShardRoute]:
    """The routing table's rows, once per plan. keep=False (the platform's shards.sql, its one reader in a generate)
    does not keep rows not kept already: with a scattered registry they are ~1 MiB of tuples, which the module's
    memo held in the parent until the process ended, through the forked emission's peak."""
    if _last[0] is plan:
        return _last[1]
    computed = _compute(plan)
    if keep:
        _last[:] = [plan, computed]
    return computed


def each_route(plan: PlatformPlan):
    """routes(plan) one shard at a time, for the platform's shards.sql (its one reader in a generate): each shard's
    ranges are made when its row is written, so the ~10,000 range tuples of a scattered registry are never alive
    together (they grew the parent's heap by ~1 MiB it kept across emission's fork)."""
    if _last[0] is plan:
        yield from _last[1]
        return
    yield from _rows(plan)


def _compute(plan: PlatformPlan) -> list[ShardRoute]:
    return list(_rows(plan))


def _rows(plan: PlatformPlan):
    """The rows in shard order: a shard's id range, or with a registry the runs of consecutive ids placed on it (each
    shard's ids gathered in an array first, from the registry's columns when it has them)."""
    registry = plan.registry
    if not registry:
        for s in plan.shards:
            yield ShardRoute(s.number, s.host, s.port, s.region, ((s.first_id, s.last_id),))
        return
    from array import array
    ids = getattr(registry, "ids", None)  # compiler.registry.Placements: its columns, no record per franchise
    pairs = zip(ids, registry.shards) if ids is not None else ((h.franchise_id, h.shard) for h in registry)
    held = {s.number: array("q") for s in plan.shards}
    for franchise_id, shard in pairs:  # sorted by franchise id
        held[shard].append(franchise_id)
    for s in plan.shards:
        spans: list[tuple[int, int]] = []
        first = last = None
        for franchise_id in held[s.number]:
            if last is not None and last + 1 == franchise_id:
                last = franchise_id
                continue
            if last is not None:
                spans.append((first, last))
            first = last = franchise_id
        if last is not None:
            spans.append((first, last))
        yield ShardRoute(s.number, s.host, s.port, s.region, tuple(spans))


def franchises_per_shard(plan: PlatformPlan) -> dict[int, int]:
    """Once per plan: with a registry, every region's docs summing each shard's ranges cost regions x registry.
    From the registry's shard column when it has one: the docs pages (half of them in emission's forked child) then
    need no routing table, which only the platform's shards.sql writes."""
    def count() -> dict[int, int]:
        column = getattr(plan.registry, "shards", None) if plan.registry else None
        if column is None:
            return {r.shard: r.count for r in routes(plan)}
        out = dict.fromkeys([s.number for s in plan.shards], 0)
        for shard in column:
            out[shard] += 1
        return out
    return plan.derived("franchises_per_shard", count)


def route_spans(plan: PlatformPlan) -> int:
    """How many id ranges the routing table has (the sum of its shards' ranges), once per plan. With the registry's
    columns (sorted by id): a franchise starts a range unless the one before it in id order has the previous id and
    the same shard."""
    def count() -> int:
        registry = plan.registry
        ids = getattr(registry, "ids", None) if registry else None
        if ids is None:
            return sum(len(r.ranges) for r in routes(plan))
        shards = registry.shards
        joined = sum(1 for a, b, s, t in zip(ids, ids[1:], shards, shards[1:]) if a + 1 == b and s == t)
        return len(ids) - joined
    return plan.derived("shard_route_spans", count)
