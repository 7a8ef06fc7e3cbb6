"""platformc cost: the estimate for one reference region matches a figure computed by hand from the price
catalogue; overrides, unpriced types and the budget rule (warning at cost.monthly's line)."""

from __future__ import annotations

from pathlib import Path

import pytest

from compiler import cost
from compiler.errors import SpecError
from compiler.pipeline import compile_text

REPO = Path(__file__).resolve().parent.parent
BASE = (REPO / "tests/cases/diff/base.yaml").read_text()
H = 730


def test_catalogue_prices_name_their_source_and_date():
    cat = cost.catalogue()
    assert cat["transcribed"] == "2026-12-02" and "2026-12-02" in cost.CATALOGUE.read_text().split("\n\n")[0]
    for key, (price, source) in cost._flatten(cat).items():
        assert price >= 0 and source in cat["sources"], key
    for name, src in cat["sources"].items():
        assert src["page"] and src["date"] == "2026-12-02", name


def test_us_east_1_floor_by_hand(reference):
    """us-east-1 at min nodes, 40 % reserved savings on the always-on baseline (the reference's cost model)."""
    r = reference.region("us-east-1")
    k = r.settings.kubernetes.node_pools
    assert (k["cpu-optimized"].min_nodes, k["memory-optimized"].min_nodes, k["gpu"].min_nodes) == (30, 15, 5)
    save = 0.6
    compute = (30 * 0.68 + 15 * 1.008 + 5 * 1.212) * H * save + 0.10 * H  # c6i.4xlarge, r6i.4xlarge, g5.2xlarge; EKS
    database = (4 * 1.008 + 2 * 0.085 + 6 * 0.126 + 3 * 0.504) * H * save  # pg x4, pgbouncer x2, redis x6, es x3
    # node disks, pg, redis, es volumes (gp3); pg-2 and pg-3 also hold the DR standbys of us-west-2, ca-central-1
    # and sa-east-1 (2000 GiB each)
    storage = (50 * 100 + 2 * 2000 + 2 * (2000 + 3 * 2000) + 6 * 50 + 3 * 1000) * 0.08
    networking = 3 * 0.045 * H  # a NAT gateway per zone
    monitoring = 50 * 36.0  # Datadog APM per node
    security = 0.0208 * H * save + (5 + 4 * 1.0) + 1.0  # bastion, WAF ACL with 4 rules, KMS key
    lb = 0.0225 * H
    by_hand = compute + database + storage + networking + monitoring + security + lb
    est = cost.estimate(reference)
    low, high = est.region_total("us-east-1")
    assert low == pytest.approx(by_hand, abs=0.05)
    assert round(by_hand, 2) == pytest.approx(25316.99, abs=0.05)
    # the ceiling: every pool bursts to its max nodes on-demand (within the cluster's max_nodes), with disks and APM
    up = {n: k[n].max_nodes - k[n].min_nodes for n in k}
    assert sum(up.values()) + 50 <= r.settings.kubernetes.max_nodes
    nodes = sum(up.values())
    burst = (up["cpu-optimized"] * 0.68 + up["memory-optimized"] * 1.008 + up["gpu"] * 1.212) * H \
        + nodes * 100 * 0.08 + nodes * 36.0  # nodes, their disks, APM
    assert high == pytest.approx(by_hand + burst, abs=0.05)


def test_reference_total_and_per_location(reference):
    """The seed's $31,000 ($3.10 per location) is stated as the reference estimate, beside a budget the computed
    floor fits; the text explains the difference."""
    est = cost.estimate(reference)
    low, high = est.total
    assert est.reference_total == 31000 and est.locations == 10000
    assert est.reference == {"compute": 15000, "database": 8000, "storage": 3000, "networking": 2000,
                             "monitoring": 1500, "security": 1000, "load_balancing": 500}
    assert est.reference_total < low <= est.budget_total < high
    assert est.per_location == (round(low / 10000, 2), round(high / 10000, 2))
    text = cost.render_text(est)
    assert "stated estimate (cost.reference_estimate): $31,000; per location: $3.10" in text
    assert f"budget (cost.monthly): {cost.usd(est.budget_total)}" in text
    assert f"{low / 31000:.1f}x); the largest gaps" in text and "compute $" in text
    assert "Not estimated" in text  # the reference gives no traffic volumes
    md = cost.docs_section(reference)
    assert "| stated estimate (cost.reference_estimate) | $15,000 | $8,000 |" in md and "$3.10." in md


def test_reference_passes_strict(reference):
    """CI runs `platformc validate --strict` on the reference: no warning, the SLO's error rate inside its
    availability budget (the seed's < 0.1 % is the load test's pass mark) and every region within its budget."""
    text = (REPO / "platform.yaml").read_text()
    compiled = compile_text(text, "platform.yaml", strict=True)
    assert compiled.warnings == []
    spec = compiled.plan.spec
    assert spec.slos.error_rate_percent <= round(100 - spec.slos.availability_percent, 6)
    assert spec.capacity.max_error_rate_percent == 0.1 and spec.slos.availability_percent == 99.99
    assert cost.over_budget(compiled.plan) == []


def test_budget_split_by_estimate():
    """`budget_split: estimate` gives each region its part of each category's floor (the edge's platform-wide
    items keep theirs), and a budget that covers the floor in total covers every region; by traffic share the
    small region of the same spec is over."""
    est0 = cost.estimate(compile_text(BASE).plan)
    line = "  monthly: {compute: 4000, database: 1500, storage: 300, networking: 200, monitoring: 150, security: 100, load_balancing: 50}"
    fits = ", ".join(f"{c}: {int(est0.category_total(c)[0]) + 1}" for c in cost.CATEGORIES)  # each category's floor, whole
    big = BASE.replace(line, f"  monthly: {{{fits}}}")
    assert big != BASE
    assert "R044" in [w.code for w in compile_text(big).warnings]  # traffic share: euw1's part is too small
    split = big.replace("cost:\n", "cost:\n  budget_split: estimate\n")
    plan = compile_text(split).plan
    assert "R044" not in [w.code for w in compile_text(split).warnings]
    est = cost.estimate(plan)
    for cat, amount in plan.spec.cost.monthly.items():
        floor = est.category_total(cat)[0]
        regions_part = sum(est.category_total(cat, r.name)[0] for r in plan.regions) / floor if floor else 1.0
        assert sum(r.monthly_budget[cat] for r in plan.regions) == pytest.approx(amount * regions_part, abs=0.05), cat
    for r in plan.regions:
        assert est.region_total(r.name)[0] <= est.region_budget[r.name]
        floor = est.category_total("compute", r.name)[0]
        assert r.monthly_budget["compute"] == pytest.approx(
            plan.spec.cost.monthly["compute"] * floor / est.category_total("compute")[0], abs=0.01)


def test_spec_prices_override_the_catalogue():
    a = cost.estimate(compile_text(BASE).plan)
    text = BASE.replace("cost:\n", "cost:\n  prices: {aws/instance_hour/m6i.2xlarge: 0, global/shield_advanced_month: 0}\n")
    b = cost.estimate(compile_text(text).plan)
    lo_a, lo_b = a.region_total("use1")[0], b.region_total("use1")[0]
    assert lo_a - lo_b == pytest.approx(5 * 0.384 * H * 0.6, abs=0.05)  # the general pool's 5 reserved nodes


def test_unpriced_instance_types_are_named():
    text = BASE.replace("instance_types: {aws: m6i.2xlarge,", "instance_types: {aws: m7i.2xlarge,")
    est = cost.estimate(compile_text(text).plan)
    assert any("aws/instance_hour/m7i.2xlarge" in u for u in est.unpriced)


def test_usage_volumes_are_priced():
    text = BASE.replace("cost:\n", "cost:\n  usage: {cdn_egress_gib: 1000, object_storage_gib_per_region: 500}\n")
    est = cost.estimate(compile_text(text).plan)
    items = {ln.item: ln.low for ln in est.lines if ln.region in ("use1", "")}
    assert items["CDN egress: 1000 GiB"] == pytest.approx(85.0)
    assert items["object storage: 500 GiB"] == pytest.approx(500 * 0.023)
    assert not any("CDN egress" in n for n in est.not_estimated)


def test_docs_section_is_a_markdown_table(reference):
    md = cost.docs_section(reference)
    assert md.startswith("## Cost estimate\n") and "| us-east-1 |" in md and "| **total** |" in md


def _line_of(text: str, needle: str) -> int:
    return text[: text.index(needle)].count("\n") + 1


def test_budget_rule_warns_at_the_budget_line():
    from compiler.rules import RULES
    code = "R044"
    assert any(r.code == code and r.severity == "warning" and r.stage == "plan" for r in RULES)
    text = BASE.replace("monthly: {compute: 4000,", "monthly: {compute: 400,")
    compiled = compile_text(text)  # a warning: the compile goes on
    (w,) = [w for w in compiled.warnings if w.code == code]
    assert w.line == _line_of(text, "  monthly: {compute: 400,") and w.path == "cost.monthly"
    assert "use1" in w.message and "euw1" in w.message
    from compiler.pipeline import _apply  # the one policy every rule goes through: --strict makes a warning an error
    with pytest.raises(SpecError) as exc:
        _apply([w], strict=True)
    assert [d.code for d in exc.value.diagnostics] == [code]
    ok = BASE.replace("monthly: {compute: 4000,", "monthly: {compute: 40000,")
    assert code not in [w.code for w in compile_text(ok).warnings]


def test_cost_prices_the_machines_terraform_creates(reference):
    """Machine types come from one place (compiler/ir/machines.py and the spec's instance_types): every host and
    node-pool machine type and the Azure gateway's capacity the Terraform region roots set is the one the estimate
    prices, read back from the emitted HCL, in every region of the reference (all three clouds)."""
    import hcl2
    from compiler.emit import emit
    from compiler.ir import machines
    outputs, _ = emit(reference, ["terraform"], with_docs=False)
    est = cost.estimate(reference)
    unquote = lambda v: v.strip('"') if isinstance(v, str) else v  # noqa: E731
    clouds = set()
    for r in reference.regions:
        clouds.add(r.cloud)
        tf = hcl2.loads(outputs["generated"][f"terraform/regions/{r.name}/main.tf"][1])
        modules = {unquote(k): v for block in tf["module"] for k, v in block.items()}
        priced = " | ".join(ln.item for ln in est.lines if ln.region == r.name)
        hosts = modules["data_hosts"]["hosts"] if "data_hosts" in modules else {}
        groups = {}
        for h in hosts.values():
            groups.setdefault(unquote(h["group"]), set()).add(unquote(h["instance_type"]))
        assert set(groups) == {h.group for h in r.hosts}, r.name
        for group, types in groups.items():
            assert types == {machines.host_instance_type(r, group)}, (r.name, group)
            (itype,) = types
            assert f"{group}: {len(r.hosts_in(group))} x {itype} (reserved)" in priced, (r.name, group)
        pools = {unquote(p["instance_type"]) for p in modules["kubernetes"]["node_pools"].values()}
        assert pools == {p.instance_types[r.cloud] for p in r.settings.kubernetes.node_pools.values()}
        for itype in pools:
            assert f"x {itype} (" in priced, (r.name, itype)
        if r.cloud == "azure":
            lb = modules["load_balancer"]
            assert (lb["min_capacity"], lb["max_capacity"]) == machines.AZURE_GATEWAY_CAPACITY
            assert "Application Gateway WAF_v2, {}-{} units".format(*machines.AZURE_GATEWAY_CAPACITY) in priced
    assert clouds == {"aws", "gcp", "azure"}


def test_no_machine_type_is_restated():
    """The cost module and the Terraform target read the unsized hosts' machines from compiler/ir/machines.py."""
    import re
    names = {t for types in __import__("compiler.ir.machines", fromlist=["x"]).UNSIZED_HOSTS.values() for t in types.values()}
    for path in [REPO / "compiler/cost/__init__.py", *sorted((REPO / "compiler/targets").rglob("*.py"))]:
        text = path.read_text()
        found = sorted(n for n in names if re.search(rf"[\"']{re.escape(n)}[\"']", text))
        assert not found, f"{path.relative_to(REPO)} restates {found}: import them from compiler/ir/machines.py"


def test_the_catalogue_kept_in_the_cache_is_the_one_parsed(tmp_path, monkeypatch):
    """In the command's process the catalogue is kept in the cache dir (compiler/codecache.py): the first run keeps
    its key, the second the data, the third reads it without parsing; each is exactly what parsing gives."""
    from compiler import codecache
    from compiler.cost import CATALOGUE, _parse_catalogue, catalogue
    parsed = _parse_catalogue(CATALOGUE.read_bytes())
    for _ in range(2):
        with codecache.installed(str(tmp_path / "code.marshal")):
            catalogue.cache_clear()  # once per process otherwise (lru_cache): each block here stands for a new one
            assert catalogue() == parsed

    def no_parse(raw):
        raise AssertionError("parsed again")
    monkeypatch.setattr(cost, "_parse_catalogue", no_parse)
    with codecache.installed(str(tmp_path / "code.marshal")):
        catalogue.cache_clear()
        assert catalogue() == parsed
    catalogue.cache_clear()
    with pytest.raises(AssertionError):  # no cache installed (a library caller): parsed
        catalogue()
    catalogue.cache_clear()
