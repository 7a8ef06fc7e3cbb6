"""No output grows with regions x shards (issue #16): the routing table is written once for the platform, the
region files and region docs carry only the region's own shards, and the registry costs once, not per region."""

from __future__ import annotations

import re
import sys
import time

import pytest

from compiler.emit import emit
from compiler.pipeline import compile_file
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))


@pytest.fixture(scope="module")
def scaled48(tmp_path_factory):
    import scale
    return compile_file(str(scale.write(tmp_path_factory.mktemp("s48"), 48))).plan


@pytest.fixture(scope="module")
def registry120(tmp_path_factory):
    import scale
    return compile_file(str(scale.write(tmp_path_factory.mktemp("r120"), 120, 10_000))).plan


def _datastores_and_docs(plan):
    out, _ = emit(plan, ["datastores"], None, with_docs=True)
    return out["generated"], out["docs"]


def test_the_routing_table_is_one_platform_file(reference):
    gen, _ = _datastores_and_docs(reference)
    tables = sorted(rel for rel, (_, text) in gen.items() if "franchise_shard_map" in text and "INSERT" in text)
    assert tables == ["datastores/shards.sql"]
    text = gen["datastores/shards.sql"][1]
    assert len(re.findall(r"^    -- shard \d+:", text, re.M)) == len(reference.shards)
    for region in reference.regions:
        setup = gen[f"datastores/{region.name}/setup.psql"][1]
        assert setup.count("\\ir ../shards.sql") == len(region.shards)
        assert f"datastores/{region.name}/shards.sql" not in gen


def test_output_per_region_does_not_grow_with_the_platform(reference, scaled48):
    """Region files and region docs at 48 regions are no larger than at 12 (the region holds the same shards or fewer)."""
    def per_region(plan, name):
        gen, docs = _datastores_and_docs(plan)
        files = sum(len(t) for rel, (_, t) in gen.items() if rel.startswith(f"datastores/{name}/"))
        return files, len(docs[f"regions/{name}.md"][1])
    small, large = per_region(reference, "us-east-1"), per_region(scaled48, "us-east-1")
    assert large[0] <= small[0] + 200, (small, large)
    assert large[1] <= small[1] + 2000, (small, large)


def test_region_docs_list_only_the_regions_shards(scaled48):
    _, docs = _datastores_and_docs(scaled48)
    for region in scaled48.regions[:6]:
        page = docs[f"regions/{region.name}.md"][1]
        mine = {s.database for s in region.shards}
        listed = set(re.findall(r"\| (franchise_shard_\d+) \|", page))
        assert listed == mine, region.name


def test_registry_costs_once_not_per_region(registry120):
    """120 regions with a 10,000-row registry: the routing table is one file, and emitting the data tier of
    every region takes about what it takes without a registry (not regions x registry)."""
    from compiler.targets import datastores
    from compiler.targets.datastores import shards
    assert len(registry120.registry) == 10_000
    started = time.perf_counter()
    for region in registry120.regions:
        files = datastores.emit_region(registry120, region)
        # each standby cluster's pg_hba.conf (dr-<source>/) is its source's lines and a few more: bounded with the
        # source region's own files, and by the regions a region is DR partner of, never by the registry
        standby = sum(len(t) for p, t in files.items() if "/dr-" in p)
        assert standby < 8_000 * len(region.postgres_ha.standbys if region.postgres_ha else ()) + 1, region.name
        assert sum(len(t) for p, t in files.items() if "/dr-" not in p) < 40_000, region.name
    per_regions = time.perf_counter() - started
    table = datastores.emit_global(registry120)["datastores/shards.sql"]
    ranges = {s: r for s, (_, _, r) in _routes(table).items()}
    expanded = {i: shard for shard, rs in ranges.items() for a, b in rs for i in range(a, b + 1)}
    assert expanded == {h.franchise_id: h.shard for h in registry120.registry}
    assert shards.routes(registry120) is shards.routes(registry120)  # computed once per plan
    assert per_regions < 1.5, f"{per_regions:.2f}s for the data tier of 120 regions"


def _routes(sql: str):
    rows = re.findall(r"\((\d+), '([^']+)', (\d+),\s+'\{([^}]*)\}'\)", sql)
    return {int(shard): (host, int(port), [(int(a), int(b)) for a, b in re.findall(r"\[(\d+),(\d+)\]", ids)])
            for shard, host, port, ids in rows}


def test_kongs_home_region_map_is_one_platform_file(registry120, tmp_path):
    """Kong's franchise -> home map (10,000 scattered registry rows: thousands of ranges) is one module in the global
    helm chart, not a table in each region's kong.yaml: a region's Kong file is as large as without the registry."""
    import yaml

    import scale
    from compiler.ir.home_routing import home_range_table
    from compiler.targets import helm, kong
    chart = helm.emit_global(registry120)
    module = yaml.safe_load(chart["helm/global/charts/kong-home-routing/templates/configmap.yaml"])["data"]["home_routing.lua"]
    lists = {name: re.search(rf"^local {name} = \{{([^}}]*)\}}$", module, re.M).group(1).split(", ")
             for name in ("FIRST", "LAST", "HOME")}
    assert list(zip(map(int, lists["FIRST"]), map(int, lists["LAST"]), (h.strip('"') for h in lists["HOME"]))) \
        == list(home_range_table(registry120))
    assert len(home_range_table(registry120)) > 1000
    plain = compile_file(str(scale.write(tmp_path, 120))).plan
    for name in [r.name for r in registry120.regions[::10]]:
        with_registry = kong.emit_region(registry120, registry120.region(name))[f"kong/{name}/kong.yaml"]
        without = kong.emit_region(plain, plain.region(name))[f"kong/{name}/kong.yaml"]
        assert "local FIRST" not in with_registry
        # the same but for the map's version (one line)
        assert abs(len(with_registry) - len(without)) < 100, (name, len(with_registry), len(without))
