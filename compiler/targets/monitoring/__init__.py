"""Monitoring target: Prometheus rules and Alertmanager routing derived from the SLOs.

generated/monitoring/<region>/prometheus/slo-rules.yaml   recording + alerting rules (promtool format)
generated/monitoring/<region>/alertmanager/alertmanager.yaml  routing: pages to PagerDuty, tickets to Slack
generated/monitoring/<region>/kubernetes/elasticsearch-retention.yaml  log retention in Elasticsearch (ILM), where
    the region runs its own Elasticsearch nodes

Severities are kube-prometheus-stack's own: `critical` pages, `warning` tickets, `info` goes to the ticket
channel (and InfoInhibitor silences it where the stack says so); `Watchdog` (severity `none`, always firing)
goes to a dead-man receiver that pages when it stops hearing from it. Our rules use the same words, so the
stack's alerts and the SLO alerts route the same way.

Availability uses multi-window, multi-burn-rate alerts (Google SRE workbook, ch. 5): the error budget is
1 - availability; a page fires when both the 1 h and 5 min error ratios exceed 14.4x the budget (2 % of a
30-day budget in an hour) or the 6 h and 30 min ratios exceed 6x; a ticket when the 1 d and 2 h ratios
exceed 3x or the 3 d and 6 h ratios exceed 1x. Request metrics come from Kong's prometheus plugin
(`kong_http_requests_total`, `kong_request_latency_ms_bucket`), the data tier's from postgres_exporter and
redis_exporter, database latency from OpenTelemetry's `db.client.operation.duration` histogram: the services'
SDKs send it over OTLP to the collector, whose `prometheus` exporter Prometheus scrapes (the helm target's
`otel-collector` job; the metric arrives as `db_client_operation_duration_seconds_*` with the service name in
`job`).
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan, dr_watch
from compiler.ir.postgres_ha import ETCD_QUOTA_ALERT_FOR, ETCD_QUOTA_ALERT_SHARE, standby_of
from compiler.ir.names import ETCD_SCRAPE_JOB
from compiler.ir.wal_archive import REPLICATION_DELAY
from compiler.ir.names import ELASTICSEARCH_CLIENT_SECRETS, LOG_INDEX_PREFIXES, MONITORING_NAMESPACE, log_index_prefix
from compiler.ir.names import REDIS_PLACED_ROLE_LABEL
from compiler.ir.backups import (BACKUP_EACH_PRIMARY, BACKUP_SCHEDULED_METRIC, BACKUP_SCHEDULES, BACKUP_SUCCESS_METRIC,
                                 backup_kinds, overdue_after_seconds)
from compiler.render import banner, dump_documents, dump_yaml

NAME = "monitoring"
WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
# kube-prometheus-stack's severities: critical pages, warning tickets (kubernetes-mixin's convention).
PAGE, TICKET, INFO = "critical", "warning", "info"
BURN = {PAGE: [("1h", "5m", 14.4), ("6h", "30m", 6)], TICKET: [("1d", "2h", 3), ("3d", "6h", 1)]}
# The stack's always-firing alert: a receiver that expects it every few minutes pages when it stops.
WATCHDOG = "Watchdog"
DEADMAN_REPEAT = "5m"
# Labels an inhibition is keyed on: a page inhibits the ticket of the same SLO, service and region only.
INHIBIT_EQUAL = ["slo", "service", "region"]
# prometheus-operator mounts each Secret listed in alertmanagerSpec.secrets at /etc/alertmanager/secrets/<name>/;
# the deploy pipeline fills this Secret from the spec's references (the Helm target lists it).
RECEIVER_SECRET = "alertmanager-receivers"
SECRET_DIR = f"/etc/alertmanager/secrets/{RECEIVER_SECRET}"
RULES_NAMESPACE = "monitoring"


# Mean execution time of frequent statements, in ms, from postgres_exporter's stat_statements collector.
_MEAN_QUERY_MS = ("sum(rate(pg_stat_statements_seconds_total[10m]) and on(queryid) pg_stat_statements_calls_total > {calls})"
                  " / sum(rate(pg_stat_statements_calls_total[10m]) and on(queryid) pg_stat_statements_calls_total > {calls}) * 1000")


# p95 of the services' database calls, ms, from the OTel SDKs' db.client.operation.duration histogram (seconds),
# scraped from the collector's prometheus exporter (honoring its labels: `job` is the resource's service.name),
# which becomes `service` like the gateway's series.
DB_P95_MS = ('label_replace(histogram_quantile(0.95, sum by (job, le) '
             '(rate(db_client_operation_duration_seconds_bucket[5m]))), "service", "$1", "job", "(.+)") * 1000')
HPA_AT_MAX = ("kube_horizontalpodautoscaler_status_current_replicas >= kube_horizontalpodautoscaler_spec_max_replicas\n"
              "and on (namespace, horizontalpodautoscaler)\n"
              "kube_horizontalpodautoscaler_spec_max_replicas > kube_horizontalpodautoscaler_spec_min_replicas")

# kube-state-metrics' HPA condition series (status "true" | "false" | "unknown"). ScalingActive false: the HPA cannot
# compute a replica count at all, most often because metrics.k8s.io answers nothing (FailedGetResourceMetric), and
# then it neither scales out under load nor in, silently.
HPA_NOT_SCALING = 'kube_horizontalpodautoscaler_status_condition{condition="ScalingActive",status="false"} == 1'


def _num(x: float) -> str:
    return f"{x:.6g}"


def _ratio(window: str) -> str:
    return f"slo:kong_request_errors:ratio_rate{window}"


def _alert(name, expr, severity, slo, summary, description, for_=None, region=None):
    rule = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "slo": slo, "region": region}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule


# Kong 3.9's prometheus plugin fixes kong_request_latency_ms's bucket boundaries (exporter.lua,
# UPSTREAM_LATENCY_BUCKETS; no setting changes them) and writes `le` zero-padded ("00250.0": its prometheus.lua pads
# every boundary to one width so they sort). Between two boundaries a quantile is histogram_quantile's straight-line
# guess: with boundaries 100 and 250, a p95 of 110 ms read as 203 ms (a false page against 200 ms) and one of 240 ms
# as under 200. So a latency target is measured as the share of requests slower than the first boundary at or above
# it: exact at a boundary (the reference's 1000 ms p99), never a page for a quantile under the target elsewhere.
KONG_LATENCY_BUCKETS_MS = (25, 50, 80, 100, 250, 400, 700, 1000, 2000, 5000, 10000, 30000, 60000)


def latency_edge(target_ms: int) -> int:
    """The first of Kong's latency bucket boundaries at or above the target (the model caps targets at the last)."""
    return next(b for b in KONG_LATENCY_BUCKETS_MS if b >= target_ms)


def _latency_alert(name: str, percentile: int, target_ms: int, severity: str, r: RegionPlan) -> dict:
    edge = latency_edge(target_ms)
    share = _num(round(1 - percentile / 100, 4))
    summary = f"{{{{ $labels.service }}}} p{percentile} latency above {target_ms} ms in {r.name}"
    measured = f"{edge} ms"
    slower = (f"1 - sum by (service) (rate(kong_request_latency_ms_bucket{{le=~\"0*{edge}([.]0*)?\"}}[5m]))\n"
              f"/ sum by (service) (rate(kong_request_latency_ms_count[5m]))")
    at = "" if edge == target_ms else f" (Kong's latency buckets: {target_ms} ms is measured at their boundary {measured})"
    return _alert(name, f"{slower}\n> {share}", severity, "latency", summary,
                  f"{{{{ $value | humanizePercentage }}}} of requests took over {measured}, more than the "
                  f"{_num(round(100 - percentile, 4))}% the p{percentile} target allows{at}.", for_="10m", region=r.name)


def rule_groups(plan: PlatformPlan, r: RegionPlan) -> list[dict]:
    slo, dr, cap = plan.spec.slos, plan.spec.disaster_recovery, plan.spec.capacity
    budget = 1 - slo.availability_percent / 100
    recording = [{
        "record": _ratio(w),
        "expr": (f'sum by (service) (rate(kong_http_requests_total{{code=~"5.."}}[{w}]))\n'
                 f"/\nsum by (service) (rate(kong_http_requests_total[{w}]))"),
        "labels": {"region": r.name},
    } for w in WINDOWS]
    availability = []
    for severity, pairs in BURN.items():
        expr = "\nor\n".join(f"({_ratio(long)} > {_num(f * budget)} and {_ratio(short)} > {_num(f * budget)})"
                             for long, short, f in pairs)
        speed = "fast" if severity == PAGE else "slow"
        availability.append(_alert(
            f"ErrorBudgetBurn{speed.title()}", expr, severity, "availability",
            f"{{{{ $labels.service }}}} is burning its error budget {speed} in {r.name}",
            f"Error ratio {{{{ $value | humanizePercentage }}}} against a {slo.availability_percent}% availability SLO "
            f"over {slo.window_days} days (budget {_num(budget * 100)}%).", region=r.name))
    availability.append(_alert(
        "ErrorRateAboveTarget", f"{_ratio('1h')} > {_num(slo.error_rate_percent / 100)}", TICKET, "error-rate",
        f"{{{{ $labels.service }}}} error rate above {slo.error_rate_percent}% in {r.name}",
        "The 1 h error ratio is {{ $value | humanizePercentage }}.", for_="15m", region=r.name))
    latency = [_latency_alert("LatencyP95AboveTarget", 95, slo.latency_p95_ms, PAGE, r),
               _latency_alert("LatencyP99AboveCeiling", 99, slo.latency_p99_ms, TICKET, r)]
    pg = r.settings.datastores.postgres
    data = [
        _alert("DatabaseQueryLatencyHigh",
               DB_P95_MS + f" > {slo.db_query_p95_ms}", TICKET, "db-latency",
               f"{{{{ $labels.service }}}} database p95 above {slo.db_query_p95_ms} ms in {r.name}",
               "p95 query time is {{ $value | humanize }} ms.", for_="10m", region=r.name),
        _alert("CacheHitRatioLow",
               "sum(rate(redis_keyspace_hits_total[10m])) / (sum(rate(redis_keyspace_hits_total[10m])) + sum(rate(redis_keyspace_misses_total[10m])))"
               f" < {_num(slo.cache_hit_ratio_percent / 100)}", TICKET, "cache",
               f"Redis cache hit ratio below {slo.cache_hit_ratio_percent}% in {r.name}",
               "Hit ratio is {{ $value | humanizePercentage }}.", for_="15m", region=r.name),
        _alert("ReplicationLagHigh", f"max by (instance) (pg_replication_lag_seconds) > {_num(pg.max_replication_lag_seconds)}",
               PAGE, "rpo", f"PostgreSQL replica {{{{ $labels.instance }}}} lags in {r.name}",
               f"Lag is {{{{ $value | humanizeDuration }}}}; the RPO is {dr.rpo_minutes} min and the standby must stay under "
               f"{_num(pg.max_replication_lag_seconds)} s.", for_="2m", region=r.name),
        _alert("ReadReplicasSlow", f"{_MEAN_QUERY_MS.format(calls=pg.replica_scaling.min_calls)} > {pg.replica_scaling.scale_up_mean_query_ms}",
               TICKET, "db-latency", f"Mean query time above {pg.replica_scaling.scale_up_mean_query_ms} ms in {r.name}",
               f"Add a read replica (datastores.postgres.read_replicas, now {pg.read_replicas}); mean is "
               "{{ $value | humanize }} ms.", for_="30m", region=r.name),
        _alert("ReadReplicasIdle", f"{_MEAN_QUERY_MS.format(calls=pg.replica_scaling.min_calls)} < {pg.replica_scaling.scale_down_mean_query_ms}"
               f" and on() vector({pg.read_replicas}) > {pg.replica_scaling.min_replicas}",
               INFO, "cost", f"Mean query time below {pg.replica_scaling.scale_down_mean_query_ms} ms in {r.name}",
               f"A read replica could go (now {pg.read_replicas}, floor {pg.replica_scaling.min_replicas}).",
               for_="6h", region=r.name),
        # PostgreSQL retries a failed archive_command by itself and archives a segment at least every
        # archive_timeout: one transient storage error is not a page, failures with nothing archived are
        _alert("WalArchivingFailing", "increase(pg_stat_archiver_failed_count[10m]) > 0\n"
               "and on (instance) increase(pg_stat_archiver_archived_count[10m]) == 0", PAGE, "rpo",
               f"WAL archiving to {r.backup_url} is failing in {r.name}",
               f"Point-in-time recovery within the {dr.rpo_minutes} min RPO is at risk.", for_="5m", region=r.name),
    ]
    data += dr_standby_alerts(plan, r)
    if r.hosts_in("redis_cluster"):
        # The topology places each shard's primary and replica in different zones; a primary that failed rejoins as
        # its replica's replica, so the replica's zone now holds two primaries and losing it next could leave too
        # few to elect replacements. The redis role's next run moves it back; this says when one is due.
        data.append(_alert(
            "RedisPrimaryDisplaced", f'redis_instance_info{{{REDIS_PLACED_ROLE_LABEL}="primary",role="slave"}} == 1',
            TICKET, "cache", f"Redis node {{{{ $labels.instance }}}}, placed as a primary, serves as a replica in {r.name}",
            "A failover gave its slots to its replica in another zone, which now holds two primaries. Run the region's "
            "redis.yml (Ansible) to give them back.", for_="15m", region=r.name))
    capacity = [
        _alert("NodeCpuHigh", '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[5m]))'
               f" > {_num(cap.max_cpu_utilization_percent / 100)}", TICKET, "capacity",
               f"{{{{ $labels.instance }}}} CPU above {cap.max_cpu_utilization_percent}% in {r.name}",
               "CPU utilisation is {{ $value | humanizePercentage }}.", for_="15m", region=r.name),
        _alert("NodeMemoryHigh", "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"
               f" > {_num(cap.max_memory_utilization_percent / 100)}", TICKET, "capacity",
               f"{{{{ $labels.instance }}}} memory above {cap.max_memory_utilization_percent}% in {r.name}",
               "Memory utilisation is {{ $value | humanizePercentage }}.", for_="15m", region=r.name),
        # Only an HPA that can scale (min < max): one pinned at min = max sits at its maximum by construction.
        _alert("HpaAtMaximum", HPA_AT_MAX, TICKET, "capacity", f"{{{{ $labels.horizontalpodautoscaler }}}} is at its maximum replicas in {r.name}",
               "The service cannot scale further; raise replicas.max or the node pools.", for_="15m", region=r.name),
        _alert("HpaCannotScale", HPA_NOT_SCALING, TICKET, "capacity",
               f"{{{{ $labels.namespace }}}}/{{{{ $labels.horizontalpodautoscaler }}}} cannot scale in {r.name}",
               "The HPA's ScalingActive condition is false: it has no metrics to scale on (kubectl describe hpa gives the reason). "
               "Check that the metrics API (metrics.k8s.io) is served.", for_="15m", region=r.name),
    ]
    groups = [
        {"name": "slo-recording", "interval": "30s", "rules": recording},
        {"name": "slo-availability", "rules": availability},
        {"name": "slo-latency", "rules": latency},
        {"name": "data-tier", "rules": data},
        {"name": "capacity", "rules": capacity},
    ]
    backups = backup_alerts(r)
    if backups:
        groups.append({"name": "backups", "rules": backups})
    etcd = etcd_alerts(r)
    if etcd:
        groups.append({"name": "etcd", "rules": etcd})
    watched = dr_partner_alerts(plan, r)
    if watched:
        groups.append({"name": "dr-partner", "rules": watched})
    return groups


WAL_SEGMENT_BYTES = 16 * 1024 * 1024  # PostgreSQL's default wal_segment_size: below one segment is never a page
DR_LAG_SHARE_OF_RPO = 0.5  # DrStandbyLagging pages at this share of the RPO's worth of WAL behind
DR_ALERT_FOR = "1m"  # how long the DR alerts hold before they page


def dr_standby_members(plan: PlatformPlan, r: RegionPlan) -> tuple[str, ...]:
    """The members of the standby cluster the DR partner runs for this region (compiler/ir/postgres_ha.py), which
    Patroni connects under their member names (its primary_conninfo's application_name): none without one."""
    partner = plan.region(r.dr_partner) if r.dr_partner and r.dr_partner in plan.region_names else None
    ha = partner.postgres_ha if partner is not None else None
    for standby in ha.standbys if ha is not None else ():
        if standby.of_region == r.name:
            return standby.hosts
    return ()


def dr_standby_alerts(plan: PlatformPlan, r: RegionPlan) -> list[dict]:
    """The cross-region standby, seen from the cluster it streams from: its leader is a walsender's client on this
    region's source member, and postgres_exporter's pg_stat_replication rows there carry its member name and how many
    bytes of received WAL it has still to replay. These die with this region: the partner watches the standby from
    its side too (dr_partner_alerts).

    DrStandbyLagging pages at half the RPO's worth of WAL behind, held for a minute: at the full RPO, held for five,
    the RPO was already broken before anyone was told."""
    members = dr_standby_members(plan, r)
    if not members:
        return []
    rpo = plan.spec.disaster_recovery.rpo_minutes
    partner = r.dr_partner
    names = "|".join(members)
    lag = f'max by (instance) (pg_stat_replication_pg_wal_lsn_diff{{application_name=~"{names}"}})'
    wal_rate = (f'max by (instance) (rate(pg_stat_replication_pg_current_wal_lsn_bytes{{application_name=~"{names}"}}'
                '[5m]))')
    return [
        _alert("DrStandbyNotStreaming",
               f'absent(pg_stat_replication_pg_wal_lsn_diff{{application_name=~"{names}",state="streaming"}})',
               PAGE, "rpo", f"{partner}'s standby of {r.name}'s PostgreSQL is not streaming",
               f"No member of the standby cluster in {partner} ({', '.join(members)}) streams from {r.name}. It "
               + (f"can only replay the copy of the WAL archive the bucket replication delivers "
                  f"({REPLICATION_DELAY[r.cloud]}), which trails by archive_timeout and that delay"
                  if r.replicates_to_dr_partner else "can only replay the WAL archive, at least archive_timeout behind")
               + f": the {rpo} min RPO is at risk. Check `patronictl list` on the standby's hosts (their log names the "
               f"connection's error) and the path between the regions.", for_="5m", region=r.name),
        # bytes behind against the WAL this region wrote in half the RPO: paged while the standby is still within
        # the RPO; at least a segment, so that a quiet cluster's few bytes in flight never page
        _alert("DrStandbyLagging",
               f"{lag}\n> on (instance) {wal_rate} * {_num(rpo * 60 * DR_LAG_SHARE_OF_RPO)}\nand on (instance)\n"
               f"{lag} > {WAL_SEGMENT_BYTES}",
               PAGE, "rpo", f"{partner}'s standby of {r.name}'s PostgreSQL lags half the RPO",
               f"{{{{ $value | humanize1024 }}}}B of {r.name}'s WAL is not yet replayed there, more than {r.name} wrote "
               f"in the last {_num(rpo * 60 * DR_LAG_SHARE_OF_RPO)} s (half the {rpo} min RPO): what the standby has "
               f"not received is lost if {r.name} fails now, and what it has received must be replayed before it can "
               f"take over. Check the bandwidth between the regions and the standby's disk and CPU in {partner}.",
               for_=DR_ALERT_FOR, region=r.name),
    ]


ETCD_NO_LEADER_FOR = "1m"  # an election takes seconds (etcd's election timeout is 1 s); a minute is none going on
ETCD_MEMBER_DOWN_FOR = "5m"  # the role restarts one member at a time, each back within seconds


def etcd_alerts(r: RegionPlan) -> list[dict]:
    """Patroni's DCS (compiler/ir/postgres_ha.py), from each member's metrics listener (the wiring's `prometheus`
    connection to the etcd members, scraped as job ETCD_SCRAPE_JOB). Each pages: Patroni's leader must renew its key
    in etcd every loop; one that cannot keeps the region's writes only while it reaches every member (failsafe_mode,
    compiler/ir/postgres_ha.py) and demotes itself to read-only otherwise, so an etcd that refuses writes (NOSPACE at
    its quota), has no leader or lost its quorum stops any failover, and the writes at the next member lost. None
    where nothing scrapes the members."""
    ha = r.postgres_ha
    if ha is None or not any(c.dest.name == "etcd" and c.dest_port == ha.etcd_metrics_port
                             for c in r.through("prometheus")):
        return []
    job = f'{{job="{ETCD_SCRAPE_JOB}"}}'
    runbook = f"docs/regions/{r.name}.md, PostgreSQL high availability"
    members = len(ha.etcd_hosts)
    leader = ("keeps the writes only while it reaches every PostgreSQL member (failsafe_mode)" if ha.failsafe
              else "demotes itself")
    keeps = f"Patroni's leader {leader}"
    tolerance = (f"The cluster's {members} members keep a quorum with {(members - 1) // 2} down: one more failure and "
                 f"etcd refuses every write, {keeps} and no member can take over"
                 if members > 1 else f"It is the region's only member: {keeps}, and no member can take over")
    return [
        _alert("EtcdDatabaseNearQuota",
               f"etcd_mvcc_db_total_size_in_bytes{job}\n/ etcd_server_quota_backend_bytes{job}\n"
               f"> {_num(ETCD_QUOTA_ALERT_SHARE)}", PAGE, "availability",
               f"etcd member {{{{ $labels.instance }}}}'s database is near its quota in {r.name}",
               "Its backend takes {{ $value | humanizePercentage }} of the space quota. At the quota etcd raises the "
               f"NOSPACE alarm and refuses every write: Patroni's leader cannot renew its key and {leader}, "
               "and no failover can happen. Compaction keeps one hour of history and the daily defragmentation returns "
               "the space, so something writes more than Patroni does, or the timer did not run "
               "(`systemctl status platformc-etcd-defrag.timer`). Follow \"etcd's space\" in "
               f"{runbook}: compact, defragment each member in turn, disarm the alarm.",
               for_=ETCD_QUOTA_ALERT_FOR, region=r.name),
        _alert("EtcdNoLeader", f"etcd_server_has_leader{job} == 0", PAGE, "availability",
               f"etcd member {{{{ $labels.instance }}}} has no leader in {r.name}",
               "The member sees no raft leader: it has lost its quorum (its peers are down or unreachable on the peer "
               "port) and serves no writes, so Patroni cannot renew its leader key. `etcdctl endpoint status "
               f"--cluster -w table` on a member (the variables in {runbook}) and `journalctl -u etcd` on the "
               "others tell which members are missing; bring them back one at a time.",
               for_=ETCD_NO_LEADER_FOR, region=r.name),
        _alert("EtcdMemberDown", f"up{job} == 0", PAGE, "availability",
               f"etcd member {{{{ $labels.instance }}}} is down or unreachable in {r.name}",
               f"Prometheus cannot scrape the member's metrics listener. {tolerance}. Check `systemctl status etcd` "
               f"and `journalctl -u etcd` on the host; a host that is gone is replaced as {runbook} says "
               "(\"Replacing a host that runs an etcd member\").", for_=ETCD_MEMBER_DOWN_FOR, region=r.name),
    ]


def dr_partner_alerts(plan: PlatformPlan, r: RegionPlan) -> list[dict]:
    """The standby clusters this region runs for other regions, seen from here (compiler/ir/dr_watch.py): this
    region's Prometheus probes each through postgres_exporter, and pages when none of its members has a WAL receiver
    streaming from its source. The source's own alerts (dr_standby_alerts) die with the source; this one is how a
    lost region pages anyone. The source's last WAL reaches the standby within wal_receiver_timeout (PostgreSQL's
    60 s: the stream ends when the source's TCP connection closes or, if the region vanishes silently, when that
    timeout expires), then the alert holds DR_ALERT_FOR."""
    ha = r.postgres_ha
    if ha is None:
        return []
    out = []
    for sb in ha.standbys:
        if not any(standby_of(c.dest.name) == sb.of_region for c in r.through("prometheus")):
            continue  # nothing here probes it: no alert on a series never scraped
        src = sb.of_region
        streaming = (f'{dr_watch.WAL_RECEIVER_CONNECTED}{{job="{dr_watch.scrape_job(src)}",status="streaming",'
                     f'sender_host="{sb.primary_host}"}}')
        rule = _alert(
            "DrRegionMayBeLost", f"absent({streaming})", PAGE, "rto",
            f"Region {src} may be lost: its standby in {r.name} receives no WAL",
            f"No member of {src}'s standby cluster ({', '.join(sb.hosts)}, port {sb.port}) streams WAL from "
            f"{sb.primary_host}. Either {src} is lost (its own alerts cannot page: they die with it), the path between "
            f"the regions is down, or the standby itself is (up{{job=\"{dr_watch.scrape_job(src)}\"}}, pg_up)"
            + (f"; or {src}'s synchronous replica is down, which leaves that endpoint with no member (then {src} "
               "pages DrStandbyNotStreaming too, and `patronictl list` there shows no sync standby)"
               if _streams_from_sync(plan, src, sb) else "")
            + f". Confirm before anything else, then follow {src}'s runbook (docs/regions/{src}.md: the RTO is "
            f"{plan.spec.disaster_recovery.rto_minutes} min).", for_=DR_ALERT_FOR, region=r.name)
        rule["labels"]["source_region"] = src
        out.append(rule)
    return out


def _streams_from_sync(plan: PlatformPlan, source: str, standby) -> bool:
    """Whether the standby streams from its source's synchronous replica (compiler/ir/postgres_ha.py), which has no
    member while the source's only replica is down: the standby then stops streaming with the source alive."""
    ha = plan.region(source).postgres_ha
    return ha is not None and standby.primary_host == ha.sync_endpoint


def backup_alerts(r: RegionPlan) -> list[dict]:
    """The scheduled backups of the region's hosts (compiler/ir/backups.py): each success is recorded for node_exporter's
    textfile collector, and a schedule whose newest record, over all the hosts that may take it, is older than the
    schedule allows was missed (a failed upload, a full disk, a host that lost its cron). A schedule that has no
    success at all is judged from when the backups role first installed it (its own record): BackupNeverRecorded once
    that is longer ago than the schedule allows, BackupNotScheduled when no host reports the schedule at all (the
    role never ran there, or node_exporter does not read its textfile directory)."""
    pairs = [(kind, name, getattr(r.settings.backups, name).cron)
             for kind in backup_kinds(r) for name in BACKUP_SCHEDULES[kind]]
    if not pairs:
        return []
    def series(kind: str, name: str, metric: str = BACKUP_SUCCESS_METRIC) -> str:
        return f'{metric}{{kind="{kind}",schedule="{name}"}}'

    def missed_expr(kind: str, name: str, cron: str) -> str:
        late = overdue_after_seconds(cron)
        if kind not in BACKUP_EACH_PRIMARY:  # one host backs the cluster up: its newest record over all hosts
            return f"time() - max by (kind, schedule) ({series(kind, name)}) > {late}"
        # each primary backs up its own shard: each node that serves as a primary now (redis_exporter's role, joined
        # by host: the two exporters' instances differ in port) must have a recent record of its own; a replica's
        # old record from its days as a primary counts for nothing
        return (f'label_replace(time() - {series(kind, name)} > {late}, "host", "$1", "instance", "([^:]+):.*")\n'
                f'and on (host)\nlabel_replace(redis_instance_info{{role="master"}}, "host", "$1", "instance", '
                '"([^:]+):.*")')
    missed = "\nor\n".join(missed_expr(kind, name, cron) for kind, name, cron in pairs)
    out = [_alert("BackupMissed", missed, TICKET, "backup",
                  f"The {{{{ $labels.schedule }}}} {{{{ $labels.kind }}}} backup is overdue in {r.name}",
                  "Its last success was {{ $value | humanizeDuration }} ago. Read the job's log on the hosts "
                  "(/var/log/platformc-backup/) and run platformc-backup by hand once fixed.", for_="15m",
                  region=r.name)]
    # never succeeded: judged from when the backups role first installed the schedule on a host, for every schedule
    # (a monthly one too: before, only daily and hourly ones were, from two days without any record)
    def scheduled(kind: str, name: str) -> str:
        return series(kind, name, BACKUP_SCHEDULED_METRIC)
    never = "\nor\n".join(f"(time() - min by (kind, schedule) ({scheduled(kind, name)})) > {overdue_after_seconds(cron)}\n"
                           f"unless on (kind, schedule) {series(kind, name)}" for kind, name, cron in pairs)
    out.append(_alert("BackupNeverRecorded", never, TICKET, "backup",
                      f"The {{{{ $labels.schedule }}}} {{{{ $labels.kind }}}} backup has never succeeded in {r.name}",
                      "It was scheduled {{ $value | humanizeDuration }} ago and no host has recorded a success since: "
                      "read the job's log on the hosts (/var/log/platformc-backup/).", for_="15m", region=r.name))
    out.append(_alert("BackupNotScheduled", "\nor\n".join(f"absent({scheduled(kind, name)})" for kind, name, _ in pairs),
                      TICKET, "backup", f"No host reports the {{{{ $labels.schedule }}}} {{{{ $labels.kind }}}} backup "
                      f"schedule in {r.name}",
                      "The backups role records each schedule it installs for node_exporter: run the region's "
                      "backups.yml (Ansible), and check that node_exporter reads its textfile directory.",
                      for_="2h", region=r.name))
    return out


def alertmanager(plan: PlatformPlan, r: RegionPlan) -> dict:
    recv = r.settings.monitoring.alert_receivers
    p1 = f"{plan.spec.disaster_recovery.p1_response_minutes}m"
    page = {"name": "page"}
    if recv.pagerduty_routing_key:
        page["pagerduty_configs"] = [{"routing_key_file": f"{SECRET_DIR}/pagerduty-routing-key", "send_resolved": True}]
    ticket = {"name": "ticket"}
    if recv.slack_webhook_url:
        ticket["slack_configs"] = [{"api_url_file": f"{SECRET_DIR}/slack-webhook-url", "channel": recv.slack_channel,
                                    "send_resolved": True}]
    deadman = {"name": "deadman"}
    if recv.deadman_webhook_url:
        # the dead-man service (a heartbeat check) pages when these stop arriving: Prometheus, Alertmanager or
        # the path between them is down
        deadman["webhook_configs"] = [{"url_file": f"{SECRET_DIR}/deadman-webhook-url", "send_resolved": False}]
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": "ticket",
            "group_by": ["alertname", "region", "service"],
            "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h",
            "routes": [
                # Watchdog fires always: sent every few minutes to the dead-man receiver, never to people.
                {"receiver": "deadman", "matchers": [f'alertname="{WATCHDOG}"'], "group_wait": "0s",
                 "group_interval": DEADMAN_REPEAT, "repeat_interval": DEADMAN_REPEAT, "continue": False},
                # the stack's helper that silences info alerts: nothing to tell anyone
                {"receiver": "null", "matchers": ['alertname="InfoInhibitor"'], "continue": False},
                # A page repeats at the P1 response time, so an unacknowledged page comes back before it is late.
                {"receiver": "page", "matchers": [f'severity="{PAGE}"'], "repeat_interval": p1, "continue": False},
                {"receiver": "ticket", "matchers": [f'severity=~"{TICKET}|{INFO}"'], "continue": False},
            ],
        },
        "inhibit_rules": [
            # a page silences the ticket of the same SLO, service and region (the fast burn its slow burn);
            # only alerts that carry an SLO take part, so the stack's alerts never silence ours
            {"source_matchers": [f'severity="{PAGE}"', 'slo=~".+"'],
             "target_matchers": [f'severity="{TICKET}"', 'slo=~".+"'], "equal": INHIBIT_EQUAL},
            # kube-prometheus-stack's own pairs (KubePodCrashLooping critical over warning and the like)
            {"source_matchers": [f'severity="{PAGE}"', 'slo=""'], "target_matchers": [f'severity=~"{TICKET}|{INFO}"', 'slo=""'],
             "equal": ["namespace", "alertname", "region"]},
            {"source_matchers": [f'severity="{TICKET}"', 'slo=""'], "target_matchers": [f'severity="{INFO}"', 'slo=""'],
             "equal": ["namespace", "alertname", "region"]},
            # the stack's own info alerts only: an SLO's info alert (ReadReplicasIdle) carries no namespace, so
            # InfoInhibitor's (grouped by namespace) matched it whenever any alert without one was firing
            {"source_matchers": ['alertname="InfoInhibitor"'], "target_matchers": [f'severity="{INFO}"', 'slo=""'],
             "equal": ["namespace", "region"]},
        ],
        "receivers": [page, ticket, deadman, {"name": "null"}],
    }


def _secrets_note(r: RegionPlan) -> str:
    recv = r.settings.monitoring.alert_receivers
    refs = [f"#   {SECRET_DIR}/pagerduty-routing-key <- {recv.pagerduty_routing_key}"] if recv.pagerduty_routing_key else []
    if recv.slack_webhook_url:
        refs.append(f"#   {SECRET_DIR}/slack-webhook-url <- {recv.slack_webhook_url}")
    if recv.deadman_webhook_url:
        refs.append(f"#   {SECRET_DIR}/deadman-webhook-url <- {recv.deadman_webhook_url}")
    else:
        refs.append("# No dead-man receiver (monitoring.alert_receivers.deadman_webhook_url): nothing notices when "
                    "Watchdog stops.")
    return "# Secrets are read from files mounted from the secret manager:\n" + "".join(x + "\n" for x in refs)


def prometheus_rule(plan: PlatformPlan, r: RegionPlan) -> dict:
    """The same rules as a PrometheusRule object: kube-prometheus-stack's Prometheus loads every one in the cluster."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "platformc-slo", "namespace": RULES_NAMESPACE,
                     "labels": {"app.kubernetes.io/managed-by": "platformc", "platformc.io/region": r.name}},
        "spec": {"groups": rule_groups(plan, r)},
    }


# ---------------------------------------------------------------- log retention in Elasticsearch (ILM)
RETENTION = "elasticsearch-retention"  # its pods' name in the wiring (-> elasticsearch) and the objects' name
RETENTION_DIR = "/etc/elasticsearch-retention"
RETENTION_IMAGE = "curlimages/curl:8.17.0"
RETENTION_SCHEDULE = "17 3 * * *"  # daily: a policy changed by hand in Elasticsearch is put back within a day
RUN_AS = 10001


def log_index_prefixes(r: RegionPlan) -> list[str]:
    return [log_index_prefix(prefix, r.name) for prefix in LOG_INDEX_PREFIXES.values()]


def ilm_policy_name(r: RegionPlan) -> str:
    return f"logs-{r.name}-retention"


def ilm_policy(r: RegionPlan) -> dict:
    """Delete each daily log index `monitoring.log_retention_days` after it was created (EMEA: 14, the GDPR
    minimisation of request logs). Daily indices need no rollover: one index is one day, and the index template
    gives it enough primary shards for the estimated day (ilm_index_template)."""
    days = r.settings.monitoring.log_retention_days
    return {"policy": {"_meta": {"managed_by": "platformc", "region": r.name},
                       "phases": {"hot": {"min_age": "0ms", "actions": {}},
                                  "delete": {"min_age": f"{days}d", "actions": {"delete": {}}}}}}


def ilm_index_template(r: RegionPlan) -> dict:
    """Puts the policy on every log index as it is created (settings only: Fluent Bit keeps dynamic mappings), with
    the replica count rule R073's estimate assumes and as many primary shards as keep the estimated day's container
    index near 25 GB a shard (compiler/ir/log_volume.py). Jaeger's indices are left to its index cleaner (helm
    target), whose templates carry Jaeger's mappings."""
    v = r.log_volume
    return {"index_patterns": [f"{p}-*" for p in log_index_prefixes(r)], "priority": 200,
            "template": {"settings": {"index.lifecycle.name": ilm_policy_name(r),
                                      "index.number_of_shards": v.log_index_shards,
                                      "index.number_of_replicas": v.replicas}},
            "_meta": {"managed_by": "platformc"}}


def retention_objects(r: RegionPlan) -> list[dict]:
    """A ConfigMap with the ILM policy and the index template, and a CronJob that PUTs both (idempotent) to the
    region's Elasticsearch over verified HTTPS as Fluent Bit's user (its Secret, synced by the helm target's
    ExternalSecret): that user's Elasticsearch role needs `manage_ilm` and `manage_index_templates` besides
    writing the log indices. None where Elasticsearch is not the region's own nodes."""
    from compiler.formats.json_text import indented
    conn = next((c for c in r.connections_from(RETENTION) if c.dest.name == "elasticsearch" and c.dest.kind == "hosts"), None)
    if conn is None:
        return []
    secret = ELASTICSEARCH_CLIENT_SECRETS["fluent-bit"]
    creds = "/etc/elasticsearch"
    labels = {"app.kubernetes.io/name": RETENTION, "app.kubernetes.io/managed-by": "platformc"}
    # every node in turn, the first that answers takes it (the cluster shares policies and templates)
    script = "\n".join([
        "set -eu",
        "put() {",
        f"  for node in {' '.join(conn.dest.hosts)}; do",
        f"    if curl --fail --silent --show-error --retry 3 --cacert {creds}/ca.crt \\",
        '        -u "$ES_USERNAME:$ES_PASSWORD" -X PUT -H "Content-Type: application/json" \\',
        f'        --data-binary "@{RETENTION_DIR}/$1" "https://$node:{conn.dest_port}/$2"; then echo; return 0; fi',
        "  done",
        "  return 1",
        "}",
        f"put policy.json _ilm/policy/{ilm_policy_name(r)}",
        f"put index-template.json _index_template/logs-{r.name}",
    ]) + "\n"
    size = r.settings.monitoring.resources["es-index-cleaner"]
    env = [{"name": n, "valueFrom": {"secretKeyRef": {"name": secret, "key": k}}}
           for n, k in (("ES_USERNAME", "username"), ("ES_PASSWORD", "password"))]
    config = {"apiVersion": "v1", "kind": "ConfigMap",
              "metadata": {"name": RETENTION, "namespace": RULES_NAMESPACE, "labels": labels},
              "data": {"policy.json": indented(ilm_policy(r)) + "\n",  # json.dumps(indent=2, sort_keys=True)
                       "index-template.json": indented(ilm_index_template(r)) + "\n"}}
    pod = {
        "metadata": {"labels": labels},
        "spec": {
            "restartPolicy": "OnFailure", "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "put", "image": RETENTION_IMAGE, "imagePullPolicy": "Always",
                "command": ["/bin/sh", "-c", script], "env": env,
                "resources": {"requests": {"cpu": size.requests.cpu, "memory": size.requests.memory},
                              "limits": {"cpu": size.limits.cpu, "memory": size.limits.memory}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "bodies", "mountPath": RETENTION_DIR, "readOnly": True},
                                 {"name": "elasticsearch", "mountPath": creds, "readOnly": True}]}],
            "volumes": [{"name": "bodies", "configMap": {"name": RETENTION}},
                        {"name": "elasticsearch", "secret": {"secretName": secret,
                                                             "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}
    cron = {"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": RETENTION, "namespace": RULES_NAMESPACE, "labels": labels, "annotations": {
                "checkov.io/skip1": "CKV_K8S_43=the image is pinned by tag; digests are resolved at deploy time",
                "checkov.io/skip2": "CKV_K8S_35=the Elasticsearch user comes from its Secret as environment "
                                    "variables (curl -u), never inline"}},
            "spec": {"schedule": RETENTION_SCHEDULE, "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 1,
                     "failedJobsHistoryLimit": 3,
                     "jobTemplate": {"spec": {"backoffLimit": 6, "ttlSecondsAfterFinished": 86400, "template": pod}}}}
    return [config, cron]


def emit_region(plan: PlatformPlan, r: RegionPlan) -> dict[str, str]:
    base = f"monitoring/{r.name}"
    retention = retention_objects(r)
    extra = {f"{base}/kubernetes/{RETENTION}.yaml": dump_documents(
        retention, banner("#") + f"# Log retention: indices {', '.join(p + '-*' for p in log_index_prefixes(r))} deleted "
                                 f"{r.settings.monitoring.log_retention_days} days after creation (monitoring.log_retention_days).\n"
                                 f"# kubectl apply -f generated/monitoring/{r.name}/kubernetes/\n")} if retention else {}
    return {**extra, 
        f"{base}/prometheus/slo-rules.yaml": dump_yaml({"groups": rule_groups(plan, r)}, header=banner("#")),
        f"{base}/kubernetes/prometheusrule.yaml": dump_yaml(
            prometheus_rule(plan, r), header=banner("#") + f"# kubectl apply -f generated/monitoring/{r.name}/kubernetes/\n"),
        f"{base}/alertmanager/alertmanager.yaml": dump_yaml(alertmanager(plan, r), header=banner("#") + _secrets_note(r)),
    }


def docs_region(plan: PlatformPlan, r: RegionPlan) -> str:
    from compiler.docs import markdown_table
    rows = [[rule["alert"], rule["labels"]["severity"], rule["labels"]["slo"], rule.get("for", "-")]
            for g in rule_groups(plan, r) for rule in g["rules"] if "alert" in rule]
    return (f"## Alerts\n\nFrom the SLOs: `generated/monitoring/{r.name}/prometheus/slo-rules.yaml`; routing in "
            f"`generated/monitoring/{r.name}/alertmanager/alertmanager.yaml` (pages repeat every "
            f"{plan.spec.disaster_recovery.p1_response_minutes} min, the P1 response time). Severities are "
            "kube-prometheus-stack's: `critical` pages, `warning` and `info` ticket, "
            + (f"`Watchdog` goes to the dead-man receiver every {DEADMAN_REPEAT}, which pages when it stops"
               if r.settings.monitoring.alert_receivers.deadman_webhook_url else
               "`Watchdog` goes nowhere: no dead-man receiver is set (`monitoring.alert_receivers.deadman_webhook_url`), "
               "so nothing pages when Prometheus or Alertmanager itself stops")
            + "; a page inhibits the ticket of the same SLO, service and region."
            + (f" Log indices are deleted after {r.settings.monitoring.log_retention_days} days (ILM, "
               f"`generated/monitoring/{r.name}/kubernetes/{RETENTION}.yaml`, a daily CronJob; its first run is the "
               f"next night, so start one at once: `kubectl --context {r.cluster_name} -n {MONITORING_NAMESPACE} create job --from=cronjob/{RETENTION} "
               f"{RETENTION}-first`; an index Fluent Bit created before that keeps no lifecycle: give it the policy the "
               "file names by hand, `PUT <index>/_settings` with `index.lifecycle.name`)."
               if retention_objects(r) else "")
            + f"\n\nDeploy: `kubectl --context {r.cluster_name} apply -f generated/monitoring/{r.name}/kubernetes/`, after "
            "the helmfile (kube-prometheus-stack brings the PrometheusRule CRD); until then no SLO alert is evaluated."
            + "\n\n"
            + markdown_table(["alert", "severity", "SLO", "for"], rows)
            + ("\n\n" + docs_log_volume(plan, r) if r.log_volume.self_managed else ""))


def _gb(n: float) -> str:
    return f"{n / 1e9:,.1f} GB"


def docs_log_volume(plan: PlatformPlan, r: RegionPlan) -> str:
    """The region's logs and traces in Elasticsearch: what is logged, the estimate, the budget and the retention
    (compiler/ir/log_volume.py; rule R073)."""
    from compiler.docs import markdown_table
    from compiler.ir.log_volume import (LOW_WATERMARK, OBSERVABILITY_DISK_SHARE, SENT_ENVOY_ACCESS_BYTES,
                                        SENT_KONG_ACCESS_BYTES, SENT_SPAN_BYTES, STORED_PER_SENT, mesh_filters)
    v = r.log_volume
    s = r.settings
    mon = s.monitoring
    es = s.datastores.elasticsearch
    slo = plan.spec.slos
    filters = mesh_filters(slo.latency_p99_ms)
    what = [("Kong's" + (" access line of every request" if mon.gateway_access_log == "all" else
                         " access lines of failed requests (4xx, 5xx; Fluent Bit drops the rest)")
             + " (`monitoring.gateway_access_log`)")]
    if s.kubernetes.istio:
        what.append(f"the sidecars' lines (mesh-wide Telemetry, `generated/kubernetes/{r.name}/mesh-telemetry.yaml`): "
                    f"inbound `{filters['SERVER']}`, outbound `{filters['CLIENT']}`")
    if mon.tracing:
        what.append(f"{mon.trace_sample_percent:g} % of the requests traced (`monitoring.trace_sample_percent`), "
                    f"{v.spans_per_traced_request} spans each")
    rows = [["requests a day (traffic share x `capacity.requests_per_second` x 86,400)", f"{v.requests_per_day:,.0f}"],
            ["Kong access lines per request", f"{v.kong_lines_per_request:g}"],
            ["sidecar access lines per request (at the SLOs' edge)", f"{v.mesh_lines_per_request:g}"],
            ["access-log documents a day", f"{v.access_docs_per_day:,.0f}"],
            ["spans a day", f"{v.spans_per_day:,.0f}"],
            ["access logs a day (primaries)", _gb(v.access_bytes_per_day)],
            ["spans a day (primaries)", _gb(v.span_bytes_per_day)],
            ["retention (`monitoring.log_retention_days`)", f"{v.retention_days} days"],
            ["replicas", str(v.replicas)],
            ["kept: retention x daily x (1 + replicas)", f"{v.kept_bytes / 1e12:,.2f} TB"],
            [f"budget: {OBSERVABILITY_DISK_SHARE * 100:g} % of {es.nodes} x {es.instance.disk_gib:,} GiB",
             f"{v.budget_bytes / 1e12:,.2f} TB"],
            ["longest retention within the budget", f"{v.max_retention_days} days"],
            ["primary shards per daily log index", str(v.log_index_shards)]]
    return ("## Logs and traces in Elasticsearch\n\n"
            "The region's Elasticsearch holds the application's indices and, beside them, Fluent Bit's daily log "
            "indices and Jaeger's spans. Logged: " + "; ".join(what) + ". Requests between services add the same per "
            "call (not counted), the services' own log lines are not counted either.\n\n"
            f"Estimate (compiler/ir/log_volume.py): requests a day x (Kong lines x {SENT_KONG_ACCESS_BYTES:,} B + "
            f"sidecar lines x {SENT_ENVOY_ACCESS_BYTES:,} B) + requests a day x traced share x spans x "
            f"{SENT_SPAN_BYTES:,} B, stored at {STORED_PER_SENT:g} byte per byte sent. Sidecar lines at the SLOs' "
            f"edge: 1 % slower than {slo.latency_p99_ms:,} ms plus {slo.error_rate_percent:g} % 5xx inbound, "
            f"{slo.error_rate_percent:g} % outbound; Kong's failed share is taken as "
            f"`capacity.max_error_rate_percent` ({plan.spec.capacity.max_error_rate_percent:g} %), which bounds no "
            "4xx: more client errors log more (Kong's `kong_http_requests_total` by code shows the share).\n\n"
            f"Budget (rule R073): retention x daily volume x (1 + replicas) at most {OBSERVABILITY_DISK_SHARE * 100:g} % of the "
            f"nodes' raw disk, which leaves the application's indices room below the {LOW_WATERMARK * 100:g} % low "
            "watermark; past the 95 % flood stage Elasticsearch makes every index with a shard on the node "
            "read-only, search included.\n\n"
            + markdown_table(["", r.name], rows))
