"""Ansible can log in to every data host it lists (issue 11): the connection the inventory names exists in Terraform.

The inventory connects over SSH (no other ansible_connection), as ansible_user, to every host directly or through
the bastion (ProxyJump). So, per region: every host it lists is an instance Terraform creates from the same host
map, and that instance carries the key of that user: on AWS the region's EC2 key pair (aws_key_pair from the
root's admin_ssh_public_key, key_name on aws_instance.host; Debian's image gives it to `admin`), on Azure the VM's
admin_ssh_key for admin_username; the ProxyJump host is one of those instances too (the bastion). GCP hosts use
OS Login (enable-oslogin on the instance), where the operator's own account logs in.
"""

from __future__ import annotations

import re

import pytest
import yaml

from compiler.emit import emit
from compiler.ir.names import DATA_HOST_LOGIN_USER
from compiler.pipeline import compile_file
from tests.conftest import REPO, require_module
from tests.targets.hcl_support import resources as _resources, unquote as _unquote

CASES = ["reference", "two-region", "aws-only", "azure-only", "gcp-only"]


@pytest.fixture(scope="module", params=CASES)
def case(request):
    plan = compile_file(str(REPO / "tests/cases" / request.param / "platform.yaml")).plan
    outputs, _ = emit(plan, ["terraform", "ansible"], with_docs=False)
    return plan, {path: text for path, (_, text) in outputs["generated"].items()}


def _hcl(text: str) -> dict:
    hcl2 = require_module("hcl2")
    return hcl2.loads(text)


def _module(doc: dict, name: str) -> dict:
    for entry in doc.get("module", []):
        for label, body in entry.items():
            if _unquote(label) == name:
                return body
    raise AssertionError(f"no module {name}")


def _variables(doc: dict) -> set[str]:
    return {_unquote(k) for entry in doc.get("variable", []) for k in entry}


def _inventory_hosts(hosts_yml: dict) -> dict:
    out = {}

    def walk(node):
        for name, vars_ in (node.get("hosts") or {}).items():
            out.setdefault(name, {}).update(vars_ or {})
        for child in (node.get("children") or {}).values():
            walk(child or {})
    walk(hosts_yml["all"])
    return out


def test_every_inventory_host_is_an_instance_with_the_login_users_key(case):
    plan, files = case
    checked = 0
    for region in plan.regions:
        if not region.hosts:
            continue
        inv = f"ansible/inventories/{region.name}"
        hosts = _inventory_hosts(yaml.safe_load(files[f"{inv}/hosts.yml"]))
        group_vars = {p.rsplit("/", 1)[1][:-4]: yaml.safe_load(t) or {} for p, t in files.items()
                      if p.startswith(f"{inv}/group_vars/")}
        all_vars = group_vars["all"]
        assert not any("ansible_connection" in v for v in group_vars.values())  # SSH, Ansible's default
        assert all_vars.get("ansible_user") == DATA_HOST_LOGIN_USER.get(region.cloud)
        # ProxyJump: through a host Terraform creates (the bastion), as the same user with the same key
        jumps = {m.group(2) for v in group_vars.values()
                 for m in [re.search(r"ProxyJump=(?:(\S+)@)?(\S+)", v.get("ansible_ssh_common_args", ""))] if m}
        jump_users = {m.group(1) for v in group_vars.values()
                      for m in [re.search(r"ProxyJump=(?:(\S+)@)?(\S+)", v.get("ansible_ssh_common_args", ""))] if m}
        # ssh's jump hop does not take ansible_user (-l applies to the last hop only): it must name the user itself
        assert jump_users == {DATA_HOST_LOGIN_USER.get(region.cloud)}, jump_users
        fqdns = {v["ansible_host"]: n for n, v in hosts.items()}
        assert jumps <= set(fqdns), jumps
        assert jumps and {fqdns[j] for j in jumps} <= {h.name for h in region.hosts_in("bastion")}

        root = _hcl(files[f"terraform/regions/{region.name}/main.tf"])
        call = _module(root, "data_hosts")
        created = set(call["hosts"])
        assert set(hosts) <= created, sorted(set(hosts) - created)
        module = _hcl(files[f"terraform/modules/{region.cloud}/data_hosts/main.tf"])
        if region.cloud == "aws":
            assert call["admin_ssh_public_key"] == "${var.admin_ssh_public_key}"
            assert "admin_ssh_public_key" in _variables(_hcl(files[f"terraform/regions/{region.name}/variables.tf"]))
            assert "admin_ssh_public_key" in _variables(
                _hcl(files["terraform/modules/aws/data_hosts/variables.tf"]))
            (pair,) = _resources(module, "aws_key_pair").items()
            assert pair[1]["public_key"] == "${var.admin_ssh_public_key}"
            instance = _resources(module, "aws_instance")["host"]
            assert instance["for_each"] == "${var.hosts}"
            assert instance["key_name"] == f"${{aws_key_pair.{pair[0]}.key_name}}"
        elif region.cloud == "azure":
            (vm,) = _resources(module, "azurerm_linux_virtual_machine").values()
            assert _unquote(vm["admin_username"]) == DATA_HOST_LOGIN_USER["azure"]
            (key,) = vm["admin_ssh_key"]
            assert _unquote(key["username"]) == DATA_HOST_LOGIN_USER["azure"]
            assert key["public_key"] == "${var.admin_ssh_public_key}"
            assert vm["for_each"] == "${var.hosts}"
        else:
            (vm,) = _resources(module, "google_compute_instance").values()
            assert _unquote(vm["metadata"].get("enable-oslogin", vm["metadata"].get('"enable-oslogin"'))) == "TRUE"
        checked += 1
    assert checked
