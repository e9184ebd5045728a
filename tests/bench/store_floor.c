/* store_floor — the least SQLite can spend storing a first sync's graph: every object a
 * store holds (its key and canonical JSON, read from that store) inserted into a new file
 * with a key-only schema (no type, ends, owner or digest columns, no secondary index) plus
 * one outbox row each naming it, in one transaction, with the store's settings (16 KiB
 * pages, WAL, synchronous FULL, the same 4 MiB cache), then committed and checkpointed.
 * No parsing, no hashing, no staging, no plan, no change log: what a first sync cannot
 * avoid if it keeps the graph and its changes in SQLite at all. Best of three passes, each
 * into a fresh file, in process CPU time.
 *
 *   store_floor STORE_FILE SCRATCH_FILE  → objects=N json_bytes=N cpu_us=N us_per_object=X
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

struct row {
	char *key, *json;
	int key_len, json_len;
};

static int64_t cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int fail(sqlite3 *db, const char *what)
{
	fprintf(stderr, "store_floor: %s: %s\n", what, db ? sqlite3_errmsg(db) : "out of memory");
	return 1;
}

static void rows_free(struct row *rows, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(rows[i].key);
		free(rows[i].json);
	}
	free(rows);
}

/* The store's objects in key order, as its apply writes them. */
static int load(const char *path, struct row **ret, size_t *ret_n, int64_t *ret_bytes)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *st = NULL;
	struct row *rows = NULL;
	size_t n = 0, cap = 0;
	int64_t bytes = 0;
	int rc = SQLITE_ERROR, r = 1;

	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db, "SELECT key, json FROM object ORDER BY key", -1, &st, NULL) !=
		    SQLITE_OK)
		goto out;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct row *row;

		if (n == cap) {
			struct row *t = realloc(rows, (cap = cap ? cap * 2 : 4096) * sizeof(*rows));

			if (!t)
				goto out;
			rows = t;
		}
		row = &rows[n++];
		const char *key = (const char *)sqlite3_column_text(st, 0);
		const char *json = (const char *)sqlite3_column_text(st, 1);

		row->key_len = sqlite3_column_bytes(st, 0);
		row->json_len = sqlite3_column_bytes(st, 1);
		row->key = key ? strndup(key, (size_t)row->key_len) : NULL;
		row->json = json ? strndup(json, (size_t)row->json_len) : NULL;
		if (!row->key || !row->json)
			goto out;
		bytes += row->json_len;
	}
	r = rc == SQLITE_DONE ? 0 : 1;
out:
	if (r != 0)
		fail(rc == SQLITE_ROW ? NULL : db, path);
	sqlite3_finalize(st);
	sqlite3_close(db);
	if (r != 0) {
		rows_free(rows, n);
		return r;
	}
	*ret = rows;
	*ret_n = n;
	*ret_bytes = bytes;
	return 0;
}

static void unlink_all(const char *path)
{
	char p[4096];

	unlink(path);
	snprintf(p, sizeof(p), "%s-wal", path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", path);
	unlink(p);
}

/* One pass into a fresh file: its CPU time, or -1. */
static int64_t pass(const char *path, const struct row *rows, size_t n)
{
	static const char setup[] =
		"PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;"
		" PRAGMA cache_size = -4096;"
		"CREATE TABLE object (key TEXT PRIMARY KEY, json TEXT NOT NULL);"
		"CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, obj_id INTEGER);";
	sqlite3 *db = NULL;
	sqlite3_stmt *obj = NULL, *out = NULL;
	int64_t t0 = 0;
	int ok;

	unlink_all(path);
	ok = sqlite3_open(path, &db) == SQLITE_OK &&
	     sqlite3_exec(db, setup, 0, 0, 0) == SQLITE_OK &&
	     sqlite3_prepare_v2(db, "INSERT INTO object (key, json) VALUES (?1, ?2)", -1, &obj,
				NULL) == SQLITE_OK &&
	     sqlite3_prepare_v2(db, "INSERT INTO outbox (obj_id) VALUES (?1)", -1, &out, NULL) ==
		     SQLITE_OK;
	if (!ok)
		goto out;
	t0 = cpu_us();
	ok = sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0) == SQLITE_OK;
	for (size_t i = 0; ok && i < n; i++) {
		ok = sqlite3_bind_text(obj, 1, rows[i].key, rows[i].key_len, SQLITE_STATIC) ==
			     SQLITE_OK &&
		     sqlite3_bind_text(obj, 2, rows[i].json, rows[i].json_len, SQLITE_STATIC) ==
			     SQLITE_OK &&
		     sqlite3_step(obj) == SQLITE_DONE &&
		     sqlite3_bind_int64(out, 1, sqlite3_last_insert_rowid(db)) == SQLITE_OK &&
		     sqlite3_step(out) == SQLITE_DONE;
		sqlite3_reset(obj);
		sqlite3_reset(out);
	}
	ok = ok && sqlite3_exec(db, "COMMIT", 0, 0, 0) == SQLITE_OK &&
	     sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", 0, 0, 0) == SQLITE_OK;
	t0 = cpu_us() - t0;
out:
	if (!ok)
		fail(db, path);
	sqlite3_finalize(obj);
	sqlite3_finalize(out);
	sqlite3_close(db);
	unlink_all(path);
	return ok ? t0 : -1;
}

int main(int argc, char **argv)
{
	int64_t best = INT64_MAX, bytes = 0;
	struct row *rows = NULL;
	size_t n = 0;

	if (argc != 3) {
		fprintf(stderr, "usage: store_floor STORE_FILE SCRATCH_FILE\n");
		return 2;
	}
	if (load(argv[1], &rows, &n, &bytes) != 0)
		return 1;
	if (n == 0)
		fprintf(stderr, "store_floor: %s holds no objects\n", argv[1]);
	for (int i = 0; n > 0 && i < 3 && best >= 0; i++) {
		int64_t t = pass(argv[2], rows, n);

		if (t < best)
			best = t;
	}
	if (n > 0 && best >= 0)
		printf("objects=%zu json_bytes=%" PRId64 " cpu_us=%" PRId64 " us_per_object=%.2f\n",
		       n, bytes, best, (double)best / (double)n);
	rows_free(rows, n);
	return n > 0 && best >= 0 ? 0 : 1;
}
