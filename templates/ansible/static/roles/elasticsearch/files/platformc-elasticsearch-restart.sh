#!/bin/bash
# platformc-elasticsearch-restart: restart this host's Elasticsearch node as Elastic's rolling restart does, and return
# only once the node is back in the cluster and the cluster is green again.
#
#   platformc-elasticsearch-restart --node NAME --address HOST --port PORT --ca FILE --password-file FILE
#                                   [--peers NAME=HOST,...] [--unit UNIT] [--timeout SECONDS]
#
# The elasticsearch role's "Restart Elasticsearch" handler runs it, one host at a time (throttle: 1). Ansible runs a
# handler task on every notified host before it runs the next handler task, so the wait has to be part of the task
# that restarts. Without it, the next node went down while the last one's shard copies were still unassigned or
# recovering: with one replica per shard, both copies of a shard were down at once and the cluster went red.
#
# The steps, those of Elastic's rolling restart (Elasticsearch reference 8.x, "Full-cluster restart and rolling
# restart"), each request to the cluster's REST API:
#   1. PUT _cluster/settings {"persistent": {"cluster.routing.allocation.enable": "primaries"}}: while the node is
#      away the cluster does not copy its replicas to other nodes (by default it starts after
#      index.unassigned.node_left.delayed_timeout, one minute), I/O spent on a node that is coming back
#   2. POST /_flush (optional in the procedure, its result only reported): the restarted shards recover faster
#   3. systemctl restart UNIT
#   4. wait until GET _cat/nodes lists the node (node.name, --node) again: it has rejoined
#   5. PUT _cluster/settings {"persistent": {"cluster.routing.allocation.enable": null}}: back to the default (all)
#   6. wait until GET _cat/health reports green, with every node of the inventory (--peers) in the cluster
#
#   before  the cluster must be green and hold every other node of the inventory; the script waits for that up to a
#           minute (or --timeout, if shorter) and otherwise fails without changing anything. Ansible goes on with the
#           next host when one fails: this refusal is what stops the run after a node that never came back.
#           Yellow is accepted only when the cluster has a single data node: its replicas have nowhere to go, yellow
#           is its normal state (with one more node they are assigned; an index without replicas is green anyway).
#           A node that is not in the cluster (down, or not joined) holds no shard copy a restart could take away:
#           then only the other nodes must all be in.
#   after   steps 4 to 6 within --timeout seconds (600) of the restart; past it, fail and say what is missing.
#           However the script ends once step 1 was done, allocation goes back to the default: a node that does not
#           come back then has its replicas rebuilt on the other nodes, as it would have without this script.
#
# Requests go over HTTPS to the nodes' HTTP port, verified against --ca (the region's CA, which issued the nodes'
# certificates; they name the hosts' DNS names, which --address and the peers' HOSTs are), as `elastic` with the
# password in --password-file (the one the role made once and keeps on the first node, copied root-only to each node;
# the role's handler passes no secret in its arguments or environment). The script reads the file itself and curl
# reads the credentials from its standard input: the password is on no command line and in no process's
# environment. Each request goes to the peers in turn, then to this node, until one answers 2xx: a node that is away
# or has not joined yet (it answers 401, it cannot read the security index) is skipped.
#
# First run: without that password (the password file is empty) there is no cluster to ask: the role makes it after
# its first restarts, once the nodes have formed the cluster, which holds no data before that. The script then
# restarts the node and waits only until it answers HTTPS again (401 without credentials), as the Redis script waits
# only for its own node before the cluster is formed. (A cluster whose first node lost the password file is restarted
# the same way by the run that makes a new one: restore the file to /etc/elasticsearch/platformc-admin/elastic first.)
set -euo pipefail
PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"

usage() {
  echo "usage: $0 --node NAME --address HOST --port PORT --ca FILE --password-file FILE [--peers NAME=HOST,...]" \
    "[--unit UNIT] [--timeout SECONDS]" >&2
  exit 2
}

node='' address='' port='' ca='' password_file='' peers='' unit=elasticsearch timeout=600
while [ $# -gt 0 ]; do
  [ $# -ge 2 ] || usage
  case "$1" in
    --node) node=$2 ;;
    --address) address=$2 ;;
    --port) port=$2 ;;
    --ca) ca=$2 ;;
    --password-file) password_file=$2 ;;
    --peers) peers=$2 ;;
    --unit) unit=$2 ;;
    --timeout) timeout=$2 ;;
    *) usage ;;
  esac
  shift 2
done
if [ -z "$node" ] || [ -z "$address" ] || [ -z "$ca" ] || [ -z "$password_file" ]; then usage; fi
case "$port" in '' | *[!0-9]*) usage ;; esac
case "$timeout" in '' | *[!0-9]*) usage ;; esac
[ -r "$ca" ] || { echo "$0: cannot read the CA certificate $ca" >&2; exit 2; }
[ -r "$password_file" ] || { echo "$0: cannot read the password file $password_file" >&2; exit 2; }

peer_names=() hosts=()
if [ -n "$peers" ]; then
  IFS=, read -r -a entries <<<"$peers"
  for entry in "${entries[@]}"; do
    case "$entry" in ?*=?*) ;; *) usage ;; esac
    peer_names+=("${entry%%=*}")
    hosts+=("${entry#*=}")
  done
fi
hosts+=("$address")  # the peers first: while this node is away or joining, they answer

password=$(<"$password_file")  # empty: the role has not made the password yet
credentials=''
if [ -n "$password" ]; then
  escaped=${password//\\/\\\\}
  credentials="user = \"elastic:${escaped//\"/\\\"}\""  # a curl config line: within quotes, \\ and \" are escapes
fi
before=$((timeout < 60 ? timeout : 60))
work=$(mktemp -d)
allocation_disabled=0

# One request to one node, straight to it (no proxy): the HTTP status on stdout (000: no answer), the body in
# $work/body, curl's error in $work/err. The credentials, if any, reach curl as its config on standard input.
request() {
  local host=$1 method=$2 path=$3 body=${4-}
  local args=(--silent --show-error --noproxy '*' --connect-timeout 5 --max-time "${max_time:-20}" --cacert "$ca"
    --request "$method" --output "$work/body" --write-out '%{http_code}' --config -)
  [ -z "$body" ] || args+=(--header 'Content-Type: application/json' --data-binary "$body")
  : >"$work/body"
  curl "${args[@]}" "https://$host:$port$path" 2>"$work/err" <<<"$credentials" || true
}

# What a node answered, in a few words: curl's error, or the HTTP status and Elasticsearch's error type.
answer() {
  local status=$1 type
  if [ "$status" = 000 ]; then
    tail -n 1 "$work/err" | sed 's/^curl: ([0-9]*) //'
    return 0
  fi
  type=$(grep -o '"type":"[^"]*"' "$work/body" | head -n 1 | cut -d'"' -f4 || true)
  echo "HTTP $status${type:+ $type}"
}

# A request to the cluster: to each node in turn until one answers 2xx; 0 and its body in $reply, or 1 and what each
# node answered in $failures.
api() {
  local host status
  reply='' failures=''
  for host in "${hosts[@]}"; do
    status=$(request "$host" "$@")
    case "$status" in
      2??) reply=$(cat "$work/body"); return 0 ;;
    esac
    failures+="${failures:+; }$host: $(answer "$status")"
  done
  return 1
}

allocation() {
  local value=$1
  [ "$value" = null ] || value="\"$value\""
  api PUT /_cluster/settings "{\"persistent\":{\"cluster.routing.allocation.enable\":$value}}" || return 1
  grep -q '"acknowledged":true' <<<"$reply" || { failures="not acknowledged: $reply"; return 1; }
}

finish() {
  local rc=$? try
  if [ "$allocation_disabled" = 1 ]; then
    for try in 1 2 3 4 5; do
      if allocation null; then
        echo "$0: shard allocation is back to its default (cluster.routing.allocation.enable: null)" >&2
        allocation_disabled=0
        break
      fi
      [ "$try" = 5 ] || sleep 2
    done
    if [ "$allocation_disabled" = 1 ]; then
      echo "$0: shard allocation is still limited to primaries ($failures); reset it: PUT _cluster/settings" \
        '{"persistent": {"cluster.routing.allocation.enable": null}}' >&2
    fi
  fi
  rm -rf "$work"
  exit "$rc"
}
trap finish EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# The cluster as the API reports it: $status and $data_nodes (_cat/health), $members (_cat/nodes: node names, one a
# line). 1, and why in $why, when no node reports it.
read_cluster() {
  why=''
  if ! api GET '/_cat/health?h=status,node.data'; then
    why="no node reports the cluster's health ($failures)"
    return 1
  fi
  read -r status data_nodes _ <<<"$reply" || true
  if ! api GET '/_cat/nodes?h=name'; then
    why="no node lists the cluster's nodes ($failures)"
    return 1
  fi
  members=$(awk '{ print $1 }' <<<"$reply")
}

member() {
  grep -qxF -- "$1" <<<"$members"
}

# The inventory's other nodes that are not in the cluster, comma-separated.
missing_peers() {
  local name out=''
  for name in "${peer_names[@]}"; do
    member "$name" || out+="${out:+, }$name"
  done
  echo "$out"
}

# Why the cluster is not healthy: not green (yellow is healthy for a single data node); nothing when it is.
unhealthy() {
  case "$status" in
    green) ;;
    yellow) [ "$data_nodes" = 1 ] || echo "the cluster is yellow (replicas unassigned or recovering)" ;;
    *) echo "the cluster is ${status:-of no known status}" ;;
  esac
}

# Each check prints why it does not hold yet, nothing once it does.
may_restart() {
  read_cluster || { echo "$why"; return 0; }
  local missing
  missing=$(missing_peers)
  if [ -n "$missing" ]; then
    echo "node(s) $missing not in the cluster"
  elif member "$node"; then
    unhealthy
  fi
}

rejoined() {
  read_cluster || { echo "$why"; return 0; }
  member "$node" || echo "$node has not rejoined the cluster"
}

allocation_enabled() {
  allocation null || echo "shard allocation could not be re-enabled ($failures)"
}

recovered() {
  read_cluster || { echo "$why"; return 0; }
  local missing
  missing=$(missing_peers)
  member "$node" || missing="$node${missing:+, $missing}"
  if [ -n "$missing" ]; then
    echo "node(s) $missing not in the cluster"
  else
    unhealthy
  fi
}

answers() {
  local status
  status=$(request "$address" GET /)
  [ "$status" != 000 ] || echo "$address:$port does not answer HTTPS ($(answer "$status"))"
}

# Wait until DEADLINE (in $SECONDS) for CHECK to hold; 0 when it does, else 1 with why it does not on stdout.
wait_for() {
  local deadline=$1 check=$2 why
  while :; do
    why=$("$check" || true)
    [ -n "$why" ] || return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$why"
      return 1
    fi
    sleep 2
  done
}

restart() {
  systemctl restart "$unit" || { echo "$0: systemctl restart $unit failed on $node" >&2; exit 1; }
}

if [ -z "$password" ]; then
  restart
  if ! problem=$(wait_for $((SECONDS + timeout)) answers); then
    echo "$0: $unit on $node was restarted, but does not answer ${timeout} s later: $problem" >&2
    exit 1
  fi
  echo "$unit on $node restarted; no elastic password yet (the role has not set up the cluster):" \
    "waited until it answered"
  exit 0
fi

if ! problem=$(wait_for $((SECONDS + before)) may_restart); then
  echo "$0: not restarting $unit on $node: the cluster is not ready (waited ${before} s): $problem" >&2
  exit 1
fi
allocation_disabled=1  # from here on, whatever happens, finish resets it
if ! allocation primaries; then
  echo "$0: not restarting $unit on $node: shard allocation could not be limited to primaries: $failures" >&2
  exit 1
fi
if ! max_time=120 api POST /_flush; then
  echo "$0: the flush before the restart failed, going on (it only speeds up recovery): $failures" >&2
fi
restart
deadline=$((SECONDS + timeout))
for step in rejoined allocation_enabled recovered; do
  if ! problem=$(wait_for "$deadline" "$step"); then
    echo "$0: $unit on $node was restarted, but ${timeout} s later: $problem" >&2
    exit 1
  fi
  [ "$step" != allocation_enabled ] || allocation_disabled=0
done
read_cluster || true
echo "$unit on $node restarted; it rejoined, shard allocation is back to its default, and the cluster is" \
  "${status:-healthy} with all $((${#peer_names[@]} + 1)) node(s) of the inventory"
