"""The plan holds one copy of what regions share (issue 16's memory): validated settings a region did not override,
the global layer's provenance, the far ends of the home-routing flows. Sharing must never change a value."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from compiler.loader import load_file, load_text
from compiler.merge import merge_layers
from compiler.model import RegionSettings
from compiler.pipeline import _merge_regions, _validate_top, compile_document

ROOT = Path(__file__).resolve().parent.parent
SPECS = [ROOT / "platform.yaml", *sorted((ROOT / "tests" / "cases").glob("*/platform.yaml"))]


def _unshared(doc, platform, name):
    """A region's merged settings and provenance as made before sharing: merged on their own, validated alone."""
    raw = doc.data
    region = platform.regions[name]
    layers = [("global", ("settings",), raw["settings"])]
    if region.geo in platform.geos:
        layers.append((f"geo:{region.geo}", ("geos", region.geo, "settings"), raw["geos"][region.geo].get("settings", {})))
    layers.append((f"region:{name}", ("regions", name, "settings"), raw["regions"][name].get("settings", {})))
    merged, origin = merge_layers(layers)
    return RegionSettings.model_validate(merged), {path: o.layer for path, o in origin.items()}


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.parent.name if p.name == "platform.yaml" and p.parent != ROOT else "reference")
def test_shared_settings_and_provenance_equal_each_region_on_its_own(spec):
    doc = load_file(str(spec))
    platform = _validate_top(doc)
    settings, _origins, provenance = _merge_regions(doc, platform)
    for name in platform.regions:
        alone, prov = _unshared(doc, platform, name)
        assert settings[name] == alone, name
        assert settings[name].model_dump() == alone.model_dump(), name
        assert dict(provenance[name]) == prov, name


def _spec_with_overrides() -> bytes:
    """The reference with overrides at every depth in one region, a geo override, and a list replaced."""
    data = yaml.safe_load((ROOT / "platform.yaml").read_text())
    names = list(data["regions"])
    one, two = names[0], names[1]
    data["regions"][one].setdefault("settings", {}).setdefault("datastores", {}).setdefault("redis", {})["maxmemory_policy"] = "allkeys-lfu"
    data["regions"][two].setdefault("settings", {})["backups"] = {}
    geo = data["regions"][two]["geo"]
    data["geos"][geo].setdefault("settings", {}).setdefault("monitoring", {})["log_retention_days"] = 21
    return yaml.safe_dump(data, sort_keys=False).encode()


def test_an_override_changes_only_its_region_and_the_rest_stays_shared():
    text = _spec_with_overrides()
    doc = load_text(text, "platform.yaml")
    platform = _validate_top(doc)
    settings, _origins, provenance = _merge_regions(doc, platform)
    names = list(platform.regions)
    for name in names:
        alone, prov = _unshared(doc, platform, name)
        assert settings[name] == alone, name
        assert dict(provenance[name]) == prov, name
    one = settings[names[0]]
    assert one.datastores.redis.maxmemory_policy == "allkeys-lfu"
    others = [settings[n] for n in names[1:]]
    assert all(s.datastores.redis.maxmemory_policy != "allkeys-lfu" for s in others)
    # what no layer of theirs touched is one object across the regions (the memory the sharing saves)
    assert all(s.datastores is others[0].datastores for s in others)
    assert all(s.gateway is settings[names[0]].gateway for s in others)
    assert one.datastores.postgres is others[0].datastores.postgres  # the sibling of the override stays shared


def test_the_compiled_plan_shares_the_far_ends_of_home_routing():
    """Every region that forwards to a home holds the same peer for that home's gateway."""
    plan = compile_document(load_file(str(ROOT / "platform.yaml"))).plan
    by_dest: dict = {}
    for r in plan.regions:
        for c in r.wiring:
            if "kong-forward" in c.layers:
                by_dest.setdefault(c.dest.name, set()).add(id(c.dest))
    assert by_dest, "the reference has home-routing flows"
    assert all(len(ids) == 1 for ids in by_dest.values()), by_dest


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.parent.name if p.parent != ROOT else "reference")
def test_secret_references_walked_once_per_shared_model_are_each_regions_own(spec):
    """identity.all_refs with the platform-wide memo lists, for every region, what a walk of its settings alone lists."""
    from compiler.ir.identity import all_refs
    doc = load_file(str(spec))
    platform = _validate_top(doc)
    settings, _origins, _provenance = _merge_regions(doc, platform)
    seen: dict = {}
    for name in platform.regions:
        assert all_refs(settings[name], seen) == all_refs(_unshared(doc, platform, name)[0]), name
    assert seen, "the memo was used"
