"""platformc verify proves the edge -> home origin path of home-region routing (CloudFront): every region's
connections list `cdn-home->load-balancer` to the region's own name, and verify checks the distribution's origin
(its id, HTTPS only, TLS against the region's listener), the viewer-request function selecting it, and the
load balancer admitting CloudFront. Breakages are named at their file and line."""

from __future__ import annotations

import json

from compiler.verify import verify
from tests.verify.test_infra import _edit, _hits, _line, _mine, reference_tree, tree  # noqa: F401 (fixtures)

CONNECTION = "cdn-home->load-balancer:443/tcp"
DOMAIN = "6fb.example.com"


def test_every_region_lists_and_proves_its_home_origin(reference_tree):  # noqa: F811
    regions = sorted(p.stem for p in (reference_tree / "connections").glob("*.json"))
    assert len(regions) == 12
    for region in regions:
        rows = json.loads((reference_tree / f"connections/{region}.json").read_text())["connections"]
        home = [r for r in rows if r.get("id") == CONNECTION]
        assert len(home) == 1, region
        assert home[0]["address"] == f"{region}.{DOMAIN}" and set(home[0]["layers"]) == {"cdn", "cloud-firewall"}
    report = verify(reference_tree)
    assert not _mine(report)


def test_a_missing_home_origin_is_named(tree):  # noqa: F811
    rel = "terraform/global/cdn.tf"
    path = tree / rel
    _edit(path, 'domain_name = "eu-west-2.${local.domain}"', 'domain_name = "eu-west-2-old.${local.domain}"')
    hits = _hits(verify(tree), rel, "cdn")
    assert [(b.connection, b.message) for b in hits] == [(CONNECTION, f"no CloudFront origin is eu-west-2.{DOMAIN}")]


def test_a_home_origin_the_function_does_not_select_is_named(tree):  # noqa: F811
    rel = "terraform/global/cdn.tf"
    path = tree / rel
    _edit(path, 'origin_id   = "home-ap-south-1"', 'origin_id   = "ap-south-1"')
    hits = _hits(verify(tree), rel, "cdn")
    assert [(b.line, b.connection) for b in hits] == [(_line(path, 'origin_id   = "ap-south-1"'), CONNECTION)]
    _edit(path, 'origin_id   = "ap-south-1"', 'origin_id   = "home-ap-south-1"')
    _edit(path, '"ap-south-1",', "")
    hits = _hits(verify(tree), rel, "cdn")
    assert [(b.line, b.connection) for b in hits] == [(_line(path, "code = <<-EOT"), CONNECTION)]
    assert "does not select home-ap-south-1" in hits[0].message
