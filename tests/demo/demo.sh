#!/usr/bin/env bash
# `make demo`: tsgraphd run against the fake Threat Stack, on loopback only, showing the
# change log as it grows, one readable line per change.
#
# In a private temporary directory (0700, removed on exit): a self-signed certificate for
# 127.0.0.1 (openssl), build/fake_threatstack with a small fleet, a configuration (0600) with
# the webhook receiver over TLS with a secret and a file sink, and `tsgraphd run`. Every
# DEMO_INTERVAL seconds the fleet changes through the fake's /_fake/fleet operations (an
# agent offline or online, a new agent, a CVE added or removed, a new alert); a new alert is
# also sent to the daemon's webhook with curl over HTTPS, as Threat Stack would. The changes
# are read from the NDJSON change log with `tail -F` and jq.
#
# Runs until Ctrl-C (or SIGTERM), or for DEMO_SECONDS when set; then stops everything it
# started (the daemon with SIGTERM, waited for) and removes its directory.
#
# Environment: BUILD (default build), DEMO_SECONDS (0 = until Ctrl-C), DEMO_INTERVAL
# (default 3), DEMO_AGENTS (default 20), TMPDIR (where the private directory is made).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
TSGRAPHD=$BUILD/tsgraphd
FAKE=$BUILD/fake_threatstack
DEMO_SECONDS=${DEMO_SECONDS:-0}
DEMO_INTERVAL=${DEMO_INTERVAL:-3}
DEMO_AGENTS=${DEMO_AGENTS:-20}
POLL=10 # seconds between full syncs (the smallest poll_interval tsgraphd accepts)
FAKE_KEY=fake-api-key-0123456789abcdef
FAKE_ORG=545d0293b620cd090d000023
FAKE_USER=5537c4284e9684df7e000014

for tool in openssl curl jq tail; do
	command -v "$tool" >/dev/null 2>&1 || { echo "demo: $tool is missing (make deps)" >&2; exit 2; }
done
for bin in "$TSGRAPHD" "$FAKE"; do
	[ -x "$bin" ] || { echo "demo: $bin is missing (make)" >&2; exit 2; }
done

DIR=$(mktemp -d "${TMPDIR:-/tmp}/tsgraphd-demo.XXXXXX")
chmod 700 "$DIR"
FAKE_PID='' DAEMON_PID='' TAIL_PID='' JQ_PID=''

# Stops what was started, in order: the fleet changes stop with this shell's loop; the
# daemon gets SIGTERM and is waited for (SIGKILL after 20 s); then the reader of the change
# log, the fake, and the directory goes.
cleanup() {
	local status=$?
	trap '' INT TERM HUP
	trap - EXIT
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null || true
		local i=0
		while kill -0 "$DAEMON_PID" 2>/dev/null && [ $i -lt 400 ]; do sleep 0.05; i=$((i + 1)); done
		kill -0 "$DAEMON_PID" 2>/dev/null && kill -KILL "$DAEMON_PID" 2>/dev/null
	fi
	local dstatus=0
	[ -n "$DAEMON_PID" ] && { wait "$DAEMON_PID" 2>/dev/null || dstatus=$?; }
	if [ -n "$TAIL_PID" ]; then
		sleep 0.3 # lets tail -F pass on the daemon's last lines
		kill "$TAIL_PID" 2>/dev/null || true
		wait "$TAIL_PID" 2>/dev/null || true
	fi
	[ -n "$JQ_PID" ] && { wait "$JQ_PID" 2>/dev/null || true; }
	if [ -n "$FAKE_PID" ]; then
		kill -TERM "$FAKE_PID" 2>/dev/null || true
		wait "$FAKE_PID" 2>/dev/null || true
	fi
	if [ -n "$DAEMON_PID" ]; then
		local n=0
		[ -f "$DIR/changes.ndjson" ] && n=$(wc -l <"$DIR/changes.ndjson")
		echo "demo: stopped; tsgraphd exited $dstatus after writing $n changes; removed $DIR"
		if [ "$dstatus" -ne 0 ]; then
			echo "demo: the daemon's last log lines:"
			tail -n 5 "$DIR/tsgraphd.log" 2>/dev/null | sed 's/^/  /'
		fi
	fi
	rm -rf "$DIR"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

die() {
	echo "demo: $*" >&2
	exit 1
}
# wait_for SECONDS CMD...: polls CMD every 50 ms.
wait_for() {
	local n=$(($1 * 20))
	shift
	until "$@"; do
		n=$((n - 1))
		[ $n -gt 0 ] || return 1
		sleep 0.05
	done
}

echo "demo: tsgraphd run against a fake Threat Stack fleet of $DEMO_AGENTS agents on 127.0.0.1; the fleet changes every ${DEMO_INTERVAL} s," \
	"new alerts reach the daemon as HTTPS webhooks, the rest at its next full sync (every $POLL s); each change of the graph is shown as it reaches the change log." \
	"$([ "$DEMO_SECONDS" -gt 0 ] && echo "Ends after $DEMO_SECONDS s." || echo "Ctrl-C to stop.")"

# --- the certificate, the fake, the configuration ------------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=tsgraphd demo" \
	-addext "subjectAltName=IP:127.0.0.1" -keyout "$DIR/key.pem" -out "$DIR/cert.pem" \
	>/dev/null 2>&1 || die "openssl could not make the certificate"
chmod 600 "$DIR/key.pem"

printf '%s\n' "$FAKE_KEY" >"$DIR/api.key"
chmod 600 "$DIR/api.key"
# The fake and the daemon run in their own sessions (setsid): Ctrl-C reaches this script, not
# them, and the cleanup stops them in order (tail and jq, started in the background by a
# non-interactive shell, ignore SIGINT).
setsid "$FAKE" --listen 127.0.0.1:0 --port-file "$DIR/fake.port" --key-file "$DIR/api.key" \
	--agents "$DEMO_AGENTS" --cves 4 --alerts 6 --seed "$((RANDOM % 1000 + 1))" \
	>"$DIR/fake.out" 2>"$DIR/fake.err" &
FAKE_PID=$!
wait_for 10 test -s "$DIR/fake.port" || die "the fake Threat Stack did not start: $(cat "$DIR/fake.err")"
FAKE_URL=http://127.0.0.1:$(cat "$DIR/fake.port")

SECRET=demo-$(openssl rand -hex 16)
printf '%s\n' "$SECRET" >"$DIR/webhook.secret"
chmod 600 "$DIR/webhook.secret"
(
	umask 077
	cat >"$DIR/tsgraphd.conf" <<CONF
[threatstack]
org_name = Fake Org
org_id = $FAKE_ORG
user_id = $FAKE_USER
api_key_file = $DIR/api.key
api_url = $FAKE_URL
rate_limit = 6000
poll_interval = $POLL
[store]
path = $DIR/state.db
[sink.changes]
type = file
path = $DIR/changes.ndjson
[webhook]
listen = 127.0.0.1:0
tls_cert = $DIR/cert.pem
tls_key = $DIR/key.pem
secret_file = $DIR/webhook.secret
CONF
)
chmod 600 "$DIR/tsgraphd.conf"

# --- the daemon -------------------------------------------------------------------------------
setsid "$TSGRAPHD" -c "$DIR/tsgraphd.conf" run >"$DIR/tsgraphd.log" 2>&1 &
DAEMON_PID=$!
listening() { grep -q 'webhook: listening on' "$DIR/tsgraphd.log" || ! kill -0 "$DAEMON_PID" 2>/dev/null; }
wait_for 20 listening && kill -0 "$DAEMON_PID" 2>/dev/null ||
	die "tsgraphd run did not start: $(tail -n 5 "$DIR/tsgraphd.log")"
PORT=$(sed -n 's/.*webhook: listening on .*:\([0-9]*\) (.*/\1/p' "$DIR/tsgraphd.log" | head -n 1)
[ -n "$PORT" ] || die "no port in the daemon's log: $(tail -n 5 "$DIR/tsgraphd.log")"
HOOK=https://127.0.0.1:$PORT/v1/webhooks/threatstack
echo "demo: fake Threat Stack at $FAKE_URL, tsgraphd receiving webhooks at https://127.0.0.1:$PORT, change log $DIR/changes.ndjson"

delivered() { grep -q 'sink changes: delivered' "$DIR/tsgraphd.log" || ! kill -0 "$DAEMON_PID" 2>/dev/null; }
wait_for 60 delivered && kill -0 "$DAEMON_PID" 2>/dev/null ||
	die "the first full sync did not reach the change log: $(tail -n 5 "$DIR/tsgraphd.log")"
FIRST=$(wc -l <"$DIR/changes.ndjson")

# --- the change log, readable ------------------------------------------------------------------
# Labels: an entity by its displayName (an alert by its name and severity); a key not seen
# yet by its kind and id. The names of the first sync's entities seed the map.
JQ_DEFS='
def short: sub("^threatstack_"; "");
def keyname($names): $names[.] // (
	if startswith("threatstack:agent:") then "agent " + (.[18:] | .[0:8])
	elif startswith("threatstack:alert:") then "alert " + .[18:]
	elif startswith("threatstack:account:") then "account " + .[20:]
	elif test("^cve-") then .
	else sub(":"; " ") end);
def name: if ._type == "threatstack_alert" then "alert \"\(.name // .displayName)\" (\(.severity))"
	elif ._type == "threatstack_account" then "account \(.displayName // .name)"
	else "\(._type | short) \(.displayName // .name // .hostname // ._key)" end;
def names: reduce (.[] | select(.kind == "entity" and .object != null) | .object) as $o
	({}; .[$o._key] = ($o | name));
def clock: (.at | sub("\\.[0-9]+Z$"; "Z") | fromdateiso8601 | strflocaltime("%H:%M:%S"));
def sign: {"create": "+", "update": "~", "delete": "-"}[.op] // .op;
def what($names):
	if .kind == "entity" then ((.object | name?) // (.key | keyname($names)))
	else (.object // {}) as $o
		| ((.key | split("|")) as $p
			| "\(($o._fromEntityKey // $p[0]) | keyname($names)) \($o._class // ($p[1] | ascii_upcase))" +
				" \(($o._toEntityKey // $p[2]) | keyname($names))") end;
def line($names): "\(clock)  \(sign) \(what($names))" +
	(if .op == "update" then ": " + ([(.changed // [])[] as $f | (.object // {})[$f] as $v
		| if ($v | type) == "string" or ($v | type) == "boolean" then
			(if $f | test("(At|On)$") then $f else "\($f) \($v)" end) else $f end]
		| join(", ")) else "" end) +
	(if .source == "webhook" then "   [webhook]" else "" end);
'
jq -r -s "$JQ_DEFS"'
	"\(.[-1] | clock)  first sync: \(length) objects created: " +
	([group_by(.type)[] | "\(length) \(.[0].type | short)"] | join(", "))' "$DIR/changes.ndjson"
head -n "$FIRST" "$DIR/changes.ndjson" | jq -c -s "$JQ_DEFS"' names' >"$DIR/names.json"

mkfifo "$DIR/changes.fifo"
jq --unbuffered -n -r --slurpfile seed "$DIR/names.json" "$JQ_DEFS"'
	foreach inputs as $c ($seed[0]; if $c.kind == "entity" and $c.object != null
		then .[$c.key] = ($c.object | name) else . end; . as $names | $c | line($names))' \
	<"$DIR/changes.fifo" &
JQ_PID=$!
tail -n "+$((FIRST + 1))" -F "$DIR/changes.ndjson" >"$DIR/changes.fifo" 2>/dev/null &
TAIL_PID=$!

# --- the fleet changes ------------------------------------------------------------------------
fleet() { curl -sS -f --max-time 10 -d "$1" "$FAKE_URL/_fake/fleet"; }
truth() { curl -sS -f --max-time 10 "$FAKE_URL/_fake/fleet"; }
say() { echo "$(date +%H:%M:%S)  fleet: $*"; }
# pick JQ: one random value of the filter's output over the fake's truth, or nothing.
pick() { truth | jq -r "[$1] | if length == 0 then empty else .[$RANDOM % length] end"; }
hostname_of() { truth | jq -r --arg id "$1" '.agents[] | select(.id == $id) | .name // .hostname'; }

new_alert() {
	local agent id name
	agent=$(pick '.agents[] | select(.status == "online") | .id')
	[ -n "$agent" ] || return 0
	id=$(fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" | jq -r .id)
	name=$(hostname_of "$agent")
	say "a new alert on $name; Threat Stack sends its webhook"
	local body
	body=$(jq -cn --arg id "$id" --arg org "$FAKE_ORG" --arg host "$name" \
		'{alerts: [{id: $id, title: "alert on \($host)", created_at: (now * 1000 | floor),
			severity: 1, organization_id: $org, organization_Name: "Fake Org",
			server_or_region: $host, source: "Host"}]}')
	curl -sS --max-time 10 --cacert "$DIR/cert.pem" -o /dev/null -w '%{http_code}' \
		--data-binary "$body" "$HOOK/$SECRET" >"$DIR/hook.status" 2>"$DIR/hook.err" || true
	[ "$(cat "$DIR/hook.status")" = 200 ] ||
		say "the webhook was answered $(cat "$DIR/hook.status") $(cat "$DIR/hook.err")"
}
agent_offline() {
	local agent
	agent=$(pick '.agents[] | select(.status == "online") | .id')
	[ -n "$agent" ] || return 0
	fleet "{\"op\":\"agent_offline\",\"id\":\"$agent\"}" >/dev/null
	say "agent $(hostname_of "$agent") goes offline"
}
agent_online() {
	local agent
	agent=$(pick '.agents[] | select(.status == "offline") | .id')
	[ -n "$agent" ] || return 0
	fleet "{\"op\":\"agent_online\",\"id\":\"$agent\"}" >/dev/null
	say "agent $(hostname_of "$agent") comes back online"
}
agent_add() {
	local id
	id=$(fleet '{"op":"agent_add"}' | jq -r .id)
	say "a new agent is installed: $(hostname_of "$id")"
}
CVE_N=$((RANDOM % 9000 + 1000))
cve_add() {
	local agent
	agent=$(pick '.agents[] | .id')
	[ -n "$agent" ] || return 0
	CVE_N=$((CVE_N + 1))
	fleet "{\"op\":\"cve_add\",\"agent\":\"$agent\",\"cve\":\"CVE-2026-$CVE_N\"}" >/dev/null
	say "CVE-2026-$CVE_N found on $(hostname_of "$agent")"
}
cve_remove() {
	local pair agent cve
	pair=$(pick '.cves[] | .cveNumber as $c | (.agents // [])[] | "\(.agentId) \($c)"')
	[ -n "$pair" ] || return 0
	agent=${pair%% *} cve=${pair#* }
	fleet "{\"op\":\"cve_remove\",\"agent\":\"$agent\",\"cve\":\"$cve\"}" >/dev/null
	say "$cve fixed on $(hostname_of "$agent")"
}

STEPS=(new_alert agent_offline cve_add agent_add new_alert agent_online cve_remove)
start=$SECONDS
i=0
while :; do
	sleep "$DEMO_INTERVAL"
	[ "$DEMO_SECONDS" -gt 0 ] && [ $((SECONDS - start)) -ge "$DEMO_SECONDS" ] && break
	kill -0 "$DAEMON_PID" 2>/dev/null || die "tsgraphd run stopped: $(tail -n 5 "$DIR/tsgraphd.log")"
	"${STEPS[i % ${#STEPS[@]}]}" || say "(this change failed)"
	i=$((i + 1))
done
exit 0
