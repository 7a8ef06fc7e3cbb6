"""compiler/docs.py's markdown_table checks each row once (printable, no `|` but the separators) before falling
back to escaping cell by cell: the same text as escaping every cell."""

from __future__ import annotations

from enum import Enum

from compiler.docs import markdown_cell, markdown_table


class Kind(str, Enum):
    A = "a"


def _by_cell(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def test_rows_are_each_cell_escaped():
    rows = [["plain", 1, 2.5, None, Kind.A], ["a|b", "x"], ["two\nlines", "tab\there"], ["", ""], [],
            ["caf\u00e9 \u2192", "\u2028sep"], ["|", "||"], ["trailing |", "ok"], [Kind.A, "a\r\nb"]]
    assert markdown_table(["h1", "h2"], rows) == _by_cell(["h1", "h2"], rows)
