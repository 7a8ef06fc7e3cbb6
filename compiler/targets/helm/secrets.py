"""Secrets the cluster reads, delivered by the External Secrets Operator (ESO).

Every Secret a pod or a Helm release references is created here, as an ExternalSecret
(external-secrets.io/v1) that ESO keeps in sync from the secret store the spec's reference names:

- each service's Secret (named after the service, in its namespace): one key per `secrets:` entry,
  the environment variable's name, which is what its Deployment's `secretKeyRef`s read;
- each service's `<service>-datastores` Secret: the passwords of its PostgreSQL role, Redis user and
  Elasticsearch user (PGPASSWORD, REDIS_PASSWORD, ELASTICSEARCH_PASSWORD), from the references
  compiler/ir/data_access.py derives, read with envFrom;
- each service's `<service>-internal-ca` Secret (key ca.crt): the region's internal CA certificate, which
  Ansible's pgbouncer role publishes to the store; mounted by the pods for PGSSLMODE=verify-full and to verify
  the self-managed Elasticsearch nodes (ELASTICSEARCH_CA_CERT);
- `grafana-admin` (Grafana's admin user and password, `grafana.admin.existingSecret`);
- `alertmanager-receivers` (the receivers' keys, `alertmanager.alertmanagerSpec.secrets`);
- `elasticsearch-fluent-bit`, `elasticsearch-jaeger` (each shipper's Elasticsearch user and the CA).

One ClusterSecretStore per reference scheme the region's cluster reads (`vault:` -> the spec's
security.vault_address, Vault's JWT auth with a token ESO requests for its own ServiceAccount; `aws-sm:` ->
Secrets Manager in the region; `gcp-sm:` -> Secret Manager in the cloud's project; `azure-kv:` -> one store per
Key Vault named in the references). `env:`
references are CI's (the deploy job's environment): no store can read them, so a Kubernetes Secret
fed from one is not created here and is listed by `unsupported()`.

Delivery is two local Helm charts per region, installed by the helmfile (they hold only ESO objects,
no templating):
- `charts/platform-secrets/`: the stores and the monitoring namespace's ExternalSecrets, installed
  after the operator and before the releases that mount those Secrets (helmfile `needs`);
- `charts/secrets-<namespace>/`: one per service namespace, a release in that namespace
  (`createNamespace`, so it does not wait for the service manifests; their Namespace object then
  adds its labels).
"""

from __future__ import annotations

from functools import lru_cache

from compiler.records import dataclass
from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.data_access import INTERNAL_CA_KEY, published_ca_ref, region_ca_ref
from compiler.ir.edge import kong_proxy_tls_refs
from compiler.ir.identity import VAULT_AUDIENCE, VAULT_ROLE, vault_auth_mount
from compiler.ir.names import (ALERTMANAGER_RECEIVER_KEYS, ALERTMANAGER_RECEIVERS_SECRET, ELASTICSEARCH_CLIENT_KEYS,
                               ELASTICSEARCH_CLIENT_SECRETS, EXTERNAL_SECRETS_NAMESPACE,
                               EXTERNAL_SECRETS_SERVICE_ACCOUNT, GATEWAY_NAMESPACE, GRAFANA_ADMIN_KEYS,
                               GRAFANA_ADMIN_SECRET, KONG_PROXY_TLS_SECRET, MONITORING_NAMESPACE)

API = "external-secrets.io/v1"
REFRESH = "1h"  # how often ESO re-reads the store: a rotated value reaches the Secret within the hour
MANAGED_BY = {"app.kubernetes.io/managed-by": "platformc"}
GRAFANA_ADMIN_USER = "admin"


@dataclass(frozen=True)
class Ref:
    scheme: str  # vault | aws-sm | gcp-sm | azure-kv | env
    key: str  # the store's entry (Vault: the KV v2 API path; Azure: the Key Vault secret name)
    property: str  # the field inside the entry ("" = the whole value)
    vault: str = ""  # azure-kv only: the Key Vault's name

    @property
    def store(self) -> str:
        return f"azure-kv-{self.vault}" if self.scheme == "azure-kv" else self.scheme


@lru_cache(maxsize=4096)
def parse(ref: str) -> Ref:
    """`vault:secret/data/app#key`, `aws-sm:name[#key]`, `gcp-sm:name[#key]`, `azure-kv:vault/name[#key]`, `env:VAR`.
    Once per distinct reference (the Ref is frozen): a region's references are parsed again by each of the
    stores, the ExternalSecrets and the docs, ~500 times per region."""
    scheme, _, rest = ref.partition(":")
    entry, _, prop = rest.partition("#")
    if scheme == "azure-kv":
        vault, _, name = entry.partition("/")
        return Ref(scheme, name, prop, vault=vault)
    return Ref(scheme, entry, prop)


@dataclass(frozen=True)
class Wanted:
    """A Secret the tree references and the store entries each of its keys comes from."""

    name: str
    namespace: str
    keys: tuple[tuple[str, str], ...]  # (secret key, reference) ...
    whole: str = ""  # a reference to an entry whose fields fill ELASTICSEARCH_CLIENT_KEYS (remote_field names them)
    fixed: tuple[tuple[str, str], ...] = ()  # (secret key, literal value): non-secret parts (Grafana's user name)
    why: str = ""


def wanted(region: RegionPlan) -> list[Wanted]:
    """Every Secret a pod or a Helm release of this region references, in apply order (a new list each call)."""
    return list(_wanted(region))


def _wanted(region: RegionPlan) -> tuple[Wanted, ...]:
    """wanted(region), computed once per region: the helmfile, its header, the charts and the docs each ask."""
    return region.derived(("helm", "wanted"), lambda: tuple(_compute_wanted(region)))


def _compute_wanted(region: RegionPlan) -> list[Wanted]:
    mon = region.settings.monitoring
    out: list[Wanted] = []
    if mon.grafana and mon.grafana_admin_password:
        out.append(Wanted(GRAFANA_ADMIN_SECRET, MONITORING_NAMESPACE, ((GRAFANA_ADMIN_KEYS[1], mon.grafana_admin_password),),
                          fixed=((GRAFANA_ADMIN_KEYS[0], GRAFANA_ADMIN_USER),), why="Grafana's admin login (grafana.admin.existingSecret)"))
    receivers = receiver_refs(region)
    if mon.alertmanager and receivers:
        out.append(Wanted(ALERTMANAGER_RECEIVERS_SECRET, MONITORING_NAMESPACE, tuple(receivers.items()),
                          why="Alertmanager's receiver keys (alertmanagerSpec.secrets)"))
    if region.hosts_in("elasticsearch"):
        # the nodes' issuer: the region's internal CA, from the entry the region's Ansible publishes it to (the
        # client's entry holds only its user, and may be every region's)
        ca_ref = region_ca_ref(region.settings, region.name)
        for client in elasticsearch_clients(region):
            ref = region.settings.datastores.elasticsearch.clients.get(client)
            if ref:
                out.append(Wanted(ELASTICSEARCH_CLIENT_SECRETS[client], MONITORING_NAMESPACE,
                                  ((INTERNAL_CA_KEY, ca_ref),), whole=ref,
                                  why=f"{client}'s Elasticsearch user and the region's internal CA"))
    kong_tls = kong_proxy_tls_refs(region)
    if kong_tls:
        out.append(Wanted(KONG_PROXY_TLS_SECRET, GATEWAY_NAMESPACE, kong_tls,
                          why="Kong's serving certificate for the Application Gateway (issued by the region's internal "
                              "CA), mounted on its TLS listener"))
    for svc in region.services:
        if svc.secrets:
            out.append(Wanted(svc.name, svc.namespace, tuple(svc.secrets.items()),
                              why=f"{svc.name}'s environment (its Deployment's secretKeyRefs)"))
    # each service's PgBouncer and Redis passwords (compiler/ir/data_access.py), read with envFrom
    for a in region.data_access:
        if a.secrets:
            out.append(Wanted(a.name, a.namespace, tuple(a.secrets),
                              why=f"{a.service}'s {_credentials(a)} passwords (its Deployment's envFrom)"))
        if a.ca_ref:
            out.append(Wanted(a.ca_secret, a.namespace, ((INTERNAL_CA_KEY, a.ca_ref),),
                              why=f"the region's internal CA certificate (public), mounted by {a.service}'s pods: "
                                  + _ca_users(a)))
        if a.redis_ca_ref:
            out.append(Wanted(a.redis_ca_secret, a.namespace, ((INTERNAL_CA_KEY, a.redis_ca_ref),),
                              why=f"the managed Redis cluster's server CA (public, written by Terraform), mounted by "
                                  f"{a.service}'s pods: REDIS_TLS_CA_FILE"))
    return out


def _ca_users(a) -> str:
    """What a service's pods verify with the internal CA, in words (short: an annotation line stays under 200)."""
    if a.db_role and a.es_user:
        return "PGSSLROOTCERT and ELASTICSEARCH_CA_CERT"
    if a.db_role:
        return "PGSSLROOTCERT for verify-full to PgBouncer"
    return "ELASTICSEARCH_CA_CERT to verify the Elasticsearch nodes"


def _credentials(a) -> str:
    """The credentials a service's `<service>-datastores` Secret holds, in words."""
    parts = [w for w, on in (("PostgreSQL role", a.db_role), ("Redis user", a.redis_user and a.redis_user.password_ref),
                             ("Elasticsearch user", a.es_user)) if on]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


def receiver_refs(region: RegionPlan) -> dict[str, str]:
    """Alertmanager receiver key -> reference, for the receivers the spec sets."""
    recv = region.settings.monitoring.alert_receivers
    return {key: getattr(recv, field) for field, key in ALERTMANAGER_RECEIVER_KEYS.items() if getattr(recv, field)}


def elasticsearch_clients(region: RegionPlan) -> list[str]:
    """The in-cluster clients of the self-managed Elasticsearch: Fluent Bit always, Jaeger with tracing."""
    if not region.hosts_in("elasticsearch"):
        return []
    return ["fluent-bit"] + (["jaeger"] if region.settings.monitoring.tracing else [])


def _refs(w: Wanted) -> list[str]:
    return [r for _, r in w.keys] + ([w.whole] if w.whole else [])


def unsupported(region: RegionPlan) -> list[tuple[Wanted, str]]:
    """(Secret, reference) pairs no store can deliver: `env:` references (CI's), or `vault:` without an address."""
    return list(region.derived(("helm", "unsupported"), lambda: tuple(_unsupported_in(region, _wanted(region)))))


def _unsupported_in(region: RegionPlan, secrets: list[Wanted]) -> list[tuple[Wanted, str]]:
    out = []
    for w in secrets:
        for ref in _refs(w):
            r = parse(ref)
            if r.scheme == "env" or (r.scheme == "vault" and not region.settings.security.vault_address):
                out.append((w, ref))
    return out


def describe(ref: str) -> str:
    """A reference in words (the files name what is missing without repeating a reference verbatim)."""
    r = parse(ref)
    if r.scheme == "env":
        return f"the deploy job's environment variable {r.key} (an `env` reference)"
    return f"{r.key} in the `{r.scheme}` store (no security.vault_address)"


def _deliverable_of(region: RegionPlan) -> list[Wanted]:
    """wanted(region) without the Secrets no store can deliver, in order (unsupported(region) computed once,
    not once per Secret: that was quadratic in a region's Secrets)."""
    def compute():
        undeliverable = {x for x, _ in unsupported(region)}
        return tuple(w for w in _wanted(region) if w not in undeliverable)
    return list(region.derived(("helm", "deliverable"), compute))


def entries_to_create(region: RegionPlan) -> list[tuple[str, str, tuple[str, ...], str]]:
    """The store entries the region's ExternalSecrets read, each once: (scheme, entry, fields, who writes it). The
    operators write what the spec references; the region's Ansible publishes its internal CA and its Terraform
    Memorystore's server CA. Without the entry an ExternalSecret fails, its Secret never exists, and the releases
    waiting for it time out: the region page lists them for the step before `helmfile apply`."""
    written = {a.redis_ca_ref: "the region's Terraform (Memorystore's server CA)"
               for a in region.data_access if a.redis_ca_ref}
    published = published_ca_ref(region)
    if published:
        written[published] = "the region's Ansible (its pgbouncer play publishes the internal CA)"
    for _, ref in kong_proxy_tls_refs(region):
        written[ref] = "the region's Ansible (its pgbouncer play issues Kong's certificate from the internal CA)"
    fields: dict[tuple[str, str], list[str]] = {}
    who: dict[tuple[str, str], str] = {}
    for w in _deliverable_of(region):
        pairs = [(ref, parse(ref).property) for _, ref in w.keys]
        if w.whole:
            pairs += [(w.whole, remote_field(k)) for k in ELASTICSEARCH_CLIENT_KEYS]
        for ref, prop in pairs:
            r = parse(ref)
            key = (r.scheme, f"{r.vault}/{r.key}" if r.vault else r.key)
            got = fields.setdefault(key, [])
            if prop and prop not in got:
                got.append(prop)
            who.setdefault(key, written.get(ref, "the operators, before `helmfile apply`"))
    return [(scheme, entry, tuple(props), who[(scheme, entry)]) for (scheme, entry), props in fields.items()]


def secret_uses(region: RegionPlan) -> list:
    """The references the region's ExternalSecrets read, each with the ExternalSecret that reads it."""
    from compiler.ir.secret_uses import SecretUse
    out = []
    for w in _deliverable_of(region):
        refs = [ref for _, ref in w.keys]
        if w.whole:
            refs += [f"{w.whole}#{remote_field(k)}" for k in ELASTICSEARCH_CLIENT_KEYS]
        out += [SecretUse(ref, "helmfile", f"ExternalSecret `{w.namespace}/{w.name}`") for ref in refs]
    return out


# ---------------------------------------------------------------- stores

def cluster_secret_store(plan: PlatformPlan, region: RegionPlan, name: str, sample: Ref) -> dict:
    sa = {"name": EXTERNAL_SECRETS_SERVICE_ACCOUNT, "namespace": EXTERNAL_SECRETS_NAMESPACE}
    if sample.scheme == "vault":
        provider = {"vault": {
            "server": region.settings.security.vault_address,
            # KV v2; the references carry the full API path (`<mount>/data/<path>`), which ESO uses as is
            "version": "v2",
            # Vault's JWT auth (compiler/ir/identity.py: why not its Kubernetes auth): ESO asks the API server
            # (TokenRequest, which its chart's ClusterRole allows) for a token of its own ServiceAccount with the
            # audience the role binds, and logs in with it at the mount vault/configure.sh creates. The token's
            # lifetime is ESO's default, 10 minutes (expirationSeconds is deprecated in ESO 2.9).
            "auth": {"jwt": {"path": vault_auth_mount(region.cluster_name), "role": VAULT_ROLE,
                             "kubernetesServiceAccountToken": {
                                 "serviceAccountRef": {**sa, "audiences": [VAULT_AUDIENCE]}}}},
        }}
    elif sample.scheme == "aws-sm":
        # credentials: the operator's ServiceAccount's IAM role (EKS Pod Identity / IRSA)
        provider = {"aws": {"service": "SecretsManager", "region": region.cloud_region}}
    elif sample.scheme == "gcp-sm":
        # credentials: Workload Identity of the operator's ServiceAccount
        provider = {"gcpsm": {"projectID": plan.spec.clouds["gcp"].account}}
    else:  # azure-kv
        provider = {"azurekv": {"vaultUrl": f"https://{sample.vault}.vault.azure.net", "authType": "WorkloadIdentity",
                                "serviceAccountRef": dict(sa)}}
    return {"apiVersion": API, "kind": "ClusterSecretStore",
            "metadata": {"name": name, "labels": dict(MANAGED_BY)},
            "spec": {"provider": provider}}


def stores(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    """One ClusterSecretStore per store the deliverable references name, by name."""
    seen: dict[str, Ref] = {}
    for w in _deliverable_of(region):
        for ref in _refs(w):
            r = parse(ref)
            seen.setdefault(r.store, r)
    return [cluster_secret_store(plan, region, name, r) for name, r in sorted(seen.items())]


# ---------------------------------------------------------------- ExternalSecrets

def _remote(r: Ref, prop: str = "") -> dict:
    out = {"key": r.key}
    prop = prop or r.property
    if prop:
        out["property"] = prop
    return out


def remote_field(key: str) -> str:
    """The entry's field for a Secret key: dots become underscores (`ca.crt` -> `ca_crt`), since ESO
    reads a dotted property as a JSON path into the value (AWS, GCP, Azure)."""
    return key.replace(".", "_")


def external_secret(w: Wanted) -> dict:
    data = []
    store = None
    for key, ref in w.keys:
        r = parse(ref)
        store = store or r.store
        data.append({"secretKey": key, "remoteRef": _remote(r)})
    if w.whole:
        r = parse(w.whole)
        store = r.store
        # one entry holds every key; its fields are named like the Secret's keys
        data += [{"secretKey": k, "remoteRef": _remote(r, remote_field(k))} for k in ELASTICSEARCH_CLIENT_KEYS]
    stores_used = {parse(ref).store for ref in _refs(w)}
    if len(stores_used) > 1:
        # ExternalSecret.spec.secretStoreRef is per object; data[].sourceRef names the store per key
        for item, (_, ref) in zip(data, w.keys):
            item["sourceRef"] = {"storeRef": {"name": parse(ref).store, "kind": "ClusterSecretStore"}}
    target: dict = {"name": w.name, "creationPolicy": "Owner", "deletionPolicy": "Retain"}
    if w.fixed:
        # non-secret keys ride along through the target template; the stored values are kept as they are
        target["template"] = {"engineVersion": "v2", "mergePolicy": "Merge",
                              "data": {k: v for k, v in w.fixed}}
    return {"apiVersion": API, "kind": "ExternalSecret",
            "metadata": {"name": w.name, "namespace": w.namespace, "labels": dict(MANAGED_BY),
                         "annotations": {"platformc.io/purpose": w.why}},
            "spec": {"refreshInterval": REFRESH,
                     "secretStoreRef": {"name": store, "kind": "ClusterSecretStore"},
                     "target": target, "data": data}}


def external_secrets(region: RegionPlan) -> list[dict]:
    return [external_secret(w) for w in _deliverable_of(region)]


def external_secret_count(region: RegionPlan) -> int:
    """len(external_secrets(region)), without building them (the docs only count them)."""
    return len(_deliverable_of(region))


def by_namespace(region: RegionPlan) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for doc in external_secrets(region):
        out.setdefault(doc["metadata"]["namespace"], []).append(doc)
    return out


def secret_namespaces(region: RegionPlan) -> dict[str, list]:
    """by_namespace(region)'s keys, in its order, each with an empty list: without building the ExternalSecrets."""
    return {w.namespace: [] for w in _deliverable_of(region)}


def namespaces_of(spaces: dict[str, list[dict]]) -> list[str]:
    """The namespaces (other than monitoring) that get a secrets chart, in service order, from by_namespace()."""
    return [ns for ns in spaces if ns != MONITORING_NAMESPACE]
