"""Disaster-recovery serving: which region serves each home region's franchises (`disaster_recovery.failed_over`).

A region's franchises are served by their home region, unless the spec declares the home lost
(`disaster_recovery.failed_over`): its DR partner has promoted the standby cluster it runs of the home (the region
runbook, step 3) and serves the home's franchises from it. Resolve computes the serving region of every home once
(PlatformPlan.serving); every target that routes a franchise or a shard reads it, never the home:

- the routing table (shards.sql): a lost home's shards are routed to the partner's PgBouncer (resolve: Shard.host
  and Shard.port);
- Kong's home-region map and the edge's maps (compiler/ir/home_routing.py: the ranges name the serving region, so
  the partner's Kong serves them itself and the edge selects the partner's origin);
- the partner's services' data-tier ConfigMaps list the lost home's shard databases (RegionPlan.served_shards);
- the partner's pgbouncer.ini serves those databases from the promoted cluster (`promoted_pools` below).

The promoted cluster is addressed by its designated leader: the first host of the standby cluster
(StandbyCluster.hosts[0]) on the standby's PostgreSQL port. PgBouncer (1.18) spreads a comma-separated `host=` over
its hosts round-robin, which would send half the read-write server connections to the promoted cluster's replica;
so the runbook's step 3 makes that host the leader (`patronictl switchover`) before the override is applied.
"""

from __future__ import annotations

from compiler.records import dataclass


@dataclass(frozen=True)
class PromotedPool:
    """A [databases] line of the partner's PgBouncer for a lost home's shard database, on its promoted cluster."""

    name: str  # PgBouncer's database name: the shard database, or its read-only name (<database>_ro)
    dbname: str  # the database in the promoted cluster
    host: str  # the promoted cluster's designated leader (FQDN)
    port: int  # the standby cluster's PostgreSQL port
    pool_size: int
    max_db_connections: int
    of_region: str  # the lost home


def serving_map(spec) -> dict[str, str]:
    """Home region -> the region serving its franchises: itself, or its DR partner when it is failed over."""
    lost = set(spec.disaster_recovery.failed_over)
    return {name: (r.dr_partner if name in lost else name) for name, r in spec.regions.items()}


def failed_over_regions(plan) -> tuple[str, ...]:
    """The regions another region serves (PlatformPlan.serving: failed over to their DR partner), in plan order: the
    global root keeps them out of the edge (weight 0 in the weighted origin record, Front Door origin disabled)."""
    return tuple(r.name for r in plan.regions if plan.serving_region(r.name) != r.name)


def served_homes(spec, region: str) -> tuple[str, ...]:
    """The failed-over homes whose franchises `region` serves (it is their DR partner), in spec order."""
    lost = spec.disaster_recovery.failed_over
    return tuple(n for n, r in spec.regions.items() if n in lost and r.dr_partner == region and n != region)


def designated_leader(standby, hosts) -> str:
    """The FQDN the partner's PgBouncer dials for the promoted cluster: the standby cluster's first host."""
    return next(h.fqdn for h in hosts if h.name == standby.hosts[0])


def promoted_routing_file(of_region: str) -> str:
    """The psql script that writes the routing table into the promoted copy of `of_region`'s shards, relative to the
    partner's data-tier files (generated/datastores/<partner>/), beside that cluster's pg_hba.conf."""
    return f"dr-{of_region}/routing.psql"
