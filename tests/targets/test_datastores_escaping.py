"""The data-tier escaping filters: any value is either refused or read back by the real parser as exactly itself.

Property tests (hypothesis) write arbitrary text through each filter and let the real program parse
it: Redis' sdssplitargs (the same function splits redis.conf lines and inline commands), the GUC
file lexer (pg_file_settings re-reads the config files on every query), pg_hba.conf's tokenizer
(pg_hba_file_rules), PgBouncer's ini and connection-string parser (RELOAD, then SHOW), and psql
plus the SQL parser. Directive injection (a newline, `#`, a quote, `=`) is tried explicitly too.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.formats import pg_hba, pgbouncer_ini, postgresql_conf, redis_conf, sql
from compiler.formats.conf import FormatError, comment
from tests.targets.test_datastores_support import (  # noqa: F401  (fixtures)
    AS_POSTGRES, PGBIN, PgCluster, Resp, chown_tree, isolation, pg_server, pg_template, pgbouncer_admin,
    private_dir, reference_tree, start_pgbouncer, start_redis, tls)

INJECTIONS = ["x\nprotected-mode no", "x # y", "x' y", 'x" y', "x = y", "a\\nb", "\\", "'", '"', "#", "=",
              "", " lead", "trail ", "tab\there", "ünïcødé ✓", "\x01\x7f", "x\r\ny", "$1 %p ${a}"]
TEXT = st.text(max_size=40)
REAL = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _refused_or(fn, value):
    """fn(value), or None when the filter refuses it (the only other acceptable outcome)."""
    try:
        return fn(value)
    except FormatError:
        return None


# ------------------------------------------------------------------------ pure rules

def test_refusals_name_the_value_and_the_reason():
    cases = [
        (pgbouncer_ini.value, "a\nb", "line break"), (pgbouncer_ini.value, " a", "trimmed"),
        (pgbouncer_ini.connstr_value, "", "non-empty"), (pgbouncer_ini.key, "pgbouncer", "reserved"),
        (pgbouncer_ini.key, "a b", "key"), (pg_hba.name, 'a"b', "double quote"), (pg_hba.name, "a\nb", "control"),
        (pg_hba.address, "all", "CIDR"), (pg_hba.address, "10.0.0.1/8", "CIDR"), (pg_hba.keyword, "trustme", "keyword"),
        (postgresql_conf.quote, "a\0b", "NUL"), (postgresql_conf.name, "a b", "parameter name"),
        (sql.literal, "a\0", "NUL"), (sql.ident, "x" * 64, "63 bytes"), (sql.psql_word, "dbname=x", "lower-case"),
        (redis_conf.directive, "bind\n", "directive"), (comment, "one\ntwo", "newline"),
    ]
    for fn, value, reason in cases:
        with pytest.raises(FormatError, match=reason) as exc:
            fn(value)
        assert repr(value) in str(exc.value)


@given(TEXT)
def test_a_comment_is_one_line_or_refused(text):
    out = _refused_or(comment, text)
    assert out is None or (out == text and "\n" not in out and "\r" not in out)


@given(TEXT)
def test_quoted_redis_arguments_are_one_line_of_printable_ascii(text):
    q = redis_conf.quote(text)
    assert q.startswith('"') and q.endswith('"') and all(0x20 <= ord(c) < 0x7F for c in q)


# ------------------------------------------------------------------------ Redis

@pytest.fixture(scope="session")
def redis_plain(isolation):
    """A redis-server with no config file (default user, no password): the parser is what is tested."""
    work = private_dir("dst-rp-")
    (work / "empty.conf").write_text("")
    server, sock = start_redis(work / "empty.conf", work, "--cluster-enabled", "no")
    client = Resp(sock)
    yield client
    client.close()
    server.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.tool
@REAL
@given(TEXT)
def test_redis_quoting_round_trips_through_sdssplitargs(redis_plain, text):
    for written in (redis_conf.quote(text), redis_conf.arg(text)):
        assert written, "an empty argument would vanish; arg() quotes it"
        assert redis_plain.inline(f"SET probe {written}") == "OK", written
        assert redis_plain.call("GET", "probe") == text.encode("utf-8"), written


@pytest.mark.tool
def test_redis_conf_values_cannot_inject_directives(isolation):
    """A real redis.conf: masterauth holds each nasty value exactly; the directives it tries to add do nothing."""
    work = private_dir("dst-rinj-")
    try:
        for i, value in enumerate(INJECTIONS):
            d = work / str(i)
            d.mkdir()
            (d / "redis.conf").write_text(f"protected-mode yes\nmasterauth {redis_conf.arg(value)}\n"
                                          f"masteruser {redis_conf.arg(value or 'x')}\n")
            server, sock = start_redis(d / "redis.conf", d, "--cluster-enabled", "no")
            try:
                c = Resp(sock)
                assert c.call("CONFIG", "GET", "masterauth")[1] == value.encode(), value
                assert c.config_get("protected-mode") == "yes"
                c.close()
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -------------------------------------------------------------------- postgresql.conf

def _file_settings(pg, names) -> dict[str, str]:
    rows = pg.query(f"SELECT name, encode(convert_to(setting, 'UTF8'), 'hex'), coalesce(error, '') FROM pg_file_settings "
                    f"WHERE sourcefile = '{pg.probe}' ORDER BY sourceline")
    assert all(r[2] == "" for r in rows), rows
    return {r[0]: bytes.fromhex(r[1]).decode("utf-8") for r in rows}


@pytest.mark.tool
@REAL
@given(st.lists(TEXT, min_size=1, max_size=5))
def test_postgresql_conf_strings_round_trip_through_the_guc_lexer(pg_server, values):
    lines, expected = [], {}
    for i, v in enumerate(values):
        for kind, fn in (("q", postgresql_conf.quote), ("v", postgresql_conf.value)):
            written = _refused_or(fn, v)
            if written is None:
                assert "\0" in v
                continue
            name = f"platformc.probe_{kind}{i}"
            lines.append(f"{postgresql_conf.name(name)} = {written}  # a trailing comment\n")
            expected[name] = v
    pg_server.probe.write_text("".join(lines))
    try:
        assert _file_settings(pg_server, expected) == expected
    finally:
        pg_server.probe.write_text("")


@pytest.mark.tool
def test_postgresql_conf_injection_attempts(pg_server):
    expected = {f"platformc.inj{i}": v for i, v in enumerate(INJECTIONS)}
    pg_server.probe.write_text("".join(f"{k} = {postgresql_conf.value(v)}\n" for k, v in expected.items()))
    try:
        assert _file_settings(pg_server, expected) == expected  # and no other setting appeared
    finally:
        pg_server.probe.write_text("")


PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40)


@pytest.mark.tool
@settings(max_examples=40, deadline=None)
@given(PRINTABLE)
def test_conninfo_values_reach_libpq_intact(pg_server, name):
    """primary_conninfo's quoting, judged by libpq: psql connects with the generated connection string and
    the server reports the application_name it received (PostgreSQL allows printable ASCII there)."""
    conninfo = postgresql_conf.conninfo([("host", pg_server.work), ("port", pg_server.port), ("dbname", "postgres"),
                                         ("user", "postgres"), ("application_name", name)])
    res = subprocess.run(AS_POSTGRES + [str(PGBIN / "psql"), "-X", "-At", "-d", conninfo, "-c",
                                        "SELECT encode(convert_to(current_setting('application_name'), 'UTF8'), 'hex')"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert bytes.fromhex(res.stdout.strip()).decode() == name


# ------------------------------------------------------------------------ pg_hba.conf

@pytest.mark.tool
@REAL
@given(st.lists(st.tuples(TEXT, TEXT), min_size=1, max_size=4))
def test_pg_hba_names_are_single_tokens(pg_server, pairs):
    original = pg_server.hba.read_text()
    (before,), = pg_server.query("SELECT count(*) FROM pg_hba_file_rules")
    lines, expected = [], []
    for db, user in pairs:
        written = (_refused_or(pg_hba.name, db), _refused_or(pg_hba.name, user))
        if None in written:
            assert any(not v or '"' in v or any(ord(c) < 0x20 or ord(c) == 0x7F for c in v) for v in (db, user))
            continue
        lines.append(f"hostssl {written[0]} {written[1]} 10.99.0.0/16 scram-sha-256 # probe\n")
        expected.append([db, user])
    pg_server.hba.write_text(original + "".join(lines))
    try:
        rows = pg_server.query("SELECT encode(convert_to(array_to_json(database)::text, 'UTF8'), 'hex'), "
                               "encode(convert_to(array_to_json(user_name)::text, 'UTF8'), 'hex'), coalesce(error, '') "
                               f"FROM pg_hba_file_rules WHERE line_number > {original.count(chr(10))} ORDER BY line_number")
        import json
        got = [[json.loads(bytes.fromhex(d).decode())[0], json.loads(bytes.fromhex(u).decode())[0]] for d, u, e in rows]
        assert all(e == "" for _, _, e in rows), rows
        assert got == expected  # one database and one user per line: nothing split, nothing added
        (after,), = pg_server.query("SELECT count(*) FROM pg_hba_file_rules")
        assert int(after) == int(before) + len(expected)
    finally:
        pg_server.hba.write_text(original)


@pytest.mark.tool
def test_a_quoted_keyword_is_only_a_name(reference_tree, tls, pg_template):
    """`"all"` and `"replication"` from the name filter are databases called that, not the keywords: with a
    reject rule for them first, connecting to `postgres` still reaches the next rule."""
    gen = reference_tree / "datastores/us-east-1"
    work = private_dir("dst-hba-")
    cluster = PgCluster(gen / "postgresql.conf", gen / "pg_hba.conf", work, tls,
                        {"shared_buffers": "128MB", "shared_preload_libraries": ""})
    cluster.hba.write_text(f"local {pg_hba.names(['all'])} all reject\n"
                           f"local {pg_hba.names(['replication', 'sameuser'])} {pg_hba.names(['all'])} reject\n"
                           f"local all {pg_hba.names(['+postgres', '@file'])} reject\n"
                           "local all postgres peer\n")
    try:
        cluster.start()
        assert cluster.query("SELECT current_database()") == [["postgres"]]
        reject_all = cluster.work / "pg_hba.conf"
        reject_all.write_text("local all all reject\n")  # the unquoted keyword does match everything
        cluster.query("SELECT pg_reload_conf()")
        import time
        for _ in range(50):
            if cluster.psql("-c", "select 1", check=False).returncode != 0:
                break
            time.sleep(0.1)
        assert cluster.psql("-c", "select 1", check=False).returncode != 0
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


# ------------------------------------------------------------------------ pgbouncer.ini

@pytest.fixture(scope="session")
def pgbouncer_probe(reference_tree, tls):
    """PgBouncer on the generated us-east-1 ini, with a probe file included last (rewritten, then RELOAD)."""
    work = private_dir("dst-pgbp-")
    probe = work / "probe.ini"
    probe.write_text("")
    server, port = start_pgbouncer(reference_tree / "datastores/us-east-1/pgbouncer.ini", work, tls,
                                   ['"probe_admin" "admin-secret"'], extra_pgbouncer={"admin_users": "probe_admin"},
                                   extra_include=probe)

    def admin(command):
        return pgbouncer_admin(work, port, command, "probe_admin", "admin-secret")
    yield probe, admin
    server.stop()
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.tool
@REAL
@given(TEXT, st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_pgbouncer_values_round_trip(pgbouncer_probe, query, host, dbname):
    probe, admin = pgbouncer_probe
    value = _refused_or(pgbouncer_ini.value, query)
    connstr = _refused_or(pgbouncer_ini.connstr, [("host", host), ("port", 5432), ("dbname", dbname)])
    if value is None:
        assert any(c in query for c in "\n\r\0") or query != query.strip(" \t\n\v\f\r")
    if connstr is None:
        assert any(c in v for v in (host, dbname) for c in "\n\r\0")
    text = ""
    if value is not None:
        text += f"server_reset_query = {value}\n"
    if connstr is not None:
        text += f"[databases]\nprobe_db = {connstr}\n"
    probe.write_text(text)
    os.chmod(probe, 0o644)
    admin("RELOAD")
    if value is not None:
        config = {row["key"]: row["value"] for row in admin("SHOW CONFIG")}
        assert config["server_reset_query"] == query
        assert config["pool_mode"] == "transaction"  # nothing else changed
    if connstr is not None:
        dbs = {row["name"]: row for row in admin("SHOW DATABASES")}
        assert (dbs["probe_db"]["host"], dbs["probe_db"]["database"]) == (host, dbname)


@pytest.mark.tool
def test_pgbouncer_injection_attempts(pgbouncer_probe):
    probe, admin = pgbouncer_probe
    for v in INJECTIONS:
        value = _refused_or(pgbouncer_ini.value, v)
        if value is None:
            assert "\n" in v or "\r" in v or v != v.strip()
            continue
        probe.write_text(f"server_reset_query = {value}\n")
        admin("RELOAD")
        config = {row["key"]: row["value"] for row in admin("SHOW CONFIG")}
        assert config["server_reset_query"] == v and config["auth_type"] == "scram-sha-256"


# ------------------------------------------------------------------------ SQL

def _psql_stdin(pg, script: str) -> str:
    """Run a script the way the generated files run: psql reading a file (its lexer, then the server's)."""
    res = subprocess.run(AS_POSTGRES + [str(PGBIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", str(pg.work),
                                        "-p", str(pg.port), "-U", "postgres", "-d", "postgres", "-f", "-"],
                         input=script, capture_output=True, text=True, env={**os.environ, "PGCLIENTENCODING": "UTF8"})
    assert res.returncode == 0, res.stderr
    return res.stdout


@pytest.mark.tool
@REAL
@given(st.lists(TEXT, min_size=1, max_size=5))
def test_sql_literals_and_identifiers_round_trip(pg_server, values):
    script, expected = ["BEGIN;\n"], []
    for i, v in enumerate(values):
        lit = _refused_or(sql.literal, v)
        ident = _refused_or(sql.ident, v)
        if lit is None:
            assert "\0" in v
        else:
            script.append(f"SELECT encode(convert_to({lit}, 'UTF8'), 'hex');\n")
            expected.append(v)
        if ident is None:
            assert not v or "\0" in v or len(v.encode()) > 63
        else:
            script.append(f"CREATE TEMP TABLE probe_{i} ({ident} int);\n"
                          f"SELECT encode(convert_to(attname::text, 'UTF8'), 'hex') FROM pg_attribute "
                          f"WHERE attrelid = 'probe_{i}'::regclass AND attnum = 1;\n")
            expected.append(v)
    script.append("ROLLBACK;\n")
    out = _psql_stdin(pg_server, "".join(script)).splitlines()  # one line per SELECT, empty for ''
    assert [bytes.fromhex(h).decode() for h in out] == expected


@pytest.mark.tool
def test_sql_injection_attempts(pg_server):
    script = "".join(f"SELECT encode(convert_to({sql.literal(v)}, 'UTF8'), 'hex');\n" for v in INJECTIONS
                     + ["'); DROP TABLE x; --", ":'var' :var \\gexec"])
    out = _psql_stdin(pg_server, script).splitlines()
    assert [bytes.fromhex(h).decode() for h in out] == INJECTIONS + ["'); DROP TABLE x; --", ":'var' :var \\gexec"]
