"""Verify, object level: a pod that reaches the region's self-managed Elasticsearch can authenticate and verify it.

Called by the cluster checker with the objects it has read (kubernetes/<region>/ and the local Helm charts' manifests);
reads the Ansible inventory (ansible/inventories/<region>/hosts.yml and the variables the first `elasticsearch` host
gets, merged as Ansible merges them) for what the elasticsearch role creates. For each container whose environment
(env and envFrom, resolved through the tree's ConfigMaps and Secrets) sets ELASTICSEARCH_URLS while the inventory has
Elasticsearch hosts, or sets ELASTICSEARCH_USERNAME:

- ELASTICSEARCH_USERNAME is a literal, and an entry of the role's `elasticsearch_clients` creates that user;
- that entry's role covers ELASTICSEARCH_INDEX_PREFIX (an index `<prefix>x` matches one of its index patterns), and its
  `metadata.platformc_digest` is the digest of its definition (the role PUTs a role only when the digests differ, so a
  definition changed without its digest would never reach the cluster);
- ELASTICSEARCH_PASSWORD comes from a Secret the pod reads that holds the key, and when that Secret is an
  ExternalSecret's target, the store entry it reads is the one the role sets the user's password from (the inventory's
  lookup of the same reference);
- ELASTICSEARCH_CA_CERT is a file of a Secret volume mounted in the container (the Secret exists and holds the key).

For a container that sets ELASTICSEARCH_URLS while the inventory has no Elasticsearch hosts (managed search, Amazon
OpenSearch Service; compiler/ir/data_access.py SearchGrant), read from terraform/regions/<region>/main.tf and the
module library:

- ELASTICSEARCH_AUTH_MODE is `aws-sigv4` (else the pod cannot authenticate: the domain admits IAM-signed requests
  only) and ELASTICSEARCH_INDEX_PREFIX is a literal;
- every URL's host is the managed_search call's custom_endpoint (the name the domain's ACM certificate holds; the
  library serves it as the custom endpoint with the validated certificate);
- the pod's ServiceAccount has a workload_identity entry (owner) whose search paths on the call's domain are exactly
  `<prefix>*` and the health paths, and the call's `clients[owner]` admits exactly the same, its role ARNs being the
  workload_identity module's (the library's allow statements name var.client_role_arns of each client, and the denied
  paths cover every client's role).

Each finding names the Deployment (subject) and the file and line to fix; the message says "Elasticsearch".
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import re

from compiler.verify import Broken, Result, strip_lines
from compiler.verify.infra import _doc, library_lacks, workload_identity

URLS, USER, PASSWORD, PREFIX, CA = ("ELASTICSEARCH_URLS", "ELASTICSEARCH_USERNAME", "ELASTICSEARCH_PASSWORD",
                                    "ELASTICSEARCH_INDEX_PREFIX", "ELASTICSEARCH_CA_CERT")
GROUP = "elasticsearch"
CLIENTS_VAR = "elasticsearch_clients"


# ---------------------------------------------------------------- references, as the two sides spell them

_STRING = r"(?:'(?P<{0}>(?:[^'\\]|\\.)*)'|\(\s*'(?P<{0}64>[A-Za-z0-9+/=]*)'\s*\|\s*ansible\.builtin\.b64decode\s*\))"


def _jinja_string(m, name: str) -> str:
    if m.group(name) is not None:
        return m.group(name)
    return base64.b64decode(m.group(name + "64")).decode()


_LOOKUP = re.compile(r"lookup\(\s*'(?P<plugin>[\w.]+)'\s*,\s*(?:key=)?" + _STRING.format("name") + r"(?P<args>[^)]*)\)")
_FIELD = re.compile(r"\[\s*" + _STRING.format("field") + r"\s*\]\s*}}\s*$")
_VAULT_URL = re.compile(r"vault_url='https://(?P<vault>[^.']+)\.vault\.azure\.net'")
_PLUGIN_SCHEME = {"community.hashi_vault.vault_read": "vault", "amazon.aws.secretsmanager_secret": "aws-sm",
                  "google.cloud.gcp_secret_manager": "gcp-sm", "azure.azcollection.azure_keyvault_secret": "azure-kv",
                  "ansible.builtin.env": "env"}


def lookup_ref(value) -> str | None:
    """The secret reference an Ansible variable's lookup reads (`vault:path#field` ...), None for anything else."""
    if not isinstance(value, str):
        return None
    m = _LOOKUP.search(value.replace("\n", " "))
    if not m or m.group("plugin") not in _PLUGIN_SCHEME:
        return None
    scheme, name = _PLUGIN_SCHEME[m.group("plugin")], _jinja_string(m, "name")
    if scheme == "env":
        return f"env:{name}"
    f = _FIELD.search(value.replace("\n", " "))
    field = _jinja_string(f, "field") if f else ""
    if scheme == "vault" and field == "value":
        field = ""
    if scheme == "azure-kv":
        v = _VAULT_URL.search(m.group("args"))
        name = f"{v.group('vault')}/{name}" if v else name
    return f"{scheme}:{name}" + (f"#{field}" if field else "")


def external_ref(store: str, remote: dict) -> str:
    """The reference an ExternalSecret's data item reads from a ClusterSecretStore named like the helm target's."""
    key, prop = str(remote.get("key", "")), str(remote.get("property", "") or "")
    if store.startswith("azure-kv-"):
        return f"azure-kv:{store[len('azure-kv-'):]}/{key}" + (f"#{prop}" if prop else "")
    return f"{store}:{key}" + (f"#{prop}" if prop else "")


# ---------------------------------------------------------------- the pod's environment

def _environment(cl, ns: str, ctr: dict) -> dict:
    """variable -> ("value", text, where) | ("secret", name, key, where): envFrom in order, then env (which wins)."""
    from compiler.verify.cluster import _object_keys
    out: dict = {}
    for ef in ctr.get("envFrom") or []:
        prefix = ef.get("prefix", "")
        if ef.get("configMapRef"):
            cm = cl.get("ConfigMap", ns, ef["configMapRef"].get("name", ""))
            for k, v in ((cm.doc.get("data") or {}) if cm else {}).items():
                if k != "__line__":
                    out[prefix + k] = ("value", v, ef)
        if ef.get("secretRef"):
            name = ef["secretRef"].get("name", "")
            for k in _object_keys(cl, "Secret", ns, name) or ():
                out[prefix + k] = ("secret", name, k, ef)
    for e in ctr.get("env") or []:
        vf = e.get("valueFrom") or {}
        if "value" in e:
            out[e.get("name", "")] = ("value", e["value"], e)
        elif vf.get("secretKeyRef"):
            out[e.get("name", "")] = ("secret", vf["secretKeyRef"].get("name", ""), vf["secretKeyRef"].get("key", ""), e)
        elif vf.get("configMapKeyRef"):
            ref = vf["configMapKeyRef"]
            cm = cl.get("ConfigMap", ns, ref.get("name", ""))
            if cm and ref.get("key") in (cm.doc.get("data") or {}):
                out[e.get("name", "")] = ("value", cm.doc["data"][ref["key"]], e)
    return out


def _external_item(cl, ns: str, secret: str, key: str):
    """(store, remoteRef) of the ExternalSecret data item that fills Secret ns/secret's key; None when none does."""
    for es in cl.of("ExternalSecret"):
        target = (es.spec.get("target") or {}).get("name") or es.name
        if (es.namespace or ns) != ns or target != secret:
            continue
        store = (es.spec.get("secretStoreRef") or {}).get("name", "")
        for item in es.spec.get("data") or []:
            if isinstance(item, dict) and item.get("secretKey") == key:
                src = ((item.get("sourceRef") or {}).get("storeRef") or {}).get("name") or store
                return src, item.get("remoteRef") or {}, es
    return None


# ---------------------------------------------------------------- the check

def check(tree, region: str, cl) -> list[Result]:
    from compiler.verify.hosts import _Inventory
    inv = _Inventory(tree, region, read={CLIENTS_VAR})
    nodes = sorted(inv.hosts_in(GROUP))
    users: dict[str, dict] = {}
    origin = f"ansible/inventories/{region}/group_vars/{GROUP}.yml"
    inventory_read = tree.text(inv.hosts_file) is not None
    if nodes:
        values, origins = inv.variables(nodes[0])
        origin = origins.get(CLIENTS_VAR, origin)
        for entry in values.get(CLIENTS_VAR) or []:
            if isinstance(entry, dict) and isinstance(entry.get("username"), str):
                users.setdefault(entry["username"], entry)
    results = []
    for d in cl.of("Deployment"):
        pod = (d.spec.get("template") or {}).get("spec") or {}
        broken: list[Broken] = []
        relevant = False
        for ctr in pod.get("containers") or []:
            env = _environment(cl, d.namespace, ctr)
            if URLS in env and not nodes and USER not in env and inventory_read:
                relevant = True
                broken += _check_managed(tree, region, d, ctr, env)
                continue
            if not (USER in env or (URLS in env and nodes)):
                continue
            relevant = True
            broken += _check_container(tree, cl, d, ctr, env, users, origin, inventory_read and bool(nodes), region)
        if relevant:
            results.append(Result("objects", f"Deployment {d.namespace}/{d.name}", broken))
    return results


def _check_container(tree, cl, d, ctr, env, users, origin, self_managed, region) -> list[Broken]:
    from compiler.verify.cluster import _object_keys
    subject = f"Deployment {d.namespace}/{d.name}"
    out = []

    def bad(where, message, file=None, line=None):
        out.append(Broken(file or d.file, line if line is not None else d.at(where), "objects", subject, message))

    anchor = (env.get(URLS) or env.get(USER))[-1]
    user = env.get(USER)
    if user is None or user[0] != "value" or not str(user[1]):
        bad(anchor, f"the container {ctr.get('name')} reaches the self-managed Elasticsearch ({URLS}) but its "
                    f"environment has no {USER} (a literal, from its ConfigMap): it cannot authenticate")
        entry = None
    else:
        entry = users.get(str(user[1]))
        if self_managed and entry is None:
            bad(user[-1], f"Elasticsearch user {user[1]} ({USER}) is created by no entry of {origin} {CLIENTS_VAR} "
                          "(the elasticsearch role creates exactly those users)")
    if entry is not None:
        definition = {k: v for k, v in strip_lines(entry.get("definition") or {}).items() if k != "metadata"}
        prefix = env.get(PREFIX)
        if prefix and prefix[0] == "value":
            probe = f"{prefix[1]}x"
            patterns = [p for i in definition.get("indices") or [] for p in i.get("names") or []]
            if not any(fnmatch.fnmatchcase(probe, p) for p in patterns):
                bad(None, f"the Elasticsearch role {entry.get('role')} of user {user[1]} does not cover the index "
                          f"prefix {prefix[1]} ({PREFIX}): its indices are {', '.join(patterns) or 'none'}",
                    origin, entry.get("__line__", 0))
        digest = ((entry.get("definition") or {}).get("metadata") or {}).get("platformc_digest")
        want = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()
        if digest != want:
            bad(None, f"the Elasticsearch role {entry.get('role')}'s metadata.platformc_digest is not the digest of "
                      "its definition: the elasticsearch role would not PUT the changed role",
                origin, entry.get("__line__", 0))
    password = env.get(PASSWORD)
    if password is None or password[0] != "secret":
        bad(anchor, f"{PASSWORD} comes from no Secret the container reads: the Elasticsearch user has no password")
    elif entry is not None:
        item = _external_item(cl, d.namespace, password[1], password[2])
        want = lookup_ref(entry.get("password"))
        if item is not None and want is not None:
            store, remote, es = item
            got = external_ref(store, remote)
            if got != want:
                bad(None, f"{PASSWORD} is read from {got}, but the Elasticsearch user {user[1]} is given the password "
                          f"of {want} (the elasticsearch role, {origin})", es.file, es.at(remote))
    ca = env.get(CA)
    if self_managed and (ca is None or ca[0] != "value"):
        bad(anchor, f"the environment has no {CA}: the client cannot verify the Elasticsearch nodes' certificates "
                    "(the region's internal CA)")
    elif ca is not None and ca[0] == "value":
        path = str(ca[1])
        found = False
        volumes = {v.get("name"): v for v in (d.spec.get("template") or {}).get("spec", {}).get("volumes") or []}
        for m in ctr.get("volumeMounts") or []:
            base = str(m.get("mountPath", "")).rstrip("/") + "/"
            if not path.startswith(base) or m.get("subPath"):
                continue
            rest = path[len(base):]
            secret = (volumes.get(m.get("name")) or {}).get("secret") or {}
            items = secret.get("items")
            key = next((i.get("key") for i in items if i.get("path") == rest), None) if items else rest
            if not secret or key is None:
                continue
            keys = _object_keys(cl, "Secret", d.namespace, secret.get("secretName", ""))
            if keys is None or key in keys:
                found = True
        if not found:
            bad(ca[-1], f"{CA}={path} is no file of a Secret volume the container mounts: the client cannot verify "
                        "the Elasticsearch nodes' certificates")
    return out


# ---------------------------------------------------------------- managed search (Amazon OpenSearch Service)

AUTH, DOMAIN = "ELASTICSEARCH_AUTH_MODE", "ELASTICSEARCH_DOMAIN_NAME"
SIGV4 = "aws-sigv4"
HEALTH_PATHS = {"", "_cluster/health"}
INDEX_ACTIONS = {"es:ESHttpDelete", "es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut"}
HEALTH_ACTIONS = {"es:ESHttpGet", "es:ESHttpHead"}
# What the library must contain for the module-call entries to mean what this checker assumes.
SEARCH_LIBRARY = {
    "managed_search": ('identifiers = [var.client_role_arns[statement.value.owner]]',
                       'resources = ["${aws_opensearch_domain.this.arn}/${statement.value.path}"]',
                       'identifiers = [for owner in sort(keys(var.clients)) : var.client_role_arns[owner]]',
                       'resources = [for p in var.denied_paths : "${aws_opensearch_domain.this.arn}/${p}"]',
                       'access_policies = data.aws_iam_policy_document.access.json',
                       'custom_endpoint_enabled = true', 'custom_endpoint = var.custom_endpoint',
                       'custom_endpoint_certificate_arn = aws_acm_certificate_validation.endpoint.certificate_arn',
                       'domain_name = var.custom_endpoint'),
    "workload_identity": ('for_each = each.value.search_domain != null ? each.value.search_paths : []',
                          'resources = ["arn:${local.partition}:es:${local.region}:${local.account}:domain/'
                          '${each.value.search_domain}/${statement.value.path}"]'),
}


def _paths_why(paths, prefix: str) -> str:
    """'' when `paths` (module-call entries {actions, path}) are exactly <prefix>* with the index actions and the health
    paths with GET/HEAD, else what is wrong."""
    got = {}
    for p in paths or []:
        if isinstance(p, dict):
            got[str(p.get("path"))] = {str(a) for a in p.get("actions") or []}
    want = {prefix + "*": INDEX_ACTIONS, **{h: HEALTH_ACTIONS for h in HEALTH_PATHS}}
    if got != want:
        return (f"its paths {sorted(got) or 'none'} are not exactly {prefix}* and the health paths "
                f"(with {sorted(INDEX_ACTIONS)} / {sorted(HEALTH_ACTIONS)})")
    return ""


def _managed_context(tree, region):
    main_rel = f"terraform/regions/{region}/main.tf"
    doc = _doc(tree, main_rel)
    call = doc.block("module", "managed_search") if doc else None
    ident = doc.block("module", "workload_identity") if doc else None
    return main_rel, call, ident


def _check_managed(tree, region, d, ctr, env) -> list[Broken]:
    from urllib.parse import urlsplit
    subject = f"Deployment {d.namespace}/{d.name}"
    out: list[Broken] = []

    def bad(file, line, message):
        out.append(Broken(file, line, "objects", subject, message))

    anchor = env[URLS][-1]
    mode = env.get(AUTH)
    if mode is None or mode[0] != "value" or str(mode[1]) != SIGV4:
        bad(d.file, d.at(anchor), f"the container {ctr.get('name')} reaches the managed Elasticsearch (OpenSearch, "
                                  f"{URLS}) but its {AUTH} is not {SIGV4}: it cannot authenticate (the domain admits "
                                  "IAM-signed requests only)")
        return out
    prefix = env.get(PREFIX)
    if prefix is None or prefix[0] != "value" or not str(prefix[1]):
        bad(d.file, d.at(anchor), f"no {PREFIX}: the managed Elasticsearch admits the pod on its own prefix only")
        return out
    prefix = str(prefix[1])
    main_rel, call, ident = _managed_context(tree, region)
    if call is None:
        bad(main_rel, 0, f"{AUTH}={SIGV4} but {main_rel} creates no managed_search (OpenSearch) domain")
        return out
    for lib, lines in SEARCH_LIBRARY.items():
        rel = f"terraform/modules/aws/{lib}/main.tf"
        missing = library_lacks(tree, rel, lines)
        if missing:
            bad(rel, 0, f"the aws {lib} library no longer has `{missing}` (managed Elasticsearch access)")
            return out
    endpoint = str(call.get("custom_endpoint", ""))
    urls = str(env[URLS][1]) if env[URLS][0] == "value" else ""
    for url in filter(None, urls.split(",")):
        host = urlsplit(url).hostname or ""
        if host != endpoint:
            bad(d.file, d.at(env[URLS][-1]), f"{URLS} names {host}, not the managed Elasticsearch domain's custom "
                                             f"endpoint {endpoint or '(none)'}: its certificate does not hold that "
                                             "name, so a client verifying the hostname fails")
    if str(call.get("client_role_arns", "")) != "module.workload_identity.role_arns":
        bad(main_rel, call.line_of("client_role_arns"), "the managed_search call is not given "
                                                        "module.workload_identity.role_arns (the services' roles)")
        return out
    sa = ((d.spec.get("template") or {}).get("spec") or {}).get("serviceAccountName") or "default"
    owner, entry = workload_identity(ident, d.namespace, sa)
    who = f"{d.namespace}/{sa}"
    if owner is None:
        bad(main_rel, ident.line if ident is not None else 0,
            f"ServiceAccount {who} has no IAM role to sign its managed Elasticsearch (OpenSearch) requests")
        return out
    clients = call.get("clients") or {}
    admitted = clients.get(owner) if isinstance(clients, dict) else None
    if not isinstance(admitted, dict):
        bad(main_rel, call.line_of("clients"), f"the managed Elasticsearch (OpenSearch) domain's access policy: "
                                               f"{owner}'s role ({who}) is not admitted")
    else:
        why = _paths_why(admitted.get("paths"), prefix)
        if why:
            bad(main_rel, clients.lines.get(owner, call.line), f"the managed Elasticsearch (OpenSearch) domain admits "
                                                               f"{owner}'s role with {why} (its prefix is {prefix})")
    domain = str(call.get("domain_name", ""))
    if str(entry.get("search_domain", "")) != domain:
        bad(main_rel, ident.line, f"{owner}'s role ({who}) may not sign requests to the managed Elasticsearch "
                                  f"(OpenSearch) domain {domain} (it names {entry.get('search_domain')})")
    else:
        why = _paths_why(entry.get("search_paths"), prefix)
        if why:
            bad(main_rel, ident.line, f"{owner}'s role policy on the managed Elasticsearch (OpenSearch) domain: {why} "
                                      f"(its prefix is {prefix})")
    return out


def managed_checked(tree, region) -> dict[str, str]:
    """ServiceAccount (ns/sa) -> index prefix of each pod the managed check proved with nothing broken."""
    from compiler.verify import Tree
    from compiler.verify.cluster import _load
    tree = tree if isinstance(tree, Tree) else Tree(tree)
    cl = _load(tree, region)
    out = {}
    for d in cl.of("Deployment"):
        pod = (d.spec.get("template") or {}).get("spec") or {}
        for ctr in pod.get("containers") or []:
            env = _environment(cl, d.namespace, ctr)
            if URLS in env and USER not in env and not _check_managed(tree, region, d, ctr, env):
                out[f"{d.namespace}/{pod.get('serviceAccountName') or 'default'}"] = str(env[PREFIX][1])
    return out
