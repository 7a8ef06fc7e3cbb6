"""The postgresql role adds the PostgreSQL project's APT repository, which follows Debian unstable and so carries
Patroni's newest major too; apt installs the highest version it sees. The role's pin must make the real apt pick
the distribution's Patroni while PostgreSQL itself still comes from that repository.

Two local repositories stand in for Debian and apt.postgresql.org (their Release files carry the origins the real
ones do); apt runs with a private configuration, state and cache (file: URIs only, nothing leaves the machine).
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import yaml

from compiler.emit import emit
from compiler.pipeline import compile_file
from tests.conftest import REPO, require_tool

# package -> (version in Debian bookworm, version in bookworm-pgdg)
PACKAGES = {"patroni": ("3.0.2-1", "4.0.4-1.pgdg120+1"),
            "postgresql-15": ("15.10-0+deb12u1", "15.12-1.pgdg120+1")}
ORIGINS = {"debian": ("Debian", "bookworm"), "pgdg": ("apt.postgresql.org", "bookworm-pgdg")}


def _repository(root: Path, name: str) -> Path:
    origin, codename = ORIGINS[name]
    repo = root / name
    repo.mkdir()
    column = 0 if name == "debian" else 1
    stanzas = [f"Package: {package}\nVersion: {versions[column]}\nArchitecture: all\nMaintainer: test <t@example.org>\n"
               f"Filename: ./{package}.deb\nSize: 1\nDescription: {package}\n"
               for package, versions in PACKAGES.items()]
    packages = "\n".join(stanzas).encode()
    (repo / "Packages").write_bytes(packages)
    (repo / "Release").write_text(
        f"Origin: {origin}\nLabel: {origin}\nSuite: {codename}\nCodename: {codename}\nArchitectures: amd64 all\n"
        "Date: Sat, 05 Dec 2026 00:00:00 UTC\n"
        f"SHA256:\n {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")
    return repo


def _candidates(work: Path, pin: str | None) -> dict:
    """apt-cache policy's candidate of each package, with `pin` as the only file of preferences.d."""
    for d in ("parts", "prefs.d", "lists/partial", "cache/archives/partial"):
        (work / d).mkdir(parents=True, exist_ok=True)
    for f in (work / "prefs.d").iterdir():
        f.unlink()
    if pin is not None:
        (work / "prefs.d" / "platformc-patroni").write_text(pin)
    (work / "status").touch()
    (work / "sources.list").write_text("".join(f"deb [trusted=yes] file:{work / name} ./\n" for name in ORIGINS))
    (work / "apt.conf").write_text("\n".join([
        f'Dir::Etc::SourceList "{work}/sources.list";', f'Dir::Etc::SourceParts "{work}/parts";',
        f'Dir::Etc::Parts "{work}/parts";', f'Dir::Etc::Preferences "{work}/none";',
        f'Dir::Etc::PreferencesParts "{work}/prefs.d";', f'Dir::State "{work}";', f'Dir::State::Lists "{work}/lists";',
        f'Dir::State::status "{work}/status";', f'Dir::Cache "{work}/cache";', 'APT::Architecture "amd64";',
        'APT::Sandbox::User "root";', 'Debug::NoLocking "true";', ""]))
    env = dict(os.environ, APT_CONFIG=str(work / "apt.conf"), LC_ALL="C")
    update = subprocess.run([require_tool("apt-get"), "update", "-q"], env=env, capture_output=True, text=True)
    assert update.returncode == 0 and "W:" not in update.stdout + update.stderr, update.stdout + update.stderr
    policy = subprocess.run([require_tool("apt-cache"), "policy", *PACKAGES], env=env, capture_output=True, text=True)
    assert policy.returncode == 0, policy.stderr
    return dict(re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)", policy.stdout, re.M))


def test_apt_takes_patroni_from_the_distribution_and_postgresql_from_pgdg(tmp_path):
    plan = compile_file(str(REPO / "platform.yaml")).plan
    outputs, _ = emit(plan, ["ansible"], with_docs=False)
    tasks = yaml.safe_load(outputs["generated"]["ansible/roles/postgresql/tasks/main.yml"][1])
    pins = [t["ansible.builtin.copy"] for t in tasks
            if t.get("ansible.builtin.copy", {}).get("dest", "").startswith("/etc/apt/preferences.d/")]
    assert len(pins) == 1, "the postgresql role writes one APT pin"
    names = [t["name"] for t in tasks]
    pin_task = next(t["name"] for t in tasks if t.get("ansible.builtin.copy") is pins[0])
    assert names.index(pin_task) < next(i for i, t in enumerate(tasks) if "postgresql_packages" in str(t.get("ansible.builtin.apt")))
    for name in ORIGINS:
        _repository(tmp_path, name)

    # Without the pin, apt would take the repository's newer Patroni: the case the pin exists for.
    assert _candidates(tmp_path, None) == {"patroni": PACKAGES["patroni"][1], "postgresql-15": PACKAGES["postgresql-15"][1]}
    assert _candidates(tmp_path, pins[0]["content"]) == {"patroni": PACKAGES["patroni"][0],
                                                         "postgresql-15": PACKAGES["postgresql-15"][1]}


def test_the_patroni_role_stops_on_a_host_with_another_patroni_major():
    """A host that got another major before the pin existed keeps it (the pin only chooses what apt installs): the
    role's check, evaluated by Ansible's templar as its assert does, accepts the distribution's Patroni only."""
    from tests.targets.test_ansible_units import ansible_template
    plan = compile_file(str(REPO / "platform.yaml")).plan
    outputs, _ = emit(plan, ["ansible"], with_docs=False)
    files = outputs["generated"]
    tasks = yaml.safe_load(files["ansible/roles/patroni/tasks/main.yml"][1])
    defaults = yaml.safe_load(files["ansible/roles/patroni/defaults/main.yml"][1])
    check = next(t["ansible.builtin.assert"] for t in tasks if "patroni" in str(t.get("ansible.builtin.assert", {}).get("that")))
    installed = [i for i, t in enumerate(tasks) if "patroni" in str(t.get("ansible.builtin.apt", {}).get("name"))]
    assert installed and installed[0] < tasks.index(next(t for t in tasks if t.get("ansible.builtin.assert") is check))

    def passes(version: str) -> bool:
        variables = {**defaults, "ansible_facts": {"packages": {"patroni": [{"version": version}]}}}
        return all(ansible_template("{{ " + cond + " }}", variables) in (True, "True") for cond in check["that"])

    assert passes(PACKAGES["patroni"][0])
    assert not passes(PACKAGES["patroni"][1])
    assert not passes("2.1.6-2")
