#!/usr/bin/env bash
# systemd socket activation without systemd as PID 1: systemd-socket-activate listens, and on
# the first connection starts `tsgraphd run` with the socket (LISTEN_FDS); that first request
# is served over TLS by the daemon on the socket it was given, and SIGTERM stops it with exit
# 0. Plain HTTP on a passed socket bound to all addresses is refused (exit 2), and so are two
# sockets.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"
command -v systemd-socket-activate >/dev/null || fail "systemd-socket-activate is missing (make deps)"

start_fake --agents 5 --cves 2 --alerts 2
make_cert
write_receiver_config a

# activate ADDRESS... -- ARGS: systemd-socket-activate on a free port (tried at random) for
# each ADDRESS (host part; the port is appended), running tsgraphd ARGS; sets SA_PID, PORT.
activate() {
	local hosts=() port tries
	while [ "$1" != -- ]; do hosts+=("$1"); shift; done
	shift
	for tries in $(seq 20); do
		port=$((20000 + RANDOM % 40000))
		local listen=()
		for h in "${hosts[@]}"; do listen+=(-l "$h:$port"); port=$((port + 1)); done
		port=$((port - ${#hosts[@]}))
		: >"$WORK/sa.log"
		systemd-socket-activate "${listen[@]}" "$TSGRAPHD" "$@" >>"$WORK/sa.log" 2>&1 &
		SA_PID=$!
		local limit=$(($(now_ms) + 5000))
		while ! grep -q 'Listening on' "$WORK/sa.log" && kill -0 "$SA_PID" 2>/dev/null &&
			[ "$(now_ms)" -lt "$limit" ]; do sleep 0.02; done
		if grep -q 'Listening on' "$WORK/sa.log"; then
			on_exit "kill -9 $SA_PID 2>/dev/null"
			PORT=$port
			return 0
		fi
		wait "$SA_PID" 2>/dev/null || true
	done
	fail "systemd-socket-activate found no free port: $(cat "$WORK/sa.log")"
}

activate 127.0.0.1 -- -c "$WORK/a.conf" run
URL=https://127.0.0.1:$PORT
# the first connection starts the daemon, which answers it on the socket it was handed
expect_post 200 "$(alert_json sa-1)"
grep -q 'webhook: listening on the socket systemd passed, port '"$PORT" "$WORK/sa.log" ||
	fail "the daemon did not say it used the passed socket: $(cat "$WORK/sa.log")"
[ "$(inbox a "SELECT count(*) FROM alert WHERE id = 'sa-1'")" = 1 ] || fail "not in the inbox"
[ "$(tcurl -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ] || fail "healthz"
kill -TERM "$SA_PID"
status=0
wait "$SA_PID" || status=$?
[ "$status" -eq 0 ] || fail "exit $status after SIGTERM: $(tail -5 "$WORK/sa.log")"
grep -q 'daemon: stopped' "$WORK/sa.log" || fail "no orderly stop: $(tail -5 "$WORK/sa.log")"
echo "socket activation: served the first request on the passed socket, SIGTERM exit 0"

# plain HTTP on a passed socket that is not loopback: refused at start (exit 2)
write_config plain '[webhook]' 'listen = 127.0.0.1:0' 'tls = off' "secret_file = $WORK/webhook.secret"
activate 0.0.0.0 -- -c "$WORK/plain.conf" run
curl -s --max-time 5 -o /dev/null "http://127.0.0.1:$PORT/healthz" || true
status=0
wait "$SA_PID" || status=$?
[ "$status" -eq 2 ] || fail "plain HTTP on 0.0.0.0: exit $status: $(cat "$WORK/sa.log")"
grep -q 'tls = off, but the listen socket is not bound to a loopback address' "$WORK/sa.log" ||
	fail "no reason given: $(cat "$WORK/sa.log")"
echo "plain HTTP on a passed non-loopback socket: refused, exit 2"

# two sockets: refused (exit 2)
activate 127.0.0.1 127.0.0.1 -- -c "$WORK/a.conf" run
curl -s --max-time 5 -o /dev/null "https://127.0.0.1:$PORT/healthz" || true
status=0
wait "$SA_PID" || status=$?
[ "$status" -eq 2 ] || fail "two sockets: exit $status: $(cat "$WORK/sa.log")"
grep -q 'socket activation passed 2 sockets' "$WORK/sa.log" || fail "no reason: $(cat "$WORK/sa.log")"
echo "two passed sockets: refused, exit 2"
