#!/usr/bin/env bash
# A schema-1 store (before owners, ranks and the key index) migrated by a sync of an
# unchanged fleet changes nothing: every agent in both status listings keeps the newer copy
# it already has, so the change log stays as it was.
. "$(dirname "$0")/lib.sh"

start_fake --agents 60 --cves 10 --alerts 20 --seed 5 --page-size 20
write_config a
log=$WORK/a.ndjson
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "0 created, 0 updated, 0 deleted"

# Back to schema 1 as an older tsgraphd wrote it: the outbox carries its JSON, and owner,
# rank, object_digest, obj_id, the counts and the sinks' delivery record are not there yet.
sqlite3 "$WORK/a.db" <<'SQL' >/dev/null
UPDATE outbox SET json = (SELECT json FROM object WHERE rowid = outbox.obj_id)
  WHERE json IS NULL AND obj_id IS NOT NULL;
DROP INDEX outbox_obj;
ALTER TABLE outbox DROP COLUMN obj_id;
DROP TABLE object_digest;
DROP INDEX object_owner;
DROP TABLE meta;
DROP TABLE type_count;
CREATE INDEX object_type ON object(type);
ALTER TABLE object DROP COLUMN owner;
ALTER TABLE object DROP COLUMN rank;
ALTER TABLE sink_cursor DROP COLUMN last_ok;
ALTER TABLE sink_cursor DROP COLUMN last_error;
ALTER TABLE sink_cursor DROP COLUMN last_error_at;
ALTER TABLE sink_cursor DROP COLUMN failures;
ALTER TABLE sink_cursor DROP COLUMN open_job;
PRAGMA user_version = 1;
SQL
[ "$(sqlite3 "$WORK/a.db" 'PRAGMA user_version')" = 1 ] || fail "not schema 1"
agents=$(fake_truth | jq ".agents | length")
lines=$(count_lines "$log")

expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
[ "$(sqlite3 "$WORK/a.db" 'PRAGMA user_version')" = 7 ] || fail "not migrated to schema 7"
expect_output "0 created, 0 updated, 0 deleted"
[ "$(count_lines "$log")" -eq "$lines" ] ||
	fail "the migrated store's sync changed an unchanged fleet: $(lines_since "$log" "$lines" | jq -c '[.op, .key, .changed]')"
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "0 created, 0 updated, 0 deleted"
replay_equals_store "$log" "$WORK/a.db"
echo "schema 1 migrated without changes ($agents agents)"
