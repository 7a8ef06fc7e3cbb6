"""Ansible target: every file a role writes lands in a directory that exists by then.

`ansible.builtin.copy` and `ansible.builtin.template` do not create a missing parent directory: the task fails
("Destination directory ... does not exist") and the host's run stops there. Check mode does not show it, and
neither syntax-check nor ansible-lint can, so the roles once wrote systemd drop-ins (patroni@.service.d,
pgbouncer.service.d) and the data_disk script into directories no task and no package creates, stopping
postgresql.yml, pgbouncer.yml, redis.yml and elasticsearch.yml on every fresh host.

This walks every play of the generated playbooks in order, through each role's tasks (imported task files and
included roles with their vars), resolving the paths with the role's defaults and vars and the play's role vars,
and requires each written file's directory to be made by an earlier `file: state=directory` task on the same hosts
(this play's, or an earlier play's in site.yml's order) or to be one the base system or an installed package
provides (PROVIDED, each with where it comes from).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from compiler.pipeline import compile_file
from tests.conftest import REPO

CASES = ["reference", "two-region", "azure-only", "gcp-only"]

# Directories present before the play writes into them: Debian 12's base system, or a package a role of the same
# play installs before writing there.
PROVIDED = {
    "/etc": "base-files",
    "/etc/default": "base-files",
    "/etc/apt/apt.conf.d": "apt",
    "/etc/apt/preferences.d": "apt",
    "/etc/sysctl.d": "procps",
    "/etc/systemd/system": "systemd",
    "/etc/tmpfiles.d": "systemd",
    "/usr/local/sbin": "base-files (the FHS /usr/local hierarchy)",
    "/usr/local/bin": "base-files (the FHS /usr/local hierarchy)",
    "/etc/ssh/sshd_config.d": "openssh-server (Debian 12 ships it, sshd_config includes it)",
    "/etc/chrony": "chrony (the common role installs it first)",
    "/etc/pgbouncer": "pgbouncer (the pgbouncer role installs it first)",
    "/etc/elasticsearch": "elasticsearch (the elasticsearch role installs it first)",
    "/etc/elasticsearch/jvm.options.d": "elasticsearch (the elasticsearch role installs it first)",
    "/etc/redis": "redis-server (the redis role installs it first)",
}
WRITERS = ("ansible.builtin.copy", "ansible.builtin.template")


class _Unresolved(Exception):
    pass


def _env() -> jinja2.Environment:
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters["regex_replace"] = lambda s, pattern, repl="": re.sub(pattern, repl, str(s))
    env.filters["basename"] = os.path.basename
    env.filters["dirname"] = os.path.dirname
    env.filters["from_json"] = json.loads
    env.globals["lookup"] = _lookup
    return env


def _lookup(plugin: str, path: str, **kw) -> str:
    if plugin not in ("ansible.builtin.file", "file"):
        raise _Unresolved(f"lookup {plugin}")
    return Path(path).read_text()


ENV = _env()


def _load(path: Path):
    return yaml.safe_load(path.read_text()) if path.is_file() else None


_WHOLE = re.compile(r"^\{\{(.*)\}\}$", re.S)


class _Names(dict):
    """Variables as Ansible reads them: a value that is itself a template is evaluated when used (a list stays a
    list: `{{ expr }}` alone gives the expression's value, as Ansible's native types do)."""


def _value(value, names: dict, depth: int = 0):
    if not (isinstance(value, str) and "{{" in value):
        return value
    if depth > 10:
        raise _Unresolved(value)
    # the variables the template reads, each evaluated first (Jinja copies the mapping it is handed)
    used = jinja2.meta.find_undeclared_variables(ENV.parse(value))
    scope = {k: _value(names[k], names, depth + 1) for k in used if k in names}
    whole = _WHOLE.match(value.strip())
    if whole and "{{" not in whole.group(1):
        return ENV.compile_expression(whole.group(1))(**scope)
    return ENV.from_string(value).render(**scope)


def _render(value, names: dict) -> str:
    try:
        text = str(_value(value, names if isinstance(names, _Names) else _Names(names)))
    except Exception as exc:  # noqa: BLE001 - host facts, registered results: not a path this test can know
        raise _Unresolved(f"{value}: {exc}") from exc
    if "{{" in text:
        raise _Unresolved(str(value))
    return text


class _Walk:
    def __init__(self, root: Path):
        self.roles = root / "ansible" / "roles"
        self.made: set[str] = set()
        self.made_on: dict[str, set[str]] = {}  # hosts pattern -> directories its plays made
        self.checked: list[tuple[str, str, str]] = []  # (role, dest, directory)
        self.missing: list[str] = []
        self.unresolved: list[str] = []
        self.names: dict = {}

    def play(self, hosts: str, inventory: Path) -> None:
        """A new play on `hosts` (a group): what the inventory gives one of its hosts, and what the plays before it
        (site.yml's order) made on the same hosts or on all of them."""
        self.made = self.made_on.setdefault(hosts, set())
        self.made |= self.made_on.setdefault("all", set())
        groups = {}

        def walk(name, node):
            members = list((node or {}).get("hosts") or {})
            for child, sub in ((node or {}).get("children") or {}).items():
                members += walk(child, sub)
            groups[name] = members
            return members
        for name, node in (_load(inventory / "hosts.yml") or {}).items():
            walk(name, node)
        first = next(iter(groups.get(hosts.split(":")[0]) or []), "host")
        self.names = {"groups": groups, "inventory_hostname": first, "playbook_dir": str(self.roles.parent)}
        for group in ["all"] + [g for g, m in groups.items() if first in m and g != "all"]:
            self.names.update(_load(inventory / "group_vars" / f"{group}.yml") or {})

    def role_names(self, role: str, extra: dict) -> dict:
        """Ansible shows a role's defaults and vars to the roles after it in the play: they accumulate."""
        base = self.roles / role
        self.names.update(_load(base / "defaults" / "main.yml") or {})
        self.names.update(_load(base / "vars" / "main.yml") or {})
        return _Names({**self.names, **extra})

    def role(self, role: str, extra: dict, where: str) -> None:
        self.tasks(role, "main.yml", self.role_names(role, extra), where)

    def tasks(self, role: str, file: str, names: dict, where: str) -> None:
        for t in _load(self.roles / role / "tasks" / file) or []:
            self.task(role, t, names, where)

    def task(self, role: str, t: dict, names: dict, where: str) -> None:
        for key in ("ansible.builtin.import_tasks", "ansible.builtin.include_tasks"):
            if key in t:
                self.tasks(role, t[key] if isinstance(t[key], str) else t[key]["file"], names, where)
        if "ansible.builtin.include_role" in t or "ansible.builtin.import_role" in t:
            spec = t.get("ansible.builtin.include_role") or t.get("ansible.builtin.import_role")
            extra = {}
            for k, v in (t.get("vars") or {}).items():
                try:
                    extra[k] = _render(v, names) if isinstance(v, str) else v
                except _Unresolved:
                    extra[k] = v
            self.role(spec["name"], extra, where)
        for key in ("block", "rescue", "always"):
            for sub in t.get(key) or []:
                self.task(role, sub, names, where)
        module = next((m for m in ("ansible.builtin.file", *WRITERS) if m in t), None)
        if module is None:
            return
        args = t[module]
        loop = t.get("loop")
        var = (t.get("loop_control") or {}).get("loop_var", "item")
        items = loop if isinstance(loop, list) else [None]
        if isinstance(loop, str):  # an expression over the inventory's data
            try:
                items = list(_value(loop, names))
            except Exception as exc:  # noqa: BLE001
                self.unresolved.append(f"{where} {role}: loop {loop}: {exc}")
                return
            if not items:
                return
        for item in items:
            scope = names if item is None else _Names({**names, var: item})
            raw = args.get("path", args.get("dest")) if module == "ansible.builtin.file" else args["dest"]
            try:
                path = _render(raw, scope)
            except _Unresolved as exc:
                self.unresolved.append(f"{where} {role}: {exc}")
                continue
            if module == "ansible.builtin.file":
                if args.get("state") == "directory":
                    self.made.add(path.rstrip("/"))
                continue
            directory = os.path.dirname(path)
            self.checked.append((role, path, directory))
            if directory not in self.made and directory not in PROVIDED:
                self.missing.append(f"{where}: role {role} writes {path}, and nothing before it makes {directory}")


def _tree(case: str, tmp_path_factory) -> Path:
    plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
    outputs, owners = emit(plan, ["ansible", "datastores"], with_docs=False)
    root = tmp_path_factory.mktemp(f"ansible-paths-{case}") / "generated"
    writer.apply(writer.plan_write(root, outputs["generated"], owners))
    return root


@pytest.mark.parametrize("case", CASES)
def test_every_file_a_role_writes_has_its_directory(case, tmp_path_factory):
    root = _tree(case, tmp_path_factory)
    site = _load(root / "ansible" / "site.yml")
    walk = _Walk(root)
    inventories = sorted((root / "ansible" / "inventories").iterdir())
    assert inventories
    for entry in site:
        playbook = entry["ansible.builtin.import_playbook"]
        for play in _load(root / "ansible" / playbook):
            walk.play(play["hosts"], inventories[0])
            for r in play.get("roles", []):
                name, extra = (r, {}) if isinstance(r, str) else (r["role"], dict(r.get("vars") or {}))
                walk.role(name, extra, f"{playbook} / {play['name']}")
    assert not walk.missing, "\n".join(walk.missing)
    # the walk must see the files: the systemd drop-ins and the data_disk script among them
    written = {dest for _, dest, _ in walk.checked}
    assert len(walk.checked) >= 30, walk.checked
    assert any(d.startswith("/etc/systemd/system/pgbouncer.service.d/") for d in written), sorted(written)
    assert any(d.startswith("/etc/systemd/system/patroni@.service.d/") for d in written), sorted(written)
    assert any("data-disk-id" in d for d in written), sorted(written)
    # what cannot be resolved without a host is loop data from the inventory: at most a handful, none of them new
    assert len(walk.unresolved) <= 8, "\n".join(walk.unresolved)


def test_the_walk_finds_a_directory_nothing_makes(tmp_path_factory):
    """The check itself: a role writing into a directory no task makes is reported."""
    root = _tree("two-region", tmp_path_factory)
    tasks = root / "ansible" / "roles" / "pgbouncer" / "tasks" / "main.yml"
    data = _load(tasks)
    data = [t for t in data if not (t.get("ansible.builtin.file") or {}).get("path", "").endswith(".service.d")]
    tasks.write_text(yaml.safe_dump(data))
    walk = _Walk(root)
    walk.play("pgbouncer", sorted((root / "ansible" / "inventories").iterdir())[0])
    walk.role("pgbouncer", {}, "pgbouncer.yml")
    assert any("pgbouncer.service.d" in m for m in walk.missing), walk.missing


def test_the_data_volume_root_keeps_its_datastores_owner(tmp_path_factory):
    """data_disk runs at the start of every run: once the volume is mounted, the path is the datastore's directory
    (Redis, without CAP_DAC_OVERRIDE, could not write /var/lib/redis once a re-run made it root's 0755). Only the
    bare mount point is root's; the mounted root goes to the datastore's user, which its package creates."""
    root = _tree("two-region", tmp_path_factory)
    tasks = _load(root / "ansible" / "roles" / "data_disk" / "tasks" / "main.yml")
    on_mount = [t for t in tasks if (t.get("ansible.builtin.file") or {}).get("path") == "{{ data_disk_mount }}"]
    assert len(on_mount) == 2, on_mount
    for t in on_mount:
        args = t["ansible.builtin.file"]
        if args["owner"] == "root":
            assert t["when"] == "data_disk_mounted.rc != 0", t
        else:
            assert args["owner"] == "{{ data_disk_owner }}" and args["mode"] == "{{ data_disk_mode }}", t
    users = {}
    for playbook in ("postgresql.yml", "redis.yml", "elasticsearch.yml"):
        for play in _load(root / "ansible" / playbook):
            disk = [r for r in play["roles"] if isinstance(r, dict) and r["role"] == "data_disk"]
            assert len(disk) == 1, play
            users[playbook] = (disk[0]["vars"]["data_disk_owner"], disk[0]["vars"]["data_disk_mode"])
    # the users and modes Debian's packages give these directories (postgresql-common, redis-tools, elasticsearch)
    assert users == {"postgresql.yml": ("postgres", "0755"), "redis.yml": ("redis", "0750"),
                     "elasticsearch.yml": ("elasticsearch", "2750")}
