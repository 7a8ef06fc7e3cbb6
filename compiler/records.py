"""`dataclass`: the standard `dataclasses.dataclass`, with a class's comparison, hash and repr built from its fields
instead of generated as source text.

The standard decorator writes every class's __eq__, __hash__, __repr__ (and with `order` its four comparisons) as
Python source and compiles it, one exec per method: for the ~30 classes `platformc validate` imports that was ~55 M
instructions of every start-up (issue 16). Here they are closures over each class's field names, with the same
results: the fields compared, hashed and shown are the ones dataclasses picks (`compare`, `hash`, `repr`), taken as a
tuple in field order; another class compares NotImplemented; a frozen class with eq hashes that tuple and a mutable
one is unhashable; a repr that meets itself again shows `...`. A frozen class's __setattr__/__delattr__ are closures
too (_frozen_get_del_attr). __init__, fields(), replace() and __match_args__ are dataclasses' own. A class that writes
any of the compared, hashed or shown methods itself, or asks for unsafe_hash, gets the standard decorator unchanged.
"""

from __future__ import annotations

import dataclasses
import sys
from operator import attrgetter
from reprlib import recursive_repr

_OWN = ("__eq__", "__hash__", "__repr__", "__lt__", "__le__", "__gt__", "__ge__")


def _values(names: list[str]):
    """obj -> the tuple of its attributes `names` (a tuple even for one name or none, as the generated methods build)."""
    if len(names) > 1:
        return attrgetter(*names)
    if names:
        get = attrgetter(names[0])
        return lambda obj: (get(obj),)
    return lambda obj: ()


def _method(cls, fn):
    fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
    setattr(cls, fn.__name__, fn)


def _add_repr(cls, names: list[str]) -> None:
    @recursive_repr()
    def __repr__(self):
        return self.__class__.__qualname__ + "(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")"
    _method(cls, __repr__)


def _add_eq(cls, key) -> None:
    def __eq__(self, other):
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented
    _method(cls, __eq__)


def _add_hash(cls, key) -> None:
    def __hash__(self):
        return hash(key(self))
    _method(cls, __hash__)


def _add_order(cls, key) -> None:
    def __lt__(self, other):
        if other.__class__ is self.__class__:
            return key(self) < key(other)
        return NotImplemented

    def __le__(self, other):
        if other.__class__ is self.__class__:
            return key(self) <= key(other)
        return NotImplemented

    def __gt__(self, other):
        if other.__class__ is self.__class__:
            return key(self) > key(other)
        return NotImplemented

    def __ge__(self, other):
        if other.__class__ is self.__class__:
            return key(self) >= key(other)
        return NotImplemented
    for fn in (__lt__, __le__, __gt__, __ge__):
        _method(cls, fn)


def _frozen_get_del_attr(cls, fields, globals):
    """dataclasses' own of Python 3.11/3.12, as closures: a frozen class's __setattr__ and __delattr__ refuse its fields
    (and any name on an instance of exactly this class) with the same FrozenInstanceError; other names of a subclass go
    to the base class's method. The standard one compiles both from source: ~1.5 M instructions per frozen class."""
    names = tuple(f.name for f in fields)

    def __setattr__(self, name, value):
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self, name):
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)
    return __setattr__, __delattr__


# Where dataclasses makes these two by `_frozen_get_del_attr(cls, fields, globals)` (3.11 and 3.12; 3.13 builds all
# methods in one compile with another signature), ours is put in its place for the one call that decorates a frozen
# class of ours, and the standard one put back right after: no other dataclass in the process ever sees it.
_SWAP_FROZEN = sys.version_info[:2] in ((3, 11), (3, 12)) and hasattr(dataclasses, "_frozen_get_del_attr")


def _standard(cls, frozen: bool, **options):
    if not (frozen and _SWAP_FROZEN):
        return dataclasses.dataclass(cls, frozen=frozen, **options)
    standard = dataclasses._frozen_get_del_attr
    dataclasses._frozen_get_del_attr = _frozen_get_del_attr
    try:
        return dataclasses.dataclass(cls, frozen=True, **options)
    finally:
        dataclasses._frozen_get_del_attr = standard


def dataclass(cls=None, /, *, repr: bool = True, eq: bool = True, order: bool = False, unsafe_hash: bool = False,
              frozen: bool = False, **options):
    """As dataclasses.dataclass (same arguments and meaning)."""
    def wrap(cls):
        if unsafe_hash or (order and not eq) or any(name in cls.__dict__ for name in _OWN):
            return dataclasses.dataclass(cls, repr=repr, eq=eq, order=order, unsafe_hash=unsafe_hash, frozen=frozen,
                                         **options)
        cls = _standard(cls, frozen, repr=False, eq=False, order=False, **options)
        fields = dataclasses.fields(cls)
        if repr:
            _add_repr(cls, [f.name for f in fields if f.repr])
        if eq:
            key = _values([f.name for f in fields if f.compare])
            _add_eq(cls, key)
            if frozen:  # as dataclasses: a frozen class with eq hashes its fields; a mutable one is unhashable
                _add_hash(cls, _values([f.name for f in fields if (f.compare if f.hash is None else f.hash)]))
            else:
                cls.__hash__ = None
        if order:
            _add_order(cls, key)
        return cls
    return wrap if cls is None else wrap(cls)


_NO_DEFAULT = object()


class Later:
    """A field's value, computed when first read (see `deferred`). compute() runs once, however many records hold
    this Later (a record copied by `replace` below shares it), until `forget` drops the value: the next read then
    computes it again, the same (a compute is a pure function of the plan it closes over). Pickled or copied, a Later
    is its value."""

    __slots__ = ("_compute", "_value")

    def __init__(self, compute):
        self._compute = compute

    def get(self):
        try:
            return self._value
        except AttributeError:
            self._value = self._compute()
            return self._value

    def forget(self) -> None:
        try:
            del self._value
        except AttributeError:
            pass

    def __reduce__(self):
        return _value_of, (self.get(),)


def _value_of(value):
    return value


class deferred:
    """A dataclass field that may be given a `Later`: a frozen record's fact that only some commands read, computed
    the first time it is read and kept in its place. Reading it, comparing, hashing, showing or pickling the record
    all see the value; a field given a plain value is read as any other. `name: T = deferred()` has no default,
    `deferred(default=x)` defaults to x. `forget(record)` puts the Laters back, their values dropped.

    Why: a region's wiring, identities and credentials are most of resolving a region (~15 of 18 ms at 12 regions),
    and `platformc validate` or `generate --region` reads them for one region or none (issue 16)."""

    def __init__(self, default=_NO_DEFAULT):
        self.default = default

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, owner=None):
        if obj is None:  # dataclasses asks the class for the field's default: none unless one was given
            if self.default is _NO_DEFAULT:
                raise AttributeError(self.name)
            return self.default
        state = obj.__dict__
        value = state[self.name]
        if value.__class__ is Later:
            # the Later is kept aside (not a field: eq, hash, repr and replace() ignore it) for forget()
            later = value
            value = state[self.name] = later.get()
            kept = state.get(_LATERS)
            if kept is None:
                kept = state[_LATERS] = {}
            kept[self.name] = later
        return value

    def __set__(self, obj, value):
        # reached only through object.__setattr__ (the dataclass's __init__): a frozen record's own __setattr__ refuses
        obj.__dict__[self.name] = value


_LATERS = "_laters"


def forget(obj) -> None:
    """Put back each deferred field of `obj` that was read, its value dropped: memory a run that is done with the
    record gets back (a later read computes the value again)."""
    for name, later in obj.__dict__.pop(_LATERS, {}).items():
        later.forget()
        obj.__dict__[name] = later


def replace(obj, /, **changes):
    """dataclasses.replace, leaving the deferred fields not changed still deferred (the standard one reads every
    field, so it would compute them). Only for a record whose every field is an __init__ argument."""
    values = {f.name: obj.__dict__[f.name] for f in dataclasses.fields(obj)}
    values.update(changes)
    return obj.__class__(**values)


class Columns:
    """A read-only sequence of records kept as columns (arrays of numbers, indexes into tuples of names), each record
    made when it is read: a subclass gives __len__, __iter__, row(i) and NOUN. Equal to a sequence of the same class,
    or to a tuple, with the same records in the same order; hashed and shown by them."""

    __slots__ = ()
    NOUN = "records"

    def row(self, i: int):
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, slice):
            return tuple(self)[i]
        return self.row(i)

    def __eq__(self, other):
        if isinstance(other, (type(self), tuple)):
            return len(self) == len(other) and tuple(self) == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} {self.NOUN})"
