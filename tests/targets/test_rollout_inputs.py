"""Kubernetes target: what makes a change reach the running pods.

- The pod template's `checksum/config` and `checksum/secrets` (Helm's checksum convention): the services read their
  `<service>-datastores` ConfigMap and their Secrets as environment variables, which a running container never
  re-reads, and the references were recorded only on the Deployment's own metadata, which rolls nothing. A changed
  reference (the JWT key's, the PgBouncer auth entry every service's role password derives from) or a changed
  connection setting must change the pod template of exactly the services that read it, and nothing else.
- NetworkPolicy ingress rules name the container port the Deployments declare (names.SERVICE_PORT_NAME), so a
  changed service port is admitted per pod, old and new, while the rollout runs; a number switched every pod at once.
Each case compiles the reference spec and an edited copy of it and compares the emitted manifests.
"""

from __future__ import annotations

import re
from functools import lru_cache

import yaml

from compiler.ir.names import SERVICE_PORT_NAME
from compiler.pipeline import compile_text
from compiler.targets import kubernetes
from compiler.targets.kubernetes.common import tracks
from compiler.targets.kubernetes.workloads import CONFIG_CHECKSUM, SECRETS_CHECKSUM
from tests.conftest import REPO

REGION = "us-west-2"
SPEC = (REPO / "platform.yaml").read_text()
JWT = '"vault:secret/data/platform/user#jwt_signing_key"'
PGB_AUTH = 'auth_password: "vault:secret/data/platform/pgbouncer#auth_password"'


def _edit(old: str, new: str) -> str:
    assert SPEC.count(old) == 1, old
    return SPEC.replace(old, new)


EDITS = {
    "reference": SPEC,
    "jwt": _edit(JWT, '"vault:secret/data/platform/user#jwt_signing_key_v2"'),
    "pgbouncer-auth": _edit(PGB_AUTH, 'auth_password: "vault:secret/data/platform/pgbouncer2#auth_password"'),
    # the frontend's port (3000 in the reference): its Deployment, Service and Prometheus annotation change
    "frontend-port": re.sub(r"(\n    frontend:\n(?:      .*\n)*?      port: )3000\n", r"\g<1>3001\n", SPEC, count=1),
    # a setting of the services' ConfigMaps: the PgBouncer port every postgres user's PGPORT names
    "pgbouncer-port": _edit("      reserve_pool_size: 5\n      hosts: 2\n", "      reserve_pool_size: 5\n      hosts: 2\n      port: 6433\n"),
}


@lru_cache(maxsize=None)
def files(case: str) -> dict[str, str]:
    text = EDITS[case]
    assert case == "reference" or text != SPEC, f"{case}: the edit did not apply"
    plan = compile_text(text, f"{case}.yaml").plan
    region = plan.region(REGION)
    return kubernetes.emit_region(plan, region)


def _docs(case: str, service: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(files(case)[f"kubernetes/{REGION}/{service}.yaml"]) if d]


def checksums(case: str) -> dict[str, dict[str, str]]:
    """Deployment name -> its pod template's checksum annotations, across the region's services."""
    out = {}
    for path in files(case):
        if not path.endswith(".yaml") or path.endswith("kong-gateway.yaml"):
            continue
        for d in yaml.safe_load_all(files(case)[path]):
            if d and d["kind"] == "Deployment":
                ann = d["spec"]["template"]["metadata"].get("annotations") or {}
                out[d["metadata"]["name"]] = {k: v for k, v in ann.items() if k.startswith("checksum/")}
    return out


def _changed(case: str) -> dict[str, set[str]]:
    base, other = checksums("reference"), checksums(case)
    assert base.keys() == other.keys()
    return {dep: {k for k in base[dep].keys() | other[dep].keys() if base[dep].get(k) != other[dep].get(k)}
            for dep in base if base[dep] != other[dep]}


def _deployments(case: str, *services: str) -> set[str]:
    region = compile_text(EDITS[case], "x.yaml").plan.region(REGION)
    return {t.deployment for s in services for t in tracks(region.service(s))}


def test_every_reader_of_a_configmap_or_secret_carries_its_checksums():
    plan = compile_text(SPEC, "reference.yaml").plan
    region = plan.region(REGION)
    sums = checksums("reference")
    for svc in region.services:
        docs = _docs("reference", svc.name)
        config = any(d["kind"] == "ConfigMap" for d in docs)
        for t in tracks(svc):
            dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == t.deployment)
            env_from = dep["spec"]["template"]["spec"]["containers"][0].get("envFrom", [])
            secret_refs = bool(svc.secrets) or any("secretRef" in e for e in env_from)
            assert (CONFIG_CHECKSUM in sums[t.deployment]) == config, t.deployment
            assert (SECRETS_CHECKSUM in sums[t.deployment]) == secret_refs, t.deployment
            assert all(re.fullmatch("[0-9a-f]{64}", v) for v in sums[t.deployment].values())


def test_a_changed_secret_reference_rolls_exactly_its_readers():
    # the JWT signing key's reference: the user service's pods, nothing else
    assert _changed("jwt") == {d: {SECRETS_CHECKSUM} for d in _deployments("jwt", "user")}
    # the PgBouncer auth entry, from which each postgres user's role password reference derives
    region = compile_text(SPEC, "x.yaml").plan.region(REGION)
    postgres = [s.name for s in region.services if "postgres" in s.uses]
    assert postgres and _changed("pgbouncer-auth") == {d: {SECRETS_CHECKSUM}
                                                       for d in _deployments("pgbouncer-auth", *postgres)}


def test_a_changed_setting_rolls_exactly_its_readers():
    region = compile_text(SPEC, "x.yaml").plan.region(REGION)
    postgres = [s.name for s in region.services if "postgres" in s.uses]
    assert _changed("pgbouncer-port") == {d: {CONFIG_CHECKSUM} for d in _deployments("pgbouncer-port", *postgres)}


def test_the_checksums_hold_no_secret_and_change_nothing_else():
    """Only references are hashed (the spec holds no values), and the edits change no other byte of the unaffected
    services' files: the JWT edit leaves every file but the user service's as it was."""
    changed = {p for p in files("reference") if files("reference")[p] != files("jwt")[p]}
    assert changed == {f"kubernetes/{REGION}/user.yaml"}
    before, after = files("reference")[f"kubernetes/{REGION}/user.yaml"], files("jwt")[f"kubernetes/{REGION}/user.yaml"]
    diff = [(a, b) for a, b in zip(before.splitlines(), after.splitlines()) if a != b]
    assert diff and all("checksum/secrets:" in a or "platformc.io/secret-sources" in a for a, _ in diff)


def test_ingress_rules_name_the_port_the_pods_declare():
    region = compile_text(SPEC, "x.yaml").plan.region(REGION)
    for svc in region.services:
        docs = _docs("reference", svc.name)
        allow = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == svc.name)
        names = {p["port"] for rule in allow["spec"]["ingress"] for p in rule["ports"] if isinstance(p["port"], str)}
        assert names == {SERVICE_PORT_NAME}, svc.name
        for t in tracks(svc):
            dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == t.deployment)
            ports = dep["spec"]["template"]["spec"]["containers"][0]["ports"]
            assert {"name": SERVICE_PORT_NAME, "containerPort": svc.port, "protocol": "TCP"} in ports
        # no ingress rule names the service's port by number any more
        assert not [p for rule in allow["spec"]["ingress"] for p in rule["ports"] if p["port"] == svc.port]


def test_a_changed_port_leaves_the_ingress_policy_alone():
    """The frontend's port 3000 -> 3001: its pods declare the new number under the same name, so its NetworkPolicy
    is the same object and admits the old pods on 3000 until the rollout replaces them."""
    def policies(case):
        return [d for d in _docs(case, "frontend") if d["kind"] == "NetworkPolicy"]

    def deployment_ports(case):
        return [d["spec"]["template"]["spec"]["containers"][0]["ports"] for d in _docs(case, "frontend")
                if d["kind"] == "Deployment"]

    assert deployment_ports("frontend-port") != deployment_ports("reference")  # the edit took
    assert policies("frontend-port") == policies("reference")


def test_the_region_page_names_each_rotation_step():
    """A value rotated under the same reference changes no checksum: the region page says, per service, which
    ExternalSecret to re-sync and which Deployments to restart, by their generated names."""
    plan = compile_text(SPEC, "x.yaml").plan
    region = plan.region(REGION)
    page = kubernetes.docs_region(plan, region)
    ctx = f"kubectl --context {region.cluster_name}"
    user = region.service("user")
    section = page.split("### Secret and setting changes", 1)[1].split("###", 1)[0]
    row = next(line for line in section.splitlines() if line.startswith("| user |"))
    assert f"`{ctx} -n {user.namespace} annotate externalsecret user force-sync=$(date +%s) --overwrite`" in row
    assert f"`{ctx} -n {user.namespace} annotate externalsecret user-datastores force-sync=$(date +%s) --overwrite`" in row
    restart = " ".join(f"deployment/{t.deployment}" for t in tracks(user))
    assert f"`{ctx} -n {user.namespace} rollout restart {restart}`" in row
    assert "Order for a service's PostgreSQL role password" in page
