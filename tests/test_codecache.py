"""compiler.codecache: the code dataclasses, typing and namedtuple compile from text at import, kept between runs
(issue 16, start-up). What runs is what the builtins would have compiled; the stand-ins are gone after the block."""

from __future__ import annotations

import collections
import dataclasses
import marshal
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest

from compiler import codecache

REPO = Path(__file__).resolve().parent.parent


def _make_classes():
    @dataclasses.dataclass(frozen=True)
    class Frozen:
        a: int
        b: str = "x"
        c: list = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(order=True)
    class Ordered:
        n: int
        name: "str" = "n"

    Pair = collections.namedtuple("Pair", "left right", defaults=(0,))
    return Frozen, Ordered, Pair


def _functions(cls) -> dict:
    return {name: value.__code__ for name, value in vars(cls).items() if hasattr(value, "__code__")}


def test_the_code_run_is_the_code_the_builtins_compile(tmp_path):
    file = str(tmp_path / "code.marshal")
    plain = _make_classes()
    for run in ("compiles and keeps", "reads the file"):
        with codecache.installed(file) as cache:
            Frozen, Ordered, Pair = _make_classes()
            ref = typing.ForwardRef("dict[str, int] | None")
        assert (cache.added > 0) == (run == "compiles and keeps"), run
        for made, standard in zip((Frozen, Ordered), plain[:2]):
            assert _functions(made) == _functions(standard)
            assert [(f.name, f.default, f.default_factory) for f in dataclasses.fields(made)] == \
                [(f.name, f.default, f.default_factory) for f in dataclasses.fields(standard)]
        assert Frozen(1) == Frozen(1, "x", []) and repr(Frozen(2)) == repr(plain[0](2))
        with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
            Frozen(1).a = 2
        assert Ordered(1) < Ordered(2) and Pair(1) == (1, 0) and Pair.__new__.__code__ == plain[2].__new__.__code__
        assert ref.__forward_code__ == typing.ForwardRef("dict[str, int] | None").__forward_code__  # typing's own
    # every kept code is exactly a fresh compile of its text
    with open(file, "rb") as f:
        kept = marshal.load(f)
    assert kept
    _assert_fresh(kept)


def _assert_fresh(kept: dict) -> None:
    """Every kept code is exactly a fresh compile of its text, every kept regex program re's own."""
    import _sre
    for key, value in kept.items():
        if len(key) == 3:
            text, filename, mode = key
            assert marshal.loads(value) == compile(text, filename, mode, dont_inherit=True), text
        else:
            assert _sre.compile(key[0], *marshal.loads(value)) == codecache._STANDARD_REGEX(*key), key


def test_the_stand_ins_are_gone_after_the_block_and_a_bad_file_only_costs_compiles(tmp_path):
    file = tmp_path / "code.marshal"
    file.write_bytes(b"\x00not marshal")
    with codecache.installed(str(file)) as cache:
        assert dataclasses.exec == cache.exec and typing.compile == cache.compile and collections.eval == cache.eval
        _make_classes()
    assert not any(hasattr(m, n) for m, n in ((dataclasses, "exec"), (typing, "compile"), (collections, "eval")))
    assert cache.added and file.read_bytes() != b"\x00not marshal"  # rewritten with what was compiled


def test_a_damaged_entry_is_compiled_again(tmp_path):
    file = tmp_path / "code.marshal"
    file.write_bytes(marshal.dumps({("1 + 1", "<string>", "eval"): b"junk", ("2 + 2", "<string>", "eval"): marshal.dumps("3")}))
    cache = codecache.Cache(str(file))
    assert cache.eval("1 + 1", {}) == 2 and cache.eval("2 + 2", {}) == 4 and cache.added == 2


def test_a_full_file_keeps_only_what_its_run_used(tmp_path, monkeypatch):
    file = tmp_path / "code.marshal"
    stale = {(f"x + {i}", "<string>", "eval"): marshal.dumps(compile(f"x + {i}", "<string>", "eval")) for i in range(5)}
    file.write_bytes(marshal.dumps(stale))
    monkeypatch.setattr(codecache, "MAX_ENTRIES", 3)
    with codecache.installed(str(file)) as cache:
        assert cache.eval("x + 1", {"x": 1}) == 2 and cache.eval("y", {"y": 2}) == 2
    kept = set(marshal.loads(file.read_bytes()))
    assert ("x + 1", "<string>", "eval") in kept and ("y", "<string>", "eval") in kept
    assert not kept & (set(stale) - {("x + 1", "<string>", "eval")})


def test_a_cache_used_again_writes_only_what_it_adds(tmp_path):
    """compiler/cli.py installs one cache for its own imports and again, the same, for the command."""
    file = tmp_path / "code.marshal"
    cache = codecache.Cache(str(file))
    with codecache.installed(cache=cache):
        cache.eval("1 + 2", {})
    first = file.stat().st_mtime_ns
    file.write_bytes(file.read_bytes())  # a new mtime if it were written again
    touched = file.stat().st_mtime_ns
    with codecache.installed(cache=cache):
        cache.eval("1 + 2", {})
    assert file.stat().st_mtime_ns == touched and first
    with codecache.installed(cache=cache):
        cache.eval("3 + 4", {})
    assert set(marshal.loads(file.read_bytes())) == {("1 + 2", "<string>", "eval"), ("3 + 4", "<string>", "eval")}


def test_an_exec_without_globals_runs_in_the_callers_namespace(tmp_path):
    cache = codecache.Cache(str(tmp_path / "none"))
    marker = []
    cache.exec("marker.append(41 + 1)")
    assert marker == [42]
    assert cache.eval("len(marker)") == 1
    import ast
    assert isinstance(cache.compile("x = 1", "<s>", "exec", ast.PyCF_ONLY_AST), ast.Module)  # flags: the builtin's


def test_a_command_reads_what_the_last_one_kept(tmp_path):
    """Two `platformc validate` processes: the first writes the file, the second reads it; the same answer."""
    env = dict(os.environ, PLATFORMC_CACHE_DIR=str(tmp_path))
    runs = [subprocess.run([sys.executable, "-m", "compiler", "validate", "platform.yaml"], cwd=REPO, env=env,
                           capture_output=True, text=True, check=True) for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout == "platform.yaml: valid (12 regions, 0 warnings)\n"
    assert runs[0].stderr == runs[1].stderr == ""
    assert [p.name for p in tmp_path.glob("code-*.marshal")] == [Path(codecache.path()).name]
    kept = marshal.loads(next(tmp_path.glob("code-*.marshal")).read_bytes())
    assert sum(len(k) == 2 for k in kept) > 20 * codecache._REGEX and sum(len(k) == 3 for k in kept) > 200  # regexes; code texts
    _assert_fresh(kept)


PATTERNS = [(r"^(?P<name>[a-z][a-z0-9-]{0,38})(?:\.(?P<zone>\w+))?$", 0), (r"[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF"
            "\uE000-\uFFFD\U00010000-\U0010ffff]", 0), (r"\s+#.*$", re.M | re.I), (rb"^\d+(?:ms|s)$", 0),
            (r"(?x) a  b # comment", 0), (r"(a)(?(1)b|c)", re.S)]


@pytest.mark.skipif(not codecache._REGEX, reason="re's programs are kept only for the re compile codecache was written from (CPython 3.11)")
def test_a_kept_regex_program_is_the_one_re_compiles(tmp_path):
    """re.compile under the cache: the same Pattern (patterns compare their flags, text and program), groups and
    matches, whether compiled (first run) or read from the file (second)."""
    file = str(tmp_path / "code.marshal")
    for run in ("compiles and keeps", "reads the file"):
        with codecache.installed(file) as cache:
            for pattern, flags in PATTERNS:
                re.purge()
                made = re.compile(pattern, flags)
                standard = codecache._STANDARD_REGEX(pattern, flags)
                assert made == standard and made.groupindex == standard.groupindex and made.groups == standard.groups
                assert made.flags == standard.flags
        assert cache.added == (len(PATTERNS) if run == "compiles and keeps" else 0), run
    assert re._compiler.compile is codecache._STANDARD_REGEX
    with codecache.installed(file):
        scanner = re.Scanner([(r"\d+", lambda s, t: int(t)), (r"\s+", None)])  # compiles a parsed pattern
    assert scanner.scan("1 22") == ([1, 22], "")
    assert re.compile(r"(?P<n>\d+)x").match("12x")["n"] == "12"


@pytest.mark.skipif(not codecache._REGEX, reason="re's programs are kept only for the re compile codecache was written from (CPython 3.11)")
def test_a_regex_that_warns_warns_as_before_and_is_not_kept(tmp_path):
    file = str(tmp_path / "code.marshal")
    for _ in range(2):
        re.purge()
        with codecache.installed(file) as cache, pytest.warns(FutureWarning, match="Possible nested set") as seen:
            re.compile("[[a]"); line = sys._getframe().f_lineno  # noqa: E702
        assert (seen[0].filename, seen[0].lineno) == (__file__, line) and ("[[a]", 0) not in cache.codes


def test_the_regex_stand_in_is_active_on_the_python_it_was_written_for():
    """The checksum guard must not switch it off silently where it was measured (CPython 3.11.2-3.11.7), nor leave
    it on for another re compile."""
    import sys
    import zlib
    import re._compiler
    code = re._compiler.compile.__code__
    known = zlib.crc32(code.co_code + repr((code.co_consts, code.co_names)).encode()) in codecache._KNOWN_REGEX_COMPILERS
    assert codecache._REGEX == (sys.version_info[:2] == (3, 11) and known)
    if sys.version_info[:3] in ((3, 11, 2), (3, 11, 7)):
        assert codecache._REGEX
