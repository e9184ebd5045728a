#!/usr/bin/env bash
# A listing that keeps handing out next-page tokens stops at max_pages ([threatstack],
# default 2000) and names the listing: the sync exits 1, the run is partial, nothing of the
# listing's types is deleted. (Before: 100,000 pages, fixed, about 11 hours at the default
# rate.) Here the fleet has 4 pages of online agents and max_pages is 2.
. "$(dirname "$0")/lib.sh"

start_fake --agents 20 --cves 4 --alerts 4 --seed 9 --page-size 5
write_config a
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
agents=$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE type = 'threatstack_agent'")

sed -i 's/^timeout = 10$/timeout = 10\nmax_pages = 2/' "$WORK/a.conf"
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "incomplete: agents: "
expect_output "GET /v2/agents?status=online: still more pages after 2 (max_pages); listing stopped, incomplete"
[ "$(sqlite3 "$WORK/a.db" "SELECT count(*) FROM object WHERE type = 'threatstack_agent'")" -eq "$agents" ] ||
	fail "a listing stopped at max_pages deleted agents"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" status
expect_output "partial"

# bounds are checked like every other key
sed -i 's/^max_pages = 2$/max_pages = 0/' "$WORK/a.conf"
expect_status 2 "$TSGRAPHD" -c "$WORK/a.conf" check
expect_output "max_pages: out of range (1..1000000)"
echo "max_pages ok"
