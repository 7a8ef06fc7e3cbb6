"""The edge follows the clouds (issue 17): a one-cloud platform gets its own cloud's DNS, CDN and WAF; no
root names a cloud the platform does not use; the global root gets every module it calls; region roots pin
each provider to the account the spec declares.

Every case under tests/cases is compiled (the one-cloud fixtures aws-only, gcp-only and azure-only among
them); test_terraform.py runs fmt, terraform get, the provider-schema check and checkov on the same trees.
"""

from __future__ import annotations

import re

import pytest
import yaml

from compiler.ir.edge import cdn_provider, dns_provider, edge_cloud
from compiler.pipeline import compile_file
from compiler.targets import terraform
from tests.conftest import REPO

CASES = sorted(p.name for p in (REPO / "tests/cases").iterdir() if (p / "platform.yaml").exists())
ONE_CLOUD = {"aws-only": "aws", "gcp-only": "gcp", "azure-only": "azure"}
PROVIDER = {"aws": "aws", "gcp": "google", "azure": "azurerm"}
# Anything in a .tf file that names a provider: a provider block, a requirement, a resource or data source.
NAMES = re.compile(r'provider "(aws|google|azurerm)"|hashicorp/(aws|google|azurerm)"|^\s*(aws|google|azurerm)\s*=\s*\{|'
                   r'(?:resource|data) "(aws|google|azurerm)_', re.M)


def _tree(plan) -> dict[str, str]:
    files = dict(terraform.emit_global(plan))
    for r in plan.regions:
        files.update(terraform.emit_region(plan, r))
    return files


@pytest.fixture(scope="module")
def compiled():
    out = {}
    for case in CASES:
        plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
        out[case] = (plan, _tree(plan))
    return out


def _roots(files: dict[str, str]) -> dict[str, list[str]]:
    """Terraform directory -> its .tf files' texts (terraform/regions/<r>/vault holds Vault's policy and its
    configure script, which Terraform never reads)."""
    dirs: dict[str, list[str]] = {}
    for path, text in files.items():
        if path.endswith(".tf"):
            dirs.setdefault(path.rsplit("/", 1)[0], []).append(text)
    return dirs


@pytest.mark.parametrize("case", sorted(ONE_CLOUD))
def test_one_cloud_platform_names_no_other_cloud(compiled, case):
    plan, files = compiled[case]
    own = PROVIDER[ONE_CLOUD[case]]
    assert dns_provider(plan.spec) == {"aws": "route53", "gcp": "cloud_dns", "azure": "azure_dns"}[ONE_CLOUD[case]]
    assert cdn_provider(plan.spec) == {"aws": "cloudfront", "gcp": "cloud_cdn", "azure": "front_door"}[ONE_CLOUD[case]]
    checked = 0
    for directory, texts in _roots(files).items():
        named = {next(g for g in m.groups() if g) for t in texts for m in NAMES.finditer(t)}
        assert named == {own}, f"{directory} names {sorted(named)}"
        checked += 1
    assert checked >= 10
    assert not any(f"/modules/{c}/" in p for p in files for c in PROVIDER if c != ONE_CLOUD[case])
    if ONE_CLOUD[case] != "aws":  # nor do its comments and descriptions send the reader to the AWS edge
        assert not [p for p, t in files.items() if "Route 53" in t or "CloudFront" in t]


def test_the_reference_keeps_cloudfront(compiled):
    plan, files = compiled["reference"]
    assert (dns_provider(plan.spec), cdn_provider(plan.spec), edge_cloud(plan.spec)) == ("route53", "cloudfront", "aws")
    assert 'resource "aws_cloudfront_distribution" "this"' in files["terraform/global/cdn.tf"]


@pytest.mark.parametrize("case", CASES)
def test_every_module_a_root_calls_is_generated(compiled, case):
    plan, files = compiled[case]
    dirs = _roots(files)
    calls = 0
    for directory, texts in dirs.items():
        for t in texts:
            for src in re.findall(r'^\s*source\s*=\s*"(\.\./[^"]+)"', t, re.M):
                target = directory
                for part in src.split("/"):
                    target = target.rsplit("/", 1)[0] if part == ".." else f"{target}/{part}"
                assert f"{target}/main.tf" in files, f"{directory} calls {src}, which is not generated"
                calls += 1
    assert calls >= 5


def test_global_root_modules_are_generated_without_a_region_on_the_edge_cloud():
    """An AWS edge over GCP regions alone (aws declared for the edge only): the global root calls
    modules/aws/kms and modules/aws/waf, and exactly those of the aws library are written."""
    spec = yaml.safe_load((REPO / "tests/cases/gcp-only/platform.yaml").read_text())
    spec["clouds"]["aws"] = {"workload_share": 0, "role": "secondary", "account": "123456789012",
                             "registry": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
                             "state": {"bucket": "acme-tf-state", "region": "us-east-1", "lock_table": "acme-tf-locks"}}
    spec["edge"]["cdn"] = {"provider": "cloudfront"}
    from compiler.pipeline import compile_text
    plan = compile_text(yaml.safe_dump(spec), "platform.yaml").plan
    files = terraform.emit_global(plan)
    aws_modules = sorted({p.split("/")[3] for p in files if p.startswith("terraform/modules/aws/")})
    assert aws_modules == ["kms", "waf"]
    assert 'source = "../modules/aws/kms"' in files["terraform/global/main.tf"]
    # the AWS edge's resources carry cloud = aws, not the regions' cloud
    assert re.search(r'\bcloud\s*= "aws"', files["terraform/global/main.tf"])
    assert not re.search(r'\bcloud\s*= "gcp"', files["terraform/global/main.tf"])
    # the GCP regions write into Route 53 with the aws provider pinned to the declared account
    region = terraform.emit_region(plan, plan.regions[0])
    providers = region[f"terraform/regions/{plan.regions[0].name}/providers.tf"]
    assert 'provider "aws"' in providers and '"123456789012"' in providers


@pytest.mark.parametrize("case", CASES)
def test_region_roots_pin_every_provider_to_a_declared_account(compiled, case):
    plan, files = compiled[case]
    key = {"aws": r'allowed_account_ids\s*=\s*\["([^"]+)"\]', "google": r'project\s*=\s*"([^"]+)"',
           "azurerm": r'subscription_id\s*=\s*"([^"]+)"'}
    cloud_of = {v: k for k, v in PROVIDER.items()}
    for r in plan.regions:
        text = files[f"terraform/regions/{r.name}/providers.tf"]
        blocks = re.findall(r'^provider "(\w+)" \{(.*?)^\}', text, re.M | re.S)
        assert blocks
        for name, body in blocks:
            cloud = cloud_of[name]
            assert cloud in plan.spec.clouds, f"{r.name} configures {name}, but the spec declares no {cloud} account"
            m = re.search(key[name], body)
            assert m and m.group(1) == plan.spec.clouds[cloud].account, f"{r.name}: {name} is not pinned to the account"
        versions = files[f"terraform/regions/{r.name}/versions.tf"]
        assert set(re.findall(r'source\s*=\s*"hashicorp/(\w+)"', versions)) == {n for n, _ in blocks}


def test_azure_edge_is_front_door_with_weighted_health_checked_origins(compiled):
    plan, files = compiled["azure-only"]
    cdn, dns = files["terraform/global/cdn.tf"], files["terraform/global/dns.tf"]
    main = files["terraform/global/main.tf"]
    assert 'sku_name                 = "Premium_AzureFrontDoor"' in cdn
    assert "health_probe {" in cdn and "weight                         = each.value.weight" in cdn
    from compiler.ir.names import CLIENT_ADDRESS_HEADER
    assert f'header_name   = "{CLIENT_ADDRESS_HEADER}"' in cdn and 'value         = "{client_ip}"' in cdn
    assert 'resource "azurerm_cdn_frontdoor_firewall_policy" "this"' in cdn and 'mode                = "Prevention"' in cdn
    assert 'resource "azurerm_dns_zone" "public"' in dns
    for r in plan.regions:  # weights follow the traffic shares
        assert re.search(rf'\b{r.name} = \{{\s*hostname = "{r.name}\.{re.escape(plan.spec.organization.domain)}"\s*'
                         rf'weight\s*= {int(r.traffic_share)}\n', main), r.name


def test_gcp_edge_is_cloud_cdn_behind_the_global_load_balancer(compiled):
    plan, files = compiled["gcp-only"]
    cdn, dns, main = files["terraform/global/cdn.tf"], files["terraform/global/dns.tf"], files["terraform/global/main.tf"]
    from compiler.ir.names import CLIENT_ADDRESS_HEADER
    assert "enable_cdn             = true" in cdn and 'load_balancing_scheme  = "EXTERNAL_MANAGED"' in cdn
    assert f'custom_request_headers = ["{CLIENT_ADDRESS_HEADER}: {{client_ip_address}}"]' in cdn
    assert "security_policy        = module.waf.policy_id" in cdn and 'source = "../modules/gcp/waf"' in main
    assert 'min_tls_version = local.minimum_tls_version' in cdn and re.search(r'minimum_tls_version\s*= "TLS_1_3"', main)
    assert "include_http_headers = [local.cache_key_header]" in cdn
    assert "routing_policy {" in dns and "health_checked_targets {" in dns and "source_regions      = local." in dns
    assert "google_compute_project_cloud_armor_tier" not in cdn  # ddos_protection defaults to off


def test_ddos_protection_is_off_by_default_and_priced_when_on(compiled):
    from compiler.model.platform import Edge
    assert Edge().ddos_protection is False
    plan, files = compiled["two-region"]
    assert re.search(r"ddos_protection\s*=\s*false", files["terraform/global/main.tf"])
    plan, files = compiled["reference"]  # the reference asks for Shield Advanced explicitly
    assert re.search(r"ddos_protection\s*=\s*true", files["terraform/global/main.tf"])
    from compiler.cost import estimate  # noqa: F401 (the catalogue counts the subscription: see test_cost)


@pytest.mark.parametrize("case", CASES)
def test_no_unresolved_default_reaches_a_file(compiled, case):
    """A provider left out of the spec is resolved before rendering: no Python `None` in any Terraform file
    (the quoted HCL value "None", Azure's disk caching mode, is not one)."""
    plan, files = compiled[case]
    assert not [p for p, t in files.items() if re.search(r'(?<!")\bNone\b(?!")', t)]


def _hcl(text: str) -> dict:
    import hcl2
    return hcl2.loads(text)


def _blocks(doc: dict, kind: str, type_: str) -> list[dict]:
    from tests.targets.hcl_support import resources
    assert kind == "resource"
    return list(resources(doc, type_).values())


@pytest.mark.parametrize("case", CASES)
def test_every_hop_in_front_of_kong_waits_longer_than_kong(compiled, case):
    """Kong waits gateway.read_timeout_ms for an upstream; the CDN in front of the regions and the regions' own load
    balancers must wait longer, or they cut the request off while Kong still waits (CloudFront's default 30 s cut the
    reference's 60 s off at half, and CloudFront retries). CloudFront cannot wait more than 60 s without a quota
    increase: there the wait is 60 s and the file says what that costs."""
    import math
    plan, files = compiled[case]
    kong_wait = {r.name: math.ceil(r.settings.gateway.read_timeout_ms / 1000) for r in plan.regions}
    cdn = files["terraform/global/cdn.tf"]
    doc = _hcl(cdn)
    provider = cdn_provider(plan.spec)
    if provider == "cloudfront":
        (dist,) = _blocks(doc, "resource", "aws_cloudfront_distribution")
        waits = [o["custom_origin_config"][0]["origin_read_timeout"] for o in dist["origin"]]
        assert len(waits) == len(dist["origin"]) > 0
        want = max(kong_wait.values()) + 1
        assert set(waits) == {min(want, 60)}
        assert ("capped at 60 s" in cdn) == (want > 60)
    elif provider == "front_door":
        (profile,) = _blocks(doc, "resource", "azurerm_cdn_frontdoor_profile")
        assert profile["response_timeout_seconds"] > max(kong_wait.values())
    else:
        services = _blocks(doc, "resource", "google_compute_backend_service")
        assert services and all(s["timeout_sec"] > max(kong_wait.values()) for s in services)
    for r in plan.regions:
        root = _hcl(files[f"terraform/regions/{r.name}/main.tf"])
        (lb,) = [body for m in root["module"] for label, body in m.items() if label.strip('"') == "load_balancer"]
        assert lb["response_timeout_seconds"] > kong_wait[r.name]
        module = files[f"terraform/modules/{r.cloud}/load_balancer/main.tf"]
        # AWS: the public ALB's idle timeout (a request waiting on Kong sends nothing; 60 s by default)
        setting = {"gcp": "timeout_sec", "azure": "request_timeout", "aws": "idle_timeout"}[r.cloud]
        assert re.search(rf"^\s*{setting}\s*=\s*var\.response_timeout_seconds$", module, re.M), module


@pytest.mark.parametrize("read_ms, want", [(10_000, 16), (60_000, 61), (600_000, 240)])
def test_front_doors_wait_stays_in_the_range_azurerm_accepts(tmp_path, read_ms, want):
    """azurerm validates response_timeout_seconds as 16-240: a 10 s Kong gave 11 and failed at plan (review
    finding); Front Door waits at least 16 s and at most 240."""
    spec = yaml.safe_load((REPO / "tests/cases/azure-only/platform.yaml").read_text())
    spec.setdefault("settings", {}).setdefault("gateway", {})["read_timeout_ms"] = read_ms
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    plan = compile_file(str(path)).plan
    (profile,) = _blocks(_hcl(_tree(plan)["terraform/global/cdn.tf"]), "resource", "azurerm_cdn_frontdoor_profile")
    assert profile["response_timeout_seconds"] == want


def test_a_shorter_kong_wait_lowers_cloudfronts_below_the_cap(tmp_path):
    spec = yaml.safe_load((REPO / "platform.yaml").read_text())
    spec["settings"]["gateway"]["read_timeout_ms"] = 29500
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    plan = compile_file(str(path)).plan
    cdn = _tree(plan)["terraform/global/cdn.tf"]
    (dist,) = _blocks(_hcl(cdn), "resource", "aws_cloudfront_distribution")
    assert {o["custom_origin_config"][0]["origin_read_timeout"] for o in dist["origin"]} == {31}
    assert "capped at" not in cdn
