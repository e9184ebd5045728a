#!/usr/bin/env bash
# Change alerts end to end: fake Threat Stack → tsgraphd sync → two webhook sinks on the
# catcher. One sends every event as the change object, signed; the other sends a few events
# as Slack text, alerts only when high. The first sync (the baseline) sends nothing; each
# fleet change sends exactly the alerts its filter selects, in order, correctly signed (checked
# with openssl); a receiver answering 503 for a while loses nothing; a 4xx stops delivery
# until the receiver takes the change; a sync without changes sends nothing.
. "$(dirname "$0")/lib.sh"

start_fake --agents 30 --cves 10 --alerts 15 --seed 11 --page-size 10
start_catcher
secret=whsec-e2e-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf '%s\n' "$secret" >"$WORK/hook.secret"
chmod 600 "$WORK/hook.secret"
write_config a \
	'[sink.alerts]' 'type = webhook' "url = $CATCHER_URL/hooks/json?team=sec" \
	"secret_file = $WORK/hook.secret" \
	'[sink.chat]' 'type = webhook' "url = $CATCHER_URL/hooks/slack" 'format = slack' \
	'events = agent.status, cve.identified, cve.resolved, alert.created' 'min_severity = high'
db=$WORK/a.db

# The first sync creates every object: the baseline, not news. Nothing is sent.
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sink alerts: new webhook sink: starting after seq"
expect_output "sink chat: delivered 0 changes"
[ "$(caught_count)" -eq 0 ] || fail "the first sync sent $(caught_count) alerts"
baseline=$(sqlite3 "$db" "SELECT seq FROM sink_cursor WHERE sink = 'alerts'")
[ "$baseline" -gt 100 ] || fail "the baseline cursor is $baseline"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "alerts               webhook    delivered to seq $baseline, backlog 0"

# json_posts / slack_texts: what each sink received so far.
json_posts() { caught | jq -c '[.[] | select(.path == "/hooks/json?team=sec")]'; }
slack_texts() { caught | jq -r '.[] | select(.path == "/hooks/slack") | .body | fromjson | .text'; }
name_of() { sqlite3 "$db" "SELECT json_extract(json, '\$.name') FROM object WHERE key = '$1'"; }
# step NAME: syncs, then leaves the new POSTs of each sink in $WORK/json.new / slack.new.
json_seen=0 slack_seen=0
step() {
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
	json_posts | jq -c ".[$json_seen:][]" >"$WORK/json.new"
	slack_texts | tail -n +"$((slack_seen + 1))" >"$WORK/slack.new"
	json_seen=$((json_seen + $(wc -l <"$WORK/json.new")))
	slack_seen=$((slack_seen + $(wc -l <"$WORK/slack.new")))
	echo "$1: $(wc -l <"$WORK/json.new") json, $(wc -l <"$WORK/slack.new") slack"
}
# expect_json N JQ-FILTER WHAT: exactly N new json POSTs, every one matching.
expect_json() {
	[ "$(wc -l <"$WORK/json.new")" -eq "$1" ] ||
		fail "$3: $(wc -l <"$WORK/json.new") json posts, want $1: $(cut -c1-300 "$WORK/json.new")"
	jq -e -s "all(.[]; .body | fromjson | $2)" "$WORK/json.new" >/dev/null ||
		fail "$3: unexpected posts: $(cut -c1-400 "$WORK/json.new")"
}
expect_slack() { # the exact new texts, one a line
	diff <(printf '%s\n' "$@" | sed '/^$/d') "$WORK/slack.new" >/dev/null ||
		fail "slack texts: $(cat "$WORK/slack.new"), want: $*"
}

agent=$(fake_truth | jq -r '[.agents[] | select(.status == "online" and .name != null)][0].id')
akey=threatstack:agent:$agent
aname=$(name_of "$akey")
[ -n "$aname" ] || fail "no name for $akey"

fleet "{\"op\":\"agent_offline\",\"id\":\"$agent\"}" >/dev/null
step offline
expect_json 1 ".op == \"update\" and .key == \"$akey\" and .object.status == \"offline\"" offline
jq -e '.event == "agent.status" and .content_type == "application/json"' "$WORK/json.new" >/dev/null ||
	fail "offline: event header $(cat "$WORK/json.new")"
expect_slack "agent $aname went offline"

fleet "{\"op\":\"cve_add\",\"agent\":\"$agent\",\"cve\":\"CVE-2099-0001\"}" >/dev/null
step cve-add
expect_json 1 ".op == \"create\" and .key == \"$akey|identified|cve-2099-0001\"" cve-add
expect_slack "CVE-2099-0001 identified on $aname"

# New alerts on the agent, until there is a high one and another: the chat sink sends only
# the high ones; the alerts sink every one.
highs=() n=0
while [ $n -lt 12 ]; do
	id=$(fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" | jq -r .id)
	n=$((n + 1))
	sev=$(fake_truth | jq -r --arg id "$id" '.alerts[] | select(.id == $id) | .severity')
	[ "$sev" = 1 ] && highs+=("$id")
	[ ${#highs[@]} -gt 0 ] && [ ${#highs[@]} -lt $n ] && break
done
[ ${#highs[@]} -gt 0 ] && [ ${#highs[@]} -lt $n ] || fail "no mix of alert severities in $n alerts"
step alerts
expect_json $n ".op == \"create\" and .type == \"threatstack_alert\"" alerts
want=()
for id in "${highs[@]}"; do
	want+=("new high-severity alert on $aname: $(name_of "threatstack:alert:$id")")
done
expect_slack "${want[@]}"

fleet "{\"op\":\"alert_dismiss\",\"id\":\"${highs[0]}\",\"reason\":\"MAINTENANCE\"}" >/dev/null
step dismiss
expect_json 1 ".op == \"update\" and .key == \"threatstack:alert:${highs[0]}\"" dismiss
jq -e '.event == "alert.dismissed"' "$WORK/json.new" >/dev/null || fail "dismiss: $(cat "$WORK/json.new")"
expect_slack # not one of chat's events

fleet "{\"op\":\"tag_set\",\"id\":\"$agent\",\"key\":\"owner\",\"value\":\"team-blue\"}" >/dev/null
step tag
expect_json 1 ".op == \"update\" and .changed == [\"tag.owner\"]" tag
jq -e '.event == "agent.updated"' "$WORK/json.new" >/dev/null || fail "tag: $(cat "$WORK/json.new")"
expect_slack

# The receiver answers 503 three times: retried with backoff in the same sync, in order.
catcher_fault '{"status":503,"count":3}'
fleet "{\"op\":\"agent_online\",\"id\":\"$agent\"}" >/dev/null
fleet "{\"op\":\"cve_remove\",\"agent\":\"$agent\",\"cve\":\"CVE-2099-0001\"}" >/dev/null
step outage-short
expect_output "HTTP 503"
[ "$(catcher_stat refused)" -eq 3 ] || fail "outage-short: $(catcher_stat refused) refusals"
expect_json 2 '.op == "update" or .op == "delete"' outage-short
expect_slack "agent $aname is back online" "CVE-2099-0001 resolved on $aname"

# Down for longer than one delivery tries: the sync fails, the changes wait in the outbox.
catcher_fault '{"status":503,"count":1000,"retry_after":0}'
fleet "{\"op\":\"agent_offline\",\"id\":\"$agent\"}" >/dev/null
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sink alerts: delivery failed, changes stay in the outbox: the change at seq"
expect_output "failed 5 times, the last with HTTP 503"
expect_no_output "$secret"
expect_no_output "team=sec" # a URL may carry a token: it is never logged
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "alerts               webhook    delivered to seq"
expect_output "backlog 1"
expect_output "! 1 failed attempt"
# A 4xx is final for the delivery: no retry, the change stays first in line.
catcher_fault '{"status":410,"count":1}'
refused=$(catcher_stat refused)
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "the receiver refused the change at seq"
expect_output "with HTTP 410"
[ "$(catcher_stat refused)" -eq $((refused + 1)) ] || fail "a 410 was retried"
catcher_fault '{"status":0}'
step back
expect_json 1 ".op == \"update\" and .key == \"$akey\" and .object.status == \"offline\"" back
expect_slack "agent $aname went offline"

# Nothing changed: nothing sent.
step nothing
expect_json 0 true nothing
expect_slack

# Every json POST: signed over "<timestamp>.<body>", verified with openssl; the seqs strictly
# increase; and they are exactly the outbox's events after the baseline (from the change log).
json_posts | jq -c '.[]' >"$WORK/all.json"
while IFS= read -r post; do
	ts=$(jq -r .timestamp <<<"$post")
	sig=$(jq -r .signature <<<"$post")
	want=sha256=$(jq -j .body <<<"$post" | { printf '%s.' "$ts"; cat; } |
		openssl dgst -sha256 -hmac "$secret" | sed 's/.*= //')
	[ "$sig" = "$want" ] || fail "signature $sig, openssl says $want"
	now=$(date +%s)
	[ $((now - ts)) -lt 300 ] && [ $((ts - now)) -lt 300 ] || fail "timestamp $ts is not now"
done <"$WORK/all.json"
jq -r '.body | fromjson | .seq' "$WORK/all.json" >"$WORK/sent.seqs"
sort -n -u -c "$WORK/sent.seqs" || fail "the alerts are not in strictly increasing seq order"
jq -r --argjson base "$baseline" 'select(.seq > $base) | select(
	(.type == "threatstack_agent" and (.op != "update" or
		((.changed - ["lastReportedAt", "lastSeenOn"]) | length > 0))) or
	(.type == "threatstack_agent_identified_vulnerability" and .op != "update") or
	(.type == "threatstack_alert" and (.op == "create" or
		(.op == "update" and (.changed | index("dismissed")) and .object.dismissed)))) | .seq' \
	"$WORK/a.ndjson" >"$WORK/events.seqs"
diff "$WORK/events.seqs" "$WORK/sent.seqs" >/dev/null ||
	fail "sent seqs differ from the outbox's events: $(diff "$WORK/events.seqs" "$WORK/sent.seqs" | head)"
# The seq header matches the body's seq.
jq -e -s 'all(.[]; .seq == (.body | fromjson | .seq | tostring))' "$WORK/all.json" >/dev/null ||
	fail "X-Tsgraphd-Seq differs from the body's seq"
echo "webhook sinks ok: $(wc -l <"$WORK/sent.seqs") json alerts, $slack_seen slack texts"
