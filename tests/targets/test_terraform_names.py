"""Values the clouds' APIs check at apply (or the providers at plan, once a module's inputs are known) although no
schema or `terraform validate` does: names, lengths, counts. Each from a review of the GCP and Azure roots."""

from __future__ import annotations

import re

import hcl2

from compiler.ir.identity import gcp_account_id
from compiler.pipeline import compile_file, compile_text
from compiler.targets.terraform import gcp, values
from compiler.ir.names import cloud_dns_zone_name
from tests.conftest import REPO

GCP_SA_ID = re.compile(r"^[a-z]([-a-z0-9]{4,28}[a-z0-9])$")  # the provider's ValidateRFC1035Name(6, 30)


def test_gcp_service_account_ids_fit_for_a_long_organization_name():
    """`${var.name}-nodes` was 26 characters for the reference and 34 for an organization of 13 letters: the
    provider refused it at plan. The ids are computed (hashed past 30), the reference's unchanged."""
    text = (REPO / "tests/cases/gcp-only/platform.yaml").read_text()
    org = re.search(r"^  name: (\S+)", text, re.M)[1]
    long = text.replace(f"  name: {org}\n", "  name: franchiseplatformco\n", 1)
    for spec in (text, long):
        plan = compile_text(spec, "platform.yaml").plan
        for r in plan.regions:
            a = gcp.args(plan, r)
            ids = [a["kubernetes"]["node_service_account_id"], a["data_hosts"]["service_account_id"]]
            assert all(GCP_SA_ID.match(i) for i in ids), ids
    reference = compile_file(str(REPO / "platform.yaml")).plan
    r = next(r for r in reference.regions if r.cloud == "gcp")
    assert gcp.args(reference, r)["kubernetes"]["node_service_account_id"] == f"sixfb-{r.name}-nodes"
    assert gcp_account_id("a" * 40 + "-b", "nodes").startswith("a" * 23)


def test_gcp_names_the_api_checks():
    """Cloud DNS zone names start with a letter (the reference's own 6fb.example.com did not) and, as Certificate
    Manager DNS authorizations, stay within 63 characters."""
    assert cloud_dns_zone_name("acme.example.org") == "acme-example-org"  # unchanged where it was valid
    assert cloud_dns_zone_name("6fb.example.com") == "zone-6fb-example-com"
    long = cloud_dns_zone_name("a" * 40 + "." + "b" * 40 + ".com")
    assert len(long) <= 63 and re.fullmatch(r"[a-z][-a-z0-9]*[a-z0-9]", long)
    name = gcp.dns_authorization_name("sixfbfranchise-ap-southeast-1", "ap-southeast-1.franchise-platform.6fb-example.com")
    assert len(name) <= 63 and re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_-]*", name), name
    assert gcp.dns_authorization_name("sixfb-ap-southeast-1", "api.6fb.example.com") == "sixfb-ap-southeast-1-api-6fb-example-com"


def test_cloud_armor_geo_rules_have_five_subexpressions_at_most():
    """Cloud Armor takes at most five subexpressions in one rule: one rule per five countries, priorities 100-149."""
    text = (REPO / "generated/terraform/modules/gcp/waf/main.tf").read_text()
    assert "chunklist(var.blocked_countries, 5)" in text and "priority    = 100 + rule.key" in text
    doc = hcl2.loads(text)
    (policy,) = [b['"this"'] if '"this"' in b else b["this"] for entry in doc["resource"]
                 for t, b in entry.items() if t.strip('"') == "google_compute_security_policy"]
    priorities = [r.get("priority") for r in policy.get("rule", [])]
    assert priorities, policy.keys()
    assert all(not (100 <= p < 150) for p in priorities if isinstance(p, int)), priorities  # free for the geo rules


def test_azure_rule_descriptions_fit_the_140_characters_azurerm_accepts():
    """azurerm's network_security_rule description is StringLenBetween(0, 140); the descriptions were cut at EC2's 255."""
    assert values.RULE_DESCRIPTION_MAX["azure"] == 140
    plan = compile_file(str(REPO / "tests/cases/azure-only/platform.yaml")).plan
    for r in plan.regions:
        for rules in values.ingress_rules(r).values():
            assert all(len(rule["description"]) <= 140 for rule in rules)


def test_gcp_service_account_ids_of_a_short_region_and_service_are_six_characters_at_least():
    """A region `us` and a service `or` with a cloud identity (it uses object storage) made the id `us-or`, five
    characters: the provider's ValidateRFC1035Name(6, 30) refused it at plan. Short ids are hashed to fit like long
    ones; every id of six or more is unchanged."""
    text = (REPO / "tests/cases/gcp-only/platform.yaml").read_text()
    short = (re.sub(r"(?m)^  usc1:$", "  us:", text).replace("dr_partner: usc1", "dr_partner: us")
             .replace("    orders:\n", "    or:\n", 1).replace("depends_on: [orders]", "depends_on: [or]")
             .replace("uses: [postgres, redis]", "uses: [postgres, redis, object-storage]"))
    plan = compile_text(short, "platform.yaml").plan
    ids = {i.owner: i.name for i in plan.region("us").identities if i.mechanism}
    assert set(ids) == {"or", "external-secrets"} and ids["external-secrets"] == "us-external-secrets"
    assert all(GCP_SA_ID.match(i) for i in ids.values()), ids
    assert ids["or"].startswith("us-or-") and ids["or"] != gcp_account_id("us", "on")
    assert gcp_account_id("euw1", "web") == "euw1-web" and gcp_account_id("eu", "web") == "eu-web"  # six: as before
