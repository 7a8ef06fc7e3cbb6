"""Managed search (Amazon OpenSearch Service) lets in exactly each service that uses it, as its own IAM role, on exactly
its own indices (issue 11: every workload can authenticate).

The aws-only fixture is compiled with `datastores.elasticsearch.deployment: managed` and `orders` using elasticsearch.
The generated Terraform is read back with python-hcl2 (a reader independent of verify's): the workload_identity
library's policy statements, expanded for each identity of the region root's call, and the managed_search library's
domain access policy, expanded for the call's clients, must name exactly the service's own prefix `<service>_*` plus
the domain's health paths (GET/HEAD on `/` and `_cluster/health`), with the domain's real ARN; the denied paths (a
comma, a second index or alias) apply to every client role; bodies of _bulk/_mget/_msearch may not name an index. The
services dial a name the domain's certificate holds (custom endpoint with an ACM certificate validated in the public
zone, which holds the internal domain). verify proves it on the tree and breaks when a grant is missing or wider.
"""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
import pytest

from compiler.ir.data_access import (ES_ENV, OPENSEARCH_DENIED_PATHS, OPENSEARCH_HEALTH_PATHS, managed_search_domain,
                                     search_grants)
from compiler.pipeline import compile_text
from compiler.targets import terraform
from tests.conftest import REPO
from tests.targets.hcl_support import unquote as _u

INDEX_ACTIONS = {"es:ESHttpDelete", "es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut"}
HEALTH_ACTIONS = {"es:ESHttpGet", "es:ESHttpHead"}


def managed_search_text() -> str:
    text = (REPO / "tests/cases/aws-only/platform.yaml").read_text()
    new = text.replace("      uses: [postgres, redis]\n", "      uses: [postgres, redis, elasticsearch]\n", 1)
    new = new.replace("    elasticsearch:\n      nodes: 3", "    elasticsearch:\n      deployment: managed\n      nodes: 3")
    assert new.count("deployment: managed") == 1 and "redis, elasticsearch]" in new
    return new


@pytest.fixture(scope="module")
def plan():
    return compile_text(managed_search_text(), "platform.yaml").plan


def _tf(plan, region) -> dict[str, str]:
    files = terraform.emit_region(plan, region)
    files.update(terraform.emit_global(plan))
    return files


def _blocks(doc, kind, rtype, name):
    for item in doc.get(kind, []):
        for k, named in item.items():
            if _u(k) == rtype:
                for n, body in named.items():
                    if _u(n) == name:
                        return body
    return None


def _plain(v):
    """A module call's literal values without python-hcl2's quotes (keys and values, nested)."""
    if isinstance(v, dict):
        return {_u(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return _u(v)


def _module(files, region, name) -> dict:
    doc = hcl2.loads(files[f"terraform/regions/{region.name}/main.tf"])
    for m in doc["module"]:
        for k, body in m.items():
            if _u(k) == name:
                return _plain(body)
    raise AssertionError(f"no module {name}")


def _sub(text: str, env: dict) -> str:
    """Replace each ${expr} of a template string by env[expr] (every expression must be known)."""
    def one(m):
        assert m.group(1) in env, (m.group(1), text)
        return env[m.group(1)]
    return re.sub(r"\$\{([^}]*)\}", one, _u(text))


def _statements(doc: dict, name: str) -> list[dict]:
    body = _blocks(doc, "data", "aws_iam_policy_document", name)
    assert body is not None, name
    return body.get("dynamic", []) + [{"": s} for s in body.get("statement", [])]


# ---------------------------------------------------------------- the IR

def test_each_search_service_signs_as_its_own_identity_without_password(plan):
    for region in plan.regions:
        grants = {g.service: g for g in search_grants(region.data_access)}
        assert set(grants) == {s.name for s in region.services if "elasticsearch" in s.uses} == {"orders"}
        for svc, g in grants.items():
            a = next(x for x in region.data_access if x.service == svc)
            assert g.domain == managed_search_domain(region.cluster_name) and g.index_prefix == f"{svc}_"
            assert a.settings[ES_ENV["auth"]] == "aws-sigv4" and a.settings[ES_ENV["prefix"]] == f"{svc}_"
            assert a.settings[ES_ENV["region"]] == region.cloud_region
            assert a.settings[ES_ENV["urls"]] == f"https://elasticsearch.{region.internal_domain}"
            assert not [k for k, _ in a.secrets if k.startswith("ELASTICSEARCH_")]  # no password anywhere
            ident = region.identity(svc)
            assert ident.has_cloud_identity and (ident.search_domain, ident.search_index_prefix) == (g.domain, f"{svc}_")
        for ident in region.identities:
            if ident.owner not in grants:
                assert not ident.search_domain and not ident.search_index_prefix


# ---------------------------------------------------------------- the IAM role's own policy

def test_each_roles_policy_reaches_exactly_its_own_prefix_and_the_health_paths(plan):
    for region in plan.regions:
        files = _tf(plan, region)
        lib = hcl2.loads(files["terraform/modules/aws/workload_identity/main.tf"])
        idents = _module(files, region, "workload_identity")["identities"]
        grants = {g.identity: g for g in search_grants(region.data_access)}
        for owner, entry in idents.items():
            got = set()
            for dyn in _statements(lib, "access"):
                for name, st in dyn.items():
                    if _u(name) != "statement" or "for_each" not in st:
                        continue
                    content = st["content"][0]
                    acts = [_u(a) for a in content["actions"]] if isinstance(content["actions"], list) else None
                    if "search_domain" not in str(st["for_each"]):
                        assert not any(str(a).startswith("es:") for a in acts or []), st
                        continue
                    assert st["for_each"] == "${each.value.search_domain != null ? each.value.search_paths : []}"
                    if entry.get("search_domain") is None:
                        continue
                    assert content["actions"] == "${statement.value.actions}"
                    for p in entry["search_paths"]:
                        env = {"local.partition": "aws", "local.region": region.cloud_region, "local.account": "ACCT",
                               "each.value.search_domain": entry["search_domain"], "statement.value.path": p["path"]}
                        for r in content["resources"]:
                            got.add((tuple(sorted(p["actions"])), _sub(r, env)))
            if owner in grants:
                base = f"arn:aws:es:{region.cloud_region}:ACCT:domain/{managed_search_domain(region.cluster_name)}/"
                assert got == {(tuple(sorted(INDEX_ACTIONS)), f"{base}{owner}_*"),
                               (tuple(sorted(HEALTH_ACTIONS)), base),
                               (tuple(sorted(HEALTH_ACTIONS)), f"{base}_cluster/health")}, (region.name, owner, got)
            else:
                assert got == set(), (region.name, owner)


# ---------------------------------------------------------------- the domain: access policy, options, TLS name

def _domain_policy(files, region):
    """(effect, principal role ARNs, actions, resources) of every statement the domain access policy renders."""
    lib = hcl2.loads(files["terraform/modules/aws/managed_search/main.tf"])
    call = _module(files, region, "managed_search")
    assert call["client_role_arns"] == "${module.workload_identity.role_arns}"
    roles = {o: f"arn:aws:iam::ACCT:role/{region.identity(o).name}" for o in call["clients"]}
    arn = f"arn:aws:es:{region.cloud_region}:ACCT:domain/{call['domain_name']}"
    pol = _blocks(lib, "resource", "aws_opensearch_domain_policy", "this")
    assert pol["access_policies"] == "${data.aws_iam_policy_document.access.json}"
    assert pol["domain_name"] == "${aws_opensearch_domain.this.domain_name}"
    dom = _blocks(lib, "resource", "aws_opensearch_domain", "this")
    assert dom.get("access_policies") is None  # one writer of the policy
    locals_ = next(x["client_paths"] for x in lib["locals"] if "client_paths" in x)
    assert "for owner, c in var.clients" in locals_ and "for p in c.paths" in locals_
    out = []
    for dyn in _statements(lib, "access"):
        ((_, st),) = dyn.items()
        content = st["content"][0]
        principals = content["principals"][0]
        assert _u(principals["type"]) == "AWS"
        if _u(content["effect"]) == "Allow":
            assert st["for_each"] == '${{for p in local.client_paths : "${p.owner} ${p.path}" => p}}'
            assert principals["identifiers"] == ["${var.client_role_arns[statement.value.owner]}"]
            assert content["actions"] == "${statement.value.actions}"
            for owner, c in call["clients"].items():
                for p in c["paths"]:
                    env = {"aws_opensearch_domain.this.arn": arn, "statement.value.path": p["path"]}
                    out.append(("Allow", (roles[owner],), tuple(sorted(p["actions"])),
                                tuple(_sub(r, env) for r in content["resources"])))
        else:
            assert st["for_each"] == "${length(var.clients) > 0 ? [1] : []}"
            assert principals["identifiers"] == \
                "${[for owner in sort(keys(var.clients)) : var.client_role_arns[owner]]}"
            assert content["resources"] == '${[for p in var.denied_paths : "${aws_opensearch_domain.this.arn}/${p}"]}'
            out.append((_u(content["effect"]), tuple(sorted(roles.values())), tuple(_u(a) for a in content["actions"]),
                        tuple(f"{arn}/{p}" for p in call["denied_paths"])))
    return out, roles, arn


def test_domain_access_policy_admits_exactly_each_services_role_on_its_prefix(plan):
    for region in plan.regions:
        files = _tf(plan, region)
        got, roles, arn = _domain_policy(files, region)
        grants = {g.identity: g for g in search_grants(region.data_access)}
        assert set(roles) == set(grants) == {"orders"}
        want = []
        for owner in grants:
            want += [("Allow", (roles[owner],), tuple(sorted(INDEX_ACTIONS)), (f"{arn}/{owner}_*",)),
                     *(("Allow", (roles[owner],), tuple(sorted(HEALTH_ACTIONS)), (f"{arn}/{p}",))
                       for p in OPENSEARCH_HEALTH_PATHS)]
        want.append(("Deny", tuple(sorted(roles.values())), ("es:ESHttp*",),
                     tuple(f"{arn}/{p}" for p in OPENSEARCH_DENIED_PATHS)))
        assert sorted(got) == sorted(want)
        # the denied paths catch what the prefix pattern would let through
        from fnmatch import fnmatchcase
        for path in ("orders_a,location_b/_search", "orders_a/_alias/location_b", "orders_a/_clone/location_b",
                     "orders_a/_split/x", "orders_a/_shrink/x", "orders_a/_rollover/location_b"):
            assert fnmatchcase(path, "orders_*")
            assert any(fnmatchcase(path, p) for p in OPENSEARCH_DENIED_PATHS), path
        for path in ("orders_a/_search", "orders_a/_doc/1", "orders_a/_bulk", "orders_a/_mapping"):
            assert not any(fnmatchcase(path, p) for p in OPENSEARCH_DENIED_PATHS), path


def test_iam_only_domain_refuses_explicit_indices_in_bodies(plan):
    for region in plan.regions:
        files = _tf(plan, region)
        call = _module(files, region, "managed_search")
        assert call["advanced_options"] == {"rest.action.multi.allow_explicit_index": "false"}
        dom = _blocks(hcl2.loads(files["terraform/modules/aws/managed_search/main.tf"]), "resource",
                      "aws_opensearch_domain", "this")
        assert dom["advanced_options"] == "${var.advanced_options}"
        sec = dom["advanced_security_options"][0]
        assert sec["enabled"] is False  # IAM only: no OpenSearch role mapping is needed to let a role in


def test_services_dial_the_name_the_domains_certificate_holds(plan):
    for region in plan.regions:
        files = _tf(plan, region)
        call = _module(files, region, "managed_search")
        lib = hcl2.loads(files["terraform/modules/aws/managed_search/main.tf"])
        host = f"elasticsearch.{region.internal_domain}"
        assert call["custom_endpoint"] == host
        assert host.endswith("." + call["public_zone"]) and call["public_zone"] == plan.spec.organization.domain
        a = next(x for x in region.data_access if x.service == "orders")
        assert a.settings[ES_ENV["urls"]] == f"https://{host}"
        opts = _blocks(lib, "resource", "aws_opensearch_domain", "this")["domain_endpoint_options"][0]
        assert opts["custom_endpoint_enabled"] is True and opts["custom_endpoint"] == "${var.custom_endpoint}"
        assert opts["custom_endpoint_certificate_arn"] == "${aws_acm_certificate_validation.endpoint.certificate_arn}"
        cert = _blocks(lib, "resource", "aws_acm_certificate", "endpoint")
        assert cert["domain_name"] == "${var.custom_endpoint}" and _u(cert["validation_method"]) == "DNS"
        assert cert.get("subject_alternative_names") is None
        val = _blocks(lib, "resource", "aws_route53_record", "validation")
        assert val["zone_id"] == "${data.aws_route53_zone.public.zone_id}"
        zone = _blocks(lib, "data", "aws_route53_zone", "public")
        assert zone["name"] == "${var.public_zone}" and zone["private_zone"] is False
        cname = _blocks(lib, "resource", "aws_route53_record", "this")
        assert cname["name"] == "${var.custom_endpoint}" and cname["zone_id"] == "${var.internal_zone_id}"
        assert cname["records"] == ["${aws_opensearch_domain.this.endpoint}"]


# ---------------------------------------------------------------- verify

def _generate(plan, out: Path) -> Path:
    from compiler import writer
    from compiler.emit import emit
    outputs, _ = emit(plan, ["connections", "kubernetes", "kong", "helm", "terraform", "datastores", "ansible"],
                      with_docs=False)
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


@pytest.fixture(scope="module")
def tree(plan, tmp_path_factory):
    return _generate(plan, tmp_path_factory.mktemp("managed-search") / "gen")


def _search_broken(tree):
    from compiler.verify import verify
    return [b.format() for b in verify(tree).broken if "search" in b.message.lower()
            or "elasticsearch" in b.message.lower() or "opensearch" in b.message.lower()]


def test_verify_proves_each_pods_identity_is_admitted_with_exactly_its_prefix(tree):
    from compiler.verify import verify
    report = verify(tree)
    assert [b.format() for b in report.broken] == []
    from compiler.verify import search_credentials
    assert search_credentials.managed_checked(tree, "use1") == {"orders/orders": "orders_"}


def _edit(tree, rel, old, new, count=1):
    p = tree / rel
    text = p.read_text()
    assert text.count(old) >= 1, (rel, old)
    p.write_text(text.replace(old, new, count))
    return text


@pytest.mark.parametrize("rel,old,new,expect", [
    # the call no longer admits orders
    ("terraform/regions/use1/main.tf", "  clients = {\n    orders = {", "  clients = {\n    billing = {",
     "not admitted"),
    # the call admits a wider prefix
    ("terraform/regions/use1/main.tf", 'path    = "orders_*"', 'path    = "*"', "exactly orders_*"),
    # the role's own policy reaches another prefix
    ("terraform/regions/use1/main.tf", 'path    = "orders_*"', 'path    = "order*"', "exactly orders_*"),
    # the pod dials a name the certificate does not hold
    ("kubernetes/use1/orders.yaml", "https://elasticsearch.use1.internal.acme.example.org",
     "https://vpc-acme-use1.us-east-1.es.amazonaws.com", "custom endpoint"),
    # no auth mode: a pod that cannot authenticate
    ("kubernetes/use1/orders.yaml", "ELASTICSEARCH_AUTH_MODE: aws-sigv4", "ELASTICSEARCH_AUTH_MODEX: aws-sigv4",
     "cannot authenticate"),
])
def test_verify_breaks(tree, rel, old, new, expect):
    if not (tree / rel).exists():
        pytest.fail(f"{rel} missing")
    before = _edit(tree, rel, old, new, count=1 if "orders_*" not in old else 2)
    try:
        broken = _search_broken(tree)
        assert any(expect in b for b in broken), broken
    finally:
        (tree / rel).write_text(before)
