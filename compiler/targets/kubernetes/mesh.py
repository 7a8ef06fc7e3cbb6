"""Istio objects: canary routing per service, strict mTLS per namespace, and the mesh's access-log policy.

There is no Istio ingress gateway: the region's public entry is the cloud load balancer, which
reaches Kong's pods directly (compiler/ir/edge.py). Kong's sidecar applies the routing
below to gateway traffic on its way out.

networking.istio.io/v1 and security.istio.io/v1 are Istio's stable APIs (1.22+); the pinned
Istio is 1.30 (see the helm target).
"""

from __future__ import annotations

from compiler.ir import RegionPlan, ServicePlan
from compiler.ir.log_volume import mesh_filters
from compiler.ir.names import ISTIO_NAMESPACE
from compiler.targets.kubernetes.common import MANAGED_BY, Track
from compiler.targets.kubernetes.workloads import common_labels, meta


ISTIO_LAYER = "istio"


def load_balancer(region: RegionPlan) -> dict | None:
    """Where hashing on the franchise header lives: the caller's sidecar, across the pods (Kong's
    upstream has one target, the Service, so a hash there would pick the same target every time)."""
    g = region.settings.gateway
    if g.load_balancing != "consistent-hashing":
        return None
    return {"consistentHash": {"httpHeaderName": g.hash_on_header}}


def destination_rule(svc: ServicePlan, region: RegionPlan, tracks: tuple[Track, ...]) -> dict | None:
    """The service's DestinationRule: mTLS, hashing on the franchise header when the spec asks for
    consistent hashing, and the canary subsets. None when there is nothing to say."""
    canary = svc.rollout.type == "canary"
    lb = load_balancer(region)
    if not canary and lb is None:
        return None
    policy: dict = {"tls": {"mode": "ISTIO_MUTUAL"}}
    if lb:
        policy["loadBalancer"] = lb
    spec: dict = {"host": svc.dns_name, "trafficPolicy": policy}
    if canary:
        spec["subsets"] = [{"name": t.id, "labels": t.labels} for t in tracks]
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": meta(svc.name, svc.namespace, common_labels(svc, region)), "spec": spec}


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
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": meta(svc.name, svc.namespace, labels),
         # exported to every namespace: the gateway (kong) and the callers route by it
         "spec": {"hosts": [host], "http": http}},
    ]


def service_entries(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    """A ServiceEntry per Internet host the service calls (its `istio` connections in region.wiring),
    visible to the service's namespace only: the mesh then knows the host (required with an outbound
    policy of REGISTRY_ONLY, and it names the traffic in telemetry). The application speaks TLS itself
    (the sidecar passes it through, routing on SNI), so the port protocol is TLS."""
    out = []
    for c in region.connections_from(svc.name):
        if ISTIO_LAYER not in c.layers:
            continue
        out.append({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
                    "metadata": meta(f"egress-{c.address.replace('.', '-')}"[:63].rstrip("-"), svc.namespace,
                                     common_labels(svc, region)),
                    "spec": {"hosts": [c.address], "exportTo": ["."], "location": "MESH_EXTERNAL",
                             "resolution": "DNS",
                             "ports": [{"number": c.port, "name": f"tls-{c.port}", "protocol": "TLS"}]}})
    return out


def strict_mtls(svc: ServicePlan, region: RegionPlan) -> dict:
    """Only mesh traffic (mTLS) reaches the namespace; the metrics port 15020 is not captured by the
    sidecar, so Prometheus still scrapes it."""
    return {"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
            "metadata": meta("default", svc.namespace, common_labels(svc, region)),
            "spec": {"mtls": {"mode": "STRICT"}}}


MESH_TELEMETRY_NAME = "mesh-access-logs"


def access_log_telemetry(plan, region: RegionPlan) -> dict:
    """The mesh-wide access-log policy (a Telemetry in Istio's root namespace, telemetry.istio.io/v1): the built-in
    `envoy` provider (stdout, meshConfig's JSON encoding) with a CEL filter per traffic direction, from the IR
    (compiler/ir/log_volume.py mesh_filters): inbound, 5xx and requests slower than slos.latency_p99_ms; outbound, 5xx.
    With a Telemetry present, istiod ignores meshConfig.accessLogFile (pilot/pkg/networking/core/accesslog.go), which
    the helm target leaves unset: no sidecar logs every request. The filters are written for HTTP: a TCP connection
    has no response code."""
    filters = mesh_filters(plan.spec.slos.latency_p99_ms)
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": meta(MESH_TELEMETRY_NAME, ISTIO_NAMESPACE, {"app.kubernetes.io/name": "istio",
                                                                     "app.kubernetes.io/part-of": region.tags["org"],
                                                                     "app.kubernetes.io/managed-by": MANAGED_BY}),
            "spec": {"accessLogging": [{"providers": [{"name": "envoy"}], "match": {"mode": mode},
                                        "filter": {"expression": expression}}
                                       for mode, expression in filters.items()]}}
