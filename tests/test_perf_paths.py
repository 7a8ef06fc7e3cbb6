"""Issue 16 / 14 fast paths keep the slow paths' results: `platformc diff` reads the base's committed generated/
only when its manifest proves it current (and gives the same report as emitting it), the base compiles with
rules skipped without touching the global rule list, and the manifest's `inputs` record follows the runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from compiler import diff as d
from compiler import pipeline, rules, writer
from compiler.cli import main

REPO = Path(__file__).resolve().parent.parent
BASE = (REPO / "tests/cases/diff/base.yaml").read_text()
CHANGE = ("redis: {maxmemory_mb: 2048}", "redis: {maxmemory_mb: 3072}")


def run(*args) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def _git(*args, cwd):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd,
                          check=True, capture_output=True).stdout


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A platform repository: the spec and its generated/ (and docs/) committed, then the spec changed."""
    monkeypatch.setenv("PLATFORMC_CACHE_DIR", str(tmp_path / "cache"))
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    _git("init", "-q", cwd=proj)
    (proj / "platform.yaml").write_text(BASE)
    assert run("generate") == 0
    _git("add", "-A", cwd=proj)
    _git("commit", "-qm", "base", cwd=proj)
    assert BASE.count(CHANGE[0]) == 1
    (proj / "platform.yaml").write_text(BASE.replace(*CHANGE))
    return proj


def _manifest(proj, root="generated"):
    return json.loads((proj / root / writer.MANIFEST).read_text())


def test_full_generate_records_its_inputs(repo):
    inputs = _manifest(repo)["inputs"]
    from compiler import noop
    assert inputs == noop.inputs_fingerprint("platform.yaml", BASE.encode(), None)


def _count_emissions(monkeypatch) -> list:
    """The number of jobs of each emission run (compiler.emit._results) from now on."""
    emitted = []
    from compiler import emit as emit_mod
    orig = emit_mod._results

    def counting(jobs, regions=None):
        emitted.append(len(jobs))
        return orig(jobs, regions)

    monkeypatch.setattr(emit_mod, "_results", counting)
    return emitted


def test_diff_reads_the_committed_base_when_proven_and_reports_the_same(repo, capsys, monkeypatch):
    old, outputs = d.base_at_ref("HEAD", "platform.yaml")
    assert outputs is not None  # the manifest's inputs are this spec's and this platformc's
    emitted = _count_emissions(monkeypatch)
    assert run("diff", "--base", "HEAD") == 0
    fast = capsys.readouterr().out
    assert len(emitted) == 1  # one side emitted (the working tree's); the base's files were read
    # the same diff with the base emitted (no inputs record): the same report
    data = _manifest(repo)
    del data["inputs"]
    (repo / "generated" / writer.MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    spec = (repo / "platform.yaml").read_text()
    (repo / "platform.yaml").write_text(BASE)
    _git("commit", "-qam", "no inputs record", cwd=repo)
    (repo / "platform.yaml").write_text(spec)
    assert d.base_at_ref("HEAD", "platform.yaml")[1] is None
    emitted.clear()
    assert run("diff", "--base", "HEAD") == 0
    assert capsys.readouterr().out == fast
    assert len(emitted) == 2  # both sides emitted
    assert "Redis maxmemory 2048 → 3072 MiB" in fast


def test_a_committed_tree_that_is_not_proven_is_emitted(repo, capsys):
    """Another spec's fingerprint, or a file whose bytes are not the recorded ones: the base is emitted."""
    # a generated file edited by hand and committed: its digest no longer matches
    victim = next(p for p in sorted((repo / "generated/terraform/regions").rglob("main.tf")))
    victim.write_text(victim.read_text() + "# edited\n")
    spec = (repo / "platform.yaml").read_text()
    (repo / "platform.yaml").write_text(BASE)
    _git("commit", "-qam", "hand edit", cwd=repo)
    (repo / "platform.yaml").write_text(spec)
    old, outputs = d.base_at_ref("HEAD", "platform.yaml")
    assert outputs is not None
    owners = {o for r, o in outputs.files.items() if r == victim.relative_to(repo / "generated").as_posix()}
    assert outputs.select(owners) is None  # the read fails its proof: diff emits the base instead
    # a base spec other than the one compiled into generated/
    (repo / "platform.yaml").write_text(BASE.replace("maxmemory_mb: 2048", "maxmemory_mb: 1024"))
    _git("commit", "-qam", "spec without regenerating", cwd=repo)
    (repo / "platform.yaml").write_text(spec)
    assert d.base_at_ref("HEAD", "platform.yaml")[1] is None


def test_diff_of_a_regenerated_commit_reads_both_trees_and_reports_the_same(repo, capsys, monkeypatch):
    """The user's loop: edit, `platformc generate`, commit; CI diffs the commit against its parent. Both sides'
    files are then read from trees whose manifests prove them current (nothing emitted), and the report is
    the one emitting both sides gives."""
    assert run("generate") == 0
    _git("add", "-A", cwd=repo)
    _git("commit", "-qm", "change, regenerated", cwd=repo)
    emitted = _count_emissions(monkeypatch)
    capsys.readouterr()
    assert run("diff", "--base", "HEAD~1") == 0
    fast = capsys.readouterr().out
    assert emitted == []  # neither side emitted
    assert "Redis maxmemory 2048 → 3072 MiB" in fast and "datastores" in fast
    # the same diff with every file emitted: both records dropped from the manifests the diff reads
    data = _manifest(repo)
    del data["inputs"]
    (repo / "generated" / writer.MANIFEST).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    assert run("diff", "--base", "HEAD~1") == 0
    one_side = capsys.readouterr().out
    assert emitted == [len(emitted) and emitted[0]]  # the working tree's side emitted, the base's read
    assert one_side == fast


def test_a_working_tree_that_is_not_proven_is_emitted(repo, capsys, monkeypatch):
    """A generated file edited by hand after generate, or a spec edited without regenerating: the working
    tree's files are not trusted, the new side is emitted, and the diff still shows the change."""
    assert run("generate") == 0
    raw = (repo / "platform.yaml").read_bytes()
    import time
    now = time.time_ns()
    assert d.working_outputs("platform.yaml", raw, None, now) is not None
    victim = repo / "generated/datastores/euw1/redis.conf"
    assert victim.exists()
    victim.write_text(victim.read_text() + "# edited\n")
    got = d.working_outputs("platform.yaml", raw, None, now)
    owner = got.files["datastores/euw1/redis.conf"]
    assert got.select({owner}) is None  # its read fails the proof
    emitted = _count_emissions(monkeypatch)
    capsys.readouterr()
    assert run("diff", "--base", "HEAD") == 0
    out = capsys.readouterr().out
    assert len(emitted) == 1 and "Redis maxmemory 2048 → 3072 MiB" in out, out
    # the spec edited again without regenerating: its bytes are not the ones the tree records
    (repo / "platform.yaml").write_text(BASE.replace(CHANGE[0], "redis: {maxmemory_mb: 4096}"))
    assert d.working_outputs("platform.yaml", (repo / "platform.yaml").read_bytes(), None, now) is None
    emitted.clear()
    assert run("diff", "--base", "HEAD") == 0
    assert len(emitted) == 1 and "2048 → 4096 MiB" in capsys.readouterr().out


def test_region_run_keeps_only_a_matching_inputs_record(repo):
    before = _manifest(repo)["inputs"]
    (repo / "platform.yaml").write_text(BASE)
    assert run("generate", "--region", "use1") == 0
    assert _manifest(repo)["inputs"] == before  # same inputs: the record stands
    (repo / "platform.yaml").write_text(BASE.replace(*CHANGE))
    assert run("generate", "--region", "use1") == 0
    assert "inputs" not in _manifest(repo)  # other regions may be from another spec now: no record
    assert run("generate") == 0
    assert _manifest(repo)["inputs"] != before


def test_check_is_not_stale_for_the_inputs_record_alone(repo, capsys):
    (repo / "platform.yaml").write_text(BASE + "# a comment changes the inputs, not the output\n")
    capsys.readouterr()
    assert run("generate", "--check") == 0
    assert "up to date" in capsys.readouterr().out


def test_base_compiles_with_rules_skipped_without_touching_the_rule_list(monkeypatch):
    """A rule the base breaks is skipped by a parameter: pipeline.RULES (shared by every compile) is never swapped."""
    seen = []
    real = pipeline.compile_document

    def watch(doc, strict=False, skip_rules=frozenset()):
        seen.append((pipeline.RULES is rules.RULES, skip_rules))
        return real(doc, strict, skip_rules)

    monkeypatch.setattr(pipeline, "compile_document", watch)
    broken = BASE.replace("traffic_share: 60, dr_partner: euw1", "traffic_share: 70, dr_partner: euw1")
    assert broken != BASE
    got = d._compile_lenient(lambda skip: pipeline.compile_document(
        __import__("compiler.loader", fromlist=["load_text"]).load_text(broken.encode(), "/tmp/x/platform.yaml"),
        skip_rules=skip), "/tmp/x/platform.yaml", "REF:platform.yaml")
    assert got.plan.region_names
    assert seen and all(same for same, _ in seen)
    assert seen[0][1] == frozenset() and seen[-1][1]  # the second pass skipped the rules that refused the first
    assert "R001" in seen[-1][1] or "R002" in seen[-1][1]
