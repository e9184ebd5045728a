#!/usr/bin/env bash
# SIGHUP reloads `tsgraphd run` (docs/configuration.md), under a fake NOTIFY_SOCKET:
# RELOADING=1 with MONOTONIC_USEC=, then READY=1; the new webhook secret is the only one
# taken (the old one gets 401), the new certificate is the one served (its fingerprint), a
# new sink delivers and its secret is redacted from the log, the new rate limit reaches the
# sync thread, and a restart-only key (listen) keeps its running value with a warning. A
# broken configuration, an unreadable secret, a file that holds no certificate and a key
# that is not the certificate's each leave the running configuration whole, with one line
# why. A request whose body is half sent when a reload happens is answered 200 (with
# Connection: close) and stored. Last, a webhook sink whose receiver never
# answers: the sync thread delivering to it is named and the watchdog is no longer pinged.
# The receiver starts with a pool of two event loops (threads = 2) and is reloaded to one.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"

command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 is missing (it plays systemd's notify socket)"; exit 0; }

notified() { grep -q -- "$1" "$WORK/notify.log"; }
loops() { cat "/proc/$DAEMON_PID/task/"*/comm 2>/dev/null | grep -c "^$1\$" || true; } # MHD-worker: a pool's
count() { grep -c -- "$1" "$2" || true; }
fingerprint() { # the SHA-256 fingerprint of the certificate the receiver serves
	openssl s_client -connect "127.0.0.1:$PORT" </dev/null 2>/dev/null |
		openssl x509 -noout -fingerprint -sha256 2>/dev/null
}
# hup: SIGHUP, then waits for the Nth "daemon: SIGHUP" line's outcome (reloaded or refused).
hups=0
hup() {
	hups=$((hups + 1))
	kill -HUP "$DAEMON_PID"
	_done() { [ "$(($(count 'configuration reloaded from' "$WORK/a.log") + $(count 'reload refused' "$WORK/a.log")))" -ge "$hups" ]; }
	wait_until 10 "reload $hups to end" _done
	_ready() { [ "$(count 'READY=1' "$WORK/notify.log")" -ge $((hups + 1)) ]; }
	wait_until 5 "READY=1 after reload $hups" _ready
}

start_fake --agents 5 --cves 2 --alerts 2
start_catcher
make_cert
old_fp=$(openssl x509 -in "$WORK/pki/cert.pem" -noout -fingerprint -sha256)
write_receiver_config a 'threads = 2' # a pool of event loops, whatever the CPUs
listen_notify
start_daemon a NOTIFY_SOCKET="$WORK/notify.sock"
wait_until 20 "READY=1" notified 'READY=1'
wait_until 20 "the first full sync" grep -q 'sync: done run=1' "$WORK/a.log"
[ "$(fingerprint)" = "$old_fp" ] || fail "the receiver does not serve the first certificate"
[ "$(loops MHD-worker)" = 2 ] || fail "threads = 2 runs $(loops MHD-worker) pool threads: $(cat /proc/$DAEMON_PID/task/*/comm)"
expect_post 200 "$(alert_json reload-0)"

# The new configuration: another secret, another certificate, a rate limit, a new sink whose
# secret is its name (a line naming the sink shows whether the secret is redacted), and a
# listen address that needs a restart.
mv "$WORK/pki" "$WORK/pki-old"
make_cert
new_fp=$(openssl x509 -in "$WORK/pki/cert.pem" -noout -fingerprint -sha256)
[ "$new_fp" != "$old_fp" ] || fail "the two certificates are the same"
SECRET2=whsec-reloaded-0123456789abcdef
printf '%s\n' "$SECRET2" >"$WORK/webhook2.secret"
chmod 600 "$WORK/webhook2.secret"
hook=hooksecret0123456789abcdef
write_config a '[webhook]' 'listen = 127.0.0.1:1' "tls_cert = $WORK/pki/cert.pem" \
	"tls_key = $WORK/pki/key.pem" "secret_file = $WORK/webhook2.secret" 'threads = 1' \
	"[sink.$hook]" 'type = webhook' "url = $CATCHER_URL/hooks/reloaded" "secret = $hook" \
	'events = alert.created' 'backfill = true'
sed -i 's/^rate_limit = 6000$/rate_limit = 777/' "$WORK/a.conf"
hup
grep -q 'daemon: configuration reloaded from' "$WORK/a.log" || fail "not reloaded: $(tail -3 "$WORK/a.log")"
# RELOADING=1 (with MONOTONIC_USEC=) came before the second READY=1
reloading=$(grep -n 'RELOADING=1' "$WORK/notify.log" | head -n 1 | cut -d: -f1)
[ -n "$reloading" ] || fail "no RELOADING=1: $(cat "$WORK/notify.log")"
grep 'RELOADING=1' "$WORK/notify.log" | grep -q 'MONOTONIC_USEC=[0-9][0-9]*' || fail "RELOADING=1 without MONOTONIC_USEC="
ready2=$(grep -n 'READY=1' "$WORK/notify.log" | sed -n 2p | cut -d: -f1)
[ "$ready2" -gt "$reloading" ] || fail "READY=1 did not follow RELOADING=1"
notified 'STATUS=configuration reloaded' || fail "no STATUS= after the reload"
# threads = 1: the new listener is one event loop, and the retired pool goes once idle
one_loop() { [ "$(loops MHD-single)" = 1 ] && [ "$(loops MHD-worker)" = 0 ]; }
wait_until 20 "one event loop after the reload" one_loop
grep -q 'warning: daemon: reload: \[webhook\] listen changed, which needs a restart' "$WORK/a.log" ||
	fail "no warning for the restart-only key"
wait_until 10 "the sync thread to take it" grep -q 'the sync thread runs with the reloaded configuration: rate_limit 777/min' "$WORK/a.log"

# the secret: the old one is refused, the new one taken; the new certificate is served
[ "$(fingerprint)" = "$new_fp" ] || fail "the receiver does not serve the new certificate: $(fingerprint)"
expect_post 401 "$(alert_json reload-1)"
got=$(tcurl -o /dev/null -w '%{http_code}' --data-binary "$(alert_json reload-1)" "$URL$WEBHOOK_PATH/$SECRET2")
[ "$got" = 200 ] || fail "the new secret gets $got"
got=$(curl -sS --max-time 10 --cacert "$WORK/pki-old/cert.pem" -o /dev/null -w '%{http_code}' "$URL/healthz" 2>/dev/null || true)
[ "$got" = 000 ] || fail "the old certificate still verifies ($got)"

# the new sink: a new alert is refreshed and delivered to it, and its secret is redacted
agent=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
id=$(fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" | jq -r .id)
got=$(tcurl -o /dev/null -w '%{http_code}' --data-binary "$(alert_json "$id")" "$URL$WEBHOOK_PATH/$SECRET2")
[ "$got" = 200 ] || fail "the alert's webhook got $got"
_caught_alert() { caught | jq -e --arg id "$id" 'any(.[]; .body | contains($id))' >/dev/null; }
wait_until 20 "the new sink to deliver the alert" _caught_alert
grep -q 'sink \*\*\*: delivered' "$WORK/a.log" || fail "the new sink's line is not redacted: $(grep 'sink ' "$WORK/a.log" | tail -3)"
! grep -q "$hook" "$WORK/a.log" || fail "the new sink's secret is in the log"

# broken configurations: the running one stays whole, one line why, READY=1 again
cp "$WORK/a.conf" "$WORK/a.conf.good"
printf '[threatstack\n' >>"$WORK/a.conf"
hup
grep -q 'error: daemon: reload refused, the running configuration stays: .*a.conf:[0-9]*:' "$WORK/a.log" ||
	fail "no line for the parse error: $(tail -3 "$WORK/a.log")"
sed "s|$WORK/webhook2.secret|$WORK/missing.secret|" "$WORK/a.conf.good" >"$WORK/a.conf"
hup
grep -q 'reload refused, the running configuration stays: .*a.conf:[0-9]*: secret_file: cannot open' "$WORK/a.log" ||
	fail "no line for the unreadable secret: $(tail -3 "$WORK/a.log")"
printf -- '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n' >"$WORK/bad.pem"
sed "s|tls_cert = .*|tls_cert = $WORK/bad.pem|" "$WORK/a.conf.good" >"$WORK/a.conf"
hup
grep -q "reload refused, the running configuration stays: webhook: tls_cert $WORK/bad.pem: no PEM certificate in it" "$WORK/a.log" ||
	fail "no line for the bad certificate: $(tail -3 "$WORK/a.log")"
# a certificate whose key is another one's
sed "s|tls_key = .*|tls_key = $WORK/pki-old/key.pem|" "$WORK/a.conf.good" >"$WORK/a.conf"
hup
grep -q "reload refused, the running configuration stays: webhook: tls_key $WORK/pki-old/key.pem is not the key of tls_cert $WORK/pki/cert.pem" "$WORK/a.log" ||
	fail "no line for the mismatched key: $(tail -3 "$WORK/a.log")"
[ "$(count 'configuration reloaded from' "$WORK/a.log")" -eq 1 ] || fail "a broken configuration was taken"
[ "$(fingerprint)" = "$new_fp" ] || fail "the certificate changed after a refused reload"
expect_post 401 "$(alert_json reload-2)"
got=$(tcurl -o /dev/null -w '%{http_code}' --data-binary "$(alert_json reload-2)" "$URL$WEBHOOK_PATH/$SECRET2")
[ "$got" = 200 ] || fail "the running secret gets $got after refused reloads"
notified 'STATUS=reload refused' || fail "no STATUS= for a refused reload"
kill -0 "$DAEMON_PID" || fail "the daemon died"

# A request in flight across a reload: its headers and half its body before, the rest after.
# It is answered 200 and stored; the old listener's connection is closed after it.
body=$(alert_json inflight-1)
python3 -u -c '
import os, socket, ssl, sys, time
port, secret, body, ca, go = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port))), server_hostname="127.0.0.1")
s.sendall(("POST /v1/webhooks/threatstack/%s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           "Content-Length: %d\r\n\r\n" % (secret, len(body))).encode() + body[:len(body) // 2])
open(go + ".sent", "w").close()
while not os.path.exists(go):
    time.sleep(0.02)
s.sendall(body[len(body) // 2:])
answer = b""
while b"\r\n\r\n" not in answer:
    chunk = s.recv(4096)
    if not chunk:
        break
    answer += chunk
print(answer.split(b"\r\n")[0].decode(), "close" if b"Connection: close" in answer else "keep-alive")
' "$PORT" "$SECRET2" "$body" "$WORK/pki/cert.pem" "$WORK/go" >"$WORK/inflight.out" 2>&1 &
INFLIGHT_PID=$!
on_exit "kill $INFLIGHT_PID 2>/dev/null; wait $INFLIGHT_PID 2>/dev/null"
_sent() { [ -e "$WORK/go.sent" ] || ! kill -0 "$INFLIGHT_PID" 2>/dev/null; }
wait_until 30 "the first half of the request" _sent
[ -e "$WORK/go.sent" ] || fail "the request in flight: $(cat "$WORK/inflight.out")"
_in_flight() { tcurl "$URL/metrics" | grep -q '^tsgraphd_http_requests_in_flight [2-9]'; }
wait_until 10 "the request in flight" _in_flight
cp "$WORK/a.conf.good" "$WORK/a.conf"
hup
[ "$(count 'configuration reloaded from' "$WORK/a.log")" -eq 2 ] || fail "the second good reload was not taken"
touch "$WORK/go"
wait "$INFLIGHT_PID" || fail "the request in flight failed: $(cat "$WORK/inflight.out")"
grep -q '^HTTP/1.1 200 OK close$' "$WORK/inflight.out" || fail "the request in flight: $(cat "$WORK/inflight.out")"
[ "$(inbox a "SELECT count(*) FROM alert WHERE id = 'inflight-1'")" = 1 ] || fail "the request in flight is not stored"
stop_daemon a
echo "reload: RELOADING=1 then READY=1, new secret/certificate/sink/rate limit taken, restart-only key kept, 4 broken configurations refused, a request in flight across a reload answered 200 and stored"

# A sink stuck in a call: its receiver accepts and never answers (timeout 30 s), so the sync
# thread stops beating, and the watchdog (WATCHDOG_USEC=2 s) is no longer pinged.
python3 -u -c '
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(16)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
held = []
while True:
    c, _ = s.accept()
    held.append(c)
' "$WORK/hole.port" &
HOLE_PID=$!
on_exit "kill $HOLE_PID 2>/dev/null; wait $HOLE_PID 2>/dev/null"
wait_file 30 "$WORK/hole.port"
rm -rf "$WORK/b.db"*
cp "$WORK/a.conf.good" "$WORK/b.conf"
sed -i "s|$WORK/a\.|$WORK/b.|g; s|/hooks/reloaded|/x|; s|listen = .*|listen = 127.0.0.1:0|" "$WORK/b.conf"
sed -i "s|url = $CATCHER_URL/x|url = http://127.0.0.1:$(cat "$WORK/hole.port")/x\ntimeout = 30|" "$WORK/b.conf"
grep -q 'timeout = 30' "$WORK/b.conf" || fail "the stuck sink's config: $(cat "$WORK/b.conf")"
listen_notify
start_daemon b NOTIFY_SOCKET="$WORK/notify.sock" WATCHDOG_USEC=2000000
wait_until 20 "the watchdog to give up" grep -q 'the sync thread (delivering to the sinks) shows no progress for [0-9]* s: the watchdog is no longer pinged' "$WORK/b.log"
n1=$(count 'WATCHDOG=1' "$WORK/notify.log")
sleep 1.5 # one ping a second while pinged: a window with none shows the pings stopped
n2=$(count 'WATCHDOG=1' "$WORK/notify.log")
[ "$n1" = "$n2" ] || fail "the watchdog is still pinged while a sink is stuck ($n1 then $n2)"
kill "$HOLE_PID" # the sink's request fails at once: the stop need not wait for it
stop_daemon b
echo "reload: a sink stuck in a call names the sync thread's step and stops the watchdog's pings ($n1 sent before)"
