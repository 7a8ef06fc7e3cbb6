"""The DR partner watches the standby clusters it runs (compiler/ir/dr_watch.py): the wiring, the scrape, the
exporter's query and the standby's pg_hba.conf, against a real PostgreSQL 15 standby where one is needed."""

from __future__ import annotations

import dataclasses
import shutil
import time

import pytest
import yaml

from compiler.ir import dr_watch
from compiler.ir.names import POSTGRES_EXPORTER_PORT
from compiler.ir.postgres_ha import standby_hba_file, standby_of
from tests.targets.test_datastores_support import (  # noqa: F401 (fixtures)
    AS_POSTGRES, PGBIN, PgCluster, isolation, pg_template, private_dir, reference_tree, tls)


def _probes(region):
    return [c for c in region.through("prometheus") if standby_of(c.dest.name)]


def test_the_partner_probes_each_standby_on_the_exporter_port_it_already_opens(reference):
    """One connection per standby cluster the region runs, from its Prometheus to the standby's hosts on
    postgres_exporter's port, through the same layers as the exporter's own scrape: the region's firewalls open
    nothing new (the host groups' Terraform and nftables rules stay the ports they were)."""
    from compiler.targets.ansible.inventory import firewall_rules
    from compiler.targets.terraform.values import ingress_rules
    checked = 0
    for r in reference.regions:
        standbys = r.postgres_ha.standbys if r.postgres_ha else ()
        probes = _probes(r)
        assert [standby_of(c.dest.name) for c in probes] == [s.of_region for s in standbys], r.name
        scrape = next(c for c in r.through("prometheus") if c.dest.name == "postgres"
                      and c.dest_port == POSTGRES_EXPORTER_PORT)
        for sb, c in zip(standbys, probes):
            assert (c.dest_port, c.source.name, c.source.cidrs) == (POSTGRES_EXPORTER_PORT, "prometheus", scrape.source.cidrs)
            assert set(c.layers) == set(scrape.layers) == {"prometheus", "cloud-firewall", "nftables"}
            assert set(c.dest.hosts) == {h.fqdn for h in r.hosts if h.name in sb.hosts} <= set(scrape.dest.hosts)
            assert c.address == dr_watch.probe_target(sb.port)
            checked += 1
        if standbys:
            without = dataclasses.replace(r, wiring=tuple(c for c in r.wiring if c not in probes))
            assert ingress_rules(without) == ingress_rules(r), r.name
            for group in ("postgres_primary", "postgres_replicas"):
                ports = lambda plan: sorted(p for rule in firewall_rules(plan, group) for p in rule["ports"])  # noqa: E731
                assert ports(without) == ports(r), (r.name, group)
    assert checked >= 12, checked


def test_the_exporter_runs_the_wal_receiver_query(reference):
    """The postgres_exporter role writes WAL_RECEIVER_QUERY where its unit's --extend.query-path reads it, and the
    query makes the metric the partner's alert reads (v0.18.1 queries.go: <namespace>_<column>, LABEL columns as
    labels), with the labels the alert matches on."""
    from compiler.targets import ansible
    files = ansible.emit_global(reference)
    role = "ansible/roles/postgres_exporter"
    variables = yaml.safe_load(files[f"{role}/vars/main.yml"])
    assert variables["postgres_exporter_queries"] == dr_watch.WAL_RECEIVER_QUERY
    tasks = yaml.safe_load(files[f"{role}/tasks/main.yml"])
    (write,) = [t for t in tasks if t.get("ansible.builtin.copy", {}).get("dest") == "{{ postgres_exporter_queries_file }}"]
    assert write["ansible.builtin.copy"]["content"] == "{{ postgres_exporter_queries | to_nice_yaml(indent=2) }}"
    assert write["notify"] == "Restart postgres_exporter"
    unit = files[f"{role}/templates/postgres-exporter.service.j2"]
    assert "--extend.query-path={{ postgres_exporter_queries_file }}" in unit
    (namespace, query), = dr_watch.WAL_RECEIVER_QUERY.items()
    columns = {k: v["usage"] for m in query["metrics"] for k, v in m.items()}
    gauges = [f"{namespace}_{k}" for k, usage in columns.items() if usage == "GAUGE"]
    assert gauges == [dr_watch.WAL_RECEIVER_CONNECTED]
    assert {k for k, usage in columns.items() if usage == "LABEL"} == {"status", "sender_host"}
    # the exporter's OS user and its role have one name: the standby admits the role by peer
    defaults = yaml.safe_load(files[f"{role}/defaults/main.yml"])
    assert defaults["postgres_exporter_user"] == defaults["postgres_exporter_db_user"] == dr_watch.POSTGRES_EXPORTER_USER


def test_the_standby_admits_the_partners_exporter_by_peer_before_the_password_line(reference, reference_tree):
    """Each standby cluster's pg_hba.conf lets the partner's exporter in by peer, ahead of the source's `local all all
    scram-sha-256` (first match wins), and only the exporter's role."""
    checked = 0
    for r in reference.regions:
        for sb in (r.postgres_ha.standbys if r.postgres_ha else ()):
            lines = [line.split() for line in (reference_tree / f"datastores/{r.name}/{standby_hba_file(sb.of_region)}")
                     .read_text().splitlines() if line and not line.startswith("#")]
            peer = lines.index(["local", "all", f'"{dr_watch.POSTGRES_EXPORTER_USER}"', "peer"])
            assert peer < lines.index(["local", "all", "all", "scram-sha-256"]), (r.name, sb.of_region)
            checked += 1
    assert checked >= 12, checked


@pytest.mark.tool
def test_the_wal_receiver_query_on_a_real_standby(reference, reference_tree, isolation, tls, pg_template):
    """A PostgreSQL 15 standby streaming from a primary (pg_basebackup -R), with the generated pg_hba.conf of
    ca-central-1's standby cluster in us-east-1: as the exporter's role (pg_monitor), the exporter's query sees one
    WAL receiver, streaming, from the host its primary_conninfo names (a socket directory here; Patroni's
    standby_cluster host on the hosts); the role is admitted by peer, not by a password (the OS user postgres is
    refused as postgres_exporter: "Peer authentication failed"); once the primary stops, no receiver streams."""
    import subprocess
    work = private_dir("drw-")
    try:
        (work / "p").mkdir()
        (work / "s").mkdir()
        (work / "empty.conf").write_text("")
        (work / "trust_hba.conf").write_text("local all all trust\nlocal replication all trust\n")
        primary = PgCluster(work / "empty.conf", work / "trust_hba.conf", work / "p", tls)
        primary.start()
        primary.psql("-c", f"CREATE ROLE {dr_watch.POSTGRES_EXPORTER_USER} LOGIN", "-c",
                     f"GRANT pg_monitor TO {dr_watch.POSTGRES_EXPORTER_USER}")
        hba = reference_tree / f"datastores/us-east-1/{standby_hba_file('ca-central-1')}"
        standby = PgCluster(work / "empty.conf", hba, work / "s", tls)
        shutil.rmtree(standby.data)
        res = subprocess.run(AS_POSTGRES + [str(PGBIN / "pg_basebackup"), "-h", str(primary.work), "-p",
                                            str(primary.port), "-U", "postgres", "-D", str(standby.data), "-R",
                                            "--no-sync", "-X", "stream"], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
        standby.start()
        as_exporter = f"SET ROLE {dr_watch.POSTGRES_EXPORTER_USER}; {dr_watch.WAL_RECEIVER_SQL}"
        deadline = time.monotonic() + 30
        while (rows := standby.query(as_exporter)) != [["streaming", str(primary.work), "1"]] \
                and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rows == [["streaming", str(primary.work), "1"]], rows
        assert primary.query(dr_watch.WAL_RECEIVER_SQL) == []  # a primary has no receiver: no series
        login = standby.psql("-c", "SELECT 1", user=dr_watch.POSTGRES_EXPORTER_USER, check=False)
        assert login.returncode != 0 and \
            f'Peer authentication failed for user "{dr_watch.POSTGRES_EXPORTER_USER}"' in login.stderr, login.stderr
        primary.stop()
        deadline = time.monotonic() + 30
        while any(r[0] == "streaming" for r in standby.query(as_exporter)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(r[0] == "streaming" for r in standby.query(as_exporter))
    finally:
        for c in ("primary", "standby"):
            if c in locals():
                locals()[c].stop()
        shutil.rmtree(work, ignore_errors=True)



def test_region_may_be_lost_names_the_sync_replica_cause_where_the_standby_streams_from_it(reference):
    """A standby that streams from its source's synchronous replica stops streaming while the source's only replica
    is down (the sync endpoint has no member), with the source alive: the page must say so before anyone fences a
    live region; a standby fed by a one-member source's leader endpoint has no such cause."""
    from compiler.targets import monitoring
    seen = 0
    for r in reference.regions:
        pages = [x for g in monitoring.rule_groups(reference, r) for x in g["rules"]
                 if x.get("alert") == "DrRegionMayBeLost"]
        for sb in (r.postgres_ha.standbys if r.postgres_ha else ()):
            page = next(x for x in pages if x["labels"]["source_region"] == sb.of_region)
            from_sync = sb.primary_host == reference.region(sb.of_region).postgres_ha.sync_endpoint
            said = "synchronous replica is down" in page["annotations"]["description"]
            assert said == from_sync, (r.name, sb.of_region)
            seen += from_sync
    assert seen


def test_the_shared_exporter_rule_says_what_it_admits(reference):
    """The standby probes share the exporter scrape's port and source, so one nftables rule admits both: its comment
    must name each standby (by its purpose, or by name where the line would be too long), not "postgres clients"."""
    from compiler.targets.ansible.inventory import firewall_rules
    checked = 0
    for r in reference.regions:
        probes = _probes(r)
        for group in {h.group for h in r.hosts if any(h.fqdn in c.dest.hosts for c in probes)}:
            rule = next(x for x in firewall_rules(r, group) if x["ports"] == [POSTGRES_EXPORTER_PORT])
            assert not rule["comment"].endswith(": postgres clients")
            mine = [c for c in probes if set(c.dest.hosts) & {h.fqdn for h in r.hosts_in(group)}]
            assert all(c.dest.name in rule["comment"] or c.purpose in rule["comment"] for c in mine), rule["comment"]
            checked += 1
    assert checked
