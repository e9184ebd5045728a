#!/usr/bin/env bash
# Benchmark: the webhook receiver of `tsgraphd run` over TLS with keep-alive, under wrk, side
# by side in one run with the Debian `webhook` package (adnanh/webhook, a hook answering 202
# that runs /bin/true) and nginx answering a fixed 202, all three on this machine with the
# same self-signed certificate and the same wrk parameters. Then the time from a webhook's
# 2xx to its change line in the file sink (build/bench/receiver_latency). Prints Markdown.
#   BUILD=build TSGRAPHD=$PWD/build/tsgraphd tests/bench/bench-receiver.sh
# WRK_ARGS (default "-t2 -c16 -d10s") and LATENCY_ALERTS (default 100) change the load;
# LATENCY_LARGE_AGENTS (default 30000, 0: skipped) the fleet stored for the same latency
# measured again on a large store (a refresh must cost the same whatever the store holds).
# WRK_SATURATE (default 64, 0: skipped) runs each server's unique-alert load again with that
# many connections: a receiver that answers only after a group commit's fsync is bound by
# its latency at a few connections, a server answering at once by its CPU; with more
# connections in flight each commit carries more of them. All wrk connections come from one
# address, so tsgraphd's max_connections_per_ip is raised to the largest of the two.
#
# Every request carries a realistic alert webhook (the reference's example, a unique id per
# request: a wrk Lua script counts per thread), so tsgraphd stores every one: synchronous
# FULL, one fsync per group commit, the 2xx only after it. The fake Threat Stack does not
# know these ids: the sync thread looks them up (404, left unconfirmed, retried later)
# within the API rate limit, as it would in production. After the run the inbox must hold
# every alert answered 2xx, and at most one more per connection (a request wrk cut off at
# the end may be stored without its answer being counted); a non-2xx answer fails the run.
# With BENCH_OUT set, the figures also go there (tests/bench/lib-bench.sh): receiver.SERVER.
# FIELD (SERVER: tsgraphd, tsgraphd_dups, webhook, nginx), receiver.saturated.SERVER.FIELD
# (tsgraphd, webhook, nginx: the WRK_SATURATE load) and latency.FIELD lines.
TESTS_DIR=${TESTS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TESTS_DIR/e2e/lib.sh"
. "$TESTS_DIR/e2e/lib-receiver.sh"
. "$TESTS_DIR/bench/lib-bench.sh"
LATENCY=${LATENCY:-$PWD/$BUILD/bench/receiver_latency}
read -r -a wrk_args <<<"${WRK_ARGS:--t2 -c16 -d10s}"
alerts=${LATENCY_ALERTS:-100}
large=${LATENCY_LARGE_AGENTS:-30000}
for tool in wrk nginx webhook; do
	command -v "$tool" >/dev/null || fail "$tool is missing (make bench installs it)"
done
saturate=${WRK_SATURATE:-64}
[[ $saturate =~ ^[0-9]+$ ]] || fail "WRK_SATURATE: a number of connections (0: no second load)"
# The connections as -cN, the only spelling load() replaces; 16 when not given (wrk's own
# default is 10).
conns=
for a in "${wrk_args[@]}"; do
	case $a in
	-c[0-9]*) conns=${a#-c} ;;
	-c | --connections*) fail "WRK_ARGS: give the connections as -cN" ;;
	esac
done
if [ -z "$conns" ]; then
	conns=16
	wrk_args+=("-c$conns")
fi
[[ $conns =~ ^[0-9]+$ ]] || fail "WRK_ARGS: give the connections as -cN"
per_ip=$((saturate > conns ? saturate : conns))
bench_out receiver.command "WRK_ARGS=\"${wrk_args[*]}\" WRK_SATURATE=$saturate LATENCY_ALERTS=$alerts LATENCY_LARGE_AGENTS=$large tests/bench/bench-receiver.sh"

# a free loopback port for nginx and webhook (tsgraphd takes an ephemeral one itself)
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 20000))
		[ -z "$(ss -Hltn "sport = :$p")" ] && { echo "$p"; return; }
	done
}

# wait_port PORT PID NAME: until something listens on 127.0.0.1:PORT
wait_port() {
	local limit=$(($(now_ms) + 10000))
	until [ -n "$(ss -Hltn "sport = :$1")" ]; do
		[ "$(now_ms)" -lt "$limit" ] && kill -0 "$2" 2>/dev/null || fail "$3 did not start"
		sleep 0.02
	done
}

# The wrk script: one alert webhook per request; ids RUN-THREAD-COUNTER, or with the
# argument "dup" the one id RUN-dup every time (stored by the first request: duplicates).
cat >"$WORK/post.lua" <<'EOF'
local threads, counter = 0, 0
function setup(thread)
	threads = threads + 1
	thread:set("tid", threads)
end
function init(args)
	run, org, mode = args[1], args[2], args[3]
	headers = { ["Content-Type"] = "application/json" }
end
function request()
	counter = counter + 1
	local id = mode == "dup" and (run .. "-dup") or string.format("%s-%d-%d", run, tid, counter)
	local body = string.format('{"alerts":[{"id":"%s","title":"Threat Intelligence Activity: '
		.. 'Communication to openbl by 185.110.132.54","created_at":1589814129000,"severity":1,'
		.. '"organization_id":"%s","organization_Name":"Prod","server_or_region":"ip-10-20-3-41",'
		.. '"source":"Host"}]}', id, org)
	return wrk.format("POST", nil, headers, body)
end
function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d\n", summary.requests,
		summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
		latency:percentile(50), latency:percentile(99)))
end
EOF

# load NAME URL RUN [MODE] [CONNECTIONS]: wrk against URL (WRK_ARGS, with CONNECTIONS
# instead of its -c when given); one table row; sets REQS, NON2XX and RPS. The run's figures
# go to BENCH_OUT under receiver.SERVER (runs u, d, w, n) or receiver.saturated.SERVER
# (runs su, sw, sn).
rows=()
load() {
	local name=$1 url=$2 run=$3 mode=${4:-unique} c=${5:-} reqs dur non2xx conn rd wr to p50 p99 key
	local args=("${wrk_args[@]}")
	if [ -n "$c" ]; then
		args=()
		for a in "${wrk_args[@]}"; do case $a in -c*) ;; *) args+=("$a") ;; esac; done
		args+=("-c$c")
	fi
	wrk "${args[@]}" --latency -s "$WORK/post.lua" "$url" -- "$run" "$FAKE_ORG" "$mode" \
		>"$WORK/wrk-$run.out" 2>&1 || fail "wrk against $name: $(tail -n 5 "$WORK/wrk-$run.out")"
	read -r reqs dur non2xx conn rd wr to p50 p99 < <(sed -n 's/^RESULT //p' "$WORK/wrk-$run.out")
	[ -n "$reqs" ] || fail "no result from wrk against $name: $(cat "$WORK/wrk-$run.out")"
	REQS=$reqs NON2XX=$non2xx
	RPS=$(echo "$reqs * 1000000 / $dur" | bc -l)
	rows+=("$(printf '| %s | %d | %d | %.0f | %.2f | %.2f | %d | %d |' "$name" "${c:-$conns}" \
		"$reqs" "$RPS" "$(echo "$p50 / 1000" | bc -l)" "$(echo "$p99 / 1000" | bc -l)" \
		"$non2xx" $((conn + rd + wr + to)))")
	case $run in
	u) key=receiver.tsgraphd ;;
	d) key=receiver.tsgraphd_dups ;;
	w) key=receiver.webhook ;;
	n) key=receiver.nginx ;;
	su) key=receiver.saturated.tsgraphd ;;
	sw) key=receiver.saturated.webhook ;;
	sn) key=receiver.saturated.nginx ;;
	*) fail "load: unknown run $run" ;;
	esac
	bench_out "$key.name" "$name"
	bench_out "$key.connections" "${c:-$conns}"
	bench_out "$key.requests" "$reqs"
	bench_out "$key.rps" "$(printf '%.0f' "$RPS")"
	bench_out "$key.p50_ms" "$(printf '%.2f' "$(echo "$p50 / 1000" | bc -l)")"
	bench_out "$key.p99_ms" "$(printf '%.2f' "$(echo "$p99 / 1000" | bc -l)")"
	bench_out "$key.non2xx" "$non2xx"
	bench_out "$key.socket_errors" $((conn + rd + wr + to))
}

# stored_alerts NAME RUN CONNECTIONS: the inbox holds every alert of RUN answered 2xx (REQS)
# and at most one more per connection (cut off at the end); sets STORED and DURABLE.
stored_alerts() {
	local stored
	[ "$NON2XX" -eq 0 ] || fail "tsgraphd answered $NON2XX non-2xx: $(tail -n 5 "$WORK/$1.log")"
	stored=$(inbox "$1" "SELECT count(*) FROM alert WHERE id LIKE '$2-%'")
	[ "$stored" -ge "$REQS" ] && [ "$stored" -le $((REQS + $3)) ] ||
		fail "wrk counted $REQS answers (all 2xx), the inbox holds $stored of its alerts"
	DURABLE="the inbox holds $stored alerts of the run for $REQS 2xx answers counted by wrk"
	STORED=$stored
}

make_cert
start_fake --agents 50 --cves 10 --alerts 10 --seed 1

# --- tsgraphd -------------------------------------------------------------------------------
write_receiver_config t 'inbox_max = 10000000' "max_connections_per_ip = $per_ip" \
	"max_connections = $((per_ip > 256 ? per_ip : 256))" \
	'[threatstack]' 'poll_interval = 3600'
start_daemon t
wait_until 30 "the first full sync delivered" grep -q 'sink changes: delivered' "$WORK/t.log"
load "tsgraphd (unique alerts, stored)" "$URL$WEBHOOK_PATH/$SECRET" u
ts_rps=$RPS
stored_alerts t u "$conns"
durable=$DURABLE
bench_out receiver.tsgraphd.stored "$STORED"
load "tsgraphd (one alert again and again: duplicates)" "$URL$WEBHOOK_PATH/$SECRET" d dup
[ "$NON2XX" -eq 0 ] || fail "tsgraphd answered $NON2XX non-2xx to duplicates"
[ "$(inbox t "SELECT count(*) FROM alert WHERE id LIKE 'd-%'")" = 1 ] || fail "a duplicate stored twice"
# The same daemon: its inbox now holds the alerts of both loads above, unknown to the fake,
# which the sync thread keeps looking up meanwhile (work webhook and nginx do not have).
if [ "$saturate" -gt 0 ]; then
	load "tsgraphd (unique alerts, stored)" "$URL$WEBHOOK_PATH/$SECRET" su unique "$saturate"
	ts_sat=$RPS
	stored_alerts t su "$saturate"
	durable_sat=$DURABLE
	bench_out receiver.saturated.tsgraphd.stored "$STORED"
fi
stop_daemon t

# --- webhook (adnanh/webhook, the Debian package) -------------------------------------------
cat >"$WORK/hooks.json" <<'EOF'
[{"id":"threatstack","execute-command":"/bin/true","include-command-output-in-response":false,
  "success-http-response-code":202,"response-message":"accepted"}]
EOF
wport=$(free_port)
webhook -hooks "$WORK/hooks.json" -ip 127.0.0.1 -port "$wport" -secure \
	-cert "$WORK/pki/cert.pem" -key "$WORK/pki/key.pem" >"$WORK/webhook.log" 2>&1 &
wpid=$!
on_exit "kill $wpid 2>/dev/null; wait $wpid 2>/dev/null"
wait_port "$wport" "$wpid" webhook
[ "$(tcurl -o /dev/null -w '%{http_code}' -d '{}' "https://127.0.0.1:$wport/hooks/threatstack")" = 202 ] ||
	fail "webhook does not answer 202: $(tail -n 5 "$WORK/webhook.log")"
wname="webhook $(webhook -version | awk '{ print $3 }') (202, runs /bin/true)"
load "$wname" "https://127.0.0.1:$wport/hooks/threatstack" w
wh_rps=$RPS
if [ "$saturate" -gt 0 ]; then
	load "$wname" "https://127.0.0.1:$wport/hooks/threatstack" sw unique "$saturate"
	wh_sat=$RPS
fi
kill "$wpid"; wait "$wpid" 2>/dev/null || true

# --- nginx: a fixed 202 ----------------------------------------------------------------------
nport=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	keepalive_requests 10000000;
	keepalive_timeout 60s;
	server {
		listen 127.0.0.1:$nport ssl;
		ssl_certificate $WORK/pki/cert.pem;
		ssl_certificate_key $WORK/pki/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		location / { return 202 '{"status":"ok"}'; }
	}
}
EOF
nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
npid=$!
on_exit "kill $npid 2>/dev/null; wait $npid 2>/dev/null"
wait_port "$nport" "$npid" nginx
nname="nginx $(nginx -v 2>&1 | sed 's,.*/,,') (fixed 202)"
load "$nname" "https://127.0.0.1:$nport/v1/webhooks/threatstack/x" n
ng_rps=$RPS
if [ "$saturate" -gt 0 ]; then
	load "$nname" "https://127.0.0.1:$nport/v1/webhooks/threatstack/x" sn unique "$saturate"
	ng_sat=$RPS
fi
kill -QUIT "$npid"; wait "$npid" 2>/dev/null || true

echo "| server | connections | requests | requests/s | p50 ms | p99 ms | non-2xx | socket errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
echo
printf 'wrk %s, keep-alive, TLS; tsgraphd/webhook = %.2f×, tsgraphd/nginx = %.2f (%.0f%%); %s.\n' \
	"${wrk_args[*]}" "$(echo "$ts_rps / $wh_rps" | bc -l)" "$(echo "$ts_rps / $ng_rps" | bc -l)" \
	"$(echo "100 * $ts_rps / $ng_rps" | bc -l)" "$durable"
if [ "$saturate" -gt 0 ]; then
	printf 'With %d connections: tsgraphd/webhook = %.2f×, tsgraphd/nginx = %.2f (%.0f%%); %s.\n' \
		"$saturate" "$(echo "$ts_sat / $wh_sat" | bc -l)" "$(echo "$ts_sat / $ng_sat" | bc -l)" \
		"$(echo "100 * $ts_sat / $ng_sat" | bc -l)" "$durable_sat"
fi

# --- webhook 2xx → change line ----------------------------------------------------------------
# send_alerts NAME OUT: $alerts alerts the fake knows, on one online agent, sent one at a time
# to the running daemon NAME, timed to their change line in its file sink (OUT: KEY=VALUE);
# then the daemon is stopped.
send_alerts() {
	local name=$1 out=$2 agent
	agent=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
	for _ in $(seq "$alerts"); do fleet "{\"op\":\"alert_add\",\"agent\":\"$agent\"}" | jq -r .id; done >"$WORK/ids"
	"$LATENCY" "$URL$WEBHOOK_PATH/$SECRET" "$WORK/pki/cert.pem" "$WORK/$name.ndjson" "$FAKE_ORG" \
		<"$WORK/ids" >"$out" || fail "receiver_latency failed"
	stop_daemon "$name"
}
# A fresh daemon (the run above left thousands of unknown alerts due for a retry, which the
# refreshes would take first, oldest first). Alerts the fake knows, on one online agent, sent
# one at a time.
write_receiver_config l '[threatstack]' 'poll_interval = 3600'
start_daemon l
wait_until 30 "the first full sync delivered" grep -q 'sink changes: delivered' "$WORK/l.log"
send_alerts l "$WORK/latency"
echo
sed 's/^/webhook 2xx → change line in the file sink, one alert at a time: /' "$WORK/latency"
for kv in $(cat "$WORK/latency"); do bench_out "latency.${kv%%=*}" "${kv#*=}"; done

# --- the same on a large store ---------------------------------------------------------------
# A refresh works on the few owners it names: the store's size must not show in it. The
# store is filled by `tsgraphd sync` first; the daemon's own first full sync (no change) ends
# before the alerts are sent.
if [ "$large" -gt 0 ]; then
	kill "$FAKE_PID" 2>/dev/null
	start_fake --agents "$large" --cves 60 --wide-cves 3 --alerts $((large / 5)) --seed 1 \
		--page-size 100 --servers-page-size 500
	write_receiver_config g '[threatstack]' 'poll_interval = 3600'
	"$TSGRAPHD" -c "$WORK/g.conf" sync >"$WORK/g.sync" 2>&1 || fail "the first sync failed: $(tail -n 3 "$WORK/g.sync")"
	start_daemon g
	wait_until 600 "the daemon's first full sync" grep -q 'sync: done run=' "$WORK/g.log"
	send_alerts g "$WORK/latency_large"
	objects=$(sqlite3 "$WORK/g.db" 'SELECT objects FROM meta')
	echo
	sed "s/^/the same with $large agents ($objects objects) stored: /" "$WORK/latency_large"
	for kv in $(cat "$WORK/latency_large"); do bench_out "latency_large.${kv%%=*}" "${kv#*=}"; done
	bench_out latency_large.agents "$large"
	bench_out latency_large.objects "$objects"
fi
