"""Shared pieces of the data-tier formats (redis.conf, postgresql.conf, pg_hba.conf, pgbouncer.ini, SQL).

Each format has its own module with the escaping filters its templates use:

    compiler/formats/redis_conf.py       redis.conf arguments (Redis' sdssplitargs quoting)
    compiler/formats/postgresql_conf.py  postgresql.conf values (GUC file lexer) and libpq conninfo values
    compiler/formats/pg_hba.py           pg_hba.conf tokens (names quoted, keywords/addresses checked)
    compiler/formats/pgbouncer_ini.py    pgbouncer.ini values and connection strings
    compiler/formats/sql.py              SQL literals/identifiers and psql meta-command words

A value is either written so that the server reads back exactly that value, or refused with a
FormatError that names the value and the reason; nothing is silently altered.
"""

from __future__ import annotations

import re

from compiler.errors import PlatformcError

CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # C0 controls and DEL: never written raw into a line-based format


class FormatError(PlatformcError):
    """A value that cannot be written in a format without changing its meaning (exit 2).

    The emitter re-raises it with the region and file it was rendering (see targets/datastores.py).
    """


def refuse(fmt: str, value, reason: str):
    raise FormatError(f"{value!r} cannot be written in {fmt}: {reason}")


def comment(text) -> str:
    """Text for a `#` comment line: one line, no control characters (a newline would end the comment
    and start a directive). Used by every format here whose comments start with `#`."""
    text = str(text)
    if CONTROL.search(text):
        refuse("a comment", text, "control characters (a newline would start a new line)")
    return text
