"""A grown data disk grows its filesystem (review r2-day2, finding 6): Terraform grows the EBS volume, the GCP disk or
the Azure managed disk in place, and the data_disk role then grows the xfs filesystem on it, online, once.

Run for real: a scratch file made an xfs filesystem (mkfs.xfs, as the role does), attached to a loop device and
mounted inside `unshare -m -n` (a private mount namespace, no network), the role's own generated tasks from reading
the volume's size to the growth run on it by ansible-playbook: nothing to do at first, the file grown (the disk
resized), then the filesystem grown to it and, run again, nothing more to do."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import IN_CI, VENV_BIN
from tests.targets.test_ansible import reference_tree  # noqa: F401 (the fixture)

FIRST, LAST = "Read the data volume's size", "Grow the filesystem to the data volume's size"
MiB = 1 << 20


def _need(tool: str) -> str:
    found = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
    if not found:
        (pytest.fail if IN_CI else pytest.skip)(f"{tool} is not installed")
    return found


def _growth_tasks(root) -> list[dict]:
    tasks = yaml.safe_load((root / "roles/data_disk/tasks/main.yml").read_text())
    names = [t["name"] for t in tasks]
    assert FIRST in names and LAST in names, names
    return tasks[names.index(FIRST):names.index(LAST) + 1]


def test_the_role_grows_a_grown_volume_once_and_only_then(reference_tree, tmp_path):  # noqa: F811
    if os.geteuid() != 0:
        (pytest.fail if IN_CI else pytest.skip)("loop devices and mounts need root")
    tools = {t: _need(t) for t in ("mkfs.xfs", "xfs_growfs", "xfs_info", "losetup", "unshare", "blockdev")}
    _plan, root, env = reference_tree
    image, mount = tmp_path / "data.img", tmp_path / "data"
    mount.mkdir()
    with open(image, "wb") as f:
        f.truncate(512 * MiB)
    subprocess.run([tools["mkfs.xfs"], "-q", "-L", "data", str(image)], check=True)
    playbook = tmp_path / "grow.yml"
    results = tmp_path / "results"
    results.mkdir()
    tasks = _growth_tasks(root)
    record = {"ansible.builtin.copy": {"dest": str(results / "{{ run }}.json"), "content": "{{ {'grow': grown, "
              "'bytes': data_disk_bytes.stdout} | to_json }}"}}
    grow = dict(tasks[-1], register="grown")
    playbook.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "connection": "local",
                                         "tasks": [*tasks[:-1], grow, record]}]))
    ansible = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", str(playbook), "-e",
               f"ansible_python_interpreter={VENV_BIN / 'python'}"]

    def play(run: str, *extra: str) -> str:
        facts = {"data_disk_found": {"stdout": "$DEV"}, "data_disk_mount": str(mount), "data_disk_cloud": "aws",
                 "data_disk_mounted": {"rc": 0}, "run": run}
        return " ".join([*ansible, *extra, "-e", f"'{json.dumps(facts)}'"]).replace("$DEV", "'\"$dev\"'")

    script = "\n".join([
        "set -eu",
        f'dev=$({tools["losetup"]} -f --show {image})',
        f'trap "umount {mount} 2>/dev/null; {tools["losetup"]} -d $dev" EXIT',
        f"mount $dev {mount}",
        play("before"),                                    # the volume as made: nothing to grow
        f"truncate -s {2048 * MiB} {image}", f'{tools["losetup"]} -c "$dev"',   # the disk grown (Terraform)
        play("check", "--check"),                          # check mode reads, changes nothing
        play("grown"),                                     # grows it
        play("again"),                                     # and nothing more
        f'{tools["xfs_info"]} {mount} > {results / "xfs_info.txt"}',
    ])
    done = subprocess.run([tools["unshare"], "-m", "-n", "sh", "-c", script], cwd=root, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    runs = {r: json.loads((results / f"{r}.json").read_text()) for r in ("before", "grown", "again")}
    assert runs["before"]["grow"].get("skipped") and runs["before"]["bytes"] == str(512 * MiB)
    assert runs["grown"]["grow"]["changed"] and runs["grown"]["bytes"] == str(2048 * MiB)
    assert runs["again"]["grow"].get("skipped")
    assert "check" not in {p.stem for p in results.glob("*.json")}  # check mode writes nothing, the copy included
    info = (results / "xfs_info.txt").read_text()
    bsize, blocks = map(int, re.search(r"^data\s+=\s+bsize=(\d+)\s+blocks=(\d+)", info, re.M).groups())
    assert bsize * blocks == 2048 * MiB, info
