"""`make bench`: wall-clock medians of the CLI and of each target's emission (a script, not a test).

Budgets (2 cores): validate < 0.3 s; no-op generate < 0.5 s; full generate < 1 s; each target < 0.1 s
for the 12 regions of platform.yaml.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLATFORMC = [str(Path(sys.executable).parent / "platformc")]
RUNS = 7


def wall(cmd: list[str], runs: int = RUNS, before=None, ok=(0,)) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        t = time.perf_counter()
        done = subprocess.run(cmd, cwd=REPO, capture_output=True)
        if done.returncode not in ok:
            raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}:\n{done.stderr.decode()}")
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def per_target() -> dict[str, float]:
    from compiler import targets
    from compiler.pipeline import compile_file
    plan = compile_file(str(REPO / "platform.yaml")).plan
    out = {}
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
        out[name] = statistics.median(times[1:])  # the first run pays for template compilation
    return out


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="platformc-bench-"))
    gen, docs = tmp / "generated", tmp / "docs"
    args = ["generate", "--out", str(gen), "--docs-out", str(docs)]
    rows = [("platformc validate platform.yaml", wall(PLATFORMC + ["validate", "platform.yaml"]), 0.3)]
    rows.append(("platformc generate (into an empty dir)",
                 wall(PLATFORMC + args, runs=5, before=lambda: shutil.rmtree(tmp, ignore_errors=True)), 1.0))
    subprocess.run(PLATFORMC + args, cwd=REPO, check=True, capture_output=True)
    rows.append(("platformc generate (no-op, nothing changed)", wall(PLATFORMC + args), 0.5))
    full = lambda: os.environ.__setitem__("PLATFORMC_FULL", "1")  # noqa: E731
    rows.append(("  same, full compile forced (PLATFORMC_FULL=1)", wall(PLATFORMC + args, before=full), 0.5))
    os.environ.pop("PLATFORMC_FULL", None)
    rows.append(("platformc generate --check (up to date)", wall(PLATFORMC + args + ["--check"]), 0.5))
    # verify exits 1 when a link is broken; the time is what is measured here (make check judges the result)
    rows.append(("platformc verify (the whole reference tree)", wall(PLATFORMC + ["verify", str(gen)], ok=(0, 1)), 0.5))
    files = sum(1 for p in tmp.rglob("*") if p.is_file())
    print(f"{'what':<48} {'median':>9} {'budget':>8}")
    for what, secs, budget in rows:
        flag = "" if secs < budget else "  OVER BUDGET"
        print(f"{what:<48} {secs:>8.3f}s {budget:>7.2f}s{flag}")
    print(f"\nemission per target, 12 regions + global (in-process, median of 4 warm runs; budget 0.100 s):")
    for name, secs in per_target().items():
        flag = "" if secs < 0.1 else "  OVER BUDGET"
        print(f"  {name:<14} {secs:>8.4f}s{flag}")
    print(f"\n{files} files generated; machine: {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
