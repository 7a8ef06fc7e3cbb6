"""The split-brain fence of a region's own Patroni cluster (the patroni role's drop-in of patroni@<v>-main and its
script; compiler/ir/postgres_ha.py FENCE_LAYER), run as generated for the reference's us-east-1 against stand-ins for
the members of the standby cluster us-west-2 runs of it: Patroni REST APIs on 127.0.0.1 that answer GET /primary
with the status a member gives (200: the promoted leader; 503: a standby leader or a replica), over TLS with
certificates made as the tls role makes them (its CA command, its request command, its signing script), and GET
/cluster with the members and roles of the cluster's DCS as Patroni 3.0.2 writes them (patroni/utils.py
cluster_as_json: "leader" once promoted, "standby_leader" while a standby cluster, "replica"/"sync_standby").

- a member answering 200 refuses the start (non-zero exit; the journal names the member and what to do) and latches
  the fence shut: later starts refuse without asking, so the unit's restarts cannot slip through a moment the
  partner does not answer;
- a replica answering 503 whose /cluster lists a promoted leader that does not answer here refuses and latches too;
- members answering 503 whose /cluster lists a standby leader start; members that answer but whose /cluster shows
  no standby leader (no leader key, or no answer to /cluster) refuse without latching; no member answering (nothing
  listening, a member that never answers, a certificate of another CA) starts, saying that the check could not be
  made, within the time the unit gives it;
- the operator's file lets the rebuilt standby start;
- the drop-in, rendered by Ansible with the region's variables, passes `systemd-analyze verify` over Debian's unit,
  and runs the script over exactly the fence connection's hosts and port.
"""

from __future__ import annotations

import http.server
import json
import shlex
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from compiler.emit import emit
from compiler.ir.postgres_ha import FENCE_LAYER
from tests.conftest import require_tool
from tests.targets.test_ansible_units import ansible_template

REGION, PARTNER = "us-east-1", "us-west-2"
DEBIAN_UNIT = Path("/lib/systemd/system/patroni@.service")


@pytest.fixture(scope="module")
def generated(reference):
    out, _ = emit(reference, ["ansible"], with_docs=False)
    return {rel: text for rel, (_, text) in out["generated"].items()}


@pytest.fixture(scope="module")
def script(generated, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fence-bin") / "patroni-fence"
    path.write_text(generated["ansible/roles/patroni/files/patroni-fence.sh"])
    path.chmod(0o755)
    return path


def _tls_task_argv(generated, name: str) -> list[str]:
    tasks = yaml.safe_load(generated["ansible/roles/tls/tasks/main.yml"])
    return next(t["ansible.builtin.command"]["argv"] for t in tasks if t.get("name") == name)


def _render(argv: list[str], values: dict) -> list[str]:
    return [str(ansible_template(a, values)) if "{{" in a else a for a in argv]


@pytest.fixture(scope="module")
def pki(generated, tmp_path_factory):
    """Two CAs, each made with the tls role's own command, and a certificate of each for 127.0.0.1, requested with
    the role's request command and signed by its signing script (what the partner's hosts and a stranger serve)."""
    require_tool("openssl")
    base = tmp_path_factory.mktemp("fence-pki")
    sign = base / "platformc-ca-sign"
    sign.write_text(generated["ansible/roles/tls/files/platformc-ca-sign"])
    sign.chmod(0o755)
    make_ca = _tls_task_argv(generated, "Create the region's certificate authority")
    request = _tls_task_argv(generated, "Create this server's key and certificate request")
    out = {}
    for name in ("partner", "stranger"):
        ca_dir = base / name
        (ca_dir / "requests").mkdir(parents=True)
        subprocess.run(_render(make_ca, {"tls_ca_days": 30, "tls_ca_name": f"{name} CA", "tls_ca_dir": str(ca_dir)}),
                       check=True, capture_output=True)
        subprocess.run(_render(request, {"tls_names": ["127.0.0.1"], "tls_san": "IP:127.0.0.1,DNS:localhost",
                                         "tls_dir": str(ca_dir)}), check=True, capture_output=True)
        shutil.copy(ca_dir / "server.csr", ca_dir / "requests/member.csr")
        crt = subprocess.run([str(sign), "member", "30", str(ca_dir)], check=True, capture_output=True).stdout
        (ca_dir / "server.crt").write_bytes(crt)
        out[name] = ca_dir
    return out


def _cluster(leader_role: str | None, *replicas: str) -> dict:
    """GET /cluster as Patroni 3.0.2 answers it (patroni/utils.py cluster_as_json): the member holding the leader key
    is "standby_leader" while the DCS configuration has a standby_cluster section and "leader" once it has none; the
    others are replicas; members sorted by name. leader_role None: no member holds the leader key."""
    members = [{"name": "sixfb-us-west-2-pg-2", "role": leader_role, "state": "running",
                "api_url": "https://sixfb-us-west-2-pg-2:8009/patroni", "host": "sixfb-us-west-2-pg-2", "port": 5433,
                "timeline": 4}] if leader_role else []
    members += [{"name": name, "role": "replica", "state": "running", "api_url": f"https://{name}:8009/patroni",
                 "host": name, "port": 5433, "timeline": 4, "lag": 0} for name in replicas]
    return {"members": sorted(members, key=lambda m: m["name"])}


STANDBY = _cluster("standby_leader", "sixfb-us-west-2-pg-3")
PROMOTED = _cluster("leader", "sixfb-us-west-2-pg-3")


class _Member:
    """A stand-in Patroni REST API on 127.0.0.1: GET /primary answers `status`, GET /cluster the document `cluster`
    (None: the connection is closed unanswered, as Patroni's handler does when it cannot read its DCS); hangs=True:
    accepts, never answers."""

    def __init__(self, ca_dir: Path, status: int = 503, hangs: bool = False, cluster: dict | None = STANDBY):
        self.requests = 0
        self.paths: list[str] = []
        member = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the stdlib's name)
                member.requests += 1
                member.paths.append(self.path)
                if self.path == "/cluster":
                    if cluster is None:
                        self.close_connection = True
                        return
                    body = json.dumps(cluster).encode()
                    self.send_response(200)
                else:
                    body = b'{"state": "running", "role": "replica"}'
                    self.send_response(status if self.path == "/primary" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        if hangs:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.sock.listen(8)  # the handshake never completes: nothing reads
            self.port = self.sock.getsockname()[1]
            self.server = None
            return
        self.sock = None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(ca_dir / "server.crt", ca_dir / "server.key")
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def close(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
        if self.sock:
            self.sock.close()


@pytest.fixture
def members():
    made = []

    def make(*args, **kw):
        m = _Member(*args, **kw)
        made.append(m)
        return m
    yield make
    for m in made:
        m.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fence(script: Path, state: Path, ca: Path | None, *urls: str) -> tuple[int, str, float]:
    argv = [str(script), "--partner", PARTNER, "--fenced", str(state / "15-main.fenced"),
            "--unfenced", str(state / "15-main.unfenced"), *(["--ca", str(ca)] if ca else []), *urls]
    start = time.monotonic()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    return res.returncode, res.stdout + res.stderr, time.monotonic() - start


def test_a_promoted_member_refuses_the_start_and_latches_the_fence(script, pki, members, tmp_path):
    require_tool("curl")
    replica, leader = members(pki["partner"], 503), members(pki["partner"], 200)
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", replica.url, leader.url)
    assert rc != 0, out
    assert f"REFUSING to start: {leader.url}, a member of {PARTNER}'s standby cluster" in out
    assert "split brain" in out and "rebuild this cluster as a standby" in out and f"demote {PARTNER}'s copy" in out
    assert str(tmp_path / "15-main.unfenced") in out
    latch = (tmp_path / "15-main.fenced").read_text()
    assert leader.url in latch and "200" in latch
    # latched: the next start refuses without asking, even once the partner answers 503 or nothing at all
    asked = replica.requests + leader.requests
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", replica.url)
    assert rc != 0 and "REFUSING to start: fenced since" in out and leader.url in out, out
    rc, _, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", f"https://127.0.0.1:{_free_port()}")
    assert rc != 0
    assert replica.requests + leader.requests == asked


def test_standby_members_let_it_start(script, pki, members, tmp_path):
    require_tool("curl")
    a, b = members(pki["partner"], 503), members(pki["partner"], 503)
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", a.url, b.url)
    assert rc == 0, out
    assert "is still a standby cluster" in out and "2 of 2 members answered): starting" in out
    assert "sixfb-us-west-2-pg-2 is the standby leader (running)" in out
    assert a.paths == b.paths == ["/primary", "/cluster"]
    assert not (tmp_path / "15-main.fenced").exists()


def test_a_replica_that_lists_a_promoted_leader_refuses_although_the_leader_is_silent(script, pki, members, tmp_path):
    """The partner's leader does not answer (down, or behind a partition that spares its replica); the replica
    answers GET /primary with 503, as every replica does, and its GET /cluster lists the leader with the role
    "leader": the copy was promoted. The start is refused and latched, as for a 200."""
    require_tool("curl")
    silent = f"https://127.0.0.1:{_free_port()}"
    replica = members(pki["partner"], 503, cluster=PROMOTED)
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", silent, replica.url)
    assert rc != 0, out
    assert (f"REFUSING to start: {replica.url}, a member of {PARTNER}'s standby cluster of this region, lists "
            "sixfb-us-west-2-pg-2 as its leader (running) in GET /cluster") in out
    assert "split brain" in out and "rebuild this cluster as a standby" in out
    assert replica.paths == ["/primary", "/cluster"]
    latch = (tmp_path / "15-main.fenced").read_text()
    assert replica.url in latch and "leader" in latch
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", silent)
    assert rc != 0 and "REFUSING to start: fenced since" in out, out


def test_a_replica_that_lists_a_standby_leader_lets_it_start_although_the_leader_is_silent(script, pki, members,
                                                                                         tmp_path):
    """The same silent leader, and a replica whose GET /cluster lists it as the standby leader: still a standby."""
    require_tool("curl")
    silent = f"https://127.0.0.1:{_free_port()}"
    replica = members(pki["partner"], 503, cluster=STANDBY)
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", silent, replica.url)
    assert rc == 0, out
    assert "is still a standby cluster" in out and "1 of 2 members answered): starting" in out
    assert "REFUSING" not in out and not (tmp_path / "15-main.fenced").exists()


def test_any_member_that_lists_a_leader_refuses(script, pki, members, tmp_path):
    """One member's /cluster shows the standby leader (a stale view), another's the promoted leader: refused."""
    require_tool("curl")
    a, b = members(pki["partner"], 503, cluster=STANDBY), members(pki["partner"], 503, cluster=PROMOTED)
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", a.url, b.url)
    assert rc != 0 and f"REFUSING to start: {b.url}" in out, out
    assert (tmp_path / "15-main.fenced").exists()


@pytest.mark.parametrize("cluster, said", [
    (_cluster(None, "sixfb-us-west-2-pg-2", "sixfb-us-west-2-pg-3"), "no member holds the leader key (2 members)"),
    (None, "GET /cluster failed"),
    ({"error": "not patroni"}, "is not Patroni's cluster document"),
], ids=["no-leader-key", "no-answer", "not-patroni"])
def test_members_that_cannot_show_a_standby_leader_refuse_without_latching(script, pki, members, tmp_path, cluster,
                                                                          said):
    """Members answer, and none shows a standby leader: nothing proves the copy is still a standby (under
    failsafe_mode a promoted leader without its etcd keeps taking writes, and no /cluster lists it). The start is
    refused, but not latched: the next start asks again and starts once the standby leader is back."""
    require_tool("curl")
    a = members(pki["partner"], 503, cluster=cluster)
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", a.url)
    assert rc != 0, out
    assert "REFUSING this start: 1 of 1 members" in out and said in out and "Not latched" in out
    assert str(tmp_path / "15-main.unfenced") in out
    assert not (tmp_path / "15-main.fenced").exists()
    b = members(pki["partner"], 503, cluster=STANDBY)
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", a.url, b.url)
    assert rc == 0 and "is still a standby cluster" in out, out


def test_no_answer_starts_and_says_the_check_could_not_be_made(script, pki, members, tmp_path):
    """Nothing listening, a member that accepts and never answers, and a 200 from a server whose certificate the
    partner's CA did not sign: none is an answer. The start goes on, with a warning naming each, within the unit's
    start timeout (Debian's unit: 30 s) although one member hangs."""
    require_tool("curl")
    hung = members(pki["partner"], hangs=True)
    stranger = members(pki["stranger"], 200)
    closed = f"https://127.0.0.1:{_free_port()}"
    rc, out, took = _fence(script, tmp_path, pki["partner"] / "ca.crt", closed, hung.url, stranger.url)
    assert rc == 0, out
    assert "WARNING: could not check whether" in out and "no member answered" in out
    for url in (closed, hung.url, stranger.url):
        assert f"{url}:" in out
    assert "REFUSING" not in out and not (tmp_path / "15-main.fenced").exists()
    assert took < 15, took  # 5 s at most for the hung member, the others at once
    assert stranger.requests == 0  # the handshake failed: nothing was asked of it
    # the member whose certificate did not verify is said apart (a rotated CA reads differently from a partner down)
    untrusted = next(line for line in out.splitlines() if "answered, but TLS with" in line)
    assert stranger.url in untrusted and closed not in untrusted and hung.url not in untrusted


def test_with_the_partners_ca_the_same_server_counts(script, pki, members, tmp_path):
    """The stranger's refusal above is the certificate's, not the server's: verified with its own CA, its 200
    refuses."""
    require_tool("curl")
    stranger = members(pki["stranger"], 200)
    rc, out, _ = _fence(script, tmp_path, pki["stranger"] / "ca.crt", stranger.url)
    assert rc != 0 and "REFUSING" in out, out


def test_the_operators_file_lets_the_rebuilt_standby_start(script, pki, members, tmp_path):
    require_tool("curl")
    leader = members(pki["partner"], 200)
    (tmp_path / "15-main.fenced").write_text("earlier\n")
    (tmp_path / "15-main.unfenced").write_text("rebuilding as a standby of us-west-2 (INC-42)\n")
    rc, out, _ = _fence(script, tmp_path, pki["partner"] / "ca.crt", leader.url)
    assert rc == 0, out
    assert "starting without the fence" in out and "INC-42" in out
    assert leader.requests == 0


def test_the_script_passes_bash_and_shellcheck(script):
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    shellcheck = require_tool("shellcheck")
    res = subprocess.run([shellcheck, "--shell=bash", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def _group_vars(generated, region: str) -> dict:
    out = {}
    for rel, text in sorted(generated.items()):
        if rel.startswith(f"ansible/inventories/{region}/group_vars/") and rel.endswith((
                "/all.yml", "/data_tier.yml", "/postgres.yml", "/postgres_primary.yml")):
            out.update(yaml.safe_load(text) or {})
    return out


def _tasks(generated) -> list[dict]:
    return yaml.safe_load(generated["ansible/roles/patroni/tasks/main.yml"])


def test_the_drop_in_runs_the_fence_over_the_connection_and_passes_systemd_analyze(reference, generated, tmp_path):
    """The drop-in as Ansible renders it for a us-east-1 member (the role's defaults, the region's group_vars), over
    Debian's patroni@.service and the role's other drop-in, in a root of their own: `systemd-analyze verify` accepts
    the unit without a complaint. Its ExecStartPre runs the script the role installs, as root, over exactly the
    members and port of the region's fence connection, with the partner's CA file the role writes."""
    analyze = require_tool("systemd-analyze")
    if not DEBIAN_UNIT.exists():
        pytest.skip("Debian's patroni package is not installed here")
    tasks = _tasks(generated)
    copies = [t["ansible.builtin.copy"] for t in tasks if "ansible.builtin.copy" in t]
    defaults = yaml.safe_load(generated["ansible/roles/patroni/defaults/main.yml"])
    variables = {**defaults, **_group_vars(generated, REGION)}
    dropin = next(c for c in copies if str(c["dest"]).endswith("/fence.conf"))
    dest = ansible_template(dropin["dest"], variables)
    content = ansible_template(dropin["content"], variables)
    assert dest == "/etc/systemd/system/patroni@15-main.service.d/fence.conf"
    (line,) = [x for x in content.replace("\\\n", " ").splitlines() if x.startswith("ExecStartPre=")]
    argv = shlex.split(line.removeprefix("ExecStartPre="))
    assert argv[0].startswith("+/")  # as root: the unit's User= is postgres
    script = argv[0][1:]
    assert any(c["dest"] == script and c.get("src") == "patroni-fence.sh" for c in copies)
    (conn,) = reference.region(REGION).through(FENCE_LAYER)
    assert sorted(a for a in argv if a.startswith("https://")) == sorted(f"https://{h}:{conn.dest_port}"
                                                                       for h in conn.dest.hosts)
    ca = argv[argv.index("--ca") + 1]
    assert any(ansible_template(str(c["dest"]), variables) == ca and c.get("content") == "{{ patroni_fence_ca }}"
               for c in copies)
    assert argv[argv.index("--partner") + 1] == PARTNER
    restart = next(c for c in copies if str(c["dest"]).endswith("patroni@.service.d/restart.conf"))

    root = tmp_path / "root"
    system = root / "lib/systemd/system"
    system.mkdir(parents=True)
    shutil.copy(DEBIAN_UNIT, system)
    for unit in Path("/lib/systemd/system").glob("*.target"):  # the default dependencies' targets
        shutil.copy(unit, system)
    for unit in Path("/lib/systemd/system").glob("*.slice"):
        shutil.copy(unit, system)
    for rel, text in ((dest, content), (restart["dest"], restart["content"]), (script, "#!/bin/sh\n"),
                      ("/etc/patroni/15-main.yml", "")):
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / script.lstrip("/")).chmod(0o755)
    for binary in ("/usr/bin/patroni", "/bin/kill"):  # Debian's unit's own commands
        path = root / binary.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(binary, path)
    res = subprocess.run([analyze, "verify", f"--root={root}", "patroni@15-main.service"], capture_output=True,
                         text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for complaint in ("Unknown key", "Unknown section", "Failed to parse", "Invalid", "ignoring", "not executable",
                      "Neither a valid"):
        assert complaint not in out, out
    shown = subprocess.run([analyze, "cat-config", f"--root={root}", "systemd/system/patroni@15-main.service.d/fence.conf"],
                           capture_output=True, text=True)
    assert "ExecStartPre=+" in shown.stdout, shown.stdout + shown.stderr  # the file systemd read is the rendered one


def test_a_region_without_a_standby_of_it_has_the_drop_in_removed(generated):
    """The drop-in is written only with a fence to run (`patroni_fence`), and removed otherwise: a partner that stops
    keeping a standby leaves no unit asking it."""
    tasks = _tasks(generated)
    write = next(t for t in tasks if str(t.get("ansible.builtin.copy", {}).get("dest", "")).endswith("/fence.conf"))
    remove = next(t for t in tasks if str(t.get("ansible.builtin.file", {}).get("path", "")).endswith("/fence.conf"))
    assert remove["ansible.builtin.file"]["state"] == "absent"
    for value, writes in (({}, False), ({"partner": PARTNER, "members": ["https://x:8009"], "verify": True}, True)):
        variables = {"patroni_fence": value}
        assert ansible_template("{{ " + write["when"] + " }}", variables) is writes
        assert ansible_template("{{ " + remove["when"] + " }}", variables) is (not writes)


# ---------------------------------------------------------------- the runbook: keep the lost region fenced

def _terraform(plan) -> dict:
    out, _ = emit(plan, ["terraform"], with_docs=False)
    return {rel: text for rel, (_, text) in out["generated"].items()}


def _hosts_of_root(text: str) -> dict[str, str]:
    """The region root's data_hosts `hosts` map: host name -> its zone."""
    import re
    return dict(re.findall(r"\n    (\S+) = \{\n      group\s+= \"[a-z_]+\"\n      zone\s+= \"([^\"]+)\"", text))


def test_the_runbook_keeps_the_lost_region_fenced_with_the_generated_names(reference):
    """Step 2 of each region's runbook takes the region out of the edge's weighted origin and stops its PostgreSQL
    hosts with the cloud's CLI, naming what Terraform made: the Route 53 record's set identifier, each host as the
    data_hosts module names its instance (AWS: its Name tag; GCP: its name, in its zone; Azure: its name, in the
    region root's resource group); it explains the guard with the URLs the drop-in asks and the files it keeps."""
    import re

    from compiler.targets.ansible import docs_region
    tf = _terraform(reference)
    dns = tf["terraform/global/dns.tf"]
    assert 'name            = "origin.${local.domain}"' in dns and "set_identifier  = each.key" in dns
    for name in ("us-east-1", "ap-southeast-1", "me-south-1"):
        region = reference.region(name)
        doc = docs_region(reference, region)
        step2 = doc[doc.index("2. Fence the old region"):doc.index("3. Promote the standby cluster")]
        assert f"SetIdentifier=='{name}'" in step2 and "(.Weight = 0)" in step2
        root = tf[f"terraform/regions/{name}/main.tf"]
        hosts = _hosts_of_root(root)
        members = [h.name for h in region.hosts if h.name in region.postgres_ha.members]
        assert set(members) <= set(hosts)
        if region.cloud == "aws":
            assert "Name = each.key" in tf["terraform/modules/aws/data_hosts/main.tf"]
            (names,) = re.findall(r"Name=tag:Name,Values=(\S+)", step2)
            assert names.split(",") == members
            assert f"--region {region.cloud_region}" in step2
        elif region.cloud == "gcp":
            assert "name                      = each.key" in tf["terraform/modules/gcp/data_hosts/main.tf"]
            stopped = {h: z for names, z in re.findall(r"instances stop (.+?) --zone (\S+)", step2)
                       for h in names.split()}
            assert stopped == {h: hosts[h] for h in members}
        else:
            assert "name                            = each.key" in tf["terraform/modules/azure/data_hosts/main.tf"]
            (rg,) = re.findall(r'locals \{\n  name\s+= "([^"]+)"', root)
            assert 'resource "azurerm_resource_group" "region" {\n  name     = local.name' in root
            assert re.findall(r"--resource-group (\S+) --name (\S+)", step2) == [(rg, h) for h in members]
        (conn,) = region.through(FENCE_LAYER)
        for h in conn.dest.hosts:
            assert f"`https://{h}:{conn.dest_port}/primary`" in step2
        assert "`/etc/patroni/15-main.fenced`" in step2 and "it starts, and logs a warning" in step2
        # the replica's view of a leader this host cannot reach (GET /cluster), and the unlatched refusal
        assert "asked `GET /cluster` too" in step2 and "`standby_leader` until step 3 and `leader` after it" in step2
        assert "refuses that start without writing the file" in step2 and "failsafe_mode" in step2
        step5 = doc[doc.index("5. Later, rebuild"):]
        assert "`/etc/patroni/15-main.unfenced`" in step5 and "refuses every start" in step5


def test_the_runbook_disables_the_front_door_origin_by_its_generated_names(tmp_path):
    """An Azure edge weights origins 1 to 1000: the lost region's origin is disabled instead, in the global root's
    profile and origin group, by the origin's name (the azure-only case with a self-managed PostgreSQL, so that each
    region keeps the other's standby)."""
    import re

    from compiler.pipeline import compile_file
    from compiler.targets.ansible import docs_region
    from tests.conftest import REPO
    spec = (REPO / "tests/cases/azure-only/platform.yaml").read_text()
    assert "      deployment: managed\n      version: 17" in spec
    spec = spec.replace("      deployment: managed\n      version: 17", "      deployment: self-managed\n      version: 17", 1)
    (tmp_path / "platform.yaml").write_text(spec)
    plan = compile_file(str(tmp_path / "platform.yaml")).plan
    tf = _terraform(plan)
    cdn = tf["terraform/global/cdn.tf"]
    (profile,) = re.findall(r'locals \{\n  name\s+= "([^"]+)"', tf["terraform/global/main.tf"])
    assert 'resource "azurerm_cdn_frontdoor_origin_group" "regions" {\n  name                     = "regions"' in cdn
    assert "name                           = each.key" in cdn
    for region in plan.regions:
        doc = docs_region(plan, region)
        step2 = doc[doc.index("2. Fence the old region"):doc.index("3. Promote the standby cluster")]
        assert (f"az afd origin update --subscription {plan.spec.clouds['azure'].account} --resource-group {profile} "
                f"--profile-name {profile} --origin-group-name regions --origin-name {region.name} "
                "--enabled-state Disabled") in step2
        assert "An apply of the global root without the override sets it back: repeat it after any such apply" in step2
