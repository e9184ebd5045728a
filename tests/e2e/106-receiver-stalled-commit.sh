#!/usr/bin/env bash
# An inbox commit that does not come back (a disk that does not answer; the test build's
# stall point TSGRAPHD_TEST_PAUSE_AT=inbox-commit sleeps the first commit of a request's
# alerts 15 s). A request suspended on it is answered 503 "inbox commit timed out" after
# WEBHOOK_COMMIT_TIMEOUT_MS (10 s) instead of waiting for ever; its alert is still stored
# when the commit ends, and sent again it is a duplicate. SIGTERM with a request suspended
# on the stalled commit: the daemon stops in order (exit 0; libmicrohttpd must never be
# stopped with a connection still suspended) and the alert is stored.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"
need_test_build

start_fake --agents 3 --cves 1 --alerts 1
make_cert
write_receiver_config a
TSGRAPHD_RUN=$TSGRAPHD_TEST start_daemon a TSGRAPHD_TEST_PAUSE_AT=inbox-commit
wait_until 20 "the first full sync" grep -q 'sync: done run=1' "$WORK/a.log"

# (a) a request waits at most 10 s for its commit
t0=$(now_ms)
expect_post 503 "$(alert_json stalled-1)"
took=$(($(now_ms) - t0))
resp_is_one_line_error
grep -q '"error":"inbox commit timed out"' "$WORK/resp" || fail "503 body: $(cat "$WORK/resp")"
grep -qi '^retry-after: 5' "$WORK/resp.h" || fail "no Retry-After: $(cat "$WORK/resp.h")"
[ "$took" -ge 9000 ] && [ "$took" -le 14000 ] || fail "answered after $took ms, want about 10 s"
grep -q 'test hook: stalled at inbox-commit' "$WORK/a.log" || fail "the commit did not stall"
wait_until 10 "the stalled commit to end" inbox_is a "SELECT count(*) FROM alert WHERE id = 'stalled-1'" 1
expect_post 200 "$(alert_json stalled-1)"
jq -e '.new == 0 and .duplicates == 1' "$WORK/resp" >/dev/null || fail "not a duplicate: $(cat "$WORK/resp")"
echo "a stalled commit: 503 after $took ms, the alert stored when the commit ended, a duplicate after"
stop_daemon a

# (b) SIGTERM while a request is suspended on the stalled commit
TSGRAPHD_RUN=$TSGRAPHD_TEST start_daemon a TSGRAPHD_TEST_PAUSE_AT=inbox-commit
post "$(alert_json stalled-2)" >"$WORK/code2" &
poster=$!
wait_until 10 "the commit to stall" grep -q 'test hook: stalled at inbox-commit' "$WORK/a.log"
t0=$(now_ms)
stop_daemon a
wait "$poster" || true
code=$(cat "$WORK/code2")
[ "$code" = 503 ] || [ "$code" = 000 ] || fail "the suspended request got HTTP $code"
[ "$(inbox a "SELECT count(*) FROM alert WHERE id = 'stalled-2'")" = 1 ] ||
	fail "the alert of the stalled commit is not stored"
echo "SIGTERM with a request suspended on a stalled commit: exit 0 after $(($(now_ms) - t0)) ms, HTTP $code, the alert stored"
