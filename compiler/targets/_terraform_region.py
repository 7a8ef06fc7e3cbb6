"""Terraform target: one region's root module (IR -> template context).

Each module call in regions/<cloud>/main.tf.j2 writes its wiring (module outputs, local.tags)
in the template and takes the region's resolved values from `args[<module>]`, rendered with
`hcl_attrs`. The keys here are exactly the module's variables minus the wired ones; the tests
parse both sides to prove it.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.targets._terraform_common import (aws_cron, cloudwatch_retention, prefix, provider_requirements,
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
    }


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


ARGS = {"aws": _aws_args}


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
        "args": ARGS[cloud](plan, region),
        "backend_type": backend_type,
        "backend": backend,
    }
    out = {"versions.tf": ("versions.tf.j2", provider_requirements([cloud]))}
    out["backend.tf"] = ("backend.tf.j2", context)
    for part in ("main", "providers", "variables", "outputs"):
        out[f"{part}.tf"] = (f"regions/{cloud}/{part}.tf.j2", context)
    return out
