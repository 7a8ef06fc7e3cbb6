"""The DR partner watches the standby clusters it runs: is each source region still sending WAL?

The source region's Prometheus alerts on its standby's lag (its walsender's view), but it dies with the region it
watches: a lost region paged no one. So the region that runs a standby cluster (compiler/ir/postgres_ha.py) scrapes
it too, and pages when the standby's WAL receiver no longer streams from its source (the monitoring target's
DrRegionMayBeLost, in the partner's own Prometheus and Alertmanager).

How it is scraped, with no port and no secret of its own:
- postgres_exporter already runs on every PostgreSQL host of the partner (the ansible target's postgres_exporter
  role) and the partner's Prometheus already reaches it (compiler/wiring.py: prometheus -> postgres hosts on
  POSTGRES_EXPORTER_PORT, through the cloud firewall and nftables). Its multi-target endpoint (v0.18.1
  cmd/postgres_exporter/probe.go: GET /probe?target=<DSN>) scrapes another PostgreSQL for one request: the wiring
  has one connection per standby cluster (`prometheus -> standby-<source>`, same port), the helm target a scrape job
  per standby cluster whose target is the standby's port on the host's own socket (probe_target).
- The standby is a copy of the source's cluster: its postgres_exporter role (pg_monitor) is the source's, with the
  source's password, which never leaves the source. The standby's own pg_hba.conf (the datastores target) admits
  that role over the local socket by `peer` instead: the OS user the exporter runs as has the role's name.
- The exporter's built-in stat_wal_receiver collector skips a receiver without a replication slot (v0.18.1
  collector/pg_stat_walreceiver.go: "Skipping wal receiver stats because slotname host is null"), and Patroni's
  standby cluster uses none (use_slots: false, and its standby_cluster names no primary_slot_name: Patroni 3.0.2
  ha.py get_remote_member). So the exporter also runs WAL_RECEIVER_QUERY (its
  --extend.query-path file): a series per running WAL receiver, labelled with its status and the host it streams
  from (pg_stat_wal_receiver.sender_host: the standby_cluster host Patroni dials, the source's sync endpoint).
"""

from __future__ import annotations

from urllib.parse import urlencode

POSTGRES_EXPORTER_USER = "postgres_exporter"  # the exporter's OS user and its PostgreSQL role (same name: peer)
POSTGRES_EXPORTER_DATABASE = "postgres"
POSTGRES_SOCKET_DIR = "/var/run/postgresql"  # unix_socket_directories of every cluster on the hosts
PROBE_PATH = "/probe"
SCRAPE_JOB_PREFIX = "postgres-standby-"

# The exporter's user query (postgres_exporter --extend.query-path, v0.18.1 queries.go UserQuery): metric names are
# <namespace>_<column>; LABEL columns become labels. pg_stat_wal_receiver has a row only while a WAL receiver runs
# (its pid is not null); pg_monitor (pg_read_all_stats) sees its columns.
WAL_RECEIVER = "pg_wal_receiver"
WAL_RECEIVER_CONNECTED = f"{WAL_RECEIVER}_connected"
WAL_RECEIVER_SQL = ("SELECT status, sender_host, 1 AS connected FROM pg_catalog.pg_stat_wal_receiver")
WAL_RECEIVER_QUERY = {WAL_RECEIVER: {
    "query": WAL_RECEIVER_SQL,
    "metrics": [
        {"status": {"usage": "LABEL", "description": "The WAL receiver's status (streaming while it receives WAL)"}},
        {"sender_host": {"usage": "LABEL", "description": "The host it is connected to"}},
        {"connected": {"usage": "GAUGE", "description": "1 for each running WAL receiver"}},
    ],
}}
# What the partner's scrape keeps of a probe: the standby's other series (its replication lag, its archiver) would
# mix into the partner's own data-tier alerts, which read them without a job.
KEEP_METRICS = ("pg_up", WAL_RECEIVER_CONNECTED)


def scrape_job(of_region: str) -> str:
    """The partner's scrape job of the standby cluster it runs for `of_region`."""
    return SCRAPE_JOB_PREFIX + of_region


def probe_target(port: int) -> str:
    """The DSN postgres_exporter's /probe dials for a standby cluster on `port`: the host's own socket, as the
    exporter's role, no password (peer). A URL: the exporter parses `host=` pairs with a socket path into a URL host,
    which Go's URL parser refuses (v0.18.1 config/dsn.go dsnFromKeyValue), while lib/pq v1.10.9 (url.go ParseURL)
    takes the socket directory from the query. sslmode=disable: no TLS on a unix socket."""
    query = urlencode({"host": POSTGRES_SOCKET_DIR, "sslmode": "disable", "application_name": POSTGRES_EXPORTER_USER},
                      safe="/")
    return f"postgresql://{POSTGRES_EXPORTER_USER}@:{port}/{POSTGRES_EXPORTER_DATABASE}?{query}"
