"""Terraform target: the `## Terraform` section of docs/regions/<region>.md (what the root creates)."""

from __future__ import annotations

import re

from compiler.docs import markdown_cell, markdown_table
from compiler.ir.names import DATA_HOST_LOGIN_USER
from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.backups import backup_noncurrent_expire_days
from compiler.ir.data_access import redis_users
from compiler.ir.edge import kong_proxy_tls
from compiler.ir.identity import EBS_CSI_DRIVER, aws_role_name, vault_auth_mount
from compiler.ir.wal_archive import replica_container
from compiler.targets.terraform import azure as _terraform_azure
from compiler.targets.terraform import gcp as _terraform_gcp
from compiler.targets.terraform import identity as _terraform_identity
from compiler.targets.terraform import quotas
from compiler.targets.terraform import values as V
from compiler.ir.edge import (NLB_HEALTH_CHECKS_PEER, ROUTE53_HEALTH_CHECKS_PEER, cdn_provider, dns_cloud, dns_provider,
                              origin_listener_min_tls, origin_verify, validated_by_global)
from compiler.ir.home_routing import edge_home_provider, edge_routes_homes, home_origin_id
from compiler.targets.terraform.common import MODULES, PROVIDERS, prefix

DNS_NAMES = {"route53": "Route 53", "azure_dns": "Azure DNS", "cloud_dns": "Cloud DNS"}
CDN_NAMES = {"cloudfront": "CloudFront", "front_door": "Front Door", "cloud_cdn": "Cloud CDN"}
HEALTH_CHECKERS = {ROUTE53_HEALTH_CHECKS_PEER: "Route 53's health checkers",
                   NLB_HEALTH_CHECKS_PEER: "the internal gateway's NLB health checks"}

SERVICES = {
    "aws": {"network": "VPC", "kubernetes": "EKS", "lb": "Application Load Balancer (ACM certificate)",
            "waf": "AWS WAFv2 web ACL (REGIONAL)", "kms": "KMS key", "backup": "AWS Backup vault and plan",
            "budget": "AWS Budgets budget + SNS topic", "dns": "Route 53 private hosted zone", "storage": "S3 buckets"},
    "gcp": {"network": "VPC network", "kubernetes": "GKE (regional)", "lb": "global external Application Load Balancer "
            "(Certificate Manager certificate)", "waf": "Cloud Armor security policy", "kms": "Cloud KMS key ring and key",
            "backup": "Backup and DR vault and plan, hourly disk snapshot schedule", "budget": "Cloud Billing budget",
            "dns": "Cloud DNS private zone", "storage": "Cloud Storage buckets"},
    "azure": {"network": "VNet", "kubernetes": "AKS", "lb": "Application Gateway v2 (WAF_v2)",
              "waf": "Application Gateway WAF policy", "kms": "Key Vault (Premium) key and disk encryption set",
              "backup": "Recovery Services vault (VM policy) and Backup vault (hourly disk backups)",
              "budget": "Consumption budget on the resource group", "dns": "Azure private DNS zone",
              "storage": "storage accounts"},
}


MANAGED = {
    "aws": {"postgres": "RDS for PostgreSQL (`postgres.`)", "redis": "ElastiCache for Redis, cluster mode (`redis.`)",
            "search": "Amazon OpenSearch Service (`elasticsearch.`)"},
    "gcp": {"postgres": "Cloud SQL for PostgreSQL (`postgres.`)", "redis": "Memorystore for Redis Cluster (`redis.`)"},
    "azure": {"postgres": "Azure Database for PostgreSQL flexible server (`postgres.`)",
              "redis": "Azure Cache for Redis Premium (`redis.`)"},
}


def _copy_note(region: RegionPlan, partner: RegionPlan, name: str, b) -> str:
    """Where a schedule's copies go, as far as this cloud's backup service can send them."""
    if not b.copy_to_dr_partner or partner.cloud != region.cloud:
        return ""
    if region.cloud == "aws":
        return f", copied to {partner.name}'s vault"
    if region.cloud == "gcp" and name == "hourly":
        return f", snapshots stored in {partner.cloud_region}"
    return ""


# What an AWS region root must have before another root can read it, in two rounds: its key and alias (reads no
# other region), then its VPC and its buckets with versioning on (S3 refuses replication into a bucket without it;
# the versioning reads whether the root replicates, which reads the DR partner's key alias: made in round one).
AWS_FIRST_ROUND = "-target=module.kms"
AWS_SECOND_ROUND = "-target=module.network -target=module.object_storage.aws_s3_bucket_versioning.this"
# An Azure region root's first round: the certificate vault's role assignments for the identity applying and the data
# hosts (the Application Gateway trusts the internal CA their first Ansible run makes; the cluster names the gateway).
AZURE_FIRST_ROUND = ("-target=module.load_balancer.azurerm_role_assignment.terraform_certificates "
                     "-target=module.load_balancer.azurerm_role_assignment.terraform_trusted_root "
                     "-target=module.data_hosts")


def _notes(plan: PlatformPlan, region: RegionPlan, peers: list[dict]) -> list[str]:
    """`peers`: V.peerings(plan, region), which section() has at hand (one pass over the linked regions, not two)."""
    partner = plan.region(region.dr_partner)
    notes = []
    if region.cloud == "aws":
        notes.append("A fresh account: create Auto Scaling's service-linked role before the first apply "
                     "(`aws iam create-service-linked-role --aws-service-name autoscaling.amazonaws.com`; an account "
                     "that ever ran an Auto Scaling group has it). The region's KMS key policy names it, since Auto "
                     "Scaling creates the node groups' encrypted volumes, and KMS refuses a key policy naming a "
                     "principal that does not exist (MalformedPolicyDocumentException), which would stop the apply "
                     "at its first resource.")
    shared = validated_by_global(plan, region)
    if shared:  # AWS and GCP regions behind their own cloud's edge (compiler/ir/edge.py)
        names = ", ".join(f"`{h}`" for h in shared)
        what = {"aws": "ACM validation records (one per name for the whole account, whichever certificate or region "
                       "asks)",
                "gcp": "Certificate Manager DNS authorisations and their `_acme-challenge` records (one per name and "
                       "project)"}[region.cloud]
        stop = (" This root checks that they exist before it waits for the certificate (a precondition names the "
                "missing ones)." if region.cloud == "aws" else "")
        notes.append(f"The certificate's names that every region's certificate covers ({names}) are validated by "
                     f"{what} that the global root holds: this root creates only those of its own names and deletes "
                     f"none of the shared ones when it is destroyed, so decommissioning the region leaves the other "
                     f"regions' renewals intact. Apply the global root first.{stop}")
    check = origin_verify(plan, region)
    if check and check.front_door_profile:
        notes.append(f"Only this edge's Front Door reaches the gateway: every Front Door customer connects from the "
                     f"AzureFrontDoor.Backend addresses the gateway admits, so its WAF blocks requests whose "
                     f"`{check.header}` is not the id of the profile `{check.front_door_profile}` (read from it at "
                     f"apply time: apply the global root first), except `{check.exempt_path}`.")
    elif check:
        notes.append(f"The origin secret: CloudFront sends `{check.header}` on every request to this region, and the "
                     f"region's WAF blocks requests without it (except `{check.exempt_path}`, which the health checkers "
                     "probe), so no other CloudFront distribution reaches the load balancer around the edge. The global "
                     f"root makes the secret (`{check.secret_name}` in Secrets Manager, {check.secret_region}), a JSON "
                     "object `{\"current\", \"next\"}`: CloudFront sends `current`, the WAF accepts either. Apply "
                     "the global root first. To rotate it without refusing a request: (1) put a new value as `next` "
                     "(`aws secretsmanager get-random-password --exclude-punctuation --password-length 64`) and apply "
                     "every region root; (2) set `current` to it too and apply the global root, and apply no region "
                     "root until CloudFront has deployed (a region applied earlier stops accepting the value CloudFront "
                     "still sends); (3) apply every region root again: until then the old value is still accepted. "
                     "Never replace the global root's `aws_secretsmanager_secret_version.origin_verify`: a new version "
                     "draws a new value, which CloudFront would send before any region accepts it.")
    if region.cloud == "aws" and (peers or region.replicates_to_dr_partner):
        # the roots read each other: the requester the peers' VPCs, the accepter the requested connection, each
        # replicating root its partner's key alias and versioned buckets. No full apply can go first.
        order = [r.name for r in plan.regions if r.cloud == "aws"]
        notes.append("The first apply of the AWS regions goes in rounds, since their roots read each other (the "
                     "peer regions' VPCs and requested peerings, the DR partner's key alias and versioned buckets): "
                     f"`terraform -chdir=generated/terraform/regions/<region> apply {AWS_FIRST_ROUND}` in every AWS "
                     "region root (any order: the key reads no other region), then "
                     f"`apply {AWS_SECOND_ROUND}` in every one (any order: they read only the partner's key alias), "
                     f"then the full apply of each in spec order ({', '.join(order)}): the first of a pair in spec "
                     "order requests the peering, the other finds it by the two VPCs. Later applies need no order.")
    bastion = region.hosts_in("bastion")
    if region.cloud == "aws" and bastion:
        notes.append(f"The cluster's API endpoint is private: operators reach it through the bastion "
                     f"(`ssh -D 1080 {DATA_HOST_LOGIN_USER[region.cloud]}@{bastion[0].fqdn}`, and `proxy-url: "
                     "socks5://localhost:1080` in the kubeconfig's cluster entry, which `aws eks update-kubeconfig "
                     f"--name {region.cluster_name} --region {region.cloud_region} --alias {region.cluster_name}` "
                     "writes under the context name the deploy steps use; the First bring-up section gives the "
                     "commands), whose subnet the cluster security group admits. Only the identity that applied this root is a cluster administrator (EKS "
                     "access entries): give the other operators and CI theirs with `aws eks create-access-entry` and "
                     "`aws eks associate-access-policy` (AmazonEKSClusterAdminPolicy, or a narrower policy).")
    group = region.settings.kubernetes.gke_security_group
    if region.cloud == "gcp" and group:
        notes.append(f"Before the first apply: the Google Group `{group}` (settings.kubernetes.gke_security_group, "
                     "GKE's Google Groups for RBAC) must exist in the Google Workspace or Cloud Identity account of "
                     f"`{group.partition('@')[2]}`. GKE looks it up when it creates the cluster, which fails with "
                     "`Error 404: Not found: GAIA email lookup` without it; the groups that RBAC bindings name are "
                     "its members. Leave the field out for a cluster without Google Groups for RBAC.")
    if region.cloud == "gcp":
        notes.append("The google provider names the project as its quota project (billing_project, "
                     "user_project_override: the Billing Budgets API refuses user credentials without one), so the "
                     "identity that applies this root needs serviceusage.services.use on it (Service Usage "
                     "Consumer; an Owner or Editor has it).")
    if region.cloud == "azure":
        notes.append("AKS runs with Entra ID and Azure RBAC, local accounts off: only the identity that first applied "
                     "this root holds a Kubernetes role (Azure Kubernetes Service RBAC Cluster Admin on the cluster). Give "
                     "the other operators and CI theirs: `az role assignment create --role \"Azure Kubernetes Service "
                     "RBAC Cluster Admin\" --assignee <their group's object id> --scope $(az aks show "
                     f"--resource-group {region.cluster_name} --name {region.cluster_name} --query id -o tsv)` (or the "
                     "RBAC Writer or Reader role); each then runs `az aks get-credentials --resource-group "
                     f"{region.cluster_name} --name {region.cluster_name} --context {region.cluster_name}` (the context "
                     "name the deploy steps use) and `kubelogin convert-kubeconfig -l azurecli`.")
    if region.cloud in ("gcp", "azure") and peers:
        notes.append(f"Each linked region creates its own half of the peering with this one, naming this region's "
                     f"network, and this root names theirs ({', '.join(p['region'] for p in peers)}): apply "
                     "`-target=module.network` in every linked region first (or apply the roots twice); a peering is "
                     "active once both halves exist.")
    if region.cloud == "aws" and region.replicates_to_dr_partner:
        notes.append(f"Bucket replication to {partner.name} uses S3 Replication Time Control (99.99 % of objects within "
                     f"15 minutes, replication metrics in CloudWatch) and grants the replication role {partner.name}'s "
                     "key by its key ARN, read from the key's alias in that region. The backups reach "
                     "the partner through the replicated backup bucket; the data hosts' role may write only this "
                     "region's bucket.")
    if region.cloud == "gcp" and partner.cloud == region.cloud:
        notes.append("Bucket replication to the DR partner is event-driven Storage Transfer Service, which states no "
                     "replication time; Cloud Storage's turbo replication (15-minute objective) exists only inside "
                     "one dual-region bucket, which two regional buckets in the partner regions are not.")
    if region.cloud == "azure" and partner.cloud == region.cloud:
        notes.append("Object replication to the DR partner's accounts is asynchronous with no stated replication "
                     "time; each account is also geo-zone-redundant (GZRS) to the region's Azure pair. The copies land "
                     f"in a container of their own in each account there (`{replica_container(region.name)}`): Azure keeps "
                     "a replication's destination container read-only, so it is never one a region writes to.")
    if region.cloud in ("gcp", "azure") and region.replicates_to_dr_partner:
        what = "buckets" if region.cloud == "gcp" else "storage accounts"
        notes.append(f"Replication writes into {partner.name}'s {what}, created by that root, and {partner.name} "
                     f"replicates into this one's: on the first apply of the pair, apply "
                     f"`-target=module.object_storage` in both roots first.")
    users = redis_users(region.data_access)
    if V.managed(region)["redis"] and users:
        how = {"aws": "an ElastiCache RBAC user with IAM authentication each (its IAM role may elasticache:Connect "
                      "as exactly that user; the cache's `default` user is off)",
               "gcp": "its Google service account, granted roles/redis.dbConnectionUser conditioned on this "
                      "cluster; Memorystore IAM authentication has no key ACL, so the key prefix is a convention "
                      "there; the pods verify the cluster's server CA, which Terraform writes to Secret Manager",
               "azure": "a data access policy each (Redis ACL) assigned to its user-assigned identity (Microsoft "
                        "Entra ID; access keys are off); Azure Cache runs Redis 6.0, which has no channel ACL"}
        notes.append(f"Managed Redis lets in each service that uses it as itself, never with a password: "
                     f"{how[region.cloud]}. Users: "
                     + ", ".join(f"`{u.name}` ({u.service}, keys `{u.key_pattern}`)" for u in users) + ".")
    if partner.cloud != region.cloud:
        notes.append(f"The DR partner {partner.name} runs on {partner.cloud}: Terraform sets up no native bucket "
                     "replication or backup copies across clouds; the partner holds the PostgreSQL standby "
                     "(Ansible) and the WAL archive must be copied by a transfer job outside this root.")
    if region.cloud == "aws":
        notes.append("Set `admin_ssh_public_key` when applying (`TF_VAR_admin_ssh_public_key`, which Ansible's common "
                     "role reads too): the data hosts' EC2 key pair, the key Ansible logs in with (as `admin`, through "
                     "the bastion). EC2 installs a key pair at launch only: a rotated key reaches the running hosts "
                     "through the common role (generated/ansible/README.md).")
        notes.append("The budget filters on the `region` tag, which AWS Budgets sees only once it is an active cost "
                     "allocation tag, set in the organization's management account (`aws ce "
                     "update-cost-allocation-tags-status --cost-allocation-tags-status TagKey=region,Status=Active`, "
                     "after the first tagged resource exists): until then it reads $0 and never alerts.")
    admin = region.settings.network.admin_cidrs
    if admin:
        resolver = {"aws": "a Route 53 Resolver inbound endpoint in the VPC",
                    "gcp": "a Cloud DNS inbound server policy on the network",
                    "azure": "an inbound endpoint of a DNS Private Resolver in the VNet"}[region.cloud]
        notes.append(f"The administrators' range ({', '.join(admin)}, settings.network.admin_cidrs) reaches the bastion "
                     "and, through it, the data hosts and a private cluster API; this root opens the firewalls to it "
                     "but makes no connection from it: attach the admin VPN to the network (with a "
                     "route back to the range) before the first Ansible run or `kubectl`. Ansible and the deploy steps "
                     f"name hosts in the private zone `{region.internal_domain}`, which resolves only inside the "
                     f"network: forward it from the admin network's DNS to {resolver}, which this root does not make.")
    if region.cloud == "gcp":
        notes.append(f"The load balancer's backend is the zonal NEGs named `{prefix(plan, region)}-kong`, which GKE "
                     "creates from the Kong proxy Service's `cloud.google.com/neg` annotation once the helmfile has "
                     "installed Kong (helm target): the first bring-up applies everything but the load balancer first "
                     "(the cluster, and the data hosts and bastion that Ansible, which the helmfile waits for, needs), "
                     "and the full apply last; the First bring-up section names the targets.")
        project = plan.spec.clouds["gcp"].account
        apis = " ".join(f"{a}.googleapis.com" for a in _terraform_gcp.required_apis(region))
        notes.append(f"Before the first apply in project `{project}` (once per project): enable the APIs this root "
                     f"uses (`gcloud services enable {apis} --project={project}`), and create the service agents "
                     "the region key's grants name, which Google creates only on first use "
                     f"(`gcloud storage service-agent --project={project}`; `gcloud beta services identity create "
                     f"--service=backupdr.googleapis.com --project={project}`; Compute Engine's and GKE's exist once "
                     "their APIs are enabled). Terraform itself enables none: a root that did would also disable "
                     "them for the others when it is destroyed, or depend on every resource waiting for them.")
        owners = sorted({_terraform_gcp.dns_authorization_owner(plan, host).name
                         for host, a in _terraform_gcp.dns_authorizations(plan, region).items()
                         if not a["create"] and host not in shared})
        if owners:
            notes.append(f"The names this region's certificate shares with other GCP regions are authorised once per "
                         f"project, by {', '.join(owners)} (one `_acme-challenge` record per name in the public zone): "
                         f"apply {', '.join(owners)} first, or at least `-target=module.load_balancer` there.")
        lent = [h for h, a in _terraform_gcp.dns_authorizations(plan, region).items() if a["create"] and any(
            o.name != region.name and o.cloud == "gcp" and h in V.lb_hostnames(plan, o) for o in plan.regions)]
        if lent:
            notes.append(f"This root authorises names the other GCP regions' certificates use too ("
                         + ", ".join(f"`{h}`" for h in lent) + f"; the global root, on {CDN_NAMES[cdn_provider(plan.spec)]}, "
                         "has no Google provider): destroying it (decommissioning the region) deletes those "
                         "authorisations and their records, and the others' certificates stop renewing. Right after "
                         "destroying it, apply the other GCP region roots as generated from the spec without it: the "
                         "first of them in the spec's order then authorises those names, the others use its.")
        name = prefix(plan, region)
        notes.append(f"The load balancer serves its certificate through the primary entry of certificate map `{name}`. "
                     "A change of the certificate's names or DNS authorisations makes a new certificate (its name "
                     f"`{name}-<hash>` follows both) beside the old one, and the entry switches to it only once "
                     "Certificate Manager has issued it: that apply, like the region's first, stops at the entry's "
                     "precondition while the certificate is PROVISIONING, the load balancer still serving the old one. "
                     f"Apply again once `gcloud certificate-manager certificates describe {name}-<hash> "
                     f"--project={project}` says ACTIVE: that apply switches the entry and deletes the old certificate.")
        former = [_terraform_gcp.dns_authorization_name(region.cluster_name, h) for h in shared
                  if _terraform_gcp.dns_authorization_owner(plan, h).name == region.name]
        if former:
            notes.append("Upgrading from a version in which this root authorised the shared names for every GCP region: "
                         "apply the global root first (its records of those names replace this root's), then this root "
                         "and the other GCP region roots (each replaces its certificate as above). This root forgets "
                         "its authorisations of those names without deleting them (another region's previous "
                         "certificate uses them until that region is applied); once every GCP region root is applied, "
                         "delete them: " + "; ".join(f"`gcloud certificate-manager dns-authorizations delete {a} "
                                                     f"--location=global --project={project} --quiet`" for a in former)
                         + ".")
        notes.append("Backup and DR runs a rule at most every 4 hours: the hourly schedule is a snapshot schedule on "
                     "the data disks (start on the hour). Backup and DR vaults are regional, so the DR copy of the "
                     "databases is the replicated backup bucket.")
    if region.cloud == "azure":
        vault = _terraform_azure.certificate_vault_name(plan, region)
        root = kong_proxy_tls(plan, region).trusted_root
        notes.append(f"The Application Gateway reads its TLS certificate (for the region's hostnames) as certificate "
                     f"`{prefix(plan, region)}-tls` of Key Vault `{vault}`, and the trusted root certificate it "
                     f"verifies Kong's certificate against (the region's internal CA) as secret `{root}` of the same "
                     f"vault, which admits only the gateway's subnet and `management_cidrs`; the gateway cannot be "
                     f"created before both are there, and the internal CA exists once the region's Ansible has run. "
                     f"On the first apply: `terraform apply {AZURE_FIRST_ROUND}` (the vault, Key Vault Certificates "
                     f"Officer and Secrets Officer on it for the identity applying, a role assignment can take a few minutes to act; the bastion and the "
                     f"data hosts); then, from an address in `management_cidrs`, `az keyvault certificate import "
                     f"--vault-name {vault} --name {prefix(plan, region)}-tls --file <certificate>.pfx`; then, in "
                     f"`generated/ansible/`, `ansible-playbook -i inventories/{region.name} pgbouncer.yml` logged in "
                     f"with `az login` as the identity applying Terraform, from an address in `management_cidrs`"
                     + (" (and, for a Vault store, a token with the publisher policy that `vault/configure.sh "
                        "--publisher-only` writes before the cluster exists)"
                        if _terraform_identity.vault_files(plan, region) and _terraform_identity.publisher_paths(region)
                        else "")
                     + f": the "
                     f"play creates the internal CA, writes it to the vault as `{root}` and issues Kong's certificate "
                     f"(`site.yml` follows the whole apply, as the Ansible section says); then apply the whole root. "
                     f"The gateway follows the TLS certificate's renewals.")
        notes.append("Azure copies geo-redundant backup vaults to the region's Azure pair, not to the DR partner; "
                     "the partner receives the object-replicated backup account instead.")
        notes.append("Set `admin_ssh_public_key` (`TF_VAR_admin_ssh_public_key`, which Ansible's common role reads "
                     "too; and `management_cidrs` for the Terraform runners) when applying. Azure takes a VM's SSH key "
                     "at creation only, so the VMs ignore a changed key (`ignore_changes`) rather than be replaced: a "
                     "rotated key reaches them through the common role (generated/ansible/README.md).")
        subscription = plan.spec.clouds["azure"].account
        notes.append(f"Before the first apply in subscription `{subscription}` (once): the data hosts and every AKS "
                     "node pool encrypt at host, which Azure refuses until the subscription's feature is registered "
                     f"(`az feature register --namespace Microsoft.Compute --name EncryptionAtHost --subscription "
                     f"{subscription}`, then `az provider register --namespace Microsoft.Compute`).")
    if _terraform_identity.vault_files(plan, region):
        root = f"generated/terraform/regions/{region.name}"
        notes.append(f"`vault:` references: the External Secrets Operator logs in to Vault with its JWT auth method "
                     f"at `{vault_auth_mount(region.cluster_name)}`, which trusts the cluster's OIDC issuer (Vault "
                     "never calls the cluster's API server). After the apply, a Vault operator runs "
                     f"`KUBERNETES_OIDC_ISSUER_URL=$(terraform -chdir={root} output -raw "
                     f"{_terraform_identity.ISSUER_OUTPUT}) sh {root}/vault/configure.sh`.")
    dns = dns_provider(plan.spec)
    if plan.spec.edge.dns.routing != "weighted" and dns == "route53":
        notes.append(f"The spec asks for {plan.spec.edge.dns.routing} DNS routing; Route 53 can only apply it to AWS "
                     "regions, so the global root keeps weighted records (weights = traffic shares).")
    if region.cloud != dns_cloud(plan.spec):
        notes.append(f"The public DNS zone is {DNS_NAMES[dns]} (the global root): this root also configures the "
                     f"{PROVIDERS[dns_cloud(plan.spec)][0]} provider (account "
                     f"`{plan.spec.clouds[dns_cloud(plan.spec)].account}`) to write the region's name and certificate "
                     "records there.")
    if dns == "cloud_dns":
        notes.append(f"The global root reserves the load balancer's address `{prefix(plan, region)}` (the weighted, "
                     "health-checked origin record lists it): apply the global root first.")
    return notes


def listener_tls(plan: PlatformPlan, region: RegionPlan) -> str:
    """The TLS versions the origin listener accepts and why; on AWS, whose security groups name its clients, who it
    admits (elsewhere the gateway's NSG or Google's front end does not narrow the sources this far)."""
    cdn = CDN_NAMES[cdn_provider(plan.spec)]
    arriving = region.connections_to("load-balancer")
    low, floor = origin_listener_min_tls(region), next(c.tls for c in arriving if c.source.kind == "edge")
    slow = [HEALTH_CHECKERS[c.source.name] for c in arriving if c.source.name in HEALTH_CHECKERS]
    text = "TLS 1.3 only" if low == "1.3" else f"TLS {low} and 1.3"
    if slow and low != floor:
        text += f" ({_listing(slow)} cannot speak TLS 1.3; {cdn} still connects with TLS {floor})"
    if region.cloud == "aws":
        clients = [f"{cdn}'s", *(["Route 53's health checkers'"] * any(c.source.name == ROUTE53_HEALTH_CHECKS_PEER
                                                                       for c in arriving)),
                   *(["the internal gateway's"] * any(c.source.kind == "internal-lb" for c in arriving))]
        text += f"; it admits only {_listing(clients)} addresses"
    return text


def _listing(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _addons(region: RegionPlan) -> str:
    """AWS: the EKS add-ons the module installs (EKS ships no metrics API nor EBS provisioner of its own)."""
    if region.cloud != "aws":
        return ""
    return ("; add-ons: vpc-cni (network policy agent on), coredns, kube-proxy, eks-pod-identity-agent, metrics-server "
            f"(the HPAs' metrics API), aws-ebs-csi-driver (IRSA role `{aws_role_name(region.cluster_name, EBS_CSI_DRIVER)}`, "
            "for the kubernetes target's encrypted default StorageClass)")


def _pool_timeouts(region: RegionPlan) -> str:
    return ", ".join(f"{n} {V.upgrade_minutes(region.cloud, p.max_nodes)} min"
                     for n, p in sorted(region.settings.kubernetes.node_pools.items()))


def _node_pool_changes(plan: PlatformPlan, region: RegionPlan) -> str:
    """What an apply does, step by step, when the spec's Kubernetes version or a node pool's machine changes."""
    cloud, name = region.cloud, prefix(plan, region)
    version = region.settings.kubernetes.version
    waits = (f"Terraform waits for each pool as long as its batches take at its maximum size, "
             f"{V.UPGRADE_BATCH_MINUTES} minutes a batch, at least {V.UPGRADE_MIN_MINUTES} minutes ({_pool_timeouts(region)}); "
             "if an apply still times out, the cloud carries on: wait for the operation to finish and apply again.")
    out = ["### Kubernetes version bumps and node-pool changes\n",
           f"What an apply does, in order, when `settings.kubernetes.version` ({version}, one minor version a step) "
           "or a node pool changes. " + waits + "\n"]
    if cloud == "aws":
        out += [
            "Version bump:\n",
            f"1. The control plane of `{name}` upgrades (`aws_eks_cluster.version`).",
            "2. Each node group moves to the control plane's version (`version`): EKS launches nodes of the new "
            f"version, then cordons and drains up to {V.UPGRADE_PERCENT} % of the group at a time, honouring "
            "PodDisruptionBudgets (a pod that cannot be evicted within 15 minutes fails the update, "
            "PodEvictionFailure), and terminates the old nodes. EKS refuses the next control-plane bump until every "
            "node group runs the control plane's version.",
            "3. The add-ons (vpc-cni, coredns, kube-proxy, eks-pod-identity-agent, metrics-server, aws-ebs-csi-driver) "
            "move to the newest version EKS offers for the new Kubernetes version (`data.aws_eks_addon_version`, "
            "`most_recent`), overwriting any change made to their objects by hand.\n",
            "Node-type change (`instance_types.aws`, `spot`, `gpus`: the provider replaces a node group for these):\n",
            "1. Terraform creates the replacement group, named `<pool>-<timestamp>` (`node_group_name_prefix`, "
            "`create_before_destroy`, as terraform-aws-modules/eks does), with `min_nodes` nodes, and waits for them.",
            "2. It deletes the old group: EKS scales it to zero, draining each node for up to 5 minutes before "
            "terminating it (PodDisruptionBudgets do not hold it longer), and cluster-autoscaler grows the new group "
            "for the pods left pending. Make the change at a quiet time, or raise the pool's `min_nodes` first.",
            "3. The first apply with this module replaces every node group once in the same way, since the groups "
            "moved from a fixed name to a name prefix.\n",
            "Raising a pool's `min_nodes` above the group's current size fails (`Minimum capacity N can't be greater "
            "than desired size M`): Terraform leaves the desired size to cluster-autoscaler (`ignore_changes`). Raise "
            "the desired size first, outside Terraform, then apply (the workaround terraform-aws-modules/eks points "
            f"to): `aws eks update-nodegroup-config --cluster-name {name} --nodegroup-name \"$(aws eks list-nodegroups "
            f"--cluster-name {name} --query \"nodegroups[?starts_with(@, '<pool>-')] | [0]\" --output text)\" "
            "--scaling-config minSize=<min_nodes>,maxSize=<max_nodes>,desiredSize=<min_nodes>`.\n",
        ]
    elif cloud == "azure":
        out += [
            "Version bump:\n",
            f"1. The control plane of `{name}` upgrades (`kubernetes_version`).",
            "2. The system pool upgrades (`default_node_pool.orchestrator_version`, in the same resource, after the "
            "control plane), then each user pool (`orchestrator_version`): a surge upgrade adding "
            f"{V.UPGRADE_PERCENT} % of the pool (`max_surge`) at a time, each old node cordoned and drained honouring "
            "PodDisruptionBudgets for up to AKS's drain timeout (30 minutes unless `drain_timeout_in_minutes` is set), "
            "then reimaged. `automatic_upgrade_channel = \"patch\"` keeps both on the minor version's newest patch.\n",
            "Node-type change (`instance_types.azure`, `disk_gib`):\n",
            "1. The provider cycles the pool: it creates a temporary pool (`temporary_name_for_rotation`), deletes the "
            "pool, recreates it with the new size and deletes the temporary one. It does so without cordon and "
            "drain: the pool's pods are killed when its nodes go, and PodDisruptionBudgets do not stop it.",
            "\nTo move a pool without that, add a pool of the new size to the spec, apply, let the workloads move "
            "(cordon and drain the old nodes), then remove the old pool and apply again. `spot` replaces the pool "
            "outright (`priority` is ForceNew).\n",
        ]
    else:
        out += [
            "Version bump:\n",
            f"1. The control plane of `{name}` upgrades (`min_master_version`; the release channel upgrades it too).",
            "2. GKE upgrades the node pools to it afterwards, itself and on its own schedule (`auto_upgrade`; the "
            "pools set no `version`, which would fight it), one pool at a time and one node at a time "
            "(`max_surge` 1, `max_unavailable` 0), draining each node honouring PodDisruptionBudgets.\n",
            "Node-type change: `instance_types.gcp` or `disk_gib` is applied in place by the same surge upgrade, one "
            "node at a time (the provider has updated `machine_type`, `disk_size_gb` and `disk_type` in place since "
            "5.10).\n",
            "Replacing changes: `gpus` (the node config's `guest_accelerator` and its driver installation), `spot`, the service "
            "account and most other node settings replace the pool (ForceNew): Terraform deletes it before it "
            "creates the new one under the same name, so the pool's pods have nowhere to go meanwhile. To change "
            "them, add a pool with the new settings to the spec, apply, let the workloads move, then remove the old "
            "pool and apply again.\n",
        ]
    return "\n".join(out)


# Why a backup schedule's cold_storage_after_days does not reach the cloud's backups of the data hosts
NO_COLD_TIER = {"aws": "AWS Backup moves no EC2 recovery point to cold storage",
                "gcp": "the root sets no tiering on the Backup and DR plan",
                "azure": "the root sets no tiering on the Backup vault's policy"}


# The data hosts module's resources, by cloud: each host's VM and its data volume (templates/terraform/modules/*/data_hosts).
HOST_VM = {"aws": "aws_instance.host", "gcp": "google_compute_instance.host", "azure": "azurerm_linux_virtual_machine.host"}
HOST_VOLUME = {"aws": "aws_ebs_volume.data", "gcp": "google_compute_disk.data", "azure": "azurerm_managed_disk.data"}
NETWORK = {"aws": "the VPC and its subnets", "gcp": "the VPC network and its private subnetworks",
           "azure": "the VNet and its private subnets"}
DELETE_VOLUME = {"aws": "`aws ec2 delete-volume`", "gcp": "`gcloud compute disks delete`", "azure": "`az disk delete`"}


def _protected(region: RegionPlan, hosts: dict) -> str:
    """What `prevent_destroy` guards in this root, and the deliberate ways past it (checked with Terraform 1.15:
    an instance whose for_each key is gone is refused too, a `removed` block takes no instance key)."""
    cloud, root = region.cloud, f"generated/terraform/regions/{region.name}"
    disks = [n for n, h in hosts.items() if h["data_disk_gib"]]
    text = [f"### What an apply never destroys\n\n{NETWORK[cloud][0].upper()}{NETWORK[cloud][1:]}"
            + (f" and the data hosts' volumes (`{HOST_VOLUME[cloud]}`)" if disks else "")
            + " carry `lifecycle { prevent_destroy = true }`: a plan that would destroy or replace one stops with "
            "\"Instance cannot be destroyed\" before anything changes. That catches a changed region CIDR or zone "
            "count" + (", a smaller `data_disk_gib` (GCP would replace a shrunk disk, AWS and Azure refuse the "
            "shrink), a host moved to another zone, and a host taken out of the spec" if disks else "") + ".\n"]
    if disks:
        example = disks[-1]
        text.append(f"- Removing a host deliberately (fewer replicas or nodes): take it out of its cluster first, "
                    f"then forget its volume, e.g. `terraform -chdir={root} state rm "
                    f"'module.data_hosts.{HOST_VOLUME[cloud]}[\"{example}\"]'`, apply (the VM and the attachment "
                    f"go), and delete the volume with {DELETE_VOLUME[cloud]} once its data is no longer wanted.")
        text.append(f"- Rebuilding a host (`terraform -chdir={root} apply -replace='module.data_hosts."
                    f"{HOST_VM[cloud]}[\"{example}\"]'`) keeps its data volume, which the new VM gets attached; "
                    "to start it from an empty volume, forget the old one first as above."
                    + (" GCP VMs also carry `deletion_protection`: clear it on that VM first (`gcloud compute "
                       "instances update <host> --zone=<zone> --no-deletion-protection`), else both stop at it."
                       if cloud == "gcp" else ""))
    text.append(f"- Decommissioning the region deliberately (`terraform destroy`): in a working copy used only for "
                f"that, delete the guards (`sed -i '/prevent_destroy = true/d' generated/terraform/modules/{cloud}/"
                f"*/main.tf`), run `terraform -chdir={root} destroy` from it, and discard the copy. Other roots "
                "use the same modules, so never commit or apply that edit anywhere else.")
    return "\n".join(text) + "\n"


RESIZE_HOW = {"aws": "AWS stops and starts each instance", "gcp": "GCP stops and starts each VM "
              "(`allow_stopping_for_update`)", "azure": "Azure resizes each VM in place, restarting it"}


def _resizing(region: RegionPlan, hosts: dict) -> str:
    """A changed machine type, one host at a time (review r2-day2, finding 4): the exact -target address of each host in
    a safe order, since a whole-root apply changes every member of every group at once (Terraform runs 10 in parallel)."""
    cloud, root = region.cloud, f"generated/terraform/regions/{region.name}"
    ha = region.postgres_ha
    address = lambda n: f"`module.data_hosts.{HOST_VM[cloud]}[\"{n}\"]`"  # noqa: E731
    listing = lambda names: ", ".join(address(n) for n in names)  # noqa: E731
    steps = []
    if ha and ha.members:
        patroni = f"patronictl -c /etc/patroni/{region.settings.datastores.postgres.version}-main.yml"
        leader, *replicas = ha.members
        if replicas:
            steps.append(f"The PostgreSQL replicas, one at a time, each `streaming` again with no lag in `{patroni} "
                         f"list` before the next: {listing(replicas)}. (The leader is {leader} unless a failover moved "
                         "it: resize the members other than the current leader here.)")
            steps.append(f"A switchover to a resized replica: `{patroni} switchover {ha.scope} --candidate "
                         f"{replicas[0]} --force`.")
        steps.append(f"The former leader last: {address(leader)}.")
        if ha.etcd_hosts:
            steps.append(f"{', '.join(ha.etcd_hosts)} also run etcd: resized one at a time, the other "
                         f"{len(ha.etcd_hosts) - 1} keep its quorum; check `etcdctl endpoint health --cluster` before "
                         "the next. Two down at once and Patroni cannot renew the leader key: the leader demotes itself "
                         "and the region has no writable PostgreSQL until etcd is back.")
    redis = [h for h in region.hosts if h.group == "redis_cluster"]
    if redis:
        steps.append("Redis, one node at a time, the replicas first, then each primary after `CLUSTER FAILOVER` on one "
                     "of its (resized) replicas, `redis-cli --cluster check` clean before the next: "
                     + listing([h.name for h in redis if h.replica_of] + [h.name for h in redis if not h.replica_of])
                     + ".")
    es = [n for n, h in hosts.items() if h["group"] == "elasticsearch"]
    if es:
        steps.append(f"Elasticsearch, one node at a time, the cluster green (`GET _cluster/health`) before the next: "
                     f"{listing(es)}.")
    rest = [n for n, h in hosts.items() if h["group"] in ("pgbouncer", "bastion")]
    if rest:
        steps.append(f"PgBouncer and the bastion, one at a time: {listing(rest)}.")
    if not any(h["group"] != "bastion" for h in hosts.values()):
        return ""
    return ("### Resizing the data hosts\n\nA changed machine type changes every host of its group in one plan, and "
            f"a whole-root apply changes them together ({RESIZE_HOW[cloud]}; Terraform runs ten at a time): every "
            "PostgreSQL member, etcd member, Redis node or Elasticsearch node of the group would be down at once. "
            f"Apply it one host at a time instead, `terraform -chdir={root} apply -target='<address>'` with each "
            "host's VM address in this order (its data volume is untouched), then the full apply, which finds nothing "
            "left to change on the hosts:\n\n" + "".join(f"{i}. {s}\n" for i, s in enumerate(steps, 1)))


def _quotas(plan: PlatformPlan, region: RegionPlan) -> str:
    where = {"aws": "account", "gcp": "project", "azure": "subscription"}[region.cloud]
    where = f"{where} `{plan.spec.clouds[region.cloud].account}`"
    amount = lambda v: "unknown" if v is None else f"{v:,}"  # noqa: E731
    name = lambda q: re.sub(r"\b[A-Z0-9]+_[A-Z0-9_]+\b|^CPUS\b", lambda m: f"`{m[0]}`", q)  # noqa: E731 (GCP's metrics)
    rows = [[name(r["quota"]), r["unit"], amount(r["at_min"]), amount(r["at_max"]), ", ".join(r["machines"])]
            for r in quotas.demand(region)]
    return ("### Compute quotas\n\n"
            f"What this root's machines count against in {where}, {region.cloud_region}: the node pools at their minimum "
            "(the first apply creates them; a smaller quota fails it) and at their maximum (what the autoscaler may "
            "reach; a smaller quota fails a scale-out, which only the autoscaler's events show), the data-tier hosts "
            "once (on GCP a pool starts with the same number of nodes in every zone, and the cluster's default pool, "
            "removed once the cluster exists, counts at the minimum; the maximum is never below the minimum, which "
            "the first apply needs whatever the autoscaler reaches later). Add the surge nodes of a node-pool upgrade, and "
            "whatever else runs there. New accounts and projects start far below these: request the increases before "
            "the first apply.\n\n"
            + markdown_table(["quota", "unit", "at minimum", "at maximum", "machines"], rows))


def section(plan: PlatformPlan, region: RegionPlan) -> str:
    cloud = region.cloud
    svc = SERVICES[cloud]
    s = region.settings
    hosts = V.hosts(plan, region)
    name = prefix(plan, region)
    domain = plan.spec.organization.domain
    out = [
        "## Terraform\n",
        f"Root: `generated/terraform/regions/{region.name}/` on {cloud} ({region.cloud_region}), modules from "
        f"`generated/terraform/modules/{cloud}/` ({', '.join(MODULES[cloud])}). Apply `generated/terraform/global/` "
        "first (public zone, CDN), then this root: the region's first apply goes in the steps of the First bring-up "
        "section above; later ones are `terraform -chdir=generated/terraform/regions/"
        f"{region.name} init && terraform -chdir=generated/terraform/regions/{region.name} apply`.\n",
        "Every resource carries the region's tags/labels: "
        + ", ".join(f"`{k}={v}`" for k, v in region.tags.items()) + ".\n",
        "### What it creates\n",
    ]
    pools = ", ".join(f"{n} ({p.instance_types[cloud]}, {p.min_nodes}-{p.max_nodes} nodes"
                      + (", spot" if p.spot else "") + (f", {p.gpus} GPU" if p.gpus else "")
                      + (f", taints {' '.join(p.taints)}" if p.taints else "") + ")"
                      for n, p in sorted(s.kubernetes.node_pools.items()))
    os_ = s.datastores.object_storage
    partner = plan.region(region.dr_partner)
    rows = [
        ["encryption", f"{svc['kms']} `{name}`, rotated every {s.security.kms_key_rotation_days} days"],
        ["network", f"{svc['network']} {region.cidr}; per zone a private and a public subnet ("
         + "; ".join(f"{z.name}: {z.private_cidr} / {z.public_cidr}" for z in region.zones) + "); NAT "
         + ("per zone" if s.network.nat_per_zone else "shared") + "; flow logs "
         + (f"kept {s.network.flow_log_retention_days} days" if s.network.flow_logs else "off")],
        ["kubernetes", f"{svc['kubernetes']} `{name}` {s.kubernetes.version}, "
         + ("private" if s.kubernetes.private_api_endpoint else "public") + " API endpoint, Secrets encrypted with "
         f"the region key, control-plane logs on; node pools: {pools}" + _addons(region)],
        ["data hosts", f"{len(hosts)} VMs (table below); {svc['dns']} `{region.internal_domain}` with an A record "
         f"per host and `pgbouncer.{region.internal_domain}` over the {len(region.hosts_in('pgbouncer'))} PgBouncer hosts"],
        ["object storage", f"{svc['storage']} `{region.data_bucket}` and `{region.backup_bucket}`: versioned, "
         f"customer-managed key, public access blocked, infrequent-access tier after "
         f"{os_.lifecycle.infrequent_access_after_days} days, "
         + ("Cold tier (GZRS accounts have no Archive tier)" if region.cloud == "azure" else "archive")
         + f" after {os_.lifecycle.archive_after_days} days, "
         f"old versions deleted after {os_.lifecycle.noncurrent_expire_after_days} days in `{region.data_bucket}`, "
         f"after {backup_noncurrent_expire_days(s)} days in `{region.backup_bucket}` (the shortest backup "
         "retention: its schedules prune by deleting)"
         + ("; a deleted version stays soft-deleted as long again in the backup account, 30 days in the data "
            "account" if region.cloud == "azure" else "") + "; "
         + (f"replicated to `{partner.data_bucket}` / `{partner.backup_bucket}` ({partner.name})"
            if region.replicates_to_dr_partner else "not replicated by Terraform (see notes)")],
        ["load balancer", f"{svc['lb']} for " + ", ".join(f"`{h}`" for h in V.lb_hostnames(plan, region))
         + f", {listener_tls(plan, region)}, forwarding to Kong on port {V.KONG_PROXY_TLS_PORT}; "
         f"`{region.name}.{domain}` points at it"],
        ["WAF", f"{svc['waf']}: block {', '.join(plan.spec.edge.waf.blocked_countries) or 'no countries'}, "
         f"rate limit {plan.spec.edge.waf.rate_limit_per_5min} requests per IP per 5 minutes"
         + (", managed rule sets" if plan.spec.edge.waf.managed_rules else "")],
        ["backups", f"{svc['backup']}: " + "; ".join(
            f"{n} `{b.cron}` kept {b.retention_days} days"
            + (f", kept in the vault's standard tier (cold_storage_after_days is not applied: {NO_COLD_TIER[cloud]})"
               if b.cold_storage_after_days else "")
            + _copy_note(region, partner, n, b)
            for n, b in V.backups(region))],
        ["budget", f"{svc['budget']}: {sum(region.monthly_budget.values()):,.2f} {plan.spec.cost.currency} a month ("
         + ", ".join(f"{k} {v:,.2f}" for k, v in region.monthly_budget.items()) + "), alerts at "
         + ", ".join(f"{t} %" for t in plan.spec.cost.alert_thresholds_percent) + " and on the forecast"],
    ]
    peers = V.peerings(plan, region)
    if peers:
        what = {"aws": "VPC peering (the first of each pair in spec order requests it and accepts it in the peer's "
                       "region), a route to the peer's range in every private route table, the private zone associated "
                       "with the peer's VPC",
                "gcp": "a network peering half (active once the peer's half exists) and a DNS peering zone for the "
                       "peer's private names",
                "azure": "a global VNet peering half and a link of the private DNS zone to the peer's VNet"}[cloud]
        rows.append(["inter-region network", f"{what}, to " + ", ".join(
            f"{p['region']} ({plan.region(p['region']).cidr})" for p in peers)
            + "; open only for the flows that cross (connections `inter-region`): "
            + "; ".join(sorted({f"{c.dest_port}/tcp {c.purpose}" for c in region.through("inter-region")}))])
    if edge_routes_homes(plan.spec):
        rows.append(["edge routing", f"the global root's CloudFront distribution has this region as origin "
                     f"`{home_origin_id(region.name)}` (`{region.name}.{domain}`, the load balancer above); its "
                     f"viewer-request function sends the requests of franchises homed here to it, from every cloud "
                     f"(home-region routing: the Kong section says why the edge)"])
    elif edge_home_provider(plan.spec) in ("front_door", "cloud_cdn"):
        what = ("Front Door profile has this region as origin group" if edge_home_provider(plan.spec) == "front_door"
                else "Cloud CDN load balancer has this region as backend service")
        rule = ("a rule of its rule set sends" if edge_home_provider(plan.spec) == "front_door"
                else "the route rules of its URL map send")
        rows.append(["edge routing", f"the global root's {what} `{home_origin_id(region.name)}` (`{region.name}.{domain}`, "
                     f"the load balancer above); {rule} the requests of franchises homed here to it (home-region "
                     f"routing). DR: once `disaster_recovery.failed_over` lists {region.name} (the region runbook, "
                     f"step 4), its rules send them to {region.dr_partner}"])
    gateway = V.internal_gateway(plan, region)
    if gateway:
        how = {"aws": "an internal Network Load Balancer whose target is the load balancer above (TLS ends there)",
               "gcp": f"a regional internal proxy Network Load Balancer (global access) over Kong's NEGs, its proxies "
                      f"in the proxy-only subnet {region.addressing.proxy_cidr} (TLS runs through to Kong)",
               "azure": f"an internal Standard Load Balancer at {gateway.get('address')} in the node subnet, which AKS "
                        "builds from Kong's `kong-internal-gateway` Service (kubernetes target; the Service pins the "
                        "address the private DNS record names), the private subnets' NSG opening it to the peered "
                        "regions' Kong (TLS runs through to Kong)"}[cloud]
        rows.append(["internal gateway", f"`{gateway['name']}` on port {gateway['port']}: {how}; it admits the linked "
                     "regions' Kong (home-region routing)"])
    endpoints = V.postgres_endpoints(region)
    if endpoints:
        kind = {"aws": "internal Network Load Balancer", "gcp": "internal passthrough Network Load Balancer (global "
                "access)", "azure": "internal Standard Load Balancer"}[cloud]
        rows.append(["PostgreSQL endpoints", "; ".join(
            f"`{e['fqdn']}`: {kind} on {e['port']} over the {len(e['hosts'])} Patroni members, health check HTTPS "
            f"`GET {e['health_path']}` on {e['health_port']}" for e in endpoints.values())])
    chosen = [k for k, v in V.managed(region).items() if v]
    if chosen:
        rows.insert(4, ["managed datastores", "; ".join(MANAGED[cloud][k] for k in chosen)
                        + " (private access only, customer-managed key, names under "
                        f"`{region.internal_domain}`)"])
    out.append(markdown_table(["part", "resources"], rows))
    out.append("### Data-tier hosts\n")
    out.append(markdown_table(["host", "group", "zone", "machine", "data disk", "FQDN"],
                      [[n, h["group"], h["zone"], h["instance_type"],
                        f"{h['data_disk_gib']} GiB" if h["data_disk_gib"] else "-", h["fqdn"]] for n, h in hosts.items()]))
    out.append(_protected(region, hosts))
    out.append(_resizing(region, hosts))
    out.append(_quotas(plan, region))
    out.append(_node_pool_changes(plan, region))
    notes = _notes(plan, region, peers)
    if notes:
        out.append("### Notes\n")
        out.append("".join(f"- {markdown_cell(n)}\n" for n in notes))
    return "\n".join(out)
