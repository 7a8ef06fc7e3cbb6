"""The tls role: each region's internal certificate authority, and a certificate for every server.

The data-tier files point PostgreSQL, PgBouncer and the replicas' `primary_conninfo` at
`server.crt`/`server.key`/`ca.crt` ("installed by Ansible from the internal CA"); Elasticsearch
uses the same for transport and HTTP. The CA lives on the region's bastion (the one host every
region has; `tls_ca_host` moves it), its key never leaves it. Each server makes its own key and a
CSR, the CA host signs it, and the certificate comes back: only public material travels, with
builtin modules only (openssl is on every host).

Callers include the role with `tls_dir`, `tls_owner` and `tls_group` (and `tls_reload_units`, the
systemd units that use the certificate), and give the handler that restarts or reloads their service
`listen: tls certificate changed`.

Renewal: certificates live `tls_days` (365) and are renewed when fewer than `tls_renew_before_days`
(30) remain, two ways. Each playbook run re-signs an expiring certificate (same key, same request).
Between runs a systemd timer on the server (`platformc-tls-renew-<dir>.timer`, daily) does it itself:
`platformc-tls-renew` logs in to the CA host as `platformc-ca` with a key of its own, whose
authorized_keys entry is a forced command (`restrict,command="platformc-ca-sign <id> <days> <CA dir>"`): the CA
signs again the request Ansible stored for exactly that certificate and prints it. The server checks
the certificate is for its key, issued by the region's CA and valid past the threshold, installs it
and reloads `tls_reload_units`. The servers' SSH to the CA host is a connection of the wiring.
"""

from __future__ import annotations

from compiler.targets.ansible.role import Role, copy, expr, systemd_timer, task

CA = "{{ tls_ca_host }}"
TOPIC = "tls certificate changed"
SIGN_COMMAND = "/usr/local/sbin/platformc-ca-sign"
RENEW_COMMAND = "/usr/local/sbin/platformc-tls-renew"
CA_USER = "platformc-ca"
CA_USER_HOME = "/var/lib/platformc-ca"
RENEW_UNIT = """\
# Managed by Ansible (platformc tls role).
[Unit]
Description=Renew the TLS certificate in {dir} at the region's CA when fewer than {days} days remain
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart={command} {dir} {ca} {days}{units}
"""
RENEW_TIMER = """\
# Managed by Ansible (platformc tls role).
[Unit]
Description=Daily renewal check of the TLS certificate in {dir}

[Timer]
OnCalendar=daily
RandomizedDelaySec=4h
Persistent=true

[Install]
WantedBy=timers.target
"""


def ran(register: str) -> str:
    """True unless `register` only *would* have run (a command in check mode): what it makes is not there."""
    return f"not ansible_check_mode or {register} is not changed"


def _ca() -> list:
    on_ca = {"delegate_to": CA, "run_once": True}
    renewal = {"when": "tls_renewal | bool", **on_ca}
    manage = {"when": ["tls_renewal | bool", "tls_ca_manage_user | bool"], **on_ca}
    return [
        task("Create the renewal account's group on the CA host", "ansible.builtin.group",
             {"name": "{{ tls_ca_group }}", "system": True}, **manage),
        task("Create the renewal account on the CA host", "ansible.builtin.user",
             {"name": "{{ tls_ca_user }}", "group": "{{ tls_ca_group }}", "system": True, "home": "{{ tls_ca_user_home }}", "create_home": True,
              "shell": "/bin/sh", "password": "!", "comment": "platformc certificate renewal (forced command only)"},
             **manage),
        task("Install the CA host's signing command for renewals", "ansible.builtin.copy",
             {"src": "platformc-ca-sign", "dest": "{{ tls_sign_command }}", "owner": "root", "group": "root",
              "mode": "0755"}, **renewal),
        task("Create the certificate authority's directories on the CA host", "ansible.builtin.file",
             {"path": "{{ tls_ca_dir }}/{{ tls_ca_subdir }}", "state": "directory", "owner": "root",
              "group": "{{ tls_ca_group if tls_renewal | bool else 'root' }}", "mode": "0750"},
             loop=["", "requests", "issued"], loop_control={"loop_var": "tls_ca_subdir"}, **on_ca),
        task("Create the region's certificate authority", "ansible.builtin.command", {
            "argv": ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     "-days", "{{ tls_ca_days }}", "-subj", "/CN={{ tls_ca_name }}",
                     "-addext", "basicConstraints=critical,CA:TRUE",
                     "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                     "-keyout", "{{ tls_ca_dir }}/ca.key", "-out", "{{ tls_ca_dir }}/ca.crt"],
            "creates": "{{ tls_ca_dir }}/ca.crt"}, register="tls_ca_created", **on_ca),
        task("Let the renewal account read the CA key (it signs the stored requests only)", "ansible.builtin.file",
             {"path": "{{ tls_ca_dir }}/ca.key", "owner": "root",
              "group": "{{ tls_ca_group if tls_renewal | bool else 'root' }}", "mode": "0640"},
             when=ran("tls_ca_created"), **on_ca),
        task("Read the CA certificate", "ansible.builtin.slurp", {"src": "{{ tls_ca_dir }}/ca.crt"},
             register="tls_ca_cert", when=ran("tls_ca_created"), **on_ca),
    ]


def _server() -> list:
    key, csr, crt = "{{ tls_dir }}/server.key", "{{ tls_dir }}/server.csr", "{{ tls_dir }}/server.crt"
    request = "{{ tls_ca_dir }}/requests/{{ tls_cert_id }}.csr"
    issued = "{{ tls_ca_dir }}/issued/{{ tls_cert_id }}.crt"
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
        # names added since the key was made (PgBouncer's pgbouncer.<internal domain>): a new request with the same
        # key, signed below; the stored request is what the renewal re-signs, so it must carry them too
        task("Read the names of this server's certificate request", "ansible.builtin.command",
             {"argv": ["openssl", "req", "-in", csr, "-noout", "-text"]}, register="tls_csr_text",
             changed_when=False, check_mode=False, when=ran("tls_key_created")),
        task("Make a new request with the same key when the certificate's names changed", "ansible.builtin.command",
             {"argv": ["openssl", "req", "-new", "-key", key, "-subj", "/CN={{ tls_names[0] }}",
                       "-addext", "subjectAltName={{ tls_san }}", "-out", csr]},
             register="tls_csr_renamed", changed_when=True,
             when=["tls_csr_text is not skipped", "tls_csr_names != tls_names | map('regex_replace', '^', 'DNS:') | join(', ')"]),
        task("Check for this server's certificate", "ansible.builtin.stat", {"path": crt}, register="tls_cert"),
        task("Check whether the certificate is still valid for more than tls_renew_before_days", "ansible.builtin.command",
             {"argv": ["openssl", "x509", "-checkend", "{{ tls_renew_before_days | int * 86400 }}", "-noout", "-in", crt]},
             register="tls_fresh", changed_when=False, failed_when=False, when="tls_cert.stat.exists"),
        # a certificate another CA signed (the bastion rebuilt: a new CA, whose certificate every server then trusts)
        # would be refused by every peer that verifies it: re-issued like an expiring one
        task("Check that the certificate is signed by the region's CA", "ansible.builtin.command",
             {"argv": ["openssl", "verify", "-CAfile", "/dev/stdin", crt],
              "stdin": "{{ tls_ca_cert.content | b64decode }}"},
             register="tls_from_ca", changed_when=False, failed_when=False, check_mode=False,
             when=["tls_cert.stat.exists", "tls_ca_cert is not skipped"]),
        task("Read the certificate request", "ansible.builtin.slurp", {"src": csr}, register="tls_csr",
             when=["not tls_cert.stat.exists or tls_fresh.rc != 0 or tls_csr_renamed is changed"
                   " or (tls_from_ca.rc | default(0)) != 0", ran("tls_key_created")]),
        copy("Hand the request to the CA host", request, mode="0640",
             group="{{ tls_ca_group if tls_renewal | bool else 'root' }}",
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


def _renewal() -> list:
    """The server renews its certificate by itself (see the module docstring)."""
    on = "tls_renewal | bool"
    key = "{{ tls_dir }}/renew_ed25519"
    authorized = "{{ tls_ca_user_home }}/.ssh/authorized_keys"
    unit = "{{ tls_systemd_dir }}/{{ tls_unit }}"
    return [
        copy("Install the region's CA certificate the renewal checks against", "{{ tls_dir }}/issuer.crt",
             content="{{ tls_ca_cert.content | b64decode }}", when=[on, "tls_ca_cert is not skipped"]),
        task("Create this certificate's renewal key", "ansible.builtin.command",
             {"argv": ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "{{ tls_cert_id }}", "-f", key],
              "creates": key}, register="tls_renew_key_created", when=on),
        task("Read the renewal key's public half", "ansible.builtin.slurp", {"src": key + ".pub"},
             register="tls_renew_key", when=[on, ran("tls_renew_key_created")]),
        task("Create the renewal account's SSH directory on the CA host", "ansible.builtin.file",
             {"path": "{{ tls_ca_user_home }}/.ssh", "state": "directory", "owner": "{{ tls_ca_user }}",
              "group": "{{ tls_ca_group }}", "mode": "0700"}, delegate_to=CA, run_once=True, when=on),
        # one line per certificate, keyed by its id: the forced command signs that certificate's request only
        task("Let this key renew this certificate, and nothing else", "ansible.builtin.lineinfile",
             {"path": authorized, "create": True, "owner": "{{ tls_ca_user }}", "group": "{{ tls_ca_group }}",
              "mode": "0600", "regexp": " {{ tls_cert_id | regex_escape }}$",
              "line": "{{ tls_authorized_line }}"},
             delegate_to=CA, throttle=1, when=[on, "tls_renew_key is not skipped"]),
        task("Look for the CA host's SSH host key", "ansible.builtin.stat", {"path": "{{ tls_ca_host_key_file }}"},
             register="tls_ca_host_key_file_stat", delegate_to=CA, run_once=True, when=on),
        # a CA host without sshd's key is only possible before it is set up (check mode on a new host)
        task("Check that the CA host has an SSH host key the renewals can verify", "ansible.builtin.assert", {
            "that": ["tls_ca_host_key_file_stat.stat.exists"],
            "fail_msg": "{{ tls_ca_host }} has no {{ tls_ca_host_key_file }}: renewals could not verify the CA host"},
             when=[on, "not ansible_check_mode"], run_once=True),
        task("Read the CA host's SSH host key", "ansible.builtin.slurp", {"src": "{{ tls_ca_host_key_file }}"},
             register="tls_ca_host_key", delegate_to=CA, run_once=True,
             when=[on, "tls_ca_host_key_file_stat.stat.exists"]),
        copy("Trust the CA host's SSH host key for renewals", "{{ tls_dir }}/ca_known_hosts",
             content="{{ tls_ca_address }} {{ (tls_ca_host_key.content | b64decode).split()[:2] | join(' ') }}\n",
             when=[on, "tls_ca_host_key is not skipped"]),
        copy("Install the renewal command", "{{ tls_renew_command }}", mode="0755", src="platformc-tls-renew", when=on),
        *systemd_timer("renewal", unit, "{{ tls_unit }}", RENEW_UNIT.format(
            dir="{{ tls_dir }}", days="{{ tls_renew_before_days }}",
            command="{{ tls_renew_command }}", ca="{{ tls_ca_address }}",
            units="{{ ([''] + tls_reload_units) | join(' ') }}"), RENEW_TIMER.format(dir="{{ tls_dir }}"),
            "tls_renew", when=on, run_when=("tls_renewal_timer | bool",)),
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
            "tls_days": 365,  # renewed when fewer than tls_renew_before_days remain (the timer, or the next run)
            "tls_renew_before_days": 30,
            "tls_renewal": True,  # the daily timer and the CA host's renewal account
            "tls_renewal_timer": True,  # false: install the units, do not start them (no systemd)
            "tls_reload_units": [],  # the systemd units that read this certificate, reloaded after a renewal
            "tls_ca_user": CA_USER,
            "tls_ca_group": "{{ tls_ca_user }}",
            "tls_ca_manage_user": True,  # false: the account exists already (tests)
            "tls_ca_host_key_file": "/etc/ssh/ssh_host_ed25519_key.pub",
            "tls_ca_user_home": CA_USER_HOME,
            "tls_ca_address": "{{ hostvars[tls_ca_host].ansible_host | default(tls_ca_host) }}",
            "tls_sign_command": SIGN_COMMAND,
            "tls_renew_command": RENEW_COMMAND,
            "tls_systemd_dir": "/etc/systemd/system",
            "tls_dir": "/etc/ssl/platformc",
            "tls_owner": "root",
            "tls_group": "root",
            "tls_key_mode": "0600",
            "tls_install_ca": True,  # false when the caller trusts another CA (a managed service's)
            "tls_names": ["{{ ansible_host }}", "{{ inventory_hostname }}"],
        },
        vars={"tls_san": "{{ tls_names | map('regex_replace', '^', 'DNS:') | join(',') }}",
              # the request's names as `openssl req -text` prints them ("DNS:a, DNS:b")
              "tls_csr_names": "{{ tls_csr_text.stdout | regex_search('DNS:.*') | default('', true) | trim }}",
              # one certificate per (server, directory): a server may hold several (PostgreSQL, etcd, ...)
              "tls_dir_slug": "{{ tls_dir | regex_replace('[^A-Za-z0-9]+', '-') | regex_replace('^-|-$', '') }}",
              "tls_cert_id": "{{ inventory_hostname }}-{{ tls_dir_slug }}",
              "tls_unit": "platformc-tls-renew-{{ tls_dir_slug }}",
              # the CA host's authorized_keys line of this certificate's renewal key: its forced command only
              "tls_authorized_line": expr(
                  "'restrict,command=\"' ~ tls_sign_command ~ ' ' ~ tls_cert_id ~ ' ' ~ tls_days ~ ' ' ~ tls_ca_dir ~ '\" '",
                  "~ ((tls_renew_key.content | b64decode).split()[:2] | join(' ')) ~ ' ' ~ tls_cert_id")},
        tasks={"main": [*_ca(), *_server(), *_renewal()]},
        # The topic always has this listener, so the role also works for a caller with none.
        handlers=[task("Report the changed certificate", "ansible.builtin.debug",
                       {"msg": "{{ tls_dir }} has a new certificate; handlers that listen to '" + TOPIC + "' apply it"},
                       listen=TOPIC)],
    )
