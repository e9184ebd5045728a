#!/usr/bin/env bash
# tsgraphd export (issue 12, item 5): after a sync against the fake, the json export holds the
# objects status counts, type by type; ndjson lines are the file sink's lines (same members),
# all "create" at the outbox's seq, and replay to the stored graph, also after following the
# change log past that seq; dot parses with Graphviz when it is installed. Export reads
# read-only: it works while `tsgraphd run` holds the store's lock and beside SQLite's write
# lock, never needs the API key, and -o replaces a file whole, 0640 less the umask.
. "$(dirname "$0")/lib.sh"

start_fake --agents 20 --cves 6 --alerts 8 --seed 11 --page-size 10
write_config a
db=$WORK/a.db log=$WORK/a.ndjson
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync

# The API key is never opened: export works with it gone.
sed "s#^api_key_file = .*#api_key_file = $WORK/no-such.key#" "$WORK/a.conf" >"$WORK/nokey.conf"
chmod 600 "$WORK/nokey.conf"
conf=$WORK/nokey.conf

# json: the counts of status, per type and in all.
"$TSGRAPHD" -c "$conf" export >"$WORK/graph.json" || fail "export json failed"
expect_status 0 "$TSGRAPHD" -c "$conf" status
status_types=$(printf '%s\n' "$OUT" | awk '/^graph objects:/ {on = 1; next} on && /^  total / {exit}
	on {print $1, $2}')
export_types=$(jq -r '.entities + .relationships | group_by(._type)[] | "\(.[0]._type) \(length)"' \
	"$WORK/graph.json")
[ -n "$status_types" ] && [ "$status_types" = "$export_types" ] ||
	fail "export counts differ from status: status: $status_types; export: $export_types"
total=$(printf '%s\n' "$OUT" | awk '/^  total / {print $2}')
[ "$(jq '(.entities | length) + (.relationships | length)' "$WORK/graph.json")" -eq "$total" ] ||
	fail "export does not hold the $total objects status counts"
[ "$(jq '[.entities[]._class] | map(select(. == "HAS" or . == "PROTECTS" or . == "IDENTIFIED")) | length' \
	"$WORK/graph.json")" -eq 0 ] || fail "a relationship among the entities"
seq=$(printf '%s\n' "$OUT" | sed -n 's/^sinks (outbox at seq \([0-9]*\)):$/\1/p')

# ndjson: valid JSON lines, the file sink's members, every one a create at the outbox's seq.
"$TSGRAPHD" -c "$conf" export --format ndjson >"$WORK/export.ndjson" || fail "export ndjson failed"
[ "$(count_lines "$WORK/export.ndjson")" -eq "$total" ] || fail "ndjson: not one line per object"
jq -e . "$WORK/export.ndjson" >/dev/null || fail "ndjson: a line is not JSON"
[ "$(jq -c 'keys' "$WORK/export.ndjson" | sort -u)" = "$(jq -c 'select(.op == "create") | keys' "$log" | sort -u)" ] ||
	fail "ndjson lines do not have the file sink's members"
[ "$(jq -r '"\(.op) \(.seq) \(.source)"' "$WORK/export.ndjson" | sort -u)" = "create $seq export" ] ||
	fail "ndjson: not every line is a create at seq $seq"
replay_equals_store "$WORK/export.ndjson" "$db"

# A consumer that starts from the export and follows the change log after its seq has the
# store's graph: nothing missed, nothing twice.
fleet '{"op":"agent_add"}' >/dev/null
id=$(fake_truth | jq -r '[.agents[] | select(.status == "online")][0].id')
fleet "{\"op\":\"agent_offline\",\"id\":\"$id\"}" >/dev/null
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
{ cat "$WORK/export.ndjson"; jq -c --argjson n "$seq" 'select(.seq > $n)' "$log"; } >"$WORK/followed.ndjson"
[ "$(count_lines "$WORK/followed.ndjson")" -gt "$total" ] || fail "the sync after the export changed nothing"
replay_equals_store "$WORK/followed.ndjson" "$db"

# dot: Graphviz parses it (it is not a dependency of make check).
"$TSGRAPHD" -c "$conf" export --format dot >"$WORK/graph.dot" || fail "export dot failed"
[ "$(grep -c -- ' -> ' "$WORK/graph.dot")" -eq "$(sqlite3 "$db" "SELECT count(*) FROM object WHERE kind = 'relationship'")" ] ||
	fail "dot: not one edge per relationship"
if command -v dot >/dev/null; then
	dot -Tsvg "$WORK/graph.dot" >"$WORK/graph.svg" 2>"$WORK/dot.err" || fail "dot -Tsvg: $(cat "$WORK/dot.err")"
	[ ! -s "$WORK/dot.err" ] || fail "dot -Tsvg warned: $(cat "$WORK/dot.err")"
	grep -q '<svg' "$WORK/graph.svg" || fail "dot -Tsvg wrote no SVG"
else
	echo "skipped: Graphviz's dot is not installed: the DOT output was not rendered"
fi

# -o: a whole file, 0640 less the umask, replaced in place; nothing left beside it.
mkdir "$WORK/out"
(umask 022 && "$TSGRAPHD" -c "$conf" export -f dot -o "$WORK/out/graph.dot") || fail "export -o failed"
[ "$(stat -c %a "$WORK/out/graph.dot")" = 640 ] || fail "export -o: mode $(stat -c %a "$WORK/out/graph.dot")"
cmp -s "$WORK/out/graph.dot" "$WORK/graph.dot" || fail "export -o wrote other bytes than stdout"
(umask 077 && "$TSGRAPHD" export -c "$conf" --output "$WORK/out/graph.dot" --format json) ||
	fail "export -o over a file failed"
[ "$(stat -c %a "$WORK/out/graph.dot")" = 600 ] || fail "export -o under umask 077: mode $(stat -c %a "$WORK/out/graph.dot")"
[ "$(ls -A "$WORK/out")" = graph.dot ] || fail "export -o left files: $(ls -A "$WORK/out")"

# Usage and failures.
expect_status 0 "$TSGRAPHD" export --help
expect_output "--format json|ndjson|dot"
expect_status 2 "$TSGRAPHD" -c "$conf" export --format xml
expect_output "unknown format 'xml'"
expect_status 2 "$TSGRAPHD" -c "$conf" export extra
expect_output "unexpected argument 'extra'"
expect_status 1 "$TSGRAPHD" -c "$conf" export -o "$WORK/no/such/dir/graph.json"
expect_output "cannot create a temporary file beside it"
write_config none
expect_status 1 "$TSGRAPHD" -c "$WORK/none.conf" export
expect_output "no store yet"

# Beside SQLite's write lock (a writer mid-transaction): no wait, and its row is not seen.
mkfifo "$WORK/hold"
sqlite3 "$db" <"$WORK/hold" >/dev/null 2>&1 &
holder=$!
on_exit "kill $holder 2>/dev/null"
exec 9>"$WORK/hold"
printf "BEGIN IMMEDIATE; DELETE FROM object;\n" >&9
wait_until 5 "the writer to start" test -e "$db-wal"
expect_status 0 timeout 10 "$TSGRAPHD" -c "$conf" export
[ "$(printf '%s\n' "$OUT" | jq '.entities | length')" -gt 0 ] || fail "export saw an uncommitted delete"
exec 9>&-
wait $holder 2>/dev/null || true

# While the daemon runs and holds the store's lock: the same graph as status.
"$TSGRAPHD" -c "$WORK/a.conf" run >"$WORK/run.log" 2>&1 &
daemon=$!
on_exit "kill -9 $daemon 2>/dev/null; wait $daemon 2>/dev/null"
wait_until 20 "the daemon's first sync" grep -q 'sync: done' "$WORK/run.log"
! flock -n "$db.lock" true || fail "the daemon does not hold the store's lock"
expect_status 0 timeout 10 "$TSGRAPHD" -c "$conf" export
printf '%s\n' "$OUT" >"$WORK/during.json"
expect_status 0 "$TSGRAPHD" -c "$conf" status
total=$(printf '%s\n' "$OUT" | awk '/^  total / {print $2}')
[ "$(jq '(.entities | length) + (.relationships | length)' "$WORK/during.json")" -eq "$total" ] ||
	fail "export beside the daemon does not hold the $total objects status counts"
kill -TERM "$daemon"
wait "$daemon" || fail "the daemon exited $?: $(tail -5 "$WORK/run.log")"
echo "export ok ($total objects, seq $seq)"
