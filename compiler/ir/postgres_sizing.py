"""PostgreSQL's sizing arithmetic, per region: memory, WAL, connections and workers. The data tier's postgresql.conf
(datastores target) writes these values, and Patroni's dynamic configuration (ansible target) must carry the ones
Patroni passes to the postmaster itself (patroni_dcs_parameters): both read them here.
"""

from __future__ import annotations

import math

from compiler.ir import RegionPlan
from compiler.records import dataclass


def clamp(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, x))


@dataclass(frozen=True)
class Sizing:
    """The memory, WAL and worker arithmetic; each value is documented where it is used."""

    ram_mb: int
    shared_buffers_mb: int
    effective_cache_size_mb: int
    work_mem_mb: int
    maintenance_work_mem_mb: int
    parallel_workers: int
    parallel_per_gather: int
    parallel_maintenance: int
    max_wal_size_gb: int
    min_wal_size_mb: int
    wal_senders: int
    replication_slots: int
    timescaledb_workers: int
    partman_workers: int
    worker_processes: int
    autovacuum_workers: int
    superuser_reserved: int


def sizing(region: RegionPlan) -> Sizing:
    pg = region.settings.datastores.postgres
    inst = pg.instance
    ram = inst.memory_gib * 1024
    shared = ram // 4
    per_gather = min(4, math.ceil(inst.vcpus / 2))
    exts = pg.extensions
    tsdb = 1 + 3 * len(region.shards) if "timescaledb" in exts else 0
    partman = 1 if "pg_partman" in exts else 0
    max_wal_gb = clamp(inst.disk_gib * 2 // 100, 4, 64)
    senders = pg.read_replicas + (1 if pg.cross_region_standby else 0) + 2
    return Sizing(
        ram_mb=ram,
        shared_buffers_mb=shared,
        effective_cache_size_mb=ram * 3 // 4,
        work_mem_mb=max(4, (ram - shared) // (pg.max_connections * 3) // per_gather),
        maintenance_work_mem_mb=min(ram // 16, 2048),
        parallel_workers=inst.vcpus,
        parallel_per_gather=per_gather,
        parallel_maintenance=per_gather,
        max_wal_size_gb=max_wal_gb,
        min_wal_size_mb=max_wal_gb * 1024 // 4,
        wal_senders=senders,
        # one per sender, and at least 4: Patroni rejects a lower max_replication_slots and falls back to 10
        replication_slots=max(4, senders),
        timescaledb_workers=tsdb,
        partman_workers=partman,
        worker_processes=inst.vcpus + tsdb + partman + 3,
        autovacuum_workers=max(3, inst.vcpus // 4),
        superuser_reserved=max(3, pg.reserved_connections // 4),
    )


def patroni_dcs_parameters(region: RegionPlan) -> dict:
    """The postmaster parameters Patroni sets on PostgreSQL's command line from its dynamic configuration (the DCS),
    never from postgresql.conf (Patroni's CMDLINE_OPTIONS): absent there, Patroni's own defaults win over the data
    tier's file (max_connections 100, max_wal_senders 10, max_worker_processes 8, wal_keep_size 128MB), so
    PgBouncer's pools, sized for max_connections, were refused past 100 server connections. The same values as the
    region's postgresql.conf; a standby cluster carries its source's (a hot standby needs at least the primary's).
    Patroni forces hot_standby and wal_log_hints on itself."""
    pg = region.settings.datastores.postgres
    z = sizing(region)
    return {"max_connections": pg.max_connections, "max_worker_processes": z.worker_processes,
            "max_wal_senders": z.wal_senders, "max_replication_slots": z.replication_slots,
            "wal_keep_size": f"{z.max_wal_size_gb}GB", "wal_level": "replica"}
