"""What the region's observability data puts on its Elasticsearch disks: access-log documents and spans per day.

Each region's self-managed Elasticsearch holds the application's indices (the services' `<service>_*`, e.g.
location_*, analytics_*) and, beside them, Fluent Bit's daily log indices and Jaeger's span indices. Those grow with
the request rate; when a node's disk passes the flood-stage watermark (95 %) Elasticsearch puts a read-only block
on every index with a shard there, the application's too. So the estimate below is computed once per region
(resolve) and rule R073 keeps it within a budget of the cluster's disk; the docs target states it.

Requests per day: the region's traffic share of `capacity.requests_per_second` (the same normal rate Kong's HPA
starts from, compiler/ir/gateway.py) x 86,400 s. The daily average of a day with a peak lies below that, so the
figure is an upper bound of the average day.

Access-log lines per gateway request, counted from what the generated configuration does:
- Kong (helm target: the kong chart's default `proxy_access_log: /dev/stdout`, kong_log_format): one line per
  request; with `monitoring.gateway_access_log: errors` Fluent Bit drops Kong's 1xx-3xx lines before they are
  shipped (helm target, a grep filter on Kong's proxy container), so only failed responses (4xx, 5xx) are indexed.
- The mesh (kubernetes target: the mesh-wide Telemetry, ACCESS_LOG_FILTERS): no sidecar logs every request
  (meshConfig.accessLogFile is unset); a request Kong forwards crosses one hop (Kong's sidecar outbound -> the
  service's sidecar inbound, Kong's own inbound is not captured), and the hop logs on its server side when the
  response is a 5xx or slower than `slos.latency_p99_ms`, on its client side when it is a 5xx. At the SLOs' edge
  that is (1 - 0.99) + error rate of the requests on the server side and the error rate on the client side.
  Calls between services are not counted (the spec says nothing of fan-out); each adds the same per call.
Spans per traced request: Kong's sidecar (client span, where the mesh takes the sampling decision), the service's
sidecar (server span) and the service's own SDK (server span, parent-based sampling); without the mesh only the
service's span. `monitoring.trace_sample_percent` of the requests are traced.

Bytes per document (SENT_*): the JSON a shipper sends, measured on a representative record (tests/test_log_volume.py
builds it from the fields listed below); Elasticsearch's on-disk size is taken equal to it (STORED_PER_SENT).
"""

from __future__ import annotations

import math

from compiler.records import dataclass

SECONDS_PER_DAY = 86_400
GB = 10**9

# Istio's JSON access-log record (EnvoyJSONLogFormatIstio, istio/istio pilot/pkg/model/telemetry_logging.go at 1.30.3:
# 23 keys), merged into the record by Fluent Bit's kubernetes filter (Merge_Log On), plus that filter's pod metadata
# (pod, namespace, labels, annotations with the sidecar's status, host, container, image and ids: ~1.4 kB) and the
# record's time, stream, region, cloud and geo: 2,419 bytes on the representative record.
SENT_ENVOY_ACCESS_BYTES = 2_400
# Kong's kong_log_format line (Kong/kong kong/templates/nginx_kong.lua at 3.9.3: address, user, time, request line,
# status, bytes, referer, user agent, request id; ~300 bytes) in `log`, with the same metadata: 1,695 bytes.
SENT_KONG_ACCESS_BYTES = 1_700
# A Jaeger span document (jaeger's Elasticsearch span model: ids, operation, times, ~20 span tags from an Istio
# sidecar or the SDK's HTTP attributes, and the process tags the collector adds: k8sattributes and region): ~2 kB.
SENT_SPAN_BYTES = 2_000
# Index size on disk per byte sent. Elastic measured 0.73 on web-server logs with default mappings ("Part 2.0: The
# true story behind Elasticsearch storage requirements", elastic.co blog, 2015); dynamic mappings index each string
# field of these records twice (text and keyword), so no shrink is counted.
STORED_PER_SENT = 1.0
# Copies beyond the primary of every log and span index: Elasticsearch's default index.number_of_replicas, written
# into the log indices' template by the monitoring target (and Jaeger's default, es num_replicas 1).
LOG_INDEX_REPLICAS = 1
# The budget: logs and traces (all copies) may take this share of the cluster's raw disk. Elasticsearch stops
# allocating shards to a node past the low watermark (85 %), moves them off past the high one (90 %) and blocks
# writes to every index with a shard on it past the flood stage (95 %); 50 % for observability leaves 35 % of the
# disk below the low watermark for the application's indices, their merges and a node's shards moving over.
OBSERVABILITY_DISK_SHARE = 0.5
LOW_WATERMARK = 0.85
# Elastic's guidance for shard size: 10-50 GB per shard ("Size your shards", Elasticsearch 8 docs). A daily log index
# gets as many primary shards as put its estimated day at most TARGET_SHARD_BYTES per shard: the middle of the range,
# leaving room for the services' own log lines (not counted here) and for days above the average.
MAX_SHARD_BYTES = 50 * GB
TARGET_SHARD_BYTES = 25 * GB


@dataclass(frozen=True)
class LogVolume:
    """One region's observability ingest and what it keeps on the Elasticsearch disks. Bytes are decimal (GB = 1e9)."""

    requests_per_day: float
    kong_lines_per_request: float
    mesh_lines_per_request: float
    spans_per_traced_request: int
    trace_fraction: float
    access_docs_per_day: float
    spans_per_day: float
    access_bytes_per_day: float  # primaries, as stored
    span_bytes_per_day: float
    retention_days: int
    replicas: int  # copies beyond the primary that the cluster can place (0 on one node)
    disk_bytes: float  # nodes x disk_gib, raw
    self_managed: bool

    @property
    def bytes_per_day(self) -> float:
        return self.access_bytes_per_day + self.span_bytes_per_day

    @property
    def kept_bytes(self) -> float:
        """retention x daily volume x (1 + replicas): what the log and span indices hold at steady state."""
        return self.retention_days * self.bytes_per_day * (1 + self.replicas)

    @property
    def budget_bytes(self) -> float:
        return self.disk_bytes * OBSERVABILITY_DISK_SHARE

    @property
    def fits(self) -> bool:
        return self.kept_bytes <= self.budget_bytes

    @property
    def max_retention_days(self) -> int:
        per_day = self.bytes_per_day * (1 + self.replicas)
        return math.floor(self.budget_bytes / per_day) if per_day else 0

    @property
    def largest_daily_index_bytes(self) -> float:
        """The container-log index of one day (every access line goes there; one primary shard): Jaeger's span
        indices are spread over its own shard count."""
        return self.access_bytes_per_day

    @property
    def log_index_shards(self) -> int:
        """Primary shards of each daily log index (the monitoring target's index template): at most
        TARGET_SHARD_BYTES of the estimated day per shard, at least 1."""
        return max(1, math.ceil(self.largest_daily_index_bytes / TARGET_SHARD_BYTES))


def mesh_filters(latency_p99_ms: int) -> dict[str, str]:
    """The sidecars' access-log filters (Envoy CEL, Istio Telemetry accessLogging), by traffic direction: the server
    side logs 5xx and requests slower than the p99 objective, the client side 5xx (what the server never saw:
    connection failures, no healthy upstream, local timeouts)."""
    return {"SERVER": f'response.code >= 500 || request.duration > duration("{latency_p99_ms}ms")',
            "CLIENT": "response.code >= 500"}


def log_volume(platform, share_percent: float, settings) -> LogVolume:
    """The estimate for one region: `platform` the validated spec's top level, `settings` the region's merged settings."""
    mon = settings.monitoring
    es = settings.datastores.elasticsearch
    slo = platform.slos
    requests = platform.capacity.requests_per_second * share_percent / 100 * SECONDS_PER_DAY
    errors = slo.error_rate_percent / 100
    slow = 1 - 0.99  # the p99 objective: at most 1 % of the requests take longer than latency_p99_ms
    failed = max(platform.capacity.max_error_rate_percent, slo.error_rate_percent) / 100  # 4xx and 5xx, see docs
    kong = 1.0 if mon.gateway_access_log == "all" else failed
    mesh = settings.kubernetes.istio
    mesh_lines = (slow + errors) + errors if mesh else 0.0
    spans = (2 if mesh else 0) + 1
    traced = mon.trace_sample_percent / 100 if mon.tracing else 0.0
    docs = requests * (kong + mesh_lines)
    access = requests * (kong * SENT_KONG_ACCESS_BYTES + mesh_lines * SENT_ENVOY_ACCESS_BYTES) * STORED_PER_SENT
    span_docs = requests * traced * spans
    return LogVolume(
        requests_per_day=requests, kong_lines_per_request=kong, mesh_lines_per_request=mesh_lines,
        spans_per_traced_request=spans, trace_fraction=traced, access_docs_per_day=docs, spans_per_day=span_docs,
        access_bytes_per_day=access, span_bytes_per_day=span_docs * SENT_SPAN_BYTES * STORED_PER_SENT,
        retention_days=mon.log_retention_days, replicas=min(LOG_INDEX_REPLICAS, es.nodes - 1),
        disk_bytes=es.nodes * es.instance.disk_gib * 2**30, self_managed=es.deployment == "self-managed")
