"""platformc verify's framework: the connections file is the list of paths, every layer it names must be
proved by a checker, broken links print as file:line and set the exit code."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from compiler.cli import cli
from compiler.verify import FORMAT, Tree, VerifyError, verify


def _tree(tmp_path, layers, region="r1"):
    conn = {"id": "a->b:80/tcp", "purpose": "a calls b", "from": {"name": "a", "kind": "pods"},
            "to": {"name": "b", "kind": "pods"}, "address": "b.b.svc.cluster.local", "port": 80, "dest_port": 8080,
            "protocol": "TCP", "app_protocol": "http", "tls": "", "layers": layers}
    head = {"format": FORMAT, "region": region, "cloud": "aws", "addressing": {}}
    text = json.dumps(head)[:-1] + ', "connections": [\n' + json.dumps(conn) + "\n]}\n"
    (tmp_path / "connections").mkdir()
    (tmp_path / "connections" / f"{region}.json").write_text(text)
    return tmp_path


@pytest.fixture
def no_checkers(monkeypatch):
    monkeypatch.setattr("compiler.verify.CHECKERS", ())


def test_connections_are_read_with_their_lines(tmp_path):
    tree = Tree(_tree(tmp_path, []))
    (c,) = tree.connections("r1")
    assert (c.id, c.line, c.port, c.dest_port, c.source.name, c.dest.name) == ("a->b:80/tcp", 2, 80, 8080, "a", "b")
    assert tree.regions == ["r1"]


def test_a_layer_no_checker_proves_is_broken(tmp_path, no_checkers):
    report = verify(_tree(tmp_path, ["teleport"]))
    assert [b.format() for b in report.broken] == [
        "connections/r1.json:2: [teleport] a->b:80/tcp: no checker proves this layer"]


def test_clean_tree_exits_0_and_broken_tree_exits_1(tmp_path, no_checkers):
    (tmp_path / "ok").mkdir()
    ok = CliRunner().invoke(cli, ["verify", str(_tree(tmp_path / "ok", []))])
    assert ok.exit_code == 0, ok.output
    assert "1 connections x 0 layers checked (0 checks), 0 broken" in ok.output
    (tmp_path / "bad").mkdir()
    bad = CliRunner().invoke(cli, ["verify", str(_tree(tmp_path / "bad", ["teleport"]))])
    assert bad.exit_code == 1
    assert f"{tmp_path / 'bad'}/connections/r1.json:2: [teleport] a->b:80/tcp: no checker proves this layer" in bad.output
    assert bad.output.rstrip().splitlines()[-1].startswith("1 connections x 0 layers checked (0 checks), 1 broken")


def test_a_tree_without_connections_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["verify", str(tmp_path)])
    assert result.exit_code == 2
    assert "no connections/<region>.json files" in result.output
    with pytest.raises(VerifyError):
        verify(tmp_path)


def test_an_unknown_format_is_refused(tmp_path):
    root = _tree(tmp_path, [])
    path = root / "connections" / "r1.json"
    path.write_text(path.read_text().replace(f'"format": {FORMAT}', '"format": 99'))
    with pytest.raises(VerifyError, match="format"):
        verify(root)


def test_fast_yaml_reader_builds_what_safe_loader_builds():
    """load_yaml_all builds values itself (speed); on every generated YAML file it must equal SafeLoader's."""
    import yaml

    from compiler.verify import _LineLoader, load_yaml_all
    from tests.conftest import REPO
    files = sorted((REPO / "generated").rglob("*.yaml"))
    assert len(files) > 300
    for f in files:
        text = f.read_text()
        assert load_yaml_all(text) == [d for d in yaml.load_all(text, Loader=_LineLoader) if d is not None], f
    odd = "a: 0x1F\nb: 1_000\nc: 1.5\nd: ~\ne: 'yes'\nf: yes\ng: 2026-12-02\nh: [1, {i: j}]\n"
    assert load_yaml_all(odd) == [d for d in yaml.load_all(odd, Loader=_LineLoader)]


def test_fast_resolving_asks_what_the_loader_would():
    """load_yaml_all's loader resolves through a memo of yaml.resolver.Resolver.resolve and skips the path resolver
    calls: right only while _LineLoader adds no implicit resolver and no path resolver."""
    import yaml

    from compiler.verify import _LineLoader
    assert _LineLoader.yaml_implicit_resolvers == yaml.resolver.Resolver.yaml_implicit_resolvers
    assert not _LineLoader.yaml_path_resolvers
