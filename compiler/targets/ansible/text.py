"""Spec values inside Ansible data: literal text and secret references.

Ansible templates every variable string that contains a Jinja delimiter (`{{`, `{%`, `{#`), and it
trusts inventory files, so a spec value that reached group_vars unescaped could run code on the
controller. `literal()` makes any text come back unchanged: text without a delimiter is already
literal; anything else becomes an expression decoding the text's base64, whose alphabet cannot close
a string or an expression. (Ansible's Jinja keeps backslashes in string literals as they are, so
escapes such as `\\u007b` cannot be used.)

Secret references (`vault:`, `aws-sm:`, `gcp-sm:`, `azure-kv:`, `env:`) become lookups that run on
the controller when a task needs the value; no value is ever written.
"""

from __future__ import annotations

import base64
import re

_DELIMITERS = ("{{", "{%", "{#")


_PLAIN = re.compile(r"[A-Za-z0-9 _./#@:+=,-]*")


CHUNK = 64  # characters per quoted piece: keeps generated YAML lines under ansible-lint's 160


def _quoted(text: str) -> str:
    """Single-quoted pieces of at most CHUNK characters joined with `~` (one per line when several)."""
    pieces = [f"'{text[i:i + CHUNK]}'" for i in range(0, len(text), CHUNK)] or ["''"]
    return pieces[0] if len(pieces) == 1 else "(" + "\n   ~ ".join(pieces) + ")"


def jinja_string(text: str) -> str:
    """A Jinja expression evaluating to `text` exactly: a quoted literal when every character is
    harmless, else a base64-decoded one."""
    if _PLAIN.fullmatch(text):
        return _quoted(text)
    encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
    return f"({_quoted(encoded)} | ansible.builtin.b64decode)"


def _call(function: str, *args: str) -> str:
    """`function(args)`, one argument per line when the call would be long."""
    one_line = f"{function}({', '.join(args)})"
    if len(one_line) <= 100 and "\n" not in one_line:
        return one_line
    return f"{function}(" + ",\n     ".join(args) + ")"


def literal(text: str) -> str:
    """`text` as an Ansible variable value that templates to itself."""
    if not any(d in text for d in _DELIMITERS):
        return text
    return "{{ " + jinja_string(text) + " }}"


# scheme -> the collection its lookup plugin lives in (ansible.builtin needs no requirement)
COLLECTIONS = {
    "env": None,
    "vault": "community.hashi_vault",
    "aws-sm": "amazon.aws",
    "gcp-sm": "google.cloud",
    "azure-kv": "azure.azcollection",
}


def scheme(ref: str) -> str:
    return ref.split(":", 1)[0]


def _json_field(expr: str, key: str | None) -> str:
    """`name#key` in a secret-manager reference: the secret is JSON and `key` is the field."""
    if key is None:
        return expr
    return f"({expr} | from_json)[{jinja_string(key)}]"


def secret_lookup(ref: str, cloud: str, cloud_region: str, gcp_project: str | None) -> str:
    """The Jinja expression (without braces) that fetches the secret `ref` names.

    env:VAR              the controller's environment; an unset variable fails the task
    vault:PATH#KEY       HashiCorp Vault via community.hashi_vault (VAULT_ADDR / VAULT_TOKEN or its
                         ansible_hashi_vault_* settings); a KV v2 path (mount/data/...) reads data.data
    aws-sm:NAME[#KEY]    AWS Secrets Manager, in the region's own AWS region when it runs on AWS
    gcp-sm:NAME[#KEY]    GCP Secret Manager in the platform's GCP project, application-default credentials
    azure-kv:VAULT/NAME  Azure Key Vault https://VAULT.vault.azure.net
    """
    kind, _, body = ref.partition(":")
    name, _, key = body.partition("#")
    key = key or None
    if kind == "env":
        hint = jinja_string(f"the environment variable {body} is not set (secret reference {ref})")
        return _call("lookup", "'ansible.builtin.env'", jinja_string(body), f"default=undef({hint})")
    if kind == "vault":
        parts = name.split("/")
        kv2 = len(parts) > 2 and parts[1] == "data"
        data = ".data.data" if kv2 else ".data"
        return _call("lookup", "'community.hashi_vault.vault_read'", jinja_string(name)) + \
            f"{data}[{jinja_string(key or 'value')}]"
    if kind == "aws-sm":
        args = ["'amazon.aws.secretsmanager_secret'", jinja_string(name)]
        if cloud == "aws":
            args.append(f"region={jinja_string(cloud_region)}")
        return _json_field(_call("lookup", *args), key)
    if kind == "gcp-sm":
        args = ["'google.cloud.gcp_secret_manager'", f"key={jinja_string(name)}"]
        if gcp_project:
            args.append(f"project={jinja_string(gcp_project)}")
        return _json_field(_call("lookup", *args, "auth_kind='application'"), key)
    if kind == "azure-kv":
        vault, _, secret = name.partition("/")
        if secret:
            url = jinja_string(f"https://{vault}.vault.azure.net")
        else:  # no vault in the reference: the operator names it in the environment
            hint = jinja_string(f"set AZURE_KEYVAULT_URL: the reference {ref} names no vault")
            secret, url = vault, f"lookup('ansible.builtin.env', 'AZURE_KEYVAULT_URL', default=undef({hint}))"
        return _json_field(_call("lookup", "'azure.azcollection.azure_keyvault_secret'", jinja_string(secret),
                                 f"vault_url={url}"), key)
    raise ValueError(f"not a secret reference: {ref!r}")


def secret_var(ref: str, cloud: str, cloud_region: str, gcp_project: str | None) -> str:
    """A variable value that resolves `ref` lazily, when a task reads it."""
    return "{{ " + secret_lookup(ref, cloud, cloud_region, gcp_project) + " }}"
