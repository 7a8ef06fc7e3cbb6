"""The Kong section of docs/regions/<region>.md: public routes with their auth and limits."""

from __future__ import annotations

from compiler.docs import markdown_table
from compiler.ir import PlatformPlan, RegionPlan
from compiler.targets import kong
from compiler.ir.names import CLIENT_ADDRESS_HEADER
from compiler.ir.edge import kong_needs_render, origin_verify
from compiler.ir.gateway import gateway_capacity
from compiler.targets.kong.plugins import CORRELATION_HEADER, canary_headers, rate_limits, secret_inputs

AUTH_TEXT = {
    "none": "none",
    "jwt": "JWT (RS256, issuer key)",
    "oauth2": "OAuth2 bearer JWT (RS256, issuer key)",
}


def region_section(plan: PlatformPlan, region: RegionPlan) -> str:
    g = region.settings.gateway
    per_second = g.burst
    per_minute = max(g.requests_per_second * 60, g.burst)
    pod_second, pod_minute = rate_limits(plan, region)
    gc = gateway_capacity(region, plan.spec.capacity.requests_per_second, plan.spec.capacity.peak_multiplier)
    lo, hi = gc.min_replicas, gc.max_replicas
    limit = f"{per_second:,}/s, {per_minute:,}/min per client IP (region)"
    body = f"{g.request_size_limit_mb} MB"
    # What the page reads of kong.yaml (the routes, the health route's hosts, whether there is a consumer), built by
    # the same functions as kong.build, without the plugins and the home-region upstreams it does not read (at 120
    # regions the upstreams alone are ~100 per region).
    services = kong.public_services(region)
    service_docs = [kong._service(plan, region, s) for s in services]
    health_hosts = kong.health_routes(plan, region)[0]["hosts"]
    rows = []
    for svc, service in zip(services, service_docs):
        for spec, route in zip(svc.routes, service["routes"]):
            rows.append([f"`{route['name']}`", svc.name, ", ".join(route["hosts"]),
                         ", ".join(f"`{p}`" for p in route["paths"]), " ".join(route["methods"]),
                         AUTH_TEXT[spec.auth], limit, body, "yes" if route["strip_path"] else "no"])
    internal = sorted(s.name for s in region.services if not s.routes)
    canaries = canary_headers(region)  # once (it was asked three times)
    waf = plan.spec.edge.waf
    lines = [
        "## API gateway (Kong)\n",
        f"`generated/kong/{region.name}/kong.yaml`: a decK file for Kong 3.9 in DB-less mode, owning the "
        f"entities tagged `platformc` and `{region.name}`. Routes without hosts in the spec answer on "
        f"`{kong.api_host(plan)}`.\n",
        markdown_table(["route", "service", "hosts", "paths", "methods", "auth", "rate limit", "max body", "strip path"], rows),
        f"Internal services (no Kong route): {', '.join(internal) or 'none'}.\n",
        "### How the limits map to Kong\n",
        f"- **Rate limit** (spec: {g.requests_per_second:,} requests/s sustained, burst {g.burst:,}): Kong OSS has "
        f"fixed windows, not a token bucket, so the region's figures are `second: {per_second:,}` (a client "
        f"may reach the burst within one second) and `minute: {per_minute:,}` ("
        + ("over a minute it cannot exceed the sustained rate" if per_minute == g.requests_per_second * 60 else
           "raised from the sustained rate x 60 to the burst: Kong refuses a minute limit below the per-second one")
        + "). Across a window boundary a client can briefly get up to twice the per-second figure. "
        f"Counted per client IP (`limit_by: ip`; every JWT of the issuer is one Kong consumer, so per consumer "
        f"would be one global counter). Kong takes the client address from `{CLIENT_ADDRESS_HEADER}` (set by the "
        f"edge) only when the peer is the load balancer or a linked region's Kong forwarding a request homed here "
        f"(`trusted_ips`: their source ranges; helm target).\n",
        f"- **Judgement, rate-limit policy**: `local`, each pod enforcing the figures above divided by the "
        f"gateway HPA's floor of {lo} pods and rounded down (`second: {pod_second:,}`, `minute: {pod_minute:,}` per pod), "
        "because DB-less Kong has no `cluster` policy and the OSS `redis` policy talks to a single Redis node "
        "while the region's Redis is a Redis Cluster; the load balancer spreads a client's requests over the pods, "
        "so at normal load together they admit about the spec's figure and never more (rounding down), at the cost "
        f"of a lower limit for a client whose requests stay on one pod; at the peak ({hi} pods) a client spread over "
        f"all of them may get up to {hi / lo:.3g} times it.\n",
        f"- **Capacity**: the region carries {gc.normal_rps:,.0f} requests/s ({region.traffic_share:g} % of "
        f"`capacity.requests_per_second`), {gc.peak_rps:,.0f} at the peak (x {plan.spec.capacity.peak_multiplier:g}); "
        f"at `gateway.rps_per_pod` {gc.rps_per_pod:,} a pod, Kong's HPA runs {lo}-{hi} pods on node pool "
        f"`{gc.node_pool}` (rule R046 checks the pool holds them), Nginx with {gc.worker_processes} worker processes "
        "(one per CPU of the pod's limit).\n",
        "- **Canary header**: a `post-function` (access phase, after `jwt`) removes "
        + ", ".join(f"`{h}`" for h, _, _ in canaries)
        + " from every request and sets it only from the verified token ("
        + ", ".join(f"claim `{c}` true or `{v}`" for _, c, v in canaries)
        + "), so no client can opt itself into a canary.\n" if canaries else "",
        f"- **Health checks**: `{kong.HEALTH_ROUTE}` (on " + ", ".join(f"`{h}`" for h in health_hosts)
        + f") and `{kong.HEALTH_ROUTE_ANY_HOST}` (any host: the load balancer's probes carry a pod address) answer "
        f"{' and '.join(kong.HEALTH_METHODS)} `{plan.spec.edge.dns.health_check_path}` (exactly) with 200 from Kong "
        "itself (`request-termination`, no authentication, still rate-limited): the region's load balancer and the "
        "global DNS health checks probe it over the load balancer's HTTPS hop. No service route may use that path.\n",
        _routing_bullet(plan, region),
        f"- **Request size**: `request-size-limiting` refuses bodies over {body} (413).\n",
        f"- **Upstream timeouts**: connect {g.connect_timeout_ms:,} ms, read {g.read_timeout_ms:,} ms, "
        f"write {g.write_timeout_ms:,} ms; no retries (Kong's default 5 re-sent a GET, PUT or DELETE that timed "
        "out, each after the whole read timeout; the mesh sidecar retries connection failures itself).\n",
        f"- **Upstreams**: one target per service, its Kubernetes Service at the address and port of Kong's "
        f"connection in the wiring (`<service>.<namespace>.svc.cluster.local:<Service port>`), round-robin. Active "
        f"checks probe the service's health path every {g.healthy.interval_seconds} s ({g.healthy.count} successes mark "
        f"it healthy) and every {g.unhealthy.interval_seconds} s when unhealthy ({g.unhealthy.count} timeouts, "
        "connection failures or failing statuses in a row mark it unhealthy: no pod answers through the Service).\n",
        "- **Judgement, hashing**: "
        + (f"`{g.load_balancing}` on `{g.hash_on_header}` lives in the mesh (each service's Istio DestinationRule, "
           "`consistentHash`), not on the Kong upstream: with one target (the Service) a hash at Kong picks the same "
           "target every time and kube-proxy then spreads at random; the caller's sidecar hashes across the pods."
           if g.load_balancing == "consistent-hashing" else
           f"the spec's `{g.load_balancing}` needs no hash; the mesh (or kube-proxy) spreads across the pods.") + "\n",
        "- **Judgement, passive checks**: none. Passive checks on the one target count any pod's live errors "
        "against the whole Service and would eject it after a few; Kubernetes readiness takes a failing pod out "
        "of the Service instead.\n",
        "- **Authentication**: `jwt` and `oauth2` routes get Kong's `jwt` plugin (Authorization header only, "
        f"`exp` verified) against the issuer `{g.jwt_issuer}`; Kong's `oauth2` plugin would make Kong the "
        "authorization server and needs a database, which DB-less Kong has not.\n",
        "- **CORS**: " + (f"origins {', '.join(f'`{o}`' for o in g.cors_origins)}; routes also accept OPTIONS so "
                          "Kong answers preflights itself." if g.cors_origins else "no origins in the spec, so no "
                          "`cors` plugin (Kong's would allow every origin).") + "\n",
        "- **WAF**: "
        + "no `bot-detection` at the gateway: Kong's built-in list names the HTTP clients of the platform's own "
          "callers (okhttp, axios, Go-http-client, Apache-HttpClient, the AWS SDKs, link previews), which it answered "
          "403 (an allow list would have to name every client of every caller); abusive clients are the edge WAF's"
          + (" (managed rules, IP reputation)" if waf.managed_rules else "")
        + f"; geo-blocking ({', '.join(waf.blocked_countries) or 'none'}) and the per-IP limit of "
        f"{waf.rate_limit_per_5min:,} requests per 5 minutes stay at the edge WAF (Kong OSS has no GeoIP). "
        "No `ip-restriction`: the spec lists no addresses to allow or deny at the gateway.\n",
        f"- **Tracing and metrics**: `correlation-id` sets `{CORRELATION_HEADER}` (uuid) and echoes it; `prometheus` "
        "exports status, latency, bandwidth and upstream health metrics.\n",
    ]
    inputs = secret_inputs(region) if kong_needs_render(region) else []  # kong.build's `consumers` condition
    if inputs:
        lines.append("### Secret inputs\n")
        lines.append("Kong 3.9 cannot resolve a vault reference in `jwt_secrets.rsa_public_key` (not a "
                     "referenceable field) and Kong OSS bundles only the `env` vault, so decK fills the key at "
                     "sync time from an environment variable. Export it from the reference before `deck gateway "
                     "sync` (or `deck file render --populate-env-vars` for a DB-less file):\n")
        lines.append(markdown_table(["decK variable", "from"], [[f"`{v}`", f"`{r}`"] for v, r in inputs]))
    return "\n".join(lines)


from compiler.ir.home_routing import edge_home_provider, edge_routes_homes, gateway_routes_homes  # noqa: E402
from compiler.ir.network import FORWARDED_FROM_HEADER as FORWARDED_HEADER  # noqa: E402


def _routing_bullet(plan: PlatformPlan, region: RegionPlan) -> str:
    """Home-region routing (compiler/targets/kong/routing.py): what the pre-function does here, and why."""
    from compiler.ir.network import FORWARDED_FROM_HEADER
    from compiler.ir.home_routing import GATEWAY_MAP_CHART, GATEWAY_MAP_DIR, GATEWAY_MAP_MODULE, ids_homed_in
    from compiler.targets.kong.routing import HOME_HEADER, forwards, home_of
    if not gateway_routes_homes(plan):
        return ""
    here = ids_homed_in(plan, region.name)
    homes = [home_of(c) for c in forwards(region)]
    forwarded = set(homes)  # a set: the list was scanned once per region of the platform (cubic at 120 regions)
    others = sorted(r.name for r in plan.regions if r.name != region.name and r.name not in forwarded)
    header = region.settings.gateway.hash_on_header
    return (f"- **Home-region routing**: a `pre-function` (access phase, before authentication and rate limits) looks "
            f"the franchise id (`{header}`, digits only) up in the shard map ({here:,} ids are homed here), which is one Lua "
            f"module for the whole platform (`{GATEWAY_MAP_MODULE}`, the global Helm chart `{GATEWAY_MAP_CHART}`, mounted "
            f"at `{GATEWAY_MAP_DIR}`; a new map changes this region's Kong file, which rolls the pods). Homed here, "
            "no id, or already forwarded (`" + FORWARDED_FROM_HEADER + "`): served here. "
            + (f"Homed in {', '.join(homes)} (the same cloud): forwarded unchanged over the VPC/VNet peering to that region's "
               "internal gateway (`gateway.<region>.internal.<domain>`), with the request's host as Host and SNI, and "
               "authenticated there. " if homes else "")
            + (f"Homed in {', '.join(others)}: answered 421 with `{HOME_HEADER}` naming the home, since no private "
               "path reaches it (another cloud: no inter-cloud network). " if others else "")
            + (_edge_sentence(plan) if edge_routes_homes(plan.spec) else "")
            + (_native_edge_sentence(plan, bool(others)) if edge_home_provider(plan.spec) in ("front_door", "cloud_cdn")
               else "")
            + "**Judgement**: the gateway rather than DNS per franchise, because clients use one API name and the "
            "franchise id travels in the request; the internal gateway rather than the home's public name, because "
            "the regional load balancers admit the CDN only; the forwarding hop is paid only by requests that land "
            "away from home.\n")


def _edge_sentence(plan: PlatformPlan) -> str:
    """Home-region routing at the edge (CloudFront): what reaches this function at all, and why the edge routes."""
    check = origin_verify(plan)
    return ("**The edge routes first**: CloudFront's viewer-request function (`generated/terraform/global/cdn.tf`) looks "
            "the same id up in the same map and selects the home's own origin (`home-<region>`, the region's public "
            "name), on whatever cloud, so a request with a valid id arrives at its home and is served here. The "
            "forwarding and the 421 above remain as the second line, for requests that bypassed the edge's routing: "
            "the global root not yet applied after a shard-map change (apply it with the regions), a franchise "
            "the edge does not know yet (a registry kept in the routing KeyValueStore, before its keys are applied: "
            "the weighted origin)" + (". (A request through another CloudFront distribution never gets here: the "
            "region's WAF blocks what arrives without this edge's origin secret.)" if check and check.secret_name else
            ", or a request that reached the load balancer through another CloudFront distribution (the load balancers "
            "admit CloudFront's address ranges, not this distribution alone).") + " The edge deletes a viewer's `"
            + FORWARDED_HEADER + "`, and sets it to `edge` only for a lost region's franchises moved by the routing "
            "KeyValueStore's `serving-<region>` key, without a deploy: the region then serves them itself. The DR "
            "runbook moves them in the spec instead (`disaster_recovery.failed_over`: the map itself then names the DR "
            "partner, which serves them as its own). That switch is the runbook's, not a health check's: the partner can serve a lost region's franchises only once its standby "
            "is promoted and the old region fenced (a health-triggered switch would send writes to a read-only standby, "
            "or split the writes when the region comes back), and until then no other region holds their data, so the "
            "edge does not fail over to the weighted origin either (its regions' Kong would only forward to the lost "
            "home or answer 421). **Why the edge**: "
            "only the edge reaches every cloud (the regions' load balancers admit CloudFront), one lookup per request "
            "at the edge costs no extra hop, while an inter-cloud network (HA VPN between AWS, GCP and Azure) would add "
            "per-pair tunnels, their routes and firewall openings to every region, and a second hop on every "
            "misrouted request. ")


def _native_edge_sentence(plan: PlatformPlan, answers_421: bool) -> str:
    """Home-region routing at a Front Door or Cloud CDN edge (compiler/targets/terraform/edge_rules.py)."""
    front_door = edge_home_provider(plan.spec) == "front_door"
    how = ("Front Door's rule set (`generated/terraform/global/cdn.tf`: a rule per home region) matches the same id "
           "against the same map's ranges (exact regular expressions) and overrides the route's origin group with the "
           "home's own (`home-<region>`, the region's public name)" if front_door else
           "Cloud CDN's URL map (`generated/terraform/global/cdn.tf`: a route rule per range, `range_match` on the id) "
           "sends the request to the home's own backend service (`home-<region>`, an internet NEG at the region's public "
           "name)")
    other = ("another Front Door profile (the load balancers admit Front Door's service tag, not this profile alone)"
             if front_door else "another Google external Application Load Balancer (the load balancers admit Google's "
             "front-end ranges, not this URL map alone)")
    return ("**The edge routes first**: " + how + ", so a request with a valid id arrives at its home and is served "
            "here without the peering hop. The forwarding " + ("and the 421 above remain" if answers_421 else "above "
            "remains (no 421 here: every other region is reachable over the peering)") + " as the second line, for "
            "requests that bypassed the edge's routing: the global root not yet applied after a shard-map change (apply it with "
            "the regions), or a request that reached the load balancer through " + other + ". The edge deletes a "
            "viewer's `" + FORWARDED_HEADER + "`, and sets it to `edge` only for a lost region's franchises moved by "
            "the global root's `serving_regions` variable (`terraform apply -var "
            "'serving_regions={\"<lost region>\"=\"<DR partner>\"}'` after promotion and fencing): the region then "
            "serves them itself. The DR runbook moves them in the spec instead (`disaster_recovery.failed_over`: the "
            "map itself then names the DR partner, which serves them as its own). ")
