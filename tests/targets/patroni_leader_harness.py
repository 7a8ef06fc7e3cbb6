"""What the postgresql and postgres_exporter roles' leader steps read, from real servers (run by
tests/targets/test_postgres_setup_convergence.py, inside `unshare -n`, as postgres).

    python3 patroni_leader_harness.py <generated dir> <region> <work dir> <scripts.json>

One etcd member and the region's first two Patroni members on loopback, from the generated group_vars, remapped as
patroni_harness.py does. It records each member's `GET /cluster` answer (what the roles' wait task registers) as
the cluster forms and after a switchover, and runs the roles' fingerprint scripts (scripts.json: the read script,
and a record script per fingerprint, rendered by the test with Ansible's templar) with psql over each member's
socket: read before anything was recorded, record on the leader, read on the new leader after the switchover,
record on the old leader, now a replica. And what patronictl does with a member Patroni has not registered.

Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import patroni_harness as h  # noqa: E402

ETCD_CLIENT, ETCD_PEER = 22379, 22380


def cluster(port: int, ctx) -> dict | None:
    try:
        with urllib.request.urlopen(f"https://{h.HOST}:{port}/cluster", timeout=2, context=ctx) as resp:
            return json.loads(resp.read())
    except Exception:  # noqa: BLE001 - not answering yet
        return None


def psql(sock: Path, port: int, script: str) -> subprocess.CompletedProcess:
    # as the roles run it: psql -X -q -v ON_ERROR_STOP=1 -d postgres -A -t, the script on stdin
    return subprocess.run([f"{h.PGBIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(sock), "-p", str(port),
                           "-U", "postgres", "-d", "postgres", "-A", "-t"], input=script, capture_output=True, text=True)


def main():
    gen, region, root, scripts = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), json.loads(Path(sys.argv[4]).read_text())
    os.environ["HOME"] = str(root)  # libpq's ~/.postgresql: the postgres user's home on a host
    w = h.Work(root)
    ctx = ssl.create_default_context(cafile=w.crt)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    gv = h.group_vars(gen, region)
    out: dict = {"answers": {}}
    procs: list[h.Proc] = []
    try:
        procs.append(h.Proc("etcd", [
            "etcd", "--name", "e0", "--data-dir", str(root / "etcd"),
            "--listen-client-urls", f"https://{h.HOST}:{ETCD_CLIENT}", "--advertise-client-urls",
            f"https://{h.HOST}:{ETCD_CLIENT}", "--listen-peer-urls", f"https://{h.HOST}:{ETCD_PEER}",
            "--initial-advertise-peer-urls", f"https://{h.HOST}:{ETCD_PEER}",
            "--initial-cluster", f"e0=https://{h.HOST}:{ETCD_PEER}", "--initial-cluster-state", "new",
            "--cert-file", w.crt, "--key-file", w.key, "--trusted-ca-file", w.crt, "--client-cert-auth",
            "--peer-cert-file", w.crt, "--peer-key-file", w.key, "--peer-trusted-ca-file", w.crt], logs))
        names = list(h.hosts_of(gen, region))[:2]
        members = []
        for i, n in enumerate(names):
            conf_dir = root / f"{n}-conf"
            h.data_tier_files(gen, region, conf_dir)
            cfg = h.render(gv["patroni_config"], {"inventory_hostname": n, "ansible_host": n, **h.PASSWORDS})
            cfg = h.remap(cfg, n, 25432 + i, 28008 + i, [ETCD_CLIENT], w, conf_dir, root / n / "data")
            path = root / f"{n}.yml"
            path.write_text(yaml.safe_dump(cfg))
            sock = root / n / "sock"
            members.append({"name": n, "sock": sock, "port": 25432 + i, "rest": 28008 + i, "config": path})
        a, b = members
        out["scope"] = gv["patroni_config"]["scope"]
        out["names"] = [a["name"], b["name"]]

        procs.append(h.Proc(a["name"], ["patroni", str(a["config"])], logs, env={"PGHOST": str(a["sock"]), "PGPORT": str(a["port"])}))
        # the first answers, as a wait task polling a member that is still bootstrapping sees them
        first = []
        h.wait(lambda: first.append(cluster(a["rest"], ctx)) or first[-1] is not None, 60, "the REST API")
        out["answers"]["first"] = first[-1]
        h.wait(lambda: h.rest(a["rest"], "/primary", ctx) == 200, 120, "the first leader")
        h.wait(lambda: any(m["state"] == "running" and m["role"] == "leader"
                           for m in (cluster(a["rest"], ctx) or {"members": []})["members"]), 30, "the leader listed")
        out["answers"]["bootstrapped"] = cluster(a["rest"], ctx)

        procs.append(h.Proc(b["name"], ["patroni", str(b["config"])], logs, env={"PGHOST": str(b["sock"]), "PGPORT": str(b["port"])}))
        h.wait(lambda: h.rest(b["rest"], "/replica", ctx) == 200, 180, "the replica streaming")
        h.wait(lambda: all(m["state"] == "running" for m in (cluster(b["rest"], ctx) or {"members": []})["members"])
               and len(cluster(b["rest"], ctx)["members"]) == 2, 60, "both members listed running")
        if gv["patroni_config"]["bootstrap"]["dcs"]["synchronous_mode"]:  # only a synchronous standby may take over
            h.wait(lambda: h.rest(b["rest"], "/sync", ctx) == 200, 60, "a synchronous standby")
        out["answers"]["formed"] = {m["name"]: cluster(m["rest"], ctx) for m in members}

        # patronictl with a member name the DCS does not hold (a member before its first HA cycle), and with a
        # running member that has nothing pending
        ctl = ["patronictl", "-c", str(a["config"])]
        unknown = subprocess.run([*ctl, "restart", out["scope"], "not-registered", "--pending", "--force"],
                                 capture_output=True, text=True)
        pending = subprocess.run([*ctl, "restart", out["scope"], a["name"], "--pending", "--force"],
                                 capture_output=True, text=True)
        out["patronictl"] = {"unregistered": [unknown.returncode, unknown.stderr + unknown.stdout],
                             "nothing_pending": [pending.returncode, pending.stdout]}

        def run(member, script):
            res = psql(member["sock"], member["port"], script)
            return [res.returncode, res.stdout.strip(), res.stderr.strip()]

        out["read_before"] = run(a, scripts["read"])
        out["record_on_leader"] = run(a, scripts["record_first"])
        out["read_on_leader"] = run(a, scripts["read"])
        out["read_on_replica"] = run(b, scripts["read"])

        sw = subprocess.run([*ctl, "switchover", out["scope"], "--leader", a["name"], "--candidate", b["name"],
                             "--force"], capture_output=True, text=True)
        out["switchover"] = [sw.returncode, sw.stdout + sw.stderr]
        print("switchover:", out["switchover"], file=sys.stderr)
        h.wait(lambda: h.rest(b["rest"], "/primary", ctx) == 200, 120, "the new leader")
        h.wait(lambda: all((c := cluster(m["rest"], ctx)) and len(c["members"]) == 2 and all(
            x["state"] == "running" for x in c["members"]) and any(
            x["role"] == "leader" and x["name"] == b["name"] for x in c["members"]) for m in members),
            120, "both members seeing the new leader")
        out["answers"]["switched"] = {m["name"]: cluster(m["rest"], ctx) for m in members}
        out["read_on_new_leader"] = run(b, scripts["read"])
        out["record_on_old_leader"] = run(a, scripts["record_second"])
        out["record_on_new_leader"] = run(b, scripts["record_second"])
        end = time.monotonic() + 30  # a synchronous commit is flushed on the replica, not yet replayed
        while time.monotonic() < end and run(a, scripts["read"])[1] != run(b, scripts["read"])[1]:
            time.sleep(0.2)
        out["read_on_old_leader_after"] = run(a, scripts["read"])
    except SystemExit:
        for log in sorted(logs.glob("*.log")):
            print(f"--- {log.name}\n" + log.read_text()[-3000:], file=sys.stderr)
        raise
    finally:
        for p in reversed(procs):
            p.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
