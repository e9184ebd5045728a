#!/usr/bin/env bash
# Runs every unit test binary and every end-to-end scenario, each with a time bound, and
# ends with one summary line "N passed, N failed". Exits non-zero when anything failed.
#   BUILD=build [VALGRIND=1] tests/run-tests.sh [PATTERN]   (PATTERN filters test names)
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export BUILD TSGRAPHD="$PWD/$BUILD/tsgraphd" TESTS_DIR="$PWD/tests"
pattern=${1:-}
passed=0 failed=0 failures=()

run() { # name, command...
	local name=$1; shift
	[ -n "$pattern" ] && [[ $name != *$pattern* ]] && return 0
	local log; log=$(mktemp)
	if timeout 600 "$@" >"$log" 2>&1; then
		passed=$((passed + 1)); printf 'PASS  %s\n' "$name"
	else
		failed=$((failed + 1)); failures+=("$name"); printf 'FAIL  %s\n' "$name"
		sed 's/^/      | /' "$log" | tail -n 60
	fi
	rm -f "$log"
}

# VALGRIND=1 runs every unit test under valgrind's memcheck (leaks and errors fail it).
vg=()
[ "${VALGRIND:-0}" = 1 ] && vg=(valgrind -q --leak-check=full --errors-for-leak-kinds=definite
	--error-exitcode=99 --child-silent-after-fork=yes)
for t in "$BUILD"/tests/test_*; do
	[ -x "$t" ] && run "unit/$(basename "$t")" "${vg[@]}" "$t"
done
for t in tests/e2e/[0-9][0-9][0-9]-*.sh; do
	[ -f "$t" ] && run "e2e/$(basename "$t" .sh)" bash "$t"
done

[ ${#failures[@]} -gt 0 ] && printf 'failed: %s\n' "${failures[*]}"
printf '%d passed, %d failed\n' "$passed" "$failed"
[ "$failed" -eq 0 ]
