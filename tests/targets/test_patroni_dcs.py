"""Patroni sets some postmaster parameters on PostgreSQL's command line from its dynamic configuration (the DCS),
never from postgresql.conf (Patroni 3.0's CMDLINE_OPTIONS): absent from bootstrap.dcs, its defaults (max_connections
100, max_wal_senders 10, max_worker_processes 8, wal_keep_size 128MB) won over the data tier's file, and PgBouncer's
pools, sized for the region's max_connections, were refused past 100 server connections. Judged from the generated
files alone: each Patroni configuration's bootstrap.dcs carries exactly the values its cluster's postgresql.conf sets
(a standby cluster its source region's, which a hot standby needs at least), and every value passes Patroni's own
validation (a value it rejects falls back to its default)."""

from __future__ import annotations

import re

import pytest
import yaml

from compiler.emit import emit
from compiler.pipeline import compile_file
from tests.conftest import REPO

CASES = sorted(p.name for p in (REPO / "tests/cases").iterdir() if (p / "platform.yaml").exists())
# Patroni 3.0.2, patroni/postgresql/config.py CMDLINE_OPTIONS: the ones the DCS may set, and their validators
VALID = {"max_connections": lambda v: int(v) >= 25, "max_wal_senders": lambda v: int(v) >= 3,
         "max_replication_slots": lambda v: int(v) >= 4, "max_worker_processes": lambda v: int(v) >= 2,
         "wal_keep_size": lambda v: int(re.match(r"(\d+)GB$", v).group(1)) * 1024 >= 16,
         "wal_level": lambda v: v in ("hot_standby", "replica", "logical"),
         "max_prepared_transactions": lambda v: int(v) >= 0, "max_locks_per_transaction": lambda v: int(v) >= 32,
         "track_commit_timestamp": lambda v: v in ("on", "off", True, False)}


def _conf(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        m = re.match(r"^\s*([a-z_]+)\s*=\s*('([^']*)'|\S+)", line)
        if m:
            out[m.group(1)] = m.group(3) if m.group(3) is not None else m.group(2)
    return out


@pytest.mark.parametrize("case", CASES)
def test_patroni_dcs_carries_the_data_tier_postmaster_parameters(case):
    plan = compile_file(str(REPO / "tests/cases" / case / "platform.yaml")).plan
    out, _ = emit(plan, ["ansible", "datastores"], with_docs=False)
    files = {rel: text for rel, (_, text) in out["generated"].items()}
    checked = 0
    for r in plan.regions:
        group = files.get(f"ansible/inventories/{r.name}/group_vars/postgres.yml")
        if group is None:
            continue
        data = yaml.safe_load(group)
        if "patroni_config" not in data:  # managed PostgreSQL: no Patroni
            continue
        clusters = [(r.name, data["patroni_config"])] + [(s["region"], s["config"])
                                                          for s in data.get("patroni_standby_clusters") or []]
        for source, config in clusters:
            conf = _conf(files[f"datastores/{source}/postgresql.conf"])
            params = config["bootstrap"]["dcs"]["postgresql"]["parameters"]
            for name in ("max_connections", "max_worker_processes", "max_wal_senders", "max_replication_slots",
                         "wal_keep_size", "wal_level"):
                assert name in conf, (source, name)
                assert str(params[name]) == conf[name], (r.name, source, name, params[name], conf[name])
            for name, value in params.items():
                assert name in VALID and VALID[name](value), (r.name, source, name, value)
            checked += 1
    if case == "reference":
        assert checked >= 24, checked
