"""verify's HCL reader (compiler.verify.infra.read_hcl) scans with patterns a stretch at a time; these are the readings
the character-by-character reader before it gave (same values, types, lines and errors), on the corners of its
grammar: comments, escapes and interpolations, heredocs, expressions kept as text, nesting, unterminated strings."""

from __future__ import annotations

import pytest

from compiler.verify.infra import Expr, Lst, Obj, read_hcl


def _attrs(text: str) -> tuple[dict, dict]:
    root = read_hcl(text)
    return dict(root.attrs), dict(root.attrs.lines)


def test_comments_of_every_kind_are_skipped():
    text = 'a = 1 # one\n// two\nb = /* three */ 2\n/* four\nlines */ c = 3\nd = "x" /*/ e = 4\n'
    assert _attrs(text) == ({"a": 1, "b": 2, "c": 3, "d": '"x" /*/ e = 4'}, {"a": 1, "b": 3, "c": 5, "d": 6})
    assert type(read_hcl(text).get("d")) is Expr  # "/*/" opens and closes a comment: what follows is an expression


def test_strings_read_escapes_outside_interpolations_only():
    text = 'a = "tab\\t \\"q\\" back\\\\ nl\\n"\nb = "${var.x["k"]}-${upper("y")}"\nc = "$${not} %{ if x }y%{ endif }"\n'
    assert _attrs(text) == ({"a": 'tab\t "q" back\\ nl\n', "b": '${var.x["k"]}-${upper("y")}',
                             "c": "$${not} %{ if x }y%{ endif }"}, {"a": 1, "b": 2, "c": 3})
    assert all(type(v) is str for v in read_hcl(text).attrs.values())


def test_a_heredoc_is_one_expression_up_to_its_closing_word():
    text = 'code = <<EOT\nline "one" {\n  EOT_NOT\nEOT\nnext = 5\n'
    assert _attrs(text) == ({"code": '<<EOT line "one" { EOT_NOT EOT', "next": 5}, {"code": 1, "next": 5})


def test_expressions_numbers_and_literals():
    text = ('a = merge(var.a, { b = "c,d" }) # tail\nb = [for x in var.l : x]\nc = { for k, v in m : k => v }\n'
            'd = -1.5\ne = true\nf = null\n')
    assert _attrs(text) == ({"a": 'merge(var.a, { b = "c,d" })', "b": "[for x in var.l : x]",
                             "c": "{ for k, v in m : k => v }", "d": -1.5, "e": True, "f": None},
                            {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6})
    assert all(type(read_hcl(text).get(k)) is Expr for k in "abc")


def test_blocks_lists_and_objects_keep_their_lines():
    text = ('resource "t" "n" {\n  x = [\n    { p = 1, q = "two" },\n    "three",\n  ]\n  dynamic "d" {\n'
            '    for_each = var.y\n    content { z = d.value }\n  }\n}\n')
    (res,) = read_hcl(text).blocks
    assert (res.type, res.labels, res.line) == ("resource", ["t", "n"], 1)
    x = res.get("x")
    assert type(x) is Lst and x == [{"p": 1, "q": "two"}, "three"] and x.lines == [3, 4]
    assert type(x[0]) is Obj and x[0].lines == {"p": 3, "q": 3}
    dyn = res.block("dynamic", "d")
    assert (dyn.line, dyn.line_of("for_each"), dyn.block("content").get("z")) == (6, 7, "d.value")


@pytest.mark.parametrize("text", ['a = "open\n', 'a = f("open\n'])
def test_an_unterminated_string_fails_as_before(text):
    with pytest.raises(IndexError, match="string index out of range"):  # `platformc verify` prints this message
        read_hcl(text)



@pytest.mark.parametrize("text", ["a = [ ) ]\n", "a = [1, ) ]\n", "a = [ ] ) ]\n", 'b = ["x" ) ]\n'])
def test_a_list_item_that_reads_as_nothing_ends_the_reading(text):
    # These looped forever (the item read as an empty expression without moving on, the list growing without
    # end); now the list is not a list, the value is read raw, and the stray bracket is a positioned error.
    with pytest.raises(ValueError, match="line 1: expected a name"):
        read_hcl(text)
