"""The tls role re-issues a certificate whose names changed (issue 11: PgBouncer's now names pgbouncer.<domain>).

A host that got its certificate before a name was added keeps its key; the role, run for real (as
test_ansible.py's issuance test runs it: localhost as the CA host, in a temp directory), makes a new request with the
same key and the new names, has it signed, and stores it where the renewal re-signs it. A further run changes nothing.
"""

from __future__ import annotations

import subprocess

import yaml

from tests.conftest import require_tool
from tests.targets.test_ansible import (ISOLATE, _local_inventory, _recap, _require_isolation,  # noqa: F401
                                        _run, reference_tree)


def _san(crt) -> str:
    return subprocess.run(["openssl", "x509", "-in", crt, "-noout", "-ext", "subjectAltName"],
                          capture_output=True, text=True, check=True).stdout


def _pubkey(path, kind: str) -> str:
    return subprocess.run(["openssl", kind, "-in", path, "-noout", "-pubkey"] if kind != "pkey"
                          else ["openssl", "pkey", "-in", path, "-pubout"],
                          capture_output=True, text=True, check=True).stdout


def test_a_certificate_gets_the_names_added_since_it_was_issued(reference_tree, tmp_path):
    plan, root, env = reference_tree
    _require_isolation()
    require_tool("openssl")
    tool = require_tool("ansible-playbook")
    inventory = _local_inventory(tmp_path / "inventory", {"bastion": "localhost"},
                                 {"all": {"platformc_region": "test"}})
    server, ca = tmp_path / "server", tmp_path / "ca"
    run_env = {**env, "ANSIBLE_ROLES_PATH": str(root / "roles")}

    def run(names: list[str]):
        playbook = tmp_path / "tls.yml"
        playbook.write_text(yaml.safe_dump([{
            "name": "Issue a certificate", "hosts": "bastion", "gather_facts": False,
            "tasks": [{"name": "Run the tls role", "ansible.builtin.include_role": {"name": "tls"},
                       "vars": {"tls_ca_dir": str(ca), "tls_dir": str(server), "tls_owner": "root",
                                "tls_group": "root", "tls_renewal": False, "tls_names": names}}]}]))
        proc = _run([*ISOLATE, tool, "-i", str(inventory), str(playbook)], root, run_env)
        assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr
        return proc

    run(["localhost"])
    assert "pgbouncer.test.internal" not in _san(server / "server.crt")
    key_before = _pubkey(server / "server.key", "pkey")

    run(["localhost", "pgbouncer.test.internal"])
    san = _san(server / "server.crt")
    assert "DNS:localhost" in san and "DNS:pgbouncer.test.internal" in san, san
    assert _pubkey(server / "server.crt", "x509") == key_before  # the same key, a new certificate
    verify = subprocess.run(["openssl", "verify", "-CAfile", server / "ca.crt", server / "server.crt"],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # the request the CA host keeps (what the renewal re-signs) carries the new names too
    (stored,) = (ca / "requests").glob("*.csr")
    text = subprocess.run(["openssl", "req", "-in", stored, "-noout", "-text"], capture_output=True, text=True,
                          check=True).stdout
    assert "DNS:pgbouncer.test.internal" in text

    again = run(["localhost", "pgbouncer.test.internal"])
    ok, changed, unreachable, failed = _recap(again.stdout)["localhost"]
    assert (changed, failed) == (0, 0), again.stdout[-5000:]
