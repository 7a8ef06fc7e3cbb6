"""A real Redis Cluster formed by the redis role's cluster tasks, a zone outage, and the role run again (run by
tests/targets/test_redis_failback.py, inside `unshare -n`: only a loopback, nothing can leave the machine).

    python redis_failback_harness.py <config.json>

The config (written by the test) names the region's nodes in topology order, each with its loopback address, its
work directory and the redis-server command line that starts it with the data tier's redis.conf and the includes
the role rendered; the ansible-playbook command that runs the role's cluster tasks over them; the admin password.

Steps: start every node; run the role (the cluster is formed); write a key the first primary serves; kill that
primary and wait for its replica, in another zone, to take over; start it again (it rejoins as that replica's
replica); run the role; run it once more. Prints one JSON line: each node's role after each step, the key, and the
`changed` count of each run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def cli(cfg: dict, node: dict, *args: str, cluster: bool = False) -> str:
    cmd = ["redis-cli", "--user", "platformc-admin", "-h", node["address"], "-p", str(cfg["port"])]
    env = dict(os.environ, REDISCLI_AUTH=cfg["admin_password"])
    res = subprocess.run(cmd + (["-c"] if cluster else []) + list(args), env=env, capture_output=True, text=True,
                         timeout=10)
    return res.stdout.strip()


def info(cfg: dict, node: dict) -> dict:
    fields = {}
    for line in cli(cfg, node, "info", "replication").splitlines():
        key, sep, value = line.strip().partition(":")
        if sep:
            fields[key] = value
    return fields


def roles(cfg: dict) -> dict:
    """node name -> "master", or "slave of <name>" (its master named by address), or "down"."""
    by_address = {n["address"]: n["name"] for n in cfg["nodes"]}
    out = {}
    for node in cfg["nodes"]:
        fields = info(cfg, node)
        role = fields.get("role", "down")
        if role == "slave":
            role = f"slave of {by_address.get(fields.get('master_host'), fields.get('master_host'))}"
            if fields.get("master_link_status") != "up":
                role += " (link down)"
        out[node["name"]] = role
    return out


def wait(what: str, check, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.25)
    raise SystemExit(f"harness: timed out waiting for {what}")


def settled(cfg: dict) -> bool:
    """Every node up, every replica's link up, and the cluster serving every slot."""
    states = roles(cfg).values()
    if any(r == "down" or r.endswith("(link down)") for r in states):
        return False
    return all("cluster_state:ok" in cli(cfg, n, "cluster", "info") for n in cfg["nodes"])


def start(node: dict) -> subprocess.Popen:
    log = open(os.path.join(node["work"], "server.out"), "ab")
    return subprocess.Popen(node["command"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def playbook(cfg: dict) -> int:
    """One ansible-playbook run; a run that hangs (a redis-cli waiting on a cluster that never forms) is stopped with
    its forks after five minutes, and fails the harness."""
    proc = subprocess.Popen(cfg["playbook"], cwd=cfg["playbook_dir"], env=cfg["playbook_env"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise SystemExit(f"harness: ansible-playbook timed out:\n{out[-6000:]}\n{err[-3000:]}")
    recap = RECAP.findall(out)
    if proc.returncode != 0 or not recap:
        raise SystemExit(f"harness: ansible-playbook failed ({proc.returncode}):\n{out[-6000:]}\n{err[-3000:]}")
    return sum(int(changed) for _, _, changed, _, _ in recap)


def main() -> None:
    cfg = json.loads(open(sys.argv[1]).read())
    nodes = {n["name"]: n for n in cfg["nodes"]}
    servers = {name: start(node) for name, node in nodes.items()}
    out: dict = {}
    try:
        wait("the nodes to answer", lambda: all(cli(cfg, n, "ping") == "PONG" for n in cfg["nodes"]))
        out["changed"] = [playbook(cfg)]
        wait("the cluster to form", lambda: settled(cfg))
        out["formed"] = roles(cfg)
        first = cfg["nodes"][0]
        out["set"] = cli(cfg, first, "set", cfg["key"], "before the outage", cluster=True)

        # The first primary's zone goes down: its replica (in another zone) is elected in its place.
        servers[first["name"]].send_signal(signal.SIGKILL)
        servers[first["name"]].wait()
        replica = next(n for n in cfg["nodes"] if n.get("replica_of") == first["name"])
        wait("the replica to take over", lambda: info(cfg, replica).get("role") == "master")
        servers[first["name"]] = start(first)
        wait("the old primary to rejoin", lambda: settled(cfg))
        out["after_outage"] = roles(cfg)

        out["changed"].append(playbook(cfg))
        wait("the cluster to settle", lambda: settled(cfg))
        out["after_run"] = roles(cfg)
        out["get"] = cli(cfg, replica, "get", cfg["key"], cluster=True)
        out["changed"].append(playbook(cfg))
        out["after_rerun"] = roles(cfg)
    finally:
        for proc in servers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
