"""Kong target: what the decK files say, and that spec values cannot escape YAML or become regexes.

The upstream schemas (decK's file schema, `deck validate`, Kong 3.9's entity and plugin schemas)
judge the same files in test_kong_reference.py.
"""

from __future__ import annotations

import re
from functools import lru_cache

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.errors import SpecError
from compiler.pipeline import compile_file, compile_text
from compiler.render import banner
from compiler.targets import kong
from compiler.ir.edge import lb_hostnames
from compiler.targets.kong.plugins import (JWT_KEY_VARIABLE, KongEmitError, global_plugins, kong_replicas, rate_limits)
from tests.conftest import REPO

CASES = ("reference", "two-region")
TWO_REGION = (REPO / "tests/cases/two-region/platform.yaml").read_text()
ORDERS_ROUTES = "      routes: [{paths: [/api/orders], methods: [GET, POST]}]\n"
PATH_PATTERN = r"^/([A-Za-z0-9._~-]+/)*[A-Za-z0-9._~-]*$"  # compiler/model/services.py Route.paths (max 200)
HOST_PATTERN = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$"  # Route.hosts


@lru_cache(maxsize=None)
def emitted(case: str):
    """(plan, {region: (text, loaded document)}) for a golden case."""
    plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
    out = {}
    for r in plan.regions:
        files = kong.emit_region(plan, r)
        assert list(files) == [f"kong/{r.name}/kong.yaml"]
        text = files[f"kong/{r.name}/kong.yaml"]
        out[r.name] = (text, yaml.safe_load(text))
    return plan, out


def all_files():
    for case in CASES:
        plan, files = emitted(case)
        for region, (text, doc) in files.items():
            yield case, plan, plan.region(region), text, doc


def entities(doc):
    """(kind, entity, owner) for every Kong entity of a decK document, nested ones included."""
    for s in doc.get("services", []):
        yield "services", s, s["name"]
        for r in s.get("routes", []):
            yield "routes", r, s["name"]
            for p in r.get("plugins", []):
                yield "plugins", p, s["name"]
        for p in s.get("plugins", []):
            yield "plugins", p, s["name"]
    for r in doc.get("routes", []):  # the gateway's own (health-check) routes, without a service
        yield "routes", r, "gateway"
        for p in r.get("plugins", []):
            yield "plugins", p, "gateway"
    for u in doc.get("upstreams", []):
        # a service's upstream, or one of the gateway's own: home-region routing's (compiler/targets/kong/routing.py)
        owner = "gateway" if u["name"].startswith("home-") else u["name"].removesuffix("-upstream")
        yield "upstreams", u, owner
        for t in u.get("targets", []):
            yield "targets", t, owner
    for c in doc.get("consumers", []):
        yield "consumers", c, "gateway"
        for j in c.get("jwt_secrets", []):
            yield "jwt_secrets", j, "gateway"
    for p in doc.get("plugins", []):
        yield "plugins", p, "gateway"


def with_orders_route(path_yaml: str, host_yaml: str, auth: str = "jwt", extra_gateway: str = "") -> str:
    """The two-region spec with the orders route's path and host replaced by the given YAML scalars."""
    assert ORDERS_ROUTES in TWO_REGION
    text = TWO_REGION.replace(ORDERS_ROUTES, (
        "      routes:\n"
        f"        - paths: [{path_yaml}]\n"
        f"          hosts: [{host_yaml}]\n"
        f"          auth: {auth}\n"
        "          methods: [GET, POST]\n"))
    if extra_gateway:
        text = text.replace("  gateway:\n", "  gateway:\n" + extra_gateway, 1)
    return text


def quoted(value: str) -> str:
    """A YAML double-quoted scalar for any string (escapes where needed, one line)."""
    out = yaml.safe_dump(value, default_style='"', width=10**9, allow_unicode=False).rstrip("\n")
    assert "\n" not in out
    return out


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


# ---------------------------------------------------------------- file shape


def test_one_file_per_region_banner_first_then_format_version():
    for case, plan, region, text, doc in all_files():
        assert text.startswith(banner("#")), case
        body = [line for line in text.splitlines() if not line.startswith("#")]
        assert body[0] == "_format_version: '3.0'"
        assert list(doc)[:2] == ["_format_version", "_info"]
        assert doc["_info"] == {"select_tags": ["platformc", region.name]}
        assert text.endswith("\n") and "\r" not in text


def test_yaml_loads_back_to_exactly_the_built_data():
    for case, plan, region, text, doc in all_files():
        assert doc == kong.build(plan, region)


def test_output_is_deterministic():
    plan = compile_file(str(REPO / "platform.yaml")).plan
    again = compile_file(str(REPO / "platform.yaml")).plan
    for a, b in zip(plan.regions, again.regions):
        assert kong.emit_region(plan, a) == kong.emit_region(again, b)


def test_every_entity_is_tagged_platformc_region_and_service():
    for case, plan, region, text, doc in all_files():
        for kind, entity, owner in entities(doc):
            assert entity["tags"] == ["platformc", region.name, owner], (case, region.name, kind, entity)


def test_names_are_unique_and_only_the_health_routes_have_no_service():
    for case, plan, region, text, doc in all_files():
        # top-level routes: only the gateway's health-check answers; every other route is nested under its service
        assert [r["name"] for r in doc["routes"]] == [kong.HEALTH_ROUTE, kong.HEALTH_ROUTE_ANY_HOST]
        assert all("service" not in r for r in doc["routes"])
        services = [s["name"] for s in doc["services"]]
        routes = [r["name"] for s in doc["services"] for r in s["routes"]] + [r["name"] for r in doc["routes"]]
        upstreams = [u["name"] for u in doc["upstreams"]]
        for names in (services, routes, upstreams):
            assert len(names) == len(set(names))
        assert all(s["routes"] for s in doc["services"])
        # each service proxies to its own upstream, and each upstream serves one service; the others are the
        # home regions' upstreams, each named by the routing function (and only those)
        home = sorted(u for u in upstreams if u.startswith("home-"))
        assert sorted(s["host"] for s in doc["services"]) == sorted(set(upstreams) - set(home))
        fn = "".join(p["config"]["access"][0] for p in doc["plugins"] if p["name"] == "pre-function")
        assert sorted(re.findall(r'= "(home-[^"]+)"', fn)) == home


# ---------------------------------------------------------------- semantics from the spec


@pytest.mark.parametrize("case", CASES)
def test_services_routes_and_upstreams_follow_the_plan(case):
    plan, files = emitted(case)
    api = f"{plan.spec.edge.dns.api_host}.{plan.spec.organization.domain}"
    for region in plan.regions:
        doc = files[region.name][1]
        g = region.settings.gateway
        public = [s for s in region.services if s.routes]
        assert [s["name"] for s in doc["services"]] == sorted(s.name for s in public)
        assert len(public) < len(region.services)  # each case has an internal service: no Kong entity for it
        upstreams = {u["name"]: u for u in doc["upstreams"]}
        for svc, ks in zip(sorted(public, key=lambda s: s.name), doc["services"]):
            assert (ks["connect_timeout"], ks["read_timeout"], ks["write_timeout"]) == (10000, 60000, 60000)
            assert (ks["protocol"], ks["port"]) == ("http", svc.service_port)
            for spec, kr in zip(svc.routes, ks["routes"], strict=True):
                assert kr["paths"] == list(spec.paths)
                assert kr["hosts"] == (list(spec.hosts) or [api])
                assert kr["strip_path"] is spec.strip_path and kr["preserve_host"] is False
                expected = list(spec.methods) + (["OPTIONS"] if g.cors_origins and "OPTIONS" not in spec.methods else [])
                assert kr["methods"] == expected
            up = upstreams[ks["host"]]
            # the target is Kong's connection in the wiring: the Service's name and port (the pods' port)
            [conn] = [c for c in region.connections_from("kong") if "kong" in c.layers and c.dest.name == svc.name]
            assert up["targets"] == [{"target": f"{conn.address}:{conn.port}", "tags": up["tags"]}]
            assert up["targets"][0]["target"] == f"{svc.dns_name}:{svc.port}"
            assert up["host_header"] == svc.dns_name
            # one target: no hash at Kong (it lives in the mesh's DestinationRule), no passive ejection
            assert up["algorithm"] == "round-robin" and "hash_on" not in up
            assert set(up["healthchecks"]) == {"active"}
            active = up["healthchecks"]["active"]
            assert active["http_path"] == svc.health_path
            assert active["healthy"] == {"interval": 5, "successes": 3}
            assert active["unhealthy"]["interval"] == 5 and active["unhealthy"]["timeouts"] == 3


@pytest.mark.parametrize("case", CASES)
def test_authentication_is_per_route_and_the_key_is_never_plaintext(case):
    plan, files = emitted(case)
    for region in plan.regions:
        text, doc = files[region.name]
        g = region.settings.gateway
        for svc in (s for s in region.services if s.routes):
            ks = next(s for s in doc["services"] if s["name"] == svc.name)
            for spec, kr in zip(svc.routes, ks["routes"]):
                names = [p["name"] for p in kr.get("plugins", [])]
                assert names == ([] if spec.auth == "none" else ["jwt"])
                for p in kr.get("plugins", []):
                    assert p["config"] == {"claims_to_verify": ["exp"], "uri_param_names": []}
        [consumer] = doc["consumers"]
        [secret] = consumer["jwt_secrets"]
        assert (secret["key"], secret["algorithm"]) == (g.jwt_issuer, "RS256")
        assert secret["rsa_public_key"] == f'${{{{ env "{JWT_KEY_VARIABLE}" | indent 6 }}}}\n'
        # the reference is named in the header comment only; no value is anywhere in the file
        assert f"#   {JWT_KEY_VARIABLE} <- {g.jwt_public_key}\n" in text
        body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        assert g.jwt_public_key not in body and "BEGIN" not in body
        # decK renders comments too: no template delimiters outside the one value
        assert text.count("${{") == 1


def test_jwt_key_template_re_indents_a_multi_line_pem():
    """What decK does at sync time (text/template with `env` and `indent` over the whole file)."""
    pem = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1L7VLPHCgcBIjt\n-----END PUBLIC KEY-----\n"
    for case, plan, region, text, doc in all_files():
        def render(m):
            assert m.group(1) == JWT_KEY_VARIABLE
            return pem.replace("\n", "\n" + " " * int(m.group(2)))
        rendered = re.sub(r'\$\{\{ env "(DECK_[A-Z0-9_]+)" \| indent (\d+) \}\}', render, text)
        loaded = yaml.safe_load(rendered)
        assert loaded["consumers"][0]["jwt_secrets"][0]["rsa_public_key"] == pem
        loaded["consumers"][0]["jwt_secrets"][0]["rsa_public_key"] = doc["consumers"][0]["jwt_secrets"][0]["rsa_public_key"]
        assert loaded == doc  # nothing else changed


@pytest.mark.parametrize("case", CASES)
def test_rate_limit_expresses_rate_and_burst(case):
    plan, files = emitted(case)
    for region in plan.regions:
        g = region.settings.gateway
        plugins = {p["name"]: p["config"] for p in files[region.name][1]["plugins"]}
        rl = plugins["rate-limiting"]
        # per pod: the region's figures divided by the gateway HPA's floor, rounded down (together never above the
        # spec at normal load)
        n, _ = kong_replicas(plan, region)
        assert n >= g.replicas
        assert (rl["second"], rl["minute"]) == (g.burst // n, g.requests_per_second * 60 // n)
        assert (g.burst, g.requests_per_second * 60) == (2000, 60000)
        if region.name == "us-east-1":  # 22 % of 100k rps at 5000 rps a pod: a floor of 5
            assert n == 5 and (rl["second"], rl["minute"]) == (400, 12000)
        assert rl["second"] * n <= g.burst and rl["minute"] * n <= g.requests_per_second * 60
        assert (rl["policy"], rl["limit_by"]) == ("local", "ip")
        assert plugins["request-size-limiting"]["allowed_payload_size"] == g.request_size_limit_mb
        assert {"correlation-id", "prometheus"} <= set(plugins)
        # Kong's bot list answers 403 to okhttp, axios, Go-http-client, the AWS SDKs: the platform's own clients
        assert "bot-detection" not in plugins


def test_minute_limit_never_below_the_burst():
    """Kong refuses `minute` < `second`; a tiny rate with a large burst must still load."""
    text = with_orders_route('"/api/orders"', '"www.acme.example.org"',
                             extra_gateway="    requests_per_second: 1\n    burst: 100\n")
    plan = compile_text(text).plan
    for region in plan.regions:
        n, _ = kong_replicas(plan, region)
        assert rate_limits(plan, region) == (100 // n, 100 // n)
        assert "raised from the sustained rate x 60 to the burst" in kong.docs_region(plan, region)


def test_cors_only_with_origins_and_preflights_reach_it():
    # two-region lists no origins: Kong's cors plugin without origins would allow any origin
    plan, files = emitted("two-region")
    for region, (text, doc) in files.items():
        assert "cors" not in {p["name"] for p in doc["plugins"]}
        assert all("OPTIONS" not in r["methods"] for s in doc["services"] for r in s["routes"])
    plan, files = emitted("reference")
    for region in plan.regions:
        cors = next(p["config"] for p in files[region.name][1]["plugins"] if p["name"] == "cors")
        assert cors["origins"] == ["https://app.6fb.example.com"] and cors["credentials"] is False
        # the hash header; never the canary header, which Kong sets from the token (a browser's copy is dropped)
        assert "x-franchise-id" in cors["headers"] and "end-user" not in cors["headers"]


@pytest.mark.parametrize("origin", ["https://*.acme.example.org", "https://(www|app).acme.example.org", "https://app.acme.example.org$"])
def test_a_cors_origin_kong_would_read_as_a_regex_is_refused(origin):
    text = with_orders_route('"/api/orders"', '"www.acme.example.org"',
                             extra_gateway=f"    cors_origins: [{quoted(origin)}]\n")
    # The model refuses it with a position (S004); the emitter's own guard stays as a second line.
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    assert [d.code for d in exc.value.diagnostics] == ["S004"]
    assert exc.value.diagnostics[0].path.startswith("settings.gateway.cors_origins")


def test_oauth2_routes_validate_issuer_jwts():
    plan = compile_text(with_orders_route('"/api/orders"', '"api.acme.example.org"', auth="oauth2")).plan
    doc = kong.build(plan, plan.region("use1"))
    route = next(s for s in doc["services"] if s["name"] == "orders")["routes"][0]
    assert [p["name"] for p in route["plugins"]] == ["jwt"]
    assert doc["consumers"][0]["jwt_secrets"][0]["key"] == "https://login.acme.example.org/"


def test_a_free_text_value_cannot_smuggle_a_deck_template():
    text = with_orders_route('"/api/orders"', '"api.acme.example.org"').replace(
        "jwt_issuer: https://login.acme.example.org/", 'jwt_issuer: \'https://x/${{ env "DECK_JWT_PUBLIC_KEY" }}\'')
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    assert [(d.code, d.path) for d in exc.value.diagnostics] == [("S004", "settings.gateway.jwt_issuer")]


def test_no_auth_anywhere_means_no_consumer():
    plan = compile_text(with_orders_route('"/api/orders"', '"api.acme.example.org"', auth="none")).plan
    doc = kong.build(plan, plan.region("use1"))
    assert "consumers" not in doc
    assert kong.header(plan.region("use1"), doc) == banner("#")  # and no secret input to fill


# ---------------------------------------------------------------- the load balancer's health checks


def kong_path_matches(kong_path: str, request_path: str) -> bool:
    """Kong's path matching: `~` regex anchored at the start, else a prefix."""
    if kong_path.startswith("~"):
        return re.match(kong_path[1:], request_path) is not None
    return request_path.startswith(kong_path)


@pytest.mark.parametrize("case", CASES)
def test_the_health_check_path_is_answered_by_kong_without_auth(case):
    """The load balancers and the global DNS health checks request edge.dns.health_check_path: on every name
    the load balancer serves (Terraform's hostnames) and on any other Host (the LBs' probes send a pod
    address), Kong answers 200 itself, with no authentication plugin in the way."""
    plan, files = emitted(case)
    path = plan.spec.edge.dns.health_check_path
    for region in plan.regions:
        doc = files[region.name][1]
        named, any_host = doc["routes"]
        assert "hosts" not in any_host
        service_hosts = {h for s in doc["services"] for r in s["routes"] for h in r["hosts"]}
        assert set(lb_hostnames(plan, region)) | service_hosts == set(named["hosts"])
        assert named["hosts"][:4] == lb_hostnames(plan, region)  # <region>.<domain> first: what DNS probes
        for route in (named, any_host):
            assert route["methods"] == ["GET", "HEAD"]
            assert [p["name"] for p in route["plugins"]] == ["request-termination"]  # no jwt: unauthenticated
            assert route["plugins"][0]["config"] == {"status_code": 200, "message": "ok"}
            assert route["tags"] == ["platformc", region.name, "gateway"]
            [kp] = route["paths"]
            assert kong_path_matches(kp, path)
            assert not kong_path_matches(kp, path + "x") and not kong_path_matches(kp, path + "/x")
        # global plugins never authenticate; only routes carry jwt
        assert "jwt" not in {p["name"] for p in doc["plugins"]}
        # precedence on a shared host: the health route has every kind of matcher a service route has
        # (hosts, paths, methods), and Kong ranks a regex path above prefix paths among equals
        for s in doc["services"]:
            for r in s["routes"]:
                kinds = {k for k in ("hosts", "paths", "methods", "headers", "snis") if r.get(k)}
                assert kinds <= {k for k in ("hosts", "paths", "methods") if named.get(k)}
                assert not any(p.startswith("~") for p in r["paths"])


def test_a_service_route_on_the_health_check_path_is_refused():
    # The spec refuses it with a position (R035); the emitter keeps its own guard as a second line.
    text = with_orders_route('"/healthz"', '"api.acme.example.org"')
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    (d,) = [d for d in exc.value.diagnostics if d.severity == "error"]
    assert (d.code, d.path, d.line) == ("R035", "settings.services.orders.routes[0].paths[0]", line_of(text, "        - paths: ["))


def test_the_health_check_path_is_matched_literally():
    text = TWO_REGION.replace("edge:\n", "edge:\n  dns: {health_check_path: /status.v1/live-check}\n", 1)
    assert text != TWO_REGION
    plan = compile_text(text).plan
    [kp] = kong.build(plan, plan.region("use1"))["routes"][0]["paths"]
    assert kong_path_matches(kp, "/status.v1/live-check")
    assert not kong_path_matches(kp, "/statusXv1/live-check")  # the dot is not a regex wildcard


# ---------------------------------------------------------------- paths and hosts cannot surprise


def _emit_orders_route(path: str, host: str):
    text = with_orders_route(quoted(path), quoted(host))
    plan = compile_text(text).plan
    region = plan.region("use1")
    loaded = yaml.safe_load(kong.emit_region(plan, region)["kong/use1/kong.yaml"])
    return next(s for s in loaded["services"] if s["name"] == "orders")["routes"][0]


KONG_REJECTS = re.compile(r"//|/\.\.?(/|$)")  # empty or dot segments: Kong 3.9 wants normalized prefixes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.from_regex(PATH_PATTERN, fullmatch=True), host=st.from_regex(HOST_PATTERN, fullmatch=True))
def test_spec_paths_and_hosts_come_back_exactly_as_literal_prefixes(path, host):
    if KONG_REJECTS.search(path) or len(path) > 200:
        with pytest.raises(SpecError):  # dot segments (R023) and over-long paths (S005) never reach the emitter
            _emit_orders_route(path, host)
        return
    if path == "/healthz":  # the edge's health-check path is the gateway's own
        with pytest.raises(KongEmitError):
            _emit_orders_route(path, host)
        return
    route = _emit_orders_route(path, host)
    assert route["paths"] == [path] and route["hosts"] == [host]
    assert not route["paths"][0].startswith("~")  # `~` would make Kong read it as a regex
    assert route["methods"] == ["GET", "POST"] and route["name"] == "orders-1"


@pytest.mark.parametrize("path", ["/api//orders", "/api/./orders", "/api/../orders", "/api/..", "/."])
def test_paths_kong_would_reject_are_refused_with_a_position(path):
    # The spec refuses empty segments by pattern (S004) and dot segments by rule (R023), at the path's line.
    text = with_orders_route(quoted(path), quoted("www.acme.example.org"))
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    (d,) = [d for d in exc.value.diagnostics if d.severity == "error"]
    assert d.code in ("S004", "R023") and d.line == line_of(text, "        - paths: [")
    assert d.path.startswith("settings.services.orders.routes[0].paths")


NASTY = ["/a\n  - evil: 1", "/a: b", "/a #c", "~/api/.*", "/(a|b)", "/a*", "/{{ x }}", "/${{ env \"DECK_X\" }}",
         "api/orders", "/a b", "/a'b", "/a\"b", "/a%2e", "/a?x=1", "/a\\b", "/a\u2028b", "/" + "a" * 201, ""]


def _assert_positioned_rejection(text: str, field: str):
    """The compile fails with a diagnostic on the line of `field` (a schema error naming it, or the
    YAML loader's own error when the text is not even a string there)."""
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    paths_line = line_of(text, "        - paths: [")
    expected_line = paths_line + (1 if field.endswith("hosts") else 0)
    assert any(d.line == expected_line and d.col > 1 and (d.path.startswith(field) or d.code.startswith("L"))
               for d in exc.value.diagnostics), [d.format() for d in exc.value.diagnostics]


@pytest.mark.parametrize("path", NASTY)
def test_paths_outside_the_pattern_are_rejected_with_a_position(path):
    _assert_positioned_rejection(with_orders_route(quoted(path), '"www.acme.example.org"'),
                                 "settings.services.orders.routes[0].paths")


@settings(max_examples=100, deadline=None)
@given(path=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(
    lambda p: not re.fullmatch(PATH_PATTERN, p)))
def test_any_other_path_is_rejected_with_a_position(path):
    _assert_positioned_rejection(with_orders_route(quoted(path), '"www.acme.example.org"'),
                                 "settings.services.orders.routes[0].paths")


@pytest.mark.parametrize("host", ["*.acme.example.org", "WWW.acme.example.org", "www.acme.example.org:8443",
                                  "www..acme.example.org", "www.acme.example.org\n  - evil", "localhost", "-a.example.org"])
def test_hosts_outside_the_pattern_are_rejected_with_a_position(host):
    _assert_positioned_rejection(with_orders_route('"/api/orders"', quoted(host)),
                                 "settings.services.orders.routes[0].hosts")


# ---------------------------------------------------------------- docs


def test_docs_list_every_public_route_with_auth_and_limits():
    plan, files = emitted("reference")
    for region in plan.regions:
        md = kong.docs_region(plan, region)
        assert md.startswith("## API gateway (Kong)\n")
        doc = files[region.name][1]
        for s in doc["services"]:
            for r in s["routes"]:
                row = next(line for line in md.splitlines() if line.startswith(f"| `{r['name']}` |"))
                assert "2,000/s, 60,000/min per client IP" in row and "10 MB" in row
                assert ("none" in row) == ("plugins" not in r)
        assert "`DECK_JWT_PUBLIC_KEY`" in md and "vault:secret/data/platform/gateway#jwt_public_key" in md
        assert "Internal services (no Kong route): notification." in md


def test_services_do_not_replay_timed_out_requests():
    """Kong's default 5 retries re-send a GET, PUT or DELETE whose response timed out (nginx's proxy_next_upstream
    error timeout), each after the whole read timeout, to the one target behind Kong's sidecar: none here."""
    from compiler.targets import kong
    plan = compile_file(str(REPO / "platform.yaml")).plan
    for region in plan.regions:
        doc = kong.build(plan, region)
        mesh_services = [s for s in doc["services"] if s["protocol"] == "http"]
        assert mesh_services and all(s["retries"] == 0 for s in mesh_services), region.name


def test_kong_sidecar_accepts_the_health_checkers_http10():
    """lua-resty-healthcheck probes with HTTP/1.0; Istio's outbound listener answers 426 unless the proxy's metadata
    says HTTP10=1, and 426 is neither a healthy nor an unhealthy status to Kong: the checks would never fire."""
    import json
    from compiler.targets import helm, kong
    plan = compile_file(str(REPO / "platform.yaml")).plan
    meshed = 0
    for region in plan.regions:
        values = yaml.safe_load(helm.emit_region(plan, region)[f"helm/{region.name}/kong.values.yaml"])
        checked = any(u.get("healthchecks", {}).get("active", {}).get("type") == "http"
                      for u in kong.build(plan, region)["upstreams"])
        if checked and values.get("podLabels", {}).get("sidecar.istio.io/inject") == "true":
            config = json.loads(values["podAnnotations"]["proxy.istio.io/config"])
            assert config["proxyMetadata"]["ISTIO_META_HTTP10"] == "1", region.name
            meshed += 1
    assert meshed > 0
