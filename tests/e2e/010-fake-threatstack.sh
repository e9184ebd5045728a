#!/usr/bin/env bash
# Smoke test of the fake Threat Stack server itself: it starts on an ephemeral loopback port
# and publishes it through --port-file, its control endpoints answer, an unsigned API request
# is refused with 401 (and the refusal is counted), a non-loopback --listen is refused, and
# SIGTERM stops it with exit status 0.
. "$(dirname "$0")/lib.sh"
[ -x "$FAKE" ] || fail "missing $FAKE (run make)"
# every failure shows what the fake said
fail() { echo "FAIL: $*"; [ -f "$WORK/fake.err" ] && sed 's/^/  fake: /' "$WORK/fake.err"; exit 1; }

# A non-loopback address is refused before anything listens.
if timeout 5 "$FAKE" --listen 0.0.0.0:0 >/dev/null 2>&1; then fail "accepted a non-loopback --listen"; fi

start_fake --agents 7 --seed 42
port=$(cat "$WORK/fake.port")
[[ $port =~ ^[0-9]+$ ]] && [ "$port" -gt 0 ] || fail "bad port file content: $port"
[ "$FAKE_URL" = "http://127.0.0.1:$port" ] || fail "lib.sh's FAKE_URL is $FAKE_URL"
grep -qx "listening on 127.0.0.1:$port" "$WORK/fake.out" || fail "stdout lacks the listening line"
base=$FAKE_URL

# Control endpoints need no Hawk.
stats=$(curl -sS --max-time 5 "$base/_fake/stats")
[[ $stats == *'"api_requests":0'* ]] || fail "fresh stats: $stats"
fleet=$(curl -sS --max-time 5 "$base/_fake/fleet")
n=$(grep -o '"hostname"' <<<"$fleet" | wc -l)
[ "$n" -eq 7 ] || fail "expected 7 agents in /_fake/fleet, got $n"

# Unsigned and badly signed API requests are 401 with a JSON error and a Server-Authorization.
hdrs=$WORK/hdrs
code=$(curl -sS --max-time 5 -D "$hdrs" -o "$WORK/body" -w '%{http_code}' "$base/v2/agents?status=online")
[ "$code" = 401 ] || fail "unauthenticated /v2/agents gave $code"
grep -q '"errors"' "$WORK/body" || fail "401 body is not an errors object: $(cat "$WORK/body")"
grep -qi '^Server-Authorization: Hawk mac=' "$hdrs" || fail "401 lacks Server-Authorization"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' \
	-H 'Authorization: Hawk id="5537c4284e9684df7e000014", ts="1", nonce="x", ext="545d0293b620cd090d000023", mac="AAAA"' \
	"$base/v2/agents")
[ "$code" = 401 ] || fail "bad mac gave $code"
stats=$(curl -sS --max-time 5 "$base/_fake/stats")
[[ $stats == *'"auth_failures":2'* && $stats == *'"/v2/agents":2'* ]] || fail "stats after 401s: $stats"

# A fault can be queued at run time; bad control bodies are 400, unknown ids 404.
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -d '{"kind":"500","count":1}' "$base/_fake/fault")
[ "$code" = 200 ] || fail "POST /_fake/fault gave $code"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -d 'not json' "$base/_fake/fault")
[ "$code" = 400 ] || fail "garbage fault body gave $code"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -d '{"op":"agent_remove","id":"nope"}' "$base/_fake/fleet")
[ "$code" = 404 ] || fail "unknown agent gave $code"
curl -sS --max-time 5 -o /dev/null -X POST "$base/_fake/reset-stats"
stats=$(curl -sS --max-time 5 "$base/_fake/stats")
[[ $stats == *'"requests":0'* ]] || fail "stats after reset: $stats"

# SIGTERM: a clean exit with status 0.
kill -TERM "$FAKE_PID"
rc=0
wait_until 5 "the fake to exit after SIGTERM" eval '! kill -0 "$FAKE_PID" 2>/dev/null'
wait "$FAKE_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
echo "ok: fake_threatstack on port $port"
