"""R064: the names made from organization.name and the region names, as the roots create them, fit the clouds' rules.

compiler/ir/cloud_names.py lists them (and where each limit was read); these tests hold that list to what the
Terraform target emits, so that the rule judges the names the clouds will see, and show the rule refusing what the
clouds would refuse at apply, positioned at the region to rename.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from compiler.errors import SpecError
from compiler.ir import cloud_names as cn
from compiler.pipeline import compile_file, compile_text
from tests.conftest import REPO

REF = (REPO / "platform.yaml").read_text()
CASES = sorted(p.parent.name for p in (REPO / "tests/cases").glob("*/platform.yaml") if p.parent.name != "diff")


def _renamed(text: str, renames: dict[str, str]) -> str:
    """The spec with regions renamed: their keys and the DR partners naming them (the reference names a region nowhere
    else)."""
    for old, new in renames.items():
        text, keys = re.subn(rf"(?m)^  {re.escape(old)}:$", f"  {new}:", text)
        assert keys == 1, old
        text = re.sub(rf"dr_partner: {re.escape(old)}(?![\w-])", f"dr_partner: {new}", text)
    return text


def _line_of(text: str, needle: str) -> int:
    assert text.count(needle) == 1, needle
    return text[: text.index(needle)].count("\n") + 1


# The reference's two Azure regions renamed so that `sixfb-<region>` shares its first 24 characters: their Key Vaults
# (first 24) and the AKS and certificate vaults (first 20, and -aks / -tls) come out the same, and Key Vault names are
# global. Each name alone fits; the spec compiled and generated both roots before R064.
LONG_AZURE = {"eu-west-2": "emea-azure-london-a", "me-south-1": "emea-azure-london-b"}


def test_two_long_region_names_sharing_a_prefix_are_refused_at_the_second():
    text = _renamed(REF, LONG_AZURE)
    diagnostics = pytest.raises(SpecError, compile_text, text, "platform.yaml").value.diagnostics
    assert {d.code for d in diagnostics} == {"R064"}, [d.format() for d in diagnostics]
    line = _line_of(text, "\n  emea-azure-london-b:\n") + 1
    printed = sorted(d.format() for d in diagnostics)
    assert len(printed) == 3, printed
    for p in printed:
        assert p.startswith(f"platform.yaml:{line}:3: regions.emea-azure-london-b: [R064] region emea-azure-london-a "
                            "and region emea-azure-london-b would both create the Azure Key Vault "), p
        assert "Azure Key Vault names are unique across all of Azure" in p and "; rename one of the regions" in p
    named = {re.search(r"Azure Key Vault '([^']+)'", p)[1] for p in printed}
    assert named == {"sixfb-emea-azure-london", "sixfb-emea-azure-lon-aks", "sixfb-emea-azure-lon-tls"}
    assert "within their first 24 characters" in next(p for p in printed if "'sixfb-emea-azure-london'" in p)


def test_the_colliding_vaults_are_the_ones_both_roots_would_create():
    """Without R064 the spec compiles, and both Azure roots name the same three vaults: the collision is real."""
    from compiler.targets import terraform
    plan = compile_text(_renamed(REF, LONG_AZURE), "platform.yaml", skip_rules=frozenset({"R064"})).plan
    vaults = {}
    for name in LONG_AZURE.values():
        main = terraform.emit_region(plan, plan.region(name))[f"terraform/regions/{name}/main.tf"]
        vaults[name] = re.findall(r'(?:key_vault_name|certificate_vault_name)\s*=\s*"([^"]+)"', main)
    a, b = vaults.values()
    assert sorted(a) == sorted(b) == sorted(["sixfb-emea-azure-london", "sixfb-emea-azure-lon-aks",
                                             "sixfb-emea-azure-lon-tls"])


def test_a_long_gcp_region_name_is_refused_with_the_names_over_their_limits():
    """GKE takes 40 characters, a subnetwork `<org>-<region>-private-<zone>` 63: a 39-character region of `sixfb`
    breaks both, and the message says by how much to shorten."""
    long = "australia-southeast1-sydney-secondary-b"
    text = _renamed(REF, {"ap-southeast-2": long})
    diagnostics = pytest.raises(SpecError, compile_text, text, "platform.yaml").value.diagnostics
    line = _line_of(text, f"\n  {long}:\n") + 1
    too_long = [d for d in diagnostics if d.code == "R064" and "too long" in d.message]
    assert [(d.line, d.path) for d in too_long] == [(line, f"regions.{long}")], [d.format() for d in diagnostics]
    message = too_long[0].message
    assert f"GKE cluster 'sixfb-{long}' (45 characters, at most 40)" in message
    assert f"GCP subnetwork 'sixfb-{long}-private-australia-southeast1-a' (76 characters, at most 63)" in message
    assert message.endswith("rename the region (39 characters) or organization.name (5) so that together they are "
                            "13 characters shorter")


def test_storage_accounts_collide_without_a_cut():
    """Storage account names drop the hyphens: `eu-west2` and `euwest-2` give the same three accounts."""
    text = _renamed(REF, {"eu-west-2": "eu-west2", "me-south-1": "euwest-2"})
    diagnostics = pytest.raises(SpecError, compile_text, text, "platform.yaml").value.diagnostics
    line = _line_of(text, "\n  euwest-2:\n") + 1
    assert sorted(d.format() for d in diagnostics) == [
        f"platform.yaml:{line}:3: regions.euwest-2: [R064] region eu-west2 and region euwest-2 would both create the "
        f"Azure storage account 'sixfbeuwest2{kind}': Azure storage account names are unique across all of Azure, and "
        "this one is made of `<org><region>` without hyphens; rename one of the regions" for kind in ("bk", "dt", "lg")]


def test_a_name_the_cloud_refuses_for_its_characters_is_refused():
    """Key Vault names take no `--`: a region name with one passes the region rules (R004) but not Azure's."""
    text = _renamed(REF, {"eu-west-2": "eu--west-2"})
    diagnostics = pytest.raises(SpecError, compile_text, text, "platform.yaml").value.diagnostics
    assert {d.code for d in diagnostics} == {"R064"}
    assert any("Azure Key Vault name 'sixfb-eu--west-2' breaks the cloud's rule" in d.message for d in diagnostics)


@pytest.mark.parametrize("case", CASES)
def test_the_test_specs_and_the_reference_pass(case):
    plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
    assert list(cn.problems(plan)) == []


def test_the_reference_passes(reference):
    assert list(cn.problems(reference)) == []
    assert len(cn.derived_names(reference)) > 400  # every region's names are listed, not none


# ---------------------------------------------------------------- the list is what the roots create

# Names the modules compose in HCL from their inputs: (limit, cloud, module, resource type, label, attribute, which
# instances the root makes). The instances: "one", or a module argument whose entries are each.key, or "count:" a
# number argument, or "if:" an argument that is not null.
TEMPLATE_NAMES = [
    (cn.GKE_CLUSTER, "gcp", "kubernetes", "google_container_cluster", "this", "name", "one"),
    (cn.GCP_SUBNETWORK, "gcp", "network", "google_compute_subnetwork", "private", "name", "zones"),
    (cn.GCP_DISK, "gcp", "data_hosts", "google_compute_disk", "data", "name", "data_hosts"),
    (cn.GCP_DNS_ZONE, "gcp", "data_hosts", "google_dns_managed_zone", "internal", "name", "one"),
    (cn.GCP_DNS_ZONE, "gcp", "peering", "google_dns_managed_zone", "peer", "name", "one"),
    (cn.GCP_PEERING, "gcp", "peering", "google_compute_network_peering", "this", "name", "one"),
    (cn.GCS_BUCKET, "gcp", "object_storage", "google_storage_bucket", "logs", "name", "one"),
    (cn.AWS_LOAD_BALANCER, "aws", "load_balancer", "aws_lb", "this", "name", "one"),
    (cn.AWS_LOAD_BALANCER, "aws", "data_hosts", "aws_lb", "postgres", "name", "postgres_endpoints"),
    (cn.AWS_TARGET_GROUP, "aws", "data_hosts", "aws_lb_target_group", "postgres", "name", "postgres_endpoints"),
    (cn.AWS_S3, "aws", "object_storage", "aws_s3_bucket", "logs", "bucket", "one"),
    (cn.AWS_ELASTICACHE, "aws", "managed_redis", "aws_elasticache_replication_group", "this", "replication_group_id",
     "one"),
    (cn.AWS_RDS, "aws", "managed_postgres", "aws_db_instance", "primary", "identifier", "one"),
    (cn.AWS_RDS, "aws", "managed_postgres", "aws_db_instance", "replica", "identifier", "count:read_replicas"),
    (cn.AKS_DNS_PREFIX, "azure", "kubernetes", "azurerm_kubernetes_cluster", "this", "dns_prefix", "one"),
    (cn.AKS_CLUSTER, "azure", "kubernetes", "azurerm_kubernetes_cluster", "this", "name", "one"),
    (cn.AZURE_RECOVERY_VAULT, "azure", "backup", "azurerm_recovery_services_vault", "this", "name", "one"),
    (cn.AZURE_BACKUP_VAULT, "azure", "backup", "azurerm_data_protection_backup_vault", "disks", "name",
     "if:disk_policy"),
    (cn.AZURE_LOG_ANALYTICS, "azure", "network", "azurerm_log_analytics_workspace", "this", "name", "one"),
    (cn.AZURE_POSTGRES, "azure", "managed_postgres", "azurerm_postgresql_flexible_server", "primary", "name", "one"),
    (cn.AZURE_POSTGRES, "azure", "managed_postgres", "azurerm_postgresql_flexible_server", "replica", "name",
     "count:read_replicas"),
    (cn.AZURE_REDIS, "azure", "managed_redis", "azurerm_redis_cache", "this", "name", "one"),
    (cn.AZURE_DNS_LINK, "azure", "peering", "azurerm_private_dns_zone_virtual_network_link", "peer", "name", "one"),
]
# Kinds whose names the target computes in Python and passes to the modules: they appear in the root as they are
# (the S3 and Cloud Storage buckets and the Kong target group are of both sorts: the test of the first covers them).
ROOT_LITERALS = {cn.HOST_NAME, cn.GCP_INSTANCE, cn.AWS_OPENSEARCH, cn.AZURE_KEY_VAULT, cn.AZURE_STORAGE_ACCOUNT}
# The global root's: (limit, file, resource type, label, attribute, the local whose entries are each.key, or "one").
GLOBAL_NAMES = [
    (cn.AWS_S3, "cdn.tf", "aws_s3_bucket", "logs", "bucket", "one"),
    (cn.FRONT_DOOR_ENDPOINT, "cdn.tf", "azurerm_cdn_frontdoor_endpoint", "this", "name", "one"),
    (cn.GCP_GLOBAL_NEG, "cdn.tf", "google_compute_global_network_endpoint_group", "home", "name", "regions"),
    (cn.GCP_DNS_AUTHORIZATION, "cdn.tf", "google_certificate_manager_dns_authorization", "public", "name",
     "dns_authorizations"),
]


def _variant() -> str:
    """The reference with names that the roots cut: long Azure and GCP regions (vaults, storage accounts, peerings),
    an AWS region of 27 characters with `sixfb-` (sa-east-1's: its PostgreSQL load balancers keep 26), and managed
    datastores on AWS and Azure."""
    text = _renamed(REF, {**LONG_AZURE, "ap-south-1": "australia-southeast1-sydney-secondary-a",
                          "ap-southeast-2": "australia-southeast1-sydney-secondary-b",
                          "ca-central-1": "ca-central-1-montreal", "sa-east-1": "sa-east-1-sao-paulo-a"})
    for old, managed in (("traffic_share: 8, dr_partner: us-east-1, cidr: 10.2.0.0/16}",
                          "postgres: {deployment: managed}, redis: {deployment: managed}, "
                          "elasticsearch: {deployment: managed}"),
                         ("traffic_share: 6, dr_partner: emea-azure-london-b, cidr: 10.6.0.0/16}",
                          "postgres: {deployment: managed, read_replicas: 2}, redis: {deployment: managed}")):
        assert text.count(old) == 1
        text = text.replace(old, f"{old[:-1]},\n     settings: {{datastores: {{{managed}}}}}}}")
    return text


@pytest.fixture(scope="module")
def variant():
    # R020: the reference's TimescaleDB is not on AWS's managed PostgreSQL, which this variant only needs for its names
    return compile_text(_variant(), "platform.yaml", skip_rules=frozenset({"R064", "R020"})).plan


def _hcl(text: str) -> dict:
    hcl2 = pytest.importorskip("hcl2")
    return hcl2.loads(text)


def _unquote(v):
    return v[1:-1] if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"' else v


def _blocks(doc: dict, kind: str) -> dict:
    """label -> body of the doc's `module` blocks, or (kind "resource") (type, name) -> body."""
    out = {}
    for entry in doc.get(kind, []):
        for label, body in entry.items():
            if kind == "module":
                out[_unquote(label)] = body
            else:
                out.update({(_unquote(label), _unquote(name)): b for name, b in body.items()})
    return out


def _locals(doc: dict) -> dict:
    return {k: v for entry in doc.get("locals", []) for k, v in entry.items() if not k.startswith("__")}


def _evaluate(expr, env: dict) -> str:
    """The few HCL forms the modules name resources with: variables, locals, interpolation and substr()."""
    expr = expr.strip() if isinstance(expr, str) else expr
    if isinstance(expr, str) and expr.startswith("${") and _closing(expr, 1) == len(expr) - 1:
        return _evaluate(expr[2:-1], env)
    if expr.startswith('"') and expr.endswith('"'):
        out, s, i = [], expr[1:-1], 0
        while (j := s.find("${", i)) >= 0:
            end = _closing(s, j + 1)
            out += [s[i:j], _evaluate(s[j + 2:end], env)]
            i = end + 1
        return "".join(out + [s[i:]])
    if m := re.fullmatch(r"substr\((.*), 0, (\d+)\)", expr):
        return _evaluate(m[1], env)[: int(m[2])]
    if m := re.fullmatch(r"local\.(\w+)\[each\.key\]", expr):
        return _unquote(env["local." + m[1]][env["each.key"]])
    value = env[expr]
    return _evaluate(value, env) if isinstance(value, str) and ("${" in value or value.startswith('"')) else value


def _closing(s: str, open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(s)):
        depth += {"{": 1, "}": -1}.get(s[i], 0)
        if depth == 0:
            return i
    raise ValueError(s)


def _root_value(v, root_locals: dict):
    """A module argument as the root gives it: a string evaluated with the root's locals, where it can be here (the
    names are; other arguments reference resources and stay as they are)."""
    if not isinstance(v, str):
        return v
    try:
        return _evaluate(v, {f"local.{n}": x for n, x in root_locals.items()})
    except (KeyError, ValueError):
        return v


def _instances(how: str, call: dict) -> list[dict]:
    if how == "one":
        return [{}]
    if how.startswith("count:"):
        return [{"count.index + 1": str(i + 1)} for i in range(int(call[how[6:]]))]
    if how.startswith("if:"):
        return [{}] if call.get(how[3:]) not in (None, "null", "${null}") else []
    if how == "data_hosts":  # the module's local: the hosts with a data disk
        return [{"each.key": k} for k, h in call["hosts"].items() if h["data_disk_gib"] > 0]
    return [{"each.key": k} for k in call[how]]


def _template_names(plan) -> Counter:
    from compiler.targets import terraform
    modules = terraform.emit_global(plan)
    parsed = {}
    got = Counter()
    for r in plan.regions:
        root = _hcl(terraform.emit_region(plan, r)[f"terraform/regions/{r.name}/main.tf"])
        root_locals = _locals(root)
        for label, call in _blocks(root, "module").items():
            cloud, module = _unquote(call["source"]).split("/")[-2:]
            args = {k: _root_value(v, root_locals) for k, v in call.items()}
            for limit, c, m, rtype, rlabel, attr, how in TEMPLATE_NAMES:
                if (c, m) != (cloud, module):
                    continue
                path = f"terraform/modules/{cloud}/{module}/main.tf"
                doc = parsed.setdefault(path, _hcl(modules[path]))
                expr = _blocks(doc, "resource")[(rtype, rlabel)][attr]
                env = {f"var.{k}": v for k, v in args.items()} | {f"local.{k}": v for k, v in _locals(doc).items()}
                for each in _instances(how, args):
                    got[(r.name, limit.what, _evaluate(expr, env | each))] += 1
    return got


def test_the_names_composed_in_the_modules_are_the_listed_ones(variant):
    """Each name a module's template composes (`${var.name}-private-${each.key}`, substr(...)) with the root's arguments,
    for every region and instance, is in the list, as often as the root makes it; and each listed name of those kinds
    is one of them or, where the target computes it (the S3 buckets, the Kong target group), in the root as it is."""
    from compiler.targets import terraform
    kinds = {limit.what for limit, *_ in TEMPLATE_NAMES}
    listed = Counter((d.region, d.limit.what, d.name) for d in cn.derived_names(variant)
                     if d.limit.what in kinds and d.region)
    emitted = _template_names(variant)
    # the synchronous replica's endpoint (`-pg-sy`) exists where the wiring dials it, which the rules do not compute:
    # it differs from the leader's (`-pg-rw`) only in its suffix, so it collides exactly when that one does
    emitted = Counter(k for k in emitted.elements() if not k[2].endswith("-pg-sy"))
    assert not emitted - listed
    roots = {r.name: terraform.emit_region(variant, r)[f"terraform/regions/{r.name}/main.tf"] for r in variant.regions}
    rest = [k for k in (listed - emitted).elements() if not re.search(rf'"{re.escape(k[2])}"', roots[k[0]])]
    assert not rest, rest
    assert {k[1] for k in emitted} == kinds  # the variant makes every kind at least once
    assert any(d.cut for d in cn.derived_names(variant) if d.limit is cn.AWS_LOAD_BALANCER)  # the cuts are exercised
    assert any(d.cut for d in cn.derived_names(variant) if d.limit is cn.GCP_PEERING)


def test_the_names_the_target_computes_are_in_the_roots(variant):
    from compiler.targets import terraform
    roots = {r.name: terraform.emit_region(variant, r)[f"terraform/regions/{r.name}/main.tf"] for r in variant.regions}
    literal = [d for d in cn.derived_names(variant) if d.limit in ROOT_LITERALS and d.region]
    assert {d.limit.what for d in literal} == {limit.what for limit in ROOT_LITERALS}
    missing = [(d.region, d.limit.what, d.name) for d in literal
               if not re.search(rf'(?<![\w.-]){re.escape(d.name)}(?![\w.-])', roots[d.region])]
    assert not missing, missing


def test_every_kind_of_name_is_held_to_the_target():
    kinds = {v for v in vars(cn).values() if isinstance(v, cn.Limit)}
    held = {limit for limit, *_ in TEMPLATE_NAMES} | ROOT_LITERALS | {limit for limit, *_ in GLOBAL_NAMES}
    assert kinds == held, {k.what for k in kinds ^ held}


@pytest.mark.parametrize("spec", ["variant", "gcp-only", "azure-only"])
def test_the_global_roots_names_are_the_listed_ones(spec, variant):
    """The global root's names (the edge's: CloudFront's log bucket, Front Door's endpoint, Cloud CDN's home-region
    endpoint groups and DNS authorizations) as its files make them."""
    from compiler.targets import terraform
    plan = variant if spec == "variant" else compile_file(str(REPO / "tests/cases" / spec / "platform.yaml")).plan
    files = terraform.emit_global(plan)
    emitted = Counter()
    for limit, file, rtype, label, attr, how in GLOBAL_NAMES:
        doc = _hcl(files.get(f"terraform/global/{file}", ""))
        body = _blocks(doc, "resource").get((rtype, label))
        if body is None:
            continue
        env = {f"local.{k}": v for name in files if name.startswith("terraform/global/") and name.endswith(".tf")
               for k, v in _locals(_hcl(files[name])).items()}
        keys = [{}] if how == "one" else [{"each.key": _unquote(k)} for k in _keys(env[f"local.{how}"], env)]
        if isinstance(env.get(f"local.{how}"), dict):  # a map: each.value too
            keys = [each | {"each.value": _unquote(env[f"local.{how}"][each["each.key"]])} for each in keys]
        for each in keys:
            emitted[(limit.what, _evaluate(body[attr], env | each))] += 1
    listed = Counter((d.limit.what, d.name) for d in cn.derived_names(plan)
                     if d.limit in {limit for limit, *_ in GLOBAL_NAMES} and (d.region is None or d.limit is
                                                                               cn.GCP_GLOBAL_NEG))
    listed -= Counter({k: v for k, v in listed.items() if k[0] == cn.AWS_S3.what and not k[1].endswith("-cdn-logs")})
    assert emitted and listed == emitted


def _keys(value, env) -> list:
    if isinstance(value, dict):
        return [k for k in value if not k.startswith("__")]
    if isinstance(value, list):
        return [_evaluate(v, env) if isinstance(v, str) else v for v in value]
    return _keys(env[value.strip("${}")], env)
