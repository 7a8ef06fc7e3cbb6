"""Kong target judged by upstream references: decK's file schema (jsonschema), Debian's `deck validate`,
and Kong 3.9.3's own entity and plugin schemas (../shared/reference/kong, see its README)."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

from tests.conftest import require_module, require_shared, require_tool
from tests.targets.test_kong import all_files, entities

# Keys of Kong 3.x that decK 1.4.0 (Debian 12, Kong 2.x era) rejects; ../shared/validation/README.md §9.
DECK_14_UNKNOWN_KONG3_KEYS = {"consumer_groups", "instance_name", "ordering", "expression", "priority", "partials",
                              "filter_chains", "_konnect", "custom_entities", "response_buffering", "request_buffering"}
# decK nests child entities under their parent; these keys are decK structure, not Kong fields.
NESTED = {"services": {"routes", "plugins"}, "routes": {"plugins"}, "upstreams": {"targets"},
          "consumers": {"jwt_secrets", "plugins"}, "plugins": set(), "targets": set(), "jwt_secrets": set()}


@pytest.fixture(scope="module")
def kong_reference():
    base = "reference/kong/"
    return {name: json.loads(require_shared(base + f).read_text()) for name, f in
            (("deck", "decK-file.schema.json"), ("entities", "entities-3.9.3.json"), ("plugins", "plugins-3.9.3.json"))}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every region file of both golden cases on disk, for deck."""
    root = tmp_path_factory.mktemp("kong")
    out = []
    for case, plan, region, text, doc in all_files():
        path = root / case / region.name / "kong.yaml"
        path.parent.mkdir(parents=True)
        path.write_text(text)
        out.append(path)
    return out


def test_every_file_validates_against_the_deck_file_schema(kong_reference):
    jsonschema = require_module("jsonschema")
    validator = jsonschema.Draft4Validator(kong_reference["deck"])
    n = 0
    for case, plan, region, text, doc in all_files():
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]
        assert not errors, (case, region.name, errors[:5])
        n += 1
    assert n == 14  # 12 reference regions + 2 two-region regions


def test_the_schema_check_is_not_vacuous(kong_reference):
    jsonschema = require_module("jsonschema")
    validator = jsonschema.Draft4Validator(kong_reference["deck"])
    doc = next(all_files())[4]
    broken = json.loads(json.dumps(doc))
    broken["services"][0]["routes"][0]["strip_pathx"] = False
    broken["upstreams"][0]["healthchecks"]["active"]["healthy"]["interval"] = "5"
    assert len(list(validator.iter_errors(broken))) == 2


def deck_errors(deck: str, path) -> tuple[int, list[str]]:
    res = subprocess.run([deck, "validate", "--no-color", "-s", str(path)], capture_output=True, text=True, timeout=60)
    out = res.stdout + res.stderr
    return res.returncode, [line.strip() for line in out.splitlines() if line.startswith("\t")] or (
        [out.strip()] if res.returncode else [])


def test_deck_validate_accepts_every_file(written):
    deck = require_tool("deck")
    for path in written:
        rc, errors = deck_errors(deck, path)
        tolerated = [e for e in errors if (m := re.search(r"Additional property (\S+) is not allowed", e))
                     and m.group(1) in DECK_14_UNKNOWN_KONG3_KEYS]
        assert rc == 0 or (errors and tolerated == errors), (path, errors)


def test_deck_validate_catches_a_broken_file(written, tmp_path):
    deck = require_tool("deck")
    bad = tmp_path / "kong.yaml"
    bad.write_text(written[0].read_text().replace("  connect_timeout: 10000", "  connect_timeout: ten", 1))
    rc, errors = deck_errors(deck, bad)
    assert rc != 0 and any("connect_timeout" in e for e in errors), errors


# ---------------------------------------------------------------- Kong 3.9 schemas

_PY_TYPES = {"string": str, "boolean": bool, "record": dict, "map": dict, "array": list, "set": list}


def check_field(field: dict, value, where: str, errors: list) -> None:
    """A value against a Kong schema field: type, one_of, bounds, and records/arrays recursively."""
    kind = field["type"]
    if kind in ("integer", "number"):
        ok = not isinstance(value, bool) and (isinstance(value, int) or (kind == "number" and isinstance(value, float)))
    else:
        ok = isinstance(value, _PY_TYPES[kind]) if kind in _PY_TYPES else True
    if not ok:
        errors.append(f"{where}: {value!r} is not a {kind}")
        return
    if "one_of" in field and value not in field["one_of"]:
        errors.append(f"{where}: {value!r} not one of {field['one_of']}")
    if "between" in field and not field["between"][0] <= value <= field["between"][1]:
        errors.append(f"{where}: {value!r} not between {field['between']}")
    if "gt" in field and not value > field["gt"]:
        errors.append(f"{where}: {value!r} not > {field['gt']}")
    if "len_min" in field and len(value) < field["len_min"]:
        errors.append(f"{where}: shorter than {field['len_min']}")
    if "starts_with" in field and not value.startswith(field["starts_with"]):
        errors.append(f"{where}: must start with {field['starts_with']!r}")
    for rule in field.get("match_none", []):
        if rule["pattern"] == "//" and "//" in value:
            errors.append(f"{where}: {rule['err']}")
    if kind == "record":
        check_record(field["fields"], value, where, errors)
    elif kind in ("array", "set"):
        if kind == "set" and len(value) != len({json.dumps(v, sort_keys=True) for v in value}):
            errors.append(f"{where}: duplicate elements in a set")
        for i, v in enumerate(value):
            check_field(field["elements"], v, f"{where}[{i}]", errors)


def check_record(fields: dict, value: dict, where: str, errors: list, shorthands: dict | None = None) -> None:
    for key, v in value.items():
        if key in fields:
            check_field(fields[key], v, f"{where}.{key}", errors)
        elif key in (shorthands or {}):
            check_field(shorthands[key], v, f"{where}.{key}", errors)
        else:
            errors.append(f"{where}: unknown field {key!r}")


def _get(doc: dict, path: str):
    cur = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _matches(value, cond: dict) -> bool:
    if value is None:
        return False
    if "eq" in cond:
        return value == cond["eq"]
    if "match" in cond:
        return re.search(cond["match"], str(value)) is not None
    if "one_of" in cond:
        return value in cond["one_of"]
    if "not_one_of" in cond:
        return value not in cond["not_one_of"]
    if "gt" in cond:
        return value > cond["gt"]
    if "match_any" in cond:
        return any(re.search(pattern, str(value)) for pattern in cond["match_any"]["patterns"])
    if "elements" in cond:
        return all(_matches(v, cond["elements"]) for v in value)
    raise AssertionError(f"unhandled condition {cond}")


def check_entity_checks(checks: list, entity: dict, where: str, errors: list) -> None:
    """Kong's declarative cross-field checks (custom Lua ones cannot be judged here)."""
    for check in checks:
        (kind, rule), = check.items()
        if kind == "at_least_one_of":
            if all(_get(entity, f) is None for f in rule):
                errors.append(f"{where}: needs at least one of {rule}")
        elif kind == "conditional":
            if not _matches(_get(entity, rule["if_field"]), rule["if_match"]):
                continue
            value, then = _get(entity, rule["then_field"]), rule["then_match"]
            if then.get("required") and value is None:
                errors.append(f"{where}: {rule['then_field']} required when {rule['if_field']} matches {rule['if_match']}")
            elif value is not None and "one_of" in then and value not in then["one_of"]:
                errors.append(f"{where}: {rule['then_field']} must be one of {then['one_of']}")
            elif value is not None and "contains" in then and then["contains"] not in value:
                errors.append(f"{where}: {rule['then_field']} must contain {then['contains']}")
            elif value is not None and "len_eq" in then and len(value) != then["len_eq"]:
                errors.append(f"{where}: {rule['then_field']} must have {then['len_eq']} elements")
        elif kind == "distinct":
            values = [_get(entity, f) for f in rule if _get(entity, f) is not None]
            if len(values) != len(set(values)):
                errors.append(f"{where}: {rule} must differ")
        elif kind in ("custom_entity_check", "mutually_required", "mutually_exclusive", "only_one_of"):
            if kind == "mutually_exclusive" and sum(_get(entity, f) is not None for f in rule) > 1:
                errors.append(f"{where}: {rule} are mutually exclusive")
            if kind == "only_one_of" and sum(_get(entity, f) is not None for f in rule) > 1:
                errors.append(f"{where}: only one of {rule}")
        else:
            raise AssertionError(f"unhandled entity check {check}")


def test_every_entity_field_exists_in_kong_3_9(kong_reference):
    schemas = kong_reference["entities"]
    kinds = set()
    for case, plan, region, text, doc in all_files():
        errors: list = []
        for kind, entity, owner in entities(doc):
            kinds.add(kind)
            schema = schemas[kind]
            own = {k: v for k, v in entity.items() if k not in NESTED[kind]}
            if kind == "plugins":
                own.pop("config")  # judged against the plugin's own schema below
            where = f"{case}/{region.name}/{kind}/{entity.get('name') or entity.get('username') or entity.get('target') or entity.get('key')}"
            check_record(schema["fields"], own, where, errors, schema.get("shorthand_fields"))
            check_entity_checks(schema.get("entity_checks", []), own, where, errors)
        assert not errors, errors[:10]
    assert kinds == set(NESTED)  # every kind the target emits was looked at


def _db_less(plugin: dict) -> dict:
    """The plugin schema as DB-less Kong sees it (`when_database_off` overrides, e.g. no `cluster`)."""
    fields = json.loads(json.dumps(plugin["fields"]))
    for path, value in plugin.get("when_database_off", {}).items():
        parts = path.split(".")
        assert parts[0] == "fields"
        target = fields
        for p in parts[1:-2]:
            target = target[p]["fields"]
        target[parts[-2]][parts[-1]] = value
    return fields


def test_every_plugin_is_bundled_and_its_config_matches_kong_3_9(kong_reference):
    schemas = kong_reference["plugins"]
    seen = set()
    for case, plan, region, text, doc in all_files():
        errors: list = []
        for kind, p, owner in (e for e in entities(doc) if e[0] == "plugins"):
            name = p["name"]
            seen.add(name)
            assert name in schemas, f"{name} is not a plugin Kong 3.9 bundles"
            schema = schemas[name]
            where = f"{case}/{region.name}/{owner}/{name}"
            check_record(_db_less(schema), p["config"], where + ".config", errors, schema.get("shorthand_fields"))
            check_entity_checks(schema.get("entity_checks", []), {"config": p["config"]}, where, errors)
            check_entity_checks(schema.get("config_entity_checks", []), p["config"], where, errors)
            for scope in ("consumer", "service", "route"):
                if scope in p and schema["plugin_fields"].get(scope, {}).get("eq", "") is None:
                    errors.append(f"{where}: cannot be scoped to a {scope}")
            if name == "rate-limiting":  # Kong's validate_periods_order (a Lua custom validator)
                limits = [p["config"][k] for k in ("second", "minute", "hour", "day", "month", "year") if k in p["config"]]
                if limits != sorted(limits):
                    errors.append(f"{where}: longer windows must allow at least as much as shorter ones")
        assert not errors, errors[:10]
    assert seen == {"correlation-id", "cors", "jwt", "post-function", "pre-function", "prometheus",
                    "rate-limiting", "request-size-limiting", "request-termination"}


def test_the_kong_schema_checks_are_not_vacuous(kong_reference):
    errors: list = []
    rl = kong_reference["plugins"]["rate-limiting"]
    check_record(_db_less(rl), {"second": 10, "policy": "cluster", "limit_by": "franchise"}, "rl", errors)
    check_record(kong_reference["entities"]["upstreams"]["fields"],
                 {"name": "x", "healthchecks": {"active": {"healthy": {"interval": "5", "sucesses": 3}}}}, "up", errors)
    check_entity_checks(kong_reference["entities"]["upstreams"]["entity_checks"], {"name": "x", "hash_on": "header"}, "up", errors)
    assert len(errors) == 5, errors
