"""The backups role's script, --kind postgresql, run against stubs of runuser, psql and wal-g (issue 12, item 4).

The base backup is streamed by `wal-g backup-push` with the storage settings of the server's own archive_command
(the data tier's one source), tagged with its schedule; only that schedule's backups past retention are deleted; a
standby skips; nothing is staged on the root disk and nothing is copied to the partner (bucket replication does).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.conftest import REPO, require_tool

SCRIPT = REPO / "templates/ansible/static/roles/backups/files/platformc-backup.sh"
ARCHIVE = "WALG_S3_PREFIX=s3://acme-us-east-1-backups/postgres AWS_REGION=us-east-1 {walg} wal-push %p"


def _stubs(d: Path, in_recovery: str) -> dict:
    walg = d / "wal-g"
    log = d / "calls.log"
    backups = [
        {"backup_name": "base_old_daily", "time": "2020-01-01T00:00:00Z", "user_data": {"platformc_schedule": "daily"}},
        {"backup_name": "base_old_weekly", "time": "2020-01-01T00:00:00Z", "user_data": {"platformc_schedule": "weekly"}},
        {"backup_name": "base_new_daily", "time": "2999-01-01T00:00:00Z", "user_data": {"platformc_schedule": "daily"}},
    ]
    (d / "runuser").write_text('#!/bin/sh\n[ "$1" = -u ] && shift 2; [ "$1" = -- ] && shift; exec "$@"\n')
    (d / "psql").write_text(f"""#!/bin/sh
for a; do q=$a; done
case "$q" in
  *pg_is_in_recovery*) echo {in_recovery} ;;
  *archive_command*) echo '{ARCHIVE.format(walg=walg)}' ;;
  *data_directory*) echo /var/lib/postgresql/15/main ;;
esac
""")
    walg.write_text(f"""#!/bin/sh
echo "$WALG_S3_PREFIX $AWS_REGION $*" >> {log}
[ "$1" = backup-list ] && echo '{json.dumps(backups)}'
exit 0
""")
    for f in ("runuser", "psql", "wal-g"):
        os.chmod(d / f, 0o755)
    return {"PATH": f"{d}:{os.environ['PATH']}", "PLATFORMC_WALG": str(walg), "log": log}


def _run(tmp_path, in_recovery="f", *extra):
    require_tool("python3")
    env = _stubs(tmp_path, in_recovery)
    log = env.pop("log")
    res = subprocess.run(["bash", str(SCRIPT), "--kind", "postgresql", "--schedule", "daily", "--url",
                          "s3://acme-us-east-1-backups", "--retention-days", "7", *extra],
                         env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    return res, (log.read_text().splitlines() if log.exists() else [])


def test_the_base_backup_is_streamed_by_wal_g_with_the_archives_settings(tmp_path):
    res, calls = _run(tmp_path, "f", "--copy-to", "s3://acme-us-west-2-backups")
    assert res.returncode == 0, res.stdout + res.stderr
    prefix = "s3://acme-us-east-1-backups/postgres us-east-1 "
    assert calls[0] == prefix + 'backup-push /var/lib/postgresql/15/main --add-user-data {"platformc_schedule": "daily"}'
    # only this schedule's backup past retention goes; then the WAL no backup needs
    assert prefix + "delete target base_old_daily --confirm" in calls
    assert not any("base_old_weekly" in c or "base_new_daily" in c for c in calls if "delete" in c)
    assert calls[-1] == prefix + "delete garbage --confirm"
    assert "acme-us-west-2" not in res.stdout + "".join(calls)  # the partner's copy is bucket replication's


def test_a_standby_takes_no_backup(tmp_path):
    res, calls = _run(tmp_path, "t")
    assert res.returncode == 0, res.stdout + res.stderr
    assert calls == [] and "standby" in res.stdout
