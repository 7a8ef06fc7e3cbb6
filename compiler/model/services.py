"""Application services: tiers, per-service settings, autoscaling and rollout strategies."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

from pydantic import StringConstraints

from compiler.model.base import (F, FD, CpuQuantity, MemoryQuantity, Model, Name, Percent, Port,
                                 PositiveInt, SecretRef, Text)


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
"""An environment variable name."""


class ReplicaRange(Model):
    """How many pods a service runs: the HPA's floor and ceiling."""

    min: PositiveInt = F(description="Fewest replicas (HPA minReplicas); also the Deployment's initial replicas.")
    max: PositiveInt = F(description="Most replicas the HPA may scale to (maxReplicas).")


class ResourceAmounts(Model):
    """CPU and memory, in Kubernetes quantities."""

    cpu: CpuQuantity = F(description="CPU, e.g. `500m` or `2`.")
    memory: MemoryQuantity = F(description="Memory with a binary suffix, e.g. `512Mi`, `4Gi`.")
    gpu: int = F(0, description="NVIDIA GPUs (`nvidia.com/gpu`); only AI services ask for them.", ge=0, le=8)


class Resources(Model):
    """Container resource requests (what the scheduler reserves) and limits (the hard cap)."""

    requests: ResourceAmounts = F(description="Reserved per pod; capacity checks use these.")
    limits: ResourceAmounts = F(description="Hard cap per pod; must be at least the requests.")


class ScalingPolicy(Model):
    """One HPA scaling policy."""

    type: Literal["Percent", "Pods"] = F("Percent", description="Whether `value` is a percentage of current replicas or a pod count.")
    value: PositiveInt = F(description="How much may be added or removed per period.")
    period_seconds: int = F(60, description="The period the policy applies over.", ge=1, le=1800)


class ScalingRules(Model):
    """HPA behaviour in one direction."""

    stabilization_window_seconds: int = F(description="How long the HPA looks back before acting, damping flapping.", ge=0, le=3600)
    policies: list[ScalingPolicy] = F(description="Policies; the HPA picks the one allowing the largest change.", min_length=1)


class Autoscaling(Model):
    """Horizontal Pod Autoscaler targets and behaviour (autoscaling/v2)."""

    target_cpu_utilization: int = F(70, description="Average CPU utilisation (% of requests) the HPA aims for.", ge=1, le=100)
    target_memory_utilization: int = F(80, description="Average memory utilisation (% of requests) the HPA aims for.", ge=1, le=100)
    scale_up: ScalingRules = FD(lambda: ScalingRules(stabilization_window_seconds=60, policies=[ScalingPolicy(type="Percent", value=50, period_seconds=60)]),
                                "Scale-up behaviour: by default at most +50 % per 60 s after a 60 s window.")
    scale_down: ScalingRules = FD(lambda: ScalingRules(stabilization_window_seconds=300, policies=[ScalingPolicy(type="Percent", value=10, period_seconds=60)]),
                                  "Scale-down behaviour: by default at most -10 % per 60 s after a 300 s window.")


class HeaderMatch(Model):
    """An HTTP header that routes a request to the canary regardless of weights."""

    name: str = F(description="Header name, lower case.", pattern=r"^[a-z0-9-]{1,64}$")
    exact: str = F(description="The exact value that selects the canary.", pattern=r"^[A-Za-z0-9._-]{1,128}$")
    claim: Optional[str] = F(None, description="JWT claim the gateway copies into the header on authenticated requests "
                             "(defaults to the header's name); the header a client sends is always removed.",
                             pattern=r"^[A-Za-z0-9_.-]{1,64}$")


class CanaryStrategy(Model):
    """Istio canary: a VirtualService splitting traffic between subsets v1 (stable) and v2 (canary)."""

    type: Literal["canary"] = F(description="Discriminator.")
    stable_weight: int = F(90, description="Percent of traffic kept on the stable subset v1.", ge=0, le=100)
    canary_weight: int = F(10, description="Percent of traffic sent to the canary subset v2.", ge=0, le=100)
    header_match: Optional[HeaderMatch] = F(None, description="Requests carrying this header go to v2 first (beta testers).")
    canary_image_tag: Optional[str] = F(None, description="Image tag of the canary subset v2: the version under test, which "
                                        "must differ from the service's `tag` (R047).", pattern=r"^[A-Za-z0-9._-]{1,128}$")


class BlueGreenStrategy(Model):
    """Blue-green: two full Deployments and a Service whose selector names the live colour."""

    type: Literal["blue-green"] = F(description="Discriminator.")
    active: Literal["blue", "green"] = F("blue", description="The colour that receives traffic.")
    blue_image_tag: Optional[str] = F(None, description="Image tag of the blue Deployment; defaults to the service's tag.", pattern=r"^[A-Za-z0-9._-]{1,128}$")
    green_image_tag: Optional[str] = F(None, description="Image tag of the green Deployment; defaults to the service's tag.", pattern=r"^[A-Za-z0-9._-]{1,128}$")


class RollingStrategy(Model):
    """Plain Kubernetes rolling update."""

    type: Literal["rolling"] = F(description="Discriminator.")
    max_surge: Percent = F(25, description="Extra pods during a rollout, % of replicas.")
    max_unavailable: Percent = F(0, description="Pods that may be unavailable during a rollout, % of replicas.")


class Route(Model):
    """A public HTTP route to the service through the API gateway."""

    paths: list[Annotated[str, StringConstraints(pattern=r"^/([A-Za-z0-9._~-]+/)*[A-Za-z0-9._~-]*$", max_length=200)]] = F(
        description="Path prefixes, each starting with `/`: letters, digits and `._~-` in non-empty segments, so no "
                    "regex or YAML surprises reach the gateway (`.` and `..` segments are refused too, R023).",
        min_length=1)
    methods: list[Literal["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]] = F(
        description="Allowed HTTP methods.", min_length=1)
    hosts: list[Annotated[str, StringConstraints(pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")]] = FD(
        list, description="Host names the route answers; empty means the platform's API host.")
    auth: Literal["none", "jwt", "oauth2"] = F("jwt", description="Authentication the gateway enforces on this route.")
    strip_path: bool = F(False, description="Whether the gateway removes the matched prefix before proxying.")


class ExternalHost(Model):
    """An Internet host a service calls (a card processor, a mail or SMS provider, a partner API)."""

    host: Annotated[str, StringConstraints(pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$", max_length=253)] = F(
        description="The host's DNS name, exactly as the service dials it (no wildcards: each name is one mesh entry).")
    port: Port = F(443, description="TCP port on that host; always TLS (the mesh originates nothing in clear).")


class Tier(Model):
    """Defaults shared by the services of one tier (frontend, backend, ai)."""

    description: Text = F(description="What runs in this tier.")
    replicas: ReplicaRange = F(description="Replica range each service of the tier runs with, unless it overrides it.")
    resources: Resources = F(description="Per-pod resources of the tier's services, unless overridden.")
    node_pool: Name = F(description="Node pool (by name) the tier's pods are scheduled on.")
    db_connections_per_pod: int = F(0, description="PostgreSQL connections each pod opens (through PgBouncer).", ge=0, le=1000)


class Service(Model):
    """One deployable service."""

    tier: Name = F(description="The tier (see `settings.tiers`) the service inherits replicas, resources and node pool from.")
    description: Text = F(description="What the service does, for the docs.")
    enabled: bool = F(True, description="Set false in a geo or region override to leave the service out there.")
    image: str = F(description="Container image repository (no tag), in the platform's private registry.",
                   pattern=r"^[a-z0-9][a-z0-9./_-]{0,200}$")
    tag: str = F(description="Image tag deployed as the stable version.", pattern=r"^[A-Za-z0-9._-]{1,128}$")
    port: Port = F(8080, description="Container port the service listens on (HTTP).")
    health_path: str = F("/healthz", description="HTTP path for liveness and readiness probes.", pattern=r"^/[A-Za-z0-9/._-]*$")
    replicas: Optional[ReplicaRange] = F(None, description="Overrides the tier's replica range.")
    resources: Optional[Resources] = F(None, description="Overrides the tier's resources.")
    db_connections_per_pod: Optional[int] = F(None, description="Overrides the tier's PostgreSQL connections per pod.", ge=0, le=1000)
    node_pool: Optional[Name] = F(None, description="Overrides the tier's node pool.")
    depends_on: list[Name] = FD(list, description="Services this one calls; NetworkPolicies allow exactly these edges.")
    uses: list[Literal["postgres", "redis", "elasticsearch", "object-storage"]] = FD(
        list, description="Data stores the service talks to; drives NetworkPolicy egress and connection budgets.")
    routes: list[Route] = FD(list, description="Public routes through the API gateway; none means internal only.")
    egress: list[ExternalHost] = FD(
        list, description="Internet hosts the service calls; each becomes a mesh ServiceEntry and a NetworkPolicy egress "
                          "rule on its port. Without an entry a service reaches nothing outside the platform.")
    rollout: CanaryStrategy | BlueGreenStrategy | RollingStrategy = F(
        description="How new versions roll out.", discriminator="type")
    secrets: dict[EnvName, SecretRef] = FD(dict, description="Environment variables filled from secret references, never values.")
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=4096)]] = FD(
        dict, description="Plain, non-secret environment variables (values of at most 4,096 characters).")
    writable_paths: list[Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/-]{1,200}$")]] = FD(
        list, description="Directories the container writes besides /tmp (the root filesystem is read-only), each an "
                          "emptyDir, e.g. a framework's cache (`/app/.next/cache` for Next.js).")
