"""platformc as a regular install runs it: every command works without the editable install's import hook.

`make setup` installs platformc editable, and setuptools' editable hook (a .pth file that imports a finder) imports
importlib.util, pathlib, re and more into every process before platformc starts. A regular install (`pip install .`,
a wheel, pipx) has no such hook, so a module that uses a submodule it never imports (`importlib.util` after
`import importlib`) works in this repository and fails for users: `platformc generate` did, with an internal error.
Here each command runs in an interpreter started with -S (no .pth file is processed, so no hook) and the package
and its libraries on PYTHONPATH, the import state of a regular install; and a wheel built from this tree, installed
apart from it, compiles the reference to the committed files (it once carried neither the templates nor the price
catalogue, which a checkout finds beside the package)."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
RUN = "import sys\nfrom compiler.launch import main\nsys.argv = ['platformc'] + sys.argv[1:]\nmain()\n"


LIBRARIES = sorted({sysconfig.get_paths()[k] for k in ("purelib", "platlib")})


def without_hook(code: str, args: list[str], cwd: Path, cache: Path,
                 package: Path = REPO) -> subprocess.CompletedProcess:
    """`python -S -c code args` (no .pth file processed, so no import hook) importing platformc from the directory
    `package` (this checkout, or an install's) and its libraries from this environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.update(PYTHONPATH=os.pathsep.join([str(package), *LIBRARIES]), PLATFORMC_SERVER="0",
               PLATFORMC_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-S", "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True)


def plain(args: list[str], cwd: Path, cache: Path, package: Path = REPO) -> subprocess.CompletedProcess:
    """platformc ARGS, as `without_hook` runs code."""
    return without_hook(RUN, args, cwd, cache, package)


def test_the_hook_is_absent_there(tmp_path):
    """The emulation holds: no finder of setuptools' editable install, and platformc comes from this checkout."""
    code = ("import sys, compiler\nprint(compiler.__file__)\n"
            "print(any('editable' in type(f).__name__.lower() or 'editable' in getattr(f, '__name__', '').lower() "
            "for f in sys.meta_path))\nprint('importlib.util' in sys.modules, 'pathlib' in sys.modules)")
    done = without_hook(code, [], tmp_path, tmp_path / "cache")
    assert done.returncode == 0, done.stderr
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


def test_the_packages_listed_are_the_package_directories_and_every_data_file_is_carried():
    """pyproject.toml lists the packages (a found list cannot hold templates/ mapped into the package): a new
    package directory, or a file the package reads that is not Python, must be listed there too."""
    from setuptools import find_namespace_packages
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert sorted(config["packages"]) == sorted(find_namespace_packages(str(REPO), include=["compiler*"])
                                                + ["compiler.templates"])
    assert config["package-dir"] == {"compiler.templates": "templates"}
    data = config["package-data"]
    for path in (REPO / "compiler").rglob("*"):
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
            package = ".".join(path.parent.relative_to(REPO).parts)
            assert any(fnmatch.fnmatch(path.name, g) for g in data.get(package, ())), f"{path} is not in package-data"


def test_a_wheel_installed_apart_from_the_repository_compiles_the_reference(tmp_path):
    """Built offline by the environment's own setuptools, installed with pip into a directory of its own, run from an
    empty directory: the generated tree and docs it compiles are the committed ones, byte for byte."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    shutil.copytree(REPO / "compiler", src / "compiler", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "templates", src / "templates")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    built = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "--no-index",
                                  "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("platformc-*.whl"))
    site = tmp_path / "site"
    done = subprocess.run(pip + ["install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (site / "compiler" / "templates" / "init" / "platform.yaml").is_file()
    work = tmp_path / "work"
    work.mkdir()
    where = plain(["--version"], work, tmp_path / "cache", package=site)
    assert where.returncode == 0, where.stderr
    code = "import compiler, compiler.locations as l; print(compiler.__file__); print(l.TEMPLATES)"
    shown = without_hook(code, [], work, tmp_path / "cache", package=site)
    assert shown.stdout.splitlines() == [str(site / "compiler" / "__init__.py"), str(site / "compiler" / "templates")]
    done = plain(["generate", "--check", "--spec", str(REPO / "platform.yaml"), "--out", str(REPO / "generated"),
                  "--docs-out", str(REPO / "docs")], work, tmp_path / "cache", package=site)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "generated files are up to date\n"
    done = plain(["cost", "--spec", str(REPO / "platform.yaml")], work, tmp_path / "cache", package=site)
    assert done.returncode == 0 and "Floor at on-demand list prices" in done.stdout, done.stderr
    # the same sources give the same digest (the "inputs" a manifest records) installed as in this checkout
    seen = []
    for package in (site, REPO):
        done = without_hook("from compiler import noop\nprint(noop.sources_digest())", [], work, tmp_path / "cache",
                            package=package)
        assert done.returncode == 0, done.stderr
        seen.append(done.stdout)
    assert seen[0] == seen[1] and len(seen[0].strip()) == 64
