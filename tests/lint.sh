#!/usr/bin/env bash
# Keeps banned calls out of the sources and the format uniform (.clang-format), so review is
# about design. Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
files=$(ls src/*.c include/tsgraphd/*.h tests/server/*.c tests/lib/*.[ch] 2>/dev/null || true)
banned='\b(atoi|atol|atoll|sprintf|vsprintf|strcpy|strcat|strtok|gets|strncpy|system)\s*\('
if grep -nE "$banned" $files; then
	echo "lint: banned call above (use the checked helpers in util.h)" >&2
	status=1
fi
if command -v clang-format >/dev/null 2>&1; then
	for f in $files; do
		if ! clang-format --dry-run --Werror "$f" >/dev/null 2>&1; then
			echo "lint: $f is not clang-formatted (run: clang-format -i $f)" >&2
			status=1
		fi
	done
fi
[ $status -eq 0 ] && echo "lint: ok ($(echo $files | wc -w) files)"
exit $status
