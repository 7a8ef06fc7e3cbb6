"""compiler.codecache: the code dataclasses, typing and namedtuple compile from text at import, kept between runs
(issue 16, start-up). What runs is what the builtins would have compiled; the stand-ins are gone after the block."""

from __future__ import annotations

import collections
import dataclasses
import marshal
import os
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
    for (text, filename, mode), code in kept.items():
        assert marshal.loads(code) == compile(text, filename, mode, dont_inherit=True), text


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
