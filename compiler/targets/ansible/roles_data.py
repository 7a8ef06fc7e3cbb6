"""The postgresql and pgbouncer roles.

ONE SOURCE: the configuration files are the data-tier target's (generated/datastores/<region>/),
deployed byte for byte with `copy` from `<role>_source_dir`; these roles never template them. The
only templates here hold secrets the data tier must not: PgBouncer's auth_file and the replication
passfile, rendered from lookups of the spec's references. The paths, users and ports those files
name come from the data-tier modules' own constants, so both targets always agree.
"""

from __future__ import annotations

from compiler.ir import names
from compiler.targets.ansible import leader_sql, roles_internal_ca, roles_kong_tls
from compiler.targets.ansible.role import (Role, apt, cond, copy, expr, repository, service, services_ready_var,
                                            systemd_dropin, task,
                                            template, when_ready)
from compiler.targets.ansible.roles_tls import TOPIC

SOURCE_DIR = "{{ playbook_dir | dirname }}/datastores/{{ platformc_region }}"
POSTGRES_DATA_MOUNT = "/var/lib/postgresql"  # the PostgreSQL hosts' data disk (site.py mounts it there)
START_CONF = "manual\n"  # a cluster directory's start.conf: postgresql-common's units leave it to Patroni
# the data tier's platform-wide files (generated/datastores/shards.sql, the routing table: once, not per region)
PLATFORM_SOURCE_DIR = "{{ playbook_dir | dirname }}/datastores"
# setup.psql includes the region's two with \ir, and the platform's routing table as ../shards.sql: they are
# staged in the same layout as generated/datastores/ (<setup dir>/<region>/ and <setup dir>/shards.sql)
SETUP_FILES = ["setup.psql", "extensions.sql", "pgbouncer-auth.sql"]
PLATFORM_SETUP_FILES = ["shards.sql"]
SETUP_RECORD = "postgresql"  # its row in the cluster's platformc.applied (leader_sql)
# DR serving: the promoted copy's routing script, its row in that cluster's platformc.applied, and its tasks file
PROMOTED_RECORD = "dr-routing"
PROMOTED_TASKS = "promoted"


def source(role: str, name: str) -> str:
    """Where a role reads a data-tier file: `<role>_source_dir` (generated/datastores/<region>)."""
    return "{{ " + role + "_source_dir }}/" + name


def include_tls(directory: str, owner: str, group: str, key_mode: str = "0600", install_ca=True,
                reload: tuple[str, ...] = (), names: str = "") -> dict:
    """`reload`: the systemd units the renewal timer reloads after renewing this certificate (none: the service
    reads its certificate files again by itself). `names`: the certificate's DNS names (default: the host's own)."""
    return task("Issue this server's certificate from the region's CA", "ansible.builtin.include_role",
                {"name": "tls"}, vars={"tls_dir": directory, "tls_owner": owner, "tls_group": group,
                                       "tls_key_mode": key_mode, "tls_install_ca": install_ca,
                                       **({"tls_reload_units": list(reload)} if reload else {}),
                                       **({"tls_names": names} if names else {})})


def _patronictl(name: str, argv: list, role: str, **kw) -> dict:
    """Only where Patroni already runs this member's PostgreSQL: patronictl fails ("No any among provided members")
    for a member Patroni has not registered in the DCS yet, which it does on its first HA cycle, after its REST API
    answers; and a PostgreSQL Patroni has yet to start (bootstrap, a replica being copied) reads the new files then."""
    return leader_sql.as_postgres(name, ["patronictl", "-c", "{{ postgresql_patroni_config }}", *argv, "--force"],
                                  changed_when=True, throttle=1,
                                  when=[when_ready(role), "postgresql_runs_under_patroni"], **kw)


# ---------------------------------------------------------------- postgresql

PATRONI_APT_PIN = "/etc/apt/preferences.d/platformc-patroni"
# apt_preferences(5): "o=" is the Origin of a repository's Release file, which is apt.postgresql.org for that
# repository whatever mirror serves it; priority -1 means never install a version from there.
PATRONI_APT_PIN_CONTENT = """\
# Patroni from the distribution (platformc postgresql role): the PostgreSQL project's repository carries newer majors.
Package: patroni
Pin: release o=apt.postgresql.org
Pin-Priority: -1
"""

def _pg_install() -> list:
    return [
        apt("Install the APT repository tooling", ["python3-debian", "acl"]),
        repository("Add the PostgreSQL project's APT repository", "pgdg", "https://apt.postgresql.org/pub/repos/apt",
                   "{{ ansible_facts.distribution_release }}-pgdg", "https://www.postgresql.org/media/keys/ACCC4CF8.asc"),
        # That repository follows Debian unstable, so it carries Patroni's newest major as well, and apt installs the
        # highest version it sees: the patroni role (next in postgresql.yml) would get a Patroni its configuration
        # and handlers were not written for. PostgreSQL and its extensions come from it, Patroni never does.
        copy("Take Patroni from the distribution, never the PostgreSQL project's repository", PATRONI_APT_PIN,
             content=PATRONI_APT_PIN_CONTENT),
        repository("Add Timescale's APT repository", "timescaledb",
                   "https://packagecloud.io/timescale/timescaledb/{{ ansible_facts.distribution | lower }}/",
                   "{{ ansible_facts.distribution_release }}", "https://packagecloud.io/timescale/timescaledb/gpgkey",
                   when="'timescaledb' in postgresql_extensions"),
        # Patroni creates the cluster (initdb on the first leader, a copy on every other member): the package
        # must not make one of its own
        task("Create postgresql-common's configuration directory", "ansible.builtin.file",
             {"path": "/etc/postgresql-common", "state": "directory", "owner": "root", "group": "root", "mode": "0755"}),
        copy("Keep the package from creating a cluster", "/etc/postgresql-common/createcluster.conf",
             content="create_main_cluster = false\n"),
        apt("Install PostgreSQL and the packages of the spec's extensions", "{{ postgresql_packages }}",
            register="postgresql_install"),
        task("Download WAL-G (checksum pinned), which archive_command, restore_command and the backups run",
             "ansible.builtin.get_url",
             {"url": "https://github.com/wal-g/wal-g/releases/download/{{ postgresql_walg_version }}/"
                     "{{ postgresql_walg_asset }}.tar.gz",
              "dest": "/var/tmp/{{ postgresql_walg_asset }}-{{ postgresql_walg_version }}.tar.gz", "owner": "root",
              "group": "root", "mode": "0644", "checksum": "sha256:{{ postgresql_walg_sha256 }}"},
             when="postgresql_wal_archive"),
        task("Install WAL-G", "ansible.builtin.unarchive",
             {"src": "/var/tmp/{{ postgresql_walg_asset }}-{{ postgresql_walg_version }}.tar.gz", "remote_src": True,
              "dest": "/usr/local/lib", "owner": "root", "group": "root",
              "creates": "/usr/local/lib/{{ postgresql_walg_asset }}"},
             when="postgresql_wal_archive"),
        task("Put WAL-G where the data tier's commands call it", "ansible.builtin.file",
             {"src": "/usr/local/lib/{{ postgresql_walg_asset }}", "dest": names.WALG, "state": "link",
              "owner": "root", "group": "root"}, when="postgresql_wal_archive"),
    ]


# pgbouncer.ini settings a reload does not apply (CF_NO_RELOAD in PgBouncer's main.c): only a restart does
PGBOUNCER_START_ONLY = ("disable_pqexec", "job_name", "listen_addr", "listen_backlog", "listen_port", "pidfile",
                        "pkt_buf", "resolv_conf", "so_reuseport", "unix_socket_dir", "unix_socket_group",
                        "unix_socket_mode", "user")
PGBOUNCER_START_SETTINGS = "/etc/pgbouncer/platformc-start-settings"


def _pg_config() -> list:
    r = "postgresql"
    return [
        # /var/lib/postgresql/<version>: no package ships it (pg_createcluster makes it, and createclusters is off) and
        # the data volume mounted at /var/lib/postgresql starts empty. Patroni writes a replica's pgpass file there
        # before pg_basebackup (3.0.2 postgresql/config.py write_pgpass: a plain open, no makedirs): without it every
        # replica's bootstrap failed with FileNotFoundError, retried forever, and only the first member ran.
        task("Create the version directory the data directory and Patroni's pgpass file are in", "ansible.builtin.file",
             {"path": "{{ postgresql_data_dir | dirname }}", "state": "directory", "owner": "postgres",
              "group": "postgres", "mode": "0755"}),
        task("Create the configuration directory Patroni's custom_conf and hba_file point into", "ansible.builtin.file",
             {"path": "{{ postgresql_config_dir }}", "state": "directory", "owner": "postgres", "group": "postgres",
              "mode": "0755"}),
        # postgresql-common's systemd generator starts every cluster under /etc/postgresql whose start.conf is missing
        # or `auto` (postgresql@15-main, with postgresql.service): at each boot it would start this data directory
        # beside Patroni, a former leader read-write without the leader key. Patroni alone starts it (Debian's
        # patroni README; its pg_createcluster_patroni writes `manual` too).
        copy("Keep Debian's PostgreSQL units off the cluster Patroni runs", "{{ postgresql_config_dir }}/start.conf",
             mode="0644", owner="postgres", group="postgres", content=START_CONF),
        task("Issue this server's certificate (its name and the leader and replica endpoints)",
             "ansible.builtin.include_role", {"name": "tls"},
             vars={"tls_dir": "{{ postgresql_tls_dir }}", "tls_owner": "postgres", "tls_group": "postgres",
                   "tls_key_mode": "0600", "tls_install_ca": True, "tls_names": "{{ postgresql_tls_names }}",
                   # PostgreSQL reads its certificate at start and reload only: the renewal timer reloads each
                   # Patroni instance serving it (Patroni answers SIGHUP, systemd's reload, by reloading PostgreSQL)
                   "tls_reload_units": "{{ postgresql_patroni_units }}"}),
        template("Write the replication passfile", "pgpass.j2", "{{ postgresql_passfile }}", mode="0600",
                 owner="postgres", group="postgres", no_log=True, diff=False),
        copy("Install the data tier's postgresql.conf", "{{ postgresql_config_dir }}/postgresql.conf",
             owner="postgres", group="postgres", src=source(r, "postgresql.conf"), notify="Restart PostgreSQL"),
        copy("Install the data tier's pg_hba.conf", "{{ postgresql_config_dir }}/pg_hba.conf",
             mode="0640", owner="postgres", group="postgres", src=source(r, "pg_hba.conf"),
             notify="Reload PostgreSQL"),
        copy("Install an empty pg_ident.conf (no user maps)", "{{ postgresql_config_dir }}/pg_ident.conf",
             mode="0640", owner="postgres", group="postgres", content=""),
    ]


def _pg_setup() -> list:
    """The data tier's SQL, staged on every member (any may lead); tasks/leader.yml applies it on the leader."""
    r = "postgresql"
    return [
        task("Create the directories for the data tier's SQL", "ansible.builtin.file",
             {"path": "{{ postgresql_setup_dir_item }}", "state": "directory", "owner": "postgres", "group": "postgres",
              "mode": "0750"}, loop=["{{ postgresql_setup_dir }}", "{{ postgresql_setup_dir }}/{{ platformc_region }}"],
             loop_control={"loop_var": "postgresql_setup_dir_item"}),
        copy("Stage the data tier's setup.psql and the region's SQL it includes",
             "{{ postgresql_setup_dir }}/{{ platformc_region }}/{{ postgresql_sql_file }}",
             mode="0640", owner="postgres", group="postgres", src=source(r, "{{ postgresql_sql_file }}"),
             loop=SETUP_FILES, loop_control={"loop_var": "postgresql_sql_file"}),
        copy("Stage the platform's routing table, which setup.psql includes as ../shards.sql",
             "{{ postgresql_setup_dir }}/{{ postgresql_sql_file }}",
             mode="0640", owner="postgres", group="postgres", src="{{ postgresql_platform_source_dir }}/{{ postgresql_sql_file }}",
             loop=PLATFORM_SETUP_FILES, loop_control={"loop_var": "postgresql_sql_file"}),
    ]


def _cluster_wide_settings(r: str, leads: list) -> list:
    """The spec's cluster-wide Patroni settings (bootstrap.dcs: max_connections, max_worker_processes, max_wal_senders,
    wal_level, the HA timings ...) onto a running cluster. Patroni stores bootstrap.dcs once, when it creates the
    cluster, and ignores a local value of those PostgreSQL settings (3.0.2 config.py: its CMDLINE_OPTIONS): a change
    to them in the spec never reached a cluster that existed. `patronictl edit-config --apply -` merges the spec's
    values into the stored ones ("Not changed" when equal); every member then applies them in its next cycle, and
    those that need a restart are flagged and restarted, one after another (patronictl restart --pending)."""
    config = ["patronictl", "-c", "{{ postgresql_patroni_config }}"]
    flagged = cond("postgresql_dcs_pending.rc == 0 and (postgresql_dcs_pending.stdout | from_json",
                   "| rejectattr('Pending restart') | list | length == 0)")
    changed = [*leads, "postgresql_dcs is changed"]
    return [
        leader_sql.as_postgres("Apply the spec's cluster-wide Patroni settings",
                               [*config, "edit-config", "{{ patroni_scope }}", "--apply", "-", "--force"],
                               args={"stdin": "{{ patroni_config.bootstrap.dcs | to_nice_yaml(indent=2) }}"},
                               register="postgresql_dcs", changed_when="'Configuration changed' in postgresql_dcs.stdout",
                               when=leads),
        # a member applies the stored settings in its next HA cycle (loop_wait); a change that needs no restart
        # flags nobody, and the wait gives up without failing
        leader_sql.as_postgres("Wait until every member flags the restart the new settings need (none: none do)",
                               [*config, "list", "{{ patroni_scope }}", "--extended", "--format", "json"],
                               register="postgresql_dcs_pending", changed_when=False, failed_when=False, retries=6,
                               delay=5, until=flagged, when=changed),
        leader_sql.as_postgres("Restart the members the new settings need restarted, one after another",
                               [*config, "restart", "{{ patroni_scope }}", "--pending", "--force"],
                               changed_when=True, when=changed),
    ]


def _pg_leader() -> list:
    """After the patroni role (the play's post_tasks: Patroni runs, and the restarts the roles notified are done).
    setup.psql and the passwords on the leader, whenever what the cluster recorded is not what this run stages;
    both are safe to run again (setup.psql's steps are idempotent, ALTER ROLE ... PASSWORD sets the same value)."""
    r = "postgresql"
    leads = [when_ready(r), "postgresql_leader == inventory_hostname"]
    stale = [*leads, leader_sql.stale("postgresql_applied", "postgresql_setup_fingerprint")]
    return [
        leader_sql.wait_for_leader("postgresql_cluster", "postgresql_leader", when_ready(r)),
        *_cluster_wide_settings(r, leads),
        leader_sql.read_applied("Read the fingerprint of the data tier's SQL the cluster last applied", SETUP_RECORD,
                                "postgresql_applied", leads),
        leader_sql.as_postgres("Create the shard databases, extensions and roles",
                               [*leader_sql.psql(), "-f", "{{ postgresql_setup_dir }}/{{ platformc_region }}/setup.psql"],
                               changed_when=True, when=stale),
        leader_sql.as_postgres("Set the PostgreSQL role passwords and record what was applied", leader_sql.psql(),
                               args={"stdin": "{{ postgresql_roles_sql }}{{ postgresql_record_sql }}"}, no_log=True,
                               changed_when=True, when=stale),
    ]


def _pg_promoted_include() -> dict:
    """The last step of tasks/leader.yml: tasks/promoted.yml once per failed-over region this region serves from the
    standby cluster it promoted (`postgresql_promoted_routing`, which the inventory sets only then: no iteration
    otherwise). Its variables are the include's, so the role's vars stay as they are for every other region."""
    p = "postgresql_promoted"
    staged = "{{ postgresql_setup_dir }}/{{ platformc_region }}/{{ postgresql_promoted.file }}"
    return task("Write the routing table into the promoted copy of each failed-over region this region serves",
                "ansible.builtin.include_tasks", f"{PROMOTED_TASKS}.yml",
                loop="{{ postgresql_promoted_routing | default([]) }}",
                loop_control={"loop_var": p, "label": "{{ postgresql_promoted.region }}"},
                vars={
                    "postgresql_promoted_staged": staged,
                    "postgresql_promoted_leader": leader_sql.leader_var("postgresql_promoted_cluster"),
                    # what this run stages: the routing script and the routing table it includes, as the controller
                    # has them (the copies are the same bytes), and the cluster's timeline, which each promotion
                    # (and switchover) increments: a record this cluster took over from an earlier life (a rebuild
                    # from a promoted copy at fail-back, then a new standby of it) never passes for this one's
                    "postgresql_promoted_fingerprint": expr(
                        "(([lookup('ansible.builtin.file', postgresql_source_dir ~ '/' ~ postgresql_promoted.file)]",
                        *[f"+ [lookup('ansible.builtin.file', postgresql_platform_source_dir ~ '/{f}')]"
                          for f in PLATFORM_SETUP_FILES],
                        ") | join('\\n') | hash('sha256')) ~ '@' ~ (postgresql_promoted_applied.stdout_lines | first)"),
                    "postgresql_promoted_recorded": expr(
                        "postgresql_promoted_applied.stdout_lines[1:] | first | default('')"),
                    "postgresql_promoted_record_sql": leader_sql.record_sql(PROMOTED_RECORD,
                                                                            "postgresql_promoted_fingerprint"),
                })


def _pg_promoted() -> list:
    """tasks/promoted.yml, for one entry of `postgresql_promoted_routing` (DR serving: disaster_recovery.failed_over,
    compiler/ir/dr_serving.py). The promoted standby cluster is a copy of the lost region's, routing table included,
    which still sends that region's franchises to its PgBouncer, and no setup.psql runs there: the data tier's
    routing.psql (generated/datastores/<region>/dr-<lost>/routing.psql) rewrites it from the platform's shards.sql.
    It is staged on the cluster's hosts and run on the member its Patroni names the (promoted) leader, whenever what
    that cluster recorded (platformc.applied, as leader_sql) is not what this run stages; it is safe to run again."""
    r = "postgresql"
    on_hosts = "inventory_hostname in postgresql_promoted.hosts"
    port = "{{ postgresql_promoted.port }}"
    leads = [when_ready(r), on_hosts, "postgresql_promoted_leader == inventory_hostname"]
    return [
        task("Create the directory of the promoted copy's routing script", "ansible.builtin.file",
             {"path": "{{ postgresql_promoted_staged | dirname }}", "state": "directory", "owner": "postgres",
              "group": "postgres", "mode": "0750"}, when=on_hosts),
        copy("Stage the promoted copy's routing script (it includes the staged routing table, ../../shards.sql)",
             "{{ postgresql_promoted_staged }}", mode="0640", owner="postgres", group="postgres",
             src=source(r, "{{ postgresql_promoted.file }}"), when=on_hosts),
        # a read: it runs in check mode too
        task("Ask the promoted cluster's Patroni for its members", "ansible.builtin.uri",
             {"url": "https://{{ ansible_host }}:{{ postgresql_promoted.rest_port }}/cluster",
              "ca_path": leader_sql.CA_FILE}, register="postgresql_promoted_cluster", check_mode=False,
             when=[when_ready(r), on_hosts]),
        task("Stop the run while the standby cluster is not promoted (the region runbook's step 3 comes first)",
             "ansible.builtin.fail", {"msg": expr(
                 "'The standby cluster of ' ~ postgresql_promoted.region ~ ' (port ' ~ postgresql_promoted.port ~ ')'",
                 "~ ' has no running leader: its members are '",
                 "~ (postgresql_promoted_cluster.json.members | default([]) | map(attribute='role') | list)",
                 "~ '. disaster_recovery.failed_over lists ' ~ postgresql_promoted.region",
                 "~ ': promote the cluster first (patronictl edit-config --force -s standby_cluster=null), or remove '",
                 "~ postgresql_promoted.region ~ ' from the list.'")},
             when=[when_ready(r), on_hosts, "postgresql_promoted_leader | length == 0"]),
        leader_sql.read_applied("Read the promoted cluster's timeline and the fingerprint of the routing script it "
                                "last applied", PROMOTED_RECORD, "postgresql_promoted_applied", leads, port=port,
                                timeline=True),
        leader_sql.as_postgres("Write the platform's routing table into the promoted copy's shard databases and "
                               "record what was applied", leader_sql.psql(port=port),
                               args={"stdin": "\\i '{{ postgresql_promoted_staged }}'\n"
                                                      "{{ postgresql_promoted_record_sql }}"},
                               changed_when=True,
                               when=[*leads, "postgresql_promoted_recorded != postgresql_promoted_fingerprint"]),
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
            "postgresql_tls_dir": names.POSTGRES_TLS_DIR,
            "postgresql_passfile": names.POSTGRES_PASSFILE,
            "postgresql_setup_dir": "/var/lib/postgresql/platformc",
            "postgresql_replication_user": names.POSTGRES_REPLICATION_USER,
            "postgresql_pgbouncer_auth_user": "pgbouncer",
            "postgresql_service_roles": [],  # [{name, password}]: each service's role (group_vars)
            "postgresql_walg_version": names.WALG_VERSION,
            "postgresql_walg_asset": names.WALG_ASSET,
            "postgresql_walg_sha256": names.WALG_SHA256,
            "postgresql_tls_names": ["{{ ansible_host }}", "{{ inventory_hostname }}"],
            "postgresql_patroni_config": "/etc/patroni/{{ postgresql_version }}-main.yml",
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
            "postgresql_roles_sql": ROLES_SQL,
            # What this run stages: the SQL files as the controller has them (the copies above are the same bytes)
            # and the password script, so a rotation applies too. One hash over every password at once, kept where
            # only superusers read: it could not confirm a guess of any one of them.
            "postgresql_setup_fingerprint": expr(
                "([",
                *[f"lookup('ansible.builtin.file', postgresql_source_dir ~ '/{f}')," for f in SETUP_FILES],
                *[f"lookup('ansible.builtin.file', postgresql_platform_source_dir ~ '/{f}')," for f in PLATFORM_SETUP_FILES],
                "postgresql_roles_sql] | join('\\n') | hash('sha256'))"),
            "postgresql_record_sql": leader_sql.record_sql(SETUP_RECORD, "postgresql_setup_fingerprint"),
            "postgresql_leader": leader_sql.leader_var("postgresql_cluster"),
            "postgresql_runs_under_patroni": leader_sql.member_running_var("postgresql_member"),
            # the Patroni instances of this host, each serving the certificate in postgresql_tls_dir: the region's
            # member and each DR standby cluster it runs (the patroni role's units)
            "postgresql_patroni_units": expr(
                "([postgresql_version ~ '-main'] + (patroni_standby_clusters | default([])",
                "| selectattr('hosts', 'contains', inventory_hostname) | map(attribute='instance') | list))",
                "| map('regex_replace', '^', 'patroni@') | map('regex_replace', '$', '.service') | list"),
        },
        tasks={
            "main": [
                *_pg_install(),
                *_pg_config(),
                *_pg_setup(),
            ],
            "leader": [*_pg_leader(), _pg_promoted_include()],
            PROMOTED_TASKS: _pg_promoted(),
        },
        handlers=[
            # Patroni runs PostgreSQL: a changed file is applied through it, a member at a time. A changed
            # postgresql.conf ("Restart PostgreSQL") is first reloaded: Patroni sets a member's pending-restart flag
            # only when a reload finds a setting PostgreSQL cannot take without one (postgresql/config.py, the
            # pending_restart query after its reload), and `restart --pending` restarts only flagged members, so a
            # restart alone was refused and nothing was applied. Then, once Patroni has published the flag (its
            # next HA cycle), the flagged members restart. A new certificate needs only the reload. Handlers run in
            # the order written here.
            leader_sql.ask_cluster("Ask Patroni whether it runs this member's PostgreSQL", "postgresql_member",
                                   listen=["Restart PostgreSQL", "Reload PostgreSQL", TOPIC], when=when_ready(r)),
            _patronictl("Reload PostgreSQL", ["reload", "{{ patroni_scope }}", "{{ inventory_hostname }}"], r,
                        listen=["Restart PostgreSQL", TOPIC]),
            leader_sql.as_postgres(
                "Wait until Patroni flags the restart a new setting needs (none: the reload applied it)",
                ["patronictl", "-c", "{{ postgresql_patroni_config }}", "list", "{{ patroni_scope }}", "--extended",
                 "--format", "json"],
                register="postgresql_pending", changed_when=False, failed_when=False, retries=4, delay=5,
                until=cond(*leader_sql.pending_restart("postgresql_pending")),
                listen="Restart PostgreSQL", when=[when_ready(r), "postgresql_runs_under_patroni"]),
            _patronictl("Restart PostgreSQL", ["restart", "{{ patroni_scope }}", "{{ inventory_hostname }}", "--pending"],
                        r),
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
            # the pgbouncer.ini settings only a restart applies (PGBOUNCER_START_ONLY)
            "pgbouncer_start_only": list(PGBOUNCER_START_ONLY),
            "pgbouncer_tls_dir": names.PGBOUNCER_TLS_DIR,
            "pgbouncer_managed_postgres": False,
            "pgbouncer_server_ca_url": "",  # managed PostgreSQL: the provider's CA bundle
            "pgbouncer_server_ca_file": "",  # ... or a bundle on the controller, where there is no public URL
            "pgbouncer_nofile": 65536,  # the inventory sets the region's (ConnectionBudget.pgbouncer_nofile)
            # the certificate's names: the inventory adds the one the services dial (pgbouncer.<internal domain>)
            "pgbouncer_tls_names": ["{{ ansible_host }}", "{{ inventory_hostname }}"],
            **roles_internal_ca.DEFAULTS,  # publishing the region's CA for the pods (off unless the inventory says)
            **roles_kong_tls.DEFAULTS,  # Azure: Kong's certificate from the region's CA (off unless the inventory says)
        },
        vars={**services_ready_var(r, "pgbouncer_install"), **roles_internal_ca.VARS, **roles_kong_tls.VARS},
        tasks={"main": [
            apt("Install PgBouncer", ["pgbouncer"], register="pgbouncer_install"),
            # ca.crt verifies the server PgBouncer connects to: the region's CA for a self-managed
            # primary, the provider's CA for a managed one (the data tier's server_tls_ca_file)
            include_tls("{{ pgbouncer_tls_dir }}", "postgres", "postgres",
                        install_ca="{{ not pgbouncer_managed_postgres }}", reload=("pgbouncer.service",),
                        names="{{ pgbouncer_tls_names }}"),
            # the CA that just issued this certificate, to the store the pods' ExternalSecrets read (once per run)
            *roles_internal_ca.publish_tasks(),
            # Azure: Kong's serving certificate from the same CA, and the CA as the gateway's trusted root
            *roles_kong_tls.issue_tasks(),
            *roles_kong_tls.publish_tasks(),
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
            # A reload keeps the settings PgBouncer reads only at start (its CF_NO_RELOAD ones: where it listens, its
            # pidfile, its user): a new port got a firewall opening while PgBouncer kept the old one. Those lines of
            # the same file, kept apart, restart it when they change.
            copy("Record the pgbouncer.ini settings only a restart applies", PGBOUNCER_START_SETTINGS,
                 content="{% for setting in lookup('ansible.builtin.file', pgbouncer_source_dir ~ '/pgbouncer.ini')\n"
                         "   | regex_findall('(?m)^(?:' ~ pgbouncer_start_only | join('|') ~ ') *=.*$') %}"
                         "{{ setting }}\n{% endfor %}",
                 notify="Restart PgBouncer"),
            template("Write the auth_file with the auth_user's password", "userlist.txt.j2",
                     "{{ pgbouncer_auth_file }}", mode="0640", owner="postgres", group="postgres",
                     no_log=True, diff=False, notify="Reload PgBouncer"),
            # Debian's unit keeps systemd's 1024 descriptors: PgBouncer refused clients past ~1,000 while
            # max_client_conn is far higher. LimitNOFILE comes from the IR (every client and server connection + margin)
            *systemd_dropin("Raise PgBouncer's open-file limit for max_client_conn", "pgbouncer.service", "limits.conf",
                            "[Service]\nLimitNOFILE={{ pgbouncer_nofile }}\n", notify="Restart PgBouncer"),
            service("Start PgBouncer at boot", "pgbouncer", r),
        ]},
        handlers=[service("Reload PgBouncer", "pgbouncer", r, state="reloaded", enabled=None, listen=TOPIC),
                  task("Reload systemd for PgBouncer's limits", "ansible.builtin.systemd_service", {"daemon_reload": True},
                       listen="Restart PgBouncer", when="ansible_facts.service_mgr == 'systemd'"),
                  # One host at a time, so the region's other PgBouncers keep serving while one drops its clients.
                  service("Restart PgBouncer", "pgbouncer", r, state="restarted", enabled=None, throttle=1)],
    )
