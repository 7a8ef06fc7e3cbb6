"""Scale the reference platform to N regions (and optionally a franchise registry) for benchmarks.

    python scripts/scale.py OUT_DIR --regions 120 [--registry 10000] [--spec platform.yaml]

Writes OUT_DIR/platform.yaml (and OUT_DIR/franchises.csv with --registry). N must be a multiple of the
reference's region count (12, 48, 120, ...): each reference region is copied N/12 times (`<name>`, `<name>-2`,
...), keeping its geo, cloud and settings overrides; its traffic share is split evenly among the copies, so
the geo and cloud totals (R001-R003) still hold; copy k's DR partner is copy k of the partner; every copy
gets its own /16. Shards: capacity_franchises becomes max(the reference's, N x franchises_per_shard), so
every region owns at least one shard (R021). The registry homes franchise ids scattered over 1..1.4 x rows
(seeded, reproducible) in regions whose geo admits their jurisdiction (`eu` stays in EMEA).
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def scaled(spec: dict, regions: int, registry: str | None = None) -> dict:
    base = spec["regions"]
    if regions % len(base):
        raise SystemExit(f"--regions must be a multiple of {len(base)}")
    copies = regions // len(base)
    out = {}
    index = 0
    for k in range(copies):
        for name, region in base.items():
            new = dict(region)
            suffix = "" if k == 0 else f"-{k + 1}"
            new["traffic_share"] = region["traffic_share"] / copies
            if copies > 1 and new["traffic_share"] == int(new["traffic_share"]):
                new["traffic_share"] = int(new["traffic_share"])
            new["dr_partner"] = region["dr_partner"] + suffix
            new["cidr"] = f"10.{index}.0.0/16"
            if k and "role" in new:
                new.pop("role")
            out[name + suffix] = new
            index += 1
    spec = dict(spec)
    spec["regions"] = out
    sh = dict(spec["sharding"])
    sh["capacity_franchises"] = max(sh["capacity_franchises"], regions * sh["franchises_per_shard"])
    if registry:
        sh["registry_file"] = registry
    spec["sharding"] = sh
    return spec


def registry_rows(spec: dict, rows: int, seed: int = 16) -> list[str]:
    rng = random.Random(seed)
    residency = {j: g for g, geo in spec["geos"].items() for j in geo.get("data_residency", [])}
    regions = list(spec["regions"])
    by_geo: dict[str, list[str]] = {}
    for name, r in spec["regions"].items():
        by_geo.setdefault(r["geo"], []).append(name)
    jurisdictions = ["us", "ca", "br", "eu", "uk", "sg", "jp", "au"]
    ids = sorted(rng.sample(range(1, int(rows * 1.4) + 1), rows))
    out = []
    for fid in ids:
        j = rng.choice(jurisdictions)
        geo = residency.get(j)
        home = rng.choice(by_geo[geo] if geo else regions)
        out.append(f"{fid},{home},{j}")
    return out


def write(out_dir: Path, regions: int, registry_size: int = 0, source: Path = REPO / "platform.yaml") -> Path:
    spec = yaml.safe_load(source.read_text("utf-8"))
    out_dir.mkdir(parents=True, exist_ok=True)
    new = scaled(spec, regions, "franchises.csv" if registry_size else None)
    if registry_size:
        sh = new["sharding"]
        sh["expected_franchises"] = max(sh["expected_franchises"], registry_size)
        sh["capacity_franchises"] = max(sh["capacity_franchises"], 2 * registry_size)
        lines = registry_rows(new, registry_size)
        (out_dir / "franchises.csv").write_text("franchise_id,home_region,jurisdiction\n" + "\n".join(lines) + "\n")
    path = out_dir / "platform.yaml"
    path.write_text(yaml.safe_dump(new, sort_keys=False, width=1000), "utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("--regions", type=int, default=12)
    ap.add_argument("--registry", type=int, default=0, help="rows of a franchise registry (0: none)")
    ap.add_argument("--spec", type=Path, default=REPO / "platform.yaml")
    a = ap.parse_args()
    print(write(a.out_dir, a.regions, a.registry, a.spec))


if __name__ == "__main__":
    main()
