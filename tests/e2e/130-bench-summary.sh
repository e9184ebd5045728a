#!/usr/bin/env bash
# tests/bench/summary.sh (the one table of `make bench`) on a sample results file, no
# benchmark run: every goal judged from its figures (met and not met), a missing script's
# figures shown as "no data", the block put between the markers of a document and replaced
# on the next run with the text around it untouched, a document without markers appended to,
# and a malformed results line or a document with one marker refused.
. "$(dirname "$0")/lib.sh"
SUMMARY=${SUMMARY:-$PWD/tests/bench/summary.sh}

cat >"$WORK/results" <<'EOF'
run.date=2026-12-01 12:00 UTC
run.commit=abc1234 (main)
run.opt=-O2 -g
machine.cpu=AMD EPYC 7B13
machine.nproc=2
machine.mem_kib=25165824
machine.kernel=Linux 6.1.0-28-amd64
machine.debian=12.8
machine.cc=cc (Debian 12.2.0-14) 12.2.0
machine.libs=sqlite3 3.40.1
sync.command=tests/bench/bench-sync.sh 1000 10000
sync.sizes=1000 10000
sync.1000.first.requests=41
sync.1000.first.objects=4364
sync.1000.first.wall_s=0.61
sync.1000.first.cpu_s=0.40
sync.1000.first.us_per_object=91.66
sync.1000.first.floor_us_per_object=2.59
sync.1000.first.x_floor=35.39
sync.1000.first.rss_mib=20.4
sync.1000.store_floor.cpu_s=0.042
sync.1000.store_floor.x_floor=2.30
sync.1000.store_floor.rest_x_floor=15.60
sync.1000.nochange.requests=41
sync.1000.nochange.objects=4364
sync.1000.nochange.wall_s=0.20
sync.1000.nochange.cpu_s=0.10
sync.1000.nochange.us_per_object=22.91
sync.1000.nochange.floor_us_per_object=3.42
sync.1000.nochange.x_floor=2.70
sync.1000.nochange.rss_mib=14.5
sync.10000.first.requests=206
sync.10000.first.objects=42615
sync.10000.first.wall_s=4.02
sync.10000.first.cpu_s=2.89
sync.10000.first.us_per_object=67.82
sync.10000.first.floor_us_per_object=2.49
sync.10000.first.x_floor=4.90
sync.10000.first.rss_mib=21.5
sync.10000.store_floor.objects=64170
sync.10000.store_floor.cpu_s=0.346
sync.10000.store_floor.x_floor=3.12
sync.10000.store_floor.rest_x_floor=15.14
sync.10000.nochange.requests=206
sync.10000.nochange.objects=42615
sync.10000.nochange.wall_s=1.00
sync.10000.nochange.cpu_s=0.52
sync.10000.nochange.us_per_object=12.20
sync.10000.nochange.floor_us_per_object=2.56
sync.10000.nochange.x_floor=4.77
sync.10000.nochange.rss_mib=20.3
ratelimit.command=RATELIMIT_AGENTS=4000 RATE_LIMIT=200 tests/bench/bench-ratelimit.sh
ratelimit.agents=4000
ratelimit.limit=200
ratelimit.requests=645
ratelimit.wall_s=205.3
ratelimit.cpu_s=1.2
ratelimit.per_minute=188.50
ratelimit.share=0.9425
ratelimit.busiest_minute=197
ratelimit.span_s=202.81
ratelimit.n429=0
push.command=tests/bench/bench-push.sh 10000
push.agents=10000
push.full.changed=10000
push.full.changes=64170
push.full.requests=15
push.full.jobs=2
push.full.bytes=39817665
push.full.ratio=1.000000
push.none.changes=0
push.none.requests=0
push.none.jobs=0
push.none.bytes=0
push.none.ratio=0
push.1pct.changes=100
push.1pct.requests=4
push.1pct.jobs=1
push.1pct.bytes=84781
push.1pct.ratio=0.002129
push.10pct.changes=1000
push.10pct.requests=4
push.10pct.jobs=1
push.10pct.bytes=850514
push.10pct.ratio=0.021360
EOF

# --- no receiver figures: "no data"; every other goal judged ---------------------------------
expect_status 0 "$SUMMARY" "$WORK/results"
expect_output '<!-- bench:begin -->'
expect_output 'Run 2026-12-01 12:00 UTC at commit abc1234 (main)'
expect_output 'Machine: AMD EPYC 7B13, 2 CPUs, 24.0 GiB of memory, Linux 6.1.0-28-amd64, Debian 12.8'
expect_output 'BUILD=build TSGRAPHD=$PWD/build/tsgraphd BENCH_OUT=$PWD/build/bench/results.txt \
  tests/bench/bench-sync.sh 1000 10000'
expect_output '  RATELIMIT_AGENTS=4000 RATE_LIMIT=200 tests/bench/bench-ratelimit.sh'
expect_output '| receiver | tsgraphd / webhook (requests/s) | — | ≥ 3× | no data |'
expect_output '| webhook → change line | p50, p99 | — | p99 < 50 ms | no data |'
expect_output '| full sync, 1,000 agents | first sync: wall, CPU, peak RSS, API requests, CPU µs/object (floor), × floor | 0.61 s, 0.40 s, 20.4 MiB, 41, 91.7 (2.59), 35.4× | ≤ 5× floor | **not met** |'
expect_output '| full sync, 1,000 agents | no-change sync: wall, CPU, peak RSS, API requests, CPU µs/object (floor), × floor | 0.20 s, 0.10 s, 14.5 MiB, 41, 22.9 (3.42), 2.7× | ≤ 3× floor | met |'
expect_output '| full sync, 10,000 agents | first sync: wall, CPU, peak RSS, API requests, CPU µs/object (floor), × floor | 4.02 s, 2.89 s, 21.5 MiB, 206, 67.8 (2.49), 4.9× | ≤ 5× floor | met |'
expect_output '| full sync, 10,000 agents | store floor (SQLite alone storing the first-sync graph of 64,170 objects): CPU, × parse floor; the first sync without it | 0.346 s, 3.1×; 15.1× | — |  |'
expect_no_output '| full sync, 1,000 agents | store floor' # its object count is missing
expect_output '| full sync, growth | 1,000 → 10,000 agents (×10 fleet) | first: wall ×6.59, CPU ×7.22, µs/object ×0.74, peak RSS ×1.05; no change: wall ×5.00, CPU ×5.20, µs/object ×0.53, peak RSS ×1.40 |'
expect_output '| full sync, memory | peak RSS at 10,000 agents, the larger of both syncs | 21.5 MiB | < 64 MiB at 100,000 agents | not measured at 100,000 |'
expect_output '| rate limit 200/min | first sync of 4,000 agents, the fake enforcing 200/min: API requests, wall | 645, 205.3 s (3.4 min, 202.81 s from the first request to the last) |'
expect_output '| rate limit 200/min | requests/min achieved, share of the limit (busiest 60 s) | 188.5, 94.2% (197) | close to 100% (≥ 90%) | met |'
expect_output '| rate limit 200/min | 429s received | 0 | none | met |'
expect_output '| change push, 10,000 agents | first sync (full upload, 64,170 changes): bytes, × of the full upload, requests, jobs | 39,817,665, 100.00%, 15, 2 |'
expect_output '| change push, 10,000 agents | 0% of agents changed: bytes, × of the full upload, requests, jobs | 0, 0.00%, 0, 0 | nothing sent | met |'
expect_output '| change push, 10,000 agents | 1% of agents changed: bytes, × of the full upload, requests, jobs | 84,781, 0.21%, 4, 1 | ≤ 2% of the full upload | met |'
expect_output '<!-- bench:end -->'

# --- the receiver's figures added (a later line wins): ratios and latency judged --------------
cat >>"$WORK/results" <<'EOF'
receiver.command=WRK_ARGS="-t2 -c16 -d10s" LATENCY_ALERTS=100 tests/bench/bench-receiver.sh
receiver.tsgraphd.name=tsgraphd (unique alerts, stored)
receiver.tsgraphd.requests=60057
receiver.tsgraphd.rps=5989
receiver.tsgraphd.p50_ms=2.08
receiver.tsgraphd.p99_ms=14.74
receiver.tsgraphd.non2xx=0
receiver.tsgraphd.socket_errors=0
receiver.tsgraphd.stored=60073
receiver.webhook.name=webhook 2.8.0 (202, runs /bin/true)
receiver.webhook.rps=1800
receiver.webhook.p50_ms=5.97
receiver.webhook.p99_ms=60.21
receiver.nginx.name=nginx 1.22.1 (fixed 202)
receiver.nginx.rps=29264
receiver.nginx.p50_ms=0.44
receiver.nginx.p99_ms=4.60
latency.alerts=100
latency.p50_ms=18.23
latency.p99_ms=53.28
latency.max_ms=60.00
ratelimit.n429=3
EOF
expect_status 0 "$SUMMARY" "$WORK/results"
expect_output '| receiver | tsgraphd (unique alerts, stored): requests/s, p50, p99 | 5,989/s, 2.08 ms, 14.74 ms | — |  |'
expect_output '| receiver | nginx 1.22.1 (fixed 202): requests/s, p50, p99 | 29,264/s, 0.44 ms, 4.60 ms |'
expect_output '| receiver | tsgraphd (one alert again and again: duplicates) | — | — | no data |'
expect_output '| receiver | tsgraphd / webhook (requests/s) | 3.33× | ≥ 3× | met |'
expect_output '| receiver | tsgraphd / nginx (requests/s) | 20% | ≥ 30% | **not met** |'
expect_output '| 60,057, 60,073, 0, 0 | every 2xx stored, no non-2xx | met |'
expect_output '| webhook → change line | 2xx to the change line in the file sink, 100 alerts one at a time: p50, p99, max | 18.23 ms, 53.28 ms, 60.00 ms | p99 < 50 ms | **not met** |'
expect_output '| rate limit 200/min | 429s received | 3 | none | **not met** |'
expect_output 'WRK_ARGS="-t2 -c16 -d10s" LATENCY_ALERTS=100 tests/bench/bench-receiver.sh'

# --- the same load with more connections (WRK_SATURATE): its own rows, judged alike ----------
expect_no_output '64 connections' # no such load in the results yet
cat >>"$WORK/results" <<'EOF'
receiver.tsgraphd.connections=16
receiver.saturated.tsgraphd.name=tsgraphd (unique alerts, stored)
receiver.saturated.tsgraphd.connections=64
receiver.saturated.tsgraphd.requests=180000
receiver.saturated.tsgraphd.rps=18000
receiver.saturated.tsgraphd.p50_ms=3.10
receiver.saturated.tsgraphd.p99_ms=11.00
receiver.saturated.tsgraphd.non2xx=0
receiver.saturated.tsgraphd.socket_errors=0
receiver.saturated.tsgraphd.stored=180030
receiver.saturated.webhook.name=webhook 2.8.0 (202, runs /bin/true)
receiver.saturated.webhook.connections=64
receiver.saturated.webhook.rps=2000
receiver.saturated.webhook.p50_ms=30.00
receiver.saturated.webhook.p99_ms=90.00
receiver.saturated.nginx.name=nginx 1.22.1 (fixed 202)
receiver.saturated.nginx.connections=64
receiver.saturated.nginx.rps=55000
receiver.saturated.nginx.p50_ms=0.70
receiver.saturated.nginx.p99_ms=6.20
EOF
expect_status 0 "$SUMMARY" "$WORK/results"
expect_output '| receiver | tsgraphd (unique alerts, stored), 16 connections: requests/s, p50, p99 | 5,989/s, 2.08 ms, 14.74 ms | — |  |'
expect_output '| receiver | tsgraphd / nginx (requests/s), 16 connections | 20% | ≥ 30% | **not met** |'
expect_output '| receiver | durability, 16 connections: 2xx answers counted by wrk'
expect_output '| receiver | tsgraphd (unique alerts, stored), 64 connections: requests/s, p50, p99 | 18,000/s, 3.10 ms, 11.00 ms | — |  |'
expect_output '| receiver | nginx 1.22.1 (fixed 202), 64 connections: requests/s, p50, p99 | 55,000/s, 0.70 ms, 6.20 ms |'
expect_output '| receiver | tsgraphd / webhook (requests/s), 64 connections | 9.00× | ≥ 3× | met |'
expect_output '| receiver | tsgraphd / nginx (requests/s), 64 connections | 33% | ≥ 30% | met |'
expect_output '| receiver | durability, 64 connections: 2xx answers counted by wrk, alerts of the run in the inbox, non-2xx, socket errors | 180,000, 180,030, 0, 0 | every 2xx stored, no non-2xx | met |'
sed -i 's/^receiver.saturated.tsgraphd.stored=180030$/receiver.saturated.tsgraphd.stored=179999/' "$WORK/results"
expect_status 0 "$SUMMARY" "$WORK/results"
expect_output '| 180,000, 179,999, 0, 0 | every 2xx stored, no non-2xx | **not met** |'
sed -i 's/^receiver.saturated.tsgraphd.stored=179999$/receiver.saturated.tsgraphd.stored=180030/' "$WORK/results"

# --- into a document: between the markers, the rest untouched, replaced on the next run ------
printf '# Benchmarks\n\nIntro.\n\n<!-- bench:begin -->\nold table\n<!-- bench:end -->\n\n## Analysis\n\nKept.\n' >"$WORK/doc.md"
expect_status 0 "$SUMMARY" --doc "$WORK/doc.md" "$WORK/results"
[ "$(head -n 4 "$WORK/doc.md")" = $'# Benchmarks\n\nIntro.' ] || fail "the text before the block changed"
[ "$(tail -n 4 "$WORK/doc.md")" = $'\n## Analysis\n\nKept.' ] || fail "the text after the block changed"
grep -q 'old table' "$WORK/doc.md" && fail "the previous block is still there"
[ "$(grep -c '^<!-- bench:begin -->$' "$WORK/doc.md")" = 1 ] || fail "not one begin marker"
grep -q '| rate limit 200/min | 429s received | 3 | none | \*\*not met\*\* |' "$WORK/doc.md" ||
	fail "the table is not in the document"
cp "$WORK/doc.md" "$WORK/doc1.md"
sed -i 's/^ratelimit.n429=3$/ratelimit.n429=0/' "$WORK/results"
expect_status 0 "$SUMMARY" --doc "$WORK/doc.md" "$WORK/results"
[ "$(diff "$WORK/doc1.md" "$WORK/doc.md" | grep -c '^[<>]')" = 2 ] || fail "the second run changed more than the 429 row: $(diff "$WORK/doc1.md" "$WORK/doc.md")"
grep -q '| rate limit 200/min | 429s received | 0 | none | met |' "$WORK/doc.md" || fail "the row was not replaced"

# --- a document without markers gets the block appended; bad input refused ------------------
printf '# Other\n' >"$WORK/plain.md"
expect_status 0 "$SUMMARY" --doc "$WORK/plain.md" "$WORK/results"
[ "$(head -n 1 "$WORK/plain.md")" = '# Other' ] && [ "$(tail -n 1 "$WORK/plain.md")" = '<!-- bench:end -->' ] ||
	fail "the block was not appended"
printf 'x\n<!-- bench:begin -->\n' >"$WORK/half.md"
expect_status 2 "$SUMMARY" --doc "$WORK/half.md" "$WORK/results"
expect_output 'want one <!-- bench:begin --> and one <!-- bench:end --> line'
[ "$(cat "$WORK/half.md")" = $'x\n<!-- bench:begin -->' ] || fail "a refused document was changed"
echo 'not a key value line' >>"$WORK/results"
expect_status 2 "$SUMMARY" "$WORK/results"
expect_output 'not KEY=VALUE'

# --- --begin records the machine, the date and the commit ----------------------------------
expect_status 0 "$SUMMARY" --begin "$WORK/begin"
for k in run.date run.commit machine.cpu machine.nproc machine.mem_kib machine.kernel machine.cc; do
	grep -q "^$k=." "$WORK/begin" || fail "--begin did not record $k: $(cat "$WORK/begin")"
done
echo ok
