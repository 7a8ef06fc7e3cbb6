"""Verify checker: cluster layers (stub until its checks land)."""

from __future__ import annotations

LAYERS = ("networkpolicy-egress", "networkpolicy-ingress", "kong", "istio", "prometheus")


def check(tree, region, connections):
    return []
