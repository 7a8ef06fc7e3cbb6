"""Names and small helpers shared by the kubernetes and helm targets.

The two targets meet in the cluster: the Helm releases create the gateway, mesh and monitoring
namespaces and services that the per-service manifests (NetworkPolicies, OTEL env, mesh routes)
point at. Every such name is defined once here, so the two outputs cannot drift apart.
"""

from __future__ import annotations

import math

from compiler.ir import RegionPlan, ServicePlan
from compiler.ir.rollout import DEFAULT_SURGE_PERCENT, DEFAULT_UNAVAILABLE_PERCENT, canary_replicas  # noqa: F401
from compiler.records import dataclass

from compiler.ir.names import (GATEWAY_NAMESPACE, ISTIO_METRICS_PORT, ISTIO_NAMESPACE, ISTIOD_XDS_PORT,  # noqa: F401
                               KONG_POD_LABELS, KONG_PROXY_SERVICE, KONG_RELEASE, KONG_STATUS_PORT, MONITORING_NAMESPACE,
                               NODE_POOL_LABEL, OTEL_COLLECTOR_SERVICE, OTLP_GRPC_PORT, OTLP_HTTP_PORT, SIDECAR_LIMITS,
                               SIDECAR_REQUESTS, SYSTEM_NAMESPACE)
from compiler.formats.quantity import cpu_quantity, memory_quantity  # noqa: F401
from compiler.render import dump_document, dump_documents, dumped  # noqa: F401

GPU_RESOURCE = "nvidia.com/gpu"


# Non-root identity every platform container runs as (checkov CKV_K8S_40 wants a UID >= 10000).
RUN_AS = 10001

MANAGED_BY = "platformc"
BANNER_SPEC = "platform.yaml"




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
        """Pods a quota must admit for this track in the middle of a rollout at the HPA ceiling: the ceiling, the
        surge, and the old pods still terminating. The controller deletes up to surge + unavailable old pods at a
        step, and a deleted pod counts against the quota until its grace period ends (kubernetes
        pkg/quota/v1/evaluator/core/pods.go): without them a rollout at peak waited on 'exceeded quota'. Kubernetes
        rounds a percentage surge up and a percentage unavailable down."""
        def count(value: str, up: bool) -> int:
            if not value.endswith("%"):
                return int(value)
            share = self.replicas_max * int(value[:-1]) / 100
            return math.ceil(share) if up else math.floor(share)
        surge, unavailable = count(self.max_surge, True), count(self.max_unavailable, False)
        return self.replicas_max + surge + (surge + unavailable)


DEFAULT_SURGE, DEFAULT_UNAVAILABLE = f"{DEFAULT_SURGE_PERCENT}%", f"{DEFAULT_UNAVAILABLE_PERCENT}%"


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
