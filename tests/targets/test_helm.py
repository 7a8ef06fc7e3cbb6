"""Helm target: values files checked against the pinned charts' own values.yaml and
values.schema.json (../shared/reference/helm), the helmfile's pins and wiring, the names the
kubernetes target relies on, and the escaping of Fluent Bit's classic config text."""

from __future__ import annotations

import posixpath
import re
import subprocess
from functools import lru_cache
from pathlib import PurePosixPath

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.pipeline import compile_text
from compiler.render import dump_yaml
from compiler.targets import helm, kubernetes
from compiler.targets.helm.charts import CHARTS, SUBCHARTS
from compiler.ir.edge import kong_needs_render
from compiler.targets.helm.fluentbit import FluentBitValueError, fluentbit, parse_classic, render_conf
from compiler.ir.edge import KONG_PROXY_TLS_PORT, lb_target_name
from compiler.targets.kubernetes.common import SIDECAR_LIMITS, SIDECAR_REQUESTS, cluster_name
from tests.conftest import REPO, require_shared, require_tool
from tests.targets.test_kubernetes import CASES, YAMLLINT_CONFIG, plan_of, region_docs
from tests.tools import helm_values_check as hv

SKIP_WORDS = {"istio-base": "istio-base", "istiod": "istiod",
              "opentelemetry-collector": "OpenTelemetry collector", "jaeger": "Jaeger",
              "fluent-bit": "Fluent Bit", "cluster-autoscaler": "cluster-autoscaler", "kong": "-", "kube-prometheus-stack": "-",
              "nvidia-device-plugin": "nvidia-device-plugin", "aws-load-balancer-controller": "aws-load-balancer-controller"}
# A spec reference (`vault:...`, `env:VAR`); `${env:VAR}` is a collector-config expansion of the pod's own
# environment (Jaeger v2 reads its Elasticsearch user so), not a reference.
SECRET_REF = re.compile(r"(?<!\$\{)\b(vault|aws-sm|gcp-sm|azure-kv|env):[A-Za-z0-9_./#@:+=-]")


@lru_cache(maxsize=None)
def emitted(case: str) -> dict[str, str]:
    plan = plan_of(case)
    out = {}
    for r in plan.regions:
        out.update(helm.emit_region(plan, r))
    return out


def releases():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            for rel in helm.releases(plan, r)[0]:
                if rel.chart is not helm.LOCAL_CHART:  # local charts hold ESO objects, no values (test_secrets.py)
                    yield case, plan, r, rel


def values_of(case, region, release) -> dict:
    return yaml.safe_load(emitted(case)[f"helm/{region.name}/{helm.values_file(release)}"])


def with_set_files(values: dict, release) -> dict:
    """The values as helm sees them: the helmfile's `set` entries laid over the file."""
    out = yaml.safe_load(yaml.safe_dump(values))
    for key, _ in release.set_files:
        node = out
        *head, last = key.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = "<contents of the file>"
    return out


@pytest.fixture(scope="module")
def reference():
    return require_shared("reference/helm")


# ------------------------------------------------------------------ values against the charts


def test_every_key_path_exists_in_the_pinned_chart(reference):
    checked = set()
    for case, plan, r, rel in releases():
        values = with_set_files(values_of(case, r, rel), rel)
        errors = hv.check(values, rel.chart.key, rel.chart.version, reference, SUBCHARTS.get(rel.chart.key))
        assert not errors, f"{case}/{r.name}/{rel.name}:\n" + "\n".join(errors)
        checked.add(rel.chart.key)
    assert checked == set(CHARTS), "every platform chart is generated somewhere and checked"


def test_values_validate_against_the_charts_json_schema(reference):
    validated = set()
    for case, plan, r, rel in releases():
        errors = hv.schema_errors(values_of(case, r, rel), rel.chart.key, rel.chart.version, reference)
        if errors is None:
            continue
        assert not errors, f"{case}/{r.name}/{rel.name}:\n" + "\n".join(errors)
        validated.add(rel.chart.key)
    assert validated == {"opentelemetry-collector", "external-secrets"}


def test_the_values_check_is_not_vacuous(reference):
    kong = CHARTS["kong"]
    assert hv.check({"proxy": {"typ": "ClusterIP"}}, "kong", kong.version, reference) == ["kong: unknown key proxy.typ"]
    assert hv.check({"proxy": "ClusterIP"}, "kong", kong.version, reference) == [
        "kong: proxy is a scalar, the chart's default is a map"]
    assert hv.check({"env": {"anything_goes": "1"}, "podLabels": {"x": "y"}}, "kong", kong.version, reference) == []
    kps = CHARTS["kube-prometheus-stack"]
    errors = hv.check({"grafana": {"adminPasswordd": "x"}}, kps.key, kps.version, reference, SUBCHARTS[kps.key])
    assert errors == ["kube-prometheus-stack.grafana (subchart): unknown key adminPasswordd"]
    assert hv.check({"_internal_defaults_do_not_set": {}}, "istiod", "1.30.3", reference) == [
        "istiod: unknown key _internal_defaults_do_not_set"]
    otel = CHARTS["opentelemetry-collector"]
    errors = hv.schema_errors({"mode": "sidecar", "image": {"repo": "x"}}, otel.key, otel.version, reference)
    assert len(errors) == 2 and "'sidecar' is not one of" in errors[0] and "'repo' was unexpected" in errors[1]


def test_commented_key_allow_list_has_its_evidence(reference):
    for chart, paths in hv.COMMENTED.items():
        text = (reference / chart / CHARTS[chart].version / "values.yaml").read_text()
        for path, line in paths.items():
            assert line in text, (chart, path)


def test_chart_pins_are_the_reference_versions(reference):
    for key, chart in CHARTS.items():
        meta = yaml.safe_load((reference / key / chart.version / "Chart.yaml").read_text())
        if key.startswith("istio"):  # placeholder 1.0.0 in the repo; published as the tag
            assert str(meta["version"]) == "1.0.0" and chart.version == "1.30.3"
        else:
            assert str(meta["version"]) == chart.version
            assert str(meta["appVersion"]) == chart.app_version
        assert meta["name"] == chart.chart
    kps = yaml.safe_load((reference / "kube-prometheus-stack/88.5.3/Chart.yaml").read_text())
    pinned = {d["name"]: d["version"] for d in kps["dependencies"]}
    for name, rel in SUBCHARTS["kube-prometheus-stack"].items():
        assert rel == f"{name}/{pinned[name]}"


# ------------------------------------------------------------------ the helmfile


def test_helmfile_pins_and_wires_every_release():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            files = emitted(case)
            hf = yaml.safe_load(files[f"helm/{r.name}/helmfile.yaml"])
            rels, _ = helm.releases(plan, r)
            repos = {x["name"]: x["url"] for x in hf["repositories"]}
            names = {f"{x['namespace']}/{x['name']}" for x in hf["releases"]}
            order = [f"{x['namespace']}/{x['name']}" for x in hf["releases"]]
            assert hf["helmDefaults"]["kubeContext"] == cluster_name(plan.spec.organization.name, r)
            assert [x["name"] for x in hf["releases"]] == [rel.name for rel in rels]
            for entry, rel in zip(hf["releases"], rels):
                # a release comes after everything it needs (helmfile orders by needs; the list says it too)
                assert all(order.index(n) < order.index(f"{entry['namespace']}/{entry['name']}") for n in entry.get("needs", []))
                if rel.chart is helm.LOCAL_CHART and rel.shared:  # a chart of the global tree, the same for every region
                    shared = helm.emit_global(plan)
                    path = posixpath.normpath(posixpath.join(f"helm/{r.name}", entry["chart"]))
                    assert entry["chart"].startswith("../") and f"{path}/Chart.yaml" in shared, entry
                    continue
                if rel.chart is helm.LOCAL_CHART:
                    assert entry["chart"] == f"./{helm.chart_dir(rel)}" and f"helm/{r.name}/{helm.chart_dir(rel)}/Chart.yaml" in files
                    continue
                repo, chart = entry["chart"].split("/")
                assert repos[repo] == rel.chart.url and repos[repo].startswith("https://")
                assert (chart, entry["version"]) == (rel.chart.chart, rel.chart.version)
                assert all(f"helm/{r.name}/{v}" in files for v in entry["values"])
                assert set(entry.get("needs", [])) <= names
            kong_entry = next(x for x in hf["releases"] if x["name"] == "kong")
            (set_file,) = kong_entry["set"]
            assert set_file["name"] == "dblessConfig.config"
            resolved = PurePosixPath(f"helm/{r.name}") / set_file["file"]
            # the rendered copy when the Kong file has decK secret inputs (DB-less Kong cannot expand them)
            expected = f"kong/{r.name}/kong.rendered.yaml" if kong_needs_render(r) else f"kong/{r.name}/kong.yaml"
            assert str(resolved).replace(f"helm/{r.name}/../../", "") == expected


def test_kong_declarative_file_is_the_kong_targets_output():
    """The file the helmfile hands to Kong is the kong target's output, rendered exactly when it has decK
    secret inputs (their `${{ env }}` templates), and the helmfile header gives the render command."""
    from compiler import targets
    kong = targets.load("kong")
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            text = kong.emit_region(plan, r)[f"kong/{r.name}/kong.yaml"]
            assert kong_needs_render(r) == ("${{ env " in text)
            helmfile = helm.emit_region(plan, r)[f"helm/{r.name}/helmfile.yaml"]
            if kong_needs_render(r):
                assert f"deck file render --populate-env-vars generated/kong/{r.name}/kong.yaml" in helmfile
                assert f"-o generated/kong/{r.name}/kong.rendered.yaml" in helmfile


def test_optional_charts_follow_the_spec():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            rels, skipped = helm.releases(plan, r)
            names = {x.name for x in rels}
            assert ("istiod" in names) == r.settings.kubernetes.istio
            assert ("otel-collector" in names) == ("jaeger" in names) == r.settings.monitoring.tracing
            assert ("fluent-bit" in names) == bool(r.hosts_in("elasticsearch"))
            assert ("cluster-autoscaler" in names) == (r.cloud == "aws")
            assert ("aws-load-balancer-controller" in names) == (r.cloud == "aws")
            # every platform chart is either deployed or named with the reason it is not
            missing = set(CHARTS) - {x.chart.key for x in rels}
            said = " ".join(skipped)
            assert all(SKIP_WORDS[key] in said for key in missing), (missing, skipped)
            kong = values_of(case, r, next(x for x in rels if x.name == "kong"))
            assert kong["env"]["database"] == "off" and kong["ingressController"]["enabled"] is False
            assert kong["proxy"]["type"] == "ClusterIP"  # with or without the mesh: the cloud LB is the entry
            assert kong["replicaCount"] == kong["autoscaling"]["minReplicas"] >= r.settings.gateway.replicas
            assert ("nvidia-device-plugin" in names) == (r.cloud in ("aws", "azure") and any(
                p.gpus for p in r.settings.kubernetes.node_pools.values()))


# ------------------------------------------------------------------ the public entry (compiler/ir/edge.py)


def test_no_release_is_a_public_load_balancer():
    """The cloud load balancer (Terraform, WAF attached) is the only public entry: no Istio ingress
    gateway release, and no chart is asked for a LoadBalancer or NodePort Service."""
    def types(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "type" and v in ("LoadBalancer", "NodePort"):
                    yield v
                yield from types(v)
        elif isinstance(node, list):
            for v in node:
                yield from types(v)

    assert "istio-gateway" not in CHARTS
    for case, plan, r, rel in releases():
        assert rel.chart.chart != "gateway" and "ingress" not in rel.name
        values = values_of(case, r, rel)
        assert not list(types(values)), (case, r.name, rel.name)
        if rel.name == "kong":  # the chart's default is a LoadBalancer: say ClusterIP
            assert values["proxy"]["type"] == "ClusterIP"


def test_kong_proxy_listens_where_the_load_balancers_send():
    """HTTPS only, on the port Terraform's load balancers target, Service port = container port (GKE's NEG
    annotation names Service ports); on GCP the annotation names the NEGs as Terraform's backend service
    does. The exact JSON is what GKE's NEG controller parses."""
    from compiler.targets.terraform import aws as _terraform_aws, azure as _terraform_azure, gcp as _terraform_gcp
    args_of = {"aws": _terraform_aws.args, "gcp": _terraform_gcp.args, "azure": _terraform_azure.args}
    clouds = set()
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            clouds.add(r.cloud)
            proxy = values_of(case, r, next(x for x in helm.releases(plan, r)[0] if x.name == "kong"))["proxy"]
            assert proxy["http"] == {"enabled": False}
            assert proxy["tls"] == {"enabled": True, "servicePort": KONG_PROXY_TLS_PORT, "containerPort": KONG_PROXY_TLS_PORT}
            lb = args_of[r.cloud](plan, r)["load_balancer"]
            if r.cloud == "gcp":
                # the backend service health-checks USE_SERVING_PORT: the NEG endpoints' port, the container port
                assert lb["neg_name"] == lb_target_name(r) == f"{r.cluster_name}-kong"
                assert proxy["annotations"] == {"cloud.google.com/neg": '{"exposed_ports": {"8443": {"name": "'
                                                                         + lb["neg_name"] + '"}}}'}
                assert args_of["gcp"](plan, r)["network"]["lb_target_port"] == proxy["tls"]["containerPort"]
            else:
                assert lb["target_port"] == proxy["tls"]["containerPort"]
                assert "annotations" not in proxy
    assert clouds == {"aws", "gcp", "azure"}


def test_kongs_sidecar_leaves_the_load_balancers_tls_alone():
    """With the mesh, Kong's pods get the sidecar (outbound: mesh routing and mTLS to the services), but
    inbound capture stays off, so the load balancer's own TLS on the proxy port reaches Kong untouched
    (Istio: an empty include list captures nothing; exclusions matter only under `*`)."""
    for case, plan, r, rel in releases():
        if rel.name != "kong":
            continue
        values = values_of(case, r, rel)
        if not r.settings.kubernetes.istio:
            assert "sidecar.istio.io/inject" not in values["podLabels"]
            continue
        assert values["podLabels"]["sidecar.istio.io/inject"] == "true"
        annotations = values["podAnnotations"]
        include = annotations["traffic.sidecar.istio.io/includeInboundPorts"]
        exclude = annotations.get("traffic.sidecar.istio.io/excludeInboundPorts", "").split(",")
        captured = include == "*" and str(KONG_PROXY_TLS_PORT) not in exclude or str(KONG_PROXY_TLS_PORT) in include.split(",")
        assert not captured and include == ""


# ------------------------------------------------------------------ names shared with the kubernetes target


def test_names_the_manifests_rely_on_are_the_releases():
    plan = plan_of("reference")
    r = plan.region("us-east-1")
    rels = {x.name: x for x in helm.releases(plan, r)[0]}
    otel = values_of("reference", r, rels["otel-collector"])
    jaeger = values_of("reference", r, rels["jaeger"])
    kong = values_of("reference", r, rels["kong"])
    istiod = values_of("reference", r, rels["istiod"])
    docs = region_docs("reference", r.name)
    env = {e["name"]: e.get("value") for e in
           next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://{otel['fullnameOverride']}.{rels['otel-collector'].namespace}.svc.cluster.local:4317"
    assert otel["config"]["exporters"]["otlp/jaeger"]["endpoint"] == f"{jaeger['fullnameOverride']}.monitoring.svc.cluster.local:4317"
    provider = istiod["meshConfig"]["extensionProviders"][0]["opentelemetry"]
    assert provider["service"] == f"{otel['fullnameOverride']}.monitoring.svc.cluster.local"
    kong_policy = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "kong-proxy")
    assert kong_policy["metadata"]["namespace"] == rels["kong"].namespace
    assert kong_policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == rels["kong"].name
    assert kong_policy["spec"]["ingress"][0]["ports"][0]["port"] == kong["proxy"]["tls"]["containerPort"]
    sidecar = istiod["global"]["proxy"]["resources"]
    assert sidecar == {"requests": {"cpu": f"{SIDECAR_REQUESTS['cpu_m']}m", "memory": f"{SIDECAR_REQUESTS['memory_mi']}Mi"},
                       "limits": {"cpu": f"{SIDECAR_LIMITS['cpu_m']}m", "memory": f"{SIDECAR_LIMITS['memory_mi']}Mi"}}
    pipeline = otel["config"]["service"]["pipelines"]["traces"]
    assert set(pipeline["exporters"]) <= set(otel["config"]["exporters"])
    assert "resource/region" in pipeline["processors"]


def test_observability_follows_the_plan():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            rels = {x.name: x for x in helm.releases(plan, r)[0]}
            mon = r.settings.monitoring
            kps = values_of(case, r, rels["kube-prometheus-stack"])
            spec = kps["prometheus"]["prometheusSpec"]
            assert spec["retention"] == f"{mon.prometheus_retention_days}d"
            # a full volume stops Prometheus and every alert: the size retention is 85 % of each replica's claim
            claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"]
            assert _bytes(spec["retentionSize"]) == _bytes(claim) * 85 // 100, (spec["retentionSize"], claim)
            # the Prometheus CRD's ByteSize pattern (prometheus-operator pkg/apis/monitoring/v1 types.go)
            assert re.fullmatch(r"(^0|([0-9]*[.])?[0-9]+((K|M|G|T|E|P)i?)?B)$", spec["retentionSize"])
            assert spec["externalLabels"]["region"] == r.name
            assert kps["grafana"]["enabled"] == mon.grafana and kps["alertmanager"]["enabled"] == mon.alertmanager
            hosts_job = [j for j in spec["additionalScrapeConfigs"] if j["job_name"] == "self-managed-hosts"]
            targets = sorted(t for j in hosts_job for g in j["static_configs"] for t in g["targets"])
            # every host's node_exporter, the bastion's too (the common role installs it everywhere)
            assert targets == sorted(f"{h.fqdn}:9100" for h in r.hosts)
            # the data-tier exporters Ansible runs, each host labelled with its group (a Redis group is split in two
            # target groups by the role the topology placed each node in)
            jobs = {j["job_name"]: j for j in spec["additionalScrapeConfigs"]}
            for job, groups, port in (("postgres-exporter", ("postgres_primary", "postgres_replicas"), 9187),
                                      ("redis-exporter", ("redis_cluster",), 9121)):
                expected = {g: sorted(f"{h.fqdn}:{port}" for h in r.hosts_in(g)) for g in groups if r.hosts_in(g)}
                got: dict = {}
                for sc in jobs.get(job, {}).get("static_configs", []):
                    got.setdefault(sc["labels"]["group"], []).extend(sc["targets"])
                assert {g: sorted(t) for g, t in got.items()} == expected, (case, r.name, job)
            if "jaeger" in rels:
                jaeger = values_of(case, r, rels["jaeger"])
                backend = jaeger["userconfig"]["extensions"]["jaeger_storage"]["backends"]["primary_store"]
                es = [f"https://{h.fqdn}:9200" for h in r.hosts_in("elasticsearch")]
                if es:  # auth and TLS: test_secrets.py
                    assert backend["elasticsearch"]["server_urls"] == es
                    assert backend["elasticsearch"]["indices"] == {"index_prefix": f"jaeger-{r.name}"}
                    # two replicas rolled one at a time: the chart's default is Recreate (jaeger 4.11.1
                    # templates/jaeger/jaeger-deploy.yaml), which stopped both before starting any
                    assert jaeger["jaeger"]["replicas"] == 2
                    assert jaeger["jaeger"]["strategy"] == {"type": "RollingUpdate",
                                                            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
                else:
                    assert backend == {"memory": {"max_traces": 100000}}
                    assert "strategy" not in jaeger["jaeger"]  # one in-memory store: Recreate, as the chart does
                istiod = values_of(case, r, rels["istiod"]) if "istiod" in rels else None
                if istiod:
                    assert istiod["traceSampling"] == mon.trace_sample_percent


def test_fluent_bit_config_text_reads_back():
    plan = plan_of("reference")
    r = plan.region("eu-west-1")
    rel = next(x for x in helm.releases(plan, r)[0] if x.name == "fluent-bit")
    config = values_of("reference", r, rel)["config"]
    outputs = parse_classic(config["outputs"])
    assert [dict(entries)["Match"] for name, entries in outputs] == ["kube.*", "host.*"]
    for name, entries in outputs:
        e = dict(entries)
        # one Upstream file with every node instead of a single Host (test_secrets.py checks the nodes and TLS)
        assert name == "OUTPUT" and e["Name"] == "es" and "Host" not in e
        assert e["Upstream"] == "/fluent-bit/etc/conf/elasticsearch-upstream.conf"
        assert e["Suppress_Type_Name"] == "On"
    upstream = parse_classic(config["extraFiles"]["elasticsearch-upstream.conf"])
    assert [name for name, _ in upstream] == ["UPSTREAM"] + ["NODE"] * len(r.hosts_in("elasticsearch"))
    assert [dict(e)["Host"] for _, e in upstream[1:]] == [h.fqdn for h in r.hosts_in("elasticsearch")]
    assert all(dict(e)["Port"] == "9200" for _, e in upstream[1:])
    filters = parse_classic(config["filters"])
    # the reference ships Kong's failed requests only: a grep filter first (tests/test_log_volume.py)
    assert [dict(e)["Name"] for _, e in filters] == ["grep", "kubernetes", "record_modifier"]
    records = [v for k, v in filters[2][1] if k == "Record"]
    assert records == [f"region {r.name}", f"cloud {r.cloud}", f"geo {r.geo}"]


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=40), st.text(min_size=0, max_size=40))
def test_fluentbit_values_cannot_escape_their_line(key, value):
    """Any text either is refused or renders as exactly one `Record key value` entry that reads back."""
    try:
        fluentbit(key)
        fluentbit(value)
    except FluentBitValueError:
        return
    if " " in key:  # a key is one word in this format: the renderer's callers pass fixed keys
        return
    text = render_conf("fluent-bit-filters.conf.j2", records=[(key, value)], drops=[])
    sections = parse_classic(text)
    assert [name for name, _ in sections] == ["FILTER", "FILTER"]
    assert sections[1][1] == [("Name", "record_modifier"), ("Match", "*"), ("Record", f"{key} {value}")]
    assert "${" not in text.split("Record ", 1)[1]


@pytest.mark.parametrize("bad", ["a\nb", "x\r", "${HOME}", " lead", "trail ", "", "tab\tinside\n", "\x00", "a\u2028b"])
def test_fluentbit_refuses_breaking_values(bad):
    with pytest.raises(FluentBitValueError):
        fluentbit(bad)


# ------------------------------------------------------------------ files


def test_files_are_banners_plus_dump_yaml_and_deterministic():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            files = helm.emit_region(plan, r)
            assert files == helm.emit_region(plan, r)
            for rel in helm.releases(plan, r)[0]:
                if rel.chart is helm.LOCAL_CHART:
                    continue
                text = files[f"helm/{r.name}/{helm.values_file(rel)}"]
                header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
                assert header.startswith("# Generated by platformc from platform.yaml - do not edit")
                assert text == dump_yaml(rel.values(plan, r), header=header)
            # no value file or helmfile names anything that looks like a document kind validators would take for a
            # manifest; the local charts' templates hold the ESO objects (validated against the CRDs in test_secrets.py)
            for path, text in files.items():
                if "/templates/" in path:
                    continue
                for doc in yaml.safe_load_all(text):
                    assert not ("apiVersion" in doc and "kind" in doc), path


def test_no_secret_values_or_references_leak_into_values():
    for case in CASES:
        for path, text in emitted(case).items():
            assert not SECRET_REF.search(text), path


def test_yamllint_clean(tmp_path):
    yamllint = require_tool("yamllint")
    cfg = tmp_path / "yamllint.yaml"
    cfg.write_text(YAMLLINT_CONFIG)
    for case in CASES:
        for rel, text in emitted(case).items():
            p = tmp_path / case / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
    res = subprocess.run([yamllint, "-s", "-f", "parsable", "-c", str(cfg), str(tmp_path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


def test_docs_list_every_release():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            md = helm.docs_region(plan, r)
            assert md.startswith("## ")
            rels, skipped = helm.releases(plan, r)
            for rel in rels:
                source = f"local `{helm.chart_dir(rel)}`" if rel.chart is helm.LOCAL_CHART else f"{rel.chart.repo}/{rel.chart.chart}"
                assert f"| {rel.name} | `{rel.namespace}` | {source} | {rel.chart.version} |" in md
            assert md.count("Not deployed:") == len(skipped)
    assert kubernetes.NAME == "kubernetes" and helm.NAME == "helm"


def test_spec_and_pinned_istio_agree_or_the_disagreement_is_said():
    plan = plan_of("reference")
    r = plan.regions[0]
    assert r.settings.kubernetes.istio_version == "1.30"  # the pinned charts are 1.30.3: no note
    assert helm.notes(r) == []
    text = (REPO / "tests/cases/two-region/platform.yaml").read_text().replace("  kubernetes:\n    min_nodes: 6", "  kubernetes:\n    istio_version: \"1.29\"\n    version: \"1.31\"\n    min_nodes: 6")
    other = compile_text(text).plan.regions[0]
    (note,) = helm.notes(other)
    assert "1.29" in note and "1.30.3" in note
    assert f"- Note: {note}" in helm.docs_region(plan, other)


def _bytes(quantity: str) -> int:
    """`100Gi` (a Kubernetes quantity) or `85GiB` / `8704MiB` (a Prometheus ByteSize) as bytes."""
    m = re.fullmatch(r"([0-9]+)([KMGT])iB?", quantity)
    assert m, quantity
    return int(m.group(1)) * 1024 ** ("KMGT".index(m.group(2)) + 1)


def test_prometheus_takes_the_retention_size(tmp_path):
    """The real Prometheus (Debian's 2.42, on the loopback) reads retentionSize as the operator passes it,
    --storage.tsdb.retention.size, and reports the limit it holds: 85 % of the claim (a Kubernetes-style `85Gi`,
    say, would be refused at start)."""
    import json
    import socket
    import time
    import urllib.request
    prometheus = require_tool("prometheus")
    plan = plan_of("reference")
    r = plan.region("us-east-1")
    rel = next(x for x in helm.releases(plan, r)[0] if x.name == "kube-prometheus-stack")
    spec = values_of("reference", r, rel)["prometheus"]["prometheusSpec"]
    (tmp_path / "p.yml").write_text("global: {scrape_interval: 15s}\n")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'p.yml'}", f"--storage.tsdb.path={tmp_path / 'd'}",
                             f"--web.listen-address=127.0.0.1:{port}", f"--storage.tsdb.retention.time={spec['retention']}",
                             f"--storage.tsdb.retention.size={spec['retentionSize']}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        info = None
        for _ in range(100):
            assert proc.poll() is None, proc.stderr.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/status/runtimeinfo", timeout=1) as res:
                    info = json.load(res)["data"]
                break
            except OSError:
                time.sleep(0.1)
        assert info, "Prometheus did not answer"
        claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"]
        assert info["storageRetention"] == f"{spec['retention']} or {_bytes(claim) * 85 // 100 // 1024 ** 3}GiB"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_additional_scrape_configs_pass_promtool(tmp_path):
    """promtool judges the scrape jobs given to kube-prometheus-stack. Debian's promtool is built
    without Kubernetes service discovery, so the pod job's `kubernetes_sd_configs` is swapped for a
    static target; its relabelling (regexes, actions, labels) is checked as written."""
    promtool = require_tool("promtool")
    plan = plan_of("reference")
    for r in (plan.region("us-east-1"), plan.region("ap-southeast-2")):
        rel = next(x for x in helm.releases(plan, r)[0] if x.name == "kube-prometheus-stack")
        spec = values_of("reference", r, rel)["prometheus"]["prometheusSpec"]
        jobs = spec["additionalScrapeConfigs"]
        # and a /probe job per DR standby cluster the region runs (compiler/ir/dr_watch.py): us-east-1 runs three
        probes = [f"postgres-standby-{s.of_region}" for s in (r.postgres_ha.standbys if r.postgres_ha else ())]
        assert len(probes) == (3 if r.name == "us-east-1" else 0)
        # the etcd members' metrics listener wherever a Patroni cluster runs (compiler/ir/names.py ETCD_METRICS_PORT)
        etcd = ["etcd"] if r.postgres_ha else []
        assert [j["job_name"] for j in jobs] == ["kubernetes-pods", "otel-collector", "self-managed-hosts",
                                                 "postgres-exporter", "redis-exporter", *etcd, *probes]
        assert jobs[0].pop("kubernetes_sd_configs") == [{"role": "pod"}]
        assert jobs[1].pop("kubernetes_sd_configs") == [{"role": "endpoints", "namespaces": {"names": ["monitoring"]}}]
        for j in jobs[:2]:
            j["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
        cfg = tmp_path / f"{r.name}.yml"
        cfg.write_text(yaml.safe_dump({"global": {"external_labels": spec["externalLabels"]}, "scrape_configs": jobs}))
        res = subprocess.run([promtool, "check", "config", "--syntax-only", str(cfg)], capture_output=True, text=True)
        assert res.returncode == 0, res.stdout + res.stderr


def test_first_apply_diffs_new_releases_without_cluster_validation():
    """`helmfile apply` diffs each new release with `helm template --validate` before installing anything: a release
    whose objects are kinds another release installs (ExternalSecret, ServiceMonitor) failed the first apply with
    "no matches for kind". Every release skips that validation on install (roboll/helmfile#1618)."""
    from compiler.pipeline import compile_file
    from compiler.targets import helm
    from tests.conftest import REPO
    plan = compile_file(str(REPO / "platform.yaml")).plan
    region = plan.region("us-east-1")
    doc = yaml.safe_load(helm.emit_region(plan, region)[f"helm/{region.name}/helmfile.yaml"])
    assert doc["releases"] and all(r["disableValidationOnInstall"] is True for r in doc["releases"])
    kinds = {r["name"] for r in doc["releases"]}
    assert {"platform-secrets", "kube-prometheus-stack"} <= kinds


def test_a_kong_pod_going_away_lets_its_longest_upstream_wait_finish():
    """Scale-in, a config change rolling the pods, a node drained: each removes a Kong pod while it proxies requests
    Kong lets wait up to each service's read_timeout (the kong target's file). Its preStop `kong quit` waits, then
    lets requests finish for --timeout before stopping Kong by force (kong/cmd/quit.lua, 10 s by default), and the
    kubelet kills the pod at terminationGracePeriodSeconds: both must outlast the longest upstream wait, or those
    requests end in 502s."""
    import re
    from compiler.targets import kong
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            rel = next((x for x in helm.releases(plan, r)[0] if x.name == "kong"), None)
            if rel is None:
                continue
            values = values_of(case, r, rel)
            waits = [int(m) for text in kong.emit_region(plan, r).values()
                     for m in re.findall(r"^\s*read_timeout: (\d+)$", text, re.M)]
            assert waits, (case, r.name)
            longest = max(waits) / 1000
            command = values["lifecycle"]["preStop"]["exec"]["command"]
            assert command[:2] == ["kong", "quit"], command
            flags = dict(a.lstrip("-").split("=", 1) for a in command[2:])
            assert int(flags["timeout"]) > longest, (case, r.name, flags)
            assert values["terminationGracePeriodSeconds"] > int(flags.get("wait", 0)) + int(flags["timeout"]), values
