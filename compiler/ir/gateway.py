"""Kong's capacity, from the spec: how many gateway pods the region's traffic needs, on which node pool.

The region carries its traffic share of `capacity.requests_per_second`, and `capacity.peak_multiplier` times that
at peak. One Kong pod serves `gateway.rps_per_pod` at the HPA's CPU target, so the gateway HPA runs from the pods
normal load needs (never fewer than `gateway.replicas`) to the pods the peak needs. The helm target writes the
HPA and Nginx's worker count, the rules check that the peak fits the node pool.
"""

from __future__ import annotations

import math
from compiler.records import dataclass

from compiler.model.base import cpu_millicores
from compiler.ir import RegionPlan


@dataclass(frozen=True)
class GatewayCapacity:
    """Kong's sizing in a region: request rates, pods, workers and node pool."""

    normal_rps: float
    peak_rps: float
    rps_per_pod: int
    min_replicas: int
    max_replicas: int
    worker_processes: int  # whole CPUs of the pod's limit: one Nginx worker each
    node_pool: str


def kong_node_pool(region: RegionPlan) -> str:
    """The spec's gateway.node_pool, else the untainted pool with the most CPU at max nodes."""
    g = region.settings.gateway
    if g.node_pool:
        return g.node_pool
    pools = region.settings.kubernetes.node_pools
    untainted = [n for n, p in pools.items() if not p.taints and not p.gpus] or list(pools)
    return max(untainted, key=lambda n: (pools[n].max_nodes * pools[n].vcpus, n))


def gateway_capacity(region: RegionPlan, requests_per_second: int, peak_multiplier: float) -> GatewayCapacity:
    g = region.settings.gateway
    normal = requests_per_second * region.traffic_share / 100
    peak = normal * peak_multiplier
    lo = max(g.replicas, math.ceil(normal / g.rps_per_pod - 1e-9))
    hi = max(lo, math.ceil(peak / g.rps_per_pod - 1e-9))
    workers = max(1, cpu_millicores(g.resources.limits.cpu) // 1000)
    return GatewayCapacity(normal, peak, g.rps_per_pod, lo, hi, workers, kong_node_pool(region))
