"""Shared fixtures. A test that needs an external tool calls `require_tool`: under CI=true a
missing tool fails the test; locally it skips (run `make tools` to install them)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The no-op fast path and the template bytecode cache keep state in a cache dir: tests get their own.
os.environ["PLATFORMC_CACHE_DIR"] = __import__("tempfile").mkdtemp(prefix="platformc-test-cache-")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
VENV_BIN = Path(sys.executable).parent


def require_tool(name: str, path: str | Path | None = None) -> str:
    """Absolute path of an external tool (on PATH, in the venv, or at `path`), else fail in CI / skip locally."""
    candidates = [Path(path)] if path else []
    candidates += [VENV_BIN / name, REPO / ".venv-checkov" / "bin" / name]
    for c in candidates:
        if c.exists() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/lib/postgresql/15/bin")
    if found:
        return found
    message = f"{name} is not installed (run `make tools`)"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def require_module(name: str):
    """Import a Python module the test needs, with the same CI/local policy as require_tool."""
    try:
        return __import__(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"python module {name} is missing (make setup)")
        pytest.skip(f"python module {name} is missing (make setup)")


@pytest.fixture(scope="session")
def reference():
    """The compiled reference platform (the repo's platform.yaml)."""
    from compiler.pipeline import compile_file
    return compile_file(str(REPO / "platform.yaml")).plan


@pytest.fixture(scope="session")
def two_region():
    """The small two-cloud fixture."""
    from compiler.pipeline import compile_file
    return compile_file(str(REPO / "tests/cases/two-region/platform.yaml")).plan


@pytest.fixture(scope="session", params=["reference", "two-region"])
def any_case(request):
    """Each golden case's plan in turn."""
    from compiler.pipeline import compile_file
    spec = REPO / "tests/cases" / request.param / "platform.yaml"
    return compile_file(str(spec)).plan


SHARED = REPO.parent / "shared"


def require_shared(rel: str) -> Path:
    """A file or folder of the upstream reference data beside the repo (../shared/…).

    CI runs with a copy of shared/ beside the clone; a user's own clone may not have it, so
    locally a missing reference skips and under CI=true it fails.
    """
    p = SHARED / rel
    if p.exists():
        return p
    if IN_CI:
        pytest.fail(f"reference data {p} is missing")
    pytest.skip(f"reference data {p} is missing (it lives in ../shared beside the repo)")
