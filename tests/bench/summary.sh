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

# One awk program (mawk or gawk) reads the results and prints the block: no process per figure.
grep -qvE '^(|#.*|[^=]+=.*)$' "$results" &&
	die "$results: not KEY=VALUE: $(grep -vE '^(|#.*|[^=]+=.*)$' "$results" | head -n 1)"
awk '
function v(k) { return (k in R) ? R[k] : "" } # a string: compare v(k) + 0 with numbers
function vq(k) { return (k in R) ? R[k] : "?" }
function has(k) { return (k in R) && R[k] != "" }
function f(x, d) { return sprintf("%." d "f", x) }
function group(n,    s, out) { # an integer with thousands separators
	s = n ""
	out = ""
	while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
	return s out
}
function verdict(ok) { return ok ? "met" : "**not met**" }
function row(area, fig, meas, goal, met) {
	rows[++nrows] = "| " area " | " fig " | " meas " | " goal " | " met " |"
}
function nodata(area, fig, goal) { row(area, fig, "—", goal, "no data") }
function ratio(a, b) { return (a + 0 > 0) ? "×" f(b / a, 2) : "—" } # a zero time: no ratio
function server_row(key, label,    k) {
	k = "receiver." key
	if (has(k ".rps") && has(k ".p50_ms") && has(k ".p99_ms"))
		row("receiver", (has(k ".name") ? v(k ".name") : label) conns(k) ": requests/s, p50, p99",
		    group(v(k ".rps")) "/s, " v(k ".p50_ms") " ms, " v(k ".p99_ms") " ms", "—", "")
	else
		nodata("receiver", label conns(k), "—")
}
# ", N connections" when the run recorded them
function conns(k) {
	return has(k ".connections") ? ", " v(k ".connections") " connections" : ""
}
# The ratios and the durability of one load (prefix "receiver." or "receiver.saturated.").
function receiver_rows(p,    x, k, c) {
	c = conns(p "tsgraphd")
	if (has(p "tsgraphd.rps") && has(p "webhook.rps")) {
		x = v(p "tsgraphd.rps") / v(p "webhook.rps")
		row("receiver", "tsgraphd / webhook (requests/s)" c, f(x, 2) "×", "≥ 3×", verdict(x >= 3))
	} else
		nodata("receiver", "tsgraphd / webhook (requests/s)" c, "≥ 3×")
	if (has(p "tsgraphd.rps") && has(p "nginx.rps")) {
		x = 100 * v(p "tsgraphd.rps") / v(p "nginx.rps")
		row("receiver", "tsgraphd / nginx (requests/s)" c, f(x, 0) "%", "≥ 30%", verdict(x >= 30))
	} else
		nodata("receiver", "tsgraphd / nginx (requests/s)" c, "≥ 30%")
	k = p "tsgraphd"
	if (has(k ".requests") && has(k ".non2xx") && has(k ".stored"))
		row("receiver", "durability" c ": 2xx answers counted by wrk, alerts of the run in the inbox, non-2xx, socket errors",
		    group(v(k ".requests")) ", " group(v(k ".stored")) ", " v(k ".non2xx") ", " v(k ".socket_errors"),
		    "every 2xx stored, no non-2xx",
		    verdict(v(k ".non2xx") + 0 == 0 && v(k ".stored") + 0 >= v(k ".requests") + 0))
	else
		nodata("receiver", "durability" c ": every 2xx stored, no non-2xx", "every 2xx stored, no non-2xx")
}
function push_row(key, label, goal, test,    k) {
	k = "push." key
	if (has(k ".bytes") && has(k ".requests") && has(k ".ratio"))
		row("change push, " group(v("push.agents")) " agents",
		    label ": bytes, × of the full upload, requests, jobs",
		    group(v(k ".bytes")) ", " f(100 * v(k ".ratio"), 2) "%, " v(k ".requests") ", " v(k ".jobs"),
		    goal, test == "" ? "" : verdict(test == 1))
	else
		nodata("change push", label, goal)
}
/^(#|$)/ { next }
{ i = index($0, "="); R[substr($0, 1, i - 1)] = substr($0, i + 1) }
END {
	# --- receiver
	server_row("tsgraphd", "tsgraphd (unique alerts, stored)")
	server_row("tsgraphd_dups", "tsgraphd (one alert again and again: duplicates)")
	server_row("webhook", "webhook (202, runs /bin/true)")
	server_row("nginx", "nginx (fixed 202)")
	receiver_rows("receiver.")
	if (has("receiver.saturated.tsgraphd.rps")) {
		server_row("saturated.tsgraphd", "tsgraphd (unique alerts, stored)")
		server_row("saturated.webhook", "webhook (202, runs /bin/true)")
		server_row("saturated.nginx", "nginx (fixed 202)")
		receiver_rows("receiver.saturated.")
	}
	if (has("latency.p50_ms") && has("latency.p99_ms"))
		row("webhook → change line",
		    "2xx to the change line in the file sink, " v("latency.alerts") " alerts one at a time: p50, p99, max",
		    v("latency.p50_ms") " ms, " v("latency.p99_ms") " ms, " v("latency.max_ms") " ms", "p99 < 50 ms",
		    verdict(v("latency.p99_ms") + 0 < 50))
	else
		nodata("webhook → change line", "p50, p99", "p99 < 50 ms")
	if (has("latency_large.p50_ms") && has("latency_large.p99_ms"))
		row("webhook → change line",
		    "the same with " group(v("latency_large.agents")) " agents (" group(v("latency_large.objects")) " objects) stored: p50, p99, max",
		    v("latency_large.p50_ms") " ms, " v("latency_large.p99_ms") " ms, " v("latency_large.max_ms") " ms", "p99 < 50 ms",
		    verdict(v("latency_large.p99_ms") + 0 < 50))

	# --- full sync
	nsizes = split(v("sync.sizes"), sizes, " ")
	for (i = 1; i <= nsizes; i++) {
		n = sizes[i]
		for (r = 1; r <= 2; r++) {
			run = r == 1 ? "first" : "nochange"
			label = r == 1 ? "first sync" : "no-change sync"
			goal = r == 1 ? 5 : 3
			k = "sync." n "." run
			if (has(k ".wall_s") && has(k ".cpu_s") && has(k ".rss_mib") && has(k ".requests") &&
			    has(k ".us_per_object") && has(k ".x_floor"))
				row("full sync, " group(n) " agents",
				    label ": wall, CPU, peak RSS, API requests, CPU µs/object (floor), × floor",
				    v(k ".wall_s") " s, " v(k ".cpu_s") " s, " v(k ".rss_mib") " MiB, " group(v(k ".requests")) ", " \
				    f(v(k ".us_per_object"), 1) " (" f(v(k ".floor_us_per_object"), 2) "), " f(v(k ".x_floor"), 1) "×",
				    "≤ " goal "× floor", verdict(v(k ".x_floor") + 0 <= goal))
			else
				nodata("full sync, " group(n) " agents", label, "≤ " goal "× floor")
		}
		k = "sync." n ".store_floor"
		if (has(k ".objects") && has(k ".cpu_s") && has(k ".x_floor") && has(k ".rest_x_floor"))
			row("full sync, " group(n) " agents",
			    "store floor (SQLite alone storing the first-sync graph of " group(v(k ".objects")) " objects): CPU, × parse floor; the first sync without it",
			    v(k ".cpu_s") " s, " f(v(k ".x_floor"), 1) "×; " f(v(k ".rest_x_floor"), 1) "×", "—", "")
	}
	# growth from each size to the next (per 10× when the sizes are 10× apart)
	for (i = 2; i <= nsizes; i++) {
		a = sizes[i - 1]; b = sizes[i]; cells = ""
		for (r = 1; r <= 2; r++) {
			run = r == 1 ? "first" : "nochange"
			ka = "sync." a "." run; kb = "sync." b "." run
			if (!(has(ka ".wall_s") && has(kb ".wall_s") && has(ka ".cpu_s") && has(kb ".cpu_s") &&
			      has(ka ".us_per_object") && has(kb ".us_per_object") && has(ka ".rss_mib") && has(kb ".rss_mib")))
				continue
			cells = cells (cells == "" ? "" : "; ") (r == 1 ? "first" : "no change") \
				": wall " ratio(v(ka ".wall_s"), v(kb ".wall_s")) ", CPU " ratio(v(ka ".cpu_s"), v(kb ".cpu_s")) \
				", µs/object " ratio(v(ka ".us_per_object"), v(kb ".us_per_object")) \
				", peak RSS " ratio(v(ka ".rss_mib"), v(kb ".rss_mib"))
		}
		if (cells != "")
			row("full sync, growth", group(a) " → " group(b) " agents (×" f(b / a, 0) " fleet)", cells, "—", "")
	}
	if (nsizes > 0) {
		big = sizes[nsizes]
		if (has("sync." big ".first.rss_mib") && has("sync." big ".nochange.rss_mib")) {
			rss = v("sync." big ".first.rss_mib")
			if (v("sync." big ".nochange.rss_mib") + 0 > rss + 0)
				rss = v("sync." big ".nochange.rss_mib")
			row("full sync, memory", "peak RSS at " group(big) " agents, the larger of both syncs", rss " MiB",
			    "< 64 MiB at 100,000 agents", big + 0 >= 100000 ? verdict(rss + 0 < 64) : "not measured at 100,000")
		}
	} else
		nodata("full sync", "1,000 / 10,000 / 100,000 agents", "≤ 5× / ≤ 3× floor")

	# --- rate limit
	if (has("ratelimit.requests") && has("ratelimit.wall_s") && has("ratelimit.per_minute") &&
	    has("ratelimit.share") && has("ratelimit.n429")) {
		lim = v("ratelimit.limit")
		row("rate limit " lim "/min",
		    "first sync of " group(v("ratelimit.agents")) " agents, the fake enforcing " lim "/min: API requests, wall",
		    group(v("ratelimit.requests")) ", " v("ratelimit.wall_s") " s (" f(v("ratelimit.wall_s") / 60, 1) " min" \
		    (has("ratelimit.span_s") ? ", " v("ratelimit.span_s") " s from the first request to the last" : "") ")",
		    "—", "")
		row("rate limit " lim "/min", "requests/min achieved, share of the limit (busiest 60 s)",
		    f(v("ratelimit.per_minute"), 1) ", " f(100 * v("ratelimit.share"), 1) "% (" v("ratelimit.busiest_minute") ")",
		    "close to 100% (≥ 90%)", verdict(v("ratelimit.share") + 0 >= 0.9))
		row("rate limit " lim "/min", "429s received", v("ratelimit.n429"), "none", verdict(v("ratelimit.n429") + 0 == 0))
	} else
		nodata("rate limit", "share of the limit used, 429s", "≥ 90%, no 429")

	# --- change push
	push_row("full", "first sync (full upload, " group(v("push.full.changes")) " changes)", "—", "")
	push_row("none", "0% of agents changed", "nothing sent", v("push.none.bytes") + 0 == 0 && v("push.none.requests") + 0 == 0)
	push_row("1pct", "1% of agents changed", "≤ 2% of the full upload", v("push.1pct.ratio") + 0 <= 0.02)
	push_row("10pct", "10% of agents changed", "—", "")

	# --- the block
	mem = v("machine.mem_kib")
	print "<!-- bench:begin -->"
	print "<!-- Generated by tests/bench/summary.sh at the end of `make bench`: the next run replaces"
	print "     everything between bench:begin and bench:end. -->"
	print ""
	print "### Summary of one `make bench` run"
	print ""
	print "Run " vq("run.date") " at commit " vq("run.commit") "; build `" vq("run.opt") "`."
	print "Machine: " vq("machine.cpu") ", " vq("machine.nproc") " CPUs, " (mem != "" ? f(mem / 1048576, 1) : "?") \
		" GiB of memory, " vq("machine.kernel") ", Debian " vq("machine.debian") ", " vq("machine.cc") "; " \
		vq("machine.libs") "."
	print ""
	print "`make bench` ran these, from the checkout, after building the binaries and installing"
	print "what was missing (each script also prints its own tables: the sections below):"
	print ""
	print "```"
	print "tests/bench/summary.sh --begin build/bench/results.txt"
	split("receiver sync push ratelimit", scripts, " ")
	for (i = 1; i <= 4; i++)
		if (has(scripts[i] ".command")) {
			print "BUILD=build TSGRAPHD=$PWD/build/tsgraphd BENCH_OUT=$PWD/build/bench/results.txt \\"
			print "  " v(scripts[i] ".command")
		}
	print "tests/bench/summary.sh --doc docs/benchmarks.md build/bench/results.txt"
	print "```"
	print ""
	print "| area | figure | measured | goal | met |"
	print "| --- | --- | --- | --- | --- |"
	for (i = 1; i <= nrows; i++)
		print rows[i]
	print "<!-- bench:end -->"
}' "$results" >"$results.md"
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
