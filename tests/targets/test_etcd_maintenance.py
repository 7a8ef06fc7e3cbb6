"""etcd's housekeeping (compiler/ir/postgres_ha.py ETCD_AUTO_COMPACTION_*, ETCD_QUOTA_BACKEND_BYTES), judged by the
real etcd 3.4 (Debian's etcd-server) run on loopback with the /etc/default/etcd ansible-playbook renders for a
member of the reference's us-east-1, and by the defragmentation units the role installs."""

from __future__ import annotations

import json
import os
import signal
import re
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from compiler.ir.postgres_ha import (ETCD_AUTO_COMPACTION_MODE, ETCD_AUTO_COMPACTION_RETENTION, ETCD_DEFRAG_FIRST_HOUR,
                                     ETCD_QUOTA_BACKEND_BYTES)
from tests.conftest import IN_CI, VENV_BIN
from tests.targets.test_ansible import _run, reference_tree  # noqa: F401 (the fixture)

HOST = "127.0.0.1"
# the host's private address as Ansible's facts give it (a documentation address: nothing here binds or dials it)
PRIVATE_ADDRESS = "192.0.2.10"
DEFAULT = "/etc/default/etcd"
DEFRAG = "/etc/systemd/system/platformc-etcd-defrag"


def _need(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        (pytest.fail if IN_CI else pytest.skip)(f"{tool} is not installed")
    return found


def render(reference_tree, tmp_path: Path, member: int, wanted=(DEFAULT, DEFRAG + ".service", DEFRAG + ".timer")
           ) -> dict[str, str]:  # noqa: F811
    """The etcd role's files (/etc/default/etcd, the defragmentation units) as ansible-playbook renders them for
    us-east-1's `member`-th etcd member: the role's own content and vars, the inventory's group_vars."""
    _plan, root, env = reference_tree
    role = root / "roles/etcd"
    copies = {t["ansible.builtin.copy"]["dest"]: t["ansible.builtin.copy"]["content"]
              for t in yaml.safe_load((role / "tasks/main.yml").read_text()) if "ansible.builtin.copy" in t}
    assert set(wanted) <= set(copies), sorted(copies)
    inventory = root / "inventories/us-east-1"
    group_vars = [yaml.safe_load(f.read_text()) or {} for f in sorted((inventory / "group_vars").glob("*.yml"))]
    members = next(v["etcd_members"] for v in group_vars if v.get("etcd_members"))
    out = tmp_path / f"member-{member}"
    out.mkdir()
    playbook = tmp_path / f"render-{member}.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": members[member], "gather_facts": False, "connection": "local",
        # the role's defaults as play vars would outrank the group_vars: only those no group_vars file sets
        "vars": {k: v for k, v in yaml.safe_load((role / "defaults/main.yml").read_text()).items()
                 if not any(k in v_ for v_ in group_vars)},
        "vars_files": [str(role / "vars/main.yml")],
        "tasks": [{"ansible.builtin.copy": {"content": copies[d], "dest": str(out / Path(d).name)}} for d in wanted]}]))
    # no fact gathering: the one fact the role reads, the host's private address, is given
    facts = json.dumps({"ansible_facts": {"default_ipv4": {"address": PRIVATE_ADDRESS}}})
    res = _run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "-e",
                f"ansible_python_interpreter={VENV_BIN / 'python'}", "-e", facts, str(playbook)], root, env)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return {d: (out / Path(d).name).read_text() for d in wanted}


class Work:
    """A throwaway self-signed certificate for 127.0.0.1: the member's server, peer and client certificate and CA."""

    def __init__(self, root: Path):
        crt, key = root / "server.crt", root / "server.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", crt],
                       check=True, capture_output=True)
        os.chmod(key, 0o600)
        self.crt, self.key = str(crt), str(key)


class Proc:
    def __init__(self, cmd: list, log: Path, env: dict):
        self.out = open(log, "w")
        # etcd reads only the ETCD_* variables given (Debian's unit hands it /etc/default/etcd the same way)
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={"PATH": os.environ.get("PATH", ""), **env})

    def stop(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
        self.out.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def test_a_member_compacts_its_history_and_states_its_quota(reference_tree, tmp_path):  # noqa: F811
    """Without auto-compaction etcd keeps every revision: Patroni's loop rewrites its keys every 10 s, the backend
    reaches its quota in weeks, etcd raises NOSPACE and Patroni can take no leader key. The member runs here with
    the rendered /etc/default/etcd (only its addresses, paths and certificates moved to loopback and a throwaway
    certificate): etcd must read the compaction and quota settings from it, keep history under the rendered
    retention, and, with that one value shortened (the key as rendered), compact old revisions away."""
    etcd, etcdctl = _need("etcd"), _need("etcdctl")
    rendered = render(reference_tree, tmp_path, 0, [DEFAULT])[DEFAULT]
    env = dict(line.split("=", 1) for line in rendered.splitlines() if "=" in line)
    assert env.get("ETCD_AUTO_COMPACTION_MODE") == ETCD_AUTO_COMPACTION_MODE == "periodic", rendered
    assert env.get("ETCD_AUTO_COMPACTION_RETENTION") == ETCD_AUTO_COMPACTION_RETENTION, rendered
    assert env.get("ETCD_QUOTA_BACKEND_BYTES") == str(ETCD_QUOTA_BACKEND_BYTES), rendered
    w = Work(tmp_path)
    client, peer, metrics = _free_port(), _free_port(), _free_port()
    local = {"ETCD_DATA_DIR": str(tmp_path / "data"), "ETCD_LISTEN_METRICS_URLS": f"http://{HOST}:{metrics}",
             "ETCD_LISTEN_CLIENT_URLS": f"https://{HOST}:{client}", "ETCD_ADVERTISE_CLIENT_URLS": f"https://{HOST}:{client}",
             "ETCD_LISTEN_PEER_URLS": f"https://{HOST}:{peer}", "ETCD_INITIAL_ADVERTISE_PEER_URLS": f"https://{HOST}:{peer}",
             "ETCD_INITIAL_CLUSTER": f"{env['ETCD_NAME']}=https://{HOST}:{peer}"}
    for key in ("ETCD_CERT_FILE", "ETCD_PEER_CERT_FILE"):
        local[key] = w.crt
    for key in ("ETCD_KEY_FILE", "ETCD_PEER_KEY_FILE"):
        local[key] = w.key
    for key in ("ETCD_TRUSTED_CA_FILE", "ETCD_PEER_TRUSTED_CA_FILE"):
        local[key] = w.crt
    assert set(local) <= set(env)
    ctl = [etcdctl, f"--endpoints=https://{HOST}:{client}", f"--cacert={w.crt}", f"--cert={w.crt}", f"--key={w.key}"]

    def run_member(name: str, **override) -> tuple[Proc, Path]:
        log = tmp_path / f"{name}.log"
        proc = Proc([etcd], log, env={**env, **local, **override})
        deadline = time.monotonic() + 30
        while subprocess.run([*ctl, "endpoint", "health"], capture_output=True).returncode != 0:
            assert proc.p.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        return proc, log

    def put(n: int) -> int:
        revs = []
        for i in range(n):
            subprocess.run([*ctl, "put", "/service/platformc/members/m1", f"loop {i}"], check=True, capture_output=True)
            out = subprocess.run([*ctl, "get", "/service/platformc/members/m1", "-w", "json"], check=True,
                                 capture_output=True, text=True).stdout
            revs.append(json.loads(out)["header"]["revision"])
        return revs[0]

    def old(rev: int) -> subprocess.CompletedProcess:
        return subprocess.run([*ctl, "get", "/service/platformc/members/m1", f"--rev={rev}"], capture_output=True, text=True)

    proc, log = run_member("as-rendered")
    try:
        text = log.read_text()
        for key in ("ETCD_AUTO_COMPACTION_MODE", "ETCD_AUTO_COMPACTION_RETENTION", "ETCD_QUOTA_BACKEND_BYTES"):
            assert f"recognized and used environment variable {key}={env[key]}" in text, text[-3000:]
        ctx = ssl.create_default_context(cafile=w.crt)
        ctx.load_cert_chain(w.crt, w.key)
        metrics = urllib.request.urlopen(f"https://{HOST}:{client}/metrics", context=ctx, timeout=10).read().decode()
        quota = re.search(r"^etcd_server_quota_backend_bytes (\S+)$", metrics, re.M)
        assert quota and float(quota.group(1)) == ETCD_QUOTA_BACKEND_BYTES, metrics[:500]
        first = put(20)
        time.sleep(3)
        assert old(first).returncode == 0  # an hour's retention keeps the revisions of the last seconds
    finally:
        proc.stop()
    assert "compacted" not in old(first).stderr
    # the same key, the value shortened: the member compacts the history older than that
    proc, log = run_member("short-retention", ETCD_AUTO_COMPACTION_RETENTION="1s")
    try:
        put(5)
        deadline = time.monotonic() + 30
        while (res := old(first)).returncode == 0:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        assert "required revision has been compacted" in res.stderr, res.stderr
        assert "compactor: Finished auto-compaction" in log.read_text()
        # and the defragmentation the timer runs (below) gives the freed pages back, without harming the member
        subprocess.run([*ctl, "defrag"], check=True, capture_output=True)
        assert subprocess.run([*ctl, "endpoint", "health"], capture_output=True).returncode == 0
    finally:
        proc.stop()


def test_members_defragment_their_own_endpoint_at_different_hours(reference_tree, tmp_path):  # noqa: F811
    """The timer defragments each member at its own hour (a member serves nothing while it defragments, so never
    two at once), and the service runs etcdctl against that member's endpoint only, with its TLS files."""
    analyze = _need("systemd-analyze")
    hours = []
    for i in range(3):
        files = render(reference_tree, tmp_path, i)
        default = dict(line.split("=", 1) for line in files[DEFAULT].splitlines() if "=" in line)
        unit = files[DEFRAG + ".service"].replace("\\\n", " ")
        start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
        assert start[0] == "/usr/bin/etcdctl" and start[-1] == "defrag", start
        endpoints = [a.split("=", 1)[1] for a in start if a.startswith("--endpoints=")]
        # this member's advertised client URL, nothing else: `defrag` with several endpoints runs on all at once
        assert endpoints == [default["ETCD_ADVERTISE_CLIENT_URLS"]], start
        assert {f"--cacert={default['ETCD_TRUSTED_CA_FILE']}", f"--cert={default['ETCD_CERT_FILE']}",
                f"--key={default['ETCD_KEY_FILE']}"} <= set(start), start
        calendar = re.search(r"^OnCalendar=(.*)$", files[DEFRAG + ".timer"], re.M).group(1)
        res = subprocess.run([analyze, "calendar", calendar], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        normalized = re.search(r"Normalized form: (\S+ \S+)", res.stdout).group(1)
        hours.append(int(normalized.split()[1].split(":")[0]))
    assert hours == [ETCD_DEFRAG_FIRST_HOUR + i for i in range(3)]
