"""The WAL archive's prefixes (compiler/ir/wal_archive.py): every region archives under a prefix of its own, a copy
the bucket replication makes lands under a prefix no cluster writes, and each DR standby cluster restores from the
copy in its own region's bucket, with the setting Patroni gives precedence over the source's postgresql.conf.

Every region once archived to `<its backup bucket>/postgres`, and the terraform target replicates each backup
bucket, every key unchanged, into the DR partner's: two clusters' identically named WAL segments and base backups
met in one prefix (overwritten segments, "WAL file is from different database system" on restore, each region's
`wal-g delete` deleting the other's objects), and the standbys restored with the source's restore_command, from the
source's bucket, which their hosts may not read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from compiler.emit import emit
from compiler.ir.names import WALG
from compiler.targets.terraform import aws as tf_aws, gcp as tf_gcp, azure as tf_azure
from compiler.targets.terraform.common import prefix as tf_prefix
from tests.conftest import IN_CI, REPO, require_tool
from tests.targets.test_datastores_support import parse_conf, unquote_pg

PREFIX_VARS = ("WALG_S3_PREFIX", "WALG_GS_PREFIX", "WALG_AZ_PREFIX")


def _files(plan) -> dict[str, str]:
    out, _ = emit(plan, ["ansible", "datastores"], with_docs=False)
    return {rel: text for rel, (_, text) in out["generated"].items()}


def _env(command: str) -> dict[str, str]:
    """The NAME=value words before wal-g in an archive/restore command (the values here need no shell quoting)."""
    head, sep, _ = command.partition(f" {WALG} ")
    assert sep, command
    return dict(w.split("=", 1) for w in head.split())


def _location(env: dict[str, str]) -> tuple[str, str]:
    """(the storage WAL-G writes to, the key prefix in it), as WAL-G reads its settings: S3 and GCS name the bucket
    in the prefix; Azure names the container there and the account in AZURE_STORAGE_ACCOUNT."""
    (var,) = [v for v in PREFIX_VARS if v in env]
    scheme, _, rest = env[var].partition("://")
    bucket, _, key = rest.partition("/")
    if var == "WALG_AZ_PREFIX":
        return f"azure://{env['AZURE_STORAGE_ACCOUNT']}/{bucket}", key
    return f"{scheme}://{bucket}", key


def _storage_of(region) -> str:
    """A region's backup storage as _location names it (Azure: the backups container of its account)."""
    return region.backup_url


def _conf(files, region) -> dict[str, str]:
    return {k: unquote_pg(v) for k, v in parse_conf(files[f"datastores/{region.name}/postgresql.conf"]).items()}


def _replicated_to(plan, region) -> str | None:
    """The backup storage the terraform target replicates this region's backup bucket into (None: no replication)."""
    if region.cloud == "aws":
        r = tf_aws.args(plan, region)["object_storage"]["replication"]
        return r and "s3://" + r["backup_bucket_arn"].removeprefix("arn:aws:s3:::")
    if region.cloud == "gcp":
        r = tf_gcp.args(plan, region)["object_storage"]["replication"]
        return r and "gs://" + r["backup_bucket"]
    r = tf_azure.args(plan, region)["object_storage"]["replication"]
    # object replication copies the backups container into the destination account's container for this region
    # (Azure keeps a destination container read-only, so never the one the partner writes its own archive to)
    return r and f"azure://{r['backup_account_id'].rsplit('/', 1)[1]}/{r['container']}"


def _standbys(plan, files):
    """(the standby's region, its source region, its Patroni configuration) for every DR standby cluster."""
    for region in plan.regions:
        if not region.postgres_ha or not region.postgres_ha.standbys:
            continue
        group = yaml.safe_load(files[f"ansible/inventories/{region.name}/group_vars/postgres.yml"])
        for sb in group["patroni_standby_clusters"]:
            yield region, plan.region(sb["region"]), sb["config"]


def _overlap(a: str, b: str) -> bool:
    """Whether two key prefixes share objects (WAL-G keeps its objects under `<prefix>/`)."""
    return (a + "/").startswith(b + "/") or (b + "/").startswith(a + "/")


@pytest.fixture(scope="module")
def reference_files(reference):
    return _files(reference)


def test_every_region_archives_under_a_prefix_of_its_own_naming_the_region(any_case):
    files = _files(any_case)
    seen = {}
    for region in any_case.regions:
        conf = _conf(files, region)
        storage, key = _location(_env(conf["archive_command"]))
        assert storage == _storage_of(region), (region.name, storage)
        assert key == f"postgres/{region.name}", (region.name, key)
        # the region's own replicas and point-in-time recovery read exactly what it writes
        assert _location(_env(conf["restore_command"])) == (storage, key), region.name
        if region.cloud == "aws":
            assert _env(conf["archive_command"])["AWS_REGION"] == region.cloud_region
        seen[region.name] = (storage, key)
    assert len(set(seen.values())) == len(seen), seen


def test_a_replicated_archive_lands_under_a_prefix_no_cluster_writes(reference, reference_files):
    """Each bucket holds the region's own archive and the copies replicated into it (keys unchanged); no two of
    them may share a prefix, or the replication and a cluster (or two replications) write the same objects."""
    writers: dict[str, list[tuple[str, str]]] = {}  # storage -> [(key prefix, who writes it)]
    for region in reference.regions:
        storage, key = _location(_env(_conf(reference_files, region)["archive_command"]))
        writers.setdefault(storage, []).append((key, f"{region.name}'s archive_command"))
        dest = _replicated_to(reference, region)
        assert bool(dest) == region.replicates_to_dr_partner, region.name
        if dest:
            partner = _storage_of(reference.region(region.dr_partner))
            if region.cloud == "azure":  # the partner's account, a container of its own (never the partner's)
                assert dest.rsplit("/", 1)[0] == partner.rsplit("/", 1)[0] and dest != partner, (region.name, dest)
            else:
                assert dest == partner, (region.name, dest)
            writers.setdefault(dest, []).append((key, f"{region.name}'s bucket replication"))
    shared = {s: w for s, w in writers.items() if len(w) > 1}
    assert shared, "no bucket receives a replicated archive: the reference no longer exercises this"
    # Azure: a replication's destination container is read-only, so no cluster may write where a copy lands
    for storage, ws in writers.items():
        if storage.startswith("azure://") and any("replication" in who for _, who in ws):
            assert all("replication" in who for _, who in ws), (storage, ws)
    for storage, ws in writers.items():
        for i, (a, who_a) in enumerate(ws):
            for b, who_b in ws[i + 1:]:
                assert not _overlap(a, b), f"{storage}: {who_a} ({a}) and {who_b} ({b}) share objects"


def test_each_standby_restores_from_the_replicated_copy_in_its_own_bucket(reference, reference_files):
    count = 0
    for region, src, config in _standbys(reference, reference_files):
        assert src.replicates_to_dr_partner and src.dr_partner == region.name  # the reference's pairs
        restore = config["bootstrap"]["dcs"]["standby_cluster"]["restore_command"]
        env = _env(restore)
        src_storage, src_key = _location(_env(_conf(reference_files, src)["archive_command"]))
        # the key the source writes, in the bucket the replication copies it into: this region's own
        assert _location(env) == (_replicated_to(reference, src), src_key)
        if region.cloud == "azure":  # this region's own account, the container holding the source's copy
            assert _replicated_to(reference, src).rsplit("/", 1)[0] == _storage_of(region).rsplit("/", 1)[0]
            assert _replicated_to(reference, src) != _storage_of(region)
        else:
            assert _replicated_to(reference, src) == _storage_of(region)
        assert restore.endswith(f" {WALG} wal-fetch %f %p")
        if region.cloud == "aws":
            assert env["AWS_REGION"] == region.cloud_region  # the bucket's region, not the source's
            # S3 encrypts the replicas with this region's own key, which its data hosts may use
            assert tf_aws.kms_alias(reference, src) == f"alias/{tf_prefix(reference, region)}"
        # no restore_command in the standby's own parameters, which would stand beside Patroni's recovery settings
        assert "restore_command" not in config["postgresql"]["parameters"]
        count += 1
    assert count >= 3


def test_without_replication_a_standby_reads_the_sources_bucket(tmp_path):
    """replicate_to_dr_partner off: no copy exists, so the standby keeps restoring from the source's own bucket
    (what the source's restore_command reads), and the region's docs say its hosts need access there."""
    from compiler.pipeline import compile_file
    text = (REPO / "platform.yaml").read_text()
    assert text.count("replicate_to_dr_partner: true") == 1
    (tmp_path / "platform.yaml").write_text(text.replace("replicate_to_dr_partner: true",
                                                         "replicate_to_dr_partner: false"))
    plan = compile_file(str(tmp_path / "platform.yaml")).plan
    files = _files(plan)
    count = 0
    for region, src, config in _standbys(plan, files):
        assert not src.replicates_to_dr_partner and _replicated_to(plan, src) is None
        restore = config["bootstrap"]["dcs"]["standby_cluster"]["restore_command"]
        assert restore == _conf(files, src)["restore_command"], (region.name, src.name)
        count += 1
    assert count >= 3
    from compiler.targets import ansible
    some = next(src for _, src, _ in _standbys(plan, files))
    assert "which Terraform does not grant" in ansible.docs_region(plan, some)


def test_the_data_hosts_may_read_their_whole_backup_bucket():
    """The standby's hosts read the source's copy with the grant every data host has on its region's backup bucket
    (or account): a grant on the whole bucket, never on the region's own prefix alone."""
    mods = REPO / "templates/terraform/modules"
    aws = (mods / "aws/data_hosts/main.tf.j2").read_text()
    assert 'resources = ["${var.backup_bucket_arn}/*"]' in aws and '"s3:GetObject"' in aws
    gcp = (mods / "gcp/data_hosts/main.tf.j2").read_text()
    assert "bucket = var.backup_bucket\n  role   = \"roles/storage.objectAdmin\"" in gcp
    azure = (mods / "azure/data_hosts/main.tf.j2").read_text()
    assert "scope                = var.backup_account_id\n  role_definition_name = \"Storage Blob Data Contributor\"" in azure
    for cloud, arg in (("aws", "backup_bucket_arn = module.object_storage.backup_bucket_arn"),
                       ("gcp", "backup_bucket  = module.object_storage.backup_bucket"),
                       ("azure", "backup_account_id      = module.object_storage.backup_account_id")):
        assert arg in (REPO / f"templates/terraform/regions/{cloud}/main.tf.j2").read_text(), cloud


# ---------------------------------------------------------------- Patroni's precedence, with Patroni's own code

def _need(condition: bool, message: str):
    if not condition:
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


PROBE = r"""
import json, os, sys
from patroni.dcs import Member, RemoteMember
from patroni.postgresql import Postgresql
cfg, role = json.load(open(sys.argv[1])), sys.argv[2]
pg = Postgresql({**cfg["postgresql"], "name": "probe", "scope": cfg["scope"], "retry_timeout": 10})
sc = cfg["bootstrap"]["dcs"]["standby_cluster"]
if role == "standby-leader":  # ha.get_remote_member: the standby leader follows the remote source
    data = {k: v for k, v in sc.items() if k in RemoteMember.allowed_keys()}
    member = RemoteMember("remote", {**data, "no_replication_slot": True,
                                     "conn_kwargs": {"host": sc["host"], "port": sc["port"]}})
else:  # ha._get_node_to_follow: a cascading replica follows the standby leader, given standby_cluster's command
    member = Member(0, "leader", None, {"conn_url": "postgres://127.0.0.1:1/postgres",
                                        "restore_command": sc["restore_command"]})
pg.config.write_recovery_conf(pg.config.build_recovery_params(member))
pg.config.write_postgresql_conf()
"""


def test_patroni_makes_the_standbys_restore_command_win_over_the_sources_file(reference, reference_files):
    """Patroni 3.0 (Debian's; the one installed) writes the recovery settings into its postgresql.conf after its
    `include` of custom_conf, the source's file, on the standby leader and on its cascading replicas: PostgreSQL
    itself (`postgres -C`) then reads the standby's restore_command, not the source's."""
    from tests.targets.test_datastores_support import AS_POSTGRES, PGBIN, private_dir
    patroni = require_tool("patroni")
    require_tool("setpriv")
    _need(os.geteuid() == 0, "needs root (setpriv to the postgres user, who runs initdb and postgres)")
    python = Path(patroni).read_text(errors="replace").splitlines()[0].removeprefix("#!").split()[0]
    _need(subprocess.run([python, "-c", "import patroni.postgresql"], capture_output=True).returncode == 0,
          f"{python} cannot import patroni")
    region, src, config = next(_standbys(reference, reference_files))
    work = private_dir("walarch-")
    try:
        data, conf = work / "data", work / "conf"
        conf.mkdir()
        (conf / "postgresql.conf").write_text(reference_files[f"datastores/{src.name}/postgresql.conf"])
        for f in ("pg_hba.conf", "pg_ident.conf"):
            (conf / f).write_text("")
        cfg = json.loads(json.dumps(config))
        pg = cfg["postgresql"]
        pg.update(data_dir=str(data), custom_conf=str(conf / "postgresql.conf"), pgpass=str(work / "pgpass"))
        pg["parameters"].update(data_directory=str(data), hba_file=str(conf / "pg_hba.conf"),
                                ident_file=str(conf / "pg_ident.conf"), unix_socket_directories=str(work),
                                external_pid_file="")
        (work / "cfg.json").write_text(json.dumps(cfg))
        (work / "probe.py").write_text(PROBE)
        subprocess.run(["chown", "-R", "postgres:postgres", str(work)], check=True)
        run = lambda *cmd: subprocess.run([*AS_POSTGRES, *map(str, cmd)], capture_output=True, text=True,  # noqa: E731
                                          timeout=120, cwd=work)
        res = run(PGBIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust")
        assert res.returncode == 0, res.stderr
        wanted = cfg["bootstrap"]["dcs"]["standby_cluster"]["restore_command"]
        assert wanted != _conf(reference_files, src)["restore_command"]
        assert _location(_env(wanted))[0] == _storage_of(region)
        for role in ("standby-leader", "cascading-replica"):
            res = run(python, work / "probe.py", work / "cfg.json", role)
            assert res.returncode == 0, res.stderr
            res = run(PGBIN / "postgres", "-C", "restore_command", "-D", data)
            assert res.returncode == 0, res.stderr
            assert res.stdout.strip() == wanted, role
    finally:
        shutil.rmtree(work, ignore_errors=True)
