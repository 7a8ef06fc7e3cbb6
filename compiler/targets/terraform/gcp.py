"""Terraform target, GCP region roots: IR -> arguments of the modules/gcp/* calls (GKE, Compute Engine data hosts, Cloud
Storage, global external ALB with Cloud Armor, Backup and DR, Billing budget, Cloud SQL/Memorystore when managed)."""

from __future__ import annotations

import math

from compiler.ir.cluster_support import GKE_RELEASE_CHANNEL
from compiler.ir import PlatformPlan, RegionPlan
from compiler.targets.terraform import identity as _identity
from compiler.ir.data_access import redis_users
from compiler.ir.edge import lb_target_name, origin_listener_min_tls, origin_response_timeout, validated_by_global
from compiler.ir.identity import gcp_account_id, parse_ref
from compiler.ir.names import CLIENT_ADDRESS_HEADER, fit
from compiler.formats.hcl import Raw
from compiler.targets.terraform.common import classify_cron, prefix
from compiler.targets.terraform.global_root import global_dns_authorizations
from compiler.targets.terraform.values import (backups, budget, hosts, ingress_rules, lb_hostnames, managed,
                                                internal_gateway, node_pools, postgres_endpoints, public_entry,
                                                same_cloud_partner,
                                                storage_policy, waf)


# GPU model per GCP machine family (G2 and A2/A3 machines come with their GPUs attached).
GCP_GPU = {"g2": "nvidia-l4", "a2": "nvidia-tesla-a100", "a3": "nvidia-h100-80gb", "n1": "nvidia-tesla-t4"}


def _gcp_backups(plan: PlatformPlan, region: RegionPlan) -> dict:
    partner = same_cloud_partner(plan, region)
    rules, snapshot = {}, None
    for name, b in backups(region):
        c = classify_cron(b.cron)
        if c["kind"] == "hourly":
            if snapshot is not None:
                raise ValueError(f"region {region.name}: GCP disks take one snapshot schedule; only one backup schedule may be hourly")
            snapshot = {"every_hours": c["every_hours"], "start_time": "00:00", "retention_days": b.retention_days,
                        "storage_location": partner.cloud_region if b.copy_to_dr_partner and partner else region.cloud_region}
            continue
        rules[name] = {"recurrence": c["kind"].upper(), "days_of_week": c["days_of_week"],
                       "days_of_month": c["days_of_month"], "hour": c["hour"], "retention_days": b.retention_days}
    # the data hosts module's disks, not their names written here: the attachment then waits for the disks to exist
    # (with literal names it depended on the schedule alone and was created first, failing on a missing disk)
    return {"region": region.cloud_region, "schedules": rules, "snapshot_schedule": snapshot,
            "data_disks": Raw("module.data_hosts.data_disks")}


# The Google APIs a GCP region root calls, by what it provisions (the modules' resource types: compute, GKE, DNS,
# Certificate Manager, Cloud KMS, Secret Manager, Cloud Storage and Storage Transfer, Backup and DR, Billing budgets,
# Monitoring channels, IAM), plus the managed datastores' when the spec asks for them.
# binaryauthorization: the cluster enforces the project's Binary Authorization policy, an API GKE's setup guide
# enables first ("Set up Binary Authorization for GKE")
REQUIRED_APIS = ("compute", "container", "dns", "certificatemanager", "cloudkms", "secretmanager", "storage",
                 "storagetransfer", "backupdr", "billingbudgets", "monitoring", "iam", "cloudresourcemanager",
                 "binaryauthorization")
MANAGED_APIS = {"postgres": ("sqladmin", "servicenetworking"), "redis": ("redis", "networkconnectivity"),
                "search": ()}


def required_apis(region: RegionPlan) -> list[str]:
    """The APIs (service names without .googleapis.com) the region's root needs enabled in the project."""
    extra = [a for kind, on in managed(region).items() if on for a in MANAGED_APIS[kind]]
    return sorted(set(REQUIRED_APIS) | set(extra))


def dns_authorizations(plan: PlatformPlan, region: RegionPlan) -> dict:
    """Each name of the region's certificate -> its Certificate Manager DNS authorization: {name, create}. A name
    several roots' certificates cover is authorised once: its validation record, _acme-challenge.<name>, is one CNAME
    in the public zone, so a second root creating its own failed (the record exists), or, overwriting it, broke the
    first one's renewals. Behind Cloud CDN the global root authorises the shared names (it owns the zone and outlives
    every region; its own certificate covers the public hosts: compiler/ir/edge.py validated_by_global); behind
    CloudFront, whose root has no Google provider, the first GCP region that covers a name (the spec's order) does,
    and the others' certificates use that authorisation."""
    held = validated_by_global(plan, region)
    by_label = global_dns_authorizations(plan) if held else {}
    domain = plan.spec.organization.domain
    out = {}
    for host in lb_hostnames(plan, region):
        if host in held:
            out[host] = {"name": by_label[host.removesuffix(f".{domain}")], "create": False}
            continue
        owner = dns_authorization_owner(plan, host)
        out[host] = {"name": dns_authorization_name(owner.cluster_name, host), "create": owner.name == region.name}
    return out


def dns_authorization_name(cluster: str, host: str) -> str:
    """A Certificate Manager DNS authorization's name: up to 64 characters, [a-zA-Z][a-zA-Z0-9_-]* (the API's rule;
    the provider does not check it): `<cluster>-<host with hyphens>`, hashed past 63."""
    return fit(f"{cluster}-{host.replace('.', '-')}", 63)


def dns_authorization_owner(plan: PlatformPlan, host: str) -> RegionPlan:
    """The GCP region whose root authorises `host`: the first, in the spec's order, whose certificate covers it (for a
    name the global root does not authorise: dns_authorizations)."""
    return next(r for r in plan.regions if r.cloud == "gcp" and host in lb_hostnames(plan, r))


def args(plan: PlatformPlan, region: RegionPlan) -> dict:
    s = region.settings
    net, k8s, sec = s.network, s.kubernetes, s.security
    a = region.addressing
    entry = public_entry(region)
    pools = node_pools(region)
    for pool in pools.values():
        pool["gpu_type"] = GCP_GPU.get(pool["instance_type"].split("-")[0], "") if pool["gpus"] else ""
    host_map = hosts(plan, region)
    for h in host_map.values():
        h["target_tag"] = h["group"].replace("_", "-")
    cap = plan.spec.capacity
    per_pod = cap.requests_per_second * region.traffic_share / 100 * cap.peak_multiplier / s.gateway.replicas
    return {
        "kms": {"location": region.cloud_region, "rotation_days": sec.kms_key_rotation_days},
        "network": {
            "region": region.cloud_region,
            "zones": {z.name: {"private_cidr": z.private_cidr, "public_cidr": z.public_cidr} for z in region.zones},
            # GKE pods keep these addresses up to the VMs: the host rules below admit this range
            "pods_cidr": a.pod_cidr,
            "services_cidr": a.service_cidr,
            "flow_logs": net.flow_logs,
            "lb_target_port": entry["target_port"],
            "lb_source_ranges": entry["lb_source_cidrs"],
            "ingress_rules": _gcp_firewall(region),
            # the internal gateway's proxy-only subnet, and its proxies' path to Kong (compiler/ir/network.py)
            "proxy_cidr": a.proxy_cidr if internal_gateway(plan, region) else "",
        },
        "kubernetes": {
            # service account ids are 6-30 characters (the provider's ValidateRFC1035Name(6, 30)): hashed past that
            "node_service_account_id": gcp_account_id(prefix(plan, region), "nodes"),
            "region": region.cloud_region,
            "zones": [z.name for z in region.zones],
            "kubernetes_version": k8s.version,
            "release_channel": GKE_RELEASE_CHANNEL[k8s.version_support],  # compiler/ir/cluster_support.py
            "private_endpoint": k8s.private_api_endpoint,
            "api_allowed_cidrs": [region.cidr, *k8s.api_allowed_cidrs],
            "rbac_security_group": k8s.gke_security_group,  # None: no authenticator_groups_config
            # sized so that every pool's max nodes get a pod block from pods_cidr (compiler/wiring.py)
            "max_pods_per_node": a.max_pods_per_node,
            "node_pools": pools,
        },
        "object_storage": {
            "region": region.cloud_region,
            "data_bucket": region.data_bucket,
            "backup_bucket": region.backup_bucket,
            "versioning": s.datastores.object_storage.versioning,
            "lifecycle_days": storage_policy(region)["lifecycle_days"],
            "replication": _bucket_names_of_partner(plan, region),
            "log_retention_days": sec.audit_log_retention_days,
        },
        "data_hosts": {"hosts": host_map, "internal_domain": region.internal_domain,
                       "service_account_id": gcp_account_id(prefix(plan, region), "data"),
                       "postgres_endpoints": postgres_endpoints(region)},
        # behind the CDN: the client is the address the CDN writes into this header (compiler/ir/names.py)
        "waf": {**waf(plan, region), "ddos_protection": plan.spec.edge.ddos_protection,
                "client_address_header": CLIENT_ADDRESS_HEADER},
        "load_balancer": {
            "response_timeout_seconds": origin_response_timeout(region.settings),
            "zones": [z.name for z in region.zones],
            "public_zone": plan.spec.organization.domain,
            "hostnames": lb_hostnames(plan, region),
            "dns_authorizations": dns_authorizations(plan, region),
            # the lowest TLS of what arrives (Route 53's health checks: 1.2), not the spec's floor
            "min_tls_version": "TLS_" + origin_listener_min_tls(region).replace(".", "_"),
            # the NEGs GKE creates from the Kong proxy Service's annotation (helm target)
            "neg_name": lb_target_name(region),
            "health_check_path": plan.spec.edge.dns.health_check_path,
            "max_rate_per_endpoint": math.ceil(per_pod),
            "internal_gateway": internal_gateway(plan, region),
        },
        "backup": _gcp_backups(plan, region),
        "workload_identity": _identity.args(plan, region),
        "budget": {**budget(plan, region), "tag_key": "region", "tag_value": region.name},
        **_gcp_managed(region),
    }


CLOUD_SQL_MAX_MIB_PER_VCPU = 6656  # Cloud SQL custom machines: at most 6.5 GiB per vCPU
MEMORYSTORE_NODES = ((1.4, "REDIS_SHARED_CORE_NANO"), (6.5, "REDIS_STANDARD_SMALL"), (13, "REDIS_HIGHMEM_MEDIUM"),
                     (58, "REDIS_HIGHMEM_XLARGE"))


AOF_FSYNC = {"everysec": "EVERYSEC", "always": "ALWAYS", "no": "NO"}


def _gcp_managed(region: RegionPlan) -> dict:
    ds = region.settings.datastores
    daily = region.settings.backups.daily
    hour = classify_cron(daily.cron)["hour"]
    out = {}
    if managed(region)["postgres"]:
        pg = ds.postgres
        mib = min(pg.instance.memory_gib * 1024, pg.instance.vcpus * CLOUD_SQL_MAX_MIB_PER_VCPU) // 256 * 256
        out["managed_postgres"] = {
            "region": region.cloud_region, "database_version": f"POSTGRES_{pg.version}",
            "tier": f"db-custom-{pg.instance.vcpus}-{mib}", "disk_gib": pg.instance.disk_gib,
            "high_availability": pg.multi_az, "read_replicas": pg.read_replicas,
            "max_connections": pg.max_connections,
            # Cloud SQL and Memorystore keep at most 365 backups / days (their APIs refuse more)
            "backup_start_time": f"{hour:02d}:00", "retained_backups": min(daily.retention_days, 365),
            "internal_domain": region.internal_domain,
        }
    if managed(region)["redis"]:
        rd = ds.redis
        node = next((n for gib, n in MEMORYSTORE_NODES if rd.instance.memory_gib <= gib), MEMORYSTORE_NODES[-1][1])
        out["managed_redis"] = {
            "region": region.cloud_region, "node_type": node, "primaries": rd.primaries,
            "replicas_per_primary": rd.replicas_per_primary, "maxmemory_policy": rd.maxmemory_policy,
            "append_fsync": AOF_FSYNC[rd.appendfsync] if rd.appendonly else None,
            "backup_hour": hour, "backup_retention_days": min(daily.retention_days, 365),
            "internal_domain": region.internal_domain,
            # the owners whose service accounts may connect (IAM authentication), from the IR; the server CA's entry
            "connection_users": sorted(u.identity for u in redis_users(region.data_access)),
            "server_ca_secret": next((parse_ref(a.redis_ca_ref).key for a in region.data_access if a.redis_ca_ref), None),
        }
    return out


def _gcp_firewall(region: RegionPlan) -> list[dict]:
    """One firewall rule per host group and source set (GCP rules have one source list each)."""
    out = []
    for group, rules in ingress_rules(region).items():
        by_source: dict[tuple, list[str]] = {}
        for r in rules:
            ports = str(r["from_port"]) if r["from_port"] == r["to_port"] else f"{r['from_port']}-{r['to_port']}"
            by_source.setdefault(tuple(r["cidr_blocks"]), []).append(ports)
        for i, (sources, ports) in enumerate(sorted(by_source.items())):
            tag = group.replace("_", "-")
            out.append({"name": f"{tag}-{i + 1}", "target_tag": tag, "ports": ports, "source_ranges": list(sources)})
    return out


def _bucket_names_of_partner(plan: PlatformPlan, region: RegionPlan) -> dict | None:
    # the IR's fact, which the partner's standby cluster also reads (it restores WAL from the replicated copy)
    if not region.replicates_to_dr_partner:
        return None
    partner = plan.region(region.dr_partner)
    return {"data_bucket": partner.data_bucket, "backup_bucket": partner.backup_bucket}
