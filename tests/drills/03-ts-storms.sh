#!/usr/bin/env bash
# Drill 3 — Threat Stack answering 429 and 500 storms.
#
# The fake Threat Stack logs every request (--verbose), each line stamped here with the time
# it was read (microseconds). Two storms, each started in the middle of a listing: the
# listing's first page is held back 1.5 s (a slow fault), and while it is held the storm is
# queued, so the first page is answered 200 and the pages after it get the storm.
#   429  DRILL_TS_STORMS_REQUESTS (10) answers 429 with x-rate-limit-reset: 1000 (ms) on
#        /v2/agents, after 2 agents were removed from the fleet
#   500  as many 500s on /v2/vulnerabilities (the CVE listing and its servers listings),
#        after 2 CVEs were fixed on agents
# During a storm the syncs must: back off (after each 429 no API request at all for at
# least 90% of the reset it announced: the whole client waits, not only the request; no
# more than 2 answers of 429 in any second; 500s retried with a growing delay), fail with
# exit 1 and record a partial run (status shows it), never apply the incomplete listing as
# deletes (the removed agents and the fixed CVEs are still in the store while it lasts, no
# delete of their types written), and once the storm is spent the next sync converges: the
# store is what a fresh sync builds, the change log is complete and replays to it.
# Knobs: DRILL_TS_STORMS_REQUESTS (10), DRILL_SEED.
. "$(dirname "$0")/lib.sh"
N=${DRILL_TS_STORMS_REQUESTS:-10}
RESET_MS=1000

# The fake, its request lines stamped with the time they were read.
stamp() { while IFS= read -r l; do printf '%s %s\n' "$EPOCHREALTIME" "$l"; done; }
"$FAKE" --listen 127.0.0.1:0 --port-file "$WORK/fake.port" --verbose --agents 60 --cves 15 \
	--alerts 20 --seed "$DRILL_SEED" --page-size 10 >"$WORK/fake.out" 2> >(stamp >"$WORK/req.log") &
FAKE_PID=$!
on_exit "kill $FAKE_PID 2>/dev/null; wait $FAKE_PID 2>/dev/null"
wait_file 10 "$WORK/fake.port"
FAKE_URL=http://127.0.0.1:$(cat "$WORK/fake.port")
write_config a
db=$WORK/a.db
log=$WORK/a.ndjson
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
q() { sqlite3 "$db" "$1"; }

# storm NAME KIND PATH: a sync during which the storm (KIND) hits PATH after its first page;
# then syncs until the storm is spent. Sets STORM_FROM / STORM_TO (request log lines) and
# STORM_SYNCS (the failing syncs).
storm() {
	local name=$1 kind=$2 path=$3 lines0 spec
	lines0=$(count_lines "$WORK/req.log")
	fault "{\"kind\":\"slow\",\"count\":1,\"ms\":1500,\"path\":\"$path\"}"
	"$TSGRAPHD" -c "$WORK/a.conf" sync >"$WORK/storm.out" 2>&1 &
	local pid=$!
	held() { tail -n +"$((lines0 + 1))" "$WORK/req.log" | grep -q "GET $path.* (slow)"; }
	wait_until 30 "the first page of $path held back" held
	if [ "$kind" = 429 ]; then
		spec="{\"kind\":\"429\",\"count\":$N,\"ms\":$RESET_MS,\"path\":\"$path\"}"
	else
		spec="{\"kind\":\"500\",\"count\":$N,\"path\":\"$path\"}"
	fi
	fault "$spec"
	local status=0
	wait "$pid" || status=$?
	[ "$status" = 1 ] || fail "$name: the sync in the storm exited $status: $(cat "$WORK/storm.out")"
	STORM_SYNCS=1
	STORM_FROM=$lines0
	storm_checks "$name"
	# the storm may outlast one sync: the next ones fail too until it is spent
	while [ "$(storm_left "$kind")" -lt "$N" ]; do
		status=0
		"$TSGRAPHD" -c "$WORK/a.conf" sync >"$WORK/storm.next" 2>&1 || status=$?
		[ "$status" = 0 ] && break
		[ "$status" = 1 ] || fail "$name: a sync in the storm exited $status: $(cat "$WORK/storm.next")"
		storm_checks "$name"
		STORM_SYNCS=$((STORM_SYNCS + 1))
		[ "$STORM_SYNCS" -le 5 ] || fail "$name: still failing after 5 syncs"
	done
	STORM_TO=$(count_lines "$WORK/req.log")
}
# storm_left KIND: how many answers of KIND the fake gave since the storm began.
storm_left() { tail -n +"$((STORM_FROM + 1))" "$WORK/req.log" | grep -c -- "-> $1\$" || true; }

# The request lines of the storm: "TIME STATUS" per API request.
storm_requests() {
	sed -n "$((STORM_FROM + 1)),${STORM_TO}p" "$WORK/req.log" |
		awk '$3 == "GET" { print $1, $(NF) == "(slow)" ? $(NF - 1) : $NF }'
}

echo "storm 429 on /v2/agents"
truth_fetch
removed_agents=()
for _ in 1 2; do
	id=$(truth_pick '.agents[].id')
	fleet "{\"op\":\"agent_remove\",\"id\":\"$id\"}" >/dev/null
	removed_agents+=("$id")
	truth_fetch
done
mutate_fleet 4
lines_before=$(count_lines "$log")
# storm_checks NAME: while the storm lasts, nothing of the incomplete listing is deleted.
storm_checks() {
	for id in "${removed_agents[@]}"; do
		[ "$(q "SELECT count(*) FROM object WHERE key = 'threatstack:agent:$id'")" = 1 ] ||
			fail "$1: agent $id was deleted on an incomplete listing"
	done
	[ "$(lines_since "$log" "$lines_before" | jq -s '[.[] | select(.op == "delete" and .type == "threatstack_agent")] | length')" = 0 ] ||
		fail "$1: an agent delete went out on an incomplete listing"
}
storm 429 429 /v2/agents
grep -q "HTTP 429" "$WORK/storm.out" || fail "429: the failed sync does not say why: $(cat "$WORK/storm.out")"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output " partial "
storm_requests >"$WORK/storm429"
n429=$(awk '$2 == 429' "$WORK/storm429" | wc -l)
[ "$n429" = "$N" ] || fail "429: the fake answered $n429 429s, want $N"
# after each 429, the next request waits for the reset
min_gap=$(awk -v r="$RESET_MS" 'prev429 { g = ($1 - t) * 1000; if (min == "" || g < min) min = g }
	{ prev429 = ($2 == 429); t = $1 } END { printf "%d", min }' "$WORK/storm429")
[ "$min_gap" -ge $((RESET_MS * 9 / 10)) ] ||
	fail "429: a request came ${min_gap} ms after a 429 that said wait ${RESET_MS} ms"
per_s=$(awk '$2 == 429 { c[int($1)]++ } END { for (k in c) if (c[k] > m) m = c[k]; print m + 0 }' "$WORK/storm429")
[ "$per_s" -le 2 ] || fail "429: $per_s answers of 429 in one second"
figure 429_answered "$n429"
figure 429_failed_syncs "$STORM_SYNCS"
figure 429_min_gap_ms "$min_gap"
figure 429_max_per_s "$per_s"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
for id in "${removed_agents[@]}"; do
	[ "$(q "SELECT count(*) FROM object WHERE key = 'threatstack:agent:$id'")" = 0 ] ||
		fail "429: the removed agent $id is still stored after the storm"
done
converged a "after the 429 storm"
echo "storm 429: $n429 answered, $STORM_SYNCS syncs failed, min gap ${min_gap} ms after a 429, converged"

echo "storm 500 on /v2/vulnerabilities"
truth_fetch
fixed=()
for _ in 1 2; do
	pair=$(truth_pick '.cves[] | select((.agents | length) > 1) | .cveNumber as $c | .agents[0] | "\(.agentId) \($c)"')
	fleet "{\"op\":\"cve_remove\",\"agent\":\"${pair% *}\",\"cve\":\"${pair#* }\"}" >/dev/null
	fixed+=("$pair")
	truth_fetch
done
removed_agents=()
lines_before=$(count_lines "$log")
vuln_rels() { q "SELECT count(*) FROM object WHERE type = 'threatstack_agent_identified_vulnerability'"; }
rels_before=$(vuln_rels)
storm_checks() {
	[ "$(vuln_rels)" -ge "$rels_before" ] || fail "$1: a vulnerability was deleted on an incomplete listing"
	[ "$(lines_since "$log" "$lines_before" | jq -s '[.[] | select(.op == "delete" and .type == "threatstack_agent_identified_vulnerability")] | length')" = 0 ] ||
		fail "$1: a vulnerability delete went out on an incomplete listing"
}
storm 500 500 /v2/vulnerabilities
grep -q "HTTP 500" "$WORK/storm.out" || fail "500: the failed sync does not say why: $(cat "$WORK/storm.out")"
storm_requests >"$WORK/storm500"
n500=$(awk '$2 == 500' "$WORK/storm500" | wc -l)
[ "$n500" = "$N" ] || fail "500: the fake answered $n500 500s, want $N"
# retries of one request: the gaps between consecutive 500s, each at least the backoff's
# lowest (250 ms)
min_gap=$(awk 'p500 && $2 == 500 { g = ($1 - t) * 1000; if (min == "" || g < min) min = g }
	{ p500 = ($2 == 500); t = $1 } END { printf "%d", min }' "$WORK/storm500")
[ "$min_gap" -ge 200 ] || fail "500: retried ${min_gap} ms after a 500"
per_s=$(awk '$2 == 500 { c[int($1)]++ } END { for (k in c) if (c[k] > m) m = c[k]; print m + 0 }' "$WORK/storm500")
[ "$per_s" -le 3 ] || fail "500: $per_s answers of 500 in one second"
figure 500_answered "$n500"
figure 500_failed_syncs "$STORM_SYNCS"
figure 500_min_gap_ms "$min_gap"
figure 500_max_per_s "$per_s"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
[ "$(vuln_rels)" -lt "$rels_before" ] || fail "500: the fixed CVEs are still stored after the storm"
converged a "after the 500 storm"
figure partial_deletes 0
figure lost 0
drill_pass
