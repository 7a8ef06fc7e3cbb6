"""`make bench`: every row of issue #16's table (and #14's diff figure) against its goal, whole processes.

Every figure is a median of RUNS alternated rounds (each round runs every case once in every variant and mode, so
machine load falls on all of them alike), measured with Python bytecode present (a private PYTHONPYCACHEPREFIX,
warmed first: what a user's install has) and without it for platformc's own modules (this environment sets
PYTHONDONTWRITEBYTECODE and the repo has no __pycache__). Beside the wall time, the CPU time (user + sys) of the
process tree, which the machine's load disturbs less. Peak memory is the proportional set size (PSS) summed
over the process tree (the CLI and any child), polled from /proc every 2 ms in separate runs.

Rows: validate; generate of the reference into an empty directory (beside it, the floor of this file system:
the same files written by a plain makedirs/open/write loop); `--region us-east-1` with the other regions present
(the spec as it was, and with its bytes changed before each run: the user's edit-then-regenerate loop, which no
cache keyed by the spec can serve; the goal is that row's); the no-op generate; `--check`; the reference scaled to 48 and 120 regions and 120 regions with a 10,000-row
franchise registry (scripts/scale.py; "the registry adds" is the median of the rounds' paired differences); `platformc diff`
on a change touching all 12 regions, in a scratch git repository whose committed generated/ was made by this
platformc (as in a user's repository): `--base HEAD~1` after the user's loop (change, `platformc generate`,
commit: #14's goal), and the same change with the spec edited but not regenerated (both sides compiled, the
working tree's side emitted); and Kapitan 0.36.3 compiling an equivalent workload (below), run
right after platformc in every round: the speed ratio is the median of the per-round ratios (paired).

Kapitan's workload: one Kapitan target per region plus one for the platform-wide files, each compiling, with
the jinja2 input type, one template per file platformc writes for it (generated/ and docs/): the file's text
with every occurrence of the region's name taken from the target's inventory (`inventory.parameters.region`),
the rest raw. So Kapitan renders its inventory (reclass) and writes the same files and bytes; it does no
validation, resolution or emission logic, so the ratio flatters Kapitan. It runs from its own venv
(.venv-kapitan, git-ignored), which this script creates with pip on first use (`--no-kapitan` skips it).

Mode "server": with bytecode, and a compile server (`platformc server start`, compiler/server.py) running for the
measured tree in its own cache directory, started once after the warm-up: each command is a client handing its
work to a fork of the warm server. Its CPU adds the server's waited-for children (cutime/cstime in /proc) to the
client's, and its peak PSS sums the client's tree and the server's (the server's own idle pages included).

Jinja's template cache and the no-op state live in a private PLATFORMC_CACHE_DIR, warmed by the first run as on
a user's machine. Output directories are made under the repository's file system (.bench/, git-ignored):
creating files there costs what it costs a user of this checkout. An "empty dir" case gets its empty directory
by moving the previous run's output aside, not by deleting it (see aside(): on this machine's journal-less ext4
a deletion slows every file creation for minutes after); the moved trees are deleted once, at the end.

    python scripts/bench.py [--runs N] [--quick] [--only SUBSTR,...] [--before DIR] [--fork] [--no-kapitan]

--before DIR also measures the compiler of another source tree (e.g. `git archive <commit> | tar -x -C DIR`),
with that tree's own platform.yaml, alternated with this one: before/after figures under the same load.
--fork adds the fork/serial comparison (PLATFORMC_JOBS=1 against PLATFORMC_JOBS=2) at 12 and 120 regions.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLATFORMC = [str(Path(sys.executable).parent / "platformc")]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))


def _children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def _pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_pss_kib(root: int) -> int:
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += _pss_kib(pid)
        stack += _children(pid)
    return total


def _server_cpu(pid: int) -> float:
    """CPU seconds of the compile server's children it has waited for (its forked commands, and theirs)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        raise SystemExit("the compile server exited (platformc's sources changed during the bench?): "
                         "its figures would be cold runs") from None
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")  # cutime, cstime


def _server_idle(pid: int) -> None:
    """Wait until the server has reaped the command's child, so that its CPU time is counted."""
    deadline = time.monotonic() + 2
    while _children(pid) and time.monotonic() < deadline:
        time.sleep(0.001)


def run(cmd: list[str], env: dict, cwd: Path, ok=(0,), poll: bool = False,
        server: int | None = None) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the process tree, peak tree PSS in MiB or 0.0) of one whole-process run.
    `server`: the pid of the compile server that runs the command; its tree's CPU and PSS count too."""
    peak = [0]
    if server:
        _server_idle(server)
        server_before = _server_cpu(server)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if poll:
        def watch():
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_pss_kib(proc.pid) + (tree_pss_kib(server) if server else 0))
                time.sleep(0.002)
        th = threading.Thread(target=watch, daemon=True)
        th.start()
    out, err = proc.communicate()
    secs = time.perf_counter() - t
    if poll:
        th.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{err.decode()[-3000:]}")
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if server:
        _server_idle(server)
        cpu += _server_cpu(server) - server_before
    return secs, cpu, peak[0] / 1024


class Case:
    def __init__(self, name, cmd, goal=None, before=None, ok=(0,), env=None, memory_goal=None, memory=False,
                 cwd=None, cpu_goal=False):
        self.name, self.cmd, self.goal, self.before, self.ok = name, cmd, goal, before, ok
        self.cwd, self.cpu_goal = cwd, cpu_goal
        self.env, self.memory_goal, self.memory = env or {}, memory_goal, memory or memory_goal is not None
        self.times: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.peaks: dict[str, list[float]] = {}


def edit(spec: Path):
    """A `before` hook: change the spec's bytes (a trailing comment, counting up) and nothing it means."""
    count = [0]

    def change():
        count[0] += 1
        text = spec.read_text().rstrip("\n").rsplit("\n# bench edit ", 1)[0]
        spec.write_text(f"{text}\n# bench edit {count[0]}\n")
    return change


def generate(spec: Path, out: Path, *extra) -> list[str]:
    return PLATFORMC + ["generate", "--spec", str(spec), "--out", str(out / "gen"), "--docs-out", str(out / "docs"), *extra]


KAPITAN_VERSION = "0.36.3"
KAPITAN_VENV = REPO / ".venv-kapitan"


def kapitan_bin() -> Path | None:
    """.venv-kapitan/bin/kapitan, installed from PyPI with pip on first use (None when that fails)."""
    exe = KAPITAN_VENV / "bin" / "kapitan"
    if exe.exists():
        return exe
    print(f"installing Kapitan {KAPITAN_VERSION} into {KAPITAN_VENV} (first use) ...", flush=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(KAPITAN_VENV)], check=True)
        subprocess.run([str(KAPITAN_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                        f"kapitan=={KAPITAN_VERSION}"], check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"  Kapitan not installed ({exc}); its row is left out")
        return None
    return exe if exe.exists() else None


def kapitan_project(tree: Path, spec: Path, dest: Path) -> tuple[int, int]:
    """The equivalent Kapitan project (see the module docstring) for the platformc output in `tree`
    (gen/ and docs/ of `spec`); (files, bytes) it compiles."""
    import json

    import yaml
    regions = list(yaml.safe_load(spec.read_text("utf-8"))["regions"])
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "inventory/targets").mkdir(parents=True)
    (dest / "inventory/classes").mkdir(parents=True)
    (dest / "inventory/classes/common.yml").write_text("parameters:\n  platform: bench\n")
    files = nbytes = 0
    owners: dict[str, list[tuple[str, str]]] = {}
    for root in ("gen", "docs"):
        manifest = json.loads((tree / root / ".platformc-manifest.json").read_text())["files"]
        for rel, owner in manifest.items():
            region = owner.split("/", 1)[1]
            owners.setdefault(region if region in regions else "global", []).append((root, rel))
    for target, rels in owners.items():
        tdir = dest / "templates" / target
        for root, rel in rels:
            text = (tree / root / rel).read_text("utf-8")
            if "{% raw %}" in text or "{% endraw %}" in text:
                continue
            files += 1
            nbytes += len(text.encode())
            body = "{% raw %}" + (text.replace(target, "{% endraw %}{{ inventory.parameters.region }}{% raw %}")
                                  if target != "global" else text) + "{% endraw %}\n"  # jinja drops one final newline
            out = tdir / root / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(body, "utf-8")
        (dest / f"inventory/targets/{target}.yml").write_text(
            f"classes:\n  - common\nparameters:\n  region: {target}\n  kapitan:\n    vars:\n      target: {target}\n"
            f"    compile:\n      - output_path: .\n        input_type: jinja2\n        input_paths:\n"
            f"          - templates/{target}\n")
    return files, nbytes


TRASH: list[Path] = []  # where aside() moved outputs (inside the run directory, deleted with it at the end)


def aside(d: Path) -> None:
    """Make `d` absent without deleting it now: rename it into the run's trash, removed after the measurements.

    This machine's ext4 runs without a journal (dmesg: "mounted filesystem ... without journal"); there the
    kernel's inode allocator skips inodes freed in the last 60-300 s (fs/ext4/ialloc.c, recently_deleted()),
    re-reading an inode table block for each one it passes, on every file and directory created. After an
    `rm -rf` of a 1,200-file tree, perf shows a third of the next reference generate in recently_deleted():
    1.3-1.7 s of sys time instead of 0.1 s. That is the benchmark's own deletion billed to the next run (and,
    for minutes, to every run after it), not a cost a user's generate has, so no output is deleted mid-bench."""
    if d.exists():
        TRASH.append(d.parent / f".trash-{len(TRASH)}-{d.name}")
        d.rename(TRASH[-1])


def fs_floor(tree: Path, dest: Path) -> tuple[float, float]:
    """(wall, CPU) of writing the files of `tree` into an empty `dest` with a plain loop: makedirs once per
    directory, open/write/close per file, nothing else. The floor of this file system for that tree."""
    items = []
    for root, _dirs, names in os.walk(tree):
        for n in names:
            if not n.startswith(".platformc"):
                p = Path(root) / n
                items.append((p.relative_to(tree), p.read_bytes()))
    aside(dest)
    c0, t0 = os.times(), time.perf_counter()
    made = set()
    for rel, data in items:
        d = dest / rel.parent
        if d not in made:
            os.makedirs(d, exist_ok=True)
            made.add(d)
        fd = os.open(dest / rel, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    c1 = os.times()
    secs = time.perf_counter() - t0
    aside(dest)
    return secs, (c1.user - c0.user) + (c1.system - c0.system)


CPU_LOOP = "s = 0\nfor i in range(2_000_000):\n    s += i"


def cpu_reference() -> float:
    """Wall seconds of a fixed pure-Python loop in a fresh `python -S` (median of 5): this machine's speed when the
    rounds ran. A shared host's speed drifts (the same loop has taken 0.2 and 0.33 s in one afternoon), and a
    figure compared with another run's means little unless this one is close to that run's."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-S", "-c", CPU_LOOP], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def diff_repo(root: Path, dest: Path, env: dict, regenerate: bool = False) -> Path:
    """A scratch platform repository: the reference spec and its generated/ (made by this platformc) committed,
    then a change touching every region (Redis maxmemory at the global layer) in the working tree; with
    `regenerate`, the user's loop goes on: `platformc generate` and a second commit (HEAD~1 is the base)."""
    import re
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    spec = (root / "platform.yaml").read_text("utf-8")
    (dest / "platform.yaml").write_text(spec, "utf-8")
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run(git + ["init", "-q"], cwd=dest, check=True)
    run(PLATFORMC + ["generate"], dict(env, PLATFORMC_FULL="1"), dest)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    subprocess.run(git + ["commit", "-qm", "base"], cwd=dest, check=True)
    changed, n = re.subn(r"(\n      maxmemory_mb: )(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 2048}", spec, count=1)
    if not n:
        raise SystemExit("bench: no maxmemory_mb in the reference's global settings to change")
    (dest / "platform.yaml").write_text(changed, "utf-8")
    if regenerate:
        run(PLATFORMC + ["generate"], dict(env, PLATFORMC_FULL="1"), dest)
        subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
        subprocess.run(git + ["commit", "-qm", "a change, regenerated"], cwd=dest, check=True)
    return dest


def cases_for(root: Path, tmp: Path, fork: bool, env: dict) -> tuple[list[Case], list[list[str]]]:
    """The cases, for the compiler and platform.yaml of the source tree `root`, working under `tmp`."""
    import scale
    ref = root / "platform.yaml"
    specs = {n: scale.write(tmp / f"spec{n}", n, source=ref) for n in (48, 120)}
    specs["registry"] = scale.write(tmp / "spec120r", 120, 10_000, source=ref)
    fresh = lambda d: (lambda: aside(d))  # noqa: E731
    present = tmp / "present"  # a full tree for the --region, no-op and --check cases
    # The user's loop is edit, then `--region`: a copy of the reference whose last line (a comment) changes before
    # each run, so that nothing keyed by the spec's bytes (no-op state, any cache) can stand in for the compile.
    edited = tmp / "edited" / "platform.yaml"
    edited.parent.mkdir(parents=True, exist_ok=True)
    edited.write_bytes(ref.read_bytes())
    present_edited = tmp / "present-edited"
    repo = diff_repo(root, tmp / "diffrepo", env)
    committed = diff_repo(root, tmp / "diffcommit", env, regenerate=True)
    cases = [
        Case("validate platform.yaml", PLATFORMC + ["validate", "platform.yaml"], 0.3),
        Case("generate, reference (12 regions), empty dir", generate(ref, tmp / "o12"), 0.5, fresh(tmp / "o12"),
             memory=True),
        Case("generate --region us-east-1, others present", generate(ref, present, "--region", "us-east-1"), None),
        Case("  --region us-east-1, spec edited each run", generate(edited, present_edited, "--region", "us-east-1"),
             0.2, edit(edited)),
        Case("generate, no-op (nothing changed)", generate(ref, present), 0.3),
        Case("generate --check (up to date)", generate(ref, present, "--check"), None),
        Case("generate, 48 regions, empty dir", generate(specs[48], tmp / "o48"), None, fresh(tmp / "o48")),
        Case("generate, 120 regions, empty dir", generate(specs[120], tmp / "o120"), 3.0, fresh(tmp / "o120"),
             memory_goal=100),
        Case("generate, 120 regions + 10,000-row registry", generate(specs["registry"], tmp / "o120r"), None,
             fresh(tmp / "o120r"), memory_goal=100),
        # #14's goal: "diff on the reference against HEAD~1", the commit a user's loop makes (generated/ committed)
        Case("diff --base HEAD~1, a change in all 12 regions", PLATFORMC + ["diff", "--base", "HEAD~1"], 1.0,
             cwd=committed),
        Case("  diff, same change, spec edited, not regenerated", PLATFORMC + ["diff"], None, cwd=repo),
        Case("verify (the reference tree)", PLATFORMC + ["verify", str(present / "gen")], 0.5, ok=(0, 1)),
    ]
    if fork:
        for n, spec in (("12", ref), ("120", specs[120])):
            for label, jobs in (("serial", "1"), ("fork", "2")):
                out = tmp / f"f{n}{label}"
                cases.append(Case(f"  {n} regions, {label} (PLATFORMC_JOBS={jobs})", generate(spec, out), None,
                                  fresh(out), env={"PLATFORMC_JOBS": jobs}))
    warm = [generate(ref, present), generate(edited, present_edited)] + [PLATFORMC + ["validate", str(s)] for s in specs.values()]
    return cases, warm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="3 runs, bytecode present only, no per-target table")
    ap.add_argument("--no-targets", action="store_true", help="skip the per-target in-process table")
    ap.add_argument("--no-kapitan", action="store_true", help="skip the Kapitan comparison")
    ap.add_argument("--only", default="", help="comma-separated substrings of case names to run")
    ap.add_argument("--before", help="also measure the compiler of this source tree (PYTHONPATH), alternated")
    ap.add_argument("--fork", action="store_true", help="add the fork/serial comparison at 12 and 120 regions")
    ap.add_argument("--modes", default="bytecode,no bytecode,server")
    a = ap.parse_args()
    runs = 3 if a.quick else a.runs
    (REPO / ".bench").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=REPO / ".bench"))
    try:
        _bench(a, runs, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bench(a, runs: int, tmp: Path) -> None:
    # each variant runs its own tree's compiler (PYTHONPATH ahead of the editable install's finder)
    variants = {"now": (REPO, str(REPO))}
    if a.before:
        variants = {"before": (Path(a.before).resolve(), str(Path(a.before).resolve())), "after": (REPO, str(REPO))}
    base_env = dict(os.environ)
    base_env.pop("PYTHONPATH", None)
    modes = {m: None for m in a.modes.split(",") if m}
    if a.quick:
        modes = {"bytecode": None}
    servers: dict[tuple, int] = {}  # (variant, "server") -> the pid of that variant's compile server
    table: dict[str, list[Case]] = {}
    envs: dict[tuple, dict] = {}
    for v, (root, path) in variants.items():
        vtmp = tmp / v
        vtmp.mkdir(parents=True)
        for m in modes:
            env = dict(base_env, PLATFORMC_CACHE_DIR=str(vtmp / "cache"))
            if path:
                env["PYTHONPATH"] = path
            if m in ("bytecode", "server"):
                env["PYTHONPYCACHEPREFIX"] = str(vtmp / "pyc")
                env.pop("PYTHONDONTWRITEBYTECODE", None)
            else:
                env["PYTHONDONTWRITEBYTECODE"] = "1"
            if m == "server":  # its own cache directory: the other modes' commands must not find the server
                env["PLATFORMC_CACHE_DIR"] = str(vtmp / "cache-server")
            envs[(v, m)] = env
        first = envs[(v, "bytecode" if "bytecode" in modes else next(iter(modes)))]
        table[v], warm = cases_for(root, vtmp, a.fork, first)
        if a.only:
            keys = [k.strip() for k in a.only.split(",")]
            table[v] = [c for c in table[v] if any(k in c.name for k in keys)] or table[v][:1]
        for cmd in warm:  # bytecode, the template cache, the tree the --region/no-op/--check cases find
            run(cmd, dict(first, PLATFORMC_FULL="1"), root)
        if "server" in modes:
            senv = envs[(v, "server")]
            for cmd in warm:
                run(cmd, dict(senv, PLATFORMC_FULL="1", PLATFORMC_SERVER="0"), root)
            servers[(v, "server")] = start_server(root, senv)
    try:
        _rounds(a, runs, tmp, variants, modes, table, envs, servers, base_env)
    finally:
        for (v, _m), _pid in servers.items():
            subprocess.run(PLATFORMC + ["server", "stop"], env=envs[(v, "server")], capture_output=True)


def start_server(root: Path, env: dict) -> int:
    """`platformc server start` for the source tree `root`: its pid."""
    out = subprocess.run(PLATFORMC + ["server", "start"], env=env, cwd=root, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"platformc server start failed: {out.stderr}")
    return int(out.stdout.split("pid ")[1].split(",")[0])


def _rounds(a, runs, tmp, variants, modes, table, envs, servers, base_env) -> None:
    with_ref = any(c.name == "generate, reference (12 regions), empty dir" for c in next(iter(table.values())))
    kapitan = kapitan_bin() if with_ref and not a.no_kapitan else None
    floor = fs_floor(tmp / next(iter(variants)) / "present", tmp / "floor")
    kap_cmd = kap_cwd = None
    kap_size = (0, 0)
    if kapitan:
        kap_cwd = tmp / "kapitan"
        kap_size = kapitan_project(tmp / next(iter(variants)) / "present", variants[next(iter(variants))][0] / "platform.yaml", kap_cwd)
        kap_cmd = [str(kapitan), "compile"]
        kenv = {k: v for k, v in base_env.items() if not k.startswith("PYTHON")}
        run(kap_cmd, kenv, kap_cwd)  # warm (its own bytecode came with pip)
    kap_times: list[tuple[float, float]] = []
    load0 = os.getloadavg()
    speed0 = cpu_reference()
    names = [c.name for c in next(iter(table.values()))]
    for _ in range(runs):
        for i, _name in enumerate(names):
            for v in variants:
                c = table[v][i]
                for m in modes:
                    if c.before:
                        c.before()
                    secs, cpu, _ = run(c.cmd, dict(envs[(v, m)], **c.env), c.cwd or variants[v][0], c.ok,
                                       server=servers.get((v, m)))
                    c.times.setdefault(m, []).append(secs)
                    c.cpu.setdefault(m, []).append(cpu)
            if kap_cmd and names[i] == "generate, reference (12 regions), empty dir":
                aside(kap_cwd / "compiled")  # right after platformc's: paired
                kap_times.append(run(kap_cmd, kenv, kap_cwd)[:2])
    for _ in range(max(2, runs // 2)):  # memory: separate runs, polled
        for i, _name in enumerate(names):
            for v in variants:
                c = table[v][i]
                if not c.memory:
                    continue
                for m in modes:
                    if c.before:
                        c.before()
                    _, _, peak = run(c.cmd, dict(envs[(v, m)], **c.env), c.cwd or variants[v][0], c.ok, poll=True,
                                     server=servers.get((v, m)))
                    c.peaks.setdefault(m, []).append(peak)
    load = tuple(round((x + y) / 2, 2) for x, y in zip(load0, os.getloadavg()))
    report(table, list(modes), runs, load, floor, kap_times, kap_size)
    print(f"machine speed: a fixed pure-Python loop (scripts/bench.py CPU_LOOP, python -S) took {speed0:.3f} s before "
          f"the rounds and {cpu_reference():.3f} s after them")
    if not (a.quick or a.no_targets or a.before):
        per_target_table()


def _verdict(value, goal, at_least: bool = False):
    if goal is None:
        return ""
    return "ok" if (value >= goal if at_least else value <= goal) else "OVER" if not at_least else "UNDER"


def report(table: dict, modes: list, runs: int, load, floor=None, kap_times=(), kap_size=(0, 0)) -> None:
    cols = [(v, m) for v in table for m in modes]
    label = lambda v, m: m if len(table) == 1 else f"{v}, {m}"  # noqa: E731
    med = statistics.median
    print(f"medians of {runs} alternated whole-process rounds; machine: {os.cpu_count()} cores, load avg {load}")
    print("wall: elapsed (what the goals are about, unless the goal is marked cpu); cpu: user+sys of the process tree")
    print(f"{'':<48} {'':>8}" + "".join(f" | {label(v, m):^24}" for v, m in cols))
    print(f"{'what':<48} {'goal':>8}" + "".join(f" | {'wall':>9} {'':<4} {'cpu':>8}" for _ in cols))
    first = next(iter(table.values()))
    for i, c0 in enumerate(first):
        goal = "" if c0.goal is None else f"{c0.goal:.2f}s" + (" cpu" if c0.cpu_goal else "")
        row = f"{c0.name:<48} {goal:>8}"
        for v, m in cols:
            c = table[v][i]
            w, cpu = med(c.times[m]), med(c.cpu[m])
            wv = "" if c.cpu_goal else _verdict(w, c.goal)
            cv = _verdict(cpu, c.goal) if c.cpu_goal else ""
            row += f" | {w:>8.3f}s {wv:<4} {cpu:>7.3f}s{(' ' + cv) if cv else ''}"
        print(row)
        if c0.name.startswith("generate, reference") and floor:
            print(f"{'  floor: the same files, plain makedirs/open/write':<48} {'':>8} | {floor[0]:>8.3f}s {'':<4} "
                  f"{floor[1]:>7.3f}s   (this file system; in-process, once)")
    names = [c.name for c in first]
    plain, reg = "generate, 120 regions, empty dir", "generate, 120 regions + 10,000-row registry"
    if plain in names and reg in names:
        row = f"{'  the registry adds (120 regions, paired)':<48} {'0.30s':>8}"
        for v, m in cols:
            cs = {c.name: c for c in table[v]}
            # Paired: each round ran the two cases one after the other, so the median of the rounds' differences
            # leaves out most of the drift a difference of two ~3 s medians carries (+-0.2 s on this VM).
            w = med([r - p for r, p in zip(cs[reg].times[m], cs[plain].times[m])])
            cpu = med([r - p for r, p in zip(cs[reg].cpu[m], cs[plain].cpu[m])])
            row += f" | {w:>8.3f}s {_verdict(w, 0.3):<4} {cpu:>7.3f}s"
        print(row)
    spread(table, cols, first)
    ref = "generate, reference (12 regions), empty dir"
    if kap_times and ref in names:
        kw, kc = med([t for t, _ in kap_times]), med([c for _, c in kap_times])
        print(f"{f'Kapitan {KAPITAN_VERSION}, same files ({kap_size[0]}, {kap_size[1] / 1e6:.1f} MB)':<48} {'':>8} | "
              f"{kw:>8.3f}s {'':<4} {kc:>7.3f}s   (its own venv; run after platformc in each round)")
        row = f"{'  speed vs Kapitan, paired (Kapitan / platformc)':<48} {'6.0x':>8}"
        for v, m in cols:
            c = {x.name: x for x in table[v]}[ref]
            rw = med([k[0] / p for k, p in zip(kap_times, c.times[m])])
            rc = med([k[1] / p for k, p in zip(kap_times, c.cpu[m])])
            row += f" | {rw:>8.1f}x {_verdict(rw, 6.0, True):<4} {rc:>7.1f}x"
        print(row)
    if any(c.peaks for c in first):
        print("\npeak PSS summed over the process tree (median of the polled runs)")
        for i, c0 in enumerate(first):
            if not c0.peaks:
                continue
            goal = c0.memory_goal
            row = f"{c0.name:<48} {'' if goal is None else f'{goal}MiB':>8}"
            for v, m in cols:
                p = med(table[v][i].peaks[m])
                row += f" | {p:>7.1f}MiB {_verdict(p, goal):<4} {'':>8}"
            print(row)


def _quartiles(xs: list) -> tuple[float, float]:
    if len(xs) < 4:
        return min(xs), max(xs)
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def spread(table: dict, cols: list, first: list) -> None:
    """The lower and upper quartile of each row with a wall goal: a verdict whose quartiles straddle the goal is
    within this VM's run-to-run noise (+-20 % here), not a margin."""
    rows = [(i, c0) for i, c0 in enumerate(first) if c0.goal is not None and not c0.cpu_goal]
    if not rows:
        return
    print(f"{'  spread of the rows with a goal (wall quartiles)':<48} {'':>8}" + "".join(f" | {'':>24}" for _ in cols))
    for i, c0 in rows:
        row = f"{'    ' + c0.name.strip():<48.48} {f'{c0.goal:.2f}s':>8}"
        for v, m in cols:
            lo, hi = _quartiles(table[v][i].times[m])
            straddles = lo <= c0.goal <= hi
            row += f" | {f'{lo:.3f}-{hi:.3f}s':>15} {'noise' if straddles else '':<8}"
        print(row)


def per_target_table() -> None:
    from compiler import targets
    from compiler.pipeline import compile_file
    plan = compile_file(str(REPO / "platform.yaml")).plan
    print("\nemission per target, 12 regions + global (in-process, median of 4 warm runs; budget 0.100 s):")
    for name in targets.available():
        mod = targets.load(name)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            for r in plan.regions:
                if hasattr(mod, "emit_region"):
                    mod.emit_region(plan, r)
            if hasattr(mod, "emit_global"):
                mod.emit_global(plan)
            times.append(time.perf_counter() - t)
        secs = statistics.median(times[1:])  # the first run pays for template compilation
        print(f"  {name:<14} {secs:>8.4f}s{'' if secs < 0.1 else '  OVER BUDGET'}")


if __name__ == "__main__":
    main()
