#!/usr/bin/env bash
# Benchmark: a full sync of a large fake fleet (default 10,000 agents), then a no-change
# sync, each timed with its peak memory; prints one Markdown table row per run.
#   BUILD=build tests/bench/bench-sync.sh [AGENTS] [CVES] [ALERTS]
# The rate limit is set to its maximum (6000/min) so the figure measures tsgraphd and the
# fake, not the Threat Stack budget (which, at 200/min, bounds a real organization).
TESTS_DIR=${TESTS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TESTS_DIR/e2e/lib.sh"

agents=${1:-10000} cves=${2:-1000} alerts=${3:-2000}
start_fake --agents "$agents" --cves "$cves" --alerts "$alerts" --seed 1 --page-size 100
write_config bench '[log]' 'level = warning'

measure() { # label, then the command
	local label=$1; shift
	/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$@" >"$WORK/out" 2>&1 ||
		fail "$label failed: $(tail -n 5 "$WORK/out")"
	read -r secs user sys kib <"$WORK/time"
	local stats; stats=$(curl -sS "$FAKE_URL/_fake/stats")
	printf '| %s | %s | %s | %s | %.1f | %.1f | %.1f |\n' "$label" "$agents" \
		"$(jq .api_requests <<<"$stats")" "$(count_lines "$WORK/bench.ndjson")" "$secs" \
		"$(echo "$user + $sys" | bc -l)" "$(echo "$kib / 1024" | bc -l)"
	curl -sS -X POST "$FAKE_URL/_fake/reset-stats" >/dev/null
}

echo "| run | agents | API requests | change lines (total) | wall s | CPU s | peak RSS (MiB) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
measure "first full sync" "$TSGRAPHD" -c "$WORK/bench.conf" sync
measure "no-change sync" "$TSGRAPHD" -c "$WORK/bench.conf" sync
fleet "{\"op\":\"agent_offline\",\"id\":\"$(fake_truth | jq -r '.agents[0].id')\"}" >/dev/null
measure "one agent offline" "$TSGRAPHD" -c "$WORK/bench.conf" sync
echo
echo "objects stored: $(sqlite3 "$WORK/bench.db" 'SELECT count(*) FROM object'), store size: $(du -h "$WORK/bench.db" | cut -f1)"
