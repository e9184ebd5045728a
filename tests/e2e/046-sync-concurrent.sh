#!/usr/bin/env bash
# Two syncs on one store: the second is refused while the first runs (exit 1, a clear
# message), and the change log gets each change exactly once.
. "$(dirname "$0")/lib.sh"

start_fake --agents 200 --cves 20 --alerts 20 --seed 4 --page-size 10
write_config a
fault '{"kind":"slow","count":4,"ms":700,"path":"/v2/agents"}'
"$TSGRAPHD" -c "$WORK/a.conf" sync >"$WORK/first.out" 2>&1 &
first=$!
on_exit "kill $first 2>/dev/null"
# the first holds the store's lock before its first request, which the slow fault then holds
first_running() {
	kill -0 "$first" 2>/dev/null || fail "the first sync ended early: $(cat "$WORK/first.out")"
	more_requests /v2/agents 0
}
wait_until 10 "the first sync's first request" first_running
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "another tsgraphd (run or sync) is using this store"
wait "$first" || fail "the first sync failed: $(cat "$WORK/first.out")"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
[ "$(jq -s '[.[].seq] | length == (unique | length)' "$WORK/a.ndjson")" = true ] ||
	fail "a change was written twice"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "full ok"
expect_no_output "interrupted"
replay_equals_store "$WORK/a.ndjson" "$WORK/a.db"
echo "concurrent syncs ok"
