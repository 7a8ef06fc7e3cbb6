"""Kong API gateway: one decK declarative file per region, generated/kong/<region>/kong.yaml.

Built as data and dumped as YAML (never templated), for Kong 3.9 OSS in DB-less mode, loadable with
`deck gateway sync` (decK fills the one secret input, see _kong_plugins.secret_inputs):

- a Kong service per public ServicePlan (one with routes; internal services get none), its routes
  nested under it, timeouts from `settings.gateway`;
- an upstream per service with one target, the Kubernetes Service: address and port of the service's
  `kong` connection in region.wiring (the Service port the kubernetes target emits). Round-robin and
  active health checks only: hashing over one target picks it every time (hashing on the franchise
  header lives in the mesh's DestinationRule, across the pods), and passive checks on the one target
  would take the whole service out after a few errors of a single pod;
- platform-wide plugins (rate limiting, CORS, request size, bot detection, Prometheus, correlation
  id), a jwt plugin on each authenticated route, and the JWT issuer as the one consumer;
- two service-less routes that answer `edge.dns.health_check_path` themselves (request-termination,
  200, no authentication) for the cloud load balancer's and the global DNS health checks (the public
  path is described in compiler/ir/edge.py);
- tags `platformc`, region and service on every entity, `_info.select_tags` = platformc + region,
  so decK owns exactly these entities.
"""

from __future__ import annotations

import re

from compiler.ir import PlatformPlan, RegionPlan, ServicePlan
from compiler.render import banner, dump_yaml_parts
from compiler.ir.edge import health_check_path, kong_needs_render, lb_hostnames
from compiler.targets.kong.plugins import (JWT_KEY_INDENT, KongEmitError,
                                            auth_plugin, global_plugins, jwt_consumer, secret_inputs, tags)

NAME = "kong"
FORMAT_VERSION = "3.0"
KONG = "kong"  # Kong's name in region.wiring
UPSTREAM_ALGORITHM = "round-robin"  # one target: nothing to balance or hash at Kong (see _upstream)

# Kong 3.9 refuses prefix paths with empty segments (`//`) or that are not in normalized form
# (`.`/`..` segments). The spec's path pattern allows both, so they are refused here, by name.
_EMPTY_OR_DOT_SEGMENT = re.compile(r"//|/\.\.?(/|$)")


def api_host(plan: PlatformPlan) -> str:
    """The platform API host routes without `hosts` answer on."""
    return f"{plan.spec.edge.dns.api_host}.{plan.spec.organization.domain}"


def upstream_name(svc: ServicePlan) -> str:
    return f"{svc.name}-upstream"


def route_name(svc: ServicePlan, index: int) -> str:
    return f"{svc.name}-{index + 1}"


def public_services(region: RegionPlan) -> list[ServicePlan]:
    """Services with routes, by name; a service without routes is internal and gets no Kong entity."""
    return sorted((s for s in region.services if s.routes), key=lambda s: s.name)


def _check_path(region: RegionPlan, svc: ServicePlan, index: int, path: str) -> str:
    if _EMPTY_OR_DOT_SEGMENT.search(path):
        raise KongEmitError(
            f"settings.services.{svc.name}.routes[{index}].paths: {path!r} (region {region.name}) has an "
            f"empty or dot segment; Kong 3.9 accepts prefix paths only in normalized form")
    return path


def _route(plan: PlatformPlan, region: RegionPlan, svc: ServicePlan, index: int) -> dict:
    spec = svc.routes[index]
    methods = list(dict.fromkeys(spec.methods))  # Kong's `methods` is a set
    if region.settings.gateway.cors_origins and "OPTIONS" not in methods:
        methods.append("OPTIONS")  # so browser preflights reach the cors plugin, which answers them
    route = {
        "name": route_name(svc, index),
        "hosts": list(spec.hosts) or [api_host(plan)],
        "paths": [_check_path(region, svc, index, p) for p in spec.paths],
        "methods": methods,
        "strip_path": spec.strip_path,
        # The mesh routes on the Host header, so the upstream always sees the Service's own name
        # (upstream host_header); the client's host travels in X-Forwarded-Host.
        "preserve_host": False,
        "tags": tags(region, svc.name),
    }
    plugins = auth_plugin(region, svc.name, spec.auth)
    if plugins:
        route["plugins"] = plugins
    return route


HEALTH_ROUTE = "edge-health"
HEALTH_ROUTE_ANY_HOST = "edge-health-any-host"
HEALTH_OWNER = "gateway"  # the tag of the gateway's own entities (global plugins, the JWT consumer)
HEALTH_METHODS = ["GET", "HEAD"]


def health_routes(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    """The health-check path, answered by Kong itself with 200 and no authentication: a region is
    healthy for its load balancer and for DNS when its Kong serves the TLS listener and its config.

    The path is matched exactly (a `~` regex, so `<path>/x` stays the services'). Two routes:
    - HEALTH_ROUTE on every name the load balancer serves and every host a service route uses. It has
      the same kinds of matchers as every service route (hosts, paths, methods), and among routes
      with the same kinds Kong ranks a regex path above prefix paths, so a service's `/` on the same
      host cannot take the health path;
    - HEALTH_ROUTE_ANY_HOST without hosts: the load balancers' own probes carry a pod address as Host
      (ALB and Google health checks, AGIC's default probe host 127.0.0.1), which no route names.
    """
    path = health_check_path(plan)
    if _EMPTY_OR_DOT_SEGMENT.search(path):
        raise KongEmitError(f"edge.dns.health_check_path: {path!r} has an empty or dot segment; Kong matches "
                            "normalized request paths only, so the health checks would never reach it")
    for svc in region.services:
        for i, route in enumerate(svc.routes):
            if path in route.paths:
                raise KongEmitError(
                    f"settings.services.{svc.name}.routes[{i}].paths: {path!r} (region {region.name}) is "
                    "edge.dns.health_check_path, which the gateway answers itself for the health checks")
    hosts = list(dict.fromkeys(lb_hostnames(plan, region)))
    hosts += sorted({h for s in region.services for r in s.routes for h in r.hosts} - set(hosts))
    t = tags(region, HEALTH_OWNER)
    match = {"paths": ["~" + re.escape(path) + "$"], "methods": list(HEALTH_METHODS), "strip_path": False, "tags": t,
             "plugins": [{"name": "request-termination", "config": {"status_code": 200, "message": "ok"}, "tags": t}]}
    return [{"name": HEALTH_ROUTE, "hosts": hosts, **match}, {"name": HEALTH_ROUTE_ANY_HOST, **match}]


def route_connection(region: RegionPlan, svc: ServicePlan):
    """Kong's connection to a routed service (compiler/wiring.py): the Service's DNS name and port."""
    for c in region.connections_from(KONG):
        if "kong" in c.layers and c.dest.name == svc.name:
            return c
    raise KongEmitError(f"region {region.name}: no kong connection to {svc.name} in the wiring")


def upstream_target(region: RegionPlan, svc: ServicePlan) -> str:
    c = route_connection(region, svc)
    return f"{c.address}:{c.port}"


SERVICE_RETRIES = 0


def _service(plan: PlatformPlan, region: RegionPlan, svc: ServicePlan) -> dict:
    g = region.settings.gateway
    return {
        "name": svc.name,
        "protocol": "http",  # inside the cluster; the mesh adds mTLS between sidecars
        "host": upstream_name(svc),
        "port": route_connection(region, svc).port,
        "connect_timeout": g.connect_timeout_ms,
        "read_timeout": g.read_timeout_ms,
        "write_timeout": g.write_timeout_ms,
        # Kong's default of 5 retries re-sent a GET, PUT or DELETE whose response headers timed out (nginx's
        # proxy_next_upstream error timeout), up to 5 times read_timeout, to the one target: the Service behind
        # Kong's sidecar, whose own retry policy already retries connection failures and resets
        "retries": SERVICE_RETRIES,
        "tags": tags(region, svc.name),
        "routes": [_route(plan, region, svc, i) for i in range(len(svc.routes))],
    }


def _healthchecks(region: RegionPlan, svc: ServicePlan) -> dict:
    """Active checks only. The one target is the Service: when the active probe fails the spec's count in
    a row, no pod answers through it and the fast 503 is right. Passive checks would count live
    errors of any single pod against the whole Service and eject it (Kong's default: passive off);
    per-pod ejection is Kubernetes readiness' job."""
    g = region.settings.gateway
    # The spec's unhealthy count is "probe results in a row": a timeout, a refused connection and a
    # failing status are all failed probes, so the count applies to each kind.
    failures = g.unhealthy.count
    return {
        "active": {
            "type": "http",
            "http_path": svc.health_path,
            "healthy": {"interval": g.healthy.interval_seconds, "successes": g.healthy.count},
            "unhealthy": {"interval": g.unhealthy.interval_seconds, "timeouts": failures,
                          "tcp_failures": failures, "http_failures": failures},
        },
    }


def _upstream(region: RegionPlan, svc: ServicePlan) -> dict:
    t = tags(region, svc.name)
    upstream = {"name": upstream_name(svc), "algorithm": UPSTREAM_ALGORITHM}
    upstream.update({
        "host_header": svc.dns_name,  # the mesh routes on it (canary weights, blue-green)
        "healthchecks": _healthchecks(region, svc),
        "tags": t,
        "targets": [{"target": upstream_target(region, svc), "tags": t}],
    })
    return upstream


def build(plan: PlatformPlan, region: RegionPlan) -> dict:
    """The decK document for one region, as data (`_format_version` first)."""
    services = public_services(region)
    doc = {
        "_format_version": FORMAT_VERSION,
        "_info": {"select_tags": ["platformc", region.name]},
        "services": [_service(plan, region, s) for s in services],
        "routes": health_routes(plan, region),
        "upstreams": [_upstream(region, s) for s in services],
    }
    if kong_needs_render(region):  # one definition with the helm target, which passes the rendered copy
        doc["consumers"] = [jwt_consumer(region)]
    doc["plugins"] = global_plugins(plan, region)
    # home-region routing (compiler/targets/kong/routing.py): the pre-function and the home regions' upstreams
    from compiler.targets.kong.routing import home_upstreams, routing_plugin
    routing = routing_plugin(plan, region)
    if routing:
        doc["plugins"] = sorted(doc["plugins"] + [routing], key=lambda p: p["name"])
        doc["upstreams"] += home_upstreams(plan, region)
    return doc


def header(region: RegionPlan, doc: dict) -> str:
    """Banner plus the secret inputs decK's template needs (no template syntax in comments:
    decK renders the whole file, comments included)."""
    lines = [banner("#")]
    inputs = secret_inputs(region) if "consumers" in doc else []
    if inputs:
        lines.append("# Secret inputs, filled by decK at sync time from DECK_* environment variables;\n"
                     "# export each from its reference first (never commit the value):\n")
        lines += [f"#   {var} <- {ref}\n" for var, ref in inputs]
    return "".join(lines)


_REPEATED = frozenset({"healthchecks"})  # the home-routing upstreams' health checks: two texts for ~220 upstreams
# per region at 120 regions (dump_yaml_parts)


def emit_region(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    doc = build(plan, region)
    text = dump_yaml_parts(doc, header(region, doc), _REPEATED)
    if "consumers" in doc and f"\n{' ' * JWT_KEY_INDENT}${{{{ env " not in text:
        raise RuntimeError("kong: the JWT key template is not at the column its `indent` assumes")
    # decK runs the whole file through its template engine: only our own `${{ env }}` may be there.
    if text.count("${{") != ("consumers" in doc):
        raise KongEmitError(f"region {region.name}: a spec value contains decK's template delimiter `${{{{`")
    return {f"kong/{region.name}/kong.yaml": text}


def secret_uses(plan: PlatformPlan, region: RegionPlan) -> list:
    """The references decK fills the file's templates from (the region page's Secret references)."""
    from compiler.ir.secret_uses import SecretUse
    if not kong_needs_render(region):  # build's `consumers` condition, as the docs' secret inputs
        return []
    return [SecretUse(ref, "deck", f"`{var}` of `kong/{region.name}/kong.yaml`") for var, ref in secret_inputs(region)]


def docs_region(plan: PlatformPlan, region: RegionPlan) -> str:
    from compiler.targets.kong.docs import region_section
    return region_section(plan, region)
