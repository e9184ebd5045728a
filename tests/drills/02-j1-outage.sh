#!/usr/bin/env bash
# Drill 2 — JupiterOne down for a long spell, then back.
#
# The fake JupiterOne goes down (every request 503) for DRILL_J1_OUTAGE_SYNCS syncs (8), each
# after random fleet changes (3 to 8). Each of those syncs commits its changes, the file sink
# delivers them, the JupiterOne sink fails (exit 1, "delivery failed ... HTTP 503 after 5
# tries"), its cursor stays put and the backlog grows; no job is created while it is down;
# `tsgraphd status` shows the backlog and every failed attempt. JupiterOne comes back: the
# next sync delivers the whole backlog in one job (job_changes default 50000), and then the
# fake JupiterOne's graph is exactly the store's, the store is what a fresh sync builds and
# the change log is complete: nothing lost.
# Knobs: DRILL_J1_OUTAGE_SYNCS (8), DRILL_SEED.
. "$(dirname "$0")/lib.sh"
SYNCS=${DRILL_J1_OUTAGE_SYNCS:-8}
FLEET_MIN_AGENTS=60

start_fake --agents 80 --cves 15 --alerts 25 --seed "$DRILL_SEED" --page-size 20
start_fake_j1
j1_sink_lines
write_config a "${J1_SINK[@]}"
db=$WORK/a.db
seq_max() { sqlite3 "$db" 'SELECT max(seq) FROM outbox'; }
cursor() { sqlite3 "$db" "SELECT coalesce(max(seq), 0) FROM sink_cursor WHERE sink = '$1'"; }

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
j1_equals_store "$db" "before the outage"
delivered=$(cursor j1)
jobs_before=$(j1_stat .jobs_created)

j1_fault '{"kind":"down","on":true}'
t0=$(now_ms)
backlog=0
for ((i = 1; i <= SYNCS; i++)); do
	mutate_fleet $((3 + $(rnd 6)))
	expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
	expect_output "sink j1: delivery failed, changes stay in the outbox: "
	expect_output "HTTP 503 after 5 tries"
	[ "$(cursor j1)" = "$delivered" ] || fail "sync $i while down: the JupiterOne cursor moved"
	[ "$(cursor changes)" = "$(seq_max)" ] || fail "sync $i while down: the file sink did not deliver"
	now=$(($(seq_max) - delivered))
	[ "$now" -ge "$backlog" ] || fail "sync $i while down: the backlog shrank ($backlog to $now)"
	backlog=$now
	figure syncs_while_down "$i"
	figure backlog "$backlog"
done
down_s=$((($(now_ms) - t0) / 1000))
[ "$backlog" -gt 0 ] || fail "no backlog after $SYNCS syncs with fleet changes"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "j1                   jupiterone delivered to seq $delivered, backlog $backlog"
expect_output "! $SYNCS failed attempts, the last at "
[ "$(j1_stat .jobs_created)" = "$jobs_before" ] || fail "a job was created while JupiterOne was down"
figure outage_seconds "$down_s"
figure refused_503 "$(j1_stat '.rejected["503"]')"

j1_fault '{"kind":"down","on":false}'
t0=$(now_ms)
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "sink j1: delivered $backlog changes"
catch_up_ms=$(($(now_ms) - t0))
jobs=$(($(j1_stat .jobs_created) - jobs_before))
[ "$jobs" = 1 ] || fail "the backlog took $jobs jobs, want 1"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_no_output "    ! "
sinks_caught_up "$WORK/a.conf" || fail "a sink still has a backlog: $OUT"
converged a "after the outage"
j1_stats | jq -e '.jobs_failed == 0 and .jobs_aborted == 0' >/dev/null || fail "a job failed or was aborted: $(j1_stats)"
figure catch_up_jobs "$jobs"
figure catch_up_ms "$catch_up_ms"
figure changes "$(seq_max)"
figure lost 0
figure j1_equals_store yes
figure fleet_changes "$FLEET_OPS"
drill_pass
