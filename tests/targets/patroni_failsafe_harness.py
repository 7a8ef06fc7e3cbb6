"""Patroni's DCS failsafe mode through an etcd outage, behind tests/targets/test_patroni_failsafe.py (run by it, inside
`unshare -n`, as postgres).

    python3 patroni_failsafe_harness.py <generated dir> <region> <work dir>

Starts, on loopback only, one etcd member and the region's first two PostgreSQL hosts' Patroni members from the
region's group_vars patroni_config (remapped as patroni_harness.py remaps it): the first bootstraps the cluster with
its bootstrap.dcs, the second clones from it and streams. Then etcd is stopped (the quorum lost: maintenance that
stops two of the three members, or a resize that stops every data host but the PostgreSQL ones) for longer than
ttl + loop_wait + retry_timeout, while a write goes to the leader every second. Then, etcd still down, the replica's
Patroni and PostgreSQL are stopped: the leader can no longer reach every member.

Prints one JSON line: the /failsafe key as the leader served it, the writes made and refused during the outage, the
probes (about one a second) in which the leader answered GET /primary with 200 and whether the replica ever did, and how long the leader took to
stop answering 200 once the replica was gone.
"""

from __future__ import annotations

import json
import os
import ssl
import sys
import time
import urllib.request
from pathlib import Path

import yaml

from patroni_harness import (HOST, PASSWORDS, Proc, Work, connect, data_tier_files, group_vars, hosts_of, kill_postmaster,
                             remap, render, rest, single_etcd, wait)

ETCD_CLIENT, ETCD_PEER = 24479, 24480
PG_PORTS, REST_PORTS = (26542, 26543), (29118, 29119)


def get_json(port: int, path: str, ctx: ssl.SSLContext):
    try:
        with urllib.request.urlopen(f"https://{HOST}:{port}{path}", timeout=2, context=ctx) as resp:
            return json.loads(resp.read())
    except Exception as exc:
        return {"error": str(exc)}


def write(sock: Path, port: int) -> bool:
    try:
        c = connect(sock, port)
        try:
            c.cursor().execute("INSERT INTO failsafe_probe(at) VALUES (clock_timestamp())")
        finally:
            c.close()
        return True
    except Exception:
        return False


def main():
    gen, region, root = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    os.environ["HOME"] = str(root)
    w = Work(root)
    ctx = ssl.create_default_context(cafile=w.crt)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    gv = group_vars(gen, region)
    dcs = gv["patroni_config"]["bootstrap"]["dcs"]
    out: dict = {"failsafe_mode": dcs.get("failsafe_mode"), "ttl": dcs["ttl"], "loop_wait": dcs["loop_wait"],
                 "retry_timeout": dcs["retry_timeout"]}
    procs: list[Proc] = []
    members: list = []
    try:
        etcd = single_etcd(gv["etcd_members"][0], root, w, ETCD_CLIENT, ETCD_PEER, logs)
        procs.append(etcd)
        names = list(hosts_of(gen, region))[:2]
        for i, n in enumerate(names):
            conf_dir = root / f"{n}-conf"
            data_tier_files(gen, region, conf_dir)
            cfg = render(gv["patroni_config"], {"inventory_hostname": n, "ansible_host": n, **PASSWORDS})
            cfg = remap(cfg, n, PG_PORTS[i], REST_PORTS[i], [ETCD_CLIENT], w, conf_dir, root / n / "data")
            path = root / f"{n}.yml"
            path.write_text(yaml.safe_dump(cfg))
            sock = root / n / "sock"
            proc = Proc(n, ["patroni", str(path)], logs, env={"PGHOST": str(sock)})
            procs.append(proc)
            members.append((n, sock, PG_PORTS[i], REST_PORTS[i], proc, root / n / "data"))
            if i == 0:
                wait(lambda: rest(REST_PORTS[0], "/primary", ctx) == 200, 180, "the first member leading")
        wait(lambda: rest(REST_PORTS[1], "/replica", ctx) == 200, 240, "the replica streaming")
        leader, replica = members
        c = connect(leader[1], leader[2])
        c.cursor().execute("CREATE TABLE failsafe_probe (at timestamptz NOT NULL)")
        c.close()
        # the leader writes /failsafe with its next key update once the member list holds both (without
        # failsafe_mode there is no such key: a loop, then the outage, which shows what it does then)
        if out["failsafe_mode"]:
            wait(lambda: set(get_json(leader[3], "/failsafe", ctx)) >= {leader[0], replica[0]}, 60,
                 "both members in the /failsafe key")
        else:
            time.sleep(dcs["loop_wait"])
        out["failsafe_key"] = get_json(leader[3], "/failsafe", ctx)

        etcd.stop()
        outage = dcs["ttl"] + dcs["loop_wait"] + dcs["retry_timeout"] + 20
        t0 = time.monotonic()
        probes, primary, replica_led, writes, refused = 0, 0, False, 0, 0
        while time.monotonic() - t0 < outage:
            probes += 1
            if rest(leader[3], "/primary", ctx) == 200:
                primary += 1
            replica_led = replica_led or rest(replica[3], "/primary", ctx) == 200
            if write(leader[1], leader[2]):
                writes += 1
            else:
                refused += 1
            time.sleep(1)
        out.update(outage_seconds=outage, probes=probes, primary=primary, replica_led=replica_led,
                   writes=writes, refused=refused,
                   failsafe_active=get_json(leader[3], "/patroni", ctx).get("failsafe_mode_is_active", False),
                   leader_role_after=get_json(leader[3], "/patroni", ctx).get("role"))

        # the replica's host gone, etcd still down: the leader cannot reach every member
        replica[4].kill9()
        kill_postmaster(replica[5])
        t1 = time.monotonic()
        demoted = None
        while time.monotonic() - t1 < 90:
            if rest(leader[3], "/primary", ctx) != 200:
                demoted = round(time.monotonic() - t1, 1)
                break
            time.sleep(0.5)
        out["demoted_after_replica_lost_seconds"] = demoted
        time.sleep(3)
        out["write_after_replica_lost"] = write(leader[1], leader[2])
    finally:
        for p in reversed(procs):
            p.stop()
        for m in members:
            kill_postmaster(m[5])
    print(json.dumps(out))


if __name__ == "__main__":
    main()
