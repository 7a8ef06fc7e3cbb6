"""Istio objects: canary routing per service, strict mTLS per namespace, and the region's ingress.

networking.istio.io/v1 and security.istio.io/v1 are Istio's stable APIs (1.22+); the pinned
Istio is 1.30 (see the helm target).
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan, ServicePlan
from compiler.targets._kubernetes_common import (GATEWAY_NAMESPACE, INGRESS_GATEWAY_SELECTOR, INGRESS_NAMESPACE,
                                                 KONG_PROXY_PORT, KONG_PROXY_SERVICE, MANAGED_BY, Track)
from compiler.targets._kubernetes_workloads import common_labels, meta


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


def public_hosts(plan: PlatformPlan, region: RegionPlan) -> list[str]:
    org = plan.spec.organization
    dns = plan.spec.edge.dns
    hosts = {f"{dns.api_host}.{org.domain}", f"{dns.app_host}.{org.domain}"}
    for svc in region.services:
        for route in svc.routes:
            hosts.update(route.hosts)
    return sorted(hosts)


def ingress(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    """The region's entry: the Istio ingress gateway (a LoadBalancer Service from the helm target)
    accepts the public hosts and hands every request to Kong, which authenticates, rate-limits and
    routes into the mesh. TLS from clients ends at the edge load balancer (TLS 1.3 policy, Terraform);
    from the gateway on, the mesh carries it as mTLS."""
    labels = {"app.kubernetes.io/part-of": region.tags["org"], "app.kubernetes.io/managed-by": MANAGED_BY}
    hosts = public_hosts(plan, region)
    kong = f"{KONG_PROXY_SERVICE}.{GATEWAY_NAMESPACE}.svc.cluster.local"
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
         "metadata": meta("public", INGRESS_NAMESPACE, labels),
         "spec": {"selector": dict(INGRESS_GATEWAY_SELECTOR),
                  "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": hosts}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": meta("public-to-kong", INGRESS_NAMESPACE, labels),
         "spec": {"hosts": hosts, "gateways": ["public"],
                  "http": [{"name": "kong", "route": [{"destination": {"host": kong, "port": {"number": KONG_PROXY_PORT}}}]}]}},
    ]
