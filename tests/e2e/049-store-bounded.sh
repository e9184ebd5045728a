#!/usr/bin/env bash
# The store stays bounded: outbox rows every sink has delivered are pruned once
# outbox_retention has passed, never one a sink still needs. 50 syncs with 1% of the agents
# changing each time keep the store within 2x its size after the first sync.
. "$(dirname "$0")/lib.sh"

size_of() { # the store's size once its WAL is folded in
	sqlite3 "$1" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
	stat -c %s "$1"
}

start_fake --agents 500 --cves 20 --alerts 50 --seed 9
write_config a
sed -i "s|^path = $WORK/a.db\$|&\noutbox_retention = 0|" "$WORK/a.conf"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
first=$(size_of "$WORK/a.db")
[ "$(sqlite3 "$WORK/a.db" 'SELECT count(*) FROM outbox')" -eq 0 ] ||
	fail "delivered changes were kept with outbox_retention = 0"

ids=($(fake_truth | jq -r '.agents[].id'))
for round in $(seq 1 50); do
	for k in 0 1 2 3 4; do # 1% of 500 agents
		fleet "{\"op\":\"tag_set\",\"id\":\"${ids[$(((round * 5 + k) % ${#ids[@]}))]}\",\"key\":\"round\",\"value\":\"r$round\"}" >/dev/null
	done
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
	expect_output "0 created, 5 updated, 0 deleted"
done
last=$(size_of "$WORK/a.db")
echo "store after the first sync: $first bytes; after 50 syncs at 1% churn: $last bytes"
[ "$last" -le $((2 * first)) ] || fail "the store grew from $first to $last bytes"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "backlog 0"
expect_no_output "backlog -"
[ "$(count_lines "$WORK/a.ndjson")" -eq "$(sqlite3 "$WORK/a.db" "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")" ] ||
	fail "the change log does not hold every change"

# A sink that cannot deliver keeps every change made since it was configured, whatever
# their age (what was pruned before it existed, it never needed).
before=$(sqlite3 "$WORK/a.db" "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
printf '[sink.stuck]\ntype = file\npath = %s\n' "$WORK/missing-dir/changes.ndjson" >>"$WORK/a.conf"
fleet "{\"op\":\"tag_set\",\"id\":\"${ids[0]}\",\"key\":\"round\",\"value\":\"stuck\"}" >/dev/null
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
outbox=$(sqlite3 "$WORK/a.db" 'SELECT count(*) FROM outbox')
all=$(sqlite3 "$WORK/a.db" "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'")
[ "$outbox" -gt 0 ] && [ "$outbox" -eq $((all - before)) ] ||
	fail "the outbox holds $outbox of the $((all - before)) changes the stuck sink needs"
mkdir "$WORK/missing-dir"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
[ "$(count_lines "$WORK/missing-dir/changes.ndjson")" -eq "$outbox" ] ||
	fail "the stuck sink did not get every change once it could"
[ "$(sqlite3 "$WORK/a.db" 'SELECT count(*) FROM outbox')" -eq 0 ] ||
	fail "nothing pruned once every sink had delivered"
echo ok
