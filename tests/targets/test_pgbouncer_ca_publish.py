"""The pgbouncer role's publishing of the region's CA certificate, run for real by ansible-playbook (issue 11).

The tasks are the generated role's own (those it runs on the controller), with its vars and the inventory's
pgbouncer_ca_store; tls_ca_cert is what the tls role registers (the slurped CA certificate). The stores are stubs
on this machine: a Vault KV v2 HTTPS API on 127.0.0.1 inside `unshare -n`, and an `aws` command first on PATH that
keeps Secrets Manager's value in a file. Each store must end up holding {"ca_crt": <PEM>} in the entry the
ExternalSecrets read, written once: a second run with the same CA writes nothing, a new CA is written again.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from compiler.pipeline import compile_file
from tests.conftest import REPO, VENV_BIN, require_tool
from tests.targets.test_datastores_support import ISOLATE, make_ip_tls, require_isolation

VAULT_STUB = r'''
import json, ssl, sys
from http.server import BaseHTTPRequestHandler, HTTPServer
store, log, crt, key = sys.argv[1:5]
class H(BaseHTTPRequestHandler):
    def _ok(self):
        if self.headers.get("X-Vault-Token") != "test-token":
            self.send_response(403); self.end_headers(); return False
        return True
    def do_GET(self):
        if not self._ok(): return
        try:
            data = json.load(open(store)).get(self.path)
        except FileNotFoundError:
            data = None
        if data is None:
            self.send_response(404); self.end_headers(); self.wfile.write(b'{"errors":[]}'); return
        body = json.dumps({"data": {"data": data, "metadata": {}}}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(body)
    def do_POST(self):
        if not self._ok(): return
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            all_ = json.load(open(store))
        except FileNotFoundError:
            all_ = {}
        all_[self.path] = req["data"]
        json.dump(all_, open(store, "w"))
        open(log, "a").write("POST " + self.path + "\n")
        self.send_response(200); self.send_header("Content-Type", "application/json"); self.end_headers()
        self.wfile.write(b'{"data":{"version":1}}')
    def log_message(self, *a): pass
server = HTTPServer(("127.0.0.1", 8200), H)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(crt, key)
server.socket = context.wrap_socket(server.socket, server_side=True)
server.serve_forever()
'''

AWS_STUB = r'''#!/bin/sh
# aws secretsmanager get-secret-value|put-secret-value --region R --secret-id ID [--secret-string S] ...
store="$AWS_STUB_DIR/value"; printf '%s\n' "$*" | tr '\n' ' ' >> "$AWS_STUB_DIR/calls"; echo >> "$AWS_STUB_DIR/calls"
op=$2; shift 2; id=; value=
while [ $# -gt 0 ]; do case $1 in --secret-id) id=$2; shift;; --secret-string) value=$2; shift;; esac; shift; done
[ "$id" = "$AWS_STUB_ID" ] || { echo "no such secret $id" >&2; exit 254; }
case $op in
  get-secret-value) [ -f "$store" ] || { echo "ResourceNotFoundException" >&2; exit 254; }; cat "$store"; echo;;
  put-secret-value) printf '%s' "$value" > "$store";;
esac
'''


def _tree(case: str, tmp: Path) -> tuple:
    plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
    outputs, _ = emit(plan, ["ansible"], with_docs=False)
    writer.apply(writer.plan_write(tmp, outputs["generated"], None))
    return plan, tmp / "ansible"


def _playbook(root: Path, region: str, work: Path, store_override: dict) -> Path:
    tasks = yaml.safe_load((root / "roles/pgbouncer/tasks/main.yml").read_text())
    publish = [t for t in tasks if t.get("delegate_to") == "localhost" and "pgbouncer_ca_publish | bool" in t["when"]]
    assert publish
    (work / "publish.yml").write_text(yaml.safe_dump(publish, sort_keys=False))
    gv = yaml.safe_load((root / f"inventories/{region}/group_vars/pgbouncer.yml").read_text())
    role_vars = yaml.safe_load((root / "roles/pgbouncer/vars/main.yml").read_text())
    variables = {**role_vars, "pgbouncer_ca_publish": gv["pgbouncer_ca_publish"],
                 "pgbouncer_ca_store": {**gv["pgbouncer_ca_store"], **store_override}}
    play = [{"name": "Publish", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": variables, "tasks": [{"name": "The role's tasks", "ansible.builtin.include_tasks": "publish.yml"}]}]
    (work / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    return work / "play.yml"


def _run(play: Path, work: Path, pem: str, env: dict, prelude: str = "") -> subprocess.CompletedProcess:
    (work / "ca.json").write_text(json.dumps({"tls_ca_cert": {"content": base64.b64encode(pem.encode()).decode()}}))
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-e", f"@{work / 'ca.json'}", str(play)]
    script = prelude + shlex.join(cmd) + "; rc=$?; exit $rc"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}, "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_HOME": str(work / "home"), "ANSIBLE_LOCAL_TEMP": str(work / "tmp"),
           "ANSIBLE_PYTHON_INTERPRETER": str(VENV_BIN / "python"), **env}
    return subprocess.run(ISOLATE + ["sh", "-c", script], capture_output=True, text=True, env=env, timeout=180,
                          cwd=work)


PEM_1 = "-----BEGIN CERTIFICATE-----\nMIIB1\n-----END CERTIFICATE-----\n"
PEM_2 = "-----BEGIN CERTIFICATE-----\nMIIB2\n-----END CERTIFICATE-----\n"


@pytest.mark.tool
def test_publishes_to_vault_once_per_certificate(tmp_path):
    require_isolation()
    require_tool("ansible-playbook", VENV_BIN / "ansible-playbook")
    plan, root = _tree("reference", tmp_path / "gen")
    region = plan.regions[0].name
    work = tmp_path / "work"
    work.mkdir()
    # the role dials https://<host>: the stub serves TLS with a certificate for 127.0.0.1, trusted through
    # SSL_CERT_FILE (what the controller's default trust store would hold for the real Vault)
    play = _playbook(root, region, work, {"host": "127.0.0.1:8200"})
    tls = make_ip_tls(work)
    store = yaml.safe_load((root / f"inventories/{region}/group_vars/pgbouncer.yml").read_text())["pgbouncer_ca_store"]
    (work / "stub.py").write_text(VAULT_STUB)
    prelude = (f"{shlex.quote(str(VENV_BIN / 'python'))} stub.py {work / 'kv.json'} {work / 'posts'} {tls['crt']} {tls['key']} "
               ">stub.log 2>&1 & stub=$!; trap 'kill $stub' EXIT; "
               "for i in $(seq 50); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", 8200))' "
               "2>/dev/null && break; sleep 0.1; done; ")
    env = {"VAULT_TOKEN": "test-token", "SSL_CERT_FILE": str(tls["crt"])}
    for pem, posts in ((PEM_1, 1), (PEM_1, 1), (PEM_2, 2)):
        proc = _run(play, work, pem, env, prelude)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        assert (work / "posts").read_text().splitlines() == [f"POST /v1/{store['entry']}"] * posts, proc.stdout[-3000:]
        stored = json.loads((work / "kv.json").read_text())[f"/v1/{store['entry']}"]
        assert stored == {store["field"]: pem}


@pytest.mark.tool
def test_publishes_to_aws_secrets_manager_once_per_certificate(tmp_path):
    require_isolation()
    require_tool("ansible-playbook", VENV_BIN / "ansible-playbook")
    plan, root = _tree("aws-only", tmp_path / "gen")
    region = plan.regions[0]
    work = tmp_path / "work"
    work.mkdir()
    play = _playbook(root, region.name, work, {})
    store = yaml.safe_load((root / f"inventories/{region.name}/group_vars/pgbouncer.yml").read_text())["pgbouncer_ca_store"]
    assert store["scheme"] == "aws-sm" and store["region"] == region.cloud_region
    bin_dir = work / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(AWS_STUB)
    (bin_dir / "aws").chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "AWS_STUB_DIR": str(work), "AWS_STUB_ID": store["entry"]}
    for pem, puts in ((PEM_1, 1), (PEM_1, 1), (PEM_2, 2)):
        proc = _run(play, work, pem, env)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        calls = (work / "calls").read_text().splitlines()
        assert sum(c.startswith("secretsmanager put-secret-value") for c in calls) == puts, calls
        assert all(f"--region {region.cloud_region}" in c for c in calls)
        assert json.loads((work / "value").read_text()) == {store["field"]: pem}
