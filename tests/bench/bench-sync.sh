#!/usr/bin/env bash
# Benchmark: full syncs against the fake Threat Stack at several fleet sizes, each judged
# against the parse floor of the same bodies (tests/bench/parse_floor.c: json-c parse of
# every body + SHA-256 of every object, measured in the same run). Prints one Markdown table.
#   BUILD=build tests/bench/bench-sync.sh [SIZES...]      (default: 1000 10000 100000)
# Fleet per size N: N agents, 60 CVEs of which 3 affect every agent through their paged
# servers listings (500 a page), N/5 alerts, 100 agents a page. The client's rate limit is
# set to its maximum (6000/min) so the figures measure tsgraphd, not the API budget.
# After each first sync, the store floor of the graph it stored (tests/bench/store_floor.c:
# the CPU SQLite alone spends inserting those objects, keys and JSON only, with an outbox
# row each, committed and checkpointed), as a multiple of the same run's parse floor: what
# of a first sync's ratio no code above SQLite can remove.
# With BENCH_OUT set, the figures also go there as sync.N.RUN.FIELD=VALUE lines
# (tests/bench/lib-bench.sh; RUN is first or nochange; sync.N.store_floor.FIELD).
TESTS_DIR=${TESTS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TESTS_DIR/e2e/lib.sh"
. "$TESTS_DIR/bench/lib-bench.sh"
FLOOR=${FLOOR:-$PWD/$BUILD/bench/parse_floor}
STORE_FLOOR=${STORE_FLOOR:-$PWD/$BUILD/bench/store_floor}
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1000 10000 100000)
bench_out sync.command "tests/bench/bench-sync.sh ${sizes[*]}"
bench_out sync.sizes "${sizes[*]}"

echo "| agents | run | API requests | API objects | wall s | CPU s | µs/object | floor µs/object | × floor | peak RSS MiB |"
echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"

# field NAME LINE: the value of NAME=VALUE in a line of such pairs (parse_floor's, store_floor's)
field() {
	tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"
}

measure() { # label key conf
	local label=$1 key=sync.$agents.$2 conf=$3 secs user sys kib floor objects fus cpu requests
	: >"$WORK/record"
	/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$TSGRAPHD" -c "$conf" sync >"$WORK/out" 2>&1 ||
		fail "$label failed: $(tail -n 5 "$WORK/out")"
	read -r secs user sys kib <"$WORK/time"
	floor=$("$FLOOR" "$WORK/record")
	objects=$(field objects "$floor")
	fus=$(field us_per_object "$floor")
	cpu=$(echo "$user + $sys" | bc -l)
	requests=$(curl -sS "$FAKE_URL/_fake/stats" | jq .api_requests)
	printf '| %s | %s | %s | %s | %.1f | %.2f | %.1f | %.2f | %.1f | %.1f |\n' "$agents" "$label" \
		"$requests" "$objects" "$secs" "$cpu" \
		"$(echo "$cpu * 1000000 / $objects" | bc -l)" "$fus" \
		"$(echo "$cpu * 1000000 / $objects / $fus" | bc -l)" "$(echo "$kib / 1024" | bc -l)"
	bench_out "$key.requests" "$requests"
	bench_out "$key.objects" "$objects"
	bench_out "$key.wall_s" "$secs"
	bench_out "$key.cpu_s" "$(printf '%.2f' "$cpu")"
	bench_out "$key.us_per_object" "$(printf '%.2f' "$(echo "$cpu * 1000000 / $objects" | bc -l)")"
	bench_out "$key.floor_us_per_object" "$fus"
	bench_out "$key.x_floor" "$(printf '%.2f' "$(echo "$cpu * 1000000 / $objects / $fus" | bc -l)")"
	bench_out "$key.rss_mib" "$(printf '%.1f' "$(echo "$kib / 1024" | bc -l)")"
	curl -sS -X POST "$FAKE_URL/_fake/reset-stats" >/dev/null
	measured_cpu=$cpu measured_objects=$objects measured_fus=$fus # for store_floor
}

# store_floor DB: the store floor of the graph the sync just measured stored, in its floors
store_floor() {
	local out objects cpu_s x rest
	out=$("$STORE_FLOOR" "$1" "$WORK/store-floor.db") || fail "store_floor failed on $1"
	objects=$(field objects "$out")
	cpu_s=$(echo "$(field cpu_us "$out") / 1000000" | bc -l)
	x=$(echo "$cpu_s * 1000000 / $measured_objects / $measured_fus" | bc -l)
	rest=$(echo "($measured_cpu - $cpu_s) * 1000000 / $measured_objects / $measured_fus" | bc -l)
	floors+=("$(printf '| %s | %s | %.2f | %.1f | %.2f | %.1f× | %.1f× |' "$agents" "$objects" \
		"$(field us_per_object "$out")" "$(echo "$(field json_bytes "$out") / 1048576" | bc -l)" \
		"$cpu_s" "$x" "$rest")")
	bench_out "sync.$agents.store_floor.objects" "$objects"
	bench_out "sync.$agents.store_floor.cpu_s" "$(printf '%.3f' "$cpu_s")"
	bench_out "sync.$agents.store_floor.x_floor" "$(printf '%.2f' "$x")"
	bench_out "sync.$agents.store_floor.rest_x_floor" "$(printf '%.2f' "$rest")"
}

for agents in "${sizes[@]}"; do
	start_fake --agents "$agents" --cves 60 --wide-cves 3 --alerts $((agents / 5)) --seed 1 \
		--page-size 100 --servers-page-size 500 --record "$WORK/record"
	write_config "b$agents" '[log]' 'level = warning'
	measure "first sync" first "$WORK/b$agents.conf"
	store_floor "$WORK/b$agents.db"
	measure "no-change sync" nochange "$WORK/b$agents.conf"
	db="$WORK/b$agents.db"
	sqlite3 "$db" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
	bench_out "sync.$agents.store_bytes_per_agent" $(($(stat -c %s "$db") / agents))
	stored+=("$agents agents: $(sqlite3 "$db" 'SELECT count(*) FROM object') objects, store $(($(stat -c %s "$db") / 1024 / 1024)) MiB, $(($(stat -c %s "$db") / agents)) bytes per agent")
	kill "$FAKE_PID" 2>/dev/null; wait "$FAKE_PID" 2>/dev/null || true
	rm -f "$db" "$db-wal" "$db-shm" "$WORK/b$agents.ndjson"
done
echo
echo "Store floor of each first sync's graph (tests/bench/store_floor.c), in the first sync's parse floors:"
echo
echo "| agents | graph objects | µs/object | JSON MiB | CPU s | × parse floor | first sync minus it, × parse floor |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '%s\n' "${floors[@]}"
echo
printf '%s\n' "${stored[@]}"
