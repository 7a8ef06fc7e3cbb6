"""Resolve: validated models -> one immutable RegionPlan per region (the IR).

Pure functions only; every derived number is computed here once. The semantic rules that guard
the resolver's assumptions (DR partners exist, tiers exist, ...) have run before it.
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import math
import sys
from types import MappingProxyType

from compiler.ir import (Amounts, ConnectionBudget, Host, PlatformPlan, PoolCapacity, RegionPlan,
                         ServicePlan, Shard, Zone, frozen_map)
from compiler.model.base import cpu_millicores, memory_mib
from compiler.model.platform import Platform, Region, RegionSettings
from compiler.wiring import addressing, connections
from compiler.ir import identity
from compiler.ir.edge import target_group_name
from compiler.records import Later
from compiler.ir.data_access import data_access
from compiler.ir.dr_serving import PromotedPool, designated_leader, served_homes, serving_map

_ZONE_SUFFIX = {"aws": lambda r, i: f"{r}{'abcdef'[i]}",
                "gcp": lambda r, i: f"{r}-{'abcdef'[i]}",
                "azure": lambda r, i: str(i + 1)}


# Regions whose zones are not the first letters (provider docs, 2025): derived names come from here.
KNOWN_ZONES = {
    ("aws", "ca-central-1"): ("ca-central-1a", "ca-central-1b", "ca-central-1d"),
    ("aws", "ap-northeast-1"): ("ap-northeast-1a", "ap-northeast-1c", "ap-northeast-1d"),
    ("aws", "us-west-1"): ("us-west-1b", "us-west-1c"),
    ("gcp", "europe-west1"): ("europe-west1-b", "europe-west1-c", "europe-west1-d"),
    ("gcp", "us-east1"): ("us-east1-b", "us-east1-c", "us-east1-d"),
    ("gcp", "us-central1"): ("us-central1-a", "us-central1-b", "us-central1-c", "us-central1-f"),
}


def zone_names(region: Region, count: int) -> list[str]:
    if region.zones:
        return list(region.zones[:count])
    known = KNOWN_ZONES.get((region.cloud, region.cloud_region))
    if known:
        return list(known[:count])
    return [_ZONE_SUFFIX[region.cloud](region.cloud_region, i) for i in range(count)]


def carve_subnets(cidr: str, zones: int, private_prefix: int, public_prefix: int) -> list[tuple[str, str]] | None:
    """Private subnets first (one per zone), public ones in the next block; None if it does not fit."""
    net = ipaddress.ip_network(cidr, strict=False)
    if private_prefix < net.prefixlen or public_prefix < private_prefix:
        return None
    # only the blocks used are made (a /16 at /19 and /24 holds 8 and 32; validate and resolve carve every region)
    blocks = list(itertools.islice(net.subnets(new_prefix=private_prefix), zones + 1))
    if len(blocks) < zones + 1:
        return None
    public = list(itertools.islice(blocks[zones].subnets(new_prefix=public_prefix), zones))
    if len(public) < zones:
        return None
    return [(str(blocks[i]), str(public[i])) for i in range(zones)]


@functools.lru_cache(maxsize=4096)  # the regions share their resources models (pipeline._share): one Amounts each
def _amounts(a) -> Amounts:
    return Amounts(a.cpu, a.memory, a.gpu, cpu_millicores(a.cpu), memory_mib(a.memory))


def service_plans(platform: Platform, region: Region, s: RegionSettings) -> tuple[ServicePlan, ...]:
    enabled = {n: svc for n, svc in s.services.items() if svc.enabled}
    registry = platform.clouds[region.cloud].registry
    plans = []
    for name in sorted(enabled):
        svc = enabled[name]
        tier = s.tiers[svc.tier]
        pool = svc.node_pool or tier.node_pool
        res = svc.resources or tier.resources
        replicas = svc.replicas or tier.replicas
        conns = svc.db_connections_per_pod if svc.db_connections_per_pod is not None else tier.db_connections_per_pod
        plans.append(ServicePlan(
            name=name, tier=svc.tier, description=svc.description, namespace=name,
            dns_name=sys.intern(f"{name}.{name}.svc.cluster.local"), service_port=svc.port,  # the same in each region
            image=sys.intern(f"{registry}/{svc.image}"), tag=svc.tag, port=svc.port, health_path=svc.health_path,
            replicas_min=replicas.min, replicas_max=replicas.max,
            requests=_amounts(res.requests), limits=_amounts(res.limits),
            node_pool=pool, gpu_pool=s.kubernetes.node_pools[pool].gpus > 0,
            db_connections_per_pod=conns if "postgres" in svc.uses else 0,
            depends_on=tuple(sorted(d for d in svc.depends_on if d in enabled)),
            dependents=tuple(sorted(n for n, o in enabled.items() if name in o.depends_on)),
            uses=tuple(sorted(svc.uses)), routes=tuple(svc.routes), rollout=svc.rollout,
            secrets=frozen_map(dict(sorted(svc.secrets.items()))), env=frozen_map(dict(sorted(svc.env.items()))),
            egress=tuple(svc.egress), writable_paths=tuple(svc.writable_paths),
        ))
    return tuple(plans)


def capacity(s: RegionSettings, services: tuple[ServicePlan, ...]) -> tuple[PoolCapacity, ...]:
    usable = (100 - s.kubernetes.system_reserved_percent) / 100
    out = []
    for name in sorted(s.kubernetes.node_pools):
        pool = s.kubernetes.node_pools[name]
        on_pool = [x for x in services if x.node_pool == name]
        out.append(PoolCapacity(
            name=name, max_nodes=pool.max_nodes,
            cpu_millicores=int(pool.max_nodes * pool.vcpus * 1000 * usable),
            memory_mib=pool.max_nodes * pool.memory_gib * 1024 * usable,
            gpus=pool.max_nodes * pool.gpus,
            demand_cpu_millicores=sum(x.replicas_max * x.requests.cpu_millicores for x in on_pool),
            demand_memory_mib=sum(x.replicas_max * x.requests.memory_mib for x in on_pool),
            demand_gpus=sum(x.replicas_max * x.requests.gpu for x in on_pool),
            services=tuple(x.name for x in on_pool),
        ))
    return tuple(out)


def connection_budget(s: RegionSettings, services: tuple[ServicePlan, ...], databases: int) -> ConnectionBudget:
    per_service = {x.name: x.replicas_max * x.db_connections_per_pod for x in services if x.db_connections_per_pod}
    return _budget(s.datastores.postgres, s.datastores.pgbouncer, per_service, databases)


def _budget(pg, pgb, per_service: dict, databases: int) -> ConnectionBudget:
    """PostgreSQL `pg`'s usable connections shared among PgBouncer `pgb`'s hosts x `databases` pools."""
    available = pg.max_connections - pg.reserved_connections
    pools = max(1, pgb.hosts * databases)
    pool_size = available // pools - pgb.reserve_pool_size
    return ConnectionBudget(
        per_service=frozen_map(per_service), client_connections=sum(per_service.values()),
        max_client_conn=pgb.max_client_conn, databases=databases, pgbouncer_hosts=pgb.hosts,
        default_pool_size=pool_size, reserve_pool_size=pgb.reserve_pool_size,
        server_connections=pools * (pool_size + pgb.reserve_pool_size), postgres_available=available,
        pgbouncer_nofile=pgbouncer_nofile(pgb.max_client_conn, databases, pool_size + pgb.reserve_pool_size))


def promoted_databases(region) -> list[tuple[str, str]]:
    """The [databases] lines (PgBouncer name, PostgreSQL database) the DR partner's PgBouncer adds to serve `region`'s
    shards from its promoted standby cluster (the DR runbook's step 4): each shard, and each shard's read-only name
    where the region has replicas (they go to the promoted leader too: nothing in front of it tells a replica)."""
    return _promoted_names(region.settings, region.shards)


def _promoted_names(s: RegionSettings, shards) -> list[tuple[str, str]]:
    from compiler.ir.names import PGBOUNCER_READ_ONLY_SUFFIX
    out = [(x.database, x.database) for x in shards]
    if s.datastores.postgres.read_replicas:
        out += [(x.database + PGBOUNCER_READ_ONLY_SUFFIX, x.database) for x in shards]
    return out


def promoted_budget(region, partner) -> ConnectionBudget:
    """The pools of `region`'s shards once its standby cluster in `partner` is promoted: the promoted cluster keeps
    `region`'s max_connections and reserved connections (a hot standby must match its primary's), and `partner`'s
    PgBouncer hosts each get one pool per promoted_databases line. Without per-line limits each line took
    `partner`'s own default_pool_size and max_db_connections, sized for its own cluster and shards: together more
    than the promoted cluster admits."""
    return _promoted_budget(region.settings, partner.settings, region.shards)


def _promoted_budget(s: RegionSettings, partner: RegionSettings, shards) -> ConnectionBudget:
    return _budget(s.datastores.postgres, partner.datastores.pgbouncer, {}, len(_promoted_names(s, shards)))


def pgbouncer_nofile(max_client_conn: int, databases: int, per_database: int, extra: int = 0) -> int:
    """PgBouncer's open-file limit: every client, every server connection of both pools (read-write and read-only,
    each database capped at max_db_connections = pool + reserve), `extra` server connections (the lines a DR partner
    serves a failed-over region's shards with, each capped at its own max_db_connections), plus a margin; rounded up
    to 1024."""
    from compiler.ir.names import PGBOUNCER_NOFILE_MARGIN
    need = max_client_conn + 2 * databases * max(0, per_database) + extra + PGBOUNCER_NOFILE_MARGIN
    return -(-need // 1024) * 1024


def apportion(total: int, shares: dict[str, float]) -> dict[str, int]:
    """Split `total` shards among the regions (in the dict's order) in proportion to their shares, at least one
    each: largest remainder, then, where the minimum of one overshoots the total, one shard less for the most
    over-served regions. The counts sum to `total` exactly whenever total >= the number of regions (R021)."""
    names = list(shares)
    order = {n: i for i, n in enumerate(names)}
    whole = sum(shares.values()) or 1
    exact = {n: total * shares[n] / whole for n in names}
    count = {n: max(1, math.floor(exact[n])) for n in names}
    left = total - sum(count.values())
    if left > 0:  # fewer than one per region: the remainders are each below 1, so no region passes its ceiling
        by_remainder = sorted(names, key=lambda n: (-(exact[n] - count[n]), order[n]))
        for i in range(left):
            count[by_remainder[i % len(by_remainder)]] += 1
    while left < 0:  # the minimum of one overshot: take back from the region furthest above its exact share
        over = [n for n in names if count[n] > 1]
        if not over:
            break  # fewer shards than regions: R021 refuses the spec
        n = min(over, key=lambda n: (exact[n] - count[n], -order[n]))
        count[n] -= 1
        left += 1
    return count


def allocate_shards(platform: Platform, locked: dict | None = None) -> dict[str, list[int]]:
    """Shard numbers per region, proportional to traffic share (largest remainder, at least one each; the
    numbers are exactly 1..ceil(capacity_franchises / franchises_per_shard)).

    Without a lock, regions take contiguous shard numbers in spec order. With `locked` (shard number -> region, the
    deployed-facts lock: compiler/ir/deployed.py), every locked shard stays in its region, and only the others (added
    capacity, or a removed region's, which R076 refuses) go to the regions furthest below their traffic share, in
    contiguous blocks in spec order: raising capacity or adding a region moves no franchise. A region gets no shard
    when none is free (R076 says to raise capacity).
    """
    count = apportion(shard_count(platform), {n: r.traffic_share for n, r in platform.regions.items()})
    if locked:
        return _allocate_after(platform, count, locked)
    out, nxt = {}, 1
    for n in platform.regions:
        out[n] = list(range(nxt, nxt + count[n]))
        nxt += count[n]
    return out


def _allocate_after(platform: Platform, target: dict[str, int], locked: dict) -> dict[str, list[int]]:
    import heapq
    total = shard_count(platform)
    out: dict[str, list[int]] = {n: [] for n in platform.regions}
    free = []
    for number in range(1, total + 1):
        region = locked.get(number)
        if region in out:
            out[region].append(number)
        else:
            free.append(number)
    if free:
        order = {n: i for i, n in enumerate(out)}
        heap = [(len(out[n]) - target[n], order[n], n) for n in out]  # most below its share first, then spec order
        heapq.heapify(heap)
        extra = dict.fromkeys(out, 0)
        for _ in free:
            below, i, n = heapq.heappop(heap)
            extra[n] += 1
            heapq.heappush(heap, (below + 1, i, n))
        at = 0
        for n in out:
            out[n] = sorted(out[n] + free[at:at + extra[n]])
            at += extra[n]
    return out


def shard_count(platform: Platform) -> int:
    return math.ceil(platform.sharding.capacity_franchises / platform.sharding.franchises_per_shard)


def redis_zone(index: int, zones: int) -> int:
    """The zone (0-based) of Redis host `redis-<index>`: a function of its name alone, so a host keeps its zone (its
    volume and subnet) whatever the primary and replica counts become. Hosts fill the zones row by row, each row
    shifted by one: with as many primaries as zones this is exactly the earlier placement (primary j in zone j,
    its replica of round r in zone j + 1 + r)."""
    i = index - 1
    return (i % zones + i // zones) % zones


def redis_replica_primaries(primaries: int, replicas_per_primary: int, zones: int) -> list[int]:
    """For each replica host in name order (redis-<primaries+1> on), the 0-based primary it replicates: every primary
    gets one replica per round, none in its own zone nor, where the zones allow, in a zone another of its replicas
    is in. Round by round (a matching per round, the replica's own primary tried first), so adding rounds never
    moves an existing replica to another primary."""
    zone = lambda index: redis_zone(index, zones)  # noqa: E731
    primary_zone = [zone(j + 1) for j in range(primaries)]
    taken: list[set] = [{primary_zone[j]} for j in range(primaries)]
    out: list[int] = []
    for r in range(replicas_per_primary):
        replica_zone = [zone(primaries * (r + 1) + j + 1) for j in range(primaries)]
        owner: list[int | None] = [None] * primaries  # primary -> replica of this round

        def match(j, ok, seen):
            for p in ((j + k) % primaries for k in range(primaries)):
                if p in seen or not ok(j, p):
                    continue
                seen.add(p)
                if owner[p] is None or match(owner[p], ok, seen):
                    owner[p] = j
                    return True
            return False

        for ok in (lambda j, p: replica_zone[j] not in taken[p],
                   lambda j, p: replica_zone[j] != primary_zone[p]):
            owner = [None] * primaries
            if all([match(j, ok, set()) for j in range(primaries)]):
                break
        # else the zones cannot keep every replica of this round out of its primary's (one zone, or two zones and
        # more rounds than they fit): as many as they can are, the rest replicate the primaries left over, in order
        left = iter(j for j in range(primaries) if j not in owner)
        owner = [j if j is not None else next(left) for j in owner]
        chosen = {j: p for p, j in enumerate(owner)}
        for j in range(primaries):
            out.append(chosen[j])
            taken[chosen[j]].add(replica_zone[j])
    return out


def hosts(platform: Platform, name: str, s: RegionSettings, zones: list[str], internal: str) -> tuple[Host, ...]:
    """The region's self-managed hosts. Each host's zone is a function of its own name (its group's index), never of
    another group's size or its own group's count: a changed count adds or removes hosts at the end and moves none
    (moving one would replace its VM and its data volume)."""
    prefix = f"{platform.organization.name}-{name}"
    out: list[Host] = []

    def add(short, group, index, zone_i, replica_of=None):
        host = f"{prefix}-{short}-{index}"
        out.append(Host(host, group, zones[zone_i % len(zones)], f"{host}.{internal}", index, replica_of))
        return host

    ds = s.datastores
    if ds.postgres.deployment == "self-managed":
        primary = add("pg", "postgres_primary", 1, 0)
        for i in range(ds.postgres.read_replicas):
            add("pg", "postgres_replicas", i + 2, i + 1, replica_of=primary)
    for i in range(ds.pgbouncer.hosts):
        add("pgbouncer", "pgbouncer", i + 1, i)
    if ds.redis.deployment == "self-managed":
        count = ds.redis.primaries
        primaries = [add("redis", "redis_cluster", i + 1, redis_zone(i + 1, len(zones))) for i in range(count)]
        of = redis_replica_primaries(count, ds.redis.replicas_per_primary, len(zones))
        for k, p in enumerate(of):
            index = count + k + 1
            add("redis", "redis_cluster", index, redis_zone(index, len(zones)), replica_of=primaries[p])
    if ds.elasticsearch.deployment == "self-managed":
        for i in range(ds.elasticsearch.nodes):
            add("es", "elasticsearch", i + 1, i)
    add("bastion", "bastion", 1, 0)
    return tuple(out)


def bucket_names(org: str, region: str, cloud: str) -> tuple[str, str, str]:
    """(backup bucket, backup URL, data bucket). Azure storage accounts allow 3-24 lower-case alphanumerics."""
    if cloud == "azure":
        base = (org + region).replace("-", "")[:22]
        return f"{base}bk", f"azure://{base}bk/backups", f"{base}dt"
    backup = f"{org}-{region}-backups"
    scheme = {"aws": "s3", "gcp": "gs"}[cloud]
    return backup, f"{scheme}://{backup}", f"{org}-{region}-data"


def _tag_value(text: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_" else "-" for c in text.lower())
    return safe[:63]


def tags(platform: Platform, name: str, region: Region) -> dict[str, str]:
    org = platform.organization
    return {
        "org": _tag_value(org.name), "owner": _tag_value(org.owner), "cost-center": _tag_value(org.cost_center),
        "region": _tag_value(name), "geo": _tag_value(region.geo), "cloud": region.cloud,
        "compliance": _tag_value("_".join(org.compliance)), "managed-by": "platformc",
    }


def resolve_region(platform: Platform, name: str, settings: dict, provenance: dict, shard_numbers: list[int],
                   linked: dict, seen: dict | None = None, ends: dict | None = None,
                   allocation: dict | None = None, serving: dict | None = None) -> RegionPlan:
    """One region's plan. `settings`: every region's merged settings (the region's own, and its DR partners' for the
    standby clusters it runs). `linked`: every region's plan by name, filled by the caller once all are made: the region's wiring
    reads its linked regions' facts when it is computed. `allocation`: every region's shard numbers; `serving`: the
    region serving each home's franchises (compiler/ir/dr_serving.py), computed once by the caller. `seen`, `ends`: memos
    the platform's regions share
    (identity.all_refs, wiring.inter_region_connections).

    The wiring, identities, secret-store entries and datastore credentials are computed when first read (records.Later):
    the semantic rules never read them, `generate --region` reads them for the regions it emits."""
    from compiler.ir import postgres_ha
    from compiler.ir.log_volume import log_volume
    s = settings[name]
    region = platform.regions[name]
    partner = platform.regions[region.dr_partner]
    zones = zone_names(region, s.network.zones)
    subnets = carve_subnets(region.cidr, len(zones), s.network.private_subnet_prefix, s.network.public_subnet_prefix)
    internal = f"{name}.internal.{platform.organization.domain}"
    services = service_plans(platform, region, s)
    serving = serving or serving_map(platform)
    shards = region_shards(platform, settings, name, shard_numbers, serving)
    served = tuple(sh for home in served_homes(platform, name) for sh in
                   region_shards(platform, settings, home, (allocation or {}).get(home, ()), serving))
    share = region.traffic_share / 100
    org = platform.organization.name
    cluster = f"{org}-{name}"
    backup_bucket, backup_url, data_bucket = bucket_names(org, name, region.cloud)
    zone_plans = tuple(Zone(z, p, pub) for z, (p, pub) in zip(zones, subnets))
    region_hosts = hosts(platform, name, s, zones, internal)
    addresses = addressing(region.cloud, region.cidr, zone_plans, s)
    # the region's Patroni cluster, etcd and the standby clusters it runs for its DR partners (compiler/ir/postgres_ha.py)
    ha = postgres_ha.plan(platform, name, s, region_hosts, internal, settings.__getitem__)

    def wiring():
        from compiler.wiring import (identity_token_connections, inter_region_connections, postgres_ha_connections,
                                     promoted_standby_connections)
        own = connections(platform, name, region.cloud, s, services, region_hosts, zone_plans, addresses, internal,
                          partner.cidr, serving) + identity_token_connections(linked[name])
        if ha is not None:
            own += postgres_ha_connections(region.cloud, ha, region_hosts, zone_plans, addresses, partner.cidr)
            own += promoted_standby_connections(s, services, ha, region_hosts, zone_plans)
        return inter_region_connections(platform, linked[name], linked, own, ends, serving)

    # the services' ConfigMaps list the shards the region serves: its own, then those of the failed-over regions
    promoted = promoted_pools(platform, settings, name, ha, region_hosts, served)
    access = Later(lambda: data_access(s, services, shards + served, region_hosts, internal, region.cloud, data_bucket,
                                       name, cluster, cloud_region=region.cloud_region))
    return RegionPlan(
        name=name, geo=region.geo, cloud=region.cloud, cloud_region=region.cloud_region,
        location=region.location, role=region.role, traffic_share=region.traffic_share,
        dr_partner=region.dr_partner, dr_partner_cloud=partner.cloud, dr_partner_cloud_region=partner.cloud_region,
        cidr=region.cidr,
        zones=zone_plans,
        internal_domain=internal, cluster_name=cluster, backup_bucket=backup_bucket, backup_url=backup_url, data_bucket=data_bucket,
        settings=s, services=services,
        hosts=region_hosts, shards=shards,
        connections=with_promoted(connection_budget(s, services, len(shards)), promoted),
        capacity=capacity(s, services),
        monthly_budget=frozen_map({k: round(v * share, 2) for k, v in sorted(platform.cost.monthly.items())}),
        tags=frozen_map(tags(platform, name, region)),
        addressing=addresses, wiring=Later(wiring),
        provenance=provenance if isinstance(provenance, MappingProxyType) else frozen_map(provenance),
        postgres_ha=ha,
        log_volume=log_volume(platform, region.traffic_share, s),
        identities=Later(lambda: identity.identities(region.cloud, platform.clouds[region.cloud].account,
                                                     cluster, name, s, services, data_bucket, access.get(),
                                                     target_group_name(cluster))),
        secret_entries=Later(lambda: identity.store_entries(region.cloud, s, access.get(), seen)),
        data_access=access,
        served_shards=served, promoted_pools=promoted,
    )


def region_shards(platform: Platform, settings: dict, home: str, numbers, serving: dict) -> tuple[Shard, ...]:
    """`home`'s shards, each routed to the PgBouncer of the region serving it (`serving`, compiler/ir/dr_serving.py):
    its own, or its DR partner's when it is failed over."""
    sh = platform.sharding
    by = serving[home]
    pgb_host = f"pgbouncer.{by}.internal.{platform.organization.domain}"
    port = settings[by].datastores.pgbouncer.port
    return tuple(Shard(n, f"{sh.database_prefix}{n}", (n - 1) * sh.franchises_per_shard + 1,
                       n * sh.franchises_per_shard, home, pgb_host, port) for n in numbers)


def with_promoted(budget: ConnectionBudget, promoted: tuple) -> ConnectionBudget:
    """The region's budget with PgBouncer's open files raised for the lines it serves a failed-over region's shards
    with (their server connections come on top of its own pools'); unchanged without any."""
    if not promoted:
        return budget
    import dataclasses
    per_database = budget.default_pool_size + budget.reserve_pool_size
    return dataclasses.replace(budget, pgbouncer_nofile=pgbouncer_nofile(
        budget.max_client_conn, budget.databases, per_database, sum(p.max_db_connections for p in promoted)))


def promoted_pools(platform: Platform, settings: dict, name: str, ha, region_hosts, served) -> tuple:
    """The partner's PgBouncer lines for each failed-over home it serves: promoted_databases' names on the standby
    cluster's designated leader and port, with promoted_budget's pools (the DR runbook's step 4, made declarative)."""
    if not served or ha is None:
        return ()
    out = []
    for home in served_homes(platform, name):
        sb = next((x for x in ha.standbys if x.of_region == home), None)
        if sb is None:  # R070 refuses the spec
            continue
        shards = tuple(x for x in served if x.region == home)
        budget = _promoted_budget(settings[home], settings[name], shards)
        host = designated_leader(sb, region_hosts)
        out += [PromotedPool(pool, dbname, host, sb.port, budget.default_pool_size,
                             budget.default_pool_size + budget.reserve_pool_size, home)
                for pool, dbname in _promoted_names(settings[home], shards)]
    return tuple(out)


def resolve(platform: Platform, settings: dict, provenance: dict, spec_file: str, homes=None, lock=None) -> PlatformPlan:
    """Build the PlatformPlan from the validated top level and each region's merged settings. `lock`: the
    deployed-facts lock read (compiler/ir/deployed.py), which keeps placement stable and which the rules R076-R078
    compare the plan with; None checks nothing."""
    from compiler.ir.deployed import placement
    allocation = allocate_shards(platform, placement(lock, platform.sharding.franchises_per_shard))
    seen: dict = {}  # the settings models the regions share, walked once for their secret references
    ends: dict = {}  # each region's end of the flows other regions forward to it, made once (inter_region_connections)
    linked: dict = {}  # every region's plan by name, for the wiring computed later
    serving = serving_map(platform)  # home -> the region serving its franchises, once (compiler/ir/dr_serving.py)
    regions = tuple(resolve_region(platform, n, settings, provenance[n], allocation[n], linked, seen, ends, allocation,
                                   serving) for n in platform.regions)
    linked.update((r.name, r) for r in regions)
    shards = tuple(sorted((s for r in regions for s in r.shards), key=lambda s: s.number))
    placed = ()
    if homes:  # a franchise registry: its reader (csv) is imported only for a spec that names one (start-up, issue 16)
        from compiler import registry
        placed = registry.place(homes, allocation, platform.sharding.franchises_per_shard, spec_file,
                                platform.sharding.registry_file)
    return PlatformPlan(spec=platform, spec_file=spec_file, regions=regions, shards=shards, registry=placed, lock=lock,
                        serving=frozen_map({home: r for home, r in serving.items() if home != r}))
