"""PostgreSQL's sizing arithmetic, per region: memory, WAL, connections and workers. The data tier's postgresql.conf
(datastores target) writes these values, and Patroni's dynamic configuration (ansible target) must carry the ones
Patroni passes to the postmaster itself (patroni_dcs_parameters): both read them here.

A region that is another region's DR partner runs that region's standby cluster on two of its own PostgreSQL hosts
(compiler/ir/postgres_ha.py), beside its own member: up to one standby per source on the same host. Each standby
sized like its source (a quarter of the source's RAM in shared buffers) would ask a host for its own quarter plus
one per standby: us-east-1's second and third hosts, partner of three regions, would have reserved all of their
128 GiB as shared buffers, and the first standby under load would have been OOM-killed with the host's own member.
So a host's memory is split: the standby clusters it runs share STANDBY_MEMORY_SHARE of it, evenly, and the
region's own cluster is sized over the rest, on every member alike (any member may lead, and a member's settings
are the region's one postgresql.conf). A standby keeps its source's connection and worker limits, which a hot
standby must match (PostgreSQL refuses to start below the primary's), only its memory is smaller; a promoted standby
runs with it until the runbook raises it (the region's docs say how). Each standby's data lives on the host's data
volume too, which grows by each standby's source volume (standby_disk_gib).
"""

from __future__ import annotations

import math
from dataclasses import replace

from compiler.ir import RegionPlan
from compiler.records import dataclass


# The fraction (numerator, denominator) of a PostgreSQL host's memory the DR standby clusters on it share, when it
# runs any: they replay WAL and serve no queries until a promotion, so a quarter holds them (their shared buffers
# are a quarter of their share, as every cluster's are of its memory), and the own cluster keeps three quarters.
STANDBY_MEMORY_SHARE = (1, 4)
# The percentages of the cluster's data volume (own_volume_gib) that bound what can fill it besides the data:
# - SLOT_WAL_PERCENT: the WAL replication slots may keep (max_slot_wal_keep_size). Patroni (use_slots) keeps a slot for
#   every member with a key in the DCS, so a replica whose Patroni runs but whose PostgreSQL does not stream made the
#   primary keep WAL without bound until the volume filled (PANIC: the primary stops).
# - TEMP_FILES_PERCENT: the temporary files of one query, its leader and its parallel workers (temp_file_limit is per
#   process, so each gets this over 1 + max_parallel_workers_per_gather).
# With max_wal_size (2 %, wal_keep_size the same) that leaves about three quarters of the volume for the data.
SLOT_WAL_PERCENT = 10
TEMP_FILES_PERCENT = 10


def clamp(x: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, x))


def _standbys(region: RegionPlan) -> tuple:
    return getattr(region.postgres_ha, "standbys", ()) or ()


def standby_memory_mb(region: RegionPlan) -> int:
    """The memory (MB) of each of `region`'s standby-running PostgreSQL hosts that its standby clusters share; 0
    where it runs none."""
    if not _standbys(region):
        return 0
    num, den = STANDBY_MEMORY_SHARE
    return region.settings.datastores.postgres.instance.memory_gib * 1024 * num // den


def own_volume_gib(region: RegionPlan) -> int:
    """The part (GiB) of each of `region`'s PostgreSQL hosts' data volume that its own cluster holds: the spec's
    disk_gib. The Terraform roots size the volume from it (ir/machines.data_disk_gib, which adds standby_disk_gib on a
    host that runs DR standby clusters), and the WAL and temporary-file limits below are fractions of it."""
    return region.settings.datastores.postgres.instance.disk_gib


def standby_disk_gib(plan, region: RegionPlan, host: str) -> int:
    """What PostgreSQL host `host` of `region` adds to its data volume for the standby clusters it runs: each
    standby's source volume (a standby holds its source's whole data directory, and its WAL until replayed)."""
    return sum(plan.region(s.of_region).settings.datastores.postgres.instance.disk_gib
               for s in _standbys(region) if host in s.hosts)


@dataclass(frozen=True)
class Sizing:
    """The memory, WAL and worker arithmetic; each value is documented where it is used."""

    host_ram_mb: int  # the host's memory
    ram_mb: int  # the part of it this cluster is sized over (less, where the host runs DR standby clusters)
    shared_buffers_mb: int
    effective_cache_size_mb: int
    work_mem_mb: int
    maintenance_work_mem_mb: int
    parallel_workers: int
    parallel_per_gather: int
    parallel_maintenance: int
    max_wal_size_gb: int
    min_wal_size_mb: int
    max_slot_wal_keep_mb: int
    temp_file_limit_mb: int
    wal_senders: int
    replication_slots: int
    timescaledb_workers: int
    partman_workers: int
    worker_processes: int
    autovacuum_workers: int
    superuser_reserved: int


def _memory(ram: int, max_connections: int, per_gather: int) -> dict:
    """A cluster's memory settings over the `ram` (MB) it is sized for: a quarter in shared buffers, three quarters
    as the planner's cache, the rest shared by max_connections x 3 sort/hash nodes x the workers of a gather."""
    shared = ram // 4
    return {"ram_mb": ram, "shared_buffers_mb": shared, "effective_cache_size_mb": ram * 3 // 4,
            "work_mem_mb": max(4, (ram - shared) // (max_connections * 3) // per_gather),
            "maintenance_work_mem_mb": min(ram // 16, 2048)}


def sizing(region: RegionPlan) -> Sizing:
    """The region's own cluster, over its hosts' memory less what their standby clusters share."""
    pg = region.settings.datastores.postgres
    inst = pg.instance
    host_ram = inst.memory_gib * 1024
    per_gather = min(4, math.ceil(inst.vcpus / 2))
    exts = pg.extensions
    tsdb = 1 + 3 * len(region.shards) if "timescaledb" in exts else 0
    partman = 1 if "pg_partman" in exts else 0
    volume_mb = own_volume_gib(region) * 1024
    max_wal_gb = clamp(volume_mb // 1024 * 2 // 100, 4, 64)
    senders = pg.read_replicas + (1 if pg.cross_region_standby else 0) + 2
    return Sizing(
        host_ram_mb=host_ram,
        **_memory(host_ram - standby_memory_mb(region), pg.max_connections, per_gather),
        parallel_workers=inst.vcpus,
        parallel_per_gather=per_gather,
        parallel_maintenance=per_gather,
        max_wal_size_gb=max_wal_gb,
        min_wal_size_mb=max_wal_gb * 1024 // 4,
        # never below wal_keep_size (= max_wal_size), which keeps that much WAL whatever the slots
        max_slot_wal_keep_mb=max(volume_mb * SLOT_WAL_PERCENT // 100, max_wal_gb * 1024),
        temp_file_limit_mb=volume_mb * TEMP_FILES_PERCENT // 100 // (1 + per_gather),
        wal_senders=senders,
        # one per sender, and at least 4: Patroni rejects a lower max_replication_slots and falls back to 10
        replication_slots=max(4, senders),
        timescaledb_workers=tsdb,
        partman_workers=partman,
        worker_processes=inst.vcpus + tsdb + partman + 3,
        autovacuum_workers=max(3, inst.vcpus // 4),
        superuser_reserved=max(3, pg.reserved_connections // 4),
    )


def standby_sizing(host_region: RegionPlan, source: RegionPlan) -> Sizing:
    """Source's standby cluster on `host_region`'s hosts: the source's limits, WAL and workers (a hot standby needs at
    least the primary's), and memory from an even part of the hosts' standby share (one per standby cluster)."""
    z = sizing(source)
    ram = standby_memory_mb(host_region) // max(1, len(_standbys(host_region)))
    return replace(z, host_ram_mb=host_region.settings.datastores.postgres.instance.memory_gib * 1024,
                   **_memory(ram, source.settings.datastores.postgres.max_connections, z.parallel_per_gather))


def standby_memory_parameters(host_region: RegionPlan, source: RegionPlan) -> dict:
    """The memory settings of source's standby cluster on `host_region`'s hosts, over the source's postgresql.conf
    (which its Patroni includes): Patroni writes its local `postgresql.parameters` after that include."""
    z = standby_sizing(host_region, source)
    return {"shared_buffers": f"{z.shared_buffers_mb}MB", "effective_cache_size": f"{z.effective_cache_size_mb}MB",
            "work_mem": f"{z.work_mem_mb}MB", "maintenance_work_mem": f"{z.maintenance_work_mem_mb}MB"}


# PostgreSQL's hot standby rule (docs, "Hot Standby", 26.4.3 Administrator's Overview): a standby needs at least the
# primary's value of each; the primary's WAL records its values, and a hot standby that replays a higher one (or
# starts below the values its control file has from the primary) pauses its replay until it is raised and restarted
HOT_STANDBY_PARAMETERS = ("max_connections", "max_prepared_transactions", "max_locks_per_transaction",
                          "max_wal_senders", "max_worker_processes")


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
