"""pgbouncer.ini values and [databases] connection strings.

PgBouncer's ini parser (libusual cfparser) reads `key = value` where the key is letters, digits
and `_.-*`, and the value is the rest of the line with blanks trimmed at both ends; `;` and `#`
start a comment only at the start of a line. A value has no quoting or escapes, so a value with a
line break or with blanks at either end cannot be written and is refused; anything else (`#`,
`;`, `=`, quotes) is read literally.

A [databases] entry's value is a connection string `key=value ...` parsed by PgBouncer itself:
a value is single-quoted with `''` for a quote when it holds blanks or quotes (PgBouncer's
cstr_unquote_value).
"""

from __future__ import annotations

import re

from compiler.formats.conf import refuse

FORMAT = "pgbouncer.ini"
_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")  # `*` (the fallback database) is never generated
_CONNSTR_KEY = re.compile(r"^[a-z_]+$")
RESERVED_DATABASES = {"pgbouncer"}  # the admin console
_C_SPACE = " \t\n\v\f\r"  # what C's isspace() trims (PgBouncer runs in the C locale)


def value(v) -> str:
    """A setting's value, verbatim: integers as digits, text unless it cannot survive the parser."""
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if not isinstance(v, str):
        refuse(FORMAT, v, "only text and integers are settings")
    if any(c in v for c in "\n\r\0"):
        refuse(FORMAT, v, "a line break or NUL would end the value and start a new directive")
    if v != v.strip(_C_SPACE):
        refuse(FORMAT, v, "blanks at either end are trimmed by PgBouncer")
    return v


def key(k: str) -> str:
    """A setting or database name."""
    if not isinstance(k, str) or not _KEY.fullmatch(k):
        refuse(FORMAT, k, "a key is letters, digits and `_.-` only")
    if k in RESERVED_DATABASES:
        refuse(FORMAT, k, "the name is reserved by PgBouncer")
    return k


def connstr_value(v) -> str:
    """One value inside a connection string, single-quoted when it holds blanks, quotes or `=`."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str) or not v:
        refuse(FORMAT, v, "a connection-string value is non-empty text (PgBouncer refuses empty values)")
    if any(c in v for c in "\n\r\0"):
        refuse(FORMAT, v, "a line break or NUL would end the value and start a new directive")
    if not re.search(r"[\s'=]", v):
        return v
    return "'" + v.replace("'", "''") + "'"


def connstr(pairs) -> str:
    """`key=value ...` from (key, value) pairs."""
    parts = []
    for k, v in pairs:
        if not _CONNSTR_KEY.fullmatch(k):
            refuse(FORMAT, k, "not a connection parameter name")
        parts.append(f"{k}={connstr_value(v)}")
    return " ".join(parts)


def listing(values) -> str:
    """A comma-separated list setting (`ignore_startup_parameters`); items cannot hold commas."""
    items = [value(v) for v in values]
    for i in items:
        if "," in i or not i:
            refuse(FORMAT, i, "a list item cannot be empty or hold a comma")
    return ",".join(items)


FILTERS = {"ini_value": value, "ini_key": key, "ini_connstr": connstr, "ini_list": listing}
