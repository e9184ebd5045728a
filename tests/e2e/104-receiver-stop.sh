#!/usr/bin/env bash
# The orderly stop of `tsgraphd run` (SIGTERM): new connections are refused at once, a
# request in flight finishes (here one that waits for a locked inbox: it is stored and
# answered 200 once the lock goes), and the daemon exits 0. A full sync stalled in a slow
# API answer is interrupted within a second or two: exit 0, the run recorded "interrupted".
# The same store cannot be synced by `tsgraphd sync` while the daemon runs.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"

start_fake --agents 5 --cves 2 --alerts 2
make_cert
write_receiver_config a
start_daemon a
wait_until 20 "the first full sync" grep -q 'sync: done run=1' "$WORK/a.log"

# one writer per store
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "another tsgraphd (run or sync) is using this store"

# a request in flight: the inbox is locked by another process until the stop has begun
lock_inbox a
post "$(alert_json inflight-1)" >"$WORK/inflight.code" &
poster=$!
in_flight() { [ "$(tcurl "$URL/metrics" | awk '$1 == "tsgraphd_http_requests_in_flight" { print $2 }')" -ge 2 ]; }
wait_until 5 "the request in flight" in_flight
t0=$(now_ms)
kill -TERM "$DAEMON_PID"
wait_until 5 "the stop to begin" grep -q 'daemon: Terminated: stopping' "$WORK/a.log"
refused() { ! curl -s --max-time 2 --cacert "$WORK/pki/cert.pem" -o /dev/null "$URL/healthz"; }
wait_until 5 "new connections refused" refused
unlock_inbox
wait "$poster"
[ "$(cat "$WORK/inflight.code")" = 200 ] || fail "the request in flight got HTTP $(cat "$WORK/inflight.code"): $(cat "$WORK/resp")"
status=0
wait "$DAEMON_PID" || status=$?
[ "$status" -eq 0 ] || fail "exit $status after SIGTERM: $(tail -5 "$WORK/a.log")"
[ "$(inbox a "SELECT count(*) FROM alert WHERE id = 'inflight-1'")" = 1 ] || fail "the answered request is not stored"
echo "SIGTERM: new connections refused, the request in flight stored and answered 200, exit 0 after $(($(now_ms) - t0)) ms"

# a full sync stalled in a slow answer: SIGTERM ends it at once
fault '{"kind":"slow","count":1,"ms":60000,"path":"/v2/agents"}'
start_daemon a
wait_until 10 "the full sync in its listing" grep -q 'sync: full sync started run=' "$WORK/a.log"
t0=$(now_ms)
stop_daemon a
[ $(($(now_ms) - t0)) -lt 5000 ] || fail "the stop took $(($(now_ms) - t0)) ms"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
# the run the log named when it started is listed as interrupted (a here-string: grep -q on
# a pipe may leave printf to a SIGPIPE, which pipefail counts as a failure)
run=$(sed -n 's/.*sync: full sync started run=\([0-9]*\).*/\1/p' "$WORK/a.log" | head -n 1)
[ -n "$run" ] || fail "no run number in the log: $(tail -n 5 "$WORK/a.log")"
grep -qE "^ +#$run +full +interrupted " <<<"$OUT" ||
	fail "the stalled run $run is not interrupted: $OUT; sync_run: $(sqlite3 "$WORK/a.db" \
		'SELECT id, kind, result FROM sync_run ORDER BY id' 2>&1)"
echo "SIGTERM during a stalled full sync: stopped in $(($(now_ms) - t0)) ms, exit 0, run interrupted"
