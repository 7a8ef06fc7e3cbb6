"""Reading python-hcl2 (8) output in the tests: it keeps string literals' quotes, labels included."""

from __future__ import annotations


def unquote(v):
    """A string literal without its quotes; anything else as it is."""
    return v[1:-1] if isinstance(v, str) and len(v) >= 2 and v[0] == v[-1] == '"' else v


def resources(doc: dict, rtype: str) -> dict:
    """name -> body of every `resource "<rtype>" "<name>"` block of a parsed file."""
    out = {}
    for entry in doc.get("resource", []):
        for label, named in entry.items():
            if unquote(label) == rtype:
                out.update({unquote(name): body for name, body in named.items()})
    return out
