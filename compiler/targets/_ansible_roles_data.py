"""The data roles: postgresql, pgbouncer, redis.

ONE SOURCE: the configuration files are the data-tier target's (generated/datastores/<region>/),
deployed byte for byte with `copy` from `<role>_source_dir`; these roles never template them. The
only templates here render secrets the data tier must not hold (PgBouncer's auth_file, the Redis
password include), from lookups of the spec's references.
"""

from __future__ import annotations

from compiler.targets._ansible_role import (Role, apt, copy, expr, repository, service, services_ready_var, task,
                                            template, when_ready)

SOURCE_DIR = "{{ playbook_dir | dirname }}/datastores/{{ platformc_region }}"


def _source(role: str, name: str) -> str:
    return "{{ " + role + "_source_dir }}/" + name


def _psql(name: str, sql_file: str | None = None, stdin: str | None = None, **kw) -> dict:
    """psql as the postgres superuser over the local socket, stopping at the first error."""
    cmd: dict = {"argv": ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "postgres"]}
    if sql_file:
        cmd["argv"] += ["-f", sql_file]
    if stdin:
        cmd["stdin"] = stdin
    return task(name, "ansible.builtin.command", cmd, become=True, become_user="postgres", **kw)


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
    ]


def _pg_config() -> list:
    r = "postgresql"
    return [
        copy("Install the data tier's server settings", "{{ postgresql_config_dir }}/conf.d/platformc.conf",
             owner="postgres", group="postgres", src=_source(r, "postgresql.conf"), notify="Restart PostgreSQL"),
        copy("Install the data tier's client authentication rules", "{{ postgresql_config_dir }}/pg_hba.conf",
             mode="0640", owner="postgres", group="postgres", src=_source(r, "pg_hba.conf"),
             notify="Reload PostgreSQL"),
    ]


def _pg_primary() -> list:
    r = "postgresql"
    sql_dir = "{{ postgresql_sql_dir }}"
    return [
        service("Start PostgreSQL at boot", "{{ postgresql_service }}", r),
        task("Apply pending settings before configuring roles", "ansible.builtin.meta", "flush_handlers"),
        copy("Record the fingerprints of the role passwords", "{{ postgresql_sql_dir }}/passwords.sha256",
             mode="0600", owner="postgres", group="postgres",
             content="{{ postgresql_password_fingerprints }}", notify="Set the PostgreSQL role passwords",
             diff=False),
        copy("Stage the data tier's shard databases and extensions", f"{sql_dir}/{{{{ postgresql_sql_file }}}}",
             mode="0640", owner="postgres", group="postgres", src=_source(r, "{{ postgresql_sql_file }}"),
             loop=["shards.sql", "extensions.sql"], loop_control={"loop_var": "postgresql_sql_file"},
             notify="Apply the shard databases and extensions"),
    ]


def _pg_replica() -> list:
    r = "postgresql"
    primary = "{{ hostvars[postgresql_replica_of].ansible_host }}"
    return [
        task("Check whether this replica was cloned from the primary", "ansible.builtin.stat",
             {"path": "{{ postgresql_clone_marker }}"}, register="postgresql_cloned"),
        service("Stop the package's empty cluster before cloning", "{{ postgresql_service }}", r,
                state="stopped", enabled=None, when="not postgresql_cloned.stat.exists"),
        task("Remove the package's empty cluster", "ansible.builtin.file",
             {"path": "{{ postgresql_data_dir }}", "state": "absent"},
             when="not postgresql_cloned.stat.exists"),
        task("Clone the primary with pg_basebackup", "ansible.builtin.command", {
            "argv": ["pg_basebackup", "-h", primary, "-p", "{{ postgresql_port }}", "-U",
                     "{{ postgresql_replication_user }}", "-D", "{{ postgresql_data_dir }}",
                     "-X", "stream", "-R", "--checkpoint=fast", "--no-password"],
            "creates": "{{ postgresql_data_dir }}/standby.signal"},
            become=True, become_user="postgres",
            environment={"PGPASSWORD": "{{ postgresql_replication_password }}"}, no_log=True,
            when="not postgresql_cloned.stat.exists"),
        copy("Mark the replica as cloned", "{{ postgresql_clone_marker }}", mode="0644",
             content="cloned from {{ postgresql_replica_of }}\n"),
        service("Start PostgreSQL at boot", "{{ postgresql_service }}", r),
    ]


def postgresql() -> Role:
    r = "postgresql"
    tasks = {
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
    }
    return Role(
        name=r,
        description="PostgreSQL from the PGDG repository with the spec's extensions, the data tier's config files, streaming replicas.",
        defaults={
            "postgresql_version": 15,
            "postgresql_extensions": [],
            "postgresql_port": 5432,
            "postgresql_source_dir": SOURCE_DIR,
            "postgresql_config_dir": "/etc/postgresql/{{ postgresql_version }}/main",
            "postgresql_data_dir": "/var/lib/postgresql/{{ postgresql_version }}/main",
            "postgresql_sql_dir": "/var/lib/postgresql/platformc",
            "postgresql_service": "postgresql@{{ postgresql_version }}-main",
            "postgresql_clone_marker": "/var/lib/postgresql/{{ postgresql_version }}/platformc-cloned",
            "postgresql_replication_user": "replicator",
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
            # A change of either password (a rotation) changes this, which re-runs the ALTER ROLEs.
            "postgresql_password_fingerprints": (
                "{{ (inventory_hostname ~ postgresql_admin_password) | hash('sha256') }} postgres\n"
                "{{ (inventory_hostname ~ postgresql_replication_password) | hash('sha256') }} "
                "{{ postgresql_replication_user }}\n"),
        },
        tasks=tasks,
        handlers=[
            service("Restart PostgreSQL", "{{ postgresql_service }}", r, state="restarted", enabled=None),
            service("Reload PostgreSQL", "{{ postgresql_service }}", r, state="reloaded", enabled=None),
            _psql("Set the PostgreSQL role passwords", stdin="{{ postgresql_roles_sql }}", no_log=True,
                  changed_when=True, when=when_ready(r)),
            _psql("Apply the shard databases and extensions", None, changed_when=True, when=when_ready(r),
                  loop=["shards.sql", "extensions.sql"]),
        ],
    )


def pgbouncer() -> Role:
    r = "pgbouncer"
    return Role(
        name=r,
        description="PgBouncer with the data tier's pgbouncer.ini and an auth_file holding only the auth_user's secret.",
        defaults={
            "pgbouncer_source_dir": SOURCE_DIR,
            "pgbouncer_auth_user": "pgbouncer",
            "pgbouncer_auth_file": "/etc/pgbouncer/userlist.txt",
        },
        vars=services_ready_var(r, "pgbouncer_install"),
        tasks={"main": [
            apt("Install PgBouncer", ["pgbouncer"], register="pgbouncer_install"),
            copy("Install the data tier's pgbouncer.ini", "/etc/pgbouncer/pgbouncer.ini", mode="0640",
                 owner="postgres", group="postgres", src=_source(r, "pgbouncer.ini"), notify="Reload PgBouncer"),
            template("Write the auth_file with the auth_user's password", "userlist.txt.j2",
                     "{{ pgbouncer_auth_file }}", mode="0640", owner="postgres", group="postgres",
                     no_log=True, diff=False, notify="Reload PgBouncer"),
            service("Start PgBouncer at boot", "pgbouncer", r),
        ]},
        handlers=[service("Reload PgBouncer", "pgbouncer", r, state="reloaded", enabled=None)],
    )


# ---------------------------------------------------------------- redis

REDIS_SYSCTL = """\
# Redis (platformc redis role): fork for snapshots without failing on overcommit, deeper accept queue.
vm.overcommit_memory = 1
net.core.somaxconn = 1024
"""
REDIS_THP = "# Redis (platformc redis role): no transparent huge pages (latency, copy-on-write bloat).\n" \
            "w /sys/kernel/mm/transparent_hugepage/enabled - - - - never\n"


def _redis_cluster() -> list:
    """Form the cluster once, from the first node: primaries first, then each replica under its primary.

    `--cluster create --cluster-replicas N` would pair replicas itself; attaching each replica to the
    primary the IR names keeps the zones the spec's placement chose.
    """
    cli = ["redis-cli", "-h", "{{ redis_first_address }}", "-p", "{{ redis_port }}"]
    first = "{{ redis_nodes[0] }}"
    auth = {"REDISCLI_AUTH": "{{ redis_password }}"}
    return [
        task("Read the cluster state from the first node", "ansible.builtin.command",
             {"argv": [*cli, "cluster", "info"]}, environment=auth, changed_when=False,
             register="redis_cluster_info", delegate_to=first, run_once=True),
        task("Create the cluster from the primaries", "ansible.builtin.command", {
            "argv": "{{ ['redis-cli', '--cluster', 'create'] + redis_primary_endpoints"
                    " + ['--cluster-replicas', '0', '--cluster-yes'] }}"},
             environment=auth, changed_when=True, delegate_to=first, run_once=True,
             when="'cluster_slots_assigned:0' in redis_cluster_info.stdout"),
        task("Read each primary's node id", "ansible.builtin.command",
             {"argv": ["redis-cli", "-h", "{{ hostvars[redis_primary].ansible_facts.default_ipv4.address }}", "-p", "{{ redis_port }}",
                       "cluster", "myid"]},
             environment=auth, changed_when=False, register="redis_primary_ids", delegate_to=first, run_once=True,
             loop="{{ redis_primaries_names }}", loop_control={"loop_var": "redis_primary"}),
        task("Read the nodes the cluster knows", "ansible.builtin.command", {"argv": [*cli, "cluster", "nodes"]},
             environment=auth, changed_when=False, register="redis_cluster_nodes", delegate_to=first, run_once=True),
        task("Attach each replica to the primary the spec names", "ansible.builtin.command", {
            "argv": ["redis-cli", "--cluster", "add-node",
                     "{{ hostvars[redis_replica].ansible_facts.default_ipv4.address }}:{{ redis_port }}",
                     "{{ hostvars[redis_nodes[0]].ansible_facts.default_ipv4.address }}:{{ redis_port }}",
                     "--cluster-slave", "--cluster-master-id", "{{ redis_node_ids[hostvars[redis_replica].redis_replica_of] }}"]},
             environment=auth, changed_when=True, delegate_to=first, run_once=True,
             loop="{{ redis_replica_names }}", loop_control={"loop_var": "redis_replica"},
             when="(hostvars[redis_replica].ansible_facts.default_ipv4.address ~ ':' ~ redis_port ~ '@') not in redis_cluster_nodes.stdout"),
    ]


def redis() -> Role:
    r = "redis"
    return Role(
        name=r,
        description="Redis Cluster nodes with the data tier's redis.conf and a password include, then the cluster, formed once.",
        defaults={
            "redis_source_dir": SOURCE_DIR,
            "redis_port": 6379,
            "redis_conf_dir": "/etc/redis",
            "redis_auth_include": "/etc/redis/platformc-auth.conf",
        },
        vars={
            **services_ready_var(r, "redis_install"),
            "redis_address": "{{ ansible_facts.default_ipv4.address }}",
            "redis_nodes": "{{ groups['redis_cluster'] }}",
            "redis_first_address": "{{ hostvars[redis_nodes[0]].ansible_facts.default_ipv4.address }}",
            "redis_primaries_names": "{{ redis_nodes | reject('in', redis_replica_names) | list }}",
            "redis_replica_names": expr(
                "redis_nodes | map('extract', hostvars) | selectattr('redis_replica_of', 'defined')",
                "| map(attribute='inventory_hostname') | list"),
            "redis_primary_endpoints": expr(
                "redis_primaries_names | map('extract', hostvars, ['ansible_facts', 'default_ipv4', 'address'])",
                "| map('regex_replace', '$', ':' ~ redis_port) | list"),
            "redis_node_ids": expr(
                "dict(redis_primary_ids.results | map(attribute='redis_primary')",
                "| zip(redis_primary_ids.results | map(attribute='stdout')))"),
        },
        tasks={
            "main": [
                copy("Let Redis fork for snapshots", "/etc/sysctl.d/60-redis.conf", content=REDIS_SYSCTL,
                     notify="Apply the Redis kernel settings"),
                copy("Turn transparent huge pages off at boot", "/etc/tmpfiles.d/redis-thp.conf", content=REDIS_THP,
                     notify="Apply the Redis kernel settings"),
                apt("Install Redis", ["redis-server", "redis-tools"], register="redis_install"),
                task("Read the installed package versions", "ansible.builtin.package_facts", {"manager": "apt"}),
                task("Check that the installed Redis is the version the spec names", "ansible.builtin.assert", {
                    "that": ["ansible_facts.packages['redis-server'][0].version is search(':' ~ redis_version ~ '\\\\.')"],
                    "fail_msg": "redis-server {{ ansible_facts.packages['redis-server'][0].version }} is installed, "
                                "the spec asks for {{ redis_version }}"},
                     when="'redis-server' in ansible_facts.packages"),
                copy("Install the data tier's redis.conf", "{{ redis_conf_dir }}/redis.conf", mode="0640",
                     owner="redis", group="redis", src=_source(r, "redis.conf"), notify="Restart Redis"),
                template("Write the password include", "redis-auth.conf.j2", "{{ redis_auth_include }}", mode="0640",
                         owner="redis", group="redis", no_log=True, diff=False, notify="Restart Redis"),
                service("Start Redis at boot", "redis-server", r),
                task("Apply changed settings before forming the cluster", "ansible.builtin.meta", "flush_handlers"),
                task("Form the cluster", "ansible.builtin.import_tasks", "cluster.yml", when="not ansible_check_mode"),
            ],
            "cluster": _redis_cluster(),
        },
        handlers=[
            task("Apply the Redis kernel settings", "ansible.builtin.command", {"cmd": "sysctl --system"},
                 changed_when=True, when=when_ready(r)),
            # One node at a time: the cluster fails a primary over instead of losing its slots.
            service("Restart Redis", "redis-server", r, state="restarted", enabled=None, throttle=1),
        ],
    )
