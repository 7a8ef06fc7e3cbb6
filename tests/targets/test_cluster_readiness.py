"""Issue 13: the cluster layer is ready for production. One test per defect the review found, each on the
generated output: GPU scheduling (device plugin, GPU pool at the peak), the gateway's capacity, canaries that
survive a drain and trust no client header, requests on every platform pod, zone spread the autoscaler can
honour, log and trace retention in Elasticsearch, and the frontend's cache on a read-only root."""

from __future__ import annotations

import json
import math
import subprocess

import yaml

from compiler.ir.gateway import gateway_capacity
from compiler.ir.rollout import canary_replicas
from compiler.model.base import cpu_millicores
from compiler.targets import helm, kong, kubernetes
from compiler.targets.helm import observability as obs
from tests.conftest import require_tool
from tests.targets.test_helm import emitted as helm_emitted
from tests.targets.test_kubernetes import CASES, find, plan_of, region_docs


def _values(case, region, name):
    rel = next(r for r in helm.releases(plan_of(case), region)[0] if r.name == name)
    return yaml.safe_load(helm_emitted(case)[f"helm/{region.name}/{helm.values_file(rel)}"]), rel


def _release_names(case, region):
    return {r.name for r in helm.releases(plan_of(case), region)[0]}


# ------------------------------------------------------------------ GPU scheduling


def test_the_device_plugin_runs_on_the_gpu_pools_of_clouds_that_need_it():
    """EKS (AL2023 NVIDIA AMIs) and AKS GPU pools need the NVIDIA device plugin, GKE installs its own; it must
    land on the GPU pools, which carry no node-feature-discovery labels, so the chart's default affinity is
    replaced by the platform's node-pool label and the pools' taints are tolerated."""
    seen = set()
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            gpu = sorted(n for n, p in r.settings.kubernetes.node_pools.items() if p.gpus)
            present = "nvidia-device-plugin" in _release_names(case, r)
            assert present == (bool(gpu) and r.cloud in ("aws", "azure")), (case, r.name)
            if not present:
                continue
            seen.add(r.cloud)
            v, rel = _values(case, r, "nvidia-device-plugin")
            assert (rel.chart.version, rel.namespace) == ("0.20.0", "kube-system")
            terms = v["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            assert terms == [{"matchExpressions": [{"key": "platformc.io/node-pool", "operator": "In", "values": gpu}]}]
            for name in gpu:  # every taint of the pool is tolerated
                for taint in r.settings.kubernetes.node_pools[name].taints:
                    key = taint.split("=")[0].split(":")[0]
                    assert any(t["key"] == key for t in v["tolerations"]), taint
            assert v["resources"]["requests"]
    assert seen == {"aws"} or seen == {"aws", "azure"}
    ref = plan_of("reference")
    assert "nvidia-device-plugin" in _release_names("reference", ref.region("eu-west-2"))  # Azure
    assert "nvidia-device-plugin" not in _release_names("reference", ref.region("ap-south-1"))  # GKE


def test_the_gpu_pools_hold_every_gpu_pod_at_its_peak():
    """Max replicas of the stable track, the canary's max and a rollout's surge all need a GPU each."""
    plan = plan_of("reference")
    margins = {}
    for r in plan.regions:
        docs = region_docs("reference", r.name)
        need = 0
        for svc in r.services:
            if not svc.limits.gpu:
                continue
            for t in kubernetes.common.tracks(svc):
                hpa = find(docs, "HorizontalPodAutoscaler", t.deployment, svc.namespace)
                need += hpa["spec"]["maxReplicas"] * svc.limits.gpu
            need += math.ceil(svc.replicas_max * 25 / 100) * svc.limits.gpu  # one rollout's surge
        pool = r.settings.kubernetes.node_pools["gpu"]
        margins[r.name] = pool.max_nodes * pool.gpus - need
    assert min(margins.values()) >= 0, margins
    assert margins["us-east-1"] == 0 and margins["ap-southeast-2"] == 0  # 27 of 27, 15 of 15


# ------------------------------------------------------------------ the gateway's capacity


def test_the_gateway_scales_from_the_regions_share_of_the_seeds_peak():
    plan = plan_of("reference")
    cap = plan.spec.capacity
    assert (cap.requests_per_second, cap.peak_multiplier) == (100_000, 5)  # the seed's figures
    ranges = {}
    for r in plan.regions:
        v, _ = _values("reference", r, "kong")
        g = r.settings.gateway
        a = v["autoscaling"]
        normal = cap.requests_per_second * r.traffic_share / 100
        assert a["enabled"] is True
        assert a["minReplicas"] == max(g.replicas, math.ceil(normal / g.rps_per_pod)) == v["replicaCount"]
        assert a["maxReplicas"] == max(a["minReplicas"], math.ceil(normal * cap.peak_multiplier / g.rps_per_pod))
        assert a["maxReplicas"] * g.rps_per_pod >= normal * cap.peak_multiplier  # the peak fits at the CPU target
        metric = a["metrics"][0]
        assert metric["type"] == "ContainerResource" and metric["containerResource"]["container"] == "proxy"
        ranges[r.name] = (a["minReplicas"], a["maxReplicas"])
        # one Nginx worker per CPU of the limit, not per CPU of the node
        assert v["env"]["nginx_worker_processes"] == str(cpu_millicores(v["resources"]["limits"]["cpu"]) // 1000)
        assert v["nodeSelector"] == {"platformc.io/node-pool": gateway_capacity(r, 1, 1).node_pool}
    assert ranges["us-east-1"] == (5, 22)  # 22 k rps normal, 110 k at the peak, 5 k a pod
    assert ranges["ap-southeast-2"] == (3, 3)


# ------------------------------------------------------------------ canaries


def test_a_canary_keeps_a_pod_through_a_drain_and_runs_its_own_version():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            docs = region_docs(case, r.name)
            for svc in r.services:
                if svc.rollout.type != "canary":
                    continue
                v1 = find(docs, "Deployment", f"{svc.name}-v1", svc.namespace)
                v2 = find(docs, "Deployment", f"{svc.name}-v2", svc.namespace)
                pdb = find(docs, "PodDisruptionBudget", f"{svc.name}-v2", svc.namespace)
                hpa = find(docs, "HorizontalPodAutoscaler", f"{svc.name}-v2", svc.namespace)
                lo = hpa["spec"]["minReplicas"]
                # maxUnavailable rounds up: at the floor a drain may take that many pods; one must stay
                unavailable = math.ceil(lo * int(pdb["spec"]["maxUnavailable"].rstrip("%")) / 100)
                assert lo - unavailable >= 1, (case, r.name, svc.name)
                assert (lo, hpa["spec"]["maxReplicas"]) == canary_replicas(svc)
                image_v1 = v1["spec"]["template"]["spec"]["containers"][0]["image"]
                image_v2 = v2["spec"]["template"]["spec"]["containers"][0]["image"]
                assert image_v1 != image_v2 and image_v2.endswith(":" + svc.rollout.canary_image_tag)


def test_the_beta_tester_header_comes_from_the_token_never_from_the_client():
    plan = plan_of("reference")
    for r in plan.regions:
        doc = yaml.safe_load(kong.emit_region(plan, r)[f"kong/{r.name}/kong.yaml"])
        post = [p for p in doc["plugins"] if p["name"] == "post-function"]
        assert len(post) == 1  # global: every route, authenticated or not
        (lua,) = post[0]["config"]["access"]
        assert 'kong.service.request.clear_header(h)' in lua and '{"end-user"}' in lua
        assert lua.index("clear_header") < lua.index("authenticated_jwt_token") < lua.index("set_header")
        assert 'jwt.claims["beta_tester"]' in lua and 'set_header("end-user", "beta-tester")' in lua
        v, _ = _values("reference", r, "kong")
        # the JWT parser for this function; the home-region map for the routing function (test_home_routing.py)
        assert v["env"]["untrusted_lua_sandbox_requires"].split(",") == ["kong.plugins.jwt.jwt_parser", "platformc.home_routing"]
        cors = next(p for p in doc["plugins"] if p["name"] == "cors")
        assert "end-user" not in cors["config"]["headers"]


def test_the_header_function_is_valid_lua(tmp_path):
    luajit = require_tool("luajit")  # OpenResty's LuaJIT runs Kong's serverless functions
    plan = plan_of("reference")
    lua = kong.plugins.canary_header_function(plan.region("us-east-1"))
    path = tmp_path / "canary.lua"
    path.write_text(lua)
    res = subprocess.run([luajit, "-bl", str(path), str(tmp_path / "out")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


# ------------------------------------------------------------------ requests for every platform pod


def _containers_resources(chart_key: str, v: dict) -> dict[str, dict]:
    """The resources block of every pod the release runs, by component."""
    if chart_key == "kube-prometheus-stack":
        op = v.get("prometheusOperator", {})
        out = {"prometheus": v["prometheus"]["prometheusSpec"].get("resources"),
               "prometheus-operator": op.get("resources"),
               "config-reloader": op.get("prometheusConfigReloader", {}).get("resources"),
               "admission-webhook-patch": op.get("admissionWebhooks", {}).get("patch", {}).get("resources"),
               "kube-state-metrics": v.get("kube-state-metrics", {}).get("resources"),
               "node-exporter": v.get("prometheus-node-exporter", {}).get("resources")}
        if v["alertmanager"]["enabled"]:
            out["alertmanager"] = v["alertmanager"].get("alertmanagerSpec", {}).get("resources")
        if v["grafana"]["enabled"]:
            out["grafana"] = v["grafana"].get("resources")
            out["grafana-sidecar"] = v["grafana"].get("sidecar", {}).get("resources")
        return out
    if chart_key == "external-secrets":
        return {"controller": v.get("resources"), "webhook": v.get("webhook", {}).get("resources"),
                "cert-controller": v.get("certController", {}).get("resources")}
    if chart_key == "jaeger":
        out = {"jaeger": v["jaeger"].get("resources")}
        if v.get("esIndexCleaner", {}).get("enabled"):
            out["es-index-cleaner"] = v["esIndexCleaner"].get("resources")
        return out
    if chart_key in ("istio-base",):
        return {}
    if chart_key == "istiod":
        return {"istiod": v.get("resources") or {"requests": "chart default: 500m / 2Gi"}}
    return {chart_key: v.get("resources")}


def test_every_platform_pod_has_requests_from_the_spec():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            for rel in helm.releases(plan, r)[0]:
                if rel.chart is helm.LOCAL_CHART:  # ExternalSecrets only, no pods
                    assert {d["kind"] for d in rel.local} <= {"ExternalSecret", "ClusterSecretStore"}
                    continue
                v, _ = _values(case, r, rel.name)
                for component, res in _containers_resources(rel.chart.key, v).items():
                    assert res and res.get("requests"), (case, r.name, rel.name, component)
            sizes = r.settings.monitoring.resources
            kps, _ = _values(case, r, "kube-prometheus-stack")
            assert kps["prometheus"]["prometheusSpec"]["resources"]["requests"] == {
                "cpu": sizes["prometheus"].requests.cpu, "memory": sizes["prometheus"].requests.memory}
            kong_v, _ = _values(case, r, "kong")
            g = r.settings.gateway.resources
            assert kong_v["resources"]["limits"] == {"cpu": g.limits.cpu, "memory": g.limits.memory}


# ------------------------------------------------------------------ alerts that cannot fire forever by construction


def test_kube_proxy_is_scraped_only_where_the_cluster_runs_it():
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            v, _ = _values(case, r, "kube-prometheus-stack")
            assert v["kubeProxy"]["enabled"] is (r.cloud == "aws"), (case, r.name)  # GKE DPv2, AKS Cilium: none
            assert v["defaultRules"]["disabled"]["KubeHpaMaxedOut"] is True  # fires forever where min = max


def test_the_database_latency_sli_has_a_source_prometheus_scrapes():
    """The services' OTel SDKs send db.client.operation.duration over OTLP; the collector's metrics pipeline
    exports it for Prometheus, whose scrape job reads the exporter's port; the alert reads that series."""
    from compiler.targets import monitoring
    plan = plan_of("reference")
    r = plan.region("us-east-1")
    otel, _ = _values("reference", r, "otel-collector")
    pipe = otel["config"]["service"]["pipelines"]["metrics"]
    assert pipe["receivers"] == ["otlp"] and pipe["exporters"] == ["prometheus"]
    port = int(otel["config"]["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1])
    assert otel["ports"]["prom-metrics"]["containerPort"] == port
    assert "contrib" in otel["image"]["repository"]  # the k8s distribution has no prometheus exporter
    kps, _ = _values("reference", r, "kube-prometheus-stack")
    job = next(j for j in kps["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"] if j["job_name"] == "otel-collector")
    assert job["honor_labels"] is True and job["relabel_configs"][0]["regex"] == "otel-collector;prom-metrics"
    assert any(c.dest.name == "otel-collector" and c.dest_port == port for c in r.connections_from("prometheus"))
    rule = next(x for g in monitoring.rule_groups(plan, r) for x in g["rules"] if x.get("alert") == "DatabaseQueryLatencyHigh")
    assert "db_client_operation_duration_seconds_bucket" in rule["expr"]
    dep = find(region_docs("reference", "us-east-1"), "Deployment", "booking-v1", "booking")
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["OTEL_METRICS_EXPORTER"] == "otlp" and env["OTEL_EXPORTER_OTLP_ENDPOINT"].endswith(":4317")


# ------------------------------------------------------------------ zone spread


def test_zone_spread_never_blocks_scheduling():
    """A hard zone constraint fails when capacity matters most: in a zone outage the dead zone still counts as a
    domain while its terminating pods count as none, so with maxSkew 1 no replacement may go to the healthy zones
    (kubernetes#116978), on GKE too; and EKS/AKS groups span every zone, which the autoscaler cannot aim at one."""
    for case in CASES:
        plan = plan_of(case)
        for r in plan.regions:
            docs = region_docs(case, r.name)
            want = "ScheduleAnyway"
            for d in docs:
                if d["kind"] != "Deployment":
                    continue
                zone = [c for c in d["spec"]["template"]["spec"]["topologySpreadConstraints"]
                        if c["topologyKey"] == "topology.kubernetes.io/zone"]
                assert [c["whenUnsatisfiable"] for c in zone] == [want], (case, r.name, d["metadata"]["name"])


# ------------------------------------------------------------------ retention in Elasticsearch


def test_log_indices_get_an_ilm_policy_from_the_geos_retention():
    from compiler.targets import monitoring
    plan = plan_of("reference")
    days = {}
    for r in plan.regions:
        files = monitoring.emit_region(plan, r)
        path = f"monitoring/{r.name}/kubernetes/elasticsearch-retention.yaml"
        if not r.hosts_in("elasticsearch"):
            assert path not in files
            continue
        docs = [d for d in yaml.safe_load_all(files[path]) if d]
        cm = next(d for d in docs if d["kind"] == "ConfigMap")
        cron = next(d for d in docs if d["kind"] == "CronJob")
        policy = json.loads(cm["data"]["policy.json"])
        template = json.loads(cm["data"]["index-template.json"])
        days[r.name] = policy["policy"]["phases"]["delete"]["min_age"]
        assert "delete" in policy["policy"]["phases"]["delete"]["actions"]
        # the template covers exactly the indices Fluent Bit writes (its outputs' Logstash_Prefix)
        fb, _ = _values("reference", r, "fluent-bit")
        prefixes = [line.split()[-1] for line in fb["config"]["outputs"].splitlines() if "Logstash_Prefix" in line]
        assert template["index_patterns"] == [f"{p}-*" for p in prefixes]
        assert template["template"]["settings"]["index.lifecycle.name"] == f"logs-{r.name}-retention"
        pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        script = pod["containers"][0]["command"][-1]
        assert f"_ilm/policy/logs-{r.name}-retention" in script and f"_index_template/logs-{r.name}" in script
        assert all(h.fqdn in script for h in r.hosts_in("elasticsearch"))
        assert pod["containers"][0]["resources"]["requests"]
        assert any(c.dest.name == "elasticsearch" for c in r.connections_from("elasticsearch-retention"))
    assert days["eu-west-1"] == days["eu-west-2"] == "14d"  # EMEA: GDPR minimisation
    # the spec's layered retention (us-east-1 keeps what fits its disks, R073), not the default
    assert days["us-east-1"] == f"{plan.region('us-east-1').settings.monitoring.log_retention_days}d" != "14d"


def test_the_retention_script_is_valid_shell(tmp_path):
    from compiler.targets import monitoring
    plan = plan_of("reference")
    r = plan.region("eu-west-1")
    docs = [d for d in yaml.safe_load_all(monitoring.emit_region(plan, r)[
        "monitoring/eu-west-1/kubernetes/elasticsearch-retention.yaml"]) if d]
    cron = next(d for d in docs if d["kind"] == "CronJob")
    script = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"][-1]
    res = subprocess.run(["sh", "-n", "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_the_jaeger_index_cleaner_uses_the_storage_prefix():
    """Jaeger's indices are <prefix>-jaeger-span-<date>; the cleaner without the prefix deletes nothing."""
    plan = plan_of("reference")
    for r in plan.regions:
        if not r.hosts_in("elasticsearch"):
            continue
        v, _ = _values("reference", r, "jaeger")
        prefix = v["userconfig"]["extensions"]["jaeger_storage"]["backends"]["primary_store"]["elasticsearch"]["indices"]["index_prefix"]
        env = {e["name"]: e.get("value") for e in v["esIndexCleaner"]["extraEnv"]}
        assert env["INDEX_PREFIX"] == prefix == obs.jaeger_index_prefix(r)
        assert v["esIndexCleaner"]["numberOfDays"] == r.settings.monitoring.log_retention_days


# ------------------------------------------------------------------ the frontend on a read-only root


def test_the_frontends_next_cache_is_writable_on_a_read_only_root():
    plan = plan_of("reference")
    r = plan.region("us-east-1")
    dep = find(region_docs("reference", "us-east-1"), "Deployment", "frontend", "frontend")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert set(mounts) == {"/tmp", "/app/.next/cache"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/app/.next/cache"]]
    assert r.service("frontend").writable_paths == ("/app/.next/cache",)
