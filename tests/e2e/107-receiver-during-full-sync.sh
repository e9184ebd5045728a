#!/usr/bin/env bash
# A webhook that arrives while a full sync runs is refreshed and delivered before the full
# sync's next request, not after the whole full sync: the refresh runs on its own store
# connection and client, ahead in the shared rate budget. What it changed stays as it left
# it when the full sync applies: the moved agent keeps the hostname the refresh fetched
# (the full sync's listing had the old one), and the alert and the agent both created by
# the refresh are not created again (no conflict, the full sync's run ends "ok"). STATUS=
# (systemd's notify socket, played by python3 when there is one) says the first full sync
# still runs after the refresh ended.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"

start_fake --agents 20 --cves 6 --wide-cves 2 --servers-page-size 10 --alerts 4 --seed 7
make_cert
write_receiver_config a '[threatstack]' 'poll_interval = 3600'
# The vulnerabilities phase of the first full sync: six requests, each answered after 1 s.
fault '{"kind":"slow","ms":1000,"count":6,"path":"/v2/vulnerabilities"}'
agent=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
notify=()
if command -v python3 >/dev/null 2>&1; then
	listen_notify
	notify=(NOTIFY_SOCKET="$WORK/notify.sock")
fi
start_daemon a "${notify[@]}"
log=$WORK/a.ndjson
wait_until 20 "the full sync in its vulnerabilities phase" more_requests /v2/vulnerabilities 0

# The agents listing is behind the full sync: the agent moves, raises an alert, the webhook.
fleet "{\"op\":\"agent_set\",\"id\":\"$agent\",\"hostname\":\"moved-host.example.com\"}" >/dev/null
id=$(fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" | jq -r .id)
t1=$(now_ms)
expect_post 200 "$(alert_json "$id")"
has_line() { [ -f "$log" ] && jq -e -s "any(.[]; $1)" "$log" >/dev/null; }
wait_until 10 "the alert in the change log" has_line ".key == \"threatstack:alert:$id\""
t2=$(now_ms)
jq -e -s 'all(.[]; .source == "webhook")' "$log" >/dev/null ||
	fail "the full sync applied before the webhook's change: $(jq -c '[.source, .op, .key]' "$log" | head)"
echo "webhook during a full sync: its change line $((t2 - t1)) ms after the POST, before the full sync's"
status() { grep -q -- "$1" "$WORK/notify.log"; }
if [ ${#notify[@]} -gt 0 ]; then
	wait_until 5 "STATUS= after the refresh" status 'STATUS=first full sync running; last refresh sync ok at '
	! status 'STATUS=last refresh sync' ||
		fail "STATUS= said the last run was a refresh while the first full sync ran: $(grep -o 'STATUS=[^|]*' "$WORK/notify.log")"
fi

full_ok() { tcurl "$URL/metrics" | grep -q '^tsgraphd_sync_runs_total{kind="full",result="ok"} 1$'; }
(wait_until 60 "the full sync ended ok" full_ok) ||
	fail "the full sync did not end ok: $(tcurl "$URL/metrics" | grep sync_runs_total); $(tail -n 5 "$WORK/a.log")"
[ ${#notify[@]} -eq 0 ] || wait_until 5 "STATUS= after the full sync" status 'STATUS=last full sync ok at '
[ "$(sqlite3 "$WORK/a.db" "SELECT json_extract(json, '$.hostname') FROM object
	WHERE key = 'threatstack:agent:$agent'")" = moved-host ] ||
	fail "the full sync's older listing overwrote the refreshed agent: $(sqlite3 "$WORK/a.db" \
		"SELECT json FROM object WHERE key = 'threatstack:agent:$agent'")"
[ "$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE key = 'threatstack:alert:$id'")" = 1 ] ||
	fail "the alert is not stored"
jq -e -s "all(.[]; .op != \"delete\")" "$log" >/dev/null || fail "a first full sync deleted something"
for key in "threatstack:alert:$id" "threatstack:agent:$agent"; do
	[ "$(jq -s "[.[] | select(.key == \"$key\" and .op == \"create\")] | length" "$log")" = 1 ] ||
		fail "$key created $(jq -s "[.[] | select(.key == \"$key\")] | length" "$log") times"
done
echo "the full sync (result ok) left the refreshed agent and alert as the refresh stored them"

stop_daemon a
# The next full sync settles the graph against the API, and the change log replays to it.
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
replay_equals_store "$log" "$WORK/a.db"
echo "during a full sync ok"
