"""The deployed-facts lock: generated/platform.lock.json, the facts a live platform cannot change by a spec edit.

Terraform's .terraform.lock.hcl and Kapitan's committed state are the model: `platformc generate` writes the lock
(the `lock` target) beside the other outputs, it is committed with them, and the next compile reads it back
(`--out`'s lock for generate, the spec's generated/ for validate) so the rules R076-R078 can refuse an edit that
would move a fact the running platform holds:

- which region and shard own each franchise-id range (R076): the shard databases hold the franchises' rows, and
  nothing moves them when the routing table, PgBouncer and the edge maps are regenerated;
- each region's CIDR (R077): the network and everything in it are built from it;
- each data host's zone and data volume size (R078): a shrink or a zone move replaces the volume;
- each self-managed Redis cluster's primary count (R078): a formed cluster never reshards by itself.

Placement is also kept stable by the lock: allocate_shards (compiler/resolve.py) keeps every locked shard in its
region and gives only the shards added since (a raised capacity) to the regions below their traffic share.

The facts are computed here, once, from the plan: the lock target dumps them, the rules compare them with the lock
read. Without a lock (a new repository, a test's spec) nothing is checked and placement is the fresh one.
"""

from __future__ import annotations

from pathlib import Path

from compiler.records import dataclass

LOCK_FILE = "platform.lock.json"
FORMAT = 1
DOC = "docs/lock.md"


@dataclass(frozen=True)
class DeployedLock:
    """A lock read back: its path (for messages), franchises_per_shard, shard number -> home region, and per region
    its cidr, data hosts (name -> (zone, disk GiB)) and Redis primaries (None when Redis is not self-managed)."""

    path: str
    franchises_per_shard: int
    shards: dict  # shard number -> region
    regions: dict  # region -> {"cidr": str, "data_hosts": {host: {"zone": str, "disk_gib": int}}, "redis_primaries": int}


def shard_ranges(shards) -> list[dict]:
    """Consecutive shards of one region merged: [{"ids": [first, last], "region": r, "shards": [first, last]}]."""
    out: list[dict] = []
    for s in sorted(shards, key=lambda s: s.number):
        last = out[-1] if out else None
        if last and last["region"] == s.region and last["shards"][1] + 1 == s.number:
            last["shards"][1], last["ids"][1] = s.number, s.last_id
        else:
            out.append({"ids": [s.first_id, s.last_id], "region": s.region, "shards": [s.number, s.number]})
    return out


def region_facts(plan, r) -> dict:
    from compiler.ir.machines import data_disk_gib, host_size
    hosts = {}
    for h in r.hosts:
        if host_size(r, h.group) is not None:
            hosts[h.name] = {"disk_gib": data_disk_gib(plan, r, h), "zone": h.zone}
            sources = standby_sources(r, h.name)
            if sources:
                hosts[h.name]["standby_of"] = sources
    out: dict = {"cidr": r.cidr, "data_hosts": hosts}
    redis = r.settings.datastores.redis
    if redis.deployment == "self-managed":
        out["redis_primaries"] = redis.primaries
    return out


def standby_sources(r, host: str) -> list[str]:
    """The regions whose DR standby clusters `host` of region plan `r` runs (their data is on its volume)."""
    ha = r.postgres_ha
    return sorted({sb.of_region for sb in ha.standbys if host in sb.hosts}) if ha is not None else []


def build(plan) -> dict:
    """The lock's data for `plan`."""
    return {
        "format": FORMAT,
        "about": ("platformc's deployed-facts lock: committed, read back by the next compile (rules R076-R078). "
                  f"Generated: do not edit, except to release a fact deliberately ({DOC})."),
        "franchises_per_shard": plan.spec.sharding.franchises_per_shard,
        "franchises": shard_ranges(plan.shards),
        "regions": {r.name: region_facts(plan, r) for r in plan.regions},
    }


def dumps(data: dict) -> str:
    """Deterministic text: sorted keys, two-space indent, one range or host per line."""
    import json
    lines = ["{"]
    items = sorted(data.items())
    for i, (key, value) in enumerate(items):
        comma = "," if i < len(items) - 1 else ""
        if key == "franchises":
            rows = [json.dumps(x, sort_keys=True) for x in value]
            body = ",\n".join(f"    {row}" for row in rows)
            lines.append(f'  "franchises": [\n{body}\n  ]{comma}' if rows else f'  "franchises": []{comma}')
        elif key == "regions":
            lines.append('  "regions": {')
            names = sorted(value)
            for j, name in enumerate(names):
                facts = value[name]
                hosts = facts["data_hosts"]
                host_rows = ",\n".join(f"        {json.dumps(h)}: {json.dumps(hosts[h], sort_keys=True)}"
                                       for h in sorted(hosts))
                parts = [f'      "cidr": {json.dumps(facts["cidr"])}',
                         '      "data_hosts": {' + (f"\n{host_rows}\n      }}" if hosts else "}")]
                if "redis_primaries" in facts:
                    parts.append(f'      "redis_primaries": {facts["redis_primaries"]}')
                end = "," if j < len(names) - 1 else ""
                lines.append(f"    {json.dumps(name)}: {{\n" + ",\n".join(parts) + f"\n    }}{end}")
            lines.append(f"  }}{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


class LockError(ValueError):
    """The lock file is not one platformc wrote."""


def parse(text: str, path: str) -> DeployedLock:
    import json  # here: a compile without a lock (validate of a new spec) never loads it (tests/test_startup.py)
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LockError(f"not a format-{FORMAT} platformc lock")
        per = data["franchises_per_shard"]
        shards: dict = {}
        for row in data["franchises"]:
            first, last = row["shards"]
            for n in range(int(first), int(last) + 1):
                shards[n] = str(row["region"])
        regions = {str(k): v for k, v in data["regions"].items()}
        for facts in regions.values():
            if not isinstance(facts.get("cidr"), str) or not isinstance(facts.get("data_hosts"), dict):
                raise LockError("a region without its cidr and data_hosts")
        if not isinstance(per, int):
            raise LockError("franchises_per_shard is not an integer")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LockError(str(exc) or type(exc).__name__) from None
    return DeployedLock(path, per, shards, regions)


def read(path) -> DeployedLock | None:
    """The lock at `path`, None when there is none; SpecError (R076, at the file) when it cannot be read."""
    from compiler.errors import Diagnostic, SpecError
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        problem = exc.strerror
    else:
        try:
            return parse(raw.decode("utf-8"), str(path))
        except (UnicodeDecodeError, LockError) as exc:
            problem = str(exc)
    raise SpecError([Diagnostic(str(path), 1, 1, "<lock>", "R076",
                                f"cannot read the deployed-facts lock: {problem}; restore it from git "
                                f"(git checkout -- {path}), or delete it to check nothing ({DOC})")])


def default_path(out: str | Path) -> Path:
    return Path(out) / LOCK_FILE


def placement(lock: DeployedLock | None, per_shard: int) -> dict | None:
    """The locked shard -> region map placement keeps, None when there is no lock or franchises_per_shard changed
    (every shard's id range then differs: R076 refuses, and the fresh placement stands in meanwhile)."""
    if lock is None or lock.franchises_per_shard != per_shard:
        return None
    return lock.shards
