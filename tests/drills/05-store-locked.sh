#!/usr/bin/env bash
# Drill 5 — another process holds the store's write lock while `tsgraphd run` works.
#
# The daemon (file and JupiterOne sinks, the receiver on plain HTTP, poll_interval 10 s)
# makes its first full sync. Then a sqlite3 process takes the store's write lock (BEGIN
# IMMEDIATE, held until told to let go), the fleet changes and an alert's webhook comes.
# The receiver still answers 200 (the inbox is another file). The daemon waits for the lock
# (SQLite's busy timeout, 30 s) and then reports it: its log says "database is locked" and
# /healthz answers 503 "store not writable: ... database is locked". The lock is held
# DRILL_STORE_LOCKED_EXTRA seconds (2) longer, then released: the daemon proceeds by itself
# (the next poll), /healthz is 200 again, the alert is confirmed, every sink catches up,
# it stops on SIGTERM with exit 0, and the store is what a fresh sync builds, the change log
# is complete and replays to it, JupiterOne holds exactly its graph: nothing lost.
# Knobs: DRILL_STORE_LOCKED_EXTRA (2), DRILL_SEED.
. "$(dirname "$0")/lib.sh"
EXTRA=${DRILL_STORE_LOCKED_EXTRA:-2}

start_fake --agents 60 --cves 10 --alerts 20 --seed "$DRILL_SEED" --page-size 20
start_fake_j1
j1_sink_lines
printf '%s\n' "$SECRET" >"$WORK/webhook.secret"
chmod 600 "$WORK/webhook.secret"
write_config a "${J1_SINK[@]}" '[threatstack]' 'poll_interval = 10' \
	'[webhook]' 'listen = 127.0.0.1:0' 'tls = off' "secret_file = $WORK/webhook.secret"
db=$WORK/a.db

run_daemon a "$TSGRAPHD"
wait_until 20 "the receiver" grep -q 'webhook: listening on' "$WORK/a.log"
URL=http://127.0.0.1:$(sed -n 's/.*webhook: listening on .*:\([0-9]*\) (.*/\1/p' "$WORK/a.log" | head -n 1)
wait_until 60 "the first full sync" grep -q 'sync: done run=1 ' "$WORK/a.log"
wait_until 60 "every sink caught up" sinks_caught_up "$WORK/a.conf"

# The lock (the pattern of lock_inbox in tests/e2e/lib-receiver.sh, on the store).
touch "$WORK/hold-lock"
(
	echo 'BEGIN IMMEDIATE;'
	while [ -e "$WORK/hold-lock" ]; do sleep 0.05; done
	echo 'COMMIT;'
) | sqlite3 "$db" &
LOCKER_PID=$!
on_exit "rm -f '$WORK/hold-lock'; wait $LOCKER_PID 2>/dev/null"
locked() { ! sqlite3 "$db" 'PRAGMA busy_timeout = 0; BEGIN IMMEDIATE; ROLLBACK;' >/dev/null 2>&1; }
wait_until 10 "the store locked" locked
t_lock=$(now_ms)
lines=$(wc -l <"$WORK/a.log")

mutate_fleet 8
truth_fetch
alert=$(fleet "{\"op\":\"alert_add\",\"agent\":\"$(truth_pick '.agents[].id')\"}" | jq -r .id)
code=$(curl -sS --max-time 10 -o "$WORK/resp" -w '%{http_code}' --data-binary "{\"id\":\"$alert\"}" "$URL$WEBHOOK_PATH/$SECRET")
[ "$code" = 200 ] || fail "a webhook was refused with the store locked: $code $(cat "$WORK/resp")"

lock_logged() { tail -n +"$((lines + 1))" "$WORK/a.log" | grep -q 'database is locked'; }
wait_until 70 "the daemon's log to report the lock" lock_logged
t_logged=$(now_ms)
echo "  $(tail -n +"$((lines + 1))" "$WORK/a.log" | grep -m 1 'database is locked')"
unhealthy() { [ "$(health_of)" = 503 ]; }
wait_until 10 "/healthz 503" unhealthy
jq -e '.reason | startswith("store not writable") and contains("database is locked")' "$WORK/health" >/dev/null ||
	fail "healthz: $(cat "$WORK/health")"
reason=$(jq -r .reason "$WORK/health")
kill -0 "$DAEMON_PID" || fail "the daemon died with the store locked: $(tail -n 5 "$WORK/a.log")"
sleep "$EXTRA" # the lock is held a while longer: a drill's duration, not a synchronisation
rm -f "$WORK/hold-lock"
wait "$LOCKER_PID" || fail "the locker failed"
t_free=$(now_ms)

healthy() { [ "$(health_of)" = 200 ]; }
wait_until 40 "/healthz 200 once the lock is gone" healthy
settled() { [ "$(sqlite3 "$db-inbox" "SELECT state FROM alert WHERE id = '$alert'")" = confirmed ]; }
wait_until 40 "the alert taken while locked confirmed" settled
wait_until 60 "every sink caught up" sinks_caught_up "$WORK/a.conf"
full_ok() { tail -n +"$((lines + 1))" "$WORK/a.log" | grep -q 'sync: done run='; }
wait_until 30 "a full sync after the lock" full_ok
recover_ms=$(($(now_ms) - t_free))
kill -TERM "$DAEMON_PID"
daemon_wait
[ "$DAEMON_STATUS" = 0 ] || fail "the daemon exited $DAEMON_STATUS: $(tail -n 5 "$WORK/a.log")"
converged a "after the lock"
figure lock_held_s "$(((t_free - t_lock) / 1000))"
figure reported_after_s "$(((t_logged - t_lock) / 1000))"
figure healthz_reason "\"$reason\""
figure recover_ms "$recover_ms"
figure lost 0
drill_pass
