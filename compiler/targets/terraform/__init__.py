"""Terraform target: generated/terraform/{modules,regions,global}.

  modules/<cloud>/<module>/   written once per cloud in use (owner terraform/global), reused by every
                              region of that cloud; the templates are plain HCL with variables
  regions/<region>/           one root per region: main.tf calls the cloud's modules with the region's
                              resolved values; versions, providers, backend, variables, outputs
  global/                     the edge: Route 53 zone, health-checked weighted DNS over the regions,
                              CloudFront with a WAF in front, Shield

The IR -> template-context mapping lives in region.py (regions), global_root.py
(the edge) and docs.py (the per-region docs section); HCL escaping in compiler/formats/hcl.py.
"""

from __future__ import annotations

from functools import lru_cache

from compiler.formats.hcl import FILTERS
from compiler.ir import PlatformPlan, RegionPlan
from compiler.render import TEMPLATES, banner, render
from compiler.targets.terraform import docs as _terraform_docs, global_root as _terraform_global_root, region as _terraform_region
from compiler.targets.terraform.common import EXTRA_PROVIDERS, MODULES, ROOT, provider_requirements

NAME = "terraform"
HEADER = banner("#")


def _render(template: str, **context) -> str:
    return HEADER + render(NAME, template, filters=FILTERS, **context)


JINJA_MARKERS = ("{{", "{%", "{#")


def _static(template: str) -> str:
    """A module template: plain HCL with no Jinja markup renders to itself, so it is read, not compiled
    (about 100 module files; compiling them would take most of the target's time budget). A template
    that does use Jinja goes through the renderer; tests prove both paths give the same text."""
    source = (TEMPLATES / NAME / template).read_text(encoding="utf-8")
    if any(m in source for m in JINJA_MARKERS):
        return _render(template)
    return HEADER + source


@lru_cache(maxsize=None)
def _module_files(cloud: str) -> tuple[tuple[str, str], ...]:
    """The cloud's module library: static HCL, identical for every spec that uses the cloud."""
    out = []
    for module in MODULES[cloud]:
        base = f"{ROOT}/modules/{cloud}/{module}"
        for part in ("main", "variables", "outputs"):
            out.append((f"{base}/{part}.tf", _static(f"modules/{cloud}/{module}/{part}.tf.j2")))
        clouds = [cloud, *EXTRA_PROVIDERS.get((cloud, module), ())]
        out.append((f"{base}/versions.tf", _render("versions.tf.j2", **provider_requirements(clouds))))
    return tuple(out)


def emit_global(plan: PlatformPlan) -> dict[str, str]:
    files: dict[str, str] = {}
    for cloud in sorted({r.cloud for r in plan.regions}):
        files.update(_module_files(cloud))
    for name, (template, context) in _terraform_global_root.files(plan).items():
        files[f"{ROOT}/global/{name}"] = _render(template, **context)
    return files


def emit_region(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    base = f"{ROOT}/regions/{region.name}"
    return {f"{base}/{name}": _render(template, **context)
            for name, (template, context) in _terraform_region.files(plan, region).items()}


def docs_region(plan: PlatformPlan, region: RegionPlan) -> str:
    return _terraform_docs.section(plan, region)
