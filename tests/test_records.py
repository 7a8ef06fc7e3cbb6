"""compiler.records.dataclass: dataclasses.dataclass with eq, hash, repr and order built from the fields instead of
compiled per class (issue 16, start-up). Every class below is made twice, by the standard decorator and by this one,
and the two must behave alike."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import field
from types import MappingProxyType

import pytest

from compiler import records


def _pair(body: dict, **options):
    """The same class body decorated by dataclasses.dataclass and by records.dataclass."""
    made = []
    for deco in (dataclasses.dataclass, records.dataclass):
        ns = dict(body)
        ns["__annotations__"] = dict(body["__annotations__"])
        made.append(deco(type("Thing", (), ns), **options))
    return made


BODY = {"__annotations__": {"name": "str", "n": "int", "tags": "tuple", "note": "str", "extra": "object"},
        "tags": (), "note": field(default="", compare=False), "extra": field(default=None, repr=False, hash=False)}
VALUES = [("a", 1), ("a", 2), ("b", 1), ("a", 1, ("x",)), ("a", 1, (), "other note"), ("a", 1, (), "", [1]),
          ("a", 1, (), "", {"k": 1}), ("a", float("nan")), ("a", 1, (), "", MappingProxyType({}))]


def _outcome(fn):
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the exception is the behaviour compared
        return type(exc).__name__


@pytest.mark.parametrize("options", [{}, {"frozen": True}, {"frozen": True, "slots": True}, {"order": True},
                                     {"frozen": True, "order": True}, {"repr": False}, {"eq": False},
                                     {"frozen": True, "eq": False}])
def test_behaves_as_the_standard_dataclass(options):
    std, ours = _pair(BODY, **options)
    assert [f.name for f in dataclasses.fields(ours)] == [f.name for f in dataclasses.fields(std)]
    assert ours.__match_args__ == std.__match_args__
    assert ("__hash__" in ours.__dict__ and ours.__hash__ is None) == ("__hash__" in std.__dict__ and std.__hash__ is None)
    for a in VALUES:
        x_std, x_ours = std(*a), ours(*a)
        if options.get("repr", True):
            assert repr(x_ours).replace(ours.__qualname__, "T") == repr(x_std).replace(std.__qualname__, "T")
        else:
            assert ours.__repr__ is object.__repr__ and std.__repr__ is object.__repr__
        assert _outcome(lambda: hash(x_ours)) == _outcome(lambda: hash(x_std)) or "eq" in options
        assert (x_ours == x_ours) == (x_std == x_std)  # a NaN field: the same object, equal as the tuples compare
        assert (x_ours == a) == (x_std == a)  # another class: NotImplemented, then identity
        for b in VALUES:
            y_std, y_ours = std(*b), ours(*b)
            assert (x_ours == y_ours) == (x_std == y_std)
            assert (x_ours != y_ours) == (x_std != y_std)
            if options.get("order"):
                for op in ("__lt__", "__le__", "__gt__", "__ge__"):
                    assert _outcome(lambda: getattr(x_ours, op)(y_ours)) == _outcome(lambda: getattr(x_std, op)(y_std))
                    assert getattr(x_ours, op)(a) is NotImplemented and getattr(x_std, op)(a) is NotImplemented
        if options.get("frozen"):
            for change in (lambda x: setattr(x, "n", 5), lambda x: setattr(x, "other", 5), lambda x: delattr(x, "n"),
                           lambda x: delattr(x, "other")):
                assert _frozen_refusal(lambda: change(x_ours)) == _frozen_refusal(lambda: change(x_std))
        assert dataclasses.replace(x_ours, n=7).n == 7


def _frozen_refusal(fn):
    """What a change to a frozen instance does: the exception's type and message, or None."""
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - the exception is the behaviour compared
        return type(exc).__name__, str(exc)
    return None


def test_a_frozen_subclass_refuses_its_fields_and_takes_other_names():
    """A plain subclass of a frozen record: the record's fields are refused (the same error), another name goes to
    the base's __setattr__; the subclass's own frozen fields are refused too."""
    for options in ({"frozen": True}, {"frozen": True, "order": True}):
        std, ours = _pair(BODY, **options)
        for base in (std, ours):
            sub = type("Sub", (base,), {})
            x = sub("a", 1)
            assert _frozen_refusal(lambda: setattr(x, "n", 2)) == ("FrozenInstanceError", "cannot assign to field 'n'")
            assert _frozen_refusal(lambda: delattr(x, "name")) == ("FrozenInstanceError", "cannot delete field 'name'")
            x.free = 3
            assert x.free == 3 and _frozen_refusal(lambda: delattr(x, "free")) is None
        subs = [records.dataclass(type("Sub2", (b,), {"__annotations__": {"more": "int"}, "more": 0}), frozen=True)
                for b in (std, ours)]
        assert [_frozen_refusal(lambda: setattr(s("a", 1), "more", 1)) for s in subs] == \
            [("FrozenInstanceError", "cannot assign to field 'more'")] * 2
    assert dataclasses._frozen_get_del_attr is not records._frozen_get_del_attr  # put back after each class


def test_one_and_no_compared_fields_compare_as_tuples():
    """The generated methods compare and hash a tuple even of one field (a NaN equals itself there) or of none."""
    for body in ({"__annotations__": {"x": "float"}}, {"__annotations__": {}}):
        std, ours = _pair(body, frozen=True)
        args = (math.nan,) if body["__annotations__"] else ()
        assert hash(ours(*args)) == hash(std(*args))
        assert (ours(*args) == ours(*args)) == (std(*args) == std(*args))


def test_a_repr_that_meets_itself_shows_dots():
    std, ours = _pair({"__annotations__": {"items": "list"}})
    x = ours([])
    x.items.append(x)
    y = std([])
    y.items.append(y)
    assert repr(x).replace(ours.__qualname__, "T") == repr(y).replace(std.__qualname__, "T") == "T(items=[...])"


def test_a_class_writing_its_own_methods_gets_the_standard_decorator():
    def __eq__(self, other):
        return True
    std, ours = _pair({"__annotations__": {"x": "int"}, "__eq__": __eq__}, frozen=True)
    assert ours(1) == ours(2) and std(1) == std(2)
    assert (ours.__hash__ is None) == (std.__hash__ is None) and hash(ours(1)) == hash(std(1))
    assert ours.__dataclass_params__.eq == std.__dataclass_params__.eq


def test_the_compiler_classes_use_it():
    """The classes validate imports are made by records.dataclass (the start-up saving is the reason it exists)."""
    from compiler.errors import Diagnostic
    from compiler.ir import Connection, Peer, RegionPlan
    from compiler.merge import Origin
    for cls in (Diagnostic, Connection, Peer, RegionPlan, Origin):
        assert cls.__eq__.__module__ == "compiler.records"
        assert cls.__eq__.__qualname__ == f"{cls.__qualname__}.__eq__"


# ---------------------------------------------------------------- deferred fields (records.deferred, records.Later)

@records.dataclass(frozen=True)
class Deferring:
    name: str
    facts: tuple = records.deferred()
    extra: tuple = records.deferred(default=())


def _counting(value):
    calls = []

    def compute():
        calls.append(1)
        return value
    return records.Later(compute), calls


def test_a_deferred_field_is_computed_once_when_first_read():
    later, calls = _counting(("a", "b"))
    d = Deferring("x", later)
    assert calls == [] and d.extra == ()
    assert d.facts == ("a", "b") and d.facts is d.facts
    assert calls == [1]
    assert d.__dict__["facts"] == ("a", "b")  # the value took the Later's place


def test_a_deferred_field_has_no_default_unless_given_one():
    with pytest.raises(TypeError):
        Deferring("x")  # facts is required
    assert [f.name for f in dataclasses.fields(Deferring)] == ["name", "facts", "extra"]


def test_a_deferred_field_stays_frozen():
    d = Deferring("x", records.Later(lambda: (1,)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.facts = (2,)


def test_eq_hash_repr_and_pickle_see_the_value():
    import copy
    import pickle
    plain = Deferring("x", (1, 2), (3,))
    lazy = Deferring("x", records.Later(lambda: (1, 2)), records.Later(lambda: (3,)))
    assert lazy == plain and hash(lazy) == hash(plain) and repr(lazy) == repr(plain)
    again = pickle.loads(pickle.dumps(Deferring("x", records.Later(lambda: (1, 2)))))
    assert again == Deferring("x", (1, 2)) and again.__dict__["facts"] == (1, 2)
    assert copy.deepcopy(Deferring("x", records.Later(lambda: (5,)))).facts == (5,)


def test_replace_keeps_what_it_does_not_change_deferred_and_shares_one_computation():
    later, calls = _counting((7,))
    d = Deferring("x", later)
    e = records.replace(d, name="y")
    assert calls == [] and e.__dict__["facts"] is later
    assert e.name == "y" and e.facts == (7,) and d.facts == (7,)
    assert calls == [1]  # one computation for both records
    assert records.replace(d, facts=(8,)).facts == (8,)


def test_a_compiled_plan_defers_each_regions_wiring_identities_and_credentials():
    """`validate` reads none of them and `generate --region` one region's (issue 16); what a region's wiring reads of
    the others (their ranges, hosts, Patroni plans) is resolved up front."""
    from compiler.pipeline import compile_file
    from compiler.records import Later
    plan = compile_file("platform.yaml").plan
    deferred = ("wiring", "identities", "secret_entries", "data_access")
    assert all(type(r.__dict__[name]) is Later for r in plan.regions for name in deferred)
    first = plan.regions[0]
    assert first.wiring and first.identities and first.data_access
    assert type(first.secret_entries) is tuple  # its cloud's store entries: none here (the reference uses vault:)
    assert all(type(r.__dict__[name]) is Later for r in plan.regions[1:] for name in deferred)
    # the budgets split by the cost estimate (the reference's budget_split) kept the regions' facts deferred
    assert plan.spec.cost.budget_split == "estimate"


def test_forget_puts_the_later_back_and_the_next_read_computes_the_same_again():
    later, calls = _counting(("a",))
    d = Deferring("x", later)
    records.forget(d)  # nothing read: nothing to forget
    assert d.__dict__["facts"] is later and calls == []
    assert d.facts == ("a",) and calls == [1]
    records.forget(d)
    assert d.__dict__["facts"] is later and "_laters" not in d.__dict__
    assert d == Deferring("x", ("a",)) and calls == [1, 1]  # eq reads it again: computed again, the same


def test_a_released_region_computes_the_same_facts_again():
    """RegionPlan.release (compiler/emit.py calls it once a process is done with a region) frees what the region
    computed on first use; each fact computed again is equal to the first, so what a job reads after a release
    (a region's facts read by another region's job) is the same."""
    from compiler.pipeline import compile_file
    plan = compile_file("platform.yaml").plan
    deferred = ("wiring", "identities", "secret_entries", "data_access")
    for r in plan.regions:
        first = [getattr(r, name) for name in deferred]
        r.connections_from("kong")
        assert "_laters" in r.__dict__ and "_wired_answers" in r.__dict__
        r.release()
        assert all(type(r.__dict__[name]) is records.Later for name in deferred)
        assert "_laters" not in r.__dict__ and "_wired_answers" not in r.__dict__
        again = [getattr(r, name) for name in deferred]
        assert again == first and all(a is not b for a, b in zip(again, first) if a)
