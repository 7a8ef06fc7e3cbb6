"""Playbooks, ansible.cfg, requirements.yml and the static role files (copied verbatim)."""

from __future__ import annotations

from functools import lru_cache

from compiler.records import dataclass
from compiler.render import TEMPLATES, banner
from compiler.targets.ansible.roles_data import POSTGRES_DATA_MOUNT
from compiler.targets.ansible.roles_search import ES_DATA, ES_DATA_MODE

STATIC = TEMPLATES / "ansible" / "static"


@dataclass(frozen=True)
class Play:
    name: str
    hosts: str
    roles: tuple
    # after the roles' handlers: work that needs what every role of the play started (Patroni's leader)
    post_tasks: tuple = ()


@dataclass(frozen=True)
class Playbook:
    """One concern: a file of its own, imported by site.yml in this order."""

    file: str
    summary: str
    plays: tuple[Play, ...]


def _disk(mount: str, owner: str, mode: str) -> dict:
    """The data_disk role before a datastore's: its volume mounted at the data directory before the package installs,
    and the volume's root owned as the datastore's package owns that directory (owner and group `owner`, `mode`)."""
    return {"role": "data_disk", "vars": {"data_disk_mount": mount, "data_disk_owner": owner, "data_disk_mode": mode}}


PLAYBOOKS = (
    Playbook("common.yml", "OS baseline on every host: SSH, upgrades, time, firewall", (
        Play("Apply the OS baseline to every host", "all", ("common",)),)),
    Playbook("node_exporter.yml", "node_exporter on every host (when the spec enables it)", (
        Play("Run node_exporter on every host", "all", ({"role": "node_exporter", "when": "node_exporter_enabled"},)),)),
    Playbook("etcd.yml", "etcd, Patroni's DCS: three members per region", (
        Play("Run the etcd members", "etcd", ("etcd",)),)),
    Playbook("postgresql.yml", "PostgreSQL under Patroni on every PostgreSQL host (the data volume mounted first)", (
        Play("Configure PostgreSQL and Patroni", "postgres", (_disk(POSTGRES_DATA_MOUNT, "postgres", "0755"), "postgresql", "patroni"),
             ({"name": "Apply the data tier's SQL on the Patroni leader",
               "ansible.builtin.import_role": {"name": "postgresql", "tasks_from": "leader"}},)),)),
    Playbook("postgres_exporter.yml", "postgres_exporter on the PostgreSQL servers (the data-tier alerts read it)", (
        Play("Run postgres_exporter on the PostgreSQL servers", "postgres", ("postgres_exporter",)),)),
    Playbook("pgbouncer.yml", "PgBouncer in front of the primary", (
        Play("Configure PgBouncer", "pgbouncer", ("pgbouncer",)),)),
    Playbook("redis.yml", "Redis Cluster nodes, then the cluster itself (once)", (
        Play("Configure the Redis Cluster nodes and form the cluster", "redis_cluster",
             (_disk("/var/lib/redis", "redis", "0750"), "redis")),)),
    Playbook("redis_exporter.yml", "redis_exporter on the Redis Cluster nodes (the cache alerts read it)", (
        Play("Run redis_exporter on the Redis Cluster nodes", "redis_cluster", ("redis_exporter",)),)),
    Playbook("elasticsearch.yml", "Elasticsearch nodes", (
        Play("Configure the Elasticsearch nodes", "elasticsearch", (_disk(ES_DATA, "elasticsearch", ES_DATA_MODE), "elasticsearch")),)),
    Playbook("backups.yml", "Backup schedules on the database and cache nodes", (
        Play("Schedule the backups", "postgres:redis_cluster", ("backups",)),)),
)


def yaml_header(spec: str) -> str:
    return banner("#", spec) + "---\n"


def playbook_data(pb: Playbook) -> list:
    return [{"name": p.name, "hosts": p.hosts, "become": True, "gather_facts": True, "roles": list(p.roles),
             **({"post_tasks": list(p.post_tasks)} if p.post_tasks else {})}
            for p in pb.plays]


def site_data() -> list:
    return [{"name": pb.summary[0].upper() + pb.summary[1:], "ansible.builtin.import_playbook": pb.file}
            for pb in PLAYBOOKS]


ANSIBLE_CFG = """\
[defaults]
# Every run names its region's inventory: -i inventories/<region>
interpreter_python = auto_silent
forks = 25
# Handlers (restarts, reloads, the SQL apply) still run when a later task fails.
force_handlers = True
host_key_checking = True
retry_files_enabled = False

[ssh_connection]
pipelining = True
"""


def ansible_cfg(spec: str) -> str:
    return banner("#", spec) + ANSIBLE_CFG


def yamllint_data() -> dict:
    """ansible-lint's own yamllint settings, except that block sequences are not indented under their
    key: that is how compiler.render.dump_yaml (PyYAML) writes every YAML file platformc emits."""
    return {"extends": "default", "rules": {
        "comments": {"min-spaces-from-content": 1},
        "comments-indentation": False,
        "line-length": {"max": 160},
        "braces": {"min-spaces-inside": 0, "max-spaces-inside": 1},
        "octal-values": {"forbid-implicit-octal": True, "forbid-explicit-octal": True},
        "indentation": {"spaces": 2, "indent-sequences": "consistent"},
    }}


# Lowest collection version that has the lookup plugin used for secret references.
COLLECTION_VERSIONS = {
    "community.hashi_vault": ">=6.0.0",
    "amazon.aws": ">=6.0.0",
    "google.cloud": ">=1.4.0",
    "azure.azcollection": ">=2.0.0",
}


# What each lookup needs in the controller's Python (checked: without it the plugin refuses to load).
COLLECTION_PYTHON = {
    "community.hashi_vault": "pip install hvac",
    "amazon.aws": "pip install boto3 botocore",
    "google.cloud": "pip install google-auth requests",
    "azure.azcollection": ("pip install -r ~/.ansible/collections/ansible_collections/azure/azcollection/"
                           "requirements.txt"),
}


def requirements_data(collections: set[str]) -> dict:
    return {"collections": [{"name": c, "version": COLLECTION_VERSIONS[c]} for c in sorted(collections)]}


# ---------------------------------------------------------------- static role files

def _with_banner(rel: str, text: str, spec: str) -> str:
    """A do-not-edit line that survives as what each file is: a Jinja comment in a template
    (Ansible drops it when rendering), a shell comment after a shebang."""
    line = (banner("{#", spec).rstrip("\n") + " #}\n") if rel.endswith(".j2") else banner("#", spec)
    if text.startswith("#!"):
        first, _, rest = text.partition("\n")
        return first + "\n" + line + rest
    return line + text


@lru_cache(maxsize=None)
def static_files(spec: str) -> tuple[tuple[str, str], ...]:
    """(path under generated/ansible/, text) for every file under templates/ansible/static/, verbatim."""
    out = []
    for p in sorted(STATIC.rglob("*")):
        if p.is_file():
            rel = p.relative_to(STATIC).as_posix()
            out.append((rel, _with_banner(rel, p.read_text("utf-8"), spec)))
    return tuple(out)
