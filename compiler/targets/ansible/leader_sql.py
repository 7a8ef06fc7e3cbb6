"""SQL that only the Patroni leader can run, applied so that every run converges.

Applied from handlers, such SQL ran only in the run that changed a staged file, and only if the member it landed on
was the leader at that moment: on a fresh cluster the handlers come before Patroni has bootstrapped a leader
(`GET /primary` is 503 everywhere), so it was skipped, and no later run notified again. Here every run asks
Patroni, at task time, which member leads (`GET /cluster`: the members with their role and state, from the DCS,
the same on every member), and on that member compares the fingerprint of what should be applied with the one
recorded in the cluster itself (database `postgres`, table `platformc.applied`). The record replicates: a new
leader knows what its predecessor applied, and a cluster restored from a backup is what its record says.
"""

from __future__ import annotations

from compiler.ir.names import POSTGRES_TLS_DIR
from compiler.targets.ansible.role import expr, task

CLUSTER_URL = "https://{{ ansible_host }}:{{ patroni_config.restapi.connect_address.split(':')[-1] }}/cluster"
CA_FILE = f"{POSTGRES_TLS_DIR}/ca.crt"
# A fresh cluster's leader runs initdb and the post-bootstrap steps first; a failover takes ttl + loop_wait
WAIT_RETRIES, WAIT_DELAY = 60, 5
RECORD_DATABASE = "postgres"  # every cluster has it; read_applied reads there, whatever database the SQL ran in


def psql(database: str = "postgres", port: str | None = None) -> list:
    """psql over the local socket; `port`: a cluster other than the host's main one (a DR standby's, its own port)."""
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *(["-p", port] if port else []), "-d", database]


def as_postgres(name: str, argv: list, **kw) -> dict:
    return task(name, "ansible.builtin.command", {"argv": argv, **kw.pop("args", {})}, become=True,
                become_user="postgres", **kw)


def ask_cluster(name: str, register: str, **kw) -> dict:
    """This member's Patroni, asked for the members of its cluster (GET needs no credentials)."""
    return task(name, "ansible.builtin.uri", {"url": CLUSTER_URL, "ca_path": CA_FILE}, register=register, **kw)


def leader_var(register: str) -> str:
    """The member that leads with PostgreSQL running, by `ask_cluster`'s answer (empty: none, or not asked)."""
    return expr(f"{register}.json.members | default([]) | selectattr('role', 'equalto', 'leader')",
                "| selectattr('state', 'equalto', 'running') | map(attribute='name') | first | default('')")


def member_running_var(register: str) -> str:
    """Whether `ask_cluster`'s answer lists this host as a member whose PostgreSQL Patroni runs."""
    return expr(f"{register}.json.members | default([]) | selectattr('name', 'equalto', inventory_hostname)",
                "| selectattr('state', 'equalto', 'running') | list | length > 0")


def pending_restart(register: str) -> tuple[str, ...]:
    """The lines of a condition: `patronictl list --extended --format json`, registered as `register`, flags this host's
    member `Pending restart` (the postgresql role's handlers and the patroni role's standby clusters wait on it)."""
    return (f"{register}.rc == 0 and ({register}.stdout | from_json",
            "| selectattr('Member', 'equalto', inventory_hostname) | map(attribute='Pending restart')",
            "| select | list | length > 0)")


def wait_for_leader(register: str, leader: str, when) -> dict:
    """Bounded: a cluster that elects nobody in this time needs an operator (etcd, Patroni's log), not a retry."""
    minutes = WAIT_RETRIES * WAIT_DELAY // 60
    return {
        "name": "Wait until the Patroni cluster has a running leader",
        "when": when,
        # a read: it runs in check mode too, where what would be applied is then reported truthfully
        "block": [ask_cluster("Ask this member's Patroni for its cluster's members until one leads", register,
                              until=f"{leader} | length > 0", retries=WAIT_RETRIES, delay=WAIT_DELAY,
                              check_mode=False)],
        "rescue": [task("Stop the run, naming what Patroni answered", "ansible.builtin.fail", {"msg": expr(
            f"'Patroni cluster ' ~ patroni_config.scope ~ ' has no running leader after {minutes} minutes (GET /cluster on '",
            f"~ inventory_hostname ~ ': ' ~ ({register}.json.members | default({register}.msg | default('no answer')))",
            "~ '). Check etcd and `patronictl -c <config> list`.'")})],
    }


def read_applied(name: str, record: str, register: str, when, port: str | None = None, timeline: bool = False) -> dict:
    """The fingerprint recorded for `record` (empty before the first apply: the table may not exist yet). With
    `timeline`, a first line before it: the leader's current timeline (the first 8 hex digits of its WAL file name),
    which a promotion or a switchover increments."""
    script = "\n".join([
        *(["SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) AS platformc_timeline \\gset",
           "\\echo :platformc_timeline"] if timeline else []),
        "SELECT to_regclass('platformc.applied') IS NOT NULL AS platformc_recorded \\gset",
        "\\if :platformc_recorded",
        f"SELECT fingerprint FROM platformc.applied WHERE name = '{record}';",
        "\\endif",
        "",
    ])
    return as_postgres(name, [*psql(RECORD_DATABASE, port), "-A", "-t"], args={"stdin": script}, register=register,
                       changed_when=False, check_mode=False, when=when)


def record_sql(record: str, fingerprint_var: str) -> str:
    """Appended to the session that applied `record`, so only a complete apply is recorded (and, the session being
    new after \\connect, logged no more than the apply was). A schema of its own, whose objects PUBLIC gets no
    privilege on (a new schema's and table's default): only superusers read it."""
    return "\n".join([
        f"\\connect {RECORD_DATABASE}",
        "SET log_statement = 'none';",
        "CREATE SCHEMA IF NOT EXISTS platformc;",
        "CREATE TABLE IF NOT EXISTS platformc.applied (name text PRIMARY KEY, fingerprint text NOT NULL,",
        "                                              applied_at timestamptz NOT NULL DEFAULT now());",
        f"INSERT INTO platformc.applied (name, fingerprint) VALUES ('{record}', '{{{{ {fingerprint_var} }}}}')",
        "ON CONFLICT (name) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, applied_at = now();",
        "",
    ])


def stale(applied_register: str, fingerprint_var: str) -> str:
    """The condition of an apply: what the leader recorded is not what this run stages."""
    return f"{applied_register}.stdout | default('') != {fingerprint_var}"
