"""platformc verify's hosts checker: nftables on the data hosts, pg_hba.conf, and the TLS versions both ends of
PgBouncer -> PostgreSQL and of replication accept. The reference is generated once; each test copies it, breaks
one generated file the way a hand edit or a template mistake would, and expects verify to name that file and
line with the layer."""

from __future__ import annotations

import ipaddress
import re
import shutil
from pathlib import Path

import pytest
import yaml

from compiler.ir.postgres_ha import FENCE_LAYER, STANDBY_HBA_LAYER, standby_hba_file
from compiler.verify import Tree, verify
from compiler.verify import hosts
from tests.conftest import REPO

LAYERS = {"nftables", "pg_hba", STANDBY_HBA_LAYER, hosts.TLS_LAYER, FENCE_LAYER}
GCP = "ap-southeast-1"  # pods keep their pod-range addresses there: the case the node subnets do not cover
AWS = "us-east-1"
AZURE = "eu-west-2"  # its PostgreSQL endpoints deliver to backend ports of their own, redirected on the members


def _generate(spec: Path, out: Path) -> Path:
    from compiler import writer
    from compiler.emit import emit
    from compiler.pipeline import compile_file
    plan = compile_file(str(spec)).plan
    # terraform: the region roots name the ports the PostgreSQL endpoints' load balancers deliver to (Azure's
    # members redirect theirs, which the nftables layer proves)
    outputs, _ = emit(plan, ["connections", "ansible", "datastores", "terraform"], with_docs=False)
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


@pytest.fixture(scope="module")
def reference_tree(tmp_path_factory) -> Path:
    return _generate(REPO / "platform.yaml", tmp_path_factory.mktemp("verify-hosts-ref"))


@pytest.fixture
def tree(reference_tree, tmp_path) -> Path:
    dst = tmp_path / "gen"
    shutil.copytree(reference_tree, dst)
    return dst


def _mine(report) -> list:
    return [b for b in report.broken if b.layer in LAYERS]


def _only_hosts(monkeypatch):
    monkeypatch.setattr("compiler.verify.CHECKERS", ("compiler.verify.hosts",))


def _line(path: Path, needle: str, start: int = 1) -> int:
    for i, line in enumerate(path.read_text().splitlines()[start - 1:], start):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def _broken(root: Path, layer: str, region: str | None = None) -> list:
    report = verify(root, [region] if region else None)
    return [b for b in report.broken if b.layer == layer]


def _covered(cidr: str, sources) -> bool:
    """Whether the union of `sources` holds every address of `cidr`."""
    net = ipaddress.ip_network(cidr)
    union = ipaddress.collapse_addresses(n for n in map(ipaddress.ip_network, map(str, sources)) if n.version == net.version)
    return sum(min(u.num_addresses, net.num_addresses) for u in union if u.overlaps(net)) >= net.num_addresses


def _crossing(root: Path, region: str, hba_lines) -> list[str]:
    """The pg_hba connections of the region (wiring order) that one of these pg_hba.conf lines applies to: its
    database field (`all` takes every database but replication, `replication` only replication), one of its
    users and part of its address match a database, a user and a source CIDR of the connection."""
    out = []
    for c in Tree(root).connections(region):
        if "pg_hba" not in c.layers:
            continue
        for text in hba_lines:
            _, dbs, users, address = text.split()[:4]
            dbs, users, net = dbs.split(","), users.split(","), ipaddress.ip_network(address)
            db_hit = any(("replication" in dbs) if db == "replication" else ("all" in dbs or f'"{db}"' in dbs)
                         for db in c.database.split(","))
            user_hit = "all" in users or any(f'"{u}"' in users for u in c.user.split(","))
            if db_hit and user_hit and any(ipaddress.ip_network(s).overlaps(net) for s in c.source.cidrs):
                out.append(c.id)
                break
    return out


# ---------------------------------------------------------------- the unmutated trees

def test_reference_has_nothing_broken_in_the_hosts_layers(reference_tree, monkeypatch):
    _only_hosts(monkeypatch)
    report = verify(reference_tree)
    assert _mine(report) == [], "\n".join(b.format() for b in _mine(report)[:20])
    checked = {layer for layer in report.layers}
    assert {"nftables", "pg_hba", STANDBY_HBA_LAYER, hosts.TLS_LAYER, FENCE_LAYER} <= checked
    tree = Tree(reference_tree)
    wanted = sum(1 for r in tree.regions for c in tree.connections(r) for layer in c.layers if layer in ("nftables", "pg_hba"))
    assert report.checks >= wanted > 0


@pytest.mark.parametrize("case", sorted(p.name for p in (REPO / "tests/cases").iterdir() if (p / "platform.yaml").exists()))
def test_every_case_has_nothing_broken_in_the_hosts_layers(case, tmp_path, monkeypatch):
    _only_hosts(monkeypatch)
    root = _generate(REPO / "tests/cases" / case / "platform.yaml", tmp_path / case)
    report = verify(root)
    assert _mine(report) == [], "\n".join(b.format() for b in _mine(report)[:20])


def test_gcp_firewalls_admit_the_pod_range(reference_tree):
    """On GKE the pods' packets reach the VMs with their pod-range addresses: the firewalls admit that range."""
    tree = Tree(reference_tree)
    pods = tree.region_info(GCP)["addressing"]["pod_source_cidrs"]
    rules = yaml.safe_load((reference_tree / f"ansible/inventories/{GCP}/group_vars/pgbouncer.yml").read_text())
    opening = [r for r in rules["common_firewall_rules"] if r["ports"] == [6432]]
    assert [r["sources"] for r in opening] == [pods]


# ---------------------------------------------------------------- nftables

def test_a_port_dropped_from_a_groups_rules_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    gv = tree / f"ansible/inventories/{GCP}/group_vars/redis_cluster.yml"
    data = yaml.safe_load(gv.read_text())
    data["common_firewall_rules"] = [r for r in data["common_firewall_rules"] if 9121 not in r["ports"]]
    gv.write_text(yaml.safe_dump(data, sort_keys=False))
    broken = _broken(tree, "nftables", GCP)
    assert [b.connection for b in broken] == ["prometheus->redis:9121/tcp"]
    b = broken[0]
    assert (b.file, b.line) == (f"ansible/inventories/{GCP}/group_vars/redis_cluster.yml",
                                _line(gv, "common_firewall_rules:"))
    assert "no rule" in b.message and "9121" in b.message


def test_a_narrowed_source_is_named_at_its_rule(tree, monkeypatch):
    """The GCP defect: PgBouncer admitting the node subnets only, while the pods come from the pod range."""
    _only_hosts(monkeypatch)
    gv = tree / f"ansible/inventories/{GCP}/group_vars/pgbouncer.yml"
    text = gv.read_text()
    pods = Tree(tree).region_info(GCP)["addressing"]["pod_source_cidrs"][0]
    nodes = Tree(tree).region_info(GCP)["addressing"]["node_cidrs"][0]
    rule_line = _line(gv, "- comment: '6432/tcp")
    gv.write_text(text.replace(f"  - {pods}\n", f"  - {nodes}\n", 1))
    broken = _broken(tree, "nftables", GCP)
    assert broken and all(b.connection.endswith("->pgbouncer:6432/tcp") for b in broken)
    assert {(b.file, b.line) for b in broken} == {(f"ansible/inventories/{GCP}/group_vars/pgbouncer.yml", rule_line)}
    assert pods in broken[0].message


def test_a_rule_in_a_parent_group_overridden_by_the_child_is_not_counted(tree, monkeypatch):
    """Ansible's precedence: postgres_primary's list replaces postgres's, so rules moved up to the parent
    group no longer reach the primary."""
    _only_hosts(monkeypatch)
    base = tree / f"ansible/inventories/{AWS}/group_vars"
    primary = yaml.safe_load((base / "postgres_primary.yml").read_text())
    standby = [r for r in primary["common_firewall_rules"] if "standby" in r["comment"]]
    primary["common_firewall_rules"] = [r for r in primary["common_firewall_rules"] if r not in standby]
    (base / "postgres_primary.yml").write_text(yaml.safe_dump(primary, sort_keys=False))
    parent = yaml.safe_load((base / "postgres.yml").read_text())
    parent["common_firewall_rules"] = standby
    (base / "postgres.yml").write_text(yaml.safe_dump(parent, sort_keys=False))
    # what the primary is left with: postgres_primary.yml's list alone (the child group wins). Broken: every
    # firewalled connection into a group holding the primary whose sources that list no longer admits.
    hosts_yml = yaml.safe_load((tree / f"ansible/inventories/{AWS}/hosts.yml").read_text())

    def holding(node, path):
        for name, sub in ((node or {}).get("children") or {}).items():
            if name == "postgres_primary":
                return path | {name}
            found = holding(sub, path | {name})
            if found:
                return found
        return None

    groups = holding(hosts_yml["all"], {"all"})
    left = primary["common_firewall_rules"]
    expected = [c.id for c in Tree(tree).connections(AWS) if "nftables" in c.layers and c.dest.host_group in groups
                and not all(_covered(s, [src for r in left if c.dest_port in r["ports"]
                                         and r.get("protocol", "tcp") == c.protocol.lower() for src in r["sources"]])
                            for s in c.source.cidrs)]
    assert "postgres-standby->postgres:5432/tcp" in expected
    broken = _broken(tree, "nftables", AWS)
    assert [b.connection for b in broken] == expected
    assert {b.file for b in broken} == {f"ansible/inventories/{AWS}/group_vars/postgres_primary.yml"}


def test_a_template_that_drops_what_the_variables_open_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    tpl = tree / "ansible/roles/common/templates/nftables.conf.j2"
    text = tpl.read_text()
    # a template mistake: IPv4 sources rendered as a drop
    tpl.write_text(text.replace("{{ rule.protocol | default('tcp') }} dport { {{ rule.ports | join(', ') }} } accept",
                                "{{ rule.protocol | default('tcp') }} dport { {{ rule.ports | join(', ') }} } drop", 1))
    broken = _broken(tree, "nftables", AWS)
    assert broken
    assert {b.file for b in broken} == {"ansible/roles/common/templates/nftables.conf.j2"}
    assert all(b.line == _line(tpl, "dport") for b in broken)


def test_azure_members_redirect_their_endpoints_backend_ports(reference_tree):
    """The replicas' and the sync endpoint's connections reach Azure's members on the load balancer's backend ports,
    which every member redirects to 5432 before the input filter; AWS's and GCP's members redirect nothing."""
    tree = Tree(reference_tree)
    for region in tree.regions:
        inv = hosts._Inventory(tree, region)
        for host in sorted(inv.hosts_in("postgres")):
            text, error = hosts._render_nft(tree, inv.variables(host)[0])
            assert error is None
            redirects = hosts._Ruleset(text).redirects
            if tree.region_info(region)["cloud"] == "azure":
                assert redirects == {("tcp", 15433): 5432, ("tcp", 15434): 5432}, (region, host)
            else:
                assert redirects == {}, (region, host)


def _drop_redirects(tree: Path, group: str) -> Path:
    gv = tree / f"ansible/inventories/{AZURE}/group_vars/{group}.yml"
    data = yaml.safe_load(gv.read_text())
    del data["common_port_redirects"]
    gv.write_text(yaml.safe_dump(data, sort_keys=False))
    return gv


def test_a_member_that_does_not_redirect_a_backend_port_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    gv = _drop_redirects(tree, "postgres_replicas")
    broken = _broken(tree, "nftables", AZURE)
    # the flows through the two endpoints whose backend port is not 5432: on the replicas, the primary still redirects
    assert sorted(b.connection for b in broken) == ["pgbouncer->postgres-read:5432/tcp",
                                                    "postgres-standby->postgres:5432/tcp"]
    assert {(b.file, b.line) for b in broken} == {(f"ansible/inventories/{AZURE}/group_vars/postgres_replicas.yml",
                                                  _line(gv, "common_firewall_rules:"))}
    assert all("redirects them nowhere, not to 5432" in b.message for b in broken)
    assert any("15433/tcp" in b.message for b in broken) and any("15434/tcp" in b.message for b in broken)


def test_a_template_that_drops_the_redirects_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    tpl = tree / "ansible/roles/common/templates/nftables.conf.j2"
    _text = tpl.read_text()
    tpl.write_text(_text.replace("redirect to :{{ redirect.to_port }}", "redirect to :{{ redirect.to_port + 1 }}", 1))
    broken = _broken(tree, "nftables", AZURE)
    assert broken and {(b.file, b.line) for b in broken} == {(
        "ansible/roles/common/templates/nftables.conf.j2", _line(tpl, "redirect to"))}
    assert all("the variables redirect it to 5432, the template does not" in b.message for b in broken)


def test_a_backend_port_the_member_also_serves_is_named(tree, monkeypatch):
    """A service on the backend port (a rule opens it) would lose its connections to PostgreSQL."""
    _only_hosts(monkeypatch)
    gv = tree / f"ansible/inventories/{AZURE}/group_vars/postgres_primary.yml"
    data = yaml.safe_load(gv.read_text())
    data["common_firewall_rules"].append({"comment": "something else on 15433", "protocol": "tcp", "ports": [15433],
                                          "sources": ["10.6.0.0/19"]})
    gv.write_text(yaml.safe_dump(data, sort_keys=False))
    broken = _broken(tree, "nftables", AZURE)
    assert [b.connection for b in broken] == ["pgbouncer->postgres-read:5432/tcp"]
    assert "also opens 15433 for another service" in broken[0].message


# ---------------------------------------------------------------- pg_hba

def _hba(tree: Path, region: str = AWS) -> Path:
    return tree / f"datastores/{region}/pg_hba.conf"


def test_a_pg_hba_line_by_host_name_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    hba = _hba(tree)
    c = next(c for c in Tree(tree).connections(AWS) if c.id == "pgbouncer->postgres:5432/tcp")
    lines = hba.read_text().splitlines(keepends=True)
    out, first, replaced = [], None, []
    for i, line in enumerate(lines, 1):
        cidr = next((s for s in c.source.cidrs if re.match(rf"hostssl\s+all\s+\S+\s+{re.escape(s)}\s", line)), None)
        if cidr:
            replaced.append(line)
            if first is None:  # every PgBouncer line becomes a host name line (reverse DNS)
                out.append(line.replace(cidr, c.source.hosts[0].ljust(len(cidr))))
                first = i
            continue
        out.append(line)
    hba.write_text("".join(out))
    # every connection that went through one of the replaced lines (PgBouncer's pools) now meets the host name
    expected = _crossing(tree, AWS, replaced)
    assert c.id in expected
    broken = _broken(tree, "pg_hba", AWS)
    assert [b.connection for b in broken] == expected
    assert {(b.file, b.line) for b in broken} == {(f"datastores/{AWS}/pg_hba.conf", first)}
    assert all("host name" in b.message for b in broken)


def test_a_pg_hba_line_for_the_wrong_database_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    hba = _hba(tree)
    # the DR standby's line for its first source CIDR names every database instead of `replication`, which `all`
    # never matches (PostgreSQL's rule)
    c = next(c for c in Tree(tree).connections(AWS) if c.id == "postgres-standby->postgres:5432/tcp")
    lines = hba.read_text().splitlines(keepends=True)
    line = next(i for i, x in enumerate(lines, 1)
                if re.match(rf'hostssl\s+replication\s+"replicator"\s+{re.escape(c.source.cidrs[0])}\s', x))
    expected = _crossing(tree, AWS, [lines[line - 1]])
    assert c.id in expected
    lines[line - 1] = lines[line - 1].replace("replication", "all        ", 1)
    hba.write_text("".join(lines))
    broken = _broken(tree, "pg_hba", AWS)
    assert [b.connection for b in broken] == expected
    assert {(b.file, b.line) for b in broken} == {(f"datastores/{AWS}/pg_hba.conf", line)}
    assert all("another database" in b.message for b in broken)


def test_a_reject_before_the_allow_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    hba = _hba(tree)
    lines = hba.read_text().splitlines(keepends=True)
    at = _line(hba, "hostssl")  # the first host line: everything after it is shadowed for 10.0.0.0/8
    reject = "host      all                      all             10.0.0.0/8                  reject\n"
    lines.insert(at - 1, reject)
    hba.write_text("".join(lines))
    broken = _broken(tree, "pg_hba", AWS)
    # every connection from 10.0.0.0/8 to a database is shadowed; `all` never matches a replication connection
    # (PostgreSQL's rule): the replicas and the DR standby still get through
    expected = _crossing(tree, AWS, [reject])
    assert "pgbouncer->postgres:5432/tcp" in expected
    assert not any(c.database == "replication" for c in Tree(tree).connections(AWS) if c.id in expected)
    assert [b.connection for b in broken] == expected
    assert {(b.file, b.line) for b in broken} == {(f"datastores/{AWS}/pg_hba.conf", at)}
    assert all("reject" in b.message for b in broken)


def test_a_line_that_does_not_require_tls_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    hba = _hba(tree)
    at = _line(hba, "hostssl   replication")
    lines = hba.read_text().splitlines(keepends=True)
    expected = _crossing(tree, AWS, [lines[at - 1]])  # the region's own replicas (Patroni members)
    assert expected
    lines[at - 1] = lines[at - 1].replace("hostssl  ", "host     ", 1)
    hba.write_text("".join(lines))
    broken = _broken(tree, "pg_hba", AWS)
    assert [b.connection for b in broken] == expected
    assert all(b.line == at and "TLS" in b.message for b in broken)


# ---------------------------------------------------------------- TLS at both ends

def test_a_tls_mismatch_between_pgbouncer_and_postgres_is_named(tree, monkeypatch):
    """A floor of 1.3 on the server and a PgBouncer that tops out at 1.2: no common version."""
    _only_hosts(monkeypatch)
    ini = tree / f"datastores/{AWS}/pgbouncer.ini"
    ini.write_text(ini.read_text().replace("server_tls_protocols = tlsv1.3", "server_tls_protocols = tlsv1.2"))
    broken = _broken(tree, hosts.TLS_LAYER, AWS)
    # each of PgBouncer's pools into PostgreSQL (primary and read replicas) takes server_tls_protocols, and so do its
    # connections to the standby clusters the region runs (served with their sources' postgresql.conf, also 1.3)
    expected = [c.id for c in Tree(tree).connections(AWS)
                if ("pg_hba" in c.layers or STANDBY_HBA_LAYER in c.layers) and c.source.host_group == "pgbouncer"]
    assert "pgbouncer->postgres:5432/tcp" in expected and "pgbouncer->standby-us-west-2:5433/tcp" in expected
    assert [b.connection for b in broken] == expected
    assert {(b.file, b.line) for b in broken} == {(f"datastores/{AWS}/pgbouncer.ini", _line(ini, "server_tls_protocols"))}
    assert all("no common version" in b.message for b in broken)


def test_a_server_max_below_the_clients_floor_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    conf = tree / f"datastores/{AWS}/postgresql.conf"
    conf.write_text(conf.read_text() + "ssl_max_protocol_version = 'TLSv1.2'\n")
    broken = _broken(tree, hosts.TLS_LAYER, AWS)
    # every TLS connection this PostgreSQL serves (its pg_hba.conf gates them) with a floor above 1.2 is cut off
    expected = {c.id for c in Tree(tree).connections(AWS) if "pg_hba" in c.layers and c.tls in ("1.3",)}
    assert "pgbouncer->postgres:5432/tcp" in expected
    assert any(c.database == "replication" for c in Tree(tree).connections(AWS) if c.id in expected)
    assert [b.connection for b in broken] == [c.id for c in Tree(tree).connections(AWS) if c.id in expected]
    cap = f"datastores/{AWS}/postgresql.conf:{_line(conf, 'ssl_max_protocol_version')}"
    assert all("no common version" in b.message and cap in b.message for b in broken)


def test_a_standby_that_does_not_verify_or_accepts_less_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    conf = tree / f"datastores/{AWS}/postgresql.conf"
    conf.write_text(conf.read_text().replace("sslmode=verify-full", "sslmode=require")
                    .replace("ssl_min_protocol_version=TLSv1.3", "ssl_min_protocol_version=TLSv1.2"))
    broken = _broken(tree, hosts.TLS_LAYER, AWS)
    line = _line(conf, "primary_conninfo =")
    assert {(b.file, b.line) for b in broken} == {(f"datastores/{AWS}/postgresql.conf", line)}
    messages = " ".join(b.message for b in broken)
    assert "sslmode=require" in messages and "below the floor 1.3" in messages


# ---------------------------------------------------------------- a standby cluster's own pg_hba.conf

def test_the_standby_clusters_file_admits_the_regions_pgbouncer_and_the_sources_does_not(tree, monkeypatch):
    """us-west-2 runs us-east-1's standby cluster; after a promotion its PgBouncer serves us-east-1's shards from it.
    The cluster's own file admits that PgBouncer; the source's file, which the cluster used to get, refuses it at its
    final reject, and verify names that line."""
    _only_hosts(monkeypatch)
    host = "us-west-2"
    c = next(c for c in Tree(tree).connections(host) if c.id == "pgbouncer->standby-us-east-1:5433/tcp")
    assert STANDBY_HBA_LAYER in c.layers and {"cloud-firewall", "nftables"} <= set(c.layers)
    assert _broken(tree, STANDBY_HBA_LAYER, host) == []
    own = tree / f"datastores/{host}" / standby_hba_file("us-east-1")
    source = (tree / f"datastores/{AWS}/pg_hba.conf").read_text()
    own.write_text(source)
    broken = _broken(tree, STANDBY_HBA_LAYER, host)
    # no line of the source's file names the region's PgBouncer subnets for a database: the final reject decides
    assert not any(x.startswith("hostssl   all") and any(f" {s} " in x for s in c.source.cidrs) for x in source.splitlines())
    assert [b.connection for b in broken] == [c.id]
    assert broken[0].file == f"datastores/{host}/{standby_hba_file('us-east-1')}"
    assert f"from {c.source.cidrs[0]} not admitted" in broken[0].message
    own.unlink()
    assert [b.message for b in _broken(tree, STANDBY_HBA_LAYER, host)] == ["pg_hba.conf is missing"]


def test_pgbouncer_and_a_standby_cluster_with_no_common_tls_version_are_named(tree, monkeypatch):
    """The standby cluster serves with its source's postgresql.conf: a source that only speaks TLS 1.2 and a PgBouncer
    that only speaks 1.3 cannot meet after a promotion, and verify blames the source's setting, not the region's."""
    _only_hosts(monkeypatch)
    host = "us-west-2"
    conf = tree / f"datastores/{AWS}/postgresql.conf"
    conf.write_text(conf.read_text().replace("ssl_min_protocol_version = 'TLSv1.3'", "ssl_min_protocol_version = 'TLSv1.2'")
                    + "ssl_max_protocol_version = 'TLSv1.2'\n")
    broken = [b for b in _broken(tree, hosts.TLS_LAYER, host) if b.connection == "pgbouncer->standby-us-east-1:5433/tcp"]
    assert len(broken) == 1 and "no common version" in broken[0].message
    assert f"datastores/{AWS}/postgresql.conf" in broken[0].message
    assert [b for b in _broken(tree, hosts.TLS_LAYER, host) if b.connection == "pgbouncer->postgres:5432/tcp"] == []


# ---------------------------------------------------------------- the split-brain fence

FENCE = "patroni->standby-us-east-1:8009/tcp"  # us-east-1's members ask us-west-2's standby cluster of us-east-1


def test_the_fence_dials_its_connection_and_its_partner_admits_it(reference_tree, monkeypatch):
    """The fence's flow leaves us-east-1's members (its own layer: the drop-in the patroni role writes, as rendered for
    each member, asks exactly the connection's hosts and port) and enters us-west-2's standby hosts, whose firewall
    admits those members' subnets: both ends are proved, each in its region's file."""
    _only_hosts(monkeypatch)
    t = Tree(reference_tree)
    leaving = next(c for c in t.connections(AWS) if c.id == FENCE)
    entering = next(c for c in t.connections("us-west-2") if c.id == "patroni-us-east-1->standby-us-east-1:8009/tcp")
    assert FENCE_LAYER in leaving.layers and "nftables" in entering.layers
    assert set(leaving.dest.hosts) == set(entering.dest.hosts) and leaving.source.cidrs == entering.source.cidrs
    report = verify(reference_tree, [AWS, "us-west-2"])
    assert [b for b in report.broken if b.layer in (FENCE_LAYER, "nftables")] == []
    assert FENCE_LAYER in report.layers


def test_a_fence_asking_other_members_is_named(tree, monkeypatch):
    """A member missing from group_vars `patroni_fence`: the drop-in would not ask it, and it may be the promoted
    leader. Named at the variable, for the connection."""
    _only_hosts(monkeypatch)
    gv = tree / f"ansible/inventories/{AWS}/group_vars/postgres.yml"
    text = gv.read_text()
    member = "  - https://sixfb-us-west-2-pg-3.us-west-2.internal.6fb.example.com:8009\n"
    assert member in text
    gv.write_text(text.replace(member, ""))
    broken = _broken(tree, FENCE_LAYER, AWS)
    assert [b.connection for b in broken] == [FENCE]
    assert broken[0].file == f"ansible/inventories/{AWS}/group_vars/postgres.yml"
    assert broken[0].line == _line(gv, "patroni_fence:")
    assert "sixfb-us-west-2-pg-3" in broken[0].message


def _tasks(tree: Path) -> tuple[Path, list]:
    rel = tree / "ansible/roles/patroni/tasks/main.yml"
    return rel, yaml.safe_load(rel.read_text())


def _dropin(tasks) -> dict:
    return next(t for t in tasks if str(t.get("ansible.builtin.copy", {}).get("dest", "")).endswith("/fence.conf"))


@pytest.mark.parametrize("mutation, says", [
    # the drop-in on the template unit: every standby cluster of the host would be fenced by this region's partner
    (lambda tasks: _dropin(tasks)["ansible.builtin.copy"].update(
        dest="/etc/systemd/system/patroni@.service.d/fence.conf"), "not one of the region's cluster"),
    # a script no task installs
    (lambda tasks: _dropin(tasks)["ansible.builtin.copy"].update(
        content=_dropin(tasks)["ansible.builtin.copy"]["content"].replace("patroni-fence", "patroni-fence-old")),
     "which no task installs"),
    # the partner's CA never written: the certificates would not verify, and no member would count as answering
    (lambda tasks: tasks.remove(next(t for t in tasks if str(t.get("ansible.builtin.copy", {}).get("dest")).endswith(
        "-ca.crt") and "fence" in t["ansible.builtin.copy"]["dest"])), "does not verify"),
    # no ExecStartPre at all
    (lambda tasks: _dropin(tasks)["ansible.builtin.copy"].update(
        content=_dropin(tasks)["ansible.builtin.copy"]["content"].replace("ExecStartPre=", "ExecStartPost=")),
     "no drop-in of a Patroni unit runs the fence"),
], ids=["template-unit", "unknown-script", "no-ca", "no-exec-start-pre"])
def test_a_drop_in_that_does_not_run_the_fence_as_connected_is_named(tree, monkeypatch, mutation, says):
    _only_hosts(monkeypatch)
    path, tasks = _tasks(tree)
    mutation(tasks)
    path.write_text(yaml.safe_dump(tasks, sort_keys=False, width=1000))
    broken = _broken(tree, FENCE_LAYER, AWS)
    assert [b.connection for b in broken] == [FENCE], broken
    assert broken[0].file == "ansible/roles/patroni/tasks/main.yml" and says in broken[0].message, broken[0].message
