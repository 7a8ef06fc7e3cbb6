"""Terraform target: values every cloud's region root derives from the IR the same way (hosts and
their sizes, firewall ports, node pools, backup schedules, storage policy, WAF, budget, DR partner,
free ranges for pod networks)."""

from __future__ import annotations

import re

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.backups import backup_noncurrent_expire_days
from compiler.ir.edge import KONG_PROXY_TLS_PORT, lb_hostnames, origin_verify  # noqa: F401 (the roots and docs use the first two)
from compiler.targets.terraform.common import taints

# The spec sizes PostgreSQL, Redis and Elasticsearch hosts; PgBouncer and the bastion have no size field: their
# machines are compiler/ir/machines.py's, the one place the cost estimate reads too.
from compiler.ir.machines import AWS_GPU_LABEL, aws_gpu_accelerator  # noqa: E402
from compiler.ir.machines import UNSIZED_HOSTS, data_disk_gib, host_instance_type, host_size  # noqa: E402,F401
from compiler.ir.names import NODE_POOL_LABEL  # noqa: E402,F401


# A node pool's rolling replacement (a Kubernetes version bump, a machine-type change on GKE, an AKS pool's upgrade)
# goes in batches set by the modules' upgrade settings: EKS update_config max_unavailable_percentage and AKS
# upgrade_settings max_surge are UPGRADE_PERCENT of the pool (at least one node), GKE upgrade_settings is
# max_surge 1 / max_unavailable 0, one node at a time. Each batch: a new node boots and turns Ready, the old one is
# drained and removed, stated as UPGRADE_BATCH_MINUTES (PodDisruptionBudgets that hold a drain make it longer).
# The provider's own update timeouts (30 minutes for a GKE node pool, 60 for an EKS node group or AKS pool) fail
# the apply in the middle of a large pool's upgrade while the cloud carries on with it.
UPGRADE_PERCENT = 10
UPGRADE_BATCH_MINUTES = 15
UPGRADE_MIN_MINUTES = 60


def upgrade_batch_size(cloud: str, max_nodes: int) -> int:
    """Nodes a pool's upgrade replaces at once at the pool's maximum size (the modules' upgrade settings)."""
    if cloud == "gcp":
        return 1
    return max(1, max_nodes * UPGRADE_PERCENT // 100)


def upgrade_minutes(cloud: str, max_nodes: int) -> int:
    """How long Terraform waits for a pool's rolling upgrade: its batches at the maximum size, each
    UPGRADE_BATCH_MINUTES, never less than UPGRADE_MIN_MINUTES."""
    batches = -(-max_nodes // upgrade_batch_size(cloud, max_nodes))
    return max(UPGRADE_MIN_MINUTES, batches * UPGRADE_BATCH_MINUTES)


def node_pools(region: RegionPlan) -> dict:
    cloud = region.cloud
    pools = {}
    for name, pool in sorted(region.settings.kubernetes.node_pools.items()):
        labels = {NODE_POOL_LABEL: name, "platformc.io/purpose": pool.purpose}
        if cloud == "aws" and pool.gpus > 0:
            labels[AWS_GPU_LABEL] = aws_gpu_accelerator(pool.instance_types[cloud])
        pools[name] = {
            "instance_type": pool.instance_types[cloud],
            "min_nodes": pool.min_nodes,
            "max_nodes": pool.max_nodes,
            "spot": pool.spot,
            "gpus": pool.gpus,
            "disk_gib": pool.disk_gib,
            # the Kubernetes target schedules pods with nodeSelector platformc.io/node-pool=<pool>
            "labels": labels,
            "taints": taints(pool.taints),
            # the update timeout of the pool's resource, in minutes
            "upgrade_minutes": upgrade_minutes(cloud, pool.max_nodes),
        }
    return pools


def hosts(plan, region: RegionPlan) -> dict:
    """Host name => group, zone, FQDN, machine type and data disk (GiB, 0 for none: compiler/ir/machines.py)."""
    out = {}
    for h in region.hosts:
        out[h.name] = {
            "group": h.group, "zone": h.zone, "fqdn": h.fqdn,
            "instance_type": host_instance_type(region, h.group),
            "data_disk_gib": data_disk_gib(plan, region, h),
        }
    return out


# Characters AWS accepts in a security group rule description (Azure and GCP take any).
_DESCRIPTION = re.compile(r"[^a-zA-Z0-9. _\-:/()#,@\[\]+=&;{}!$*]")


# The longest firewall rule description each cloud accepts: EC2 security group rules 255, azurerm's
# network_security_rule 140 (StringLenBetween(0, 140)), GCP firewall descriptions 2048.
RULE_DESCRIPTION_MAX = {"aws": 255, "azure": 140, "gcp": 2048}


def ingress_rules(region: RegionPlan) -> dict:
    """Host group => TCP ports it accepts and from where: exactly the region's `cloud-firewall` connections
    whose destination is a host group (compiler/wiring.py), each as dest_port from the source's addresses
    (pods as they reach a VM: the node subnets on AWS and Azure, the pod range on GCP), or as the backend port of
    the PostgreSQL endpoint it dials (compiler/ir/postgres_ha.py backend_ports). Rules with the same port and
    sources merge; the description names the connections a rule admits."""
    from compiler.ir.postgres_ha import backend_ports
    group_of = {h.fqdn: h.group for h in region.hosts}
    arrives = backend_ports(region)
    merged: dict[str, dict[tuple, list[str]]] = {}
    for c in region.through("cloud-firewall"):
        if c.dest.kind != "hosts":
            continue
        if c.protocol != "TCP":
            raise ValueError(f"region {region.name}: {c.id} is {c.protocol}; the host firewalls take TCP rules only")
        # through a PostgreSQL endpoint, the port its load balancer delivers to (on Azure not always the one
        # PostgreSQL serves: the members redirect it, behind the NSG)
        port = arrives.get(c.address, c.dest_port)
        for group in sorted({group_of[h] for h in c.dest.hosts}):
            key = (port, tuple(sorted(c.source.cidrs)))
            names = merged.setdefault(group, {}).setdefault(key, [])
            if c.source.name not in names:
                names.append(c.source.name)
    out = {}
    limit = RULE_DESCRIPTION_MAX[region.cloud]
    for group in sorted(merged):
        rules = []
        for (port, cidrs), names in sorted(merged[group].items()):
            text = _DESCRIPTION.sub("", f"{port} from {', '.join(names)}")
            rules.append({"description": text if len(text) <= limit else text[:limit - 3] + "...",
                          "from_port": port, "to_port": port, "cidr_blocks": list(cidrs)})
        out[group] = rules
    return out


def public_entry(region: RegionPlan) -> dict:
    """The public path's two hops that the cloud firewalls carry (compiler/wiring.py): the CDN's port on
    the load balancer, and the load balancer's port and source ranges on Kong's pods."""
    cdn = next(c for c in region.through("cloud-firewall") if c.source.kind == "edge" and c.dest.kind == "lb")
    lb = next(c for c in region.through("cloud-firewall") if c.source.kind == "lb")
    return {"listener_port": cdn.dest_port, "target_port": lb.dest_port, "lb_source_cidrs": list(lb.source.cidrs)}


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
                           "noncurrent_expire": os_.lifecycle.noncurrent_expire_after_days,
                           # the backup bucket's own: pruned backups and WAL are gone within days (ir/backups.py)
                           "backup_noncurrent_expire": backup_noncurrent_expire_days(region.settings)},
    }


def waf(plan: PlatformPlan, region: RegionPlan) -> dict:
    """A regional WAF's arguments; the origin check's values are wired in the root (a data source)."""
    waf = plan.spec.edge.waf
    check = origin_verify(plan, region)
    return {"rate_limit_per_5min": waf.rate_limit_per_5min, "blocked_countries": list(waf.blocked_countries),
            "managed_rules": waf.managed_rules,
            "origin_verify_header": check.header.lower() if check else "",
            "origin_verify_exempt_path": check.exempt_path if check else ""}


def budget(plan: PlatformPlan, region: RegionPlan) -> dict:
    cost = plan.spec.cost
    return {"monthly_amounts": dict(region.monthly_budget), "currency": cost.currency,
            "alert_thresholds_percent": list(cost.alert_thresholds_percent)}


def same_cloud_partner(plan: PlatformPlan, region: RegionPlan) -> RegionPlan | None:
    """The DR partner when it is on the same cloud (native replication and copies need that)."""
    partner = plan.region(region.dr_partner)
    return partner if partner.cloud == region.cloud else None


# ---------------------------------------------------------------- the inter-region network (compiler/ir/network.py)

def peer_ingress(region: RegionPlan) -> list[dict]:
    """The private subnets' network ACL entries (AWS) beyond its fixed ones: compiler/ir/network.py
    private_acl_ingress."""
    from compiler.ir.network import private_acl_ingress
    return [{"cidr_block": cidr, "port": port} for cidr, port in private_acl_ingress(region)]


def egress_rules(region: RegionPlan) -> dict:
    """Host group => TCP ports it dials across the peering and where (`cloud-firewall-egress` connections)."""
    group_of = {h.fqdn: h.group for h in region.hosts}
    out: dict[str, list] = {}
    for c in region.through("cloud-firewall-egress"):
        for group in sorted({group_of[h] for h in c.source.hosts}):
            text = _DESCRIPTION.sub("", f"{c.dest_port} to {c.dest.name}")
            rule = {"description": text[:255], "from_port": c.dest_port, "to_port": c.dest_port,
                    "cidr_blocks": list(c.dest.cidrs)}
            if rule not in out.setdefault(group, []):
                out[group].append(rule)
    return out


def internal_gateway(plan: PlatformPlan, region: RegionPlan) -> dict | None:
    """The internal gateway's name, port and the linked regions' Kong ranges (`internal-gateway` connections into it)."""
    into = [c for c in region.through("internal-gateway") if c.dest.kind == "internal-lb"]
    if not into:
        return None
    cidrs = sorted({x for c in into for x in c.source.cidrs})
    if region.cloud == "azure":  # the address Kong's internal load balancer Service pins (compiler/ir/network.py)
        return {"name": into[0].address, "port": into[0].dest_port, "address": region.addressing.internal_gateway_ip,
                "source_cidrs": cidrs}
    return {"name": into[0].address, "port": into[0].dest_port, "source_cidrs": cidrs}


def peerings(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    """One module call per linked region: its name, the provider alias of its region, and the module's arguments."""
    from compiler.ir.network import linked_regions, provider_alias, requester, spec_positions
    out = []
    positions = spec_positions(plan.spec)  # once, not per linked region
    for name in linked_regions(plan.spec, region.name):
        peer = plan.region(name)
        if region.cloud == "aws":
            args = {"peer_name": peer.cluster_name, "peer_region": peer.cloud_region, "peer_cidr": peer.cidr,
                    "requester": requester(plan.spec, region.name, name, positions) == region.name}
        elif region.cloud == "gcp":
            args = {"project": plan.spec.clouds["gcp"].account, "peer_name": peer.cluster_name, "peer_cidr": peer.cidr,
                    "peer_internal_domain": peer.internal_domain}
        else:
            args = {"subscription_id": plan.spec.clouds["azure"].account, "peer_name": peer.cluster_name,
                    "peer_cidr": peer.cidr}
        alias = provider_alias(name)
        out.append({"region": name, "module": "peering_" + alias[2:], "alias": alias,
                    "cloud_region": peer.cloud_region, "args": args})
    return out


# ---------------------------------------------------------------- the PostgreSQL endpoints (compiler/ir/postgres_ha.py)

def postgres_endpoints(region: RegionPlan) -> dict:
    """The internal load balancing in front of Patroni's leader, replicas and synchronous replica
    (compiler/ir/postgres_ha.py endpoints): name in the private zone, port, Patroni's REST health check (port and path)
    and the member hosts; on Azure also the members' port the endpoint's rule delivers to (backend_port: the
    endpoints are frontends of one load balancer there, each delivering to a port of its own). Empty without a
    Patroni cluster."""
    from compiler.ir.names import POSTGRES_PORT
    from compiler.ir.postgres_ha import endpoints
    ha = getattr(region, "postgres_ha", None)
    if ha is None:
        return {}
    members = sorted(ha.members)
    out = {}
    for e in endpoints(region):
        out[e.key] = {"fqdn": e.fqdn, "port": POSTGRES_PORT, "health_port": ha.rest_port, "health_path": e.health_path,
                      # only Azure's module takes it: AWS's and GCP's deliver to the port dialled
                      **({"backend_port": e.backend_port} if region.cloud == "azure" else {}),
                      "hosts": members}
    return out
