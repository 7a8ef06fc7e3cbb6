"""Rotating the data hosts' admin SSH key (review r2-day2, finding 11): Azure takes a VM's key at creation only
(azurerm's admin_ssh_key is ForceNew), so a changed key replaced every Azure data VM at once, and AWS installs the key
pair at launch only, so a changed key never reached a running host. The Azure VMs now ignore the key, and the common
role makes the operators' current key (TF_VAR_admin_ssh_public_key, the variable Terraform reads) the login user's only
one: its generated tasks run here by ansible-playbook, against a scratch home directory."""

from __future__ import annotations

import getpass
import os
import pwd

import hcl2
import yaml

from compiler.pipeline import compile_file
from compiler.targets import terraform
from tests.conftest import REPO, VENV_BIN
from tests.targets.hcl_support import resources
from tests.targets.test_ansible import _run, reference_tree  # noqa: F401 (the fixture)

OLD = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldOldOldOldOldOldOldOldOldOldOldOldOldOld old@operator"
NEW = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINewNewNewNewNewNewNewNewNewNewNewNewNewNew new@operator"


def test_azure_vms_ignore_a_rotated_key():
    for case in ("reference", "azure-only"):
        plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
        module = dict(terraform.emit_global(plan))["terraform/modules/azure/data_hosts/main.tf"]
        vm = resources(hcl2.loads(module), "azurerm_linux_virtual_machine")["host"]
        ignored = [x for lc in vm["lifecycle"] for x in lc.get("ignore_changes", [])]
        assert "admin_ssh_key" in " ".join(map(str, ignored)), (case, ignored)


def test_every_aws_and_azure_inventory_names_the_login_user(reference_tree):  # noqa: F811
    plan, root, _env = reference_tree
    for region in plan.regions:
        all_vars = yaml.safe_load((root / "inventories" / region.name / "group_vars/all.yml").read_text())
        assert all_vars["common_admin_user"] == {"aws": "admin", "azure": "platform", "gcp": ""}[region.cloud]
        assert all_vars.get("ansible_user", "") == all_vars["common_admin_user"]


def test_the_common_role_makes_the_current_key_the_only_one(reference_tree, tmp_path):  # noqa: F811
    _plan, root, env = reference_tree
    role = root / "roles/common"
    tasks = yaml.safe_load((role / "tasks/main.yml").read_text())
    names = [t["name"] for t in tasks]
    first = names.index("Look up the login user")
    keys = tasks[first + 1:names.index("Authorize the operators' current key, and only it, for the login user") + 1]
    user = getpass.getuser()
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh").chmod(0o700)  # as the image makes it: only the key itself changes
    (home / ".ssh/authorized_keys").write_text(OLD + "\n")
    entry = list(pwd.getpwnam(user))
    entry[5] = str(home)  # the scratch home instead of the user's own (getent's fields, the name dropped)
    lookup = {"name": "The login user, as getent gives it", "ansible.builtin.set_fact": {
        "ansible_facts": {"getent_passwd": {user: [str(x) for x in entry[1:]]}}}, "when": tasks[first]["when"]}
    playbook = tmp_path / "keys.yml"
    playbook.write_text(yaml.safe_dump([{
        "hosts": "localhost", "gather_facts": False, "connection": "local",
        "vars_files": [str(role / "defaults/main.yml")], "tasks": [lookup, *keys]}]))

    def play(key: str | None):
        run_env = {k: v for k, v in env.items() if k != "TF_VAR_admin_ssh_public_key"}
        if key is not None:
            run_env["TF_VAR_admin_ssh_public_key"] = key
        res = _run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e",
                    f"ansible_python_interpreter={VENV_BIN / 'python'}", "-e", f"common_admin_user={user}"],
                   root, run_env)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        return res.stdout

    assert "changed=0" in play(None)  # no key given: authorized_keys left as it is
    assert (home / ".ssh/authorized_keys").read_text() == OLD + "\n"
    assert "changed=1" in play(NEW + "\n")
    assert (home / ".ssh/authorized_keys").read_text() == NEW + "\n"  # the old key is gone
    assert oct(os.stat(home / ".ssh/authorized_keys").st_mode & 0o777) == "0o600"
    assert "changed=0" in play(NEW)  # and again: nothing to do
