"""Secrets delivered by the External Secrets Operator (compiler/targets/helm/secrets.py).

- every ClusterSecretStore and ExternalSecret validates against the v1 openAPIV3Schema of the
  operator's CRDs (../shared/reference/crds/external-secrets/2.9.0/), strictly: an unknown field fails
  (the API server would prune it silently);
- every Secret a Deployment (kubernetes target) or a Helm release's values reference, by name and key,
  has an ExternalSecret in the same namespace producing that key, in a chart the helmfile installs
  before the release that needs it;
- Fluent Bit and Jaeger reach Elasticsearch over HTTPS on every node, with their credentials and the CA.
"""

from __future__ import annotations

import copy
import importlib
from functools import lru_cache
from pathlib import PurePosixPath

import jsonschema
import pytest
import yaml

from compiler.ir.names import ELASTICSEARCH_CLIENT_SECRETS, MONITORING_NAMESPACE
from compiler.docs import secret_references
from compiler.targets import TARGETS, helm, kubernetes
from compiler.targets.helm import observability as obs
from compiler.targets.helm import secrets
from compiler.targets.helm.fluentbit import parse_classic
from tests.conftest import REPO, require_shared
from tests.targets.test_kubernetes import CASES, plan_of

CRD_FILES = {"ExternalSecret": "external-secrets.io_externalsecrets.yaml",
             "ClusterSecretStore": "external-secrets.io_clustersecretstores.yaml"}


@pytest.fixture(scope="module")
def crds():
    base = require_shared("reference/crds/external-secrets/2.9.0")
    out = {}
    for kind, name in CRD_FILES.items():
        crd = yaml.safe_load((base / name).read_text())
        version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
        assert version["served"] and version["storage"]
        out[kind] = version["schema"]["openAPIV3Schema"]
    return out


def unknown_fields(doc, schema, path="") -> list[str]:
    """Keys the schema does not declare (structural schemas: the API server prunes them)."""
    out = []
    if isinstance(doc, dict) and schema.get("type") == "object":
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for k, v in doc.items():
            if props is not None and k in props:
                out += unknown_fields(v, props[k], f"{path}.{k}")
            elif isinstance(extra, dict):
                out += unknown_fields(v, extra, f"{path}.{k}")
            elif props is not None and not schema.get("x-kubernetes-preserve-unknown-fields") and path != ".metadata":
                out.append(f"{path}.{k}")
    elif isinstance(doc, list) and "items" in schema:
        for i, v in enumerate(doc):
            out += unknown_fields(v, schema["items"], f"{path}[{i}]")
    return out


def crd_errors(doc, crds) -> list[str]:
    schema = crds[doc["kind"]]
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]
    return errors + [f"unknown field {p}" for p in unknown_fields(doc, schema)]


@lru_cache(maxsize=None)
def helm_files(case: str) -> dict[str, str]:
    plan = plan_of(case)
    out = {}
    for r in plan.regions:
        out.update(helm.emit_region(plan, r))
    return out


def eso_docs(case: str, region: str) -> list[tuple[str, dict]]:
    """(file, object) for every object in the region's local secrets charts, read back from the files."""
    out = []
    for path, text in helm_files(case).items():
        if path.startswith(f"helm/{region}/charts/") and "/templates/" in path:
            out += [(path, d) for d in yaml.safe_load_all(text) if d]
    return out


def regions():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            yield case, plan, r


# ------------------------------------------------------------------ the CRDs


def test_every_object_validates_against_the_operator_crds(crds):
    kinds = set()
    for case, plan, r in regions():
        for path, doc in eso_docs(case, r.name):
            assert doc["apiVersion"] == "external-secrets.io/v1"
            errors = crd_errors(doc, crds)
            assert not errors, f"{path} {doc['kind']}/{doc['metadata']['name']}: {errors}"
            kinds.add(doc["kind"])
    assert kinds == {"ExternalSecret", "ClusterSecretStore"}


def test_the_crd_check_is_not_vacuous(crds):
    plan = plan_of("reference")
    r = plan.regions[0]
    es = secrets.external_secrets(r)[0]
    assert crd_errors(es, crds) == []
    bad = copy.deepcopy(es)
    bad["spec"]["data"][0]["remoteRef"]["keyy"] = bad["spec"]["data"][0]["remoteRef"].pop("key")
    assert any("keyy" in e for e in crd_errors(bad, crds))
    bad = copy.deepcopy(es)
    bad["spec"]["secretStoreRef"]["kind"] = "SecretStor"
    assert crd_errors(bad, crds)
    store = secrets.stores(plan, r)[0]
    bad = copy.deepcopy(store)
    del bad["spec"]["provider"]["vault"]["server"]
    assert any("server" in e for e in crd_errors(bad, crds))


# ------------------------------------------------------------------ references -> ExternalSecrets


def _secret_refs_in(node, out: set, where: str):
    """(namespace-less) Secret names and keys a pod spec or chart values name: secretKeyRef, secret volumes."""
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            out.add((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"], where))
        if "secret" in node and isinstance(node["secret"], dict) and "secretName" in node["secret"]:
            keys = [i["key"] for i in node["secret"].get("items", [])] or [None]
            out.update((node["secret"]["secretName"], k, where) for k in keys)
        if "secretName" in node and "mountPath" in node:  # jaeger chart extraSecretMounts
            out.add((node["secretName"], None, where))
        for v in node.values():
            _secret_refs_in(v, out, where)
    elif isinstance(node, list):
        for v in node:
            _secret_refs_in(v, out, where)


def referenced(case: str, plan, r) -> set[tuple[str, str, str | None, str]]:
    """(namespace, Secret, key or None, where) for every Secret the region's pods and releases reference,
    read from the generated files."""
    out = set()
    for path, text in kubernetes.emit_region(plan, r).items():
        if not path.endswith(".yaml"):
            continue
        for d in yaml.safe_load_all(text):
            if d and d.get("kind") == "Deployment":
                refs: set = set()
                _secret_refs_in(d["spec"]["template"]["spec"], refs, path)
                out |= {(d["metadata"]["namespace"], n, k, w) for n, k, w in refs}
    files = helm_files(case)
    hf = yaml.safe_load(files[f"helm/{r.name}/helmfile.yaml"])
    for e in hf["releases"]:
        for v in e.get("values", []):
            values = yaml.safe_load(files[f"helm/{r.name}/{v}"])
            where = f"helm/{r.name}/{v}"
            refs = set()
            _secret_refs_in(values, refs, where)
            if e["name"] == "kube-prometheus-stack":
                grafana = values.get("grafana", {})
                if grafana.get("enabled") and "existingSecret" in grafana.get("admin", {}):
                    refs |= {(grafana["admin"]["existingSecret"], k, where) for k in ("admin-user", "admin-password")}
                for name in values.get("alertmanager", {}).get("alertmanagerSpec", {}).get("secrets", []):
                    refs.add((name, None, where))
            out |= {(e["namespace"], n, k, w) for n, k, w in refs}
    return out


def produced(case: str, region: str) -> dict[tuple[str, str], set[str]]:
    out = {}
    for _, d in eso_docs(case, region):
        if d["kind"] == "ExternalSecret":
            keys = {x["secretKey"] for x in d["spec"]["data"]} | set(d["spec"]["target"].get("template", {}).get("data", {}))
            out[(d["metadata"]["namespace"], d["spec"]["target"]["name"])] = keys
    return out


def test_every_referenced_secret_has_an_external_secret():
    seen = set()
    for case, plan, r in regions():
        made = produced(case, r.name)
        missing = []
        for ns, name, key, where in sorted(referenced(case, plan, r), key=str):
            undelivered = {(w.namespace, w.name) for w, _ in secrets.unsupported(r)}
            if (ns, name) in undelivered:
                continue  # an `env:` reference: named in the helmfile header and docs as the deploy job's
            seen.add(name if ns == MONITORING_NAMESPACE else "<service>")
            if (ns, name) not in made or (key is not None and key not in made[(ns, name)]):
                missing.append(f"{where}: {ns}/{name} key {key}")
        assert not missing, f"{case}/{r.name}:\n" + "\n".join(missing)
    assert {"grafana-admin", "alertmanager-receivers", *ELASTICSEARCH_CLIENT_SECRETS.values(), "<service>"} <= seen


def test_service_secrets_carry_exactly_the_spec_references():
    plan = plan_of("reference")
    r = plan.region("us-east-1")
    made = {(d["metadata"]["namespace"], d["metadata"]["name"]): d for _, d in eso_docs("reference", r.name)
            if d["kind"] == "ExternalSecret"}
    services = [s for s in r.services if s.secrets]
    assert {s.name for s in services} >= {"user", "payment", "notification"}
    for svc in services:
        d = made[(svc.namespace, svc.name)]
        got = {x["secretKey"]: x["remoteRef"] for x in d["spec"]["data"]}
        for env, ref in svc.secrets.items():
            path, _, prop = ref.removeprefix("vault:").partition("#")
            assert got[env] == {"key": path, "property": prop}
        assert d["spec"]["secretStoreRef"] == {"name": "vault", "kind": "ClusterSecretStore"}


def test_alertmanager_reads_the_keys_the_secret_holds():
    from compiler.targets import monitoring
    plan = plan_of("reference")
    r = plan.regions[0]
    am = monitoring.alertmanager(plan, r)
    files = {c[k] for recv in am["receivers"] for cfgs in recv.values() if isinstance(cfgs, list)
             for c in cfgs for k in ("routing_key_file", "api_url_file") if k in c}
    keys = produced("reference", r.name)[(MONITORING_NAMESPACE, "alertmanager-receivers")]
    assert files == {f"/etc/alertmanager/secrets/alertmanager-receivers/{k}" for k in keys} and len(files) == 2


def test_one_store_per_scheme_with_the_specs_provider_settings():
    plan = plan_of("reference")
    r = plan.regions[0]
    (store,) = secrets.stores(plan, r)
    vault = store["spec"]["provider"]["vault"]
    assert store["metadata"]["name"] == "vault" and vault["server"] == r.settings.security.vault_address
    # Vault's JWT auth with a token of the operator's own ServiceAccount (tests/targets/test_vault_login.py: the
    # mount, role and audience are vault/configure.sh's)
    assert set(vault["auth"]) == {"jwt"}
    assert vault["auth"]["jwt"]["kubernetesServiceAccountToken"]["serviceAccountRef"] == {
        "name": "external-secrets", "namespace": "external-secrets", "audiences": ["vault"]}
    assert secrets.parse("azure-kv:kv1/db#pw") == secrets.Ref("azure-kv", "db", "pw", vault="kv1")
    assert secrets.parse("aws-sm:acme/app").store == "aws-sm"
    # each cloud's store, from the same spec with other references
    import dataclasses
    for scheme, cloud, expect in (("aws-sm", "aws", {"aws": {"service": "SecretsManager", "region": "us-east-1"}}),
                                  ("gcp-sm", "gcp", {"gcpsm": {"projectID": "acme-prod"}})):
        p2 = plan_of("two-region")
        region = next(x for x in p2.regions if x.cloud == cloud)
        if cloud == "aws":
            doc = secrets.cluster_secret_store(p2, region, scheme, secrets.parse(f"{scheme}:x"))
            assert doc["spec"]["provider"] == expect
        else:
            doc = secrets.cluster_secret_store(p2, region, scheme, secrets.parse(f"{scheme}:x"))
            assert doc["spec"]["provider"] == expect


def test_every_secret_the_cluster_reads_has_a_store():
    """R038 refuses env: references (and vault: without an address) wherever the cluster makes a Secret, so a
    valid spec leaves the helm target nothing it cannot deliver."""
    for case in ("reference", "two-region"):
        for r in plan_of(case).regions:
            assert secrets.unsupported(r) == [], (case, r.name)


def test_an_env_reference_for_a_cluster_secret_is_refused_at_its_line():
    from compiler.errors import SpecError
    from compiler.pipeline import compile_text
    text = (REPO / "tests/cases/two-region/platform.yaml").read_text()
    old = 'grafana_admin_password: "vault:kv/data/acme/grafana#admin_password"'
    assert text.count(old) == 2
    bad = text.replace(old, 'grafana_admin_password: "env:GRAFANA_ADMIN"', 1)
    with pytest.raises(SpecError) as exc:
        compile_text(bad, "platform.yaml")
    line = bad[: bad.index('grafana_admin_password: "env:')].count("\n") + 1
    assert ("R038", line) in [(d.code, d.line) for d in exc.value.diagnostics]


# ------------------------------------------------------------------ the helmfile installs them in order


def test_secrets_charts_are_installed_before_what_needs_them():
    for case, plan, r in regions():
        files = helm_files(case)
        hf = yaml.safe_load(files[f"helm/{r.name}/helmfile.yaml"])
        order = [f"{e['namespace']}/{e['name']}" for e in hf["releases"]]
        entries = {f"{e['namespace']}/{e['name']}": e for e in hf["releases"]}
        assert order.index("external-secrets/external-secrets") < order.index("monitoring/platform-secrets")
        assert entries["monitoring/platform-secrets"]["needs"] == ["external-secrets/external-secrets"]
        for name in ("kube-prometheus-stack", "jaeger", "fluent-bit"):
            if f"monitoring/{name}" in entries:
                assert "monitoring/platform-secrets" in entries[f"monitoring/{name}"]["needs"]
        for key, e in entries.items():
            if e["chart"].startswith("./"):
                d = PurePosixPath(f"helm/{r.name}") / e["chart"]
                chart = yaml.safe_load(files[f"{d}/Chart.yaml"])
                assert chart["apiVersion"] == "v2" and chart["name"] == e["name"]
                assert "{{" not in files[f"{d}/templates/external-secrets.yaml"]
                docs = [x for x in yaml.safe_load_all(files[f"{d}/templates/external-secrets.yaml"]) if x]
                assert all(x.get("metadata", {}).get("namespace", e["namespace"]) == e["namespace"] for x in docs)


# ------------------------------------------------------------------ the Elasticsearch clients


def test_fluent_bit_and_jaeger_use_https_credentials_and_every_node():
    checked = 0
    for case, plan, r in regions():
        rels = {x.name: x for x in helm.releases(plan, r)[0]}
        files = helm_files(case)
        if "fluent-bit" not in rels:
            continue
        conn = next(c for c in r.connections_from("fluent-bit") if c.dest.name == "elasticsearch")
        fb = yaml.safe_load(files[f"helm/{r.name}/fluent-bit.values.yaml"])
        upstream = parse_classic(fb["config"]["extraFiles"][obs.ES_UPSTREAM_FILE])
        nodes = [dict(e) for name, e in upstream if name == "NODE"]
        assert sorted(n["Host"] for n in nodes) == sorted(conn.dest.hosts) and len(nodes) == len(r.hosts_in("elasticsearch"))
        assert all(n["Port"] == str(conn.dest_port) and n["tls"] == "On" and n["tls.verify"] == "On" for n in nodes)
        for name, entries in parse_classic(fb["config"]["outputs"]):
            e = dict(entries)
            assert "Host" not in e and e["Upstream"] == f"{obs.FLUENT_BIT_CONF_DIR}/{obs.ES_UPSTREAM_FILE}"
            assert e["HTTP_User"] == "${ES_USERNAME}" and e["HTTP_Passwd"] == "${ES_PASSWORD}"
            assert e["tls"] == "On" and e["tls.verify"] == "On" and e["tls.ca_file"].endswith("/ca.crt")
        env = {x["name"]: x["valueFrom"]["secretKeyRef"] for x in fb["env"]}
        assert env == {"ES_USERNAME": {"name": "elasticsearch-fluent-bit", "key": "username"},
                       "ES_PASSWORD": {"name": "elasticsearch-fluent-bit", "key": "password"}}
        if "jaeger" in rels:
            jconn = next(c for c in r.connections_from("jaeger") if c.dest.name == "elasticsearch")
            jv = yaml.safe_load(files[f"helm/{r.name}/jaeger.values.yaml"])
            es = jv["userconfig"]["extensions"]["jaeger_storage"]["backends"]["primary_store"]["elasticsearch"]
            assert es["server_urls"] == [f"https://{h}:{jconn.dest_port}" for h in jconn.dest.hosts]
            assert es["auth"]["basic"]["password_file"].startswith(obs.ES_CREDENTIALS_DIR["jaeger"])
            assert es["tls"] == {"insecure": False, "ca_file": f"{obs.ES_CREDENTIALS_DIR['jaeger']}/ca.crt"}
            assert jv["jaeger"]["extraVolumes"][0]["secret"]["secretName"] == "elasticsearch-jaeger"
            assert jv["storage"]["elasticsearch"]["url"].startswith("https://")
        checked += 1
    assert checked >= 3


def test_the_region_page_lists_every_entry_the_external_secrets_read():
    """Each (entry, field) any ExternalSecret of the region reads is on the region page's list, once, with who writes
    it: the internal CA's entry the region's Ansible, the rest the operators before `helmfile apply`. A missing entry
    fails its ExternalSecret and the releases waiting for the Secret time out."""
    for case, plan, r in regions():
        entries = secrets.entries_to_create(r)
        # the ExternalSecret's remote key: an Azure Key Vault entry is listed as <vault>/<name>, read as <name>
        listed = {(e.split("/", 1)[1] if scheme == "azure-kv" else e, f)
                  for scheme, e, props, _ in entries for f in props}
        read = set()
        for _, doc in eso_docs(case, r.name):
            if doc["kind"] == "ExternalSecret":
                read |= {(i["remoteRef"]["key"], i["remoteRef"]["property"])
                         for i in doc["spec"]["data"] if i["remoteRef"].get("property")}
        assert read <= listed, (case, r.name, read - listed)
        assert len(entries) == len({(scheme, e) for scheme, e, _, _ in entries})
        for _, entry, _, who in entries:
            # Ansible writes the internal CA and, on Azure, Kong's certificate issued from it
            assert ("Ansible" in who) == ("internal-ca" in entry or "kong-proxy-tls" in entry), (case, r.name, entry, who)
        # the page's Secret references section (compiler/docs.py) lists each field as its own reference
        page = secret_references(plan, r, [importlib.import_module(m) for m in TARGETS.values()])
        assert all(f"`{scheme}:{entry}#{f}`" in page for scheme, entry, props, _ in entries for f in props), (case, r.name)
        # and the page's writer column says the same as the helm target's list: Ansible's entries are the
        # region's pgbouncer.yml's, never the operators'
        rows = {line.split(" | ")[0].strip("| `"): line.split(" | ")[-1] for line in page.splitlines()
                if line.startswith("| `")}
        for scheme, entry, props, who in entries:
            for f in props:
                written_by = rows[f"{scheme}:{entry}#{f}"]
                assert ("pgbouncer.yml" in written_by) == ("Ansible" in who), (case, r.name, entry, written_by)
