"""Kubernetes target: the manifests validated by the real tools, and read back against the plan.

Cases: both golden cases plus a variant of the two-region fixture with the mesh, tracing, RBAC and
NetworkPolicies off and a managed search service (the code paths the golden cases do not take).
Tools: kubernetes-validate --strict (the spec's Kubernetes schemas, 1.33; an unknown kind is a failure here),
@kubernetes-models/istio 2.3.0 in strict mode (tests/tools/istio-validate.js), checkov's
Kubernetes policies, yamllint.

The AWS TargetGroupBinding (elbv2.k8s.aws, a CRD kubernetes-validate has no schema for) is the one
object outside those `.yaml` files: it is a template (`kong-target-group-binding.yaml.tmpl`) until the
deploy step fills in Terraform's target group ARN, so the strict-kind run never sees it; its own test
fills in a sample ARN and checks it against the controller's CRD fields and the other targets.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
from collections import Counter
from functools import lru_cache

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.ir.names import SERVICE_PORT_NAME
from compiler.pipeline import compile_file, compile_text
from compiler.render import dump_yaml_all
from compiler.targets import helm, kubernetes, terraform
from compiler.ir.edge import (GCP_FRONT_END_RANGES, KONG_PROXY_TLS_PORT, health_check_path, lb_hostnames,
                                         lb_target_name)
from compiler.targets.kubernetes.common import (GPU_RESOURCE, KONG_STATUS_PORT, NODE_POOL_LABEL, SIDECAR_LIMITS,
                                                 SIDECAR_REQUESTS, canary_replicas, tracks)
from compiler.targets.kubernetes.gateway import TARGET_GROUP_ARN_OUTPUT, TARGET_GROUP_ARN_VARIABLE
from tests.conftest import IN_CI, REPO, require_tool

# The schemas of the Kubernetes minor the reference spec's clusters run (the spec's default, 1.33).
K8S_VERSION = compile_file(str(REPO / "platform.yaml")).plan.regions[0].settings.kubernetes.version + ".0"
NODE_MODULES = REPO / ".tools" / "node" / "node_modules"
TWO_REGION = (REPO / "tests/cases/two-region/platform.yaml").read_text()
YAMLLINT_CONFIG = """\
extends: default
rules:
  document-start: disable
  line-length: {max: 200}
  truthy: {check-keys: false}
  comments: {min-spaces-from-content: 1}
  indentation: {spaces: consistent, indent-sequences: whatever}
"""


def variant_text() -> str:
    """two-region with the optional parts off: no mesh, tracing, RBAC or NetworkPolicies; use1's
    search is managed (no Elasticsearch hosts)."""
    text = TWO_REGION.replace(
        "settings:\n  kubernetes:\n    min_nodes: 6",
        "settings:\n  security: {network_policies: false, rbac: false}\n"
        "  monitoring: {tracing: false, grafana: false, alertmanager: false}\n"
        "  kubernetes:\n    istio: false\n    min_nodes: 6")
    text = text.replace("traffic_share: 60, dr_partner: euw1, cidr: 10.20.0.0/16}",
                        "traffic_share: 60, dr_partner: euw1, cidr: 10.20.0.0/16,\n"
                        "     settings: {datastores: {elasticsearch: {deployment: managed}}}}")
    assert text.count("istio: false") == 1 and "deployment: managed" in text
    return text


@lru_cache(maxsize=None)
def plan_of(case: str):
    if case == "variant":
        return compile_text(variant_text(), "variant.yaml").plan
    return compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan


CASES = ("reference", "two-region", "variant")


@lru_cache(maxsize=None)
def emitted(case: str) -> dict[str, str]:
    plan = plan_of(case)
    out = {}
    for r in plan.regions:
        out.update(kubernetes.emit_region(plan, r))
    return out


@lru_cache(maxsize=None)
def documents(case: str) -> dict[str, list[dict]]:
    # the manifests and the binding template (Azure's workload-identities.sh is a script, not a manifest)
    return {path: [d for d in yaml.safe_load_all(text) if d is not None] for path, text in emitted(case).items()
            if path.endswith((".yaml", ".yaml.tmpl"))}


def region_docs(case: str, region: str) -> list[dict]:
    return [d for path, docs in documents(case).items() if path.split("/")[1] == region for d in docs]


def manifest_files(case: str) -> dict[str, list[dict]]:
    """The `.yaml` files (what `kubectl apply -f <dir>/` applies), without the binding template."""
    return {path: docs for path, docs in documents(case).items() if path.endswith(".yaml")}


def find(docs, kind, name, namespace=None):
    hits = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name
            and (namespace is None or d["metadata"].get("namespace") == namespace)]
    assert len(hits) == 1, f"{kind} {namespace}/{name}: {len(hits)} found"
    return hits[0]


def is_istio(doc) -> bool:
    return doc["apiVersion"].split("/")[0].endswith("istio.io")


def services():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            for svc in r.services:
                yield case, plan, r, svc


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """Every case's manifests written out, for the command-line tools."""
    root = tmp_path_factory.mktemp("kubernetes")
    for case in CASES:
        for rel, text in emitted(case).items():
            p = root / case / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    return root


# ------------------------------------------------------------------ the real tools


def test_kubernetes_validate_strict(tree):
    tool = require_tool("kubernetes-validate")
    files = sorted(str(p) for p in tree.rglob("*.yaml"))
    res = subprocess.run([tool, "--strict", "-k", K8S_VERSION, *files], capture_output=True, text=True, timeout=600)
    lines = res.stdout.splitlines() + res.stderr.splitlines()
    errors = [l for l in lines if l.startswith("ERROR")]
    # an unknown kind is only a warning for the tool: every warning must be an Istio kind, which
    # kubernetes-validate has no schema for and the next test validates
    unexpected = [l for l in lines if l.startswith("WARN") and not re.search(r"api version \S*istio\.io/", l)]
    assert not errors and not unexpected, "\n".join(errors + unexpected)
    core = sum(1 for c in CASES for docs in manifest_files(c).values() for d in docs if not is_istio(d))
    istio = sum(1 for c in CASES for docs in manifest_files(c).values() for d in docs if is_istio(d))
    assert sum(l.startswith("INFO") for l in lines) == core, "every core object validated"
    assert sum(l.startswith("WARN") for l in lines) == istio
    assert res.returncode == 0


def _istio_validate(docs: list[dict]) -> subprocess.CompletedProcess:
    node = require_tool("node")
    if not (NODE_MODULES / "@kubernetes-models" / "istio").is_dir():
        message = "@kubernetes-models/istio is not installed (run `make tools`)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    return subprocess.run([node, str(REPO / "tests/tools/istio-validate.js"), str(NODE_MODULES)],
                          input=json.dumps(docs), capture_output=True, text=True, timeout=300)


def test_istio_objects_validate_strictly():
    payload = [{"file": f"{case}/{path}", "index": i, "doc": d}
               for case in CASES for path, docs in documents(case).items() for i, d in enumerate(docs) if is_istio(d)]
    kinds = Counter(p["doc"]["kind"] for p in payload)
    assert {"VirtualService", "DestinationRule", "PeerAuthentication", "Telemetry"} <= set(kinds)
    assert "Gateway" not in kinds, "no Istio ingress gateway: the cloud load balancer is the only entry"
    res = _istio_validate(payload)
    ok = [l for l in res.stdout.splitlines() if l.startswith("OK ")]
    assert res.returncode == 0 and len(ok) == len(payload), res.stdout + res.stderr


def test_istio_strict_mode_catches_typos():
    """The strict check is not vacuous: a misspelt field and a wrong type are refused."""
    vs = next(d for docs in documents("reference").values() for d in docs if d["kind"] == "VirtualService"
              and d["spec"]["http"][-1].get("name") == "weighted")
    typo = json.loads(json.dumps(vs))
    route = typo["spec"]["http"][-1]["route"][0]
    route["weigth"] = route.pop("weight")
    wrong_type = json.loads(json.dumps(vs))
    wrong_type["spec"]["hosts"] = wrong_type["spec"]["hosts"][0]
    res = _istio_validate([{"file": "typo", "index": 0, "doc": typo}, {"file": "type", "index": 0, "doc": wrong_type}])
    assert res.returncode == 1
    assert res.stdout.count("ERROR") == 2 and "weigth" in res.stdout, res.stdout


def test_mesh_telemetry_is_checked_against_istios_schema():
    """The mesh's access-log Telemetry is validated, not waved through: a misspelt field, a mode Istio does not
    know and a filter that is not an object are each refused, and the generated one passes."""
    tel = next(d for docs in documents("reference").values() for d in docs if d["kind"] == "Telemetry")
    assert tel["apiVersion"] == "telemetry.istio.io/v1" and tel["metadata"]["namespace"] == "istio-system"
    typo = json.loads(json.dumps(tel))
    typo["spec"]["accessLogging"][0]["filters"] = typo["spec"]["accessLogging"][0].pop("filter")
    mode = json.loads(json.dumps(tel))
    mode["spec"]["accessLogging"][0]["match"]["mode"] = "INBOUND"
    kind = json.loads(json.dumps(tel))
    kind["spec"]["accessLogging"][1]["filter"] = "response.code >= 500"
    res = _istio_validate([{"file": n, "index": 0, "doc": d}
                           for n, d in (("ok", tel), ("typo", typo), ("mode", mode), ("kind", kind))])
    assert res.returncode == 1
    assert res.stdout.startswith("OK ok[0] Telemetry/mesh-access-logs") and res.stdout.count("ERROR") == 3, res.stdout
    assert "filters" in res.stdout, res.stdout


def test_checkov_kubernetes_policies(tree, tmp_path):
    """checkov's Kubernetes policies pass, or are skipped with a reason written on the object.
    One reference region and the two small cases: every region's manifests are built by the same
    code, and checkov takes ~0.2 s per file."""
    checkov = require_tool("checkov")
    scan = tmp_path / "scan"
    for case, region in (("reference", "eu-west-2"), ("two-region", None), ("variant", None)):
        for p in (tree / case / "kubernetes").rglob("*.yaml"):
            if region is None or p.parent.name == region:
                dest = scan / case / p.relative_to(tree / case)
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_text(p.read_text())
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    env.pop("BC_API_KEY", None)
    res = subprocess.run([checkov, "-d", str(scan), "--framework", "kubernetes", "--compact", "-o", "json"],
                         capture_output=True, text=True, env=env, timeout=600)
    report = json.loads(res.stdout)
    report = report[0] if isinstance(report, list) else report
    summary, results = report["summary"], report["results"]
    failed = [(c["check_id"], c["resource"], c["file_path"]) for c in results["failed_checks"]]
    assert not failed, failed
    assert summary["parsing_errors"] == 0 and summary["passed"] > 1000
    skipped = results["skipped_checks"]
    assert {c["check_id"] for c in skipped} == {"CKV_K8S_43", "CKV_K8S_35"}
    assert all(len(c["check_result"].get("suppress_comment", "")) > 20 for c in skipped), "every skip says why"


def test_yamllint_clean(tree, tmp_path):
    yamllint = require_tool("yamllint")
    cfg = tmp_path / "yamllint.yaml"
    cfg.write_text(YAMLLINT_CONFIG)
    res = subprocess.run([yamllint, "-s", "-f", "parsable", "-c", str(cfg), str(tree)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


# ------------------------------------------------------------------ read back against the plan


@pytest.mark.parametrize("case", CASES)
def test_no_two_objects_share_kind_namespace_name(case):
    plan = plan_of(case)
    for r in plan.regions:
        keys = Counter((d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in region_docs(case, r.name))
        assert not [k for k, n in keys.items() if n > 1]


@pytest.mark.parametrize("case", CASES)
def test_documents_said_not_to_recur_are_each_met_once(case):
    """kubernetes._recurs keeps the memo from holding the texts of a service's documents that name its region (its
    ConfigMap, a NetworkPolicy with an ipBlock): over every region and service such a document is met once, and
    the documents it keeps include every one that is met more than once."""
    import marshal
    plan = plan_of(case)
    seen = Counter()
    once = set()
    for r in plan.regions:
        for svc in r.services:
            for doc in kubernetes.service_objects(svc, r):
                key = marshal.dumps(doc)
                seen[key] += 1
                if not kubernetes._recurs(doc):
                    once.add(key)
    assert once
    assert all(seen[k] == 1 for k in once)


@pytest.mark.parametrize("case", CASES)
def test_files_are_dump_yaml_all_of_the_objects(case):
    """The memoised dump is byte for byte compiler.render.dump_yaml_all; every file has the banner,
    the Namespace first, LF endings and a final newline; emission is deterministic."""
    plan = plan_of(case)
    for r in plan.regions:
        files = kubernetes.emit_region(plan, r)
        assert files == kubernetes.emit_region(plan, r)
        for svc in r.services:
            text = files[f"kubernetes/{r.name}/{svc.name}.yaml"]
            header = text[: text.index("---\n")]
            assert text == dump_yaml_all(kubernetes.service_objects(svc, r), header=header)
            assert header.startswith("# Generated by platformc from platform.yaml - do not edit")
            assert "\r" not in text and text.endswith("\n")
            assert next(yaml.safe_load_all(text))["kind"] == "Namespace"


def test_replicas_resources_and_images_equal_the_plan():
    for case, plan, r, svc in services():
        docs = region_docs(case, r.name)
        ts = tracks(svc)
        assert len(ts) == {"rolling": 1, "canary": 2, "blue-green": 2}[svc.rollout.type]
        for t in ts:
            dep = find(docs, "Deployment", t.deployment, svc.namespace)
            hpa = find(docs, "HorizontalPodAutoscaler", t.deployment, svc.namespace)
            pod = dep["spec"]["template"]
            c = pod["spec"]["containers"][0]
            if t.id in ("stable", "v1", "blue", "green"):
                assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (svc.replicas_min, svc.replicas_max)
            else:  # the canary subset: its weight's share of the range, at least two pods (a drain leaves one)
                lo = max(2, math.ceil(svc.replicas_min * svc.rollout.canary_weight / 100))
                assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == canary_replicas(svc)
                assert hpa["spec"]["minReplicas"] == lo
            # the HPA owns the count: a `replicas` here reset a scaled-out service to its minimum at every apply
            assert "replicas" not in dep["spec"], t.deployment
            assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": t.deployment}
            assert c["resources"]["requests"] == {"cpu": svc.requests.cpu, "memory": svc.requests.memory}
            limits = {"cpu": svc.limits.cpu, "memory": svc.limits.memory}
            if svc.limits.gpu:
                limits[GPU_RESOURCE] = str(svc.limits.gpu)
            assert c["resources"]["limits"] == limits
            assert c["image"] == f"{svc.image}:{t.tag}"
            assert c["ports"] == [{"name": "http", "containerPort": svc.port, "protocol": "TCP"}]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe]["httpGet"] == {"path": svc.health_path, "port": "http"}
            assert dep["spec"]["selector"]["matchLabels"] == t.labels
            assert t.labels.items() <= pod["metadata"]["labels"].items()
            assert pod["spec"]["serviceAccountName"] == svc.name
            spread = {s["topologyKey"]: s for s in pod["spec"]["topologySpreadConstraints"]}
            # never hard: a zone outage would block every replacement (test_cluster_readiness)
            assert spread["topology.kubernetes.io/zone"]["whenUnsatisfiable"] == "ScheduleAnyway"
            assert spread["topology.kubernetes.io/zone"]["labelSelector"]["matchLabels"] == t.labels
            assert pod["spec"]["nodeSelector"] == {NODE_POOL_LABEL: svc.node_pool}
            pdb = find(docs, "PodDisruptionBudget", t.deployment, svc.namespace)
            assert pdb["spec"]["selector"]["matchLabels"] == t.labels


def test_rollout_images_follow_the_strategy():
    plan = plan_of("reference")
    r = plan.region("us-east-1")
    docs = region_docs("reference", r.name)
    fr = r.service("franchise")  # blue-green: blue 2.1.0 live, green 2.2.0
    assert find(docs, "Deployment", "franchise-blue")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.1.0")
    assert find(docs, "Deployment", "franchise-green")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.2.0")
    assert find(docs, "Service", "franchise", fr.namespace)["spec"]["selector"] == {"app": "franchise", "version": "blue"}
    assert find(docs, "Service", "franchise-preview", fr.namespace)["spec"]["selector"] == {"app": "franchise", "version": "green"}
    # two-region: web is blue-green with green live
    web_docs = region_docs("two-region", "use1")
    assert find(web_docs, "Service", "web", "web")["spec"]["selector"] == {"app": "web", "version": "green"}


def test_hpa_targets_and_behaviour_are_the_seeds():
    for case, plan, r, svc in services():
        a = r.settings.autoscaling
        for t in tracks(svc):
            spec = find(region_docs(case, r.name), "HorizontalPodAutoscaler", t.deployment, svc.namespace)["spec"]
            targets = {m["resource"]["name"]: m["resource"]["target"] for m in spec["metrics"]}
            assert targets == {"cpu": {"type": "Utilization", "averageUtilization": a.target_cpu_utilization},
                               "memory": {"type": "Utilization", "averageUtilization": a.target_memory_utilization}}
            if case == "reference":  # the seed's numbers, literally
                assert targets["cpu"]["averageUtilization"] == 70 and targets["memory"]["averageUtilization"] == 80
                assert spec["behavior"] == {
                    "scaleUp": {"stabilizationWindowSeconds": 60, "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]},
                    "scaleDown": {"stabilizationWindowSeconds": 300, "policies": [{"type": "Percent", "value": 10, "periodSeconds": 60}]},
                }


def test_canary_routes_header_first_then_weights():
    for case, plan, r, svc in services():
        if svc.rollout.type != "canary":
            continue
        docs = region_docs(case, r.name)
        if not r.settings.kubernetes.istio:
            assert not [d for d in docs if is_istio(d)]
            assert find(docs, "Service", svc.name, svc.namespace)["spec"]["selector"] == {"app": svc.name}
            continue
        ro = svc.rollout
        vs = find(docs, "VirtualService", svc.name, svc.namespace)["spec"]
        dr = find(docs, "DestinationRule", svc.name, svc.namespace)["spec"]
        assert vs["hosts"] == [svc.dns_name] and dr["host"] == svc.dns_name
        assert {s["name"]: s["labels"] for s in dr["subsets"]} == {"v1": {"app": svc.name, "version": "v1"},
                                                                    "v2": {"app": svc.name, "version": "v2"}}
        first, last = vs["http"][0], vs["http"][-1]
        assert first["match"] == [{"headers": {ro.header_match.name: {"exact": ro.header_match.exact}}}]
        assert [d["destination"]["subset"] for d in first["route"]] == ["v2"]
        assert [(d["destination"]["subset"], d["weight"]) for d in last["route"]] == [
            ("v1", ro.stable_weight), ("v2", ro.canary_weight)]
    user = find(region_docs("reference", "us-east-1"), "VirtualService", "user", "user")["spec"]
    assert user["http"][0]["match"] == [{"headers": {"end-user": {"exact": "beta-tester"}}}]
    assert [d["weight"] for d in user["http"][1]["route"]] == [90, 10]


def test_network_policies_follow_the_service_graph():
    for case, plan, r, svc in services():
        docs = region_docs(case, r.name)
        policies = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["namespace"] == svc.namespace}
        if not r.settings.security.network_policies:
            assert not policies
            continue
        assert policies["default-deny"]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        allow = policies[svc.name]["spec"]
        ns_of = {s.name: s.namespace for s in r.services}

        def peers(rules):
            return {(p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
                     p.get("podSelector", {}).get("matchLabels", {}).get("app"), port["port"])
                    for rule in rules for p in rule.get("from", rule.get("to", [])) if "namespaceSelector" in p
                    for port in rule["ports"]}

        inbound = peers(allow["ingress"])
        outbound = peers(allow["egress"])
        # ingress names the container port, which the Deployments declare as svc.port
        for caller in svc.dependents:
            assert (ns_of[caller], caller, SERVICE_PORT_NAME) in inbound
        assert (("kong", None, SERVICE_PORT_NAME) in inbound) == bool(svc.routes)
        assert ("monitoring", None, SERVICE_PORT_NAME) in inbound
        for dep in svc.depends_on:
            assert (ns_of[dep], dep, r.service(dep).port) in outbound
        assert ("kube-system", None, 53) in outbound
        callers = {(ns, app) for ns, app, _ in inbound} - {("kong", None), ("monitoring", None)}
        assert callers == {(ns_of[c], c) for c in svc.dependents}, "no edge the spec does not have"
        assert set(policies) == {"default-deny", svc.name}, "one allow policy, from the wiring"
        ds = r.settings.datastores
        hosts = {h.fqdn: h for h in r.hosts}
        zone_cidr = {z.name: z.private_cidr for z in r.zones}

        def blocks(port):
            return [{p["ipBlock"]["cidr"] for p in rule["to"] if "ipBlock" in p}
                    for rule in allow["egress"] if {"protocol": "TCP", "port": port} in rule["ports"]]

        for c in r.connections_from(svc.name):
            if c.dest.kind == "hosts":  # the data hosts: their zones' private subnets, the spec's port
                want = {zone_cidr[hosts[f].zone] for f in c.dest.hosts}
                assert any(want <= got for got in blocks(c.dest_port)), (svc.name, c.id)
        if "postgres" in svc.uses and r.hosts_in("pgbouncer"):
            assert blocks(ds.pgbouncer.port)
        if "redis" in svc.uses:
            assert blocks(ds.redis.port)
        assert any("0.0.0.0/0" in got for got in blocks(443)) == ("object-storage" in svc.uses or
                                                                   any(e.port == 443 for e in svc.egress))
        for e in svc.egress:  # Internet hosts the service declares
            assert any("0.0.0.0/0" in got for got in blocks(e.port)), (svc.name, e.host)
        # every rule is a connection of the wiring and every connection has its rule
        wired = {(c.dest_port, c.protocol) for c in r.connections_from(svc.name) if "networkpolicy-egress" in c.layers}
        assert {(p["port"], p["protocol"]) for rule in allow["egress"] for p in rule["ports"]} == wired


def test_service_entries_for_declared_internet_hosts():
    plan = plan_of("reference")
    for r in plan.regions:
        docs = region_docs("reference", r.name)
        for svc in r.services:
            entries = [d for d in docs if d["kind"] == "ServiceEntry" and d["metadata"]["namespace"] == svc.namespace]
            if not r.settings.kubernetes.istio:
                assert not entries
                continue
            assert [(e["spec"]["hosts"], e["spec"]["ports"][0]["number"]) for e in entries] == [
                ([x.host], x.port) for x in svc.egress]
            for e in entries:
                assert e["apiVersion"] == "networking.istio.io/v1"
                assert e["spec"]["resolution"] == "DNS" and e["spec"]["location"] == "MESH_EXTERNAL"
                assert e["spec"]["exportTo"] == ["."] and e["spec"]["ports"][0]["protocol"] == "TLS"
    payment = plan.region("us-east-1").service("payment")
    assert [(e.host, e.port) for e in payment.egress] == [("api.stripe.com", 443)]


def test_franchise_hashing_lives_in_the_destination_rules():
    plan = plan_of("reference")
    for r in plan.regions:
        g = r.settings.gateway
        docs = region_docs("reference", r.name)
        for svc in r.services:
            rules = [d for d in docs if d["kind"] == "DestinationRule" and d["metadata"]["namespace"] == svc.namespace]
            if not r.settings.kubernetes.istio:
                assert not rules
                continue
            if g.load_balancing == "consistent-hashing":
                (rule,) = rules
                assert rule["spec"]["host"] == svc.dns_name
                assert rule["spec"]["trafficPolicy"]["loadBalancer"] == {"consistentHash": {"httpHeaderName": g.hash_on_header}}
            assert bool(rules) == (g.load_balancing == "consistent-hashing" or svc.rollout.type == "canary")


def test_secrets_are_references_never_values():
    for case, plan, r, svc in services():
        text = emitted(case)[f"kubernetes/{r.name}/{svc.name}.yaml"]
        docs = region_docs(case, r.name)
        for t in tracks(svc):
            dep = find(docs, "Deployment", t.deployment, svc.namespace)
            env = {e["name"]: e for e in dep["spec"]["template"]["spec"]["containers"][0].get("env", [])}
            for var in svc.secrets:
                assert env[var] == {"name": var, "valueFrom": {"secretKeyRef": {"name": svc.name, "key": var}}}
            sources = dep["metadata"]["annotations"].get("platformc.io/secret-sources")
            assert (json.loads(sources) if sources else {}) == dict(svc.secrets)
        for ref in svc.secrets.values():  # the reference appears only inside the annotation
            assert text.count(ref) == len(tracks(svc))
    assert not [d for c in CASES for docs in documents(c).values() for d in docs if d["kind"] == "Secret"]


def test_gpu_services_land_on_the_gpu_pool():
    seen = 0
    for case, plan, r, svc in services():
        if not svc.gpu_pool:
            continue
        seen += 1
        for t in tracks(svc):
            spec = find(region_docs(case, r.name), "Deployment", t.deployment, svc.namespace)["spec"]["template"]["spec"]
            assert spec["nodeSelector"] == {NODE_POOL_LABEL: svc.node_pool}
            assert {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"} in spec["tolerations"]
            assert spec["containers"][0]["resources"]["limits"][GPU_RESOURCE] == str(svc.limits.gpu)
    assert seen >= 12


def _quantity(q: str) -> float:
    if q.endswith("m"):
        return int(q[:-1]) / 1000
    for suffix, factor in (("Ki", 1 / 1024), ("Mi", 1), ("Gi", 1024)):
        if q.endswith(suffix):
            return int(q[: -len(suffix)]) * factor
    return float(q)


def test_quota_admits_every_pod_at_the_hpa_ceiling_during_a_rollout():
    for case, plan, r, svc in services():
        docs = region_docs(case, r.name)
        hard = find(docs, "ResourceQuota", svc.name, svc.namespace)["spec"]["hard"]
        mesh = r.settings.kubernetes.istio
        pods = 0
        for t in tracks(svc):
            dep = find(docs, "Deployment", t.deployment, svc.namespace)["spec"]
            rolling = dep["strategy"]["rollingUpdate"]
            surge = math.ceil(t.replicas_max * int(rolling["maxSurge"].rstrip("%")) / 100)
            unavailable = math.floor(t.replicas_max * int(rolling["maxUnavailable"].rstrip("%")) / 100)
            # the ceiling, the surge, and the old pods a step deletes, which count until their grace period ends
            pods += t.replicas_max + surge + (surge + unavailable)
        assert int(hard["pods"]) == pods
        side_cpu = SIDECAR_REQUESTS["cpu_m"] / 1000 if mesh else 0
        side_mem = SIDECAR_REQUESTS["memory_mi"] if mesh else 0
        assert _quantity(hard["requests.cpu"]) == pytest.approx(pods * (svc.requests.cpu_millicores / 1000 + side_cpu))
        assert _quantity(hard["requests.memory"]) == pytest.approx(pods * (svc.requests.memory_mib + side_mem))
        lim_cpu = SIDECAR_LIMITS["cpu_m"] / 1000 if mesh else 0
        assert _quantity(hard["limits.cpu"]) == pytest.approx(pods * (svc.limits.cpu_millicores / 1000 + lim_cpu))
        assert hard.get(f"requests.{GPU_RESOURCE}") == (str(pods * svc.limits.gpu) if svc.limits.gpu else None)
        lr = find(docs, "LimitRange", svc.name, svc.namespace)["spec"]["limits"][0]
        assert lr["default"] == {"cpu": svc.limits.cpu, "memory": svc.limits.memory}


def test_namespace_identity_and_mesh_switches():
    for case, plan, r, svc in services():
        docs = region_docs(case, r.name)
        ns = find(docs, "Namespace", svc.namespace)
        mesh = r.settings.kubernetes.istio
        assert ns["metadata"]["labels"]["istio-injection"] == ("enabled" if mesh else "disabled")
        sa = find(docs, "ServiceAccount", svc.name, svc.namespace)
        # no service calls the API server and no cloud identity needs the API token (the IRSA and Azure webhooks
        # project their own audience-bound tokens; GKE's metadata server vouches for the pod): no token, and so
        # no Role, which without a token would be inert
        assert sa["automountServiceAccountToken"] is False
        assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding") and d["metadata"]["namespace"] == svc.namespace]
        pa = [d for d in docs if d["kind"] == "PeerAuthentication" and d["metadata"]["namespace"] == svc.namespace]
        assert [p["spec"] for p in pa] == ([{"mtls": {"mode": "STRICT"}}] if mesh else [])


# ------------------------------------------------------------------ the public entry (compiler/ir/edge.py)


@pytest.mark.parametrize("case", CASES)
def test_no_public_entry_but_the_cloud_load_balancer(case):
    """No LoadBalancer or NodePort Service, no Istio Gateway, no istio-ingress file: nothing reaches
    Kong around the load balancer and its WAF."""
    for path, docs in documents(case).items():
        assert not path.endswith("istio-ingress.yaml")
        for d in docs:
            assert d["kind"] != "Gateway", path
            if d["kind"] == "Service" and d["spec"].get("type", "ClusterIP") != "ClusterIP":
                # the one exception: Azure's internal gateway, an internal load balancer (private address only)
                assert d["metadata"]["name"] == "kong-internal-gateway" and d["spec"]["type"] == "LoadBalancer", path
                assert d["metadata"]["annotations"]["service.beta.kubernetes.io/azure-load-balancer-internal"] == "true"


def _kong_policy(docs):
    return find(docs, "NetworkPolicy", "kong-proxy", "kong")["spec"]


@pytest.mark.parametrize("case", CASES)
def test_kong_admits_the_load_balancer_on_its_tls_port_only(case):
    plan = plan_of(case)
    for r in plan.regions:
        docs = region_docs(case, r.name)
        if not r.settings.security.network_policies:
            assert not [d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["namespace"] == "kong"]
            continue
        assert find(docs, "NetworkPolicy", "default-deny", "kong")["spec"] == {
            "podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
        spec = _kong_policy(docs)
        hv = yaml.safe_load(helm.emit_region(plan, r)[f"helm/{r.name}/kong.values.yaml"])
        # the chart's pod labels: chart name kong, release kong
        assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "kong", "app.kubernetes.io/instance": "kong"}}
        lb, scrape, *gateway = spec["ingress"]
        assert lb["ports"] == [{"protocol": "TCP", "port": hv["proxy"]["tls"]["containerPort"]}]
        sources = [p["ipBlock"]["cidr"] for p in lb["from"]]
        if r.cloud == "aws":  # the ALB's nodes, in every zone's public subnet (modules/aws/network)
            assert sources == [z.public_cidr for z in r.zones]
        elif r.cloud == "azure":  # the Application Gateway's subnet: the first zone's public CIDR
            assert sources == [sorted(r.zones, key=lambda z: z.name)[0].public_cidr]
        else:  # Google's front ends and health checkers, as the network module's firewall opens them
            assert sources == list(GCP_FRONT_END_RANGES) == ["35.191.0.0/16", "130.211.0.0/22"]
        assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
        assert [p["port"] for p in scrape["ports"]] == [KONG_STATUS_PORT] + ([15020] if r.settings.kubernetes.istio else [])
        # and on GCP the internal gateway's proxies (home-region routing), from the proxy-only subnet, on the same port
        if r.cloud == "gcp" and r.addressing.proxy_cidr and len(plan.regions) > 1 and \
                [x for x in plan.regions if x.cloud == "gcp" and x.name != r.name]:
            assert gateway == [{"from": [{"ipBlock": {"cidr": r.addressing.proxy_cidr}}],
                                "ports": [{"protocol": "TCP", "port": hv["proxy"]["tls"]["containerPort"]}]}]
        elif r.cloud == "azure" and [x for x in plan.regions if x.cloud == "azure" and x.name != r.name]:
            # Azure's internal load balancer passes the peered regions' Kong addresses through (Local policy)
            from compiler.ir.network import linked_regions as _linked
            peers = sorted({c for h in _linked(plan.spec, r.name) for c in plan.region(h).addressing.pod_source_cidrs})
            assert gateway == [{"from": [{"ipBlock": {"cidr": c}} for c in peers],
                                "ports": [{"protocol": "TCP", "port": hv["proxy"]["tls"]["containerPort"]}]}]
        else:
            assert gateway == [], "nothing else reaches Kong"
        # out: exactly the routed services on their pods' port, DNS, and with the mesh istiod and the collector
        out = {(p.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name"),
                tuple(sorted(p.get("podSelector", {}).get("matchLabels", {}).items())), port["port"], port["protocol"])
               for rule in spec["egress"] for p in rule["to"] if "ipBlock" not in p for port in rule["ports"]}
        # and by address only: the linked regions' internal gateways (home-region routing, compiler/ir/network.py)
        blocks = {(p["ipBlock"]["cidr"], port["port"], port["protocol"])
                  for rule in spec["egress"] for p in rule["to"] if "ipBlock" in p for port in rule["ports"]}
        from compiler.ir.network import INTERNAL_GATEWAY_CLOUDS, linked_regions
        homes = linked_regions(plan.spec, r.name) if r.cloud in INTERNAL_GATEWAY_CLOUDS else ()
        assert blocks == {(c, 443, "TCP") for h in homes for c in plan.region(h).addressing.node_cidrs}
        want = {(s.namespace, (("app", s.name),), s.port, "TCP") for s in r.services if s.routes}
        want |= {("kube-system", (("k8s-app", "kube-dns"),), 53, proto) for proto in ("UDP", "TCP")}
        if r.settings.kubernetes.istio:
            want.add(("istio-system", (("app", "istiod"),), 15012, "TCP"))
            if r.settings.monitoring.tracing:
                want.add(("monitoring", (), 4317, "TCP"))
        assert out == want
    # the Azure gateway subnet is the one modules/azure/network creates
    network = (REPO / "templates/terraform/modules/azure/network/main.tf.j2").read_text()
    assert "first_zone = sort(keys(var.zones))[0]" in network
    assert "address_prefixes     = [var.zones[local.first_zone].public_cidr]" in network


def test_azure_ingress_programs_the_application_gateway_for_kong():
    plan = plan_of("reference")
    azure = [r for r in plan.regions if r.cloud == "azure"]
    assert azure
    module = (REPO / "templates/terraform/modules/azure/load_balancer/main.tf.j2").read_text()
    cert = re.search(r'ssl_certificate \{\n\s+name\s+= "([^"]+)"', module).group(1)
    for case in CASES:
        for r in plan_of(case).regions:
            ingresses = [d for d in region_docs(case, r.name) if d["kind"] == "Ingress"]
            assert len(ingresses) == (len(lb_hostnames(plan_of(case), r)) if r.cloud == "azure" else 0)
    for r in azure:
        ingresses = [d for d in region_docs("reference", r.name) if d["kind"] == "Ingress"]
        tf = terraform.emit_region(plan, r)[f"terraform/regions/{r.name}/main.tf"]
        hosts = []
        for ing in ingresses:
            a = ing["metadata"]["annotations"]
            assert ing["metadata"]["namespace"] == "kong"
            assert ing["spec"]["ingressClassName"] == "azure-application-gateway"  # the AKS add-on's class
            assert a["appgw.ingress.kubernetes.io/backend-protocol"] == "https"
            assert a["appgw.ingress.kubernetes.io/appgw-ssl-certificate"] == cert == "tls"
            assert a["appgw.ingress.kubernetes.io/health-probe-path"] == health_check_path(plan) == "/healthz"
            assert a["appgw.ingress.kubernetes.io/health-probe-port"] == str(KONG_PROXY_TLS_PORT)
            assert a["appgw.ingress.kubernetes.io/appgw-trusted-root-certificate"]
            (rule,) = ing["spec"]["rules"]
            # one host per Ingress, named as its backend host name: the Host Kong's routes match, and the SNI the
            # gateway checks Kong's certificate against (AGIC requires a backend host name with a trusted root)
            assert a["appgw.ingress.kubernetes.io/backend-hostname"] == rule["host"]
            hosts.append(rule["host"])
            assert rule["http"]["paths"] == [{"path": "/", "pathType": "Prefix", "backend": {
                "service": {"name": "kong-proxy", "port": {"number": KONG_PROXY_TLS_PORT}}}}]
        assert hosts == lb_hostnames(plan, r)
        assert len({i["metadata"]["name"] for i in ingresses}) == len(ingresses)
        assert re.search(r"hostnames\s+= \[" + ", ".join(f'"{h}"' for h in hosts) + r"\]", tf), "Terraform's listener names"
        assert re.search(rf"target_port\s+= {KONG_PROXY_TLS_PORT}\n", tf)


def test_azure_internal_gateway_is_an_internal_load_balancer_in_front_of_kong():
    """Home-region routing on Azure (compiler/ir/network.py): a LoadBalancer Service with AKS's internal annotation and
    the IR's address pinned (the address Terraform's private DNS record names), on the internal gateway's port, to
    Kong's TLS port, keeping the callers' addresses (Local) and admitting only the peered regions' Kong."""
    from compiler.ir.network import linked_regions
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            docs = [d for d in region_docs(case, r.name) if d["kind"] == "Service" and d["metadata"]["name"] == "kong-internal-gateway"]
            peers = [h for h in linked_regions(plan.spec, r.name)]
            if r.cloud != "azure" or not peers:
                assert docs == [], (case, r.name)
                continue
            (svc,) = docs
            a = svc["metadata"]["annotations"]
            assert svc["metadata"]["namespace"] == "kong"
            assert a["service.beta.kubernetes.io/azure-load-balancer-internal"] == "true"
            assert a["service.beta.kubernetes.io/azure-load-balancer-ipv4"] == r.addressing.internal_gateway_ip
            tf = terraform.emit_region(plan, r)[f"terraform/regions/{r.name}/main.tf"]
            assert f'address      = "{r.addressing.internal_gateway_ip}"' in tf or \
                f'address = "{r.addressing.internal_gateway_ip}"' in " ".join(tf.split())
            spec = svc["spec"]
            assert spec["type"] == "LoadBalancer" and spec["externalTrafficPolicy"] == "Local"
            assert spec["selector"] == {"app.kubernetes.io/name": "kong", "app.kubernetes.io/instance": "kong"}
            assert spec["ports"] == [{"name": "https", "protocol": "TCP", "port": 443, "targetPort": KONG_PROXY_TLS_PORT}]
            assert spec["loadBalancerSourceRanges"] == sorted(
                {c for h in peers for c in plan.region(h).addressing.pod_source_cidrs})
            # the region's docs say where the internal gateway is
            assert f"private address `{r.addressing.internal_gateway_ip}`" in kubernetes.edge_summary(plan, r)


def binding_of(case: str, region) -> tuple[str, dict]:
    text = emitted(case)[f"kubernetes/{region.name}/kong-target-group-binding.yaml.tmpl"]
    # the file also creates Kong's namespace (readiness-gate label) before the binding
    return text, next(d for d in yaml.safe_load_all(text) if d and d["kind"] == "TargetGroupBinding")


SAMPLE_ARN = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/sixfb-us-east-1-kong/0123456789abcdef"


def test_aws_target_group_binding_joins_kong_to_terraforms_target_group(tmp_path):
    """The binding names the Kong proxy Service's TLS port (the target group's port) and the ARN placeholder
    the header's command fills from the AWS root's output; filled in, it is clean YAML of the
    TargetGroupBinding CRD's fields (elbv2.k8s.aws/v1beta1: serviceRef.name/port, targetGroupARN, targetType)."""
    seen = 0
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            path = f"kubernetes/{r.name}/kong-target-group-binding.yaml.tmpl"
            assert (path in emitted(case)) == (r.cloud == "aws")
            if r.cloud != "aws":
                continue
            seen += 1
            text, tgb = binding_of(case, r)
            assert text.startswith("# Generated by platformc")
            assert (tgb["apiVersion"], tgb["kind"]) == ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding")
            assert tgb["metadata"]["namespace"] == "kong"
            hv = yaml.safe_load(helm.emit_region(plan, r)[f"helm/{r.name}/kong.values.yaml"])
            assert tgb["spec"] == {"serviceRef": {"name": hv["proxy"]["nameOverride"], "port": hv["proxy"]["tls"]["servicePort"]},
                                   "targetGroupARN": "${" + TARGET_GROUP_ARN_VARIABLE + "}", "targetType": "ip"}
            tf = terraform.emit_region(plan, r)
            assert f'output "{TARGET_GROUP_ARN_OUTPUT}"' in tf[f"terraform/regions/{r.name}/outputs.tf"]
            assert re.search(rf'target_group_name\s+= "{lb_target_name(r)}"', tf[f"terraform/regions/{r.name}/main.tf"])
            assert f"envsubst '${TARGET_GROUP_ARN_VARIABLE}'" in text and f"output -raw {TARGET_GROUP_ARN_OUTPUT}" in text
            # what the deploy step applies
            filled = text.replace("${" + TARGET_GROUP_ARN_VARIABLE + "}", SAMPLE_ARN)
            assert "$" not in "".join(line for line in filled.splitlines() if not line.startswith("#"))
            assert [d for d in yaml.safe_load_all(filled) if d][-1]["spec"]["targetGroupARN"] == SAMPLE_ARN
            (tmp_path / f"{case}-{r.name}.yaml").write_text(filled)
    assert seen >= 7
    yamllint = require_tool("yamllint")
    cfg = tmp_path / "yamllint.cfg"
    cfg.write_text(YAMLLINT_CONFIG)
    res = subprocess.run([yamllint, "-s", "-f", "parsable", "-c", str(cfg), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_kong_upstream_name_is_the_service_dns_name():
    """Kong targets `svc.dns_name`: the Service of that name and namespace exists and serves the port."""
    for case, plan, r, svc in services():
        name, namespace = svc.dns_name.split(".")[:2]
        s = find(region_docs(case, r.name), "Service", name, namespace)
        assert s["spec"]["ports"][0]["port"] == svc.port


def test_docs_table_lists_every_service():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            md = kubernetes.docs_region(plan, r)
            assert md.startswith("## ")
            workloads = md.split("| service | namespace |", 1)[1].split("\n\n", 1)[0]  # the first table
            rows = [l for l in workloads.splitlines() if l.startswith("| ")]
            assert len(rows) == len(r.services)
            for svc, row in zip(r.services, rows):
                assert row.startswith(f"| {svc.name} |")
                for t in tracks(svc):
                    assert f"`{t.deployment}` {t.replicas_min}-{t.replicas_max}" in row
                assert svc.requests.cpu in row and svc.limits.memory in row
                assert svc.rollout.type in row


ORDERS_SECRETS = '      secrets: {DB_PASSWORD: "vault:kv/data/acme/orders#db_password"}\n'


def yaml_quoted(text: str) -> str:
    """A YAML double-quoted scalar for any text: printable ASCII as is, everything else escaped."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= o < 127:
            out.append(ch)
        else:
            out.append(f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}")
    return '"' + "".join(out) + '"'


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=60))
def test_spec_text_cannot_break_out_of_the_manifest(value):
    """Any plain env value from the spec reads back as exactly that value, in exactly the objects
    the file should hold (YAML is dumped from data, never templated)."""
    assert ORDERS_SECRETS in TWO_REGION
    spec = TWO_REGION.replace(ORDERS_SECRETS, ORDERS_SECRETS + f"      env: {{APP_NOTE: {yaml_quoted(value)}}}\n")
    plan = compile_text(spec, "fuzz.yaml").plan
    r = plan.regions[0]
    svc = r.service("orders")
    text = kubernetes.emit_region(plan, r)[f"kubernetes/{r.name}/orders.yaml"]
    docs = [d for d in yaml.safe_load_all(text) if d is not None]
    assert [d["kind"] for d in docs] == [d["kind"] for d in kubernetes.service_objects(svc, r)]
    for t in tracks(svc):
        env = find(docs, "Deployment", t.deployment)["spec"]["template"]["spec"]["containers"][0]["env"]
        assert env[0] == {"name": "APP_NOTE", "value": value}
