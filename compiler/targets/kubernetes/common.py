"""Names and small helpers shared by the kubernetes and helm targets.

The two targets meet in the cluster: the Helm releases create the gateway, mesh and monitoring
namespaces and services that the per-service manifests (NetworkPolicies, OTEL env, mesh routes)
point at. Every such name is defined once here, so the two outputs cannot drift apart.
"""

from __future__ import annotations

import marshal
import math
from dataclasses import dataclass

from compiler.ir import RegionPlan, ServicePlan
from compiler.render import dump_yaml

# Namespaces the Helm releases own (helmfile creates them).
GATEWAY_NAMESPACE = "kong"
MONITORING_NAMESPACE = "monitoring"
ISTIO_NAMESPACE = "istio-system"
SYSTEM_NAMESPACE = "kube-system"

# Services the Helm releases create (names pinned through nameOverride/fullnameOverride values).
# Kong's proxy listens on compiler/targets/kong/edge.KONG_PROXY_TLS_PORT (the load balancers' target).
KONG_RELEASE = "kong"
KONG_PROXY_SERVICE = "kong-proxy"  # kong chart `proxy.nameOverride`
# The kong chart's pod selector labels (`kong.selectorLabels`: chart name and release name).
KONG_POD_LABELS = {"app.kubernetes.io/name": "kong", "app.kubernetes.io/instance": KONG_RELEASE}
KONG_STATUS_PORT = 8100  # kong chart default `status.http.containerPort`: readiness and /metrics
OTEL_COLLECTOR_SERVICE = "otel-collector"  # opentelemetry-collector `fullnameOverride`
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
ISTIOD_XDS_PORT = 15012
ISTIO_METRICS_PORT = 15020  # merged app + sidecar metrics (meshConfig.enablePrometheusMerge)

# Node label that selects a node pool. Cloud-native pool labels (eks.amazonaws.com/nodegroup,
# cloud.google.com/gke-nodepool, kubernetes.azure.com/agentpool) carry the cloud's pool name,
# which need not be the spec's (AKS allows 12 alphanumerics only), so the node pools carry this label.
NODE_POOL_LABEL = "platformc.io/node-pool"
GPU_RESOURCE = "nvidia.com/gpu"

# The Istio sidecar's resources, set per pod by annotation so namespace quotas can count them.
SIDECAR_REQUESTS = {"cpu_m": 100, "memory_mi": 128}
SIDECAR_LIMITS = {"cpu_m": 1000, "memory_mi": 512}

# Non-root identity every platform container runs as (checkov CKV_K8S_40 wants a UID >= 10000).
RUN_AS = 10001

MANAGED_BY = "platformc"
BANNER_SPEC = "platform.yaml"


def cpu_quantity(millicores: int) -> str:
    return f"{millicores}m"


def memory_quantity(mib: float) -> str:
    """Mi when whole, else Ki (the spec allows Ki amounts)."""
    if float(mib).is_integer():
        return f"{int(mib)}Mi"
    return f"{int(round(mib * 1024))}Ki"


def percent(value: float, round_up: bool) -> str:
    """Kubernetes int-or-percent strings take whole percentages only."""
    whole = math.ceil(value) if round_up else math.floor(value)
    return f"{whole}%"


def mesh_enabled(region: RegionPlan) -> bool:
    return region.settings.kubernetes.istio


@dataclass(frozen=True)
class Track:
    """One Deployment of a service: the whole service (rolling), a canary subset or a colour."""

    service: str
    id: str  # stable | v1 | v2 | blue | green
    deployment: str  # Deployment / HPA / PDB name
    tag: str
    replicas_min: int
    replicas_max: int
    max_surge: str
    max_unavailable: str
    live: bool  # receives traffic through the Service (blue-green idle colour: False)

    @property
    def labels(self) -> dict[str, str]:
        return {"app": self.service, "version": self.id}

    @property
    def max_pods(self) -> int:
        """Pods at the HPA ceiling in the middle of a rollout (surge included): what quotas must admit."""
        surge = self.max_surge
        extra = math.ceil(self.replicas_max * int(surge[:-1]) / 100) if surge.endswith("%") else int(surge)
        return self.replicas_max + extra


DEFAULT_SURGE, DEFAULT_UNAVAILABLE = "25%", "0%"


def canary_replicas(svc: ServicePlan) -> tuple[int, int]:
    """The canary subset's HPA bounds: its traffic share of the service's bounds, at least one pod
    (header-matched beta traffic reaches v2 whatever the weight)."""
    w = svc.rollout.canary_weight
    lo = max(1, math.ceil(svc.replicas_min * w / 100))
    return lo, max(lo, math.ceil(svc.replicas_max * w / 100))


def tracks(svc: ServicePlan) -> tuple[Track, ...]:
    """The Deployments a service's rollout strategy needs.

    rolling:    one Deployment named after the service, the spec's surge/unavailable;
    canary:     v1 (stable tag, the service's replica range) and v2 (canary tag, a share of it);
                Istio splits traffic between them by header and weight;
    blue-green: blue and green, both full size so the switch is instant; the Service selects the
                live colour.
    """
    ro = svc.rollout
    name = svc.name
    if ro.type == "rolling":
        return (Track(name, "stable", name, svc.tag, svc.replicas_min, svc.replicas_max,
                      percent(ro.max_surge, True), percent(ro.max_unavailable, False), True),)
    if ro.type == "canary":
        lo, hi = canary_replicas(svc)
        return (
            Track(name, "v1", f"{name}-v1", svc.tag, svc.replicas_min, svc.replicas_max,
                  DEFAULT_SURGE, DEFAULT_UNAVAILABLE, True),
            Track(name, "v2", f"{name}-v2", ro.canary_image_tag or svc.tag, lo, hi,
                  DEFAULT_SURGE, DEFAULT_UNAVAILABLE, True),
        )
    tags = {"blue": ro.blue_image_tag or svc.tag, "green": ro.green_image_tag or svc.tag}
    return tuple(Track(name, colour, f"{name}-{colour}", tags[colour], svc.replicas_min, svc.replicas_max,
                       DEFAULT_SURGE, DEFAULT_UNAVAILABLE, colour == ro.active)
                 for colour in ("blue", "green"))


def service_by_name(region: RegionPlan) -> dict[str, ServicePlan]:
    return {s.name: s for s in region.services}


def cluster_name(org: str, region: RegionPlan) -> str:
    """The region's cluster (EKS/GKE/AKS name and kubeconfig context), from the IR."""
    return region.cluster_name


# Most documents are the same in every region of a cloud (only images, replicas, data-store CIDRs
# and host names differ), and dumping YAML is the expensive part of both targets: each distinct
# document is dumped once per process and its text reused. Bounded, so a long-lived process does
# not grow it without limit.
_DUMPED: dict[bytes, str] = {}
_DUMPED_MAX = 10000


def dumped(doc) -> str:
    """Exactly compiler.render.dump_yaml(doc), memoised by the document's marshal form (types,
    values and dict order: everything the YAML text depends on)."""
    key = marshal.dumps(doc)
    text = _DUMPED.get(key)
    if text is None:
        if len(_DUMPED) >= _DUMPED_MAX:
            _DUMPED.clear()
        text = _DUMPED[key] = dump_yaml(doc)
    return text


def dump_document(doc, header: str) -> str:
    """Exactly dump_yaml(doc, header=header) (tests hold it to that)."""
    return header + dumped(doc)


def dump_documents(docs, header: str) -> str:
    """Exactly compiler.render.dump_yaml_all(docs, header=header) (tests hold it to that)."""
    return header + "---\n" + "---\n".join(dumped(d) for d in docs)
