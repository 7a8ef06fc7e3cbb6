"""`json.dumps(data, indent=2, sort_keys=True, ensure_ascii=...)` for the plain trees the targets build.

json has no C encoder for an indented document (Python 3.11): its Python encoder defines its functions as closures
over each other on every call, a reference cycle per document that only the cyclic garbage collector frees, and
the collector is off while a command runs (compiler/cli.py). Each indented document left ~3 KB behind (600 of them
at 120 regions). This writer makes no cycle and writes the same text; anything but str keys and
str/int/float/bool/None/list/tuple/dict values goes to json.dumps itself.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring, encode_basestring_ascii

_INFINITY = float("inf")


class _Unusual(Exception):
    """A value this writer leaves to json.dumps."""


def indented(data, ensure_ascii: bool = True) -> str:
    """Exactly json.dumps(data, indent=2, sort_keys=True, ensure_ascii=ensure_ascii)."""
    out: list[str] = []
    try:
        _write(data, out, "\n", encode_basestring_ascii if ensure_ascii else encode_basestring)
    except (_Unusual, RecursionError):  # RecursionError: a cycle, which json.dumps reports as such
        return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=ensure_ascii)
    return "".join(out)


def _float(v: float) -> str:
    if v != v:
        return "NaN"
    if v == _INFINITY:
        return "Infinity"
    if v == -_INFINITY:
        return "-Infinity"
    return float.__repr__(v)


def _write(v, out: list, newline: str, enc) -> None:
    # the order of json's own checks: a str subclass is a string, True/False before int, an int subclass an int
    if isinstance(v, str):
        out.append(enc(v))
    elif v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(int.__repr__(v))
    elif isinstance(v, float):
        out.append(_float(v))
    elif isinstance(v, (list, tuple)):
        if not v:
            out.append("[]")
            return
        inner = newline + "  "
        out.append("[")
        for i, item in enumerate(v):
            out.append(inner if i == 0 else "," + inner)
            _write(item, out, inner, enc)
        out.append(newline + "]")
    elif isinstance(v, dict):
        if not v:
            out.append("{}")
            return
        if not all(isinstance(k, str) for k in v):
            raise _Unusual  # json turns numbers, bools and None into key strings (and sorts the raw keys)
        inner = newline + "  "
        out.append("{")
        for i, k in enumerate(sorted(v)):
            out.append((inner if i == 0 else "," + inner) + enc(k) + ": ")
            _write(v[k], out, inner, enc)
        out.append(newline + "}")
    else:
        raise _Unusual
