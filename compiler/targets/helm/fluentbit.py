"""Fluent Bit's classic config format (the fluent-bit chart's `config.*` text blocks).

A classic-mode entry is `    Key Value`: the value runs to the end of the line, surrounding blanks
are dropped and `${NAME}` is replaced from the environment. There is no quoting or escaping, so
the only safe treatment of a value is to refuse what would change its meaning: line breaks and
other control characters (a new entry, section or @INCLUDE), `${` (an environment lookup),
leading/trailing blanks (silently dropped) and the empty string.
"""

from __future__ import annotations

from compiler.render import render


class FluentBitValueError(ValueError):
    pass


def fluentbit(value) -> str:
    """Jinja filter: the value as written in a classic config line, or FluentBitValueError."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise FluentBitValueError(f"not a string or integer: {value!r}")
    text = str(value)
    if not text:
        raise FluentBitValueError("empty value")
    if text != text.strip(" \t"):
        raise FluentBitValueError(f"leading or trailing blanks: {text!r}")
    if any(ord(c) < 32 or ord(c) == 127 or c in "\u2028\u2029\x85" for c in text):
        raise FluentBitValueError(f"control character in {text!r}")
    if "${" in text:
        raise FluentBitValueError(f"environment reference in {text!r}")
    return text


FILTERS = {"fluentbit": fluentbit}


def render_conf(template: str, **context) -> str:
    return render("helm", template, filters=FILTERS, **context)


def parse_classic(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """A minimal reader of the classic format (sections of `Key Value` lines), for the tests and
    for a sanity check of what was rendered: [(section, [(key, value), ...]), ...]."""
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        if line.startswith("[") and line.rstrip().endswith("]"):
            sections.append((line.strip()[1:-1], []))
            continue
        key, _, value = line.strip(" \t").partition(" ")
        sections[-1][1].append((key, value.strip(" \t")))
    return sections
