"""Values for the observability charts: kube-prometheus-stack, OpenTelemetry collector, Jaeger,
Fluent Bit. Logs and traces go to the region's Elasticsearch (the self-managed hosts of the IR)."""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.targets.helm.fluentbit import render_conf
from compiler.ir.names import NODE_EXPORTER_PORT, POSTGRES_EXPORTER_PORT, REDIS_EXPORTER_PORT
from compiler.targets.helm.platform import RESTRICTED_CONTAINER
from compiler.ir.names import MONITORING_NAMESPACE, OTLP_GRPC_PORT, OTLP_HTTP_PORT

JAEGER_SERVICE = "jaeger"  # jaeger `fullnameOverride`: one all-in-one Service taking OTLP
PROMETHEUS_STORAGE = "100Gi"  # per replica; the spec sets retention only
ELASTICSEARCH_PORT = 9200


def elasticsearch_urls(region: RegionPlan) -> list[str]:
    """The self-managed Elasticsearch nodes; empty when search is a managed service (its endpoint
    is Terraform's output, not in the IR)."""
    return [f"http://{h.fqdn}:{ELASTICSEARCH_PORT}" for h in region.hosts_in("elasticsearch")]


def _pod_scrape_job() -> dict:
    """Pods that carry prometheus.io/* annotations (the kubernetes target sets them; with the mesh
    the sidecar rewrites them to its merged-metrics port 15020)."""
    return {
        "job_name": "kubernetes-pods",
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep", "regex": "true"},
            {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"], "action": "replace",
             "target_label": "__metrics_path__", "regex": "(.+)"},
            {"source_labels": ["__address__", "__meta_kubernetes_pod_annotation_prometheus_io_port"], "action": "replace",
             "regex": "([^:]+)(?::\\d+)?;(\\d+)", "replacement": "$1:$2", "target_label": "__address__"},
            {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(app|version)"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


# The job each exporter port's targets go to (the monitoring target's data-tier alerts read these names).
SCRAPE_JOBS = {
    NODE_EXPORTER_PORT: "self-managed-hosts",
    POSTGRES_EXPORTER_PORT: "postgres-exporter",
    REDIS_EXPORTER_PORT: "redis-exporter",
}


def _host_scrape_jobs(region: RegionPlan) -> list[dict]:
    """The exporters on the self-managed hosts: every `prometheus` connection of region.wiring, a job
    per exporter port and a target group per host group (`group` tells a primary from a replica)."""
    group_of = {h.fqdn: h.group for h in region.hosts}
    jobs: dict[str, dict[str, list[str]]] = {}
    for c in region.through("prometheus"):
        job = jobs.setdefault(SCRAPE_JOBS.get(c.dest_port, f"exporter-{c.dest_port}"), {})
        for fqdn in c.dest.hosts:
            job.setdefault(group_of.get(fqdn, c.dest.host_group), []).append(f"{fqdn}:{c.dest_port}")
    return [{"job_name": name, "static_configs": [{"targets": targets, "labels": {"group": group}}
                                                  for group, targets in groups.items()]}
            for name, groups in jobs.items()]


def kube_prometheus_stack(plan: PlatformPlan, region: RegionPlan) -> dict:
    mon = region.settings.monitoring
    scrape = [_pod_scrape_job(), *_host_scrape_jobs(region)]
    values = {
        # EKS, GKE and AKS run the control plane: its components cannot be scraped from the cluster.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "alertmanager": {"enabled": mon.alertmanager},
        "grafana": {"enabled": mon.grafana},
        "prometheus": {"prometheusSpec": {
            "replicas": 2,
            "retention": f"{mon.prometheus_retention_days}d",
            "externalLabels": {"region": region.name, "cloud": region.cloud, "geo": region.geo},
            # pick up every ServiceMonitor/PodMonitor/PrometheusRule, not only this release's
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "podMonitorSelectorNilUsesHelmValues": False,
            "ruleSelectorNilUsesHelmValues": False,
            "storageSpec": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"],
                                                             "resources": {"requests": {"storage": PROMETHEUS_STORAGE}}}}},
            "additionalScrapeConfigs": scrape,
        }},
    }
    if mon.alertmanager:
        # stringConfig (set from generated/monitoring/<region>/alertmanager/alertmanager.yaml by the helmfile) is read
        # only with tplConfig; the receivers' keys come from this Secret, mounted under /etc/alertmanager/secrets/.
        values["alertmanager"]["tplConfig"] = True
        values["alertmanager"]["alertmanagerSpec"] = {"replicas": 2, "secrets": ["alertmanager-receivers"]}
    if mon.grafana:
        # the admin password comes from a Secret the deploy pipeline syncs, never a chart default
        values["grafana"]["admin"] = {"existingSecret": "grafana-admin"}
        values["grafana"]["defaultDashboardsTimezone"] = "utc"
    return values


def opentelemetry_collector(plan: PlatformPlan, region: RegionPlan) -> dict:
    """A gateway collector: services send OTLP here (OTEL_EXPORTER_OTLP_ENDPOINT in their
    Deployments, and the mesh's tracing provider); traces go on to Jaeger."""
    return {
        "mode": "deployment",
        "fullnameOverride": "otel-collector",
        "image": {"repository": "otel/opentelemetry-collector-k8s"},
        "replicaCount": 2,
        "presets": {"kubernetesAttributes": {"enabled": True}},
        "config": {
            # the region and cloud of every span are added here, once, rather than in each Deployment
            "processors": {"resource/region": {"attributes": [
                {"key": "cloud.provider", "value": region.cloud, "action": "upsert"},
                {"key": "cloud.region", "value": region.cloud_region, "action": "upsert"},
                {"key": "deployment.environment", "value": region.name, "action": "upsert"},
            ]}},
            "exporters": {"otlp/jaeger": {"endpoint": f"{JAEGER_SERVICE}.{MONITORING_NAMESPACE}.svc.cluster.local:{OTLP_GRPC_PORT}",
                                          "tls": {"insecure": True}}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["memory_limiter", "resource/region", "batch"],
                                                 "exporters": ["otlp/jaeger"]}}},
        },
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "2000m", "memory": "2Gi"}},
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
        "securityContext": RESTRICTED_CONTAINER,
    }


def jaeger(plan: PlatformPlan, region: RegionPlan) -> dict:
    """Jaeger v2 (chart 4.x) with its own config (`userconfig`): OTLP in, spans stored in the
    region's Elasticsearch, or in memory when the region has no self-managed search nodes."""
    urls = elasticsearch_urls(region)
    if urls:
        backend = {"elasticsearch": {"server_urls": urls, "indices": {"index_prefix": f"jaeger-{region.name}"}}}
    else:
        backend = {"memory": {"max_traces": 100000}}
    config = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {"traces": {"receivers": ["otlp"], "processors": ["batch"], "exporters": ["jaeger_storage_exporter"]}},
        },
        "extensions": {
            "healthcheckv2": {"use_v2": True, "http": {"endpoint": "0.0.0.0:13133"}},
            "jaeger_query": {"storage": {"traces": "primary_store"}},
            "jaeger_storage": {"backends": {"primary_store": backend}},
        },
        "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                                             "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"}}}},
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "primary_store"}},
    }
    values = {"fullnameOverride": JAEGER_SERVICE, "userconfig": config,
              "jaeger": {"replicas": 2 if urls else 1}}
    if urls:
        # index clean-up keeps traces as long as logs (monitoring.log_retention_days)
        values["storage"] = {"type": "elasticsearch", "elasticsearch": {"url": urls[0]}}
        values["esIndexCleaner"] = {"enabled": True, "numberOfDays": region.settings.monitoring.log_retention_days}
    return values


def fluent_bit(plan: PlatformPlan, region: RegionPlan) -> dict:
    """Container and kubelet logs to the region's Elasticsearch, each record tagged with its region.
    The `es` output takes one host; Elasticsearch forwards bulk requests to the other nodes, and
    Fluent Bit retries without limit while that node is down."""
    hosts = region.hosts_in("elasticsearch")
    records = [("region", region.name), ("cloud", region.cloud), ("geo", region.geo)]
    config = {"filters": render_conf("fluent-bit-filters.conf.j2", records=records)}
    if hosts:
        config["outputs"] = render_conf(
            "fluent-bit-outputs.conf.j2", host=hosts[0].fqdn, port=ELASTICSEARCH_PORT,
            outputs=[{"match": "kube.*", "prefix": f"logs-{region.name}"},
                     {"match": "host.*", "prefix": f"node-{region.name}"}])
    return {
        "serviceMonitor": {"enabled": True},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        "tolerations": [{"operator": "Exists"}],  # a DaemonSet: every node's logs, tainted GPU nodes too
        "config": config,
    }
