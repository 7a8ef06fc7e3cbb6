"""GKE's Google Groups for RBAC (settings.kubernetes.gke_security_group): the group is looked up when GKE creates the
cluster ("Error 404: Not found: GAIA email lookup" without it), so it is optional and, when set, a documented
prerequisite of the region's first apply."""

from __future__ import annotations

import pytest

from compiler.errors import SpecError
from compiler.pipeline import compile_text
from compiler.targets.terraform import docs as tf_docs
from compiler.targets.terraform import gcp
from tests.conftest import REPO

GCP_ONLY = (REPO / "tests/cases/gcp-only/platform.yaml").read_text()


def test_unset_the_cluster_gets_no_google_groups_for_rbac():
    plan = compile_text(GCP_ONLY).plan
    for r in plan.regions:
        assert gcp.args(plan, r)["kubernetes"]["rbac_security_group"] is None
        assert "gke_security_group" not in tf_docs.section(plan, r)
    module = (REPO / "templates/terraform/modules/gcp/kubernetes/main.tf.j2").read_text()
    block = module[module.index('dynamic "authenticator_groups_config"'):]
    assert "for_each = var.rbac_security_group == null ? [] : [var.rbac_security_group]" in block
    assert "\n  authenticator_groups_config {" not in module
    variables = (REPO / "templates/terraform/modules/gcp/kubernetes/variables.tf.j2").read_text()
    assert 'variable "rbac_security_group" {' in variables and "default     = null" in variables.split(
        'variable "rbac_security_group" {')[1].split("}")[0]


def test_set_it_is_passed_and_the_region_page_names_the_prerequisite(reference):
    group = reference.spec.settings.kubernetes.gke_security_group
    assert group == "gke-security-groups@6fb.example.com"
    for r in (r for r in reference.regions if r.cloud == "gcp"):
        assert gcp.args(reference, r)["kubernetes"]["rbac_security_group"] == group
        main = (REPO / f"generated/terraform/regions/{r.name}/main.tf").read_text()
        assert f'rbac_security_group     = "{group}"' in main
        page = (REPO / f"docs/regions/{r.name}.md").read_text()
        assert (f"the Google Group `{group}` (settings.kubernetes.gke_security_group, GKE's Google Groups for RBAC) "
                "must exist in the Google Workspace or Cloud Identity account of `6fb.example.com`") in page
        assert "GAIA email lookup" in page
    for r in (r for r in reference.regions if r.cloud != "gcp"):
        assert "gke_security_group" not in (REPO / f"docs/regions/{r.name}.md").read_text()


@pytest.mark.parametrize("name", ["admins@6fb.example.com", "gke-security-groups@", "gke-security-groups@localhost"])
def test_gke_requires_the_fixed_group_name(name):
    text = GCP_ONLY.replace("\nsettings:\n  kubernetes:\n",
                               f"\nsettings:\n  kubernetes:\n    gke_security_group: {name}\n", 1)
    assert text != GCP_ONLY
    with pytest.raises(SpecError) as exc:
        compile_text(text)
    assert "settings.kubernetes.gke_security_group" in str(exc.value) and "[S004]" in str(exc.value)
