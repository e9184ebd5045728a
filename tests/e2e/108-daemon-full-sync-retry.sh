#!/usr/bin/env bash
# A full sync that fails, or leaves a listing incomplete, is tried again before the next
# poll_interval: after 1 min (1 s in this test build: point full-retry-1s), doubling up to
# poll_interval; one that completes goes back to poll_interval.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"
need_test_build

start_fake --agents 5 --cves 2 --alerts 2
make_cert
write_receiver_config a '[threatstack]' 'poll_interval = 3600'
# the online agents listing refused three times: three incomplete full syncs
fault '{"kind":"403","count":3,"path":"/v2/agents?status=online"}'
TSGRAPHD_RUN=$TSGRAPHD_TEST start_daemon a TSGRAPHD_TEST_PAUSE_AT=full-retry-1s
full_ok() { tcurl "$URL/metrics" | grep -q '^tsgraphd_sync_runs_total{kind="full",result="ok"} 1$'; }
wait_until 20 "a full sync that completes" full_ok
for n in 1 2 4; do
	grep -q "daemon: full sync incomplete (a listing failed), next try in $n s" "$WORK/a.log" ||
		fail "no try again after $n s: $(grep 'full sync' "$WORK/a.log")"
done
[ "$(tcurl "$URL/metrics" | awk -F'} ' '/^tsgraphd_sync_runs_total\{kind="full",result="partial"\}/ { print $2 }')" = 3 ] ||
	fail "want 3 partial full syncs: $(tcurl "$URL/metrics" | grep sync_runs_total)"
[ "$(grep -c 'sync: full sync started' "$WORK/a.log")" = 4 ] || fail "more full syncs than the tries"
echo "incomplete full syncs tried again after 1, 2 and 4 s; the fourth completed"
stop_daemon a
echo "full sync retry ok"
