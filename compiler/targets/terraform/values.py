"""Terraform target: values every cloud's region root derives from the IR the same way (hosts and
their sizes, firewall ports, node pools, backup schedules, storage policy, WAF, budget, DR partner,
free ranges for pod networks)."""

from __future__ import annotations

import ipaddress

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.edge import KONG_PROXY_TLS_PORT, lb_hostnames  # noqa: F401 (the roots and docs use both)
from compiler.targets.terraform.common import taints

# The spec sizes PostgreSQL, Redis and Elasticsearch hosts; PgBouncer and the bastion have no
# size field, so they get a small general-purpose machine per cloud.
UNSIZED_HOSTS = {
    "pgbouncer": {"aws": "c6i.large", "gcp": "n2-standard-2", "azure": "Standard_F2s_v2"},
    "bastion": {"aws": "t3.small", "gcp": "e2-small", "azure": "Standard_B2s"},
}
POSTGRES_PORT = 5432
ELASTICSEARCH_PORTS = (9200, 9300)
NODE_EXPORTER_PORT = 9100
from compiler.ir.names import NODE_POOL_LABEL  # noqa: E402,F401


def node_pools(region: RegionPlan) -> dict:
    cloud = region.cloud
    pools = {}
    for name, pool in sorted(region.settings.kubernetes.node_pools.items()):
        pools[name] = {
            "instance_type": pool.instance_types[cloud],
            "min_nodes": pool.min_nodes,
            "max_nodes": pool.max_nodes,
            "spot": pool.spot,
            "gpus": pool.gpus,
            "disk_gib": pool.disk_gib,
            # the Kubernetes target schedules pods with nodeSelector platformc.io/node-pool=<pool>
            "labels": {NODE_POOL_LABEL: name, "platformc.io/purpose": pool.purpose},
            "taints": taints(pool.taints),
        }
    return pools


def machine(region: RegionPlan, group: str):
    ds = region.settings.datastores
    return {"postgres_primary": ds.postgres.instance, "postgres_replicas": ds.postgres.instance,
            "redis_cluster": ds.redis.instance, "elasticsearch": ds.elasticsearch.instance}.get(group)


def hosts(region: RegionPlan) -> dict:
    """Host name => group, zone, FQDN, machine type and data disk (GiB, 0 for none)."""
    out = {}
    for h in region.hosts:
        size = machine(region, h.group)
        out[h.name] = {
            "group": h.group, "zone": h.zone, "fqdn": h.fqdn,
            "instance_type": size.instance_types[region.cloud] if size else UNSIZED_HOSTS[h.group][region.cloud],
            "data_disk_gib": size.disk_gib if size else 0,
        }
    return out


def ingress_rules(region: RegionPlan) -> dict:
    """Host group => TCP ports it accepts and from where (the region's VPC, admins for the bastion)."""
    ds = region.settings.datastores
    vpc = [region.cidr]

    def rule(description, port, to_port=None, cidrs=None):
        return {"description": description, "from_port": port, "to_port": to_port or port, "cidr_blocks": cidrs or vpc}

    ssh = rule("SSH from the bastion and Ansible inside the VPC", 22)
    common = [ssh] + ([rule("node_exporter scrapes", NODE_EXPORTER_PORT)] if region.settings.monitoring.node_exporter else [])
    by_group = {
        "postgres_primary": [rule("PostgreSQL from PgBouncer and replicas", POSTGRES_PORT)],
        "postgres_replicas": [rule("PostgreSQL from PgBouncer and replicas", POSTGRES_PORT)],
        "pgbouncer": [rule("PgBouncer from the services", ds.pgbouncer.port)],
        "redis_cluster": [rule("Redis clients", ds.redis.port), rule("Redis cluster bus", ds.redis.port + 10000)],
        "elasticsearch": [rule("Elasticsearch HTTP", ELASTICSEARCH_PORTS[0]), rule("Elasticsearch transport", ELASTICSEARCH_PORTS[1])],
        "bastion": [rule("SSH from the admin networks (VPN)", 22, cidrs=list(region.settings.network.admin_cidrs) or vpc)],
    }
    groups = sorted({h.group for h in region.hosts})
    return {g: by_group[g] + ([r for r in common if g != "bastion" or r is not ssh]) for g in groups}


PRELOAD = {"pg_stat_statements": "pg_stat_statements", "pg_partman": "pg_partman_bgw", "timescaledb": "timescaledb"}


def managed(region: RegionPlan) -> dict[str, bool]:
    ds = region.settings.datastores
    return {"postgres": ds.postgres.deployment == "managed", "redis": ds.redis.deployment == "managed",
            "search": ds.elasticsearch.deployment == "managed"}


def backups(region: RegionPlan):
    b = region.settings.backups
    return [(name, getattr(b, name)) for name in ("hourly", "daily", "weekly", "monthly")]


def storage_policy(region: RegionPlan) -> dict:
    os_ = region.settings.datastores.object_storage
    return {
        "versioning": os_.versioning,
        "intelligent_tiering": os_.intelligent_tiering,
        "lifecycle_days": {"infrequent_access": os_.lifecycle.infrequent_access_after_days,
                           "archive": os_.lifecycle.archive_after_days,
                           "noncurrent_expire": os_.lifecycle.noncurrent_expire_after_days},
    }


def waf(plan: PlatformPlan) -> dict:
    waf = plan.spec.edge.waf
    return {"rate_limit_per_5min": waf.rate_limit_per_5min, "blocked_countries": list(waf.blocked_countries),
            "managed_rules": waf.managed_rules}


def budget(plan: PlatformPlan, region: RegionPlan) -> dict:
    cost = plan.spec.cost
    return {"monthly_amounts": dict(region.monthly_budget), "currency": cost.currency,
            "alert_thresholds_percent": list(cost.alert_thresholds_percent)}


def same_cloud_partner(plan: PlatformPlan, region: RegionPlan) -> RegionPlan | None:
    """The DR partner when it is on the same cloud (native replication and copies need that)."""
    partner = plan.region(region.dr_partner)
    return partner if partner.cloud == region.cloud else None


def free_ranges(region: RegionPlan) -> tuple[str, str]:
    """(pods, services) secondary ranges for GKE: the largest and the next free blocks of the region
    CIDR that no zone subnet uses (the IR carves only node subnets)."""
    net = ipaddress.ip_network(region.cidr)
    used = [ipaddress.ip_network(c) for z in region.zones for c in (z.private_cidr, z.public_cidr)]
    free = [net]
    for u in used:
        nxt = []
        for f in free:
            if u.subnet_of(f):
                nxt.extend(f.address_exclude(u))
            elif not f.subnet_of(u):
                nxt.append(f)
        free = nxt
    free.sort(key=lambda n: (n.prefixlen, int(n.network_address)))
    if len(free) < 2:
        raise ValueError(f"region {region.name}: no room in {region.cidr} for GKE pod and service ranges")
    services = free[1] if free[1].prefixlen >= 20 else next(free[1].subnets(new_prefix=20))
    return str(free[0]), str(services)
