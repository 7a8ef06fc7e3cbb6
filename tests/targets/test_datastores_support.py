"""Helpers for the data-tier tests: real redis-server, PostgreSQL 15 and PgBouncer, started safely.

No test here contains assertions; test_datastores.py and test_datastores_escaping.py import the
fixtures. Every server runs inside its own network namespace with only a loopback
(`unshare -n`, then `ip link set lo up`), listens on a unix socket in a private temp dir, and is
stopped by its PID (it is the leader of its own session) when the fixture ends. The generated
configs name other hosts (primary_conninfo, [databases] hosts, archive_command's bucket); inside
the namespace nothing can leave the machine. PostgreSQL and PgBouncer refuse to run as root: they
run as the postgres user via `setpriv` (not runuser, which does not pass SIGINT on).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from compiler import writer
from compiler.emit import emit
from tests.conftest import IN_CI, REPO, require_tool

PGBIN = Path("/usr/lib/postgresql/15/bin")
PG_LIB = Path("/usr/lib/postgresql/15/lib")
PG_EXT = Path("/usr/share/postgresql/15/extension")
# One region per cloud, started against the real servers; every region gets the cheap checks.
SAMPLE_REGIONS = ["us-east-1", "ap-southeast-1", "eu-west-2"]


def _need(condition: bool, message: str):
    if not condition:
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


def require_isolation():
    """Root, unshare, ip and setpriv: what starting the servers safely needs."""
    for tool in ("unshare", "ip", "setpriv"):
        require_tool(tool)
    _need(os.geteuid() == 0, "the server tests need root (network namespaces, setpriv to the postgres user)")
    ok = subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0
    _need(ok, "unshare -n is not permitted here")


def require_patroni_cluster():
    """What a real etcd + Patroni + PostgreSQL 15 cluster on loopback needs, with Debian's system Python for Patroni's
    harness (the patroni package brings psycopg2 and PyYAML to it): isolation, the tools, and that Python."""
    require_isolation()
    for tool in ("patroni", "patronictl", "etcd", "openssl"):
        require_tool(tool)
    require_tool("postgres", "/usr/lib/postgresql/15/bin/postgres")
    ok = subprocess.run(["/usr/bin/python3", "-c", "import psycopg2, yaml"], capture_output=True).returncode == 0
    _need(ok, "/usr/bin/python3 lacks psycopg2 or yaml (apt-get install patroni brings both)")
    return "/usr/bin/python3"


def postgres_hosts(gen: Path, region: str) -> list[str]:
    """The PostgreSQL hosts of a region's generated inventory (the postgres group's children), in inventory order."""
    import yaml
    data = yaml.safe_load((gen / f"ansible/inventories/{region}/hosts.yml").read_text())
    pg = data["all"]["children"]["data_tier"]["children"]["postgres"]["children"]
    return [h for g in pg.values() for h in ((g or {}).get("hosts") or {})]


ISOLATE = ["unshare", "-n", "--", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh"]
AS_POSTGRES = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]


def private_dir(prefix: str) -> Path:
    """A short temp dir the postgres user owns (unix socket paths must stay under 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(d, 0o755)
    shutil.chown(d, "postgres", "postgres")
    return d


def chown_tree(path: Path):
    shutil.chown(path, "postgres", "postgres")
    for p in path.rglob("*"):
        shutil.chown(p, "postgres", "postgres")


class Server:
    """A process started in its own session and network namespace; stop() signals it by PID."""

    def __init__(self, cmd: list, stdout: Path, log: Path | None = None, stop_signal=signal.SIGTERM):
        self.stdout_path, self.log_path, self.stop_signal = stdout, log, stop_signal
        self._out = open(stdout, "w")
        self.proc = subprocess.Popen(ISOLATE + [str(c) for c in cmd], stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def output(self) -> str:
        return _read(self.stdout_path) + (_read(self.log_path) if self.log_path else "")

    def wait_until(self, ready, timeout=30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.output()[-3000:]}")
            time.sleep(0.05)
        raise AssertionError(f"server not ready after {timeout}s:\n{self.output()[-3000:]}")

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, self.stop_signal)
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._out.close()


# ------------------------------------------------------------------ generated tree

def generate(plan, tmp: Path) -> Path:
    """Write the datastores target for `plan` under tmp; return the generated root."""
    outputs, _ = emit(plan, ["datastores"], with_docs=False)
    writer.apply(writer.plan_write(tmp, outputs["generated"], None))
    return tmp


def compile_reference():
    from compiler.pipeline import compile_file
    return compile_file(str(REPO / "platform.yaml")).plan


# ------------------------------------------------------------------------- Redis

class Resp:
    """A minimal RESP2 client over a unix socket: enough for CONFIG GET, ACL and round trips."""

    def __init__(self, path: Path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(str(path))
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ValueError(f"unexpected RESP reply {line!r}")

    def call(self, *args):
        parts = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = a if isinstance(a, bytes) else str(a).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(b), b))
        self.sock.sendall(b"".join(parts))
        return self.reply()

    def inline(self, line: str):
        """An inline command: the server splits it with sdssplitargs, as it splits redis.conf lines."""
        self.sock.sendall(line.encode("utf-8") + b"\r\n")
        return self.reply()

    def config_get(self, name: str) -> str:
        reply = self.call("CONFIG", "GET", name)
        assert isinstance(reply, list) and len(reply) == 2, reply
        return reply[1].decode()


class RedisError(str):
    """An error reply (returned, not raised, so tests can assert on it)."""


def start_redis(conf: Path, work: Path, *extra: str) -> tuple[Server, Path]:
    """redis-server with `conf`; only ports, files and supervision are overridden (command-line options
    are applied after the file, so the file is parsed in full first). Returns the server and its socket."""
    redis = require_tool("redis-server")
    sock = work / "redis.sock"
    cmd = [redis, conf, "--port", "0", "--dir", work, "--daemonize", "no", "--supervised", "no",
           "--logfile", work / "redis.log", "--pidfile", work / "redis.pid", "--unixsocket", sock,
           "--unixsocketperm", "700", "--cluster-config-file", work / "nodes.conf", "--cluster-port", "17000", *extra]
    server = Server(cmd, work / "redis.stdout", work / "redis.log")
    server.wait_until(lambda: sock.exists() and "ready to accept connections" in _read(work / "redis.log"))
    return server, sock


def _read(p: Path) -> str:
    """A server's log; invalid UTF-8 is replaced (pg_partman 4.7's worker logs garbage bytes as its name)."""
    try:
        return p.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# -------------------------------------------------------------------- PostgreSQL

def installed_libraries() -> set[str]:
    return {p.stem for p in PG_LIB.glob("*.so")}


def available_extensions() -> set[str]:
    return {p.stem for p in PG_EXT.glob("*.control")}


def make_tls(d: Path) -> dict[str, Path]:
    """A throwaway self-signed certificate (CA = itself) so ssl = on and hostssl lines really load."""
    openssl = require_tool("openssl")
    crt, key = d / "server.crt", d / "server.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    os.chmod(key, 0o600)
    shutil.chown(key, "postgres", "postgres")
    shutil.chown(crt, "postgres", "postgres")
    return {"crt": crt, "key": key, "ca": crt}


def make_ip_tls(d: Path) -> dict[str, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (IP SAN): PgBouncer's verify-full over loopback TCP."""
    openssl = require_tool("openssl")
    crt, key = d / "ip-server.crt", d / "ip-server.key"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", crt], check=True,
                   capture_output=True)
    os.chmod(key, 0o600)
    shutil.chown(key, "postgres", "postgres")
    shutil.chown(crt, "postgres", "postgres")
    return {"crt": crt, "key": key, "ca": crt}


class PgCluster:
    """A throwaway PostgreSQL 15 data directory (initdb once, copied per server)."""

    _template: Path | None = None

    def __init__(self, generated_conf: Path, generated_hba: Path, work: Path, tls: dict, overrides: dict | None = None):
        if not (PGBIN / "postgres").exists():
            _need(False, f"no PostgreSQL 15 server at {PGBIN}")
        self.work = work
        self.data = work / "data"
        shutil.copytree(self.template(), self.data, symlinks=True)
        os.chmod(self.data, 0o700)
        self.conf = work / "postgresql.conf"  # a copy: the server's config_file; the generated file is untouched
        shutil.copy(generated_conf, self.conf)
        self.hba = work / "pg_hba.conf"
        shutil.copy(generated_hba, self.hba)
        self.probe = work / "probe.conf"
        self.probe.write_text("")
        # Test-only: an include after the generated lines for the escaping probe (empty otherwise).
        with open(self.conf, "a") as fh:
            fh.write(f"\ninclude_if_exists '{self.probe}'\n")
        chown_tree(work)
        self.port = 5432  # inside its own network namespace nothing else uses it
        self.overrides = {
            "config_file": self.conf, "data_directory": self.data, "hba_file": self.hba,
            "ident_file": self.data / "pg_ident.conf", "external_pid_file": "",
            "listen_addresses": "", "port": self.port, "unix_socket_directories": work,
            "ssl_cert_file": tls["crt"], "ssl_key_file": tls["key"], "ssl_ca_file": tls["ca"],
            "fsync": "off",  # a throwaway cluster; the generated file does not set fsync
            **(overrides or {}),
        }
        self.server: Server | None = None

    @classmethod
    def template(cls) -> Path:
        if cls._template is None or not cls._template.exists():
            d = private_dir("dst-initdb-")
            res = subprocess.run(AS_POSTGRES + [str(PGBIN / "initdb"), "-D", str(d / "data"), "-A", "trust", "-U",
                                 "postgres", "--no-sync", "-E", "UTF8", "--locale", "C.UTF-8"],
                                 capture_output=True, text=True)
            assert res.returncode == 0, res.stdout + res.stderr
            cls._template = d / "data"
        return cls._template

    def command(self, *extra: str) -> list:
        cmd = AS_POSTGRES + [PGBIN / "postgres"]
        for k, v in self.overrides.items():
            cmd += ["-c", f"{k}={v}"]
        return cmd + list(extra)

    def check_param(self, name: str) -> str:
        """`postgres -C name` on the generated file alone (no overrides but the file locations): the value
        the file sets, parsed and validated by the server without starting it."""
        cmd = AS_POSTGRES + [str(PGBIN / "postgres"), "-c", f"config_file={self.conf}", "-c", f"data_directory={self.data}",
                             "-c", f"hba_file={self.hba}", "-c", f"ident_file={self.data / 'pg_ident.conf'}", "-C", name]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr
        return res.stdout.strip()

    def start(self):
        self.server = Server(self.command(), self.work / "server.stdout", stop_signal=signal.SIGINT)  # SIGINT: fast shutdown
        self.server.wait_until(lambda: self.isready(), timeout=60)
        return self

    def isready(self) -> bool:
        res = subprocess.run([str(PGBIN / "pg_isready"), "-q", "-h", str(self.work), "-p", str(self.port)])
        return res.returncode == 0

    def log(self) -> str:
        return _read(self.work / "server.stdout")

    def psql(self, *args: str, db: str = "postgres", check: bool = True, cwd: Path | None = None,
             env: dict | None = None, user: str = "postgres") -> subprocess.CompletedProcess:
        """psql as the OS user postgres over the unix socket (the generated pg_hba.conf's `local ... peer`)."""
        cmd = AS_POSTGRES + [str(PGBIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.work),
                             "-p", str(self.port), "-U", user, "-d", db, *args]
        res = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env={**os.environ, **(env or {})})
        if check:
            assert res.returncode == 0, res.stdout + res.stderr
        return res

    def query(self, sql: str, db: str = "postgres") -> list[list[str]]:
        """Rows of a query, unaligned with an ASCII unit separator (values here hold no \\x1f)."""
        out = self.psql("-At", "-F", "\x1f", "-c", sql, db=db).stdout
        return [line.split("\x1f") for line in out.splitlines()]

    def stop(self):
        if self.server:
            self.server.stop()
            self.server = None


def parse_conf(text: str, sep: str = "=") -> dict[str, str]:
    """`name = value` lines of postgresql.conf / pgbouncer.ini (comments and sections skipped), raw values."""
    out = {}
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;[":
            continue
        k, _, v = s.partition(sep)
        out[k.strip()] = v.strip()
    return out


_UNITS = {"B": 1, "kB": 1024, "MB": 1024 ** 2, "GB": 1024 ** 3, "TB": 1024 ** 4,
          "us": 0.001, "ms": 1, "s": 1000, "min": 60_000, "h": 3_600_000, "d": 86_400_000}


def pg_quantity(text: str) -> float | None:
    """`16MB` -> bytes, `60s` -> ms; None when the text is not a number with a unit."""
    m = re.fullmatch(r"(-?[0-9.]+)\s*(B|kB|MB|GB|TB|us|ms|s|min|h|d)?", text.strip())
    if not m:
        return None
    return float(m.group(1)) * _UNITS[m.group(2)] if m.group(2) else float(m.group(1))


def pg_settings_value(setting: str, unit: str | None) -> float | None:
    """pg_settings' (setting, unit) as bytes or ms (`8kB` units are multiples of 8 kB)."""
    try:
        n = float(setting)
    except ValueError:
        return None
    if not unit:
        return n
    m = re.fullmatch(r"([0-9]*)(B|kB|MB|GB|TB|us|ms|s|min|h|d)", unit)
    return n * (int(m.group(1)) if m.group(1) else 1) * _UNITS[m.group(2)]


def unquote_pg(v: str) -> str:
    """The string a generated postgresql.conf value stands for (only the quoting this project writes)."""
    if len(v) >= 2 and v[0] == v[-1] == "'":
        return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m.group(1), m.group(1)),
                      v[1:-1].replace("''", "'"))
    return v


# ----------------------------------------------------------------------- PgBouncer

def start_pgbouncer(generated_ini: Path, work: Path, tls: dict, auth_file_lines: list[str],
                    extra_pgbouncer: dict | None = None, extra_databases: dict | None = None,
                    extra_include: Path | None = None) -> tuple[Server, int]:
    """PgBouncer with `%include generated.ini` then overrides that only relocate files and sockets
    (later values win). Returns the server and its port (the unix socket is in `work`).

    `[databases]` entries added here replace generated ones of the same name (a later definition wins)."""
    cmd, port = pgbouncer_command(generated_ini, work, tls, auth_file_lines, extra_pgbouncer, extra_databases,
                                  extra_include)
    server = Server(cmd, work / "pgbouncer.stdout", work / "pgbouncer.log", stop_signal=signal.SIGINT)
    server.wait_until(lambda: "process up" in _read(work / "pgbouncer.log"))
    return server, port


def pgbouncer_command(generated_ini: Path, work: Path, tls: dict, auth_file_lines: list[str],
                      extra_pgbouncer: dict | None = None, extra_databases: dict | None = None,
                      extra_include: Path | None = None) -> tuple[list, int]:
    """start_pgbouncer's files, written; the command that runs PgBouncer on them and its port."""
    pgbouncer = require_tool("pgbouncer")
    shutil.copy(generated_ini, work / "generated.ini")
    (work / "userlist.txt").write_text("".join(line + "\n" for line in auth_file_lines))
    port = 6432  # inside its own network namespace
    overrides = {"listen_addr": "", "listen_port": port, "unix_socket_dir": work, "logfile": work / "pgbouncer.log",
                 "pidfile": work / "pgbouncer.pid", "auth_file": work / "userlist.txt",
                 "client_tls_key_file": tls["key"], "client_tls_cert_file": tls["crt"],
                 "server_tls_ca_file": tls["ca"], **(extra_pgbouncer or {})}
    if "server_tls_cert_file" in generated_ini.read_text():  # the client certificate PostgreSQL's pg_hba requires
        overrides = {"server_tls_cert_file": tls["crt"], "server_tls_key_file": tls["key"], **overrides}
    # No `[pgbouncer]` header after the include: opening a section makes PgBouncer re-apply every default
    # of that section (libusual cfparser's fill_defaults), which would silently undo the generated
    # settings. The generated file ends in [pgbouncer], so these lines continue that section.
    assert generated_ini.read_text().rstrip().rsplit("\n[", 1)[-1].startswith("pgbouncer]")
    text = f"%include {work / 'generated.ini'}\n" + "".join(f"{k} = {v}\n" for k, v in overrides.items())
    if extra_databases:
        text += "[databases]\n" + "".join(f"{k} = {v}\n" for k, v in extra_databases.items())
    if extra_include:
        text += f"%include {extra_include}\n"
    (work / "check.ini").write_text(text)
    chown_tree(work)
    os.chmod(work / "userlist.txt", 0o600)
    return AS_POSTGRES + [pgbouncer, work / "check.ini"], port


def pgbouncer_admin(work: Path, port: int, command: str, user: str, password: str) -> list[dict]:
    """A command on PgBouncer's admin console; rows as dicts (CSV output, parsed)."""
    import csv
    import io
    res = subprocess.run(AS_POSTGRES + [str(PGBIN / "psql"), "-X", "--csv", "-h", str(work), "-p", str(port), "-U", user,
                                        "-d", "pgbouncer", "-c", command],
                         capture_output=True, text=True, env={**os.environ, "PGPASSWORD": password})
    assert res.returncode == 0, res.stdout + res.stderr
    return list(csv.DictReader(io.StringIO(res.stdout)))


# ------------------------------------------------------------------------ fixtures
# Imported by the test modules; session-scoped so one PostgreSQL serves every test that needs one.

# Extensions no Debian 12 package provides: removed for the tests only. pg_partman is packaged
# (postgresql-15-partman): missing, it fails the run under CI=true and is removed locally.
UNPACKAGED_EXTENSIONS = {"vector", "timescaledb"}
UNPACKAGED_LIBRARIES = {"timescaledb"}


def removable(missing: set[str], unpackaged: set[str]) -> set[str]:
    packaged = missing - unpackaged
    if packaged and IN_CI:
        pytest.fail(f"{sorted(packaged)} not installed: apt-get install postgresql-15-partman (scripts/install-tools.sh)")
    return missing


def preload_overrides(generated_conf: Path) -> tuple[dict, list[str]]:
    """Test-only overrides of a generated postgresql.conf, and the preload libraries removed.

    shared_buffers: production sizes (32GB) do not fit a CI machine; the generated value is still
    checked with `postgres -C`. shared_preload_libraries: libraries not installed on this machine
    (TimescaleDB has no Debian 12 package) are removed for the test only; the full generated list is
    checked with `postgres -C` too.
    """
    wanted = unquote_pg(parse_conf(generated_conf.read_text())["shared_preload_libraries"]).split(",")
    have = installed_libraries()
    removed = removable({lib for lib in wanted if lib not in have}, UNPACKAGED_LIBRARIES)
    kept = [lib for lib in wanted if lib not in removed]
    return {"shared_buffers": "128MB", "shared_preload_libraries": ",".join(kept)}, sorted(removed)


@pytest.fixture(scope="session")
def isolation():
    require_isolation()


@pytest.fixture(scope="session")
def tls(isolation):
    d = private_dir("dst-tls-")
    yield make_tls(d)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_template(isolation):
    if not (PGBIN / "postgres").exists():
        _need(False, f"no PostgreSQL 15 server at {PGBIN}")
    template = PgCluster.template()
    yield template
    shutil.rmtree(template.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def reference_tree(reference, tmp_path_factory) -> Path:
    return generate(reference, tmp_path_factory.mktemp("datastores-reference"))


@pytest.fixture(scope="session")
def pg_server(reference_tree, tls, pg_template):
    """us-east-1's generated postgresql.conf and pg_hba.conf, running (shared by the SQL, PgBouncer and escaping tests)."""
    gen = reference_tree / "datastores/us-east-1"
    work = private_dir("dst-pg-")
    overrides, _ = preload_overrides(gen / "postgresql.conf")
    cluster = PgCluster(gen / "postgresql.conf", gen / "pg_hba.conf", work, tls, overrides)
    try:
        yield cluster.start()
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


def strip_unavailable_extensions(sql_dir: Path) -> list[str]:
    """Test-only: drop CREATE EXTENSION lines for extensions not installed here (pgvector and TimescaleDB
    have no Debian 12 package). Returns the names removed."""
    path = sql_dir / "extensions.sql"
    lines = path.read_text().splitlines(keepends=True)
    named = [m.group(1) for line in lines if (m := re.match(r'CREATE EXTENSION IF NOT EXISTS "([^"]+)"', line))]
    removed = removable(set(named) - available_extensions(), UNPACKAGED_EXTENSIONS)
    kept = [line for line in lines
            if not (m := re.match(r'CREATE EXTENSION IF NOT EXISTS "([^"]+)"', line)) or m.group(1) not in removed]
    path.write_text("".join(kept))
    return sorted(removed)
