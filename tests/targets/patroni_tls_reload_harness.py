"""The certificate reload behind tests/targets/test_patroni_tls_reload.py (run by it, inside `unshare -n`, as postgres).

    python3 patroni_tls_reload_harness.py <generated dir> <region> <host> <work dir> <units as JSON>

Starts, on loopback only, one etcd member and one Patroni member (the host's, from the region's group_vars
patroni_config, remapped as patroni_harness.py remaps it: addresses, ports, paths, a throwaway certificate).
PostgreSQL's ssl_cert_file is a file of its own, which the harness replaces as platformc-tls-renew does (a new
certificate for the same key, renamed over the old one). It then reloads each unit the renewal would reload, as
systemd does: the ExecReload of Debian's patroni@.service with $MAINPID the member's Patroni. Units of instances this
harness does not run (the host's standby clusters) are named in the output and skipped.

Prints one JSON line: the SHA-256 of the certificate PostgreSQL serves at start, after the file was replaced and
after the reload, of the old and the new certificate, and the units reloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import socket
import ssl
import struct
import subprocess
import sys
import time
from pathlib import Path


from patroni_harness import HOST, Proc, Work, group_vars, member_config, single_etcd, start_member

PATRONI_UNIT = Path("/lib/systemd/system/patroni@.service")
INSTANCE = "15-main"  # the patroni role's patroni@{{ postgresql_version }}-main (PostgreSQL 15 here)
PG_PORT, REST_PORT, ETCD_CLIENT, ETCD_PEER = 25432, 28008, 22379, 22380


def served(port: int) -> str:
    """SHA-256 of the certificate PostgreSQL presents (SSLRequest, then the TLS handshake)."""
    with socket.create_connection((HOST, port), timeout=10) as s:
        s.sendall(struct.pack("!ii", 8, 80877103))
        assert s.recv(1) == b"S", "PostgreSQL refused SSL"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(s) as t:
            return hashlib.sha256(t.getpeercert(binary_form=True)).hexdigest()


def file_digest(crt: Path) -> str:
    der = subprocess.run(["openssl", "x509", "-in", str(crt), "-outform", "DER"], capture_output=True, check=True).stdout
    return hashlib.sha256(der).hexdigest()


def systemd_reload(unit: str, mainpid: int):
    """`systemctl reload <unit>` as systemd runs it: the unit file's ExecReload, $MAINPID the service's main process."""
    line = next(x for x in PATRONI_UNIT.read_text().splitlines() if x.startswith("ExecReload="))
    argv = [a.replace("$MAINPID", str(mainpid)) for a in shlex.split(line.split("=", 1)[1])]
    subprocess.run(argv, check=True)


def main():
    gen, region, host, root, units = Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]), json.loads(sys.argv[5])
    os.environ["HOME"] = str(root)
    w = Work(root)
    ctx = ssl.create_default_context(cafile=w.crt)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    gv = group_vars(gen, region)
    procs: list[Proc] = []
    out = {"instance": INSTANCE, "reloaded": [], "skipped": []}
    try:
        procs.append(single_etcd(gv["etcd_members"][0], root, w, ETCD_CLIENT, ETCD_PEER, logs))
        cfg, _conf = member_config(gen, region, host, root, w, PG_PORT, REST_PORT, ETCD_CLIENT)
        # PostgreSQL's certificate: a file of its own (the REST API and etcd keep theirs), same key
        pg_tls = root / "pgtls"
        pg_tls.mkdir()
        crt = pg_tls / "server.crt"
        crt.write_bytes(Path(w.crt).read_bytes())
        cfg["postgresql"]["parameters"]["ssl_cert_file"] = str(crt)
        member, _path, _sock = start_member(cfg, root, logs, PG_PORT, REST_PORT, ctx, procs)
        out["old"] = file_digest(crt)
        out["served_at_start"] = served(PG_PORT)
        # the renewal: a new certificate for the same key, renamed over the old one (platformc-tls-renew's mv -f)
        new = pg_tls / ".server.crt.new"
        subprocess.run(["openssl", "req", "-x509", "-new", "-key", w.key, "-days", "30", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-set_serial", "4242", "-out", str(new)],
                       check=True, capture_output=True)
        os.replace(new, crt)
        out["new"] = file_digest(crt)
        time.sleep(3)
        out["served_after_replace"] = served(PG_PORT)
        # what the renewal service then does for each unit: systemctl reload-or-restart <unit>
        for unit in units:
            if unit == f"patroni@{INSTANCE}.service":
                systemd_reload(unit, member.p.pid)
                out["reloaded"].append(unit)
            else:
                out["skipped"].append(unit)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out["served_after_reload"] = served(PG_PORT)
            if out["served_after_reload"] == out["new"]:
                break
            time.sleep(0.5)
    finally:
        for p in reversed(procs):
            p.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
