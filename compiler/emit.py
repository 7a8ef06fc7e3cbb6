"""Run the selected targets over the plan: {output root: {rel path: (owner, text)}}.

Emission is pure (IR in, text out), so the jobs — one per target and region, plus the docs pages — can
run in two processes: on a multi-core machine the parent forks once, each process emits whole regions (4 in 7
for the child, _in_child), and the results are merged in job order, so the output is the same bytes as a serial
run. Each process frees a region's computed facts once it is done with them (_each).
"""

from __future__ import annotations

import os
import pickle

from compiler.jobs import forks
from compiler import targets
from compiler.errors import UsageError
from compiler.ir import PlatformPlan, RegionPlan

PARALLEL_MIN_JOBS = 16  # below this a fork costs more than it saves
# `generate` forks only for platforms of FORK_MIN_REGIONS..FORK_MAX_REGIONS regions. Measured on this 2-core
# machine, idle (load ~1), whole processes into a tmpfs (no file-system noise), alternated runs, wall medians:
# 2026-12-03, after the start-up and home-routing changes: 2 regions (tests/cases two-region, azure-only) serial
# 0.47 / fork 0.455 s and 0.46 / 0.475 s (equal: serial, one process and less memory); 12 regions (the reference)
# 0.78 / 0.73 s, and `make bench` (ext4) 0.652 / 0.584 s with bytecode, 0.694 / 0.649 s without; earlier the same
# day 24 regions 1.23 / 1.03 s, 48 regions 1.85 / 1.56 s, 120 regions 3.8 / 3.45 s. The fork costs CPU (~0.1 s more
# at 12 regions, ~0.6 s at 120) and memory (tree PSS at 120 regions 119 -> 162 MiB: the child's reads touch the
# plan's refcounts and copy its pages). Under load from
# other work (2026-12-02, load 5-8) serial was faster at both 12 and 120: the second core was rarely free.
# 2026-12-04, quiet (load ~1), ext4, bytecode present, paired alternated rounds, wall medians serial / fork:
# 12 regions cold 0.425 / 0.406 s (fork faster in 17 of 21 rounds), through the compile server 0.293 / 0.264 s
# (21 of 21); 120 regions cold 2.81 / 2.02 s, server 2.53 / 1.88 s (7 of 7 each). The fork stays the default.
# PLATFORMC_JOBS=1 forces serial, =2 the fork; `scripts/bench.py --fork` re-measures.
FORK_MIN_REGIONS = 12
FORK_MAX_REGIONS = 10**9


class Outputs(dict):
    """root name -> {rel path: (owner, text)}; refuses two owners for one path (a bug)."""

    def add(self, root: str, owner: str, files: dict) -> None:
        tree = self.setdefault(root, {})
        for rel, text in files.items():
            if rel in tree and tree[rel][0] != owner:
                raise RuntimeError(f"{root}/{rel} is emitted by both {tree[rel][0]} and {owner}")
            if not text.endswith("\n"):
                text += "\n"
            tree[rel] = (owner, text)


REGION_BLOCK = 8
"""Regions emitted together: every target's jobs for a block of regions, then the next block. A process releases a
region's computed facts once it has run the last job that reads them (RegionPlan.release, in _each), so it holds
about a block's, not the platform's; within a block a target's jobs still follow each other, so its memos serve the
block's regions. 120 regions, bytecode, forked, tmpfs, tree PSS peak (3 runs each, 2026-12-05): one block of all
91.5 MiB, blocks of 32 76.5, of 16 74.1, of 8 73.1. With the compile server, 120 regions and the 10,000-row
registry, after this stop's DR wiring: blocks of 16 98.6 MiB, of 8 96.2, of 4 95.1; blocks of 4 cost CPU (memos
serve fewer regions: 3.7-4.3 s against 3.3-3.7 s for 16 and 8, whole process). The same bytes whatever the size
(tests/test_emit.py)."""


def _jobs(plan, modules, regions, with_globals: bool, with_docs: bool) -> list[tuple]:
    """(output root, owner, callable) for everything to emit, in a fixed order: the platform-wide jobs first (the
    ansible target's reads every region's data access: done before any region is released, it is computed once),
    then the regions block by block (REGION_BLOCK), each block target by target, then its docs pages."""
    jobs = []
    if with_docs:
        from compiler import docs  # only when the docs are emitted (a --target run leaves them alone)
    if with_globals:
        jobs += [("generated", f"{mod.NAME}/global", (mod.emit_global, plan)) for mod in modules if hasattr(mod, "emit_global")]
        if with_docs:
            jobs.append(("docs", "docs/global", (docs.global_files, plan)))
    for start in range(0, len(regions), REGION_BLOCK):
        block = regions[start:start + REGION_BLOCK]
        for mod in modules:
            if hasattr(mod, "emit_region"):
                jobs += [("generated", f"{mod.NAME}/{r.name}", (mod.emit_region, plan, r)) for r in block]
        if with_docs:
            jobs += [("docs", f"docs/{r.name}", (docs.region_files, plan, r, modules)) for r in block]
    return jobs


def _run(job):
    fn, *args = job[2]
    return fn(*args)


def _region_of(job) -> RegionPlan | None:
    call = job[2]  # (fn, plan, region[, ...]) or (fn, plan)
    return call[2] if len(call) > 2 and isinstance(call[2], RegionPlan) else None


def _each(jobs):
    """_run over jobs in order, releasing render's and hcl's memos whenever the target changes (each process runs
    its own): a target's documents and strings are rarely another's, and kept they were the run's largest growth
    after the plan (~14 MiB at 120 regions, ~4 more since hcl's block memo). Once a region's last job here is done,
    every region no job left here reads is released (RegionPlan.release): a region's facts are read by its own jobs,
    by its DR partner's (which runs its standby cluster: pg_hba, the standby's CA) and by those of the regions whose
    DR partner it is (their split-brain fence verifies its hosts with its published CA), and the parent's
    platform-wide jobs read every region's data access. A fact read after its release is computed again, the same."""
    from compiler import render
    from compiler.formats import hcl
    plan = jobs[0][2][1] if jobs else None
    regions = plan.regions if plan is not None else ()
    own_last: dict = {}
    for i, j in enumerate(jobs):
        region = _region_of(j)
        if region is not None:
            own_last[region.name] = i
    readers = {r.name: {r.name, r.dr_partner} for r in regions}
    for r in regions:
        readers.get(r.dr_partner, set()).add(r.name)
    last_read = [(max(own_last.get(n, -1) for n in readers[r.name]), r) for r in regions]
    releases = {i for i, _ in last_read}
    last = None
    for i, j in enumerate(jobs):
        target = j[1].split("/", 1)[0]
        if target != last:
            if last is not None:
                render.release_memos()
                hcl.release_memos()
            last = target
        yield _run(j)
        if i in releases:
            for read, r in last_read:
                if read <= i:
                    r.release()


def _parallel(jobs: list, regions: int | None) -> bool:
    return forks(len(jobs), len(jobs) >= PARALLEL_MIN_JOBS
                 and (regions is None or FORK_MIN_REGIONS <= regions <= FORK_MAX_REGIONS))


def _map(jobs: list, regions: int | None = None) -> list:
    """Results of the jobs in order (see _results)."""
    return list(_results(jobs, regions))


# The child emits the regions at these positions of every CHILD_CYCLE (4 of 7): the parent also unpickles and
# writes every file, so an even split left it the longer side (CPU during the stream at 120 regions, whole
# process, 2 runs: parent 2.26-2.49 s, child 1.54-1.98 s); with 4 of 7, parent 2.16-2.35 s, child 2.05-2.19 s.
CHILD_CYCLE, CHILD_POSITIONS = 7, frozenset((1, 3, 5, 6))


def _in_child(jobs: list) -> list[bool]:
    """Which jobs the forked child emits: every job of 4 regions in 7 (CHILD_POSITIONS, by the order the regions
    first appear); the platform-wide jobs stay in the parent. Split by region, not job by job: each region's
    lazily built facts (its wiring index, derived tables) and the YAML memo entries of its documents are then
    built in one process, not both. Tree PSS peak at 120 regions (whole processes, tmpfs): every other job
    145.4 MiB, every other region 140.9 MiB (the global jobs in the child instead: 143.0), 4 regions in 7
    138.7 MiB; same output."""
    index: dict = {}
    side = []
    for j in jobs:
        region = _region_of(j)
        if region is None:
            side.append(False)
            continue
        side.append(index.setdefault(region.name, len(index)) % CHILD_CYCLE in CHILD_POSITIONS)
    return side


PIPE_BYTES = 1 << 20  # Linux's default pipe-max-size: what an unprivileged process may ask for


def _widen(fd: int) -> None:
    """Let the child run up to PIPE_BYTES of results ahead of the parent. The parent takes results in job order;
    with the default 64 KiB pipe the child blocked after about one job's text whenever the parent was busy with
    its own jobs or the writes, and the parent then waited for the child in turn. At 120 regions (in-process
    timers, 3 runs each): the child blocked 362-378 ms and the parent waited 189-247 ms, the run ending at
    2.07-2.26 s; with 1 MiB, 211-225 ms and 28-45 ms, ending at 1.77-1.95 s. The buffer is the kernel's."""
    try:
        import fcntl
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (ImportError, AttributeError, OSError):  # not Linux, or a lower limit: the default pipe still works
        pass


def _results(jobs: list, regions: int | None = None):
    """Each job's result in job order, one at a time: about half of them computed in a forked child when that
    pays off (_in_child says which).

    The child pickles each result into the pipe as soon as it has it and the parent reads them in turn, so
    neither side holds more than the job at hand (plus what the pipe buffers)."""
    if not _parallel(jobs, regions):
        yield from _each(jobs)
        return
    in_child = _in_child(jobs)
    read_fd, write_fd = os.pipe()
    _widen(write_fd)
    pid = os.fork()
    if pid == 0:  # child: its jobs, each pickled back through the pipe as it is done; never returns
        code = 1
        try:
            os.close(read_fd)
            pipe = os.fdopen(write_fd, "wb")
            try:
                for result in _each([j for j, child in zip(jobs, in_child) if child]):
                    pickle.dump(("ok", result), pipe, protocol=pickle.HIGHEST_PROTOCOL)
                    pipe.flush()
                code = 0
            except BrokenPipeError:  # the parent stopped reading (its own job failed): nothing to report
                pass
            except BaseException as exc:  # re-raised in the parent, which owns error reporting
                try:
                    payload = ("error", pickle.dumps(exc))
                except Exception:
                    payload = ("error", pickle.dumps(RuntimeError(f"{type(exc).__name__}: {exc}")))
                pickle.dump(payload, pipe, protocol=pickle.HIGHEST_PROTOCOL)
                pipe.flush()
        except BaseException:
            pass
        finally:
            os._exit(code)
    os.close(write_fd)
    pipe = os.fdopen(read_fd, "rb")
    own = _each([j for j, child in zip(jobs, in_child) if not child])
    try:
        for child in in_child:
            if not child:
                yield next(own)
            else:
                status, value = pickle.load(pipe)
                if status == "error":
                    raise pickle.loads(value)
                yield value
    finally:
        pipe.close()  # a child still writing gets EPIPE and exits
        os.waitpid(pid, 0)


def stream(plan: PlatformPlan, target_names=None, region_names=None, with_docs: bool = True):
    """Emit the chosen targets and regions job by job: yields (output root, owner, {rel path: text}), each text
    ending in a newline and its header naming the spec, in a fixed order. A caller that writes each job's files
    and drops them holds one job's text at a time, never the whole platform's."""
    regions = [plan.region(n) for n in region_names] if region_names else list(plan.regions)
    modules = targets.select(target_names)
    jobs = _jobs(plan, modules, regions, with_globals=not region_names, with_docs=with_docs)
    spec_banner = _spec_banner(plan.spec_file)
    for (root, owner, _), files in zip(jobs, _results(jobs, len(regions))):
        out = {}
        for rel, text in files.items():
            if spec_banner:  # the headers name the spec the files come from (render.banner's and the docs' text)
                text = text.replace(_BANNER_FROM, spec_banner, 1)
            out[rel] = text if text.endswith("\n") else text + "\n"
        yield root, owner, out


def emit(plan: PlatformPlan, target_names=None, region_names=None, with_docs: bool = True) -> tuple[Outputs, set]:
    """Emit files for the chosen targets and regions; return them all with the owners compiled."""
    out, owners = Outputs(), set()
    for root, owner, files in stream(plan, target_names, region_names, with_docs):
        owners.add(owner)
        out.add(root, owner, files)
    out.setdefault("generated", {})
    return out, owners


_BANNER_FROM = "Generated by platformc from platform.yaml - do not edit"


def _spec_banner(spec_file: str) -> str | None:
    """The banner naming the spec when it is not called platform.yaml (a name any comment syntax can hold)."""
    import re
    name = os.path.basename(spec_file or "")
    if name == "platform.yaml" or not re.match(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$", name):
        return None
    return _BANNER_FROM.replace("platform.yaml", name)


def check_regions(plan: PlatformPlan, names) -> None:
    import difflib
    for n in names or ():
        if n not in plan.region_names:
            close = difflib.get_close_matches(n, plan.region_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UsageError(f"unknown region {n!r}{hint}")
