"""A Kubernetes version bump or a node-pool machine change on each cloud (review r2-day2, findings 7 and 9): the
node pools follow the spec's version after the control plane (EKS node group `version`, AKS `orchestrator_version`),
EKS add-ons follow it too (`addon_version` from data.aws_eks_addon_version), an EKS instance-type change creates the
replacement group before the old one goes (name prefix + create_before_destroy), every AKS pool can be cycled
(`temporary_name_for_rotation`), and every pool's update timeout covers a rolling upgrade at its maximum size."""

from __future__ import annotations

import io
import re

import pytest

from compiler.targets import terraform
from compiler.targets.terraform import azure as tf_azure
from compiler.targets.terraform import values as V
from tests.conftest import require_module
from tests.targets.hcl_support import resources, unquote


def _parse(text: str) -> dict:
    return require_module("hcl2").load(io.StringIO(text))


@pytest.fixture(scope="module")
def modules(reference):
    files = terraform.emit_global(reference)
    return {cloud: _parse(files[f"terraform/modules/{cloud}/kubernetes/main.tf"]) for cloud in ("aws", "azure", "gcp")}


def _region_kubernetes(plan, cloud) -> list[tuple[object, dict]]:
    """(region, the arguments of the root's module "kubernetes") of every region on `cloud`."""
    out = []
    for region in plan.regions:
        if region.cloud != cloud:
            continue
        root = _parse(terraform.emit_region(plan, region)[f"terraform/regions/{region.name}/main.tf"])
        calls = {unquote(k): v for entry in root["module"] for k, v in entry.items()}
        out.append((region, calls["kubernetes"]))
    assert out, cloud
    return out


def _one(body: dict, block: str) -> dict:
    value = body[block]
    return value[0] if isinstance(value, list) else value


# --- the spec's version reaches every cloud's cluster, and the pools follow it ------------------------------------

@pytest.mark.parametrize("cloud", ["aws", "azure", "gcp"])
def test_every_region_root_passes_the_specs_kubernetes_version(reference, cloud):
    for region, call in _region_kubernetes(reference, cloud):
        assert unquote(call["kubernetes_version"]) == region.settings.kubernetes.version, region.name


def test_eks_node_groups_follow_the_control_planes_version(modules):
    doc = modules["aws"]
    cluster = resources(doc, "aws_eks_cluster")["this"]
    assert unquote(cluster["version"]) == "${var.kubernetes_version}"
    group = resources(doc, "aws_eks_node_group")["pool"]
    # the cluster's attribute, not the variable: the node groups update after the control plane
    assert unquote(group["version"]) == "${aws_eks_cluster.this.version}"


def test_eks_add_ons_follow_the_kubernetes_version(modules):
    doc = modules["aws"]
    data = {}
    for entry in doc["data"]:
        for label, named in entry.items():
            if unquote(label) == "aws_eks_addon_version":
                data.update({unquote(k): v for k, v in named.items()})
    lookup = data["this"]
    assert unquote(lookup["kubernetes_version"]) == "${var.kubernetes_version}"
    assert lookup["most_recent"] is True
    looked_up = set(re.findall(r'"([^"]+)"', unquote(lookup["for_each"])))
    addons = resources(doc, "aws_eks_addon")
    names = set()
    for rname, body in addons.items():
        name = unquote(body["addon_name"])
        if name == "${each.key}":
            keys = re.findall(r'"([^"]+)"', unquote(body["for_each"]))
            names.update(keys)
            assert unquote(body["addon_version"]) == "${data.aws_eks_addon_version.this[each.key].version}", rname
        else:
            names.add(name)
            assert unquote(body["addon_version"]) == f'${{data.aws_eks_addon_version.this["{name}"].version}}', rname
        assert unquote(body["resolve_conflicts_on_update"]) == "OVERWRITE", rname
    assert names == looked_up


def test_aks_pools_follow_the_kubernetes_version(modules):
    doc = modules["azure"]
    cluster = resources(doc, "azurerm_kubernetes_cluster")["this"]
    assert unquote(cluster["kubernetes_version"]) == "${var.kubernetes_version}"
    system = _one(cluster, "default_node_pool")
    assert unquote(system["orchestrator_version"]) == "${var.kubernetes_version}"
    pool = resources(doc, "azurerm_kubernetes_cluster_node_pool")["pool"]
    assert unquote(pool["orchestrator_version"]) == "${var.kubernetes_version}"


# --- machine changes: replacement before removal (EKS), rotation (AKS) ---------------------------------------------

def test_eks_instance_type_change_creates_the_replacement_first(modules):
    group = resources(modules["aws"], "aws_eks_node_group")["pool"]
    assert "node_group_name" not in group
    assert unquote(group["node_group_name_prefix"]) == "${each.key}-"
    lifecycle = _one(group, "lifecycle")
    assert lifecycle["create_before_destroy"] is True
    assert [unquote(x) for x in lifecycle["ignore_changes"]] == ["${scaling_config[0].desired_size}"]


def test_every_aks_pool_can_be_cycled(modules, reference):
    doc = modules["azure"]
    system = _one(resources(doc, "azurerm_kubernetes_cluster")["this"], "default_node_pool")
    assert unquote(system["temporary_name_for_rotation"]) == "${local.system.rotation_name}"
    pool = resources(doc, "azurerm_kubernetes_cluster_node_pool")["pool"]
    assert unquote(pool["temporary_name_for_rotation"]) == "${each.value.rotation_name}"
    for region, call in _region_kubernetes(reference, "azure"):
        pools = call["node_pools"]
        names = {unquote(k) for k in pools}
        temp = [unquote(p["rotation_name"]) for p in pools.values()]
        # a pool name itself, clear of every pool and of each other (pools may cycle in one apply)
        assert all(re.fullmatch(r"[a-z0-9]{1,12}", t) for t in temp), temp
        assert len(set(temp)) == len(temp) and not set(temp) & names, (region.name, temp)


def test_rotation_names_stay_clear_of_pools_sharing_a_prefix():
    pools = ["memoryoptimi", "memoryoptimx", "memoryopttmp", "gpu"]
    out = tf_azure.rotation_names(pools)
    assert len(set(out.values())) == len(pools)
    assert not set(out.values()) & set(pools)
    assert all(re.fullmatch(r"[a-z0-9]{1,12}", n) for n in out.values())


# --- update timeouts long enough for a rolling upgrade at the largest size ------------------------------------------

@pytest.mark.parametrize("cloud,rtype", [("aws", "aws_eks_node_group"), ("gcp", "google_container_node_pool"),
                                         ("azure", "azurerm_kubernetes_cluster_node_pool")])
def test_pool_update_timeouts_come_from_the_pools_size(modules, cloud, rtype):
    body = resources(modules[cloud], rtype)["pool"]
    assert unquote(_one(body, "timeouts")["update"]) == "${each.value.upgrade_minutes}m"


def test_aks_cluster_timeout_covers_control_plane_and_system_pool(modules):
    cluster = resources(modules["azure"], "azurerm_kubernetes_cluster")["this"]
    assert unquote(_one(cluster, "timeouts")["update"]) == "${local.system.upgrade_minutes + 30}m"


@pytest.mark.parametrize("cloud", ["aws", "azure", "gcp"])
def test_roots_pass_each_pools_upgrade_minutes(reference, cloud):
    for region, call in _region_kubernetes(reference, cloud):
        spec = region.settings.kubernetes.node_pools
        for key, pool in call["node_pools"].items():
            labels = {unquote(k): unquote(v) for k, v in pool["labels"].items()}
            name = labels["platformc.io/node-pool"]
            minutes = pool["upgrade_minutes"]
            max_nodes = spec[name].max_nodes
            batches = -(-max_nodes // V.upgrade_batch_size(cloud, max_nodes))
            assert minutes == max(V.UPGRADE_MIN_MINUTES, batches * V.UPGRADE_BATCH_MINUTES), (region.name, key)
            # longer than the provider's own update timeout for every pool the spec sizes past one batch
            assert minutes >= {"gcp": 30, "aws": 60, "azure": 60}[cloud]


def test_batch_sizes_match_the_modules_upgrade_settings(modules):
    """The timeouts assume the modules' parallelism: keep the two together."""
    eks = _one(resources(modules["aws"], "aws_eks_node_group")["pool"], "update_config")
    assert eks["max_unavailable_percentage"] == V.UPGRADE_PERCENT
    aks = _one(resources(modules["azure"], "azurerm_kubernetes_cluster_node_pool")["pool"], "upgrade_settings")
    assert unquote(aks["max_surge"]) == f"{V.UPGRADE_PERCENT}%"
    system = _one(_one(resources(modules["azure"], "azurerm_kubernetes_cluster")["this"], "default_node_pool"),
                  "upgrade_settings")
    assert unquote(system["max_surge"]) == f"{V.UPGRADE_PERCENT}%"
    gke = _one(resources(modules["gcp"], "google_container_node_pool")["pool"], "upgrade_settings")
    assert (gke["max_surge"], gke["max_unavailable"]) == (1, 0)
    assert V.upgrade_batch_size("gcp", 120) == 1


def test_a_120_node_gke_pool_gets_thirty_hours():
    """One node at a time, 15 minutes each: the provider's 30-minute default fails after two nodes."""
    assert V.upgrade_minutes("gcp", 120) == 1800
    assert V.upgrade_minutes("aws", 120) == 150  # 12 nodes a batch, 10 batches
    assert V.upgrade_minutes("azure", 5) == 75


# --- the region page says what happens, in order -------------------------------------------------------------------

def test_region_page_describes_version_bumps_and_node_changes_in_order(reference):
    for cloud, first, then in [("aws", "control plane", "node group"), ("azure", "control plane", "system pool"),
                               ("gcp", "control plane", "node pools")]:
        region = next(r for r in reference.regions if r.cloud == cloud)
        page = terraform.docs_region(reference, region)
        section = page.split("### Kubernetes version bumps and node-pool changes", 1)[1].split("\n### ", 1)[0]
        bump = section.split("Version bump:", 1)[1]
        assert bump.index(first) < bump.index(then), cloud
        assert "Node-type change" in section, cloud
        for name, pool in region.settings.kubernetes.node_pools.items():
            assert f"{name} {V.upgrade_minutes(cloud, pool.max_nodes)} min" in section, (cloud, name)
    aws = terraform.docs_region(reference, next(r for r in reference.regions if r.cloud == "aws"))
    assert "Minimum capacity" in aws and "aws eks update-nodegroup-config" in aws
    gcp = terraform.docs_region(reference, next(r for r in reference.regions if r.cloud == "gcp"))
    assert "guest_accelerator" in gcp and "ForceNew" in gcp
    azure = terraform.docs_region(reference, next(r for r in reference.regions if r.cloud == "azure"))
    assert "without cordon and drain" in azure
