"""No spec makes platformc fail with an internal error (issue #15).

Every spec either compiles and emits (every output parses back in its own format: YAML, JSON, HCL (.tf,
.hcl) with python-hcl2, Jinja templates with jinja2, shell with `bash -n`, PgBouncer's INI and ansible.cfg
with configparser, postgresql.conf, pg_hba.conf and redis.conf line by line against their grammars, so no spec
text can inject a line; every Markdown table row keeps its header's cell count; SQL is not parsed), or is refused with positioned diagnostics (exit 2: `FILE:LINE:COL: path: [CODE]
message`, one line each). Two parts:

- regression cases: each fault found by hand, at the line it must point to;
- a hypothesis fuzz over the spec's structure: valid fixtures mutated (types, bounds, missing and extra keys,
  strings with newlines, quotes, `${`, `%{`), with a fixed budget in the suite (FUZZ_EXAMPLES, default 120,
  well under 60 s) and a longer run from `make fuzz` (FUZZ_EXAMPLES / FUZZ_SECONDS).
"""

from __future__ import annotations

import configparser
import copy
import hashlib
import json
import os
import re
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.emit import emit
from compiler.errors import SpecError
from compiler.pipeline import compile_text

CASES_DIR = Path(__file__).parent / "cases"
BASE = (CASES_DIR / "two-region/platform.yaml").read_text()
SEEDS = {name: yaml.safe_load((CASES_DIR / name / "platform.yaml").read_text())
         for name in ("two-region", "azure-only", "aws-only", "gcp-only")}
CODE = re.compile(r"^[LSR][0-9]{3}$")


def outcome(text: str, file: str = "platform.yaml") -> str:
    """'ok' when the spec compiles and every emitted YAML/JSON file parses; 'refused' with positioned
    diagnostics; anything else (an internal error) propagates and fails the test."""
    try:
        compiled = compile_text(text, file)
    except SpecError as exc:
        lines = text.count("\n") + 1
        assert exc.diagnostics, "a SpecError without diagnostics"
        for d in exc.diagnostics:
            assert CODE.match(d.code), d
            assert 1 <= d.line and 1 <= d.col, d
            if d.file == file:
                assert d.line <= lines, f"{d.format()} points past the end of the file ({lines} lines)"
            assert "\n" not in d.format() and "\r" not in d.format(), f"a diagnostic spans lines: {d.format()!r}"
        return "refused"
    outputs, _ = emit(compiled.plan)
    for root, files in outputs.items():
        for rel, (_, body) in files.items():
            check_format(rel, body)
    return "ok"


# One line of each configuration format platformc writes (comments and blank lines aside): a value carrying a
# line break, a quote that does not close or a stray token would break its line's shape.
CONF_LINES = {
    "pg_hba.conf": re.compile(r"(local|host|hostssl|hostnossl)\s+([a-z_0-9,]+|\"[a-z_][a-z0-9_]*\"(,\"[a-z_][a-z0-9_]*\")*)\s+(all|\"[a-z_][a-z0-9_]*\"(,\"[a-z_][a-z0-9_]*\")*)"
                              r"(\s+[0-9a-f.:]+/[0-9]{1,3})?\s+(peer|scram-sha-256|reject|cert)(\s+[a-z_]+=[a-z0-9_-]+)*"),
    "postgresql.conf": re.compile(r"[a-z_][a-z0-9_.]* = ('([^'\\\n]|'')*'|[A-Za-z0-9_.+-]+)"),
    "redis.conf": re.compile(r"[a-z][a-z0-9-]*( (\"([^\"\\\n]|\\.)*\"|[^\s\"']+))+"),
}
INI_LINE = re.compile(r"\[[A-Za-z0-9_.-]+\]|[A-Za-z0-9_.*-]+ = [^\s].*|[A-Za-z0-9_.-]+ =")
_PARSED: set = set()  # digests of (name, body) already proven: most files are the same for every mutant


def check_format(rel: str, body: str) -> None:
    """AssertionError (or the parser's own error) unless `body` is well-formed in the format `rel` names."""
    name = rel.rsplit("/", 1)[-1]
    if rel.endswith(".json"):
        json.loads(body)
        return
    if rel.endswith((".yaml", ".yml", ".yaml.tmpl", ".yamllint")):
        list(yaml.load_all(body, Loader=yaml.CSafeLoader))
        return
    key = hashlib.sha256(name.encode() + b"\0" + body.encode()).digest()
    if key in _PARSED:
        return
    if rel.endswith((".tf", ".hcl")):
        import hcl2
        hcl2.loads(body)
    elif rel.endswith(".j2"):  # an Ansible template: Jinja's syntax (what it renders is checked where it is used)
        import jinja2
        jinja2.Environment().parse(body)
    elif rel.endswith(".sh"):
        import subprocess
        got = subprocess.run(["bash", "-n"], input=body, capture_output=True, text=True)
        assert got.returncode == 0, f"{rel}: {got.stderr.strip()}"
    elif name in CONF_LINES or rel.endswith((".ini", ".cfg")):
        grammar = CONF_LINES.get(name, INI_LINE)
        comment = ";#" if name.endswith((".ini", ".cfg")) else "#"
        for i, line in enumerate(body.split("\n"), 1):
            text = line.strip()
            if text and text[0] not in comment:
                assert line == line.lstrip(), f"{rel}:{i}: a continuation line: {line!r}"
                assert grammar.fullmatch(line), f"{rel}:{i}: not a {name} line: {line!r}"
        if not name.endswith(".conf"):
            configparser.ConfigParser(interpolation=None, strict=True).read_string(body, rel)
    elif rel.endswith(".md"):
        header = None
        for i, line in enumerate(body.split("\n"), 1):
            if not line.startswith("|"):
                header = None
                continue
            cells = len(re.findall(r"(?<!\\)\|", line))
            if header is None:
                header = cells
            assert cells == header, f"{rel}:{i}: a table row with {cells - 1} cells under a {header - 1}-cell header: {line!r}"
    _PARSED.add(key)


def patched(*pairs) -> str:
    text = BASE
    for old, new in pairs:
        assert text.count(old) == 1, f"patch target {old!r} must occur exactly once"
        text = text.replace(old, new)
    return text


def line_of(text: str, needle: str) -> int:
    assert text.count(needle) == 1, f"anchor {needle!r} must occur exactly once"
    return text[: text.index(needle)].count("\n") + 1


BIG = "1" + "0" * 30
HUGE = "1" + "0" * 400
IT_POOL = "instance_types: {aws: m6i.2xlarge, gcp: n2-standard-8, azure: Standard_D8s_v5}"
IT_PG = "instance_types: {aws: r6i.xlarge, gcp: n2-highmem-4, azure: Standard_E4s_v5}}\n      read_replicas"
IT_REDIS = "instance_types: {aws: r6i.large, gcp: n2-highmem-2, azure: Standard_E2s_v5}"
IT_ES = ("nodes: 3\n      instance: {vcpus: 4, memory_gib: 32, instance_types: {aws: r6i.xlarge, gcp: n2-highmem-4, "
         "azure: Standard_E4s_v5}}")

# (name, patches, code, anchor): the spec that once failed with an internal error (exit 1), the code it now gets
# and the text whose line the diagnostic must point to.
FAULTS = [
    ("int-tag", [("read_replicas: 1", "read_replicas: !!int abc")], "L011", "!!int abc"),
    ("float-tag", [("read_replicas: 1", "read_replicas: !!float ''")], "L011", "!!float ''"),
    ("bool-tag", [("      read_replicas: 1", "      read_replicas: 1\n      multi_az: !!bool maybe")], "L011", "maybe"),
    ("capacity-1e30", [("capacity_franchises: 3000", f"capacity_franchises: {BIG}")], "L013", BIG),
    ("capacity-1e400", [("capacity_franchises: 3000", f"capacity_franchises: {HUGE}")], "L013", HUGE),
    ("memory-1e30", [("redis: {maxmemory_mb: 2048}", f"redis: {{maxmemory_mb: {BIG}}}")], "L013", BIG),
    ("memory-gib-1e30", [("instance: {vcpus: 2, memory_gib: 8,", f"instance: {{vcpus: 2, memory_gib: {BIG},")], "L013", BIG),
    ("memory-gib-bounded", [("instance: {vcpus: 2, memory_gib: 8,", "instance: {vcpus: 2, memory_gib: 9000000,")],
     "S005", "memory_gib: 9000000"),
    ("cost-1e400", [("{compute: ", f"{{compute: {HUGE}, x: ")], "L013", HUGE),
    ("cost-bounded", [("{compute: ", "{compute: 4000000000000, x: ")], "S005", "compute: 4000000000000"),
    ("franchises-1e12", [("capacity_franchises: 3000", "capacity_franchises: 1000000000000"),
                         ("expected_franchises: 1500", "expected_franchises: 1000000000000")], "S005", "sharding: {"),
    ("shards-unbounded", [("franchises_per_shard: 500", "franchises_per_shard: 1"),
                          ("capacity_franchises: 3000", "capacity_franchises: 10000000")], "R021", "sharding: {"),
    ("peak-inf", [("capacity: {requests_per_second: 1000}", "capacity: {requests_per_second: 1000, peak_multiplier: .inf}")],
     "L013", "peak_multiplier: .inf"),
    ("lag-inf", [("read_replicas: 1", "read_replicas: 1\n      max_replication_lag_seconds: .inf")], "L013",
     "max_replication_lag_seconds"),
    ("instance-types-pool", [(IT_POOL, "instance_types: {aws: m6i.2xlarge, azure: Standard_D8s_v5}")], "R048",
     "instance_types: {aws: m6i.2xlarge, azure"),
    ("instance-types-postgres", [(IT_PG, "instance_types: {aws: r6i.xlarge}}\n      read_replicas")], "R048",
     "instance_types: {aws: r6i.xlarge}}\n      read"),
    ("instance-types-redis", [(IT_REDIS, "instance_types: {aws: r6i.large}")], "R048", "instance_types: {aws: r6i.large}"),
    ("instance-types-elasticsearch", [(IT_ES, "nodes: 3\n      instance: {vcpus: 4, memory_gib: 32, instance_types: {aws: r6i.xlarge}}")],
     "R048", "instance_types: {aws: r6i.xlarge}}\n      clients"),
    ("base-60-port", [("      port: 3000", "      port: 1:30")], "L012", "port: 1:30"),
    ("mapping-tag", [("pgbouncer: {max_client_conn", "pgbouncer: !!str {max_client_conn")], "L009", "pgbouncer: !!str"),
    ("control-byte", [("location: Belgium", "location: Bel\x01gium")], "L001", "location: Bel"),
    # wrong output or wrong place
    ("cidr-host-bits", [("cidr: 10.21.0.0/16", "cidr: 10.21.0.1/16")], "S001", "cidr: 10.21.0.1/16"),
    ("markdown-heading", [("display_name: Acme test platform", "display_name: \"Acme\\n# Owned [x](http://evil)\"")],
     "S004", "display_name: \"Acme"),
    ("markdown-location", [("location: Belgium", "location: \"<script>x</script>\"")], "S004", "location: \"<script>"),
    ("zone-empty", [("cidr: 10.21.0.0/16", "cidr: 10.21.0.0/16\n    zones: [\"\", europe-west1-c, europe-west1-d]")],
     "R010", "zones: [\"\""),
    ("zones-6", [("      datastores:\n        redis: {maxmemory_mb: 2048}", "      network: {zones: 6}\n      datastores:\n"
                  "        redis: {maxmemory_mb: 2048}")], "R010", "cloud_region: europe-west1"),
    ("env-is-a-secret", [('secrets: {DB_PASSWORD: "vault:kv/data/acme/orders#db_password"}',
                          'secrets: {DB_PASSWORD: "vault:kv/data/acme/orders#db_password"}\n      env: {DB_PASSWORD: x}')],
     "R049", "env: {DB_PASSWORD: x}"),
    ("instance-type-quote", [(IT_REDIS, 'instance_types: {aws: "r6i.large\\" # ${x}", gcp: n2-highmem-2, azure: Standard_E2s_v5}')],
     "S004", 'instance_types: {aws: "r6i.large'),
    ("geo-rollout-type", [("traffic_share: 40, settings: {", "traffic_share: 40, settings: {services: {orders: {rollout: "
                           "{type: blue-green, stable_weight: 50}}}, ")], "S002", "stable_weight: 50}"),
    ("list-bounded", [("methods: [GET, POST]", "methods: [GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS, GET]")], "S005",
     "methods: [GET, POST, PUT"),
    ("map-bounded", [("tag: 2.3.1", "tag: 2.3.1\n      env: {" + ", ".join(f"V{i}: x" for i in range(501)) + "}")], "S005",
     "env: {V0: x"),
    ("residency-newline", [("traffic_share: 40, settings", "traffic_share: 40, data_residency: [\"eu\\n# x\"], settings")],
     "S004", "data_residency: [\"eu"),
    ("lag-inf-geo", [("traffic_share: 40, settings: {", "traffic_share: 40, settings: {datastores: {postgres: "
                      "{max_replication_lag_seconds: .inf}}, ")], "L013", "max_replication_lag_seconds: .inf"),
]


@pytest.mark.parametrize("name,patches,code,anchor", FAULTS, ids=[f[0] for f in FAULTS])
def test_fault_is_a_positioned_error(name, patches, code, anchor):
    text = patched(*patches)
    assert outcome(text) == "refused"
    with pytest.raises(SpecError) as exc:
        compile_text(text, "platform.yaml")
    hits = [(d.code, d.line) for d in exc.value.diagnostics]
    assert (code, line_of(text, anchor)) in hits, f"expected {code} at line {line_of(text, anchor)}, got {hits}"


AZURE = (CASES_DIR / "azure-only/platform.yaml").read_text()


def test_a_geo_may_change_a_rollout_type():
    """The geo's `rollout: {type: rolling}` replaces the global canary whole: no error at the global layer's line."""
    text = patched(("traffic_share: 40, settings: {", "traffic_share: 40, settings: {services: {orders: {rollout: {type: rolling}}}, "))
    assert outcome(text) == "ok"
    plan = compile_text(text, "platform.yaml").plan
    assert plan.region("euw1").settings.services["orders"].rollout.type == "rolling"
    assert plan.region("use1").settings.services["orders"].rollout.type == "canary"


def test_managed_postgres_on_azure_needs_a_flexible_server_size():
    managed = "extensions: [vector, pg_partman, pg_stat_statements]  # no TimescaleDB on the flexible server for 17 (R020)\n      instance: {vcpus: 4, memory_gib: 32, instance_types: {aws: r6i.xlarge, gcp: n2-highmem-4, azure: Standard_E4s_v5}}"
    assert AZURE.count(managed) == 1  # the fixture's PostgreSQL is managed
    text = AZURE.replace(managed, managed.replace("Standard_E4s_v5", "Standard_F4s_v2"))
    assert outcome(text) == "refused"
    with pytest.raises(SpecError) as exc:
        compile_text(text, "platform.yaml")
    hits = [(d.code, d.line) for d in exc.value.diagnostics]
    assert ("R020", text[: text.index("Standard_F4s_v2")].count("\n") + 1) in hits, hits
    ok = text.replace("Standard_F4s_v2", "Standard_E4ds_v5")
    assert outcome(ok) == "ok"


# ---------------------------------------------------------------------------------------------- the fuzz

ODD_STRINGS = ["", " ", "a\nb", "x\r\ny", "\"quoted\"", "it's", "${var.x}", "%{ if true }x%{ endif }", "{{ x }}",
               "# not a comment", "a: b", "- item", "*alias", "&anchor", "!tag", "`tick`", "| pipe", "<b>html</b>",
               "[link](http://x)", "\\", "café", "²", "\x00", "\x1b[31m", "us-east-1", "aws", "gcp", "azure",
               "10.0.0.1/16", "10.0.0.0/8", "1:30", "null", "yes", "0x10", "1e400", "a" * 300]
ODD_INTS = [0, -1, 1, 2, 3, 5, 7, 16, 100, 1000, 65535, 65536, 2**31, 2**53, 10**9, 10**9 + 1, 10**12]
ODD_FLOATS = [0.0, -0.5, 0.001, 1.5, 99.999, 100.0, 1e9, 1e300]
EXTRA_KEYS = ["prot", "zones", "extra", "settings", "${x}", "a\nb", "enabled", "instance_types", "aws"]

scalars = st.one_of(
    st.sampled_from(ODD_STRINGS),
    st.text(alphabet=st.sampled_from(list("az09-_./: \n\t\"'${}%#|*&!<>[],`\\é²")), max_size=24),
    st.sampled_from(ODD_INTS), st.integers(-(10**6), 10**7),
    st.sampled_from(ODD_FLOATS), st.booleans(), st.none(),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3),
                   st.dictionaries(st.sampled_from(EXTRA_KEYS + ["aws", "gcp", "min", "max"]), scalars, max_size=3))


def _paths(node, path=()):
    out = [path]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, path + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, path + (i,))
    return out


def _get(node, path):
    for p in path:
        node = node[p]
    return node


def _near(value, draw):
    """A value of the same kind as `value`, near its edges (keeps more mutants past the schema)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return draw(st.sampled_from([0, -value, value - 1, value + 1, value * 10, value * 1000, value // 2]))
    if isinstance(value, float):
        return draw(st.sampled_from([0.0, value * 2, value / 3, value + 0.5, -value]))
    if isinstance(value, str):
        return value + draw(st.sampled_from(ODD_STRINGS[:20]))
    if isinstance(value, list):
        return value + value[:1] if value else value
    return value


@st.composite
def mutants(draw):
    seed = draw(st.sampled_from(sorted(SEEDS)))
    data = copy.deepcopy(SEEDS[seed])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        path = draw(st.sampled_from(paths[1:]))
        parent, key = _get(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(["near", "near", "replace", "delete", "add-key", "duplicate"]))
        if op == "near":
            parent[key] = _near(parent[key], draw)
        elif op == "replace":
            parent[key] = draw(values)
        elif op == "delete":
            del parent[key]
        elif op == "add-key" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(EXTRA_KEYS))] = draw(values)
        elif op == "duplicate" and isinstance(parent, dict) and isinstance(parent[key], dict):
            parent[draw(st.sampled_from(["copy", "x-" + str(key)[:30], str(key).upper()]))] = copy.deepcopy(parent[key])
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=10_000)


FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "120"))


@settings(max_examples=FUZZ_EXAMPLES, deadline=timedelta(seconds=20), derandomize=os.environ.get("FUZZ_RANDOM") != "1",
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
          database=None)
@given(mutants())
def test_fuzz_every_spec_compiles_or_is_refused_with_positions(text):
    outcome(text)


@pytest.mark.parametrize("rel,body", [
    ("terraform/regions/x/main.tf", 'locals {\n  name = "a"\nb"\n}\n'),
    ("terraform/regions/x/main.tf", 'locals {\n  name = "${x"\n'),
    ("datastores/x/pgbouncer.ini", "[pgbouncer]\nauth_user = pgbouncer\ninjected\n"),
    ("datastores/x/pgbouncer.ini", "[pgbouncer]\nauth_user = pgbouncer\n  continued\n"),
    ("datastores/x/pgbouncer.ini", "[pgbouncer]\nauth_user = a\nauth_user = b\n"),
    ("ansible/ansible.cfg", "[defaults]\nforks = 25\n[defaults]\n"),
    ("datastores/x/postgresql.conf", "cluster_name = '15/main\nport = 5432\n"),
    ("datastores/x/postgresql.conf", "cluster_name = 'a' b'\n"),
    ("datastores/x/pg_hba.conf", "hostssl all all 10.0.0.0/8 scram-sha-256\nevil line\n"),
    ("datastores/x/redis.conf", 'maxmemory-policy "allkeys-lru\n'),
    ("datastores/x/redis.conf", "port 6379\nrequirepass\n"),
    ("overview.md", "| a | b |\n|---|---|\n| x | y | z |\n"),
    ("terraform/regions/x/vault/external-secrets.hcl", 'path "a" {\n  capabilities = ["read"\n}\n'),
    ("ansible/roles/x/templates/a.conf.j2", "x = {{ value\n"),
    ("terraform/regions/x/vault/configure.sh", "echo 'unterminated\n"),
    ("kubernetes/x/binding.yaml.tmpl", "a: [b\n"),
])
def test_the_oracle_refuses_a_broken_line(rel, body):
    """Each format check fails on an injected line break, an open quote or a stray cell."""
    with pytest.raises(Exception):
        check_format(rel, body)


def test_the_oracle_accepts_well_formed_lines():
    check_format("overview.md", "| a | b |\n|---|---|\n| x \\| y | z |\n")
    check_format("datastores/x/redis.conf", '# c\nsave 900 1\nbind 127.0.0.1 -::1\nx "a b"\n')
    check_format("datastores/x/postgresql.conf", "log_line_prefix = '%m [%p] it''s'\nport = 5432\n")
    check_format("terraform/regions/x/main.tf", 'locals {\n  name = "a\\nb"\n}\n')


def test_the_fuzz_seeds_compile():
    for name, data in SEEDS.items():
        assert outcome(yaml.safe_dump(data, sort_keys=False)) == "ok", name


# ------------------------------------------------------------------------------------ the franchise registry

def _registry_spec(tmp_path, rows: str) -> Path:
    spec = tmp_path / "platform.yaml"
    spec.write_text(BASE.replace("capacity_franchises: 3000}", "capacity_franchises: 3000, registry_file: reg.csv}"))
    (tmp_path / "reg.csv").write_text("franchise_id,home_region,jurisdiction\n" + rows)
    return spec


def test_registry_superscript_id_is_a_positioned_error(tmp_path):
    from compiler.pipeline import compile_file
    spec = _registry_spec(tmp_path, "1,use1,us\n²,use1,us\n")
    with pytest.raises(SpecError) as exc:
        compile_file(str(spec))
    (d,) = exc.value.diagnostics
    assert (d.code, d.line, d.col) == ("R022", 3, 1) and "'²'" in d.message


def test_registry_rows_after_a_multi_line_field_keep_their_line(tmp_path):
    from compiler.pipeline import compile_file
    spec = _registry_spec(tmp_path, '1,use1,"us\nsecond line"\n2,use1,us\n3,nowhere,us\n')
    with pytest.raises(SpecError) as exc:
        compile_file(str(spec))
    (d,) = exc.value.diagnostics
    assert (d.line, d.col) == (5, 3) and "nowhere" in d.message  # line 5 of the file, not row 4


# ------------------------------------------------------------------------------------ bounded numbers

def test_every_number_in_the_schema_has_a_documented_maximum():
    from compiler.docs import _models_below
    from compiler.model import Platform, RegionSettings
    from compiler.model.base import _unwrap, _upper
    models = _models_below(Platform) + _models_below(RegionSettings)
    unbounded = []
    for m in models:
        for name, f in m.model_fields.items():
            core, meta = _unwrap(f.annotation)
            if core in (int, float):
                bound = _upper(meta + list(f.metadata))
                if bound is None or f"Maximum: {bound:,}." not in (f.description or ""):
                    unbounded.append(f"{m.__name__}.{name}")
    assert not unbounded, unbounded


def test_every_list_and_map_in_the_schema_has_a_documented_maximum():
    """No count is unbounded: every list and map field has a maximum number of entries, stated in its description
    (base.ITEM_MAXIMA, else base.MAX_ITEMS), and the JSON Schema says it too (maxItems / maxProperties)."""
    import typing
    from compiler.docs import _models_below
    from compiler.model import Platform, RegionSettings
    from compiler.model.base import _most_items, _unwrap
    from compiler.schema import schema_text
    models = _models_below(Platform) + _models_below(RegionSettings)
    unbounded = []
    for m in models:
        for name, f in m.model_fields.items():
            core, meta = _unwrap(f.annotation)
            if typing.get_origin(core) in (list, dict):
                bound = _most_items(meta + list(f.metadata))
                if bound is None or not re.search(rf"At most {bound:,} (items|entries)\.", f.description or ""):
                    unbounded.append(f"{m.__name__}.{name}")
    assert not unbounded, unbounded
    schema = json.loads(schema_text())

    def collections(node):
        if isinstance(node, dict):
            if node.get("type") == "array" or (node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict)
                                                 and not node.get("x-settings-override")):
                yield node
            for v in node.values():
                yield from collections(v)
        elif isinstance(node, list):
            for v in node:
                yield from collections(v)

    found = list(collections(schema))
    assert found and all("maxItems" in n or "maxProperties" in n for n in found), \
        [n for n in found if "maxItems" not in n and "maxProperties" not in n][:3]


def _strings(annotation, where, extra=()):
    """(where, constraints) of every str a field's type holds: the field itself, list items, map keys and values."""
    import typing
    from compiler.model.base import _unwrap
    core, meta = _unwrap(annotation)
    meta = meta + list(extra)
    if core is str:
        yield where, meta
    elif typing.get_origin(core) is list:
        yield from _strings(typing.get_args(core)[0], where + "[]")
    elif typing.get_origin(core) is dict:
        key, value = typing.get_args(core)
        yield from _strings(key, where + "{key}")
        yield from _strings(value, where + "{value}")


def test_every_string_in_the_schema_is_bounded():
    """Every string the spec takes has a pattern or a maximum length (the override layers' keys aside: they are
    checked against RegionSettings after the merge); one-line free text that reaches the docs is `Text`, whose
    pattern refuses line breaks and Markdown's markup characters."""
    from compiler.docs import _models_below
    from compiler.model import Platform, RegionSettings
    from compiler.model.base import Text, _unwrap
    models = _models_below(Platform) + _models_below(RegionSettings)
    loose = []
    for m in models:
        for name, f in m.model_fields.items():
            for where, meta in _strings(f.annotation, f"{m.__name__}.{name}", f.metadata):
                if where in ("Geo.settings{key}", "Region.settings{key}"):
                    continue
                if not any(getattr(c, "pattern", None) or getattr(c, "max_length", None) for c in meta):
                    loose.append(where)
    assert not loose, loose
    text_pattern = _unwrap(Text)[1][0].pattern
    for model, field in (("Organization", "display_name"), ("Geo", "display_name"), ("Region", "location"),
                         ("Tier", "description"), ("Service", "description")):
        m = next(x for x in models if x.__name__ == model)
        f = m.model_fields[field]
        assert any(getattr(c, "pattern", None) == text_pattern for c in _unwrap(f.annotation)[1] + list(f.metadata)), (model, field)


def test_derived_zones_are_zones_that_exist():
    """europe-west1 has no zone a and ca-central-1 no zone c: derived names follow the region's real zones."""
    plan = compile_text(BASE, "platform.yaml").plan
    assert [z.name for z in plan.region("euw1").zones] == ["europe-west1-b", "europe-west1-c", "europe-west1-d"]
    text = patched(("      datastores:\n        redis: {maxmemory_mb: 2048}",
                    "      network: {zones: 4}\n      datastores:\n        redis: {maxmemory_mb: 2048}"))
    with pytest.raises(SpecError) as exc:
        compile_text(text, "platform.yaml")
    assert any(d.code == "R010" and "has 3 availability zones" in d.message for d in exc.value.diagnostics)
