"""Each region page's First bring-up section: one order per cloud in which every step uses only what the steps
before it made, with the commands that do it, and the README and getting-started guide pointing at it (the review
of a new region's bring-up: GCP's LB names Kong's NEGs, the helmfile waits for the internal CA Ansible publishes,
Ansible needs the data hosts and bastion, and the cluster API is private)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, require_tool

GOLDEN = REPO / "tests/golden"
CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "docs/regions").is_dir())


def steps(page: str) -> list[str]:
    section = page.split("## First bring-up\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\d+\. (.*)$", section, re.M)


def index(steps_: list[str], pattern: str) -> int:
    return next(i for i, s in enumerate(steps_) if re.search(pattern, s))


def regions(case: str):
    for page in sorted((GOLDEN / case / "docs/regions").glob("*.md")):
        yield page.stem, page.read_text(), GOLDEN / case / "generated"


def _module_blocks(main_tf: str) -> dict[str, str]:
    """module name -> its block's text (blocks end at a line holding only `}`)."""
    return {m[1]: m[2] for m in re.finditer(r'^module "([a-z0-9_]+)" \{\n(.*?)^\}\n', main_tf, re.M | re.S)}


@pytest.mark.parametrize("case", CASES)
def test_the_steps_come_in_an_order_that_works(case):
    for name, page, tree in regions(case):
        s = steps(page)
        assert s, (case, name)
        helmfile = index(s, rf"`helmfile -f generated/helm/{name}/helmfile\.yaml apply`")
        manifests = index(s, re.escape(f"apply -f generated/kubernetes/{name}/`"))
        access = index(s, r"^Cluster access: ")
        assert index(s, r"^Terraform") == 0 and access < helmfile < manifests, (case, name)
        kube_context = yaml.safe_load((tree / f"helm/{name}/helmfile.yaml").read_text())["helmDefaults"]["kubeContext"]
        assert f"the context `{kube_context}` that the helmfile" in s[access]
        if (tree / f"ansible/inventories/{name}/hosts.yml").is_file():
            ansible = index(s, rf"`ansible-playbook -i inventories/{name} site\.yml`")
            assert 0 < ansible < helmfile, (case, name)
            assert not s[ansible].startswith("Ansible, in `generated/ansible/`: then"), (case, name)
            # the region's first Ansible run (Azure: its CA step, before the full apply) says what waits for it
            first = index(s, rf"`ansible-playbook -i inventories/{name} (site|pgbouncer)\.yml`")
            es = yaml.safe_load((tree / f"ansible/inventories/{name}/hosts.yml").read_text())
            assert ("Jaeger and Fluent Bit wait" in s[first]) == ("elasticsearch:" in yaml.safe_dump(es)), name
        configure = tree / f"terraform/regions/{name}/vault/configure.sh"
        if configure.is_file():
            vault = index(s, r"vault/configure\.sh")
            assert 0 < vault < helmfile
            policy = re.search(r"the `(\S+-internal-ca-publisher)` policy it writes", s[vault])
            if policy:
                assert f"vault policy write {policy[1]} " in configure.read_text(), (case, name)
        if (tree / f"kong/{name}/kong.yaml").read_text().count("${{"):
            assert index(s, r"deck file render --populate-env-vars") < helmfile


@pytest.mark.parametrize("case", CASES)
def test_gcp_applies_all_but_the_load_balancer_until_kong_has_its_negs(case):
    """The targeted first apply names only modules the root has, holds the bastion (Ansible's ProxyJump) and the
    cluster, and none of them reads the load balancer, whose backend names Kong's NEGs; the full apply comes after
    the helmfile that installs Kong."""
    lb = (GOLDEN / case / "generated/terraform/modules/gcp/load_balancer/main.tf")
    for name, page, tree in regions(case):
        main = tree / f"terraform/regions/{name}/main.tf"
        if 'source = "../../modules/gcp/kubernetes"' not in main.read_text():
            continue
        assert "networkEndpointGroups/${var.neg_name}" in lb.read_text()
        s = steps(page)
        targeted = re.search(r"`terraform -chdir=\S+ apply ((?:-target=module\.\w+ ?)+)`", s[0])
        assert targeted, (case, name, s[0])
        modules = _module_blocks(main.read_text())
        names = re.findall(r"-target=module\.(\w+)", targeted[1])
        assert {"kubernetes", "data_hosts"} <= set(names) and "load_balancer" not in names
        for m in names:
            assert m in modules, (case, name, m)
            assert "module.load_balancer" not in modules[m], (case, name, m)
        assert "bastion" in modules["data_hosts"]
        assert [p for p in modules if p.startswith("peering_")] == [n for n in names if n.startswith("peering_")]
        full = index(s, rf"^Terraform, the rest: `terraform -chdir=generated/terraform/regions/{name} apply`")
        assert full > index(s, r"`helmfile -f ") and full == len(s) - 1


def _run_page_commands(step: str, kubeconfig: Path, kubectl: str) -> None:
    for cmd in re.findall(r"`(kubectl config [^`]+)`", step):
        args = shlex.split(cmd)
        subprocess.run([kubectl, *args[1:]], check=True, capture_output=True,
                       env={**os.environ, "KUBECONFIG": str(kubeconfig)})


def test_the_cluster_access_commands_leave_the_helmfiles_context_behind_the_bastion(reference, tmp_path):
    """The page's kubectl commands, run by kubectl itself on the kubeconfig each cloud's CLI writes (GKE: entries
    named gke_<project>_<location>_<cluster>, googlecloudsdk's KUBECONTEXT_FORMAT; EKS with --alias: the context
    renamed, the cluster entry the ARN; AKS with --context: the cluster entry named after the cluster), leave the
    helmfile's kube context pointing at a cluster entry that goes through the bastion's SOCKS proxy."""
    kubectl = require_tool("kubectl")
    seen = set()
    for r in reference.regions:
        if r.cloud in seen:
            continue
        seen.add(r.cloud)
        page = (REPO / f"docs/regions/{r.name}.md").read_text()
        step = next(s for s in steps(page) if s.startswith("Cluster access: "))
        account = reference.spec.clouds[r.cloud].account
        entry, context = {"gcp": (f"gke_{account}_{r.cloud_region}_{r.cluster_name}",) * 2,
                          "aws": (f"arn:aws:eks:{r.cloud_region}:{account}:cluster/{r.cluster_name}", r.cluster_name),
                          "azure": (r.cluster_name, r.cluster_name)}[r.cloud]
        kc = tmp_path / f"{r.cloud}.yaml"
        kc.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": entry, "cluster": {"server": "https://10.0.0.2"}}],
            "users": [{"name": entry, "user": {"token": "x"}}],
            "contexts": [{"name": context, "context": {"cluster": entry, "user": entry}}]}))
        _run_page_commands(step, kc, kubectl)
        view = yaml.safe_load(kc.read_text())
        wanted = yaml.safe_load((REPO / f"generated/helm/{r.name}/helmfile.yaml").read_text())["helmDefaults"]["kubeContext"]
        (ctx,) = [c for c in view["contexts"] if c["name"] == wanted]
        (cluster,) = [c for c in view["clusters"] if c["name"] == ctx["context"]["cluster"]]
        assert cluster["cluster"].get("proxy-url") == "socks5://localhost:1080", r.cloud
        assert f"ssh -D 1080 -N " in step and r.hosts_in("bastion")[0].fqdn in step
    assert seen == {"aws", "gcp", "azure"}
    gcp = next(r for r in reference.regions if r.cloud == "gcp")
    page = (REPO / f"docs/regions/{gcp.name}.md").read_text()
    assert (f"`gcloud container clusters get-credentials {gcp.cluster_name} --location {gcp.cloud_region} --project "
            f"{reference.spec.clouds['gcp'].account} --internal-ip`") in page


def test_the_internal_ca_chain_that_puts_ansible_before_the_helmfile(reference):
    """Why the helmfile waits for Ansible: Jaeger mounts a Secret whose ExternalSecret reads the region's internal
    CA entry (published by its pgbouncer play), and the helmfile waits for each release."""
    for r in (x for x in reference.regions if x.hosts_in("elasticsearch")):
        helm = REPO / f"generated/helm/{r.name}"
        values = (helm / "jaeger.values.yaml").read_text()
        assert "secretName: elasticsearch-jaeger" in values
        docs = [d for d in yaml.safe_load_all((helm / "charts/platform-secrets/templates/external-secrets.yaml")
                                              .read_text()) if d and d["metadata"]["name"] == "elasticsearch-jaeger"]
        (es,) = [d for d in docs if d["kind"] == "ExternalSecret"]
        assert any(i["remoteRef"]["key"].endswith(f"internal-ca/{r.name}") for i in es["spec"]["data"])
        defaults = yaml.safe_load((helm / "helmfile.yaml").read_text())["helmDefaults"]
        assert defaults["wait"] is True and defaults["timeout"] >= 600


def test_the_readme_and_the_guide_point_at_the_section_and_no_longer_say_a_single_apply(reference):
    guide = (REPO / "docs/getting-started.md").read_text()
    first = reference.regions[0].name
    assert f"(regions/{first}.md#first-bring-up)" in guide
    assert f"terraform -chdir=generated/terraform/regions/{first} init && terraform" not in guide
    readme = (REPO / "README.md").read_text()
    deploying = readme.split("## Deploying a region\n", 1)[1].split("\n## ", 1)[0]
    assert "**First bring-up**" in deploying
    assert "-target=module.kubernetes -target=module.workload_identity -target=module.data_hosts" in deploying
    assert "-target=module.kms" in deploying and "--internal-ip" in deploying
    # Azure: the CA its gateway trusts before the full apply, in both (7fc047f7)
    assert "--publisher-only" in deploying and "--publisher-only" in guide
    for r in reference.regions:
        page = (REPO / f"docs/regions/{r.name}.md").read_text()
        assert "first apply goes in the steps of the First bring-up section" in page
        assert "then the Kubernetes target) before the full apply" not in page  # Kong is the helm target's


def test_azure_makes_the_gateways_trusted_root_before_the_gateway():
    """An Azure region's Application Gateway trusts the internal CA its first Ansible run makes (`kong-proxy-ca`),
    and the cluster's ingress add-on names the gateway, while that run publishes the CA with the Vault policy
    configure.sh writes: so the data hosts are applied first, then configure.sh's publisher-only pass, the region's
    pgbouncer.yml, the full apply, and only then configure.sh with the cluster's issuer."""
    name, page = "eu-west-2", (REPO / "docs/regions/eu-west-2.md").read_text()
    s = steps(page)
    targeted = index(s, r"^Terraform, the data hosts first: ")
    assert "-target=module.data_hosts" in s[targeted] and "-target=module.kubernetes" not in s[targeted]
    publisher = index(s, r"configure\.sh --publisher-only")
    ca = index(s, rf"`ansible-playbook -i inventories/{name} pgbouncer\.yml`")
    full = index(s, r"^Terraform, the rest: ")
    vault = index(s, r"KUBERNETES_OIDC_ISSUER_URL=\$\(")
    site = index(s, rf"`ansible-playbook -i inventories/{name} site\.yml`")
    assert targeted < publisher < ca < full < vault < site, s
    main_tf = (REPO / f"generated/terraform/regions/{name}/main.tf").read_text()
    assert "module.load_balancer.application_gateway_id" in _module_blocks(main_tf)["kubernetes"]
