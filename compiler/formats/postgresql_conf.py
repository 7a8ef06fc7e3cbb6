"""postgresql.conf values and the libpq connection strings inside them (primary_conninfo).

The GUC file lexer (src/backend/utils/misc/guc-file.l) reads `name = value` per line; `#` starts a
comment outside quotes. A quoted value is `'...'` in which `''` is a quote and a backslash starts
an escape (`\\n` `\\r` `\\t` `\\b` `\\f`, octal `\\ooo`, any other character as itself); a raw newline
cannot appear inside it. So a string value is always quoted with `'` doubled, `\\` doubled and
control characters escaped; numbers, booleans and numbers-with-a-unit are written bare. NUL
cannot be stored in a setting at all and is refused.

libpq conninfo (`host=... user=...`): a value with spaces, quotes or backslashes is single-quoted
with `\\'` and `\\\\` (libpq's own rules); the whole conninfo is then one quoted GUC string.
"""

from __future__ import annotations

import re

from compiler.formats.conf import refuse

FORMAT = "postgresql.conf"
_NAME = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
# Written bare: a number with an optional unit, or a lower-case keyword such as `replica` or `on`.
_BARE = re.compile(r"^(-?[0-9]+(\.[0-9]+)?(B|kB|MB|GB|TB|us|ms|s|min|h|d)?|[a-z_][a-z0-9_]*)$")
_NEEDS_ESCAPE = re.compile(r"[\\'\x00-\x1f\x7f]")
_ESCAPES = {"\\": "\\\\", "'": "''", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def quote(value: str) -> str:
    """A single-quoted GUC string that the server reads back as exactly `value`."""
    if not isinstance(value, str):
        refuse(FORMAT, value, "only text can be quoted")
    if "\0" in value:
        refuse(FORMAT, value, "a setting cannot hold a NUL character")
    if not _NEEDS_ESCAPE.search(value):
        return f"'{value}'"
    out = ["'"]
    for c in value:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\{ord(c):03o}")  # octal escape: the lexer turns it back into the byte
        else:
            out.append(c)
    out.append("'")
    return "".join(out)


def value(v) -> str:
    """A setting's value: on/off, a bare number or number-with-unit or keyword, else a quoted string."""
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, (int, float)):
        return repr(v) if isinstance(v, float) else str(v)
    if isinstance(v, str) and _BARE.fullmatch(v):
        return v
    return quote(v)


def name(n: str) -> str:
    """A parameter name (`work_mem`, `pg_stat_statements.max`)."""
    if not isinstance(n, str) or not _NAME.fullmatch(n):
        refuse(FORMAT, n, "a parameter name is lower-case letters, digits and `_`, with at most one `.`")
    return n


_CONNINFO_KEY = re.compile(r"^[a-z_]+$")


def conninfo_value(v) -> str:
    """One value of a libpq connection string, quoted when libpq would otherwise split or unescape it."""
    v = str(v)
    if "\0" in v:
        refuse("a libpq connection string", v, "NUL cannot be sent to libpq")
    if v and not re.search(r"[\s'\\]", v):
        return v
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def conninfo(pairs) -> str:
    """`key=value ...` from (key, value) pairs, each value quoted for libpq as needed."""
    parts = []
    for k, v in pairs:
        if not _CONNINFO_KEY.fullmatch(k):
            refuse("a libpq connection string", k, "not a connection parameter name")
        parts.append(f"{k}={conninfo_value(v)}")
    return " ".join(parts)


FILTERS = {"pg_value": value, "pg_quote": quote, "pg_name": name, "pg_conninfo": conninfo}
