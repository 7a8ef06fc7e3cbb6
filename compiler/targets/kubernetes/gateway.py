"""Kong's side of the region's public entry, in Kong's namespace (the path is described in compiler/ir/edge.py).

- NetworkPolicies (with `security.network_policies`): Kong's pods admit the cloud load balancer on
  the TLS port, from where it connects, and Prometheus on the status and merged-metrics ports;
- Azure: the Ingress that AKS's Application Gateway ingress controller add-on (AGIC) turns into the
  gateway's listener, backend pool (Kong's pod IPs), HTTPS backend settings and probe: the
  load_balancer module hands those over to it after the first apply;
- AWS: the TargetGroupBinding that makes the AWS Load Balancer Controller (helm target) register Kong's pod IPs
  in the ALB's target group, and Kong's namespace labelled for the controller's pod readiness gates. The group's
  ARN is known only after `terraform apply`, so this is a template (`.yaml.tmpl`, which `kubectl apply -f <dir>/`
  skips) the deploy step fills in and applies between the controller's release and Kong's;
- GCP needs nothing here: GKE creates the NEGs from the Kong proxy Service's annotation (helm target);
- Azure, with peered Azure regions: the internal gateway of home-region routing, a LoadBalancer Service with AKS's
  internal annotation at the plan's pinned address (azure_internal_gateway).
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.edge import (AGIC_INGRESS_CLASS, AZURE_GATEWAY_CERTIFICATE,
                                         KONG_PROXY_TLS_PORT, POD_READINESS_GATE_LABEL, health_check_path, kong_proxy_tls,
                                         lb_hostnames, lb_target_name)
from compiler.targets.kubernetes.common import GATEWAY_NAMESPACE, KONG_POD_LABELS, KONG_PROXY_SERVICE, MANAGED_BY
from compiler.targets.kubernetes.policy import egress_rules, ingress_rules
from compiler.targets.kubernetes.workloads import meta

KONG = "kong"  # Kong's name in region.wiring

TARGET_GROUP_ARN_VARIABLE = "KONG_TARGET_GROUP_ARN"  # the placeholder the deploy step substitutes
TARGET_GROUP_ARN_OUTPUT = "kong_target_group_arn"  # the AWS region root's output holding it
AGIC_REQUEST_TIMEOUT_SECONDS = 60  # as the load_balancer module's backend settings
AGIC = "appgw.ingress.kubernetes.io/"


def labels(region: RegionPlan) -> dict[str, str]:
    return {"app.kubernetes.io/name": "kong", "app.kubernetes.io/part-of": region.tags["org"],
            "app.kubernetes.io/managed-by": MANAGED_BY}


def network_policies(region: RegionPlan) -> list[dict]:
    """Kong's namespace: default deny both ways, then Kong's pods admit exactly the connections to them
    (the load balancer on the TLS port from where it connects, Prometheus) and open exactly the ones
    from them (the routed services on their pods' ports, DNS, and with the mesh istiod and the
    collector), all from region.wiring."""
    if not region.settings.security.network_policies:
        return []
    return [
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": meta("default-deny", GATEWAY_NAMESPACE, labels(region)),
         "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}},
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": meta(KONG_PROXY_SERVICE, GATEWAY_NAMESPACE, labels(region)),
         "spec": {"podSelector": {"matchLabels": dict(KONG_POD_LABELS)}, "policyTypes": ["Ingress", "Egress"],
                  "ingress": ingress_rules(region, KONG), "egress": egress_rules(region, KONG)}},
    ]


def agic_ingress_name(host: str) -> str:
    """The Ingress of one host: kong-proxy-<host with dots as dashes>."""
    return f"{KONG_PROXY_SERVICE}-{host.replace('.', '-')}"


def agic_ingresses(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    """Azure: the Application Gateway forwards every host it serves to Kong's pods over HTTPS, probes the
    health path there, keeps the Key Vault certificate Terraform put on it and verifies Kong's certificate
    (compiler/ir/edge.py, kong_proxy_tls) against the trusted root certificate the load_balancer module
    installs (Application Gateway v2 refuses an HTTPS backend it cannot verify; AGIC ignores an Ingress whose
    root is not installed). One Ingress per host: AGIC requires a backend host name with a trusted root
    (without one it picks the host name from the backend address, which Application Gateway does not support
    for IP members), and the backend host name is also the Host header Kong's routes match, so each host's
    backend settings name that host: SNI and Host are the host the request arrived for, a name of Kong's
    certificate. AGIC names probe and backend settings per Ingress, and the probe's host is the rule's."""
    tls = kong_proxy_tls(plan, region)
    backend = {"service": {"name": KONG_PROXY_SERVICE, "port": {"number": KONG_PROXY_TLS_PORT}}}
    out = []
    for host in lb_hostnames(plan, region):
        annotations = {
            AGIC + "backend-protocol": "https",
            AGIC + "backend-hostname": host,
            AGIC + "appgw-ssl-certificate": AZURE_GATEWAY_CERTIFICATE,
            AGIC + "appgw-trusted-root-certificate": tls.trusted_root,
            AGIC + "health-probe-path": health_check_path(plan),
            AGIC + "health-probe-port": str(KONG_PROXY_TLS_PORT),
            AGIC + "request-timeout": str(AGIC_REQUEST_TIMEOUT_SECONDS),
        }
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "metadata": meta(agic_ingress_name(host), GATEWAY_NAMESPACE, labels(region), annotations),
                    "spec": {"ingressClassName": AGIC_INGRESS_CLASS,
                             "rules": [{"host": host, "http": {"paths": [
                                 {"path": "/", "pathType": "Prefix", "backend": backend}]}}]}})
    return out


AZURE_LB = "service.beta.kubernetes.io/azure-load-balancer-"
INTERNAL_GATEWAY_SERVICE = "kong-internal-gateway"


def azure_internal_gateway(region: RegionPlan) -> dict | None:
    """Azure: the internal gateway of home-region routing (compiler/ir/network.py), as AKS builds one: a LoadBalancer
    Service with the internal annotation, so the cloud provider puts an internal Standard Load Balancer in the node
    subnet, at the address the plan pins there (Addressing.internal_gateway_ip, the address Terraform's private DNS
    record gateway.<region>.internal.<domain> names). It listens on the internal gateway's port and passes TCP to
    Kong's TLS port (TLS end to end to Kong, as the GCP gateway does), to the same pods as the public path.
    externalTrafficPolicy Local keeps the callers' addresses (the peered regions' Kong), which Kong's NetworkPolicy
    admits; loadBalancerSourceRanges make AKS open its NSG to exactly those. A separate Service, not the chart's
    proxy Service: that one stays ClusterIP on Kong's port for the Application Gateway."""
    into = [c for c in region.through("internal-gateway") if c.dest.kind == "internal-lb"]
    to_kong = [c for c in region.through("internal-gateway") if c.source.kind == "internal-lb" and c.dest.kind == "pods"]
    if region.cloud != "azure" or not into or not to_kong:
        return None
    front, back = into[0], to_kong[0]
    annotations = {AZURE_LB + "internal": "true", AZURE_LB + "ipv4": back.address}
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": meta(INTERNAL_GATEWAY_SERVICE, GATEWAY_NAMESPACE, labels(region), annotations),
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                     "selector": dict(back.dest.labels),
                     "ports": [{"name": "https", "protocol": "TCP", "port": front.dest_port, "targetPort": back.dest_port}],
                     "loadBalancerSourceRanges": sorted({x for c in into for x in c.source.cidrs})}}


def gateway_objects(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    """The objects of kong-gateway.yaml (empty: no file)."""
    docs = network_policies(region)
    if region.cloud == "azure":
        docs += agic_ingresses(plan, region)
        gateway = azure_internal_gateway(region)
        if gateway is not None:
            docs.append(gateway)
    return docs


def gateway_namespace(region: RegionPlan) -> dict:
    """AWS: Kong's namespace, labelled so the controller's pod webhook gates Kong's pods on the target group's health.
    Applied before Kong's release (helmfile's createNamespace then finds it and leaves the label), since the webhook
    gates only pods created after the label and the binding exist."""
    key, value = POD_READINESS_GATE_LABEL
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": GATEWAY_NAMESPACE, "labels": {**labels(region), key: value}}}


def target_group_binding(region: RegionPlan) -> dict:
    """AWS: Kong's pod IPs (the proxy Service's endpoints on the TLS port) in the ALB's target group.
    `targetGroupARN`, not `targetGroupName` (which the controller also reads): with a name, the
    controller fails to re-register targets on a rollout (kubernetes-sigs/aws-load-balancer-controller
    issue 4438), and Kong rolls on every configuration change."""
    return {"apiVersion": "elbv2.k8s.aws/v1beta1", "kind": "TargetGroupBinding",
            "metadata": meta(KONG_PROXY_SERVICE, GATEWAY_NAMESPACE, labels(region)),
            "spec": {"serviceRef": {"name": KONG_PROXY_SERVICE, "port": KONG_PROXY_TLS_PORT},
                     "targetGroupARN": "${" + TARGET_GROUP_ARN_VARIABLE + "}",
                     "targetType": "ip"}}


def target_group_binding_header(region: RegionPlan) -> str:
    """How the deploy step fills in and applies the binding (comment lines)."""
    tf_dir = f"generated/terraform/regions/{region.name}"
    lines = [
        f"TargetGroupBinding: Kong's pods in the ALB target group {lb_target_name(region)} (Terraform).",
        "A template: the target group's ARN exists only after `terraform apply`. Fill it in and apply:",
        f"  {TARGET_GROUP_ARN_VARIABLE}=$(terraform -chdir={tf_dir} output -raw {TARGET_GROUP_ARN_OUTPUT}) \\",
        f"    envsubst '${TARGET_GROUP_ARN_VARIABLE}' < generated/kubernetes/{region.name}/kong-target-group-binding.yaml.tmpl \\",
        f"    | kubectl --context {region.cluster_name} apply -f -",
        "Apply it after the AWS Load Balancer Controller's release and before Kong's (order: the header of",
        f"generated/helm/{region.name}/helmfile.yaml): the controller serves this kind, and gates only the Kong pods",
        "created after the binding and the namespace's readiness-gate label exist.",
    ]
    return "".join(f"# {line}\n" for line in lines)
