"""The IR's connections (compiler/wiring.py): one record per path, each end addressed as the layers see it."""

from __future__ import annotations

import ipaddress
from collections import Counter

import pytest

from compiler.ir.names import KONG_PROXY_TLS_PORT, NODE_EXPORTER_PORT, POSTGRES_EXPORTER_PORT, REDIS_EXPORTER_PORT
from compiler.wiring import pods_per_node


def _by_cloud(plan, cloud):
    return next(r for r in plan.regions if r.cloud == cloud)


def test_connection_ids_are_unique_per_region(any_case):
    for r in any_case.regions:
        dupes = [k for k, n in Counter(c.id for c in r.wiring).items() if n > 1]
        assert not dupes, (r.name, dupes)


@pytest.mark.parametrize("cloud", ["aws", "gcp", "azure"])
def test_pods_reach_vms_from_the_address_range_each_cloud_gives_them(reference, cloud):
    r = _by_cloud(reference, cloud)
    a = r.addressing
    if cloud == "azure":  # overlay pods live outside the VNet altogether
        assert not ipaddress.ip_network(a.pod_cidr).overlaps(ipaddress.ip_network(r.cidr))
    if cloud == "gcp":  # VPC-native pods keep their alias IPs from the secondary range
        assert a.pod_source_cidrs == (a.pod_cidr,)
        pods = ipaddress.ip_network(a.pod_cidr)
        assert not any(pods.overlaps(ipaddress.ip_network(z.private_cidr)) for z in r.zones)
    else:  # EKS: VPC CNI addresses from the node subnets; AKS overlay: SNAT to the node
        assert a.pod_source_cidrs == tuple(z.private_cidr for z in r.zones)
    to_pgbouncer = [c for c in r.wiring if c.dest.name == "pgbouncer" and c.source.kind == "pods"]
    assert to_pgbouncer and all(c.source.cidrs == a.pod_source_cidrs for c in to_pgbouncer)


def test_kong_dials_each_routed_service_on_its_service_port(reference):
    for r in reference.regions:
        routed = {s.name: s for s in r.services if s.routes}
        kong = {c.dest.name: c for c in r.connections_from("kong") if "kong" in c.layers}
        assert set(kong) == set(routed)
        for name, c in kong.items():
            s = routed[name]
            assert (c.address, c.port, c.dest_port) == (s.dns_name, s.service_port, s.port)


def test_every_edge_of_the_service_graph_and_every_store_used_is_a_connection(reference):
    for r in reference.regions:
        pairs = {(c.source.name, c.dest.name) for c in r.wiring}
        for s in r.services:
            assert {(s.name, d) for d in s.depends_on} <= pairs
            stores = {"postgres": "pgbouncer", "redis": "redis", "elasticsearch": "elasticsearch",
                      "object-storage": "object-storage"}
            assert {(s.name, stores[u]) for u in s.uses} <= pairs
            assert {(s.name, e.host) for e in s.egress} <= pairs


def test_prometheus_scrapes_every_exporter_through_every_firewall(reference):
    r = reference.regions[0]
    scraped = {(c.dest.host_group, c.dest_port): c.layers for c in r.connections_from("prometheus") if c.dest.kind == "hosts"}
    assert ("postgres", POSTGRES_EXPORTER_PORT) in scraped
    assert ("redis_cluster", REDIS_EXPORTER_PORT) in scraped
    assert ("pgbouncer", NODE_EXPORTER_PORT) in scraped
    assert all({"cloud-firewall", "nftables"} <= set(layers) for layers in scraped.values())


def test_the_load_balancer_reaches_kong_from_its_own_ranges(reference):
    for r in reference.regions:
        (c,) = [c for c in r.wiring if c.source.name == "load-balancer"]
        assert c.dest_port == KONG_PROXY_TLS_PORT and c.source.cidrs == r.addressing.lb_source_cidrs


def test_pg_hba_connections_name_database_and_user(reference):
    r = reference.regions[0]
    hba = r.through("pg_hba")
    assert {c.source.name for c in hba} >= {"pgbouncer", "postgres-member", "patroni-rejoin"}
    assert all(c.database and c.user for c in hba)


def test_patroni_and_etcd_paths_follow_the_ha_plan(reference):
    """PgBouncer dials the leader endpoint (the internal load balancer checking GET /primary), the read-only pool the
    replicas' endpoint; Patroni reaches etcd, the members' REST APIs and the health checks reach Patroni's REST port;
    each standby cluster a region runs has its own ports between its members."""
    from compiler.ir.names import ETCD_CLIENT_PORT, ETCD_PEER_PORT, PATRONI_REST_PORT
    from compiler.ir.postgres_ha import STANDBY_HBA_LAYER
    for r in reference.regions:
        ha = r.postgres_ha
        if ha is None:
            continue
        by_id = {c.id: c for c in r.wiring}
        assert by_id["pgbouncer->postgres:5432/tcp"].address == ha.leader_endpoint
        assert by_id["pgbouncer->postgres-read:5432/tcp"].address == ha.replica_endpoint
        etcd = by_id[f"patroni->etcd:{ETCD_CLIENT_PORT}/tcp"]
        assert set(etcd.dest.hosts) == set(ha.etcd_fqdns) and len(ha.etcd_hosts) == 3
        assert f"etcd->etcd:{ETCD_PEER_PORT}/tcp" in by_id
        assert f"patroni->patroni:{PATRONI_REST_PORT}/tcp" in by_id
        assert by_id[f"internal-lb-health->patroni:{PATRONI_REST_PORT}/tcp"].layers[:2] == ("cloud-firewall", "nftables")
        for sb in ha.standbys:
            assert f"standby-{sb.of_region}->standby-{sb.of_region}:{sb.port}/tcp" in by_id
            # after a promotion (DR runbook step 4) the region's PgBouncer serves the source's shards from it, as its
            # auth user and the services' roles: open at every layer before the incident
            serve = by_id[f"pgbouncer->standby-{sb.of_region}:{sb.port}/tcp"]
            assert serve.layers == ("cloud-firewall", "nftables", STANDBY_HBA_LAYER)
            assert set(serve.dest.hosts) == {h.fqdn for h in r.hosts if h.name in sb.hosts}
            pgbouncer = by_id["pgbouncer->postgres:5432/tcp"]
            assert serve.source == pgbouncer.source and serve.user == pgbouncer.user and serve.tls == pgbouncer.tls
    us_east = reference.region("us-east-1").postgres_ha
    assert {s.of_region for s in us_east.standbys} == {"us-west-2", "ca-central-1", "sa-east-1"}
    assert len({s.port for s in us_east.standbys}) == 3


def test_each_region_fences_its_own_cluster_against_its_partners_copy_at_both_ends(reference):
    """The split-brain fence: before its Patroni starts, every member of a region's own cluster asks the members of
    the standby cluster its DR partner runs of it (GET /primary on that cluster's REST port). One flow, stated at
    both ends so every layer's rules come from it: leaving the region's members for the partner's standby hosts
    (the egress the data hosts need, and the fence's own layer, which the Ansible drop-in dials), and entering the
    partner's standby hosts from exactly those members (the cloud firewall and nftables there); both cross the
    peering. A region no partner keeps a standby of has nothing to ask."""
    from compiler.ir.postgres_ha import FENCE_LAYER
    fenced = 0
    for r in reference.regions:
        partner = reference.region(r.dr_partner)
        copy = next((s for s in (partner.postgres_ha.standbys if partner.postgres_ha else ()) if s.of_region == r.name),
                    None)
        leaving = [c for c in r.wiring if FENCE_LAYER in c.layers]
        if copy is None:
            assert leaving == [], r.name
            continue
        fenced += 1
        (out,) = leaving
        members = {h.fqdn for h in r.hosts if h.name in r.postgres_ha.members}
        standby = {h.fqdn for h in partner.hosts if h.name in copy.hosts}
        assert out.layers == ("inter-region", "cloud-firewall-egress", FENCE_LAYER)
        assert (out.port, out.dest_port, out.protocol, out.app_protocol) == (copy.rest_port, copy.rest_port, "TCP", "https")
        assert set(out.source.hosts) == members and set(out.dest.hosts) == standby and out.dest.kind == "remote-hosts"
        assert out.tls
        # the partner's end: the same hosts and port, from the members' subnets, through its host firewalls
        (into,) = [c for c in partner.wiring if c.source.name == f"patroni-{r.name}"]
        assert into.layers == ("inter-region", "cloud-firewall", "nftables")
        assert (into.dest_port, set(into.dest.hosts), into.dest.kind) == (copy.rest_port, standby, "hosts")
        assert set(into.source.hosts) == members and into.source.cidrs == out.source.cidrs
        assert set(out.dest.cidrs) == set(into.dest.cidrs)
        # (the members' addresses are known only after apply: the subnets of their zones stand for them)
        zones = {z.name: z.private_cidr for z in r.zones}
        assert set(into.source.cidrs) == {zones[h.zone] for h in r.hosts if h.name in r.postgres_ha.members}
    # every region of the reference has its cluster kept by its partner (ca-central-1's and sa-east-1's in us-east-1,
    # ap-south-1's and ap-southeast-2's in ap-southeast-1)
    assert fenced == len(reference.regions) == 12


@pytest.mark.parametrize("cloud, cidr, nodes, expected", [
    ("gcp", "10.0.128.0/17", 128, 110),  # a /24 per node: exactly 128 fit
    ("gcp", "10.0.128.0/17", 200, 64),  # a /25 per node: 256 fit
    ("gcp", "10.0.128.0/17", 1000, 16),
    ("gcp", "10.0.128.0/24", 100, 0),  # nothing fits
    ("azure", "10.0.128.0/17", 200, 0),  # overlay: a /24 per node whatever max pods is
    ("azure", "10.0.0.0/16", 200, 110),
    ("aws", "", 5000, 110),
])
def test_pods_per_node_fits_every_node_into_the_pod_range(cloud, cidr, nodes, expected):
    assert pods_per_node(cloud, cidr, nodes) == expected


def test_reference_clusters_can_grow_to_their_pools_max(reference):
    for r in reference.regions:
        assert r.addressing.max_pods_per_node > 0, r.name
