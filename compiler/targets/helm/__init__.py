"""Helm target: per region, the platform charts' values and a helmfile that pins and deploys them.

generated/helm/<region>/helmfile.yaml          repositories, pinned chart versions, release order
generated/helm/<region>/<release>.values.yaml  the values of each release

    helmfile -f generated/helm/<region>/helmfile.yaml apply

generated/helm/<region>/charts/<name>/         local charts holding only External Secrets objects
    (secrets.py): the ClusterSecretStores and every ExternalSecret the releases and the services need
generated/helm/global/charts/kong-home-routing/  Kong's home-region map, one copy for every region (home_routing.py)

Kong runs DB-less: its declarative config is the kong target's generated/kong/<region>/kong.yaml,
which the helmfile hands to the chart as `dblessConfig.config` (helm --set-file); see kong() in
platform.py.
"""

from __future__ import annotations

from typing import Callable

from compiler.records import dataclass
from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.data_access import ca_sources
from compiler.render import banner, dump_yaml
from compiler.targets.helm import observability as obs
from compiler.targets.helm import platform as platform
from compiler.targets.helm import secrets
from compiler.targets.helm.charts import CHARTS, ISTIO_TAG, Chart
from compiler.ir.edge import kong_declarative_file, kong_needs_render, kong_render_command
from compiler.ir.home_routing import GATEWAY_MAP_CHART, gateway_routes_homes
from compiler.ir.identity import AWS_LOAD_BALANCER_CONTROLLER, EXTERNAL_SECRETS
from compiler.ir.names import (EXTERNAL_SECRETS_NAMESPACE, EXTERNAL_SECRETS_SERVICE_ACCOUNT, GATEWAY_NAMESPACE,
                               ISTIO_NAMESPACE, KONG_RELEASE, MONITORING_NAMESPACE, STORAGE_CLASS_CLOUDS,
                               STORAGE_CLASSES_FILE, SYSTEM_NAMESPACE, TARGET_GROUP_BINDING_FILE)
from compiler.render import dump_document, dump_documents

BANNER_SPEC = "platform.yaml"


def mesh_enabled(region: RegionPlan) -> bool:
    return region.settings.kubernetes.istio


def cluster_name(org: str, region: RegionPlan) -> str:
    return region.cluster_name

NAME = "helm"


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    chart: Chart
    values: Callable[[PlatformPlan, RegionPlan], dict]
    purpose: str
    needs: tuple[str, ...] = ()
    set_files: tuple[tuple[str, str], ...] = ()  # (values key, file relative to the helmfile)
    local: tuple[dict, ...] = ()  # a local chart (charts/<name>/) holding these objects; `chart` is then LOCAL_CHART
    shared: str = ""  # a local chart of the global tree (its directory relative to the helmfile), not the region's
    # values known only after `terraform apply`: a second values file, `<name>.apply.values.yaml.gotmpl`, which
    # helmfile renders from the deploy step's environment (requiredEnv), so the main values file stays plain YAML
    after_apply: Callable[[], dict] | None = None


# Local charts: only the External Secrets objects, no templating; the version is this compiler's.
LOCAL_CHART = Chart("local", "", "", "", "1.0.0", "")
PLATFORM_SECRETS = "platform-secrets"
MON = MONITORING_NAMESPACE


def external_secrets_service_account(region: RegionPlan) -> dict:
    """The operator's ServiceAccount, annotated with its cloud identity (compiler/ir/identity.py) when the region
    reads its cloud's secret store (platform.service_account; on Azure the operator reads the annotation the
    workload-identities script adds when it exchanges the token, so no restart is needed)."""
    return platform.service_account(region, EXTERNAL_SECRETS, EXTERNAL_SECRETS_SERVICE_ACCOUNT)


def external_secrets_values(plan: PlatformPlan, region: RegionPlan) -> dict:
    """The operator: CRDs from the chart, two controller replicas with leader election, and the
    ServiceAccount name the ClusterSecretStores (and the cloud identity / Vault role) bind to."""
    return {
        "installCRDs": True,
        "replicaCount": 2,
        "leaderElect": True,
        "serviceAccount": external_secrets_service_account(region),
        "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}},
        "webhook": {"resources": {"requests": {"cpu": "20m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}}},
        "certController": {"resources": {"requests": {"cpu": "20m", "memory": "64Mi"},
                                         "limits": {"cpu": "200m", "memory": "256Mi"}}},
    }


def _no_values(plan: PlatformPlan, region: RegionPlan) -> dict:
    return {}


def secret_releases(plan: PlatformPlan, region: RegionPlan, objects: bool = True) -> tuple[list[Release], list[Release]]:
    """(the operator and the platform-secrets chart, the per-namespace service secrets charts). objects=False: the
    same releases without their charts' objects (`local` empty), for the docs, which list the releases only."""
    op = Release("external-secrets", EXTERNAL_SECRETS_NAMESPACE, CHARTS["external-secrets"], external_secrets_values,
                 "External Secrets Operator: syncs the referenced Secrets from the stores")
    if objects:
        spaces = secrets.by_namespace(region)
        platform_docs = tuple(secrets.stores(plan, region) + spaces.get(MON, []))
    else:
        spaces, platform_docs = secrets.secret_namespaces(region), ()
    first = [op, Release(PLATFORM_SECRETS, MON, LOCAL_CHART, _no_values,
                         "ClusterSecretStores and the monitoring releases' ExternalSecrets",
                         needs=(f"{EXTERNAL_SECRETS_NAMESPACE}/external-secrets",), local=platform_docs)]
    later = [Release(f"secrets-{ns}", ns, LOCAL_CHART, _no_values, f"the ExternalSecrets of namespace {ns}",
                     needs=(f"{MON}/{PLATFORM_SECRETS}",), local=tuple(spaces[ns]))
             for ns in secrets.namespaces_of(spaces)]
    return first, later


def releases(plan: PlatformPlan, region: RegionPlan, objects: bool = True) -> tuple[list[Release], list[str]]:
    """The releases this region runs, in deploy order, and why any platform chart is left out (objects: see
    secret_releases)."""
    mesh = mesh_enabled(region)
    mon = region.settings.monitoring
    out: list[Release] = []
    skipped: list[str] = []
    first, later = secret_releases(plan, region, objects)
    out += first
    after = (f"{MON}/{PLATFORM_SECRETS}",)
    if mesh:
        out += [
            Release("istio-base", ISTIO_NAMESPACE, CHARTS["istio-base"], platform.istio_base, "Istio CRDs and cluster roles"),
            Release("istiod", ISTIO_NAMESPACE, CHARTS["istiod"], platform.istiod, "Istio control plane and sidecar injector",
                    needs=(f"{ISTIO_NAMESPACE}/istio-base",)),
        ]
    else:
        skipped.append("Istio (istio-base, istiod): kubernetes.istio is false; Kong calls the services without a sidecar")
    # Alertmanager's routing is the monitoring target's file, passed whole like Kong's (one source).
    am_file = (("alertmanager.stringConfig", f"../../monitoring/{region.name}/alertmanager/alertmanager.yaml"),) if mon.alertmanager else ()
    out.append(Release("kube-prometheus-stack", MONITORING_NAMESPACE, CHARTS["kube-prometheus-stack"],
                       obs.kube_prometheus_stack, "Prometheus, Alertmanager, Grafana and the monitoring CRDs",
                       needs=after, set_files=am_file))
    kong_needs = (f"{MONITORING_NAMESPACE}/kube-prometheus-stack",) + ((f"{ISTIO_NAMESPACE}/istiod",) if mesh else ())
    if region.cloud == "aws":
        # before Kong: the ALB reaches Kong's pods only through the TargetGroupBinding this controller serves, and its
        # webhook must be up to put the readiness gate on Kong's pods
        out.append(Release(AWS_LOAD_BALANCER_CONTROLLER, SYSTEM_NAMESPACE, CHARTS["aws-load-balancer-controller"],
                           platform.aws_load_balancer_controller,
                           "registers Kong's pods in the ALB target group (TargetGroupBinding only)",
                           after_apply=platform.aws_load_balancer_controller_vpc))
        kong_needs += (f"{SYSTEM_NAMESPACE}/{AWS_LOAD_BALANCER_CONTROLLER}",)
    else:
        skipped.append(f"{AWS_LOAD_BALANCER_CONTROLLER}: the {region.cloud} load balancer reaches Kong without it")
    if gateway_routes_homes(plan):  # the map Kong's routing function requires, mounted from this release's ConfigMap
        from compiler.targets.helm.home_routing import chart_path_from_region
        out.append(Release(GATEWAY_MAP_CHART, GATEWAY_NAMESPACE, LOCAL_CHART, _no_values,
                           "Kong's home-region map (the Lua module its routing function requires), the same in every region",
                           shared=chart_path_from_region()))
        kong_needs += (f"{GATEWAY_NAMESPACE}/{GATEWAY_MAP_CHART}",)
    # Azure: Kong's serving certificate (compiler/ir/edge.py, kong_proxy_tls), which its pods mount: before Kong
    kong_secrets = [x for x in later if x.namespace == GATEWAY_NAMESPACE]
    later = [x for x in later if x.namespace != GATEWAY_NAMESPACE]
    out += kong_secrets
    kong_needs += tuple(f"{x.namespace}/{x.name}" for x in kong_secrets)
    out.append(Release(KONG_RELEASE, GATEWAY_NAMESPACE, CHARTS["kong"], lambda p, r: platform.kong(p, r, mesh),
                       "API gateway, DB-less; the cloud load balancer's HTTPS target", needs=kong_needs,
                       set_files=(("dblessConfig.config", f"../../{kong_declarative_file(region)}"),)))
    if mon.tracing:
        out += [
            Release("jaeger", MONITORING_NAMESPACE, CHARTS["jaeger"], obs.jaeger, "trace storage and UI", needs=after),
            Release("otel-collector", MONITORING_NAMESPACE, CHARTS["opentelemetry-collector"], obs.opentelemetry_collector,
                    "OTLP gateway for the services and the mesh", needs=(f"{MONITORING_NAMESPACE}/jaeger",)),
        ]
    else:
        skipped.append("OpenTelemetry collector and Jaeger: monitoring.tracing is false")
    if region.hosts_in("elasticsearch"):
        out.append(Release("fluent-bit", MONITORING_NAMESPACE, CHARTS["fluent-bit"], obs.fluent_bit,
                           "container logs to Elasticsearch", needs=(f"{MONITORING_NAMESPACE}/kube-prometheus-stack", *after)))
    else:
        skipped.append("Fluent Bit: no self-managed Elasticsearch nodes; the managed endpoint is not in the plan")
    if platform.needs_device_plugin(region):
        out.append(Release("nvidia-device-plugin", SYSTEM_NAMESPACE, CHARTS["nvidia-device-plugin"],
                           platform.nvidia_device_plugin, "advertises the GPU nodes' nvidia.com/gpu to the scheduler"))
    elif platform.gpu_pools(region):
        skipped.append("nvidia-device-plugin: GKE installs the NVIDIA device plugin on GPU nodes itself")
    else:
        skipped.append("nvidia-device-plugin: no GPU node pool")
    if region.cloud == "aws":
        out.append(Release("cluster-autoscaler", SYSTEM_NAMESPACE, CHARTS["cluster-autoscaler"], platform.cluster_autoscaler,
                           "node autoscaling for the EKS node groups"))
    else:
        service = {"gcp": "GKE", "azure": "AKS"}.get(region.cloud, region.cloud)
        skipped.append(f"cluster-autoscaler: {service} node pools use the built-in autoscaler with the spec's bounds (Terraform)")
    out += later
    return out, skipped


def notes(region: RegionPlan) -> list[str]:
    """Where the spec and the pinned charts disagree (shown in the helmfile and the docs)."""
    k8s = region.settings.kubernetes
    out = []
    if k8s.istio and not ISTIO_TAG.startswith(k8s.istio_version + "."):
        out.append(f"kubernetes.istio_version is {k8s.istio_version} but the Istio charts are pinned to {ISTIO_TAG} "
                   "(the reviewed chart defaults); align the spec with the pin")
    return out


def values_file(release: Release) -> str:
    return f"{release.name}.values.yaml"


def after_apply_file(release: Release) -> str:
    return f"{release.name}.apply.values.yaml.gotmpl"


def chart_dir(release: Release) -> str:
    """A local chart's directory, relative to the helmfile."""
    return release.shared or f"charts/{release.name}"


def chart_ref(release: Release) -> str:
    """How the helmfile names a local chart: a path (./ for the region's own)."""
    return release.shared or f"./{chart_dir(release)}"


def helmfile(plan: PlatformPlan, region: RegionPlan, rels: list[Release]) -> dict:
    used = sorted({r.chart.repo for r in rels if r.chart.repo})
    entries = []
    for r in rels:
        if r.chart is LOCAL_CHART:
            e = {"name": r.name, "namespace": r.namespace, "createNamespace": True, "chart": chart_ref(r),
                 "labels": {"purpose": "kong" if r.shared else "secrets"}}
        else:
            e = {"name": r.name, "namespace": r.namespace, "createNamespace": True,
                 "chart": f"{r.chart.repo}/{r.chart.chart}", "version": r.chart.version,
                 "labels": {"purpose": r.chart.key},
                 "values": [values_file(r)] + ([after_apply_file(r)] if r.after_apply else [])}
        if r.needs:
            e["needs"] = list(r.needs)
        # `helmfile apply` diffs a new release with `helm template --validate` against the cluster before installing
        # anything: a release whose objects are kinds another release installs (ExternalSecrets, ServiceMonitors,
        # the operator's own Prometheus) failed the first apply with "no matches for kind". helmfile's documented
        # answer (roboll/helmfile#1618): no validation in the diff of a release being installed; the install itself
        # is validated by the API server, after the releases it needs
        e["disableValidationOnInstall"] = True
        if r.set_files:
            e["set"] = [{"name": key, "file": path} for key, path in r.set_files]
        entries.append(e)
    return {
        "repositories": [{"name": repo, "url": next(r.chart.url for r in rels if r.chart.repo == repo)} for repo in used],
        # kubeContext: a region's values can only ever be applied to that region's cluster
        "helmDefaults": {"kubeContext": cluster_name(plan.spec.organization.name, region),
                         "wait": True, "timeout": 900, "historyMax": 10},
        "releases": entries,
    }


def _helmfile_header(region: RegionPlan, rels: list[Release], skipped: list[str]) -> str:
    lines = [f"Region {region.name} ({region.cloud} {region.cloud_region}): platform charts, pinned.",
             f"Deploy: helmfile -f generated/helm/{region.name}/helmfile.yaml apply",
             f"then:   kubectl apply -f generated/kubernetes/{region.name}/",
             *([f"AWS, in this order (Kong's pods get their readiness gate only if created after the binding):",
                f"  1. {platform.VPC_ID_VARIABLE}=$(terraform -chdir=generated/terraform/regions/{region.name} output -raw "
                f"{platform.VPC_ID_OUTPUT}) \\",
                f"       helmfile -f generated/helm/{region.name}/helmfile.yaml -l name={AWS_LOAD_BALANCER_CONTROLLER} apply",
                f"  2. generated/kubernetes/{region.name}/{TARGET_GROUP_BINDING_FILE}, filled in and applied as its "
                "header says (the labelled kong namespace and the binding)",
                f"  3. the command above (Deploy), with {platform.VPC_ID_VARIABLE} still set, then the kubectl step"]
               if region.cloud == "aws" else []),
             f"Kong (DB-less) loads generated/{kong_declarative_file(region)} through `set: dblessConfig.config` (--set-file);",
             "the chart turns it into a ConfigMap and rolls Kong when it changes.",
             *([f"First render the secret inputs of the Kong file (DECK_* exported from their references, see its header):",
                f"        {kong_render_command(region)}",
                "  (DB-less Kong cannot expand decK's templates; the rendered copy is git-ignored, never commit it)"]
               if kong_needs_render(region) else []),
             "Releases:"]
    lines += [f"  {r.name}: " + (f"local chart {chart_dir(r)}" if r.chart is LOCAL_CHART else
                                 f"{r.chart.chart} {r.chart.version} (app {r.chart.app_version})") + f" - {r.purpose}"
              for r in rels]
    lines += [f"Secret not delivered (no store reads it; the deploy job must create it): {w.namespace}/{w.name} "
              f"<- {secrets.describe(ref)}" for w, ref in secrets.unsupported(region)]
    lines += [f"Not deployed: {s}" for s in skipped]
    lines += [f"Note: {n}" for n in notes(region)]
    return banner("#", BANNER_SPEC) + "".join(f"# {line}\n" for line in lines)


def emit_region(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    base = f"helm/{region.name}"
    rels, skipped = releases(plan, region)
    out = {f"{base}/helmfile.yaml": dump_yaml(helmfile(plan, region, rels), header=_helmfile_header(region, rels, skipped))}
    for r in rels:
        if r.chart is LOCAL_CHART:
            if not r.shared:  # a shared chart is emit_global's
                out.update(_local_chart(base, r))
            continue
        header = (banner("#", BANNER_SPEC)
                  + f"# Values for release {r.name}: chart {r.chart.repo}/{r.chart.chart} {r.chart.version} "
                    f"in namespace {r.namespace} ({r.purpose}).\n")
        out[f"{base}/{values_file(r)}"] = dump_document(r.values(plan, region), header)
        if r.after_apply:
            out[f"{base}/{after_apply_file(r)}"] = dump_document(
                r.after_apply(), header + "# Known after `terraform apply`: helmfile renders this file (Go template) "
                "from the environment, see the helmfile's header.\n")
    return out


def _local_chart(base: str, r: Release) -> dict[str, str]:
    """Chart.yaml and one template holding the objects (plain YAML: nothing in them is a Go template,
    the references' character set has no braces)."""
    d = f"{base}/{chart_dir(r)}"
    meta = {"apiVersion": "v2", "name": r.name, "description": r.purpose, "type": "application",
            "version": LOCAL_CHART.version}
    header = banner("#", BANNER_SPEC) + f"# Release {r.name} in namespace {r.namespace}: {r.purpose}.\n"
    return {f"{d}/Chart.yaml": dump_document(meta, header),
            f"{d}/templates/external-secrets.yaml": dump_documents(list(r.local), header)}


def emit_global(plan: PlatformPlan) -> dict[str, str]:
    if not gateway_routes_homes(plan):
        return {}
    from compiler.targets.helm.home_routing import emit
    return emit(plan)


def secret_uses(plan: PlatformPlan, region: RegionPlan) -> list:
    """The references the region's ExternalSecrets read (the region page's Secret references)."""
    return secrets.secret_uses(region)


def docs_region(plan: PlatformPlan, region: RegionPlan) -> str:
    rels, skipped = releases(plan, region, objects=False)  # the names and charts; not the ExternalSecrets themselves
    context = cluster_name(plan.spec.organization.name, region)
    kubectl = f"kubectl --context {context} apply -f"
    steps = []
    if region.hosts:
        steps.append(f"`ansible-playbook -i inventories/{region.name} site.yml` in `generated/ansible/` (the "
                     "Ansible section" + ("; on a first run, after the DR-linked regions' `pgbouncer.yml` it names"
                                          if ca_sources(plan, region) else "") + "): it "
                     "publishes the region's internal CA to the secret store"
                     + (" and issues Kong's serving certificate from it there" if secrets.kong_proxy_tls_refs(region)
                        else "") + ", which the releases' ExternalSecrets read (their wait would time the helmfile out)")
    if region.cloud in STORAGE_CLASS_CLOUDS:
        steps.append(f"`{kubectl} generated/kubernetes/{region.name}/{STORAGE_CLASSES_FILE}`: the releases' volume "
                     "claims name these classes")
    if region.cloud == "aws":
        steps.append(f"`export {platform.VPC_ID_VARIABLE}=$(terraform -chdir=generated/terraform/regions/{region.name} "
                     f"output -raw {platform.VPC_ID_OUTPUT})` (the controller's values read it), then "
                     f"`helmfile -f generated/helm/{region.name}/helmfile.yaml -l name={AWS_LOAD_BALANCER_CONTROLLER} "
                     f"apply`, then `generated/kubernetes/{region.name}/{TARGET_GROUP_BINDING_FILE}` filled in and "
                     "applied as its header says (Kong's pods get their readiness gate only if created after it)")
    steps.append(f"`helmfile -f generated/helm/{region.name}/helmfile.yaml apply` (kube context `{context}`)")
    steps.append(f"`{kubectl} generated/kubernetes/{region.name}/` and `{kubectl} "
                 f"generated/monitoring/{region.name}/kubernetes/` (the alert rules and log retention, below), which "
                 "need the CRDs this helmfile installs")
    lines = ["## Helm releases", "", "Deploy, in this order:", "",
             *(f"{i}. {step}" for i, step in enumerate(steps, 1)), "",
             "| release | namespace | chart | version | purpose |", "|---|---|---|---|---|"]
    lines += [f"| {r.name} | `{r.namespace}` | {r.chart.repo}/{r.chart.chart} | {r.chart.version} | {r.purpose} |"
              if r.chart is not LOCAL_CHART else
              f"| {r.name} | `{r.namespace}` | local `{chart_dir(r)}` | {r.chart.version} | {r.purpose} |" for r in rels]
    stores = secrets.stores(plan, region)
    lines += ["", f"Secrets: {secrets.external_secret_count(region)} ExternalSecrets through "
              f"{len(stores)} ClusterSecretStore(s) "
              f"({', '.join(s['metadata']['name'] for s in stores) or 'none'})."]
    lines += [f"- Not delivered: `{w.namespace}/{w.name}` from {secrets.describe(ref)} (no store reads it; "
              "the deploy job must create it)" for w, ref in secrets.unsupported(region)]
    if secrets.entries_to_create(region):
        lines += ["", "The store entries they read are in the Secret references section, with the earlier steps "
                  "that read some of them: an entry missing fails its ExternalSecret, and the releases that need "
                  "the Secret time out."]
    if skipped or notes(region):
        lines.append("")
        lines += [f"- Not deployed: {s}" for s in skipped]
        lines += [f"- Note: {n}" for n in notes(region)]
    return "\n".join(lines) + "\n"
