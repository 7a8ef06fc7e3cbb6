#!/bin/bash
# platformc patroni fence: refuse to start this region's own Patroni cluster while its DR partner's copy of it is
# promoted (the split brain the region runbook's step 2 fences against).
#
#   patroni-fence --partner REGION --fenced FILE --unfenced FILE [--ca FILE] URL...
#
# The patroni role's drop-in for patroni@<version>-main runs it before Patroni starts (ExecStartPre, as root). Each
# URL is the REST API of a member of the standby cluster REGION runs of this region (https://<host>:<port>). It asks
# each member two things (Patroni 3.0.2: patroni/api.py, do_GET_cluster and the health checks; patroni/utils.py,
# cluster_as_json):
#   - GET /primary: 200 only on the leader of a cluster that is not a standby cluster; a standby leader and every
#     replica answer 503. That is what a member says of itself.
#   - GET /cluster, of every member that answered: the members as the cluster's DCS holds them (Patroni reads its
#     etcd for it), each with its "role" and "state". The member holding the leader key has the role "standby_leader"
#     while the cluster's configuration has a standby_cluster section, and "leader" once it has none (the runbook's
#     promotion, step 3, removes it); the others are "replica" or "sync_standby". So a replica that answers also
#     speaks for a leader this host cannot reach (down, or behind a partition that spares the replica).
# So:
#   - a member answers /primary with 200, or a member's /cluster lists a "leader" (or "master"/"primary"): the
#     runbook promoted the partner's copy (step 3), which takes the writes now. Started, this cluster would take its
#     leader key in the region's etcd and be writable again on the old timeline beside it. Refuse (exit 1), and
#     write FILE (--fenced): every later start refuses too, without asking, so that the unit's restarts
#     (Restart=on-failure) cannot let it in at a moment the partner does not answer.
#   - members answer, and a member's /cluster lists a "standby_leader" (and none a leader): still a standby; start.
#   - members answer, and no /cluster answer lists a standby leader (the cluster has no leader key, or no member
#     could read its DCS): nothing proves the copy is still a standby. Under DCS failsafe_mode (enabled) a promoted
#     leader that lost its etcd keeps taking writes while it reaches all its members, the one that answered here
#     among them, although no /cluster shows it. Refuse this start without writing FILE: the unit's next start
#     (Restart=on-failure) asks again, and starts once the partner's cluster shows its standby leader. The cost:
#     while the partner's standby cluster has no leader key or no etcd, this region's members cannot (re)start; the
#     journal says so, and the --unfenced FILE lets one start on purpose.
#   - no member answers (the partner down, the network between the regions): start, and say that the check could
#     not be made. The guard needs the partner reachable: the runbook keeps a lost region down besides.
# An operator who runs this cluster on purpose while the partner's copy leads (rebuilt as a standby of it, runbook
# step 5) writes why into the --unfenced FILE: Patroni then starts, and the reason is logged at every start.
# Every line goes to the unit's journal (journalctl -u patroni@<version>-main). Each request gets 3 s to connect and
# 5 s in all, so a member takes 10 s at most: the unit's start timeout (30 s, Debian's unit) is not reached with the
# two members a standby has. /cluster's JSON is read with python3, which Patroni itself runs on.
set -u

say() { echo "patroni-fence: $*"; }

usage() {
  echo "usage: $0 --partner REGION --fenced FILE --unfenced FILE [--ca FILE] URL..." >&2
  exit 2
}

partner='' fenced='' unfenced='' ca=''
while [ $# -gt 0 ]; do
  case "$1" in
    --partner) partner=${2-}; shift 2 ;;
    --fenced) fenced=${2-}; shift 2 ;;
    --unfenced) unfenced=${2-}; shift 2 ;;
    --ca) ca=${2-}; shift 2 ;;
    --) shift; break ;;
    -*) usage ;;
    *) break ;;
  esac
done
if [ -z "$partner" ] || [ -z "$fenced" ] || [ -z "$unfenced" ] || [ $# -eq 0 ]; then
  usage
fi

what="$partner's standby cluster of this region"
todo() {
  say "To start it: rebuild this cluster as a standby of the promoted one (region runbook, step 5), writing the reason"
  say "into $unfenced, or demote $partner's copy to a standby first (switch-back), then remove $fenced."
}

if [ -e "$unfenced" ]; then
  say "starting without the fence: $unfenced says: $(head -c 500 "$unfenced" | tr '\n' ' ')"
  exit 0
fi
if [ -e "$fenced" ]; then
  say "REFUSING to start: fenced since $(head -c 500 "$fenced" | tr '\n' ' ')"
  todo
  exit 1
fi

if [ -n "$ca" ]; then
  tls=(--cacert "$ca")
else
  tls=(--insecure)
  say "$partner publishes no CA certificate: its members' certificates are not verified"
fi

# curl's error of each member, for the journal (none when no temporary file can be made: the check still runs)
if err=$(mktemp 2>/dev/null); then
  trap 'rm -f "$err"' EXIT
else
  err=/dev/null
fi
# Shut the fence for good: FILE (--fenced) says since when and why, and every later start refuses without asking.
latch() {
  if ! printf '%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ): $1" >"$fenced"; then
    say "could not write $fenced: later starts will ask again"
  fi
}

# What a member's GET /cluster says, as one line: "<role> <name> <state>" of the member holding a promoted
# cluster's leader key (role leader; master or primary too, should a Patroni name it so), else of the standby leader;
# "none <count>" when no member holds the leader key; "unreadable <why>" when the answer is not Patroni's document.
classify='
import json, sys
try:
    doc = json.load(sys.stdin)
    members = [(str(m.get("role", "")), str(m.get("name") or "?").replace(" ", "_"), str(m.get("state") or "?"))
               for m in doc["members"]]
except Exception as e:
    print("unreadable", type(e).__name__)
    sys.exit()
for roles in (("leader", "master", "primary"), ("standby_leader",)):
    for role, name, state in members:
        if role in roles:
            print(role, name, state)
            sys.exit()
print("none", len(members))
'

answered=0 standby='' unproven='' errors='' untrusted=''
for url in "$@"; do
  url=${url%/}
  code=$(curl --silent --show-error --output /dev/null --write-out '%{http_code}' --connect-timeout 3 --max-time 5 \
    "${tls[@]}" "$url/primary" 2>"$err")
  rc=$?
  if [ $rc -eq 0 ] && [ "$code" = 200 ]; then
    latch "$url (a member of $what) answered GET /primary with 200"
    say "REFUSING to start: $url, a member of $what, answers GET /primary with 200: it was promoted and takes the"
    say "writes now. Started, this cluster would be a second writable primary beside it (split brain)."
    todo
    exit 1
  elif [ $rc -eq 0 ] && [ "$code" != 000 ]; then
    answered=$((answered + 1))
    say "$url answers GET /primary with $code: not a promoted leader itself; asking it for the cluster (GET /cluster)"
    # what the member reads from its cluster's DCS: the leader this host may not reach (down, or partitioned off)
    if body=$(curl --silent --show-error --fail --max-filesize 1000000 --connect-timeout 3 --max-time 5 \
      "${tls[@]}" "$url/cluster" 2>"$err"); then
      verdict=$(printf '%s' "$body" | python3 -c "$classify" 2>&1)
    else
      verdict="failed $(tr '\n' ' ' <"$err")"
    fi
    read -r role name state <<<"$verdict"
    case $role in
      leader | master | primary)
        latch "$url (a member of $what) listed $name as the cluster's $role ($state) in GET /cluster"
        say "REFUSING to start: $url, a member of $what, lists $name as its $role ($state) in GET /cluster: the"
        say "cluster is no longer a standby (it was promoted) and its leader takes the writes now, even though it does"
        say "not answer here. Started, this cluster would be a second writable primary beside it (split brain)."
        todo
        exit 1
        ;;
      standby_leader)
        standby="${standby:+$standby, }$url: $name is the standby leader ($state)"
        ;;
      none) unproven="${unproven:+$unproven; }$url: no member holds the leader key ($name members)" ;;
      failed) unproven="${unproven:+$unproven; }$url: GET /cluster failed: ${name:-} ${state:-}" ;;
      *) unproven="${unproven:+$unproven; }$url: GET /cluster is not Patroni's cluster document (${verdict:0:200})" ;;
    esac
  else
    why=$(tr '\n' ' ' <"$err")
    errors="${errors:+$errors; }$url: ${why% }"
    case $rc in  # curl's TLS failures: the member is there, but it is not proven to be the partner's
      35 | 51 | 53 | 54 | 58 | 59 | 60 | 64 | 66 | 77 | 80 | 82 | 83 | 90 | 91) untrusted="${untrusted:+$untrusted, }$url" ;;
    esac
  fi
done

if [ -n "$standby" ]; then
  say "$what is still a standby cluster ($standby; $answered of $# members answered): starting"
  exit 0
fi
if [ $answered -gt 0 ]; then
  # The partner is there to be asked and cannot say that its copy is still a standby: not a case to start blind.
  # Not latched: it may be a moment between two standby leaders, and the unit's next start asks again.
  say "REFUSING this start: $answered of $# members of $what answered, but none shows a standby leader in"
  say "GET /cluster (${unproven% }): its copy may have been promoted. Not latched: the next start asks again."
  say "If $partner's copy must not hold this start up, write why into $unfenced."
  exit 1
fi
if [ -n "$untrusted" ]; then
  # Not a partner that is down: its members answer, and their certificates do not verify against the CA this host
  # holds (rotated, or a stale copy). Said apart from the unreachable case, so the journal does not read as "down".
  say "WARNING: $untrusted answered, but TLS with ${ca:-no CA} failed: the partner's CA may have changed (run the"
  say "postgresql play again to fetch it). The check could not be made."
fi
say "WARNING: could not check whether $what was promoted: no member answered ($errors). Starting anyway;"
say "if $partner took over this region's writes, stop this cluster now (region runbook, step 2)."
exit 0
