"""verify: a pg_hba line that admits PgBouncer only with a client certificate of the region's CA
(clientcert=verify-ca) is matched by PgBouncer presenting one (server_tls_cert_file/server_tls_key_file)."""

from __future__ import annotations

from tests.verify.test_hosts import AWS, _broken, _line, _only_hosts, reference_tree, tree  # noqa: F401


def test_pgbouncer_lines_require_its_certificate(reference_tree):
    hba = (reference_tree / f"datastores/{AWS}/pg_hba.conf").read_text().splitlines()
    pgb = [line for line in hba if line.startswith("hostssl") and '"pgbouncer"' in line]
    assert pgb and all(line.split()[-1] == "clientcert=verify-ca" for line in pgb)
    others = [line for line in hba if line.startswith("hostssl") and '"pgbouncer"' not in line]
    assert others and not any("clientcert" in line for line in others)  # the replication lines: password only
    ini = (reference_tree / f"datastores/{AWS}/pgbouncer.ini").read_text()
    assert "server_tls_cert_file = /etc/pgbouncer/tls/server.crt" in ini
    assert "server_tls_key_file = /etc/pgbouncer/tls/server.key" in ini


def test_pgbouncer_without_a_client_certificate_is_named(tree, monkeypatch):
    _only_hosts(monkeypatch)
    ini = tree / f"datastores/{AWS}/pgbouncer.ini"
    ini.write_text("".join(line for line in ini.read_text().splitlines(keepends=True)
                           if not line.startswith(("server_tls_cert_file", "server_tls_key_file"))))
    broken = [b for b in _broken(tree, "pg_hba", AWS) if "client certificate" in b.message]
    assert broken and {b.file for b in broken} == {f"datastores/{AWS}/pgbouncer.ini"}
    assert all(b.connection.startswith("pgbouncer->") for b in broken)
    assert broken[0].line == _line(ini, "server_tls_ca_file")
