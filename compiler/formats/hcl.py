"""HCL (Terraform native syntax): string escaping and canonical expressions for templates.

Every value that comes from the spec reaches a .tf file through `quote` (a string literal) or
`expr`/`attrs` (any Python value as an HCL expression), so nothing in the spec can end a string,
open an interpolation or a template directive, or start a new attribute.

The output is already in `terraform fmt` form: `attrs` aligns the `=` of consecutive single-line
attributes exactly as Terraform's formatter does (a multi-line value, a blank line or a comment
line ends an alignment group), lists of scalars stay on one line, objects span lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as _Mapping
from typing import Any, Iterable, Mapping

from compiler.formats.memo import TextMemo
from compiler.records import dataclass

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
INDENT = "  "

_SIMPLE = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_NEEDS_ESCAPE = re.compile(r'["\\$%\x00-\x1f\x7f-\x9f]')


@dataclass(frozen=True)
class Raw:
    """An HCL expression written as is (a reference such as `local.tags` or `module.network.vpc_id`)."""

    text: str


def _escape_char(c: str) -> str:
    if c in _SIMPLE:
        return _SIMPLE[c]
    code = ord(c)
    if code < 0x20 or code == 0x7F or 0x80 <= code < 0xA0:
        return f"\\u{code:04x}"  # control characters never appear raw in a .tf file
    return c


def escape(value: str) -> str:
    """The inside of an HCL quoted string that reads back as exactly `value`.

    `${` and `%{` would start an interpolation or a directive: HCL's own escapes are `$${` and
    `%%{`. A `{` that no later `}` closes is written with the `$`/`%` as `\\u0024`/`\\u0025`
    instead, which Terraform reads the same way; third-party parsers (python-hcl2) only accept
    `$${` when a `}` follows, so this keeps every reader in agreement.
    """
    if not _NEEDS_ESCAPE.search(value):
        return value  # the common case: nothing to escape
    out: list[str] = []
    n = len(value)
    i = 0
    while i < n:
        c = value[i]
        if c in "$%" and i + 1 < n and value[i + 1] == "{":
            closed = "}" in value[i + 2:]
            if closed:
                out.append(c + c + "{")
            else:
                out.append(("\\u0024" if c == "$" else "\\u0025") + "{")
            i += 2
            continue
        out.append(_escape_char(c))
        i += 1
    return "".join(out)


def quote(value: Any) -> str:
    """A complete HCL string literal (the `hcl` template filter)."""
    if not isinstance(value, str):
        value = str(value)
    return '"' + escape(value) + '"'


def key(name: str) -> str:
    """An object key or attribute name: bare when it is an identifier, quoted otherwise."""
    text = _KEYS.get(name)
    if text is None:
        text = name if IDENTIFIER.fullmatch(name) else quote(name)  # fullmatch: `$` alone admits a trailing newline
        if len(_KEYS) < _MEMO_MAX:
            _KEYS[name] = text
    return text


# Each distinct key and string's text, decided once per process (keyed on the exact str): the same few thousand
# attribute names and values recur in every region's files, ~140,000 keys and ~200,000 scalars at 120 regions.
_MEMO_MAX = 100_000
_KEYS: dict[str, str] = {}
_STRINGS: dict[str, str] = {}


def _string(value: str) -> str:
    text = _STRINGS.get(value)
    if text is None:
        text = '"' + escape(value) + '"'
        if len(_STRINGS) < _MEMO_MAX and len(value) <= 1024:
            _STRINGS[value] = text
    return text


def _number(value: float | int) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _scalar(value: Any) -> str | None:
    t = type(value)  # exact types first (the common cases; the same text as the checks below)
    if t is str:
        return _STRINGS.get(value) or _string(value)
    if t is int:
        return repr(value)
    if t is dict or t is list:
        return None
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return _number(value)
    if isinstance(value, str):
        return quote(value)
    return None


def expr(value: Any, level: int = 0) -> str:
    """`value` as an HCL expression whose continuation lines sit at indent `level`."""
    s = _scalar(value)
    if s is not None:
        return s
    pad = INDENT * level
    t = type(value)  # a dict, list or tuple by its exact type first; isinstance for the rest (collections.abc's
    # check, which typing.Mapping's forwards to through two more calls)
    if t is dict or (t is not list and t is not tuple and isinstance(value, _Mapping)):
        if not value:
            return "{}"
        return "{\n" + attrs(value, level + 1) + pad + "}"
    if t is list or t is tuple or isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [_scalar(v) for v in value]
        if all(x is not None for x in items):
            return "[" + ", ".join(items) + "]"
        inner = INDENT * (level + 1)
        return "[\n" + "".join(f"{inner}{expr(v, level + 1)},\n" for v in value) + pad + "]"
    raise TypeError(f"no HCL form for {type(value).__name__}")


def attrs(values: Mapping[str, Any] | Iterable[tuple[str, Any]], level: int = 1) -> str:
    """`name = value` lines at indent `level`, `=` aligned the way `terraform fmt` aligns them.

    A `None` key inserts a blank line (which also ends an alignment group).
    """
    t = type(values)
    items = values.items() if t is dict or (t is not list and t is not tuple and isinstance(values, _Mapping)) else values
    pad = INDENT * level
    out: list[str] = []
    group: list[tuple[str, str]] = []  # consecutive single-line attributes: (key, rendered value)
    width = 0  # the longest key of the group
    for name, value in items:
        if name is None:
            _aligned(out, group, pad, width)
            width = 0
            out.append("\n")
            continue
        t = type(value)  # a string or an int is one line (expr's text, without the call: most attributes)
        if t is str:
            rendered = _STRINGS.get(value) or _string(value)
        elif t is int:
            rendered = repr(value)
        else:
            rendered = expr(value, level)
            if "\n" in rendered:  # a multi-line value stands alone and ends the group
                _aligned(out, group, pad, width)
                width = 0
                out.append(f"{pad}{key(name)} = {rendered}\n")
                continue
        k = _KEYS.get(name) or key(name)
        group.append((k, rendered))
        if len(k) > width:
            width = len(k)
    _aligned(out, group, pad, width)
    return "".join(out)


def _aligned(out: list[str], group: list[tuple[str, str]], pad: str, width: int) -> None:
    """Write a group of single-line attributes with their `=` aligned at `width`, and empty the group."""
    if group:
        out.extend([f"{pad}{k.ljust(width)} = {v}\n" for k, v in group])
        group.clear()


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")


def comment(text: Any) -> str:
    """Text for a `#` comment: one line of printable text whatever the input (a line break would end
    the comment; other control characters have no business in a .tf file)."""
    return _CONTROL.sub(" ", str(text))


def attrs_block(values, level: int = 1) -> str:
    """`attrs` without the final newline, for a template line of its own.

    Memoised for plain dicts by their content (TextMemo; a value marshal cannot write, such as Raw, skips the memo),
    as render.dumped is for YAML: the same blocks recur in every region and, within a region, once per peering (a
    provider's tags, a module's arguments); at 120 regions 9 in 10 of the ~14,000 blocks had been rendered before."""
    if type(values) is dict:
        try:
            key = TextMemo.key((values, level))
        except ValueError:
            pass
        else:
            return _BLOCKS.text(key, lambda: attrs(values, level).rstrip("\n"))
    return attrs(values, level).rstrip("\n")


_BLOCKS = TextMemo(10_000)  # (values, level) -> attrs_block's text


def release_memos() -> None:
    """Forget the per-process memos (keys, strings, blocks): emit calls it between one target's jobs and the next,
    as render.release_memos. They only save time, never change bytes."""
    for memo in (_KEYS, _STRINGS, _BLOCKS):
        memo.clear()


FILTERS = {"hcl": quote, "hcl_comment": comment, "hcl_expr": expr, "hcl_attrs": attrs_block}
