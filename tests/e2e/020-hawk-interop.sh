#!/usr/bin/env bash
# Hawk interoperability with an independent implementation (Debian's node-hawk):
#  1. vectors: our headers verified by node's server code and node's headers, answers and
#     stale-timestamp tsm verified by ours (tests/hawk-interop.js vectors);
#  2. live: `tsgraphd check` against a node HTTP server that authenticates with
#     Hawk.server.authenticate and signs its answer with Hawk.server.header — good key,
#     wrong key, and a server clock 300 s ahead (recovered through the tsm).
. "$(dirname "$0")/lib.sh"
TESTS_DIR=${TESTS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
HAWK_TOOL=$BUILD/hawk_tool
KEY=werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn

command -v node >/dev/null || { echo "node is missing (make deps)"; exit 1; }
[ -f /usr/share/nodejs/hawk/package.json ] || { echo "node-hawk is missing (make deps)"; exit 1; }
[ -x "$HAWK_TOOL" ] && [ -x "$TSGRAPHD" ] || { echo "build first: $HAWK_TOOL $TSGRAPHD"; exit 1; }

tmp=$WORK
server_pid=
on_exit 'if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi'

echo "== vectors"
timeout 60 node "$TESTS_DIR/hawk-interop.js" vectors "$HAWK_TOOL"

start_server() { # [skew seconds]
	rm -f "$tmp/port"
	node "$TESTS_DIR/hawk-interop.js" serve "$tmp/port" "" "${1:-0}" &
	server_pid=$!
	wait_file 5 "$tmp/port"
}
stop_server() {
	kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=
}
write_interop_config() { # key
	printf '%s\n' "$1" >"$tmp/key"
	chmod 600 "$tmp/key"
	cat >"$tmp/tsgraphd.conf" <<CONF
[threatstack]
org_name = Interop
org_id = 545d0293b620cd090d000023
user_id = 5537c4284e9684df7e000014
api_key_file = $tmp/key
api_url = http://127.0.0.1:$(cat "$tmp/port")
timeout = 5
[store]
path = $tmp/state.db
[webhook]
secret = 0123456789abcdef0123456789
CONF
	chmod 600 "$tmp/tsgraphd.conf"
}
run_check() { # expected exit, expected text
	local rc=0
	timeout 60 "$TSGRAPHD" -c "$tmp/tsgraphd.conf" check >"$tmp/out" 2>&1 || rc=$?
	sed 's/^/    /' "$tmp/out"
	[ "$rc" -eq "$1" ] || { echo "FAIL: exit $rc, want $1"; exit 1; }
	grep -q "$2" "$tmp/out" || { echo "FAIL: output lacks '$2'"; exit 1; }
	if grep -q "$KEY" "$tmp/out"; then echo "FAIL: the key was printed"; exit 1; fi
}

echo "== live: tsgraphd check against node's Hawk server"
start_server 0
write_interop_config "$KEY"
run_check 0 "credentials OK: Threat Stack accepted the Hawk signature and its answer verified"
echo "== live: wrong key"
write_interop_config "not-the-right-key-0000"
run_check 1 "credentials FAILED (authentication failed)"
stop_server

echo "== live: server clock 300 s ahead, recovered through node's tsm"
start_server 300
write_interop_config "$KEY"
run_check 0 "credentials OK"
grep -q "local clock is off by 300 s\|local clock is off by 299 s\|local clock is off by 301 s" "$tmp/out" ||
	{ echo "FAIL: no clock warning"; exit 1; }
stop_server
echo "hawk interop: all passed"
