#!/usr/bin/env bash
# Benchmark: what the JupiterOne sink sends for a first sync (a full upload of the graph,
# what the earlier integration sent every run) and for syncs after 0%, 1% and 10% of the
# agents changed, against the fake JupiterOne on loopback. Prints one Markdown table.
#   BUILD=build tests/bench/bench-push.sh [AGENTS]        (default: 10000)
# Fleet: the sync benchmark's (60 CVEs, 3 on every agent through paged servers listings,
# AGENTS/5 alerts). A changed agent goes offline: its entity changes (status, active,
# lastReportedAt), nothing else.
TESTS_DIR=${TESTS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TESTS_DIR/e2e/lib.sh"
agents=${1:-10000}

start_fake --agents "$agents" --cves 60 --wide-cves 3 --alerts $((agents / 5)) --seed 1 \
	--page-size 100 --servers-page-size 500
start_fake_j1 --max-objects 20000000
j1_sink_lines
write_config p '[log]' 'level = warning' "${J1_SINK[@]}"
fake_truth | jq -r '.agents[] | select(.status == "online") | .id' >"$WORK/online"

echo "| sync ($agents agents) | agents changed | changes | requests | jobs | bytes sent | × of the full upload |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
full=0
# run LABEL CHANGED: one sync, then the figures of what it sent.
run() {
	local label=$1 changed=$2 seq0 seq1 bytes
	j1_reset_stats
	seq0=$(sqlite3 "$WORK/p.db" 'SELECT coalesce(max(seq), 0) FROM outbox' 2>/dev/null || echo 0)
	"$TSGRAPHD" -c "$WORK/p.conf" sync >"$WORK/out" 2>&1 || fail "$label: $(tail -n 5 "$WORK/out")"
	seq1=$(sqlite3 "$WORK/p.db" 'SELECT coalesce(max(seq), 0) FROM outbox')
	bytes=$(j1_stat .upload_bytes)
	[ "$full" -gt 0 ] || full=$bytes
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$changed" $((seq1 - seq0)) \
		"$(j1_stat .requests)" "$(j1_stat .jobs_finished)" "$bytes" \
		"$(echo "scale=4; $bytes / $full" | bc -l | sed 's/^\./0./')"
}
# offline FROM N: agents FROM+1 .. FROM+N of the online ones go offline.
offline() {
	sed -n "$(($1 + 1)),$(($1 + $2))p" "$WORK/online" | while read -r id; do
		fleet "{\"op\":\"agent_offline\",\"id\":\"$id\"}" >/dev/null
	done
}

run "first sync (full upload)" "$agents"
run "no change" 0
offline 0 $((agents / 100))
run "1% of agents changed" $((agents / 100))
offline $((agents / 100)) $((agents / 10))
run "10% of agents changed" $((agents / 10))
