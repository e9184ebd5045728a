#!/usr/bin/env bash
# A sync that would delete more than max_delete_fraction of a type deletes none of it,
# says so (exit 1, the log, status), and --allow-mass-delete lets it through once.
. "$(dirname "$0")/lib.sh"

start_fake --agents 20 --cves 5 --alerts 5 --seed 5 --page-size 10
write_config a '[sync]' 'max_delete_fraction = 0.5'
log=$WORK/a.ndjson
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
stored=$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE type = 'threatstack_agent'")

for id in $(fake_truth | jq -r '.agents[0:12][].id'); do
	fleet "{\"op\":\"agent_remove\",\"id\":\"$id\"}" >/dev/null
done
n=$(count_lines "$log")
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "mass-delete guard held back deletions of"
expect_output "threatstack_agent (12 of $stored)"
lines_since "$log" "$n" >"$WORK/step.ndjson"
jq -e -s 'all(.[]; .op != "delete" or .type != "threatstack_agent")' "$WORK/step.ndjson" >/dev/null ||
	fail "the guard let agent deletions through"
[ "$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE type = 'threatstack_agent'")" -eq "$stored" ] ||
	fail "agents were deleted from the store"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "full held"
expect_output "held back (mass-delete guard): "
expect_output "threatstack_agent (12 of $stored)"

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync --allow-mass-delete
lines_since "$log" "$n" >"$WORK/step.ndjson"
[ "$(jq -s '[.[] | select(.op == "delete" and .type == "threatstack_agent")] | length' "$WORK/step.ndjson")" -eq 12 ] ||
	fail "--allow-mass-delete did not delete the 12 agents"
replay_equals_store "$log" "$WORK/a.db"
echo "mass-delete guard ok"
