"""platformc verify's infra checker: cloud firewalls, the CDN's TLS to the origins, the enforcing CNI and the
client-address header, read back from generated/terraform alone. The reference is generated once; each test
copies it, breaks one generated file the way a hand edit or a template mistake would, and expects verify to
name that file and line with the layer."""

from __future__ import annotations

import re

import shutil
from pathlib import Path

import pytest

from compiler.verify import VerifyError, verify
from compiler.verify import infra
from tests.conftest import REPO

LAYERS = {*infra.LAYERS, infra.CNI_LAYER}
AWS = "us-east-1"
GCP = "ap-southeast-1"  # pods keep their pod-range addresses up to the VMs there
AZURE = "eu-west-2"
ROUTE53 = "route53-health-checks"
NLB = "internal-gateway-health-checks"
# Every client of the AWS region's origin listener: the CDN's two paths, Route 53's and the internal gateway's probes.
AWS_LISTENER_CLIENTS = ["cdn->load-balancer:443/tcp", "cdn-home->load-balancer:443/tcp",
                        f"{ROUTE53}->load-balancer:443/tcp", f"{NLB}->load-balancer:443/tcp"]


def _generate(spec: Path, out: Path) -> Path:
    from compiler import writer
    from compiler.emit import emit
    from compiler.pipeline import compile_file
    plan = compile_file(str(spec)).plan
    outputs, _ = emit(plan, ["connections", "terraform"], with_docs=False)
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory) -> Path:
    return _generate(REPO / "platform.yaml", tmp_path_factory.mktemp("verify-infra-ref"))


@pytest.fixture
def tree(reference_tree, tmp_path) -> Path:
    dst = tmp_path / "gen"
    shutil.copytree(reference_tree, dst)
    return dst


@pytest.fixture(autouse=True)
def _only_infra(monkeypatch):
    monkeypatch.setattr("compiler.verify.CHECKERS", ("compiler.verify.infra",))


def _mine(report) -> list:
    return [b for b in report.broken if b.layer in LAYERS]


def _line(path: Path, needle: str, start: int = 1) -> int:
    for i, line in enumerate(path.read_text().splitlines()[start - 1:], start):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def _hits(report, rel: str, layer: str) -> list:
    return [b for b in _mine(report) if b.file == rel and b.layer == layer]


def test_reference_has_no_broken_infra_link(reference_tree):
    report = verify(reference_tree)
    assert not _mine(report), "\n".join(b.format() for b in _mine(report))
    assert report.checks > 0


@pytest.mark.parametrize("case", sorted(p.name for p in (REPO / "tests/cases").iterdir() if (p / "platform.yaml").is_file()))
def test_fixtures_have_no_broken_infra_link(case, tmp_path):
    report = verify(_generate(REPO / "tests/cases" / case / "platform.yaml", tmp_path / case))
    assert not _mine(report), "\n".join(b.format() for b in _mine(report))


def test_dropped_exporter_port_is_named(tree):
    """The postgres_exporter port taken off the primary's security group rules."""
    rel = f"terraform/regions/{AWS}/main.tf"
    path = tree / rel
    _edit(path, "from_port   = 9187\n        to_port     = 9187", "from_port   = 9188\n        to_port     = 9188")
    group = _line(path, "postgres_primary = [", _line(path, "ingress_rules = {"))
    hits = _hits(verify(tree), rel, "cloud-firewall")
    assert [(b.line, b.connection) for b in hits] == [(group, "prometheus->postgres:9187/tcp")], hits
    assert "9187" in hits[0].message


def test_a_region_without_its_root_names_the_layers_in_a_fixed_order(tree):
    """Each connection's layers in LAYERS order, whatever the hash seed (a set's order once varied run to run)."""
    rel = f"terraform/regions/{AWS}/main.tf"
    (tree / rel).unlink()
    hits = [b for b in _mine(verify(tree)) if b.file == rel]
    cdn = [b.layer for b in hits if b.connection == "cdn->load-balancer:443/tcp"]
    probes = [b.layer for b in hits if b.connection == f"{ROUTE53}->load-balancer:443/tcp"]
    assert cdn == ["cloud-firewall", "cdn"] and probes == ["cloud-firewall", "health-check"]
    assert all(b.message == "the region has no Terraform root" for b in hits)


def test_narrowed_source_range_is_named(tree):
    """GKE's pods reach the hosts from the pod range: a rule narrowed to half of it leaves pods out."""
    rel = f"terraform/regions/{GCP}/main.tf"
    path = tree / rel
    text = path.read_text()
    pods = next(l.split('"')[1] for l in text.splitlines() if "pods_cidr" in l)
    start = _line(path, 'target_tag    = "pgbouncer"')
    lines = text.splitlines()
    narrowed = next(i for i in range(start, len(lines)) if pods in lines[i])  # 0-based index of the source line
    half = pods.replace("/17", "/18")
    lines[narrowed] = lines[narrowed].replace(pods, half)
    path.write_text("\n".join(lines) + "\n")
    hits = _hits(verify(tree), rel, "cloud-firewall")
    assert hits and {b.connection for b in hits} >= {"booking->pgbouncer:6432/tcp"}, hits
    assert all(pods in b.message for b in hits)
    rule_line = max(i for i in range(narrowed + 1) if lines[i].strip() == "{") + 1  # the narrowed rule's own line
    assert {b.line for b in hits} == {rule_line}


def test_an_nsg_opening_the_port_dialled_not_the_backend_port_is_named(tree):
    """Azure's PostgreSQL endpoints deliver the replicas' and the DR standby's connections to backend ports of their
    own, which the members redirect to 5432 behind the NSG: the NSG filters them on the backend port. Rules that open
    5432 to those clients instead (the ports as the clients dial them) leave both flows out."""
    rel = f"terraform/regions/{AZURE}/main.tf"
    path = tree / rel
    text = path.read_text()
    for port in (15433, 15434):
        _edit(path, f"from_port   = {port}\n", "from_port   = 5432\n", count=2)
        _edit(path, f"to_port     = {port}\n", "to_port     = 5432\n", count=2)
    assert path.read_text() != text
    hits = _hits(verify(tree), rel, "cloud-firewall")
    by_conn = {b.connection: b.message for b in hits}
    assert set(by_conn) == {"pgbouncer->postgres-read:5432/tcp", "postgres-standby->postgres:5432/tcp"}, hits
    assert "15433/tcp (the port postgres-replicas.eu-west-2." in by_conn["pgbouncer->postgres-read:5432/tcp"]
    assert "15434/tcp (the port postgres-sync.eu-west-2." in by_conn["postgres-standby->postgres:5432/tcp"]


def test_a_partner_closed_to_the_fence_is_named(tree):
    """us-west-2's standby hosts admit us-east-1's Patroni members on the standby's REST port (the split-brain fence
    asks there before us-east-1's Patroni starts). Dropping that rule is named at us-west-2's root, for the fence's
    connection entering there."""
    main = tree / "terraform/regions/us-west-2/main.tf"
    text = main.read_text()
    rule = re.search(r'      \{\n        description = "8009 from patroni-us-east-1"\n[^}]*\},\n', text)
    assert rule
    main.write_text(text[:rule.start()] + text[rule.end():])
    broken = [b for b in _mine(verify(tree, ["us-west-2"])) if b.connection == "patroni-us-east-1->standby-us-east-1:8009/tcp"]
    assert broken and all(b.layer == "cloud-firewall" and b.file == "terraform/regions/us-west-2/main.tf" for b in broken)
    assert "10.0.0.0/19" in broken[0].message and "8009/tcp" in broken[0].message


def test_cni_switched_off_is_named(tree):
    rel = "terraform/modules/aws/kubernetes/main.tf"
    path = tree / rel
    _edit(path, 'enableNetworkPolicy = "true"', 'enableNetworkPolicy = "false"')
    hits = _hits(verify(tree), rel, infra.CNI_LAYER)
    line = _line(path, "enableNetworkPolicy")
    aws_regions = {"us-east-1", "us-west-2", "ca-central-1", "sa-east-1", "eu-west-1", "eu-central-1"}
    assert {b.line for b in hits} == {line} and {b.connection for b in hits} == {f"{r} cluster" for r in aws_regions}


def test_lowered_origin_protocols_are_named(tree):
    rel = "terraform/global/cdn.tf"
    path = tree / rel
    _edit(path, 'origin_ssl_protocols   = ["TLSv1.2"]', 'origin_ssl_protocols   = ["TLSv1.1", "TLSv1.2"]')
    hits = _hits(verify(tree), rel, "cdn")
    assert {b.line for b in hits} == {_line(path, "origin_ssl_protocols   =")}
    assert {b.connection for b in hits} == {"cdn->load-balancer:443/tcp"} and len(hits) == 12  # every region


def test_origin_listener_below_the_floor_is_named(tree):
    """A listener that accepts TLS 1.1 is below what any of its clients needs (1.2, the health checkers'): named for
    each connection arriving at it."""
    rel = f"terraform/regions/{AWS}/main.tf"
    path = tree / rel
    _edit(path, '"ELBSecurityPolicy-TLS13-1-2-2021-06"', '"ELBSecurityPolicy-TLS13-1-1-2021-06"')
    hits = [b for layer in ("cdn", "health-check") for b in _hits(verify(tree), rel, layer)]
    assert sorted(b.connection for b in hits) == sorted(AWS_LISTENER_CLIENTS), hits
    assert {b.line for b in hits} == {_line(path, "ssl_policy")}
    assert all("accepts TLS 1.1, below 1.2" in b.message for b in hits)


def test_origin_listener_only_for_tls_13_is_named_for_the_health_checkers(tree):
    """Route 53's health checkers and the NLB's speak at most TLS 1.2: a TLS 1.3-only listener fails every probe
    (Route 53 then answers with every region, a dead one too). CloudFront, which speaks 1.3, still connects."""
    rel = f"terraform/regions/{AWS}/main.tf"
    path = tree / rel
    _edit(path, '"ELBSecurityPolicy-TLS13-1-2-2021-06"', '"ELBSecurityPolicy-TLS13-1-3-2021-06"')
    hits = _hits(verify(tree), rel, "health-check")
    assert [(b.line, b.connection) for b in hits] == [(_line(path, "ssl_policy"), f"{ROUTE53}->load-balancer:443/tcp"),
                                                      (_line(path, "ssl_policy"), f"{NLB}->load-balancer:443/tcp")]
    assert hits[0].message.startswith("Route 53 health checkers cannot connect over TLS 1.2")
    assert not _hits(verify(tree), rel, "cdn")


def test_gcp_origin_listener_only_for_tls_13_is_named_for_route53(tree):
    """Route 53 health-checks every region, whatever its cloud: a Google SSL policy of TLS 1.3 shuts its probes out."""
    rel = f"terraform/regions/{GCP}/main.tf"
    path = tree / rel
    _edit(path, '"TLS_1_2"', '"TLS_1_3"')
    hits = _hits(verify(tree), rel, "health-check")
    assert [(b.line, b.connection) for b in hits] == [(_line(path, "min_tls_version"), f"{ROUTE53}->load-balancer:443/tcp")]
    assert "cannot connect over TLS 1.2" in hits[0].message


def test_route53_health_checks_not_probing_https_are_named(tree):
    rel = "terraform/global/dns.tf"
    path = tree / rel
    _edit(path, 'type              = "HTTPS"', 'type              = "HTTP"')
    hits = _hits(verify(tree), rel, "health-check")
    assert {b.connection for b in hits} == {f"{ROUTE53}->load-balancer:443/tcp"} and len(hits) == 12  # every region
    assert {b.line for b in hits} == {_line(path, 'type              = "HTTP"')}


def test_alb_closed_to_the_route53_health_checkers_is_named(tree):
    rel = "terraform/modules/aws/load_balancer/main.tf"
    path = tree / rel
    _edit(path, 'services = ["route53_healthchecks"]', 'services = ["route53"]')
    hits = _hits(verify(tree), rel, "cloud-firewall")
    assert {b.connection for b in hits} == {f"{ROUTE53}->load-balancer:443/tcp"} and len(hits) == 6  # AWS regions
    assert {b.line for b in hits} == {_line(path, 'resource "aws_lb" "this"')}


def test_unknown_origin_policy_is_named(tree):
    """A policy name verify does not know cannot be shown to meet CloudFront, the health checkers and the floor."""
    rel = f"terraform/regions/{AZURE}/main.tf"
    path = tree / rel
    path.write_text(re.sub(r'(min_tls_version\s*=\s*)"TLSv1_2"', r'\1"TLSv1_7"', path.read_text(), count=1))
    assert '"TLSv1_7"' in path.read_text()
    hits = [b for layer in ("cdn", "health-check") for b in _hits(verify(tree), rel, layer)]
    assert [b.line for b in hits] == [_line(path, "min_tls_version")] * 3 and all("unknown" in h.message for h in hits)
    assert {b.connection for b in hits} == {"cdn->load-balancer:443/tcp", "cdn-home->load-balancer:443/tcp",
                                            f"{ROUTE53}->load-balancer:443/tcp"}


def test_alb_open_around_the_cdn_is_named(tree):
    rel = "terraform/modules/aws/load_balancer/main.tf"
    path = tree / rel
    _edit(path, "prefix_list_ids = [data.aws_ec2_managed_prefix_list.cloudfront.id]", 'cidr_blocks     = ["0.0.0.0/0"]')
    hits = _hits(verify(tree), rel, "cloud-firewall")
    assert {b.connection for b in hits} == {"cdn->load-balancer:443/tcp", "cdn-home->load-balancer:443/tcp"}
    opened = _line(path, '"0.0.0.0/0"')
    ingress = max(i for i, l in enumerate(path.read_text().splitlines()[:opened], 1) if l.strip() == "ingress {")
    assert ingress in {b.line for b in hits}
    assert any("CloudFront" in b.message or "origin-facing" in b.message for b in hits)


def test_gcp_lb_to_kong_source_dropped_is_named(tree):
    rel = f"terraform/regions/{GCP}/main.tf"
    path = tree / rel
    _edit(path, 'lb_source_ranges = ["35.191.0.0/16", "130.211.0.0/22"]', 'lb_source_ranges = ["35.191.0.0/16"]')
    hits = _hits(verify(tree), rel, "cloud-firewall")
    assert [(b.line, b.connection) for b in hits] == [(_line(path, "lb_source_ranges"), "load-balancer->kong:8443/tcp")]


def test_host_rules_not_applied_by_the_module_are_named(tree):
    """A template mistake: the module ignores the rules it is given."""
    rel = "terraform/modules/azure/data_hosts/main.tf"
    path = tree / rel
    _edit(path, "source_address_prefixes                    = each.value.cidr_blocks",
          'source_address_prefixes                    = ["10.255.255.0/24"]')
    hits = _hits(verify(tree), rel, "cloud-firewall")
    assert hits and {b.line for b in hits} == {_line(path, 'resource "azurerm_network_security_rule" "ingress"')}


def test_client_address_header_is_checked_at_both_ends(tree):
    rel = "terraform/global/cdn.tf"
    path = tree / rel
    values = tree / f"helm/{AWS}/kong.values.yaml"
    values.parent.mkdir(parents=True, exist_ok=True)
    values.write_text("env:\n  trusted_ips: 10.0.0.0/8\n  real_ip_header: X-Forwarded-For\n")
    hits = _hits(verify(tree), f"helm/{AWS}/kong.values.yaml", "cdn")
    assert [(b.line, b.connection) for b in hits] == [(3, "client address header")]
    _edit(path, "event.viewer.ip", "event.request.headers.host")
    hits = _hits(verify(tree), rel, "cdn")
    assert hits and {b.connection for b in hits} == {"client address header"}


# ---------------------------------------------------------------- the Azure and Google edges (issue 17)

@pytest.fixture(scope="module")
def edge_trees(tmp_path_factory) -> dict[str, Path]:
    return {case: _generate(REPO / "tests/cases" / case / "platform.yaml", tmp_path_factory.mktemp(f"verify-{case}"))
            for case in ("azure-only", "gcp-only")}


@pytest.fixture
def azure_tree(edge_trees, tmp_path) -> Path:
    dst = tmp_path / "azure"
    shutil.copytree(edge_trees["azure-only"], dst)
    return dst


@pytest.fixture
def gcp_tree(edge_trees, tmp_path) -> Path:
    dst = tmp_path / "gcp"
    shutil.copytree(edge_trees["gcp-only"], dst)
    return dst


def test_front_door_and_cloud_cdn_are_checked_not_skipped(edge_trees):
    """Both hops of the public path pass the cdn layer on each edge (the cdn checks ran: one per region per hop
    plus the client-address check per region)."""
    for tree in edge_trees.values():
        report = verify(tree)
        assert not _mine(report), "\n".join(b.format() for b in _mine(report))
        assert report.checks > 0


def test_front_door_viewer_tls_below_the_floor_is_named(azure_tree):
    rel = "terraform/global/main.tf"
    _edit(azure_tree / rel, 'minimum_tls_version   = "TLS12"', 'minimum_tls_version   = "TLS10"')
    hits = _hits(verify(azure_tree), "terraform/global/cdn.tf", "cdn")
    assert hits and all("internet->cdn" in b.connection for b in hits)
    assert any("TLS10 admits TLS below 1.2" in b.message for b in hits)
    assert hits[0].line == _line(azure_tree / "terraform/global/cdn.tf", "minimum_tls_version = local.minimum_tls_version")


def test_front_door_forwarding_over_http_is_named(azure_tree):
    rel = "terraform/global/cdn.tf"
    _edit(azure_tree / rel, 'forwarding_protocol             = "HttpsOnly"', 'forwarding_protocol             = "MatchRequest"')
    hits = _hits(verify(azure_tree), rel, "cdn")
    assert hits and all("cdn->load-balancer" in b.connection for b in hits)
    assert {b.line for b in hits} == {_line(azure_tree / rel, 'forwarding_protocol             = "MatchRequest"')}


def test_front_door_origin_that_is_not_the_region_is_named(azure_tree):
    rel = "terraform/global/main.tf"
    _edit(azure_tree / rel, 'hostname = "weu.acme.example.org"', 'hostname = "eus2.acme.example.org"')
    hits = [b for b in _mine(verify(azure_tree)) if b.layer == "cdn"]
    assert any("no Front Door origin is weu.acme.example.org" in b.message for b in hits)


def test_front_door_client_address_rule_is_checked(azure_tree):
    rel = "terraform/global/cdn.tf"
    _edit(azure_tree / rel, 'value         = "{client_ip}"', 'value         = "{socket_ip}"')
    hits = _hits(verify(azure_tree), rel, "cdn")
    assert hits and {b.connection for b in hits} == {"client address header"}
    assert hits[0].line == _line(azure_tree / rel, 'resource "azurerm_cdn_frontdoor_route"')


def test_front_door_header_kong_does_not_read_is_named(azure_tree):
    values = azure_tree / "helm/eus2/kong.values.yaml"
    values.parent.mkdir(parents=True, exist_ok=True)
    values.write_text("env:\n  real_ip_header: X-Forwarded-For\n")
    hits = _hits(verify(azure_tree), "helm/eus2/kong.values.yaml", "cdn")
    assert [(b.line, b.connection) for b in hits] == [(2, "client address header")]
    assert "Front Door sets" in hits[0].message


def test_cloud_cdn_viewer_tls_below_the_floor_is_named(gcp_tree):
    _edit(gcp_tree / "terraform/global/main.tf", 'minimum_tls_version         = "TLS_1_3"', 'minimum_tls_version         = "TLS_1_2"')
    rel = "terraform/global/cdn.tf"
    hits = _hits(verify(gcp_tree), rel, "cdn")
    assert hits and all("internet->cdn" in b.connection for b in hits)
    assert hits[0].line == _line(gcp_tree / rel, "min_tls_version = local.minimum_tls_version")


def test_cloud_cdn_origin_not_the_weighted_name_is_named(gcp_tree):
    rel = "terraform/global/cdn.tf"
    _edit(gcp_tree / rel, 'fqdn                          = "origin.${local.domain}"', 'fqdn                          = "usc1.${local.domain}"')
    hits = _hits(verify(gcp_tree), rel, "cdn")
    assert hits and all("cdn->load-balancer" in b.connection for b in hits)
    assert "does not name origin.acme.example.org" in hits[0].message


def test_cloud_cdn_region_off_its_reserved_address_is_named(gcp_tree):
    rel = "terraform/modules/gcp/load_balancer/main.tf"
    _edit(gcp_tree / rel, "ip_address            = data.google_compute_global_address.this.id",
          'ip_address            = "203.0.113.7"')
    hits = _hits(verify(gcp_tree), rel, "cdn")
    assert hits and "does not listen on the address the global root reserves" in hits[0].message


def test_cloud_cdn_client_address_header_is_checked(gcp_tree):
    rel = "terraform/global/cdn.tf"
    _edit(gcp_tree / rel, ": {client_ip_address}", ": {client_region}")
    hits = _hits(verify(gcp_tree), rel, "cdn")
    assert hits and {b.connection for b in hits} == {"client address header"}
    assert hits[0].line == _line(gcp_tree / rel, "custom_request_headers")


def test_gateway_open_to_the_internet_around_front_door_is_named(azure_tree):
    rel = "terraform/modules/azure/network/main.tf"
    _edit(azure_tree / rel, 'source_address_prefix      = "AzureFrontDoor.Backend"', 'source_address_prefix      = "Internet"')
    hits = _hits(verify(azure_tree), rel, "cloud-firewall")
    # both the weighted path and the home-region path (home-<region> origin groups) reach the gateway through it
    assert {b.connection for b in hits} == {"cdn->load-balancer:443/tcp", "cdn-home->load-balancer:443/tcp"}
    assert any("around Front Door" in b.message for b in hits)
    assert any("does not admit AzureFrontDoor.Backend" in b.message for b in hits)


@pytest.mark.parametrize("slip", ["locals_bad = [ ) ]", 'x = "open'])
def test_an_unreadable_terraform_file_is_named_not_an_internal_error(tree, slip):
    main = tree / "terraform/regions/us-east-1/main.tf"
    main.write_text(slip + "\n" + main.read_text())
    with pytest.raises(VerifyError, match=r"^terraform/regions/us-east-1/main\.tf: not readable as HCL \(line \d+: "):
        verify(tree)


def test_a_network_acl_without_the_administrators_is_named(tree):
    """The administrators reach the bastion from their VPN range, outside the VPC: the ACL drops them unless an entry
    admits their range on 22 (the security group alone is not enough)."""
    main = tree / "terraform/regions/us-east-1/main.tf"
    text = main.read_text()
    new = re.sub(r'\{\n\s*cidr_block = "10\.255\.0\.0/24"\n\s*port\s*= 22\n\s*\},?\n', "", text)
    assert new != text
    main.write_text(new)
    broken = verify(tree, ["us-east-1"]).broken
    assert [(b.layer, b.connection) for b in broken if "network ACL" in b.message] == \
        [("cloud-firewall", "admins->bastion:22/tcp")], broken


# ---------------------------------------------------------------- the origin secret (compiler/ir/edge.py: origin_verify)

def test_cloudfront_not_sending_the_origin_secret_is_named(tree):
    """Every region's WAF requires the header: an origin that stops sending it breaks the CDN's path to that region."""
    rel = "terraform/global/cdn.tf"
    path = tree / rel
    _edit(path, 'name  = "X-Origin-Verify"', 'name  = "X-Origin-Check"', count=2)  # the weighted origin and us-east-1's
    hits = _hits(verify(tree), rel, "cdn")
    assert {b.connection for b in hits} == {"cdn->load-balancer:443/tcp", "cdn-home->load-balancer:443/tcp"}
    assert all("X-Origin-Verify".lower() in b.message for b in hits)
    # the weighted origin reaches every region; us-east-1's own origin only us-east-1
    assert len(hits) == 12 + 1


def test_region_reading_another_secret_is_named(tree):
    rel = f"terraform/regions/{GCP}/main.tf"
    path = tree / rel
    _edit(path, 'secret_id = "sixfb/edge/origin-verify"', 'secret_id = "sixfb/edge/other"')
    hits = _hits(verify(tree), rel, "cdn")
    assert hits and all("does not read the global root's origin secret" in b.message for b in hits)
    assert {b.line for b in hits} == {_line(path, 'data "aws_secretsmanager_secret_version" "origin_verify"')}


def test_waf_not_requiring_the_secret_is_named(tree):
    """With the secret made at the edge, a region whose WAF admits requests without it is open to any distribution."""
    rel = f"terraform/regions/{AZURE}/main.tf"
    path = tree / rel
    _edit(path, 'origin_verify_header      = "x-origin-verify"', 'origin_verify_header      = ""')
    hits = _hits(verify(tree), rel, "cdn")
    assert hits and all("any CloudFront distribution reaches" in b.message for b in hits)


def test_waf_module_dropping_the_check_is_named(tree):
    rel = "terraform/modules/gcp/waf/main.tf"
    path = tree / rel
    _edit(path, "has(request.headers['${rule.value}'])", "true")
    hits = _hits(verify(tree), rel, "cdn")
    assert hits and all("does not apply the origin check" in b.message for b in hits)


def test_health_path_not_exempt_is_named(tree):
    """Route 53's checkers (and the AWS internal gateway's NLB) cannot add the header: the probed path must be exempt."""
    rel = f"terraform/regions/{AZURE}/main.tf"
    path = tree / rel
    _edit(path, 'origin_verify_exempt_path = "/healthz"', 'origin_verify_exempt_path = "/status"')
    hits = _hits(verify(tree), rel, "health-check")
    assert [b.connection for b in hits] == [f"{ROUTE53}->load-balancer:443/tcp"]
    assert "every probe is blocked" in hits[0].message
    assert hits[0].line == _line(path, "origin_verify_exempt_path")


def test_front_door_region_not_requiring_its_profile_id_is_named(azure_tree):
    """Every Front Door customer connects from the AzureFrontDoor.Backend addresses the region admits: the WAF must
    require the id this edge's profile sends (X-Azure-FDID), read from that profile."""
    rel = "terraform/regions/weu/main.tf"
    path = azure_tree / rel
    _edit(path, 'name                = "acme-global"', 'name                = "acme-other"')
    hits = _hits(verify(azure_tree), rel, "cdn")
    assert hits and all("does not read the id of the edge's Front Door profile acme-global" in b.message for b in hits)
    assert {b.line for b in hits} == {_line(path, 'data "azurerm_cdn_frontdoor_profile" "edge"')}
    _edit(path, 'origin_verify_header      = "x-azure-fdid"', 'origin_verify_header      = ""')
    hits = _hits(verify(azure_tree), rel, "cdn")
    assert hits and all("any Front Door reaches its gateway" in b.message for b in hits)


# ---------------------------------------------------------------- the operators' path to the cluster API

def test_the_bastion_reaches_each_clusters_private_api(reference_tree):
    """Operators run kubectl and helmfile through the bastion. EKS's cluster security group admits only itself, so
    without the kubernetes module's `api` rule every kubectl from the bastion timed out (review finding; EKS User
    Guide: the control plane security group must allow 443 from the connected network)."""
    from compiler.verify import Tree
    tree = Tree(reference_tree)
    results = [r for region in tree.regions for r in infra.check(tree, region, tree.connections(region))
               if r.layer == "cloud-firewall" and "->kubernetes-api:" in r.connection]
    assert len(results) == len(tree.regions) == 12
    assert [b for r in results for b in r.broken] == []


def test_an_eks_cluster_without_the_api_rule_or_its_ranges_is_named(tree):
    module = tree / "terraform/modules/aws/kubernetes/main.tf"
    root = tree / "terraform/regions/us-east-1/main.tf"
    text = root.read_text()
    root.write_text(re.sub(r'api_client_cidrs\s*=\s*\[[^\]]*\]', 'api_client_cidrs   = []', text, count=1))
    broken = [b for b in verify(tree, ["us-east-1"]).broken if "->kubernetes-api:" in b.connection]
    assert [b.message for b in broken] == ["the cluster security group does not admit 10.0.0.0/19"]
    assert broken[0].file == "terraform/regions/us-east-1/main.tf"
    root.write_text(text)
    module.write_text(module.read_text().replace('resource "aws_vpc_security_group_ingress_rule" "api"',
                                                 'resource "aws_vpc_security_group_ingress_rule" "api_off"'))
    broken = [b for b in verify(tree, ["us-east-1"]).broken if "->kubernetes-api:" in b.connection]
    assert [b.message for b in broken] == ["no ingress rule for the API on the cluster security group"]
