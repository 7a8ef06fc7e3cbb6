"""DR serving (`disaster_recovery.failed_over`, compiler/ir/dr_serving.py): a region declared lost has its franchises
served by its DR partner, in every artefact that routes a franchise or a shard, and in none without the override.

The reference fails eu-west-1 over to eu-central-1 (CloudFront edge); gcp-only fails euw1 over to usc1 (Cloud CDN)."""

from __future__ import annotations

import re

import pytest
import yaml

from compiler.emit import emit
from compiler.errors import SpecError
from compiler.pipeline import compile_text
from tests.conftest import REPO

REF = (REPO / "platform.yaml").read_text()
GCP = (REPO / "tests/cases/gcp-only/platform.yaml").read_text()
LOST, PARTNER = "eu-west-1", "eu-central-1"


def failed_over(text: str, regions: str) -> str:
    """The spec with `disaster_recovery.failed_over: <regions>` (added to the section, or as the section)."""
    if "\ndisaster_recovery:\n" in text:
        return text.replace("\ndisaster_recovery:\n", f"\ndisaster_recovery:\n  failed_over: {regions}\n", 1)
    return text + f"disaster_recovery:\n  failed_over: {regions}\n"


@pytest.fixture(scope="module")
def dr_plan():
    return compile_text(failed_over(REF, f"[{LOST}]"), "platform.yaml").plan


@pytest.fixture(scope="module")
def dr_files(dr_plan):
    return _contents(emit(dr_plan, with_docs=False)[0]["generated"])


@pytest.fixture(scope="module")
def ref_files(reference):
    return _contents(emit(reference, with_docs=False)[0]["generated"])


def _contents(files: dict) -> dict[str, str]:
    """path -> text (emit's values are (owner, text))."""
    return {p: v[1] if isinstance(v, tuple) else v for p, v in files.items()}


def _lost_shards(plan):
    return [s for s in plan.shards if s.region == LOST]


def _lost_ids(plan):
    return [i for s in _lost_shards(plan) for i in (s.first_id, (s.first_id + s.last_id) // 2, s.last_id)]


def test_resolve_computes_the_serving_region_once(dr_plan, reference):
    assert dict(dr_plan.serving) == {LOST: PARTNER}
    assert dr_plan.serving_region(LOST) == PARTNER and dr_plan.serving_region("us-east-1") == "us-east-1"
    assert dict(reference.serving) == {}
    partner = dr_plan.region(PARTNER)
    assert [s.number for s in partner.served_shards] == [s.number for s in _lost_shards(dr_plan)]
    assert not reference.region(PARTNER).served_shards and not reference.region(PARTNER).promoted_pools


def test_the_routing_table_sends_the_lost_regions_shards_to_the_partners_pgbouncer(dr_plan, dr_files, ref_files):
    partner = dr_plan.region(PARTNER)
    want = (f"pgbouncer.{partner.internal_domain}", partner.settings.datastores.pgbouncer.port)
    sql = dr_files["datastores/shards.sql"]
    for s in _lost_shards(dr_plan):
        assert f"({s.number}, '{want[0]}', {want[1]}," in sql
    assert f"pgbouncer.{LOST}." not in sql
    assert f"pgbouncer.{LOST}." in ref_files["datastores/shards.sql"]


def _lua_map(text: str) -> dict[str, list]:
    """FIRST, LAST and HOME of the Kong map module (a ConfigMap holding the Lua file)."""
    lua = yaml.safe_load(text)["data"]["home_routing.lua"]
    out = {}
    for name in ("FIRST", "LAST", "HOME"):
        body = re.search(rf"local {name} = {{(.*?)}}", lua).group(1)
        out[name] = [x.strip().strip('"') for x in body.split(",")]
    return out


def _home_of(m: dict, fid: int) -> str:
    return next(h for a, b, h in zip(m["FIRST"], m["LAST"], m["HOME"]) if int(a) <= fid <= int(b))


def test_kong_map_and_upstreams_send_the_lost_regions_franchises_to_the_partner(dr_plan, dr_files, ref_files):
    path = "helm/global/charts/kong-home-routing/templates/configmap.yaml"
    dr_map, ref_map = _lua_map(dr_files[path]), _lua_map(ref_files[path])
    for fid in _lost_ids(dr_plan):
        assert _home_of(ref_map, fid) == LOST and _home_of(dr_map, fid) == PARTNER, fid
    assert LOST not in dr_map["HOME"]
    # no Kong forwards to the lost region any more: its upstreams are gone, the others' stay
    for region in ("us-east-1", PARTNER):
        dr_kong, ref_kong = (yaml.safe_load(f[f"kong/{region}/kong.yaml"]) for f in (dr_files, ref_files))
        names = lambda doc: {u["name"] for u in doc["upstreams"]}  # noqa: E731
        assert {n for n in names(ref_kong) if n.startswith(f"home-{LOST}-")}
        assert not {n for n in names(dr_kong) if n.startswith(f"home-{LOST}-")}
        assert names(ref_kong) - names(dr_kong) == {n for n in names(ref_kong) if n.startswith(f"home-{LOST}-")}


def test_the_cloudfront_function_selects_the_partners_origin(dr_plan, dr_files):
    cdn = dr_files["terraform/global/cdn.tf"]
    first = [int(x) for x in re.search(r"var FIRST = \[([^\]]*)\]", cdn).group(1).split(",")]
    last = [int(x) for x in re.search(r"var LAST = \[([^\]]*)\]", cdn).group(1).split(",")]
    home = [int(x) for x in re.search(r"var HOME = \[([^\]]*)\]", cdn).group(1).split(",")]
    names = dr_plan.region_names
    for fid in _lost_ids(dr_plan):
        i = next(i for i, (a, b) in enumerate(zip(first, last)) if a <= fid <= b)
        assert names[home[i]] == PARTNER, fid
    assert names.index(LOST) not in home


def test_the_cloud_cdn_url_map_sends_the_lost_regions_franchises_to_the_partner():
    plan = compile_text(failed_over(GCP, "[euw1]"), "platform.yaml").plan
    files = _contents(emit(plan, ["terraform"], with_docs=False)[0]["generated"])
    cdn = files["terraform/global/cdn.tf"]
    lost = [s for s in plan.shards if s.region == "euw1"]
    rules = re.findall(r'service  = google_compute_backend_service\.home\[local\.serving\["([a-z0-9-]+)"\]\]\.id\s+'
                       r'match_rules \{.*?range_start = (\d+)\s+range_end   = (\d+)', cdn, re.S)
    assert rules
    for s in lost:
        (home,) = [h for h, a, b in rules if int(a) <= s.first_id < int(b)]
        assert home == "usc1"
    assert not [h for h, _a, _b in rules if h == "euw1"]


def test_the_partners_services_and_pgbouncer_serve_the_lost_shards_from_the_promoted_cluster(dr_plan, dr_files,
                                                                                            ref_files):
    partner = dr_plan.region(PARTNER)
    sb = next(x for x in partner.postgres_ha.standbys if x.of_region == LOST)
    leader = next(h.fqdn for h in partner.hosts if h.name == sb.hosts[0])
    lost = [s.database for s in _lost_shards(dr_plan)]
    # the ConfigMaps the partner's services read list the lost region's shard databases after their own
    for a in partner.data_access:
        if a.db_role:
            docs = list(yaml.safe_load_all(dr_files[f"kubernetes/{PARTNER}/{a.service}.yaml"]))
            cm = next(d for d in docs if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == a.name)
            assert cm["data"]["PG_SHARD_DATABASES"].split(",") == [s.database for s in partner.shards] + lost
    ini = dr_files[f"datastores/{PARTNER}/pgbouncer.ini"]
    lines = dict(re.findall(r"^(franchise_shard_\d+(?:_ro)?) = (.*)$", ini, re.M))
    from compiler.resolve import promoted_budget
    budget = promoted_budget(dr_plan.region(LOST), partner)
    for db in lost:
        for name in (db, db + "_ro"):
            assert lines[name] == (f"host={leader} port={sb.port} dbname={db} pool_size={budget.default_pool_size} "
                                   f"max_db_connections={budget.default_pool_size + budget.reserve_pool_size}")
    # what the runbook's step 4 used to ask for by hand, and the wiring already opens: the same hosts and port
    conn = next(c for c in partner.wiring if c.dest.name == f"standby-{LOST}" and c.source.host_group == "pgbouncer")
    assert leader in conn.address.split(",") and conn.port == sb.port
    # the promoted copy's routing table: a psql script for each of its shard databases
    psql = dr_files[f"datastores/{PARTNER}/dr-{LOST}/routing.psql"]
    assert re.findall(r"^\\connect (\S+)$", psql, re.M) == lost
    assert f"dr-{LOST}/routing.psql" not in " ".join(ref_files)


def test_without_the_override_nothing_routes_differently(dr_files, ref_files):
    """Only the files that route a franchise or a shard change (and Kong's way out to the lost region closes); the
    lost region's own files do not."""
    changed = {p for p in ref_files if ref_files[p] != dr_files.get(p)} | (set(dr_files) - set(ref_files))
    allowed = re.compile(rf"^(datastores/shards\.sql|datastores/{PARTNER}/(pgbouncer\.ini|dr-{LOST}/routing\.psql)"
                         rf"|helm/global/charts/kong-home-routing/templates/configmap\.yaml|kong/[a-z0-9-]+/kong\.yaml"
                         rf"|kubernetes/{PARTNER}/[a-z]+\.yaml|terraform/global/cdn\.tf"
                         # the lost region out of the edge's weighted origin (weight 0), and the partner's inventory
                         # naming the promoted copy's routing script (its postgresql play applies it)
                         rf"|terraform/global/main\.tf|ansible/inventories/{PARTNER}/group_vars/postgres\.yml"
                         # Kong no longer forwards to the lost region: the wiring and Kong's NetworkPolicy drop it
                         rf"|connections/[a-z0-9-]+\.json|kubernetes/[a-z0-9-]+/kong-gateway\.yaml)$")
    assert changed and all(allowed.match(p) for p in changed), sorted(p for p in changed if not allowed.match(p))
    # of the lost region's own files only its kong.yaml, which carries the (shared) map's version, and its wiring's
    # record (the edge no longer sends anything to its home origin)
    assert sorted(p for p in changed if LOST in p.replace(f"dr-{LOST}", "")) == [f"connections/{LOST}.json",
                                                                               f"kong/{LOST}/kong.yaml"]


def _diagnostics(text: str) -> list[str]:
    return [d.format() for d in pytest.raises(SpecError, compile_text, text, "platform.yaml").value.diagnostics]


def _line_of(text: str, needle: str) -> int:
    return text.splitlines().index(needle) + 1


def test_r069_a_failed_over_regions_partner_is_not_failed_over():
    text = failed_over(REF, f"[{LOST}, {PARTNER}]")
    line = _line_of(text, f"  failed_over: [{LOST}, {PARTNER}]")
    got = _diagnostics(text)
    assert len(got) == 2 and all("[R069]" in d for d in got), got
    assert got[0].startswith(f"platform.yaml:{line}:17: disaster_recovery.failed_over[0]: [R069] {LOST} is failed over "
                             f"to its DR partner {PARTNER}, which is failed over itself")
    assert got[1].startswith(f"platform.yaml:{line}:28: disaster_recovery.failed_over[1]: [R069]")


def test_r070_a_failed_over_region_needs_a_standby_in_its_partner():
    text = failed_over(REF, "[nowhere]")
    (got,) = _diagnostics(text)
    assert "disaster_recovery.failed_over[0]: [R070] 'nowhere' is not a declared region" in got
    no_standby = REF.replace("      cross_region_standby: true", "      cross_region_standby: false", 1)
    assert no_standby != REF
    text = failed_over(no_standby, f"[{LOST}]")
    line = _line_of(text, f"  failed_over: [{LOST}]")
    (got,) = _diagnostics(text)
    assert got.startswith(f"platform.yaml:{line}:17: disaster_recovery.failed_over[0]: [R070] {LOST}'s DR partner "
                          f"{PARTNER} runs no standby cluster of it"), got
    (got,) = _diagnostics(failed_over(REF, f"[{LOST}, {LOST}]"))
    assert "failed_over[1]: [R070] eu-west-1 is listed twice" in got


def test_unknown_keys_are_refused_and_the_field_is_described():
    from compiler.model.platform import DisasterRecovery
    field = DisasterRecovery.model_fields["failed_over"]
    assert field.description and "R069" in field.description and "R070" in field.description
    with pytest.raises(SpecError):
        compile_text(REF.replace("\ndisaster_recovery:\n", "\ndisaster_recovery:\n  failed_ovr: [eu-west-1]\n"))


def test_the_runbooks_step_4_gives_the_lines_the_override_writes(dr_plan, dr_files):
    """Step 4 on the lost region's page shows exactly the [databases] lines the override puts in the partner's
    pgbouncer.ini, and names the override, the fail-back and the promoted copy's routing script."""
    from compiler.targets import ansible
    text = ansible.docs_region(dr_plan, dr_plan.region(LOST))
    step4 = text.split("4. Serve this region's franchises from", 1)[1].split("\n5. ", 1)[0]
    block = step4.split("```ini\n", 1)[1].split("```", 1)[0]
    shown = [line.strip() for line in block.strip().splitlines()]
    ini = dr_files[f"datastores/{PARTNER}/pgbouncer.ini"]
    written = [line for line in ini.splitlines() if re.match(r"franchise_shard_\d+(_ro)? = host=\S+ port=5433 ", line)]
    assert shown == written and shown
    assert f"add `{LOST}` to `disaster_recovery.failed_over`" in step4 and "make generate" in step4
    assert f"generated/datastores/{PARTNER}/dr-{LOST}/routing.psql" in step4
    fail_back = text.split("\n5. ", 1)[1]
    assert f"remove it from\n   `disaster_recovery.failed_over`" in fail_back


def test_the_partners_pgbouncer_has_open_files_for_the_promoted_pools(dr_plan, reference):
    """LimitNOFILE counts the promoted lines' server connections on top of the partner's own pools."""
    from compiler.ir.names import PGBOUNCER_NOFILE_MARGIN
    partner, before = dr_plan.region(PARTNER), reference.region(PARTNER)
    c = partner.connections
    need = (c.max_client_conn + 2 * c.databases * (c.default_pool_size + c.reserve_pool_size) + PGBOUNCER_NOFILE_MARGIN
            + sum(p.max_db_connections for p in partner.promoted_pools))
    assert partner.promoted_pools and need - 1024 < c.pgbouncer_nofile >= need and c.pgbouncer_nofile % 1024 == 0
    assert c == type(c)(**{**before.connections.__dict__, "pgbouncer_nofile": c.pgbouncer_nofile})


@pytest.mark.parametrize("case, text, lost", [("reference", REF, LOST), ("gcp-only", GCP, "euw1"),
                                              ("azure-only", "AZURE", "weu")])
def test_verify_proves_every_connection_of_the_override_tree(case, text, lost, tmp_path):
    """`platformc verify` on a tree generated with the override: 0 broken (the edge's home origin of the lost region,
    Kong's forwarding to it and the partner's PgBouncer lines all agree with the wiring)."""
    from click.testing import CliRunner

    from compiler.cli import cli
    from compiler.verify import verify
    spec = tmp_path / "platform.yaml"
    spec.write_text(failed_over(azure_self_managed() if text == "AZURE" else text, f"[{lost}]"))
    gen = tmp_path / "generated"
    result = CliRunner().invoke(cli, ["generate", "--spec", str(spec), "--out", str(gen),
                                      "--docs-out", str(tmp_path / "docs")])
    assert result.exit_code == 0, result.output
    report = verify(gen)
    assert not report.broken, "\n".join(b.format() for b in report.broken)
    assert report.connections > 0


# ---------------------------------------------------------------- the edge: the lost region out of the weighted origin

AZURE = (REPO / "tests/cases/azure-only/platform.yaml").read_text()


def azure_self_managed(text: str = AZURE) -> str:
    """azure-only with self-managed PostgreSQL and standby clusters (its managed servers have no promoted copy: R070)."""
    out = text.replace("    postgres:\n      deployment: managed\n",
                       "    postgres:\n      deployment: self-managed\n      cross_region_standby: true\n", 1)
    assert out != text
    return out


EDGE_CASES = {"cloudfront": (REF, LOST), "cloud_cdn": (GCP, "euw1"), "front_door": (azure_self_managed(), "weu")}


@pytest.fixture(scope="module")
def edge_roots(tmp_path_factory):
    """edge kind -> (plan, the global root written with the lost region failed over, the same without)."""
    from compiler.targets import terraform
    out = {}
    for kind, (text, lost) in EDGE_CASES.items():
        roots = []
        for spec in (failed_over(text, f"[{lost}]"), text):
            plan = compile_text(spec, "platform.yaml").plan
            root = tmp_path_factory.mktemp(f"global-{kind}")
            for rel, body in terraform.emit_global(plan).items():
                path = root / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(body)
            roots.append((plan, root / "terraform/global"))
        out[kind] = (roots[0][0], roots[0][1], roots[1][1])
    return out


def _locals(root) -> dict:
    hcl2 = pytest.importorskip("hcl2")
    with (root / "main.tf").open() as f:
        return {k: v for entry in hcl2.load(f)["locals"] for k, v in entry.items()}


@pytest.mark.parametrize("kind", list(EDGE_CASES))
def test_the_global_root_keeps_the_lost_region_out_of_the_weighted_origin(kind, edge_roots):
    """What the runbook's step 2 does by hand, the override does in the global root: Route 53's and Cloud DNS's
    weighted records give the lost region weight 0; Front Door's weighted origin group disables its origin (weights are
    1 to 1000). Every other region keeps its weight, and without the override the lost region has its own."""
    plan, dr_root, ref_root = edge_roots[kind]
    _text, lost = EDGE_CASES[kind]
    assert plan.serving_region(lost) != lost
    dr, ref = _locals(dr_root)["regions"], _locals(ref_root)["regions"]
    assert set(dr) == set(ref) and ref[lost]["weight"] >= 1
    assert {n: r["weight"] for n, r in dr.items() if n != lost} == {n: r["weight"] for n, r in ref.items() if n != lost}
    cdn = (dr_root / "cdn.tf").read_text()
    if kind == "front_door":
        assert dr[lost]["weight"] == ref[lost]["weight"]
        assert _locals(dr_root)["failed_over"] == [f'"{lost}"'] and "failed_over" not in _locals(ref_root)
        origin = re.search(r'resource "azurerm_cdn_frontdoor_origin" "region" \{.*?\n\}', cdn, re.S).group(0)
        assert re.search(r"^\s+enabled\s+= !contains\(local\.failed_over, each\.key\)$", origin, re.M), origin
        assert re.search(r"^\s+enabled\s+= true$", (ref_root / "cdn.tf").read_text(), re.M)
    else:
        assert dr[lost]["weight"] == 0
        dns = (dr_root / "dns.tf").read_text()
        # the records follow local.regions' weight: Route 53's weighted_routing_policy, Cloud DNS's wrr items
        assert re.search(r"weight = (each|wrr)\.value\.weight", dns), dns
    if kind != "cloudfront":  # no home rule names the lost region (the map names its partner): nothing selects it
        assert f'local.serving["{lost}"]' not in cdn and f'local.serving["{lost}"]' in (ref_root / "cdn.tf").read_text()


@pytest.mark.tool
@pytest.mark.parametrize("kind", list(EDGE_CASES))
def test_the_override_global_root_passes_terraform_fmt_and_the_provider_schemas(kind, edge_roots, tmp_path):
    import subprocess
    import sys

    from tests.conftest import require_shared
    from tests.targets.test_terraform import tf
    _plan, root, _ref = edge_roots[kind]
    (tmp_path / "empty.tfrc").write_text("")
    r = tf(["fmt", "-check", "-recursive", "-diff", "-no-color", str(root)], {"TF_CLI_CONFIG_FILE": str(tmp_path / "empty.tfrc")})
    assert r.returncode == 0 and r.stdout.strip() == "", f"terraform fmt -check (exit {r.returncode}):\n{r.stdout}{r.stderr}"
    checker = require_shared("validation/lib/tf_schema_check.py")
    schemas = require_shared("reference/terraform")
    r = subprocess.run([sys.executable, str(checker), "--schemas", str(schemas), str(root)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip().endswith(" 0 findings"), r.stdout[-4000:] + r.stderr


# ---------------------------------------------------------------- Ansible applies the promoted copy's routing script

def test_only_the_partners_inventory_names_the_promoted_copys_routing_script(dr_plan, dr_files, ref_files):
    """The postgresql role's leader tasks include tasks/promoted.yml once per entry of postgresql_promoted_routing,
    which only the partner's postgres group_vars set, and only with the override."""
    partner = dr_plan.region(PARTNER)
    sb = next(x for x in partner.postgres_ha.standbys if x.of_region == LOST)
    for files, want in ((dr_files, {PARTNER}), (ref_files, set())):
        having = {r.name for r in dr_plan.regions if "postgresql_promoted_routing" in
                  (yaml.safe_load(files.get(f"ansible/inventories/{r.name}/group_vars/postgres.yml", "{}")) or {})}
        assert having == want
    gv = yaml.safe_load(dr_files[f"ansible/inventories/{PARTNER}/group_vars/postgres.yml"])
    assert gv["postgresql_promoted_routing"] == [{"region": LOST, "file": f"dr-{LOST}/routing.psql",
                                                  "hosts": list(sb.hosts), "port": sb.port, "rest_port": sb.rest_port}]
    assert f"datastores/{PARTNER}/dr-{LOST}/routing.psql" in dr_files  # the file the entry names, beside pgbouncer.ini
    leader = yaml.safe_load(dr_files["ansible/roles/postgresql/tasks/leader.yml"])
    (include,) = [t for t in leader if "ansible.builtin.include_tasks" in t]
    assert leader[-1] is include and include["ansible.builtin.include_tasks"] == "promoted.yml"
    assert include["loop"] == "{{ postgresql_promoted_routing | default([]) }}"
    assert include["loop_control"]["loop_var"] == "postgresql_promoted"
    tasks = yaml.safe_load(dr_files["ansible/roles/postgresql/tasks/promoted.yml"])
    apply = tasks[-1]
    assert apply["ansible.builtin.command"]["stdin"].startswith("\\i '{{ postgresql_promoted_staged }}'\n")
    assert apply["when"][-1] == "postgresql_promoted_recorded != postgresql_promoted_fingerprint"
    assert "'dr-routing'" in include["vars"]["postgresql_promoted_record_sql"]
    # the role files are the same for every platform: the override only sets the inventory variable
    for path in ("ansible/roles/postgresql/tasks/leader.yml", "ansible/roles/postgresql/tasks/promoted.yml"):
        assert dr_files[path] == ref_files[path]


@pytest.mark.tool
def test_the_override_tree_passes_ansibles_syntax_check_and_lint(tmp_path):
    import os
    import subprocess

    from compiler import writer
    from tests.conftest import VENV_BIN, require_tool
    plan = compile_text(failed_over(REF, f"[{LOST}]"), "platform.yaml").plan
    outputs, owners = emit(plan, ["ansible", "datastores"], with_docs=False)
    writer.apply(writer.plan_write(tmp_path / "generated", outputs["generated"], owners))
    root = tmp_path / "generated/ansible"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(PATH=f"{VENV_BIN}:{env.get('PATH', '')}", ANSIBLE_NOCOLOR="1", ANSIBLE_HOME=str(tmp_path / "home"),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_INVENTORY_UNPARSED_FAILED="true",
               ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="true")
    proc = subprocess.run([require_tool("ansible-playbook"), "--syntax-check", "-i", f"inventories/{PARTNER}",
                           "site.yml", "postgresql.yml"], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {k: v for k, v in env.items() if "INVENTORY" not in k}
    proc = subprocess.run([require_tool("ansible-lint"), "--offline", "--profile", "production", "-f", "pep8",
                           "--nocolor", "."], cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Profile 'production' was required, and it passed" in proc.stderr, \
        proc.stdout + proc.stderr


# ---------------------------------------------------------------- the runbook: the edge, Redis and Elasticsearch

def _runbook(plan, region: str) -> tuple[str, str, str]:
    """The lost region's runbook: its steps 2, 4 and 5."""
    from compiler.targets import ansible
    text = ansible.docs_region(plan, plan.region(region))
    step2 = text.split("\n2. Fence the old region", 1)[1].split("\n3. ", 1)[0]
    step4 = text.split("\n4. Serve this region's franchises from", 1)[1].split("\n5. ", 1)[0]
    step5 = text.split("\n5. ", 1)[1].split("\n## ", 1)[0]
    return step2, step4, step5


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_the_runbook_makes_the_edge_lever_optional_and_the_override_permanent(reference):
    """Step 2's manual weight 0 is the quick lever before step 4, whose override gives the record weight 0 in the
    global root for good; step 5's fail-back gives the weight back by removing the region."""
    step2, step4, step5 = (_flat(s) for s in _runbook(reference, LOST))
    record = f"Route 53 record `origin.{reference.spec.organization.domain}` (set identifier `{LOST}`) weight 0"
    assert f"Step 4's override does it for good: with the region in `disaster_recovery.failed_over` the global root " \
           f"gives its {record}" in step2 and "The quick lever until that apply is optional" in step2
    assert "repeat this after that apply" not in step2 and "until switch-back, repeat it after any apply" not in step2
    assert f"the edge's weighted origin: the global root gives its {record}" in step4
    assert "and the global root (`terraform -chdir=generated/terraform/global apply`)" in step4
    assert "global root gives its Route 53 record its weight back" in step5 and "apply it last" in step5
    # Front Door: the origin disabled, and enabled again at fail-back
    az = compile_text(azure_self_managed(), "platform.yaml").plan
    step2, step4, step5 = (_flat(s) for s in _runbook(az, "weu"))
    assert "disables its Front Door origin `weu` in the origin group `regions`" in step4
    assert "enables its Front Door origin again" in step5


def test_the_runbook_says_what_becomes_of_redis_and_elasticsearch(reference, dr_plan):
    """Facts of the generated configuration: the lost region's services with Redis keys and search indices, where the
    Redis snapshots are, that nothing rebuilds the indices, that Kong's state is not in Redis; and step 5 on them."""
    _step2, step4, step5 = (_flat(s) for s in _runbook(reference, LOST))
    region = reference.region(LOST)
    redis = [s.name for s in region.services if "redis" in s.uses]
    search = [s.name for s in region.services if "elasticsearch" in s.uses]
    assert redis and search
    for name in redis:
        assert f" {name}" in step4.split("- Redis (", 1)[1].split(" kept there", 1)[0]
    assert "`maxmemory-policy allkeys-lru`" in step4 and "`REDIS_KEY_PREFIX`, `<service>:`" in step4
    assert f"The hourly snapshots of its primaries are in `{region.backup_url}`, not copied to {PARTNER}" in step4
    for name in search:
        assert f"`{name}_*` ({name})" in step4
    assert "the platform generates no job or command that rebuilds them from PostgreSQL" in step4
    assert "Kong counts the rate limits in each of its pods (`policy: local`)" in step4
    assert "a token issued before the loss is taken by eu-central-1's Kong" in step4
    assert f"Nothing copies back what {PARTNER}'s Redis and Elasticsearch took" in step5
    assert "a rebuilt Elasticsearch starts empty" in step5
    # the facts stated are the generated configuration's: the policy in redis.conf, the prefixes in the ConfigMaps,
    # the rate-limit policy in Kong's file, and no Elasticsearch snapshot or reindex anywhere
    files = _contents(emit(reference, with_docs=False)[0]["generated"])
    assert "maxmemory-policy allkeys-lru" in files[f"datastores/{LOST}/redis.conf"]
    kong = yaml.safe_load(files[f"kong/{LOST}/kong.yaml"])
    limits = [p for p in kong.get("plugins", []) if p["name"] == "rate-limiting"]
    assert limits and all(p["config"]["policy"] == "local" for p in limits)
    cms = [d for n in search for d in yaml.safe_load_all(files[f"kubernetes/{LOST}/{n}.yaml"])
           if d and d["kind"] == "ConfigMap" and "ELASTICSEARCH_INDEX_PREFIX" in d.get("data", {})]
    assert sorted(d["data"]["ELASTICSEARCH_INDEX_PREFIX"] for d in cms) == sorted(f"{n}_" for n in search)
    assert not [p for p, t in files.items() if re.search(r"/_snapshot\b|/_reindex\b|path\.repo", t)]
    # another issuer or key in the partner: its Kong refuses the region's tokens
    other = REF.replace(f"     traffic_share: 8, dr_partner: {LOST}, cidr: 10.5.0.0/16}}",
                        f"     traffic_share: 8, dr_partner: {LOST}, cidr: 10.5.0.0/16,\n"
                        "     settings: {gateway: {jwt_issuer: 'https://auth2.6fb.example.com/'}}}")
    assert other != REF
    _s2, step4, _s5 = (_flat(s) for s in _runbook(compile_text(other, "platform.yaml").plan, LOST))
    assert f"tokens issued for this region are refused there, and its users sign in again at {PARTNER}'s issuer" in step4


def test_the_wiring_reads_the_serving_region_from_the_ir_not_the_spec(monkeypatch):
    """The wiring follows resolve's serving map (PlatformPlan.serving), as every target does: with the map naming the
    partner and the spec's list empty, Kong forwards nothing to the lost region and the edge has no home origin of it."""
    import compiler.resolve as resolve
    from compiler.ir.dr_serving import serving_map
    monkeypatch.setattr(resolve, "serving_map", lambda spec: {**serving_map(spec), LOST: PARTNER})
    plan = compile_text(REF + "# the serving map patched, the spec's list empty\n", "platform.yaml").plan
    assert not plan.spec.disaster_recovery.failed_over and plan.serving_region(LOST) == PARTNER
    assert not [c for c in plan.region(LOST).wiring if c.source.name == "cdn-home"]
    assert [c for c in plan.region(PARTNER).wiring if c.source.name == "cdn-home"]
    kong = [c.dest.name for c in plan.region("us-east-1").wiring if "kong-forward" in c.layers]
    assert f"gateway-{PARTNER}" in kong and f"gateway-{LOST}" not in kong
