#!/usr/bin/env bash
# A store that runs out of disk: the sync fails with SQLite's own reason ("database or disk
# is full"), read at the failure and not after the rollback ("not an error"), commits
# nothing half-done, and the next sync with room succeeds. Needs root for a small tmpfs;
# skipped (and says so) elsewhere.
. "$(dirname "$0")/lib.sh"

mnt=$WORK/small
mkdir -p "$mnt"
if [ "$(id -u)" -ne 0 ] || ! mount -t tmpfs -o size=1m tmpfs "$mnt" 2>/dev/null; then
	echo "SKIP: needs root to mount a small tmpfs"
	exit 0
fi
on_exit "umount -l '$mnt'"

start_fake --agents 1500 --cves 10 --alerts 100 --seed 5
write_config a
sed -i "s|^path = $WORK/a.db|path = $mnt/a.db|" "$WORK/a.conf"
expect_status 1 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "database or disk is full"
expect_no_output "not an error"
# Nothing half-done: no object made it in without its outbox row, or the other way round.
objects=$(sqlite3 "$mnt/a.db" 'SELECT count(*) FROM object' 2>/dev/null || echo 0)
outbox=$(sqlite3 "$mnt/a.db" 'SELECT count(*) FROM outbox' 2>/dev/null || echo 0)
[ "$objects" = "$outbox" ] || fail "half-applied: $objects objects but $outbox outbox rows"

# With room again, the same store syncs.
umount -l "$mnt"
mount -t tmpfs -o size=64m tmpfs "$mnt"
cp "$WORK/a.db" "$mnt/" 2>/dev/null || true
expect_status 0 "$TSGRAPHD" -c "$WORK/a.conf" sync
expect_output "created"
echo "ok"
