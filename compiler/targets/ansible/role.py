"""Building blocks for roles written as data: tasks, handlers, meta, the check-mode guard.

A role is a `Role`: defaults, vars, task files, handlers and meta as Python data (dumped as YAML by
the target), plus the static files under templates/ansible/static/roles/<name>/ that Ansible
itself renders or copies (those are copied verbatim).
"""

from __future__ import annotations

from dataclasses import field

from compiler.records import dataclass

MIN_ANSIBLE = "2.15"  # deb822_repository and the `undef()` lookups need ansible-core 2.15+
PLATFORMS = [{"name": "Debian", "versions": ["bookworm"]},
             {"name": "Ubuntu", "versions": ["jammy", "noble"]}]


@dataclass
class Role:
    name: str
    description: str
    defaults: dict
    tasks: dict[str, list]  # file stem -> tasks; "main" is the entry point
    handlers: list = field(default_factory=list)
    vars: dict = field(default_factory=dict)

    def meta(self) -> dict:
        return {"galaxy_info": {"role_name": self.name, "author": "platformc", "description": self.description,
                                "license": "proprietary", "min_ansible_version": MIN_ANSIBLE,
                                "platforms": PLATFORMS},
                "dependencies": []}


def task(name: str, module: str, args: dict | str | None = None, **keywords) -> dict:
    """One task: `name` first, then the module (FQCN), then keywords in the order given."""
    out = {"name": name, module: args if args is not None else {}}
    out.update({k: v for k, v in keywords.items() if v is not None})
    return out


def installed_version_check(read: str, check: str, package: str, pattern: str, fail_msg: str) -> list[dict]:
    """Read the installed packages, then stop a host whose `package` version does not match `pattern` (a Jinja
    expression of the regex to search the Debian version for); a host without the package yet passes."""
    version = f"ansible_facts.packages['{package}'][0].version"
    return [task(read, "ansible.builtin.package_facts", {"manager": "apt"}),
            task(check, "ansible.builtin.assert", {"that": [f"{version} is search({pattern})"], "fail_msg": fail_msg},
                 when=f"'{package}' in ansible_facts.packages")]


def expr(*lines: str) -> str:
    """One Jinja expression over several lines (YAML keeps them under 160 columns; Jinja reads the
    line breaks as spaces), so it still templates to a native value such as a list."""
    return "{{ " + "\n   ".join(lines) + " }}"


def cond(*lines: str) -> str:
    """A condition (when, until, failed_when) over several lines, bare: Ansible templates conditions itself, and
    ansible-core 2.19 deprecates one written inside {{ }} (removed in 2.23)."""
    return "\n".join(lines)


def when_ready(role: str) -> str:
    """The guard for service tasks and handlers.

    In check mode a package that is not installed yet has no service to query, so a service task
    would fail; the role's `<role>_services_ready` is false exactly then (see its vars/main.yml).
    """
    return f"{role}_services_ready"


def services_ready_var(role: str, install_register: str) -> dict:
    return {f"{role}_services_ready":
            "{{ not (ansible_check_mode and (" + install_register + " | default({})) is changed) }}"}


def service(name: str, unit: str, role: str, state: str = "started", enabled: bool | None = True,
            when: str | None = None, **kw) -> dict:
    """A service task guarded by the role's check-mode guard (plus `when`, if given)."""
    args = {"name": unit, "state": state}
    if enabled is not None:
        args["enabled"] = enabled
    guard = when_ready(role) if when is None else [when_ready(role), when]
    return task(name, "ansible.builtin.service", args, when=guard, **kw)


def template(name: str, src: str, dest: str, mode: str = "0644", owner: str = "root", group: str = "root",
             **kw) -> dict:
    args = {"src": src, "dest": dest, "owner": owner, "group": group, "mode": mode}
    args.update({k: kw.pop(k) for k in ("validate", "backup") if k in kw})
    return task(name, "ansible.builtin.template", args, **kw)


def copy(name: str, dest: str, mode: str = "0644", owner: str = "root", group: str = "root", **kw) -> dict:
    args = {k: kw.pop(k) for k in ("src", "content", "remote_src", "validate", "force") if k in kw}
    args.update({"dest": dest, "owner": owner, "group": group, "mode": mode})
    return task(name, "ansible.builtin.copy", args, **kw)


def systemd_dropin(name: str, unit: str, file: str, content: str, unit_label: str | None = None, **kw) -> list[dict]:
    """A drop-in for `unit` (/etc/systemd/system/<unit>.d/<file>): its directory first, which no package ships and
    the copy module does not create (a missing parent fails the task, and with it the host's run). `unit_label` names
    the unit in the directory task's name where `unit` holds a Jinja expression (a task name keeps those at its end)."""
    directory = f"/etc/systemd/system/{unit}.d"
    return [task(f"Create the drop-in directory of {unit_label or unit}", "ansible.builtin.file",
                 {"path": directory, "state": "directory", "owner": "root", "group": "root", "mode": "0755"}),
            copy(name, f"{directory}/{file}", content=content, **kw)]


def systemd_timer(what: str, path: str, unit: str, service: str, timer: str, register: str, when: str | None = None,
                  run_when: tuple = ()) -> list[dict]:
    """A service and the daily timer that starts it (`path`.service and `path`.timer, `unit` their name for systemd):
    both installed, then the timer enabled and started, reloading systemd when either file changed. Not in check mode,
    where the files were not written. `when` guards the three tasks, `run_when` adds to the last one's."""
    on = {"when": when} if when else {}
    return [copy(f"Install the {what} service", path + ".service", content=service, **on,
                 register=f"{register}_service"),
            copy(f"Install the daily {what} timer", path + ".timer", content=timer, **on,
                 register=f"{register}_timer"),
            task(f"Run the {what} timer", "ansible.builtin.systemd_service",
                 {"name": f"{unit}.timer", "enabled": True, "state": "started",
                  "daemon_reload": f"{{{{ {register}_service is changed or {register}_timer is changed }}}}"},
                 when=[*([when] if when else []), *run_when, "not ansible_check_mode"])]


def apt(name: str, packages, register: str | None = None, **kw) -> dict:
    args = {"name": packages, "state": "present", "update_cache": True, "cache_valid_time": 3600}
    return task(name, "ansible.builtin.apt", args, register=register, **kw)


def repository(name: str, repo_name: str, uris: str, suites: str, signed_by: str, **kw) -> dict:
    """An APT source in deb822 format (ansible.builtin.deb822_repository), key fetched by URL."""
    args = {"name": repo_name, "types": ["deb"], "uris": uris, "suites": suites, "components": ["main"],
            "signed_by": signed_by, "state": "present"}
    return task(name, "ansible.builtin.deb822_repository", args, **kw)
