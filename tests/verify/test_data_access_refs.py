"""verify: every Secret and ConfigMap a pod references resolves, key by key: the data tier's settings ConfigMap
and the passwords' Secret (envFrom) of each service, and each secretKeyRef's key in its ExternalSecret."""

from __future__ import annotations

import yaml

from compiler.pipeline import compile_file
from tests.conftest import REPO
from tests.verify.test_cluster import AWS, K8S, _broken, _edit, reference_tree, tree  # noqa: F401


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def test_each_service_reads_its_settings_and_passwords(reference_tree):
    region = compile_file(str(REPO / "platform.yaml")).plan.region(AWS)
    for a in region.data_access:
        docs = _docs(reference_tree / K8S / f"{a.service}.yaml")
        (cm,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == a.name]
        assert cm["data"] == dict(a.settings)
        for dep in (d for d in docs if d["kind"] == "Deployment"):
            (ctr,) = dep["spec"]["template"]["spec"]["containers"]
            want = [{"configMapRef": {"name": a.name}}] + ([{"secretRef": {"name": a.name}}] if a.secrets else [])
            assert ctr["envFrom"] == want, dep["metadata"]["name"]
        if a.secrets:
            charts = reference_tree / f"helm/{AWS}/charts/secrets-{a.namespace}/templates"
            es = [d for f in charts.glob("*.yaml") for d in _docs(f)
                  if d["kind"] == "ExternalSecret" and d["spec"]["target"]["name"] == a.name]
            assert len(es) == 1
            assert {x["secretKey"] for x in es[0]["spec"]["data"]} == {k for k, _ in a.secrets}


def test_reference_objects_resolve(tree):
    assert [b for b in _broken(tree, "objects")] == []


def test_a_key_the_external_secret_does_not_fill(tree):
    f = tree / K8S / "payment.yaml"
    line = _edit(f, ["kind: Deployment", "secretKeyRef:"], "key: STRIPE_API_KEY", "key: STRIPE_KEY")
    broken = [b for b in _broken(tree, "objects") if b.connection == "Deployment payment/payment"]
    assert [(b.file, b.line) for b in broken] == [(f"{K8S}/payment.yaml", line - 1)]  # the secretKeyRef (name: first)
    assert "key STRIPE_KEY is not in Secret payment/payment" in broken[0].message


def test_a_settings_config_map_nobody_creates(tree):
    f = tree / K8S / "booking.yaml"
    _edit(f, ["kind: ConfigMap", "metadata:"], "name: booking-datastores", "name: booking-settings")
    broken = [b for b in _broken(tree, "objects") if b.connection.startswith("Deployment booking/")]
    assert broken and all("ConfigMap booking/booking-datastores is neither" in b.message for b in broken)


def test_a_passwords_secret_nobody_creates(tree):
    chart = tree / f"helm/{AWS}/charts/secrets-booking/templates/external-secrets.yaml"
    docs = [d for d in yaml.safe_load_all(chart.read_text()) if d and d["metadata"]["name"] != "booking-datastores"]
    chart.write_text(yaml.safe_dump_all(docs))
    broken = [b for b in _broken(tree, "objects") if b.connection.startswith("Deployment booking/")]
    assert broken and all("Secret booking/booking-datastores is neither" in b.message for b in broken)
