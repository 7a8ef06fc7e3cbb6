"""A source region's raised cluster-wide setting reaching its DR standby cluster, behind
tests/targets/test_patroni_standby_dcs.py (run by it, inside `unshare -n`, as postgres).

    python3 patroni_standby_dcs_harness.py <generated dir> <source region> <partner region> <work dir> <steps as JSON>

Starts, on loopback only, one etcd member, a one-member cluster of the source region (its group_vars patroni_config)
and a one-member standby cluster of it (the partner's patroni_standby_clusters entry), streaming from the source
member and restoring from a local archive, each remapped as patroni_harness.py remaps it. Then, twice: runs the patroni
role's `show-config` command as written and leaves its answer in <work dir>/stored-<n>.yml; the test (which has
Ansible's templar) answers with <work dir>/stdin-<n>.json: the stdin the role's variables make of it, and whether
the role would apply it. The first time the apply command runs with that stdin, then the role's standby restart
handlers (the wait for `Pending restart`, the restart). The second time only the answer is recorded.

Prints one JSON line: the standby's max_connections before and after, each command's exit status and output, whether
the standby replays the source's writes after its restart, and the second answer.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import yaml

from patroni_harness import (HOST, PASSWORDS, Proc, Work, connect, data_tier_files, group_vars, hosts_of, remap, render,
                             rest, single_etcd, wait)

ETCD_CLIENT, ETCD_PEER = 25479, 25480
SRC_PG, SRC_REST, SB_PG, SB_REST = 26552, 29128, 26553, 29129


def show(sock: Path, port: int, name: str) -> str:
    with psycopg2.connect(host=str(sock), port=port, dbname="postgres", user="postgres") as c, c.cursor() as cur:
        cur.execute("SHOW " + name)
        return cur.fetchone()[0]


def command(argv: list, values: dict, stdin: str | None = None) -> subprocess.CompletedProcess:
    def sub(a: str) -> str:
        if re.fullmatch(r"/etc/patroni/\{\{ [\w.]*instance \}\}\.yml", a):
            return values["config"]
        if re.fullmatch(r"\{\{ [\w.]*config\.scope \}\}", a):
            return values["scope"]
        return values["member"] if a == "{{ inventory_hostname }}" else a
    argv = [sub(a) for a in argv]
    assert not any("{{" in a for a in argv), f"a template the harness does not name: {argv}"
    return subprocess.run(argv, input=stdin, capture_output=True, text=True)


def pending(stdout: str, member: str) -> bool:
    try:
        return any(m.get("Member") == member and m.get("Pending restart") for m in json.loads(stdout))
    except ValueError:
        return False


def answer(root: Path, n: int, stored: str) -> dict:
    """Hand show-config's answer to the test and wait for the stdin it makes of it."""
    part = root / f"stored-{n}.part"
    part.write_text(stored)
    part.rename(root / f"stored-{n}.yml")
    path = root / f"stdin-{n}.json"
    wait(path.exists, 120, f"the test's answer {n}")
    return json.loads(path.read_text())


def main():
    gen, region, partner, root, steps = (Path(sys.argv[1]), sys.argv[2], sys.argv[3], Path(sys.argv[4]),
                                         json.loads(sys.argv[5]))
    os.environ["HOME"] = str(root)
    w = Work(root)
    ctx = ssl.create_default_context(cafile=w.crt)
    logs = root / "logs"
    logs.mkdir(exist_ok=True)
    gv = group_vars(gen, region)
    standby = next(s for s in group_vars(gen, partner)["patroni_standby_clusters"] if s["region"] == region)
    procs: list[Proc] = []
    out: dict = {}
    try:
        procs.append(single_etcd(gv["etcd_members"][0], root, w, ETCD_CLIENT, ETCD_PEER, logs))
        src_name = list(hosts_of(gen, region))[0]
        src_conf = root / "source-conf"
        data_tier_files(gen, region, src_conf)
        cfg = render(gv["patroni_config"], {"inventory_hostname": src_name, "ansible_host": src_name, **PASSWORDS})
        cfg = remap(cfg, src_name, SRC_PG, SRC_REST, [ETCD_CLIENT], w, src_conf, root / "source" / "data")
        (root / "source.yml").write_text(yaml.safe_dump(cfg))
        src_sock = root / "source" / "sock"
        procs.append(Proc("source", ["patroni", str(root / "source.yml")], logs, env={"PGHOST": str(src_sock)}))
        wait(lambda: rest(SRC_REST, "/primary", ctx) == 200, 180, "the source leading")

        sb_name = standby["hosts"][0]
        sb_conf = root / "standby-conf"
        data_tier_files(gen, region, sb_conf, f"datastores/{partner}/{standby['hba_file']}")
        sb_cfg = render(standby["config"], {"inventory_hostname": sb_name, "ansible_host": sb_name, **PASSWORDS,
                                            "patroni_standby_passwords": {region.replace("-", "_"): {
                                                "admin": PASSWORDS["postgresql_admin_password"],
                                                "replication": PASSWORDS["postgresql_replication_password"]}}})
        sb_cfg = remap(sb_cfg, sb_name, SB_PG, SB_REST, [ETCD_CLIENT], w, sb_conf, root / "standby" / "data",
                       standby_host_port=(HOST, SRC_PG))
        sb_path = root / "standby.yml"
        sb_path.write_text(yaml.safe_dump(sb_cfg))
        sb_sock = root / "standby" / "sock"
        procs.append(Proc("standby", ["patroni", str(sb_path)], logs, env={"PGHOST": str(sb_sock)}))
        wait(lambda: rest(SB_REST, "/standby-leader", ctx) == 200, 240, "the standby leader")
        values = {"config": str(sb_path), "scope": sb_cfg["scope"], "member": sb_name}
        out["before"] = int(show(sb_sock, SB_PG, "max_connections"))

        shown = command(steps["show"], values)
        first = answer(root, 1, shown.stdout)
        rec = out["first"] = {"show_rc": shown.returncode, "stale": first["stale"]}
        if first["stale"]:
            applied = command(steps["apply"], values, first["stdin"])
            rec.update(apply_rc=applied.returncode, apply=(applied.stdout + applied.stderr)[-600:])
            # the handlers: wait (up to the role's retries, and more here on a loaded machine) until the member is
            # flagged, then restart it
            for attempt in range(12):
                listed = command(steps["list"], values)
                if listed.returncode == 0 and pending(listed.stdout, sb_name):
                    break
                time.sleep(5)
            rec["flagged_after_attempts"] = attempt + 1
            restarted = command(steps["restart"], values)
            rec.update(restart_rc=restarted.returncode, restart=(restarted.stdout + restarted.stderr)[-600:])
        wait(lambda: rest(SB_REST, "/standby-leader", ctx) == 200, 120, "the standby leader after its restart")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                out["after"] = int(show(sb_sock, SB_PG, "max_connections"))
                break
            except psycopg2.Error:
                time.sleep(1)
        # the standby replays what the source writes after
        c = connect(src_sock, SRC_PG)
        c.cursor().execute("CREATE TABLE standby_probe (n int)")
        c.cursor().execute("INSERT INTO standby_probe VALUES (42)")
        c.close()
        out["replaying"] = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not out["replaying"]:
            try:
                s = connect(sb_sock, SB_PG)
                cur = s.cursor()
                cur.execute("SELECT to_regclass('standby_probe') IS NOT NULL")
                if cur.fetchone()[0]:
                    cur.execute("SELECT count(*) FROM standby_probe")
                    out["replaying"] = cur.fetchone()[0] == 1
                s.close()
            except psycopg2.Error:
                pass
            time.sleep(1)

        shown = command(steps["show"], values)
        second = answer(root, 2, shown.stdout)
        out["second"] = {"show_rc": shown.returncode, "stale": second["stale"]}
    finally:
        for p in reversed(procs):
            p.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
