"""The elasticsearch role: Elastic's packages, heap and node settings, TLS from the region's CA.

The data-tier target emits no Elasticsearch file, so this role's own templates render the node
settings from the inventory (every value through `to_json`, which YAML reads verbatim).

A restart (the "Restart Elasticsearch" handler, one host at a time) runs the script the role installs,
/usr/local/sbin/platformc-elasticsearch-restart: Elastic's rolling restart for one node (replica allocation off, flush,
restart, wait until the node has rejoined, allocation back to its default), then a bounded wait until the cluster is
green with every node in it before the handler moves to the next host; it refuses to restart a node while the cluster
is not (see the script). It logs in as `elastic`, with the password the role keeps on the first node, which it copies
root-only (0600) to each node for the script to read (--password-file): the password is on no command line and in
no task's `environment:` (which Ansible puts in front of the module's command line: in `ps`, in sudo's log of the
command with become, in `-vvv` output). Before the role has made that password (the first run, before the cluster has
formed) the copy is empty, and the script waits only until the node answers again.
"""

from __future__ import annotations

from compiler.ir.names import ELASTICSEARCH_HTTP_PORT, ELASTICSEARCH_TRANSPORT_PORT
from compiler.targets.ansible.role import (Role, apt, copy, expr, repository, service, services_ready_var, task, template,
                                            when_ready)
from compiler.targets.ansible.roles_data import include_tls
from compiler.targets.ansible.roles_tls import TOPIC

ES_CONF = "/etc/elasticsearch"
# The data directory (path.data in elasticsearch.yml.j2) and the owner and mode the package gives it. The data_disk role
# mounts the data volume there before the package exists, so on a host's first run the volume's root stays root's:
# dpkg leaves a directory that already exists as it is (unlike PostgreSQL's and Redis's postinst, Elastic's does not
# chown it), and Elasticsearch, which runs as `elasticsearch`, could not write its data.
ES_DATA, ES_DATA_MODE = "/var/lib/elasticsearch", "2750"
ADMIN_DIR = f"{ES_CONF}/platformc-admin"  # the `elastic` superuser's password, made once on the first node
RESTART_PASSWORD = "{{ elasticsearch_admin_dir }}/restart-password"  # its copy on each node, for the restart script

# Least privilege of each in-cluster client's Elasticsearch user (the index patterns are compiler/ir/names.py's
# elasticsearch_client_indices). Fluent Bit writes its daily log indices, and its user also runs the monitoring
# target's retention job (PUT _ilm/policy, PUT _index_template). Jaeger writes and reads its span and service
# indices and its index cleaner deletes old ones; Jaeger creates its own index templates at start-up
# (create_mappings, on by default), which needs manage_index_templates.
CLIENT_PRIVILEGES = {
    "fluent-bit": {"cluster": ["monitor", "manage_ilm", "manage_index_templates"],
                   "indices": ["create_index", "create_doc", "write", "view_index_metadata", "manage_ilm"]},
    "jaeger": {"cluster": ["monitor", "manage_index_templates"],
               "indices": ["create_index", "create_doc", "write", "read", "view_index_metadata", "delete_index"]},
}


# Written by the package's security auto-configuration for its .p12 stores; with PEM files
# configured instead, Elasticsearch refuses to start while these remain in the keystore.
AUTOCONFIG_SECRETS = ["xpack.security.transport.ssl.keystore.secure_password",
                      "xpack.security.transport.ssl.truststore.secure_password",
                      "xpack.security.http.ssl.keystore.secure_password"]


def _keystore_cleanup() -> list:
    r = "elasticsearch"
    keystore = "/usr/share/elasticsearch/bin/elasticsearch-keystore"
    return [
        task("List the settings in the Elasticsearch keystore", "ansible.builtin.command",
             {"argv": [keystore, "list"]}, changed_when=False, check_mode=False,
             register="elasticsearch_keystore", when=when_ready(r)),
        task("Remove the auto-configured keystore passwords (PEM files replace the .p12 stores)",
             "ansible.builtin.command", {"argv": [keystore, "remove", "{{ elasticsearch_keystore_entry }}"]},
             changed_when=True, loop=AUTOCONFIG_SECRETS, loop_control={"loop_var": "elasticsearch_keystore_entry"},
             when=[when_ready(r), "elasticsearch_keystore_entry in elasticsearch_keystore.stdout_lines"],
             notify="Restart Elasticsearch"),
    ]


def _api(name: str, path: str, method: str = "GET", auth: tuple[str, str] = ("elastic", "{{ elasticsearch_elastic_password }}"),
         status: list | None = None, **kw) -> dict:
    """A request to the first node's HTTP API (on the first node, verified against the internal CA)."""
    args = {"url": "https://{{ elasticsearch_api_address }}" + path, "method": method, "url_username": auth[0],
            "url_password": auth[1], "force_basic_auth": True, "ca_path": "{{ elasticsearch_ca_file }}",
            "status_code": status or [200]}
    args.update({k: kw.pop(k) for k in ("body", "body_format") if k in kw})
    on_first = {"delegate_to": "{{ elasticsearch_first_node }}", "run_once": True}
    return task(name, "ansible.builtin.uri", args, no_log=True, **on_first, **kw)


def _clients() -> list:
    """One role and one user per in-cluster client and per service that uses search, through the security API as
    `elastic`. The services' entries come from the IR (compiler/ir/data_access.py ElasticsearchUser: the user named
    after the service, its role on `<service>_*`), the shippers' from CLIENT_PRIVILEGES; the tasks treat both alike.

    The `elastic` password is made once on the first node (elasticsearch-reset-password, which authenticates
    through a temporary file-realm user of that node) and kept there, root-only. A role is PUT when its
    `platformc_digest` metadata differs from the wanted definition's; a user when it is missing, has other
    roles, or its password from the secret store no longer authenticates.

    The password is made even when there is no client: the restart handler logs in with it (without it, a restart
    could not wait for the cluster to be green again)."""
    on_first = {"delegate_to": "{{ elasticsearch_first_node }}", "run_once": True}
    real = "not ansible_check_mode"
    live = [real, "elasticsearch_clients | length > 0"]
    each = {"loop": "{{ elasticsearch_clients }}",
            "loop_control": {"loop_var": "elasticsearch_client", "index_var": "elasticsearch_client_index",
                             "label": "{{ elasticsearch_client.name }}"}}
    this = "elasticsearch_client_index"
    return [
        task("Run the notified handlers before creating the clients' users", "ansible.builtin.meta", "flush_handlers"),
        task("Create the directory of the elastic password on the first node", "ansible.builtin.file",
             {"path": "{{ elasticsearch_admin_dir }}", "state": "directory", "owner": "root", "group": "root",
              "mode": "0700"}, when=real, **on_first),
        task("Look for the elastic password on the first node", "ansible.builtin.stat",
             {"path": "{{ elasticsearch_admin_dir }}/elastic"}, register="elasticsearch_elastic_file",
             when=real, **on_first),
        # retried: right after a (re)start the node may not answer yet
        task("Set a generated elastic password once", "ansible.builtin.command",
             {"argv": ["/usr/share/elasticsearch/bin/elasticsearch-reset-password", "--username", "elastic",
                       "--auto", "--batch", "--silent", "--url", "https://{{ elasticsearch_api_address }}"]},
             register="elasticsearch_elastic_reset", changed_when=True, retries=12, delay=10,
             until="elasticsearch_elastic_reset.rc == 0", no_log=True,
             when=[real, "not elasticsearch_elastic_file.stat.exists"], **on_first),
        copy("Keep the elastic password on the first node", "{{ elasticsearch_admin_dir }}/elastic", mode="0600",
             content="{{ elasticsearch_elastic_reset.stdout | trim }}", no_log=True, diff=False,
             when=[real, "elasticsearch_elastic_reset is changed"], **on_first),
        task("Read the elastic password", "ansible.builtin.slurp", {"src": "{{ elasticsearch_admin_dir }}/elastic"},
             register="elasticsearch_elastic_secret", no_log=True, when=live, **on_first),
        _api("Wait until the cluster serves requests", "/_cluster/health?wait_for_status=yellow&timeout=10s",
             register="elasticsearch_health", retries=30, delay=10, until="elasticsearch_health.status == 200",
             when=live),
        _api("Read each client's role", "/_security/role/{{ elasticsearch_client.role }}", status=[200, 404],
             register="elasticsearch_roles_now", when=live, **each),
        _api("Put each client's role where it differs", "/_security/role/{{ elasticsearch_client.role }}", "PUT",
             body="{{ elasticsearch_client.definition }}", body_format="json", changed_when=True,
             vars={"elasticsearch_role_had": expr(f"elasticsearch_roles_now.results[{this}].json[elasticsearch_client.role]",
                                                   ".metadata.platformc_digest | default('')")},
             when=[*live, "elasticsearch_role_had != elasticsearch_client.definition.metadata.platformc_digest"],
             **each),
        _api("Read each client's user", "/_security/user/{{ elasticsearch_client.username | urlencode }}",
             status=[200, 404], register="elasticsearch_users_now", when=live, **each),
        _api("Check each client's password", "/_security/_authenticate",
             auth=("{{ elasticsearch_client.username }}", "{{ elasticsearch_client.password }}"), status=[200, 401],
             register="elasticsearch_logins_now", when=live, **each),
        _api("Put each client's user where it is missing, has other roles or another password",
             "/_security/user/{{ elasticsearch_client.username | urlencode }}", "PUT",
             body={"password": "{{ elasticsearch_client.password }}", "roles": ["{{ elasticsearch_client.role }}"],
                   "full_name": "{{ elasticsearch_client.name }} (platformc)"}, body_format="json",
             changed_when=True,
             vars={"elasticsearch_user_roles": expr(f"elasticsearch_users_now.results[{this}]",
                                                     ".json[elasticsearch_client.username].roles | default([])"),
                   "elasticsearch_login_status": f"{{{{ elasticsearch_logins_now.results[{this}].status }}}}"},
             when=[*live, "elasticsearch_login_status | int != 200 or elasticsearch_user_roles != [elasticsearch_client.role]"],
             **each),
    ]


def _restart_login() -> list:
    """The elastic password for the restart handler, read before anything notifies it (the handlers run at the start
    of clients.yml, before its own read) and kept root-only on each node, where the script reads it; on the first run
    there is none yet (the copy is empty), and the script then waits only until the node answers."""
    on_first = {"delegate_to": "{{ elasticsearch_first_node }}", "run_once": True}
    return [
        task("Create the directory of the elastic password", "ansible.builtin.file",
             {"path": "{{ elasticsearch_admin_dir }}", "state": "directory", "owner": "root", "group": "root",
              "mode": "0700"}),
        task("Look for the elastic password the restart handler logs in with", "ansible.builtin.stat",
             {"path": "{{ elasticsearch_admin_dir }}/elastic"}, register="elasticsearch_restart_login_file",
             **on_first),
        task("Read the elastic password the restart handler logs in with", "ansible.builtin.slurp",
             {"src": "{{ elasticsearch_admin_dir }}/elastic"}, register="elasticsearch_restart_login", no_log=True,
             when="elasticsearch_restart_login_file.stat.exists", **on_first),
        copy("Give the restart handler the elastic password on each node", RESTART_PASSWORD, mode="0600",
             content="{{ elasticsearch_restart_password }}", no_log=True, diff=False),
    ]


def _restart_handler() -> dict:
    """One node at a time, and the restart and the wait until the cluster is green again in one task: Ansible runs a
    handler task on every notified host before the next task, so a second handler that waited would come after every
    node had been restarted. Not in check mode: the command would not run anyway. The script reads the password from
    its root-only copy on the node (--password-file): the task's arguments and environment hold no secret, so its
    output, the restart's diagnostics, is shown as it is."""
    r = "elasticsearch"
    return task("Restart Elasticsearch", "ansible.builtin.command", {"argv": [
        "{{ elasticsearch_restart_command }}", "--node", "{{ inventory_hostname }}", "--address", "{{ ansible_host }}",
        "--port", "{{ elasticsearch_http_port }}", "--ca", "{{ elasticsearch_ca_file }}",
        "--peers", "{{ elasticsearch_restart_peers }}", "--password-file", RESTART_PASSWORD, "--unit", "elasticsearch",
        "--timeout", "{{ elasticsearch_restart_timeout }}"]},
        changed_when=True, throttle=1, when=[when_ready(r), "not ansible_check_mode"], listen=TOPIC)


def elasticsearch() -> Role:
    r = "elasticsearch"
    return Role(
        name=r,
        description="Elasticsearch from Elastic's APT repository: version pinned and held, heap, zone-aware node settings, TLS.",
        defaults={
            "elasticsearch_version": "8.15",
            "elasticsearch_major_version": 8,
            "elasticsearch_cluster_name": "elasticsearch",
            "elasticsearch_heap_mb": 1024,
            "elasticsearch_seed_hosts": [],
            "elasticsearch_initial_master_nodes": [],
            "elasticsearch_http_port": ELASTICSEARCH_HTTP_PORT,
            "elasticsearch_transport_port": ELASTICSEARCH_TRANSPORT_PORT,
            "elasticsearch_first_node": "{{ groups['elasticsearch'][0] }}",
            "elasticsearch_admin_dir": ADMIN_DIR,
            "elasticsearch_ca_file": f"{ES_CONF}/certs/ca.crt",  # the region's CA, as include_tls installs it
            "elasticsearch_restart_command": "/usr/local/sbin/platformc-elasticsearch-restart",
            # how long a restarted node may take to rejoin and the cluster to be green again (the JVM's start, the
            # node's shards recovering); past it the handler fails, and the next host is not restarted
            "elasticsearch_restart_timeout": 600,
            # [{name, role, definition, username, password}]: the inventory's, from the spec's clients and the
            # services that use search (each role's definition carries metadata.platformc_digest)
            "elasticsearch_clients": [],
        },
        vars={**services_ready_var(r, "elasticsearch_install"),
              # host:port only: every task spells out https:// itself, so each call is visibly TLS
              "elasticsearch_api_address": "{{ hostvars[elasticsearch_first_node].ansible_host }}:{{ elasticsearch_http_port }}",
              "elasticsearch_elastic_password": "{{ elasticsearch_elastic_secret.content | b64decode | trim }}",
              # '' before the role has made the password: the restart script then waits only for its node
              "elasticsearch_restart_password":
                  "{{ elasticsearch_restart_login.content | default('') | b64decode | trim }}",
              # the inventory's other nodes as NAME=HOST (node.name, and the DNS name their certificate carries)
              "elasticsearch_restart_peers": expr(
                  "groups['elasticsearch'] | reject('equalto', inventory_hostname) | map('regex_replace', '$', '=')",
                  "| zip(groups['elasticsearch'] | reject('equalto', inventory_hostname)",
                  "      | map('extract', hostvars, 'ansible_host')) | map('join') | join(',')")},
        tasks={"main": [
            apt("Install the APT repository tooling and curl (the restart script's HTTP client)",
                ["python3-debian", "curl"]),
            repository("Add Elastic's APT repository", "elastic",
                       "https://artifacts.elastic.co/packages/{{ elasticsearch_major_version }}.x/apt", "stable",
                       "https://artifacts.elastic.co/GPG-KEY-elasticsearch"),
            apt("Install the Elasticsearch version the spec names", "elasticsearch={{ elasticsearch_version }}.*",
                register="elasticsearch_install"),
            task("Hold Elasticsearch so unattended upgrades never change its version", "ansible.builtin.dpkg_selections",
                 {"name": "elasticsearch", "selection": "hold"}),
            # before anything notifies the handler that runs it
            copy("Install the script that restarts a node and waits until the cluster is green again",
                 "{{ elasticsearch_restart_command }}", mode="0750", src="platformc-elasticsearch-restart.sh"),
            *_restart_login(),
            task("Give the data volume's root to Elasticsearch (mounted before the package made its user)",
                 "ansible.builtin.file", {"path": ES_DATA, "state": "directory", "owner": "elasticsearch",
                                          "group": "elasticsearch", "mode": ES_DATA_MODE}, when=when_ready(r)),
            template("Size the JVM heap", "heap.options.j2", f"{ES_CONF}/jvm.options.d/heap.options",
                     mode="0640", group="elasticsearch", notify="Restart Elasticsearch"),
            # transport and HTTP: every node presents its own certificate from the region's CA
            include_tls(f"{ES_CONF}/certs", "root", "elasticsearch", key_mode="0640"),
            *_keystore_cleanup(),
            template("Write the node settings", "elasticsearch.yml.j2", f"{ES_CONF}/elasticsearch.yml",
                     mode="0660", group="elasticsearch", notify="Restart Elasticsearch"),
            service("Start Elasticsearch at boot", "elasticsearch", r),
            task("Create the in-cluster clients' roles and users", "ansible.builtin.include_tasks", "clients.yml"),
        ],
            "clients": _clients()},
        handlers=[_restart_handler()],
    )
