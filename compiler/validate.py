"""Schema validation: pydantic errors become positioned diagnostics with stable codes.

Codes: S001 wrong type or value, S002 unknown key (with a "did you mean"), S003 missing required
field, S004 text does not match the expected pattern, S005 value out of range. A secret field given
anything but a reference is R018 (see rules.py).
"""

from __future__ import annotations

import typing
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from compiler.errors import Diagnostic, dotted
from compiler.model.base import SECRET_REF_PATTERN, Text

TEXT_PATTERN = Text.__metadata__[0].pattern

_RANGE = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short",
          "too_long", "string_too_short", "string_too_long", "multiple_of"}


def _number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.strip() != "" and text.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def _model_of(annotation) -> list[type[BaseModel]]:
    """Models an annotation may hold, looking through Optional, unions, Annotated, dict and list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found = []
    for arg in typing.get_args(annotation):
        found.extend(_model_of(arg))
    return found


def _field_names_at(root: type[BaseModel], data: Any, path: tuple) -> list[str]:
    """Field names allowed in the mapping at `path` (data path) below model `root`."""
    models = [root]
    node = data
    for part in path:
        nxt = []
        for m in models:
            if isinstance(part, str) and part in m.model_fields:
                nxt.extend(_model_of(m.model_fields[part].annotation))
            else:  # a dict key or list index: stay on the container's value models
                nxt.append(m)
        models = nxt
        node = node.get(part) if isinstance(node, dict) else None
    names: set[str] = set()
    for m in models:
        names.update(m.model_fields)
    return sorted(names)


def _data_path(loc: tuple, data: Any) -> tuple[tuple, bool]:
    """Turn a pydantic loc into a path through the data (drop union tags, note key errors)."""
    path: list = []
    node = data
    is_key = False
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if part == "[key]":
            is_key = True
            continue
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            path.append(part)
            node = node[part]
        elif last:
            path.append(part)
        # else: a discriminated-union tag or validator name that is not in the data
    return tuple(path), is_key


def diagnostics_from(exc: ValidationError, model: type[BaseModel], data: Any,
                     locate: Callable[[tuple, bool], tuple[str, int, int, str]]) -> list[Diagnostic]:
    """Translate a ValidationError. `locate(path, prefer_key)` -> (file, line, col, shown path)."""
    out = []
    for err in exc.errors(include_url=False):
        path, is_key = _data_path(tuple(err["loc"]), data)
        kind = err["type"]
        msg = err["msg"]
        prefer_key = is_key
        if kind == "extra_forbidden":
            code, prefer_key = "S002", True
            allowed = _field_names_at(model, data, path[:-1])
            import difflib  # only an unknown key needs it: not imported by every valid run (start-up, issue 16)
            close = difflib.get_close_matches(str(path[-1]), allowed, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed keys: {', '.join(allowed)}"
            msg = f"unknown key {path[-1]!r}{hint}"
        elif kind == "missing":
            code, prefer_key = "S003", True
            msg = f"missing required field {path[-1]!r}"
        elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == SECRET_REF_PATTERN:
            code = "R018"
            msg = ("secret fields take a reference (vault:PATH#KEY, aws-sm:NAME, gcp-sm:NAME, "
                   "azure-kv:VAULT/NAME or env:VAR); plaintext values are refused: put the value in a secret "
                   "manager and write its reference here")
        elif kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == TEXT_PATTERN:
            code = "S004"
            msg = (f"{err['input']!r} is not one line of plain text: at most 200 characters, no line breaks and none of "
                   "` * _ # < > [ ] | \\ ~ (the docs would read them as Markdown); rewrite it without them")
        elif kind == "string_pattern_mismatch":
            code = "S004"
            msg = f"{err['input']!r} does not match the pattern {err['ctx']['pattern']}"
        elif kind in _RANGE:
            code = "S005"
        else:
            code = "S001"
            if "input" in err and not isinstance(err["input"], (dict, list)):
                msg = f"{msg} (got {err['input']!r})"
            given = err.get("input")
            if isinstance(given, str) and _number_text(given) and kind in ("literal_error", "int_type", "float_type"):
                msg = f"{msg}: write {given.strip()} without quotes (quoted, it is text, not a number)"
            elif kind == "string_type" and isinstance(given, (int, float)) and not isinstance(given, bool):
                msg = f"{msg}: write it in quotes, e.g. \"{given}\" (unquoted, YAML reads a number)"
        file, line, col, shown = locate(path, prefer_key)
        out.append(Diagnostic(file, line, col, shown, code, msg))
    return out
