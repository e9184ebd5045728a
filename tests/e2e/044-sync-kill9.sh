#!/usr/bin/env bash
# kill -9 at each phase of a sync, at the point the test names (build/tsgraphd-test's crash
# points TSGRAPHD_TEST_CRASH_AT / _AFTER, include/tsgraphd/testhook.h), never on a timer:
#   deliver  a first sync of thousands of changes: all committed, the first batch of 1000
#            lines written and fsync'd to the change log, the sink's cursor not moved past it
#   stage    after 1000 objects staged
#   apply    inside the apply's transaction, every change and the run's record written,
#            before the commit
#   deliver  again, a few changes (CRASH_AFTER=1): the whole batch in the file, cursor behind
# Each round changes the fleet first, so there is something to commit and deliver. Per phase:
# the process died by SIGKILL at that point (its last log line says so); for stage and apply
# nothing of the run was committed (outbox, objects and their hashes, cursor, change log as
# before) and `tsgraphd status` shows the run as interrupted once the next sync ran; for
# deliver the run stays committed ("ok") and status shows the backlog and the file ahead of
# its cursor. The next sync then completes, and nothing accepted is lost: the fleet's
# changes are in the store, the change log holds every outbox seq exactly once and in order,
# replaying it gives exactly the stored graph, and that graph is what a fresh sync builds.
. "$(dirname "$0")/lib.sh"
need_test_build

start_fake --agents 400 --cves 40 --alerts 60 --seed 9 --page-size 20
write_config a
db=$WORK/a.db
log=$WORK/a.ndjson

q() { sqlite3 "$db" "$1"; }
# committed: everything a run could commit (outbox, objects and hashes, the sink's cursor)
# and the change log, as one line.
committed() {
	if [ -f "$db" ]; then
		q "SELECT (SELECT coalesce(max(seq), 0) FROM outbox), (SELECT count(*) FROM object),
			(SELECT coalesce(max(seq), 0) FROM sink_cursor WHERE sink = 'changes')"
		q 'SELECT key, hash FROM object ORDER BY key' | sha256sum
	else
		echo 'no store'
	fi
	if [ -f "$log" ]; then sha256sum <"$log"; else echo 'no log'; fi
}
# crash PHASE [N]: a sync that must die by SIGKILL at PHASE (after N for a counted point).
crash() {
	local phase=$1 after=${2:-}
	expect_status 137 env TSGRAPHD_TEST_CRASH_AT="$phase" ${after:+TSGRAPHD_TEST_CRASH_AFTER=$after} \
		"$TSGRAPHD_TEST" -c "$WORK/a.conf" sync
	# its last words: "test hook: crash at PHASE", and "after COUNT" at a counted point
	local last count
	last=$(printf '%s\n' "$OUT" | tail -n 1)
	case "$phase:$last" in
	apply:*"test hook: crash at apply") ;;
	*:*"test hook: crash at $phase after "*)
		count=${last##* after }
		[ "$count" -ge "${after:-1000}" ] || fail "$phase: crashed after $count, want ${after:-1000}" ;;
	*) fail "$phase: killed, but not at its crash point: $OUT" ;;
	esac
	killed_run=$(q 'SELECT max(id) FROM sync_run')
}
# run_status RUN: `tsgraphd status` in $OUT, and the result it shows for that run in $shown.
run_status() {
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
	shown=$(printf '%s\n' "$OUT" | awk -v id="#$1" '$1 == id { print $3 }')
}
# change_fleet: one online agent goes offline and one is added (sets $added).
change_fleet() {
	local id
	id=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
	fleet "{\"op\":\"agent_offline\",\"id\":\"$id\"}" >/dev/null
	added=$(fleet '{"op":"agent_add"}' | jq -r .id)
	offlined=$id
}
# sync_to_the_end: the next sync with the installed binary completes, and nothing is lost.
sync_to_the_end() {
	local phase=$1 max
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
	expect_output "backlog 0"
	expect_no_output "    ! "
	max=$(q 'SELECT max(seq) FROM outbox')
	[ "$(jq -s --argjson n "$max" '[.[].seq] == [range(1; $n + 1)]' "$log")" = true ] ||
		fail "$phase: the change log is not every seq 1..$max once, in order"
	replay_equals_store "$log" "$db"
	[ "$(q "SELECT count(*) FROM object WHERE key = 'threatstack:agent:$added'")" = 1 ] ||
		fail "$phase: the agent added before the kill is not in the store"
	[ "$(q "SELECT json_extract(json, '\$.status') FROM object WHERE key = 'threatstack:agent:$offlined'")" = offline ] ||
		fail "$phase: the agent taken offline before the kill is not offline in the store"
}

# deliver, on a first sync: committed whole, the change log one batch in, the cursor at 0
change_fleet
crash deliver
[ "$(q "SELECT result FROM sync_run WHERE id = $killed_run")" = ok ] ||
	fail "deliver: the run was not committed before the delivery"
total=$(q 'SELECT max(seq) FROM outbox')
[ "$total" -gt 1000 ] || fail "deliver: only $total changes, want more than one batch"
[ "$(count_lines "$log")" = 1000 ] || fail "deliver: $(count_lines "$log") lines in the log, want 1000"
[ "$(q "SELECT coalesce(max(seq), 0) FROM sink_cursor WHERE sink = 'changes'")" = 0 ] ||
	fail "deliver: the cursor moved past the batch written before the kill"
run_status "$killed_run"
[ "$shown" = ok ] || fail "deliver: status does not show the run as ok: $OUT"
expect_output "backlog $total"
expect_output "ahead of its cursor (a crash after writing)"
sync_to_the_end deliver
echo "deliver (first sync): killed after 1000 of $total lines, caught up"

# stage and apply: nothing of the run is committed; the run is interrupted
for phase in stage apply; do
	change_fleet
	before=$(committed)
	crash "$phase"
	[ "$(committed)" = "$before" ] || fail "$phase: the killed run committed something"
	[ "$(q "SELECT result, created + updated + deleted FROM sync_run WHERE id = $killed_run")" = 'running|0' ] ||
		fail "$phase: the killed run's record was committed"
	sync_to_the_end "$phase"
	run_status "$killed_run"
	[ "$shown" = interrupted ] ||
		fail "$phase: status does not show run $killed_run as interrupted: $OUT"
	echo "$phase: killed, nothing committed, shown interrupted, next sync complete"
done

# deliver, a few changes: the whole batch in the file, the cursor behind it
change_fleet
before_lines=$(count_lines "$log")
before_cursor=$(q "SELECT seq FROM sink_cursor WHERE sink = 'changes'")
crash deliver 1
max=$(q 'SELECT max(seq) FROM outbox')
[ "$max" -gt "$before_cursor" ] || fail "deliver: the run committed no change"
[ "$(count_lines "$log")" = $((before_lines + max - before_cursor)) ] ||
	fail "deliver: the batch was not written whole before the kill"
[ "$(q "SELECT seq FROM sink_cursor WHERE sink = 'changes'")" = "$before_cursor" ] ||
	fail "deliver: the cursor moved past the batch written before the kill"
run_status "$killed_run"
[ "$shown" = ok ] || fail "deliver: status does not show the run as ok: $OUT"
expect_output "ahead of its cursor (a crash after writing)"
sync_to_the_end deliver
echo "deliver (a few changes): killed with the batch written, caught up without a repeat"

# the graph after the kills is the one a fresh sync of the same fleet builds
write_config fresh
expect_status 0 "$TSGRAPHD" -c "$WORK/fresh.conf" sync
sqlite3 "$db" 'SELECT key, hash FROM object ORDER BY key' >"$WORK/a.keys"
sqlite3 "$WORK/fresh.db" 'SELECT key, hash FROM object ORDER BY key' >"$WORK/fresh.keys"
cmp -s "$WORK/a.keys" "$WORK/fresh.keys" ||
	fail "the graph after kills differs from a fresh sync: $(diff "$WORK/a.keys" "$WORK/fresh.keys" | head)"
echo "kill -9 ok"
