"""Kubernetes target: per region, one manifest file per service plus the mesh ingress.

generated/kubernetes/<region>/<service>.yaml   Namespace, ServiceAccount + RBAC, ResourceQuota,
    LimitRange, NetworkPolicies, PeerAuthentication, Deployment(s), HPA(s), PDB(s), Service(s) and,
    for canaries, the Istio DestinationRule + VirtualService. Namespace first, so the file applies
    on its own.
generated/kubernetes/<region>/istio-ingress.yaml   the public Gateway handing traffic to Kong.

Apply after the region's Helm releases (they install the Istio CRDs and the kong, monitoring and
istio-ingress namespaces): `kubectl apply -f generated/kubernetes/<region>/`.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan, ServicePlan
from compiler.render import banner
from compiler.targets._kubernetes_common import BANNER_SPEC, dump_documents, mesh_enabled, tracks
from compiler.targets._kubernetes_mesh import canary_routing, ingress, strict_mtls
from compiler.targets._kubernetes_policy import identity, namespace, network_policies, quotas
from compiler.targets._kubernetes_workloads import deployment, hpa, pdb, services

NAME = "kubernetes"


def _header(region: RegionPlan, what: str) -> str:
    return (banner("#", BANNER_SPEC)
            + f"# {what} in region {region.name} ({region.cloud} {region.cloud_region}).\n"
            + f"# Apply after `helmfile -f generated/helm/{region.name}/helmfile.yaml apply`.\n")


def service_objects(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    """Every object of one service, in apply order."""
    ts = tracks(svc)
    mesh = mesh_enabled(region)
    docs = [namespace(svc, region), *identity(svc, region), *quotas(svc, region, ts),
            *network_policies(svc, region)]
    if mesh:
        docs.append(strict_mtls(svc, region))
    docs += [deployment(svc, region, t) for t in ts]
    docs += [hpa(svc, region, t) for t in ts]
    docs += [pdb(svc, region, t) for t in ts]
    docs += services(svc, region, ts)
    if mesh and svc.rollout.type == "canary":
        docs += canary_routing(svc, region, ts)
    return docs


def emit_region(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    base = f"kubernetes/{region.name}"
    out = {f"{base}/{svc.name}.yaml": dump_documents(service_objects(svc, region), _header(region, f"Service {svc.name}"))
           for svc in region.services}
    if mesh_enabled(region):
        out[f"{base}/istio-ingress.yaml"] = dump_documents(ingress(plan, region), _header(region, "Public ingress"))
    return out


def _rollout_summary(svc: ServicePlan) -> str:
    ro = svc.rollout
    if ro.type == "canary":
        header = f", `{ro.header_match.name}: {ro.header_match.exact}` first" if ro.header_match else ""
        return f"canary v1/v2 {ro.stable_weight}/{ro.canary_weight}{header}"
    if ro.type == "blue-green":
        return f"blue-green, live: {ro.active}"
    return f"rolling (surge {ro.max_surge:g} %, unavailable {ro.max_unavailable:g} %)"


def docs_region(plan: PlatformPlan, region: RegionPlan) -> str:
    a = region.settings.autoscaling
    lines = [
        "## Kubernetes workloads",
        "",
        f"Manifests: `generated/kubernetes/{region.name}/`. HPAs target {a.target_cpu_utilization} % CPU and "
        f"{a.target_memory_utilization} % memory of the requests. Each Deployment is listed with its initial "
        "replicas (the HPA minimum) and its HPA bounds; resources are per pod.",
        "",
        "| service | namespace | node pool | deployments (replicas, HPA min-max) | requests | limits | rollout |",
        "|---|---|---|---|---|---|---|",
    ]
    for svc in region.services:
        deps = "<br>".join(f"`{t.deployment}` {t.replicas_min}, {t.replicas_min}-{t.replicas_max}" for t in tracks(svc))
        gpu = f", {svc.limits.gpu} GPU" if svc.limits.gpu else ""
        lines.append(f"| {svc.name} | `{svc.namespace}` | {svc.node_pool} | {deps} | "
                     f"{svc.requests.cpu} CPU, {svc.requests.memory} | {svc.limits.cpu} CPU, {svc.limits.memory}{gpu} | "
                     f"{_rollout_summary(svc)} |")
    return "\n".join(lines) + "\n"
