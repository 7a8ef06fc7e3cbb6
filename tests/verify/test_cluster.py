"""platformc verify's cluster checker: Service resolution, Kong targets, NetworkPolicies, ServiceEntries,
Prometheus scrape jobs and object references. The reference is generated once; each test copies it, breaks one
generated file the way a hand edit or a template mistake would, and expects verify to name that file and line
with the layer."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from compiler.verify import verify
from compiler.verify import cluster
from tests.conftest import REPO

LAYERS = set(cluster.LAYERS)
AWS = "us-east-1"
K8S = f"kubernetes/{AWS}"


def _generate(spec: Path, out: Path) -> Path:
    from compiler import writer
    from compiler.emit import emit
    from compiler.pipeline import compile_file
    plan = compile_file(str(spec)).plan
    outputs, _ = emit(plan, ["connections", "kubernetes", "kong", "helm"], with_docs=False)
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory) -> Path:
    return _generate(REPO / "platform.yaml", tmp_path_factory.mktemp("verify-cluster-ref"))


@pytest.fixture
def tree(reference_tree, tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr("compiler.verify.CHECKERS", ("compiler.verify.cluster",))
    dst = tmp_path / "gen"
    shutil.copytree(reference_tree, dst)
    return dst


def _edit(path: Path, anchors: list[str], old: str, new: str) -> int:
    """Replace `old` by `new` on the first line containing it after each anchor in turn; its line number."""
    lines = path.read_text().splitlines(keepends=True)
    i = 0
    for a in anchors:
        while not _is(lines[i], a):
            i += 1
        i += 1
    while old not in lines[i]:
        i += 1
    lines[i] = lines[i].replace(old, new, 1)
    path.write_text("".join(lines))
    return i + 1


def _line(path: Path, anchors: list[str]) -> int:
    lines = path.read_text().splitlines()
    i = 0
    for a in anchors:
        while not _is(lines[i], a):
            i += 1
        i += 1
    return i


def _is(line: str, anchor: str) -> bool:
    """A whole YAML line (indentation and a list dash aside)."""
    return line.strip() in (anchor, "- " + anchor)


def _back(path: Path, line: int, anchor: str) -> int:
    lines = path.read_text().splitlines()
    i = line - 1
    while not _is(lines[i], anchor):
        i -= 1
    return i + 1


def _broken(root: Path, layer: str | None = None, region: str = AWS) -> list:
    report = verify(root, [region])
    return [b for b in report.broken if b.layer in LAYERS and (layer is None or b.layer == layer)]


def _missing_secret_links(root: Path) -> set:
    """The Secrets the tree references but neither creates nor has an ExternalSecret for: what the cluster
    checker must report, exactly, until the ExternalSecrets land (computed from the tree independently)."""
    out = set()
    for kdir in sorted((root / "kubernetes").iterdir()):
        docs = [d for f in sorted(kdir.glob("**/*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
        # local Helm charts of plain manifests (the ExternalSecrets' releases) hold objects of the tree too
        charts = [d for f in sorted((root / "helm" / kdir.name).glob("charts/*/templates/*.yaml"))
                  for d in yaml.safe_load_all(f.read_text()) if d]
        docs_all = docs + charts
        have = {(d["metadata"].get("namespace", ""), d["metadata"]["name"]) for d in docs if d["kind"] == "Secret"}
        have |= {(d["metadata"]["namespace"], (d["spec"].get("target") or {}).get("name") or d["metadata"]["name"])
                 for d in docs_all if d["kind"] == "ExternalSecret"}
        for d in docs:
            if d["kind"] != "Deployment":
                continue
            ns = d["metadata"]["namespace"]
            for c in d["spec"]["template"]["spec"]["containers"]:
                refs = [(e.get("valueFrom") or {}).get("secretKeyRef") for e in c.get("env", [])]
                refs += [e.get("secretRef") for e in c.get("envFrom", [])]  # the data tier's passwords
                for ref in refs:
                    if ref and (ns, ref["name"]) not in have:
                        out.add((kdir.name, f"Deployment {ns}/{d['metadata']['name']}", f"Secret {ns}/{ref['name']} "))
        helmfile = yaml.safe_load((root / "helm" / kdir.name / "helmfile.yaml").read_text())
        for rel in helmfile["releases"]:
            ns = rel["namespace"]
            vf = root / "helm" / kdir.name / f"{rel['name']}.values.yaml"
            if not vf.exists():
                continue
            values = yaml.safe_load(vf.read_text())
            have |= {((e.get("metadata") or {}).get("namespace") or ns,
                      (e["spec"].get("target") or {}).get("name") or e["metadata"]["name"]) for e in _walk_kind(values, "ExternalSecret")}
            for n in _values_secret_names(values):
                out.add((kdir.name, f"release {ns}/{rel['name']}", f"Secret {ns}/{n} "))
        out = {o for o in out if (o[2].split()[1].split("/")[0], o[2].split()[1].split("/")[1]) not in have}
    return out


def _walk_kind(node, kind):
    if isinstance(node, dict):
        if node.get("kind") == kind and isinstance(node.get("spec"), dict):
            yield node
        for v in node.values():
            yield from _walk_kind(v, kind)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_kind(v, kind)


def _values_secret_names(node, parent=""):
    """Secret names in Helm values: existingSecret/secretName keys, secretKeyRef/secretRef, alertmanagerSpec.secrets."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("existingSecret", "existingSecretName", "secretName") and isinstance(v, str):
                yield v
            elif k in ("secretKeyRef", "secretRef") and isinstance(v, dict):
                yield v["name"]
            elif k == "secrets" and parent == "alertmanagerSpec":
                yield from v
            else:
                yield from _values_secret_names(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _values_secret_names(v, parent)


# ---------------------------------------------------------------- the unmutated trees

@pytest.mark.parametrize("case", ["reference", "two-region"])
def test_unmutated_tree_breaks_only_missing_secret_links(case, tmp_path, monkeypatch):
    """0 broken in the cluster layers, except the Secrets that nothing creates yet (ExternalSecrets pending):
    those, exactly, are reported (and nothing else)."""
    monkeypatch.setattr("compiler.verify.CHECKERS", ("compiler.verify.cluster",))
    root = _generate(REPO / "tests/cases" / case / "platform.yaml", tmp_path / "gen")
    report = verify(root)
    mine = [b for b in report.broken if b.layer in LAYERS]
    assert {b.layer for b in mine} <= {"objects"}
    got = set()
    for b in mine:
        region = b.file.split("/")[1]
        secret = re.match(r"(Secret \S+ )", b.message).group(1)
        got.add((region, b.connection, secret))
        assert b.line > 0
    assert got == _missing_secret_links(root)
    assert len(got) == len(mine)
    checked = {r for r in ("service", "kong", "networkpolicy-egress", "networkpolicy-ingress", "prometheus")}
    assert checked <= report.layers
    if case == "reference":
        assert "istio" in report.layers  # payment, notification, integration declare Internet egress


def test_verify_is_fast_on_the_reference(reference_tree, monkeypatch):
    import time
    monkeypatch.setattr("compiler.verify.CHECKERS", ("compiler.verify.cluster",))
    start = time.perf_counter()
    verify(reference_tree)
    assert time.perf_counter() - start < 3.0  # ~0.3 s on an idle machine; generous for busy CI machines


# ---------------------------------------------------------------- one mutation per defect kind

def test_service_port(tree):
    f = tree / K8S / "booking.yaml"
    line = _line(f, ["kind: Service", "ports:", "- name: http"])
    _edit(f, ["kind: Service", "ports:"], "port: 8080", "port: 8081")
    broken = _broken(tree, "service")
    assert {b.connection for b in broken} >= {"kong->booking:8080/tcp", "frontend->booking:8080/tcp"}
    assert {(b.file, b.line) for b in broken} == {(f"{K8S}/booking.yaml", line)}
    assert "no port 8080" in broken[0].message


def test_service_target_port(tree):
    f = tree / K8S / "booking.yaml"
    line = _line(f, ["kind: Service", "ports:", "- name: http"])
    _edit(f, ["kind: Service", "ports:"], "targetPort: http", "targetPort: web")
    broken = _broken(tree, "service")
    assert broken and {(b.file, b.line) for b in broken} == {(f"{K8S}/booking.yaml", line)}
    assert all("targetPort 'web'" in b.message for b in broken)


def test_service_selector_labels(tree):
    f = tree / K8S / "booking.yaml"
    line = _line(f, ["kind: Service", "spec:", "type: ClusterIP"])
    _edit(f, ["kind: Service", "selector:"], "app: booking", "app: bookings")
    broken = _broken(tree, "service")
    assert broken and {(b.file, b.line) for b in broken} == {(f"{K8S}/booking.yaml", line)}
    assert "matches the pods of no Deployment" in broken[0].message


def test_container_port(tree):
    f = tree / K8S / "payment.yaml"
    line = _edit(f, ["kind: Deployment", "ports:"], "containerPort: 8080", "containerPort: 9090")
    broken = _broken(tree, "service")
    entry = _back(f, line, "name: http")  # the port entry's mapping starts at its first key
    assert broken and {(b.file, b.line, b.layer) for b in broken} == {(f"{K8S}/payment.yaml", entry, "service")}


def test_networkpolicy_port(tree):
    """booking's egress rule to payment opens the wrong port: the rule's line, egress layer."""
    f = tree / K8S / "booking.yaml"
    rule = _back(f, _line(f, ["kind: NetworkPolicy", "name: booking", "egress:", "app: payment"]), "to:")
    _edit(f, ["kind: NetworkPolicy", "name: booking", "egress:", "app: payment"], "port: 8080", "port: 8081")
    broken = _broken(tree, "networkpolicy-egress")
    assert [(b.file, b.line, b.connection) for b in broken] == [(f"{K8S}/booking.yaml", rule, "booking->payment:8080/tcp")]
    assert "not port 8080/TCP" in broken[0].message


def test_networkpolicy_peer(tree):
    """payment's ingress names the wrong caller: booking is refused by default deny, at the policy's spec."""
    f = tree / K8S / "payment.yaml"
    spec = _line(f, ["kind: NetworkPolicy", "name: payment", "spec:", "podSelector:"])
    _edit(f, ["kind: NetworkPolicy", "name: payment", "ingress:", "kubernetes.io/metadata.name: booking"],
          "app: booking", "app: bookings")
    broken = _broken(tree, "networkpolicy-ingress")
    assert [(b.file, b.line, b.connection) for b in broken] == [(f"{K8S}/payment.yaml", spec, "booking->payment:8080/tcp")]
    assert "default deny" in broken[0].message


def test_networkpolicy_named_port_resolves_on_the_pods(tree):
    """payment's ingress rules name the container port (`http`), which verify resolves on payment's pods: the
    generated tree passes, and a name no container of payment's Deployments declares admits nothing."""
    assert not _broken(tree, "networkpolicy-ingress")
    f = tree / K8S / "payment.yaml"
    rule = _back(f, _line(f, ["kind: NetworkPolicy", "name: payment", "ingress:", "app: booking"]), "- from:")
    _edit(f, ["kind: NetworkPolicy", "name: payment", "ingress:", "app: booking"], "port: http", "port: grpc")
    broken = _broken(tree, "networkpolicy-ingress")
    assert [(b.file, b.line, b.connection) for b in broken] == [(f"{K8S}/payment.yaml", rule, "booking->payment:8080/tcp")]
    assert "not port 8080/TCP" in broken[0].message


def test_networkpolicy_named_port_follows_the_container_port(tree):
    """The name resolves to the number the pods declare: payment's Deployments listening on another number
    under the same name are refused by the rules naming it (and the Service check reports the port too)."""
    f = tree / K8S / "payment.yaml"
    text = f.read_text()
    assert text.count("containerPort: 8080") == 1
    f.write_text(text.replace("containerPort: 8080", "containerPort: 8081"))
    broken = _broken(tree, "networkpolicy-ingress")
    assert {b.connection for b in broken} == {"booking->payment:8080/tcp", "frontend->payment:8080/tcp",
                                              "kong->payment:8080/tcp", "prometheus->payment:8080/tcp"}


def test_networkpolicy_ip_block(tree):
    """booking's egress to the data hosts loses a zone: the rule no longer holds every PgBouncer subnet."""
    f = tree / K8S / "booking.yaml"
    # the nearest rule is named: Redis' (its blocks hold PgBouncer's subnets, its port is not 6432)
    rule = _back(f, _line(f, ["kind: NetworkPolicy", "name: booking", "egress:", "port: 6379"]), "to:")
    _edit(f, ["kind: NetworkPolicy", "name: booking", "egress:", "ipBlock:"], "cidr: 10.0.0.0/19", "cidr: 10.0.0.0/20")
    broken = _broken(tree, "networkpolicy-egress")
    assert {b.connection for b in broken} == {"booking->pgbouncer:6432/tcp"}  # the first ipBlock rule: PgBouncer's
    assert [(b.file, b.line) for b in broken] == [(f"{K8S}/booking.yaml", rule)]
    assert "not port 6432/TCP" in broken[0].message


def test_kong_target_port(tree):
    f = tree / f"kong/{AWS}/kong.yaml"
    line = _edit(f, ["name: booking-upstream"], "target: booking.booking.svc.cluster.local:8080",
                 "target: booking.booking.svc.cluster.local:80")
    broken = _broken(tree, "kong")
    assert [(b.file, b.line, b.connection) for b in broken] == [(f"kong/{AWS}/kong.yaml", line, "kong->booking:8080/tcp")]


def test_missing_secret(tree):
    """A Deployment naming a Secret nothing creates breaks at that reference; an ExternalSecret for it clears it."""
    f = tree / K8S / "payment.yaml"
    line = _edit(f, ["kind: Deployment", "secretKeyRef:"], "name: payment", "name: payment-keys")
    broken = [b for b in _broken(tree, "objects") if b.connection == "Deployment payment/payment"]
    assert [(b.file, b.line) for b in broken] == [(f"{K8S}/payment.yaml", line)]
    assert "Secret payment/payment-keys" in broken[0].message
    (tree / K8S / "zz-external-secrets.yaml").write_text(yaml.safe_dump({
        "apiVersion": "external-secrets.io/v1", "kind": "ExternalSecret",
        "metadata": {"name": "payment-keys", "namespace": "payment"},
        "spec": {"secretStoreRef": {"kind": "ClusterSecretStore", "name": "vault"}, "target": {"name": "payment-keys"},
                 "data": [{"secretKey": "STRIPE_API_KEY", "remoteRef": {"key": "platform/payment", "property": "stripe_api_key"}}]}}))
    assert "Deployment payment/payment" not in {b.connection for b in _broken(tree, "objects")}


def test_missing_service_account(tree):
    f = tree / K8S / "payment.yaml"
    line = _edit(f, ["kind: Deployment", "template:"], "serviceAccountName: payment", "serviceAccountName: payer")
    broken = [b for b in _broken(tree, "objects") if "ServiceAccount" in b.message]
    assert [(b.file, b.line) for b in broken] == [(f"{K8S}/payment.yaml", line)]


def test_hpa_target_name(tree):
    f = tree / K8S / "booking.yaml"
    line = _line(f, ["kind: HorizontalPodAutoscaler", "scaleTargetRef:", "apiVersion: apps/v1"])
    _edit(f, ["kind: HorizontalPodAutoscaler", "scaleTargetRef:"], "name: booking-v1", "name: booking-v9")
    broken = [b for b in _broken(tree, "objects") if "HorizontalPodAutoscaler" in b.connection]
    assert [(b.file, b.line, b.connection) for b in broken] == [
        (f"{K8S}/booking.yaml", line, "HorizontalPodAutoscaler booking/booking-v1")]


def test_destination_rule_subset(tree):
    f = tree / K8S / "booking.yaml"
    line = _line(f, ["kind: DestinationRule", "subsets:", "- name: v2"])
    _edit(f, ["kind: DestinationRule", "subsets:", "- name: v2"], "version: v2", "version: v3")
    broken = [b for b in _broken(tree, "objects") if "DestinationRule" in b.connection]
    assert [(b.file, b.line) for b in broken] == [(f"{K8S}/booking.yaml", line)]


def test_service_entry_port(tree):
    f = tree / K8S / "payment.yaml"
    spec = _line(f, ["kind: ServiceEntry", "spec:", "hosts:"])
    _edit(f, ["kind: ServiceEntry", "ports:"], "number: 443", "number: 444")
    broken = _broken(tree, "istio")
    assert [(b.file, b.line, b.connection) for b in broken] == [
        (f"{K8S}/payment.yaml", spec, "payment->api.stripe.com:443/tcp")]


def test_prometheus_exporter_port(tree):
    f = tree / f"helm/{AWS}/kube-prometheus-stack.values.yaml"
    text = f.read_text()
    f.write_text(text.replace(".com:9121", ".com:9122"))
    broken = _broken(tree, "prometheus")
    assert [b.connection for b in broken] == ["prometheus->redis:9121/tcp"]
    assert broken[0].file == f"helm/{AWS}/kube-prometheus-stack.values.yaml" and broken[0].line > 0
