#!/usr/bin/env bash
# After a sequence of fleet changes and syncs, replaying the NDJSON change log from empty
# reconstructs exactly the graph that a fresh full sync of the same fleet produces.
. "$(dirname "$0")/lib.sh"

start_fake --agents 60 --cves 15 --alerts 25 --seed 21 --page-size 10
write_config a
log=$WORK/a.ndjson
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync

ids() { fake_truth | jq -r "$1"; }
for round in 1 2 3; do
	a=$(ids "[.agents[] | select(.status == \"online\")][$round].id")
	b=$(ids ".agents[$((round * 3))].id")
	c=$(ids ".agents[$((round * 5))].id")
	al=$(ids "[.alerts[] | select(.isDismissed == false)][0].id")
	fleet "{\"op\":\"agent_offline\",\"id\":\"$a\"}" >/dev/null
	fleet "{\"op\":\"tag_set\",\"id\":\"$b\",\"key\":\"round\",\"value\":\"r$round\"}" >/dev/null
	fleet "{\"op\":\"cve_add\",\"agent\":\"$c\",\"cve\":\"CVE-2099-000$round\"}" >/dev/null
	fleet "{\"op\":\"alert_dismiss\",\"id\":\"$al\"}" >/dev/null
	fleet "{\"op\":\"alert_add\",\"agent\":\"$a\"}" >/dev/null
	fleet '{"op":"agent_add"}' >/dev/null
	fleet "{\"op\":\"agent_remove\",\"id\":\"$(ids '.agents[-2].id')\"}" >/dev/null
	expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
done

write_config fresh
expect_status 0 "$TSGRAPHD" -c "$WORK/fresh.conf" sync
replay_equals_store "$log" "$WORK/fresh.db"
replay_equals_store "$log" "$WORK/a.db"
echo "replay ok ($(count_lines "$log") changes)"
