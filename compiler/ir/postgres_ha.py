"""PostgreSQL high availability: the Patroni cluster of a region, its etcd members, the endpoints PgBouncer dials,
and the standby clusters a region runs for the regions whose DR partner it is (RegionPlan.postgres_ha).

- Patroni (Debian `patroni` 3.0) runs beside PostgreSQL on every PostgreSQL host of the region; one scope per
  region, `<org>-<region>`. Its DCS is etcd (Debian `etcd-server`): three members on the first three PostgreSQL
  hosts (one per zone as the hosts are placed), padded with the PgBouncer hosts when there are fewer; one member
  when the region has fewer than three data hosts (no quorum to lose, no failover either: say so in the docs).
- PgBouncer reaches the leader through the region's internal load balancer: `postgres.<internal domain>`, whose
  health check is Patroni's `GET /primary` on PATRONI_REST_PORT (200 only on the leader); the read-only pool dials
  `postgres-replicas.<internal domain>`, checked with `GET /replica` (200 on a running replica that streams); the
  DR partner's standby cluster streams from `postgres-sync.<internal domain>`, checked with `GET /sync` (200 only on
  the synchronous replica). The terraform target creates the load balancers and their DNS records from these facts
  (`endpoints`, read by compiler/targets/terraform/values.py postgres_endpoints), the sync endpoint where a standby
  dials it.
- On Azure the endpoints are the frontends of one internal load balancer, and each delivers to a port of its own on
  the members (`backend_port`). A NIC IP configuration may sit in the backend pools of one internal load balancer
  only (Microsoft Learn, "Azure Load Balancer limits"; the compute API's loadBalancerBackendAddressPools: "one
  public and one internal load balancer"), so the members' `primary` configuration cannot be behind one load
  balancer per endpoint; and rules of one load balancer over the same backend pool must each deliver to a backend
  port of their own unless they use Floating IP ("Multiple frontends for Azure Load Balancer"; Azure refuses the
  rule: "... must not be used with the same backend ip ..."). Floating IP delivers the packets still addressed to
  the frontend's IP, which a member drops unless it holds that address. So the leader's rule delivers to
  POSTGRES_PORT and the replicas' and sync rules to AZURE_BACKEND_PORTS, which each member's host firewall redirects
  to POSTGRES_PORT (the ansible target's common_port_redirects: a nat prerouting redirect, applied before the input
  filter, so the filter and pg_hba see PostgreSQL's own port and the client's address; the NSG, in front of the
  host, sees the backend port: `arrival_port`). AWS's and GCP's load balancers have no such limit: every endpoint
  delivers to POSTGRES_PORT there.
- Why the standby streams from the synchronous replica and not the leader: a leader sends its WAL to every
  walsender at once, so when it dies an asynchronous standby may hold WAL the promoted replica never received, and
  its timeline no longer continues the new leader's ("requested starting point ... is not in this server's
  history", seen in the failover drill). The synchronous replica is the member Patroni promotes, and a cascaded
  standby never holds more than it: it follows the new timeline. A one-member region has no synchronous replica:
  the standby streams from its leader endpoint. While a region's only replica is down, the sync endpoint has no
  member and the standby replays the WAL archive alone (restore_command; how far behind, below).
- A region whose DR partner it is runs each such region's standby cluster (Patroni `standby_cluster`): on up to
  two of its own PostgreSQL hosts, on a port and REST port of its own, fed by streaming replication from the
  partner's sync endpoint plus the partner's WAL archive (wal-g wal-fetch from the copy replicated into this
  region's own bucket, or the partner's bucket where there is none: compiler/ir/wal_archive.py).
- In the region, `synchronous_mode`: a commit returns only when one in-region replica has it, so a failover in
  the region loses no committed transaction (the spec's RPO allows a minute; the region keeps zero). Across regions
  replication is asynchronous: the standby trails by the streaming lag, and only streaming holds the RPO. While the
  stream is down the standby replays what restore_command finds in the archive it reads: the source archives a
  segment at least every archive_timeout, but the copy in the partner's bucket arrives only after the bucket
  replication's own delay (wal_archive.REPLICATION_DELAY: S3 Replication Time Control 99.99 % within 15 minutes; no
  stated bound for Storage Transfer Service or Azure object replication), so it can trail by far more than the RPO.
  Hence the alerts page on the stream: DrStandbyLagging and DrStandbyNotStreaming in the source region, and
  DrRegionMayBeLost in the partner, which outlives the source (compiler/ir/dr_watch.py).
- DCS failsafe_mode (Patroni 3.0, docs/dcs_failsafe_mode.rst; ha.py _handle_dcs_error, check_failsafe_topology) on
  every cluster, the region's own and each standby cluster (which keeps it when the DR runbook promotes it). Without
  it a leader that cannot update its leader key demotes itself: etcd losing its quorum (stopped on two of its three
  members for maintenance, its NOSPACE alarm, its peer port cut off) stopped the region's writes although every
  PostgreSQL member was healthy. With it the leader keeps running while it reaches every member the `/failsafe` key
  lists (the members when the key was last written) over their REST API (`POST /failsafe`, with the REST API's
  credentials and CA, which every member shares: the wiring's member-to-member REST connection), every loop_wait;
  one member it cannot reach and it demotes as before. A replica that hears from it within the TTL does not race for
  the key, and only a member the key lists may take it later: no member can lead beside it. Nothing can fail over
  while etcd is down, as before, and a stopped host takes its PostgreSQL member with it (a resize that stops every
  data host at once still stops the writes: one host at a time). A leader kept so answers `GET /primary` with 200
  (its ha.is_leader()), so the load balancers keep sending writes to it, and the split-brain fence (FENCE_LAYER),
  which asks the partner's promoted copy `GET /primary` first, still sees that copy leading while its etcd is down.
  A standby leader is in recovery, not a leader to PostgreSQL: a standby cluster is not demoted either way.
"""

from __future__ import annotations

from compiler.records import dataclass

from compiler.ir.names import (ETCD_CLIENT_PORT, ETCD_METRICS_PORT, ETCD_PEER_PORT, PATRONI_REST_PORT, POSTGRES_PORT,
                               POSTGRES_STANDBY_PORT, PATRONI_STANDBY_REST_PORT)

LEADER_ENDPOINT = "postgres"  # postgres.<internal domain>: the internal load balancer in front of the leader
REPLICA_ENDPOINT = "postgres-replicas"  # postgres-replicas.<internal domain>: in front of the streaming replicas
SYNC_ENDPOINT = "postgres-sync"  # postgres-sync.<internal domain>: in front of the synchronous replica (the DR standby's source)
# Patroni's REST check of the sync endpoint: 200 only on the synchronous standby. Beside the endpoint, not with the
# leader's and replicas' paths in compiler/ir/names.py: only this module and the terraform target name it.
SYNC_HEALTH_PATH = "/sync"
# Azure: the members' port each endpoint's load-balancing rule delivers to (the module docstring says why they
# differ). Clear of every port a member serves: besides its own cluster's, it runs the standby clusters of the
# regions whose DR partner it is on POSTGRES_STANDBY_PORT and up (one per such region, up to 199: 5433 is taken in
# the reference), their REST APIs on PATRONI_STANDBY_REST_PORT and up, etcd and the exporters; a redirect of one of
# those would hand its connections to the region's own PostgreSQL.
AZURE_BACKEND_PORTS = {"leader": POSTGRES_PORT, "replicas": 15433, "sync": 15434}
NAMESPACE = "/service/"  # Patroni's key prefix in etcd (its default)
ETCD_MEMBERS = 3
# etcd's housekeeping, as its operations guide ("Maintenance", v3.4) sets it out: history compaction, defragmentation,
# a space quota. etcd keeps every revision of every key until it is compacted, and Patroni rewrites each member key,
# the leader key and /status every loop_wait (10 s) in every cluster on a region's etcd (its own and the standby
# clusters it runs): ~57 MB of history a day in the reference us-east-1. Uncompacted, the backend passes the quota
# within weeks; etcd then raises the NOSPACE alarm and refuses writes, and Patroni can neither renew nor take a
# leader key (no failover). Periodic compaction keeps one hour of history (Patroni reads only current keys and
# watches from now); later writes reuse the compacted pages, and the daily defragmentation gives them back to the
# file system, one member at a time (a member serves nothing while it defragments).
ETCD_AUTO_COMPACTION_MODE = "periodic"
ETCD_AUTO_COMPACTION_RETENTION = "1h"
# etcd's own default (2 GiB), stated so the alert and the docs name the figure: an hour of Patroni's history is a
# few MB, so the quota only fences a runaway writer; etcd suggests at most 8 GiB (its MaxQuotaBytes)
ETCD_QUOTA_BACKEND_BYTES = 2 * 1024 ** 3
# Prometheus scrapes each member's metrics listener (ETCD_METRICS_PORT) and pages when a member's backend has held
# more than this share of the quota for ETCD_QUOTA_ALERT_FOR (the monitoring target's EtcdDatabaseNearQuota; the
# region docs' runbook names both): 80 % of 2 GiB leaves ~400 MB to act in, a week of the reference us-east-1's
# history (~57 MB a day) were compaction to stop altogether.
ETCD_QUOTA_ALERT_SHARE = 0.8
ETCD_QUOTA_ALERT_FOR = "10m"
# The first member defragments at 03:30 (the host's time), the next an hour later, and so on: never two at once
ETCD_DEFRAG_FIRST_HOUR = 3


@dataclass(frozen=True)
class StandbyCluster:
    """A Patroni standby cluster this region runs for another region (the one whose DR partner it is)."""

    of_region: str  # the region whose data it holds
    scope: str  # its own Patroni scope: <org>-<of_region>-standby
    hosts: tuple[str, ...]  # this region's host names that run a member
    port: int  # PostgreSQL's port of this cluster on those hosts
    rest_port: int  # Patroni's REST port of this cluster
    data_dir: str
    config_dir: str  # the source region's postgresql.conf and pg_hba.conf, copied from generated/datastores/<of_region>/
    primary_host: str  # the source region's sync endpoint (streaming replication over the inter-region network)
    primary_port: int


@dataclass(frozen=True)
class PostgresHA:
    """A region's Patroni cluster: members, etcd, ports, endpoints, settings and standbys."""

    scope: str  # Patroni's cluster name: <org>-<region>
    namespace: str
    members: tuple[str, ...]  # host names of the PostgreSQL hosts (every one runs Patroni)
    etcd_hosts: tuple[str, ...]  # host names of the etcd members
    etcd_fqdns: tuple[str, ...]
    etcd_group: str  # the inventory group whose firewall opens the etcd ports (a parent of every member's group)
    etcd_client_port: int
    etcd_peer_port: int
    etcd_metrics_port: int  # each member's metrics listener (plain HTTP, /metrics and /health): Prometheus scrapes it
    rest_port: int
    leader_endpoint: str  # FQDN of the internal load balancer in front of the leader (health check GET /primary)
    replica_endpoint: str  # FQDN of the one in front of the replicas (GET /replica)
    sync_endpoint: str  # FQDN of the one in front of the synchronous replica (GET /sync): the DR standby's source
    # The members' port each endpoint's load balancer delivers to: POSTGRES_PORT, but on Azure AZURE_BACKEND_PORTS
    # (which the members redirect to POSTGRES_PORT)
    leader_backend_port: int
    replica_backend_port: int
    sync_backend_port: int
    synchronous: bool
    ttl: int  # Patroni's leader key TTL (s): a dead leader is noticed within it
    loop_wait: int
    retry_timeout: int
    # Patroni's DCS failsafe_mode (its dynamic configuration): the module docstring says why and when it holds
    failsafe: bool
    data_dir: str
    config_dir: str
    standbys: tuple[StandbyCluster, ...]  # clusters of other regions this region runs


@dataclass(frozen=True)
class Endpoint:
    """One PostgreSQL endpoint a region's load balancing serves: the Terraform modules' key, the name in the private
    zone, Patroni's REST path its health check requests, and the members' port it delivers to."""

    key: str  # leader, replicas, sync
    fqdn: str
    health_path: str
    backend_port: int


def endpoints(region) -> tuple[Endpoint, ...]:
    """The region's PostgreSQL endpoints: the leader's; the replicas' when the cluster has replicas; the synchronous
    replica's only where a connection dials it (compiler/wiring.py: the DR partner's standby cluster, when the region
    has replicas to be synchronous; without, it streams from the leader endpoint). Empty without a Patroni cluster.
    Any member may lead or be the synchronous one: each endpoint balances over all of them."""
    from compiler.ir.names import PATRONI_LEADER_HEALTH_PATH, PATRONI_REPLICA_HEALTH_PATH
    ha = getattr(region, "postgres_ha", None)
    if ha is None:
        return ()
    out = [Endpoint("leader", ha.leader_endpoint, PATRONI_LEADER_HEALTH_PATH, ha.leader_backend_port)]
    if len(ha.members) > 1:
        out.append(Endpoint("replicas", ha.replica_endpoint, PATRONI_REPLICA_HEALTH_PATH, ha.replica_backend_port))
    if any(c.address == ha.sync_endpoint for c in region.wiring):
        out.append(Endpoint("sync", ha.sync_endpoint, SYNC_HEALTH_PATH, ha.sync_backend_port))
    return tuple(out)


def backend_ports(region) -> dict[str, int]:
    """Endpoint FQDN -> the members' port a connection dialling it arrives on (a cloud firewall in front of the host,
    which filters before the host's redirect, must open that one; the host's own filter sees POSTGRES_PORT)."""
    return {e.fqdn: e.backend_port for e in endpoints(region)}


def leader_endpoint(internal_domain: str) -> str:
    return f"{LEADER_ENDPOINT}.{internal_domain}"


def replica_endpoint(internal_domain: str) -> str:
    return f"{REPLICA_ENDPOINT}.{internal_domain}"


def sync_endpoint(internal_domain: str) -> str:
    return f"{SYNC_ENDPOINT}.{internal_domain}"


def standby_source(internal_domain: str, replicas: int) -> str:
    """Where the DR partner's standby cluster streams from: the synchronous replica, or the leader when there is none."""
    return sync_endpoint(internal_domain) if replicas else leader_endpoint(internal_domain)


STANDBY_HBA_LAYER = "pg_hba-standby"
"""The layer of a connection to a standby cluster this region runs: admitted by that cluster's own pg_hba.conf (the
source's lines plus this region's), not by the region's, since the cluster holds the source's data and roles."""


FENCE_LAYER = "patroni-fence"
"""The layer of the split-brain fence's connection: before its Patroni starts, each member of a region's own cluster
asks the members of the standby cluster its DR partner runs of it (GET /primary on that cluster's REST API; only the
leader of a cluster that is no longer a standby answers 200; then GET /cluster of each member that answered, whose
roles show a `leader` once the cluster is promoted, a `standby_leader` before) and refuses to start when the partner's
copy was promoted (the region runbook, step 3). The Ansible patroni role's drop-in for patroni@<v>-main dials exactly that connection's
hosts and port (group_vars `patroni_fence`); `platformc verify` proves it."""


def fenced_by(region, partner) -> StandbyCluster | None:
    """The standby cluster `partner` (the region's DR partner's plan) runs of `region`: what the region's fence asks."""
    return next((s for s in getattr(getattr(partner, "postgres_ha", None), "standbys", ()) or ()
                 if s.of_region == region.name), None)


STANDBY_PEER_PREFIX = "standby-"


def standby_peer(of_region: str) -> str:
    """The wiring's name for the members of the standby cluster a region runs for `of_region`."""
    return STANDBY_PEER_PREFIX + of_region


def standby_of(peer_name: str) -> str | None:
    """The region whose standby cluster a wiring peer is (standby_peer's inverse), or None."""
    return peer_name.removeprefix(STANDBY_PEER_PREFIX) if peer_name.startswith(STANDBY_PEER_PREFIX) else None


def standby_hba_file(of_region: str) -> str:
    """The pg_hba.conf of the standby cluster a region runs for `of_region`, relative to that region's data-tier files
    (generated/datastores/<region>/): the datastores target writes it, the Ansible patroni role installs it."""
    return f"dr-{of_region}/pg_hba.conf"


def etcd_members(hosts) -> tuple:
    """The etcd members: the first three PostgreSQL hosts, then PgBouncer hosts; one member below three hosts."""
    pg = [h for h in hosts if h.group in ("postgres_primary", "postgres_replicas")]
    pool = pg + [h for h in hosts if h.group == "pgbouncer"]
    if not pg:
        return ()
    return tuple(pool[:ETCD_MEMBERS] if len(pool) >= ETCD_MEMBERS else pool[:1])


def etcd_group(members) -> str:
    return "postgres" if all(h.group.startswith("postgres") for h in members) else "data_tier"


def standby_hosts(hosts) -> tuple:
    """The hosts of a region that run another region's standby cluster: its second and third PostgreSQL hosts
    (the bootstrap leader keeps its own load), or its only one."""
    pg = [h for h in hosts if h.group in ("postgres_primary", "postgres_replicas")]
    return tuple(pg[1:3] or pg[:1])


def standby_sources(platform, settings_of, region_name: str) -> list[str]:
    """The regions whose DR partner this one is and that keep a cross-region standby of a self-managed PostgreSQL."""
    out = []
    for name, r in platform.regions.items():
        pg = settings_of(name).datastores.postgres
        if r.dr_partner == region_name and name != region_name and pg.deployment == "self-managed" \
                and pg.cross_region_standby:
            out.append(name)
    return out


def plan(platform, region_name: str, s, hosts, internal_domain: str, settings_of) -> PostgresHA | None:
    pg = s.datastores.postgres
    if pg.deployment != "self-managed":
        return None
    members = tuple(h for h in hosts if h.group in ("postgres_primary", "postgres_replicas"))
    if not members:
        return None
    org = platform.organization.name
    backend = AZURE_BACKEND_PORTS if platform.regions[region_name].cloud == "azure" else \
        dict.fromkeys(AZURE_BACKEND_PORTS, POSTGRES_PORT)
    etcd = etcd_members(hosts)
    standbys = []
    on = standby_hosts(hosts)
    for i, src in enumerate(standby_sources(platform, settings_of, region_name)):
        v = settings_of(src).datastores.postgres.version
        standbys.append(StandbyCluster(
            of_region=src, scope=f"{org}-{src}-standby", hosts=tuple(h.name for h in on),
            port=POSTGRES_STANDBY_PORT + i, rest_port=PATRONI_STANDBY_REST_PORT + i,
            data_dir=f"/var/lib/postgresql/{v}/dr-{src}", config_dir=f"/etc/postgresql/{v}/dr-{src}",
            primary_host=standby_source(f"{src}.internal.{platform.organization.domain}",
                                        settings_of(src).datastores.postgres.read_replicas),
            primary_port=POSTGRES_PORT))
    # ttl 30 / loop_wait 10 / retry_timeout 10: Patroni's defaults; a dead leader's key expires within 30 s and the
    # next loop (<= 10 s) promotes the most advanced synchronous replica.
    return PostgresHA(
        scope=f"{org}-{region_name}", namespace=NAMESPACE, members=tuple(h.name for h in members),
        etcd_hosts=tuple(h.name for h in etcd), etcd_fqdns=tuple(h.fqdn for h in etcd), etcd_group=etcd_group(etcd),
        etcd_client_port=ETCD_CLIENT_PORT, etcd_peer_port=ETCD_PEER_PORT, etcd_metrics_port=ETCD_METRICS_PORT,
        rest_port=PATRONI_REST_PORT,
        leader_endpoint=leader_endpoint(internal_domain), replica_endpoint=replica_endpoint(internal_domain),
        sync_endpoint=sync_endpoint(internal_domain), leader_backend_port=backend["leader"],
        replica_backend_port=backend["replicas"], sync_backend_port=backend["sync"],
        synchronous=len(members) > 1, ttl=30, loop_wait=10, retry_timeout=10, failsafe=True,
        data_dir=f"/var/lib/postgresql/{pg.version}/main", config_dir=f"/etc/postgresql/{pg.version}/main",
        standbys=tuple(standbys))
