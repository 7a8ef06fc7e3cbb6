"""A real Redis Cluster restarted node by node by the redis role's "Restart Redis" handler (run by
tests/targets/test_redis_restart.py, inside `unshare -n`: only a loopback, nothing can leave the machine).

    python redis_restart_harness.py <config.json>            the steps below, one JSON line on stdout
    python redis_restart_harness.py systemctl <verb> <unit>  the stand-in for systemctl the handler runs

The config is the one redis_failback_harness.py reads (the nodes, the admin password, ansible-playbook over the
test's playbook), plus `cluster_playbook` (the role's cluster tasks), `slow` (a replica whose dataset takes a while
to load: it restarts with Redis's own key-load-delay, as Redis's tests slow a load down), `stuck` (a replica that
restarts with a wrong masterauth, so its link to its primary never comes up) and the one after it, `after_stuck`.

The stand-in `systemctl restart` (the handler's ansible.builtin.service, or the role's restart script, find it first on
PATH; the play names the node in PLATFORMC_TEST_NODE) first records which processes hold the admin password in their
command line or environment (none may: the handler's module, the script and this stand-in are running), and which other
nodes do not serve at that moment (the point of the test: none may), then stops the node as systemd would (SIGTERM:
Redis saves and exits) and starts it again, and returns without waiting for it to load (what a unit's readiness does not
promise).

Steps: start every node; form the cluster with the role's cluster tasks; write keys across the slots, and a few
thousand on the slow replica's shard; run the handler on every node (all restart); read the keys; make `stuck`
restart without its replication password and run the handler on it and `after_stuck` only, with a short bound.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from process_secrets import holding
from redis_failback_harness import RECAP, cli, info, playbook, settled, wait

KEYS = [f"restart:probe:{i}" for i in range(24)]  # spread over the three shards' slots
BULK = 3000  # keys on the slow replica's shard; key-load-delay 500 us each: a second and a half to load them


def serving(cfg: dict, node: dict) -> str:
    """Why a node does not serve, read from outside (the harness's own reading, not the script's); "" when it does."""
    if cli(cfg, node, "ping") != "PONG":
        return "no PONG"
    if "loading:0" not in cli(cfg, node, "info", "persistence").split():
        return "loading"
    fields = info(cfg, node)
    if fields.get("role") == "slave" and (fields.get("master_link_status") != "up"
                                          or fields.get("master_sync_in_progress") != "0"):
        return f"replica link {fields.get('master_link_status')}, sync {fields.get('master_sync_in_progress')}"
    if "cluster_state:ok" not in cli(cfg, node, "cluster", "info").split():
        return "cluster_state not ok"
    return ""


def pid_file(node: dict) -> str:
    return os.path.join(node["work"], "server.pid")


def start(node: dict, extra: tuple = ()) -> None:
    log = open(os.path.join(node["work"], "server.out"), "ab")
    proc = subprocess.Popen([*node["command"], *extra], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    with open(pid_file(node), "w") as f:
        f.write(str(proc.pid))


def stop(node: dict) -> None:
    try:
        pid = int(open(pid_file(node)).read())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:  # not our child (an earlier systemctl started it): poll until it is gone or a zombie
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[-1].startswith("Z"):
                    break
        except OSError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)


def systemctl(cfg_path: str, argv: list) -> int:
    cfg = json.loads(open(cfg_path).read())
    verb = argv[0] if argv else ""
    if verb == "show":  # what the systemd module reads before it acts
        print("Id=redis-server.service\nNames=redis-server.service\nLoadState=loaded\nActiveState=active\n"
              "SubState=running\nUnitFileState=enabled\nMainPID=1\nType=notify")
        return 0
    if verb != "restart":
        return 0
    name = os.environ["PLATFORMC_TEST_NODE"]
    node = next(n for n in cfg["nodes"] if n["name"] == name)
    leaks = holding(cfg["admin_password"])  # while the handler's module and the script run: none may hold it
    others = {n["name"]: serving(cfg, n) for n in cfg["nodes"] if n["name"] != name}
    with open(cfg["restart_log"], "a") as f:
        f.write(json.dumps({"node": name, "at": time.time(),
                            "not_serving": {k: v for k, v in others.items() if v}, "leaks": leaks}) + "\n")
    stop(node)
    start(node, tuple(cfg.get("restart_args", {}).get(name, ())))
    return 0


def run(cfg: dict, *extra: str) -> tuple[int, str]:
    """ansible-playbook over the test's playbook (the handler); its exit code and output."""
    proc = subprocess.run(cfg["playbook"] + list(extra), cwd=cfg["playbook_dir"], env=cfg["playbook_env"],
                          capture_output=True, text=True, timeout=240)
    return proc.returncode, proc.stdout + proc.stderr


def restarts(cfg: dict) -> list:
    if not os.path.exists(cfg["restart_log"]):
        return []
    with open(cfg["restart_log"]) as f:
        lines = [json.loads(line) for line in f]
    os.unlink(cfg["restart_log"])
    return lines


def fill(cfg: dict, primary: dict, count: int) -> None:
    """`count` keys on `primary`'s shard: one hash tag that primary serves, piped in."""
    tag = next(f"bulk{i}" for i in range(1000) if cli(cfg, primary, "set", f"{{bulk{i}}}:probe", "x") == "OK")
    payload = "".join(f"SET {{{tag}}}:{i} {'v' * 64}\r\n" for i in range(count))
    env = dict(os.environ, REDISCLI_AUTH=cfg["admin_password"])
    subprocess.run(["redis-cli", "--user", "platformc-admin", "-h", primary["address"], "-p", str(cfg["port"]),
                    "--pipe"], input=payload, env=env, capture_output=True, text=True, timeout=30, check=True)


def main() -> None:
    cfg_path = sys.argv[1]
    cfg = json.loads(open(cfg_path).read())
    nodes = {n["name"]: n for n in cfg["nodes"]}
    out: dict = {}
    for node in cfg["nodes"]:
        start(node)
    try:
        wait("the nodes to answer", lambda: all(cli(cfg, n, "ping") == "PONG" for n in cfg["nodes"]))
        playbook(dict(cfg, playbook=cfg["cluster_playbook"]))
        wait("the cluster to form", lambda: settled(cfg))
        first = cfg["nodes"][0]
        out["set"] = [cli(cfg, first, "set", key, f"value of {key}", cluster=True) for key in KEYS]
        slow = nodes[cfg["slow"]]
        fill(cfg, nodes[slow["replica_of"]], BULK)
        wait("the slow replica to hold the keys", lambda: int(cli(cfg, slow, "dbsize") or 0) >= BULK)

        # Every node restarts (a config change reaches them all); the slow replica takes a while to load.
        cfg["restart_args"] = {slow["name"]: ["--key-load-delay", "500"]}
        open(cfg_path, "w").write(json.dumps(cfg))
        started = time.monotonic()
        out["rc"], output = run(cfg, "-vvv")  # -vvv: the commands Ansible runs, and each task's arguments
        out["seconds"] = round(time.monotonic() - started, 1)
        out["password_in_output"] = cfg["admin_password"] in output
        out["output"] = output[-6000:]
        out["changed"] = {host: int(changed) for host, _, changed, _, _ in RECAP.findall(output)}
        out["restarts"] = restarts(cfg)
        out["served_after"] = {n["name"]: serving(cfg, n) for n in cfg["nodes"]}
        wait("the cluster to settle", lambda: settled(cfg))
        out["get"] = [cli(cfg, first, "get", key, cluster=True) for key in KEYS]

        # A replica that never comes back (its replication password is wrong): the bound fails the handler, and the
        # next node is not restarted.
        cfg["restart_args"] = {cfg["stuck"]: ["--masterauth", "not-the-replication-password"]}
        open(cfg_path, "w").write(json.dumps(cfg))
        started = time.monotonic()
        out["stuck_rc"], output = run(cfg, "--limit", f"{cfg['stuck']},{cfg['after_stuck']}",
                                      "-e", json.dumps({"redis_restart_timeout": cfg["stuck_timeout"]}))
        out["stuck_seconds"] = round(time.monotonic() - started, 1)
        out["stuck_password_in_output"] = cfg["admin_password"] in output
        out["stuck_output"] = output[-8000:]
        out["stuck_restarts"] = restarts(cfg)
    finally:
        for node in cfg["nodes"]:
            try:
                os.kill(int(open(pid_file(node)).read()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "systemctl":
        sys.exit(systemctl(os.environ["PLATFORMC_TEST_CONFIG"], sys.argv[2:]))
    main()
