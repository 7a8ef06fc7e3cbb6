"""The top of the spec: organisation, clouds, geos, regions and the platform-wide policies.

Per-region settings (`RegionSettings`) are layered: `settings` at the top is the global layer,
`geos.<geo>.settings` and `regions.<region>.settings` override parts of it. The override layers are
partial, so they are kept as raw mappings here and validated after the merge (compiler/merge.py);
the exported JSON Schema still describes them (every field optional).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import Field, StringConstraints, WithJsonSchema

from compiler.model.base import F, FD, Cidr, Model, Name, Percent, PositiveInt, Text
from compiler.model.datastores import Datastores, Sharding
from compiler.model.infra import Backups, Gateway, Kubernetes, Monitoring, Network, Security
from compiler.model.services import Autoscaling, Service, Tier

CloudName = Literal["aws", "gcp", "azure"]

SettingsOverride = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-settings-override": True}),  # schema.py swaps in the partial schema
]
"""A partial RegionSettings: any subset of its fields, laid over the layer below."""


class RegionSettings(Model):
    """Everything a region runs. Set globally in `settings`; geos and regions override parts."""

    network: Network = FD(Network, description="VPC / VNet layout.")
    kubernetes: Kubernetes = F(description="The Kubernetes cluster and its node pools.")
    tiers: dict[Name, Tier] = F(description="Service tiers (frontend, backend, ai) with shared defaults.")
    services: dict[Name, Service] = F(description="Services by name.")
    autoscaling: Autoscaling = FD(Autoscaling, description="HPA targets and behaviour for every service.")
    datastores: Datastores = F(description="PostgreSQL, PgBouncer, Redis, Elasticsearch, object storage.")
    gateway: Gateway = F(description="Kong API gateway.")
    security: Security = FD(Security, description="Security baseline.")
    monitoring: Monitoring = FD(Monitoring, description="Observability stack.")
    backups: Backups = FD(Backups, description="Backup schedules (each has a default).")


class Organization(Model):
    """Who owns the platform."""

    name: Name = F(description="Short name; prefixes resource names and tags.")
    display_name: Text = F(description="Human-readable name for the docs (one line of plain text).")
    domain: str = F(description="DNS zone the platform is served from.", pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
    owner: str = F(description="Owning team (tag on every resource).", pattern=r"^[a-z0-9-]{1,63}$")
    cost_center: str = F(description="Cost centre (tag on every resource).", pattern=r"^[a-z0-9-]{1,63}$")
    compliance: list[Literal["soc2-type2", "gdpr", "ccpa", "pci-dss", "hipaa"]] = F(
        description="Compliance frameworks the platform is held to (tagged, documented).")


class StateBackend(Model):
    """Where Terraform keeps remote state for the regions of one cloud."""

    bucket: str = F(description="S3 / GCS bucket, or the Azure storage account name.", pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    region: str = F(description="Cloud region of the state bucket.", pattern=r"^[a-z0-9-]{2,40}$")
    lock_table: Optional[str] = F(None, description="AWS only: DynamoDB table for state locking.", pattern=r"^[A-Za-z0-9_.-]{3,255}$")
    resource_group: Optional[str] = F(None, description="Azure only: resource group of the storage account.", pattern=r"^[A-Za-z0-9_.()-]{1,90}$")
    container: Optional[str] = F(None, description="Azure only: blob container for state.", pattern=r"^[a-z0-9-]{3,63}$")


class Cloud(Model):
    """One cloud provider and its share of the workload."""

    workload_share: Percent = F(description="Percent of platform traffic this cloud carries; must equal its regions' traffic shares summed.")
    role: Literal["primary", "secondary", "tertiary"] = F(description="Strategic role of the cloud.")
    account: str = F(description="AWS account id, GCP project id or Azure subscription id (an identifier, not a secret).",
                     pattern=r"^[A-Za-z0-9-]{4,64}$")
    registry: str = F(description="Private container registry host for this cloud.", pattern=r"^[a-z0-9.-]+(/[a-z0-9._-]+)*$")
    state: StateBackend = F(description="Terraform remote state backend.")


class Geo(Model):
    """A geography grouping regions (Americas, EMEA, APAC)."""

    display_name: Text = F(description="Name for the docs (one line of plain text).")
    traffic_share: Percent = F(description="Percent of global traffic served in this geo.")
    data_residency: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9-]{0,31}$")]] = FD(
        list, description="Jurisdictions whose tenant data must stay in this geo (e.g. `eu`): lower-case codes, as the "
                          "registry's jurisdiction column spells them.")
    settings: SettingsOverride = FD(dict, description="Overrides laid over the global `settings` for every region of the geo.")


class Region(Model):
    """One deployment region."""

    geo: str = F(description="The geo this region belongs to (a key of `geos`).", max_length=40)
    cloud: CloudName = F(description="Cloud the region runs on.")
    cloud_region: str = F(description="The cloud's own region id (e.g. `us-east-1`, `asia-southeast1`, `uksouth`).", pattern=r"^[a-z0-9-]{2,40}$")
    location: Text = F(description="Where it is, for the docs (one line of plain text).")
    role: Literal["primary", "secondary", "standard"] = F("standard", description="Role in its geo: one primary per geo, which serves when others fail over.")
    traffic_share: Percent = F(description="Percent of global traffic this region serves (DNS weight).")
    dr_partner: str = F(description="Region (a key of `regions`) that holds this region's standby, replicas and backup copies.",
                        max_length=40)
    cidr: Cidr = F(description="The region's VPC CIDR; must not overlap another region's.")
    zones: Optional[list[Annotated[str, StringConstraints(max_length=64)]]] = F(
        None, description="Zone names; derived from the cloud region when left out.", min_length=2)
    settings: SettingsOverride = FD(dict, description="Overrides laid over the global and geo settings for this region only.")


class CdnSettings(Model):
    """Content delivery network in front of every region."""

    provider: Optional[Literal["cloudfront", "front_door", "cloud_cdn"]] = F(
        None, description="CDN provider: `cloudfront` (AWS, with WAFv2), `front_door` (Azure Front Door Premium with its WAF "
                          "policy) or `cloud_cdn` (Google Cloud CDN behind the global external Application Load Balancer, "
                          "with Cloud Armor). Left out: follows `edge.dns.provider`, else the platform's clouds (one cloud: "
                          "its own edge; several: AWS when it is among them, else the primary cloud). The seed's CloudFlare "
                          "option is not emitted, so it is refused rather than silently replaced.")
    price_class: Literal["all", "200", "100"] = F("all", description="Edge footprint; `all` is the global network (150+ POPs).")
    default_ttl_seconds: int = F(
        300, description="How long the edge keeps the web app's responses that set no Cache-Control or Expires (the L3 "
                         "cache): on CloudFront every path outside the API's, on Cloud CDN static content (images, media, "
                         "CSS, JavaScript, fonts, PDF). Never the API: on CloudFront the path prefixes of every route on "
                         "the API host or behind authentication keep a response only as its Cache-Control or Expires "
                         "asks, keyed on the Authorization header; Cloud CDN bypasses its cache for every request with "
                         "an Authorization header; Front Door caches nothing.", ge=0)
    max_ttl_seconds: int = F(86400, description="Largest edge cache TTL a response's Cache-Control or Expires can ask for "
                                                "(CloudFront, Cloud CDN).", ge=0)


class WafSettings(Model):
    """Web application firewall at the edge."""

    rate_limit_per_5min: PositiveInt = F(300_000, description="Requests per client IP per 5 minutes before the WAF blocks it; "
                                         "the default admits the gateway's default 1,000 requests/s per client (R024).")
    blocked_countries: list[Annotated[str, F(description="ISO 3166-1 alpha-2 code.", pattern=r"^[A-Z]{2}$")]] = FD(
        list, description="Countries blocked at the edge (geo-blocking).")
    managed_rules: bool = F(True, description="Enable the provider's managed rule sets (OWASP core, known bad inputs).")


class DnsSettings(Model):
    """Global DNS and health-checked routing."""

    provider: Optional[Literal["route53", "azure_dns", "cloud_dns"]] = F(
        None, description="Public DNS provider: `route53`, `azure_dns` or `cloud_dns`; it pairs with the CDN of the same "
                          "cloud. Left out: follows `edge.cdn.provider`, else the platform's clouds.")
    routing: Literal["weighted", "latency", "geo"] = F("weighted", description="How DNS spreads users over regions; weights come from traffic shares.")
    api_host: str = F("api", description="Host label of the API under the organisation domain.", pattern=r"^[a-z0-9-]{1,63}$")
    app_host: str = F("app", description="Host label of the web app under the organisation domain.", pattern=r"^[a-z0-9-]{1,63}$")
    health_check_path: str = F("/healthz", description="Path the load balancers and DNS health checks probe in each region; "
                               "Kong answers it itself.", pattern=r"^/([A-Za-z0-9_~-][A-Za-z0-9._~-]*/)*[A-Za-z0-9_~-][A-Za-z0-9._~-]*$")
    health_check_interval_seconds: Literal[10, 30] = F(10, description="Seconds between DNS health checks.")
    failure_threshold: int = F(3, description="Failed checks before a region is taken out of DNS.", ge=1, le=10)
    ttl_seconds: int = F(60, description="Record TTL; low so failover is fast (RTO).", ge=1, le=86400)


class Edge(Model):
    """The global edge: CDN, WAF, DDoS protection, TLS and DNS."""

    cdn: CdnSettings = FD(CdnSettings, description="CDN.")
    waf: WafSettings = FD(WafSettings, description="WAF.")
    ddos_protection: bool = F(False, description="Paid DDoS protection at the edge: AWS Shield Advanced, Cloud Armor Enterprise "
                              "(the project's tier, with adaptive protection); each is a fixed monthly subscription that "
                              "`platformc cost` counts. Front Door has no paid tier of its own (R041). Off: the providers' always-on "
                              "standard protection (Shield Standard, Google's and Azure's infrastructure protection).")
    tls_min_version: Literal["1.2", "1.3"] = F("1.3", description="Minimum TLS version at the edge.")
    dns: DnsSettings = FD(DnsSettings, description="DNS.")


class Slos(Model):
    """Service level objectives; Prometheus rules and alerts derive from them."""

    availability_percent: float = F(99.99, description="Availability target over the window.", gt=90, lt=100)
    window_days: PositiveInt = F(30, description="SLO window.")
    latency_p95_ms: PositiveInt = F(200, description="95th percentile response time target; alerted at the first of "
                                    "Kong's latency bucket boundaries at or above it (25, 50, 80, 100, 250, 400, 700, "
                                    "1000, 2000, 5000 ... 60000 ms).", le=60000)
    latency_p99_ms: PositiveInt = F(1000, description="99th percentile response time ceiling; alerted like the p95 target.",
                                    le=60000)
    error_rate_percent: float = F(0.01, description="Largest acceptable share of failed requests; at most the availability "
                                  "target's error budget, 100 - availability_percent (R043).", gt=0, le=100)
    db_query_p95_ms: PositiveInt = F(50, description="95th percentile database query time.")
    cache_hit_ratio_percent: float = F(95, description="Smallest acceptable cache hit ratio.", ge=0, le=100)


class BusinessKpis(Model):
    """Business KPIs tracked on dashboards."""

    franchise_onboarding_hours: PositiveInt = F(24, description="Franchise onboarding time target.")
    customer_satisfaction: float = F(4.5, description="Customer satisfaction target out of 5.", ge=0, le=5)
    booking_success_percent: float = F(99, description="Booking success rate target.", ge=0, le=100)
    customer_retention_percent: float = F(90, description="Customer retention target.", ge=0, le=100)


class CapacityTargets(Model):
    """The load the platform is sized for (load-test targets)."""

    concurrent_users: PositiveInt = F(1_000_000, description="Concurrent users at peak.")
    requests_per_second: PositiveInt = F(100_000, description="Global requests per second.")
    database_connections: PositiveInt = F(10_000, description="Client database connections platform-wide.")
    peak_multiplier: float = F(5, description="Peak-hour factor over normal traffic (Black Friday).", ge=1)
    max_cpu_utilization_percent: int = F(80, description="CPU utilisation ceiling at target load.", ge=1, le=100)
    max_memory_utilization_percent: int = F(80, description="Memory utilisation ceiling at target load.", ge=1, le=100)
    max_error_rate_percent: float = F(0.1, description="Largest share of failed requests a load test at these targets may "
                                      "show: a pass mark for the load test, beside the utilisation ceilings (the seed's "
                                      "benchmark: < 0.1 %). The production objective is `slos.error_rate_percent`.",
                                      gt=0, le=100)


class DisasterRecovery(Model):
    """Recovery objectives."""

    rto_minutes: PositiveInt = F(15, description="Recovery time objective.")
    rpo_minutes: PositiveInt = F(1, description="Recovery point objective; WAL archiving runs at least this often.")
    mttr_minutes: PositiveInt = F(30, description="Mean time to recovery target.")
    mtbf_hours: PositiveInt = F(2160, description="Mean time between failures target.")
    p1_response_minutes: PositiveInt = F(15, description="Response time for P1 incidents (alert routing).")
    failed_over: list[Annotated[str, StringConstraints(max_length=64)]] = FD(
        list, description="Regions (keys of `regions`) declared lost: each one's DR partner serves its franchises from "
                          "the standby cluster it promoted (the region runbook, steps 3 and 4). Every artefact that "
                          "routes a franchise or a shard then names the partner: the routing table (shards.sql), Kong's "
                          "home-region map, the edge's maps, the services' data-tier ConfigMaps, and the partner's "
                          "pgbouncer.ini, which serves the region's shard databases from the promoted cluster. A region "
                          "listed here needs a standby cluster in its DR partner (R070), and that partner must not be "
                          "listed itself (R069). Remove the region once it is rebuilt and re-synchronised (the "
                          "runbook's step 5). Empty: every region serves its own franchises.")


class CostUsage(Model):
    """Monthly volumes the estimate (`platformc cost`) needs for traffic- and volume-priced items; 0 leaves an item out."""

    object_storage_gib_per_region: float = F(0, description="Object storage held per region (GiB-month): uploads, backups, WAL archive.", ge=0)
    nat_processed_gib_per_region: float = F(0, description="Data through each region's NAT gateways per month (GiB).", ge=0)
    internet_egress_gib_per_region: float = F(0, description="Data each region sends to the Internet directly (not through the CDN) per month (GiB).", ge=0)
    cdn_egress_gib: float = F(0, description="Data the CDN serves per month, all regions (GiB).", ge=0)
    cdn_requests_millions: float = F(0, description="HTTPS requests the CDN serves per month, in millions.", ge=0)


CostCategory = Literal["compute", "database", "storage", "networking", "monitoring", "security", "load_balancing"]


class CostModel(Model):
    """Monthly budget by category; each region's budget and alerts are its part of it (`budget_split`)."""

    currency: Literal["USD", "EUR"] = F("USD", description="Budget currency.")
    monthly: dict[CostCategory, PositiveInt] = F(
        description="Planned monthly spend by category: the budget the estimate (`platformc cost`) is held to (R044) "
                    "and the regions' cloud budgets are cut from.")
    budget_split: Literal["traffic_share", "estimate"] = F(
        "traffic_share", description="How `monthly` is divided among the regions (their cloud budgets and alerts, R044): "
                                     "`traffic_share`, each region its traffic share of every category; or `estimate`, "
                                     "each region its part of the category's estimated floor (`platformc cost`), since a "
                                     "region with a small share still runs a whole cluster and data tier.")
    reference_estimate: dict[CostCategory, PositiveInt] = FD(
        dict, description="An estimate made elsewhere, by category (a design document's, a quote), stated for comparison: "
                          "`platformc cost` and the docs show it beside the computed estimate and the budget, with the "
                          "difference. Nothing is checked against it.")
    reserved_savings_percent: Percent = F(40, description="Savings expected from reserved capacity on the baseline.")
    spot_savings_percent: Percent = F(60, description="Savings expected from spot capacity for non-critical workloads.")
    alert_thresholds_percent: list[PositiveInt] = F([80, 100], description="Budget alert thresholds, % of the monthly budget.")
    prices: dict[Annotated[str, StringConstraints(pattern=r"^(aws|gcp|azure|global)/[a-z_]+(/[A-Za-z0-9._-]+)?$")], Annotated[float, Field(ge=0)]] = FD(
        dict, description="Overrides of the price catalogue (compiler/cost/prices.yaml) for `platformc cost`, in USD: "
                          "`cloud/item` or `cloud/item/name` to a price, e.g. `aws/instance_hour/c6i.4xlarge: 0.61` "
                          "(per hour), `gcp/region_factor/asia-south1: 1.2`, `global/shield_advanced_month: 0`.")
    usage: CostUsage = FD(CostUsage, description="Monthly volumes for the traffic- and volume-priced items of the estimate.")


class Platform(Model):
    """platform.yaml: one file describing the whole multi-region, multi-cloud platform."""

    version: Literal[1] = F(description="Spec format version.")
    organization: Organization = F(description="The owning organisation.")
    clouds: dict[CloudName, Cloud] = F(description="Clouds in use and their workload split.")
    geos: dict[Name, Geo] = F(description="Geographies and their traffic shares.")
    regions: dict[Annotated[str, StringConstraints(max_length=64)], Region] = F(
        description="Regions by platform name (a DNS label, R004); each is a directory in generated/.")
    settings: RegionSettings = F(description="The global settings layer every region inherits.")
    sharding: Sharding = FD(Sharding, description="Franchise sharding across regions.")
    edge: Edge = FD(Edge, description="CDN, WAF, DDoS, TLS and DNS.")
    slos: Slos = FD(Slos, description="Service level objectives.")
    kpis: BusinessKpis = FD(BusinessKpis, description="Business KPIs.")
    capacity: CapacityTargets = FD(CapacityTargets, description="Load the platform is sized for.")
    disaster_recovery: DisasterRecovery = FD(DisasterRecovery, description="RTO, RPO and incident targets.")
    cost: CostModel = F(description="The cost model.")
