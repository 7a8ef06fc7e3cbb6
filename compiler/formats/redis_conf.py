"""redis.conf arguments.

Redis splits the file into lines on `\\n`, skips lines whose first non-blank character is `#`, and
splits each line into arguments with `sdssplitargs`: an argument in double quotes may hold any
byte through the escapes `\\"` `\\\\` `\\n` `\\r` `\\t` `\\a` `\\b` and `\\xHH`. So every string that is
not a plain word is written double-quoted with every byte outside printable ASCII as `\\xHH`: no
value can end the line, start a comment or split into two arguments. The same `sdssplitargs`
parses inline commands on a client connection, which is how the property test reads values back.
"""

from __future__ import annotations

import re

from compiler.formats.conf import refuse

FORMAT = "redis.conf"
_BARE = re.compile(r"^[A-Za-z0-9_./:@*+-]+$")  # a word Redis reads as itself: no quotes, spaces or escapes
_DIRECTIVE = re.compile(r"^[a-z][a-z0-9-]*$")
_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def quote(value: str) -> str:
    """A double-quoted redis.conf argument that reads back as exactly `value` (UTF-8 bytes)."""
    if not isinstance(value, str):
        refuse(FORMAT, value, "only text can be quoted")
    out = ['"']
    for b in value.encode("utf-8"):
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\x{b:02x}")
    out.append('"')
    return "".join(out)


def arg(value) -> str:
    """One argument: yes/no for booleans, digits for integers, a bare word when that is safe, else quoted."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and _BARE.fullmatch(value) and not value.startswith("#"):
        return value
    return quote(value)


def args(values) -> str:
    """Several arguments on one line (`save 900 1`, `bind 127.0.0.1 -::1`)."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        values = [values]
    return " ".join(arg(v) for v in values)


def directive(name: str) -> str:
    """A directive name: lower-case letters, digits and dashes only (it starts the line)."""
    if not isinstance(name, str) or not _DIRECTIVE.fullmatch(name):
        refuse(FORMAT, name, "a directive name is lower-case letters, digits and dashes")
    return name


FILTERS = {"redis_arg": arg, "redis_args": args, "redis_quote": quote, "redis_directive": directive}
