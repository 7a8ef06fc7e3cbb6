"""Terraform target: generated/terraform/{modules,regions,global}.

  modules/<cloud>/<module>/   written once per cloud in use (owner terraform/global), reused by every
                              region of that cloud, plus the modules the global root calls; plain HCL with
                              variables (the load balancers write into the public zone of the spec's DNS)
  regions/<region>/           one root per region: main.tf calls the cloud's modules with the region's
                              resolved values; versions, providers (its cloud's, and the public zone's when
                              that is another cloud, each pinned to the spec's account), backend, variables, outputs
  global/                     the edge of one cloud (compiler.ir.edge): Route 53 + CloudFront + WAFv2 (+ Shield
                              Advanced when asked), Azure DNS + Front Door Premium with its WAF policy, or Cloud
                              DNS + Cloud CDN on the global external Application Load Balancer with Cloud Armor;
                              weighted, health-checked routing over the regions in each

The IR -> template-context mapping lives in region.py (regions), global_root.py
(the edge) and docs.py (the per-region docs section); HCL escaping in compiler/formats/hcl.py.
"""

from __future__ import annotations

from functools import lru_cache

from compiler.formats.hcl import FILTERS
from compiler.ir import PlatformPlan, RegionPlan
from compiler.render import TEMPLATES, banner, render
from compiler.targets.terraform import identity as _terraform_identity
from compiler.targets.terraform import docs as _terraform_docs, global_root as _terraform_global_root, region as _terraform_region
from compiler.ir.edge import dns_cloud, dns_provider, edge_cloud
from compiler.targets.terraform.common import GLOBAL_MODULES, MODULE_ALIASES, MODULES, ROOT, module_clouds, provider_requirements

NAME = "terraform"
HEADER = banner("#")


def _render(template: str, **context) -> str:
    return HEADER + render(NAME, template, filters=FILTERS, **context)


JINJA_MARKERS = ("{{", "{%", "{#")


def _static(template: str, **context) -> str:
    """A module template: plain HCL with no Jinja markup renders to itself, so it is read, not compiled
    (about 100 module files; compiling them would take most of the target's time budget). A template
    that does use Jinja goes through the renderer; tests prove both paths give the same text."""
    source = (TEMPLATES / NAME / template).read_text(encoding="utf-8")
    if any(m in source for m in JINJA_MARKERS):
        return _render(template, **context)
    return HEADER + source


@lru_cache(maxsize=None)
def _module_files(cloud: str, dns: str, modules: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Modules of the cloud's library: static HCL, identical for every spec with the same public DNS provider
    (`dns`: the load balancers write the region's records into that zone)."""
    out = []
    zone_cloud = {"route53": "aws", "azure_dns": "azure", "cloud_dns": "gcp"}[dns]
    for module in modules:
        base = f"{ROOT}/modules/{cloud}/{module}"
        for part in ("main", "variables", "outputs"):
            out.append((f"{base}/{part}.tf", _static(f"modules/{cloud}/{module}/{part}.tf.j2", dns_provider=dns)))
        clouds = module_clouds(cloud, module, zone_cloud)
        aliases = {cloud: MODULE_ALIASES[(cloud, module)]} if (cloud, module) in MODULE_ALIASES else None
        out.append((f"{base}/versions.tf", _render("versions.tf.j2", **provider_requirements(clouds, aliases))))
    return tuple(out)


def emit_global(plan: PlatformPlan) -> dict[str, str]:
    """Module libraries of the regions' clouds, the modules the global root calls (always, also when no
    region runs on the edge's cloud), and the global root."""
    files: dict[str, str] = {}
    dns, edge = dns_provider(plan.spec), edge_cloud(plan.spec)
    assert dns_cloud(plan.spec) == edge, "R039 pairs the DNS and the CDN"
    clouds = sorted({r.cloud for r in plan.regions})
    for cloud in clouds:
        files.update(_module_files(cloud, dns, MODULES[cloud]))
    if edge not in clouds:
        files.update(_module_files(edge, dns, GLOBAL_MODULES[edge]))
    for name, (template, context) in _terraform_global_root.files(plan).items():
        files[f"{ROOT}/global/{name}"] = _render(template, **context)
    for name, text in _terraform_global_root.extra_files(plan).items():
        files[f"{ROOT}/global/{name}"] = text
    return files


def emit_region(plan: PlatformPlan, region: RegionPlan) -> dict[str, str]:
    base = f"{ROOT}/regions/{region.name}"
    out = {f"{base}/{name}": _render(template, **context)
           for name, (template, context) in _terraform_region.files(plan, region).items()}
    # the Vault side of the External Secrets Operator (vault: references): a policy and the commands that bind it
    out.update({f"{base}/{name}": HEADER + text for name, text in _terraform_identity.vault_files(plan, region).items()})
    return out


def docs_region(plan: PlatformPlan, region: RegionPlan) -> str:
    return _terraform_docs.section(plan, region)
