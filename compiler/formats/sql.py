"""SQL literals and identifiers for PostgreSQL, and words in psql meta-commands.

Literals are standard-conforming strings (`'` doubled; backslash is an ordinary character, the
default since PostgreSQL 9.1 and what psql's lexer assumes); identifiers are always double-quoted
(`"` doubled) so a keyword or upper-case name keeps its meaning. NUL cannot be sent, and an
identifier longer than 63 bytes would be silently truncated by the server: both are refused.
psql meta-command arguments (`\\connect franchise_shard_1`) have their own quoting and treat
`=` as a connection string, so only plain lower-case names are accepted there.
"""

from __future__ import annotations

import re

from compiler.formats.conf import refuse

NAMEDATALEN = 63
_PSQL_WORD = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def literal(v) -> str:
    """A SQL value: integers bare, booleans TRUE/FALSE, text as a quoted literal."""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if not isinstance(v, str):
        refuse("SQL", v, "only text, integers and booleans are literals here")
    if "\0" in v:
        refuse("SQL", v, "PostgreSQL text cannot hold NUL")
    return "'" + v.replace("'", "''") + "'"


def ident(v: str) -> str:
    """A double-quoted identifier naming exactly `v`."""
    if not isinstance(v, str) or not v:
        refuse("SQL", v, "an identifier is non-empty text")
    if "\0" in v:
        refuse("SQL", v, "an identifier cannot hold NUL")
    if len(v.encode("utf-8")) > NAMEDATALEN:
        refuse("SQL", v, f"longer than {NAMEDATALEN} bytes: PostgreSQL would truncate it")
    return '"' + v.replace('"', '""') + '"'


def psql_word(v: str) -> str:
    """A database name as a psql meta-command argument (no quoting, no `=`)."""
    if not isinstance(v, str) or not _PSQL_WORD.fullmatch(v):
        refuse("a psql meta-command", v, "only lower-case names (letters, digits, `_`) are written here")
    return v


FILTERS = {"sql_literal": literal, "sql_ident": ident, "psql_word": psql_word}
