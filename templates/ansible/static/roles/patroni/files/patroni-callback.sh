#!/bin/sh
# Patroni callback (on_start, on_restart, on_role_change): <action> <role> <scope>.
# On a member that has just started or been promoted as the leader, close the archive_timeout gap: Patroni starts
# every PostgreSQL in recovery and promotes it, and the checkpointer computed its sleep (checkpoint_timeout, 15 min)
# while recovery was in progress, so archive_timeout was not looked at again for minutes (RPO broken after every
# restart and failover). Once recovery has ended, a CHECKPOINT wakes the checkpointer (it then sleeps at most
# archive_timeout) and pg_switch_wal() archives the segment holding the writes so far.
# Connection: the local socket as the OS user postgres, on PGPORT, which the callback command sets to its cluster's
# port (Patroni's configuration: `/usr/bin/env PGPORT=<port> <this file>`; a DR standby cluster has its own).
set -u
role=${2:-}
case "$role" in
  master|primary) ;;
  *) exit 0 ;;
esac
(
  i=0
  while [ $i -lt 120 ]; do
    r=$(psql -X -A -t -q -d postgres -c "SELECT pg_is_in_recovery()" 2>/dev/null)
    [ "$r" = "f" ] && break
    i=$((i + 1)); sleep 1
  done
  psql -X -q -d postgres -c "CHECKPOINT" -c "SELECT pg_switch_wal()" >/dev/null 2>&1
) </dev/null >/dev/null 2>&1 &
exit 0
