"""The IR: one immutable plan per region, plus the platform-wide parts.

Emitters read only these objects. Everything derived (zones and subnets, host names, shard
ranges, connection budgets, capacity, per-region budgets, tags) is computed once by
compiler/resolve.py; an emitter never re-derives it.
"""

from __future__ import annotations

from dataclasses import field

from compiler.records import dataclass, deferred, forget
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping, Optional

if TYPE_CHECKING:  # annotations only: importing the IR (verify reads its names) need not build the spec's models
    from compiler.model.platform import Platform, RegionSettings
    from compiler.model.services import BlueGreenStrategy, CanaryStrategy, RollingStrategy, Route


@dataclass(frozen=True)
class Zone:
    """One availability zone of a region: its zone id and its private and public subnets."""

    name: str  # the cloud's zone id: us-east-1a, asia-southeast1-a, "1"
    private_cidr: str
    public_cidr: str


@dataclass(frozen=True)
class Host:
    """A self-managed VM: Terraform creates it, Ansible configures it, the data tier names it."""

    name: str  # <org>-<region>-<short>-<n>, e.g. sixfb-us-east-1-pg-1
    group: str  # postgres_primary, postgres_replicas, pgbouncer, redis_cluster, elasticsearch, bastion
    zone: str
    fqdn: str  # name.<region>.internal.<domain>: the private DNS record Terraform creates
    index: int  # 1-based within its kind
    replica_of: Optional[str] = None  # Redis replicas and PostgreSQL replicas: the primary's name


@dataclass(frozen=True)
class Amounts:
    """A pod's CPU, memory and GPUs: as the spec writes them, and as numbers."""

    cpu: str  # as written in the spec (Kubernetes quantity)
    memory: str
    gpu: int
    cpu_millicores: int
    memory_mib: float


@dataclass(frozen=True)
class ServicePlan:
    """One enabled service of a region, its tier's defaults applied (resolve.service_plans)."""

    name: str
    tier: str
    description: str
    namespace: str
    dns_name: str  # <name>.<namespace>.svc.cluster.local: what Kong targets and peers call
    service_port: int  # the Kubernetes Service's port (equal to the container port: dns_name:port works with or without the mesh)
    image: str  # registry/repository, no tag
    tag: str
    port: int
    health_path: str
    replicas_min: int
    replicas_max: int
    requests: Amounts
    limits: Amounts
    node_pool: str
    gpu_pool: bool
    db_connections_per_pod: int
    depends_on: tuple[str, ...]
    dependents: tuple[str, ...]  # services that call this one (NetworkPolicy ingress)
    uses: tuple[str, ...]
    routes: tuple[Route, ...]
    rollout: CanaryStrategy | BlueGreenStrategy | RollingStrategy
    secrets: Mapping[str, str]
    env: Mapping[str, str]
    egress: tuple = ()  # ExternalHost: Internet hosts the service calls (payment processors, mail, partner APIs)
    writable_paths: tuple[str, ...] = ()  # directories besides /tmp the container writes (emptyDirs; read-only root)


@dataclass(frozen=True)
class Shard:
    """A franchise shard: its database, the franchise ids it holds, its region and PgBouncer."""

    number: int
    database: str  # franchise_shard_<n>
    first_id: int
    last_id: int
    region: str  # its home region
    host: str  # the PgBouncer DNS name that serves it, as the routing table stores it: its region's, or, when its
    port: int  # region is failed over (disaster_recovery.failed_over), its DR partner's (compiler/ir/dr_serving.py)


@dataclass(frozen=True)
class ConnectionBudget:
    """Derived PgBouncer/PostgreSQL connection arithmetic for a region.

    client_connections = sum over services of max replicas x connections per pod
    default_pool_size  = floor((max_connections - reserved) / (pgbouncer hosts x shard dbs)) - reserve_pool
    server_connections = pgbouncer hosts x shard dbs x (default_pool_size + reserve_pool)
    """

    per_service: Mapping[str, int]
    client_connections: int
    max_client_conn: int
    databases: int
    pgbouncer_hosts: int
    default_pool_size: int
    reserve_pool_size: int
    server_connections: int
    postgres_available: int  # max_connections - reserved
    # PgBouncer's LimitNOFILE: one descriptor per client and per server connection (read-write and read-only pools,
    # each database capped at pool + reserve), plus names.PGBOUNCER_NOFILE_MARGIN, rounded up to a multiple of 1024
    pgbouncer_nofile: int = 0


@dataclass(frozen=True)
class PoolCapacity:
    """A node pool's allocatable capacity at max nodes against the demand at max replicas."""

    name: str
    max_nodes: int
    cpu_millicores: int
    memory_mib: float
    gpus: int
    demand_cpu_millicores: int
    demand_memory_mib: float
    demand_gpus: int
    services: tuple[str, ...]


NO_LABELS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Peer:
    """One end of a connection, addressed as every layer sees it.

    kind: `pods` (Kubernetes workloads: namespace + labels for NetworkPolicies), `hosts` (self-managed VMs:
    host group + FQDNs), `managed` (a cloud datastore endpoint in the VPC), `lb` (the region's cloud load
    balancer), `edge` (the CDN), `health-check` (a cloud's probers of the load balancer: Route 53's, an NLB's),
    `external` (an Internet host, or the clients), `cloud-api` (object storage).
    cidrs: the source addresses this end's packets carry when they reach a VM or a cloud firewall (pods keep
    their own addresses on GKE; EKS pods take VPC addresses from the node subnets; AKS overlay pods are
    SNATed to their node), or the destination's range for an egress rule.
    """

    name: str
    kind: str
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=lambda: NO_LABELS)  # one empty map for every peer without labels
    host_group: str = ""
    hosts: tuple[str, ...] = ()
    cidrs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Connection:
    """A path the platform needs: `source` opens a connection to `dest`.

    address:port is what the source dials (a Service DNS name and its Service port, a host FQDN, a
    public name); dest_port is what the destination process listens on (targetPort -> containerPort,
    or the host's port), which every firewall layer must open. tls is the minimum TLS version both
    ends must speak ("" when the hop is not TLS, or TLS is the mesh's own mTLS). layers names, in
    order, every layer that must let the connection through, each emitted from this record:
    `kong` (upstream target), `networkpolicy-egress` / `networkpolicy-ingress`, `istio` (ServiceEntry),
    `cloud-firewall` (security group / VPC firewall / NSG), `nftables` (the host's own firewall),
    `pg_hba`, `prometheus` (a scrape job), `health-check` (a prober of the load balancer: its TLS is the highest it
    speaks, which the listener must accept).
    """

    source: Peer
    dest: Peer
    address: str
    port: int  # the port dialled (Service port for a Kubernetes Service)
    dest_port: int  # the port the destination listens on
    protocol: str  # TCP | UDP
    app_protocol: str  # https, http, postgresql, redis, dns, grpc, ssh, metrics ...
    purpose: str
    tls: str = ""
    layers: tuple[str, ...] = ()
    database: str = ""  # pg_hba: the databases line ("all", "replication", or a comma list)
    user: str = ""  # pg_hba: the role
    # the destination pods' container port name for dest_port (names.SERVICE_PORT_NAME), when the destination is a
    # service's pods: NetworkPolicy ingress rules name it ("" when the port has no name the platform declares)
    dest_port_name: str = ""

    @property
    def id(self) -> str:
        return f"{self.source.name}->{self.dest.name}:{self.dest_port}/{self.protocol.lower()}"


@dataclass(frozen=True)
class Addressing:
    """How each part of the region is addressed on the network (the IR's one source for ranges)."""

    node_cidrs: tuple[str, ...]  # the private subnets: nodes, data hosts, managed endpoints
    public_cidrs: tuple[str, ...]  # the public subnets: load balancer nodes, NAT
    pod_cidr: str  # GKE/AKS pod range (EKS: the node subnets hold the pods) 
    service_cidr: str  # Kubernetes Service ClusterIPs
    pod_source_cidrs: tuple[str, ...]  # what a pod's packets carry as source when they reach a VM
    max_pods_per_node: int  # sized so that every pool's max nodes fit the pod range
    lb_source_cidrs: tuple[str, ...]  # where the load balancer's connections to Kong's pods come from
    # GCP: the proxy-only subnet of the region's internal proxy load balancer (the internal gateway); its proxies
    # reach Kong's pods from it. "" elsewhere.
    proxy_cidr: str = ""
    # Azure: the internal gateway's private address (home-region routing, compiler/ir/network.py): the last usable
    # address of the AKS node subnet, where dynamic allocation (nodes, data hosts) reaches last. The Kong internal
    # load balancer Service pins it and the private DNS record names it. "" elsewhere.
    internal_gateway_ip: str = ""


@dataclass(frozen=True)
class RegionPlan:
    """Everything one region runs, resolved once: what every target emits for the region."""

    name: str
    geo: str
    cloud: str
    cloud_region: str
    location: str
    role: str
    traffic_share: float
    dr_partner: str
    dr_partner_cloud: str
    dr_partner_cloud_region: str
    cidr: str
    zones: tuple[Zone, ...]
    internal_domain: str  # <region>.internal.<domain>
    cluster_name: str  # <org>-<region>: the EKS/GKE/AKS cluster and its kube context (Terraform and Helm agree on it)
    backup_bucket: str  # bucket (Azure: storage account) holding WAL archives and backups; Terraform creates it
    backup_url: str  # s3://<bucket>, gs://<bucket> or azure://<account>/backups: where WAL and dumps go
    data_bucket: str  # bucket (Azure: storage account) for application objects
    settings: RegionSettings
    services: tuple[ServicePlan, ...]  # enabled services, by name
    hosts: tuple[Host, ...]  # self-managed hosts only (managed datastores have none)
    shards: tuple[Shard, ...]
    connections: ConnectionBudget
    capacity: tuple[PoolCapacity, ...]
    monthly_budget: Mapping[str, float]  # category -> amount, traffic-share of the global model
    tags: Mapping[str, str]  # safe as AWS tags, GCP labels and Azure tags
    addressing: Addressing
    # every connection the region needs (compiler/wiring.py), in a fixed order. This and the last three fields are
    # computed when first read (records.deferred): validate reads them for no region, `generate --region` for one.
    wiring: tuple[Connection, ...] = deferred()
    provenance: Mapping[tuple, str] = field(repr=False)  # settings path -> layer that set it
    postgres_ha: Optional[object] = None  # compiler.ir.postgres_ha.PostgresHA: Patroni, etcd, endpoints, standbys
    # compiler.ir.log_volume.LogVolume: access-log documents and spans per day and what they keep on Elasticsearch
    log_volume: Optional[object] = None
    # compiler/ir/identity.py: each ServiceAccount's cloud identity and grants (services, then the operators), and
    # the region's cloud secret-store entries (the containers Terraform creates, never values)
    identities: tuple = deferred(default=())
    secret_entries: tuple = deferred(default=())
    # each service's PostgreSQL role, Redis ACL user, credentials and connection settings (compiler/ir/data_access.py)
    data_access: tuple = deferred(default=())
    # DR serving (compiler/ir/dr_serving.py): the shards of the failed-over regions this region serves as their DR
    # partner, and its PgBouncer's lines for them on the promoted clusters (empty unless the spec fails a region over)
    served_shards: tuple[Shard, ...] = ()
    promoted_pools: tuple = ()

    @property
    def replicates_to_dr_partner(self) -> bool:
        """Whether the cloud's own bucket replication copies this region's data and backup buckets, every key
        unchanged, into its DR partner's (S3 replication, Storage Transfer, Azure object replication): only within
        one cloud, and only when the spec's object_storage.replicate_to_dr_partner asks. The terraform target sets
        the replication up from this, and the partner's standby cluster reads this region's WAL archive from the
        copy because of it (compiler/ir/wal_archive.py)."""
        return self.dr_partner_cloud == self.cloud and self.settings.datastores.object_storage.replicate_to_dr_partner

    def service(self, name: str) -> ServicePlan:
        return next(s for s in self.services if s.name == name)

    def hosts_in(self, group: str) -> tuple[Host, ...]:
        return tuple(h for h in self.hosts if h.group == group)

    def _wired(self, key: tuple) -> tuple[Connection, ...]:
        """The connections from a source name, to a destination name, or through a layer (key: ("from" | "to" |
        "layer", name)), in wiring order, each answer found once per plan (frozen: the wiring never changes).
        Scanning the whole wiring for every question was quadratic (8,000 scans of up to 330 connections at 120
        regions); an index of every name and layer held ~200 tuples per region of which the targets ask ~35 (at
        120 regions ~4 MiB in each process). Kept beside the fields: eq, hash, repr and replace() ignore it."""
        answers = self.__dict__.get("_wired_answers")
        if answers is None:
            answers = self.__dict__["_wired_answers"] = {}
        found = answers.get(key)
        if found is None:
            kind, name = key
            if kind == "from":
                found = tuple(c for c in self.wiring if c.source.name == name)
            elif kind == "to":
                found = tuple(c for c in self.wiring if c.dest.name == name)
            else:
                found = tuple(c for c in self.wiring if name in c.layers)
            answers[key] = found
        return found

    def connections_from(self, name: str) -> tuple[Connection, ...]:
        return self._wired(("from", name))

    def connections_to(self, name: str) -> tuple[Connection, ...]:
        return self._wired(("to", name))

    def identity(self, owner: str):
        """The Identity of a service (by name) or an operator (identity.EXTERNAL_SECRETS, CLUSTER_AUTOSCALER)."""
        return next((i for i in self.identities if i.owner == owner), None)

    def through(self, layer: str) -> tuple[Connection, ...]:
        """The connections a layer must let through."""
        return self._wired(("layer", layer))

    def release(self) -> None:
        """Drop what was computed on first use: the deferred fields' values, the wiring's answers and the derived
        facts. `generate` calls it once a process has emitted the region's last job (compiler/emit.py): at 120
        regions they were ~7 MiB per process, kept to the end. Read again, each is computed again, the same."""
        forget(self)
        self.__dict__.pop("_wired_answers", None)
        self.__dict__.pop("_derived", None)

    def derived(self, key, compute):
        """compute(), once per region plan (until release()): a fact of the region that a target's files and its docs
        section each ask for (helm's wanted Secrets: eight times per region). As PlatformPlan.derived, kept beside the fields (eq,
        hash, repr and replace() ignore it); a caller keeps only small results here, since they live as long as the
        plan."""
        return _derived(self, key, compute)


def _derived(plan, key, compute):
    """compute() once per plan object, kept in its __dict__ beside the fields (a frozen record's eq, hash, repr and
    replace() see only fields)."""
    memo = plan.__dict__.get("_derived")
    if memo is None:
        memo = plan.__dict__["_derived"] = {}
    if key not in memo:
        memo[key] = compute()
    return memo[key]


@dataclass(frozen=True)
class PlatformPlan:
    """The resolved platform: the validated spec, a RegionPlan per region, every shard."""

    spec: Platform  # the validated top level (organization, clouds, geos, edge, slos, ...)
    spec_file: str
    regions: tuple[RegionPlan, ...]  # in spec order
    shards: tuple[Shard, ...]  # every shard, by number
    # With sharding.registry_file: every franchise with its home region and shard. The routing table is then
    # these explicit rows; without a registry it is each shard's first_id..last_id range.
    registry: tuple = ()
    # home region -> the region serving its franchises (compiler/ir/dr_serving.py); a region not in it serves its own
    serving: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # the deployed-facts lock read beside the spec (compiler/ir/deployed.py), None without one: rules R076-R078
    lock: object = None

    def serving_region(self, home: str) -> str:
        """The region that serves `home`'s franchises: `home`, or its DR partner when it is failed over."""
        return self.serving.get(home, home)

    def region(self, name: str) -> RegionPlan:
        """The region named `name` (StopIteration when there is none, as a scan's next() raised). By a dict built once
        per plan: the targets look regions up by name per connection and partner, a scan each made it quadratic."""
        index = self.__dict__.get("_region_by_name")
        if index is None:
            index = {}
            for r in self.regions:
                index.setdefault(r.name, r)
            self.__dict__["_region_by_name"] = index  # not a field: eq, hash, repr and replace() ignore it
        r = index.get(name)
        if r is None:
            raise StopIteration
        return r

    @property
    def region_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.regions)

    def derived(self, key: str, compute):
        """compute(), once per plan: a table every region's files share (the home-routing ranges, franchises per
        shard, the Lua tables), which computed per region made the registry's cost regions x registry. Kept
        beside the fields, not as one: eq, hash, repr and replace() ignore it, as they do _region_by_name."""
        return _derived(self, key, compute)


def frozen_map(d: dict) -> Mapping:
    return MappingProxyType(dict(d))
