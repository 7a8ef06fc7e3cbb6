"""The region docs' compute quotas: what each root's machines count against, so that a new account, project or
subscription is raised before the first apply fails on it (compiler/targets/terraform/quotas.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler.ir.machines import host_instance_type
from compiler.pipeline import compile_file
from compiler.targets.terraform import quotas
from compiler.targets.terraform import values as V
from tests.conftest import REPO

# vCPUs of each machine type the reference and the test cases use, from the clouds' instance type pages
DOCUMENTED_VCPUS = {
    ("aws", "c6i.large"): 2, ("aws", "c6i.4xlarge"): 16, ("aws", "g5.2xlarge"): 8, ("aws", "m6i.2xlarge"): 8,
    ("aws", "r6i.large"): 2, ("aws", "r6i.xlarge"): 4, ("aws", "r6i.2xlarge"): 8, ("aws", "r6i.4xlarge"): 16,
    ("aws", "t3.small"): 2, ("aws", "t3.micro"): 2, ("aws", "m6g.medium"): 1, ("aws", "c6i.metal"): None,
    ("gcp", "c2d-highcpu-16"): 16, ("gcp", "e2-small"): 2, ("gcp", "g2-standard-8"): 8, ("gcp", "n2-highmem-16"): 16,
    ("gcp", "n2-highmem-2"): 2, ("gcp", "n2-standard-8"): 8,
    ("azure", "Standard_B2s"): 2, ("azure", "Standard_D8s_v5"): 8, ("azure", "Standard_E16s_v5"): 16,
    ("azure", "Standard_E2s_v5"): 2, ("azure", "Standard_F16s_v2"): 16, ("azure", "Standard_F2s_v2"): 2,
    ("azure", "Standard_NC8as_T4_v3"): 8,
}


@pytest.mark.parametrize("cloud,machine", sorted(DOCUMENTED_VCPUS))
def test_vcpus_follow_from_the_type_name(cloud, machine):
    assert quotas.vcpus(cloud, machine) == DOCUMENTED_VCPUS[(cloud, machine)]


@pytest.mark.parametrize("size,family", [
    ("Standard_F16s_v2", "Standard FSv2 Family vCPUs"), ("Standard_E8s_v5", "Standard ESv5 Family vCPUs"),
    ("Standard_D8s_v5", "Standard DSv5 Family vCPUs"), ("Standard_B2s", "Standard BS Family vCPUs"),
    ("Standard_NC8as_T4_v3", "Standard NCASv3_T4 Family vCPUs")])
def test_azure_sizes_name_their_family_quota(size, family):
    assert quotas.azure_family_quota(size) == family


def _cases():
    return [REPO / "platform.yaml"] + sorted((REPO / "tests/cases").glob("*/platform.yaml"))


@pytest.mark.parametrize("spec", _cases(), ids=lambda p: Path(p).parent.name or "reference")
def test_every_machine_a_root_creates_is_counted(spec):
    """No row of any shipped spec is unknown, and each quota counts exactly the machines the root creates: the node
    pools Terraform gets (at their bounds) and the data-tier hosts once."""
    plan = compile_file(str(spec)).plan
    for r in plan.regions:
        rows = quotas.demand(r)
        assert all(row["at_min"] is not None for row in rows), (r.name, rows)
        total = next(row for row in rows if row["quota"] == {"aws": quotas.AWS_STANDARD, "gcp": quotas.GCP_ALL_REGIONS,
                                                                "azure": quotas.AZURE_TOTAL}[r.cloud])
        pools = V.node_pools(r)
        counted = [p for p in pools.values() if not (p["spot"] and r.cloud != "gcp")
                   and not (r.cloud == "aws" and p["instance_type"].startswith("g"))]
        hosts = [host_instance_type(r, h.group) for h in r.hosts]
        zones = len(r.zones)
        # what the first apply creates: GKE starts a regional pool with initial_node_count nodes in each zone (the
        # module's expression, held below) and creates the default pool (one node a zone) before removing it
        first = (lambda n: -(-n // zones) * zones) if r.cloud == "gcp" else (lambda n: n)
        low = sum(quotas.vcpus(r.cloud, p["instance_type"]) * first(p["min_nodes"]) for p in counted)
        if r.cloud == "gcp":
            module = (REPO / "templates/terraform/modules/gcp/kubernetes/main.tf.j2").read_text()
            assert "initial_node_count = ceil(each.value.min_nodes / length(var.zones))" in module
            assert "remove_default_node_pool    = true\n  initial_node_count          = 1" in module
            low += quotas.vcpus("gcp", quotas.GKE_DEFAULT_POOL_MACHINE) * zones
        high = sum(quotas.vcpus(r.cloud, p["instance_type"]) * p["max_nodes"] for p in counted)
        fixed = sum(quotas.vcpus(r.cloud, m) for m in hosts)
        assert (total["at_min"], total["at_max"]) == (low + fixed, max(low, high) + fixed), r.name
        if r.cloud == "gcp":
            gpus = sum(p["gpus"] * first(p["min_nodes"]) for p in pools.values() if p["gpus"] and not p["spot"])
            rows_gpu = [row for row in rows if row["unit"] == "GPUs" and not row["quota"].startswith("PREEMPTIBLE")]
            assert sum(row["at_min"] for row in rows_gpu) == gpus, r.name


@pytest.mark.parametrize("spec", _cases(), ids=lambda p: Path(p).parent.name or "reference")
def test_no_quota_maximum_is_below_its_minimum(spec):
    """A quota raised to the "at maximum" figure must still let the first apply through: GKE's default pool (one
    e2-medium a zone, removed once the cluster exists) counts in the first apply only, so the CPUS row of a GCP
    region whose other E2 machine is the bastion read "8 | 2" before."""
    plan = compile_file(str(spec)).plan
    for r in plan.regions:
        for row in quotas.demand(r):
            assert row["at_max"] >= row["at_min"], (r.name, row)


def test_the_gke_default_pool_counts_in_the_maximum_where_nothing_else_outgrows_it(reference):
    gcp = next(r for r in reference.regions if r.cloud == "gcp")
    row = next(row for row in quotas.demand(gcp) if row["quota"] == "CPUS")
    first_apply = quotas.vcpus("gcp", quotas.GKE_DEFAULT_POOL_MACHINE) * len(gcp.zones) + sum(
        quotas.vcpus("gcp", host_instance_type(gcp, h.group)) for h in gcp.hosts
        if host_instance_type(gcp, h.group).startswith("e2-"))
    assert (row["at_min"], row["at_max"]) == (first_apply, first_apply)


def test_the_region_docs_list_the_quotas(reference):
    from compiler.targets.terraform import docs as tf_docs
    for r in reference.regions:
        page = tf_docs.section(reference, r)
        assert "### Compute quotas" in page, r.name
        for row in quotas.demand(r):
            assert f"| {row['at_min']:,} | {row['at_max']:,} |" in page, (r.name, row["quota"])
    # a GPU pool of min 5 over 3 zones starts with 6 GPUs (2 a zone): the figure a project must be raised to
    gcp = next(r for r in reference.regions if r.cloud == "gcp")
    gpu_pool = next(p for p in gcp.settings.kubernetes.node_pools.values() if p.gpus)
    row = next(row for row in quotas.demand(gcp) if row["unit"] == "GPUs")
    assert row["at_min"] == -(-gpu_pool.min_nodes // len(gcp.zones)) * len(gcp.zones) * gpu_pool.gpus
