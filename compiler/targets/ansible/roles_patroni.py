"""PostgreSQL high availability on the hosts: the etcd, patroni and data_disk roles, and Patroni's configuration.

Patroni's configuration is data built here from the IR (RegionPlan.postgres_ha, compiler/ir/postgres_ha.py) and
written into the region's group_vars (`patroni_config`, `patroni_standby_clusters`); the patroni role writes it
out with to_nice_yaml. The PostgreSQL settings are not restated: `postgresql.custom_conf` is the data tier's
postgresql.conf (generated/datastores/<region>/, installed by the postgresql role) and `hba_file` its
pg_hba.conf, so Patroni's own postgresql.conf is `include '<the data tier's file>'` plus the few parameters
Patroni must own (the synchronous standby names, the recovery settings of a replica or a standby cluster).

Only the host's own names are left to Ansible: `{{ inventory_hostname }}` (the member name) and
`{{ ansible_host }}` (its FQDN, which the region's private DNS resolves).
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.data_access import published_ca_ref
from compiler.ir.names import (ETCD_METRICS_PORT, ETCD_SCRAPE_JOB, PATRONI_CONFIG_DIR, POSTGRES_PORT,
                               POSTGRES_REPLICATION_USER, POSTGRES_TLS_DIR)
from compiler.ir.postgres_ha import (ETCD_AUTO_COMPACTION_MODE, ETCD_AUTO_COMPACTION_RETENTION, ETCD_DEFRAG_FIRST_HOUR,
                                     ETCD_QUOTA_ALERT_FOR, ETCD_QUOTA_ALERT_SHARE, ETCD_QUOTA_BACKEND_BYTES,
                                     FENCE_LAYER, standby_hba_file)
from compiler.ir.postgres_sizing import HOT_STANDBY_PARAMETERS, patroni_dcs_parameters, standby_memory_parameters
from compiler.ir.wal_archive import promoted_archive_command, standby_restore_command
from compiler.targets.ansible.role import (Role, apt, cond, copy, expr, installed_version_check, service, services_ready_var,
                                            systemd_dropin, systemd_timer, task, when_ready)
from compiler.targets.ansible import leader_sql
from compiler.targets.ansible.roles_data import POSTGRES_DATA_MOUNT, START_CONF
from compiler.targets.ansible.roles_redis import ADDRESS

PATRONI_INSTANCE = "{{ postgresql_version }}-main"  # Debian's patroni@<instance>.service reads /etc/patroni/<instance>.yml
CALLBACK = "/usr/local/lib/platformc/patroni-callback"
# The split-brain fence (compiler/ir/postgres_ha.py FENCE_LAYER): the script the main cluster's unit runs before
# Patroni starts, its drop-in, and the two files beside the cluster's configuration that latch it shut (the script
# writes it) and open it on purpose (an operator writes it: the runbook's step 5)
FENCE = "/usr/local/lib/platformc/patroni-fence"
FENCE_DROPIN = "fence.conf"
FENCED = PATRONI_CONFIG_DIR + "/" + PATRONI_INSTANCE + ".fenced"
UNFENCED = PATRONI_CONFIG_DIR + "/" + PATRONI_INSTANCE + ".unfenced"
SOCKET_DIR = "/var/run/postgresql"
BIN_DIR = "/usr/lib/postgresql/{version}/bin"
ETCD_TLS_DIR = "/etc/etcd/tls"
ETCD_DEFRAG_UNIT = "/etc/systemd/system/platformc-etcd-defrag"
# the region docs' figures (the runbook's etcd paragraph)
ETCD_HOUSEKEEPING = {"mode": ETCD_AUTO_COMPACTION_MODE, "retention": ETCD_AUTO_COMPACTION_RETENTION,
                     "quota_gib": ETCD_QUOTA_BACKEND_BYTES / 1024 ** 3, "first_hour": ETCD_DEFRAG_FIRST_HOUR,
                     "alert_percent": round(ETCD_QUOTA_ALERT_SHARE * 100), "alert_for": ETCD_QUOTA_ALERT_FOR,
                     "job": ETCD_SCRAPE_JOB}
# etcdctl (Debian etcd-client, API v3 by default) against this member's own endpoint only: `defrag` with several
# endpoints defragments them all at once. The member's certificate is its client certificate, as for its peers.
ETCD_DEFRAG_SERVICE = f"""\
# Managed by Ansible (platformc etcd role).
[Unit]
Description=Defragment this etcd member (gives the space history compaction freed back to the file system)
Requisite=etcd.service
After=etcd.service

[Service]
Type=oneshot
User=etcd
ExecStart=/usr/bin/etcdctl --endpoints=https://{{{{ ansible_host }}}}:{{{{ etcd_client_port }}}} \\
  --cacert={ETCD_TLS_DIR}/ca.crt --cert={ETCD_TLS_DIR}/server.crt --key={ETCD_TLS_DIR}/server.key \\
  --command-timeout=60s defrag
"""
ETCD_DEFRAG_TIMER = """\
# Managed by Ansible (platformc etcd role).
[Unit]
Description=Daily defragmentation of this etcd member, at its own hour

[Timer]
OnCalendar=*-*-* {{ etcd_defrag_hour }}:30:00

[Install]
WantedBy=timers.target
"""
DATA_DISK_SCRIPT = "/usr/local/sbin/platformc-data-disk-id"  # a directory every host has: data_disk runs first
# The failover drill's figures (tests/targets/test_patroni_failover.py, which asserts the goals on every run), as
# the docs' runbook states them: seconds, and rows lost.
DRILL = {"when": "measured 2026-12-02 on a shared 2-core machine, loopback, ttl 30 s, loop_wait 10 s",
         "failover_seconds": "21-31 s", "rows_lost_in_region": "0 (of 548-2,218 committed)",
         "rejoin_seconds": "27 s", "restart_write_archived_seconds": "60 s (more than 180 s before the callback)",
         "promotion_seconds": "1.8-1.9 s", "seconds_lost_across_regions": "0.01 s (0 of 5,590 rows)"}


def _rest(port: int) -> dict:
    return {"listen": f"0.0.0.0:{port}", "connect_address": f"{{{{ ansible_host }}}}:{port}",
            "certfile": f"{POSTGRES_TLS_DIR}/server.crt", "keyfile": f"{POSTGRES_TLS_DIR}/server.key",
            "authentication": {"username": "patroni", "password": "{{ postgresql_admin_password }}"}}


def _etcd(ha) -> dict:
    return {"hosts": [f"{f}:{ha.etcd_client_port}" for f in ha.etcd_fqdns], "protocol": "https",
            "cacert": f"{POSTGRES_TLS_DIR}/ca.crt", "cert": f"{POSTGRES_TLS_DIR}/server.crt",
            "key": f"{POSTGRES_TLS_DIR}/server.key"}


def _postgresql(version: int, instance: str, port: int, data_dir: str, config_dir: str, admin: str,
                replication: str, replication_ca: str = f"{POSTGRES_TLS_DIR}/ca.crt") -> dict:
    return {
        "listen": f"0.0.0.0:{port}",
        "connect_address": f"{{{{ ansible_host }}}}:{port}",
        "data_dir": data_dir,
        "bin_dir": BIN_DIR.format(version=version),
        "pgpass": f"{data_dir}.patroni-pgpass",  # Patroni's own; the data tier's passfile stays the data tier's
        "custom_conf": f"{config_dir}/postgresql.conf",
        "use_unix_socket": True,
        "use_unix_socket_repl": False,
        "parameters": {
            # the data tier's files name /var/lib/postgresql/<v>/main; a standby cluster lives beside it
            "data_directory": data_dir,
            "hba_file": f"{config_dir}/pg_hba.conf",
            "ident_file": f"{config_dir}/pg_ident.conf",
            "unix_socket_directories": SOCKET_DIR,
            # each cluster of a host its own (a standby cluster includes its source's file, which names `main`)
            "external_pid_file": f"{SOCKET_DIR}/{instance}.pid",
            "cluster_name": instance,
        },
        "authentication": {
            "superuser": {"username": "postgres", "password": "{{ " + admin + " }}"},
            "replication": {"username": POSTGRES_REPLICATION_USER, "password": "{{ " + replication + " }}",
                            "sslmode": "verify-full", "sslrootcert": replication_ca},
        },
        # an old leader whose timeline diverged is copied again from the new one
        "remove_data_directory_on_diverged_timelines": True,
        "create_replica_methods": ["basebackup"],
        "basebackup": [{"checkpoint": "fast"}],  # Patroni streams the WAL itself (--wal-method=stream)
        # the cluster's own port: Patroni runs the command (shlex-split, then the action, role and scope) in its
        # own environment, which names no port, so psql reached the host's default cluster, not a DR standby's
        "callbacks": {k: f"/usr/bin/env PGPORT={port} {CALLBACK}" for k in ("on_start", "on_restart", "on_role_change")},
    }


def patroni_config(plan: PlatformPlan, region: RegionPlan) -> dict:
    """/etc/patroni/<v>-main.yml of the region's own cluster (Jinja only for the host's names and the secrets)."""
    ha = region.postgres_ha
    pg = region.settings.datastores.postgres
    rpo_bytes = 16 * 1024 * 1024  # one WAL segment: an asynchronous candidate further behind never leads
    return {
        "scope": ha.scope,
        "namespace": ha.namespace,
        "name": "{{ inventory_hostname }}",
        "restapi": _rest(ha.rest_port),
        "ctl": {"cacert": f"{POSTGRES_TLS_DIR}/ca.crt"},
        "etcd3": _etcd(ha),
        "bootstrap": {
            "dcs": {
                "ttl": ha.ttl, "loop_wait": ha.loop_wait, "retry_timeout": ha.retry_timeout,
                # the leader keeps running through an etcd outage while it reaches every member (postgres_ha.py)
                "failsafe_mode": ha.failsafe,
                "maximum_lag_on_failover": rpo_bytes,
                # a commit waits for one in-region replica: a failover in the region loses nothing committed
                "synchronous_mode": ha.synchronous,
                "postgresql": {"use_pg_rewind": False, "use_slots": True,
                               "parameters": patroni_dcs_parameters(region)},
            },
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
        },
        "postgresql": _postgresql(pg.version, f"{pg.version}-main", POSTGRES_PORT, ha.data_dir, ha.config_dir,
                                  "postgresql_admin_password", "postgresql_replication_password"),
        "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
    }


def standby_configs(plan: PlatformPlan, region: RegionPlan, secret) -> list[dict]:
    """One standby cluster per region whose DR partner this one is: its scope, ports, hosts, the source's files
    and passwords, and its Patroni configuration (standby_cluster: streaming from the source's sync endpoint, and
    restoring the source's WAL archive with wal-g wal-fetch, compiler/ir/wal_archive.py)."""
    ha = region.postgres_ha
    out = []
    for sb in ha.standbys:
        src = plan.region(sb.of_region)
        spg = src.settings.datastores.postgres
        key = sb.of_region.replace("-", "_")
        instance = f"{spg.version}-dr-{sb.of_region}"  # Debian's patroni@<instance>.service, /etc/patroni/<instance>.yml
        standby_cluster = {"host": sb.primary_host, "port": sb.primary_port, "create_replica_methods": ["basebackup"]}
        # The source's postgresql.conf (custom_conf) restores from the source's own bucket, which this region's hosts
        # may not read: where the source's backups are replicated here, the copy in this region's bucket under the
        # source's prefix, else the source's bucket (wal_archive.standby_archive_region). Patroni (3.0) writes
        # standby_cluster.restore_command into the recovery settings after its `include` of custom_conf, on the
        # standby leader and its cascading replicas alike, and strips recovery settings from postgresql.auto.conf:
        # this one wins. Like host and port it is bootstrap.dcs, which Patroni stores when it creates the cluster:
        # a standby cluster bootstrapped before takes a change with `patronictl edit-config`.
        restore = standby_restore_command(region, src)
        if restore:
            standby_cluster["restore_command"] = restore
        config = {
            "scope": sb.scope,
            "namespace": ha.namespace,
            "name": "{{ inventory_hostname }}",
            "restapi": _rest(sb.rest_port),
            "ctl": {"cacert": f"{POSTGRES_TLS_DIR}/ca.crt"},
            "etcd3": _etcd(ha),
            "bootstrap": {"dcs": {
                "ttl": ha.ttl, "loop_wait": ha.loop_wait, "retry_timeout": ha.retry_timeout,
                # no effect while a standby (its leader is in recovery); the promoted cluster keeps it
                "failsafe_mode": ha.failsafe,
                "standby_cluster": standby_cluster,
                "postgresql": {"use_pg_rewind": False, "use_slots": False,
                               "parameters": patroni_dcs_parameters(src)},
            }},
            # it streams from the source region's servers, whose certificates that region's own CA signs
            "postgresql": _standby_postgresql(region, src, sb, key, instance),
            "tags": {"nofailover": False, "noloadbalance": True, "clonefrom": False, "nosync": True},
        }
        out.append({"region": sb.of_region, "instance": instance, "hosts": list(sb.hosts),
                    "port": sb.port, "rest_port": sb.rest_port, "data_dir": sb.data_dir, "config_dir": sb.config_dir,
                    "hba_file": standby_hba_file(sb.of_region), "config": config})
    return out


def _standby_postgresql(region: RegionPlan, src: RegionPlan, sb, key: str, instance: str) -> dict:
    """A standby cluster's local `postgresql` section. Over the source's postgresql.conf (custom_conf), which Patroni
    includes before its own parameters: the memory this host keeps for it (postgres_sizing.standby_sizing; the
    source's own sizing, once per standby, would overcommit the host), and, for after a promotion, an
    archive_command into this region's bucket (wal_archive.promoted_archive_command)."""
    spg = src.settings.datastores.postgres
    out = _postgresql(spg.version, instance, sb.port, sb.data_dir, sb.config_dir,
                      f"patroni_standby_passwords.{key}.admin", f"patroni_standby_passwords.{key}.replication",
                      standby_ca_file(sb.of_region))
    out["parameters"].update(standby_memory_parameters(region, src))
    archive = promoted_archive_command(region, src)
    if archive:
        out["parameters"]["archive_command"] = archive
    return out


def standby_ca_file(source: str) -> str:
    """Where a standby cluster of `source` finds that region's CA certificate (its sslrootcert)."""
    return f"{POSTGRES_TLS_DIR}/dr-{source}-ca.crt"


def standby_cas(plan: PlatformPlan, region: RegionPlan, secret) -> dict:
    """Each source region's internal CA certificate, read from the store its pgbouncer role publishes it to: a
    standby verifies the source's servers (verify-full), and each region's CA is its own (the tls role makes it on
    the region's first bastion), so this region's ca.crt could not. The source's Ansible run must have published it
    (its pgbouncer.yml) before this region's postgresql.yml runs."""
    out = {}
    for sb in region.postgres_ha.standbys:
        src = plan.region(sb.of_region)
        ref = published_ca_ref(src)
        if ref:
            out[sb.of_region.replace("-", "_")] = secret(plan, src, ref)
    return out


def standby_passwords(plan: PlatformPlan, region: RegionPlan, secret) -> dict:
    out = {}
    for sb in region.postgres_ha.standbys:
        src = plan.region(sb.of_region)
        spg = src.settings.datastores.postgres
        out[sb.of_region.replace("-", "_")] = {"admin": secret(plan, src, spg.admin_password),
                                                "replication": secret(plan, src, spg.replication_password)}
    return out


def fence_ca_file(partner: str) -> str:
    """Where a region's members find their DR partner's CA certificate, which verifies the partner's hosts' REST API
    certificates (each region's CA is its own) when the fence asks them."""
    return f"{POSTGRES_TLS_DIR}/fence-{partner}-ca.crt"


FENCE_CA = fence_ca_file("{{ patroni_fence.partner }}")


def fence(plan: PlatformPlan, region: RegionPlan, secret) -> dict:
    """`patroni_fence` and `patroni_fence_ca`: what the fence of the region's own cluster asks, read from the region's
    wiring (its FENCE_LAYER connection: the members of the standby cluster its DR partner runs of it, on that cluster's
    REST port), and the partner's CA, read from the store the partner's pgbouncer role publishes it to (as
    standby_cas). Empty without a standby cluster of the region anywhere: the role then removes the drop-in."""
    conns = region.through(FENCE_LAYER)
    if not conns:
        return {"patroni_fence": {}}
    (c,) = conns
    partner = plan.region(region.dr_partner)
    ref = published_ca_ref(partner)
    return {"patroni_fence": {"partner": partner.name,
                              "members": [f"https://{h}:{c.dest_port}" for h in c.dest.hosts],
                              # the partner's certificates verified with its CA (fence_ca_file): none where the
                              # partner publishes no CA (nothing of it reads one)
                              "verify": bool(ref)},
            **({"patroni_fence_ca": secret(plan, partner, ref)} if ref else {})}


# ---------------------------------------------------------------- etcd

def etcd() -> Role:
    r = "etcd"
    env = {
        "ETCD_NAME": "{{ inventory_hostname }}",
        "ETCD_DATA_DIR": "/var/lib/etcd/{{ etcd_scope }}",
        "ETCD_LISTEN_CLIENT_URLS": "https://0.0.0.0:{{ etcd_client_port }}",
        "ETCD_ADVERTISE_CLIENT_URLS": "https://{{ ansible_host }}:{{ etcd_client_port }}",
        "ETCD_LISTEN_PEER_URLS": "https://0.0.0.0:{{ etcd_peer_port }}",
        # /metrics and /health over plain HTTP, for Prometheus (the client port wants a client certificate), on the
        # host's private address only: etcd binds an IP, never a name ("expected IP in URL for binding")
        "ETCD_LISTEN_METRICS_URLS": "http://{{ " + ADDRESS + " }}:{{ etcd_metrics_port }}",
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": "https://{{ ansible_host }}:{{ etcd_peer_port }}",
        "ETCD_INITIAL_CLUSTER": "{{ etcd_initial_cluster }}",
        "ETCD_INITIAL_CLUSTER_TOKEN": "{{ etcd_scope }}",
        # `existing` once, for a member replacing one the cluster removed (the runbook's etcd section): a new data
        # directory with `new` refuses to start ("member ... has already been bootstrapped")
        "ETCD_INITIAL_CLUSTER_STATE": "{{ etcd_initial_cluster_state }}",
        "ETCD_CERT_FILE": ETCD_TLS_DIR + "/server.crt",
        "ETCD_KEY_FILE": ETCD_TLS_DIR + "/server.key",
        "ETCD_TRUSTED_CA_FILE": ETCD_TLS_DIR + "/ca.crt",
        "ETCD_CLIENT_CERT_AUTH": "true",
        "ETCD_PEER_CERT_FILE": ETCD_TLS_DIR + "/server.crt",
        "ETCD_PEER_KEY_FILE": ETCD_TLS_DIR + "/server.key",
        "ETCD_PEER_TRUSTED_CA_FILE": ETCD_TLS_DIR + "/ca.crt",
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
        "ETCD_ENABLE_V2": "false",
        # compaction and quota: compiler/ir/postgres_ha.py says why
        "ETCD_AUTO_COMPACTION_MODE": ETCD_AUTO_COMPACTION_MODE,
        "ETCD_AUTO_COMPACTION_RETENTION": ETCD_AUTO_COMPACTION_RETENTION,
        "ETCD_QUOTA_BACKEND_BYTES": str(ETCD_QUOTA_BACKEND_BYTES),
    }
    content = "".join(f"{k}={v}\n" for k, v in env.items())
    return Role(
        name=r,
        description="etcd (Debian etcd-server), Patroni's DCS: three members per region over TLS with client certificates.",
        defaults={"etcd_client_port": 2379, "etcd_peer_port": 2380, "etcd_metrics_port": ETCD_METRICS_PORT,
                  "etcd_scope": "platformc", "etcd_members": [], "etcd_initial_cluster_state": "new"},
        vars={**services_ready_var(r, "etcd_install"),
              "etcd_initial_cluster": expr(
                  "etcd_members | map('extract', hostvars, 'ansible_host')",
                  # no backreference: ansible-core 2.19 keeps a string literal's backslashes, so '\\1' reached
                  # /etc/default/etcd as a literal \1 and etcd refused to start (its URL has no host)
                  "| map('regex_replace', '^', 'https://') | map('regex_replace', '$', ':' ~ etcd_peer_port)",
                  "| zip(etcd_members) | map('reverse') | map('join', '=') | join(',')"),
              # this member's place in the list: one hour apart, so no two members defragment at once
              "etcd_defrag_hour": "{{ " + str(ETCD_DEFRAG_FIRST_HOUR) + " + etcd_members.index(inventory_hostname) }}"},
        tasks={"main": [
            apt("Install etcd", ["etcd-server", "etcd-client"], register="etcd_install"),
            # The package's postinst starts etcd at once with Debian's defaults (localhost, /var/lib/etcd/default),
            # so `started` below found it running and the region's settings reached it only through the restart
            # handler, one member at a time: the first member then waited for peers still on the defaults, and its
            # start (Type=notify: ready once it has joined a quorum) timed out after 90 s, failing that host for the
            # rest of the run. Until a member has its data directory (never started with the region's settings),
            # whatever runs is the default instance: stop it, and all members start together below.
            task("Check whether this member ever ran with the region's settings (its data directory)",
                 "ansible.builtin.stat", {"path": "/var/lib/etcd/{{ etcd_scope }}"}, register="etcd_data_dir"),
            service("Stop the package's default instance before the first start with the region's settings", "etcd",
                    r, state="stopped", enabled=None, when="not etcd_data_dir.stat.exists"),
            task("Issue this member's certificate from the region's CA", "ansible.builtin.include_role",
                 {"name": "tls"}, vars={"tls_dir": ETCD_TLS_DIR, "tls_owner": "etcd", "tls_group": "etcd",
                                        "tls_key_mode": "0600", "tls_install_ca": True}),
            copy("Configure the member (Debian's unit reads /etc/default/etcd)", "/etc/default/etcd",
                 content=content, notify="Restart etcd"),
            service("Start etcd at boot", "etcd", r),
            *systemd_timer("defragmentation", ETCD_DEFRAG_UNIT, "platformc-etcd-defrag", ETCD_DEFRAG_SERVICE,
                           ETCD_DEFRAG_TIMER, "etcd_defrag", run_when=(when_ready(r),)),
        ]},
        # One member at a time: a new certificate or setting reaches every member in the same run, and three
        # restarted together lose quorum, so Patroni cannot renew its leader key (etcd's unit is Type=notify: a
        # restart returns once the member has rejoined).
        handlers=[service("Restart etcd", "etcd", r, state="restarted", enabled=None, throttle=1,
                          listen="tls certificate changed")],
    )


# ---------------------------------------------------------------- patroni

def patroni() -> Role:
    r = "patroni"
    instance = "patroni@" + PATRONI_INSTANCE
    return Role(
        name=r,
        description="Patroni (Debian patroni 3.0) runs PostgreSQL: leader election in etcd, a synchronous replica, "
                    "DR standby clusters.",
        defaults={"patroni_config": {}, "patroni_standby_clusters": [], "patroni_standby_passwords": {},
                  "patroni_callback": CALLBACK, "patroni_version": "3.0", "patroni_fence": {}, "patroni_fence_ca": ""},
        vars={**services_ready_var(r, "patroni_install"),
              "patroni_my_standbys": expr("patroni_standby_clusters | selectattr('hosts', 'contains', inventory_hostname)",
                                          "| list"),
              **STANDBY_DCS_VARS},
        tasks={"main": [
            apt("Install Patroni with its etcd client", ["patroni", "python3-etcd3"], register="patroni_install"),
            apt("Install curl, the fence's HTTP client", ["curl"]),
            # The configuration and the handlers (patronictl's JSON, restart --pending) are written and tested for
            # this major; a host that got another one (installed before the postgresql role's apt pin) is stopped
            # here rather than left to a Patroni that may read them otherwise.
            *installed_version_check("Read the installed Patroni version",
                                     "Check that the installed Patroni is the version platformc writes for", "patroni",
                                     "'^' ~ patroni_version ~ '[.]'",
                                     "platformc writes Patroni {{ patroni_version }}'s configuration, this host has "
                                     "{{ ansible_facts.packages['patroni'][0].version }}"),
            task("Create Patroni's directories", "ansible.builtin.file",
                 {"path": "{{ patroni_dir }}", "state": "directory", "owner": "root", "group": "postgres",
                  "mode": "0750"}, loop=[PATRONI_CONFIG_DIR, "/usr/local/lib/platformc"],
                 loop_control={"loop_var": "patroni_dir"}),
            copy("Install the callback that switches WAL after a start or a promotion (archive_timeout gap)",
                 CALLBACK, mode="0755", src="patroni-callback.sh"),
            # the data disk is mounted with nofail, which orders it before nothing: at a boot where the volume comes
            # late, Patroni found an empty directory on the root disk and cloned the cluster there (systemd.mount(5))
            *systemd_dropin("Let systemd restart Patroni when it dies, never before its data disk is mounted",
                            "patroni@.service", "restart.conf",
                            f"[Unit]\nRequiresMountsFor={POSTGRES_DATA_MOUNT}\n\n[Service]\nRestart=on-failure\n"
                            "RestartSec=5s\n", notify="Reload systemd"),
            *_fence_tasks(),
            copy("Write the region's Patroni configuration", PATRONI_CONFIG_DIR + "/" + PATRONI_INSTANCE + ".yml",
                 mode="0640", group="postgres", content="{{ patroni_config | to_nice_yaml(indent=2) }}",
                 no_log=True, diff=False, notify="Reload Patroni"),
            task("Start Patroni at boot", "ansible.builtin.systemd_service",
                 {"name": instance, "state": "started", "enabled": True, "daemon_reload": True},
                 when="patroni_services_ready"),
            task("Wait until this member's REST API answers", "ansible.builtin.uri",
                 {"url": "https://{{ ansible_host }}:{{ patroni_config.restapi.connect_address.split(':')[-1] }}/health",
                  "ca_path": POSTGRES_TLS_DIR + "/ca.crt", "status_code": [200, 503]},
                 register="patroni_health", until="patroni_health.status in [200, 503]", retries=30, delay=5,
                 when="patroni_services_ready"),
            # the standby clusters this host runs for the regions whose DR partner this region is; each one's data
            # directory and pgpass file sit in its source's version directory (the postgresql role's task says why)
            task("Create the version directories the standby clusters' data and pgpass files are in",
                 "ansible.builtin.file",
                 {"path": "{{ patroni_standby.data_dir | dirname }}", "state": "directory", "owner": "postgres",
                  "group": "postgres", "mode": "0755"},
                 loop="{{ patroni_my_standbys }}", loop_control={"loop_var": "patroni_standby",
                                                                  "label": "{{ patroni_standby.region }}"}),
            task("Create the standby clusters' configuration directories", "ansible.builtin.file",
                 {"path": "{{ patroni_standby.config_dir }}", "state": "directory", "owner": "postgres",
                  "group": "postgres", "mode": "0750"},
                 loop="{{ patroni_my_standbys }}", loop_control={"loop_var": "patroni_standby",
                                                                  "label": "{{ patroni_standby.region }}"}),
            copy("Keep Debian's PostgreSQL units off each standby cluster", "{{ patroni_standby.config_dir }}/start.conf",
                 mode="0644", owner="postgres", group="postgres", content=START_CONF,
                 loop="{{ patroni_my_standbys }}", loop_control={"loop_var": "patroni_standby",
                                                                  "label": "{{ patroni_standby.region }}"}),
            copy("Install the source region's postgresql.conf for its standby cluster",
                 "{{ patroni_standby.config_dir }}/postgresql.conf", mode="0640", owner="postgres",
                 group="postgres", src="{{ playbook_dir | dirname }}/datastores/{{ patroni_standby.region }}/postgresql.conf",
                 loop="{{ patroni_my_standbys }}", notify=STANDBY_RESTART,
                 loop_control={"loop_var": "patroni_standby", "label": "{{ patroni_standby.region }}"}),
            # the source's lines and this region's PgBouncer (which serves the source's shards after a promotion)
            copy("Install each standby cluster's pg_hba.conf",
                 "{{ patroni_standby.config_dir }}/pg_hba.conf", mode="0640", owner="postgres",
                 group="postgres", src="{{ playbook_dir | dirname }}/datastores/{{ platformc_region }}/"
                                       "{{ patroni_standby.hba_file }}",
                 loop="{{ patroni_my_standbys }}", notify="Reload the standby clusters",
                 loop_control={"loop_var": "patroni_standby", "label": "{{ patroni_standby.region }}"}),
            copy("Install each standby cluster's source region CA certificate",
                 standby_ca_file("{{ patroni_standby.region }}"), mode="0644", owner="postgres",
                 group="postgres", content="{{ patroni_standby_cas[patroni_standby.region | replace('-', '_')] }}",
                 notify="Reload the standby clusters",
                 loop="{{ patroni_my_standbys }}", loop_control={"loop_var": "patroni_standby",
                                                                  "label": "{{ patroni_standby.region }}"}),
            copy("Install an empty pg_ident.conf for each standby cluster", "{{ patroni_standby.config_dir }}/pg_ident.conf",
                 mode="0640", owner="postgres", group="postgres", content="",
                 loop="{{ patroni_my_standbys }}", notify="Reload the standby clusters", loop_control={"loop_var": "patroni_standby",
                                                                  "label": "{{ patroni_standby.region }}"}),
            copy("Write each standby cluster's Patroni configuration",
                 PATRONI_CONFIG_DIR + "/{{ patroni_standby.instance }}.yml", mode="0640", group="postgres",
                 content="{{ patroni_standby.config | to_nice_yaml(indent=2) }}", no_log=True, diff=False,
                 loop="{{ patroni_my_standbys }}", notify=STANDBY_RESTART, loop_control={"loop_var": "patroni_standby",
                                                                  "label": "{{ patroni_standby.region }}"}),
            task("Start each standby cluster at boot", "ansible.builtin.systemd_service",
                 {"name": "patroni@{{ patroni_standby.instance }}", "state": "started", "enabled": True},
                 loop="{{ patroni_my_standbys }}", loop_control={"loop_var": "patroni_standby",
                                                                  "label": "{{ patroni_standby.region }}"},
                 when="patroni_services_ready"),
            *_standby_dcs_tasks(r),
        ]},
        handlers=[
            task("Reload systemd", "ansible.builtin.systemd_service", {"daemon_reload": True}),
            # Patroni applies a changed file on SIGHUP (the unit's ExecReload); PostgreSQL settings that need a
            # restart are flagged `pending_restart` and applied with `patronictl restart` (the docs' runbook)
            service("Reload Patroni", "patroni@" + PATRONI_INSTANCE, r, state="reloaded", enabled=None,
                    listen="tls certificate changed"),
            # each standby cluster is its own Patroni (patroni@<instance>): a changed file of one is applied by
            # reloading that one, as the region's member above
            service("Reload the standby clusters", "patroni@{{ patroni_standby.instance }}", r, state="reloaded",
                    enabled=None, loop="{{ patroni_my_standbys }}",
                    loop_control={"loop_var": "patroni_standby", "label": "{{ patroni_standby.region }}"},
                    listen=["tls certificate changed", STANDBY_RESTART]),
            *_standby_restart(r),
        ],
    )


def fence_dropin() -> str:
    """The main cluster's drop-in: the fence runs before Patroni (ExecStartPre, `+`: as root, where the unit's User= is
    postgres), once the network is up (network.target, which Debian's unit orders after, says nothing of a route to
    the partner). A non-zero exit fails the start. The URLs and the CA are the region's `patroni_fence`."""
    ca = "{% if patroni_fence.verify %}--ca " + FENCE_CA + " {% endif %}"
    return ("[Unit]\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\n"
            f"ExecStartPre=+{FENCE} --partner {{{{ patroni_fence.partner }}}} \\\n"
            f"    --fenced {FENCED} --unfenced {UNFENCED} \\\n"
            f"    {ca}{{{{ patroni_fence.members | join(' ') }}}}\n")


def _fence_tasks() -> list:
    """The split-brain fence of the region's own cluster (the script's header says what it does): installed before
    Patroni first starts; without a standby cluster of the region to ask, its drop-in is removed."""
    unit = f"patroni@{PATRONI_INSTANCE}.service"
    return [
        copy("Install the fence that keeps Patroni from starting beside the DR partner's promoted copy", FENCE,
             mode="0755", src="patroni-fence.sh"),
        copy("Install the DR partner's CA certificate, which the fence verifies its hosts with", FENCE_CA,
             content="{{ patroni_fence_ca }}", when="patroni_fence.verify | default(false)"),
        *systemd_dropin("Run the fence before the region's Patroni starts", unit, FENCE_DROPIN, fence_dropin(),
                        unit_label="the region's Patroni unit", notify="Reload systemd",
                        when="patroni_fence | length > 0"),
        task("Remove the fence where no standby cluster of the region runs", "ansible.builtin.file",
             {"path": f"/etc/systemd/system/{unit}.d/{FENCE_DROPIN}", "state": "absent"}, notify="Reload systemd",
             when="patroni_fence | length == 0"),
    ]


STANDBY_RESTART = "Restart the standby clusters"

# A standby cluster's dynamic configuration (_standby_dcs_tasks), evaluated for each item of the loop over what
# `patronictl show-config` answered (`patroni_stored`: the registered result, its `patroni_standby` the cluster)
_SOURCE = "patroni_stored.patroni_standby.config.bootstrap.dcs"
STANDBY_DCS_VARS = {
    # what the cluster's etcd stores ({} before it was bootstrapped, or when Patroni was not asked)
    "patroni_standby_stored": expr("((patroni_stored.stdout | default('', true) | from_yaml) or {})"
                                   " if patroni_stored.rc | default(1) == 0 else {}"),
    "patroni_standby_stored_parameters": expr("(patroni_standby_stored.get('postgresql') or {}).get('parameters') or {}"),
    "patroni_standby_source_parameters": expr(_SOURCE + ".postgresql.parameters"),
    # the source's values; each hot-standby parameter the higher of the source's and the stored one, so a source that
    # lowers one never leaves its standby below what the source still runs (a Patroni default, 0, is left out)
    "patroni_standby_parameters": expr(
        "patroni_standby_source_parameters | combine({",
        *[line for k in HOT_STANDBY_PARAMETERS
          for line in (f"'{k}': [patroni_standby_source_parameters.get('{k}', 0) | int,",
                       f"  patroni_standby_stored_parameters.get('{k}', 0) | int] | max,")],
        "} | dict2items | rejectattr('value', 'equalto', 0) | items2dict)"),
    "patroni_standby_dcs": expr("{'failsafe_mode': " + _SOURCE + ".failsafe_mode,",
                                "'postgresql': {'parameters': patroni_standby_parameters}}"),
    # only a standby cluster (a promoted one serves production: the runbook's, never a run's) that etcd stores
    # otherwise than this run would
    "patroni_standby_dcs_stale": expr("patroni_standby_stored.standby_cluster is defined",
                                      "and patroni_standby_stored.standby_cluster is not none",
                                      "and patroni_standby_stored | combine(patroni_standby_dcs, recursive=True)",
                                      "!= patroni_standby_stored"),
}


def _standby_dcs_tasks(role: str) -> list:
    """The settings Patroni keeps cluster-wide (max_connections, max_worker_processes, max_wal_senders ... and
    failsafe_mode: bootstrap.dcs, which Patroni stores once, when it creates the cluster, and ignores locally) onto
    each standby cluster that exists, as the postgresql role's leader steps do for the region's own cluster: a
    source that raised one left its standby on the value it was created with, and a hot standby below its primary
    pauses its replay (HOT_STANDBY_PARAMETERS). Read from the cluster's etcd on every host of it (before any changes
    it, so each host sees the same difference and notifies its own restart), applied one host at a time (the second
    finds it applied), then each member Patroni flags is restarted, one host at a time (STANDBY_RESTART's handlers).
    The source must raise a value after this has run (the partner's run first: the region docs' order)."""
    config = PATRONI_CONFIG_DIR + "/{{ patroni_standby.instance }}.yml"
    stored = PATRONI_CONFIG_DIR + "/{{ patroni_stored.patroni_standby.instance }}.yml"
    return [
        task("Read each standby cluster's dynamic configuration from etcd", "ansible.builtin.command",
             {"argv": ["patronictl", "-c", config, "show-config", "{{ patroni_standby.config.scope }}"]},
             become=True, become_user="postgres", register="patroni_standby_show", changed_when=False,
             failed_when=False, check_mode=False, loop="{{ patroni_my_standbys }}",
             loop_control={"loop_var": "patroni_standby", "label": "{{ patroni_standby.region }}"},
             when=when_ready(role)),
        task("Raise each standby cluster's cluster-wide settings to its source region's (never below what it has)",
             "ansible.builtin.command",
             {"argv": ["patronictl", "-c", stored, "edit-config", "{{ patroni_stored.patroni_standby.config.scope }}",
                       "--apply", "-", "--force"],
              "stdin": "{{ patroni_standby_dcs | to_nice_yaml(indent=2) }}"},
             become=True, become_user="postgres", throttle=1, changed_when=True, notify=STANDBY_RESTART,
             loop="{{ patroni_standby_show.results | default([]) }}",
             loop_control={"loop_var": "patroni_stored", "label": "{{ patroni_stored.patroni_standby.region }}"},
             when=cond("patroni_stored is not skipped", "and patroni_standby_dcs_stale")),
    ]


def _standby_restart(role: str) -> list:
    """A standby cluster's new postgresql.conf or Patroni configuration is applied as the region's own cluster's is
    (the postgresql role's handlers): reloaded, then each member Patroni flags `Pending restart` is restarted, one
    host at a time. Reloaded only, a setting that needs a restart (shared_buffers in the standby's own memory
    parameters, any restart-only setting of the source's file) never took effect. A member Patroni has not registered
    yet (a first run) is never flagged, so is left to start with the new files; a cluster the DR runbook promoted (it
    has a `Leader`, no `Standby Leader`) serves production and is never restarted by a run (runbook step 3).
    (max_connections and the other settings Patroni keeps cluster-wide are not read from these files at all:
    _standby_dcs_tasks applies them, and notifies these handlers.)"""
    def config(standby: str) -> str:  # the standby cluster's Patroni configuration file
        return PATRONI_CONFIG_DIR + "/{{ " + standby + ".instance }}.yml"
    first, *rest = leader_sql.pending_restart("patroni_pending")
    flagged = ("patroni_pending is not skipped and " + first, *rest)
    still_standby = ("and (patroni_pending.stdout | from_json | selectattr('Role', 'equalto', 'Leader') | list",
                     "| length == 0)")
    return [
        task("Wait until Patroni flags the restart a standby cluster's new setting needs (none: the reload applied it)",
             "ansible.builtin.command",
             {"argv": ["patronictl", "-c", config("patroni_standby"), "list", "{{ patroni_standby.config.scope }}",
                       "--extended", "--format", "json"]},
             become=True, become_user="postgres", register="patroni_standby_pending", changed_when=False,
             failed_when=False, retries=4, delay=5, until=cond(*leader_sql.pending_restart("patroni_standby_pending")),
             loop="{{ patroni_my_standbys }}",
             loop_control={"loop_var": "patroni_standby", "label": "{{ patroni_standby.region }}"},
             listen=STANDBY_RESTART, when=when_ready(role)),
        task(STANDBY_RESTART, "ansible.builtin.command",
             {"argv": ["patronictl", "-c", config("patroni_pending.patroni_standby"), "restart",
                       "{{ patroni_pending.patroni_standby.config.scope }}", "{{ inventory_hostname }}", "--pending",
                       "--force"]},
             become=True, become_user="postgres", changed_when=True, throttle=1,
             loop="{{ patroni_standby_pending.results | default([]) }}",
             loop_control={"loop_var": "patroni_pending", "label": "{{ patroni_pending.patroni_standby.region }}"},
             when=cond(*flagged, *still_standby)),
    ]


# ---------------------------------------------------------------- data_disk

def data_disk() -> Role:
    r = "data_disk"
    found = "{{ data_disk_found.stdout }}"
    # check mode runs none of the commands above (they report skipped, rc 0): only a volume already mounted is read
    mounted = "not ansible_check_mode or (data_disk_mounted is not skipped and data_disk_mounted.rc == 0)"
    return Role(
        name=r,
        description="Formats (xfs), mounts and grows the data volume (found by its stable id) at the data directory "
                    "before the datastore's package installs.",
        defaults={"data_disk_cloud": "{{ platformc_cloud }}", "data_disk_mount": "", "data_disk_owner": "root",
                  "data_disk_mode": "0755"},
        tasks={"main": [
            task("Check that the mount point is set", "ansible.builtin.assert",
                 {"that": ["data_disk_mount | length > 0"], "fail_msg": "set data_disk_mount (the datastore's data directory)"}),
            apt("Install the xfs tools", ["xfsprogs"]),
            copy("Install the script that names the data volume by its stable id", DATA_DISK_SCRIPT, mode="0755",
                 src="data-disk-id.sh"),
            # AWS: the EBS volume's /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol... that is not the root disk;
            # GCP: /dev/disk/by-id/google-data (the attachment's device_name); Azure: LUN 0 of the data disks
            task("Find the data volume by its stable id (waits up to 5 min for the attachment)", "ansible.builtin.command",
                 {"argv": [DATA_DISK_SCRIPT, "{{ data_disk_cloud }}"]}, register="data_disk_found",
                 changed_when=False, retries=30, delay=10, until="data_disk_found.rc == 0"),
            task("Read the volume's filesystem, if any", "ansible.builtin.command",
                 {"argv": ["blkid", "-o", "value", "-s", "TYPE", found]}, register="data_disk_fs",
                 changed_when=False, failed_when="data_disk_fs.rc not in [0, 2]"),
            # never over an existing filesystem (a re-run, a reattached volume): only a blank volume is formatted
            task("Make an xfs filesystem on the blank data volume", "ansible.builtin.command",
                 {"argv": ["mkfs.xfs", "-L", "data", found]}, when="data_disk_fs.stdout | length == 0",
                 changed_when=True),
            task("Record the mount in fstab by the volume's stable id", "ansible.builtin.lineinfile",
                 {"path": "/etc/fstab", "regexp": "^\\S+\\s+{{ data_disk_mount }}\\s",
                  "line": found + " {{ data_disk_mount }} xfs defaults,noatime,nofail 0 2"}),
            task("Check whether the data directory is mounted", "ansible.builtin.command",
                 {"argv": ["findmnt", "--mountpoint", "{{ data_disk_mount }}"]}, register="data_disk_mounted",
                 changed_when=False, failed_when=False),
            # the mount point only: once mounted, the path is the volume's root, whose owner is the datastore's
            task("Create the mount point", "ansible.builtin.file",
                 {"path": "{{ data_disk_mount }}", "state": "directory", "owner": "root", "group": "root",
                  "mode": "0755"}, when="data_disk_mounted.rc != 0"),
            task("Mount the data volume", "ansible.builtin.command", {"argv": ["mount", "{{ data_disk_mount }}"]},
                 when="data_disk_mounted.rc != 0", changed_when=True),
            # A grown disk (a larger data_disk_gib, applied by Terraform in place) grows its filesystem here, online.
            # Azure shows a data disk's new size only after a SCSI rescan; AWS (NVMe) and GCP show it by themselves.
            task("Rescan the data volume's size", "ansible.builtin.shell",
                 "echo 1 > /sys/class/block/$(basename $(readlink -f " + found + "))/device/rescan",
                 when=[mounted, "data_disk_cloud == 'azure'"], changed_when=False, check_mode=False),
            task("Read the data volume's size", "ansible.builtin.command",
                 {"argv": ["blockdev", "--getsize64", found]}, register="data_disk_bytes", changed_when=False,
                 check_mode=False, when=mounted),
            task("Read the filesystem's size", "ansible.builtin.command",
                 {"argv": ["xfs_info", "{{ data_disk_mount }}"]}, register="data_disk_xfs", changed_when=False,
                 check_mode=False, when=mounted),
            # xfs_growfs takes the whole device but never a last allocation group under 64 blocks, so a filesystem
            # within 64 MiB of its volume is as large as it gets (disks grow in whole GiB)
            task("Grow the filesystem to the data volume's size", "ansible.builtin.command",
                 {"argv": ["xfs_growfs", "{{ data_disk_mount }}"]},
                 vars={"data_disk_geometry": expr(
                     "data_disk_xfs.stdout | regex_search('^data\\s+=\\s+bsize=(\\d+)\\s+blocks=(\\d+)', '\\1', '\\2',",
                     "multiline=True) | map('int') | list")},
                 when=[mounted, "data_disk_bytes.stdout | int > data_disk_geometry[0] * data_disk_geometry[1] + 67108864"],
                 changed_when=True),
            # A fresh volume's root is root's, 0755. On a new host the datastore's package then makes it its user's
            # (its postinst, which creates the user); a volume replaced under an installed package, or a root reset
            # by hand, gets it here, as the package would leave it (the service, without CAP_DAC_OVERRIDE, could not
            # write its data otherwise). Before the package installs, the user does not exist yet: nothing to do.
            task("Look up the datastore's user", "ansible.builtin.getent",
                 {"database": "passwd", "key": "{{ data_disk_owner }}", "fail_key": False}),
            task("Give the data volume's root to the datastore's user", "ansible.builtin.file",
                 {"path": "{{ data_disk_mount }}", "state": "directory", "owner": "{{ data_disk_owner }}",
                  "group": "{{ data_disk_owner }}", "mode": "{{ data_disk_mode }}"},
                 when="ansible_facts.getent_passwd[data_disk_owner] is not none"),
        ]},
    )


