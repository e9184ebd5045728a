#!/usr/bin/env bash
# Faults behind the receiver: a locked inbox and a full disk are a 503 that says why (with
# Retry-After), nothing half-written (every alert acknowledged before is there, none of the
# refused request's), and /healthz says 503 with the reason until the inbox is writable
# again; a store on a full disk makes /healthz 503 "store not writable" until a full sync
# commits again. The disk-full parts need root for a small tmpfs (skipped elsewhere).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"

start_fake --agents 5 --cves 2 --alerts 2
make_cert
write_receiver_config a
start_daemon a
health() { tcurl -o "$WORK/health" -w '%{http_code}' "$URL/healthz" || true; }

# --- a locked inbox ----------------------------------------------------------------------
lock_inbox a
expect_post 503 "$(alert_json locked-1)"
resp_is_one_line_error
grep -qi '^Retry-After: 5' "$WORK/resp.h" || fail "503 without Retry-After"
jq -e '.error == "inbox not writable"' "$WORK/resp" >/dev/null || fail "503: $(cat "$WORK/resp")"
grep -q 'webhook: 503 .*inbox not writable: Device or resource busy' "$WORK/a.log" || fail "no log line for the 503"
[ "$(health)" = 503 ] || fail "healthz is not 503 with the inbox locked"
jq -e '.status == "unhealthy" and (.reason | startswith("inbox not writable: database is locked"))' "$WORK/health" >/dev/null ||
	fail "healthz: $(cat "$WORK/health")"
unlock_inbox
expect_post 200 "$(alert_json locked-2)"
[ "$(health)" = 200 ] || fail "healthz still unhealthy: $(cat "$WORK/health")"
[ "$(inbox a "SELECT group_concat(id) FROM alert WHERE id LIKE 'locked-%'")" = locked-2 ] ||
	fail "the refused alert was stored"
echo "locked inbox: 503 inbox not writable (Retry-After 5), healthz 503 with the reason, fine again after"
stop_daemon a

mnt=$WORK/small
mkdir -p "$mnt"
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=512k tmpfs "$mnt" 2>/dev/null; then
	echo "SKIP (disk full): needs root to mount a small tmpfs"
	exit 0
fi
on_exit "umount -l '$mnt'"

# --- a full disk under the inbox -----------------------------------------------------------
write_receiver_config b "inbox = $mnt/inbox.db"
start_daemon b
big=$(head -c 45000 /dev/zero | tr '\0' x)
acked=()
for i in $(seq 1 40); do
	code=$(post "$(alert_json "full-$i" ",\"pad\":\"$big\"")")
	[ "$code" = 200 ] && acked+=("full-$i")
	[ "$code" = 503 ] && break
done
[ "$code" = 503 ] || fail "the disk never filled (${#acked[@]} alerts stored)"
jq -e '.error == "inbox not writable"' "$WORK/resp" >/dev/null || fail "503: $(cat "$WORK/resp")"
grep -q 'inbox not writable: No space left on device' "$WORK/b.log" || fail "no log line says the disk is full: $(tail -3 "$WORK/b.log")"
[ "$(health)" = 503 ] || fail "healthz is not 503 with the disk full"
jq -e '.reason | contains("database or disk is full")' "$WORK/health" >/dev/null || fail "healthz: $(cat "$WORK/health")"
stored=$(sqlite3 "$mnt/inbox.db" "SELECT group_concat(id) FROM alert WHERE id LIKE 'full-%' ORDER BY rowid")
[ "$stored" = "$(IFS=,; echo "${acked[*]}")" ] ||
	fail "the inbox does not hold exactly the acknowledged alerts: $stored"
mount -o remount,size=64m "$mnt"
expect_post 200 "$(alert_json roomy-1)"
[ "$(health)" = 200 ] || fail "healthz still unhealthy with room again: $(cat "$WORK/health")"
echo "full disk under the inbox: 503 after ${#acked[@]} alerts, exactly those stored, healthz 503 until there is room"
stop_daemon b

# --- a full disk under the store -----------------------------------------------------------
kill "$FAKE_PID"; wait "$FAKE_PID" 2>/dev/null || true
start_fake --agents 1500 --cves 10 --alerts 100 --seed 5
umount -l "$mnt"
mount -t tmpfs -o size=1m tmpfs "$mnt"
write_receiver_config c "inbox = $WORK/c.inbox" '[threatstack]' 'poll_interval = 10'
sed -i "s|^path = $WORK/c.db$|path = $mnt/c.db|" "$WORK/c.conf"
start_daemon c
wait_until 30 "the full sync failing" grep -q 'sync: failed, nothing committed' "$WORK/c.log"
[ "$(health)" = 503 ] || fail "healthz is not 503 with the store's disk full"
jq -e '.reason | startswith("store not writable") and contains("database or disk is full")' "$WORK/health" >/dev/null ||
	fail "healthz: $(cat "$WORK/health")"
expect_post 200 "$(alert_json still-taken-1)"
mount -o remount,size=256m "$mnt"
healthy() { [ "$(health)" = 200 ]; }
wait_until 30 "a full sync with room again" healthy
stop_daemon c
echo "full disk under the store: healthz 503 store not writable (webhooks still taken), 200 once a sync commits"
