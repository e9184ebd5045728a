#!/usr/bin/env bash
# Each kind of fleet change produces exactly the expected changes and nothing else: an agent
# goes offline, a new agent, an agent removed, a CVE added to and removed from an agent, a
# tag changed, an alert dismissed.
. "$(dirname "$0")/lib.sh"

start_fake --agents 30 --cves 10 --alerts 15 --seed 11 --page-size 10
write_config a
log=$WORK/a.ndjson
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync

# step NAME: syncs and leaves this sync's change lines in $WORK/step.ndjson.
step() {
	local before; before=$(count_lines "$log")
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
	lines_since "$log" "$before" >"$WORK/step.ndjson"
	echo "$1: $(wc -l <"$WORK/step.ndjson") change(s)"
}
# only "JQ-FILTER" MESSAGE: every line of the step matches, and there is at least one.
only() {
	[ -s "$WORK/step.ndjson" ] || fail "$2: no change at all"
	jq -e -s "all(.[]; $1)" "$WORK/step.ndjson" >/dev/null ||
		fail "$2: unexpected changes: $(cat "$WORK/step.ndjson" | cut -c1-300)"
}
count() { wc -l <"$WORK/step.ndjson"; }

agent=$(fake_truth | jq -r '[.agents[] | select(.status == "online" and .instanceId != null)][0].id')
akey=threatstack:agent:$agent

fleet "{\"op\":\"agent_offline\",\"id\":\"$agent\"}" >/dev/null
step offline
[ "$(count)" -eq 1 ] || fail "offline: $(count) changes"
only ".op == \"update\" and .key == \"$akey\" and (.changed | index(\"status\")) and
	(.changed | index(\"active\")) and .object.status == \"offline\" and .object.active == false" offline

new=$(fleet '{"op":"agent_add"}' | jq -r .id)
step new-agent
only ".op == \"create\" and (.key | contains(\"threatstack:agent:$new\"))" new-agent
jq -e -s "any(.[]; .key == \"threatstack:agent:$new\" and .kind == \"entity\")" "$WORK/step.ndjson" >/dev/null ||
	fail "new-agent: no entity"
jq -e -s "any(.[]; .type == \"threatstack_account_has_agent\")" "$WORK/step.ndjson" >/dev/null ||
	fail "new-agent: no HAS relationship"

victim=$(fake_truth | jq -r --arg a "$agent" --arg n "$new" '[.agents[] | select(.id != $a and .id != $n)][0].id')
vkey=threatstack:agent:$victim
stored_rels=$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE key LIKE '%$vkey%'")
fleet "{\"op\":\"agent_remove\",\"id\":\"$victim\"}" >/dev/null
step remove-agent
only ".op == \"delete\" and (.key | contains(\"$vkey\"))" remove-agent
[ "$(count)" -eq "$stored_rels" ] || fail "remove-agent: $(count) deletes for $stored_rels stored objects"
[ "$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE key LIKE '%$vkey%'")" -eq 0 ] ||
	fail "remove-agent: objects of the agent remain"

fleet "{\"op\":\"cve_add\",\"agent\":\"$agent\",\"cve\":\"CVE-2099-0001\"}" >/dev/null
step cve-add
[ "$(count)" -eq 1 ] || fail "cve-add: $(count) changes"
only ".op == \"create\" and .key == \"$akey|identified|cve-2099-0001\" and
	.type == \"threatstack_agent_identified_vulnerability\" and
	.object._mapping.targetEntity._key == \"cve-2099-0001\"" cve-add

fleet "{\"op\":\"cve_remove\",\"agent\":\"$agent\",\"cve\":\"CVE-2099-0001\"}" >/dev/null
step cve-remove
[ "$(count)" -eq 1 ] || fail "cve-remove: $(count) changes"
only ".op == \"delete\" and .key == \"$akey|identified|cve-2099-0001\"" cve-remove

fleet "{\"op\":\"tag_set\",\"id\":\"$agent\",\"key\":\"owner\",\"value\":\"team-blue\"}" >/dev/null
step tag
[ "$(count)" -eq 1 ] || fail "tag: $(count) changes"
only ".op == \"update\" and .key == \"$akey\" and .changed == [\"tag.owner\"] and
	.object[\"tag.owner\"] == \"team-blue\"" tag

alert=$(fake_truth | jq -r '[.alerts[] | select(.isDismissed == false)][0].id')
fleet "{\"op\":\"alert_dismiss\",\"id\":\"$alert\",\"reason\":\"MAINTENANCE\"}" >/dev/null
step dismiss
[ "$(count)" -eq 1 ] || fail "dismiss: $(count) changes"
only ".op == \"update\" and .key == \"threatstack:alert:$alert\" and (.changed | index(\"open\")) and
	.object.open == false and .object.dismissReason == \"MAINTENANCE\"" dismiss

# A vulnerability id that cannot be a cve _key is skipped with a warning; the rest of the
# listing still completes (the valid CVE added beside it arrives).
fleet "{\"op\":\"cve_add\",\"agent\":\"$agent\",\"cve\":\"RHSA-2020_1234\"}" >/dev/null
fleet "{\"op\":\"cve_add\",\"agent\":\"$agent\",\"cve\":\"CVE-2099-0002\"}" >/dev/null
step odd-cve
expect_output "skipped vulnerability RHSA-2020_1234: not valid as a graph object"
[ "$(count)" -eq 1 ] || fail "odd-cve: $(count) changes"
only ".op == \"create\" and .key == \"$akey|identified|cve-2099-0002\"" odd-cve

step nothing
[ "$(count)" -eq 0 ] || fail "a sync after all that still changed $(count) objects"
replay_equals_store "$log" "$WORK/a.db"
# The graph's object count the apply keeps (the key index is sized from it) is the table's.
[ "$(sqlite3 "$WORK/a.db" 'SELECT objects FROM meta')" = "$(sqlite3 "$WORK/a.db" 'SELECT count(*) FROM object')" ] ||
	fail "meta.objects is $(sqlite3 "$WORK/a.db" 'SELECT objects FROM meta'), the graph holds $(sqlite3 "$WORK/a.db" 'SELECT count(*) FROM object')"
echo "fleet changes ok"
