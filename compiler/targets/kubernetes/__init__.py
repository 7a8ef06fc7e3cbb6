"""Kubernetes target: per region, one manifest file per service plus Kong's side of the public entry.

generated/kubernetes/<region>/<service>.yaml   Namespace, ServiceAccount + RBAC, ResourceQuota,
    LimitRange, NetworkPolicies, PeerAuthentication, Deployment(s), HPA(s), PDB(s), Service(s) and,
    for canaries, the Istio DestinationRule + VirtualService. Namespace first, so the file applies
    on its own.
generated/kubernetes/<region>/kong-gateway.yaml   Kong's NetworkPolicies (the cloud load balancer in,
    Prometheus in) and, on Azure, the Ingress the Application Gateway ingress controller programs.
generated/kubernetes/<region>/mesh-telemetry.yaml   With the mesh: the mesh-wide Telemetry that has the sidecars
    log only 5xx and slow requests (compiler/ir/log_volume.py).
generated/kubernetes/<region>/storage-classes.yaml   AWS only: the default StorageClass (EBS CSI, encrypted
    with the region's key) that kube-prometheus-stack's claims name.
generated/kubernetes/<region>/kong-target-group-binding.yaml.tmpl   AWS only: the TargetGroupBinding
    of Kong's pods, a template until Terraform's target group ARN is filled in (see its header).

The region's only public entry is its cloud load balancer (Terraform), which reaches Kong's pods
directly: there is no Istio ingress gateway and no LoadBalancer Service (compiler/ir/edge.py).

Apply after the region's Helm releases (they install the Istio CRDs and the kong and monitoring
namespaces): `kubectl apply -f generated/kubernetes/<region>/`.
"""

from __future__ import annotations

from compiler.errors import PlatformcError
from compiler.ir import PlatformPlan, RegionPlan, ServicePlan
from compiler.ir.identity import AZURE_CLIENT_IDS_OUTPUT, SA_ANNOTATION
from compiler.render import banner
from compiler.ir.edge import (KONG_PROXY_TLS_PORT, health_check_path, kong_proxy_tls,
                                         lb_target_name)
from compiler.targets.kubernetes.common import BANNER_SPEC, dump_document, dump_documents, mesh_enabled, tracks
from compiler.targets.kubernetes.gateway import (gateway_namespace, gateway_objects, target_group_binding,
                                                  target_group_binding_header)
from compiler.targets.kubernetes.mesh import (access_log_telemetry, canary_routing, destination_rule, service_entries,
                                              strict_mtls)
from compiler.targets.kubernetes.policy import identity, namespace, network_policies, quotas
from compiler.targets.kubernetes.datastores import config_map
from compiler.targets.kubernetes.storage import storage_classes
from compiler.ir.names import STORAGE_CLASSES_FILE, TARGET_GROUP_BINDING_FILE, ZONE_BLIND_AUTOSCALER_CLOUDS
from compiler.targets.kubernetes.workloads import (CONFIG_CHECKSUM, deployment, env_secrets, hpa, pdb,
                                                   secret_inputs, services, zone_spread_policy)
from compiler.ir.rollout import CANARY_MIN_PODS

NAME = "kubernetes"


def _header(region: RegionPlan, what: str, before_helmfile: bool = False) -> str:
    when = ("before `helmfile -f generated/helm/{r}/helmfile.yaml apply` (its releases' volume claims name these)"
            if before_helmfile else "after `helmfile -f generated/helm/{r}/helmfile.yaml apply`").format(r=region.name)
    return (banner("#", BANNER_SPEC)
            + f"# {what} in region {region.name} ({region.cloud} {region.cloud_region}).\n"
            + f"# Apply {when}.\n")


def service_objects(svc: ServicePlan, region: RegionPlan) -> list[dict]:
    """Every object of one service, in apply order."""
    ts = tracks(svc)
    mesh = mesh_enabled(region)
    docs = [namespace(svc, region), *identity(svc, region), *quotas(svc, region, ts),
            *network_policies(svc, region)]
    if mesh:
        docs.append(strict_mtls(svc, region))
    docs += config_map(svc, region)  # the data tier's connection settings (envFrom), before the pods that read it
    docs += [deployment(svc, region, t) for t in ts]
    docs += [hpa(svc, region, t) for t in ts]
    docs += [pdb(svc, region, t) for t in ts]
    docs += services(svc, region, ts)
    if mesh:
        rule = destination_rule(svc, region, ts)
        docs += [rule] if rule else []
        if svc.rollout.type == "canary":
            docs += canary_routing(svc, region, ts)
        docs += service_entries(svc, region)
    return docs


def _recurs(doc: dict) -> bool:
    """Whether a service's document may come again, in another region or for another service (dump_documents keeps
    only those texts): its ConfigMap names the region's data-tier hosts, and its NetworkPolicy with an ipBlock peer
    the region's CIDRs, so each is met once. At 120 regions they were 2,280 of the 2,711 documents dumped, ~5 MiB of
    texts kept to no use. A wrong answer costs time or memory, never bytes."""
    kind = doc.get("kind")
    if kind == "ConfigMap":
        return False
    if kind == "Deployment":  # its checksum of the ConfigMap (workloads.input_checksums) is the region's
        annotations = doc["spec"]["template"]["metadata"].get("annotations") or {}
        return CONFIG_CHECKSUM not in annotations
    if kind == "NetworkPolicy":
        spec = doc.get("spec") or {}
        return not any("ipBlock" in peer for direction, side in (("ingress", "from"), ("egress", "to"))
                       for rule in spec.get(direction, ()) for peer in rule.get(side, ()))
    return True


GATEWAY_FILE = "kong-gateway.yaml"
MESH_TELEMETRY_FILE = "mesh-telemetry.yaml"


def _add_platform_file(out: dict, region: RegionPlan, name: str, documents: list, title: str, what: str,
                       before_helmfile: bool = False) -> None:
    """The region's file of platform objects, beside the per-service files, which name theirs after the service:
    one named like it would share the file."""
    if not documents:
        return
    path = f"kubernetes/{region.name}/{name}"
    if path in out:
        service = name.removesuffix(".yaml")
        raise PlatformcError(f"region {region.name}: a service named {service} would share its manifest file with "
                             f"{what} ({path}); rename the service")
    out[path] = dump_documents(documents, _header(region, title, before_helmfile))


def emit_region(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    base = f"kubernetes/{region.name}"
    out = {f"{base}/{svc.name}.yaml": dump_documents(service_objects(svc, region), _header(region, f"Service {svc.name}"),
                                                     _recurs)
           for svc in region.services}
    _add_platform_file(out, region, GATEWAY_FILE, gateway_objects(plan, region), "Kong's side of the public entry",
                       "Kong's gateway objects")
    if mesh_enabled(region):
        _add_platform_file(out, region, MESH_TELEMETRY_FILE, [access_log_telemetry(plan, region)],
                           "The mesh's access-log policy", "the mesh's Telemetry")
    # Applied before the helmfile (the region page's order): a claim naming a class not there yet would wait
    # Pending, with Prometheus and Alertmanager, until the class appears.
    _add_platform_file(out, region, STORAGE_CLASSES_FILE, storage_classes(plan, region), "StorageClasses",
                       "the region's StorageClasses", before_helmfile=True)
    script = workload_identity_script(region)
    if script:
        out[f"{base}/{WORKLOAD_IDENTITY_SCRIPT}"] = script
    if region.cloud == "aws":
        out[f"{base}/{TARGET_GROUP_BINDING_FILE}"] = dump_documents(
            [gateway_namespace(region), target_group_binding(region)],
            banner("#", BANNER_SPEC) + target_group_binding_header(region))
    return out


WORKLOAD_IDENTITY_SCRIPT = "workload-identities.sh"


def workload_identity_script(region: RegionPlan) -> str:
    """Azure: a user-assigned identity's client id exists only after `terraform apply`, so the ServiceAccounts get
    their `azure.workload.identity/client-id` annotation from the region root's output here, after the manifests
    (and the helm releases) are applied; the services' pods are then restarted, since the workload identity
    webhook injects the client id when a pod is created. `kubectl annotate` leaves the last-applied configuration
    alone, so a later `kubectl apply` of the directory keeps the annotation."""
    idents = [i for i in region.identities if i.has_cloud_identity and i.cloud == "azure"]
    if not idents:
        return ""
    key = SA_ANNOTATION["azure"]
    AZURE_TENANT_ANNOTATION = "azure.workload.identity/tenant-id"
    lines = [
        banner("#", BANNER_SPEC).rstrip("\n"),
        f"# Azure workload identities of region {region.name}: run with `sh {WORKLOAD_IDENTITY_SCRIPT}` from the",
        f"# repository root after `terraform apply` of terraform/regions/{region.name}, the helmfile and",
        f"# `kubectl apply -f generated/kubernetes/{region.name}/`. Needs terraform, kubectl and jq.",
        "set -eu",
        f"ids=$(terraform -chdir=generated/terraform/regions/{region.name} output -json {AZURE_CLIENT_IDS_OUTPUT})",
        "",
        "annotate() { # owner namespace serviceaccount",
        "  id=$(printf '%s' \"$ids\" | jq -er --arg o \"$1\" '.[$o]')",
        f"  kubectl --context {region.cluster_name} annotate --overwrite serviceaccount -n \"$2\" \"$3\" {key}=\"$id\"",
        "}",
        "",
    ]
    lines += [f"annotate {i.owner} {i.namespace} {i.service_account}" for i in idents]
    for i in idents:
        if i.kind == "operator":  # the External Secrets Operator reads the tenant from its ServiceAccount too
            lines.append(f"kubectl --context {region.cluster_name} annotate --overwrite serviceaccount -n {i.namespace} "
                         f"{i.service_account} {AZURE_TENANT_ANNOTATION}=\"$(terraform -chdir=generated/terraform/regions/"
                         f"{region.name} output -raw workload_identity_tenant_id)\"")
    services = [i for i in idents if i.kind == "service"]
    if services:
        lines += ["", "# pods created before the annotation lack the client id: recreate them"]
        lines += [f"kubectl --context {region.cluster_name} rollout restart deployment -n {i.namespace}" for i in services]
    return "\n".join(lines) + "\n"


def _rollout_summary(svc: ServicePlan) -> str:
    ro = svc.rollout
    if ro.type == "canary":
        header = f", `{ro.header_match.name}: {ro.header_match.exact}` first" if ro.header_match else ""
        return f"canary v1/v2 {ro.stable_weight}/{ro.canary_weight}{header}"
    if ro.type == "blue-green":
        return f"blue-green, live: {ro.active}"
    return f"rolling (surge {ro.max_surge:g} %, unavailable {ro.max_unavailable:g} %)"


def docs_region(plan: PlatformPlan, region: RegionPlan) -> str:
    a = region.settings.autoscaling
    lines = [
        "## Kubernetes workloads",
        "",
        f"Manifests: `generated/kubernetes/{region.name}/`. HPAs target {a.target_cpu_utilization} % CPU and "
        f"{a.target_memory_utilization} % memory of the requests. Each Deployment is listed with its HPA bounds; "
        "resources are per pod. The Deployments name no replica count, which is the HPA's: applying the directory "
        "again never scales a service back to its minimum. A Deployment first applied by an older platformc with "
        "`replicas` in its last-applied configuration drops to one pod at its next `kubectl apply` (the field is "
        "deleted, and defaults to 1) until its HPA scales it back: before that apply, remove `spec.replicas` with "
        f"`kubectl --context {region.cluster_name} apply edit-last-applied deployment/<name> -n <namespace>` for each.",
        "",
        "| service | namespace | node pool | deployments (HPA min-max) | requests | limits | rollout |",
        "|---|---|---|---|---|---|---|",
    ]
    for svc in region.services:
        deps = "<br>".join(f"`{t.deployment}` {t.replicas_min}-{t.replicas_max}" for t in tracks(svc))
        gpu = f", {svc.limits.gpu} GPU" if svc.limits.gpu else ""
        lines.append(f"| {svc.name} | `{svc.namespace}` | {svc.node_pool} | {deps} | "
                     f"{svc.requests.cpu} CPU, {svc.requests.memory} | {svc.limits.cpu} CPU, {svc.limits.memory}{gpu} | "
                     f"{_rollout_summary(svc)} |")
    g = region.settings.gateway
    if region.settings.kubernetes.istio and g.load_balancing == "consistent-hashing":
        lines += ["", f"Judgement, hashing: each service's DestinationRule hashes on `{g.hash_on_header}` "
                  "(`consistentHash`) in the caller's sidecar, across the pods; Kong's upstream has one target, the "
                  "Service, where a hash would change nothing (see the Kong section)."]
    spread = zone_spread_policy(region)
    lines += ["", f"Judgement, zone spread: `{spread}` across zones (and `ScheduleAnyway` across nodes); the "
              "scheduler still prefers the emptier zone. A hard zone constraint fails when capacity matters most: in "
              "a zone outage the dead zone still counts while its pods count as none, so no replacement could go to "
              "the healthy zones (kubernetes#116978), and a zone out of a node type would cap the service."
              + (" Here each node pool is also one scaling group over every zone (EKS managed node groups, AKS node "
                 "pools), which the autoscaler cannot aim at the zone a pod waits for."
                 if region.cloud in ZONE_BLIND_AUTOSCALER_CLOUDS else ""),
              "", f"Canary subsets run {CANARY_MIN_PODS} pods at least: the PDB's `maxUnavailable: 10%` rounds up to "
              "one pod, so a node drain leaves one serving the weighted share and the beta testers."]
    lines += rotation_docs(region)
    lines += ["", "### Public entry", "", edge_summary(plan, region)]
    return "\n".join(lines) + "\n"


def rotation_docs(region: RegionPlan) -> list[str]:
    """The region page's steps for a changed secret or setting: what rolls by itself (the pod template's checksums)
    and, for a value rotated in the store under the same reference, each Secret's ExternalSecret to re-sync and the
    Deployments to restart, by name."""
    ctx = f"kubectl --context {region.cluster_name}"
    rows = []
    for svc in region.services:
        names = env_secrets(svc, region)
        if not names:
            continue
        from_ci = {n for n, keys in secret_inputs(svc, region) if any(ref.startswith("env:") for _, ref in keys)}
        deps = " ".join(f"deployment/{t.deployment}" for t in tracks(svc))
        sync = "; ".join(f"`{ctx} -n {svc.namespace} annotate externalsecret {n} force-sync=$(date +%s) --overwrite`"
                         if n not in from_ci else f"the deploy job recreates `{n}` (an `env:` reference; no ExternalSecret)"
                         for n in names)
        rows.append(f"| {svc.name} | " + ", ".join(f"`{svc.namespace}/{n}`" for n in names)
                    + f" | {sync} | `{ctx} -n {svc.namespace} rollout restart {deps}` |")
    if not rows:
        return []
    return ["", "### Secret and setting changes", "",
            "The services read their Secrets and their `<service>-datastores` ConfigMap as environment variables, "
            "which a running container never re-reads. Each Deployment's pod template carries `checksum/config` (the "
            "ConfigMap's data) and `checksum/secrets` (each Secret's keys and the store references its ExternalSecret "
            "reads, never a value): a changed setting or reference in the spec changes the pod template, and the "
            "`kubectl apply` after the helmfile rolls the pods, once the helmfile's ExternalSecrets (which ESO syncs "
            "when their spec changes) have filled the Secrets: check `STATUS SecretSynced` and a fresh refresh time "
            f"with `{ctx} get externalsecret -n <namespace>` before that apply. A value rotated in the store under the "
            "same reference changes nothing platformc sees: ESO copies it into the Secret within its refresh "
            "interval (1h), and no pod picks it up until restarted. For such a rotation, re-sync the Secret and "
            "restart its readers:",
            "",
            "| service | Secrets in its environment (each ExternalSecret is named like its Secret) | re-sync now | then restart |",
            "|---|---|---|---|",
            *rows,
            "",
            "The CA Secrets (`<service>-internal-ca`, `<service>-redis-ca`) are mounted as files, which the kubelet "
            "updates in running pods: re-sync them the same way; a restart is needed only for a client that reads "
            "the file once at start.",
            "",
            "Order for a service's PostgreSQL role password (the `PGPASSWORD` of `<service>-datastores`; the Redis "
            "and Elasticsearch passwords alike): a PostgreSQL role has one password, which PgBouncer's auth_query "
            "reads, so the pods and the server cannot switch at the same instant. (1) Write the new value to the store "
            "entry; (2) run the region's Ansible play, which sets it on the role: from here new connections with the "
            "old password are refused, while open ones (the pools) keep working; (3) at once re-sync the service's "
            "`-datastores` ExternalSecret and restart its Deployments (the table). The rollout's new pods log in "
            "with the new password; the old pods serve on their open connections until replaced. Keep (2) to (3) "
            "short, at a quiet hour. For a changed reference (the spec's `pgbouncer.auth_password` entry, from which "
            "every service's reference derives), run the helmfile and `kubectl apply` (which rolls the pods, "
            "`checksum/secrets`) right after the Ansible play, in that order, without the wait in between that the "
            "deploy order allows."]


LB_REACHES_KONG = {
    "aws": "the ALB's IP target group `{target}`, which Kong's pods join through the TargetGroupBinding in "
           "`kong-target-group-binding.yaml.tmpl` (fill in `terraform output -raw kong_target_group_arn` as its header "
           "says, after the AWS Load Balancer Controller's release and before Kong's, see the helmfile's header); the "
           "same file creates the `kong` namespace labelled `elbv2.k8s.aws/pod-readiness-gate-inject=enabled`, so the "
           "controller gates Kong's pods on the target group's health and a rollout waits for the new pods to be "
           "healthy there before it drains the old)",
    "gcp": "zonal NEGs `{target}`, which GKE creates from the Kong proxy Service's `cloud.google.com/neg` annotation "
           "(helm target) and the load balancer's backend service names",
    "azure": "the Application Gateway, programmed by AKS's ingress controller add-on from the Ingresses in "
             "`kong-gateway.yaml`, one per host: each names its host as the backend host name, so the gateway sends "
             "the Host the request arrived with (Kong's routes match it) and checks Kong's certificate for that name. "
             "Application Gateway v2 verifies HTTPS backends: Kong serves Secret `{secret}` (an ExternalSecret of "
             "release secrets-kong, from the store entry the region's Ansible writes: a certificate for {hosts} "
             "issued by the region's internal CA), and Terraform installs that CA as the gateway's trusted root "
             "certificate `{root}` (the secret the same Ansible run writes to the gateway's certificate vault), the "
             "name the Ingresses give. A cluster where an older platformc applied the single Ingress `kong-proxy` "
             "keeps it (`kubectl apply` deletes nothing), and its rules would compete with these for the same "
             "hosts: delete it (`kubectl --context {context} -n kong delete ingress kong-proxy`)",
}


def edge_summary(plan: PlatformPlan, region: RegionPlan) -> str:
    tls = kong_proxy_tls(plan, region)
    how = LB_REACHES_KONG[region.cloud].format(
        target=lb_target_name(region), root=tls.trusted_root if tls else "", secret=tls.secret if tls else "",
        context=region.cluster_name,
        hosts=", ".join(f"`{h}`" for h in tls.hostnames) if tls else "")
    policy = (f"Kong's NetworkPolicy admits port {KONG_PROXY_TLS_PORT} only from "
              + ", ".join(f"`{c}`" for c in region.addressing.lb_source_cidrs) + " (where the load balancer connects from)."
              if region.settings.security.network_policies else "NetworkPolicies are off in this region.")
    from compiler.targets.kubernetes.gateway import INTERNAL_GATEWAY_SERVICE, azure_internal_gateway
    gateway = azure_internal_gateway(region)
    internal = ""
    if gateway is not None:
        a = gateway["metadata"]["annotations"]
        internal = (f" Home-region routing: the peered Azure regions' Kong reaches this Kong through `{INTERNAL_GATEWAY_SERVICE}` "
                    f"in `kong-gateway.yaml`, an internal load balancer (private address "
                    f"`{a['service.beta.kubernetes.io/azure-load-balancer-ipv4']}`, the address Terraform's private DNS "
                    f"record names) on port {gateway['spec']['ports'][0]['port']} to Kong's TLS port, admitting only "
                    + ", ".join(f"`{c}`" for c in gateway["spec"]["loadBalancerSourceRanges"]) + ".")
    return (f"The cloud load balancer (Terraform: WAF, client TLS) is the only public entry. It forwards HTTPS to "
            f"Kong's pods on port {KONG_PROXY_TLS_PORT} (the proxy Service is ClusterIP) through {how}. The load "
            f"balancer and the global DNS health checks request `{health_check_path(plan)}`, which Kong answers itself. {policy}{internal}")
