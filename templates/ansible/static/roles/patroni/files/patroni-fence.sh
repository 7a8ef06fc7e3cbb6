#!/bin/bash
# platformc patroni fence: refuse to start this region's own Patroni cluster while its DR partner's copy of it is
# promoted (the split brain the region runbook's step 2 fences against).
#
#   patroni-fence --partner REGION --fenced FILE --unfenced FILE [--ca FILE] URL...
#
# The patroni role's drop-in for patroni@<version>-main runs it before Patroni starts (ExecStartPre, as root). Each
# URL is the REST API of a member of the standby cluster REGION runs of this region (https://<host>:<port>). Patroni
# answers GET /primary with 200 only on the leader of a cluster that is not a standby cluster; a standby leader and
# every replica answer 503 (Patroni 3.0 docs/rest_api.rst). So:
#   - a member answers 200: the runbook promoted the partner's copy (step 3), which takes the writes now. Started,
#     this cluster would take its leader key in the region's etcd and be writable again on the old timeline beside
#     it. Refuse (exit 1), and write FILE (--fenced): every later start refuses too, without asking, so that the
#     unit's restarts (Restart=on-failure) cannot let it in at a moment the partner does not answer.
#   - members answer, none with 200: the copy is still a standby; start.
#   - no member answers (the partner down, the network between the regions): start, and say that the check could
#     not be made. The guard needs the partner reachable: the runbook keeps a lost region down besides.
# An operator who runs this cluster on purpose while the partner's copy leads (rebuilt as a standby of it, runbook
# step 5) writes why into the --unfenced FILE: Patroni then starts, and the reason is logged at every start.
# Every line goes to the unit's journal (journalctl -u patroni@<version>-main). Each member gets 3 s to connect and
# 5 s in all: the unit's start timeout (30 s, Debian's unit) is not reached with the two members a standby has.
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
answered=0 errors='' untrusted=''
for url in "$@"; do
  url=${url%/}
  code=$(curl --silent --show-error --output /dev/null --write-out '%{http_code}' --connect-timeout 3 --max-time 5 \
    "${tls[@]}" "$url/primary" 2>"$err")
  rc=$?
  if [ $rc -eq 0 ] && [ "$code" = 200 ]; then
    since="$(date -u +%Y-%m-%dT%H:%M:%SZ): $url (a member of $what) answered GET /primary with 200"
    if ! printf '%s\n' "$since" >"$fenced"; then
      say "could not write $fenced: later starts will ask again"
    fi
    say "REFUSING to start: $url, a member of $what, answers GET /primary with 200: it was promoted and takes the"
    say "writes now. Started, this cluster would be a second writable primary beside it (split brain)."
    todo
    exit 1
  elif [ $rc -eq 0 ] && [ "$code" != 000 ]; then
    answered=$((answered + 1))
    say "$url answers GET /primary with $code: not a promoted leader"
  else
    why=$(tr '\n' ' ' <"$err")
    errors="${errors:+$errors; }$url: ${why% }"
    case $rc in  # curl's TLS failures: the member is there, but it is not proven to be the partner's
      35 | 51 | 53 | 54 | 58 | 59 | 60 | 64 | 66 | 77 | 80 | 82 | 83 | 90 | 91) untrusted="${untrusted:+$untrusted, }$url" ;;
    esac
  fi
done

if [ $answered -gt 0 ]; then
  say "$what is not promoted ($answered of $# members answered): starting"
  exit 0
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
