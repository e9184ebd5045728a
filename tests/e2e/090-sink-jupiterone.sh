#!/usr/bin/env bash
# 090 — the JupiterOne sink end to end: fake Threat Stack → tsgraphd sync → fake JupiterOne.
# After the first sync and after each of eight different fleet changes (an agent offline, a
# new agent, an agent removed, a CVE added to and removed from an agent, a tag, an agent that
# leaves EC2, an alert dismissed and a new one), the fake JupiterOne's graph holds exactly the
# store's objects and exactly what a fresh full sync builds, each _key once. Each sync that
# changed something is one job (CREATE_OR_UPDATE, in the default scope, finished, nothing
# rejected); a sync with nothing changed sends nothing at all: no job, no upload, no request.
# The CVE every agent has is uploaded as the same small mapped target however many agents
# point at it. Every object JupiterOne holds validates against the JupiterOne data model.
. "$(dirname "$0")/lib.sh"
need_datamodel

start_fake --agents 30 --cves 10 --alerts 15 --seed 11 --page-size 10 --wide-cves 1
start_fake_j1
j1_sink_lines
write_config a "${J1_SINK[@]}"
db=$WORK/a.db

# step NAME: a sync; exactly one more job, finished; JupiterOne equals the store and a fresh
# sync.
step() {
	local jobs bytes
	jobs=$(j1_stat .jobs_finished)
	bytes=$(j1_stat .upload_bytes)
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
	expect_output "sink j1: delivered"
	[ "$(j1_stat .jobs_finished)" = $((jobs + 1)) ] ||
		fail "$1: $(($(j1_stat .jobs_finished) - jobs)) jobs finished, want 1"
	j1_equals_store "$WORK/a.db" "$1"
	j1_equals_fresh_sync "$1"
	echo "$1: ok, $(($(j1_stat .upload_bytes) - bytes)) bytes uploaded"
}

step first-sync
full_bytes=$(j1_stat .upload_bytes)
j1_jobs | jq -e --arg s "$J1_SCOPE" '.jobs | length == 1 and all(.[]; .syncMode == "CREATE_OR_UPDATE"
	and .scope == $s and .status == "FINISHED")' >/dev/null ||
	fail "the job is not a finished CREATE_OR_UPDATE job of scope $J1_SCOPE: $(j1_jobs)"
# The CVE every agent has: one mapped target per agent, each small.
wide=$(j1_graph "$J1_SCOPE" | jq '[.relationships[] | ._mapping.targetEntity | select(._type == "cve")
	| ._key] | group_by(.) | map(length) | max')
[ "$wide" -ge 30 ] || fail "no CVE on every agent ($wide)"
target_bytes=$(j1_stat .max_target_entity_bytes)
[ "$target_bytes" -gt 0 ] && [ "$target_bytes" -lt 512 ] ||
	fail "a mapped target of $target_bytes bytes"

# nothing changed: nothing sent
j1_reset_stats
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sync: 0 created, 0 updated, 0 deleted"
[ "$(j1_stats | jq -c '[.requests, .jobs_created, .upload_requests, .upload_bytes]')" = "[0,0,0,0]" ] ||
	fail "a sync with nothing changed talked to JupiterOne: $(j1_stats)"
echo "no change: 0 requests"

agent=$(fake_truth | jq -r '[.agents[] | select(.status == "online" and .instanceId != null)][0].id')
fleet "{\"op\":\"agent_offline\",\"id\":\"$agent\"}" >/dev/null
j1_reset_stats
step offline
small_bytes=$(j1_stat .upload_bytes) small_requests=$(j1_stat .requests)

for _ in 1 2 3 4 5; do fleet '{"op":"agent_add"}' >/dev/null; done
step five-new-agents

victim=$(fake_truth | jq -r --arg a "$agent" '[.agents[] | select(.id != $a)][1].id')
fleet "{\"op\":\"agent_remove\",\"id\":\"$victim\"}" >/dev/null
step remove-agent
[ "$(j1_graph "$J1_SCOPE" | jq --arg k "threatstack:agent:$victim" '[(.entities + .relationships)[] |
	select(._key | contains($k))] | length')" = 0 ] || fail "remove-agent: objects of the agent remain"

fleet "{\"op\":\"cve_add\",\"agent\":\"$agent\",\"cve\":\"CVE-2099-0001\"}" >/dev/null
step cve-add
fleet "{\"op\":\"cve_remove\",\"agent\":\"$agent\",\"cve\":\"CVE-2099-0001\"}" >/dev/null
step cve-remove

fleet "{\"op\":\"tag_set\",\"id\":\"$agent\",\"key\":\"owner\",\"value\":\"team-blue\"}" >/dev/null
step tag

# off EC2: PROTECTS aws_instance goes, PROTECTS a Host by hostname comes
fleet "{\"op\":\"agent_set\",\"id\":\"$agent\",\"instanceId\":null,\"hostname\":\"moved-01.example.com\"}" >/dev/null
step leaves-ec2
j1_graph "$J1_SCOPE" | jq -e --arg k "threatstack:agent:$agent" '[.relationships[] | select(._key | startswith($k))
	| ._type] | index("threatstack_agent_protects_server") and (index("threatstack_agent_protects_aws_instance") | not)' \
	>/dev/null || fail "leaves-ec2: the agent's PROTECTS did not move to the server"

alert=$(fake_truth | jq -r '[.alerts[] | select(.isDismissed == false)][0].id')
fleet "{\"op\":\"alert_dismiss\",\"id\":\"$alert\",\"reason\":\"MAINTENANCE\"}" >/dev/null
fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" >/dev/null
step alerts

# The wide CVE now has more agents; its target is still the same small object.
[ "$(j1_stat .max_target_entity_bytes)" -le "$target_bytes" ] ||
	fail "the mapped target grew to $(j1_stat .max_target_entity_bytes) bytes"
j1_stats | jq -e '.jobs_failed == 0 and .jobs_aborted == 0 and ([.rejected[]] | add) == 0' >/dev/null ||
	fail "JupiterOne rejected something: $(j1_stats)"

# Every object JupiterOne holds validates against the data model.
j1_graph "$J1_SCOPE" | jq -c '.entities[], .relationships[]' >"$WORK/j1.ndjson"
node "${TESTS_DIR:-tests}/datamodel/validate.js" "$WORK/j1.ndjson" ||
	fail "objects in JupiterOne's graph do not validate"

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "j1                   jupiterone delivered to seq $(sqlite3 "$db" 'SELECT max(seq) FROM outbox'), backlog 0"
expect_no_output "    ! "
echo "bytes: full upload $full_bytes; one agent offline: $small_bytes in $small_requests requests"
echo "090: ok"
