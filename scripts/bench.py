"""`make bench`: whole-process wall-clock medians and peak memory of the CLI, against the goals of issue #16.

Every figure is a median of RUNS alternated runs (each round runs every case once, so machine load falls on
all of them alike), measured twice: with Python bytecode present (a private PYTHONPYCACHEPREFIX, warmed
first: what a user's install has) and without it for platformc's own modules (this environment sets
PYTHONDONTWRITEBYTECODE and the repo has no __pycache__). Peak memory is the proportional set size (PSS)
summed over the process tree (the CLI and its forked child), polled from /proc every 2 ms in separate runs.

The scale series compiles the reference scaled to 48 and 120 regions, and 120 regions with a 10,000-row
franchise registry (scripts/scale.py). Jinja's template cache and the no-op state live in a private
PLATFORMC_CACHE_DIR, warmed by the first run as on a user's machine.

    python scripts/bench.py [--runs N] [--quick] [--no-targets]
"""

from __future__ import annotations

import argparse
import os
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


CWD = [REPO]


def run(cmd: list[str], env: dict, ok=(0,), poll: bool = False) -> tuple[float, float]:
    """(wall seconds, peak tree PSS in MiB or 0.0) of one whole-process run."""
    peak = [0]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=CWD[0], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
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
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{err.decode()}")
    return secs, peak[0] / 1024


class Case:
    def __init__(self, name, cmd, goal=None, before=None, ok=(0,), env=None, memory_goal=None):
        self.name, self.cmd, self.goal, self.before, self.ok = name, cmd, goal, before, ok
        self.env, self.memory_goal = env or {}, memory_goal
        self.times: dict[str, list[float]] = {}
        self.peaks: dict[str, list[float]] = {}


def generate(spec: Path, out: Path, *extra) -> list[str]:
    return PLATFORMC + ["generate", "--spec", str(spec), "--out", str(out / "gen"), "--docs-out", str(out / "docs"), *extra]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="3 runs, bytecode present only, no per-target table")
    ap.add_argument("--no-targets", action="store_true", help="skip the per-target in-process table")
    ap.add_argument("--only", default="", help="comma-separated substrings of case names to run")
    ap.add_argument("--src", help="measure the compiler package of this source tree instead (PYTHONPATH), e.g. an "
                                  "older commit exported with git archive, for before/after figures")
    a = ap.parse_args()
    runs = 3 if a.quick else a.runs
    import scale

    tmp = Path(tempfile.mkdtemp(prefix="platformc-bench-"))
    if a.src:
        CWD[0] = Path(a.src).resolve()
    ref = CWD[0] / "platform.yaml"
    specs = {}
    for n in (48, 120):
        specs[n] = scale.write(tmp / f"spec{n}", n, source=ref)
    specs["registry"] = scale.write(tmp / "spec120r", 120, 10_000, source=ref)
    fresh = lambda d: (lambda: shutil.rmtree(d, ignore_errors=True))  # noqa: E731
    present = tmp / "present"  # a full tree for the --region, no-op and --check cases
    cases = [
        Case("platformc validate platform.yaml", PLATFORMC + ["validate", "platform.yaml"], 0.3),
        Case("generate, reference (12 regions), empty dir", generate(ref, tmp / "o12"), 0.5, fresh(tmp / "o12"),
             memory_goal=None),
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
    if a.only:
        keys = [k.strip() for k in a.only.split(",")]
        cases = [c for c in cases if any(k in c.name for k in keys)]
    base_env = dict(os.environ, PLATFORMC_CACHE_DIR=str(tmp / "cache"))
    if a.src:
        base_env["PYTHONPATH"] = str(Path(a.src).resolve())
        print(f"measuring the compiler in {a.src}")
    modes = {"bytecode": dict(base_env, PYTHONPYCACHEPREFIX=str(tmp / "pyc")),
             "no bytecode": dict(base_env, PYTHONDONTWRITEBYTECODE="1")}
    modes["bytecode"].pop("PYTHONDONTWRITEBYTECODE", None)
    if a.quick:
        modes.pop("no bytecode")
    # warm: bytecode, template cache, the present tree
    run(generate(ref, present), dict(modes["bytecode"], PLATFORMC_FULL="1"))
    for spec in specs.values():
        run(PLATFORMC + ["validate", str(spec)], modes["bytecode"])
    load = os.getloadavg()
    for i in range(runs):
        for mode, env in modes.items():
            for c in cases:
                if c.before:
                    c.before()
                secs, _ = run(c.cmd, dict(env, **c.env), c.ok)
                c.times.setdefault(mode, []).append(secs)
    for mode, env in modes.items():  # memory: separate runs, polled
        for c in cases:
            if c.memory_goal is None and "reference" not in c.name:
                continue
            for _ in range(max(2, runs // 2)):
                if c.before:
                    c.before()
                _, peak = run(c.cmd, dict(env, **c.env), c.ok, poll=True)
                c.peaks.setdefault(mode, []).append(peak)
    load = tuple(round((x + y) / 2, 2) for x, y in zip(load, os.getloadavg()))

    def verdict(value, goal):
        return "" if goal is None else ("ok" if value <= goal else "OVER")

    names = list(modes)
    print(f"medians of {runs} alternated whole-process runs; machine: {os.cpu_count()} cores, load avg {load}")
    head = f"{'what':<46} {'goal':>7}" + "".join(f" {m:>12}     " for m in names)
    print(head)
    by_name = {c.name: c for c in cases}
    for c in cases:
        row = f"{c.name:<46} {'' if c.goal is None else f'{c.goal:.2f}s':>7}"
        for m in names:
            v = statistics.median(c.times[m])
            row += f" {v:>11.3f}s {verdict(v, c.goal):<4}"
        print(row)
    plain, withreg = by_name.get("generate, 120 regions, empty dir"), \
        by_name.get("generate, 120 regions + 10,000-row registry")
    if plain and withreg:
        row = f"{'  registry adds (120 regions)':<46} {'0.30s':>7}"
        for m in names:
            v = statistics.median(withreg.times[m]) - statistics.median(plain.times[m])
            row += f" {v:>11.3f}s {verdict(v, 0.3):<4}"
        print(row)
    print("\npeak PSS summed over the process tree (median of the polled runs)")
    for c in cases:
        if not c.peaks:
            continue
        goal = c.memory_goal
        row = f"{c.name:<46} {'' if goal is None else f'{goal}MiB':>7}"
        for m in names:
            v = statistics.median(c.peaks[m])
            row += f" {v:>9.1f}MiB {verdict(v, goal):<4}"
        print(row)
    files = sum(1 for p in (present / "gen").rglob("*") if p.is_file())
    size120 = sum(p.stat().st_size for p in (tmp / "o120").rglob("*") if p.is_file()) if (tmp / "o120").exists() else 0
    print(f"\nreference: {files} files generated; 120 regions: {size120 / 2**20:.1f} MiB written")
    if not (a.quick or a.no_targets or a.src):
        per_target_table()
    shutil.rmtree(tmp, ignore_errors=True)


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
