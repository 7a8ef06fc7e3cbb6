"""Kubernetes resource quantities, as the kubernetes and helm targets write them."""

from __future__ import annotations


def cpu_quantity(millicores: int) -> str:
    return f"{millicores}m"


def memory_quantity(mib: float) -> str:
    """Mi when whole, else Ki (the spec allows Ki amounts)."""
    if float(mib).is_integer():
        return f"{int(mib)}Mi"
    return f"{int(round(mib * 1024))}Ki"
