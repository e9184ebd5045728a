#!/usr/bin/env bash
# Runs every unit test binary and every end-to-end scenario, each with a time bound, and
# ends with one summary line "N passed, N failed". Exits non-zero when anything failed.
#   BUILD=build [VALGRIND=1] [JOBS=N] tests/run-tests.sh [PATTERN]
# PATTERN filters test names. JOBS runs that many tests at once (default: one more than the
# number of CPUs: most scenarios spend their time waiting on loopback servers); each
# result is printed when its test ends, with its wall time. Every test is independent:
# its own temporary directory and ephemeral ports.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD TSGRAPHD="$PWD/$BUILD/tsgraphd" TESTS_DIR="$PWD/tests"
pattern=${1:-}
jobs=${JOBS:-$(($(nproc 2>/dev/null || echo 1) + 1))}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
[ "${VALGRIND:-0}" = 1 ] && jobs=${JOBS:-1}

results=$(mktemp -d)
trap 'rm -rf "$results"' EXIT
names=() cmds=()

add() { # name, command...
	local name=$1; shift
	[ -n "$pattern" ] && [[ $name != *$pattern* ]] && return 0
	names+=("$name"); cmds+=("$(printf '%q ' "$@")")
}

# VALGRIND=1 runs every unit test under valgrind's memcheck (leaks and errors fail it).
vg=()
[ "${VALGRIND:-0}" = 1 ] && vg=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite
	--error-exitcode=99 --child-silent-after-fork=yes)
for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] && add "unit/$(basename "$t")" "${vg[@]}" "$t"
done
for t in tests/e2e/[0-9][0-9][0-9]-*.sh; do
	[ -f "$t" ] && add "e2e/$(basename "$t" .sh)" bash "$t"
done

start() { # index: runs test N in the background, its log and status in $results
	local i=$1
	(
		t0=$SECONDS
		eval "timeout 600 ${cmds[i]}" >"$results/$i.log" 2>&1
		rc=$?
		echo "$rc $((SECONDS - t0))" >"$results/$i.tmp" && mv "$results/$i.tmp" "$results/$i.rc"
	) &
}

passed=0 failed=0 failures=() running=() next=0
report() { # index: prints and counts one finished test
	local i=$1 rc secs
	read -r rc secs <"$results/$i.rc"
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1)); printf 'PASS  %-40s %4ss\n' "${names[i]}" "$secs"
	else
		failed=$((failed + 1)); failures+=("${names[i]}")
		printf 'FAIL  %-40s %4ss (exit %s)\n' "${names[i]}" "$secs" "$rc"
		sed 's/^/      | /' "$results/$i.log" | tail -n 60
	fi
}
while [ "$next" -lt "${#names[@]}" ] || [ "${#running[@]}" -gt 0 ]; do
	while [ "$next" -lt "${#names[@]}" ] && [ "${#running[@]}" -lt "$jobs" ]; do
		start "$next"; running+=("$next"); next=$((next + 1))
	done
	wait -n 2>/dev/null || true
	still=()
	for i in "${running[@]}"; do
		if [ -f "$results/$i.rc" ]; then report "$i"; else still+=("$i"); fi
	done
	running=("${still[@]}")
done
wait

[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[*]}"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
