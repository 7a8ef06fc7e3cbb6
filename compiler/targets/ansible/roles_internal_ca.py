"""The pgbouncer role's last step: publish the region's internal CA certificate (public) to the secret store, for the
pods that verify PgBouncer.

The tls role creates the region's CA on the CA host (the first bastion) when Ansible first runs, so its certificate
exists only then: neither Terraform nor a static manifest can carry it. The pgbouncer role, right after the tls role
issued PgBouncer's certificate, takes that CA certificate (the tls role's tls_ca_cert, read once per run on the CA
host) and writes it once, from the controller, to the store entry compiler/ir/data_access.py's internal_ca_ref
names (the same store as the services' passwords; one entry per region, the field ca_crt). The External Secrets
Operator then delivers it into each PostgreSQL client's `<service>-internal-ca` Secret, which the pods mount as
PGSSLROOTCERT for PGSSLMODE=verify-full. The entry is written only when its value differs (each write would be a
new version), with the controller's own credentials for the store: VAULT_ADDR's server and VAULT_TOKEN for
`vault:` (a token that may write that path: the ESO policy only reads it), the aws / gcloud / az CLIs' logins
for `aws-sm:` / `gcp-sm:` / `azure-kv:`.

The inventory's pgbouncer group_vars set pgbouncer_ca_store (scheme, entry, field and where the store is);
pgbouncer_ca_publish is false where no service uses PostgreSQL. Check mode never touches the store.
"""

from __future__ import annotations

from compiler.targets.ansible.role import expr, task

PEM = "(tls_ca_cert.content | b64decode)"  # the tls role's read of the CA certificate (run once)
WANT = "{{ {pgbouncer_ca_store.field: " + PEM + "} | to_json }}"  # the entry's value: a JSON object, one field


def _on(scheme: str, *extra: str) -> list[str]:
    return ["pgbouncer_ca_publish | bool", "not ansible_check_mode", "tls_ca_cert is not skipped",
            f"pgbouncer_ca_store.scheme == '{scheme}'", *extra]


def _local(name: str, module: str, args: dict, **kw) -> dict:
    """A task on the controller (the store is written with its credentials), once."""
    return task(name, module, args, delegate_to="localhost", become=False, run_once=True, **kw)


def _cli(name: str, scheme: str, argv: list, register: str | None = None, read=False, stdin: str | None = None,
         when_extra: tuple[str, ...] = ()) -> dict:
    args: dict = {"argv": argv}
    if stdin is not None:
        args["stdin"] = stdin
    kw = {"changed_when": False, "failed_when": False, "check_mode": False} if read else {"changed_when": True}
    return _local(name, "ansible.builtin.command", args, register=register,
                  when=_on(scheme, *when_extra), **kw)


def _differs(var: str) -> str:
    """The entry is missing, unreadable or holds another certificate."""
    return f"{var}.rc != 0 or (({var}.stdout | from_json)[pgbouncer_ca_store.field] | default('')) != {PEM}"


DEFAULTS = {
    "pgbouncer_ca_publish": False,
    # scheme (vault | aws-sm | gcp-sm | azure-kv), entry, field; host (Vault's host[:port]) and kv2 (vault), region (aws-sm),
    # project (gcp-sm), vault (azure-kv): set by the inventory
    "pgbouncer_ca_store": {},
}
VARS = {"pgbouncer_ca_vault_value": expr(
    "((pgbouncer_ca_vault.json.data.data if pgbouncer_ca_store.kv2 | bool else pgbouncer_ca_vault.json.data)",
    "[pgbouncer_ca_store.field] | default('')) if pgbouncer_ca_vault.status == 200 else ''"),
    # KV v2 (mount/data/path) takes {"data": {...}}; KV v1 the fields themselves
    "pgbouncer_ca_vault_body": expr(
        "{'data': {pgbouncer_ca_store.field: " + PEM + "}} if pgbouncer_ca_store.kv2 | bool",
        "else {pgbouncer_ca_store.field: " + PEM + "}")}


def publish_tasks() -> list[dict]:
    """The tasks, after the tls role's include in the pgbouncer role."""
    # https:// is literal (the spec's vault_address must be https, S-pattern): the token never travels in clear,
    # and checkov's CKV2_ANSIBLE_1 can see so
    vault_url = "https://{{ pgbouncer_ca_store.host }}/v1/{{ pgbouncer_ca_store.entry }}"
    token = {"X-Vault-Token": "{{ lookup('ansible.builtin.env', 'VAULT_TOKEN') }}"}
    return [
            # vault: KV v2 (mount/data/path) holds {"data": {...}}; the read answers 404 before the first write
            _local("Read the published CA certificate (Vault)", "ansible.builtin.uri",
                   {"url": vault_url, "method": "GET", "headers": token, "status_code": [200, 404]},
                   register="pgbouncer_ca_vault", no_log=True, check_mode=False, when=_on("vault")),
            _local("Publish the CA certificate (Vault)", "ansible.builtin.uri",
                   {"url": vault_url, "method": "POST", "headers": token, "body_format": "json",
                    "body": "{{ pgbouncer_ca_vault_body }}",
                    "status_code": [200, 204]},
                   no_log=True, changed_when=True,
                   when=_on("vault", "pgbouncer_ca_vault_value != " + PEM)),
            _cli("Read the published CA certificate (AWS Secrets Manager)", "aws-sm",
                 ["aws", "secretsmanager", "get-secret-value", "--region", "{{ pgbouncer_ca_store.region }}",
                  "--secret-id", "{{ pgbouncer_ca_store.entry }}", "--query", "SecretString", "--output", "text"],
                 register="pgbouncer_ca_aws", read=True),
            _cli("Publish the CA certificate (AWS Secrets Manager; Terraform created the secret)", "aws-sm",
                 ["aws", "secretsmanager", "put-secret-value", "--region", "{{ pgbouncer_ca_store.region }}",
                  "--secret-id", "{{ pgbouncer_ca_store.entry }}", "--secret-string", WANT],
                 when_extra=(_differs("pgbouncer_ca_aws"),)),
            _cli("Read the published CA certificate (GCP Secret Manager)", "gcp-sm",
                 ["gcloud", "secrets", "versions", "access", "latest", "--secret", "{{ pgbouncer_ca_store.entry }}",
                  "--project", "{{ pgbouncer_ca_store.project }}"],
                 register="pgbouncer_ca_gcp", read=True),
            _cli("Publish the CA certificate (GCP Secret Manager; Terraform created the secret)", "gcp-sm",
                 ["gcloud", "secrets", "versions", "add", "{{ pgbouncer_ca_store.entry }}",
                  "--project", "{{ pgbouncer_ca_store.project }}", "--data-file=-"], stdin=WANT,
                 when_extra=(_differs("pgbouncer_ca_gcp"),)),
            _cli("Read the published CA certificate (Azure Key Vault)", "azure-kv",
                 ["az", "keyvault", "secret", "show", "--vault-name", "{{ pgbouncer_ca_store.vault }}",
                  "--name", "{{ pgbouncer_ca_store.entry }}", "--query", "value", "--output", "tsv"],
                 register="pgbouncer_ca_azure", read=True),
            _cli("Publish the CA certificate (Azure Key Vault)", "azure-kv",
                 ["az", "keyvault", "secret", "set", "--vault-name", "{{ pgbouncer_ca_store.vault }}",
                  "--name", "{{ pgbouncer_ca_store.entry }}", "--value", WANT, "--output", "none"],
                 when_extra=(_differs("pgbouncer_ca_azure"),)),
        ]
