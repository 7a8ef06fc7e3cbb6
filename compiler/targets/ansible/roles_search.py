"""The elasticsearch role: Elastic's packages, heap and node settings, TLS from the region's CA.

The data-tier target emits no Elasticsearch file, so this role's own templates render the node
settings from the inventory (every value through `to_json`, which YAML reads verbatim).
"""

from __future__ import annotations

from compiler.ir.names import ELASTICSEARCH_HTTP_PORT, ELASTICSEARCH_TRANSPORT_PORT
from compiler.targets.ansible.role import (Role, apt, repository, service, services_ready_var, task, template,
                                            when_ready)
from compiler.targets.ansible.roles_data import include_tls
from compiler.targets.ansible.roles_tls import TOPIC

ES_CONF = "/etc/elasticsearch"


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
        },
        vars=services_ready_var(r, "elasticsearch_install"),
        tasks={"main": [
            apt("Install the APT repository tooling", ["python3-debian"]),
            repository("Add Elastic's APT repository", "elastic",
                       "https://artifacts.elastic.co/packages/{{ elasticsearch_major_version }}.x/apt", "stable",
                       "https://artifacts.elastic.co/GPG-KEY-elasticsearch"),
            apt("Install the Elasticsearch version the spec names", "elasticsearch={{ elasticsearch_version }}.*",
                register="elasticsearch_install"),
            task("Hold Elasticsearch so unattended upgrades never change its version", "ansible.builtin.dpkg_selections",
                 {"name": "elasticsearch", "selection": "hold"}),
            template("Size the JVM heap", "heap.options.j2", f"{ES_CONF}/jvm.options.d/heap.options",
                     mode="0640", group="elasticsearch", notify="Restart Elasticsearch"),
            # transport and HTTP: every node presents its own certificate from the region's CA
            include_tls(f"{ES_CONF}/certs", "root", "elasticsearch", key_mode="0640"),
            *_keystore_cleanup(),
            template("Write the node settings", "elasticsearch.yml.j2", f"{ES_CONF}/elasticsearch.yml",
                     mode="0660", group="elasticsearch", notify="Restart Elasticsearch"),
            service("Start Elasticsearch at boot", "elasticsearch", r),
        ]},
        # One node at a time, so the cluster keeps a quorum while settings roll out.
        handlers=[service("Restart Elasticsearch", "elasticsearch", r, state="restarted", enabled=None, throttle=1,
                         listen=TOPIC)],
    )
