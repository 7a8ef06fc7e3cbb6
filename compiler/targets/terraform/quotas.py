"""The compute quotas a region root needs: vCPUs (and GCP's GPUs) per quota of its cloud, at the node pools'
minimum (what the first apply creates: a smaller quota fails the apply) and at their maximum (what the autoscaler
may reach: a smaller quota fails a scale-out, silently but for the autoscaler's events).

Clouds count machines against quotas in vCPUs, per family group and per purchase option: AWS's Standard, G and VT
and P groups, on demand and spot (EC2 User Guide, "Amazon EC2 service quotas" and "Spot Instance quotas"); GCP's
per-family CPU quotas and per-model GPU quotas, regional, with PREEMPTIBLE_ ones for Spot VMs (Compute Engine
"Allocation quotas"); Azure's total regional vCPUs, per-family vCPUs and total Spot vCPUs (Azure "vCPU quotas").
A machine's vCPUs follow from its type name in all three naming schemes; a name that does not parse is reported as
unknown rather than guessed.
"""

from __future__ import annotations

import re

from compiler.ir import RegionPlan
from compiler.ir.machines import GCP_SHARED_CORE_VCPUS as _GCP_SHARED_CORE
from compiler.ir.machines import GKE_DEFAULT_POOL_MACHINE, host_instance_type

_AWS_SIZE = re.compile(r"^(?P<family>[a-z]+)(?P<gen>\d+)[a-z-]*\.(?:(?P<n>\d+)?xlarge|(?P<word>nano|micro|small|medium|large))$")
_GCP_TYPE = re.compile(r"^(?P<family>[a-z]\d[a-z]?)-(?P<kind>[a-z]+)-(?P<n>\d+)$")
_AZURE_SIZE = re.compile(r"^Standard_(?P<family>[A-Z]+)(?P<n>\d+)(?:-\d+)?(?P<extra>[a-z]*)(?P<accel>_[A-Z]\d+[A-Za-z]*)?"
                         r"(?:_v(?P<v>\d+))?$")
_AWS_BURSTABLE_WORDS = {"nano": 2, "micro": 2, "small": 2, "medium": 2, "large": 2}  # T3/T3a/T4g: 2 vCPUs up to large
_AWS_WORDS = {"medium": 1, "large": 2}

AWS_STANDARD = "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances (L-1216C47A)"
AWS_STANDARD_SPOT = "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests (L-34B43A08)"
AWS_G_VT = "Running On-Demand G and VT instances (L-DB2E81BA)"
AWS_G_VT_SPOT = "All G and VT Spot Instance Requests (L-3819A6DF)"
_AWS_STANDARD_FAMILIES = set("acdhimrtz")
_GCP_CPU_QUOTAS = {"e2": "CPUS", "n1": "CPUS", "n2": "N2_CPUS", "n2d": "N2D_CPUS", "c2": "C2_CPUS", "c2d": "C2D_CPUS",
                   "c3": "C3_CPUS"}
_GCP_GPUS = {"g2": "NVIDIA_L4_GPUS"}  # accelerator-optimized families: each machine type comes with its GPUs
GCP_ALL_REGIONS = "CPUS_ALL_REGIONS (global: every region's vCPUs count)"
AZURE_TOTAL = "Total Regional vCPUs"
AZURE_SPOT = "Total Regional Spot vCPUs"


def vcpus(cloud: str, machine: str) -> int | None:
    """The vCPUs a machine type counts for in its cloud's quotas, by its name; None when the name does not parse."""
    if cloud == "aws":
        m = _AWS_SIZE.match(machine)
        if not m:
            return None
        if m["word"]:
            words = _AWS_BURSTABLE_WORDS if m["family"] == "t" else _AWS_WORDS
            return words.get(m["word"])
        return 4 * int(m["n"] or 1)
    if cloud == "gcp":
        if machine in _GCP_SHARED_CORE:
            return _GCP_SHARED_CORE[machine]
        m = _GCP_TYPE.match(machine)
        return int(m["n"]) if m else None
    m = _AZURE_SIZE.match(machine)
    return int(m["n"]) if m else None


def _aws_quota(machine: str, spot: bool) -> str:
    family = machine.split(".", 1)[0]
    if family.startswith(("g", "vt")):
        return AWS_G_VT_SPOT if spot else AWS_G_VT
    if family[0] in _AWS_STANDARD_FAMILIES:
        return AWS_STANDARD_SPOT if spot else AWS_STANDARD
    return f"the EC2 {'Spot' if spot else 'On-Demand'} vCPU quota of the {family.upper()} family"


def _gcp_family(machine: str) -> str:
    return machine.split("-", 1)[0]


def _gcp_quota(machine: str, spot: bool) -> str:
    family = _gcp_family(machine)
    name = _GCP_CPU_QUOTAS.get(family)
    if name is None:
        return f"the {family.upper()} family's CPU quota"
    return f"PREEMPTIBLE_CPUS (without it, {name})" if spot else name


def azure_family_quota(machine: str) -> str:
    """Azure's per-family vCPU quota of a size: Standard_F16s_v2 -> Standard FSv2 Family vCPUs,
    Standard_NC8as_T4_v3 -> Standard NCASv3_T4 Family vCPUs."""
    m = _AZURE_SIZE.match(machine)
    if not m:
        return f"the vCPU quota of {machine}'s family"
    version = f"v{m['v']}" if m["v"] else ""
    return f"Standard {m['family']}{m['extra'].upper()}{version}{m['accel'] or ''} Family vCPUs"


def _lines(cloud: str, machine: str, spot: bool, gpus_per_machine: int) -> list[tuple[str, str, int | None]]:
    """(quota, unit, amount per machine) of one machine."""
    n = vcpus(cloud, machine)
    if cloud == "aws":
        return [(_aws_quota(machine, spot), "vCPUs", n)]
    if cloud == "gcp":
        out = [(_gcp_quota(machine, spot), "vCPUs", n), (GCP_ALL_REGIONS, "vCPUs", n)]
        gpu = _GCP_GPUS.get(_gcp_family(machine))
        if gpus_per_machine:
            name = gpu if gpu else "the quota of the attached GPU model"
            out.append((f"PREEMPTIBLE_{name}" if spot and gpu else name, "GPUs", gpus_per_machine))
        return out
    if spot:
        return [(AZURE_SPOT, "vCPUs", n)]
    return [(AZURE_TOTAL, "vCPUs", n), (azure_family_quota(machine), "vCPUs", n)]


def demand(region: RegionPlan) -> list[dict]:
    """One row per quota: {quota, unit, at_min, at_max, machines}; amounts None when a machine's vCPUs are unknown.
    The node pools count at their bounds, the data-tier hosts (always on demand) once. at_max is never below at_min:
    GKE's default pool counts only in the first apply (it is removed once the cluster exists), and a quota raised to
    the maximum must still let that apply through."""
    cloud = region.cloud
    rows: dict[tuple[str, str], dict] = {}

    def add(machine: str, spot: bool, gpus: int, low: int, high: int) -> None:
        for quota, unit, each in _lines(cloud, machine, spot, gpus):
            row = rows.setdefault((quota, unit), {"quota": quota, "unit": unit, "at_min": 0, "at_max": 0,
                                                  "machines": []})
            if machine not in row["machines"]:
                row["machines"].append(machine)
            if each is None or row["at_min"] is None:
                row["at_min"] = row["at_max"] = None
            else:
                row["at_min"] += each * low
                row["at_max"] += each * high

    zones = len(region.zones)
    for _name, pool in sorted(region.settings.kubernetes.node_pools.items()):
        low = pool.min_nodes
        if cloud == "gcp":  # a regional pool starts with initial_node_count in every zone: ceil(min / zones) each
            low = -(-pool.min_nodes // zones) * zones
        add(pool.instance_types[cloud], pool.spot, pool.gpus, low, pool.max_nodes)
    if cloud == "gcp":  # GKE creates its default pool (one e2-medium a zone) with the cluster, then removes it
        add(GKE_DEFAULT_POOL_MACHINE, False, 0, zones, 0)
    for host in region.hosts:
        add(host_instance_type(region, host.group), False, 0, 1, 1)
    for row in rows.values():  # the maximum is a quota the first apply must fit too: GKE's default pool exists then
        if row["at_min"] is not None:
            row["at_max"] = max(row["at_min"], row["at_max"])
    return list(rows.values())
