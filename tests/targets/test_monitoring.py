"""Monitoring target: promtool and amtool judge the files; promtool unit tests prove the alerts fire."""

import subprocess

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from compiler.targets import monitoring
from tests.conftest import require_tool


@pytest.fixture(scope="module")
def tree(tmp_path_factory, request):
    """The reference platform's monitoring output written to disk."""
    from compiler.pipeline import compile_file
    from tests.conftest import REPO
    plan = compile_file(str(REPO / "platform.yaml")).plan
    outputs, owners = emit(plan, ["monitoring"], with_docs=False)
    root = tmp_path_factory.mktemp("monitoring")
    writer.apply(writer.plan_write(root, outputs["generated"], None))
    return plan, root


def test_promtool_checks_every_rule_file(tree):
    promtool = require_tool("promtool")
    plan, root = tree
    files = sorted(str(p) for p in root.glob("monitoring/*/prometheus/slo-rules.yaml"))
    assert len(files) == len(plan.regions)
    res = subprocess.run([promtool, "check", "rules", *files], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    # 22 rules everywhere, RedisPrimaryDisplaced where Redis runs on the region's own nodes, the backup alerts
    # where the region's hosts take backups, two where the DR partner runs a standby of the region's cluster,
    # one per standby cluster the region runs for another region, and three on etcd where a Patroni cluster runs
    for r in plan.regions:
        count = 22 + bool(r.hosts_in("redis_cluster")) + len(monitoring.backup_alerts(r)) \
            + 2 * bool(monitoring.dr_standby_members(plan, r)) + len(r.postgres_ha.standbys if r.postgres_ha else ()) \
            + 3 * bool(r.postgres_ha)
        assert f"monitoring/{r.name}/prometheus/slo-rules.yaml\n  SUCCESS: {count} rules found" in res.stdout, r.name


def test_amtool_checks_every_alertmanager_config(tree):
    amtool = require_tool("amtool")
    plan, root = tree
    for f in sorted(root.glob("monitoring/*/alertmanager/alertmanager.yaml")):
        res = subprocess.run([amtool, "check-config", str(f)], capture_output=True, text=True)
        assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("labels,receiver", [
    # kube-prometheus-stack's severities: critical pages, warning and info ticket, Watchdog to the dead-man receiver
    ("severity=critical", "page"), ("severity=warning", "ticket"), ("severity=info", "ticket"), ("foo=bar", "ticket"),
    ("alertname=Watchdog severity=none", "deadman"), ("alertname=InfoInhibitor severity=none", "null"),
    ("alertname=KubePodCrashLooping severity=critical namespace=booking", "page"),
    # the old words no longer page: nothing labels alerts `page`
    ("severity=page", "ticket")])
def test_routing(tree, labels, receiver):
    amtool = require_tool("amtool")
    _, root = tree
    cfg = root / "monitoring/us-east-1/alertmanager/alertmanager.yaml"
    res = subprocess.run([amtool, "config", "routes", "test", f"--config.file={cfg}", *labels.split()],
                         capture_output=True, text=True)
    assert res.stdout.strip() == receiver, res.stdout + res.stderr


def test_thresholds_come_from_the_slos(reference):
    r = reference.region("eu-west-1")
    rules = {x["alert"]: x for g in monitoring.rule_groups(reference, r) for x in g["rules"] if "alert" in x}
    budget = 1 - reference.spec.slos.availability_percent / 100
    assert f"> {budget * 14.4:.6g} and" in rules["ErrorBudgetBurnFast"]["expr"]
    assert f"> {budget * 6:.6g} and" in rules["ErrorBudgetBurnFast"]["expr"]
    # measured at the first of Kong's bucket boundaries at or above the target, by the share the percentile allows
    edge = monitoring.latency_edge(reference.spec.slos.latency_p95_ms)
    assert edge >= reference.spec.slos.latency_p95_ms and (edge == 250 if reference.spec.slos.latency_p95_ms == 200 else True)
    assert f'le=~"0*{edge}([.]0*)?"' in rules["LatencyP95AboveTarget"]["expr"]
    assert rules["LatencyP95AboveTarget"]["expr"].endswith("> 0.05")
    assert monitoring.latency_edge(reference.spec.slos.latency_p99_ms) == reference.spec.slos.latency_p99_ms  # a boundary
    assert rules["ReplicationLagHigh"]["expr"].endswith("> 1")
    am = monitoring.alertmanager(reference, r)
    page = next(x for x in am["route"]["routes"] if x["receiver"] == "page")
    assert page["repeat_interval"] == f"{reference.spec.disaster_recovery.p1_response_minutes}m"


def test_no_secret_values_in_alertmanager(tree):
    _, root = tree
    for f in root.glob("monitoring/*/alertmanager/alertmanager.yaml"):
        cfg = yaml.safe_load(f.read_text())
        dumped = yaml.safe_dump(cfg)
        assert "vault:" not in dumped and "routing_key:" not in dumped and "api_url:" not in dumped


def _unit_test(root, series, alert, expected):
    test = {
        "rule_files": [str(root / "monitoring/us-east-1/prometheus/slo-rules.yaml")],
        "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": series,
                   "alert_rule_test": [{"eval_time": "70m", "alertname": alert, "exp_alerts": expected}]}],
    }
    path = root / f"test-{alert}.yaml"
    path.write_text(yaml.safe_dump(test))
    return subprocess.run([require_tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True)


def _traffic(ok_per_min, errors_per_min):
    return [{"series": 'kong_http_requests_total{service="booking",code="200"}', "values": f"0+{ok_per_min}x120"},
            {"series": 'kong_http_requests_total{service="booking",code="500"}', "values": f"0+{errors_per_min}x120"}]


def test_fast_burn_pages(tree):
    _, root = tree
    expected = [{"exp_labels": {"severity": "critical", "slo": "availability", "region": "us-east-1", "service": "booking"},
                 "exp_annotations": {
                     "summary": "booking is burning its error budget fast in us-east-1",
                     "description": "Error ratio 1% against a 99.99% availability SLO over 30 days (budget 0.01%)."}}]
    res = _unit_test(root, _traffic(5940, 60), "ErrorBudgetBurnFast", expected)  # 1 % errors
    assert res.returncode == 0, res.stdout + res.stderr


def test_healthy_traffic_does_not_page(tree):
    _, root = tree
    res = _unit_test(root, _traffic(999999, 1), "ErrorBudgetBurnFast", [])  # 0.0001 % errors
    assert res.returncode == 0, res.stdout + res.stderr


def test_prometheusrule_object_carries_the_same_rules(reference):
    r = reference.region("us-east-1")
    files = monitoring.emit_region(reference, r)
    crd = yaml.safe_load(files["monitoring/us-east-1/kubernetes/prometheusrule.yaml"])
    plain = yaml.safe_load(files["monitoring/us-east-1/prometheus/slo-rules.yaml"])
    assert crd["kind"] == "PrometheusRule" and crd["apiVersion"] == "monitoring.coreos.com/v1"
    assert crd["spec"]["groups"] == plain["groups"]


def test_promtool_accepts_the_prometheusrule_spec(tree, tmp_path):
    promtool = require_tool("promtool")
    _, root = tree
    crd = yaml.safe_load((root / "monitoring/eu-west-2/kubernetes/prometheusrule.yaml").read_text())
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(crd["spec"]))
    res = subprocess.run([promtool, "check", "rules", str(spec)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_alertmanager_reads_keys_from_the_operator_secret_mount(reference):
    am = monitoring.alertmanager(reference, reference.region("us-east-1"))
    pd = am["receivers"][0]["pagerduty_configs"][0]["routing_key_file"]
    assert pd == "/etc/alertmanager/secrets/alertmanager-receivers/pagerduty-routing-key"


# Every exporter metric the data-tier alerts read, the scrape job that collects it, and where the exporter
# defines that name (checked against the pinned releases' sources: postgres_exporter 0.18.1, redis_exporter 1.80.1).
EXPORTER_METRICS = {
    "pg_replication_lag_seconds": ("postgres-exporter", "collector/pg_replication.go, on by default"),
    "pg_stat_archiver_failed_count": ("postgres-exporter", "the pg_stat_archiver default metric map (a collector from 0.20)"),
    "pg_stat_archiver_archived_count": ("postgres-exporter", "the same map (v0.18.1 postgres_exporter.go: archived_count, COUNTER)"),
    "pg_stat_statements_seconds_total": ("postgres-exporter", "collector/pg_stat_statements.go, --collector.stat_statements"),
    "pg_stat_statements_calls_total": ("postgres-exporter", "collector/pg_stat_statements.go, --collector.stat_statements"),
    "redis_keyspace_hits_total": ("redis-exporter", "exporter/exporter.go metricMapCounters (INFO keyspace_hits)"),
    "redis_keyspace_misses_total": ("redis-exporter", "exporter/exporter.go metricMapCounters (INFO keyspace_misses)"),
    "redis_instance_info": ("redis-exporter", "exporter/info.go: value 1, labels role (INFO's master/slave), redis_version, ..."),
    # v0.18.1 postgres_exporter.go, the pg_stat_replication default metric map (labels application_name, client_addr,
    # state, slot_name) and queries.go's override, which computes both columns on a primary and on a cascading replica
    "pg_stat_replication_pg_wal_lsn_diff": ("postgres-exporter", "pg_wal_lsn_diff: GAUGE, bytes the client has to replay "
                                            "(the sender's current or received LSN - replay_lsn)"),
    "pg_stat_replication_pg_current_wal_lsn_bytes": ("postgres-exporter", "pg_current_wal_lsn_bytes: GAUGE"),
}
DR_METRICS = {"pg_stat_replication_pg_wal_lsn_diff", "pg_stat_replication_pg_current_wal_lsn_bytes"}
# The DR partner's probe of a standby cluster it runs (compiler/ir/dr_watch.py): the exporter's user query (v0.18.1
# queries.go: <namespace>_<column>), scraped by the partner's postgres-standby-<source> job through /probe.
PARTNER_METRICS = {"pg_wal_receiver_connected"}


def test_data_tier_alerts_read_exporter_metrics_prometheus_scrapes(any_case):
    """Every pg_* and redis_* series the alerts use is a name the exporters really export, and the region's
    kube-prometheus-stack values scrape that exporter wherever the datastore runs on self-managed hosts."""
    import re
    from compiler.targets.helm import observability as observability
    for r in any_case.regions:
        exprs = " ".join(rule["expr"] for g in monitoring.rule_groups(any_case, r) for rule in g["rules"])
        used = set(re.findall(r"\b(?:pg|redis)_[a-z_]+\b", exprs))
        # the DR standby's alerts only where the partner runs a standby of this region, the partner's where this
        # region runs one
        expected = set(EXPORTER_METRICS) - (set() if monitoring.dr_standby_members(any_case, r) else DR_METRICS)
        expected |= PARTNER_METRICS if monitoring.dr_partner_alerts(any_case, r) else set()
        assert used == expected, (r.name, used ^ expected)
        jobs = {j["job_name"] for j in
                observability.kube_prometheus_stack(any_case, r)["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"]}
        for metric, (job, _) in EXPORTER_METRICS.items():
            group = "redis_cluster" if job == "redis-exporter" else "postgres_primary"
            assert (job in jobs) == bool(r.hosts_in(group)), (r.name, metric, job)


# ------------------------------------------------------------------ every alert fires, and stays silent
#
# Each alert of the rule files (us-east-1's: the thresholds are the reference SLOs') gets series that must fire it
# and series that must not. promtool evaluates the rules as Prometheus would; annotations are left out of the
# copy the unit tests load (the fast-burn test above checks their rendering), labels are compared exactly.

def _counter(series: str, per_min: float, n: int = 130) -> dict:
    return {"series": series, "values": f"0+{per_min:g}x{n}"}


def _gauge(series: str, value: float, n: int = 130) -> dict:
    return {"series": series, "values": f"{value:g}x{n}"}


def _histogram(metric: str, labels: str, buckets: dict, per_min: float) -> list[dict]:
    """Cumulative buckets: `buckets` maps `le` to the share of requests at or below it."""
    return [_counter(f'{metric}{{{labels}le="{le}"}}', per_min * share) for le, share in buckets.items()]


def _traffic_at(error_share: float) -> list[dict]:
    ok, bad = 6000 * (1 - error_share), 6000 * error_share
    return [_counter('kong_http_requests_total{service="booking",code="200"}', ok),
            _counter('kong_http_requests_total{service="booking",code="500"}', bad)]


def _kong_latency(shares: dict, per_min: float = 600) -> list[dict]:
    """kong_request_latency_ms as Kong 3.9 exports it: its fixed boundaries (monitoring.KONG_LATENCY_BUCKETS_MS),
    `le` zero-padded to one width (its prometheus.lua: "00250.0"), and the _count series. `shares` maps a boundary
    to the share of requests at or below it; a boundary left out takes the next one's share below it."""
    out, share = [], 0.0
    for edge in monitoring.KONG_LATENCY_BUCKETS_MS:
        share = shares.get(edge, share)
        out.append(_counter(f'kong_request_latency_ms_bucket{{service="booking",le="{edge:07.1f}"}}', per_min * share))
    out.append(_counter('kong_request_latency_ms_bucket{service="booking",le="+Inf"}', per_min))
    out.append(_counter('kong_request_latency_ms_count{service="booking"}', per_min))
    return out


# p95 target 200 ms: 84 % under 100 ms and the rest at ~110 ms has a p95 of ~110 ms, which histogram_quantile read as
# 203 ms between the boundaries 100 and 250 (a false page); 10 % over 250 ms is a p95 above the target for certain
P95_FINE = _kong_latency({80: 0.5, 100: 0.84, 250: 1})
P95_SLOW = _kong_latency({100: 0.5, 250: 0.9, 400: 1})
# p99 ceiling 1000 ms, a boundary: 2 % over it breaches, 0.5 % does not
P99_FINE = _kong_latency({250: 0.9, 1000: 0.995, 2000: 1})
P99_SLOW = _kong_latency({250: 0.9, 1000: 0.98, 2000: 1})
DB_SLOW = {"0.01": 0, "0.1": 0, "0.5": 1, "+Inf": 1}
DB_FAST = {"0.01": 1, "0.1": 1, "0.5": 1, "+Inf": 1}
HPA = 'namespace="booking",horizontalpodautoscaler="booking-v2"'
BACKUP = "platformc_backup_last_success_timestamp_seconds"
SCHEDULED = "platformc_backup_scheduled_timestamp_seconds"
STATEMENTS = 'queryid="42"'
BOOKING = {"service": "booking", "region": "us-east-1"}
MIB = 1024 * 1024
# us-east-1's standby cluster runs on its DR partner's second and third PostgreSQL hosts (their member names)
DR_PG2, DR_PG3 = 'application_name="sixfb-us-west-2-pg-2"', 'application_name="sixfb-us-west-2-pg-3"'
SA_STANDBY_LEADER = "sixfb-us-east-1-pg-2.us-east-1.internal.6fb.example.com"
# an etcd member as the helm target's `etcd` job scrapes it (its metrics listener), and etcd's 2 GiB quota
ETCD = 'job="etcd",instance="sixfb-us-east-1-pg-1.us-east-1.internal.6fb.example.com:2381",group="postgres_primary"'
ETCD_LABELS = {"job": "etcd", "instance": "sixfb-us-east-1-pg-1.us-east-1.internal.6fb.example.com:2381",
               "group": "postgres_primary", "region": "us-east-1"}
QUOTA = 2 * 1024 ** 3


def _receiver(source: str, host: str, status: str = "streaming", sender: str = "") -> str:
    """pg_wal_receiver_connected as us-east-1's probe of `source`'s standby cluster on `host` reads it."""
    sender = sender or f"postgres-sync.{source}.internal.6fb.example.com"
    return (f'pg_wal_receiver_connected{{job="postgres-standby-{source}",instance="{host}:9187",status="{status}",'
            f'sender_host="{sender}"}}')

# alert -> (firing series, silent series, labels of the firing alert besides its rule labels, eval time)
ALERT_CASES = {
    "ErrorBudgetBurnFast": (_traffic_at(0.01), _traffic_at(0.00001), BOOKING, "70m"),
    "ErrorBudgetBurnSlow": (_traffic_at(0.0005), _traffic_at(0.00001), BOOKING, "70m"),
    "ErrorRateAboveTarget": (_traffic_at(0.01), _traffic_at(0.000005), BOOKING, "70m"),
    "LatencyP95AboveTarget": (P95_SLOW, P95_FINE, BOOKING, "70m"),
    "LatencyP99AboveCeiling": (P99_SLOW, P99_FINE, BOOKING, "70m"),
    # the services' OTel histogram, as the collector's prometheus exporter serves it (job = service.name)
    "DatabaseQueryLatencyHigh": (_histogram("db_client_operation_duration_seconds_bucket", 'job="booking",', DB_SLOW, 600),
                                 _histogram("db_client_operation_duration_seconds_bucket", 'job="booking",', DB_FAST, 600),
                                 {**BOOKING, "job": "booking"}, "70m"),
    "CacheHitRatioLow": ([_counter("redis_keyspace_hits_total", 50), _counter("redis_keyspace_misses_total", 50)],
                         [_counter("redis_keyspace_hits_total", 99), _counter("redis_keyspace_misses_total", 1)],
                         {"region": "us-east-1"}, "70m"),
    # a node the topology placed as a primary (its scrape label), serving as a replica; a placed replica doing so is fine
    "RedisPrimaryDisplaced": ([_gauge('redis_instance_info{instance="redis-1:9121",placed_role="primary",role="slave"}', 1),
                               _gauge('redis_instance_info{instance="redis-4:9121",placed_role="replica",role="master"}', 1)],
                              [_gauge('redis_instance_info{instance="redis-1:9121",placed_role="primary",role="master"}', 1),
                               _gauge('redis_instance_info{instance="redis-4:9121",placed_role="replica",role="slave"}', 1)],
                              {"instance": "redis-1:9121", "placed_role": "primary", "role": "slave", "region": "us-east-1"},
                              "70m"),
    # the newest record of a schedule over all hosts: one host 31 h stale and none newer misses the daily (27 h + 3 h
    # allowed: 30 h); a second host recording every minute keeps it silent. time() is the evaluation time in promtool.
    "BackupMissed": ([_gauge(f'{BACKUP}{{instance="pg-1",kind="postgresql",schedule="daily"}}', 0, 1900),
                      _counter(f'{BACKUP}{{instance="r-1",kind="redis",schedule="hourly"}}', 60, 1900)],
                     [_gauge(f'{BACKUP}{{instance="pg-1",kind="postgresql",schedule="daily"}}', 0, 1900),
                      _counter(f'{BACKUP}{{instance="pg-2",kind="postgresql",schedule="daily"}}', 60, 1900),
                      _counter(f'{BACKUP}{{instance="r-1",kind="redis",schedule="hourly"}}', 60, 1900)],
                     {"kind": "postgresql", "schedule": "daily", "region": "us-east-1"}, "31h"),
    # the daily base backup scheduled 31 h ago (its first installation, a record written once) and never a success;
    # silent once any host records one
    "BackupNeverRecorded": ([_gauge(f'{SCHEDULED}{{instance="pg-1",kind="postgresql",schedule="daily"}}', 0, 1900)],
                            [_gauge(f'{SCHEDULED}{{instance="pg-1",kind="postgresql",schedule="daily"}}', 0, 1900),
                             _counter(f'{BACKUP}{{instance="pg-2",kind="postgresql",schedule="daily"}}', 60, 1900)],
                            {"kind": "postgresql", "schedule": "daily", "region": "us-east-1"}, "31h"),
    # no host reports the monthly schedule (the others are installed)
    "BackupNotScheduled": ([_gauge(f'{SCHEDULED}{{instance="pg-1",kind="postgresql",schedule="{n}"}}', 0, 300)
                            for n in ("daily", "weekly")]
                           + [_gauge(f'{SCHEDULED}{{instance="r-1",kind="redis",schedule="hourly"}}', 0, 300)],
                           [_gauge(f'{SCHEDULED}{{instance="pg-1",kind="postgresql",schedule="{n}"}}', 0, 300)
                            for n in ("daily", "weekly", "monthly")]
                           + [_gauge(f'{SCHEDULED}{{instance="r-1",kind="redis",schedule="hourly"}}', 0, 300)],
                           {"kind": "postgresql", "schedule": "monthly", "region": "us-east-1"}, "3h"),
    "ReplicationLagHigh": ([_gauge('pg_replication_lag_seconds{instance="pg-2"}', 5)],
                           [_gauge('pg_replication_lag_seconds{instance="pg-2"}', 0.1)],
                           {"instance": "pg-2", "region": "us-east-1"}, "70m"),
    # the partner's standby leader, a walsender's client here under its Patroni member name; another client streaming
    # (a local replica) is not it
    "DrStandbyNotStreaming": ([_gauge(f'pg_stat_replication_pg_wal_lsn_diff{{instance="pg-2",{DR_PG2},state="catchup"}}', 0),
                               _gauge('pg_stat_replication_pg_wal_lsn_diff{instance="pg-1",application_name="sixfb-us-east-1-pg-2",'
                                      'state="streaming"}', 0)],
                              [_gauge(f'pg_stat_replication_pg_wal_lsn_diff{{instance="pg-2",{DR_PG3},state="streaming"}}', 0)],
                              {"state": "streaming", "region": "us-east-1"}, "70m"),
    # 200 MiB behind while us-east-1 writes 1 MiB a minute: more than the 1 min RPO. Silent: 8 MiB behind a quiet
    # cluster (under a segment), and 200 MiB behind one writing 500 MiB a minute (within half the RPO: 250 MiB)
    "DrStandbyLagging": ([_gauge(f'pg_stat_replication_pg_wal_lsn_diff{{instance="pg-2",{DR_PG2},state="streaming"}}', 200 * MIB),
                          _counter(f'pg_stat_replication_pg_current_wal_lsn_bytes{{instance="pg-2",{DR_PG2},state="streaming"}}', MIB)],
                         [_gauge(f'pg_stat_replication_pg_wal_lsn_diff{{instance="pg-2",{DR_PG2},state="streaming"}}', 8 * MIB),
                          _gauge(f'pg_stat_replication_pg_current_wal_lsn_bytes{{instance="pg-2",{DR_PG2},state="streaming"}}', 5e9),
                          _gauge(f'pg_stat_replication_pg_wal_lsn_diff{{instance="pg-3",{DR_PG3},state="streaming"}}', 200 * MIB),
                          _counter(f'pg_stat_replication_pg_current_wal_lsn_bytes{{instance="pg-3",{DR_PG3},state="streaming"}}',
                                   500 * MIB)],
                         {"instance": "pg-2", "region": "us-east-1"}, "70m"),
    # us-east-1 runs the standby clusters of us-west-2, ca-central-1 and sa-east-1 and probes each (its
    # postgres-standby-<source> jobs). sa-east-1's has no WAL receiver streaming from sa-east-1: its only streaming
    # one is the cascaded member's, from the standby leader; us-east-1's own replica streams from its leader under
    # the exporter's own job. Silent: each standby streams from its source's sync endpoint.
    "DrRegionMayBeLost": ([_gauge(_receiver("us-west-2", "pg-2"), 1), _gauge(_receiver("ca-central-1", "pg-3"), 1),
                           _gauge(_receiver("sa-east-1", "pg-3", sender=SA_STANDBY_LEADER), 1),
                           _gauge(_receiver("sa-east-1", "pg-2", status="waiting"), 1),
                           _gauge('pg_wal_receiver_connected{job="postgres-exporter",instance="pg-2:9187",status="streaming",'
                                  'sender_host="postgres.us-east-1.internal.6fb.example.com"}', 1)],
                          [_gauge(_receiver("us-west-2", "pg-2"), 1), _gauge(_receiver("ca-central-1", "pg-3"), 1),
                           _gauge(_receiver("sa-east-1", "pg-2"), 1),
                           _gauge(_receiver("sa-east-1", "pg-3", sender=SA_STANDBY_LEADER), 1)],
                          {"job": "postgres-standby-sa-east-1", "status": "streaming",
                           "sender_host": "postgres-sync.sa-east-1.internal.6fb.example.com"}, "70m"),
    "ReadReplicasSlow": ([_counter(f"pg_stat_statements_calls_total{{{STATEMENTS}}}", 6000),
                          _counter(f"pg_stat_statements_seconds_total{{{STATEMENTS}}}", 1200)],  # 200 ms a call
                         [_counter(f"pg_stat_statements_calls_total{{{STATEMENTS}}}", 6000),
                          _counter(f"pg_stat_statements_seconds_total{{{STATEMENTS}}}", 300)],  # 50 ms
                         {"region": "us-east-1"}, "70m"),
    "ReadReplicasIdle": ([_counter(f"pg_stat_statements_calls_total{{{STATEMENTS}}}", 6000, 500),
                          _counter(f"pg_stat_statements_seconds_total{{{STATEMENTS}}}", 30, 500)],  # 5 ms a call
                         [_counter(f"pg_stat_statements_calls_total{{{STATEMENTS}}}", 6000, 500),
                          _counter(f"pg_stat_statements_seconds_total{{{STATEMENTS}}}", 300, 500)],  # 50 ms
                         {"region": "us-east-1"}, "7h"),
    # failures with nothing archived fire; a failed attempt among segments still archiving (PostgreSQL retries) does not
    "WalArchivingFailing": ([_counter('pg_stat_archiver_failed_count{instance="pg-1"}', 1),
                             _gauge('pg_stat_archiver_archived_count{instance="pg-1"}', 500)],
                            [_counter('pg_stat_archiver_failed_count{instance="pg-1"}', 0.2),
                             _counter('pg_stat_archiver_archived_count{instance="pg-1"}', 1)],
                            {"instance": "pg-1", "region": "us-east-1"}, "70m"),
    # the backend at 85 % of the quota pages; at 75 % (after a night's defragmentation, say) it does not
    "EtcdDatabaseNearQuota": ([_gauge(f"etcd_mvcc_db_total_size_in_bytes{{{ETCD}}}", QUOTA * 0.85),
                               _gauge(f"etcd_server_quota_backend_bytes{{{ETCD}}}", QUOTA)],
                              [_gauge(f"etcd_mvcc_db_total_size_in_bytes{{{ETCD}}}", QUOTA * 0.75),
                               _gauge(f"etcd_server_quota_backend_bytes{{{ETCD}}}", QUOTA)],
                              ETCD_LABELS, "70m"),
    "EtcdNoLeader": ([_gauge(f"etcd_server_has_leader{{{ETCD}}}", 0)], [_gauge(f"etcd_server_has_leader{{{ETCD}}}", 1)],
                     ETCD_LABELS, "70m"),
    # a member whose scrape fails; a node_exporter target down on the same host is another alert's
    "EtcdMemberDown": ([_gauge(f"up{{{ETCD}}}", 0)],
                       [_gauge(f"up{{{ETCD}}}", 1),
                        _gauge('up{job="self-managed-hosts",instance="sixfb-us-east-1-pg-1.us-east-1.internal.6fb.'
                               'example.com:9100"}', 0)],
                       ETCD_LABELS, "70m"),
    "NodeCpuHigh": ([_counter('node_cpu_seconds_total{instance="n1",mode="idle"}', 6)],  # 10 % idle
                    [_counter('node_cpu_seconds_total{instance="n1",mode="idle"}', 54)],
                    {"instance": "n1", "region": "us-east-1"}, "70m"),
    "NodeMemoryHigh": ([_gauge('node_memory_MemAvailable_bytes{instance="n1"}', 10),
                        _gauge('node_memory_MemTotal_bytes{instance="n1"}', 100)],
                       [_gauge('node_memory_MemAvailable_bytes{instance="n1"}', 60),
                        _gauge('node_memory_MemTotal_bytes{instance="n1"}', 100)],
                       {"instance": "n1", "region": "us-east-1"}, "70m"),
    "HpaAtMaximum": ([_gauge(f"kube_horizontalpodautoscaler_status_current_replicas{{{HPA}}}", 10),
                      _gauge(f"kube_horizontalpodautoscaler_spec_max_replicas{{{HPA}}}", 10),
                      _gauge(f"kube_horizontalpodautoscaler_spec_min_replicas{{{HPA}}}", 2)],
                     # min = max (a two-pod canary): at its maximum by construction, never an alert
                     [_gauge(f"kube_horizontalpodautoscaler_status_current_replicas{{{HPA}}}", 2),
                      _gauge(f"kube_horizontalpodautoscaler_spec_max_replicas{{{HPA}}}", 2),
                      _gauge(f"kube_horizontalpodautoscaler_spec_min_replicas{{{HPA}}}", 2)],
                     {"namespace": "booking", "horizontalpodautoscaler": "booking-v2", "region": "us-east-1"}, "70m"),
    # kube-state-metrics exports one series per condition and status; an HPA without metrics (no metrics.k8s.io:
    # FailedGetResourceMetric) has ScalingActive false
    "HpaCannotScale": ([_gauge(f'kube_horizontalpodautoscaler_status_condition{{{HPA},condition="ScalingActive",status="false"}}', 1),
                        _gauge(f'kube_horizontalpodautoscaler_status_condition{{{HPA},condition="ScalingActive",status="true"}}', 0)],
                       [_gauge(f'kube_horizontalpodautoscaler_status_condition{{{HPA},condition="ScalingActive",status="false"}}', 0),
                        _gauge(f'kube_horizontalpodautoscaler_status_condition{{{HPA},condition="ScalingActive",status="true"}}', 1),
                        # limited by its bounds is not "cannot scale"
                        _gauge(f'kube_horizontalpodautoscaler_status_condition{{{HPA},condition="ScalingLimited",status="true"}}', 1)],
                       {"namespace": "booking", "horizontalpodautoscaler": "booking-v2", "condition": "ScalingActive",
                        "status": "false", "region": "us-east-1"}, "70m"),
}


def _rules_without_annotations(root, tmp_path):
    groups = yaml.safe_load((root / "monitoring/us-east-1/prometheus/slo-rules.yaml").read_text())["groups"]
    for g in groups:
        for rule in g["rules"]:
            rule.pop("annotations", None)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}))
    return path, {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_every_alert_has_a_firing_and_a_silent_case(tree, tmp_path):
    _, root = tree
    _, alerts = _rules_without_annotations(root, tmp_path)
    assert set(alerts) == set(ALERT_CASES)


def _promtool_alert_test(rules, tmp_path, series: list, at: str, alert: str, expected: list) -> None:
    """promtool evaluates `rules` over `series` and must find exactly the `expected` alerts of `alert` at `at`."""
    test = {"rule_files": [str(rules)], "evaluation_interval": "1m",
            "tests": [{"interval": "1m", "input_series": series,
                       "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]}]}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test))
    res = subprocess.run([require_tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("alert", sorted(ALERT_CASES))
@pytest.mark.parametrize("fires", [True, False], ids=["fires", "silent"])
def test_alert_fires_and_stays_silent(tree, tmp_path, alert, fires):
    require_tool("promtool")
    _, root = tree
    rules, alerts = _rules_without_annotations(root, tmp_path)
    firing, silent, labels, at = ALERT_CASES[alert]
    expected = [{"exp_labels": {**alerts[alert]["labels"], **labels}}] if fires else []
    _promtool_alert_test(rules, tmp_path, firing if fires else silent, at, alert, expected)


def test_severities_are_the_stacks_and_inhibition_is_keyed_on_the_slo(reference):
    """critical pages and warning tickets, like kube-prometheus-stack's own alerts; a page inhibits only the
    ticket of the same SLO, service and region, so a fast burn of one service never hides another's."""
    r = reference.region("us-east-1")
    sev = {x["labels"]["severity"] for g in monitoring.rule_groups(reference, r) for x in g["rules"] if "alert" in x}
    assert sev == {"critical", "warning", "info"}
    am = monitoring.alertmanager(reference, r)
    slo_rule = am["inhibit_rules"][0]
    assert slo_rule["source_matchers"] == ['severity="critical"', 'slo=~".+"']
    assert slo_rule["target_matchers"] == ['severity="warning"', 'slo=~".+"']
    assert slo_rule["equal"] == ["slo", "service", "region"]
    assert all("alertname" not in x["equal"] or 'slo=""' in x["source_matchers"] for x in am["inhibit_rules"])
    watchdog = next(x for x in am["route"]["routes"] if x["receiver"] == "deadman")
    assert watchdog["matchers"] == ['alertname="Watchdog"'] and watchdog["repeat_interval"] == "5m"
    # the reference names no dead-man service: the receiver is empty and the file says so
    assert "webhook_configs" not in next(x for x in am["receivers"] if x["name"] == "deadman")
    text = monitoring.emit_region(reference, r)["monitoring/us-east-1/alertmanager/alertmanager.yaml"]
    assert "nothing notices when Watchdog stops" in text


def test_a_dead_man_service_gets_the_watchdog_from_a_mounted_url():
    """The URL is a secret (heartbeat URLs carry their key): read from the receivers Secret's mount (webhook
    `url_file`, Alertmanager 0.26+; kube-prometheus-stack 88.5.3 runs 0.34; the Debian amtool 0.25 predates it)."""
    from compiler.pipeline import compile_text
    from tests.conftest import REPO
    text = (REPO / "tests/cases/two-region/platform.yaml").read_text().replace(
        'grafana_admin_password: "vault:kv/data/acme/grafana#admin_password"}}}',
        'grafana_admin_password: "vault:kv/data/acme/grafana#admin_password", '
        'alert_receivers: {deadman_webhook_url: "vault:kv/data/acme/deadman#url"}}}}', 1)
    plan = compile_text(text).plan
    am = monitoring.alertmanager(plan, plan.regions[0])
    deadman = next(x for x in am["receivers"] if x["name"] == "deadman")
    assert deadman["webhook_configs"] == [{"url_file": "/etc/alertmanager/secrets/alertmanager-receivers/deadman-webhook-url",
                                          "send_resolved": False}]


def test_inhibition_with_amtool_silences_only_the_same_slo(tree, tmp_path):
    """Alertmanager's own inhibitor, through amtool's config check and a parse of the matchers (amtool cannot
    run an inhibition offline): the slow burn of booking is a target of the fast burn of booking, not of user."""
    amtool = require_tool("amtool")
    _, root = tree
    cfg = yaml.safe_load((root / "monitoring/us-east-1/alertmanager/alertmanager.yaml").read_text())
    rule = cfg["inhibit_rules"][0]

    def matches(matchers, labels):
        import re
        for m in matchers:
            name, op, value = re.fullmatch(r'(\w+)(=~|=)"(.*)"', m).groups()
            got = labels.get(name, "")
            if (op == "=" and got != value) or (op == "=~" and not re.fullmatch(value, got)):
                return False
        return True

    page = {"alertname": "ErrorBudgetBurnFast", "severity": "critical", "slo": "availability", "service": "booking",
            "region": "us-east-1"}
    ticket = {**page, "alertname": "ErrorBudgetBurnSlow", "severity": "warning"}
    other = {**ticket, "service": "user"}
    assert matches(rule["source_matchers"], page) and matches(rule["target_matchers"], ticket)
    assert all(page.get(k) == ticket.get(k) for k in rule["equal"])
    assert not all(page.get(k) == other.get(k) for k in rule["equal"])
    res = subprocess.run([amtool, "check-config", str(root / "monitoring/us-east-1/alertmanager/alertmanager.yaml")],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "4 inhibit rules" in res.stdout, res.stdout + res.stderr


def test_every_region_alerts_when_an_hpa_cannot_scale(reference):
    """On every cloud: an HPA that cannot read its metrics (EKS without metrics-server) never scales, and without
    this alert nothing says so."""
    clouds = set()
    for r in reference.regions:
        rules = {x["alert"]: x for g in monitoring.rule_groups(reference, r) for x in g["rules"] if "alert" in x}
        rule = rules["HpaCannotScale"]
        assert rule["expr"] == 'kube_horizontalpodautoscaler_status_condition{condition="ScalingActive",status="false"} == 1'
        assert rule["for"] == "15m"
        clouds.add(r.cloud)
    assert clouds == {"aws", "gcp", "azure"}


def test_info_inhibitor_leaves_the_slo_info_alerts_alone(reference):
    """kube-prometheus-stack's InfoInhibitor fires per namespace while no warning or critical does; an SLO's info
    alert has no namespace, so an inhibition keyed on it silenced ReadReplicasIdle whenever any namespace-less alert
    was quiet. Only the stack's own info alerts (no `slo` label) are its targets."""
    r = reference.region("us-east-1")
    am = monitoring.alertmanager(reference, r)
    (rule,) = [x for x in am["inhibit_rules"] if x["source_matchers"] == ['alertname="InfoInhibitor"']]
    assert 'slo=""' in rule["target_matchers"] and 'severity="info"' in rule["target_matchers"]
    info = [x for g in monitoring.rule_groups(reference, r) for x in g["rules"]
            if "alert" in x and x["labels"]["severity"] == "info"]
    assert info and all(x["labels"]["slo"] for x in info)


def test_kong_metrics_keep_their_own_service_label(reference):
    """The SLO rules group Kong's series by `service` (the Kong service). Without honorLabels the operator's target
    label `service` (the Kubernetes Service, kong-proxy) wins and Kong's becomes exported_service: one series for
    the whole gateway."""
    from compiler.targets import helm
    r = reference.region("us-east-1")
    values = yaml.safe_load(helm.emit_region(reference, r)[f"helm/{r.name}/kong.values.yaml"])
    assert values["serviceMonitor"] == {"enabled": True, "honorLabels": True}
    exprs = " ".join(x["expr"] for g in monitoring.rule_groups(reference, r) for x in g["rules"])
    assert "sum by (service)" in exprs and "exported_service" not in exprs


def test_latency_targets_are_capped_at_kongs_last_bucket():
    """The model bounds the latency targets where Kong's buckets end (the model cannot import the monitoring target:
    `validate` imports no target), so every target has a boundary at or above it to be measured at."""
    from compiler.model.platform import Slos
    for field in ("latency_p95_ms", "latency_p99_ms"):
        bound = min(m.le for m in Slos.model_fields[field].metadata if hasattr(m, "le"))  # PositiveInt has its own
        assert bound == monitoring.KONG_LATENCY_BUCKETS_MS[-1], field
        assert monitoring.latency_edge(bound) == bound


def test_the_displaced_primary_alert_reads_the_label_the_scrape_config_sets(any_case):
    """RedisPrimaryDisplaced matches the scrape label of the role the topology placed a node in: the region's
    redis-exporter job must label exactly the topology's primaries with that value, or the alert never fires."""
    import re
    from compiler.targets.helm import observability
    for r in any_case.regions:
        alerts = {rule["alert"]: rule for g in monitoring.rule_groups(any_case, r) for rule in g["rules"] if "alert" in rule}
        if not r.hosts_in("redis_cluster"):
            assert "RedisPrimaryDisplaced" not in alerts, r.name
            continue
        matchers = dict(re.findall(r'(\w+)="([^"]*)"', alerts["RedisPrimaryDisplaced"]["expr"]))
        assert matchers.pop("role") == "slave"  # how redis_exporter's redis_instance_info names a replica
        ((label, value),) = matchers.items()
        scrape = observability.kube_prometheus_stack(any_case, r)["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"]
        job = next(j for j in scrape if j["job_name"] == "redis-exporter")
        labelled = {t.rsplit(":", 1)[0]: group["labels"].get(label) == value
                    for group in job["static_configs"] for t in group["targets"]}
        assert labelled == {h.fqdn: not h.replica_of for h in r.hosts_in("redis_cluster")}, r.name


def test_each_redis_primary_must_have_backed_its_own_shard_up(tree, tmp_path):
    """Each Redis primary backs up its own shard, so one primary whose hourly backup keeps failing must alert even
    while the others record theirs; a replica's old record (from before a failover made it one) must not. The rule
    joins each record to redis_exporter's role of the same host (the two exporters' instances differ in port)."""
    require_tool("promtool")
    _, root = tree
    rules, alerts = _rules_without_annotations(root, tmp_path)
    series = [_gauge(f'{BACKUP}{{instance="redis-1:9100",kind="redis",schedule="hourly"}}', 0, 300),  # stale primary
              _gauge('redis_instance_info{instance="redis-1:9121",role="master"}', 1, 300),
              _counter(f'{BACKUP}{{instance="redis-2:9100",kind="redis",schedule="hourly"}}', 60, 300),  # fresh primary
              _gauge('redis_instance_info{instance="redis-2:9121",role="master"}', 1, 300),
              _gauge(f'{BACKUP}{{instance="redis-4:9100",kind="redis",schedule="hourly"}}', 0, 300),  # now a replica
              _gauge('redis_instance_info{instance="redis-4:9121",role="slave"}', 1, 300),
              _counter(f'{BACKUP}{{instance="pg-1:9100",kind="postgresql",schedule="daily"}}', 60, 300),
              _counter(f'{BACKUP}{{instance="pg-1:9100",kind="postgresql",schedule="weekly"}}', 60, 300),
              _counter(f'{BACKUP}{{instance="pg-1:9100",kind="postgresql",schedule="monthly"}}', 60, 300)]
    expected = [{"exp_labels": {**alerts["BackupMissed"]["labels"], "instance": "redis-1:9100", "host": "redis-1",
                                "kind": "redis", "schedule": "hourly"}}]
    _promtool_alert_test(rules, tmp_path, series, "3h", "BackupMissed", expected)


def test_the_dr_standby_alerts_name_the_members_patroni_connects_as(reference):
    """Patroni's walreceiver connects as its member name (3.0.2 postgresql/config.py: application_name = the member's
    name), which the partner's inventory sets to the host's inventory name: the names the alerts match are exactly
    the partner's standby cluster's hosts, in every region that has one."""
    from compiler.targets.ansible import emit_region as ansible_region
    checked = 0
    for r in reference.regions:
        members = monitoring.dr_standby_members(reference, r)
        if not members:
            continue
        files = ansible_region(reference, reference.region(r.dr_partner))
        group_vars = yaml.safe_load(files[f"ansible/inventories/{r.dr_partner}/group_vars/postgres.yml"])
        (cluster,) = [c for c in group_vars["patroni_standby_clusters"] if c["region"] == r.name]
        assert cluster["config"]["name"] == "{{ inventory_hostname }}"
        hosts = yaml.safe_load(files[f"ansible/inventories/{r.dr_partner}/hosts.yml"])
        assert set(cluster["hosts"]) <= set(_inventory_hosts(hosts))
        assert tuple(cluster["hosts"]) == members, r.name
        names = "|".join(members)
        exprs = [rule["expr"] for g in monitoring.rule_groups(reference, r) for rule in g["rules"]
                 if rule.get("alert", "").startswith("DrStandby")]
        assert len(exprs) == 2 and all(f'application_name=~"{names}"' in e for e in exprs), r.name
        checked += 1
    assert checked >= 6, checked


def _inventory_hosts(node) -> set:
    found = set()
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "hosts" and isinstance(value, dict):
                found |= set(value)
            found |= _inventory_hosts(value)
    return found


def test_dr_standby_lagging_pages_at_half_the_rpo_within_a_minute(tree, tmp_path):
    """us-east-1 writes 150 MiB of WAL a minute (the 1 min RPO's worth); its standby falls 100 MiB behind at minute
    61: still within the RPO, but over half of it. The page comes two minutes later, before the RPO is broken: at the
    full RPO's worth, held for five minutes, it stayed silent."""
    require_tool("promtool")
    _, root = tree
    rules, alerts = _rules_without_annotations(root, tmp_path)
    lag = f'pg_stat_replication_pg_wal_lsn_diff{{instance="pg-2",{DR_PG2},state="streaming"}}'
    written = f'pg_stat_replication_pg_current_wal_lsn_bytes{{instance="pg-2",{DR_PG2},state="streaming"}}'
    series = [{"series": lag, "values": f"0x60 {100 * MIB}x30"}, _counter(written, 150 * MIB, 100)]
    expected = [{"exp_labels": {**alerts["DrStandbyLagging"]["labels"], "instance": "pg-2"}}]
    _promtool_alert_test(rules, tmp_path, series, "63m", "DrStandbyLagging", expected)
    _promtool_alert_test(rules, tmp_path, series, "60m", "DrStandbyLagging", [])


def test_a_lost_region_pages_from_its_dr_partner(reference):
    """Every region whose standby cluster another region runs is watched from there: the partner's rules page
    (DrRegionMayBeLost) on the WAL receiver of the standby streaming from the host its Patroni configuration dials
    (the partner's group_vars, standby_cluster.host), read by a scrape job of the partner's kube-prometheus-stack
    values that probes the standby's own port and keeps the metric. The regions that are nobody's DR partner
    (ca-central-1, sa-east-1, ap-south-1, ap-southeast-2) paged no one before: their alerts lived only in their own
    Prometheus."""
    import re
    from compiler.ir import dr_watch
    from compiler.targets.ansible import emit_region as ansible_region
    from compiler.targets.helm import observability
    watched = set()
    for partner in reference.regions:
        alerts = [rule for rule in monitoring.dr_partner_alerts(reference, partner)]
        standbys = partner.postgres_ha.standbys if partner.postgres_ha else ()
        assert len(alerts) == len(standbys), partner.name
        if not standbys:
            continue
        files = ansible_region(reference, partner)
        clusters = {c["region"]: c for c in yaml.safe_load(
            files[f"ansible/inventories/{partner.name}/group_vars/postgres.yml"])["patroni_standby_clusters"]}
        jobs = {j["job_name"]: j for j in observability.kube_prometheus_stack(reference, partner)
                ["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"]}
        fqdn = {h.name: h.fqdn for h in partner.hosts}
        for sb, rule in zip(standbys, alerts):
            source = rule["labels"]["source_region"]
            assert source == sb.of_region and rule["labels"]["severity"] == "critical" and rule["for"] == "1m"
            dials = clusters[source]["config"]["bootstrap"]["dcs"]["standby_cluster"]["host"]
            job = jobs[dr_watch.scrape_job(source)]
            assert rule["expr"] == (f'absent({dr_watch.WAL_RECEIVER_CONNECTED}{{job="{job["job_name"]}",'
                                    f'status="streaming",sender_host="{dials}"}})'), rule["expr"]
            assert job["metrics_path"] == "/probe"
            assert job["params"]["target"] == [dr_watch.probe_target(clusters[source]["port"])]
            assert f":{clusters[source]['port']}/" in job["params"]["target"][0]
            (group,) = job["static_configs"]
            assert group["targets"] == [f"{fqdn[h]}:9187" for h in clusters[source]["hosts"]]
            (keep,) = job["metric_relabel_configs"]
            assert keep["action"] == "keep" and re.fullmatch(keep["regex"], dr_watch.WAL_RECEIVER_CONNECTED)
            assert f"Region {source} may be lost" in rule["annotations"]["summary"]
            watched.add(source)
    sources = {r.name for r in reference.regions if monitoring.dr_standby_members(reference, r)}
    assert watched == sources and {"ca-central-1", "sa-east-1", "ap-south-1", "ap-southeast-2"} <= watched


def test_etcd_pages_once_a_member_has_held_the_quota_share_for_the_set_time(tree, tmp_path):
    """etcd refuses every write at its quota (NOSPACE) and Patroni's leader then demotes itself: EtcdDatabaseNearQuota
    pages when a member's backend (etcd_mvcc_db_total_size_in_bytes, what etcd's quota check weighs) has stayed above
    ETCD_QUOTA_ALERT_SHARE of etcd_server_quota_backend_bytes for ETCD_QUOTA_ALERT_FOR, not before; a member just
    under the share never pages, nor does a series of another job."""
    from compiler.ir.postgres_ha import ETCD_QUOTA_ALERT_FOR, ETCD_QUOTA_ALERT_SHARE
    require_tool("promtool")
    _, root = tree
    rules, alerts = _rules_without_annotations(root, tmp_path)
    assert alerts["EtcdDatabaseNearQuota"]["for"] == ETCD_QUOTA_ALERT_FOR == "10m"
    assert alerts["EtcdDatabaseNearQuota"]["labels"]["severity"] == monitoring.PAGE
    other = 'job="postgres-exporter",instance="x:9187"'
    over, under = QUOTA * (ETCD_QUOTA_ALERT_SHARE + 0.01), QUOTA * (ETCD_QUOTA_ALERT_SHARE - 0.01)
    # 30 minutes under the share, then over it from minute 31
    series = [{"series": f"etcd_mvcc_db_total_size_in_bytes{{{ETCD}}}", "values": f"{under:.0f}x30 {over:.0f}x60"},
              _gauge(f"etcd_server_quota_backend_bytes{{{ETCD}}}", QUOTA),
              _gauge(f"etcd_mvcc_db_total_size_in_bytes{{{other}}}", QUOTA),
              _gauge(f"etcd_server_quota_backend_bytes{{{other}}}", QUOTA)]
    page = [{"exp_labels": {**alerts["EtcdDatabaseNearQuota"]["labels"], **ETCD_LABELS}}]
    _promtool_alert_test(rules, tmp_path, series, "30m", "EtcdDatabaseNearQuota", [])
    _promtool_alert_test(rules, tmp_path, series, "40m", "EtcdDatabaseNearQuota", [])  # over for 9 minutes
    _promtool_alert_test(rules, tmp_path, series, "42m", "EtcdDatabaseNearQuota", page)
    quiet = [{"series": f"etcd_mvcc_db_total_size_in_bytes{{{ETCD}}}", "values": f"{under:.0f}x90"},
             _gauge(f"etcd_server_quota_backend_bytes{{{ETCD}}}", QUOTA)]
    _promtool_alert_test(rules, tmp_path, quiet, "90m", "EtcdDatabaseNearQuota", [])


def test_the_etcd_alerts_read_the_job_that_scrapes_every_member(any_case):
    """The etcd alerts exist exactly where a Patroni cluster runs, and read the scrape job the region's
    kube-prometheus-stack values give every etcd member's metrics listener."""
    from compiler.ir.names import ETCD_SCRAPE_JOB
    from compiler.targets.helm import observability
    for r in any_case.regions:
        groups = {g["name"]: g for g in monitoring.rule_groups(any_case, r)}
        ha = r.postgres_ha
        assert ("etcd" in groups) == (ha is not None), r.name
        if ha is None:
            continue
        assert [x["alert"] for x in groups["etcd"]["rules"]] == ["EtcdDatabaseNearQuota", "EtcdNoLeader",
                                                                  "EtcdMemberDown"]
        assert all(f'{{job="{ETCD_SCRAPE_JOB}"}}' in x["expr"] for x in groups["etcd"]["rules"])
        spec = observability.kube_prometheus_stack(any_case, r)["prometheus"]["prometheusSpec"]
        (job,) = [j for j in spec["additionalScrapeConfigs"] if j["job_name"] == ETCD_SCRAPE_JOB]
        assert "scheme" not in job and "tls_config" not in job  # plain HTTP: the listener asks no certificate
        targets = sorted(t for s in job["static_configs"] for t in s["targets"])
        assert targets == sorted(f"{f}:{ha.etcd_metrics_port}" for f in ha.etcd_fqdns), r.name


def test_the_etcd_alerts_reach_the_page_receiver(tree):
    """Each etcd alert, with the labels its rule gives it (and the scrape's), is routed by the region's Alertmanager
    configuration to the receiver that pages: an etcd refusing writes stops the region's writes and its failover."""
    amtool = require_tool("amtool")
    _, root = tree
    cfg = root / "monitoring/us-east-1/alertmanager/alertmanager.yaml"
    rules = yaml.safe_load((root / "monitoring/us-east-1/prometheus/slo-rules.yaml").read_text())["groups"]
    (etcd,) = [g for g in rules if g["name"] == "etcd"]
    for rule in etcd["rules"]:
        labels = {"alertname": rule["alert"], **rule["labels"], **ETCD_LABELS}
        res = subprocess.run([amtool, "config", "routes", "test", f"--config.file={cfg}",
                              *(f"{k}={v}" for k, v in labels.items())], capture_output=True, text=True)
        assert res.stdout.strip() == "page", (rule["alert"], res.stdout + res.stderr)
