"""The tls role: each region's internal certificate authority, and a certificate for every server.

The data-tier files point PostgreSQL, PgBouncer and the replicas' `primary_conninfo` at
`server.crt`/`server.key`/`ca.crt` ("installed by Ansible from the internal CA"); Elasticsearch
uses the same for transport and HTTP. The CA lives on the region's bastion (the one host every
region has; `tls_ca_host` moves it), its key never leaves it. Each server makes its own key and a
CSR, the CA host signs it, and the certificate comes back: only public material travels, with
builtin modules only (openssl is on every host).

Callers include the role with `tls_dir`, `tls_owner` and `tls_group`, and give the handler that
restarts or reloads their service `listen: tls certificate changed`.
"""

from __future__ import annotations

from compiler.targets.ansible.role import Role, copy, task

CA = "{{ tls_ca_host }}"
TOPIC = "tls certificate changed"


def ran(register: str) -> str:
    """True unless `register` only *would* have run (a command in check mode): what it makes is not there."""
    return f"not ansible_check_mode or {register} is not changed"


def _ca() -> list:
    on_ca = {"delegate_to": CA, "run_once": True}
    return [
        task("Create the certificate authority's directories on the CA host", "ansible.builtin.file",
             {"path": "{{ tls_ca_dir }}/{{ tls_ca_subdir }}", "state": "directory", "owner": "root", "group": "root",
              "mode": "0700"}, loop=["", "requests", "issued"], loop_control={"loop_var": "tls_ca_subdir"}, **on_ca),
        task("Create the region's certificate authority", "ansible.builtin.command", {
            "argv": ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-days", "{{ tls_ca_days }}", "-subj", "/CN={{ tls_ca_name }}",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                     "-keyout", "{{ tls_ca_dir }}/ca.key", "-out", "{{ tls_ca_dir }}/ca.crt"],
            "creates": "{{ tls_ca_dir }}/ca.crt"}, register="tls_ca_created", **on_ca),
        task("Read the CA certificate", "ansible.builtin.slurp", {"src": "{{ tls_ca_dir }}/ca.crt"},
             register="tls_ca_cert", when=ran("tls_ca_created"), **on_ca),
    ]


def _server() -> list:
    key, csr, crt = "{{ tls_dir }}/server.key", "{{ tls_dir }}/server.csr", "{{ tls_dir }}/server.crt"
    request = "{{ tls_ca_dir }}/requests/{{ inventory_hostname }}.csr"
    issued = "{{ tls_ca_dir }}/issued/{{ inventory_hostname }}.crt"
    return [
        task("Create the certificate directory", "ansible.builtin.file",
             {"path": "{{ tls_dir }}", "state": "directory", "owner": "root", "group": "{{ tls_group }}",
              "mode": "0750"}),
        copy("Install the CA certificate", "{{ tls_dir }}/ca.crt", content="{{ tls_ca_cert.content | b64decode }}",
             when=["tls_install_ca | bool", "tls_ca_cert is not skipped"], notify=TOPIC),
        task("Create this server's key and certificate request", "ansible.builtin.command", {
            "argv": ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-subj", "/CN={{ tls_names[0] }}", "-addext", "subjectAltName={{ tls_san }}",
                     "-keyout", key, "-out", csr],
            "creates": key}, register="tls_key_created"),
        task("Restrict the key to the service's user", "ansible.builtin.file",
             {"path": key, "owner": "{{ tls_owner }}", "group": "{{ tls_group }}", "mode": "{{ tls_key_mode }}"},
             when=ran("tls_key_created")),
        task("Check for this server's certificate", "ansible.builtin.stat", {"path": crt}, register="tls_cert"),
        task("Read the certificate request", "ansible.builtin.slurp", {"src": csr}, register="tls_csr",
             when=["not tls_cert.stat.exists", ran("tls_key_created")]),
        copy("Hand the request to the CA host", request, mode="0600",
             content="{{ tls_csr.content | b64decode }}", delegate_to=CA, when="tls_csr is not skipped"),
        # One signature at a time: openssl keeps the serial number in a file on the CA host.
        task("Sign the request with the region's CA", "ansible.builtin.command", {
            "argv": ["openssl", "x509", "-req", "-in", request, "-CA", "{{ tls_ca_dir }}/ca.crt",
                     "-CAkey", "{{ tls_ca_dir }}/ca.key", "-CAcreateserial", "-sha256", "-days", "{{ tls_days }}",
                     "-copy_extensions", "copy", "-out", issued]},
             delegate_to=CA, throttle=1, changed_when=True, register="tls_signed", when="tls_csr is not skipped"),
        task("Read the signed certificate", "ansible.builtin.slurp", {"src": issued}, delegate_to=CA,
             register="tls_issued", when=["tls_signed is not skipped", ran("tls_signed")]),
        copy("Install this server's certificate", crt, owner="{{ tls_owner }}", group="{{ tls_group }}",
             content="{{ tls_issued.content | b64decode }}", when="tls_issued is not skipped", notify=TOPIC),
    ]


def tls() -> Role:
    return Role(
        name="tls",
        description="The region's internal CA (on the bastion) and a CA-signed key and certificate for each server.",
        defaults={
            "tls_ca_host": "{{ groups['bastion'][0] }}",
            "tls_ca_dir": "/etc/platformc-ca",
            "tls_ca_name": "platformc internal CA {{ platformc_region }}",
            "tls_ca_days": 3650,
            "tls_days": 825,
            "tls_dir": "/etc/ssl/platformc",
            "tls_owner": "root",
            "tls_group": "root",
            "tls_key_mode": "0600",
            "tls_install_ca": True,  # false when the caller trusts another CA (a managed service's)
            "tls_names": ["{{ ansible_host }}", "{{ inventory_hostname }}"],
        },
        vars={"tls_san": "{{ tls_names | map('regex_replace', '^', 'DNS:') | join(',') }}"},
        tasks={"main": [*_ca(), *_server()]},
        # The topic always has this listener, so the role also works for a caller with none.
        handlers=[task("Report the changed certificate", "ansible.builtin.debug",
                       {"msg": "{{ tls_dir }} has a new certificate; handlers that listen to '" + TOPIC + "' apply it"},
                       listen=TOPIC)],
    )
