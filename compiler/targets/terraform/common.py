"""Terraform target: what every part shares (module library, providers, state backends, unit mapping)."""

from __future__ import annotations

import bisect
import re

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.data_access import search_paths

ROOT = "terraform"
TERRAFORM_VERSION = "~> 1.9"

# cloud -> (local provider name, source, version constraint); the majors match the provider
# schemas the tests check against (aws 6.25, google 6.50, azurerm 4.55).
PROVIDERS = {
    "aws": ("aws", "hashicorp/aws", "~> 6.0"),
    "gcp": ("google", "hashicorp/google", "~> 6.0"),
    "azure": ("azurerm", "hashicorp/azurerm", "~> 4.0"),
}

# The module library per cloud, in dependency order (the docs list them in this order too).
MODULES = {
    "aws": ("kms", "network", "kubernetes", "object_storage", "workload_identity", "data_hosts", "waf", "load_balancer", "backup", "budget",
            "managed_postgres", "managed_redis", "managed_search", "peering"),
    "gcp": ("kms", "network", "kubernetes", "object_storage", "workload_identity", "data_hosts", "waf", "load_balancer", "backup", "budget",
            "managed_postgres", "managed_redis", "peering"),
    "azure": ("kms", "network", "storage_account", "kubernetes", "object_storage", "workload_identity", "data_hosts", "waf", "load_balancer",
              "backup", "budget", "managed_postgres", "managed_redis", "peering"),
}

# Modules that write into the public zone (the region's name, certificate records): they need the provider of
# the zone's cloud too when it is not their own.
ZONE_WRITERS = ("load_balancer",)

# The modules the global root calls, per edge cloud (the Azure and Google edges call none).
GLOBAL_MODULES = {"aws": ("kms", "waf"), "azure": (), "gcp": ()}


# Modules that take a second provider configuration of their own cloud (the peer region's): module -> aliases.
MODULE_ALIASES = {("aws", "peering"): ["aws.peer"]}


def module_clouds(cloud: str, module: str, dns_cloud: str) -> list[str]:
    """Providers a module of `cloud` requires: its own, plus the public zone's when it writes records there."""
    return [cloud, dns_cloud] if module in ZONE_WRITERS and dns_cloud != cloud else [cloud]


def root_clouds(cloud: str, dns_cloud: str = "aws") -> list[str]:
    """Providers a region root of `cloud` configures: its own, plus the public zone's cloud for the region's
    records when that is another cloud (R039 makes the spec declare that cloud's account)."""
    return [cloud] if cloud == dns_cloud else [cloud, dns_cloud]

# CloudWatch Logs accepts only these retention periods; a spec value is rounded up to the next one.
CLOUDWATCH_RETENTION = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                        2922, 3288, 3653)

TAINT = re.compile(r"^(?P<key>[^=:]+)(?:=(?P<value>[^:]*))?:(?P<effect>NoSchedule|PreferNoSchedule|NoExecute)$")
TAINT_EFFECT = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}


def provider_requirements(clouds, aliases: dict[str, list[str]] | None = None) -> dict:
    """Context for versions.tf.j2: required_version and the providers of `clouds`, pinned with `~>`."""
    aliases = aliases or {}
    providers = []
    for cloud in clouds:
        name, source, version = PROVIDERS[cloud]
        providers.append({"name": name, "source": source, "version": version, "aliases": aliases.get(cloud, [])})
    return {"terraform_version": TERRAFORM_VERSION, "providers": providers}


def prefix(plan: PlatformPlan, region: RegionPlan | str) -> str:
    """Name prefix of a region's resources: <org>-<region> (also the IR's cluster_name)."""
    if not isinstance(region, str):
        return region.cluster_name
    return f"{plan.spec.organization.name}-{region}"


def search_path_entries(index_prefix: str) -> list[dict]:
    """A service's OpenSearch paths (compiler/ir/data_access.py search_paths) as the module calls take them: its role's
    policy (workload_identity) and the domain's access policy (managed_search) list the same entries."""
    return [{"actions": list(actions), "path": path} for actions, path in search_paths(index_prefix)]


def cloudwatch_retention(days: int) -> int:
    i = bisect.bisect_left(CLOUDWATCH_RETENTION, days)
    return CLOUDWATCH_RETENTION[min(i, len(CLOUDWATCH_RETENTION) - 1)]


def taints(spec_taints) -> list[dict]:
    """`key=value:Effect` strings as {key, value, effect} with the cloud APIs' upper-case effect."""
    out = []
    for t in spec_taints:
        m = TAINT.fullmatch(t)
        if not m:
            raise ValueError(f"taint {t!r} is not key=value:Effect")
        out.append({"key": m["key"], "value": m["value"] or "", "effect": TAINT_EFFECT[m["effect"]]})
    return out


def state_backend(plan: PlatformPlan, cloud: str, key: str) -> tuple[str, dict]:
    """(backend type, settings) of the remote state for a root whose state lives with `cloud`."""
    st = plan.spec.clouds[cloud].state
    if cloud == "aws":
        lock = {"dynamodb_table": st.lock_table} if st.lock_table else {"use_lockfile": True}
        return "s3", {"bucket": st.bucket, "key": f"{key}/terraform.tfstate", "region": st.region,
                      "encrypt": True, **lock}
    if cloud == "gcp":
        return "gcs", {"bucket": st.bucket, "prefix": key}
    return "azurerm", {"resource_group_name": st.resource_group, "storage_account_name": st.bucket,
                       "container_name": st.container, "key": f"{key}.tfstate", "use_azuread_auth": True}


# ---------------------------------------------------------------- backup schedules

DOW_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
DOW_LONG = ("SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY")


def _dow_names(field: str) -> str:
    """Numeric day-of-week tokens (0-7, 0 and 7 = Sunday) as names, which every cloud reads the same way."""
    def token(t: str) -> str:
        base, _, step = t.partition("/")
        base = re.sub(r"\d+", lambda m: DOW_NAMES[int(m.group()) % 7], base)
        return base + (f"/{step}" if step else "")
    return ",".join(token(t) for t in field.split(","))


def aws_cron(cron: str) -> str:
    """A five-field cron (UTC) as an AWS schedule expression: six fields, `?` in day-of-month or day-of-week.

    AWS cannot OR a day-of-month with a day-of-week as cron does; a spec that restricts both is
    refused here (compile-time, not at apply).
    """
    minute, hour, dom, month, dow = cron.split()
    if dow == "*":
        dow = "?"
    elif dom == "*":
        dom, dow = "?", _dow_names(dow)
    else:
        raise ValueError(f"backup schedule {cron!r} restricts both day-of-month and day-of-week; AWS Backup cannot run it")
    return f"cron({minute} {hour} {dom} {month} {dow} *)"


def classify_cron(cron: str) -> dict:
    """What a schedule is, for clouds without cron: hourly (every n hours), daily, weekly or monthly.

    Returns {kind, minute, hour, every_hours, days_of_week, days_of_month}. Fields the kind does not use are
    empty. Anything more irregular raises ValueError naming the schedule.
    """
    minute, hour, dom, month, dow = cron.split()
    if not minute.isdigit() or month != "*":
        raise ValueError(f"backup schedule {cron!r}: only a fixed minute and every month can be mapped to this cloud")
    out = {"minute": int(minute), "hour": 0, "every_hours": 0, "days_of_week": [], "days_of_month": []}
    if hour == "*" or hour.startswith("*/"):
        if dom != "*" or dow != "*":
            raise ValueError(f"backup schedule {cron!r}: an hourly schedule must run every day")
        return {**out, "kind": "hourly", "every_hours": int(hour[2:]) if hour != "*" else 1}
    if not hour.isdigit():
        raise ValueError(f"backup schedule {cron!r}: the hour must be one number or */n")
    out["hour"] = int(hour)
    if dom == "*" and dow == "*":
        return {**out, "kind": "daily"}
    if dom == "*":
        days = []
        for t in _dow_names(dow).split(","):
            if "/" in t or "-" in t:
                raise ValueError(f"backup schedule {cron!r}: list weekdays one by one")
            days.append(DOW_LONG[DOW_NAMES.index(t)])
        return {**out, "kind": "weekly", "days_of_week": days}
    if dow == "*" and all(x.isdigit() for x in dom.split(",")):
        return {**out, "kind": "monthly", "days_of_month": [int(x) for x in dom.split(",")]}
    raise ValueError(f"backup schedule {cron!r} cannot be mapped to this cloud's backup service")
