"""A DR standby cluster gets its source region's cluster-wide settings (max_connections, max_worker_processes,
max_wal_senders ... and failsafe_mode), which Patroni keeps in etcd from the day it created the cluster.

Only the region's own cluster had them applied (the postgresql role's leader steps, `patronictl edit-config`): a
standby cluster kept the values it was created with, and a hot standby below its primary's max_connections,
max_worker_processes, max_wal_senders, max_prepared_transactions or max_locks_per_transaction pauses its replay
(PostgreSQL, "Hot Standby", Administrator's Overview) once the source restarts with a higher one. The patroni role
now reads each standby cluster's stored configuration on every host of it and applies the source's values, each of
those five never below what the standby has (a source that lowers one, run before its partner, must not leave its
standby below what it still runs), then restarts each member Patroni flags, one host at a time.

Judged twice: the role's variables evaluated by Ansible's templar against `patronictl show-config` answers, and for
real, inside `unshare -n` as postgres (tests/targets/patroni_standby_dcs_harness.py): a source cluster and a standby
cluster of it from the generated group_vars, the source's max_connections raised by 20 in the spec; the role's
commands as written, the standby's stdin from the role's variables; the standby then runs with the new value, its
replay going on, and a second pass changes nothing.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from tests.conftest import require_module
from tests.targets.test_datastores_support import AS_POSTGRES, ISOLATE, private_dir, require_patroni_cluster

REGION = "us-east-1"  # the source; its DR partner runs the standby cluster
HARNESS = Path(__file__).with_name("patroni_standby_dcs_harness.py")
SHOW = "Read each standby cluster's dynamic configuration from etcd"
APPLY = "Raise each standby cluster's cluster-wide settings to its source region's (never below what it has)"


@pytest.fixture(scope="module")
def generated(reference):
    gen = private_dir("psbdcs-gen-")
    outputs, _ = emit(reference, ["ansible", "datastores"], with_docs=False)
    writer.apply(writer.plan_write(gen, outputs["generated"], None))
    yield gen
    shutil.rmtree(gen, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def _templar_ready() -> bool:
    require_module("ansible")
    from ansible.plugins.loader import init_plugin_loader
    init_plugin_loader()
    return True


def role_value(gen: Path, expression: str, stored, standby: dict):
    """`expression` templated as Ansible does for one item of the apply task's loop: the role's vars, and
    `patroni_stored` a registered show-config result (None: the read was skipped) of `standby`."""
    _templar_ready()
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template
    role_vars = yaml.safe_load((gen / "ansible/roles/patroni/vars/main.yml").read_text())
    result = {"skipped": True} if stored is None else {"rc": 0, "stdout": stored}
    variables = {k: trust_as_template(v) if isinstance(v, str) else v for k, v in role_vars.items()}
    variables["patroni_stored"] = {**result, "patroni_standby": standby}
    return Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression))


def apply_task(gen: Path) -> dict:
    tasks = yaml.safe_load((gen / "ansible/roles/patroni/tasks/main.yml").read_text())
    return next(t for t in tasks if t["name"] == APPLY)


def _standby(gen: Path) -> tuple[str, dict]:
    for inv in sorted((gen / "ansible/inventories").iterdir()):
        for sb in yaml.safe_load((inv / "group_vars/postgres.yml").read_text()).get("patroni_standby_clusters") or []:
            if sb["region"] == REGION:
                return inv.name, sb
    raise AssertionError(f"no standby cluster of {REGION}")


def _stored(standby: dict, **params) -> str:
    """A show-config answer: the cluster's bootstrap.dcs as Patroni stored it, parameters changed by `params`."""
    dcs = json.loads(json.dumps(standby["config"]["bootstrap"]["dcs"]))
    dcs["postgresql"]["parameters"].update(params)
    dcs.pop("failsafe_mode", None)  # a cluster created before the change
    return yaml.safe_dump(dcs, default_flow_style=False)


def test_the_standby_gets_the_sources_values_never_lower(generated):
    _, sb = _standby(generated)
    src = sb["config"]["bootstrap"]["dcs"]["postgresql"]["parameters"]
    when = apply_task(generated)["when"]

    def applies(stored) -> bool:
        return role_value(generated, "{{ " + when + " }}", stored, sb) in (True, "True")

    def dcs(stored) -> dict:
        return role_value(generated, "{{ patroni_standby_dcs }}", stored, sb)

    # created with lower values: raised to the source's, failsafe_mode added
    lower = _stored(sb, max_connections=src["max_connections"] - 50, max_wal_senders=src["max_wal_senders"] - 2)
    assert applies(lower)
    got = dcs(lower)
    assert got["failsafe_mode"] is True
    assert got["postgresql"]["parameters"] == src, got
    # a standby already above the source (the source lowered it, or an operator raised the standby) keeps its value
    higher = _stored(sb, max_connections=src["max_connections"] + 100, max_locks_per_transaction=256)
    got = dcs(higher)["postgresql"]["parameters"]
    assert got["max_connections"] == src["max_connections"] + 100 and got["max_locks_per_transaction"] == 256, got
    assert got["max_worker_processes"] == src["max_worker_processes"]
    # what it stores is what the run would write: nothing to apply, nothing restarted
    same = yaml.safe_dump({**yaml.safe_load(higher), "failsafe_mode": True})
    assert not applies(same)
    # a cluster the DR runbook promoted (standby_cluster removed) serves production: never touched by a run
    promoted = yaml.safe_load(lower)
    promoted.pop("standby_cluster")
    assert not applies(yaml.safe_dump(promoted))
    # not bootstrapped yet (Patroni's empty answer), or not asked (check mode, services not ready)
    assert not applies("{}\n") and not applies(None)


def test_the_apply_runs_one_host_at_a_time_and_restarts_each_host(generated):
    """Both hosts of a standby read before either applies (the role's order: every host runs a task before the next
    starts), so each sees the difference and notifies its own restart handler; the apply itself is serialised, the
    second host finding it applied."""
    tasks = yaml.safe_load((generated / "ansible/roles/patroni/tasks/main.yml").read_text())
    names = [t["name"] for t in tasks]
    assert names.index(SHOW) + 1 == names.index(APPLY) and names.index(SHOW) > names.index("Start each standby cluster at boot")
    apply = tasks[names.index(APPLY)]
    assert apply["throttle"] == 1 and apply["changed_when"] is True
    assert apply["notify"] == "Restart the standby clusters"
    restart = next(h for h in yaml.safe_load((generated / "ansible/roles/patroni/handlers/main.yml").read_text())
                   if h["name"] == "Restart the standby clusters")
    assert restart["throttle"] == 1 and "--pending" in restart["ansible.builtin.command"]["argv"]


def test_a_raised_source_value_reaches_its_running_standby(generated):
    python = require_patroni_cluster()
    partner, sb = _standby(generated)
    tasks = yaml.safe_load((generated / "ansible/roles/patroni/tasks/main.yml").read_text())
    handlers = yaml.safe_load((generated / "ansible/roles/patroni/handlers/main.yml").read_text())
    show = next(t for t in tasks if t["name"] == SHOW)["ansible.builtin.command"]["argv"]
    apply = apply_task(generated)["ansible.builtin.command"]
    wait_h = next(h for h in handlers if h.get("listen") == "Restart the standby clusters"
                  and h["name"].startswith("Wait"))["ansible.builtin.command"]["argv"]
    restart_h = next(h for h in handlers if h["name"] == "Restart the standby clusters")["ansible.builtin.command"]["argv"]
    work = private_dir("psbdcs-")
    steps = {"show": show, "apply": apply["argv"], "list": wait_h, "restart": restart_h}
    proc = subprocess.Popen(ISOLATE + AS_POSTGRES + [python, str(HARNESS), str(generated), REGION, partner, str(work),
                                                     json.dumps(steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the harness hands each show-config answer over and waits for the stdin the role's variables make of it
        # (Ansible's templar, which its Python lacks), with the spec's new source value in the standby's config
        raised = json.loads(json.dumps(sb))
        raised["config"]["bootstrap"]["dcs"]["postgresql"]["parameters"]["max_connections"] += 20
        for n in (1, 2):
            asked = work / f"stored-{n}.yml"
            _wait_for(asked, proc)
            stdin = role_value(generated, apply["stdin"], asked.read_text(), raised)
            stale = role_value(generated, "{{ patroni_standby_dcs_stale }}", asked.read_text(), raised)
            tmp = work / f"stdin-{n}.part"
            tmp.write_text(json.dumps({"stdin": stdin, "stale": stale in (True, "True")}))
            tmp.chmod(0o644)
            tmp.rename(work / f"stdin-{n}.json")
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    assert proc.returncode == 0, f"the harness failed:\n{err[-6000:]}"
    res = json.loads(out.strip().splitlines()[-1])
    print("\nstandby cluster-wide change:", json.dumps(res, indent=1), file=sys.stderr)
    assert res["first"]["stale"] and res["first"]["apply_rc"] == 0 and "Configuration changed" in res["first"]["apply"]
    assert res["first"]["restart_rc"] == 0, res
    assert res["after"] == res["before"] + 20, res
    assert res["replaying"], res  # the standby streams and replays on after its restart
    assert not res["second"]["stale"], res  # applied: the next run changes nothing, restarts nothing


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 600) -> None:
    import time
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the harness stopped:\n{proc.stderr.read()[-6000:]}")
        if time.monotonic() > end:
            raise AssertionError(f"no {path.name} from the harness")
        time.sleep(0.5)
