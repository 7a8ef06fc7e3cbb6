"""A region that is several regions' DR partner runs their standby clusters on two of its own PostgreSQL hosts, beside
its own member (compiler/ir/postgres_ha.py). Judged from the generated files, as the hosts would run them:

- memory: each standby included its source's postgresql.conf and nothing lowered its memory, so us-east-1's second
  and third hosts (128 GiB, partner of three regions) reserved 4 x 32 GB of shared buffers: the host's whole RAM.
  Now the shared buffers of every cluster a host runs fit a quarter of its RAM, and their memory budgets its RAM.
- disk: the standbys' data directories sit on the host's one data volume, which had only the spec's own disk_gib;
  it now holds the sources' volumes too.
- archive after promotion: a promoted standby kept its source's archive_command, into the lost region's bucket,
  which the partner's hosts may not write: pg_wal would have grown until the volume filled. It now archives into
  its own region's bucket, under a prefix no region archives to, and never into an Azure replication container
  (read-only). Patroni's own configuration merge (the Debian package's library) confirms that these local
  parameters are the ones the standby runs with.
"""

from __future__ import annotations

import json
import re
import subprocess

import hcl2
import pytest
import yaml

from compiler.emit import emit
from compiler.ir.wal_archive import archive_url
from compiler.pipeline import compile_file
from tests.conftest import IN_CI, REPO
from tests.targets.test_patroni_dcs import _conf

UNITS = {"kB": 1 / 1024, "MB": 1, "GB": 1024, "TB": 1024 * 1024}


def _mb(value: str) -> float:
    m = re.fullmatch(r"(\d+)(kB|MB|GB|TB)", str(value))
    assert m, value
    return int(m.group(1)) * UNITS[m.group(2)]


@pytest.fixture(scope="module")
def built():
    plan = compile_file(str(REPO / "platform.yaml")).plan
    out, _ = emit(plan, ["ansible", "datastores", "terraform"], with_docs=False)
    files = {rel: text for rel, (_, text) in out["generated"].items()}
    return plan, files


def _standbys(files, region: str) -> list[dict]:
    data = yaml.safe_load(files[f"ansible/inventories/{region}/group_vars/postgres.yml"])
    return data.get("patroni_standby_clusters") or []


def test_the_reference_has_a_host_with_several_standbys(built):
    plan, files = built
    most = max(sum(h in s["hosts"] for s in _standbys(files, r.name)) for r in plan.regions for h in
               [x.name for x in r.hosts])
    assert most >= 3  # us-east-1 and ap-southeast-1: partners of three regions each


def test_every_postgres_host_fits_its_clusters_in_its_memory(built):
    plan, files = built
    checked = 0
    for r in plan.regions:
        if f"datastores/{r.name}/postgresql.conf" not in files:
            continue
        ram_mb = r.settings.datastores.postgres.instance.memory_gib * 1024
        own = _conf(files[f"datastores/{r.name}/postgresql.conf"])
        standbys = _standbys(files, r.name)
        for h in (x for x in r.hosts if x.group.startswith("postgres")):
            on = [s["config"]["postgresql"]["parameters"] for s in standbys if h.name in s["hosts"]]
            shared = _mb(own["shared_buffers"]) + sum(_mb(p["shared_buffers"]) for p in on)
            cache = _mb(own["effective_cache_size"]) + sum(_mb(p["effective_cache_size"]) for p in on)
            assert shared <= ram_mb / 4 + 1, (r.name, h.name, shared, ram_mb)
            assert cache <= ram_mb * 3 / 4 + 1, (r.name, h.name, cache, ram_mb)
            checked += bool(on)
    assert checked >= 4


def test_every_standby_keeps_its_sources_limits(built):
    plan, files = built
    for r in plan.regions:
        for s in _standbys(files, r.name):
            source = _conf(files[f"datastores/{s['region']}/postgresql.conf"])
            dcs = s["config"]["bootstrap"]["dcs"]["postgresql"]["parameters"]
            assert str(dcs["max_connections"]) == source["max_connections"], (r.name, s["region"])
            local = s["config"]["postgresql"]["parameters"]
            assert "max_connections" not in local and "max_worker_processes" not in local


def test_every_data_volume_holds_the_standbys_it_runs(built):
    plan, files = built
    checked = 0
    for r in plan.regions:
        root = hcl2.loads(files[f"terraform/regions/{r.name}/main.tf"])
        hosts = {}
        for module in root.get("module", []):
            for body in module.values():
                dh = body.get("hosts") if isinstance(body, dict) else None
                if isinstance(dh, dict) and all(isinstance(v, dict) and "data_disk_gib" in v for v in dh.values()):
                    hosts.update(dh)
        if not any(h.group.startswith("postgres") for h in r.hosts) or not hosts:
            continue
        own = r.settings.datastores.postgres.instance.disk_gib
        for h in (x for x in r.hosts if x.group.startswith("postgres")):
            sources = [s["region"] for s in _standbys(files, r.name) if h.name in s["hosts"]]
            need = own + sum(plan.region(src).settings.datastores.postgres.instance.disk_gib for src in sources)
            assert int(hosts[h.name]["data_disk_gib"]) >= need, (r.name, h.name, hosts[h.name], need)
            checked += bool(sources)
    assert checked >= 4


def _prefix(command: str) -> str:
    m = re.search(r"WALG_(?:S3|GS|AZ)_PREFIX=(\S+)", command)
    assert m, command
    account = re.search(r"AZURE_STORAGE_ACCOUNT=(\S+)", command)
    url = m.group(1)
    return url.replace("azure://", f"azure://{account.group(1)}/") if account else url


def test_a_promoted_standby_archives_into_its_own_regions_bucket(built):
    plan, files = built
    own_archives = {archive_url(r, r.name) for r in plan.regions}
    copies = {archive_url(r, s, replica=True) for r in plan.regions for s in (x.name for x in plan.regions) if s != r.name}
    checked = 0
    for r in plan.regions:
        bucket = r.backup_url
        for s in _standbys(files, r.name):
            src = plan.region(s["region"])
            command = s["config"]["postgresql"]["parameters"].get("archive_command")
            if not src.settings.datastores.postgres.wal_archive:
                assert command is None
                continue
            url = _prefix(command)
            assert url.startswith(bucket + "/"), (r.name, s["region"], url, bucket)
            assert url not in own_archives and url not in copies, (r.name, s["region"], url)
            assert "/dr-" not in url  # an Azure replication destination container is read-only
            checked += 1
    assert checked >= 8


PATRONI_MERGE = r"""
import json, sys
from patroni.config import Config
local, dynamic = json.load(sys.stdin)
cfg = Config.__new__(Config)
effective = Config._build_effective_configuration(cfg, dynamic, local)
print(json.dumps(dict(effective["postgresql"]["parameters"])))
"""


def test_patroni_runs_the_standby_with_these_parameters(built):
    """Patroni's own merge (patroni/config.py _build_effective_configuration, Debian's python3-patroni): a standby's
    local parameters win over its dynamic configuration, and reach the postgresql.conf Patroni writes after its
    include of custom_conf (the source's file)."""
    plan, files = built
    probe = subprocess.run(["/usr/bin/python3", "-c", "import patroni.config"], capture_output=True)
    if probe.returncode:
        message = "Debian's python3-patroni is not installed (run `make tools`)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    s = _standbys(files, "us-east-1")[0]
    dynamic = dict(s["config"]["bootstrap"]["dcs"])
    dynamic["postgresql"] = dict(dynamic["postgresql"], parameters=dict(dynamic["postgresql"]["parameters"],
                                                                           shared_buffers="32GB"))
    out = subprocess.run(["/usr/bin/python3", "-c", PATRONI_MERGE], input=json.dumps([s["config"], dynamic]),
                         capture_output=True, text=True, check=True)
    effective = json.loads(out.stdout)
    local = s["config"]["postgresql"]["parameters"]
    for name in ("shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "archive_command"):
        assert effective[name] == local[name], (name, effective.get(name), local[name])
    assert str(effective["max_connections"]) == str(dynamic["postgresql"]["parameters"]["max_connections"])


def test_a_volume_too_large_for_its_standbys_is_refused_at_validation():
    """R059: 6,000 GiB is a valid volume on its own, but us-east-1's standby hosts would need 24,000 (its own and three
    sources'), past AWS gp3's 16,384: the cloud would refuse it at apply."""
    from compiler.errors import SpecError
    from compiler.pipeline import compile_text
    text = (REPO / "platform.yaml").read_text()
    assert text.count("disk_gib: 2000\n") == 1
    with pytest.raises(SpecError) as err:
        compile_text(text.replace("disk_gib: 2000\n", "disk_gib: 6000\n"))
    message = str(err.value)
    assert "[R059] sixfb-us-east-1-pg-2 needs a 24,000 GiB data volume (6,000 GiB of its own and 18,000 GiB" in message
    assert "[R059] sixfb-us-west-2" not in message  # 12,000 GiB: one standby, within the limit
