"""Terraform target: the docs section of a region page."""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan


def section(plan: PlatformPlan, region: RegionPlan) -> str:
    return "## Terraform\n"
