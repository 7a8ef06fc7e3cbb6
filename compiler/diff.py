"""`platformc diff`: what a change to the spec does, read before any plan.

Both sides are compiled in memory: the working tree's spec, and the spec (with its franchise registry) at a
git ref read with `git show REF:path` (no checkout) or another spec file. The report has four parts:

- files: per target and region, the generated files added, removed and changed (emitted in memory; only the
  regions whose IR differs, plus the global files, are emitted; docs/ is not compared);
- changes: the meaningful differences in words, read off the two IRs (regions, HPA ranges, node pools,
  datastore sizes, Redis maxmemory, canary weights, image tags, shard ranges, secret references, connections);
- risks: the changes that need a careful review (a datastore resized or replaced, a region removed, shard
  ranges moved, a secret reference changed, a firewall opened wider: a new connection or a wider source range);
- affected: the deploy units whose files change (Terraform roots, with every root calling a changed module,
  Helm releases, Kong files, Ansible inventories, Kubernetes and monitoring manifests), one per line with
  `--affected`, so CI plans and applies only those;

and the cost delta (compiler/cost).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import field
from pathlib import Path, PurePosixPath

from compiler.errors import UsageError
from compiler.records import dataclass

SECRET_PREFIXES = ("vault:", "aws-sm:", "gcp-sm:", "azure-kv:", "env:")


@dataclass
class Report:
    base: str
    files: dict = field(default_factory=dict)  # (target, region) -> {"added": [...], "removed": [...], "changed": [...]}
    changes: list[tuple[str, str]] = field(default_factory=list)  # (region or "" for platform-wide, words)
    risks: list[tuple[str, str]] = field(default_factory=list)
    affected: list[str] = field(default_factory=list)
    cost: dict = field(default_factory=dict)  # region/"total" -> (old low, new low, old high, new high)
    regions: int = 0  # regions on the new side (to say "all N regions")

    @property
    def empty(self) -> bool:
        return not (self.files or self.changes or self.risks)


# ---------------------------------------------------------------- the base side

def _git(*args: str, cwd: str) -> bytes:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True)
    if proc.returncode != 0:
        raise UsageError(f"git {' '.join(args)}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def compile_at_ref(ref: str, spec: str):
    """Compile SPEC (and its registry) as it is at git REF, in a temporary directory that is removed after."""
    return base_at_ref(ref, spec, with_outputs=False)[0]


def base_at_ref(ref: str, spec: str, with_outputs: bool = True):
    """(Compiled base, its committed outputs or None). The base spec is always compiled (the changes in words
    are read off its IR); its generated files are read from the `generated/` committed at REF beside the spec
    (one `git cat-file --batch`) instead of emitted again, when its manifest proves they are what this
    platformc makes of that spec: its recorded inputs are the base spec's and registry's bytes and this
    platformc's sources (writer.inputs_fingerprint), and every file read has the SHA-256 the manifest records.
    Anything else (no manifest, another platformc, a stale or hand-edited tree) is emitted from the base IR."""
    from compiler.loader import load_text
    from compiler.pipeline import compile_document
    spec_path = Path(spec).resolve()
    top = _git("rev-parse", "--show-toplevel", cwd=str(spec_path.parent)).decode().strip()
    rel = spec_path.relative_to(Path(top).resolve()).as_posix()
    text = _git("show", f"{ref}:{rel}", cwd=top)
    registry = None
    tmp = tempfile.mkdtemp(prefix="platformc-diff-")
    try:
        base = Path(tmp) / spec_path.name  # same basename: targets name the spec file in headers
        base.write_bytes(text)
        reg = re.search(rb"^\s*registry_file:\s*[\"']?([A-Za-z0-9._/-]+)", text, re.M)
        if reg:
            reg_rel = reg.group(1).decode()
            src = (PurePosixPath(rel).parent / reg_rel).as_posix()
            if ".." not in PurePosixPath(reg_rel).parts:
                try:
                    registry = _git("show", f"{ref}:{src}", cwd=top)
                except UsageError:
                    registry = None
                if registry is not None:
                    dest = Path(tmp) / reg_rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.write_bytes(registry)
        lock = _lock_at(ref, top, (PurePosixPath(rel).parent / "generated").as_posix())
        compiled = _compile_lenient(lambda skip: compile_document(load_text(text, str(base)), skip_rules=skip,
                                                                  lock=lock), str(base), f"{ref}:{rel}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    outputs = None
    if with_outputs:
        from compiler.noop import inputs_fingerprint
        gen = (PurePosixPath(rel).parent / "generated").as_posix()
        outputs = _committed(ref, top, gen, inputs_fingerprint(spec_path.name, text, registry))
    return compiled, outputs


def _lock_at(ref: str, top: str, gen: str):
    """The deployed-facts lock committed at REF beside the spec (compiler/ir/deployed.py), None without one: the base
    is placed as it was generated (a lock keeps placement where it was deployed)."""
    from compiler.ir import deployed
    try:
        raw = _git("show", f"{ref}:{gen}/{deployed.LOCK_FILE}", cwd=top)
    except UsageError:
        return None
    try:
        return deployed.parse(raw.decode("utf-8"), f"{ref}:{gen}/{deployed.LOCK_FILE}")
    except (UnicodeDecodeError, deployed.LockError):
        return None  # an unreadable base lock: the base is compiled as without one (the working side reports it)


def _committed(ref: str, top: str, gen: str, fingerprint: str):
    """{rel path: (owner, text)} of the generated tree committed at REF when its manifest records `fingerprint`
    (see base_at_ref), else None. Reads lazily: `select(owners)` fetches only those owners' files."""
    from compiler.writer import MANIFEST
    try:
        raw = _git("show", f"{ref}:{gen}/{MANIFEST}", cwd=top)
        manifest = json.loads(raw)
    except (UsageError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("inputs") != fingerprint:
        return None
    files, digests = manifest.get("files"), manifest.get("sha256")
    if not isinstance(files, dict) or not isinstance(digests, dict) or set(files) - set(digests):
        return None
    return _Committed(ref, top, gen, files, digests)


class _Committed:
    """The committed outputs of the base: owners' files fetched on demand, each checked against its digest."""

    def __init__(self, ref, top, gen, files, digests):
        self.ref, self.top, self.gen, self.files, self.digests = ref, top, gen, files, digests

    def select(self, owners):
        """{"generated": {rel: (owner, text or _Sha)}} of the files of these owners: the text of the Terraform
        roots' .tf files (the diff reads their module calls), every other file's recorded SHA-256 (all the
        diff compares); None if a read fails its proof."""
        import hashlib
        mine = {r: o for r, o in self.files.items() if o in owners}
        wanted = sorted(r for r in mine if _ROOT_TF.match(r))
        out = {r: (o, _Sha(self.digests[r])) for r, o in mine.items()}
        if wanted:
            req = "".join(f"{self.ref}:{self.gen}/{r}\n" for r in wanted).encode()
            proc = subprocess.run(["git", "cat-file", "--batch"], cwd=self.top, input=req, capture_output=True)
            if proc.returncode != 0:
                return None
            data, pos = proc.stdout, 0
            for r in wanted:
                nl = data.index(b"\n", pos)
                head = data[pos:nl].split()
                if len(head) != 3 or head[1] != b"blob":
                    return None
                size = int(head[2])
                blob = data[nl + 1:nl + 1 + size]
                pos = nl + 1 + size + 1
                if hashlib.sha256(blob).hexdigest() != self.digests[r]:
                    return None
                out[r] = (mine[r], blob.decode("utf-8"))
        return {"generated": out}


def working_outputs(spec: str, spec_bytes: bytes, registry_file: str | None, started_ns: int):
    """The working tree's generated/ beside SPEC, read instead of emitted when its manifest proves it is what
    this platformc makes of the spec being compared: its recorded inputs are this run's (the spec bytes
    compiled, the registry unchanged since `started_ns`, this platformc), and every file read has the SHA-256
    the manifest records. That is the user's loop (edit, `make generate`, commit; CI diffs the commit against
    its parent), where emitting the new side again would only repeat what generate wrote. Else None: the new
    side is emitted (a spec edited without regenerating, a hand-edited or stale tree, another platformc)."""
    from compiler.noop import run_inputs, sources_digest
    from compiler.writer import WriteError, _load_manifest, _recorded_digests, _recorded_inputs
    root = Path(spec).resolve().parent / "generated"
    try:
        files, raw = _load_manifest(root, "generated")
    except WriteError:
        return None
    inputs = run_inputs(spec, spec_bytes, registry_file, sources_digest(), started_ns)
    if raw is None or inputs is None or _recorded_inputs(raw) != inputs:
        return None
    try:
        digests = _recorded_digests(raw)
    except (ValueError, AttributeError):
        return None
    if set(files) - set(digests):
        return None
    return _OnDisk(root, files, digests)


class _OnDisk:
    """The working tree's outputs: owners' files read on demand, each checked against its recorded digest."""

    def __init__(self, root: Path, files: dict, digests: dict):
        self.root, self.files, self.digests = root, files, digests

    def select(self, owners):
        """As _Committed.select: {"generated": {rel: (owner, text or _Sha)}}, None if a file fails its proof
        (missing, unreadable, a link, or not the recorded bytes)."""
        import hashlib
        out = {}
        for rel, owner in self.files.items():
            if owner not in owners:
                continue
            try:
                fd = os.open(self.root / rel, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
                with os.fdopen(fd, "rb") as f:
                    data = f.read()
            except OSError:
                return None
            digest = hashlib.sha256(data).hexdigest()
            if digest != self.digests[rel]:
                return None
            out[rel] = (owner, data.decode("utf-8") if _ROOT_TF.match(rel) else _Sha(digest))
        return {"generated": out}


def _compile_lenient(compile_, tmp_name: str, label: str):
    """Compile the base side. A base spec that today's semantic rules refuse (a rule added since) is still
    compiled, without those rules (compile_(skip_rules)): the diff is about what changes, not about the base's
    faults. Schema errors stay errors, named REF:path."""
    from dataclasses import replace

    from compiler.errors import SpecError
    from compiler.rules import RULES
    skipped, first = frozenset(), None
    for _ in range(len(RULES) + 1):  # each pass drops the rules that refused it (later rules run after earlier pass)
        try:
            return compile_(skipped)
        except SpecError as exc:
            first = first or exc
            codes = {d.code for d in exc.diagnostics if d.severity == "error"}
            if not codes or not all(c.startswith("R") for c in codes) or codes <= skipped:
                break
            skipped |= codes
    raise SpecError([replace(d, file=label if d.file == tmp_name else d.file) for d in first.diagnostics]) from None


# ---------------------------------------------------------------- files and affected units

def _same_region(a, b) -> bool:
    return a == b


def _emit(plan, regions: list[str], with_globals: bool, committed=None):
    """The generated files of these regions (and the global files): read from the base's committed tree when
    it is proven current (base_at_ref), else emitted; docs/ is left out (no deploy unit, and rendering it
    would treble the time)."""
    from compiler import targets
    from compiler.emit import Outputs, _jobs, _results
    rs = [plan.region(n) for n in regions if n in plan.region_names]
    jobs = _jobs(plan, targets.select(None), rs, with_globals=with_globals, with_docs=False)
    if committed is not None:
        got = committed.select({owner for _, owner, _ in jobs})
        if got is not None:
            return got
    out = Outputs()
    for (root, owner, _), files in zip(jobs, _results(jobs, len(rs))):
        out.add(root, owner, files)
    return out


def _file_changes(old_out, new_out) -> dict:
    files: dict = {}
    for root in sorted(set(old_out) | set(new_out)):
        a, b = old_out.get(root, {}), new_out.get(root, {})
        for path in sorted(set(a) | set(b)):
            if path in a and path in b and _same_text(a[path][1], b[path][1]):
                continue
            owner = (b.get(path) or a.get(path))[0]
            target, _, region = owner.partition("/")
            kind = "added" if path not in a else "removed" if path not in b else "changed"
            files.setdefault((target, region), {"added": [], "removed": [], "changed": []})[kind].append(f"{root}/{path}")
    return files


class _Sha(str):
    """A committed file's SHA-256 standing for its text (base_at_ref reads only the texts the diff reads)."""


def _same_text(old, new) -> bool:
    """Texts, or a file's recorded SHA-256 (_Sha) on either side or both."""
    if (type(old) is _Sha) == (type(new) is _Sha):
        return old == new
    import hashlib
    text, digest = (new, old) if type(old) is _Sha else (old, new)
    return hashlib.sha256(text.encode("utf-8")).hexdigest() == digest


_ROOT_TF = re.compile(r"terraform/(regions/[^/]+|global)/[^/]+\.tf$")


def _module_callers(outputs) -> dict[str, set[str]]:
    """terraform/modules/<cloud>/<module> -> the roots whose .tf files call it."""
    callers: dict[str, set[str]] = {}
    for trees in outputs:
        for path, (_, text) in trees.get("generated", {}).items():
            m = _ROOT_TF.match(path)
            if not m:
                continue
            for mod in re.findall(r'source\s*=\s*"(?:\.\./)+modules/([a-z]+/[a-z0-9_]+)"', text):
                callers.setdefault(f"terraform/modules/{mod}", set()).add(f"terraform/{m.group(1)}")
    return callers


def affected_units(paths: list[str], callers: dict[str, set[str]], regions: list[str]) -> list[str]:
    """Deploy units for changed generated paths (relative to the output root, `generated/` prefix optional)."""
    units: set[str] = set()
    for p in paths:
        p = p.removeprefix("generated/")
        parts = p.split("/")
        if parts[0] == "terraform":
            if parts[1] == "regions":
                units.add("/".join(parts[:3]))
            elif parts[1] == "global":
                units.add("terraform/global")
            elif parts[1] == "modules":
                units |= callers.get("/".join(parts[:4]), set())
        elif parts[0] == "helm" and len(parts) > 2:
            region, rest = parts[1], parts[2:]
            if region == "global" and rest[0] == "charts" and len(rest) > 1:  # a chart every region's helmfile installs
                units |= {f"helm/{r}/{rest[1]}" for r in regions}
            elif rest[0] == "charts" and len(rest) > 1:
                units.add(f"helm/{region}/{rest[1]}")
            elif rest[0].endswith(".values.yaml"):
                units.add(f"helm/{region}/{rest[0].removesuffix('.values.yaml')}")
            else:  # the helmfile itself (or a file every release reads)
                units.add(f"helm/{region}")
        elif parts[0] == "kong" and len(parts) > 2:
            units.add(f"kong/{parts[1]}")
        elif parts[0] in ("kubernetes", "monitoring") and len(parts) > 2:
            units.add(f"{parts[0]}/{parts[1]}")
        elif parts[0] == "datastores" and len(parts) > 2:
            units.add(f"ansible/inventories/{parts[1]}")  # the roles deploy these files as they are
        elif parts[0] == "ansible":
            if len(parts) > 2 and parts[1] == "inventories":
                units.add(f"ansible/inventories/{parts[2]}")
            elif p != "ansible/README.md":  # roles and playbooks run on every inventory
                units |= {f"ansible/inventories/{r}" for r in regions}
    # a whole helmfile covers its releases
    for u in [u for u in units if u.count("/") == 1 and u.startswith("helm/")]:
        units -= {x for x in units if x.startswith(u + "/")}
    return sorted(units)


# ---------------------------------------------------------------- meaningful changes, read off the IR

def _flat(obj, prefix=()) -> dict:
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flat(v, prefix + (str(k),)))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        for i, v in enumerate(obj):
            out.update(_flat(v, prefix + (str(i),)))
    else:
        out[prefix] = obj
    return out


def _rollout(r) -> str:
    if getattr(r, "type", "") == "canary":
        return f"canary {r.stable_weight}/{r.canary_weight}"
    if getattr(r, "type", "") == "blue-green":
        return f"blue-green (active {r.active})"
    return getattr(r, "type", str(r))


def _size(inst, cloud) -> str:
    return f"{inst.instance_types.get(cloud, '?')} ({inst.vcpus} vCPU, {inst.memory_gib} GiB, {inst.disk_gib} GiB disk)"


def _secrets(settings) -> dict:
    return {".".join(k): v for k, v in _flat(settings.model_dump(mode="json")).items()
            if isinstance(v, str) and v.startswith(SECRET_PREFIXES)}


def _ranges(shards) -> str:
    if not shards:
        return "none"
    nums = sorted(s.number for s in shards)
    runs, start = [], nums[0]
    for a, b in zip(nums, nums[1:] + [None]):
        if b != a + 1:
            runs.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ", ".join(runs)


def _region_changes(a, b, changes: list, risks: list) -> None:
    n = b.name
    say = lambda text: changes.append((n, text))  # noqa: E731
    for what in ("cloud", "cloud_region", "cidr"):
        if getattr(a, what) != getattr(b, what):
            say(f"{what} {getattr(a, what)} → {getattr(b, what)}")
            risks.append((n, f"{what} changed ({getattr(a, what)} → {getattr(b, what)}): the region's network and hosts are replaced"))
    if a.traffic_share != b.traffic_share:
        say(f"traffic share {a.traffic_share:g} % → {b.traffic_share:g} %")
    if a.dr_partner != b.dr_partner:
        say(f"DR partner {a.dr_partner} → {b.dr_partner}")
    # services
    sa, sb = {s.name: s for s in a.services}, {s.name: s for s in b.services}
    for name in sorted(set(sb) - set(sa)):
        say(f"new service {name} ({sb[name].image}:{sb[name].tag})")
    for name in sorted(set(sa) - set(sb)):
        say(f"service {name} removed")
    for name in sorted(set(sa) & set(sb)):
        x, y = sa[name], sb[name]
        if (x.replicas_min, x.replicas_max) != (y.replicas_min, y.replicas_max):
            if x.replicas_min == y.replicas_min:
                say(f"{name} HPA max {x.replicas_max} → {y.replicas_max}")
            else:
                say(f"{name} HPA {x.replicas_min}-{x.replicas_max} → {y.replicas_min}-{y.replicas_max}")
        if x.tag != y.tag or x.image != y.image:
            say(f"{name} image {x.image}:{x.tag} → {y.image}:{y.tag}")
        if x.rollout != y.rollout:
            if _rollout(x.rollout) != _rollout(y.rollout):
                say(f"{name}: {_rollout(x.rollout)} → {_rollout(y.rollout)}")
            else:
                fx, fy = _flat(x.rollout.model_dump(mode="json")), _flat(y.rollout.model_dump(mode="json"))
                say(f"{name} rollout: " + ", ".join(f"{'.'.join(k)} {_short(fx.get(k))} → {_short(fy.get(k))}"
                                                    for k in sorted(set(fx) | set(fy)) if fx.get(k) != fy.get(k)))
        if (x.requests, x.limits) != (y.requests, y.limits):
            say(f"{name} resources requests {x.requests.cpu}/{x.requests.memory} → {y.requests.cpu}/{y.requests.memory}, "
                f"limits {x.limits.cpu}/{x.limits.memory} → {y.limits.cpu}/{y.limits.memory}")
        if x.node_pool != y.node_pool:
            say(f"{name} node pool {x.node_pool} → {y.node_pool}")
        if x.routes != y.routes:
            say(f"{name} routes changed")
    # node pools
    pa, pb = a.settings.kubernetes.node_pools, b.settings.kubernetes.node_pools
    for name in sorted(set(pb) - set(pa)):
        say(f"new node pool {name} ({pb[name].instance_types.get(b.cloud)}, {pb[name].min_nodes}-{pb[name].max_nodes} nodes)")
    for name in sorted(set(pa) - set(pb)):
        say(f"node pool {name} removed")
    for name in sorted(set(pa) & set(pb)):
        x, y = pa[name], pb[name]
        if (x.min_nodes, x.max_nodes) != (y.min_nodes, y.max_nodes):
            say(f"node pool {name} {x.min_nodes}-{x.max_nodes} → {y.min_nodes}-{y.max_nodes} nodes")
        if x.instance_types.get(b.cloud) != y.instance_types.get(b.cloud):
            say(f"node pool {name} instance type {x.instance_types.get(b.cloud)} → {y.instance_types.get(b.cloud)}")
        if x.spot != y.spot:
            say(f"node pool {name} spot {x.spot} → {y.spot}")
    # datastores
    da, db = a.settings.datastores, b.settings.datastores
    for label, x, y in (("PostgreSQL", da.postgres, db.postgres), ("Redis", da.redis, db.redis),
                        ("Elasticsearch", da.elasticsearch, db.elasticsearch)):
        if x.deployment != y.deployment:
            say(f"{label} {x.deployment} → {y.deployment}")
            risks.append((n, f"{label} replaced ({x.deployment} → {y.deployment}): data must be migrated"))
        if x.instance != y.instance:
            say(f"{label} instance {_size(x.instance, b.cloud)} → {_size(y.instance, b.cloud)}")
            risks.append((n, f"{label} resized ({x.instance.instance_types.get(b.cloud)} → {y.instance.instance_types.get(b.cloud)})"))
    if da.postgres.read_replicas != db.postgres.read_replicas:
        say(f"PostgreSQL read replicas {da.postgres.read_replicas} → {db.postgres.read_replicas}")
    if da.postgres.max_connections != db.postgres.max_connections:
        say(f"PostgreSQL max_connections {da.postgres.max_connections} → {db.postgres.max_connections}")
    if da.redis.maxmemory_mb != db.redis.maxmemory_mb:
        say(f"Redis maxmemory {da.redis.maxmemory_mb} → {db.redis.maxmemory_mb} MiB")
    if (da.redis.primaries, da.redis.replicas_per_primary) != (db.redis.primaries, db.redis.replicas_per_primary):
        say(f"Redis {da.redis.primaries} primaries x {da.redis.replicas_per_primary} replicas → "
            f"{db.redis.primaries} x {db.redis.replicas_per_primary}")
        risks.append((n, f"Redis cluster topology changed (hash slots move)"))
    if da.elasticsearch.nodes != db.elasticsearch.nodes:
        say(f"Elasticsearch nodes {da.elasticsearch.nodes} → {db.elasticsearch.nodes}")
    if da.pgbouncer.max_client_conn != db.pgbouncer.max_client_conn:
        say(f"PgBouncer max_client_conn {da.pgbouncer.max_client_conn} → {db.pgbouncer.max_client_conn}")
    # shards
    ra, rb = _ranges(a.shards), _ranges(b.shards)
    if [(s.number, s.first_id, s.last_id) for s in a.shards] != [(s.number, s.first_id, s.last_id) for s in b.shards]:
        say(f"shards {ra} → {rb}")
        risks.append((n, f"shard ranges moved (shards {ra} → {rb}): tenants' data must move with them"))
    # secret references
    ka, kb = _secrets(a.settings), _secrets(b.settings)
    for path in sorted(set(ka) | set(kb)):
        if ka.get(path) != kb.get(path):
            say(f"secret reference {path}: {ka.get(path, '(none)')} → {kb.get(path, '(none)')}")
            if path in ka:
                risks.append((n, f"secret reference changed at {path}"))
    # connections
    ca, cb = {c.id: c for c in a.wiring}, {c.id: c for c in b.wiring}
    for cid in sorted(set(cb) - set(ca)):
        c = cb[cid]
        say(f"new connection {cid} ({c.purpose})")
        if "cloud-firewall" in c.layers or "nftables" in c.layers or "networkpolicy-ingress" in c.layers:
            risks.append((n, f"firewall opened wider: new connection {cid}"))
    for cid in sorted(set(ca) - set(cb)):
        say(f"connection {cid} removed")
    for cid in sorted(set(ca) & set(cb)):
        wider = sorted(set(cb[cid].source.cidrs) - set(ca[cid].source.cidrs))
        if wider:
            say(f"connection {cid} admits {', '.join(wider)} as well")
            risks.append((n, f"firewall opened wider: {cid} from {', '.join(wider)}"))
        elif set(ca[cid].source.cidrs) - set(cb[cid].source.cidrs):
            say(f"connection {cid} narrowed to {', '.join(cb[cid].source.cidrs) or 'no ranges'}")


def _platform_changes(old, new, changes: list, risks: list) -> None:
    a, b = old.spec, new.spec
    for section in ("organization", "clouds", "edge", "slos", "sharding", "disaster_recovery", "cost", "capacity"):
        x, y = _dump(getattr(a, section)), _dump(getattr(b, section))
        if x != y:
            fx, fy = _flat(x), _flat(y)
            paths = [".".join((section,) + k) for k in sorted(set(fx) | set(fy)) if fx.get(k) != fy.get(k)]
            shown = ", ".join(f"{p} {_short(fx.get(tuple(p.split('.')[1:])))} → {_short(fy.get(tuple(p.split('.')[1:])))}"
                              for p in paths[:4])
            changes.append(("", f"{section}: {shown}" + (f" (+{len(paths) - 4} more)" if len(paths) > 4 else "")))


def _dump(v):
    if isinstance(v, dict):
        return {k: _dump(x) for k, x in v.items()}
    return v.model_dump(mode="json") if hasattr(v, "model_dump") else v


def _short(v) -> str:
    if v is None:
        return "(none)"
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."


# ---------------------------------------------------------------- the report

def diff(old, new, base_label: str = "base", old_outputs=None, new_outputs=None) -> Report:
    """Compare two Compiled results (old = base, new = working tree). old_outputs: the base's committed
    generated tree (base_at_ref), read instead of emitting the base's files when it is proven current;
    new_outputs: the same for the working tree's generated/ (working_outputs)."""
    from compiler.cost import estimate
    rep = Report(base_label, regions=len(new.plan.regions))
    po, pn = old.plan, new.plan
    ro, rn = {r.name: r for r in po.regions}, {r.name: r for r in pn.regions}
    changed_regions = sorted(n for n in set(ro) | set(rn) if ro.get(n) != rn.get(n))
    platform_same = po.spec == pn.spec and po.shards == pn.shards and po.registry == pn.registry
    if platform_same and not changed_regions:
        return rep
    for name in [r for r in rn if r not in ro]:
        rep.changes.append(("", f"new region {name} ({rn[name].cloud} {rn[name].cloud_region}, {rn[name].traffic_share:g} % of traffic)"))
    for name in [r for r in ro if r not in rn]:
        rep.changes.append(("", f"region {name} removed"))
        rep.risks.append(("", f"region {name} removed: its infrastructure and data are destroyed on apply"))
    _platform_changes(po, pn, rep.changes, rep.risks)
    for name in rn:
        if name in ro and ro[name] != rn[name]:
            _region_changes(ro[name], rn[name], rep.changes, rep.risks)
    # files: the changed regions and the global files, on both sides
    old_out, new_out = _emit(po, changed_regions, True, old_outputs), _emit(pn, changed_regions, True, new_outputs)
    rep.files = _file_changes(old_out, new_out)
    paths = [p for kinds in rep.files.values() for lst in kinds.values() for p in lst]
    callers = _module_callers([old_out, new_out])
    rep.affected = affected_units(paths, callers, sorted(set(ro) | set(rn)))
    # cost
    eo, en = estimate(po), estimate(pn)
    for r in sorted(set(ro) | set(rn)):
        a = eo.region_total(r) if r in ro else (0.0, 0.0)
        b = en.region_total(r) if r in rn else (0.0, 0.0)
        if a != b:
            rep.cost[r] = (a[0], b[0], a[1], b[1])
    if eo.total != en.total:
        rep.cost["total"] = (eo.total[0], en.total[0], eo.total[1], en.total[1])
    return rep


def _delta(v) -> str:
    from compiler.cost import usd
    lo_a, lo_b, hi_a, hi_b = v
    return f"{usd(lo_a)} - {usd(hi_a)} → {usd(lo_b)} - {usd(hi_b)} ({lo_b - lo_a:+,.0f} floor, {hi_b - hi_a:+,.0f} ceiling)"


def grouped(items: list[tuple[str, str]], regions: int) -> list[str]:
    """One line per distinct change, naming the regions it happens in (in first-seen order)."""
    by_text: dict[str, list[str]] = {}
    for region, text in items:
        by_text.setdefault(text, []).append(region)
    out = []
    for text, where in by_text.items():
        where = [w for w in where if w]
        if not where:
            out.append(text)
        elif len(where) == regions and regions > 1:
            out.append(f"all {regions} regions: {text}")
        else:
            out.append(f"{', '.join(where)}: {text}")
    return out


def _file_rows(rep: Report) -> list[tuple[str, str, int, int, int]]:
    """(target, regions, added, removed, changed): regions with the same counts for a target share a row."""
    rows: dict[tuple, list[str]] = {}
    for (t, r), k in sorted(rep.files.items(), key=lambda kv: (kv[0][0], kv[0][1] or "~")):
        rows.setdefault((t, len(k["added"]), len(k["removed"]), len(k["changed"])), []).append(r or "global")
    out = []
    for (t, a, d, c), regions in rows.items():
        named = [r for r in regions if r != "global"]
        names = regions if len(regions) < 4 else [f"{len(named)} regions" + (" and global" if "global" in regions else "") + ", each"]
        out.append((t, ", ".join(names), a, d, c))
    return out


def render_text(rep: Report) -> str:
    if rep.empty:
        return f"no changes against {rep.base}\n"
    out = [f"platformc diff against {rep.base}", "", "files:"]
    for t, r, a, d, c in _file_rows(rep):
        out.append(f"  {t} ({r}): {a} added, {d} removed, {c} changed")
    out += ["", "changes:"] + [f"  {c}" for c in grouped(rep.changes, rep.regions) or ["(none in the IR; output only)"]]
    if rep.risks:
        out += ["", "risks:"] + [f"  ! {r}" for r in grouped(rep.risks, rep.regions)]
    out += ["", "affected:"] + [f"  {u}" for u in rep.affected or ["(none)"]]
    if rep.cost:
        out += ["", "cost (monthly, floor - ceiling):"] + [f"  {k}: {_delta(v)}" for k, v in rep.cost.items()]
    return "\n".join(out) + "\n"


def render_markdown(rep: Report) -> str:
    if rep.empty:
        return f"### platformc diff\n\nNo changes against `{rep.base}`.\n"
    out = [f"### platformc diff against `{rep.base}`", ""]
    if rep.risks:
        out += ["**Risks**", ""] + [f"- :warning: {r}" for r in grouped(rep.risks, rep.regions)] + [""]
    out += ["**Changes**", ""] + [f"- {c}" for c in grouped(rep.changes, rep.regions) or ["(none in the IR; output only)"]] + [""]
    out += ["**Affected deploy units**", ""] + [f"- `{u}`" for u in rep.affected or ["(none)"]] + [""]
    out += ["**Files**", "", "| region | target | added | removed | changed |", "| --- | --- | ---: | ---: | ---: |"]
    out += [f"| {r} | {t} | {a} | {d} | {c} |" for t, r, a, d, c in _file_rows(rep)]
    if rep.cost:
        out += ["", "**Cost** (monthly, floor - ceiling)", ""] + [f"- {k}: {_delta(v)}" for k, v in rep.cost.items()]
    return "\n".join(out) + "\n"


def render_json(rep: Report) -> str:
    return json.dumps({"base": rep.base, "changes": [{"region": r, "change": c} for r, c in rep.changes],
                       "risks": [{"region": r, "risk": c} for r, c in rep.risks], "affected": rep.affected,
                       "files": [{"target": t, "region": r or "global", **k} for (t, r), k in sorted(rep.files.items())],
                       "cost": {k: dict(zip(("old_low", "new_low", "old_high", "new_high"), v)) for k, v in rep.cost.items()}},
                      indent=2) + "\n"
