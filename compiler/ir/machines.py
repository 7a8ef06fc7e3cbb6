"""The machines platformc provisions, read by the Terraform target (what the roots create) and by the cost estimate
(what it prices), so the two cannot drift: one place for every machine type and fixed capacity.

The spec sizes the node pools and the PostgreSQL, Redis and Elasticsearch hosts (`instance_types.<cloud>`);
PgBouncer and the bastion have no size field, so they get a small general-purpose machine per cloud (UNSIZED_HOSTS).
"""

from __future__ import annotations

UNSIZED_HOSTS = {
    "pgbouncer": {"aws": "c6i.large", "gcp": "n2-standard-2", "azure": "Standard_F2s_v2"},
    "bastion": {"aws": "t3.small", "gcp": "e2-small", "azure": "Standard_B2s"},
}
# The largest data volume of the disk type each cloud's data hosts get (the terraform modules' data_hosts): AWS EBS
# gp3 16 TiB, GCP pd-ssd 64 TB (65,536 GB), Azure Premium SSD (P80) 32,767 GiB. A host that runs DR standby
# clusters holds their data on the same volume (data_disk_gib), so its volume can pass the spec's disk_gib (rule R059).
MAX_DATA_DISK_GIB = {"aws": 16_384, "gcp": 65_536, "azure": 32_767}
# cluster-autoscaler on AWS needs GPU nodes labelled before they join (its cloudprovider/aws README, "Special note
# on GPU instances"): the device plugin advertises nvidia.com/gpu only minutes later, and until then the
# autoscaler takes a new node for one without GPUs and adds more for the same pending pods. The value names the
# GPU of the EC2 family (AWS's accelerated computing instance types), in the README's nvidia-tesla-k80 style.
AWS_GPU_LABEL = "k8s.amazonaws.com/accelerator"
AWS_GPU_ACCELERATORS = {
    "p3": "nvidia-tesla-v100", "p3dn": "nvidia-tesla-v100", "p4d": "nvidia-a100", "p4de": "nvidia-a100",
    "p5": "nvidia-h100", "g4dn": "nvidia-tesla-t4", "g5": "nvidia-a10g", "g6": "nvidia-l4", "g6e": "nvidia-l40s",
}
# GCP's shared-core E2 types count 2 vCPUs in the quotas (bursting), which their names do not say; GKE's default pool,
# created with a cluster and removed once the cluster's own pools exist, runs e2-medium without a node_config.
GCP_SHARED_CORE_VCPUS = {"e2-micro": 2, "e2-small": 2, "e2-medium": 2}
GKE_DEFAULT_POOL_MACHINE = "e2-medium"
AZURE_GATEWAY_CAPACITY = (2, 10)  # Application Gateway (WAF_v2) autoscale units of the Azure region root (min, max)


def host_size(region, group: str):
    """The spec's MachineSize of a host group (None for the unsized groups: PgBouncer, the bastion)."""
    ds = region.settings.datastores
    return {"postgres_primary": ds.postgres.instance, "postgres_replicas": ds.postgres.instance,
            "redis_cluster": ds.redis.instance, "elasticsearch": ds.elasticsearch.instance}.get(group)


def host_instance_type(region, group: str) -> str:
    """The machine type a host of `group` runs in `region` (its cloud's)."""
    size = host_size(region, group)
    return size.instance_types[region.cloud] if size else UNSIZED_HOSTS[group][region.cloud]


def data_disk_gib(plan, region, host) -> int:
    """The data volume (GiB) of `host` (an ir.Host of `region`), 0 for the unsized groups: the spec's disk_gib, and on
    a PostgreSQL host that runs DR standby clusters, their sources' volumes too (compiler/ir/postgres_sizing.py)."""
    from compiler.ir.postgres_sizing import own_volume_gib, standby_disk_gib
    size = host_size(region, host.group)
    if size is None:
        return 0
    if host.group.startswith("postgres"):  # the part PostgreSQL's WAL and temporary-file limits are fractions of
        return own_volume_gib(region) + standby_disk_gib(plan, region, host.name)
    return size.disk_gib


def aws_gpu_accelerator(instance_type: str) -> str:
    """The k8s.amazonaws.com/accelerator value of an EC2 GPU instance type. An unknown family is refused rather
    than left unlabelled (the autoscaler would over-scale the pool) or guessed (the value names the GPU)."""
    family = instance_type.partition(".")[0]
    if family not in AWS_GPU_ACCELERATORS:
        raise ValueError(f"instance type {instance_type}: no NVIDIA GPU known for EC2 family {family!r} (known: "
                         f"{', '.join(sorted(AWS_GPU_ACCELERATORS))}); add it to AWS_GPU_ACCELERATORS in "
                         "compiler/ir/machines.py")
    return AWS_GPU_ACCELERATORS[family]
