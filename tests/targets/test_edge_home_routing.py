"""Home-region routing at the edge: the CloudFront viewer-request function, run with node, against the shard map.

The generated function (terraform/global/cdn.tf, read back with python-hcl2) runs under node with a stand-in
`cloudfront` module (node_modules/cloudfront in a temp dir: `cf.kvs()` over a dict, `selectRequestOriginById`
recording its argument); the harness appends `export { handler }` (CloudFront calls `handler` by name). For ids at
the borders of every home range of the reference (every region, the cross-cloud homes among them), no id,
malformed ids and ids outside the map, the origin chosen must be the home's (or none: the default, weighted
origin); the DR override key sends a lost home's franchises to the region serving them, marked as routed by the
edge. The distribution's origins and the function's regions must agree, and each home origin must be the
region's own name. A scattered 10,000-franchise registry goes to the KeyValueStore (the inline tables would
pass the 10 KB limit) and routes the same way.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import textwrap
from pathlib import Path

import hcl2
import pytest

from compiler.ir.home_routing import FUNCTION_MAX_BYTES, home_ranges
from compiler.pipeline import compile_file
from compiler.targets import terraform
from tests.conftest import REPO, require_tool
from tests.targets.hcl_support import resources as _resources, unquote as _s

STUB = r"""
const calls = globalThis.__cf;
export default {
  kvs() {
    return {
      async get(key) {
        if (!(key in calls.kvs)) { throw new Error("KeyNotFound: " + key); }
        return calls.kvs[key];
      },
    };
  },
  selectRequestOriginById(id) { calls.origins.push(id); },
  updateRequestOrigin() { throw new Error("not used"); },
  createRequestOriginGroup() { throw new Error("not used"); },
};
"""

RUNNER = r"""
import fs from "node:fs";
const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const kvs = JSON.parse(fs.readFileSync(process.argv[3], "utf8"));
globalThis.__cf = { kvs: {}, origins: [] };
const { handler } = await import("./function.mjs");
const out = [];
for (const c of cases) {
  globalThis.__cf.kvs = Object.assign({}, kvs, c.kvs || {});
  globalThis.__cf.origins = [];
  const headers = {};
  for (const [k, v] of Object.entries(c.headers)) { headers[k] = { value: v }; }
  const request = { method: "GET", uri: "/orders/1", querystring: {}, headers, cookies: {} };
  const result = await handler({ version: "1.0", context: { eventType: "viewer-request" },
                                 viewer: { ip: "198.51.100.7" }, request });
  const h = {};
  for (const [k, v] of Object.entries(result.headers)) { h[k] = v.value; }
  out.push({ origins: globalThis.__cf.origins, headers: h });
}
process.stdout.write(JSON.stringify(out));
"""


def _global_files(plan) -> dict[str, str]:
    return {p.split("terraform/global/", 1)[1]: t for p, t in terraform.emit_global(plan).items()
            if p.startswith("terraform/global/")}


def _cdn(files) -> dict:
    return hcl2.loads(files["cdn.tf"])


def _function(files) -> tuple[str, dict]:
    doc = _cdn(files)
    dist = _resources(doc, "aws_cloudfront_distribution")["this"]
    assoc = dist["default_cache_behavior"][0]["function_association"]
    (vr,) = [a for a in assoc if _s(a["event_type"]) == "viewer-request"]
    name = _s(vr["function_arn"]).split(".")[1]
    fn = _resources(doc, "aws_cloudfront_function")[name]
    return _heredoc(fn["code"]), fn


def _heredoc(value: str) -> str:
    """python-hcl2 8 gives a heredoc as written (`<<-EOT`, the indented lines, `EOT`): its value is the lines
    between, with the common indentation removed (Terraform's `<<-`)."""
    text = _s(value)
    assert text.startswith("<<-EOT\n"), text[:20]
    lines = text.split("\n")[1:-1]
    return textwrap.dedent("\n".join(lines)) + "\n"


def run_function(tmp_path: Path, code: str, cases: list[dict], kvs: dict | None = None) -> list[dict]:
    require_tool("node")
    work = tmp_path / "edge"
    (work / "node_modules/cloudfront").mkdir(parents=True, exist_ok=True)
    (work / "node_modules/cloudfront/package.json").write_text(json.dumps(
        {"name": "cloudfront", "type": "module", "exports": "./index.mjs"}))
    (work / "node_modules/cloudfront/index.mjs").write_text(STUB)
    (work / "function.mjs").write_text(code + "\nexport { handler };\n")
    (work / "run.mjs").write_text(RUNNER)
    (work / "cases.json").write_text(json.dumps(cases))
    (work / "kvs.json").write_text(json.dumps(kvs or {}))
    proc = subprocess.run([shutil.which("node"), "run.mjs", "cases.json", "kvs.json"], cwd=work,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def reference():
    plan = compile_file(str(REPO / "platform.yaml")).plan
    return plan, _global_files(plan)


def _expected_origin(plan, fid: int) -> str | None:
    for first, last, home in home_ranges(plan):
        if first <= fid <= last:
            return f"home-{home}"
    return None


def test_every_home_region_has_an_origin_named_as_the_region(reference):
    plan, files = reference
    dist = _resources(_cdn(files), "aws_cloudfront_distribution")["this"]
    origins = {_s(o["origin_id"]): o for o in dist["origin"]}
    assert set(origins) == {"regions"} | {f"home-{r.name}" for r in plan.regions}
    for r in plan.regions:
        o = origins[f"home-{r.name}"]
        # the region's own name: its root points it at its load balancer, whose certificate covers it
        assert _s(o["domain_name"]) == f"{r.name}.${{local.domain}}"
        coc = o["custom_origin_config"][0]
        assert _s(coc["origin_protocol_policy"]) == "https-only" and coc["https_port"] == 443
    assert _s(dist["default_cache_behavior"][0]["target_origin_id"]) == "regions"


def test_the_function_names_the_distributions_origins_and_fits(reference):
    plan, files = reference
    code, fn = _function(files)
    assert _s(fn["runtime"]) == "cloudfront-js-2.0"
    assert len(code.encode()) <= FUNCTION_MAX_BYTES
    regions = json.loads(code.split("var REGIONS = ", 1)[1].split(";", 1)[0])
    dist = _resources(_cdn(files), "aws_cloudfront_distribution")["this"]
    ids = {_s(o["origin_id"]) for o in dist["origin"]} - {"regions"}
    assert {f"home-{r}" for r in regions} == ids
    assert "selectRequestOriginById" in code
    kvs = _resources(_cdn(files), "aws_cloudfront_key_value_store")
    assert fn["key_value_store_associations"] == ["${aws_cloudfront_key_value_store.routing.arn}"] and "routing" in kvs


def test_franchises_reach_their_home_region_through_the_edge(reference, tmp_path):
    plan, files = reference
    code, _ = _function(files)
    ids = set()
    for first, last, _home in home_ranges(plan):
        ids |= {first, last, (first + last) // 2}
    top = max(r[1] for r in home_ranges(plan))
    clouds = {r.name: r.cloud for r in plan.regions}
    cases = [{"headers": {"x-franchise-id": str(i)}} for i in sorted(ids)]
    out = run_function(tmp_path, code, cases)
    homed = {}
    for i, res in zip(sorted(ids), out):
        assert res["origins"] == [_expected_origin(plan, i)], i
        assert "x-platformc-forwarded-from" not in res["headers"]
        assert res["headers"]["x-viewer-address"] == "198.51.100.7"
        homed.setdefault(res["origins"][0][len("home-"):], set()).add(i)
    # every region is some franchise's home, AWS and the other clouds alike (the 421 of Kong is gone from this path)
    assert set(homed) == {r.name for r in plan.regions}
    assert {clouds[r] for r in homed} == {"aws", "gcp", "azure"}
    # no id, malformed ids, ids outside the map: the default (weighted) origin, nothing selected
    bad = ["", "abc", "12a", "-5", "1.5", " 42", "4 2", "0x10", "1234567890123456", "0", str(top + 1), "99999999999"]
    out = run_function(tmp_path, code, [{"headers": {}}] + [{"headers": {"x-franchise-id": b}} for b in bad])
    for b, res in zip(["<none>"] + bad, out):
        assert res["origins"] == [], b


def test_a_client_cannot_mark_its_request_as_forwarded(reference, tmp_path):
    _plan, files = reference
    code, _ = _function(files)
    out = run_function(tmp_path, code, [
        {"headers": {"x-franchise-id": "16500", "x-platformc-forwarded-from": "us-east-1"}},
        {"headers": {"x-platformc-forwarded-from": "edge"}}])
    assert out[0]["origins"] == ["home-ap-southeast-1"]
    assert all("x-platformc-forwarded-from" not in r["headers"] for r in out)


def test_a_lost_home_is_served_by_the_region_the_runbook_names(reference, tmp_path):
    plan, files = reference
    code, _ = _function(files)
    kvs = {"serving-us-east-1": "us-west-2", "serving-eu-west-2": "no-such-region"}
    out = run_function(tmp_path, code, [{"headers": {"x-franchise-id": i}} for i in ("1", "4000", "4001", "14001")], kvs)
    assert out[0]["origins"] == ["home-us-west-2"] and out[0]["headers"]["x-platformc-forwarded-from"] == "edge"
    assert out[1]["origins"] == ["home-us-west-2"] and out[1]["headers"]["x-platformc-forwarded-from"] == "edge"
    assert out[2]["origins"] == ["home-us-west-2"] and "x-platformc-forwarded-from" not in out[2]["headers"]
    # a value naming no region is ignored: the home keeps its franchises
    assert out[3]["origins"] == ["home-eu-west-2"] and "x-platformc-forwarded-from" not in out[3]["headers"]


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """The reference with a scattered 10,000-franchise registry (ids 1..30,000, random homes)."""
    tmp = tmp_path_factory.mktemp("registry")
    text = (REPO / "platform.yaml").read_text()
    assert text.count("sharding:\n  key: franchise_id\n") == 1
    text = text.replace("sharding:\n  key: franchise_id\n", "sharding:\n  key: franchise_id\n  registry_file: franchises.csv\n")
    plan0 = compile_file(str(REPO / "platform.yaml")).plan
    names = [r.name for r in plan0.regions]
    rng = random.Random(12)
    ids = sorted(rng.sample(range(1, 30001), 10000))
    (tmp / "franchises.csv").write_text("franchise_id,home_region,jurisdiction\n"
                                        + "".join(f"{i},{rng.choice(names)},\n" for i in ids))
    (tmp / "platform.yaml").write_text(text)
    plan = compile_file(str(tmp / "platform.yaml")).plan
    return plan, _global_files(plan)


def test_a_scattered_registry_goes_to_the_key_value_store(registry, tmp_path):
    plan, files = registry
    assert len(plan.registry) == 10000
    code, fn = _function(files)
    assert len(code.encode()) <= FUNCTION_MAX_BYTES and "var FIRST" not in code
    entries = json.loads(files["franchise-homes.json"])
    names = [r.name for r in plan.regions]
    decoded = {int(k[len("franchises-"):]) * 100 + int(off): names[int(idx, 36)]
               for k, v in entries.items() for off, idx in (e.split(":") for e in v.split(","))}
    assert decoded == {h.franchise_id: h.region for h in plan.registry}
    assert len(entries) <= 30000 // 100 + 1 and max(len(v.encode()) for v in entries.values()) <= 1024  # KVS value limit
    keys = _resources(_cdn(files), "aws_cloudfrontkeyvaluestore_key")["franchise"]
    assert "franchise-homes.json" in keys["for_each"] and "routing.arn" in keys["key_value_store_arn"]
    sample = random.Random(3).sample(list(plan.registry), 200)
    absent = [i for i in range(1, 200) if i not in decoded][:5] + [30150, 123456789012345]
    # ids as a client may send them: plain, with leading zeros (the same franchise, as Kong's tonumber reads it)
    cases = [{"headers": {"x-franchise-id": str(h.franchise_id)}} for h in sample]
    cases += [{"headers": {"x-franchise-id": "000" + str(h.franchise_id)}} for h in sample[:20]]
    cases += [{"headers": {"x-franchise-id": str(i)}} for i in absent]
    out = run_function(tmp_path, code, cases, entries)
    for h, res in zip(sample + sample[:20], out):
        assert res["origins"] == [f"home-{h.region}"], h.franchise_id
    assert all(res["origins"] == [] for res in out[len(sample) + 20:])


def test_the_docs_say_where_the_edge_sends_each_regions_franchises_and_why(reference):
    from compiler.targets import kong
    plan, _files = reference
    for r in plan.regions:
        tf = terraform.docs_region(plan, r)
        assert f"| edge routing | the global root's CloudFront distribution has this region as origin `home-{r.name}` " \
               f"(`{r.name}.{plan.spec.organization.domain}`" in tf
        k = kong.docs_region(plan, r)
        assert "**The edge routes first**" in k and "**Why the edge**" in k and "second line" in k


def test_the_dr_runbook_moves_a_lost_regions_franchises_at_the_edge(reference):
    from compiler.targets import ansible
    plan, _files = reference
    r = plan.region("us-east-1")
    text = ansible.docs_region(plan, r)
    step4 = text.split("4. Serve this region's franchises from", 1)[1].split("\n5. ", 1)[0]
    assert "add `us-east-1` to `disaster_recovery.failed_over`" in step4
    assert "the edge's (CloudFront's viewer-request function in the global root)" in step4
    assert f"{r.dr_partner}'s origin `home-{r.dr_partner}`" in step4
    assert "global root (`terraform -chdir=generated/terraform/global apply`)" in step4


def test_at_120_regions_the_function_fits_and_the_origin_quota_is_named(tmp_path):
    from scripts.scale import write
    plan = compile_file(str(write(tmp_path, 120))).plan
    files = _global_files(plan)
    code, _ = _function(files)
    assert len(code.encode()) <= FUNCTION_MAX_BYTES and "var FIRST" in code
    assert "# 121 origins: 21 over CloudFront's default quota of" in files["cdn.tf"]
    reference_cdn = _global_files(compile_file(str(REPO / "platform.yaml")).plan)["cdn.tf"]
    assert "over CloudFront's default quota" not in reference_cdn
