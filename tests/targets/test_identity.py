"""Workload identities (compiler/ir/identity.py) as the targets emit them.

The least-privilege test reads the generated Terraform back -- the region root's workload_identity call and the
module library's policy document, bucket/secret IAM members and role assignments -- evaluates each identity's
grants the way Terraform would render them, and checks, for every service in every region of the reference,
that its resources are exactly its own buckets (their objects, no wider wildcard) and, on AWS, the region's key
through S3 only.
"""

from __future__ import annotations

import re
import sys

import pytest
import yaml

from compiler.ir.identity import parse_ref
from compiler.pipeline import compile_file
from compiler.targets import helm, kubernetes, terraform
from compiler.verify.infra import read_hcl
from tests.conftest import REPO

CASES = ("reference", "aws-only", "gcp-only", "azure-only")


def _plan(case: str):
    spec = REPO / ("platform.yaml" if case == "reference" else f"tests/cases/{case}/platform.yaml")
    return compile_file(str(spec)).plan


PLANS = {c: _plan(c) for c in CASES}
REFERENCE = PLANS["reference"]


def _tf(plan, region):
    files = terraform.emit_region(plan, region)
    files.update(terraform.emit_global(plan))
    return files


def _module_call(files, region):
    main = read_hcl(files[f"terraform/regions/{region.name}/main.tf"])
    return main.block("module", "workload_identity")


def _lib(files, cloud):
    return read_hcl(files[f"terraform/modules/{cloud}/workload_identity/main.tf"])


# ---------------------------------------------------------------- AWS: the IAM policy document, evaluated

FOR_LIST = re.compile(r'^\[for (\w+) in each\.value\.(\w+) : (.+)\]$')


def _eval(expr, entry: dict, var: str = "", item: str = "") -> list[str]:
    """The resources an `aws_iam_policy_document` statement names for one identity (the module's expressions)."""
    if isinstance(expr, list):
        return [x for e in expr for x in _eval(e, entry, var, item)]
    text = str(expr)
    m = FOR_LIST.match(text)
    if m:
        return [x for it in entry[m.group(2)] for x in _eval(m.group(3), entry, m.group(1), it)]
    text = text.strip('"')
    if text == "var.kms_key_arn":
        return ["KMS-KEY"]
    if text.startswith("aws_secretsmanager_secret.this["):
        return [f"SECRET:{item}"]
    if var:
        text = text.replace("${" + var + "}", item)
    text = text.replace("${local.partition}", "aws")
    if "${" in text:
        text = re.sub(r"\$\{[^}]+\}", "<expr>", text)
    return [text]


def aws_statements(lib, entry: dict) -> list[dict]:
    doc = lib.block("data", "aws_iam_policy_document", "access")
    out = []
    for dyn in doc.all("dynamic"):
        guard = str(dyn.get("for_each"))
        m = re.match(r"length\(each\.value\.(\w+)\) > 0", guard) or re.match(r"each\.value\.(\w+) (?:!= null )?\?", guard)
        assert m, guard
        value = entry.get(m.group(1))  # an optional attribute the call leaves out is null
        if not (len(value) > 0 if isinstance(value, list) else value):
            continue
        content = dyn.block("content")
        cond = content.block("condition")
        out.append({"sid": content.get("sid"), "actions": list(content.get("actions")),
                    "resources": _eval(content.get("resources"), entry),
                    "condition": (cond.get("variable"), _eval(cond.get("values"), entry, "s", "")) if cond else None})
    return out


def test_aws_policy_is_exactly_the_services_own():
    checked = 0
    for region in REFERENCE.regions:
        if region.cloud != "aws":
            continue
        files = _tf(REFERENCE, region)
        call, lib = _module_call(files, region), _lib(files, "aws")
        idents = call.get("identities")
        for svc in region.services:
            entry = idents.get(svc.name)
            if "object-storage" not in svc.uses:
                assert entry is None, f"{region.name}/{svc.name} uses no cloud resource but has an IAM role"
                continue
            entry = dict(entry)
            stmts = aws_statements(lib, entry)
            resources = {r for s in stmts for r in s["resources"]}
            bucket = f"arn:aws:s3:::{region.data_bucket}"
            assert resources == {bucket, f"{bucket}/*", "KMS-KEY"}, (region.name, svc.name, resources)
            assert not any(r == "*" or r.endswith(":*") for r in resources)
            kms = next(s for s in stmts if "KMS-KEY" in s["resources"])
            assert kms["condition"][0] == "kms:ViaService" and kms["condition"][1] == ["s3.<expr>.amazonaws.com"]
            assert set(kms["actions"]) == {"kms:Decrypt", "kms:GenerateDataKey"}
            assert entry["role_name"] == region.identity(svc.name).name
            assert (entry["namespace"], entry["service_account"]) == (svc.namespace, svc.name)
            checked += 1
        # the operators: cluster-autoscaler's "*" only for the Describe calls; scaling is tag-conditioned
        ca = aws_statements(lib, dict(idents["cluster-autoscaler"]))
        for s in ca:
            if "*" in s["resources"]:
                assert all(a.split(":")[1].startswith(("Describe", "GetInstanceTypes")) for a in s["actions"]) \
                    or s["condition"] == ("aws:ResourceTag/k8s.io/cluster-autoscaler/${var.cluster_name}", ["owned"]), s
        assert call.get("cluster_name") == "module.kubernetes.cluster_name"
    assert checked >= 2 * 6  # ai and analytics in each AWS region


def test_aws_trust_is_exactly_the_service_account():
    region = next(r for r in REFERENCE.regions if r.cloud == "aws")
    lib = _lib(_tf(REFERENCE, region), "aws")
    assume = lib.block("data", "aws_iam_policy_document", "assume").block("statement")
    conds = {c.get("variable"): list(c.get("values")) for c in assume.all("condition")}
    assert conds == {"${var.oidc_issuer}:sub": ["system:serviceaccount:${each.value.namespace}:${each.value.service_account}"],
                     "${var.oidc_issuer}:aud": ["sts.amazonaws.com"]}
    assert list(assume.get("actions")) == ["sts:AssumeRoleWithWebIdentity"]


# ---------------------------------------------------------------- GCP: IAM members

def test_gcp_bindings_are_exactly_the_services_own():
    checked = 0
    for region in REFERENCE.regions:
        if region.cloud != "gcp":
            continue
        files = _tf(REFERENCE, region)
        call, lib = _module_call(files, region), _lib(files, "gcp")
        members = lib.block("resource", "google_storage_bucket_iam_member", "objects")
        assert members.get("role") == "roles/storage.objectUser" and members.get("bucket") == "each.value.bucket"
        assert not [b for b in lib.blocks if b.type == "resource" and b.labels[0].startswith(("google_project_iam",
                                                                                               "google_storage_bucket_iam_binding"))]
        wi = lib.block("resource", "google_service_account_iam_member", "workload_identity")
        assert wi.get("role") == "roles/iam.workloadIdentityUser"
        assert wi.get("member") == "serviceAccount:${var.project}.svc.id.goog[${each.value.namespace}/${each.value.service_account}]"
        idents = call.get("identities")
        for svc in region.services:
            entry = idents.get(svc.name)
            if "object-storage" not in svc.uses:
                assert entry is None
                continue
            assert list(entry["buckets"]) == [region.data_bucket] and list(entry["secrets"]) == []
            assert (entry["namespace"], entry["service_account"]) == (svc.namespace, svc.name)
            checked += 1
    assert checked >= 2 * 4


# ---------------------------------------------------------------- Azure: role assignments

def test_azure_assignments_are_exactly_the_services_own():
    checked = 0
    for region in REFERENCE.regions:
        if region.cloud != "azure":
            continue
        files = _tf(REFERENCE, region)
        call, lib = _module_call(files, region), _lib(files, "azure")
        objects = lib.block("resource", "azurerm_role_assignment", "objects")
        assert objects.get("role_definition_name") == "Storage Blob Data Contributor"
        assert objects.get("scope") == "local.containers[each.value.account]"
        containers = str(lib.block("locals").get("containers"))
        assert containers == '{ (var.data_account) = "${var.data_account_id}/blobServices/default/containers/data" }'
        assert call.get("data_account") == region.data_bucket
        assert call.get("data_account_id") == "module.object_storage.data_account_id"
        fed = lib.block("resource", "azurerm_federated_identity_credential", "this")
        assert fed.get("subject") == "system:serviceaccount:${each.value.namespace}:${each.value.service_account}"
        assert call.get("oidc_issuer_url") == "module.kubernetes.oidc_issuer_url"
        idents = call.get("identities")
        for svc in region.services:
            entry = idents.get(svc.name)
            if "object-storage" not in svc.uses:
                assert entry is None
                continue
            assert list(entry["buckets"]) == [region.data_bucket] and list(entry["secrets"]) == []
            assert (entry["namespace"], entry["service_account"]) == (svc.namespace, svc.name)
            checked += 1
    assert checked >= 2 * 2


# ---------------------------------------------------------------- the External Secrets Operator

def _external_secret_keys(plan, region, scheme_store: str) -> set[str]:
    keys = set()
    for rel, text in helm.emit_region(plan, region).items():
        if not rel.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if isinstance(doc, dict) and doc.get("kind") == "ExternalSecret":
                store = doc["spec"]["secretStoreRef"]["name"]
                for d in doc["spec"]["data"]:
                    s = (d.get("sourceRef") or {}).get("storeRef", {}).get("name", store)
                    if s.startswith(scheme_store):
                        r = d["remoteRef"]["key"]
                        keys.add(r)
    return keys


@pytest.mark.parametrize("case", ["aws-only", "gcp-only", "azure-only"])
def test_operator_reads_exactly_the_delivered_entries(case):
    plan = PLANS[case]
    for region in plan.regions:
        eso = region.identity("external-secrets")
        store = {"aws": "aws-sm", "gcp": "gcp-sm", "azure": "azure-kv"}[region.cloud]
        delivered = _external_secret_keys(plan, region, store)
        granted = {s.key for s in eso.secrets} if eso is not None else set()
        # every entry an ExternalSecret reads is granted; beyond those, only each service's datastore credentials
        # (compiler/ir/data_access.py), which the data tier's `<service>-datastores` ExternalSecrets deliver
        datastores = {parse_ref(ref).key for a in getattr(region, "data_access", ()) for _, ref in a.secrets
                      if parse_ref(ref).scheme == store}
        assert delivered <= granted, (region.name, delivered - granted)
        assert granted - delivered <= datastores, (region.name, granted - delivered - datastores)
        call = _module_call(_tf(plan, region), region)
        entry = call.get("identities").get("external-secrets")
        if granted:
            assert sorted(entry["secrets"]) == sorted(s.entry for s in eso.secrets)
        else:
            assert entry is None, "no cloud store entry is delivered: the operator needs no cloud identity"
        # the Vault role reads exactly the vault: entries the ExternalSecrets name
        vault = _external_secret_keys(plan, region, "vault")
        assert set(eso.vault_paths if eso is not None else ()) == vault


def test_secret_containers_hold_no_values():
    for case in ("aws-only", "gcp-only"):
        plan = PLANS[case]
        for region in plan.regions:
            lib = _lib(_tf(plan, region), region.cloud)
            kinds = {b.labels[0] for b in lib.blocks if b.type == "resource"}
            assert not kinds & {"aws_secretsmanager_secret_version", "google_secret_manager_secret_version",
                                "azurerm_key_vault_secret"}
    gcp = PLANS["gcp-only"]
    owned = [set(dict(_module_call(_tf(gcp, r), r).get("secrets"))) for r in gcp.regions]
    assert owned[0] and not (owned[0] & owned[1]), "a project-wide Secret Manager entry is created once"


# ---------------------------------------------------------------- Kubernetes and Helm

def test_service_accounts_carry_their_identity():
    for region in REFERENCE.regions:
        files = kubernetes.emit_region(REFERENCE, region)
        for svc in region.services:
            docs = list(yaml.safe_load_all(files[f"kubernetes/{region.name}/{svc.name}.yaml"]))
            sa = next(d for d in docs if d["kind"] == "ServiceAccount")
            ident = region.identity(svc.name)
            notes = sa["metadata"].get("annotations", {})
            pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]
            if not ident.has_cloud_identity:
                assert not notes
                assert "azure.workload.identity/use" not in pod["metadata"]["labels"]
            elif region.cloud == "aws":
                assert notes == {"eks.amazonaws.com/role-arn": f"arn:aws:iam::{REFERENCE.spec.clouds['aws'].account}:role/{ident.name}"}
            elif region.cloud == "gcp":
                assert notes == {"iam.gke.io/gcp-service-account": f"{ident.name}@{REFERENCE.spec.clouds['gcp'].account}.iam.gserviceaccount.com"}
            else:
                assert pod["metadata"]["labels"]["azure.workload.identity/use"] == "true"
                assert f"annotate {svc.name} {svc.namespace} {svc.name}\n" in files[f"kubernetes/{region.name}/workload-identities.sh"]
            assert sa["automountServiceAccountToken"] is False
            assert pod["spec"]["automountServiceAccountToken"] is False


def test_cluster_autoscaler_role_and_image_follow_the_cluster():
    for region in REFERENCE.regions:
        if region.cloud != "aws":
            continue
        values = yaml.safe_load(helm.emit_region(REFERENCE, region)[f"helm/{region.name}/cluster-autoscaler.values.yaml"])
        minor = region.settings.kubernetes.version
        assert values["image"]["tag"].startswith(f"v{minor}.")
        assert values["rbac"]["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
            f":role/{region.identity('cluster-autoscaler').name}")
        call = _module_call(_tf(REFERENCE, region), region)
        ca = call.get("identities")["cluster-autoscaler"]
        assert (ca["namespace"], ca["service_account"], ca["node_groups"]) == ("kube-system", "cluster-autoscaler", True)


# ---------------------------------------------------------------- verify

def test_verify_finds_an_identity_that_does_not_exist(tmp_path):
    from compiler.verify import verify
    import shutil
    import subprocess
    out = tmp_path / "gen"
    subprocess.run([sys.executable, "-m", "compiler", "generate", "--spec", str(REPO / "tests/cases/aws-only/platform.yaml"),
                    "--out", str(out), "--docs-out", str(tmp_path / "docs"), "--target", "kubernetes", "--target", "helm",
                    "--target", "terraform", "--target", "connections"], check=True, capture_output=True, cwd=REPO)
    region = PLANS["aws-only"].regions[0].name
    assert not [b for b in verify(out).broken if b.layer == "identity"]
    values = out / f"helm/{region}/cluster-autoscaler.values.yaml"
    text = values.read_text()
    assert f"role/acme-{region}-cluster-autoscaler\n" in text
    values.write_text(text.replace("-cluster-autoscaler\n", "-cluster-autoscalr\n"))
    broken = [b for b in verify(out).broken if b.layer == "identity"]
    assert broken and "no workload identity creates role" in broken[0].message
    shutil.rmtree(out)


def test_gke_workloads_with_an_identity_reach_the_metadata_server():
    """GKE Workload Identity hands out tokens only through the GKE metadata server (169.254.169.254:80 on Dataplane
    V2). Under the services' default-deny egress, a service with a Google service account needs that egress rule,
    or every Google API call fails for want of a token; a service without one gets no such rule, nor does any
    service on EKS or AKS (their tokens come from the cloud's STS over HTTPS)."""
    plan = _plan("reference")
    seen = 0
    for region in plan.regions:
        owners = {i.owner for i in region.identities if i.kind == "service" and i.has_cloud_identity}
        files = kubernetes.emit_region(plan, region)
        for svc in region.services:
            docs = list(yaml.safe_load_all(files[f"kubernetes/{region.name}/{svc.name}.yaml"]))
            (policy,) = [d for d in docs if d and d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == svc.name]
            to_metadata = [r for r in policy["spec"].get("egress", []) for t in r.get("to", [])
                           if t.get("ipBlock", {}).get("cidr") == "169.254.169.254/32"]
            wanted = region.cloud == "gcp" and svc.name in owners
            assert bool(to_metadata) == wanted, (region.name, svc.name)
            if wanted:
                assert to_metadata[0]["ports"] == [{"protocol": "TCP", "port": 80}]
                seen += 1
    assert seen > 0
