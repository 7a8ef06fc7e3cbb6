"""The postgresql and pgbouncer roles.

ONE SOURCE: the configuration files are the data-tier target's (generated/datastores/<region>/),
deployed byte for byte with `copy` from `<role>_source_dir`; these roles never template them. The
only templates here hold secrets the data tier must not: PgBouncer's auth_file and the replication
passfile, rendered from lookups of the spec's references. The paths, users and ports those files
name come from the data-tier modules' own constants, so both targets always agree.
"""

from __future__ import annotations

from compiler.ir import names
from compiler.targets.ansible.role import (Role, apt, copy, expr, repository, service, services_ready_var, task,
                                            template, when_ready)
from compiler.targets.ansible.roles_tls import TOPIC

SOURCE_DIR = "{{ playbook_dir | dirname }}/datastores/{{ platformc_region }}"
# the data tier's platform-wide files (generated/datastores/shards.sql, the routing table: once, not per region)
PLATFORM_SOURCE_DIR = "{{ playbook_dir | dirname }}/datastores"
# setup.psql includes the region's two with \ir, and the platform's routing table as ../shards.sql: they are
# staged in the same layout as generated/datastores/ (<setup dir>/<region>/ and <setup dir>/shards.sql)
SETUP_FILES = ["setup.psql", "extensions.sql", "pgbouncer-auth.sql"]
PLATFORM_SETUP_FILES = ["shards.sql"]


def source(role: str, name: str) -> str:
    """Where a role reads a data-tier file: `<role>_source_dir` (generated/datastores/<region>)."""
    return "{{ " + role + "_source_dir }}/" + name


def include_tls(directory: str, owner: str, group: str, key_mode: str = "0600", install_ca=True,
                reload: tuple[str, ...] = ()) -> dict:
    """`reload`: the systemd units the renewal timer reloads after renewing this certificate (none: the service
    reads its certificate files again by itself)."""
    return task("Issue this server's certificate from the region's CA", "ansible.builtin.include_role",
                {"name": "tls"}, vars={"tls_dir": directory, "tls_owner": owner, "tls_group": group,
                                       "tls_key_mode": key_mode, "tls_install_ca": install_ca,
                                       **({"tls_reload_units": list(reload)} if reload else {})})


def _as_postgres(name: str, argv: list, **kw) -> dict:
    return task(name, "ansible.builtin.command", {"argv": argv, **kw.pop("args", {})}, become=True,
                become_user="postgres", **kw)


# ---------------------------------------------------------------- postgresql

def _pg_install() -> list:
    return [
        apt("Install the APT repository tooling", ["python3-debian", "acl"]),
        repository("Add the PostgreSQL project's APT repository", "pgdg", "https://apt.postgresql.org/pub/repos/apt",
                   "{{ ansible_facts.distribution_release }}-pgdg", "https://www.postgresql.org/media/keys/ACCC4CF8.asc"),
        repository("Add Timescale's APT repository", "timescaledb",
                   "https://packagecloud.io/timescale/timescaledb/{{ ansible_facts.distribution | lower }}/",
                   "{{ ansible_facts.distribution_release }}", "https://packagecloud.io/timescale/timescaledb/gpgkey",
                   when="'timescaledb' in postgresql_extensions"),
        apt("Install PostgreSQL and the packages of the spec's extensions", "{{ postgresql_packages }}",
            register="postgresql_install"),
        task("Install WAL-G, which the data tier's archive_command and restore_command run", "ansible.builtin.get_url",
             {"url": "https://github.com/wal-g/wal-g/releases/download/{{ postgresql_walg_version }}/"
                     "{{ postgresql_walg_asset }}",
              "dest": names.WALG, "owner": "root", "group": "root", "mode": "0755",
              "checksum": "{{ postgresql_walg_checksum | default(omit, true) }}"},
             when="postgresql_wal_archive"),
    ]


def _pg_config() -> list:
    r = "postgresql"
    return [
        include_tls("{{ postgresql_tls_dir }}", "postgres", "postgres"),
        template("Write the replication passfile", "pgpass.j2", "{{ postgresql_passfile }}", mode="0600",
                 owner="postgres", group="postgres", no_log=True, diff=False),
        copy("Install the data tier's postgresql.conf", "{{ postgresql_config_dir }}/postgresql.conf",
             owner="postgres", group="postgres", src=source(r, "postgresql.conf"), notify="Restart PostgreSQL"),
        copy("Install the data tier's pg_hba.conf", "{{ postgresql_config_dir }}/pg_hba.conf",
             mode="0640", owner="postgres", group="postgres", src=source(r, "pg_hba.conf"),
             notify="Reload PostgreSQL"),
    ]


def _pg_primary() -> list:
    r = "postgresql"
    return [
        service("Start PostgreSQL at boot", "{{ postgresql_service }}", r),
        task("Run with the new settings before changing databases and roles", "ansible.builtin.meta",
             "flush_handlers"),
        task("Create the directories for the data tier's SQL", "ansible.builtin.file",
             {"path": "{{ postgresql_setup_dir_item }}", "state": "directory", "owner": "postgres", "group": "postgres",
              "mode": "0750"}, loop=["{{ postgresql_setup_dir }}", "{{ postgresql_setup_dir }}/{{ platformc_region }}"],
             loop_control={"loop_var": "postgresql_setup_dir_item"}),
        copy("Stage the data tier's setup.psql and the region's SQL it includes",
             "{{ postgresql_setup_dir }}/{{ platformc_region }}/{{ postgresql_sql_file }}",
             mode="0640", owner="postgres", group="postgres", src=source(r, "{{ postgresql_sql_file }}"),
             loop=SETUP_FILES, loop_control={"loop_var": "postgresql_sql_file"},
             notify="Create the shard databases, extensions and roles"),
        copy("Stage the platform's routing table, which setup.psql includes as ../shards.sql",
             "{{ postgresql_setup_dir }}/{{ postgresql_sql_file }}",
             mode="0640", owner="postgres", group="postgres", src="{{ postgresql_platform_source_dir }}/{{ postgresql_sql_file }}",
             loop=PLATFORM_SETUP_FILES, loop_control={"loop_var": "postgresql_sql_file"},
             notify="Create the shard databases, extensions and roles"),
        copy("Record the fingerprints of the role passwords", "{{ postgresql_setup_dir }}/passwords.sha256",
             mode="0600", owner="postgres", group="postgres", content="{{ postgresql_password_fingerprints }}",
             notify="Set the PostgreSQL role passwords", diff=False),
    ]


def _pg_clone() -> list:
    r = "postgresql"
    return [
        service("Stop the empty cluster the package created", "{{ postgresql_service }}", r, state="stopped",
                enabled=None),
        task("Remove the empty cluster", "ansible.builtin.file", {"path": "{{ postgresql_data_dir }}", "state": "absent"}),
        _as_postgres("Copy the primary with pg_basebackup", [
            "pg_basebackup", "--pgdata={{ postgresql_data_dir }}", "--wal-method=stream", "--checkpoint=fast",
            "--no-password", "--dbname={{ postgresql_clone_conninfo }}"], args={"creates": "{{ postgresql_data_dir }}/PG_VERSION"}),
        copy("Make the copy a standby of the primary", "{{ postgresql_data_dir }}/standby.signal", mode="0600",
             owner="postgres", group="postgres", content=""),
        copy("Mark the replica as copied, so later runs never copy it again", "{{ postgresql_clone_marker }}",
             content="copied from {{ postgresql_replica_of }}\n"),
    ]


def _pg_replica() -> list:
    r = "postgresql"
    return [
        task("Check whether this replica was copied from the primary", "ansible.builtin.stat",
             {"path": "{{ postgresql_clone_marker }}"}, register="postgresql_cloned"),
        # After a promotion the marker is still there: a promoted replica is never wiped.
        {"name": "Copy the primary into this replica, once", "when": "not postgresql_cloned.stat.exists",
         "block": _pg_clone(),
         # A failed copy leaves no half-written data directory behind: the next run starts clean.
         "rescue": [
             task("Remove the partial copy", "ansible.builtin.file",
                  {"path": "{{ postgresql_data_dir }}", "state": "absent"}),
             task("Stop with the reason the copy failed", "ansible.builtin.fail", {
                 "msg": "copying {{ postgresql_replica_of }} failed: {{ ansible_failed_result.msg | default('see above') }}\n"
                        "The partial copy was removed; run the playbook again."}),
         ]},
        service("Start PostgreSQL at boot", "{{ postgresql_service }}", r),
    ]


def postgresql() -> Role:
    r = "postgresql"
    return Role(
        name=r,
        description="PostgreSQL from the PGDG repository with the spec's extensions, the data tier's files, WAL-G, replicas.",
        defaults={
            "postgresql_version": 15,
            "postgresql_extensions": [],
            "postgresql_port": names.POSTGRES_PORT,
            "postgresql_wal_archive": True,
            "postgresql_source_dir": SOURCE_DIR,
            "postgresql_platform_source_dir": PLATFORM_SOURCE_DIR,
            "postgresql_config_dir": "/etc/postgresql/{{ postgresql_version }}/main",
            "postgresql_data_dir": "/var/lib/postgresql/{{ postgresql_version }}/main",
            "postgresql_service": "postgresql@{{ postgresql_version }}-main",
            "postgresql_tls_dir": names.POSTGRES_TLS_DIR,
            "postgresql_passfile": names.POSTGRES_PASSFILE,
            "postgresql_setup_dir": "/var/lib/postgresql/platformc",
            "postgresql_clone_marker": "/var/lib/postgresql/{{ postgresql_version }}/platformc-copied",
            "postgresql_replication_user": names.POSTGRES_REPLICATION_USER,
            "postgresql_pgbouncer_auth_user": "pgbouncer",
            "postgresql_service_roles": [],  # [{name, password}]: each service's role (group_vars)
            "postgresql_walg_version": "v3.0.7",
            "postgresql_walg_asset": "wal-g-pg-ubuntu-22.04-amd64",
            "postgresql_walg_checksum": "",  # e.g. sha256:<digest> of the release asset; empty skips the check
            "postgresql_extension_packages": {
                "vector": ["postgresql-{{ postgresql_version }}-pgvector"],
                "pg_partman": ["postgresql-{{ postgresql_version }}-partman"],
                "timescaledb": ["timescaledb-2-postgresql-{{ postgresql_version }}"],
                "postgis": ["postgresql-{{ postgresql_version }}-postgis-3"],
                "pg_stat_statements": [],
                "pgcrypto": [],
            },
        },
        vars={
            **services_ready_var(r, "postgresql_install"),
            "postgresql_packages": expr(
                "['postgresql-' ~ postgresql_version, 'postgresql-client-' ~ postgresql_version]",
                "+ (postgresql_extensions | map('extract', postgresql_extension_packages) | flatten)"),
            # A changed password (a rotation) changes this file, which runs the ALTER ROLEs again.
            "postgresql_password_fingerprints": expr(
                "([postgresql_admin_password, postgresql_replication_password, postgresql_pgbouncer_auth_password]",
                "+ (postgresql_service_roles | map(attribute='password') | list))",
                "| map('regex_replace', '^', inventory_hostname) | map('hash', 'sha256') | join('\\n')"),
            "postgresql_roles_sql": ROLES_SQL,
            # how a replica reaches its primary to copy it (the password comes from the passfile)
            "postgresql_clone_conninfo": expr(
                "'host=' ~ hostvars[postgresql_replica_of].ansible_host ~ ' port=' ~ postgresql_port",
                "~ ' user=' ~ postgresql_replication_user ~ ' sslmode=verify-full'",
                "~ ' sslrootcert=' ~ postgresql_tls_dir ~ '/ca.crt'"),
        },
        tasks={
            "main": [
                *_pg_install(),
                *_pg_config(),
                task("Configure the primary", "ansible.builtin.import_tasks", "primary.yml",
                     when="postgresql_replica_of is not defined"),
                task("Configure a streaming replica", "ansible.builtin.import_tasks", "replica.yml",
                     when="postgresql_replica_of is defined"),
            ],
            "primary": _pg_primary(),
            "replica": _pg_replica(),
        },
        handlers=[
            service("Restart PostgreSQL", "{{ postgresql_service }}", r, state="restarted", enabled=None, listen=TOPIC),
            service("Reload PostgreSQL", "{{ postgresql_service }}", r, state="reloaded", enabled=None),
            _as_postgres("Create the shard databases, extensions and roles",
                         ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres",
                          "-f", "{{ postgresql_setup_dir }}/{{ platformc_region }}/setup.psql"], changed_when=True, when=when_ready(r)),
            _as_postgres("Set the PostgreSQL role passwords", ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"],
                         args={"stdin": "{{ postgresql_roles_sql }}"}, no_log=True, changed_when=True,
                         when=when_ready(r)),
        ],
    )


def _sql_literal(var: str) -> str:
    """A SQL string literal of a variable (standard_conforming_strings: only the quote doubles)."""
    return "'{{ " + var + " | replace(\"'\", \"''\") }}'"


def _set_password(role: str, password_var: str) -> str:
    """ALTER ROLE ... PASSWORD, only when the role exists (setup.psql creates the replication role
    only where there are replicas or a standby)."""
    return (f"SELECT format('ALTER ROLE %I PASSWORD %L', rolname, {_sql_literal(password_var)})\n"
            f"FROM pg_catalog.pg_roles WHERE rolname = '{{{{ {role} }}}}' \\gexec")


# The passwords go through stdin, never argv, and this session logs no statements. Each service's role
# (setup.psql creates them, compiler/ir/data_access.py names them) gets its password from its reference.
ROLES_SQL = "\n".join([
    "SET log_statement = 'none';",
    "SET log_min_duration_statement = -1;",
    "ALTER ROLE postgres PASSWORD " + _sql_literal("postgresql_admin_password") + ";",
    _set_password("postgresql_replication_user", "postgresql_replication_password"),
    _set_password("postgresql_pgbouncer_auth_user", "postgresql_pgbouncer_auth_password"),
    "{% for postgresql_service_role in postgresql_service_roles %}",
    _set_password("postgresql_service_role.name", "postgresql_service_role.password"),
    "{% endfor %}",
    "",
])


# ---------------------------------------------------------------- pgbouncer

def pgbouncer() -> Role:
    r = "pgbouncer"
    return Role(
        name=r,
        description="PgBouncer with the data tier's pgbouncer.ini, a CA-signed certificate and an auth_file holding only auth_user's secret.",
        defaults={
            "pgbouncer_source_dir": SOURCE_DIR,
            "pgbouncer_auth_user": "pgbouncer",
            "pgbouncer_auth_file": names.PGBOUNCER_AUTH_FILE,
            "pgbouncer_tls_dir": names.PGBOUNCER_TLS_DIR,
            "pgbouncer_managed_postgres": False,
            "pgbouncer_server_ca_url": "",  # managed PostgreSQL: the provider's CA bundle
            "pgbouncer_server_ca_file": "",  # ... or a bundle on the controller, where there is no public URL
        },
        vars=services_ready_var(r, "pgbouncer_install"),
        tasks={"main": [
            apt("Install PgBouncer", ["pgbouncer"], register="pgbouncer_install"),
            # ca.crt verifies the server PgBouncer connects to: the region's CA for a self-managed
            # primary, the provider's CA for a managed one (the data tier's server_tls_ca_file)
            include_tls("{{ pgbouncer_tls_dir }}", "postgres", "postgres",
                        install_ca="{{ not pgbouncer_managed_postgres }}", reload=("pgbouncer.service",)),
            task("Check that the managed PostgreSQL's CA is known", "ansible.builtin.assert", {
                "that": ["pgbouncer_server_ca_url | length > 0 or pgbouncer_server_ca_file | length > 0"],
                "fail_msg": "set pgbouncer_server_ca_file to the managed PostgreSQL's CA bundle (a file on the controller)"},
                 when="pgbouncer_managed_postgres"),
            task("Install the managed PostgreSQL provider's CA bundle", "ansible.builtin.get_url",
                 {"url": "{{ pgbouncer_server_ca_url }}", "dest": "{{ pgbouncer_tls_dir }}/ca.crt", "owner": "root",
                  "group": "postgres", "mode": "0644"},
                 when=["pgbouncer_managed_postgres", "pgbouncer_server_ca_url | length > 0"], notify="Reload PgBouncer"),
            copy("Install the operator's CA bundle of the managed PostgreSQL", "{{ pgbouncer_tls_dir }}/ca.crt",
                 group="postgres", src="{{ pgbouncer_server_ca_file }}", notify="Reload PgBouncer",
                 when=["pgbouncer_managed_postgres", "pgbouncer_server_ca_url | length == 0"]),
            copy("Install the data tier's pgbouncer.ini", "/etc/pgbouncer/pgbouncer.ini", mode="0640",
                 owner="postgres", group="postgres", src=source(r, "pgbouncer.ini"), notify="Reload PgBouncer"),
            template("Write the auth_file with the auth_user's password", "userlist.txt.j2",
                     "{{ pgbouncer_auth_file }}", mode="0640", owner="postgres", group="postgres",
                     no_log=True, diff=False, notify="Reload PgBouncer"),
            service("Start PgBouncer at boot", "pgbouncer", r),
        ]},
        handlers=[service("Reload PgBouncer", "pgbouncer", r, state="reloaded", enabled=None, listen=TOPIC)],
    )
