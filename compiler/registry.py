"""The optional franchise registry: `sharding.registry_file`, a CSV of franchise_id,home_region,jurisdiction.

With a registry, franchises are placed explicitly instead of by id range: each franchise goes to its home
region's shards (the region's franchises sorted by id, `franchises_per_shard` to a shard). A franchise whose
jurisdiction a geo claims in `data_residency` (e.g. `eu` for EMEA) must be homed in that geo. Every problem
is reported at the CSV's own line and column as R022.
"""

from __future__ import annotations

import csv
import io
import os
import re
import sys
from array import array
from itertools import repeat
from pathlib import PurePosixPath

from compiler.errors import Diagnostic, SpecError
from compiler.records import Columns, dataclass

HEADER = ["franchise_id", "home_region", "jurisdiction"]
MAX_FRANCHISE_ID = 10**15
_ASCII_ID = re.compile(r"^[0-9]{1,16}$")  # str.isdigit() also accepts '²', which int() refuses
CODE = "R022"


@dataclass(frozen=True, slots=True)  # 10,000 of them in a large registry: no __dict__ each
class FranchiseHome:
    franchise_id: int
    region: str
    jurisdiction: str
    shard: int = 0  # filled by the resolver


def registry_path(spec_file: str, rel: str) -> str:
    return os.path.normpath(os.path.join(os.path.dirname(spec_file) or ".", rel))


def _cols(raw_line: str) -> list[int]:
    """1-based start column of each comma-separated field (quotes are not used in this file)."""
    cols, col = [], 1
    for field in raw_line.split(","):
        cols.append(col)
        col += len(field) + 1
    return cols


def load(spec_file: str, doc, platform) -> "Placements":
    """Read and check the registry; SpecError with every problem, positioned in the CSV."""
    rel = platform.sharding.registry_file
    spec_line, spec_col = doc.pos(("sharding", "registry_file"))
    if PurePosixPath(rel).is_absolute() or ".." in PurePosixPath(rel).parts:
        raise SpecError([Diagnostic(doc.file, spec_line, spec_col, "sharding.registry_file", CODE,
                                    "the registry path must stay inside the spec's directory")])
    path = registry_path(spec_file, rel)
    try:
        text = open(path, encoding="utf-8", newline="").read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError([Diagnostic(doc.file, spec_line, spec_col, "sharding.registry_file", CODE,
                                    f"cannot read the franchise registry {path}: {getattr(exc, 'strerror', None) or exc}")]) from None
    lines = text.splitlines()
    errors: list[Diagnostic] = []

    def err(line: int, field: int, message: str):
        raw = lines[line - 1] if 0 < line <= len(lines) else ""
        cols = _cols(raw)
        col = cols[field] if field < len(cols) else 1
        errors.append(Diagnostic(path, line, col, f"sharding.registry_file:{HEADER[field] if field < 3 else 'row'}", CODE, message))

    # Each row with the line it starts on: a quoted field may span lines, so row n is not line n.
    reader = csv.reader(io.StringIO(text))
    rows, starts, consumed = [], [], 0
    try:
        for row in reader:
            rows.append(row)
            starts.append(consumed + 1)
            consumed = reader.line_num
    except csv.Error as exc:
        err(consumed + 1, 0, f"malformed CSV: {exc}")
        raise SpecError(errors) from None
    if not rows or [c.strip() for c in rows[0]] != HEADER:
        err(1, 0, f"the first line must be the header {','.join(HEADER)}")
        raise SpecError(errors)
    residency = {j: g for g, geo in platform.geos.items() for j in geo.data_residency}
    names = tuple(sys.intern(n) for n in platform.regions)
    region_index = {n: i for i, n in enumerate(names)}
    geos = [platform.regions[n].geo for n in names]
    jurisdictions: dict[str, int] = {}  # name -> index, in order of first use
    seen: dict[int, int] = {}
    ids, region_at, jurisdiction_at = array("q"), array("I"), array("I")
    for n, row in zip(starts[1:], rows[1:]):
        if not row:
            continue
        if len(row) != 3:
            err(n, 0, f"expected 3 fields ({','.join(HEADER)}), found {len(row)}")
            continue
        fid, region, jurisdiction = row
        fid, region, jurisdiction = fid.strip(), region.strip(), jurisdiction.strip()
        number = int(fid) if _ASCII_ID.match(fid) else 0
        if not 1 <= number <= MAX_FRANCHISE_ID:
            err(n, 0, f"franchise_id {fid!r} is not a positive integer (ASCII digits, at most {MAX_FRANCHISE_ID:,})")
            continue
        first = seen.setdefault(number, n)
        if first != n:
            err(n, 0, f"franchise {fid} is listed twice (first on line {first})")
            continue
        at = region_index.get(region)
        if at is None:
            err(n, 1, f"home region {region!r} is not a declared region")
            continue
        geo = residency.get(jurisdiction)
        if geo and geos[at] != geo:
            err(n, 1, f"franchise {fid} ({jurisdiction}) must stay in {geo} regions, not {region} ({geos[at]})")
            continue
        ids.append(number)
        region_at.append(at)
        jurisdiction_at.append(jurisdictions.setdefault(jurisdiction, len(jurisdictions)))
    if errors:
        raise SpecError(errors)
    return Placements(ids, None, region_at, names, jurisdiction_at, tuple(sys.intern(j) for j in jurisdictions))


class Placements(Columns):
    """The registry's franchises as columns: ids (an int64 array), each one's shard (an array; None before
    place()), and its home region and jurisdiction as indexes into `regions` and `jurisdictions`.

    A sequence of FranchiseHome, each made when it is read: 10,000 rows held as objects were ~1.6 MiB of the plan
    (each a GC-tracked object and an int), held in the parent across emission's fork, where each MiB of parent heap
    costs ~2 at the peak (the child's collections touch every tracked object's page). The columns are ~140 KB and
    hold no object the collector tracks."""

    __slots__ = ("ids", "shards", "region_at", "regions", "jurisdiction_at", "jurisdictions")
    NOUN = "franchises"

    def __init__(self, ids, shards, region_at, regions: tuple, jurisdiction_at, jurisdictions: tuple):
        self.ids, self.shards, self.region_at, self.regions = ids, shards, region_at, regions
        self.jurisdiction_at, self.jurisdictions = jurisdiction_at, jurisdictions

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        shards = self.shards if self.shards is not None else repeat(0, len(self.ids))
        return map(FranchiseHome, self.ids, map(self.regions.__getitem__, self.region_at),
                   map(self.jurisdictions.__getitem__, self.jurisdiction_at), shards)

    def row(self, i: int) -> FranchiseHome:
        return FranchiseHome(self.ids[i], self.regions[self.region_at[i]], self.jurisdictions[self.jurisdiction_at[i]],
                             0 if self.shards is None else self.shards[i])


def place(homes: Placements, shards_by_region: dict[str, list[int]], per_shard: int,
          spec_file: str, rel: str) -> Placements:
    """Assign each franchise a shard of its home region (the region's franchises by id, `per_shard` to a shard), sorted
    by franchise id; overflow is an error at the first region (in the file's order) whose franchises do not fit."""
    names = homes.regions
    counts = [0] * len(names)
    for at in homes.region_at:
        counts[at] += 1
    for at in dict.fromkeys(homes.region_at):  # the regions in the order the file first names them
        region = names[at]
        shards = shards_by_region[region]
        capacity = len(shards) * per_shard
        if counts[at] > capacity:
            raise SpecError([Diagnostic(registry_path(spec_file, rel), 1, 1, "sharding.registry_file", CODE,
                                        f"{counts[at]} franchises are homed in {region}, whose {len(shards)} shards hold "
                                        f"{capacity}; raise sharding.capacity_franchises or move franchises")])
    order = sorted(range(len(homes.ids)), key=homes.ids.__getitem__)
    ids, region_at, jurisdiction_at = homes.ids, homes.region_at, homes.jurisdiction_at
    # in id order, each franchise is the next of its region's: the region's k-th franchise is in its shard k // per_shard
    taken = [0] * len(names)
    by_region = [shards_by_region.get(n) for n in names]
    shard_of = array("q")
    for i in order:
        at = region_at[i]
        k = taken[at]
        taken[at] = k + 1
        shard_of.append(by_region[at][k // per_shard])
    return Placements(array("q", map(ids.__getitem__, order)), shard_of, array("I", map(region_at.__getitem__, order)),
                      names, array("I", map(jurisdiction_at.__getitem__, order)), homes.jurisdictions)
