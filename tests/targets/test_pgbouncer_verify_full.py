"""A pod's login through PgBouncer with PGSSLMODE=verify-full, with a real PgBouncer and PostgreSQL 15 (issue 11).

Everything the pod and PgBouncer are given comes from the generated tree of the reference platform: the client's
environment is booking's ConfigMap (PGHOST, PGPORT, PGUSER, PGSSLMODE, PGSSLROOTCERT) with the CA file at the
place its Deployment mounts it; PgBouncer runs the generated pgbouncer.ini; its certificate is issued the way the
tls role issues it (a P-256 CA, a request with subjectAltName from tls_names, signed with -copy_extensions copy),
with the names the inventory gives a PgBouncer host (pgbouncer_tls_names). Inside one network namespace
(`unshare -n`) three PgBouncers listen on 127.0.0.1: the genuine one, an impostor with a certificate for the
same names from another CA (a man in the middle), and one with the region CA's certificate for the host's own
names only (what the role issued before pgbouncer_tls_names). The pod's settings log in to the first only;
`require`, the old setting, would have accepted the impostor. PGHOSTADDR=127.0.0.1 is the test's only addition
(the internal name resolves nowhere here; libpq still verifies against PGHOST).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from compiler.ir.data_access import PG_ENV
from tests.conftest import require_tool
from tests.targets.test_datastores_support import (  # noqa: F401  (fixtures)
    AS_POSTGRES, ISOLATE, PGBIN, PgCluster, chown_tree, isolation, make_tls, pgbouncer_command, preload_overrides,
    private_dir)

SERVICE = "booking"
REGION = "us-east-1"


def _openssl(*args) -> None:
    subprocess.run([require_tool("openssl"), *map(str, args)], check=True, capture_output=True)


def _ca(d: Path, name: str) -> tuple[Path, Path]:
    """The tls role's CA: `openssl req -x509 -newkey ec ... basicConstraints=critical,CA:TRUE`."""
    crt, key = d / f"ca-{name}.crt", d / f"ca-{name}.key"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
             "-subj", f"/CN=platformc internal CA {name}", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-keyout", key, "-out", crt)
    return crt, key


def _server_cert(d: Path, stem: str, names: list[str], ca: tuple[Path, Path]) -> dict:
    """The tls role's server certificate: a request with the names as SANs, signed copying its extensions."""
    key, csr, crt = d / f"{stem}.key", d / f"{stem}.csr", d / f"{stem}.crt"
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-subj", f"/CN={names[0]}", "-addext", "subjectAltName=" + ",".join(f"DNS:{n}" for n in names),
             "-keyout", key, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-sha256", "-days", "2",
             "-copy_extensions", "copy", "-out", crt)
    os.chmod(key, 0o600)
    return {"crt": crt, "key": key, "ca": ca[0]}


@pytest.fixture(scope="module")
def tree(reference, tmp_path_factory) -> Path:
    outputs, _ = emit(reference, ["datastores", "ansible", "kubernetes"], with_docs=False)
    root = tmp_path_factory.mktemp("verify-full")
    writer.apply(writer.plan_write(root, outputs["generated"], None))
    return root


def _render(names: list[str], host: str, fqdn: str) -> list[str]:
    """tls_names as Ansible renders them for one host (the two host variables they name)."""
    return [n.replace("{{ ansible_host }}", fqdn).replace("{{ inventory_hostname }}", host) for n in names]


@pytest.mark.tool
def test_a_pod_logs_in_through_pgbouncer_with_verify_full_and_refuses_an_impostor(reference, tree, isolation):
    require_tool("pgbouncer")
    region = reference.region(REGION)
    gen = tree / f"datastores/{REGION}"
    (cm,) = [d for d in yaml.safe_load_all((tree / f"kubernetes/{REGION}/{SERVICE}.yaml").read_text())
             if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == f"{SERVICE}-datastores"]
    pod_env = cm["data"]
    deployment = next(d for d in yaml.safe_load_all((tree / f"kubernetes/{REGION}/{SERVICE}.yaml").read_text())
                      if d and d["kind"] == "Deployment")
    mounts = {m["mountPath"] for m in deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert pod_env[PG_ENV["sslmode"]] == "verify-full"
    assert str(Path(pod_env[PG_ENV["sslrootcert"]]).parent) in mounts  # the CA file is where the pod mounts it

    inv = tree / f"ansible/inventories/{REGION}"
    pgb_vars = yaml.safe_load((inv / "group_vars/pgbouncer.yml").read_text())
    hosts = yaml.safe_load((inv / "hosts.yml").read_text())["all"]["children"]["data_tier"]["children"]["pgbouncer"]
    host, hv = next(iter(hosts["hosts"].items()))
    names = _render(pgb_vars["pgbouncer_tls_names"], host, hv["ansible_host"])

    work = private_dir("dst-vf-")
    try:
        region_ca = _ca(work, REGION)
        other_ca = _ca(work, "impostor")
        genuine = _server_cert(work, "genuine", names, region_ca)
        impostor = _server_cert(work, "impostor", names, other_ca)
        own_names = _server_cert(work, "own-names", _render(["{{ ansible_host }}", "{{ inventory_hostname }}"],
                                                             host, hv["ansible_host"]), region_ca)
        # the pod's CA file: the region's CA certificate, as the ExternalSecret delivers it
        pod_ca = work / "pod-ca.crt"
        shutil.copy(region_ca[0], pod_ca)

        pg_work = work / "pg"
        pg_work.mkdir()
        overrides, _ = preload_overrides(gen / "postgresql.conf")
        cluster = PgCluster(gen / "postgresql.conf", gen / "pg_hba.conf", pg_work, make_tls(work),
                            {**overrides, "listen_addresses": ""})
        chown_tree(work)
        cluster.start()
        try:
            auth_user = region.settings.datastores.pgbouncer.auth_user
            role = pod_env[PG_ENV["user"]]
            (work / "auth.sql").write_text((gen / "pgbouncer-auth.sql").read_text())
            chown_tree(work)
            cluster.psql("-c", "CREATE DATABASE franchise_shard_1")
            cluster.psql("-f", str(work / "auth.sql"), db="franchise_shard_1")
            cluster.psql("-c", f"ALTER ROLE {auth_user} PASSWORD 'auth-secret'",
                         "-c", f"CREATE ROLE {role} LOGIN PASSWORD 'app-secret'")

            port = int(pod_env[PG_ENV["port"]])
            servers = {"genuine": (genuine, port), "impostor": (impostor, port + 1), "own-names": (own_names, port + 2)}
            cmds = {}
            for name, (tls, listen) in servers.items():
                d = work / name
                d.mkdir()
                cmd, _ = pgbouncer_command(
                    gen / "pgbouncer.ini", d, tls, [f'"{auth_user}" "auth-secret"'],
                    extra_pgbouncer={"listen_addr": "127.0.0.1", "listen_port": listen},
                    extra_databases={"franchise_shard_1": f"host={pg_work} port={cluster.port} dbname=franchise_shard_1"})
                cmds[name] = (cmd, d)
            chown_tree(work)

            def psql(listen: int, sslmode: str, root: Path) -> str:
                env = {PG_ENV["host"]: pod_env[PG_ENV["host"]], "PGHOSTADDR": "127.0.0.1", "PGPORT": str(listen),
                       PG_ENV["user"]: role, PG_ENV["sslmode"]: sslmode, PG_ENV["sslrootcert"]: str(root),
                       "PGPASSWORD": "app-secret", "PGDATABASE": "franchise_shard_1", "PGCONNECT_TIMEOUT": "5",
                       "HOME": str(work)}  # no client certificate of root's
                argv = ["env", *(f"{k}={v}" for k, v in env.items()),
                        *map(str, AS_POSTGRES), str(PGBIN / "psql"), "-X", "-At", "-c", "SELECT current_user", "-c",
                        r"\conninfo"]
                return shlex.join(argv)

            # all three PgBouncers, then the logins, in one network namespace
            lines = ["set -u", "pids="]
            for name, (cmd, d) in cmds.items():
                lines += [f"{shlex.join(map(str, cmd))} >{d}/stdout 2>&1 &", 'pids="$pids $!"',
                          f"for i in $(seq 100); do grep -q 'process up' {d}/pgbouncer.log 2>/dev/null && break; "
                          "sleep 0.1; done"]
            mode = pod_env[PG_ENV["sslmode"]]
            probes = [("genuine", servers["genuine"][1], mode, pod_ca),
                      ("impostor", servers["impostor"][1], mode, pod_ca),
                      ("own-names", servers["own-names"][1], mode, pod_ca),
                      # before: require, and no CA in the pod (with a CA file libpq's require checks the issuer)
                      ("impostor-require", servers["impostor"][1], "require", work / "no-ca-in-the-pod.crt")]
            for label, listen, sslmode, root in probes:
                lines += [f"echo '=== {label}'", f"{psql(listen, sslmode, root)} 2>&1; echo \"rc=$?\""]
            lines += ["kill -TERM $pids 2>/dev/null", "wait"]  # PgBouncer's immediate shutdown
            res = subprocess.run(ISOLATE + ["sh", "-c", "\n".join(lines)], capture_output=True, text=True, timeout=120)
            out = res.stdout + res.stderr
            results = {block.split("\n", 1)[0].strip(): block.split("\n", 1)[1] for block in out.split("=== ")[1:]}
            logs = "".join((d / "pgbouncer.log").read_text() for _, d in cmds.values() if (d / "pgbouncer.log").exists())

            ok = results["genuine"]
            assert ok.startswith(f"{role}\n") and "rc=0" in ok, out + logs[-3000:]
            assert "SSL connection (protocol: TLSv1.3" in ok, ok
            assert f'host "{pod_env[PG_ENV["host"]]}"' in ok, ok  # connected by the name it verified
            bad = results["impostor"]
            assert "rc=0" not in bad and "certificate verify failed" in bad, bad
            wrong_name = results["own-names"]
            assert "rc=0" not in wrong_name and "does not match host name" in wrong_name, wrong_name
            # what PGSSLMODE=require (the old setting) let through: the impostor
            assert results["impostor-require"].startswith(f"{role}\n") and "rc=0" in results["impostor-require"], out
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
