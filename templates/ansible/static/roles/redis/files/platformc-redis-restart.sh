#!/bin/bash
# platformc-redis-restart: restart this host's Redis Cluster node, and return only once the cluster serves again.
#
#   platformc-redis-restart --address ADDRESS --port PORT --password-file FILE [--unit UNIT] [--timeout SECONDS]
#
# The redis role's "Restart Redis" handler runs it, one host at a time (throttle: 1). Ansible runs a handler task on
# every notified host before it runs the next handler task, so the wait has to be part of the task that restarts:
# a separate wait handler would come after every node had been restarted. Without the wait, the next node went
# down while the last one was still loading its dataset or resyncing from its primary: restarting a primary whose
# replica is not in sync leaves its shard nothing to fail over to, and the cluster stops serving its slots.
#
# A node serves when it answers PING, has loaded its dataset (INFO persistence: loading:0), as a replica has its
# link to its primary up with no sync in progress, and reports cluster_state:ok (a node not in a cluster yet, no
# slot assigned, has no cluster state to wait for).
#
#   before  every other node this node knows (CLUSTER NODES) must serve; the script waits for that up to a minute
#           (or --timeout, if shorter) and otherwise fails without restarting anything. Ansible goes on with the
#           next host when one fails: this refusal is what stops the run after a node that never came back.
#   after   `systemctl restart UNIT`, then wait up to --timeout seconds (300) until this node and every node it
#           knew serve (a restarted primary's replicas resync from it); past that, fail and say what is missing.
#
# It logs in as the cluster admin user, platformc-admin, as the role's cluster tasks do: redis-cli reads the password
# from FILE (the role keeps the admin secret root-only on every node) on its standard input (--askpass), so the password
# is on no command line and in no process's environment. When this node cannot be asked which nodes it knows (not
# running, or not yet on the role's configuration, as before the first restart), only this node is waited for.
set -euo pipefail
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

usage() {
  echo "usage: $0 --address ADDRESS --port PORT --password-file FILE [--unit UNIT] [--timeout SECONDS]" >&2
  exit 2
}

address='' port='' password_file='' unit=redis-server timeout=300
while [ $# -gt 0 ]; do
  case "$1" in
    --address) address=${2-}; shift 2 ;;
    --port) port=${2-}; shift 2 ;;
    --password-file) password_file=${2-}; shift 2 ;;
    --unit) unit=${2-}; shift 2 ;;
    --timeout) timeout=${2-}; shift 2 ;;
    *) usage ;;
  esac
done
if [ -z "$address" ] || [ -z "$password_file" ]; then usage; fi
case "$port" in '' | *[!0-9]*) usage ;; esac
case "$timeout" in '' | *[!0-9]*) usage ;; esac
if [ ! -r "$password_file" ] || [ ! -s "$password_file" ]; then
  echo "$0: cannot read the platformc-admin password from $password_file (missing or empty)" >&2
  exit 2
fi
before=$((timeout < 60 ? timeout : 60))
me="$address:$port"

# One command to one node: its reply without carriage returns; a node that does not answer within 5 s, none.
ask() {
  local host=$1 node_port=$2
  shift 2
  timeout 5 redis-cli --askpass --user platformc-admin -h "$host" -p "$node_port" "$@" <"$password_file" 2>&1 |
    tr -d '\r' || true
}

# Why the node HOST:PORT does not serve; nothing when it does.
not_serving() {
  local host=${1%:*} node_port=${1##*:} reply
  reply=$(ask "$host" "$node_port" ping)
  if [ "$reply" != PONG ]; then
    echo "does not answer PING (${reply:-no reply})"
    return
  fi
  reply=$(ask "$host" "$node_port" info persistence)
  if ! grep -qx 'loading:0' <<<"$reply" || grep -qx 'async_loading:1' <<<"$reply"; then
    echo "is still loading its dataset"
    return
  fi
  reply=$(ask "$host" "$node_port" info replication)
  if grep -qx 'role:slave' <<<"$reply"; then
    if ! grep -qx 'master_link_status:up' <<<"$reply"; then
      echo "is a replica whose link to its primary is down"
      return
    fi
    if ! grep -qx 'master_sync_in_progress:0' <<<"$reply"; then
      echo "is a replica still syncing from its primary"
      return
    fi
  fi
  reply=$(ask "$host" "$node_port" cluster info)
  if ! grep -qx 'cluster_state:ok' <<<"$reply" && ! grep -qx 'cluster_slots_assigned:0' <<<"$reply"; then
    echo "reports $(grep -x 'cluster_state:.*' <<<"$reply" || echo 'no cluster state')"
  fi
}

# Wait up to $1 seconds until every node named after it serves; 0 when they do, else 1 with what is missing on stdout.
wait_serving() {
  local deadline=$((SECONDS + $1)) node why problems
  shift
  while :; do
    problems=''
    for node in "$@"; do
      why=$(not_serving "$node")
      [ -z "$why" ] || problems+="${problems:+; }$node $why"
    done
    [ -n "$problems" ] || return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$problems"
      return 1
    fi
    sleep 1
  done
}

# The other nodes of the cluster, as this node knows them (ADDRESS:PORT, without the bus port and hostname).
peers=()
while read -r _ endpoint flags _; do
  case ",$flags," in *,myself,*) continue ;; esac
  endpoint=${endpoint%%@*}
  peers+=("$endpoint")
done < <(ask "$address" "$port" cluster nodes | grep -E '^[0-9a-f]{40} ' || true)

if ! problems=$(wait_serving "$before" "${peers[@]}"); then
  echo "$0: not restarting $unit on $me: the rest of the cluster does not serve (waited ${before} s): $problems" >&2
  exit 1
fi
systemctl restart "$unit"
if ! problems=$(wait_serving "$timeout" "$me" "${peers[@]}"); then
  echo "$0: $unit on $me was restarted, but the cluster does not serve ${timeout} s later: $problems" >&2
  exit 1
fi
echo "$unit on $me restarted; it and the ${#peers[@]} other node(s) it knows serve"
