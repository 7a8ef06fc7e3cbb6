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
    assert res.stdout.count("SUCCESS: 21 rules found") == len(files)


def test_amtool_checks_every_alertmanager_config(tree):
    amtool = require_tool("amtool")
    plan, root = tree
    for f in sorted(root.glob("monitoring/*/alertmanager/alertmanager.yaml")):
        res = subprocess.run([amtool, "check-config", str(f)], capture_output=True, text=True)
        assert res.returncode == 0 and "SUCCESS" in res.stdout, res.stdout + res.stderr


@pytest.mark.parametrize("labels,receiver", [("severity=page", "page"), ("severity=ticket", "ticket"), ("foo=bar", "ticket")])
def test_routing(tree, labels, receiver):
    amtool = require_tool("amtool")
    _, root = tree
    cfg = root / "monitoring/us-east-1/alertmanager/alertmanager.yaml"
    res = subprocess.run([amtool, "config", "routes", "test", f"--config.file={cfg}", labels], capture_output=True, text=True)
    assert res.stdout.strip() == receiver, res.stdout + res.stderr


def test_thresholds_come_from_the_slos(reference):
    r = reference.region("eu-west-1")
    rules = {x["alert"]: x for g in monitoring.rule_groups(reference, r) for x in g["rules"] if "alert" in x}
    budget = 1 - reference.spec.slos.availability_percent / 100
    assert f"> {budget * 14.4:.6g} and" in rules["ErrorBudgetBurnFast"]["expr"]
    assert f"> {budget * 6:.6g} and" in rules["ErrorBudgetBurnFast"]["expr"]
    assert rules["LatencyP95AboveTarget"]["expr"].endswith(f"> {reference.spec.slos.latency_p95_ms}")
    assert rules["ReplicationLagHigh"]["expr"].endswith("> 1")
    am = monitoring.alertmanager(reference, r)
    assert am["route"]["routes"][0]["repeat_interval"] == f"{reference.spec.disaster_recovery.p1_response_minutes}m"


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
    expected = [{"exp_labels": {"severity": "page", "slo": "availability", "region": "us-east-1", "service": "booking"},
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
    "pg_stat_statements_seconds_total": ("postgres-exporter", "collector/pg_stat_statements.go, --collector.stat_statements"),
    "pg_stat_statements_calls_total": ("postgres-exporter", "collector/pg_stat_statements.go, --collector.stat_statements"),
    "redis_keyspace_hits_total": ("redis-exporter", "exporter/exporter.go metricMapCounters (INFO keyspace_hits)"),
    "redis_keyspace_misses_total": ("redis-exporter", "exporter/exporter.go metricMapCounters (INFO keyspace_misses)"),
}


def test_data_tier_alerts_read_exporter_metrics_prometheus_scrapes(any_case):
    """Every pg_* and redis_* series the alerts use is a name the exporters really export, and the region's
    kube-prometheus-stack values scrape that exporter wherever the datastore runs on self-managed hosts."""
    import re
    from compiler.targets.helm import observability as observability
    for r in any_case.regions:
        exprs = " ".join(rule["expr"] for g in monitoring.rule_groups(any_case, r) for rule in g["rules"])
        used = set(re.findall(r"\b(?:pg|redis)_[a-z_]+\b", exprs))
        assert used == set(EXPORTER_METRICS), used ^ set(EXPORTER_METRICS)
        jobs = {j["job_name"] for j in
                observability.kube_prometheus_stack(any_case, r)["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"]}
        for metric, (job, _) in EXPORTER_METRICS.items():
            group = "redis_cluster" if job == "redis-exporter" else "postgres_primary"
            assert (job in jobs) == bool(r.hosts_in(group)), (r.name, metric, job)
