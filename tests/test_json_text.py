"""compiler/formats/json_text.indented writes exactly json.dumps(data, indent=2, sort_keys=True, ensure_ascii=...),
and leaves no reference cycle behind (why it exists: the collector is off while a command runs)."""

from __future__ import annotations

import gc
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compiler.formats.json_text import indented

scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=12))
trees = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)


@settings(max_examples=400, deadline=None)
@given(trees, st.booleans())
def test_same_text_as_json_dumps(data, ensure_ascii):
    assert indented(data, ensure_ascii) == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=ensure_ascii)


@pytest.mark.parametrize("data", [
    {}, [], {"a": {}, "b": [], "c": [[]], "d": [{}]}, {"é": "ü\u2028\n\"\\", "\x00": "\ud800"},
    [math.nan, math.inf, -math.inf, -0.0, 1e300, 5e-324], [True, False, None, 1, -1, 2**80],
    {1: "int key", 2: "b"}, {True: 1}, {None: 1}, {2.5: 1},  # non-str keys: json.dumps's own text
    type("S", (str,), {})("a str subclass"), {"k": type("I", (int,), {})(7)},
])
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_edges(data, ensure_ascii):
    assert indented(data, ensure_ascii) == json.dumps(data, indent=2, sort_keys=True, ensure_ascii=ensure_ascii)


def test_what_json_refuses_it_refuses_alike():
    with pytest.raises(TypeError):
        indented({"a": object()})
    loop: list = []
    loop.append(loop)
    with pytest.raises(ValueError):
        indented(loop)


def test_no_cycle_left_behind():
    doc = {"policy": {"phases": {"hot": {"actions": {"rollover": {"max_age": "1d"}}}, "delete": {"min_age": "30d"}}}}
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(50):
            indented(doc)
        assert gc.collect() == 0
        for _ in range(50):
            json.dumps(doc, indent=2, sort_keys=True)
        assert gc.collect() > 0  # json's own indenting encoder does leave cycles (what this module avoids)
    finally:
        if was:
            gc.enable()
