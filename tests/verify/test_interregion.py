"""platformc verify's inter-region checker: the peerings, the crossing flows' firewall openings, Kong's forwarding
to the home regions' internal gateways and the PostgreSQL endpoints, read back from the generated tree. The
reference is generated once; each test copies it, breaks one generated file as a hand edit or a template mistake
would, and expects verify to name the file and the layer."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from compiler.verify import interregion, verify
from tests.conftest import REPO

LAYERS = set(interregion.LAYERS)


def _generate(spec: Path, out: Path) -> Path:
    from compiler import writer
    from compiler.emit import emit
    from compiler.pipeline import compile_file
    plan = compile_file(str(spec)).plan
    # kubernetes: Azure's internal gateway is a LoadBalancer Service in front of Kong
    # helm: Kong's home-region map is a global chart its values mount
    outputs, _ = emit(plan, ["connections", "terraform", "kong", "kubernetes", "helm"], with_docs=False)
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory) -> Path:
    return _generate(REPO / "platform.yaml", tmp_path_factory.mktemp("verify-interregion-ref"))


@pytest.fixture
def tree(reference_tree, tmp_path) -> Path:
    dst = tmp_path / "gen"
    shutil.copytree(reference_tree, dst)
    return dst


@pytest.fixture(autouse=True)
def _only_interregion(monkeypatch):
    monkeypatch.setattr("compiler.verify.CHECKERS", ("compiler.verify.interregion",))


def _mine(report) -> list:
    return [b for b in report.broken if b.layer in LAYERS]


def _conns(tree: Path, region: str) -> list[dict]:
    return json.loads((tree / f"connections/{region}.json").read_text())["connections"]


def test_the_reference_proves_every_crossing_path(reference_tree):
    report = verify(reference_tree)
    assert _mine(report) == []
    assert {"inter-region", "cloud-firewall-egress", "kong-forward", "internal-gateway", "postgres-endpoint"} <= report.layers
    # every DR pair's replication crosses, both ways of each pair are proven
    for region in ("us-east-1", "eu-west-2", "ap-southeast-1"):
        conns = _conns(reference_tree, region)
        standby = [c for c in conns if c["from"]["name"] == "postgres-standby"]
        assert standby and all(c["layers"][:2] == ["inter-region", "cloud-firewall"] for c in standby)
    east = _conns(reference_tree, "us-east-1")
    forwards = sorted(c["to"]["name"] for c in east if "kong-forward" in c["layers"])
    assert forwards == ["gateway-ca-central-1", "gateway-eu-central-1", "gateway-eu-west-1", "gateway-sa-east-1",
                        "gateway-us-west-2"]
    # etcd never crosses a region
    for region in ("us-east-1", "ap-southeast-1", "eu-west-2"):
        assert not [c for c in _conns(reference_tree, region) if "etcd" in c["app_protocol"] and "inter-region" in c["layers"]]


def test_a_missing_peering_is_named(tree):
    main = tree / "terraform/regions/us-west-2/main.tf"
    text = main.read_text()
    start = text.index('module "peering_us_east_1"')
    end = text.index("\n}\n", start) + 3
    main.write_text(text[:start] + text[end:])
    broken = _mine(verify(tree))
    assert broken and all(b.layer == "inter-region" for b in broken)
    assert any(b.file == "terraform/regions/us-west-2/main.tf" and "us-east-1" in b.message for b in broken)


def test_a_network_acl_without_the_entering_flow_is_named(tree):
    """us-west-2's Kong reaches us-east-1's internal gateway on 443 from its zones' ranges, which the private subnets'
    network ACL admits as one entry (10.1.0.0/18: two neighbouring /19s)."""
    main = tree / "terraform/regions/us-east-1/main.tf"
    text = main.read_text()
    new = re.sub(r'\{\n\s*cidr_block = "10\.1\.0\.0/18"\n\s*port\s*= 443\n\s*\},?\n', "", text)
    assert new != text
    main.write_text(new)
    broken = _mine(verify(tree, ["us-east-1"]))
    assert any("network ACL" in b.message and "10.1.0.0/19" in b.message and "443/tcp" in b.message
               for b in broken), broken


def test_a_network_acl_that_drops_the_ephemeral_ports_names_the_flows_to_them(tree):
    """The standbys' streams to PostgreSQL (5432) pass the ACL's fixed entry for the ephemeral ports, not an entry
    of their own: narrowed, that entry drops them."""
    module = tree / "terraform/modules/aws/network/main.tf"
    text = module.read_text()
    start = text.index('resource "aws_network_acl" "private"')
    head, acl = text[:start], text[start:]
    assert acl.index("from_port  = 1024") < acl.index('resource "aws_network_acl" "public"')  # its TCP entry
    module.write_text(head + acl.replace("from_port  = 1024", "from_port  = 6000", 1))
    broken = _mine(verify(tree, ["us-east-1"]))
    assert any("network ACL" in b.message and "5432/tcp" in b.message for b in broken), broken


def test_a_standby_host_without_egress_is_named(tree):
    main = tree / "terraform/regions/us-east-1/main.tf"
    text = main.read_text()
    new = text.replace('cidr_blocks = ["10.1.0.0/19", "10.1.32.0/19", "10.1.64.0/19"]', 'cidr_blocks = ["10.1.0.0/19"]')
    assert new != text
    main.write_text(new)
    broken = _mine(verify(tree, ["us-east-1"]))
    assert any(b.layer == "cloud-firewall-egress" and "10.1.32.0/19" in b.message for b in broken), broken


def test_the_fence_crosses_to_the_partner_and_its_egress_is_named_when_missing(reference_tree, tree):
    """The split-brain fence leaves each region's Patroni members for the hosts of the standby cluster its partner runs
    of it: the peering (both regions' module calls cover both ends) and the members' egress (AWS: the data hosts'
    security groups) are proved. Without the primary's group rule, the primary is named: only the replicas' hosts
    were let out to the partner before the fence (the standby streams of the clusters us-east-1 keeps)."""
    fence = "patroni->standby-us-east-1:8009/tcp"
    c = next(c for c in _conns(reference_tree, "us-east-1") if c["id"] == fence)
    assert c["layers"][:2] == ["inter-region", "cloud-firewall-egress"]
    assert _mine(verify(reference_tree, ["us-east-1"])) == []
    main = tree / "terraform/regions/us-east-1/main.tf"
    text = main.read_text()
    start = text.index("    postgres_primary = [", text.index("egress_rules"))
    end = text.index("    ]\n", start) + 6
    assert '"8009 to standby-us-east-1"' in text[start:end]
    main.write_text(text[:start] + text[end:])
    broken = [b for b in _mine(verify(tree, ["us-east-1"])) if b.connection == fence]
    assert [b.layer for b in broken] == ["cloud-firewall-egress"], broken
    assert "postgres_primary" in broken[0].message and "8009/tcp" in broken[0].message


def test_a_forward_to_the_wrong_target_is_named(tree):
    kong = tree / "kong/us-east-1/kong.yaml"
    text = kong.read_text()
    new = text.replace("gateway.us-west-2.internal.6fb.example.com:443", "gateway.us-west-2.internal.6fb.example.com:8443")
    assert new != text
    kong.write_text(new)
    broken = _mine(verify(tree, ["us-east-1"]))
    assert any(b.layer == "kong-forward" and "home-us-west-2" in b.message for b in broken), broken


MAP_CHART = "helm/global/charts/kong-home-routing/templates/configmap.yaml"


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, count))


@pytest.mark.parametrize("rel,old,new,says", [  # each named in the file edited, but a version mismatch in the function's
    # the values mount the map's ConfigMap elsewhere, or mount another one there
    ("helm/us-east-1/kong.values.yaml", "mountPath: /opt/platformc", "mountPath: /opt/maps",
     "no ConfigMap is mounted where /opt/platformc/home_routing.lua would be"),
    ("helm/us-east-1/kong.values.yaml", "- name: platformc-home-routing", "- name: some-other-map",
     "no release installs ConfigMap some-other-map in namespace kong"),
    # Kong's sandbox no longer allows the module
    ("helm/us-east-1/kong.values.yaml", ",platformc.home_routing", "", "does not allow require('platformc.home_routing')"),
    # Kong no longer waits for the map's release
    ("helm/us-east-1/helmfile.yaml", "  - kong/kong-home-routing\n", "", "Kong does not wait for release kong-home-routing"),
    # the mounted map is an older one than the function was built for
    (MAP_CHART, 'local M = {version = "', 'local M = {version = "0', "the mounted map is 0"),
    # the map homes nothing in the home forwarded to
    (MAP_CHART, '"us-west-2", ', '"us-east-1", ', "the home-region map homes no franchise in us-west-2"),
])
def test_a_home_region_map_that_does_not_reach_kong_is_named(tree, rel, old, new, says):
    _edit(tree / rel, old, new)
    broken = [b for b in _mine(verify(tree, ["us-east-1"])) if b.layer == "kong-forward"]
    assert broken and all(says in b.message for b in broken), broken
    named = "kong/us-east-1/kong.yaml" if "version" in old else "helm/us-east-1/helmfile.yaml" if "other-map" in new else rel
    assert {b.file for b in broken} == {named}, broken


def test_a_gateway_that_does_not_admit_a_region_is_named(tree):
    main = tree / "terraform/regions/us-east-1/main.tf"
    text = main.read_text()
    start = text.index("internal_gateway = {")
    new = text[:start] + text[start:].replace('"10.1.0.0/19", ', "", 1)
    assert new != text
    main.write_text(new)
    broken = _mine(verify(tree, ["us-east-1"]))
    assert any(b.layer == "internal-gateway" and "10.1.0.0/19" in b.message for b in broken), broken


def test_a_leader_endpoint_checking_the_wrong_path_is_named(tree):
    main = tree / "terraform/regions/ap-southeast-1/main.tf"
    text = main.read_text()
    new = text.replace('health_path = "/primary"', 'health_path = "/health"', 1)
    assert new != text
    main.write_text(new)
    broken = _mine(verify(tree, ["ap-southeast-1"]))
    assert any(b.layer == "postgres-endpoint" and "/primary" in b.message for b in broken), broken


def _without_sync(text: str) -> str:
    """The root's postgres_endpoints without its sync entry (the root before the sync endpoint existed)."""
    new = re.sub(r"\n    sync = \{\n(      .*\n)+    \}", "", text, count=1)
    assert new != text
    return new


@pytest.mark.parametrize("region, partner", [("us-east-1", "us-west-2"), ("ap-southeast-1", "ap-northeast-1"),
                                            ("eu-west-2", "me-south-1")])
def test_a_sync_endpoint_without_a_load_balancer_is_named(tree, region, partner):
    main = tree / f"terraform/regions/{region}/main.tf"
    main.write_text(_without_sync(main.read_text()))
    broken = _mine(verify(tree, [region, partner]))
    says = f"no internal load balancer answers postgres-sync.{region}."
    named = {(b.file, b.connection) for b in broken if b.layer == "postgres-endpoint" and says in b.message}
    # the region's own flow and the partner's standby dialling it
    assert named == {(f"terraform/regions/{region}/main.tf", "postgres-standby->postgres:5432/tcp"),
                     (f"terraform/regions/{region}/main.tf", f"standby-{region}->postgres-{region}:5432/tcp")}, broken


def test_a_sync_endpoint_checking_the_replicas_path_is_named(tree):
    main = tree / "terraform/regions/us-east-1/main.tf"
    text = main.read_text()
    new = text.replace('health_path = "/sync"', 'health_path = "/replica"', 1)
    assert new != text
    main.write_text(new)
    broken = _mine(verify(tree, ["us-east-1"]))
    assert any(b.layer == "postgres-endpoint" and "postgres-sync.us-east-1" in b.message and "/sync" in b.message
               for b in broken), broken


def test_a_sync_load_balancer_named_as_the_replicas_one_is_named(tree):
    mod = tree / "terraform/modules/aws/data_hosts/main.tf"
    text = mod.read_text()
    new = text.replace('sync = "sy"', 'sync = "ro"')
    assert new != text
    mod.write_text(new)
    broken = _mine(verify(tree, ["us-east-1"]))
    assert any(b.layer == "postgres-endpoint" and b.file == "terraform/modules/aws/data_hosts/main.tf"
               and "aws_lb.postgres" in b.message and "sync endpoint's as the replicas" in b.message for b in broken), broken


def test_the_two_way_name_of_the_first_aws_endpoints_is_worked_out(tree):
    """The module's names before the sync endpoint (`leader ? "rw" : "ro"`) tell the leader's and the replicas' apart,
    and give the sync endpoint the replicas' name."""
    mod = tree / "terraform/modules/aws/data_hosts/main.tf"
    text = mod.read_text()
    new = text.replace("${local.postgres_lb_suffix[each.key]}", '${each.key == "leader" ? "rw" : "ro"}')
    assert new != text
    mod.write_text(new)
    broken = [b for b in _mine(verify(tree, ["us-east-1"])) if "names the" in b.message]
    assert broken and all("sync endpoint's as the replicas" in b.message or "replicas endpoint's as the sync" in b.message
                          for b in broken), broken
    for main in (tree / "terraform/regions").glob("*/main.tf"):  # us-east-1 also runs three regions' standbys
        if "    sync = {" in main.read_text():
            main.write_text(_without_sync(main.read_text()))
    assert not [b for b in _mine(verify(tree, ["us-east-1"])) if "names the" in b.message]


def test_a_gcp_sync_record_outside_the_endpoints_is_named(tree):
    mod = tree / "terraform/modules/gcp/data_hosts/main.tf"
    text = mod.read_text()
    start = text.index('resource "google_dns_record_set" "postgres"')
    new = text[:start] + text[start:].replace("for_each = var.postgres_endpoints", 'for_each = { for k, e in var.postgres_endpoints : k => e if k != "sync" }', 1)
    mod.write_text(new)
    broken = _mine(verify(tree, ["ap-southeast-1"]))
    assert any(b.layer == "postgres-endpoint" and "google_dns_record_set.postgres lacks for_each" in b.message
               for b in broken), broken


# Azure's endpoints: frontends of one internal load balancer (eu-west-2 and me-south-1, each the other's DR partner)
AZURE_PG = "terraform/modules/azure/data_hosts/main.tf"


def _azure_endpoint_broken(tree, says: str, file: str = AZURE_PG) -> list:
    broken = [b for b in _mine(verify(tree, ["eu-west-2", "me-south-1"])) if b.layer == "postgres-endpoint"]
    named = [b for b in broken if b.file == file and says in b.message]
    assert named, broken
    # every connection through an Azure endpoint the module serves: the leader's, the replicas', the sync one's
    assert {"pgbouncer->postgres:5432/tcp", "pgbouncer->postgres-read:5432/tcp",
            "postgres-standby->postgres:5432/tcp"} <= {b.connection for b in named}
    return named


def test_azure_endpoints_as_load_balancers_of_their_own_are_named(tree):
    """The design Azure refused at apply: a load balancer (and pool) per endpoint, each over the members' `primary`
    IP configuration."""
    _edit(tree / AZURE_PG, "count = length(var.postgres_endpoints) > 0 ? 1 : 0", "for_each = var.postgres_endpoints")
    _azure_endpoint_broken(tree, "not one load balancer with one backend pool")


def test_an_azure_endpoint_rule_with_floating_ip_is_named(tree):
    _edit(tree / AZURE_PG, "floating_ip_enabled            = false", "floating_ip_enabled            = true")
    _azure_endpoint_broken(tree, "uses Floating IP")


def test_azure_endpoints_sharing_a_backend_port_are_named(tree):
    """Two rules over the members' IP configuration on one backend port: Azure refuses the second without Floating IP."""
    main = tree / "terraform/regions/eu-west-2/main.tf"
    _edit(main, "backend_port = 15434", "backend_port = 15433")
    broken = [b for b in _mine(verify(tree, ["eu-west-2", "me-south-1"])) if b.layer == "postgres-endpoint"]
    assert {b.connection for b in broken if b.file == "terraform/regions/eu-west-2/main.tf"
            and "backend port 15433" in b.message} == {
        "pgbouncer->postgres-read:5432/tcp", "postgres-standby->postgres:5432/tcp",
        "standby-eu-west-2->postgres-eu-west-2:5432/tcp"}, broken


def test_an_azure_endpoint_record_not_naming_its_frontend_is_named(tree):
    _edit(tree / AZURE_PG, "if f.name == each.key", 'if f.name == "leader"')
    _azure_endpoint_broken(tree, "record does not name its frontend's address")


def test_an_azure_rule_delivering_to_the_port_dialled_is_named(tree):
    """Every rule on 5432 (the module ignoring the root's backend ports): two rules on one backend port."""
    _edit(tree / AZURE_PG, "backend_port                   = each.value.backend_port",
          "backend_port                   = each.value.port")
    _azure_endpoint_broken(tree, "lacks backend_port = each.value.backend_port")


def test_a_gcp_gateway_whose_proxies_cannot_reach_kong_is_named(tree):
    main = tree / "terraform/regions/ap-southeast-1/main.tf"
    text = main.read_text()
    new = text.replace('proxy_cidr = "10.8.100.0/23"', 'proxy_cidr = "10.8.102.0/23"')
    assert new != text
    main.write_text(new)
    broken = _mine(verify(tree, ["ap-southeast-1"]))
    assert any(b.layer == "internal-gateway" and "10.8.100.0/23" in b.message for b in broken), broken


# ---------------------------------------------------------------- Azure's internal gateway (two peered Azure regions)

AZURE_ONLY = REPO / "tests/cases/azure-only/platform.yaml"


@pytest.fixture(scope="module")
def azure_tree_ref(tmp_path_factory) -> Path:
    return _generate(AZURE_ONLY, tmp_path_factory.mktemp("verify-interregion-azure"))


@pytest.fixture
def azure_tree(azure_tree_ref, tmp_path) -> Path:
    dst = tmp_path / "gen"
    shutil.copytree(azure_tree_ref, dst)
    return dst


def test_azure_regions_forward_to_each_others_internal_gateway(azure_tree_ref):
    report = verify(azure_tree_ref)
    assert _mine(report) == []
    for region, home in (("eus2", "weu"), ("weu", "eus2")):
        conns = _conns(azure_tree_ref, region)
        fwd = [c for c in conns if "kong-forward" in c["layers"]]
        assert [c["to"]["name"] for c in fwd] == [f"gateway-{home}"]
        into = [c for c in conns if "internal-gateway" in c["layers"]]
        assert len(into) == 2  # the peer's Kong into the gateway, the gateway on to Kong's pods
    assert {"inter-region", "kong-forward", "internal-gateway"} <= report.layers


def test_an_azure_gateway_service_on_another_address_than_its_record_is_named(azure_tree):
    path = azure_tree / "kubernetes/weu/kong-gateway.yaml"
    text = path.read_text()
    new = re.sub(r"(azure-load-balancer-ipv4: )([0-9.]+)", r"\g<1>10.21.0.99", text)
    assert new != text
    path.write_text(new)
    broken = _mine(verify(azure_tree, ["weu"]))
    assert any(b.layer == "internal-gateway" and b.file == "kubernetes/weu/kong-gateway.yaml" and "10.21.0.99" in b.message
               for b in broken), broken


def test_an_azure_gateway_without_its_nsg_opening_is_named(azure_tree):
    main = azure_tree / "terraform/regions/eus2/main.tf"
    text = main.read_text()
    start = text.index('module "network"')
    end = text.index("\n}\n", start)
    block = text[start:end]
    new_block = block.replace('source_cidrs = ["10.21.', 'source_cidrs = ["10.99.', 1)
    assert new_block != block
    main.write_text(text[:start] + new_block + text[end:])
    broken = _mine(verify(azure_tree, ["eus2"]))
    assert any(b.layer == "internal-gateway" and "network" in b.message and "10.21." in b.message for b in broken), broken


def test_an_azure_gateway_record_missing_from_the_private_zone_is_named(azure_tree):
    mod = azure_tree / "terraform/modules/azure/data_hosts/main.tf"
    text = mod.read_text()
    new = text.replace('resource "azurerm_private_dns_a_record" "internal_gateway"',
                       'resource "azurerm_private_dns_a_record" "gateway_elsewhere"')
    assert new != text
    mod.write_text(new)
    broken = _mine(verify(azure_tree, ["eus2"]))
    assert any(b.layer == "internal-gateway" and "private zone" in b.message for b in broken), broken
