"""Issue 16, the per-region cost at scale: work that is per region must not rescan the whole platform.

The cost table asks for every region x category total; each total used to scan every line of the estimate
(quadratic in the regions: 0.14 s of the docs at 120 regions). The grouped totals must add the same floats in
the same order as a scan, so every figure (and every docs byte) stays the same."""

from __future__ import annotations

import dataclasses

import pytest

from compiler import cost


class _CountingList(list):
    """A list that counts how many times it is iterated from the start."""

    passes = 0

    def __iter__(self):
        type(self).passes += 1
        return super().__iter__()


def _scan(est, pred):
    sel = [ln for ln in list.__iter__(est.lines) if pred(ln)]
    return round(sum(ln.low for ln in sel), 2), round(sum(ln.high for ln in sel), 2)


def test_cost_totals_are_the_scans_totals(reference):
    est = cost.estimate(reference)
    for r in est.regions + ("",):
        assert est.region_total(r) == _scan(est, lambda ln: ln.region == r)
        for c in cost.CATEGORIES:
            assert est.category_total(c, r) == _scan(est, lambda ln: ln.category == c and ln.region == r)
    for c in cost.CATEGORIES:
        assert est.category_total(c) == _scan(est, lambda ln: ln.category == c)
    assert est.region_total("no-such-region") == (0, 0)


def test_cost_table_reads_the_lines_a_bounded_number_of_times(reference):
    """render_markdown (docs/overview.md) and over_budget (rule R044) pass over the lines a fixed number of times,
    not once per region and category."""
    est = cost.estimate(reference)
    expected = cost.render_markdown(est)
    est.lines = _CountingList(est.lines)
    _CountingList.passes = 0
    assert cost.render_markdown(est) == expected
    assert _CountingList.passes <= 12, _CountingList.passes  # 12 regions x 8 columns = 96+ passes when scanning
    _CountingList.passes = 0
    for r in est.regions:
        est.region_total(r)
    assert _CountingList.passes <= 1


def test_cost_groups_follow_a_replaced_or_grown_lines_list(reference):
    est = cost.estimate(reference)
    r = est.regions[0]
    before = est.region_total(r)
    extra = cost.Line(r, "compute", "extra", 10.0, 20.0, 10.0, "spec")
    est.lines = est.lines + [extra]
    assert est.region_total(r) == _scan(est, lambda ln: ln.region == r) != before
    est.lines.append(extra)
    assert est.region_total(r) == _scan(est, lambda ln: ln.region == r)


def test_hcl_fast_paths_write_what_the_general_paths_write():
    """compiler/formats/hcl.py dispatches exact dicts, lists, strings and ints first (typing.Mapping's isinstance
    was a tenth of Terraform's emission at 120 regions); other Mappings, str/int subclasses and bools take the
    general checks and must read the same."""
    from types import MappingProxyType

    from compiler.formats import hcl

    class S(str):
        pass

    class I(int):  # noqa: E742
        pass

    value = {"name": "a${b}\n\"c\"", "n": 3, "f": 2.0, "g": 2.5, "on": True, "off": False, "none": None,
             "list": ["x", 1, True], "tuple": ("y", 2), "raw": hcl.Raw("local.tags"), "nested": {"k": ["v"]},
             "objects": [{"a": 1}, {"b": "2"}], "empty": {}, "none_list": []}
    general = MappingProxyType({k: (MappingProxyType(v) if isinstance(v, dict) else v) for k, v in value.items()})
    assert hcl.expr(value) == hcl.expr(general)
    assert hcl.attrs(value) == hcl.attrs(general) == hcl.attrs(list(value.items()))
    assert hcl.expr(S("a${b}")) == hcl.expr("a${b}") == '"a$${b}"'
    assert hcl.expr(I(7)) == hcl.expr(7) == "7"
    assert (hcl.expr(True), hcl.expr(False), hcl.expr(None), hcl.expr(3.0)) == ("true", "false", "null", "3")


def test_secrets_filter_computes_the_undeliverable_once_per_call(reference, monkeypatch):
    """helm/secrets.py: stores() and external_secrets() asked unsupported(region) (which rebuilds every wanted
    Secret) once per wanted Secret; with 16 Secrets a region, that was 40 % of the docs and a third of Helm's
    emission at 120 regions. Now once per call, keeping the same Secrets in the same order."""
    from compiler.targets.helm import secrets

    r = reference.region("us-east-1")
    real_unsupported_in = secrets._unsupported_in  # the filter both functions run (through _deliverable_of)
    calls = []

    def counting(region, wanted):
        calls.append(region.name)
        return real_unsupported_in(region, wanted)

    monkeypatch.setattr(secrets, "_unsupported_in", counting)
    secrets.stores(reference, r)
    secrets.external_secrets(r)
    assert len(calls) <= 2, len(calls)  # 2 x 16 before

    # the same Secrets as the old per-Secret test, also when some are undeliverable (on a fresh copy of the region:
    # the region plan keeps what it computed, so the patched filter would not be asked again for `r`)
    r = dataclasses.replace(r)
    wanted = secrets.wanted(r)
    assert len(wanted) > 3
    fake = [(wanted[1], "env:X"), (wanted[3], "env:Y")]
    monkeypatch.setattr(secrets, "_unsupported_in", lambda region, ws: list(fake))
    kept = [w for w in wanted if not any(x == w for x, _ in fake)]
    assert secrets.external_secrets(r) == [secrets.external_secret(w) for w in kept]
    names = {secrets.parse(ref).store for w in kept for ref in secrets._refs(w)}
    assert [s["metadata"]["name"] for s in secrets.stores(reference, r)] == sorted(names)


def test_wiring_inside_is_ipaddress_subnet_of():
    """compiler/wiring.py's _inside compares integer bounds; it must answer what ipaddress's subnet_of answers."""
    import ipaddress
    import random

    from compiler import wiring

    rng = random.Random(16)

    def cidr():
        if rng.random() < 0.1:
            return str(ipaddress.ip_network((rng.getrandbits(128), rng.randint(0, 128)), strict=False))
        return str(ipaddress.ip_network((rng.choice([0x0A000000, 0x0A010000, 0xC0A80000]) + rng.getrandbits(16),
                                         rng.randint(8, 32)), strict=False))

    def slow(cidrs, ranges):
        nets = [ipaddress.ip_network(r) for r in ranges]
        return bool(cidrs) and all(any(ipaddress.ip_network(c).version == n.version
                                       and ipaddress.ip_network(c).subnet_of(n) for n in nets) for c in cidrs)

    answers = set()
    for _ in range(3000):
        cidrs = tuple(cidr() for _ in range(rng.randint(0, 3)))
        ranges = tuple(cidr() for _ in range(rng.randint(0, 3)))
        assert wiring._inside(cidrs, ranges) == slow(cidrs, ranges), (cidrs, ranges)
        answers.add(slow(cidrs, ranges))
    assert answers == {True, False}
    assert wiring._inside(("10.1.2.0/24",), ("10.1.0.0/16",)) and not wiring._inside(("10.1.0.0/16",), ("10.1.2.0/24",))


def test_wiring_index_answers_what_the_scans_answer(reference):
    """RegionPlan.connections_from/connections_to/through answer each question once per plan; each must list the
    connections a scan of the wiring lists, in wiring order."""
    for r in reference.regions:
        names = {c.source.name for c in r.wiring} | {c.dest.name for c in r.wiring} | {"no-such-peer"}
        layers = {layer for c in r.wiring for layer in c.layers} | {"no-such-layer"}
        for n in names:
            assert r.connections_from(n) == tuple(c for c in r.wiring if c.source.name == n)
            assert r.connections_to(n) == tuple(c for c in r.wiring if c.dest.name == n)
        for layer in layers:
            assert r.through(layer) == tuple(c for c in r.wiring if layer in c.layers)


def test_terraform_remote_is_ipaddress_subnet_of(reference):
    """compiler/ir/network.py's from_outside (integer bounds) answers what ipaddress's subnet_of answered."""
    import ipaddress
    from types import SimpleNamespace

    from compiler.ir.network import from_outside

    def slow(c, region):
        own = ipaddress.ip_network(region.cidr)
        return bool(c.source.cidrs) and not any(ipaddress.ip_network(x).subnet_of(own) for x in c.source.cidrs)

    seen = set()
    for r in reference.regions:
        for c in r.wiring:
            assert from_outside(c, r) == slow(c, r)
            seen.add(slow(c, r))
        for cidrs in ((), (r.cidr,), ("0.0.0.0/0",), (r.cidr, "192.0.2.0/24"), ("192.0.2.0/24", r.cidr)):
            c = SimpleNamespace(source=SimpleNamespace(cidrs=cidrs))
            assert from_outside(c, r) == slow(c, r)
            seen.add(slow(c, r))
    assert seen == {True, False}
    c = SimpleNamespace(source=SimpleNamespace(cidrs=("2001:db8::/32",)))
    with pytest.raises(TypeError):
        from_outside(c, reference.regions[0])


def test_plan_region_lookup_is_the_scans(reference):
    """PlatformPlan.region reads a dict built once per plan: the same region objects, and StopIteration for an
    unknown name as the scan's next() raised."""
    for r in reference.regions:
        assert reference.region(r.name) is next(x for x in reference.regions if x.name == r.name)
    with pytest.raises(StopIteration):
        reference.region("no-such-region")


def test_split_by_estimate_budgets_are_the_per_region_sums(reference):
    """cost.split_by_estimate sums each category's floor once; every region's budget is what the per-region
    sum gave (the reference splits by estimate)."""
    assert reference.spec.cost.budget_split == "estimate"
    est = cost.estimate(reference)
    floor = {(ln.region, ln.category): 0.0 for ln in est.lines}
    for ln in est.lines:
        floor[(ln.region, ln.category)] += ln.low
    for r in reference.regions:
        for cat, amount in sorted(reference.spec.cost.monthly.items()):
            total = sum(v for (_, c), v in floor.items() if c == cat)
            part = floor.get((r.name, cat), 0.0) / total if total > 0 else r.traffic_share / 100
            assert r.monthly_budget[cat] == round(amount * part, 2)


def test_helm_wanted_secrets_computed_once_per_region(reference, monkeypatch):
    """helm: the helmfile, its header, the secrets charts and the docs section each asked secrets.wanted(region), which
    rebuilt every wanted Secret (8 times per region). Now once per region plan, with the same files and section."""
    from compiler.targets import helm
    from compiler.targets.helm import secrets

    r = dataclasses.replace(reference.region("us-east-1"))  # a fresh plan: nothing computed for it yet
    before = (helm.emit_region(reference, r), helm.docs_region(reference, r))
    r = dataclasses.replace(r)
    real = secrets._compute_wanted
    calls = []
    monkeypatch.setattr(secrets, "_compute_wanted", lambda region: calls.append(region.name) or real(region))
    after = (helm.emit_region(reference, r), helm.docs_region(reference, r))
    assert calls == ["us-east-1"]
    assert after == before
    assert secrets.wanted(r) == real(r) and secrets.wanted(r) is not secrets.wanted(r)  # a new list each call


def test_kong_docs_do_not_build_the_home_routing(reference, monkeypatch):
    """kong: the docs section built the whole decK document (global plugins, the routing function, ~100 home-region
    upstreams per region at 120 regions) to read the routes and the health route's hosts."""
    from compiler.targets import kong
    from compiler.targets.kong import routing

    r = reference.region("us-east-1")
    before = kong.docs_region(reference, r)
    asked = []
    monkeypatch.setattr(routing, "home_upstreams", lambda *a: asked.append("home_upstreams"))
    monkeypatch.setattr(routing, "routing_plugin", lambda *a: asked.append("routing_plugin"))
    assert kong.docs_region(reference, r) == before
    assert asked == []


def test_helm_docs_releases_are_the_emitted_releases(any_case):
    """helm's docs list the releases from releases(objects=False), which skips building the ExternalSecrets: the same
    releases (names, namespaces, charts, order), only without the charts' objects."""
    from compiler.targets import helm
    from compiler.targets.helm import secrets

    for r in any_case.regions:
        full, skipped = helm.releases(any_case, r)
        light, skipped_light = helm.releases(any_case, r, objects=False)
        assert skipped_light == skipped
        bare = lambda rels: [dataclasses.replace(x, local=(), values=None) for x in rels]  # noqa: E731 (kong's values: a closure per call)
        assert bare(full) == bare(light) and all(x.local == () for x in light)
        assert list(secrets.secret_namespaces(r)) == list(secrets.by_namespace(r))


def test_hcl_attrs_block_memo_is_attrs():
    """formats/hcl.attrs_block memoises plain dicts by their marshal form: the text is attrs' for every input, also
    for inputs that are equal in Python but not in HCL (True and 1, 1 and 1.0) and at another level."""
    from compiler.formats import hcl

    hcl._BLOCKS.clear()
    inputs = [{"a": 1}, {"a": True}, {"a": 1.0}, {"a": [1, 2]}, {"a": (1, 2)}, {"a": {"b": "x"}}, {"b": 1, "a": 1},
              {"a": 1, "b": 1}, {"a": hcl.Raw("local.x")}, {"a": None, "tags": {"k": "v", "o": "p"}}]
    for _ in range(2):
        for values in inputs:
            for level in (1, 2):
                assert hcl.attrs_block(values, level) == hcl.attrs(values, level).rstrip("\n"), (values, level)
    assert hcl.attrs_block({"a": True}) != hcl.attrs_block({"a": 1})
    assert len(hcl._BLOCKS) == 2 * (len(inputs) - 1)  # every plain dict at both levels; Raw is not marshallable
