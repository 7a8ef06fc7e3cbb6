"""The pgbouncer role's Azure step: Kong's serving certificate for the Application Gateway, from the region's CA.

Application Gateway v2 verifies Kong's certificate against a trusted root certificate installed on the gateway
(compiler/ir/edge.py, kong_proxy_tls). The region's internal CA is that root: right after the tls role has made sure
the CA exists (it does so on the CA host, the first bastion), these tasks, once per run and only on Azure:

- make Kong's key and request on the CA host (in KONG_DIR under the CA's directory, root only: Kong runs in the
  cluster, so no server of Ansible's holds its key) for the names the gateway checks (every host it forwards), and
  have the CA sign it when there is no certificate yet, it expires within the renewal window, another CA signed it or
  its names changed (the same rules as the tls role's);
- write certificate and key to the store entry compiler/ir/data_access.py's kong_proxy_tls_ref names (fields tls_crt,
  tls_key, the store of the region's published CA), when its value differs; the External Secrets Operator delivers
  them into Kong's Secret (helm target), which Kong's pods mount on their TLS listener;
- write the CA certificate (base64 of the PEM file) to the gateway's certificate vault as the secret the load_balancer
  module installs as the gateway's trusted root certificate (key_vault_secret_id), when it differs. The vault admits
  `management_cidrs` only, and the controller writes with its `az` login (Key Vault Secrets Officer there: Terraform
  grants it to the identity that applies it).

Kong reads its certificate at start: a renewed one (each run re-issues it within pgbouncer_kong_tls_renew_before_days)
reaches Kong's pods at their next restart, within ESO's refresh interval of the store write. Check mode never touches
the CA host's files nor the stores. The inventory's pgbouncer group_vars set pgbouncer_kong_tls_* (Azure regions).
"""

from __future__ import annotations

from compiler.targets.ansible.role import expr, task
from compiler.targets.ansible.roles_tls import tls

KONG_DIR = "kong-proxy"  # under the CA's directory on the CA host
_TLS = tls().defaults
CA_DIR = "{{ pgbouncer_kong_tls_ca_dir }}"
DIR = CA_DIR + "/" + KONG_DIR
KEY, CSR, CRT = DIR + "/tls.key", DIR + "/tls.csr", DIR + "/tls.crt"
STORE = "pgbouncer_kong_tls_store"
CRT_PEM = "(pgbouncer_kong_tls_crt.content | b64decode)"
KEY_PEM = "(pgbouncer_kong_tls_key.content | b64decode)"

DEFAULTS = {
    "pgbouncer_kong_tls_publish": False,
    "pgbouncer_kong_tls_names": [],  # the certificate's names (the first is its CN): set by the inventory
    # scheme (vault | aws-sm | gcp-sm | azure-kv), entry, crt_field, key_field; host and kv2 (vault), region (aws-sm),
    # project (gcp-sm), vault (azure-kv): set by the inventory
    STORE: {},
    "pgbouncer_kong_tls_trust": {},  # vault, name: the gateway's certificate vault and the trusted root's secret
    # the tls role's CA (its defaults tls_ca_host, tls_ca_dir, tls_days, tls_renew_before_days)
    "pgbouncer_kong_tls_ca_host": _TLS["tls_ca_host"],
    "pgbouncer_kong_tls_ca_dir": _TLS["tls_ca_dir"],
    "pgbouncer_kong_tls_days": _TLS["tls_days"],
    "pgbouncer_kong_tls_renew_before_days": _TLS["tls_renew_before_days"],
}
VARS = {
    "pgbouncer_kong_tls_san": "{{ pgbouncer_kong_tls_names | map('regex_replace', '^', 'DNS:') | join(',') }}",
    # the request's names as `openssl req -text` prints them ("DNS:a, DNS:b")
    "pgbouncer_kong_tls_csr_names": expr("pgbouncer_kong_tls_csr_text.stdout | regex_search('DNS:.*') | default('', true)",
                                         "| trim"),
    # the entry's value: one JSON object, the certificate's and the key's fields
    "pgbouncer_kong_tls_want": expr("{pgbouncer_kong_tls_store.crt_field: " + CRT_PEM + ",",
                                    "pgbouncer_kong_tls_store.key_field: " + KEY_PEM + "}"),
    "pgbouncer_kong_tls_vault_body": expr(
        "{'data': pgbouncer_kong_tls_want} if pgbouncer_kong_tls_store.kv2 | bool else pgbouncer_kong_tls_want"),
    "pgbouncer_kong_tls_vault_value": expr(
        "(pgbouncer_kong_tls_vault.json.data.data if pgbouncer_kong_tls_store.kv2 | bool",
        "else pgbouncer_kong_tls_vault.json.data) if pgbouncer_kong_tls_vault.status == 200 else {}"),
}
ON = ["pgbouncer_kong_tls_publish | bool", "not ansible_check_mode"]


def _ca(name: str, module: str, args: dict, when: list | None = None, **kw) -> dict:
    """A task on the CA host, once."""
    return task(name, module, args, delegate_to="{{ pgbouncer_kong_tls_ca_host }}", run_once=True,
                when=ON + (when or []), **kw)


def _local(name: str, module: str, args: dict, when: list, **kw) -> dict:
    """A task on the controller (the stores are written with its credentials), once; secret material: no_log."""
    return task(name, module, args, delegate_to="localhost", become=False, run_once=True, no_log=True,
                when=ON + when, **kw)


def _cli(name: str, scheme: str, argv: list, register: str | None = None, read=False, stdin: str | None = None,
         when: tuple[str, ...] = ()) -> dict:
    args: dict = {"argv": argv}
    if stdin is not None:
        args["stdin"] = stdin
    kw = {"changed_when": False, "failed_when": False, "check_mode": False} if read else {"changed_when": True}
    return _local(name, "ansible.builtin.command", args, [f"{STORE}.scheme == '{scheme}'", *when],
                  register=register, **kw)


def _differs(var: str) -> str:
    """The entry is missing, unreadable or holds another certificate or key."""
    return f"{var}.rc != 0 or ({var}.stdout | from_json) != pgbouncer_kong_tls_want"


def issue_tasks() -> list[dict]:
    """Kong's key, request and CA-signed certificate on the CA host."""
    subject = ["-subj", "/CN={{ pgbouncer_kong_tls_names[0] }}",
               "-addext", "subjectAltName={{ pgbouncer_kong_tls_san }}"]
    return [
        _ca("Create the directory of Kong's certificate on the CA host", "ansible.builtin.file",
            {"path": DIR, "state": "directory", "owner": "root", "group": "root", "mode": "0700"}),
        _ca("Create Kong's key and certificate request", "ansible.builtin.command", {
            "argv": ["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                     *subject, "-keyout", KEY, "-out", CSR], "creates": KEY}),
        _ca("Read the names of Kong's certificate request", "ansible.builtin.command",
            {"argv": ["openssl", "req", "-in", CSR, "-noout", "-text"]}, register="pgbouncer_kong_tls_csr_text",
            changed_when=False),
        # hosts added since the key was made: a new request with the same key, signed below
        _ca("Make a new request with the same key when the certificate's names changed", "ansible.builtin.command",
            {"argv": ["openssl", "req", "-new", "-key", KEY, *subject, "-out", CSR]},
            ["pgbouncer_kong_tls_csr_names"
             " != pgbouncer_kong_tls_names | map('regex_replace', '^', 'DNS:') | join(', ')"],
            register="pgbouncer_kong_tls_renamed", changed_when=True),
        _ca("Check whether Kong's certificate is still valid for more than the renewal window",
            "ansible.builtin.command",
            {"argv": ["openssl", "x509", "-checkend", "{{ pgbouncer_kong_tls_renew_before_days | int * 86400 }}",
                      "-noout", "-in", CRT]}, register="pgbouncer_kong_tls_fresh", changed_when=False,
            failed_when=False),
        # a certificate another CA signed (the bastion rebuilt: a new CA) fails the gateway's check: re-issued
        _ca("Check that Kong's certificate is signed by the region's CA", "ansible.builtin.command",
            {"argv": ["openssl", "verify", "-CAfile", CA_DIR + "/ca.crt", CRT]}, register="pgbouncer_kong_tls_from_ca",
            changed_when=False, failed_when=False),
        _ca("Sign Kong's request with the region's CA", "ansible.builtin.command", {
            "argv": ["openssl", "x509", "-req", "-in", CSR, "-CA", CA_DIR + "/ca.crt", "-CAkey", CA_DIR + "/ca.key",
                     "-CAcreateserial", "-sha256", "-days", "{{ pgbouncer_kong_tls_days }}", "-copy_extensions", "copy",
                     "-out", CRT]},
            ["pgbouncer_kong_tls_fresh.rc != 0 or pgbouncer_kong_tls_from_ca.rc != 0"
             " or pgbouncer_kong_tls_renamed is changed"], changed_when=True),
        _ca("Read Kong's certificate", "ansible.builtin.slurp", {"src": CRT}, register="pgbouncer_kong_tls_crt"),
        _ca("Read Kong's key", "ansible.builtin.slurp", {"src": KEY}, register="pgbouncer_kong_tls_key", no_log=True),
    ]


def publish_tasks() -> list[dict]:
    """Certificate and key to the store entry ESO reads; the CA certificate to the gateway's certificate vault."""
    vault_url = "https://{{ pgbouncer_kong_tls_store.host }}/v1/{{ pgbouncer_kong_tls_store.entry }}"
    token = {"X-Vault-Token": "{{ lookup('ansible.builtin.env', 'VAULT_TOKEN') }}"}
    entry = "{{ pgbouncer_kong_tls_store.entry }}"
    trust = ["pgbouncer_kong_tls_trust.vault | default('') | length > 0"]
    return [
        _local("Read Kong's published certificate (Vault)", "ansible.builtin.uri",
               {"url": vault_url, "method": "GET", "headers": token, "status_code": [200, 404]},
               [f"{STORE}.scheme == 'vault'"], register="pgbouncer_kong_tls_vault", check_mode=False),
        _local("Publish Kong's certificate and key (Vault)", "ansible.builtin.uri",
               {"url": vault_url, "method": "POST", "headers": token, "body_format": "json",
                "body": "{{ pgbouncer_kong_tls_vault_body }}", "status_code": [200, 204]},
               [f"{STORE}.scheme == 'vault'", "pgbouncer_kong_tls_vault_value != pgbouncer_kong_tls_want"],
               changed_when=True),
        _cli("Read Kong's published certificate (AWS Secrets Manager)", "aws-sm",
             ["aws", "secretsmanager", "get-secret-value", "--region", "{{ pgbouncer_kong_tls_store.region }}",
              "--secret-id", entry, "--query", "SecretString", "--output", "text"],
             register="pgbouncer_kong_tls_aws", read=True),
        _cli("Create the entry of Kong's certificate (AWS Secrets Manager)", "aws-sm",
             ["aws", "secretsmanager", "create-secret", "--region", "{{ pgbouncer_kong_tls_store.region }}",
              "--name", entry, "--secret-string", "{{ pgbouncer_kong_tls_want | to_json }}"],
             when=("pgbouncer_kong_tls_aws.rc != 0",)),
        _cli("Publish Kong's certificate and key (AWS Secrets Manager)", "aws-sm",
             ["aws", "secretsmanager", "put-secret-value", "--region", "{{ pgbouncer_kong_tls_store.region }}",
              "--secret-id", entry, "--secret-string", "{{ pgbouncer_kong_tls_want | to_json }}"],
             when=("pgbouncer_kong_tls_aws.rc == 0", _differs("pgbouncer_kong_tls_aws"))),
        _cli("Read Kong's published certificate (GCP Secret Manager)", "gcp-sm",
             ["gcloud", "secrets", "versions", "access", "latest", "--secret", entry,
              "--project", "{{ pgbouncer_kong_tls_store.project }}"], register="pgbouncer_kong_tls_gcp", read=True),
        _cli("Create the entry of Kong's certificate (GCP Secret Manager)", "gcp-sm",
             ["gcloud", "secrets", "create", entry, "--project", "{{ pgbouncer_kong_tls_store.project }}",
              "--replication-policy=automatic"], when=("pgbouncer_kong_tls_gcp.rc != 0",)),
        _cli("Publish Kong's certificate and key (GCP Secret Manager)", "gcp-sm",
             ["gcloud", "secrets", "versions", "add", entry, "--project", "{{ pgbouncer_kong_tls_store.project }}",
              "--data-file=-"], stdin="{{ pgbouncer_kong_tls_want | to_json }}",
             when=(_differs("pgbouncer_kong_tls_gcp"),)),
        _cli("Read Kong's published certificate (Azure Key Vault)", "azure-kv",
             ["az", "keyvault", "secret", "show", "--vault-name", "{{ pgbouncer_kong_tls_store.vault }}",
              "--name", entry, "--query", "value", "--output", "tsv"], register="pgbouncer_kong_tls_azure", read=True),
        _cli("Publish Kong's certificate and key (Azure Key Vault)", "azure-kv",
             ["az", "keyvault", "secret", "set", "--vault-name", "{{ pgbouncer_kong_tls_store.vault }}",
              "--name", entry, "--value", "{{ pgbouncer_kong_tls_want | to_json }}", "--output", "none"],
             when=(_differs("pgbouncer_kong_tls_azure"),)),
        # the gateway's trusted root: public material, logged
        task("Read the gateway's trusted root certificate (its certificate vault)", "ansible.builtin.command",
             {"argv": ["az", "keyvault", "secret", "show", "--vault-name", "{{ pgbouncer_kong_tls_trust.vault }}",
                       "--name", "{{ pgbouncer_kong_tls_trust.name }}", "--query", "value", "--output", "tsv"]},
             delegate_to="localhost", become=False, run_once=True, register="pgbouncer_kong_tls_trusted",
             changed_when=False, failed_when=False, check_mode=False, when=ON + trust),
        task("Install the region's CA as the gateway's trusted root certificate (its certificate vault)",
             "ansible.builtin.command",
             {"argv": ["az", "keyvault", "secret", "set", "--vault-name", "{{ pgbouncer_kong_tls_trust.vault }}",
                       "--name", "{{ pgbouncer_kong_tls_trust.name }}", "--value", "{{ tls_ca_cert.content }}",
                       "--output", "none"]},
             delegate_to="localhost", become=False, run_once=True, changed_when=True,
             when=ON + trust + ["tls_ca_cert is not skipped",
                                "pgbouncer_kong_tls_trusted.rc != 0"
                                " or pgbouncer_kong_tls_trusted.stdout | trim != tls_ca_cert.content"]),
    ]
