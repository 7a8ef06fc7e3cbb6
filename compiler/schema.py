"""JSON Schema (2020-12) export of the spec models, with partial schemas for the override layers."""

from __future__ import annotations

import copy
import json

from compiler.model import Platform, RegionSettings

SCHEMA_ID = "https://platformc.dev/schemas/platform.schema.json"


def _partial(node):
    """Drop `required` and `default` everywhere and point $refs at the partial definitions."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k in ("required", "default"):
                continue
            if k == "$ref" and isinstance(v, str) and v.startswith("#/$defs/"):
                out[k] = v + "__partial"
            else:
                out[k] = _partial(v)
        return out
    if isinstance(node, list):
        return [_partial(x) for x in node]
    return node


def _point_overrides(node):
    if isinstance(node, dict):
        if node.get("x-settings-override"):
            return {"$ref": "#/$defs/SettingsOverride", "description": node.get("description", "")}
        return {k: _point_overrides(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_point_overrides(x) for x in node]
    return node


def json_schema() -> dict:
    schema = _point_overrides(Platform.model_json_schema(mode="validation"))
    settings = RegionSettings.model_json_schema(mode="validation")
    defs = schema.setdefault("$defs", {})
    for name, body in settings.get("$defs", {}).items():
        defs[f"{name}__partial"] = _partial(body)
    top = _partial({k: v for k, v in settings.items() if k != "$defs"})
    top["title"] = "SettingsOverride"
    top["description"] = ("A partial RegionSettings laid over the layer below: mappings merge key by key, "
                          "scalars and lists replace. Every field is optional here; the merged result "
                          "must be complete.")
    defs["SettingsOverride"] = top
    out = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID}
    out.update(copy.deepcopy(schema))
    return out


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
