"""Terraform target: the global root (DNS, CDN, edge WAF) -> template context."""

from __future__ import annotations

from compiler.ir import PlatformPlan


def files(plan: PlatformPlan) -> dict[str, tuple[str, dict]]:
    return {}
