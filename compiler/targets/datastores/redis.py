"""Redis Cluster: redis.conf for every node of the region and the topology the Ansible target reads.

Every node runs the same redis.conf. What differs per host, and the secrets, live in the include
directory at the end of the file, which the Ansible role renders (redis-topology.json says what
goes there):

- `host.conf`: `bind <the host's private IPv4> 127.0.0.1 -::1`. The host is known here only by its
  FQDN, and a bind to a name is not possible, so the generated file binds the loopback only: a node
  whose include is missing is unreachable instead of exposed (fail closed).
- `acl.conf`: one ACL user per service that uses Redis (compiler/ir/data_access.py: its own key and
  channel prefix `<service>:*`, the data commands and what client libraries send for health checks and
  cluster discovery), each password as a SHA-256 hash (`#<hex>`, from the service's reference), and
  the replication user (PSYNC/REPLCONF/PING only, password from the spec's `redis.password`) with
  `masteruser`/`masterauth`, which replicas need to sync from their primary. There is no shared user.

The include is a glob, so an empty directory is not an error (Redis >= 7.0), and the default
user is disabled: without the include nobody can log in.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.data_access import redis_users
from compiler.ir.names import REDIS_BUS_OFFSET
from compiler.targets.datastores.model import Section, Setting, clamp

INCLUDE_DIR = "/etc/redis/platformc.d"
# The user replicas sync from their primary as (masteruser): replication commands only, no keys.
REPLICATION_USER = "platformc-replication"
REPLICATION_RULES = "resetkeys resetchannels -@all +psync +replconf +ping +auth +hello"


def self_managed(region: RegionPlan) -> bool:
    return region.settings.datastores.redis.deployment == "self-managed"


def io_threads(vcpus: int) -> int:
    """Redis' guidance: I/O threads only from 4 cores, leaving a core or two for the main thread."""
    return 1 if vcpus < 4 else min(8, vcpus * 3 // 4)


def repl_backlog_mb(maxmemory_mb: int) -> int:
    return clamp(maxmemory_mb // 64, 16, 512)


def settings(plan: PlatformPlan, region: RegionPlan) -> list[Section]:
    r = region.settings.datastores.redis
    backlog = repl_backlog_mb(r.maxmemory_mb)
    threads = io_threads(r.instance.vcpus)
    return [
        Section("Network", (
            Setting("bind", ["127.0.0.1", "-::1"], f"loopback only until the host include ({INCLUDE_DIR}/host.conf) "
                    "binds the private address: a node without it is unreachable, not exposed"),
            Setting("protected-mode", True),
            Setting("port", r.port, f"spec: datastores.redis.port; the cluster bus is port + {REDIS_BUS_OFFSET}"),
            Setting("tcp-backlog", 511),
            Setting("timeout", 0),
            Setting("tcp-keepalive", r.tcp_keepalive_seconds, "spec: datastores.redis.tcp_keepalive_seconds"),
            Setting("maxclients", 10000),
        )),
        Section("Process (systemd unit of the Debian package)", (
            Setting("daemonize", False),
            Setting("supervised", "systemd"),
            Setting("pidfile", "/run/redis/redis-server.pid"),
            Setting("loglevel", "notice"),
            Setting("logfile", "/var/log/redis/redis-server.log"),
        )),
        Section(f"Cluster: {r.primaries} primaries x {r.replicas_per_primary} replica(s), see redis-topology.json", (
            Setting("cluster-enabled", True),
            Setting("cluster-config-file", f"nodes-{r.port}.conf"),
            Setting("cluster-node-timeout", r.cluster_node_timeout_ms, "spec: datastores.redis.cluster_node_timeout_ms"),
            Setting("cluster-port", r.port + REDIS_BUS_OFFSET),
            Setting("cluster-replica-validity-factor", 10),
            Setting("cluster-migration-barrier", 1),
            Setting("cluster-require-full-coverage", True),
            Setting("cluster-allow-reads-when-down", False),
        )),
        Section("Persistence", (
            Setting("dir", "/var/lib/redis"),
            Setting("dbfilename", "dump.rdb"),
            *(Setting("save", [s.seconds, s.changes], f"spec: datastores.redis.save_rules[{i}]")
              for i, s in enumerate(r.save_rules)),
            Setting("stop-writes-on-bgsave-error", True),
            Setting("rdbcompression", True),
            Setting("rdbchecksum", True),
            Setting("appendonly", r.appendonly, "spec: datastores.redis.appendonly"),
            Setting("appendfilename", "appendonly.aof"),
            Setting("appenddirname", "appendonlydir"),
            Setting("appendfsync", r.appendfsync, "spec: datastores.redis.appendfsync"),
            Setting("no-appendfsync-on-rewrite", False),
            Setting("auto-aof-rewrite-percentage", 100),
            Setting("auto-aof-rewrite-min-size", "64mb"),
            Setting("aof-use-rdb-preamble", True),
        )),
        Section(f"Memory ({r.instance.memory_gib} GiB node)", (
            Setting("maxmemory", f"{r.maxmemory_mb}mb", f"spec: datastores.redis.maxmemory_mb; "
                    f"{r.memory_headroom_percent} % of the node stays free for forks and buffers"),
            Setting("maxmemory-policy", r.maxmemory_policy, "spec: datastores.redis.maxmemory_policy"),
            Setting("lazyfree-lazy-eviction", True),
            Setting("lazyfree-lazy-expire", True),
            Setting("lazyfree-lazy-server-del", True),
            Setting("lazyfree-lazy-user-del", True),
            Setting("replica-lazy-flush", True),
        )),
        Section("Replication", (
            Setting("replica-read-only", True),
            Setting("replica-serve-stale-data", True),
            Setting("repl-diskless-sync", True),
            Setting("repl-backlog-size", f"{backlog}mb", f"maxmemory / 64, between 16mb and 512mb"),
        )),
        Section("Security: ACL users instead of requirepass; dangerous commands closed by ACL, not rename-command", (
            Setting("user", ["default", "off"], "no anonymous access; each service's user is in the include"),
            Setting("acllog-max-len", 128),
            Setting("enable-protected-configs", False),
            Setting("enable-debug-command", False),
            Setting("enable-module-command", False),
        )),
        Section("Performance", (
            Setting("io-threads", threads, f"{r.instance.vcpus} vCPU: 1 below 4 cores, else 3/4 of them, at most 8"),
            Setting("latency-monitor-threshold", 100),
            Setting("slowlog-log-slower-than", 10000),
            Setting("slowlog-max-len", 128),
        )),
    ]


def topology(plan: PlatformPlan, region: RegionPlan) -> dict:
    """redis-topology.json: the nodes in the order to create the cluster, and what the includes hold."""
    r = region.settings.datastores.redis
    nodes = [{"name": h.name, "fqdn": h.fqdn, "zone": h.zone,
              "role": "replica" if h.replica_of else "primary", "replica_of": h.replica_of}
             for h in region.hosts_in("redis_cluster")]
    return {
        "region": region.name,
        "deployment": r.deployment,
        "version": r.version,
        "port": r.port,
        "cluster_bus_port": r.port + REDIS_BUS_OFFSET,
        "primaries": r.primaries,
        "replicas_per_primary": r.replicas_per_primary,
        "instance": {"vcpus": r.instance.vcpus, "memory_gib": r.instance.memory_gib, "disk_gib": r.instance.disk_gib,
                     "instance_type": r.instance.instance_types.get(region.cloud)},
        "nodes": nodes,
        "config": {"file": "/etc/redis/redis.conf", "include_dir": INCLUDE_DIR},
        "host_include": {"file": f"{INCLUDE_DIR}/host.conf",
                         "bind": "<the host's private IPv4> 127.0.0.1 -::1"},
        "acl_include": {
            "file": f"{INCLUDE_DIR}/acl.conf",
            "users": [{"name": u.name, "service": u.service, "password_ref": u.password_ref,
                       "password_form": "sha256-hex", "rules": u.rules} for u in redis_users(region.data_access)]
                     + [{"name": REPLICATION_USER, "service": "", "password_ref": r.password,
                         "password_form": "sha256-hex", "rules": REPLICATION_RULES}],
            "masteruser": REPLICATION_USER,
            "masterauth_ref": r.password,
        },
    }
