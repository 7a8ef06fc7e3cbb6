"""Verify checker: infra layers (stub until its checks land)."""

from __future__ import annotations

LAYERS = ("cloud-firewall", "cdn")


def check(tree, region, connections):
    return []
