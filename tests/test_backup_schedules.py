"""How late a scheduled backup may be before monitoring calls it missed (compiler/ir/backups.py), from its cron."""

from compiler.ir.backups import interval_seconds, overdue_after_seconds

HOUR, DAY = 3600, 86400


def test_the_interval_is_the_longest_gap_the_fields_allow():
    assert interval_seconds("0 * * * *") == HOUR
    assert interval_seconds("0 2 * * *") == DAY
    assert interval_seconds("0 3 * * SUN") == 7 * DAY
    assert interval_seconds("0 4 1 * *") == 31 * DAY
    # a quarterly schedule: a 31-day threshold alerted every quarter
    assert interval_seconds("0 4 1 */3 *") == 366 * DAY


def test_a_schedule_is_overdue_a_quarter_interval_late_and_never_sooner_than_an_hour():
    assert overdue_after_seconds("0 * * * *") == 2 * HOUR
    assert overdue_after_seconds("0 2 * * *") == DAY + DAY // 4
    assert all(overdue_after_seconds(c) > interval_seconds(c) for c in ("0 * * * *", "0 4 1 * *", "0 4 1 */3 *"))


def test_only_the_point_in_time_recovery_schedule_pushes_plain_postgresql_backups():
    """WAL-G's `delete garbage` keeps all WAL from the oldest backup that is not permanent on: the long-kept
    PostgreSQL schedules are permanent, the daily one (whose WAL is the recovery window) is not; Redis has none."""
    from compiler.ir.backups import BACKUP_SCHEDULES, POSTGRES_PITR_SCHEDULE, permanent_backup
    assert POSTGRES_PITR_SCHEDULE in BACKUP_SCHEDULES["postgresql"]
    assert [n for n in BACKUP_SCHEDULES["postgresql"] if permanent_backup("postgresql", n)] == ["weekly", "monthly"]
    assert not any(permanent_backup("redis", n) for n in BACKUP_SCHEDULES["redis"])


def test_the_backup_buckets_old_versions_go_after_the_shortest_retention_within_the_specs_age():
    """Redis' hourly snapshots (kept 2 days) stayed ~92 days under the data bucket's 90-day noncurrent age."""
    from compiler.ir.backups import backup_noncurrent_expire_days
    from compiler.model.infra import BackupSchedule
    from compiler.pipeline import compile_file
    from tests.conftest import REPO
    settings = compile_file(str(REPO / "platform.yaml")).plan.regions[0].settings
    assert backup_noncurrent_expire_days(settings) == 2  # hourly's retention, not the data bucket's 90 days
    lifecycle = settings.datastores.object_storage.lifecycle
    short = settings.model_copy(update={"datastores": settings.datastores.model_copy(update={
        "object_storage": settings.datastores.object_storage.model_copy(update={
            "lifecycle": lifecycle.model_copy(update={"noncurrent_expire_after_days": 1})})})})
    assert backup_noncurrent_expire_days(short) == 1  # never longer than the spec's own age
    long = settings.model_copy(update={"backups": settings.backups.model_copy(update={
        "hourly": BackupSchedule(cron="0 * * * *", retention_days=400)})})
    assert backup_noncurrent_expire_days(long) == 35  # the daily schedule's, now the shortest
