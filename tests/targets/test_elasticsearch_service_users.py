"""Each service that `uses: [elasticsearch]` (self-managed) gets its own Elasticsearch user: a role of least
privilege on exactly its own index prefix, a password delivered into its `<service>-datastores` Secret by an
ExternalSecret, the user created by the ansible target's elasticsearch role from the IR, and the region's internal
CA mounted so the client verifies the nodes' certificates.

Elasticsearch is not installed on this machine: the security API calls are checked structurally here (the
inventory entries the uri tasks loop over, the role bodies they PUT); test_elasticsearch_clients.py runs the same
tasks against a stand-in security API over HTTPS.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from compiler.ir.data_access import (INTERNAL_CA_DIR, INTERNAL_CA_KEY, elasticsearch_ref, elasticsearch_users,
                                     service_ref)
from compiler.ir.names import elasticsearch_client_indices

# exactly what a service's user may do: the client's ping / sniffing / health (GET /, GET _nodes/http,
# _cluster/health: `monitor`), and on its own indices create, write, read, look at, delete
CLUSTER = ["monitor"]
INDICES = ["create_index", "write", "read", "view_index_metadata", "delete_index"]


def _es_users(plan):
    return [(r, a) for r in plan.regions for a in r.data_access if a.es_user]


def test_each_search_service_has_a_user_on_exactly_its_own_index_prefix(any_case):
    seen = 0
    for region in any_case.regions:
        es = region.settings.datastores.elasticsearch
        by_name = {a.service: a for a in region.data_access}
        for svc in region.services:
            a = by_name.get(svc.name)
            wants = "elasticsearch" in svc.uses and es.deployment == "self-managed"
            assert bool(a and a.es_user) == wants, (region.name, svc.name)
            if not wants:
                assert not (a and any(k.startswith("ELASTICSEARCH_") and k != "ELASTICSEARCH_URLS" for k in a.settings))
                continue
            seen += 1
            u = a.es_user
            assert u.name == svc.name and u.service == svc.name
            assert u.role == f"platformc_svc_{svc.name.replace('-', '_')}"
            assert u.index_prefix == f"{svc.name}_"
            assert u.index_patterns == (f"{svc.name}_*",)
            assert list(u.cluster) == CLUSTER and list(u.privileges) == INDICES
            assert u.definition == {"cluster": CLUSTER, "indices": [{"names": [f"{svc.name}_*"], "privileges": INDICES}]}
            # the password: the convention of every per-service credential, beside the other datastores' entries
            assert u.password_ref == service_ref(elasticsearch_ref(es_base(region)), svc.name)
            assert ("ELASTICSEARCH_PASSWORD", u.password_ref) in a.secrets
            assert a.settings["ELASTICSEARCH_USERNAME"] == u.name
            assert a.settings["ELASTICSEARCH_INDEX_PREFIX"] == u.index_prefix
            assert a.settings["ELASTICSEARCH_CA_CERT"] == f"{INTERNAL_CA_DIR}/{INTERNAL_CA_KEY}"
            assert all(x.startswith("https://") for x in a.settings["ELASTICSEARCH_URLS"].split(","))
            # the CA the nodes' certificates come from, as for PgBouncer: the published entry, its own Secret
            assert a.ca_ref and a.ca_secret == f"{svc.name}-internal-ca"
        refs = [ref for a in region.data_access for _, ref in a.secrets]
        assert len(refs) == len(set(refs)), "each credential has its own reference"
        ds = region.settings.datastores
        assert not set(refs) & {ds.pgbouncer.auth_password, ds.redis.password, ds.postgres.admin_password,
                                *ds.elasticsearch.clients.values()}
    if any_case.regions[0].name == "us-east-1":
        assert seen, "the reference has services that use elasticsearch"


def es_base(region) -> str:
    return region.settings.datastores.pgbouncer.auth_password


def test_no_role_covers_another_services_or_a_shippers_indices(any_case):
    """`<service>_*`: service names have no `_`, so `location_*` never covers `location-history_...`, and no
    Fluent Bit / Jaeger index (`containers-<region>-...`, `node-...`, `jaeger-...`) nor a built-in data-stream
    pattern (`logs-*-*` ...) falls under a service's prefix."""
    for region in any_case.regions:
        users = elasticsearch_users(region.data_access)
        shippers = [p.replace("*", "2026.12.02") for ps in elasticsearch_client_indices(region.name).values() for p in ps]
        for u in users:
            own = f"{u.index_prefix}bookings-v1"
            assert any(fnmatch.fnmatchcase(own, p) for p in u.index_patterns)
            others = [f"{v.index_prefix}x" for v in users if v is not u] + shippers
            others += [f"{u.name}-history_x", f"{u.name}-x", f"{u.name}x_y"]  # a longer service name, other separators
            for idx in others:
                assert not any(fnmatch.fnmatchcase(idx, p) for p in u.index_patterns), (u.name, idx)
            assert not any(fnmatch.fnmatchcase(own, p) for p in ("logs-*-*", "metrics-*-*", "traces-*-*"))


# ---------------------------------------------------------------- the generated files

@pytest.fixture(scope="module")
def tree(reference, tmp_path_factory):
    outputs, owners = emit(reference, ["ansible", "helm", "kubernetes"], with_docs=False)
    root = tmp_path_factory.mktemp("es-service-users") / "generated"
    writer.apply(writer.plan_write(root, outputs["generated"], owners))
    return reference, root


def _docs(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if isinstance(d, dict)]


def test_the_elasticsearch_role_creates_each_services_user_from_the_ir(tree):
    plan, root = tree
    regions = [r for r in plan.regions if elasticsearch_users(r.data_access)]
    assert regions
    for region in regions:
        gv = yaml.safe_load((root / "ansible/inventories" / region.name / "group_vars/elasticsearch.yml").read_text())
        entries = {c["name"]: c for c in gv["elasticsearch_clients"]}
        for u in elasticsearch_users(region.data_access):
            c = entries[u.service]
            assert c["username"] == u.name  # not a secret: the service's name
            assert c["role"] == u.role
            body = {k: v for k, v in c["definition"].items() if k != "metadata"}
            assert body == u.definition
            # the digest the role compares before a PUT, computed as for the shippers' roles
            assert c["definition"]["metadata"]["platformc_digest"] == hashlib.sha256(
                json.dumps(u.definition, sort_keys=True).encode()).hexdigest()
            path, _, field = u.password_ref.removeprefix("vault:").partition("#")
            assert c["password"].startswith("{{ lookup(") and f"'{path}'" in c["password"], c["password"]
            assert c["password"].endswith(f"['{field}'] }}}}"), c["password"]
        # the shippers keep theirs; every role is its own
        assert {"fluent-bit", "jaeger"} <= set(entries)
        assert len({c["role"] for c in entries.values()}) == len(entries)


def test_each_deployment_reads_its_password_and_mounts_the_ca(tree):
    plan, root = tree
    for region in plan.regions:
        for a in region.data_access:
            if not a.es_user:
                continue
            k8s = _docs(root / "kubernetes" / region.name / f"{a.service}.yaml")
            deps = [d for d in k8s if d["kind"] == "Deployment"]
            assert deps
            for dep in deps:
                pod = dep["spec"]["template"]["spec"]
                (ctr,) = pod["containers"]
                assert {"secretRef": {"name": a.name}} in ctr["envFrom"]
                assert {"configMapRef": {"name": a.name}} in ctr["envFrom"]
                vols = {v["name"]: v for v in pod["volumes"]}
                (mount,) = [m for m in ctr["volumeMounts"] if m["mountPath"] == INTERNAL_CA_DIR]
                assert mount["readOnly"] is True
                assert vols[mount["name"]]["secret"]["secretName"] == a.ca_secret
            charts = root / "helm" / region.name / "charts" / f"secrets-{a.namespace}" / "templates"
            ext = {d["spec"]["target"]["name"]: d for f in charts.glob("*.yaml") for d in _docs(f)
                   if d["kind"] == "ExternalSecret"}
            data = {x["secretKey"]: x["remoteRef"] for x in ext[a.name]["spec"]["data"]}
            path, _, field = a.es_user.password_ref.removeprefix("vault:").partition("#")
            assert data["ELASTICSEARCH_PASSWORD"] == {"key": path, "property": field}
            ca = {x["secretKey"]: x["remoteRef"] for x in ext[a.ca_secret]["spec"]["data"]}
            assert set(ca) == {INTERNAL_CA_KEY}


def test_r038_an_env_reference_the_services_search_passwords_derive_from():
    """A service that uses only the self-managed Elasticsearch still gets its password from beside the PgBouncer
    auth reference: an `env:` one there cannot reach its pods (R038), as for a PostgreSQL user."""
    import re

    from compiler.errors import SpecError
    from compiler.pipeline import compile_text
    from tests.conftest import REPO
    text = (REPO / "platform.yaml").read_text()
    text = text.replace('auth_password: "vault:secret/data/platform/pgbouncer#auth_password"', 'auth_password: "env:PGB_AUTH"')
    text = re.sub(r"uses: \[postgres\]", "uses: []", text)
    text = re.sub(r"uses: \[postgres, ", "uses: [", text)
    assert "uses: [redis, elasticsearch]" in text and "postgres]" not in text.split("datastores:")[0]
    with pytest.raises(SpecError) as exc:
        compile_text(text, "platform.yaml")
    hits = [d for d in exc.value.diagnostics if d.code == "R038"]
    assert hits and all("env:PGB_AUTH" in d.message for d in hits)


def test_managed_search_gets_no_user_or_password_and_says_how_it_signs(tmp_path):
    """Amazon OpenSearch Service (deployment: managed): no user, password or CA of ours; the service signs as its IAM
    role (tests/targets/test_managed_search_access.py checks the grants); the region's docs say so and verify proves
    the pods' access."""
    from compiler.pipeline import compile_text
    from compiler.targets import ansible
    from compiler.verify import verify
    from tests.conftest import REPO
    text = (REPO / "tests/cases/aws-only/platform.yaml").read_text()
    text = text.replace("      uses: [postgres, redis]\n", "      uses: [postgres, redis, elasticsearch]\n", 1)
    text = text.replace("    elasticsearch:\n      nodes: 3", "    elasticsearch:\n      deployment: managed\n      nodes: 3")
    plan = compile_text(text, "platform.yaml").plan
    searching = [(r, a) for r in plan.regions for a in r.data_access if "ELASTICSEARCH_URLS" in a.settings]
    assert searching
    for region, a in searching:
        assert a.es_user is None
        assert [k for k in a.settings if k.startswith("ELASTICSEARCH_")] == [
            "ELASTICSEARCH_AUTH_MODE", "ELASTICSEARCH_AWS_REGION", "ELASTICSEARCH_DOMAIN_NAME",
            "ELASTICSEARCH_INDEX_PREFIX", "ELASTICSEARCH_URLS"]
        assert a.settings["ELASTICSEARCH_AUTH_MODE"] == "aws-sigv4"
        assert not [k for k, _ in a.secrets if k.startswith("ELASTICSEARCH_")]
        docs = ansible.docs_region(plan, region)
        assert "no user is created for the services and no password\nis delivered" in docs
        assert f"| {a.service} | `{region.identity(a.service).name}` | `{a.service}_*` |" in docs
    outputs, owners = emit(plan, ["connections", "kubernetes", "kong", "helm", "terraform", "ansible"], with_docs=False)
    root = tmp_path / "generated"
    writer.apply(writer.plan_write(root, outputs["generated"], owners))
    assert not [b for b in verify(root).broken if "Elasticsearch" in b.message or "ELASTICSEARCH" in b.message]
