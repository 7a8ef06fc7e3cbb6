"""The elasticsearch role's "Restart Elasticsearch" handler restarts one node at a time, each the way Elastic's rolling
restart does, and the next only once the cluster is green again.

A new elasticsearch.yml, heap or certificate reaches every node in the same run. Throttle alone restarted the nodes
one after the other without waiting: the next node went down while the last one's shard copies were still
unassigned or recovering, and with one replica per shard both copies of a shard were down at once (red). The handler
must limit allocation to primaries, flush, restart, wait until the node has rejoined, put allocation back to its
default, and wait for green (yellow only for a single node) before the next node; refuse to restart a node while the
cluster is not so; fail a node that never comes back at the bound, with allocation put back; and on the first run,
before the role has made the elastic password and the cluster has formed, wait only until the node answers.

There is no Elasticsearch on this machine: inside `unshare -n`, tests/targets/es_restart_harness.py serves the REST
API the script uses over HTTPS (the test's CA, its own certificate on each node's loopback address) and models the
cluster (see there). ansible-playbook runs the role's handler as generated over the reference region's nodes, with the
role's own tasks that read the elastic password; the script as generated restarts through a stand-in systemctl.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import require_tool
from tests.targets.test_ansible import _build_tree, _env
from tests.targets.test_datastores_support import ISOLATE, require_isolation

HARNESS = Path(__file__).with_name("es_restart_harness.py")
SCRIPT = "roles/elasticsearch/files/platformc-elasticsearch-restart.sh"
# a quote and a backslash: curl's config syntax must carry them (the role's generated passwords are tamer)
PASSWORD = 'elastic-"pass\\w0rd*'
PORT, CONTROL_PORT = 9200, 9900
SHORT = 5  # the bound for the runs that must fail (the role's default is 600 s)
PASSWORD_TASKS = ("Create the directory of the elastic password",
                  "Look for the elastic password the restart handler logs in with",
                  "Read the elastic password the restart handler logs in with",
                  "Give the restart handler the elastic password on each node")

# The service manager a Debian host has (the service module reads it to pick the systemd module).
FACTS_MODULE = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={})
module.exit_json(changed=False, ansible_facts={"service_mgr": "systemd"})
'''
PLAYBOOK = """\
- name: Notify the elasticsearch role's restart handler on every node
  hosts: elasticsearch
  gather_facts: false
  environment:
    PLATFORMC_TEST_NODE: "{{ inventory_hostname }}"  # the node the stand-in systemctl restarts
  tasks:
    - name: The host's service manager
      platformc_test_facts:
    - name: The role's reading of the elastic password, its variables and handlers as generated, and the test's task
      ansible.builtin.import_role:
        name: elasticsearch
        tasks_from: test-notify
"""
NOTIFY = [{"name": "A change that needs Elasticsearch restarted, as a new elasticsearch.yml",
           "ansible.builtin.debug": {"msg": "changed"}, "changed_when": True, "notify": "Restart Elasticsearch"}]


def _load(path: Path):
    return yaml.safe_load(path.read_text())


def _ca(d: Path, addresses: list[str]) -> None:
    """A throwaway CA and one certificate for every node's loopback address (as the region's CA names each host)."""
    openssl = require_tool("openssl")

    def run(*a):
        subprocess.run([openssl, *a], cwd=d, check=True, capture_output=True)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "node.key", "-out", "node.csr", "-subj", "/CN=es",
        "-addext", "subjectAltName=" + ",".join(f"IP:{a}" for a in addresses))
    run("x509", "-req", "-in", "node.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
        "-copy_extensions", "copy", "-out", "node.crt")


def _admin(d: Path, password: str | None) -> Path:
    d.mkdir(mode=0o700)
    if password is not None:
        (d / "elastic").write_text(password + "\n")
        (d / "elastic").chmod(0o600)
    return d


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """The reference platform's generated ansible tree, written as `platformc generate` writes it."""
    return _build_tree("reference", tmp_path_factory)


def test_the_script_passes_bash_and_shellcheck(tree):
    _, root, _ = tree
    script = root / SCRIPT
    res = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    res = subprocess.run([require_tool("shellcheck"), "--shell=bash", "--severity=style", str(script)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_handler_runs_the_script_one_host_at_a_time_with_the_password_read_before(tree):
    _, root, _ = tree
    role = root / "roles" / "elasticsearch"
    (handler,) = _load(role / "handlers" / "main.yml")
    assert handler["name"] == "Restart Elasticsearch" and handler["throttle"] == 1
    assert handler["listen"] == "tls certificate changed"  # a renewed certificate restarts the same way
    argv = handler["ansible.builtin.command"]["argv"]
    assert argv[0] == "{{ elasticsearch_restart_command }}"
    args = dict(zip(argv[1::2], argv[2::2]))
    assert args == {"--node": "{{ inventory_hostname }}", "--address": "{{ ansible_host }}",
                    "--port": "{{ elasticsearch_http_port }}", "--ca": "{{ elasticsearch_ca_file }}",
                    "--peers": "{{ elasticsearch_restart_peers }}", "--unit": "elasticsearch",
                    "--password-file": "{{ elasticsearch_admin_dir }}/restart-password",
                    "--timeout": "{{ elasticsearch_restart_timeout }}"}
    # the password in a root-only file on the node, which the script reads: not in the task's arguments or environment
    assert "environment" not in handler and "no_log" not in handler  # the script's diagnostics stay visible
    assert "not ansible_check_mode" in handler["when"]
    defaults = _load(role / "defaults" / "main.yml")
    assert defaults["elasticsearch_restart_command"] == "/usr/local/sbin/platformc-elasticsearch-restart"
    assert defaults["elasticsearch_ca_file"] == "/etc/elasticsearch/certs/ca.crt"  # the CA include_tls installs

    # The script is installed and the password read before any task that can notify the handler.
    main = _load(role / "tasks" / "main.yml")
    names = [t["name"] for t in main]
    notifies = [i for i, t in enumerate(main) if t.get("notify") or "ansible.builtin.include_role" in t]
    install = next(i for i, t in enumerate(main) if (t.get("ansible.builtin.copy") or {}).get("src")
                   == "platformc-elasticsearch-restart.sh")
    assert main[install]["ansible.builtin.copy"]["dest"] == "{{ elasticsearch_restart_command }}"
    mkdir, look, read, keep = (names.index(n) for n in PASSWORD_TASKS)
    assert max(install, mkdir, look, read, keep) < min(notifies), names
    assert mkdir < keep and read < keep
    assert main[read]["ansible.builtin.slurp"]["src"] == "{{ elasticsearch_admin_dir }}/elastic"
    assert main[read]["no_log"] is True and main[read]["delegate_to"] == "{{ elasticsearch_first_node }}"
    copy = main[keep]["ansible.builtin.copy"]
    assert copy["dest"] == "{{ elasticsearch_admin_dir }}/restart-password"
    assert copy["content"] == "{{ elasticsearch_restart_password }}"
    assert (copy["owner"], copy["mode"]) == ("root", "0600")
    assert main[keep]["no_log"] is True and "delegate_to" not in main[keep]  # on every node
    assert main[mkdir]["ansible.builtin.file"]["mode"] == "0700" and "delegate_to" not in main[mkdir]
    apt = [t["ansible.builtin.apt"]["name"] for t in main if "ansible.builtin.apt" in t]
    assert any("curl" in (n if isinstance(n, list) else [n]) for n in apt)

    # The password is made whenever the role runs for real, whether or not there are clients to create.
    clients = {t["name"]: t for t in _load(role / "tasks" / "clients.yml")}
    for name in ("Set a generated elastic password once", "Keep the elastic password on the first node"):
        when = clients[name]["when"]
        assert "not ansible_check_mode" in when and not any("elasticsearch_clients" in w for w in when), when


def test_the_handler_restarts_each_node_only_once_the_cluster_is_green(tree, tmp_path_factory):
    require_isolation()
    playbook_bin = require_tool("ansible-playbook")
    require_tool("curl")
    plan, root, _ = tree
    region = next(r for r in plan.regions if len(r.hosts_in("elasticsearch")) >= 3)
    names = [h.name for h in region.hosts_in("elasticsearch")][:3]
    addresses = [f"127.0.0.{11 + i}" for i in range(len(names))]
    base = tmp_path_factory.mktemp("es-restart")
    ansible_dir = base / "generated" / "ansible"
    shutil.copytree(root, ansible_dir)
    _ca(base, addresses)

    # The role's own tasks that read the password (when this tree has them), then a change that notifies.
    main = _load(ansible_dir / "roles/elasticsearch/tasks/main.yml")
    reads = [t for t in main if t["name"] in PASSWORD_TASKS]
    notify = yaml.safe_dump(reads + NOTIFY, sort_keys=False)
    (ansible_dir / "roles/elasticsearch/tasks/test-notify.yml").write_text(notify)
    (ansible_dir / "test-restart.yml").write_text(PLAYBOOK)
    (ansible_dir / "library").mkdir()
    (ansible_dir / "library" / "platformc_test_facts.py").write_text(FACTS_MODULE)

    # The role installs its script at /usr/local/sbin; here, the generated file, executable, in the test's directory.
    bin_dir = base / "bin"
    bin_dir.mkdir()
    script = bin_dir / "platformc-elasticsearch-restart"
    if (ansible_dir / SCRIPT).exists():
        script.write_text((ansible_dir / SCRIPT).read_text())
        script.chmod(0o750)
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\nexec {sys.executable} {HARNESS} systemctl "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)

    passwords = {"made": PASSWORD, "none": None, "other": "not-the-password"}

    def scenario(name: str, nodes: int, admin: str, timeout: int, limit: list[str] | None = None, verbose=(),
                 **model) -> dict:
        # Each node its own admin directory, where the role keeps the password's copy; the first node's holds the
        # password itself (the others' `elastic` files are never read).
        hosts = {n: {"ansible_connection": "local", "ansible_python_interpreter": sys.executable, "ansible_host": a,
                     "elasticsearch_admin_dir": str(_admin(base / f"admin-{name}-{n}", passwords[admin]))}
                 for n, a in zip(names[:nodes], addresses)}
        inventory = base / f"inventory-{name}.json"
        inventory.write_text(json.dumps({"elasticsearch": {"hosts": hosts, "vars": {
            "elasticsearch_ca_file": str(base / "ca.crt"),
            "elasticsearch_http_port": PORT, "elasticsearch_restart_command": str(script),
            "elasticsearch_restart_timeout": timeout}}}))
        command = [playbook_bin, "-i", str(inventory), "test-restart.yml", *verbose,
                   *(["--limit", ",".join(limit)] if limit else [])]
        return {"name": name, "nodes": [{"name": n, "address": a} for n, a in zip(names[:nodes], addresses)],
                "playbook": command, "down": 1.0, "join": 1.0, "recover": 1.5, **model}

    first, stuck, after = names
    config = {"port": PORT, "control_port": CONTROL_PORT, "password": PASSWORD, "leak_log": str(base / "leaks.jsonl"),
              "cert": str(base / "node.crt"), "key": str(base / "node.key"), "playbook_dir": str(ansible_dir),
              "playbook_env": {**_env(home=base / "ansible-home", local_tmp=base / "ansible-tmp"),
                               "PATH": f"{bin_dir}:{_env(home=base, local_tmp=base)['PATH']}",
                               "PLATFORMC_TEST_CONFIG": str(base / "config.json")},
              "scenarios": [
                  # -vvv: the commands Ansible runs, and each task's result with its arguments
                  scenario("rolling", 3, "made", 60, verbose=["-vvv"]),
                  scenario("stuck", 3, "made", SHORT, [stuck, after], stuck=stuck),
                  scenario("unrecoverable", 3, "made", SHORT, [stuck, after], unrecoverable=stuck),
                  scenario("first_run", 3, "none", 60, formed=False),
                  scenario("single", 1, "made", 60),
                  scenario("wrong_password", 3, "other", SHORT, [first]),
              ]}
    (base / "config.json").write_text(json.dumps(config))

    res = subprocess.run(ISOLATE + [sys.executable, str(HARNESS), str(base / "config.json")], capture_output=True,
                         text=True, timeout=600, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    for name, run in out.items():
        # not in Ansible's output, nor in any process's command line or environment while the handler ran (its
        # module, the module's shell, the script, curl)
        assert not run["password_in_output"], f"{name}: the password reached Ansible's output"
        assert not run["leaks"], f"{name}: processes held the password: {run['leaks']}"
    # Each node's copy of the password, root-only, where the script reads it; empty before the role has made it.
    for name, password in (("rolling", PASSWORD), ("first_run", "")):
        for node in names:
            copy = base / f"admin-{name}-{node}" / "restart-password"
            assert (copy.read_text(), stat.S_IMODE(copy.stat().st_mode)) == (password, 0o600), (name, node)

    # Every node restarted once, in the play's order, each only while every other node was in and recovered, the
    # cluster green and allocation limited to primaries; the run ended green with allocation back to its default.
    run = out["rolling"]
    assert run["rc"] == 0, run["output"]
    assert [r["node"] for r in run["restarts"]] == names, run["output"]
    unsafe = [r for r in run["restarts"] if r["others_not_in_or_stale"] or r["status"] != "green"]
    assert not unsafe, f"nodes restarted while the cluster was not green: {unsafe}"
    assert [r["allocation"] for r in run["restarts"]] == ["primaries"] * 3
    assert (run["status"], run["allocation"], sorted(run["members"])) == ("green", None, sorted(names))
    assert [s["value"] for s in run["settings"]] == ["primaries", None] * 3
    assert all(r["auth"] for r in run["requests"])
    for i, restart in enumerate(run["restarts"]):
        disabled, enabled = run["settings"][2 * i], run["settings"][2 * i + 1]
        flushed = [r for r in run["requests"] if r["method"] == "POST" and r["path"] == "/_flush" and r["status"] == 200
                   and disabled["at"] <= r["at"] <= restart["at"]]
        assert disabled["at"] < restart["at"] < enabled["at"] and flushed, (restart, disabled, enabled)
        # allocation came back only after the node was listed again (it had rejoined)
        listed = [r for r in run["requests"] if r["path"] == "/_cat/nodes" and r["status"] == 200
                  and restart["at"] < r["at"] <= enabled["at"]]
        assert listed, restart
    assert run["changed"] == {name: 3 for name in names}  # the password's copy, the notifying task and the handler

    # A node that never rejoins fails the run at the bound, saying why, with allocation put back; the next node is not
    # restarted, and says why.
    run = out["stuck"]
    assert run["rc"] != 0 and [r["node"] for r in run["restarts"]] == [stuck], run["output"]
    assert f"elasticsearch on {stuck} was restarted, but {SHORT} s later: {stuck} has not rejoined the cluster" \
        in run["output"], run["output"]
    assert f"not restarting elasticsearch on {after}: the cluster is not ready (waited {SHORT} s): node(s) {stuck} " \
        "not in the cluster" in run["output"], run["output"]
    assert [s["value"] for s in run["settings"]] == ["primaries", None] and run["allocation"] is None
    assert run["seconds"] < 60, run["seconds"]

    # A node that rejoins but whose copies never recover: the cluster stays yellow, the run fails, the next node waits.
    run = out["unrecoverable"]
    assert run["rc"] != 0 and [r["node"] for r in run["restarts"]] == [stuck], run["output"]
    yellow = "the cluster is yellow (replicas unassigned or recovering)"
    assert f"elasticsearch on {stuck} was restarted, but {SHORT} s later: {yellow}" in run["output"], run["output"]
    assert f"not restarting elasticsearch on {after}: the cluster is not ready (waited {SHORT} s): {yellow}" \
        in run["output"], run["output"]
    assert [s["value"] for s in run["settings"]] == ["primaries", None]

    # The first run: no password yet, no cluster to ask (it never reports green here): every node is restarted, each
    # waited for only until it answers, and nothing is asked of the cluster.
    run = out["first_run"]
    assert run["rc"] == 0, run["output"]
    assert [r["node"] for r in run["restarts"]] == names
    assert run["settings"] == [] and not any(r["auth"] for r in run["requests"])
    assert {(r["method"], r["path"]) for r in run["requests"]} == {("GET", "/")}
    assert run["seconds"] < 60, run["seconds"]

    # A single node: yellow is its normal state (its replicas have nowhere to go), so the restart goes through.
    run = out["single"]
    assert run["rc"] == 0, run["output"]
    assert [(r["node"], r["status"], r["allocation"]) for r in run["restarts"]] == [(first, "yellow", "primaries")]
    assert [s["value"] for s in run["settings"]] == ["primaries", None] and run["status"] == "yellow"

    # A password the cluster refuses: nothing is restarted or changed.
    run = out["wrong_password"]
    assert run["rc"] != 0 and run["restarts"] == [] and run["settings"] == [], run["output"]
    assert f"not restarting elasticsearch on {first}: the cluster is not ready (waited {SHORT} s): no node reports " \
        "the cluster's health" in run["output"] and "HTTP 401 security_exception" in run["output"], run["output"]
