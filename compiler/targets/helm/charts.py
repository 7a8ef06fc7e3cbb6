"""The platform charts, pinned.

Versions are the ones in ../shared/reference/helm/ (each chart's Chart.yaml `version`; the Istio
charts are published as the tag, 1.30.3, whatever their Chart.yaml placeholder says), so the
values this target writes are checked against exactly the defaults that chart version ships.
Repositories are the charts' official Helm repositories.
"""

from __future__ import annotations

from compiler.records import dataclass


@dataclass(frozen=True)
class Chart:
    key: str  # reference/helm/<key>/<version>/ and the values file name
    repo: str  # helmfile repository name
    url: str
    chart: str  # chart name inside the repository
    version: str
    app_version: str


REPOSITORIES = {
    "kong": "https://charts.konghq.com",
    "istio": "https://istio-release.storage.googleapis.com/charts",
    "prometheus-community": "https://prometheus-community.github.io/helm-charts",
    "open-telemetry": "https://open-telemetry.github.io/opentelemetry-helm-charts",
    "jaegertracing": "https://jaegertracing.github.io/helm-charts",
    "fluent": "https://fluent.github.io/helm-charts",
    "autoscaler": "https://kubernetes.github.io/autoscaler",
    "external-secrets": "https://charts.external-secrets.io",
    "nvidia": "https://nvidia.github.io/k8s-device-plugin",
    "eks": "https://aws.github.io/eks-charts",
}


def _chart(key, repo, chart, version, app_version) -> Chart:
    return Chart(key, repo, REPOSITORIES[repo], chart, version, app_version)


CHARTS = {c.key: c for c in (
    _chart("istio-base", "istio", "base", "1.30.3", "1.30.3"),
    _chart("istiod", "istio", "istiod", "1.30.3", "1.30.3"),
    _chart("kong", "kong", "kong", "3.4.1", "3.9"),
    _chart("kube-prometheus-stack", "prometheus-community", "kube-prometheus-stack", "88.5.3", "v0.93.1"),
    _chart("opentelemetry-collector", "open-telemetry", "opentelemetry-collector", "0.170.0", "0.158.0"),
    _chart("jaeger", "jaegertracing", "jaeger", "4.11.1", "2.19.0"),
    _chart("fluent-bit", "fluent", "fluent-bit", "0.58.1", "5.1.1"),
    _chart("cluster-autoscaler", "autoscaler", "cluster-autoscaler", "9.59.0", "1.35.0"),
    _chart("external-secrets", "external-secrets", "external-secrets", "2.9.0", "v2.9.0"),
    _chart("nvidia-device-plugin", "nvidia", "nvidia-device-plugin", "0.20.0", "0.20.0"),
    _chart("aws-load-balancer-controller", "eks", "aws-load-balancer-controller", "3.5.0", "v3.5.0"),
)}

# kube-prometheus-stack subcharts (versions its Chart.yaml pins): their sections are checked
# against their own values.
SUBCHARTS = {"kube-prometheus-stack": {"grafana": "grafana/12.11.1",
                                       "kube-state-metrics": "kube-state-metrics/8.4.0",
                                       "prometheus-node-exporter": "prometheus-node-exporter/4.56.1"}}

ISTIO_TAG = CHARTS["istiod"].version
