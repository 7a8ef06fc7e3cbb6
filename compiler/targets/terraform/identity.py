"""Terraform target: the region's workload identities and secret containers (IR: compiler/ir/identity.py) as the
arguments of the modules/<cloud>/workload_identity call, and the Vault side of the External Secrets Operator.

Only identities with a cloud identity become module entries; an owner is keyed by its name (a service's, or
`external-secrets` / `cluster-autoscaler` / `aws-load-balancer-controller`). Secret containers: AWS Secrets Manager entries are regional, so each
region creates its own; GCP Secret Manager names are project-wide, so the first GCP region (in spec order) using
an entry creates it, replicated to every GCP region using it; Azure Key Vault has no empty secret, so nothing
is created there (the ESO identity's role assignments name each secret).
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.edge import kong_proxy_tls_refs
from compiler.ir.identity import (EXTERNAL_SECRETS, VAULT_AUDIENCE, VAULT_ROLE, service_account_subject,
                                  vault_auth_mount)
from compiler.targets.terraform.common import search_path_entries

KMS_VIA = {"service": "s3", "operator": "secretsmanager"}


def _cloud_identities(region: RegionPlan):
    return [i for i in region.identities if i.has_cloud_identity]


def aws(plan: PlatformPlan, region: RegionPlan) -> dict:
    ids = {}
    for i in _cloud_identities(region):
        via = []
        if i.kms_keys and i.buckets:
            via.append("s3")
        if i.kms_keys and i.secrets:
            via.append("secretsmanager")
        ids[i.owner] = {"role_name": i.name, "namespace": i.namespace, "service_account": i.service_account,
                        "buckets": list(i.buckets), "kms_via": via, "secrets": [s.entry for s in i.secrets],
                        "node_groups": i.node_groups}
        if i.target_groups:  # the load balancer controller: targets of exactly these groups
            ids[i.owner]["target_groups"] = list(i.target_groups)
        if i.redis_user:  # managed Redis: elasticache:Connect as exactly its user to exactly the region's cache
            ids[i.owner].update({"redis_user": i.redis_user, "redis_cache": i.redis_cache})
        if i.search_domain:  # managed search: SigV4 requests to exactly its indices and the domain's health paths
            ids[i.owner].update({"search_domain": i.search_domain,
                                 "search_paths": search_path_entries(i.search_index_prefix)})
    return {"identities": ids, "secrets": [s.entry for s in region.secret_entries]}


def gcp_secret_owners(plan: PlatformPlan, region: RegionPlan) -> dict[str, list[str]]:
    """The gcp-sm entries this region creates (no earlier GCP region uses them) -> every GCP location using them."""
    gcp = [r for r in plan.regions if r.cloud == "gcp"]
    out = {}
    for s in region.secret_entries:
        users = [r for r in gcp if any(x.entry == s.entry for x in r.secret_entries)]
        if users and users[0].name == region.name:
            out[s.entry] = sorted({r.cloud_region for r in users})
    return out


def gcp(plan: PlatformPlan, region: RegionPlan) -> dict:
    ids = {i.owner: {"account_id": i.name, "namespace": i.namespace, "service_account": i.service_account,
                     "buckets": list(i.buckets), "secrets": [s.entry for s in i.secrets]}
           for i in _cloud_identities(region)}
    return {"project": plan.spec.clouds["gcp"].account, "identities": ids, "secrets": gcp_secret_owners(plan, region)}


def azure(plan: PlatformPlan, region: RegionPlan) -> dict:
    ids = {i.owner: {"identity_name": i.name, "namespace": i.namespace, "service_account": i.service_account,
                     "buckets": list(i.buckets), "secrets": [s.entry for s in i.secrets]}
           for i in _cloud_identities(region)}
    return {"data_account": region.data_bucket, "identities": ids}


ARGS = {"aws": aws, "gcp": gcp, "azure": azure}


def args(plan: PlatformPlan, region: RegionPlan) -> dict:
    return ARGS[region.cloud](plan, region)


# ---------------------------------------------------------------- Vault (vault: references)

# The region root's output (templates/terraform/regions/<cloud>/outputs.tf.j2) configure.sh reads the issuer from.
ISSUER_OUTPUT = "kubernetes_oidc_issuer_url"


def vault_policy_name(region: RegionPlan) -> str:
    return f"{region.cluster_name}-external-secrets"


def _kong_paths(region: RegionPlan) -> list[str]:
    return sorted({r[len("vault:"):].partition("#")[0] for _, r in kong_proxy_tls_refs(region) if r.startswith("vault:")})


def publisher_paths(region: RegionPlan) -> list[str]:
    """The Vault KV paths the region's Ansible writes with the publisher's policy (configure.sh writes it): the
    internal CA certificate its pgbouncer role publishes (compiler/ir/data_access.py; ESO only reads it) and, on
    Azure, Kong's certificate issued beside it (compiler/ir/edge.py); [] when the CA is not published to Vault, and
    then configure.sh has no publisher pass."""
    ca = sorted({a.ca_ref[len("vault:"):].partition("#")[0] for a in region.data_access if a.ca_ref.startswith("vault:")})
    return ca + _kong_paths(region) if ca else []


def vault_files(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    """The Vault policy (read on exactly the KV v2 paths the cluster is delivered) and the commands that create the
    cluster's JWT auth mount, trusting the cluster's OIDC issuer, and ESO's role bound to its ServiceAccount (the
    mount, role and audience are compiler/ir/identity.py's, which the ClusterSecretStore names too); empty without
    `vault:` references."""
    eso = region.identity(EXTERNAL_SECRETS)
    if eso is None or not eso.vault_paths:
        return {}
    policy = "".join(f'path "{p}" {{\n  capabilities = ["read"]\n}}\n\n' for p in eso.vault_paths).rstrip() + "\n"
    mount, name = vault_auth_mount(region.cluster_name), vault_policy_name(region)
    subject = service_account_subject(eso.namespace, eso.service_account)
    paths = publisher_paths(region)
    publisher = ""
    if paths:
        what = "the region's CA certificate" + (" and Kong's certificate and key" if _kong_paths(region) else "")
        policy_paths = "".join('path "' + p + '" {\n  capabilities = ["create", "read", "update"]\n}\n' for p in paths)
        publisher = f"""# Attach this policy to the token Ansible runs with: the pgbouncer role writes {what} there.
vault policy write {region.cluster_name}-internal-ca-publisher - <<'EOF'
{policy_paths}EOF
"""
    # The publisher's policy needs no cluster: where the first Ansible run must come before the cluster (Azure: the
    # Application Gateway, which the cluster's ingress add-on names, trusts the CA that run makes), a first pass
    # with --publisher-only writes it alone. No quote character inside a ${VAR:?message}: bash reads a single quote
    # there as quoting (an odd number is a syntax error), dash does not.
    need = f""": "${{KUBERNETES_OIDC_ISSUER_URL:?set it to the cluster OIDC issuer URL, from terraform output {ISSUER_OUTPUT}}}"
"""
    if publisher:
        need = f"""if [ "${{1:-}}" != --publisher-only ]; then
  {need}fi
"""
        publisher += """if [ "${1:-}" = --publisher-only ]; then
  exit 0
fi
"""
    first_pass = ("\n# `sh configure.sh --publisher-only` writes only the publisher's policy: a first pass before the "
                  "cluster exists." if publisher else "")
    script = f"""# Vault side of the External Secrets Operator in {region.name}: run once per cluster by a Vault operator
# with `sh configure.sh` (VAULT_ADDR={region.settings.security.vault_address}), after `terraform apply` of the region root.
# ESO logs in with Vault's JWT auth method: Vault verifies its ServiceAccount token with the signing keys the
# cluster's OIDC issuer publishes and never calls the cluster's API server.
# KUBERNETES_OIDC_ISSUER_URL: the cluster's OIDC issuer
# (`terraform -chdir=generated/terraform/regions/{region.name} output -raw {ISSUER_OUTPUT}`).{first_pass}
set -eu
{need}here=$(dirname "$0")
{publisher}vault auth list -format=json | grep -q '"{mount}/"' || vault auth enable -path={mount} jwt
vault write auth/{mount}/config oidc_discovery_url="$KUBERNETES_OIDC_ISSUER_URL" bound_issuer="$KUBERNETES_OIDC_ISSUER_URL"
vault policy write {name} "$here/external-secrets.hcl"
vault write auth/{mount}/role/{VAULT_ROLE} \\
  role_type=jwt \\
  bound_audiences={VAULT_AUDIENCE} \\
  user_claim=sub \\
  bound_subject={subject} \\
  token_policies={name} \\
  token_ttl=1h token_max_ttl=4h
"""
    return {"vault/external-secrets.hcl": policy, "vault/configure.sh": script}
