#!/bin/bash
# platformc-backup: take one scheduled backup, upload it to object storage, prune old copies.
#
#   --kind postgresql   a compressed base backup (pg_basebackup, tar format, WAL included);
#                       a standby skips it, so after a failover the new primary takes over
#   --kind redis        this node's latest RDB snapshot; a node that is a replica skips it
#
# --url (and --copy-to, the DR partner's bucket) is s3://BUCKET, gs://BUCKET or
# azure://ACCOUNT/CONTAINER. Copies go to URL/KIND/SCHEDULE[/HOST]/<UTC timestamp>/ and copies older
# than --retention-days there are deleted after a successful upload. Credentials come from the
# host's cloud identity (instance profile, service account, managed identity).
set -euo pipefail

usage() {
  echo "usage: $0 --kind postgresql|redis --schedule NAME --url URL --retention-days N [--copy-to URL] [--redis-dir DIR]" >&2
  exit 2
}

kind='' schedule='' url='' retention='' copy_to='' redis_dir=/var/lib/redis
while [ $# -gt 0 ]; do
  case "$1" in
    --kind) kind=${2-}; shift 2 ;;
    --schedule) schedule=${2-}; shift 2 ;;
    --url) url=${2-}; shift 2 ;;
    --retention-days) retention=${2-}; shift 2 ;;
    --copy-to) copy_to=${2-}; shift 2 ;;
    --redis-dir) redis_dir=${2-}; shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$kind" ] && [ -n "$schedule" ] && [ -n "$url" ] || usage
case "$retention" in '' | *[!0-9]*) usage ;; esac

stamp=$(date -u +%Y%m%dT%H%M%SZ)
cutoff=$(date -u -d "-${retention} days" +%Y%m%dT%H%M%SZ)
work=$(mktemp -d /var/tmp/platformc-backup.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir "$work/out"
skip=''
log() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $kind/$schedule: $*"; }

take_postgresql() {
  if [ "$(runuser -u postgres -- psql -XtAc 'select pg_is_in_recovery()')" = t ]; then
    skip='this server is a standby; the primary takes the backup'
    return 0
  fi
  chown postgres "$work/out"
  runuser -u postgres -- pg_basebackup -D "$work/out" -Ft -z -X fetch --checkpoint=fast --no-password
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

# azure://ACCOUNT/CONTAINER/PATH -> the three parts
azure_parts() {
  local rest=${1#azure://}
  az_account=${rest%%/*}
  rest=${rest#"$az_account"/}
  az_container=${rest%%/*}
  az_path=${rest#"$az_container"}
  az_path=${az_path#/}
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
store "$url"
if [ -n "$copy_to" ]; then
  store "$copy_to"
fi
