/* store — SQLite state for tsgraphd.
 *
 * Tables (schema version 7):
 *   object         the stored graph: one row per entity or relationship, by _key, with its
 *                  canonical JSON and SHA-256, its owner (the agent or alert it belongs to)
 *                  and rank; relationships keep their ends (from_key, and to_key when the
 *                  target is ours) so deleting an entity finds them.
 *   object_digest  per object row: 64 bits of its key's hash and of its content hash, and
 *                  its type: what the in-memory key index is loaded from, a few MiB.
 *   outbox         one row per change, seq strictly increasing (AUTOINCREMENT: never
 *                  reused). Its JSON is NULL while the object row (obj_id) still holds it;
 *                  it is copied into the row before that object changes or goes.
 *   sink_cursor    the last seq each sink has delivered, when it last delivered, its last
 *                  error and how many attempts in a row have failed; the JupiterOne job it
 *                  has open (created, the cursor not yet moved past it).
 *   sync_run       one row per sync, with its counts and what the guard held back.
 *   meta           one row: how many objects the graph holds (a hint: the key index's size).
 *   type_count     how many objects of each type the graph holds, kept by the apply.
 *
 * A sync compares as it stages: each object is looked up in the key index (memory) and
 * only new and changed ones are written, appended to the connection's TEMP table stage;
 * stored ones seen are bits in a bitmap indexed by rowid, counted per type, so counts
 * prove most listings complete without a scan. The plan (TEMP gone, then the sorted TEMP
 * plan) reads only; store_apply_plan() writes objects, digests and outbox rows in the
 * caller's transaction, each pass in (kind, key) order. Changed properties come from
 * canon_changed_properties(), registered as the SQL function tsg_changed.
 * The file is created 0600; PRAGMA application_id marks it as ours and user_version is the
 * schema version, migrated forward in one transaction and never backward.
 */
#include "tsgraphd/store.h"
#include "tsgraphd/canon.h"
#include "tsgraphd/sqldb.h"
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

#define STORE_CACHE_KIB		"4096" /* page cache of the stored graph: bounded, not the fleet */
#define BUSY_TIMEOUT_DEFAULT_MS 30000  /* when store_options leave it 0 */
#define STAGE_COMMIT_EVERY	8192   /* staged puts between two commits of the snapshot */

/* Pages of a new store and of the staging tables: a sync writes and reads tens of MiB in whole
 * pages, and 16 KiB pages take a third of the CPU of 4 KiB ones off a first sync (fewer
 * system calls, fewer B-tree splits); a store created with other pages keeps them. */
#define STORE_PAGE_SIZE "16384"

struct stored {
	int64_t id, rank; /* rank only when exact */
	size_t type;
	uint64_t digest; /* the first 64 bits of the stored hash */
	bool exact;	 /* read from the table: the key is certain and rank is known */
};

/* The stored graph's key index in memory: 64 bits of the key's hash → rowid, type and the
 * first 64 bits of the content hash; 24 bytes an object, loaded in one scan when a
 * snapshot starts. Two stored keys with the same 64-bit hash are marked ambiguous and
 * looked up in the table instead. */
struct kentry {
	uint64_t kh, digest;
	uint32_t id; /* 0: empty slot */
	uint8_t type;
	bool ambiguous;
};

/* What the snapshot has staged, in memory: 64 bits of each staged key's hash → its row in
 * temp.stage (row -1: retracted), 12 bytes an object, at most three quarters full. A hit is
 * confirmed against the row. */
struct sentry {
	uint64_t kh;
	int32_t row; /* 0: empty slot */
} __attribute__((packed));

struct store {
	sqlite3 *db;
	sqlite3_stmt *lookup, *stage_put, *stage_find;
	struct sentry *staged;
	size_t staged_cap, staged_used; /* a power of two; slots taken, retracted ones too */
	/* The snapshot in memory: one bit per stored rowid it has seen, and how many stored
	 * objects of each type that makes. Changed and new objects go to temp.stage. */
	uint64_t *seen;
	size_t seen_words;
	int64_t snapshot_seq; /* the outbox's last seq when the snapshot began */
	struct kentry *index;
	size_t index_cap; /* a power of two; 0: no index, every lookup goes to the table */
	struct {
		char name[GRAPH_TYPE_MAX];
		int64_t seen, stored;
	} types[STORE_TYPES_MAX];
	size_t n_types;
	bool types_stored; /* types[].stored counts the snapshot's stored graph */
	bool staging;	   /* the snapshot's own transaction is open */
	bool last_valid;   /* the last lookup, answered again for the same key */
	int last_r;
	char last_key[256];
	struct stored last;
	unsigned stage_puts; /* since that transaction began */
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
	/* 2: the owner (agent or alert) each object belongs to, and its rank among copies. */
	"ALTER TABLE object ADD COLUMN owner TEXT;"
	"ALTER TABLE object ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;"
	"UPDATE object SET owner = key WHERE type IN ('threatstack_agent', 'threatstack_alert');"
	"UPDATE object SET owner = from_key WHERE type IN"
	"  ('threatstack_agent_protects_aws_instance', 'threatstack_agent_protects_server');"
	"UPDATE object SET owner = to_key WHERE type IN ('threatstack_account_has_agent',"
	"  'threatstack_agent_identified_alert', 'threatstack_account_has_alert');"
	"CREATE INDEX object_owner ON object(owner) WHERE owner IS NOT NULL;"
	/* The rank graph.c gives an owner entity, from its stored JSON: an unchanged owner is
	 * settled against its stored rank, and 0 would let an older copy win. */
	"UPDATE object SET rank = coalesce(json_extract(json, '$.lastReportedAt'), 0)"
	"  WHERE type = 'threatstack_agent';"
	"UPDATE object SET rank = (SELECT a.rank FROM object a WHERE a.key = object.owner)"
	"  WHERE type IN ('threatstack_account_has_agent',"
	"  'threatstack_agent_protects_aws_instance', 'threatstack_agent_protects_server')"
	"  AND EXISTS (SELECT 1 FROM object a WHERE a.key = object.owner);"
	"UPDATE object SET rank = 1"
	"  WHERE type = 'threatstack_alert' AND json_extract(json, '$.dismissed') = 1;"
	/* The key index's source: one narrow row an object (the rowid, 64 bits of the key's
	 * hash and of the content hash), so loading it reads a few MiB, not the graph. */
	"CREATE TABLE object_digest (id INTEGER PRIMARY KEY, kh INTEGER NOT NULL,"
	"  digest INTEGER NOT NULL, type TEXT NOT NULL);"
	"INSERT INTO object_digest SELECT rowid, tsg_keyhash(key), tsg_digest(hash), type"
	"  FROM object;"
	/* A change's JSON is kept once: while the object still holds it, the outbox row only
	 * names the object (obj_id) and json stays NULL; it is copied into the row before the
	 * object changes again or goes. */
	"ALTER TABLE outbox ADD COLUMN obj_id INTEGER;"
	"CREATE INDEX outbox_obj ON outbox(obj_id) WHERE json IS NULL;",
	/* 3: each sink's last delivery and last failure, for status and the daemon's health. */
	"ALTER TABLE sink_cursor ADD COLUMN last_ok INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sink_cursor ADD COLUMN last_error TEXT;"
	"ALTER TABLE sink_cursor ADD COLUMN last_error_at INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sink_cursor ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;",
	/* 4: counts per type come from the key index (memory) or object_digest: an index on
	 * object(type) was one more B-tree written per object. */
	"DROP INDEX object_type;",
	/* 5: how many objects the graph holds, kept by the apply: the key index is sized from it
	 * at once instead of counting the table or growing as it loads. */
	/* (in parentheses: clang's -Wstring-concatenation takes two literals beside one-literal
	 * rows for a missing comma, and make fuzz builds with clang -Werror) */
	("CREATE TABLE meta (objects INTEGER NOT NULL);"
	 "INSERT INTO meta SELECT count(*) FROM object;"),
	/* 6: how many objects of each type, kept by the apply: status, the daemon's STATUS=
	 * and a refresh's snapshot (which loads no key index) count without a scan. */
	("CREATE TABLE type_count (type TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;"
	 "INSERT INTO type_count SELECT type, count(*) FROM object_digest GROUP BY type;"),
	/* 7: the job a sink has open, so that one a stopped or killed process left open is
	 * aborted by the next instead of waiting for JupiterOne to expire it. */
	"ALTER TABLE sink_cursor ADD COLUMN open_job TEXT;",
};

/* What one sync stages: only new and changed objects (old: the stored rowid it updates), in
 * arrival order (appending is cheap; kh, the key's 64-bit hash, finds a staged key again);
 * which listings and owners it enumerated completely; the rowids it deletes; and the plan,
 * the staged objects sorted by kind and key once staging is over, so that every pass of the
 * apply reads it in order instead of seeking row by row; the keys another writer changed
 * while this snapshot was staged (leave_newer()). */
static const char temp_schema[] =
	"CREATE TEMP TABLE IF NOT EXISTS stage ("
	"  kh INTEGER NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL,"
	"  class TEXT NOT NULL, from_key TEXT, to_key TEXT, owner TEXT, json TEXT NOT NULL,"
	"  hash TEXT NOT NULL, rank INTEGER NOT NULL, old INTEGER);"
	"CREATE INDEX IF NOT EXISTS temp.stage_owner ON stage(owner) WHERE owner IS NOT NULL;"
	"CREATE TEMP TABLE IF NOT EXISTS plan ("
	"  kind TEXT NOT NULL, key TEXT NOT NULL, type TEXT NOT NULL, class TEXT NOT NULL,"
	"  from_key TEXT, to_key TEXT, owner TEXT, json TEXT NOT NULL, hash TEXT NOT NULL,"
	"  rank INTEGER NOT NULL, old INTEGER, changed TEXT,"
	"  PRIMARY KEY (kind, key)) WITHOUT ROWID;"
	"CREATE INDEX IF NOT EXISTS temp.plan_old ON plan(old) WHERE old IS NOT NULL;"
	"CREATE TEMP TABLE IF NOT EXISTS complete (type TEXT PRIMARY KEY, grp TEXT NOT NULL,"
	"  is_primary INTEGER NOT NULL) WITHOUT ROWID;"
	"CREATE TEMP TABLE IF NOT EXISTS complete_owner (owner TEXT PRIMARY KEY) WITHOUT ROWID;"
	"CREATE TEMP TABLE IF NOT EXISTS gone (id INTEGER PRIMARY KEY);"
	"CREATE TEMP TABLE IF NOT EXISTS newer (key TEXT PRIMARY KEY) WITHOUT ROWID;";

static const struct sqldb_schema schema = {
	.what = "store",
	.application_id = STORE_APPLICATION_ID,
	.migrations = migrations,
	.n_migrations = ARRAY_SIZE(migrations),
};
_Static_assert(STORE_ERR_MAX == SQLDB_ERR_MAX, "store messages are sqldb messages");

static int exec(struct store *s, const char *sql)
{
	return sqldb_exec(s->db, sql);
}

const char *store_errmsg(struct store *s)
{
	return s && s->db ? sqlite3_errmsg(s->db) : "no store";
}

static int prepare(struct store *s, const char *sql, sqlite3_stmt **ret)
{
	return sqldb_prepare(s->db, sql, ret);
}

static int query_int_arg(struct store *s, const char *sql, const char *arg, int64_t *ret)
{
	return sqldb_query_int(s->db, sql, arg, ret);
}

static int query_int(struct store *s, const char *sql, int64_t *ret)
{
	return sqldb_query_int(s->db, sql, NULL, ret);
}

static uint64_t key_hash(const char *key);
static uint64_t hex_digest(const char *hex);
static void sql_staged(sqlite3_context *ctx, int argc, sqlite3_value **argv);

/* SQL: tsg_keyhash(key) and tsg_digest(hex hash), the key index's two numbers. */
static void sql_keyhash(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const char *v = (const char *)sqlite3_value_text(argv[0]);

	(void)argc;
	sqlite3_result_int64(ctx, (sqlite3_int64)key_hash(v ? v : ""));
}

static void sql_digest(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	const char *v = (const char *)sqlite3_value_text(argv[0]);

	(void)argc;
	sqlite3_result_int64(ctx, (sqlite3_int64)hex_digest(v ? v : ""));
}

/* SQL: tsg_changed(old_json, new_json) → JSON array of changed top-level properties. */
static void sql_changed(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	struct buf b;
	int r;

	(void)argc;
	buf_init(&b, STORE_CHANGED_LIST_MAX);
	r = canon_changed_properties((const char *)sqlite3_value_text(argv[0]),
				     (const char *)sqlite3_value_text(argv[1]), &b);
	if (r < 0) {
		buf_free(&b);
		sqlite3_result_error(ctx, "tsg_changed: not comparable JSON objects", -1);
		return;
	}
	sqlite3_result_text(ctx, b.data ? b.data : "[]", -1, SQLITE_TRANSIENT);
	buf_free(&b);
}

static int register_functions(struct store *s)
{
	static const struct {
		const char *name;
		int args;
		void (*fn)(sqlite3_context *, int, sqlite3_value **);
	} fns[] = {
		{ "tsg_changed", 2, sql_changed },
		{ "tsg_keyhash", 1, sql_keyhash },
		{ "tsg_digest", 1, sql_digest },
	};
	int r = 0;

	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(fns); i++)
		r = sqldb_errno(sqlite3_create_function(s->db, fns[i].name, fns[i].args,
							SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
							fns[i].fn, NULL, NULL));
	/* Not deterministic: it reads the snapshot's staged set. */
	if (r == 0)
		r = sqldb_errno(sqlite3_create_function(s->db, "tsg_staged", 1, SQLITE_UTF8, s,
							sql_staged, NULL, NULL));
	return r;
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
	/* An absolute path gets an empty authority, so "//x" is not read as host x. */
	r = buf_puts(&uri, path[0] == '/' ? "file://" : "file:");
	for (const char *q = path; r == 0 && *q; q++)
		r = strchr("%?#", *q) || (unsigned char)*q < 0x20
			    ? buf_printf(&uri, "%%%02X", (unsigned)(unsigned char)*q)
			    : buf_append(&uri, q, 1);
	if (r == 0)
		r = buf_puts(&uri, access(wal, F_OK) == 0 ? "?mode=ro" : "?mode=ro&immutable=1");
	if (r == 0)
		r = sqldb_errno(sqlite3_open_v2(
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
	int r = sqldb_identify(s->db, &schema, &app, &version, err);

	if (r == 0 && version != (int64_t)ARRAY_SIZE(migrations)) {
		snprintf(err, STORE_ERR_MAX,
			 "schema version %lld is older than this build's (%zu): run 'tsgraphd sync'"
			 " once to migrate it",
			 (long long)version, ARRAY_SIZE(migrations));
		r = -EPROTONOSUPPORT;
	}
	return r;
}

int store_open(const char *path, const struct store_options *opt, struct store **ret,
	       char err[static STORE_ERR_MAX])
{
	struct store *s = NULL;
	sqlite3 *src = NULL; /* read_only: the file's connection, unless missing */
	char msg[STORE_ERR_MAX] = "";
	bool memory = false;
	int r;

	err[0] = '\0';
	r = opt->read_only ? open_read_only(path, opt, &src, &memory, msg)
			   : sqldb_prepare_file(path, opt->memory_if_missing, opt->must_exist,
						&memory, msg);
	if (r < 0)
		goto out;
	s = calloc(1, sizeof(*s));
	if (!s) {
		r = -ENOMEM;
		goto out;
	}
	if (src) {
		s->db = src; /* status, dry runs: read the file itself; TEMP tables stay writable */
		src = NULL;
	} else {
		r = sqldb_errno(sqlite3_open_v2(
			memory ? ":memory:" : path, &s->db,
			SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL));
		if (r < 0) {
			snprintf(msg, sizeof(msg), "cannot open: %s",
				 s->db ? sqlite3_errmsg(s->db) : "out of memory");
			goto out;
		}
	}
	sqlite3_extended_result_codes(s->db, 1);
	sqlite3_busy_timeout(s->db, opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms
							     : BUSY_TIMEOUT_DEFAULT_MS);
	r = register_functions(s);
	if (r == 0 && !opt->read_only) /* no effect once the file holds a table */
		r = exec(s, "PRAGMA page_size = " STORE_PAGE_SIZE);
	if (r < 0) {
		snprintf(msg, sizeof(msg), "cannot set up: %s", sqlite3_errmsg(s->db));
		goto out;
	}
	r = opt->read_only && !memory ? check_schema(s, msg) : sqldb_migrate(s->db, &schema, msg);
	if (r < 0)
		goto out;
	/* WAL lets readers (status) run beside a sync's write. */
	if (!memory && !opt->read_only) {
		r = sqldb_set_journal(s->db, opt->synchronous_full, msg);
		if (r < 0)
			goto out;
	}
	if (r == 0)
		r = exec(s, "PRAGMA foreign_keys = ON; PRAGMA temp_store = FILE;"
			    " PRAGMA temp.page_size = " STORE_PAGE_SIZE ";"
			    " PRAGMA cache_size = -" STORE_CACHE_KIB);
	if (r == 0)
		r = exec(s, temp_schema);
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

const char *store_lock_strerror(int r)
{
	return r == -EBUSY ? "another tsgraphd (run or sync) is using this store" : strerror(-r);
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
	sqlite3_finalize(s->lookup);
	sqlite3_finalize(s->stage_put);
	sqlite3_finalize(s->stage_find);
	free(s->seen);
	free(s->index);
	free(s->staged);
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

/* --- the snapshot ---------------------------------------------------------------------- */

static bool seen_test(const struct store *s, int64_t id)
{
	return id > 0 && (size_t)id / 64 < s->seen_words &&
	       (s->seen[id / 64] >> (id % 64) & 1) != 0;
}

static void seen_set(struct store *s, int64_t id, bool on)
{
	uint64_t bit = UINT64_C(1) << (id % 64);

	if (id <= 0 || (size_t)id / 64 >= s->seen_words)
		return;
	s->seen[id / 64] = on ? s->seen[id / 64] | bit : s->seen[id / 64] & ~bit;
}

/* The slot counting how many stored objects of this type the snapshot has seen. */
static int type_slot(struct store *s, const char *type, size_t *ret)
{
	size_t i;

	for (i = 0; i < s->n_types; i++)
		if (strcmp(s->types[i].name, type) == 0)
			break;
	if (i == s->n_types) {
		if (i == STORE_TYPES_MAX || strlen(type) >= sizeof(s->types[0].name))
			return -E2BIG;
		snprintf(s->types[i].name, sizeof(s->types[0].name), "%s", type);
		s->types[i].seen = s->types[i].stored = 0;
		s->n_types++;
	}
	*ret = i;
	return 0;
}

static int64_t type_seen(const struct store *s, const char *type)
{
	for (size_t i = 0; i < s->n_types; i++)
		if (strcmp(s->types[i].name, type) == 0)
			return s->types[i].seen;
	return 0;
}

static uint64_t key_hash(const char *key)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (; *key; key++)
		h = (h ^ (unsigned char)*key) * UINT64_C(1099511628211);
	return h ? h : 1;
}

/* The first 64 bits of a hex SHA-256. */
static uint64_t hex_digest(const char *hex)
{
	uint64_t d = 0;

	for (int i = 0; i < 16 && hex[i]; i++) {
		char c = hex[i];

		d = d << 4 | (uint64_t)(c >= 'a'   ? c - 'a' + 10
					: c >= 'A' ? c - 'A' + 10
						   : c - '0');
	}
	return d;
}

static int lookup_db(struct store *s, const char *key, struct stored *ret)
{
	sqlite3_stmt *st;
	const char *hash;
	int r, rc;

	if (!s->lookup) {
		r = prepare(s, "SELECT rowid, hash, rank, type FROM object WHERE key = ?1",
			    &s->lookup);
		if (r < 0)
			return r;
	}
	st = s->lookup;
	r = sqldb_bind_text(st, 1, key);
	if (r < 0)
		goto out;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW) {
		r = rc == SQLITE_DONE ? -ENOENT : sqldb_errno(rc);
		goto out;
	}
	hash = sqldb_col_text(st, 1);
	ret->id = sqlite3_column_int64(st, 0);
	ret->rank = sqlite3_column_int64(st, 2);
	ret->digest = hex_digest(hash ? hash : "");
	ret->exact = true;
	r = type_slot(s, sqldb_col_text(st, 3), &ret->type);
out:
	sqlite3_reset(st);
	return r;
}

static struct kentry *index_slot(struct store *s, uint64_t kh)
{
	size_t mask = s->index_cap - 1;

	for (size_t i = kh & mask;; i = (i + 1) & mask)
		if (!s->index[i].id || s->index[i].kh == kh)
			return &s->index[i];
}

/* One scan of the stored graph into the key index. Without memory for it, lookups go to
 * the table: slower, same answers. */
/* Doubles the key index (kept at most two thirds full). */
static int index_grow(struct store *s)
{
	size_t cap = s->index_cap ? s->index_cap * 2 : 1024;
	struct kentry *old = s->index, *t = calloc(cap, sizeof(*t));
	size_t old_cap = s->index_cap;

	if (!t)
		return -ENOMEM;
	s->index = t;
	s->index_cap = cap;
	for (size_t i = 0; i < old_cap; i++)
		if (old[i].id)
			*index_slot(s, old[i].kh) = old[i];
	free(old);
	return 0;
}

static void index_drop(struct store *s)
{
	free(s->index);
	s->index = NULL;
	s->index_cap = 0;
}

/* Each type's stored count from type_count, for a snapshot without the key index. */
static int types_from_counts(struct store *s)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT type, n FROM type_count", &st), rc = SQLITE_DONE;

	s->n_types = 0;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		size_t t;

		r = type_slot(s, sqldb_col_text(st, 0) ? sqldb_col_text(st, 0) : "", &t);
		if (r == 0)
			s->types[t].stored = sqlite3_column_int64(st, 1);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sqldb_errno(rc);
	s->types_stored = r == 0;
	return r;
}

/* One scan of object_digest, without counting it first (a count reads the table too). */
static int index_load(struct store *s)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	size_t used = 0, type = SIZE_MAX;
	int64_t hint = 0;
	int r, rc = SQLITE_DONE;

	index_drop(s);
	s->types_stored = false;
	r = query_int(s, "SELECT objects FROM meta", &hint);
	while (r == 0 && (size_t)hint < SIZE_MAX / 4 && s->index_cap * 2 < (size_t)hint * 3 + 3)
		r = index_grow(s);
	if (r == 0)
		r = prepare(s, "SELECT id, kh, digest, type FROM object_digest", &st);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		uint64_t kh = (uint64_t)sqlite3_column_int64(st, 1);
		const char *name = sqldb_col_text(st, 3);
		struct kentry *e;

		if (id <= 0 || id > UINT32_MAX) {
			r = -ERANGE; /* rowids beyond 32 bits: no index */
			break;
		}
		if (!name) {
			r = -ENOMEM;
			break;
		}
		/* Rows of one type come in runs: the last type is the likely one. */
		if (type == SIZE_MAX || strcmp(s->types[type].name, name) != 0)
			r = type_slot(s, name, &type);
		if (r < 0)
			break;
		s->types[type].stored++;
		if ((used + 1) * 3 > s->index_cap * 2 && (r = index_grow(s)) < 0)
			break;
		e = index_slot(s, kh);
		if (e->id) {
			e->ambiguous = true;
			continue;
		}
		*e = (struct kentry){ .kh = kh,
				      .digest = (uint64_t)sqlite3_column_int64(st, 2),
				      .id = (uint32_t)id,
				      .type = (uint8_t)type };
		used++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sqldb_errno(rc);
	s->types_stored = r == 0;
	/* Without the index every lookup reads the table: slower, still right; the counts come
	 * from type_count, read now, in this snapshot, as the index would have given them. */
	if (r == -ERANGE || r == -ENOMEM) {
		index_drop(s);
		r = types_from_counts(s);
	}
	return r;
}

/* The stored object of this key: -ENOENT when there is none. From the key index when it
 * is certain enough (ret->exact false: a 64-bit key hash matched), else from the table.
 * The last answer is kept: an owner entity is looked up to settle it and again to stage. */
static int lookup(struct store *s, const char *key, struct stored *ret)
{
	size_t len;
	int r;

	if (s->last_valid && strcmp(s->last_key, key) == 0) {
		*ret = s->last;
		return s->last_r;
	}
	if (s->index_cap) {
		const struct kentry *e = index_slot(s, key_hash(key));

		r = !e->id ? -ENOENT : e->ambiguous ? lookup_db(s, key, ret) : 0;
		if (e->id && !e->ambiguous)
			*ret = (struct stored){ .id = e->id, .type = e->type, .digest = e->digest };
	} else {
		r = lookup_db(s, key, ret);
	}
	len = strlen(key);
	s->last_valid = len < sizeof(s->last_key);
	if (s->last_valid) {
		memcpy(s->last_key, key, len + 1);
		s->last = *ret;
		s->last_r = r;
	}
	return r;
}

/* The table's answer when the index's may be wrong or lacks the rank. */
static int lookup_exact(struct store *s, const char *key, struct stored *ret)
{
	int r;

	if (ret->exact)
		return 0;
	r = lookup_db(s, key, ret);
	if (s->last_valid && strcmp(s->last_key, key) == 0) {
		s->last = *ret;
		s->last_r = r;
	}
	return r;
}

/* A snapshot; whole: of the whole graph (the key index loaded, to compare every object),
 * else of a few owners (each lookup reads the table). */
static int snapshot_start(struct store *s, bool whole)
{
	int64_t max_id = 0;
	size_t words;
	int r;

	s->last_valid = false;
	s->n_types = 0;
	if (s->staged)
		memset(s->staged, 0, s->staged_cap * sizeof(*s->staged));
	s->staged_used = 0;
	r = exec(s, "DELETE FROM temp.stage; DELETE FROM temp.plan; DELETE FROM temp.complete;"
		    " DELETE FROM temp.complete_owner; DELETE FROM temp.gone;");
	/* Staging writes only TEMP tables: a deferred transaction batches them without taking
	 * the store's write lock, and reads the stored graph as one snapshot. */
	if (r == 0 && !s->staging) {
		r = exec(s, "BEGIN");
		s->staging = r == 0;
		s->stage_puts = 0;
	}
	if (r == 0)
		r = query_int(s, "SELECT coalesce(max(rowid), 0) FROM object", &max_id);
	if (r == 0)
		r = query_int(s, "SELECT coalesce(max(seq), 0) FROM outbox", &s->snapshot_seq);
	if (r == 0 && whole)
		r = index_load(s);
	if (!whole) {
		index_drop(s);
		s->types_stored = false;
	}
	if (r < 0)
		return r;
	words = (size_t)max_id / 64 + 1;
	free(s->seen);
	s->seen = calloc(words, sizeof(*s->seen));
	s->seen_words = s->seen ? words : 0;
	return s->seen ? 0 : -ENOMEM;
}

int store_snapshot_reset(struct store *s)
{
	return snapshot_start(s, true);
}

int store_snapshot_reset_owners(struct store *s)
{
	return snapshot_start(s, false);
}

static int staged_add(struct store *s, uint64_t kh, int64_t row)
{
	size_t m;

	if (row <= 0 || row > INT32_MAX)
		return -EOVERFLOW; /* two billion staged rows: beyond any listing's bounds */
	if ((s->staged_used + 1) * 4 > s->staged_cap * 3) {
		size_t cap = s->staged_cap ? s->staged_cap * 2 : 4096;
		struct sentry *t = calloc(cap, sizeof(*t)), *old = s->staged;

		if (!t)
			return -ENOMEM;
		s->staged_used = 0;
		for (size_t i = 0; i < s->staged_cap; i++) {
			if (old[i].row <= 0) /* empty, or retracted: dropped */
				continue;
			for (m = old[i].kh & (cap - 1); t[m].row; m = (m + 1) & (cap - 1))
				;
			t[m] = old[i];
			s->staged_used++;
		}
		free(old);
		s->staged = t;
		s->staged_cap = cap;
	}
	for (m = kh & (s->staged_cap - 1); s->staged[m].row; m = (m + 1) & (s->staged_cap - 1))
		;
	s->staged[m] = (struct sentry){ .kh = kh, .row = (int32_t)row };
	s->staged_used++;
	return 0;
}

/* Whether a key is staged already (a new key listed twice keeps its first copy), and its
 * rank: each slot with the key's hash is confirmed against its staged row. */
static int stage_has(struct store *s, uint64_t kh, const char *kind, const char *key,
		     int64_t *ret_rank)
{
	sqlite3_stmt *st;
	int r = 0, rc;

	if (!s->staged_cap)
		return 0;
	if (!s->stage_find &&
	    (r = prepare(s, "SELECT kind, key, rank FROM temp.stage WHERE rowid = ?1",
			 &s->stage_find)) < 0)
		return r;
	st = s->stage_find;
	for (size_t m = kh & (s->staged_cap - 1); s->staged[m].row;
	     m = (m + 1) & (s->staged_cap - 1)) {
		if (s->staged[m].kh != kh || s->staged[m].row < 0)
			continue;
		r = sqldb_errno(sqlite3_bind_int64(st, 1, s->staged[m].row));
		rc = r == 0 ? sqlite3_step(st) : SQLITE_OK;
		if (rc == SQLITE_ROW && strcmp(sqldb_col_text(st, 0), kind) == 0 &&
		    strcmp(sqldb_col_text(st, 1), key) == 0) {
			if (ret_rank)
				*ret_rank = sqlite3_column_int64(st, 2);
			r = 1;
		} else if (r == 0 && rc != SQLITE_ROW) {
			r = sqldb_errno(rc == SQLITE_DONE ? SQLITE_CORRUPT : rc);
		}
		sqlite3_reset(st);
		if (r != 0)
			return r;
	}
	return 0;
}

/* Drops the staged rows of an owner from the set (before they leave temp.stage). */
static int staged_forget_owner(struct store *s, const char *owner)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT rowid, kh FROM temp.stage WHERE owner = ?1", &st), rc;

	if (r == 0)
		r = sqldb_bind_text(st, 1, owner);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t row = sqlite3_column_int64(st, 0);
		uint64_t kh = (uint64_t)sqlite3_column_int64(st, 1);

		for (size_t m = kh & (s->staged_cap - 1); s->staged_cap && s->staged[m].row;
		     m = (m + 1) & (s->staged_cap - 1))
			if (s->staged[m].row == row) {
				s->staged[m].row = -1; /* a tombstone: probing goes on past it */
				break;
			}
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sqldb_errno(rc);
	return r;
}

/* SQL: tsg_staged(key), whether an object with the key's 64-bit hash is staged (the plan's
 * check of a relationship's ends: a collision could only keep one). */
static void sql_staged(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
	struct store *s = sqlite3_user_data(ctx);
	const char *v = (const char *)sqlite3_value_text(argv[0]);
	uint64_t kh = key_hash(v ? v : "");
	int found = 0;

	(void)argc;
	for (size_t m = kh & (s->staged_cap - 1); s->staged_cap && s->staged[m].row && !found;
	     m = (m + 1) & (s->staged_cap - 1))
		found = s->staged[m].kh == kh && s->staged[m].row > 0;
	sqlite3_result_int(ctx, found);
}

static int stage_insert(struct store *s, const struct graph_object *o, const char *json,
			const char *hash, int64_t old_id)
{
	static const char sql[] =
		"INSERT INTO temp.stage (kh, kind, key, type, class, from_key, to_key, owner, json,"
		"  hash, rank, old) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
	bool rel = o->kind == GRAPH_RELATIONSHIP;
	const char *kind = rel ? "relationship" : "entity";
	uint64_t kh = key_hash(o->key);
	const char *to_key = NULL;
	sqlite3_stmt *st;
	int r;

	/* A stored key is staged once (its row's seen bit); a new one is checked here. */
	if (!old_id && (r = stage_has(s, kh, kind, o->key, NULL)) != 0)
		return r < 0 ? r : 0;
	/* Only an explicit relationship's target is ours; a mapped one's is matched elsewhere. */
	if (rel && !o->mapped)
		to_key = o->to_key;
	if (!s->stage_put && (r = prepare(s, sql, &s->stage_put)) < 0)
		return r;
	st = s->stage_put;
	r = sqldb_errno(sqlite3_bind_int64(st, 1, (sqlite3_int64)kh));
	if (r == 0)
		r = sqldb_bind_text(st, 2, kind);
	if (r == 0)
		r = sqldb_bind_text(st, 3, o->key);
	if (r == 0)
		r = sqldb_bind_text(st, 4, o->type);
	if (r == 0)
		r = sqldb_bind_text(st, 5, o->class);
	if (r == 0)
		r = sqldb_bind_text(st, 6, rel ? o->from_key : NULL);
	if (r == 0)
		r = sqldb_bind_text(st, 7, to_key);
	if (r == 0)
		r = sqldb_bind_text(st, 8, o->owner);
	if (r == 0)
		r = sqldb_bind_text(st, 9, json);
	if (r == 0)
		r = sqldb_bind_text(st, 10, hash);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 11, o->rank));
	if (r == 0)
		r = sqldb_errno(old_id ? sqlite3_bind_int64(st, 12, old_id)
				       : sqlite3_bind_null(st, 12));
	if (r == 0)
		r = sqldb_step_done(st);
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	if (r == 0)
		r = staged_add(s, kh, sqlite3_last_insert_rowid(s->db));
	return r;
}

int store_snapshot_end(struct store *s)
{
	/* Once the snapshot ends, another connection may change the counts it cached. */
	s->types_stored = false;
	if (!s->staging)
		return 0;
	s->staging = false;
	return exec(s, "COMMIT");
}

int store_snapshot_put(struct store *s, const struct graph_object *o, const char *json,
		       const char *hash)
{
	struct stored old;
	int r;

	if (!o->key || !o->type || !o->class || !json || !hash)
		return -EINVAL;
	/* Now and then let the store's WAL move on. Another connection may have written the
	 * graph meanwhile (the daemon's refreshes): the rowids this snapshot has seen may then
	 * name other objects, all of them under keys the outbox names since the snapshot
	 * began, which the apply leaves alone (leave_newer()). */
	if (s->staging && ++s->stage_puts >= STAGE_COMMIT_EVERY) {
		s->stage_puts = 0;
		r = exec(s, "COMMIT; BEGIN");
		if (r < 0)
			return r;
	}
	r = lookup(s, o->key, &old);
	/* A change, a key seen twice, or a key-hash collision (which can look like either). */
	if (r == 0 && (seen_test(s, old.id) || old.digest != hex_digest(hash)))
		r = lookup_exact(s, o->key, &old);
	if (r == -ENOENT)
		return stage_insert(s, o, json, hash, 0);
	if (r < 0)
		return r;
	/* A key seen twice keeps its first copy: owners were settled by rank before. */
	if (seen_test(s, old.id))
		return 0;
	seen_set(s, old.id, true);
	s->types[old.type].seen++;
	if (old.digest == hex_digest(hash))
		return 0;
	return stage_insert(s, o, json, hash, old.id);
}

/* Forgets what the snapshot holds of an owner: its stored objects are unseen again and
 * its staged changes dropped. */
static int retract(struct store *s, const char *owner)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_stmt_ sqlite3_stmt *del = NULL;
	int r, rc;

	r = prepare(s, "SELECT rowid, type FROM object WHERE owner = ?1", &st);
	if (r == 0)
		r = sqldb_bind_text(st, 1, owner);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		size_t slot;

		if (!seen_test(s, id))
			continue;
		r = type_slot(s, sqldb_col_text(st, 1), &slot);
		if (r == 0) {
			seen_set(s, id, false);
			s->types[slot].seen--;
		}
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sqldb_errno(rc);
	if (r == 0)
		r = staged_forget_owner(s, owner);
	if (r == 0)
		r = prepare(s, "DELETE FROM temp.stage WHERE owner = ?1", &del);
	if (r == 0)
		r = sqldb_bind_text(del, 1, owner);
	return r < 0 ? r : sqldb_step_done(del);
}

int store_snapshot_owner(struct store *s, const char *owner, int64_t rank, bool *ret_take)
{
	struct stored old;
	int64_t prev = 0;
	bool seen = false;
	int r;

	r = stage_has(s, key_hash(owner), "entity", owner, &prev);
	if (r < 0)
		return r;
	seen = r == 1;
	if (!seen) {
		r = lookup(s, owner, &old);
		if (r == 0 && seen_test(s, old.id)) {
			r = lookup_exact(s, owner, &old);
			seen = r == 0;
			prev = old.rank;
		}
		if (r < 0 && r != -ENOENT)
			return r;
	}
	if (seen && rank <= prev) {
		*ret_take = false;
		return 0;
	}
	if (seen && (r = retract(s, owner)) < 0)
		return r;
	*ret_take = true;
	return 0;
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
		r = sqldb_bind_text(st, 1, types[i]);
		if (r == 0)
			r = sqldb_bind_text(st, 2, group);
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int(st, 3, i == 0));
		if (r == 0)
			r = sqldb_step_done(st);
	}
	return r;
}

int store_snapshot_complete_owner(struct store *s, const char *owner)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "INSERT OR IGNORE INTO temp.complete_owner (owner) VALUES (?1)", &st);

	if (r == 0)
		r = sqldb_bind_text(st, 1, owner);
	return r < 0 ? r : sqldb_step_done(st);
}

int store_snapshot_incomplete(struct store *s, const char *group)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "DELETE FROM temp.complete WHERE grp = ?1", &st);

	if (r == 0)
		r = sqldb_bind_text(st, 1, group);
	return r < 0 ? r : sqldb_step_done(st);
}

int store_snapshot_count(struct store *s, int64_t *ret)
{
	return query_int(s, "SELECT count(*) FROM temp.stage", ret);
}

int store_type_count(struct store *s, const char *type, int64_t *ret)
{
	if (s->types_stored) {
		*ret = 0;
		for (size_t i = 0; i < s->n_types; i++)
			if (strcmp(s->types[i].name, type) == 0)
				*ret = s->types[i].stored;
		return 0;
	}
	return query_int_arg(s, "SELECT coalesce((SELECT n FROM type_count WHERE type = ?1), 0)",
			     type, ret);
}

int store_missing_counts(struct store *s, store_missing_fn fn, void *ud)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT grp, type FROM temp.complete WHERE is_primary ORDER BY grp",
			&st),
	    rc;

	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *type = sqldb_col_text(st, 1);
		int64_t stored = 0;

		r = store_type_count(s, type, &stored);
		if (r == 0)
			r = fn(sqldb_col_text(st, 0), type, stored, stored - type_seen(s, type),
			       ud);
		if (r != 0)
			return r;
	}
	return sqldb_errno(rc);
}

/* Marks for deletion the stored objects that the select (?1 bound to arg) lists and the
 * snapshot has not seen. */
static int mark_unseen(struct store *s, const char *select, const char *arg)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	_cleanup_stmt_ sqlite3_stmt *ins = NULL;
	int r, rc;

	r = prepare(s, select, &st);
	if (r == 0)
		r = sqldb_bind_text(st, 1, arg);
	if (r == 0)
		r = prepare(s, "INSERT OR IGNORE INTO temp.gone (id) VALUES (?1)", &ins);
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);

		if (seen_test(s, id))
			continue;
		sqlite3_reset(ins);
		r = sqldb_errno(sqlite3_bind_int64(ins, 1, id));
		if (r == 0)
			r = sqldb_step_done(ins);
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sqldb_errno(rc);
	return r;
}

/* Each row of the query (one text column) handed to fn; the query runs to its end first,
 * so fn may write the tables it read. */
static int each_text(struct store *s, const char *sql, int (*fn)(struct store *, const char *),
		     int64_t max)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	char **v = NULL;
	size_t n = 0;
	int r, rc;

	r = prepare(s, sql, &st);
	if (r == 0 && max > 0)
		v = calloc((size_t)max, sizeof(*v));
	if (r == 0 && max > 0 && !v)
		r = -ENOMEM;
	while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW && n < (size_t)max)
		if (!(v[n++] = strdup(sqldb_col_text(st, 0))))
			r = -ENOMEM;
	for (size_t i = 0; r == 0 && i < n; i++)
		r = fn(s, v[i]);
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return r;
}

static int plan_type(struct store *s, const char *type)
{
	int64_t stored = 0;
	int r = store_type_count(s, type, &stored);

	/* Counts prove nothing is missing: no scan. */
	if (r < 0 || stored <= type_seen(s, type))
		return r;
	return mark_unseen(s, "SELECT id FROM object_digest WHERE type = ?1", type);
}

static int plan_owner(struct store *s, const char *owner)
{
	return mark_unseen(s, "SELECT rowid FROM object WHERE owner = ?1", owner);
}

int store_plan_deletes(struct store *s)
{
	/* Relationships of relationships do not exist, so one cascade step reaches them all. */
	static const char cascade[] =
		"INSERT OR IGNORE INTO temp.gone (id)"
		" SELECT r.rowid FROM temp.gone g CROSS JOIN object e ON e.rowid = g.id"
		"  CROSS JOIN object r ON r.from_key = e.key WHERE e.kind = 'entity'"
		" UNION SELECT r.rowid FROM temp.gone g CROSS JOIN object e ON e.rowid = g.id"
		"  CROSS JOIN object r ON r.to_key = e.key WHERE e.kind = 'entity'";
	/* A staged relationship whose end is neither staged nor surviving in the store would
	 * point at nothing (say, a vulnerability names an agent the agent listing lacked).
	 * A staged end is found by its key's 64-bit hash alone: a collision could only keep a
	 * relationship, never drop one. */
	static const char prune[] =
		"DELETE FROM temp.stage WHERE kind = 'relationship' AND ("
		"  (from_key IS NOT NULL AND NOT tsg_staged(stage.from_key)"
		"   AND NOT EXISTS (SELECT 1 FROM object o WHERE o.key = stage.from_key"
		"     AND o.rowid NOT IN (SELECT id FROM temp.gone)))"
		" OR (to_key IS NOT NULL AND NOT tsg_staged(stage.to_key)"
		"   AND NOT EXISTS (SELECT 1 FROM object o WHERE o.key = stage.to_key"
		"     AND o.rowid NOT IN (SELECT id FROM temp.gone))))";
	/* One sort, so that the apply's passes read in order. */
	static const char sort[] =
		"DELETE FROM temp.plan;"
		"INSERT INTO temp.plan (kind, key, type, class, from_key, to_key, owner, json, "
		"hash,"
		"  rank, old)"
		" SELECT kind, key, type, class, from_key, to_key, owner, json, hash, rank, old"
		" FROM temp.stage ORDER BY kind, key;";
	int64_t n_types = 0, n_owners = 0, gone = 0;
	int r;

	r = exec(s, "DELETE FROM temp.gone");
	if (r == 0)
		r = query_int(s, "SELECT count(*) FROM temp.complete", &n_types);
	if (r == 0)
		r = query_int(s, "SELECT count(*) FROM temp.complete_owner", &n_owners);
	if (r == 0)
		r = each_text(s, "SELECT type FROM temp.complete ORDER BY type", plan_type,
			      n_types);
	if (r == 0)
		r = each_text(s, "SELECT owner FROM temp.complete_owner ORDER BY owner", plan_owner,
			      n_owners);
	if (r == 0)
		r = query_int(s, "SELECT count(*) FROM temp.gone", &gone);
	if (r == 0 && gone > 0)
		r = exec(s, cascade);
	if (r == 0)
		r = exec(s, prune);
	if (r == 0)
		r = exec(s, sort);
	return r;
}

/* The changes of the plan, as outbox rows: ?1 source, ?2 now, ?3 run id, ?4 kind; one
 * SELECT per op (created, updated, deleted), each by key. A dry run lists these from the
 * snapshot; the apply writes the same rows, in the same order, from apply_selects. */
#define PLAN_COLS "op, kind, key, type, class, json, changed, source, created_at, run_id"
static const char *const plan_selects[] = {
	"SELECT 'create', n.kind, n.key, n.type, n.class, n.json, NULL, ?1, ?2, ?3"
	" FROM temp.plan n WHERE n.kind = ?4 AND n.old IS NULL ORDER BY n.key",
	"SELECT 'update', n.kind, n.key, n.type, n.class, n.json, tsg_changed(o.json, n.json),"
	"  ?1, ?2, ?3 FROM temp.plan n JOIN object o ON o.rowid = n.old"
	" WHERE n.kind = ?4 AND n.old NOT IN (SELECT id FROM temp.gone) ORDER BY n.key",
	"SELECT 'delete', o.kind, o.key, o.type, o.class, NULL, NULL, ?1, ?2, ?3"
	" FROM temp.gone g CROSS JOIN object o ON o.rowid = g.id WHERE o.kind = ?4 ORDER BY o.key",
};

/* Entities before the relationships that need them; relationships gone before the entities
 * they hang from. */
static const struct {
	int op; /* into plan_selects and apply_selects: 0 created, 1 updated, 2 deleted */
	const char *kind;
} plan_order[] = {
	{ 0, "entity" },       { 1, "entity" },	      { 0, "relationship" },
	{ 1, "relationship" }, { 2, "relationship" }, { 2, "entity" },
};

/* op, kind, key, type, class, json, changed and source from column first on. */
static struct outbox_row change_at(sqlite3_stmt *st, int first)
{
	return (struct outbox_row){
		.op = sqldb_col_text(st, first),
		.kind = sqldb_col_text(st, first + 1),
		.key = sqldb_col_text(st, first + 2),
		.type = sqldb_col_text(st, first + 3),
		.class = sqldb_col_text(st, first + 4),
		.json = sqldb_col_text(st, first + 5),
		.changed = sqldb_col_text(st, first + 6),
		.source = sqldb_col_text(st, first + 7),
	};
}

static int plan_bind(sqlite3_stmt *st, const char *source, int64_t now, int64_t run_id,
		     const char *kind)
{
	int r = sqldb_bind_text(st, 1, source);

	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 2, now));
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 3, run_id));
	if (r == 0)
		r = sqldb_bind_text(st, 4, kind);
	return r;
}

int store_plan_each(struct store *s, const char *source, store_outbox_fn fn, void *userdata)
{
	int r = 0, rc;

	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(plan_order); i++) {
		_cleanup_stmt_ sqlite3_stmt *st = NULL;

		r = prepare(s, plan_selects[plan_order[i].op], &st);
		if (r == 0)
			r = plan_bind(st, source, 0, 0, plan_order[i].kind);
		while (r == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
			struct outbox_row row = change_at(st, 0);

			r = fn(&row, userdata);
		}
		if (r == 0 && rc != SQLITE_DONE)
			r = sqldb_errno(rc);
	}
	return r;
}

int store_plan_size(struct store *s, int64_t *ret)
{
	return query_int(s,
			 "SELECT (SELECT count(*) FROM temp.plan) +"
			 " (SELECT count(*) FROM temp.gone)",
			 ret);
}

/* The apply's outbox rows for updates and deletes: plan_selects', naming the object that
 * holds their JSON instead of carrying it. Creates are written row by row with their
 * objects (apply_creates). */
static const char *const apply_selects[] = {
	NULL, /* created: apply_creates() */
	"SELECT 'update', n.kind, n.key, n.type, n.class, NULL, n.changed, ?1, ?2, ?3, n.old"
	" FROM temp.plan n WHERE n.kind = ?4 AND n.old IS NOT NULL"
	"  AND n.old NOT IN (SELECT id FROM temp.gone) ORDER BY n.key",
	"SELECT 'delete', o.kind, o.key, o.type, o.class, NULL, NULL, ?1, ?2, ?3, NULL"
	" FROM temp.gone g CROSS JOIN object o ON o.rowid = g.id WHERE o.kind = ?4 ORDER BY o.key",
};

static int meta_add(struct store *s, int64_t objects)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "UPDATE meta SET objects = max(0, objects + ?1)", &st);

	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 1, objects));
	return r < 0 ? r : sqldb_step_done(st);
}

/* The created objects of one kind, in one read of the plan: each row becomes its object,
 * its key index row and its outbox row (naming the object), in key order. */
static int apply_creates(struct store *s, const char *kind, const char *source, int64_t run_id,
			 int64_t now, int64_t *ret_count)
{
	/* A failed statement is not reset: finalized after the select (declared last, freed
	 * first), it leaves SQLite's own message for store_errmsg(). */
	_cleanup_stmt_ sqlite3_stmt *obj = NULL;
	_cleanup_stmt_ sqlite3_stmt *dig = NULL;
	_cleanup_stmt_ sqlite3_stmt *out = NULL;
	_cleanup_stmt_ sqlite3_stmt *sel = NULL;
	int64_t n = 0;
	int r, rc;

	r = prepare(s,
		    "SELECT key, type, class, from_key, to_key, owner, json, hash, rank"
		    " FROM temp.plan WHERE kind = ?1 AND old IS NULL ORDER BY key",
		    &sel);
	if (r == 0)
		r = prepare(s,
			    "INSERT INTO object (key, kind, type, class, from_key, to_key, owner,"
			    "  json, hash, rank, first_seen, updated_at)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
			    &obj);
	if (r == 0)
		r = prepare(
			s,
			"INSERT INTO object_digest (id, kh, digest, type) VALUES (?1, ?2, ?3, ?4)",
			&dig);
	if (r == 0)
		r = prepare(s,
			    "INSERT INTO outbox (" PLAN_COLS ", obj_id)"
			    " VALUES ('create', ?1, ?2, ?3, ?4, NULL, NULL, ?5, ?6, ?7, ?8)",
			    &out);
	if (r == 0)
		r = sqldb_bind_text(sel, 1, kind);
	while (r == 0 && (rc = sqlite3_step(sel)) == SQLITE_ROW) {
		const char *key = sqldb_col_text(sel, 0), *type = sqldb_col_text(sel, 1);
		int64_t id;

		/* Columns 0..8 of the plan row are the object's values 1, 3..10. */
		r = sqldb_errno(sqlite3_bind_value(obj, 1, sqlite3_column_value(sel, 0)));
		if (r == 0)
			r = sqldb_bind_text(obj, 2, kind);
		for (int i = 1; r == 0 && i <= 8; i++)
			r = sqldb_errno(
				sqlite3_bind_value(obj, i + 2, sqlite3_column_value(sel, i)));
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(obj, 11, now));
		if (r == 0)
			r = sqldb_step_done(obj);
		if (r < 0)
			break;
		sqlite3_reset(obj);
		id = sqlite3_last_insert_rowid(s->db);
		r = sqldb_errno(sqlite3_bind_int64(dig, 1, id));
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(dig, 2, (sqlite3_int64)key_hash(key)));
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(
				dig, 3, (sqlite3_int64)hex_digest(sqldb_col_text(sel, 7))));
		if (r == 0)
			r = sqldb_bind_text(dig, 4, type);
		if (r == 0)
			r = sqldb_step_done(dig);
		if (r < 0)
			break;
		sqlite3_reset(dig);
		if (r == 0)
			r = sqldb_bind_text(out, 1, kind);
		if (r == 0)
			r = sqldb_bind_text(out, 2, key);
		if (r == 0)
			r = sqldb_bind_text(out, 3, type);
		if (r == 0)
			r = sqldb_bind_text(out, 4, sqldb_col_text(sel, 2));
		if (r == 0)
			r = sqldb_bind_text(out, 5, source);
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(out, 6, now));
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(out, 7, run_id));
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(out, 8, id));
		if (r == 0)
			r = sqldb_step_done(out);
		if (r < 0)
			break;
		sqlite3_reset(out);
		n++;
	}
	if (r == 0 && rc != SQLITE_DONE)
		r = sqldb_errno(rc);
	*ret_count = n;
	return r;
}

/* Objects another writer changed since this snapshot began (a webhook refresh that ran
 * while a full sync fetched: the daemon's second connection) keep what that writer left:
 * their outbox rows name them. The plan drops them, and the rows it meant to delete that
 * are gone or were changed since; relationships whose end went with them follow. Costs one
 * probe of the outbox when nobody else wrote. */
static int leave_newer(struct store *s)
{
	static const char drop[] =
		"DELETE FROM temp.newer;"
		"INSERT OR IGNORE INTO temp.newer SELECT key FROM outbox WHERE seq > ?1;"
		/* a refresh replaces an owner whole: what it left unchanged of one is as new */
		"INSERT OR IGNORE INTO temp.newer SELECT o.owner FROM temp.newer n"
		"  CROSS JOIN object o ON o.key = n.key WHERE o.owner IS NOT NULL;"
		"INSERT OR IGNORE INTO temp.newer SELECT o.key FROM object o"
		"  WHERE o.owner IN (SELECT key FROM temp.newer);"
		"DELETE FROM temp.plan WHERE key IN (SELECT key FROM temp.newer)"
		"  OR owner IN (SELECT key FROM temp.newer);"
		"DELETE FROM temp.gone WHERE NOT EXISTS (SELECT 1 FROM object WHERE rowid = "
		"gone.id)"
		"  OR id IN (SELECT o.rowid FROM temp.newer n CROSS JOIN object o ON o.key = "
		"n.key);"
		/* the plan's cascade again: relationships written since that hang from a deleted
		 * entity go with it */
		"INSERT OR IGNORE INTO temp.gone (id)"
		" SELECT r.rowid FROM temp.gone g CROSS JOIN object e ON e.rowid = g.id"
		"  CROSS JOIN object r ON r.from_key = e.key WHERE e.kind = 'entity'"
		" UNION SELECT r.rowid FROM temp.gone g CROSS JOIN object e ON e.rowid = g.id"
		"  CROSS JOIN object r ON r.to_key = e.key WHERE e.kind = 'entity';"
		/* a relationship to an entity neither planned nor stored (anymore) */
		"DELETE FROM temp.plan WHERE kind = 'relationship' AND ("
		"  (from_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM temp.plan e"
		"    WHERE e.kind = 'entity' AND e.key = plan.from_key)"
		"   AND NOT EXISTS (SELECT 1 FROM object o WHERE o.key = plan.from_key"
		"    AND o.rowid NOT IN (SELECT id FROM temp.gone)))"
		" OR (to_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM temp.plan e"
		"    WHERE e.kind = 'entity' AND e.key = plan.to_key)"
		"   AND NOT EXISTS (SELECT 1 FROM object o WHERE o.key = plan.to_key"
		"    AND o.rowid NOT IN (SELECT id FROM temp.gone))));";
	const char *tail = drop;
	int r, rc;

	{
		_cleanup_stmt_ sqlite3_stmt *st = NULL;

		r = prepare(s, "SELECT 1 FROM outbox WHERE seq > ?1 LIMIT 1", &st);
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(st, 1, s->snapshot_seq));
		if (r < 0)
			return r;
		rc = sqlite3_step(st);
		if (rc != SQLITE_ROW) /* nobody else wrote */
			return rc == SQLITE_DONE ? 0 : sqldb_errno(rc);
	}
	while (r == 0 && *tail) {
		_cleanup_stmt_ sqlite3_stmt *st = NULL;

		r = sqldb_errno(sqlite3_prepare_v2(s->db, tail, -1, &st, &tail));
		if (r < 0 || !st)
			break;
		if (sqlite3_bind_parameter_count(st) > 0)
			r = sqldb_errno(sqlite3_bind_int64(st, 1, s->snapshot_seq));
		if (r == 0)
			r = sqldb_step_done(st);
	}
	return r;
}

/* Each type's count (type_count), from the plan before anything changes: deletions,
 * updates that change an object's type, creations. */
static int count_types(struct store *s)
{
	static const char *const deltas[] = {
		"SELECT d.type, -count(*) FROM temp.gone g CROSS JOIN object_digest d ON d.id = "
		"g.id"
		" WHERE true GROUP BY d.type",
		"SELECT d.type, -count(*) FROM temp.plan n CROSS JOIN object_digest d ON d.id = "
		"n.old"
		" WHERE n.old IS NOT NULL AND d.type != n.type AND n.old NOT IN (SELECT id FROM "
		"temp.gone)"
		" GROUP BY d.type",
		"SELECT n.type, count(*) FROM temp.plan n CROSS JOIN object_digest d ON d.id = "
		"n.old"
		" WHERE n.old IS NOT NULL AND d.type != n.type AND n.old NOT IN (SELECT id FROM "
		"temp.gone)"
		" GROUP BY n.type",
		"SELECT type, count(*) FROM temp.plan WHERE old IS NULL GROUP BY type",
	};
	int r = 0;

	/* (each SELECT has a WHERE: SQLite's upsert after a SELECT needs one) */
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(deltas); i++) {
		_cleanup_free_ char *sql = NULL;

		if (asprintf(&sql,
			     "INSERT INTO type_count (type, n) %s"
			     " ON CONFLICT (type) DO UPDATE SET n = n + excluded.n",
			     deltas[i]) < 0)
			return -ENOMEM;
		r = exec(s, sql);
	}
	return r;
}

int store_apply_plan(struct store *s, const char *source, int64_t run_id, int64_t now,
		     int64_t *ret_created, int64_t *ret_updated, int64_t *ret_deleted)
{
	/* Before any object changes: what changed in each update, and the JSON of earlier
	 * changes still naming an object that is about to change or go. */
	static const char before[] = "UPDATE temp.plan SET changed = tsg_changed("
				     "  (SELECT json FROM object WHERE rowid = plan.old), json)"
				     " WHERE old IS NOT NULL;"
				     "UPDATE outbox SET json = (SELECT b.json FROM object b WHERE "
				     "b.rowid = outbox.obj_id)"
				     " WHERE json IS NULL AND obj_id IN"
				     "  (SELECT old FROM temp.plan WHERE old IS NOT NULL UNION "
				     "ALL SELECT id FROM temp.gone);";
	static const char update[] =
		"UPDATE object SET kind = n.kind, type = n.type, class = n.class,"
		"  from_key = n.from_key, to_key = n.to_key, owner = n.owner, json = n.json,"
		"  hash = n.hash, rank = n.rank, updated_at = ?1"
		" FROM temp.plan n WHERE n.old = object.rowid";
	static const char digests[] =
		"UPDATE object_digest SET digest = tsg_digest(n.hash), type = n.type"
		" FROM temp.plan n WHERE n.old = object_digest.id;";
	static const char remove[] =
		"DELETE FROM object WHERE rowid IN (SELECT id FROM temp.gone);"
		"DELETE FROM object_digest WHERE id IN (SELECT id FROM temp.gone);";
	int64_t counts[3] = { 0, 0, 0 };
	int r;

	s->last_valid = false;	 /* rowids change below */
	s->types_stored = false; /* and the counts */
	r = leave_newer(s);
	if (r == 0)
		r = count_types(s);
	if (r == 0)
		r = exec(s, before);
	if (r == 0) {
		_cleanup_stmt_ sqlite3_stmt *st = NULL;

		r = prepare(s, update, &st);
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(st, 1, now));
		if (r == 0)
			r = sqldb_step_done(st);
	}
	if (r == 0)
		r = exec(s, digests);
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(plan_order); i++) {
		_cleanup_free_ char *sql = NULL;
		_cleanup_stmt_ sqlite3_stmt *st = NULL;
		int64_t n = 0;

		if (plan_order[i].op == 0) {
			r = apply_creates(s, plan_order[i].kind, source, run_id, now, &n);
			counts[0] += n;
			continue;
		}
		if (asprintf(&sql, "INSERT INTO outbox (" PLAN_COLS ", obj_id) %s",
			     apply_selects[plan_order[i].op]) < 0)
			return -ENOMEM;
		r = prepare(s, sql, &st);
		if (r == 0)
			r = plan_bind(st, source, now, run_id, plan_order[i].kind);
		if (r == 0)
			r = sqldb_step_done(st);
		if (r == 0)
			counts[plan_order[i].op] += sqlite3_changes64(s->db);
	}
	if (r == 0)
		r = exec(s, remove);
	if (r == 0)
		r = meta_add(s, counts[0] - counts[2]);
	if (r < 0)
		return r;
	*ret_created = counts[0];
	*ret_updated = counts[1];
	*ret_deleted = counts[2];
	return 0;
}

/* Outbox rows as the sinks read them (the JSON from the object while it holds it), from a
 * query taking up to three integer parameters (those it names are bound, in order). */
#define OUTBOX_SELECT                                                                   \
	"SELECT o.seq, o.op, o.kind, o.key, o.type, o.class, coalesce(o.json, b.json)," \
	" o.changed, o.source, o.created_at"                                            \
	" FROM outbox o LEFT JOIN object b ON o.json IS NULL AND b.rowid = o.obj_id"

static int outbox_rows(struct store *s, const char *sql, const int64_t args[static 3],
		       store_outbox_fn fn, void *userdata)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, sql, &st), rc;

	for (int i = 0; r == 0 && i < sqlite3_bind_parameter_count(st) && i < 3; i++)
		r = sqldb_errno(sqlite3_bind_int64(st, i + 1, args[i]));
	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct outbox_row row = change_at(st, 1);

		row.seq = sqlite3_column_int64(st, 0);
		row.created_at = sqlite3_column_int64(st, 9);
		r = fn(&row, userdata);
		if (r != 0)
			return r;
	}
	return sqldb_errno(rc);
}

int store_outbox_each(struct store *s, int64_t after_seq, int64_t limit, store_outbox_fn fn,
		      void *userdata)
{
	const int64_t args[3] = { after_seq, limit };

	return outbox_rows(s, OUTBOX_SELECT " WHERE o.seq > ?1 ORDER BY o.seq LIMIT ?2", args, fn,
			   userdata);
}

int store_outbox_latest_each(struct store *s, int64_t after_seq, int64_t upto_seq, int64_t limit,
			     store_outbox_fn fn, void *userdata)
{
	/* seq is the rowid: the group's max(seq) values are looked up, not scanned for. The
	 * grouping runs in SQLite's temp store (a file), not in our memory. */
	const int64_t args[3] = { after_seq, upto_seq, limit };

	return outbox_rows(s,
			   OUTBOX_SELECT
			   " WHERE o.seq IN (SELECT max(seq) FROM (SELECT seq, kind,"
			   " key FROM outbox WHERE seq > ?1 AND seq <= ?2 ORDER BY seq"
			   " LIMIT ?3) GROUP BY kind, key) ORDER BY o.seq",
			   args, fn, userdata);
}

int store_outbox_prune(struct store *s, const char *const *sinks, size_t n, int64_t before_ms,
		       int64_t *ret_deleted)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int64_t keep_after = 0;
	int r;

	r = store_outbox_max_seq(s, &keep_after);
	for (size_t i = 0; r == 0 && i < n; i++) {
		int64_t cursor = 0;

		r = store_cursor_get(s, sinks[i], &cursor);
		if (r == 0 && cursor < keep_after)
			keep_after = cursor;
	}
	/* Changes are written in time order, so what is old enough is a prefix of the seqs: up
	 * to the first row that is too young, found by walking from the oldest, which reads
	 * only the rows that go (a clock stepping back only keeps a row longer). */
	if (r == 0)
		r = prepare(s,
			    "DELETE FROM outbox WHERE seq < coalesce((SELECT seq FROM outbox"
			    "  WHERE seq <= ?1 AND created_at >= ?2 ORDER BY seq LIMIT 1), ?1 + 1)",
			    &st);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 1, keep_after));
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 2, before_ms));
	if (r == 0)
		r = sqldb_step_done(st);
	if (r < 0)
		return r;
	*ret_deleted = sqlite3_changes64(s->db);
	return 0;
}

int store_outbox_max_seq(struct store *s, int64_t *ret)
{
	/* The last seq ever given (AUTOINCREMENT keeps it), not the last row kept: once the
	 * outbox is pruned empty, backlogs and cursors still compare against it. */
	return query_int(
		s,
		"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'),"
		" 0), coalesce((SELECT max(seq) FROM outbox), 0))",
		ret);
}

int store_cursor_get(struct store *s, const char *sink, int64_t *ret)
{
	int r = query_int_arg(s, "SELECT seq FROM sink_cursor WHERE sink = ?1", sink, ret);

	if (r == -ENOENT) { /* a sink that never delivered */
		*ret = 0;
		r = 0;
	}
	return r;
}

int store_cursor_set(struct store *s, const char *sink, int64_t seq)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s,
			"INSERT INTO sink_cursor (sink, seq) VALUES (?1, ?2)"
			" ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq, open_job = NULL",
			&st);

	if (r == 0)
		r = sqldb_bind_text(st, 1, sink);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 2, seq));
	return r < 0 ? r : sqldb_step_done(st);
}

int store_sink_report(struct store *s, const char *sink, int64_t now, const char *error)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s,
			"INSERT INTO sink_cursor (sink, seq, last_ok, last_error, last_error_at,"
			"  failures) VALUES (?1, 0, CASE WHEN ?3 IS NULL THEN ?2 ELSE 0 END, ?3,"
			"  CASE WHEN ?3 IS NULL THEN 0 ELSE ?2 END, ?3 IS NOT NULL)"
			" ON CONFLICT (sink) DO UPDATE SET"
			"  last_ok = CASE WHEN ?3 IS NULL THEN ?2 ELSE last_ok END,"
			"  last_error = coalesce(?3, last_error),"
			"  last_error_at = CASE WHEN ?3 IS NULL THEN last_error_at ELSE ?2 END,"
			"  failures = CASE WHEN ?3 IS NULL THEN 0 ELSE failures + 1 END",
			&st);

	if (r == 0)
		r = sqldb_bind_text(st, 1, sink);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 2, now));
	if (r == 0)
		r = sqldb_bind_text(st, 3, error);
	return r < 0 ? r : sqldb_step_done(st);
}

int store_sink_job_set(struct store *s, const char *sink, const char *job)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s,
			"INSERT INTO sink_cursor (sink, seq, open_job) VALUES (?1, 0, ?2)"
			" ON CONFLICT (sink) DO UPDATE SET open_job = excluded.open_job",
			&st);

	if (r == 0)
		r = sqldb_bind_text(st, 1, sink);
	if (r == 0)
		r = sqldb_bind_text(st, 2, job);
	return r < 0 ? r : sqldb_step_done(st);
}

int store_sink_job_get(struct store *s, const char *sink, char *ret, size_t size)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT open_job FROM sink_cursor WHERE sink = ?1", &st), rc;
	const char *job;

	if (size == 0)
		return -EINVAL;
	ret[0] = '\0';
	if (r == 0)
		r = sqldb_bind_text(st, 1, sink);
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		return 0;
	if (rc != SQLITE_ROW)
		return sqldb_errno(rc);
	job = sqldb_col_text(st, 0);
	if (job && strlen(job) >= size)
		return -ENAMETOOLONG;
	if (job)
		memcpy(ret, job, strlen(job) + 1);
	return 0;
}

int store_sink_state_get(struct store *s, const char *sink, struct store_sink_state *ret)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s,
			"SELECT seq, last_ok, last_error, last_error_at, failures FROM sink_cursor"
			" WHERE sink = ?1",
			&st),
	    rc;

	*ret = (struct store_sink_state){ 0 };
	if (r == 0)
		r = sqldb_bind_text(st, 1, sink);
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) /* a sink that never ran */
		return 0;
	if (rc != SQLITE_ROW)
		return sqldb_errno(rc);
	ret->cursor = sqlite3_column_int64(st, 0);
	ret->last_ok = sqlite3_column_int64(st, 1);
	if (sqldb_col_text(st, 2))
		snprintf(ret->last_error, sizeof(ret->last_error), "%s", sqldb_col_text(st, 2));
	ret->last_error_at = sqlite3_column_int64(st, 3);
	ret->failures = sqlite3_column_int64(st, 4);
	return 0;
}

/* How many outbox rows have after_seq < seq <= upto_seq: a sink that must write that range
 * again needs all of them. */
int store_outbox_count(struct store *s, int64_t after_seq, int64_t upto_seq, int64_t *ret)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT count(*) FROM outbox WHERE seq > ?1 AND seq <= ?2", &st), rc;

	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 1, after_seq));
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 2, upto_seq));
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : sqldb_errno(rc);
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}

int store_outbox_gap(struct store *s, int64_t after_seq, int64_t *ret_first, int64_t *ret_last)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int64_t next = 0;
	int r, rc;

	/* The seq after after_seq that the outbox holds, else the next one to be given: rows
	 * are only ever pruned as a prefix, so a hole can only sit right after a cursor. */
	r = prepare(s,
		    "SELECT coalesce((SELECT min(seq) FROM outbox WHERE seq > ?1),"
		    " max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0),"
		    " coalesce((SELECT max(seq) FROM outbox), 0)) + 1)",
		    &st);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 1, after_seq));
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : sqldb_errno(rc);
	next = sqlite3_column_int64(st, 0);
	*ret_first = next > after_seq + 1 ? after_seq + 1 : 0;
	*ret_last = next > after_seq + 1 ? next - 1 : 0;
	return 0;
}

int store_read_begin(struct store *s)
{
	/* A deferred BEGIN takes its snapshot at the first read: read something at once, so
	 * the snapshot is the one of this call. */
	int r = exec(s, "BEGIN DEFERRED");

	if (r == 0) {
		r = exec(s, "SELECT count(*) FROM meta");
		if (r < 0)
			exec(s, "ROLLBACK");
	}
	return r;
}

static int object_rows(struct store *s, const char *kind,
		       int (*fn)(const struct store_row *r, void *ud), void *ud)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	/* INDEXED BY: the primary key's own index gives key order as the rows are read, so a
	 * graph of any size streams without a sort (the planner could otherwise pick a scan of
	 * the table and a sort for the kind filter). */
	int r = prepare(s,
			kind ? "SELECT kind, key, type, class, json FROM object"
			       " INDEXED BY sqlite_autoindex_object_1 WHERE kind = ?1 ORDER BY key"
			     : "SELECT kind, key, type, class, json FROM object ORDER BY key",
			&st),
	    rc;

	if (r == 0 && kind)
		r = sqldb_bind_text(st, 1, kind);
	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_row row = {
			.kind = sqldb_col_text(st, 0),
			.key = sqldb_col_text(st, 1),
			.type = sqldb_col_text(st, 2),
			.class = sqldb_col_text(st, 3),
			.json = sqldb_col_text(st, 4),
		};

		r = fn(&row, ud);
		if (r != 0)
			return r;
	}
	return sqldb_errno(rc);
}

int store_object_each(struct store *s, int (*fn)(const struct store_row *r, void *ud), void *ud)
{
	return object_rows(s, NULL, fn, ud);
}

int store_object_kind_each(struct store *s, const char *kind,
			   int (*fn)(const struct store_row *r, void *ud), void *ud)
{
	return object_rows(s, kind, fn, ud);
}

int store_mapped_targets_each(struct store *s, store_target_fn fn, void *ud)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	/* The distinct set is built in SQLite's temp store, not in our memory. */
	int r = prepare(s,
			"SELECT DISTINCT json_extract(json, '$._mapping.targetFilterKeys'),"
			" json_extract(json, '$._mapping.targetEntity') FROM object"
			" WHERE kind = 'relationship'"
			" AND json_type(json, '$._mapping.targetEntity') = 'object' ORDER BY 2, 1",
			&st),
	    rc;

	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = fn(sqldb_col_text(st, 0), sqldb_col_text(st, 1), ud);
		if (r != 0)
			return r;
	}
	return sqldb_errno(rc);
}

int store_object_name(struct store *s, const char *key, char **ret)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT json_extract(json, '$.name') FROM object WHERE key = ?1", &st),
	    rc;
	const char *name;

	if (r == 0)
		r = sqldb_bind_text(st, 1, key);
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : sqldb_errno(rc);
	if (sqlite3_column_type(st, 0) != SQLITE_TEXT || !(name = sqldb_col_text(st, 0)))
		return -ENOENT;
	*ret = strdup(name);
	return *ret ? 0 : -ENOMEM;
}

int store_type_counts(struct store *s, store_count_fn fn, void *userdata)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, "SELECT type, n FROM type_count WHERE n > 0 ORDER BY type", &st), rc;

	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		r = fn(sqldb_col_text(st, 0), sqlite3_column_int64(st, 1), userdata);
		if (r != 0)
			return r;
	}
	return sqldb_errno(rc);
}

int store_runs_sweep(struct store *s)
{
	return exec(s, "UPDATE sync_run SET result = 'interrupted' WHERE result = 'running'");
}

int store_run_begin(struct store *s, const char *kind, int64_t now, int64_t *ret_id)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r;

	r = prepare(s, "INSERT INTO sync_run (kind, result, started) VALUES (?1, 'running', ?2)",
		    &st);
	if (r == 0)
		r = sqldb_bind_text(st, 1, kind);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 2, now));
	if (r == 0)
		r = sqldb_step_done(st);
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
		r = sqldb_errno(sqlite3_bind_int64(st, 1, run->id));
	if (r == 0)
		r = sqldb_bind_text(st, 2, run->result);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 3, run->finished));
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 4, run->created));
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 5, run->updated));
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 6, run->deleted));
	if (r == 0)
		r = sqldb_bind_text(st, 7, run->held_back);
	if (r == 0)
		r = sqldb_bind_text(st, 8, run->message);
	return r < 0 ? r : sqldb_step_done(st);
}

int store_runs_each(struct store *s, int64_t limit, store_run_fn fn, void *userdata)
{
	static const char sql[] =
		"SELECT id, kind, result, started, finished, created, updated, deleted,"
		" held_back, message FROM sync_run ORDER BY id DESC LIMIT ?1";
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = prepare(s, sql, &st), rc;

	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 1, limit));
	if (r < 0)
		return r;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_run run = {
			.id = sqlite3_column_int64(st, 0),
			.kind = sqldb_col_text(st, 1),
			.result = sqldb_col_text(st, 2),
			.started = sqlite3_column_int64(st, 3),
			.finished = sqlite3_column_int64(st, 4),
			.created = sqlite3_column_int64(st, 5),
			.updated = sqlite3_column_int64(st, 6),
			.deleted = sqlite3_column_int64(st, 7),
			.held_back = sqldb_col_text(st, 8),
			.message = sqldb_col_text(st, 9),
		};

		r = fn(&run, userdata);
		if (r != 0)
			return r;
	}
	return sqldb_errno(rc);
}

int store_runs_prune(struct store *s, const char *kind, int64_t before_ms, int64_t *ret_deleted)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r;

	/* Runs start in id order: the walk stops at the first run started after the cutoff (a
	 * clock stepped back only keeps a run longer), and the kind's last run stays. */
	r = prepare(s,
		    "DELETE FROM sync_run WHERE kind = ?1 AND finished > 0 AND finished < ?2"
		    " AND id < min(coalesce((SELECT id FROM sync_run WHERE started >= ?2"
		    "   ORDER BY id LIMIT 1), 9223372036854775807),"
		    "  (SELECT max(id) FROM sync_run WHERE kind = ?1))",
		    &st);
	if (r == 0)
		r = sqldb_bind_text(st, 1, kind);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 2, before_ms));
	if (r == 0)
		r = sqldb_step_done(st);
	if (r == 0 && ret_deleted)
		*ret_deleted = sqlite3_changes(s->db);
	return r;
}
