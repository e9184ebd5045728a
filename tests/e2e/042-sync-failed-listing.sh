#!/usr/bin/env bash
# A listing that fails (after retries) deletes nothing of its types, while the other
# listings still commit; the run is recorded as partial and the command exits 1. Once the
# API recovers, the deletion goes through. A malformed page counts as a failure too.
. "$(dirname "$0")/lib.sh"

start_fake --agents 20 --cves 8 --alerts 10 --seed 3 --page-size 5
write_config a
log=$WORK/a.ndjson
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
n=$(count_lines "$log")

victim=$(fake_truth | jq -r '.agents[0].id')
fleet "{\"op\":\"agent_remove\",\"id\":\"$victim\"}" >/dev/null
alert=$(fake_truth | jq -r '[.alerts[] | select(.isDismissed == false)][0].id')
fleet "{\"op\":\"alert_dismiss\",\"id\":\"$alert\"}" >/dev/null
fault '{"kind":"500","count":1000,"path":"/v2/agents"}'

expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "incomplete: agents: "
lines_since "$log" "$n" >"$WORK/step.ndjson"
# (the removed agent's vulnerability relationships may go: that listing completed)
jq -e -s 'all(.[]; .op != "delete" or .type == "threatstack_agent_identified_vulnerability")' \
	"$WORK/step.ndjson" >/dev/null || fail "a failed agent listing deleted agents"
jq -e -s "any(.[]; .key == \"threatstack:alert:$alert\" and .op == \"update\")" "$WORK/step.ndjson" \
	>/dev/null || fail "the alert listing did not commit beside the failed agent listing"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "partial"
expect_output "agents: "

# Truncated JSON on the vulnerability listing: a bad response, no deletes of its type.
fault '{"kind":"clear"}'
fault '{"kind":"truncate","count":1000,"path":"/v2/vulnerabilities"}'
n=$(count_lines "$log")
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "incomplete: vulnerabilities: "
lines_since "$log" "$n" >"$WORK/step.ndjson"
jq -e -s 'all(.[]; .type != "threatstack_agent_identified_vulnerability" or .op != "delete"
	or (.key | contains("'"$victim"'")))' "$WORK/step.ndjson" >/dev/null ||
	fail "a failed vulnerability listing deleted vulnerability relationships"
jq -e -s "any(.[]; .key == \"threatstack:agent:$victim\" and .op == \"delete\")" "$WORK/step.ndjson" \
	>/dev/null || fail "the recovered agent listing did not delete the removed agent"

fault '{"kind":"clear"}'
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
replay_equals_store "$log" "$WORK/a.db"
echo "failed listings ok"
