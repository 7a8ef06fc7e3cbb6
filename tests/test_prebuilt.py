"""Issue 16, start-up: the models' validators made from the core schemas kept in the cache (compiler/model/prebuilt.py)
validate, refuse and report exactly as the ones pydantic builds; a missing, corrupt or stale file is only a rebuild."""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import pytest
import yaml
from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import SchemaValidator

import compiler.model as model
from compiler.model import prebuilt
from compiler.model.base import Model

REPO = Path(__file__).resolve().parent.parent
SPECS = sorted(REPO.glob("tests/cases/*/platform.yaml")) + [REPO / "platform.yaml"]


def _broken_specs() -> dict[str, str]:
    """The two-region case with one mistake each, of the kinds the models themselves refuse."""
    text = (REPO / "tests/cases/two-region/platform.yaml").read_text()
    cases = {}
    for name, pattern, value in (
            ("unknown key", r"\nsettings:\n  kubernetes:", "\nsettings:\n  kubernetis:"),
            ("wrong type", r"traffic_share: 60, dr_partner", 'traffic_share: "60", dr_partner'),
            ("bad cpu", r"cpu: [0-9]+m?", "cpu: true"),
            ("bad memory", r"memory: [0-9]+Mi", "memory: 12XB"),
            ("host bits", r"cidr: 10\.21\.0\.0/16", "cidr: 10.21.0.1/16"),
            ("plaintext secret", r'DB_PASSWORD: "vault:[^"]*"', 'DB_PASSWORD: "hunter2"')):
        broken, n = re.subn(pattern, value, text, count=1)
        assert n == 1, name
        cases[name] = broken
    return cases


def test_the_kept_schemas_are_the_built_ones():
    """In this process pydantic built the models (a fresh cache dir): what is pickled and read back is each model's
    schema without pydantic's JSON-Schema hooks, the default factories the very same objects."""
    classes = prebuilt.models(Model)
    assert {c.__name__ for c in classes} >= {"Platform", "RegionSettings"} and len(classes) > 40
    kept = prebuilt.load(prebuilt.dump(classes), classes)
    for cls in classes:
        schema = cls.__pydantic_core_schema__
        assert kept[prebuilt._name(cls)] == (prebuilt._without_metadata(schema), prebuilt._config(schema)), cls


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: str(p.relative_to(REPO)))
def test_a_kept_validator_accepts_as_the_built_one(spec):
    data = yaml.safe_load(spec.read_text())
    classes = prebuilt.models(Model)
    schema, config = prebuilt.load(prebuilt.dump(classes), classes)[prebuilt._name(model.Platform)]
    assert SchemaValidator(schema, config).validate_python(data) == model.Platform.model_validate(data)


@pytest.mark.parametrize("case", sorted(_broken_specs()))
def test_a_kept_validator_refuses_as_the_built_one(case):
    data = yaml.safe_load(_broken_specs()[case])
    classes = prebuilt.models(Model)
    schema, config = prebuilt.load(prebuilt.dump(classes), classes)[prebuilt._name(model.Platform)]
    with pytest.raises(ValidationError) as built:
        model.Platform.model_validate(data)
    with pytest.raises(ValidationError) as kept:
        SchemaValidator(schema, config).validate_python(data)
    assert _errors(kept.value) == _errors(built.value)


def _errors(exc: ValidationError) -> list[dict]:
    """The errors, their context's exceptions by text (an exception equals only itself)."""
    return [{**e, "ctx": {k: repr(v) for k, v in e.get("ctx", {}).items()}} for e in exc.errors(include_url=False)]


def _validate(spec_text: str, cwd: Path, cache: Path, args: tuple = ("validate",)) -> tuple[int, str, str, str]:
    """`platformc validate` (or `args`) in a fresh process with its own cache dir: exit code, stdout, stderr, and
    whether the models were deferred to the kept schemas."""
    (cwd / "platform.yaml").write_text(spec_text)
    code = ("import sys\nfrom compiler.cli import main\nrc = 0\ntry:\n    main(sys.argv[1:])\n"
            "except SystemExit as e:\n    rc = e.code\nfrom compiler.model import prebuilt\n"
            "print('\\0' + str(rc) + ' ' + str(prebuilt.AVAILABLE))")
    env = dict(os.environ, PLATFORMC_CACHE_DIR=str(cache))
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, env=env)
    printed, _, tail = done.stdout.partition("\0")
    rc, available = tail.split()
    return int(rc), printed, done.stderr, available


def test_a_command_reads_the_same_with_and_without_the_kept_file(tmp_path):
    """The first run builds and keeps the schemas, the second uses them: the same answers on every spec of the tests
    and on each kind of schema error, positions and messages included."""
    cache = tmp_path / "cache"
    texts = {str(p.relative_to(REPO)): p.read_text() for p in SPECS} | _broken_specs()
    assert len(texts) >= len(SPECS) + 3
    first = {name: _validate(text, tmp_path, cache) for name, text in texts.items()}
    assert len(list(cache.glob("models-*.pickle"))) == 1
    second = {name: _validate(text, tmp_path, cache) for name, text in texts.items()}
    assert [a for (*_, a) in second.values()] == ["True"] * len(texts)
    assert {n: r[:3] for n, r in second.items()} == {n: r[:3] for n, r in first.items()}
    assert first["platform.yaml"][:2] == (0, "platform.yaml: valid (12 regions, 0 warnings)\n")
    assert first["unknown key"][0] == 2 and "[S002] unknown key 'kubernetis'" in first["unknown key"][2]


def test_show_serialises_the_same_with_the_kept_file(tmp_path):
    """`show` dumps a region's settings with the models' serializers, which come from the kept schemas too."""
    cache, text = tmp_path / "cache", (REPO / "platform.yaml").read_text()
    region = next(iter(yaml.safe_load(text)["regions"]))
    first, second = (_validate(text, tmp_path, cache, ("show", region)) for _ in range(2))
    assert (first[3], second[3]) == ("False", "True")
    assert second[:3] == first[:3] and first[0] == 0 and len(first[1]) > 1000


def test_a_corrupt_file_is_only_a_rebuild(tmp_path):
    cache = tmp_path / "cache"
    good = _validate((REPO / "platform.yaml").read_text(), tmp_path, cache)
    (kept,) = cache.glob("models-*.pickle")
    kept.write_bytes(b"not a pickle")
    assert _validate((REPO / "platform.yaml").read_text(), tmp_path, cache)[:3] == good[:3]
    assert prebuilt.load(kept.read_bytes(), prebuilt.models(Model))  # replaced by a readable file
    kept.write_bytes(kept.read_bytes()[:100])  # truncated
    assert _validate((REPO / "platform.yaml").read_text(), tmp_path, cache)[:3] == good[:3]


def test_the_key_is_of_the_model_sources(tmp_path, monkeypatch):
    """An edit to any model source names another file: a kept file never outlives the models it was made from."""
    for path in prebuilt._SOURCES.glob("*.py"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    monkeypatch.setattr(prebuilt, "_SOURCES", tmp_path)
    before = prebuilt._key()
    services = tmp_path / "services.py"
    services.write_text(services.read_text() + "\n")
    assert prebuilt._key() != before


def test_a_schema_with_an_unnamed_callable_is_not_kept():
    """A validator pickle cannot name (a lambda in a type) is refused at dump, so save() keeps nothing rather than a
    file that cannot be read; the models of today have none (test_the_kept_schemas_are_the_built_ones)."""
    class WithLambda(BaseModel):  # not a Model: it must not join the models prebuilt.models() finds
        x: Annotated[int, AfterValidator(lambda v: v)] = 1

    with pytest.raises((pickle.PicklingError, AttributeError)):
        prebuilt.dump([WithLambda])


def test_the_models_import_no_other_compiler_module():
    """The key hashes compiler/model/ alone: a model that read a constant from elsewhere in the compiler would make
    a kept schema outlive an edit to it."""
    import ast
    for path in prebuilt._SOURCES.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            outside = [n for n in names if n.startswith("compiler") and not n.startswith("compiler.model")]
            assert not outside or path.name == "prebuilt.py" and outside == ["compiler.cache"], (path.name, outside)


def test_the_kept_annotation_codes_are_the_compiled_ones(tmp_path):
    """The annotation texts' code (compiler/model/base.py) is kept beside the schemas: the first run writes it, the
    second reads every text from it and answers the same; each kept code is exactly the compile of its text (with
    base.py's future flags, as _compiled compiles it)."""
    import __future__
    import marshal
    cache = tmp_path / "cache"
    code = ("import compiler.model as m, compiler.model.prebuilt as p, compiler.model.base as b\n"
            "print(p._codes_read, len(b._ANNOTATION_CODE))")
    env = dict(os.environ, PLATFORMC_CACHE_DIR=str(cache))
    runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                           check=True).stdout.split() for _ in range(2)]
    assert runs[0][0] == "0" and runs[1][0] == runs[1][1] == runs[0][1] and int(runs[0][1]) > 50
    (kept,) = cache.glob("annotations-*.marshal")
    assert kept.name.split("-", 1)[1].split(".")[0] == next(cache.glob("models-*.pickle")).name.split("-", 1)[1].split(".")[0]
    for text, compiled in marshal.loads(kept.read_bytes()).items():
        assert compiled == compile(text, "<annotation>", "eval", __future__.annotations.compiler_flag, True), text
    kept.write_bytes(b"junk")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          check=True).stdout.split() == ["0", runs[0][1]]
    assert marshal.loads(kept.read_bytes())  # written again
    assert _validate((REPO / "platform.yaml").read_text(), tmp_path, cache)[:2] == (
        0, "platform.yaml: valid (12 regions, 0 warnings)\n")
