"""What the edge keeps: the web app on the spec's TTLs, never an API read on them (compiler/ir/edge.py, "what the
edge caches"). Read back from the generated global roots with python-hcl2, one cloud at a time:

- CloudFront: a request's cache behavior is the first ordered behavior whose path pattern matches its path, else
  the default one (case-sensitive, `*` any characters). An API path's behavior must carry the API policy: no
  default TTL and no minimum (a response without Cache-Control or Expires is never kept; no-store and private are
  honoured), keyed on the Authorization header. Both policies key on Host: the API and the web app share the
  distribution, and CloudFront's cache key holds the distribution's domain, not the viewer's host.
- Cloud CDN: CACHE_ALL_STATIC keeps static content types without directives on the default TTL, and its cache key
  holds no credential: every backend must bypass the cache for a request that carries Authorization.
- Front Door: the route has no `cache` block (caching off) and the home rules' overrides disable it too.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

import hcl2
import pytest

from compiler.ir.edge import CREDENTIAL_HEADER, api_path_prefixes
from compiler.pipeline import compile_file, compile_text
from compiler.targets import terraform
from tests.conftest import REPO
from tests.targets.hcl_support import resources, unquote

CASES = sorted(p.name for p in (REPO / "tests/cases").iterdir() if (p / "platform.yaml").exists())


def _plain(v):
    if isinstance(v, dict):
        return {unquote(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return unquote(v)


def _global(plan) -> dict[str, dict]:
    return {p.split("terraform/global/", 1)[1]: _plain(hcl2.loads(t)) for p, t in terraform.emit_global(plan).items()
            if p.startswith("terraform/global/") and p.endswith(".tf")}


@pytest.fixture(scope="module")
def compiled():
    out = {}
    for case in [*CASES, "platform.yaml"]:
        path = REPO / "platform.yaml" if case == "platform.yaml" else REPO / "tests/cases" / case / "platform.yaml"
        plan = compile_file(str(path)).plan
        out["reference-spec" if case == "platform.yaml" else case] = (plan, _global(plan))
    return out


def _edge(compiled, kind: str):
    """The compiled cases whose global root has the edge resource `kind`."""
    found = [(case, plan, docs) for case, (plan, docs) in sorted(compiled.items())
             if resources(docs.get("cdn.tf", {}), kind)]
    assert found, kind
    return found


def _behavior(dist: dict, path: str) -> dict:
    """The cache behavior CloudFront applies to a request for `path`: the first ordered one that matches, in order."""
    for b in dist.get("ordered_cache_behavior", []):
        if fnmatchcase(path, b["path_pattern"]):
            return b
    return dist["default_cache_behavior"][0]


def _policy(docs: dict, behavior: dict) -> dict:
    ref = behavior["cache_policy_id"]
    assert ref.startswith("${aws_cloudfront_cache_policy.") and ref.endswith(".id}"), ref
    return resources(docs["cdn.tf"], "aws_cloudfront_cache_policy")[ref.split(".")[1]]


def _key_headers(policy: dict) -> list[str]:
    headers = policy["parameters_in_cache_key_and_forwarded_to_origin"][0]["headers_config"][0]
    assert headers["header_behavior"] == "whitelist"
    return headers["headers"][0]["items"]


def _locals(docs: dict) -> dict:
    return {k: v for block in docs["main.tf"]["locals"] for k, v in block.items()}


def _route_samples(plan, api: bool) -> list[str]:
    """Request paths each route of that kind answers: its prefixes, a resource under each, the prefix run on."""
    from compiler.ir.edge import is_api_route
    out = set()
    for r in plan.regions:
        for s in r.services:
            for route in s.routes:
                if is_api_route(plan, route) == api:
                    for p in route.paths:
                        out |= {p, p.rstrip("/") + "/123", p + "-export.pdf"}
    return sorted(out)


def test_cloudfront_never_keeps_an_api_read_on_the_default_ttl(compiled):
    checked = 0
    for case, plan, docs in _edge(compiled, "aws_cloudfront_distribution"):
        dist = resources(docs["cdn.tf"], "aws_cloudfront_distribution")["this"]
        api_paths = _route_samples(plan, api=True)
        assert api_paths, case
        for path in api_paths:
            behavior = _behavior(dist, path)
            policy = _policy(docs, behavior)
            # nothing kept unless the response asks (CloudFront: the default TTL applies to a response without
            # Cache-Control/Expires; a minimum above 0 would override no-store and private)
            assert (policy["default_ttl"], policy["min_ttl"]) == (0, 0), (case, path)
            assert {CREDENTIAL_HEADER, "Host"} <= set(_key_headers(policy)), (case, path)
            # the same origin, forwarding and viewer-request function (home-region routing) as every request
            assert behavior["target_origin_id"] == "regions"
            assert behavior["origin_request_policy_id"] == "${data.aws_cloudfront_origin_request_policy.all_viewer.id}"
            (fn,) = behavior["function_association"]
            assert (fn["event_type"], fn["function_arn"]) == ("viewer-request",
                                                              "${aws_cloudfront_function.viewer_request.arn}")
            assert "GET" in behavior["cached_methods"] and behavior["viewer_protocol_policy"] == "redirect-to-https"
        checked += 1
    assert checked >= 3  # the reference spec, its golden case, two-region and aws-only


def test_cloudfront_keeps_the_web_app_on_the_spec_ttls(compiled):
    for case, plan, docs in _edge(compiled, "aws_cloudfront_distribution"):
        dist = resources(docs["cdn.tf"], "aws_cloudfront_distribution")["this"]
        app = f"{plan.spec.edge.dns.app_host}.{plan.spec.organization.domain}"
        web = [p for p in _route_samples(plan, api=False)] + ["/", "/assets/app.3f9a.js", "/favicon.ico"]
        assert any(app in route.hosts for r in plan.regions for s in r.services for route in s.routes), case
        local = _locals(docs)
        for path in web:
            policy = _policy(docs, _behavior(dist, path))
            assert policy["default_ttl"] == "${local.default_ttl}" and policy["max_ttl"] == "${local.max_ttl}", (case, path)
            assert {CREDENTIAL_HEADER, "Host"} <= set(_key_headers(policy)), (case, path)
        assert local["default_ttl"] == plan.spec.edge.cdn.default_ttl_seconds > 0
        api = resources(docs["cdn.tf"], "aws_cloudfront_cache_policy")["api"]
        assert api["max_ttl"] == "${local.max_ttl}"  # what a response may ask for, as on the web app


def test_reference_api_paths_are_the_routes_prefixes(compiled):
    plan, docs = compiled["reference-spec"]
    dist = resources(docs["cdn.tf"], "aws_cloudfront_distribution")["this"]
    patterns = [b["path_pattern"] for b in dist["ordered_cache_behavior"]]
    assert patterns == [f"{p}*" for p in api_path_prefixes(plan)]
    assert {"/api/v1/bookings*", "/api/v1/users*", "/api/v1/auth*", "/webhooks/stripe*"} <= set(patterns)
    assert "/*" not in patterns and "/" not in api_path_prefixes(plan)  # the web app's `/` on app.<domain>
    assert _policy(docs, _behavior(dist, "/api/v1/bookings/42"))["name"] == "${local.name}-api"
    assert _policy(docs, _behavior(dist, "/static/js/main.js"))["name"] == "${local.name}"


def test_an_api_route_on_slash_takes_every_path_off_the_default_ttl():
    base = (REPO / "tests/cases/two-region/platform.yaml").read_text()
    old = "routes: [{paths: [/api/orders], methods: [GET, POST]}]"
    assert base.count(old) == 1
    plan = compile_text(base.replace(old, 'routes: [{paths: ["/"], methods: [GET, POST]}]'), "platform.yaml").plan
    assert api_path_prefixes(plan) == ("/",)
    docs = _global(plan)
    dist = resources(docs["cdn.tf"], "aws_cloudfront_distribution")["this"]
    assert "ordered_cache_behavior" not in dist
    policies = resources(docs["cdn.tf"], "aws_cloudfront_cache_policy")
    assert set(policies) == {"api"}
    for path in ("/", "/api/orders/1", "/assets/app.js"):
        assert _policy(docs, _behavior(dist, path))["default_ttl"] == 0


def test_api_prefixes_drop_those_a_shorter_one_covers():
    base = (REPO / "tests/cases/two-region/platform.yaml").read_text()
    old = "routes: [{paths: [/api/orders], methods: [GET, POST]}]"
    plan = compile_text(base.replace(old, "routes: [{paths: [/api/orders/open, /api/orders, /api/ordersx, /b], "
                                          "methods: [GET]}]"), "platform.yaml").plan
    assert api_path_prefixes(plan) == ("/api/orders", "/b")


def test_cloud_cdn_bypasses_its_cache_for_every_credentialed_request(compiled):
    for case, plan, docs in _edge(compiled, "google_compute_backend_service"):
        backends = resources(docs["cdn.tf"], "google_compute_backend_service")
        assert backends, case
        for name, b in backends.items():
            assert b["enable_cdn"] is True
            (cdn,) = b["cdn_policy"]
            assert cdn["cache_mode"] == "CACHE_ALL_STATIC"  # the web app's static files stay cached
            assert [h["header_name"] for h in cdn["bypass_cache_on_request_headers"]] == [CREDENTIAL_HEADER], (case, name)
            assert cdn["cache_key_policy"][0]["include_host"] is True


def test_front_door_caches_nothing(compiled):
    overrides = 0
    for case, plan, docs in _edge(compiled, "azurerm_cdn_frontdoor_route"):
        for name, route in resources(docs["cdn.tf"], "azurerm_cdn_frontdoor_route").items():
            assert "cache" not in route, (case, name)  # azurerm: no cache block, caching disabled
        for name, rule in resources(docs["cdn.tf"], "azurerm_cdn_frontdoor_rule").items():
            for action in rule["actions"][0].get("route_configuration_override_action", []):
                assert action["cache_behavior"] == "Disabled", (case, name)
                overrides += 1
    assert overrides >= 2  # azure-only's home rules
