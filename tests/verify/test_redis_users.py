"""platformc verify's redis-user layer: each Redis user a pod is told to log in as exists where the cache keeps its
users, with exactly the pod's keys, bound to the pod's own identity. Each test breaks one generated file the way a
hand edit or a template mistake would and expects the layer to name it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from compiler.verify import verify
from tests.conftest import REPO
from tests.targets.test_managed_redis_access import managed_spec

LAYER = "redis-user"


def _generate(spec: Path, out: Path) -> Path:
    from compiler import writer
    from compiler.emit import emit
    from compiler.pipeline import compile_file
    plan = compile_file(str(spec)).plan
    outputs, _ = emit(plan, ["connections", "kubernetes", "helm", "terraform", "datastores"], with_docs=False)
    writer.apply(writer.plan_write(out, outputs["generated"], None))
    return out


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("verify-redis")
    out = {c: _generate(managed_spec(c, base / f"{c}.yaml"), base / c) for c in ("aws", "gcp", "azure")}
    out["self-managed"] = _generate(REPO / "tests/cases/two-region/platform.yaml", base / "self-managed")
    return out


@pytest.fixture
def tree(trees, tmp_path, monkeypatch, request):
    monkeypatch.setattr("compiler.verify.CHECKERS", ("compiler.verify.redis_users",))
    dst = tmp_path / "gen"
    shutil.copytree(trees[request.param], dst)
    return dst


def _broken(tree):
    report = verify(tree)
    assert LAYER in report.layers
    return [b for b in report.broken if b.layer == LAYER]


def _region(tree) -> str:
    return sorted(p.stem for p in (tree / "connections").glob("*.json"))[0]


def _replace(path: Path, old: str, new: str) -> int:
    text = path.read_text()
    assert old in text, (path, old)
    line = text[:text.index(old)].count("\n") + 1
    path.write_text(text.replace(old, new, 1))
    return line


@pytest.mark.parametrize("tree", ["aws", "gcp", "azure", "self-managed"], indirect=True)
def test_generated_trees_are_clean(tree):
    assert _broken(tree) == []


@pytest.mark.parametrize("tree", ["aws"], indirect=True)
def test_aws_user_missing_from_the_cache(tree):
    r = _region(tree)
    main = tree / f"terraform/regions/{r}/main.tf"
    text = main.read_text()
    start = text.index(f"    acme-{r}-orders = {{\n      service")
    end = text.index("    }\n", start) + len("    }\n")
    main.write_text(text[:start] + text[end:])
    broken = _broken(tree)
    assert [(b.file, b.connection) for b in broken] == [(f"terraform/regions/{r}/main.tf", "ConfigMap orders/orders-datastores")]
    assert f"the managed cache has no user acme-{r}-orders" in broken[0].message


@pytest.mark.parametrize("tree", ["aws"], indirect=True)
def test_aws_user_reaching_every_key(tree):
    r = _region(tree)
    main = tree / f"terraform/regions/{r}/main.tf"
    line = _replace(main, 'access_string = "~orders:* &orders:*', 'access_string = "~* &orders:*')
    (b,) = _broken(tree)
    assert (b.file, b.line) == (f"terraform/regions/{r}/main.tf", line - 2)  # the user's entry
    assert "grants ~*" in b.message


@pytest.mark.parametrize("tree", ["aws"], indirect=True)
def test_aws_role_connecting_as_another_user(tree):
    r = _region(tree)
    main = tree / f"terraform/regions/{r}/main.tf"
    _replace(main, f'redis_user      = "acme-{r}-orders"', f'redis_user      = "acme-{r}-other"')
    (b,) = _broken(tree)
    assert f"may not connect as acme-{r}-orders" in b.message


@pytest.mark.parametrize("tree", ["aws"], indirect=True)
def test_aws_library_without_iam_authentication(tree):
    lib = tree / "terraform/modules/aws/managed_redis/main.tf"
    _replace(lib, 'type = "iam"', 'type = "password"')
    broken = _broken(tree)
    assert broken and all(b.file == "terraform/modules/aws/managed_redis/main.tf" for b in broken)


@pytest.mark.parametrize("tree", ["gcp"], indirect=True)
def test_gcp_service_not_allowed_to_connect(tree):
    r = _region(tree)
    main = tree / f"terraform/regions/{r}/main.tf"
    _replace(main, 'connection_users      = ["orders"]', "connection_users      = []")
    (b,) = _broken(tree)
    assert "orders's service account (orders/orders) may not connect" in b.message


@pytest.mark.parametrize("tree", ["gcp"], indirect=True)
def test_gcp_pods_reading_another_ca(tree):
    r = _region(tree)
    chart = tree / f"helm/{r}/charts/secrets-orders/templates/external-secrets.yaml"
    _replace(chart, f"key: acme-{r}-redis-server-ca", "key: some-other-ca")
    broken = _broken(tree)
    assert broken and all(f"is not filled from acme-{r}-redis-server-ca" in b.message for b in broken)


@pytest.mark.parametrize("tree", ["azure"], indirect=True)
def test_azure_policy_assigned_to_another_identity(tree):
    r = _region(tree)
    main = tree / f"terraform/regions/{r}/main.tf"
    _replace(main, 'identity    = "orders"', 'identity    = "recommend"')
    (b,) = _broken(tree)
    assert "is assigned to recommend, not orders" in b.message


@pytest.mark.parametrize("tree", ["self-managed"], indirect=True)
def test_self_managed_acl_without_the_user(tree):
    r = _region(tree)
    topo = tree / f"datastores/{r}/redis-topology.json"
    doc = json.loads(topo.read_text())
    doc["acl_include"]["users"] = [u for u in doc["acl_include"]["users"] if u["name"] != "orders"]
    topo.write_text(json.dumps(doc, indent=2))
    (b,) = _broken(tree)
    assert (b.file, b.connection) == (f"datastores/{r}/redis-topology.json", "ConfigMap orders/orders-datastores")
    assert "has no user orders" in b.message


@pytest.mark.parametrize("tree", ["self-managed"], indirect=True)
def test_self_managed_user_on_other_keys(tree):
    r = _region(tree)
    topo = tree / f"datastores/{r}/redis-topology.json"
    doc = json.loads(topo.read_text())
    for u in doc["acl_include"]["users"]:
        if u["name"] == "orders":
            u["rules"] = u["rules"].replace("~orders:*", "~web:*")
    topo.write_text(json.dumps(doc, indent=2))
    (b,) = _broken(tree)
    assert "key patterns ['~web:*'] are not exactly ~orders:*" in b.message
