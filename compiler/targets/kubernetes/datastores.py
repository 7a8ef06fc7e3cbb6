"""Each service's connection settings to the data tier: a ConfigMap `<service>-datastores` (PgBouncer host and
port, its role and shard databases, the routing table, the Redis cluster seeds, its user and key prefix, the
Elasticsearch endpoints, the bucket), mounted with envFrom beside the Secret of the same name (its PgBouncer and
Redis passwords, which the External Secrets Operator creates: helm target). Both come from the IR's
RegionPlan.data_access (compiler/ir/data_access.py); no value here is secret.

A service that uses postgres or the self-managed elasticsearch also mounts the Secret `<service>-internal-ca` (the
region's internal CA certificate, public; delivered by ESO from the entry Ansible publishes) read-only at
INTERNAL_CA_DIR: its ConfigMap sets PGSSLMODE=verify-full and PGSSLROOTCERT, or ELASTICSEARCH_CA_CERT, to that file
(the Elasticsearch user's password is ELASTICSEARCH_PASSWORD in the Secret, its name ELASTICSEARCH_USERNAME here).
On GCP with a managed Redis, a service that uses redis also mounts `<service>-redis-ca` (the Memorystore
cluster's server CA, public; Terraform writes it to Secret Manager) at REDIS_CA_DIR: REDIS_TLS_CA_FILE names the file.
"""

from __future__ import annotations

from compiler.ir import RegionPlan, ServicePlan
from compiler.ir.data_access import INTERNAL_CA_DIR, INTERNAL_CA_KEY, REDIS_CA_DIR
from compiler.targets.kubernetes.common import MANAGED_BY


def access_of(svc: ServicePlan, region: RegionPlan):
    return next((a for a in region.data_access if a.service == svc.name), None)


def config_map(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    a = access_of(svc, region)
    if a is None:
        return []
    return [{"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": a.name, "namespace": a.namespace,
                          "labels": {"app": svc.name, "app.kubernetes.io/managed-by": MANAGED_BY},
                          "annotations": {"platformc.io/purpose": f"{svc.name}'s data-tier connection settings "
                                                                  "(the passwords are in the Secret of the same name)"}},
             "data": dict(a.settings)}]


def env_from(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    """The ConfigMap, then the Secret (created by its ExternalSecret) when the service has data-tier passwords."""
    a = access_of(svc, region)
    if a is None:
        return []
    out = [{"configMapRef": {"name": a.name}}]
    if a.secrets:
        out.append({"secretRef": {"name": a.name}})
    return out


CA_VOLUME = "internal-ca"
REDIS_CA_VOLUME = "redis-ca"


def _ca_secret_volume(name: str, secret: str, mount_dir: str) -> tuple[dict, dict]:
    """(volume, volumeMount) of a CA certificate Secret (its one key, INTERNAL_CA_KEY), read-only at mount_dir."""
    volume = {"name": name, "secret": {"secretName": secret, "defaultMode": 0o444,
                                       "items": [{"key": INTERNAL_CA_KEY, "path": INTERNAL_CA_KEY}]}}
    return volume, {"name": name, "mountPath": mount_dir, "readOnly": True}


def ca_volume(svc: ServicePlan, region: RegionPlan) -> tuple[dict, dict] | None:
    """(volume, volumeMount) of the region's internal CA certificate, or None when the service needs none."""
    a = access_of(svc, region)
    if a is None or not a.ca_secret:
        return None
    return _ca_secret_volume(CA_VOLUME, a.ca_secret, INTERNAL_CA_DIR)


def redis_ca_volume(svc: ServicePlan, region: RegionPlan) -> tuple[dict, dict] | None:
    """(volume, volumeMount) of the managed Redis server CA (GCP Memorystore), or None when the service needs none."""
    a = access_of(svc, region)
    if a is None or not a.redis_ca_secret:
        return None
    return _ca_secret_volume(REDIS_CA_VOLUME, a.redis_ca_secret, REDIS_CA_DIR)
