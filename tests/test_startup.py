"""Issue 16, start-up: a command imports only what it uses. `platformc validate` (load, validate, resolve, the plan
rules) in a fresh process never loads the targets, the writer, Jinja, or what only an error path or a franchise
registry needs; pydantic's plugin loader (importlib.metadata) is never imported; the answer is the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# What validate never needs on the reference spec: the output side (targets, emit, render, writer, Jinja, docs),
# pydantic's plugin discovery, the suggestion of an unknown key (difflib) and a franchise registry's reader (csv).
# json only to read the deployed-facts lock in generated/ (docs/lock.md; ~1 ms to import, 0.1 ms to read): a spec
# without one never loads it (test_validate_without_a_lock_loads_no_json).
NOT_FOR_VALIDATE = ("compiler.targets", "compiler.emit", "compiler.render", "compiler.writer", "compiler.docs",
                    "compiler.noop", "compiler.diff", "jinja2", "importlib.metadata", "email", "zipfile",
                    "difflib", "compiler.registry", "csv")


def _fresh(args: list[str], cwd: Path = REPO) -> tuple[str, set[str]]:
    """Run main(args) in a fresh interpreter: (what it printed, the modules it loaded)."""
    import os
    code = ("import sys\nfrom compiler.cli import main\nmain(sys.argv[1:])\n"
            "print('\\0' + ' '.join(sorted(sys.modules)))")
    env = dict(os.environ, PYTHONPATH=str(REPO))  # this tree's compiler, from any directory
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, check=True,
                          env=env)
    printed, _, modules = done.stdout.partition("\0")
    return printed, set(modules.split())


def test_validate_loads_only_what_it_uses():
    printed, modules = _fresh(["validate", "platform.yaml"])
    assert printed == "platform.yaml: valid (12 regions, 0 warnings)\n"
    loaded = sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in NOT_FOR_VALIDATE))
    assert loaded == []
    assert {"compiler.pipeline", "compiler.resolve", "compiler.rules"} <= modules  # it did validate


def test_validate_without_a_lock_loads_no_json(tmp_path):
    (tmp_path / "platform.yaml").write_bytes((REPO / "platform.yaml").read_bytes())
    printed, modules = _fresh(["validate", "platform.yaml"], cwd=tmp_path)
    assert printed == "platform.yaml: valid (12 regions, 0 warnings)\n"
    assert not [m for m in modules if m == "json" or m.startswith("json.")]


def test_pydantic_finds_no_plugins_in_a_command_and_errors_read_the_same(tmp_path):
    """The command's process gets pydantic's plugin loader that finds none; schema errors read as before (the
    suggestion of an unknown key, difflib's, is imported where it is made)."""
    spec = (REPO / "tests/cases/two-region/platform.yaml").read_text()
    (tmp_path / "platform.yaml").write_text(spec.replace("\nsettings:\n  kubernetes:", "\nsettings:\n  kubernetis:", 1))
    code = ("import sys\nfrom compiler.cli import main\ntry:\n    main(['validate'])\nexcept SystemExit as e:\n"
            "    print(e.code)\nimport pydantic.plugin._loader as loader\nprint(list(loader.get_plugins()))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert done.stdout.splitlines() == ["2", "[]"]
    assert done.stderr.splitlines() == [
        "platform.yaml:43:1: settings.kubernetes: [S003] missing required field 'kubernetes'",
        "platform.yaml:44:3: settings.kubernetis: [S002] unknown key 'kubernetis'; did you mean 'kubernetes'?",
        "2 errors: the spec is invalid, nothing was written"]


def test_carve_subnets_makes_only_the_blocks_it_uses():
    """A region's subnets come from the first blocks of its CIDR: the same carve, whatever the CIDR's size (a /8 at
    /24 holds 65,536 blocks; only the zones' and the public block are made)."""
    from compiler.resolve import carve_subnets
    assert carve_subnets("10.0.0.0/16", 3, 19, 24) == [("10.0.0.0/19", "10.0.96.0/24"), ("10.0.32.0/19", "10.0.97.0/24"),
                                                       ("10.0.64.0/19", "10.0.98.0/24")]
    assert carve_subnets("10.0.0.0/8", 3, 24, 28) == [("10.0.0.0/24", "10.0.3.0/28"), ("10.0.1.0/24", "10.0.3.16/28"),
                                                      ("10.0.2.0/24", "10.0.3.32/28")]
    assert carve_subnets("10.0.0.0/8", 2, 28, 28) is None  # one /28 block cannot hold two public /28s
    assert carve_subnets("10.0.0.0/24", 3, 26, 28) == [("10.0.0.0/26", "10.0.0.192/28"), ("10.0.0.64/26", "10.0.0.208/28"),
                                                       ("10.0.0.128/26", "10.0.0.224/28")]
    assert carve_subnets("10.0.0.0/24", 4, 26, 28) is None  # no fifth block for the public subnets
    assert carve_subnets("10.0.0.0/24", 3, 26, 26) is None  # the fourth block holds one /26, not three
    assert carve_subnets("10.0.0.0/16", 3, 15, 24) is None


def test_the_command_process_leaves_its_heap_to_exit():
    """The command line's own process (main() reading sys.argv) freezes the collector's generations when the command
    ends, so the interpreter's last collection at exit walks nothing (issue 16); a caller passing argv keeps them."""
    code = ("import gc, sys\nfrom compiler.cli import main\npassed = sys.argv[-1] == 'argv'\n"
            "sys.argv = ['platformc', 'validate', 'platform.yaml']\n"
            "main(sys.argv[1:] if passed else None)\nprint(gc.get_freeze_count() > 0, gc.isenabled())")
    for args, frozen in (([], "True"), (["argv"], "False")):
        done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True, check=True)
        assert done.stdout.splitlines()[-1] == f"{frozen} True"
