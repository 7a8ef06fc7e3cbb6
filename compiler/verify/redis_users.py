"""Verify checker: every Redis user a pod is told to log in as exists where the cache keeps its users, with exactly
the pod's own keys, and, on a managed cache, is bound to the pod's own cloud identity (layer `redis-user`, object
level: one result per data-tier ConfigMap that names a REDIS_USERNAME). Read from the generated tree alone:

- the ConfigMap (kubernetes/<region>/*.yaml) gives REDIS_USERNAME, REDIS_KEY_PREFIX, REDIS_AUTH_MODE (absent or
  `password`: the self-managed cluster's ACL), REDIS_CACHE_NAME and REDIS_TLS_CA_FILE; the Deployments that read
  it with envFrom give the ServiceAccount (and, on GCP, the volume mounted for the CA file);
- `password` (self-managed): datastores/<region>/redis-topology.json's acl_include (what the Ansible redis role
  writes into acl.conf) has the user, its only key pattern `~<prefix>*` and channel pattern `&<prefix>*`;
- `aws-iam`: the region root's managed_redis module call has the ElastiCache user (IAM authentication in the
  module library, in the replication group's user group) with that key and channel pattern, the cache is the
  root's replication group (`local.name`), and the workload_identity entry of the pod's namespace/ServiceAccount
  may connect as exactly that user to exactly that cache;
- `gcp-iam`: the module call's connection_users names the owner of the pod's namespace/ServiceAccount identity, the
  cache is the root's cluster (`<local.name>-redis`), the library grants roles/redis.dbConnectionUser conditioned on
  the cluster, and the CA file is mounted from a Secret whose ExternalSecret reads the entry the module writes the
  server CA to (Memorystore has no key ACL: no key pattern is checked there);
- `entra-id`: the module call has the user's access policy with that key pattern, assigned (alias = the user) to
  the identity of the pod's namespace/ServiceAccount, and the library assigns it to that identity's principal id.
"""

from __future__ import annotations

import json
import posixpath

from compiler.verify import Broken, Result
from compiler.verify.infra import _doc, library_lacks, workload_identity

LAYERS = ("redis-user",)
LAYER = "redis-user"
BROAD = {"allkeys", "allchannels", "~*", "&*", "+@all", "+@admin", "+@dangerous", "nopass"}
# What each managed library must contain for the module-call entries to mean what this checker assumes.
LIBRARY = {
    "aws-iam": ('for_each = var.users', 'type = "iam"', 'user_name     = each.key',
                'access_string = "on ${each.value.access_string}"',
                'user_group_ids             = [aws_elasticache_user_group.this.user_group_id]'),
    "gcp-iam": ('for_each = toset(var.connection_users)', 'role    = "roles/redis.dbConnectionUser"',
                'member  = var.identity_members[each.key]',
                'expression  = "resource.name == \\"${google_redis_cluster.this.id}\\""',
                'secret      = var.server_ca_secret_ids[var.server_ca_secret]'),
    "entra-id": ('permissions    = each.value.permissions',
                 'object_id          = var.principal_ids[each.value.identity]',
                 'access_policy_name = azurerm_redis_cache_access_policy.service[each.key].name'),
}
CLOUD = {"aws-iam": "aws", "gcp-iam": "gcp", "entra-id": "azure"}
WIRED = {"gcp-iam": ("module.workload_identity.members", "module.workload_identity.secret_ids"),
         "entra-id": ("module.workload_identity.principal_ids",)}


def _b(file, line, subject, message) -> Broken:
    return Broken(file, line, LAYER, subject, message)


def _scope(rules: str, prefix: str, channels: bool) -> str:
    """'' when the rules reach exactly the keys (and channels) `<prefix>*`, else what is wrong."""
    words = str(rules).split()
    keys = [w for w in words if w[:1] in "~%"]
    chans = [w for w in words if w.startswith("&")]
    broad = sorted(BROAD & set(words))
    if broad:
        return f"grants {', '.join(broad)}"
    if keys != [f"~{prefix}*"]:
        return f"its key patterns {keys or 'none'} are not exactly ~{prefix}*"
    if channels and chans != [f"&{prefix}*"]:
        return f"its channel patterns {chans or 'none'} are not exactly &{prefix}*"
    if not channels and chans:
        return f"channel patterns {chans} on an engine without a channel ACL"
    return ""


def _settings(tree, region):
    """(file, line, ConfigMap namespace/name, data, [(Deployment file, line, ServiceAccount, pod spec)])."""
    maps, pods = [], {}
    for rel in tree.glob(f"kubernetes/{region}/*.yaml"):
        for offset, doc in tree.documents(rel):
            if not isinstance(doc, dict):
                continue
            line = offset + doc.get("__line__", 1)
            meta = doc.get("metadata") or {}
            if doc.get("kind") == "ConfigMap" and "REDIS_USERNAME" in (doc.get("data") or {}):
                maps.append((rel, line, meta.get("namespace", ""), meta.get("name", ""),
                             doc["data"]))
            elif doc.get("kind") == "Deployment":
                spec = ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}
                for ctr in spec.get("containers") or []:
                    for src in ctr.get("envFrom") or []:
                        ref = (src or {}).get("configMapRef") or {}
                        if ref.get("name"):
                            pods.setdefault((meta.get("namespace", ""), ref["name"]), []).append(
                                (rel, line, spec.get("serviceAccountName") or "default", spec, ctr))
    for rel, line, ns, name, data in maps:
        yield rel, line, ns, name, data, pods.get((ns, name), [])


def check(tree, region, connections):
    main_rel = f"terraform/regions/{region}/main.tf"
    out = []
    for rel, line, ns, name, data, pods in _settings(tree, region):
        subject = f"ConfigMap {ns}/{name}"
        user, prefix = str(data.get("REDIS_USERNAME", "")), str(data.get("REDIS_KEY_PREFIX", ""))
        mode = str(data.get("REDIS_AUTH_MODE", "password"))
        broken: list[Broken] = []
        if mode == "password":
            broken += _self_managed(tree, region, rel, line, subject, user, prefix)
        elif mode in CLOUD:
            broken += _managed(tree, region, main_rel, rel, line, subject, data, user, prefix, mode, pods)
        else:
            broken.append(_b(rel, line, subject, f"REDIS_AUTH_MODE {mode} is no mode a cache here lets in"))
        out.append(Result(LAYER, subject, list(dict.fromkeys(broken))))  # once for all its Deployments
    return out


def _self_managed(tree, region, rel, line, subject, user, prefix) -> list[Broken]:
    topo_rel = f"datastores/{region}/redis-topology.json"
    text = tree.text(topo_rel)
    if text is None:
        return [_b(rel, line, subject, f"pods log in as Redis user {user} but {topo_rel} (the self-managed "
                                       "cluster's ACL) does not exist")]
    users = ((json.loads(text).get("acl_include") or {}).get("users")) or []
    entry = next((u for u in users if u.get("name") == user), None)
    at = tree.line_of(topo_rel, f'"name": "{user}"') or 1
    if entry is None:
        return [_b(topo_rel, 0, subject, f"the cluster's ACL has no user {user}")]
    why = _scope(entry.get("rules", ""), prefix, channels=True)
    return [_b(topo_rel, at, subject, f"ACL user {user}: {why}")] if why else []


def _managed(tree, region, main_rel, rel, line, subject, data, user, prefix, mode, pods) -> list[Broken]:
    cloud = CLOUD[mode]
    doc = _doc(tree, main_rel)
    call = doc.block("module", "managed_redis") if doc else None
    ident = doc.block("module", "workload_identity") if doc else None
    if call is None:
        return [_b(rel, line, subject, f"REDIS_AUTH_MODE {mode} but {main_rel} creates no managed_redis")]
    lib_rel = f"terraform/modules/{cloud}/managed_redis/main.tf"
    missing = library_lacks(tree, lib_rel, LIBRARY[mode])
    if missing:
        return [_b(lib_rel, 0, subject, f"the {cloud} managed_redis library no longer has `{missing}`")]
    for wire in WIRED.get(mode, ()):
        if not any(str(v) == wire for v in call.attrs.values()):
            return [_b(main_rel, call.line, subject, f"the managed_redis call is not given {wire}")]
    locals_ = doc.block("locals")
    base = str(locals_.get("name", "")) if locals_ is not None else ""
    cache = base if cloud == "aws" else f"{base}-redis"
    if data.get("REDIS_CACHE_NAME") != cache:
        return [_b(rel, line, subject, f"REDIS_CACHE_NAME {data.get('REDIS_CACHE_NAME')} is not the region's "
                                       f"managed cache {cache}")]
    if not pods:
        return [_b(rel, line, subject, "no Deployment reads these settings")]
    broken: list[Broken] = []
    users = call.get("users") or {}
    entry = users.get(user) if isinstance(users, dict) else None
    if cloud != "gcp":
        if not isinstance(entry, dict):
            return [_b(main_rel, call.line_of("users"), subject, f"the managed cache has no user {user}")]
        rules = entry.get("access_string" if cloud == "aws" else "permissions", "")
        why = _scope(rules, prefix, channels=cloud == "aws")
        if why:
            broken.append(_b(main_rel, users.lines.get(user, call.line), subject, f"cache user {user}: {why}"))
    for prel, pline, sa, spec, ctr in pods:
        ns = subject.split(" ", 1)[1].split("/")[0]
        owner, ident_entry = workload_identity(ident, ns, sa)
        who = f"{ns}/{sa}"
        if owner is None:
            broken.append(_b(prel, pline, subject, f"ServiceAccount {who} has no cloud identity to log in as {user}"))
            continue
        if cloud == "aws" and (ident_entry.get("redis_user") != user or ident_entry.get("redis_cache") != cache):
            broken.append(_b(main_rel, ident.line, subject, f"identity {owner} of {who} may not connect as {user} "
                                                            f"to {cache} (it names {ident_entry.get('redis_user')} "
                                                            f"on {ident_entry.get('redis_cache')})"))
        elif cloud == "azure" and entry.get("identity") != owner:
            broken.append(_b(main_rel, users.lines.get(user, call.line), subject,
                             f"the policy of {user} is assigned to {entry.get('identity')}, not {owner} ({who})"))
        elif cloud == "gcp":
            allowed = call.get("connection_users") or []
            if owner not in allowed:
                broken.append(_b(main_rel, call.line_of("connection_users"), subject,
                                 f"{owner}'s service account ({who}) may not connect to {cache}"))
            broken += _gcp_ca(tree, region, call, main_rel, prel, pline, subject, data, spec, ctr, ns)
    return broken


def _gcp_ca(tree, region, call, main_rel, prel, pline, subject, data, spec, ctr, ns) -> list[Broken]:
    ca_file = str(data.get("REDIS_TLS_CA_FILE", ""))
    if not ca_file:
        return [_b(prel, pline, subject, "no REDIS_TLS_CA_FILE: clients cannot verify Memorystore's server CA")]
    folder = posixpath.dirname(ca_file)
    mount = next((m for m in ctr.get("volumeMounts") or [] if m.get("mountPath") == folder), None)
    vol = next((v for v in spec.get("volumes") or [] if mount and v.get("name") == mount.get("name")), None)
    secret = ((vol or {}).get("secret") or {}).get("secretName")
    if not secret:
        return [_b(prel, pline, subject, f"nothing is mounted from a Secret at {folder} (REDIS_TLS_CA_FILE)")]
    entry = call.get("server_ca_secret")
    for rel in tree.glob(f"helm/{region}/charts/*/templates/*.yaml"):
        for doc in tree.yaml_docs(rel):
            if isinstance(doc, dict) and doc.get("kind") == "ExternalSecret" \
                    and (doc.get("metadata") or {}).get("namespace") == ns \
                    and ((doc.get("spec") or {}).get("target") or {}).get("name") == secret:
                keys = [((d or {}).get("remoteRef") or {}).get("key") for d in (doc["spec"].get("data") or [])]
                key = posixpath.basename(ca_file)
                if entry in keys and any((d or {}).get("secretKey") == key for d in doc["spec"]["data"]):
                    return []
                return [_b(rel, doc.get("__line__", 1), subject, f"Secret {ns}/{secret} is not filled from "
                                                                 f"{entry}, where Terraform writes the server CA")]
    return [_b(main_rel, call.line_of("server_ca_secret"), subject,
               f"no ExternalSecret creates Secret {ns}/{secret} (the server CA at {folder})")]
