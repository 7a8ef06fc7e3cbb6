"""Kong's home-region map, once per platform: a local chart every region's helmfile installs before Kong.

generated/helm/global/charts/kong-home-routing/   Chart.yaml and one ConfigMap holding the Lua module
    `platformc.home_routing` (compiler/ir/home_routing.py, GATEWAY_MAP_*): the franchise id -> home region map as
    ranges, and `home_of(id)`, a binary search over them. Each region's Kong mounts the ConfigMap (kong values,
    `extraConfigMaps`) where the chart's lua_package_path finds the module, and its routing pre-function (kong target)
    requires it.

Why a chart in the global tree and not a table in each region's kong.yaml: the map is the same everywhere and grows
with the registry (~290 KB for 10,000 scattered franchises), so one copy per region made the output regions x
registry. The regions' helmfiles name the chart by its relative path, so every cluster gets the same bytes.
"""

from __future__ import annotations

import re

from compiler.errors import PlatformcError
from compiler.ir import PlatformPlan
from compiler.ir.home_routing import (GATEWAY_MAP_CHART, GATEWAY_MAP_CONFIGMAP, GATEWAY_MAP_FILE, GATEWAY_MAP_FUNCTION,
                                      GATEWAY_MAP_MAX_BYTES, GATEWAY_MAP_MODULE, gateway_map_version, home_range_table)
from compiler.ir.names import GATEWAY_NAMESPACE
from compiler.render import banner, dump_document

CHART_DIR = f"helm/global/charts/{GATEWAY_MAP_CHART}"  # relative to generated/
CHART_VERSION = "1.0.0"
# Region names are [a-z0-9-] (the spec's pattern): checked again here, as the module quotes them without escapes.
_PLAIN = re.compile(r"[a-z0-9-]+")


def chart_path_from_region() -> str:
    """The chart's directory relative to a region's helmfile (generated/helm/<region>/)."""
    return f"../global/charts/{GATEWAY_MAP_CHART}"


def module_source(plan: PlatformPlan) -> str:
    return _module(home_range_table(plan), gateway_map_version(plan))


def _quoted(region: str) -> str:
    if not _PLAIN.fullmatch(region):
        raise PlatformcError(f"helm: region name {region!r} cannot be written into the home-routing module")
    return f'"{region}"'


def _module(ranges: tuple, version: str) -> str:
    def lua_list(values) -> str:
        return "{" + ", ".join(values) + "}"
    return "\n".join([
        banner("--").rstrip("\n"),
        f"-- {GATEWAY_MAP_MODULE}: franchise id -> home region, from the shard map (or the franchise registry),",
        "-- as sorted, merged ranges: FIRST[i]..LAST[i] is homed in HOME[i]. Kong's home-region routing pre-function",
        f"-- (generated/kong/<region>/kong.yaml) requires it and calls {GATEWAY_MAP_FUNCTION}(id).",
        f"local FIRST = {lua_list(str(r[0]) for r in ranges)}",
        f"local LAST = {lua_list(str(r[1]) for r in ranges)}",
        f"local HOME = {lua_list(_quoted(r[2]) for r in ranges)}",
        f"local M = {{version = \"{version}\"}}",
        f"function M.{GATEWAY_MAP_FUNCTION}(id)",
        "  local lo, hi = 1, #FIRST",
        "  while lo <= hi do",
        "    local mid = math.floor((lo + hi) / 2)",
        "    if id < FIRST[mid] then hi = mid - 1",
        "    elseif id > LAST[mid] then lo = mid + 1",
        "    else return HOME[mid] end",
        "  end",
        "  return nil",
        "end",
        "return M",
    ]) + "\n"


def emit(plan: PlatformPlan) -> dict[str, str]:
    """The chart: plain YAML (Helm templates it, so the module must hold no `{{`: it holds numbers and region names)."""
    source = module_source(plan)
    if len(source.encode()) > GATEWAY_MAP_MAX_BYTES:  # R058 refuses this at validation; never emit a chart that cannot install
        raise PlatformcError(f"helm: the home-routing module is {len(source.encode()):,} bytes, over a ConfigMap's limit")
    if "{{" in source:
        raise PlatformcError("helm: the home-routing module contains `{{`, which Helm would read as a template")
    purpose = "Kong's home-region map (Lua module platformc.home_routing), the same in every region"
    header = banner("#") + f"# Chart {GATEWAY_MAP_CHART}: {purpose}; installed by every region's helmfile.\n"
    meta = {"apiVersion": "v2", "name": GATEWAY_MAP_CHART, "description": purpose, "type": "application",
            "version": CHART_VERSION}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap",
                  "metadata": {"name": GATEWAY_MAP_CONFIGMAP, "namespace": GATEWAY_NAMESPACE,
                               "labels": {"app.kubernetes.io/managed-by": "platformc"}},
                  "data": {GATEWAY_MAP_FILE: source}}
    return {f"{CHART_DIR}/Chart.yaml": dump_document(meta, header),
            f"{CHART_DIR}/templates/configmap.yaml": dump_document(config_map, header)}
