"""The failover drill behind tests/targets/test_patroni_failover.py (run by it, inside `unshare -n`, as postgres).

    python3 patroni_harness.py <generated dir> <region> <work dir>

Starts, on loopback only, three etcd members, the region's Patroni cluster (two PostgreSQL 15 members) and one
member of the standby cluster its DR partner runs, all from the generated files: Patroni's configuration from
the inventories' group_vars (`patroni_config` of the region, `patroni_standby_clusters` of the partner), and the
data tier's postgresql.conf and pg_hba.conf as its custom_conf and hba_file. What is remapped, and only that:
  - addresses: every host name -> 127.0.0.1, each member on ports of its own; the CIDRs of pg_hba -> 127.0.0.1/32;
  - paths: data directories, the TLS files (a throwaway certificate for 127.0.0.1), the socket directory;
  - what cannot run here: WAL-G's archive_command/restore_command (no bucket on loopback) become a copy to and from
    a local archive directory; shared_buffers 128MB; preload libraries that are not installed are dropped.
The leader endpoint (the internal load balancer checking GET /primary) is a small TCP proxy that forwards to the
member whose REST API answers GET /primary with 200, checked every second.

Prints one JSON line with the measurements: failover seconds, rows lost in the region, rows and seconds lost
across regions after the standby cluster is promoted, seconds until a segment written after a restart is archived.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psycopg2
import yaml

PGBIN = "/usr/lib/postgresql/15/bin"
HOST = "127.0.0.1"
# a write that proves a member takes writes (negative keys: never one of the writer's rows)
PROBE = "INSERT INTO drill(n, at) VALUES (-(extract(epoch FROM clock_timestamp()) * 1e6)::bigint, clock_timestamp())"
PASSWORDS = {"postgresql_admin_password": "admin-secret", "postgresql_replication_password": "repl-secret"}


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def render(value, ctx):
    """The group_vars' Jinja placeholders ({{ name }} / {{ a.b.c }}) from ctx."""
    if isinstance(value, dict):
        return {k: render(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [render(v, ctx) for v in value]
    if isinstance(value, str):
        def sub(m):
            cur = ctx
            for part in m.group(1).split("."):
                cur = cur[part]
            return str(cur)
        return re.sub(r"\{\{\s*([\w.]+)\s*\}\}", sub, value)
    return value


def group_vars(gen: Path, region: str) -> dict:
    return yaml.safe_load((gen / "ansible/inventories" / region / "group_vars/postgres.yml").read_text())


def hosts_of(gen: Path, region: str) -> dict:
    data = yaml.safe_load((gen / "ansible/inventories" / region / "hosts.yml").read_text())
    pg = data["all"]["children"]["data_tier"]["children"]["postgres"]["children"]
    out = {}
    for g in ("postgres_primary", "postgres_replicas"):
        out.update((pg.get(g) or {}).get("hosts") or {})
    return out


class Work:
    def __init__(self, root: Path):
        self.root = root
        self.archive = root / "archive"
        self.archive.mkdir(exist_ok=True)
        self.tls = root / "tls"
        self.tls.mkdir(exist_ok=True)
        crt, key = self.tls / "server.crt", self.tls / "server.key"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", key, "-out", crt], check=True, capture_output=True)
        os.chmod(key, 0o600)
        self.crt, self.key = str(crt), str(key)


def data_tier_files(gen: Path, region: str, dest: Path, hba_file: str = "") -> tuple[Path, Path]:
    """The data tier's postgresql.conf (as is) and pg_hba.conf (its CIDRs -> 127.0.0.1/32); `hba_file`: another
    pg_hba.conf, relative to generated/ (a standby cluster's own, as the patroni role installs it)."""
    dest.mkdir(parents=True, exist_ok=True)
    conf = dest / "postgresql.conf"
    conf.write_text((gen / "datastores" / region / "postgresql.conf").read_text())
    hba = (gen / (hba_file or f"datastores/{region}/pg_hba.conf")).read_text()
    hba = re.sub(r"\b(?!0\.0\.0\.0/0)\d+\.\d+\.\d+\.\d+/\d+\b", "127.0.0.1/32", hba)
    (dest / "pg_hba.conf").write_text(hba)
    (dest / "pg_ident.conf").write_text("")
    return conf, dest / "pg_hba.conf"


def installed_preload(conf: Path) -> str:
    m = re.search(r"^shared_preload_libraries\s*=\s*'([^']*)'", conf.read_text(), re.M)
    have = {p.stem for p in Path("/usr/lib/postgresql/15/lib").glob("*.so")}
    return ",".join(x for x in (m.group(1).split(",") if m else []) if x and x in have)


def remap(cfg: dict, name: str, pg_port: int, rest_port: int, etcd_ports: list[int], w: Work, conf_dir: Path,
          data_dir: Path, standby_host_port: tuple[str, int] | None = None) -> dict:
    cfg = json.loads(json.dumps(cfg))
    cfg["name"] = name
    r = cfg["restapi"]
    r.update(listen=f"{HOST}:{rest_port}", connect_address=f"{HOST}:{rest_port}", certfile=w.crt, keyfile=w.key)
    cfg["ctl"]["cacert"] = w.crt
    cfg["etcd3"].update(hosts=[f"{HOST}:{p}" for p in etcd_ports], cacert=w.crt, cert=w.crt, key=w.key)
    pg = cfg["postgresql"]
    socket_dir = data_dir.parent / "sock"
    socket_dir.mkdir(parents=True, exist_ok=True)
    pg.update(listen=f"{HOST}:{pg_port}", connect_address=f"{HOST}:{pg_port}", data_dir=str(data_dir),
              pgpass=str(data_dir.parent / "pgpass"), custom_conf=str(conf_dir / "postgresql.conf"))
    pg["authentication"]["replication"]["sslrootcert"] = w.crt
    # the generated command (`/usr/bin/env PGPORT=<the cluster's port> <callback>`) with this member's port and the
    # repository's script: the callback reaches its own cluster through the port its command sets, as installed
    script = str(Path(__file__).resolve().parents[2] / "templates/ansible/static/roles/patroni/files/patroni-callback.sh")
    # (runs where the harness runs, outside the package: the command's last word is the installed callback's path)
    pg["callbacks"] = {k: " ".join(re.sub(r"PGPORT=\d+", f"PGPORT={pg_port}", v).split()[:-1] + [script])
                       for k, v in pg["callbacks"].items()}
    archive = str(w.archive)
    pg["parameters"].update(
        data_directory=str(data_dir), hba_file=str(conf_dir / "pg_hba.conf"), ident_file=str(conf_dir / "pg_ident.conf"),
        unix_socket_directories=str(socket_dir), external_pid_file="", ssl_cert_file=w.crt, ssl_key_file=w.key,
        ssl_ca_file=w.crt, shared_buffers="128MB", shared_preload_libraries=installed_preload(conf_dir / "postgresql.conf"),
        archive_command=f"cp %p {archive}/%f.part && mv {archive}/%f.part {archive}/%f",
        restore_command=f"cp {archive}/%f %p", fsync="on", max_wal_size="1GB", wal_keep_size="1GB")
    if standby_host_port:
        sc = cfg["bootstrap"]["dcs"]["standby_cluster"]
        sc["host"], sc["port"] = standby_host_port
        sc["restore_command"] = f"cp {archive}/%f %p"
    return cfg


class Proc:
    def __init__(self, name: str, cmd: list, logdir: Path, env=None):
        self.name = name
        self.out = open(logdir / f"{name}.log", "w")
        self.p = subprocess.Popen(cmd, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, **(env or {})})

    def kill9(self):
        try:
            os.killpg(self.p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(timeout=30)
            except Exception:
                self.kill9()


def single_etcd(name: str, root: Path, w: "Work", client_port: int, peer_port: int, logs: Path) -> "Proc":
    """One etcd member on loopback, TLS with client certificates (the throwaway certificate) at both ports."""
    return Proc("etcd", [
        "etcd", "--name", name, "--data-dir", str(root / "etcd"), "--listen-client-urls", f"https://{HOST}:{client_port}",
        "--advertise-client-urls", f"https://{HOST}:{client_port}", "--listen-peer-urls", f"https://{HOST}:{peer_port}",
        "--initial-advertise-peer-urls", f"https://{HOST}:{peer_port}", "--initial-cluster",
        f"{name}=https://{HOST}:{peer_port}", "--initial-cluster-state", "new", "--cert-file", w.crt, "--key-file", w.key,
        "--trusted-ca-file", w.crt, "--client-cert-auth", "--peer-cert-file", w.crt, "--peer-key-file", w.key,
        "--peer-trusted-ca-file", w.crt, "--peer-client-cert-auth"], logs)


def member_config(gen: Path, region: str, host: str, root: Path, w: "Work", pg_port: int, rest_port: int,
                  etcd_port: int) -> tuple[dict, Path]:
    """`host`'s Patroni configuration as the region's group_vars give it, rendered and remapped onto loopback (one
    etcd member), with the data tier's files under root/conf; and the postgresql.conf it reads."""
    conf_dir = root / "conf"
    conf, _hba = data_tier_files(gen, region, conf_dir)
    cfg = render(group_vars(gen, region)["patroni_config"], {"inventory_hostname": host, "ansible_host": host,
                                                             **PASSWORDS})
    return remap(cfg, host, pg_port, rest_port, [etcd_port], w, conf_dir, root / "member" / "data"), conf


def start_member(cfg: dict, root: Path, logs: Path, pg_port: int, rest_port: int, ctx: ssl.SSLContext,
                 procs: list) -> tuple["Proc", Path, Path]:
    """Write the member's configuration, start its Patroni (added to `procs`, which the caller stops) and wait until
    it leads. Returns the process, the configuration file and the socket directory."""
    path = root / "member.yml"
    path.write_text(yaml.safe_dump(cfg))
    sock = root / "member" / "sock"
    member = Proc("member", ["patroni", str(path)], logs, env={"PGHOST": str(sock), "PGPORT": str(pg_port)})
    procs.append(member)
    wait(lambda: rest(rest_port, "/primary", ctx) == 200, 180, "the member leading")
    return member, path, sock


def rest(port: int, path: str, ctx: ssl.SSLContext) -> int:
    try:
        with urllib.request.urlopen(f"https://{HOST}:{port}{path}", timeout=1, context=ctx) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return 0


class Endpoint(threading.Thread):
    """An internal load balancer: forwards to the member whose REST API answers `check` with 200 (every second)."""

    def __init__(self, port: int, members: list[tuple[int, int]], ctx, check: str):
        super().__init__(daemon=True)
        self.port, self.members, self.ctx, self.target, self.path = port, members, ctx, None, check
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((HOST, port))
        self.sock.listen(16)
        threading.Thread(target=self.check, daemon=True).start()

    def check(self):
        while True:
            healthy = [pg for pg, rp in self.members if rest(rp, self.path, self.ctx) == 200]
            self.target = healthy[0] if healthy else None
            time.sleep(1)

    def run(self):
        while True:
            c, _ = self.sock.accept()
            if self.target is None:
                c.close()
                continue
            try:
                s = socket.create_connection((HOST, self.target), timeout=2)
            except OSError:
                c.close()
                continue
            for a, b in ((c, s), (s, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        finally:
            for x in (a, b):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def kill_postmaster(data: Path):
    """kill -9 a member's PostgreSQL (Patroni runs it in a session of its own): the host is gone."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        # only that postmaster: a stale file's PID may belong to another process by now
        if str(data).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
        pass


def wait(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    import faulthandler
    faulthandler.dump_traceback(sys.stderr, all_threads=True)
    raise SystemExit(f"timeout: {what}")


def connect(sock_dir: Path, port: int):
    c = psycopg2.connect(host=str(sock_dir), port=port, user="postgres", dbname="postgres", connect_timeout=2)
    c.autocommit = True
    return c


class Writer(threading.Thread):
    """Inserts rows continuously into whichever member leads; a row is committed when its INSERT returned."""

    def __init__(self, members):  # [(sock_dir, pg_port, rest_port)]
        super().__init__(daemon=True)
        self.members, self.committed, self.stop_flag, self.ctx, self.errors = members, [], False, None, []

    def run(self):
        conn, n = None, 0
        while not self.stop_flag:
            try:
                if conn is None:
                    for sock_dir, port, rp in self.members:
                        if rest(rp, "/primary", self.ctx) == 200:
                            conn = connect(sock_dir, port)
                            break
                    else:
                        time.sleep(0.2)
                        continue
                n += 1
                with conn.cursor() as cur:
                    cur.execute("INSERT INTO drill(n, at) VALUES (%s, clock_timestamp())", (n,))
                self.committed.append((n, time.time()))
                time.sleep(0.01)
            except Exception as exc:
                self.errors.append(f"{time.time():.1f} {type(exc).__name__}: {str(exc).strip()[:120]}")
                try:
                    conn and conn.close()
                except Exception:
                    pass
                conn = None
                time.sleep(0.2)


def main():
    gen, region, root = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    os.environ["HOME"] = str(root)  # libpq's ~/.postgresql: the postgres user's home on a host
    w = Work(root)
    ctx = ssl.create_default_context(cafile=w.crt)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    gv = group_vars(gen, region)
    partner = next(p for p in os.listdir(gen / "ansible/inventories")
                   if any(s["region"] == region for s in (group_vars(gen, p).get("patroni_standby_clusters") or [])))
    pgv = group_vars(gen, partner)
    standby = next(s for s in pgv["patroni_standby_clusters"] if s["region"] == region)
    procs: list[Proc] = []
    result = {"region": region, "partner": partner, "scope": gv["patroni_config"]["scope"],
              "synchronous_mode": gv["patroni_config"]["bootstrap"]["dcs"]["synchronous_mode"],
              "ttl": gv["patroni_config"]["bootstrap"]["dcs"]["ttl"],
              "loop_wait": gv["patroni_config"]["bootstrap"]["dcs"]["loop_wait"]}
    try:
        # etcd: three members, from the region's etcd member list (names) on loopback ports
        etcd_names = gv["etcd_members"]
        client = [12379 + 10 * i for i in range(len(etcd_names))]
        peer = [12380 + 10 * i for i in range(len(etcd_names))]
        cluster = ",".join(f"{n}=https://{HOST}:{p}" for n, p in zip(etcd_names, peer))
        for i, n in enumerate(etcd_names):
            d = root / f"etcd-{i}"
            procs.append(Proc(f"etcd-{i}", [
                "etcd", "--name", n, "--data-dir", str(d), "--listen-client-urls", f"https://{HOST}:{client[i]}",
                "--advertise-client-urls", f"https://{HOST}:{client[i]}", "--listen-peer-urls", f"https://{HOST}:{peer[i]}",
                "--initial-advertise-peer-urls", f"https://{HOST}:{peer[i]}", "--initial-cluster", cluster,
                "--initial-cluster-token", gv["etcd_scope"], "--initial-cluster-state", "new",
                "--cert-file", w.crt, "--key-file", w.key, "--trusted-ca-file", w.crt, "--client-cert-auth",
                "--peer-cert-file", w.crt, "--peer-key-file", w.key, "--peer-trusted-ca-file", w.crt,
                "--peer-client-cert-auth"], logs))
        # the region's Patroni cluster: its first two PostgreSQL hosts
        names = list(hosts_of(gen, region))[:2]
        members = []
        t_boot = time.monotonic()
        for i, n in enumerate(names):
            conf_dir = root / f"{n}-conf"
            data_tier_files(gen, region, conf_dir)
            cfg = render(gv["patroni_config"], {"inventory_hostname": n, "ansible_host": n, **PASSWORDS})
            cfg = remap(cfg, n, 15432 + i, 18008 + i, client, w, conf_dir, root / n / "data")
            path = root / f"{n}.yml"
            path.write_text(yaml.safe_dump(cfg))
            sock_dir = root / n / "sock"
            # no PGPORT: the callbacks must name their cluster's port themselves (Patroni's environment has none)
            procs.append(Proc(n, ["patroni", str(path)], logs, env={"PGHOST": str(sock_dir)}))
            members.append((n, sock_dir, 15432 + i, 18008 + i, path))
            if i == 0:  # the first member bootstraps; the second clones from it
                wait(lambda: rest(18008, "/primary", ctx) == 200, 120, "the first leader")
        wait(lambda: rest(members[1][3], "/replica", ctx) == 200, 180, "the replica streaming")
        if result["synchronous_mode"]:
            wait(lambda: rest(members[1][3], "/sync", ctx) == 200, 60, "a synchronous standby")
        result["boot_seconds"] = round(time.monotonic() - t_boot, 1)
        c = connect(members[0][1], members[0][2])
        c.cursor().execute("CREATE TABLE drill (n bigint PRIMARY KEY, at timestamptz NOT NULL)")
        c.close()
        # the standby cluster in the partner (one member), fed from the sync endpoint (GET /sync) and the archive
        sync_lb = Endpoint(15401, [(m[2], m[3]) for m in members], ctx, "/sync")
        sync_lb.start()
        sb_name = standby["hosts"][0]
        sb_conf = root / "standby-conf"
        # the source region's postgresql.conf and the standby cluster's own pg_hba.conf (the source's lines and the
        # partner's PgBouncer), as the patroni role installs them
        data_tier_files(gen, region, sb_conf, f"datastores/{partner}/{standby['hba_file']}")
        sb_cfg = render(standby["config"], {"inventory_hostname": sb_name, "ansible_host": sb_name, **PASSWORDS,
                                            "patroni_standby_passwords": {region.replace("-", "_"): {
                                                "admin": PASSWORDS["postgresql_admin_password"],
                                                "replication": PASSWORDS["postgresql_replication_password"]}}})
        sb_cfg = remap(sb_cfg, sb_name, 15442, 18018, client, w, sb_conf, root / "standby" / "data",
                       standby_host_port=(HOST, 15401))
        sb_path = root / "standby.yml"
        sb_path.write_text(yaml.safe_dump(sb_cfg))
        sb_sock = root / "standby" / "sock"
        procs.append(Proc("standby", ["patroni", str(sb_path)], logs, env={"PGHOST": str(sb_sock)}))
        wait(lambda: rest(18018, "/standby-leader", ctx) == 200, 180, "the standby leader")
        result["standby_scope"] = sb_cfg["scope"]

        # ---- 1. kill -9 the leader (Patroni and PostgreSQL: the host is gone) while rows are written
        writer = Writer([(m[1], m[2], m[3]) for m in members])
        writer.ctx = ctx
        writer.start()
        time.sleep(5)
        leader = next(m for m in members if rest(m[3], "/primary", ctx) == 200)
        other = next(m for m in members if m is not leader)
        leader_proc = next(p for p in procs if p.name == leader[0])
        t_kill = time.monotonic()
        before = len(writer.committed)
        leader_proc.kill9()
        kill_postmaster(root / leader[0] / "data")
        wait(lambda: rest(other[3], "/primary", ctx) == 200, 120, "a new leader")

        def writable():
            try:
                cc = connect(other[1], other[2])
                cc.cursor().execute(PROBE)
                cc.close()
                return True
            except Exception:
                return False
        wait(writable, 60, "the new leader accepting writes")
        result["failover_seconds"] = round(time.monotonic() - t_kill, 1)
        wait(lambda: len(writer.committed) > before + 50, 60, "writes resuming")
        time.sleep(3)
        committed = {n for n, _ in writer.committed}
        cc = connect(other[1], other[2])
        cur = cc.cursor()
        cur.execute("SELECT n FROM drill WHERE n > 0")
        present = {r[0] for r in cur.fetchall()}
        result["rows_committed"] = len(committed)
        result["rows_lost_in_region"] = len(committed - present)
        log(result)
        # the old leader's host comes back: Patroni rejoins it as a replica (a diverged copy is made again)
        t_rejoin = time.monotonic()
        procs.append(Proc(leader[0] + "-rejoined", ["patroni", str(leader[4])], logs,
                          env={"PGHOST": str(leader[1]), "PGPORT": str(leader[2])}))
        if result["synchronous_mode"]:
            wait(lambda: rest(leader[3], "/sync", ctx) == 200, 240, "the old leader back as the synchronous replica")
        result["rejoin_seconds"] = round(time.monotonic() - t_rejoin, 1)

        # ---- 2. the archive gap after a restart: a write right after the leader restarts reaches the archive
        t_restart = time.monotonic()
        subprocess.run(["patronictl", "-c", str(other[4]), "restart", result["scope"], other[0], "--force"],
                       capture_output=True, timeout=120)
        wait(writable, 120, "the leader after its restart")
        cur = (cc := connect(other[1], other[2])).cursor()
        cur.execute("SELECT pg_walfile_name(pg_current_wal_lsn())")
        segment = cur.fetchone()[0]
        t_write = time.monotonic()
        wait(lambda: (w.archive / segment).exists(), 180, f"segment {segment} archived")
        result["restart_write_archived_seconds"] = round(time.monotonic() - t_write, 1)
        result["restart_seconds"] = round(t_write - t_restart, 1)
        log(result)

        # ---- 3. the region is lost: kill -9 every member while rows are written; promote the standby cluster
        n_before = len(writer.committed)
        try:
            wait(lambda: len(writer.committed) > n_before + 50, 30, "writes after the restart")
        except SystemExit:
            cur = connect(other[1], other[2]).cursor()
            cur.execute("SELECT current_setting('synchronous_standby_names'), (SELECT json_agg(a) FROM "
                        "(SELECT pid, state, wait_event_type, wait_event, query FROM pg_stat_activity "
                        "WHERE backend_type = 'client backend') a), (SELECT json_agg(r) FROM (SELECT application_name, "
                        "state, sync_state FROM pg_stat_replication) r)")
            log(cur.fetchall())
            raise
        lb_stop = time.time()
        for m in members:
            for p in procs:
                if p.name.startswith(m[0]):
                    p.kill9()
            kill_postmaster(root / m[0] / "data")
        writer.stop_flag = True
        writer.join(10)
        last_commit = max(t for _, t in writer.committed)
        committed = {n for n, _ in writer.committed}
        t_promote = time.monotonic()
        # the runbook: remove standby_cluster from the standby cluster's dynamic configuration
        res = subprocess.run(["patronictl", "-c", str(sb_path), "edit-config", "--force", "-s", "standby_cluster=null"],
                             capture_output=True, text=True)
        result["promote_command"] = f"patronictl -c /etc/patroni/{standby['instance']}.yml edit-config --force -s standby_cluster=null"
        assert res.returncode == 0, res.stdout + res.stderr
        wait(lambda: rest(18018, "/primary", ctx) == 200, 120, "the promoted standby cluster")

        def sb_writable():
            try:
                cc = connect(sb_sock, 15442)
                cc.cursor().execute(PROBE)
                cc.close()
                return True
            except Exception:
                return False
        wait(sb_writable, 60, "the promoted standby accepting writes")
        result["promotion_seconds"] = round(time.monotonic() - t_promote, 1)
        cur = connect(sb_sock, 15442).cursor()
        cur.execute("SELECT n, extract(epoch FROM at) FROM drill WHERE n > 0")
        rows = cur.fetchall()
        present = {r[0] for r in rows}
        last_present = max((float(r[1]) for r in rows), default=0.0)
        result["rows_committed_total"] = len(committed)
        result["rows_lost_across_regions"] = len(committed - present)
        result["seconds_lost_across_regions"] = round(max(0.0, last_commit - last_present), 2)
        result["region_lost_at"] = lb_stop
        result["writer_errors"] = len(writer.errors)
        log("\n".join(writer.errors[-20:]))
    finally:
        for p in reversed(procs):
            p.stop()
        for d in root.glob("*/data"):
            kill_postmaster(d)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
