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
HARNESS = Path(__file__).with_name("patroni_conf_change_harness.py")


@pytest.fixture(scope="module")
def generated(reference):
    gen = private_dir("pconf-gen-")
    outputs, _ = emit(reference, ["ansible", "datastores"], with_docs=False)
    writer.apply(writer.plan_write(gen, outputs["generated"], None))
    yield gen
    shutil.rmtree(gen, ignore_errors=True)


def _restart_handlers(gen: Path) -> list[dict]:
    """The command handlers a "Restart PostgreSQL" notification runs (by name or listen), in the file's order."""
    role = gen / "ansible/roles/postgresql"
    copy = next(t for t in yaml.safe_load((role / "tasks/main.yml").read_text())
                if str(t.get("ansible.builtin.copy", {}).get("dest", "")).endswith("/postgresql.conf"))
    topics = [copy["notify"]] if isinstance(copy["notify"], str) else copy["notify"]
    out = []
    for h in yaml.safe_load((role / "handlers/main.yml").read_text()):
        listen = h.get("listen") or []
        listen = [listen] if isinstance(listen, str) else listen
        if (h["name"] in topics or set(listen) & set(topics)) and "ansible.builtin.command" in h:
            until = h.get("until", "")
            assert not until or "Pending restart" in until, until  # the harness retries on exactly this condition
            out.append({"name": h["name"], "argv": h["ansible.builtin.command"]["argv"],
                        "until_pending": bool(until), "retries": h.get("retries", 0), "delay": h.get("delay", 5)})
    return out


def test_a_changed_postgresql_conf_is_applied_through_patroni(generated):
    python = require_patroni_cluster()
    handlers = _restart_handlers(generated)
    assert handlers, "the copy of postgresql.conf notifies no handler"
    host = postgres_hosts(generated, REGION)[0]
    work = private_dir("pconf-")
    try:
        res = subprocess.run(ISOLATE + AS_POSTGRES + [python, str(HARNESS), str(generated), REGION, host, str(work),
                                                      json.dumps(handlers)], capture_output=True, text=True, timeout=600)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert res.returncode == 0, f"the harness failed:\n{res.stderr[-6000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print("\nconfiguration change:", json.dumps(out, indent=1), file=sys.stderr)
    assert all(h["rc"] == 0 for h in out["handlers"]), out["handlers"]
    assert out["before"]["work_mem"]["setting"] != "7168" and out["before"]["max_files_per_process"]["setting"] != "1500"
    assert out["after"]["work_mem"]["setting"] == "7168"  # kB
    assert out["after"]["max_files_per_process"]["setting"] == "1500"
    assert not any(v["pending_restart"] for v in out["after"].values()), out["after"]
