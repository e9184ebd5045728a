#!/usr/bin/env bash
# SIGTERM to `tsgraphd sync` (a) in a 429 wait whose x-rate-limit-reset is 300 s, (b) in an
# answer that stalls for a minute, (c) inside the apply of a large first sync, its changes
# written and not committed (build/tsgraphd-test's pause point TSGRAPHD_TEST_PAUSE_AT=apply,
# see include/tsgraphd/testhook.h). Each must exit 3 within 2 s of the signal, say the sync was interrupted,
# leave the store and the change log as they were (outbox max seq, object count, lines),
# and `tsgraphd status` must show the run as interrupted. Every wait polls a readiness
# signal (the fake's request counts, the log line, the process) with a bound; a later
# sync then completes and the change log replays to exactly the stored graph.
. "$(dirname "$0")/lib.sh"
need_test_build
# 2 s for the product; a sanitizer build (BUILD=build/asan) runs several times slower, and
# rolling back a large apply there takes longer by as much.
SIGNAL_TO_EXIT_MAX_MS=2000
case $BUILD in *asan*) SIGNAL_TO_EXIT_MAX_MS=8000 ;; esac

# syncing CMD...: CMD, failing at once if the sync under test has exited meanwhile.
syncing() {
	kill -0 "$pid" 2>/dev/null || fail "sync exited while waiting: $(cat "$WORK/sync.err")"
	"$@"
}
log_has() { grep -q "$1" "$WORK/sync.err"; }
alive() { kill -0 "$pid" 2>/dev/null && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; }
# state NAME: outbox max seq, object count and change-log lines of that config's store.
state() {
	local db=$WORK/$1.db
	if [ -f "$db" ]; then
		sqlite3 "$db" 'SELECT (SELECT coalesce(max(seq), 0) FROM outbox), (SELECT count(*) FROM object)'
	else
		echo '0|0'
	fi
	count_lines "$WORK/$1.ndjson"
}

# start_sync BIN NAME: `BIN -c NAME.conf sync` in the background; sets pid.
start_sync() {
	: >"$WORK/sync.out"
	: >"$WORK/sync.err"
	"$1" -c "$WORK/$2.conf" sync >"$WORK/sync.out" 2>"$WORK/sync.err" &
	pid=$!
	on_exit "kill -9 $pid 2>/dev/null"
}

# sigterm_and_check NAME BEFORE: SIGTERM now; exit 3 within the bound, said so, store as
# BEFORE, the run interrupted.
sigterm_and_check() {
	local name=$1 before=$2 t0 elapsed status
	t0=$(now_ms)
	kill -TERM "$pid"
	while alive && [ $(($(now_ms) - t0)) -lt 10000 ]; do sleep 0.01; done
	elapsed=$(($(now_ms) - t0))
	alive && fail "$name: sync still running 10 s after SIGTERM"
	set +e
	wait "$pid"
	status=$?
	set -e
	OUT="$(cat "$WORK/sync.out" "$WORK/sync.err")"
	[ "$status" -eq 3 ] || fail "$name: exit status $status, want 3; output: $OUT"
	[ "$elapsed" -le "$SIGNAL_TO_EXIT_MAX_MS" ] ||
		fail "$name: exited $elapsed ms after SIGTERM (max $SIGNAL_TO_EXIT_MAX_MS)"
	expect_output "sync interrupted by Terminated: nothing applied"
	[ "$(state "$name")" = "$before" ] ||
		fail "$name: the store changed: before '$before', after '$(state "$name")'"
	expect_status 0 "$TSGRAPHD" -c "$WORK/$name.conf" status
	[ "$(printf '%s\n' "$OUT" | awk '/^  #/ { print $3; exit }')" = interrupted ] ||
		fail "$name: the last run is not 'interrupted': $OUT"
	expect_output "interrupted: nothing applied"
	echo "$name: exit 3 in $elapsed ms, nothing applied"
}

start_fake --agents 60 --cves 10 --alerts 20 --seed 47 --page-size 20
write_config a
# a minute of stall must not end by the client's own timeout first
sed -i 's/^timeout = 10$/timeout = 120/' "$WORK/a.conf"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
added=$(fleet '{"op":"agent_add"}' | jq -r .id) # something to apply

# (a) a 429 whose reset is 300 s: the client waits (its cap, 60 s); SIGTERM ends the wait
before=$(state a)
n=$(requests /v2/agents)
fault '{"kind":"429","count":1,"ms":300000,"path":"/v2/agents"}'
start_sync "$TSGRAPHD" a
wait_until 10 "the 429" syncing more_requests /v2/agents "$n"
sigterm_and_check a "$before"
[ "$(requests /v2/agents)" -eq $((n + 1)) ] || fail "(a) the request was retried after SIGTERM"

# (b) the vulnerabilities listing's answer stalls for a minute
fault '{"kind":"clear"}'
n=$(requests /v2/vulnerabilities)
fault '{"kind":"slow","count":1,"ms":60000,"path":"/v2/vulnerabilities"}'
start_sync "$TSGRAPHD" a
wait_until 10 "the stalled request" syncing more_requests /v2/vulnerabilities "$n"
sigterm_and_check a "$before"
fault '{"kind":"clear"}'

# the interrupted runs left nothing half-done: the next sync applies the change, whole
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
[ "$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE key = 'threatstack:agent:$added'")" = 1 ] ||
	fail "the sync after the interruptions did not create the new agent"
replay_equals_store "$WORK/a.ndjson" "$WORK/a.db"

# (c) a large first sync, paused inside its apply (every change written, not committed)
kill "$FAKE_PID"
wait "$FAKE_PID" 2>/dev/null || true
start_fake --agents 5000 --cves 30 --alerts 200 --seed 48 --page-size 100
write_config big
before=$(state big)
TSGRAPHD_TEST_PAUSE_AT=apply start_sync "$TSGRAPHD_TEST" big
wait_until 120 "the apply" syncing log_has "test hook: paused at apply"
sigterm_and_check big "$before"
# and it was a large apply: the same sync, uninterrupted, creates more than 10,000 objects
expect_status 0 "$TSGRAPHD" -c "$WORK/big.conf" sync
created=$(printf '%s\n' "$OUT" | sed -n 's/^sync: \([0-9]*\) created.*/\1/p')
[ "${created:-0}" -gt 10000 ] || fail "(c) the first sync created only ${created:-0}: $OUT"
replay_equals_store "$WORK/big.ndjson" "$WORK/big.db"
echo "sigterm ok"
