"""Verify's regions in two processes: each region's checks read mostly that region's own files, so on a multi-core
machine the parent forks once, the child checks every other region (the odd positions) and pickles each outcome back
through a pipe, and the parent checks the rest and merges all in region order: the report is a serial run's. An
outcome is small (385 bytes pickled for a clean reference region, 6 KB for one with 96 findings): the pipe's buffer
holds what the child sends while the parent is busy with its own regions.

Handing the regions out one at a time instead (whichever process was free taking the next from a pipe of region
numbers) measured the same on the reference tree: 0.430 / 0.426 s wall, 11 alternated runs. So the simpler split.

Whatever fails on either side (a checker's exception, a VerifyError, the child dying) makes map_regions return None,
and the caller then checks every region itself: an error surfaces exactly as in a serial run, from the same code.
PLATFORMC_JOBS=1 forces serial, =2 the fork (as for `generate`, compiler/emit.py).
"""

from __future__ import annotations

import os

from compiler.jobs import forks

# Below this many regions the fork costs more than it saves: each process also reads what every region's checks
# share (module libraries, the global root, the other regions' connections and roots for the inter-region paths),
# so the fork costs ~50 % more CPU. Reference tree restricted with --region, whole processes, 9 alternated runs,
# wall medians serial / fork: 2 regions 0.284 / 0.288 s, 3 0.373 / 0.361, 4 0.445 / 0.419, 6 0.481 / 0.450.
FORK_MIN_REGIONS = 6

_MISSING = object()


def _forks(regions: int) -> bool:
    return forks(regions, regions >= FORK_MIN_REGIONS)


def map_regions(check, names: list[str]) -> list | None:
    """check(region) for every region, in the order of `names`, half of them in a forked child; None when the
    regions were not checked that way (serial by choice, or something failed: the caller checks them itself)."""
    if not _forks(len(names)):
        return None
    try:
        return _forked(check, names)
    except Exception:
        return None


def _forked(check, names: list[str]) -> list | None:
    import pickle
    import signal
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    if pid == 0:  # child: the odd positions, each outcome pickled back as soon as it is done; never returns
        code = 1
        try:
            os.close(read_fd)
            with os.fdopen(write_fd, "wb") as pipe:
                for i in range(1, len(names), 2):
                    pickle.dump((i, check(names[i])), pipe, protocol=pickle.HIGHEST_PROTOCOL)
                    pipe.flush()
            code = 0
        except BaseException:  # the parent finds regions missing and leaves them all to a serial run
            pass
        finally:
            os._exit(code)
    os.close(write_fd)
    outcomes = [_MISSING] * len(names)
    done = False
    try:
        for i in range(0, len(names), 2):
            outcomes[i] = check(names[i])
        with os.fdopen(read_fd, "rb") as pipe:
            read_fd = -1
            while True:
                try:
                    i, outcome = pickle.load(pipe)
                except EOFError:
                    break
                outcomes[i] = outcome
        done = True
    finally:
        if read_fd >= 0:
            os.close(read_fd)
        if not done:  # the parent failed: the child's outcomes are not wanted
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if status != 0 or any(o is _MISSING for o in outcomes):
        return None
    return outcomes
