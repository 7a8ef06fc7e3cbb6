"""Cloud resource names derived from organization.name and the region names, with each cloud's rule for them (R064).

A region's resources are named from `<org>-<region>` (RegionPlan.cluster_name): up to 81 characters, two names of at
most 40 and a hyphen. The clouds allow far fewer for many names, and some names are cut to fit (the Azure Key Vaults
and storage accounts, the AWS PostgreSQL load balancers, the OpenSearch domain, the GCP peerings): a cut name can come
out the same for two regions whose names share a beginning, and an uncut one can be too long or break the cloud's
characters. `derived_names(plan)` lists every name a root creates that can, `problems(plan)` what is wrong with them;
R064 (compiler/rules.py) refuses the spec with it, before any root is applied. The names are the ones the roots use
(the same functions, or the same expression as the module's template: tests/test_cloud_names.py holds them to it), so
nothing here renames a resource that exists.

Each Limit says where its length and characters were read: the provider's validator (hashicorp/terraform-provider-
azurerm, -google, -aws) or, where the provider checks nothing, the cloud's API reference or naming rules.

Left out: the roots' other names. On each cloud one name that every region root creates bounds `<org>-<region>`
(AWS: the Kong target group `<prefix>-kong`, 32, so 27 characters; GCP: the GKE cluster, 40; Azure: the disk backup
vault `<prefix>-disks`, 50, so 44), and every other name is that prefix and a short suffix:
- GCP: the Compute Engine names (RFC 1035, 63; verify.ValidateGCEName) take suffixes of at most 21 characters
  (`-postgres-replicas-9`, `-internal-gateway`), and `<prefix>-pg-<zone>` is shorter than that zone's subnetwork.
- Azure: the names the naming rules limit to 80 (network security groups, public addresses, NAT gateways, load
  balancers, private endpoints, disks, peerings) take suffixes of at most 20 (`-application-gateway`); the virtual
  network (64) and managed identities (128) take the prefix and `-<service>`.
- AWS: the internal gateway's load balancer and target group (substr(`<prefix>-gw`, 0, 32)) are not cut under 30;
  IAM roles of the services are hashed past 64 (identity.aws_role_name).
The rest (AWS IAM roles `<prefix>-rds-monitoring` and the like, backup vault and selection, EKS, launch templates,
security, parameter and subnet groups; GCP Cloud SQL, Memorystore, KMS; Azure Key Vault keys, budget) have limits
documented well above these bounds, not re-read for this rule; service accounts and DNS authorizations are hashed to
fit (identity.gcp_account_id, names.fit).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterator, Optional

from compiler.records import dataclass


@dataclass(frozen=True)
class Limit:
    """One kind of name and the cloud's rule for it."""

    what: str  # as a message names it
    resource: str  # the Terraform resource that carries it
    max_len: int
    pattern: str  # the whole name must match (the cloud's characters and shape)
    shape: str  # the pattern in words
    namespace: str  # names of one namespace (within one scope, see Derived) must differ; "" when nothing is unique
    source: str  # where the length and the characters were read
    min_len: int = 1
    unique: str = ""  # where names of the namespace must differ, in words


def _rfc1035(what: str, resource: str, namespace: str, source: str, unique: str) -> Limit:
    return Limit(what, resource, 63, r"[a-z](?:[a-z0-9-]*[a-z0-9])?",
                 "a lower-case letter first, then lower-case letters, digits and hyphens, not ending in a hyphen",
                 namespace, source, unique=unique)


_ALNUM_HYPHENS = r"[0-9A-Za-z](?:[0-9A-Za-z-]*[0-9A-Za-z])?"
_SINGLE_HYPHENS = r"[a-z](?:-?[a-z0-9])*"  # a letter first, single hyphens, none at the end
_SINGLE_HYPHENS_WORDS = "a letter first, then letters, digits and single hyphens (no `--`), not ending in a hyphen"
_GCE = "terraform-provider-google verify.ValidateGCEName (RFC 1035, 1-63)"

# ---------------------------------------------------------------- AWS
AWS_TARGET_GROUP = Limit(
    "AWS target group", "aws_lb_target_group", 32, _ALNUM_HYPHENS, "letters, digits and hyphens, no hyphen at either end",
    "aws-elb-target-group", "terraform-provider-aws internal/service/elbv2 validTargetGroupName",
    unique="in an AWS account's region")
AWS_LOAD_BALANCER = Limit(
    "AWS load balancer", "aws_lb", 32, r"(?!internal-)" + _ALNUM_HYPHENS,
    "letters, digits and hyphens, no hyphen at either end, not starting with `internal-`",
    "aws-elb", "terraform-provider-aws internal/service/elbv2 validName", unique="in an AWS account's region")
AWS_ELASTICACHE = Limit(
    "ElastiCache replication group", "aws_elasticache_replication_group", 40, _SINGLE_HYPHENS, _SINGLE_HYPHENS_WORDS,
    "aws-elasticache", "ElastiCache API CreateReplicationGroup ReplicationGroupId (1-40)",
    unique="in an AWS account's region")
AWS_RDS = Limit(
    "RDS instance", "aws_db_instance", 63, _SINGLE_HYPHENS, _SINGLE_HYPHENS_WORDS, "aws-rds",
    "terraform-provider-aws internal/service/rds validIdentifier; RDS API CreateDBInstance DBInstanceIdentifier (1-63)",
    unique="in an AWS account's region")
AWS_OPENSEARCH = Limit(
    "OpenSearch domain", "aws_opensearch_domain", 28, r"[a-z][a-z0-9-]{2,27}",
    "a lower-case letter first, then lower-case letters, digits and hyphens, 3-28", "aws-opensearch",
    "terraform-provider-aws internal/service/opensearch domain_name ^[a-z][0-9a-z\\-]{2,27}$", min_len=3,
    unique="in an AWS account's region")
AWS_S3 = Limit(
    "S3 bucket", "aws_s3_bucket", 63, r"(?!xn--|sthree-|amzn-s3-demo-)[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?",
    "lower-case letters, digits, hyphens and dots, a letter or digit at either end, not starting with `xn--`, "
    "`sthree-` or `amzn-s3-demo-`", "aws-s3",
    "terraform-provider-aws internal/service/s3 validBucketName; S3 user guide, general purpose bucket naming rules",
    min_len=3, unique="across all AWS accounts")

# ---------------------------------------------------------------- GCP
GKE_CLUSTER = Limit(
    "GKE cluster", "google_container_cluster", 40, r"[a-z](?:[a-z0-9-]*[a-z0-9])?",
    "a lower-case letter first, then lower-case letters, digits and hyphens, not ending in a hyphen", "gcp-gke",
    "terraform-provider-google google/services/container/resource_container_cluster.go (name: 40)",
    unique="in a GCP location")
GCP_SUBNETWORK = _rfc1035("GCP subnetwork", "google_compute_subnetwork", "gcp-subnetwork", _GCE,
                          "in a region of the GCP project")
GCP_INSTANCE = _rfc1035("GCE instance", "google_compute_instance", "gcp-instance",
                        "terraform-provider-google ValidateRFC1035Name(1, 63)", "in a zone of the GCP project")
GCP_DISK = _rfc1035("GCE disk", "google_compute_disk", "gcp-disk", _GCE, "in a zone of the GCP project")
GCP_PEERING = _rfc1035("GCP network peering", "google_compute_network_peering", "gcp-network-peering", _GCE,
                       "in a network")
GCP_GLOBAL_NEG = _rfc1035("global network endpoint group", "google_compute_global_network_endpoint_group",
                          "gcp-global-neg", _GCE, "in the GCP project")
GCP_DNS_ZONE = Limit(
    "Cloud DNS managed zone", "google_dns_managed_zone", 63, r"[a-z](?:[a-z0-9-]*[a-z0-9])?",
    "a letter first, then lower-case letters, digits and hyphens, a letter or digit last", "gcp-dns-zone",
    "Cloud DNS API ManagedZone.name (1-63; the provider does not check it)", unique="in the GCP project")
GCS_BUCKET = Limit(
    "Cloud Storage bucket", "google_storage_bucket", 63, r"(?!goog)(?!.*google)[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?",
    "lower-case letters, digits, hyphens, underscores and dots, a letter or digit at either end, not starting with "
    "`goog` nor containing `google`", "gcs", "Cloud Storage docs, bucket naming requirements (the provider does not "
    "check them)", min_len=3, unique="across all of Cloud Storage")
GCP_DNS_AUTHORIZATION = Limit(
    "Certificate Manager DNS authorization", "google_certificate_manager_dns_authorization", 64,
    r"[a-zA-Z][a-zA-Z0-9_-]*", "a letter first, then letters, digits, hyphens and underscores",
    "gcp-dns-authorization", "terraform-provider-google certificatemanager dns_authorization name (1-64)",
    unique="in the GCP project")

# ---------------------------------------------------------------- Azure
AZURE_KEY_VAULT = Limit(
    "Azure Key Vault", "azurerm_key_vault", 24, r"[a-zA-Z](?!.*--)(?:[a-zA-Z0-9-]*[a-zA-Z0-9])?",
    "a letter first, then letters, digits and hyphens, no `--`, a letter or digit last", "azure-key-vault",
    "terraform-provider-azurerm internal/services/keyvault/validate/vault_name.go VaultName", min_len=3,
    unique="across all of Azure")
AZURE_STORAGE_ACCOUNT = Limit(
    "Azure storage account", "azurerm_storage_account", 24, r"[a-z0-9]+", "lower-case letters and digits",
    "azure-storage-account", "terraform-provider-azurerm internal/services/storage/validate/storage_account_name.go",
    min_len=3, unique="across all of Azure")
AKS_DNS_PREFIX = Limit(
    "AKS DNS prefix", "azurerm_kubernetes_cluster.dns_prefix", 54, _ALNUM_HYPHENS,
    "letters, digits and hyphens, a letter or digit at either end", "",
    "terraform-provider-azurerm internal/services/containers/validate/kubernetes.go KubernetesDNSPrefix")
AKS_CLUSTER = Limit(
    "AKS cluster", "azurerm_kubernetes_cluster", 63, r"[a-zA-Z0-9](?:[-_a-zA-Z0-9]*[a-zA-Z0-9])?",
    "letters, digits, hyphens and underscores, a letter or digit at either end", "",
    "Azure naming rules, Microsoft.ContainerService/managedClusters (1-63; azurerm checks only that it is not empty)")
AZURE_RECOVERY_VAULT = Limit(
    "Recovery Services vault", "azurerm_recovery_services_vault", 50, r"[a-zA-Z][-a-zA-Z0-9]*",
    "a letter first, then letters, digits and hyphens", "",
    "terraform-provider-azurerm internal/services/recoveryservices/validate RecoveryServicesVaultName (2-50)",
    min_len=2)
AZURE_BACKUP_VAULT = Limit(
    "Data Protection backup vault", "azurerm_data_protection_backup_vault", 50, r"[-a-zA-Z0-9]+",
    "letters, digits and hyphens", "",
    "terraform-provider-azurerm data_protection_backup_vault_resource.go ^[-a-zA-Z0-9]{2,50}$", min_len=2)
AZURE_LOG_ANALYTICS = Limit(
    "Log Analytics workspace", "azurerm_log_analytics_workspace", 63, r"[A-Za-z0-9][A-Za-z0-9-]+[A-Za-z0-9]",
    "letters, digits and hyphens, a letter or digit at either end", "",
    "terraform-provider-azurerm internal/services/loganalytics/validate LogAnalyticsWorkspaceName (4-63)", min_len=4)
AZURE_POSTGRES = Limit(
    "PostgreSQL flexible server", "azurerm_postgresql_flexible_server", 63, r"[a-z0-9](?:[a-z0-9-]+[a-z0-9])?",
    "lower-case letters, digits and hyphens, a letter or digit at either end", "azure-postgres",
    "terraform-provider-azurerm internal/services/postgres/validate/flexible_server_name.go FlexibleServerName",
    min_len=3, unique="across all of Azure")
AZURE_REDIS = Limit(
    "Azure Cache for Redis", "azurerm_redis_cache", 63, r"[a-zA-Z0-9](?!.*--)(?:[a-zA-Z0-9-]*[a-zA-Z0-9])?",
    "letters, digits and hyphens, no `--`, a letter or digit at either end", "azure-redis",
    "Azure naming rules, Microsoft.Cache/Redis (1-63; azurerm checks nothing)", unique="across all of Azure")
AZURE_DNS_LINK = Limit(
    "private DNS zone link", "azurerm_private_dns_zone_virtual_network_link", 80, r"[a-zA-Z0-9](?:[\w.-]*\w)?",
    "letters, digits, underscores, dots and hyphens, a letter or digit first, a letter, digit or underscore last",
    "azure-dns-link", "Azure naming rules, Microsoft.Network/privateDnsZones/virtualNetworkLinks (1-80; azurerm "
    "checks nothing)", unique="in a private DNS zone")
FRONT_DOOR_ENDPOINT = Limit(
    "Front Door endpoint", "azurerm_cdn_frontdoor_endpoint", 46, _ALNUM_HYPHENS,
    "letters, digits and hyphens, a letter or digit at either end", "",
    "terraform-provider-azurerm internal/services/cdn/validate/front_door_endpoint_name.go (2-46)", min_len=2)

# ---------------------------------------------------------------- every cloud
HOST_NAME = Limit(
    "data host name", "the host's VM (and the first label of its private DNS name)", 63,
    r"[a-z](?:[a-z0-9-]*[a-z0-9])?", "a DNS label: lower-case letters, digits and hyphens, not ending in a hyphen", "",
    "RFC 1035 2.3.4 (a label is at most 63 octets); GCE instances ValidateRFC1035Name(1, 63); Azure Linux VM host "
    "names 64 (azurerm LinuxComputerNameFull)")

# The AWS PostgreSQL endpoints' load balancers: `${substr(var.name, 0, 26)}-pg-<suffix>` (modules/aws/data_hosts).
AWS_POSTGRES_LB_CUT = 26
AWS_POSTGRES_LB_SUFFIX = {"leader": "rw", "replicas": "ro", "sync": "sy"}
GCP_PEERING_CUT = 63  # substr("${var.name}--${var.peer_name}", 0, 63) and substr("${var.name}-to-${var.peer_name}", 0, 63)


# ---------------------------------------------------------------- names the roots compute in Python

def key_vault_name(cluster: str) -> str:
    """The region's Key Vault (Azure): Key Vault names are global and 3-24 characters."""
    return cluster[:24].rstrip("-")


def aks_key_vault_name(cluster: str) -> str:
    """The vault of AKS's etcd key (the kms module says why it is not the region's vault): 3-24 characters too."""
    return f"{cluster[:20].rstrip('-')}-aks"


def certificate_vault_name(cluster: str) -> str:
    """The vault of the Application Gateway's TLS certificate (the load_balancer module says why it is not the
    region's vault): 3-24 characters too."""
    return f"{cluster[:20].rstrip('-')}-tls"


def log_account_name(data_account: str) -> str:
    """The Azure region's log storage account: the data account's name with `lg` for its `dt` (resolve.bucket_names)."""
    return data_account[:-2] + "lg"


# ---------------------------------------------------------------- what each root creates

@dataclass(frozen=True)
class Derived:
    """One resource's name as a root creates it."""

    limit: Limit
    name: str
    region: Optional[str]  # the region whose root creates it; None: the global root
    scope: str = ""  # within its namespace, names must differ in this scope: "" the whole namespace, else a cloud
    # region (AWS load balancers and the like) or a region's network (GCP peerings) or private zone (Azure links)
    cut: int = 0  # the name keeps the first `cut` characters of what it is made from (0: not cut) ...
    made_from: str = "`<org>-<region>`"  # ... which is this
    peer: str = ""  # a peering's name: the linked region it is toward


def derived_names(plan) -> list[Derived]:
    """Every name the roots create that a cloud could refuse, or that could come out the same for two resources."""
    out: list[Derived] = []
    for r in plan.regions:
        out += _region_names(plan, r)
    out += _global_names(plan)
    return out


def _region_names(plan, r) -> list[Derived]:
    from compiler.ir.edge import target_group_name
    from compiler.ir.machines import host_size
    from compiler.ir.network import linked_regions
    p, ds, n = r.cluster_name, r.settings.datastores, r.name
    out = [Derived(HOST_NAME, h.name, n) for h in r.hosts]
    peers = linked_regions(plan.spec, n)
    if r.cloud == "aws":
        cut = AWS_POSTGRES_LB_CUT if len(p) > AWS_POSTGRES_LB_CUT else 0
        out += [Derived(AWS_TARGET_GROUP, target_group_name(p), n, r.cloud_region),
                Derived(AWS_LOAD_BALANCER, p, n, r.cloud_region)]
        if r.postgres_ha is not None:  # compiler/ir/postgres_ha.py endpoints: the leader's, the replicas' with replicas
            keys = ["leader"] + (["replicas"] if len(r.postgres_ha.members) > 1 else [])
            for key in keys:  # the sync endpoint's name differs from the leader's only in its suffix: no other clash
                lb = f"{p[:AWS_POSTGRES_LB_CUT]}-pg-{AWS_POSTGRES_LB_SUFFIX[key]}"
                out += [Derived(AWS_LOAD_BALANCER, lb, n, r.cloud_region, cut),
                        Derived(AWS_TARGET_GROUP, lb, n, r.cloud_region, cut)]
        if ds.redis.deployment == "managed":
            out.append(Derived(AWS_ELASTICACHE, p, n, r.cloud_region))
        if ds.postgres.deployment == "managed":
            out += [Derived(AWS_RDS, name, n, r.cloud_region) for name in _postgres_servers(p, ds.postgres.read_replicas)]
        if ds.elasticsearch.deployment == "managed":
            from compiler.ir.data_access import OPENSEARCH_DOMAIN_MAX, managed_search_domain
            out.append(Derived(AWS_OPENSEARCH, managed_search_domain(p), n, r.cloud_region,
                               OPENSEARCH_DOMAIN_MAX if len(p) > OPENSEARCH_DOMAIN_MAX else 0))
        out += [Derived(AWS_S3, b, n) for b in (r.backup_bucket, r.data_bucket, f"{p}-access-logs")]
    elif r.cloud == "gcp":
        out += [Derived(GKE_CLUSTER, p, n, r.cloud_region)]
        out += [Derived(GCP_SUBNETWORK, f"{p}-private-{z.name}", n, r.cloud_region) for z in r.zones]
        out += [Derived(GCP_INSTANCE, h.name, n, h.zone) for h in r.hosts]
        out += [Derived(GCP_DISK, f"{h.name}-data", n, h.zone) for h in r.hosts if host_size(r, h.group) is not None]
        out += [Derived(GCS_BUCKET, b, n) for b in (r.backup_bucket, r.data_bucket, f"{p}-access-logs")]
        out.append(Derived(GCP_DNS_ZONE, f"{p}-internal", n))
        for peer in peers:  # modules/gcp/peering, one call per linked region
            other = plan.region(peer).cluster_name
            out += [_peering(GCP_PEERING, p, "--", other, n, peer, scope=n),
                    _peering(GCP_DNS_ZONE, p, "-to-", other, n, peer, scope="")]
    elif r.cloud == "azure":
        vault_cut = 24 if len(p) > 24 else 0
        small_cut = 20 if len(p) > 20 else 0
        source = (plan.spec.organization.name + n).replace("-", "")
        account_cut = 22 if len(source) > 22 else 0
        out += [Derived(AZURE_KEY_VAULT, key_vault_name(p), n, cut=vault_cut),
                Derived(AZURE_KEY_VAULT, aks_key_vault_name(p), n, cut=small_cut),
                Derived(AZURE_KEY_VAULT, certificate_vault_name(p), n, cut=small_cut),
                Derived(AKS_DNS_PREFIX, p, n), Derived(AKS_CLUSTER, p, n),
                Derived(AZURE_RECOVERY_VAULT, p, n), Derived(AZURE_LOG_ANALYTICS, p, n)]
        out += [Derived(AZURE_STORAGE_ACCOUNT, a, n, cut=account_cut, made_from="`<org><region>` without hyphens")
                for a in (r.backup_bucket, r.data_bucket, log_account_name(r.data_bucket))]
        if _has_hourly_backup(r):  # the Azure root's disk backup policy (compiler/targets/terraform/azure.py)
            out.append(Derived(AZURE_BACKUP_VAULT, f"{p}-disks", n))
        if ds.postgres.deployment == "managed":
            out += [Derived(AZURE_POSTGRES, name, n) for name in _postgres_servers(p, ds.postgres.read_replicas)]
        if ds.redis.deployment == "managed":
            out.append(Derived(AZURE_REDIS, f"{p}-redis", n))
        out += [Derived(AZURE_DNS_LINK, f"{p}-to-{plan.region(peer).cluster_name}", n, n, peer=peer) for peer in peers]
    return out


def _global_names(plan) -> list[Derived]:
    from compiler.ir.edge import cdn_provider, global_name
    spec = plan.spec
    g, cdn = global_name(spec), cdn_provider(spec)
    out: list[Derived] = []
    if cdn == "cloudfront":
        out.append(Derived(AWS_S3, f"{g}-cdn-logs", None))
    elif cdn == "front_door":
        out.append(Derived(FRONT_DOOR_ENDPOINT, g, None))
    elif cdn == "cloud_cdn":
        out += [Derived(GCP_GLOBAL_NEG, f"{g}-home-{r.name}", r.name) for r in plan.regions]
        # the public hosts' and origin.'s, which the regions' certificates use too (the root's own function)
        from compiler.targets.terraform.global_root import global_dns_authorizations
        out += [Derived(GCP_DNS_AUTHORIZATION, n, None) for n in global_dns_authorizations(plan).values()]
    if "azure" in spec.clouds and any(r.cloud == "azure" for r in plan.regions):
        # the Terraform state's own account: a region's account of the same name would be the state's
        out.append(Derived(AZURE_STORAGE_ACCOUNT, spec.clouds["azure"].state.bucket, None))
    return out


def _peering(limit: Limit, cluster: str, join: str, other: str, region: str, peer: str, scope: str) -> Derived:
    """A GCP peering's name in `region`'s root toward `peer`: `<cluster><join><other>` cut to 63 (the module's substr)."""
    whole, at = f"{cluster}{join}{other}", GCP_PEERING_CUT
    return Derived(limit, whole[:at], region, scope, at if len(whole) > at else 0, f"`<org>-<region>{join}<org>-<peer>`",
                   peer)


def _postgres_servers(cluster: str, replicas: int) -> list[str]:
    """The managed PostgreSQL servers (modules/<cloud>/managed_postgres): the primary and its read replicas."""
    return [f"{cluster}-postgres"] + [f"{cluster}-postgres-replica-{i + 1}" for i in range(replicas)]


def _has_hourly_backup(region) -> bool:
    """An hourly schedule (its hour field `*` or `*/n`), which the Azure root backs up as disk snapshots."""
    b = region.settings.backups
    return any(getattr(b, k).cron.split()[1].startswith("*") for k in ("hourly", "daily", "weekly", "monthly"))


# ---------------------------------------------------------------- what is wrong with them

def problems(plan) -> Iterator[tuple[Optional[str], str]]:
    """(region, or None for the organization, and a message): the names over their limits (one message a region), each
    name against its cloud's characters, and each collision. The region is where the spec should change: the region
    whose root creates the name, or of two regions whose names collide the later one in spec order."""
    names = derived_names(plan)
    org = plan.spec.organization.name
    long: dict = defaultdict(list)
    for d in names:
        if len(d.name) > d.limit.max_len:
            long[d.region].append(d)
        elif len(d.name) < d.limit.min_len or not re.fullmatch(d.limit.pattern, d.name):
            who = "the region or organization.name" if d.region else "organization.name"
            yield d.region, (f"the {d.limit.what} name {d.name!r} breaks the cloud's rule ({d.limit.shape}, "
                             f"{d.limit.min_len}-{d.limit.max_len} characters); rename {who} so that it follows it")
    for region, over in long.items():
        excess = max(len(d.name) - d.limit.max_len for d in over)
        listed = ", ".join(f"{d.limit.what} {d.name!r} ({len(d.name)} characters, at most {d.limit.max_len})"
                           for d in _longest_of_each(over))
        who = (f"the region ({len(region)} characters) or organization.name ({len(org)})" if region
               else f"organization.name ({len(org)} characters)")
        yield region, (f"names made from the organization and region names are too long: {listed}; rename {who} so "
                       f"that together they are {excess} character{'s' * (excess > 1)} shorter")
    yield from _collisions(names)


def _longest_of_each(over: list[Derived]) -> list[Derived]:
    """The longest name of each kind, in the order of the kinds' first names."""
    longest: dict = {}
    for d in over:
        if d.limit.what not in longest or len(d.name) > len(longest[d.limit.what].name):
            longest[d.limit.what] = d
    return list(longest.values())


def _collisions(names: list[Derived]) -> Iterator[tuple[Optional[str], str]]:
    seen: dict = {}
    for d in names:
        if not d.limit.namespace:
            continue
        first = seen.setdefault((d.limit.namespace, d.scope, d.name), d)
        if first is d:
            continue
        if first.region == d.region:
            head = f"{_root(d)} would create the {d.limit.what} {d.name!r} twice"
            head += f" (toward {first.peer} and {d.peer})" if first.peer and d.peer else ""
        else:
            head = f"{_root(first)} and {_root(d)} would both create the {d.limit.what} {d.name!r}"
        where = f" {d.limit.unique}" + (f" ({_scope_words(d)})" if d.scope else "")
        cut = max(first.cut, d.cut)
        rename = "one of the regions" if (first.region != d.region or d.peer) else "the region"
        if cut:
            made = next(x.made_from for x in (first, d) if x.cut)
            yield d.peer or d.region, (f"{head}: {d.limit.what} names are unique{where}, and this one is the first {cut} "
                                       f"characters of {made}; rename {rename} (or shorten organization.name) so "
                                       f"that they differ within their first {cut} characters")
        elif d.made_from != Derived.made_from:  # made otherwise than of `<org>-<region>` as it is
            yield d.peer or d.region, (f"{head}: {d.limit.what} names are unique{where}, and this one is made of "
                                       f"{d.made_from}; rename {rename}")
        else:
            yield d.peer or d.region, f"{head}: {d.limit.what} names are unique{where}; rename {rename}"


def _root(d: Derived) -> str:
    return f"region {d.region}" if d.region else "the global root"


def _scope_words(d: Derived) -> str:
    if d.limit is GCP_PEERING:
        return f"region {d.scope}'s"
    if d.limit is AZURE_DNS_LINK:
        return f"region {d.scope}'s internal zone"
    return d.scope
