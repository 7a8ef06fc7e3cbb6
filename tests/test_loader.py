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
