"""The models' validators, prebuilt: their core schemas kept between runs, as Python keeps bytecode.

Every command validates, and building the models' validators is pydantic's schema generation, in Python: about
a quarter of `platformc validate`'s instructions. Its result, the core schema of each model, depends only on the
model sources and on the pydantic, pydantic-core and Python versions. So after a run that built the models, the
schemas are pickled into platformc's cache directory (compiler.cache, never the repository) under a key of
exactly those inputs; the next run finds the file before the first model class is made, lets pydantic defer
every model's build, and hands each model a validator made from the kept schema by pydantic-core when it is
first used. A missing, unreadable or stale file costs only a normal build (and a new file); nothing reads a
file under another key. `tests/test_prebuilt.py` holds the prebuilt validators to the freshly built ones.

What is kept is what validation and serialisation need: each schema without its `metadata` (pydantic's
JSON-Schema hooks, closures that cannot be pickled). The JSON Schema and the docs (`platformc schema`) still
come from a full build: pydantic rebuilds a deferred model whose schema is asked for. The few callables in
a schema that pickle cannot name by module and qualified name (the models' default factories, lambdas) are
written as the model field they belong to and looked up again in the models being loaded.

Trust: the file is read with pickle, so it is only ever read from the user's own cache directory, written
there by platformc itself (atomically: a file per key, renamed into place), exactly like Python's
`__pycache__` or Jinja's bytecode cache beside it.
"""

from __future__ import annotations

import hashlib
import io
import marshal
import os
import pickle
import sys
from pathlib import Path

FORMAT = 1  # bump when what is pickled changes shape
_SOURCES = Path(__file__).resolve().parent


def _key() -> str:
    """The inputs the core schemas are a function of: the model sources, this file, and the library versions."""
    from pydantic.version import VERSION
    from pydantic_core import __version__ as core_version
    h = hashlib.sha256(f"{FORMAT} {sys.version} {VERSION} {core_version}".encode())
    for path in sorted(_SOURCES.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def _path() -> Path:
    from compiler.cache import cache_dir
    return Path(cache_dir()) / f"models-{_key()}.pickle"


PATH = _path()
AVAILABLE = PATH.is_file()
"""Read by the base model's config before any model class exists: defer pydantic's build when it will not be needed."""

CODES = PATH.with_name(PATH.name.replace("models-", "annotations-", 1).replace(".pickle", ".marshal"))
"""The code of the models' annotation texts (compiler/model/base.py reads each text once per class): the same texts
for the same sources and Python, so kept beside the schemas (marshal, as Python's .pyc files) instead of compiled
every run: 122 texts, ~8 M instructions (0.8 %) of `platformc validate`."""
_codes_read = 0


def annotation_codes() -> dict:
    """text -> code, as the last run compiled them; empty when there is no such file (or an unreadable one)."""
    global _codes_read
    try:
        with open(CODES, "rb") as f:
            codes = marshal.loads(f.read())  # one read: marshal.load reads a file piece by piece (~9 M instructions)
    except Exception:  # noqa: BLE001 - missing, truncated: compile as usual
        return {}
    code_type = type(annotation_codes.__code__)
    if type(codes) is not dict or not all(type(k) is str and type(c) is code_type for k, c in codes.items()):
        return {}
    _codes_read = len(codes)
    return codes


def keep_annotation_codes(codes: dict) -> None:
    """Write the codes for the next run when this one compiled any (atomically; a cache that cannot be written is
    not an error)."""
    if len(codes) == _codes_read:
        return
    try:
        CODES.parent.mkdir(parents=True, exist_ok=True)
        tmp = CODES.with_name(f".{CODES.name}.{os.getpid()}")
        tmp.write_bytes(marshal.dumps(codes))
        os.replace(tmp, CODES)
    except (OSError, ValueError):
        return


def models(base: type) -> list[type]:
    """Every model class under `base`."""
    found, stack = [], [base]
    while stack:
        for cls in stack.pop().__subclasses__():
            if cls not in found:
                found.append(cls)
                stack.append(cls)
    return found


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _factories(classes: list[type]) -> dict[str, object]:
    """Each field's default factory, named by its model and field (a lambda has no importable name)."""
    return {f"{_name(cls)}.{field}": info.default_factory for cls in classes
            for field, info in cls.__pydantic_fields__.items() if info.default_factory is not None}


def _without_metadata(schema):
    if isinstance(schema, dict):
        return {k: _without_metadata(v) for k, v in schema.items() if k != "metadata"}
    if isinstance(schema, list):
        return [_without_metadata(v) for v in schema]
    return schema


class _Pickler(pickle.Pickler):
    def __init__(self, file, factories: dict[str, object]):
        super().__init__(file, protocol=5)
        self._ids = {id(f): name for name, f in factories.items()}

    def persistent_id(self, obj):
        return self._ids.get(id(obj)) if callable(obj) else None


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, factories: dict[str, object]):
        super().__init__(file)
        self._factories = factories

    def persistent_load(self, pid):
        return self._factories[pid]  # KeyError: a stale file (the key should have prevented it): rebuild


def dump(classes: list[type]) -> bytes:
    """The built models' core schemas, pickled (raises pickle.PicklingError for a callable with no name)."""
    schemas = {_name(cls): (_without_metadata(cls.__pydantic_core_schema__), _config(cls.__pydantic_core_schema__))
               for cls in classes}
    buf = io.BytesIO()
    _Pickler(buf, _factories(classes)).dump(schemas)
    return buf.getvalue()


def _config(schema: dict) -> dict | None:
    """The model's core config, which pydantic also hands to the validator it builds (not only inside the schema)."""
    model = schema["schema"] if schema.get("type") == "definitions" else schema
    return model.get("config")


def load(data: bytes, classes: list[type]) -> dict[str, tuple]:
    return _Unpickler(io.BytesIO(data), _factories(classes)).load()


class _FromSchema:
    """Stands in for a deferred model's validator or serializer; the first use builds it from the kept schema
    (pydantic-core, in Rust: microseconds) and puts it on the class, where pydantic looks for it."""

    __slots__ = ("_cls", "_attr", "_make", "_schema", "_config")

    def __init__(self, cls, attr, make, schema, config):
        self._cls, self._attr, self._make, self._schema, self._config = cls, attr, make, schema, config

    def __getattr__(self, item):
        if item in _FromSchema.__slots__:  # copied or unpickled without __init__
            raise AttributeError(item)
        real = self._make(self._schema, self._config)
        setattr(self._cls, self._attr, real)
        return getattr(real, item)


def install(base: type) -> None:
    """Give every model its validator: from the kept schemas when there are some, else from pydantic's build,
    kept for the next run. Called once, after the last model class is defined."""
    classes = models(base)
    if AVAILABLE:
        try:
            schemas = load(PATH.read_bytes(), classes)
            from pydantic_core import SchemaSerializer, SchemaValidator
            for cls in classes:
                schema, config = schemas[_name(cls)]
                cls.__pydantic_validator__ = _FromSchema(cls, "__pydantic_validator__", SchemaValidator, schema, config)
                cls.__pydantic_serializer__ = _FromSchema(cls, "__pydantic_serializer__", SchemaSerializer, schema,
                                                          config)
            return
        except Exception:  # noqa: BLE001 - any unreadable file is only a cache miss: build and replace it
            for cls in classes:
                cls.model_rebuild(force=True)
    save(classes)


def save(classes: list[type]) -> bool:
    """Write the kept schemas for the next run; a cache that cannot be written is not an error."""
    try:
        data = dump(classes)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False  # a schema holding an unnamed callable: tests/test_prebuilt.py names it
    try:
        PATH.parent.mkdir(parents=True, exist_ok=True)
        tmp = PATH.with_name(f".{PATH.name}.{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, PATH)
    except OSError:
        return False
    return True
