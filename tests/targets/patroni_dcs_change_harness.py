"""A change to the spec's cluster-wide Patroni settings reaching a running cluster, behind
tests/targets/test_patroni_conf_change.py (run by it, inside `unshare -n`, as postgres).

    python3 patroni_dcs_change_harness.py <generated dir> <region> <host> <work dir> <tasks as JSON> <names as JSON>

Starts, on loopback only, one etcd member and one Patroni member from the region's group_vars patroni_config
(remapped as patroni_harness.py remaps it), which bootstraps the cluster with its bootstrap.dcs. Then the spec
changes: max_connections grows by 20 in bootstrap.dcs. The postgresql role's tasks run in order, each one's command
as the role writes it: the one that takes stdin gets the new bootstrap.dcs as YAML (as `to_nice_yaml` writes it), the
one with `until` is retried until every member shows `Pending restart` (or its retries run out, as Ansible's with
failed_when false), and one that runs only when the first changed something runs only then. Then the first task
runs once more, which must change nothing.

Prints one JSON line: max_connections before and after, each task's exit status and output, and the second run's.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import yaml

from patroni_harness import Proc, Work, group_vars, member_config, rest, single_etcd, start_member

PG_PORT, REST_PORT, ETCD_CLIENT, ETCD_PEER = 26532, 29108, 23479, 23480


def max_connections(sock: Path) -> int:
    with psycopg2.connect(host=str(sock), port=PG_PORT, dbname="postgres", user="postgres") as c, c.cursor() as cur:
        cur.execute("SHOW max_connections")
        return int(cur.fetchone()[0])


def all_flagged(stdout: str) -> bool:
    try:
        members = json.loads(stdout)
    except ValueError:
        return False
    return bool(members) and all(m.get("Pending restart") for m in members)


def main():
    gen, region, host, root, tasks, names = (Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]),
                                             json.loads(sys.argv[5]), json.loads(sys.argv[6]))
    os.environ["HOME"] = str(root)
    w = Work(root)
    ctx = ssl.create_default_context(cafile=w.crt)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    gv = group_vars(gen, region)
    procs: list[Proc] = []
    out: dict = {"tasks": []}
    try:
        procs.append(single_etcd(gv["etcd_members"][0], root, w, ETCD_CLIENT, ETCD_PEER, logs))
        cfg, _conf = member_config(gen, region, host, root, w, PG_PORT, REST_PORT, ETCD_CLIENT)
        _member, path, sock = start_member(cfg, root, logs, PG_PORT, REST_PORT, ctx, procs)
        time.sleep(2)
        out["before"] = max_connections(sock)
        dcs = cfg["bootstrap"]["dcs"]
        dcs["postgresql"]["parameters"]["max_connections"] = out["before"] + 20  # the spec's new value
        stdin = yaml.safe_dump(dcs, default_flow_style=False, indent=2)
        values = {"config": str(path), "scope": cfg["scope"], "member": host}
        changed = None
        for t in tasks:
            if t.get("when_changed") and not changed:
                out["tasks"].append({"name": t["name"], "rc": 0, "attempts": 0, "output": "skipped"})
                continue
            argv = [values[names[a]] if a in names else a for a in t["argv"]]
            assert not any("{{" in a for a in argv), f"a template the test did not name: {argv}"
            for attempt in range(1 + (t.get("retries", 0) if t.get("until_all_flagged") else 0)):
                res = subprocess.run(argv, input=stdin if t.get("stdin") else None, capture_output=True, text=True)
                if not t.get("until_all_flagged") or (res.returncode == 0 and all_flagged(res.stdout)):
                    break
                time.sleep(t.get("delay", 5))
            if t.get("stdin"):
                changed = "Configuration changed" in res.stdout
            out["tasks"].append({"name": t["name"], "rc": res.returncode, "attempts": attempt + 1,
                                 "output": (res.stdout + res.stderr)[-800:]})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                out["after"] = max_connections(sock)
                if rest(REST_PORT, "/primary", ctx) == 200 and out["after"] == out["before"] + 20:
                    break
            except psycopg2.Error:
                pass
            time.sleep(1)
        first = tasks[0]
        again = subprocess.run([values[names[a]] if a in names else a for a in first["argv"]], input=stdin,
                               capture_output=True, text=True)
        out["again"] = {"rc": again.returncode, "output": (again.stdout + again.stderr)[-400:]}
    finally:
        for p in reversed(procs):
            p.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
