#!/bin/bash
# platformc-backup: take one scheduled backup, upload it to object storage, prune old copies.
#
#   --kind postgresql   a base backup streamed by `wal-g backup-push` to the WAL archive (no local staging),
#                       tagged with its schedule; the schedule's backups past retention are deleted with
#                       `wal-g delete target`, then WAL no backup needs (`delete garbage`: WAL-G keeps every segment
#                       from the oldest backup that is not permanent on, and of a permanent one only the segments
#                       from its start to its finish). --permanent (the long-kept schedules, weekly and monthly):
#                       the backup is pushed permanent, so it holds back only its own WAL, not the whole stream of
#                       its retention, and is restorable to the moment it finished; at its retention it is unmarked
#                       (`backup-mark --impermanent`: WAL-G deletes no permanent backup), then deleted. The schedule's
#                       backups taken before it was permanent are marked so. Without --permanent (daily, the
#                       point-in-time-recovery schedule) a backup marked permanent by hand is kept. WAL-G's storage
#                       settings are the server's own archive_command's (the data tier's file), whose prefix,
#                       URL/postgres/<region>, is this region's alone: the bucket also holds the DR partner's
#                       archive, replicated under postgres/<partner>, which these deletions never reach. A standby
#                       (any Patroni replica) skips it, so after a failover the new leader takes over. No
#                       --copy-to: the partner's copy is the bucket's replication.
#   --kind redis        this node's latest RDB snapshot; a node that is a replica skips it
#
# --pg-port N: the PostgreSQL server on port N instead of the default one: a DR standby cluster of another region
# on this host (its own port). While it is a standby it skips like any replica; once promoted, its leader takes
# the backups, into the archive its archive_command names (this region's bucket, postgres/promoted/<source>).
#
# --url (and --copy-to, the DR partner's bucket) is s3://BUCKET, gs://BUCKET or
# azure://ACCOUNT/CONTAINER. Copies go to URL/KIND/SCHEDULE[/HOST]/<UTC timestamp>/ and copies older
# than --retention-days there are deleted after a successful upload. Credentials come from the
# host's cloud identity (instance profile, service account, managed identity).
set -euo pipefail
# cron starts a job with PATH=/usr/bin:/bin, and runuser is /usr/sbin's: the sbin directories come after the caller's
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

usage() {
  echo "usage: $0 --kind postgresql|redis --schedule NAME --url URL --retention-days N [--copy-to URL] [--redis-dir DIR] [--pg-port N] [--textfile-dir DIR] [--permanent]" >&2
  exit 2
}

kind='' schedule='' url='' retention='' copy_to='' redis_dir=/var/lib/redis pg_port='' textfile_dir='' permanent=''
while [ $# -gt 0 ]; do
  case "$1" in
    --kind) kind=${2-}; shift 2 ;;
    --schedule) schedule=${2-}; shift 2 ;;
    --url) url=${2-}; shift 2 ;;
    --retention-days) retention=${2-}; shift 2 ;;
    --copy-to) copy_to=${2-}; shift 2 ;;
    --redis-dir) redis_dir=${2-}; shift 2 ;;
    --pg-port) pg_port=${2-}; shift 2 ;;
    --textfile-dir) textfile_dir=${2-}; shift 2 ;;
    --permanent) permanent=1; shift ;;
    *) usage ;;
  esac
done
[ -n "$kind" ] && [ -n "$schedule" ] && [ -n "$url" ] || usage
[ -z "$permanent" ] || [ "$kind" = postgresql ] || usage
case "$retention" in '' | *[!0-9]*) usage ;; esac
case "$pg_port" in *[!0-9]*) usage ;; esac
case "$schedule" in *[!a-z0-9_-]*) usage ;; esac  # a label value and a file name below
# psql and WAL-G (libpq) both read the port from PGPORT; empty: the default server
pg_env=()
[ -z "$pg_port" ] || pg_env=("PGPORT=$pg_port")

stamp=$(date -u +%Y%m%dT%H%M%SZ)
cutoff=$(date -u -d "-${retention} days" +%Y%m%dT%H%M%SZ)
work=$(mktemp -d /var/tmp/platformc-backup.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/out"
skip='' stored=''
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $kind/$schedule: $*"; }

WALG=${PLATFORMC_WALG:-/usr/local/bin/wal-g}  # the tests point it at a stub

pg() { runuser -u postgres -- env "${pg_env[@]}" psql -XtAc "$1"; }
# WAL-G as postgres, with the server's port and the archive's settings (walg_env, from its archive_command)
walg_env=()
walg() { runuser -u postgres -- env "${pg_env[@]}" "${walg_env[@]}" "$WALG" "$@"; }

take_postgresql() {
  if [ "$(pg 'select pg_is_in_recovery()')" = t ]; then
    skip='this server is a standby; the leader takes the backup'
    return 0
  fi
  local archive datadir todo action name held push=()
  archive=$(pg 'show archive_command')
  case "$archive" in
    *" $WALG wal-push "*) ;;
    *) echo "archive_command does not run $WALG wal-push: $archive" >&2; exit 2 ;;
  esac
  # the NAME=value words before wal-g, shell-quoted by the data tier: WAL-G's bucket, prefix and region
  eval "walg_env=(${archive%% "$WALG" wal-push *})"
  datadir=$(pg 'show data_directory')
  [ -z "$permanent" ] || push=(--permanent)
  walg backup-push "$datadir" "${push[@]}" --add-user-data "{\"platformc_schedule\": \"$schedule\"}"
  # this schedule's backups, each with what to do: delete (past retention; one marked permanent by hand on a schedule
  # that is not permanent is kept) or mark (a permanent schedule's backup taken before it was one). Listed first, so
  # that a failing backup-list stops the run (pipefail) instead of pruning nothing unnoticed.
  todo=$(walg backup-list --detail --json | python3 -c '
import json, sys
schedule, cutoff, permanent = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
for b in json.load(sys.stdin) or []:
    data = b.get("user_data") or {}
    if not (isinstance(data, dict) and data.get("platformc_schedule") == schedule):
        continue
    held = "permanent" if b.get("is_permanent") else "-"
    if b.get("time", "") < cutoff:
        print("delete", b["backup_name"], held)
    elif permanent and held != "permanent":
        print("mark", b["backup_name"], held)' "$schedule" "$(date -u -d "-${retention} days" +%Y-%m-%dT%H:%M:%SZ)" "${permanent:-0}")
  while read -r action name held; do
    case "$action" in
      delete)
        if [ "$held" = permanent ] && [ -z "$permanent" ]; then
          log "keeping $name (older than $retention days, but marked permanent by hand)"
          continue
        fi
        log "removing $name (older than $retention days)"
        # WAL-G deletes no permanent backup (delete target fails): unmark it first
        [ "$held" != permanent ] || walg backup-mark --impermanent "$name"
        walg delete target "$name" --confirm ;;
      mark)
        log "marking $name permanent (its WAL past its own is no longer kept for it)"
        walg backup-mark "$name" ;;
    esac
  done <<<"$todo"
  walg delete garbage --confirm
  stored="streamed to the WAL archive by wal-g backup-push (the partner's copy: bucket replication)"
}

take_redis() {
  local nodes
  nodes=$(find "$redis_dir" -maxdepth 1 -name 'nodes*.conf' -print -quit)
  if [ -n "$nodes" ] && ! grep -q 'myself,master' "$nodes"; then
    skip='this node is a replica; its primary takes the snapshot'
    return 0
  fi
  # Redis writes the snapshot to a temporary file and renames it, so this copy is consistent.
  cp "$redis_dir/dump.rdb" "$work/out/$(hostname -s).rdb"
}

# Azure CLI storage commands with --auth-mode login take the token of the logged-in account: the VM's
# system-assigned managed identity, which holds a role on the backup account alone (hence no subscription)
az_logged_in=''
azure_login() {
  [ -n "$az_logged_in" ] && return 0
  az login --identity --allow-no-subscriptions --only-show-errors >/dev/null
  az_logged_in=1
}

# azure://ACCOUNT/CONTAINER/PATH -> the three parts (logged in first)
azure_parts() {
  azure_login
  local rest=${1#azure://}
  az_account=${rest%%/*}
  rest=${rest#"$az_account"/}
  az_container=${rest%%/*}
  az_path=${rest#"$az_container"}
  az_path=${az_path#/}
}

# --textfile-dir DIR: after a backup is taken and stored, record it for node_exporter's textfile collector, which
# monitoring reads to alert when a schedule's newest success is older than the schedule allows (a skipped run, a
# standby's, records nothing). Written whole, then renamed into place, so the collector never reads half a file.
record_success() {
  # not a DR standby cluster's (--pg-port): it backs up only while promoted, and its record would outlive the
  # switch-back and stand for a missed backup from then on
  [ -n "$textfile_dir" ] && [ -z "$pg_port" ] || return 0
  local name="platformc_backup_${kind}_${schedule}" tmp
  mkdir -p "$textfile_dir"
  tmp=$(mktemp "$textfile_dir/.$name.XXXXXX")
  {
    echo "# HELP platformc_backup_last_success_timestamp_seconds When this host last completed the backup (platformc-backup)."
    echo "# TYPE platformc_backup_last_success_timestamp_seconds gauge"
    echo "platformc_backup_last_success_timestamp_seconds{kind=\"$kind\",schedule=\"$schedule\"} $(date -u +%s)"
  } >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$textfile_dir/$name.prom"
}

upload() {  # upload DIR DEST: the files of DIR under DEST/
  case "$2" in
    s3://*) aws s3 sync --only-show-errors "$1" "$2/" ;;
    gs://*) gcloud storage rsync --recursive "$1" "$2/" ;;
    azure://*)
      azure_parts "$2"
      az storage blob upload-batch --auth-mode login --only-show-errors --account-name "$az_account" \
        --destination "$az_container" --destination-path "$az_path" --source "$1" >/dev/null ;;
    *) echo "unsupported destination $2" >&2; exit 2 ;;
  esac
}

list_copies() {  # list_copies BASE: the timestamps of the copies under BASE/
  case "$1" in
    s3://*) aws s3 ls "$1/" | awk '$1 == "PRE" { sub("/$", "", $2); print $2 }' ;;
    gs://*) gcloud storage ls "$1/" | sed -n 's#.*/\([^/]*\)/$#\1#p' ;;
    azure://*)
      azure_parts "$1"
      az storage blob list --auth-mode login --only-show-errors --account-name "$az_account" \
        --container-name "$az_container" --prefix "$az_path/" --query '[].name' -o tsv |
        sed -n "s#^$az_path/\([^/]*\)/.*#\1#p" | sort -u ;;
  esac | grep -E '^[0-9]{8}T[0-9]{6}Z$' || true
}

remove_copy() {  # remove_copy BASE STAMP
  case "$1" in
    s3://*) aws s3 rm --recursive --only-show-errors "$1/$2/" ;;
    gs://*) gcloud storage rm --recursive "$1/$2/" ;;
    azure://*)
      azure_parts "$1"
      az storage blob delete-batch --auth-mode login --only-show-errors --account-name "$az_account" \
        --source "$az_container" --pattern "$az_path/$2/*" ;;
  esac
}

store() {  # store URL: upload this copy, then prune the copies past retention
  local base=${1%/}/$kind/$schedule old
  [ "$kind" = redis ] && base=$base/$(hostname -s)
  upload "$work/out" "$base/$stamp"
  for old in $(list_copies "$base"); do
    if [[ "$old" < "$cutoff" ]]; then
      log "removing $base/$old (older than $retention days)"
      remove_copy "$base" "$old"
    fi
  done
  log "stored $base/$stamp"
}

case "$kind" in
  postgresql) take_postgresql ;;
  redis) take_redis ;;
  *) usage ;;
esac
if [ -n "$skip" ]; then
  log "$skip"
  exit 0
fi
if [ -n "$stored" ]; then
  log "$stored"
else
  store "$url"
  if [ -n "$copy_to" ]; then
    store "$copy_to"
  fi
fi
record_success
