#!/usr/bin/env bash
# kill -9 in the middle of syncs (fetching, committing, delivering), then a sync to the end:
# the store and the change log stay consistent, replaying the log gives exactly the stored
# graph, and that graph equals what a fresh sync of the same fleet builds.
. "$(dirname "$0")/lib.sh"

start_fake --agents 400 --cves 40 --alerts 60 --seed 9 --page-size 20
write_config a
log=$WORK/a.ndjson

kills=0
for delay in 0.3 0.7 1.1 0.5 0.9; do
	# change the fleet so every round has something to commit and deliver
	id=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
	fleet "{\"op\":\"agent_offline\",\"id\":\"$id\"}" >/dev/null
	fleet '{"op":"agent_add"}' >/dev/null
	"$TSGRAPHD" -c "$WORK/a.conf" sync >/dev/null 2>&1 &
	pid=$!
	sleep "$delay"
	if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
	wait "$pid" 2>/dev/null || true
done
echo "killed $kills sync(s) mid-way"

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "backlog 0"
[ "$(jq -s '[.[].seq] | . == (sort | unique)' "$log")" = true ] || fail "seq repeats or goes back"
replay_equals_store "$log" "$WORK/a.db"

write_config fresh
expect_status 0 "$TSGRAPHD" -c "$WORK/fresh.conf" sync
sqlite3 "$WORK/a.db" 'SELECT key, hash FROM object ORDER BY key' >"$WORK/a.keys"
sqlite3 "$WORK/fresh.db" 'SELECT key, hash FROM object ORDER BY key' >"$WORK/fresh.keys"
cmp -s "$WORK/a.keys" "$WORK/fresh.keys" ||
	fail "the graph after kills differs from a fresh sync: $(diff "$WORK/a.keys" "$WORK/fresh.keys" | head)"
echo "kill -9 ok"
