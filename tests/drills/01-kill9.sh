#!/usr/bin/env bash
# Drill 1 — kill -9 of `tsgraphd run` at random points, over many rounds.
#
# The daemon (build/tsgraphd-test) syncs the fake Threat Stack and delivers to three sinks: a
# file (the change log), the fake JupiterOne (batch_bytes = 2KiB: many uploads per job; jobs
# stay FINALIZE_PENDING 150 ms) and a webhook sink to the webhook catcher (every event, json,
# backfill). Each round first changes the fleet (1 to 6 random changes, a burst of 8 new
# agents every 10th round), sometimes adds an alert and sends its webhook to the daemon's
# receiver, then starts the daemon and SIGKILLs it: at a random moment (0 to
# DRILL_KILL9_MAX_MS after the start), or, in 2 rounds of 3, at a randomly chosen crash
# point (stage, apply, deliver, post, inbox, jupiterone-created/-upload/-finalize/-finalized/
# -finished) with a random TSGRAPHD_TEST_CRASH_AFTER, or from outside if the point has not
# come 3 s later than the random moment. Then a last clean run
# (build/tsgraphd) drains everything and stops on SIGTERM, and:
#   - the store is what a fresh sync of the fleet builds;
#   - the change log holds every outbox seq exactly once, in order (0 repeated, 0 missing),
#     and replaying it gives the store's graph;
#   - the fake JupiterOne's graph is exactly the store's (no _key twice), no job failed;
#   - the webhook catcher got every change the sink's events select, at least once, in
#     order of first arrival; the only repeats are a change in flight at a kill;
#   - every alert the receiver acknowledged is in the store, confirmed in the inbox.
# Knobs: DRILL_KILL9_ROUNDS (60), DRILL_KILL9_MAX_MS (1500), DRILL_KILL9_AGENTS (60),
# DRILL_SEED.
. "$(dirname "$0")/lib.sh"
need_test_build
ROUNDS=${DRILL_KILL9_ROUNDS:-60}
MAX_MS=${DRILL_KILL9_MAX_MS:-1500}
AGENTS=${DRILL_KILL9_AGENTS:-60}
ARMED_MS=3000 # a round with a crash point armed waits this much longer for it
FLEET_MIN_AGENTS=$((AGENTS * 2 / 3))
figure rounds 0

start_fake --agents "$AGENTS" --cves 12 --alerts 20 --seed "$DRILL_SEED" --page-size 10
start_fake_j1 --finalize-ms 150
start_catcher
j1_sink_lines
printf '%s\n' "$SECRET" >"$WORK/webhook.secret"
chmod 600 "$WORK/webhook.secret"
write_config a "${J1_SINK[@]}" "batch_bytes = 2KiB" \
	'[sink.hook]' 'type = webhook' "url = $CATCHER_URL/hook" 'format = json' 'backfill = yes' \
	'[webhook]' 'listen = 127.0.0.1:0' 'tls = off' "secret_file = $WORK/webhook.secret" \
	'confirm_window = 3600'
db=$WORK/a.db

points=(none none none none none stage apply deliver post inbox jupiterone-created
	jupiterone-upload jupiterone-finalize jupiterone-finalized jupiterone-finished)
declare -A kills=()
acked=() posts=0

# phase_of LOG: what the daemon was doing when killed from outside, by its last info line.
phase_of() {
	local last
	last=$(grep -E 'info: (sync|sink)' "$1" | tail -n 1 || true)
	case $last in
	"") echo startup ;;
	*"sync started"* | *" listed "*) echo sync ;;
	*"sync: full run="* | *"sync: refresh run="* | *"sync: done "*) echo deliver-file ;;
	*"sink changes: "*) echo deliver-jupiterone ;;
	*"sink j1: "*) echo deliver-webhook ;;
	*"sink hook: "*) echo idle ;;
	*) echo other ;;
	esac
}
# after_for POINT: a random TSGRAPHD_TEST_CRASH_AFTER for a counted point.
after_for() {
	case $1 in
	stage) echo $((1 + $(rnd 300))) ;;
	deliver | post) echo $((1 + $(rnd 4))) ;; # a round brings a few changes
	jupiterone-upload) echo $((1 + $(rnd 12))) ;;
	*) echo 1 ;;
	esac
}

for ((round = 1; round <= ROUNDS; round++)); do
	mutate_fleet $((1 + $(rnd 6)))
	if [ $((round % 10)) = 0 ]; then
		for _ in 1 2 3 4 5 6 7 8; do fleet '{"op":"agent_add"}' >/dev/null; done
	fi
	point=$(pick points)
	alert=""
	if [ "$point" = inbox ] || [ "$(rnd 3)" = 0 ]; then
		agent=$(truth_fetch; truth_pick '.agents[].id')
		alert=$(fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" | jq -r .id)
	fi
	envs=()
	delay=$(rnd "$MAX_MS")
	if [ "$point" != none ]; then
		# armed: the crash point, or the kill from outside if the point comes too late
		envs=("TSGRAPHD_TEST_CRASH_AT=$point" "TSGRAPHD_TEST_CRASH_AFTER=$(after_for "$point")")
		delay=$((delay + ARMED_MS))
	fi
	: >"$WORK/a.log"
	run_daemon a "$TSGRAPHD_TEST" "${envs[@]}"
	deadline=$(($(now_ms) + delay))
	while kill -0 "$DAEMON_PID" 2>/dev/null && [ "$(now_ms)" -lt "$deadline" ]; do
		if [ -n "$alert" ] && grep -q 'webhook: listening on' "$WORK/a.log"; then
			port=$(sed -n 's/.*webhook: listening on .*:\([0-9]*\) (.*/\1/p' "$WORK/a.log" | head -n 1)
			code=$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' --data-binary "{\"id\":\"$alert\"}" \
				"http://127.0.0.1:$port$WEBHOOK_PATH/$SECRET" || true)
			posts=$((posts + 1))
			[ "$code" = 200 ] && acked+=("$alert")
			alert=""
		fi
		sleep 0.01
	done
	if kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -9 "$DAEMON_PID" 2>/dev/null || true
		phase="kill:$(phase_of "$WORK/a.log")"
	else
		phase="crash:$point"
	fi
	daemon_wait
	status=$DAEMON_STATUS
	cat "$WORK/a.log" >>"$WORK/all.log"
	if [ "$status" -ne 137 ]; then
		# it may have died by itself between the check and the kill: still a SIGKILL
		fail "round $round: the daemon exited $status, not by SIGKILL: $(tail -n 5 "$WORK/a.log")"
	fi
	if [ "${phase%%:*}" = crash ]; then
		tail -n 1 "$WORK/a.log" | grep -q "test hook: crash at $point" ||
			fail "round $round: killed, but not at $point: $(tail -n 3 "$WORK/a.log")"
	fi
	kills[$phase]=$((${kills[$phase]:-0} + 1))
	figure rounds "$round"
	[ $((round % 10)) = 0 ] && echo "  round $round: $(sqlite3 "$db" 'SELECT coalesce(max(seq), 0) FROM outbox' 2>/dev/null || echo 0) changes so far"
done

# The last, clean run: drains every sink and settles the inbox, then stops on SIGTERM.
: >"$WORK/a.log"
run_daemon a "$TSGRAPHD"
wait_until 60 "the last run's full sync" grep -q 'sync: done run=' "$WORK/a.log"
inbox_settled() { [ "$(sqlite3 "$db-inbox" "SELECT count(*) FROM alert WHERE state IN ('new', 'unconfirmed')")" = 0 ]; }
wait_until 120 "every sink caught up" sinks_caught_up "$WORK/a.conf"
wait_until 60 "the inbox settled" inbox_settled
kill -TERM "$DAEMON_PID"
daemon_wait
status=$DAEMON_STATUS
[ "$status" = 0 ] || fail "the last run exited $status: $(tail -n 5 "$WORK/a.log")"
cat "$WORK/a.log" >>"$WORK/all.log"

max=$(sqlite3 "$db" 'SELECT max(seq) FROM outbox')
converged a "after $ROUNDS rounds of kill -9"
figure changes "$max"
figure log_repeated "$LOG_DUPS"
figure log_missing "$LOG_GAPS"
figure j1_equals_store yes
j1_stats >"$WORK/j1-stats.json"
jq -e '.jobs_failed == 0' "$WORK/j1-stats.json" >/dev/null || fail "a JupiterOne job failed: $(cat "$WORK/j1-stats.json")"
figure j1_jobs "$(jq -r '"\(.jobs_created)(finished=\(.jobs_finished),aborted=\(.jobs_aborted),failed=\(.jobs_failed))"' "$WORK/j1-stats.json")"

# The webhook sink: each change its events select (all eight), by seq, against what came.
jq -r 'def ev:
	if .type == "threatstack_agent" then
		if .op == "create" then "agent.created" elif .op == "delete" then "agent.deleted"
		elif ((.changed // []) | index("status") or index("active")) then "agent.status"
		elif (((.changed // []) - ["lastReportedAt", "lastSeenOn"]) | length) > 0 then "agent.updated"
		else empty end
	elif .type == "threatstack_agent_identified_vulnerability" then
		if .op == "create" then "cve.identified" elif .op == "delete" then "cve.resolved" else empty end
	elif .type == "threatstack_alert" then
		if .op == "create" then "alert.created"
		elif .op == "update" and ((.changed // []) | index("dismissed")) and .object.dismissed == true
		then "alert.dismissed" else empty end
	else empty end;
	"\(.seq) \(ev)"' "$WORK/a.ndjson" >"$WORK/hook.want"
caught >"$WORK/caught.json"
jq -r '.[] | "\(.seq) \(.event)"' "$WORK/caught.json" >"$WORK/hook.got"
jq -e 'all(.[]; (.body | fromjson | .seq | tostring) == .seq)' "$WORK/caught.json" >/dev/null ||
	fail "a webhook's body is not the change its X-Tsgraphd-Seq names"
awk '!seen[$0]++' "$WORK/hook.got" >"$WORK/hook.first"
hook_lost=$(comm -23 <(sort -u "$WORK/hook.want") <(sort -u "$WORK/hook.got") | wc -l)
hook_extra=$(comm -13 <(sort -u "$WORK/hook.want") <(sort -u "$WORK/hook.got") | wc -l)
hook_repeats=$(($(wc -l <"$WORK/hook.got") - $(wc -l <"$WORK/hook.first")))
figure webhook_changes "$(wc -l <"$WORK/hook.want")"
figure webhook_lost "$hook_lost"
figure webhook_unexpected "$hook_extra"
figure webhook_repeated "$hook_repeats"
[ "$hook_lost" = 0 ] || fail "the webhook catcher lacks $hook_lost changes: $(comm -23 <(sort -u "$WORK/hook.want") <(sort -u "$WORK/hook.got") | head -5)"
[ "$hook_extra" = 0 ] || fail "the webhook catcher got $hook_extra changes it should not have (or with another event): $(comm -13 <(sort -u "$WORK/hook.want") <(sort -u "$WORK/hook.got") | head -5)"
cut -d' ' -f1 "$WORK/hook.first" | sort -n -c 2>/dev/null || fail "the webhooks did not first arrive in seq order"
[ "$hook_repeats" -le "${kills[crash:post]:-0}" ] || [ "$hook_repeats" -le $((ROUNDS + 1)) ] ||
	fail "$hook_repeats webhooks repeated, more than one per kill"

# Every alert the receiver acknowledged is in the store and confirmed.
for id in "${acked[@]}"; do
	[ "$(sqlite3 "$db" "SELECT count(*) FROM object WHERE type = 'threatstack_alert' AND json_extract(json, '\$.id') = '$id'")" = 1 ] ||
		fail "the acknowledged alert $id is not in the store"
	[ "$(sqlite3 "$db-inbox" "SELECT state FROM alert WHERE id = '$id'")" = confirmed ] ||
		fail "the acknowledged alert $id is not confirmed in the inbox"
done
figure webhooks_acked "${#acked[@]}/$posts"
figure alerts_lost 0
figure fleet_changes "$FLEET_OPS"
k=""
for p in $(printf '%s\n' "${!kills[@]}" | sort); do k="$k${k:+,}$p=${kills[$p]}"; done
figure kills "$k"
drill_pass
