"""The data tier: PostgreSQL, PgBouncer, sharding, Redis, Elasticsearch and object storage."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import model_validator

from compiler.model.base import F, FD, Model, Port, PositiveInt, SecretRef, InstanceType

Deployment = Literal["self-managed", "managed"]


class MachineSize(Model):
    """A host size in cloud-neutral terms plus each cloud's instance type."""

    vcpus: PositiveInt = F(description="Virtual CPUs per host.")
    memory_gib: PositiveInt = F(description="Memory per host in GiB; memory settings are derived from it.")
    disk_gib: PositiveInt = F(100, description="Data volume per host in GiB.")
    instance_types: dict[Literal["aws", "gcp", "azure"], InstanceType] = F(
        description="Instance type per cloud, e.g. `r6i.4xlarge`, `n2-highmem-16`, `Standard_E16s_v5`.")


class ReplicaScaling(Model):
    """When to add or remove a read replica, judged by the mean query time of frequent statements."""

    scale_up_mean_query_ms: PositiveInt = F(100, description="Add a replica when the mean query time exceeds this.")
    scale_down_mean_query_ms: PositiveInt = F(20, description="Remove a replica when the mean query time stays below this.")
    min_replicas: int = F(2, description="Never suggest going below this many replicas.", ge=0, le=15)
    min_calls: PositiveInt = F(1000, description="Only statements called at least this often count (pg_stat_statements calls).")


class Postgres(Model):
    """PostgreSQL: the primary store, sharded by franchise_id."""

    deployment: Deployment = F("self-managed", description="`self-managed` VMs configured by Ansible, or the cloud's managed service (RDS, Cloud SQL, Azure Flexible Server).")
    version: Literal[15, 16, 17] = F(15, description="PostgreSQL major version.")
    extensions: list[Literal["vector", "pg_partman", "pg_stat_statements", "timescaledb", "pgcrypto", "postgis"]] = F(
        ["vector", "pg_partman", "pg_stat_statements", "timescaledb"],
        description="Extensions created in every shard database (`vector` is pgvector).")
    instance: MachineSize = F(description="Size of the primary and of each replica.")
    multi_az: bool = F(True, description="Place the primary and its replicas in different zones.")
    read_replicas: int = F(3, description="Streaming read replicas per region.", ge=0, le=15)
    cross_region_standby: bool = F(True, description="Keep a streaming standby of this region's primary in its DR partner region.")
    max_connections: int = F(500, description="PostgreSQL max_connections on each server.", ge=20, le=10000)
    reserved_connections: int = F(20, description="Connections kept for superusers, replication and maintenance, not for PgBouncer pools.", ge=3, le=1000)
    replica_scaling: ReplicaScaling = FD(ReplicaScaling, description="Read-replica scaling thresholds (alerts suggest the change; read_replicas is the applied count).")
    max_replication_lag_seconds: float = F(1.0, description="Replication lag the DR standby must stay under (alerted on).", gt=0)
    wal_archive: bool = F(True, description="Continuously archive WAL to the region's backup bucket (point-in-time recovery).")
    admin_password: SecretRef = F(description="Reference to the superuser password.")
    replication_password: SecretRef = F(description="Reference to the replication user's password.")


class PgBouncer(Model):
    """PgBouncer in front of each region's PostgreSQL primary."""

    pool_mode: Literal["session", "transaction", "statement"] = F("transaction", description="Pooling mode; transaction pooling suits stateless API pods.")
    max_client_conn: int = F(10000, description="Client connections PgBouncer accepts; must cover every pod's connections at maximum scale.", ge=1, le=100000)
    reserve_pool_size: int = F(5, description="Extra server connections per pool for bursts.", ge=0, le=100)
    hosts: int = F(2, description="PgBouncer hosts per region (for availability).", ge=1, le=10)
    port: Port = F(6432, description="Port PgBouncer listens on.")
    auth_user: str = F("pgbouncer", description="User PgBouncer's auth_query runs as (no userlist of plaintext passwords).", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    auth_password: SecretRef = F(description="Reference to the auth_user's password.")


class Sharding(Model):
    """Tenant sharding by franchise_id across regions."""

    key: str = F("franchise_id", description="The column tenants are sharded by.", pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    franchises_per_shard: PositiveInt = F(1000, description="Franchise ids per shard database (ids 1-1000 in shard 1, ...).")
    expected_franchises: PositiveInt = F(10000, description="Franchise locations the platform serves today.")
    capacity_franchises: PositiveInt = F(20000, description="Franchise ids to allocate shards for (today's count plus growth "
                                         "headroom); left out, twice `expected_franchises`.")
    database_prefix: str = F("franchise_shard_", description="Shard database name prefix; the shard number follows.", pattern=r"^[a-z_][a-z0-9_]{0,40}$")
    @model_validator(mode="before")
    @classmethod
    def _capacity_follows_expected(cls, data):
        """capacity_franchises left out: twice the expected franchises (not a fixed 20,000 for any platform)."""
        if isinstance(data, dict) and "capacity_franchises" not in data and isinstance(data.get("expected_franchises"), int) \
                and not isinstance(data.get("expected_franchises"), bool):
            data = {**data, "capacity_franchises": 2 * data["expected_franchises"]}
        return data

    registry_file: Optional[str] = F(None, description="Optional CSV (franchise_id,home_region,jurisdiction) relative to the spec; overrides traffic-proportional placement.",
                                     pattern=r"^[A-Za-z0-9._/-]{1,200}$")


class SaveRule(Model):
    """Snapshot when at least `changes` keys changed within `seconds`."""

    seconds: PositiveInt = F(description="Time window in seconds.")
    changes: PositiveInt = F(description="Changed keys that trigger a snapshot within the window.")


class Redis(Model):
    """Redis Cluster: the L2 cache."""

    deployment: Deployment = F("self-managed", description="Self-managed cluster nodes (Ansible) or the cloud's managed cache.")
    version: str = F("7.0", description="Redis version the nodes run.", pattern=r"^[0-9]+\.[0-9]+$")
    primaries: int = F(3, description="Cluster primaries (hash-slot owners); at least 3.", ge=1, le=100)
    replicas_per_primary: int = F(1, description="Replicas per primary, in other zones.", ge=0, le=5)
    instance: MachineSize = F(description="Size of each cluster node.")
    port: Port = F(6379, description="Client port; the cluster bus is port + 10000.")
    maxmemory_mb: PositiveInt = F(4096, description="maxmemory per node in MiB (the seed's 4gb).")
    maxmemory_policy: Literal["allkeys-lru", "allkeys-lfu", "volatile-lru", "volatile-lfu", "noeviction"] = F(
        "allkeys-lru", description="Eviction policy when maxmemory is reached.")
    cluster_node_timeout_ms: int = F(5000, description="Milliseconds a node may be unreachable before failover.", ge=100, le=600000)
    appendonly: bool = F(True, description="Append-only-file persistence.")
    appendfsync: Literal["always", "everysec", "no"] = F("everysec", description="AOF fsync policy.")
    save_rules: list[SaveRule] = FD(
        lambda: [SaveRule(seconds=900, changes=1), SaveRule(seconds=300, changes=10), SaveRule(seconds=60, changes=10000)],
        description="RDB snapshot rules (`save <seconds> <changes>`).")
    tcp_keepalive_seconds: int = F(300, description="TCP keepalive for client connections.", ge=0, le=7200)
    memory_headroom_percent: int = F(25, description="Node memory kept free above maxmemory (fork for RDB/AOF rewrite, buffers).", ge=0, le=90)
    password: SecretRef = F(description="Reference to the ACL password of the application user.")


class Elasticsearch(Model):
    """Elasticsearch: full-text search and log analytics."""

    deployment: Deployment = F("self-managed", description="Self-managed nodes (Ansible) or the cloud's managed search (OpenSearch on AWS).")
    version: str = F("8.15", description="Elasticsearch version.", pattern=r"^[0-9]+\.[0-9]+$")
    nodes: int = F(3, description="Data/master-eligible nodes per region (odd, for quorum).", ge=1, le=99)
    instance: MachineSize = F(description="Size of each node.")
    heap_percent: int = F(50, description="JVM heap as a share of node memory (capped at 31 GiB).", ge=10, le=75)
    clients: dict[Literal["fluent-bit", "jaeger"], SecretRef] = FD(dict, description="Per in-cluster client (log and trace shippers), a reference to a whole secret-store entry (no `#key`) with the fields `username`, `password` and `ca_crt` (the internal CA that issued the nodes' certificates, PEM); synced into the client's Secret.")


class Lifecycle(Model):
    """Object-storage lifecycle transitions."""

    infrequent_access_after_days: PositiveInt = F(30, description="Move objects to the infrequent-access tier after this many days.")
    archive_after_days: PositiveInt = F(730, description="Move objects to the archive tier after this many days (the seed: 2 years).")
    noncurrent_expire_after_days: PositiveInt = F(90, description="Delete non-current object versions after this many days.")


class ObjectStorage(Model):
    """The region's object storage (file uploads, backups, WAL archive)."""

    versioning: bool = F(True, description="Keep object versions.")
    replicate_to_dr_partner: bool = F(True, description="Replicate objects to the DR partner region's bucket.")
    intelligent_tiering: bool = F(True, description="Let the cloud move objects between access tiers automatically where it can.")
    lifecycle: Lifecycle = FD(Lifecycle, description="Lifecycle transitions.")


class Datastores(Model):
    """Every data store of a region."""

    postgres: Postgres = F(description="PostgreSQL.")
    pgbouncer: PgBouncer = F(description="PgBouncer connection pooling.")
    redis: Redis = F(description="Redis Cluster.")
    elasticsearch: Elasticsearch = F(description="Elasticsearch.")
    object_storage: ObjectStorage = FD(ObjectStorage, description="Object storage.")
