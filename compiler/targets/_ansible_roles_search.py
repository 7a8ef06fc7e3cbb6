"""The elasticsearch role: Elastic's packages, heap and node settings, transport TLS.

The data-tier target emits no Elasticsearch file, so this role's own templates render the node
settings from the inventory (every value through `to_json`, which YAML reads verbatim).
"""

from __future__ import annotations

from compiler.targets._ansible_role import (Role, apt, copy, repository, service, services_ready_var, task,
                                            template)

ES_CONF = "/etc/elasticsearch"
FIRST_NODE = "{{ groups['elasticsearch'][0] }}"


def _transport_tls() -> list:
    """One key and self-signed certificate for the cluster, made on the first node and shared.

    openssl (on every host) instead of elasticsearch-certutil: PEM is text, so it travels through
    slurp/copy; the certificate names every node, so HTTP clients can verify it too.
    """
    r = "elasticsearch"
    return [
        task("Create the certificate directory", "ansible.builtin.file",
             {"path": f"{ES_CONF}/certs", "state": "directory", "owner": "root", "group": "elasticsearch",
              "mode": "0750"}),
        task("Create the cluster's transport key and certificate on the first node", "ansible.builtin.command", {
            "argv": ["openssl", "req", "-x509", "-newkey", "rsa:4096", "-sha256", "-nodes", "-days", "3650",
                     "-subj", "/CN={{ elasticsearch_cluster_name }}",
                     "-addext", "subjectAltName={{ elasticsearch_tls_names }}",
                     "-keyout", f"{ES_CONF}/certs/transport.key", "-out", f"{ES_CONF}/certs/transport.crt"],
            "creates": f"{ES_CONF}/certs/transport.crt"},
            run_once=True, delegate_to=FIRST_NODE, register="elasticsearch_transport_created"),
        task("Read the transport key and certificate from the first node", "ansible.builtin.slurp",
             {"src": f"{ES_CONF}/certs/{{{{ elasticsearch_tls_file }}}}"},
             run_once=True, delegate_to=FIRST_NODE, register="elasticsearch_tls_files",
             loop=["transport.key", "transport.crt"], loop_control={"loop_var": "elasticsearch_tls_file"},
             no_log=True, when="elasticsearch_transport_created is not skipped"),
        copy("Install the transport key and certificate on every node",
             f"{ES_CONF}/certs/{{{{ elasticsearch_tls_item.elasticsearch_tls_file }}}}", mode="0640", group="elasticsearch",
             content="{{ elasticsearch_tls_item.content | b64decode }}",
             loop="{{ elasticsearch_tls_files.results }}", loop_control={"loop_var": "elasticsearch_tls_item"},
             no_log=True, diff=False, notify="Restart Elasticsearch",
             when="elasticsearch_transport_created is not skipped"),
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
        },
        vars={**services_ready_var(r, "elasticsearch_install"),
              "elasticsearch_tls_names": "{{ elasticsearch_seed_hosts | map('regex_replace', '^', 'DNS:') | join(',') }}"},
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
            *_transport_tls(),
            template("Write the node settings", "elasticsearch.yml.j2", f"{ES_CONF}/elasticsearch.yml",
                     mode="0660", group="elasticsearch", notify="Restart Elasticsearch"),
            service("Start Elasticsearch at boot", "elasticsearch", r),
        ]},
        # One node at a time, so the cluster keeps a quorum while settings roll out.
        handlers=[service("Restart Elasticsearch", "elasticsearch", r, state="restarted", enabled=None, throttle=1)],
    )
