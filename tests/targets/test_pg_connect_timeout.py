"""A service's database settings move on from a PgBouncer host that is gone, with the real libpq.

PgBouncer's name is one A record per host. With a host gone (its packets dropped: an instance or a zone lost), libpq
waited on that address without limit (connect_timeout unset) before trying the next one, so about half of the new
connections hung for the kernel's TCP timeout. The service's ConfigMap sets PGCONNECT_TIMEOUT, which libpq applies to
each address in turn.

Inside `unshare -n -m` (a loopback only; a private /etc/hosts): the ConfigMap's PGHOST resolves to two loopback
addresses, packets to the first are dropped (nftables) and nothing listens on the second. psql, with the ConfigMap's
host, port and timeout, must get through both addresses (the second refuses at once) well before a TCP timeout.
"""

from __future__ import annotations

import subprocess
import time

import yaml

from compiler.ir.data_access import PG_ENV
from compiler.targets import kubernetes
from tests.conftest import require_tool
from tests.targets.test_datastores_support import require_isolation

REGION = "us-east-1"
SCRIPT = r"""
set -e
ip link set lo up
mount --bind "$HOSTS" /etc/hosts
nft add table inet platformc_test
nft add chain inet platformc_test out '{ type filter hook output priority 0; }'
nft add rule inet platformc_test out ip daddr 127.0.0.2 tcp dport "$PGPORT" drop
exec psql -X -w -c 'select 1' "sslmode=disable"
"""


def _settings(reference) -> dict:
    files = kubernetes.emit_region(reference, reference.region(REGION))
    for rel, text in sorted(files.items()):
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "ConfigMap" and PG_ENV["host"] in doc.get("data", {}):
                return doc["data"]
    raise AssertionError("no service ConfigMap names PGHOST")


def test_a_lost_pgbouncer_host_costs_a_connection_the_timeout_not_minutes(reference, tmp_path):
    require_isolation()
    for tool in ("psql", "nft", "mount"):
        require_tool(tool)
    data = _settings(reference)
    timeout = int(data[PG_ENV["connect_timeout"]])
    assert 0 < timeout <= 10, timeout
    hosts = tmp_path / "hosts"
    hosts.write_text(f"127.0.0.1 localhost\n127.0.0.2 {data['PGHOST']}\n127.0.0.3 {data['PGHOST']}\n")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOSTS": str(hosts), "PGHOST": data["PGHOST"],
           "PGPORT": data["PGPORT"], "PGUSER": data["PGUSER"], "PGDATABASE": "postgres",
           "PGCONNECT_TIMEOUT": data[PG_ENV["connect_timeout"]]}
    started = time.monotonic()
    res = subprocess.run(["unshare", "-n", "-m", "--", "sh", "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=60)
    took = time.monotonic() - started
    assert res.returncode != 0  # nothing serves: the point is how soon libpq gives up on the dead address
    assert "127.0.0.2" in res.stderr and "127.0.0.3" in res.stderr, res.stderr  # both addresses were tried
    assert "timeout expired" in res.stderr, res.stderr
    assert took < 2 * timeout + 5, took
