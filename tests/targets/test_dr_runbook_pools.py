"""The DR runbook's step 4: the DR partner's PgBouncer lines for the promoted standby cluster carry pool limits that
fit it (compiler/resolve.py promoted_budget), checked by arithmetic and by a real PgBouncer."""

from __future__ import annotations

import shutil

import pytest

from tests.targets.test_datastores_support import isolation, private_dir, reference_tree, tls  # noqa: F401 (fixtures)


def _runbook_lines(reference, region) -> dict[str, dict[str, str]]:
    """The [databases] lines of the DR runbook's step 4 on `region`'s docs page: name -> key=value settings."""
    from compiler.targets import ansible
    text = ansible.docs_region(reference, region)
    block = text.split("4. Serve this region's franchises from", 1)[1].split("```ini\n", 1)[1].split("```", 1)[0]
    out = {}
    for line in block.strip().splitlines():
        name, _, value = line.strip().partition(" = ")
        out[name] = dict(kv.split("=", 1) for kv in value.split())
    return out


def test_the_runbooks_pgbouncer_lines_fit_the_promoted_cluster(reference):
    """Step 4's lines give each database of the lost region a pool of its own: every PgBouncer host of the partner x
    every line x max_db_connections fits the promoted cluster's max_connections less its reserved connections (it
    keeps the lost region's: a hot standby matches its primary), with a pool of at least one. Without limits on the
    lines, each took the partner's own default_pool_size and max_db_connections, sized for its own cluster: 2 hosts
    x 8 lines x 60 = 960 server connections against 480 for us-east-1's."""
    from compiler.resolve import promoted_budget, promoted_databases
    checked = 0
    for r in reference.regions:
        partner = reference.region(r.dr_partner)
        if not any(s.of_region == r.name for s in (partner.postgres_ha.standbys if partner.postgres_ha else ())):
            continue
        lines = _runbook_lines(reference, r)
        assert list(lines) == [name for name, _ in promoted_databases(r)], r.name
        pg = r.settings.datastores.postgres
        hosts = partner.settings.datastores.pgbouncer.hosts
        reserve = partner.settings.datastores.pgbouncer.reserve_pool_size
        total = hosts * sum(int(v["max_db_connections"]) for v in lines.values())
        assert total <= pg.max_connections - pg.reserved_connections, (r.name, total)
        for v in lines.values():
            assert 1 <= int(v["pool_size"]) and int(v["max_db_connections"]) == int(v["pool_size"]) + reserve, r.name
        budget = promoted_budget(r, partner)
        assert total == budget.server_connections and budget.pgbouncer_hosts == hosts, r.name
        checked += 1
    assert checked >= 12, checked


@pytest.mark.tool
def test_pgbouncer_takes_the_runbooks_pool_limits(reference, reference_tree, isolation, tls):
    """us-east-1 lost: us-west-2's PgBouncer (its generated pgbouncer.ini) with step 4's lines (the designated leader's
    name replaced by the loopback) reports each line's pool size and max_db_connections as the runbook gives them
    (SHOW DATABASES), and its own shards' pools unchanged."""
    from tests.targets.test_datastores_support import pgbouncer_admin, start_pgbouncer
    lost, partner = reference.region("us-east-1"), reference.region("us-west-2")
    lines = _runbook_lines(reference, lost)
    work = private_dir("drw-pgb-")
    extra = {name: " ".join(f"{k}={'127.0.0.1' if k == 'host' else v}" for k, v in kv.items())
             for name, kv in lines.items()}
    server, port = start_pgbouncer(reference_tree / "datastores/us-west-2/pgbouncer.ini", work, tls,
                                   ['"probe_admin" "admin-secret"'], extra_pgbouncer={"admin_users": "probe_admin"},
                                   extra_databases=extra)
    try:
        dbs = {row["name"]: row for row in pgbouncer_admin(work, port, "SHOW DATABASES", "probe_admin", "admin-secret")}
        for name, kv in lines.items():
            got = (dbs[name]["pool_size"], dbs[name]["max_connections"], dbs[name]["port"], dbs[name]["database"])
            assert got == (kv["pool_size"], kv["max_db_connections"], kv["port"], kv["dbname"]), (name, dbs[name])
        hosts = partner.settings.datastores.pgbouncer.hosts
        pg = lost.settings.datastores.postgres
        assert hosts * sum(int(dbs[n]["max_connections"]) for n in lines) <= pg.max_connections - pg.reserved_connections
        own = partner.connections
        for s in partner.shards:
            assert (int(dbs[s.database]["pool_size"]), int(dbs[s.database]["max_connections"])) == \
                (own.default_pool_size, own.default_pool_size + own.reserve_pool_size)
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
