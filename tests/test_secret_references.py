"""The region page's Secret references: every secret reference the region's generated files read (Ansible's
group_vars, the ExternalSecrets, decK's inputs), each with the first bring-up step that reads it. Checked against the
generated files themselves, read back from every golden tree, and against every `vault:` reference in the specs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

GOLDEN = REPO / "tests/golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "docs/regions").is_dir())
LOOKUP = re.compile(r"vault_read'', ''([^']+)''\)\.data\.data\[''([^']+)''\]")
DECK = re.compile(r"^#   (DECK_\w+) <- (\S+)$", re.M)
ROW = re.compile(r"^\| `([^`]+)` \| ([^|]+) \| ([^|]+) \| ([^|]+) \|$", re.M)


def _groups_with_hosts(inventory: Path) -> set[str]:
    found = set()

    def walk(name, node):
        node = node or {}
        if node.get("hosts"):
            found.add(name)
        for child, sub in (node.get("children") or {}).items():
            before = len(found)
            walk(child, sub)
            if len(found) > before or child in found:
                found.add(name)
    walk("all", yaml.safe_load((inventory / "hosts.yml").read_text())["all"])
    return found


def read_by_ansible(tree: Path, region: str) -> set[str]:
    inv = tree / f"ansible/inventories/{region}"
    if not inv.is_dir():
        return set()
    groups = _groups_with_hosts(inv)
    out = set()
    for f in (inv / "group_vars").glob("*.yml"):
        if f.stem in groups and f.stem != "all":
            out |= {f"vault:{path}#{field}" for path, field in LOOKUP.findall(f.read_text())}
    return out


def read_by_external_secrets(tree: Path, region: str) -> set[str]:
    out = set()
    for f in (tree / f"helm/{region}/charts").glob("*/templates/*.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            if doc and doc["kind"] == "ExternalSecret":
                store = doc["spec"]["secretStoreRef"]["name"]
                out |= {f"vault:{i['remoteRef']['key']}#{i['remoteRef']['property']}" for i in doc["spec"]["data"]
                        if i.get("sourceRef", {}).get("storeRef", {}).get("name", store) == "vault"}
    return out


def read_by_deck(tree: Path, region: str) -> set[str]:
    f = tree / f"kong/{region}/kong.yaml"
    return {ref for _, ref in DECK.findall(f.read_text()) if ref.startswith("vault:")} if f.is_file() else set()


def table(page: str) -> dict[str, tuple[str, str, str]]:
    section = page[page.index("## Secret references"):]
    section = section[:section.index("\n## ", 3)]
    return {ref: (first.strip(), readers.strip(), writer.strip()) for ref, first, readers, writer in ROW.findall(section)}


@pytest.mark.parametrize("case", CASES)
def test_every_reference_the_region_reads_is_listed_with_its_first_step(case):
    tree = GOLDEN / case / "generated"
    checked = 0
    for page_path in sorted((GOLDEN / case / "docs/regions").glob("*.md")):
        region = page_path.stem
        rows = table(page_path.read_text())
        ansible, eso, deck = (read_by_ansible(tree, region), read_by_external_secrets(tree, region),
                              read_by_deck(tree, region))
        listed = {ref for ref in rows if ref.startswith("vault:")}
        assert ansible | eso | deck == listed, (case, region, (ansible | eso | deck) ^ listed)
        for ref in ansible:
            assert rows[ref][0] == "the first Ansible run", (case, region, ref)
        for ref in deck - ansible:
            assert rows[ref][0].startswith("`deck file render`"), (case, region, ref)
        for ref in eso - ansible - deck:
            assert rows[ref][0] == "`helmfile apply`", (case, region, ref)
        for ref, (_, _, writer) in rows.items():
            ca = re.fullmatch(r"vault:secret/data/platform/internal-ca/([a-z0-9-]+)#ca_crt", ref)
            if ca:
                owner = "this region's" if ca[1] == region else f"{ca[1]}'s"
                assert writer == f"{owner} `pgbouncer.yml` (it publishes the CA)", (case, region, ref)
        checked += len(listed)
    assert checked or case not in ("reference", "two-region")


def test_the_reference_region_page_lists_what_ansible_reads_before_the_first_run():
    """The review's case: eu-west-1's Ansible reads the PostgreSQL admin and replication passwords, PgBouncer's
    auth_password and Redis's password; the page once listed them nowhere, and its other entries "before helmfile"."""
    rows = table((REPO / "docs/regions/eu-west-1.md").read_text())
    for ref in ("vault:secret/data/platform/postgres#admin_password",
                "vault:secret/data/platform/postgres#replication_password",
                "vault:secret/data/platform/pgbouncer#auth_password", "vault:secret/data/platform/redis#app_password",
                "vault:secret/data/platform/internal-ca/eu-central-1#ca_crt"):
        assert rows[ref][0] == "the first Ansible run", ref


@pytest.mark.parametrize("case", CASES)
def test_every_vault_reference_in_the_spec_is_on_a_region_page(case):
    spec = (REPO / "tests/cases" / case / "platform.yaml").read_text()
    refs = set(re.findall(r"vault:[A-Za-z0-9_./#@:+=-]+", spec))
    pages = "".join(p.read_text() for p in (GOLDEN / case / "docs/regions").glob("*.md"))
    for ref in refs:
        assert f"`{ref}`" in pages or f"`{ref}#" in pages, (case, ref)
