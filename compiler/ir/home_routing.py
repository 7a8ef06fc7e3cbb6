"""Home-region routing: where each franchise's requests are served, shared by the edge and the gateways.

A franchise's data lives in one region, its home: the shard map's ranges by franchise id, or the franchise
registry's rows. Two layers route by it, both from `home_ranges` below (never a copy of the map):

1. **The edge** (the CloudFront viewer-request function of the global root, when the edge is CloudFront and the
   platform has several regions): it reads the franchise id header and selects the home's origin
   (`home_origin_id`: the home region's own public name `<region>.<domain>`, which its load balancer's certificate
   covers), so a request reaches its home whatever cloud the home is on. No id, a malformed id or an id outside
   the map: the weighted origin (`origin.<domain>`, healthy regions only), as before.
2. **The gateway** (Kong's pre-function in every region): the second line. A request the edge routed arrives at its
   home and is served there; one that reaches another region's Kong (the edge's routing bypassed: a global root
   not yet applied after a shard-map change, a request that came through another CDN path) is forwarded over the
   peering to a same-cloud home, or answered 421 with the home's name for a home on another cloud.

Disaster recovery: when a home region is lost, its DR partner promotes the standby cluster (the region's runbook)
and then serves the home's franchises. The edge follows a key of the routing KeyValueStore, written by the
runbook's step 4 without a deploy: `serving_key(home)` = the region now serving the home's franchises. The
function then selects that region's origin and marks the request as routed by the edge
(`FORWARDED_FROM_HEADER` = `EDGE_ROUTED`), so that region's Kong serves it instead of forwarding it to the lost
home. The function deletes that header from every viewer request first, so a client cannot set it.
"""

from __future__ import annotations

from compiler.records import Columns

# The wiring's source of the edge -> home origin connection (compiler/wiring.py), which `platformc verify` proves.
HOME_EDGE_PEER = "cdn-home"
# The distribution's origin ids: the weighted origin (origin.<domain>) and one per region.
WEIGHTED_ORIGIN_ID = "regions"
HOME_ORIGIN_PREFIX = "home-"
# The value of X-Platformc-Forwarded-From (compiler/ir/network.py) on a request the edge sent to a region serving
# another region's franchises (DR): the receiving Kong serves it.
EDGE_ROUTED = "edge"
# The KeyValueStore key naming the region serving a home's franchises (absent: the home itself).
SERVING_KEY_PREFIX = "serving-"
# CloudFront's default quotas per distribution (adjustable): origins (the weighted one + one per region), and origin
# groups (10: too few for a static failover group per region, one reason the home origins are plain origins).
ORIGINS_PER_DISTRIBUTION = 100
# CloudFront Functions: the maximum function size (not adjustable), and the KeyValueStore's limits.
FUNCTION_MAX_BYTES = 10 * 1024
KVS_MAX_BYTES = 5 * 1024 * 1024
# Above this size the function keeps the franchise map in the KeyValueStore (a key per 100 franchise ids of a
# registry) instead of inline tables: the budget leaves room for the code around the tables.
INLINE_MAP_MAX_BYTES = 8 * 1024


# Front Door Premium's limits (Microsoft Learn, "Azure Front Door Standard and Premium service limits"): match values
# per condition the rules use (a home with more ranges gets several rules), rules per rule set, rule sets and origin
# groups per profile.
FRONT_DOOR_VALUES_PER_RULE = 10
FRONT_DOOR_RULES_PER_SET = 100
FRONT_DOOR_RULE_SETS_PER_PROFILE = 200
FRONT_DOOR_ORIGIN_GROUPS = 200
# A URL map's size limit (Cloud Load Balancing, "URL map size and quota units": 1 MB per URL map of the global
# external Application Load Balancer); the project's configuration-size quota counts it too.
URL_MAP_MAX_BYTES = 1_000_000


# Kong's copy of the map: one Lua module per platform, not one table per region's kong.yaml (with a 10,000-row
# registry the table is ~290 KB: 120 regions carried 35 MB of copies). The helm target ships it once, in the global
# chart `kong-home-routing` (generated/helm/global/charts/), as the ConfigMap GATEWAY_MAP_CONFIGMAP that every
# region's Kong mounts at GATEWAY_MAP_DIR (the kong chart puts /opt/?.lua on lua_package_path); the kong target's
# pre-function requires GATEWAY_MAP_MODULE (allowed by untrusted_lua_sandbox_requires) and calls its `home_of(id)`.
# Kong caches a required module per worker, so a new map must roll the pods: the map's version (gateway_map_version)
# is in the module and in each region's routing function, so a new map changes kong.yaml, which the kong chart's
# checksum turns into a rollout (and `platformc verify` proves the two versions agree).
GATEWAY_MAP_CHART = "kong-home-routing"
GATEWAY_MAP_CONFIGMAP = "platformc-home-routing"
GATEWAY_MAP_DIR = "/opt/platformc"
GATEWAY_MAP_FILE = "home_routing.lua"
GATEWAY_MAP_MODULE = "platformc.home_routing"
GATEWAY_MAP_FUNCTION = "home_of"


# A ConfigMap holds at most 1 MiB (etcd's request size); the map's code, the chart's metadata and the YAML around it
# take ~3 KB of that (rule R058 compares gateway_map_bytes with this).
GATEWAY_MAP_MAX_BYTES = 1024 * 1024 - 4096


def gateway_map_bytes(plan) -> int:
    """The size of the map's tables as the helm target writes them (`local FIRST = {1, 4001}` ...: each number and
    quoted region name, `, ` between), plus 1 KB for the code and comments (~800 bytes: never an underestimate,
    tests/targets/test_home_routing.py holds it to the emitted module)."""
    ranges = home_range_table(plan)
    name_lengths = [len(n) for n in ranges.names]
    items = (len(joined("", map(str, ranges.first))) + len(joined("", map(str, ranges.last)))
             + sum(map(name_lengths.__getitem__, ranges.home_at)) + 2 * len(ranges))
    return items + 3 * 2 * max(len(ranges) - 1, 0) + 1024


def gateway_map_version(plan) -> str:
    """The home-region map's version: a SHA-256 over its ranges, once per plan."""
    def version() -> str:
        import hashlib
        ranges = home_range_table(plan)
        text = joined("\n", map("{} {} {}".format, ranges.first, ranges.last, ranges.homes()))
        return hashlib.sha256(text.encode()).hexdigest()
    return plan.derived("gateway_map_version", version)


def gateway_routes_homes(plan) -> bool:
    """Kong routes by home (and needs the map) when the platform has more than one region."""
    return len(plan.regions) > 1


def home_ranges(plan) -> list[tuple[int, int, str]]:
    """(first id, last id, home region), sorted and merged: the registry's rows when there is a registry, else
    each shard's range."""
    return list(home_range_table(plan))


def home_range_table(plan) -> "RangeTable":
    """home_ranges as one tuple per plan, computed once (an lru_cache keyed by the registry hashed its 10,000 rows
    on every call, in every region). The ranges as routed: each names the region serving its franchises, its home
    or, when the home is failed over (disaster_recovery.failed_over), its DR partner (compiler/ir/dr_serving.py), so
    Kong's map and the edge's send them there."""
    def table() -> RangeTable:
        homes = true_home_range_table(plan)
        return _served(homes, plan.serving) if plan.serving else homes
    return plan.derived("home_ranges", table)


def true_home_range_table(plan) -> "RangeTable":
    """The ranges by home region, whatever serves them (the docs count the ids homed in a region from it)."""
    return plan.derived("true_home_ranges", lambda: _home_ranges(plan.registry, plan.shards))


def _served(homes: "RangeTable", serving) -> "RangeTable":
    """`homes` with each range's region replaced by the region serving it, adjacent ranges of one region merged."""
    from array import array
    first, last, at = array("q"), array("q"), array("I")
    index: dict[str, int] = {}
    for lo, hi, home in homes:
        region = serving.get(home, home)
        i = index.setdefault(region, len(index))
        if first and at[-1] == i and last[-1] + 1 == lo:
            last[-1] = hi
        else:
            first.append(lo)
            last.append(hi)
            at.append(i)
    return RangeTable(first, last, at, tuple(index))


def ids_homed_in(plan, region: str) -> int:
    """How many franchise ids are homed in `region` (every region's docs say it): one pass per plan."""
    def count() -> dict:
        out: dict = {}
        for first, last, home in true_home_range_table(plan):
            out[home] = out.get(home, 0) + last - first + 1
        return out
    return plan.derived("ids_homed", count).get(region, 0)


def joined(sep: str, strings) -> str:
    """sep.join(strings), 1,024 at a time: a join holds every string it joins, and the ~20,000 number texts of a
    scattered registry's ranges, all alive at once, grew the heap by ~1 MiB that it kept (emission's parent holds
    it across the fork); a chunk's strings reuse the last chunk's memory."""
    from itertools import islice
    it = iter(strings)
    parts = []
    while True:
        chunk = list(islice(it, 1024))
        if not chunk:
            return sep.join(parts)
        parts.append(sep.join(chunk))


class RangeTable(Columns):
    """The home ranges as columns: `first` and `last` (int64 arrays) and `home_at` (indexes into `names`); a sequence of
    (first id, last id, home region) tuples, each made when it is read. With a scattered registry there are ~10,000
    ranges: held as tuples they were ~0.7 MiB of GC-tracked objects in the parent across emission's fork; the
    columns are ~200 KB, and the targets join them with map() (the numbers' text once, at C speed)."""

    __slots__ = ("first", "last", "home_at", "names")
    NOUN = "ranges"

    def __init__(self, first, last, home_at, names: tuple):
        self.first, self.last, self.home_at, self.names = first, last, home_at, names

    def __len__(self) -> int:
        return len(self.first)

    def homes(self):
        """Each range's home region, in order."""
        return map(self.names.__getitem__, self.home_at)

    def __iter__(self):
        return zip(self.first, self.last, self.homes())

    def row(self, i: int) -> tuple:
        return (self.first[i], self.last[i], self.names[self.home_at[i]])


def _home_ranges(registry, shards: tuple) -> RangeTable:
    from array import array
    first, last, home_at = array("q"), array("q"), array("I")
    ids = getattr(registry, "ids", None)
    if ids is not None:  # compiler.registry.Placements: sorted by id, each id once (a range of one id each)
        names = registry.regions
        prev_at, prev = -1, None
        for fid, at in zip(ids, registry.region_at):
            if at == prev_at and prev + 1 == fid:
                last[-1] = fid
            else:
                first.append(fid)
                last.append(fid)
                home_at.append(at)
                prev_at = at
            prev = fid
        return RangeTable(first, last, home_at, names)
    if registry:
        rows = sorted((h.franchise_id, h.franchise_id, h.region) for h in registry)
    else:
        rows = sorted((s.first_id, s.last_id, s.region) for s in shards)
    index: dict[str, int] = {}
    prev_region = None
    for lo, hi, region in rows:
        if first and prev_region == region and last[-1] + 1 == lo:
            last[-1] = hi
        else:
            first.append(lo)
            last.append(hi)
            home_at.append(index.setdefault(region, len(index)))
            prev_region = region
    return RangeTable(first, last, home_at, tuple(index))


def edge_routes_homes(spec) -> bool:
    """Whether the edge routes by home region: CloudFront (its viewer-request function can select the origin)
    in front of several regions."""
    from compiler.ir.edge import cdn_provider
    return cdn_provider(spec) == "cloudfront" and len(spec.regions) > 1


def edge_home_provider(spec) -> str | None:
    """The edge that routes by home region in front of several regions, or None: CloudFront (its viewer-request
    function, above), or Front Door / Cloud CDN with native rules from the same ranges (the global root's rule set or
    URL map route rules, compiler/targets/terraform/edge_rules.py)."""
    from compiler.ir.edge import cdn_provider
    provider = cdn_provider(spec)
    if provider in ("cloudfront", "front_door", "cloud_cdn") and len(spec.regions) > 1:
        return provider
    return None


def routing_store_name(spec) -> str:
    """The routing KeyValueStore's name (the global root creates it, the runbook writes its serving-* keys)."""
    return f"{spec.organization.name}-global-routing"


def home_origin_id(region: str) -> str:
    return f"{HOME_ORIGIN_PREFIX}{region}"


def home_origin_name(region: str, domain: str) -> str:
    """The home origin's name: the region's own public name, which its load balancer's certificate covers and the
    region's root points at its load balancer (compiler/ir/edge.py lb_hostnames)."""
    return f"{region}.{domain}"


def serving_key(region: str) -> str:
    return f"{SERVING_KEY_PREFIX}{region}"


def url_map_route_rules(plan) -> list[dict]:
    """Cloud CDN's route rules, one per range in id order (priorities 1..n; the catch-all after them): the range's
    home and its ids as the URL map's range_match reads them (start inclusive, end exclusive)."""
    return [{"priority": i + 1, "home": home, "start": first, "end": last + 1}
            for i, (first, last, home) in enumerate(home_ranges(plan))]


def url_map_bytes(plan) -> int:
    """An estimate of the URL map's size as the Compute API holds it (its route rules, with full backend service URLs)."""
    import json

    from compiler.ir.network import FORWARDED_FROM_HEADER
    project = plan.spec.clouds["gcp"].account if "gcp" in plan.spec.clouds else "p"
    service = (f"https://www.googleapis.com/compute/v1/projects/{project}/global/backendServices/"
               f"{plan.spec.organization.name}-global-home-")
    header = plan.spec.settings.gateway.hash_on_header
    rules = [{"priority": r["priority"], "service": service + r["home"],
              "matchRules": [{"prefixMatch": "/", "headerMatches": [{"headerName": header, "rangeMatch": {
                  "rangeStart": str(r["start"]), "rangeEnd": str(r["end"])}}]}],
              "headerAction": {"requestHeadersToRemove": [FORWARDED_FROM_HEADER]}} for r in url_map_route_rules(plan)]
    return len(json.dumps({"pathMatchers": [{"name": "homes", "routeRules": rules}]}).encode())


def front_door_rule_sets(plan) -> int:
    """How many rule sets Front Door's home rules take: the route's own set holds the client-address rule and the
    first home rules, each further 100 rules a set of their own; a home's ranges go 10 to a rule."""
    per_home: dict[str, int] = {}
    for _first, _last, home in home_ranges(plan):
        per_home[home] = per_home.get(home, 0) + 1
    rules = sum(-(-n // FRONT_DOOR_VALUES_PER_RULE) for n in per_home.values())
    return rules // FRONT_DOOR_RULES_PER_SET + 1


def edge_over_limits(plan) -> str | None:
    """What the edge's home routing needs beyond a hard limit of its edge (None: it fits): Cloud CDN's URL map
    size; Front Door's rule sets and origin groups per profile."""
    provider = edge_home_provider(plan.spec)
    if provider == "cloud_cdn":
        size = url_map_bytes(plan)
        if size > URL_MAP_MAX_BYTES:
            return (f"the Cloud CDN URL map's {len(home_ranges(plan)):,} home route rules (one per franchise id range) "
                    f"are ~{size:,} bytes, over a URL map's {URL_MAP_MAX_BYTES:,}")
    elif provider == "front_door":
        sets, groups = front_door_rule_sets(plan), len(plan.regions) + 1
        if sets > FRONT_DOOR_RULE_SETS_PER_PROFILE or groups > FRONT_DOOR_ORIGIN_GROUPS:
            return (f"Front Door's home routing needs {sets} rule sets and {groups} origin groups, over Front Door "
                    f"Premium's {FRONT_DOOR_RULE_SETS_PER_PROFILE} / {FRONT_DOOR_ORIGIN_GROUPS} per profile")
    return None
