#!/usr/bin/env bash
# Bounded memory on any answer. A page just under max_response (8 MiB by default) made of
# 4 million JSON scalars is refused before parsing, with a message naming the limit, and the
# sync's peak RSS stays under 3 x max_response above a normal sync's. (Before: only objects
# and arrays were counted, so it parsed into ~300 MB and the empty page deleted the offline
# agents.) A body over max_response is refused by size, also naming the limit.
. "$(dirname "$0")/lib.sh"

command -v /usr/bin/time >/dev/null || fail "/usr/bin/time is needed (make deps)"
start_fake --agents 20 --cves 6 --alerts 6 --seed 7 --page-size 5
write_config a
# peak_kb CMD...: runs CMD like expect_status would, sets $OUT, $RC and $PEAK (KiB)
peak_kb() {
	set +e
	OUT=$(/usr/bin/time -f 'peak_kb=%M' "$@" 2>&1)
	RC=$?
	set -e
	PEAK=$(printf '%s\n' "$OUT" | sed -n 's/^peak_kb=//p' | tail -n 1)
}
peak_kb "$TSGRAPHD" -c "$WORK/a.conf" sync
[ "$RC" -eq 0 ] || fail "first sync exited $RC: $OUT"
base=$PEAK
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
base2=$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE type = 'threatstack_agent'")

# 8 MiB less 1 KiB of "0,0,0,...": accepted by size, refused by density.
fault "{\"kind\":\"dense\",\"bytes\":$((8 * 1024 * 1024 - 1024)),\"path\":\"/v2/agents?status=offline\"}"
peak_kb "$TSGRAPHD" -c "$WORK/a.conf" sync
[ "$RC" -eq 1 ] || fail "a dense page: sync exited $RC, want 1; output: $OUT"
expect_output "incomplete: agents: "
expect_output "too dense"
expect_output "twice max_response (8 MiB)"
limit=$((base + 3 * 8 * 1024))
echo "peak RSS: normal sync $base KiB, dense page $PEAK KiB (limit $limit KiB)"
[ "$PEAK" -le "$limit" ] || fail "a dense page took $PEAK KiB, over $limit KiB"
[ "$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE type = 'threatstack_agent'")" -eq "$base2" ] ||
	fail "a dense page deleted agents"

# 20 MiB: over max_response, refused by size while it arrives.
fault "{\"kind\":\"dense\",\"bytes\":$((20 * 1024 * 1024)),\"path\":\"/v2/agents?status=offline\"}"
peak_kb "$TSGRAPHD" -c "$WORK/a.conf" sync
[ "$RC" -eq 1 ] || fail "a 20 MiB page: sync exited $RC, want 1; output: $OUT"
expect_output "response body larger than max_response (8 MiB)"
echo "peak RSS: 20 MiB page $PEAK KiB"
[ "$PEAK" -le "$limit" ] || fail "a 20 MiB page took $PEAK KiB, over $limit KiB"

# The limit is the configuration's: 256 KiB refuses what 8 MiB accepted, and pages of five
# real agents still pass (they need about 8 times their size to parse).
write_config b
sed -i 's/^timeout = 10$/timeout = 10\nmax_response = 256KiB/' "$WORK/b.conf"
expect_status 0 "$TSGRAPHD" -c "$WORK/b.conf" check
expect_status 0 "$TSGRAPHD" -c "$WORK/b.conf" sync
fault '{"kind":"dense","bytes":300000,"path":"/v2/alerts"}'
expect_status 1 "$TSGRAPHD" -c "$WORK/b.conf" sync
expect_output "incomplete: alerts: "
expect_output "response body larger than max_response (256 KiB)"
fault '{"kind":"dense","bytes":200000,"path":"/v2/alerts"}'
expect_status 1 "$TSGRAPHD" -c "$WORK/b.conf" sync
expect_output "too dense"
expect_output "(limit 512 KiB), i.e. twice max_response (256 KiB)"
echo "bounded memory ok"
