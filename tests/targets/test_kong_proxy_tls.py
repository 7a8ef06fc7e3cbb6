"""Azure: the Application Gateway verifies Kong's certificate, and all of it is generated (review r1, finding 3).

The chain, per Azure region of every case (compiler/ir/edge.py, kong_proxy_tls):
- the Ingresses name the trusted root certificate the load_balancer module installs, by one IR name, and each names
  its own host as backend host name (the Host Kong's routes match, the SNI the gateway checks);
- Kong's certificate Secret is written by an ExternalSecret (release secrets-kong, before Kong's) from the store
  entry the region's Ansible writes, and the kong chart mounts that Secret (secretVolumes) and serves it on its TLS
  listener (env ssl_cert / ssl_cert_key under /etc/secrets/<Secret>/);
- ESO may read the entry, the Ansible token may write it, and Ansible writes the CA to the vault and secret the
  Terraform module reads the trusted root from;
- the certificate names every host the gateway forwards, signed by the region's CA (a real run of the role's tasks).
Elsewhere nothing of it: the ALB and Google's front ends do not verify their backends.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
from pathlib import Path

import hcl2
import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from compiler.ir.edge import kong_proxy_tls, lb_hostnames
from compiler.ir.identity import EXTERNAL_SECRETS, parse_ref
from compiler.pipeline import compile_file
from tests.conftest import REPO, VENV_BIN, require_tool
from tests.targets.hcl_support import resources, unquote
from tests.targets.test_datastores_support import ISOLATE, make_ip_tls, require_isolation
from tests.targets.test_pgbouncer_ca_publish import VAULT_STUB

CASES = ["reference", "two-region", "aws-only", "gcp-only", "azure-only"]
AGIC = "appgw.ingress.kubernetes.io/"


@pytest.fixture(scope="module", params=CASES)
def case(request):
    plan = compile_file(str(REPO / "tests/cases" / request.param / "platform.yaml")).plan
    outputs, _ = emit(plan, ["kubernetes", "helm", "ansible", "terraform"], with_docs=False)
    return plan, {path: text for path, (_, text) in outputs["generated"].items()}


def _docs(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def _module_args(files: dict, region: str, module: str) -> dict:
    doc = hcl2.loads(files[f"terraform/regions/{region}/main.tf"])
    (args,) = [m[f'"{module}"'] for m in doc["module"] if f'"{module}"' in m]
    return args


def test_the_ingresses_trust_the_root_terraform_installs_and_kong_mounts_the_secret_eso_writes(case):
    plan, files = case
    azure = 0
    for region in plan.regions:
        k8s = _docs(files.get(f"kubernetes/{region.name}/kong-gateway.yaml", ""))
        ingresses = [d for d in k8s if d["kind"] == "Ingress"]
        values = yaml.safe_load(files[f"helm/{region.name}/kong.values.yaml"])
        charts = [d for p, t in files.items() if p.startswith(f"helm/{region.name}/charts/") and "/templates/" in p
                  for d in _docs(t)]
        secrets = [d for d in charts if d["kind"] == "ExternalSecret" and d["metadata"]["namespace"] == "kong"]
        pgb = yaml.safe_load(files[f"ansible/inventories/{region.name}/group_vars/pgbouncer.yml"]) or {}
        tls = kong_proxy_tls(plan, region)
        if region.cloud != "azure":
            assert tls is None and not ingresses and not secrets, (region.name, secrets)
            assert "secretVolumes" not in values and "ssl_cert" not in values["env"]
            assert not any(k.startswith("pgbouncer_kong_tls") for k in pgb)
            continue
        azure += 1
        # one IR name, two targets: the Ingresses' trusted root is the one the load_balancer module installs
        lb = _module_args(files, region.name, "load_balancer")
        module = hcl2.loads(files["terraform/modules/azure/load_balancer/main.tf"])
        (root,) = resources(module, "azurerm_application_gateway")["this"]["trusted_root_certificate"]
        assert unquote(root["name"]) == "${var.trusted_root_certificate_name}"
        assert {i["metadata"]["annotations"][AGIC + "appgw-trusted-root-certificate"] for i in ingresses} == {
            unquote(lb["trusted_root_certificate_name"])} == {tls.trusted_root}
        # ... read from the gateway's certificate vault, the secret of that name, which Ansible writes there
        assert pgb["pgbouncer_kong_tls_trust"] == {"vault": unquote(lb["certificate_vault_name"]),
                                                   "name": tls.trusted_root}
        # each host its own Ingress and backend host name, every host a name of Kong's certificate
        hosts = [i["spec"]["rules"][0]["host"] for i in ingresses]
        assert hosts == [i["metadata"]["annotations"][AGIC + "backend-hostname"] for i in ingresses]
        assert hosts == lb_hostnames(plan, region) == list(tls.hostnames) == pgb["pgbouncer_kong_tls_names"]
        # Kong's Secret: written by an ExternalSecret, mounted by the chart, served on the TLS listener
        (es,) = [d for d in secrets if d["spec"]["target"]["name"] == tls.secret]
        assert values["secretVolumes"] == [tls.secret]
        assert values["env"]["ssl_cert"] == f"/etc/secrets/{tls.secret}/tls.crt"
        assert values["env"]["ssl_cert_key"] == f"/etc/secrets/{tls.secret}/tls.key"
        refs = dict(tls.refs)
        assert [(d["secretKey"], d["remoteRef"]["key"], d["remoteRef"]["property"]) for d in es["spec"]["data"]] == [
            (k, parse_ref(refs[k]).key, refs[k].partition("#")[2]) for k in ("tls.crt", "tls.key")]
        hf = yaml.safe_load(files[f"helm/{region.name}/helmfile.yaml"])
        kong = next(r for r in hf["releases"] if r["name"] == "kong")
        assert "kong/secrets-kong" in kong["needs"]
        # the entry ESO reads is the one Ansible writes, which ESO's identity may read
        store = pgb["pgbouncer_kong_tls_store"]
        assert {(store["entry"] if store["scheme"] != "azure-kv" else f"{store['vault']}/{store['entry']}", f)
                for f in (store["crt_field"], store["key_field"])} == {
            (refs[k].partition(":")[2].partition("#")[0], refs[k].partition("#")[2]) for k in refs}
        eso = region.identity(EXTERNAL_SECRETS)
        if store["scheme"] == "vault":
            assert store["entry"] in eso.vault_paths
        else:
            assert any(s.key == parse_ref(refs["tls.crt"]).key for s in eso.secrets)
    if "azure" in {r.cloud for r in plan.regions}:
        assert azure


def _openssl(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([require_tool("openssl"), *args], capture_output=True, text=True, **kw)


AZ_STUB = r'''#!/bin/sh
# az keyvault secret show|set --vault-name V --name N [--value X] ...: one file per vault/name
printf '%s\n' "$*" >> "$AZ_STUB_DIR/calls"
op=$3; shift 3; vault=; name=; value=
while [ $# -gt 0 ]; do case $1 in --vault-name) vault=$2; shift;; --name) name=$2; shift;; --value) value=$2; shift;; esac; shift; done
f="$AZ_STUB_DIR/$vault.$name"
case $op in
  show) [ -f "$f" ] || { echo "SecretNotFound" >&2; exit 3; }; cat "$f"; echo;;
  set) printf '%s' "$value" > "$f";;
esac
'''


@pytest.mark.tool
def test_ansible_issues_kongs_certificate_from_the_ca_and_publishes_it_once(tmp_path):
    """The generated role's Kong tasks, run for real on this machine (the CA host is localhost): Kong's certificate
    chains to the region's CA and names every host, its key matches, Vault (a stub on 127.0.0.1 inside `unshare -n`)
    gets both once, and the gateway's vault (an `az` stub) the CA; a second run writes nothing."""
    require_isolation()
    require_tool("ansible-playbook", VENV_BIN / "ansible-playbook")
    plan = compile_file(str(REPO / "platform.yaml")).plan
    region = next(r for r in plan.regions if r.cloud == "azure")
    outputs, _ = emit(plan, ["ansible"], with_docs=False)
    writer.apply(writer.plan_write(tmp_path / "gen", outputs["generated"], None))
    root = tmp_path / "gen" / "ansible"
    work = tmp_path / "work"
    (work / "ca").mkdir(parents=True)
    # the tls role's CA, as it makes it
    assert _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                    "-subj", "/CN=test CA", "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", str(work / "ca/ca.key"),
                    "-out", str(work / "ca/ca.crt")).returncode == 0
    tasks = yaml.safe_load((root / "roles/pgbouncer/tasks/main.yml").read_text())
    kong_tasks = [t for t in tasks if "pgbouncer_kong_tls_publish | bool" in t.get("when", [])]
    assert kong_tasks
    (work / "kong.yml").write_text(yaml.safe_dump(kong_tasks, sort_keys=False))
    gv = yaml.safe_load((root / f"inventories/{region.name}/group_vars/pgbouncer.yml").read_text())
    defaults = yaml.safe_load((root / "roles/pgbouncer/defaults/main.yml").read_text())
    role_vars = yaml.safe_load((root / "roles/pgbouncer/vars/main.yml").read_text())
    variables = {**role_vars, **{k: v for k, v in defaults.items() if k.startswith("pgbouncer_kong_tls")},
                 **{k: v for k, v in gv.items() if k.startswith("pgbouncer_kong_tls")},
                 "pgbouncer_kong_tls_ca_host": "localhost", "pgbouncer_kong_tls_ca_dir": str(work / "ca")}
    variables["pgbouncer_kong_tls_store"] = {**variables["pgbouncer_kong_tls_store"], "host": "127.0.0.1:8200"}
    store = variables["pgbouncer_kong_tls_store"]
    assert store["scheme"] == "vault"
    play = [{"name": "Kong", "hosts": "localhost", "connection": "local", "gather_facts": False, "vars": variables,
             "tasks": [{"name": "The role's tasks", "ansible.builtin.include_tasks": "kong.yml"}]}]
    (work / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    ca_pem = (work / "ca/ca.crt").read_text()
    (work / "ca.json").write_text(json.dumps({"tls_ca_cert": {"content": base64.b64encode(ca_pem.encode()).decode()}}))
    tls = make_ip_tls(work)
    (work / "stub.py").write_text(VAULT_STUB)
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "az").write_text(AZ_STUB)
    (bin_dir / "az").chmod(0o755)
    prelude = (f"{shlex.quote(str(VENV_BIN / 'python'))} stub.py {work / 'kv.json'} {work / 'posts'} {tls['crt']} "
               f"{tls['key']} >stub.log 2>&1 & stub=$!; trap 'kill $stub' EXIT; "
               "for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8200))' "
               "2>/dev/null && break; sleep 0.1; done; ")
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-e", f"@{work / 'ca.json'}", str(work / "play.yml")]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}, "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
           "ANSIBLE_PYTHON_INTERPRETER": str(VENV_BIN / "python"), "VAULT_TOKEN": "test-token",
           "SSL_CERT_FILE": str(tls["crt"]), "PATH": f"{bin_dir}:{os.environ['PATH']}", "AZ_STUB_DIR": str(work)}
    trust = variables["pgbouncer_kong_tls_trust"]
    for run in (1, 2):
        proc = subprocess.run(ISOLATE + ["sh", "-c", prelude + shlex.join(cmd)], capture_output=True, text=True,
                              env=env, timeout=300, cwd=work)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert (work / "posts").read_text().splitlines() == [f"POST /v1/{store['entry']}"], proc.stdout[-3000:]
        sets = [c for c in (work / "calls").read_text().splitlines() if c.startswith("keyvault secret set")]
        assert len(sets) == 1, sets
    stored = json.loads((work / "kv.json").read_text())[f"/v1/{store['entry']}"]
    assert set(stored) == {store["crt_field"], store["key_field"]}
    (work / "kong.crt").write_text(stored[store["crt_field"]])
    (work / "kong.key").write_text(stored[store["key_field"]])
    verified = _openssl("verify", "-CAfile", str(work / "ca/ca.crt"), str(work / "kong.crt"))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    text = _openssl("x509", "-in", str(work / "kong.crt"), "-noout", "-ext", "subjectAltName").stdout
    assert [n.strip() for n in text.split("\n", 1)[1].split(",")] == [f"DNS:{h}" for h in lb_hostnames(plan, region)]
    pub = [_openssl(*a).stdout for a in (("x509", "-in", str(work / "kong.crt"), "-noout", "-pubkey"),
                                         ("pkey", "-in", str(work / "kong.key"), "-pubout"))]
    assert pub[0] == pub[1] and pub[0].startswith("-----BEGIN PUBLIC KEY-----")
    # the gateway's trusted root: the CA's PEM file, base64-encoded by the task and stored with `--value`
    assert (work / f"{trust['vault']}.{trust['name']}").read_text() == base64.b64encode(ca_pem.encode()).decode()
