"""Terraform target: home-region routing at the Front Door and Cloud CDN edges, natively (no code at the edge).

The IR's ranges (compiler/ir/home_routing.py `home_ranges`: franchise id ranges -> home region, the map Kong and
CloudFront use) become the edge's own routing rules:

- **Cloud CDN** (the global external Application Load Balancer): one route rule per range in the URL map's path
  matcher, matching the franchise id header with `range_match` (the value read as an integer; start inclusive, end
  exclusive), sending the request to the home's backend service (an internet NEG at `<region>.<domain>`). The
  load balancer's integer reading may also take a sign or surrounding spaces, which Kong's check (digits only, at
  most 15) refuses: such a request reaches the id's home, whose Kong serves it as one without an id, as it would
  anywhere (no second header match on the same header, which the API is not documented to accept).
  A last catch-all rule keeps the weighted backend (origin.<domain>) for no id, a malformed id or an id outside
  the map.
- **Front Door**: one origin group per region (`home-<region>`, one origin: `<region>.<domain>`), and in the
  route's rule set one rule per home whose conditions are Kong's id check AND the id matching one of the home's
  range regexes (`range_regex`: exact, leading zeros allowed as Kong's `tonumber` reads them), with a route
  configuration override to the home's origin group. No rule matches: the route's weighted origin group.

DR (the region runbook): the global root's variable `serving_regions` (lost home -> the region now serving its
franchises) moves a lost home's rules to the serving region's backend / origin group, and marks those requests
`X-Platformc-Forwarded-From: edge` so that region's Kong serves them. Every other rule deletes a viewer's
`X-Platformc-Forwarded-From` (Front Door: the rule setting the client address; Cloud CDN: every route rule).
"""

from __future__ import annotations

import re

from compiler.ir import PlatformPlan
from compiler.ir.home_routing import (EDGE_ROUTED, FRONT_DOOR_RULES_PER_SET, FRONT_DOOR_VALUES_PER_RULE, edge_home_provider,
                                      edge_over_limits, home_origin_id, home_origin_name, home_ranges, url_map_bytes,
                                      url_map_route_rules)
from compiler.ir.network import FORWARDED_FROM_HEADER

# Kong's check of the franchise id (compiler/targets/kong/routing.py; CloudFront's function the same).
ID_CHECK = "^[0-9]{1,15}$"
# Front Door rule names: letters and digits, starting with a letter.
_NAME = re.compile(r"[^A-Za-z0-9]")


def _class(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"[{lo}-{hi}]"


def _same_length(lo: str, hi: str) -> list[str]:
    """Patterns (digits and classes) matching exactly the numbers lo..hi written with len(lo) digits."""
    n = len(lo) - 1
    if lo == hi:
        return [lo]
    if n == 0:
        return [_class(int(lo), int(hi))]
    if lo[0] == hi[0]:
        return [lo[0] + p for p in _same_length(lo[1:], hi[1:])]
    out = []
    first, last = int(lo[0]), int(hi[0])
    if lo[1:] != "0" * n:
        out += [lo[0] + p for p in _same_length(lo[1:], "9" * n)]
        first += 1
    tail = hi[1:] != "9" * n
    if tail:
        last -= 1
    if first <= last:
        out.append(_class(first, last) + ("[0-9]" if n == 1 else f"[0-9]{{{n}}}"))
    if tail:
        out += [hi[0] + p for p in _same_length("0" * n, hi[1:])]
    return out


def range_regex(lo: int, hi: int) -> str:
    """A regular expression matching exactly the decimal numbers lo..hi (inclusive, 0 <= lo <= hi), with any
    number of leading zeros (Kong reads `007` as 7), and nothing else."""
    if not 0 <= lo <= hi:
        raise ValueError(f"not a range of non-negative ids: {lo}..{hi}")
    parts = []
    for d in range(len(str(lo)), len(str(hi)) + 1):
        a = max(lo, 10 ** (d - 1) if d > 1 else 0)
        b = min(hi, 10 ** d - 1)
        parts += _same_length(str(a), str(b))
    return "^0*(" + "|".join(parts) + ")$"


def home_rules(plan: PlatformPlan) -> dict:
    """The template context of home-region routing at a Front Door or Cloud CDN edge ({'enabled': False} else)."""
    provider = edge_home_provider(plan.spec)
    if provider not in ("front_door", "cloud_cdn"):
        return {"enabled": False}
    domain = plan.spec.organization.domain
    ranges = home_ranges(plan)
    regions = [r.name for r in plan.regions]
    out = {
        "enabled": True,
        "header": plan.spec.settings.gateway.hash_on_header,
        "id_check": ID_CHECK,
        "forwarded_header": FORWARDED_FROM_HEADER,
        "edge_routed": EDGE_ROUTED,
        "homes": {r: {"id": home_origin_id(r), "hostname": home_origin_name(r, domain)} for r in regions},
        "regions": regions,
    }
    over = edge_over_limits(plan)  # R056 refuses such a spec at validation; never emit rules the edge would reject
    if over:
        raise ValueError(over)
    if provider == "cloud_cdn":
        # priorities 1..n in id order; the catch-all (weighted backend) after them
        out["route_rules"] = url_map_route_rules(plan)
        out["default_priority"] = len(ranges) + 1
        out["url_map_bytes"] = url_map_bytes(plan)
        return out
    rules = []
    for home in regions:
        regexes = [range_regex(first, last) for first, last, h in ranges if h == home]
        for i in range(0, len(regexes), FRONT_DOOR_VALUES_PER_RULE):
            chunk = regexes[i:i + FRONT_DOOR_VALUES_PER_RULE]
            suffix = "" if i == 0 else str(i // FRONT_DOOR_VALUES_PER_RULE + 1)
            rules.append({"name": "home" + _NAME.sub("", home) + suffix, "home": home, "regexes": chunk,
                          "continued": i > 0})
    names = [r["name"] for r in rules]
    if len(set(names)) != len(names):
        raise ValueError(f"Front Door rule names collide: {sorted(n for n in names if names.count(n) > 1)[:3]}")
    # the route's rule set "edge" holds the client-address rule (order 1) and the first home rules; past Front Door's
    # 100 rules per rule set, further sets homes2, homes3, ... (the route runs its sets in the order it lists them)
    for n, r in enumerate(rules):
        k = (n + 1) // FRONT_DOOR_RULES_PER_SET
        r["set"] = "edge" if k == 0 else f"homes{k + 1}"
        r["order"] = (n + 1) % FRONT_DOOR_RULES_PER_SET + 1
    out["rules"] = rules
    out["extra_rule_sets"] = sorted({r["set"] for r in rules} - {"edge"}, key=lambda x: int(x[len("homes"):]))
    return out
