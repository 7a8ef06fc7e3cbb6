"""The internal certificates are renewed: by the tls role's next run, and between runs by the server's own
daily timer through the CA host's forced command.

The role runs for real on this machine (ansible-playbook, local connection, inside `unshare -n`) with every
path in a temp dir; the renewal account is an existing user (`nobody`) so the test creates no account. The
SSH hop is replaced by a stand-in that does what sshd does with the authorized_keys line the role wrote:
finds the line of the key the client offers and runs its forced command (as the account), ignoring what
the client asked for. Everything else (openssl, the scripts, the files) is what the role installs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool
from tests.targets.test_ansible import ISOLATE, _local_inventory, _recap, _require_isolation, _run, reference_tree  # noqa: F401

RENEW_BEFORE_DAYS = 30

SSH_STANDIN = r'''#!/usr/bin/env python3
"""What sshd does with a key the client offers: find its authorized_keys line, run its forced command."""
import os, re, subprocess, sys
args = sys.argv[1:]
key = args[args.index("-i") + 1]
blob = open(key + ".pub").read().split()[1]
for line in open(os.environ["STANDIN_AUTHORIZED_KEYS"]):
    m = re.fullmatch(r'(\S*"[^"]*"\S*|\S+) (\S+) (\S+)(?: .*)?', line.strip())
    if m and m.group(3) == blob:
        options = m.group(1)
        assert options.startswith("restrict,command="), options
        command = re.search(r'command="([^"]*)"', options).group(1)
        account = os.environ["STANDIN_ACCOUNT"]
        sys.exit(subprocess.run(["setpriv", "--reuid=" + account, "--regid=" + os.environ["STANDIN_GROUP"],
                                 "--clear-groups", "--", "sh", "-c", command]).returncode)
sys.exit("Permission denied (publickey)")
'''


def _openssl(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], capture_output=True, text=True, **kw)


def _not_after(crt: Path) -> float:
    out = _openssl("x509", "-noout", "-enddate", "-in", crt).stdout.strip().split("=", 1)[1]
    return time.mktime(time.strptime(out, "%b %d %H:%M:%S %Y %Z"))


@pytest.fixture()
def work():
    d = Path(tempfile.mkdtemp(prefix="tls-renew-", dir="/tmp"))
    os.chmod(d, 0o755)  # the renewal account (nobody) walks into the CA directory
    yield d
    shutil.rmtree(d, ignore_errors=True)


def test_certificates_are_renewed_by_the_timer_and_by_the_next_run(reference_tree, work):
    plan, root, env = reference_tree
    _require_isolation()
    require_tool("openssl")
    require_tool("setpriv")
    require_tool("ssh-keygen")
    tool = require_tool("ansible-playbook")
    host_key = work / "ssh_host_ed25519_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key], check=True)
    server, ca_dir, home, units = work / "server", work / "ca", work / "cahome", work / "units"
    variables = {
        "tls_ca_dir": str(ca_dir), "tls_dir": str(server), "tls_owner": "root", "tls_group": "root",
        "tls_ca_user": "nobody", "tls_ca_group": "nogroup", "tls_ca_manage_user": False,
        "tls_ca_user_home": str(home), "tls_ca_host_key_file": f"{host_key}.pub",
        "tls_sign_command": str(work / "bin/platformc-ca-sign"), "tls_renew_command": str(work / "bin/platformc-tls-renew"),
        "tls_systemd_dir": str(units), "tls_renewal_timer": False, "tls_reload_units": ["pgbouncer.service"],
    }
    (work / "bin").mkdir()
    units.mkdir()
    inventory = _local_inventory(work / "inventory", {"bastion": "localhost"}, {"all": {"platformc_region": "test"}})
    playbook = work / "tls.yml"
    playbook.write_text(yaml.safe_dump([{
        "name": "Issue a certificate", "hosts": "bastion", "gather_facts": False,
        "tasks": [{"name": "Run the tls role", "ansible.builtin.include_role": {"name": "tls"}, "vars": variables}]}]))
    cmd = [*ISOLATE, tool, "-i", str(inventory), str(playbook)]
    run_env = {**env, "ANSIBLE_ROLES_PATH": str(root / "roles")}
    first = _run(cmd, root, run_env)
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr
    crt = server / "server.crt"
    issued_life = _not_after(crt) - time.time()
    assert 364 * 86400 < issued_life <= 365 * 86400 + 60

    # the units the role installed: a daily, persistent timer and a service running the renewal for this directory
    slug = re.sub(r"^-|-$", "", re.sub(r"[^A-Za-z0-9]+", "-", str(server)))
    timer = (units / f"platformc-tls-renew-{slug}.timer").read_text()
    service = (units / f"platformc-tls-renew-{slug}.service").read_text()
    assert "OnCalendar=daily" in timer and "Persistent=true" in timer and "WantedBy=timers.target" in timer
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    assert exec_start.split("=", 1)[1].split() == [variables["tls_renew_command"], str(server), "localhost",
                                                    str(RENEW_BEFORE_DAYS), "pgbouncer.service"]
    # the CA host's authorized_keys: one forced command for this certificate
    authorized = (home / ".ssh/authorized_keys").read_text().splitlines()
    assert len(authorized) == 1 and authorized[0].startswith(f'restrict,command="{variables["tls_sign_command"]} ')
    assert oct((ca_dir / "ca.key").stat().st_mode & 0o777) == "0o640"

    def expire_soon(days: int):
        """Make the installed certificate expire in `days` days (signed by the same CA, same request)."""
        request = next((ca_dir / "requests").glob("*.csr"))
        out = _openssl("x509", "-req", "-in", request, "-CA", ca_dir / "ca.crt", "-CAkey", ca_dir / "ca.key",
                       "-set_serial", "7", "-days", days, "-copy_extensions", "copy", "-out", crt)
        assert out.returncode == 0, out.stderr
        return crt.read_bytes()

    # 1. the timer's command: a certificate with 10 days left is renewed and the service reloaded
    standin = work / "bin/ssh"
    standin.write_text(SSH_STANDIN.replace("#!/usr/bin/env python3", f"#!{sys.executable}"))
    standin.chmod(0o755)
    systemctl_log = work / "systemctl.log"
    systemctl = work / "bin/systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >> {systemctl_log}\n')
    systemctl.chmod(0o755)
    renew_env = {**os.environ, "PLATFORMC_TLS_SSH": str(standin), "PLATFORMC_SYSTEMCTL": str(systemctl),
                 "STANDIN_AUTHORIZED_KEYS": str(home / ".ssh/authorized_keys"), "STANDIN_ACCOUNT": "nobody",
                 "STANDIN_GROUP": "nogroup"}
    renew = exec_start.split("=", 1)[1].split()
    old = expire_soon(10)
    res = subprocess.run(renew, capture_output=True, text=True, env=renew_env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert crt.read_bytes() != old and _not_after(crt) - time.time() > 364 * 86400
    assert _openssl("verify", "-CAfile", server / "ca.crt", crt).returncode == 0
    assert _openssl("x509", "-noout", "-pubkey", "-in", crt).stdout == _openssl("pkey", "-pubout", "-in", server / "server.key").stdout
    assert "DNS:localhost" in _openssl("x509", "-in", crt, "-noout", "-ext", "subjectAltName").stdout
    assert systemctl_log.read_text().splitlines() == ["reload-or-restart pgbouncer.service"]
    # 2. nothing to do with more than 30 days left: no CA call, no reload
    standin_calls = crt.read_bytes()
    res = subprocess.run(renew, capture_output=True, text=True, env=renew_env)
    assert res.returncode == 0 and crt.read_bytes() == standin_calls
    assert systemctl_log.read_text().splitlines() == ["reload-or-restart pgbouncer.service"]
    # 3. a certificate for another key is refused and the old one kept
    other = work / "other"
    other.mkdir()
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", "/CN=x",
             "-keyout", other / "k", "-out", other / "r.csr", check=True)
    request = next((ca_dir / "requests").glob("*.csr"))
    shutil.copy(request, other / "mine.csr")
    shutil.copy(other / "r.csr", request)
    stale = _openssl("x509", "-req", "-in", other / "mine.csr", "-CA", ca_dir / "ca.crt", "-CAkey", ca_dir / "ca.key",
                     "-set_serial", "8", "-days", 5, "-copy_extensions", "copy", "-out", crt)
    assert stale.returncode == 0
    old = crt.read_bytes()
    res = subprocess.run(renew, capture_output=True, text=True, env=renew_env)
    assert res.returncode != 0 and "another key" in res.stderr and crt.read_bytes() == old
    assert len(systemctl_log.read_text().splitlines()) == 1
    shutil.copy(other / "mine.csr", request)
    # 4. the forced command signs only the stored request of its own id
    sign = variables["tls_sign_command"]
    bad = subprocess.run([sign, "../../etc/x", "365", str(ca_dir)], capture_output=True, text=True)
    assert bad.returncode == 2
    # 5. the next playbook run renews an expiring certificate too, and reports the change
    expire_soon(5)
    second = _run(cmd, root, run_env)
    assert second.returncode == 0, second.stdout[-5000:]
    assert _not_after(crt) - time.time() > 364 * 86400
    assert "Install this server's certificate" in second.stdout and _recap(second.stdout)["localhost"][1] > 0
    # 6. and a run with nothing expiring changes nothing
    third = _run(cmd, root, run_env)
    assert third.returncode == 0 and _recap(third.stdout)["localhost"][1] == 0, third.stdout[-5000:]


def test_pgbouncer_is_reloaded_after_a_renewal(reference_tree):
    """PgBouncer reads its certificate at start and RELOAD only: the renewal timer reloads it (PgBouncer includes
    the tls role with tls_reload_units)."""
    plan, root, env = reference_tree
    tasks = yaml.safe_load((root / "roles/pgbouncer/tasks/main.yml").read_text())
    (include,) = [t for t in tasks if (t.get("ansible.builtin.include_role") or {}).get("name") == "tls"]
    assert include["vars"]["tls_reload_units"] == ["pgbouncer.service"]
