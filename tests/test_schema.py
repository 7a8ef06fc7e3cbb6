"""The JSON Schema is generated from the models, committed, and checks a spec without the compiler."""

import copy
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from compiler.docs import _models_below
from compiler.model import Platform, RegionSettings
from compiler.schema import schema_text

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas/platform.schema.json"


@pytest.fixture(scope="module")
def validator():
    import json
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_matches_the_models():
    assert SCHEMA.read_text() == schema_text(), "schemas/platform.schema.json is stale: run `make schema`"


def test_spec_points_editors_at_the_schema():
    first = (REPO / "platform.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=schemas/platform.schema.json"


@pytest.mark.parametrize("case", ["platform.yaml", "tests/cases/two-region/platform.yaml"])
def test_specs_validate_with_jsonschema_alone(validator, case):
    assert list(validator.iter_errors(yaml.safe_load((REPO / case).read_text()))) == []


def test_jsonschema_catches_typos_in_overrides_and_plaintext_secrets(validator):
    spec = yaml.safe_load((REPO / "platform.yaml").read_text())
    bad = copy.deepcopy(spec)
    bad["regions"]["us-east-1"]["settings"] = {"kubernetes": {"max_nodse": 10}}
    assert any("max_nodse" in e.message for e in validator.iter_errors(bad))
    bad = copy.deepcopy(spec)
    bad["settings"]["datastores"]["redis"]["password"] = "hunter2"
    assert list(validator.iter_errors(bad))


def test_every_field_is_described():
    missing = [f"{m.__name__}.{name}" for m in set(_models_below(Platform)) | set(_models_below(RegionSettings))
               for name, f in m.model_fields.items() if not (f.description or "").strip()]
    assert missing == []


def test_every_model_forbids_unknown_keys():
    for m in set(_models_below(Platform)) | set(_models_below(RegionSettings)):
        assert m.model_config.get("extra") == "forbid", m.__name__
