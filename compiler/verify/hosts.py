"""Verify checker: hosts layers (stub until its checks land)."""

from __future__ import annotations

LAYERS = ("nftables", "pg_hba")


def check(tree, region, connections):
    return []
