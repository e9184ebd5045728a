#!/usr/bin/env bash
# A 200 page that does not carry its collection as an array of objects is a failed
# listing, never an empty one: the offline agents listing answering {"errors":[...]}, {},
# {"agents":null} or {"agents":[1,2]} makes `sync` exit 1, the run is recorded partial and
# nothing of agents is deleted. (Before: read as "no offline agents", they and their
# relationships were deleted and sync exited 0.) The same for a single alert's GET is in
# tests/unit/test_tsapi.c.
. "$(dirname "$0")/lib.sh"

start_fake --agents 20 --cves 6 --alerts 6 --seed 5 --page-size 5
write_config a
log=$WORK/a.ndjson
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
offline=$(fake_truth | jq '[.agents[] | select(.status == "offline")] | length')
[ "$offline" -ge 1 ] || fail "the fleet has no offline agent to lose"

for body in '{"errors":["internal error"]}' '{}' '{"agents":null}' '{"agents":[1,2]}'; do
	n=$(count_lines "$log")
	fault "$(jq -cn --arg b "$body" '{kind:"body",body:$b,count:1,path:"/v2/agents?status=offline"}')"
	expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
	expect_output "incomplete: agents: "
	lines_since "$log" "$n" >"$WORK/step.ndjson"
	jq -e -s 'all(.[]; .op != "delete")' "$WORK/step.ndjson" >/dev/null ||
		fail "body $body: the failed listing deleted $(jq -c -s 'map(select(.op == "delete") | .key)' "$WORK/step.ndjson")"
	stored=$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE type = 'threatstack_agent'")
	[ "$stored" -eq 20 ] || fail "body $body: $stored agents stored, want 20"
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
	expect_output "partial"
done
# The message says what was wrong with the page.
fault '{"kind":"body","body":"{\"agents\":null}","count":1,"path":"/v2/agents?status=offline"}'
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output '"agents" is null, not an array'

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
replay_equals_store "$log" "$WORK/a.db"
echo "200 without collection ok"
