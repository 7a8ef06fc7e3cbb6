"""verify: a pod that reaches the region's self-managed Elasticsearch has a user the elasticsearch role creates,
the password that user is given (the ExternalSecret reads the entry Ansible sets), a role that covers the index
prefix it is told to use, and the internal CA mounted where ELASTICSEARCH_CA_CERT points. Each test breaks one
generated file the way a hand edit or an emitter mistake would."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from compiler.verify import verify
from tests.conftest import REPO
from tests.verify.test_cluster import AWS, K8S, _edit

INVENTORY = f"ansible/inventories/{AWS}/group_vars/elasticsearch.yml"
CHART = f"helm/{AWS}/charts/secrets-location/templates/external-secrets.yaml"
SUBJECT = "Deployment location/location"


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory) -> Path:
    from compiler import writer
    from compiler.emit import emit
    from compiler.pipeline import compile_file
    plan = compile_file(str(REPO / "platform.yaml")).plan
    outputs, _ = emit(plan, ["connections", "kubernetes", "kong", "helm", "ansible"], with_docs=False)
    out = tmp_path_factory.mktemp("verify-es-ref")
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


@pytest.fixture
def tree(reference_tree, tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr("compiler.verify.CHECKERS", ("compiler.verify.cluster",))
    dst = tmp_path / "gen"
    shutil.copytree(reference_tree, dst)
    return dst


def _es_broken(root: Path) -> list:
    return [b for b in verify(root, [AWS]).broken if b.layer == "objects" and "Elasticsearch" in b.message]


def test_the_reference_resolves(tree):
    assert _es_broken(tree) == []
    # and the check ran: every service that uses elasticsearch was looked at
    report = verify(tree, [AWS])
    assert not [b for b in report.broken if b.layer == "objects"]


def test_a_pod_that_reaches_elasticsearch_without_a_user(tree):
    """What the tree looked like before each service had its user: only the URLs."""
    f = tree / K8S / "location.yaml"
    _edit(f, ["kind: ConfigMap", "data:"], "ELASTICSEARCH_USERNAME: location", "ELASTICSEARCH_USER: location")
    broken = [b for b in _es_broken(tree) if b.connection == SUBJECT]
    assert broken and all(b.file == f"{K8S}/location.yaml" and b.line > 0 for b in broken)
    assert any("no ELASTICSEARCH_USERNAME" in b.message for b in broken), [b.message for b in broken]


def test_a_user_the_elasticsearch_role_does_not_create(tree):
    f = tree / INVENTORY
    gv = yaml.safe_load(f.read_text())
    gv["elasticsearch_clients"] = [c for c in gv["elasticsearch_clients"] if c["name"] != "location"]
    f.write_text(yaml.safe_dump(gv, sort_keys=False))
    broken = [b for b in _es_broken(tree) if b.connection == SUBJECT]
    assert len(broken) == 1, broken
    assert "user location" in broken[0].message and INVENTORY in broken[0].message
    assert not [b for b in _es_broken(tree) if b.connection == "Deployment analytics/analytics"]


def test_a_password_the_external_secret_does_not_deliver(tree):
    f = tree / CHART
    docs = list(yaml.safe_load_all(f.read_text()))
    for d in docs:
        if d and d["metadata"]["name"] == "location-datastores":
            d["spec"]["data"] = [x for x in d["spec"]["data"] if x["secretKey"] != "ELASTICSEARCH_PASSWORD"]
    f.write_text(yaml.safe_dump_all(docs))
    broken = [b for b in _es_broken(tree) if b.connection == SUBJECT]
    assert len(broken) == 1 and "ELASTICSEARCH_PASSWORD" in broken[0].message, broken


def test_a_password_from_another_entry_than_the_user_is_given(tree):
    f = tree / CHART
    docs = list(yaml.safe_load_all(f.read_text()))
    for d in docs:
        if d and d["metadata"]["name"] == "location-datastores":
            for x in d["spec"]["data"]:
                if x["secretKey"] == "ELASTICSEARCH_PASSWORD":
                    x["remoteRef"]["property"] = "analytics_password"
    f.write_text(yaml.safe_dump_all(docs))
    broken = [b for b in _es_broken(tree) if b.connection == SUBJECT]
    assert len(broken) == 1, broken
    assert "analytics_password" in broken[0].message and "location_password" in broken[0].message


def test_a_role_that_does_not_cover_the_prefix(tree):
    f = tree / INVENTORY
    _edit(f, ["- name: location", "definition:", "indices:", "- names:"], "location_*", "locations_*")
    broken = [b for b in _es_broken(tree) if b.connection == SUBJECT]
    assert len(broken) == 2, broken  # the prefix is not covered; the digest no longer matches the definition
    assert {b.file for b in broken} == {INVENTORY}
    assert any("location_" in b.message and "cover" in b.message for b in broken)
    assert any("platformc_digest" in b.message for b in broken)


def test_a_ca_that_is_not_mounted_where_the_client_reads_it(tree):
    f = tree / K8S / "location.yaml"
    _edit(f, ["kind: ConfigMap", "data:"], "ELASTICSEARCH_CA_CERT: /etc/platformc/internal-ca/ca.crt",
          "ELASTICSEARCH_CA_CERT: /etc/platformc/es-ca/ca.crt")
    broken = [b for b in _es_broken(tree) if b.connection == SUBJECT]
    assert broken and all("ELASTICSEARCH_CA_CERT" in b.message for b in broken), broken
