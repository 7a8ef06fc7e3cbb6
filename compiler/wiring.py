"""Wiring: every connection a region needs, derived once from the spec (part of resolve).

Each Connection says who opens it, to whom, on which port, for what, and through which layers it must
pass. Every layer's rules are emitted from these records and nothing else: NetworkPolicies and Istio
ServiceEntries (kubernetes), Kong upstream targets (kong), security groups / VPC firewalls / NSGs
(terraform), host nftables and pg_hba (ansible, datastores), Prometheus scrape jobs (helm). The
`connections` target writes them out per region; `platformc verify` proves each one from the files.

Addressing (compiler.ir.Addressing) says how each part of the region appears on the network. The
one subtle fact is a pod's source address when it reaches a VM:
- AWS (VPC CNI): pods take VPC addresses from the node subnets;
- GCP (VPC-native GKE): pods keep their alias-IP addresses from the pods secondary range, which
  a VM's firewall must admit (GKE does not masquerade traffic to RFC 1918 destinations);
- Azure (CNI overlay): pods' traffic leaving the cluster is SNATed to the node's address.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import ipaddress
import sys
from typing import Mapping

from compiler.ir import Addressing, Connection, Host, Peer, ServicePlan, Zone, frozen_map
from compiler.ir.data_access import role_name
from compiler.ir.dr_watch import probe_target
from compiler.ir.network import cidr_span as _span
from compiler.ir.postgres_ha import (FENCE_LAYER, STANDBY_HBA_LAYER, fenced_by, leader_endpoint, replica_endpoint,
                                     standby_peer, standby_source)
from compiler.ir.names import (GATEWAY_NAMESPACE, GCP_FRONT_END_RANGES, ISTIO_METRICS_PORT, ISTIO_NAMESPACE,
                               ISTIOD_XDS_PORT, KONG_POD_LABELS, KONG_PROXY_TLS_PORT, KONG_STATUS_PORT, KUBE_API_PEER,
                               MONITORING_NAMESPACE, NODE_EXPORTER_PORT, OTEL_COLLECTOR_SERVICE, OTEL_PROMETHEUS_PORT, OTLP_GRPC_PORT,
                               OTLP_HTTP_PORT, POSTGRES_EXPORTER_PORT, POSTGRES_PORT, POSTGRES_REPLICATION_USER,
                               REDIS_EXPORTER_PORT, SYSTEM_NAMESPACE)
from compiler.model.platform import Platform, RegionSettings

from compiler.ir.names import ELASTICSEARCH_HTTP_PORT, ELASTICSEARCH_TRANSPORT_PORT  # noqa: E402
from compiler.ir.names import REDIS_BUS_OFFSET, SERVICE_PORT_NAME, SSH_PORT  # noqa: E402
MANAGED_SEARCH_PORT = 443  # a managed search domain (OpenSearch, Elastic Cloud) answers HTTPS
DNS_PORT = 53
HTTPS_PORT = 443

# AKS with Azure CNI Overlay: pods take addresses from a range logically apart from the VNet (never seen
# outside the cluster: traffic leaving it is SNATed to the node), so every cluster can use the same one.
# The shared address space (RFC 6598) keeps it clear of every VNet, peering and on-premises range; a /16
# holds 256 nodes at the /24 each node gets. The Service range sits beside it, outside the VNet as well.
AZURE_OVERLAY_POD_CIDR = "100.64.0.0/16"
AZURE_SERVICE_CIDR = "100.65.0.0/20"

# Per-node pod block sizes the clouds allocate (GKE: the smallest block holding twice max pods;
# AKS overlay: a /24 per node whatever max_pods is).
_GKE_PODS_PER_NODE = ((110, 24), (64, 25), (32, 26), (16, 27), (8, 28))


# ---------------------------------------------------------------- addressing

def _free_ranges(cidr: str, zones: tuple[Zone, ...]) -> tuple[str, str]:
    """(pods, services): the largest and the next free blocks of the region CIDR that no zone subnet uses.

    Blocks are (first, last) address integers (issue 16: the ipaddress objects address_exclude makes were two thirds
    of addressing); each used subnet splits the free block holding it as ipaddress's address_exclude does (halves,
    keeping the half without it), a free block inside a used one is dropped."""
    version, lo, hi = _span(cidr)
    free = [(lo, hi)]
    for _v, ulo, uhi in (_span(c) for z in zones for c in (z.private_cidr, z.public_cidr)):
        nxt = []
        for flo, fhi in free:
            if flo <= ulo and uhi <= fhi:  # the used subnet lies in this block
                nxt.extend(_exclude(flo, fhi, ulo, uhi))
            elif not (ulo <= flo and fhi <= uhi):  # (a block inside the used subnet is gone)
                nxt.append((flo, fhi))
        free = nxt
    bits = 32 if version == 4 else 128
    free.sort(key=lambda b: (_prefix(b, bits), b[0]))
    if len(free) < 2:
        return "", ""
    pods, services = free[0], free[1]
    return _cidr(pods[0], _prefix(pods, bits), version), _cidr(services[0], max(20, _prefix(services, bits)), version)


def _exclude(lo: int, hi: int, ulo: int, uhi: int) -> list[tuple[int, int]]:
    """The blocks of lo..hi left around the aligned subnet ulo..uhi inside it, in address_exclude's order."""
    out = []
    while (lo, hi) != (ulo, uhi):
        mid = (lo + hi + 1) // 2  # the upper half's first address
        if ulo >= mid:
            out.append((lo, mid - 1))
            lo = mid
        else:
            out.append((mid, hi))
            hi = mid - 1
    return out


def _prefix(block: tuple[int, int], bits: int) -> int:
    return bits - ((block[1] - block[0] + 1).bit_length() - 1)


def _cidr(first: int, prefix: int, version: int) -> str:
    return str((ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network)((first, prefix)))


def max_nodes(s: RegionSettings) -> int:
    """Nodes the cluster may grow to: every pool at its max (the cluster-wide cap, when lower, wins)."""
    pools = sum(p.max_nodes for p in s.kubernetes.node_pools.values())
    return min(pools, s.kubernetes.max_nodes) if s.kubernetes.max_nodes else pools


def pods_per_node(cloud: str, pod_cidr: str, nodes: int) -> int:
    """The most pods per node whose per-node blocks still let `nodes` nodes into the pod range (0: none fits).

    GKE carves a block per node sized from max pods per node; AKS overlay a /24 per node. EKS pods use
    the node subnets' addresses (prefix delegation aside), so the range caps nothing there: 110."""
    if cloud == "aws":
        return 110
    if not pod_cidr:
        return 0
    prefix = ipaddress.ip_network(pod_cidr).prefixlen
    sizes = _GKE_PODS_PER_NODE if cloud == "gcp" else ((110, 24),)
    for pods, block in sizes:
        if block >= prefix and 2 ** (block - prefix) >= nodes:
            return pods
    return 0


def addressing(cloud: str, cidr: str, zones: tuple[Zone, ...], s: RegionSettings) -> Addressing:
    nodes = tuple(z.private_cidr for z in zones)
    public = tuple(z.public_cidr for z in zones)
    pods, services = _free_ranges(cidr, zones)
    if cloud == "aws":
        pods = ""  # VPC CNI: pods share the node subnets
    elif cloud == "azure":
        pods, services = AZURE_OVERLAY_POD_CIDR, AZURE_SERVICE_CIDR
    pod_sources = {"aws": nodes, "gcp": (pods,) if pods else nodes, "azure": nodes}[cloud]
    if cloud == "gcp":
        lb = GCP_FRONT_END_RANGES
    elif cloud == "azure":
        lb = (min(zones, key=lambda z: z.name).public_cidr,)  # the Application Gateway's dedicated subnet
    else:
        lb = public  # the ALB's nodes sit in every zone's public subnet
    return Addressing(node_cidrs=nodes, public_cidrs=public, pod_cidr=pods, service_cidr=services,
                      pod_source_cidrs=pod_sources, max_pods_per_node=pods_per_node(cloud, pods, max_nodes(s)),
                      lb_source_cidrs=tuple(lb), proxy_cidr=_proxy_range(cidr, zones, pods, services) if cloud == "gcp" else "",
                      internal_gateway_ip=_azure_gateway_ip(zones) if cloud == "azure" else "")


def _azure_gateway_ip(zones: tuple[Zone, ...]) -> str:
    """Azure: the internal gateway's address, the last usable address of the AKS node subnet (the first zone's
    private subnet, as modules/azure/network's cluster_subnet_id). Azure keeps a subnet's last address (broadcast)
    and allocates dynamic addresses (nodes, data hosts, the PostgreSQL endpoints) from the lowest free one up, so the
    top of the subnet stays free for a pinned address."""
    net = ipaddress.ip_network(min(zones, key=lambda z: z.name).private_cidr)
    return str(net.broadcast_address - 1)


def _proxy_range(cidr: str, zones: tuple[Zone, ...], pods: str, services: str) -> str:
    """GCP: a proxy-only subnet for the internal gateway, the first /23 (else /24 ... /26, the smallest Google
    accepts) of the region's range that no subnet, pod or Service range uses ("" when none is free)."""
    used = [_span(c) for z in zones for c in (z.private_cidr, z.public_cidr)]
    used += [_span(c) for c in (pods, services) if c]
    version, lo, hi = _span(cidr)
    bits = 32 if version == 4 else 128
    for prefix in range(max(23, _prefix((lo, hi), bits)), 27):  # each block as integers (issue 16), in order
        size = 1 << (bits - prefix)
        for first in range(lo, hi + 1, size):
            if not any(first <= uhi and ulo < first + size for _v, ulo, uhi in used):
                return _cidr(first, prefix, version)
    return ""


# ---------------------------------------------------------------- peers

def _pods(name: str, namespace: str, labels: dict, a: Addressing) -> Peer:
    return Peer(name=name, kind="pods", namespace=namespace, labels=_label_map(tuple(labels.items())),
                cidrs=a.pod_source_cidrs)


@functools.lru_cache(maxsize=4096)
def _label_map(items: tuple) -> Mapping:
    """One read-only map per distinct label set (in order): the wiring names the same workloads' labels in every
    connection they take part in (~13,500 pod ends at 120 regions), and each kept a copy."""
    return frozen_map(dict(items))


_LAYER_LISTS: dict = {}


def _layers(layers: tuple) -> tuple:
    """One tuple per distinct list of layers (a few dozen in any platform), shared by the connections."""
    return _LAYER_LISTS.setdefault(layers, layers) if len(_LAYER_LISTS) < 4096 else layers


def _pgbouncer_logins(s: RegionSettings, services: tuple[ServicePlan, ...]) -> str:
    """The roles PgBouncer logs in to PostgreSQL as: its auth_user (auth_query) and each service's role, nobody else
    (pg_hba's user field, for the region's cluster and for a standby cluster it would serve from)."""
    return ",".join([s.datastores.pgbouncer.auth_user] + [role_name(x.name) for x in services if "postgres" in x.uses])


def _service_peer(svc: ServicePlan, a: Addressing) -> Peer:
    return _pods(svc.name, svc.namespace, {"app": svc.name}, a)


def _hosts(name: str, group: str, hosts: tuple[Host, ...], zones: tuple[Zone, ...]) -> Peer:
    by_zone = {z.name: z.private_cidr for z in zones}
    cidrs = tuple(sorted({by_zone[h.zone] for h in hosts}))
    return Peer(name=name, kind="hosts", host_group=group, hosts=tuple(h.fqdn for h in hosts), cidrs=cidrs)


# ---------------------------------------------------------------- connections

def connections(platform: Platform, region_name: str, cloud: str, s: RegionSettings, services: tuple[ServicePlan, ...],
                hosts: tuple[Host, ...], zones: tuple[Zone, ...], a: Addressing, internal_domain: str,
                partner_cidr: str, serving: Mapping[str, str] | None = None) -> tuple[Connection, ...]:
    """Every connection of one region, in a fixed order (the files and docs list them in this order). `serving`: the
    region serving each home's franchises (compiler/ir/dr_serving.py, resolve's PlatformPlan.serving, computed once);
    a region served by another (failed over) is out of the edge."""
    ds = s.datastores
    edge = platform.edge
    domain = platform.organization.domain
    group = {g: tuple(h for h in hosts if h.group == g) for g in {h.group for h in hosts}}
    by_name = {x.name: x for x in services}
    mesh = s.kubernetes.istio
    out: list[Connection] = []

    def add(src, dst, address, port, purpose, app, layers, dest_port=None, protocol="TCP", tls="", database="", user="",
            dest_port_name=""):
        # the purposes, addresses and layer lists recur in every region (a service's name, a Service's DNS name):
        # one object each (sys.intern; _layers), not one per region (~2 MiB at 120 regions)
        out.append(Connection(source=src, dest=dst, address=sys.intern(address), port=port,
                              dest_port=dest_port if dest_port is not None else port, protocol=protocol,
                              app_protocol=app, purpose=sys.intern(purpose), tls=tls, layers=_layers(tuple(layers)),
                              database=database, user=user, dest_port_name=dest_port_name))

    kong = _pods("kong", GATEWAY_NAMESPACE, dict(KONG_POD_LABELS), a)
    prometheus = _pods("prometheus", MONITORING_NAMESPACE, {}, a)
    # each service's pods, made once: a service is an end of ~9 connections (routes, calls, stores, scrapes, DNS)
    peer_of = {x.name: _service_peer(x, a) for x in services}
    np_on = s.security.network_policies
    np_both = ("networkpolicy-egress", "networkpolicy-ingress") if np_on else ()
    np_out = ("networkpolicy-egress",) if np_on else ()
    np_in = ("networkpolicy-ingress",) if np_on else ()

    # --- the public path: client -> CDN -> load balancer -> Kong
    internet = Peer("internet", "external", cidrs=("0.0.0.0/0",))
    cdn = Peer("cdn", "edge")
    lb = Peer("load-balancer", "lb", cidrs=a.lb_source_cidrs)
    tls_min = s.security.tls_min_version
    add(internet, cdn, f"{edge.dns.api_host}.{domain}", HTTPS_PORT, "clients reach the CDN (viewer TLS)", "https",
        ("cdn",), tls=edge.tls_min_version)
    # CloudFront and Cloud CDN reach the weighted origin name; Front Door has one origin per region
    # A failed-over region (`serving` names another region for its franchises) is out of the edge: the global root
    # gives it weight 0 in the weighted origin record (Route 53, Cloud DNS) or disables its Front Door origin, and no
    # home rule names it. This connection stays: the region's load balancer keeps its listener and admits the edge,
    # so the rebuilt region takes traffic as soon as the fail-back (removing it from the list) gives its weight back.
    in_edge = (serving or {}).get(region_name, region_name) == region_name
    from compiler.ir.edge import cdn_provider
    origin = f"{region_name}.{domain}" if cdn_provider(platform) == "front_door" else f"origin.{domain}"
    add(cdn, lb, origin, HTTPS_PORT, "the CDN forwards to the region's load balancer (origin TLS)", "https",
        ("cdn", "cloud-firewall"), tls=tls_min)
    # home-region routing at the edge (compiler/ir/home_routing.py): CloudFront's viewer-request function, Front
    # Door's rule set or Cloud CDN's URL map sends the requests of franchises homed here to this region's own origin
    # (origin group / backend service home-<region>), its public name; none while the region is failed over: the
    # edge sends its franchises to its DR partner's origin
    from compiler.ir.home_routing import HOME_EDGE_PEER, edge_home_provider, home_origin_name
    if edge_home_provider(platform) and in_edge:
        add(Peer(HOME_EDGE_PEER, "edge"), lb, home_origin_name(region_name, domain), HTTPS_PORT,
            "the CDN sends the requests of franchises homed here to the region's load balancer (home-region routing)",
            "https", ("cdn", "cloud-firewall"), tls=tls_min)
    # Route 53 health-checks every region's load balancer by its own name (the global root's weighted origin records
    # follow the checks), at most over TLS 1.2: the listener accepts what arrives (compiler/ir/edge.py)
    from compiler.ir.edge import ROUTE53_HEALTH_CHECK_MAX_TLS, ROUTE53_HEALTH_CHECKS_PEER, dns_provider
    if dns_provider(platform) == "route53":
        add(Peer(ROUTE53_HEALTH_CHECKS_PEER, "health-check"), lb, f"{region_name}.{domain}", HTTPS_PORT,
            "Route 53's health checkers probe the region's load balancer (the weighted origin records follow them)",
            "https", ("health-check", "cloud-firewall"), tls=ROUTE53_HEALTH_CHECK_MAX_TLS)
    add(lb, kong, f"{KONG_PROXY_TLS_PORT}", KONG_PROXY_TLS_PORT, "the load balancer forwards to Kong's proxy pods",
        "https", ("cloud-firewall", *np_in), tls=tls_min)

    # --- Kong -> each routed service, service -> service
    for svc in services:
        if svc.routes:
            add(kong, peer_of[svc.name], svc.dns_name, svc.service_port, f"Kong proxies {svc.name}'s routes",
                "http", ("kong", *np_both), dest_port=svc.port, dest_port_name=SERVICE_PORT_NAME)
    for svc in services:
        for dep in svc.depends_on:
            d = by_name[dep]
            add(peer_of[svc.name], peer_of[d.name], d.dns_name, d.service_port, f"{svc.name} calls {d.name}",
                "http", np_both, dest_port=d.port, dest_port_name=SERVICE_PORT_NAME)

    # --- services -> data stores
    pg_self = ds.postgres.deployment == "self-managed"
    pgb_hosts = group.get("pgbouncer", ())
    pgbouncer = _hosts("pgbouncer", "pgbouncer", pgb_hosts, zones)
    redis_hosts = group.get("redis_cluster", ())
    redis = (_hosts("redis", "redis_cluster", redis_hosts, zones) if redis_hosts
             else Peer("redis", "managed", cidrs=a.node_cidrs))
    es_hosts = group.get("elasticsearch", ())
    search = (_hosts("elasticsearch", "elasticsearch", es_hosts, zones) if es_hosts
              else Peer("elasticsearch", "managed", cidrs=a.node_cidrs))
    es_port = ELASTICSEARCH_HTTP_PORT if es_hosts else MANAGED_SEARCH_PORT
    # Cluster clients dial the nodes themselves (Redis Cluster seeds, Elasticsearch node lists): no name
    # stands for the group. A managed endpoint is the alias in the region's private zone.
    redis_address = ",".join(h.fqdn for h in redis_hosts) or f"redis.{internal_domain}"
    es_address = ",".join(h.fqdn for h in es_hosts) or f"elasticsearch.{internal_domain}"
    host_layers = ("cloud-firewall", "nftables")
    for svc in services:
        src = peer_of[svc.name]
        if "postgres" in svc.uses and pgb_hosts:
            add(src, pgbouncer, f"pgbouncer.{internal_domain}", ds.pgbouncer.port, f"{svc.name} queries its shards through PgBouncer",
                "postgresql", (*np_out, *host_layers), tls=tls_min)
        if "redis" in svc.uses:
            add(src, redis, redis_address, ds.redis.port, f"{svc.name} reads and writes the Redis cluster",
                "redis", (*np_out, *(host_layers if redis_hosts else ())), tls="" if redis_hosts else tls_min)
        if "elasticsearch" in svc.uses:
            add(src, search, es_address, es_port, f"{svc.name} searches Elasticsearch",
                "https", (*np_out, *(host_layers if es_hosts else ())), tls=tls_min)
        if "object-storage" in svc.uses:
            add(src, Peer("object-storage", "cloud-api", cidrs=("0.0.0.0/0",)), "object storage API", HTTPS_PORT,
                f"{svc.name} reads and writes its bucket", "https", np_out, tls="1.2")
        for ext in svc.egress:
            add(src, Peer(ext.host, "external", cidrs=("0.0.0.0/0",)), ext.host, ext.port,
                f"{svc.name} calls {ext.host}", "https", (*np_out, *(("istio",) if mesh else ())), tls="1.2")

    # --- the data tier's own paths
    pg_primary = group.get("postgres_primary", ())
    pg_replicas = group.get("postgres_replicas", ())
    if pg_self and pg_primary:
        primary = _hosts("postgres", "postgres_primary", pg_primary, zones)
        all_pg = _hosts("postgres", "postgres", pg_primary + pg_replicas, zones)
        if pgb_hosts:
            pg_users = _pgbouncer_logins(s, services)
            # the leader, whichever member Patroni made it: the internal load balancer checking GET /primary
            add(pgbouncer, all_pg, leader_endpoint(internal_domain), POSTGRES_PORT, "PgBouncer's server connections",
                "postgresql", (*host_layers, "pg_hba"), tls=tls_min, database="all", user=pg_users)
            if pg_replicas:  # the read-only pool: the load balancer checking GET /replica
                add(pgbouncer, _hosts("postgres-read", "postgres", pg_primary + pg_replicas, zones),
                    replica_endpoint(internal_domain), POSTGRES_PORT, "PgBouncer's read-only pool on the replicas",
                    "postgresql", (*host_layers, "pg_hba"), tls=tls_min, database="all", user=pg_users)
        if pg_replicas:  # Patroni: any member may lead, every other one streams from it (and clones from it)
            members = _hosts("postgres-member", "postgres", pg_primary + pg_replicas, zones)
            # Patroni's primary_conninfo names the leader member's own host; the data tier's fallback names the
            # leader endpoint; every member's certificate carries both names
            add(members, all_pg, leader_endpoint(internal_domain), POSTGRES_PORT, "Patroni replicas stream WAL from the leader",
                "postgresql", (*host_layers, "pg_hba"), tls=tls_min, database="replication", user=POSTGRES_REPLICATION_USER)
            # a former leader that rejoins reads the new leader's timeline history before it follows (or is copied
            # again): Patroni connects as the superuser (no rewind role: the spec has no secret for one)
            add(_hosts("patroni-rejoin", "postgres", pg_primary + pg_replicas, zones), all_pg,
                leader_endpoint(internal_domain), POSTGRES_PORT,
                "a rejoining member checks the leader's timeline (Patroni, as the superuser)", "postgresql",
                (*host_layers, "pg_hba"), tls=tls_min, database="postgres", user="postgres")
        if ds.postgres.cross_region_standby and partner_cidr:
            add(Peer("postgres-standby", "hosts", host_group="postgres", cidrs=(partner_cidr,)), all_pg,
                standby_source(internal_domain, len(pg_replicas)), POSTGRES_PORT,
                "the DR partner's standby cluster streams WAL from the synchronous replica", "postgresql", ("nftables", "pg_hba"),
                tls=tls_min, database="replication", user=POSTGRES_REPLICATION_USER)
    if redis_hosts:
        peers = _hosts("redis", "redis_cluster", redis_hosts, zones)
        add(peers, peers, "redis cluster nodes", ds.redis.port, "Redis replicas sync from their primary", "redis", host_layers)
        add(peers, peers, "redis cluster nodes", ds.redis.port + REDIS_BUS_OFFSET, "the Redis Cluster bus (gossip, failover)",
            "redis-bus", host_layers)
    if len(es_hosts) > 1:
        add(search, search, "elasticsearch nodes", ELASTICSEARCH_TRANSPORT_PORT, "Elasticsearch node-to-node transport",
            "es-transport", host_layers, tls="1.2")

    # --- observability
    collector = _pods(OTEL_COLLECTOR_SERVICE, MONITORING_NAMESPACE, {}, a)
    if s.monitoring.tracing:
        for svc in services:
            add(peer_of[svc.name], collector, f"{OTEL_COLLECTOR_SERVICE}.{MONITORING_NAMESPACE}.svc.cluster.local",
                OTLP_GRPC_PORT, f"{svc.name} sends traces (OTLP/gRPC)", "grpc", np_out)
        # the services' OTLP metrics (the database-latency SLI) leave the collector through its prometheus exporter
        add(prometheus, collector, f"{OTEL_COLLECTOR_SERVICE} pods", OTEL_PROMETHEUS_PORT,
            "Prometheus scrapes the collector's prometheus exporter (the services' OTLP metrics)", "metrics", ())
    if es_hosts:
        shipper = _pods("fluent-bit", MONITORING_NAMESPACE, {"app.kubernetes.io/name": "fluent-bit"}, a)
        add(shipper, search, es_address, ELASTICSEARCH_HTTP_PORT, "Fluent Bit ships container logs",
            "https", host_layers, tls="1.2")
        add(_pods("elasticsearch-retention", MONITORING_NAMESPACE, {"app.kubernetes.io/name": "elasticsearch-retention"}, a),
            search, es_address, ELASTICSEARCH_HTTP_PORT, "the retention job puts the log ILM policy and index template",
            "https", host_layers, tls="1.2")
        if s.monitoring.tracing:
            jaeger = _pods("jaeger", MONITORING_NAMESPACE, {"app.kubernetes.io/name": "jaeger"}, a)
            add(jaeger, search, es_address, ELASTICSEARCH_HTTP_PORT, "Jaeger stores spans",
                "https", host_layers, tls="1.2")
    for svc in services:
        add(prometheus, peer_of[svc.name], f"{svc.name} pods", svc.port, f"Prometheus scrapes {svc.name}", "metrics",
            np_in, dest_port_name=SERVICE_PORT_NAME)
        if mesh:
            add(prometheus, peer_of[svc.name], f"{svc.name} pods", ISTIO_METRICS_PORT,
                f"Prometheus scrapes {svc.name}'s sidecar", "metrics", np_in)
    add(prometheus, kong, "kong pods", KONG_STATUS_PORT, "Prometheus scrapes Kong", "metrics", np_in)
    if mesh:  # the injected sidecar carries prometheus.io annotations for its merged-metrics port
        add(prometheus, kong, "kong pods", ISTIO_METRICS_PORT, "Prometheus scrapes Kong's sidecar", "metrics", np_in)
    exporters = []
    if s.monitoring.node_exporter:
        for g in sorted(group):  # the common role runs node_exporter on every host, the bastion too
            exporters.append((g, group[g], NODE_EXPORTER_PORT, "node_exporter"))
    if pg_primary:
        exporters.append(("postgres", pg_primary + pg_replicas, POSTGRES_EXPORTER_PORT, "postgres_exporter"))
    if redis_hosts:
        exporters.append(("redis_cluster", redis_hosts, REDIS_EXPORTER_PORT, "redis_exporter"))
    for g, members, port, exporter in exporters:
        name = {"postgres_primary": "postgres", "postgres_replicas": "postgres-replica", "redis_cluster": "redis"}.get(g, g)
        add(prometheus, _hosts(name, g, members, zones), f"{g} hosts", port, f"Prometheus scrapes {exporter}", "metrics",
            ("prometheus", *host_layers))

    # --- cluster plumbing every pod needs
    dns = _pods("kube-dns", SYSTEM_NAMESPACE, {"k8s-app": "kube-dns"}, a)
    istiod = _pods("istiod", ISTIO_NAMESPACE, {"app": "istiod"}, a)
    for svc in services:
        src = peer_of[svc.name]
        add(src, dns, "kube-dns.kube-system.svc.cluster.local", DNS_PORT, f"{svc.name} resolves names", "dns", np_out,
            protocol="UDP")
        add(src, dns, "kube-dns.kube-system.svc.cluster.local", DNS_PORT, f"{svc.name} resolves names (TCP)", "dns",
            np_out)
        if mesh:
            add(src, istiod, "istiod.istio-system.svc", ISTIOD_XDS_PORT, f"{svc.name}'s sidecar fetches its config",
                "grpc", np_out)
    # Kong's own needs besides its upstreams: names, and with the mesh its sidecar's config and spans
    add(kong, dns, "kube-dns.kube-system.svc.cluster.local", DNS_PORT, "Kong resolves names", "dns", np_out,
        protocol="UDP")
    add(kong, dns, "kube-dns.kube-system.svc.cluster.local", DNS_PORT, "Kong resolves names (TCP)", "dns", np_out)
    if mesh:
        add(kong, istiod, "istiod.istio-system.svc", ISTIOD_XDS_PORT, "Kong's sidecar fetches its config", "grpc", np_out)
        if s.monitoring.tracing:
            add(kong, collector, f"{OTEL_COLLECTOR_SERVICE}.{MONITORING_NAMESPACE}.svc.cluster.local", OTLP_GRPC_PORT,
                "Kong's sidecar sends spans (meshConfig's otel provider)", "grpc", np_out)

    # --- administration: admins -> bastion -> hosts
    bastion = group.get("bastion", ())
    if bastion:
        admins = Peer("admins", "external", cidrs=tuple(s.network.admin_cidrs) or a.node_cidrs)
        bastion_peer = _hosts("bastion", "bastion", bastion, zones)
        add(admins, bastion_peer, bastion[0].fqdn, SSH_PORT, "administrators reach the bastion", "ssh", host_layers)
        for g in sorted(group):
            if g != "bastion":
                name = {"postgres_primary": "postgres", "postgres_replicas": "postgres-replica",
                        "redis_cluster": "redis"}.get(g, g)
                add(bastion_peer, _hosts(name, g, group[g], zones), f"{g} hosts", SSH_PORT,
                    f"Ansible reaches the {g} hosts through the bastion", "ssh", host_layers)
        # operators run kubectl and helmfile through the bastion (an SSH SOCKS proxy): the cluster's private API endpoint,
        # whose addresses are in the cluster's subnets, must admit it (EKS: its cluster security group admits only
        # itself unless told otherwise; GKE: the master authorized networks; AKS: a private cluster in the VNet)
        add(bastion_peer, Peer(KUBE_API_PEER, "kube-api", cidrs=a.node_cidrs), "the cluster's private API endpoint",
            HTTPS_PORT, "operators reach the cluster's API through the bastion (kubectl, helmfile)", "https",
            ("cloud-firewall",), tls="1.2")
        # the internal CA lives on the bastion: servers with a certificate renew it there (the tls role's timer,
        # a forced command that re-signs the server's stored request)
        for g in sorted(group):
            if g not in ("bastion", "redis_cluster"):
                name = {"postgres_primary": "postgres", "postgres_replicas": "postgres-replica"}.get(g, g)
                add(_hosts(name, g, group[g], zones), bastion_peer, bastion[0].fqdn, SSH_PORT,
                    f"the {g} hosts renew their TLS certificates at the region's CA", "ssh", host_layers)
    return tuple(out)


def postgres_ha_connections(cloud: str, ha, hosts: tuple[Host, ...], zones: tuple[Zone, ...], a: Addressing,
                            partner_cidr: str) -> tuple[Connection, ...]:
    """Patroni's and etcd's paths in a region (compiler/ir/postgres_ha.py): the members reach etcd and each other's
    REST API, the etcd members form their cluster, Prometheus scrapes each etcd member's metrics listener, the
    internal load balancers' health checks reach Patroni's REST API, and each standby cluster the region runs for
    another region replicates and elects on its own ports."""
    from compiler.ir.names import LB_HEALTH_CHECK_RANGES
    pg = tuple(h for h in hosts if h.name in ha.members)
    etcd = tuple(h for h in hosts if h.name in ha.etcd_hosts)
    layers = ("cloud-firewall", "nftables")
    members = _hosts("patroni", "postgres", pg, zones)
    etcd_peer = _hosts("etcd", ha.etcd_group, etcd, zones)
    # The standby clusters' Patroni talks to this region's etcd too: its members are among `pg`.
    out = [
        Connection(source=members, dest=etcd_peer, address=",".join(f"{f}:{ha.etcd_client_port}" for f in ha.etcd_fqdns),
                   port=ha.etcd_client_port, dest_port=ha.etcd_client_port, protocol="TCP", app_protocol="etcd",
                   purpose="Patroni keeps the leader key and the cluster state in etcd", tls="1.2", layers=layers),
    ]
    prometheus = _pods("prometheus", MONITORING_NAMESPACE, {}, a)
    # each member's metrics listener (plain HTTP: /metrics and /health only; the client port wants a client
    # certificate): the database's size against its quota, the leader, whether the member is up (the monitoring
    # target's etcd alerts)
    out.append(Connection(source=prometheus, dest=etcd_peer, address="etcd members", port=ha.etcd_metrics_port,
                          dest_port=ha.etcd_metrics_port, protocol="TCP", app_protocol="metrics",
                          purpose="Prometheus scrapes etcd's metrics listener", tls="", layers=("prometheus", *layers)))
    if len(etcd) > 1:
        out.append(Connection(source=etcd_peer, dest=etcd_peer, address="etcd members", port=ha.etcd_peer_port,
                              dest_port=ha.etcd_peer_port, protocol="TCP", app_protocol="etcd-peer",
                              purpose="etcd members replicate (raft)", tls="1.2", layers=layers))
    if len(pg) > 1:
        out.append(Connection(source=members, dest=members, address="postgres hosts", port=ha.rest_port,
                              dest_port=ha.rest_port, protocol="TCP", app_protocol="https",
                              purpose="Patroni members compare WAL positions in a leader race (REST API)", tls="1.2",
                              layers=layers))
    checks = LB_HEALTH_CHECK_RANGES.get(cloud, a.node_cidrs)
    out.append(Connection(source=Peer("internal-lb-health", "lb", cidrs=tuple(checks)), dest=members,
                          address="postgres hosts", port=ha.rest_port, dest_port=ha.rest_port, protocol="TCP",
                          app_protocol="https", purpose="the internal load balancers check GET /primary and GET /replica",
                          tls="1.2", layers=layers))
    for sb in ha.standbys:
        on = tuple(h for h in hosts if h.name in sb.hosts)
        peer = _hosts(standby_peer(sb.of_region), "postgres", on, zones)
        # the region's Prometheus watches the standby it runs (compiler/ir/dr_watch.py): postgres_exporter's /probe
        # on the port it already scrapes, the address the DSN the exporter dials for the standby's own port
        out.append(Connection(source=prometheus, dest=peer, address=probe_target(sb.port), port=POSTGRES_EXPORTER_PORT,
                              dest_port=POSTGRES_EXPORTER_PORT, protocol="TCP", app_protocol="metrics",
                              purpose=f"Prometheus probes {sb.of_region}'s standby cluster through postgres_exporter "
                                      f"(is {sb.of_region} still sending WAL?)", tls="",
                              layers=("prometheus", *layers)))
        if len(on) > 1:
            out.append(Connection(source=peer, dest=peer, address="standby members", port=sb.port, dest_port=sb.port,
                                  protocol="TCP", app_protocol="postgresql",
                                  purpose=f"{sb.of_region}'s standby cluster: its replica streams from its standby leader",
                                  tls="1.2", layers=layers))
            out.append(Connection(source=peer, dest=peer, address="standby members", port=sb.rest_port,
                                  dest_port=sb.rest_port, protocol="TCP", app_protocol="https",
                                  purpose=f"{sb.of_region}'s standby cluster: Patroni's REST API", tls="1.2",
                                  layers=layers))
    return tuple(out)


def promoted_standby_connections(s: RegionSettings, services: tuple[ServicePlan, ...], ha, hosts: tuple[Host, ...],
                                 zones: tuple[Zone, ...]) -> tuple[Connection, ...]:
    """The DR runbook's step 4: once a standby cluster this region runs is promoted, this region's PgBouncer serves
    the lost region's shards from it (the promoted leader, on the standby's port), as its auth user and the services'
    roles, which the cluster holds since it is a copy of the lost region's. Open before the incident, at every
    layer: the security groups, the hosts' nftables and the standby's pg_hba.conf (STANDBY_HBA_LAYER) are not what
    an operator should be editing against a 15-minute RTO."""
    pgb = tuple(h for h in hosts if h.group == "pgbouncer")
    if not pgb or not ha.standbys:
        return ()
    users = _pgbouncer_logins(s, services)
    source = _hosts("pgbouncer", "pgbouncer", pgb, zones)
    out = []
    for sb in ha.standbys:
        on = tuple(h for h in hosts if h.name in sb.hosts)
        out.append(Connection(
            source=source, dest=_hosts(standby_peer(sb.of_region), "postgres", on, zones),
            address=",".join(h.fqdn for h in on), port=sb.port, dest_port=sb.port, protocol="TCP",
            app_protocol="postgresql",
            purpose=f"PgBouncer serves {sb.of_region}'s shards from its standby cluster once promoted (DR step 4)",
            tls=s.security.tls_min_version, layers=_layers(("cloud-firewall", "nftables", STANDBY_HBA_LAYER)),
            database="all", user=users))
    return tuple(out)


# ---------------------------------------------------------------- the inter-region network (compiler/ir/network.py)

# GKE Workload Identity hands a pod its Google service account's tokens through the GKE metadata server, which GKE
# Dataplane V2 serves at this address and port ("Workload Identity Federation for GKE", restrictions: with network
# policy enforcement, allow egress to 169.254.169.254/32 on port 80). The services' default-deny egress dropped it:
# every Google API call of a service with a cloud identity (its bucket, a Memorystore IAM login) failed for want of a
# token.
GKE_METADATA_SERVER = ("169.254.169.254", 80)


def identity_token_connections(region) -> tuple[Connection, ...]:
    """GCP with network policies: each service with a cloud identity (the IR's identities) reaches the GKE metadata
    server for its tokens. EKS (IRSA) and AKS exchange a projected token with the cloud's STS over HTTPS instead."""
    if region.cloud != "gcp" or not region.settings.security.network_policies:
        return ()
    owners = {i.owner for i in region.identities if i.kind == "service" and i.has_cloud_identity}
    server = Peer("gke-metadata-server", "cloud-api", cidrs=(f"{GKE_METADATA_SERVER[0]}/32",))
    layers = _layers(("networkpolicy-egress",))
    return tuple(Connection(source=_service_peer(svc, region.addressing), dest=server, address=GKE_METADATA_SERVER[0],
                            port=GKE_METADATA_SERVER[1], dest_port=GKE_METADATA_SERVER[1], protocol="TCP",
                            app_protocol="http", purpose=sys.intern(f"{svc.name} gets its Google service account's "
                                                                    "tokens from the GKE metadata server"),
                            tls="", layers=layers)
                 for svc in region.services if svc.name in owners)


def _inside(cidrs, ranges) -> bool:
    """Every CIDR lies in one of the ranges (ipaddress's subnet_of, as integer bounds: at 120 regions the objects'
    comparisons were a third of resolving)."""
    spans = [_span(r) for r in ranges]
    return bool(cidrs) and all(any(v == w and lo <= first and last <= hi for w, lo, hi in spans)
                               for v, first, last in map(_span, cidrs))


def _linked_holding(cidrs, linked: list, by_start: list, starts: list):
    """The linked region whose range holds every one of `cidrs` (None if none does): the range starting at or
    before the first CIDR's first address, checked like _inside. For disjoint ranges (R010) only that one can
    hold it."""
    v, first, _last = _span(cidrs[0])
    i = bisect.bisect_right(starts, (v, first)) - 1
    if i < 0:
        return None
    (w, _lo, _hi), idx = by_start[i]
    if w != v:
        return None
    far = linked[idx]
    return far if _inside(cidrs, (far.cidr,)) else None


def _standby_source(peer: Peer, far, region) -> Peer:
    """The partner's standby stated as its hosts: the hosts of `far` that run `region`'s standby cluster, from their
    subnets (not the partner's whole range), when the partner's Patroni plan names them."""
    sb = next((s for s in getattr(getattr(far, "postgres_ha", None), "standbys", ()) or () if s.of_region == region.name), None)
    if sb is None or peer.kind != "hosts":
        return peer
    hosts = tuple(h for h in far.hosts if h.name in sb.hosts)
    if not hosts:
        return peer
    narrowed = _hosts(peer.name, peer.host_group, hosts, far.zones)
    return Peer(name=peer.name, kind=peer.kind, namespace=peer.namespace, labels=peer.labels, host_group=peer.host_group,
                hosts=narrowed.hosts, cidrs=narrowed.cidrs)


def _fence_connection(home, far, sb) -> tuple[Connection, Connection] | None:
    """The split-brain fence's flow, as each end states it: (in `home`'s wiring, in `far`'s). Before its Patroni
    starts, every member of `home`'s own cluster asks each member of the standby cluster `far` (its DR partner) runs
    of it, `sb`, for GET /primary on that cluster's REST port over TLS (the Ansible patroni role's drop-in; the
    runbook's step 2). `home` states it leaving its members for the partner's hosts (`cloud-firewall-egress`, and
    FENCE_LAYER: the drop-in dials exactly these); `far` states it entering its standby hosts (`cloud-firewall`,
    `nftables`). Both cross the peering. None when `home` has no Patroni members or `far` no host of the standby."""
    ha = getattr(home, "postgres_ha", None)
    members = tuple(h for h in home.hosts if ha is not None and h.name in ha.members)
    standby = tuple(h for h in far.hosts if h.name in sb.hosts)
    if not members or not standby:
        return None
    mine = _hosts("patroni", "postgres", members, home.zones)
    theirs = _hosts(standby_peer(sb.of_region), "postgres", standby, far.zones)
    address = ",".join(theirs.hosts)
    # (the hosts' firewall comments carry it, within ansible-lint's line length)
    purpose = sys.intern(f"{home.name}'s Patroni asks whether its standby in {far.name} was promoted (split-brain fence)")
    leaving = Connection(
        source=mine, dest=dataclasses.replace(theirs, kind="remote-hosts"), address=address, port=sb.rest_port,
        dest_port=sb.rest_port, protocol="TCP", app_protocol="https", purpose=purpose, tls="1.2",
        layers=_layers(("inter-region", "cloud-firewall-egress", FENCE_LAYER)))
    entering = Connection(
        source=dataclasses.replace(mine, name=f"patroni-{home.name}", kind="remote-hosts"), dest=theirs,
        address=address, port=sb.rest_port, dest_port=sb.rest_port, protocol="TCP", app_protocol="https",
        purpose=purpose, tls="1.2", layers=_layers(("inter-region", "cloud-firewall", "nftables")))
    return leaving, entering


def inter_region_connections(platform: Platform, region, regions: dict, wiring: tuple,
                             ends: dict | None = None, serving: Mapping[str, str] | None = None) -> tuple:
    """The region's wiring (`wiring`: its own connections and its Patroni cluster's) with the flows that cross the
    inter-region network: run once every region (and its Patroni plan) is resolved, since both ends' addresses are
    needed.

    - A connection of the region whose sources all lie in a linked region's range (the DR partner's standby
      dialling the leader) crosses the peering: it gains the `inter-region` layer, and `cloud-firewall` (the
      host firewall, the security groups / firewall rules / NSGs, admit the partner's range).
    - Each standby cluster the region runs for another region dials that region's leader endpoint across the
      peering (`cloud-firewall-egress`: the data hosts' egress admits it).
    - The split-brain fence (_fence_connection): the region's Patroni members ask the standby cluster its DR partner
      runs of it before they start; that region's standby hosts admit the members of each region they run one of.
    - Home-region routing: Kong forwards a request whose franchise lives in a linked region to that region's
      internal gateway (`kong-forward`: the routing function names it; the NetworkPolicy lets Kong out to it);
      the gateway admits every linked region's Kong (`internal-gateway`) and forwards to this region's Kong. Kong
      forwards nothing to a failed-over region (`serving`, resolve's PlatformPlan.serving: another region serves its
      franchises, compiler/ir/dr_serving.py): the map names its DR partner."""
    from compiler.ir.network import INTERNAL_GATEWAY_CLOUDS, INTERNAL_GATEWAY_PORT, internal_gateway_name, linked_regions
    from compiler.ir.edge import NLB_HEALTH_CHECK_MAX_TLS, NLB_HEALTH_CHECKS_PEER
    linked = [regions[n] for n in linked_regions(platform, region.name) if n in regions]
    forwarding = linked if region.cloud in INTERNAL_GATEWAY_CLOUDS else []
    domain = platform.organization.domain
    tls_min = region.settings.security.tls_min_version
    np_on = region.settings.security.network_policies
    out = []
    # the linked regions by their ranges' first address: a source is looked up with one bisect, not tried
    # against every linked region (at 120 regions, 84 on one cloud, that scan was a third of resolving)
    by_start = sorted((_span(p.cidr), i) for i, p in enumerate(linked))
    starts = [(v, lo) for (v, lo, _hi), _i in by_start]
    disjoint = all(a[0] != b[0] or a[2] < b[1] for (a, _), (b, _) in zip(by_start, by_start[1:]))
    own = (region.cidr,)
    local_of: dict = {}  # source ranges -> inside the region's own: most connections share a few tuples (pods, nodes)
    for c in wiring:
        local = local_of.get(c.source.cidrs)
        if local is None:
            local = local_of[c.source.cidrs] = not c.source.cidrs or _inside(c.source.cidrs, own)
        if local:
            far = None
        elif disjoint:
            far = _linked_holding(c.source.cidrs, linked, by_start, starts)
        else:  # overlapping ranges (R010 refuses them; a diff's base may skip it): the first that holds, as listed
            far = next((p for p in linked if _inside(c.source.cidrs, (p.cidr,))), None)
        if far is not None:
            extra = tuple(x for x in ("inter-region", "cloud-firewall") if x not in c.layers)
            c = dataclasses.replace(c, layers=extra + c.layers, source=_standby_source(c.source, far, region))
        out.append(c)
    ha = getattr(region, "postgres_ha", None)
    by_name = {h.name: h for h in region.hosts}
    for sb in getattr(ha, "standbys", ()) or ():
        home = regions.get(sb.of_region)
        if home is None or home.cloud != region.cloud:
            continue
        on = tuple(by_name[h] for h in sb.hosts if h in by_name)
        from compiler.ir.postgres_ha import leader_endpoint
        leader_hosts = tuple(h for h in home.hosts if h.group in ("postgres_primary", "postgres_replicas"))
        out.append(Connection(
            source=_hosts(f"standby-{sb.of_region}", "postgres", on, region.zones),
            dest=Peer(f"postgres-{sb.of_region}", "remote-hosts", host_group="postgres",
                      hosts=tuple(h.fqdn for h in leader_hosts), cidrs=home.addressing.node_cidrs),
            address=sb.primary_host, port=sb.primary_port, dest_port=POSTGRES_PORT,
            protocol="TCP", app_protocol="postgresql",
            purpose=f"{sb.of_region}'s standby cluster streams WAL from {sb.of_region}'s leader across the peering",
            tls=tls_min, layers=("inter-region", "cloud-firewall-egress"), database="replication",
            user=POSTGRES_REPLICATION_USER))
        # the split-brain fence: before it starts, each member of the source's own cluster asks this standby
        # cluster's members whether it was promoted (compiler/ir/postgres_ha.py FENCE_LAYER)
        fence = _fence_connection(home, region, sb)
        if fence is not None:
            out.append(fence[1])
    partner = regions.get(region.dr_partner)
    copy = fenced_by(region, partner) if ha is not None and partner is not None and partner.cloud == region.cloud \
        else None
    fence = _fence_connection(region, partner, copy) if copy is not None else None
    if fence is not None:
        out.append(fence[0])
    # A linked region's end of these flows (its gateway peer, the name dialled, the purpose; the forwarding
    # region's Kong as a remote peer) is the same in every region it is linked with: made once per region for the
    # whole platform when the caller passes `ends` (at 120 regions, 11,000 flows held 4.6 MiB of copies).
    ends = {} if ends is None else ends

    def gateway_of(home):
        key = ("gateway", home.name)
        if key not in ends:
            ends[key] = (Peer(f"gateway-{home.name}", "remote-gateway", cidrs=home.addressing.node_cidrs),
                        internal_gateway_name(home.name, domain),
                        f"Kong forwards requests of franchises homed in {home.name} to its internal gateway")
        return ends[key]

    def kong_of(src):
        key = ("kong", src.name)
        if key not in ends:
            ends[key] = (Peer(f"kong-{src.name}", "remote-pods", namespace=GATEWAY_NAMESPACE,
                             cidrs=src.addressing.pod_source_cidrs),
                        f"{src.name}'s Kong forwards requests of franchises homed here")
        return ends[key]

    kong = _pods("kong", GATEWAY_NAMESPACE, dict(KONG_POD_LABELS), region.addressing)
    forward_layers = ("inter-region", "kong-forward", *(("networkpolicy-egress",) if np_on else ()))
    serving = serving or {}  # a failed-over home's franchises go to the region serving them (its DR partner) instead
    for home in forwarding:
        if serving.get(home.name, home.name) != home.name:
            continue
        dest, address, purpose = gateway_of(home)
        out.append(Connection(
            source=kong, dest=dest, address=address, port=INTERNAL_GATEWAY_PORT,
            dest_port=INTERNAL_GATEWAY_PORT, protocol="TCP", app_protocol="https", purpose=purpose,
            tls=tls_min, layers=forward_layers))
    if forwarding:
        gateway = Peer("internal-gateway", "internal-lb", cidrs=region.addressing.node_cidrs)
        own_address = internal_gateway_name(region.name, domain)
        for src in forwarding:
            source, purpose = kong_of(src)
            out.append(Connection(
                source=source, dest=gateway, address=own_address, port=INTERNAL_GATEWAY_PORT,
                dest_port=INTERNAL_GATEWAY_PORT, protocol="TCP", app_protocol="https", purpose=purpose, tls=tls_min,
                layers=("inter-region", "internal-gateway")))
        if region.cloud == "aws":
            # AWS: the internal NLB's target is the regional load balancer (TLS ends there; it forwards to Kong as
            # for the CDN's requests, the lb->kong connection)
            lb = next(c.dest for c in wiring if c.dest.kind == "lb")
            out.append(Connection(
                source=gateway, dest=lb, address=f"{region.name}.{domain}", port=HTTPS_PORT, dest_port=HTTPS_PORT,
                protocol="TCP", app_protocol="https", purpose="the internal gateway passes the forwarded requests to "
                "the region's load balancer", tls=tls_min, layers=("internal-gateway",)))
            out.append(Connection(
                source=dataclasses.replace(gateway, name=NLB_HEALTH_CHECKS_PEER, kind="health-check"), dest=lb,
                address=f"{region.name}.{domain}", port=HTTPS_PORT, dest_port=HTTPS_PORT, protocol="TCP",
                app_protocol="https", purpose="the internal gateway's health checks probe the region's load balancer",
                tls=NLB_HEALTH_CHECK_MAX_TLS, layers=("health-check",)))
        elif region.cloud == "azure":
            # Azure: an internal Standard Load Balancer (AKS, from Kong's internal gateway Service) passes the TCP
            # connections through to Kong's TLS port (TLS end to end to Kong); with externalTrafficPolicy Local the
            # pods see the forwarding regions' Kong addresses, which Kong's NetworkPolicy admits
            sources = tuple(sorted({x for src in forwarding for x in src.addressing.pod_source_cidrs}))
            out.append(Connection(
                source=Peer("internal-gateway", "internal-lb", cidrs=sources), dest=kong,
                address=region.addressing.internal_gateway_ip, port=INTERNAL_GATEWAY_PORT,
                dest_port=KONG_PROXY_TLS_PORT, protocol="TCP", app_protocol="https",
                purpose="the internal load balancer passes the forwarded requests to Kong's proxy pods", tls=tls_min,
                layers=("internal-gateway", *(("networkpolicy-ingress",) if np_on else ()))))
        else:
            # GCP: the internal proxy load balancer's proxies, in the proxy-only subnet, open TCP to Kong's TLS port
            # (TLS end to end to Kong)
            proxies = Peer("internal-gateway-proxies", "internal-lb", cidrs=(region.addressing.proxy_cidr,))
            out.append(Connection(
                source=proxies, dest=kong, address=f"{KONG_PROXY_TLS_PORT}", port=KONG_PROXY_TLS_PORT,
                dest_port=KONG_PROXY_TLS_PORT, protocol="TCP", app_protocol="https",
                purpose="the internal gateway's proxies pass the forwarded requests to Kong's proxy pods", tls=tls_min,
                layers=("internal-gateway", *(("networkpolicy-ingress",) if np_on else ()))))
    return tuple(out)
