"""Pods verify PgBouncer (issue 11): PGSSLMODE=verify-full against the region's internal CA, delivered to them.

The chain, per service that uses postgres in every region of every case: its ConfigMap sets verify-full and
PGSSLROOTCERT; each of its Deployments mounts the Secret `<service>-internal-ca` (key ca.crt) at exactly that
path; an ExternalSecret creates that Secret in its namespace from one store entry; Ansible's internal_ca role
publishes the CA certificate to exactly that entry and field; the operator's identity (Vault policy / cloud
grant) may read it and Terraform creates its container on the region's cloud store; PgBouncer's certificate
names the host the pods dial. The real handshake is tests/targets/test_pgbouncer_verify_full.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from compiler.emit import emit
from compiler.ir.data_access import INTERNAL_CA_DIR, INTERNAL_CA_KEY, PG_ENV, internal_ca_ref
from compiler.ir.edge import kong_proxy_tls_refs
from compiler.ir.identity import EXTERNAL_SECRETS, STORE_SCHEME, identity_of, parse_ref
from compiler.pipeline import compile_file
from compiler.targets.ansible import roles_data
from tests.conftest import REPO

CASES = ["reference", "two-region", "aws-only", "gcp-only", "azure-only"]


@pytest.fixture(scope="module", params=CASES)
def case(request):
    plan = compile_file(str(REPO / "tests/cases" / request.param / "platform.yaml")).plan
    outputs, _ = emit(plan, ["kubernetes", "helm", "ansible"], with_docs=False)
    return plan, {path: text for path, (_, text) in outputs["generated"].items()}  # (owner, text)


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def _objects(files: dict, prefix: str) -> list[dict]:
    out = []
    for path, text in files.items():
        if path.startswith(prefix) and path.endswith((".yaml", ".yml")):
            out += _docs(text)
    return out


def test_every_postgres_client_verifies_pgbouncer_with_the_mounted_ca(case):
    plan, files = case
    checked = 0
    for region in plan.regions:
        k8s = _objects(files, f"kubernetes/{region.name}/")
        helm = _objects(files, f"helm/{region.name}/charts/")
        pgb_vars = yaml.safe_load(files[f"ansible/inventories/{region.name}/group_vars/pgbouncer.yml"])
        for svc in region.services:
            a = next((x for x in region.data_access if x.service == svc.name), None)
            deployments = [d for d in k8s if d["kind"] == "Deployment" and d["metadata"]["namespace"] == svc.namespace
                           and d["spec"]["template"]["spec"]["serviceAccountName"] == svc.name]
            assert deployments, f"{region.name}/{svc.name}: no Deployment"
            if a is None or a.db_role is None:
                for d in deployments:  # no CA where nothing verifies PgBouncer
                    assert not any(v.get("secret", {}).get("secretName", "").endswith("-internal-ca")
                                   for v in d["spec"]["template"]["spec"]["volumes"])
                continue
            checked += 1
            (cm,) = [d for d in k8s if d["kind"] == "ConfigMap" and d["metadata"]["name"] == a.name
                     and d["metadata"]["namespace"] == svc.namespace]
            data = cm["data"]
            assert data[PG_ENV["sslmode"]] == "verify-full"
            root = Path(data[PG_ENV["sslrootcert"]])
            assert root == Path(INTERNAL_CA_DIR) / INTERNAL_CA_KEY
            for d in deployments:
                pod = d["spec"]["template"]["spec"]
                (c,) = [c for c in pod["containers"] if c["name"] == svc.name]
                assert {"configMapRef": {"name": a.name}} in c["envFrom"]
                mounts = [m for m in c["volumeMounts"] if m["mountPath"] == str(root.parent)]
                assert len(mounts) == 1 and mounts[0].get("readOnly") is True, c["volumeMounts"]
                (vol,) = [v for v in pod["volumes"] if v["name"] == mounts[0]["name"]]
                assert vol["secret"]["secretName"] == a.ca_secret == f"{svc.name}-internal-ca"
                assert {"key": INTERNAL_CA_KEY, "path": root.name} in vol["secret"]["items"]
            # the ExternalSecret that creates that Secret, in that namespace, from the entry Ansible publishes to
            (es,) = [e for e in helm if e.get("kind") == "ExternalSecret" and e["metadata"]["name"] == a.ca_secret
                     and e["metadata"]["namespace"] == svc.namespace]
            assert es["spec"]["target"]["name"] == a.ca_secret
            ref = parse_ref(a.ca_ref)
            assert a.ca_ref == internal_ca_ref(region.settings.datastores.pgbouncer.auth_password, region.name)
            assert es["spec"]["data"] == [{"secretKey": INTERNAL_CA_KEY,
                                           "remoteRef": {"key": ref.key, "property": ref.prop}}]
            store = pgb_vars["pgbouncer_ca_store"]
            assert pgb_vars["pgbouncer_ca_publish"] is True
            assert (store["scheme"], store["entry"], store["field"]) == (ref.scheme, ref.key, ref.prop)
            if ref.scheme == "azure-kv":
                assert store["vault"] == ref.vault
            if ref.scheme == "vault":
                assert "https://" + store["host"] == str(region.settings.security.vault_address).rstrip("/")
            # the operator may read it, and a cloud store's container exists
            eso = identity_of(region.identities, EXTERNAL_SECRETS)
            if ref.scheme == "vault":
                assert ref.key in eso.vault_paths
            elif ref.scheme == STORE_SCHEME[region.cloud]:
                assert ref.entry in {r.entry for r in eso.secrets}
                assert ref.entry in {r.entry for r in region.secret_entries}
            # PgBouncer's certificate names the host the pods dial
            assert data[PG_ENV["host"]] in pgb_vars["pgbouncer_tls_names"]
    assert checked


def test_one_ca_entry_per_region():
    plan = compile_file(str(REPO / "platform.yaml")).plan
    refs = {r.name: {a.ca_ref for a in r.data_access if a.ca_ref} for r in plan.regions}
    assert all(len(v) == 1 for v in refs.values())
    assert len({next(iter(v)) for v in refs.values()}) == len(plan.regions)  # each region its own CA


def test_pgbouncer_role_issues_its_certificate_for_the_inventory_names():
    role = roles_data.pgbouncer()
    (inc,) = [t for t in role.tasks["main"] if t.get("ansible.builtin.include_role", {}).get("name") == "tls"]
    assert inc["vars"]["tls_names"] == "{{ pgbouncer_tls_names }}"
    assert role.defaults["pgbouncer_tls_names"] == ["{{ ansible_host }}", "{{ inventory_hostname }}"]


def test_pgbouncer_publishes_the_ca_that_issued_its_certificate_never_in_check_mode():
    from compiler.targets.ansible.roles_tls import tls
    tasks = roles_data.pgbouncer().tasks["main"]
    issue = next(i for i, t in enumerate(tasks) if t.get("ansible.builtin.include_role", {}).get("name") == "tls")
    # the CA's publishing (Azure's Kong certificate tasks, also on the controller, are tests/targets/test_kong_proxy_tls.py's)
    publish = [i for i, t in enumerate(tasks) if t.get("delegate_to") == "localhost"
               and "pgbouncer_ca_publish | bool" in t["when"]]
    assert publish and min(publish) > issue  # after the tls role read the CA certificate (tls_ca_cert)
    (read,) = [t for t in tls().tasks["main"] if t.get("register") == "tls_ca_cert"]
    assert read["run_once"] is True and read["ansible.builtin.slurp"]["src"] == "{{ tls_ca_dir }}/ca.crt"
    for i in publish:
        t = tasks[i]
        assert t["run_once"] is True and t["become"] is False
        assert t["when"][:3] == ["pgbouncer_ca_publish | bool", "not ansible_check_mode", "tls_ca_cert is not skipped"]
        writes = t.get("ansible.builtin.uri", {}).get("method") == "POST" or "put-secret-value" in str(t) \
            or "versions', 'add'" in str(t) or "'secret', 'set'" in str(t)
        if writes:  # only when the stored value differs (each write is a new version)
            assert len(t["when"]) == 5, t
        text = str(t)
        assert "tls_ca_cert.content | b64decode" in text or t.get("register")
    assert roles_data.pgbouncer().defaults["pgbouncer_ca_publish"] is False


def test_vault_gets_a_policy_that_lets_ansible_write_exactly_the_ca_entry():
    """vault: the ESO policy only reads the entry; configure.sh writes the publisher's policy (write on that path
    alone) for the token Ansible runs with."""
    import re
    import subprocess
    plan = compile_file(str(REPO / "platform.yaml")).plan
    outputs, _ = emit(plan, ["terraform"], with_docs=False)
    files = {path: text for path, (_, text) in outputs["generated"].items()}
    for region in plan.regions:
        (ref,) = {parse_ref(a.ca_ref) for a in region.data_access if a.ca_ref}
        assert ref.scheme == "vault"
        script = files[f"terraform/regions/{region.name}/vault/configure.sh"]
        m = re.search(r"vault policy write (\S+)-internal-ca-publisher - <<'EOF'\n(.*?)\nEOF\n", script, re.S)
        assert m and m.group(1) == region.cluster_name, script
        # Azure: and Kong's certificate for the Application Gateway, which the same play issues and writes
        kong = sorted({parse_ref(r).key for _, r in kong_proxy_tls_refs(region)})
        assert m.group(2) == "\n".join(f'path "{p}" {{\n  capabilities = ["create", "read", "update"]\n}}'
                                       for p in [ref.key, *kong])
        assert bool(kong) == (region.cloud == "azure")
        assert f'path "{ref.key}"' in files[f"terraform/regions/{region.name}/vault/external-secrets.hcl"]
        assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
