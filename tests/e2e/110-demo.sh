#!/usr/bin/env bash
# `make demo`'s script (tests/demo/demo.sh) with DEMO_SECONDS: it prints the first sync's
# summary and change lines for the fleet's changes (the webhook's alert among them), ends by
# itself, stops everything it started and removes its private directory.
. "$(dirname "$0")/lib.sh"

mkdir -p "$WORK/tmp"
set +e
# 25 s: two full syncs (every 10 s) after the fleet's first changes, even on a busy machine
# where the first sync starts late.
TMPDIR=$WORK/tmp BUILD=$BUILD DEMO_SECONDS=25 timeout 90 tests/demo/demo.sh \
	>"$WORK/out" 2>&1
status=$?
set -e
[ "$status" -eq 0 ] || fail "the demo exited $status: $(cat "$WORK/out")"
out() { cat "$WORK/out"; }
head -n 1 "$WORK/out" | grep -q '^demo: tsgraphd run against a fake Threat Stack' ||
	fail "no explanation first: $(out)"
grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2}  first sync: [0-9]+ objects created: .*[0-9]+ agent' "$WORK/out" ||
	fail "no first sync summary: $(out)"
grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2}  fleet: ' "$WORK/out" || fail "no fleet change: $(out)"
grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2}  \+ alert ".*" \((low|medium|high)\)   \[webhook\]$' "$WORK/out" ||
	fail "no alert line from the webhook: $(out)"
grep -qE '^[0-9]{2}:[0-9]{2}:[0-9]{2}  [~+-] agent ' "$WORK/out" || fail "no agent change line: $(out)"
[ "$(grep -cE '^[0-9]{2}:[0-9]{2}:[0-9]{2}  [~+-] ' "$WORK/out")" -ge 3 ] || fail "fewer than 3 change lines: $(out)"
grep -q '^demo: stopped; tsgraphd exited 0 ' "$WORK/out" || fail "the daemon did not stop cleanly: $(out)"
if pgrep -af "$WORK/tmp/tsgraphd-demo" >"$WORK/left"; then
	fail "left running: $(cat "$WORK/left")"
fi
[ -z "$(ls -A "$WORK/tmp")" ] || fail "left behind: $(ls -A "$WORK/tmp")"
echo "demo ok: $(grep -cE '^[0-9:]{8}  [~+-] ' "$WORK/out") change lines after the first sync"
sed -n '3,12p' "$WORK/out"
