"""generated/connections/<region>.json writes each connection as json.dumps(connection(c), ensure_ascii=False);
connection_line splices in each end's text from a memo instead (compiler/targets/connections): the same text."""

from __future__ import annotations

import json

from compiler.ir import Connection, Peer
from compiler.targets import connections


def _dumps(c: Connection) -> str:
    return json.dumps(connections.connection(c), ensure_ascii=False)


def test_every_connection_of_every_case_is_its_json(any_case):
    wiring = [c for r in any_case.regions for c in r.wiring]
    assert len(wiring) > 100
    for c in wiring:
        assert connections.connection_line(c) == _dumps(c)


def test_awkward_peers_and_fields():
    a = Peer("a\"b", "pods", namespace="caf\u00e9", labels={"z": "1", "a": "\u2028\\"})
    b = Peer("a\"b", "pods", namespace="caf\u00e9", labels={"a": "\u2028\\", "z": "1"})  # same labels, other order
    h = Peer("db", "hosts", host_group="postgres", hosts=("h1", "h2"), cidrs=("10.0.0.0/8",))
    for c in (Connection(a, h, "x\ty", 5432, 6432, "TCP", "postgresql", "p\u00fcrpose", tls="1.3",
                         layers=("nftables", "pg_hba"), database="all", user="u\"1"),
              Connection(b, h, "", 0, 0, "UDP", "", "", layers=()),
              Connection(h, a, "h", 1, 1, "TCP", "ssh", "why"),
              # not what the IR holds, but written as json.dumps writes them: a bool, a float, None, a list
              Connection(h, a, None, True, 2.5, "TCP", "ssh", "why", tls=None, layers=["a", "b"], database="d", user=None)):
        assert connections.connection_line(c) == _dumps(c)
    # the memo keeps the labels' order: a and b are different texts
    assert connections._peer_text(a) != connections._peer_text(b)


def test_region_file_lines_are_each_connections_json(reference):
    """emit_region writes the lines with its own memo of the region's peers (by identity): still each json.dumps."""
    for r in reference.regions[:3]:
        (text,) = connections.emit_region(reference, r).values()
        lines = text.split("\n")[1:-2]
        assert [ln.rstrip(",") for ln in lines] == [_dumps(c) for c in r.wiring]
