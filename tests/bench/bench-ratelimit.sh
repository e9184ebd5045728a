#!/usr/bin/env bash
# Benchmark: a first full sync under Threat Stack's real rate limit. The fake Threat Stack
# enforces RATE_LIMIT requests in any sliding 60 s window (--rate-limit: 429 past it, with
# x-rate-limit-remaining and x-rate-limit-reset) and tsgraphd is configured with the same
# rate_limit; the fleet is sized so that the sync needs several minutes of the budget.
# Prints one Markdown table: requests, wall time, requests per minute achieved, the share of
# the limit that is (goal: close to all of it), the busiest 60 s as the fake counted it,
# and the 429s it answered (goal: none). "API span" is the time from the first request to
# the last as the fake saw them: the rate over it is the limiter's pace alone, without the
# sync's start-up and its final apply.
#   BUILD=build tests/bench/bench-ratelimit.sh
# RATELIMIT_AGENTS (default 4000: 645 requests, about 3.4 minutes at 200/min) sizes the
# fleet: agents, 60 CVEs of which 3 affect every agent, RATELIMIT_AGENTS/5 alerts, 10 items a
# page and 100 a servers page (small pages: many requests from a fleet the fake serves
# quickly). RATE_LIMIT (default 200, Threat Stack's documented safe figure) is the limit of
# both sides.
TESTS_DIR=${TESTS_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$TESTS_DIR/e2e/lib.sh"
. "$TESTS_DIR/bench/lib-bench.sh"
agents=${RATELIMIT_AGENTS:-4000}
limit=${RATE_LIMIT:-200}

start_fake --agents "$agents" --cves 60 --wide-cves 3 --alerts $((agents / 5)) --seed 1 \
	--page-size 10 --servers-page-size 100 --rate-limit "$limit"
write_config r '[log]' 'level = warning'
sed -i "s/^rate_limit = .*/rate_limit = $limit/" "$WORK/r.conf"
[ "$(grep -c "^rate_limit = $limit\$" "$WORK/r.conf")" = 1 ] || fail "rate_limit not set in r.conf"

/usr/bin/time -f '%e %U %S %M' -o "$WORK/time" "$TSGRAPHD" -c "$WORK/r.conf" sync >"$WORK/out" 2>&1 ||
	fail "the sync failed: $(tail -n 5 "$WORK/out")"
read -r secs user sys _ <"$WORK/time"
curl -sS -f --max-time 10 "$FAKE_URL/_fake/stats" >"$WORK/stats"
requests=$(jq .api_requests "$WORK/stats")
n429=$(jq .status_429 "$WORK/stats")
busiest=$(jq .max_per_minute "$WORK/stats")
span=$(echo "$(jq .span_ms "$WORK/stats") / 1000" | bc -l)
per_minute=$(echo "$requests * 60 / $secs" | bc -l)
share=$(echo "$per_minute / $limit" | bc -l)

echo "| agents | limit /min | API requests | wall s | requests/min | share of the limit | busiest 60 s | 429s | API span s | requests/min over the span | CPU s |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
printf '| %s | %s | %s | %.1f | %.1f | %.1f%% | %s | %s | %.1f | %.1f | %.2f |\n' "$agents" "$limit" \
	"$requests" "$secs" "$per_minute" "$(echo "100 * $share" | bc -l)" "$busiest" "$n429" "$span" \
	"$(echo "($requests - 1) * 60 / $span" | bc -l)" "$(echo "$user + $sys" | bc -l)"

bench_out ratelimit.command "RATELIMIT_AGENTS=$agents RATE_LIMIT=$limit tests/bench/bench-ratelimit.sh"
bench_out ratelimit.agents "$agents"
bench_out ratelimit.limit "$limit"
bench_out ratelimit.requests "$requests"
bench_out ratelimit.wall_s "$secs"
bench_out ratelimit.cpu_s "$(echo "$user + $sys" | bc -l)"
bench_out ratelimit.per_minute "$(printf '%.2f' "$per_minute")"
bench_out ratelimit.share "$(printf '%.4f' "$share")"
bench_out ratelimit.busiest_minute "$busiest"
bench_out ratelimit.span_s "$(printf '%.2f' "$span")"
bench_out ratelimit.n429 "$n429"
