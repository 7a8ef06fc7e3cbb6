"""Values for the traffic-path charts: Istio (base, istiod), Kong, cluster-autoscaler.

The public entry is the region's cloud load balancer (Terraform), which reaches Kong's pods
directly over HTTPS (compiler/ir/edge.py): no Istio ingress gateway, no LoadBalancer
Service.

Each function returns the values as data, using only keys of the pinned chart's values.yaml
(tests/targets/test_helm.py checks every key path against ../shared/reference/helm/).
"""

from __future__ import annotations

import json

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.identity import AWS_LOAD_BALANCER_CONTROLLER, CLUSTER_AUTOSCALER
from compiler.targets.helm.charts import ISTIO_TAG
from compiler.ir.edge import (KONG_PROXY_TLS_PORT, gke_neg_annotation, kong_proxy_tls, origin_response_timeout,
                              trusted_proxies)
from compiler.formats.quantity import cpu_quantity, memory_quantity
from compiler.ir.gateway import gateway_capacity
from compiler.ir.home_routing import GATEWAY_MAP_CONFIGMAP, GATEWAY_MAP_DIR, GATEWAY_MAP_MODULE, gateway_routes_homes
from compiler.ir.names import (DEVICE_PLUGIN_CLOUDS, KONG_JWT_PARSER_MODULE, NODE_POOL_LABEL, CLIENT_ADDRESS_HEADER, ISTIO_NAMESPACE, KONG_POD_LABELS, KONG_PROXY_SERVICE, MONITORING_NAMESPACE,
                               OTEL_COLLECTOR_SERVICE, OTLP_GRPC_PORT, SIDECAR_LIMITS, SIDECAR_REQUESTS)


def cluster_name(org: str, region: RegionPlan) -> str:
    return region.cluster_name

RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def zone_spread(labels: dict) -> list[dict]:
    # best effort on every cloud: the platform's own pods must never wait on a zone the autoscaler cannot aim at
    # (the services' rule, kubernetes target: DoNotSchedule only on GKE's per-zone instance groups)
    return [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": labels}}]


def amounts(res) -> dict:
    """A spec Resources as a container's `resources` (requests and limits, CPU and memory)."""
    return {"requests": {"cpu": res.requests.cpu, "memory": res.requests.memory},
            "limits": {"cpu": res.limits.cpu, "memory": res.limits.memory}}


KONG_CONTAINER = "proxy"  # the kong chart's proxy container


def istio_base(plan: PlatformPlan, region: RegionPlan) -> dict:
    return {"global": {"istioNamespace": ISTIO_NAMESPACE}, "defaultRevision": "default"}


def istiod(plan: PlatformPlan, region: RegionPlan) -> dict:
    mon = region.settings.monitoring
    mesh = {
        "enablePrometheusMerge": True,  # sidecars serve app + proxy metrics on 15020, outside mTLS
        # No accessLogFile: that would have every sidecar log every request. The kubernetes target's mesh-wide
        # Telemetry logs through the built-in `envoy` provider (stdout), 5xx and slow requests only
        # (compiler/ir/log_volume.py); the provider takes its JSON format from this encoding.
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


# The pod annotation that carries a per-proxy ProxyConfig (proxyMetadata: environment of the sidecar).
ISTIO_PROXY_CONFIG_ANNOTATION = "proxy.istio.io/config"


def kong(plan: PlatformPlan, region: RegionPlan, mesh: bool) -> dict:
    """Kong in DB-less mode. Its declarative config is the kong target's
    generated/kong/<region>/kong.yaml; the helmfile passes that file as `dblessConfig.config`
    (`set: [{name: dblessConfig.config, file: ...}]`, helm's --set-file), so the chart builds the
    ConfigMap and a config change rolls the Kong pods."""
    gw = region.settings.gateway
    cap = plan.spec.capacity
    gc = gateway_capacity(region, cap.requests_per_second, cap.peak_multiplier)
    a = region.settings.autoscaling
    drain = origin_response_timeout(region.settings)  # the longest a request in flight may still wait on Kong
    proxy = {
        # Never a LoadBalancer: the cloud load balancer (WAF attached) is the only public entry and
        # reaches the pods by IP (AWS target group, GCP NEGs, Azure Application Gateway).
        "type": "ClusterIP",
        "nameOverride": KONG_PROXY_SERVICE,
        # HTTPS only: the load balancers forward HTTPS, so no plain listener is left to reach by mistake.
        "http": {"enabled": False},
        # Service port = container port: GKE's NEG annotation names Service ports, the load balancers
        # target the container port; one number for both keeps them from drifting apart. On AWS and GCP Kong
        # serves its default (self-signed) certificate, which the ALB and Google's front ends accept (they do
        # not verify backends); Azure's Application Gateway does verify it: see below.
        "tls": {"enabled": True, "servicePort": KONG_PROXY_TLS_PORT, "containerPort": KONG_PROXY_TLS_PORT},
    }
    if region.cloud == "gcp":
        proxy["annotations"] = gke_neg_annotation(region)
    routes = gateway_routes_homes(plan)
    values = {
        "env": {
            "database": "off",
            # `auto` starts a worker per CPU of the node, not of the pod's limit: one per whole limit CPU instead
            "nginx_worker_processes": str(gc.worker_processes),
            # the canary header function (kong target, a post-function) reads the verified token with Kong's parser;
            # the home-routing pre-function looks the franchise's home up in the platform's map (below)
            "untrusted_lua_sandbox_requires": ",".join([KONG_JWT_PARSER_MODULE] + routes * [GATEWAY_MAP_MODULE]),
            # The client address: the header the edge sets to the viewer's address, believed only when
            # the peer is the region's load balancer (its source ranges, IR addressing: the ALB's public
            # subnets, the Application Gateway's subnet, Google's front ends) or a linked region's Kong
            # forwarding a request homed here (compiler/ir/edge.py). Not recursive: the header holds one
            # address, set by the edge, never a chain to walk.
            "trusted_ips": ",".join(trusted_proxies(region)),
            "real_ip_header": CLIENT_ADDRESS_HEADER,
            "real_ip_recursive": "off",
        },
        "ingressController": {"enabled": False},  # DB-less from the generated file, no controller
        "admin": {"enabled": False},
        "proxy": proxy,
        "replicaCount": gc.min_replicas,
        # From the spec's capacity: the region's share of the seed's rate at normal load (min) and at the peak
        # multiplier (max), gateway.rps_per_pod per pod at the CPU target (compiler/ir/gateway.py, rule R046).
        # The proxy container's own CPU, not the pod's: the mesh sidecar would dilute it.
        "autoscaling": {
            "enabled": True, "minReplicas": gc.min_replicas, "maxReplicas": gc.max_replicas,
            "metrics": [{"type": "ContainerResource", "containerResource": {
                "name": "cpu", "container": KONG_CONTAINER,
                "target": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization}}}],
            "behavior": {"scaleUp": _scaling(a.scale_up), "scaleDown": _scaling(a.scale_down)},
        },
        "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
        # A pod going away (scale-in, a config change rolling the pods, a node drained) drains first: `kong quit`
        # waits, so the load balancer deregisters it, then lets the requests in flight finish for up to --timeout
        # before it stops Kong by force (kong/cmd/quit.lua; 10 s by default). With the chart's 10 s and 30 s grace,
        # requests still inside Kong's upstream wait (gateway.read_timeout_ms) were cut off with 502s.
        "lifecycle": {"preStop": {"exec": {"command": [
            "kong", "quit", f"--wait={KONG_QUIT_WAIT_SECONDS}", f"--timeout={drain}"]}}},
        "terminationGracePeriodSeconds": KONG_QUIT_WAIT_SECONDS + drain + 10,
        "topologySpreadConstraints": zone_spread({"app.kubernetes.io/name": KONG_POD_LABELS["app.kubernetes.io/name"]}),
        "nodeSelector": {NODE_POOL_LABEL: gc.node_pool},
        "resources": amounts(gw.resources),
        # /metrics on the status port (prometheus plugin). honorLabels: Kong's series carry their own `service` (the
        # Kong service: what the SLO rules group by); without it the operator's target label `service` (the
        # Kubernetes Service, kong-proxy) won and Kong's became exported_service, so every per-service SLO was the
        # gateway's as a whole
        "serviceMonitor": {"enabled": True, "honorLabels": True},
        "podLabels": {"app.kubernetes.io/part-of": region.tags["org"]},
    }
    if mesh:
        # In the mesh for the way out: Kong's upstream calls go through the sidecar, so the canary and
        # blue-green VirtualServices and strict mTLS apply to gateway traffic.
        values["podLabels"]["sidecar.istio.io/inject"] = "true"
        # Nothing inbound goes through the sidecar (the chart's own default, stated here because the design
        # depends on it): Kong's only callers are the load balancer and Prometheus, never a mesh peer. The
        # load balancer's connection on the TLS port is its own TLS, not Istio mTLS: a STRICT
        # PeerAuthentication would refuse it, and PERMISSIVE would only pass it through as opaque TCP. An
        # empty include list disables inbound capture altogether, so no excludeInboundPorts is needed
        # (Istio reads that only when the include list is `*`).
        values["podAnnotations"] = {"traffic.sidecar.istio.io/includeInboundPorts": ""}
        # Kong's active health checks speak HTTP/1.0 (lua-resty-healthcheck: "GET %s HTTP/1.0"), which the sidecar's
        # outbound listener answers 426 unless the proxy's node metadata says HTTP10 (istio pilot listener.go:
        # AcceptHttp_10): a status in neither of Kong's lists, so the checks never marked anything unhealthy
        values["podAnnotations"][ISTIO_PROXY_CONFIG_ANNOTATION] = json.dumps(
            {"proxyMetadata": {"ISTIO_META_HTTP10": "1"}}, separators=(",", ":"))
    tls = kong_proxy_tls(plan, region)
    if tls is not None:
        # Azure: the certificate the Application Gateway verifies (compiler/ir/edge.py, kong_proxy_tls), the Secret ESO
        # writes, mounted by the chart at /etc/secrets/<name>/ and served on the proxy's TLS listener (kong.conf
        # ssl_cert / ssl_cert_key: the certificate and key of the proxy_listen TLS listeners)
        values["secretVolumes"] = [tls.secret]
        values["env"]["ssl_cert"] = tls.cert_path
        values["env"]["ssl_cert_key"] = tls.key_path
    if routes:
        # The home-region map (one chart for every region, compiler/targets/helm/home_routing.py) as a directory on
        # the chart's lua_package_path (/opt/?.lua). A new map rolls the pods through kong.yaml, which names its version.
        values["extraConfigMaps"] = [{"name": GATEWAY_MAP_CONFIGMAP, "mountPath": GATEWAY_MAP_DIR}]
    return values


# The chart's own wait before `kong quit` starts (values.yaml lifecycle.preStop): the endpoints' removal and the load
# balancer's deregistration reach every hop in front meanwhile.
KONG_QUIT_WAIT_SECONDS = 15


def _scaling(r) -> dict:
    return {"stabilizationWindowSeconds": r.stabilization_window_seconds,
            "policies": [{"type": p.type, "value": p.value, "periodSeconds": p.period_seconds} for p in r.policies]}


# cluster-autoscaler supports exactly the Kubernetes minor it is built for: the image follows the cluster's minor
# (the chart's default, v1.35.0, would run against 1.33). Latest patch per minor as published on
# registry.k8s.io/autoscaling (kubernetes/autoscaler releases; the k8s.io image promotions of 1.32.5 / 1.33.x /
# 1.34.x; 1.33 -> v1.33.5, 1.34 -> v1.34.4, 1.35 -> v1.35.1 as of 2026-07). A minor not listed gets its .0 release.
CLUSTER_AUTOSCALER_TAGS = {"1.32": "v1.32.5", "1.33": "v1.33.5", "1.34": "v1.34.4", "1.35": "v1.35.1"}


def cluster_autoscaler_tag(kubernetes_version: str) -> str:
    return CLUSTER_AUTOSCALER_TAGS.get(kubernetes_version, f"v{kubernetes_version}.0")


def cluster_autoscaler(plan: PlatformPlan, region: RegionPlan) -> dict:
    """EKS only: GKE and AKS scale node pools with their built-in autoscaler (Terraform sets each
    pool's bounds). Node groups are discovered by tag; the bounds are those Terraform put on them
    from the spec's node pools. AWS access: the IAM role of the IR's cluster-autoscaler identity
    (compiler/ir/identity.py), assumed through IRSA by the ServiceAccount below (Terraform's
    workload_identity module trusts exactly kube-system/cluster-autoscaler). Its image is the
    release built for the cluster's Kubernetes minor."""
    name = cluster_name(plan.spec.organization.name, region)
    sa = service_account(region, CLUSTER_AUTOSCALER, CLUSTER_AUTOSCALER)
    return {
        "cloudProvider": "aws",
        "awsRegion": region.cloud_region,
        "autoDiscovery": {"clusterName": name},
        "image": {"tag": cluster_autoscaler_tag(region.settings.kubernetes.version)},
        "rbac": {"serviceAccount": sa},
        "extraArgs": {
            # keeps similar groups even; each EKS node group spans every zone, so zone spread of the services is
            # ScheduleAnyway there (kubernetes target)
            "balance-similar-node-groups": True,
            "expander": "least-waste",
            "skip-nodes-with-system-pods": False,
            "scale-down-utilization-threshold": 0.5,
        },
        "replicaCount": 2,
        "podDisruptionBudget": {"maxUnavailable": 1},
        "containerSecurityContext": RESTRICTED_CONTAINER,
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"cpu": "500m", "memory": "600Mi"}},
    }


# The VPC's id exists only after `terraform apply`: helmfile renders the release's `.gotmpl` values file from this
# variable, which the deploy step sets from the region root's output (compiler/targets/helm __init__ header).
VPC_ID_VARIABLE = "AWS_VPC_ID"
VPC_ID_OUTPUT = "vpc_id"


def aws_load_balancer_controller(plan: PlatformPlan, region: RegionPlan) -> dict:
    """EKS: the AWS Load Balancer Controller, used for one thing: Kong's TargetGroupBinding (kubernetes target), which
    registers Kong's pod IPs in the ALB target group Terraform made. The nodes allow one IMDSv2 hop, so the pods cannot
    read the region and VPC from instance metadata: both are set (--aws-region, --aws-vpc-id; the id in the `.gotmpl`
    values file, see VPC_ID_VARIABLE). AWS access: the IAM role of the IR's identity, assumed through IRSA by the
    ServiceAccount below; its policy is upstream's TargetGroupBinding-only subset, so everything that would need more
    is switched off: no Service type LoadBalancer here (its mutating webhook would otherwise default every new one to
    this controller), no IngressClass, no Shield/WAF lookups."""
    sa = {"create": True, **service_account(region, AWS_LOAD_BALANCER_CONTROLLER, AWS_LOAD_BALANCER_CONTROLLER)}
    return {
        "clusterName": region.cluster_name,
        "region": region.cloud_region,
        "serviceAccount": sa,
        "replicaCount": 2,
        "podDisruptionBudget": {"maxUnavailable": 1},
        "enableServiceMutatorWebhook": False,
        "createIngressClassResource": False,
        "ingressClassParams": {"create": False},
        "enableShield": False,
        "enableWaf": False,
        "enableWafv2": False,
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
    }


def aws_load_balancer_controller_vpc() -> dict:
    """The `.gotmpl` values file's content: the VPC id, rendered by helmfile from VPC_ID_VARIABLE."""
    return {"vpcId": '{{ requiredEnv "' + VPC_ID_VARIABLE + '" }}'}


def service_account(region: RegionPlan, owner: str, name: str) -> dict:
    """A chart's ServiceAccount values: its name, annotated with the cloud identity of `owner` (compiler/ir/identity.py)
    where the annotation is known when compiling: the IRSA role or the Google service account. On Azure the client id
    exists only after `terraform apply`: kubernetes/<region>/workload-identities.sh annotates it then."""
    sa: dict = {"name": name}
    ident = region.identity(owner)
    if ident is not None and ident.annotation and ident.cloud != "azure":
        sa["annotations"] = {ident.annotation[0]: ident.annotation[1]}
    return sa


def gpu_pools(region: RegionPlan) -> list[str]:
    return sorted(n for n, p in region.settings.kubernetes.node_pools.items() if p.gpus)


def needs_device_plugin(region: RegionPlan) -> bool:
    """GPU pools on a cloud that leaves the NVIDIA device plugin to us (compiler/ir/names.py)."""
    return region.cloud in DEVICE_PLUGIN_CLOUDS and bool(gpu_pools(region))


def nvidia_device_plugin(plan: PlatformPlan, region: RegionPlan) -> dict:
    """The NVIDIA device plugin DaemonSet on the GPU pools: it advertises `nvidia.com/gpu` to the kubelet, without
    which no GPU pod schedules. The chart's default affinity asks for node-feature-discovery labels that nothing
    here sets (gfd/nfd off), so the pods select the GPU pools by the platform's node-pool label instead, and
    tolerate those pools' taints (plus the chart's own nvidia.com/gpu toleration)."""
    pools = gpu_pools(region)
    tolerations = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    for name in pools:
        for taint in region.settings.kubernetes.node_pools[name].taints:
            kv, _, effect = taint.rpartition(":")
            key, eq, value = kv.partition("=")
            t = {"key": key, "operator": "Equal", "value": value, "effect": effect} if eq else \
                {"key": key, "operator": "Exists", "effect": effect}
            if t not in tolerations and not (key == "nvidia.com/gpu" and effect == "NoSchedule"):
                tolerations.append(t)
    return {
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": NODE_POOL_LABEL, "operator": "In", "values": pools}]}]}}},
        "tolerations": tolerations,
        "failOnInitError": True,  # a GPU node whose driver is broken shows a crashing pod, not silently no GPUs
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
    }
