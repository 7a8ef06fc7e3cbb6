"""A new postgresql.conf reaches the running PostgreSQL through the postgresql role's handlers.

The role's copy of the data tier's postgresql.conf notifies "Restart PostgreSQL". Patroni owns PostgreSQL and does not
watch its custom_conf; it flags a member "pending restart" only when a reload finds a setting PostgreSQL cannot take
without one (postgresql/config.py: the pending_restart query after its reload), and `patronictl restart --pending`
restarts only flagged members. The handler used to run that restart alone: Patroni had flagged nothing, so nothing
was restarted, nor reloaded, and a changed file was never applied, not even its reload-only settings.

For real, inside `unshare -n` as postgres (tests/targets/patroni_conf_change_harness.py): one etcd member and one
Patroni member from the generated group_vars; the file gains a reload-only setting and a restart-only one; the
handlers "Restart PostgreSQL" runs are run in the order the role writes them, with their commands as written. Both
settings must be in effect after, and nothing left pending.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from tests.targets.test_datastores_support import (AS_POSTGRES, ISOLATE, postgres_hosts, private_dir,
                                                   require_patroni_cluster)

REGION = "us-east-1"
# What the postgresql role's handler commands name, as the harness has them (its member's configuration, scope, name)
MEMBER_NAMES = {"{{ postgresql_patroni_config }}": "config", "{{ patroni_scope }}": "scope",
                "{{ inventory_hostname }}": "member"}
# ... and what the patroni role's standby cluster handlers name (a loop item, then a registered result's item)
STANDBY_NAMES = {"/etc/patroni/{{ patroni_standby.instance }}.yml": "config",
                 "/etc/patroni/{{ patroni_pending.patroni_standby.instance }}.yml": "config",
                 "{{ patroni_standby.config.scope }}": "scope",
                 "{{ patroni_pending.patroni_standby.config.scope }}": "scope", "{{ inventory_hostname }}": "member"}
HARNESS = Path(__file__).with_name("patroni_conf_change_harness.py")


@pytest.fixture(scope="module")
def generated(reference):
    gen = private_dir("pconf-gen-")
    outputs, _ = emit(reference, ["ansible", "datastores"], with_docs=False)
    writer.apply(writer.plan_write(gen, outputs["generated"], None))
    yield gen
    shutil.rmtree(gen, ignore_errors=True)


def _restart_handlers(gen: Path, role_name: str) -> list[dict]:
    """The handlers the role's copy of a postgresql.conf notifies (by name or listen), in the file's order: each
    command, and a service reload of a Patroni unit (its ExecReload's SIGHUP)."""
    role = gen / "ansible/roles" / role_name
    copy = next(t for t in yaml.safe_load((role / "tasks/main.yml").read_text())
                if str(t.get("ansible.builtin.copy", {}).get("dest", "")).endswith("/postgresql.conf"))
    topics = [copy["notify"]] if isinstance(copy["notify"], str) else copy["notify"]
    out = []
    for h in yaml.safe_load((role / "handlers/main.yml").read_text()):
        listen = h.get("listen") or []
        listen = [listen] if isinstance(listen, str) else listen
        if not (h["name"] in topics or set(listen) & set(topics)):
            continue
        service = h.get("ansible.builtin.service")
        if service:
            assert service["name"].startswith("patroni@") and service["state"] == "reloaded", h
            out.append({"name": h["name"], "sighup": True})
        elif "ansible.builtin.command" in h:
            until, when = h.get("until", ""), str(h.get("when", ""))
            assert not until or "Pending restart" in until, until  # the harness retries on exactly this condition
            out.append({"name": h["name"], "argv": h["ansible.builtin.command"]["argv"],
                        "until_pending": bool(until), "when_pending": "Pending restart" in when,
                        "retries": h.get("retries", 0), "delay": h.get("delay", 5)})
    return out


def _run_harness(harness: Path, generated: Path, steps: list[dict], names: dict, what: str) -> dict:
    """One of the one-member harnesses, inside `unshare -n` as postgres, on the region's first PostgreSQL host: the
    role's steps (with the templates `names` maps) in, its JSON line out."""
    python = require_patroni_cluster()
    host = postgres_hosts(generated, REGION)[0]
    work = private_dir("pconf-")
    try:
        res = subprocess.run(ISOLATE + AS_POSTGRES + [python, str(harness), str(generated), REGION, host, str(work),
                                                      json.dumps(steps), json.dumps(names)],
                             capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert res.returncode == 0, f"the harness failed:\n{res.stderr[-6000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print(f"\n{what}:", json.dumps(out, indent=1), file=sys.stderr)
    return out


def _change(generated: Path, role: str, names: dict) -> dict:
    handlers = _restart_handlers(generated, role)
    assert handlers, "the copy of postgresql.conf notifies no handler"
    out = _run_harness(HARNESS, generated, handlers, names, "configuration change")
    assert all(h["rc"] == 0 for h in out["handlers"]), out["handlers"]
    assert out["before"]["work_mem"]["setting"] != "7168" and out["before"]["max_files_per_process"]["setting"] != "1500"
    return out


def _applied(out: dict) -> None:
    assert out["after"]["work_mem"]["setting"] == "7168"  # kB
    assert out["after"]["max_files_per_process"]["setting"] == "1500"
    assert not any(v["pending_restart"] for v in out["after"].values()), out["after"]


def test_a_changed_postgresql_conf_is_applied_through_patroni(generated):
    _applied(_change(generated, "postgresql", MEMBER_NAMES))


def test_a_standby_clusters_changed_postgresql_conf_is_applied_too(generated):
    """The patroni role's copy of a DR standby cluster's postgresql.conf (the source region's file) runs its own
    handlers: the reload of that cluster's Patroni, then the restart of a member it flags. They run here against a
    one-member cluster of their own: Patroni reloads, flags and restarts a standby cluster's member as it does any
    member (the cluster here is a primary, not a standby: the handler's guard that leaves a promoted cluster alone is
    held by test_ansible_units, which evaluates its condition). Reloaded only, max_files_per_process never took
    effect."""
    out = _change(generated, "patroni", STANDBY_NAMES)
    _applied(out)
    assert [h["name"] for h in out["handlers"]][-1] == "Restart the standby clusters"


DCS_HARNESS = Path(__file__).with_name("patroni_dcs_change_harness.py")


def test_a_changed_cluster_wide_setting_reaches_a_running_cluster(generated):
    """max_connections and the other settings Patroni keeps cluster-wide come from bootstrap.dcs, which Patroni
    stores once, when it creates the cluster, and it ignores a local value of them: a change in the spec never
    reached a cluster that existed. The postgresql role's leader steps apply the spec's bootstrap.dcs with
    `patronictl edit-config --apply -`, wait for the members to flag the restart, and restart them. For real
    (tests/targets/patroni_dcs_change_harness.py): a one-member cluster bootstrapped from the group_vars, the spec's
    max_connections raised by 20, the steps run as written; the server then runs with the new value, and a second
    run of the first step changes nothing."""
    tasks = []
    for t in yaml.safe_load((generated / "ansible/roles/postgresql/tasks/leader.yml").read_text()):
        argv = (t.get("ansible.builtin.command") or {}).get("argv") or []
        if argv[:1] != ["patronictl"] or not ({"edit-config", "list", "restart"} & set(argv)):
            continue
        when = " ".join(t.get("when", []) if isinstance(t.get("when"), list) else [str(t.get("when", ""))])
        tasks.append({"name": t["name"], "argv": argv, "stdin": "stdin" in t["ansible.builtin.command"],
                      "until_all_flagged": bool(t.get("until")), "retries": t.get("retries", 0),
                      "delay": t.get("delay", 5), "when_changed": "is changed" in when})
    assert [t["argv"][3] for t in tasks] == ["edit-config", "list", "restart"], tasks
    out = _run_harness(DCS_HARNESS, generated, tasks, MEMBER_NAMES, "cluster-wide change")
    assert all(t["rc"] == 0 for t in out["tasks"]), out["tasks"]
    assert "Configuration changed" in out["tasks"][0]["output"]
    assert out["after"] == out["before"] + 20, out
    assert out["again"]["rc"] == 0 and "Not changed" in out["again"]["output"], out["again"]
