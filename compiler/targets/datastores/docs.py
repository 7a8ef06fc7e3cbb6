"""The data-tier section of docs/regions/<region>.md: nodes, sizes, computed settings with their formulas, shards."""

from __future__ import annotations

from compiler.docs import markdown_table
from compiler.ir import PlatformPlan, RegionPlan
from compiler.targets.datastores import pgbouncer as pgbouncer
from compiler.targets.datastores import postgres as postgres
from compiler.targets.datastores import redis as redis
from compiler.targets.datastores.shards import franchises_per_shard, route_spans

GROUPS = {"postgres_primary": "PostgreSQL primary", "postgres_replicas": "PostgreSQL read replica",
          "pgbouncer": "PgBouncer", "redis_cluster": "Redis"}


def _code(v, true_false=("on", "off")) -> str:
    if isinstance(v, bool):
        v = true_false[0] if v else true_false[1]
    elif isinstance(v, list):
        v = " ".join(str(x) for x in v)
    return f"`{v}`" if str(v) else "(empty)"


def _settingsmarkdown_table(sections, true_false=("on", "off")) -> str:
    """The settings that carry a formula or a reason (the others are fixed policy, see the file)."""
    rows = [[f"`{s.name}`", _code(s.value, true_false), s.why] for sec in sections for s in sec.settings if s.why]
    return markdown_table(["setting", "value", "formula / reason"], rows)


def _nodes(region: RegionPlan) -> str:
    ds = region.settings.datastores
    size = {"postgres_primary": ds.postgres.instance, "postgres_replicas": ds.postgres.instance,
            "redis_cluster": ds.redis.instance}
    rows = []
    for h in region.hosts:
        if h.group not in GROUPS:
            continue
        inst = size.get(h.group)
        spec = (f"{inst.vcpus} vCPU, {inst.memory_gib} GiB, {inst.disk_gib} GiB disk "
                f"(`{inst.instance_types.get(region.cloud, '?')}`)" if inst else "(sized by the Terraform target)")
        role = GROUPS[h.group]
        if h.group == "redis_cluster":
            role = f"Redis replica of {h.replica_of}" if h.replica_of else "Redis primary"
        elif h.replica_of:
            role += f" of {h.replica_of}"
        rows.append([h.name, role, h.zone, f"`{h.fqdn}`", spec])
    return markdown_table(["host", "role", "zone", "fqdn", "size"], rows)


def _standby_archive(plan: PlatformPlan, region: RegionPlan) -> str:
    """Where the partner's standby cluster restores this region's WAL from, when one runs and the region archives."""
    if not region.settings.datastores.postgres.wal_archive or postgres.dr_standby(plan, region) is None:
        return ""
    url = postgres.standby_archive_url(plan, region)
    if url == postgres.archive_url(region, region.name):
        return (f", restoring WAL from this bucket (the backups are not replicated to {region.dr_partner}: its hosts "
                "need read access to it)")
    return (f", restoring WAL from the copy the bucket replication keeps in {region.dr_partner}'s bucket, `{url}`, "
            "which its hosts read with their own cloud identity")


def region_section(plan: PlatformPlan, region: RegionPlan) -> str:
    ds = region.settings.datastores
    pg, rd, pgb = ds.postgres, ds.redis, ds.pgbouncer
    c = region.connections
    out = ["## Data tier\n",
           f"Files under `generated/datastores/{region.name}/`. PostgreSQL {pg.version} is {pg.deployment}, "
           f"Redis {rd.version} is {rd.deployment}; PgBouncer always runs on {pgb.hosts} hosts in front of "
           f"`{pgbouncer.server_address(region)}`.\n",
           "### Nodes\n", _nodes(region)]
    if postgres.self_managed(region):
        z = postgres.sizing(region)
        out += ["### PostgreSQL settings\n",
                f"Computed from the instance size ({pg.instance.vcpus} vCPU, {pg.instance.memory_gib} GiB, "
                f"{pg.instance.disk_gib} GiB disk), max_connections {pg.max_connections} and the spec; the same "
                "formula is the comment above each line of `postgresql.conf`.\n",
                _settingsmarkdown_table(postgres.settings(plan, region)),
                f"WAL is archived with WAL-G to `{postgres.archive_url(region, region.name)}` "
                + ("(credentials: the host's cloud identity; the prefix names the region, so archives replicated "
                   "between DR partners' buckets never share one). " if pg.wal_archive
                   else "(disabled by the spec). ")
                + f"Replication: {pg.read_replicas} read replica(s) stream from the primary"
                + (f"; a standby in {region.dr_partner} streams over the cross-region link and runs this same "
                   "postgresql.conf, with its own memory settings and archive_command (its Patroni configuration)"
                   if pg.cross_region_standby else "")
                + _standby_archive(plan, region)
                + f". max_worker_processes = {z.worker_processes}.\n",
                "`pg_hba.conf` admits, in order: the local superuser (peer), replication from the private subnets"
                + (f" and {region.dr_partner}'s private subnets" if pg.cross_region_standby else "")
                + ", the PgBouncer hosts by name and the private subnets by address, all `hostssl` with "
                  "scram-sha-256; everything else is rejected.\n"]
    else:
        out += ["### PostgreSQL\n", f"Managed by {region.cloud}: no postgresql.conf or pg_hba.conf is generated; "
                f"PgBouncer targets `{postgres.primary_host(region)}`, a name the managed endpoint must answer to.\n"]
    out += ["### PgBouncer\n",
            f"`{pgb.pool_mode}` pooling on port {pgb.port}, one `[databases]` entry per shard below. "
            f"Pool per database and role: {c.default_pool_size} + reserve {c.reserve_pool_size}, capped per database "
            f"by max_db_connections {c.default_pool_size + c.reserve_pool_size}; {c.pgbouncer_hosts} hosts x "
            f"{c.databases} databases x {c.default_pool_size + c.reserve_pool_size} = {c.server_connections} of "
            f"{c.postgres_available} usable server connections. Clients authenticate with SCRAM via "
            f"auth_query as `{pgb.auth_user}`; `{pgbouncer.AUTH_FILE}` (Ansible) holds only its password "
            f"(`{pgb.auth_password}`); its auth_query returns the services' roles' secrets only.\n",
            _settingsmarkdown_table(pgbouncer.settings(plan, region))]
    if region.data_access:
        out += ["### Each service's access\n",
                "A PostgreSQL role per service (CONNECT to the shard databases, a schema of its own, SELECT on the "
                "routing table) and a Redis ACL user (keys and channels `<service>:*`). Passwords are set by Ansible "
                "and delivered to the pods by the External Secrets Operator, from references derived from the "
                "datastore's own (`pgbouncer.auth_password`, `redis.password`): same store and entry with the field "
                "`<service>_password`; without a field, `-<service>` (aws-sm: `/<service>`) appended; `env:` "
                "references get `_<SERVICE>`.\n",
                "| service | PostgreSQL role | password | Redis user | password |\n| --- | --- | --- | --- | --- |\n"
                + "".join(f"| {a.service} | {f'`{a.db_role.name}`' if a.db_role else '-'} | "
                          f"{f'`{a.db_role.password_ref}`' if a.db_role else '-'} | "
                          f"{f'`{a.redis_user.name}`' if a.redis_user else '-'} | "
                          f"{_redis_credential(a.redis_user)} |\n"
                          for a in region.data_access if a.db_role or a.redis_user)]
    if redis.self_managed(region):
        out += ["### Redis Cluster\n",
                f"{rd.primaries} primaries x {rd.replicas_per_primary} replica(s), one node per host, replicas in "
                f"another zone than their primary (`redis-topology.json`). Each host's include directory "
                f"`{redis.INCLUDE_DIR}` (Ansible) binds the private address and defines one ACL user per "
                "service that uses Redis (its keys and channels `<service>:*` only, its password stored as a SHA-256 "
                "hash; the table below names each reference) and the user replicas "
                f"sync as, `{redis.REPLICATION_USER}` (`{rd.password}`, replication commands only); "
                "the default user is off.\n",
                _settingsmarkdown_table(redis.settings(plan, region), ("yes", "no"))]
    else:
        out += ["### Redis\n", f"Managed by {region.cloud}: no redis.conf is generated.\n"]
    counts = franchises_per_shard(plan)
    rows = [[s.number, s.database, f"{s.first_id}-{s.last_id}" if not plan.registry else "(registry)",
             counts[s.number], f"`{s.host}:{s.port}`"] for s in region.shards]
    spans = route_spans(plan) if plan.registry else 0
    out += ["### Shard routing\n",
            f"`setup.psql` creates this region's {len(region.shards)} shard databases and fills `franchise_shard_map` "
            f"in each with all {sum(counts.values()):,} franchises of the platform on {len(plan.shards)} "
            "shards, from the platform's routing table `generated/datastores/shards.sql` (one file for every region; "
            + (f"from the registry: {spans} ranges of consecutive ids" if plan.registry else "one id range per shard")
            + "), which it includes as `../shards.sql`: `psql -X -v ON_ERROR_STOP=1 -d postgres -f setup.psql` "
              "(not in a single transaction: CREATE DATABASE cannot run in one). The shards this region holds:\n",
            markdown_table(["shard", "database", "franchise ids", "franchises", "routed to"], rows)]
    return "\n".join(out)


def _redis_credential(user) -> str:
    """A Redis user's password reference, or how it authenticates without one (a managed cache: its cloud identity)."""
    if user is None:
        return "-"
    return f"`{user.password_ref}`" if user.password_ref else f"none: `{user.auth}` as its cloud identity"
