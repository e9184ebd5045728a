#!/usr/bin/env bash
# A change log that lost lines leaves no silent gap (issue 8 item 6). The last two lines are
# deleted: the next sync writes them again from the outbox before the new changes (seqs
# stay 1, 2, 3, ... and replaying gives the store), and `status` says so beforehand. When
# the outbox no longer holds the lost changes the sync refuses, exit 1, the reason on stderr
# and in `status`; moving the log aside starts a new one.
. "$(dirname "$0")/lib.sh"

start_fake --agents 30 --cves 8 --alerts 10 --seed 70 --page-size 10
write_config a
log=$WORK/a.ndjson
db=$WORK/a.db
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
total=$(count_lines "$log")
[ "$total" -gt 10 ] || fail "first sync wrote only $total lines"

# seqs_dense FILE: the seqs are exactly 1..N in order.
seqs_dense() {
	jq -e -s '[.[].seq] == [range(1; length + 1)]' "$1" >/dev/null ||
		fail "$1 has a gap or a repeat: $(jq -c -s '[.[].seq]' "$1" | cut -c1-400)"
}

cp "$log" "$WORK/whole.ndjson"
head -n -2 "$log" >"$WORK/cut" && cat "$WORK/cut" >"$log"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "behind its cursor at seq $total: 2 lines lost; the next sync writes them again"

agent=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
fleet "{\"op\":\"agent_offline\",\"id\":\"$agent\"}" >/dev/null
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "2 lines lost; writing them again from the outbox"
seqs_dense "$log"
[ "$(count_lines "$log")" -gt "$total" ] || fail "the new change did not follow"
head -n "$total" "$log" | cmp -s - "$WORK/whole.ndjson" || fail "the lines written again differ"
replay_equals_store "$log" "$db"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_no_output "!"

# Lines lost whose changes the outbox no longer holds (pruned): refused, nothing written.
now=$(count_lines "$log")
head -n -3 "$log" >"$WORK/cut" && cat "$WORK/cut" >"$log"
sqlite3 "$db" "DELETE FROM outbox WHERE seq = $((now - 1))"
cp "$log" "$WORK/before"
fleet "{\"op\":\"agent_online\",\"id\":\"$agent\"}" >/dev/null
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sink changes: delivery failed, changes stay in the outbox: $log: the change log is behind its cursor: it ends at seq $((now - 3)) but changes up to seq $now were written to it, and the outbox no longer holds all the lost changes; refusing to leave a gap"
cmp -s "$log" "$WORK/before" || fail "the refused log was written to"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "! $log: the change log is behind its cursor"
# Again: still refused, not forgotten.
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "refusing to leave a gap"

# Moved aside: a new log starts after the cursor with what is still undelivered.
mv "$log" "$WORK/old.ndjson"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
first=$(head -n 1 "$log" | jq .seq)
[ "$first" -eq $((now + 1)) ] || fail "the new log starts at seq $first, want $((now + 1))"
echo "lost lines: written again, or refused ($now changes)"
