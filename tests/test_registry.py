"""The optional franchise registry: explicit placement, residency enforced at the CSV's line."""

import shutil
import time
from pathlib import Path

import pytest

from compiler.errors import SpecError
from compiler.pipeline import compile_file

FIXTURE = Path(__file__).parent / "cases/two-region/platform.yaml"


@pytest.fixture
def spec(tmp_path):
    text = FIXTURE.read_text()
    text = text.replace("sharding: {franchises_per_shard: 500,", "sharding: {registry_file: franchises.csv, franchises_per_shard: 500,")
    geo = "emea: {display_name: EMEA, traffic_share: 40,"
    assert text.count(geo) == 1  # a fixture edit must not turn this patch into a silent no-op
    text = text.replace(geo, geo + " data_residency: [eu],")
    text = text.replace("dr_partner: use1", "dr_partner: euw1b").replace("traffic_share: 40\n    dr_partner", "traffic_share: 30\n    dr_partner")
    # a second EMEA region so EMEA regions have an in-geo DR partner
    text = text.replace("settings:\n  kubernetes:", """  euw1b:
    {geo: emea, cloud: gcp, cloud_region: europe-west4, location: Netherlands, traffic_share: 10,
     dr_partner: euw1, cidr: 10.22.0.0/16}
settings:
  kubernetes:""", 1)
    text = text.replace("workload_share: 40", "workload_share: 40")
    path = tmp_path / "platform.yaml"
    path.write_text(text)
    return path


def write_rows(spec, rows):
    (spec.parent / "franchises.csv").write_text("franchise_id,home_region,jurisdiction\n" + "".join(f"{r}\n" for r in rows))


def test_places_franchises_in_their_home_region(spec):
    write_rows(spec, ["7,use1,us", "3,euw1,eu", "5,euw1b,eu", "1,use1,"])
    plan = compile_file(str(spec)).plan
    homes = {h.franchise_id: (h.region, h.shard) for h in plan.registry}
    for fid, (region, shard) in homes.items():
        assert shard in [s.number for s in plan.region(region).shards], (fid, region, shard)
    assert [h.franchise_id for h in plan.registry] == [1, 3, 5, 7]


@pytest.mark.parametrize("row,line_col,needle", [
    ("3,use1,eu", (3, 3), "must stay in emea regions, not use1"),
    ("4,nowhere,us", (3, 3), "home region 'nowhere' is not a declared region"),
    ("2,use1,us", (3, 1), "listed twice (first on line 2)"),
    ("x,use1,us", (3, 1), "not a positive integer"),
    ("9,use1", (3, 1), "expected 3 fields"),
])
def test_bad_rows_are_positioned_in_the_csv(spec, row, line_col, needle):
    write_rows(spec, ["2,use1,us", row])
    with pytest.raises(SpecError) as exc:
        compile_file(str(spec))
    (d,) = exc.value.diagnostics
    assert d.code == "R022" and d.file.endswith("franchises.csv") and (d.line, d.col) == line_col
    assert needle in d.message


def test_missing_registry_points_at_the_spec(spec):
    with pytest.raises(SpecError) as exc:
        compile_file(str(spec))
    (d,) = exc.value.diagnostics
    assert d.file == str(spec) and d.path == "sharding.registry_file" and "cannot read" in d.message


def test_a_region_cannot_hold_more_than_its_shards(spec):
    write_rows(spec, [f"{i},euw1b,eu" for i in range(1, 1600)])
    with pytest.raises(SpecError, match="homed in euw1b"):
        compile_file(str(spec))


def test_ten_thousand_franchises_compile_fast(spec):
    spec.write_text(spec.read_text().replace("capacity_franchises: 3000", "capacity_franchises: 12000"))
    regions = ["use1"] * 6 + ["euw1"] * 3 + ["euw1b"]
    write_rows(spec, [f"{i},{regions[i % 10]},{'eu' if regions[i % 10] != 'use1' else 'us'}" for i in range(1, 10_001)])
    started = time.perf_counter()
    plan = compile_file(str(spec)).plan
    assert time.perf_counter() - started < 1.0
    assert len(plan.registry) == 10_000


def test_placements_are_columns_that_read_as_franchise_homes(spec):
    """The plan holds the registry as columns (compiler.registry.Placements) and the home ranges as columns
    (RangeTable): both read as the records and tuples they stand for, and the docs' counts taken from the columns
    are the routing table's."""
    from compiler.ir.home_routing import home_range_table
    from compiler.registry import FranchiseHome
    from compiler.targets.datastores import shards
    write_rows(spec, ["9,use1,us", "7,use1,us", "8,use1,us", "3,euw1,eu", "4,euw1b,eu", "5,euw1b,eu", "1,use1,"])
    plan = compile_file(str(spec)).plan
    homes = tuple(plan.registry)
    assert all(isinstance(h, FranchiseHome) for h in homes) and [h.franchise_id for h in homes] == [1, 3, 4, 5, 7, 8, 9]
    assert plan.registry == homes and homes == tuple(plan.registry[i] for i in range(len(homes)))
    assert hash(plan.registry) == hash(homes) and plan.registry[1:3] == homes[1:3]
    assert list(home_range_table(plan)) == [(1, 1, "use1"), (3, 3, "euw1"), (4, 5, "euw1b"), (7, 9, "use1")]
    routes = shards.routes(plan, keep=False)
    assert shards.franchises_per_shard(plan) == {r.shard: r.count for r in routes}
    assert shards.route_spans(plan) == sum(len(r.ranges) for r in routes)
    assert list(shards.each_route(plan)) == routes == shards._compute(plan)  # shards.sql's rows, one shard at a time


def test_routes_for_one_file_are_not_kept(spec):
    """routes(keep=False), the platform's shards.sql: computed for the file, not held by the module's memo."""
    from compiler.targets.datastores import shards
    write_rows(spec, ["2,use1,us", "3,use1,us"])
    plan = compile_file(str(spec)).plan
    assert shards.routes(plan, keep=False) is not shards.routes(plan, keep=False)
    assert shards.routes(plan) is shards.routes(plan) is shards.routes(plan, keep=False)


@pytest.mark.parametrize("source", ["-- m\nlocal FIRST = {1, 4001}\n  return M\nreturn M\n", "x\n", " lead\n", "a \n",
                                    "a\n\nb\n", "no break", "é\n", 'q: "x" # y\n  - z\n', "a\tb\n", "- a\n", "'a'\n",
                                    "a\n#b\n", "a\n\n"])
def test_home_routing_config_map_is_the_yaml_dump(source):
    """helm's home-routing ConfigMap indents the module into a document dumped with a stand-in: the same bytes as
    dumping the whole document, for modules YAML writes as a literal block and the others (dumped as before)."""
    from compiler.render import dump_document
    from compiler.targets.helm.home_routing import _config_map_text
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "m", "namespace": "kong"},
           "data": {"home_routing.lua": source}}
    assert _config_map_text(doc, source, "# header\n") == dump_document(doc, "# header\n")
