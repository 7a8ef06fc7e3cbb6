"""The services' OpenTelemetry SDKs speak the protocol of the collector port they are pointed at.

Every service gets OTEL_EXPORTER_OTLP_ENDPOINT on the collector's OTLP port 4317, which the chart the collector runs
from serves as gRPC (opentelemetry-collector 0.170.0 values: receivers.otlp.protocols.grpc on 4317, http on 4318,
port `otlp` appProtocol grpc). The OpenTelemetry specification's default transport is http/protobuf (protocol/
exporter.md: "If no configuration is provided the default transport SHOULD be http/protobuf"), so an SDK following
it sent HTTP to the gRPC port and lost every span and metric, the database-latency SLI among them, unless told.
"""

from __future__ import annotations

import yaml

from compiler.ir.names import OTLP_GRPC_PORT, OTLP_HTTP_PORT
from compiler.targets import kubernetes
from tests.conftest import REPO

CHART_VALUES = REPO.parent / "shared/reference/helm/opentelemetry-collector/0.170.0/values.yaml"
PROTOCOL = {OTLP_GRPC_PORT: "grpc", OTLP_HTTP_PORT: "http/protobuf"}


def test_the_chart_serves_each_port_with_the_protocol_assumed_here():
    if not CHART_VALUES.exists():  # the reference data lives beside the repository
        import pytest
        pytest.skip(f"{CHART_VALUES} is not here")
    values = yaml.safe_load(CHART_VALUES.read_text())
    protocols = values["config"]["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"].endswith(f":{OTLP_GRPC_PORT}")
    assert protocols["http"]["endpoint"].endswith(f":{OTLP_HTTP_PORT}")


def test_every_container_names_the_protocol_of_its_otlp_endpoint(any_case):
    seen = 0
    for r in any_case.regions:
        for rel, text in kubernetes.emit_region(any_case, r).items():
            if not rel.endswith(".yaml"):
                continue
            for doc in yaml.safe_load_all(text):
                if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                    continue
                for c in doc["spec"]["template"]["spec"]["containers"]:
                    env = {e["name"]: e.get("value") for e in c.get("env", [])}
                    if "OTEL_EXPORTER_OTLP_ENDPOINT" not in env:
                        continue
                    port = int(env["OTEL_EXPORTER_OTLP_ENDPOINT"].rsplit(":", 1)[1])
                    assert env.get("OTEL_EXPORTER_OTLP_PROTOCOL") == PROTOCOL[port], (r.name, rel, c["name"])
                    seen += 1
    assert seen or not any(r.settings.monitoring.tracing for r in any_case.regions)
