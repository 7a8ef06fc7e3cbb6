"""DR serving at the PostgreSQL level, with real servers (the datastores harness, tests/targets/test_datastores_support.py):
eu-west-1 failed over to eu-central-1 (`disaster_recovery.failed_over`).

- The promoted cluster is a copy of eu-west-1's, routing table included: started with eu-west-1's postgresql.conf and
  the pg_hba.conf eu-central-1 gives the standby cluster, set up with eu-west-1's setup.psql of the tree before the
  failover, then the override tree's `dr-eu-west-1/routing.psql` run on it as the runbook's step 4 says (as postgres,
  over the local socket, on the standby's port): every franchise of eu-west-1 is then routed to eu-central-1's
  PgBouncer, the others unchanged, and a second run changes nothing.
- eu-central-1's pgbouncer.ini of the override tree, as PgBouncer 1.18 reads it: the promoted lines dial the designated
  leader on the standby's port with the promoted cluster's pool sizes."""

from __future__ import annotations

import re
import shutil

import pytest

from compiler.pipeline import compile_text
from tests.targets.test_datastores_support import (  # noqa: F401  (fixtures)
    PgCluster, chown_tree, generate, isolation, pg_template, pgbouncer_admin, preload_overrides, private_dir,
    reference_tree, start_pgbouncer, strip_unavailable_extensions, tls)
from tests.test_dr_serving import LOST, PARTNER, REF, failed_over


@pytest.fixture(scope="module")
def dr_plan():
    return compile_text(failed_over(REF, f"[{LOST}]"), "platform.yaml").plan


@pytest.fixture(scope="module")
def dr_tree(dr_plan, tmp_path_factory):
    return generate(dr_plan, tmp_path_factory.mktemp("datastores-dr"))


@pytest.mark.tool
def test_the_promoted_copys_routing_table_is_rewritten_to_the_partner(dr_plan, reference_tree, dr_tree, tls,
                                                                      pg_template):
    partner = dr_plan.region(PARTNER)
    sb = next(x for x in partner.postgres_ha.standbys if x.of_region == LOST)
    work = private_dir("dr-serving-")
    shutil.copytree(reference_tree / f"datastores/{LOST}", work / "before" / LOST)  # the cluster before the loss
    shutil.copy(reference_tree / "datastores/shards.sql", work / "before/shards.sql")
    shutil.copytree(dr_tree / "datastores", work / "after")  # the override's generated/datastores/
    strip_unavailable_extensions(work / "before" / LOST)
    chown_tree(work)
    conf = dr_tree / f"datastores/{LOST}/postgresql.conf"
    overrides, _ = preload_overrides(conf)
    (work / "pg").mkdir()
    cluster = PgCluster(conf, dr_tree / f"datastores/{PARTNER}/dr-{LOST}/pg_hba.conf", work / "pg", tls,
                        {**overrides, "port": sb.port})
    cluster.port = sb.port  # the standby cluster's port, which the runbook's psql names (-p)
    try:
        cluster.start()
        cluster.psql("-f", "setup.psql", cwd=work / "before" / LOST)
        lost = [s for s in dr_plan.shards if s.region == LOST]
        total = len(dr_plan.shards) * dr_plan.spec.sharding.franchises_per_shard

        def routes(db):
            rows = cluster.query("SELECT shard_host, shard_port, count(*) FROM franchise_shard_map "
                                 f"WHERE franchise_id::int BETWEEN {lost[0].first_id} AND {lost[-1].last_id} "
                                 "GROUP BY 1, 2", db=db)
            (n,), = cluster.query("SELECT count(*) FROM franchise_shard_map", db=db)
            return rows, int(n)

        span = str(lost[-1].last_id - lost[0].first_id + 1)
        for s in lost:  # the copy as it was promoted: eu-west-1's franchises routed to eu-west-1's PgBouncer
            assert routes(s.database) == ([[f"pgbouncer.{LOST}.internal.6fb.example.com", "6432", span]], total)
        # the runbook's command, on the standby's port over the socket, from generated/datastores/
        runs = [cluster.psql("-f", f"{PARTNER}/dr-{LOST}/routing.psql", cwd=work / "after")
                for _ in range(2)]
        assert all("ERROR" not in r.stderr for r in runs)
        for s in lost:
            assert routes(s.database) == ([[f"pgbouncer.{partner.internal_domain}", "6432", span]], total)
            other, = cluster.query("SELECT shard_host FROM franchise_shard_map WHERE franchise_id = '1'", db=s.database)
            assert other == [next(x.host for x in dr_plan.shards if x.number == 1)]
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def dr_ansible(dr_plan):
    """The override's Ansible files: path -> text."""
    from compiler.emit import emit
    out, _ = emit(dr_plan, ["ansible"], with_docs=False)
    return {rel: text for rel, (_, text) in out["generated"].items()}


def _promoted_tasks(dr_ansible):
    """(the include in tasks/leader.yml, the tasks of tasks/promoted.yml) of the postgresql role."""
    import yaml
    leader = yaml.safe_load(dr_ansible["ansible/roles/postgresql/tasks/leader.yml"])
    include = next(t for t in leader if "ansible.builtin.include_tasks" in t)
    return include, yaml.safe_load(dr_ansible["ansible/roles/postgresql/tasks/promoted.yml"])


@pytest.mark.tool
def test_ansible_writes_the_promoted_copys_routing_table_once(dr_plan, reference_tree, dr_tree, dr_ansible, tls,
                                                              pg_template):
    """The postgresql role's tasks/promoted.yml, its scripts rendered by Ansible's templar with the partner's inventory
    and run as the tasks run them (as postgres, on the standby's port, over the socket): the first run finds no record
    and rewrites the routing table of every shard database; the second reads the record and skips the apply."""
    import yaml

    from tests.targets.test_ansible_units import ansible_template
    partner = dr_plan.region(PARTNER)
    sb = next(x for x in partner.postgres_ha.standbys if x.of_region == LOST)
    include, tasks = _promoted_tasks(dr_ansible)
    (entry,) = yaml.safe_load(dr_ansible[f"ansible/inventories/{PARTNER}/group_vars/postgres.yml"])[
        "postgresql_promoted_routing"]
    assert entry == {"region": LOST, "file": f"dr-{LOST}/routing.psql", "hosts": list(sb.hosts), "port": sb.port,
                     "rest_port": sb.rest_port}
    read = next(t for t in tasks if t["name"].startswith("Read the promoted cluster's timeline"))
    apply = next(t for t in tasks if t["name"].startswith("Write the platform's routing table"))
    for t in (read, apply):  # psql as postgres over the socket, on the promoted cluster's port
        argv = t["ansible.builtin.command"]["argv"]
        assert argv[:9] == ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-p", "{{ postgresql_promoted.port }}", "-d",
                            "postgres"] and t["become_user"] == "postgres", argv
        assert "postgresql_promoted_leader == inventory_hostname" in t["when"]
    work = private_dir("dr-ansible-")
    shutil.copytree(reference_tree / f"datastores/{LOST}", work / "before" / LOST)
    shutil.copy(reference_tree / "datastores/shards.sql", work / "before/shards.sql")
    shutil.copytree(dr_tree / "datastores", work / "after")  # staged as the role stages it: <setup dir>/<region>/...
    strip_unavailable_extensions(work / "before" / LOST)
    chown_tree(work)
    conf = dr_tree / f"datastores/{LOST}/postgresql.conf"
    overrides, _ = preload_overrides(conf)
    (work / "pg").mkdir()
    cluster = PgCluster(conf, dr_tree / f"datastores/{PARTNER}/dr-{LOST}/pg_hba.conf", work / "pg", tls,
                        {**overrides, "port": sb.port})
    cluster.port = sb.port
    variables = {"postgresql_promoted": entry, "postgresql_setup_dir": str(work / "after"), "platformc_region": PARTNER,
                 "postgresql_source_dir": str(dr_tree / "datastores" / PARTNER),
                 "postgresql_platform_source_dir": str(dr_tree / "datastores")}

    def var(name, **more):
        from ansible.template import trust_as_template
        both = {**variables, **{k: trust_as_template(v) for k, v in include["vars"].items()}, **more}
        return ansible_template(include["vars"][name] if name in include["vars"] else name, both)

    def run_task(task, **more):
        script = work / "task.sql"
        script.write_text(var(task["ansible.builtin.command"]["stdin"], **more))
        chown_tree(work)
        return cluster.psql(*task["ansible.builtin.command"]["argv"][9:], "-f", str(script))  # -A -t for the read

    try:
        cluster.start()
        cluster.psql("-f", "setup.psql", cwd=work / "before" / LOST)
        lost = [s for s in dr_plan.shards if s.region == LOST]

        def hosts(db):
            return {h for (h,) in cluster.query("SELECT DISTINCT shard_host FROM franchise_shard_map "
                                                f"WHERE franchise_id::int BETWEEN {lost[0].first_id} AND "
                                                f"{lost[-1].last_id}", db=db)}

        applied = []
        for _ in range(2):  # two runs of the role
            out = run_task(read).stdout
            result = {"stdout": out.rstrip("\n"), "stdout_lines": out.splitlines()}
            recorded = var("postgresql_promoted_recorded", postgresql_promoted_applied=result)
            fingerprint = var("postgresql_promoted_fingerprint", postgresql_promoted_applied=result)
            assert re.fullmatch(r"[0-9a-f]{64}@[0-9A-F]{8}", fingerprint), fingerprint
            if recorded != fingerprint:  # the apply task's last condition
                run_task(apply, postgresql_promoted_applied=result)
                applied.append(fingerprint)
        assert len(applied) == 1, applied  # the second run found the record: nothing applied
        for s in lost:
            assert hosts(s.database) == {f"pgbouncer.{partner.internal_domain}"}
        # a record of another timeline (the copy's earlier life, before a promotion) does not pass for this one
        other = {"stdout_lines": ["00000009", applied[0]]}
        assert var("postgresql_promoted_recorded", postgresql_promoted_applied=other) != \
            var("postgresql_promoted_fingerprint", postgresql_promoted_applied=other)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.tool
def test_pgbouncer_reads_the_promoted_lines(dr_plan, dr_tree, tls, isolation):
    from compiler.resolve import promoted_budget
    partner = dr_plan.region(PARTNER)
    sb = next(x for x in partner.postgres_ha.standbys if x.of_region == LOST)
    leader = next(h.fqdn for h in partner.hosts if h.name == sb.hosts[0])
    budget = promoted_budget(dr_plan.region(LOST), partner)
    work = private_dir("dr-pgb-")
    server, port = start_pgbouncer(dr_tree / f"datastores/{PARTNER}/pgbouncer.ini", work, tls,
                                   ['"probe_admin" "admin-secret"'], extra_pgbouncer={"admin_users": "probe_admin"})
    try:
        dbs = {row["name"]: row for row in pgbouncer_admin(work, port, "SHOW DATABASES", "probe_admin", "admin-secret")}
        for s in (x for x in dr_plan.shards if x.region == LOST):
            for name in (s.database, s.database + "_ro"):
                row = dbs[name]
                assert (row["host"], row["port"], row["database"]) == (leader, str(sb.port), s.database), name
                assert (int(row["pool_size"]), int(row["max_connections"])) == (
                    budget.default_pool_size, budget.default_pool_size + budget.reserve_pool_size), row
        for s in partner.shards:  # its own lines unchanged: the leader endpoint, its own pools
            assert dbs[s.database]["host"] == partner.postgres_ha.leader_endpoint
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
