#!/usr/bin/env bash
# The near-real-time path: a webhook for an alert Threat Stack knows reaches the file sink
# with its refreshed agent (source "webhook"), between two full syncs; its agent is fetched
# once per batch however many of the batch's alerts name it; a CloudTrail alert (no agent)
# arrives alone; an alert Threat Stack does not know stays unconfirmed, is retried, and is
# given up after confirm_window without reaching any sink; a burst of webhooks is refreshed
# in batches. Replaying the change log gives the stored graph.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"

start_fake --agents 12 --cves 4 --alerts 6 --seed 3
make_cert
write_receiver_config a 'confirm_window = 10' '[threatstack]' 'poll_interval = 3600'
start_daemon a
log=$WORK/a.ndjson
wait_until 20 "the first full sync delivered" grep -q 'sink changes: delivered' "$WORK/a.log"
first=$(count_lines "$log")

# an agent moves (new hostname) and raises an alert; Threat Stack sends the webhook
agent=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
fleet "{\"op\":\"agent_set\",\"id\":\"$agent\",\"hostname\":\"moved-host.example.com\"}" >/dev/null
id=$(fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" | jq -r .id)
id2=$(fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" | jq -r .id)
reset_stats
t0=$(now_ms)
expect_post 200 "{\"alerts\":[$(alert_json "$id"),$(alert_json "$id2")]}"
t1=$(now_ms)
has_line() { lines_since "$log" "$first" | jq -e -s "any(.[]; $1)" >/dev/null; }
wait_until 10 "the alert in the change log" has_line ".key == \"threatstack:alert:$id\""
t2=$(now_ms)
lines_since "$log" "$first" >"$WORK/step.ndjson"
jq -e -s "all(.[]; .source == \"webhook\")" "$WORK/step.ndjson" >/dev/null ||
	fail "changes between full syncs not from the webhook: $(cut -c1-200 "$WORK/step.ndjson")"
for want in ".key == \"threatstack:alert:$id\" and .op == \"create\" and .object.open == true" \
	".key == \"threatstack:alert:$id2\" and .op == \"create\"" \
	".key == \"threatstack:agent:$agent|identified|threatstack:alert:$id\" and .op == \"create\"" \
	".key == \"threatstack:agent:$agent\" and .op == \"update\" and .object.hostname == \"moved-host\"" \
	".key == \"threatstack:agent:$agent|protects|host:moved-host\" and .op == \"create\""; do
	jq -e -s "any(.[]; $want)" "$WORK/step.ndjson" >/dev/null ||
		fail "no change line with $want: $(cut -c1-300 "$WORK/step.ndjson")"
done
[ "$(requests '/v2/alerts/{id}')" = 2 ] || fail "alerts fetched $(requests '/v2/alerts/{id}') times, want 2"
[ "$(requests '/v2/agents/{id}')" = 1 ] || fail "the agent fetched $(requests '/v2/agents/{id}') times in one batch, want 1"
[ "$(requests '/v2/agents')" = 0 ] || fail "a full listing ran between the full syncs"
[ "$(inbox a "SELECT group_concat(state) FROM alert WHERE id IN ('$id','$id2')")" = confirmed,confirmed ] ||
	fail "not confirmed in the inbox: $(inbox a 'SELECT id, state, note FROM alert')"
echo "webhook → change log: the alerts and the moved agent, source webhook, in $((t2 - t1)) ms after the 2xx (POST took $((t1 - t0)) ms); one agent fetch for two alerts"

# a CloudTrail alert: no agent to refresh
ct=$(fleet '{"op":"alert_add","agent":null}' | jq -r .id)
n=$(count_lines "$log")
expect_post 200 "$(alert_json "$ct" ',"source":"CloudTrail"')" 2>/dev/null || expect_post 200 "$(alert_json "$ct")"
wait_until 10 "the CloudTrail alert in the change log" has_line ".key == \"threatstack:alert:$ct\""
lines_since "$log" "$n" | jq -e -s 'all(.[]; .type != "threatstack_agent")' >/dev/null ||
	fail "a CloudTrail alert refreshed an agent"
echo "CloudTrail alert: in the change log, no agent"

# an alert Threat Stack does not know: unconfirmed, retried, given up; never in a sink
n=$(count_lines "$log")
expect_post 200 "$(alert_json 5f0000000000000000000bad)"
wait_until 10 "the unknown alert looked up" \
	inbox_is a "SELECT state FROM alert WHERE id = '5f0000000000000000000bad'" unconfirmed
grep -q 'alert 5f0000000000000000000bad is not known to Threat Stack' "$WORK/a.log" || fail "no log line for the unknown alert"
given_up() {
	inbox a "SELECT state, attempts, next_try, note FROM alert WHERE id = '5f0000000000000000000bad'" \
		>"$WORK/unknown.state"
	grep -q '^done|' "$WORK/unknown.state"
}
(wait_until 30 "the unknown alert given up" given_up) ||
	fail "not given up: $(cat "$WORK/unknown.state") at $(now_ms); $(tail -n 5 "$WORK/a.log")"
[ "$(inbox a "SELECT attempts FROM alert WHERE id = '5f0000000000000000000bad'")" -ge 2 ] || fail "given up without a retry"
grep -q 'alert 5f0000000000000000000bad not confirmed by Threat Stack within confirm_window (10 s): given up' "$WORK/a.log" ||
	fail "no log line for the alert given up"
grep -q 5f0000000000000000000bad < <(lines_since "$log" "$n") && fail "an unconfirmed alert reached the sink"
echo "unknown alert: unconfirmed, retried, given up after confirm_window, never pushed"

# a burst: many webhooks at once are refreshed in batches, not one run each
runs_before=$(tcurl "$URL/metrics" | awk -F'} ' '/^tsgraphd_sync_runs_total\{kind="refresh",result="ok"\}/ { print $2 }')
ids=()
for i in $(seq 1 40); do ids+=("$(fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" | jq -r .id)"); done
reset_stats
printf '%s\n' "${ids[@]}" | xargs -P 8 -I{} curl -sS --max-time 20 --cacert "$WORK/pki/cert.pem" \
	-o /dev/null -w '%{http_code}\n' --data-binary '{"id":"{}"}' "$URL$WEBHOOK_PATH/$SECRET" >"$WORK/codes"
[ "$(sort -u "$WORK/codes")" = 200 ] || fail "a burst got non-200 answers: $(sort "$WORK/codes" | uniq -c)"
wait_until 30 "the burst confirmed" \
	inbox_at_least a "SELECT count(*) FROM alert WHERE state = 'confirmed'" 43
runs_after=$(tcurl "$URL/metrics" | awk -F'} ' '/^tsgraphd_sync_runs_total\{kind="refresh",result="ok"\}/ { print $2 }')
[ $((runs_after - runs_before)) -lt 40 ] || fail "40 webhooks took $((runs_after - runs_before)) refresh runs"
[ "$(requests '/v2/agents/{id}')" -le $((runs_after - runs_before)) ] || fail "the agent was fetched more than once a batch"
echo "burst: 40 webhooks, $((runs_after - runs_before)) refresh runs, $(requests '/v2/agents/{id}') agent fetches"

stop_daemon a
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
replay_equals_store "$log" "$WORK/a.db"
echo "end to end ok"
