"""Terraform target: one region's root module (IR -> template context).

Each module call in regions/<cloud>/main.tf.j2 writes its wiring (module outputs, local.tags)
in the template and takes the region's resolved values from `args[<module>]`, rendered with
`hcl_attrs`. The keys come from <cloud>.args and are exactly the module's variables
minus the wired ones; the tests parse both sides to prove it.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.edge import dns_cloud, dns_provider, dns_provider_region, origin_verify
from compiler.targets.terraform import aws as _terraform_aws, azure as _terraform_azure, gcp as _terraform_gcp
from compiler.targets.terraform.common import prefix, provider_requirements, root_clouds, state_backend
from compiler.targets.terraform.values import peerings

ARGS = {"aws": _terraform_aws.args, "gcp": _terraform_gcp.args, "azure": _terraform_azure.args}


def files(plan: PlatformPlan, region: RegionPlan) -> dict[str, tuple[str, dict]]:
    """File name -> (template, context) for regions/<region>/."""
    cloud = region.cloud
    zone_cloud = dns_cloud(plan.spec)
    backend_type, backend = state_backend(plan, cloud, f"regions/{region.name}")
    context = {
        "plan": plan,
        "region": region,
        "name": prefix(plan, region),
        "tags": dict(region.tags),
        "account": plan.spec.clouds[cloud].account,
        "dns_account": plan.spec.clouds["aws"].account if "aws" in plan.spec.clouds else None,
        "dns_region": dns_provider_region(plan.spec),
        "origin_verify": origin_verify(plan, region),
        "dns_cloud": zone_cloud,
        "dns_provider": dns_provider(plan.spec),
        "args": ARGS[cloud](plan, region),
        "peerings": peerings(plan, region),
        "kms_alias": _terraform_aws.kms_alias(plan, region) if cloud == "aws" else None,
        "backend_type": backend_type,
        "backend": backend,
    }
    out = {"versions.tf": ("versions.tf.j2", provider_requirements(root_clouds(cloud, zone_cloud)))}
    out["backend.tf"] = ("backend.tf.j2", context)
    for part in ("main", "providers", "variables", "outputs"):
        out[f"{part}.tf"] = (f"regions/{cloud}/{part}.tf.j2", context)
    return out
