"""Terraform target: the global root (public DNS, health-checked weighted routing, CDN, edge WAF).

The edge is one cloud's (compiler.ir.edge: the spec's edge.dns.provider / edge.cdn.provider, else the
platform's clouds): Route 53 + CloudFront + WAFv2 (templates global/), Azure DNS + Front Door Premium
(global/azure/) or Cloud DNS + Cloud CDN with Cloud Armor (global/gcp/). Every region is reached as
<region>.<domain>, a name the region's own root points at its load balancer.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan
from compiler.ir.dr_serving import failed_over_regions
from compiler.ir.edge import (CLOUDFRONT_MAX_ORIGIN_READ_TIMEOUT, CREDENTIAL_HEADER, FRONT_DOOR_RESPONSE_TIMEOUT_RANGE,
                              api_path_prefixes, edge_cloud, edge_response_timeout, global_name,
                              global_validation_hosts, origin_verify)
from compiler.ir.home_routing import (ORIGINS_PER_DISTRIBUTION, SERVING_KEY_PREFIX, WEIGHTED_ORIGIN_ID,
                                      edge_routes_homes, home_origin_id, home_origin_name, routing_store_name)
from compiler.ir.names import CLIENT_ADDRESS_HEADER, cloud_dns_zone_name
from compiler.targets.terraform.common import cloudwatch_retention, provider_requirements, state_backend
from compiler.targets.terraform.edge_routing import kvs_entries, uses_kvs_map, viewer_request_code
from compiler.targets.terraform.edge_rules import home_rules

# The generated franchise map of the routing KeyValueStore (registry mode), beside the global root's .tf files.
FRANCHISE_HOMES_FILE = "franchise-homes.json"

PRICE_CLASS = {"all": "PriceClass_All", "200": "PriceClass_200", "100": "PriceClass_100"}
CLOUDFRONT_TLS = {"1.3": "TLSv1.3_2025", "1.2": "TLSv1.2_2025"}
ROUTE53_MAX_WEIGHT = 255
# Letters and digits of the origin secret the global root makes (the regions' WAF modules take 32 to 128).
ORIGIN_VERIFY_LENGTH = 64


def weights(plan: PlatformPlan) -> dict[str, int]:
    """Route 53 weights (0-255 integers) from the traffic shares: the shares themselves when they are
    whole numbers that fit, else scaled so the largest share gets 255."""
    shares = {r.name: r.traffic_share for r in plan.regions}
    if all(float(v).is_integer() for v in shares.values()) and max(shares.values()) <= ROUTE53_MAX_WEIGHT:
        return {n: int(v) for n, v in shares.items()}
    top = max(shares.values()) or 1
    return {n: round(v / top * ROUTE53_MAX_WEIGHT) for n, v in shares.items()}


# Where each edge's templates are (the AWS edge keeps the original paths).
TEMPLATES = {"aws": "global", "azure": "global/azure", "gcp": "global/gcp"}
# Front Door's viewer minimum: the azurerm provider (~> 4.0) takes TLS12 only (R039 refuses 1.3 there).
FRONT_DOOR_TLS = {"1.2": "TLS12"}
GCP_TLS = {"1.3": "TLS_1_3", "1.2": "TLS_1_2"}
FRONT_DOOR_MAX_WEIGHT = 1000
# Cloud DNS health checks of external endpoints probe from exactly three source regions, at least every 30 s.
GCP_HEALTH_SOURCE_REGIONS = ("us-east4", "europe-west1", "asia-southeast1")
GCP_SOURCE_REGION_MIN_INTERVAL = 30


def global_tags(plan: PlatformPlan) -> dict[str, str]:
    """The regions' common tags, with region = global; `cloud`, when the regions share one, names the
    edge's cloud (the global root's resources are the edge's)."""
    first = dict(plan.regions[0].tags)
    tags = {k: v for k, v in first.items() if all(r.tags.get(k) == v for r in plan.regions)}
    tags["region"] = "global"
    if "cloud" in tags:
        tags["cloud"] = edge_cloud(plan.spec)
    return tags


def files(plan: PlatformPlan) -> dict[str, tuple[str, dict]]:
    spec = plan.spec
    org, edge, settings = spec.organization, spec.edge, spec.settings
    state_cloud = "aws" if "aws" in spec.clouds else next(iter(spec.clouds))
    backend_type, backend = state_backend(plan, state_cloud, "global")
    retention = cloudwatch_retention(settings.security.audit_log_retention_days)
    w = weights(plan)
    # DR (compiler/ir/dr_serving.py): a failed-over region is out of the edge's weighted origin, declaratively: weight
    # 0 in origin.<domain> (Route 53, Cloud DNS; Front Door: its origin disabled), as the runbook's step 2 does by hand
    lost = failed_over_regions(plan)
    wait = edge_response_timeout(plan)  # how long the CDN waits for a region (compiler/ir/edge.py)
    context = {
        "org": org,
        "name": global_name(spec),
        "tags": global_tags(plan),
        "dns_account": spec.clouds["aws"].account if "aws" in spec.clouds else None,
        "routing": edge.dns.routing,
        "regions": {r.name: {"hostname": f"{r.name}.{org.domain}", "weight": 0 if r.name in lost else w[r.name]}
                    for r in plan.regions},
        "failed_over": list(lost),
        "edge": {
            "public_hosts": [edge.dns.api_host, edge.dns.app_host],
            "health_check_path": edge.dns.health_check_path,
            "health_check_interval": edge.dns.health_check_interval_seconds,
            "failure_threshold": edge.dns.failure_threshold,
            "ttl": edge.dns.ttl_seconds,
            "default_ttl": edge.cdn.default_ttl_seconds,
            "max_ttl": edge.cdn.max_ttl_seconds,
            "price_class": PRICE_CLASS[edge.cdn.price_class],
            "blocked_countries": list(edge.waf.blocked_countries),
            "minimum_protocol_version": CLOUDFRONT_TLS[edge.tls_min_version],
            "ddos_protection": edge.ddos_protection,
            "cache_key_header": settings.gateway.hash_on_header,
            # CloudFront Functions see header names in lower case
            "client_address_header": CLIENT_ADDRESS_HEADER.lower(),
            "log_retention_days": retention,
            # CloudFront caps the wait under its default quota
            "response_timeout": wait,
            "cloudfront_read_timeout": min(wait, CLOUDFRONT_MAX_ORIGIN_READ_TIMEOUT),
        },
        "rotation_days": settings.security.kms_key_rotation_days,
        "origin_verify": origin_verify(plan),
        "origin_verify_length": ORIGIN_VERIFY_LENGTH,
        "waf": {"rate_limit_per_5min": edge.waf.rate_limit_per_5min, "blocked_countries": list(edge.waf.blocked_countries),
                "managed_rules": edge.waf.managed_rules, "log_retention_days": retention},
        "backend_type": backend_type,
        "backend": backend,
        # the header carrying a client's credential, which the edge never answers from another client's cache entry
        "credential_header": CREDENTIAL_HEADER,
    }
    cloud = edge_cloud(spec)
    if cloud == "aws":
        context["home_routing"] = home_routing(plan)
        context["cache"] = cloudfront_cache(plan)
        # the CDN certificate's names: the public hosts, and origin.<domain> when AWS regions' certificates cover it,
        # so that this root holds the validation record every certificate of the account shares (compiler/ir/edge.py)
        context["edge"]["certificate_names"] = [f"{h}.{org.domain}" for h in global_validation_hosts(plan)]
    else:  # Front Door / Cloud CDN: native rules from the same ranges
        context["home_routing"] = home_rules(plan)
    if cloud == "azure":
        context["edge"]["minimum_tls_version"] = FRONT_DOOR_TLS.get(edge.tls_min_version, "TLS12")
        # Front Door waits 16-240 s: longer than a short Kong timeout is harmless, a longer one is cut at 240
        lo, hi = FRONT_DOOR_RESPONSE_TIMEOUT_RANGE
        context["edge"]["response_timeout"] = max(lo, min(hi, context["edge"]["response_timeout"]))
        context["edge"]["client_address_header"] = CLIENT_ADDRESS_HEADER
        # Front Door weights are 1 to 1000: a failed-over region keeps its weight and its origin is disabled instead
        context["regions"] = {n: {**r, "weight": max(1, min(FRONT_DOOR_MAX_WEIGHT, w[n]))}
                              for n, r in context["regions"].items()}
        context["location"] = next(r.cloud_region for r in plan.regions if r.cloud == "azure")
        context["waf"] = {k: v for k, v in context["waf"].items() if k != "log_retention_days"}
        for k in ("price_class", "minimum_protocol_version", "default_ttl", "max_ttl", "cache_key_header", "ddos_protection",
                  "cloudfront_read_timeout"):
            context["edge"].pop(k)
    elif cloud == "gcp":
        context["edge"]["minimum_tls_version"] = GCP_TLS[edge.tls_min_version]
        context["edge"]["client_address_header"] = CLIENT_ADDRESS_HEADER
        context["edge"]["health_check_interval"] = max(GCP_SOURCE_REGION_MIN_INTERVAL, edge.dns.health_check_interval_seconds)
        context["edge"]["health_check_source_regions"] = list(GCP_HEALTH_SOURCE_REGIONS)
        for k in ("price_class", "log_retention_days", "minimum_protocol_version", "cloudfront_read_timeout"):
            context["edge"].pop(k)
        context["regions"] = {r.name: {**context["regions"][r.name], "lb_name": r.cluster_name} for r in plan.regions}
        context["region"] = next(r.cloud_region for r in plan.regions if r.cloud == "gcp")
        context["zone_name"] = cloud_dns_zone_name(plan.spec.organization.domain)
        # host label => its Certificate Manager DNS authorisation, which the regions' certificates use too (gcp.py)
        context["edge"]["dns_authorizations"] = global_dns_authorizations(plan)
        context["waf"] = {**{k: v for k, v in context["waf"].items() if k != "log_retention_days"},
                          "ddos_protection": edge.ddos_protection}
    if cloud != "aws":
        context["account"] = spec.clouds[cloud].account
    out = {"versions.tf": ("versions.tf.j2", provider_requirements([cloud])),
           "backend.tf": ("backend.tf.j2", context)}
    for part in ("main", "providers", "dns", "cdn", "outputs"):
        out[f"{part}.tf"] = (f"{TEMPLATES[cloud]}/{part}.tf.j2", context)
    return out


def cloudfront_cache(plan: PlatformPlan) -> dict:
    """The distribution's cache behaviors: one per API path prefix (compiler/ir/edge.py: api_path_prefixes) with the
    API cache policy (nothing kept unless the response asks, keyed on the credential), and the default behavior with
    the spec's TTLs for everything else (the web app); every path is the API's when one of its prefixes is `/`."""
    prefixes = api_path_prefixes(plan)
    return {"api_everywhere": prefixes == ("/",), "api_path_patterns": [f"{p}*" for p in prefixes if p != "/"]}


def home_routing(plan: PlatformPlan) -> dict:
    """The CloudFront side of home-region routing (compiler/ir/home_routing.py): the viewer-request function's
    code, one origin per region (its own public name), and the routing KeyValueStore."""
    domain = plan.spec.organization.domain
    enabled = edge_routes_homes(plan.spec)
    return {
        "enabled": enabled,
        "code": viewer_request_code(plan),
        "weighted_origin_id": WEIGHTED_ORIGIN_ID,
        "origins": [{"id": home_origin_id(r.name), "region": r.name, "domain": home_origin_name(r.name, domain)}
                    for r in plan.regions] if enabled else [],
        "kvs_map": uses_kvs_map(plan),
        "kvs_file": FRANCHISE_HOMES_FILE,
        "serving_key_prefix": SERVING_KEY_PREFIX,
        "store_name": routing_store_name(plan.spec),
        # the origins past CloudFront's default quota (0: within it)
        "origins_over_quota": max(0, len(plan.regions) + 1 - ORIGINS_PER_DISTRIBUTION) if enabled else 0,
        "origin_quota": ORIGINS_PER_DISTRIBUTION,
    }


def extra_files(plan: PlatformPlan) -> dict[str, str]:
    """Files of the global root that are not templates: the routing KeyValueStore's franchise map (registry mode)."""
    if edge_cloud(plan.spec) != "aws" or not uses_kvs_map(plan):
        return {}
    import json
    return {FRANCHISE_HOMES_FILE: json.dumps(kvs_entries(plan), indent=0, sort_keys=True) + "\n"}


def global_dns_authorizations(plan: PlatformPlan) -> dict[str, str]:
    """Google edge: host label => the name of the Certificate Manager DNS authorisation the global root makes for it
    (compiler/ir/edge.py global_validation_hosts: the public hosts, and origin.<domain>, which the GCP regions'
    certificates cover). One per name and project: its record, _acme-challenge.<name>, is one CNAME in the zone."""
    from compiler.ir.names import fit
    name = global_name(plan.spec)
    return {h: fit(f"{name}-{h}", 63) for h in global_validation_hosts(plan)}
