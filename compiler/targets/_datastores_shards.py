"""Shard databases and the franchise routing table.

The routing table (the seed's franchise_shard_map) lives in every shard database of every region:
any region routes any franchise, and an application that holds a pool to one of its region's
shards can look a franchise up without another pool (the core's connection budget counts shard
databases only). Its rows cover ALL franchises of the platform.

Rows are written as runs: (shard, first id, last id, host, port), expanded by generate_series in
PostgreSQL. Without a registry that is one run per shard (first_id..last_id); with
`sharding.registry_file` the explicit placements are grouped into runs of consecutive ids on the
same shard, so 10,000 franchises stay a few hundred lines at most.
"""

from __future__ import annotations

from dataclasses import dataclass

from compiler.ir import PlatformPlan


@dataclass(frozen=True)
class Run:
    shard: int
    first_id: int
    last_id: int
    host: str
    port: int
    region: str

    @property
    def count(self) -> int:
        return self.last_id - self.first_id + 1


_last: list = [None, None]  # (plan, runs): every region's shards.sql holds the same rows; compute them once


def routing_runs(plan: PlatformPlan) -> list[Run]:
    if _last[0] is plan:
        return _last[1]
    _last[:] = [plan, _compute_runs(plan)]
    return _last[1]


def _compute_runs(plan: PlatformPlan) -> list[Run]:
    by_number = {s.number: s for s in plan.shards}
    if not plan.registry:
        return [Run(s.number, s.first_id, s.last_id, s.host, s.port, s.region) for s in plan.shards]
    runs: list[Run] = []
    for home in plan.registry:  # sorted by franchise id
        last = runs[-1] if runs else None
        if last and last.shard == home.shard and last.last_id + 1 == home.franchise_id:
            runs[-1] = Run(last.shard, last.first_id, home.franchise_id, last.host, last.port, last.region)
        else:
            s = by_number[home.shard]
            runs.append(Run(s.number, home.franchise_id, home.franchise_id, s.host, s.port, s.region))
    return runs


def franchises_per_shard(plan: PlatformPlan) -> dict[int, int]:
    counts = {s.number: 0 for s in plan.shards}
    for run in routing_runs(plan):
        counts[run.shard] += run.count
    return counts
