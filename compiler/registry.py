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
from pathlib import PurePosixPath

from compiler.errors import Diagnostic, SpecError
from compiler.records import dataclass

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


def load(spec_file: str, doc, platform) -> list[FranchiseHome]:
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
    seen: dict[int, int] = {}
    homes: list[FranchiseHome] = []
    for n, row in zip(starts[1:], rows[1:]):
        if not row:
            continue
        if len(row) != 3:
            err(n, 0, f"expected 3 fields ({','.join(HEADER)}), found {len(row)}")
            continue
        fid, region, jurisdiction = (c.strip() for c in row)
        if not _ASCII_ID.match(fid) or not 1 <= int(fid) <= MAX_FRANCHISE_ID:
            err(n, 0, f"franchise_id {fid!r} is not a positive integer (ASCII digits, at most {MAX_FRANCHISE_ID:,})")
            continue
        if int(fid) in seen:
            err(n, 0, f"franchise {fid} is listed twice (first on line {seen[int(fid)]})")
            continue
        seen[int(fid)] = n
        if region not in platform.regions:
            err(n, 1, f"home region {region!r} is not a declared region")
            continue
        geo = residency.get(jurisdiction)
        if geo and platform.regions[region].geo != geo:
            err(n, 1, f"franchise {fid} ({jurisdiction}) must stay in {geo} regions, not {region} "
                      f"({platform.regions[region].geo})")
            continue
        # the names recur on every row: one object each (sys.intern), not 10,000 copies held by the plan
        homes.append(FranchiseHome(int(fid), sys.intern(region), sys.intern(jurisdiction)))
    if errors:
        raise SpecError(errors)
    return homes


def place(homes: list[FranchiseHome], shards_by_region: dict[str, list[int]], per_shard: int,
          spec_file: str, rel: str) -> tuple[FranchiseHome, ...]:
    """Assign each franchise a shard of its home region; overflow is an error at the first franchise that does not fit."""
    by_region: dict[str, list[FranchiseHome]] = {}
    for h in homes:
        by_region.setdefault(h.region, []).append(h)
    placed = []
    for region, items in by_region.items():
        items.sort(key=lambda h: h.franchise_id)
        shards = shards_by_region[region]
        capacity = len(shards) * per_shard
        if len(items) > capacity:
            raise SpecError([Diagnostic(registry_path(spec_file, rel), 1, 1, "sharding.registry_file", CODE,
                                        f"{len(items)} franchises are homed in {region}, whose {len(shards)} shards hold "
                                        f"{capacity}; raise sharding.capacity_franchises or move franchises")])
        for i, h in enumerate(items):
            placed.append(FranchiseHome(h.franchise_id, region, h.jurisdiction, shards[i // per_shard]))
    return tuple(sorted(placed, key=lambda h: h.franchise_id))
