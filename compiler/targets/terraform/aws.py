"""Terraform target, AWS region roots: IR -> arguments of the modules/aws/* calls (EKS, EC2 data hosts, S3, ALB, WAFv2,
AWS Backup, Budgets, RDS/ElastiCache/OpenSearch when managed)."""

from __future__ import annotations

import re

from compiler.ir.cluster_support import EKS_SUPPORT_TYPE
from compiler.ir import PlatformPlan, RegionPlan
from compiler.targets.terraform import identity as _identity
from compiler.ir.edge import lb_target_name, origin_listener_min_tls, origin_response_timeout, validated_by_global
from compiler.targets.terraform.common import aws_cron, cloudwatch_retention, prefix, search_path_entries
from compiler.formats.hcl import Raw
from compiler.ir.data_access import (OPENSEARCH_ADVANCED_OPTIONS, OPENSEARCH_DENIED_PATHS, managed_search_domain,
                                     managed_search_endpoint, redis_users, search_grants)
from compiler.ir.identity import EBS_CSI_DRIVER, EBS_CSI_SERVICE_ACCOUNT, aws_role_name
from compiler.ir.names import CLIENT_ADDRESS_HEADER, KUBE_API_PEER, SYSTEM_NAMESPACE, kms_key_alias
from compiler.targets.terraform.values import (PRELOAD, backups, budget, egress_rules, hosts, ingress_rules,
                                                internal_gateway, lb_hostnames, managed, node_pools, peer_ingress,
                                                postgres_endpoints,
                                                public_entry, same_cloud_partner, storage_policy, waf)


def args(plan: PlatformPlan, region: RegionPlan) -> dict:
    s = region.settings
    net, k8s, sec = s.network, s.kubernetes, s.security
    entry = public_entry(region)
    return {
        "kms": {"rotation_days": sec.kms_key_rotation_days},
        "network": {
            "cloud_region": region.cloud_region,
            "cidr": region.cidr,
            "zones": {z.name: {"private_cidr": z.private_cidr, "public_cidr": z.public_cidr} for z in region.zones},
            "nat_per_zone": net.nat_per_zone,
            "flow_logs": net.flow_logs,
            "flow_log_retention_days": cloudwatch_retention(net.flow_log_retention_days),
            "peer_ingress": peer_ingress(region),
        },
        "kubernetes": {
            "kubernetes_version": k8s.version,
            "support_type": EKS_SUPPORT_TYPE[k8s.version_support],  # compiler/ir/cluster_support.py
            "public_endpoint": not k8s.private_api_endpoint,
            "api_allowed_cidrs": list(k8s.api_allowed_cidrs),
            # the wiring's paths to the private API endpoint (the bastion's)
            "api_client_cidrs": sorted({cidr for c in region.wiring if c.dest.name == KUBE_API_PEER
                                        for cidr in c.source.cidrs}),
            "log_retention_days": cloudwatch_retention(sec.audit_log_retention_days),
            "node_pools": node_pools(region),
            # the aws-ebs-csi-driver add-on's IRSA role, trusted by exactly the controller's ServiceAccount
            "ebs_csi_role_name": aws_role_name(region.cluster_name, EBS_CSI_DRIVER),
            "ebs_csi_service_account": {"namespace": SYSTEM_NAMESPACE, "name": EBS_CSI_SERVICE_ACCOUNT},
        },
        "object_storage": {
            "data_bucket": region.data_bucket,
            "backup_bucket": region.backup_bucket,
            **storage_policy(region),
            "replication": _aws_replication(plan, region),
            "log_retention_days": sec.audit_log_retention_days,
        },
        "data_hosts": {
            "vpc_cidr": region.cidr,
            "hosts": hosts(plan, region),
            "ingress_rules": ingress_rules(region),
            "egress_rules": egress_rules(region),
            "postgres_endpoints": postgres_endpoints(region),
            "internal_domain": region.internal_domain,
        },
        "waf": {
            "scope": "REGIONAL",
            # behind the CDN: the client is the address the CDN writes into this header (compiler/ir/names.py)
            "client_address_header": CLIENT_ADDRESS_HEADER,
            **waf(plan, region),
            "log_retention_days": cloudwatch_retention(sec.audit_log_retention_days),
        },
        "load_balancer": {
            "response_timeout_seconds": origin_response_timeout(region.settings),
            "vpc_cidr": region.cidr,
            "public_zone": plan.spec.organization.domain,
            "hostnames": lb_hostnames(plan, region),
            # their validation records are the global root's (one per name for the whole account: compiler/ir/edge.py)
            "shared_hostnames": validated_by_global(plan, region),
            # the lowest TLS of what arrives (Route 53's and the NLB's health checks: 1.2), not the spec's floor
            "ssl_policy": AWS_SSL_POLICY[origin_listener_min_tls(region)],
            # cdn->load-balancer: CloudFront's origin-facing ranges only, on this port
            "listener_port": entry["listener_port"],
            # load-balancer->kong: the ALB's own security group on the node/pod security group, this port
            "target_port": entry["target_port"],
            # Kong's pods join it through the kubernetes target's TargetGroupBinding
            "target_group_name": lb_target_name(region),
            "health_check_path": plan.spec.edge.dns.health_check_path,
            "internal_gateway": internal_gateway(plan, region),
        },
        "backup": {
            "schedules": {name: {"schedule": aws_cron(b.cron), "retention_days": b.retention_days,
                                 # AWS Backup ignores a cold-storage age for EC2, the only type selected
                                 # (API Lifecycle: other resource types ignore it): never promised
                                 "cold_storage_after_days": None,
                                 "copy_to_dr_partner": b.copy_to_dr_partner}
                          for name, b in backups(region)},
            "dr_vault_arn": _aws_partner_arn(plan, region, "backup", "backup-vault:{name}"),
        },
        "workload_identity": _identity.args(plan, region),
        "budget": {**budget(plan, region), "tag_key": "region", "tag_value": region.name},
        **_aws_managed(plan, region),
    }


OPENSEARCH_VERSION = "OpenSearch_2.17"  # the spec's Elasticsearch version has no OpenSearch equivalent


def graviton(instance_type: str) -> str:
    """ElastiCache and OpenSearch offer the Graviton twin of an Intel family (r6i -> r6g)."""
    return re.sub(r"^([a-z]+[0-9]+)i\.", r"\1g.", instance_type)


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
            # one RBAC user per service (IAM authentication), from the IR (compiler/ir/data_access.py)
            "users": {u.name: {"service": u.service, "access_string": u.access_string}
                      for u in redis_users(region.data_access)},
        }
    if managed(region)["search"]:
        es = ds.elasticsearch
        out["managed_search"] = {
            "domain_name": managed_search_domain(region.cluster_name), "vpc_cidr": region.cidr,
            "engine_version": OPENSEARCH_VERSION, "instance_type": graviton(es.instance.instance_types["aws"]) + ".search",
            "nodes": es.nodes, "volume_gib": es.instance.disk_gib, "log_retention_days": logs,
            "internal_domain": region.internal_domain,
            # IAM-only access from the IR (compiler/ir/data_access.py SearchGrant): each service's role on exactly
            # its paths, the denied paths, no explicit index in multi-request bodies
            "advanced_options": dict(OPENSEARCH_ADVANCED_OPTIONS),
            "clients": {g.identity: {"paths": search_path_entries(g.index_prefix)}
                        for g in search_grants(region.data_access)},
            "client_role_arns": Raw("module.workload_identity.role_arns"),
            "denied_paths": list(OPENSEARCH_DENIED_PATHS),
            # the name the services dial, the domain's custom endpoint; its certificate is validated in the public zone
            "custom_endpoint": managed_search_endpoint(region.internal_domain),
            "public_zone": plan.spec.organization.domain,
        }
    return out


AWS_SSL_POLICY = {"1.3": "ELBSecurityPolicy-TLS13-1-3-2021-06", "1.2": "ELBSecurityPolicy-TLS13-1-2-2021-06"}


def _aws_partner_arn(plan: PlatformPlan, region: RegionPlan, service: str, resource: str) -> str | None:
    partner = same_cloud_partner(plan, region)
    if partner is None:
        return None
    account = plan.spec.clouds["aws"].account
    return f"arn:aws:{service}:{partner.cloud_region}:{account}:{resource.format(name=prefix(plan, partner))}"


def _aws_replication(plan: PlatformPlan, region: RegionPlan) -> dict | None:
    # the IR's fact, which the partner's standby cluster also reads (it restores WAL from the replicated copy)
    if not region.replicates_to_dr_partner:
        return None
    partner = plan.region(region.dr_partner)
    return {"data_bucket_arn": f"arn:aws:s3:::{partner.data_bucket}",
            "backup_bucket_arn": f"arn:aws:s3:::{partner.backup_bucket}",
            # the partner's key itself (an IAM Resource and the replica encryption take no alias ARN), read from its
            # alias in the partner's region (the provider for the peering)
            "kms_key_arn": Raw("data.aws_kms_alias.dr_partner.target_key_arn")}


def kms_alias(plan: PlatformPlan, region: RegionPlan) -> str | None:
    """The DR partner's key alias the root looks up for replication (None: no replication)."""
    if _aws_replication(plan, region) is None:
        return None
    return kms_key_alias(prefix(plan, plan.region(region.dr_partner)))
