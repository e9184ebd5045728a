#!/usr/bin/env bash
# First sync against the fake fleet creates the whole graph (every model type, each agent
# once though some sit in both status listings), a second sync writes no change line and no
# outbox row, status reports it, a dry run prints a pending change and writes nothing, and
# the change log replays to exactly the stored graph.
. "$(dirname "$0")/lib.sh"

start_fake --agents 40 --cves 12 --alerts 20 --seed 7 --page-size 10
write_config a

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sync: "
log=$WORK/a.ndjson db=$WORK/a.db
n1=$(count_lines "$log")
[ "$n1" -gt 40 ] || fail "first sync wrote only $n1 changes"
[ "$(jq -r .op "$log" | sort -u)" = create ] || fail "first sync wrote more than creates"
# seq is 1..n without gaps
[ "$(jq -s '[.[].seq] == [range(1; length + 1)]' "$log")" = true ] || fail "seq has gaps"

for t in threatstack_account threatstack_agent threatstack_account_has_agent \
	threatstack_agent_identified_vulnerability threatstack_alert \
	threatstack_agent_identified_alert threatstack_account_has_alert; do
	jq -e -s --arg t "$t" 'any(.[]; .type == $t)' "$log" >/dev/null || fail "no $t created"
done
want=$(fake_truth | jq '.agents | length')
got=$(jq -s '[.[] | select(.type == "threatstack_agent")] | length' "$log")
[ "$got" -eq "$want" ] || fail "$got agent entities for $want agents"
[ "$(jq -s '[.[].key] | length == (unique | length)' "$log")" = true ] || fail "a key was created twice"

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "0 created, 0 updated, 0 deleted"
[ "$(count_lines "$log")" -eq "$n1" ] || fail "a no-change sync wrote change lines"
[ "$(sqlite3 "$db" 'SELECT count(*) FROM outbox')" -eq "$n1" ] || fail "a no-change sync wrote outbox rows"

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "threatstack_agent "
expect_output "ok "
expect_output "changes              file       delivered to seq $n1, backlog 0"

# A dry run shows the pending change and leaves the store and the log alone.
id=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
fleet "{\"op\":\"agent_offline\",\"id\":\"$id\"}" >/dev/null
before=$(sqlite3 "$db" 'SELECT count(*) FROM outbox; SELECT count(*) FROM sync_run')
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync --dry-run
expect_output "update entity       threatstack_agent threatstack:agent:$id changed="
expect_output "dry run, nothing written: 0 created, 1 updated, 0 deleted"
[ "$(sqlite3 "$db" 'SELECT count(*) FROM outbox; SELECT count(*) FROM sync_run')" = "$before" ] ||
	fail "the dry run wrote to the store"
[ "$(count_lines "$log")" -eq "$n1" ] || fail "the dry run wrote change lines"

# A dry run against no store at all creates none.
write_config fresh
expect_status 0 "$TSGRAPHD" -c "$WORK/fresh.conf" sync --dry-run
[ ! -e "$WORK/fresh.db" ] || fail "a dry run created the store"

replay_equals_store "$log" "$db"
echo "first and no-change sync ok ($n1 changes)"
