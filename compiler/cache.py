"""Where platformc keeps machine-local state (compiled templates, the no-op fingerprint): never the repo."""

from __future__ import annotations

import os


def cache_dir() -> str:
    """$PLATFORMC_CACHE_DIR, else $XDG_CACHE_HOME/platformc, else ~/.cache/platformc."""
    return os.environ.get("PLATFORMC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "platformc")
