"""Workload objects of one service: Deployments, Services, HPAs and PDBs (built as data)."""

from __future__ import annotations

import hashlib
import json

from compiler.ir.identity import AZURE_POD_LABEL
from compiler.ir.data_access import INTERNAL_CA_KEY
from compiler.ir.names import SERVICE_PORT_NAME
from compiler.ir import RegionPlan, ServicePlan
from compiler.targets.kubernetes.datastores import access_of, ca_volume, config_map, env_from, redis_ca_volume
from compiler.targets.kubernetes.common import (GPU_RESOURCE, MANAGED_BY,
                                                 MONITORING_NAMESPACE, NODE_POOL_LABEL, OTEL_COLLECTOR_SERVICE,
                                                 OTLP_GRPC_PORT, RUN_AS, SIDECAR_LIMITS, SIDECAR_REQUESTS,
                                                 Track, cpu_quantity, memory_quantity, mesh_enabled)

SECRET_SOURCES_ANNOTATION = "platformc.io/secret-sources"

# checkov findings that do not fit this platform, with the reason, as checkov reads them
# (`checkov.io/skipN: CKV_ID=reason`) on every Deployment.
DEPLOYMENT_CHECKOV_SKIPS = (
    ("CKV_K8S_43", "the spec pins image tags; digests are resolved by the registry at deploy time"),
    ("CKV_K8S_35", "the spec delivers secrets as environment variables (services.*.secrets) from a Secret, never inline values"),
)


def common_labels(svc: ServicePlan, region: RegionPlan) -> dict[str, str]:
    # No region label: a cluster is one region, and Prometheus adds the region to every series
    # (externalLabels, helm target). Objects that do not depend on the region are then the same
    # text in every region, which keeps `git diff generated/` small and lets them dump once.
    return {
        "app.kubernetes.io/name": svc.name,
        "app.kubernetes.io/part-of": region.tags["org"],
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "platformc.io/tier": svc.tier,
    }


def meta(name: str, namespace: str | None, labels: dict, annotations: dict | None = None) -> dict:
    m: dict = {"name": name}
    if namespace is not None:
        m["namespace"] = namespace
    m["labels"] = dict(labels)
    if annotations:
        m["annotations"] = dict(annotations)
    return m


def checkov_skips(skips) -> dict[str, str]:
    return {f"checkov.io/skip{i}": f"{check}={reason}" for i, (check, reason) in enumerate(skips, 1)}


def _amounts(a, with_gpu: bool) -> dict:
    out = {"cpu": a.cpu, "memory": a.memory}
    if with_gpu and a.gpu:
        out[GPU_RESOURCE] = str(a.gpu)
    return out


def resources(svc: ServicePlan) -> dict:
    # Extended resources (GPUs) are not overcommitted: Kubernetes takes the limit as the request,
    # so GPUs go in `limits` only.
    return {"requests": _amounts(svc.requests, False), "limits": _amounts(svc.limits, True)}


def tolerations(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    """Tolerate the taints of the service's node pool (`key=value:Effect`), plus the GPU taint some
    clouds put on GPU nodes themselves (GKE: nvidia.com/gpu=present:NoSchedule)."""
    out = []
    for taint in region.settings.kubernetes.node_pools[svc.node_pool].taints:
        kv, _, effect = taint.rpartition(":")
        key, eq, value = kv.partition("=")
        t = {"key": key, "operator": "Equal", "value": value} if eq else {"key": key, "operator": "Exists"}
        t["effect"] = effect
        out.append(t)
    if svc.gpu_pool and not any(t["key"] == GPU_RESOURCE for t in out):
        out.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    return out


def env(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    out = [{"name": k, "value": v} for k, v in svc.env.items()]
    # Secret values come from the Secret named after the service; its keys are the variable names
    # and the spec's references (vault:, aws-sm:, ...) are recorded on the Deployment for whoever
    # syncs the Secret (External Secrets, the deploy pipeline). No value ever appears here.
    out += [{"name": k, "valueFrom": {"secretKeyRef": {"name": svc.name, "key": k}}} for k in svc.secrets]
    mon = region.settings.monitoring
    if mon.tracing:
        out += [
            {"name": "OTEL_SERVICE_NAME", "value": svc.name},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT",
             "value": f"http://{OTEL_COLLECTOR_SERVICE}.{MONITORING_NAMESPACE}.svc.cluster.local:{OTLP_GRPC_PORT}"},
            # the endpoint is the collector's gRPC port, and the specification's default transport is http/protobuf
            # (OTel protocol/exporter.md): an SDK that follows it sent HTTP to the gRPC port and every span and metric
            # (the database-latency SLI among them) was lost
            {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "grpc"},
            {"name": "OTEL_TRACES_SAMPLER", "value": "parentbased_traceidratio"},
            {"name": "OTEL_TRACES_SAMPLER_ARG", "value": f"{mon.trace_sample_percent / 100:g}"},
            # metrics too (the database-latency SLI, db.client.operation.duration): the collector's prometheus
            # exporter is what Prometheus scrapes
            {"name": "OTEL_METRICS_EXPORTER", "value": "otlp"},
        ]  # the collector adds the region and cloud to every span (helm target)
    return out


def _probe(svc: ServicePlan, period: int, failures: int) -> dict:
    return {"httpGet": {"path": svc.health_path, "port": SERVICE_PORT_NAME}, "periodSeconds": period,
            "timeoutSeconds": 2, "failureThreshold": failures}


def zone_spread_policy(region: RegionPlan) -> str:
    """ScheduleAnyway on every cloud: the scheduler still prefers the emptier zone, and a hard constraint fails
    exactly when capacity matters. In a zone outage the dead zone's nodes still count as a domain while its pods,
    terminating, count as none, so with maxSkew 1 no replacement or scale-up may go to the healthy zones
    (kubernetes#116978; KEP-5980 is about this); a zone out of a node type (a GPU pool) caps the service likewise.
    On EKS and AKS, besides, each node pool is one scaling group over every zone, which the autoscaler cannot aim
    at the zone a pod waits for (names.ZONE_BLIND_AUTOSCALER_CLOUDS)."""
    return "ScheduleAnyway"


def _spread(track: Track, key: str, when: str) -> dict:
    return {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": track.labels},
            # count only pods of the same rollout revision, so a rollout is spread too
            "matchLabelKeys": ["pod-template-hash"]}


def pod_annotations(svc: ServicePlan, region: RegionPlan) -> dict:
    ann = {"kubectl.kubernetes.io/default-container": svc.name,
           "prometheus.io/scrape": "true", "prometheus.io/port": str(svc.port), "prometheus.io/path": "/metrics"}
    if mesh_enabled(region):
        ann.update({
            "sidecar.istio.io/proxyCPU": cpu_quantity(SIDECAR_REQUESTS["cpu_m"]),
            "sidecar.istio.io/proxyMemory": memory_quantity(SIDECAR_REQUESTS["memory_mi"]),
            "sidecar.istio.io/proxyCPULimit": cpu_quantity(SIDECAR_LIMITS["cpu_m"]),
            "sidecar.istio.io/proxyMemoryLimit": memory_quantity(SIDECAR_LIMITS["memory_mi"]),
        })
    return ann


CONFIG_CHECKSUM = "checksum/config"
SECRETS_CHECKSUM = "checksum/secrets"


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def secret_inputs(svc: ServicePlan, region: RegionPlan) -> list[list]:
    """What the pods' Secrets are made from, as platformc knows it: each Secret they read (env, envFrom, the CA
    volumes), by name, with every key and the reference its ExternalSecret reads it from (the helm target builds
    each ExternalSecret's data, store and target from exactly these). Never a value: platformc has none."""
    out = []
    if svc.secrets:
        out.append([svc.name, sorted(svc.secrets.items())])
    a = access_of(svc, region)
    if a is not None:
        if a.secrets:
            out.append([a.name, sorted(a.secrets)])
        for secret, ref in ((a.ca_secret, a.ca_ref), (a.redis_ca_secret, a.redis_ca_ref)):
            if secret and ref:
                out.append([secret, [[INTERNAL_CA_KEY, ref]]])
    return out


def env_secrets(svc: ServicePlan, region: RegionPlan) -> list[str]:
    """The Secrets the pods read as environment variables (secretKeyRef, envFrom), by name: a value rotated in
    one reaches a pod only when it restarts."""
    a = access_of(svc, region)
    return ([svc.name] if svc.secrets else []) + ([a.name] if a is not None and a.secrets else [])


def input_checksums(svc: ServicePlan, region: RegionPlan) -> dict[str, str]:
    """The pod template's checksums of what its pods read at start and never again (Helm's `checksum/config`
    convention): the `<service>-datastores` ConfigMap's data and the Secrets' references. Environment variables
    from a ConfigMap or Secret are set when the container starts, so a changed ConfigMap or reference reached no
    running pod and nothing rolled them: now the changed checksum changes the pod template, and `kubectl apply`
    rolls the Deployment. A value rotated in the store under the same reference changes neither (platformc never
    sees values): the region page's rotation steps restart the Deployments by name."""
    out = {}
    cm = config_map(svc, region)
    if cm:
        out[CONFIG_CHECKSUM] = _digest([cm[0]["metadata"]["name"], cm[0]["data"]])
    secrets = secret_inputs(svc, region)
    if secrets:
        out[SECRETS_CHECKSUM] = _digest(secrets)
    return out


def writable_volume(index: int) -> str:
    """The emptyDir behind the service's index-th `writable_paths` entry (the root filesystem is read-only)."""
    return f"writable-{index + 1}"


def identity_pod_labels(svc: ServicePlan, region: RegionPlan) -> dict[str, str]:
    """Azure: the workload identity webhook injects the identity's token and client id only into pods labelled
    azure.workload.identity/use=true (compiler/ir/identity.py); IRSA and GKE need no pod label."""
    ident = region.identity(svc.name)
    if ident is not None and ident.has_cloud_identity and ident.cloud == "azure":
        return {AZURE_POD_LABEL: "true"}
    return {}


def deployment(svc: ServicePlan, region: RegionPlan, track: Track) -> dict:
    labels = {**common_labels(svc, region), **track.labels}
    annotations = checkov_skips(DEPLOYMENT_CHECKOV_SKIPS)
    if svc.secrets:
        annotations[SECRET_SOURCES_ANNOTATION] = json.dumps(dict(svc.secrets), sort_keys=True)
    annotations["platformc.io/rollout"] = svc.rollout.type
    container = {
        "name": svc.name,
        "image": f"{svc.image}:{track.tag}",
        "imagePullPolicy": "Always",
        "ports": [{"name": SERVICE_PORT_NAME, "containerPort": svc.port, "protocol": "TCP"}],
        "env": env(svc, region),
        "resources": resources(svc),
        "startupProbe": _probe(svc, 5, 60),  # up to 5 minutes to start (model loading)
        "readinessProbe": _probe(svc, 5, 3),
        "livenessProbe": _probe(svc, 10, 3),
        # non-root user, group and seccomp come from the pod's securityContext
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         *({"name": writable_volume(i), "mountPath": path} for i, path in enumerate(svc.writable_paths))],
    }
    if not container["env"]:
        del container["env"]
    settings = env_from(svc, region)  # the data tier's connection settings and passwords (datastores.py)
    if settings:
        container["envFrom"] = settings
    pod_spec = {
        "serviceAccountName": svc.name,
        "automountServiceAccountToken": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS, "fsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "nodeSelector": {NODE_POOL_LABEL: svc.node_pool},
        "topologySpreadConstraints": [
            _spread(track, "topology.kubernetes.io/zone", zone_spread_policy(region)),
            _spread(track, "kubernetes.io/hostname", "ScheduleAnyway"),
        ],
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
                    *({"name": writable_volume(i), "emptyDir": {"sizeLimit": "1Gi"}} for i in range(len(svc.writable_paths)))],
    }
    # the region's internal CA: PGSSLROOTCERT; the managed Redis server CA (GCP): REDIS_TLS_CA_FILE (datastores.py)
    for ca in (ca_volume(svc, region), redis_ca_volume(svc, region)):
        if ca:
            volume, mount = ca
            pod_spec["volumes"].append(volume)
            container["volumeMounts"].append(mount)
    tol = tolerations(svc, region)
    if tol:
        pod_spec["tolerations"] = tol
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(track.deployment, svc.namespace, labels, annotations),
        # No `replicas`: the track's HPA owns the count. With one here, every `kubectl apply` of the directory (a
        # version bump, a canary promotion) set the Deployment back to the HPA minimum, dropping a scaled-out
        # service to it at once (Kubernetes docs, "Migrating Deployments ... to horizontal autoscaling"). A new
        # Deployment starts at one pod and the HPA raises it to its minimum within a sync period.
        "spec": {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": track.labels},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": track.max_surge, "maxUnavailable": track.max_unavailable}},
            "template": {
                "metadata": {"labels": {**labels, **identity_pod_labels(svc, region)},
                             "annotations": {**pod_annotations(svc, region), **input_checksums(svc, region)}},
                "spec": pod_spec,
            },
        },
    }


def hpa(svc: ServicePlan, region: RegionPlan, track: Track) -> dict:
    a = region.settings.autoscaling

    def rules(r):
        return {"stabilizationWindowSeconds": r.stabilization_window_seconds,
                "policies": [{"type": p.type, "value": p.value, "periodSeconds": p.period_seconds} for p in r.policies]}

    def metric(name, target):
        return {"type": "Resource", "resource": {"name": name, "target": {"type": "Utilization", "averageUtilization": target}}}

    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(track.deployment, svc.namespace, {**common_labels(svc, region), **track.labels}),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": track.deployment},
            "minReplicas": track.replicas_min,
            "maxReplicas": track.replicas_max,
            "metrics": [metric("cpu", a.target_cpu_utilization), metric("memory", a.target_memory_utilization)],
            "behavior": {"scaleUp": rules(a.scale_up), "scaleDown": rules(a.scale_down)},
        },
    }


def pdb(svc: ServicePlan, region: RegionPlan, track: Track) -> dict:
    # A percentage scales with the HPA; Kubernetes rounds maxUnavailable up, so even a one-pod
    # track can be drained, and AlwaysAllow lets drains evict pods that are not ready anyway.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(track.deployment, svc.namespace, {**common_labels(svc, region), **track.labels}),
        "spec": {"maxUnavailable": "10%", "selector": {"matchLabels": track.labels},
                 "unhealthyPodEvictionPolicy": "AlwaysAllow"},
    }


def _service(name: str, svc: ServicePlan, region: RegionPlan, selector: dict) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, svc.namespace, common_labels(svc, region)),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            # `http` name and appProtocol tell Istio the protocol; the port equals the container port
            # so `dns_name:port` (what Kong targets) works with or without the mesh.
            "ports": [{"name": "http", "port": svc.port, "targetPort": SERVICE_PORT_NAME, "protocol": "TCP", "appProtocol": "http"}],
        },
    }


def services(svc: ServicePlan, region: RegionPlan, tracks: tuple[Track, ...]) -> list[dict]:
    """The Service named after the service (its dns_name); blue-green also gets `<name>-preview`
    on the idle colour for smoke tests before the switch."""
    if svc.rollout.type == "blue-green":
        live = next(t for t in tracks if t.live)
        idle = next(t for t in tracks if not t.live)
        return [_service(svc.name, svc, region, live.labels),
                _service(f"{svc.name}-preview", svc, region, idle.labels)]
    # rolling: the one track; canary: both subsets (Istio, or without a mesh the pod ratio, splits them)
    return [_service(svc.name, svc, region, {"app": svc.name})]
