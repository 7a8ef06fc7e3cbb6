"""Ansible target, judged by Ansible's own tools on the generated tree of each golden case.

- ansible-inventory parses every region's inventory, with unparsed inventories made fatal, and
  shows every IR host in its group with its fqdn and zone;
- ansible-playbook --syntax-check accepts every playbook with every region's inventory;
- ansible-lint --offline --profile production reports nothing;
- the common role and two data roles (pgbouncer, redis) run for real in --check --diff mode against
  this machine, inside a network namespace nothing can leave, with zero failures;
- the tls role (the region CA and a server certificate) runs for real twice in a temp directory:
  openssl verifies the certificate, and the second run changes nothing (idempotence);
- what the roles render is judged by the programs that read it: the firewall by `nft -c` (every
  region and group), the Redis includes by redis-server with the data tier's redis.conf, the
  PostgreSQL password script and passfile by a PostgreSQL 15 server.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from compiler.pipeline import compile_file
from compiler.targets import ansible
from tests.conftest import IN_CI, REPO, VENV_BIN, require_tool
from tests.targets.test_ansible_units import ansible_template

CASES = ["reference", "two-region"]
STRICT_INVENTORY = {"ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true"}
ISOLATE = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh"]
RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def _env(**extra) -> dict:
    """The venv's bin first on PATH (ansible-lint warns otherwise), no user config, no colour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0",
               ANSIBLE_HOME=str(extra.pop("home")), ANSIBLE_LOCAL_TEMP=str(extra.pop("local_tmp")), **extra)
    return env


def _run(cmd, cwd, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _build_tree(case, tmp_path_factory):
    """The case's generated/ tree (ansible + datastores) written with the writer, like `platformc generate`."""
    plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
    outputs, owners = emit(plan, ["ansible", "datastores"], with_docs=False)
    base = tmp_path_factory.mktemp(f"ansible-{case}")
    root = base / "generated"
    writer.apply(writer.plan_write(root, outputs["generated"], owners))
    home = base / "ansible-home"
    env = _env(home=home, local_tmp=base / "ansible-tmp")
    return plan, root / "ansible", env


@pytest.fixture(scope="module", params=CASES)
def tree(request, tmp_path_factory):
    """Every golden case: the static checks run on each."""
    return _build_tree(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory):
    """The reference platform alone: the real runs (check mode, servers) need one case, not every case."""
    return _build_tree("reference", tmp_path_factory)


def _parallel(fn, items):
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(fn, items))


def test_every_inventory_parses_and_holds_the_ir_hosts(tree):
    plan, root, env = tree
    tool = require_tool("ansible-inventory")

    def listing(region):
        return region, _run([tool, "-i", f"inventories/{region.name}", "--list"], root, {**env, **STRICT_INVENTORY})

    for region, proc in _parallel(listing, plan.regions):
        assert proc.returncode == 0, f"{region.name}: {proc.stderr}"
        inv = json.loads(proc.stdout)
        hostvars = inv["_meta"]["hostvars"]
        for h in region.hosts:
            assert h.name in inv[h.group]["hosts"], f"{region.name}: {h.name} not in {h.group}"
            assert hostvars[h.name]["ansible_host"] == h.fqdn
            assert hostvars[h.name]["platformc_zone"] == h.zone
            assert hostvars[h.name]["platformc_region"] == region.name
        assert set(hostvars) == {h.name for h in region.hosts}


def test_the_readmes_ssh_config_names_the_key_for_every_host(tree):
    """Every host allows MaxAuthTries attempts and ssh offers an agent's keys one each: the README's ~/.ssh/config
    block must cover every host the inventories reach (bastions included, which command-line options do not reach
    through ProxyJump) and state the limit the common role really sets."""
    import fnmatch
    plan, root, _env_ = tree
    readme = (root / "README.md").read_text()
    block = re.search(r"```\n  Host (.+)\n    IdentityFile .+\n    IdentitiesOnly yes\n  ```", readme)
    assert block, "no ~/.ssh/config block in the README"
    patterns = block[1].split()
    hosts = [h.fqdn for r in plan.regions for h in r.hosts]
    assert hosts and all(any(fnmatch.fnmatch(h, p) for p in patterns) for h in hosts)
    defaults = yaml.safe_load((root / "roles/common/defaults/main.yml").read_text())
    tries = defaults["common_ssh_max_auth_tries"]
    assert f"They allow {tries} authentication attempts" in readme
    sshd = (root / "roles/common/templates/sshd-hardening.conf.j2").read_text()
    assert "MaxAuthTries {{ common_ssh_max_auth_tries }}" in sshd


def test_every_playbook_passes_syntax_check_with_every_inventory(tree):
    plan, root, env = tree
    tool = require_tool("ansible-playbook")
    playbooks = ["site.yml", *[pb.file for pb in ansible.site.PLAYBOOKS]]

    def check(region):
        return region, _run([tool, "--syntax-check", "-i", f"inventories/{region.name}", *playbooks], root,
                            {**env, **STRICT_INVENTORY})

    for region, proc in _parallel(check, plan.regions):
        assert proc.returncode == 0, f"{region.name}: {proc.stdout}\n{proc.stderr}"
        assert proc.stdout.count("playbook: ") == len(playbooks)


def test_ansible_lint_production_profile_finds_nothing(tree):
    _, root, env = tree
    tool = require_tool("ansible-lint")
    # not the strict-inventory variables: ansible-lint's own syntax check runs without an inventory
    proc = _run([tool, "--offline", "--profile", "production", "-f", "pep8", "--nocolor", "."], root, env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Profile 'production' was required, and it passed" in proc.stderr, proc.stderr


# A variable that holds a secret, by its name (redis_admin_password, elasticsearch_elastic_secret, REDISCLI_AUTH ...).
SECRET_NAME = re.compile(r"passw|secret|auth|token|credential|private_key", re.I)
KEYWORD_BLOCKS = ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers")


def _environments(node, where: str):
    """Every `environment:` of the plays, blocks, tasks and handlers in a loaded playbook or tasks file: (where, it)."""
    if isinstance(node, list):
        for item in node:
            yield from _environments(item, where)
    elif isinstance(node, dict):
        label = f"{where}: {node.get('name', '?')}"
        if "environment" in node:
            yield label, node["environment"]
        for key in KEYWORD_BLOCKS:
            if key in node:
                yield from _environments(node[key], label)


def test_no_task_passes_a_secret_through_environment(tree):
    """Ansible puts a task's `environment:` in front of the module's command line (`VAR=value python3 ...`): visible
    in `ps` on the host while the module runs, in sudo's log of the command with become, and in `-vvv` output, no_log
    or not (ansible/ansible#69961; the `environment` docs: "not a recommended way of passing secrets"). No generated
    play, block, task or handler may name a secret-looking variable there, as a name or in a value it templates."""
    _, root, _ = tree
    files = sorted(root.glob("*.yml")) + sorted(root.glob("roles/*/tasks/*.yml")) + \
        sorted(root.glob("roles/*/handlers/*.yml"))
    assert any(f.parent.name == "handlers" for f in files) and any(f.parent.name == "tasks" for f in files)
    found = []
    for path in files:
        for where, environment in _environments(yaml.safe_load(path.read_text()), str(path.relative_to(root))):
            items = environment.items() if isinstance(environment, dict) else [("", environment)]
            for name, value in items:
                names = re.findall(r"[A-Za-z_][A-Za-z0-9_]*", " ".join(re.findall(r"{[{%](.*?)[%}]}", str(value),
                                                                                   re.S)))
                if SECRET_NAME.search(name) or any(SECRET_NAME.search(n) for n in names):
                    found.append(f"{where}: {name}={value}")
    assert not found, "secrets passed through `environment:`:\n" + "\n".join(found)


# ---------------------------------------------------------------- real runs against localhost

def _require_isolation():
    for tool in ("unshare", "ip"):
        require_tool(tool)
    reason = None
    if os.geteuid() != 0:
        reason = "the check-mode run needs root (a network namespace; the roles manage /etc)"
    elif subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        reason = "unshare -n is not permitted here"
    if reason:
        pytest.fail(reason) if IN_CI else pytest.skip(reason)


def _recap(out: str) -> dict:
    hosts = {m.group(1): tuple(int(x) for x in m.groups()[1:]) for m in RECAP.finditer(out)}
    assert hosts, out[-3000:]
    return hosts


def _local_inventory(path: Path, groups: dict[str, str], group_vars: dict[str, dict]) -> Path:
    """group -> a host name that is this machine (local connection, the system Python for python3-apt)."""
    (path / "group_vars").mkdir(parents=True)
    children = {g: {"hosts": {name: {"ansible_host": "localhost", "platformc_zone": "test-zone"}}}
                for g, name in groups.items()}
    inv = {"all": {"vars": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"},
                   "children": children}}
    (path / "hosts.yml").write_text(yaml.safe_dump(inv))
    for stem, variables in group_vars.items():
        (path / "group_vars" / f"{stem}.yml").write_text(yaml.safe_dump(variables))
    return path


# A namespace whose only way out is a veth pair into itself: Ansible's facts see a private address
# and a default route, as on a cloud VM, and a packet sent anywhere still cannot leave the machine.
FAKE_PRIVATE_NETWORK = ("ip link set lo up; ip link add pc0 type veth peer name pc1 && ip link set pc1 up"
                        " && ip addr add 10.99.0.2/24 dev pc0 && ip link set pc0 up"
                        " && ip route add default via 10.99.0.1 dev pc0")


def test_common_and_data_roles_run_in_check_mode(reference_tree, tmp_path):
    """common, pgbouncer, redis and both exporters in --check --diff against this machine: zero failures."""
    plan, root, env = reference_tree
    _require_isolation()
    require_tool("python3", "/usr/bin/python3")  # the apt module runs under the system Python
    tool = require_tool("ansible-playbook")
    region = plan.regions[0]
    gv = root / "inventories" / region.name / "group_vars"
    redis_node = region.hosts_in("redis_cluster")[0].name  # the first node, where the role's once-only steps run
    primary = region.hosts_in("postgres_primary")[0].name  # where postgres_exporter makes its secret
    redis_vars = yaml.safe_load((gv / "redis_cluster.yml").read_text())
    inventory = _local_inventory(tmp_path / "inventory",
                                 {"pgbouncer": "localhost", "bastion": "localhost", "redis_cluster": redis_node,
                                  "postgres": primary, "postgres_primary": primary}, {
        "all": yaml.safe_load((gv / "all.yml").read_text()),
        "pgbouncer": yaml.safe_load((gv / "pgbouncer.yml").read_text()),
        "redis_cluster": redis_vars,
        "postgres": yaml.safe_load((gv / "postgres.yml").read_text()),
        "postgres_primary": yaml.safe_load((gv / "postgres_primary.yml").read_text()),
    })
    # The secret managers are not reachable here: the secrets arrive as extra variables instead.
    extra = tmp_path / "secrets.json"
    extra.write_text(json.dumps({"pgbouncer_auth_password": "check-mode-secret",
                                 "redis_secrets": {k: "check-mode-secret" for k in redis_vars["redis_secrets"]}}))
    isolate = ["unshare", "-n", "--", "sh", "-c", FAKE_PRIVATE_NETWORK + '; exec "$@"', "sh"]
    proc = _run([*isolate, tool, "-i", str(inventory), "-e", f"@{extra}", "--check", "--diff",
                 "common.yml", "pgbouncer.yml", "redis.yml", "postgres_exporter.yml", "redis_exporter.yml"],
                root, env, timeout=240)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    for host in ("localhost", redis_node, primary):
        ok, changed, unreachable, failed = _recap(out)[host]
        assert (unreachable, failed) == (0, 0), out[-5000:]
    assert "bind 10.99.0.2 127.0.0.1 -::1" in out  # the Redis host include, from the host's facts
    # the roles really did their work: the firewall and the data tier's pgbouncer.ini were diffed
    ssh = next(c for c in region.through("nftables") if c.dest.host_group == "pgbouncer" and c.dest_port == 22)
    networks = ansible.inventory._networks  # merged as the inventory writes them (nftables refuses overlaps)
    assert f"ip saddr {{ {', '.join(networks(ssh.source.cidrs, ''))} }} tcp dport {{ 22 }} accept" in out  # SSH: bastion
    pods = ", ".join(networks(region.addressing.pod_source_cidrs, ""))
    assert f"ip saddr {{ {pods} }} tcp dport {{ 6432 }} accept" in out  # the spec's PgBouncer port, from the pods
    assert "auth_type = scram-sha-256" in out
    # the exporters: their units from the data tier's port, their firewall openings
    assert "--redis.addr=redis://127.0.0.1:6379 --redis.user=redis_exporter --config-command=-" in out
    # (and the query file with the WAL receiver's status the DR partner pages on: compiler/ir/dr_watch.py)
    assert "--web.listen-address=:9187 --extend.query-path=/etc/postgres_exporter/queries.yaml " \
           "--collector.stat_statements" in out
    assert "tcp dport { 9121 } accept" in out and "tcp dport { 9187 } accept" in out
    assert "check-mode-secret" not in out, "a secret reached the output"


def test_tls_role_issues_a_verifiable_certificate_idempotently(reference_tree, tmp_path):
    plan, root, env = reference_tree
    _require_isolation()
    require_tool("openssl")
    tool = require_tool("ansible-playbook")
    inventory = _local_inventory(tmp_path / "inventory", {"bastion": "localhost"},
                                 {"all": {"platformc_region": "test"}})
    playbook = tmp_path / "tls.yml"
    dirs = {"tls_ca_dir": str(tmp_path / "ca"), "tls_dir": str(tmp_path / "server"),
            "tls_owner": "root", "tls_group": "root",
            "tls_renewal": False}  # issuance alone; test_tls_renewal.py runs the renewal
    playbook.write_text(yaml.safe_dump([{
        "name": "Issue a certificate", "hosts": "bastion", "gather_facts": False,
        "tasks": [{"name": "Run the tls role", "ansible.builtin.include_role": {"name": "tls"}, "vars": dirs}]}]))
    cmd = [*ISOLATE, tool, "-i", str(inventory), str(playbook)]
    run_env = {**env, "ANSIBLE_ROLES_PATH": str(root / "roles")}
    first = _run(cmd, root, run_env)
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr
    server = tmp_path / "server"
    verify = subprocess.run(["openssl", "verify", "-CAfile", server / "ca.crt", server / "server.crt"],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    san = subprocess.run(["openssl", "x509", "-in", server / "server.crt", "-noout", "-ext", "subjectAltName"],
                         capture_output=True, text=True).stdout
    assert "DNS:localhost" in san
    assert oct((server / "server.key").stat().st_mode & 0o777) == "0o600"
    second = _run(cmd, root, run_env)
    assert second.returncode == 0, second.stdout[-5000:]
    ok, changed, unreachable, failed = _recap(second.stdout)["localhost"]
    assert (changed, failed) == (0, 0), second.stdout[-5000:]
    # the CA host rebuilt: a new CA, which the server then trusts; its certificate (still far from expiry) is
    # re-issued by the new CA, or every peer that verifies it would refuse it
    shutil.rmtree(tmp_path / "ca")
    third = _run(cmd, root, run_env)
    assert third.returncode == 0, third.stdout[-5000:] + third.stderr
    verify = subprocess.run(["openssl", "verify", "-CAfile", server / "ca.crt", server / "server.crt"],
                            capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_firewall_of_every_region_and_group_is_valid_nftables(tree, tmp_path):
    """The common role's nftables.conf.j2, rendered by Ansible's templar with each region's group
    variables (every group, so every rule set), is accepted by `nft -c` (parse and kernel check,
    inside a network namespace)."""
    plan, root, _ = tree
    nft = require_tool("nft")
    _require_isolation()
    source = (root / "roles/common/templates/nftables.conf.j2").read_text()
    rendered = []
    for region in plan.regions:
        gv = root / "inventories" / region.name / "group_vars"
        # the role's defaults first, as Ansible reads them (lowest precedence)
        base = {"ansible_managed": "Ansible managed",
                **yaml.safe_load((root / "roles/common/defaults/main.yml").read_text()),
                **yaml.safe_load((gv / "all.yml").read_text())}
        for stem in ("postgres_primary", "postgres_replicas", "pgbouncer", "redis_cluster", "elasticsearch", "bastion"):
            parents = [p for p in ansible.inventory.PARENT_GROUPS[stem] if (gv / f"{p}.yml").exists()]
            variables = dict(base)
            for group in (*parents, stem):  # Ansible's order: parent groups first, the host's own group last
                variables.update(yaml.safe_load((gv / f"{group}.yml").read_text()))
            text = ansible_template(source, variables, file=True)
            path = tmp_path / f"{region.name}-{stem}.nft"
            path.write_text(text)
            rendered.append(path)
    text = {p.name: p.read_text() for p in rendered}
    first = plan.regions[0].name
    assert "tcp dport { 9187 } accept" in text[f"{first}-postgres_primary.nft"]
    assert "tcp dport { 9187 } accept" in text[f"{first}-postgres_replicas.nft"]
    assert "tcp dport { 9121 } accept" in text[f"{first}-redis_cluster.nft"]
    # Azure's PostgreSQL members redirect exactly their endpoints' own backend ports to 5432, in a nat prerouting
    # chain (before the input filter, which opens 5432 to the same clients); no other host redirects anything
    from compiler.ir.postgres_ha import endpoints
    for region in plan.regions:
        ports = sorted(e.backend_port for e in endpoints(region) if e.backend_port != 5432)
        for stem in ("postgres_primary", "postgres_replicas", "pgbouncer", "redis_cluster", "elasticsearch", "bastion"):
            nft_text = text[f"{region.name}-{stem}.nft"]
            redirects = re.findall(r"^\s*(\S+ dport \{ [^}]* \} redirect to :\d+)$", nft_text, re.M)
            if region.cloud == "azure" and stem.startswith("postgres") and ports and region.hosts_in(stem):
                want = f"tcp dport {{ {', '.join(map(str, ports))} }} redirect to :5432"
                assert redirects == [want], (region.name, stem)
                assert "type nat hook prerouting priority dstnat; policy accept;" in nft_text
                assert re.search(r"tcp dport \{ 5432 \} accept", nft_text)
            else:
                assert redirects == [] and "prerouting" not in nft_text, (region.name, stem)
    script = 'for f in "$@"; do nft -c -f "$f" || { echo "in $f"; exit 1; }; done'
    proc = subprocess.run(["unshare", "-n", "--", "sh", "-c", script.replace("nft ", f"{nft} "), "sh",
                           *map(str, rendered)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# ---------------------------------------------------------------- what the roles render, judged by the servers

# Printable ASCII (what the redis role admits), with every character the formats quote or escape.
HOSTILE = 'p"a\\ss\'w:o#r%d{{x}}$1;--'


def test_redis_includes_load_with_the_data_tier_redis_conf(reference_tree, tmp_path):
    """host.conf, acl.conf and admin.conf as the redis role renders them (Ansible's templar, a
    password full of quote and escape characters) start with the data tier's redis.conf: the
    application user and the admin log in, the admin may run CLUSTER commands, the application may
    not, nobody is let in without a password, and masterauth holds the password exactly."""
    import hashlib
    from tests.targets.test_datastores_support import Resp, RedisError, private_dir, require_isolation, start_redis
    plan, root, _ = reference_tree
    region = next((r for r in plan.regions if r.hosts_in("redis_cluster")), None)
    assert region is not None, "the reference platform has self-managed Redis"
    require_isolation()
    data = root.parent / "datastores" / region.name
    topology = json.loads((data / "redis-topology.json").read_text())
    refs = {u["password_ref"] for u in topology["acl_include"]["users"]} | {topology["acl_include"]["masterauth_ref"]}
    variables = {"ansible_managed": "Ansible managed", "redis_topology": topology,
                 "redis_secrets": {hashlib.sha1(ref.encode()).hexdigest()[:12]: HOSTILE for ref in refs},
                 "redis_admin_password": "0f" * 32, "ansible_facts": {"default_ipv4": {"address": "127.0.0.2"}}}
    work = private_dir("ans-redis-")
    includes = []
    for name in ("redis-host.conf.j2", "redis-acl.conf.j2", "redis-admin.conf.j2"):
        path = work / name.removesuffix(".j2")
        path.write_text(ansible_template((root / "roles/redis/templates" / name).read_text(), variables, file=True))
        includes += ["--include", str(path)]
    server, sock = start_redis(data / "redis.conf", work, *includes)
    try:
        anonymous = Resp(sock)
        assert isinstance(anonymous.call("PING"), RedisError)  # the default user is off
        app = Resp(sock)
        assert app.call("AUTH", topology["acl_include"]["users"][0]["name"], HOSTILE) == "OK"
        assert isinstance(app.call("CLUSTER", "ADDSLOTS", "1"), RedisError)  # why the admin user exists
        admin = Resp(sock)
        assert admin.call("AUTH", "platformc-admin", "0f" * 32) == "OK"
        assert b"cluster_state" in admin.call("CLUSTER", "INFO")
        assert admin.config_get("masterauth") == HOSTILE
        assert admin.config_get("masteruser") == topology["acl_include"]["masteruser"]
        for conn in (anonymous, app, admin):
            conn.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


def test_postgresql_passwords_and_passfile_work_on_a_real_server(reference_tree):
    """The role's ALTER ROLE script (rendered by Ansible's templar, fed on stdin as its task does)
    sets passwords full of quote characters exactly, and skips a role setup.psql did not create; the
    passfile the role writes logs the replication user in over the replication protocol."""
    from tests.targets.test_datastores_support import (AS_POSTGRES, PGBIN, PgCluster, chown_tree, make_tls,
                                                       private_dir, require_isolation)
    plan, root, _ = reference_tree
    require_isolation()
    work = private_dir("ans-pg-")
    try:
        (work / "in.conf").write_text("password_encryption = 'scram-sha-256'\n")
        (work / "in_hba.conf").write_text("local all postgres peer\n"
                                          "local replication replicator scram-sha-256\n"
                                          "local all all scram-sha-256\n")
        (work / "pg").mkdir()
        cluster = PgCluster(work / "in.conf", work / "in_hba.conf", work / "pg", make_tls(work))
        defaults = yaml.safe_load((root / "roles/postgresql/defaults/main.yml").read_text())
        role_vars = yaml.safe_load((root / "roles/postgresql/vars/main.yml").read_text())
        passwords = {"postgresql_admin_password": HOSTILE + "admin",
                     "postgresql_replication_password": HOSTILE + "repl",
                     "postgresql_pgbouncer_auth_password": HOSTILE + "bouncer"}
        variables = {**defaults, **passwords, "postgresql_pgbouncer_auth_user": "pgbouncer",
                     "postgresql_port": cluster.port}
        sql = ansible_template(role_vars["postgresql_roles_sql"], variables)
        passfile = work / "pgpass"
        passfile.write_text(ansible_template((root / "roles/postgresql/templates/pgpass.j2").read_text(), variables,
                                             file=True))
        chown_tree(work)
        os.chmod(passfile, 0o600)
        cluster.start()
        try:
            cluster.psql("-c", "CREATE ROLE replicator LOGIN REPLICATION")  # setup.psql's role; no pgbouncer role yet
            psql = AS_POSTGRES + [str(PGBIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(work / "pg"),
                                  "-p", str(cluster.port)]
            def apply_roles_sql():
                done = subprocess.run([*psql, "-U", "postgres", "-d", "postgres"], input=sql, capture_output=True,
                                      text=True)
                assert done.returncode == 0, done.stdout + done.stderr

            def login(user, password):
                return subprocess.run([*psql, "-U", user, "-d", "postgres", "-Atc", "select current_user"],
                                      capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password})

            apply_roles_sql()
            assert login("replicator", HOSTILE + "repl").stdout.strip() == "replicator"
            cluster.psql("-c", "CREATE ROLE pgbouncer LOGIN")  # now setup.psql has run: the next apply sets it
            apply_roles_sql()
            assert login("pgbouncer", HOSTILE + "bouncer").stdout.strip() == "pgbouncer"
            wrong = subprocess.run([*psql, "-U", "replicator", "-d", "postgres", "-c", "select 1"],
                                   capture_output=True, text=True, env={**os.environ, "PGPASSWORD": "wrong"})
            assert wrong.returncode != 0
            admin = cluster.query("select rolpassword like 'SCRAM-SHA-256$%' from pg_authid where rolname = 'postgres'")
            assert admin == [["t"]]
            replication = subprocess.run(
                [*AS_POSTGRES, str(PGBIN / "psql"), "-X", f"host={work / 'pg'} port={cluster.port} user=replicator "
                 "dbname=replication replication=true", "-c", "IDENTIFY_SYSTEM"],
                capture_output=True, text=True, env={**os.environ, "PGPASSFILE": str(passfile)})
            assert replication.returncode == 0, replication.stderr
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------- the exporters' database users, judged by the servers

# The statements postgres_exporter 0.18.1 runs for the data-tier alerts (collector/pg_stat_statements.go for
# PostgreSQL 13-16, collector/pg_replication.go, the pg_stat_archiver default metrics), as its user would.
EXPORTER_QUERIES = {
    "stat_statements": """SELECT pg_get_userbyid(userid) as user, pg_database.datname, pg_stat_statements.queryid,
        pg_stat_statements.calls as calls_total, pg_stat_statements.total_exec_time / 1000.0 as seconds_total
        FROM pg_stat_statements JOIN pg_database ON pg_database.oid = pg_stat_statements.dbid
        WHERE total_exec_time > (SELECT percentile_cont(0.1) WITHIN GROUP (ORDER BY total_exec_time) FROM pg_stat_statements)
        ORDER BY seconds_total DESC LIMIT 100""",
    "replication": """SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0
        ELSE GREATEST (0, EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))) END AS lag""",
    "stat_archiver": "SELECT archived_count, failed_count FROM pg_stat_archiver",
}
# Without pg_read_all_stats (in pg_monitor) other users' statements have no queryid: the alerts join on it.
OTHERS_QUERYIDS = ("SELECT count(*) FROM pg_stat_statements WHERE queryid IS NOT NULL"
                   " AND userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)")


def test_postgres_exporter_logs_in_with_its_passfile_and_reads_only_statistics(reference_tree):
    """The role's SQL (rendered by Ansible's templar with a password full of quote characters, fed on
    stdin twice, as its task does) makes a pg_monitor role that is nothing more; with the data tier's
    pg_hba.conf, the passfile the role writes logs it in over the local socket (libpq, as lib/pq in the
    exporter reads PGPASSFILE), and it can run every query the alerts' metrics come from."""
    from tests.targets.test_datastores_support import AS_POSTGRES, PGBIN, PgCluster, chown_tree, make_tls, private_dir, \
        require_isolation
    plan, root, _ = reference_tree
    require_isolation()
    region = plan.regions[0]
    work = private_dir("ans-pgx-")
    try:
        (work / "in.conf").write_text("password_encryption = 'scram-sha-256'\nssl = on\n"
                                      "shared_preload_libraries = 'pg_stat_statements'\n")
        (work / "pg").mkdir()
        hba = root.parent / "datastores" / region.name / "pg_hba.conf"
        cluster = PgCluster(work / "in.conf", hba, work / "pg", make_tls(work))
        defaults = yaml.safe_load((root / "roles/postgres_exporter/defaults/main.yml").read_text())
        role_vars = yaml.safe_load((root / "roles/postgres_exporter/vars/main.yml").read_text())
        variables = {**defaults, "postgres_exporter_stat_statements": True, "postgres_exporter_password": HOSTILE,
                     "postgres_exporter_postgresql_port": cluster.port}
        sql = ansible_template(role_vars["postgres_exporter_role_sql"], variables)
        passfile = work / "pgpass"
        passfile.write_text(ansible_template((root / "roles/postgres_exporter/templates/pgpass.j2").read_text(),
                                             variables, file=True))
        chown_tree(work)
        os.chmod(passfile, 0o600)
        cluster.start()
        try:
            for _ in range(2):  # a second run changes nothing and fails on nothing
                done = subprocess.run(AS_POSTGRES + [str(PGBIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                                      str(work / "pg"), "-p", str(cluster.port), "-d", "postgres"],
                                      input=sql, capture_output=True, text=True)
                assert done.returncode == 0, done.stdout + done.stderr
            user = defaults["postgres_exporter_db_user"]
            (row,) = cluster.query(f"SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolconnlimit, "
                                   f"pg_has_role('{user}', 'pg_monitor', 'USAGE') FROM pg_roles WHERE rolname = '{user}'")
            assert row == ["f", "f", "f", "f", "3", "t"]
            cluster.query("SELECT count(*) FROM pg_class")  # something for pg_stat_statements to have seen
            dsn = f"host={work / 'pg'} port={cluster.port} user={user} dbname=postgres sslmode=disable"
            as_exporter = AS_POSTGRES + [str(PGBIN / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", dsn]
            env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
            env["PGPASSFILE"] = str(passfile)
            for name, query in EXPORTER_QUERIES.items():
                res = subprocess.run([*as_exporter, "-c", query], capture_output=True, text=True, env=env)
                assert res.returncode == 0, f"{name}: {res.stderr}"
                assert res.stdout.strip(), f"{name} returned nothing"
            others = subprocess.run([*as_exporter, "-c", OTHERS_QUERYIDS], capture_output=True, text=True, env=env)
            assert int(others.stdout) >= 1, others.stderr
            denied = subprocess.run([*as_exporter, "-c", "CREATE TABLE exporter_was_here ()"], capture_output=True,
                                    text=True, env=env)
            assert denied.returncode != 0 and "permission denied" in denied.stderr
            wrong = subprocess.run([*as_exporter, "-c", "SELECT 1"], capture_output=True, text=True,
                                   env={**env, "PGPASSFILE": "/dev/null"})
            assert wrong.returncode != 0  # the password, not trust, let it in
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_redis_exporter_user_reads_statistics_and_nothing_else(reference_tree, tmp_path):
    """The ACL include the redis_exporter role keeps, loaded with the data tier's redis.conf and the redis
    role's includes: the exporter's user runs every command redis_exporter needs for its metrics and is
    refused CONFIG (masterauth), keys, channels and writes. The same user added live by the role's
    ACL SETUSER (fed to redis-cli as the admin, as the role does) is the same user exactly."""
    import hashlib
    from tests.targets.test_datastores_support import Resp, RedisError, private_dir, require_isolation, start_redis
    plan, root, _ = reference_tree
    region = next((r for r in plan.regions if r.hosts_in("redis_cluster")), None)
    assert region is not None, "the reference platform has self-managed Redis"
    require_isolation()
    data = root.parent / "datastores" / region.name
    topology = json.loads((data / "redis-topology.json").read_text())
    refs = {u["password_ref"] for u in topology["acl_include"]["users"]} | {topology["acl_include"]["masterauth_ref"]}
    password, admin_password = "5e" * 32, "0f" * 32  # what `openssl rand -hex 32` makes
    defaults = yaml.safe_load((root / "roles/redis_exporter/defaults/main.yml").read_text())
    role_vars = yaml.safe_load((root / "roles/redis_exporter/vars/main.yml").read_text())
    variables = {**defaults, "ansible_managed": "Ansible managed", "redis_topology": topology,
                 "redis_secrets": {hashlib.sha1(ref.encode()).hexdigest()[:12]: HOSTILE for ref in refs},
                 "redis_admin_password": admin_password, "redis_exporter_password": password,
                 "ansible_facts": {"default_ipv4": {"address": "127.0.0.2"}}}
    user = defaults["redis_exporter_acl_user"]
    tasks = yaml.safe_load((root / "roles/redis_exporter/tasks/main.yml").read_text())
    setuser_task = next(t for t in tasks if t["name"] == "Add the exporter's ACL user to the running node")
    assert setuser_task["no_log"] is True  # its standard input holds the admin password
    servers = []
    try:
        acl_lines = []
        for live in (False, True):
            work = private_dir("ans-redx-")
            includes = []
            templates = [root / "roles/redis/templates" / n for n in ("redis-host.conf.j2", "redis-acl.conf.j2",
                                                                        "redis-admin.conf.j2")]
            if not live:
                templates.append(root / "roles/redis_exporter/templates/redis-exporter-acl.conf.j2")
            for t in templates:
                path = work / t.name.removesuffix(".j2")
                path.write_text(ansible_template(t.read_text(), variables, file=True))
                includes += ["--include", str(path)]
            server, sock = start_redis(data / "redis.conf", work, *includes)
            servers.append((server, work))
            if live:
                # the role's task as generated: its redis-cli options (the node's socket in place of -h/-p) and its
                # standard input, the admin password (--askpass) and then ACL SETUSER; no environment
                options = setuser_task["ansible.builtin.command"]["argv"]
                at = options.index("-h")
                assert options[at:at + 4:2] == ["-h", "-p"] and "environment" not in setuser_task
                setuser = ansible_template(role_vars["redis_exporter_setuser"], variables)
                stdin = ansible_template(setuser_task["ansible.builtin.command"]["stdin"],
                                         {**variables, "redis_exporter_admin_password": admin_password,
                                          "redis_exporter_setuser": setuser})
                cli = subprocess.run([*options[:at], *options[at + 4:], "-s", str(sock)], input=stdin + "\n",
                                     capture_output=True, text=True,
                                     env={k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"})
                assert (cli.returncode, cli.stdout.strip()) == (0, "OK"), cli.stdout + cli.stderr  # the role's failed_when
            exporter = Resp(sock)
            assert exporter.call("AUTH", user, password) == "OK"
            for command in (["PING"], ["CLIENT", "SETNAME", "redis_exporter"], ["INFO", "ALL"], ["CLUSTER", "INFO"],
                            ["LATENCY", "LATEST"], ["LATENCY", "HISTOGRAM"], ["SLOWLOG", "LEN"], ["SLOWLOG", "GET", "1"]):
                reply = exporter.call(*command)
                assert not isinstance(reply, RedisError), (command, reply)
            assert b"keyspace_hits:" in exporter.call("INFO", "ALL")  # redis_keyspace_hits_total / misses_total
            for command in (["CONFIG", "GET", "masterauth"], ["GET", "k"], ["SET", "k", "v"], ["KEYS", "*"],
                            ["FLUSHALL"], ["SLOWLOG", "RESET"], ["CLIENT", "KILL", "ID", "1"], ["ACL", "LIST"],
                            ["PUBLISH", "c", "m"], ["SHUTDOWN"]):
                assert isinstance(exporter.call(*command), RedisError), command
            exporter.close()
            admin = Resp(sock)
            assert admin.call("AUTH", "platformc-admin", admin_password) == "OK"
            acl_lines.append(next(x.decode() for x in admin.call("ACL", "LIST") if x.startswith(f"user {user} ".encode())))
            admin.close()
        # the same flags, password hash and rules (Redis lists a user's rules in its own order)
        assert sorted(acl_lines[0].split()) == sorted(acl_lines[1].split()), acl_lines
    finally:
        for server, work in servers:
            server.stop()
            shutil.rmtree(work, ignore_errors=True)


def test_exporter_units_pass_systemd_analyze(reference_tree, tmp_path):
    """Both systemd units, rendered by Ansible's templar with the roles' defaults: `systemd-analyze verify`
    accepts them without a warning about an unknown key or a bad value."""
    plan, root, _ = reference_tree
    analyze = require_tool("systemd-analyze")
    units = []
    for role, extra in (("postgres_exporter", {"postgres_exporter_collectors": ["stat_statements"],
                                               "postgres_exporter_queries_file": "/etc/postgres_exporter/queries.yaml"}),
                        ("redis_exporter", {"redis_exporter_redis_port": 6379})):
        defaults = yaml.safe_load((root / f"roles/{role}/defaults/main.yml").read_text())
        variables = {**defaults, **extra, "ansible_managed": "Ansible managed",
                     f"{role}_binary": "/usr/bin/true",  # verify wants an executable
                     f"{role}_passfile": f"/etc/{role}/pgpass"}
        name = role.replace("_", "-") + ".service.j2"
        unit = tmp_path / f"{role}.service"
        unit.write_text(ansible_template((root / f"roles/{role}/templates/{name}").read_text(), variables, file=True))
        units.append(unit)
    res = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    for complaint in ("Unknown key", "Unknown section", "Failed to parse", "Invalid", "ignoring"):
        assert complaint not in out, out


def test_etcd_members_config_renders_each_peer_url_through_ansible(reference_tree, tmp_path):
    """/etc/default/etcd as ansible-playbook renders it for a member of the reference's us-east-1: the role's own
    content and vars, the inventory's group_vars. ETCD_INITIAL_CLUSTER names every member at
    https://<its address>:<peer port>. A regex backreference there ('\\1') reached the file as a literal `\\1` under
    ansible-core 2.19 (it keeps a string literal's backslashes), and etcd refused to start: no DCS, no Patroni."""
    from urllib.parse import urlsplit
    _plan, root, env = reference_tree
    role = root / "roles/etcd"
    configure = next(t for t in yaml.safe_load((role / "tasks/main.yml").read_text())
                     if t.get("ansible.builtin.copy", {}).get("dest") == "/etc/default/etcd")
    inventory = root / "inventories/us-east-1"
    members = yaml.safe_load((inventory / "group_vars/all.yml").read_text()).get("etcd_members") or \
        next(v["etcd_members"] for f in sorted((inventory / "group_vars").glob("*.yml"))
             if (v := yaml.safe_load(f.read_text()) or {}).get("etcd_members"))
    playbook = tmp_path / "render.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": members[0], "gather_facts": False, "connection": "local",
        # the role's defaults as play vars would outrank the group_vars: only those no group_vars file sets
        "vars": {k: v for k, v in yaml.safe_load((role / "defaults/main.yml").read_text()).items()
                 if not any(k in (yaml.safe_load(f.read_text()) or {}) for f in (inventory / "group_vars").glob("*.yml"))},
        "vars_files": [str(role / "vars/main.yml")],
        "tasks": [{"ansible.builtin.copy": {"content": configure["ansible.builtin.copy"]["content"],
                                            "dest": str(tmp_path / "etcd.env")}}]}]))

    # no fact gathering: the one fact the role reads (the metrics listener's address) is given
    facts = json.dumps({"ansible_facts": {"default_ipv4": {"address": "192.0.2.10"}}})

    def render(*extra):
        res = _run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), "-e",
                    f"ansible_python_interpreter={VENV_BIN / 'python'}", "-e", facts, *extra, str(playbook)], root, env)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return dict(line.split("=", 1) for line in (tmp_path / "etcd.env").read_text().splitlines() if "=" in line)

    # a replacement member joins the running cluster once with `existing` (the runbook's etcd section)
    assert render("-e", "etcd_initial_cluster_state=existing")["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    rendered = render()
    assert rendered["ETCD_INITIAL_CLUSTER_STATE"] == "new"
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())

    def address(name, node=hosts["all"]):
        for sub in (node.get("children") or {}).values():
            found = address(name, sub or {})
            if found:
                return found
        return ((node.get("hosts") or {}).get(name) or {}).get("ansible_host")

    peers = dict(entry.split("=", 1) for entry in rendered["ETCD_INITIAL_CLUSTER"].split(","))
    assert list(peers) == members
    for name, url in peers.items():
        parts = urlsplit(url)
        assert (parts.scheme, parts.hostname, parts.port) == ("https", address(name), 2380), url


GENERATOR = Path("/lib/systemd/system-generators/postgresql-generator")


def test_debians_units_leave_every_cluster_to_patroni(reference_tree, tmp_path):
    """postgresql-common's systemd generator (the real one, Debian's postgresql-common) makes postgresql.service
    start every cluster under /etc/postgresql whose start.conf is missing or `auto`. The roles put the data tier's
    postgresql.conf in /etc/postgresql/<v>/main and each standby cluster's beside it: without a start.conf each of
    them was started at boot beside Patroni. Here the directories of a us-west-2 member (its own cluster and
    us-east-1's standby) are laid out with the files the roles write, bind-mounted over /etc/postgresql in a mount
    namespace of their own, and the generator run on them: it must want no cluster. Without the start.conf files it
    wants each, which shows the run sees the tree."""
    if not GENERATOR.exists():
        (pytest.fail if IN_CI else pytest.skip)("postgresql-common's generator is not installed")
    if os.geteuid() != 0 or subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        (pytest.fail if IN_CI else pytest.skip)("unshare -m (a mount namespace) is not permitted here")
    _plan, root, _env = reference_tree
    gv = {}
    for f in sorted((root / "inventories/us-west-2/group_vars").glob("*.yml")):
        gv.update(yaml.safe_load(f.read_text()) or {})
    tasks = yaml.safe_load((root / "roles/postgresql/tasks/main.yml").read_text()) + \
        yaml.safe_load((root / "roles/patroni/tasks/main.yml").read_text())
    start_conf = {t["ansible.builtin.copy"]["dest"].split("}}")[0] + "}}": t["ansible.builtin.copy"]["content"]
                  for t in tasks if str(t.get("ansible.builtin.copy", {}).get("dest", "")).endswith("/start.conf")}
    assert set(start_conf) == {"{{ postgresql_config_dir }}", "{{ patroni_standby.config_dir }}"}
    defaults = yaml.safe_load((root / "roles/postgresql/defaults/main.yml").read_text())
    version = gv.get("postgresql_version", defaults.get("postgresql_version"))
    own = gv.get("postgresql_config_dir", defaults["postgresql_config_dir"]).replace("{{ postgresql_version }}",
                                                                                    str(version))
    dirs = [own] + [s["config_dir"] for s in gv["patroni_standby_clusters"]]
    assert len(dirs) == 2 and all(d.startswith("/etc/postgresql/") for d in dirs)

    def wanted(with_start_conf: bool) -> list[str]:
        etc, out = tmp_path / f"etc-{with_start_conf}", tmp_path / f"out-{with_start_conf}"
        out.mkdir()
        for i, d in enumerate(dirs):
            here = etc / d.removeprefix("/etc/postgresql/")
            here.mkdir(parents=True)
            (here / "postgresql.conf").write_text("")
            if with_start_conf:
                (here / "start.conf").write_text(start_conf["{{ postgresql_config_dir }}" if i == 0
                                                            else "{{ patroni_standby.config_dir }}"])
        res = subprocess.run(["unshare", "-m", "sh", "-c", f"mount --bind {etc} /etc/postgresql && {GENERATOR} {out}"],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        return sorted(p.name for p in (out / "postgresql.service.wants").iterdir())

    assert wanted(True) == []
    assert len(wanted(False)) == 2


def test_patroni_waits_for_the_data_disk_the_play_mounts(reference_tree):
    """The data disk is mounted with nofail, which orders the mount before no target (systemd.mount(5)): Patroni,
    whose Debian unit names no mount, could start on an empty directory of the root disk and clone the cluster there.
    Its drop-in requires the mount the play's data_disk role makes."""
    _plan, root, _env = reference_tree
    (play,) = yaml.safe_load((root / "postgresql.yml").read_text())
    mount = next(r["vars"]["data_disk_mount"] for r in play["roles"] if isinstance(r, dict) and r.get("role") == "data_disk")
    dropin = next(t["ansible.builtin.copy"]["content"] for t in yaml.safe_load((root / "roles/patroni/tasks/main.yml").read_text())
                  if t.get("ansible.builtin.copy", {}).get("dest") == "/etc/systemd/system/patroni@.service.d/restart.conf")
    unit = dropin.split("[Service]")[0]
    assert f"RequiresMountsFor={mount}\n" in unit and unit.startswith("[Unit]\n")
    fstab = next(t for t in yaml.safe_load((root / "roles/data_disk/tasks/main.yml").read_text())
                 if "ansible.builtin.lineinfile" in t and t["ansible.builtin.lineinfile"].get("path") == "/etc/fstab")
    assert "nofail" in fstab["ansible.builtin.lineinfile"]["line"]


def test_gcp_hosts_and_their_bastion_hop_log_in_as_the_os_login_user(tmp_path):
    """OS Login has no key-pair user: the README's ~/.ssh/config names the operator's OS Login user for the GCP
    regions' hosts, bastion included (the ProxyJump hop takes neither `-u` nor ansible_user), checked with ssh's own
    reading of that config (`ssh -G`), and says which role gives sudo and how the key gets into the profile."""
    from compiler.pipeline import compile_file
    tool = require_tool("ssh")
    plan = compile_file(str(REPO / "platform.yaml")).plan
    readme = (REPO / "generated/ansible/README.md").read_text()
    blocks = re.findall(r"```\n((?:  (?:Host|  ).+\n)+)  ```", readme)
    assert len(blocks) == 2, blocks
    config = "".join(b.replace("<your login key>", "k").replace("<your OS Login user>", "alice_example_com")
                     for b in blocks).replace("\n  ", "\n").lstrip()
    (tmp_path / "config").write_text(config)

    def user_of(host: str) -> str:
        out = subprocess.run([tool, "-G", "-F", str(tmp_path / "config"), host], capture_output=True, text=True,
                             check=True).stdout
        return next(line.split()[1] for line in out.splitlines() if line.startswith("user "))

    gcp = [r for r in plan.regions if r.cloud == "gcp" and r.hosts]
    assert gcp
    for r in gcp:
        bastion = r.hosts_in("bastion")[0].fqdn
        assert user_of(bastion) == "alice_example_com", r.name
        assert user_of(r.hosts_in("postgres_primary")[0].fqdn) == "alice_example_com", r.name
        jump = yaml.safe_load((REPO / f"generated/ansible/inventories/{r.name}/group_vars/data_tier.yml").read_text())
        assert jump["ansible_ssh_common_args"] == f"-o ProxyJump={bastion}"  # no user: ssh config's applies
    other = next(r for r in plan.regions if r.cloud == "aws")
    assert user_of(other.hosts_in("bastion")[0].fqdn) != "alice_example_com"
    assert "`roles/compute.osAdminLogin` on the project" in readme
    assert "`gcloud compute os-login ssh-keys add --key-file=$HOME/.ssh/<your login key>.pub`" in readme
