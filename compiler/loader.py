"""Load YAML keeping a line and column for every node.

PyYAML's composer already records where each node starts; we build plain Python values from the
node graph ourselves so that we can (1) refuse duplicate keys, which PyYAML silently drops,
(2) bound the work an alias-heavy document can cause ("billion laughs"), and (3) record the
position of every key and value by its path in the document.
"""

from __future__ import annotations

import math
import re
from dataclasses import field

from compiler.records import dataclass
from pathlib import Path as FsPath

import yaml

from compiler.errors import Diagnostic, SpecError, dotted

try:  # libyaml's composer is several times faster and keeps the same marks
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - pure-python fallback
    from yaml import SafeLoader as _Loader

MAX_NODES = 200_000  # nodes after alias expansion; the reference platform has ~3,000
MAX_DEPTH = 64
MAX_BYTES = 4 * 1024 * 1024  # the reference is ~25 KB, a 120-region scale test ~0.3 MB: refused before parsing
MAX_INT = 2**53  # every count and size in the schema is far below; beyond it a float cannot hold the value
_BASE60 = re.compile(r"^[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?$")  # YAML 1.1 sexagesimal: 1:30 is 90
_OCTAL11 = re.compile(r"^[-+]?0[0-9_]+$")  # YAML 1.1 octal: 017 is 15
_DEFAULT_TAGS = {yaml.MappingNode: "tag:yaml.org,2002:map", yaml.SequenceNode: "tag:yaml.org,2002:seq"}

_SCALAR_CONSTRUCTORS = yaml.SafeLoader.yaml_constructors
_KEEP_AS_TEXT = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"}


@dataclass
class Document:
    """A loaded spec: plain data plus where each path sits in the file."""

    file: str
    data: dict
    value_pos: dict = field(default_factory=dict)  # path -> (line, col) of the value
    key_pos: dict = field(default_factory=dict)  # path -> (line, col) of the mapping key

    def pos(self, path: tuple, prefer_key: bool = False) -> tuple[int, int]:
        """Best position for a path: the node itself, else its nearest ancestor."""
        path = tuple(path)
        while True:
            table = (self.key_pos, self.value_pos) if prefer_key else (self.value_pos, self.key_pos)
            for t in table:
                if path in t:
                    return t[path]
            if not path:
                return (1, 1)
            path = path[:-1]

    def diag(self, path, code: str, message: str, severity: str = "error", prefer_key=False) -> Diagnostic:
        line, col = self.pos(tuple(path), prefer_key=prefer_key)
        return Diagnostic(self.file, line, col, dotted(path), code, message, severity)


def _mark(node_or_mark) -> tuple[int, int]:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    return (mark.line + 1, mark.column + 1)


class _Builder:
    def __init__(self, doc: Document):
        self.doc = doc
        self.count = 0
        self.scalars = yaml.SafeLoader("")  # only its scalar constructors are used

    def fail(self, node, path, code, message):
        line, col = _mark(node)
        raise SpecError([Diagnostic(self.doc.file, line, col, dotted(path), code, message)])

    def build(self, node, path: tuple, depth: int = 0):
        self.count += 1
        if self.count > MAX_NODES:
            self.fail(node, path, "L006", f"document expands to more than {MAX_NODES:,} nodes "
                      "(alias expansion bomb?); aliases are bounded to keep compiles fast")
        if depth > MAX_DEPTH:
            self.fail(node, path, "L006", f"document nests deeper than {MAX_DEPTH} levels")
        self.doc.value_pos.setdefault(path, _mark(node))
        default_tag = _DEFAULT_TAGS.get(type(node))
        if default_tag is not None and node.tag != default_tag:
            kind = "mapping" if isinstance(node, yaml.MappingNode) else "list"
            self.fail(node, path, "L009", f"a YAML tag on a {kind} ({node.tag!r}) is not supported; remove the tag")
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node, path, depth):
        out: dict = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.fail(key_node, path, "L007", "YAML merge keys (<<) are not supported; "
                          "put shared values in `settings` and override per geo or region")
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, path, "L008", "mapping keys must be plain strings")
            key = key_node.value  # keys stay text: `no:` or `on:` never turn into booleans
            if key in out:
                first = self.doc.key_pos[path + (key,)]
                self.fail(key_node, path + (key,), "L005",
                          f"duplicate key {key!r} (first defined at line {first[0]})")
            self.doc.key_pos[path + (key,)] = _mark(key_node)
            out[key] = self.build(value_node, path + (key,), depth + 1)
        return out

    def _scalar(self, node, path):
        if node.tag in _KEEP_AS_TEXT:
            return node.value
        constructor = _SCALAR_CONSTRUCTORS.get(node.tag)
        if constructor is None:
            self.fail(node, path, "L009", f"unsupported YAML tag {node.tag!r}")
        kind = node.tag.rsplit(":", 1)[-1]
        text = node.value.strip() if isinstance(node.value, str) else node.value
        if kind in ("int", "float") and isinstance(text, str):
            if _BASE60.match(text):
                self.fail(node, path, "L012", f"{text!r} is a YAML 1.1 base-60 number (it would read as "
                          f"{constructor(self.scalars, node)!r}); write the number you mean, or quote it for text")
            if kind == "int" and _OCTAL11.match(text):
                self.fail(node, path, "L012", f"{text!r} is a YAML 1.1 octal number (it would read as "
                          f"{constructor(self.scalars, node)!r}); drop the leading zero, or quote it for text")
        if kind == "int" and isinstance(text, str) and len(text) > 40:  # before int(): no 4,300-digit conversions
            self.fail(node, path, "L013", f"the integer {text[:12]}… ({len(text)} characters) is out of range; numbers "
                      "in the spec are at most 2^53 (each field's own maximum is in docs/reference/schema.md)")
        try:
            value = constructor(self.scalars, node)
        except Exception:  # an explicit tag whose text is not of that type: !!int abc, !!float '', !!bool maybe
            self.fail(node, path, "L011", f"{node.value!r} is not a valid {kind} (explicit tag {node.tag!r}); "
                      f"fix the value or remove the tag")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INT:
            self.fail(node, path, "L013", f"the integer {text if len(str(text)) <= 24 else str(text)[:12] + '…'} "
                      f"({len(str(abs(value)))} digits) is out of range; numbers in the spec are at most 2^53 "
                      f"(each field's own maximum is in docs/reference/schema.md)")
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, path, "L013", f"{node.value!r} is not a finite number; the spec takes finite numbers only")
        return value


_VERSION: list = []  # what a kept load depends on besides the bytes: this file, PyYAML's and Python's versions


def _kept_key(raw: bytes) -> bytes:
    import hashlib
    import sys
    if not _VERSION:
        _VERSION.append(hashlib.sha256(FsPath(__file__).read_bytes()
                                       + f"\0{yaml.__version__}\0{sys.version}".encode()).digest())
    return hashlib.sha256(_VERSION[0] + raw).digest()


def load_text(raw: bytes, file: str) -> Document:
    """Parse spec bytes into a Document, or raise SpecError with positioned diagnostics.

    In the command line's process (compiler/codecache.py installed) a spec loaded twice running with the same
    bytes is kept in the cache directory, its data and positions as marshal keeps them (exactly: the same types,
    values and order), under its bytes and this loader's version, and a later command on the same bytes reads it
    instead of parsing: ~39 M instructions of YAML composing and building for the 12-region reference, ~6 M to
    read (issue 16). The first load of some bytes keeps only their key, so an edit-then-run loop (every run new
    bytes) writes 32 bytes a run, not the document."""
    from compiler import codecache
    if codecache.current() is None or len(raw) > MAX_BYTES:
        return _load_text(raw, file)

    def load():
        doc = _load_text(raw, file)
        return doc.data, doc.value_pos, doc.key_pos
    data, value_pos, key_pos = codecache.kept(file, _kept_key(raw), load)
    return Document(file=file, data=data, value_pos=value_pos, key_pos=key_pos)


def _load_text(raw: bytes, file: str) -> Document:
    if len(raw) > MAX_BYTES:
        raise SpecError([Diagnostic(file, 1, 1, "<root>", "L014",
                                    f"the spec is {len(raw) / 1048576:.1f} MiB; specs are limited to "
                                    f"{MAX_BYTES // 1048576} MiB (the 12-region reference is 25 KB): keep bulk data such as "
                                    "the franchise list in sharding.registry_file")])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError([Diagnostic(file, line, col, "<root>", "L004",
                                    f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})")]) from None
    doc = Document(file=file, data={})
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = _mark(mark) if mark else (1, 1)
        problem = exc.problem or exc.context or "malformed YAML"
        raise SpecError([Diagnostic(file, line, col, "<root>", "L001", f"malformed YAML: {problem}")]) from None
    except yaml.reader.ReaderError as exc:  # a control byte: position it where it is
        before = text[: exc.position]
        line = before.count("\n") + 1
        col = exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise SpecError([Diagnostic(file, line, col, "<root>", "L001",
                                    f"malformed YAML: control character U+{ord(char):04X} is not allowed "
                                    "(remove it, or write it as an escape in a double-quoted string)")]) from None
    except yaml.YAMLError as exc:
        raise SpecError([Diagnostic(file, 1, 1, "<root>", "L001", f"malformed YAML: {exc}")]) from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise SpecError([Diagnostic(file, 1, 1, "<root>", "L002", "the spec is empty")])
    if len(nodes) > 1:
        raise SpecError([Diagnostic(file, *_mark(nodes[1]), "<root>", "L010",
                                    "the spec must be a single YAML document")])
    root = nodes[0]
    if not isinstance(root, yaml.MappingNode):
        kind = "a list" if isinstance(root, yaml.SequenceNode) else "a scalar"
        raise SpecError([Diagnostic(file, *_mark(root), "<root>", "L003",
                                    f"the spec must be a mapping at the top level, not {kind}")])
    doc.data = _Builder(doc).build(root, ())
    return doc


def load_file(path: str | FsPath) -> Document:
    """Read and parse a spec file; a missing file is a positioned error too."""
    p = FsPath(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise SpecError([Diagnostic(str(path), 1, 1, "<root>", "L000",
                                    f"cannot read the spec: {exc.strerror}")]) from None
    return load_text(raw, str(path))
