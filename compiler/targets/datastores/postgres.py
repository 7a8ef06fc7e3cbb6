"""PostgreSQL: postgresql.conf settings sized from the spec, pg_hba.conf rules, WAL archiving with WAL-G.

One postgresql.conf serves the region's primary, its read replicas and the cross-region standby
that runs in the DR partner region: the standby-only settings (primary_conninfo, restore_command)
are ignored by a server without standby.signal, and the replication settings are ignored by a
standby. The cross-region standby's Patroni sets its own restore_command over this file's: it reads
the region's archive from the copy the bucket replication keeps in the partner's own bucket, where
there is one (compiler/ir/wal_archive.py). It also sets its memory (its part of the partner host's, which runs
other clusters: compiler/ir/postgres_sizing.py) and the archive_command it runs once promoted, into the partner's
own bucket.
Paths follow the Debian packaging Ansible installs (/etc/postgresql/<v>/main, ...).
"""

from __future__ import annotations


from compiler.records import dataclass
from compiler.ir import Connection, PlatformPlan, RegionPlan
from compiler.ir.dr_watch import POSTGRES_EXPORTER_USER
from compiler.ir.postgres_ha import STANDBY_HBA_LAYER, standby_of
from compiler.ir.postgres_sizing import Sizing, sizing  # noqa: F401 (the docs and tests read sizing here too)
from compiler.ir.postgres_sizing import SLOT_WAL_PERCENT, TEMP_FILES_PERCENT, own_volume_gib
from compiler.targets.datastores.model import Section, Setting, duration_ms, size_mb

from compiler.ir.names import POSTGRES_PASSFILE as PASSFILE, POSTGRES_PORT as PORT  # noqa: F401
from compiler.ir.names import POSTGRES_REPLICATION_USER as REPLICATION_USER, WALG  # noqa: F401
from compiler.ir.names import POSTGRES_TLS_DIR as TLS_DIR  # noqa: F401
# the archive's prefix and WAL-G's settings are the IR's: the backups role's script and the standby clusters' Patroni
# configuration (the ansible target) use the same ones
from compiler.ir.wal_archive import archive_url, standby_archive_region, wal_g_command, wal_g_env  # noqa: F401
MANAGED_HOST = "postgres"  # with a managed PostgreSQL, PgBouncer targets postgres.<internal domain>

# Extensions that must be in shared_preload_libraries, and the library name (pg_partman's is its
# background worker, which runs partition maintenance in each shard database).
PRELOAD = {"pg_stat_statements": "pg_stat_statements", "timescaledb": "timescaledb", "pg_partman": "pg_partman_bgw"}
# Extensions created in a schema of their own (pg_partman's documented convention).
EXTENSION_SCHEMA = {"pg_partman": "partman"}
TLS_PROTOCOL = {"1.2": "TLSv1.2", "1.3": "TLSv1.3"}


def server_connection(region: RegionPlan) -> Connection | None:
    """PgBouncer -> PostgreSQL, as the wiring states it (None with a managed PostgreSQL)."""
    return next((c for c in region.through("pg_hba") if c.source.host_group == "pgbouncer"), None)


def replication_connections(region: RegionPlan) -> tuple[Connection, ...]:
    """Read replicas and the DR standby -> the primary."""
    return tuple(c for c in region.through("pg_hba") if c.database == "replication")


def tls_floor(conns) -> str:
    """The highest TLS floor of these connections ("" when none is TLS)."""
    floors = [c.tls for c in conns if c.tls]
    return max(floors, key=lambda v: tuple(int(x) for x in v.split("."))) if floors else ""


def server_tls_floor(region: RegionPlan) -> str:
    """The floor PostgreSQL enforces: the one its clients' connections state (the spec's when it has none)."""
    return tls_floor(region.through("pg_hba")) or region.settings.security.tls_min_version


def self_managed(region: RegionPlan) -> bool:
    return region.settings.datastores.postgres.deployment == "self-managed"


def primary_host(region: RegionPlan) -> str:
    """The host PgBouncer and the replicas connect to: the primary's FQDN (or the managed alias)."""
    primaries = region.hosts_in("postgres_primary")
    return primaries[0].fqdn if primaries else f"{MANAGED_HOST}.{region.internal_domain}"


def preload_libraries(region: RegionPlan) -> list[str]:
    return [PRELOAD[e] for e in region.settings.datastores.postgres.extensions if e in PRELOAD]


def _memory_note(region: RegionPlan, z) -> str:
    """Where the hosts also run DR standby clusters, the memory kept for them (compiler/ir/postgres_sizing.py)."""
    if z.ram_mb == z.host_ram_mb:
        return ""
    names = ", ".join(s.of_region for s in region.postgres_ha.standbys)
    return f"; {(z.host_ram_mb - z.ram_mb) // 1024} GiB of it kept for the DR standby clusters of {names}"


def settings(plan: PlatformPlan, region: RegionPlan) -> list[Section]:
    """postgresql.conf, section by section."""
    pg = region.settings.datastores.postgres
    inst = pg.instance
    z = sizing(region)
    v = pg.version
    rpo_s = plan.spec.disaster_recovery.rpo_minutes * 60
    floor = server_tls_floor(region)
    tls = TLS_PROTOCOL[floor]
    gib = f"{inst.memory_gib} GiB RAM"
    shared_host = z.ram_mb != z.host_ram_mb  # the hosts run DR standby clusters too
    ram = f"{z.ram_mb // 1024} GiB (this cluster's part of the RAM)" if shared_host else gib
    ram_name = "this cluster's RAM" if shared_host else "RAM"
    sections = [
        Section("Files (Debian layout; Ansible installs postgresql-%s)" % v, (
            Setting("data_directory", f"/var/lib/postgresql/{v}/main"),
            Setting("hba_file", f"/etc/postgresql/{v}/main/pg_hba.conf", "the generated pg_hba.conf"),
            Setting("ident_file", f"/etc/postgresql/{v}/main/pg_ident.conf"),
            Setting("external_pid_file", f"/var/run/postgresql/{v}-main.pid"),
            Setting("cluster_name", f"{v}/main"),
        )),
        Section("Connections and TLS", (
            Setting("listen_addresses", "*", "one file serves every server of the region, so listen on all "
                    "addresses; pg_hba.conf admits only PgBouncer's and the standbys' addresses"),
            Setting("port", PORT),
            Setting("unix_socket_directories", "/var/run/postgresql"),
            Setting("max_connections", pg.max_connections, "spec: datastores.postgres.max_connections"),
            Setting("superuser_reserved_connections", z.superuser_reserved,
                    f"max(3, reserved_connections {pg.reserved_connections} / 4); the rest of the reserve "
                    "serves maintenance and monitoring, outside the PgBouncer pools"),
            Setting("password_encryption", "scram-sha-256"),
            Setting("ssl", True),
            Setting("ssl_cert_file", f"{TLS_DIR}/server.crt"),
            Setting("ssl_key_file", f"{TLS_DIR}/server.key"),
            Setting("ssl_ca_file", f"{TLS_DIR}/ca.crt"),
            Setting("ssl_min_protocol_version", tls, f"the floor of PgBouncer's and the standbys' connections ({floor}); "
                    "PgBouncer's server_tls_protocols and primary_conninfo agree"),
            Setting("tcp_keepalives_idle", 60),
            Setting("tcp_keepalives_interval", 10),
            Setting("tcp_keepalives_count", 6),
            Setting("idle_in_transaction_session_timeout", duration_ms(region.settings.gateway.read_timeout_ms),
                    "the gateway's read timeout: past it no client is waiting for the transaction"),
        )),
        Section(f"Memory ({inst.vcpus} vCPU, {gib}, {inst.disk_gib} GiB disk{_memory_note(region, z)})", (
            Setting("shared_buffers", size_mb(z.shared_buffers_mb), f"25 % of {ram}"),
            Setting("huge_pages", "try"),
            Setting("effective_cache_size", size_mb(z.effective_cache_size_mb), f"75 % of {ram} (shared buffers plus the OS page cache)"),
            Setting("work_mem", size_mb(z.work_mem_mb),
                    f"({ram_name} - shared_buffers) / (max_connections {pg.max_connections} x 3 sort/hash nodes) / "
                    f"{z.parallel_per_gather} workers per gather, at least 4MB"),
            Setting("maintenance_work_mem", size_mb(z.maintenance_work_mem_mb), f"{ram_name} / 16, at most 2GB"),
            Setting("autovacuum_max_workers", z.autovacuum_workers, f"max(3, {inst.vcpus} vCPU / 4)"),
            Setting("temp_file_limit", size_mb(z.temp_file_limit_mb),
                    f"per process: {TEMP_FILES_PERCENT} % of the {own_volume_gib(region)} GiB data volume over a "
                    f"query's leader and its {z.parallel_per_gather} parallel workers; a query past it fails, "
                    "the volume does not fill"),
        )),
        Section("Planner and I/O (network SSD volumes)", (
            Setting("random_page_cost", 1.1, "SSD: random reads cost about as much as sequential ones"),
            Setting("effective_io_concurrency", 200, "SSD volumes serve many concurrent reads"),
            Setting("max_worker_processes", z.worker_processes,
                    f"{inst.vcpus} parallel + {z.timescaledb_workers} TimescaleDB + {z.partman_workers} pg_partman + 3 spare"),
            Setting("max_parallel_workers", z.parallel_workers, f"one per vCPU ({inst.vcpus})"),
            Setting("max_parallel_workers_per_gather", z.parallel_per_gather, f"half the vCPUs ({inst.vcpus}), at most 4"),
            Setting("max_parallel_maintenance_workers", z.parallel_maintenance, "half the vCPUs, at most 4"),
        )),
        Section("WAL and checkpoints", (
            Setting("wal_level", "replica", "streaming replicas, the DR standby and WAL archiving"),
            Setting("wal_compression", "lz4"),
            Setting("wal_log_hints", True, "lets pg_rewind rejoin an old primary after a failover"),
            Setting("wal_buffers", "16MB", "shared_buffers / 32, at most 16MB (PostgreSQL's own rule, written out)"),
            Setting("checkpoint_timeout", "15min"),
            Setting("checkpoint_completion_target", 0.9),
            Setting("max_wal_size", f"{z.max_wal_size_gb}GB", f"2 % of the {own_volume_gib(region)} GiB data volume, between 4GB and 64GB"),
            Setting("min_wal_size", size_mb(z.min_wal_size_mb), "max_wal_size / 4"),
        )),
        Section("Replication: read replicas and the cross-region standby", (
            Setting("max_wal_senders", z.wal_senders,
                    f"{pg.read_replicas} read replicas + {1 if pg.cross_region_standby else 0} standby in "
                    f"{region.dr_partner} + 2 for pg_basebackup"),
            Setting("max_replication_slots", z.replication_slots, "= max_wal_senders, at least 4 (Patroni's floor)"),
            Setting("wal_keep_size", f"{z.max_wal_size_gb}GB",
                    "= max_wal_size: a briefly disconnected replica catches up from the primary"
                    + ("; a longer outage fetches WAL from the archive" if pg.wal_archive else "")),
            Setting("max_slot_wal_keep_size", size_mb(z.max_slot_wal_keep_mb),
                    f"{SLOT_WAL_PERCENT} % of the {own_volume_gib(region)} GiB data volume, at least wal_keep_size: "
                    "Patroni keeps a slot for every member, so a member whose PostgreSQL stops streaming would make "
                    "the primary keep WAL until the volume fills; past this its slot is invalidated "
                    "(pg_replication_slots.wal_status = lost) and the primary removes the WAL"
                    + _slot_lost_note(pg.wal_archive)),
            Setting("synchronous_standby_names", "", "asynchronous: commits never wait for another region; "
                    f"across regions the RPO ({plan.spec.disaster_recovery.rpo_minutes} min) is held by streaming "
                    "(the partner's copy of the archive trails by archive_timeout plus the bucket replication's delay)"),
            Setting("hot_standby", True),
            Setting("hot_standby_feedback", True, "read replicas serve queries: keep the primary from vacuuming rows they read"),
            Setting("primary_conninfo", _primary_conninfo(region),
                    "used only on a standby (standby.signal); the password comes from the passfile Ansible writes"),
            Setting("recovery_target_timeline", "latest"),
        )),
    ]
    if pg.wal_archive:
        sections.append(Section(f"Continuous archiving to {archive_url(region, region.name)} with WAL-G", (
            Setting("archive_mode", True),
            Setting("archive_command", wal_g_command(region, "wal-push", "%p"),
                    "credentials come from the host's cloud identity; the prefix names the region, so archives "
                    "replicated between DR partners' buckets never share one"),
            Setting("archive_timeout", f"{min(60, rpo_s)}s",
                    f"RPO {plan.spec.disaster_recovery.rpo_minutes} min, at most 60s: a partly filled WAL segment is archived at least this often"),
            Setting("restore_command", wal_g_command(region, "wal-fetch", "%f", "%p"),
                    "the region's replicas and point-in-time recovery" + _standby_restore_note(plan, region)),
        )))
    else:
        sections.append(Section("Continuous archiving", (
            Setting("archive_mode", False, "spec: datastores.postgres.wal_archive is false"),
        )))
    sections.append(Section("Logging", (
        Setting("log_line_prefix", "%m [%p] %q%u@%d "),
        Setting("log_timezone", "UTC"),
        Setting("timezone", "UTC"),
        Setting("log_checkpoints", True),
        Setting("log_lock_waits", True),
        Setting("log_temp_files", 0),
        Setting("log_autovacuum_min_duration", "10s"),
        Setting("log_min_duration_statement", duration_ms(plan.spec.slos.latency_p95_ms),
                "the API's p95 latency target: one query that spends the whole budget is logged"),
    )))
    sections.append(Section("Extensions", _extension_settings(region, z)))
    return sections


def _slot_lost_note(wal_archive: bool) -> str:
    """What becomes of a member whose slot max_slot_wal_keep_size invalidated. Patroni 3.0.2 neither drops nor
    recreates a lost slot (postgresql/slots.py compares slot names only), and PostgreSQL 15 lets a replica stream
    through it again: tried on 15.18, a replica restored the removed segments from the archive, then streamed on the
    same slot, whose wal_status went from lost back to reserved."""
    if wal_archive:
        return ("; the member restores the WAL it lacks from the archive (restore_command), then streams on the "
                "same slot again; were the archive missing segments too, it must be rebuilt: patronictl reinit")
    return "; without a WAL archive the member must be rebuilt: patronictl reinit"


def dr_standby(plan: PlatformPlan, region: RegionPlan):
    """The standby cluster of this region that its DR partner runs (compiler/ir/postgres_ha.py), or None."""
    partner = plan.region(region.dr_partner)
    return next((s for s in getattr(partner.postgres_ha, "standbys", ()) if s.of_region == region.name), None)


def standby_archive_url(plan: PlatformPlan, region: RegionPlan) -> str:
    """Where the DR partner's standby cluster of this region restores WAL from (compiler/ir/wal_archive.py)."""
    return archive_url(standby_archive_region(plan.region(region.dr_partner), region), region.name)


def _standby_restore_note(plan: PlatformPlan, region: RegionPlan) -> str:
    if dr_standby(plan, region) is None:
        return ""
    # the standby's Patroni writes its standby_cluster.restore_command after including this file, so its own wins
    url = standby_archive_url(plan, region)
    if url == archive_url(region, region.name):
        return f"; the standby in {region.dr_partner} runs the same command (its Patroni's restore_command)"
    return f"; the standby in {region.dr_partner} reads the replicated copy, {url} (its Patroni's restore_command)"


def _primary_conninfo(region: RegionPlan) -> str:
    """The standbys' connection to the primary: address, port, role and TLS floor from the wiring."""
    from compiler.formats.postgresql_conf import conninfo
    conns = replication_connections(region)
    c = conns[0] if conns else None
    host, port = (c.address, c.port) if c else (primary_host(region), PORT)
    user = c.user if c else REPLICATION_USER
    floor = tls_floor(conns) or server_tls_floor(region)
    return conninfo([("host", host), ("port", port), ("user", user), ("passfile", PASSFILE),
                     ("sslmode", "verify-full"), ("sslrootcert", f"{TLS_DIR}/ca.crt"),
                     ("ssl_min_protocol_version", TLS_PROTOCOL[floor])])


def _extension_settings(region: RegionPlan, z: Sizing) -> tuple[Setting, ...]:
    exts = region.settings.datastores.postgres.extensions
    libs = preload_libraries(region)
    out = [Setting("shared_preload_libraries", ",".join(libs),
                   f"extensions that need preloading, of {', '.join(exts)}")]
    if "pg_stat_statements" in exts:
        out += [Setting("pg_stat_statements.max", 10000),
                Setting("pg_stat_statements.track", "top"),
                Setting("track_io_timing", True, "I/O time per statement for the query-time SLO")]
    if "timescaledb" in exts:
        out += [Setting("timescaledb.max_background_workers", z.timescaledb_workers,
                        f"1 launcher + 3 x {len(region.shards)} shard databases (a scheduler and 2 job workers each)"),
                Setting("timescaledb.telemetry_level", "off", "no telemetry leaves the data tier")]
    if "pg_partman" in exts:
        out += [Setting("pg_partman_bgw.dbname", ",".join(s.database for s in region.shards), "every shard database"),
                Setting("pg_partman_bgw.interval", 3600, "partition maintenance hourly"),
                Setting("pg_partman_bgw.role", "postgres")]
    return tuple(out)


@dataclass(frozen=True)
class HbaRule:
    """One pg_hba.conf line. databases/users: a keyword as a string ("all", "replication") or a tuple of names."""

    type: str
    databases: str | tuple[str, ...]
    users: str | tuple[str, ...]
    address: str
    method: str
    why: str = ""
    options: str = ""  # auth options after the method (clientcert=verify-ca)


def _hba_names(value: str):
    """A connection's database or user: a keyword (all, replication) as is, else the names it lists."""
    if value in ("all", "replication"):
        return value
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _admitting(c: Connection) -> list[HbaRule]:
    """One line per source address of a connection, over TLS with SCRAM when it has TLS."""
    cert = "clientcert=verify-ca" if c.tls and c.source.host_group == "pgbouncer" else ""
    return [HbaRule("hostssl" if c.tls else "host", _hba_names(c.database or "all"), _hba_names(c.user or "all"), cidr,
                    "scram-sha-256", f"{c.purpose} ({c.id})" if i == 0 else "", cert)
            for i, cidr in enumerate(c.source.cidrs)]


def hba_rules(plan: PlatformPlan, region: RegionPlan) -> list[HbaRule]:
    """First match wins: local administration, then one hostssl line per source address of every connection
    with the `pg_hba` layer (PgBouncer's server connections, the replicas, the DR standby), then reject.

    Clients are matched by address (the CIDRs the wiring gives their host group), never by host name: a
    host-name line needs reverse DNS records that nothing creates. The address is a whole subnet, which other
    machines share (EKS pods take node-subnet addresses), so PgBouncer's lines also require a client certificate of
    the region's CA (clientcert=verify-ca): only a data host, which holds one, can log in as the auth user or a
    service's role; a pod with a stolen password cannot."""
    rules = [
        HbaRule("local", "all", ("postgres",), "", "peer", "Ansible and maintenance as the OS user postgres"),
        HbaRule("local", "replication", ("postgres",), "", "peer", "pg_basebackup on the server itself"),
        HbaRule("local", "all", "all", "", "scram-sha-256", "local roles (postgres_exporter) with their passwords"),
    ]
    for c in region.through("pg_hba"):
        rules += _admitting(c)
    rules += [HbaRule("host", "all", "all", "0.0.0.0/0", "reject", "everything else"),
              HbaRule("host", "all", "all", "::/0", "reject")]
    return rules


def standby_hba_rules(plan: PlatformPlan, region: RegionPlan, of_region: str) -> list[HbaRule]:
    """The pg_hba.conf of the standby cluster `region` runs for `of_region`: the source's rules (the cluster is a copy
    of the source's, its data and roles), then this region's connections to that cluster (STANDBY_HBA_LAYER: its
    PgBouncer, once the cluster is promoted), before the source's final rejects. The source's file alone admitted
    only the source's PgBouncer: after a promotion, this region's PgBouncer was refused."""
    rules = hba_rules(plan, plan.region(of_region))
    rejects = [r for r in rules if r.method == "reject"]
    extra = []
    for c in region.through(STANDBY_HBA_LAYER):
        if standby_of(c.dest.name) == of_region:
            extra += _admitting(c)
    if any(standby_of(c.dest.name) == of_region for c in region.through("prometheus")):
        # this region's postgres_exporter probes the standby (compiler/ir/dr_watch.py) as the source's exporter role,
        # whose password stays in the source: by peer, before the source's password line for local roles
        at = next(i for i, r in enumerate(rules) if r.type == "local" and r.method != "peer")
        rules.insert(at, HbaRule("local", "all", (POSTGRES_EXPORTER_USER,), "", "peer",
                                 f"{region.name}'s postgres_exporter probes this standby as its OS user (no password: "
                                 f"the role's is {of_region}'s)"))
    return [r for r in rules if r.method != "reject"] + extra + rejects


@dataclass(frozen=True)
class Extension:
    name: str
    schema: str | None


def extensions(region: RegionPlan) -> list[Extension]:
    return [Extension(e, EXTENSION_SCHEMA.get(e)) for e in region.settings.datastores.postgres.extensions]
