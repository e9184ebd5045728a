#!/usr/bin/env bash
# 091 — the JupiterOne sink's limits: with batch_bytes = 4KiB and job_changes = 50, a first
# sync of a few hundred changes goes out as several jobs, one after the other, in bodies of
# at most 4 KiB each (the CVE on all 60 agents still a target under 512 bytes each time), and a large change (agents removed and added in one sync) as well;
# JupiterOne's graph ends equal to the store's and a fresh sync's every time. An object too
# large for batch_bytes fails the delivery before any job is created, with a message naming
# it and batch_bytes; status shows it and the backlog; raising batch_bytes delivers it all.
. "$(dirname "$0")/lib.sh"

start_fake --agents 60 --cves 12 --alerts 20 --seed 5 --page-size 25
start_fake_j1
j1_sink_lines
write_config a "${J1_SINK[@]}" "batch_bytes = 4KiB" "job_changes = 50"
db=$WORK/a.db

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
rows=$(sqlite3 "$db" 'SELECT max(seq) FROM outbox')
want_jobs=$(((rows + 49) / 50))
[ "$want_jobs" -ge 3 ] || fail "only $rows changes: want at least three jobs' worth"
j1_stats | jq -e --argjson j "$want_jobs" '.jobs_created == $j and .jobs_finished == $j
	and .max_upload_bytes <= 4096 and .upload_requests > $j * 3' >/dev/null ||
	fail "first sync: not $want_jobs jobs of bodies up to 4 KiB: $(j1_stats)"
# one job at a time, each created only after the one before finished
[ "$(printf '%s\n' "$OUT" | grep -c 'sink j1: job .* finished')" = "$want_jobs" ] ||
	fail "first sync: the log does not show $want_jobs finished jobs: $OUT"
j1_equals_store "$db" first-sync
j1_equals_fresh_sync first-sync
# CVE #1 is on all 60 agents: each of its 60 mapped relationships carries the same small target
[ "$(j1_graph "$J1_SCOPE" | jq '[.relationships[] | ._mapping.targetEntity | select(._type == "cve")
	| ._key] | group_by(.) | map(length) | max')" -ge 60 ] || fail "no CVE on every agent"
[ "$(j1_stat .max_target_entity_bytes)" -lt 512 ] ||
	fail "a mapped target of $(j1_stat .max_target_entity_bytes) bytes"
echo "first sync: $rows changes in $want_jobs jobs, $(j1_stat .upload_requests) uploads of at most $(j1_stat .max_upload_bytes) bytes"

# A large change: ten agents removed, ten added, in one sync.
for id in $(fake_truth | jq -r '.agents[0:10][].id'); do
	fleet "{\"op\":\"agent_remove\",\"id\":\"$id\"}" >/dev/null
	fleet '{"op":"agent_add"}' >/dev/null
done
j1_reset_stats
before=$(sqlite3 "$db" 'SELECT max(seq) FROM outbox')
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
changes=$(($(sqlite3 "$db" 'SELECT max(seq) FROM outbox') - before))
[ "$changes" -gt 50 ] || fail "the large change made only $changes changes"
j1_stats | jq -e '.jobs_created >= 2 and .jobs_finished == .jobs_created and .max_upload_bytes <= 4096
	and .deletes_uploaded > 0' >/dev/null || fail "large change: $(j1_stats)"
j1_equals_store "$db" large-change
j1_equals_fresh_sync large-change
echo "large change: $changes changes in $(j1_stat .jobs_created) jobs"

# An object over batch_bytes: refused before any job, named, kept in the outbox.
write_config a "${J1_SINK[@]}" "batch_bytes = 1KiB"
big=$(fake_truth | jq -r '.agents[0].id')
fleet "{\"op\":\"tag_set\",\"id\":\"$big\",\"key\":\"notes\",\"value\":\"$(printf 'x%.0s' $(seq 1200))\"}" >/dev/null
j1_reset_stats
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sink j1: delivery failed, changes stay in the outbox: entity threatstack:agent:$big is "
expect_output "over batch_bytes (1024)"
[ "$(j1_stat .requests)" = 0 ] || fail "a job was started for an object that cannot be sent: $(j1_stats)"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "backlog "
expect_output "! 1 failed attempt"
expect_output "over batch_bytes (1024)"
expect_no_output "j1                   jupiterone delivered to seq $(sqlite3 "$db" 'SELECT max(seq) FROM outbox'), backlog 0"

write_config a "${J1_SINK[@]}"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
j1_equals_store "$db" after-raising-batch-bytes
j1_equals_fresh_sync after-raising-batch-bytes
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "backlog 0"
expect_no_output "    ! "
echo "091: ok"
