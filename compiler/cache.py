"""Where platformc keeps machine-local state (compiled templates, the no-op fingerprint): never the repo."""

from __future__ import annotations

import os


def cache_dir(env=None) -> str:
    """$PLATFORMC_CACHE_DIR, else $XDG_CACHE_HOME/platformc, else ~/.cache/platformc (of `env`, default this
    process's environment: the compile server compares a client's)."""
    env = os.environ if env is None else env
    return env.get("PLATFORMC_CACHE_DIR") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "platformc")


def write_atomic(path: str, data: bytes) -> None:
    """Write a cache file atomically (a temp file renamed over it); a cache that cannot be written is not an error."""
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
