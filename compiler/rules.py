"""Semantic rules: what the schema alone cannot say. Each has a stable code, listed in the docs.

`spec` rules run on the validated models and guard the resolver's assumptions; `plan` rules run
on the resolved IR and check derived numbers (capacity, connection budgets). A rule yields
findings; the pipeline positions them and applies one policy (errors stop the compile; warnings
print, and `--strict` makes them errors).
"""

from __future__ import annotations

import math
import ipaddress
import re
from compiler.records import dataclass
from typing import Callable, Iterator

from compiler.model.base import cpu_millicores, memory_mib

SAFE_REGION = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
RESERVED_REGION_NAMES = {"global", "modules", "regions", "all"}
TOLERANCE = 1e-6

# Extensions each managed PostgreSQL service cannot load (provider documentation, 2025).
MANAGED_PG_UNSUPPORTED = {"aws": {"timescaledb"}, "gcp": {"timescaledb"}, "azure": set()}
# (cloud, extension) -> the newest PostgreSQL major the managed service offers it for: Azure Database for
# PostgreSQL flexible server lists TimescaleDB for PostgreSQL 12-16, not 17 (Microsoft Learn, "Extensions and
# modules by engine version", 2025).
MANAGED_PG_EXTENSION_MAX_VERSION = {("azure", "timescaledb"): 16}
MANAGED_PG_MAX_REPLICAS = {"aws": 15, "gcp": 10, "azure": 5}
MAX_SHARDS = 10_000  # shard databases platform-wide (the reference has 20); R021
# Sizes Azure Database for PostgreSQL flexible server offers in the tiers platformc emits (General Purpose D-series,
# Memory Optimized E-series, v3-v5; Microsoft Learn, "Compute options in Azure Database for PostgreSQL", 2025).
AZURE_PG_SIZE = re.compile(r"^Standard_[DE](2|4|8|16|20|32|48|64|96)a?d?s_v[345]$")
MANAGED_SEARCH = {"aws"}  # OpenSearch; GCP and Azure have no first-party managed Elasticsearch


@dataclass(frozen=True)
class Finding:
    """What a rule found: a path (in the spec, or in `region`'s merged settings) and a message."""

    path: tuple  # spec path (global) or settings path within `region`
    message: str
    region: str | None = None  # set when `path` is a path in that region's merged settings


@dataclass(frozen=True)
class Rule:
    """A semantic rule: code, title, explanation, stage (spec or plan), severity and check."""

    code: str
    title: str
    explanation: str
    stage: str  # "spec" or "plan"
    severity: str  # "error" or "warning"
    check: Callable


RULES: list[Rule] = []


def rule(code: str, title: str, explanation: str, stage: str = "spec", severity: str = "error"):
    def wrap(fn):
        RULES.append(Rule(code, title, explanation, stage, severity, fn))
        return fn
    return wrap


def _close(a: float, b: float) -> bool:
    return abs(a - b) < TOLERANCE


# ---------------------------------------------------------------- traffic and clouds

@rule("R001", "Region traffic shares sum to 100 %",
      "DNS weights come from the regions' traffic shares, so together they must cover all traffic.")
def traffic_total(p, settings) -> Iterator[Finding]:
    total = sum(r.traffic_share for r in p.regions.values())
    if not _close(total, 100):
        yield Finding(("regions",), f"region traffic shares sum to {total:g} %, not 100 %: change the regions' traffic_share so they add up to 100")


@rule("R002", "Each geo's share equals its regions' shares",
      "A geo's traffic share must equal the traffic shares of its regions summed, and geo shares sum to 100 %.")
def traffic_geo(p, settings):
    total = sum(g.traffic_share for g in p.geos.values())
    if not _close(total, 100):
        yield Finding(("geos",), f"geo traffic shares sum to {total:g} %, not 100 %: change the geos' traffic_share so they add up to 100")
    for name, geo in p.geos.items():
        got = sum(r.traffic_share for r in p.regions.values() if r.geo == name)
        if not _close(got, geo.traffic_share):
            yield Finding(("geos", name, "traffic_share"),
                          f"geo {name} declares {geo.traffic_share:g} % but its regions sum to {got:g} %: set geos.{name}.traffic_share "
                          f"to {got:g}, or change its regions' traffic_share")


@rule("R003", "Cloud split sums to 100 % and matches the regions",
      "Workload shares of the clouds sum to 100 %, every region's cloud is declared, and each cloud's "
      "share equals the traffic shares of the regions assigned to it.")
def cloud_split(p, settings):
    total = sum(c.workload_share for c in p.clouds.values())
    if not _close(total, 100):
        yield Finding(("clouds",), f"cloud workload shares sum to {total:g} %, not 100 %: change the clouds' "
                      f"workload_share so they add up to 100 (each equal to its regions' traffic shares)")
    for name, region in p.regions.items():
        if region.cloud not in p.clouds:
            yield Finding(("regions", name, "cloud"), f"cloud {region.cloud!r} is not declared under `clouds`: add "
                          f"clouds.{region.cloud} (account, registry, state, workload_share) or move {name} to a declared cloud")
    for cname, cloud in p.clouds.items():
        got = sum(r.traffic_share for r in p.regions.values() if r.cloud == cname)
        if not _close(got, cloud.workload_share):
            yield Finding(("clouds", cname, "workload_share"),
                          f"{cname} carries {cloud.workload_share:g} % but its regions' traffic shares sum to {got:g} %: "
                          f"set clouds.{cname}.workload_share to {got:g}, or change its regions' traffic_share to sum "
                          f"to {cloud.workload_share:g}")


# ---------------------------------------------------------------- regions

@rule("R004", "Region names are safe directory names",
      "A region name becomes a directory, a Kubernetes label and a Terraform label: a lower-case DNS "
      "label of 2-40 characters, and not one of the names the output tree uses itself (global, modules, regions, all).")
def region_names(p, settings):
    for name in p.regions:
        if not SAFE_REGION.fullmatch(name):  # fullmatch: `$` alone admits a trailing newline
            yield Finding(("regions", name), f"region name {name!r} must be a lower-case DNS label (a-z, 0-9, -): rename it, e.g. "
                                          f"{re.sub('[^a-z0-9-]+', '-', name.lower()).strip('-')[:40] or 'region-1'!r}")
        elif name in RESERVED_REGION_NAMES:
            yield Finding(("regions", name), f"region name {name!r} is reserved by the output layout: rename the region")


@rule("R005", "Regions name a declared geo",
      "Every region belongs to one of the geos declared under `geos`.")
def region_geo(p, settings):
    for name, region in p.regions.items():
        if region.geo not in p.geos:
            yield Finding(("regions", name, "geo"), f"geo {region.geo!r} is not declared under `geos`: use one of "
                          f"{', '.join(sorted(p.geos)) or '(none)'} or declare it")


@rule("R006", "One primary region per geo",
      "Each geo has exactly one region with role `primary`: it takes the geo's traffic on failover.")
def one_primary(p, settings):
    for gname in p.geos:
        primaries = [n for n, r in p.regions.items() if r.geo == gname and r.role == "primary"]
        if len(primaries) != 1:
            where = ("regions", primaries[1], "role") if len(primaries) > 1 else ("geos", gname)
            yield Finding(where, f"geo {gname} has {len(primaries)} primary regions ({', '.join(primaries) or 'none'}); it needs exactly one: "
                              "set `role: primary` on one of its regions and `secondary` or `standard` on the others")


@rule("R007", "DR partners exist and differ from the region",
      "A region's `dr_partner` names another declared region; it holds the standby database, "
      "replicated objects and backup copies.")
def dr_partner(p, settings):
    for name, region in p.regions.items():
        if region.dr_partner == name:
            yield Finding(("regions", name, "dr_partner"), "a region cannot be its own DR partner: name another region")
        elif region.dr_partner not in p.regions:
            yield Finding(("regions", name, "dr_partner"), f"DR partner {region.dr_partner!r} is not a declared region: name one of "
                          f"{', '.join(sorted(n for n in p.regions if n != name))}")


@rule("R008", "DR partners respect data residency",
      "When a geo declares `data_residency`, its regions' DR partners must be in the same geo: "
      "replicated data may not leave it.")
def dr_residency(p, settings):
    for name, region in p.regions.items():
        partner = p.regions.get(region.dr_partner)
        geo = p.geos.get(region.geo)
        if partner and geo and geo.data_residency and partner.geo != region.geo:
            yield Finding(("regions", name, "dr_partner"),
                          f"{name} is in {region.geo} (data residency: {', '.join(geo.data_residency)}) "
                          f"but its DR partner {region.dr_partner} is in {partner.geo}: pick a DR partner in {region.geo}")


@rule("R009", "DR partner on the same cloud",
      "Object replication and backup copies are native only within one cloud; a cross-cloud partner "
      "gets its standby database but no native bucket replication or backup copy.", severity="warning")
def dr_same_cloud(p, settings):
    for name, region in p.regions.items():
        partner = p.regions.get(region.dr_partner)
        if partner and partner.cloud != region.cloud:
            yield Finding(("regions", name, "dr_partner"),
                          f"DR partner {region.dr_partner} runs on {partner.cloud}, {name} on {region.cloud}: replication crosses "
                          "clouds; pick a partner on the same cloud if one fits")


@rule("R051", "A region with a cross-region standby has its DR partner on the same cloud",
      "The standby streams WAL over the inter-region network (VPC/VNet peering), which links the regions of one "
      "cloud only; a partner on another cloud would leave the standby unreachable.")
def dr_standby_same_cloud(p, settings):
    for name, region in p.regions.items():
        partner = p.regions.get(region.dr_partner)
        s = settings.get(name)  # none in the early pass (top level only): the merged settings decide
        if s is None or partner is None or partner.cloud == region.cloud:
            continue
        if s.datastores.postgres.deployment == "self-managed" and s.datastores.postgres.cross_region_standby:
            same = sorted(n for n, r in p.regions.items() if n != name and r.cloud == region.cloud)
            fix = (f"pick a DR partner on {region.cloud} ({', '.join(same)})" if same else
                   f"add a second {region.cloud} region to partner with")
            yield Finding(("regions", name, "dr_partner"),
                          f"DR partner {region.dr_partner} runs on {partner.cloud}, {name} on {region.cloud}: the "
                          f"cross-region standby needs the inter-region network, which peers one cloud's regions only; "
                          f"{fix}, or set datastores.postgres.cross_region_standby: false for {name}")


@rule("R061", "An Azure budget takes at most four alert thresholds, each at most 1,000 %",
      "Each Azure region root's Consumption budget carries one notification per `cost.alert_thresholds_percent` "
      "entry plus one on the forecast, and Azure accepts at most five notifications a budget, each threshold at most "
      "1,000 %: a spec with more, or higher, thresholds fails at apply in every Azure region.")
def azure_budget_notifications(p, settings):
    if not any(r.cloud == "azure" for r in p.regions.values()):
        return
    thresholds = p.cost.alert_thresholds_percent
    if len(thresholds) > 4:
        yield Finding(("cost", "alert_thresholds_percent"),
                      f"{len(thresholds)} thresholds, but an Azure budget takes five notifications, one of them the "
                      f"forecast: keep at most 4 thresholds while any region runs on Azure")
    high = [t for t in thresholds if t > 1000]
    if high:
        yield Finding(("cost", "alert_thresholds_percent"),
                      f"threshold{'s' * (len(high) > 1)} {', '.join(map(str, high))} % over the 1,000 % an Azure budget "
                      f"notification accepts: lower {'them' if len(high) > 1 else 'it'}")


@rule("R064", "Names made from the organization and region names fit the clouds' rules",
      "Each region's resources are named from `<org>-<region>` (up to 81 characters), the global root's from "
      "`<org>-global`; the clouds limit many names to fewer characters and characters of their own, and some names are "
      "cut to fit. Refused: a name over its cloud's limit (among them an AWS target group `<org>-<region>-kong`, 32 "
      "characters; a GKE cluster, 40, and a GCP subnetwork `<org>-<region>-private-<zone>`, 63; the Azure disk backup "
      "vault `<org>-<region>-disks`, 50, and the AKS DNS prefix, 54; data host names, DNS labels of 63), a name against "
      "its cloud's characters (no `--` in a Key Vault, an Azure cache, an RDS or ElastiCache name; no AWS load "
      "balancer starting `internal-`; no Cloud Storage bucket with `google`), and two resources given the same name "
      "where the cloud needs it unique: Azure Key Vaults (the first 24 characters of `<org>-<region>`, 20 for the AKS "
      "and certificate vaults) and storage accounts (the first 22 of `<org><region>` without hyphens) are global, as "
      "are S3 and Cloud Storage buckets; GCP peerings and their DNS zones keep 63 characters of "
      "`<org>-<region>--<org>-<peer>`. Renaming a resource that exists replaces it (a vault, a storage account), so "
      "the names themselves never change: shorten or rename the region, or organization.name, before its first "
      "apply. Every limit and its source: compiler/ir/cloud_names.py.", stage="plan")
def derived_names_fit(plan):
    from compiler.ir.cloud_names import problems
    for region, message in problems(plan):
        yield Finding(("regions", region) if region else ("organization", "name"), message)


@rule("R060", "A DR partner can log in to the standby cluster it promotes",
      "After a region is lost, its DR partner promotes the standby cluster it runs and serves the lost region's shards "
      "through its own PgBouncer (the DR runbook, step 4). The cluster is a copy of the lost region's: its roles have "
      "the lost region's passwords, while the partner's PgBouncer logs in with its own auth password and the "
      "partner's services with the passwords kept beside it (compiler/ir/data_access.py). Both regions must name "
      "the same secret in datastores.pgbouncer.auth_password, or every login after the promotion fails. An `aws-sm:` "
      "name is read in each region's own Secrets Manager: replicate the secret to the partner's region (Secrets "
      "Manager replication keeps one value), which this rule cannot see.")
def dr_standby_same_passwords(p, settings):
    for name, region in p.regions.items():
        s, ps = settings.get(name), settings.get(region.dr_partner)
        if s is None or ps is None or region.dr_partner == name:
            continue
        pg = s.datastores.postgres
        if pg.deployment != "self-managed" or not pg.cross_region_standby \
                or ps.datastores.postgres.deployment != "self-managed":  # a managed partner runs no standby cluster
            continue
        mine, theirs = s.datastores.pgbouncer.auth_password, ps.datastores.pgbouncer.auth_password
        if mine != theirs:
            yield Finding(("regions", name, "dr_partner"),
                          f"after a promotion {region.dr_partner}'s PgBouncer serves {name}'s shards from the standby "
                          f"cluster, whose roles have {name}'s passwords ({mine!r} and the service passwords beside it), "
                          f"but it logs in with {region.dr_partner}'s ({theirs!r}): every login would fail; name the "
                          f"same secret in datastores.pgbouncer.auth_password for both regions, or set "
                          f"datastores.postgres.cross_region_standby: false for {name}")


@rule("R069", "A failed-over region's DR partner is not failed over itself",
      "`disaster_recovery.failed_over` declares a region lost: its DR partner serves its franchises from the standby "
      "cluster it promoted. A partner that is itself listed is lost too: nothing would serve either region's "
      "franchises, and the routing table, Kong's map and the edge would send them to a dead region.")
def dr_failed_over_partner(p, settings):
    lost = p.disaster_recovery.failed_over
    for i, name in enumerate(lost):
        region = p.regions.get(name)
        if region is not None and region.dr_partner != name and region.dr_partner in lost:
            yield Finding(("disaster_recovery", "failed_over", i),
                          f"{name} is failed over to its DR partner {region.dr_partner}, which is failed over itself: "
                          f"nothing would serve {name}'s franchises; remove one of them from "
                          f"disaster_recovery.failed_over (a region fails over only to a partner that serves)")


@rule("R070", "A failed-over region has a standby cluster in its DR partner",
      "The DR partner of a region in `disaster_recovery.failed_over` serves its shards from the standby cluster it "
      "runs of the region (self-managed PostgreSQL in both, `datastores.postgres.cross_region_standby`), promoted by "
      "the region runbook's step 3, through its own PgBouncer. Without that cluster there is nothing to serve from "
      "(recovery restores a base backup into new hosts instead), so the override would route the region's "
      "franchises to databases that do not exist. Each region is listed once.")
def dr_failed_over_standby(p, settings):
    seen = set()
    for i, name in enumerate(p.disaster_recovery.failed_over):
        where = ("disaster_recovery", "failed_over", i)
        region = p.regions.get(name)
        if region is None:
            yield Finding(where, f"{name!r} is not a declared region: name one of {', '.join(p.regions)}")
            continue
        if name in seen:
            yield Finding(where, f"{name} is listed twice: list each failed-over region once")
        seen.add(name)
        s, ps = settings.get(name), settings.get(region.dr_partner)
        if s is None or ps is None:  # the early pass (top level only): the merged settings decide
            continue
        pg = s.datastores.postgres
        if pg.deployment != "self-managed" or not pg.cross_region_standby \
                or ps.datastores.postgres.deployment != "self-managed":
            yield Finding(where, f"{name}'s DR partner {region.dr_partner} runs no standby cluster of it (its "
                          f"PostgreSQL is {pg.deployment}, cross_region_standby {str(pg.cross_region_standby).lower()}; "
                          f"{region.dr_partner}'s is {ps.datastores.postgres.deployment}): there is no promoted copy "
                          f"to serve its franchises from; remove {name} from disaster_recovery.failed_over and restore "
                          f"it from its backups instead (the region runbook)")


@rule("R053", "Each cloud's regions fit its peering limit",
      "The inter-region network peers every region with every other region of its cloud (compiler/ir/network.py), "
      "so a cloud with n regions needs n - 1 peerings per network: at most 125 on AWS (VPC peering), 25 on GCP "
      "(VPC Network Peering), 500 on Azure (VNet peering). A warning, not an error, so that synthetic scale specs "
      "still compile; `terraform apply` of the region past the limit fails at its peering.", severity="warning")
def peering_limits(p, settings):
    from compiler.ir.network import PEERING_LIMITS
    by_cloud: dict[str, list[str]] = {}
    for name, region in p.regions.items():
        by_cloud.setdefault(region.cloud, []).append(name)
    for cloud, names in by_cloud.items():
        limit = PEERING_LIMITS.get(cloud)
        if limit is not None and len(names) - 1 > limit:
            yield Finding(("regions", names[limit + 1], "cloud"),
                          f"{len(names)} regions run on {cloud}, which peers at most {limit + 1} regions with each "
                          f"other ({limit} peerings per network), so applying {names[limit + 1]}'s peerings fails; "
                          f"move {len(names) - limit - 1} of them to another cloud, or merge regions")


@rule("R010", "Region networks fit and do not overlap",
      "Each region's CIDR holds one private and one public subnet per zone at the configured prefix "
      "lengths, no two regions' CIDRs overlap (they are peered for replication), and explicit zone "
      "lists name at least `network.zones` zones.")
def networks(p, settings):
    from compiler.resolve import carve_subnets
    seen = []
    for name, region in p.regions.items():
        net = ipaddress.ip_network(region.cidr, strict=False)
        for other, onet in seen:
            if net.overlaps(onet):
                yield Finding(("regions", name, "cidr"), f"{region.cidr} overlaps {other}'s CIDR {onet}: give {name} a CIDR of its own")
        seen.append((name, net))
        s = settings.get(name)
        if s is None:
            continue
        if region.zones is not None and len(region.zones) < s.network.zones:
            yield Finding(("regions", name, "zones"), f"{len(region.zones)} zones listed, network.zones asks for "
                          f"{s.network.zones}: list {s.network.zones} zones or lower network.zones")
        yield from _zone_names(name, region, s.network.zones)
        if carve_subnets(region.cidr, s.network.zones, s.network.private_subnet_prefix, s.network.public_subnet_prefix) is None:
            yield Finding(("regions", name, "cidr"),
                          f"{region.cidr} cannot hold {s.network.zones} private /{s.network.private_subnet_prefix} "
                          f"and public /{s.network.public_subnet_prefix} subnets: use a larger CIDR, fewer zones or longer subnet prefixes")


# Zone names each cloud uses: AWS `<region><letter>`, GCP `<region>-<letter>`, Azure `1`-`3` (every Azure region with
# zones has exactly three). Derived names stop at 3: AWS and GCP regions differ beyond that (ca-central-1 has a, b
# and d; us-east1 has b, c and d), so more zones must be named.
DERIVED_ZONES_MAX = 3
AZURE_ZONES = ("1", "2", "3")


def _zone_names(name, region, count):
    cloud, cr = region.cloud, region.cloud_region
    if region.zones is None:
        from compiler.resolve import KNOWN_ZONES
        known = KNOWN_ZONES.get((cloud, cr))
        if known and count > len(known):
            yield Finding(("regions", name, "cloud_region"), f"{cr} has {len(known)} availability zones "
                          f"({', '.join(known)}), network.zones asks for {count}: set network.zones to {len(known)} or less")
        elif cloud == "azure" and count > len(AZURE_ZONES):
            yield Finding(("regions", name, "cloud_region"), f"Azure regions have 3 availability zones, network.zones "
                          f"asks for {count}: set network.zones to 3 or less")
        elif count > DERIVED_ZONES_MAX:
            yield Finding(("regions", name, "cloud_region"), f"network.zones asks for {count} zones; platformc derives "
                          f"at most {DERIVED_ZONES_MAX} names ({cloud} regions differ beyond that): list the zones of "
                          f"{cr} that exist in regions.{name}.zones, or lower network.zones")
        return
    # the zone form of the region's cloud, compiled only for a region that lists its zones (a regex per region)
    pattern, example = {"aws": (rf"^{re.escape(cr)}[a-z]$", f"{cr}a"), "gcp": (rf"^{re.escape(cr)}-[a-z]$", f"{cr}-b"),
                        "azure": (r"^[123]$", "1")}[cloud]
    form = (re.compile(pattern), example)
    seen = {}
    for i, zone in enumerate(region.zones):
        if not form[0].match(zone):
            yield Finding(("regions", name, "zones", i), f"{zone!r} is not a {cloud} zone of {cr}: write zone names "
                          f"like {form[1]!r}")
        elif zone in seen:
            yield Finding(("regions", name, "zones", i), f"zone {zone} is listed twice (also at index {seen[zone]}): "
                          "list each zone once")
        seen.setdefault(zone, i)


# ---------------------------------------------------------------- services

def _per_region(settings):
    for region, s in settings.items():
        yield region, s


@rule("R011", "Service references resolve",
      "A service's tier, node pool and `depends_on` entries name things that exist, a service does not "
      "depend on itself, and a GPU request lands on a pool with GPUs.")
def service_refs(p, settings):
    for region, s in _per_region(settings):
        for tname, tier in s.tiers.items():
            if tier.node_pool not in s.kubernetes.node_pools:
                yield Finding(("tiers", tname, "node_pool"), f"node pool {tier.node_pool!r} is not declared: use one of "
                              f"{', '.join(sorted(s.kubernetes.node_pools))}", region)
        for name, svc in s.services.items():
            if svc.tier not in s.tiers:
                yield Finding(("services", name, "tier"), f"tier {svc.tier!r} is not declared under `tiers`: use one of "
                              f"{', '.join(sorted(s.tiers))} or declare it", region)
                continue
            pool = svc.node_pool or s.tiers[svc.tier].node_pool
            if svc.node_pool and svc.node_pool not in s.kubernetes.node_pools:
                yield Finding(("services", name, "node_pool"), f"node pool {svc.node_pool!r} is not declared: use one of "
                              f"{', '.join(sorted(s.kubernetes.node_pools))}", region)
            for i, dep in enumerate(svc.depends_on):
                if dep == name:
                    yield Finding(("services", name, "depends_on", i), "a service cannot depend on itself: remove it from depends_on", region)
                elif dep not in s.services:
                    yield Finding(("services", name, "depends_on", i), f"service {dep!r} is not declared: remove it or declare the service", region)
            res = svc.resources or s.tiers[svc.tier].resources
            if res.requests.gpu and pool in s.kubernetes.node_pools and not s.kubernetes.node_pools[pool].gpus:
                yield Finding(("services", name), f"asks for GPUs but node pool {pool!r} has none: set node_pool to a pool with gpus, or drop the GPU request", region)


@rule("R012", "HPA minimum does not exceed maximum",
      "`replicas.min` <= `replicas.max` for every tier and service.")
def hpa_bounds(p, settings):
    for region, s in _per_region(settings):
        for kind, items in (("tiers", s.tiers), ("services", s.services)):
            for name, item in items.items():
                r = item.replicas
                if r is not None and r.min > r.max:
                    yield Finding((kind, name, "replicas", "min"), f"min replicas {r.min} exceed max {r.max}: lower min or raise max", region)


@rule("R013", "Requests do not exceed limits",
      "CPU and memory requests are at most the limits, and GPU requests equal the GPU limits (Kubernetes does not "
    "overcommit extended resources), for every tier and service.")
def requests_limits(p, settings):
    for region, s in _per_region(settings):
        for kind, items in (("tiers", s.tiers), ("services", s.services)):
            for name, item in items.items():
                res = item.resources
                if res is None:
                    continue
                rq, lm = res.requests, res.limits
                for what, a, b in (("cpu", cpu_millicores(rq.cpu), cpu_millicores(lm.cpu)),
                                   ("memory", memory_mib(rq.memory), memory_mib(lm.memory)),
                                   ("gpu", rq.gpu, lm.gpu)):
                    if a > b:
                        yield Finding((kind, name, "resources", "requests", what),
                                      f"{what} request {getattr(rq, what)} exceeds the limit {getattr(lm, what)}: lower the request or raise "
                                      "the limit", region)
                if rq.gpu != lm.gpu and rq.gpu <= lm.gpu:
                    # Extended resources cannot be overcommitted: Kubernetes rejects a pod whose GPU request differs.
                    yield Finding((kind, name, "resources", "requests", "gpu"),
                                  f"GPU request {rq.gpu} must equal the GPU limit {lm.gpu}: set both to the same count", region)


@rule("R014", "Canary weights sum to 100",
      "A canary rollout's stable and canary weights together route all traffic.")
def canary_weights(p, settings):
    for region, s in _per_region(settings):
        for name, svc in s.services.items():
            ro = svc.rollout
            if ro.type == "canary" and ro.stable_weight + ro.canary_weight != 100:
                yield Finding(("services", name, "rollout", "canary_weight"),
                              f"weights {ro.stable_weight} + {ro.canary_weight} = {ro.stable_weight + ro.canary_weight}, not 100: set "
                              f"stable_weight to {100 - ro.canary_weight}", region)


@rule("R023", "Route paths are canonical",
      "Gateway route paths have no `.` or `..` segments: Kong refuses them, and they would let a prefix match escape.")
def route_paths(p, settings):
    for region, s in _per_region(settings):
        for name, svc in s.services.items():
            for i, route in enumerate(svc.routes):
                for j, path in enumerate(route.paths):
                    if any(seg in (".", "..") for seg in path.split("/")):
                        yield Finding(("services", name, "routes", i, "paths", j), f"path {path!r} has a . or .. segment: write the path it means without them", region)


@rule("R024", "The edge WAF admits the gateway's rate",
      "The WAF's per-IP limit over 5 minutes should admit at least the gateway's sustained per-client rate over "
      "the same 5 minutes; otherwise the WAF, not the gateway, is the effective limit.", severity="warning")
def waf_vs_gateway(p, settings):
    # one finding at edge.waf.rate_limit_per_5min (the value to change), naming the regions whose gateway it undercuts
    limit = p.edge.waf.rate_limit_per_5min
    short = sorted(((s.gateway.requests_per_second, region) for region, s in _per_region(settings)
                    if limit < s.gateway.requests_per_second * 300), reverse=True)
    if short:
        rate = short[0][0]
        yield Finding(("edge", "waf", "rate_limit_per_5min"),
                      f"edge.waf.rate_limit_per_5min {limit} blocks an IP below the gateway's {rate}/s "
                      f"({rate * 300} per 5 min) in {', '.join(sorted(r for _, r in short))}; raise it to at least {rate * 300}")


# Kubernetes minors each Istio minor supports (istio.io supported releases; vendors' tested matrices).
ISTIO_KUBERNETES = {"1.24": (28, 31), "1.25": (29, 32), "1.26": (29, 32), "1.27": (30, 33), "1.28": (30, 34),
                    "1.29": (31, 35), "1.30": (32, 36)}


@rule("R025", "Istio supports the cluster's Kubernetes version",
      "The mesh's Istio minor version must list the cluster's Kubernetes minor among its supported versions.",
      severity="warning")
def istio_kubernetes(p, settings):
    for region, s in _per_region(settings):
        k = s.kubernetes
        span = ISTIO_KUBERNETES.get(k.istio_version)
        minor = int(k.version.split(".")[1])
        if k.istio and span and not span[0] <= minor <= span[1]:
            yield Finding(("kubernetes", "version"),
                          f"Istio {k.istio_version} supports Kubernetes 1.{span[0]}-1.{span[1]}, not {k.version}: set "
                          f"kubernetes.version within that range, or an Istio version that supports it", region)
        elif k.istio and not span:
            yield Finding(("kubernetes", "istio_version"), f"no support data for Istio {k.istio_version}; check its Kubernetes range", region)


@rule("R063", "Extended Kubernetes version support runs on EKS and GKE",
      "`kubernetes.version_support: extended` keeps a cluster on its version past standard support at the "
      "extended-support price: EKS's upgrade policy EXTENDED, GKE's EXTENDED release channel. AKS offers it as "
      "long-term support (Premium tier, support plan AKSLongTermSupport), which refuses clusters with the Application "
      "Gateway ingress controller or the KMS add-on; every Azure cluster of the platform runs both.")
def extended_support_clouds(p, settings):
    from compiler.ir.cluster_support import EXTENDED_SUPPORT_CLOUDS
    for region, s in _per_region(settings):
        cloud = p.regions[region].cloud
        if s.kubernetes.version_support == "extended" and cloud not in EXTENDED_SUPPORT_CLOUDS:
            yield Finding(("kubernetes", "version_support"),
                          f"{cloud} clusters cannot take extended support: AKS long-term support refuses the Application "
                          f"Gateway ingress controller and KMS add-ons the platform runs; keep version_support: standard "
                          f"for the Azure regions and upgrade within the community support window", region)


@rule("R015", "Node pools fit the cluster bounds",
      "Each pool's min <= max; the pools' floors sum to at least the cluster's `min_nodes` and their "
      "ceilings to at most its `max_nodes`.")
def pool_bounds(p, settings):
    for region, s in _per_region(settings):
        k = s.kubernetes
        for name, pool in k.node_pools.items():
            if pool.min_nodes > pool.max_nodes:
                yield Finding(("kubernetes", "node_pools", name, "min_nodes"), f"min_nodes {pool.min_nodes} exceed max_nodes "
                              f"{pool.max_nodes}: lower the pool's min_nodes or raise its max_nodes", region)
        lo = sum(x.min_nodes for x in k.node_pools.values())
        hi = sum(x.max_nodes for x in k.node_pools.values())
        if k.min_nodes > k.max_nodes:
            yield Finding(("kubernetes", "min_nodes"), f"cluster min_nodes {k.min_nodes} exceed max_nodes {k.max_nodes}: "
                          "lower kubernetes.min_nodes or raise kubernetes.max_nodes", region)
        if lo < k.min_nodes:
            yield Finding(("kubernetes", "min_nodes"), f"node pool floors sum to {lo}, below the cluster's min_nodes "
                          f"{k.min_nodes}: set kubernetes.min_nodes to {lo} or less, or raise the pools' min_nodes by "
                          f"{k.min_nodes - lo} in all", region)
        if hi > k.max_nodes:
            yield Finding(("kubernetes", "max_nodes"), f"node pool ceilings sum to {hi}, above the cluster's max_nodes "
                          f"{k.max_nodes}: set kubernetes.max_nodes to {hi} or more, or lower the pools' max_nodes by "
                          f"{hi - k.max_nodes} in all", region)


# ---------------------------------------------------------------- data tier and gateway

@rule("R016", "Redis Cluster has at least 3 primaries, each with a replica",
      "Redis Cluster needs a majority of at least 3 primaries to fail over, and every primary needs a replica in another zone.")
def redis_topology(p, settings):
    for region, s in _per_region(settings):
        r = s.datastores.redis
        if r.primaries < 3:
            yield Finding(("datastores", "redis", "primaries"), f"{r.primaries} primaries; Redis Cluster needs at least 3: set primaries to 3 or more", region)
        if r.replicas_per_primary < 1:
            yield Finding(("datastores", "redis", "replicas_per_primary"), "each primary needs at least one replica for failover: set replicas_per_primary to 1 or more", region)


@rule("R054", "Managed Redis on AWS runs Redis 7.0 or later",
      "With `datastores.redis.deployment: managed` each service logs in to ElastiCache as its own RBAC user with IAM "
      "authentication (compiler/ir/data_access.py), which ElastiCache offers from Redis OSS 7.0 on; an older "
      "version would leave the services no way in but a shared password.")
def managed_redis_iam(p, settings):
    for region, s in _per_region(settings):
        r = s.datastores.redis
        uses = any("redis" in svc.uses for svc in s.services.values() if svc.enabled)
        if p.regions[region].cloud == "aws" and r.deployment == "managed" and uses \
                and tuple(int(x) for x in r.version.split(".")[:2]) < (7, 0):
            yield Finding(("datastores", "redis", "version"),
                          f"Redis {r.version} on ElastiCache has no IAM authentication, which the services' users "
                          "need: set version to 7.0 or later", region)


@rule("R017", "Redis maxmemory leaves headroom",
      "maxmemory must stay under the node's memory less `memory_headroom_percent` (room for the "
      "fork during RDB/AOF rewrites, buffers and the OS).")
def redis_memory(p, settings):
    for region, s in _per_region(settings):
        r = s.datastores.redis
        ceiling = r.instance.memory_gib * 1024 * (100 - r.memory_headroom_percent) / 100
        if r.maxmemory_mb > ceiling:
            yield Finding(("datastores", "redis", "maxmemory_mb"),
                          f"maxmemory {r.maxmemory_mb} MiB exceeds {ceiling:.0f} MiB ({r.instance.memory_gib} GiB node less {r.memory_headroom_percent} % headroom): "
                          f"set maxmemory_mb to {ceiling:.0f} or less, or a larger instance", region)


@rule("R018", "Secrets are references, never values",
      "Secret fields take `vault:`, `aws-sm:`, `gcp-sm:`, `azure-kv:` or `env:` references; a plaintext value is refused (checked by the schema).")
def secrets(p, settings):
    return iter(())


@rule("R019", "Gateway burst is at least the rate",
      "Kong's burst allowance cannot be below the sustained per-second rate.")
def gateway_burst(p, settings):
    for region, s in _per_region(settings):
        g = s.gateway
        if g.burst < g.requests_per_second:
            yield Finding(("gateway", "burst"), f"burst {g.burst} is below the rate {g.requests_per_second}/s: set burst to at least "
                          f"{g.requests_per_second}", region)


@rule("R020", "Managed services can do what the spec asks",
      "A datastore marked `managed` must be something the region's cloud offers: no TimescaleDB on RDS "
      "or Cloud SQL, TimescaleDB on Azure's flexible server only for the PostgreSQL versions that list it, no more read replicas than the service allows, managed Elasticsearch only on AWS (OpenSearch).")
def managed_limits(p, settings):
    for region, s in _per_region(settings):
        cloud = p.regions[region].cloud
        pg = s.datastores.postgres
        if pg.deployment == "managed":
            for i, ext in enumerate(pg.extensions):
                if ext in MANAGED_PG_UNSUPPORTED[cloud]:
                    yield Finding(("datastores", "postgres", "extensions", i),
                                  f"{ext} is not available on {cloud}'s managed PostgreSQL; use deployment: self-managed", region)
                elif pg.version > MANAGED_PG_EXTENSION_MAX_VERSION.get((cloud, ext), pg.version):
                    yield Finding(("datastores", "postgres", "extensions", i),
                                  f"{ext} is offered on {cloud}'s managed PostgreSQL only up to version "
                                  f"{MANAGED_PG_EXTENSION_MAX_VERSION[(cloud, ext)]}, not {pg.version}; lower "
                                  "datastores.postgres.version or use deployment: self-managed", region)
            if pg.read_replicas > MANAGED_PG_MAX_REPLICAS[cloud]:
                yield Finding(("datastores", "postgres", "read_replicas"),
                              f"{cloud}'s managed PostgreSQL allows at most {MANAGED_PG_MAX_REPLICAS[cloud]} read replicas", region)
            azure_size = pg.instance.instance_types.get("azure")
            if cloud == "azure" and azure_size is not None and not AZURE_PG_SIZE.match(azure_size):
                yield Finding(("datastores", "postgres", "instance", "instance_types", "azure"),
                              f"{azure_size} is not a size Azure's managed PostgreSQL (flexible server) offers: use a "
                              "D- or E-series v3-v5 size such as Standard_E4ds_v5 or Standard_D8s_v5, or "
                              "deployment: self-managed", region)
        if s.datastores.elasticsearch.deployment == "managed" and cloud not in MANAGED_SEARCH:
            yield Finding(("datastores", "elasticsearch", "deployment"), f"{cloud} has no first-party managed Elasticsearch", region)


@rule("R021", "Enough shards for every region",
      "Shards = ceil(capacity_franchises / franchises_per_shard); every region owns at least one, and "
      "capacity covers the expected franchises.")
def shard_supply(p, settings):
    from compiler.resolve import shard_count
    capacity, per_shard = p.sharding.capacity_franchises, p.sharding.franchises_per_shard
    if -(-capacity // per_shard) > MAX_SHARDS:
        yield Finding(("sharding", "franchises_per_shard"),
                      f"{capacity:,} franchises at {per_shard:,} per shard make {-(-capacity // per_shard):,} shards; "
                      f"platformc allocates at most {MAX_SHARDS:,}: raise sharding.franchises_per_shard to at least "
                      f"{-(-capacity // MAX_SHARDS):,} or lower sharding.capacity_franchises")
        return
    n = shard_count(p)
    if n < len(p.regions):
        regions, per_shard = len(p.regions), p.sharding.franchises_per_shard
        fewer = p.sharding.capacity_franchises // regions
        yield Finding(("sharding", "capacity_franchises"),
                      f"{n} shards for {regions} regions; every region needs at least one: raise "
                      f"sharding.capacity_franchises to at least {regions * per_shard:,} ({regions} x "
                      f"franchises_per_shard {per_shard:,})"
                      + (f", or lower sharding.franchises_per_shard to {fewer:,} or less" if fewer else ""))
    if p.sharding.capacity_franchises < p.sharding.expected_franchises:
        yield Finding(("sharding", "capacity_franchises"),
                      f"capacity {p.sharding.capacity_franchises:,} is below the expected "
                      f"{p.sharding.expected_franchises:,} franchises: raise sharding.capacity_franchises to at least "
                      f"{p.sharding.expected_franchises:,} (with headroom for growth) or lower expected_franchises")


@rule("R022", "The franchise registry is consistent",
      "With `sharding.registry_file`: the CSV has the header franchise_id,home_region,jurisdiction; ids are "
      "unique positive integers; home regions exist; a franchise whose jurisdiction a geo claims in "
      "`data_residency` is homed in that geo; each region's shards hold its franchises. Reported at the CSV's line.")
def registry_consistent(p, settings):
    return iter(())  # checked while reading the file (compiler/registry.py), where the CSV positions are known


@rule("R026", "DNS routing the global zone can do",
      "Route 53 routes by latency or geography only to AWS regions; with regions on other clouds, "
      "`edge.dns.routing` must be `weighted` (weights = traffic shares). Azure DNS with Front Door and Cloud DNS "
      "with Cloud CDN are emitted with weighted routing only.")
def dns_routing(p, settings):
    from compiler.ir.edge import dns_provider
    if p.edge.dns.routing == "weighted":
        return
    provider = dns_provider(p)
    if provider != "route53":
        yield Finding(("edge", "dns", "routing"), f"{p.edge.dns.routing} routing is not emitted for {provider} "
                      "(the edge spreads traffic by weight, with health checks); use weighted")
        return
    others = sorted(n for n, r in p.regions.items() if r.cloud != "aws")
    if others:
        yield Finding(("edge", "dns", "routing"), f"{p.edge.dns.routing} routing cannot reach {', '.join(others)} (not on AWS); use weighted")


@rule("R027", "Backup schedules are unambiguous",
      "A backup cron sets day-of-month or day-of-week, not both: cron runs when either matches, which "
      "is rarely what was meant, and the clouds' backup services cannot express it.")
def backup_cron(p, settings):
    for region, s in _per_region(settings):
        for kind in ("daily", "hourly", "weekly", "monthly"):
            fields = getattr(s.backups, kind).cron.split()
            if fields[2] != "*" and fields[4] != "*":
                yield Finding(("backups", kind, "cron"), f"{kind} cron sets both day-of-month ({fields[2]}) and day-of-week ({fields[4]}), which cron ORs: "
                              "set one of them to *", region)


@rule("R028", "Cold storage leaves the minimum retention",
      "On AWS Backup a copy moved to cold storage must be kept at least 90 days more: "
      "retention_days >= cold_storage_after_days + 90. (The AWS roots do not apply cold storage yet: AWS Backup "
      "moves no EC2 recovery point there; the rule keeps a spec valid for when they do.)")
def cold_storage(p, settings):
    for region, s in _per_region(settings):
        if p.regions[region].cloud != "aws":
            continue
        for kind in ("daily", "hourly", "weekly", "monthly"):
            b = getattr(s.backups, kind)
            if b.cold_storage_after_days is not None and b.retention_days < b.cold_storage_after_days + 90:
                yield Finding(("backups", kind, "retention_days"),
                              f"{kind}: {b.retention_days} days < cold storage after {b.cold_storage_after_days} + 90: raise retention_days "
                              f"to {b.cold_storage_after_days + 90} or lower cold_storage_after_days", region)


@rule("R029", "Terraform state backends are complete",
      "AWS state needs `lock_table` (DynamoDB locking); Azure state needs `resource_group` and `container`.")
def state_backends(p, settings):
    need = {"aws": ("lock_table",), "azure": ("resource_group", "container")}
    for cname, cloud in p.clouds.items():
        for field in need.get(cname, ()):
            if getattr(cloud.state, field) is None:
                yield Finding(("clouds", cname, "state"), f"{cname} state needs `{field}`: add it to clouds.{cname}.state")


@rule("R033", "Replica scaling has the statistics it reads",
      "The read-replica scaling alerts read pg_stat_statements through postgres_exporter: a self-managed "
      "PostgreSQL without the extension can never raise them.", severity="warning")
def replica_scaling_stats(p, settings):
    for region, s in _per_region(settings):
        pg = s.datastores.postgres
        if pg.deployment == "self-managed" and "pg_stat_statements" not in pg.extensions:
            yield Finding(("datastores", "postgres", "extensions"),
                          "without pg_stat_statements the read-replica scaling alerts cannot fire: add pg_stat_statements to extensions", region)


# Namespaces and file names the platform itself uses: a service is its own namespace, so it may not take these.
RESERVED_SERVICE_NAMES = {"kong", "kong-gateway", "monitoring", "istio-system", "kube-system", "kube-public",
                          "kube-node-lease", "default"}


@rule("R034", "Service names leave the platform's own namespaces",
      "Each service runs in a namespace of its own name, so it cannot be called kong, monitoring, "
      "istio-system, kube-system, kube-public, kube-node-lease or default (nor kong-gateway, a file the "
      "Kubernetes target writes).")
def reserved_services(p, settings):
    for region, s in _per_region(settings):
        for name in s.services:
            if name in RESERVED_SERVICE_NAMES:
                yield Finding(("services", name), f"service name {name!r} is reserved for the platform: rename the service", region)


@rule("R035", "The health-check path belongs to the gateway",
      "Kong answers `edge.dns.health_check_path` itself for the load balancers and DNS health checks, so no "
      "service route may use that exact path.")
def health_path(p, settings):
    path = p.edge.dns.health_check_path
    for region, s in _per_region(settings):
        for name, svc in s.services.items():
            for i, route in enumerate(svc.routes):
                for j, rpath in enumerate(route.paths):
                    if rpath == path:
                        yield Finding(("services", name, "routes", i, "paths", j),
                                      f"{rpath!r} is edge.dns.health_check_path, answered by the gateway itself: choose another route "
                                      "path (or change edge.dns.health_check_path)", region)


@rule("R036", "Route hosts are ones the edge serves",
      "The CDN, the load balancers' certificates and the public DNS cover `<api_host>.<domain>` and "
      "`<app_host>.<domain>` (edge.dns); a route on any other host gets no public traffic (fine only for "
      "private access).", severity="warning")
def route_hosts(p, settings):
    served = {f"{p.edge.dns.api_host}.{p.organization.domain}", f"{p.edge.dns.app_host}.{p.organization.domain}"}
    for region, s in _per_region(settings):
        for name, svc in s.services.items():
            for i, route in enumerate(svc.routes):
                for j, host in enumerate(route.hosts):
                    if host not in served:
                        yield Finding(("services", name, "routes", i, "hosts", j),
                                      f"{host} is not served by the edge (only {', '.join(sorted(served))}): use one of those hosts, "
                                      "or change edge.dns.api_host / app_host", region)


@rule("R038", "Secrets a cluster reads come from a secret manager it can reach",
      "Every reference the cluster turns into a Kubernetes Secret (a service's `secrets:`, "
      "`monitoring.grafana_admin_password`, `monitoring.alert_receivers`, `datastores.elasticsearch.clients`, and "
      "`datastores.pgbouncer.auth_password` / `datastores.redis.password`, beside which each service's own PgBouncer "
      "and Redis passwords are kept, and its self-managed Elasticsearch password beside the PgBouncer one) is "
      "synced by External Secrets Operator from the reference's store: `vault:` (with `security.vault_address` "
      "set), `aws-sm:`, `gcp-sm:` or `azure-kv:`. An `env:` reference is read from the environment of the CI job "
      "or the Ansible run, which no cluster has: use a secret manager for it.")
def cluster_secret_stores(p, settings):
    for region, s in _per_region(settings):
        refs = [(("services", name, "secrets", key), ref) for name, svc in s.services.items() if svc.enabled
                for key, ref in svc.secrets.items()]
        refs += [(("monitoring", "grafana_admin_password"), s.monitoring.grafana_admin_password)]
        recv = s.monitoring.alert_receivers
        refs += [(("monitoring", "alert_receivers", f), getattr(recv, f)) for f in type(recv).model_fields
                 if f.endswith(("_key", "_url"))]
        refs += [(("datastores", "elasticsearch", "clients", c), ref) for c, ref in s.datastores.elasticsearch.clients.items()]
        # each service's PgBouncer and Redis passwords live beside these (compiler/ir/data_access.py) and reach its pods
        uses = {u for svc in s.services.values() if svc.enabled for u in svc.uses}
        if "postgres" in uses or ("elasticsearch" in uses and s.datastores.elasticsearch.deployment == "self-managed"):
            refs += [(("datastores", "pgbouncer", "auth_password"), s.datastores.pgbouncer.auth_password)]
        if "redis" in uses and s.datastores.redis.deployment == "self-managed":  # managed: identities, no password
            refs += [(("datastores", "redis", "password"), s.datastores.redis.password)]
        for path, ref in refs:
            if not ref:
                continue
            scheme = ref.split(":", 1)[0]
            if scheme == "env":
                yield Finding(path, f"{ref} is an env: reference, which no cluster can read; put the secret in vault:, "
                                    f"aws-sm:, gcp-sm: or azure-kv: and reference it from there", region)
            elif scheme == "vault" and not s.security.vault_address:
                yield Finding(path, f"{ref} needs security.vault_address (the Vault the cluster reads it from): set "
                              "security.vault_address, or use the cloud's secret manager", region)


# ---------------------------------------------------------------- derived (plan) rules

@rule("R039", "The edge is one cloud's, and the spec names its account",
      "`edge.dns.provider` and `edge.cdn.provider` pair up (route53 + cloudfront, azure_dns + front_door, "
      "cloud_dns + cloud_cdn), and the edge's cloud is declared under `clouds`: the global root and every region "
      "root that writes into the public zone name that account explicitly.")
def edge_account(p, settings):
    from compiler.ir.edge import EDGE_PROVIDER_CLOUD, cdn_provider, dns_provider
    dns, cdn = dns_provider(p), cdn_provider(p)
    if EDGE_PROVIDER_CLOUD[dns] != EDGE_PROVIDER_CLOUD[cdn]:
        yield Finding(("edge", "cdn", "provider") if p.edge.cdn.provider else ("edge", "dns", "provider"),
                      f"the CDN {cdn} is on {EDGE_PROVIDER_CLOUD[cdn]} but the DNS {dns} on {EDGE_PROVIDER_CLOUD[dns]}; "
                      "pair route53 with cloudfront, azure_dns with front_door, cloud_dns with cloud_cdn")
        return
    cloud = EDGE_PROVIDER_CLOUD[cdn]
    if cloud not in p.clouds:
        where = ("edge", "cdn", "provider") if p.edge.cdn.provider else ("edge", "dns", "provider") if p.edge.dns.provider else ("clouds",)
        yield Finding(where, f"the edge ({dns} + {cdn}) runs on {cloud}, which `clouds` does not declare: "
                             f"add clouds.{cloud} with its account, or choose an edge of a declared cloud")


@rule("R040", "An Azure or Google edge serves its own cloud's regions",
      "CloudFront reaches every cloud's regions (the AWS load balancers admit only CloudFront's origin-facing "
      "servers). Front Door and Cloud CDN are emitted for platforms whose regions all run on their cloud: the "
      "region roots write their names and certificate records into that cloud's zone.")
def edge_regions(p, settings):
    from compiler.ir.edge import edge_cloud
    cloud = edge_cloud(p)
    if cloud == "aws":
        return
    for name, region in p.regions.items():
        if region.cloud != cloud:
            yield Finding(("regions", name, "cloud"), f"{name} runs on {region.cloud}, but the edge is on {cloud}; "
                          "use the cloudfront edge (route53 + cloudfront) for a platform on several clouds")


@rule("R041", "What the edge can attach: paid DDoS protection, the viewer's TLS minimum",
      "`edge.ddos_protection: true` buys Shield Advanced (CloudFront, Route 53) or Cloud Armor Enterprise (Cloud CDN's "
      "load balancer). Front Door Premium has DDoS protection built into its edge and no paid tier of its own "
      "(Azure DDoS Network Protection covers virtual networks, which the edge has none of). Front Door's viewer "
      "minimum is TLS 1.2 through the azurerm provider ~> 4.0 (hashicorp/terraform-provider-azurerm#25881); it "
      "offers TLS 1.3 first.")
def edge_capabilities(p, settings):
    from compiler.ir.edge import edge_cloud
    if edge_cloud(p) != "azure":
        return
    if p.edge.ddos_protection:
        yield Finding(("edge", "ddos_protection"), "Front Door has no paid DDoS tier to attach (its edge is protected "
                      "already); set ddos_protection: false")
    if p.edge.tls_min_version == "1.3":
        yield Finding(("edge", "tls_min_version"), "Front Door's custom domains take a TLS 1.2 minimum only (azurerm ~> 4.0); "
                      'set edge.tls_min_version: "1.2" (Front Door still offers TLS 1.3 first)')


# An Azure subscription id is a GUID (8-4-4-4-12 hexadecimal digits).
AZURE_SUBSCRIPTION = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
AWS_ACCOUNT = re.compile(r"^[0-9]{12}$")
GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")


@rule("R042", "Cloud accounts are well-formed",
      "The account each root's provider is pinned to: an AWS account id is 12 digits, a GCP project id 6-30 "
      "lower-case letters, digits and hyphens starting with a letter, an Azure subscription id a GUID.")
def account_ids(p, settings):
    shapes = {"aws": (AWS_ACCOUNT, "12 digits"), "gcp": (GCP_PROJECT, "a project id (6-30 of a-z, 0-9, -)"),
              "azure": (AZURE_SUBSCRIPTION, "a GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)")}
    for name, cloud in p.clouds.items():
        pattern, shape = shapes[name]
        if not pattern.fullmatch(cloud.account):
            yield Finding(("clouds", name, "account"), f"{name} account {cloud.account!r} is not {shape}: write the {name} account id as the console shows it")


@rule("R043", "The error-rate objective fits the availability SLO",
      "A request that fails counts against availability: an `error_rate_percent` above the SLO's error budget "
      "(100 - availability_percent) lets the error-rate alert stay quiet while the availability budget burns.",
      severity="warning")
def error_budget(p, settings):
    budget = round(100 - p.slos.availability_percent, 6)
    if p.slos.error_rate_percent > budget + TOLERANCE:
        yield Finding(("slos", "error_rate_percent"), f"error_rate_percent {p.slos.error_rate_percent:g} is looser than the "
                      f"availability SLO's error budget ({budget:g} % for {p.slos.availability_percent:g} %): set "
                      f"error_rate_percent to {budget:g} or less, or lower availability_percent")


@rule("R030", "Services fit the node pools at maximum scale",
      "At every service's max replicas, the CPU, memory and GPU requests on each node pool fit its "
      "allocatable capacity at max nodes (node size less `system_reserved_percent`).", stage="plan")
def capacity_fit(plan):
    for r in plan.regions:
        for pool in r.capacity:
            for what, need, have, unit in (("CPU", pool.demand_cpu_millicores / 1000, pool.cpu_millicores / 1000, "cores"),
                                           ("memory", pool.demand_memory_mib / 1024, pool.memory_mib / 1024, "GiB"),
                                           ("GPU", pool.demand_gpus, pool.gpus, "GPUs")):
                if need > have + TOLERANCE:
                    yield Finding(("kubernetes", "node_pools", pool.name, "max_nodes"),
                                  f"at max replicas {', '.join(pool.services)} request {need:g} {unit} of {what}; "
                                  f"the pool offers {have:g}: raise the pool's max_nodes (or its machine size), or lower "
                                  "the services' max replicas or requests", r.name)


@rule("R031", "Connections fit PgBouncer",
      "Services' max replicas x connections per pod, summed, fit PgBouncer's `max_client_conn`.", stage="plan")
def client_budget(plan):
    for r in plan.regions:
        c = r.connections
        if c.client_connections > c.max_client_conn:
            detail = ", ".join(f"{k} {v}" for k, v in c.per_service.items())
            yield Finding(("datastores", "pgbouncer", "max_client_conn"),
                          f"services open up to {c.client_connections} connections ({detail}); max_client_conn is {c.max_client_conn}: "
                          f"raise max_client_conn to at least {c.client_connections}, or lower db_connections_per_pod", r.name)


@rule("R032", "Pools fit PostgreSQL",
      "PgBouncer hosts x shard databases x (pool size + reserve) fit max_connections less the reserved "
      "connections, with a pool size of at least 1.", stage="plan")
def server_budget(plan):
    for r in plan.regions:
        c = r.connections
        if c.default_pool_size < 1 or c.server_connections > c.postgres_available:
            yield Finding(("datastores", "postgres", "max_connections"),
                          f"{c.pgbouncer_hosts} PgBouncer hosts x {c.databases} shard databases leave a pool size of "
                          f"{c.default_pool_size} within {c.postgres_available} usable connections: raise "
                          "datastores.postgres.max_connections, or lower pgbouncer hosts or reserve_pool_size", r.name)


@rule("R066", "A promoted standby's pools fit it",
      "After a region is lost, its DR partner's PgBouncer serves the region's shards from the promoted standby cluster "
      "(the DR runbook, step 4), with a line per shard and per read-only shard name, each capped at a pool size and "
      "max_db_connections that share the region's max_connections less its reserved connections among the "
      "partner's PgBouncer hosts (compiler/resolve.py promoted_budget): that pool size must be at least 1.",
      stage="plan")
def promoted_standby_budget(plan):
    from compiler.resolve import promoted_budget
    for r in plan.regions:
        partner = plan.region(r.dr_partner) if r.dr_partner in plan.region_names else None
        standbys = getattr(partner.postgres_ha, "standbys", ()) if partner is not None else ()
        if not any(s.of_region == r.name for s in standbys or ()):
            continue
        c = promoted_budget(r, partner)
        if c.default_pool_size < 1:
            yield Finding(("datastores", "postgres", "max_connections"),
                          f"once its standby in {partner.name} is promoted, {c.pgbouncer_hosts} PgBouncer hosts of "
                          f"{partner.name} x {c.databases} database lines leave a pool size of {c.default_pool_size} "
                          f"within {c.postgres_available} usable connections: raise datastores.postgres.max_connections, "
                          f"or lower {partner.name}'s pgbouncer hosts or reserve_pool_size", r.name)


@rule("R037", "Every node gets a pod block",
      "GKE gives each node a block of the pod range sized from its max pods (a /24 for 110 down to a /28 for 8), "
      "AKS overlay a /24 per node: the pod range must hold a block for every node the pools may grow to "
      "(the pools' max_nodes summed, or kubernetes.max_nodes when lower).", stage="plan")
def pod_blocks(plan):
    smallest_block = {"gcp": 28, "azure": 24}
    for r in plan.regions:
        a = r.addressing
        if r.cloud not in smallest_block or a.max_pods_per_node:
            continue
        pools = r.settings.kubernetes.node_pools
        widest = max(pools, key=lambda n: pools[n].max_nodes)
        prefix = ipaddress.ip_network(a.pod_cidr).prefixlen if a.pod_cidr else None
        fits = 2 ** (smallest_block[r.cloud] - prefix) if prefix is not None and prefix <= smallest_block[r.cloud] else 0
        nodes = sum(p.max_nodes for p in pools.values())
        cap = r.settings.kubernetes.max_nodes
        yield Finding(("kubernetes", "node_pools", widest, "max_nodes"),
                      f"the pod range {a.pod_cidr or '(none left in ' + r.cidr + ')'} holds at most {fits} nodes' pod blocks, "
                      f"the pools may grow to {min(nodes, cap) if cap else nodes}: lower the node pools' max_nodes "
                      f"(or kubernetes.max_nodes) to {fits} in all, or give the region a larger cidr", r.name)


@rule("R044", "The cost estimate fits the budget",
      "Each region's estimated monthly floor (`platformc cost`: every node pool at min nodes, the data tier, disks, "
      "NAT, load balancer, WAF, KMS, APM, priced from compiler/cost/prices.yaml and `cost.prices`, less the spec's "
      "reserved and spot savings) stays within its budget, the region's traffic share of `cost.monthly`. "
      "Checked when the budget is in USD (the catalogue's currency).", stage="plan", severity="warning")
def cost_budget(plan):
    from compiler.cost import over_budget, usd
    over = over_budget(plan)
    if over:
        worst = max(over, key=lambda o: o[1] / o[2] if o[2] else float("inf"))
        yield Finding(("cost", "monthly"),
                      f"the estimated monthly floor exceeds the budget in {len(over)} of {len(plan.regions)} regions: "
                      + ", ".join(f"{r} {usd(lo)} > {usd(b)}" for r, lo, b in over)
                      + f" (worst {worst[0]}); raise cost.monthly or shrink what the regions provision (`platformc cost`)")


@rule("R045", "The GPU pool holds every GPU pod at its peak",
      "A GPU is not shared: at every GPU service's max replicas, plus its canary subset's max (or the idle "
      "blue-green colour) and the surge of a rollout, each pod needs a GPU of its node pool at max nodes "
      "(the pool's max_nodes x gpus).", stage="plan")
def gpu_peak(plan):
    from compiler.ir.rollout import peak_pods
    for r in plan.regions:
        pools = r.settings.kubernetes.node_pools
        for name, pool in pools.items():
            on = [s for s in r.services if s.node_pool == name and s.limits.gpu]
            if not on:
                continue
            parts = [(s, *peak_pods(s)) for s in on]
            need = sum(n * s.limits.gpu for s, n, _ in parts)
            have = pool.max_nodes * pool.gpus
            if need > have:
                detail = "; ".join(f"{s.name} {how} pods x {s.limits.gpu} GPU" for s, _, how in parts)
                yield Finding(("kubernetes", "node_pools", name, "max_nodes"),
                              f"GPU pods need {need} GPUs at their peak ({detail}); {pool.max_nodes} nodes x {pool.gpus} "
                              f"GPU offer {have}: raise max_nodes to {-(-need // max(pool.gpus, 1))}", r.name)


@rule("R046", "The gateway's peak fits its node pool",
      "Kong's HPA grows to the pods the region's peak needs (its traffic share of `capacity.requests_per_second` x "
      "`capacity.peak_multiplier` / `gateway.rps_per_pod`); those pods' CPU and memory requests, on top of the "
      "services of the same pool at max replicas, fit the pool's allocatable capacity at max nodes.", stage="plan")
def gateway_peak(plan):
    from compiler.ir.gateway import gateway_capacity
    from compiler.model.base import cpu_millicores, memory_mib
    cap = plan.spec.capacity
    for r in plan.regions:
        gc = gateway_capacity(r, cap.requests_per_second, cap.peak_multiplier)
        pool = next((p for p in r.capacity if p.name == gc.node_pool), None)
        if pool is None:
            yield Finding(("gateway", "node_pool"), f"node pool {gc.node_pool} does not exist", r.name)
            continue
        req = r.settings.gateway.resources.requests
        cpu = pool.demand_cpu_millicores + gc.max_replicas * cpu_millicores(req.cpu)
        mem = pool.demand_memory_mib + gc.max_replicas * memory_mib(req.memory)
        if cpu > pool.cpu_millicores or mem > pool.memory_mib + TOLERANCE:
            yield Finding(("gateway", "rps_per_pod"),
                          f"the peak of {gc.peak_rps:g} rps needs {gc.max_replicas} Kong pods at {gc.rps_per_pod} rps each; "
                          f"with the services at max replicas pool {gc.node_pool} would need {cpu / 1000:g} cores and "
                          f"{mem / 1024:g} GiB of {pool.cpu_millicores / 1000:g} and {pool.memory_mib / 1024:g}: raise "
                          f"its max_nodes or gateway.rps_per_pod (a load-test figure)", r.name)


@rule("R047", "A canary runs a new version",
      "The canary subset v2 exists to try a version: `rollout.canary_image_tag` names it and differs from the "
      "service's `tag` (a canary of the stable image splits traffic and proves nothing).")
def canary_version(p, settings):
    for region, s in _per_region(settings):
        for name, svc in s.services.items():
            ro = svc.rollout
            if ro.type == "canary" and svc.enabled and (ro.canary_image_tag or svc.tag) == svc.tag:
                yield Finding(("services", name, "rollout"),
                              f"{name}'s canary runs its stable tag {svc.tag}; set rollout.canary_image_tag to the version "
                              "under test (or roll out with type: rolling)", region)


@rule("R048", "Every size names a machine type for the region's cloud",
      "Node pools and the PostgreSQL, Redis and Elasticsearch hosts take their machine type from "
      "`instance_types.<cloud>`: each region needs an entry for the cloud it runs on.")
def instance_types_cover_cloud(p, settings):
    for region, s in _per_region(settings):
        cloud = p.regions[region].cloud
        sized = [(("kubernetes", "node_pools", name), f"node pool {name}", pool.instance_types)
                 for name, pool in s.kubernetes.node_pools.items()]
        sized += [(("datastores", store, "instance"), store, getattr(s.datastores, store).instance.instance_types)
                  for store in ("postgres", "redis", "elasticsearch")]
        for path, what, types_ in sized:
            if cloud not in types_:
                yield Finding(path + ("instance_types",),
                              f"{what} has no {cloud} machine type and {region} runs on {cloud}: add "
                              f"`{cloud}: <machine type>` to its instance_types", region)


SECRET_LOOKING = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_?KEY)", re.I)


@rule("R050", "Secrets are never written as plain values",
      "An `env:` entry whose name looks like a secret (PASSWORD, SECRET, TOKEN, CREDENTIAL, PRIVATE, API_KEY, "
      "ACCESS_KEY) would be written in clear into the Deployment: put the value in a secret store and name it "
      "under `secrets:` with its reference instead.")
def plaintext_secrets(p, settings):
    for region, s in _per_region(settings):
        for name, svc in s.services.items():
            for key in sorted(svc.env):
                if SECRET_LOOKING.search(key):
                    yield Finding(("services", name, "env", key),
                                  f"{key} looks like a secret and would be written in clear: move it to secrets: with a "
                                  "vault:, aws-sm:, gcp-sm: or azure-kv: reference", region)


@rule("R049", "An environment variable is set once",
      "A service's `env:` and `secrets:` both become container environment variables: a name in both would be "
      "two entries for one variable, and which one wins depends on the runtime.")
def env_secret_clash(p, settings):
    for region, s in _per_region(settings):
        for name, svc in s.services.items():
            for key in sorted(set(svc.env) & set(svc.secrets)):
                yield Finding(("services", name, "env", key),
                              f"{key} is set in both env and secrets of {name}: remove it from env (a secret "
                              "belongs in secrets) or rename one of them", region)


@rule("R052", "Every in-cluster Elasticsearch client has its credentials",
      "With self-managed Elasticsearch the nodes accept only authenticated TLS clients: Fluent Bit (always, it ships "
      "the logs) and Jaeger (with `monitoring.tracing`) each read a user, a password and the internal CA from the "
      "secret-store entry named under `datastores.elasticsearch.clients`; without it their Secret is never created "
      "and they cannot write. (Application services that `use` Elasticsearch each get a user of their own, R055.)")
def elasticsearch_clients(p, settings):
    for region, s in _per_region(settings):
        es = s.datastores.elasticsearch
        if es.deployment != "self-managed":
            continue
        needed = ["fluent-bit"] + (["jaeger"] if s.monitoring.tracing else [])
        missing = [c for c in needed if not es.clients.get(c)]
        if missing:
            yield Finding(("datastores", "elasticsearch", "clients"),
                          f"{' and '.join(missing)} cannot write to Elasticsearch without credentials: add "
                          + " and ".join(f"`{c}: <secret reference>`" for c in missing)
                          + " under datastores.elasticsearch.clients (each entry holds username, password and ca_crt)"
                          + (", or set monitoring.tracing: false" if missing == ["jaeger"] else ""), region)


# Elasticsearch's built-in users: the security API changes nothing of theirs but the password.
ES_RESERVED_USERS = ("elastic", "kibana", "kibana_system", "logstash_system", "beats_system", "apm_system",
                     "remote_monitoring_user")


@rule("R055", "A service that uses Elasticsearch is not named like a built-in Elasticsearch user",
      "With self-managed Elasticsearch each service that `uses: [elasticsearch]` logs in as a user named after it, "
      "with a role of its own (compiler/ir/data_access.py), which the elasticsearch role creates. Elasticsearch "
      "reserves the names of its built-in users (`elastic`, `kibana`, `kibana_system`, ...): it refuses to give them "
      "another role, so the service would have no user.")
def elasticsearch_reserved_users(p, settings):
    for region, s in _per_region(settings):
        if s.datastores.elasticsearch.deployment != "self-managed":
            continue
        for name, svc in s.services.items():
            if svc.enabled and "elasticsearch" in svc.uses and name in ES_RESERVED_USERS:
                yield Finding(("services", name),
                              f"{name} would log in to Elasticsearch as the built-in user {name}, whose roles cannot "
                              "be changed: rename the service", region)


@rule("R056", "The edge's home routing fits the edge's limits",
      "With Front Door or Cloud CDN in front of several regions, the edge routes each franchise id range to its home "
      "region with rules of its own (compiler/targets/terraform/edge_rules.py): a Cloud CDN URL map holds at most "
      "1 MB of route rules (one per range), a Front Door Premium profile at most 200 rule sets of 100 rules and 200 "
      "origin groups (one per region and the weighted one). A registry of scattered franchises can need more; the "
      "provider would refuse the global root at apply.", stage="plan")
def edge_home_limits(plan):
    from compiler.ir.home_routing import edge_over_limits
    over = edge_over_limits(plan)
    if over:
        where = ("sharding", "registry_file") if plan.spec.sharding.registry_file else ("edge", "cdn")
        yield Finding(where, f"{over}: list the registry's franchises so that neighbouring ids share a home (fewer "
                             "ranges), or use cloudfront, whose routing table has no such limit")


@rule("R057", "CloudFront's origins fit the default quota",
      "With CloudFront in front of several regions, the distribution has one origin per region (home-region "
      "routing) plus the weighted one; CloudFront's default quota is 100 origins per distribution. The quota is "
      "adjustable, so this is a warning: request the increase (Service Quotas) before applying the global root.",
      stage="plan", severity="warning")
def cloudfront_origin_quota(plan):
    from compiler.ir.home_routing import ORIGINS_PER_DISTRIBUTION, edge_routes_homes
    origins = len(plan.regions) + 1
    if edge_routes_homes(plan.spec) and origins > ORIGINS_PER_DISTRIBUTION:
        yield Finding(("regions",), f"{len(plan.regions)} regions need {origins} CloudFront origins, over the default "
                                    f"quota of {ORIGINS_PER_DISTRIBUTION} per distribution: raise "
                                    "'Origins per distribution' in Service Quotas before applying the global root")


@rule("R062", "CloudFront's cache behaviors fit the default quota",
      "The CloudFront edge keeps the API out of its default cache with a cache behavior per API path prefix (every "
      "route on the API host or behind authentication, without prefixes a shorter one covers) beside the default "
      "behavior; CloudFront's default quota is 75 cache behaviors per distribution. The quota is adjustable, so this "
      "is a warning: request the increase (Service Quotas) before applying the global root, or give the API routes "
      "fewer distinct prefixes.", stage="plan", severity="warning")
def cloudfront_cache_behavior_quota(plan):
    from compiler.ir.edge import CLOUDFRONT_CACHE_BEHAVIORS, api_path_prefixes, cdn_provider
    if cdn_provider(plan.spec) != "cloudfront":
        return
    behaviors = len([p for p in api_path_prefixes(plan) if p != "/"]) + 1
    if behaviors > CLOUDFRONT_CACHE_BEHAVIORS:
        yield Finding(("settings", "services"), f"the API's {behaviors - 1} path prefixes need {behaviors} CloudFront "
                                                f"cache behaviors, over the default quota of {CLOUDFRONT_CACHE_BEHAVIORS} "
                                                "per distribution: raise 'Cache behaviors per distribution' in Service "
                                                "Quotas before applying the global root, or share prefixes")


@rule("R058", "Kong's home-region map fits a ConfigMap",
      "With several regions, every region's Kong looks each franchise's home region up in one map, a Lua module "
      "shipped as a ConfigMap (the global chart kong-home-routing); a ConfigMap holds at most 1 MiB. A registry of "
      "scattered franchises (one range per run of neighbouring ids with one home) can need more; the chart's "
      "install would fail in every region.", stage="plan")
def gateway_map_size(plan):
    from compiler.ir.home_routing import (GATEWAY_MAP_MAX_BYTES, gateway_map_bytes, gateway_routes_homes,
                                          home_range_table)
    size = gateway_map_bytes(plan) if gateway_routes_homes(plan) else 0
    if size > GATEWAY_MAP_MAX_BYTES:
        where = ("sharding", "registry_file") if plan.spec.sharding.registry_file else ("sharding",)
        yield Finding(where, f"Kong's home-region map has {len(home_range_table(plan)):,} franchise id ranges, "
                             f"~{size:,} bytes, over a ConfigMap's {GATEWAY_MAP_MAX_BYTES:,}: list "
                             "the registry's franchises so that neighbouring ids share a home (fewer ranges)")


@rule("R059", "Every data host's volume fits its cloud's largest disk",
      "A data host's volume is its group's `disk_gib`; a PostgreSQL host that runs DR standby clusters for other "
      "regions also holds their data, so its volume adds each source's `disk_gib`. The cloud refuses a volume over its "
      "disk type's maximum (AWS gp3 16,384 GiB, GCP pd-ssd 65,536 GiB, Azure Premium SSD 32,767 GiB) at apply.",
      stage="plan")
def data_disk_fits(plan):
    from compiler.ir.machines import MAX_DATA_DISK_GIB, data_disk_gib
    path = {"postgres_primary": "postgres", "postgres_replicas": "postgres", "redis_cluster": "redis",
            "elasticsearch": "elasticsearch"}
    for r in plan.regions:
        limit = MAX_DATA_DISK_GIB[r.cloud]
        for h in r.hosts:
            gib = data_disk_gib(plan, r, h)
            if gib > limit:
                own = r.settings.datastores.postgres.instance.disk_gib if h.group.startswith("postgres") else gib
                if gib > own:
                    why = f" ({own:,} GiB of its own and {gib - own:,} GiB for the DR standby clusters it runs)"
                    fix = ("lower disk_gib here or in the standbys' source regions, or make fewer regions name this "
                           "one as their dr_partner")
                else:
                    why, fix = "", "lower disk_gib"
                yield Finding(("datastores", path[h.group], "instance", "disk_gib"),
                              f"{h.name} needs a {gib:,} GiB data volume{why}, over the largest {r.cloud} disk of "
                              f"{limit:,} GiB: {fix}", r.name)
                break


@rule("R073", "The region's logs and traces fit its Elasticsearch disks",
      "Fluent Bit's log indices and Jaeger's span indices share the region's self-managed Elasticsearch with the "
      "application's indices. Retention x daily volume x (1 + replicas) (compiler/ir/log_volume.py: access-log lines "
      "and spans from the region's share of `capacity.requests_per_second`) must stay within 50 % of the nodes' raw "
      "disk, so the application's indices keep room below the 85 % low watermark; past the 95 % flood stage "
      "Elasticsearch makes every index on the node read-only, the product's search included.", stage="plan")
def log_volume_fits(plan):
    from compiler.ir.log_volume import LOW_WATERMARK, OBSERVABILITY_DISK_SHARE
    for r in plan.regions:
        v = r.log_volume
        if v is None or not v.self_managed or v.fits:
            continue
        es = r.settings.datastores.elasticsearch
        mon = r.settings.monitoring
        need_gib = math.ceil(v.kept_bytes / OBSERVABILITY_DISK_SHARE / es.nodes / 2**30)
        fixes = [f"lower monitoring.log_retention_days to at most {v.max_retention_days}" if v.max_retention_days
                 else "cut the daily volume (one day does not fit)"]
        if mon.tracing and v.span_bytes_per_day:
            fixes.append(f"lower monitoring.trace_sample_percent ({mon.trace_sample_percent:g} %: "
                         f"{v.span_bytes_per_day / 1e9:,.1f} GB of spans a day)")
        if mon.gateway_access_log == "all":
            fixes.append("set monitoring.gateway_access_log: errors (Kong's line for every request: "
                         f"{v.requests_per_day * v.kong_lines_per_request / 1e6:,.0f} million a day)")
        fixes.append(f"raise datastores.elasticsearch.instance.disk_gib to {need_gib:,} or add nodes")
        yield Finding(("monitoring", "log_retention_days"),
                      f"{v.requests_per_day / 1e6:,.0f} million requests a day make {v.access_docs_per_day / 1e6:,.1f} "
                      f"million access-log documents and {v.spans_per_day / 1e6:,.1f} million spans, "
                      f"{v.bytes_per_day / 1e9:,.1f} GB a day; kept {v.retention_days} days with {v.replicas} replica(s) "
                      f"that is {v.kept_bytes / 1e12:,.2f} TB, over {OBSERVABILITY_DISK_SHARE * 100:g} % of the "
                      f"{es.nodes} x {es.instance.disk_gib:,} GiB Elasticsearch disks ({v.budget_bytes / 1e12:,.2f} TB; "
                      f"the rest keeps the application's indices below the {LOW_WATERMARK * 100:g} % low watermark): "
                      + "; or ".join(fixes), r.name)


# ---------------------------------------------------------------- deployed facts (generated/platform.lock.json)

_LOCK_HOW = ("the deployed-facts lock ({path}) holds what is applied; to change it deliberately, {act}, then set "
             "{what} in the lock to the new value (or delete it) and generate again (docs/lock.md)")


def _ranges(numbers: list[int]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for n in sorted(numbers):
        if out and out[-1][1] + 1 == n:
            out[-1][1] = n
        else:
            out.append([n, n])
    return [(a, b) for a, b in out]


def _id_span(a: int, b: int, per: int) -> str:
    return f"franchise ids {(a - 1) * per + 1:,}-{b * per:,} (shard{'s' * (a != b)} {a}{f'-{b}' if a != b else ''})"


@rule("R076", "Franchises stay in the region and shard they were deployed to",
      "With a deployed-facts lock (generated/platform.lock.json, docs/lock.md), every locked franchise-id range keeps "
      "its region and shard: its rows live in that shard's database, and nothing moves them when the routing table, "
      "PgBouncer and the edge maps are regenerated. Raising capacity_franchises or adding a region only places the "
      "new shards; changing franchises_per_shard, lowering capacity_franchises below a locked shard or removing a "
      "region that holds franchises would move or drop them. A region added without a free shard is refused too. "
      "An unreadable lock is reported here.", stage="plan")
def placement_locked(plan):
    lock = plan.lock
    if lock is None or not lock.shards:
        return
    sh = plan.spec.sharding
    old_per, per = lock.franchises_per_shard, sh.franchises_per_shard
    if old_per != per:
        yield Finding(("sharding", "franchises_per_shard"),
                      f"franchises_per_shard {old_per:,} was deployed; {per:,} changes every shard's franchise-id range, "
                      f"moving franchises between shard databases (and regions) without their data: keep "
                      f"franchises_per_shard {old_per:,}; "
                      + _LOCK_HOW.format(path=lock.path, act="migrate every franchise's rows to its new shard",
                                         what="franchises_per_shard and every franchises range's region"))
        return
    now = {s.number: s.region for s in plan.shards}
    dropped = [n for n in lock.shards if n not in now]
    if dropped:
        spans = ", ".join(_id_span(a, b, per) for a, b in _ranges(dropped)[:3])
        need = max(lock.shards) * per
        yield Finding(("sharding", "capacity_franchises"),
                      f"capacity_franchises {sh.capacity_franchises:,} drops deployed shards: {spans} would lose their "
                      f"shard database: raise capacity_franchises to at least {need:,}; "
                      + _LOCK_HOW.format(path=lock.path, act="move those franchises' rows elsewhere",
                                         what="their ranges' region"))
    moved: dict = {}
    for n, old in lock.shards.items():
        new = now.get(n)
        if new is not None and new != old:
            moved.setdefault((old, new), []).append(n)
    for (old, new), numbers in moved.items():
        spans = ", ".join(_id_span(a, b, per) for a, b in _ranges(numbers)[:3])
        gone = old not in plan.spec.regions
        why = f"region {old} is no longer declared" if gone else "the spec's placement changed"
        yield Finding(("regions",) if gone else ("sharding",),
                      f"{spans} deployed in {old} would move to {new} ({why}), leaving their rows behind: "
                      + (f"keep region {old} (serve its franchises from its DR partner with "
                         f"disaster_recovery.failed_over while it is lost); " if gone else "")
                      + _LOCK_HOW.format(path=lock.path, act=f"migrate their rows to {new}", what="their ranges' region"))
    for r in plan.regions:
        if not r.shards and r.name not in lock.shards.values():
            yield Finding(("regions", r.name),
                          f"region {r.name} gets no shard: every deployed shard keeps its region, so a new region "
                          f"needs new ones: raise sharding.capacity_franchises by at least {per:,} "
                          f"(franchises_per_shard) per region added")


@rule("R077", "A deployed region's CIDR does not change",
      "With a deployed-facts lock (docs/lock.md), each region's `cidr` is the one applied: the network, its subnets and "
      "everything addressed from them are built from it, and a VPC's address block cannot be changed in place (AWS "
      "aws_vpc.cidr_block forces a new VPC), so an edit would rebuild or break the running region.", stage="plan")
def cidr_locked(plan):
    lock = plan.lock
    if lock is None:
        return
    for name, facts in lock.regions.items():
        region = plan.spec.regions.get(name)
        if region is not None and region.cidr != facts["cidr"]:
            yield Finding(("regions", name, "cidr"),
                          f"region {name} was deployed with cidr {facts['cidr']}; {region.cidr} would replace its "
                          f"network, subnets, hosts and clusters: keep cidr {facts['cidr']} (add address space to a "
                          "network by hand if it is short); "
                          + _LOCK_HOW.format(path=lock.path, act="drain the region and accept its rebuild",
                                             what=f'regions."{name}".cidr'))


@rule("R078", "Deployed data volumes never shrink or move, and a formed Redis cluster keeps its primaries",
      "With a deployed-facts lock (docs/lock.md), each data host's volume (its group's `disk_gib`, plus the DR standby "
      "data it holds for other regions: a dr_partner change elsewhere can shrink it) may only grow: clouds cannot "
      "shrink a disk (GCP replaces it, deleting the data; AWS and Azure refuse at apply). A data host's zone may not "
      "change (its volume is zonal: it would be replaced), and a self-managed Redis cluster keeps the primary count "
      "it was formed with: platformc forms a cluster once and never reshards, and a new count renumbers hosts into "
      "other zones.", stage="plan")
def data_locked(plan):
    lock = plan.lock
    if lock is None:
        return
    from compiler.ir.deployed import standby_sources
    from compiler.ir.machines import data_disk_gib, host_size
    path = {"postgres_primary": "postgres", "postgres_replicas": "postgres", "redis_cluster": "redis",
            "elasticsearch": "elasticsearch"}
    release = "the host's entry under the region's data_hosts"
    for r in plan.regions:
        facts = lock.regions.get(r.name)
        if facts is None:
            continue
        redis = r.settings.datastores.redis
        old_primaries = facts.get("redis_primaries")
        primaries_moved = (old_primaries is not None and redis.deployment == "self-managed"
                           and redis.primaries != old_primaries)
        if primaries_moved:
            yield Finding(("datastores", "redis", "primaries"),
                          f"the Redis cluster was formed with {old_primaries} primaries; {redis.primaries} would move "
                          "existing Redis hosts to other zones (replacing their volumes) and nothing reshards the formed "
                          f"cluster: keep primaries {old_primaries}; "
                          + _LOCK_HOW.format(path=lock.path, what="the region's redis_primaries",
                                             act="add nodes and reshard by hand (redis-cli --cluster add-node, reshard)"),
                          r.name)
        shrunk, zoned = set(), False
        for h in r.hosts:
            old = facts["data_hosts"].get(h.name)
            if old is None or host_size(r, h.group) is None:
                continue
            gib = data_disk_gib(plan, r, h)
            if gib < old.get("disk_gib", 0) and h.group not in shrunk:
                shrunk.add(h.group)
                how = _LOCK_HOW.format(path=lock.path, act="move the data off the host", what=release)
                sources = standby_sources(r, h.name)
                lost = [src for src in old.get("standby_of", ()) if src not in sources]
                if lost:  # a region that named this one its DR partner no longer does: its standby data goes
                    for src in lost:
                        yield Finding(("regions", src, "dr_partner") if src in plan.spec.regions else ("regions",),
                                      f"{h.name}'s data volume holds {src}'s DR standby cluster and was deployed at "
                                      f"{old['disk_gib']:,} GiB; without it the volume would shrink to {gib:,} GiB, "
                                      "which no cloud does in place (GCP deletes and recreates the disk): keep "
                                      f"{src}'s dr_partner, or raise {r.name}'s disk_gib so the volume stays at "
                                      f"{old['disk_gib']:,} GiB or more; {how}")
                    continue
                yield Finding(("datastores", path[h.group], "instance", "disk_gib"),
                              f"{h.name}'s data volume was deployed at {old['disk_gib']:,} GiB; it would shrink to "
                              f"{gib:,} GiB, which no cloud does in place (GCP deletes and recreates the disk): keep "
                              f"it at {old['disk_gib']:,} GiB or more; {how}", r.name)
            if old.get("zone") != h.zone and not zoned and not (primaries_moved and h.group == "redis_cluster"):
                zoned = True
                yield Finding(("network", "zones"),
                              f"{h.name} was deployed in zone {old.get('zone')}; it would move to {h.zone}, replacing "
                              "the host and its zonal data volume: keep the zones the region was deployed with; "
                              + _LOCK_HOW.format(path=lock.path, act="move the data off the host", what=release),
                              r.name)
