# Helpers for the receiver's scenarios (`tsgraphd run`). Source it after lib.sh.
# Gives: a self-signed certificate for 127.0.0.1 made with openssl, a config with a
# [webhook] section, the daemon started in the background and waited for (its port read
# from its log line), curl over TLS with that certificate as the only trust anchor, and the
# inbox as SQL.
SECRET=whsec-0123456789abcdef0123456789
WEBHOOK_PATH=/v1/webhooks/threatstack

# make_cert: $WORK/pki/cert.pem and key.pem (0600), self-signed, for IP 127.0.0.1.
make_cert() {
	mkdir -p "$WORK/pki"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tsgraphd receiver test" \
		-addext "subjectAltName=IP:127.0.0.1" -keyout "$WORK/pki/key.pem" \
		-out "$WORK/pki/cert.pem" 2>/dev/null
	chmod 600 "$WORK/pki/key.pem"
}

# write_receiver_config NAME [extra lines...]: write_config NAME plus a [webhook] section on
# an ephemeral loopback port with TLS (make_cert first) and the secret in a file. Extra lines
# may reopen any section.
write_receiver_config() {
	local name=$1; shift
	printf '%s\n' "$SECRET" >"$WORK/webhook.secret"
	chmod 600 "$WORK/webhook.secret"
	write_config "$name" '[webhook]' 'listen = 127.0.0.1:0' "tls_cert = $WORK/pki/cert.pem" \
		"tls_key = $WORK/pki/key.pem" "secret_file = $WORK/webhook.secret" "$@"
}

# start_daemon NAME [env assignments...]: `tsgraphd -c $WORK/NAME.conf run` in the background,
# log in $WORK/NAME.log; waits for the receiver's line and sets DAEMON_PID, PORT and URL.
# TSGRAPHD_RUN may name another binary (the test build).
start_daemon() {
	local name=$1; shift
	: >"$WORK/$name.log"
	env "$@" "${TSGRAPHD_RUN:-$TSGRAPHD}" -c "$WORK/$name.conf" run >>"$WORK/$name.log" 2>&1 &
	DAEMON_PID=$!
	on_exit "kill -9 $DAEMON_PID 2>/dev/null; wait $DAEMON_PID 2>/dev/null"
	local limit=$(($(now_ms) + 20000))
	until grep -q 'webhook: listening on' "$WORK/$name.log"; do
		[ "$(now_ms)" -lt "$limit" ] && kill -0 "$DAEMON_PID" 2>/dev/null ||
			fail "the daemon did not start: $(cat "$WORK/$name.log")"
		sleep 0.02
	done
	PORT=$(sed -n 's/.*webhook: listening on .*:\([0-9]*\) (.*/\1/p; s/.*systemd passed, port \([0-9]*\).*/\1/p' \
		"$WORK/$name.log" | head -n 1)
	[ -n "$PORT" ] || fail "no port in the daemon's log: $(cat "$WORK/$name.log")"
	URL=https://127.0.0.1:$PORT
}

# stop_daemon NAME: SIGTERM, and the daemon must exit 0 within 20 s.
stop_daemon() {
	local name=$1 status=0 limit=$(($(now_ms) + 20000))
	kill -TERM "$DAEMON_PID"
	while kill -0 "$DAEMON_PID" 2>/dev/null; do
		[ "$(now_ms)" -lt "$limit" ] || fail "the daemon did not stop: $(tail -5 "$WORK/$name.log")"
		sleep 0.02
	done
	wait "$DAEMON_PID" || status=$?
	[ "$status" -eq 0 ] || fail "the daemon exited $status: $(tail -5 "$WORK/$name.log")"
}

# tcurl ARGS...: curl over TLS trusting only the test certificate.
tcurl() { curl -sS --max-time 20 --cacert "$WORK/pki/cert.pem" "$@"; }

# post BODY [curl args...]: POSTs BODY to the webhook with the secret in the path; prints the
# HTTP status; the answer's body in $WORK/resp, its headers in $WORK/resp.h.
post() {
	local body=$1; shift
	tcurl -o "$WORK/resp" -D "$WORK/resp.h" -w '%{http_code}' --data-binary "$body" "$@" \
		"$URL$WEBHOOK_PATH/$SECRET" || true
}
# expect_post WANT BODY [curl args...]: post, and the status must be WANT.
expect_post() {
	local want=$1 got; shift
	got=$(post "$@")
	[ "$got" = "$want" ] || fail "POST $(printf '%.80s' "$1"): HTTP $got, want $want: $(cat "$WORK/resp" 2>/dev/null)"
}
# resp_is_one_line_error: the answer is one line of JSON {"error": "..."}.
resp_is_one_line_error() {
	[ "$(wc -l <"$WORK/resp")" -eq 1 ] || fail "the error is not one line: $(cat "$WORK/resp")"
	jq -e '.error | type == "string" and length > 0' "$WORK/resp" >/dev/null ||
		fail "not a JSON error: $(cat "$WORK/resp")"
}

# inbox NAME SQL: a query on the daemon's inbox ($WORK/NAME.db-inbox).
inbox() { sqlite3 "$WORK/$1.db-inbox" "$2"; }
# alert JSON for id [extra members]
alert_json() { printf '{"id":"%s","title":"test","created_at":1589814129000,"severity":1,"organization_id":"%s","organization_Name":"Fake Org","server_or_region":"ip-10-0-0-1","source":"Host"%s}' "$1" "$FAKE_ORG" "${2:-}"; }
# inbox_is NAME SQL WANT: the query's answer is WANT (for wait_until, which runs it each time).
inbox_is() { [ "$(inbox "$1" "$2")" = "$3" ]; }
# inbox_at_least NAME SQL N: the query's answer is a number of at least N.
inbox_at_least() { [ "$(inbox "$1" "$2")" -ge "$3" ]; }
# lock_inbox NAME: another process (sqlite3) holds the inbox's write lock until unlock_inbox.
lock_inbox() {
	touch "$WORK/hold-lock"
	(
		echo 'BEGIN IMMEDIATE;'
		while [ -e "$WORK/hold-lock" ]; do sleep 0.05; done
		echo 'COMMIT;'
	) | sqlite3 "$WORK/$1.db-inbox" &
	LOCKER_PID=$!
	on_exit "rm -f '$WORK/hold-lock'; wait $LOCKER_PID 2>/dev/null"
	_locked() { ! sqlite3 "$WORK/$1.db-inbox" 'BEGIN IMMEDIATE; ROLLBACK;' 2>/dev/null; }
	wait_until 10 "the inbox locked" _locked "$1"
}
unlock_inbox() {
	rm -f "$WORK/hold-lock"
	wait "$LOCKER_PID" 2>/dev/null || true
}
# listen_notify: plays systemd's notify socket: binds $WORK/notify.sock (python3) and appends
# each datagram to $WORK/notify.log, one line, "<monotonic ms> <datagram>", newlines as " | ".
listen_notify() {
	rm -f "$WORK/notify.sock"
	: >"$WORK/notify.log"
	python3 -u -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
with open(sys.argv[2], "a") as f:
    while True:
        m = s.recv(4096).decode("utf-8", "replace")
        f.write("%d %s\n" % (__import__("time").monotonic_ns() // 1000000, m.replace("\n", " | ")))
        f.flush()
' "$WORK/notify.sock" "$WORK/notify.log" &
	NOTIFY_PID=$!
	on_exit "kill $NOTIFY_PID 2>/dev/null; wait $NOTIFY_PID 2>/dev/null"
	wait_until 20 "the notify socket" test -S "$WORK/notify.sock"
}
