"""Namespace-level objects of one service: Namespace, identity and RBAC, quotas, NetworkPolicies."""

from __future__ import annotations

from compiler.ir import RegionPlan, ServicePlan
from compiler.targets.kubernetes.common import (GATEWAY_NAMESPACE, GPU_RESOURCE, ISTIO_METRICS_PORT,
                                                 ISTIO_NAMESPACE, ISTIOD_XDS_PORT, MONITORING_NAMESPACE,
                                                 OTLP_GRPC_PORT, OTLP_HTTP_PORT, SIDECAR_LIMITS,
                                                 SIDECAR_REQUESTS, SYSTEM_NAMESPACE, Track, cpu_quantity,
                                                 memory_quantity, mesh_enabled, service_by_name)
from compiler.targets.kubernetes.workloads import common_labels, meta

NS_LABEL = "kubernetes.io/metadata.name"  # set by Kubernetes on every namespace


def namespace(svc: ServicePlan, region: RegionPlan) -> dict:
    labels = common_labels(svc, region)
    labels["istio-injection"] = "enabled" if mesh_enabled(region) else "disabled"
    # Audit and warn against the `restricted` Pod Security profile. Not enforced: the sidecar's
    # istio-init container needs NET_ADMIN/NET_RAW, which even `baseline` refuses.
    labels["pod-security.kubernetes.io/audit"] = "restricted"
    labels["pod-security.kubernetes.io/warn"] = "restricted"
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": meta(svc.namespace, None, labels)}


def identity(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    """ServiceAccount and, with `security.rbac`, a Role that can read only the service's own Secret
    and ConfigMap. Tokens are not mounted (the services do not call the API server); a service
    that needs to opts in with a projected token and gets exactly this Role."""
    labels = common_labels(svc, region)
    out = [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta(svc.name, svc.namespace, labels),
            "automountServiceAccountToken": False}]
    if region.settings.security.rbac:
        out.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": meta(svc.name, svc.namespace, labels),
            "rules": [{"apiGroups": [""], "resources": ["configmaps", "secrets"],
                       "resourceNames": [svc.name], "verbs": ["get"]}],
        })
        out.append({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": meta(svc.name, svc.namespace, labels),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": svc.name},
            "subjects": [{"kind": "ServiceAccount", "name": svc.name, "namespace": svc.namespace}],
        })
    return out


def quota_figures(svc: ServicePlan, region: RegionPlan, tracks: tuple[Track, ...]) -> dict[str, str]:
    """What the namespace may hold at most: every track at its HPA ceiling plus rollout surge, each
    pod with the service's requests/limits plus the sidecar's when the mesh is on."""
    pods = sum(t.max_pods for t in tracks)
    side_req = SIDECAR_REQUESTS if mesh_enabled(region) else {"cpu_m": 0, "memory_mi": 0}
    side_lim = SIDECAR_LIMITS if mesh_enabled(region) else {"cpu_m": 0, "memory_mi": 0}
    hard = {
        "pods": str(pods),
        "requests.cpu": cpu_quantity(pods * (svc.requests.cpu_millicores + side_req["cpu_m"])),
        "requests.memory": memory_quantity(pods * (svc.requests.memory_mib + side_req["memory_mi"])),
        "limits.cpu": cpu_quantity(pods * (svc.limits.cpu_millicores + side_lim["cpu_m"])),
        "limits.memory": memory_quantity(pods * (svc.limits.memory_mib + side_lim["memory_mi"])),
        "services.loadbalancers": "0",  # the public entry is the gateway, never a service's own LB
        "services.nodeports": "0",
    }
    if svc.limits.gpu:
        hard[f"requests.{GPU_RESOURCE}"] = str(pods * svc.limits.gpu)
    return hard


def quotas(svc: ServicePlan, region: RegionPlan, tracks: tuple[Track, ...]) -> list[dict]:
    labels = common_labels(svc, region)
    default_req = {"cpu": svc.requests.cpu, "memory": svc.requests.memory}
    default_lim = {"cpu": svc.limits.cpu, "memory": svc.limits.memory}
    return [
        {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": meta(svc.name, svc.namespace, labels),
         "spec": {"hard": quota_figures(svc, region, tracks)}},
        # Defaults for containers that name no resources (debug containers); no GPU default, or
        # the sidecar would ask for a GPU too.
        {"apiVersion": "v1", "kind": "LimitRange", "metadata": meta(svc.name, svc.namespace, labels),
         "spec": {"limits": [{"type": "Container", "default": default_lim, "defaultRequest": default_req,
                              "max": default_lim}]}},
    ]


def _peer(namespace: str, app: str | None = None) -> dict:
    peer: dict = {"namespaceSelector": {"matchLabels": {NS_LABEL: namespace}}}
    if app:
        peer["podSelector"] = {"matchLabels": {"app": app}}
    return peer


def _tcp(*ports: int) -> list[dict]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def datastore_ports(region: RegionPlan) -> dict[str, list[int]]:
    """Ports a service opens to each data store it `uses`. PostgreSQL is reached through PgBouncer
    (the connection budget assumes it); a managed search domain (OpenSearch) listens on 443."""
    ds = region.settings.datastores
    return {
        "postgres": [ds.pgbouncer.port],
        "redis": [ds.redis.port],
        "elasticsearch": [9200] if ds.elasticsearch.deployment == "self-managed" else [443],
    }


def network_policies(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    """Default deny for the namespace, then one policy allowing exactly the spec's edges."""
    if not region.settings.security.network_policies:
        return []
    labels = common_labels(svc, region)
    by_name = service_by_name(region)
    mesh = mesh_enabled(region)
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta("default-deny", svc.namespace, labels),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}

    ingress = []
    callers = [_peer(by_name[d].namespace, d) for d in svc.dependents]
    if svc.routes:
        callers.append(_peer(GATEWAY_NAMESPACE))
    if callers:
        ingress.append({"from": callers, "ports": _tcp(svc.port)})
    scrape = [svc.port, ISTIO_METRICS_PORT] if mesh else [svc.port]
    ingress.append({"from": [_peer(MONITORING_NAMESPACE)], "ports": _tcp(*scrape)})

    egress = [{"to": [{"namespaceSelector": {"matchLabels": {NS_LABEL: SYSTEM_NAMESPACE}},
                       "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
               "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
    for dep in svc.depends_on:
        d = by_name[dep]
        egress.append({"to": [_peer(d.namespace, d.name)], "ports": _tcp(d.port)})
    if mesh:
        egress.append({"to": [_peer(ISTIO_NAMESPACE, "istiod")], "ports": _tcp(ISTIOD_XDS_PORT)})
    if region.settings.monitoring.tracing:
        egress.append({"to": [_peer(MONITORING_NAMESPACE)], "ports": _tcp(OTLP_GRPC_PORT, OTLP_HTTP_PORT)})
    allow = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": meta(svc.name, svc.namespace, labels),
             "spec": {"podSelector": {"matchLabels": {"app": svc.name}}, "policyTypes": ["Ingress", "Egress"],
                      "ingress": ingress, "egress": egress}}
    out = [deny, allow]
    stores = datastore_egress(svc, region)
    if stores:
        # A policy of its own: the data stores are the region-specific part (subnet CIDRs), the
        # service graph above is the same in every region. NetworkPolicies add up.
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": meta(f"{svc.name}-datastores", svc.namespace, labels),
                    "spec": {"podSelector": {"matchLabels": {"app": svc.name}}, "policyTypes": ["Egress"],
                             "egress": stores}})
    return out


def datastore_egress(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    """Egress to the data stores the service `uses`. Self-managed data hosts (and managed endpoints
    placed in the VPC) live in the region's private subnets; object storage is the provider's API."""
    egress = []
    private = [{"ipBlock": {"cidr": z.private_cidr}} for z in region.zones]
    ports = datastore_ports(region)
    store_ports = sorted({p for use in svc.uses if use in ports for p in ports[use]})
    if store_ports:
        egress.append({"to": private, "ports": _tcp(*store_ports)})
    if "object-storage" in svc.uses:
        egress.append({"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": _tcp(443)})
    return egress
