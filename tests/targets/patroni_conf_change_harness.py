"""The configuration change behind tests/targets/test_patroni_conf_change.py (run by it, inside `unshare -n`, as
postgres).

    python3 patroni_conf_change_harness.py <generated dir> <region> <host> <work dir> <handlers as JSON> <names as JSON>

Starts, on loopback only, one etcd member and one Patroni member (the host's, from the region's group_vars
patroni_config, remapped as patroni_harness.py remaps it). Then it changes the data tier's postgresql.conf as a new
version of the file would (the role's copy, which notifies "Restart PostgreSQL"): a setting PostgreSQL takes on a
reload (work_mem) and one it takes only at a restart (max_files_per_process). It runs the handlers that notification
runs, in their order, each one's command as the role writes it; a handler with `until` is retried as Ansible
retries it (its condition: the member's `Pending restart` in `patronictl list --extended --format json`), one whose
`when` is that condition runs only if the handler before it saw it, and a service reload of the Patroni unit is the
SIGHUP its ExecReload sends. <names> maps each template in the commands to what it stands for here: "config" (the
member's Patroni configuration file), "scope" or "member".

Prints one JSON line: both settings before and after, and each handler's exit status and output.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

from patroni_harness import Proc, Work, group_vars, member_config, rest, single_etcd, start_member

PG_PORT, REST_PORT, ETCD_CLIENT, ETCD_PEER = 26432, 29008, 23379, 23380
CHANGED = {"work_mem": "7MB", "max_files_per_process": "1500"}


def settings(sock: Path) -> dict:
    with psycopg2.connect(host=str(sock), port=PG_PORT, dbname="postgres", user="postgres") as c, c.cursor() as cur:
        cur.execute("SELECT name, setting, unit, pending_restart FROM pg_settings WHERE name = ANY(%s)", (list(CHANGED),))
        return {n: {"setting": s, "unit": u, "pending_restart": p} for n, s, u, p in cur.fetchall()}


def pending(stdout: str, host: str) -> bool:
    try:
        return any(m.get("Member") == host and m.get("Pending restart") for m in json.loads(stdout))
    except ValueError:
        return False


def main():
    gen, region, host, root, handlers, names = (Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]),
                                                json.loads(sys.argv[5]), json.loads(sys.argv[6]))
    os.environ["HOME"] = str(root)
    w = Work(root)
    ctx = ssl.create_default_context(cafile=w.crt)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    gv = group_vars(gen, region)
    procs: list[Proc] = []
    out: dict = {"handlers": []}
    try:
        procs.append(single_etcd(gv["etcd_members"][0], root, w, ETCD_CLIENT, ETCD_PEER, logs))
        cfg, conf = member_config(gen, region, host, root, w, PG_PORT, REST_PORT, ETCD_CLIENT)
        assert not set(CHANGED) & set(cfg["postgresql"]["parameters"]), "Patroni's own parameters would win"
        member, path, sock = start_member(cfg, root, logs, PG_PORT, REST_PORT, ctx, procs)
        time.sleep(2)
        out["before"] = settings(sock)
        # the new file: the role's copy replaces it whole; here the settings are appended (the last one wins)
        conf.write_text(conf.read_text() + "".join(f"{k} = {v}\n" for k, v in CHANGED.items()))
        values = {"config": str(path), "scope": cfg["scope"], "member": host}
        flagged = False
        for h in handlers:
            if h.get("sighup"):
                member.p.send_signal(signal.SIGHUP)
                time.sleep(2)  # Patroni applies it in its next cycle's reload
                out["handlers"].append({"name": h["name"], "rc": 0, "attempts": 1, "output": "SIGHUP"})
                continue
            if h.get("when_pending") and not flagged:
                out["handlers"].append({"name": h["name"], "rc": 0, "attempts": 0, "output": "skipped"})
                continue
            argv = [values[names[a]] if a in names else a for a in h["argv"]]
            assert not any("{{" in a for a in argv), f"a template the test did not name: {argv}"
            for attempt in range(1 + (h.get("retries", 0) if h.get("until_pending") else 0)):
                res = subprocess.run(argv, capture_output=True, text=True)
                if not h.get("until_pending") or (res.returncode == 0 and pending(res.stdout, host)):
                    break
                time.sleep(h.get("delay", 5))
            if h.get("until_pending"):
                flagged = res.returncode == 0 and pending(res.stdout, host)
            out["handlers"].append({"name": h["name"], "rc": res.returncode, "attempts": attempt + 1,
                                    "output": (res.stdout + res.stderr)[-600:]})
        # Until the member leads again and its reload has reached PostgreSQL: a SIGHUP is applied in Patroni's next
        # cycle (loop_wait), so the reload-only setting may lag the handlers by up to one.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                out["after"] = settings(sock)
                if rest(REST_PORT, "/primary", ctx) == 200 and out["after"]["work_mem"]["setting"] == "7168":
                    break
            except psycopg2.Error:
                pass
            time.sleep(1)
    finally:
        for p in reversed(procs):
            p.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
