"""platformc verify proves the edge -> home origin path of home-region routing at the Front Door and Cloud CDN edges
(compiler/targets/terraform/edge_rules.py): every region's connections list `cdn-home->load-balancer` to the region's
own name, and verify checks the home origin group / backend service (its origin at that name, HTTPS, the certificate
name check or Cloud Armor policy), and the rule / route rule sending the region's franchise ids to it. Breakages are
named at their file and line."""

from __future__ import annotations

import json

import pytest

from compiler.verify import verify
from tests.verify.test_infra import _edit, _hits, _line, _mine, azure_tree, edge_trees, gcp_tree  # noqa: F401 (fixtures)

CONNECTION = "cdn-home->load-balancer:443/tcp"
CDN = "terraform/global/cdn.tf"


@pytest.mark.parametrize("case", ["azure-only", "gcp-only"])
def test_every_region_lists_and_proves_its_home_origin(edge_trees, case):  # noqa: F811
    tree = edge_trees[case]
    regions = sorted(p.stem for p in (tree / "connections").glob("*.json"))
    assert len(regions) == 2
    for region in regions:
        rows = json.loads((tree / f"connections/{region}.json").read_text())["connections"]
        home = [r for r in rows if r.get("id") == CONNECTION]
        assert len(home) == 1, region
        assert home[0]["address"] == f"{region}.acme.example.org" and set(home[0]["layers"]) == {"cdn", "cloud-firewall"}
    report = verify(tree)
    assert not _mine(report), "\n".join(b.format() for b in _mine(report))


def test_front_door_without_a_regions_home_rule_is_named(azure_tree):  # noqa: F811
    path = azure_tree / CDN
    _edit(path, 'azurerm_cdn_frontdoor_origin_group.home[local.serving["weu"]].id',
          "azurerm_cdn_frontdoor_origin_group.regions.id")
    hits = _hits(verify(azure_tree), CDN, "cdn")
    assert [(b.connection, b.line) for b in hits] == [(CONNECTION, _line(path, "cdn_frontdoor_rule_set_ids"))]
    assert "no rule of the route's rule sets sends weu's franchises to home-weu" in hits[0].message


def test_front_door_home_rule_without_an_id_condition_is_named(azure_tree):  # noqa: F811
    path = azure_tree / CDN
    start = _line(path, 'resource "azurerm_cdn_frontdoor_rule" "homeeus2"')
    _edit(path, 'operator     = "RegEx"', 'operator     = "Any"', 2)
    hits = _hits(verify(azure_tree), CDN, "cdn")
    assert [(b.connection, b.line) for b in hits] == [(CONNECTION, start)]
    assert "matches no franchise id header" in hits[0].message


def test_front_door_home_origin_without_name_check_is_named(azure_tree):  # noqa: F811
    path = azure_tree / CDN
    start = _line(path, 'resource "azurerm_cdn_frontdoor_origin" "home"')
    _edit(path, "certificate_name_check_enabled = true", "certificate_name_check_enabled = false", 2)
    _edit(path, "certificate_name_check_enabled = false", "certificate_name_check_enabled = true", 1)  # the weighted one
    hits = _hits(verify(azure_tree), CDN, "cdn")
    line = _line(path, "certificate_name_check_enabled = false", start)
    assert sorted((b.connection, b.line) for b in hits) == [(CONNECTION, line)] * 2  # both regions


def test_cloud_cdn_without_a_regions_route_rule_is_named(gcp_tree):  # noqa: F811
    path = gcp_tree / CDN
    _edit(path, 'google_compute_backend_service.home[local.serving["euw1"]].id', "google_compute_backend_service.edge.id")
    hits = _hits(verify(gcp_tree), CDN, "cdn")
    assert [(b.connection, b.line) for b in hits] == [(CONNECTION, _line(path, 'resource "google_compute_url_map" "edge"'))]
    assert "no route rule of the URL map sends euw1's franchises to home-euw1" in hits[0].message


def test_cloud_cdn_home_backend_at_another_name_is_named(gcp_tree):  # noqa: F811
    path = gcp_tree / CDN
    start = _line(path, 'resource "google_compute_global_network_endpoint" "home"')
    _edit(path, '  fqdn                          = each.value.hostname', '  fqdn                          = "origin.${local.domain}"')
    hits = _hits(verify(gcp_tree), CDN, "cdn")
    assert sorted((b.connection, b.line) for b in hits) == [(CONNECTION, start)] * 2
    assert all("no backend service home-<region> reaches" in b.message for b in hits)
