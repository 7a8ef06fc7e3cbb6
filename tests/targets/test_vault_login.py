"""The External Secrets Operator's Vault login: the ClusterSecretStore (helm target) and vault/configure.sh (terraform
target) agree on it, for every region of the reference platform and of every case under tests/cases.

ESO logs in with Vault's JWT auth method (compiler/ir/identity.py says why not the Kubernetes one): the store's
jwt path, role and token audience are the mount configure.sh enables with the `jwt` method, the role it writes and
that role's bound_audiences; the role's bound_subject is the store's ServiceAccount, which is the operator's; the
mount trusts the cluster's OIDC issuer, which the region root outputs from the kubernetes module. The store
validates against the operator's CRD, and the script, run against a stand-in `vault`, issues exactly those
commands and is idempotent.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import pytest
import yaml

from compiler.ir.identity import VAULT_AUDIENCE, VAULT_ROLE, vault_auth_mount
from compiler.pipeline import compile_file
from compiler.targets import helm, terraform
from compiler.verify.infra import read_hcl
from tests.conftest import REPO
from tests.targets.test_secrets import crd_errors, crds  # noqa: F401  (crds: the CRD schemas fixture)

SPECS = {"platform.yaml": REPO / "platform.yaml",
         **{p.parent.name: p for p in sorted((REPO / "tests/cases").glob("*/platform.yaml"))}}
ISSUER_VAR = "KUBERNETES_OIDC_ISSUER_URL"
ISSUER_OUTPUT = "kubernetes_oidc_issuer_url"
# What each cloud's kubernetes module outputs as the issuer (its tokens' iss): EKS's and AKS's own attribute; GKE's
# issuer is the cluster's resource name under the container API (project id, location, name).
MODULE_ISSUER = {
    "aws": "aws_eks_cluster.this.identity[0].oidc[0].issuer",
    "azure": "azurerm_kubernetes_cluster.this.oidc_issuer_url",
    "gcp": "https://container.googleapis.com/v1/projects/${google_container_cluster.this.project}/locations/"
           "${google_container_cluster.this.location}/clusters/${google_container_cluster.this.name}",
}


@lru_cache(maxsize=None)
def _plan(case: str):
    return compile_file(str(SPECS[case])).plan


@lru_cache(maxsize=None)
def _files(case: str, region: str) -> dict[str, str]:
    plan = _plan(case)
    r = plan.region(region)
    out = dict(helm.emit_region(plan, r))
    out.update(terraform.emit_region(plan, r))
    out.update(terraform.emit_global(plan))
    return out


def _regions():
    for case in SPECS:
        for r in _plan(case).regions:
            yield case, r


def _vault_stores(files: dict[str, str], region: str) -> list[dict]:
    out = []
    for path, text in files.items():
        if path.startswith(f"helm/{region}/charts/") and "/templates/" in path:
            out += [d for d in yaml.safe_load_all(text)
                    if d and d["kind"] == "ClusterSecretStore" and "vault" in d["spec"]["provider"]]
    return out


def _commands(script: str) -> list[str]:
    """The script's lines, continuations joined, comments dropped."""
    return [line for line in script.replace("\\\n", " ").splitlines() if line and not line.startswith("#")]


def _fields(words: list[str]) -> dict[str, str]:
    return dict(w.split("=", 1) for w in words)


def _operator_service_account(files: dict[str, str], region: str) -> tuple[str, str]:
    """(namespace, name) of the operator's ServiceAccount, from the helmfile's release and its values."""
    hf = yaml.safe_load(files[f"helm/{region}/helmfile.yaml"])
    release = next(e for e in hf["releases"] if e["name"] == "external-secrets")
    values = yaml.safe_load(files[f"helm/{region}/external-secrets.values.yaml"])
    return release["namespace"], values["serviceAccount"]["name"]


def test_the_store_and_configure_sh_agree_in_every_region(crds):
    checked, clouds = 0, set()
    for case, r in _regions():
        files = _files(case, r.name)
        stores = _vault_stores(files, r.name)
        script = files.get(f"terraform/regions/{r.name}/vault/configure.sh")
        where = f"{case}/{r.name}"
        assert bool(stores) == bool(script), f"{where}: a Vault store without its Vault side, or the reverse"
        if not stores:
            continue
        (store,) = stores
        assert crd_errors(store, crds) == [], where
        auth = store["spec"]["provider"]["vault"]["auth"]
        assert set(auth) == {"jwt"}, f"{where}: {sorted(auth)}"
        jwt = auth["jwt"]
        token = jwt["kubernetesServiceAccountToken"]
        sa = token["serviceAccountRef"]
        # ESO 2.9 requests serviceAccountRef.audiences plus kubernetesServiceAccountToken.audiences (default `vault`)
        audiences = set(sa["audiences"]) | set(token.get("audiences", ["vault"]))
        assert audiences == {VAULT_AUDIENCE}, where
        assert (sa["namespace"], sa["name"]) == _operator_service_account(files, r.name), where
        # the IR's facts, which both targets read
        mount = jwt["path"]
        assert mount == vault_auth_mount(r.cluster_name) and jwt["role"] == VAULT_ROLE, where

        lines = _commands(script)
        assert lines[0] == "set -eu", where
        assert f': "${{{ISSUER_VAR}:?' in script and f"output -raw {ISSUER_OUTPUT}`" in script, where
        enable = [line for line in lines if "vault auth enable" in line]
        assert enable == [f"vault auth list -format=json | grep -q '\"{mount}/\"' || "
                          f"vault auth enable -path={mount} jwt"], where
        config = [line.split()[3:] for line in lines if line.startswith(f"vault write auth/{mount}/config ")]
        assert config == [[f'oidc_discovery_url="${ISSUER_VAR}"', f'bound_issuer="${ISSUER_VAR}"']], where
        roles = [line.split()[3:] for line in lines if line.startswith(f"vault write auth/{mount}/role/")]
        assert [line.split()[2] for line in lines if line.startswith("vault write auth/")] == \
            [f"auth/{mount}/config", f"auth/{mount}/role/{jwt['role']}"], where
        policy = next(line.split()[3] for line in lines if line.endswith('"$here/external-secrets.hcl"'))
        assert _fields(roles[0]) == {
            "role_type": "jwt", "bound_audiences": VAULT_AUDIENCE, "user_claim": "sub",
            "bound_subject": f"system:serviceaccount:{sa['namespace']}:{sa['name']}",
            "token_policies": policy, "token_ttl": "1h", "token_max_ttl": "4h"}, where
        # nothing of the Kubernetes auth method is left (it needs Vault to reach the cluster's TokenReview API)
        assert not re.search(r"kubernetes_host|kubernetes_ca_cert|bound_service_account|KUBERNETES_HOST", script)

        # the issuer the script reads is the root's output of the kubernetes module's issuer
        outputs = read_hcl(files[f"terraform/regions/{r.name}/outputs.tf"])
        assert outputs.block("output", ISSUER_OUTPUT).get("value") == "module.kubernetes.oidc_issuer_url", where
        lib = read_hcl(files[f"terraform/modules/{r.cloud}/kubernetes/outputs.tf"])
        assert lib.block("output", "oidc_issuer_url").get("value") == MODULE_ISSUER[r.cloud], where
        # the region's docs page tells the Vault operator to run the script with the issuer
        root = f"generated/terraform/regions/{r.name}"
        assert f"`{mount}`" in terraform.docs_region(_plan(case), r) and \
            f"`{ISSUER_VAR}=$(terraform -chdir={root} output -raw {ISSUER_OUTPUT}) sh {root}/vault/configure.sh`" \
            in terraform.docs_region(_plan(case), r), where
        checked += 1
        clouds.add(r.cloud)
    assert clouds == {"aws", "gcp", "azure"} and checked >= 12


def test_the_stores_crd_check_is_not_vacuous(crds):
    plan = _plan("platform.yaml")
    r = plan.regions[0]
    (store,) = _vault_stores(_files("platform.yaml", r.name), r.name)
    bad = copy.deepcopy(store)
    jwt = bad["spec"]["provider"]["vault"]["auth"]["jwt"]
    jwt["mountPath"] = jwt.pop("path")  # the Kubernetes method's field name
    assert any("mountPath" in e for e in crd_errors(bad, crds))
    assert any("path" in e for e in crd_errors(bad, crds))
    bad = copy.deepcopy(store)
    del bad["spec"]["provider"]["vault"]["auth"]["jwt"]["kubernetesServiceAccountToken"]["serviceAccountRef"]
    assert any("serviceAccountRef" in e for e in crd_errors(bad, crds))


# ---------------------------------------------------------------- configure.sh, run against a stand-in vault

FAKE_VAULT = r"""#!/bin/sh
# records each call (one argument a line, calls separated by ---) and remembers the auth mounts enabled
{ echo ---; printf '%s\n' "$@"; } >> "$VAULT_LOG"
case "$1 $2" in
  "auth list") printf '{'; cat "$VAULT_STATE" 2>/dev/null; printf '}\n' ;;
  "auth enable") for a in "$@"; do case "$a" in -path=*) printf '"%s/": {},' "${a#-path=}" >> "$VAULT_STATE" ;; esac; done ;;
  "policy write") [ "$4" = - ] && cat > /dev/null ;;
esac
exit 0
"""


def _run(tmp_path: Path, script: str, issuer: str | None, shell: str = "sh", args: tuple = ()):
    (tmp_path / "bin").mkdir(exist_ok=True)
    fake = tmp_path / "bin" / "vault"
    fake.write_text(FAKE_VAULT)
    fake.chmod(0o755)
    (tmp_path / "vault").mkdir(exist_ok=True)
    (tmp_path / "vault" / "configure.sh").write_text(script)
    (tmp_path / "vault" / "external-secrets.hcl").write_text("")
    log = tmp_path / "log"
    log.write_text("")
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "VAULT_LOG": str(log),
           "VAULT_STATE": str(tmp_path / "state")}
    if issuer is not None:
        env[ISSUER_VAR] = issuer
    r = subprocess.run([shell, str(tmp_path / "vault" / "configure.sh"), *args], env=env, capture_output=True,
                       text=True, timeout=30)
    calls = [c.strip("\n").split("\n") for c in log.read_text().split("---\n") if c.strip()]
    return r, calls


@pytest.mark.parametrize("shell", ["sh", "bash"])  # the operator's shell: dash and bash read ${VAR:?...} apart
@pytest.mark.parametrize("case", ["aws-only", "gcp-only", "azure-only"])
def test_configure_sh_writes_the_jwt_login_once(case, shell, tmp_path):
    r = _plan(case).regions[0]
    script = _files(case, r.name)[f"terraform/regions/{r.name}/vault/configure.sh"]
    mount = vault_auth_mount(r.cluster_name)
    issuer = "https://issuer.example.test/clusters/x/"  # AKS's keeps its trailing slash: passed on verbatim

    res, calls = _run(tmp_path, script, None, shell)
    assert res.returncode != 0 and ISSUER_OUTPUT in res.stderr and calls == []

    res, first = _run(tmp_path, script, issuer, shell)
    assert res.returncode == 0, res.stderr
    assert ["auth", "enable", f"-path={mount}", "jwt"] in first
    assert ["write", f"auth/{mount}/config", f"oidc_discovery_url={issuer}", f"bound_issuer={issuer}"] in first
    role = next(c for c in first if c[:2] == ["write", f"auth/{mount}/role/{VAULT_ROLE}"])
    assert "bound_audiences=" + VAULT_AUDIENCE in role and "role_type=jwt" in role
    assert "bound_subject=system:serviceaccount:external-secrets:external-secrets" in role

    res, again = _run(tmp_path, script, issuer, shell)  # the mount exists now: the rest is rewritten as it was
    assert res.returncode == 0, res.stderr
    assert not [c for c in again if c[:2] == ["auth", "enable"]]
    setup = [c for c in first if c[:2] not in (["auth", "list"], ["auth", "enable"])]
    assert [c for c in again if c[:2] != ["auth", "list"]] == setup


@pytest.mark.parametrize("shell", ["sh", "bash"])
def test_configure_sh_publisher_only_pass_needs_no_cluster(shell, tmp_path):
    """An Azure region's first Ansible run, before its cluster exists, publishes the internal CA with the publisher's
    policy: `configure.sh --publisher-only` writes that policy alone, with no issuer; without the flag and the
    issuer the script still writes nothing; with the issuer it writes the policy and the JWT login."""
    plan = _plan("platform.yaml")
    r = next(x for x in plan.regions if x.name == "eu-west-2")
    script = _files("platform.yaml", r.name)[f"terraform/regions/{r.name}/vault/configure.sh"]
    publisher = f"{r.cluster_name}-internal-ca-publisher"

    res, calls = _run(tmp_path, script, None, shell, ("--publisher-only",))
    assert res.returncode == 0, res.stderr
    assert calls == [["policy", "write", publisher, "-"]]

    res, calls = _run(tmp_path, script, None, shell)
    assert res.returncode != 0 and ISSUER_OUTPUT in res.stderr and calls == []

    res, calls = _run(tmp_path, script, "https://issuer.example.test/", shell)
    assert res.returncode == 0, res.stderr
    assert ["policy", "write", publisher, "-"] in calls
    assert any(c[:2] == ["write", f"auth/{vault_auth_mount(r.cluster_name)}/config"] for c in calls)
