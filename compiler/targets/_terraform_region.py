"""Terraform target: one region's root module (IR -> template context).

Each module call in regions/<cloud>/main.tf.j2 writes its wiring (module outputs, local.tags)
in the template and takes the region's resolved values from `args[<module>]`, rendered with
`hcl_attrs`. The keys here are exactly the module's variables minus the wired ones; the tests
parse both sides to prove it.
"""

from __future__ import annotations

import ipaddress
import math
import re

from compiler.ir import PlatformPlan, RegionPlan
from compiler.targets._terraform_common import (aws_cron, classify_cron, root_clouds, cloudwatch_retention, prefix, provider_requirements,
                                                state_backend, taints)

# The spec sizes PostgreSQL, Redis and Elasticsearch hosts; PgBouncer and the bastion have no
# size field, so they get a small general-purpose machine per cloud.
UNSIZED_HOSTS = {
    "pgbouncer": {"aws": "c6i.large", "gcp": "n2-standard-2", "azure": "Standard_F2s_v2"},
    "bastion": {"aws": "t3.small", "gcp": "e2-small", "azure": "Standard_B2s"},
}
POSTGRES_PORT = 5432
ELASTICSEARCH_PORTS = (9200, 9300)
NODE_EXPORTER_PORT = 9100
KONG_PROXY_TLS_PORT = 8443  # Kong's HTTPS proxy port; the load balancer forwards to it


def _node_pools(region: RegionPlan) -> dict:
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
            "labels": {"purpose": pool.purpose},
            "taints": taints(pool.taints),
        }
    return pools


def _machine(region: RegionPlan, group: str):
    ds = region.settings.datastores
    return {"postgres_primary": ds.postgres.instance, "postgres_replicas": ds.postgres.instance,
            "redis_cluster": ds.redis.instance, "elasticsearch": ds.elasticsearch.instance}.get(group)


def hosts(region: RegionPlan) -> dict:
    """Host name => group, zone, FQDN, machine type and data disk (GiB, 0 for none)."""
    out = {}
    for h in region.hosts:
        size = _machine(region, h.group)
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


def _aws_args(plan: PlatformPlan, region: RegionPlan) -> dict:
    s = region.settings
    net, k8s, sec = s.network, s.kubernetes, s.security
    return {
        "kms": {"rotation_days": sec.kms_key_rotation_days},
        "network": {
            "cloud_region": region.cloud_region,
            "cidr": region.cidr,
            "zones": {z.name: {"private_cidr": z.private_cidr, "public_cidr": z.public_cidr} for z in region.zones},
            "nat_per_zone": net.nat_per_zone,
            "flow_logs": net.flow_logs,
            "flow_log_retention_days": cloudwatch_retention(net.flow_log_retention_days),
        },
        "kubernetes": {
            "kubernetes_version": k8s.version,
            "public_endpoint": not k8s.private_api_endpoint,
            "api_allowed_cidrs": list(k8s.api_allowed_cidrs),
            "log_retention_days": cloudwatch_retention(sec.audit_log_retention_days),
            "node_pools": _node_pools(region),
        },
        "object_storage": {
            "data_bucket": region.data_bucket,
            "backup_bucket": region.backup_bucket,
            **_storage_policy(region),
            "replication": _aws_replication(plan, region),
            "log_retention_days": sec.audit_log_retention_days,
        },
        "data_hosts": {
            "vpc_cidr": region.cidr,
            "hosts": hosts(region),
            "ingress_rules": ingress_rules(region),
            "internal_domain": region.internal_domain,
        },
        "waf": {
            "scope": "REGIONAL",
            **_waf(plan),
            "log_retention_days": cloudwatch_retention(sec.audit_log_retention_days),
        },
        "load_balancer": {
            "vpc_cidr": region.cidr,
            "public_zone": plan.spec.organization.domain,
            "hostnames": public_hostnames(plan, region),
            "ssl_policy": AWS_SSL_POLICY[sec.tls_min_version],
            "target_port": KONG_PROXY_TLS_PORT,
            "health_check_path": plan.spec.edge.dns.health_check_path,
        },
        "backup": {
            "schedules": {name: {"schedule": aws_cron(b.cron), "retention_days": b.retention_days,
                                 "cold_storage_after_days": b.cold_storage_after_days,
                                 "copy_to_dr_partner": b.copy_to_dr_partner}
                          for name, b in _backups(region)},
            "dr_vault_arn": _aws_partner_arn(plan, region, "backup", "backup-vault:{name}"),
        },
        "budget": {**_budget(plan, region), "tag_key": "region", "tag_value": region.name},
        **_aws_managed(plan, region),
    }


OPENSEARCH_VERSION = "OpenSearch_2.17"  # the spec's Elasticsearch version has no OpenSearch equivalent
PRELOAD = {"pg_stat_statements": "pg_stat_statements", "pg_partman": "pg_partman_bgw", "timescaledb": "timescaledb"}


def graviton(instance_type: str) -> str:
    """ElastiCache and OpenSearch offer the Graviton twin of an Intel family (r6i -> r6g)."""
    return re.sub(r"^([a-z]+[0-9]+)i\.", r"\1g.", instance_type)


def managed(region: RegionPlan) -> dict[str, bool]:
    ds = region.settings.datastores
    return {"postgres": ds.postgres.deployment == "managed", "redis": ds.redis.deployment == "managed",
            "search": ds.elasticsearch.deployment == "managed"}


def _aws_managed(plan: PlatformPlan, region: RegionPlan) -> dict:
    ds, sec = region.settings.datastores, region.settings.security
    daily = region.settings.backups.daily.retention_days
    logs = cloudwatch_retention(sec.audit_log_retention_days)
    out = {}
    if managed(region)["postgres"]:
        pg = ds.postgres
        out["managed_postgres"] = {
            "vpc_cidr": region.cidr, "engine_version": str(pg.version),
            "instance_class": "db." + pg.instance.instance_types["aws"], "storage_gib": pg.instance.disk_gib,
            "multi_az": pg.multi_az, "read_replicas": pg.read_replicas, "max_connections": pg.max_connections,
            "preload_libraries": sorted({PRELOAD[e] for e in pg.extensions if e in PRELOAD}),
            "log_min_duration_ms": plan.spec.slos.db_query_p95_ms, "backup_retention_days": min(daily, 35),
            "internal_domain": region.internal_domain,
        }
    if managed(region)["redis"]:
        rd = ds.redis
        out["managed_redis"] = {
            "vpc_cidr": region.cidr, "engine_version": rd.version, "node_type": "cache." + graviton(rd.instance.instance_types["aws"]),
            "port": rd.port, "primaries": rd.primaries, "replicas_per_primary": rd.replicas_per_primary,
            "maxmemory_policy": rd.maxmemory_policy, "snapshot_retention_days": min(daily, 35),
            "log_retention_days": logs, "internal_domain": region.internal_domain,
        }
    if managed(region)["search"]:
        es = ds.elasticsearch
        out["managed_search"] = {
            "domain_name": prefix(plan, region)[:28].rstrip("-"), "vpc_cidr": region.cidr,
            "engine_version": OPENSEARCH_VERSION, "instance_type": graviton(es.instance.instance_types["aws"]) + ".search",
            "nodes": es.nodes, "volume_gib": es.instance.disk_gib, "log_retention_days": logs,
            "internal_domain": region.internal_domain,
        }
    return out


AWS_SSL_POLICY = {"1.3": "ELBSecurityPolicy-TLS13-1-3-2021-06", "1.2": "ELBSecurityPolicy-TLS13-1-2-2021-06"}


def _backups(region: RegionPlan):
    b = region.settings.backups
    return [(name, getattr(b, name)) for name in ("hourly", "daily", "weekly", "monthly")]


def _storage_policy(region: RegionPlan) -> dict:
    os_ = region.settings.datastores.object_storage
    return {
        "versioning": os_.versioning,
        "intelligent_tiering": os_.intelligent_tiering,
        "lifecycle_days": {"infrequent_access": os_.lifecycle.infrequent_access_after_days,
                           "archive": os_.lifecycle.archive_after_days,
                           "noncurrent_expire": os_.lifecycle.noncurrent_expire_after_days},
    }


def _waf(plan: PlatformPlan) -> dict:
    waf = plan.spec.edge.waf
    return {"rate_limit_per_5min": waf.rate_limit_per_5min, "blocked_countries": list(waf.blocked_countries),
            "managed_rules": waf.managed_rules}


def _budget(plan: PlatformPlan, region: RegionPlan) -> dict:
    cost = plan.spec.cost
    return {"monthly_amounts": dict(region.monthly_budget), "currency": cost.currency,
            "alert_thresholds_percent": list(cost.alert_thresholds_percent)}


def public_hostnames(plan: PlatformPlan, region: RegionPlan) -> list[str]:
    """Names a region's load balancer answers for: its own, the weighted origin name, and the public hosts
    (CloudFront forwards the viewer's Host)."""
    domain = plan.spec.organization.domain
    dns = plan.spec.edge.dns
    return [f"{region.name}.{domain}", f"origin.{domain}", f"{dns.api_host}.{domain}", f"{dns.app_host}.{domain}"]


def _partner(plan: PlatformPlan, region: RegionPlan) -> RegionPlan | None:
    """The DR partner when it is on the same cloud (native replication and copies need that)."""
    partner = plan.region(region.dr_partner)
    return partner if partner.cloud == region.cloud else None


def _aws_partner_arn(plan: PlatformPlan, region: RegionPlan, service: str, resource: str) -> str | None:
    partner = _partner(plan, region)
    if partner is None:
        return None
    account = plan.spec.clouds["aws"].account
    return f"arn:aws:{service}:{partner.cloud_region}:{account}:{resource.format(name=prefix(plan, partner))}"


def _aws_replication(plan: PlatformPlan, region: RegionPlan) -> dict | None:
    partner = _partner(plan, region)
    if partner is None or not region.settings.datastores.object_storage.replicate_to_dr_partner:
        return None
    return {"data_bucket_arn": f"arn:aws:s3:::{partner.data_bucket}",
            "backup_bucket_arn": f"arn:aws:s3:::{partner.backup_bucket}",
            "kms_key_arn": _aws_partner_arn(plan, region, "kms", "alias/{name}")}


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


# GPU model per GCP machine family (G2 and A2/A3 machines come with their GPUs attached).
GCP_GPU = {"g2": "nvidia-l4", "a2": "nvidia-tesla-a100", "a3": "nvidia-h100-80gb", "n1": "nvidia-tesla-t4"}


def _gcp_backups(plan: PlatformPlan, region: RegionPlan) -> dict:
    partner = _partner(plan, region)
    rules, snapshot = {}, None
    for name, b in _backups(region):
        c = classify_cron(b.cron)
        if c["kind"] == "hourly":
            if snapshot is not None:
                raise ValueError(f"region {region.name}: GCP disks take one snapshot schedule; only one backup schedule may be hourly")
            snapshot = {"every_hours": c["every_hours"], "start_time": "00:00", "retention_days": b.retention_days,
                        "storage_location": partner.cloud_region if b.copy_to_dr_partner and partner else region.cloud_region}
            continue
        rules[name] = {"recurrence": c["kind"].upper(), "days_of_week": c["days_of_week"],
                       "days_of_month": c["days_of_month"], "hour": c["hour"], "retention_days": b.retention_days}
    disks = {h.name: {"name": f"{h.name}-data", "zone": h.zone} for h in region.hosts if (_machine(region, h.group) is not None)}
    return {"region": region.cloud_region, "schedules": rules, "snapshot_schedule": snapshot, "data_disks": disks}


def _gcp_args(plan: PlatformPlan, region: RegionPlan) -> dict:
    s = region.settings
    net, k8s, sec = s.network, s.kubernetes, s.security
    pods, services = free_ranges(region)
    pools = _node_pools(region)
    for pool in pools.values():
        pool["gpu_type"] = GCP_GPU.get(pool["instance_type"].split("-")[0], "") if pool["gpus"] else ""
    host_map = hosts(region)
    for h in host_map.values():
        h["target_tag"] = h["group"].replace("_", "-")
    cap = plan.spec.capacity
    per_pod = cap.requests_per_second * region.traffic_share / 100 * cap.peak_multiplier / s.gateway.replicas
    return {
        "kms": {"location": region.cloud_region, "rotation_days": sec.kms_key_rotation_days},
        "network": {
            "region": region.cloud_region,
            "zones": {z.name: {"private_cidr": z.private_cidr, "public_cidr": z.public_cidr} for z in region.zones},
            "pods_cidr": pods,
            "services_cidr": services,
            "flow_logs": net.flow_logs,
            "lb_target_port": KONG_PROXY_TLS_PORT,
            "ingress_rules": _gcp_firewall(region),
        },
        "kubernetes": {
            "region": region.cloud_region,
            "zones": [z.name for z in region.zones],
            "kubernetes_version": k8s.version,
            "private_endpoint": k8s.private_api_endpoint,
            "api_allowed_cidrs": [region.cidr, *k8s.api_allowed_cidrs],
            "rbac_security_group": f"gke-security-groups@{plan.spec.organization.domain}",
            "node_pools": pools,
        },
        "object_storage": {
            "region": region.cloud_region,
            "data_bucket": region.data_bucket,
            "backup_bucket": region.backup_bucket,
            "versioning": s.datastores.object_storage.versioning,
            "lifecycle_days": _storage_policy(region)["lifecycle_days"],
            "replication": _bucket_names_of_partner(plan, region),
            "log_retention_days": sec.audit_log_retention_days,
        },
        "data_hosts": {"hosts": host_map, "internal_domain": region.internal_domain},
        "waf": {**_waf(plan), "ddos_protection": plan.spec.edge.ddos_protection},
        "load_balancer": {
            "zones": [z.name for z in region.zones],
            "public_zone": plan.spec.organization.domain,
            "hostnames": public_hostnames(plan, region),
            "min_tls_version": "TLS_" + sec.tls_min_version.replace(".", "_"),
            "health_check_path": plan.spec.edge.dns.health_check_path,
            "max_rate_per_endpoint": math.ceil(per_pod),
        },
        "backup": _gcp_backups(plan, region),
        "budget": {**_budget(plan, region), "tag_key": "region", "tag_value": region.name},
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
            "backup_start_time": f"{hour:02d}:00", "retained_backups": daily.retention_days,
            "internal_domain": region.internal_domain,
        }
    if managed(region)["redis"]:
        rd = ds.redis
        node = next((n for gib, n in MEMORYSTORE_NODES if rd.instance.memory_gib <= gib), MEMORYSTORE_NODES[-1][1])
        out["managed_redis"] = {
            "region": region.cloud_region, "node_type": node, "primaries": rd.primaries,
            "replicas_per_primary": rd.replicas_per_primary, "maxmemory_policy": rd.maxmemory_policy,
            "append_fsync": AOF_FSYNC[rd.appendfsync] if rd.appendonly else None,
            "backup_hour": hour, "backup_retention_days": daily.retention_days,
            "internal_domain": region.internal_domain,
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
    partner = _partner(plan, region)
    if partner is None or not region.settings.datastores.object_storage.replicate_to_dr_partner:
        return None
    return {"data_bucket": partner.data_bucket, "backup_bucket": partner.backup_bucket}


def azure_pool_name(name: str) -> str:
    """AKS pool names: up to 12 lower-case letters and digits."""
    return re.sub(r"[^a-z0-9]", "", name.lower())[:12]


AZURE_TLS_12_CIPHERS = ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"]
AZURE_DISK_BACKUP_HOURS = (1, 2, 4, 6, 8, 12)
# Application Gateway v2 autoscaling: two instances keep it zone-redundant; the ceiling bounds cost.
AZURE_GATEWAY_CAPACITY = (2, 10)


def _azure_pools(region: RegionPlan) -> tuple[str, dict]:
    pools, system = {}, None
    for name, pool in _node_pools(region).items():
        short = azure_pool_name(name)
        if short in pools:
            raise ValueError(f"region {region.name}: node pools {name!r} and another both shorten to {short!r} on AKS")
        spec = region.settings.kubernetes.node_pools[name]
        pools[short] = {
            "instance_type": pool["instance_type"], "min_nodes": pool["min_nodes"], "max_nodes": pool["max_nodes"],
            "spot": pool["spot"], "disk_gib": pool["disk_gib"],
            "labels": {**pool["labels"], "node-pool": name},
            "taints": list(spec.taints),
        }
        if system is None and not spec.spot and not spec.taints:
            system = short
    if system is None:
        raise ValueError(f"region {region.name}: AKS needs an on-demand node pool without taints for system pods")
    return system, pools


def _azure_backups(region: RegionPlan) -> dict:
    by_kind: dict[str, tuple] = {}
    for name, b in _backups(region):
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
    partner = _partner(plan, region)
    if partner is None or not region.settings.datastores.object_storage.replicate_to_dr_partner:
        return None
    base = f"/subscriptions/{plan.spec.clouds['azure'].account}/resourceGroups/{prefix(plan, partner)}/providers/Microsoft.Storage/storageAccounts"
    return {"data_account_id": f"{base}/{partner.data_bucket}", "backup_account_id": f"{base}/{partner.backup_bucket}"}


def _azure_args(plan: PlatformPlan, region: RegionPlan) -> dict:
    s = region.settings
    net, k8s, sec = s.network, s.kubernetes, s.security
    pods, services = free_ranges(region)
    system, pools = _azure_pools(region)
    zones = [z.name for z in region.zones]
    return {
        "kms": {"key_vault_name": prefix(plan, region)[:24].rstrip("-"), "rotation_days": sec.kms_key_rotation_days},
        "network": {
            "cidr": region.cidr,
            "zones": {z.name: {"private_cidr": z.private_cidr, "public_cidr": z.public_cidr} for z in region.zones},
            "nat_per_zone": net.nat_per_zone,
            "flow_logs": net.flow_logs,
            "flow_log_retention_days": min(net.flow_log_retention_days, 365),
            "log_retention_days": min(max(sec.audit_log_retention_days, 30), 730),
            "log_account_name": region.data_bucket[:-2] + "lg",
        },
        "kubernetes": {
            "zones": zones,
            "kubernetes_version": k8s.version,
            "private_endpoint": k8s.private_api_endpoint,
            "api_allowed_cidrs": list(k8s.api_allowed_cidrs),
            "pod_cidr": pods,
            "service_cidr": services,
            "system_pool": system,
            "node_pools": pools,
        },
        "object_storage": {
            "data_account": region.data_bucket,
            "backup_account": region.backup_bucket,
            "versioning": s.datastores.object_storage.versioning,
            "lifecycle_days": _storage_policy(region)["lifecycle_days"],
            "replication": _azure_partner_accounts(plan, region),
        },
        "data_hosts": {"hosts": hosts(region), "ingress_rules": ingress_rules(region), "internal_domain": region.internal_domain},
        "waf": _waf(plan),
        "load_balancer": {
            "zones": zones,
            "public_zone": plan.spec.organization.domain,
            "hostnames": public_hostnames(plan, region),
            "min_tls_version": "TLSv" + sec.tls_min_version.replace(".", "_"),
            "cipher_suites": AZURE_TLS_12_CIPHERS if sec.tls_min_version == "1.2" else [],
            "target_port": KONG_PROXY_TLS_PORT,
            "health_check_path": plan.spec.edge.dns.health_check_path,
            "min_capacity": AZURE_GATEWAY_CAPACITY[0],
            "max_capacity": AZURE_GATEWAY_CAPACITY[1],
        },
        "backup": _azure_backups(region),
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
        }
    return out


ARGS = {"aws": _aws_args, "gcp": _gcp_args, "azure": _azure_args}


def files(plan: PlatformPlan, region: RegionPlan) -> dict[str, tuple[str, dict]]:
    """File name -> (template, context) for regions/<region>/."""
    cloud = region.cloud
    backend_type, backend = state_backend(plan, cloud, f"regions/{region.name}")
    context = {
        "plan": plan,
        "region": region,
        "name": prefix(plan, region),
        "tags": dict(region.tags),
        "account": plan.spec.clouds[cloud].account,
        "dns_account": plan.spec.clouds["aws"].account if "aws" in plan.spec.clouds else None,
        "dns_region": plan.spec.clouds["aws"].state.region if "aws" in plan.spec.clouds else "us-east-1",
        "args": ARGS[cloud](plan, region),
        "backend_type": backend_type,
        "backend": backend,
    }
    out = {"versions.tf": ("versions.tf.j2", provider_requirements(root_clouds(cloud)))}
    out["backend.tf"] = ("backend.tf.j2", context)
    for part in ("main", "providers", "variables", "outputs"):
        out[f"{part}.tf"] = (f"regions/{cloud}/{part}.tf.j2", context)
    return out
