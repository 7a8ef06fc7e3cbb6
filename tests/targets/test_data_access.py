"""Each service's PostgreSQL role and Redis ACL user, tried on real servers with the files exactly as the
Ansible roles render them.

PostgreSQL 15 + PgBouncer: the data tier's setup.psql (roles, grants, get_auth), the postgresql role's
password SQL and the pgbouncer role's userlist.txt, both rendered with Ansible's templar from the
generated role. Redis: the redis role's acl.conf rendered the same way, loaded by the data tier's
redis.conf. Every server runs inside `unshare -n` with only a loopback (test_datastores_support).
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from compiler.ir.data_access import db_roles, redis_users, service_ref
from tests.conftest import require_module, require_tool
from tests.targets.test_datastores_support import (AS_POSTGRES, PGBIN, PgCluster, RedisError, Resp, Server,
                                                   chown_tree, make_ip_tls, pgbouncer_command, preload_overrides,
                                                   private_dir, require_isolation, start_redis,
                                                   strip_unavailable_extensions)

REGION = "us-east-1"
HOSTILE = "p\"a'ss:w;o#r%d{x}$1"  # quote, comment and escape characters of every format on the way


def password(name: str) -> str:
    return f"{name}-{HOSTILE}"


@pytest.fixture(scope="module")
def generated(reference, tmp_path_factory):
    require_module("ansible")
    outputs, owners = emit(reference, ["ansible", "datastores"], with_docs=False)
    root = tmp_path_factory.mktemp("data-access") / "generated"
    writer.apply(writer.plan_write(root, outputs["generated"], owners))
    return reference.region(REGION), root


def _render(text: str, variables: dict, file: bool) -> str:
    from tests.targets.test_ansible_units import ansible_template
    return ansible_template(text, {"ansible_managed": "Ansible managed", **variables}, file=file)


# ---------------------------------------------------------------- the IR and the files, without servers

def test_every_service_that_uses_a_datastore_has_its_own_role_user_and_references(reference):
    for region in reference.regions:
        by_name = {a.service: a for a in region.data_access}
        for svc in region.services:
            a = by_name.get(svc.name)
            assert ("postgres" in svc.uses) == bool(a and a.db_role), svc.name
            assert ("redis" in svc.uses) == bool(a and a.redis_user), svc.name
            if a and a.db_role:
                assert a.db_role.databases == tuple(s.database for s in region.shards)
                assert a.settings["PGUSER"] == a.db_role.name
                assert a.settings["PG_SHARD_DATABASES"].split(",") == list(a.db_role.databases)
            if a and a.redis_user:
                assert a.redis_user.key_pattern == f"~{svc.name}:*"
        refs = [ref for a in region.data_access for _, ref in a.secrets]
        assert len(refs) == len(set(refs)), "each service's password has its own reference"
        ds = region.settings.datastores
        assert not set(refs) & {ds.pgbouncer.auth_password, ds.redis.password, ds.postgres.admin_password}


@pytest.mark.parametrize("ref, want", [
    ("vault:secret/data/platform/redis#app_password", "vault:secret/data/platform/redis#my_svc_password"),
    ("aws-sm:acme/pgbouncer/auth", "aws-sm:acme/pgbouncer/auth/my-svc"),
    ("gcp-sm:acme-pgbouncer-auth", "gcp-sm:acme-pgbouncer-auth-my-svc"),
    ("azure-kv:acme-kv/pgbouncer-auth", "azure-kv:acme-kv/pgbouncer-auth-my-svc"),
    ("env:REDIS_PASSWORD", "env:REDIS_PASSWORD_MY_SVC"),
])
def test_the_reference_convention(ref, want):
    from compiler.model.base import SECRET_REF_PATTERN
    import re
    assert service_ref(ref, "my-svc") == want
    assert re.fullmatch(SECRET_REF_PATTERN, want)


def test_userlist_has_no_hash_comment(generated):
    """PgBouncer reads `;` comments only: a `#` line makes the whole auth_file broken."""
    _, root = generated
    text = _render((root / "ansible/roles/pgbouncer/templates/userlist.txt.j2").read_text(),
                   {"pgbouncer_auth_user": "pgbouncer", "pgbouncer_auth_password": "x"}, file=True)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and all(line.startswith((";", '"')) for line in lines), text


# ---------------------------------------------------------------- PostgreSQL 15 + PgBouncer

def _remap_hba(text: str, mapping: dict[str, str]) -> str:
    out = []
    for line in text.splitlines(keepends=True):
        fields = line.split()
        if fields and fields[0].startswith("host") and len(fields) >= 5 and fields[3] in mapping:
            line = line.replace(fields[3], mapping[fields[3]], 1)
        out.append(line)
    return "".join(out)


@pytest.fixture(scope="module")
def pg_and_pgbouncer(generated, pg_template):
    """PostgreSQL (the generated postgresql.conf and pg_hba.conf, PgBouncer's subnets remapped to 127.0.0.1)
    and PgBouncer (the generated pgbouncer.ini, the shard databases pointed at 127.0.0.1, the auth_file the
    role renders) in one network namespace; setup.psql and the role's password SQL run as Ansible runs them."""
    region, root = generated
    gen = root / "datastores" / REGION
    roles = root / "ansible/roles"
    group_vars = root / f"ansible/inventories/{REGION}/group_vars"
    work = private_dir("dac-pg-")
    tls = make_ip_tls(work)
    server_conn = next(c for c in region.through("pg_hba") if c.source.host_group == "pgbouncer")
    hba = _remap_hba((gen / "pg_hba.conf").read_text(), {c: "127.0.0.1/32" for c in server_conn.source.cidrs})
    (work / "pg_hba.conf").write_text(hba)
    overrides, _ = preload_overrides(gen / "postgresql.conf")
    (work / "pg").mkdir()
    cluster = PgCluster(gen / "postgresql.conf", work / "pg_hba.conf", work / "pg", tls,
                        {**overrides, "listen_addresses": "127.0.0.1"})
    # the auth_file, rendered by Ansible's templar from the role's template
    pgb_vars = yaml.safe_load((group_vars / "pgbouncer.yml").read_text())
    auth_user = pgb_vars["pgbouncer_auth_user"]
    userlist = _render((roles / "pgbouncer/templates/userlist.txt.j2").read_text(),
                       {"pgbouncer_auth_user": auth_user, "pgbouncer_auth_password": password(auth_user)}, file=True)
    (work / "pgb").mkdir()
    pgb_cmd, pgb_port = pgbouncer_command(
        gen / "pgbouncer.ini", work / "pgb", tls, userlist.splitlines(),
        extra_databases={s.database: f"host=127.0.0.1 port={cluster.port} dbname={s.database}" for s in region.shards})
    chown_tree(work)
    script = (f"trap 'kill -INT $a $b 2>/dev/null; wait' INT TERM\n{shlex.join(map(str, cluster.command()))} &\na=$!\n"
              f"{shlex.join(map(str, pgb_cmd))} &\nb=$!\nwait\n")
    log = work / "pgb/pgbouncer.log"
    both = Server(["sh", "-c", script], work / "servers.stdout", log, stop_signal=signal.SIGINT)
    try:
        both.wait_until(lambda: cluster.isready() and log.exists() and "process up" in log.read_text(), timeout=60)
        # setup.psql as the role stages it: <dir>/<region>/{setup.psql,extensions.sql,pgbouncer-auth.sql}, <dir>/shards.sql
        setup = work / "setup"
        (setup / REGION).mkdir(parents=True)
        for name in ("setup.psql", "extensions.sql", "pgbouncer-auth.sql"):
            shutil.copy(gen / name, setup / REGION / name)
        shutil.copy(root / "datastores/shards.sql", setup / "shards.sql")
        strip_unavailable_extensions(setup / REGION)
        chown_tree(work)
        runs = [cluster.psql("-f", str(setup / REGION / "setup.psql"), cwd=setup / REGION) for _ in range(2)]
        # the postgresql role's password SQL: its vars/main.yml value, templated with the inventory's names
        role_vars = yaml.safe_load((roles / "postgresql/vars/main.yml").read_text())
        pg_vars = yaml.safe_load((group_vars / "postgres.yml").read_text())
        service_roles = [{"name": r["name"], "password": password(r["name"])} for r in pg_vars["postgresql_service_roles"]]
        sql = _render(role_vars["postgresql_roles_sql"], {
            "postgresql_admin_password": password("postgres"), "postgresql_replication_user": "replicator",
            "postgresql_replication_password": password("replicator"), "postgresql_pgbouncer_auth_user": auth_user,
            "postgresql_pgbouncer_auth_password": password(auth_user), "postgresql_service_roles": service_roles},
            file=False)
        res = subprocess.run(AS_POSTGRES + [str(PGBIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                                            str(cluster.work), "-p", str(cluster.port), "-U", "postgres", "-d", "postgres"],
                             input=sql, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
        yield {"region": region, "cluster": cluster, "pgb": work / "pgb", "port": pgb_port, "auth_user": auth_user,
               "runs": runs, "roles": [r["name"] for r in service_roles], "servers": both, "work": work}
    finally:
        both.stop()
        shutil.rmtree(work, ignore_errors=True)


def _via_pgbouncer(env: dict, user: str, secret: str, database: str, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(AS_POSTGRES + [str(PGBIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(env["pgb"]),
                                         "-p", str(env["port"]), "-U", user, "-d", database, "-c", sql],
                          capture_output=True, text=True, env={**os.environ, "PGPASSWORD": secret})


@pytest.mark.tool
def test_setup_with_roles_runs_twice(pg_and_pgbouncer):
    runs = pg_and_pgbouncer["runs"]
    assert all(r.returncode == 0 for r in runs)
    assert "ERROR" not in runs[1].stdout + runs[1].stderr


@pytest.mark.tool
def test_each_service_role_logs_in_through_pgbouncer_to_its_shards(pg_and_pgbouncer):
    env = pg_and_pgbouncer
    region = env["region"]
    roles = db_roles(region.data_access)
    assert roles and sorted(r.name for r in roles) == sorted(env["roles"])
    for role in roles:
        for db in role.databases:
            ok = _via_pgbouncer(env, role.name, password(role.name), db,
                                "SELECT current_user, shard_id FROM franchise_shard_map WHERE franchise_id = '42'")
            assert ok.returncode == 0, ok.stdout + ok.stderr + env["servers"].output()[-2000:]
            assert ok.stdout.strip() == f"{role.name}|1"
        assert _via_pgbouncer(env, role.name, "wrong", role.databases[0], "SELECT 1").returncode != 0


@pytest.mark.tool
def test_a_service_writes_its_own_schema_and_nothing_else(pg_and_pgbouncer):
    env = pg_and_pgbouncer
    roles = db_roles(env["region"].data_access)
    a, b = roles[0], roles[1]
    db = a.databases[0]
    for role in (a, b):
        made = _via_pgbouncer(env, role.name, password(role.name), db,
                              "CREATE TABLE IF NOT EXISTS notes (id int); INSERT INTO notes VALUES (1); "
                              "SELECT current_schema(), count(*) > 0 FROM notes")
        assert made.returncode == 0 and made.stdout.strip() == f"{role.schema}|t", made.stdout + made.stderr
    denied = {
        "write the routing table": "INSERT INTO franchise_shard_map (franchise_id, shard_id, shard_host) VALUES ('x', 1, 'h')",
        "change the routing table": "UPDATE franchise_shard_map SET shard_id = 2",
        "empty the routing table": "DELETE FROM franchise_shard_map",
        "read another's table": f'SELECT * FROM "{b.schema}".notes',
        "write another's table": f'INSERT INTO "{b.schema}".notes VALUES (2)',
        "create in another's schema": f'CREATE TABLE "{b.schema}".intruder (id int)',
        "create in public": "CREATE TABLE public.intruder (id int)",
        "read the secrets": "SELECT * FROM pgbouncer.get_auth('postgres')",
    }
    for what, sql in denied.items():
        res = _via_pgbouncer(env, a.name, password(a.name), db, sql)
        assert res.returncode != 0 and "permission denied" in res.stderr, (what, res.stdout, res.stderr)


@pytest.mark.tool
def test_auth_query_hands_out_only_the_services_secrets(pg_and_pgbouncer):
    env = pg_and_pgbouncer
    cluster, auth_user = env["cluster"], env["auth_user"]
    db = env["region"].shards[0].database
    some_service = env["roles"][0]
    cluster.psql("-c", "DO $$ BEGIN CREATE ROLE bystander LOGIN PASSWORD 'bystander-secret'; "
                       "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
    got = {}
    for name in (auth_user, "postgres", "replicator", "bystander", "postgres_exporter", some_service):
        rows = cluster.query(f"SET ROLE {auth_user}; SELECT usename, left(passwd, 14) FROM pgbouncer.get_auth('{name}')", db=db)
        got[name] = rows
    assert got[some_service] == [[some_service, "SCRAM-SHA-256$"]]
    assert all(rows == [] for name, rows in got.items() if name != some_service), got
    # hence none of them logs in through PgBouncer, even with the right password (the auth user itself
    # only in PgBouncer's own auth_file, never through auth_query)
    for user, secret in (("postgres", password("postgres")), ("replicator", password("replicator")),
                         ("bystander", "bystander-secret")):
        res = _via_pgbouncer(env, user, secret, db, "SELECT 1")
        assert res.returncode != 0, (user, res.stdout)


@pytest.mark.tool
def test_pg_hba_lets_in_only_pgbouncers_roles(pg_and_pgbouncer):
    """From PgBouncer's address, a role that is neither the auth user nor a service's is refused by pg_hba; a
    service's role (or the auth user) with the right password but no certificate of the region's CA is refused too
    (clientcert=verify-ca: the subnet is shared with other machines); with the certificate it gets in."""
    env = pg_and_pgbouncer
    cluster = env["cluster"]
    db = env["region"].shards[0].database
    cluster.psql("-c", "DO $$ BEGIN CREATE ROLE bystander LOGIN PASSWORD 'bystander-secret'; "
                       "EXCEPTION WHEN duplicate_object THEN NULL; END $$",
                 "-c", f'GRANT CONNECT ON DATABASE "{db}" TO bystander')
    script = (f"HOME=/nonexistent PGPASSWORD=bystander-secret {PGBIN / 'psql'} -X -At 'host=127.0.0.1 port={cluster.port} "
              f"dbname={db} user=bystander sslmode=require' -c 'SELECT 1'")
    role = env["roles"][0]
    tls = {"crt": env["work"] / "ip-server.crt", "key": env["work"] / "ip-server.key"}

    def as_role(user, secret, cert: bool):
        extra = f" sslcert={tls['crt']} sslkey={tls['key']}" if cert else ""
        return (f"HOME=/nonexistent PGPASSWORD={shlex.quote(secret)} {PGBIN / 'psql'} -X -At 'host=127.0.0.1 "
                f"port={cluster.port} dbname={db} user={user} sslmode=require{extra}' -c 'SELECT 1'")
    pid = env["servers"].proc.pid
    enter = [require_tool("nsenter"), "-t", str(pid), "-n", "--"]
    refused = subprocess.run(enter + AS_POSTGRES + ["sh", "-c", script], capture_output=True, text=True)
    assert refused.returncode != 0 and "pg_hba.conf rejects connection" in refused.stderr, refused.stderr
    for user in (role, env["auth_user"]):
        no_cert = subprocess.run(enter + AS_POSTGRES + ["sh", "-c", as_role(user, password(user), False)],
                                 capture_output=True, text=True)
        assert no_cert.returncode != 0 and "certificate" in no_cert.stderr, (user, no_cert.stderr)
    allowed = subprocess.run(enter + AS_POSTGRES + ["sh", "-c", as_role(role, password(role), True)],
                             capture_output=True, text=True)
    assert allowed.returncode == 0 and allowed.stdout.strip() == "1", allowed.stderr


# ---------------------------------------------------------------- Redis

def _text(reply) -> str:
    return (reply.decode() if isinstance(reply, bytes) else str(reply)).lower()


@pytest.mark.tool
def test_each_service_redis_user_has_its_prefix_and_the_client_commands(generated):
    region, root = generated
    require_isolation()
    data = root / "datastores" / REGION
    topology = json.loads((data / "redis-topology.json").read_text())
    refs = {u["password_ref"] for u in topology["acl_include"]["users"]}
    secrets = {hashlib.sha1(ref.encode()).hexdigest()[:12]: password(hashlib.sha1(ref.encode()).hexdigest()[:8]) for ref in refs}
    variables = {"redis_topology": topology, "redis_secrets": secrets, "redis_admin_password": "0f" * 32}
    work = private_dir("dac-redis-")
    includes = []
    for name in ("redis-acl.conf.j2", "redis-admin.conf.j2"):
        path = work / name.removesuffix(".j2")
        path.write_text(_render((root / "ansible/roles/redis/templates" / name).read_text(), variables, file=True))
        includes += ["--include", str(path)]
    server, sock = start_redis(data / "redis.conf", work, *includes)
    users = redis_users(region.data_access)
    assert len(users) >= 2
    try:
        admin = Resp(sock)
        assert admin.call("AUTH", "platformc-admin", "0f" * 32) == "OK"
        assert set(admin.call("ACL", "USERS")) >= {u.name.encode() for u in users}
        assert b"app" not in admin.call("ACL", "USERS"), "no shared application user"
        for user in users:
            other = next(u for u in users if u is not user)
            c = Resp(sock)
            secret = secrets[hashlib.sha1(user.password_ref.encode()).hexdigest()[:12]]
            # what client libraries send on connect and for health checks / cluster discovery
            hello = c.call("HELLO", "2", "AUTH", user.name, secret, "SETNAME", f"{user.service}-pod")
            assert isinstance(hello, list), hello
            for cmd in (("PING",), ("ECHO", "x"), ("CLIENT", "SETNAME", "probe"), ("CLIENT", "GETNAME"), ("CLIENT", "ID"),
                        ("CLUSTER", "SLOTS"), ("CLUSTER", "SHARDS"), ("CLUSTER", "NODES"), ("CLUSTER", "INFO"),
                        ("CLUSTER", "MYID"), ("INFO", "server"), ("COMMAND", "COUNT"), ("READONLY",), ("READWRITE",),
                        ("TIME",)):
                reply = c.call(*cmd)
                # a node outside a formed cluster may answer CLUSTER SHARDS etc. with data; never with NOPERM
                assert not (isinstance(reply, RedisError) and "NOPERM" in reply), (user.name, cmd, reply)
            if tuple(int(x) for x in region.settings.datastores.redis.version.split(".")) >= (7, 2):
                assert c.call("CLIENT", "SETINFO", "LIB-NAME", "probe") == "OK"
            # its own prefix: read and write (a node without slots answers CLUSTERDOWN, not NOPERM)
            own = c.call("SET", f"{user.service}:k", "v")
            assert not (isinstance(own, RedisError) and "NOPERM" in own), own
            for cmd in (("SET", f"{other.service}:k", "v"), ("GET", f"{other.service}:k"), ("SET", "unprefixed", "v"),
                        ("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "maxmemory"), ("ACL", "LIST"),
                        ("CLUSTER", "ADDSLOTS", "1"), ("SUBSCRIBE", f"{other.service}:events")):
                reply = c.call(*cmd)
                assert isinstance(reply, RedisError) and "NOPERM" in reply, (user.name, cmd, reply)
            # a script that reads the server's clock (rate limiters, locks): TIME is in no ACL category
            tick = c.call("EVAL", "return redis.call('TIME')", "1", f"{user.service}:clock")
            assert not (isinstance(tick, RedisError) and ("NOPERM" in tick or "can't run" in tick)), tick
            # the same checks by ACL DRYRUN (independent of the node having slots)
            assert admin.call("ACL", "DRYRUN", user.name, "SET", f"{user.service}:k", "v") == "OK"
            assert admin.call("ACL", "DRYRUN", user.name, "GET", f"{user.service}:k") == "OK"
            assert "no permissions" in _text(admin.call("ACL", "DRYRUN", user.name, "GET", f"{other.service}:k"))
            c.close()
        repl = topology["acl_include"]["masteruser"]
        assert admin.call("ACL", "DRYRUN", repl, "REPLCONF", "listening-port", "6379") == "OK"
        assert admin.call("ACL", "DRYRUN", repl, "PSYNC", "?", "-1") == "OK"
        assert "no permissions" in _text(admin.call("ACL", "DRYRUN", repl, "GET", "any"))
        admin.close()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


# the session fixtures of the data-tier helpers (pg_template for PgCluster's initdb)
from tests.targets.test_datastores_support import isolation, pg_template  # noqa: E402,F401
