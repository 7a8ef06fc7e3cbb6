"""Values for the traffic-path charts: Istio (base, istiod, ingress gateway), Kong, cluster-autoscaler.

Each function returns the values as data, using only keys of the pinned chart's values.yaml
(tests/targets/test_helm.py checks every key path against ../shared/reference/helm/).
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.targets._helm_charts import ISTIO_TAG
from compiler.targets._kubernetes_common import (ISTIO_NAMESPACE, KONG_PROXY_SERVICE,
                                                 MONITORING_NAMESPACE, OTEL_COLLECTOR_SERVICE, OTLP_GRPC_PORT,
                                                 SIDECAR_LIMITS, SIDECAR_REQUESTS, cluster_name, cpu_quantity,
                                                 memory_quantity)

RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def zone_spread(labels: dict) -> list[dict]:
    return [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": labels}}]


def istio_base(plan: PlatformPlan, region: RegionPlan) -> dict:
    return {"global": {"istioNamespace": ISTIO_NAMESPACE}, "defaultRevision": "default"}


def istiod(plan: PlatformPlan, region: RegionPlan) -> dict:
    mon = region.settings.monitoring
    mesh = {
        "enablePrometheusMerge": True,  # sidecars serve app + proxy metrics on 15020, outside mTLS
        "accessLogFile": "/dev/stdout",
        "accessLogEncoding": "JSON",
    }
    if mon.tracing:
        mesh["enableTracing"] = True
        mesh["extensionProviders"] = [{"name": "otel", "opentelemetry": {
            "service": f"{OTEL_COLLECTOR_SERVICE}.{MONITORING_NAMESPACE}.svc.cluster.local", "port": OTLP_GRPC_PORT}}]
        mesh["defaultProviders"] = {"tracing": ["otel"]}
    return {
        "autoscaleMin": 2,
        "autoscaleMax": 5,
        "traceSampling": float(mon.trace_sample_percent),  # percent of requests the proxies sample
        "topologySpreadConstraints": zone_spread({"app": "istiod"}),
        "meshConfig": mesh,
        "global": {
            # the values.yaml at the tag points at a testing registry; releases use docker.io/istio
            "hub": "docker.io/istio",
            "tag": ISTIO_TAG,
            "logAsJson": True,
            "proxy": {"resources": {
                "requests": {"cpu": cpu_quantity(SIDECAR_REQUESTS["cpu_m"]), "memory": memory_quantity(SIDECAR_REQUESTS["memory_mi"])},
                "limits": {"cpu": cpu_quantity(SIDECAR_LIMITS["cpu_m"]), "memory": memory_quantity(SIDECAR_LIMITS["memory_mi"])},
            }},
        },
    }


def istio_gateway(plan: PlatformPlan, region: RegionPlan) -> dict:
    """The public entry (a LoadBalancer Service); the kubernetes target's istio-ingress.yaml binds
    the public hosts to it and hands everything to Kong."""
    zones = len(region.zones)
    return {
        "autoscaling": {"enabled": True, "minReplicas": zones, "maxReplicas": zones * 4,
                        "targetCPUUtilizationPercentage": region.settings.autoscaling.target_cpu_utilization},
        "service": {"type": "LoadBalancer",
                    "externalTrafficPolicy": "Local"},  # keeps the client address for Kong's per-IP limits
        "podDisruptionBudget": {"minAvailable": 1},
        "topologySpreadConstraints": zone_spread({"istio": "ingressgateway"}),
    }


def kong(plan: PlatformPlan, region: RegionPlan, mesh: bool) -> dict:
    """Kong in DB-less mode. Its declarative config is the kong target's
    generated/kong/<region>/kong.yaml; the helmfile passes that file as `dblessConfig.config`
    (`set: [{name: dblessConfig.config, file: ...}]`, helm's --set-file), so the chart builds the
    ConfigMap and a config change rolls the Kong pods."""
    gw = region.settings.gateway
    values = {
        "env": {
            "database": "off",
            "nginx_worker_processes": "auto",
            # The client address: the last untrusted hop of X-Forwarded-For. Only private ranges
            # (load balancer, gateway pods) are trusted, so a client cannot spoof its own address.
            "trusted_ips": "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16",
            "real_ip_header": "X-Forwarded-For",
            "real_ip_recursive": "on",
        },
        "ingressController": {"enabled": False},  # DB-less from the generated file, no controller
        "admin": {"enabled": False},
        "proxy": {"type": "ClusterIP" if mesh else "LoadBalancer", "nameOverride": KONG_PROXY_SERVICE,
                  "tls": {"enabled": False}},
        "replicaCount": gw.replicas,
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
        "topologySpreadConstraints": zone_spread({"app.kubernetes.io/name": "kong"}),
        "resources": {"requests": {"cpu": "1000m", "memory": "1Gi"}, "limits": {"cpu": "2000m", "memory": "2Gi"}},
        "serviceMonitor": {"enabled": True},  # /metrics on the status port (prometheus plugin)
        "podLabels": {"app.kubernetes.io/part-of": region.tags["org"]},
    }
    if mesh:
        # In the mesh so the canary VirtualServices and strict mTLS apply to gateway traffic; the
        # sidecar also takes the ingress gateway's mTLS on the proxy port (the chart's default
        # excludes inbound ports, which would leave mTLS bytes on Kong's plain HTTP port).
        values["podLabels"]["sidecar.istio.io/inject"] = "true"
        values["podAnnotations"] = {"traffic.sidecar.istio.io/includeInboundPorts": "*"}
    return values


def cluster_autoscaler(plan: PlatformPlan, region: RegionPlan) -> dict:
    """EKS only: GKE and AKS scale node pools with their built-in autoscaler (Terraform sets each
    pool's bounds). Node groups are discovered by tag; the bounds are those Terraform put on them
    from the spec's node pools. IAM comes from EKS Pod Identity on the service account below."""
    name = cluster_name(plan.spec.organization.name, region)
    return {
        "cloudProvider": "aws",
        "awsRegion": region.cloud_region,
        "autoDiscovery": {"clusterName": name},
        "rbac": {"serviceAccount": {"name": "cluster-autoscaler"}},
        "extraArgs": {
            "balance-similar-node-groups": True,  # one node group per zone: keep zones even
            "expander": "least-waste",
            "skip-nodes-with-system-pods": False,
            "scale-down-utilization-threshold": 0.5,
        },
        "replicaCount": 2,
        "podDisruptionBudget": {"maxUnavailable": 1},
        "containerSecurityContext": RESTRICTED_CONTAINER,
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"cpu": "500m", "memory": "600Mi"}},
    }
