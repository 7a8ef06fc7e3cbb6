"""The public request path, defined once in the IR for the Terraform, Helm, Kubernetes and Kong targets.

    client -> CDN -> the region's cloud load balancer (Terraform: WAF attached, the CDN's TLS ends here; the
    listener's minimum is the lowest any client arriving at it needs: origin_listener_min_tls) -> Kong's proxy
    pods over HTTPS on KONG_PROXY_TLS_PORT (Helm: the listener; Kubernetes: how the load balancer finds the pods
    and the NetworkPolicy letting it in) -> Kong's Istio sidecar (outbound only: canary / blue-green
    VirtualServices, mTLS) -> the services.

The cloud load balancer is the region's only public entry: Kong's proxy Service is ClusterIP and no
other public LoadBalancer Service exists, so nothing reaches Kong around the WAF (on Azure, the internal
gateway of home-region routing is an internal load balancer Service with a private address only, admitting
the peered regions' Kong: compiler/ir/network.py). The load balancers reach
the pods directly (pod IPs), each cloud its own way:

- AWS: an IP target group (Terraform, named lb_target_name) that Kong's pods join through the AWS
  Load Balancer Controller's TargetGroupBinding (kubernetes target, filled in after `terraform apply`);
- GCP: zonal NEGs named lb_target_name, which GKE creates from the Kong proxy Service's
  `cloud.google.com/neg` annotation (helm target) and the backend service (Terraform) references;
- Azure: the Application Gateway that AKS's ingress controller add-on (AGIC) programs from an Ingress
  on the Kong proxy Service (kubernetes target).

Every load balancer health-checks health_check_path on Kong, which answers it itself (kong target).
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.records import dataclass
from compiler.ir.data_access import kong_proxy_tls_refs as data_access_kong_refs
from compiler.ir.names import (AGIC_INGRESS_CLASS, AZURE_GATEWAY_CERTIFICATE, AZURE_KONG_TRUSTED_ROOT,  # noqa: F401 (the
                               GCP_FRONT_END_RANGES, GKE_NEG_ANNOTATION, KONG_PROXY_TLS_KEYS,
                               KONG_PROXY_TLS_PORT, KONG_PROXY_TLS_SECRET, KONG_SECRETS_DIR)  # public path's names)


# Health checkers that probe a region's load balancer directly speak older TLS than the CDN does:
# - Route 53 (API reference, HealthCheckConfig, Type): "If you specify HTTPS for the value of Type, the endpoint must
#   support TLS v1.0, v1.1, or v1.2."
# - a Network Load Balancer's HTTPS health checks of its targets (Elastic Load Balancing, "Health checks for Network
#   Load Balancer target groups"): "its registered targets fail health checks if they support only TLS 1.3."
# A 1.3-only listener fails every such check: Route 53 then answers with every weighted record (all unhealthy), and a
# dead region never leaves DNS.
ROUTE53_HEALTH_CHECK_MAX_TLS = "1.2"
NLB_HEALTH_CHECK_MAX_TLS = "1.2"
ROUTE53_HEALTH_CHECKS_PEER = "route53-health-checks"
NLB_HEALTH_CHECKS_PEER = "internal-gateway-health-checks"
# The lowest TLS any origin listener accepts, whoever arrives.
LISTENER_TLS_FLOOR = "1.2"
TLS_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


@dataclass(frozen=True)
class KongProxyTls:
    """Azure: Kong's serving certificate for the Application Gateway's hop, defined once for four targets.

    Application Gateway v2 verifies an HTTPS backend: its certificate must chain to a trusted root certificate installed
    on the gateway, and name the host name the gateway sends as SNI. With a trusted root, AGIC either sets the backend
    host name from the Ingress's `backend-hostname` or, without it, picks the host name from the backend address,
    which Application Gateway does not support for IP members (Kong's pods). The backend host name is also the Host
    header the gateway sends, which Kong's routes match, so each host gets an Ingress of its own whose backend host
    name is that host: the request reaches Kong with the Host it arrived with, and the certificate names every host
    (`hostnames`). The region's internal CA issues it (Ansible's pgbouncer role, on the CA host) and publishes the
    certificate and key to the store entries `refs` name; ESO delivers them as Secret `secret`, which the kong chart
    mounts on Kong's TLS listener (helm target); the load_balancer module installs the CA certificate, which the same
    Ansible run writes to the gateway's certificate vault as secret `trusted_root`, as the gateway's trusted root
    certificate `trusted_root` (terraform target), the name the Ingresses' annotation gives (kubernetes target)."""

    hostnames: tuple[str, ...]  # the certificate's names (the first is its CN): the hosts the gateway forwards
    secret: str  # the Kubernetes Secret in Kong's namespace (keys KONG_PROXY_TLS_KEYS)
    refs: tuple[tuple[str, str], ...]  # (Secret key, store reference) for each of KONG_PROXY_TLS_KEYS
    trusted_root: str  # the gateway's trusted root certificate, and its secret in the gateway's certificate vault

    @property
    def cert_path(self) -> str:
        return f"{KONG_SECRETS_DIR}/{self.secret}/{KONG_PROXY_TLS_KEYS[0]}"

    @property
    def key_path(self) -> str:
        return f"{KONG_SECRETS_DIR}/{self.secret}/{KONG_PROXY_TLS_KEYS[1]}"


def kong_proxy_tls(plan: PlatformPlan, region: RegionPlan) -> KongProxyTls | None:
    """Azure regions only: the ALB and Google's front ends accept any certificate of an HTTPS backend (they do not
    verify it), so Kong's default certificate serves them (see the helm target's kong values)."""
    refs = kong_proxy_tls_refs(region)
    if not refs:
        return None
    return KongProxyTls(hostnames=tuple(lb_hostnames(plan, region)), secret=KONG_PROXY_TLS_SECRET, refs=refs,
                        trusted_root=AZURE_KONG_TRUSTED_ROOT)


def kong_proxy_tls_refs(region: RegionPlan) -> tuple[tuple[str, str], ...]:
    """KongProxyTls.refs without the plan (the Secrets ESO delivers are a region's): () outside Azure."""
    return data_access_kong_refs(region.cloud, region.settings, region.name)


def lowest_tls(versions) -> str:
    return min(versions, key=TLS_VERSIONS.index)


def origin_listener_min_tls(region: RegionPlan) -> str:
    """The lowest TLS the region's load balancer listener accepts: the lowest any connection arriving at it needs
    (the health checkers' 1.2 where they probe it, else the spec's floor), never below LISTENER_TLS_FLOOR."""
    arriving = [c.tls for c in region.wiring if c.dest.kind == "lb" and c.tls in TLS_VERSIONS]
    lowest = lowest_tls(arriving) if arriving else region.settings.security.tls_min_version
    return max(lowest, LISTENER_TLS_FLOOR, key=TLS_VERSIONS.index)


# CloudFront's origin response timeout is at most 60 s under the default quota ("Response timeout per origin", Service
# Quotas; the API refuses more); a longer wait needs the quota raised first.
CLOUDFRONT_MAX_ORIGIN_READ_TIMEOUT = 60
# Front Door's response_timeout_seconds: 16 to 240 (azurerm validates IntBetween(16, 240)).
FRONT_DOOR_RESPONSE_TIMEOUT_RANGE = (16, 240)


def origin_response_timeout(settings) -> int:
    """Seconds a hop in front of a region's Kong (the CDN's origin, the region's load balancer) waits for a response:
    Kong's own upstream read timeout (gateway.read_timeout_ms) rounded up, plus a second for Kong itself, so that Kong
    answers first (a 504 of its own) and no hop in front gives up, or retries, while Kong still waits. CloudFront's
    default of 30 s cut the reference's 60 s off at half and retried the request."""
    return -(-settings.gateway.read_timeout_ms // 1000) + 1


def edge_response_timeout(plan: PlatformPlan) -> int:
    """The CDN's origin response timeout: the longest any region's hops need (one setting serves every origin)."""
    return max(origin_response_timeout(r.settings) for r in plan.regions)


# AWS: the namespace label that makes the load balancer controller's pod webhook add a readiness gate to Kong's pods
# (docs/deploy/pod_readiness_gate.md): a new pod counts as ready only once the target group finds it healthy, so a
# rollout never drains the old pods before the new ones take traffic.
POD_READINESS_GATE_LABEL = ("elbv2.k8s.aws/pod-readiness-gate-inject", "enabled")


def lb_target_name(region: RegionPlan) -> str:
    """AWS: the target group Kong's pods register in. GCP: the name of the zonal NEGs GKE creates for
    Kong and the backend service references."""
    return target_group_name(region.cluster_name)


def target_group_name(cluster: str) -> str:
    """lb_target_name from the cluster's name alone: resolve needs it for the load balancer controller's identity
    before the RegionPlan exists."""
    return f"{cluster}-kong"


def health_check_path(plan: PlatformPlan) -> str:
    """What the load balancers and the global DNS health checks request on Kong."""
    return plan.spec.edge.dns.health_check_path


def trusted_proxies(region: RegionPlan) -> tuple[str, ...]:
    """The peers whose client-address header Kong believes (its trusted_ips): the region's load balancer (its source
    ranges), and whatever opens the connection to Kong for a request another region's Kong forwards here, with the
    edge's headers unchanged: the internal gateway's last hop into Kong's pods. That is the forwarding Kong itself
    on Azure (the internal load balancer keeps the source), the proxy-only subnet's proxies on GCP (the internal
    proxy load balancer opens its own connections), and on AWS the regional load balancer already listed (the
    internal NLB's target). Without it a forwarded request counted against the address Kong saw: one rate-limit
    bucket for every client behind it, and that address in the logs."""
    import ipaddress
    peers = {x for c in region.through("internal-gateway") if c.dest.kind == "pods" for x in c.source.cidrs}
    nets = {ipaddress.ip_network(x) for x in [*region.addressing.lb_source_cidrs, *peers]}
    # the same addresses in as few ranges as they make (adjacent subnets merge): one line of the values file
    by_version = [sorted(n for n in nets if n.version == v) for v in (4, 6)]
    return tuple(str(n) for group in by_version for n in ipaddress.collapse_addresses(group))


def lb_hostnames(plan: PlatformPlan, region: RegionPlan) -> list[str]:
    """Names a region's load balancer answers for (its certificate covers them): its own, the weighted
    origin name, and the public hosts (the CDN forwards the viewer's Host)."""
    return [f"{region.name}.{plan.spec.organization.domain}", *shared_hostnames(plan)]


# The weighted origin name's label: origin.<domain>, which every region's load balancer answers for.
ORIGIN_HOST = "origin"


def shared_hostnames(plan: PlatformPlan) -> list[str]:
    """The names every region's load balancer certificate covers besides the region's own: the weighted origin name
    and the public hosts. Their validation records are the same for every certificate of one account or project
    (validated_by_global), so exactly one root may hold them."""
    domain = plan.spec.organization.domain
    dns = plan.spec.edge.dns
    return [f"{h}.{domain}" for h in (ORIGIN_HOST, dns.api_host, dns.app_host)]


# The clouds whose region certificates are validated by records in the public zone: ACM's CNAMEs (AWS), Certificate
# Manager's _acme-challenge CNAMEs (GCP). Azure's Application Gateways import their certificate (no record).
DNS_VALIDATED_CLOUDS = ("aws", "gcp")


def global_validation_hosts(plan: PlatformPlan) -> list[str]:
    """Host labels (under the domain) whose certificate validation records the global root holds: the public hosts,
    which its own certificate covers, and, when regions on the edge's cloud validate their certificates in the zone
    too, the weighted origin name their certificates share. The global root owns the zone and outlives every region:
    a region root holding a record another region's certificate renews against took it away when it was destroyed
    (a decommissioned region), and the other certificate's renewal failed months later, silently."""
    dns = plan.spec.edge.dns
    hosts = [dns.api_host, dns.app_host]
    cloud = edge_cloud(plan.spec)
    if cloud in DNS_VALIDATED_CLOUDS and any(r.cloud == cloud for r in plan.regions):
        hosts.append(ORIGIN_HOST)
    return hosts


def validated_by_global(plan: PlatformPlan, region: RegionPlan) -> list[str]:
    """The names of the region's certificate whose validation records the global root holds (the region root neither
    creates nor destroys them; it checks that they exist): the shared names, when the region runs on the edge's
    cloud. A region on another cloud validates in that cloud's own way (a GCP region behind CloudFront: the DNS
    authorisations of compiler/targets/terraform/gcp.py), which the global root has no provider for; an Azure region
    validates nothing in the zone (its gateway's certificate is imported)."""
    if region.cloud != edge_cloud(plan.spec) or region.cloud not in DNS_VALIDATED_CLOUDS:
        return []
    domain = plan.spec.organization.domain
    held = {f"{h}.{domain}" for h in global_validation_hosts(plan)}
    return [h for h in lb_hostnames(plan, region) if h in held]


def gke_neg_annotation(region: RegionPlan) -> dict[str, str]:
    """The Kong proxy Service annotation that makes GKE create standalone zonal NEGs of Kong's pods on
    the TLS port, named as Terraform's backend service expects them (`exposed_ports` keys are Service
    ports, which is why the Service port equals the container port)."""
    import json  # only the helm target writes this annotation: validate does not import json (issue 16)
    value = {"exposed_ports": {str(KONG_PROXY_TLS_PORT): {"name": lb_target_name(region)}}}
    return {GKE_NEG_ANNOTATION: json.dumps(value)}


def kong_needs_render(region: RegionPlan) -> bool:
    """Whether the region's kong.yaml carries a decK template for a secret input (the JWT issuer key).

    DB-less Kong reads the file as it is and cannot expand `${{ env ... }}`; decK can. Such a file is
    rendered at deploy time (`deck file render --populate-env-vars`) into kong.rendered.yaml beside it,
    which the helmfile hands to Kong. That copy holds a secret's value: never committed (.gitignore).
    """
    return any(r.auth != "none" for s in region.services for r in s.routes)


def kong_declarative_file(region: RegionPlan) -> str:
    """The Kong file the helmfile passes, relative to generated/."""
    name = "kong.rendered.yaml" if kong_needs_render(region) else "kong.yaml"
    return f"kong/{region.name}/{name}"


def kong_render_command(region: RegionPlan) -> str:
    return (f"deck file render --populate-env-vars generated/kong/{region.name}/kong.yaml "
            f"-o generated/{kong_declarative_file(region)}")


# ---------------------------------------------------------------- the edge's providers

# Each provider and the cloud it belongs to; an edge is one cloud's DNS and CDN together.
EDGE_PROVIDER_CLOUD = {"route53": "aws", "cloudfront": "aws", "azure_dns": "azure", "front_door": "azure",
                       "cloud_dns": "gcp", "cloud_cdn": "gcp"}
DNS_PROVIDER = {"aws": "route53", "azure": "azure_dns", "gcp": "cloud_dns"}
CDN_PROVIDER = {"aws": "cloudfront", "azure": "front_door", "gcp": "cloud_cdn"}


def default_edge_cloud(spec) -> str:
    """The edge's cloud when the spec names no provider: a one-cloud platform gets its own cloud's edge;
    several clouds keep AWS when it is among them (the reference), else the primary cloud."""
    clouds = sorted({r.cloud for r in spec.regions.values()} or set(spec.clouds))
    if len(clouds) == 1:
        return clouds[0]
    if "aws" in spec.clouds:
        return "aws"
    primary = [c for c, v in spec.clouds.items() if v.role == "primary"]
    return primary[0] if primary else clouds[0]


def dns_provider(spec) -> str:
    edge = spec.edge
    if edge.dns.provider:
        return edge.dns.provider
    return DNS_PROVIDER[EDGE_PROVIDER_CLOUD[edge.cdn.provider] if edge.cdn.provider else default_edge_cloud(spec)]


def cdn_provider(spec) -> str:
    edge = spec.edge
    if edge.cdn.provider:
        return edge.cdn.provider
    return CDN_PROVIDER[EDGE_PROVIDER_CLOUD[edge.dns.provider] if edge.dns.provider else default_edge_cloud(spec)]


def dns_cloud(spec) -> str:
    """The cloud holding the public zone (and every record the region roots write into it)."""
    return EDGE_PROVIDER_CLOUD[dns_provider(spec)]


def edge_cloud(spec) -> str:
    """The cloud of the CDN and its WAF (the global root's own resources)."""
    return EDGE_PROVIDER_CLOUD[cdn_provider(spec)]


def dns_provider_region(spec) -> str:
    """The AWS region of the `aws` provider a non-AWS region root writes its public records with (Route 53 is
    global; the region only places the provider's other calls)."""
    return spec.clouds["aws"].state.region if "aws" in spec.clouds else "us-east-1"


# CloudFront's certificates, CLOUDFRONT-scope web ACLs and the global root's own resources live here.
CLOUDFRONT_REGION = "us-east-1"


# Front Door sets this header on every request it sends to an origin, to the id of the profile that sent it
# (Microsoft Learn, "Secure traffic to Azure Front Door origins"): the check Microsoft documents for origins.
FRONT_DOOR_ID_HEADER = "X-Azure-FDID"


def global_name(spec) -> str:
    """The global root's name prefix: its resource group and Front Door profile (Azure edge), its tags' Name."""
    return f"{spec.organization.name}-global"


@dataclass(frozen=True)
class OriginVerify:
    """What a region's WAF requires of every request, so that only this platform's edge reaches it: the header
    `header` with a value only the edge sends, except on `exempt_path` (Route 53's and the AWS internal gateway's
    health checkers probe the load balancer directly and cannot add a header).

    CloudFront (names.ORIGIN_VERIFY_HEADER): the global root makes a Secrets Manager secret in `secret_region` and
    puts its current value on every origin; each region root reads it there (its data source names the region: AWS
    provider 6's per-resource region; a GCP or Azure root through the Route 53 provider it already has).
    Front Door (FRONT_DOOR_ID_HEADER): Front Door itself sends the id of the profile `front_door_profile` (in the
    resource group of that name); an Azure region root reads it."""

    header: str
    exempt_path: str
    secret_name: str = ""
    secret_region: str = ""
    front_door_profile: str = ""


def origin_verify(plan: PlatformPlan, region: RegionPlan | None = None) -> OriginVerify | None:
    """The origin check of the edge (for `region`: None where its root cannot read the value). CloudFront with
    Route 53: every root has the aws provider. Front Door: the Azure regions (their azurerm provider). None for a
    Cloud CDN edge: not built yet (its front ends are shared by every customer too)."""
    from compiler.ir.names import ORIGIN_VERIFY_HEADER
    spec = plan.spec
    if edge_cloud(spec) == "aws" and dns_cloud(spec) == "aws":
        return OriginVerify(header=ORIGIN_VERIFY_HEADER, exempt_path=health_check_path(plan),
                            secret_name=f"{spec.organization.name}/edge/origin-verify", secret_region=CLOUDFRONT_REGION)
    if edge_cloud(spec) == "azure" and (region is None or region.cloud == "azure"):
        return OriginVerify(header=FRONT_DOOR_ID_HEADER, exempt_path=health_check_path(plan),
                            front_door_profile=global_name(spec))
    return None


# ---------------------------------------------------------------- what the edge caches

# The request header that carries a client's credential: Kong's jwt plugin reads the token from it alone (the
# plugin's header_names default, `authorization`; its cookie_names default is empty and the gateway sets
# uri_param_names to none), and the oauth2 plugin reads its bearer token from it.
CREDENTIAL_HEADER = "Authorization"
# CloudFront's default quota of cache behaviors per distribution, the default one included (Quotas, "General
# quotas on distributions": 75, adjustable).
CLOUDFRONT_CACHE_BEHAVIORS = 75


def is_api_route(plan: PlatformPlan, route) -> bool:
    """Whether a route serves the API rather than the web app's static files: it answers on the API host (a
    route without hosts does) or the gateway authenticates it."""
    api = f"{plan.spec.edge.dns.api_host}.{plan.spec.organization.domain}"
    return route.auth != "none" or not route.hosts or api in route.hosts


def api_path_prefixes(plan: PlatformPlan) -> tuple[str, ...]:
    """The path prefixes of the API routes of every region, sorted, without those a shorter one covers. Kong
    matches a prefix as a plain string prefix (`/api/orders` also takes `/api/orders-x/1`), as a CloudFront path
    pattern `<prefix>*` does; `/` covers every path.

    The edge never keeps an API response on its own default TTL: a service's reply to one client is not the
    next client's, and a read must see the last write. CloudFront caches these paths only for as long as the
    response's Cache-Control or Expires asks, keyed on the credential; Cloud CDN bypasses its cache for every
    request that carries a credential; Front Door caches nothing."""
    prefixes = sorted({p for r in plan.regions for s in r.services for route in s.routes if is_api_route(plan, route)
                       for p in route.paths})
    kept: list[str] = []
    for p in prefixes:  # sorted: a covering prefix comes before every prefix it covers
        if not any(p.startswith(k) for k in kept):
            kept.append(p)
    return tuple(kept)
