"""The loader's bad-input corpus: every malformed file gets a positioned error with its code, fast."""

import time

import pytest

from compiler.errors import SpecError
from compiler.loader import load_text

BOMB = b"a: &a [x, x, x, x, x, x, x, x, x, x]\n" + b"".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n".encode() for i in range(8))

CORPUS = [
    ("malformed", b"version: 1\nregions: [\n", "L001", 3),
    ("bad-indent", b"a:\n  b: 1\n c: 2\n", "L001", 3),
    ("tab", b"a:\n\tb: 1\n", "L001", 2),
    ("empty", b"", "L002", 1),
    ("only-comments", b"# nothing here\n", "L002", 1),
    ("list-root", b"- a\n- b\n", "L003", 1),
    ("scalar-root", b"just text\n", "L003", 1),
    ("latin1", b"version: 1\nname: caf\xe9\n", "L004", 2),
    ("duplicate", b"version: 1\nregions:\n  a: 1\n  a: 2\n", "L005", 4),
    ("duplicate-top", b"version: 1\nversion: 2\n", "L005", 2),
    ("alias-bomb", BOMB, "L006", None),
    ("merge-key", b"base: &b {x: 1}\nother:\n  <<: *b\n", "L007", 3),
    ("complex-key", b"? [a, b]\n: 1\n", "L008", 1),
    ("custom-tag", b"a: !Ref thing\n", "L009", 1),
    ("two-docs", b"a: 1\n---\nb: 2\n", "L010", 3),
    ("int-tag", b"a: 1\nb: !!int abc\n", "L011", 2),
    ("float-tag", b"a: 1\nb: !!float ''\n", "L011", 2),
    ("bool-tag", b"a: 1\nb: !!bool maybe\n", "L011", 2),
    ("base-60", b"a: 1\nport: 1:30\n", "L012", 2),
    ("octal-1.1", b"a: 1\nmode: 017\n", "L012", 2),
    ("int-1e30", b"a: 1\nb: 1000000000000000000000000000000\n", "L013", 2),
    ("int-1e400", b"a: 1\nb: 1" + b"0" * 400 + b"\n", "L013", 2),
    ("int-5000-digits", b"a: 1\nb: 1" + b"0" * 5000 + b"\n", "L013", 2),
    ("inf", b"a: 1\nb: .inf\n", "L013", 2),
    ("nan", b"a: 1\nb: [.nan]\n", "L013", 2),
    ("tag-on-mapping", b"a: 1\nb: !!str {c: 1}\n", "L009", 2),
    ("tag-on-list", b"a: 1\nb: !Ref [1]\n", "L009", 2),
    ("control-byte", b"a: 1\nb: x\x01y\n", "L001", 2),
    ("38-MB", b"a: " + b"x" * (38 * 1024 * 1024) + b"\n", "L014", 1),
]


@pytest.mark.parametrize("name,raw,code,line", CORPUS, ids=[c[0] for c in CORPUS])
def test_bad_input(name, raw, code, line):
    started = time.perf_counter()
    with pytest.raises(SpecError) as exc:
        load_text(raw, "platform.yaml")
    assert time.perf_counter() - started < 1.0, "bad input must fail fast"
    (d,) = exc.value.diagnostics
    assert d.code == code, d.format()
    if line is not None:
        assert d.line == line, d.format()
    assert d.format().startswith(f"platform.yaml:{d.line}:{d.col}: ")


def test_positions_of_keys_and_values():
    doc = load_text(b"a:\n  b: [1, 2]\n  c: {d: x}\n", "f.yaml")
    assert doc.key_pos[("a", "b")] == (2, 3)
    assert doc.value_pos[("a", "b", 1)] == (2, 10)
    assert doc.value_pos[("a", "c", "d")] == (3, 10)


def test_keys_stay_text_and_values_keep_yaml_types():
    doc = load_text(b"no: on\n'1': 1.5\nwhen: 2024-01-01\n", "f.yaml")
    assert doc.data == {"no": True, "1": 1.5, "when": "2024-01-01"}


def test_aliases_within_the_bound_are_fine():
    doc = load_text(b"a: &x {k: 1}\nb: *x\n", "f.yaml")
    assert doc.data == {"a": {"k": 1}, "b": {"k": 1}}


def test_a_control_byte_is_positioned_on_its_own_line_and_column():
    with pytest.raises(SpecError) as exc:
        load_text(b"a: 1\nbb: x\x07y\n", "platform.yaml")
    (d,) = exc.value.diagnostics
    assert (d.line, d.col) == (2, 6) and "\n" not in d.format() and "U+0007" in d.message


def test_quoted_numbers_and_hex_stay_what_they_are():
    doc = load_text(b"a: '1:30'\nb: 0x1F\nc: '017'\nd: 1_000\n", "f.yaml")
    assert doc.data == {"a": "1:30", "b": 31, "c": "017", "d": 1000}


def test_a_command_keeps_a_loaded_spec_and_reads_it_back_exactly(tmp_path, monkeypatch):
    """In the command's process (compiler/codecache.py installed) a spec that loaded is kept, its data and positions
    read back exactly (types, values, order) by the next load of the same bytes; other bytes, a spec that fails and
    another loader version load as usual (issue 16, start-up)."""
    import marshal
    from pathlib import Path

    from compiler import codecache, loader
    raw = (Path(__file__).resolve().parent.parent / "platform.yaml").read_bytes()
    raw += b"\nx_types: [1, 1.5, true, null, '1', 0x10, 1e3, -0.0, 2001-12-14, \"\\u00e9 \\t\", caf\xc3\xa9]\n"
    plain = loader.load_text(raw, "platform.yaml")
    shape = lambda d: (d.file, marshal.dumps((d.data, d.value_pos, d.key_pos)), repr(d.data))  # noqa: E731
    file = str(tmp_path / "code.marshal")
    parsed = []
    real = loader._load_text
    monkeypatch.setattr(loader, "_load_text", lambda *a: parsed.append(a[1]) or real(*a))
    with codecache.installed(file) as cache:
        first = loader.load_text(raw, "platform.yaml")  # parsed; its key kept
        second = loader.load_text(raw, "platform.yaml")  # parsed again; the document kept
        third = loader.load_text(raw, "platform.yaml")  # read back
        assert parsed == ["platform.yaml"] * 2
        assert shape(first) == shape(second) == shape(third) == shape(plain)
        assert third.pos(("regions",), prefer_key=True) == plain.pos(("regions",), prefer_key=True)
        loader.load_text(raw + b"\n", "platform.yaml")  # other bytes: parsed, and only their key kept
        (kept,) = cache.documents.values()  # written when the block ends (the command's process: at its exit)
        assert parsed == ["platform.yaml"] * 3 and len(kept) == 32 and not list(tmp_path.glob("spec-*.marshal"))
        for _ in range(2):  # a spec that fails is never kept
            with pytest.raises(SpecError):
                loader.load_text(b"a: 1\na: 2\n", "bad.yaml")
        assert parsed[-2:] == ["bad.yaml", "bad.yaml"]
        loader.load_text(raw + b"\n", "platform.yaml")
        monkeypatch.setattr(loader, "_VERSION", [b"another loader"])
        assert shape(loader.load_text(raw + b"\n", "platform.yaml"))[1:] == shape(loader.load_text(raw + b"\n", "x.yaml"))[1:]
        assert parsed[-3:] == ["platform.yaml", "platform.yaml", "x.yaml"]
    loader.load_text(raw, "platform.yaml")  # no command running: nothing kept or read
    assert parsed[-1] == "platform.yaml" and len(list(tmp_path.glob("spec-*.marshal"))) == 2
