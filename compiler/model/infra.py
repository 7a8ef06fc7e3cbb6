"""Per-region infrastructure settings: network, Kubernetes, gateway, security, monitoring, backups."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import StringConstraints

from compiler.model.base import F, FD, Cidr, Model, Name, Port, PositiveInt, SecretRef, InstanceType
from compiler.model.services import ResourceAmounts, Resources


def _sizes(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Resources:
    return Resources(requests=ResourceAmounts(cpu=cpu, memory=memory), limits=ResourceAmounts(cpu=cpu_limit, memory=memory_limit))


class Network(Model):
    """The region's VPC / VNet."""

    zones: int = F(3, description="Availability zones the region spreads subnets and nodes across.", ge=2, le=6)
    private_subnet_prefix: int = F(19, description="Prefix length of each private subnet carved from the region CIDR.", ge=16, le=28)
    public_subnet_prefix: int = F(24, description="Prefix length of each public subnet carved from the region CIDR.", ge=16, le=28)
    nat_per_zone: bool = F(True, description="One NAT gateway per zone (no cross-zone egress dependency).")
    flow_logs: bool = F(True, description="Capture VPC flow logs.")
    flow_log_retention_days: PositiveInt = F(365, description="Flow-log retention in days.")
    admin_cidrs: list[Cidr] = FD(list, description="CIDRs allowed to reach the bastion over SSH/VPN (admin access).")


class NodePool(Model):
    """A Kubernetes node pool."""

    purpose: Literal["cpu-optimized", "memory-optimized", "gpu"] = F(description="What the pool's machines are optimised for.")
    vcpus: PositiveInt = F(description="vCPUs per node (capacity checks use it, less system reserve).")
    memory_gib: PositiveInt = F(description="Memory per node in GiB.")
    gpus: int = F(0, description="GPUs per node.", ge=0, le=16)
    instance_types: dict[Literal["aws", "gcp", "azure"], InstanceType] = F(description="Machine type per cloud.")
    min_nodes: int = F(description="Autoscaler floor.", ge=0, le=5000)
    max_nodes: int = F(description="Autoscaler ceiling.", ge=1, le=5000)
    spot: bool = F(False, description="Use spot/preemptible capacity (non-critical workloads; ~60 % cheaper).")
    taints: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9./_-]{0,252}(=[A-Za-z0-9._-]{0,63})?:(NoSchedule|PreferNoSchedule|NoExecute)$")]] = FD(
        list, description="Taints as `key=value:Effect`; GPU pools are tainted so only GPU pods land there.")
    disk_gib: PositiveInt = F(100, description="Boot disk per node in GiB.")


class Kubernetes(Model):
    """The region's Kubernetes cluster (EKS, GKE or AKS)."""

    version: str = F("1.33", description="Kubernetes minor version (Istio 1.30 supports 1.32-1.36, R025).", pattern=r"^1\.[0-9]{2}$")
    version_support: Literal["standard", "extended"] = F(
        "standard", description="What happens when `version` leaves the cloud's standard support (about 14 months after "
                                "its release there). `standard`: the cloud upgrades the cluster to the next minor version "
                                "(EKS upgrade policy STANDARD, GKE's REGULAR release channel, AKS's KubernetesOfficial "
                                "plan) and never charges for extended support; raise `version` before then, or the next "
                                "Terraform plan shows the upgrade as drift. `extended`: the cluster stays on its version "
                                "(EKS upgrade policy EXTENDED: up to 12 more months; GKE's EXTENDED channel: up to 24 "
                                "months from release) at the extended-support price, about six times the control plane's "
                                "($0.60 instead of $0.10 a cluster-hour), which `platformc cost` shows as the upper end of "
                                "the control plane's range. Refused on Azure (R063): AKS long-term support excludes the "
                                "Application Gateway ingress controller and KMS add-ons the platform's clusters run.")
    min_nodes: int = F(3, description="Cluster-wide node floor (sum of pool floors may not be lower); the default suits a "
                       "small cluster (the reference states its 50).", ge=1)
    max_nodes: int = F(100, description="Cluster-wide node ceiling (sum of pool ceilings may not be higher); the reference "
                       "states its 207.", ge=1)
    node_pools: dict[Name, NodePool] = F(description="Node pools by name.")
    system_reserved_percent: int = F(10, description="Node capacity reserved for the kubelet, system daemons and the mesh sidecar overhead.", ge=0, le=50)
    istio: bool = F(True, description="Run the Istio service mesh (mTLS, canary routing).")
    istio_version: str = F("1.30", description="Istio minor version; the Helm target pins the matching charts.", pattern=r"^1\.[0-9]{1,2}$")
    private_api_endpoint: bool = F(True, description="Keep the API server off the public internet.")
    api_allowed_cidrs: list[Cidr] = FD(list, description="CIDRs allowed to reach the API endpoint in addition to the VPC.")
    gke_security_group: Optional[str] = F(
        None, description="GCP only: the group of Google Groups for RBAC (GKE's authenticator_groups_config), so that "
                          "RBAC bindings may name Google Groups that are its members. GKE requires the name "
                          "`gke-security-groups@<domain>` and looks the group up when it creates the cluster: it must "
                          "exist in the domain's Google Workspace or Cloud Identity first. Unset: no Google Groups for "
                          "RBAC (bindings name users and service accounts).",
        pattern=r"^gke-security-groups@[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$", max_length=253)


class UpstreamHealthcheck(Model):
    """One side of an active health check (healthy or unhealthy thresholds)."""

    interval_seconds: int = F(5, description="Seconds between probes.", ge=0, le=65535)
    count: int = F(3, description="Probe results in a row that flip the target's state (successes when healthy, timeouts when unhealthy).", ge=0, le=255)


class Gateway(Model):
    """Kong API gateway."""

    requests_per_second: PositiveInt = F(1000, description="Sustained per-client request rate.")
    burst: PositiveInt = F(2000, description="Short burst a client may reach above the rate (must be >= the rate).")
    connect_timeout_ms: PositiveInt = F(10000, description="Upstream connect timeout.")
    read_timeout_ms: PositiveInt = F(60000, description="Upstream read timeout.")
    write_timeout_ms: PositiveInt = F(60000, description="Upstream write timeout.")
    load_balancing: Literal["consistent-hashing", "round-robin", "least-connections"] = F(
        "consistent-hashing", description="Upstream balancing algorithm.")
    hash_on_header: str = F("x-franchise-id", description="Header consistent hashing keys on (keeps a franchise on warm caches).", pattern=r"^[a-z0-9-]{1,64}$")
    healthy: UpstreamHealthcheck = FD(UpstreamHealthcheck, description="Active check: interval and successes that mark a target healthy.")
    unhealthy: UpstreamHealthcheck = FD(UpstreamHealthcheck, description="Active check: interval and timeouts that mark a target unhealthy.")
    request_size_limit_mb: PositiveInt = F(10, description="Largest request body accepted.")
    cors_origins: list[Annotated[str, StringConstraints(pattern=r"^(\*|https?://([a-z0-9-]+\.)+[a-z]{2,63}(:[0-9]{1,5})?)$")]] = FD(
        list, description="Origins allowed by CORS: `https://host[:port]` (or `*`); no regex, so none reaches Kong.")
    jwt_issuer: str = F(description="Issuer (`iss`) the JWT plugin trusts.", pattern=r"^https://[A-Za-z0-9./:_-]{1,200}$")
    jwt_public_key: SecretRef = F(description="Reference to the issuer's RSA public key.")
    replicas: PositiveInt = F(3, description="Fewest Kong proxy pods per region (the gateway HPA's floor; one per zone at least).")
    rps_per_pod: PositiveInt = F(5000, description="Requests per second one Kong pod serves at the HPA's CPU target with the "
                                 "platform's plugins (a load-test figure); the gateway HPA is sized from it, the region's "
                                 "share of `capacity.requests_per_second` and `capacity.peak_multiplier`.")
    resources: Resources = FD(lambda: _sizes("1000m", "1Gi", "2000m", "2Gi"),
                              "Kong pod resources; Nginx runs one worker process per whole CPU of the limit.")
    node_pool: Optional[Name] = F(None, description="Node pool the Kong pods run on; by default the untainted pool with the "
                                  "most CPU at max nodes.")


class Security(Model):
    """Security baseline."""

    encryption_at_rest: Literal["AES-256"] = F("AES-256", description="Encryption at rest for every volume, bucket and database.")
    tls_min_version: Literal["1.2", "1.3"] = F("1.3", description="Minimum TLS version in transit.")
    kms_key_rotation_days: int = F(365, description="Customer-managed key rotation period.", ge=90, le=2560)
    secret_rotation_days: int = F(90, description="API keys and credentials rotation period.", ge=1, le=365)
    rbac: bool = F(True, description="Least-privilege RBAC for every service account.")
    network_policies: bool = F(True, description="Default-deny NetworkPolicies with allows derived from the service graph.")
    audit_log_retention_days: PositiveInt = F(365, description="Audit log retention (SIEM).")
    vault_address: Optional[str] = F(None, description="HashiCorp Vault the cluster reads `vault:` references from (External Secrets Operator, JWT auth with each cluster's OIDC issuer, KV v2), e.g. `https://vault.example.com:8200`.",
                                     pattern=r"^https://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")


class AlertReceivers(Model):
    """Where alerts go. Keys and URLs are secret references; Alertmanager reads them from mounted files."""

    pagerduty_routing_key: Optional[SecretRef] = F(None, description="PagerDuty Events v2 routing key for pages (severity `page`).")
    slack_webhook_url: Optional[SecretRef] = F(None, description="Slack incoming-webhook URL for tickets (severity `ticket`).")
    slack_channel: str = F("#platform-alerts", description="Slack channel for tickets.", pattern=r"^#[a-z0-9_-]{1,80}$")
    deadman_webhook_url: Optional[SecretRef] = F(None, description="Webhook URL of a dead-man (heartbeat) service that receives "
                                                 "kube-prometheus-stack's always-firing Watchdog every 5 min and pages when it stops.")


class Monitoring(Model):
    """Observability stack."""

    prometheus_retention_days: PositiveInt = F(15, description="Prometheus local retention.")
    grafana: bool = F(True, description="Run Grafana dashboards.")
    alertmanager: bool = F(True, description="Run Alertmanager (routing from the SLOs).")
    log_collector: Literal["fluent-bit"] = F("fluent-bit", description="Log shipper to Elasticsearch (the seed's fluentd role; Fluent Bit is its lightweight successor).")
    log_retention_days: PositiveInt = F(30, description="Log index retention in Elasticsearch (and Jaeger's span indices).")
    gateway_access_log: Literal["all", "errors"] = F("all", description=(
        "Kong's access lines shipped to Elasticsearch: `all` (one per request) or `errors` (4xx and 5xx only; Fluent "
        "Bit drops the others). The mesh's sidecars log 5xx and requests slower than `slos.latency_p99_ms` either way. "
        "Rule R073 checks that the region's logs and spans fit its Elasticsearch disks."))
    tracing: bool = F(True, description="OpenTelemetry collector plus Jaeger.")
    trace_sample_percent: float = F(10, description="Share of requests traced.", ge=0, le=100)
    apm: list[Literal["datadog", "newrelic"]] = FD(list, description="Third-party APM agents.")
    apm_api_keys: dict[Literal["datadog", "newrelic"], SecretRef] = FD(dict, description="APM API keys by vendor, as references.")
    cloud_native: bool = F(True, description="Also ship metrics to the cloud's own monitoring (CloudWatch, Cloud Monitoring, Azure Monitor).")
    node_exporter: bool = F(True, description="Run node_exporter on self-managed hosts.")
    alert_receivers: AlertReceivers = FD(AlertReceivers, description="Alert destinations for pages and tickets.")
    resources: dict[Literal["prometheus", "alertmanager", "grafana", "prometheus-operator", "kube-state-metrics",
                            "node-exporter", "jaeger", "otel-collector", "fluent-bit", "es-index-cleaner"], Resources] = FD(
        lambda: {"prometheus": _sizes("1000m", "8Gi", "4000m", "16Gi"),
                 "alertmanager": _sizes("100m", "256Mi", "500m", "512Mi"),
                 "grafana": _sizes("250m", "512Mi", "1000m", "1Gi"),
                 "prometheus-operator": _sizes("100m", "256Mi", "500m", "512Mi"),
                 "kube-state-metrics": _sizes("100m", "256Mi", "500m", "1Gi"),
                 "node-exporter": _sizes("50m", "64Mi", "250m", "128Mi"),
                 "jaeger": _sizes("500m", "1Gi", "2000m", "2Gi"),
                 "otel-collector": _sizes("500m", "1Gi", "2000m", "2Gi"),
                 "fluent-bit": _sizes("100m", "128Mi", "500m", "512Mi"),
                 "es-index-cleaner": _sizes("100m", "128Mi", "500m", "256Mi")},
        "Requests and limits of the monitoring stack's pods; a region's map replaces the default whole, so name every one.")
    grafana_admin_password: Optional[SecretRef] = F(None, description="Reference to Grafana's admin password (user `admin`), synced into the `grafana-admin` Secret; without it the grafana chart generates one.")


def _schedule(cron: str, days: int, copy: bool = True, cold: int | None = None) -> "BackupSchedule":
    return BackupSchedule(cron=cron, retention_days=days, copy_to_dr_partner=copy, cold_storage_after_days=cold)


class BackupSchedule(Model):
    """One backup schedule."""

    cron: str = F(description="Schedule in cron syntax (UTC), five fields.", pattern=r"^[0-9*/,-]+( [0-9*/,A-Z-]+){4}$")
    retention_days: PositiveInt = F(description="How long copies are kept.")
    copy_to_dr_partner: bool = F(True, description="Copy each backup to the DR partner region.")
    cold_storage_after_days: Optional[PositiveInt] = F(None, description="Move copies to cold/archive storage after this many "
                                                       "days. Not applied to the data hosts' backups yet: AWS Backup "
                                                       "moves no EC2 recovery point to cold storage, and the GCP and "
                                                       "Azure roots set no tiering (the region pages say so).")


class Backups(Model):
    """Backup schedules (the seed's daily/hourly/weekly/monthly)."""

    daily: BackupSchedule = FD(lambda: _schedule("0 2 * * *", 35), "Full database backup plus incremental logs "
                               "(default 02:00 UTC, kept 35 days).")
    hourly: BackupSchedule = FD(lambda: _schedule("0 * * * *", 2, copy=False), "Application state snapshots (default "
                                "every hour, kept 2 days, not copied to the DR partner).")
    weekly: BackupSchedule = FD(lambda: _schedule("0 3 * * SUN", 90), "Complete system image backups (default Sunday "
                                "03:00 UTC, kept 90 days).")
    monthly: BackupSchedule = FD(lambda: _schedule("0 4 1 * *", 2555, cold=30), "Long-term archive (default the 1st "
                                 "at 04:00 UTC, kept 7 years; cold_storage_after_days 30, which no root applies yet).")
