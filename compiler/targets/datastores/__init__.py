r"""The data tier: Redis, PostgreSQL, PgBouncer and the shard map, per region under generated/datastores/<region>/.

    redis.conf            every Redis Cluster node (only if the region's Redis is self-managed)
    redis-topology.json   the cluster's nodes (name, fqdn, zone, role, replica_of) and what the
                          per-host includes hold, for the Ansible target (self-managed Redis only)
    postgresql.conf       primary, read replicas and the DR standby (self-managed PostgreSQL only)
    pg_hba.conf           their client authentication (self-managed PostgreSQL only)
    dr-<region>/routing.psql  only while <region> is failed over to this one (disaster_recovery.failed_over):
                          writes the routing table into the promoted copy of <region>'s shard databases
    pgbouncer.ini         always: PgBouncer runs on VMs in front of either kind of PostgreSQL
    extensions.sql        CREATE EXTENSION for each shard database
    pgbouncer-auth.sql    the auth_query function PgBouncer uses, in each shard database: it returns
                          the services' roles' secrets only
    setup.psql            the entry point: creates the shard databases (CREATE DATABASE cannot run
                          in a transaction) and each service's role (compiler/ir/data_access.py), then
                          runs extensions.sql, pgbouncer-auth.sql and the platform's ../shards.sql in
                          each, one transaction each, and grants: CONNECT to PgBouncer's auth_user and
                          the services' roles only, SELECT on the routing table, a schema per service

and once for the platform, generated/datastores/shards.sql: the franchise_shard_map table with every
franchise's route, which every region's setup.psql includes (`\ir ../shards.sql`). It is the same for
every region, so it is written once: its size grows with the platform's shards (and registry), not with
regions x shards.

Managed datastores get no server configuration: the cloud runs them. The SQL files still apply to
a managed PostgreSQL (through its endpoint), except the replication role.

Text formats are rendered from templates/datastores/ with the escaping filters of
compiler/formats/*.py; a value a format cannot hold stops the build with the region and file named.
"""

from __future__ import annotations

from compiler.formats import pg_hba, pgbouncer_ini, postgresql_conf, redis_conf, sql
from compiler.formats.conf import FormatError, comment
from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.data_access import db_roles
from compiler.ir.names import SHARD_MAP_TABLE
from compiler.ir.dr_serving import promoted_routing_file
from compiler.ir.postgres_ha import standby_hba_file
from compiler.render import banner, dump_json, render
from compiler.targets.datastores import pgbouncer as pgbouncer
from compiler.targets.datastores import postgres as postgres
from compiler.targets.datastores import redis as redis
from compiler.targets.datastores.shards import each_route, routes

NAME = "datastores"
SHARD_MAP = "shards.sql"  # generated/datastores/shards.sql, once for the platform
FILTERS = {"comment": comment, **redis_conf.FILTERS, **postgresql_conf.FILTERS, **pg_hba.FILTERS,
           **pgbouncer_ini.FILTERS, **sql.FILTERS}


class DatastoresEmitError(FormatError):
    """A spec value that cannot be written into a data-tier file (exit 2)."""


def _render(region: RegionPlan, template: str, **ctx) -> str:
    try:
        return render(NAME, template, filters=FILTERS, region=region, **ctx)
    except FormatError as exc:
        out = template.removesuffix(".j2")
        raise DatastoresEmitError(f"datastores/{region.name}/{out} (region {region.name}): {exc}") from None


def _spec_name(plan: PlatformPlan) -> str:
    return plan.spec_file.rsplit("/", 1)[-1] if plan.spec_file else "platform.yaml"


def emit_region(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    ds = region.settings.datastores
    out_dir = f"{NAME}/{region.name}"
    spec = _spec_name(plan)
    files: dict[str, str] = {}
    if redis.self_managed(region):
        files["redis.conf"] = _render(region, "redis.conf.j2", banner=banner("#", spec), redis=ds.redis,
                                      sections=redis.settings(plan, region), include=f"{redis.INCLUDE_DIR}/*.conf")
        files["redis-topology.json"] = dump_json(redis.topology(plan, region))
    if postgres.self_managed(region):
        files["postgresql.conf"] = _render(region, "postgresql.conf.j2", banner=banner("#", spec), pg=ds.postgres,
                                           sections=postgres.settings(plan, region))
        files["pg_hba.conf"] = _render(region, "pg_hba.conf.j2", banner=banner("#", spec), pg=ds.postgres,
                                       rules=postgres.hba_rules(plan, region), standby_of=None)
        for sb in region.postgres_ha.standbys if region.postgres_ha else ():
            files[standby_hba_file(sb.of_region)] = _render(
                region, "pg_hba.conf.j2", banner=banner("#", spec), pg=ds.postgres, standby_of=sb.of_region,
                rules=postgres.standby_hba_rules(plan, region, sb.of_region))
    for of_region, pools in _promoted_by_region(region).items():
        sb = next(x for x in region.postgres_ha.standbys if x.of_region == of_region)
        files[promoted_routing_file(of_region)] = _render(
            region, "promoted-routing.psql.j2", banner=banner("--", spec), of_region=of_region, scope=sb.scope,
            host=pools[0].host, port=pools[0].port, databases=list(dict.fromkeys(p.dbname for p in pools)))
    read_only = pgbouncer.read_only_connection(region)
    files["pgbouncer.ini"] = _render(region, "pgbouncer.ini.j2", banner=banner(";", spec),
                                     server=pgbouncer.server_address(region), read_only=read_only and read_only.address,
                                     connections=region.connections, auth_file=pgbouncer.AUTH_FILE,
                                     databases=pgbouncer.databases(region), sections=pgbouncer.settings(plan, region))
    libs = postgres.preload_libraries(region)
    files["extensions.sql"] = _render(
        region, "extensions.sql.j2", banner=banner("--", spec), extensions=postgres.extensions(region),
        preload_note=(f"Needs shared_preload_libraries = {','.join(libs)} (postgresql.conf)" if libs
                      else "No extension here needs shared_preload_libraries"))
    roles = db_roles(region.data_access)
    files["pgbouncer-auth.sql"] = _render(region, "pgbouncer-auth.sql.j2", banner=banner("--", spec), roles=roles,
                                          auth_user=ds.pgbouncer.auth_user, auth_password=ds.pgbouncer.auth_password)
    replication = postgres.self_managed(region) and (ds.postgres.read_replicas or ds.postgres.cross_region_standby)
    files["setup.psql"] = _render(region, "setup.psql.j2", banner=banner("--", spec), shards=region.shards,
                                  replication_user=postgres.REPLICATION_USER if replication else None,
                                  replication_password=ds.postgres.replication_password,
                                  roles=roles, auth_user=ds.pgbouncer.auth_user, shard_map=SHARD_MAP_TABLE)
    return {f"{out_dir}/{name}": text for name, text in sorted(files.items())}


def _promoted_by_region(region: RegionPlan) -> dict:
    """The region's PgBouncer lines on promoted clusters (DR serving), by the failed-over region they serve."""
    out: dict = {}
    for p in region.promoted_pools:
        out.setdefault(p.of_region, []).append(p)
    return out


def emit_global(plan: PlatformPlan) -> dict[str, str]:
    """generated/datastores/shards.sql: the platform's routing table, once (every region's setup.psql includes it)."""
    if getattr(plan.registry, "ids", None) is not None:  # the registry's columns: each shard's row made as it is written
        shard_routes, total = each_route(plan), len(plan.registry)
    else:
        shard_routes = routes(plan, keep=False)  # computed for this file only (see routes)
        total = sum(r.count for r in shard_routes)
    try:
        text = render(NAME, "shards.sql.j2", filters=FILTERS, banner=banner("--", _spec_name(plan)), routes=shard_routes,
                      key=plan.spec.sharding.key, total=total,
                      shards_total=len(plan.shards), regions_total=len(plan.regions),
                      source=("explicit placements from sharding.registry_file" if plan.registry
                              else f"id ranges of {plan.spec.sharding.franchises_per_shard} per shard"))
    except FormatError as exc:
        raise DatastoresEmitError(f"{NAME}/{SHARD_MAP}: {exc}") from None
    return {f"{NAME}/{SHARD_MAP}": text}


def docs_region(plan: PlatformPlan, region: RegionPlan) -> str:
    from compiler.targets.datastores.docs import region_section
    return region_section(plan, region)
