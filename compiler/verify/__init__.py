"""`platformc verify [DIR]`: prove, from the generated files alone, that every connection is open end to end.

The list of paths comes from DIR/connections/<region>.json (the connections target); everything else is
read from the other files of the tree exactly as they are on disk: Kubernetes manifests, Kong's decK
file, Terraform, the Ansible inventories and the data tier's files. It never reads the spec or the IR,
so a hand edit or a template mistake in any layer shows up here.

A layer checker is a module in this package with

    LAYERS = ("networkpolicy-egress", ...)      # the connection layers it proves (see compiler.ir.Connection)
    def check(tree: Tree, region: str, connections: list[Conn]) -> Iterable[Result]

Each Result is one (connection, layer) pair checked, or one object-level check (connection id ""), with
the broken links found. Output: one line per broken link, `file:line: [layer] connection: message`, then
`N connections x M layers checked, K broken`; exit 1 when K > 0.
"""

from __future__ import annotations

import functools
import importlib
import json
import re
import time
from dataclasses import field
from functools import cached_property
from pathlib import Path
from typing import Iterable

import yaml

from compiler.records import dataclass

CONNECTIONS_DIR = "connections"
FORMAT = 1

# Layer checkers, in report order (module path -> imported lazily).
CHECKERS: tuple[str, ...] = (
    "compiler.verify.cluster",
    "compiler.verify.infra",
    "compiler.verify.hosts",
    "compiler.verify.identity",
    "compiler.verify.interregion",
    "compiler.verify.redis_users",
)


@dataclass(frozen=True)
class Broken:
    file: str  # relative to the tree
    line: int  # 1-based; 0 when the file (or the object) is missing altogether
    layer: str
    connection: str  # a connection id, or an object-level subject ("Deployment booking/booking")
    message: str

    def format(self) -> str:
        return f"{self.file}:{self.line}: [{self.layer}] {self.connection}: {self.message}"


@dataclass
class Result:
    layer: str
    connection: str = ""  # "" for an object-level check (Secret references, HPA targets ...)
    broken: list[Broken] = field(default_factory=list)


@dataclass(frozen=True)
class Peer:
    name: str
    kind: str
    namespace: str = ""
    labels: dict = field(default_factory=dict)
    host_group: str = ""
    hosts: tuple = ()
    cidrs: tuple = ()


@dataclass(frozen=True)
class Conn:
    """One connection as connections/<region>.yaml states it (see compiler.ir.Connection)."""

    id: str
    purpose: str
    source: Peer
    dest: Peer
    address: str
    port: int
    dest_port: int
    protocol: str
    app_protocol: str
    tls: str
    layers: tuple
    database: str = ""
    user: str = ""
    line: int = 0  # where the entry starts in the connections file


class _LineLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """Keeps each mapping's start line as `__line__` (1-based)."""


def _construct_mapping(loader, node, deep=False):
    mapping = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)

_STR, _INT, _BOOL, _NULL = ("tag:yaml.org,2002:" + t for t in ("str", "int", "bool", "null"))
_BOOLS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
_MAPPING, _SEQUENCE, _SCALAR = yaml.MappingNode, yaml.SequenceNode, yaml.ScalarNode  # the C composer makes these


def _value(node, loader, line_offset: int):
    """A composed node as Python data, as SafeLoader would build it, with `__line__` on every mapping.

    The C parser composes the nodes and resolves their tags; building the values here rather than through
    PyYAML's generic constructor is what keeps verify's YAML reading fast (most of its time)."""
    cls = node.__class__
    if cls is _MAPPING:
        out = {}
        for k, v in node.value:  # a plain string (most keys and values) is taken here, without a call
            out[k.value if k.__class__ is _SCALAR and k.tag == _STR else _value(k, loader, line_offset)] = \
                v.value if v.__class__ is _SCALAR and v.tag == _STR else _value(v, loader, line_offset)
        out["__line__"] = node.start_mark.line + 1 + line_offset
        return out
    if cls is _SEQUENCE:
        return [v.value if v.__class__ is _SCALAR and v.tag == _STR else _value(v, loader, line_offset)
                for v in node.value]
    tag = node.tag
    if tag == _STR:
        return node.value
    if tag == _INT and node.value.isdigit():
        return int(node.value)
    if tag == _BOOL:
        return _BOOLS[node.value.lower()]
    if tag == _NULL:
        return None
    return loader.construct_object(node, deep=True)  # floats, odd ints, timestamps, binary: the slow path


# The C composer asks the resolver about every node, three Python calls each: descend_resolver and ascend_resolver,
# which do nothing without path resolvers (none is ever added), and resolve, whose answer depends only on its
# arguments and the implicit resolvers (_LineLoader's are yaml.resolver.Resolver's: it adds none). A loader of
# load_yaml_all's takes C callables that ignore their arguments for the first two and a C memo of the third.
_RESOLVE = functools.lru_cache(maxsize=None)(yaml.resolver.Resolver().resolve)


def _fast_resolving(loader: _LineLoader) -> _LineLoader:
    if loader.yaml_path_resolvers:  # never so here; with path resolvers these calls matter
        return loader
    loader.descend_resolver = slice  # slice(parent, index): a C call that keeps nothing
    loader.ascend_resolver = tuple  # tuple(): the empty tuple
    loader.resolve = _RESOLVE
    return loader


def load_yaml_all(text: str, line_offset: int = 0) -> list:
    """Every non-empty document of a YAML text; each mapping carries `__line__` (1-based, plus line_offset)."""
    loader = _fast_resolving(_LineLoader(text))
    try:
        out = []
        while loader.check_node():
            doc = _value(loader.get_node(), loader, line_offset)
            if doc is not None:
                out.append(doc)
        return out
    finally:
        loader.dispose()


_SEPARATOR = re.compile(r"^---[ \t]*$", re.M)


def strip_lines(obj):
    """A copy without the `__line__` keys (to compare documents with plain data)."""
    if isinstance(obj, dict):
        return {k: strip_lines(v) for k, v in obj.items() if k != "__line__"}
    if isinstance(obj, list):
        return [strip_lines(v) for v in obj]
    return obj


class Tree:
    """Cached readers over the generated tree. Paths are relative to the tree's root."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._text: dict[str, str | None] = {}
        self._yaml: dict[str, list] = {}
        self._documents: dict[str, list] = {}
        self._pieces: dict[str, list] = {}  # a document's text -> its documents (Tree.documents)
        self._conns: dict[str, tuple] = {}

    def exists(self, rel: str) -> bool:
        return (self.root / rel).is_file()

    def text(self, rel: str) -> str | None:
        if rel not in self._text:
            p = self.root / rel
            self._text[rel] = p.read_text(encoding="utf-8") if p.is_file() else None
        return self._text[rel]

    def glob(self, pattern: str) -> list[str]:
        return sorted(str(p.relative_to(self.root)) for p in self.root.glob(pattern) if p.is_file())

    def documents(self, rel: str) -> list[tuple[int, dict]]:
        """(offset, document) for each YAML document of a manifest file: a document's `__line__`s count from its
        own first line, `offset` is the lines of the file before it. Regions share most manifests word for word,
        so each distinct document text is parsed once per tree (parsing YAML is most of verify's cost); a file
        with separators this split cannot follow is parsed whole (offset 0: the file's own lines)."""
        if rel in self._documents:
            return self._documents[rel]
        text = self.text(rel) or ""
        if any(line.startswith("---") and not _SEPARATOR.match(line) for line in text.splitlines()):
            out = [(0, d) for d in self.yaml_docs(rel)]
        else:
            out = []
            start = offset = 0
            for m in list(_SEPARATOR.finditer(text)) + [None]:
                end = m.start() if m else len(text)
                piece = text[start:end]
                if piece not in self._pieces:
                    self._pieces[piece] = load_yaml_all(piece)
                out += [(offset, d) for d in self._pieces[piece]]
                if m:
                    offset += piece.count("\n") + 1
                    start = m.end() + 1
        self._documents[rel] = out
        return out

    def yaml_docs(self, rel: str) -> list[dict]:
        """Every document of a YAML file; each mapping carries `__line__`. [] when the file is missing."""
        if rel not in self._yaml:
            text = self.text(rel)
            self._yaml[rel] = load_yaml_all(text) if text else []
        return self._yaml[rel]

    def line_of(self, rel: str, needle: str, start: int = 1) -> int:
        """The first line at or after `start` containing `needle` (0 when absent)."""
        text = self.text(rel) or ""
        for i, line in enumerate(text.splitlines()[start - 1:], start):
            if needle in line:
                return i
        return 0

    @cached_property
    def regions(self) -> list[str]:
        return [Path(p).stem for p in self.glob(f"{CONNECTIONS_DIR}/*.json")]

    def _connections_file(self, region: str) -> tuple[dict, list[Conn]]:
        if region not in self._conns:
            rel = f"{CONNECTIONS_DIR}/{region}.json"
            text = self.text(rel)
            try:
                doc = json.loads(text) if text is not None else None
            except ValueError as exc:
                raise VerifyError(f"{rel}: not JSON ({exc})")
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise VerifyError(f"{rel}: not a connections file of format {FORMAT}")
            lines = {}
            for i, line in enumerate(text.splitlines(), 1):
                if line.startswith('{"id": '):
                    lines[json.loads(line.rstrip(","))["id"]] = i
            conns = [Conn(
                id=c["id"], purpose=c["purpose"], source=_peer(c["from"]), dest=_peer(c["to"]), address=c["address"],
                port=c["port"], dest_port=c["dest_port"], protocol=c["protocol"], app_protocol=c["app_protocol"],
                tls=c["tls"], layers=tuple(c["layers"]), database=c.get("database", ""), user=c.get("user", ""),
                line=lines.get(c["id"], 0)) for c in doc["connections"]]
            self._conns[region] = ({k: v for k, v in doc.items() if k != "connections"}, conns)
        return self._conns[region]

    def connections(self, region: str) -> list[Conn]:
        return self._connections_file(region)[1]

    def region_info(self, region: str) -> dict:
        """The connections file's header: format, region, cloud and addressing."""
        return self._connections_file(region)[0]


def _peer(d: dict) -> Peer:
    return Peer(name=d["name"], kind=d["kind"], namespace=d.get("namespace", ""),
                labels={k: v for k, v in d.get("labels", {}).items() if k != "__line__"},
                host_group=d.get("host_group", ""), hosts=tuple(d.get("hosts", ())), cidrs=tuple(d.get("cidrs", ())))


class VerifyError(Exception):
    """The tree cannot be verified at all (no connections files, an unknown format)."""


@dataclass
class Report:
    connections: int = 0
    layers: set = field(default_factory=set)
    checks: int = 0
    broken: list[Broken] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.connections} connections x {len(self.layers)} layers checked "
                f"({self.checks} checks), {len(self.broken)} broken")


def checkers() -> list:
    return [importlib.import_module(m) for m in CHECKERS]


@dataclass(frozen=True)
class RegionOutcome:
    """What checking one region found (what a forked child sends back: compiler.verify.parallel)."""

    connections: int
    checks: int
    layers: frozenset
    broken: tuple  # Broken, in checker order
    unproved: tuple  # Broken: the layers a connection names that no checker proves


def check_region(tree: Tree, mods: list, region: str) -> RegionOutcome:
    conns = tree.connections(region)
    checks, layers, broken = 0, set(), []
    for mod in mods:
        for result in mod.check(tree, region, conns):
            checks += 1
            layers.add(result.layer)
            broken.extend(result.broken)
    proved = {layer for mod in mods for layer in mod.LAYERS}
    unproved = tuple(Broken(f"{CONNECTIONS_DIR}/{region}.json", c.line, layer, c.id, "no checker proves this layer")
                     for c in conns for layer in c.layers if layer not in proved)
    return RegionOutcome(len(conns), checks, frozenset(layers), tuple(broken), unproved)


def verify(root: str | Path, regions: Iterable[str] | None = None) -> Report:
    from compiler.verify import parallel
    start = time.perf_counter()
    tree = Tree(root)
    names = list(regions) if regions else tree.regions
    if not names:
        raise VerifyError(f"{root}: no {CONNECTIONS_DIR}/<region>.json files (is this a generated tree?)")
    report = Report()
    mods = checkers()
    forked = parallel.map_regions(lambda region: check_region(tree, mods, region), names)
    unproved = []
    for i, region in enumerate(names):
        # a serial run, or one whose fork failed, checks the region here: an error then surfaces as it always did
        outcome = forked[i] if forked is not None else check_region(tree, mods, region)
        report.connections += outcome.connections
        report.checks += outcome.checks
        report.layers |= outcome.layers
        report.broken.extend(outcome.broken)
        unproved.extend(outcome.unproved)
    # a layer named by a connection that no checker proves is itself a broken link (listed after every region's)
    report.broken.extend(unproved)
    report.seconds = time.perf_counter() - start
    return report
