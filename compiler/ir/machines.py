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
