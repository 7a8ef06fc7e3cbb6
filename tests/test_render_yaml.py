"""The plain-tree YAML emitter (compiler/render.py) writes exactly PyYAML's bytes: on every YAML document the
targets build for the test cases, and on random trees with awkward strings."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler import render


def _documents(plan) -> list:
    """Every tree the targets hand to the YAML dumper while emitting the plan (all targets, all regions)."""
    from compiler import targets
    seen: list = []
    original = render.yaml_text

    def spy(data, sort_keys=False):
        seen.append((data, sort_keys))
        return original(data, sort_keys)

    render.yaml_text = spy
    render._DUMPED.clear()
    try:
        for mod in targets.select(None):
            for r in plan.regions:
                if hasattr(mod, "emit_region"):
                    mod.emit_region(plan, r)
            if hasattr(mod, "emit_global"):
                mod.emit_global(plan)
    finally:
        render.yaml_text = original
        render._DUMPED.clear()
    return seen


def test_every_generated_document_is_pyyamls_bytes(any_case):
    docs = _documents(any_case)
    assert len(docs) > 100
    fell_back = 0
    for data, sort_keys in docs:
        want = render._pyyaml(data, sort_keys)
        try:
            got = render._emit(data, sort_keys)
        except render._Fallback:
            fell_back += 1
            continue
        assert got == want
    assert fell_back <= len(docs) // 50, f"{fell_back} of {len(docs)} documents fell back to PyYAML"


AWKWARD = ["", " ", "a ", " a", "a  b", "yes", "No", "on", "OFF", "~", "null", "Null", "true", "1", "0x1F", "0o7",
           "017", "1_000", "1e3", "1.5", ".5", "-1", "+1", ".inf", "-.inf", ".nan", "1:20", "2026-12-02",
           "2026-12-02 10:00:00", "<<", "=", "-", "- a", "--- x", "...", "a: b", "a:b", "a #b", "a#b", "#a", "@a",
           "`a", "%a", "!a", "&a", "*a", "|", ">", "'a'", '"a"', "a'b", 'a"b', "[a]", "{a}", "a,b", "a, b", "?", "? a",
           ":a", "a:", "http://x:80/y", "caf\u00e9", "\u00e9t\u00e9", "\u2028", "a\tb", "\x07", "a\\b",
           "line\n", "line", "two\nlines\n", "two\nlines", "\nlead", "trail\n\n", "x\n\n\ny\n", "sp \nx\n", "\tx\ny",
           "  indented\nblock\n", "a" * 300, "word " * 150, "{{ jinja }}", "$(VAR)", "${VAR}", "0", "00", "-0", "+",
           "Y", "n", "y", "~a", "a~", "(a)", "/a/b", "_x", "a=b", "a;b", "a^b"]

scalars = st.one_of(st.sampled_from(AWKWARD), st.text(alphabet=string.printable + "\u00e9\u00a0\u2028\u0085", max_size=30),
                    st.integers(-10**20, 10**20), st.booleans(), st.none(),
                    st.floats(allow_nan=True, allow_infinity=True))
keys = st.one_of(st.sampled_from(AWKWARD), st.text(alphabet=string.ascii_letters + string.digits + " -_.:/#'\"", max_size=20))
trees = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                     st.dictionaries(keys, kids, max_size=4)), max_leaves=25)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.dictionaries(keys, trees, min_size=1, max_size=5), st.lists(trees, min_size=1, max_size=5)),
       st.booleans())
def test_random_trees_are_pyyamls_bytes(tree, sort_keys):
    want = render._pyyaml(tree, sort_keys) if not sort_keys or _sortable(tree) else None
    try:
        got = render._emit(tree, sort_keys)
    except render._Fallback:
        return
    assert got == want


def _sortable(tree) -> bool:
    try:
        render._pyyaml(tree, True)
        return True
    except TypeError:
        return False


@pytest.mark.parametrize("value", AWKWARD)
def test_awkward_strings_as_values_keys_and_items(value):
    for tree in ({"k": value}, {value: 1}, [value], {"a": {"b": [value, {"c": value}]}}, [[value]]):
        try:
            got = render._emit(tree, False)
        except render._Fallback:
            continue
        assert got == render._pyyaml(tree, False), tree


def test_dump_yaml_is_pyyaml_either_way():
    tree = {"a": [1, 2.5, None, True, "x\ny\n"], "b": {}, "c": [], "d": {"e": "yes"}}
    assert render.dump_yaml(tree, header="# h\n") == "# h\n" + render._pyyaml(tree, False)
    assert render.dump_yaml_all([tree, [tree]]) == "---\n" + render._pyyaml(tree, False) + "---\n" + render._pyyaml([tree], False)


def _parts_emit(tree, sort_keys, keys=None):
    """_emit with the parts memo on, as dumped() (keys None) or dump_yaml_parts(keys) turn it on."""
    if keys is None:
        render._items_on = True
    else:
        render._kids_on, render._kid_keys = True, keys
    try:
        return render._emit(tree, sort_keys)
    finally:
        render._items_on = render._kids_on = False
        render._kid_keys = None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.dictionaries(keys, trees, min_size=1, max_size=4), st.lists(trees, min_size=1, max_size=3)),
                min_size=1, max_size=4), st.booleans())
def test_parts_memo_writes_pyyamls_bytes_across_documents(docs, sort_keys):
    """The parts memo is kept from one document to the next (as across a target's documents): every document, and
    the same document again (its parts all remembered), is still PyYAML's bytes."""
    render._PARTS.clear()
    try:
        for tree in docs + docs + [{"wrap": docs}, [docs]]:
            want = render._pyyaml(tree, sort_keys) if not sort_keys or _sortable(tree) else None
            for keys in (None, frozenset(["wrap", "k", "a"])):
                try:
                    got = _parts_emit(tree, sort_keys, keys)
                except render._Fallback:
                    continue
                assert got == want, tree
    finally:
        render._PARTS.clear()


def test_parts_memo_tells_an_item_from_a_value_and_indentations_apart():
    """The same mapping as a sequence item (after `- `), as a mapping's value and at other indentations: a text kept
    for one is never served for another (the key holds the indentation and whether a dash leads)."""
    part = {"ipBlock": {"cidr": "10.0.0.0/16"}, "ports": [{"protocol": "TCP", "port": 5432}]}
    docs = [
        {"spec": {"egress": [{"to": [part], "ports": [part]}], "x": part}},
        {"spec": {"egress": [part, {"to": [part]}]}},
        [part, {"a": part}, [part]],
        {"egress": [part], "same": {"egress": [part]}},
        {"a": [{"b": part, "c": [part]}], "d": {"e": [{"b": part, "c": [part]}]}},
    ]
    render._PARTS.clear()
    try:
        for _ in range(2):
            for tree in docs:
                assert _parts_emit(tree, False) == render._pyyaml(tree, False)
                assert _parts_emit(tree, False, frozenset(["a", "b", "c", "d", "e", "spec", "x"])) == render._pyyaml(tree, False)
        assert render._PARTS  # the memo was used
    finally:
        render._PARTS.clear()


def test_dumped_and_dump_yaml_parts_are_dump_yaml():
    rule = {"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}], "ports": [{"protocol": "TCP", "port": 443}]}
    docs = [{"kind": "NetworkPolicy", "spec": {"egress": [rule, dict(rule, ports=[])], "ingress": [rule]}},
            {"kind": "NetworkPolicy", "spec": {"egress": [rule], "ingress": []}}]
    render._DUMPED.clear()
    for d in docs + docs:
        assert render.dumped(d) == render.dump_yaml(d)
    up = {"healthchecks": {"active": {"type": "https", "healthy": {"interval": 5}}}, "tags": ["a", "b"]}
    doc = {"upstreams": [dict(up, name=f"u{i}") for i in range(4)], "healthchecks": up["healthchecks"]}
    assert render.dump_yaml_parts(doc, "# h\n", frozenset(["healthchecks"])) == render.dump_yaml(doc, header="# h\n")
    assert not render._PARTS  # forgotten after the document
    assert not (render._items_on or render._kids_on) and render._kid_keys is None


MULTILINE = st.text(alphabet="ab #:-|>'\"\n\t\r\u00e9{}", min_size=1, max_size=40).filter(lambda s: "\n" in s)


@settings(max_examples=1500, deadline=None)
@given(MULTILINE)
def test_literal_blocks_written_without_pyyaml_are_pyyamls(s):
    """_plain_literal's strings are written as the literal block libyaml writes (header and lines, re-indented where
    used), wherever they sit; the others still go through PyYAML."""
    render._VALUES.clear()
    try:
        text = render._value_text(s)
    except render._Fallback:
        return
    if render._plain_literal(s):
        assert text[0] in ("|", "|-")
    for tree in ({"k": s}, [s], {"a": [{"b": s, "c": [s]}]}):
        assert render._emit(tree, False) == render._pyyaml(tree, False), tree


@pytest.mark.parametrize("value", ["a\nb", "a\nb\n", "a\n\nb\n", "[X]\n    Name y\n", "a\n  b\n", "a\nb\n\n", " a\nb",
                                   "\na", "a \nb", "a\n \nb", "a\nb ", "a\n\tb", "a\r\nb", "caf\u00e9\nb", "a\n#b\n- c\n",
                                   "---\nx\n", "a\n...\n", "x: y\nz\n"])
def test_literal_block_edges(value):
    render._VALUES.clear()
    for tree in ({"k": value}, [value], {"a": {"b": [value]}}):
        try:
            got = render._emit(tree, False)
        except render._Fallback:
            continue
        assert got == render._pyyaml(tree, False), tree
