"""Connections target: the region's wiring, as data (generated/connections/<region>.json).

Every connection the region needs (compiler/wiring.py), each with both ends as the layers see them, the
address and port dialled, the port listened on, the TLS floor and the layers it must pass. Reviewers read
what a spec change opens or closes here in one diff; `platformc verify` takes this file as the list of
paths to prove against every other file in the tree.

JSON with one connection per line: a changed connection is a one-line diff, and verify reads a region's
file in milliseconds and points at a connection by its line.
"""

from __future__ import annotations

import json

from compiler.docs import markdown_table
from compiler.ir import Connection, Peer, PlatformPlan, RegionPlan
from compiler.render import release_with_memos

NAME = "connections"
FORMAT = 1  # bumped when the file's shape changes (verify refuses a format it does not know)


def _peer(p: Peer) -> dict:
    out: dict = {"name": p.name, "kind": p.kind}
    if p.namespace:
        out["namespace"] = p.namespace
    if p.labels:
        out["labels"] = dict(p.labels)
    if p.host_group:
        out["host_group"] = p.host_group
    if p.hosts:
        out["hosts"] = list(p.hosts)
    if p.cidrs:
        out["cidrs"] = list(p.cidrs)
    return out


def connection(c: Connection) -> dict:
    out = {"id": c.id, "purpose": c.purpose, "from": _peer(c.source), "to": _peer(c.dest), "address": c.address,
           "port": c.port, "dest_port": c.dest_port, "protocol": c.protocol, "app_protocol": c.app_protocol,
           "tls": c.tls, "layers": list(c.layers)}
    if c.database:
        out["database"] = c.database
        out["user"] = c.user
    return out


# json.dumps(x, ensure_ascii=False)'s text, without building an encoder per call (the file is ~170 KB per region at
# 120 regions, ~30,000 connections in all); no cycles are possible in these plain trees, so no circular check.
_encode = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode
_PEERS: dict[tuple, str] = {}  # a peer's fields -> its JSON text (each end is ~half of a line's bytes)
# emptied when emit moves on to the next target (~1.8 MiB at 120 regions, held to the run's end before)
release_with_memos(_PEERS.clear)


def _peer_text(p: Peer) -> str:
    """_peer(p) as JSON, once per distinct peer (keyed on every field _peer reads, labels in their order): the
    same ends recur across connections and regions (about 170 distinct texts for 570 ends in a region)."""
    key = (p.name, p.kind, p.namespace, tuple(p.labels.items()), p.host_group, tuple(p.hosts), tuple(p.cidrs))
    return _memo(_PEERS, 50_000, key, lambda: _peer(p))


def _memo(table: dict, limit: int, key, value) -> str:
    """table[key], else the JSON of value() stored there (the table emptied past `limit` entries)."""
    text = table.get(key)
    if text is None:
        if len(table) > limit:
            table.clear()
        text = table[key] = _encode(value())
    return text


def connection_line(c: Connection, seen: dict | None = None) -> str:
    """json.dumps(connection(c), ensure_ascii=False), written field by field in connection()'s order: each scalar
    through the same encoder (a top-level scalar's JSON is its text inside an object), both ends from _peer_text,
    the layers from _layers_text (tests hold the two to the same text). Building the dict and encoding it was
    twice the time. `seen` (id(peer) -> text) is the caller's memo for peers it keeps alive (a region's wiring
    shares its peer objects between connections)."""
    try:  # a string field straight through the C escaper the encoder itself calls for a str (no method call)
        return _line(c, _escape, seen)
    except TypeError:  # a field that is not a string (never in the IR; the encoder writes it as json.dumps does)
        return _line(c, _encode, seen)


_escape = json.encoder.encode_basestring  # what JSONEncoder(ensure_ascii=False).encode(s) returns for a str s


def _line(c: Connection, enc, seen: dict | None) -> str:
    tail = f', "database": {enc(c.database)}, "user": {enc(c.user)}}}' if c.database else "}"
    if seen is None:
        src, dst = _peer_text(c.source), _peer_text(c.dest)
    else:
        src = seen.get(id(c.source)) or seen.setdefault(id(c.source), _peer_text(c.source))
        dst = seen.get(id(c.dest)) or seen.setdefault(id(c.dest), _peer_text(c.dest))
    return (f'{{"id": {enc(c.id)}, "purpose": {enc(c.purpose)}, "from": {src}, '
            f'"to": {dst}, "address": {enc(c.address)}, "port": {_number(c.port)}, '
            f'"dest_port": {_number(c.dest_port)}, "protocol": {enc(c.protocol)}, '
            f'"app_protocol": {enc(c.app_protocol)}, "tls": {enc(c.tls)}, "layers": {_layers_text(c.layers)}{tail}')


def _number(v) -> str:
    return str(v) if type(v) is int else _encode(v)  # an int's JSON is its decimal text (a bool is not an int here)


_LAYERS: dict[tuple, str] = {}  # a connection's layers -> their JSON list (a few dozen distinct tuples)


def _layers_text(layers) -> str:
    key = tuple(layers)
    return _memo(_LAYERS, 10_000, key, lambda: list(key))


def emit_region(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    a = region.addressing
    doc = {
        "format": FORMAT,
        "region": region.name,
        "cloud": region.cloud,
        "addressing": {"node_cidrs": list(a.node_cidrs), "public_cidrs": list(a.public_cidrs), "pod_cidr": a.pod_cidr,
                       "service_cidr": a.service_cidr, "pod_source_cidrs": list(a.pod_source_cidrs),
                       "max_pods_per_node": a.max_pods_per_node, "lb_source_cidrs": list(a.lb_source_cidrs)},
    }
    head = json.dumps(doc, ensure_ascii=False)[:-1]
    seen: dict = {}  # id(peer) -> its text: the wiring holds every peer alive while the lines are written
    lines = [connection_line(c, seen) for c in region.wiring]
    body = ",\n".join(lines)
    return {f"{NAME}/{region.name}.json": f'{head}, "connections": [\n{body}\n]}}\n'}


def docs_region(plan: PlatformPlan, region: RegionPlan) -> str:
    rows = [[c.source.name, c.dest.name, f"{c.port}" + (f" → {c.dest_port}" if c.dest_port != c.port else ""),
             c.protocol, c.purpose, ", ".join(c.layers) or "—"]
            for c in region.wiring]
    return ("## Connections\n\n"
            f"{len(region.wiring)} connections (`generated/connections/{region.name}.json`); "
            "`platformc verify generated/` proves each through the layers listed.\n\n"
            + markdown_table(["from", "to", "port", "proto", "purpose", "layers"], rows))
