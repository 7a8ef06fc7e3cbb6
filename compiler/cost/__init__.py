"""`platformc cost`: a monthly estimate computed from what the spec provisions, priced from a catalogue.

The catalogue (`prices.yaml` beside this file) holds public on-demand list prices, each naming its source
page and the date it was read; the spec's `cost.prices` overrides any of them (same keys, `cloud/item` or
`cloud/item/name`, e.g. `aws/instance_hour/c6i.4xlarge`). The estimate reads the IR only: node pools at
min and max nodes, the self-managed hosts (or managed datastores), their disks, the cluster fee, NAT
gateways, the load balancer, WAF, KMS, APM hosts, the edge (Shield Advanced, CDN WAF, DNS) and, when the
spec gives monthly volumes (`cost.usage`), object storage, egress and the CDN.

The range: the low figure is the floor (every pool at min nodes) with the spec's reserved savings on that
always-on baseline (nodes and data hosts) and its spot savings on spot pools; the high figure adds every
pool's burst up to max nodes (capped at the cluster's max_nodes) at on-demand prices (spot pools at the
spot price). Categories are the seed's: compute, database, storage, networking, monitoring, security,
load_balancing.
"""

from __future__ import annotations

import functools
from dataclasses import field

from compiler.records import dataclass
from pathlib import Path

import yaml

from compiler.ir import PlatformPlan, RegionPlan
# The machines the Terraform roots create, from the one place both read (no machine type is restated here).
from compiler.ir.machines import AZURE_GATEWAY_CAPACITY, data_disk_gib, host_instance_type, host_size

CATALOGUE = Path(__file__).with_name("prices.yaml")
CATEGORIES = ("compute", "database", "storage", "networking", "monitoring", "security", "load_balancing")
WAF_MANAGED_RULE_GROUPS = 2  # common rule set and known bad inputs, when edge.waf.managed_rules


@functools.lru_cache(maxsize=1)
def catalogue() -> dict:
    """The price catalogue (prices.yaml). In the command line's process (compiler/codecache.py installed) it is kept
    in the cache directory as the loader keeps a spec, under its bytes and PyYAML's version: parsing it was ~23 M
    instructions, 2.5 % of every validate (issue 16)."""
    raw = CATALOGUE.read_bytes()
    from compiler import codecache
    if codecache.current() is None:
        return _parse_catalogue(raw)
    import hashlib
    key = hashlib.sha256(f"prices\0{yaml.__version__}\0".encode() + raw).digest()
    data = codecache.kept(str(CATALOGUE), key, lambda: _parse_catalogue(raw))
    return data if type(data) is dict else _parse_catalogue(raw)


def _parse_catalogue(raw: bytes) -> dict:
    # libyaml's parser when present (the same SafeConstructor and resolver, so the same data): the pure-Python
    # one took 15 ms of every validate and generate for this file
    return yaml.load(raw.decode("utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _flatten(cat: dict) -> dict[str, tuple[float, str]]:
    """'cloud/item' and 'cloud/item/name' -> (price, source)."""
    out: dict[str, tuple[float, str]] = {}

    def walk(prefix, node):
        if isinstance(node, dict) and "price" in node:
            out[prefix] = (float(node["price"]), node.get("source", ""))
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(f"{prefix}/{k}" if prefix else str(k), v)
    for cloud, body in cat["clouds"].items():
        walk(cloud, {k: v for k, v in body.items() if k != "base_region"})
    walk("global", cat["global"])
    return out


def price_keys() -> list[str]:
    """Every key the spec's `cost.prices` may override."""
    return sorted(_flatten(catalogue()))


@dataclass(frozen=True)
class Line:
    """One priced item of the estimate: a region's (or the platform's) monthly floor and ceiling."""

    region: str  # "" for platform-wide items
    category: str
    item: str  # what is priced, in words
    low: float  # monthly, after the spec's savings
    high: float
    list_low: float  # the floor at on-demand list prices (before savings)
    source: str  # the catalogue source(s), or "spec" for an override


@dataclass
class Estimate:
    """The estimate: the priced lines, what has no price or usage, and the budgets beside them."""

    currency: str
    lines: list[Line]
    unpriced: list[str]  # "region: what" that the catalogue has no price for
    not_estimated: list[str]  # traffic/volume items the spec gives no usage for
    budget: dict[str, float]  # cost.monthly
    region_budget: dict[str, float]  # region -> its part of the budget (cost.budget_split), summed
    locations: int  # sharding.expected_franchises
    regions: tuple[str, ...]
    notes: list[str] = field(default_factory=list)
    reference: dict[str, float] = field(default_factory=dict)  # cost.reference_estimate: a figure stated elsewhere
    split: str = "traffic_share"  # cost.budget_split

    def _sum(self, pred) -> tuple[float, float]:
        return self._total([ln for ln in self.lines if pred(ln)])

    @staticmethod
    def _total(sel) -> tuple[float, float]:
        return round(sum(ln.low for ln in sel), 2), round(sum(ln.high for ln in sel), 2)

    def _groups(self) -> dict:
        """The lines grouped by region, by category and by both, each group in the lines' order (so every sum
        adds the same floats in the same order as a scan would): the tables ask for every region and category,
        and scanning all lines for each made the docs' cost table quadratic in the regions. Rebuilt if `lines`
        is replaced or grows."""
        cached = self.__dict__.get("_grouped")
        if cached is None or cached[0] is not self.lines or cached[1] != len(self.lines):
            groups: dict = {}
            for ln in self.lines:
                groups.setdefault(("region", ln.region), []).append(ln)
                groups.setdefault(("category", ln.category), []).append(ln)
                groups.setdefault(("both", ln.category, ln.region), []).append(ln)
            cached = self.__dict__["_grouped"] = (self.lines, len(self.lines), groups)
        return cached[2]

    def category_lines(self, category: str) -> list[Line]:
        """The lines of a category, in order."""
        return list(self._groups().get(("category", category), ()))

    def region_total(self, region: str) -> tuple[float, float]:
        return self._total(self._groups().get(("region", region), ()))

    def category_total(self, category: str, region: str | None = None) -> tuple[float, float]:
        key = ("category", category) if region is None else ("both", category, region)
        return self._total(self._groups().get(key, ()))

    @property
    def total(self) -> tuple[float, float]:
        return self._sum(lambda ln: True)

    @property
    def list_floor(self) -> float:
        return round(sum(ln.list_low for ln in self.lines), 2)

    @property
    def per_location(self) -> tuple[float, float]:
        lo, hi = self.total
        return round(lo / self.locations, 2), round(hi / self.locations, 2)

    @property
    def budget_total(self) -> float:
        return float(sum(self.budget.values()))

    @property
    def reference_total(self) -> float:
        return float(sum(self.reference.values()))


class _Pricer:
    def __init__(self, plan: PlatformPlan):
        self.table = _flatten(catalogue())
        self.overrides = dict(plan.spec.cost.prices)
        self.hours = float(catalogue()["hours_per_month"])
        self.unpriced: list[str] = []

    def get(self, key: str, where: str) -> tuple[float, str]:
        if key in self.overrides:
            return float(self.overrides[key]), "spec"
        if key in self.table:
            return self.table[key]
        self.unpriced.append(f"{where}: {key} (add it to cost.prices)")
        return 0.0, "unpriced"

    def factor(self, region: RegionPlan) -> float:
        key = f"{region.cloud}/region_factor/{region.cloud_region}"
        if key in self.overrides or key in self.table:
            return self.get(key, region.name)[0]
        self.unpriced.append(f"{region.name}: {key} (base-region prices used)")
        return 1.0


def _money(x: float) -> float:
    return round(x, 2)


def _region_lines(plan: PlatformPlan, r: RegionPlan, p: _Pricer) -> list[Line]:
    s, cost, cloud = r.settings, plan.spec.cost, r.cloud
    reserved, spot = 1 - cost.reserved_savings_percent / 100, 1 - cost.spot_savings_percent / 100
    f = p.factor(r)
    month = p.hours * f
    out: list[Line] = []

    def add(category, item, low, high, list_low, source):
        out.append(Line(r.name, category, item, _money(low), _money(high), _money(list_low), source))

    # Node pools: the floor on reserved (or spot) prices, the burst up to max nodes on-demand (or spot).
    pools = s.kubernetes.node_pools
    node_month = {}
    for name, pool in pools.items():
        hourly, src = p.get(f"{cloud}/instance_hour/{pool.instance_types[cloud]}", r.name)
        node_month[name] = (hourly * month, src)
    room = max(0, s.kubernetes.max_nodes - sum(pl.min_nodes for pl in pools.values()))
    burst = {}
    for name in sorted(pools, key=lambda n: (-node_month[n][0], n)):  # the dearest pools fill the cap first
        burst[name] = min(pools[name].max_nodes - pools[name].min_nodes, room)
        room -= burst[name]
    disk, disk_src = p.get(f"{cloud}/block_gib_month", r.name)
    for name in sorted(pools):
        pool, (each, src) = pools[name], node_month[name]
        low_rate, high_rate = (each * spot, each * spot) if pool.spot else (each * reserved, each)
        kind = "spot" if pool.spot else "reserved floor"
        add("compute", f"node pool {name}: {pool.min_nodes}-{pool.min_nodes + burst[name]} x {pool.instance_types[cloud]} ({kind})",
            pool.min_nodes * low_rate, pool.min_nodes * low_rate + burst[name] * high_rate, pool.min_nodes * each, src)
        d = pool.disk_gib * disk * f
        add("storage", f"node disks {name}: {pool.disk_gib} GiB each", pool.min_nodes * d,
            (pool.min_nodes + burst[name]) * d, pool.min_nodes * d, disk_src)
    fee, src = p.get(f"{cloud}/cluster_hour", r.name)
    if s.kubernetes.version_support == "extended":  # compiler/ir/cluster_support.py: the standard fee until the
        # version leaves standard support, the extended-support fee from then on
        extended, _ = p.get(f"{cloud}/cluster_hour_extended", r.name)
        add("compute", "Kubernetes control plane (extended support once the version leaves standard support)",
            fee * month, extended * month, fee * month, src)
    else:
        add("compute", "Kubernetes control plane", fee * month, fee * month, fee * month, src)

    # The data tier: self-managed hosts, or the managed services at the catalogue's premium over the VM.
    ds = s.datastores
    data_disk = p.get(f"{cloud}/data_block_gib_month", r.name)[0] if f"{cloud}/data_block_gib_month" in p.table else disk
    groups: dict[str, list] = {}
    for h in r.hosts:
        groups.setdefault(h.group, []).append(h)
    for group, hosts in groups.items():
        size = host_size(r, group)
        itype = host_instance_type(r, group)
        hourly, src = p.get(f"{cloud}/instance_hour/{itype}", r.name)
        each = hourly * month
        category = "security" if group == "bastion" else "database"
        n = len(hosts)
        add(category, f"{group}: {n} x {itype} (reserved)", n * each * reserved, n * each * reserved, n * each, src)
        if size:
            sizes = [data_disk_gib(plan, r, h) for h in hosts]
            gib = sum(sizes)
            each_gib = f"{n} x {size.disk_gib} GiB" if len(set(sizes)) == 1 else " + ".join(f"{g:,}" for g in sizes) + " GiB"
            add("storage", f"{group} data volumes: {each_gib}", gib * data_disk * f, gib * data_disk * f,
                gib * data_disk * f, disk_src)
    managed = []
    if ds.postgres.deployment == "managed":
        managed.append(("postgres", ds.postgres.instance, 1 + ds.postgres.read_replicas + (1 if ds.postgres.multi_az else 0)))
    if ds.redis.deployment == "managed":
        managed.append(("redis", ds.redis.instance, ds.redis.primaries * (1 + ds.redis.replicas_per_primary)))
    if ds.elasticsearch.deployment == "managed":
        managed.append(("search", ds.elasticsearch.instance, ds.elasticsearch.nodes))
    for what, size, n in managed:
        hourly, src = p.get(f"{cloud}/instance_hour/{size.instance_types[cloud]}", r.name)
        premium, _ = p.get(f"{cloud}/managed_premium/{what}", r.name)
        each = hourly * premium * month
        add("database", f"managed {what}: {n} x {size.instance_types[cloud]}-class (reserved)",
            n * each * reserved, n * each * reserved, n * each, src)
        gib = n * size.disk_gib
        add("storage", f"managed {what} storage: {n} x {size.disk_gib} GiB", gib * data_disk * f, gib * data_disk * f,
            gib * data_disk * f, disk_src)

    # Networking, load balancing, security, monitoring.
    nat_hour, src = p.get(f"{cloud}/nat_gateway_hour", r.name)
    nats = len(r.zones) if cloud == "aws" and s.network.nat_per_zone else 1
    add("networking", f"NAT gateways: {nats}", nats * nat_hour * month, nats * nat_hour * month, nats * nat_hour * month, src)
    lb, src = p.get(f"{cloud}/load_balancer_hour", r.name)
    lo = hi = lb * month
    if cloud == "azure":
        unit, _ = p.get(f"{cloud}/load_balancer_unit_hour", r.name)
        lo, hi = lo + AZURE_GATEWAY_CAPACITY[0] * unit * month, lo + AZURE_GATEWAY_CAPACITY[1] * unit * month
    units = "{}-{}".format(*AZURE_GATEWAY_CAPACITY)
    add("load_balancing", "load balancer" + (f" (Application Gateway WAF_v2, {units} units)" if cloud == "azure" else ""), lo, hi, lo, src)
    waf = plan.spec.edge.waf
    rules = 1 + (1 if waf.blocked_countries else 0) + (WAF_MANAGED_RULE_GROUPS if waf.managed_rules else 0)
    acl, src = p.get(f"{cloud}/waf_acl_month", r.name)
    rule_price, _ = p.get(f"{cloud}/waf_rule_month", r.name)
    amount = acl + rules * rule_price
    add("security", f"WAF policy with {rules} rules", amount, amount, amount, src)
    kms, src = p.get(f"{cloud}/kms_key_month", r.name)
    add("security", "KMS key", kms, kms, kms, src)
    nodes_lo = sum(pl.min_nodes for pl in pools.values())
    nodes_hi = nodes_lo + sum(burst.values())
    for vendor in s.monitoring.apm:
        key = f"global/apm_host_month/{vendor}"
        if key in p.table or key in p.overrides:
            each, src = p.get(key, r.name)
            add("monitoring", f"{vendor} APM: {nodes_lo}-{nodes_hi} hosts", nodes_lo * each, nodes_hi * each, nodes_lo * each, src)
        else:
            p.unpriced.append(f"{r.name}: {vendor} APM (not priced per host; add {key} to cost.prices)")
    u = plan.spec.cost.usage
    for category, what, gib, key in (("storage", "object storage", u.object_storage_gib_per_region, "object_gib_month"),
                                     ("networking", "NAT data processed", u.nat_processed_gib_per_region, "nat_gib"),
                                     ("networking", "Internet egress", u.internet_egress_gib_per_region, "egress_gib")):
        if gib:
            each, src = p.get(f"{cloud}/{key}", r.name)
            add(category, f"{what}: {gib:g} GiB", gib * each * f, gib * each * f, gib * each * f, src)
    return out


def _global_lines(plan: PlatformPlan, p: _Pricer) -> list[Line]:
    edge, u = plan.spec.edge, plan.spec.cost.usage
    out = []

    def add(category, item, amount, source):
        out.append(Line("", category, item, _money(amount), _money(amount), _money(amount), source))

    if edge.ddos_protection:
        amount, src = p.get("global/shield_advanced_month", "global")
        add("security", "Shield Advanced subscription (edge.ddos_protection)", amount, src)
    acl, src = p.get("global/cdn_waf_acl_month", "global")
    rule_price, _ = p.get("aws/waf_rule_month", "global")
    rules = 1 + (1 if edge.waf.blocked_countries else 0) + (WAF_MANAGED_RULE_GROUPS if edge.waf.managed_rules else 0)
    add("security", f"CDN WAF web ACL with {rules} rules", acl + rules * rule_price, src)
    zone, src = p.get("global/dns_zone_month", "global")
    check, _ = p.get("global/health_check_month", "global")
    add("networking", f"DNS zone and {len(plan.regions)} health checks", zone + check * len(plan.regions), src)
    if u.cdn_egress_gib:
        each, src = p.get("global/cdn_gib", "global")
        add("networking", f"CDN egress: {u.cdn_egress_gib:g} GiB", u.cdn_egress_gib * each, src)
    if u.cdn_requests_millions:
        each, src = p.get("global/cdn_https_requests_million", "global")
        add("networking", f"CDN requests: {u.cdn_requests_millions:g} million", u.cdn_requests_millions * each, src)
    return out


def _priced(plan: PlatformPlan) -> tuple[tuple[Line, ...], list[str]]:
    """The estimate's lines and what has no price, once per plan (PlatformPlan.derived). They read the regions'
    settings and the spec, never the regions' budgets, so the plan split_by_estimate makes keeps its source plan's:
    the R044 rule then prices nothing again (issue 16: a second pricing was ~11 M instructions of a validate)."""
    def compute():
        p = _Pricer(plan)
        lines = [ln for r in plan.regions for ln in _region_lines(plan, r, p)] + _global_lines(plan, p)
        return tuple(lines), sorted(set(p.unpriced))
    return plan.derived("cost_priced", compute)


def estimate(plan: PlatformPlan) -> Estimate:
    lines, unpriced = _priced(plan)
    u = plan.spec.cost.usage
    missing = [name for name, v in (("object storage (cost.usage.object_storage_gib_per_region)", u.object_storage_gib_per_region),
                                    ("NAT data processed (cost.usage.nat_processed_gib_per_region)", u.nat_processed_gib_per_region),
                                    ("Internet egress (cost.usage.internet_egress_gib_per_region)", u.internet_egress_gib_per_region),
                                    ("CDN egress (cost.usage.cdn_egress_gib)", u.cdn_egress_gib),
                                    ("CDN requests (cost.usage.cdn_requests_millions)", u.cdn_requests_millions)) if not v]
    return Estimate(
        currency=plan.spec.cost.currency, lines=list(lines), unpriced=list(unpriced), not_estimated=missing,
        budget={k: float(v) for k, v in plan.spec.cost.monthly.items()},
        region_budget={r.name: round(sum(r.monthly_budget.values()), 2) for r in plan.regions},
        locations=plan.spec.sharding.expected_franchises, regions=plan.region_names,
        reference={k: float(v) for k, v in plan.spec.cost.reference_estimate.items()}, split=plan.spec.cost.budget_split)


def split_by_estimate(plan: PlatformPlan) -> PlatformPlan:
    """`cost.budget_split: estimate`: each region's budget for a category is its part of that category's estimated
    floor, platform-wide items included (the edge's part of the budget is no region's); a category with no floor
    anywhere is split by traffic share. The estimate's lines do not depend on the budgets, so the plan is priced
    once and the regions get their budgets from it (pipeline, after resolve)."""
    from dataclasses import replace
    from compiler import records
    from compiler.ir import frozen_map
    est = estimate(plan)
    floor = {(ln.region, ln.category): 0.0 for ln in est.lines}
    for ln in est.lines:
        floor[(ln.region, ln.category)] += ln.low
    # each category's platform-wide floor, summed once (the same additions in the same order), not once per region
    totals = {cat: sum(v for (_, c), v in floor.items() if c == cat) for cat in plan.spec.cost.monthly}
    regions = []
    for r in plan.regions:
        budget = {}
        for cat, amount in sorted(plan.spec.cost.monthly.items()):
            total = totals[cat]
            part = floor.get((r.name, cat), 0.0) / total if total > 0 else r.traffic_share / 100
            budget[cat] = round(amount * part, 2)
        regions.append(records.replace(r, monthly_budget=frozen_map(budget)))  # the deferred facts stay deferred
    split = replace(plan, regions=tuple(regions))
    split.derived("cost_priced", lambda: _priced(plan))  # the same lines: only the budgets changed
    return split


# ---------------------------------------------------------------- rendering

def usd(x: float) -> str:
    return f"${x:,.0f}"


def _range(lo: float, hi: float) -> str:
    return usd(lo) if round(lo) == round(hi) else f"{usd(lo)} - {usd(hi)}"


def explain(est: Estimate) -> list[str]:
    """Why the estimate differs from the budget, category by category, in words."""
    lo, hi = est.total
    out = [f"The spec's budget (cost.monthly) is {usd(est.budget_total)}/month, ${est.budget_total / est.locations:,.2f} "
           f"per location for {est.locations:,} locations; what the spec provisions costs {_range(lo, hi)}/month "
           f"({lo / est.budget_total:.1f}x the budget at the floor)." if est.budget_total else "No budget to compare."]
    for cat in CATEGORIES:
        c_lo, c_hi = est.category_total(cat)
        b = est.budget.get(cat, 0.0)
        top = sorted(est.category_lines(cat), key=lambda ln: -ln.low)
        drivers: dict[str, float] = {}
        for ln in top:
            key = ln.item.split(":")[0]
            drivers[key] = drivers.get(key, 0.0) + ln.low
        biggest = sorted(drivers.items(), key=lambda kv: -kv[1])[:2]
        words = ", ".join(f"{k} {usd(v)}" for k, v in biggest) or "nothing priced"
        out.append(f"{cat}: {_range(c_lo, c_hi)} against {usd(b)} ({c_lo - b:+,.0f} at the floor); largest: {words}.")
    if est.reference:
        out.append(_versus_reference(est))
    if est.regions:
        floors = {r: est.region_total(r)[0] for r in est.regions}
        worst = max(floors, key=lambda r: (floors[r] / est.region_budget[r] if est.region_budget[r] else 0, r))
        over = [r for r in est.regions if floors[r] > est.region_budget[r] + 0.005]
        if est.split == "estimate":
            out.append(f"Each region's budget is its part of each category's estimated floor (cost.budget_split: "
                       f"estimate): {len(over)} of {len(est.regions)} regions' floors exceed their budgets"
                       + (f"; the furthest over, {worst}, costs {usd(floors[worst])} against {usd(est.region_budget[worst])}."
                          if over else "."))
        else:
            out.append(f"Each region's budget is its traffic share of cost.monthly, but each runs its own cluster and data "
                       f"tier: {len(over)} of {len(est.regions)} regions' floors exceed their budgets"
                       + (f"; the furthest over, {worst}, costs {usd(floors[worst])} against {usd(est.region_budget[worst])}"
                          " (cost.budget_split: estimate divides the budget as the estimate does)." if over else "."))
    if est.not_estimated:
        out.append("Not estimated (no monthly volume in the spec): " + "; ".join(est.not_estimated) + ".")
    if est.unpriced:
        out.append("Unpriced: " + "; ".join(est.unpriced) + ".")
    out.append(f"Floor at on-demand list prices, before the spec's reserved and spot savings: {usd(est.list_floor)}.")
    return out


def _versus_reference(est: Estimate) -> str:
    """The stated estimate (cost.reference_estimate) beside the computed floor: the total and where they part most."""
    lo, _ = est.total
    ref = est.reference_total
    gaps = sorted(((est.category_total(c)[0] - est.reference.get(c, 0.0), c) for c in CATEGORIES
                   if c in est.reference), reverse=True)
    words = ", ".join(f"{c} {usd(est.category_total(c)[0])} against {usd(est.reference[c])}" for _, c in gaps[:3])
    return (f"The stated estimate (cost.reference_estimate) is {usd(ref)}/month, ${ref / est.locations:,.2f} per location; "
            f"the spec as written provisions {usd(lo)} at the floor ({lo / ref:.1f}x); the largest gaps, by category "
            f"(drivers above): {words}." if ref else "")


def render_text(est: Estimate) -> str:
    head = ["region"] + list(CATEGORIES) + ["total", "budget"]
    rows = []
    for r in est.regions:
        rows.append([r] + [_range(*est.category_total(c, r)) for c in CATEGORIES] + [_range(*est.region_total(r)), usd(est.region_budget[r])])
    g = [ln for ln in est.lines if not ln.region]
    if g:
        rows.append(["global"] + [_range(*est.category_total(c, "")) for c in CATEGORIES]
                    + [_range(*est.region_total("")), "-"])
    rows.append(["total"] + [_range(*est.category_total(c)) for c in CATEGORIES] + [_range(*est.total), usd(est.budget_total)])
    rows.append(["budget"] + [usd(est.budget.get(c, 0)) for c in CATEGORIES] + [usd(est.budget_total), ""])
    if est.reference:
        rows.append(["stated"] + [usd(est.reference.get(c, 0)) for c in CATEGORIES] + [usd(est.reference_total), ""])
    widths = [max(len(str(x[i])) for x in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) if i == 0 else str(v).rjust(w) for i, (v, w) in enumerate(zip(row, widths))).rstrip()
             for row in [head] + rows]
    lo, hi = est.per_location
    lines += ["", f"monthly ({est.currency}, catalogue of {catalogue()['transcribed']}): {_range(*est.total)}; "
                  f"per location: ${lo:,.2f} - ${hi:,.2f} ({est.locations:,} locations)",
              f"budget (cost.monthly): {usd(est.budget_total)}; per location: ${est.budget_total / est.locations:,.2f}"]
    if est.reference:
        lines.append(f"stated estimate (cost.reference_estimate): {usd(est.reference_total)}; per location: "
                     f"${est.reference_total / est.locations:,.2f}")
    lines.append("")
    lines += explain(est)
    return "\n".join(lines) + "\n"


def render_markdown(est: Estimate, heading: str = "##") -> str:
    out = [f"{heading} Cost estimate", "",
           f"Monthly, in {est.currency}, from the price catalogue (`compiler/cost/prices.yaml`, list prices of "
           f"{catalogue()['transcribed']}) and what the spec provisions: the floor (min nodes, the spec's reserved and "
           f"spot savings) to the ceiling (max nodes). `platformc cost` prints the same; `platformc cost --format json` "
           f"itemises it.", "",
           "| region | " + " | ".join(CATEGORIES) + " | total | budget |",
           "| --- |" + " ---: |" * (len(CATEGORIES) + 2)]
    for r in est.regions:
        out.append(f"| {r} | " + " | ".join(_range(*est.category_total(c, r)) for c in CATEGORIES)
                   + f" | {_range(*est.region_total(r))} | {usd(est.region_budget[r])} |")
    if any(not ln.region for ln in est.lines):
        out.append("| global | " + " | ".join(_range(*est.category_total(c, "")) for c in CATEGORIES)
                   + f" | {_range(*est.region_total(''))} | - |")
    out.append("| **total** | " + " | ".join(_range(*est.category_total(c)) for c in CATEGORIES)
               + f" | **{_range(*est.total)}** | {usd(est.budget_total)} |")
    out.append("| budget (cost.monthly) | " + " | ".join(usd(est.budget.get(c, 0)) for c in CATEGORIES)
               + f" | {usd(est.budget_total)} | |")
    if est.reference:
        out.append("| stated estimate (cost.reference_estimate) | " + " | ".join(usd(est.reference.get(c, 0)) for c in CATEGORIES)
                   + f" | {usd(est.reference_total)} | |")
    lo, hi = est.per_location
    out += ["", f"Per franchise location: ${lo:,.2f} - ${hi:,.2f} a month ({est.locations:,} locations); "
                f"the budget's is ${est.budget_total / est.locations:,.2f}"
                + (f", the stated estimate's ${est.reference_total / est.locations:,.2f}." if est.reference else "."), ""]
    out += [f"- {x}" for x in explain(est)]
    return "\n".join(out) + "\n"


def to_json(est: Estimate) -> dict:
    lo, hi = est.total
    return {"currency": est.currency, "catalogue": catalogue()["transcribed"],
            "total": {"low": lo, "high": hi}, "per_location": dict(zip(("low", "high"), est.per_location)),
            "budget": {"total": est.budget_total, "by_category": est.budget, "by_region": est.region_budget,
                       "split": est.split},
            "reference_estimate": {"total": est.reference_total, "by_category": est.reference},
            "regions": {r: dict(zip(("low", "high"), est.region_total(r))) for r in est.regions},
            "lines": [ln.__dict__ for ln in est.lines], "unpriced": est.unpriced, "not_estimated": est.not_estimated,
            "explanation": explain(est)}


def docs_section(plan: PlatformPlan) -> str:
    """The cost table for docs/ (the overview page): a Markdown section."""
    return render_markdown(estimate(plan))


def over_budget(plan: PlatformPlan) -> list[tuple[str, float, float]]:
    """(region, estimated floor, budget) for every region whose floor exceeds its budget (cost.budget_split)."""
    if plan.spec.cost.currency != catalogue()["currency"]:
        return []  # the catalogue is in USD; a EUR budget is not compared
    est = estimate(plan)
    return [(r, est.region_total(r)[0], est.region_budget[r]) for r in est.regions
            if est.region_total(r)[0] > est.region_budget[r] + 0.005]
