"""The observability ingest estimate (compiler/ir/log_volume.py), rule R073 and what the cut at the source generates:
the sidecars' Telemetry filters, Kong's Fluent Bit grep filter, the log indices' shards and replicas."""

import json
import re
from pathlib import Path

import pytest
import yaml

from compiler.errors import SpecError
from compiler.ir.log_volume import mesh_filters
from compiler.pipeline import compile_file, compile_text
from compiler.targets.helm import observability, platform as helm_platform
from compiler.targets.helm.fluentbit import parse_classic
from compiler.targets.kubernetes import emit_region as kubernetes_region
from compiler.targets.monitoring import docs_region, ilm_index_template

REPO = Path(__file__).resolve().parent.parent
TWO_REGION = (REPO / "tests/cases/two-region/platform.yaml").read_text()


AMERICAS_SAMPLING = "traffic_share: 60, settings: {security: {vault_address: \"https://vault.acme.example.org\"}, " \
                    "monitoring: {gateway_access_log: errors, trace_sample_percent: 0.1"


def _patched(text: str, *patches: tuple[str, str], count: int = 1) -> str:
    for old, new in patches:
        assert text.count(old) == count, old
        text = text.replace(old, new)
    return text


def _plan(text: str):
    return compile_text(text, "platform.yaml").plan


def test_the_estimate_s_arithmetic_on_a_small_spec():
    """two-region: 1,000 requests/s, use1 60 % of them, the mesh on, Kong's failed requests, 0.1 % traced, 30 days,
    3 x 100 GiB nodes. Every figure worked by hand from the formula in the module's docstring."""
    v = _plan(TWO_REGION).region("use1").log_volume
    assert v.requests_per_day == 1000 * 0.60 * 86_400 == 51_840_000
    assert v.kong_lines_per_request == pytest.approx(0.001)  # capacity.max_error_rate_percent 0.1 %
    assert v.mesh_lines_per_request == pytest.approx(0.0102)  # inbound 1 % slow + 0.01 % 5xx, outbound 0.01 % 5xx
    assert v.spans_per_traced_request == 3 and v.trace_fraction == pytest.approx(0.001)
    assert v.access_docs_per_day == pytest.approx(51_840_000 * 0.0112)  # 580,608
    assert v.access_bytes_per_day == pytest.approx(51_840_000 * (0.001 * 1700 + 0.0102 * 2400))  # 1.357 GB
    assert v.spans_per_day == pytest.approx(155_520) and v.span_bytes_per_day == pytest.approx(311_040_000)
    assert (v.retention_days, v.replicas) == (30, 1)
    assert v.kept_bytes == pytest.approx(30 * (1_357_171_200 + 311_040_000) * 2)  # 100.1 GB
    assert v.budget_bytes == 3 * 100 * 2**30 / 2  # 161.1 GB
    assert v.fits and v.max_retention_days == 48  # floor(161.06 / 3.336)
    assert v.log_index_shards == 1


def test_every_request_s_line_and_no_mesh():
    """Kong's line for every request, no sidecars: 1 line a request, only the service's own span."""
    text = _patched(TWO_REGION, ("gateway_access_log: errors", "gateway_access_log: all"), count=2)
    text = _patched(text, ("capacity: {requests_per_second: 1000}", "capacity: {requests_per_second: 10}"),
                    ("  kubernetes:\n    min_nodes: 6", "  kubernetes:\n    istio: false\n    min_nodes: 6"))
    v = _plan(text).region("euw1").log_volume
    assert v.requests_per_day == 10 * 0.40 * 86_400
    assert (v.kong_lines_per_request, v.mesh_lines_per_request, v.spans_per_traced_request) == (1.0, 0.0, 1)
    assert v.access_bytes_per_day == pytest.approx(345_600 * 1700)


def test_one_node_keeps_no_replica():
    text = _patched(TWO_REGION, ("    elasticsearch:\n      nodes: 3", "    elasticsearch:\n      nodes: 1"))
    v = _plan(text).region("use1").log_volume
    assert v.replicas == 0 and v.disk_bytes == 100 * 2**30


def test_the_rule_names_the_numbers_and_the_fixes_at_the_retention():
    """10 % of use1's requests traced instead of 0.1 %: it keeps 1.3 TB of spans and logs against a 0.16 TB budget.
    The finding sits where the region's retention was set (its geo's settings here) and says what to change."""
    text = _patched(TWO_REGION, (AMERICAS_SAMPLING, AMERICAS_SAMPLING.replace("0.1", "10") + ", log_retention_days: 20"))
    with pytest.raises(SpecError) as exc:
        compile_text(text, "platform.yaml")
    hits = [d for d in exc.value.diagnostics if d.code == "R073"]
    assert [d.path for d in hits] == ["geos.americas.settings.monitoring.log_retention_days"]
    (d,) = hits
    assert d.line == text[: text.index("americas: {display_name")].count("\n") + 1
    m = d.message
    assert "52 million requests a day" in m and "20 days with 1 replica(s)" in m
    assert "over 50 % of the 3 x 100 GiB Elasticsearch disks (0.16 TB" in m and "85 % low watermark" in m
    assert "lower monitoring.log_retention_days to at most 2" in m
    assert "lower monitoring.trace_sample_percent (10 %: 31.1 GB of spans a day)" in m
    assert "raise datastores.elasticsearch.instance.disk_gib to" in m and "gateway_access_log" not in m
    assert "region use1" in d.format() and "euw1" not in d.format()


def test_managed_search_is_not_checked():
    text = _patched(TWO_REGION, (AMERICAS_SAMPLING, AMERICAS_SAMPLING.replace("0.1", "10")),
                    ("    elasticsearch:\n      nodes: 3", "    elasticsearch:\n      deployment: managed\n      nodes: 3"))
    try:
        compile_text(text, "platform.yaml")
    except SpecError as e:
        assert "R073" not in {d.code for d in e.diagnostics}


@pytest.fixture(scope="module")
def reference():
    return compile_file(str(REPO / "platform.yaml"), strict=True).plan


def test_the_reference_fits_its_budget(reference):
    for r in reference.regions:
        v = r.log_volume
        assert v.self_managed and v.fits, r.name
        assert v.kept_bytes <= 0.5 * 3 * 1000 * 2**30
    emea = {r.name: r.log_volume.retention_days for r in reference.regions if r.geo == "emea"}
    assert set(emea.values()) == {14}  # GDPR minimisation kept
    use1 = reference.region("us-east-1").log_volume
    assert use1.requests_per_day == 100_000 * 0.22 * 86_400
    assert (use1.retention_days, use1.max_retention_days) == (12, 13)
    # before the cut: Kong's line and both sidecars' lines for every request, 10 % traced
    before = use1.requests_per_day * (1700 + 2 * 2400) + use1.requests_per_day * 0.10 * 3 * 2000
    assert before / 1e12 > 13 and use1.bytes_per_day < before / 200


def test_sidecars_log_only_through_the_telemetry(reference):
    r = reference.region("us-east-1")
    mesh = helm_platform.istiod(reference, r)["meshConfig"]
    assert "accessLogFile" not in mesh and mesh["accessLogEncoding"] == "JSON"
    (tel,) = yaml.safe_load_all(kubernetes_region(reference, r)["kubernetes/us-east-1/mesh-telemetry.yaml"])
    logs = tel["spec"]["accessLogging"]
    assert [(e["match"]["mode"], e["providers"]) for e in logs] == [("SERVER", [{"name": "envoy"}]),
                                                                     ("CLIENT", [{"name": "envoy"}])]
    assert logs[0]["filter"]["expression"] == 'response.code >= 500 || request.duration > duration("1000ms")'
    assert logs[1]["filter"]["expression"] == "response.code >= 500"
    assert mesh_filters(250)["SERVER"].endswith('duration("250ms")')


KONG_LINES = {
    '203.0.113.10 - - [05/Dec/2026:12:00:00 +0000] "GET /api/v1/bookings?x=1 HTTP/1.1" 200 52 "-" "curl/8" kong_request_id: "5f0c"': False,
    '203.0.113.10 - - [05/Dec/2026:12:00:00 +0000] "GET / HTTP/2.0" 304 0 "-" "Mozilla/5.0 (X11)" kong_request_id: "5f0c"': False,
    '203.0.113.10 - - [05/Dec/2026:12:00:00 +0000] "POST /api/v1/auth HTTP/1.1" 401 26 "-" "curl/8" kong_request_id: "5f0c"': True,
    '203.0.113.10 - - [05/Dec/2026:12:00:00 +0000] "GET /api/v1/ai HTTP/1.1" 502 120 "-" "curl/8" kong_request_id: "5f0c"': True,
    '203.0.113.10 - - [05/Dec/2026:12:00:00 +0000] "GET /x\\x22200 HTTP/1.1" 429 0 "-" "curl/8" kong_request_id: "5f0c"': True,
    '2026/12/05 12:00:00 [error] 1234#0: *5 connect() failed (111: Connection refused) while connecting to upstream': True,
}


def test_kong_s_successful_lines_are_dropped_before_shipping(reference):
    """The grep filter runs before the kubernetes filter, on Kong's proxy container only, and drops exactly the
    1xx-3xx access lines (Python's re here: the pattern uses only constructs Onigmo, Fluent Bit's engine, reads alike)."""
    r = reference.region("us-east-1")
    filters = parse_classic(observability.fluent_bit(reference, r)["config"]["filters"])
    assert [name for name, _ in filters] == ["FILTER", "FILTER", "FILTER"]
    grep = dict(filters[0][1])
    assert grep["Name"] == "grep" and grep["Match"] == "kube.*_kong_proxy-*" and dict(filters[1][1])["Name"] == "kubernetes"
    key, _, regex = grep["Exclude"].partition(" ")
    assert key == "log"
    for line, kept in KONG_LINES.items():
        assert (re.search(regex, line) is None) == kept, line
    tag = "kube.var.log.containers.kong-kong-7d9f8c-x2x7q_kong_proxy-" + "a" * 64 + ".log"
    glob = re.escape(grep["Match"]).replace(r"\*", ".*")
    assert re.fullmatch(glob, tag)
    assert not re.fullmatch(glob, tag.replace("_proxy-", "_istio-proxy-"))


def test_every_line_mode_ships_kong_s_lines_untouched():
    text = _patched(TWO_REGION, ("gateway_access_log: errors", "gateway_access_log: all"), count=2)
    text = _patched(text, ("capacity: {requests_per_second: 1000}", "capacity: {requests_per_second: 10}"))
    plan = _plan(text)
    filters = parse_classic(observability.fluent_bit(plan, plan.region("use1"))["config"]["filters"])
    assert [dict(f)["Name"] for _, f in filters] == ["kubernetes", "record_modifier"]


def test_log_indices_get_the_estimate_s_shards_and_replicas(reference):
    for name, shards in (("us-east-1", 2), ("us-west-2", 2), ("ap-southeast-2", 1)):
        r = reference.region(name)
        settings = ilm_index_template(r)["template"]["settings"]
        assert (settings["index.number_of_shards"], settings["index.number_of_replicas"]) == (shards, 1), name
        assert r.log_volume.access_bytes_per_day / shards <= 25e9


def test_the_region_page_states_estimate_budget_and_retention(reference):
    page = docs_region(reference, reference.region("us-east-1"))
    section = page[page.index("## Logs and traces in Elasticsearch"):]
    assert "retention x daily volume x (1 + replicas) at most 50 % of the nodes' raw disk" in section
    assert "| retention (`monitoring.log_retention_days`) | 12 days |" in section
    assert "| budget: 50 % of 3 x 1,000 GiB | 1.61 TB |" in section
    assert "| requests a day (traffic share x `capacity.requests_per_second` x 86,400) | 1,900,800,000 |" in section
    assert 'inbound `response.code >= 500 || request.duration > duration("1000ms")`' in section
