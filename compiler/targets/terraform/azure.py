"""Terraform target, Azure region roots: IR -> arguments of the modules/azure/* calls (AKS, VM data hosts, storage accounts,
Application Gateway with a WAF policy, Azure Backup, Consumption budget, Flexible Server/Azure Cache when managed)."""

from __future__ import annotations

import math
import re

from compiler.ir.cluster_support import AKS_SUPPORT_PLAN
from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.data_access import redis_users
from compiler.ir.edge import kong_proxy_tls, origin_listener_min_tls, origin_response_timeout
from compiler.ir.wal_archive import replica_container
from compiler.targets.terraform import identity as _identity
from compiler.targets.terraform.common import classify_cron, prefix
from compiler.targets.terraform.values import (PRELOAD, backups, hosts, ingress_rules, internal_gateway, lb_hostnames,
                                                managed, node_pools, postgres_endpoints, public_entry,
                                                storage_policy, waf)


def key_vault_name(plan: PlatformPlan, region: RegionPlan) -> str:
    """Key Vault names are global and 3-24 characters."""
    return prefix(plan, region)[:24].rstrip("-")


def aks_key_vault_name(plan: PlatformPlan, region: RegionPlan) -> str:
    """The vault of AKS's etcd key (the kms module says why it is not the region's vault): 3-24 characters too."""
    return f"{prefix(plan, region)[:20].rstrip('-')}-aks"


def certificate_vault_name(plan: PlatformPlan, region: RegionPlan) -> str:
    """The vault of the Application Gateway's TLS certificate (the load_balancer module says why it is not the
    region's vault): 3-24 characters too."""
    return f"{prefix(plan, region)[:20].rstrip('-')}-tls"


def azure_pool_name(name: str) -> str:
    """AKS pool names: up to 12 lower-case letters and digits."""
    return re.sub(r"[^a-z0-9]", "", name.lower())[:12]


AZURE_TLS_12_CIPHERS = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
AZURE_DISK_BACKUP_HOURS = (1, 2, 4, 6, 8, 12)
# Application Gateway v2 autoscaling: two instances keep it zone-redundant; the ceiling bounds cost.
from compiler.ir.machines import AZURE_GATEWAY_CAPACITY  # noqa: E402 (the cost estimate prices the same units)


def rotation_names(pools: list[str]) -> dict[str, str]:
    """Each AKS pool's temporary_name_for_rotation: the pool AKS creates while it cycles the pool (a vm_size or
    os_disk_size_gb change), a pool name itself (up to 12 lower-case letters and digits) and clear of every pool's
    name and every other temporary name, since pools may cycle in the same apply."""
    taken, out = set(pools), {}
    for pool in sorted(pools):
        name = next((c for c in [f"{pool[:9]}tmp", *(f"{pool[:8]}tmp{i}" for i in range(10))] if c not in taken), None)
        if name is None:
            raise ValueError(f"AKS node pool {pool!r}: no free temporary name for rotation")
        taken.add(name)
        out[pool] = name
    return out


def _azure_pools(region: RegionPlan) -> tuple[str, dict]:
    pools, system = {}, None
    for name, pool in node_pools(region).items():
        short = azure_pool_name(name)
        if short in pools:
            raise ValueError(f"region {region.name}: node pools {name!r} and another both shorten to {short!r} on AKS")
        spec = region.settings.kubernetes.node_pools[name]
        pools[short] = {
            "instance_type": pool["instance_type"], "min_nodes": pool["min_nodes"], "max_nodes": pool["max_nodes"],
            "spot": pool["spot"], "disk_gib": pool["disk_gib"],
            "labels": pool["labels"],
            "taints": list(spec.taints),
            "upgrade_minutes": pool["upgrade_minutes"],
        }
        if system is None and not spec.spot and not spec.taints:
            system = short
    if system is None:
        raise ValueError(f"region {region.name}: AKS needs an on-demand node pool without taints for system pods")
    for short, rotation in rotation_names(list(pools)).items():
        pools[short]["rotation_name"] = rotation
    return system, pools


def _azure_backups(region: RegionPlan) -> dict:
    by_kind: dict[str, tuple] = {}
    for name, b in backups(region):
        c = classify_cron(b.cron)
        if c["kind"] in by_kind:
            raise ValueError(f"region {region.name}: Azure Backup takes one {c['kind']} schedule; {name} is a second one")
        by_kind[c["kind"]] = (b, c)
    if "daily" not in by_kind:
        raise ValueError(f"region {region.name}: Azure Backup needs a daily schedule for its VM policy")
    daily, dc = by_kind["daily"]
    policy = {"time": f"{dc['hour']:02d}:00", "daily_count": max(7, daily.retention_days), "weekly": None, "monthly": None}
    if "weekly" in by_kind:
        b, c = by_kind["weekly"]
        policy["weekly"] = {"count": math.ceil(b.retention_days / 7), "weekdays": [d.title() for d in c["days_of_week"]]}
    if "monthly" in by_kind:
        b, c = by_kind["monthly"]
        policy["monthly"] = {"count": math.ceil(b.retention_days / 30), "days": c["days_of_month"]}
    disk = None
    if "hourly" in by_kind:
        b, c = by_kind["hourly"]
        hours = next((h for h in AZURE_DISK_BACKUP_HOURS if h >= c["every_hours"]), 12)
        disk = {"interval": f"R/2024-01-01T00:{c['minute']:02d}:00+00:00/PT{hours}H", "retention": f"P{b.retention_days}D"}
    return {"vm_policy": policy, "disk_policy": disk}


def _azure_partner_accounts(plan: PlatformPlan, region: RegionPlan) -> dict | None:
    # the IR's fact, which the partner's standby cluster also reads (it restores WAL from the replicated copy)
    if not region.replicates_to_dr_partner:
        return None
    partner = plan.region(region.dr_partner)
    base = f"/subscriptions/{plan.spec.clouds['azure'].account}/resourceGroups/{prefix(plan, partner)}/providers/Microsoft.Storage/storageAccounts"
    # into the partner's container for this region's copy (in both accounts), which the partner's root creates
    # (_azure_replica_containers)
    return {"data_account_id": f"{base}/{partner.data_bucket}", "backup_account_id": f"{base}/{partner.backup_bucket}",
            "container": replica_container(region.name)}


def _azure_replica_containers(plan: PlatformPlan, region: RegionPlan) -> list[str]:
    """The containers each of this region's accounts holds for the regions that replicate into them (each only ever
    written by the replication: Azure keeps a destination container read-only)."""
    return [replica_container(r.name) for r in plan.regions if r.replicates_to_dr_partner and r.dr_partner == region.name]


ACR_SUFFIX = ".azurecr.io"


def acr_name(registry: str) -> str:
    """The Azure Container Registry a registry host names (`<name>.azurecr.io[/path]`), "" for another registry."""
    host = registry.split("/", 1)[0]
    return host[: -len(ACR_SUFFIX)] if host.endswith(ACR_SUFFIX) else ""


def args(plan: PlatformPlan, region: RegionPlan) -> dict:
    s = region.settings
    net, k8s, sec = s.network, s.kubernetes, s.security
    a = region.addressing
    entry = public_entry(region)
    system, pools = _azure_pools(region)
    zones = [z.name for z in region.zones]
    gateway = internal_gateway(plan, region)
    listener_tls = origin_listener_min_tls(region)
    return {
        "kms": {"key_vault_name": key_vault_name(plan, region), "aks_key_vault_name": aks_key_vault_name(plan, region),
                "rotation_days": sec.kms_key_rotation_days},
        "network": {
            "cidr": region.cidr,
            "zones": {z.name: {"private_cidr": z.private_cidr, "public_cidr": z.public_cidr} for z in region.zones},
            "nat_per_zone": net.nat_per_zone,
            "flow_logs": net.flow_logs,
            "flow_log_retention_days": min(net.flow_log_retention_days, 365),
            "log_retention_days": min(max(sec.audit_log_retention_days, 30), 730),
            "log_account_name": region.data_bucket[:-2] + "lg",
            # load-balancer->kong: the Application Gateway's subnet on Kong's port, on the cluster subnets
            "lb_source_cidrs": entry["lb_source_cidrs"],
            "lb_target_port": entry["target_port"],
            # the internal gateway's NSG opening (home-region routing, compiler/ir/network.py)
            "internal_gateway": gateway,
        },
        "kubernetes": {
            "zones": zones,
            "kubernetes_version": k8s.version,
            "support_plan": AKS_SUPPORT_PLAN[k8s.version_support],  # compiler/ir/cluster_support.py
            "private_endpoint": k8s.private_api_endpoint,
            "api_allowed_cidrs": list(k8s.api_allowed_cidrs),
            "pod_cidr": a.pod_cidr,
            "service_cidr": a.service_cidr,
            # every node takes a /24 of pod_cidr; max pods sized with it (compiler/wiring.py)
            "max_pods_per_node": a.max_pods_per_node,
            "system_pool": system,
            "node_pools": pools,
            "registry_name": acr_name(plan.spec.clouds["azure"].registry),
        },
        "object_storage": {
            "data_account": region.data_bucket,
            "backup_account": region.backup_bucket,
            "versioning": s.datastores.object_storage.versioning,
            "lifecycle_days": storage_policy(region)["lifecycle_days"],
            "replication": _azure_partner_accounts(plan, region),
            "replica_containers": _azure_replica_containers(plan, region),
        },
        "data_hosts": {"hosts": hosts(plan, region), "ingress_rules": ingress_rules(region), "internal_domain": region.internal_domain,
                       "postgres_endpoints": postgres_endpoints(region),
                       # the internal gateway's private DNS record, beside its zone (home-region routing)
                       "internal_gateway": gateway},
        # behind the CDN, whose edges connect on the viewers' behalf (the global root)
        "waf": {**waf(plan, region), "behind_cdn": True},
        "load_balancer": {
            "certificate_vault_name": certificate_vault_name(plan, region),
            "trusted_root_certificate_name": kong_proxy_tls(plan, region).trusted_root,
            "response_timeout_seconds": origin_response_timeout(region.settings),
            "zones": zones,
            "public_zone": plan.spec.organization.domain,
            "hostnames": lb_hostnames(plan, region),
            # the lowest TLS of what arrives (Route 53's health checks: 1.2), not the spec's floor
            "min_tls_version": "TLSv" + listener_tls.replace(".", "_"),
            "cipher_suites": AZURE_TLS_12_CIPHERS if listener_tls == "1.2" else [],
            "target_port": entry["target_port"],
            "health_check_path": plan.spec.edge.dns.health_check_path,
            "min_capacity": AZURE_GATEWAY_CAPACITY[0],
            "max_capacity": AZURE_GATEWAY_CAPACITY[1],
        },
        "backup": _azure_backups(region),
        "workload_identity": _identity.args(plan, region),
        "budget": {"monthly_amounts": dict(region.monthly_budget),
                   "alert_thresholds_percent": list(plan.spec.cost.alert_thresholds_percent)},
        **_azure_managed(region),
    }


AZURE_PG_STORAGE_MB = (32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4193280, 8388608, 16777216, 33553408)
AZURE_PG_TIER = {"E": "MO", "D": "GP", "B": "B"}
AZURE_REDIS_PREMIUM_GB = ((6, 1), (13, 2), (26, 3), (53, 4), (120, 5))


def azure_pg_sku(vm_size: str) -> str:
    """Flexible server SKU for a VM size: tier prefix and the local-disk (d) variant of the size."""
    m = re.match(r"^Standard_([A-Z]+)(\d+)([a-z]*)_(v\d+)$", vm_size)
    if not m:
        raise ValueError(f"{vm_size!r} is not an Azure VM size the flexible server offers")
    family, cpus, letters, version = m.groups()
    if "d" not in letters:
        letters = letters.replace("s", "ds") if "s" in letters else letters + "ds"
    return f"{AZURE_PG_TIER.get(family[0], 'GP')}_Standard_{family}{cpus}{letters}_{version}"


def _azure_managed(region: RegionPlan) -> dict:
    ds = region.settings.datastores
    out = {}
    if managed(region)["postgres"]:
        pg = ds.postgres
        preload = sorted({PRELOAD[e] for e in pg.extensions if e in PRELOAD})
        out["managed_postgres"] = {
            "engine_version": str(pg.version), "sku_name": azure_pg_sku(pg.instance.instance_types["azure"]),
            "storage_mb": next((mb for mb in AZURE_PG_STORAGE_MB if mb >= pg.instance.disk_gib * 1024), AZURE_PG_STORAGE_MB[-1]),
            "high_availability": pg.multi_az, "read_replicas": pg.read_replicas,
            "configuration": {"azure.extensions": ",".join(e.upper() for e in pg.extensions),
                              **({"shared_preload_libraries": ",".join(preload)} if preload else {}),
                              "max_connections": str(pg.max_connections), "log_checkpoints": "on",
                              "log_connections": "on", "log_disconnections": "on",
                              "connection_throttle.enable": "on"},
            "backup_retention_days": min(max(region.settings.backups.daily.retention_days, 7), 35),
        }
    if managed(region)["redis"]:
        rd = ds.redis
        out["managed_redis"] = {
            "zones": [z.name for z in region.zones],
            "capacity": next((c for gb, c in AZURE_REDIS_PREMIUM_GB if rd.instance.memory_gib <= gb), 5),
            "primaries": rd.primaries, "replicas_per_primary": rd.replicas_per_primary,
            "maxmemory_policy": rd.maxmemory_policy,
            # one data access policy per service (Redis ACL), assigned to its identity, from the IR
            "users": {u.name: {"identity": u.identity, "permissions": u.access_string}
                      for u in redis_users(region.data_access)},
        }
    return out
