"""Well-known names, ports and paths that more than one target writes.

Each fact here is stated once: a port one target opens and another dials, a namespace one target
creates and another selects, a path one target writes and another installs. Targets import these
from the IR and never from each other (compiler/targets/<a> never imports compiler/targets/<b>).
Per-region facts (addresses, connections) are computed by compiler/resolve.py into the RegionPlan.
"""

from __future__ import annotations


def fit(name: str, limit: int, key: str | None = None, minimum: int = 0) -> str:
    """A cloud resource name of `minimum` to `limit` characters: `name` when it fits, else its first `limit - 7`
    characters (all of it when it is too short) and a hyphen-separated 6-digit hash of `key` (of `name` by default),
    so that two long names sharing a prefix stay apart. The hash is of the whole input, so a name never changes once it
    fits."""
    if minimum <= len(name) <= limit:
        return name
    import hashlib
    return f"{name[:limit - 7].rstrip('-')}-{hashlib.sha1((key if key is not None else name).encode()).hexdigest()[:6]}"

# ---------------------------------------------------------------- Kubernetes namespaces and releases
GATEWAY_NAMESPACE = "kong"  # Kong's release namespace (helmfile creates it)
MONITORING_NAMESPACE = "monitoring"
ISTIO_NAMESPACE = "istio-system"
SYSTEM_NAMESPACE = "kube-system"

KONG_RELEASE = "kong"
KONG_PROXY_SERVICE = "kong-proxy"  # kong chart `proxy.nameOverride`
# The kong chart's pod selector labels (`kong.selectorLabels`: chart name and release name).
KONG_POD_LABELS = {"app.kubernetes.io/name": "kong", "app.kubernetes.io/instance": KONG_RELEASE}
KONG_STATUS_PORT = 8100  # kong chart default `status.http.containerPort`: readiness and /metrics
KONG_PROXY_TLS_PORT = 8443  # Kong's HTTPS proxy listener: container port, Service port and LB target port alike
# The module the kong target's canary-header function requires (Kong's own JWT parser); serverless functions run
# sandboxed, so the helm target lists it in Kong's untrusted_lua_sandbox_requires.
KONG_JWT_PARSER_MODULE = "kong.plugins.jwt.jwt_parser"
OTEL_COLLECTOR_SERVICE = "otel-collector"  # opentelemetry-collector `fullnameOverride`
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
OTEL_PROMETHEUS_PORT = 8889  # the collector's prometheus exporter: the services' OTLP metrics, scraped by Prometheus
OTEL_PROMETHEUS_PORT_NAME = "prom-metrics"  # its port name on the collector's Service (the scrape job keeps it)
ISTIOD_XDS_PORT = 15012
# The name of each service's container port (its Deployment's `ports`, the probes' and the Service's targetPort) and of
# that port in the NetworkPolicy ingress rules admitting the service's callers, Kong and Prometheus: a policy naming
# the port follows each pod's own port, so a changed `port` admits the old pods on the old number and the new pods on
# the new one while the rollout runs (a number switched every pod at once, before any new pod existed).
SERVICE_PORT_NAME = "http"
ISTIO_METRICS_PORT = 15020  # merged app + sidecar metrics (meshConfig.enablePrometheusMerge)

# The Istio sidecar's resources, set per pod by annotation so namespace quotas can count them.
SIDECAR_REQUESTS = {"cpu_m": 100, "memory_mi": 128}
SIDECAR_LIMITS = {"cpu_m": 1000, "memory_mi": 512}

# Node label that selects a node pool. Cloud-native pool labels (eks.amazonaws.com/nodegroup,
# cloud.google.com/gke-nodepool, kubernetes.azure.com/agentpool) carry the cloud's pool name,
# which need not be the spec's (AKS allows 12 alphanumerics only), so the node pools carry this label.
NODE_POOL_LABEL = "platformc.io/node-pool"
# Clouds whose clusters (as the terraform target builds them) run kube-proxy: EKS installs the kube-proxy add-on;
# GKE Dataplane V2 (ADVANCED_DATAPATH) and AKS with the Cilium data plane replace it with eBPF, so there is
# nothing to scrape there and KubeProxyDown would fire forever.
KUBE_PROXY_CLOUDS = frozenset({"aws"})
# Clouds whose GPU nodes need the NVIDIA device plugin from us: EKS's AL2023 NVIDIA AMIs and AKS GPU node
# pools ship the driver but not the plugin; GKE installs its own device plugin on GPU nodes.
DEVICE_PLUGIN_CLOUDS = frozenset({"aws", "azure"})
# Clouds whose node groups each span all the region's zones as one scaling group the autoscaler cannot aim at a
# zone (EKS managed node groups over every private subnet, AKS node pools over every zone). GKE's regional node
# pools are one managed instance group per zone, which its autoscaler scales zone by zone.
ZONE_BLIND_AUTOSCALER_CLOUDS = frozenset({"aws", "azure"})
# EKS has no usable default StorageClass (none since 1.30, and gp2's in-tree provisioner is gone): the kubernetes
# target writes this one (the EBS CSI driver add-on, gp3, encrypted with the region's key) and marks it default,
# and the helm target names it in every PersistentVolumeClaim it asks for. GKE and AKS ship working defaults.
EBS_STORAGE_CLASS = "ebs-gp3-encrypted"
EBS_CSI_PROVISIONER = "ebs.csi.aws.com"  # the aws-ebs-csi-driver add-on's CSI driver name
STORAGE_CLASS_CLOUDS = frozenset({"aws"})
# The kubernetes target's files the deploy steps name (the helm target's helmfile header and region page give the
# order): the StorageClasses the releases' volume claims name, and the AWS TargetGroupBinding template.
STORAGE_CLASSES_FILE = "storage-classes.yaml"
TARGET_GROUP_BINDING_FILE = "kong-target-group-binding.yaml.tmpl"


def kms_key_alias(cluster: str) -> str:
    """The region's customer-managed key alias (AWS): the Terraform kms module creates it (`alias/${var.name}`, the
    region's name prefix, which is its cluster name), the EBS StorageClass names it. The key's ARN exists only after apply; its alias is known now."""
    return f"alias/{cluster}"


def kms_key_alias_arn(cloud_region: str, account: str, cluster: str) -> str:
    """An alias ARN: EC2 CreateVolume (what the EBS CSI driver calls with the StorageClass's kmsKeyId) resolves it
    to the key. (The driver compares it verbatim with a source volume's key ARN when cloning, so cloning a volume
    of this class by PVC dataSource would fail; platformc clones none.)"""
    return f"arn:aws:kms:{cloud_region}:{account}:{kms_key_alias(cluster)}"

# ---------------------------------------------------------------- the public entry (see compiler/ir/edge.py)
# The global external Application Load Balancer's proxies (Google Front Ends) and Google's health
# checkers connect to backends from these two ranges (Google's documented, fixed source ranges for
# health checks and GFE proxies); the network module's firewall opens them on the nodes too.
GCP_FRONT_END_RANGES = ("35.191.0.0/16", "130.211.0.0/22")
GKE_NEG_ANNOTATION = "cloud.google.com/neg"  # read by GKE's NEG controller on a Service
# Azure: the Application Gateway's listener certificate, as the load_balancer module names it (the
# Key Vault certificate <name>-tls becomes ssl_certificate "tls"); the Ingress reuses it.
AZURE_GATEWAY_CERTIFICATE = "tls"
# Azure: the trusted root certificate the gateway checks Kong's serving certificate against (Application
# Gateway v2 verifies HTTPS backends): the region's internal CA (see compiler/ir/edge.py, kong_proxy_tls). The
# load_balancer module installs it from the gateway's certificate vault, the secret of the same name.
AZURE_KONG_TRUSTED_ROOT = "kong-proxy-ca"
# Azure: Kong's serving certificate for the gateway's hop, the Secret ESO writes (keys tls.crt, tls.key) and the
# kong chart mounts at KONG_SECRETS_DIR/<name>/ (chart value secretVolumes).
KONG_PROXY_TLS_SECRET = "kong-proxy-tls"
KONG_PROXY_TLS_KEYS = ("tls.crt", "tls.key")
KONG_SECRETS_DIR = "/etc/secrets"  # where the kong chart mounts each of `secretVolumes` (its values.yaml)
AGIC_INGRESS_CLASS = "azure-application-gateway"  # the class AKS's ingress controller add-on watches

# ---------------------------------------------------------------- the data tier's hosts
POSTGRES_PORT = 5432  # PostgreSQL's port on every server (PgBouncer's port is the spec's pgbouncer.port)
POSTGRES_REPLICATION_USER = "replicator"
POSTGRES_TLS_DIR = "/etc/postgresql/tls"  # server.crt, server.key, ca.crt: installed by Ansible from the internal CA
POSTGRES_PASSFILE = "/var/lib/postgresql/.pgpass"  # the replication password, rendered by Ansible from the reference
WALG = "/usr/local/bin/wal-g"
PGBOUNCER_AUTH_FILE = "/etc/pgbouncer/userlist.txt"
PGBOUNCER_TLS_DIR = "/etc/pgbouncer/tls"
SHARD_MAP_TABLE = "franchise_shard_map"  # the routing table in every shard database (services may only read it)
# Each service's data-tier credentials (Secret, from ExternalSecrets) and connection settings (ConfigMap): <service>-datastores
DATASTORE_SETTINGS_SUFFIX = "-datastores"
# PostgreSQL HA (compiler/ir/postgres_ha.py): Patroni's REST API (the internal load balancers' health checks:
# GET /primary, GET /replica), etcd's client and peer ports, and the ports of the standby clusters a region runs
# for the regions whose DR partner it is (the i-th such cluster: base + i).
PATRONI_REST_PORT = 8008
ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
# etcd's metrics listener (--listen-metrics-urls, plain HTTP): /metrics and /health only (v3.4 embed/etcd.go
# serveMetrics, etcdhttp.HandleMetricsHealth), so Prometheus scrapes each member without the client certificate the
# client port demands. 2381: the port kubeadm gives the same listener (its constants' EtcdMetricsPort).
ETCD_METRICS_PORT = 2381
ETCD_SCRAPE_JOB = "etcd"  # the helm target's scrape job of the members; the monitoring target's etcd alerts read it
POSTGRES_STANDBY_PORT = 5433
KUBE_API_PEER = "kubernetes-api"  # the wiring's name for the cluster's private API endpoint (peer kind "kube-api")
PGBOUNCER_READ_ONLY_SUFFIX = "_ro"  # PgBouncer's <shard database>_ro: the read-only pool on the replicas
# The data hosts' login user Ansible connects as (SSH, through the bastion), per cloud: AWS the region's EC2 key
# pair's user on Debian's image (cloud-init's default user), Azure the VMs' admin_username. GCP: OS Login, the
# operator's own account (not set).
DATA_HOST_LOGIN_USER = {"aws": "admin", "azure": "platform"}
PATRONI_STANDBY_REST_PORT = 8009
PATRONI_CONFIG_DIR = "/etc/patroni"
# Where the internal load balancers' health checks come from, per cloud (AWS: the NLB's nodes in the private
# subnets, i.e. the region's node CIDRs; GCP: Google's health-check ranges; Azure: the platform's probe address).
LB_HEALTH_CHECK_RANGES = {"gcp": GCP_FRONT_END_RANGES, "azure": ("168.63.129.16/32",)}
# WAL-G: the release asset the hosts install, pinned by its SHA-256 (the archive, base backups, the standby's
# restore_command). The digest is the published one of this asset (checked at download by get_url). The backups
# role's script uses backup-push --permanent and --add-user-data, backup-list --detail --json (is_permanent,
# user_data), backup-mark [--impermanent], delete target and delete garbage --confirm: all in this tag's cmd/pg/.
WALG_VERSION = "v3.0.8"
WALG_ASSET = "wal-g-pg-20.04-amd64"
WALG_SHA256 = "8a0ca72ff3aa10d5a288cdb3e5b2a2e7bc6f8b4ffcf7b3046d718cfeee99a7e7"
# PgBouncer's open files beyond its connections (listen sockets, log, DNS, TLS files): LimitNOFILE's margin.
PGBOUNCER_NOFILE_MARGIN = 1024
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
NODE_EXPORTER_PORT = 9100
# The scrape label that names the role the topology gave a Redis node ("primary" or "replica"): the helm target puts
# it on the node's scrape targets, the monitoring target alerts when a node placed as a primary serves as a replica.
REDIS_PLACED_ROLE_LABEL = "placed_role"

# ---------------------------------------------------------------- the client's address behind the edge
# The CDN sets this request header to the viewer's address (overwriting whatever the client sent), and
# Kong takes the client address from it when the peer is the region's load balancer (its source ranges
# are the IR's Addressing.lb_source_cidrs). Rate limits and logs then key on the real client.
CLIENT_ADDRESS_HEADER = "X-Viewer-Address"
# The CDN adds this request header to every request it sends to a region, with a secret value only the platform's
# roots can read (compiler/ir/edge.py: origin_verify); each region's WAF blocks a request without it. The load
# balancers admit every customer's CloudFront addresses, so without it anyone's distribution reached the regions
# around this edge's WAF, geo restriction and Shield, and could set the client-address header above.
ORIGIN_VERIFY_HEADER = "X-Origin-Verify"

# ---------------------------------------------------------------- secrets the cluster reads (External Secrets Operator)
# The operator's release, namespace and ServiceAccount (chart fullname): the cloud identity / Vault role binds to it.
EXTERNAL_SECRETS_NAMESPACE = "external-secrets"
EXTERNAL_SECRETS_SERVICE_ACCOUNT = "external-secrets"
# Secrets the Helm releases reference by name, created by ExternalSecrets (helm target, platform-secrets chart).
GRAFANA_ADMIN_SECRET = "grafana-admin"  # keys: the grafana chart's admin.userKey / admin.passwordKey defaults
GRAFANA_ADMIN_KEYS = ("admin-user", "admin-password")
ALERTMANAGER_RECEIVERS_SECRET = "alertmanager-receivers"  # mounted at /etc/alertmanager/secrets/<name>/
# monitoring.alert_receivers field -> key in that Secret (the file name Alertmanager's config reads)
ALERTMANAGER_RECEIVER_KEYS = {"pagerduty_routing_key": "pagerduty-routing-key", "slack_webhook_url": "slack-webhook-url",
                              "deadman_webhook_url": "deadman-webhook-url"}
# The Elasticsearch clients in the cluster, each with its own user: client -> Secret (keys ELASTICSEARCH_CLIENT_KEYS and
# ca.crt). The client's entry holds the user (ELASTICSEARCH_CLIENT_KEYS, the fields Ansible creates the user from);
# ca.crt is the region's internal CA, the nodes' issuer, from the entry the region's Ansible publishes it to
# (data_access.internal_ca_ref): one CA per region, while the clients' entries may be shared by every region.
ELASTICSEARCH_CLIENT_SECRETS = {"fluent-bit": "elasticsearch-fluent-bit", "jaeger": "elasticsearch-jaeger"}
ELASTICSEARCH_CLIENT_KEYS = ("username", "password")
# Fluent Bit's daily log indices, <prefix>-<region>-YYYY.MM.DD (helm target, Logstash_Format): container logs and
# the hosts' logs. The monitoring target's retention job puts the ILM policy on exactly these.
# Fluent Bit tag match -> index prefix. Not `logs`: Elasticsearch 8's built-in `logs-*-*` template makes any
# matching index a data stream, which Fluent Bit's index writes (and the retention template) do not expect.
LOG_INDEX_PREFIXES = {"kube.*": "containers", "host.*": "node"}
JAEGER_INDEX_PREFIX = "jaeger"  # Jaeger's index prefix is <this>-<region>: indices <prefix>-jaeger-span-<date>, ...


def log_index_prefix(prefix: str, region: str) -> str:
    """Fluent Bit's Logstash_Prefix for one of LOG_INDEX_PREFIXES in a region (indices <it>-YYYY.MM.DD)."""
    return f"{prefix}-{region}"


def jaeger_index_prefix(region: str) -> str:
    """Jaeger's index prefix in a region: its indices are <prefix>-jaeger-span-<date>, <prefix>-jaeger-service-<date>."""
    return f"{JAEGER_INDEX_PREFIX}-{region}"


def elasticsearch_client_indices(region: str) -> dict[str, tuple[str, ...]]:
    """Elasticsearch client -> the index patterns it writes in a region (the helm target names the indices, the
    ansible target's elasticsearch role grants each client's user exactly these patterns)."""
    return {"fluent-bit": tuple(f"{log_index_prefix(p, region)}-*" for p in LOG_INDEX_PREFIXES.values()),
            "jaeger": (f"{jaeger_index_prefix(region)}-*",)}

# ---------------------------------------------------------------- the data hosts' other ports
ELASTICSEARCH_HTTP_PORT = 9200  # elasticsearch.yml http.port: clients, Fluent Bit, Jaeger
ELASTICSEARCH_TRANSPORT_PORT = 9300  # elasticsearch.yml transport.port: node to node
REDIS_BUS_OFFSET = 10000  # Redis Cluster's bus port is the client port + 10000 (redis.conf cluster-port)
SSH_PORT = 22

# ---------------------------------------------------------------- Patroni's REST health checks (the internal load balancers)
# The cloud's internal load balancer in front of the leader checks GET /primary on Patroni's REST port (200 only on
# the leader), the one in front of the replicas GET /replica (200 on a running replica); both over HTTPS.
PATRONI_LEADER_HEALTH_PATH = "/primary"
PATRONI_REPLICA_HEALTH_PATH = "/replica"


def cloud_dns_zone_name(domain: str) -> str:
    """A Cloud DNS managed zone's name: 1-63 characters, a letter first, [a-z0-9-] (the API's rule; the provider does not
    check it). The domain with dots as hyphens, as before, when that is one; else prefixed and, past 63, hashed. The
    global root names its zone so, and the region runbooks' commands name it (an IR fact: no target imports another)."""
    name = domain.lower().replace(".", "-")
    return fit(name if name[:1].isalpha() else f"zone-{name}", 63, key=domain)
