"""A stand-in Elasticsearch cluster restarted node by node by the elasticsearch role's "Restart Elasticsearch" handler
(run by tests/targets/test_elasticsearch_restart.py, inside `unshare -n`: only a loopback, nothing can leave the
machine). There is no Elasticsearch on this machine; the stand-in serves the part of its REST API the restart script
uses, over HTTPS with a certificate from the test's CA, and models what the script must wait for.

    python es_restart_harness.py <config.json>            every scenario of the config, one JSON line on stdout
    python es_restart_harness.py systemctl <verb> <unit>  the stand-in for systemctl the script runs

The model. Each node is master-eligible and holds one primary and one replica (one replica per shard, spread over the
nodes), so a shard has copies on two nodes. A restarted node is away (its port refuses connections) for `down` s,
then answers but has not joined for `join` s (every authenticated request gets 401: it cannot read the security
index, as Elasticsearch answers then), then has joined. Its shard copies are stale until allocation is enabled
(cluster.routing.allocation.enable back to its default) and `recover` s have passed. Status: green when every node
is in and recovered; red when more nodes are away or stale than there are replicas (both copies of some shard);
yellow otherwise, and always at best yellow with fewer nodes than copies (a single node has nowhere to put replicas).
Without a quorum of nodes in the cluster, no node authenticates anyone. Requests the API does not take (an unknown
path, method, query parameter, column or setting) get 400, as Elasticsearch rejects unrecognized parameters.

The stand-in `systemctl restart` (the script finds it first on PATH; the play names the node in PLATFORMC_TEST_NODE)
first records which processes hold the elastic password in their command line or environment (none may: the handler's
module, the script and this stand-in are running), then tells the cluster, which records what state the rest of the
cluster was in at that moment (the point of the test: every other node in and recovered, the cluster green, allocation
limited to primaries), and returns at once, as a unit's readiness does not wait for the node to join. `systemctl show`
answers for the service module (the handler before the script restarted through it).

A scenario: the nodes (name, loopback address), the stand-in's settings (`formed`: false before the role has set up
the cluster; `stuck`: a node that never joins after its restart; `unrecoverable`: one whose copies never recover),
and the ansible-playbook command that runs the handler. Its result: the run's exit code and output, the restarts, every
request each node answered, and the cluster's state at the end.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from process_secrets import holding

RECAP = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
REPLICAS = 1
HEALTH_COLUMNS = {"status", "node.total", "node.data"}


def dumps(body) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()  # Elasticsearch's compact JSON


def error(status: int, kind: str, reason: str) -> tuple[int, bytes, str]:
    return status, dumps({"error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind,
                                    "reason": reason}, "status": status}), "application/json"


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class Cluster:
    def __init__(self, scenario: dict, cfg: dict):
        self.cfg, self.scenario = cfg, scenario
        self.lock = threading.Lock()
        now = time.monotonic()
        self.nodes = {n["name"]: {"address": n["address"], "state": "in", "until": now, "recovered": True,
                                  "ready_since": None} for n in scenario["nodes"]}
        self.allocation = None  # cluster.routing.allocation.enable: None is the default (all)
        self.restarts: list = []
        self.requests: list = []
        self.settings: list = []
        self.servers: dict = {}
        self.stop = threading.Event()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cfg["cert"], cfg["key"])

    # ------------------------------------------------------------------ the model
    def tick(self) -> list:
        """Advance the nodes' states to now (under the lock); the servers to start, as (name, True)."""
        now, starts = time.monotonic(), []
        for name, n in self.nodes.items():
            if n["state"] == "away" and now >= n["until"]:
                n["state"], n["until"] = "joining", now + self.scenario["join"]
                starts.append(name)
            if n["state"] == "joining" and now >= n["until"] and name != self.scenario.get("stuck_now"):
                n["state"] = "in"
            ready = n["state"] == "in" and self.allocation is None and not n["recovered"]
            if not ready:
                n["ready_since"] = None
            elif n["ready_since"] is None:
                n["ready_since"] = now
            elif now - n["ready_since"] >= self.scenario["recover"] and name != self.scenario.get("unrecoverable"):
                n["recovered"] = True
        return starts

    def members(self) -> list:
        return [name for name, n in self.nodes.items() if n["state"] == "in"]

    def quorum(self) -> bool:
        return self.scenario.get("formed", True) and len(self.members()) >= len(self.nodes) // 2 + 1

    def status(self) -> str:
        good = [name for name, n in self.nodes.items() if n["state"] == "in" and n["recovered"]]
        if len(self.nodes) - len(good) > REPLICAS:
            return "red"
        if len(good) < len(self.nodes) or len(self.nodes) <= REPLICAS:
            return "yellow"
        return "green"

    def restart(self, name: str) -> None:
        with self.lock:
            self.tick()
            self.restarts.append({
                "node": name, "at": time.monotonic(), "status": self.status(), "allocation": self.allocation,
                "others_not_in_or_stale": sorted(o for o, n in self.nodes.items()
                                                 if o != name and (n["state"] != "in" or not n["recovered"]))})
            n = self.nodes[name]
            n.update(state="away", until=time.monotonic() + self.scenario["down"], recovered=False, ready_since=None)
            if name == self.scenario.get("stuck"):
                self.scenario["stuck_now"] = name
        self.stop_server(name)

    # ------------------------------------------------------------------ the REST API
    def answer(self, node: str, method: str, target: str, headers, body: bytes) -> tuple[int, bytes, str]:
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        auth = headers.get("Authorization", "")
        entry = {"node": node, "method": method, "path": url.path, "query": url.query, "auth": bool(auth),
                 "body": body.decode() if body else "", "at": time.monotonic()}
        with self.lock:
            self.tick()
            result = self._answer(node, method, url.path, query, auth, body)
            entry["status"] = result[0]
            self.requests.append(entry)
        return result

    def _answer(self, node, method, path, query, auth, body):
        if not auth.startswith("Basic "):
            return error(401, "security_exception", f"missing authentication credentials for REST request [{path}]")
        user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        if (user, password) != ("elastic", self.cfg["password"]) or self.nodes[node]["state"] != "in" \
                or not self.quorum():
            return error(401, "security_exception", f"unable to authenticate user [{user}] for REST request [{path}]")
        allowed = {"/_cat/health": {"h"}, "/_cat/nodes": {"h"}, "/_cluster/settings": set(), "/_flush": set()}
        if path not in allowed:
            return error(400, "illegal_argument_exception", f"no handler found for uri [{path}]")
        unknown = set(query) - allowed[path]
        if unknown:
            return error(400, "illegal_argument_exception",
                         f"request [{path}] contains unrecognized parameter: [{sorted(unknown)[0]}]")
        if path == "/_cat/health" and method == "GET":
            columns = query.get("h", ["status,node.total,node.data"])[0].split(",")
            if set(columns) - HEALTH_COLUMNS:
                return error(400, "illegal_argument_exception", f"unknown columns {columns}")
            values = {"status": self.status(), "node.total": str(len(self.members())),
                      "node.data": str(len(self.members()))}
            return 200, (" ".join(values[c] for c in columns) + " \n").encode(), "text/plain"
        if path == "/_cat/nodes" and method == "GET":
            if query.get("h") != ["name"]:
                return error(400, "illegal_argument_exception", f"this stand-in serves h=name only, not {query}")
            names = self.members()
            width = max(len(n) for n in names)
            return 200, "".join(f"{n:<{width}} \n" for n in names).encode(), "text/plain"
        if path == "/_cluster/settings" and method == "PUT":
            try:
                wanted = json.loads(body)
            except ValueError:
                return error(400, "parse_exception", "request body is not JSON")
            value = (wanted.get("persistent") or {}).get("cluster.routing.allocation.enable", "missing")
            if set(wanted) != {"persistent"} or set(wanted["persistent"]) != {"cluster.routing.allocation.enable"} \
                    or value not in ("primaries", None):
                return error(400, "illegal_argument_exception", f"this stand-in takes no such settings: {wanted}")
            self.allocation = value
            self.settings.append({"node": node, "value": value, "at": time.monotonic()})
            persistent = {"cluster": {"routing": {"allocation": {"enable": value}}}} if value else {}
            return 200, dumps({"acknowledged": True, "persistent": persistent, "transient": {}}), "application/json"
        if path == "/_flush" and method == "POST":
            total = 2 * len(self.nodes)
            return 200, dumps({"_shards": {"total": total, "successful": total, "failed": 0}}), "application/json"
        return error(405, "method_not_allowed", f"{method} is not allowed for [{path}]")

    # ------------------------------------------------------------------ the nodes' HTTPS ports
    def start_server(self, name: str) -> None:
        cluster = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, data, kind = cluster.answer(name, self.command, self.path, self.headers, body)
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _any

        server = Server((self.nodes[name]["address"], self.cfg["port"]), Handler)
        server.socket = self.ctx.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.servers[name] = server

    def stop_server(self, name: str) -> None:
        server = self.servers.pop(name, None)
        if server:
            server.shutdown()
            server.server_close()

    def run(self) -> None:
        for name in self.nodes:
            self.start_server(name)
        threading.Thread(target=self._ticker, daemon=True).start()

    def _ticker(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                starts = self.tick()
            for name in starts:
                self.start_server(name)
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        for name in list(self.servers):
            self.stop_server(name)

    def result(self) -> dict:
        with self.lock:
            self.tick()
            t0 = self.t0
            return {"restarts": [{**r, "at": round(r["at"] - t0, 2)} for r in self.restarts],
                    "requests": [{**r, "at": round(r["at"] - t0, 2)} for r in self.requests],
                    "settings": [{**s, "at": round(s["at"] - t0, 2)} for s in self.settings],
                    "allocation": self.allocation, "status": self.status(), "members": self.members()}


class Control(BaseHTTPRequestHandler):
    """The harness's own plain-HTTP endpoint on 127.0.0.1, for the stand-in systemctl."""
    cluster: Cluster | None = None

    def log_message(self, *args):
        pass

    def do_POST(self):
        url = urlsplit(self.path)
        name = parse_qs(url.query)["node"][0]
        if url.path == "/restart" and Control.cluster and name in Control.cluster.nodes:
            Control.cluster.restart(name)
            self.send_response(200)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()


def systemctl(cfg_path: str, argv: list) -> int:
    cfg = json.loads(open(cfg_path).read())
    verb = argv[0] if argv else ""
    if verb == "show":  # what the systemd module reads before it acts
        print("Id=elasticsearch.service\nNames=elasticsearch.service\nLoadState=loaded\nActiveState=active\n"
              "SubState=running\nUnitFileState=enabled\nMainPID=1\nType=notify")
        return 0
    if verb != "restart":
        return 0
    node = os.environ["PLATFORMC_TEST_NODE"]
    with open(cfg["leak_log"], "a") as f:  # while the handler's module and the script run: none may hold the password
        f.write(json.dumps({"node": node, "leaks": holding(cfg["password"])}) + "\n")
    request = urllib.request.Request(f"http://127.0.0.1:{cfg['control_port']}/restart?node={node}", method="POST")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # straight to the loopback
    with opener.open(request, timeout=10) as response:
        return 0 if response.status == 200 else 1


def main() -> None:
    cfg = json.loads(open(sys.argv[1]).read())
    control = Server(("127.0.0.1", cfg["control_port"]), Control)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    out = {}
    for scenario in cfg["scenarios"]:
        cluster = Cluster(scenario, cfg)
        cluster.t0 = time.monotonic()
        Control.cluster = cluster
        cluster.run()
        started = time.monotonic()
        try:
            proc = subprocess.run(scenario["playbook"], cwd=cfg["playbook_dir"], env=cfg["playbook_env"],
                                  capture_output=True, text=True, timeout=240)
            rc, output = proc.returncode, proc.stdout + proc.stderr
        except subprocess.TimeoutExpired as e:
            rc, output = "timeout", f"{e.stdout}\n{e.stderr}"
        seconds = round(time.monotonic() - started, 1)
        result = cluster.result()
        cluster.close()
        leaks = []
        if os.path.exists(cfg["leak_log"]):
            with open(cfg["leak_log"]) as f:
                leaks = [entry for line in f if (entry := json.loads(line))["leaks"]]
            os.unlink(cfg["leak_log"])
        out[scenario["name"]] = {"rc": rc, "seconds": seconds, "output": output[-8000:], "leaks": leaks,
                                 "password_in_output": cfg["password"] in output,
                                 "changed": {h: int(c) for h, _, c, _, _ in RECAP.findall(output)}, **result}
    control.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "systemctl":
        sys.exit(systemctl(os.environ["PLATFORMC_TEST_CONFIG"], sys.argv[2:]))
    main()
