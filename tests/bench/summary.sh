#!/usr/bin/env bash
# The one table of a `make bench` run: reads the KEY=VALUE lines the benchmark scripts wrote
# into one results file (tests/bench/lib-bench.sh) and prints a Markdown block: the machine,
# date, commit and commands of the run, then one row per key figure with its goal and whether
# the run met it. With --doc FILE it also puts the block into FILE between the lines
# `<!-- bench:begin -->` and `<!-- bench:end -->` (replacing what was there; appended with
# the markers when FILE has none), leaving the rest of FILE as it was.
#   tests/bench/summary.sh --begin RESULTS        start a run: truncate RESULTS, record the
#                                                 machine, date and commit (CC, OPT: the build)
#   tests/bench/summary.sh [--doc FILE] RESULTS   print the block (and write it into FILE)
# A figure the results lack (a script not run) shows as "—" and its goal as "no data".
set -euo pipefail
export LC_ALL=C
top=$(cd "$(dirname "$0")/../.." && pwd)

die() { echo "summary.sh: $*" >&2; exit 2; }

if [ "${1:-}" = --begin ]; then
	[ $# -eq 2 ] || die "usage: summary.sh --begin RESULTS"
	out=$2
	cc=${CC:-cc}
	commit=unknown
	if git -C "$top" rev-parse --git-dir >/dev/null 2>&1; then
		commit="$(git -C "$top" rev-parse --short HEAD) ($(git -C "$top" rev-parse --abbrev-ref HEAD)"
		# the previous run's block in docs/benchmarks.md does not make the tree dirty
		if [ -n "$(git -C "$top" status --porcelain --untracked-files=no -- . ':!docs/benchmarks.md')" ]; then
			commit+=", with uncommitted changes"
		fi
		commit+=")"
	fi
	{
		echo "run.date=$(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "run.commit=$commit"
		echo "run.opt=${OPT:--O2 -g}"
		echo "machine.cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
		echo "machine.nproc=$(nproc)"
		echo "machine.mem_kib=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo)"
		echo "machine.kernel=$(uname -sr)"
		echo "machine.debian=$(cat /etc/debian_version 2>/dev/null || echo unknown)"
		echo "machine.cc=$("$cc" --version 2>/dev/null | head -n 1 || echo "$cc")"
		echo "machine.libs=$(for p in sqlite3 json-c libmicrohttpd libcurl openssl; do
			printf '%s %s, ' "$p" "$(pkg-config --modversion "$p" 2>/dev/null || echo '?')"
		done | sed 's/, $//')"
	} >"$out"
	exit 0
fi

doc=
if [ "${1:-}" = --doc ]; then
	[ $# -ge 2 ] || die "usage: summary.sh [--doc FILE] RESULTS"
	doc=$2
	shift 2
fi
[ $# -eq 1 ] || die "usage: summary.sh [--doc FILE] RESULTS"
results=$1
[ -r "$results" ] || die "$results: cannot read"

declare -A R
while IFS= read -r line || [ -n "$line" ]; do
	case $line in
	'' | '#'*) continue ;;
	*=*) R[${line%%=*}]=${line#*=} ;;
	*) die "$results: not KEY=VALUE: $line" ;;
	esac
done <"$results"

v() { printf '%s' "${R[$1]:-}"; }                     # KEY: the value, or nothing
vq() { printf '%s' "${R[$1]:-?}"; }                   # KEY: the value, or ?
has() { local k; for k; do [ -n "${R[$k]:-}" ] || return 1; done; }  # KEY...: all present
calc() { echo "$1" | bc -l; }                          # EXPR: bc's answer
fmt() { printf "%.${2:-1}f" "$1"; }                    # NUMBER [DECIMALS]
holds() { [ "$(calc "$1")" = 1 ]; }                      # EXPR: a true bc comparison
group() { # INTEGER: with thousands separators
	local s=$1 out=
	while [ ${#s} -gt 3 ]; do out=,${s: -3}$out; s=${s:0:${#s}-3}; done
	printf '%s%s' "$s" "$out"
}
verdict() { if "$@"; then printf 'met'; else printf '**not met**'; fi; } # CMD...
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 |"); } # AREA FIGURE MEASURED GOAL MET
nodata() { row "$1" "$2" "—" "$3" "no data"; }

# --- receiver --------------------------------------------------------------------------------
server_row() { # KEY LABEL
	local k=receiver.$1
	if has "$k.rps" "$k.p50_ms" "$k.p99_ms"; then
		row "receiver" "${R[$k.name]:-$2}: requests/s, p50, p99" \
			"$(group "$(v "$k.rps")")/s, $(v "$k.p50_ms") ms, $(v "$k.p99_ms") ms" "—" ""
	else
		nodata "receiver" "$2" "—"
	fi
}
server_row tsgraphd "tsgraphd (unique alerts, stored)"
server_row tsgraphd_dups "tsgraphd (one alert again and again: duplicates)"
server_row webhook "webhook (202, runs /bin/true)"
server_row nginx "nginx (fixed 202)"
if has receiver.tsgraphd.rps receiver.webhook.rps; then
	x=$(calc "$(v receiver.tsgraphd.rps) / $(v receiver.webhook.rps)")
	row "receiver" "tsgraphd / webhook (requests/s)" "$(fmt "$x" 2)×" "≥ 3×" "$(verdict holds "$x >= 3")"
else
	nodata "receiver" "tsgraphd / webhook (requests/s)" "≥ 3×"
fi
if has receiver.tsgraphd.rps receiver.nginx.rps; then
	x=$(calc "100 * $(v receiver.tsgraphd.rps) / $(v receiver.nginx.rps)")
	row "receiver" "tsgraphd / nginx (requests/s)" "$(fmt "$x" 0)%" "≥ 30%" "$(verdict holds "$x >= 30")"
else
	nodata "receiver" "tsgraphd / nginx (requests/s)" "≥ 30%"
fi
if has receiver.tsgraphd.requests receiver.tsgraphd.non2xx receiver.tsgraphd.stored; then
	k=receiver.tsgraphd
	row "receiver" "durability: 2xx answers counted by wrk, alerts of the run in the inbox, non-2xx, socket errors" \
		"$(group "$(v $k.requests)"), $(group "$(v $k.stored)"), $(v $k.non2xx), $(v $k.socket_errors)" \
		"every 2xx stored, no non-2xx" \
		"$(verdict holds "$(v $k.non2xx) == 0 && $(v $k.stored) >= $(v $k.requests)")"
else
	nodata "receiver" "durability: every 2xx stored, no non-2xx" "every 2xx stored, no non-2xx"
fi
if has latency.p50_ms latency.p99_ms; then
	row "webhook → change line" "2xx to the change line in the file sink, $(v latency.alerts) alerts one at a time: p50, p99, max" \
		"$(v latency.p50_ms) ms, $(v latency.p99_ms) ms, $(v latency.max_ms) ms" "p99 < 50 ms" \
		"$(verdict holds "$(v latency.p99_ms) < 50")"
else
	nodata "webhook → change line" "p50, p99" "p99 < 50 ms"
fi

# --- full sync -------------------------------------------------------------------------------
read -r -a sizes <<<"$(v sync.sizes)"
for n in "${sizes[@]}"; do
	for run in first nochange; do
		k=sync.$n.$run
		if [ $run = first ]; then label="first sync" goal=5; else label="no-change sync" goal=3; fi
		if has "$k.wall_s" "$k.cpu_s" "$k.rss_mib" "$k.requests" "$k.us_per_object" "$k.x_floor"; then
			row "full sync, $(group "$n") agents" \
				"$label: wall, CPU, peak RSS, API requests, CPU µs/object (floor), × floor" \
				"$(v "$k.wall_s") s, $(v "$k.cpu_s") s, $(v "$k.rss_mib") MiB, $(group "$(v "$k.requests")"), $(fmt "$(v "$k.us_per_object")") ($(fmt "$(v "$k.floor_us_per_object")" 2)), $(fmt "$(v "$k.x_floor")")×" \
				"≤ $goal× floor" "$(verdict holds "$(v "$k.x_floor") <= $goal")"
		else
			nodata "full sync, $(group "$n") agents" "$label" "≤ $goal× floor"
		fi
	done
done
# growth from each size to the next (per 10× when the sizes are 10× apart)
g() { # FROM TO: ×TO/FROM; a time under the clock's resolution has no meaningful ratio
	if holds "$1 > 0"; then printf '×%s' "$(fmt "$(calc "$2 / $1")" 2)"; else printf '—'; fi
}
for ((i = 1; i < ${#sizes[@]}; i++)); do
	a=${sizes[i - 1]} b=${sizes[i]} cells=()
	for run in first nochange; do
		ka=sync.$a.$run kb=sync.$b.$run
		has "$ka.wall_s" "$kb.wall_s" "$ka.cpu_s" "$kb.cpu_s" "$ka.us_per_object" \
			"$kb.us_per_object" "$ka.rss_mib" "$kb.rss_mib" || continue
		cells+=("$([ $run = first ] && echo "first" || echo "no change"): wall $(g "$(v $ka.wall_s)" "$(v $kb.wall_s)"), CPU $(g "$(v $ka.cpu_s)" "$(v $kb.cpu_s)"), µs/object $(g "$(v $ka.us_per_object)" "$(v $kb.us_per_object)"), peak RSS $(g "$(v $ka.rss_mib)" "$(v $kb.rss_mib)")")
	done
	[ ${#cells[@]} -gt 0 ] || continue
	row "full sync, growth" "$(group "$a") → $(group "$b") agents (×$(fmt "$(calc "$b / $a")" 0) fleet)" \
		"$(printf '%s; ' "${cells[@]}" | sed 's/; $//')" "—" ""
done
if [ ${#sizes[@]} -gt 0 ]; then
	big=${sizes[${#sizes[@]} - 1]}
	rss=0
	for run in first nochange; do
		has "sync.$big.$run.rss_mib" && holds "$(v "sync.$big.$run.rss_mib") > $rss" &&
			rss=$(v "sync.$big.$run.rss_mib")
	done
	if has "sync.$big.first.rss_mib" "sync.$big.nochange.rss_mib"; then
		row "full sync, memory" "peak RSS at $(group "$big") agents, the larger of both syncs" "$rss MiB" \
			"< 64 MiB at 100,000 agents" \
			"$(if [ "$big" -ge 100000 ]; then verdict holds "$rss < 64"; else echo "not measured at 100,000"; fi)"
	fi
else
	nodata "full sync" "1,000 / 10,000 / 100,000 agents" "≤ 5× / ≤ 3× floor"
fi

# --- rate limit ------------------------------------------------------------------------------
if has ratelimit.requests ratelimit.wall_s ratelimit.per_minute ratelimit.share ratelimit.n429; then
	lim=$(v ratelimit.limit)
	row "rate limit $lim/min" \
		"first sync of $(group "$(v ratelimit.agents)") agents, the fake enforcing $lim/min: API requests, wall" \
		"$(group "$(v ratelimit.requests)"), $(v ratelimit.wall_s) s ($(fmt "$(calc "$(v ratelimit.wall_s) / 60")") min$(has ratelimit.span_s && echo ", $(v ratelimit.span_s) s from the first request to the last"))" "—" ""
	row "rate limit $lim/min" "requests/min achieved, share of the limit (busiest 60 s)" \
		"$(fmt "$(v ratelimit.per_minute)"), $(fmt "$(calc "100 * $(v ratelimit.share)")")% ($(v ratelimit.busiest_minute))" \
		"close to 100% (≥ 90%)" "$(verdict holds "$(v ratelimit.share) >= 0.9")"
	row "rate limit $lim/min" "429s received" "$(v ratelimit.n429)" "none" \
		"$(verdict holds "$(v ratelimit.n429) == 0")"
else
	nodata "rate limit" "share of the limit used, 429s" "≥ 90%, no 429"
fi

# --- change push -----------------------------------------------------------------------------
push_row() { # KEY LABEL GOAL TEST
	local k=push.$1
	if has "$k.bytes" "$k.requests" "$k.ratio"; then
		row "change push, $(group "$(v push.agents)") agents" \
			"$2: bytes, × of the full upload, requests, jobs" \
			"$(group "$(v "$k.bytes")"), $(fmt "$(calc "100 * $(v "$k.ratio")")" 2)%, $(v "$k.requests"), $(v "$k.jobs")" \
			"$3" "$(if [ -n "$4" ]; then verdict holds "$4"; fi)"
	else
		nodata "change push" "$2" "$3"
	fi
}
push_row full "first sync (full upload, $(group "$(v push.full.changes)") changes)" "—" ""
push_row none "0% of agents changed" "nothing sent" "$(v push.none.bytes) == 0 && $(v push.none.requests) == 0"
push_row 1pct "1% of agents changed" "≤ 2% of the full upload" "$(v push.1pct.ratio) <= 0.02"
push_row 10pct "10% of agents changed" "—" ""

# --- the block -------------------------------------------------------------------------------
block() {
	local mem
	mem=$(v machine.mem_kib)
	echo '<!-- bench:begin -->'
	echo '<!-- Generated by tests/bench/summary.sh at the end of `make bench`: the next run replaces'
	echo '     everything between bench:begin and bench:end. -->'
	echo
	echo "### Summary of one \`make bench\` run"
	echo
	echo "Run $(vq run.date) at commit $(vq run.commit); build \`$(vq run.opt)\`."
	echo "Machine: $(vq machine.cpu), $(vq machine.nproc) CPUs, $([ -n "$mem" ] && fmt "$(calc "$mem / 1048576")" || echo '?') GiB of memory, $(vq machine.kernel), Debian $(vq machine.debian), $(vq machine.cc); $(vq machine.libs)."
	echo
	echo '`make bench` ran these, from the checkout, after building the binaries and installing'
	echo 'what was missing (each script also prints its own tables: the sections below):'
	echo
	echo '```'
	echo 'tests/bench/summary.sh --begin build/bench/results.txt'
	local s
	for s in sync ratelimit push receiver; do
		has "$s.command" || continue
		echo "BUILD=build TSGRAPHD=\$PWD/build/tsgraphd BENCH_OUT=\$PWD/build/bench/results.txt \\"
		echo "  $(v "$s.command")"
	done
	echo 'tests/bench/summary.sh --doc docs/benchmarks.md build/bench/results.txt'
	echo '```'
	echo
	echo '| area | figure | measured | goal | met |'
	echo '| --- | --- | --- | --- | --- |'
	printf '%s\n' "${rows[@]}"
	echo '<!-- bench:end -->'
}
block >"$results.md"
cat "$results.md"

if [ -n "$doc" ]; then
	[ -f "$doc" ] || die "$doc: no such file"
	begins=$(grep -c '^<!-- bench:begin -->$' "$doc" || true)
	ends=$(grep -c '^<!-- bench:end -->$' "$doc" || true)
	tmp=$(mktemp "$doc.XXXXXX")
	trap 'rm -f "$tmp"' EXIT
	if [ "$begins" = 0 ] && [ "$ends" = 0 ]; then
		{ cat "$doc"; echo; cat "$results.md"; } >"$tmp"
	elif [ "$begins" = 1 ] && [ "$ends" = 1 ]; then
		awk -v block="$results.md" '
			/^<!-- bench:begin -->$/ { while ((getline l < block) > 0) print l; skip = 1; next }
			/^<!-- bench:end -->$/ { skip = 0; next }
			!skip' "$doc" >"$tmp"
		grep -q '^<!-- bench:end -->$' "$tmp" || die "$doc: bench:end before bench:begin"
	else
		die "$doc: want one <!-- bench:begin --> and one <!-- bench:end --> line, or none"
	fi
	chmod --reference="$doc" "$tmp"
	mv "$tmp" "$doc"
	trap - EXIT
	echo "summary.sh: the table is in $doc" >&2
fi
