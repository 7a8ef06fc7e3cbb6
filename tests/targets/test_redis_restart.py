"""The redis role's "Restart Redis" handler restarts one node at a time, each only once the cluster serves again.

A change of redis.conf or of an include reaches every node in the same run. Throttle alone restarted the nodes one
after the other without waiting: a replica still loading its dataset, or resyncing, when the next node (its
primary) went down left that shard nothing to fail over to. The handler must not restart a node while another does
not serve (answers PING, dataset loaded, a replica's link up and not syncing, cluster_state:ok), and a node that
never comes back must fail the run, within the bound, before the next node is restarted.

Inside `unshare -n`, tests/targets/redis_restart_harness.py starts the reference region's six nodes as the failback test
does, forms the cluster with the role's cluster tasks, and runs the role's handler as generated with ansible-playbook
over every node. Restarting goes through a stand-in for systemctl, first on PATH (the role's script and the service
module both run `systemctl restart redis-server`): it restarts the harness's server for the node the play names, and
first records every other node that does not serve at that moment, and every process whose command line or environment
holds the admin password (the script reads it from the file the role keeps on each node). One replica has a few thousand
keys to load, slowed down with Redis's key-load-delay; its restart returns before they are loaded.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import yaml

from tests.targets.test_datastores_support import ISOLATE
from tests.targets.test_redis_failback import redis_cluster_nodes

HARNESS = Path(__file__).with_name("redis_restart_harness.py")
STUCK_TIMEOUT = 3  # the bound for the replica that never comes back (the role's default is 300 s)
# the role's task that keeps the admin secret on each node, where the script reads it (run before the notification)
SECRET_TASK = "Keep the cluster admin secret root-only on every node"

PLAYBOOK = """\
- name: Notify the redis role's restart handler on every node
  hosts: redis_cluster
  gather_facts: false
  environment:
    PLATFORMC_TEST_NODE: "{{ inventory_hostname }}"  # the node the stand-in systemctl restarts
  tasks:
    - name: This node's address
      platformc_test_address:
        address: "{{ test_address }}"
    - name: The role, with its variables and handlers as generated, and the test's one task
      ansible.builtin.import_role:
        name: redis
        tasks_from: test-notify
"""
# Added to the test's copy of the role (a tasks file of the role, so the notification reaches the role's handler
# as its own tasks' do; importing the role's cluster tasks with `when: false` would skip its handlers as well).
NOTIFY = """\
- name: A change that needs Redis restarted, as a new redis.conf
  ansible.builtin.debug:
    msg: changed
  changed_when: true
  notify: Restart Redis
"""


def test_the_restart_handler_waits_until_each_node_serves_again(tmp_path_factory):
    config, topology, base = redis_cluster_nodes(tmp_path_factory, "redis-restart")
    ansible_dir = Path(config["playbook_dir"])
    (ansible_dir / "test-restart.yml").write_text(PLAYBOOK)
    main = yaml.safe_load((ansible_dir / "roles/redis/tasks/main.yml").read_text())
    keep = [t for t in main if t["name"] == SECRET_TASK]
    assert keep and keep[0]["no_log"] is True and keep[0]["ansible.builtin.copy"]["mode"] == "0600"
    (ansible_dir / "roles/redis/tasks/test-notify.yml").write_text(yaml.safe_dump(keep, sort_keys=False) + NOTIFY)
    config["cluster_playbook"] = config["playbook"]
    config["playbook"] = [*config["playbook"][:-1], "test-restart.yml"]

    # The role installs its script at /usr/local/sbin; here, the generated file, executable, in the test's directory.
    bin_dir = base / "bin"
    bin_dir.mkdir()
    script = bin_dir / "platformc-redis-restart"
    script.write_text((ansible_dir / "roles/redis/files/platformc-redis-restart.sh").read_text())
    script.chmod(0o750)
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} {HARNESS} systemctl "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    inventory = json.loads((base / "inventory.json").read_text())
    for host in inventory["redis_cluster"]["hosts"].values():
        host["redis_restart_command"] = str(script)
    (base / "inventory.json").write_text(json.dumps(inventory))
    config["playbook_env"] = dict(config["playbook_env"], PATH=f"{bin_dir}:{config['playbook_env']['PATH']}",
                                  PLATFORMC_TEST_CONFIG=str(base / "config.json"))

    # A replica's full resync waits repl-diskless-sync-delay (5 s) for more replicas to share it; each restart waits for
    # the resyncs it causes, so none here keeps the six restarts within the test's time.
    for node in config["nodes"]:
        node["command"] += ["--repl-diskless-sync-delay", "0"]
    names = [n["name"] for n in topology["nodes"]]
    replicas = [n["name"] for n in topology["nodes"] if n["role"] == "replica"]
    # the handler takes the hosts in the topology's order: primaries, then replicas; the stuck one has a node after it
    config.update(restart_log=str(base / "restarts.jsonl"), slow=replicas[0], stuck=replicas[1],
                  after_stuck=names[names.index(replicas[1]) + 1], stuck_timeout=STUCK_TIMEOUT)
    (base / "config.json").write_text(json.dumps(config))

    res = subprocess.run(ISOLATE + [sys.executable, str(HARNESS), str(base / "config.json")], capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])

    # Every node was restarted once, in the play's order, and none while another did not serve.
    assert out["rc"] == 0, out["output"]
    assert [r["node"] for r in out["restarts"]] == names, out["output"]
    unsafe = {r["node"]: r["not_serving"] for r in out["restarts"] if r["not_serving"]}
    assert not unsafe, f"nodes restarted while others did not serve: {unsafe}"
    # The admin password reached no process's command line or environment (the handler's module, its shell, the
    # script, redis-cli), and not Ansible's output at -vvv, which shows the commands it runs and each task's result.
    leaks = {r["node"]: r["leaks"] for r in out["restarts"] + out["stuck_restarts"] if r["leaks"]}
    assert not leaks, f"processes held the admin password: {leaks}"
    assert not out["password_in_output"], "the password reached Ansible's output"
    assert not out["stuck_password_in_output"], "the password reached Ansible's output"
    # ... and the handler returned with the whole cluster serving, the slow replica loaded and in sync.
    assert out["served_after"] == {name: "" for name in names}
    # the notifying task and the handler: the role's copy of the admin secret is the file openssl made, unchanged
    assert out["changed"] == {name: 2 for name in names}
    assert out["set"] == ["OK"] * len(out["set"])
    assert out["get"] == [f"value of restart:probe:{i}" for i in range(len(out["get"]))]

    # A replica that never serves again fails the run at the bound, saying why, and the next node is not restarted.
    stuck, after = config["stuck"], config["after_stuck"]
    assert out["stuck_rc"] != 0, out["stuck_output"]
    assert [r["node"] for r in out["stuck_restarts"]] == [stuck], out["stuck_output"]
    address = next(n["address"] for n in config["nodes"] if n["name"] == stuck)
    assert (f"redis-server on {address}:{config['port']} was restarted, but the cluster does not serve "
            f"{STUCK_TIMEOUT} s later: {address}:{config['port']} is a replica whose link to its primary is down"
            in out["stuck_output"]), out["stuck_output"]
    after_address = next(n["address"] for n in config["nodes"] if n["name"] == after)
    assert (f"not restarting redis-server on {after_address}:{config['port']}: the rest of the cluster does not serve "
            f"(waited {STUCK_TIMEOUT} s): {address}:{config['port']} is a replica whose link to its primary is down"
            in out["stuck_output"]), out["stuck_output"]
    assert out["stuck_seconds"] < 30, out["stuck_seconds"]  # two bounds of a few seconds, not the role's 300 s
