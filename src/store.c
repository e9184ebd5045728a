/* store — SQLite state for tsgraphd.
 *
 * Tables (schema version 1):
 *   object       the stored graph: one row per entity or relationship, by _key, with its
 *                canonical JSON and SHA-256; relationships keep their ends (from_key, and
 *                to_key when the target is ours) so deleting an entity finds them.
 *   outbox       one row per change, seq strictly increasing (AUTOINCREMENT: never reused).
 *   sink_cursor  the last seq each sink has delivered.
 *   sync_run     one row per sync, with its counts and what the mass-delete guard held back.
 * The snapshot of a sync in progress lives in TEMP tables (snap, complete, gone) of the
 * connection: staged objects cost no write lock and a crash forgets them.
 *
 * The diff is SQL over snap and object: creates are staged keys not stored, updates are keys
 * whose hashes differ (the changed properties come from diff_changed_properties(), registered
 * as the SQL function tsg_changed), deletes are stored keys of complete types not staged.
 * The file is created 0600; PRAGMA application_id marks it as ours and user_version is the
 * schema version, migrated forward in one transaction and never backward.
 */
#include "tsgraphd/store.h"
#include "tsgraphd/diff.h"
#include "tsgraphd/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

struct store {
	sqlite3 *db;
	sqlite3_stmt *snap_put;
};

static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE object ("
	"  key TEXT PRIMARY KEY,"
	"  kind TEXT NOT NULL CHECK (kind IN ('entity','relationship')),"
	"  type TEXT NOT NULL, class TEXT NOT NULL,"
	"  from_key TEXT, to_key TEXT,"
	"  json TEXT NOT NULL, hash TEXT NOT NULL,"
	"  first_seen INTEGER NOT NULL, updated_at INTEGER NOT NULL"
	");"
	"CREATE INDEX object_type ON object(type);"
	"CREATE INDEX object_from ON object(from_key) WHERE from_key IS NOT NULL;"
	"CREATE INDEX object_to ON object(to_key) WHERE to_key IS NOT NULL;"
	"CREATE TABLE outbox ("
	"  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  op TEXT NOT NULL CHECK (op IN ('create','update','delete')),"
	"  kind TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, class TEXT NOT NULL,"
	"  json TEXT, changed TEXT, source TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL, run_id INTEGER"
	");"
	"CREATE TABLE sink_cursor (sink TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TABLE sync_run ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  kind TEXT NOT NULL, result TEXT NOT NULL,"
	"  started INTEGER NOT NULL, finished INTEGER NOT NULL DEFAULT 0,"
	"  created INTEGER NOT NULL DEFAULT 0, updated INTEGER NOT NULL DEFAULT 0,"
	"  deleted INTEGER NOT NULL DEFAULT 0, held_back TEXT, message TEXT"
	");",
};

static const char temp_schema[] =
	"CREATE TEMP TABLE IF NOT EXISTS snap ("
	"  key TEXT PRIMARY KEY, kind TEXT NOT NULL, type TEXT NOT NULL, class TEXT NOT NULL,"
	"  from_key TEXT, to_key TEXT, json TEXT NOT NULL, hash TEXT NOT NULL,"
	"  rank INTEGER NOT NULL);"
	"CREATE TEMP TABLE IF NOT EXISTS complete (type TEXT PRIMARY KEY, grp TEXT NOT NULL,"
	"  is_primary INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TEMP TABLE IF NOT EXISTS gone (key TEXT PRIMARY KEY) WITHOUT ROWID;";

static int sql_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_NOTADB:
	case SQLITE_CORRUPT:
		return -EBADMSG;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	default:
		return -EIO;
	}
}

static int exec(struct store *s, const char *sql)
{
	return sql_errno(sqlite3_exec(s->db, sql, NULL, NULL, NULL));
}

const char *store_errmsg(struct store *s)
{
	return s && s->db ? sqlite3_errmsg(s->db) : "no store";
}

static void finalizep(sqlite3_stmt **st)
{
	sqlite3_finalize(*st);
}
#define _cleanup_stmt_ __attribute__((cleanup(finalizep)))

static int prepare(struct store *s, const char *sql, sqlite3_stmt **ret)
{
	return sql_errno(sqlite3_prepare_v2(s->db, sql, -1, ret, NULL));
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
	return sql_errno(v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT)
			   : sqlite3_bind_null(st, i));
}

/* Steps a statement that returns no rows. */
static int step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	return rc == SQLITE_DONE ? 0 : (rc == SQLITE_ROW ? -EPROTO : sql_errno(rc));
}

static int query_int(struct store *s, const char *sql, int64_t *ret)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, sql, &st), rc;

	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : sql_errno(rc);
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

/* SQL: tsg_changed(old_json, new_json) → JSON array of changed top-level properties. */
static void sql_changed(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	struct buf b;
	int r;

	(void)argc;
	buf_init(&b, 1024 * 1024);
	r = diff_changed_properties((const char *)sqlite3_value_text(argv[0]),
				    (const char *)sqlite3_value_text(argv[1]), &b);
	if (r < 0) {
		buf_free(&b);
		sqlite3_result_error(ctx, "tsg_changed: not comparable JSON objects", -1);
		return;
	}
	sqlite3_result_text(ctx, b.data ? b.data : "[]", -1, SQLITE_TRANSIENT);
	buf_free(&b);
}

/* Checks the file is ours and brings its schema up to date. The checks run inside the
 * write transaction, so two processes opening a new store at once do not both migrate. */
static int migrate(struct store *s, char *err)
{
	int64_t app = 0, version = 0, tables = 0;
	int r;

	r = exec(s, "BEGIN IMMEDIATE");
	if (r == 0)
		r = query_int(s, "PRAGMA application_id", &app);
	if (r == 0)
		r = query_int(s, "PRAGMA user_version", &version);
	if (r == 0)
		r = query_int(s, "SELECT count(*) FROM sqlite_schema", &tables);
	if (r == -EBADMSG) {
		snprintf(err, STORE_ERR_MAX, "not an SQLite database (is it tsgraphd's store?)");
		goto fail;
	}
	if (r < 0) {
		snprintf(err, STORE_ERR_MAX, "cannot read the schema: %s", sqlite3_errmsg(s->db));
		goto fail;
	}
	if (app != STORE_APPLICATION_ID && (app != 0 || tables > 0)) {
		snprintf(err, STORE_ERR_MAX,
			 "an SQLite database of another program (application_id %lld)",
			 (long long)app);
		r = -EMEDIUMTYPE;
		goto fail;
	}
	if (version > (int64_t)ARRAY_SIZE(migrations)) {
		snprintf(err, STORE_ERR_MAX,
			 "schema version %lld is newer than this build's (%zu): upgrade tsgraphd",
			 (long long)version, ARRAY_SIZE(migrations));
		r = -EPROTONOSUPPORT;
		goto fail;
	}
	for (size_t v = (size_t)version; r == 0 && v < ARRAY_SIZE(migrations); v++) {
		char pragma[64];

		r = exec(s, migrations[v]);
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %zu", v + 1);
		if (r == 0)
			r = exec(s, pragma);
	}
	if (r == 0 && app == 0)
		r = exec(s, "PRAGMA application_id = 1414743876"); /* STORE_APPLICATION_ID */
	if (r == 0)
		r = exec(s, "COMMIT");
	if (r == 0)
		return 0;
	snprintf(err, STORE_ERR_MAX, "migration failed: %s", sqlite3_errmsg(s->db));
fail:
	exec(s, "ROLLBACK");
	return r;
}

/* Creates the file 0600 if missing, and takes group and other bits off an existing one. */
static int prepare_file(const char *path, const struct store_options *opt, bool *ret_memory,
			char *err)
{
	_cleanup_close_ int fd = -1;
	struct stat st;

	*ret_memory = false;
	if (access(path, F_OK) < 0 && errno == ENOENT) {
		if (opt->memory_if_missing) {
			*ret_memory = true;
			return 0;
		}
		if (opt->must_exist) {
			snprintf(err, STORE_ERR_MAX, "no store yet (run 'tsgraphd sync' first)");
			return -ENOENT;
		}
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0) {
		int r = -errno;

		snprintf(err, STORE_ERR_MAX, "cannot open: %s", strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, STORE_ERR_MAX, "not a regular file");
		return -EINVAL;
	}
	if ((st.st_mode & 077) && fchmod(fd, st.st_mode & 0700) < 0) {
		int r = -errno;

		snprintf(err, STORE_ERR_MAX, "cannot make it private (chmod 600): %s",
			 strerror(-r));
		return r;
	}
	return 0;
}

/* Read-only opens (status, dry runs) never write beside the store either: with no -wal file
 * there is no writer's work to see, so the file is opened immutable (no -wal, -shm or lock
 * is created, which also works in a directory the reader cannot write); with a -wal (a sync
 * or the daemon is running, or died) the usual WAL protocol reads its committed state. */
static int open_read_only(const char *path, const struct store_options *opt, sqlite3 **ret_db,
			  bool *ret_memory, char *err)
{
	_cleanup_close_ int fd = -1;
	_cleanup_free_ char *wal = NULL;
	struct buf uri;
	struct stat st;
	int r;

	*ret_memory = false;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY);
	if (fd < 0 && errno == ENOENT && opt->memory_if_missing) {
		*ret_memory = true;
		return 0;
	}
	if (fd < 0 && errno == ENOENT) {
		snprintf(err, STORE_ERR_MAX, "no store yet (run 'tsgraphd sync' first)");
		return -ENOENT;
	}
	if (fd < 0) {
		r = -errno;
		snprintf(err, STORE_ERR_MAX, "cannot open: %s", strerror(-r));
		return r;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, STORE_ERR_MAX, "not a regular file");
		return -EINVAL;
	}
	if (asprintf(&wal, "%s-wal", path) < 0)
		return -ENOMEM;
	/* A URI, so every byte of the path that URIs give a meaning to is %-escaped. */
	buf_init(&uri, 3 * strlen(path) + 64);
	r = buf_puts(&uri, "file:");
	for (const char *q = path; r == 0 && *q; q++)
		r = strchr("%?#", *q) || (unsigned char)*q < 0x20
			    ? buf_printf(&uri, "%%%02X", (unsigned)(unsigned char)*q)
			    : buf_append(&uri, q, 1);
	if (r == 0)
		r = buf_puts(&uri, access(wal, F_OK) == 0 ? "?mode=ro" : "?mode=ro&immutable=1");
	if (r == 0)
		r = sql_errno(sqlite3_open_v2(
			uri.data, ret_db,
			SQLITE_OPEN_READONLY | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX, NULL));
	if (r < 0)
		snprintf(err, STORE_ERR_MAX, "cannot open read-only: %s",
			 *ret_db ? sqlite3_errmsg(*ret_db) : strerror(-r));
	buf_free(&uri);
	return r;
}

/* The read-only counterpart of migrate(): the file must be ours and exactly this build's
 * schema, since a reader may not migrate it. */
static int check_schema(struct store *s, char *err)
{
	int64_t app = 0, version = 0;
	int r;

	r = query_int(s, "PRAGMA application_id", &app);
	if (r == 0)
		r = query_int(s, "PRAGMA user_version", &version);
	if (r == -EBADMSG) {
		snprintf(err, STORE_ERR_MAX, "not an SQLite database (is it tsgraphd's store?)");
		return r;
	}
	if (r < 0) {
		snprintf(err, STORE_ERR_MAX, "cannot read the schema: %s", sqlite3_errmsg(s->db));
		return r;
	}
	if (app != STORE_APPLICATION_ID && (app != 0 || version != 0)) {
		snprintf(err, STORE_ERR_MAX,
			 "an SQLite database of another program (application_id %lld)",
			 (long long)app);
		return -EMEDIUMTYPE;
	}
	if (version != (int64_t)ARRAY_SIZE(migrations)) {
		snprintf(err, STORE_ERR_MAX,
			 version > (int64_t)ARRAY_SIZE(migrations)
				 ? "schema version %lld is newer than this build's (%zu): upgrade "
				   "tsgraphd"
				 : "schema version %lld is older than this build's (%zu): run "
				   "'tsgraphd sync' once to migrate it",
			 (long long)version, ARRAY_SIZE(migrations));
		return -EPROTONOSUPPORT;
	}
	return 0;
}

/* Dry runs change a private copy: the stored graph is read once through a read-only
 * connection into memory, where the diff may write and roll back as it likes. */
static int copy_to_memory(struct store *s, sqlite3 *src, char *err)
{
	sqlite3_backup *b;
	int rc;

	b = sqlite3_backup_init(s->db, "main", src, "main");
	if (!b) {
		snprintf(err, STORE_ERR_MAX, "cannot copy: %s", sqlite3_errmsg(s->db));
		return sql_errno(sqlite3_errcode(s->db));
	}
	rc = sqlite3_backup_step(b, -1);
	sqlite3_backup_finish(b);
	if (rc != SQLITE_DONE) {
		snprintf(err, STORE_ERR_MAX, "cannot read: %s", sqlite3_errstr(rc));
		return sql_errno(rc) < 0 ? sql_errno(rc) : -EIO;
	}
	return 0;
}

int store_open(const char *path, const struct store_options *opt, struct store **ret,
	       char err[static STORE_ERR_MAX])
{
	struct store *s = NULL;
	sqlite3 *src = NULL; /* read_only: the file's connection */
	char msg[STORE_ERR_MAX] = "";
	bool memory = false;
	int r;

	err[0] = '\0';
	r = opt->read_only ? open_read_only(path, opt, &src, &memory, msg)
			   : prepare_file(path, opt, &memory, msg);
	if (r < 0)
		goto out;
	s = calloc(1, sizeof(*s));
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	if (src && !opt->copy_to_memory) {
		s->db = src; /* status: read the file itself */
		src = NULL;
	} else {
		r = sql_errno(sqlite3_open_v2(
			memory || src ? ":memory:" : path, &s->db,
			SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL));
		if (r < 0) {
			snprintf(msg, sizeof(msg), "cannot open: %s",
				 s->db ? sqlite3_errmsg(s->db) : "out of memory");
			goto out;
		}
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 30000);
	if (src) {
		sqlite3_busy_timeout(src, opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms : 30000);
		r = copy_to_memory(s, src, msg);
		memory = true;
		if (r < 0)
			goto out;
	}
	r = opt->read_only && !memory ? check_schema(s, msg) : migrate(s, msg);
	if (r < 0)
		goto out;
	if (!memory && !opt->read_only) {
		/* WAL lets readers (status, the receiver) run beside a sync's write. */
		_cleanup_stmt_ sqlite3_stmt *st = NULL;

		r = prepare(s, "PRAGMA journal_mode = WAL", &st);
		if (r == 0 && sqlite3_step(st) == SQLITE_ROW &&
		    sqlite3_stricmp(col_text(st, 0), "wal") != 0) {
			snprintf(msg, sizeof(msg), "cannot use WAL journaling (got %s)",
				 col_text(st, 0));
			r = -EIO;
			goto out;
		}
	}
	if (r == 0)
		r = exec(s, opt->synchronous_full ? "PRAGMA synchronous = FULL"
						  : "PRAGMA synchronous = NORMAL");
	if (r == 0)
		r = exec(s, "PRAGMA foreign_keys = ON; PRAGMA temp_store = FILE");
	if (r == 0)
		r = exec(s, temp_schema);
	if (r == 0)
		r = sql_errno(sqlite3_create_function(s->db, "tsg_changed", 2,
						      SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
						      sql_changed, NULL, NULL));
	if (r < 0) {
		snprintf(msg, sizeof(msg), "cannot set up: %s", sqlite3_errmsg(s->db));
		goto out;
	}
	*ret = s;
	s = NULL;
out:
	if (r < 0)
		snprintf(err, STORE_ERR_MAX, "%s: %s", path, msg[0] ? msg : strerror(-r));
	sqlite3_close(src);
	store_close(s);
	return r;
}

int store_lock(const char *path, int *ret_fd)
{
	_cleanup_free_ char *lock = NULL;
	int fd;

	if (asprintf(&lock, "%s.lock", path) < 0)
		return -ENOMEM;
	fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int r = errno == EWOULDBLOCK ? -EBUSY : -errno;

		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	sqlite3_finalize(s->snap_put);
	sqlite3_close(s->db);
	free(s);
}

int store_begin(struct store *s)
{
	return exec(s, "BEGIN IMMEDIATE");
}

int store_commit(struct store *s)
{
	return exec(s, "COMMIT");
}

int store_rollback(struct store *s)
{
	return exec(s, "ROLLBACK");
}

int store_snapshot_reset(struct store *s)
{
	return exec(s, "DELETE FROM temp.snap; DELETE FROM temp.complete; DELETE FROM temp.gone;");
}

int store_snapshot_put(struct store *s, const struct graph_object *o, const char *json,
		       const char *hash)
{
	static const char sql[] =
		"INSERT INTO temp.snap (key, kind, type, class, from_key, to_key, json, hash, rank)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
		" ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, type = excluded.type,"
		"  class = excluded.class, from_key = excluded.from_key, to_key = excluded.to_key,"
		"  json = excluded.json, hash = excluded.hash, rank = excluded.rank"
		" WHERE excluded.rank > snap.rank";
	bool rel = o->kind == GRAPH_RELATIONSHIP;
	json_object *mapping = NULL;
	const char *to_key = NULL;
	int r;

	if (!o->key || !o->type || !o->class || !json || !hash)
		return -EINVAL;
	/* Only an explicit relationship's target is ours; a mapped one's is matched elsewhere. */
	if (rel && !json_object_object_get_ex(o->obj, "_mapping", &mapping))
		to_key = o->to_key;
	if (!s->snap_put) {
		r = prepare(s, sql, &s->snap_put);
		if (r < 0)
			return r;
	}
	sqlite3_reset(s->snap_put);
	r = bind_text(s->snap_put, 1, o->key);
	if (r == 0)
		r = bind_text(s->snap_put, 2, rel ? "relationship" : "entity");
	if (r == 0)
		r = bind_text(s->snap_put, 3, o->type);
	if (r == 0)
		r = bind_text(s->snap_put, 4, o->class);
	if (r == 0)
		r = bind_text(s->snap_put, 5, rel ? o->from_key : NULL);
	if (r == 0)
		r = bind_text(s->snap_put, 6, to_key);
	if (r == 0)
		r = bind_text(s->snap_put, 7, json);
	if (r == 0)
		r = bind_text(s->snap_put, 8, hash);
	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(s->snap_put, 9, o->rank));
	if (r == 0)
		r = step_done(s->snap_put);
	sqlite3_reset(s->snap_put);
	sqlite3_clear_bindings(s->snap_put);
	return r;
}

int store_snapshot_complete(struct store *s, const char *group, const char *const *types, size_t n)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(
		s,
		"INSERT OR REPLACE INTO temp.complete (type, grp, is_primary) VALUES (?1, ?2, ?3)",
		&st);

	for (size_t i = 0; r == 0 && i < n; i++) {
		sqlite3_reset(st);
		r = bind_text(st, 1, types[i]);
		if (r == 0)
			r = bind_text(st, 2, group);
		if (r == 0)
			r = sql_errno(sqlite3_bind_int(st, 3, i == 0));
		if (r == 0)
			r = step_done(st);
	}
	return r;
}

int store_snapshot_incomplete(struct store *s, const char *group)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "DELETE FROM temp.complete WHERE grp = ?1", &st);

	if (r == 0)
		r = bind_text(st, 1, group);
	return r < 0 ? r : step_done(st);
}

int store_snapshot_count(struct store *s, int64_t *ret)
{
	return query_int(s, "SELECT count(*) FROM temp.snap", ret);
}

int store_missing_counts(struct store *s, store_missing_fn fn, void *ud)
{
	static const char sql[] =
		"SELECT c.grp, c.type,"
		" (SELECT count(*) FROM object o WHERE o.type = c.type),"
		" (SELECT count(*) FROM object o WHERE o.type = c.type"
		"   AND NOT EXISTS (SELECT 1 FROM temp.snap n WHERE n.key = o.key))"
		" FROM temp.complete c WHERE c.is_primary ORDER BY c.grp";
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, sql, &st), rc;

	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = fn(col_text(st, 0), col_text(st, 1), sqlite3_column_int64(st, 2),
		       sqlite3_column_int64(st, 3), ud);
		if (r != 0)
			return r;
	}
	return sql_errno(rc);
}

int store_plan_deletes(struct store *s)
{
	static const char mark[] =
		"INSERT OR IGNORE INTO temp.gone (key)"
		" SELECT o.key FROM object o JOIN temp.complete c ON c.type = o.type"
		" WHERE NOT EXISTS (SELECT 1 FROM temp.snap n WHERE n.key = o.key)";
	static const char cascade[] = "INSERT OR IGNORE INTO temp.gone (key)"
				      " SELECT o.key FROM object o WHERE o.kind = 'relationship'"
				      "   AND (o.from_key IN (SELECT key FROM temp.gone)"
				      "     OR o.to_key IN (SELECT key FROM temp.gone))";
	/* A staged relationship whose end is neither staged nor surviving in the store would
	 * point at nothing (say, a vulnerability names an agent the agent listing lacked). */
	static const char prune[] =
		"DELETE FROM temp.snap WHERE kind = 'relationship' AND ("
		"  (from_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM temp.snap e"
		"     WHERE e.key = snap.from_key AND e.kind = 'entity')"
		"   AND (NOT EXISTS (SELECT 1 FROM object o WHERE o.key = snap.from_key)"
		"     OR EXISTS (SELECT 1 FROM temp.gone g WHERE g.key = snap.from_key)))"
		" OR (to_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM temp.snap e"
		"     WHERE e.key = snap.to_key AND e.kind = 'entity')"
		"   AND (NOT EXISTS (SELECT 1 FROM object o WHERE o.key = snap.to_key)"
		"     OR EXISTS (SELECT 1 FROM temp.gone g WHERE g.key = snap.to_key))))";
	int r;

	r = exec(s, "DELETE FROM temp.gone");
	if (r == 0)
		r = exec(s, mark);
	/* Relationships of relationships do not exist, so one cascade step reaches them all. */
	if (r == 0)
		r = exec(s, cascade);
	if (r == 0)
		r = exec(s, prune);
	return r;
}

int store_apply_plan(struct store *s, const char *source, int64_t run_id, int64_t now,
		     int64_t *ret_created, int64_t *ret_updated, int64_t *ret_deleted)
{
	/* ?1 source, ?2 now, ?3 run id, ?4 kind */
	static const char creates[] =
		"INSERT INTO outbox (op, kind, key, type, class, json, changed, source,"
		"  created_at, run_id)"
		" SELECT 'create', n.kind, n.key, n.type, n.class, n.json, NULL, ?1, ?2, ?3"
		" FROM temp.snap n WHERE n.kind = ?4"
		"   AND NOT EXISTS (SELECT 1 FROM object o WHERE o.key = n.key)"
		" ORDER BY n.key";
	static const char updates[] =
		"INSERT INTO outbox (op, kind, key, type, class, json, changed, source,"
		"  created_at, run_id)"
		" SELECT 'update', n.kind, n.key, n.type, n.class, n.json, tsg_changed(o.json, "
		"n.json),"
		"  ?1, ?2, ?3"
		" FROM temp.snap n JOIN object o ON o.key = n.key"
		" WHERE n.kind = ?4 AND o.hash <> n.hash ORDER BY n.key";
	static const char deletes[] =
		"INSERT INTO outbox (op, kind, key, type, class, json, changed, source,"
		"  created_at, run_id)"
		" SELECT 'delete', o.kind, o.key, o.type, o.class, NULL, NULL, ?1, ?2, ?3"
		" FROM temp.gone g JOIN object o ON o.key = g.key WHERE o.kind = ?4"
		" ORDER BY o.key";
	static const char upsert[] =
		"INSERT INTO object (key, kind, type, class, from_key, to_key, json, hash,"
		"  first_seen, updated_at)"
		" SELECT key, kind, type, class, from_key, to_key, json, hash, ?1, ?1"
		" FROM temp.snap n WHERE NOT EXISTS"
		"  (SELECT 1 FROM object o WHERE o.key = n.key AND o.hash = n.hash)"
		" ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, type = excluded.type,"
		"  class = excluded.class, from_key = excluded.from_key, to_key = excluded.to_key,"
		"  json = excluded.json, hash = excluded.hash, updated_at = excluded.updated_at";
	static const char remove[] = "DELETE FROM object WHERE key IN (SELECT key FROM temp.gone)";
	/* Entities before the relationships that need them; relationships gone before the
	 * entities they hang from. which: 0 created, 1 updated, 2 deleted. */
	static const struct {
		const char *sql;
		const char *kind;
		int which;
	} steps[] = {
		{ creates, "entity", 0 },	{ updates, "entity", 1 },
		{ creates, "relationship", 0 }, { updates, "relationship", 1 },
		{ deletes, "relationship", 2 }, { deletes, "entity", 2 },
	};
	int64_t counts[3] = { 0, 0, 0 };
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = 0;

	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(steps); i++) {
		sqlite3_finalize(st);
		st = NULL;
		r = prepare(s, steps[i].sql, &st);
		if (r == 0)
			r = bind_text(st, 1, source);
		if (r == 0)
			r = sql_errno(sqlite3_bind_int64(st, 2, now));
		if (r == 0)
			r = sql_errno(sqlite3_bind_int64(st, 3, run_id));
		if (r == 0)
			r = bind_text(st, 4, steps[i].kind);
		if (r == 0)
			r = step_done(st);
		if (r == 0)
			counts[steps[i].which] += sqlite3_changes64(s->db);
	}
	sqlite3_finalize(st);
	st = NULL;
	if (r == 0)
		r = prepare(s, upsert, &st);
	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 1, now));
	if (r == 0)
		r = step_done(st);
	if (r == 0)
		r = exec(s, remove);
	if (r < 0)
		return r;
	*ret_created = counts[0];
	*ret_updated = counts[1];
	*ret_deleted = counts[2];
	return 0;
}

int store_outbox_each(struct store *s, int64_t after_seq, int64_t limit, store_outbox_fn fn,
		      void *userdata)
{
	static const char sql[] =
		"SELECT seq, op, kind, key, type, class, json, changed, source, created_at"
		" FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2";
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, sql, &st), rc;

	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 1, after_seq));
	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 2, limit));
	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct outbox_row row = {
			.seq = sqlite3_column_int64(st, 0),
			.op = col_text(st, 1),
			.kind = col_text(st, 2),
			.key = col_text(st, 3),
			.type = col_text(st, 4),
			.class = col_text(st, 5),
			.json = col_text(st, 6),
			.changed = col_text(st, 7),
			.source = col_text(st, 8),
			.created_at = sqlite3_column_int64(st, 9),
		};

		r = fn(&row, userdata);
		if (r != 0)
			return r;
	}
	return sql_errno(rc);
}

int store_outbox_max_seq(struct store *s, int64_t *ret)
{
	return query_int(s, "SELECT coalesce(max(seq), 0) FROM outbox", ret);
}

int store_cursor_get(struct store *s, const char *sink, int64_t *ret)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT seq FROM sink_cursor WHERE sink = ?1", &st), rc;

	if (r == 0)
		r = bind_text(st, 1, sink);
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*ret = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		*ret = 0;
	else
		return sql_errno(rc);
	return 0;
}

int store_cursor_set(struct store *s, const char *sink, int64_t seq)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s,
			"INSERT INTO sink_cursor (sink, seq) VALUES (?1, ?2)"
			" ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq",
			&st);

	if (r == 0)
		r = bind_text(st, 1, sink);
	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 2, seq));
	return r < 0 ? r : step_done(st);
}

int store_object_each(struct store *s, int (*fn)(const struct store_row *r, void *ud), void *ud)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT kind, key, type, class, json FROM object ORDER BY key", &st), rc;

	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_row row = {
			.kind = col_text(st, 0),
			.key = col_text(st, 1),
			.type = col_text(st, 2),
			.class = col_text(st, 3),
			.json = col_text(st, 4),
		};

		r = fn(&row, ud);
		if (r != 0)
			return r;
	}
	return sql_errno(rc);
}

int store_type_counts(struct store *s, store_count_fn fn, void *userdata)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT type, count(*) FROM object GROUP BY type ORDER BY type", &st),
	    rc;

	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = fn(col_text(st, 0), sqlite3_column_int64(st, 1), userdata);
		if (r != 0)
			return r;
	}
	return sql_errno(rc);
}

int store_run_begin(struct store *s, const char *kind, int64_t now, int64_t *ret_id)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r;

	/* A run still "running" belongs to a process that died: say so. */
	r = exec(s, "UPDATE sync_run SET result = 'interrupted' WHERE result = 'running'");
	if (r == 0)
		r = prepare(
			s,
			"INSERT INTO sync_run (kind, result, started) VALUES (?1, 'running', ?2)",
			&st);
	if (r == 0)
		r = bind_text(st, 1, kind);
	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 2, now));
	if (r == 0)
		r = step_done(st);
	if (r == 0)
		*ret_id = sqlite3_last_insert_rowid(s->db);
	return r;
}

int store_run_finish(struct store *s, const struct store_run *run)
{
	static const char sql[] =
		"UPDATE sync_run SET result = ?2, finished = ?3, created = ?4, updated = ?5,"
		" deleted = ?6, held_back = ?7, message = ?8 WHERE id = ?1";
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, sql, &st);

	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 1, run->id));
	if (r == 0)
		r = bind_text(st, 2, run->result);
	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 3, run->finished));
	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 4, run->created));
	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 5, run->updated));
	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 6, run->deleted));
	if (r == 0)
		r = bind_text(st, 7, run->held_back);
	if (r == 0)
		r = bind_text(st, 8, run->message);
	return r < 0 ? r : step_done(st);
}

int store_runs_each(struct store *s, int64_t limit, store_run_fn fn, void *userdata)
{
	static const char sql[] =
		"SELECT id, kind, result, started, finished, created, updated, deleted,"
		" held_back, message FROM sync_run ORDER BY id DESC LIMIT ?1";
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, sql, &st), rc;

	if (r == 0)
		r = sql_errno(sqlite3_bind_int64(st, 1, limit));
	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_run run = {
			.id = sqlite3_column_int64(st, 0),
			.kind = col_text(st, 1),
			.result = col_text(st, 2),
			.started = sqlite3_column_int64(st, 3),
			.finished = sqlite3_column_int64(st, 4),
			.created = sqlite3_column_int64(st, 5),
			.updated = sqlite3_column_int64(st, 6),
			.deleted = sqlite3_column_int64(st, 7),
			.held_back = col_text(st, 8),
			.message = col_text(st, 9),
		};

		r = fn(&run, userdata);
		if (r != 0)
			return r;
	}
	return sql_errno(rc);
}
