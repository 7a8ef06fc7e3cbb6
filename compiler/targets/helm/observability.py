"""Values for the observability charts: kube-prometheus-stack, OpenTelemetry collector, Jaeger,
Fluent Bit. Logs and traces go to the region's Elasticsearch (the self-managed hosts of the IR)."""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan, dr_watch, names
from compiler.ir.postgres_ha import standby_of
from compiler.targets.helm.fluentbit import render_conf
from compiler.ir.names import NODE_EXPORTER_PORT, POSTGRES_EXPORTER_PORT, REDIS_EXPORTER_PORT, REDIS_PLACED_ROLE_LABEL
from compiler.ir.names import ETCD_METRICS_PORT, ETCD_SCRAPE_JOB
from compiler.targets.helm.platform import KONG_CONTAINER, RESTRICTED_CONTAINER, amounts
from compiler.ir.names import GATEWAY_NAMESPACE
from compiler.ir.names import LOG_INDEX_PREFIXES, KUBE_PROXY_CLOUDS, OTEL_COLLECTOR_SERVICE, OTEL_PROMETHEUS_PORT, OTEL_PROMETHEUS_PORT_NAME
from compiler.ir.names import MONITORING_NAMESPACE, OTLP_GRPC_PORT, OTLP_HTTP_PORT
from compiler.ir.names import EBS_STORAGE_CLASS, STORAGE_CLASS_CLOUDS
from compiler.ir.names import (ALERTMANAGER_RECEIVER_KEYS, ALERTMANAGER_RECEIVERS_SECRET, ELASTICSEARCH_CLIENT_SECRETS,
                               GRAFANA_ADMIN_SECRET)

# Helper containers beside the sized components (config reloaders, Grafana's dashboard watcher, hook Jobs):
# small and fixed, so no platform pod runs BestEffort.
SIDECAR_SIZE = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "100m", "memory": "128Mi"}}
JAEGER_SERVICE = "jaeger"  # jaeger `fullnameOverride`: one all-in-one Service taking OTLP
PROMETHEUS_STORAGE_GIB = 100  # each replica's volume; the spec sets retention (days) only
PROMETHEUS_STORAGE = f"{PROMETHEUS_STORAGE_GIB}Gi"
# Prometheus stops (and with it every alert) when its volume fills, and the time retention alone bounds nothing: a
# burst of series fills 100Gi long before 15d. retentionSize (--storage.tsdb.retention.size) drops the oldest blocks
# past it; Prometheus deletes whole blocks, and the WAL, the head's chunks and a compaction's new block need room
# besides, so it is a share of the volume, not all of it (Prometheus's storage docs suggest at most 80-85 %).
PROMETHEUS_RETENTION_PERCENT = 85
# Where each Elasticsearch client's Secret (username, password, ca.crt; helm/secrets.py) is mounted.
ES_CREDENTIALS_DIR = {"fluent-bit": "/fluent-bit/etc/elasticsearch", "jaeger": "/etc/jaeger/elasticsearch"}
FLUENT_BIT_CONF_DIR = "/fluent-bit/etc/conf"  # the chart mounts config.* and config.extraFiles here
ES_UPSTREAM_FILE = "elasticsearch-upstream.conf"


def elasticsearch_nodes(region: RegionPlan, client: str) -> tuple[list[str], int]:
    """(node FQDNs, port) of the client's connection to the self-managed Elasticsearch (region.wiring,
    `<client> -> elasticsearch`); ([], 0) when search is a managed service (its endpoint is Terraform's
    output, not in the IR)."""
    for c in region.connections_from(client):
        if c.dest.name == "elasticsearch" and c.dest.kind == "hosts":
            return list(c.dest.hosts), c.dest_port
    return [], 0


def elasticsearch_urls(region: RegionPlan, client: str = "jaeger") -> list[str]:
    """Every node, over HTTPS: Elasticsearch serves its HTTP API with TLS from the internal CA only."""
    nodes, port = elasticsearch_nodes(region, client)
    return [f"https://{n}:{port}" for n in nodes]


def _secret_env(name: str, secret: str, key: str) -> dict:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


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
    ETCD_METRICS_PORT: ETCD_SCRAPE_JOB,  # the etcd members' metrics listener (compiler/ir/names.py)
}


def _target_labels(host) -> dict:
    """A host's scrape labels: its group (which tells a PostgreSQL primary from a replica), and for a Redis node the
    role the topology placed it in (a failover can change the role it serves, never this label)."""
    labels = {"group": host.group}
    if host.group == "redis_cluster":
        labels[REDIS_PLACED_ROLE_LABEL] = "replica" if host.replica_of else "primary"
    return labels


def _host_scrape_jobs(region: RegionPlan) -> list[dict]:
    """The exporters on the self-managed hosts: every `prometheus` connection of region.wiring, a job
    per exporter port and a target group per distinct set of labels (_target_labels). The probes of the DR standby
    clusters the region runs have jobs of their own (_standby_probe_jobs)."""
    host_of = {h.fqdn: h for h in region.hosts}
    jobs: dict[str, dict[tuple, list[str]]] = {}
    for c in region.through("prometheus"):
        if standby_of(c.dest.name):
            continue
        job = jobs.setdefault(SCRAPE_JOBS.get(c.dest_port, f"exporter-{c.dest_port}"), {})
        for fqdn in c.dest.hosts:
            host = host_of.get(fqdn)
            labels = _target_labels(host) if host else {"group": c.dest.host_group}
            job.setdefault(tuple(labels.items()), []).append(f"{fqdn}:{c.dest_port}")
    return [{"job_name": name, "static_configs": [{"targets": targets, "labels": dict(labels)}
                                                  for labels, targets in groups.items()]}
            for name, groups in jobs.items()]


def _standby_probe_jobs(region: RegionPlan) -> list[dict]:
    """A job per DR standby cluster the region runs (compiler/ir/dr_watch.py): its wiring connection's hosts, through
    postgres_exporter's /probe with the connection's address (the DSN of the standby's own port) as the target, and
    only the series the DR alert reads kept (the standby's others would mix into the region's own data-tier alerts)."""
    out = []
    for c in region.through("prometheus"):
        source = standby_of(c.dest.name)
        if not source:
            continue
        out.append({
            "job_name": dr_watch.scrape_job(source),
            "metrics_path": dr_watch.PROBE_PATH,
            "params": {"target": [c.address]},
            "static_configs": [{"targets": [f"{fqdn}:{c.dest_port}" for fqdn in c.dest.hosts],
                                "labels": {"group": c.dest.host_group, "standby_of": source}}],
            "metric_relabel_configs": [{"source_labels": ["__name__"], "action": "keep",
                                        "regex": "|".join(dr_watch.KEEP_METRICS)}],
        })
    return out


def _collector_scrape_job(region: RegionPlan) -> list[dict]:
    """The collector's prometheus exporter (the services' OTLP metrics), when the wiring has that connection:
    its Service's endpoints on the exporter's port. honor_labels keeps the exporter's `job` (the service name)."""
    if not any(c.dest.name == OTEL_COLLECTOR_SERVICE and c.dest_port == OTEL_PROMETHEUS_PORT
               for c in region.connections_from("prometheus")):
        return []
    return [{
        "job_name": "otel-collector",
        "honor_labels": True,
        "kubernetes_sd_configs": [{"role": "endpoints", "namespaces": {"names": [MONITORING_NAMESPACE]}}],
        "relabel_configs": [
            {"source_labels": ["__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"],
             "action": "keep", "regex": f"{OTEL_COLLECTOR_SERVICE};{OTEL_PROMETHEUS_PORT_NAME}"},
        ],
    }]


def prometheus_claim(region: RegionPlan) -> dict:
    """Each Prometheus replica's PersistentVolumeClaim spec. The stack's only claim: Alertmanager keeps its state in
    an emptyDir (alertmanagerSpec.storage unset), Grafana has persistence off, Jaeger writes to Elasticsearch. On
    EKS it names the kubernetes target's StorageClass: the cluster has no default one to fall back on."""
    spec = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": PROMETHEUS_STORAGE}}}
    if region.cloud in STORAGE_CLASS_CLOUDS:
        spec["storageClassName"] = EBS_STORAGE_CLASS
    return spec


def prometheus_retention_size(volume_gib: int = PROMETHEUS_STORAGE_GIB) -> str:
    """PROMETHEUS_RETENTION_PERCENT of the volume, in the base-2 units the Prometheus CRD's ByteSize pattern and
    Prometheus's --storage.tsdb.retention.size both take (`85GiB`, else `MiB`)."""
    mib = volume_gib * 1024 * PROMETHEUS_RETENTION_PERCENT // 100
    return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib}MiB"


def kube_prometheus_stack(plan: PlatformPlan, region: RegionPlan) -> dict:
    mon = region.settings.monitoring
    size = mon.resources
    scrape = [_pod_scrape_job(), *_collector_scrape_job(region), *_host_scrape_jobs(region), *_standby_probe_jobs(region)]
    values = {
        # EKS, GKE and AKS run the control plane: its components cannot be scraped from the cluster.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        # kube-proxy runs only where the cluster has one (GKE Dataplane V2 and AKS Cilium replace it): elsewhere
        # its ServiceMonitor finds nothing and KubeProxyDown fires forever
        "kubeProxy": {"enabled": region.cloud in KUBE_PROXY_CLOUDS},
        # the stack's KubeHpaMaxedOut fires forever on an HPA with min = max (a small canary, a small region's
        # gateway); the monitoring target's HpaAtMaximum replaces it for HPAs that can scale
        "defaultRules": {"disabled": {"KubeHpaMaxedOut": True}},
        "alertmanager": {"enabled": mon.alertmanager},
        "grafana": {"enabled": mon.grafana},
        "prometheusOperator": {"resources": amounts(size["prometheus-operator"]),
                               # the config-reloader sidecar in the Prometheus and Alertmanager pods
                               "prometheusConfigReloader": {"resources": SIDECAR_SIZE},
                               # the Job that patches the admission webhooks' certificates
                               "admissionWebhooks": {"patch": {"resources": SIDECAR_SIZE}}},
        "kube-state-metrics": {"resources": amounts(size["kube-state-metrics"])},
        "prometheus-node-exporter": {"resources": amounts(size["node-exporter"])},
        "prometheus": {"prometheusSpec": {
            "replicas": 2,
            "resources": amounts(size["prometheus"]),
            "retention": f"{mon.prometheus_retention_days}d",
            # whichever is reached first: a full volume stops Prometheus (PROMETHEUS_RETENTION_PERCENT)
            "retentionSize": prometheus_retention_size(),
            "externalLabels": {"region": region.name, "cloud": region.cloud, "geo": region.geo},
            # pick up every ServiceMonitor/PodMonitor/PrometheusRule, not only this release's
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "podMonitorSelectorNilUsesHelmValues": False,
            "ruleSelectorNilUsesHelmValues": False,
            "storageSpec": {"volumeClaimTemplate": {"spec": prometheus_claim(region)}},
            "additionalScrapeConfigs": scrape,
        }},
    }
    if mon.alertmanager:
        # stringConfig (set from generated/monitoring/<region>/alertmanager/alertmanager.yaml by the helmfile) is read
        # only with tplConfig; the receivers' keys come from this Secret, mounted under /etc/alertmanager/secrets/.
        values["alertmanager"]["tplConfig"] = True
        values["alertmanager"]["alertmanagerSpec"] = {"replicas": 2, "resources": amounts(size["alertmanager"])}
        if any(getattr(mon.alert_receivers, f) for f in ALERTMANAGER_RECEIVER_KEYS):
            # mounted only when a receiver has a key: a listed Secret that does not exist keeps Alertmanager from starting
            values["alertmanager"]["alertmanagerSpec"]["secrets"] = [ALERTMANAGER_RECEIVERS_SECRET]
    if mon.grafana:
        if mon.grafana_admin_password:
            # the admin login comes from the Secret ESO syncs from the spec's reference (helm/secrets.py);
            # without a reference the chart generates a random password into its own Secret
            values["grafana"]["admin"] = {"existingSecret": GRAFANA_ADMIN_SECRET}
        values["grafana"]["defaultDashboardsTimezone"] = "utc"
        values["grafana"]["resources"] = amounts(size["grafana"])
        values["grafana"]["sidecar"] = {"resources": SIDECAR_SIZE}  # the dashboards/datasources watcher
    return values


def opentelemetry_collector(plan: PlatformPlan, region: RegionPlan) -> dict:
    """A gateway collector: services send OTLP here (OTEL_EXPORTER_OTLP_ENDPOINT in their
    Deployments, and the mesh's tracing provider); traces go on to Jaeger, metrics out of a prometheus
    exporter Prometheus scrapes (the contrib image: the k8s distribution has no prometheus exporter)."""
    return {
        "mode": "deployment",
        "fullnameOverride": OTEL_COLLECTOR_SERVICE,
        "image": {"repository": "otel/opentelemetry-collector-contrib"},
        "ports": {OTEL_PROMETHEUS_PORT_NAME: {"enabled": True, "containerPort": OTEL_PROMETHEUS_PORT,
                                              "servicePort": OTEL_PROMETHEUS_PORT, "protocol": "TCP"}},
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
                                          "tls": {"insecure": True}},
                          # Prometheus adds region, cloud and geo itself (externalLabels); series of a pod that
                          # stopped sending leave after 5 minutes
                          "prometheus": {"endpoint": f"0.0.0.0:{OTEL_PROMETHEUS_PORT}", "metric_expiration": "5m"}},
            "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["memory_limiter", "resource/region", "batch"],
                                                 "exporters": ["otlp/jaeger"]},
                                      "metrics": {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                                                  "exporters": ["prometheus"]}}},
        },
        "resources": amounts(region.settings.monitoring.resources["otel-collector"]),
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
        "securityContext": RESTRICTED_CONTAINER,
    }


def jaeger_index_prefix(region: RegionPlan) -> str:
    """Jaeger's index prefix (compiler/ir/names.py): its indices are <prefix>-jaeger-span-<date> and
    <prefix>-jaeger-service-<date>; the ansible target grants Jaeger's user exactly those."""
    return names.jaeger_index_prefix(region.name)


def jaeger(plan: PlatformPlan, region: RegionPlan) -> dict:
    """Jaeger v2 (chart 4.x) with its own config (`userconfig`): OTLP in, spans stored in the
    region's Elasticsearch, or in memory when the region has no self-managed search nodes."""
    urls = elasticsearch_urls(region, "jaeger")
    creds = ES_CREDENTIALS_DIR["jaeger"]
    secret = ELASTICSEARCH_CLIENT_SECRETS["jaeger"]
    if urls:
        # every node (the client spreads requests and fails over), TLS verified against the internal CA,
        # Jaeger's own Elasticsearch user; the password file is re-read when the Secret rotates
        backend = {"elasticsearch": {"server_urls": urls, "indices": {"index_prefix": jaeger_index_prefix(region)},
                                     "auth": {"basic": {"username": "${env:ES_USERNAME}",
                                                        "password_file": f"{creds}/password"}},
                                     "tls": {"insecure": False, "ca_file": f"{creds}/ca.crt"}}}
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
    size = region.settings.monitoring.resources
    values = {"fullnameOverride": JAEGER_SERVICE, "userconfig": config,
              "jaeger": {"replicas": 2 if urls else 1, "resources": amounts(size["jaeger"])}}
    if urls:
        volume = {"name": "elasticsearch", "secret": {"secretName": secret, "defaultMode": 0o440}}
        values["jaeger"].update({
            # the chart's Deployment is Recreate unless told otherwise (jaeger 4.11.1 jaeger-deploy.yaml): every
            # change to the pods stopped both replicas before starting any, and the collectors' spans had nowhere to
            # go. With the traces in Elasticsearch, old and new pods can serve side by side.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "extraEnv": [_secret_env("ES_USERNAME", secret, "username")],
            "extraVolumes": [volume],
            "extraVolumeMounts": [{"name": "elasticsearch", "mountPath": creds, "readOnly": True}],
        })
        # index clean-up keeps traces as long as logs (monitoring.log_retention_days); the cleaner
        # (jaeger-es-index-cleaner) takes the same user and CA from its environment
        values["storage"] = {"type": "elasticsearch", "elasticsearch": {"url": urls[0]}}
        values["esIndexCleaner"] = {
            "enabled": True, "numberOfDays": region.settings.monitoring.log_retention_days,
            "extraEnv": [_secret_env("ES_USERNAME", secret, "username"), _secret_env("ES_PASSWORD", secret, "password"),
                         {"name": "ES_TLS_ENABLED", "value": "true"}, {"name": "ES_TLS_CA", "value": f"{creds}/ca.crt"},
                         # the storage's index prefix: without it the cleaner looks for jaeger-span-* and deletes nothing
                         {"name": "INDEX_PREFIX", "value": jaeger_index_prefix(region)}],
            "resources": amounts(size["es-index-cleaner"]),
            "extraSecretMounts": [{"name": "elasticsearch", "secretName": secret, "mountPath": creds, "readOnly": True}],
        }
    return values


# Kong's access line (kong_log_format, Kong/kong kong/templates/nginx_kong.lua at 3.9.3): address, user, [time],
# "request line", status, ... A status of 100-399 is dropped; any line this does not match (another format, a user
# name with a blank) is kept.
KONG_SUCCESS_LINE = r'^\S+ - \S+ \[[^\]]*\] "[^"]*" [1-3][0-9][0-9]\s'


def kong_access_drops(region: RegionPlan) -> list[dict]:
    """With monitoring.gateway_access_log `errors`: a grep filter, ahead of the kubernetes filter, that drops Kong's
    access lines of 1xx-3xx responses from its proxy container's log (tail tag kube.var.log.containers.<pod>_<namespace>_
    <container>-<id>.log), so only failed requests reach Elasticsearch (compiler/ir/log_volume.py counts them)."""
    if region.settings.monitoring.gateway_access_log != "errors":
        return []
    return [{"match": f"kube.*_{GATEWAY_NAMESPACE}_{KONG_CONTAINER}-*", "key": "log", "regex": KONG_SUCCESS_LINE}]


def fluent_bit(plan: PlatformPlan, region: RegionPlan) -> dict:
    """Container and kubelet logs to the region's Elasticsearch, each record tagged with its region.
    The `es` output takes one Host, so it names an Upstream file instead (config.extraFiles, mounted with
    the other config files) listing every node: Fluent Bit balances across them and skips one that is down.
    HTTPS verified against the internal CA, as Fluent Bit's own Elasticsearch user (its Secret, as
    environment variables the classic config expands)."""
    nodes, port = elasticsearch_nodes(region, "fluent-bit")
    records = [("region", region.name), ("cloud", region.cloud), ("geo", region.geo)]
    config = {"filters": render_conf("fluent-bit-filters.conf.j2", records=records, drops=kong_access_drops(region))}
    values = {
        "serviceMonitor": {"enabled": True},
        "resources": amounts(region.settings.monitoring.resources["fluent-bit"]),
        "tolerations": [{"operator": "Exists"}],  # a DaemonSet: every node's logs, tainted GPU nodes too
        "config": config,
    }
    if nodes:
        creds = ES_CREDENTIALS_DIR["fluent-bit"]
        secret = ELASTICSEARCH_CLIENT_SECRETS["fluent-bit"]
        ca = f"{creds}/ca.crt"
        config["extraFiles"] = {ES_UPSTREAM_FILE: render_conf(
            "fluent-bit-upstream.conf.j2", name="elasticsearch", port=port, ca_file=ca,
            nodes=[{"name": n.split(".")[0], "host": n} for n in nodes])}
        config["outputs"] = render_conf(
            "fluent-bit-outputs.conf.j2", upstream=f"{FLUENT_BIT_CONF_DIR}/{ES_UPSTREAM_FILE}", ca_file=ca,
            outputs=[{"match": match, "prefix": names.log_index_prefix(prefix, region.name)} for match, prefix in LOG_INDEX_PREFIXES.items()])
        values["env"] = [_secret_env("ES_USERNAME", secret, "username"), _secret_env("ES_PASSWORD", secret, "password")]
        values["extraVolumes"] = [{"name": "elasticsearch", "secret": {"secretName": secret, "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]
        values["extraVolumeMounts"] = [{"name": "elasticsearch", "mountPath": creds, "readOnly": True}]
    return values

