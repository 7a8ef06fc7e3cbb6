"""Istio objects: canary routing per service and strict mTLS per namespace.

There is no Istio ingress gateway: the region's public entry is the cloud load balancer, which
reaches Kong's pods directly (compiler/ir/edge.py). Kong's sidecar applies the routing
below to gateway traffic on its way out.

networking.istio.io/v1 and security.istio.io/v1 are Istio's stable APIs (1.22+); the pinned
Istio is 1.30 (see the helm target).
"""

from __future__ import annotations

from compiler.ir import RegionPlan, ServicePlan
from compiler.targets.kubernetes.common import Track
from compiler.targets.kubernetes.workloads import common_labels, meta


def canary_routing(svc: ServicePlan, region: RegionPlan, tracks: tuple[Track, ...]) -> list[dict]:
    """The seed's canary: requests with the header go to v2 first, the rest split by weight."""
    ro = svc.rollout
    labels = common_labels(svc, region)
    host = svc.dns_name

    def dest(subset):
        return {"host": host, "subset": subset, "port": {"number": svc.port}}

    http = []
    if ro.header_match:
        http.append({"name": "canary-header",
                     "match": [{"headers": {ro.header_match.name: {"exact": ro.header_match.exact}}}],
                     "route": [{"destination": dest("v2")}]})
    http.append({"name": "weighted",
                 "route": [{"destination": dest("v1"), "weight": ro.stable_weight},
                           {"destination": dest("v2"), "weight": ro.canary_weight}]})
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": meta(svc.name, svc.namespace, labels),
         "spec": {"host": host,
                  "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                  "subsets": [{"name": t.id, "labels": t.labels} for t in tracks]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": meta(svc.name, svc.namespace, labels),
         # exported to every namespace: the gateway (kong) and the callers route by it
         "spec": {"hosts": [host], "http": http}},
    ]


def strict_mtls(svc: ServicePlan, region: RegionPlan) -> dict:
    """Only mesh traffic (mTLS) reaches the namespace; the metrics port 15020 is not captured by the
    sidecar, so Prometheus still scrapes it."""
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": meta("default", svc.namespace, common_labels(svc, region)),
            "spec": {"mtls": {"mode": "STRICT"}}}

