# Shared helpers for end-to-end scenarios. Source it: `. "$(dirname "$0")/lib.sh"`.
# Gives: $TSGRAPHD, $BUILD, a private $WORK directory removed on exit, assertions, bounded
# waits on a readiness signal (never a bare sleep), the fake Threat Stack and its fixtures, the
# fake JupiterOne.
set -euo pipefail
BUILD=${BUILD:-build}
TSGRAPHD=${TSGRAPHD:-$PWD/$BUILD/tsgraphd}
# The daemon with the pause and crash points (include/tsgraphd/testhook.h); need_test_build.
TSGRAPHD_TEST=${TSGRAPHD_TEST:-$PWD/$BUILD/tsgraphd-test}
WORK=$(mktemp -d /tmp/tsgraphd-e2e.XXXXXX)
_cleanup_hooks=()
_cleanup() {
	local h
	for h in "${_cleanup_hooks[@]}"; do eval "$h" || true; done
	rm -rf "$WORK"
}
trap _cleanup EXIT
on_exit() { _cleanup_hooks+=("$1"); }

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_status WANT CMD...: runs CMD, captures stdout+stderr in $OUT, checks the exit status.
expect_status() {
	local want=$1; shift
	set +e
	OUT=$("$@" 2>&1)
	local got=$?
	set -e
	[ "$got" -eq "$want" ] || fail "'$*' exited $got, want $want; output: $OUT"
}
expect_output() { # substring
	case "$OUT" in *"$1"*) ;; *) fail "output lacks '$1'; output: $OUT" ;; esac
}
expect_no_output() { # substring
	case "$OUT" in *"$1"*) fail "output has '$1'; output: $OUT" ;; *) ;; esac
}

need_test_build() {
	[ -x "$TSGRAPHD_TEST" ] || fail "$TSGRAPHD_TEST is missing (make $BUILD/tsgraphd-test)"
}

# --- waiting ---------------------------------------------------------------------------
now_ms() { echo $(($(date +%s%N) / 1000000)); }
# wait_until SECONDS DESCRIPTION CMD...: polls CMD every 20 ms until it succeeds; fails after
# SECONDS. A condition that must also hold meanwhile goes into CMD.
wait_until() {
	local limit=$(($(now_ms) + $1 * 1000)) what=$2
	shift 2
	until "$@"; do
		[ "$(now_ms)" -lt "$limit" ] || fail "timed out waiting for $what"
		sleep 0.02
	done
}
# wait_file SECONDS FILE: until FILE exists and is not empty (a port file, a pid file).
wait_file() { wait_until "$1" "$2" test -s "$2"; }

# --- the fake Threat Stack ---------------------------------------------------------------
FAKE=${FAKE:-$PWD/$BUILD/fake_threatstack}
FAKE_KEY=fake-api-key-0123456789abcdef
FAKE_ORG=545d0293b620cd090d000023
FAKE_USER=5537c4284e9684df7e000014

# _start_server NAME BINARY [options...]: starts a server of tests/server/ on an ephemeral
# port, stopped on exit; waits for its port file ($WORK/NAME.port) and sets SERVER_PID and
# SERVER_URL. Its output goes to $WORK/NAME.out and $WORK/NAME.err.
_start_server() {
	local name=$1 bin=$2
	shift 2
	rm -f "$WORK/$name.port"
	"$bin" --listen 127.0.0.1:0 --port-file "$WORK/$name.port" "$@" \
		>"$WORK/$name.out" 2>"$WORK/$name.err" &
	SERVER_PID=$!
	on_exit "kill $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null"
	local limit=$(($(now_ms) + 10000))
	until [ -s "$WORK/$name.port" ]; do
		[ "$(now_ms)" -lt "$limit" ] && kill -0 "$SERVER_PID" 2>/dev/null ||
			fail "the $name did not start: $(cat "$WORK/$name.err")"
		sleep 0.02
	done
	SERVER_URL=http://127.0.0.1:$(cat "$WORK/$name.port")
}

# start_fake [fake options...]: starts it on an ephemeral port; sets FAKE_URL and FAKE_PID.
start_fake() {
	_start_server fake "$FAKE" "$@"
	FAKE_PID=$SERVER_PID FAKE_URL=$SERVER_URL
}

# --- the fake JupiterOne -----------------------------------------------------------------
FAKE_J1=${FAKE_J1:-$PWD/$BUILD/fake_jupiterone}

# start_fake_j1 [fake_jupiterone options...]: starts it on an ephemeral port; sets J1_URL,
# J1_PID, and J1_TOKEN and J1_ACCOUNT (the defaults, or what --token, --token-file and
# --account say).
start_fake_j1() {
	J1_TOKEN=fake-j1-token-0123456789 J1_ACCOUNT=fake-account
	local prev="" a
	for a in "$@"; do
		case $prev in
		--token) J1_TOKEN=$a ;;
		--token-file) J1_TOKEN=$(cat "$a") ;;
		--account) J1_ACCOUNT=$a ;;
		esac
		case $a in
		--token=*) J1_TOKEN=${a#--token=} ;;
		--token-file=*) J1_TOKEN=$(cat "${a#--token-file=}") ;;
		--account=*) J1_ACCOUNT=${a#--account=} ;;
		esac
		prev=$a
	done
	rm -f "$WORK/j1.port"
	"$FAKE_J1" --listen 127.0.0.1:0 --port-file "$WORK/j1.port" "$@" \
		>"$WORK/j1.out" 2>"$WORK/j1.err" &
	J1_PID=$!
	on_exit "kill $J1_PID 2>/dev/null; wait $J1_PID 2>/dev/null"
	local limit=$(($(now_ms) + 10000))
	until [ -s "$WORK/j1.port" ]; do
		[ "$(now_ms)" -lt "$limit" ] && kill -0 "$J1_PID" 2>/dev/null ||
			fail "the fake JupiterOne did not start: $(cat "$WORK/j1.err")"
		sleep 0.02
	done
	J1_URL=http://127.0.0.1:$(cat "$WORK/j1.port")
}

# The fake JupiterOne's control endpoints: the graph of a scope (all scopes without one),
# the statistics, every job, a fault (JSON, see docs/testing.md); each prints the answer.
j1_graph() {
	if [ $# -gt 0 ]; then
		curl -sS -f --max-time 10 -G --data-urlencode "scope=$1" "$J1_URL/_fake/graph"
	else
		curl -sS -f --max-time 10 "$J1_URL/_fake/graph"
	fi
}
j1_stats() { curl -sS -f --max-time 10 "$J1_URL/_fake/stats"; }
j1_jobs() { curl -sS -f --max-time 10 "$J1_URL/_fake/jobs"; }
j1_fault() { curl -sS -f --max-time 10 -d "$1" "$J1_URL/_fake/fault" >/dev/null; }
j1_reset_stats() { curl -sS -f --max-time 10 -X POST "$J1_URL/_fake/reset-stats" >/dev/null; }

# write_config NAME [extra lines...]: $WORK/NAME.conf against the fake, with its own store
# ($WORK/NAME.db) and change log ($WORK/NAME.ndjson).
write_config() {
	local name=$1; shift
	printf '%s\n' "$FAKE_KEY" >"$WORK/api.key"
	chmod 600 "$WORK/api.key"
	{
		printf '[threatstack]\norg_name = Fake Org\norg_id = %s\nuser_id = %s\n' "$FAKE_ORG" "$FAKE_USER"
		printf 'api_key_file = %s\napi_url = %s\nrate_limit = 6000\ntimeout = 10\n' "$WORK/api.key" "$FAKE_URL"
		printf '[store]\npath = %s\n' "$WORK/$name.db"
		printf '[sink.changes]\ntype = file\npath = %s\n' "$WORK/$name.ndjson"
		local line
		for line in "$@"; do printf '%s\n' "$line"; done
	} >"$WORK/$name.conf"
}

# fleet JSON / fault JSON: drive the fake's control endpoints; prints the answer.
fleet() { curl -sS -f --max-time 10 -d "$1" "$FAKE_URL/_fake/fleet"; }
fault() { curl -sS -f --max-time 10 -d "$1" "$FAKE_URL/_fake/fault" >/dev/null; }
fake_truth() { curl -sS -f --max-time 10 "$FAKE_URL/_fake/fleet"; }
# requests PATH: how many API requests the fake saw for an endpoint template (by_path).
requests() { curl -sS -f --max-time 10 "$FAKE_URL/_fake/stats" | jq -r --arg p "$1" '.by_path[$p]'; }
more_requests() { [ "$(requests "$1")" -gt "$2" ]; } # PATH N: more than N so far
reset_stats() { curl -sS -f --max-time 10 -X POST "$FAKE_URL/_fake/reset-stats" >/dev/null; }

# lines_since FILE N: the change-log lines after the first N.
lines_since() { tail -n +"$(($2 + 1))" "$1"; }
count_lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

# replay_equals_store LOG DB: replaying the change log from empty gives exactly the stored
# graph (same keys, same objects).
replay_equals_store() {
	local log=$1 db=$2
	jq -n -S 'reduce inputs as $c ({}; if $c.op == "delete" then del(.[$c.key])
		else .[$c.key] = $c.object end)' "$log" >"$WORK/replayed.json"
	sqlite3 "$db" 'SELECT json FROM object' | jq -s -S 'map({(._key): .}) | add // {}' \
		>"$WORK/stored.json"
	cmp -s "$WORK/replayed.json" "$WORK/stored.json" ||
		fail "replaying $log does not give the store's graph: $(diff "$WORK/replayed.json" "$WORK/stored.json" | head -20)"
}

# --- the webhook catcher (tests/server/webhook_catcher.c) --------------------------------
CATCHER=${CATCHER:-$PWD/$BUILD/webhook_catcher}

# start_catcher [options...]: starts it on an ephemeral port; sets CATCHER_URL and
# CATCHER_PID. It records every POST outside /_catcher/ and answers 200.
start_catcher() {
	_start_server catcher "$CATCHER" "$@"
	CATCHER_PID=$SERVER_PID CATCHER_URL=$SERVER_URL
}
# caught: the POSTs it accepted, as a JSON array of {path, timestamp, signature, event, seq,
# content_type, body}.
caught() { curl -sS -f --max-time 10 "$CATCHER_URL/_catcher/requests"; }
caught_count() { caught | jq length; }
# catcher_fault JSON: {"status":503,"count":N,"retry_after":S} for the next N POSTs.
catcher_fault() { curl -sS -f --max-time 10 -d "$1" "$CATCHER_URL/_catcher/fault" >/dev/null; }
catcher_stat() { curl -sS -f --max-time 10 "$CATCHER_URL/_catcher/stats" | jq -r ".$1"; }
# --- tsgraphd's JupiterOne sink against the fake JupiterOne ---------------------------------
# The scope the sink uses by default: threatstack-<org_id>.
J1_SCOPE=threatstack-$FAKE_ORG
# j1_sink_lines: sets J1_SINK, the [sink.j1] lines for write_config against the running fake
# JupiterOne (its token in a 0600 file): write_config a "${J1_SINK[@]}" [more lines...].
j1_sink_lines() {
	printf '%s\n' "$J1_TOKEN" >"$WORK/j1.token"
	chmod 600 "$WORK/j1.token"
	J1_SINK=("[sink.j1]" "type = jupiterone" "url = $J1_URL" "account = $J1_ACCOUNT"
		"token_file = $WORK/j1.token")
}
# j1_stat NAME: one number of the fake JupiterOne's statistics (jq path, e.g. .jobs_created).
j1_stat() { j1_stats | jq -r "$1"; }

# by_key: objects (a JSON array on stdin) as one object keyed by _key, sorted; fails on a
# _key seen twice.
_by_key() { jq -S 'if (map(._key) | length) != (map(._key) | unique | length)
	then error("a _key twice") else map({(._key): .}) | add // {} end'; }

# j1_equals_store DB WHAT: the fake JupiterOne's graph of $J1_SCOPE holds exactly the store's
# objects (same keys, same JSON), each once.
j1_equals_store() {
	local db=$1 what=$2
	j1_graph "$J1_SCOPE" | jq '.entities + .relationships' | _by_key >"$WORK/j1.json" ||
		fail "$what: the fake JupiterOne's graph holds a _key twice"
	sqlite3 "$db" 'SELECT json FROM object' | jq -s . | _by_key >"$WORK/stored.json"
	cmp -s "$WORK/j1.json" "$WORK/stored.json" ||
		fail "$what: the fake JupiterOne's graph is not the store's: $(diff "$WORK/j1.json" "$WORK/stored.json" | head -20)"
}

# j1_equals_fresh_sync WHAT: the fake JupiterOne's graph of $J1_SCOPE is exactly the graph a
# fresh full sync of the fake Threat Stack builds now (a new store, no JupiterOne sink).
j1_equals_fresh_sync() {
	rm -f "$WORK"/fresh.db* "$WORK/fresh.ndjson"
	write_config fresh
	expect_status 0 "$TSGRAPHD" -c "$WORK/fresh.conf" sync
	j1_equals_store "$WORK/fresh.db" "$1 (against a fresh sync)"
}

# need_datamodel: the pinned @jupiterone/data-model packages (tests/package.json) in
# tests/node_modules, installed on first use; fails loudly, within about two minutes, when
# they cannot be installed: a data-model check that silently skips would be worse than none.
need_datamodel() {
	local tests=${TESTS_DIR:-$PWD/tests}
	command -v node >/dev/null || fail "node is required"
	_have_datamodel() {
		(cd "$tests/datamodel" && node -e 'require.resolve("@jupiterone/data-model"); require.resolve("ajv")') \
			>/dev/null 2>&1
	}
	_have_datamodel && return 0
	command -v npm >/dev/null || fail "npm is required to install the data model"
	echo "installing the pinned data-model packages into tests/node_modules"
	timeout 110 npm ci --prefix "$tests" --no-audit --no-fund --fetch-retries=1 \
		--fetch-timeout=30000 >"$WORK/npm.log" 2>&1 ||
		fail "cannot install @jupiterone/data-model (is the package registry reachable?): $(tail -n 20 "$WORK/npm.log")"
	_have_datamodel || fail "data-model packages still missing after install"
}
