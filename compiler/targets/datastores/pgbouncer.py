"""PgBouncer: one [databases] entry per shard the region owns, pools sized from the core's connection budget.

Authentication: clients log in with SCRAM; PgBouncer looks their secret up with `auth_query`, run
as `auth_user` through pgbouncer.get_auth() (pgbouncer-auth.sql: superusers and replication roles
are never returned). The only password PgBouncer holds is auth_user's own, in `auth_file`, which
Ansible renders from the spec's reference; nothing secret is in this file.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.targets.datastores.model import Section, Setting
from compiler.targets.datastores.postgres import PORT, primary_host, self_managed, server_connection, tls_floor

from compiler.ir.names import PGBOUNCER_AUTH_FILE as AUTH_FILE, PGBOUNCER_TLS_DIR as TLS_DIR  # noqa: F401
from compiler.ir.names import PGBOUNCER_READ_ONLY_SUFFIX as READ_ONLY_SUFFIX  # <shard database>_ro: the replicas' pool
AUTH_QUERY = "SELECT usename, passwd FROM pgbouncer.get_auth($1)"
TLS_PROTOCOLS = {"1.2": "tlsv1.2,tlsv1.3", "1.3": "tlsv1.3"}


def _server(region: RegionPlan) -> tuple[str, int]:
    """Where PgBouncer's server connections go: the wiring's address and port (the managed alias otherwise)."""
    c = server_connection(region)
    return (c.address, c.port) if c else (primary_host(region), PORT)


def server_address(region: RegionPlan) -> str:
    """The name PgBouncer's read-write pools dial: the Patroni leader's endpoint (the managed alias otherwise)."""
    return _server(region)[0]


def read_only_connection(region: RegionPlan):
    """PgBouncer -> the replicas' endpoint (the wiring's read-only pool), None without replicas or with a managed server."""
    return next((c for c in region.through("pg_hba") if c.source.host_group == "pgbouncer" and c.dest.name == "postgres-read"),
                None)


def databases(region: RegionPlan) -> list[tuple[str, list[tuple[str, object]]]]:
    host, port = _server(region)
    out = [(s.database, [("host", host), ("port", port), ("dbname", s.database)]) for s in region.shards]
    ro = read_only_connection(region)
    if ro:  # the read-only pool: the same shard database on whichever replica the load balancer picks
        out += [(s.database + READ_ONLY_SUFFIX, [("host", ro.address), ("port", ro.port), ("dbname", s.database)])
                for s in region.shards]
    # DR serving (disaster_recovery.failed_over): a lost region's shards, served from the standby cluster this region
    # promoted, each line with the promoted cluster's own pool size (compiler/ir/dr_serving.py)
    out += [(p.name, [("host", p.host), ("port", p.port), ("dbname", p.dbname), ("pool_size", p.pool_size),
                      ("max_db_connections", p.max_db_connections)]) for p in region.promoted_pools]
    return out


def settings(plan: PlatformPlan, region: RegionPlan) -> list[Section]:
    pgb = region.settings.datastores.pgbouncer
    c = region.connections
    read_timeout_s = max(1, region.settings.gateway.read_timeout_ms // 1000)
    spec_floor = region.settings.security.tls_min_version
    server = server_connection(region)
    server_floor = (server.tls if server else "") or spec_floor
    client_floor = tls_floor(c for c in region.wiring if c.dest.host_group == "pgbouncer"
                             and c.dest_port == pgb.port) or spec_floor
    return [
        Section("Listening", (
            Setting("listen_addr", "*", "clients are pods in the private subnets; TLS and SCRAM are required"),
            Setting("listen_port", pgb.port, "spec: datastores.pgbouncer.port"),
            Setting("unix_socket_dir", "/var/run/postgresql"),
            Setting("logfile", "/var/log/postgresql/pgbouncer.log"),
            Setting("pidfile", "/var/run/postgresql/pgbouncer.pid"),
        )),
        Section("Authentication (no passwords here: auth_file is rendered by Ansible)", (
            Setting("auth_type", "scram-sha-256"),
            Setting("auth_file", AUTH_FILE, f"holds only {pgb.auth_user}'s password, from {pgb.auth_password}"),
            Setting("auth_user", pgb.auth_user, "spec: datastores.pgbouncer.auth_user"),
            Setting("auth_query", AUTH_QUERY, "pgbouncer.get_auth() is created in every shard database by pgbouncer-auth.sql"),
        )),
        Section(f"Pools: the connection budget ({c.pgbouncer_hosts} hosts x {c.databases} shard databases)", (
            Setting("pool_mode", pgb.pool_mode, "spec: datastores.pgbouncer.pool_mode"),
            Setting("max_client_conn", c.max_client_conn,
                    f"spec: datastores.pgbouncer.max_client_conn; services open up to {c.client_connections} at max replicas"),
            Setting("default_pool_size", c.default_pool_size,
                    f"(max_connections - reserved = {c.postgres_available}) / ({c.pgbouncer_hosts} hosts x "
                    f"{c.databases} databases) - reserve {c.reserve_pool_size}"),
            Setting("min_pool_size", 0),
            Setting("reserve_pool_size", c.reserve_pool_size, "spec: datastores.pgbouncer.reserve_pool_size"),
            Setting("reserve_pool_timeout", 3),
            Setting("max_db_connections", c.default_pool_size + c.reserve_pool_size,
                    "pool + reserve: caps a database's server connections even when several roles each get a pool"),
            Setting("server_lifetime", 3600),
            Setting("server_idle_timeout", 600),
            Setting("server_connect_timeout", 5),
            Setting("server_login_retry", 5),
            Setting("query_wait_timeout", read_timeout_s, "the gateway's read timeout: a client waiting longer has been answered already"),
            Setting("server_reset_query", "DISCARD ALL", "used in session pooling only"),
            Setting("server_check_query", "select 1"),
            Setting("server_check_delay", 30),
            Setting("ignore_startup_parameters", ["extra_float_digits"], "sent by JDBC and asyncpg; harmless to drop"),
            Setting("application_name_add_host", True),
            Setting("dns_max_ttl", 15, "re-resolve the primary's name quickly after a failover"),
            Setting("tcp_keepalive", True),
            Setting("stats_period", 60),
        )),
        Section("TLS", (
            Setting("client_tls_sslmode", "require"),
            Setting("client_tls_key_file", f"{TLS_DIR}/server.key"),
            Setting("client_tls_cert_file", f"{TLS_DIR}/server.crt"),
            Setting("client_tls_protocols", TLS_PROTOCOLS[client_floor], f"the services' connections: TLS {client_floor} or later"),
            Setting("server_tls_sslmode", "verify-full", "PostgreSQL's certificate must name the endpoint dialled "
                    "(every member's carries the leader's and the replicas' names)")
            if self_managed(region) else
            Setting("server_tls_sslmode", "verify-ca", "the managed endpoint's certificate names the provider's host, "
                    "not the alias; ca.crt is the provider's CA bundle"),
            Setting("server_tls_ca_file", f"{TLS_DIR}/ca.crt"),
            *((Setting("server_tls_cert_file", f"{TLS_DIR}/server.crt", "PgBouncer's certificate from the region's CA, "
                       "which pg_hba.conf requires of it (clientcert=verify-ca): the subnet alone admits no one"),
               Setting("server_tls_key_file", f"{TLS_DIR}/server.key")) if self_managed(region) else ()),
            Setting("server_tls_protocols", TLS_PROTOCOLS[server_floor],
                    f"PgBouncer -> PostgreSQL: TLS {server_floor} or later (postgresql.conf ssl_min_protocol_version agrees)"
                    if server else f"spec: security.tls_min_version {spec_floor}"),
        )),
    ]
