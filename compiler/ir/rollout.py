"""Rollout arithmetic shared by the kubernetes target (the Deployments it writes) and the rules (the GPU pool
that must hold them): the canary subset's replica range and the most pods a service runs at once."""

from __future__ import annotations

import math

from compiler.ir import ServicePlan

# Every track but a rolling service's own: surge a quarter of the replicas, never go below the replicas.
DEFAULT_SURGE_PERCENT, DEFAULT_UNAVAILABLE_PERCENT = 25, 0
# A canary keeps two pods at least: a PDB's maxUnavailable of 10 % rounds up to one pod, so a drain may evict one
# of them and the other still serves the weighted share and every beta tester.
CANARY_MIN_PODS = 2


def canary_replicas(svc: ServicePlan) -> tuple[int, int]:
    """The canary subset's HPA bounds: its traffic share of the service's bounds, CANARY_MIN_PODS at least
    (header-matched beta traffic reaches v2 whatever the weight)."""
    w = svc.rollout.canary_weight
    lo = max(CANARY_MIN_PODS, math.ceil(svc.replicas_min * w / 100))
    return lo, max(lo, math.ceil(svc.replicas_max * w / 100))


def surge_pods(replicas: int, percent: float) -> int:
    return math.ceil(replicas * percent / 100)


def peak_pods(svc: ServicePlan) -> tuple[int, str]:
    """(the most pods the service runs at once, how): every track at its HPA ceiling, plus the surge of the
    largest track's rollout (one rollout at a time)."""
    ro = svc.rollout
    if ro.type == "rolling":
        surge = surge_pods(svc.replicas_max, ro.max_surge)
        return svc.replicas_max + surge, f"{svc.replicas_max} max + {surge} surge"
    surge = surge_pods(svc.replicas_max, DEFAULT_SURGE_PERCENT)
    if ro.type == "canary":
        _, hi = canary_replicas(svc)
        return svc.replicas_max + hi + surge, f"{svc.replicas_max} max + {hi} canary + {surge} surge"
    # blue-green: both colours full size
    return 2 * svc.replicas_max + surge, f"2 x {svc.replicas_max} (blue and green) + {surge} surge"
