#!/usr/bin/env bash
# 092 — the JupiterOne sink when JupiterOne fails.
#   outage   JupiterOne down (every request 503) across two syncs with fleet changes: each
#            sync commits, the file sink delivers, the JupiterOne sink fails (exit 1, the
#            error logged), status shows its failures and the backlog; nothing is lost:
#            once JupiterOne is back, one sync brings its graph to the store's and a fresh
#            sync's, including an agent created and removed while it was down
#   faults   429 and 5xx on every route (job creation, each upload, finalize, the job's
#            status) are retried and the sync succeeds with one job, nothing aborted
#   exhausted  an upload failing five times: the job is aborted with a reason, the sync
#            fails, the next sync sends the same changes in a new job
#   token    a refused token: the sync fails at once with a clear message that does not
#            hold the token; status shows it
. "$(dirname "$0")/lib.sh"

start_fake --agents 30 --cves 10 --alerts 15 --seed 21 --page-size 10
start_fake_j1
j1_sink_lines
write_config a "${J1_SINK[@]}"
db=$WORK/a.db
seq_max() { sqlite3 "$db" 'SELECT max(seq) FROM outbox'; }
cursor() { sqlite3 "$db" "SELECT coalesce(max(seq), 0) FROM sink_cursor WHERE sink = '$1'"; }

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
j1_equals_store "$db" first-sync

# --- outage ---------------------------------------------------------------------------------
j1_fault '{"kind":"down","on":true}'
delivered=$(cursor j1)
agent=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
fleet "{\"op\":\"agent_offline\",\"id\":\"$agent\"}" >/dev/null
transient=$(fleet '{"op":"agent_add"}' | jq -r .id)
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sink changes: delivered"
expect_output "sink j1: delivery failed, changes stay in the outbox: "
expect_output "HTTP 503 after 5 tries"
[ "$(cursor j1)" = "$delivered" ] || fail "outage: the cursor moved"
[ "$(cursor changes)" = "$(seq_max)" ] || fail "outage: the file sink did not deliver"
# a second sync while down: the agent added before is removed again, another is added
fleet "{\"op\":\"agent_remove\",\"id\":\"$transient\"}" >/dev/null
fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" >/dev/null
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sink j1: delivery failed"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "j1                   jupiterone delivered to seq $delivered, backlog $(($(seq_max) - delivered))"
expect_output "! 2 failed attempts, the last at "
expect_output "HTTP 503 after 5 tries"
[ "$(j1_stat .jobs_created)" = 1 ] || fail "outage: a job was created while down"
echo "outage: $(($(seq_max) - delivered)) changes waiting, nothing lost"

j1_fault '{"kind":"down","on":false}'
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sync: 0 created, 0 updated, 0 deleted"
expect_output "sink j1: delivered $(($(seq_max) - delivered)) changes"
j1_equals_store "$db" after-outage
j1_equals_fresh_sync after-outage
[ "$(j1_graph "$J1_SCOPE" | jq --arg k "threatstack:agent:$transient" '[(.entities + .relationships)[]
	| select(._key | contains($k))] | length')" = 0 ] || fail "after-outage: the transient agent is in JupiterOne"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "backlog 0"
expect_no_output "    ! "
echo "outage over: caught up in one sync"

# --- 429 and 5xx on every route: retried ------------------------------------------------------
j1_reset_stats
for f in '429 create_job' '500 entities' '503 relationships' '502 upload' '429 finalize' '504 get_job'; do
	j1_fault "{\"status\":${f% *},\"count\":2,\"route\":\"${f#* }\"}"
done
id=$(fake_truth | jq -r '.agents[2].id')
fleet "{\"op\":\"agent_remove\",\"id\":\"$id\"}" >/dev/null  # deletes: an /upload
fleet '{"op":"agent_add"}' >/dev/null
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
j1_stats | jq -e '.jobs_created == 1 and .jobs_finished == 1 and .jobs_aborted == 0
	and .rejected["429"] == 4 and .rejected["500"] == 2 and .rejected["503"] == 2
	and .rejected["502"] == 2 and .rejected["504"] == 2
	and ([.requests_by_route | .create_job, .entities, .relationships, .upload, .finalize]
		| all(. == 3))' >/dev/null || fail "faults: $(j1_stats)"
j1_equals_store "$db" faults
j1_equals_fresh_sync faults
echo "faults: every route retried, one job"

# --- retries exhausted: the job is aborted, the next sync resends -------------------------------
fleet "{\"op\":\"tag_set\",\"id\":\"$agent\",\"key\":\"team\",\"value\":\"red\"}" >/dev/null
j1_fault '{"status":503,"count":5,"route":"entities"}'
delivered=$(cursor j1)
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "/entities: HTTP 503 after 5 tries"
expect_output "aborted"
j1_jobs | jq -e '.jobs[-1].status == "ABORTED" and (.jobs[-1].abortReason | contains("HTTP 503"))' >/dev/null ||
	fail "exhausted: the job was not aborted with a reason: $(j1_jobs | jq -c '.jobs[-1]')"
[ "$(cursor j1)" = "$delivered" ] || fail "exhausted: the cursor moved"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
j1_jobs | jq -e '.jobs[-1].status == "FINISHED" and .jobs[-1].numEntitiesUpdated == 1' >/dev/null ||
	fail "exhausted: the next job did not carry the change: $(j1_jobs | jq -c '.jobs[-1]')"
j1_equals_store "$db" exhausted
echo "exhausted: aborted, resent in a new job"

# --- a refused token --------------------------------------------------------------------------
printf 'not-the-token-0123456789\n' >"$WORK/j1.token"
fleet "{\"op\":\"tag_set\",\"id\":\"$agent\",\"key\":\"team\",\"value\":\"blue\"}" >/dev/null
j1_reset_stats
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "JupiterOne refused the token or the account $J1_ACCOUNT (HTTP 401)"
expect_no_output "not-the-token-0123456789"
[ "$(j1_stat .requests)" = 1 ] || fail "token: a refused token was retried: $(j1_stats)"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "refused the token"
j1_sink_lines
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
j1_equals_store "$db" token
echo "092: ok"
