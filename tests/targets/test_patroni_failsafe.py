"""Losing etcd's quorum does not stop the region's writes while every PostgreSQL member is up (Patroni's DCS
failsafe_mode, compiler/ir/postgres_ha.py).

etcd runs on the first three PostgreSQL hosts: maintenance that stops two of them, or an instance-type change that
stops every data host at once, leaves Patroni's leader unable to update its leader key. Without failsafe_mode it
demoted itself within ttl + retry_timeout and the region took no writes, although its PostgreSQL members were healthy.

For real, inside `unshare -n` as postgres (tests/targets/patroni_failsafe_harness.py): one etcd member and the
region's first two Patroni members from the generated group_vars, TLS and REST credentials as generated; etcd is
stopped for longer than ttl + loop_wait + retry_timeout. The leader must keep answering GET /primary (the load
balancers' check) and taking writes, the replica must never lead; once the replica is gone too, the leader must
demote (failsafe needs every member: no split brain).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from compiler import writer
from compiler.emit import emit
from tests.targets.test_datastores_support import AS_POSTGRES, ISOLATE, private_dir, require_patroni_cluster

REGION = "us-east-1"
HARNESS = Path(__file__).with_name("patroni_failsafe_harness.py")


@pytest.fixture(scope="module")
def generated(reference):
    gen = private_dir("pfailsafe-gen-")
    outputs, _ = emit(reference, ["ansible", "datastores"], with_docs=False)
    writer.apply(writer.plan_write(gen, outputs["generated"], None))
    yield gen
    shutil.rmtree(gen, ignore_errors=True)


def test_every_cluster_enables_failsafe_mode(generated):
    """The region's own cluster and each standby cluster (kept once the DR runbook promotes it) carry it in
    bootstrap.dcs, which the postgresql role's leader steps (edit-config --apply) and the patroni role's standby steps
    also apply to clusters that exist."""
    seen = 0
    for gv in (generated / "ansible/inventories").glob("*/group_vars/postgres.yml"):
        data = yaml.safe_load(gv.read_text())
        if "patroni_config" not in data:
            continue
        for cfg in [data["patroni_config"]] + [s["config"] for s in data.get("patroni_standby_clusters") or []]:
            assert cfg["bootstrap"]["dcs"]["failsafe_mode"] is True, (gv, cfg["scope"])
            seen += 1
    assert seen >= 10, seen


def test_the_leader_keeps_writing_through_an_etcd_outage_and_demotes_without_a_member(generated):
    python = require_patroni_cluster()
    work = private_dir("pfailsafe-")
    try:
        res = subprocess.run(ISOLATE + AS_POSTGRES + [python, str(HARNESS), str(generated), REGION, str(work)],
                             capture_output=True, text=True, timeout=900)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert res.returncode == 0, f"the harness failed:\n{res.stderr[-6000:]}"
    out = json.loads(res.stdout.strip().splitlines()[-1])
    print("\netcd outage:", json.dumps(out, indent=1), file=sys.stderr)
    assert out["outage_seconds"] > out["ttl"] + out["loop_wait"] + out["retry_timeout"]
    # the leader answered GET /primary and took a write at every probe (about one a second) of the whole outage
    assert out["probes"] >= out["outage_seconds"] // 2, out
    assert out["primary"] == out["probes"] and out["writes"] == out["probes"] and out["refused"] == 0, out
    assert out["failsafe_active"] and out["leader_role_after"] in ("master", "primary"), out
    assert not out["replica_led"], out
    assert len(out["failsafe_key"]) == 2, out  # both members, by the REST URLs the leader calls
    # failsafe needs every member: without the replica the leader demotes within a few loops
    assert out["demoted_after_replica_lost_seconds"] is not None, out
    assert out["demoted_after_replica_lost_seconds"] <= 3 * out["loop_wait"] + out["retry_timeout"], out
    assert not out["write_after_replica_lost"], out
