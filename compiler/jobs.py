"""Whether a command splits its work over two processes: one rule for `generate`'s emission (compiler/emit.py) and
`verify`'s regions (compiler/verify/parallel.py), each of which knows only when the split pays for its own work.
PLATFORMC_JOBS=1 forces one process, =2 the fork."""

from __future__ import annotations

import os


def forks(units: int, pays: bool) -> bool:
    """Fork for `units` pieces of work (jobs, regions) when the environment forces it or when `pays` (the caller's
    measured threshold) holds on a multi-core machine; never for fewer than two pieces or without os.fork."""
    forced = os.environ.get("PLATFORMC_JOBS")
    if forced == "1" or not hasattr(os, "fork") or units < 2:
        return False
    if forced == "2":
        return True
    return pays and (os.cpu_count() or 1) >= 2
