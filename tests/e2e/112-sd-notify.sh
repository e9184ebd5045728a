#!/usr/bin/env bash
# `tsgraphd run` under systemd's notify protocol, with a fake NOTIFY_SOCKET (a unix datagram
# socket this test binds, listen_notify in lib-receiver.sh):
# READY=1 once the receiver listens and the first sync began, STATUS= after the sync, the
# watchdog pinged (WATCHDOG_USEC=2 s) while the sync thread makes progress, STOPPING=1 on
# SIGTERM and exit 0. Then a full sync stalled in a slow API answer: the pings stop.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib-receiver.sh"

command -v python3 >/dev/null 2>&1 || { echo "SKIP: python3 is missing (it plays systemd's notify socket)"; exit 0; }

has() { grep -q -- "$1" "$WORK/notify.log"; }

start_fake --agents 5 --cves 2 --alerts 2
make_cert
write_receiver_config a

listen_notify
start_daemon a NOTIFY_SOCKET="$WORK/notify.sock" WATCHDOG_USEC=2000000
wait_until 20 "READY=1" has 'READY=1'
wait_until 20 "the first full sync" grep -q 'sync: done run=1' "$WORK/a.log"
wait_until 10 "STATUS= after the full sync" has 'STATUS=last full sync ok at .*; 5 agents; backlog 0 changes'
# READY=1 comes after the receiver listens
ready_line=$(grep -n 'READY=1' "$WORK/notify.log" | head -n 1 | cut -d: -f1)
[ "$ready_line" -ge 1 ] || fail "no READY=1"
grep -q 'webhook: listening on' "$WORK/a.log" || fail "READY=1 before the receiver listened"
# the watchdog: about one ping a second with WATCHDOG_USEC=2 s
t0=$(now_ms)
three_pings() { [ "$(grep -c 'WATCHDOG=1' "$WORK/notify.log")" -ge 3 ]; }
wait_until 5 "three WATCHDOG=1" three_pings
n=$(grep -c 'WATCHDOG=1' "$WORK/notify.log")
# a webhook's refresh updates STATUS= too
expect_post 200 "$(alert_json notify-1)"
wait_until 20 "STATUS= after a refresh" has 'STATUS=last refresh sync'
stop_daemon a
wait_until 5 "STOPPING=1" has 'STOPPING=1'
echo "notify: READY=1, STATUS= ($(grep -o 'STATUS=last full[^|]*' "$WORK/notify.log" | tail -n 1)), $n WATCHDOG=1 within $(($(now_ms) - t0)) ms, STOPPING=1, exit 0"

# a stalled full sync: no heartbeat, the pings stop (systemd would restart the service)
fault '{"kind":"slow","count":1,"ms":60000,"path":"/v2/agents"}'
listen_notify
start_daemon a NOTIFY_SOCKET="$WORK/notify.sock" WATCHDOG_USEC=2000000
wait_until 10 "the full sync in its listing" grep -q 'sync: full sync started run=' "$WORK/a.log"
wait_until 10 "the watchdog to give up" grep -q 'the watchdog is no longer pinged' "$WORK/a.log"
n1=$(grep -c 'WATCHDOG=1' "$WORK/notify.log")
sleep 2.5
n2=$(grep -c 'WATCHDOG=1' "$WORK/notify.log")
[ "$n1" = "$n2" ] || fail "the watchdog is still pinged while the sync thread is stuck ($n1 then $n2)"
stop_daemon a
has 'STOPPING=1' || wait_until 5 "STOPPING=1" has 'STOPPING=1'
echo "notify: a full sync stuck for more than WATCHDOG_USEC stops the pings ($n1 sent before), STOPPING=1, exit 0"

# a JupiterOne job followed for longer than WATCHDOG_USEC (the fake keeps it
# FINALIZE_PENDING 5 s): the sink's answers and waits show progress, the pings go on
fault '{"kind":"clear"}'
start_fake_j1 --finalize-ms 5000
j1_sink_lines
write_receiver_config b "${J1_SINK[@]}"
listen_notify
start_daemon b NOTIFY_SOCKET="$WORK/notify.sock" WATCHDOG_USEC=2000000
wait_until 30 "the JupiterOne job to finish" grep -q 'sink j1: delivered' "$WORK/b.log"
! grep -q 'the watchdog is no longer pinged' "$WORK/b.log" ||
	fail "the watchdog gave up while the sink followed its job: $(grep watchdog "$WORK/b.log")"
[ "$(j1_stat .jobs_finished)" -ge 1 ] || fail "no job finished"
stop_daemon b
echo "notify: a JupiterOne job followed for 5 s under a 2 s watchdog: pinged throughout"
