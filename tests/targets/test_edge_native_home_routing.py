"""Home-region routing at the Front Door and Cloud CDN edges (compiler/targets/terraform/edge_rules.py).

The generated global root (cdn.tf, read back with python-hcl2) is evaluated as the edge would evaluate it:
- Cloud CDN: the URL map's route rules in priority order, each matching when one of its match rules does (every
  header match of it: `range_match` takes an integer header value, start inclusive, end exclusive); the service
  named (`home[local.serving["<home>"]]` with the DR variable's value) and the rule's header action;
- Front Door: the route's rule set in rule order, each rule matching when every request-header condition matches
  (RegEx: one of its match values found in the header's value); a route configuration override replaces the
  origin group, request header actions apply in order.
For the first and last id of every home range, and the ids next to them, the request must reach the home's backend
/ origin group (the neighbours: the neighbouring range's home, or the weighted default); no id, malformed ids and ids
outside the map the weighted default. The DR variable moves a lost home's franchises to its partner, marked as routed
by the edge; a viewer's X-Platformc-Forwarded-From never passes. range_regex is checked exhaustively on small
ranges and by property over random ones (every id in the range matches, with leading zeros too; the neighbours
and other strings do not).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re

import hcl2
import pytest

from compiler.errors import SpecError
from compiler.ir.home_routing import edge_over_limits, front_door_rule_sets, home_ranges
from compiler.pipeline import compile_file
from compiler.targets import terraform
from compiler.targets.terraform.edge_rules import FRONT_DOOR_VALUES_PER_RULE, range_regex
from tests.conftest import REPO
from tests.targets.hcl_support import resources as _resources, unquote as _s

FORWARDED = "x-platformc-forwarded-from"
DEFAULT = "weighted"


# ------------------------------------------------------------------ range_regex

def test_range_regex_is_exact_on_every_small_range():
    for lo in range(0, 61):
        for hi in range(lo, 61):
            rx = re.compile(range_regex(lo, hi))
            for n in range(0, 230):
                assert bool(rx.fullmatch(str(n))) == (lo <= n <= hi), (lo, hi, n)


def test_range_regex_is_exact_on_random_ranges():
    rng = random.Random(7)
    for _ in range(400):
        digits_lo = rng.randint(1, 15)
        lo = rng.randint(0, 10 ** digits_lo - 1)
        hi = lo + rng.choice([0, 1, rng.randint(0, 1000), rng.randint(0, 10 ** rng.randint(1, 15))])
        hi = min(hi, 10 ** 15 - 1)
        rx = re.compile(range_regex(lo, hi))
        inside = {lo, hi, (lo + hi) // 2} | {rng.randint(lo, hi) for _ in range(20)}
        for n in inside:
            assert rx.fullmatch(str(n)), (lo, hi, n)
            assert rx.fullmatch("000" + str(n)), (lo, hi, n)  # Kong's tonumber reads leading zeros
        outside = {lo - 1, hi + 1, hi + rng.randint(1, 10 ** 6), lo - rng.randint(1, 10 ** 6)}
        for n in outside:
            if n >= 0:
                assert not rx.fullmatch(str(n)), (lo, hi, n)
        for s in ("", "a", f"{lo}a", f" {lo}", f"+{lo}", f"-{lo}", f"{lo}.0", "0x1"):
            assert not rx.fullmatch(s), (lo, hi, s)


def test_range_regex_refuses_what_is_not_a_range():
    with pytest.raises(ValueError):
        range_regex(5, 4)
    with pytest.raises(ValueError):
        range_regex(-1, 4)


# ------------------------------------------------------------------ the generated rules

def _global(plan) -> dict[str, str]:
    return {p.split("terraform/global/", 1)[1]: t for p, t in terraform.emit_global(plan).items()
            if p.startswith("terraform/global/")}


_rx = functools.lru_cache(maxsize=None)(re.compile)


@functools.lru_cache(maxsize=8)
def _parse(text: str) -> dict:
    return hcl2.loads(text)


def _expr(v) -> str:
    v = _s(v)
    return v[2:-1] if isinstance(v, str) and v.startswith("${") and v.endswith("}") else v


def _cond(expr: str, serving: dict):
    """`local.serving["<home>"] == "<home>" ? A : B` (A, B: JSON lists) -> the list."""
    m = re.fullmatch(r'local\.serving\["([^"]+)"\] == "([^"]+)" \? (\[.*?\]) : (\[.*?\])', expr)
    assert m, expr
    home, other, a, b = m.groups()
    return json.loads(a) if serving.get(home, home) == other else json.loads(b)


def _target(expr: str, kind: str, serving: dict) -> str:
    m = re.fullmatch(kind + r'\.home\[local\.serving\["([^"]+)"\]\]\.id', expr)
    if m:
        return serving.get(m.group(1), m.group(1))
    assert expr in (f"{kind}.edge.id", f"{kind}.regions.id"), expr
    return DEFAULT


def _dyn(d: dict, name: str) -> dict:
    """A `dynamic "<name>"` block as python-hcl2 8 gives it (the label keeps its quotes)."""
    return d.get(name) or d[f'"{name}"']


def _viewer(fid) -> dict:
    h = {FORWARDED: "spoofed", "host": "api.example"}
    if fid is not None:
        h["x-franchise-id"] = fid
    return h


def _int_header(value: str):
    """How the load balancer reads a header as an integer for range_match (not an integer: no match)."""
    m = re.fullmatch(r"\s*([+-]?[0-9]+)\s*", value)
    return int(m.group(1)) if m else None


def cloud_cdn(files: dict, headers: dict, serving: dict | None = None) -> tuple[str, dict]:
    serving = serving or {}
    doc = _parse(files["cdn.tf"])
    um = _resources(doc, "google_compute_url_map")["edge"]
    (pm,) = um["path_matcher"]
    rules = sorted(pm["route_rules"], key=lambda r: r["priority"])
    headers = {k.lower(): v for k, v in headers.items()}
    for r in rules:
        def ok(m):
            if _s(m.get("prefix_match")) != "/":
                return False
            for hm in m.get("header_matches", []):
                value = headers.get(_s(hm["header_name"]).lower())
                if value is None:
                    return False
                (rm,) = hm["range_match"]
                n = _int_header(value)
                if n is None or not rm["range_start"] <= n < rm["range_end"]:
                    return False
            return True
        if not any(ok(m) for m in r["match_rules"]):
            continue
        out = dict(headers)
        for ha in r.get("header_action", []):
            remove = ha.get("request_headers_to_remove", [])
            remove = _cond(_expr(remove), serving) if isinstance(remove, str) else [_s(x) for x in remove]
            for name in remove:
                out.pop(name.lower(), None)
            adds = [(_s(a["header_name"]), _s(a["header_value"])) for a in ha.get("request_headers_to_add", [])]
            for d in ha.get("dynamic", []):
                body = _dyn(d, "request_headers_to_add")
                for value in _cond(_expr(body["for_each"]), serving):
                    (c,) = body["content"]
                    assert _expr(c["header_value"]) == "request_headers_to_add.value" and c["replace"] is True
                    adds.append((_s(c["header_name"]), value))
            for name, value in adds:
                out[name.lower()] = value
        return _target(_expr(r["service"]), "google_compute_backend_service", serving), out
    raise AssertionError("no route rule matched (the catch-all is missing)")


def front_door(files: dict, headers: dict, serving: dict | None = None) -> tuple[str, dict]:
    serving = serving or {}
    doc = _parse(files["cdn.tf"])
    route = _resources(doc, "azurerm_cdn_frontdoor_route")["regions"]
    sets = re.findall(r"azurerm_cdn_frontdoor_rule_set\.(\w+)\.id", str(route["cdn_frontdoor_rule_set_ids"]))
    group = _target(_expr(route["cdn_frontdoor_origin_group_id"]), "azurerm_cdn_frontdoor_origin_group", serving)
    def set_of(r):
        return re.fullmatch(r"azurerm_cdn_frontdoor_rule_set\.(\w+)\.id", _expr(r["cdn_frontdoor_rule_set_id"])).group(1)
    rules = [r for r in _resources(doc, "azurerm_cdn_frontdoor_rule").values() if set_of(r) in sets]
    out = {k.lower(): v for k, v in headers.items()}
    # the route runs its rule sets in the order it lists them, each set's rules in their order
    for r in sorted(rules, key=lambda r: (sets.index(set_of(r)), r["order"])):
        matched = True
        for conds in r.get("conditions", []):
            for c in conds.get("request_header_condition", []):
                assert _s(c["operator"]) == "RegEx" and not c.get("negate_condition") and not c.get("transforms")
                value = out.get(_s(c["header_name"]).lower())
                if value is None or not any(_rx(_s(v)).search(value) for v in c["match_values"]):
                    matched = False
            assert set(conds) - {"__is_block__"} <= {"request_header_condition"}, conds.keys()
        if not matched:
            continue
        (acts,) = r["actions"]
        for o in acts.get("route_configuration_override_action", []):
            group = _target(_expr(o["cdn_frontdoor_origin_group_id"]), "azurerm_cdn_frontdoor_origin_group", serving)
            assert _s(o["forwarding_protocol"]) == "HttpsOnly"
        hdr = [(_s(a["header_action"]), _s(a["header_name"]), _s(a.get("value"))) for a in acts.get("request_header_action", [])]
        for d in acts.get("dynamic", []):
            body = _dyn(d, "request_header_action")
            for value in _cond(_expr(body["for_each"]), serving):
                (c,) = body["content"]
                assert _expr(c["value"]) == "request_header_action.value"
                hdr.append((_s(c["header_action"]), _s(c["header_name"]), value))
        for action, name, value in hdr:
            if action == "Delete":
                out.pop(name.lower(), None)
            else:
                out[name.lower()] = "198.51.100.7" if value == "{client_ip}" else value
        if _s(r.get("behavior_on_match", "Continue")) == "Stop":
            break
    return group, out


EDGES = {"gcp-only": cloud_cdn, "azure-only": front_door}


@pytest.fixture(scope="module", params=sorted(EDGES))
def case(request):
    plan = compile_file(str(REPO / f"tests/cases/{request.param}/platform.yaml")).plan
    return request.param, plan, _global(plan)


def _borders(plan) -> list[tuple[str, str | None]]:
    """(id as sent, expected home or None = the weighted default) at every range's borders and past them."""
    ranges = home_ranges(plan)
    def home(n):
        return next((h for a, b, h in ranges if a <= n <= b), None)
    out = []
    for a, b, _h in ranges:
        for n in (a - 1, a, a + 1, (a + b) // 2, b - 1, b, b + 1):
            if n >= 0:
                out.append((str(n), home(n)))
        out.append(("00" + str(a), home(a)))
    return out


def test_every_range_border_reaches_its_home(case):
    name, plan, files = case
    evaluate = EDGES[name]
    cases = _borders(plan)
    assert {h for _, h in cases} >= {r.name for r in plan.regions}
    for fid, home in cases:
        target, headers = evaluate(files, _viewer(fid))
        assert target == (home or DEFAULT), (name, fid)
        assert FORWARDED not in headers, (name, fid)  # a viewer's forwarded-from never passes


def test_no_id_or_a_malformed_id_keeps_the_weighted_default(case):
    name, plan, files = case
    evaluate = EDGES[name]
    last = max(b for _a, b, _h in home_ranges(plan))
    for fid in (None, "", "abc", "12a", "1.5", "0x10", "1 2", str(last + 1), "99999999999999999999"):
        target, headers = evaluate(files, _viewer(fid))
        assert target == DEFAULT, (name, fid)
        assert FORWARDED not in headers, (name, fid)


def test_dr_moves_a_lost_homes_franchises_to_its_partner(case):
    name, plan, files = case
    evaluate = EDGES[name]
    lost = plan.regions[0]
    serving = {lost.name: lost.dr_partner}
    for a, b, home in home_ranges(plan):
        for n in (a, b):
            target, headers = evaluate(files, _viewer(str(n)), serving)
            if home == lost.name:
                assert target == lost.dr_partner and headers.get(FORWARDED) == "edge", (name, n)
            else:
                assert target == home and FORWARDED not in headers, (name, n)


def test_each_home_target_is_the_regions_own_name(case):
    name, plan, files = case
    doc = hcl2.loads(files["cdn.tf"])
    main = hcl2.loads(files["main.tf"])
    regions = {k: v for loc in main["locals"] for k, v in loc.get("regions", {}).items()}
    domain = plan.spec.organization.domain
    assert {k: _s(v["hostname"]) for k, v in regions.items()} == {r.name: f"{r.name}.{domain}" for r in plan.regions}
    if name == "gcp-only":
        ep = _resources(doc, "google_compute_global_network_endpoint")["home"]
        bs = _resources(doc, "google_compute_backend_service")["home"]
        assert _expr(ep["for_each"]) == "local.regions" and _expr(ep["fqdn"]) == "each.value.hostname" and ep["port"] == 443
        assert _expr(ep["global_network_endpoint_group"]) == "google_compute_global_network_endpoint_group.home[each.key].id"
        assert _expr(bs["for_each"]) == "local.regions" and _s(bs["protocol"]) == "HTTPS" and bs["enable_cdn"] is True
        assert [_expr(b["group"]) for b in bs["backend"]] == ["google_compute_global_network_endpoint_group.home[each.key].id"]
        weighted = _resources(doc, "google_compute_backend_service")["edge"]
        for k in ("custom_request_headers", "security_policy", "cdn_policy", "load_balancing_scheme"):
            assert bs[k] == weighted[k], k
    else:
        o = _resources(doc, "azurerm_cdn_frontdoor_origin")["home"]
        assert _expr(o["for_each"]) == "local.regions" and _expr(o["host_name"]) == "each.value.hostname"
        assert _expr(o["cdn_frontdoor_origin_group_id"]) == "azurerm_cdn_frontdoor_origin_group.home[each.key].id"
        assert o["https_port"] == 443 and o["certificate_name_check_enabled"] is True and o["enabled"] is True


@pytest.fixture(scope="module", params=sorted(EDGES))
def scattered(request, tmp_path_factory):
    """The one-cloud case with a scattered registry of 400 franchises (ids 1..3,000): many ranges per home."""
    tmp = tmp_path_factory.mktemp(request.param)
    text = (REPO / f"tests/cases/{request.param}/platform.yaml").read_text()
    assert text.count("sharding: {") == 1, "the case's sharding line moved"
    text = text.replace("sharding: {", "sharding: {registry_file: franchises.csv, ")
    plan0 = compile_file(str(REPO / f"tests/cases/{request.param}/platform.yaml")).plan
    names = [r.name for r in plan0.regions]
    rng = random.Random(5)
    ids = sorted(rng.sample(range(1, 3001), 400))
    (tmp / "franchises.csv").write_text("franchise_id,home_region,jurisdiction\n"
                                        + "".join(f"{i},{rng.choice(names)},\n" for i in ids))
    (tmp / "platform.yaml").write_text(text)
    plan = compile_file(str(tmp / "platform.yaml")).plan
    return request.param, plan, _global(plan)


def test_a_scattered_registry_routes_every_franchise_home(scattered):
    name, plan, files = scattered
    evaluate = EDGES[name]
    ranges = home_ranges(plan)
    assert len(ranges) > 2 * FRONT_DOOR_VALUES_PER_RULE  # several rules per home on Front Door
    homes = {h.franchise_id: h.region for h in plan.registry}
    for fid, home in homes.items():
        assert evaluate(files, _viewer(str(fid)))[0] == home, (name, fid)
    absent = [i for i in range(1, 3001) if i not in homes][:40]
    for fid in absent:
        assert evaluate(files, _viewer(str(fid)))[0] == DEFAULT, (name, fid)


def test_the_docs_say_where_the_edge_sends_each_regions_franchises(case):
    from compiler.targets import kong
    name, plan, _files = case
    what = {"azure-only": "Front Door profile has this region as origin group",
            "gcp-only": "Cloud CDN load balancer has this region as backend service"}[name]
    domain = plan.spec.organization.domain
    for r in plan.regions:
        tf = terraform.docs_region(plan, r)
        assert f"| edge routing | the global root's {what} `home-{r.name}` (`{r.name}.{domain}`" in tf
        assert f"DR: once `disaster_recovery.failed_over` lists {r.name} (the region runbook, step 4), its rules " \
               f"send them to {r.dr_partner}" in tf
        k = kong.docs_region(plan, r)
        assert "**The edge routes first**" in k and "second line" in k and "`serving_regions`" in k
        assert "`disaster_recovery.failed_over`" in k
        assert "CloudFront" not in k.split("**The edge routes first**")[1].split("**Judgement**")[0]


def test_the_dr_runbook_moves_a_lost_regions_franchises_at_the_edge(case):
    from compiler.targets import ansible
    name, plan, _files = case
    for r in plan.regions:
        text = ansible.docs_region(plan, r)
        if "4. Serve this region's franchises from" not in text:  # no standby cluster (managed PostgreSQL)
            assert name == "azure-only" and "disaster_recovery.failed_over" not in text
            continue
        what, target = {"gcp-only": ("Cloud CDN's route rules", "backend service"),
                        "azure-only": ("Front Door's home rule", "origin group")}[name]
        assert f"add `{r.name}` to `disaster_recovery.failed_over`" in text
        assert f"the edge's ({what} in the global root)" in text and "KeyValueStore" not in text
        assert f"{r.dr_partner}'s {target} `home-{r.dr_partner}`" in text


def _registry_plan(tmp_path, case: str, count: int, top: int):
    text = (REPO / f"tests/cases/{case}/platform.yaml").read_text()
    text = text.replace("sharding: {", "sharding: {registry_file: franchises.csv, ")
    old = "franchises_per_shard: 500, expected_franchises: 1500, capacity_franchises: 3000}"
    assert old in text
    text = text.replace(old, "franchises_per_shard: 5000, expected_franchises: 10000, capacity_franchises: 20000}")
    names = [r.name for r in compile_file(str(REPO / f"tests/cases/{case}/platform.yaml")).plan.regions]
    rng = random.Random(11)
    ids = sorted(rng.sample(range(1, top + 1), count))
    (tmp_path / "franchises.csv").write_text("franchise_id,home_region,jurisdiction\n"
                                             + "".join(f"{i},{rng.choice(names)},\n" for i in ids))
    (tmp_path / "platform.yaml").write_text(text)
    return compile_file(str(tmp_path / "platform.yaml")).plan


def test_front_door_rules_past_100_go_to_further_rule_sets(tmp_path):
    plan = _registry_plan(tmp_path, "azure-only", 3000, 9000)
    files = _global(plan)
    doc = _parse(files["cdn.tf"])
    rules = _resources(doc, "azurerm_cdn_frontdoor_rule")
    per_set: dict = {}
    for r in rules.values():
        per_set.setdefault(_expr(r["cdn_frontdoor_rule_set_id"]), []).append(r["order"])
    assert len(per_set) >= 2 and all(sorted(v) == list(range(1, len(v) + 1)) and len(v) <= 100 for v in per_set.values())
    route = _resources(doc, "azurerm_cdn_frontdoor_route")["regions"]
    assert str(route["cdn_frontdoor_rule_set_ids"]).count("azurerm_cdn_frontdoor_rule_set.") == len(per_set)
    homes = {h.franchise_id: h.region for h in plan.registry}
    for fid in random.Random(2).sample(sorted(homes), 300):
        assert front_door(files, _viewer(str(fid)))[0] == homes[fid], fid
    for fid in [i for i in range(1, 9001) if i not in homes][:30]:
        assert front_door(files, _viewer(str(fid)))[0] == DEFAULT, fid


def _line_of(text: str, anchor: str) -> int:
    return text[:text.index(anchor)].count("\n") + 1


def test_a_url_map_past_its_size_limit_is_refused(tmp_path):
    """Refused at validation (R056), at the registry's line, before any file is emitted."""
    with pytest.raises(SpecError) as exc:
        _registry_plan(tmp_path, "gcp-only", 8000, 20000)
    line = _line_of((tmp_path / "platform.yaml").read_text(), "registry_file:")
    hits = [(d.code, d.line) for d in exc.value.diagnostics]
    assert ("R056", line) in hits, hits
    assert any("over a URL map's 1,000,000" in d.message for d in exc.value.diagnostics)


def test_front_door_past_its_profile_limits_is_refused():
    """More homes than a Front Door Premium profile's 200 origin groups: R056 (the same check the target makes)."""
    plan = compile_file(str(REPO / "tests/cases/azure-only/platform.yaml")).plan
    many = dataclasses.replace(plan, regions=tuple(plan.regions) * 100)
    assert edge_over_limits(plan) is None
    over = edge_over_limits(many)
    assert over and "origin groups" in over and "200" in over


def test_the_rule_counts_what_the_target_emits(tmp_path):
    """R056's count of Front Door rule sets is the number the target writes (3,000 scattered franchises: several sets)."""
    plan = _registry_plan(tmp_path, "azure-only", 3000, 9000)
    doc = _parse(_global(plan)["cdn.tf"])
    assert len(_resources(doc, "azurerm_cdn_frontdoor_rule_set")) == front_door_rule_sets(plan) > 1
