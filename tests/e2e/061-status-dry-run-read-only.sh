#!/usr/bin/env bash
# status and sync --dry-run need only what they use (issue 8, item 9): status never opens the
# API key (missing, a FIFO, unreadable), reads the store read-only, works beside a writer
# holding SQLite's write lock and for a user who may read the store but not write it or its
# directory; a dry run takes no lock, migrates nothing and writes nothing: the store stays
# byte-identical and no file appears beside it.
. "$(dirname "$0")/lib.sh"

start_fake --agents 10 --cves 4 --alerts 5
write_config a
db=$WORK/a.db
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync

# status without the key: missing, then a FIFO (opening it would hang), then mode 000.
sed "s#^api_key_file = .*#api_key_file = $WORK/no-such.key#" "$WORK/a.conf" >"$WORK/nokey.conf"
expect_status 0 timeout 20 "$TSGRAPHD" -c "$WORK/nokey.conf" status
expect_output "graph objects:"
expect_output "threatstack_agent "
mkfifo "$WORK/fifo.key"
sed "s#^api_key_file = .*#api_key_file = $WORK/fifo.key#" "$WORK/a.conf" >"$WORK/fifokey.conf"
expect_status 0 timeout 20 "$TSGRAPHD" -c "$WORK/fifokey.conf" status
# (sync still needs the key, and says so at once)
expect_status 2 timeout 20 "$TSGRAPHD" -c "$WORK/nokey.conf" sync --dry-run
expect_output "nokey.conf:5: api_key_file: cannot open the file it names"
# A store path starting with "//" names the same file (POSIX), not a URI's authority.
sed "s#^path = $db\$#path = /$db#" "$WORK/nokey.conf" >"$WORK/slashes.conf"
expect_status 0 timeout 20 "$TSGRAPHD" -c "$WORK/slashes.conf" status
expect_output "graph objects:"

# A dry run after a change in the fleet: prints it, writes nothing.
fleet '{"op":"agent_add"}' >/dev/null
before=$(ls -A "$WORK")
sum=$(sha256sum <"$db")
expect_status 0 timeout 60 "$TSGRAPHD" -c "$WORK/a.conf" sync --dry-run
expect_output "dry run, nothing written: 3 created"
[ "$(sha256sum <"$db")" = "$sum" ] || fail "the dry run changed the store"
[ "$(ls -A "$WORK")" = "$before" ] || fail "the dry run left files: $(ls -A "$WORK")"

# Beside a writer holding SQLite's write lock: neither waits for it (each would have waited
# 30 s for BEGIN IMMEDIATE and failed), and the writer's uncommitted row is not seen.
mkfifo "$WORK/hold"
sqlite3 "$db" <"$WORK/hold" >"$WORK/hold.out" 2>&1 &
holder=$!
on_exit "kill $holder 2>/dev/null"
exec 9>"$WORK/hold"
printf "BEGIN IMMEDIATE; INSERT INTO sink_cursor (sink, seq) VALUES ('ghost', 1);\n" >&9
printf "SELECT 'ghost rows: ' || count(*) FROM sink_cursor WHERE sink = 'ghost';\n" >&9
wait_until 5 "the writer's uncommitted row" grep -q 'ghost rows: 1' "$WORK/hold.out"
expect_status 0 timeout 20 "$TSGRAPHD" -c "$WORK/nokey.conf" status
expect_output "graph objects:"
expect_status 0 timeout 20 "$TSGRAPHD" -c "$WORK/a.conf" sync --dry-run
expect_output "dry run, nothing written: 3 created"
exec 9>&-
wait $holder 2>/dev/null || true
[ "$(sqlite3 "$db" "SELECT count(*) FROM sink_cursor WHERE sink = 'ghost'")" = 0 ] ||
	fail "the writer's rollback did not hold"

# A user who may read the store but not write it nor its directory (needs root to switch).
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
	ro=$WORK/ro
	mkdir "$ro"
	cp "$db" "$ro/a.db"
	chmod 644 "$ro/a.db"
	sed "s#^path = $db\$#path = $ro/a.db#" "$WORK/nokey.conf" >"$ro/a.conf"
	# a dry run needs the key: nobody's own copy
	cp "$WORK/api.key" "$ro/api.key"
	chown nobody "$ro/api.key"
	chmod 600 "$ro/api.key"
	sed -e "s#^path = $db\$#path = $ro/a.db#" -e "s#^api_key_file = .*#api_key_file = $ro/api.key#" \
		"$WORK/a.conf" >"$ro/dry.conf"
	chmod 644 "$ro/dry.conf"
	chmod 644 "$ro/a.conf"
	chmod 755 "$WORK" "$ro"
	chmod 555 "$ro"
	sum=$(sha256sum <"$ro/a.db")
	expect_status 0 timeout 20 setpriv --reuid=nobody --regid=nogroup --clear-groups -- "$TSGRAPHD" -c "$ro/a.conf" status
	expect_output "graph objects:"
	# the key (0600, root's) is unreadable to nobody: status does not care
	expect_no_output "api_key"
	[ "$(sha256sum <"$ro/a.db")" = "$sum" ] || fail "status changed the store"
	[ "$(ls -A "$ro" | sort | tr '\n' ' ')" = "a.conf a.db api.key dry.conf " ] ||
		fail "status left files: $(ls -A "$ro")"
	expect_status 0 timeout 60 setpriv --reuid=nobody --regid=nogroup --clear-groups -- \
		"$TSGRAPHD" -c "$ro/dry.conf" sync --dry-run
	expect_output "dry run, nothing written: 3 created"
	[ "$(sha256sum <"$ro/a.db")" = "$sum" ] || fail "the dry run changed the store"
	[ "$(ls -A "$ro" | sort | tr '\n' ' ')" = "a.conf a.db api.key dry.conf " ] ||
		fail "the dry run left files: $(ls -A "$ro")"
	chmod 755 "$ro"
	chmod 700 "$WORK"
fi
echo "ok"
