"""The origin secret (compiler/ir/edge.py: origin_verify): only this platform's CloudFront reaches the regions.

The regions' load balancers admit every CloudFront address (the origin-facing prefix list, or the Internet behind
the CDN on GCP and Azure), which every CloudFront customer shares. The global root makes a secret, CloudFront sends
its current value on every origin, and each region root reads the same secret and hands its WAF the values to
require; the health checkers' path is exempt. Read back from the generated HCL with python-hcl2.
"""

from __future__ import annotations

import json
import re

import hcl2
import pytest

from compiler.emit import emit
from compiler.ir.edge import origin_verify
from compiler.ir.names import ORIGIN_VERIFY_HEADER
from compiler.pipeline import compile_file
from compiler.targets.terraform.global_root import ORIGIN_VERIFY_LENGTH
from tests.conftest import REPO
from tests.targets.hcl_support import resources, unquote


@pytest.fixture(scope="module")
def reference():
    plan = compile_file(str(REPO / "platform.yaml")).plan
    out, _ = emit(plan, ["terraform"], with_docs=False)
    files = {rel: text for rel, (_owner, text) in out["generated"].items()}
    return plan, files


def _parse(text: str) -> dict:
    return hcl2.loads(text)


def _data(doc: dict, dtype: str, name: str) -> dict | None:
    """The body of `data "<dtype>" "<name>"` (python-hcl2 keeps the labels' quotes)."""
    for entry in doc.get("data", []):
        for label, named in entry.items():
            if unquote(label) == dtype:
                for n, body in named.items():
                    if unquote(n) == name:
                        return body
    return None


def _module(doc: dict, name: str) -> dict:
    return next(body for m in doc["module"] for label, body in m.items() if unquote(label) == name)


def test_cloudfront_sends_the_secret_every_region_requires(reference):
    plan, files = reference
    check = origin_verify(plan)
    assert check is not None and check.header == ORIGIN_VERIFY_HEADER
    cdn = _parse(files["terraform/global/cdn.tf"])
    secret = resources(cdn, "aws_secretsmanager_secret")["origin_verify"]
    assert unquote(secret["name"]) == check.secret_name
    assert "module.kms.key_arn" in str(secret["kms_key_id"])
    dist = resources(cdn, "aws_cloudfront_distribution")["this"]
    origins = dist["origin"]
    assert len(origins) == len(plan.regions) + 1  # the weighted origin and every home origin
    for o in origins:
        (header,) = o["custom_header"]
        assert unquote(header["name"]) == ORIGIN_VERIFY_HEADER and "local.origin_verify" in str(header["value"])
    providers = _parse(files["terraform/global/providers.tf"])
    (aws,) = [body for p in providers["provider"] for label, body in p.items() if unquote(label) == "aws"]
    assert unquote(aws["region"]) == check.secret_region

    for r in plan.regions:
        main = files[f"terraform/regions/{r.name}/main.tf"]
        doc = _parse(main)
        read = _data(doc, "aws_secretsmanager_secret_version", "origin_verify")
        assert read is not None, r.name
        assert unquote(read["secret_id"]) == check.secret_name and unquote(read["region"]) == check.secret_region
        waf = _module(doc, "waf")
        assert unquote(waf["origin_verify_header"]) == check.header.lower()
        assert unquote(waf["origin_verify_exempt_path"]) == plan.spec.edge.dns.health_check_path
        assert "local.origin_verify.current" in str(waf["origin_verify_values"])
        assert "local.origin_verify.next" in str(waf["origin_verify_values"])


def test_the_secret_made_passes_the_modules_validation(reference):
    """The global root draws letters and digits of a length the WAF modules accept: the value is written into a
    regex (AWS) and a CEL expression (GCP), so the modules refuse anything else, and the root must not make it."""
    _plan, files = reference
    cdn = _parse(files["terraform/global/cdn.tf"])
    body = _data(cdn, "aws_secretsmanager_random_password", "origin_verify")
    assert body["password_length"] == ORIGIN_VERIFY_LENGTH and body["exclude_punctuation"] is True
    for cloud in ("aws", "gcp", "azure"):
        text = files[f"terraform/modules/{cloud}/waf/variables.tf"]
        m = re.search(r'can\(regex\("\^\[A-Za-z0-9-\]\{(\d+),(\d+)\}\$", v\)\)', text)
        assert m, cloud
        assert int(m.group(1)) <= ORIGIN_VERIFY_LENGTH <= int(m.group(2))


def test_the_aws_rule_matches_only_the_values(reference):
    """The AWS rule refers to a regex pattern set with one anchored pattern per value (the values kept out of the
    web ACL, whose rules a sensitive value would hide in every plan); each pattern, built as Terraform builds it,
    admits exactly its value."""
    _plan, files = reference
    text = files["terraform/modules/aws/waf/main.tf"]
    assert "arn = aws_wafv2_regex_pattern_set.origin_verify[0].arn" in text
    assert 'regex_string = "^${regular_expression.value}$"' in text and "var.origin_verify_values" not in \
        text[text.index('resource "aws_wafv2_web_acl" "this"'):]
    current, nxt = "a" * 64, "B1" * 32
    for value in (current, nxt):
        pattern = "^" + value + "$"
        assert re.match(pattern, value) and not re.match(pattern, value + "x") and not re.match(pattern, value[:-1])
    assert not re.match("^" + current + "$", nxt)


def test_gcp_expression_reads_the_header_only_once_it_is_present(reference):
    """CEL: reading a missing map key is an error, which `&&` ignores only when its other side decides. has() first."""
    _plan, files = reference
    text = files["terraform/modules/gcp/waf/main.tf"]
    expr = re.search(r'expression = "(request\.path != .*)"\n', text).group(1)
    guard = expr.index("has(request.headers['${rule.value}'])")
    assert guard < expr.index("request.headers['${rule.value}'] == ")
    assert expr.startswith("request.path != '${var.origin_verify_exempt_path}' && !(")


def test_front_door_regions_require_the_edge_profiles_id():
    """A Front Door edge: Front Door itself sends its profile's id in X-Azure-FDID; each Azure region reads the id of
    the global root's profile (by its name and resource group) and its WAF requires it. No secret is made."""
    from compiler.ir.edge import FRONT_DOOR_ID_HEADER, global_name
    plan = compile_file(str(REPO / "tests/cases/azure-only/platform.yaml")).plan
    out, _ = emit(plan, ["terraform"], with_docs=False)
    files = {rel: text for rel, (_owner, text) in out["generated"].items()}
    main = _parse(files["terraform/global/main.tf"])
    assert unquote(resources(main, "azurerm_resource_group")["edge"]["name"]) in ("${local.name}", global_name(plan.spec))
    cdn = _parse(files["terraform/global/cdn.tf"])
    profile = resources(cdn, "azurerm_cdn_frontdoor_profile")["this"]
    assert "local.name" in str(profile["name"]) and "azurerm_resource_group.edge.name" in str(profile["resource_group_name"])
    assert "aws_secretsmanager_secret" not in files["terraform/global/cdn.tf"]
    regions = [r for r in plan.regions if r.cloud == "azure"]
    assert regions
    for r in regions:
        check = origin_verify(plan, r)
        assert check.header == FRONT_DOOR_ID_HEADER and check.front_door_profile == global_name(plan.spec)
        doc = _parse(files[f"terraform/regions/{r.name}/main.tf"])
        read = _data(doc, "azurerm_cdn_frontdoor_profile", "edge")
        assert unquote(read["name"]) == unquote(read["resource_group_name"]) == global_name(plan.spec)
        waf = _module(doc, "waf")
        assert unquote(waf["origin_verify_header"]) == FRONT_DOOR_ID_HEADER.lower()
        assert "data.azurerm_cdn_frontdoor_profile.edge.resource_guid" in str(waf["origin_verify_values"])
        assert unquote(waf["origin_verify_exempt_path"]) == plan.spec.edge.dns.health_check_path


def test_cloud_cdn_has_no_origin_check_yet():
    """A Cloud CDN edge: not built yet; no region reads a value and no WAF requires one (said in the IR's docstring)."""
    plan = compile_file(str(REPO / "tests/cases/gcp-only/platform.yaml")).plan
    assert origin_verify(plan) is None
    out, _ = emit(plan, ["terraform"], with_docs=False)
    for rel, (_owner, text) in out["generated"].items():
        if rel.startswith("terraform/regions/") and rel.endswith("/main.tf"):
            assert "aws_secretsmanager_secret_version" not in text and "azurerm_cdn_frontdoor_profile" not in text
            waf = _module(_parse(text), "waf")
            assert unquote(waf["origin_verify_header"]) == "" and waf["origin_verify_values"] == []
