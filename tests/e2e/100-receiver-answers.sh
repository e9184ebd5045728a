#!/usr/bin/env bash
# The receiver's answers, over TLS with curl, row by row of DESIGN.md "Bad input and faults":
# 401 without or with a wrong secret (path or bearer), 413 over max_body (and 200 just
# under), 400 for no body, invalid JSON, wrong types or a missing id, 403 for another
# organization's alert, 200 for a repeated alert stored once, both payload shapes, 405/404
# for other methods and paths, TLS below 1.2 or with a non-AEAD cipher refused, /healthz and
# /metrics, idle connections held to the per-IP limit and closed by the timeout while
# another client is served, 503 with Retry-After when the inbox is full. Nothing refused is
# stored, every refusal is one line of JSON, and the secret never reaches the log.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"

start_fake --agents 5 --cves 3 --alerts 3
make_cert
write_receiver_config a 'max_body = 2KiB' 'timeout = 2' 'max_connections_per_ip = 4' \
	'[log]' 'level = debug'
start_daemon a
stored() { inbox a 'SELECT count(*) FROM alert'; }
metric() { tcurl "$URL/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }

# --- 401: constant-time compare, counted, nothing read or stored -------------------------
before=$(stored)
[ "$(tcurl -o "$WORK/resp" -w '%{http_code}' -d "$(alert_json a1)" "$URL$WEBHOOK_PATH")" = 401 ] ||
	fail "no secret: not 401"
resp_is_one_line_error
grep -qi '^WWW-Authenticate: Bearer' <(tcurl -D - -o /dev/null -d '{}' "$URL$WEBHOOK_PATH") ||
	fail "401 without WWW-Authenticate"
for wrong in "$WEBHOOK_PATH/wrong" "$WEBHOOK_PATH/${SECRET}x" "$WEBHOOK_PATH/${SECRET%?}" \
	"$WEBHOOK_PATH/$SECRET/more" "$WEBHOOK_PATH/"; do
	code=$(tcurl -o /dev/null -w '%{http_code}' -d "$(alert_json a1)" "$URL$wrong")
	[ "$code" = 401 ] || fail "wrong secret in the path: HTTP $code"
done
code=$(tcurl -o /dev/null -w '%{http_code}' -H "Authorization: Bearer nope" -d "$(alert_json a1)" "$URL$WEBHOOK_PATH")
[ "$code" = 401 ] || fail "wrong bearer: HTTP $code"
code=$(tcurl -o /dev/null -w '%{http_code}' -H "Authorization: Basic $SECRET" -d "$(alert_json a1)" "$URL$WEBHOOK_PATH")
[ "$code" = 401 ] || fail "the secret as another scheme: HTTP $code"
[ "$(stored)" = "$before" ] || fail "a 401 stored something"
[ "$(metric 'tsgraphd_http_requests_total{route="webhook",code="401"}')" = 9 ] ||
	fail "401s not counted: $(tcurl "$URL/metrics" | grep 401)"
code=$(tcurl -o "$WORK/resp" -w '%{http_code}' -H "Authorization: Bearer $SECRET" -d "$(alert_json b1)" "$URL$WEBHOOK_PATH")
[ "$code" = 200 ] || fail "the secret as a bearer token: HTTP $code $(cat "$WORK/resp")"
echo "401: no secret, wrong secrets, wrong bearer refused and counted; bearer accepted"

# --- 413 / 400: the body cap, no body ----------------------------------------------------
pad() { # a valid alert body of exactly $2 bytes for id $1
	local head; head=$(alert_json "$1")
	printf '%s%*s' "$head" $(($2 - ${#head})) ''
}
before=$(stored)
expect_post 413 "$(pad over1 2049)"
resp_is_one_line_error
grep -qi '^Connection: close' "$WORK/resp.h" || fail "413 without Connection: close"
expect_post 200 "$(pad under1 2048)"
[ "$(stored)" = $((before + 1)) ] || fail "the body at the cap was not stored (or the one over it was): $before -> $(stored): $(inbox a "SELECT id, state FROM alert")"
[ "$(inbox a "SELECT count(*) FROM alert WHERE id = 'over1'")" = 0 ] || fail "the body over the cap was stored"
# over the cap without a Content-Length (chunked): refused once the cap is passed
code=$(pad over2 6000 | tcurl -o "$WORK/resp" -w '%{http_code}' -H 'Transfer-Encoding: chunked' \
	--data-binary @- "$URL$WEBHOOK_PATH/$SECRET" 2>/dev/null || true)
case $code in 413 | 000) ;; *) fail "a chunked body over the cap: HTTP $code" ;; esac
chunked=$code
[ "$(inbox a "SELECT count(*) FROM alert WHERE id = 'over2'")" = 0 ] || fail "the chunked body over the cap was stored"
# a declared length over the cap is answered before the body is sent (Expect: 100-continue)
code=$(pad over3 60000 | tcurl -o /dev/null -w '%{http_code}' -H 'Expect: 100-continue' \
	--data-binary @- "$URL$WEBHOOK_PATH/$SECRET" || true)
[ "$code" = 413 ] || fail "a declared length over the cap: HTTP $code"
expect_post 400 ''
resp_is_one_line_error
jq -e '.error == "no body"' "$WORK/resp" >/dev/null || fail "no body: $(cat "$WORK/resp")"
echo "413 over max_body (declared; chunked: HTTP $chunked), 200 at it, 400 for no body"

# --- 400: invalid JSON, wrong types, missing id; 403: another organization ----------------
before=$(stored)
for body in '{"id":' 'not json' '[{"id":"x"}]' '{"id":"x"} trailing' '{"title":"no id"}' \
	'{"id":""}' '{"id":{"a":1}}' '{"id":"a b"}' '{"id":"x","severity":[1]}' \
	'{"id":"x","created_at":{}}' '{"id":"x","title":7}' '{"alerts":{}}' '{"alerts":[]}' \
	'{"alerts":[{"id":"ok1"},{"severity":2}]}' '{"id":"x","organization_Name":false}'; do
	expect_post 400 "$body"
	resp_is_one_line_error
done
jq -e '.error == "alerts[1]: missing id"' "$WORK/resp" >/dev/null 2>&1 ||
	expect_post 400 '{"alerts":[{"id":"ok1"},{"severity":2}]}'
jq -e '.error == "alerts[1]: missing id"' "$WORK/resp" >/dev/null || fail "400 does not say where: $(cat "$WORK/resp")"
expect_post 403 "$(alert_json f1 | sed 's/545d0293b620cd090d000023/ffffffffffffffffffffffff/')"
resp_is_one_line_error
expect_post 403 "{\"alerts\":[$(alert_json f2),{\"id\":\"f3\",\"organization_id\":\"someone-else\"}]}"
[ "$(stored)" = "$before" ] || fail "a 400 or 403 stored something: $(inbox a 'SELECT id FROM alert')"
echo "400 for bad bodies (one line each), 403 for another organization, nothing stored"

# --- 200: both shapes, numbers as strings, duplicates stored once ------------------------
expect_post 200 "{\"alerts\":[$(alert_json w1),$(alert_json w2)]}"
jq -e '.alerts == 2 and .new == 2 and .duplicates == 0' "$WORK/resp" >/dev/null || fail "wrapped: $(cat "$WORK/resp")"
expect_post 200 '{"id":"s1","created_at":"1459447024000","severity":"3","ORGANIZATION_NAME":"x","unknown":{"k":[1]}}'
expect_post 200 "$(alert_json w1)"
jq -e '.alerts == 1 and .new == 0 and .duplicates == 1' "$WORK/resp" >/dev/null || fail "duplicate: $(cat "$WORK/resp")"
expect_post 200 "{\"alerts\":[$(alert_json w2),$(alert_json w2)]}"
expect_post 200 "$(alert_json w3)" -H 'Content-Type:'
[ "$(inbox a "SELECT count(*) FROM alert WHERE id IN ('w1','w2','w3','s1')")" = 4 ] ||
	fail "both shapes: $(inbox a 'SELECT id FROM alert')"
[ "$(inbox a "SELECT json_extract(body, '$.severity') FROM alert WHERE id = 's1'")" = 3 ] ||
	fail "the body as received is not what the inbox holds"
[ "$(metric 'tsgraphd_webhook_alerts_total{result="duplicate"}')" = 3 ] ||
	fail "duplicates not counted: $(tcurl "$URL/metrics" | grep alerts_total)"
echo "200: wrapped and bare, numbers as strings, no Content-Type, duplicates stored once"

# --- other routes and methods -----------------------------------------------------------
code=$(tcurl -o "$WORK/resp" -D "$WORK/resp.h" -w '%{http_code}' "$URL$WEBHOOK_PATH/$SECRET")
[ "$code" = 405 ] && grep -qi '^Allow: POST' "$WORK/resp.h" || fail "GET on the webhook: HTTP $code"
[ "$(tcurl -o /dev/null -w '%{http_code}' "$URL/nope")" = 404 ] || fail "an unknown path is not 404"
[ "$(tcurl -o /dev/null -w '%{http_code}' -d x "$URL/healthz")" = 405 ] || fail "POST /healthz is not 405"
[ "$(tcurl -o "$WORK/resp" -w '%{http_code}' "$URL/healthz")" = 200 ] || fail "healthz: $(cat "$WORK/resp")"
jq -e '.status == "ok"' "$WORK/resp" >/dev/null || fail "healthz: $(cat "$WORK/resp")"
tcurl -D "$WORK/resp.h" -o "$WORK/metrics" "$URL/metrics"
grep -qi '^Content-Type: text/plain; version=0.0.4' "$WORK/resp.h" || fail "metrics content type"
for m in 'tsgraphd_http_requests_total{route="webhook",code="200"}' tsgraphd_inbox_depth \
	'tsgraphd_sync_runs_total{kind="full",result="ok"}' 'tsgraphd_sink_backlog{sink="changes"}' \
	'tsgraphd_api_requests_total{code="200"}' 'tsgraphd_changes_total{op="create",source="poll"}'; do
	grep -qF "$m " "$WORK/metrics" || fail "/metrics lacks $m: $(cat "$WORK/metrics")"
done
echo "405, 404, /healthz and /metrics"

# --- TLS: 1.2 and 1.3 with AEAD ciphers only ---------------------------------------------
[ "$(tcurl -o /dev/null -w '%{http_code}' --tlsv1.2 --tls-max 1.2 "$URL/healthz")" = 200 ] || fail "TLS 1.2 refused"
[ "$(tcurl -o /dev/null -w '%{http_code}' --tlsv1.3 "$URL/healthz")" = 200 ] || fail "TLS 1.3 refused"
tcurl -o /dev/null --tlsv1 --tls-max 1.1 "$URL/healthz" 2>/dev/null && fail "TLS 1.1 accepted"
tcurl -o /dev/null --tls-max 1.2 --ciphers ECDHE-RSA-AES128-SHA "$URL/healthz" 2>/dev/null &&
	fail "a CBC cipher accepted"
curl -sS --max-time 5 -o /dev/null "http://127.0.0.1:$PORT/healthz" 2>/dev/null && fail "plain HTTP accepted on the TLS port"
echo "TLS: 1.2 and 1.3 with AEAD; 1.1, CBC and plain HTTP refused"

# --- idle connections (slowloris): the per-IP limit holds them, the timeout closes them --
fds=()
for i in 1 2 3 4; do
	exec {fd}<>/dev/tcp/127.0.0.1/"$PORT" # connected, and silent: not even a TLS hello
	fds+=("$fd")
done
tcurl -o /dev/null "$URL/healthz" 2>/dev/null && fail "a fifth connection from the same address was served"
t0=$(now_ms)
[ "$(tcurl -o /dev/null -w '%{http_code}' --interface 127.0.0.2 "$URL/healthz")" = 200 ] ||
	fail "another client was not served while idle connections were open"
[ $(($(now_ms) - t0)) -lt 1500 ] || fail "another client waited behind the idle ones"
for fd in "${fds[@]}"; do
	timeout 10 cat <&"$fd" >/dev/null || fail "an idle connection was not closed by the timeout"
	exec {fd}<&-
done
[ "$(tcurl -o /dev/null -w '%{http_code}' "$URL/healthz")" = 200 ] || fail "not served after the idle ones closed"
echo "slowloris: 4 idle connections held to the per-IP limit, another client served at once, closed by the 2 s timeout"

grep -qF "$SECRET" "$WORK/a.log" && fail "the secret is in the log"
stop_daemon a

# --- 503 with Retry-After when the inbox is full; a duplicate still 200 ------------------
write_receiver_config b 'inbox_max = 2'
start_daemon b
expect_post 200 "$(alert_json unknown-1)"
expect_post 200 "$(alert_json unknown-2)"
expect_post 503 "$(alert_json unknown-3)"
resp_is_one_line_error
grep -qi '^Retry-After: 60' "$WORK/resp.h" || fail "503 without Retry-After: $(cat "$WORK/resp.h")"
jq -e '.error == "inbox full (inbox_max)"' "$WORK/resp" >/dev/null || fail "503: $(cat "$WORK/resp")"
expect_post 200 "$(alert_json unknown-1)"
[ "$(inbox b 'SELECT count(*) FROM alert')" = 2 ] || fail "a refused alert was stored"
stop_daemon b
echo "503 with Retry-After at inbox_max, a duplicate still accepted; stopped with exit 0"
