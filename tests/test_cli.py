"""The command line: exit codes, positioned errors without tracebacks, --check, untouched output on failure."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compiler import targets
from compiler.cli import main
from tests import fake_target

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests/cases/two-region/platform.yaml"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """A project dir with the two-region spec and only the fake target registered."""
    shutil.copy(FIXTURE, tmp_path / "platform.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(targets, "TARGETS", {"fake": "tests.fake_target"})
    fake_target.FAIL["on"] = None
    return tmp_path


def run(*args):
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".platformc.lock"}


def test_validate_ok(work, capsys):
    assert run("validate") == 0
    assert "valid (2 regions, 2 warnings)" in capsys.readouterr().out


def test_strict_turns_warnings_into_errors(work, capsys):
    assert run("validate", "--strict") == 2
    assert "[R009]" in capsys.readouterr().err


def test_generate_check_cycle(work, capsys):
    assert run("generate", "--check") == 1
    assert "missing: generated/fake/use1/region.yaml" in capsys.readouterr().err
    assert run("generate") == 0
    assert (work / "generated/fake/use1/region.yaml").exists()
    assert (work / "docs/regions/euw1.md").read_text().count("## Fake") == 1
    assert run("generate", "--check") == 0
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("tag: 2.3.1", "tag: 2.4.0").replace("max: 10}", "max: 9}"))
    capsys.readouterr()
    assert run("generate", "--check") == 1
    err = capsys.readouterr().err
    assert "stale: generated/fake/use1/services/orders.yaml" in err and "-replicas: 10" in err and "+replicas: 9" in err


def test_removed_service_is_pruned(work):
    assert run("generate") == 0
    spec = work / "platform.yaml"
    text = spec.read_text().replace("    recommend:\n", "    recommend:\n      enabled: false\n")
    spec.write_text(text)
    assert run("generate") == 0
    assert not (work / "generated/fake/use1/services/recommend.yaml").exists()
    assert (work / "generated/fake/use1/services/orders.yaml").exists()


def test_bad_spec_exits_2_positioned_and_changes_nothing(work, capsys):
    assert run("generate") == 0
    before = snapshot(work)
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("read_replicas: 1", "read_replicas: lots"))
    capsys.readouterr()
    assert run("generate") == 2
    err = capsys.readouterr().err
    assert "platform.yaml:" in err and "settings.datastores.postgres.read_replicas: [S001]" in err
    assert "Traceback" not in err
    after = snapshot(work)
    after.pop("platform.yaml"), before.pop("platform.yaml")
    assert after == before


@pytest.mark.parametrize("raw", [b"", b"- a\n", b"a: [\n", b"\xff\xfe", b"a: 1\na: 2\n"])
def test_bad_bytes_exit_2(work, capsys, raw):
    (work / "platform.yaml").write_bytes(raw)
    assert run("generate") == 2
    err = capsys.readouterr().err
    assert err.startswith("platform.yaml:") and "Traceback" not in err
    assert not (work / "generated").exists()


def test_failure_mid_emit_leaves_generated_untouched(work, capsys):
    assert run("generate") == 0
    before = snapshot(work / "generated")
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("tag: 2.3.1", "tag: 2.4.0"))
    fake_target.FAIL["on"] = "euw1"  # use1 emits first, then euw1 fails
    assert run("generate") == 1
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: injected failure" in err and "Traceback" not in err
    assert snapshot(work / "generated") == before


def test_debug_shows_the_traceback(work):
    fake_target.FAIL["on"] = "use1"
    with pytest.raises(RuntimeError, match="injected failure"):
        main(["--debug", "generate"])


@pytest.mark.parametrize("args,needle", [
    (("generate", "--region", "use2"), "unknown region 'use2'; did you mean 'use1'?"),
    (("generate", "--target", "fak"), "unknown target 'fak'; did you mean 'fake'?"),
    (("show", "euw2"), "unknown region 'euw2'; did you mean 'euw1'?"),
])
def test_unknown_names_suggest(work, capsys, args, needle):
    assert run(*args) == 2
    assert needle in capsys.readouterr().err


def test_region_run_touches_only_that_region(work):
    assert run("generate") == 0
    other = snapshot(work / "generated/fake/euw1")
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("max: 10}", "max: 9}"))
    assert run("generate", "--region", "use1") == 0
    assert "replicas: 9" in (work / "generated/fake/use1/services/orders.yaml").read_text()
    assert snapshot(work / "generated/fake/euw1") == other
    assert (work / "generated/fake/regions.txt").exists()


def test_show_annotates_origins(work, capsys):
    assert run("show", "euw1") == 0
    out = capsys.readouterr().out
    assert "maxmemory_mb: 2048  # region:euw1" in out
    assert "read_replicas: 1  # global" in out
    assert "maxmemory_policy: allkeys-lru  # default" in out


def test_version(capsys):
    assert run("--version") == 0
    assert "platformc, version" in capsys.readouterr().out


def test_schema_check(work, capsys):
    assert run("schema", "--out", "s.json", "--check") == 1
    assert run("schema", "--out", "s.json") == 0
    assert run("schema", "--out", "s.json", "--check") == 0


def test_output_is_identical_across_hash_seeds(tmp_path):
    """Two full compiles of the reference spec in fresh interpreters with different hash seeds."""
    outs = []
    for seed in ("0", "12345"):
        out = tmp_path / f"out-{seed}"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        subprocess.run([sys.executable, "-m", "compiler", "generate", "--out", str(out / "generated"),
                        "--docs-out", str(out / "docs")], cwd=REPO, env=env, check=True, capture_output=True)
        outs.append(snapshot(out))
    assert outs[0] == outs[1] and len(outs[0]) > 15
    for path, data in outs[0].items():
        assert data.endswith(b"\n") and b"\r\n" not in data, path


def test_show_is_valid_yaml_with_derived_values(work, capsys):
    import yaml
    assert run("show", "use1") == 0
    data = yaml.safe_load(capsys.readouterr().out)
    assert data["settings"]["datastores"]["postgres"]["read_replicas"] == 1
    assert data["derived"]["connections"]["max_client_conn"] == 1000
    assert data["derived"]["zones"][0]["name"] == "us-east-1a"


def test_noop_fast_path_skips_the_compile(work, capsys):
    assert run("generate") == 0
    fake_target.FAIL["on"] = "use1"  # any emission would now fail: the fast path must not emit
    capsys.readouterr()
    assert run("generate") == 0
    out = capsys.readouterr()
    assert "inputs unchanged since the last generate" in out.out
    assert "[R009]" in out.err  # the warnings of the recorded run are printed again


@pytest.mark.parametrize("args", [("generate", "--check"), ("generate", "--region", "use1"),
                                  ("generate", "--target", "fake"), ("generate", "--strict")])
def test_check_filters_and_strict_always_compile(work, args):
    assert run("generate") == 0
    fake_target.FAIL["on"] = "use1"
    assert run(*args) in (1, 2)  # they compiled (and hit the injected failure or the strict warnings)


def test_edited_output_or_spec_takes_the_full_path(work):
    assert run("generate") == 0
    out = work / "generated/fake/use1/region.yaml"
    good = out.read_text()
    out.write_text("hand edit\n")
    assert run("generate") == 0
    assert out.read_text() == good  # regenerated, not skipped
    (work / "docs/overview.md").unlink()
    assert run("generate") == 0
    assert (work / "docs/overview.md").exists()
    spec = work / "platform.yaml"
    spec.write_text(spec.read_text().replace("max: 10}", "max: 9}"))
    assert run("generate") == 0
    assert "replicas: 9" in (work / "generated/fake/use1/services/orders.yaml").read_text()


def test_fingerprint_follows_sources_and_inputs(tmp_path, monkeypatch):
    from compiler import noop
    src = tmp_path / "src"
    src.mkdir()
    (src / "t.j2").write_text("a")
    spec = tmp_path / "p.yaml"
    spec.write_text("x: 1\n")
    reg = tmp_path / "f.csv"
    reg.write_text("1\n")
    monkeypatch.setattr(noop, "SOURCES", (src,))
    first = noop.fingerprint(str(spec), [str(reg)])
    (src / "t.j2").write_text("b")
    second = noop.fingerprint(str(spec), [str(reg)])
    reg.write_text("2\n")
    third = noop.fingerprint(str(spec), [str(reg)])
    assert len({first, second, third}) == 3
    reg.unlink()
    assert noop.fingerprint(str(spec), [str(reg)]) is None
