"""`make bench`: whole-process wall-clock medians and peak memory of the CLI, against the goals of issue #16.

Every figure is a median of RUNS alternated runs (each round runs every case once in every variant and mode, so
machine load falls on all of them alike), measured with Python bytecode present (a private PYTHONPYCACHEPREFIX,
warmed first: what a user's install has) and without it for platformc's own modules (this environment sets
PYTHONDONTWRITEBYTECODE and the repo has no __pycache__). Beside the wall time, the CPU time (user + sys) of the
process tree, which the machine's load disturbs less. Peak memory is the proportional set size (PSS) summed
over the process tree (the CLI and its forked child), polled from /proc every 2 ms in separate runs.

The scale series compiles the reference scaled to 48 and 120 regions, and 120 regions with a 10,000-row
franchise registry (scripts/scale.py). Jinja's template cache and the no-op state live in a private
PLATFORMC_CACHE_DIR, warmed by the first run as on a user's machine.

    python scripts/bench.py [--runs N] [--quick] [--only SUBSTR,...] [--before DIR] [--fork]

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


def run(cmd: list[str], env: dict, cwd: Path, ok=(0,), poll: bool = False) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds of the process tree, peak tree PSS in MiB or 0.0) of one whole-process run."""
    peak = [0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if poll:
        def watch():
            while proc.poll() is None:
                peak[0] = max(peak[0], tree_pss_kib(proc.pid))
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
    return secs, cpu, peak[0] / 1024


class Case:
    def __init__(self, name, cmd, goal=None, before=None, ok=(0,), env=None, memory_goal=None, memory=False):
        self.name, self.cmd, self.goal, self.before, self.ok = name, cmd, goal, before, ok
        self.env, self.memory_goal, self.memory = env or {}, memory_goal, memory or memory_goal is not None
        self.times: dict[str, list[float]] = {}
        self.cpu: dict[str, list[float]] = {}
        self.peaks: dict[str, list[float]] = {}


def generate(spec: Path, out: Path, *extra) -> list[str]:
    return PLATFORMC + ["generate", "--spec", str(spec), "--out", str(out / "gen"), "--docs-out", str(out / "docs"), *extra]


def cases_for(root: Path, tmp: Path, fork: bool) -> tuple[list[Case], list[list[str]]]:
    """The cases, for the compiler and platform.yaml of the source tree `root`, working under `tmp`."""
    import scale
    ref = root / "platform.yaml"
    specs = {n: scale.write(tmp / f"spec{n}", n, source=ref) for n in (48, 120)}
    specs["registry"] = scale.write(tmp / "spec120r", 120, 10_000, source=ref)
    fresh = lambda d: (lambda: shutil.rmtree(d, ignore_errors=True))  # noqa: E731
    present = tmp / "present"  # a full tree for the --region, no-op and --check cases
    cases = [
        Case("platformc validate platform.yaml", PLATFORMC + ["validate", "platform.yaml"], 0.3),
        Case("generate, reference (12 regions), empty dir", generate(ref, tmp / "o12"), 0.5, fresh(tmp / "o12"),
             memory=True),
        Case("generate --region us-east-1, others present", generate(ref, present, "--region", "us-east-1"), 0.2),
        Case("generate, no-op (nothing changed)", generate(ref, present), 0.3),
        Case("generate --check (up to date)", generate(ref, present, "--check"), 0.5),
        Case("generate, 48 regions, empty dir", generate(specs[48], tmp / "o48"), None, fresh(tmp / "o48")),
        Case("generate, 120 regions, empty dir", generate(specs[120], tmp / "o120"), 3.0, fresh(tmp / "o120"),
             memory_goal=100),
        Case("generate, 120 regions + 10,000-row registry", generate(specs["registry"], tmp / "o120r"), None,
             fresh(tmp / "o120r"), memory_goal=100),
        Case("platformc verify (the reference tree)", PLATFORMC + ["verify", str(present / "gen")], 0.5, ok=(0, 1)),
    ]
    if fork:
        for n, spec in (("12", ref), ("120", specs[120])):
            for label, jobs in (("serial", "1"), ("fork", "2")):
                out = tmp / f"f{n}{label}"
                cases.append(Case(f"  {n} regions, {label} (PLATFORMC_JOBS={jobs})", generate(spec, out), None,
                                  fresh(out), env={"PLATFORMC_JOBS": jobs}))
    warm = [generate(ref, present)] + [PLATFORMC + ["validate", str(s)] for s in specs.values()]
    return cases, warm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 runs, bytecode present only, no per-target table")
    ap.add_argument("--no-targets", action="store_true", help="skip the per-target in-process table")
    ap.add_argument("--only", default="", help="comma-separated substrings of case names to run")
    ap.add_argument("--before", help="also measure the compiler of this source tree (PYTHONPATH), alternated")
    ap.add_argument("--fork", action="store_true", help="add the fork/serial comparison at 12 and 120 regions")
    ap.add_argument("--modes", default="bytecode,no bytecode")
    a = ap.parse_args()
    runs = 3 if a.quick else a.runs
    tmp = Path(tempfile.mkdtemp(prefix="platformc-bench-"))
    variants = {"now": (REPO, None)}
    if a.before:
        variants = {"before": (Path(a.before).resolve(), str(Path(a.before).resolve())), "after": (REPO, None)}
    base_env = dict(os.environ)
    base_env.pop("PYTHONPATH", None)
    modes = {m: None for m in a.modes.split(",") if m}
    if a.quick:
        modes = {"bytecode": None}
    table: dict[str, list[Case]] = {}
    envs: dict[tuple, dict] = {}
    for v, (root, path) in variants.items():
        vtmp = tmp / v
        table[v], warm = cases_for(root, vtmp, a.fork)
        if a.only:
            keys = [k.strip() for k in a.only.split(",")]
            table[v] = [c for c in table[v] if any(k in c.name for k in keys)] or table[v][:1]
        for m in modes:
            env = dict(base_env, PLATFORMC_CACHE_DIR=str(vtmp / "cache"))
            if path:
                env["PYTHONPATH"] = path
            if m == "bytecode":
                env["PYTHONPYCACHEPREFIX"] = str(vtmp / "pyc")
                env.pop("PYTHONDONTWRITEBYTECODE", None)
            else:
                env["PYTHONDONTWRITEBYTECODE"] = "1"
            envs[(v, m)] = env
        warm_env = dict(envs[(v, "bytecode" if "bytecode" in modes else next(iter(modes)))], PLATFORMC_FULL="1")
        for cmd in warm:  # bytecode, the template cache, the tree the --region/no-op/--check cases find
            run(cmd, warm_env, root)
    load0 = os.getloadavg()
    names = [c.name for c in next(iter(table.values()))]
    for _ in range(runs):
        for i, _name in enumerate(names):
            for v in variants:
                c = table[v][i]
                for m in modes:
                    if c.before:
                        c.before()
                    secs, cpu, _ = run(c.cmd, dict(envs[(v, m)], **c.env), variants[v][0], c.ok)
                    c.times.setdefault(m, []).append(secs)
                    c.cpu.setdefault(m, []).append(cpu)
    for _ in range(max(2, runs // 2)):  # memory: separate runs, polled
        for i, _name in enumerate(names):
            for v in variants:
                c = table[v][i]
                if not c.memory:
                    continue
                for m in modes:
                    if c.before:
                        c.before()
                    _, _, peak = run(c.cmd, dict(envs[(v, m)], **c.env), variants[v][0], c.ok, poll=True)
                    c.peaks.setdefault(m, []).append(peak)
    load = tuple(round((x + y) / 2, 2) for x, y in zip(load0, os.getloadavg()))
    report(table, list(modes), runs, load)
    if not (a.quick or a.no_targets or a.before):
        per_target_table()
    shutil.rmtree(tmp, ignore_errors=True)


def _verdict(value, goal):
    return "" if goal is None else ("ok" if value <= goal else "OVER")


def report(table: dict, modes: list, runs: int, load) -> None:
    cols = [(v, m) for v in table for m in modes]
    label = lambda v, m: m if len(table) == 1 else f"{v}, {m}"  # noqa: E731
    print(f"medians of {runs} alternated whole-process runs; machine: {os.cpu_count()} cores, load avg {load}")
    print("wall: elapsed (what the goals are about); cpu: user+sys of the process tree (less sensitive to load)")
    print(f"{'':<46} {'':>7}" + "".join(f" | {label(v, m):^24}" for v, m in cols))
    print(f"{'what':<46} {'goal':>7}" + "".join(f" | {'wall':>9} {'':<4} {'cpu':>8}" for _ in cols))
    first = next(iter(table.values()))
    for i, c0 in enumerate(first):
        row = f"{c0.name:<46} {'' if c0.goal is None else f'{c0.goal:.2f}s':>7}"
        for v, m in cols:
            c = table[v][i]
            w = statistics.median(c.times[m])
            row += f" | {w:>8.3f}s {_verdict(w, c.goal):<4} {statistics.median(c.cpu[m]):>7.3f}s"
        print(row)
    names = [c.name for c in first]
    plain, reg = "generate, 120 regions, empty dir", "generate, 120 regions + 10,000-row registry"
    if plain in names and reg in names:
        row = f"{'  the registry adds (120 regions)':<46} {'0.30s':>7}"
        for v, m in cols:
            cs = {c.name: c for c in table[v]}
            w = statistics.median(cs[reg].times[m]) - statistics.median(cs[plain].times[m])
            cpu = statistics.median(cs[reg].cpu[m]) - statistics.median(cs[plain].cpu[m])
            row += f" | {w:>8.3f}s {_verdict(w, 0.3):<4} {cpu:>7.3f}s"
        print(row)
    if any(c.peaks for c in first):
        print("\npeak PSS summed over the process tree (median of the polled runs)")
        for i, c0 in enumerate(first):
            if not c0.peaks:
                continue
            goal = c0.memory_goal
            row = f"{c0.name:<46} {'' if goal is None else f'{goal}MiB':>7}"
            for v, m in cols:
                p = statistics.median(table[v][i].peaks[m])
                row += f" | {p:>7.1f}MiB {_verdict(p, goal):<4} {'':>8}"
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
