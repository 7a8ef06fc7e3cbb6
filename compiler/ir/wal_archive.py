"""The WAL archive: where each region's PostgreSQL archives WAL and base backups with WAL-G, and where the standby
cluster its DR partner runs for it restores WAL from. The data tier's postgresql.conf (archive_command,
restore_command), the backups role's script (which takes WAL-G's settings from that archive_command) and the
Patroni configuration of the standby clusters (the ansible target) all build their WAL-G settings here.

- A region archives to `<its backup bucket>/postgres/<region name>`, never to `<bucket>/postgres`: the cloud's
  bucket replication (RegionPlan.replicates_to_dr_partner) copies every key of a region's backup bucket, unchanged,
  into its DR partner's backup bucket, where the partner archives too, and the partner usually replicates back. Two
  clusters name their WAL segments alike (timeline 1, segment 1, ...), so under one shared prefix each bucket would
  mix both regions' WAL and base backups: segments overwritten by the other cluster's, a restore or a standby
  fetching WAL "from different database system", `wal-g backup-list` listing both, and each region's retention
  (`wal-g delete`) deleting the other region's objects, deletions the replication carries over. Under the region's
  own prefix the partner's bucket holds the source's copy under `postgres/<source>`, written by the replication
  only, beside its own `postgres/<partner>`; the source's retention deletes only under the source's prefix.
- A standby cluster restores the source's WAL from that replicated copy in its own region's bucket, which its hosts'
  cloud identity may read (the data hosts are granted their region's backup bucket and key, nothing else). Where
  the source's backups are not replicated to it (the spec's object_storage.replicate_to_dr_partner is off; a
  standby's source is always on its cloud, rule R051) it reads the source's own bucket, as before and as the
  source's restore_command does: its hosts then need a grant there that the terraform target does not make, which
  the region's docs say.
"""

from __future__ import annotations

import shlex

from compiler.ir.names import WALG

# How long each cloud's bucket replication (RegionPlan.replicates_to_dr_partner) may take to copy an object into the
# DR partner's bucket, as the providers state it: what a standby replaying the replicated archive may trail by
# beyond archive_timeout while its stream is down.
REPLICATION_DELAY = {
    "aws": "S3 Replication Time Control: 99.99 % of objects within 15 minutes, most within seconds",
    "gcp": "Storage Transfer Service's event-driven replication: asynchronous, no stated replication time",
    "azure": "object replication: asynchronous, no stated replication time",
}

ARCHIVE_DIR = "postgres"  # under the backup bucket; each region's archive is ARCHIVE_DIR/<region name> below it


def replica_container(source: str) -> str:
    """Azure: the container of a region's storage accounts (data and backups alike) that receives region `source`'s
    replicated copy. Azure object replication makes its destination container read-only (a write there fails with
    409 Conflict), so a region's own container can never be one: each source's copy lands in a container of its
    own. Short, because the standby's restore_command names it in a line of the inventory (ansible-lint: 160)."""
    return f"dr-{source}"


def promoted_prefix(source: str) -> str:
    """The archive, in the DR partner's own bucket, of `source`'s standby cluster once promoted: beside the partner's
    own `postgres/<partner>` and apart from the replicated copy `postgres/<source>`, which on Azure sits in a
    read-only container and elsewhere keeps receiving the lost region's objects when it returns. A slash no region
    name has keeps it from ever being a region's own prefix."""
    return f"promoted/{source}"


def archive_url(bucket_of, cluster: str, replica: bool | None = None) -> str:
    """The WAL archive of region `cluster`'s PostgreSQL in the backup bucket of region `bucket_of` (a RegionPlan):
    the region's own bucket, or its DR partner's holding the replicated copy (on Azure in that copy's own
    container, replica_container). `replica`: whether the archive is that copy (default: another region's cluster).
    The one place the prefix is made."""
    base = bucket_of.backup_url
    if replica is None:
        replica = cluster != bucket_of.name
    if bucket_of.cloud == "azure" and replica:
        account = base.rpartition("/")[0]
        base = f"{account}/{replica_container(cluster)}"
    return f"{base}/{ARCHIVE_DIR}/{cluster}"


def wal_g_env(bucket_of, cluster: str | None = None, replica: bool | None = None) -> list[tuple[str, str]]:
    """WAL-G's storage settings for `cluster`'s archive (default: the bucket region's own) in the backup bucket of
    `bucket_of`; credentials are the host's cloud identity."""
    url = archive_url(bucket_of, cluster or bucket_of.name, replica)
    if bucket_of.cloud == "aws":
        return [("WALG_S3_PREFIX", url), ("AWS_REGION", bucket_of.cloud_region)]
    if bucket_of.cloud == "gcp":
        return [("WALG_GS_PREFIX", url)]
    # azure://<account>/<container>/<path>: WAL-G takes the container and path, and the account on its own
    account, _, path = url.removeprefix("azure://").partition("/")
    return [("WALG_AZ_PREFIX", f"azure://{path}"), ("AZURE_STORAGE_ACCOUNT", account)]


def wal_g_command(bucket_of, verb: str, *placeholders: str, cluster: str | None = None,
                  replica: bool | None = None) -> str:
    """A shell command for archive_command/restore_command (postgresql.conf's, or a standby cluster's in Patroni):
    WAL-G on `cluster`'s archive in `bucket_of`'s bucket. Spliced values are shell-quoted and their `%` doubled, so
    PostgreSQL substitutes only the placeholders written here (%p, %f)."""
    env = " ".join(f"{k}={shlex.quote(v).replace('%', '%%')}" for k, v in wal_g_env(bucket_of, cluster, replica))
    return f"{env} {WALG} {verb} {' '.join(placeholders)}"


def standby_archive_region(standby_region, source):
    """The region whose backup bucket a standby cluster of `source` running in `standby_region` restores WAL from:
    its own, where the source's backups are replicated into it (the copy lands there under the source's prefix);
    else the source's (today's only other place the archive is)."""
    if source.replicates_to_dr_partner and source.dr_partner == standby_region.name:
        return standby_region
    return source


def promoted_archive_url(standby_region, source) -> str | None:
    """Where `source`'s standby cluster in `standby_region` archives once promoted (promoted_archive_command); None:
    the source archives no WAL."""
    if not source.settings.datastores.postgres.wal_archive:
        return None
    return archive_url(standby_region, promoted_prefix(source.name), replica=False)


def promoted_archive_command(standby_region, source) -> str | None:
    """The archive_command of `source`'s standby cluster in `standby_region`, which it runs only once promoted (a
    standby archives nothing with archive_mode on): WAL-G into the standby region's own bucket, which its hosts may
    write, under promoted_prefix. Without it the promoted cluster kept the source's postgresql.conf's, pushing to the
    lost region's bucket, which its hosts may not write (and may not reach): every segment would fail to archive and
    pg_wal would grow until the volume filled. None: the source archives no WAL."""
    if not source.settings.datastores.postgres.wal_archive:
        return None
    return wal_g_command(standby_region, "wal-push", "%p", cluster=promoted_prefix(source.name), replica=False)


def standby_restore_command(standby_region, source) -> str | None:
    """The restore_command of `source`'s standby cluster in `standby_region` (None: the source archives no WAL)."""
    if not source.settings.datastores.postgres.wal_archive:
        return None
    return wal_g_command(standby_archive_region(standby_region, source), "wal-fetch", "%f", "%p",
                         cluster=source.name)
