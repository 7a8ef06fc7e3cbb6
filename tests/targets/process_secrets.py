"""Which running processes carry a secret in their command line or environment (/proc/<pid>/cmdline, environ).

The restart harnesses' stand-in systemctl calls it while the role's handler is running (ansible-playbook, its
module, the restart script and its children are all alive then): a secret handed to the script through the task's
`environment:` is in the environment of the module's shell and of the script, and on that shell's command line.
"""

from __future__ import annotations

import os


def holding(secret: str) -> list[str]:
    """`<pid> <command> (cmdline|environ)` for each process whose command line or environment contains `secret`."""
    needle, found = secret.encode(), []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        for what in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{what}", "rb") as f:
                    data = f.read()
                with open(f"/proc/{entry}/comm", "rb") as f:
                    comm = f.read().decode(errors="replace").strip()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            if needle in data:
                found.append(f"{entry} {comm} ({what})")
    return found
