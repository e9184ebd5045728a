#!/usr/bin/env bash
# At least once, through kill -9: build/tsgraphd-test dies at the webhook sink's "post" point
# (the receiver accepted the 5th change, the sink's cursor not yet past it). The next sync
# sends that change again (same X-Tsgraphd-Seq: a receiver can tell) and then the rest, in
# order: every change is received, none is lost, only the one in flight is repeated. The
# sink is set to backfill, so the first sync's creates are its alerts.
. "$(dirname "$0")/lib.sh"
need_test_build

start_fake --agents 30 --cves 5 --alerts 5 --seed 4 --page-size 10
start_catcher
write_config a '[sink.new]' 'type = webhook' "url = $CATCHER_URL/new-agents" \
	'events = agent.created' 'format = slack' 'backfill = yes'

expect_status 137 env TSGRAPHD_TEST_CRASH_AT=post TSGRAPHD_TEST_CRASH_AFTER=5 \
	"$TSGRAPHD_TEST" -c "$WORK/a.conf" sync
last=$(printf '%s\n' "$OUT" | tail -n 1)
case "$last" in *"test hook: crash at post after 5") ;; *) fail "not killed at post: $OUT" ;; esac
[ "$(caught_count)" -eq 5 ] || fail "$(caught_count) alerts before the crash, want 5"
before=$(caught | jq -r '.[4].seq')
cursor=$(sqlite3 "$WORK/a.db" "SELECT seq FROM sink_cursor WHERE sink = 'new'")
[ "$cursor" -lt "$before" ] || fail "the cursor ($cursor) moved past the change in flight ($before)"

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sink new: delivered 26 changes"
caught | jq -r '.[].seq' >"$WORK/seqs"
[ "$(wc -l <"$WORK/seqs")" -eq 31 ] || fail "$(wc -l <"$WORK/seqs") alerts in all, want 30 + 1 repeated"
[ "$(sed -n 6p "$WORK/seqs")" = "$before" ] || fail "the change in flight was not sent first again"
[ "$(sort -n -u "$WORK/seqs" | wc -l)" -eq 30 ] || fail "not 30 distinct changes"
sort -n -u -c <(sed 5d "$WORK/seqs") || fail "out of order after the restart"
# Exactly the agents the store holds, each announced.
caught | jq -r '.[].body | fromjson | .text' | sort -u >"$WORK/texts"
sqlite3 "$WORK/a.db" "SELECT 'new agent ' || json_extract(json, '\$.name') FROM object
	WHERE type = 'threatstack_agent'" | sort -u >"$WORK/want"
diff "$WORK/want" "$WORK/texts" >/dev/null || fail "texts differ: $(diff "$WORK/want" "$WORK/texts" | head)"
echo "at least once through kill -9 ok"
