"""Home-region routing at the gateway: each franchise's requests reach the region that holds its shard.

Global DNS spreads requests over every region by traffic share, while a franchise's data lives in one region
(its home: the shard map's ranges by franchise id, or the franchise registry's rows). Kong in every region runs
one serverless function first (a global `pre-function`, access phase, before authentication and rate limits):

- no franchise id (the gateway's `hash_on_header`, digits only), or the franchise is homed here, or the request
  already carries X-Platformc-Forwarded-From (a forwarded request is never forwarded again): Kong serves it;
- homed in a linked region of the same cloud (compiler/ir/network.py): Kong sends it, unchanged (the client's
  path and query, not the route's stripped path), over HTTPS to that region's internal gateway across the
  VPC peering, through a Kong upstream per (home region, request host) whose `host_header` is the request's
  host, so the home's load balancer serves its own certificate for it (SNI) and the home's Kong routes it as
  it would the client's request (and authenticates it there);
- homed in a region Kong cannot reach privately (another cloud, or a cloud whose internal gateway is not built):
  Kong answers 421 Misdirected Request with X-Platformc-Home-Region, and nothing reaches a region that does
  not hold the data.

Why the gateway and not DNS per franchise: clients use one API name, a franchise id is in the request (not in
the name), and the shard map changes with a spec edit that regenerates this function; the forwarding hop is a
peering hop inside one cloud (a few ms to tens of ms), paid only by requests that land away from home.
Why the internal gateway and not the home's public name: the regional load balancers admit the CDN only.

The map (the shard map compressed to ranges, adjacent ranges of one home merged, looked up by binary search) is
not in this file: it is one Lua module per platform, `platformc.home_routing`, which the helm target ships to every
region's Kong (compiler/ir/home_routing.py, GATEWAY_MAP_*); the function requires it. Only what differs per region
is here: the region's name and its upstreams. tests/targets/test_home_routing.py runs the function and the module
with LuaJIT against the shard map.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.home_routing import (GATEWAY_MAP_FUNCTION, GATEWAY_MAP_MODULE, gateway_map_version,
                                      gateway_routes_homes, home_ranges)  # noqa: F401 (the shared map; tests import it here)
from compiler.ir.edge import health_check_path
from compiler.ir.network import FORWARDED_FROM_HEADER
from compiler.targets.kong.plugins import _lua_string, tags

KONG = "kong"
HOME_HEADER = "X-Platformc-Home-Region"
OWNER = "gateway"  # the routing entities are the gateway's own (tagged like its global plugins)


def forwards(region: RegionPlan) -> list:
    """Kong's `kong-forward` connections (compiler/wiring.py): one per home region it forwards to."""
    return [c for c in region.connections_from(KONG) if "kong-forward" in c.layers]


def home_of(connection) -> str:
    return connection.dest.name[len("gateway-"):]


def request_hosts(plan: PlatformPlan, region: RegionPlan) -> list[str]:
    """Every host a service route answers on (the API host for routes that name none)."""
    api = f"{plan.spec.edge.dns.api_host}.{plan.spec.organization.domain}"
    hosts = {h for s in region.services for r in s.routes for h in (r.hosts or [api])}
    return sorted(hosts)


def upstream_name(home: str, index: int) -> str:
    return f"home-{home}-{index + 1}"


def home_upstreams(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    """One upstream per (home region, request host): the home's internal gateway, the host as Host and SNI."""
    g = region.settings.gateway
    hosts = request_hosts(plan, region)  # the same for every home (it was computed once per home)
    out = []
    for c in forwards(region):
        home = home_of(c)
        t = tags(region, OWNER)
        for i, host in enumerate(hosts):
            out.append({
                "name": upstream_name(home, i), "algorithm": "round-robin", "host_header": host,
                "healthchecks": {"active": {
                    "type": "https", "http_path": health_check_path(plan), "https_sni": host,
                    "healthy": {"interval": g.healthy.interval_seconds, "successes": g.healthy.count},
                    "unhealthy": {"interval": g.unhealthy.interval_seconds, "timeouts": g.unhealthy.count,
                                  "tcp_failures": g.unhealthy.count, "http_failures": g.unhealthy.count}}},
                "tags": t,
                "targets": [{"target": f"{c.address}:{c.port}", "tags": t}],
            })
    return out


def routing_function(plan: PlatformPlan, region: RegionPlan) -> str:
    """The pre-function's Lua (access phase)."""
    hosts = request_hosts(plan, region)
    header = region.settings.gateway.hash_on_header
    lines = [
        "-- platformc: home-region routing (franchise id -> home region, from the shard map)",
        f"local REGION = {_lua_string(region.name)}",
        # the map's version: a new map changes this file, and so rolls the pods that cache the module
        f"-- home-region map: {GATEWAY_MAP_MODULE} version {gateway_map_version(plan)}",
        f"local home_of = require({_lua_string(GATEWAY_MAP_MODULE)}).{GATEWAY_MAP_FUNCTION}",
        "local UPSTREAM = {",
    ]
    for c in forwards(region):
        home = home_of(c)
        entries = ", ".join(f"[{_lua_string(h)}] = {_lua_string(upstream_name(home, i))}" for i, h in enumerate(hosts))
        lines.append(f"  [{_lua_string(home)}] = {{{entries}}},")
    lines += [
        "}",
        f"if kong.request.get_header({_lua_string(FORWARDED_FROM_HEADER)}) then return end",
        f"local raw = kong.request.get_header({_lua_string(header)})",
        'if type(raw) ~= "string" or #raw > 15 or not raw:match("^%d+$") then return end',
        "local home = home_of(tonumber(raw))",
        "if not home or home == REGION then return end",
        "local upstream = UPSTREAM[home] and UPSTREAM[home][kong.request.get_host()]",
        "if not upstream then",
        f'  return kong.response.exit(421, {{message = "franchise " .. raw .. " is served by region " .. home}}, '
        f'{{[{_lua_string(HOME_HEADER)}] = home}})',
        "end",
        f"kong.service.request.set_header({_lua_string(FORWARDED_FROM_HEADER)}, REGION)",
        'kong.service.request.set_scheme("https")',
        "kong.service.request.set_path(kong.request.get_path())",
        'kong.service.request.set_raw_query(kong.request.get_raw_query() or "")',
        "local ok, err = kong.service.set_upstream(upstream)",
        "if not ok then",
        '  kong.log.err("home-region routing: ", err)',
        '  return kong.response.exit(502, {message = "home region " .. home .. " is unreachable"})',
        "end",
    ]
    return "\n".join(lines) + "\n"


def routing_plugin(plan: PlatformPlan, region: RegionPlan) -> dict | None:
    """The global pre-function, when the platform has more than one region."""
    if not gateway_routes_homes(plan):
        return None
    return {"name": "pre-function", "config": {"access": [routing_function(plan, region)]},
            "tags": tags(region, "gateway")}
