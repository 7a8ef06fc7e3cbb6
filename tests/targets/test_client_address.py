"""Kong believes the edge's client-address header (X-Viewer-Address) from exactly the peers that carry the edge's
requests to it: the region's load balancer and, for a franchise homed here, whatever opens the connection to Kong
for a request a linked region's Kong forwards to this region's internal gateway (the forwarding Kong on Azure, the
proxy-only subnet's proxies on GCP; on AWS the internal NLB's target is the load balancer). Judged from the
generated files alone: each region's kong values against its connections file (connections/<region>.json: the load
balancer's source ranges, and the sources of every `internal-gateway` connection that ends at Kong's pods). Before,
the forwarded requests were not believed: every client behind a peer shared one rate-limit bucket, and the logs
showed the peer. On GCP Kong trusted the forwarding regions' pod ranges, which never reach it: the proxies do."""

from __future__ import annotations

import ipaddress
import json

import pytest
import yaml

from compiler.emit import emit
from compiler.pipeline import compile_file
from tests.conftest import REPO

CASES = sorted(p.name for p in (REPO / "tests/cases").iterdir() if (p / "platform.yaml").exists())


def _addresses(cidrs) -> list:
    nets = sorted({ipaddress.ip_network(c) for c in cidrs if ipaddress.ip_network(c).version == 4})
    return list(ipaddress.collapse_addresses(nets))


@pytest.mark.parametrize("case", CASES)
def test_kong_trusts_the_load_balancer_and_the_forwarding_peers_only(case):
    plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
    out, _ = emit(plan, ["helm", "connections"], with_docs=False)
    files = {rel: text for rel, (_, text) in out["generated"].items()}
    forwarded = 0
    for r in plan.regions:
        conns = json.loads(files[f"connections/{r.name}.json"])
        want = list(conns["addressing"]["lb_source_cidrs"])
        for c in conns["connections"]:
            if "internal-gateway" in c["layers"] and c["to"]["kind"] == "pods":
                forwarded += 1
                want += [x for x in c["from"]["cidrs"] if x not in want]
        if r.cloud == "gcp" and any(c["to"]["kind"] == "internal-lb" for c in conns["connections"]):
            assert r.addressing.proxy_cidr in want  # the proxies, not the forwarding regions' pods
        values = yaml.safe_load(files[f"helm/{r.name}/kong.values.yaml"])
        got = values["env"]["trusted_ips"].split(",")
        # the same set of addresses (adjacent ranges merged)
        assert _addresses(got) == _addresses(want), r.name
        assert values["env"]["real_ip_header"] == "X-Viewer-Address" and values["env"]["real_ip_recursive"] == "off"
    if case == "reference":
        assert forwarded > 0
