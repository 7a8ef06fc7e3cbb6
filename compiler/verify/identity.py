"""Verify checker: every cloud identity a pod asks for resolves to an identity Terraform creates, trusting exactly
that pod's ServiceAccount (layer `identity`, object level). Read from the generated tree alone:

- the ServiceAccounts of kubernetes/<region>/*.yaml and the ServiceAccounts the helm values name
  (`serviceAccount` of external-secrets, `rbac.serviceAccount` of cluster-autoscaler) with their annotations;
- AWS: `eks.amazonaws.com/role-arn` arn:aws:iam::<account>:role/<name> -> the region root's workload_identity
  module has an identity with that role_name for exactly this namespace/ServiceAccount, the root's provider is
  pinned to that account, and the module's trust policy takes its subject from those two fields;
- GCP: `iam.gke.io/gcp-service-account` <id>@<project>.iam.gserviceaccount.com -> an identity with that
  account_id for this namespace/ServiceAccount in that project, and the module's Workload Identity binding is
  serviceAccount:<project>.svc.id.goog[<namespace>/<name>] from those fields;
- Azure: pods labelled `azure.workload.identity/use: "true"` run as a ServiceAccount that workload-identities.sh
  annotates from the root's `workload_identity_client_ids` output, for an identity of this
  namespace/ServiceAccount whose federated credential's subject and issuer (the cluster's OIDC issuer) the module
  sets from them;
- the External Secrets Operator's Vault login: a ClusterSecretStore with a `vault` provider logs in with Vault's JWT
  auth method at the mount, with the role, that terraform/regions/<region>/vault/configure.sh enables and writes: a
  `jwt` role whose bound_audiences the token ESO requests carries and whose bound_subject is the store's
  ServiceAccount (one the tree defines), on a mount configured from the cluster's OIDC issuer, which the region root
  outputs for the script. Vault's Kubernetes auth method would have Vault call the cluster's TokenReview API, which
  it cannot reach: that is broken too.
"""

from __future__ import annotations

import re
import shlex

from compiler.verify import Result
from compiler.verify.infra import _doc

LAYERS = ("identity",)

ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::(\d{12}):role/([\w+=,.@-]+)$")
GSA = re.compile(r"^([a-z][a-z0-9-]{4,28}[a-z0-9])@([a-z][a-z0-9-]+)\.iam\.gserviceaccount\.com$")
AZURE_USE = "azure.workload.identity/use"
ANNOTATE = re.compile(r"^annotate (\S+) (\S+) (\S+)$", re.M)
# The subject each module builds from an identity's fields (its literal text in the module library).
SUBJECTS = {
    "aws": '"system:serviceaccount:${each.value.namespace}:${each.value.service_account}"',
    "gcp": '"serviceAccount:${var.project}.svc.id.goog[${each.value.namespace}/${each.value.service_account}]"',
    "azure": '"system:serviceaccount:${each.value.namespace}:${each.value.service_account}"',
}
HELM_SERVICE_ACCOUNTS = {"external-secrets": ("external-secrets", ("serviceAccount",)),
                         "cluster-autoscaler": ("kube-system", ("rbac", "serviceAccount")),
                         "aws-load-balancer-controller": ("kube-system", ("serviceAccount",))}


def _service_accounts(tree, region: str):
    """(file, line, namespace, name, annotations) of every ServiceAccount the region's tree defines."""
    for rel in tree.glob(f"kubernetes/{region}/*.yaml"):
        for offset, doc in tree.documents(rel):
            if isinstance(doc, dict) and doc.get("kind") == "ServiceAccount":
                meta = doc.get("metadata") or {}
                yield rel, offset + doc.get("__line__", 1), meta.get("namespace", ""), meta.get("name", ""), \
                    {k: v for k, v in (meta.get("annotations") or {}).items() if k != "__line__"}
    for release, (ns, path) in HELM_SERVICE_ACCOUNTS.items():
        rel = f"helm/{region}/{release}.values.yaml"
        docs = tree.yaml_docs(rel) if tree.exists(rel) else []
        node = docs[0] if docs else None
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get("name"):
            yield rel, node.get("__line__", 1), ns, node["name"], \
                {k: v for k, v in (node.get("annotations") or {}).items() if k != "__line__"}


def _module(tree, region: str, cloud: str):
    rel = f"terraform/regions/{region}/main.tf"
    doc = _doc(tree, rel)
    block = doc.block("module", "workload_identity") if doc else None
    return rel, block


def _library_has(tree, cloud: str, text: str) -> bool:
    lib = tree.text(f"terraform/modules/{cloud}/workload_identity/main.tf") or ""
    return text in lib


def _match(block, field: str, value: str, ns: str, sa: str):
    idents = block.get("identities") if block is not None else None
    if not isinstance(idents, dict):
        return None
    for owner, entry in idents.items():
        if isinstance(entry, dict) and entry.get(field) == value and entry.get("namespace") == ns \
                and entry.get("service_account") == sa:
            return owner
    return None


def _broken(file, line, subject, message):
    from compiler.verify import Broken
    return Broken(file, line, "identity", subject, message)


def check(tree, region, connections):
    cloud = tree.region_info(region).get("cloud", "")
    rel_main, block = _module(tree, region, cloud)
    results = []
    accounts = list(_service_accounts(tree, region))
    for rel, line, ns, name, notes in accounts:
        subject = f"ServiceAccount {ns}/{name}"
        broken = []
        arn = notes.get("eks.amazonaws.com/role-arn")
        gsa = notes.get("iam.gke.io/gcp-service-account")
        if arn is not None:
            m = ROLE_ARN.match(str(arn))
            providers = tree.text(f"terraform/regions/{region}/providers.tf") or ""
            if cloud != "aws":
                broken.append(_broken(rel, line, subject, f"an IAM role annotation in a {cloud} region"))
            elif not m:
                broken.append(_broken(rel, line, subject, f"{arn} is not an IAM role ARN"))
            elif not _match(block, "role_name", m.group(2), ns, name):
                broken.append(_broken(rel_main, block.line if block else 0, subject,
                                      f"no workload identity creates role {m.group(2)} for {ns}/{name}"))
            elif f'"{m.group(1)}"' not in providers:
                broken.append(_broken(f"terraform/regions/{region}/providers.tf", 0, subject,
                                      f"the region's AWS provider is not pinned to account {m.group(1)} of {arn}"))
            elif not _library_has(tree, "aws", SUBJECTS["aws"]):
                broken.append(_broken(f"terraform/modules/aws/workload_identity/main.tf", 0, subject,
                                      "the role's trust policy does not name the ServiceAccount's subject"))
        if gsa is not None:
            m = GSA.match(str(gsa))
            if cloud != "gcp":
                broken.append(_broken(rel, line, subject, f"a Google service-account annotation in a {cloud} region"))
            elif not m:
                broken.append(_broken(rel, line, subject, f"{gsa} is not a Google service-account e-mail"))
            elif not _match(block, "account_id", m.group(1), ns, name):
                broken.append(_broken(rel_main, block.line if block else 0, subject,
                                      f"no workload identity creates {m.group(1)} for {ns}/{name}"))
            elif block.get("project") != m.group(2):
                broken.append(_broken(rel_main, block.line_of("project"), subject,
                                      f"the workload identities live in project {block.get('project')}, not {m.group(2)}"))
            elif not _library_has(tree, "gcp", SUBJECTS["gcp"]):
                broken.append(_broken(f"terraform/modules/gcp/workload_identity/main.tf", 0, subject,
                                      "the Workload Identity binding does not name the ServiceAccount"))
        if arn is not None or gsa is not None:
            results.append(Result("identity", subject, broken))
    if cloud == "azure":
        results += _check_azure(tree, region, rel_main, block, accounts)
    results += _check_vault_login(tree, region, cloud, {(ns, name) for _, _, ns, name, _ in accounts})
    return results


def _check_azure(tree, region, rel_main, block, accounts) -> list[Result]:
    script_rel = f"kubernetes/{region}/workload-identities.sh"
    script = tree.text(script_rel) or ""
    annotated = {(ns, sa): owner for owner, ns, sa in ANNOTATE.findall(script)}
    outputs = tree.text(f"terraform/regions/{region}/outputs.tf") or ""
    out = []
    wanted: dict = {}  # (namespace, ServiceAccount) -> (file, line) of the first pod (or the script) asking
    for rel in tree.glob(f"kubernetes/{region}/*.yaml"):
        for offset, doc in tree.documents(rel):
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            tpl = (doc.get("spec") or {}).get("template") or {}
            if str(((tpl.get("metadata") or {}).get("labels") or {}).get(AZURE_USE, "")).lower() == "true":
                ns = (doc.get("metadata") or {}).get("namespace", "")
                sa = (tpl.get("spec") or {}).get("serviceAccountName") or "default"
                wanted.setdefault((ns, sa), (rel, offset + doc.get("__line__", 1)))
    for ns, sa in annotated:
        wanted.setdefault((ns, sa), (script_rel, 0))
    for (ns, sa), (rel, line) in sorted(wanted.items()):
        subject = f"ServiceAccount {ns}/{sa}"
        broken = []
        owner = annotated.get((ns, sa))
        entry = (block.get("identities") or {}).get(owner) if block is not None and owner else None
        if owner is None:
            broken.append(_broken(rel, line, subject, f"pods use the Azure workload identity but {script_rel} "
                                                      "gives the ServiceAccount no client id"))
        elif not isinstance(entry, dict) or entry.get("namespace") != ns or entry.get("service_account") != sa:
            broken.append(_broken(rel_main, block.line if block else 0, subject,
                                  f"no workload identity {owner} trusts {ns}/{sa}"))
        elif 'output "workload_identity_client_ids"' not in outputs:
            broken.append(_broken(f"terraform/regions/{region}/outputs.tf", 0, subject,
                                  "the root has no workload_identity_client_ids output for the script to read"))
        elif not _library_has(tree, "azure", SUBJECTS["azure"]) or \
                "module.kubernetes.oidc_issuer_url" not in str(block.get("oidc_issuer_url")):
            broken.append(_broken(rel_main, block.line, subject, "the federated credential does not trust the "
                                  "ServiceAccount's subject on the cluster's OIDC issuer"))
        out.append(Result("identity", subject, broken))
    return out


# ---------------------------------------------------------------- the External Secrets Operator's Vault login

ESO_DEFAULT_AUDIENCE = "vault"  # what ESO 2.9 adds to a requested token's audiences (providers/v1/vault/auth_jwt.go)
_SEPARATORS = {"|", "||", "&&", ";"}
_OUTPUT_READ = re.compile(r"output -raw ([A-Za-z0-9_]+)")  # the root's output the script has the operator read


def _vault_commands(script: str):
    """(line, argv) of every command of a POSIX sh script, continuation lines joined; a line shlex cannot split (a
    heredoc's body) is skipped."""
    lines = script.split("\n")
    i = 0
    while i < len(lines):
        start, text = i + 1, lines[i]
        while text.endswith("\\") and i + 1 < len(lines):
            i += 1
            text = text[:-1] + " " + lines[i]
        i += 1
        try:
            words = shlex.split(text, comments=True)
        except ValueError:
            continue
        cmd: list[str] = []
        for w in words + [";"]:
            if w in _SEPARATORS:
                if cmd:
                    yield start, cmd
                cmd = []
            else:
                cmd.append(w)


def _vault_setup(script: str) -> tuple[dict, dict, dict]:
    """What configure.sh does to Vault: ({mount: method}, {mount: (line, config)}, {(mount, role): (line, fields)})."""
    enabled, config, roles = {}, {}, {}
    for line, argv in _vault_commands(script):
        if argv[:3] == ["vault", "auth", "enable"]:
            path = next((a.split("=", 1)[1] for a in argv[3:] if a.startswith("-path=")), None)
            method = next((a for a in argv[3:] if not a.startswith("-")), "")
            enabled[(path or method).strip("/")] = method
        elif argv[:2] == ["vault", "write"] and len(argv) > 2 and argv[2].startswith("auth/"):
            fields = dict(a.split("=", 1) for a in argv[3:] if "=" in a)
            parts = argv[2][len("auth/"):].strip("/").split("/")
            if len(parts) >= 2 and parts[-1] == "config":
                config["/".join(parts[:-1])] = (line, fields)
            elif len(parts) >= 3 and parts[-2] == "role":
                roles[("/".join(parts[:-2]), parts[-1])] = (line, fields)
    return enabled, config, roles


def _vault_stores(tree, region: str):
    """(file, offset, line, name, vault provider) of every ClusterSecretStore of the region's charts that reads Vault
    (offset: the file's lines before the store's document, whose `__line__`s count from its own first line)."""
    for rel in tree.glob(f"helm/{region}/charts/*/templates/*.yaml"):
        for offset, doc in tree.documents(rel):
            if isinstance(doc, dict) and doc.get("kind") == "ClusterSecretStore":
                vault = ((doc.get("spec") or {}).get("provider") or {}).get("vault")
                if isinstance(vault, dict):
                    yield rel, offset, doc.get("__line__", 1), (doc.get("metadata") or {}).get("name", ""), vault


def _check_vault_login(tree, region: str, cloud: str, accounts: set) -> list[Result]:
    script_rel = f"terraform/regions/{region}/vault/configure.sh"
    out = []
    for rel, offset, line, name, vault in _vault_stores(tree, region):
        subject = f"ClusterSecretStore {name}"
        out.append(Result("identity", subject, _vault_login_broken(tree, region, cloud, accounts, script_rel, rel,
                                                                   offset, line, subject, vault)))
    return out


def _vault_login_broken(tree, region, cloud, accounts, script_rel, rel, offset, line, subject, vault) -> list:
    line += offset
    auth = {k: v for k, v in (vault.get("auth") or {}).items() if k != "__line__"}
    jwt = auth.get("jwt")
    if "kubernetes" in auth:
        return [_broken(rel, line, subject, "Vault's Kubernetes auth has Vault send each login's token to the "
                                            "cluster's TokenReview API, which needs the API server within Vault's "
                                            "reach and the ServiceAccount bound to system:auth-delegator; log in "
                                            "with the JWT auth method on the cluster's OIDC issuer")]
    if not isinstance(jwt, dict):
        return [_broken(rel, line, subject, f"logs in to Vault with {', '.join(sorted(auth)) or 'no auth'}, "
                                            f"not the JWT auth method {script_rel} configures")]
    line = offset + jwt["__line__"] if "__line__" in jwt else line
    script = tree.text(script_rel)
    if script is None:
        return [_broken(script_rel, 0, subject, "no script configures the Vault side of the store's login")]
    enabled, config, roles = _vault_setup(script)
    path, role_name = str(jwt.get("path") or "jwt").strip("/"), str(jwt.get("role") or "")
    token = jwt.get("kubernetesServiceAccountToken") or {}
    sa = token.get("serviceAccountRef") or {}
    ns, sa_name = sa.get("namespace"), sa.get("name")
    # ESO 2.9 requests the token for serviceAccountRef.audiences plus kubernetesServiceAccountToken.audiences,
    # which defaults to its own `vault`
    audiences = set(sa.get("audiences") or []) | set(token.get("audiences") or [ESO_DEFAULT_AUDIENCE])
    if enabled.get(path) != "jwt":
        return [_broken(rel, line, subject, f"{script_rel} enables no JWT auth method at {path}")]
    if (path, role_name) not in roles:
        return [_broken(rel, line, subject, f"{script_rel} writes no role {role_name!r} on auth/{path}")]
    role_line, role = roles[(path, role_name)]
    broken = []
    if not ns or not sa_name:
        broken.append(_broken(rel, line, subject, "the store names no ServiceAccount (and namespace) to request "
                                                  "the login token for"))
    elif (ns, sa_name) not in accounts:
        broken.append(_broken(rel, line, subject, f"the tree defines no ServiceAccount {ns}/{sa_name}"))
    elif role.get("bound_subject") != f"system:serviceaccount:{ns}:{sa_name}":
        broken.append(_broken(script_rel, role_line, subject, f"role {role_name} binds subject "
                                                              f"{role.get('bound_subject')}, not {ns}/{sa_name}"))
    if role.get("role_type") != "jwt":
        broken.append(_broken(script_rel, role_line, subject, f"role {role_name} is not role_type=jwt (the "
                                                              "method's default, oidc, refuses a JWT login)"))
    bound = {a for a in str(role.get("bound_audiences", "")).split(",") if a}
    if not bound & audiences:
        broken.append(_broken(script_rel, role_line, subject, f"role {role_name} binds audiences {sorted(bound)}; "
                                                              f"the token carries {sorted(audiences)}"))
    if path not in config:
        broken.append(_broken(script_rel, 0, subject, f"auth/{path} is never configured with an issuer"))
    else:
        config_line, fields = config[path]
        issuer = fields.get("oidc_discovery_url", "")
        read = _OUTPUT_READ.search(script)
        outputs = _doc(tree, f"terraform/regions/{region}/outputs.tf")
        block = outputs.block("output", read.group(1)) if outputs is not None and read else None
        lib = _doc(tree, f"terraform/modules/{cloud}/kubernetes/outputs.tf")
        if not issuer or fields.get("bound_issuer", issuer) != issuer:
            broken.append(_broken(script_rel, config_line, subject, f"auth/{path} does not discover its keys at the "
                                                                    "issuer it binds"))
        elif block is None:
            broken.append(_broken(f"terraform/regions/{region}/outputs.tf", 0, subject,
                                  "the root has no output with the cluster's OIDC issuer for the script to read"))
        elif str(block.get("value")) != "module.kubernetes.oidc_issuer_url" or lib is None \
                or lib.block("output", "oidc_issuer_url") is None:
            broken.append(_broken(f"terraform/regions/{region}/outputs.tf", block.line, subject,
                                  f"output {read.group(1)} is not the kubernetes module's OIDC issuer"))
    return broken
