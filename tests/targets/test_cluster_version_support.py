"""kubernetes.version_support (compiler/ir/cluster_support.py): what each cloud does when the cluster's version leaves
standard support, written into the Terraform and counted by `platformc cost`.

Without an upgrade policy EKS applies the API's default, EXTENDED (EKS API reference, UpgradePolicyRequest): a cluster
whose version left standard support moved to extended support at $0.60 a cluster-hour instead of $0.10, silently.
Read back from the generated roots and modules with python-hcl2.
"""

from __future__ import annotations

from pathlib import Path

import hcl2
import pytest

from compiler import cost
from compiler.errors import SpecError
from compiler.model.infra import Kubernetes
from compiler.pipeline import compile_file, compile_text
from compiler.targets import terraform
from tests.conftest import REPO
from tests.targets.hcl_support import resources, unquote

KUBERNETES_MODULE = {"aws": ("aws_eks_cluster", "support_type"), "gcp": ("google_container_cluster", "release_channel"),
                     "azure": ("azurerm_kubernetes_cluster", "support_plan")}
STANDARD = {"aws": "STANDARD", "gcp": "REGULAR", "azure": "KubernetesOfficial"}


def _plain(v):
    if isinstance(v, dict):
        return {unquote(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return unquote(v)


def _files(plan) -> dict[str, str]:
    files = dict(terraform.emit_global(plan))
    for r in plan.regions:
        files.update(terraform.emit_region(plan, r))
    return files


def _kubernetes_call(files, region) -> dict:
    doc = _plain(hcl2.loads(files[f"terraform/regions/{region}/main.tf"]))
    (call,) = [m["kubernetes"] for m in doc["module"] if "kubernetes" in m]
    return call


def _cluster(files, cloud) -> dict:
    rtype, _ = KUBERNETES_MODULE[cloud]
    doc = _plain(hcl2.loads(files[f"terraform/modules/{cloud}/kubernetes/main.tf"]))
    return resources(doc, rtype)["this"]


def _wired(cluster: dict, cloud: str) -> str:
    """The expression the cluster resource takes its support setting from."""
    if cloud == "aws":
        (policy,) = cluster["upgrade_policy"]
        return policy["support_type"]
    if cloud == "gcp":
        (channel,) = cluster["release_channel"]
        return channel["channel"]
    return cluster["support_plan"]


@pytest.fixture(scope="module")
def reference():
    plan = compile_file(str(REPO / "platform.yaml")).plan
    return plan, _files(plan)


def test_the_default_is_standard_support():
    assert Kubernetes.model_fields["version_support"].default == "standard"


def test_reference_clusters_never_enter_extended_support(reference):
    plan, files = reference
    clouds = set()
    for r in plan.regions:
        assert r.settings.kubernetes.version_support == "standard"
        _, var = KUBERNETES_MODULE[r.cloud]
        assert _kubernetes_call(files, r.name)[var] == STANDARD[r.cloud], r.name
        clouds.add(r.cloud)
    assert clouds == {"aws", "gcp", "azure"}
    for cloud in clouds:  # each module hands the root's value to the cluster resource
        _, var = KUBERNETES_MODULE[cloud]
        assert _wired(_cluster(files, cloud), cloud) == f"${{var.{var}}}", cloud
    est = cost.estimate(plan)
    planes = [line for line in est.lines if line.item.startswith("Kubernetes control plane")]
    assert len(planes) == len(plan.regions)
    assert all(line.item == "Kubernetes control plane" and line.low == line.high for line in planes)


def _two_region(support: str):
    text = (REPO / "tests/cases/two-region/platform.yaml").read_text()
    old = "  kubernetes:\n    min_nodes: 6"
    assert text.count(old) == 1
    return compile_text(text.replace(old, f"  kubernetes:\n    version_support: {support}\n    min_nodes: 6"), "platform.yaml")


def test_extended_support_is_asked_for_and_priced():
    plan = _two_region("extended").plan
    files = _files(plan)
    assert {r.cloud for r in plan.regions} == {"aws", "gcp"}
    for r in plan.regions:
        _, var = KUBERNETES_MODULE[r.cloud]
        assert _kubernetes_call(files, r.name)[var] == "EXTENDED", r.name
    est = cost.estimate(plan)
    standard = cost.estimate(_two_region("standard").plan)
    for r in plan.regions:
        (plane,) = [x for x in est.lines if x.region == r.name and x.item.startswith("Kubernetes control plane")]
        (before,) = [x for x in standard.lines if x.region == r.name and x.item == "Kubernetes control plane"]
        # the standard fee until the version leaves standard support, six times it from then on (0.10 -> 0.60)
        assert (plane.low, plane.list_low) == (before.low, before.list_low)
        assert plane.high == pytest.approx(before.high * 6, abs=0.02), r.name
        assert "extended support" in plane.item


def test_extended_support_is_refused_on_azure():
    text = (REPO / "tests/cases/azure-only/platform.yaml").read_text()
    old = "  kubernetes:\n"
    assert text.count(old) == 1
    text = text.replace(old, "  kubernetes:\n    version_support: extended\n")
    with pytest.raises(SpecError) as exc:
        compile_text(text, "platform.yaml")
    hits = [(d.code, d.line) for d in exc.value.diagnostics if d.code == "R063"]
    line = text[: text.index("version_support: extended")].count("\n") + 1
    assert hits and {h[1] for h in hits} == {line}, hits
    # its Azure clusters run both add-ons AKS long-term support excludes
    plan = compile_file(str(REPO / "tests/cases/azure-only/platform.yaml")).plan
    cluster = _cluster(_files(plan), "azure")
    assert cluster["ingress_application_gateway"] and cluster["key_management_service"]


def test_module_variables_refuse_other_values(reference):
    """The modules' validation admits exactly the values the compiler writes (a hand edit gets Terraform's error)."""
    _, files = reference
    for cloud, (_, var) in KUBERNETES_MODULE.items():
        doc = _plain(hcl2.loads(files[f"terraform/modules/{cloud}/kubernetes/variables.tf"]))
        (body,) = [v[var] for v in doc["variable"] if var in v]
        (check,) = body["validation"]
        assert var in check["condition"] and STANDARD[cloud] in check["condition"], cloud
        assert ("EXTENDED" in check["condition"]) == (cloud != "azure"), cloud
