"""Managed Redis lets in exactly each service that uses it, as itself (issue 11: a Redis user per service).

Each one-cloud fixture (aws-only, gcp-only, azure-only) is compiled with `datastores.redis.deployment: managed`.
The tests read the generated Terraform back -- the region root's module calls and the module library -- and check,
for every service in every region, that what the cache lets in is the IR's RedisUser (compiler/ir/data_access.py)
bound to the service's own cloud identity, covering exactly its own keys (and channels where the engine has a
channel ACL), and that nothing else is let in: ElastiCache RBAC users with IAM authentication in the cache's user
group (the `default` user off) and elasticache:Connect on exactly the service's user and cache; Memorystore
roles/redis.dbConnectionUser conditioned on the cluster, and its server CA delivered to the pods; Azure Cache data
access policies assigned to each service's identity, access keys off. The access strings are also loaded into a
real redis-server as ACL users: the service's own keys are allowed, any other key and the admin commands are not.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from compiler.ir.data_access import (INTERNAL_CA_KEY, REDIS_CA_DIR, REDIS_ENV, elasticache_user, managed_redis_name,
                                     redis_commands, redis_users)
from compiler.ir.identity import parse_ref
from compiler.pipeline import compile_file
from compiler.targets import helm, kubernetes, terraform
from compiler.verify import verify
from compiler.verify.infra import read_hcl
from tests.conftest import REPO

CLOUDS = ("aws", "gcp", "azure")


def managed_spec(cloud: str, out: Path) -> Path:
    """The <cloud>-only fixture with a managed Redis."""
    text = (REPO / f"tests/cases/{cloud}-only/platform.yaml").read_text()
    new = re.sub(r"(\n    redis:\n)(      instance:)", r"\1      deployment: managed\n\2", text, count=1)
    assert new != text
    out.write_text(new)
    return out


@pytest.fixture(scope="module", params=CLOUDS)
def case(request, tmp_path_factory):
    spec = managed_spec(request.param, tmp_path_factory.mktemp(f"managed-redis-{request.param}") / "platform.yaml")
    return request.param, compile_file(str(spec)).plan


def _tf(plan, region) -> dict[str, str]:
    files = terraform.emit_region(plan, region)
    files.update(terraform.emit_global(plan))  # the module library
    return files


def _call(files, region, module):
    return read_hcl(files[f"terraform/regions/{region.name}/main.tf"]).block("module", module)


def _lib(files, cloud, module):
    return read_hcl(files[f"terraform/modules/{cloud}/{module}/main.tf"])


def _users_of(region):
    """Service -> its RedisUser, for the services of this region that use redis."""
    return {u.service: u for u in redis_users(region.data_access)}


def _scope(words: str) -> tuple[list[str], list[str]]:
    w = words.split()
    return [x for x in w if x[:1] in "~%"], [x for x in w if x[:1] == "&"]


# ---------------------------------------------------------------- the IR

def test_every_service_using_redis_gets_a_user_bound_to_its_identity(case):
    cloud, plan = case
    for region in plan.regions:
        users = _users_of(region)
        assert set(users) == {s.name for s in region.services if "redis" in s.uses} != set()
        for svc, u in users.items():
            assert u.password_ref == "" and u.auth == {"aws": "aws-iam", "gcp": "gcp-iam", "azure": "entra-id"}[cloud]
            assert u.identity == svc and u.cache == managed_redis_name(cloud, region.cluster_name)
            ident = region.identity(svc)
            assert ident.has_cloud_identity and (ident.redis_user, ident.redis_cache) == (u.name, u.cache)
            keys, channels = _scope(u.access_string)
            assert keys == [f"~{svc}:*"]
            assert channels == ([] if cloud == "azure" else [f"&{svc}:*"])  # Azure Cache runs 6.0: no channel ACL
            assert u.name == (elasticache_user(region.cluster_name, svc) if cloud == "aws" else svc)
            access = next(a for a in region.data_access if a.service == svc)
            # no password anywhere: nothing to deliver, the pod authenticates as its identity
            assert REDIS_ENV["password"] not in dict(access.secrets)
            assert access.settings[REDIS_ENV["auth"]] == u.auth and access.settings[REDIS_ENV["user"]] == u.name
            assert access.settings[REDIS_ENV["cache"]] == u.cache
        # the services that do not use redis get no cache grant
        for ident in region.identities:
            if ident.owner not in users:
                assert not ident.redis_user and not ident.redis_cache


def test_azure_commands_are_those_of_redis_6_0(case):
    cloud, plan = case
    if cloud != "azure":
        pytest.skip("Azure only")
    for u in redis_users(plan.regions[0].data_access):
        assert u.commands == redis_commands("6.0")
        assert not {"+reset", "+client|info", "+eval_ro", "+evalsha_ro", "+cluster|shards", "+client|setinfo"} \
            & set(u.commands)


def test_self_managed_commands_did_not_change():
    """The version filter leaves 7.0 and 7.2 as they were (every command known there)."""
    from compiler.ir.data_access import REDIS_72_COMMANDS, REDIS_CLIENT_COMMANDS, REDIS_DATA_RULES
    assert redis_commands("7.0") == REDIS_DATA_RULES + REDIS_CLIENT_COMMANDS
    assert redis_commands("7.2") == REDIS_DATA_RULES + REDIS_CLIENT_COMMANDS + REDIS_72_COMMANDS


# ---------------------------------------------------------------- AWS ElastiCache: RBAC users with IAM

def _connect_resources(lib, entry: dict) -> list[str] | None:
    """The elasticache:Connect statement's resources as Terraform renders them for one identity (None: absent)."""
    doc = lib.block("data", "aws_iam_policy_document", "access")
    for dyn in doc.all("dynamic"):
        content = dyn.block("content")
        if "elasticache:Connect" not in list(content.get("actions") or []):
            continue
        guard = str(dyn.get("for_each"))
        assert guard == "each.value.redis_user != null ? [1] : []", guard
        if entry.get("redis_user") is None:
            return None
        out = []
        for r in content.get("resources"):
            text = str(r).strip('"')
            for k in ("redis_user", "redis_cache"):
                text = text.replace("${each.value." + k + "}", entry[k])
            text = text.replace("${local.partition}", "aws").replace("${local.region}", "REGION")
            out.append(text.replace("${local.account}", "ACCOUNT"))
        return out
    return None


def test_aws_elasticache_users_and_connect_grants_are_exactly_the_services_own(case):
    cloud, plan = case
    if cloud != "aws":
        pytest.skip("AWS only")
    for region in plan.regions:
        files = _tf(plan, region)
        users = _users_of(region)
        call = _call(files, region, "managed_redis")
        got = {k: dict(v) for k, v in call.get("users").items()}
        assert got == {u.name: {"service": s, "access_string": u.access_string} for s, u in users.items()}
        lib = _lib(files, "aws", "managed_redis")
        svc_user = lib.block("resource", "aws_elasticache_user", "service")
        assert svc_user.get("for_each") == "var.users"
        assert (svc_user.get("user_id"), svc_user.get("user_name")) == ("each.key", "each.key")  # IAM: id == name
        assert svc_user.get("access_string") == "on ${each.value.access_string}"
        assert svc_user.block("authentication_mode").get("type") == "iam"
        assert svc_user.get("passwords") is None and svc_user.get("no_password_required") is None
        default = lib.block("resource", "aws_elasticache_user", "default")
        assert default.get("user_name") == "default" and default.get("access_string") == "off -@all"
        assert default.block("authentication_mode").get("type") == "no-password-required"  # off: nobody logs in
        group = lib.block("resource", "aws_elasticache_user_group", "this")
        assert str(group.get("user_ids")) == ("concat([aws_elasticache_user.default.user_id], [for k in "
                                              "sort(keys(var.users)) : aws_elasticache_user.service[k].user_id])")
        rg = lib.block("resource", "aws_elasticache_replication_group", "this")
        assert list(rg.get("user_group_ids")) == ["aws_elasticache_user_group.this.user_group_id"]
        assert rg.get("replication_group_id") == "var.name" and rg.get("transit_encryption_enabled") is True
        assert rg.get("auth_token") is None
        assert read_hcl(files[f"terraform/regions/{region.name}/main.tf"]).block("locals").get("name") \
            == region.cluster_name == managed_redis_name("aws", region.cluster_name)
        # each service's role: elasticache:Connect on exactly its user and this replication group
        idents = _call(files, region, "workload_identity").get("identities")
        wlib = _lib(files, "aws", "workload_identity")
        for owner, entry in idents.items():
            res = _connect_resources(wlib, dict(entry))
            if owner in users:
                u = users[owner]
                assert res == [f"arn:aws:elasticache:REGION:ACCOUNT:replicationgroup:{region.cluster_name}",
                               f"arn:aws:elasticache:REGION:ACCOUNT:user:{u.name}"], (region.name, owner, res)
                assert (entry["namespace"], entry["service_account"]) == (owner, owner) or \
                    entry["namespace"] == region.identity(owner).namespace
            else:
                assert res is None, (region.name, owner)


# ---------------------------------------------------------------- GCP Memorystore: IAM, server CA

def test_gcp_connection_grants_and_server_ca(case):
    cloud, plan = case
    if cloud != "gcp":
        pytest.skip("GCP only")
    for region in plan.regions:
        files = _tf(plan, region)
        users = _users_of(region)
        call = _call(files, region, "managed_redis")
        assert list(call.get("connection_users")) == sorted(users)
        assert call.get("identity_members") == "module.workload_identity.members"
        assert call.get("server_ca_secret_ids") == "module.workload_identity.secret_ids"
        lib = _lib(files, "gcp", "managed_redis")
        grant = lib.block("resource", "google_project_iam_member", "connect")
        assert grant.get("for_each") == "toset(var.connection_users)"
        assert grant.get("role") == "roles/redis.dbConnectionUser"
        assert grant.get("member") == "var.identity_members[each.key]"
        assert grant.block("condition").get("expression") == 'resource.name == "${google_redis_cluster.this.id}"'
        cluster = lib.block("resource", "google_redis_cluster", "this")
        assert cluster.get("authorization_mode") == "AUTH_MODE_IAM_AUTH"
        assert cluster.get("name") == "${var.name}-redis"
        assert f"{read_hcl(files[f'terraform/regions/{region.name}/main.tf']).block('locals').get('name')}-redis" \
            == managed_redis_name("gcp", region.cluster_name)
        idents = _call(files, region, "workload_identity").get("identities")
        for owner in users:  # each service that connects has its own service account
            assert (idents[owner]["namespace"], idents[owner]["service_account"]) == \
                (region.identity(owner).namespace, owner)
        # the server CA: Terraform writes it to the entry the pods' ExternalSecrets read
        version = lib.block("resource", "google_secret_manager_secret_version", "server_ca")
        assert version.get("secret") == "var.server_ca_secret_ids[var.server_ca_secret]"
        assert "managed_server_ca[0].ca_certs[*].certificates" in str(version.get("secret_data"))
        entry = call.get("server_ca_secret")
        assert entry == f"{region.cluster_name}-redis-server-ca"
        assert entry in dict(_call(files, region, "workload_identity").get("secrets"))  # its container
        eso = dict(idents["external-secrets"])
        assert entry in list(eso["secrets"])  # the operator may read it
        ext = [d for f, t in helm.emit_region(plan, region).items() if f.endswith(".yaml") and "/charts/secrets-" in f
               for d in yaml.safe_load_all(t) if isinstance(d, dict) and d.get("kind") == "ExternalSecret"]
        k8s = kubernetes.emit_region(plan, region)
        for svc in users:
            a = next(x for x in region.data_access if x.service == svc)
            assert parse_ref(a.redis_ca_ref).key == entry
            (es,) = [d for d in ext if d["spec"]["target"]["name"] == a.redis_ca_secret]
            assert [(x["secretKey"], x["remoteRef"]["key"]) for x in es["spec"]["data"]] == [(INTERNAL_CA_KEY, entry)]
            deps = [d for f, t in k8s.items() if f.endswith(f"/{svc}.yaml") for d in yaml.safe_load_all(t)
                    if isinstance(d, dict) and d.get("kind") == "Deployment"]
            assert deps
            for dep in deps:
                spec = dep["spec"]["template"]["spec"]
                (vol,) = [v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == a.redis_ca_secret]
                (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == vol["name"]]
                assert mount["mountPath"] == REDIS_CA_DIR and mount["readOnly"] is True
            assert a.settings[REDIS_ENV["ca_file"]] == f"{REDIS_CA_DIR}/{INTERNAL_CA_KEY}"


# ---------------------------------------------------------------- Azure Cache: access policies per identity

def test_azure_access_policies_are_exactly_the_services_own(case):
    cloud, plan = case
    if cloud != "azure":
        pytest.skip("Azure only")
    for region in plan.regions:
        files = _tf(plan, region)
        users = _users_of(region)
        call = _call(files, region, "managed_redis")
        got = {k: dict(v) for k, v in call.get("users").items()}
        assert got == {u.name: {"identity": s, "permissions": u.access_string} for s, u in users.items()}
        assert call.get("principal_ids") == "module.workload_identity.principal_ids"
        lib = _lib(files, "azure", "managed_redis")
        pol = lib.block("resource", "azurerm_redis_cache_access_policy", "service")
        assert (pol.get("for_each"), pol.get("permissions")) == ("var.users", "each.value.permissions")
        asg = lib.block("resource", "azurerm_redis_cache_access_policy_assignment", "service")
        assert asg.get("object_id") == "var.principal_ids[each.value.identity]"
        assert asg.get("access_policy_name") == "azurerm_redis_cache_access_policy.service[each.key].name"
        assert asg.get("object_id_alias") == "each.key"
        cache = lib.block("resource", "azurerm_redis_cache", "this")
        assert cache.get("access_keys_authentication_enabled") is False
        assert cache.block("redis_configuration").get("active_directory_authentication_enabled") is True
        out = read_hcl(_tf(plan, region)["terraform/modules/azure/workload_identity/outputs.tf"])
        assert out.block("output", "principal_ids").get("value") == \
            "{ for k, i in azurerm_user_assigned_identity.this : k => i.principal_id }"
        idents = _call(files, region, "workload_identity").get("identities")
        for owner in users:
            assert (idents[owner]["namespace"], idents[owner]["service_account"]) == \
                (region.identity(owner).namespace, owner)


# ---------------------------------------------------------------- the tree: verify and the pods

def _generate(plan, out: Path) -> Path:
    from compiler import writer
    from compiler.emit import emit
    outputs, _ = emit(plan, ["connections", "kubernetes", "kong", "helm", "terraform", "datastores", "ansible"],
                      with_docs=False)
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


def test_verify_proves_each_user_and_no_password_is_delivered(case, tmp_path):
    cloud, plan = case
    tree = _generate(plan, tmp_path / "gen")
    report = verify(tree)
    assert [b.format() for b in report.broken] == []
    assert "redis-user" in report.layers
    for region in plan.regions:
        for f in (tree / f"helm/{region.name}/charts").glob("*/templates/*.yaml"):
            assert REDIS_ENV["password"] not in f.read_text(), f


# ---------------------------------------------------------------- the access strings on a real redis-server

def test_access_strings_grant_exactly_the_services_keys_on_a_real_server(case, tmp_path):
    from tests.targets.test_datastores_support import Resp, private_dir, require_isolation, start_redis
    require_isolation()
    cloud, plan = case
    region = plan.regions[0]
    users = _users_of(region)
    work = private_dir("managed-redis-acl-")
    (work / "redis.conf").write_text("enable-debug-command no\n")
    server, sock = start_redis(work / "redis.conf", work)
    try:
        admin = Resp(sock)
        for svc, u in users.items():
            # what the cache applies: ElastiCache `on <access string>`, Azure's policy permissions (Redis ACL)
            assert admin.call("ACL", "SETUSER", u.name, "on", ">test-only", *u.access_string.split()) == "OK", svc
            for allowed in (("SET", f"{svc}:k", "v"), ("GET", f"{svc}:k"), ("PING",), ("CLUSTER", "SLOTS")):
                assert admin.call("ACL", "DRYRUN", u.name, *allowed) == "OK", (svc, allowed)
            if cloud != "azure":
                assert admin.call("ACL", "DRYRUN", u.name, "PUBLISH", f"{svc}:c", "m") == "OK"
                assert admin.call("ACL", "DRYRUN", u.name, "PUBLISH", "other:c", "m") != "OK"
            for refused in (("GET", "other:k"), ("SET", "k", "v"), ("KEYS", "*"), ("FLUSHALL",),
                            ("CONFIG", "GET", "maxmemory"), ("ACL", "LIST"), ("SHUTDOWN",)):
                assert admin.call("ACL", "DRYRUN", u.name, *refused) != "OK", (svc, refused)
        admin.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_a_managed_cache_needs_no_deliverable_redis_password(tmp_path):
    """R038 guards the references a cluster is delivered; with a managed cache no Redis password is (the services log
    in as their identities), so an `env:` one (CI's) is no error there, while self-managed still refuses it."""
    from compiler.errors import SpecError
    spec = managed_spec("aws", tmp_path / "platform.yaml")
    text = spec.read_text().replace('password: "aws-sm:acme/redis/password"', 'password: "env:REDIS_PASSWORD"')
    spec.write_text(text)
    plan = compile_file(str(spec)).plan
    assert all(REDIS_ENV["password"] not in dict(a.secrets) for r in plan.regions for a in r.data_access)
    spec.write_text(text.replace("      deployment: managed\n", "", 1))
    with pytest.raises(SpecError) as exc:
        compile_file(str(spec))
    assert [d.path for d in exc.value.diagnostics if d.code == "R038"] == ["settings.datastores.redis.password"]
