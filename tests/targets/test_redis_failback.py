"""The redis role puts each primary back in the zone the topology placed it, on real servers.

When a primary fails, its replica (in another zone) takes its slots, and the old primary rejoins as that replica's
replica. After a zone's outage, the zone holds no primary and another holds two; with three primaries, losing that
second zone next leaves one of three, too few to elect replacements, and the cluster stops. A run of the role after
the outage must make the topology's primaries primaries again, keep the data, and change nothing when run again.

Inside `unshare -n`, tests/targets/redis_failback_harness.py starts the reference region's six nodes on loopback
addresses with the data tier's redis.conf and the includes the role renders (Ansible's templar), runs the role's
cluster tasks with ansible-playbook (a local connection per node), kills the first primary and starts it again, then
runs the role twice more.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import VENV_BIN, require_tool
from tests.targets.test_ansible import _build_tree, _env
from tests.targets.test_ansible_units import ansible_template
from tests.targets.test_datastores_support import ISOLATE, require_isolation

HARNESS = Path(__file__).with_name("redis_failback_harness.py")
ADMIN_PASSWORD = "a1" * 32
SERVICE_PASSWORD = "s3rvice-Passw0rd"

# The harness sets each node's address as a fact, as gather_facts would on a real host (default_ipv4), and the
# service manager a Debian host has (the service module reads it to pick the systemd module).
FACTS_MODULE = '''#!/usr/bin/python
from ansible.module_utils.basic import AnsibleModule

module = AnsibleModule(argument_spec={"address": {"type": "str", "required": True}})
module.exit_json(changed=False, ansible_facts={"default_ipv4": {"address": module.params["address"]},
                                               "service_mgr": "systemd"})
'''

PLAYBOOK = """\
- name: Form the cluster with the redis role's own tasks
  hosts: redis_cluster
  gather_facts: false
  tasks:
    - name: This node's address
      platformc_test_address:
        address: "{{ test_address }}"
    - name: The role's cluster tasks
      ansible.builtin.import_role:
        name: redis
        tasks_from: cluster
"""


def redis_cluster_nodes(tmp_path_factory, name: str) -> tuple[dict, dict, Path]:
    """The reference region's Redis nodes on loopback addresses, with the data tier's redis.conf and the includes the
    role renders, and the playbook of the role's cluster tasks over them: the harness config (nodes, port, admin
    password, the ansible-playbook command and its environment), the topology, and the test's directory."""
    require_isolation()
    for tool in ("redis-server", "redis-cli"):
        require_tool(tool)
    playbook_bin = require_tool("ansible-playbook")
    plan, root, _ = _build_tree("reference", tmp_path_factory)
    region = next(r for r in plan.regions if r.hosts_in("redis_cluster"))
    base = tmp_path_factory.mktemp(name)
    ansible_dir = base / "generated" / "ansible"
    shutil.copytree(root.parent, base / "generated")  # the role reads ../datastores/<region>/ as on a real run
    data = base / "generated" / "datastores" / region.name
    topology = json.loads((data / "redis-topology.json").read_text())
    refs = {u["password_ref"] for u in topology["acl_include"]["users"]} | {topology["acl_include"]["masterauth_ref"]}
    secrets = {hashlib.sha1(ref.encode()).hexdigest()[:12]: SERVICE_PASSWORD for ref in refs}

    # The admin secret as the role's first node holds it (`openssl rand -hex 32 -out`: the hex and a newline, root's
    # only): the cluster tasks' redis-cli reads it from there, and the restart script from its copy on each node.
    admin_dir = base / "admin"
    admin_dir.mkdir(mode=0o700)
    (admin_dir / "secret").write_text(ADMIN_PASSWORD + "\n")
    (admin_dir / "secret").chmod(0o600)
    nodes, hosts = [], {}
    for i, node in enumerate(topology["nodes"]):
        address = f"127.0.0.{i + 2}"
        work = base / "nodes" / node["name"]
        work.mkdir(parents=True)
        variables = {"ansible_managed": "Ansible managed", "redis_topology": topology, "redis_secrets": secrets,
                     "redis_admin_password": ADMIN_PASSWORD, "ansible_facts": {"default_ipv4": {"address": address}}}
        includes = []
        for name in ("redis-host.conf.j2", "redis-acl.conf.j2", "redis-admin.conf.j2"):
            path = work / name.removesuffix(".j2")
            path.write_text(ansible_template((ansible_dir / "roles/redis/templates" / name).read_text(), variables,
                                             file=True))
            includes += ["--include", str(path)]
        # Files, supervision and the addresses are overridden (command-line options come after the file and its
        # includes): six nodes share this machine's loopback, so each binds its own address only and connects
        # from it, as a host does from its one address (a node learns its peers' addresses from their connections).
        command = [require_tool("redis-server"), str(data / "redis.conf"), *includes, "--dir", str(work),
                   "--daemonize", "no", "--supervised", "no", "--logfile", str(work / "redis.log"),
                   "--pidfile", str(work / "redis.pid"), "--cluster-config-file", str(work / "nodes.conf"),
                   "--bind", address, "--bind-source-addr", address]
        nodes.append({"name": node["name"], "replica_of": node["replica_of"], "address": address,
                      "work": str(work), "command": command})
        hosts[node["name"]] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                               "test_address": address, "platformc_region": region.name,
                               "redis_admin_dir": str(admin_dir)}

    (ansible_dir / "library").mkdir()
    (ansible_dir / "library" / "platformc_test_address.py").write_text(FACTS_MODULE)
    (ansible_dir / "test-cluster.yml").write_text(PLAYBOOK)
    (base / "inventory.json").write_text(json.dumps({"redis_cluster": {"hosts": hosts}}))
    extra = {"redis_admin_secret": {"content": base64.b64encode(ADMIN_PASSWORD.encode()).decode()}}
    env = _env(home=base / "ansible-home", local_tmp=base / "ansible-tmp")
    config = {"nodes": nodes, "port": topology["port"], "admin_password": ADMIN_PASSWORD,
              "playbook": [playbook_bin, "-i", str(base / "inventory.json"), "-e", json.dumps(extra),
                           "test-cluster.yml"],
              "playbook_dir": str(ansible_dir), "playbook_env": env}
    return config, topology, base


def test_a_run_after_a_zone_outage_puts_the_primaries_back(tmp_path_factory):
    config, topology, base = redis_cluster_nodes(tmp_path_factory, "redis-failback")
    config["key"] = "failback:probe"
    (base / "config.json").write_text(json.dumps(config))

    res = subprocess.run(ISOLATE + [sys.executable, str(HARNESS), str(base / "config.json")], capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])

    designed = {n["name"]: "master" if n["role"] == "primary" else f"slave of {n['replica_of']}"
                for n in topology["nodes"]}
    first = topology["nodes"][0]["name"]
    replica = next(n["name"] for n in topology["nodes"] if n["replica_of"] == first)
    assert out["formed"] == designed
    # The outage left the first primary's slots with its replica, in another zone: the drift the role must undo.
    assert out["after_outage"][replica] == "master" and out["after_outage"][first] == f"slave of {replica}"
    assert out["after_run"] == designed, "the role left a primary out of the zone the topology placed it in"
    assert out["after_rerun"] == designed
    assert out["set"] == "OK" and out["get"] == "before the outage"
    formed, failback, rerun = out["changed"]
    assert formed > 0 and failback > 0
    assert rerun == 0, "a run with every primary in place changed something"
    zone_of = {n["name"]: n["zone"] for n in topology["nodes"]}
    primary_zones = [zone_of[name] for name, role in out["after_run"].items() if role == "master"]
    assert len(set(primary_zones)) == len(primary_zones), "two primaries share a zone"
