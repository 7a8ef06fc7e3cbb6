"""The backups role's script, --kind postgresql, run against stubs of runuser, psql and wal-g (issue 12, item 4).

The base backup is streamed by `wal-g backup-push` with the storage settings of the server's own archive_command
(the data tier's one source), tagged with its schedule; only that schedule's backups past retention are deleted; a
standby skips; nothing is staged on the root disk and nothing is copied to the partner (bucket replication does).

The stub wal-g keeps its objects in a directory standing for the buckets, under the prefix its settings name, as
WAL-G does: the region's bucket also holds the DR partner's archive, replicated under the partner's prefix with the
same object names and schedule tags, and retention must delete only the region's own objects.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from compiler.ir.names import WALG
from compiler.targets import datastores
from tests.conftest import REPO, require_tool
from tests.targets.test_datastores_support import parse_conf, unquote_pg

SCRIPT = REPO / "templates/ansible/static/roles/backups/files/platformc-backup.sh"
REGION = "us-east-1"  # the reference's; its DR partner us-west-2 replicates its backup bucket into this one

# A stand-in for WAL-G (v3.0.8) on S3: FAKE_S3/<bucket>/<key>. Base backups are sentinels under
# <prefix>/basebackups_005/ (with their metadata: is_permanent, the first and last WAL segment), WAL under
# <prefix>/wal_005/. As WAL-G does (internal/databases/postgres/delete.go, delete_util.go, internal/delete_handler.go):
# `delete garbage` removes the WAL older than the oldest backup that is not permanent, but for each permanent
# backup's own segments, and nothing when every backup is permanent; `delete target` refuses a permanent backup;
# `backup-mark [--impermanent]` sets the mark; `backup-push --permanent` pushes a permanent one.
STUB = r"""#!/usr/bin/env python3
import json, os, sys, pathlib, shutil
log = open(os.environ["STUB_LOG"], "a")
prefix = os.environ["WALG_S3_PREFIX"]
log.write(f"{prefix} {os.environ.get('AWS_REGION', '')} {' '.join(sys.argv[1:])}\n")
root = pathlib.Path(os.environ["FAKE_S3"]) / prefix.removeprefix("s3://")
backups, wal = root / "basebackups_005", root / "wal_005"
def sentinels():
    return [json.loads(p.read_text()) for p in sorted(backups.glob("*_backup_stop_sentinel.json"))]
def sentinel(name):
    return backups / f"{name}_backup_stop_sentinel.json"
verb = sys.argv[1]
if verb == "backup-push":
    backups.mkdir(parents=True, exist_ok=True)
    data = json.loads(sys.argv[sys.argv.index("--add-user-data") + 1])
    sentinel("base_new_push").write_text(json.dumps(
        {"backup_name": "base_new_push", "time": "2999-06-01T00:00:00Z", "user_data": data,
         "is_permanent": "--permanent" in sys.argv, "wal_file_name": "000000010000000000000090",
         "finish_wal": "000000010000000000000090"}))
elif verb == "backup-list":
    print(json.dumps(sentinels()))
elif verb == "backup-mark":
    b = json.loads(sentinel(sys.argv[-1]).read_text())
    b["is_permanent"] = "--impermanent" not in sys.argv
    sentinel(sys.argv[-1]).write_text(json.dumps(b))
elif verb == "delete" and sys.argv[2] == "target":
    if json.loads(sentinel(sys.argv[3]).read_text()).get("is_permanent"):
        sys.exit(f"Unable to delete permanent backup {sys.argv[3]}")
    sentinel(sys.argv[3]).unlink()
elif verb == "delete" and sys.argv[2] == "garbage":
    impermanent = [b for b in sentinels() if not b.get("is_permanent")]
    if not impermanent:
        sys.exit(0)
    first = min(impermanent, key=lambda b: b["time"])["wal_file_name"]
    kept = [(b["wal_file_name"], b["finish_wal"]) for b in sentinels() if b.get("is_permanent")]
    for p in wal.iterdir():
        if p.name < first and not any(lo <= p.name <= hi for lo, hi in kept):
            p.unlink()
"""


def _archive_command(reference) -> str:
    conf = parse_conf(datastores.emit_region(reference, reference.region(REGION))[f"datastores/{REGION}/postgresql.conf"])
    return unquote_pg(conf["archive_command"])


def _put(bucket: Path, key: str, name: str, time: str, schedule: str, first_wal: str, last_wal: str | None = None,
         permanent: bool = False):
    d = bucket / key / "basebackups_005"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}_backup_stop_sentinel.json").write_text(json.dumps(
        {"backup_name": name, "time": time, "user_data": {"platformc_schedule": schedule}, "wal_file_name": first_wal,
         "finish_wal": last_wal or first_wal, "is_permanent": permanent}))


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def world(reference, tmp_path):
    """The stubs, and a bucket holding this region's archive and its partner's replicated one, object for object
    alike: the same base backup names and schedules, the same WAL segment names."""
    archive = _archive_command(reference)
    env_words = archive.partition(f" {WALG} ")[0]
    env = dict(w.split("=", 1) for w in env_words.split())
    own = env["WALG_S3_PREFIX"].removeprefix("s3://")
    bucket_name, _, own_key = own.partition("/")
    partner = reference.region(REGION).dr_partner
    partner_key = f"postgres/{partner}"  # where the partner's replication puts its archive (keys unchanged)
    s3 = tmp_path / "s3"
    bucket = s3 / bucket_name
    for key in (own_key, partner_key):
        _put(bucket, key, "base_old_daily", "2020-01-01T00:00:00Z", "daily", "000000010000000000000010")
        _put(bucket, key, "base_old_weekly", "2020-01-02T00:00:00Z", "weekly", "000000010000000000000020")
        _put(bucket, key, "base_new_daily", "2999-01-01T00:00:00Z", "daily", "000000010000000000000030")
        (bucket / key / "wal_005").mkdir()
        for seg in ("000000010000000000000010", "000000010000000000000020", "000000010000000000000030"):
            (bucket / key / "wal_005" / seg).write_text(key)
    stubs = tmp_path / "bin"
    stubs.mkdir()
    walg = stubs / "wal-g"
    (stubs / "runuser").write_text('#!/bin/sh\n[ "$1" = -u ] && shift 2; [ "$1" = -- ] && shift; exec "$@"\n')
    (stubs / "psql").write_text(f"""#!/bin/sh
for a; do q=$a; done
case "$q" in
  *pg_is_in_recovery*) cat {tmp_path}/in_recovery ;;
  *archive_command*) cat {tmp_path}/archive_command ;;
  *data_directory*) echo /var/lib/postgresql/15/main ;;
esac
""")
    (tmp_path / "archive_command").write_text(archive.replace(WALG, str(walg)) + "\n")
    walg.write_text(STUB)
    for f in ("runuser", "psql", "wal-g"):
        os.chmod(stubs / f, 0o755)
    return {"tmp": tmp_path, "bucket": bucket, "own": own_key, "partner": partner_key, "env": env,
            "run_env": {"PATH": f"{stubs}:{os.environ['PATH']}", "PLATFORMC_WALG": str(walg),
                        "FAKE_S3": str(s3), "STUB_LOG": str(tmp_path / "calls.log")}}


def _run(world, in_recovery="f", *extra, schedule="daily", retention="7"):
    require_tool("python3")
    (world["tmp"] / "in_recovery").write_text(in_recovery + "\n")
    res = subprocess.run(["bash", str(SCRIPT), "--kind", "postgresql", "--schedule", schedule, "--url",
                          "s3://" + world["bucket"].name, "--retention-days", retention, *extra],
                         env={**os.environ, **world["run_env"]}, capture_output=True, text=True, timeout=60)
    log = world["tmp"] / "calls.log"
    return res, (log.read_text().splitlines() if log.exists() else [])


def test_the_base_backup_is_streamed_by_wal_g_with_the_archives_settings(world):
    partner_before = _tree(world["bucket"] / world["partner"])
    res, calls = _run(world, "f", "--copy-to", "s3://sixfb-us-west-2-backups")
    assert res.returncode == 0, res.stdout + res.stderr
    # every WAL-G call runs on the region's own archive, the archive_command's settings, which name the region
    prefix = f"{world['env']['WALG_S3_PREFIX']} {world['env']['AWS_REGION']} "
    assert world["own"] == f"postgres/{REGION}" and world["own"] != world["partner"]
    assert all(c.startswith(prefix) for c in calls), calls
    assert calls[0] == prefix + 'backup-push /var/lib/postgresql/15/main --add-user-data {"platformc_schedule": "daily"}'
    # only this schedule's backup past retention goes; then the WAL no backup needs
    assert prefix + "delete target base_old_daily --confirm" in calls
    assert not any("base_old_weekly" in c or "base_new_daily" in c for c in calls if "delete" in c)
    assert calls[-1] == prefix + "delete garbage --confirm"
    own = _tree(world["bucket"] / world["own"])
    assert "basebackups_005/base_old_daily_backup_stop_sentinel.json" not in own
    assert {"basebackups_005/base_old_weekly_backup_stop_sentinel.json",
            "basebackups_005/base_new_daily_backup_stop_sentinel.json",
            "basebackups_005/base_new_push_backup_stop_sentinel.json"} <= own
    assert "wal_005/000000010000000000000010" not in own and "wal_005/000000010000000000000020" in own
    # the partner's replicated archive, with a daily backup past retention of its own, is not touched
    assert _tree(world["bucket"] / world["partner"]) == partner_before
    assert "us-west-2-backups" not in res.stdout + "".join(calls)  # the partner's copy is bucket replication's


def _wal_world(world):
    """The region's archive as a capacity review found it: a monthly backup taken years ago (expired, already
    permanent), one within its retention taken before the monthly schedule was permanent, and the daily backups of the
    point-in-time-recovery window, with WAL segments from the first monthly one on."""
    import shutil
    own = world["bucket"] / world["own"]
    shutil.rmtree(own)
    _put(world["bucket"], world["own"], "base_monthly_expired", "2015-01-01T04:00:00Z", "monthly",
         "000000010000000000000010", "000000010000000000000011", permanent=True)
    _put(world["bucket"], world["own"], "base_monthly_kept", "2998-01-01T04:00:00Z", "monthly",
         "000000010000000000000020", "000000010000000000000021")
    _put(world["bucket"], world["own"], "base_daily_oldest", "2999-01-01T02:00:00Z", "daily",
         "000000010000000000000040")
    _put(world["bucket"], world["own"], "base_daily_newest", "2999-02-01T02:00:00Z", "daily",
         "000000010000000000000050")
    (own / "wal_005").mkdir()
    for seg in (10, 11, 12, 20, 21, 22, 30, 40, 41, 42, 50, 51):
        (own / "wal_005" / f"0000000100000000000000{seg}").write_text("wal")
    return own


def _sentinel(own: Path, name: str) -> dict:
    return json.loads((own / "basebackups_005" / f"{name}_backup_stop_sentinel.json").read_text())


def test_a_long_kept_schedules_backups_are_permanent_and_hold_back_only_their_own_wal(world):
    """The monthly schedule (kept 7 years) pushed plain backups, and WAL-G's `delete garbage` keeps every WAL segment
    from the oldest backup that is not permanent on: the oldest monthly one held back the whole WAL stream of the
    retention. Pushed `--permanent`, a monthly backup keeps only its own WAL (its start to its finish); the WAL from
    the oldest daily backup on, the point-in-time-recovery window, stays whole."""
    own = _wal_world(world)
    partner_before = _tree(world["bucket"] / world["partner"])
    res, calls = _run(world, "f", "--permanent", schedule="monthly", retention="2555")
    assert res.returncode == 0, res.stdout + res.stderr
    prefix = f"{world['env']['WALG_S3_PREFIX']} {world['env']['AWS_REGION']} "
    assert calls[0] == (prefix + "backup-push /var/lib/postgresql/15/main --permanent --add-user-data "
                        '{"platformc_schedule": "monthly"}')
    assert _sentinel(own, "base_new_push")["is_permanent"]
    # the expired monthly backup: unmarked (WAL-G deletes no permanent backup), then deleted
    unmark = prefix + "backup-mark --impermanent base_monthly_expired"
    delete = prefix + "delete target base_monthly_expired --confirm"
    assert unmark in calls and delete in calls and calls.index(unmark) < calls.index(delete)
    assert not (own / "basebackups_005/base_monthly_expired_backup_stop_sentinel.json").exists()
    # the monthly backup taken before the schedule was permanent is marked so; the daily ones are not touched
    assert prefix + "backup-mark base_monthly_kept" in calls
    assert _sentinel(own, "base_monthly_kept")["is_permanent"]
    assert not any("base_daily" in c for c in calls) and not _sentinel(own, "base_daily_oldest")["is_permanent"]
    assert calls[-1] == prefix + "delete garbage --confirm"
    wal = {p.name[-2:] for p in (own / "wal_005").iterdir()}
    # the kept monthly backup's own WAL, and every segment from the oldest daily backup on; nothing between
    assert wal == {"20", "21", "40", "41", "42", "50", "51"}, wal
    assert _tree(world["bucket"] / world["partner"]) == partner_before


def test_the_point_in_time_recovery_schedule_stays_plain_and_keeps_a_backup_held_by_hand(world):
    """The daily schedule's backups are plain ones (its WAL is the recovery window). One an operator marked permanent
    is kept past retention (WAL-G would refuse to delete it, and the run used to stop there)."""
    own = _wal_world(world)
    _put(world["bucket"], world["own"], "base_daily_held", "2016-01-01T02:00:00Z", "daily",
         "000000010000000000000030", permanent=True)
    _put(world["bucket"], world["own"], "base_daily_expired", "2017-01-01T02:00:00Z", "daily",
         "000000010000000000000030")
    res, calls = _run(world, "f", schedule="daily", retention="35")
    assert res.returncode == 0, res.stdout + res.stderr
    assert " --permanent" not in calls[0] and not _sentinel(own, "base_new_push")["is_permanent"]
    assert any(c.endswith("delete target base_daily_expired --confirm") for c in calls)
    assert not any("base_daily_held" in c or "backup-mark" in c for c in calls), calls
    assert _sentinel(own, "base_daily_held")["is_permanent"] and "base_daily_held" in res.stdout
    wal = {p.name[-2:] for p in (own / "wal_005").iterdir()}
    assert {"40", "41", "42", "50", "51"} <= wal and "12" not in wal


def test_only_a_postgresql_backup_may_be_permanent(world, tmp_path):
    res = subprocess.run(["bash", str(SCRIPT), "--kind", "redis", "--schedule", "hourly", "--url", "s3://b",
                          "--retention-days", "2", "--permanent", "--redis-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "usage" in res.stderr


def test_a_standby_takes_no_backup(world):
    res, calls = _run(world, "t")
    assert res.returncode == 0, res.stdout + res.stderr
    assert calls == [] and "standby" in res.stdout


def test_a_taken_backup_is_recorded_for_node_exporter_and_a_skipped_one_is_not(world):
    """Monitoring alerts on a schedule whose newest success is too old (BackupMissed), reading what the script
    records in node_exporter's textfile directory: the metric and labels the alert reads, in a file the collector
    reads (*.prom, exposition format as promtool checks it), and nothing for a standby's skipped run."""
    from compiler.ir.backups import BACKUP_SUCCESS_METRIC
    textfiles = world["tmp"] / "textfile"
    res, _ = _run(world, "t", "--textfile-dir", str(textfiles))
    assert res.returncode == 0, res.stderr
    assert not textfiles.exists() or not list(textfiles.iterdir()), "a standby's skipped run recorded a success"
    before = int(subprocess.run(["date", "-u", "+%s"], capture_output=True, text=True).stdout)
    res, _ = _run(world, "f", "--textfile-dir", str(textfiles))
    assert res.returncode == 0, res.stderr
    files = list(textfiles.iterdir())
    assert [f.name for f in files] == ["platformc_backup_postgresql_daily.prom"], files
    text = files[0].read_text()
    check = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (sample,) = [line for line in text.splitlines() if not line.startswith("#")]
    assert sample.startswith(BACKUP_SUCCESS_METRIC + '{kind="postgresql",schedule="daily"} ')
    assert int(sample.rsplit(" ", 1)[1]) >= before
    # a DR standby cluster's job (--pg-port) records nothing, even once promoted: its record would outlive the
    # switch-back and read as a missed backup
    files[0].unlink()
    res, _ = _run(world, "f", "--pg-port", "5433", "--textfile-dir", str(textfiles))
    assert res.returncode == 0, res.stderr
    assert not list(textfiles.iterdir())


# ---------------------------------------------------------------- a DR standby cluster's backups (--pg-port), on real servers

def _standby_job(reference):
    """A region hosting a DR standby cluster, the cluster, and its promoted archive_command (the data tier's)."""
    from compiler.ir.wal_archive import promoted_archive_command
    for region in reference.regions:
        for sb in (region.postgres_ha.standbys if region.postgres_ha else ()):
            archive = promoted_archive_command(region, reference.region(sb.of_region))
            if archive:
                return region, sb, archive
    pytest.skip("the reference hosts no DR standby cluster with a WAL archive")


def test_a_standby_clusters_backups_follow_its_port_on_real_servers(reference):
    """Two real PostgreSQL servers on one host, as on a region's data host: the region's own on the default port and
    a DR standby cluster on its own port, whose promoted archive_command names this region's bucket under
    postgres/promoted/<source>. The script given --pg-port reads that server (psql through PGPORT, real libpq), and
    WAL-G runs with the same port and that archive's settings; while the cluster is a standby it takes nothing."""
    from tests.targets.test_datastores_support import AS_POSTGRES, PGBIN, private_dir
    require_tool("setpriv")
    require_tool("runuser")
    require_tool("psql")
    if os.geteuid() != 0:
        pytest.skip("needs root (runuser to the postgres user, who runs initdb and postgres)")
    region, sb, promoted = _standby_job(reference)
    work = private_dir("pgport-")
    servers = []
    try:
        stub = work / "wal-g"
        stub.write_text("#!/bin/sh\necho \"PGPORT=${PGPORT:-} WALG_S3_PREFIX=${WALG_S3_PREFIX:-} $*\" >> "
                        f"{work}/calls.log\n[ \"$1\" = backup-list ] && echo '[]'\nexit 0\n")
        stub.chmod(0o755)
        run = lambda *cmd: subprocess.run([*AS_POSTGRES, *map(str, cmd)], capture_output=True, text=True,  # noqa: E731
                                          timeout=120, cwd=work)
        own_archive = "/bin/true own-server"  # the region's own cluster: another archive_command altogether
        ports = {"own": 5432 + 77, "standby": sb.port + 77}  # off the real ports: this host may run PostgreSQL
        for name, archive in (("own", own_archive), ("standby", promoted.replace(WALG, str(stub)))):
            data = work / name
            res = run(PGBIN / "initdb", "-D", data, "-U", "postgres", "--auth=trust")
            assert res.returncode == 0, res.stderr
            with open(data / "postgresql.conf", "a") as f:
                f.write(f"port = {ports[name]}\nlisten_addresses = ''\nunix_socket_directories = '{work}'\n"
                        f"archive_mode = on\narchive_command = '{archive.replace(chr(39), chr(39) * 2)}'\n")
        subprocess.run(["chown", "-R", "postgres:postgres", str(work)], check=True)

        def start(name):
            res = run(PGBIN / "pg_ctl", "-D", work / name, "-l", work / f"{name}.log", "-w", "start")
            assert res.returncode == 0, res.stderr + (work / f"{name}.log").read_text()
            servers.append(name)

        def backup():
            (work / "calls.log").unlink(missing_ok=True)
            env = {"PATH": os.environ["PATH"], "PGHOST": str(work), "PLATFORMC_WALG": str(stub)}
            res = subprocess.run(["bash", str(SCRIPT), "--kind", "postgresql", "--schedule", "daily", "--url",
                                  region.backup_url, "--retention-days", "7", "--pg-port", str(ports["standby"])],
                                 env=env, capture_output=True, text=True, timeout=120)
            log = work / "calls.log"
            # the promoted server's archiver runs the stub too (wal-push): not the script's calls
            return res, [c for c in (log.read_text().splitlines() if log.exists() else []) if " wal-push " not in c]

        start("own")
        # first as a standby (standby.signal, no primary to follow: it stays in recovery and answers queries)
        (work / "standby" / "standby.signal").write_text("")
        subprocess.run(["chown", "postgres:postgres", str(work / "standby" / "standby.signal")], check=True)
        start("standby")
        res, calls = backup()
        assert res.returncode == 0, res.stdout + res.stderr
        assert calls == [] and "standby" in res.stdout
        # promoted: its leader streams the base backup into the promoted archive, on its own port
        res = run(PGBIN / "pg_ctl", "-D", work / "standby", "-w", "promote")
        assert res.returncode == 0, res.stderr
        res, calls = backup()
        assert res.returncode == 0, res.stdout + res.stderr
        prefix = dict(w.split("=", 1) for w in promoted.partition(f" {WALG} ")[0].split())["WALG_S3_PREFIX"]
        assert prefix.endswith(f"postgres/promoted/{sb.of_region}") and region.backup_url.split("://")[1] in prefix
        assert calls and all(c.startswith(f"PGPORT={ports['standby']} WALG_S3_PREFIX={prefix} ") for c in calls), calls
        assert f"backup-push {work / 'standby'} " in calls[0]
        assert not any("own-server" in c for c in calls)
    finally:
        for name in servers:
            run(PGBIN / "pg_ctl", "-D", work / name, "-m", "immediate", "stop")
        import shutil
        shutil.rmtree(work, ignore_errors=True)


def test_the_script_runs_in_crons_environment():
    """cron starts a job with nothing but HOME, LOGNAME, SHELL and PATH=/usr/bin:/bin (Debian's cron; _PATH_DEFPATH),
    and the script runs PostgreSQL's client as postgres through runuser, which is /usr/sbin/runuser: every scheduled
    base backup stopped there ("runuser: command not found", 127) before it asked the server anything. Run as cron
    runs it, on this machine's real runuser and psql, with no server to answer: psql's own failure is what stops it."""
    import shutil
    runuser = require_tool("runuser")
    require_tool("psql")
    if os.geteuid() != 0:
        pytest.skip("runuser -u needs root")  # the suite runs as root in CI
    assert Path(runuser).parent.name == "sbin" and not shutil.which("runuser", path="/usr/bin:/bin")
    res = subprocess.run(["/usr/bin/env", "-i", "HOME=/root", "LOGNAME=root", "SHELL=/bin/sh", "PATH=/usr/bin:/bin",
                          "/bin/bash", str(SCRIPT), "--kind", "postgresql", "--schedule", "daily", "--url",
                          "s3://bucket", "--retention-days", "7", "--pg-port", "1"],
                         capture_output=True, text=True, timeout=60)
    assert "command not found" not in res.stderr, res.stderr
    assert res.returncode != 127, res.stderr
    assert "psql" in res.stderr or "connection" in res.stderr, res.stderr  # psql ran, as postgres, and found no server
