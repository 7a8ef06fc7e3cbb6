"""The SQL only the Patroni leader can run converges on every run, wherever the leader is.

The review's defects: setup.psql and the role passwords were applied by handlers only, gated at handler time on
`GET /primary` of that member: on a fresh cluster Patroni had no leader yet when the handlers ran, the SQL was
skipped, and since handlers fire only when a staged file changes, no later run applied it; the monitoring role's
SQL ran on a fixed host (groups['postgres_primary'][0]), a read-only replica after any failover; and the patronictl
handlers failed for a member Patroni had not registered yet. Asserted here: on the generated roles (tasks, not
handlers; leadership asked at task time; a fingerprint recorded in the cluster), with the roles' own expressions
evaluated by Ansible's templar, and against real servers (etcd, two Patroni 3.0 members, PostgreSQL 15 on loopback,
tests/targets/patroni_leader_harness.py): the leader the roles pick from `GET /cluster` as the cluster forms and after
a switchover, and the fingerprint record surviving the switchover.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from tests.targets.test_ansible_units import _roles, ansible_template
from tests.targets.test_datastores_support import AS_POSTGRES, ISOLATE, private_dir, require_patroni_cluster

HARNESS = Path(__file__).with_name("patroni_leader_harness.py")
REGION = "us-west-2"
SQL_MODULE = "ansible.builtin.command"


@pytest.fixture(scope="module")
def files(reference):
    out, _ = emit(reference, ["ansible", "datastores"], with_docs=False)
    return {rel: text for rel, (_, text) in out["generated"].items()}


def _psql_tasks(tasks):
    return [t for t in tasks if SQL_MODULE in t and t[SQL_MODULE]["argv"][0] == "psql"]


def _leader_tasks(files):
    return yaml.safe_load(files["ansible/roles/postgresql/tasks/leader.yml"])


def _by_name(tasks, name):
    return next(t for t in tasks if t["name"] == name)


def _when(t) -> list:
    w = t.get("when") or []
    return w if isinstance(w, list) else [w]


# ---------------------------------------------------------------- the generated roles

def test_the_data_tiers_sql_is_applied_by_tasks_on_the_leader_not_by_handlers(files):
    roles = _roles(files)
    assert not _psql_tasks(roles["postgresql"]["handlers"]), "a handler runs SQL: it fires only when a file changed"
    # after the patroni role and the handlers of the play's roles: Patroni runs when the leader is asked for
    (play,) = yaml.safe_load(files["ansible/postgresql.yml"])
    assert play["roles"][-1] == "patroni"
    assert play["post_tasks"] == [{"name": "Apply the data tier's SQL on the Patroni leader",
                                   "ansible.builtin.import_role": {"name": "postgresql", "tasks_from": "leader"}}]
    tasks = _leader_tasks(files)
    wait = tasks[0]
    (ask,) = wait["block"]
    assert ask["ansible.builtin.uri"]["url"].endswith("/cluster") and ask["register"] == "postgresql_cluster"
    assert ask["until"] == "postgresql_leader | length > 0" and 0 < ask["retries"] * ask["delay"] <= 600
    assert ask["ansible.builtin.uri"]["ca_path"] == "/etc/postgresql/tls/ca.crt"
    assert "ansible.builtin.fail" in wait["rescue"][0]  # a clear message, not "retries exhausted"
    role_vars = roles["postgresql"]["vars"]
    assert "postgresql_cluster.json.members" in role_vars["postgresql_leader"]
    setup = _by_name(tasks, "Create the shard databases, extensions and roles")
    passwords = _by_name(tasks, "Set the PostgreSQL role passwords and record what was applied")
    assert setup[SQL_MODULE]["argv"][-1].endswith("/setup.psql")
    for t in (setup, passwords):
        assert "postgresql_leader == inventory_hostname" in _when(t)
        assert "postgresql_applied.stdout | default('') != postgresql_setup_fingerprint" in _when(t)
        assert "notify" not in t and "listen" not in t
    assert tasks.index(setup) < tasks.index(passwords)  # setup.psql creates the roles the passwords are set on
    # the passwords on stdin, never argv, nothing logged; the record in the same session, after them
    assert passwords["no_log"] is True and passwords[SQL_MODULE]["stdin"] == \
        "{{ postgresql_roles_sql }}{{ postgresql_record_sql }}"
    assert not any("password" in a for a in passwords[SQL_MODULE]["argv"])
    assert "'{{ postgresql_setup_fingerprint }}'" in role_vars["postgresql_record_sql"]
    read = _by_name(tasks, "Read the fingerprint of the data tier's SQL the cluster last applied")
    assert read["register"] == "postgresql_applied" and read["changed_when"] is False
    assert "postgresql_leader == inventory_hostname" in _when(read)


def test_patronictl_runs_only_where_patroni_runs_the_members_postgresql(files):
    handlers = _roles(files)["postgresql"]["handlers"]
    ask = handlers[0]
    assert ask["ansible.builtin.uri"]["url"].endswith("/cluster") and ask["register"] == "postgresql_member"
    assert set(ask["listen"]) == {"Restart PostgreSQL", "Reload PostgreSQL", "tls certificate changed"}
    ctl = [h for h in handlers if SQL_MODULE in h and h[SQL_MODULE]["argv"][0] == "patronictl"]
    assert {h["name"] for h in ctl} == {"Restart PostgreSQL", "Reload PostgreSQL",
                                        "Wait until Patroni flags the restart a new setting needs (none: the reload applied it)"}
    for h in ctl:
        assert "postgresql_runs_under_patroni" in _when(h), h["name"]


def test_the_monitoring_roles_sql_runs_on_the_current_leader(files):
    role = _roles(files)["postgres_exporter"]
    assert not _psql_tasks(role["handlers"])
    (sql,) = _psql_tasks(role["tasks"])[-1:]
    assert "delegate_to" not in sql and not any("postgres_primary" in c for c in _when(sql))
    assert "postgres_exporter_leader == inventory_hostname" in _when(sql)
    assert "postgres_exporter_applied.stdout | default('') != postgres_exporter_role_fingerprint" in _when(sql)
    assert sql["no_log"] is True and "postgres_exporter_record_sql" in sql[SQL_MODULE]["stdin"]
    waits = [t for t in role["tasks"] if "ansible.builtin.uri" in t]
    assert waits and waits[0]["ansible.builtin.uri"]["url"].endswith("/cluster")
    assert "postgres_exporter_cluster.json.members" in role["vars"]["postgres_exporter_leader"]
    for t in role["tasks"]:  # only the secret's file lives on a fixed host
        if "delegate_to" in t:
            assert SQL_MODULE not in t or t[SQL_MODULE]["argv"][0] == "openssl", t["name"]


ANSWER = {"members": [
    {"name": "pg-1", "role": "replica", "state": "running"},
    {"name": "pg-2", "role": "leader", "state": "running"},
]}


@pytest.mark.parametrize("answer, leader", [
    (ANSWER, "pg-2"),
    ({"members": [{"name": "pg-1", "role": "replica", "state": "running"}]}, ""),  # no leader elected yet
    ({"members": [{"name": "pg-1", "role": "leader", "state": "starting"}]}, ""),  # bootstrapping
    ({"members": []}, ""),
    (None, ""),  # skipped (check mode on a new host)
])
def test_the_leader_the_roles_pick_from_patronis_answer(files, answer, leader):
    roles = _roles(files)
    for role, var, reg in (("postgresql", "postgresql_leader", "postgresql_cluster"),
                           ("postgres_exporter", "postgres_exporter_leader", "postgres_exporter_cluster")):
        result = {"skipped": True} if answer is None else {"status": 200, "json": answer}
        assert ansible_template(roles[role]["vars"][var], {reg: result}) == leader


def test_the_fingerprint_follows_the_staged_files_and_the_passwords(files, tmp_path):
    """What the leader compares with its record: a changed SQL file or a rotated password is a new fingerprint."""
    roles = _roles(files)
    src = tmp_path / "datastores"
    for rel, text in files.items():
        if rel.startswith(f"datastores/{REGION}/") or rel == "datastores/shards.sql":
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).write_text(text)
    variables = {**roles["postgresql"]["defaults"], **roles["postgresql"]["vars"],
                 "postgresql_source_dir": str(src / REGION), "postgresql_platform_source_dir": str(src),
                 "postgresql_admin_password": "a", "postgresql_replication_password": "r",
                 "postgresql_pgbouncer_auth_password": "p", "postgresql_service_roles": [{"name": "svc_x", "password": "x"}]}

    def fingerprint(**changes):
        from ansible.template import trust_as_template  # role vars are templates Ansible trusts (a file it read)
        trusted = {k: trust_as_template(v) if isinstance(v, str) else v for k, v in {**variables, **changes}.items()}
        return ansible_template("{{ postgresql_setup_fingerprint }}", trusted)

    base = fingerprint()
    assert len(base) == 64 and base == fingerprint()
    assert fingerprint(postgresql_admin_password="b") != base
    assert fingerprint(postgresql_service_roles=[{"name": "svc_x", "password": "y"}]) != base
    for name in ("setup.psql", "extensions.sql", "pgbouncer-auth.sql", "../shards.sql"):
        path = src / REGION / name
        before = path.read_text()
        path.write_text(before + "\nSELECT 1;\n")
        assert fingerprint() != base, name
        path.write_text(before)
    assert fingerprint() == base


# ---------------------------------------------------------------- real servers

@pytest.fixture(scope="module")
def cluster_run(reference, files):
    python = require_patroni_cluster()
    roles = _roles(files)
    read = _by_name(_leader_tasks(files), "Read the fingerprint of the data tier's SQL the cluster last applied")
    record = roles["postgresql"]["vars"]["postgresql_record_sql"]
    fingerprints = ("1" * 64, "2" * 64)
    scripts = {"read": read[SQL_MODULE]["stdin"],
               "record_first": ansible_template(record, {"postgresql_setup_fingerprint": fingerprints[0]}),
               "record_second": ansible_template(record, {"postgresql_setup_fingerprint": fingerprints[1]})}
    gen = private_dir("pleader-gen-")
    work = private_dir("pleader-")
    try:
        outputs, _ = emit(reference, ["ansible", "datastores"], with_docs=False)
        writer.apply(writer.plan_write(gen, outputs["generated"], None))
        (gen / "scripts.json").write_text(json.dumps(scripts))
        res = subprocess.run(ISOLATE + AS_POSTGRES + [python, str(HARNESS), str(gen), REGION, str(work),
                                                      str(gen / "scripts.json")],
                             capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(gen, ignore_errors=True)
    assert res.returncode == 0, f"the harness failed:\n{res.stderr[-6000:]}"
    return json.loads(res.stdout.strip().splitlines()[-1]), fingerprints, roles


def _picks(roles, answer, host):
    """What the roles compute from a member's GET /cluster answer: the leader, and whether Patroni runs `host`'s
    PostgreSQL (the handlers' gate)."""
    v = roles["postgresql"]["vars"]
    leader = ansible_template(v["postgresql_leader"], {"postgresql_cluster": {"json": answer}})
    running = ansible_template(v["postgresql_runs_under_patroni"],
                               {"postgresql_member": {"json": answer}, "inventory_hostname": host})
    return leader, running


@pytest.mark.tool
def test_every_member_names_the_same_leader_as_the_cluster_forms_and_after_a_switchover(cluster_run):
    out, _, roles = cluster_run
    a, b = out["names"]
    first = out["answers"]["first"]
    leading = [m["name"] for m in first["members"] if m["role"] == "leader" and m["state"] == "running"]
    assert _picks(roles, first, a)[0] == (leading[0] if leading else "")  # before bootstrap: nobody, so the wait waits
    assert _picks(roles, out["answers"]["bootstrapped"], a) == (a, True)
    for host, answer in out["answers"]["formed"].items():
        assert _picks(roles, answer, host) == (a, True), host
    assert out["switchover"][0] == 0, out["switchover"]
    for host, answer in out["answers"]["switched"].items():
        assert _picks(roles, answer, host) == (b, True), host
    assert _picks(roles, out["answers"]["switched"][a], "not-registered")[1] is False


@pytest.mark.tool
def test_the_fingerprint_record_survives_a_leader_change(cluster_run):
    out, (one, two), _ = cluster_run
    assert out["read_before"] == [0, "", ""]  # nothing recorded yet: the leader applies
    assert out["record_on_leader"][0] == 0, out["record_on_leader"]
    assert out["read_on_leader"][:2] == [0, one]
    assert out["read_on_replica"][:2] == [0, one]  # replicated
    assert out["read_on_new_leader"][:2] == [0, one]  # the new leader knows what was applied: nothing to redo
    assert out["record_on_old_leader"][0] != 0 and "read-only" in out["record_on_old_leader"][2]
    assert out["record_on_new_leader"][0] == 0, out["record_on_new_leader"]
    assert out["read_on_old_leader_after"][:2] == [0, two]


@pytest.mark.tool
def test_patronictl_fails_for_a_member_patroni_has_not_registered(cluster_run):
    """Why the patronictl handlers wait for the member to be listed running: a member not in the DCS (before its first
    HA cycle) is an error (exit 1), while a running member with nothing pending is only reported."""
    out, _, _ = cluster_run
    rc, text = out["patronictl"]["unregistered"]
    assert rc == 1 and "No any among provided members" in text, text
    rc, text = out["patronictl"]["nothing_pending"]
    assert rc == 0 and "restart conditions are not satisfied" in text, text
