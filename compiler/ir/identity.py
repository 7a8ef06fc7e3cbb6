"""Workload identities: who each pod is, to the cloud and to the secret stores (computed once in resolve).

Per region, one `Identity` per Kubernetes ServiceAccount that needs a cloud identity or a store role:

- each service's ServiceAccount (named after the service, in its namespace). A service gets a cloud identity
  when it `uses` a cloud resource: `object-storage` -> read/write on the objects of the region's data bucket
  (Azure: the `data` container of the data storage account), and on AWS the region's KMS key that encrypts it
  (SSE-KMS; only through S3). GCS and Azure Storage use their customer-managed key themselves (the service
  agent / the account's identity), so a caller needs no key grant there. A service that uses a managed Redis gets a cloud
  identity too, which the cache lets in as the service's user (compiler/ir/data_access.py: an ElastiCache IAM user
  it may elasticache:Connect as, roles/redis.dbConnectionUser on the Memorystore cluster, an Azure Cache data
  access policy assigned to the identity). A service that uses a managed search domain (Amazon OpenSearch Service)
  gets one too: its IAM role signs its requests, allowed on exactly its indices `<service>_*` and the domain's health
  paths (compiler/ir/data_access.py SearchGrant). The services' secrets are read by
  the External Secrets Operator on their behalf, so a service never reads a secret store itself;
- the External Secrets Operator's ServiceAccount: read on exactly the secret-store entries the region's
  cluster is delivered (`aws-sm:` / `gcp-sm:` / `azure-kv:` on the region's own cloud) and, for `vault:`
  references, a Vault JWT auth role (vault_auth_mount) with read on exactly those KV v2 paths;
- cluster-autoscaler's ServiceAccount on EKS: the node groups of this cluster (tag-scoped);
- the AWS Load Balancer Controller's ServiceAccount on EKS: registers and deregisters targets in exactly the
  region's Kong target group (upstream's TargetGroupBinding-only policy subset, the writes scoped to that group).

The cloud identity is an IAM role assumed through IRSA (the cluster's EKS OIDC provider) on AWS, a Google
service account with a Workload Identity binding `serviceAccount:<project>.svc.id.goog[<ns>/<sa>]` on GCP, and
a user-assigned identity with a federated identity credential on the AKS OIDC issuer on Azure. The Terraform
target creates them (modules/<cloud>/workload_identity), the kubernetes and helm targets annotate the
ServiceAccounts, and `platformc verify` proves each annotation resolves to a created identity with the
matching federated subject.
"""

from __future__ import annotations

from compiler.records import dataclass
from typing import Iterable, Optional

from compiler.ir.names import (ALERTMANAGER_RECEIVER_KEYS, EXTERNAL_SECRETS_NAMESPACE, EXTERNAL_SECRETS_SERVICE_ACCOUNT,
                               SYSTEM_NAMESPACE, fit)

CLUSTER_AUTOSCALER = "cluster-autoscaler"  # its ServiceAccount (chart rbac.serviceAccount.name) and owner name
EXTERNAL_SECRETS = "external-secrets"  # the operator's owner name
# EKS: its ServiceAccount (chart serviceAccount.name), release and owner name. It only registers Kong's pods in the
# ALB's target group (TargetGroupBinding): the ALB and its target group are Terraform's.
AWS_LOAD_BALANCER_CONTROLLER = "aws-load-balancer-controller"
# The aws-ebs-csi-driver EKS add-on's controller: the add-on creates this ServiceAccount in kube-system and annotates
# it with the role given as the add-on's service_account_role_arn, so the role lives beside the add-on in the
# Terraform kubernetes module rather than among the identities whose ServiceAccounts platformc writes.
EBS_CSI_DRIVER = "ebs-csi-driver"  # its role's owner name
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"

MECHANISM = {"aws": "irsa", "gcp": "gke-workload-identity", "azure": "azure-workload-identity"}
# The ServiceAccount annotation each cloud's mechanism reads.
SA_ANNOTATION = {"aws": "eks.amazonaws.com/role-arn", "gcp": "iam.gke.io/gcp-service-account",
                 "azure": "azure.workload.identity/client-id"}
AZURE_POD_LABEL = "azure.workload.identity/use"  # the AKS webhook injects the token only into pods with it "true"
# The secret-store reference scheme each cloud's identity can read.
STORE_SCHEME = {"aws": "aws-sm", "gcp": "gcp-sm", "azure": "azure-kv"}
AZURE_CLIENT_IDS_OUTPUT = "workload_identity_client_ids"  # the Azure region root's output: owner -> client id

# The External Secrets Operator's Vault login, shared by the Vault side (terraform target, vault/configure.sh) and
# the ClusterSecretStore (helm target). Vault's JWT auth method, not its Kubernetes one: that one has Vault send every
# login's token to the cluster's TokenReview API, which Vault, outside the clusters, cannot reach on their private
# API servers (and which would need the operator's ServiceAccount bound to system:auth-delegator). The JWT method
# checks the token's signature against the keys the cluster's OIDC issuer publishes (public on EKS, GKE and AKS)
# and never calls the cluster. One mount per cluster: each cluster has its own issuer.
VAULT_ROLE = "external-secrets"  # the role ESO's ServiceAccount logs in as
# The audience of the token ESO requests (TokenRequest) and the role accepts. `vault` is also the audience ESO 2.9
# appends to the ServiceAccount's own unless kubernetesServiceAccountToken.audiences (deprecated) is set
# (providers/v1/vault/auth_jwt.go), so the token carries no audience beyond this one.
VAULT_AUDIENCE = "vault"


def vault_auth_mount(cluster: str) -> str:
    """The path of a cluster's JWT auth method in Vault (`auth/<it>/login`)."""
    return f"jwt-{cluster}"


@dataclass(frozen=True)
class SecretRef:
    """A parsed secret reference: `vault:secret/data/app#key`, `aws-sm:name[#key]`, `gcp-sm:name[#key]`,
    `azure-kv:vault/name[#key]`, `env:VAR`."""

    scheme: str
    key: str  # the store's entry (Vault: the KV v2 API path; Azure: the secret's name)
    prop: str = ""  # the field inside the entry ("" = the whole value)
    vault: str = ""  # azure-kv: the Key Vault's name

    @property
    def entry(self) -> str:
        """The store entry, without the field: what a container / a grant / a Vault policy path names."""
        return f"{self.vault}/{self.key}" if self.scheme == "azure-kv" else self.key


def parse_ref(ref: str) -> SecretRef:
    scheme, _, rest = ref.partition(":")
    entry, _, prop = rest.partition("#")
    if scheme == "azure-kv":
        vault, _, name = entry.partition("/")
        return SecretRef(scheme, name, prop, vault)
    return SecretRef(scheme, entry, prop)


@dataclass(frozen=True)
class Identity:
    """One ServiceAccount and what it may reach.

    name: the cloud identity's name (IAM role name, GCP service-account id, Azure identity name).
    principal: what the ServiceAccount annotation carries (role ARN, service-account e-mail); "" on Azure,
    where the client id exists only after `terraform apply` (the region root's AZURE_CLIENT_IDS_OUTPUT).
    subject: the federated subject the identity trusts (`system:serviceaccount:<ns>:<sa>`; on GCP the
    Workload Identity member `serviceAccount:<project>.svc.id.goog[<ns>/<sa>]`).
    """

    owner: str  # a service's name, EXTERNAL_SECRETS or CLUSTER_AUTOSCALER
    kind: str  # service | operator
    namespace: str
    service_account: str
    cloud: str
    mechanism: str  # irsa | gke-workload-identity | azure-workload-identity | "" (no cloud identity)
    name: str = ""
    principal: str = ""
    subject: str = ""
    buckets: tuple[str, ...] = ()  # object read/write on these buckets (Azure: storage accounts, `data` container)
    kms_keys: tuple[str, ...] = ()  # "region": the region's customer-managed key (AWS: via S3 / Secrets Manager only)
    secrets: tuple[SecretRef, ...] = ()  # cloud secret-store entries read (the region's cloud's scheme)
    vault_paths: tuple[str, ...] = ()  # Vault KV v2 API paths read through the Vault JWT auth role (VAULT_ROLE)
    node_groups: bool = False  # cluster-autoscaler: scale this cluster's node groups
    target_groups: tuple[str, ...] = ()  # AWS Load Balancer Controller: register targets in these target groups
    redis_user: str = ""  # managed Redis: the cache user it authenticates as (data_access.RedisUser.name)
    redis_cache: str = ""  # ... of this managed cache (data_access.RedisUser.cache)
    search_domain: str = ""  # managed search: the OpenSearch domain it signs requests to (data_access.SearchGrant)
    search_index_prefix: str = ""  # ... on exactly the indices <prefix>* (and the domain's health paths)

    @property
    def has_cloud_identity(self) -> bool:
        return bool(self.mechanism)

    @property
    def annotation(self) -> Optional[tuple[str, str]]:
        """(key, value) the ServiceAccount carries; None without a cloud identity. Azure's value is the
        client id, known after apply: the value here is the placeholder the deploy step substitutes."""
        if not self.mechanism:
            return None
        if self.cloud == "azure":
            return SA_ANNOTATION["azure"], "${" + azure_client_id_variable(self.owner) + "}"
        return SA_ANNOTATION[self.cloud], self.principal


def azure_client_id_variable(owner: str) -> str:
    return "AZURE_CLIENT_ID_" + "".join(c if c.isalnum() else "_" for c in owner.upper())


def service_account_subject(namespace: str, sa: str) -> str:
    return f"system:serviceaccount:{namespace}:{sa}"


def gcp_account_id(region: str, owner: str) -> str:
    """A Google service-account id: 6-30 characters, [a-z][a-z0-9-]*[a-z0-9], unique in the project (the provider's
    ValidateRFC1035Name(6, 30)). A region and a service of two letters each made five: hashed to fit, as past 30."""
    base = f"{region}-{owner}".lower()
    base = "".join(c if c.isalnum() or c == "-" else "-" for c in base)
    return fit(base, 30, minimum=6)


def aws_role_name(cluster: str, owner: str) -> str:
    """IAM role names: up to 64 characters."""
    return fit(f"{cluster}-{owner}", 64)


def _cloud_identity(cloud: str, account: str, cluster: str, region: str, owner: str, namespace: str,
                    sa: str) -> dict:
    if cloud == "aws":
        name = aws_role_name(cluster, owner)
        return {"mechanism": MECHANISM[cloud], "name": name, "principal": f"arn:aws:iam::{account}:role/{name}",
                "subject": service_account_subject(namespace, sa)}
    if cloud == "gcp":
        name = gcp_account_id(region, owner)
        return {"mechanism": MECHANISM[cloud], "name": name,
                "principal": f"{name}@{account}.iam.gserviceaccount.com",
                "subject": f"serviceAccount:{account}.svc.id.goog[{namespace}/{sa}]"}
    return {"mechanism": MECHANISM[cloud], "name": f"{cluster}-{owner}", "principal": "",
            "subject": service_account_subject(namespace, sa)}


def cluster_secret_refs(settings, services, region: str = "") -> list[str]:
    """Every reference the region's cluster is delivered (External Secrets Operator), as the helm target's
    ExternalSecrets read them: Grafana's admin password, Alertmanager's receivers, the Elasticsearch clients'
    entries and the region's internal CA beside them (self-managed Elasticsearch), and every service's `secrets:`."""
    mon = settings.monitoring
    out: list[str] = []
    if mon.grafana and mon.grafana_admin_password:
        out.append(mon.grafana_admin_password)
    if mon.alertmanager:
        recv = mon.alert_receivers
        out += [getattr(recv, f) for f in ALERTMANAGER_RECEIVER_KEYS if getattr(recv, f)]
    es = settings.datastores.elasticsearch
    if es.deployment == "self-managed":
        clients = [es.clients[c] for c in ["fluent-bit"] + (["jaeger"] if mon.tracing else []) if es.clients.get(c)]
        out += clients
        if clients and region:
            from compiler.ir.data_access import region_ca_ref
            out.append(region_ca_ref(settings, region))
    for svc in services:
        out += list(svc.secrets.values())
    return out


def _unique(refs: Iterable[SecretRef]) -> tuple[SecretRef, ...]:
    seen: dict[str, SecretRef] = {}
    for r in refs:
        seen.setdefault(f"{r.scheme}:{r.entry}", SecretRef(r.scheme, r.key, "", r.vault))
    return tuple(seen[k] for k in sorted(seen))


_REF_SCHEMES = frozenset(("vault", "aws-sm", "gcp-sm", "azure-kv", "env"))
_NO_TEXT = frozenset((int, float, bool, type(None)))  # leaves that hold no reference: skipped by their type


def all_refs(settings, seen: dict | None = None) -> list[str]:
    """Every secret reference in the region's settings (any field), in a fixed order: a spec model's fields in their
    order, a map's values by key. (Issue 16: numbers are skipped by their type, and a model's fields are read from
    `__pydantic_fields__`, the dict `model_fields` returns, without asking every value's type for an attribute it
    lacks: this walk was a sixth of resolving.)

    `seen`: the caller's memo across regions, {id(model): (model, its references)}. The regions share every part of
    their settings no layer of theirs overrode (compiler/pipeline.py _share), so each shared model is walked once,
    not once per region; the memo holds each model it names, so an id cannot be reused while it lives."""
    out: list[str] = []
    seen = {} if seen is None else seen

    def walk(v):
        if isinstance(v, str):
            if ":" in v and v.partition(":")[0] in _REF_SCHEMES:
                out.append(v)
        elif isinstance(v, dict):
            for k in sorted(v):
                x = v[k]
                if type(x) not in _NO_TEXT:
                    walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                if type(x) not in _NO_TEXT:
                    walk(x)
        else:
            fields = getattr(type(v), "__pydantic_fields__", None)  # a spec model
            if fields is not None:
                known = seen.get(id(v))
                if known is not None:
                    out.extend(known[1])
                    return
                start = len(out)
                for name in fields:
                    x = getattr(v, name)
                    if type(x) not in _NO_TEXT:
                        walk(x)
                seen[id(v)] = (v, out[start:])
    walk(settings)
    return out


def store_entries(cloud: str, settings, data_access: tuple = (), seen: dict | None = None) -> tuple[SecretRef, ...]:
    """The region's cloud secret-store entries: every reference of the region's settings and of its services'
    datastore credentials in its cloud's store (the containers Terraform creates, never their values). `seen`: see
    all_refs."""
    scheme = STORE_SCHEME[cloud]
    refs = all_refs(settings, seen) + data_access_refs(data_access)
    return _unique(r for r in map(parse_ref, refs) if r.scheme == scheme)


def data_access_refs(data_access) -> list[str]:
    """The references the services' datastore access delivers: their credentials, the internal CA's entry (Ansible
    writes it) and the Memorystore server CA's (Terraform writes it)."""
    refs = [ref for a in data_access for _, ref in a.secrets]
    refs += [a.ca_ref for a in data_access if a.ca_ref]
    refs += [a.redis_ca_ref for a in data_access if a.redis_ca_ref]
    return refs


def identities(cloud: str, account: str, cluster: str, region: str, settings, services, data_bucket: str,
               data_access: tuple = (), target_group: str = "") -> tuple[Identity, ...]:
    """The region's identities: services (by name), then the operators. `data_access` (compiler/ir/data_access.py):
    each service's datastore credentials, which the operator delivers too. `target_group` (AWS): the ALB target group
    Kong's pods join (compiler/ir/edge.py target_group_name), the load balancer controller's only writable one."""
    out: list[Identity] = []
    # managed Redis users that authenticate as their service's cloud identity
    redis = {a.redis_user.identity: a.redis_user for a in data_access if a.redis_user and a.redis_user.identity}
    # managed search: the services' IAM roles sign their OpenSearch requests
    search = {a.search_grant.identity: a.search_grant for a in data_access if a.search_grant}
    for svc in services:
        buckets = (data_bucket,) if "object-storage" in svc.uses else ()
        base = {"owner": svc.name, "kind": "service", "namespace": svc.namespace, "service_account": svc.name,
                "cloud": cloud}
        user = redis.get(svc.name)
        grant = search.get(svc.name)
        if buckets or user or grant:
            out.append(Identity(**base, **_cloud_identity(cloud, account, cluster, region, svc.name, svc.namespace,
                                                          svc.name),
                                buckets=buckets, kms_keys=("region",) if cloud == "aws" and buckets else (),
                                redis_user=user.name if user else "", redis_cache=user.cache if user else "",
                                search_domain=grant.domain if grant else "",
                                search_index_prefix=grant.index_prefix if grant else ""))
        else:
            out.append(Identity(**base, mechanism=""))
    from compiler.ir.data_access import kong_proxy_tls_refs  # Azure: Kong's certificate for the gateway
    delivered = (cluster_secret_refs(settings, services, region) + data_access_refs(data_access)
                 + [ref for _, ref in kong_proxy_tls_refs(cloud, settings, region)])
    refs = [parse_ref(r) for r in delivered]
    cloud_refs = _unique(r for r in refs if r.scheme == STORE_SCHEME[cloud])
    vault = settings.security.vault_address
    vault_paths = tuple(sorted({r.key for r in refs if r.scheme == "vault"})) if vault else ()
    eso = {"owner": EXTERNAL_SECRETS, "kind": "operator", "namespace": EXTERNAL_SECRETS_NAMESPACE,
           "service_account": EXTERNAL_SECRETS_SERVICE_ACCOUNT, "cloud": cloud}
    if cloud_refs:
        out.append(Identity(**eso, **_cloud_identity(cloud, account, cluster, region, EXTERNAL_SECRETS,
                                                     EXTERNAL_SECRETS_NAMESPACE, EXTERNAL_SECRETS_SERVICE_ACCOUNT),
                            secrets=cloud_refs, kms_keys=("region",) if cloud == "aws" else (),
                            vault_paths=vault_paths))
    elif vault_paths:
        out.append(Identity(**eso, mechanism="", vault_paths=vault_paths))
    if cloud == "aws":
        out.append(Identity(owner=CLUSTER_AUTOSCALER, kind="operator", namespace=SYSTEM_NAMESPACE,
                            service_account=CLUSTER_AUTOSCALER, cloud=cloud,
                            **_cloud_identity(cloud, account, cluster, region, CLUSTER_AUTOSCALER, SYSTEM_NAMESPACE,
                                              CLUSTER_AUTOSCALER),
                            node_groups=True))
        out.append(Identity(owner=AWS_LOAD_BALANCER_CONTROLLER, kind="operator", namespace=SYSTEM_NAMESPACE,
                            service_account=AWS_LOAD_BALANCER_CONTROLLER, cloud=cloud,
                            **_cloud_identity(cloud, account, cluster, region, AWS_LOAD_BALANCER_CONTROLLER,
                                              SYSTEM_NAMESPACE, AWS_LOAD_BALANCER_CONTROLLER),
                            target_groups=(target_group,) if target_group else ()))
    return tuple(out)


def identity_of(identities_: tuple[Identity, ...], owner: str) -> Optional[Identity]:
    return next((i for i in identities_ if i.owner == owner), None)
