# Shared helpers for the fault drills (tests/drills/NN-*.sh, run by `make drills` through
# tests/drills/run-drills.sh). Source it: `. "$(dirname "$0")/lib.sh"`; it sources
# tests/e2e/lib.sh and lib-receiver.sh (the fakes, the daemon, the assertions).
# Gives: a seeded random stream (DRILL_SEED, printed at the start: the same seed replays the
# same fleet changes and choices; the moments of the kills still depend on the machine),
# figures collected as the drill goes and one summary line at its end:
#   DRILL <name>: PASS in 42s (seed 1234) rounds=50 lost=0 ...
#   DRILL <name>: FAIL in 42s (seed 1234) rounds=17 ... -- the reason
# random fleet changes against the fake Threat Stack, and checks that every sink converged.
_drills_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$_drills_dir/../e2e/lib.sh"
. "$_drills_dir/../e2e/lib-receiver.sh"

DRILL_SEED=${DRILL_SEED:-$(($(date +%s%N) / 1000 % 1000000))}
RANDOM=$DRILL_SEED
DRILL_NAME=$(basename "$0" .sh)
_drill_t0=$(now_ms)
_drill_figures=()
_drill_passed=0
echo "DRILL $DRILL_NAME: seed $DRILL_SEED (DRILL_SEED=$DRILL_SEED replays it)"

# figure KEY VALUE: a figure for the summary line (a later value for the same key replaces it).
figure() {
	local i
	for i in "${!_drill_figures[@]}"; do
		if [ "${_drill_figures[$i]%%=*}" = "$1" ]; then
			_drill_figures[i]="$1=$2"
			return 0
		fi
	done
	_drill_figures+=("$1=$2")
}
_drill_summary() { # PASS|FAIL
	echo "DRILL $DRILL_NAME: $1 in $((($(now_ms) - _drill_t0) / 1000))s (seed $DRILL_SEED) ${_drill_figures[*]}"
}
# drill_pass: the summary line; the drill then exits 0.
drill_pass() {
	_drill_passed=1
	_drill_summary PASS
}
# Any other end (fail, a command failing under set -e, the runner's timeout) prints FAIL.
_drill_end() { [ "$_drill_passed" = 1 ] || _drill_summary FAIL >&2; }
trap '_drill_end; _cleanup' EXIT
trap 'echo "DRILL $DRILL_NAME: stopped by a signal (its time bound?)" >&2; exit 124' TERM INT

# rnd N: a random number in [0, N) from the seeded stream (N <= 32768 * 32768).
rnd() { echo $(((RANDOM * 32768 + RANDOM) % $1)); }
# pick ARRAY-NAME: one element of the named array, at random.
pick() {
	local -n _a=$1
	echo "${_a[$(rnd ${#_a[@]})]}"
}

# --- fleet changes -----------------------------------------------------------------------
# truth_pick JQ: one of the values the jq filter gives on the fake's truth as last fetched
# (truth_fetch), at random; empty when there is none.
truth_fetch() { fake_truth >"$WORK/truth.json"; }
truth_pick() {
	jq -r --argjson r "$(rnd 1000000000)" "[$1] | if length > 0 then .[\$r % length] else empty end" "$WORK/truth.json"
}
FLEET_MIN_AGENTS=${FLEET_MIN_AGENTS:-40}
FLEET_OPS=0
# mutate_fleet N: N random changes of the fake's fleet (status, new and removed agents, CVEs
# found and fixed, tags, hostnames, alerts new and dismissed). Removals stop at
# FLEET_MIN_AGENTS agents, so the mass-delete guard never holds a round back. The fleet is
# read once: a change aimed at what an earlier one removed is a 404, ignored. Counts FLEET_OPS.
mutate_fleet() {
	local n=$1 i op id cve al
	truth_fetch
	for ((i = 0; i < n; i++)); do
		op=$(rnd 12)
		case $op in
		0 | 1)
			id=$(truth_pick '.agents[] | select(.status == "online") | .id')
			[ -n "$id" ] && fleet "{\"op\":\"agent_offline\",\"id\":\"$id\"}" >/dev/null || true ;;
		2)
			id=$(truth_pick '.agents[] | select(.status == "offline") | .id')
			[ -n "$id" ] && fleet "{\"op\":\"agent_online\",\"id\":\"$id\"}" >/dev/null || true ;;
		3)
			fleet '{"op":"agent_add"}' >/dev/null ;;
		4)
			id=$(truth_pick "if (.agents | length) > $FLEET_MIN_AGENTS then .agents[].id else empty end")
			[ -n "$id" ] && fleet "{\"op\":\"agent_remove\",\"id\":\"$id\"}" >/dev/null || true ;;
		5)
			id=$(truth_pick '.agents[].id')
			cve=CVE-2099-$((10000 + $(rnd 40)))
			fleet "{\"op\":\"cve_add\",\"agent\":\"$id\",\"cve\":\"$cve\"}" >/dev/null || true ;;
		6)
			al=$(truth_pick '.cves[] | .cveNumber as $c | .agents[] | "\(.agentId) \($c)"')
			[ -n "$al" ] && fleet "{\"op\":\"cve_remove\",\"agent\":\"${al% *}\",\"cve\":\"${al#* }\"}" >/dev/null || true ;;
		7)
			id=$(truth_pick '.agents[].id')
			fleet "{\"op\":\"tag_set\",\"id\":\"$id\",\"key\":\"drill\",\"value\":\"v$(rnd 1000)\"}" >/dev/null || true ;;
		8)
			id=$(truth_pick '.agents[].id')
			fleet "{\"op\":\"agent_set\",\"id\":\"$id\",\"hostname\":\"drill-host-$(rnd 100000).example.com\"}" >/dev/null || true ;;
		9 | 10)
			if [ "$(rnd 5)" = 0 ]; then
				fleet '{"op":"alert_add","agent":null}' >/dev/null
			else
				id=$(truth_pick '.agents[].id')
				fleet "{\"op\":\"alert_add\",\"agent\":\"$id\"}" >/dev/null || true
			fi ;;
		11)
			al=$(truth_pick '.alerts[] | select(.isDismissed == false) | .id')
			[ -n "$al" ] && fleet "{\"op\":\"alert_dismiss\",\"id\":\"$al\"}" >/dev/null || true ;;
		esac
		FLEET_OPS=$((FLEET_OPS + 1))
	done
}

# --- what every drill checks at its end ---------------------------------------------------
# log_is_complete LOG DB: the change log holds every outbox seq from 1 to the store's last
# exactly once, in order; sets LOG_DUPS and LOG_GAPS (both 0 when it passes).
log_is_complete() {
	local log=$1 db=$2 max lines uniq
	max=$(sqlite3 "$db" 'SELECT coalesce(max(seq), 0) FROM outbox')
	lines=$(count_lines "$log")
	uniq=$(jq -r .seq "$log" | sort -n -u | wc -l)
	LOG_DUPS=$((lines - uniq))
	LOG_GAPS=$((max - uniq))
	[ "$(jq -s --argjson n "$max" '[.[].seq] == [range(1; $n + 1)]' "$log")" = true ] ||
		fail "the change log is not every seq 1..$max once and in order ($LOG_DUPS repeated, $LOG_GAPS missing)"
}

# sinks_caught_up CONF: `tsgraphd status` shows every sink at backlog 0 (for wait_until).
sinks_caught_up() {
	local out
	out=$("$TSGRAPHD" -c "$1" status 2>&1) || return 1
	! printf '%s\n' "$out" | grep -E '^  [^ ].* backlog ' | grep -qv 'backlog 0$'
}

# converged NAME WHAT: the store NAME ($WORK/NAME.db) is what a fresh sync of the fake builds
# now, its change log is complete and replays to it, and the fake JupiterOne (when started)
# holds exactly its graph.
converged() {
	local db=$WORK/$1.db what=$2
	log_is_complete "$WORK/$1.ndjson" "$db"
	replay_equals_store "$WORK/$1.ndjson" "$db"
	rm -f "$WORK"/fresh.db* "$WORK/fresh.ndjson"
	write_config fresh
	expect_status 0 "$TSGRAPHD" -c "$WORK/fresh.conf" sync
	sqlite3 "$db" 'SELECT key, hash FROM object ORDER BY key' >"$WORK/a.keys"
	sqlite3 "$WORK/fresh.db" 'SELECT key, hash FROM object ORDER BY key' >"$WORK/fresh.keys"
	cmp -s "$WORK/a.keys" "$WORK/fresh.keys" ||
		fail "$what: the store is not what a fresh sync builds: $(diff "$WORK/a.keys" "$WORK/fresh.keys" | head)"
	if [ -n "${J1_URL:-}" ]; then
		j1_equals_store "$db" "$what"
	fi
}

# run_daemon NAME BINARY [VAR=value...]: `BINARY -c $WORK/NAME.conf run` in the background,
# its output appended to $WORK/NAME.log; sets DAEMON_PID. Waits for nothing. A wrapper
# subshell waits for it, so that its death by SIGKILL is no message of this shell's:
# daemon_wait sets its exit status.
run_daemon() {
	local name=$1 bin=$2
	shift 2
	rm -f "$WORK/daemon.pid" "$WORK/daemon.status"
	(
		env "$@" "$bin" -c "$WORK/$name.conf" run >>"$WORK/$name.log" 2>&1 &
		echo $! >"$WORK/daemon.pid"
		s=0
		wait $! 2>/dev/null || s=$?
		echo "$s" >"$WORK/daemon.status"
	) &
	DAEMON_WRAPPER=$!
	wait_file 10 "$WORK/daemon.pid"
	DAEMON_PID=$(cat "$WORK/daemon.pid")
	on_exit "kill -9 $DAEMON_PID 2>/dev/null; wait $DAEMON_WRAPPER 2>/dev/null"
}
# daemon_wait: waits for the daemon of run_daemon to end; sets DAEMON_STATUS, its exit status
# (not in a $(...): a subshell cannot wait for this shell's children).
daemon_wait() {
	wait "$DAEMON_WRAPPER" 2>/dev/null || true
	DAEMON_STATUS=$(cat "$WORK/daemon.status")
}
# health_of: /healthz of the daemon at $URL (plain HTTP): the status code; the body in
# $WORK/health.
health_of() { curl -sS --max-time 10 -o "$WORK/health" -w '%{http_code}' "$URL/healthz" || true; }
