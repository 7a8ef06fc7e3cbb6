"""platformc verify's identity layer, the External Secrets Operator's Vault login: the ClusterSecretStore logs in with
the JWT auth method at the mount, as the role, with the audience and ServiceAccount that vault/configure.sh sets up,
on the issuer the region root outputs. Each test breaks one generated file the way a hand edit or a template mistake
would and expects the layer to name it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from compiler.verify import verify
from tests.conftest import REPO

LAYER = "identity"
SPECS = {c: REPO / f"tests/cases/{c}/platform.yaml" for c in ("aws-only", "gcp-only", "azure-only")}


def _generate(spec: Path, out: Path) -> Path:
    from compiler import writer
    from compiler.emit import emit
    from compiler.pipeline import compile_file
    plan = compile_file(str(spec)).plan
    outputs, _ = emit(plan, ["connections", "kubernetes", "helm", "terraform"], with_docs=False)
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("verify-vault")
    return {c: _generate(spec, base / c) for c, spec in SPECS.items()}


@pytest.fixture
def tree(trees, tmp_path, monkeypatch, request):
    monkeypatch.setattr("compiler.verify.CHECKERS", ("compiler.verify.identity",))
    dst = tmp_path / "gen"
    shutil.copytree(trees[request.param], dst)
    return dst


def _region(tree) -> str:
    return sorted(p.stem for p in (tree / "connections").glob("*.json"))[0]


def _store(tree) -> Path:
    return tree / f"helm/{_region(tree)}/charts/platform-secrets/templates/external-secrets.yaml"


def _script(tree) -> Path:
    return tree / f"terraform/regions/{_region(tree)}/vault/configure.sh"


def _replace(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert old in text, (path, old)
    line = text[:text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return line


def _vault_broken(tree) -> list:
    report = verify(tree)
    assert LAYER in report.layers
    return [b for b in report.broken if b.layer == LAYER and b.connection.startswith("ClusterSecretStore")]


@pytest.mark.parametrize("tree", list(SPECS), indirect=True)
def test_the_generated_login_is_proved(tree):
    from compiler.verify import Tree
    from compiler.verify import identity
    t = Tree(tree)
    results = [x for r in t.regions for x in identity.check(t, r, t.connections(r))
               if x.connection == "ClusterSecretStore vault"]
    assert len(results) == len(t.regions) and not [b for x in results for b in x.broken]


@pytest.mark.parametrize("tree", ["aws-only"], indirect=True)
def test_a_store_on_another_mount(tree):
    region = _region(tree)
    line = _replace(_store(tree), "path: jwt-", "path: jwt-other-")
    broken = _vault_broken(tree)
    assert [(b.file, b.line) for b in broken] == [(str(_store(tree).relative_to(tree)), line)]  # jwt's first line
    assert "enables no JWT auth method at jwt-other-" in broken[0].message and region in broken[0].file


@pytest.mark.parametrize("tree", ["gcp-only"], indirect=True)
def test_the_kubernetes_auth_method_is_broken(tree):
    text = _store(tree).read_text()
    start = text.index("      auth:\n")
    end = text.index("---", start)
    _store(tree).write_text(text[:start] + "      auth:\n        kubernetes:\n          mountPath: kubernetes-x\n"
                            "          role: external-secrets\n" + text[end:])
    (broken,) = _vault_broken(tree)
    assert "TokenReview" in broken.message


@pytest.mark.parametrize("tree", ["azure-only"], indirect=True)
def test_a_role_that_binds_another_audience_or_subject(tree):
    line = _replace(_script(tree), "bound_audiences=vault", "bound_audiences=sts.amazonaws.com")
    _replace(_script(tree), "bound_subject=system:serviceaccount:external-secrets:external-secrets",
             "bound_subject=system:serviceaccount:external-secrets:default")
    broken = _vault_broken(tree)
    assert {b.line for b in broken} == {line - 2}  # the role's `vault write` line
    assert any("binds audiences ['sts.amazonaws.com']; the token carries ['vault']" in b.message for b in broken)
    assert any("binds subject system:serviceaccount:external-secrets:default" in b.message for b in broken)


@pytest.mark.parametrize("tree", ["aws-only"], indirect=True)
def test_a_role_of_the_oidc_type(tree):
    _replace(_script(tree), "  role_type=jwt \\\n", "")
    (broken,) = _vault_broken(tree)
    assert "role_type=jwt" in broken.message


@pytest.mark.parametrize("tree", ["gcp-only"], indirect=True)
def test_a_role_for_another_service_account_of_the_store(tree):
    _replace(_store(tree), "              name: external-secrets\n", "              name: nobody\n")
    (broken,) = _vault_broken(tree)
    assert "defines no ServiceAccount external-secrets/nobody" in broken.message


@pytest.mark.parametrize("tree", ["azure-only"], indirect=True)
def test_a_root_without_the_issuer_output(tree):
    outputs = tree / f"terraform/regions/{_region(tree)}/outputs.tf"
    _replace(outputs, 'output "kubernetes_oidc_issuer_url"', 'output "oidc_issuer"')
    (broken,) = _vault_broken(tree)
    assert broken.file.endswith("outputs.tf") and "no output with the cluster's OIDC issuer" in broken.message


@pytest.mark.parametrize("tree", ["aws-only"], indirect=True)
def test_a_missing_script(tree):
    _script(tree).unlink()
    (broken,) = _vault_broken(tree)
    assert broken.file.endswith("vault/configure.sh") and broken.line == 0
