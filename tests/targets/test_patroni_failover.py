"""The failover drill: Patroni and etcd from the generated files, on loopback, with real servers.

Inside `unshare -n` (only a loopback; nothing can leave the machine) tests/targets/patroni_harness.py starts three
etcd members, a Patroni cluster of two PostgreSQL 15 members of one region and one member of the standby cluster its
DR partner runs, from the generated group_vars (patroni_config, patroni_standby_clusters) and the data tier's
postgresql.conf/pg_hba.conf, with only ports, paths and addresses remapped (and WAL-G's bucket replaced by a local
archive directory). It writes rows continuously, kill -9s the leader (Patroni and PostgreSQL), brings the old leader
back, restarts the new leader, then kills the whole region and promotes the standby cluster as the runbook says.

Goals asserted: a writable new leader in under 60 s (RTO 15 min); no committed row lost in the region
(synchronous_mode); a segment written after a restart archived within the RPO (the callback's CHECKPOINT and WAL
switch; before it the first switch waited on checkpoint_timeout); at most the RPO of WAL lost across regions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compiler import writer
from compiler.emit import emit
from tests.targets.test_datastores_support import AS_POSTGRES, ISOLATE, private_dir, require_patroni_cluster

REGION = "us-west-2"  # its DR partner (us-east-1) runs its standby cluster
HARNESS = Path(__file__).with_name("patroni_harness.py")


@pytest.fixture(scope="module")
def drill(reference):
    python = require_patroni_cluster()
    gen = private_dir("pdrill-gen-")  # readable by the postgres user the drill runs as
    work = private_dir("pdrill-")
    try:
        outputs, _ = emit(reference, ["ansible", "datastores"], with_docs=False)
        writer.apply(writer.plan_write(gen, outputs["generated"], None))
        res = subprocess.run(ISOLATE + AS_POSTGRES + [python, str(HARNESS), str(gen), REGION, str(work)],
                             capture_output=True, text=True, timeout=1200)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(gen, ignore_errors=True)
    assert res.returncode == 0, f"the drill failed:\n{res.stderr[-6000:]}"
    figures = json.loads(res.stdout.strip().splitlines()[-1])
    print("\nfailover drill:", json.dumps(figures, indent=1), file=sys.stderr)
    return figures


def test_failover_in_the_region_is_fast_and_loses_nothing(drill, reference):
    rto_s = reference.spec.disaster_recovery.rto_minutes * 60
    assert drill["synchronous_mode"] is True
    assert drill["failover_seconds"] < 60 < rto_s, drill
    assert drill["rows_committed"] > 100, drill
    assert drill["rows_lost_in_region"] == 0, drill


def test_a_write_after_a_restart_is_archived_within_the_rpo(drill, reference):
    rpo_s = reference.spec.disaster_recovery.rpo_minutes * 60
    # archive_timeout (min(60, RPO)) plus the archiver's own poll: within the RPO and a few seconds
    assert drill["restart_write_archived_seconds"] <= rpo_s + 5, drill


def test_promoting_the_standby_cluster_loses_at_most_the_rpo(drill, reference):
    rpo_s = reference.spec.disaster_recovery.rpo_minutes * 60
    assert drill["promotion_seconds"] < 60, drill
    assert drill["seconds_lost_across_regions"] <= rpo_s, drill
    assert drill["rows_committed_total"] > drill["rows_committed"], drill
