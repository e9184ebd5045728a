#!/usr/bin/env bash
# Drill 4 — the disk under the store fills up while `tsgraphd run` works.
#
# The store lives on a small tmpfs (root only: skipped, and says so, elsewhere); the change
# log and the inbox on the ordinary disk; a JupiterOne sink to the fake. The daemon's first
# full sync commits and every sink delivers. Then the tmpfs is shrunk to what the store uses
# plus DRILL_DISK_FULL_SPARE_KIB (64), and DRILL_DISK_FULL_AGENTS (150) agents join the fleet,
# with other changes. The next full sync must fail cleanly: the log says "database or disk is
# full", /healthz answers 503 "store not writable: ... database or disk is full", a webhook
# is still taken (the inbox is elsewhere), the store passes PRAGMA integrity_check and holds
# what it held before (nothing half-applied). The space is given back (256 MiB): the next
# poll (poll_interval 10 s) converges, /healthz is 200 again, the acknowledged alert is
# confirmed, the daemon stops on SIGTERM with exit 0, and the store is what a fresh sync
# builds, the change log is complete and replays to it, JupiterOne holds exactly its graph.
# Knobs: DRILL_DISK_FULL_AGENTS (150), DRILL_DISK_FULL_SPARE_KIB (64), DRILL_SEED.
. "$(dirname "$0")/lib.sh"
ADD=${DRILL_DISK_FULL_AGENTS:-150}
SPARE=${DRILL_DISK_FULL_SPARE_KIB:-64}

mnt=$WORK/small
mkdir -p "$mnt"
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=64m tmpfs "$mnt" 2>/dev/null; then
	echo "SKIP: needs root to mount a small tmpfs"
	figure skipped "not root"
	drill_pass
	exit 0
fi
on_exit "umount -l '$mnt'"

start_fake --agents 100 --cves 15 --alerts 20 --seed "$DRILL_SEED" --page-size 50
start_fake_j1
j1_sink_lines
printf '%s\n' "$SECRET" >"$WORK/webhook.secret"
chmod 600 "$WORK/webhook.secret"
write_config a "${J1_SINK[@]}" '[threatstack]' 'poll_interval = 10' \
	'[webhook]' 'listen = 127.0.0.1:0' 'tls = off' "secret_file = $WORK/webhook.secret" \
	"inbox = $WORK/a.inbox"
sed -i "s|^path = $WORK/a.db\$|path = $mnt/a.db|" "$WORK/a.conf"
db=$mnt/a.db

run_daemon a "$TSGRAPHD"
wait_until 20 "the receiver" grep -q 'webhook: listening on' "$WORK/a.log"
URL=http://127.0.0.1:$(sed -n 's/.*webhook: listening on .*:\([0-9]*\) (.*/\1/p' "$WORK/a.log" | head -n 1)
wait_until 60 "the first full sync" grep -q 'sync: done run=1 ' "$WORK/a.log"
wait_until 60 "every sink caught up" sinks_caught_up "$WORK/a.conf"
objects_before=$(sqlite3 "$db" 'SELECT count(*) FROM object')

# Fill: the tmpfs shrunk to what is used plus a little, then many new agents.
used=$(df --output=used -k "$mnt" | tail -n 1 | tr -d ' ')
mount -o remount,size=$((used + SPARE))k "$mnt"
args=()
for ((i = 0; i < ADD; i++)); do
	args+=(--next -sS -f -o /dev/null -d '{"op":"agent_add"}' "$FAKE_URL/_fake/fleet")
done
curl "${args[@]:1}"
mutate_fleet 10
t_full=$(now_ms)
lines=$(wc -l <"$WORK/a.log")
full_logged() { tail -n +"$((lines + 1))" "$WORK/a.log" | grep -q 'database or disk is full'; }
wait_until 40 "the full sync failing on the full disk" full_logged
failed_line=$(tail -n +"$((lines + 1))" "$WORK/a.log" | grep -m 1 'database or disk is full')
echo "  $failed_line"
unhealthy() { [ "$(health_of)" = 503 ]; }
wait_until 10 "/healthz 503" unhealthy
jq -e '.reason | startswith("store not writable") and contains("database or disk is full")' "$WORK/health" >/dev/null ||
	fail "healthz: $(cat "$WORK/health")"
[ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] || fail "the store is damaged: $(sqlite3 "$db" 'PRAGMA integrity_check' | head)"
[ "$(sqlite3 "$db" 'SELECT count(*) FROM object')" = "$objects_before" ] || fail "the failed sync changed the store"
truth_fetch
alert=$(fleet "{\"op\":\"alert_add\",\"agent\":\"$(truth_pick '.agents[].id')\"}" | jq -r .id)
code=$(curl -sS --max-time 10 -o "$WORK/resp" -w '%{http_code}' --data-binary "{\"id\":\"$alert\"}" "$URL$WEBHOOK_PATH/$SECRET")
[ "$code" = 200 ] || fail "a webhook was refused with the store's disk full: $code $(cat "$WORK/resp")"
figure store_kib_when_full "$((used + SPARE))"
figure healthz_when_full "503"

# Room again: the next poll converges.
mount -o remount,size=256m "$mnt"
t_room=$(now_ms)
healthy() { [ "$(health_of)" = 200 ]; }
wait_until 40 "/healthz 200 with room again" healthy
wait_until 60 "every sink caught up" sinks_caught_up "$WORK/a.conf"
settled() { [ "$(sqlite3 "$WORK/a.inbox" "SELECT state FROM alert WHERE id = '$alert'")" = confirmed ]; }
wait_until 30 "the alert taken while full confirmed" settled
recover_ms=$(($(now_ms) - t_room))
kill -TERM "$DAEMON_PID"
daemon_wait
[ "$DAEMON_STATUS" = 0 ] || fail "the daemon exited $DAEMON_STATUS: $(tail -n 5 "$WORK/a.log")"
failed_runs=$(sqlite3 "$db" "SELECT count(*) FROM sync_run WHERE result = 'failed'")
[ "$(sqlite3 "$db" 'PRAGMA integrity_check')" = ok ] || fail "the store is damaged after the recovery"
# converged() builds the fresh store in $WORK: its own disk
converged_db() {
	ln -sf "$db" "$WORK/a.db"
	converged a "$1"
}
converged_db "after the disk was full"
figure full_syncs_failed "$(grep -c 'daemon: full sync failed' "$WORK/a.log")"
figure runs_failed "$failed_runs" # full and refresh (the webhook's alert) runs
figure seconds_full "$(((t_room - t_full) / 1000))"
figure recover_ms "$recover_ms"
figure integrity ok
figure lost 0
drill_pass
