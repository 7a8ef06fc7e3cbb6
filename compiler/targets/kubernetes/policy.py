"""Namespace-level objects of one service: Namespace, identity and RBAC, quotas, NetworkPolicies."""

from __future__ import annotations

from compiler.ir import RegionPlan, ServicePlan
from compiler.targets.kubernetes.common import (GPU_RESOURCE, SIDECAR_LIMITS, SIDECAR_REQUESTS, Track, cpu_quantity,
                                                 memory_quantity, mesh_enabled)
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
    """The service's ServiceAccount, annotated with its cloud identity (compiler/ir/identity.py) when it has one:
    `eks.amazonaws.com/role-arn` (IRSA) or `iam.gke.io/gcp-service-account` (GKE Workload Identity). On Azure the
    identity's client id exists only after `terraform apply`: `workload-identities.sh` (this directory) annotates
    the ServiceAccount with `azure.workload.identity/client-id` from the region root's output, and the pods carry
    `azure.workload.identity/use: "true"`.

    automountServiceAccountToken stays false everywhere: no service calls the Kubernetes API (the kubelet, not the
    pod's ServiceAccount, reads the Secret and ConfigMap its environment names), and none of the cloud identities
    needs the API token: the IRSA and Azure workload identity webhooks each project their own audience-bound token
    (`sts.amazonaws.com` / `api://AzureADTokenExchange`) into the pods they mutate, and GKE's metadata server
    vouches for the pod. So no Role is bound either: a Role for a ServiceAccount without a token would be inert,
    and with `security.rbac` the service's ServiceAccount holds no Kubernetes permission at all."""
    labels = common_labels(svc, region)
    meta_ = meta(svc.name, svc.namespace, labels)
    ident = region.identity(svc.name)
    note = ident.annotation if ident is not None else None
    if note and ident.cloud != "azure":
        meta_.setdefault("annotations", {})[note[0]] = note[1]
    return [{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta_, "automountServiceAccountToken": False}]


def quota_figures(svc: ServicePlan, region: RegionPlan, tracks: tuple[Track, ...]) -> dict[str, str]:
    """What the namespace may hold at most: every track at its HPA ceiling plus rollout surge and the pods still
    terminating (Track.max_pods), each pod with the service's requests/limits plus the sidecar's when the mesh is on."""
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


EGRESS, INGRESS = "networkpolicy-egress", "networkpolicy-ingress"


def policy_peer(peer) -> list[dict]:
    """A connection's other end as NetworkPolicy peers: pods by namespace and labels (the labels the
    wiring states; none: the whole namespace), anything else by its address ranges."""
    if peer.kind == "pods":
        out: dict = {"namespaceSelector": {"matchLabels": {NS_LABEL: peer.namespace}}}
        if peer.labels:
            out["podSelector"] = {"matchLabels": dict(peer.labels)}
        return [out]
    return [{"ipBlock": {"cidr": cidr}} for cidr in peer.cidrs]


def _peer_key(peer) -> tuple:
    """What policy_peer's output depends on, in order (equal keys, equal peers): the rules are grouped by it
    (it was repr() of the peers built for every connection, ~24,000 at 120 regions)."""
    if peer.kind == "pods":
        return ("pods", peer.namespace, tuple(peer.labels.items()))
    return ("cidrs", tuple(peer.cidrs))


def policy_port(c, direction: str) -> dict:
    """A connection's port in a rule. Ingress to a service's pods names the container port (c.dest_port_name, the
    name its Deployment declares): the policy then admits each pod on its own port, so a changed port lets the old
    pods keep their callers until the rollout replaces them. A number everywhere else: an egress rule's number is
    the destination's (a named egress port would resolve on the destination pods, which hosts, managed endpoints
    and Internet hosts are not), and Kong's and the sidecar's ports are the charts'."""
    if direction == INGRESS and c.dest_port_name:
        return {"protocol": c.protocol, "port": c.dest_port_name}
    return {"protocol": c.protocol, "port": c.dest_port}


def policy_rules(connections, direction: str) -> list[dict]:
    """One rule per peer (in wiring order), holding every port the connections to it use."""
    rules: dict = {}
    for c in connections:
        other = c.dest if direction == EGRESS else c.source
        key = _peer_key(other)
        rule = rules.get(key)
        if rule is None:
            rule = rules[key] = {"to" if direction == EGRESS else "from": policy_peer(other), "ports": []}
        port = policy_port(c, direction)
        if port not in rule["ports"]:
            rule["ports"].append(port)
    return list(rules.values())


def egress_rules(region: RegionPlan, name: str) -> list[dict]:
    return policy_rules([c for c in region.connections_from(name) if EGRESS in c.layers], EGRESS)


def ingress_rules(region: RegionPlan, name: str) -> list[dict]:
    return policy_rules([c for c in region.connections_to(name) if INGRESS in c.layers], INGRESS)


def network_policies(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    """Default deny for the namespace, then one policy allowing exactly the service's connections
    (region.wiring: callers, Kong and Prometheus in; peers, data stores, DNS, istiod, the collector and
    the Internet hosts it declares out)."""
    if not region.settings.security.network_policies:
        return []
    labels = common_labels(svc, region)
    deny = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": meta("default-deny", svc.namespace, labels),
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}
    allow = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": meta(svc.name, svc.namespace, labels),
             "spec": {"podSelector": {"matchLabels": {"app": svc.name}}, "policyTypes": ["Ingress", "Egress"],
                      "ingress": ingress_rules(region, svc.name), "egress": egress_rules(region, svc.name)}}
    return [deny, allow]
