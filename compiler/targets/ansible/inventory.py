"""Per-region inventory: hosts.yml (groups, hosts, zones) and group_vars/ (the resolved settings).

Every value here comes from the IR. Settings are named after the role that reads them
(`postgresql_*`, `redis_*` ...). The host firewall (`common_firewall_rules`, rendered by the common
role) is composed per host group from the region's wiring: exactly the connections that pass the
`nftables` layer into that group, each opening its destination port to its source's addresses as a
host sees them (GKE pods keep their pod-range addresses). The rules sit in each host's own group
(postgres_primary, postgres_replicas, pgbouncer, ...), so no parent group's list is overridden.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from functools import lru_cache

from compiler.errors import PlatformcError
from compiler.ir import Connection, Host, PlatformPlan, RegionPlan
from compiler.ir.backups import BACKUP_SCHEDULES, permanent_backup
from compiler.ir.cloud_names import certificate_vault_name
from compiler.ir.data_access import PG_ENV, ca_sources, db_roles, elasticsearch_users, published_ca_ref, redis_users
from compiler.ir.edge import kong_proxy_tls
from compiler.ir.secret_uses import SecretUse
from compiler.ir.names import (DATA_HOST_LOGIN_USER, ELASTICSEARCH_HTTP_PORT, ELASTICSEARCH_TRANSPORT_PORT,
                               KONG_PROXY_TLS_KEYS, NODE_EXPORTER_PORT, elasticsearch_client_indices)
from compiler.targets.ansible.roles_search import CLIENT_PRIVILEGES
from compiler.targets.ansible.text import COLLECTIONS, literal, scheme, secret_var

# the groups of the data hosts, which sit under data_tier in hosts.yml (reached through the bastion)
DATA_GROUPS = ("postgres_primary", "postgres_replicas", "pgbouncer", "redis_cluster", "elasticsearch")
# The parent groups of hosts.yml (a connection into `postgres` enters every PostgreSQL server).
PARENT_GROUPS = {"postgres_primary": ("data_tier", "postgres"), "postgres_replicas": ("data_tier", "postgres"),
                 "pgbouncer": ("data_tier",), "redis_cluster": ("data_tier",), "elasticsearch": ("data_tier",),
                 "bastion": ()}

# Each cloud's own time source; AWS and GCP smear leap seconds, so no public pool is mixed in.
TIME_SOURCES = {
    "aws": {"common_ntp_servers": ["169.254.169.123"], "common_ptp_hyperv": False},
    "gcp": {"common_ntp_servers": ["metadata.google.internal"], "common_ptp_hyperv": False},
    "azure": {"common_ntp_servers": [], "common_ptp_hyperv": True},  # the Hyper-V PTP clock
}


class AnsibleTargetError(PlatformcError):
    """A spec value the Ansible output cannot express (exit 2)."""


class _NotACidr(ValueError):
    pass


def _networks(values, where: str) -> list[str]:
    """CIDRs normalised and merged: nftables refuses overlapping elements in one set."""
    try:
        return list(_collapsed(tuple(values)))
    except _NotACidr as e:
        raise AnsibleTargetError(f"{where}: {e.args[0]!r} is not a CIDR") from None


@lru_cache(maxsize=4096)
def _collapsed(values: tuple[str, ...]) -> tuple[str, ...]:
    """_networks' work, once per distinct tuple of CIDRs: each host group's firewall merges the sources of the
    same connections again (~65 calls per region, a few distinct tuples), and ipaddress is slow (at 120 regions
    this was two thirds of the Ansible target's own time)."""
    nets = []
    for v in values:
        try:
            nets.append(ipaddress.ip_network(v, strict=False))
        except ValueError:
            raise _NotACidr(v) from None
    v4 = [n for n in nets if n.version == 4]
    v6 = [n for n in nets if n.version == 6]
    return tuple(str(n) for n in ipaddress.collapse_addresses(v4)) + tuple(str(n) for n in ipaddress.collapse_addresses(v6))


def _names(items) -> str:
    items = list(dict.fromkeys(items))
    return ", ".join(items) if len(items) <= 4 else f"{', '.join(items[:3])} and {len(items) - 3} more"


# A rule's comment fits ansible-lint's line length (160) in the group_vars line "- comment: '...'" with room for quotes
# YAML doubles
RULE_COMMENT_MAX = 140


def _rule_purpose(conns: list[Connection], head: str) -> str:
    """What one nftables rule admits, said as the connections it merges are (the exporter's scrape and the DR standbys'
    probes share a port and a source: "postgres clients" said neither), the most precise wording that fits."""
    if len(conns) == 1:
        return conns[0].purpose
    purposes = list(dict.fromkeys(c.purpose for c in conns))
    others = [c.dest.name for c in conns if c.dest.name != conns[0].dest.name]
    said = ["; ".join(purposes)] if len(purposes) <= 2 else []
    if others:
        said.append(f"{purposes[0]}; and {len(conns) - 1} more to {_names(others)}")
    said.append(f"{_names(dict.fromkeys(c.dest.name for c in conns))} clients")
    return next((w for w in said if len(head) + len(w) <= RULE_COMMENT_MAX), said[-1])


def firewall_rules(region: RegionPlan, group: str) -> list[dict]:
    """The nftables rules of one host group: one per (protocol, port, sources) of the connections with the
    `nftables` layer whose destination is this group or one of its parents, in wiring order."""
    entering = (group, *PARENT_GROUPS.get(group, ()))
    merged: dict[tuple, list[Connection]] = {}
    for c in region.through("nftables"):
        if c.dest.host_group in entering:
            sources = tuple(_networks(c.source.cidrs, f"connection {c.id}"))
            merged.setdefault((c.protocol.lower(), c.dest_port, sources), []).append(c)
    out = []
    for (protocol, port, sources), conns in merged.items():
        what = _names(c.source.name for c in conns)
        why = _rule_purpose(conns, f"{port}/{protocol} from {what}: ")
        out.append({"comment": f"{port}/{protocol} from {what}: {why}", "protocol": protocol, "ports": [port],
                    "sources": list(sources)})
    return out


# ---------------------------------------------------------------- hosts.yml

def _host_vars(h: Host) -> dict:
    out = {"ansible_host": h.fqdn, "platformc_zone": literal(h.zone)}
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
        # Patroni's DCS: the etcd members (hosts of the groups above; compiler/ir/postgres_ha.py chooses them)
        "etcd": {"hosts": {h: {} for h in region.postgres_ha.etcd_hosts}} if region.postgres_ha else {},
    }}}


# ---------------------------------------------------------------- group_vars

def _secret(plan: PlatformPlan, region: RegionPlan, ref: str) -> str:
    gcp = plan.spec.clouds.get("gcp")
    return secret_var(ref, region.cloud, region.cloud_region, gcp.account if gcp else None)


def vars_all(plan: PlatformPlan, region: RegionPlan) -> dict:
    s = region.settings
    admin = _networks(s.network.admin_cidrs, f"regions.{region.name} settings.network.admin_cidrs")
    bastions = region.hosts_in("bastion")
    return {
        "platformc_region": region.name,
        "platformc_cloud": region.cloud,
        "platformc_cloud_region": region.cloud_region,
        "platformc_internal_domain": region.internal_domain,
        "platformc_bastion": bastions[0].fqdn if bastions else "",
        # the user the region's key pair / VM admin key logs in as (compiler/ir/names.py; Terraform installs the key)
        **({"ansible_user": DATA_HOST_LOGIN_USER[region.cloud]} if region.cloud in DATA_HOST_LOGIN_USER else {}),
        # whose authorized_keys the common role keeps to the operators' current key (GCP: OS Login, none)
        "common_admin_user": DATA_HOST_LOGIN_USER.get(region.cloud, ""),
        "common_admin_cidrs": admin,
        **TIME_SOURCES[region.cloud],
        "node_exporter_enabled": s.monitoring.node_exporter,
        "node_exporter_port": NODE_EXPORTER_PORT,
    }


def vars_data_tier(region: RegionPlan) -> dict:
    bastions = region.hosts_in("bastion")
    if not bastions:
        return {}
    # Data hosts have no public address: SSH reaches them through the region's bastion, as the same login user
    # (ssh's jump hop does not take ansible_user: it would log in as the controller's local user)
    user = DATA_HOST_LOGIN_USER.get(region.cloud)
    return {"ansible_ssh_common_args": f"-o ProxyJump={user + '@' if user else ''}{bastions[0].fqdn}"}


def _backup_job(name: str, sched, kind: str) -> dict:
    minute, hour, day, month, weekday = sched.cron.split()
    return {"name": name, "kind": kind, "minute": minute, "hour": hour, "day": day, "month": month,
            "weekday": weekday, "retention_days": sched.retention_days,
            "copy_to_dr_partner": sched.copy_to_dr_partner, "permanent": permanent_backup(kind, name)}


def _backups(plan: PlatformPlan, region: RegionPlan, kind: str, schedules: tuple[str, ...]) -> dict:
    b = region.settings.backups
    partner = plan.region(region.dr_partner)
    jobs = [_backup_job(n, getattr(b, n), kind) for n in schedules]
    if kind == "postgresql":
        jobs += _standby_backup_jobs(plan, region, schedules)
    return {
        "backups_url": region.backup_url,
        "backups_dr_partner_url": partner.backup_url,
        "backups_jobs": jobs,
    }


def _standby_backup_jobs(plan: PlatformPlan, region: RegionPlan, schedules: tuple[str, ...]) -> list[dict]:
    """The base backups of each DR standby cluster this region hosts, on its hosts and port, on its source region's
    schedules and retention. A standby skips them at run time (its source's backups cover it); once promoted, its
    leader streams them into its own archive (wal_archive.promoted_prefix): without them the promoted cluster, which
    then serves the lost region's franchises, had no base backup to restore from until it was rebuilt. None where
    the source archives no WAL (the standby's archive_command, which the script reads, is then the source's)."""
    from compiler.ir.wal_archive import promoted_archive_command
    ha = region.postgres_ha
    out = []
    for sb in (ha.standbys if ha else ()):
        src = plan.region(sb.of_region)
        if not promoted_archive_command(region, src):
            continue
        for n in schedules:
            job = _backup_job(n, getattr(src.settings.backups, n), "postgresql")
            job.update({"instance": f"dr-{sb.of_region}", "pg_port": sb.port, "hosts": list(sb.hosts),
                        "copy_to_dr_partner": False})
            out.append(job)
    return out


def vars_postgres(plan: PlatformPlan, region: RegionPlan) -> dict:
    pg = region.settings.datastores.postgres
    pgb = region.settings.datastores.pgbouncer
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
        # each service's role (setup.psql creates it) and the lookup of its password
        "postgresql_service_roles": [{"name": r.name, "password": _secret(plan, region, r.password_ref)}
                                     for r in db_roles(region.data_access)],
        # the exporter's stat_statements collector needs the extension (and its preload)
        "postgres_exporter_stat_statements": "pg_stat_statements" in pg.extensions,
        **vars_patroni(plan, region),
        **vars_promoted_routing(plan, region),
        # Daily, weekly and monthly: base backups of the database (a standby skips them at run time).
        **_backups(plan, region, "postgresql", BACKUP_SCHEDULES["postgresql"]),
    }


def vars_promoted_routing(plan: PlatformPlan, region: RegionPlan) -> dict:
    """DR serving (compiler/ir/dr_serving.py): for each failed-over region this one serves (PlatformPlan.serving names
    it), the standby cluster it promoted and the data tier's routing script for its copy of the routing table, which
    the postgresql role's tasks/promoted.yml runs on that cluster's leader. Nothing when it serves none: the role's
    include then has no iteration, and the inventory is what it was."""
    from compiler.ir.dr_serving import promoted_routing_file
    ha = region.postgres_ha
    served = [home for home in plan.serving if plan.serving_region(home) == region.name]
    if ha is None or not served:
        return {}
    out = []
    for home in served:
        sb = next((x for x in ha.standbys if x.of_region == home), None)
        if sb is not None:  # R070 refuses a failed-over region without one
            out.append({"region": home, "file": promoted_routing_file(home), "hosts": list(sb.hosts),
                        "port": sb.port, "rest_port": sb.rest_port})
    return {"postgresql_promoted_routing": out} if out else {}


def vars_patroni(plan: PlatformPlan, region: RegionPlan) -> dict:
    """Patroni's configuration (compiler/targets/ansible/roles_patroni.py), the etcd members, and the names every
    PostgreSQL server's certificate carries (its own, and the two load-balanced endpoints PgBouncer dials)."""
    from compiler.targets.ansible import roles_patroni
    ha = region.postgres_ha
    if ha is None:
        return {}
    return {
        "postgresql_tls_names": ["{{ ansible_host }}", "{{ inventory_hostname }}", ha.leader_endpoint,
                                 ha.replica_endpoint, ha.sync_endpoint],
        "patroni_scope": ha.scope,
        "patroni_config": roles_patroni.patroni_config(plan, region),
        "patroni_standby_clusters": roles_patroni.standby_configs(plan, region, _secret),
        "patroni_standby_passwords": roles_patroni.standby_passwords(plan, region, _secret),
        "patroni_standby_cas": roles_patroni.standby_cas(plan, region, _secret),
        # the split-brain fence: the members of the standby cluster the DR partner runs of this one, and its CA
        **roles_patroni.fence(plan, region, _secret),
        "etcd_members": list(ha.etcd_hosts),
        "etcd_scope": ha.scope,
        "etcd_client_port": ha.etcd_client_port,
        "etcd_peer_port": ha.etcd_peer_port,
        "etcd_metrics_port": ha.etcd_metrics_port,
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
        "pgbouncer_nofile": c.pgbouncer_nofile,  # LimitNOFILE: max_client_conn + both pools' server connections + margin
        "pgbouncer_default_pool_size": c.default_pool_size,
        "pgbouncer_reserve_pool_size": pgb.reserve_pool_size,
        "pgbouncer_auth_user": pgb.auth_user,
        "pgbouncer_auth_password": _secret(plan, region, pgb.auth_password),
        # the certificate names the host itself and the name the services dial (PGHOST), which they verify
        # (PGSSLMODE=verify-full against the region's CA, compiler/ir/data_access.py)
        "pgbouncer_tls_names": ["{{ ansible_host }}", "{{ inventory_hostname }}",
                                *sorted({a.settings[PG_ENV["host"]] for a in region.data_access if a.db_role})],
        # the CA that issued it, published for the pods' PGSSLROOTCERT (the ExternalSecrets read that entry)
        **internal_ca_store(plan, region),
        **kong_tls_store(plan, region),
        "common_firewall_rules": firewall_rules(region, "pgbouncer"),
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
        "redis_secrets": {hashlib.sha1(ref.encode()).hexdigest()[:12]: _secret(plan, region, ref)
                          for ref in sorted({r.password, *(u.password_ref for u in redis_users(region.data_access) if u.password_ref)})},
        "common_firewall_rules": firewall_rules(region, "redis_cluster"),
        # Hourly: application state (the Redis snapshot of each node that is a primary at run time).
        **_backups(plan, region, "redis", BACKUP_SCHEDULES["redis"]),
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
        "elasticsearch_http_port": ELASTICSEARCH_HTTP_PORT,
        "elasticsearch_transport_port": ELASTICSEARCH_TRANSPORT_PORT,
        "common_firewall_rules": firewall_rules(region, "elasticsearch"),
        "elasticsearch_clients": elasticsearch_clients(plan, region),
    }


def _entry_field(ref: str, field: str) -> str:
    """A field of a whole secret-store entry (`vault:path` -> `vault:path#field`), as the clients' Secrets read it."""
    return f"{ref.partition('#')[0]}#{field}"


def elasticsearch_role(region: RegionPlan, client: str) -> dict:
    """The client's Elasticsearch role: its privileges on exactly its index patterns, plus a digest of that
    definition (the role compares it to decide whether to PUT)."""
    p = CLIENT_PRIVILEGES[client]
    definition = {"cluster": list(p["cluster"]),
                  "indices": [{"names": list(elasticsearch_client_indices(region.name)[client]),
                               "privileges": list(p["indices"])}]}
    return _with_digest(definition)


def _with_digest(definition: dict) -> dict:
    digest = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
    return {**definition, "metadata": {"platformc_digest": digest}}


def elasticsearch_clients(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    """One Elasticsearch role and user per client the spec gives a secret-store entry (its `username` and
    `password` fields, looked up when the task runs), then per service that uses it (compiler/ir/data_access.py:
    the user named after the service, its role on its own index prefix, its password's reference); none when
    search is a managed service."""
    if not region.hosts_in("elasticsearch"):
        return []
    clients = region.settings.datastores.elasticsearch.clients
    return [{"name": client, "role": f"platformc_{client.replace('-', '_')}",
             "definition": elasticsearch_role(region, client),
             "username": _secret(plan, region, _entry_field(ref, "username")),
             "password": _secret(plan, region, _entry_field(ref, "password"))}
            for client, ref in sorted(clients.items())] + \
        [{"name": u.service, "role": u.role, "definition": _with_digest(u.definition), "username": u.name,
          "password": _secret(plan, region, u.password_ref)} for u in elasticsearch_users(region.data_access)]


def vars_bastion(region: RegionPlan) -> dict:
    # ProxyJump through the bastion needs TCP forwarding there, and only there.
    return {"common_ssh_allow_tcp_forwarding": True, "common_firewall_rules": firewall_rules(region, "bastion")}


def internal_ca_store(plan: PlatformPlan, region: RegionPlan) -> dict:
    """The pgbouncer role's publishing variables (roles_internal_ca.py): where the region's CA certificate is published for the pods (the entry
    compiler/ir/data_access.py names and the ExternalSecrets read). Nothing to publish without a PostgreSQL client,
    nor to an `env:` reference (CI's environment: no store)."""
    ref = published_ca_ref(region)
    if not ref or ref.startswith("env:"):
        return {"pgbouncer_ca_publish": False}
    store = _with_field(_store(plan, region, ref), ref.partition("#")[2])
    return {"pgbouncer_ca_publish": True, "pgbouncer_ca_store": store}


def _with_field(store: dict, field: str) -> dict:
    """`store` with `field` after scheme and entry (the order the inventory's pgbouncer_ca_store has)."""
    out = {k: store[k] for k in ("scheme", "entry")}
    return out | {"field": field} | {k: v for k, v in store.items() if k not in out}


def _store(plan: PlatformPlan, region: RegionPlan, ref: str) -> dict:
    """Where a store reference's entry is, for the tasks that write it from the controller (roles_internal_ca.py,
    roles_kong_tls.py): scheme and entry, and the store's address."""
    scheme, _, rest = ref.partition(":")
    entry = rest.partition("#")[0]
    store = {"scheme": scheme, "entry": entry}
    if scheme == "vault":
        parts = entry.split("/")
        address = str(region.settings.security.vault_address or "").rstrip("/")
        store |= {"host": address.removeprefix("https://"),  # the model admits https:// addresses only
                  "kv2": len(parts) > 2 and parts[1] == "data"}
    elif scheme == "aws-sm":
        store["region"] = region.cloud_region if region.cloud == "aws" else ""
    elif scheme == "gcp-sm":
        gcp = plan.spec.clouds.get("gcp")
        store["project"] = gcp.account if gcp else ""
    elif scheme == "azure-kv":
        store["vault"], _, store["entry"] = entry.partition("/")
    return store


def kong_tls_store(plan: PlatformPlan, region: RegionPlan) -> dict:
    """Azure: the pgbouncer role's variables of Kong's serving certificate (roles_kong_tls.py, compiler/ir/edge.py's
    kong_proxy_tls): its names, the store entry ESO reads it from, and the gateway's certificate vault, which gets the
    CA as the trusted root. Off elsewhere, and for an `env:` reference (CI's environment: no store)."""
    tls = kong_proxy_tls(plan, region)
    if tls is None or tls.refs[0][1].startswith("env:"):
        return {}
    fields = {key: ref.partition("#")[2] for key, ref in tls.refs}
    crt, key = KONG_PROXY_TLS_KEYS
    return {"pgbouncer_kong_tls_publish": True,
            "pgbouncer_kong_tls_names": list(tls.hostnames),
            "pgbouncer_kong_tls_store": _store(plan, region, tls.refs[0][1]) | {
                "crt_field": fields[crt], "key_field": fields[key]},
            "pgbouncer_kong_tls_trust": {"vault": certificate_vault_name(region.cluster_name),
                                         "name": tls.trusted_root}}


def port_redirects(region: RegionPlan) -> list[dict]:
    """The ports every PostgreSQL member redirects to PostgreSQL's: the backend ports of the region's endpoints that
    are not PostgreSQL's own (Azure: the endpoints share one load balancer and each rule delivers to a port of its
    own, compiler/ir/postgres_ha.py); none on AWS and GCP."""
    from compiler.ir.names import POSTGRES_PORT
    from compiler.ir.postgres_ha import endpoints
    moved = [e for e in endpoints(region) if e.backend_port != POSTGRES_PORT]
    if not moved:
        return []
    return [{"comment": f"{', '.join(e.fqdn.split('.', 1)[0] for e in moved)}: the internal load balancer delivers "
                        f"them to {', '.join(str(e.backend_port) for e in moved)} (a backend port per endpoint); "
                        f"PostgreSQL serves {POSTGRES_PORT}",
             "protocol": "tcp", "ports": [e.backend_port for e in moved], "to_port": POSTGRES_PORT}]


def vars_firewall(region: RegionPlan, group: str) -> dict:
    """A group whose only variables are its firewall (the PostgreSQL primary and replicas): its rules, and the
    redirects of the ports the PostgreSQL endpoints deliver to where that is not PostgreSQL's."""
    if not region.hosts_in(group):
        return {}
    redirects = port_redirects(region)
    return {"common_firewall_rules": firewall_rules(region, group),
            **({"common_port_redirects": redirects} if redirects else {})}


def group_vars(plan: PlatformPlan, region: RegionPlan) -> dict[str, dict]:
    """File stem under group_vars/ -> variables."""
    return {
        "all": vars_all(plan, region),
        "data_tier": vars_data_tier(region),
        "postgres": vars_postgres(plan, region),
        "postgres_primary": vars_firewall(region, "postgres_primary"),
        "postgres_replicas": vars_firewall(region, "postgres_replicas"),
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
        out |= {ref for a in r.data_access for _, ref in a.secrets}
        if r.hosts_in("elasticsearch"):
            out |= set(ds.elasticsearch.clients.values())
    return out


def secret_uses(plan: PlatformPlan, region: RegionPlan) -> list[SecretUse]:
    """The references the region's group_vars look up, per file, where the region has hosts of the file's group (a
    play reads a group's variables only on its hosts): the region page lists them for the first Ansible run."""
    ds = region.settings.datastores
    files = {"postgres": ("postgres_primary", [
                 ds.postgres.admin_password, ds.postgres.replication_password, ds.pgbouncer.auth_password,
                 *(r.password_ref for r in db_roles(region.data_access)),
                 # the standby clusters it keeps (roles_patroni.standby_passwords) and the CAs it verifies with
                 *(ref for sb in getattr(region.postgres_ha, "standbys", ())
                   for ref in (plan.region(sb.of_region).settings.datastores.postgres.admin_password,
                               plan.region(sb.of_region).settings.datastores.postgres.replication_password)),
                 *(published_ca_ref(plan.region(name)) for name in ca_sources(plan, region))]),
             "pgbouncer": ("pgbouncer", [ds.pgbouncer.auth_password]),
             "redis_cluster": ("redis_cluster", [ds.redis.password, *(u.password_ref for u in redis_users(region.data_access)
                                                                       if u.password_ref)]),
             "elasticsearch": ("elasticsearch", [
                 *(_entry_field(ref, f) for _, ref in sorted(ds.elasticsearch.clients.items())
                   for f in ("username", "password")),
                 *(u.password_ref for u in elasticsearch_users(region.data_access))])}
    out = []
    for stem, (group, refs) in files.items():
        if region.hosts_in(group):
            out += [SecretUse(ref, "ansible", f"`group_vars/{stem}.yml`") for ref in dict.fromkeys(refs)]
    return out


def collections_needed(plan: PlatformPlan) -> set[str]:
    """Collections whose lookup plugins those references need (ansible.builtin's env needs none)."""
    return {COLLECTIONS[scheme(ref)] for ref in secret_refs(plan)} - {None}
