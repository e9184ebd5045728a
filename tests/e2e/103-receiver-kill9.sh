#!/usr/bin/env bash
# kill -9 of `tsgraphd run` under a steady stream of webhooks (4 clients over TLS, each alert
# id once): every alert that got a 200 is in the inbox after the kill and after the restart,
# and the restarted daemon goes on accepting and settles them. Twice: killed from outside at
# a moment of the stream, and killed by the test build's "inbox" crash point right after a
# commit, before its requests are answered (stored, never acknowledged: also fine).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"
need_test_build

start_fake --agents 5 --cves 2 --alerts 2
make_cert
write_receiver_config a 'confirm_window = 3600'

# stream NAME: 4 clients POSTing alerts NAME-C-N until $WORK/stop exists; each id that got
# a 200 goes to $WORK/acked.NAME.C once the answer is in.
stream() {
	local name=$1 c
	rm -f "$WORK/stop"
	for c in 1 2 3 4; do
		(
			i=0
			while [ ! -e "$WORK/stop" ]; do
				i=$((i + 1))
				id="$name-$c-$i"
				code=$(curl -s --max-time 10 --cacert "$WORK/pki/cert.pem" -o /dev/null \
					-w '%{http_code}' --data-binary "{\"id\":\"$id\"}" \
					"$URL$WEBHOOK_PATH/$SECRET" || true)
				[ "$code" = 200 ] && echo "$id" >>"$WORK/acked.$name.$c"
				[ "$code" = 000 ] && sleep 0.05
			done
		) &
		on_exit "kill $! 2>/dev/null"
	done
}
acked() { cat "$WORK"/acked."$1".* 2>/dev/null | wc -l; }
# all_acked_stored NAME WHEN: every acknowledged id of the stream is in the inbox
all_acked_stored() {
	cat "$WORK"/acked."$1".* | sort -u >"$WORK/acked.ids"
	inbox a 'SELECT id FROM alert' | sort -u >"$WORK/stored.ids"
	missing=$(comm -23 "$WORK/acked.ids" "$WORK/stored.ids" | wc -l)
	[ "$missing" -eq 0 ] ||
		fail "$2: $missing acknowledged alerts are not in the inbox: $(comm -23 "$WORK/acked.ids" "$WORK/stored.ids" | head -5)"
}
stop_stream() { touch "$WORK/stop"; sleep 0.3; }

# 1. killed from outside, mid-stream
start_daemon a
stream out
enough_acked() { [ "$(acked out)" -ge 100 ]; }
wait_until 60 "100 acknowledged alerts" enough_acked
kill -9 "$DAEMON_PID"
wait "$DAEMON_PID" 2>/dev/null || true
stop_stream
all_acked_stored out "after kill -9"
n_out=$(acked out)
stored_out=$(inbox a "SELECT count(*) FROM alert WHERE id LIKE 'out-%'")
start_daemon a
all_acked_stored out "after the restart"
expect_post 200 '{"id":"after-restart-1"}'
wait_until 20 "the restarted daemon settles the inbox" \
	inbox_is a "SELECT count(*) FROM alert WHERE state = 'new'" 0
stop_daemon a
echo "kill -9 from outside: $n_out acknowledged, $stored_out stored, none lost; settled after restart"

# 2. killed by the crash point: a batch committed, its requests not answered
TSGRAPHD_RUN=$TSGRAPHD_TEST start_daemon a TSGRAPHD_TEST_CRASH_AT=inbox TSGRAPHD_TEST_CRASH_AFTER=100
stream hook
status=0
wait "$DAEMON_PID" || status=$?
stop_stream
[ "$status" -eq 137 ] || fail "the crash point did not kill the daemon (exit $status)"
tail -n 1 "$WORK/a.log" | grep -q 'test hook: crash at inbox after ' || fail "not killed at the crash point: $(tail -3 "$WORK/a.log")"
all_acked_stored hook "after the crash point"
n_hook=$(acked hook)
stored_hook=$(inbox a "SELECT count(*) FROM alert WHERE id LIKE 'hook-%'")
[ "$stored_hook" -ge 100 ] || fail "the crash point fired before 100 alerts were committed"
[ "$stored_hook" -gt "$n_hook" ] || fail "the last batch was answered before the kill"
start_daemon a
all_acked_stored hook "after the restart"
stop_daemon a
echo "kill -9 at the inbox crash point: $n_hook acknowledged, $stored_hook stored (the last batch stored, unanswered), none lost"
