"""The redis role: cluster nodes with the data tier's redis.conf, then the cluster, formed once.

The data tier's redis.conf binds the loopback only and disables the default user; what differs per
host and the secrets go in its include directory, as its redis-topology.json describes (the role
reads that file, so both targets agree on names and rules):

    host.conf   bind <the host's private IPv4> 127.0.0.1 -::1
    acl.conf    one user per service (SHA-256 of its password; keys <service>:*), the replication user and masteruser/masterauth
    admin.conf  `platformc-admin`, the user that forms the cluster: the services' users may not
                run CLUSTER ADDSLOTS/MEET/REPLICATE (@dangerous), and the spec has no admin secret,
                so a random one is made on the first node and never leaves the nodes and the run

The admin secret is kept root-only (0600) in /etc/redis/platformc-admin/secret on every node. Every redis-cli that logs
in as platformc-admin (the cluster tasks, the restart script) reads it from that file with `--askpass`, on its standard
input: never `-a` (a command line, visible in `ps`) nor REDISCLI_AUTH through the task's `environment:`, which Ansible
puts in front of the module's command line (in `ps`, in sudo's log of the command with become, in `-vvv` output).

A restart (the "Restart Redis" handler, one host at a time) runs the script the role installs,
/usr/local/sbin/platformc-redis-restart: it restarts the node and waits, bounded, until the node and every node it
knows serve again (loaded, replicas in sync, cluster_state:ok) before the handler moves to the next host, and
refuses to restart a node while another does not serve (see the script).
"""

from __future__ import annotations

from compiler.targets.ansible.role import (Role, apt, copy, expr, installed_version_check, service, services_ready_var,
                                            task, template, when_ready)
from compiler.targets.ansible.roles_data import SOURCE_DIR, source

REDIS_SYSCTL = """\
# Redis (platformc redis role): fork for snapshots without failing on overcommit, deeper accept queue.
vm.overcommit_memory = 1
net.core.somaxconn = 1024
"""
REDIS_THP = ("# Redis (platformc redis role): no transparent huge pages (latency, copy-on-write bloat).\n"
             "w /sys/kernel/mm/transparent_hugepage/enabled - - - - never\n")
FIRST = "{{ redis_nodes[0] }}"
ADMIN_DIR = "/etc/redis/platformc-admin"  # the cluster admin secret (redis_exporter's role reads it too)
ADMIN_SECRET = "{{ redis_admin_dir }}/secret"
ADDRESS = "ansible_facts.default_ipv4.address"
# redis-cli as platformc-admin, its password read from the admin secret file (`--askpass` reads it from standard
# input): sh opens the file, so the secret is on no command line and in no environment. The arguments after the
# file are redis-cli's. `$1`, `$@` and `$file` are sh's: the command module must not expand them itself
# (expand_argument_vars, on by default, would replace a `$name` that names a variable of the module's environment).
ADMIN_CLI = ["sh", "-c", 'file=$1; shift; exec redis-cli --askpass --user platformc-admin "$@" <"$file"',
             "platformc-redis-admin", ADMIN_SECRET]


def admin_cli(*args: str) -> dict:
    """The command module's arguments that run redis-cli as platformc-admin with `args`."""
    return {"argv": [*ADMIN_CLI, *args], "expand_argument_vars": False}


def _admin_secret() -> list:
    on_first = {"delegate_to": FIRST, "run_once": True}
    return [
        task("Create the directory of the cluster admin secret", "ansible.builtin.file",
             {"path": "{{ redis_admin_dir }}", "state": "directory", "owner": "root", "group": "root", "mode": "0700"}),
        task("Make the cluster admin secret once, on the first node", "ansible.builtin.command",
             {"argv": ["openssl", "rand", "-hex", "32", "-out", ADMIN_SECRET],
              "creates": ADMIN_SECRET}, register="redis_admin_created", **on_first),
        task("Read the cluster admin secret", "ansible.builtin.slurp", {"src": ADMIN_SECRET},
             register="redis_admin_secret", no_log=True, when="not ansible_check_mode or redis_admin_created is not changed",
             **on_first),
        # The restart handler's script logs in with it on each node (redis-cli --askpass, from the file): the same
        # content as openssl wrote on the first node, where this changes only the mode.
        copy("Keep the cluster admin secret root-only on every node", ADMIN_SECRET, mode="0600",
             content="{{ redis_admin_password }}\n", no_log=True, diff=False, when="redis_admin_secret is not skipped"),
        template("Write the cluster admin user", "redis-admin.conf.j2", "{{ redis_include_dir }}/admin.conf",
                 mode="0640", owner="redis", group="redis", no_log=True, diff=False, notify="Restart Redis",
                 when="redis_admin_secret is not skipped"),
    ]


def _cluster() -> list:
    """Primaries first (`--cluster create` with no replicas), then each replica under the primary the
    topology names, so replicas stay in the zones the spec's placement chose."""
    cli = ["-h", f"{{{{ hostvars[redis_nodes[0]].{ADDRESS} }}}}", "-p", "{{ redis_port }}"]
    on_first = {"delegate_to": FIRST, "run_once": True}  # where the admin secret was made: it is there first
    return [
        task("Read the cluster state from the first node", "ansible.builtin.command",
             admin_cli(*cli, "cluster", "info"), changed_when=False, register="redis_cluster_info", **on_first),
        task("Create the cluster from the primaries", "ansible.builtin.command", {
            # the admin secret's file is the one element templated on its own (a string in a Jinja list is not)
            "argv": expr(f"{ADMIN_CLI[:-1]!r}", "+ [redis_admin_dir ~ '/secret', '--cluster', 'create']",
                         "+ redis_primary_endpoints + ['--cluster-replicas', '0', '--cluster-yes']"),
            "expand_argument_vars": False},
             changed_when=True, when="'cluster_slots_assigned:0' in redis_cluster_info.stdout", **on_first),
        task("Read each primary's node id", "ansible.builtin.command",
             admin_cli("-h", f"{{{{ hostvars[redis_primary.name].{ADDRESS} }}}}", "-p", "{{ redis_port }}",
                       "cluster", "myid"),
             changed_when=False, register="redis_primary_ids", loop="{{ redis_primary_nodes }}",
             loop_control={"loop_var": "redis_primary", "label": "{{ redis_primary.name }}"}, **on_first),
        task("Read the nodes the cluster knows", "ansible.builtin.command", admin_cli(*cli, "cluster", "nodes"),
             changed_when=False, register="redis_cluster_nodes", **on_first),
        task("Attach each replica to the primary the topology names", "ansible.builtin.command", admin_cli(
            "--cluster", "add-node", f"{{{{ hostvars[redis_replica.name].{ADDRESS} }}}}:{{{{ redis_port }}}}",
            f"{{{{ hostvars[redis_nodes[0]].{ADDRESS} }}}}:{{{{ redis_port }}}}",
            "--cluster-slave", "--cluster-master-id", "{{ redis_node_ids[redis_replica.replica_of] }}"),
             changed_when=True, loop="{{ redis_replica_nodes }}",
             loop_control={"loop_var": "redis_replica", "label": "{{ redis_replica.name }}"},
             when=f"(hostvars[redis_replica.name].{ADDRESS} ~ ':' ~ redis_port ~ '@') not in redis_cluster_nodes.stdout",
             **on_first),
        *_failback(on_first),
    ]


def _failback(on_first: dict) -> list:
    """Put each primary back where the topology placed it. A primary that fails is replaced by its replica, in
    another zone, and rejoins as that replica's replica: after one zone's outage the zone holds no primary and
    another holds two, and losing that zone next takes a majority of the primaries (with three), so the cluster can
    no longer elect replacements and stops. A topology primary found serving as a replica with its link up is told
    CLUSTER FAILOVER: the coordinated kind, which waits for the replica to catch up before it takes the slots (writes
    to that shard pause for a moment, nothing is lost); one whose link is down, or that serves another shard's
    primary, is left to the cluster and the operator (RedisPrimaryDisplaced keeps alerting)."""
    def cli(host: str) -> list:
        return ["-h", f"{{{{ hostvars[{host}].{ADDRESS} }}}}", "-p", "{{ redis_port }}"]
    # ... and only under its own topology replica: one that replica migration moved under another shard's primary
    # would take that shard's slots and displace a second primary, and each run would swap them back
    displaced = "\n".join([
        "'role:slave' in redis_state.stdout and 'master_link_status:up' in redis_state.stdout",
        "and (redis_state.stdout_lines | map('trim') | select('in', redis_replica_nodes",
        "     | selectattr('replica_of', 'equalto', redis_state.redis_primary.name) | map(attribute='name')",
        f"     | map('extract', hostvars, {ADDRESS.split('.')!r}) | map('regex_replace', '^', 'master_host:') | list)",
        "     | list | length > 0)"])
    each = {"loop": "{{ redis_primary_states.results }}",
            "loop_control": {"loop_var": "redis_state", "label": "{{ redis_state.redis_primary.name }}"}}
    return [
        task("Read how each topology primary serves", "ansible.builtin.command",
             admin_cli(*cli("redis_primary.name"), "info", "replication"), changed_when=False,
             register="redis_primary_states", loop="{{ redis_primary_nodes }}",
             loop_control={"loop_var": "redis_primary", "label": "{{ redis_primary.name }}"}, **on_first),
        task("Give a primary that a failover displaced its slots back", "ansible.builtin.command",
             admin_cli(*cli("redis_state.redis_primary.name"), "cluster", "failover"), changed_when=True,
             when=displaced, **each, **on_first),
        # Redis gives a manual failover 5 s (CLUSTER_MF_TIMEOUT) and the election that follows twice the node
        # timeout: a minute is ample, and a node still a replica after it fails the run for someone to look at.
        task("Wait until each of them serves as a primary again", "ansible.builtin.command",
             admin_cli(*cli("redis_state.redis_primary.name"), "info", "replication"), changed_when=False,
             register="redis_failback", until="'role:master' in redis_failback.stdout", retries=60, delay=1,
             when=displaced, **each, **on_first),
    ]


def redis() -> Role:
    r = "redis"
    return Role(
        name=r,
        description="Redis Cluster nodes with the data tier's redis.conf and includes, then the cluster, formed once.",
        defaults={"redis_source_dir": SOURCE_DIR, "redis_version": "7.0", "redis_admin_dir": ADMIN_DIR,
                  "redis_restart_command": "/usr/local/sbin/platformc-redis-restart",
                  # how long a restarted node (and the rest of the cluster) may take to serve again: loading the
                  # dataset, a replica's full resync; past it the handler fails, and the next host is not restarted
                  "redis_restart_timeout": 300},
        vars={
            **services_ready_var(r, "redis_install"),
            # the data tier's description of the cluster: nodes in creation order, includes, ACL rules
            "redis_topology": "{{ lookup('ansible.builtin.file', redis_source_dir ~ '/redis-topology.json') | from_json }}",
            "redis_port": "{{ redis_topology.port }}",
            "redis_include_dir": "{{ redis_topology.config.include_dir }}",
            "redis_nodes": "{{ redis_topology.nodes | map(attribute='name') | list }}",
            "redis_primary_nodes": "{{ redis_topology.nodes | selectattr('role', 'equalto', 'primary') | list }}",
            "redis_replica_nodes": "{{ redis_topology.nodes | selectattr('role', 'equalto', 'replica') | list }}",
            "redis_primary_endpoints": expr(
                f"redis_primary_nodes | map(attribute='name') | map('extract', hostvars, {ADDRESS.split('.')!r})",
                "| map('regex_replace', '$', ':' ~ redis_port) | list"),
            "redis_node_ids": expr(
                "dict(redis_primary_ids.results | map(attribute='redis_primary') | map(attribute='name')",
                "| zip(redis_primary_ids.results | map(attribute='stdout')))"),
            "redis_admin_password": "{{ redis_admin_secret.content | b64decode | trim }}",
        },
        tasks={
            "main": [
                copy("Let Redis fork for snapshots", "/etc/sysctl.d/60-redis.conf", content=REDIS_SYSCTL,
                     notify="Apply the Redis kernel settings"),
                copy("Turn transparent huge pages off", "/etc/tmpfiles.d/redis-thp.conf", content=REDIS_THP,
                     notify="Turn transparent huge pages off now"),
                apt("Install Redis", ["redis-server", "redis-tools"], register="redis_install"),
                # redis-server comes from bookworm-security, which the common role's unattended upgrades install; its
                # postinst restarts the server, each host at its own random time (apt-daily-upgrade's delay): every
                # primary restarted that way was a forced failover, and a primary and its replica down together
                # stopped the whole cluster (cluster-require-full-coverage). Upgrades go one node at a time, by hand.
                task("Hold Redis so unattended upgrades never restart it", "ansible.builtin.dpkg_selections",
                     {"name": "{{ redis_package }}", "selection": "hold"}, loop=["redis-server", "redis-tools"],
                     loop_control={"loop_var": "redis_package"}),
                *installed_version_check("Read the installed package versions",
                                         "Check that the installed Redis is the version the spec names", "redis-server",
                                         "':' ~ redis_version ~ '[.]'",
                                         "the spec asks for Redis {{ redis_version }}, the distribution has "
                                         "{{ ansible_facts.packages['redis-server'][0].version }}"),
                task("Check that the password can be written into a Redis config file", "ansible.builtin.assert", {
                    "that": ["redis_secrets.values() | reject('match', '^[!-~]+$') | list | length == 0"],
                    "fail_msg": "a Redis password must be printable ASCII without spaces"}, no_log=True),
                task("Create the include directory", "ansible.builtin.file",
                     {"path": "{{ redis_include_dir }}", "state": "directory", "owner": "redis", "group": "redis",
                      "mode": "0750"}, when=when_ready(r)),
                # before anything notifies the handler that runs it
                copy("Install the script that restarts Redis and waits until the cluster serves again",
                     "{{ redis_restart_command }}", mode="0750", src="platformc-redis-restart.sh"),
                copy("Install the data tier's redis.conf", "{{ redis_topology.config.file }}", mode="0640",
                     owner="redis", group="redis", src=source(r, "redis.conf"), notify="Restart Redis"),
                template("Bind the host's private address", "redis-host.conf.j2", "{{ redis_include_dir }}/host.conf",
                         mode="0640", owner="redis", group="redis", notify="Restart Redis"),
                template("Write the services' users and the replicas' login", "redis-acl.conf.j2",
                         "{{ redis_include_dir }}/acl.conf", mode="0640", owner="redis", group="redis",
                         no_log=True, diff=False, notify="Restart Redis"),
                *_admin_secret(),
                service("Start Redis at boot", "redis-server", r),
                task("Run with the new settings before forming the cluster", "ansible.builtin.meta", "flush_handlers"),
                task("Form the cluster", "ansible.builtin.import_tasks", "cluster.yml", when="not ansible_check_mode"),
            ],
            "cluster": _cluster(),
        },
        handlers=[
            task("Apply the Redis kernel settings", "ansible.builtin.command", {"argv": ["sysctl", "--system"]},
                 changed_when=True, when=when_ready(r)),
            task("Turn transparent huge pages off now", "ansible.builtin.command",
                 {"argv": ["systemd-tmpfiles", "--create", "/etc/tmpfiles.d/redis-thp.conf"]},
                 changed_when=True, when=when_ready(r)),
            # One node at a time, and the restart and the wait until the cluster serves again in one task: Ansible
            # runs a handler task on every notified host before the next task, so a second handler that waited would
            # come after every node had been restarted (a primary went down while its replica was still resyncing).
            # Not in check mode: the command would not run anyway, and the admin secret it logs in with may not exist.
            # The script reads that secret from its root-only file on the node (--password-file): no secret in the
            # task's arguments or environment, so its output, the restart's diagnostics, is shown as it is.
            task("Restart Redis", "ansible.builtin.command", {"argv": [
                "{{ redis_restart_command }}", "--address", f"{{{{ {ADDRESS} }}}}", "--port", "{{ redis_port }}",
                "--password-file", ADMIN_SECRET, "--unit", "redis-server", "--timeout", "{{ redis_restart_timeout }}"]},
                 changed_when=True, throttle=1,
                 when=[when_ready(r), "not ansible_check_mode"]),
        ],
    )
