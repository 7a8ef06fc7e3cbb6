"""Terraform target: the CloudFront viewer-request function (cloudfront-js-2.0) of the global root.

One function per viewer-request event (CloudFront runs one), doing, in order:
1. sets the client-address header to the viewer's IP (Kong reads the client address from it);
2. deletes X-Platformc-Forwarded-From from the viewer's request (only the edge and the gateways set it);
3. home-region routing (compiler/ir/home_routing.py), when the platform has several regions: the franchise id
   header (digits only, at most 15, as Kong's check) is looked up in the shard map's ranges (inline tables,
   binary search) or, when those tables would not fit the 10 KB function limit (a scattered registry), in the
   routing KeyValueStore (franchises-<id // 100>: the bucket's franchises and their homes); the home's origin is selected with
   `cf.selectRequestOriginById`; the KeyValueStore's `serving-<home>` key, when the DR runbook has set it, names
   the region now serving the home's franchises (that region's origin is selected and the request marked as
   routed by the edge). No id, a malformed id or an id outside the map: the default origin (the weighted,
   health-checked origin.<domain>) is left as it is.

CloudFront Functions API (runtime 2.0): `import cf from 'cloudfront'`, `cf.kvs()` (the one associated store),
`await kvs.get(key)` (throws when the key is absent), `cf.selectRequestOriginById(id)` (an origin defined in the
distribution). The code must not contain `${` or `%{` (it is written in an HCL heredoc).
"""

from __future__ import annotations

import json

from compiler.ir import PlatformPlan
from compiler.ir.home_routing import (EDGE_ROUTED, FUNCTION_MAX_BYTES, HOME_ORIGIN_PREFIX, INLINE_MAP_MAX_BYTES,
                                      KVS_MAX_BYTES, SERVING_KEY_PREFIX, edge_routes_homes, home_range_table,
                                      joined)
from compiler.ir.names import CLIENT_ADDRESS_HEADER
from compiler.ir.network import FORWARDED_FROM_HEADER

# KeyValueStore keys of the franchise map (registry mode): franchises-<id // 100>, each value the bucket's franchises
# as `<id % 100>:<region index, base 36>` joined by commas (at most 100 entries of at most 6 bytes: under the
# 1 KB value limit), so a scattered registry of 10,000 franchises is a few hundred keys, not 10,000.
FRANCHISE_KEY_PREFIX = "franchises-"
BUCKET = 100
KVS_VALUE_MAX_BYTES = 1024
_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _base36(n: int) -> str:
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = _B36[r] + out
        if not n:
            return out


def _tables(plan: PlatformPlan) -> str:
    """The FIRST/LAST/HOME lines (HOME: indexes into REGIONS, the regions in plan order)."""
    ranges = home_range_table(plan)
    index = {r.name: i for i, r in enumerate(plan.regions)}
    home_index = [str(index.get(n)) for n in ranges.names]
    return "\n".join([
        "var FIRST = [" + joined(",", map(str, ranges.first)) + "];",
        "var LAST = [" + joined(",", map(str, ranges.last)) + "];",
        "var HOME = [" + joined(",", map(home_index.__getitem__, ranges.home_at)) + "];",
    ])


def uses_kvs_map(plan: PlatformPlan) -> bool:
    """Whether the franchise map goes to the KeyValueStore (its inline tables would not fit the function); once per
    plan (the global root asks three times, and the tables of a scattered registry are ~100 KB of text)."""
    if not edge_routes_homes(plan.spec):
        return False
    return plan.derived("edge_kvs_map", lambda: len(_tables(plan).encode()) > INLINE_MAP_MAX_BYTES)


def kvs_entries(plan: PlatformPlan) -> dict[str, str]:
    """The KeyValueStore's franchise keys (registry mode): franchises-<bucket> -> the bucket's franchises and homes."""
    if not uses_kvs_map(plan):
        return {}
    ranges = home_range_table(plan)
    index = {r.name: i for i, r in enumerate(plan.regions)}
    home_code = [_base36(index[n]) for n in ranges.names]  # each region's index in base 36, once
    # the ranges ascend, so the buckets come in order: each one joined as soon as the next begins
    out: dict[str, str] = {}
    bucket, entries = None, []
    for first, last, at in zip(ranges.first, ranges.last, ranges.home_at):
        code = home_code[at]
        for fid in range(first, last + 1):
            b, offset = divmod(fid, BUCKET)
            if b != bucket:
                if entries:
                    out[f"{FRANCHISE_KEY_PREFIX}{bucket}"] = ",".join(entries)
                bucket, entries = b, []
            entries.append(f"{offset}:{code}")
    if entries:
        out[f"{FRANCHISE_KEY_PREFIX}{bucket}"] = ",".join(entries)
    big = [k for k, v in out.items() if len(v.encode()) > KVS_VALUE_MAX_BYTES]
    if big:
        raise ValueError(f"KeyValueStore values over {KVS_VALUE_MAX_BYTES} bytes: {big[:3]}")
    total = sum(len(k.encode()) + len(v.encode()) for k, v in out.items())
    if total > KVS_MAX_BYTES:
        raise ValueError(f"the franchise map is {total} bytes, over the KeyValueStore's {KVS_MAX_BYTES}")
    return out


def viewer_request_code(plan: PlatformPlan) -> str:
    """The function's JavaScript."""
    header = plan.spec.settings.gateway.hash_on_header.lower()
    client = CLIENT_ADDRESS_HEADER.lower()
    forwarded = FORWARDED_FROM_HEADER.lower()
    if not edge_routes_homes(plan.spec):
        lines = [
            "function handler(event) {",
            f"  event.request.headers[{json.dumps(client)}] = {{ value: event.viewer.ip }};",
            f"  delete event.request.headers[{json.dumps(forwarded)}];",
            "  return event.request;",
            "}",
        ]
        return "\n".join(lines) + "\n"
    regions = [r.name for r in plan.regions]
    kvs_map = uses_kvs_map(plan)
    lines = [
        "import cf from 'cloudfront';",
        "",
        "// platformc: home-region routing at the edge (franchise id -> home region, from the shard map)",
        "var KVS = cf.kvs();",
        "var REGIONS = [" + ",".join(json.dumps(r) for r in regions) + "];",
    ]
    if not kvs_map:
        lines += [_tables(plan),
                  "",
                  "async function homeOf(id) {",
                  "  var lo = 0, hi = FIRST.length - 1;",
                  "  while (lo <= hi) {",
                  "    var mid = (lo + hi) >> 1;",
                  "    if (id < FIRST[mid]) { hi = mid - 1; }",
                  "    else if (id > LAST[mid]) { lo = mid + 1; }",
                  "    else { return REGIONS[HOME[mid]]; }",
                  "  }",
                  "  return null;",
                  "}"]
    else:
        # the bucket and offset from the id's decimal digits (exact for every id of up to 15 digits)
        lines += ["",
                  "async function homeOf(id) {",
                  "  var s = String(id);",
                  f"  var bucket = s.length > {len(str(BUCKET)) - 1} ? s.slice(0, {1 - len(str(BUCKET))}) : \"0\";",
                  f"  var offset = String(Number(s.slice({1 - len(str(BUCKET))})));",
                  "  var v;",
                  "  try {",
                  f"    v = await KVS.get({json.dumps(FRANCHISE_KEY_PREFIX)} + bucket);",
                  "  } catch (e) {",
                  "    return null;",
                  "  }",
                  "  var entries = v.split(\",\");",
                  "  for (var i = 0; i < entries.length; i++) {",
                  "    var e = entries[i].split(\":\");",
                  "    if (e[0] === offset) { return REGIONS[parseInt(e[1], 36)]; }",
                  "  }",
                  "  return null;",
                  "}"]
    lines += [
        "",
        "async function servingOf(home) {",
        "  try {",
        f"    return await KVS.get({json.dumps(SERVING_KEY_PREFIX)} + home);",
        "  } catch (e) {",
        "    return home;",
        "  }",
        "}",
        "",
        "async function handler(event) {",
        "  var request = event.request;",
        f"  request.headers[{json.dumps(client)}] = {{ value: event.viewer.ip }};",
        f"  delete request.headers[{json.dumps(forwarded)}];",
        f"  var h = request.headers[{json.dumps(header)}];",
        '  var raw = h ? h.value : "";',
        "  if (!/^[0-9]{1,15}$/.test(raw)) { return request; }",
        "  var home = await homeOf(Number(raw));",
        "  if (REGIONS.indexOf(home) < 0) { return request; }",
        "  var serving = await servingOf(home);",
        "  if (REGIONS.indexOf(serving) < 0) { serving = home; }",
        f"  if (serving !== home) {{ request.headers[{json.dumps(forwarded)}] = {{ value: {json.dumps(EDGE_ROUTED)} }}; }}",
        f"  cf.selectRequestOriginById({json.dumps(HOME_ORIGIN_PREFIX)} + serving);",
        "  return request;",
        "}",
    ]
    code = "\n".join(lines) + "\n"
    if "${" in code or "%{" in code:
        raise ValueError("the viewer-request function would start an HCL interpolation")
    size = len(code.encode())
    if size > FUNCTION_MAX_BYTES:
        raise ValueError(f"the viewer-request function is {size} bytes, over CloudFront's {FUNCTION_MAX_BYTES}")
    return code
