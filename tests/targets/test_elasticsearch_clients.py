"""The self-managed Elasticsearch's in-cluster clients: one role and one user each, made by the ansible target's
elasticsearch role, and the helm target's shippers write only indices those roles cover.

Both generated trees are written to a temp dir and read back, as an operator's run would read them.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from tests.conftest import require_tool

DAY = "2026.12.02"  # Fluent Bit's Logstash_Format date
JAEGER_DAY = "2026-12-02"  # Jaeger's index date layout

# exactly what each client may do (least privilege; Jaeger creates its own index templates at start-up)
PRIVILEGES = {
    "fluent-bit": (["monitor", "manage_ilm", "manage_index_templates"],
                   ["create_index", "create_doc", "write", "view_index_metadata", "manage_ilm"]),
    "jaeger": (["monitor", "manage_index_templates"],
               ["create_index", "create_doc", "write", "read", "view_index_metadata", "delete_index"]),
}


@pytest.fixture(scope="module")
def trees(any_case, tmp_path_factory):
    outputs, owners = emit(any_case, ["ansible", "helm"], with_docs=False)
    root = tmp_path_factory.mktemp("es-clients") / "generated"
    writer.apply(writer.plan_write(root, outputs["generated"], owners))
    return any_case, root


def _load(path):
    return yaml.safe_load(path.read_text())


def _search_regions(plan):
    regions = [r for r in plan.regions if r.hosts_in("elasticsearch")]
    assert regions, "the case has no self-managed Elasticsearch"
    return regions


def _clients(root, region) -> dict:
    gv = _load(root / "ansible" / "inventories" / region.name / "group_vars" / "elasticsearch.yml")
    return {c["name"]: c for c in gv["elasticsearch_clients"]}


def _covered(index: str, client: dict) -> bool:
    return any(fnmatch.fnmatchcase(index, p) for i in client["definition"]["indices"] for p in i["names"])


def test_each_client_gets_exactly_its_index_patterns_and_privileges(trees):
    plan, root = trees
    from compiler.ir.data_access import elasticsearch_users
    for region in _search_regions(plan):
        clients = _clients(root, region)
        # the shippers, then the services that use search (their users: test_elasticsearch_service_users.py)
        services = {u.service for u in elasticsearch_users(region.data_access)}
        assert set(clients) == set(region.settings.datastores.elasticsearch.clients) | services
        r = region.name
        patterns = {"fluent-bit": [f"containers-{r}-*", f"node-{r}-*"], "jaeger": [f"jaeger-{r}-*"]}
        for name, c in clients.items():
            if name in services:
                continue
            cluster, indices = PRIVILEGES[name]
            d = c["definition"]
            assert d["cluster"] == cluster, (r, name)
            assert d["indices"] == [{"names": patterns[name], "privileges": indices}], (r, name)
            assert re.fullmatch(r"[0-9a-f]{64}", d["metadata"]["platformc_digest"])
            # each user has its own role, and nothing more
            assert c["role"] == f"platformc_{name.replace('-', '_')}"
        assert len({c["role"] for c in clients.values()}) == len(clients)


def test_client_credentials_are_lookups_of_the_entry_fields(trees):
    plan, root = trees
    for region in _search_regions(plan):
        refs = region.settings.datastores.elasticsearch.clients
        for name, c in _clients(root, region).items():
            if name not in refs:
                continue  # a service's user: its name is no secret (test_elasticsearch_service_users.py)
            path = refs[name].split(":", 1)[1]
            for field in ("username", "password"):
                value = c[field]
                assert value.startswith("{{ lookup(") and value.endswith(" }}"), value
                assert path in value and f"['{field}']" in value, value


def test_shippers_write_only_indices_their_own_role_covers(trees):
    plan, root = trees
    for region in _search_regions(plan):
        clients = _clients(root, region)
        helm = root / "helm" / region.name
        outputs = _load(helm / "fluent-bit.values.yaml")["config"]["outputs"]
        prefixes = re.findall(r"^\s*Logstash_Prefix\s+(\S+)\s*$", outputs, re.M)
        assert len(prefixes) == 2, outputs
        for p in prefixes:
            index = f"{p}-{DAY}"
            assert _covered(index, clients["fluent-bit"]), index
            assert not _covered(index, clients["jaeger"]), index

        if "jaeger" not in clients:
            continue
        jaeger = _load(helm / "jaeger.values.yaml")
        backend = jaeger["userconfig"]["extensions"]["jaeger_storage"]["backends"]["primary_store"]
        prefix = backend["elasticsearch"]["indices"]["index_prefix"]
        cleaner = {e["name"]: e.get("value") for e in jaeger["esIndexCleaner"]["extraEnv"]}
        assert cleaner["INDEX_PREFIX"] == prefix
        for kind in ("span", "service", "dependencies", "sampling"):
            index = f"{prefix}-jaeger-{kind}-{JAEGER_DAY}"
            assert _covered(index, clients["jaeger"]), index
            assert not _covered(index, clients["fluent-bit"]), index


def test_role_puts_roles_and_users_once_on_the_first_node_as_elastic_over_verified_https(trees):
    _, root = trees
    main = _load(root / "ansible" / "roles" / "elasticsearch" / "tasks" / "main.yml")
    assert main[-1]["ansible.builtin.include_tasks"] == "clients.yml"
    assert [t["name"] for t in main].index("Start Elasticsearch at boot") == len(main) - 2
    tasks = _load(root / "ansible" / "roles" / "elasticsearch" / "tasks" / "clients.yml")
    names = [t["name"] for t in tasks]
    flush = names.index("Run the notified handlers before creating the clients' users")
    assert flush == 0
    api = [t for t in tasks if "ansible.builtin.uri" in t]
    assert api and all(names.index(t["name"]) > flush for t in api)
    for t in api:
        args = t["ansible.builtin.uri"]
        assert args["url"].startswith("https://{{ elasticsearch_api_address }}/"), args  # TLS, visibly, in every call
        assert args["ca_path"] == "{{ elasticsearch_ca_file }}"
        assert args["force_basic_auth"] is True
        assert t["run_once"] is True and t["delegate_to"] == "{{ elasticsearch_first_node }}"
        assert t["no_log"] is True
    puts = {t["ansible.builtin.uri"]["url"].split("}}", 1)[1]: t for t in api if t["ansible.builtin.uri"]["method"] == "PUT"}
    assert set(puts) == {"/_security/role/{{ elasticsearch_client.role }}",
                         "/_security/user/{{ elasticsearch_client.username | urlencode }}"}
    for t in puts.values():
        assert t["ansible.builtin.uri"]["url_username"] == "elastic"
        assert t["loop"] == "{{ elasticsearch_clients }}"
        assert any("ansible_check_mode" in w for w in t["when"])
    user = puts["/_security/user/{{ elasticsearch_client.username | urlencode }}"]["ansible.builtin.uri"]["body"]
    assert user == {"password": "{{ elasticsearch_client.password }}", "roles": ["{{ elasticsearch_client.role }}"],
                    "full_name": "{{ elasticsearch_client.name }} (platformc)"}
    defaults = _load(root / "ansible" / "roles" / "elasticsearch" / "defaults" / "main.yml")
    assert defaults["elasticsearch_ca_file"] == "/etc/elasticsearch/certs/ca.crt"
    variables = _load(root / "ansible" / "roles" / "elasticsearch" / "vars" / "main.yml")
    assert variables["elasticsearch_api_address"].startswith("{{ hostvars[elasticsearch_first_node].ansible_host }}:")


# ---------------------------------------------------------------- the tasks for real, against a stand-in security API

# Elasticsearch's security API as far as the tasks use it: basic auth, roles and users kept in memory, every PUT
# logged. Served over HTTPS with a certificate from a throwaway CA, inside a network namespace nothing can leave.
FAKE_ES = r'''
import base64, json, ssl, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit
port, cert, key, log, elastic = sys.argv[1:6]
users = {"elastic": {"password": elastic, "roles": ["superuser"]}}
roles = {}
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def who(self):
        h = self.headers.get("Authorization", "")
        if not h.startswith("Basic "): return None
        name, _, pw = base64.b64decode(h[6:]).decode().partition(":")
        u = users.get(name)
        return name if u and u["password"] == pw else None
    def handle_any(self, method):
        path = urlsplit(self.path).path
        who = self.who()
        if who is None: return self.reply(401, {"error": "unauthenticated"})
        if path == "/_security/_authenticate": return self.reply(200, {"username": who})
        if who != "elastic": return self.reply(403, {"error": "forbidden"})
        if path == "/_cluster/health": return self.reply(200, {"status": "green"})
        kind, _, name = path.removeprefix("/_security/").partition("/")
        name = unquote(name)
        store = {"role": roles, "user": users}.get(kind)
        if store is None: return self.reply(404, {})
        if method == "GET":
            if name not in store: return self.reply(404, {})
            item = dict(store[name]); item.pop("password", None)
            return self.reply(200, {name: item})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        created = name not in store
        store[name] = body
        with open(log, "a") as f: f.write(json.dumps({"kind": kind, "name": name, "body": body}) + "\n")
        return self.reply(200, {kind: {"created": created}} if kind == "role" else {"created": created})
    def do_GET(self): self.handle_any("GET")
    def do_PUT(self): self.handle_any("PUT")
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain(cert, key)
server = ThreadingHTTPServer(("127.0.0.1", int(port)), H)
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
'''


def _throwaway_ca(d):
    openssl = require_tool("openssl")
    run = lambda *a: subprocess.run([openssl, *a], cwd=d, check=True, capture_output=True)  # noqa: E731
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
        "-subj", "/CN=test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost",
        "-addext", "subjectAltName=DNS:localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
        "-copy_extensions", "copy", "-out", "server.crt")


def test_clients_tasks_create_roles_and_users_idempotently_against_the_security_api(trees, tmp_path):
    from tests.targets.test_ansible import ISOLATE, RECAP, _env, _require_isolation
    plan, root = trees
    _require_isolation()
    tool = require_tool("ansible-playbook")
    region = _search_regions(plan)[0]
    _throwaway_ca(tmp_path)
    admin = tmp_path / "admin"
    admin.mkdir(mode=0o700)
    (admin / "elastic").write_text("elastic-secret\n")
    (tmp_path / "fake_es.py").write_text(FAKE_ES)
    log = tmp_path / "puts.jsonl"
    clients = list(_clients(root, region).values())

    def run_vars(name: str, jaeger_password: str):
        cs = [{**c, "username": f"{c['name']}-user",
               "password": jaeger_password if c["name"] == "jaeger" else "fluent-secret"} for c in clients]
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"elasticsearch_clients": cs, "elasticsearch_admin_dir": str(admin),
                                    "elasticsearch_ca_file": str(tmp_path / "ca.crt")}))
        return path

    first, again, rotated = run_vars("first", "jaeger-secret"), run_vars("again", "jaeger-secret"), \
        run_vars("rotated", "jaeger-rotated")
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3"},
        "children": {"elasticsearch": {"hosts": {"es-1": {"ansible_host": "localhost"}}}}}}))
    playbook = tmp_path / "clients.yml"
    playbook.write_text(yaml.safe_dump([{"name": "Clients", "hosts": "elasticsearch", "gather_facts": False,
                                         "tasks": [{"name": "Clients", "ansible.builtin.include_role": {
                                             "name": "elasticsearch", "tasks_from": "clients"}}]}]))
    python = shutil.which("python3")
    play = f"{tool} -i {inventory} {playbook} -e"
    script = (f"{python} {tmp_path}/fake_es.py 9200 {tmp_path}/server.crt {tmp_path}/server.key {log} elastic-secret & "
              "es=$!; sleep 1; rc=0; "
              + "; ".join(f"{play} @{v} || rc=1" for v in (first, again, rotated)) + "; kill $es; exit $rc")
    env = {**_env(home=tmp_path / "home", local_tmp=tmp_path / "tmp"), "ANSIBLE_ROLES_PATH": str(root / "ansible" / "roles")}
    proc = subprocess.run([*ISOLATE, "sh", "-c", script], env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    recaps = [m.groups() for m in RECAP.finditer(out)]
    assert [(r[0], int(r[2]), int(r[4])) for r in recaps] == [("es-1", 2, 0), ("es-1", 0, 0), ("es-1", 1, 0)]  # tasks, not items, out[-5000:]
    puts = [json.loads(line) for line in log.read_text().splitlines()]
    by_client = {c["name"]: c for c in clients}
    assert [(p["kind"], p["name"]) for p in puts] == [
        *[("role", c["role"]) for c in clients], *[("user", f"{c['name']}-user") for c in clients],
        ("user", "jaeger-user")]
    for p in puts[:len(clients)]:
        client = next(c for c in clients if c["role"] == p["name"])
        assert p["body"] == client["definition"]
    for p in puts[len(clients):]:
        name = p["name"].removesuffix("-user")
        assert p["body"]["roles"] == [by_client[name]["role"]]
    assert puts[-1]["body"]["password"] == "jaeger-rotated"
    assert "elastic-secret" not in out and "fluent-secret" not in out and "jaeger-rotated" not in out


def test_no_index_falls_under_elasticsearchs_built_in_data_stream_templates():
    """Elasticsearch 8 ships index templates `logs-*-*`, `metrics-*-*` and `traces-*-*` that turn a matching index
    into a data stream; the shippers write plain indices, so none of their names may match those patterns."""
    import fnmatch

    from compiler.ir.names import elasticsearch_client_indices
    for region in ("us-east-1", "eu-west-2"):
        for patterns in elasticsearch_client_indices(region).values():
            for pattern in patterns:
                index = pattern.replace("*", "2026.12.02")
                assert not any(fnmatch.fnmatch(index, p) for p in ("logs-*-*", "metrics-*-*", "traces-*-*")), index


def test_shippers_trust_the_ca_the_regions_ansible_publishes(trees):
    """The nodes' certificates come from the region's own internal CA (the tls role). Fluent Bit's and Jaeger's
    Secrets take ca.crt from the entry the region's Ansible publishes that CA to (pgbouncer_ca_store), not from the
    client's entry, which nothing writes a CA into and which every region may share (one CA could not verify 12)."""
    plan, root = trees
    for region in _search_regions(plan):
        store = _load(root / "ansible" / "inventories" / region.name / "group_vars" / "pgbouncer.yml")["pgbouncer_ca_store"]
        path = root / "helm" / region.name / "charts" / "platform-secrets" / "templates" / "external-secrets.yaml"
        docs = {d["metadata"]["name"]: d for d in yaml.safe_load_all(path.read_text()) if d}
        for secret in ("elasticsearch-fluent-bit", "elasticsearch-jaeger"):
            if secret not in docs:
                continue
            data = {d["secretKey"]: d["remoteRef"] for d in docs[secret]["spec"]["data"]}
            assert data["ca.crt"] == {"key": store["entry"], "property": store["field"]}, (region.name, secret)
            assert data["username"]["key"] == data["password"]["key"] != store["entry"]


def test_the_ca_is_published_for_the_shippers_even_without_a_datastore_client():
    """The shippers' Secrets read the region's internal CA from the entry its Ansible publishes: published whenever
    something of the region reads it, not only when a service's datastore client does (otherwise no ExternalSecret
    could be filled, and Fluent Bit and Jaeger never started)."""
    import yaml as _yaml
    from compiler.ir.data_access import published_ca_ref, region_ca_ref
    from compiler.pipeline import compile_text
    from compiler.targets.ansible.inventory import internal_ca_store
    from tests.conftest import REPO
    spec = _yaml.safe_load((REPO / "platform.yaml").read_text())
    for svc in spec["settings"]["services"].values():
        svc["uses"] = [u for u in svc.get("uses", []) if u not in ("postgres", "redis", "elasticsearch")]
    plan = compile_text(_yaml.safe_dump(spec, sort_keys=False)).plan
    searched = [r for r in plan.regions if r.hosts_in("elasticsearch")]
    assert searched and not any(a.ca_ref for r in searched for a in r.data_access)
    for r in searched:
        assert published_ca_ref(r) == region_ca_ref(r.settings, r.name)
        assert internal_ca_store(plan, r)["pgbouncer_ca_publish"] is True
