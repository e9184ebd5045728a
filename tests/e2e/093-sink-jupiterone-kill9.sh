#!/usr/bin/env bash
# 093 — kill -9 of `tsgraphd sync` at each step of a JupiterOne job, at the point the test
# names (build/tsgraphd-test's crash points, include/tsgraphd/testhook.h), never on a timer:
#   jupiterone-created    the job created, nothing uploaded
#   jupiterone-upload     after the job's first upload, more to come (batch_bytes = 2KiB)
#   jupiterone-finalize   every upload accepted, before finalize
#   jupiterone-finalized  finalize accepted, the job FINALIZE_PENDING (the fake keeps it so
#                         for 2 s)
#   jupiterone-finished   the job FINISHED, before the sink's cursor moves
# Each round changes the fleet first. Per point: the process died by SIGKILL there (its last
# log line says so); the sync itself committed; the JupiterOne sink's cursor did not move and
# status shows the backlog; JupiterOne holds the killed job's changes only if it was
# finalized. The next sync (the installed binary) completes — after finalized it first waits
# for the dead run's job, still finalizing in the same scope — and JupiterOne's graph then
# equals the store's and a fresh sync's, with no _key twice. The dead run's job, named in
# the store, is aborted by the next sync while it awaits uploads (created, upload, finalize)
# and left to finish once finalized.
. "$(dirname "$0")/lib.sh"
need_test_build

start_fake --agents 40 --cves 10 --alerts 15 --seed 31 --page-size 20
start_fake_j1 --finalize-ms 2000
j1_sink_lines
write_config a "${J1_SINK[@]}" "batch_bytes = 2KiB"
db=$WORK/a.db
cursor() { sqlite3 "$db" "SELECT coalesce(max(seq), 0) FROM sink_cursor WHERE sink = 'j1'"; }

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
j1_equals_store "$db" first-sync

for point in jupiterone-created jupiterone-upload jupiterone-finalize jupiterone-finalized \
	jupiterone-finished; do
	# a fleet change with uploads of each kind: an agent offline, one removed, one added
	ids=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0:2][].id')
	fleet "{\"op\":\"agent_offline\",\"id\":\"${ids%%$'\n'*}\"}" >/dev/null
	fleet "{\"op\":\"agent_remove\",\"id\":\"${ids##*$'\n'}\"}" >/dev/null
	fleet '{"op":"agent_add"}' >/dev/null
	before=$(cursor)
	j1_graph "$J1_SCOPE" >"$WORK/j1-before.json"
	expect_status 137 env TSGRAPHD_TEST_CRASH_AT="$point" TSGRAPHD_TEST_CRASH_AFTER=1 \
		"$TSGRAPHD_TEST" -c "$WORK/a.conf" sync
	last=$(printf '%s\n' "$OUT" | tail -n 1)
	case "$last" in
	*"test hook: crash at $point"*) ;;
	*) fail "$point: killed, but not at its crash point: $OUT" ;;
	esac
	[ "$(sqlite3 "$db" 'SELECT result FROM sync_run ORDER BY id DESC LIMIT 1')" = ok ] ||
		fail "$point: the sync was not committed before the delivery"
	[ "$(cursor)" = "$before" ] || fail "$point: the cursor moved"
	max=$(sqlite3 "$db" 'SELECT max(seq) FROM outbox')
	[ "$max" -gt "$before" ] || fail "$point: nothing to deliver"
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
	expect_output "j1                   jupiterone delivered to seq $before, backlog $((max - before))"
	killed=$(j1_jobs | jq -r '.jobs[-1].id')
	[ "$(sqlite3 "$db" "SELECT open_job FROM sink_cursor WHERE sink = 'j1'")" = "$killed" ] ||
		fail "$point: the store does not name the killed run's job $killed"
	case $point in
	jupiterone-upload)
		j1_jobs | jq -e '.jobs[-1].status == "AWAITING_UPLOADS" and
			.jobs[-1].numEntitiesUploaded + .jobs[-1].numRelationshipsUploaded > 0' >/dev/null ||
			fail "$point: $(j1_jobs | jq -c '.jobs[-1]')" ;;
	jupiterone-finalized)
		j1_jobs | jq -e '.jobs[-1].status == "FINALIZE_PENDING"' >/dev/null ||
			fail "$point: the killed run's job is not finalizing: $(j1_jobs | jq -c '.jobs[-1]')" ;;
	jupiterone-finished)
		# the job applied before the kill: JupiterOne has the changes already
		j1_equals_store "$db" "$point (before the restart)" ;;
	*)
		# nothing of the killed job reached the graph
		j1_graph "$J1_SCOPE" | cmp -s - "$WORK/j1-before.json" ||
			fail "$point: the killed job changed JupiterOne's graph" ;;
	esac

	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
	if [ "$point" = jupiterone-finalized ]; then
		expect_output "is finalizing; waiting"
	fi
	[ "$(cursor)" = "$max" ] || fail "$point: the next sync did not deliver to seq $max"
	case $point in
	jupiterone-created | jupiterone-upload | jupiterone-finalize) want=ABORTED ;;
	*) want=FINISHED ;;
	esac
	status=$(j1_jobs | jq -r --arg id "$killed" '.jobs[] | select(.id == $id) | .status')
	[ "$status" = "$want" ] || fail "$point: the killed run's job is $status, not $want"
	[ -z "$(sqlite3 "$db" "SELECT open_job FROM sink_cursor WHERE sink = 'j1'")" ] ||
		fail "$point: a job is still named open after the delivery"
	j1_equals_store "$db" "$point"
	j1_equals_fresh_sync "$point"
	echo "$point: killed there, caught up without a duplicate"
done
j1_stats | jq -e '.jobs_failed == 0' >/dev/null || fail "a job failed: $(j1_stats)"
echo "093: ok"
