"""A new DR pair's first Ansible run: each region's PostgreSQL reads its DR-linked regions' internal CA (standby
clusters, split-brain fence), which only their pgbouncer play publishes, and site.yml runs postgresql.yml before
pgbouncer.yml; the docs therefore run pgbouncer.yml in those regions first, naming them from the IR."""

from __future__ import annotations

import re

import yaml

from compiler.ir.data_access import ca_sources, published_ca_ref
from tests.conftest import REPO

ANSIBLE = REPO / "generated/ansible"
VAULT_CA = re.compile(r"vault_read'', ''secret/data/platform/internal-ca/([a-z0-9-]+)''")


def _group_vars_cas(region: str, stem: str) -> set[str]:
    text = (ANSIBLE / f"inventories/{region}/group_vars/{stem}.yml").read_text()
    return set(VAULT_CA.findall(text))


def test_ca_sources_are_exactly_the_other_regions_cas_the_inventory_reads(reference):
    for r in reference.regions:
        read = _group_vars_cas(r.name, "postgres") - {r.name}
        assert set(ca_sources(reference, r)) == read, r.name
    ap = reference.region("ap-southeast-1")
    assert ca_sources(reference, ap) == ["ap-northeast-1", "ap-south-1", "ap-southeast-2"]


def test_the_pgbouncer_play_reads_no_other_regions_ca_and_site_runs_it_after_postgresql(reference):
    for r in reference.regions:
        if published_ca_ref(r):
            assert _group_vars_cas(r.name, "pgbouncer") <= {r.name}, r.name  # it can go first in a new pair
    site = [p["ansible.builtin.import_playbook"] for p in yaml.safe_load((ANSIBLE / "site.yml").read_text())]
    assert site.index("postgresql.yml") < site.index("pgbouncer.yml")  # why site.yml alone cannot go first
    pgbouncer = yaml.safe_load((ANSIBLE / "pgbouncer.yml").read_text())
    assert [p["hosts"] for p in pgbouncer] == ["pgbouncer"]


def test_each_region_page_runs_the_sources_pgbouncer_play_before_its_site_yml(reference):
    for r in reference.regions:
        page = (REPO / f"docs/regions/{r.name}.md").read_text()
        block = page[page.index("Configure the region"):page.index("One concern at a time")]
        commands = re.findall(r"^ansible-playbook -i inventories/(\S+) (\S+)", block, re.M)
        sources = ca_sources(reference, r)
        assert commands[:len(sources)] == [(s, "pgbouncer.yml") for s in sources], r.name
        assert commands[len(sources):] == [(r.name, "site.yml")] * 2, r.name
        if sources:
            assert f"({', '.join(sources)}:" in block


def test_the_readme_no_longer_offers_the_partners_site_yml():
    readme = (ANSIBLE / "README.md").read_text()
    assert "(or `site.yml`)" not in readme
    assert ("run `pgbouncer.yml` (which needs nothing of the other regions) in each region whose CA this one reads, "
            "then this\n  region's `site.yml`") in readme
