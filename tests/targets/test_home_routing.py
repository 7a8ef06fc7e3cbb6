"""Home-region routing: the generated Kong pre-function, run with LuaJIT against the shard map.

The function requires the platform's home-region map, a Lua module the helm target ships once for every region
(generated/helm/global/charts/kong-home-routing): the harness loads it from that chart's ConfigMap, at the path the
region's Kong values mount it, through a `require` that allows only what the values' untrusted_lua_sandbox_requires
allows (as Kong's sandbox does).

For every region of the reference platform, each franchise id at the borders of every shard range (and ids
outside every range, malformed ids, a forwarded request) goes through the region's function with a stand-in
`kong` PDK; the outcome must be: served here when the franchise is homed here (or has no home), forwarded to
the home's upstream when the home is a linked region, 421 naming the home otherwise. The upstream forwarded
to must be in the region's kong.yaml with the home's internal gateway as its only target and the request's
host as Host.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

import pytest
import yaml

from compiler.ir.network import INTERNAL_GATEWAY_CLOUDS, internal_gateway_name, linked_regions
from compiler.pipeline import compile_file
from compiler.targets import helm, kong
from compiler.targets.kong.routing import home_ranges
from tests.conftest import require_tool

REPO = Path(__file__).resolve().parents[2]

HARNESS = r"""
local source = io.open(arg[1]):read("*a")
local fn = assert(loadstring(source))
package.path = arg[3] .. "/?.lua"  -- the kong chart's /opt/?.lua, with the ConfigMap mounted below it
local allowed = {}
for m in string.gmatch(arg[4], "[^,]+") do allowed[m] = true end
local function sandbox_require(m)
  if not allowed[m] then error("require '" .. m .. "' not allowed within sandbox") end
  return require(m)
end
for line in io.lines(arg[2]) do
  local id, host, fwd = line:match("^(%S*)\t(%S*)\t(%S*)$")
  local out = "local"
  local headers = {}
  if id ~= "-" then headers["x-franchise-id"] = id end
  if fwd ~= "-" then headers["x-platformc-forwarded-from"] = fwd end
  local kong = {
    request = {
      get_header = function(name) return headers[string.lower(name)] end,
      get_host = function() return host end,
      get_path = function() return "/orders/1" end,
      get_raw_query = function() return "a=1" end,
    },
    service = {
      request = {
        set_header = function(name, value) if string.lower(name) == "x-platformc-forwarded-from" then out = out .. "" end end,
        set_scheme = function(s) assert(s == "https") end,
        set_path = function(p) assert(p == "/orders/1") end,
        set_raw_query = function(q) assert(q == "a=1") end,
      },
      set_upstream = function(name) out = "upstream " .. name; return true end,
    },
    response = {
      exit = function(status, body, hdrs) out = "exit " .. status .. " " .. ((hdrs or {})["X-Platformc-Home-Region"] or "") end,
    },
    log = {err = function() end},
  }
  setfenv(fn, setmetatable({kong = kong, require = sandbox_require}, {__index = _G}))
  fn()
  io.write(line, "\t", out, "\n")
end
"""


@pytest.fixture(scope="module")
def plan():
    return compile_file(str(REPO / "platform.yaml")).plan


def _cases(plan):
    ranges = home_ranges(plan)
    ids = {}
    for first, last, home in ranges:
        for i in (first, first + 1, last - 1, last):
            ids[i] = home
    ids[0] = None
    ids[ranges[-1][1] + 1] = None
    return ids


def _mounted(plan, region, tmp_path) -> tuple[str, str]:
    """The map module where the region's Kong finds it (the global chart's ConfigMap at the values' mountPath, under
    a stand-in for the chart's /opt), and the modules its sandbox allows."""
    values = yaml.safe_load(helm.emit_region(plan, region)[f"helm/{region.name}/kong.values.yaml"])
    chart = helm.emit_global(plan)["helm/global/charts/kong-home-routing/templates/configmap.yaml"]
    config_map = yaml.safe_load(chart)
    root = tmp_path / "opt"
    for mount in values["extraConfigMaps"]:
        assert mount["name"] == config_map["metadata"]["name"] and mount["mountPath"].startswith("/opt/")
        d = root / mount["mountPath"][len("/opt/"):]
        d.mkdir(parents=True, exist_ok=True)
        for key, text in config_map["data"].items():
            (d / key).write_text(text)
    return str(root), values["env"]["untrusted_lua_sandbox_requires"]


def _run(luajit, tmp_path, lua: str, lines: list[str], plan, region) -> dict:
    root, allowed = _mounted(plan, region, tmp_path)
    (tmp_path / "fn.lua").write_text(lua)
    (tmp_path / "harness.lua").write_text(HARNESS)
    (tmp_path / "cases.txt").write_text("\n".join(lines) + "\n")
    res = subprocess.run([luajit, str(tmp_path / "harness.lua"), str(tmp_path / "fn.lua"), str(tmp_path / "cases.txt"),
                          root, allowed], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    out = {}
    for row in res.stdout.splitlines():
        id_, host, fwd, result = row.split("\t")
        out[(id_, host, fwd)] = result
    return out


def test_the_shard_map_covers_every_shard_once(plan):
    ranges = home_ranges(plan)
    assert ranges[0][0] == 1
    for (a, b, ha), (c, d, hc) in zip(ranges, ranges[1:]):
        assert c == b + 1 and ha != hc  # contiguous, merged where one home follows itself
    for s in plan.shards:
        home = next(h for first, last, h in ranges if first <= s.first_id and s.last_id <= last)
        assert home == s.region


def test_each_franchise_reaches_its_home_region(plan, tmp_path):
    luajit = require_tool("luajit")
    domain = plan.spec.organization.domain
    ids = _cases(plan)
    hosts = sorted({h for r in plan.regions for s in r.services for rt in s.routes for h in rt.hosts}
                   | {f"{plan.spec.edge.dns.api_host}.{domain}"})
    checked = {"local": 0, "forward": 0, "421": 0}
    for region in plan.regions:
        doc = kong.build(plan, region)
        fn = next(p for p in doc["plugins"] if p["name"] == "pre-function")["config"]["access"][0]
        upstreams = {u["name"]: u for u in doc["upstreams"]}
        lines = [f"{i}\t{h}\t-" for i in ids for h in hosts]
        lines += [f"abc\t{hosts[0]}\t-", f"-\t{hosts[0]}\t-", f"12.5\t{hosts[0]}\t-", f"1e3\t{hosts[0]}\t-",
                  f"99999999999999999999\t{hosts[0]}\t-"]
        lines += [f"{i}\t{hosts[0]}\tother" for i in ids]
        got = _run(luajit, tmp_path, fn, lines, plan, region)
        linked = set(linked_regions(plan.spec, region.name))
        for (id_, host, fwd), result in got.items():
            home = ids.get(int(id_)) if id_.isdigit() and int(id_) in ids else None
            if fwd != "-" or home is None or home == region.name:
                assert result == "local", (region.name, id_, host, fwd, result)
                checked["local"] += 1
            elif home in linked and region.cloud in INTERNAL_GATEWAY_CLOUDS:
                assert result.startswith("upstream "), (region.name, id_, home, result)
                up = upstreams[result.split(" ", 1)[1]]
                assert [t["target"] for t in up["targets"]] == [f"{internal_gateway_name(home, domain)}:443"]
                assert up["host_header"] == host
                checked["forward"] += 1
            else:
                assert result == f"exit 421 {home}", (region.name, id_, home, result)
                checked["421"] += 1
    assert all(checked.values()), checked


@functools.lru_cache(maxsize=None)
def _plan_of(spec: str):
    return compile_file(str(REPO / spec)).plan


AZURE_PAIRS = [("platform.yaml", "eu-west-2", "me-south-1"), ("platform.yaml", "me-south-1", "eu-west-2"),
               ("tests/cases/azure-only/platform.yaml", "eus2", "weu"), ("tests/cases/azure-only/platform.yaml", "weu", "eus2")]


@pytest.mark.parametrize("spec,here,home", AZURE_PAIRS)
def test_an_azure_region_forwards_to_its_peered_azure_home(spec, here, home, tmp_path):
    """Azure regions peer their VNets: a franchise homed in the other Azure region is forwarded over HTTPS to that
    region's internal gateway (an internal Azure load balancer in front of Kong), never answered 421. A franchise
    homed on another cloud is still answered 421 (no inter-cloud network)."""
    luajit = require_tool("luajit")
    p = _plan_of(spec)
    domain = p.spec.organization.domain
    region = p.region(here)
    doc = kong.build(p, region)
    fn = next(x for x in doc["plugins"] if x["name"] == "pre-function")["config"]["access"][0]
    upstreams = {u["name"]: u for u in doc["upstreams"]}
    ranges = home_ranges(p)
    homed = [first for first, _, h in ranges if h == home]
    elsewhere = [(first, h) for first, _, h in ranges if p.region(h).cloud != "azure"]
    assert homed
    host = f"{p.spec.edge.dns.api_host}.{domain}"
    lines = [f"{i}\t{host}\t-" for i in homed] + [f"{i}\t{host}\t-" for i, _ in elsewhere]
    got = _run(luajit, tmp_path, fn, lines, p, region)
    for i in homed:
        result = got[(str(i), host, "-")]
        assert result.startswith("upstream "), (here, i, home, result)
        up = upstreams[result.split(" ", 1)[1]]
        assert [t["target"] for t in up["targets"]] == [f"{internal_gateway_name(home, domain)}:443"]
        assert up["host_header"] == host
        assert up["healthchecks"]["active"]["type"] == "https" and up["healthchecks"]["active"]["https_sni"] == host
    for i, h in elsewhere:
        assert got[(str(i), host, "-")] == f"exit 421 {h}", (here, i, h)


def _scattered_registry(tmp_path, count: int) -> Path:
    """aws-only with a registry whose neighbouring franchises alternate homes: one map range per franchise."""
    text = (REPO / "tests/cases/aws-only/platform.yaml").read_text()
    old = "sharding: {franchises_per_shard: 500, expected_franchises: 1500, capacity_franchises: 3000}"
    assert old in text
    text = text.replace(old, f"sharding: {{registry_file: franchises.csv, franchises_per_shard: {count}, "
                             f"expected_franchises: {count}, capacity_franchises: {2 * count}}}")
    names = [r.name for r in _plan_of("tests/cases/aws-only/platform.yaml").regions]
    (tmp_path / "franchises.csv").write_text("franchise_id,home_region,jurisdiction\n"
                                             + "".join(f"{i},{names[i % len(names)]},\n" for i in range(1, count + 1)))
    (tmp_path / "platform.yaml").write_text(text)
    return tmp_path / "platform.yaml"


def test_the_map_size_the_rule_counts_is_the_emitted_modules(tmp_path):
    """R058's estimate of the map (compiler/ir/home_routing.py) against the module the helm target writes."""
    from compiler.ir.home_routing import gateway_map_bytes
    plan = compile_file(str(_scattered_registry(tmp_path, 3000))).plan
    source = yaml.safe_load(helm.emit_global(plan)["helm/global/charts/kong-home-routing/templates/configmap.yaml"]
                            )["data"]["home_routing.lua"]
    assert len(home_ranges(plan)) == 3000
    assert 0 <= gateway_map_bytes(plan) - len(source.encode()) < 512, (gateway_map_bytes(plan), len(source.encode()))


def test_a_map_past_a_configmaps_limit_is_refused(tmp_path):
    """50,000 franchises whose neighbours alternate homes: ~1.2 MB of ranges, refused at validation (R058) at the
    registry's line, before any file is emitted (the chart could not install)."""
    from compiler.errors import SpecError
    spec = _scattered_registry(tmp_path, 50_000)
    with pytest.raises(SpecError) as exc:
        compile_file(str(spec))
    line = spec.read_text()[:spec.read_text().index("registry_file:")].count("\n") + 1
    hits = [(d.code, d.line) for d in exc.value.diagnostics]
    assert ("R058", line) in hits, hits
    assert any("over a ConfigMap's" in d.message for d in exc.value.diagnostics)
