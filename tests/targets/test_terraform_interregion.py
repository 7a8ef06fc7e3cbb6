"""Terraform for issue 12: the inter-region network, the internal gateway, the PostgreSQL endpoints and S3
replication by key ARN with Replication Time Control, read back from the reference's emitted roots."""

from __future__ import annotations

import ipaddress
import itertools

import pytest

from compiler.ir.network import linked_regions
from compiler.pipeline import compile_file
from compiler.targets import terraform
from compiler.verify.infra import Obj, read_hcl
from tests.conftest import REPO


@pytest.fixture(scope="module")
def reference():
    plan = compile_file(str(REPO / "platform.yaml")).plan
    files = {}
    for region in plan.regions:
        files.update(terraform.emit_region(plan, region))
    files.update(terraform.emit_global(plan))
    return plan, files


def _root(files, region: str):
    return read_hcl(files[f"terraform/regions/{region}/main.tf"])


def _modules(doc) -> dict:
    return {b.labels[0]: b for b in doc.all("module")}


def test_every_pair_of_same_cloud_regions_is_peered_from_both_sides(reference):
    plan, files = reference
    pairs = 0
    for a, b in itertools.combinations(plan.regions, 2):
        if a.cloud != b.cloud:
            assert b.name not in linked_regions(plan.spec, a.name)
            continue
        pairs += 1
        sides = []
        for x, y in ((a, b), (b, a)):
            mod = next((m for m in _modules(_root(files, x.name)).values()
                        if str(m.get("source")).endswith(f"/{x.cloud}/peering") and m.get("peer_cidr") == y.cidr), None)
            assert mod is not None, f"{x.name} does not peer with {y.name}"
            sides.append(mod)
        if a.cloud == "aws":  # exactly one side requests; the first in spec order
            assert [m.get("requester") for m in sides] == [True, False]
    assert pairs == 15 + 1 + 6  # AWS 6 regions, Azure 2, GCP 4


def test_the_partner_key_is_granted_by_its_arn_with_replication_time_control(reference):
    plan, files = reference
    module = files["terraform/modules/aws/object_storage/main.tf"]
    flat = " ".join(module.split())
    assert 'replication_time { status = "Enabled" time { minutes = 15 } }' in flat
    assert 'metrics { status = "Enabled" event_threshold { minutes = 15 } }' in flat
    assert "alias/" not in module  # no alias ARN anywhere in the IAM statements
    checked = 0
    for region in plan.regions:
        if region.cloud != "aws" or plan.region(region.dr_partner).cloud != "aws":
            continue
        doc = _root(files, region.name)
        storage = _modules(doc)["object_storage"]
        assert storage.get("replication")["kms_key_arn"] == "data.aws_kms_alias.dr_partner.target_key_arn"
        alias = next(b for b in doc.all("data") if b.labels == ["aws_kms_alias", "dr_partner"])
        partner = plan.region(region.dr_partner)
        assert alias.get("name") == f"alias/{partner.cluster_name}"
        provider = alias.get("provider")
        providers = read_hcl(files[f"terraform/regions/{region.name}/providers.tf"])
        block = next(p for p in providers.all("provider") if f"aws.{p.get('alias')}" == provider)
        assert block.get("region") == partner.cloud_region
        checked += 1
    assert checked == 6


def test_the_postgres_endpoints_check_patronis_rest_api(reference):
    plan, files = reference
    for region in plan.regions:
        ha = region.postgres_ha
        eps = _modules(_root(files, region.name))["data_hosts"].get("postgres_endpoints")
        assert isinstance(eps, Obj)
        assert eps["leader"]["fqdn"] == ha.leader_endpoint and eps["leader"]["health_path"] == "/primary"
        assert eps["replicas"]["fqdn"] == ha.replica_endpoint and eps["replicas"]["health_path"] == "/replica"
        assert sorted(eps["leader"]["hosts"]) == sorted(ha.members)
        assert eps["leader"]["health_port"] == ha.rest_port


def _dialled(region) -> set[str]:
    return {c.address for c in region.wiring}


@pytest.mark.parametrize("spec", ["platform.yaml", "tests/cases/aws-only/platform.yaml", "tests/cases/gcp-only/platform.yaml",
                                  "tests/cases/two-region/platform.yaml"])
def test_the_dr_partners_standby_source_is_a_load_balancer_checking_sync(spec):
    """postgres-sync.<internal domain>, which the DR partner's standby cluster dials (compiler/ir/postgres_ha.py), is a
    load balancer (on Azure a frontend of the region's one) with a DNS record on every cloud, checking Patroni's
    GET /sync over every member."""
    plan = compile_file(str(REPO / spec)).plan
    files = {}
    for region in plan.regions:
        files.update(terraform.emit_region(plan, region))
    files.update(terraform.emit_global(plan))
    seen = set()
    for region in plan.regions:
        ha = region.postgres_ha
        if ha is None:
            continue
        eps = _modules(_root(files, region.name))["data_hosts"].get("postgres_endpoints")
        dialled = ha.sync_endpoint in _dialled(region)
        if dialled:
            sync = eps["sync"]
            assert sync["fqdn"] == ha.sync_endpoint and sync["health_path"] == "/sync"
            assert sync["port"] == 5432 and sync["health_port"] == ha.rest_port
            assert sorted(sync["hosts"]) == sorted(ha.members)
            seen.add(region.cloud)
            # the partner's standby hosts dial it across the peering: the firewall of the members admits them
            standby = [c for c in region.wiring if c.address == ha.sync_endpoint]
            assert standby and all("cloud-firewall" in c.layers and "inter-region" in c.layers for c in standby)
        else:
            assert "sync" not in eps
    if spec != "tests/cases/two-region/platform.yaml":  # its partners are on two clouds: no standby, no sync endpoint
        assert seen == {"aws", "gcp", "azure"} if spec == "platform.yaml" else len(seen) == 1
    for cloud in seen:
        module = files[f"terraform/modules/{cloud}/data_hosts/main.tf"]
        assert module.count("for_each = var.postgres_endpoints") >= 4


def test_azure_postgres_endpoints_are_frontends_of_one_load_balancer(reference):
    """Azure admits the members' NIC IP configuration to the pools of one internal load balancer only, and two rules
    over it on one backend port only with Floating IP (compiler/ir/postgres_ha.py): the region's endpoints are the
    frontends of one load balancer over one pool of the members' `primary` configurations, each with its own probe
    (Patroni's path for it) and its own rule, which delivers to the endpoint's backend port from the IR, each
    endpoint's different, without Floating IP. The NSG opens each backend port to exactly the endpoint's clients;
    AWS and GCP deliver to 5432 and take no backend port."""
    plan, files = reference
    doc = read_hcl(files["terraform/modules/azure/data_hosts/main.tf"])

    def resources(rtype):
        return [b for b in doc.all("resource") if b.labels[0] == rtype]

    (lb,) = resources("azurerm_lb")
    assert lb.labels[1] == "postgres" and lb.get("for_each") is None
    assert lb.get("count") == "length(var.postgres_endpoints) > 0 ? 1 : 0"
    frontends = lb.block("dynamic", "frontend_ip_configuration")
    assert frontends.get("for_each") == "var.postgres_endpoints"
    assert frontends.block("content").get("name") == "frontend_ip_configuration.key"
    (pool,) = resources("azurerm_lb_backend_address_pool")
    assert pool.get("for_each") is None and pool.get("loadbalancer_id") == "azurerm_lb.postgres[0].id"
    (assoc,) = resources("azurerm_network_interface_backend_address_pool_association")
    assert assoc.get("ip_configuration_name") == "primary"
    assert assoc.get("backend_address_pool_id") == "azurerm_lb_backend_address_pool.postgres[0].id"
    assert assoc.get("for_each") == "local.postgres_members"  # each member once, not once per endpoint
    (probe,) = resources("azurerm_lb_probe")
    assert {k: probe.get(k) for k in ("for_each", "name", "protocol", "port", "request_path")} == {
        "for_each": "var.postgres_endpoints", "name": "each.key", "protocol": "Https",
        "port": "each.value.health_port", "request_path": "each.value.health_path"}
    (rule,) = resources("azurerm_lb_rule")
    assert {k: rule.get(k) for k in ("for_each", "frontend_ip_configuration_name", "frontend_port", "backend_port",
                                     "floating_ip_enabled", "probe_id", "backend_address_pool_ids")} == {
        "for_each": "var.postgres_endpoints", "frontend_ip_configuration_name": "each.key",
        "frontend_port": "each.value.port", "backend_port": "each.value.backend_port", "floating_ip_enabled": False,
        "probe_id": "azurerm_lb_probe.postgres[each.key].id",
        "backend_address_pool_ids": ["azurerm_lb_backend_address_pool.postgres[0].id"]}
    record = next(b for b in resources("azurerm_private_dns_a_record") if b.labels[1] == "postgres")
    assert record.get("for_each") == "var.postgres_endpoints"
    assert "f.name == each.key" in record.get("records")[0]  # the endpoint's own frontend's address
    azure = 0
    for region in plan.regions:
        ha = region.postgres_ha
        root = _modules(_root(files, region.name))["data_hosts"]
        eps = root.get("postgres_endpoints")
        if region.cloud != "azure":
            assert (ha.leader_backend_port, ha.replica_backend_port, ha.sync_backend_port) == (5432, 5432, 5432)
            assert all("backend_port" not in e for e in eps.values())
            continue
        azure += 1
        want = {"leader": (ha.leader_endpoint, "/primary", ha.leader_backend_port),
                "replicas": (ha.replica_endpoint, "/replica", ha.replica_backend_port)}
        if ha.sync_endpoint in _dialled(region):  # the DR partner's standby dials it
            want["sync"] = (ha.sync_endpoint, "/sync", ha.sync_backend_port)
        assert {k: (e["fqdn"], e["health_path"], e["backend_port"]) for k, e in eps.items()} == want
        assert ha.leader_backend_port == 5432 and len({e["backend_port"] for e in eps.values()}) == len(eps)
        assert all(e["port"] == 5432 for e in eps.values())
        # the NSG: each backend port from exactly the sources of the connections dialling its endpoint
        rules = root.get("ingress_rules")
        for key, e in eps.items():
            if e["backend_port"] == 5432:
                continue
            sources = {x for c in region.through("cloud-firewall") if c.address == e["fqdn"] for x in c.source.cidrs}
            for group in ("postgres_primary", "postgres_replicas"):
                opened = {x for r in rules[group] if r["from_port"] == e["backend_port"] for x in r["cidr_blocks"]}
                assert opened == sources and sources, (region.name, key, group)
    assert azure == 2  # eu-west-2 and me-south-1, each the other's DR partner


def test_every_aws_postgres_load_balancer_has_a_name_of_its_own(reference):
    """AWS names load balancers and target groups within 32 characters, by a two-letter suffix per endpoint: a
    third endpoint must not take the replicas' name (the second would never be created)."""
    plan, files = reference
    doc = read_hcl(files["terraform/modules/aws/data_hosts/main.tf"])
    suffix = next(b.get("postgres_lb_suffix") for b in doc.all("locals") if b.get("postgres_lb_suffix") is not None)
    assert dict(suffix) == {"leader": "rw", "replicas": "ro", "sync": "sy"}  # rw and ro: the names they always had
    for region in plan.regions:
        if region.cloud != "aws":
            continue
        eps = _modules(_root(files, region.name))["data_hosts"].get("postgres_endpoints")
        names = [f"{region.cluster_name[:26]}-pg-{suffix[k]}" for k in eps]
        assert len(set(names)) == len(names) == 3 and all(len(n) <= 32 for n in names)


def test_the_internal_gateway_admits_exactly_the_linked_regions_kong(reference):
    plan, files = reference
    for region in plan.regions:
        mods = _modules(_root(files, region.name))
        # Azure: AKS builds the load balancer; Terraform's part is the record (data_hosts, beside the zone) and the NSG
        gw = mods["data_hosts" if region.cloud == "azure" else "load_balancer"].get("internal_gateway")
        want = sorted(c for n in linked_regions(plan.spec, region.name)
                      for c in plan.region(n).addressing.pod_source_cidrs)
        assert sorted(gw["source_cidrs"]) == want
        assert gw["name"] == f"gateway.{region.internal_domain}"
        if region.cloud == "azure":
            # Azure: the address is the IR's, inside the AKS node subnet (the first zone's private subnet), and the
            # network module's NSG opens the same address and port to the same sources
            address = region.addressing.internal_gateway_ip
            node_subnet = ipaddress.ip_network(min(region.zones, key=lambda z: z.name).private_cidr)
            assert gw["address"] == address and ipaddress.ip_address(address) in node_subnet
            assert mods["network"].get("internal_gateway") == gw


def test_the_azure_internal_gateway_is_a_private_record_and_an_nsg_opening(reference):
    plan, files = reference
    dh = read_hcl(files["terraform/modules/azure/data_hosts/main.tf"])
    record = next(b for b in dh.all("resource") if b.labels == ["azurerm_private_dns_a_record", "internal_gateway"])
    assert record.get("zone_name") == "azurerm_private_dns_zone.internal.name"
    assert record.get("records") in (["var.internal_gateway.address"], "[var.internal_gateway.address]")
    net = files["terraform/modules/azure/network/main.tf"]
    flat = " ".join(net.split())
    assert 'name = "internal-gateway-from-peers"' in flat
    assert "destination_address_prefix = security_rule.value.address" in flat
    assert "source_address_prefixes = security_rule.value.source_cidrs" in flat


def test_the_regional_acl_counts_clients_by_the_cdns_header(reference):
    """Behind the CDN and the internal gateway the regional ACL sees the CDN's and the forwarding Kong's
    addresses: its per-IP rate limit counts the client address the CDN writes (the CDN's own ACL, the viewer)."""
    from compiler.ir.names import CLIENT_ADDRESS_HEADER
    plan, files = reference
    flat = " ".join(files["terraform/modules/aws/waf/main.tf"].split())
    assert 'aggregate_key_type = var.client_address_header == "" ? "IP" : "FORWARDED_IP"' in flat
    assert "header_name = forwarded_ip_config.value fallback_behavior = \"NO_MATCH\"" in flat
    for region in plan.regions:
        if region.cloud == "aws":
            assert _modules(_root(files, region.name))["waf"].get("client_address_header") == CLIENT_ADDRESS_HEADER
    glob = read_hcl(files["terraform/global/main.tf"])
    assert _modules(glob)["waf"].get("client_address_header") == ""
