#!/usr/bin/env bash
# Runs the fault drills (tests/drills/NN-*.sh; `make drills`), each under its own time bound,
# its output shown as it goes, and ends with every drill's summary line and "N passed, N
# failed". Exits non-zero when a drill failed.
#   BUILD=build [DRILL_SEED=N] [DRILL_<NAME>_SECONDS=S] tests/drills/run-drills.sh [PATTERN]
# DRILL_SEED makes every drill use that seed (each prints the one it used). A drill's time
# bound is DRILL_<NAME>_SECONDS, NAME being its file name's word in capitals (KILL9,
# J1_OUTAGE, TS_STORMS, DISK_FULL, STORE_LOCKED); DRILL_SECONDS sets the default (300).
set -uo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
export BUILD TSGRAPHD="$PWD/$BUILD/tsgraphd" TESTS_DIR="$PWD/tests"
pattern=${1:-}
passed=0 failed=0 summaries=()
t0=$(date +%s)

for t in tests/drills/[0-9][0-9]-*.sh; do
	name=$(basename "$t" .sh)
	[ -n "$pattern" ] && [[ $name != *$pattern* ]] && continue
	word=${name#[0-9][0-9]-}
	word=${word^^}
	word=${word//-/_}
	var=DRILL_${word}_SECONDS
	bound=${!var:-${DRILL_SECONDS:-300}}
	log=$(mktemp)
	echo "=== $name (bound ${bound}s: $var)"
	timeout -k 10 "$bound" bash "$t" 2>&1 | tee "$log" | sed -u 's/^/  | /'
	status=${PIPESTATUS[0]}
	line=$(grep "^DRILL $name: \(PASS\|FAIL\)" "$log" | tail -n 1)
	if [ "$status" -eq 0 ] && [[ $line == *": PASS "* ]]; then
		passed=$((passed + 1))
	else
		failed=$((failed + 1))
		[ -n "$line" ] || line="DRILL $name: FAIL (exit $status$([ "$status" -eq 124 ] && echo ", over its ${bound}s bound"))"
		grep '^FAIL: ' "$log" | tail -n 1 | sed 's/^/    /' >>"$log.why"
	fi
	summaries+=("$line")
	[ -s "$log.why" ] && summaries+=("$(cat "$log.why")")
	rm -f "$log" "$log.why"
done

echo
echo "=== drills: $(($(date +%s) - t0))s"
printf '%s\n' "${summaries[@]}"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
