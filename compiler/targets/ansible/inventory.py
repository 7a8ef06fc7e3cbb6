"""Per-region inventory: hosts.yml (groups, hosts, zones) and group_vars/ (the resolved settings).

Every value here comes from the IR. Settings are named after the role that reads them
(`postgresql_*`, `redis_*` ...); `common_firewall_*` rules are composed here, per group, so the
common role only renders what the spec allows.
"""

from __future__ import annotations

import hashlib
import ipaddress

from compiler.errors import PlatformcError
from compiler.ir import Host, PlatformPlan, RegionPlan
from compiler.ir.names import POSTGRES_PORT
from compiler.targets.ansible.roles_exporters import POSTGRES_EXPORTER_PORT, REDIS_EXPORTER_PORT
from compiler.targets.ansible.text import COLLECTIONS, literal, scheme, secret_var

# the groups of the data hosts, which sit under data_tier in hosts.yml (reached through the bastion)
DATA_GROUPS = ("postgres_primary", "postgres_replicas", "pgbouncer", "redis_cluster", "elasticsearch")
ELASTICSEARCH_PORTS = (9200, 9300)
SSH_PORT = 22

# Each cloud's own time source; AWS and GCP smear leap seconds, so no public pool is mixed in.
TIME_SOURCES = {
    "aws": {"common_ntp_servers": ["169.254.169.123"], "common_ptp_hyperv": False},
    "gcp": {"common_ntp_servers": ["metadata.google.internal"], "common_ptp_hyperv": False},
    "azure": {"common_ntp_servers": [], "common_ptp_hyperv": True},  # the Hyper-V PTP clock
}


class AnsibleTargetError(PlatformcError):
    """A spec value the Ansible output cannot express (exit 2)."""


def _networks(values, where: str) -> list[str]:
    """CIDRs normalised and merged: nftables refuses overlapping elements in one set."""
    nets = []
    for v in values:
        try:
            nets.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise AnsibleTargetError(f"{where}: {v!r} is not a CIDR") from None
    v4 = [n for n in nets if n.version == 4]
    v6 = [n for n in nets if n.version == 6]
    return [str(n) for n in ipaddress.collapse_addresses(v4)] + [str(n) for n in ipaddress.collapse_addresses(v6)]


def _rule(comment: str, ports, sources) -> dict:
    return {"comment": comment, "ports": sorted(ports), "sources": sources}


# ---------------------------------------------------------------- hosts.yml

def _host_vars(h: Host) -> dict:
    out = {"ansible_host": h.fqdn, "platformc_zone": literal(h.zone)}
    if h.replica_of and h.group == "postgres_replicas":
        out["postgresql_replica_of"] = h.replica_of
    if h.replica_of and h.group == "redis_cluster":
        out["redis_replica_of"] = h.replica_of
    return out


def _group(region: RegionPlan, name: str) -> dict:
    hosts = {h.name: _host_vars(h) for h in region.hosts_in(name)}
    return {"hosts": hosts} if hosts else {}


def hosts_yml(region: RegionPlan) -> dict:
    """Every group is present even when empty (a managed datastore), so no play's pattern is unknown."""
    groups = {name: _group(region, name) for name in (*DATA_GROUPS, "bastion")}
    return {"all": {"children": {
        "data_tier": {"children": {
            "postgres": {"children": {"postgres_primary": groups["postgres_primary"],
                                      "postgres_replicas": groups["postgres_replicas"]}},
            "pgbouncer": groups["pgbouncer"],
            "redis_cluster": groups["redis_cluster"],
            "elasticsearch": groups["elasticsearch"],
        }},
        "bastion": groups["bastion"],
    }}}


# ---------------------------------------------------------------- group_vars

def _secret(plan: PlatformPlan, region: RegionPlan, ref: str) -> str:
    gcp = plan.spec.clouds.get("gcp")
    return secret_var(ref, region.cloud, region.cloud_region, gcp.account if gcp else None)


def _private(region: RegionPlan) -> list[str]:
    return _networks([z.private_cidr for z in region.zones], f"regions.{region.name} zones")


def _service_rule(region: RegionPlan, what: str, ports) -> list[dict]:
    return [_rule(f"{what} from the region's private subnets", ports, _private(region))]


def vars_all(plan: PlatformPlan, region: RegionPlan) -> dict:
    s = region.settings
    admin = _networks(s.network.admin_cidrs, f"regions.{region.name} settings.network.admin_cidrs")
    ssh_from = _networks([*s.network.admin_cidrs, region.cidr], f"regions.{region.name} settings.network.admin_cidrs")
    base = [_rule("SSH from the admin networks and the region (bastion)", [SSH_PORT], ssh_from)]
    if s.monitoring.node_exporter:
        base += _service_rule(region, "node_exporter scrapes", [9100])
    bastions = region.hosts_in("bastion")
    return {
        "platformc_region": region.name,
        "platformc_cloud": region.cloud,
        "platformc_cloud_region": region.cloud_region,
        "platformc_internal_domain": region.internal_domain,
        "platformc_bastion": bastions[0].fqdn if bastions else "",
        "common_admin_cidrs": admin,
        "common_region_cidr": str(ipaddress.ip_network(region.cidr, strict=False)),
        "common_private_cidrs": _private(region),
        **TIME_SOURCES[region.cloud],
        "common_firewall_base_rules": base,
        "common_firewall_service_rules": [],
        "node_exporter_enabled": s.monitoring.node_exporter,
        "node_exporter_port": 9100,
    }


def vars_data_tier(region: RegionPlan) -> dict:
    bastions = region.hosts_in("bastion")
    if not bastions:
        return {}
    # Data hosts have no public address: SSH reaches them through the region's bastion.
    return {"ansible_ssh_common_args": f"-o ProxyJump={bastions[0].fqdn}"}


def _backup_job(name: str, sched, kind: str) -> dict:
    minute, hour, day, month, weekday = sched.cron.split()
    return {"name": name, "kind": kind, "minute": minute, "hour": hour, "day": day, "month": month,
            "weekday": weekday, "retention_days": sched.retention_days,
            "copy_to_dr_partner": sched.copy_to_dr_partner}


def _backups(plan: PlatformPlan, region: RegionPlan, kind: str, schedules: tuple[str, ...]) -> dict:
    b = region.settings.backups
    partner = plan.region(region.dr_partner)
    return {
        "backups_url": region.backup_url,
        "backups_dr_partner_url": partner.backup_url,
        "backups_jobs": [_backup_job(n, getattr(b, n), kind) for n in schedules],
    }


def vars_postgres(plan: PlatformPlan, region: RegionPlan) -> dict:
    pg = region.settings.datastores.postgres
    pgb = region.settings.datastores.pgbouncer
    rules = _service_rule(region, "PostgreSQL clients and replication", [POSTGRES_PORT])
    rules += _service_rule(region, "postgres_exporter scrapes", [POSTGRES_EXPORTER_PORT])
    if pg.cross_region_standby:
        partner = plan.region(region.dr_partner)
        rules.append(_rule(f"the DR standby in {partner.name} streaming from this primary", [POSTGRES_PORT],
                           _networks([partner.cidr], f"regions.{partner.name}.cidr")))
    return {
        "postgresql_version": pg.version,
        "postgresql_extensions": list(pg.extensions),
        "postgresql_max_connections": pg.max_connections,
        "postgresql_reserved_connections": pg.reserved_connections,
        "postgresql_read_replicas": pg.read_replicas,
        "postgresql_databases": [sh.database for sh in region.shards],
        "postgresql_wal_archive": pg.wal_archive,
        "postgresql_backup_url": region.backup_url,
        "postgresql_admin_password": _secret(plan, region, pg.admin_password),
        "postgresql_replication_password": _secret(plan, region, pg.replication_password),
        # setup.psql creates PgBouncer's auth_user; the primary sets its password
        "postgresql_pgbouncer_auth_user": pgb.auth_user,
        "postgresql_pgbouncer_auth_password": _secret(plan, region, pgb.auth_password),
        "common_firewall_service_rules": rules,
        # the exporter's stat_statements collector needs the extension (and its preload)
        "postgres_exporter_stat_statements": "pg_stat_statements" in pg.extensions,
        # Daily, weekly and monthly: base backups of the database (a standby skips them at run time).
        **_backups(plan, region, "postgresql", ("daily", "weekly", "monthly")),
    }


# The CA bundle that verifies each cloud's managed PostgreSQL. Cloud SQL has a CA per instance and
# no public bundle: the operator sets pgbouncer_server_ca_file (the README says how).
MANAGED_POSTGRES_CA = {
    "aws": "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem",
    "azure": "https://cacerts.digicert.com/DigiCertGlobalRootG2.crt.pem",
    "gcp": "",
}


def vars_pgbouncer(plan: PlatformPlan, region: RegionPlan) -> dict:
    pgb = region.settings.datastores.pgbouncer
    c = region.connections
    managed = region.settings.datastores.postgres.deployment == "managed"
    return {
        "pgbouncer_managed_postgres": managed,
        **({"pgbouncer_server_ca_url": MANAGED_POSTGRES_CA[region.cloud]} if managed else {}),
        "pgbouncer_port": pgb.port,
        "pgbouncer_pool_mode": pgb.pool_mode,
        "pgbouncer_max_client_conn": pgb.max_client_conn,
        "pgbouncer_default_pool_size": c.default_pool_size,
        "pgbouncer_reserve_pool_size": pgb.reserve_pool_size,
        "pgbouncer_auth_user": pgb.auth_user,
        "pgbouncer_auth_password": _secret(plan, region, pgb.auth_password),
        "common_firewall_service_rules": _service_rule(region, "PgBouncer clients", [pgb.port]),
    }


def vars_redis(plan: PlatformPlan, region: RegionPlan) -> dict:
    r = region.settings.datastores.redis
    # The node list, ports and ACL rules come from the data tier's redis-topology.json.
    return {
        "redis_version": r.version,
        "redis_primaries": r.primaries,
        "redis_replicas_per_primary": r.replicas_per_primary,
        "redis_maxmemory_mb": r.maxmemory_mb,
        "redis_maxmemory_policy": r.maxmemory_policy,
        # SHA-1 of a secret reference, as redis-topology.json names it -> the lookup of that secret
        # (hashed: a reference may be longer than a YAML line should be)
        "redis_secrets": {hashlib.sha1(r.password.encode()).hexdigest(): _secret(plan, region, r.password)},
        "common_firewall_service_rules": [
            *_service_rule(region, "Redis clients and the cluster bus", [r.port, r.port + 10000]),
            *_service_rule(region, "redis_exporter scrapes", [REDIS_EXPORTER_PORT])],
        # Hourly: application state (the Redis snapshot of each node that is a primary at run time).
        **_backups(plan, region, "redis", ("hourly",)),
    }


def vars_elasticsearch(plan: PlatformPlan, region: RegionPlan) -> dict:
    es = region.settings.datastores.elasticsearch
    nodes = region.hosts_in("elasticsearch")
    heap_mb = min(es.instance.memory_gib * 1024 * es.heap_percent // 100, 31 * 1024)
    return {
        "elasticsearch_version": es.version,
        "elasticsearch_major_version": int(es.version.split(".")[0]),
        "elasticsearch_cluster_name": f"{plan.spec.organization.name}-{region.name}",
        "elasticsearch_heap_mb": heap_mb,
        "elasticsearch_seed_hosts": [h.fqdn for h in nodes],
        "elasticsearch_initial_master_nodes": [h.name for h in nodes],
        "common_firewall_service_rules": _service_rule(region, "Elasticsearch HTTP and transport", ELASTICSEARCH_PORTS),
    }


def vars_bastion(region: RegionPlan) -> dict:
    # ProxyJump through the bastion needs TCP forwarding there, and only there.
    return {"common_ssh_allow_tcp_forwarding": True}


def group_vars(plan: PlatformPlan, region: RegionPlan) -> dict[str, dict]:
    """File stem under group_vars/ -> variables."""
    return {
        "all": vars_all(plan, region),
        "data_tier": vars_data_tier(region),
        "postgres": vars_postgres(plan, region),
        "pgbouncer": vars_pgbouncer(plan, region),
        "redis_cluster": vars_redis(plan, region),
        "elasticsearch": vars_elasticsearch(plan, region),
        "bastion": vars_bastion(region),
    }


def secret_refs(plan: PlatformPlan) -> set[str]:
    """Every secret reference the inventories look up."""
    out = set()
    for r in plan.regions:
        ds = r.settings.datastores
        out |= {ds.postgres.admin_password, ds.postgres.replication_password, ds.pgbouncer.auth_password,
                ds.redis.password}
    return out


def collections_needed(plan: PlatformPlan) -> set[str]:
    """Collections whose lookup plugins those references need (ansible.builtin's env needs none)."""
    return {COLLECTIONS[scheme(ref)] for ref in secret_refs(plan)} - {None}
