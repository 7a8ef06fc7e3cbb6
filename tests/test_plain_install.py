"""platformc as a regular install runs it: every command works without the editable install's import hook.

`make setup` installs platformc editable, and setuptools' editable hook (a .pth file that imports a finder) imports
importlib.util, pathlib, re and more into every process before platformc starts. A regular install (`pip install .`,
a wheel, pipx) has no such hook, so a module that uses a submodule it never imports (`importlib.util` after
`import importlib`) works in this repository and fails for users: `platformc generate` did, with an internal error.
Here each command runs in an interpreter started with -S (no .pth file is processed, so no hook) and the package
and its libraries on PYTHONPATH, the import state of a regular install."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN = "import sys\nfrom compiler.launch import main\nsys.argv = ['platformc'] + sys.argv[1:]\nmain()\n"


def plain(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    libraries = {sysconfig.get_paths()[k] for k in ("purelib", "platlib")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=os.pathsep.join([str(REPO), *sorted(libraries)]), PLATFORMC_SERVER="0",
               PLATFORMC_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-S", "-c", RUN, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_hook_is_absent_there(tmp_path):
    """The emulation holds: no finder of setuptools' editable install, and platformc comes from this checkout."""
    code = ("import sys, compiler\nprint(compiler.__file__)\n"
            "print(any('editable' in type(f).__name__.lower() or 'editable' in getattr(f, '__name__', '').lower() "
            "for f in sys.meta_path))\nprint('importlib.util' in sys.modules, 'pathlib' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = str(REPO)
    done = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.splitlines() == [str(REPO / "compiler" / "__init__.py"), "False", "False False"]


@pytest.mark.parametrize("args, expect", [
    (["validate", "platform.yaml"], "platform.yaml: valid (12 regions, 0 warnings)"),
    (["generate", "--check"], "generated files are up to date"),
    (["schema", "--check"], "schemas/platform.schema.json is up to date"),
    (["verify", "generated"], "0 broken"),
    (["cost"], "Floor at on-demand list prices"),
    (["show", "us-east-1"], "# derived"),
])
def test_read_only_commands_on_the_reference(tmp_path, args, expect):
    done = plain(args, REPO, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert expect in done.stdout


def test_generate_writes_and_init_starts_a_spec(tmp_path):
    (tmp_path / "platform.yaml").write_bytes((REPO / "platform.yaml").read_bytes())
    done = plain(["generate", "--region", "us-east-1"], tmp_path, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith(" removed, 0 unchanged\n")
    ours = tmp_path / "generated" / "terraform" / "regions" / "us-east-1" / "main.tf"
    assert ours.read_bytes() == (REPO / "generated" / "terraform" / "regions" / "us-east-1" / "main.tf").read_bytes()
    done = plain(["init", "starter.yaml"], tmp_path, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
    assert plain(["validate", "starter.yaml"], tmp_path, tmp_path / "cache").returncode == 0
