#!/usr/bin/env bash
# Benchmark: what the JupiterOne sink sends for a first sync (a full upload of the graph,
# what the earlier integration sent every run) and for syncs after 0%, 1% and 10% of the
# agents changed, against the fake JupiterOne on loopback. Prints one Markdown table.
#   BUILD=build tests/bench/bench-push.sh [AGENTS]        (default: 10000)
# Fleet: the sync benchmark's (60 CVEs, 3 on every agent through paged servers listings,
# AGENTS/5 alerts). A changed agent goes offline: its entity changes (status, active,
# lastReportedAt), nothing else. With BENCH_OUT set, the figures also go there as
# push.ROW.FIELD=VALUE lines (tests/bench/lib-bench.sh; ROW is full, none, 1pct, 10pct).
TESTS_DIR=${TESTS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TESTS_DIR/e2e/lib.sh"
. "$TESTS_DIR/bench/lib-bench.sh"
agents=${1:-10000}
bench_out push.command "tests/bench/bench-push.sh $agents"
bench_out push.agents "$agents"

start_fake --agents "$agents" --cves 60 --wide-cves 3 --alerts $((agents / 5)) --seed 1 \
	--page-size 100 --servers-page-size 500
start_fake_j1 --max-objects 20000000
j1_sink_lines
write_config p '[log]' 'level = warning' "${J1_SINK[@]}"
fake_truth | jq -r '.agents[] | select(.status == "online") | .id' >"$WORK/online"

echo "| sync ($agents agents) | agents changed | changes | requests | jobs | bytes sent | × of the full upload |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
full=0
# run LABEL KEY CHANGED: one sync, then the figures of what it sent.
run() {
	local label=$1 key=push.$2 changed=$3 seq0 seq1 bytes requests jobs ratio
	j1_reset_stats
	seq0=$(sqlite3 "$WORK/p.db" 'SELECT coalesce(max(seq), 0) FROM outbox' 2>/dev/null || echo 0)
	"$TSGRAPHD" -c "$WORK/p.conf" sync >"$WORK/out" 2>&1 || fail "$label: $(tail -n 5 "$WORK/out")"
	seq1=$(sqlite3 "$WORK/p.db" 'SELECT coalesce(max(seq), 0) FROM outbox')
	bytes=$(j1_stat .upload_bytes)
	requests=$(j1_stat .requests)
	jobs=$(j1_stat .jobs_finished)
	[ "$full" -gt 0 ] || full=$bytes
	ratio=$(echo "scale=4; $bytes / $full" | bc -l | sed 's/^\./0./')
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$changed" $((seq1 - seq0)) \
		"$requests" "$jobs" "$bytes" "$ratio"
	bench_out "$key.changed" "$changed"
	bench_out "$key.changes" $((seq1 - seq0))
	bench_out "$key.requests" "$requests"
	bench_out "$key.jobs" "$jobs"
	bench_out "$key.bytes" "$bytes"
	bench_out "$key.ratio" "$(echo "scale=6; $bytes / $full" | bc -l | sed 's/^\./0./')"
}
# offline FROM N: agents FROM+1 .. FROM+N of the online ones go offline.
offline() {
	sed -n "$(($1 + 1)),$(($1 + $2))p" "$WORK/online" | while read -r id; do
		fleet "{\"op\":\"agent_offline\",\"id\":\"$id\"}" >/dev/null
	done
}

run "first sync (full upload)" full "$agents"
run "no change" none 0
offline 0 $((agents / 100))
run "1% of agents changed" 1pct $((agents / 100))
offline $((agents / 100)) $((agents / 10))
run "10% of agents changed" 10pct $((agents / 10))
