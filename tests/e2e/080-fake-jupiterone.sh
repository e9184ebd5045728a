#!/usr/bin/env bash
# The fake JupiterOne synchronization API itself, driven with curl: usage errors and a
# non-loopback --listen exit 2; a job goes end to end (create, entities gzip'd, relationships,
# deletes, finalize observed in FINALIZE_PENDING then FINISHED) and the graph, the job and the
# statistics agree; bodies over the bound and gzip bodies that inflate past it are 413; a
# --fault given at start answers 429 without rate-limit headers; the outage switch; SIGTERM
# stops it with exit status 0.
. "$(dirname "$0")/lib.sh"
[ -x "$FAKE_J1" ] || fail "missing $FAKE_J1 (run make)"
fail() { echo "FAIL: $*"; [ -f "$WORK/j1.err" ] && sed 's/^/  fake: /' "$WORK/j1.err"; exit 1; }

# Refused before anything listens.
expect_status 2 timeout 5 "$FAKE_J1" --listen 0.0.0.0:0
expect_status 2 timeout 5 "$FAKE_J1" --token a --token-file /dev/null
expect_status 2 timeout 5 "$FAKE_J1" --fault 418:1
expect_status 2 timeout 5 "$FAKE_J1" --fault 429:1@nowhere

printf 'token-from-file\n' >"$WORK/token"
start_fake_j1 --token-file "$WORK/token" --account acme --finalize-ms 3000 \
	--fault 429:1@create_job --verbose
[ "$J1_TOKEN" = token-from-file ] && [ "$J1_ACCOUNT" = acme ] || fail "lib.sh: $J1_TOKEN $J1_ACCOUNT"
port=$(cat "$WORK/j1.port")
grep -qx "listening on 127.0.0.1:$port" "$WORK/j1.out" || fail "stdout lacks the listening line"

JOBS=$J1_URL/persister/synchronization/jobs
# api METHOD URL [curl args...]: an authenticated request; the body in $WORK/body, prints the
# status.
api() {
	local m=$1 u=$2
	shift 2
	curl -sS --max-time 10 -o "$WORK/body" -w '%{http_code}' -X "$m" \
		-H "Authorization: Bearer $J1_TOKEN" -H "JupiterOne-Account: $J1_ACCOUNT" \
		-H 'Content-Type: application/json' "$@" "$u"
}
expect_code() { # WANT METHOD URL [curl args...]
	local want=$1 got
	shift
	got=$(api "$@")
	[ "$got" = "$want" ] || fail "$1 $2 gave $got, want $want: $(cat "$WORK/body")"
}

# Unauthenticated: 401 with a JSON error; the wrong account: 403.
code=$(curl -sS --max-time 5 -o "$WORK/body" -w '%{http_code}' -d '{}' "$JOBS")
[ "$code" = 401 ] && jq -e .error "$WORK/body" >/dev/null || fail "no auth gave $code $(cat "$WORK/body")"
code=$(curl -sS --max-time 5 -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $J1_TOKEN" \
	-H 'JupiterOne-Account: other' -d '{}' "$JOBS")
[ "$code" = 403 ] || fail "wrong account gave $code"

# --fault 429:1@create_job: the first job creation is refused, without rate-limit headers.
code=$(api POST "$JOBS" -D "$WORK/hdrs" -d '{"source":"api","scope":"e2e","syncMode":"CREATE_OR_UPDATE"}')
[ "$code" = 429 ] || fail "first create_job gave $code"
if grep -qi -e '^retry-after' -e '^x-rate-limit' -e '^ratelimit' "$WORK/hdrs"; then
	fail "the 429 carries rate-limit headers: $(cat "$WORK/hdrs")"
fi
expect_code 200 POST "$JOBS" -d '{"source":"api","scope":"e2e","syncMode":"CREATE_OR_UPDATE"}'
id=$(jq -r .job.id "$WORK/body")
[ "$(jq -r .job.status "$WORK/body")" = AWAITING_UPLOADS ] || fail "new job: $(cat "$WORK/body")"

# Entities, gzip'd.
cat >"$WORK/entities.json" <<'EOF'
{"entities":[
 {"_key":"threatstack:account:545d","_type":"threatstack_account","_class":"Account","name":"Org","displayName":"Threat Stack - Org","vendor":"Threat Stack"},
 {"_key":"threatstack:agent:a1","_type":"threatstack_agent","_class":"HostAgent","name":"web","displayName":"web","ipAddresses":["10.0.0.1"],"tag.env":"prod"},
 {"_key":"threatstack:agent:a2","_type":"threatstack_agent","_class":"HostAgent","name":"db","displayName":"db","active":false}]}
EOF
gzip -c "$WORK/entities.json" >"$WORK/entities.json.gz"
expect_code 200 POST "$JOBS/$id/entities" -H 'Content-Encoding: gzip' --data-binary @"$WORK/entities.json.gz"
[ "$(jq .job.numEntitiesUploaded "$WORK/body")" = 3 ] || fail "entities: $(cat "$WORK/body")"
expect_code 200 POST "$JOBS/$id/relationships" -d '{"relationships":[
 {"_key":"threatstack:account:545d|has|threatstack:agent:a1","_type":"threatstack_account_has_agent","_class":"HAS","displayName":"HAS","_fromEntityKey":"threatstack:account:545d","_toEntityKey":"threatstack:agent:a1"},
 {"_key":"threatstack:account:545d|has|threatstack:agent:a2","_type":"threatstack_account_has_agent","_class":"HAS","displayName":"HAS","_fromEntityKey":"threatstack:account:545d","_toEntityKey":"threatstack:agent:a2"},
 {"_key":"threatstack:agent:a1|identified|cve-2019-11477","_type":"threatstack_agent_identified_vulnerability","_class":"IDENTIFIED","displayName":"IDENTIFIED",
  "_mapping":{"relationshipDirection":"FORWARD","sourceEntityKey":"threatstack:agent:a1","targetFilterKeys":[["_type","_key"]],
   "targetEntity":{"_type":"cve","_class":"Vulnerability","_key":"cve-2019-11477","name":"CVE-2019-11477"}}}]}'
# A delete of something that does not exist is no error.
expect_code 200 POST "$JOBS/$id/upload" -d '{"deleteEntities":[{"_key":"threatstack:agent:gone"}]}'

# Finalize: FINALIZE_PENDING for --finalize-ms, then FINISHED with the graph applied.
expect_code 200 POST "$JOBS/$id/finalize" -d '{}'
[ "$(jq -r .job.status "$WORK/body")" = FINALIZE_PENDING ] || fail "finalize: $(cat "$WORK/body")"
[ "$(j1_graph e2e | jq '.entities | length')" = 0 ] || fail "applied before it finished"
job_finished() { api GET "$JOBS/$id" >/dev/null && [ "$(jq -r .job.status "$WORK/body")" = FINISHED ]; }
wait_until 10 "the job to finish" job_finished
jq -e '.job | .numEntitiesCreated == 3 and .numRelationshipsCreated == 3 and .numEntitiesDeleted == 0' \
	"$WORK/body" >/dev/null || fail "finished job: $(cat "$WORK/body")"
graph=$(j1_graph e2e)
[ "$(jq -c '[.entities[]._key]' <<<"$graph")" = '["threatstack:account:545d","threatstack:agent:a1","threatstack:agent:a2"]' ] ||
	fail "graph entities: $graph"
[ "$(jq '.relationships | length' <<<"$graph")" = 3 ] || fail "graph relationships: $graph"
[ "$(jq -c '.entities[1]' <<<"$graph")" = "$(jq -c '.entities[1]' "$WORK/entities.json")" ] ||
	fail "entity not stored as uploaded: $graph"

# A second job deletes agent a2: its relationship goes with it.
expect_code 200 POST "$JOBS" -d '{"source":"api","scope":"e2e","syncMode":"CREATE_OR_UPDATE"}'
id2=$(jq -r .job.id "$WORK/body")
expect_code 200 POST "$JOBS/$id2/upload" -d '{"deleteEntities":[{"_key":"threatstack:agent:a2"}]}'
expect_code 200 POST "$JOBS/$id2/finalize" -d '{}'
id=$id2
wait_until 10 "the second job to finish" job_finished
[ "$(jq .job.numRelationshipsDeleted "$WORK/body")" = 1 ] || fail "cascade: $(cat "$WORK/body")"
[ "$(j1_graph e2e | jq -c '[.relationships[]._key | test("a2")] | any')" = false ] || fail "a2's relationship stayed"

stats=$(j1_stats)
jq -e '.jobs_created == 2 and .jobs_finished == 2 and .upload_requests == 4 and .requests_by_route.finalize == 2
	and .rejected["429"] == 1 and .rejected["401"] == 1 and .rejected["403"] == 1
	and .max_target_entity_bytes > 50' <<<"$stats" >/dev/null || fail "stats: $stats"
[ "$(j1_jobs | jq -r '[.jobs[].status] | join(",")')" = FINISHED,FINISHED ] || fail "jobs: $(j1_jobs)"

# Bodies over the bound (6,000,000 bytes), with and without "Expect: 100-continue", and a
# gzip body that inflates past the bound, are 413.
expect_code 200 POST "$JOBS" -d '{"source":"api","scope":"big"}'
big=$(jq -r .job.id "$WORK/body")
head -c 7000000 /dev/zero | tr '\0' x >"$WORK/big"
expect_code 413 POST "$JOBS/$big/entities" --data-binary @"$WORK/big"
expect_code 413 POST "$JOBS/$big/entities" -H 'Expect:' --data-binary @"$WORK/big"
head -c 50000000 /dev/zero | gzip -1 >"$WORK/bomb.gz" # 50 MB > 8 x 6,000,000
expect_code 413 POST "$JOBS/$big/entities" -H 'Content-Encoding: gzip' --data-binary @"$WORK/bomb.gz"
expect_code 415 POST "$JOBS/$big/entities" -H 'Content-Encoding: br' -d '{"entities":[]}'
api GET "$JOBS/$big" >/dev/null
[ "$(jq -r .job.status "$WORK/body")" = AWAITING_UPLOADS ] || fail "refusals hurt the job: $(cat "$WORK/body")"

# The outage: every API request is 503 until it is switched off.
j1_fault '{"kind":"down","on":true}'
expect_code 503 GET "$JOBS/$big"
j1_fault '{"kind":"down","on":false}'
expect_code 200 GET "$JOBS/$big"

# SIGTERM: a clean exit with status 0.
kill -TERM "$J1_PID"
rc=0
wait_until 5 "the fake to exit after SIGTERM" eval '! kill -0 "$J1_PID" 2>/dev/null'
wait "$J1_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
echo "ok: fake_jupiterone on port $port"
