"""Scheduled backups of the self-managed data hosts: which of the spec's schedules each kind of host runs, and the
record of each success that monitoring reads.

The ansible target schedules the jobs (the backups role) and has the script record a success; the helm target's
node_exporter scrape carries the record; the monitoring target alerts when a schedule's newest record is older than
the schedule allows. All three read these facts from here.
"""

from __future__ import annotations

from compiler.ir import RegionPlan

# kind of backup -> the spec's schedules (settings.backups.<name>) it runs, and the host group it runs on
BACKUP_SCHEDULES = {"postgresql": ("daily", "weekly", "monthly"), "redis": ("hourly",)}
BACKUP_HOST_GROUPS = {"postgresql": "postgres_primary", "redis": "redis_cluster"}
# PostgreSQL's point-in-time-recovery schedule: its base backups and every WAL segment from the oldest of them on are
# kept, so the database can be restored to any moment of its retention (the spec's "full database backup plus
# incremental logs"). Every other PostgreSQL schedule (weekly, monthly: kept months and years) is a standalone copy,
# pushed `wal-g backup-push --permanent`: WAL-G's `delete garbage` keeps WAL from the oldest backup that is NOT
# permanent on, plus only each permanent backup's own WAL (its start to its finish LSN, GetPermanentBackupsAndWals in
# WAL-G's internal/databases/postgres/delete_util.go). Pushed as plain backups, the oldest monthly one held back the
# whole WAL stream of the monthly retention (7 years by default). The script unmarks an expired permanent backup
# (`backup-mark --impermanent`: WAL-G refuses to delete a permanent one) before it deletes it.
POSTGRES_PITR_SCHEDULE = "daily"


def permanent_backup(kind: str, schedule: str) -> bool:
    """Whether the backups of `schedule` (a kind's) are WAL-G permanent backups: PostgreSQL's, but for the
    point-in-time-recovery schedule's."""
    return kind == "postgresql" and schedule != POSTGRES_PITR_SCHEDULE


# Kinds where every host serving as a primary backs up its own data (each Redis primary its shard), so each primary
# must have a recent success; of the others one host (the PostgreSQL leader) backs up the cluster's.
BACKUP_EACH_PRIMARY = frozenset({"redis"})

# The script writes, after each backup it completes, node_exporter's textfile format into this directory (Debian's
# prometheus-node-exporter reads it; the node_exporter role names it explicitly):
#   platformc_backup_last_success_timestamp_seconds{kind="<kind>",schedule="<schedule>"} <unix time>
NODE_EXPORTER_TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"
BACKUP_SUCCESS_METRIC = "platformc_backup_last_success_timestamp_seconds"
# The backups role writes, once per schedule and host (never again: the first installation is what counts), when the
# schedule was first installed there, so that a schedule that never succeeded is judged from its own start:
#   platformc_backup_scheduled_timestamp_seconds{kind="<kind>",schedule="<schedule>"} <unix time>
BACKUP_SCHEDULED_METRIC = "platformc_backup_scheduled_timestamp_seconds"

_HOUR, _DAY = 3600, 86400


def backup_kinds(region: RegionPlan) -> tuple[str, ...]:
    """The kinds of backup the region's own hosts take."""
    return tuple(kind for kind, group in BACKUP_HOST_GROUPS.items() if region.hosts_in(group))


def interval_seconds(cron: str) -> int:
    """The longest gap between two runs of a five-field cron schedule, as far as the fields tell: a month (a year), a
    day of the month (31 days), else a weekday (7 days), else an hour (a day), else an hour. Coarse on purpose: an
    alert threshold, not a scheduler."""
    minute, hour, day, month, weekday = cron.split()
    if month != "*":
        return 366 * _DAY  # a quarterly or yearly schedule: within a year is all the fields promise
    if day != "*":
        return 31 * _DAY
    if weekday != "*":
        return 7 * _DAY
    if hour != "*":
        return _DAY
    return _HOUR


def overdue_after_seconds(cron: str) -> int:
    """How long after its last success a schedule counts as missed: one interval, plus a quarter of it (at least an
    hour) for a run that takes long or starts late."""
    interval = interval_seconds(cron)
    return interval + max(_HOUR, interval // 4)


def backup_noncurrent_expire_days(settings) -> int:
    """Days the backup bucket keeps a noncurrent object version (an overwritten or deleted backup object, deleted WAL)
    before its lifecycle deletes it, on every cloud: the shortest retention of the backup schedules, never longer
    than the spec's object_storage.lifecycle.noncurrent_expire_after_days (which the data bucket keeps), at least a
    day. The schedules prune by deleting, so under the data bucket's setting (90 days by default) every pruned copy
    lingered that long past its retention: Redis' hourly snapshots, kept 2 days, stayed ~92. A shorter window still
    undoes an operator's mistaken deletion for as long as the most frequent schedule keeps its own copies (older
    than that, its retention would have deleted them anyway), and far outlasts replication to the DR partner (S3 RTC:
    15 minutes; the partner's replica versions expire under its own backup bucket's rule)."""
    b = settings.backups
    shortest = min(getattr(b, name).retention_days for names in BACKUP_SCHEDULES.values() for name in names)
    return max(1, min(shortest, settings.datastores.object_storage.lifecycle.noncurrent_expire_after_days))
