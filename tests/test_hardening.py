"""Issue #15, the pieces left after the transactional writer: regression tests that ran red first.

- `platformc docs --out X` goes through the writer's root checks like `generate` does;
- a tampered manifest naming a file inside the root that platformc did not write never gets it deleted
  (the manifest records each file's SHA-256; a file is pruned only when its bytes are the ones recorded).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compiler import writer
from tests.test_writer_faults import REFUSED, errors, run, snapshot, work, no_writes_outside  # noqa: F401 (fixtures)


# ------------------------------------------------------------------ platformc docs --out: the root checks

@pytest.mark.parametrize("out", ["/", ".", ".."])
def test_docs_out_is_checked_like_generate(work, capsys, no_writes_outside, out):
    before = snapshot(work.parent)
    assert run("docs", "--out", out) == 2
    err = capsys.readouterr().err
    assert "refusing --out" in err and "internal error" not in err, err
    assert snapshot(work.parent) == before


def test_docs_out_holding_a_git_work_tree_is_refused(work, capsys):
    (work / "site").mkdir()
    (work / "site" / ".git").mkdir()
    assert run("docs", "--out", "site") == 2
    assert ".git" in capsys.readouterr().err
    assert sorted(p.name for p in (work / "site").iterdir()) == [".git"]


def test_docs_out_still_writes_a_root_of_its_own(work, capsys):
    assert run("docs", "--out", "site") == 0
    assert (work / "site" / "overview.md").is_file()


# ------------------------------------------------------------------ a tampered manifest naming a foreign file

@pytest.mark.parametrize("root,owner", [("generated", "fake/use1"), ("docs", "docs/global")])
def test_a_foreign_file_named_by_a_tampered_manifest_is_never_deleted(work, capsys, root, owner):
    assert run("generate") == 0
    notes = work / root / "notes.txt"
    notes.write_text("my own notes, never generated\n")
    manifest = work / root / writer.MANIFEST
    data = json.loads(manifest.read_text())
    data["files"]["notes.txt"] = owner  # a bad merge or a hostile PR: "platformc wrote notes.txt"
    manifest.write_text(json.dumps(data))
    before = snapshot(work / root)
    capsys.readouterr()
    assert run("generate") == REFUSED
    lines = errors(capsys)
    err = "\n".join(lines)
    assert len(lines) == 1 and "notes.txt" in err and "internal error" not in err, err
    assert notes.read_text() == "my own notes, never generated\n"
    assert snapshot(work / root) == before


def test_an_edited_stale_file_is_not_pruned_either(work, capsys):
    """A file platformc wrote but someone changed since: its bytes are no longer platformc's to delete."""
    assert run("generate") == 0
    victim = work / "generated/fake/use1/services/recommend.yaml"
    assert victim.is_file()
    victim.write_text(victim.read_text() + "# my change\n")
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("    recommend:\n", "    recommend:\n      enabled: false\n"))
    capsys.readouterr()
    assert run("generate") == REFUSED
    assert "recommend.yaml" in "\n".join(errors(capsys))
    assert victim.read_text().endswith("# my change\n")


def test_a_stale_file_platformc_wrote_is_still_pruned(work, capsys):
    assert run("generate") == 0
    victim = work / "generated/fake/use1/services/recommend.yaml"
    assert victim.is_file()
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("    recommend:\n", "    recommend:\n      enabled: false\n"))
    assert run("generate") == 0
    assert not victim.exists()
    recorded = json.loads((work / "generated" / writer.MANIFEST).read_text())
    assert "fake/use1/services/recommend.yaml" not in recorded["files"]
    assert set(recorded["sha256"]) == set(recorded["files"])


def _git(cwd, *args):
    import subprocess
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "-c", "commit.gpgsign=false", *args],
                   cwd=cwd, check=True, capture_output=True)


def test_a_manifest_without_digests_prunes_only_what_git_can_restore(work, capsys):
    """A manifest written before digests (or an entry without one) proves nothing by itself: a stale file is pruned
    only when git holds exactly its bytes at HEAD (nothing is lost), never an untracked or edited one."""
    assert run("generate") == 0
    manifest = work / "generated" / writer.MANIFEST
    data = json.loads(manifest.read_text())
    del data["sha256"]  # as an older platformc wrote it
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    _git(work, "init", "-q")
    _git(work, "add", "generated")
    _git(work, "commit", "-q", "-m", "generated")
    stale = work / "generated/fake/use1/services/recommend.yaml"
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("    recommend:\n", "    recommend:\n      enabled: false\n"))
    # an untracked file named by the manifest is refused, with nothing removed
    notes = work / "generated/notes.txt"
    notes.write_text("mine\n")
    data["files"]["notes.txt"] = "fake/use1"
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    capsys.readouterr()
    assert run("generate") == REFUSED
    assert "notes.txt" in "\n".join(errors(capsys))
    assert notes.read_text() == "mine\n" and stale.is_file()
    # without it, the committed stale file goes: git can restore its bytes
    del data["files"]["notes.txt"]
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    assert run("generate") == 0
    assert not stale.exists() and notes.read_text() == "mine\n"
    assert "sha256" in json.loads(manifest.read_text())  # written with digests from now on
