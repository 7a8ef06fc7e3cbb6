"""The data-tier exporters the SLO alerts read: postgres_exporter and redis_exporter.

Both are the projects' own release binaries, pinned by version and SHA-256 (the distributions'
packages are too old: Debian 12's postgres_exporter has no stat_statements collector). Each runs
as its own system user under a hardened systemd unit, listens on its port on every interface (the
common role's firewall admits only the region's private subnets, where Prometheus runs), and
reads its database as a user that can read statistics and nothing else:

    postgres_exporter   PostgreSQL role `postgres_exporter`, member of pg_monitor, over the local
                        socket; the password is in a passfile only that user can read
    redis_exporter      Redis ACL user `redis_exporter`, allowed INFO, CLUSTER INFO, LATENCY and
                        SLOWLOG reads only (not CONFIG GET: it would show masterauth); added to the
                        running nodes with ACL SETUSER, so no restart, and kept in the include
                        directory for the next start

The spec has no secret for these users, so each secret is made once (openssl rand) on the first
node of its cluster, like the redis role's admin secret, and never leaves the nodes and the run.
"""

from __future__ import annotations

from compiler.ir import names
from compiler.ir.dr_watch import (POSTGRES_EXPORTER_DATABASE, POSTGRES_EXPORTER_USER, POSTGRES_SOCKET_DIR,
                                  WAL_RECEIVER_QUERY)
from compiler.targets.ansible import leader_sql
from compiler.targets.ansible.role import Role, copy, expr, task, template, when_ready
from compiler.targets.ansible.roles_data import SOURCE_DIR
from compiler.targets.ansible.roles_redis import ADMIN_DIR as REDIS_ADMIN_DIR

from compiler.ir.names import POSTGRES_EXPORTER_PORT, REDIS_EXPORTER_PORT  # noqa: E402

MONITORING_RECORD = "postgres_exporter"  # its row in the cluster's platformc.applied (leader_sql)
# Release pins: version and the SHA-256 of each architecture's tarball (as in the release's sha256sums.txt).
POSTGRES_EXPORTER_RELEASE = {
    "version": "0.18.1",
    "download_url": "https://github.com/prometheus-community/postgres_exporter/releases/download",
    "checksums": {"amd64": "sha256:1630965540d49a4907ad181cef5696306d7a481f87f43978538997e85d357272",
                  "arm64": "sha256:81c22dc2b6dcc58e9e2b5c0e557301dbf0ca0812ee3113d31984c1a37811d1cc"},
}
REDIS_EXPORTER_RELEASE = {
    "version": "1.80.1",
    "download_url": "https://github.com/oliver006/redis_exporter/releases/download",
    "checksums": {"amd64": "sha256:1818cc2cbd3bac62a6f43054a2cc1596fc5f6148ce80112a6308bc3cad6d81fa",
                  "arm64": "sha256:a807907d413edb1c0aa88513e7c1570c302873bd1cfcbf36fb53a14629177882"},
}
# Ansible's architecture fact -> the releases' name for it
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}

# Everything redis_exporter runs with the default flags and --config-command=- (nothing else: no keys,
# no channels). SLOWLOG GET and LATENCY are reads; CLIENT SETNAME only names its own connection.
# sanitize-payload is what ACL SETUSER's `reset` sets: named here, the include's user is the same.
REDIS_EXPORTER_ACL = ["sanitize-payload", "resetkeys", "resetchannels", "-@all", "+ping", "+info", "+cluster|info",
                      "+client|setname", "+latency|latest", "+latency|histogram", "+slowlog|get", "+slowlog|len"]


# ---------------------------------------------------------------- shared: a pinned release under systemd

def _release_defaults(r: str, release: dict, port: int) -> dict:
    return {
        f"{r}_version": release["version"],
        # a mirror of the release downloads may replace the project's (hosts without internet access)
        f"{r}_download_url": release["download_url"],
        f"{r}_checksums": release["checksums"],
        f"{r}_architectures": ARCHITECTURES,
        f"{r}_port": port,
        f"{r}_user": r,
        f"{r}_install_dir": f"/opt/{r}",
        f"{r}_conf_dir": f"/etc/{r}",
    }


def _v(r: str, name: str) -> str:
    """The Jinja reference to the role's variable `<r>_<name>`."""
    return "{{ " + f"{r}_{name}" + " }}"


def _release_vars(r: str, asset: str) -> dict:
    """`asset`: the tarball's name without .tar.gz, which is also its top directory."""
    return {
        f"{r}_arch": "{{ " + r + "_architectures[ansible_facts.architecture] | default('unknown') }}",
        f"{r}_asset": asset,
        f"{r}_tarball": f"{_v(r, 'install_dir')}/{_v(r, 'asset')}.tar.gz",
        f"{r}_binary": f"{_v(r, 'install_dir')}/{_v(r, 'asset')}/{r}",
        # Check mode on a new host (or a new release): nothing was downloaded, so nothing can be
        # unpacked or started; those steps are skipped there and run for real.
        f"{r}_services_ready": expr(f"not (ansible_check_mode and (({r}_install_dir_created | default({{}})) is changed",
                                    f"or ({r}_download | default({{}})) is changed))"),
    }


def _install(r: str) -> list:
    return [
        task("Check that the release has a build for this CPU", "ansible.builtin.assert", {
            "that": [f"{r}_arch in {r}_checksums"],
            "fail_msg": f"no pinned {r} build for {{{{ ansible_facts.architecture }}}}"}),
        task(f"Create the {r} system user", "ansible.builtin.user", {
            "name": _v(r, "user"), "system": True, "shell": "/usr/sbin/nologin", "create_home": False,
            "home": "/nonexistent", "state": "present"}),
        task(f"Create the {r} release directory", "ansible.builtin.file", {
            "path": _v(r, "install_dir"), "state": "directory", "owner": "root", "group": "root", "mode": "0755"},
             register=f"{r}_install_dir_created"),
        task(f"Check whether the pinned {r} release is unpacked", "ansible.builtin.stat",
             {"path": _v(r, "binary")}, register=f"{r}_binary_stat"),
        task(f"Download the pinned {r} release and check its SHA-256", "ansible.builtin.get_url", {
            "url": f"{_v(r, 'download_url')}/v{_v(r, 'version')}/{_v(r, 'asset')}.tar.gz",
            "dest": _v(r, "tarball"), "checksum": "{{ " + f"{r}_checksums[{r}_arch]" + " }}",
            "owner": "root", "group": "root", "mode": "0644"},
             register=f"{r}_download",
             when=[f"not {r}_binary_stat.stat.exists",
                   f"not (ansible_check_mode and {r}_install_dir_created is changed)"]),
        task(f"Unpack the {r} binary", "ansible.builtin.unarchive", {
            "src": _v(r, "tarball"), "dest": _v(r, "install_dir"), "remote_src": True,
            "include": [f"{_v(r, 'asset')}/{r}"], "creates": _v(r, "binary"), "owner": "root", "group": "root"},
             when=when_ready(r), notify=f"Restart {r}"),
        task(f"Create the {r} configuration directory", "ansible.builtin.file", {
            "path": _v(r, "conf_dir"), "state": "directory", "owner": "root", "group": _v(r, "user"),
            "mode": "0750"}, when=when_ready(r)),
    ]


def _unit(r: str) -> list:
    return [
        template(f"Write the {r} systemd unit", f"{r.replace('_', '-')}.service.j2",
                 f"/etc/systemd/system/{r}.service", register=f"{r}_unit", notify=f"Restart {r}"),
        task("Run the notified handlers before starting the exporter", "ansible.builtin.meta", "flush_handlers"),
        task(f"Start {r} at boot", "ansible.builtin.systemd_service", {
            "name": r, "state": "started", "enabled": True, "daemon_reload": "{{ " + f"{r}_unit is changed" + " }}"},
             when=when_ready(r)),
    ]


def _restart(r: str) -> dict:
    return task(f"Restart {r}", "ansible.builtin.systemd_service",
                {"name": r, "state": "restarted", "daemon_reload": True}, when=when_ready(r))


def _secret(r: str, first: str, where: str, directory: str) -> list:
    """A random secret made once on `first` (`where` says which host that is), read back for every
    host of the play: the redis role's way with its admin secret."""
    on_first = {"delegate_to": first, "run_once": True}
    return [
        task(f"Create the directory of the {r} secret on {where}", "ansible.builtin.file",
             {"path": directory, "state": "directory", "owner": "root", "group": "root", "mode": "0700"},
             **on_first),
        task(f"Make the {r} secret once, on {where}", "ansible.builtin.command",
             {"argv": ["openssl", "rand", "-hex", "32", "-out", f"{directory}/secret"],
              "creates": f"{directory}/secret"}, register=f"{r}_secret_created", **on_first),
        task(f"Read the {r} secret", "ansible.builtin.slurp", {"src": f"{directory}/secret"},
             register=f"{r}_secret", no_log=True,
             when=f"not ansible_check_mode or {r}_secret_created is not changed", **on_first),
    ]


# ---------------------------------------------------------------- postgres_exporter

def _sql_literal(var: str) -> str:
    return "'{{ " + var + " | replace(\"'\", \"''\") }}'"


# Applied on the Patroni leader as the postgres superuser (stdin, nothing logged); the replicas get the
# role by replication. Every statement is safe to run again.
POSTGRES_EXPORTER_SQL = "\n".join([
    "SET log_statement = 'none';",
    "SET log_min_duration_statement = -1;",
    "SELECT format('CREATE ROLE %I', name) FROM (VALUES (" + _sql_literal("postgres_exporter_db_user") + ")) AS r (name)",
    "WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = name) \\gexec",
    "SELECT format('ALTER ROLE %I WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS'",
    "              ' CONNECTION LIMIT 3 PASSWORD %L',",
    "              " + _sql_literal("postgres_exporter_db_user") + ",",
    "              " + _sql_literal("postgres_exporter_password") + ") \\gexec",
    "SELECT format('ALTER ROLE %I SET statement_timeout = %L', " + _sql_literal("postgres_exporter_db_user")
    + ", '10s') \\gexec",
    "SELECT format('GRANT pg_monitor TO %I', " + _sql_literal("postgres_exporter_db_user") + ") \\gexec",
    # the stat_statements collector reads the view in the database it connects to
    "{{ 'CREATE EXTENSION IF NOT EXISTS pg_stat_statements;' if postgres_exporter_stat_statements else '' }}",
    "",
])


def _monitoring_role(r: str) -> list:
    """The role's SQL on whichever member leads now (never a fixed host: after a failover that one is a read-only
    replica), whenever the cluster's record of it is not this run's SQL (a new secret, a changed statement)."""
    ready = [when_ready(r), "postgres_exporter_secret is not skipped"]
    leads = [*ready, "postgres_exporter_leader == inventory_hostname"]
    return [
        leader_sql.wait_for_leader("postgres_exporter_cluster", "postgres_exporter_leader", ready),
        leader_sql.read_applied("Read the fingerprint of the monitoring role's SQL the cluster last applied",
                                MONITORING_RECORD, "postgres_exporter_applied", leads),
        leader_sql.as_postgres("Create the monitoring role and record it", leader_sql.psql("{{ postgres_exporter_database }}"),
                               args={"stdin": "{{ postgres_exporter_role_sql }}{{ postgres_exporter_record_sql }}"},
                               no_log=True, changed_when=True,
                               when=[*leads, leader_sql.stale("postgres_exporter_applied", "postgres_exporter_role_fingerprint")]),
    ]


def postgres_exporter() -> Role:
    r = "postgres_exporter"
    # where the secret is made and kept (a file, not the database: any member will do, as long as it is always the same)
    first = "{{ groups['postgres_primary'][0] }}"
    return Role(
        name=r,
        description=(f"postgres_exporter (pinned release, port {POSTGRES_EXPORTER_PORT}) reading PostgreSQL as a "
                     "pg_monitor role over the local socket."),
        defaults={
            **_release_defaults(r, POSTGRES_EXPORTER_RELEASE, POSTGRES_EXPORTER_PORT),
            # The PostgreSQL role is the OS user, by name: a DR standby cluster admits it by peer, and its pg_hba.conf
            # (the datastores target) names the same constant, so both come from it and neither may be set on its own
            # in an inventory.
            "postgres_exporter_user": POSTGRES_EXPORTER_USER,
            "postgres_exporter_db_user": POSTGRES_EXPORTER_USER,
            "postgres_exporter_database": POSTGRES_EXPORTER_DATABASE,
            "postgres_exporter_socket_dir": POSTGRES_SOCKET_DIR,
            "postgres_exporter_postgresql_port": names.POSTGRES_PORT,
            "postgres_exporter_stat_statements": False,  # the inventory sets it from the spec's extensions
            "postgres_exporter_secret_dir": "/var/lib/postgresql/platformc-exporter",
        },
        vars={
            **_release_vars(r, "postgres_exporter-{{ postgres_exporter_version }}.linux-{{ postgres_exporter_arch }}"),
            "postgres_exporter_password": "{{ postgres_exporter_secret.content | b64decode | trim }}",
            "postgres_exporter_passfile": "{{ postgres_exporter_conf_dir }}/pgpass",
            "postgres_exporter_collectors": "{{ ['stat_statements'] if postgres_exporter_stat_statements else [] }}",
            # --extend.query-path: the WAL receiver's status, which the DR partner alerts on (compiler/ir/dr_watch.py)
            "postgres_exporter_queries": WAL_RECEIVER_QUERY,
            "postgres_exporter_queries_file": "{{ postgres_exporter_conf_dir }}/queries.yaml",
            "postgres_exporter_role_sql": POSTGRES_EXPORTER_SQL,
            # the SQL with its password: a new secret or a changed statement applies again
            "postgres_exporter_role_fingerprint": "{{ postgres_exporter_role_sql | hash('sha256') }}",
            "postgres_exporter_record_sql": leader_sql.record_sql(MONITORING_RECORD, "postgres_exporter_role_fingerprint"),
            "postgres_exporter_leader": leader_sql.leader_var("postgres_exporter_cluster"),
        },
        tasks={"main": [
            *_install(r),
            *_secret(r, first, "the first member", "{{ postgres_exporter_secret_dir }}"),
            template("Write the exporter's passfile", "pgpass.j2", "{{ postgres_exporter_passfile }}", mode="0600",
                     owner="{{ postgres_exporter_user }}", group="{{ postgres_exporter_user }}", no_log=True,
                     diff=False, when=["postgres_exporter_secret is not skipped", when_ready(r)]),
            copy("Write the exporter's queries (the WAL receiver's status)", "{{ postgres_exporter_queries_file }}",
                 mode="0640", group="{{ postgres_exporter_user }}",
                 content="{{ postgres_exporter_queries | to_nice_yaml(indent=2) }}", notify=f"Restart {r}",
                 when=when_ready(r)),
            *_monitoring_role(r),
            *_unit(r),
        ]},
        handlers=[_restart(r)],
    )


# ---------------------------------------------------------------- redis_exporter

def redis_exporter() -> Role:
    r = "redis_exporter"
    first = "{{ redis_exporter_topology.nodes[0].name }}"
    admin = {"delegate_to": first, "run_once": True}
    return Role(
        name=r,
        description=(f"redis_exporter (pinned release, port {REDIS_EXPORTER_PORT}) reading each Redis node as a "
                     "statistics-only ACL user."),
        defaults={
            **_release_defaults(r, REDIS_EXPORTER_RELEASE, REDIS_EXPORTER_PORT),
            "redis_exporter_source_dir": SOURCE_DIR,
            "redis_exporter_acl_user": "redis_exporter",
            "redis_exporter_acl_rules": REDIS_EXPORTER_ACL,
            "redis_exporter_secret_dir": "/etc/redis/platformc-exporter",
            "redis_exporter_admin_dir": REDIS_ADMIN_DIR,  # the redis role's cluster admin, who may run ACL SETUSER
        },
        vars={
            **_release_vars(r, "redis_exporter-v{{ redis_exporter_version }}.linux-{{ redis_exporter_arch }}"),
            # the data tier's description of the cluster: port, include directory, nodes
            "redis_exporter_topology": ("{{ lookup('ansible.builtin.file', redis_exporter_source_dir ~ "
                                        "'/redis-topology.json') | from_json }}"),
            "redis_exporter_redis_port": "{{ redis_exporter_topology.port }}",
            "redis_exporter_include": "{{ redis_exporter_topology.config.include_dir }}/exporter.conf",
            "redis_exporter_password": "{{ redis_exporter_secret.content | b64decode | trim }}",
            "redis_exporter_admin_password": "{{ redis_exporter_admin_secret.content | b64decode | trim }}",
            "redis_exporter_setuser": ("ACL SETUSER {{ redis_exporter_acl_user }} reset on "
                                       "#{{ redis_exporter_password | hash('sha256') }} "
                                       "{{ redis_exporter_acl_rules | join(' ') }}\n"),
        },
        tasks={"main": [
            *_install(r),
            *_secret(r, first, "the first node", "{{ redis_exporter_secret_dir }}"),
            # the password goes into a systemd EnvironmentFile, whose quoting rules are its own
            task("Check that the exporter's secret is plain hexadecimal", "ansible.builtin.assert", {
                "that": ["redis_exporter_password is match('^[0-9a-f]{64}$')"],
                "fail_msg": "{{ redis_exporter_secret_dir }}/secret is not what openssl rand -hex 32 makes"},
                 no_log=True, when="redis_exporter_secret is not skipped"),
            template("Keep the exporter's ACL user in the Redis include directory", "redis-exporter-acl.conf.j2",
                     "{{ redis_exporter_include }}", mode="0640", owner="redis", group="redis", no_log=True,
                     diff=False, register="redis_exporter_acl", when="redis_exporter_secret is not skipped"),
            # read whatever the first node's include did: another node may be the one that changed
            task("Read the cluster admin secret", "ansible.builtin.slurp",
                 {"src": "{{ redis_exporter_admin_dir }}/secret"}, register="redis_exporter_admin_secret",
                 no_log=True, when="not ansible_check_mode", **admin),
            # The running node takes the user now: no restart, no failover. redis-cli reads the admin's password as
            # the first line of its standard input (--askpass), then the command: the password is on no command line
            # and in no environment, and no_log keeps the task's arguments, stdin with them, out of Ansible's output.
            task("Add the exporter's ACL user to the running node", "ansible.builtin.command", {
                "argv": ["redis-cli", "--askpass", "--user", "platformc-admin", "-h", "127.0.0.1",
                         "-p", "{{ redis_exporter_redis_port }}"],
                "stdin": "{{ redis_exporter_admin_password }}\n{{ redis_exporter_setuser }}"},
                 register="redis_exporter_setuser_run", changed_when=True,
                 failed_when="redis_exporter_setuser_run.rc != 0 or redis_exporter_setuser_run.stdout != 'OK'",
                 no_log=True, when="redis_exporter_acl is changed and not ansible_check_mode"),
            template("Write the exporter's credentials for systemd", "redis-exporter.env.j2",
                     "{{ redis_exporter_conf_dir }}/credentials.env", mode="0600", no_log=True, diff=False,
                     notify="Restart redis_exporter", when=["redis_exporter_secret is not skipped", when_ready(r)]),
            *_unit(r),
        ]},
        handlers=[_restart(r)],
    )
