/* sqldb — the parts of an SQLite file every tsgraphd database shares.
 *
 * Identity is two pragmas: application_id (0 on a file SQLite just created) and user_version
 * (the number of migrations applied). The checks run inside the migration's write
 * transaction, so a file another process is creating is seen whole or not at all.
 */
#include "tsgraphd/sqldb.h"
#include "tsgraphd/util.h"

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int sqldb_errno(int rc)
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

int sqldb_exec(sqlite3 *db, const char *sql)
{
	return sqldb_errno(sqlite3_exec(db, sql, NULL, NULL, NULL));
}

int sqldb_finish(sqlite3 *db, int r)
{
	if (r == 0)
		r = sqldb_exec(db, "COMMIT");
	if (r < 0)
		sqldb_exec(db, "ROLLBACK");
	return r;
}

int sqldb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret)
{
	return sqldb_errno(sqlite3_prepare_v2(db, sql, -1, ret, NULL));
}

int sqldb_bind_text(sqlite3_stmt *st, int i, const char *v)
{
	return sqldb_errno(v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT)
			     : sqlite3_bind_null(st, i));
}

int sqldb_step_done(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	return rc == SQLITE_DONE ? 0 : (rc == SQLITE_ROW ? -EPROTO : sqldb_errno(rc));
}

int sqldb_query_int(sqlite3 *db, const char *sql, const char *arg, int64_t *ret)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sqldb_prepare(db, sql, &st), rc;

	if (r == 0 && arg)
		r = sqldb_bind_text(st, 1, arg);
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return rc == SQLITE_DONE ? -ENOENT : sqldb_errno(rc);
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}

const char *sqldb_col_text(sqlite3_stmt *st, int i)
{
	return (const char *)sqlite3_column_text(st, i);
}

int sqldb_prepare_file(const char *path, bool memory_if_missing, bool must_exist, bool *ret_memory,
		       char err[static SQLDB_ERR_MAX])
{
	struct stat st;
	int fd;

	*ret_memory = false;
	/* An existing file is never opened here: closing any descriptor of a file drops every
	 * POSIX lock this process holds on it, those of SQLite connections other threads have
	 * open on it included (another process could then delete their WAL under them). */
	if (lstat(path, &st) == 0) {
		if (!S_ISREG(st.st_mode)) {
			snprintf(err, SQLDB_ERR_MAX, "not a regular file");
			return -EINVAL;
		}
		goto private;
	}
	if (errno != ENOENT) {
		int r = -errno;

		snprintf(err, SQLDB_ERR_MAX, "cannot open: %s", strerror(-r));
		return r;
	}
	if (memory_if_missing) {
		*ret_memory = true;
		return 0;
	}
	if (must_exist) {
		snprintf(err, SQLDB_ERR_MAX, "no store yet (run 'tsgraphd sync' first)");
		return -ENOENT;
	}
	/* A new file: no connection can have it open yet. */
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600);
	if (fd < 0 && errno == EEXIST && lstat(path, &st) == 0 && S_ISREG(st.st_mode))
		goto private; /* another thread or process created it meanwhile */
	if (fd < 0) {
		int r = -errno;

		snprintf(err, SQLDB_ERR_MAX, "cannot open: %s", strerror(-r));
		return r;
	}
	close(fd);
	return 0;

      private:
	if ((st.st_mode & 077) && chmod(path, st.st_mode & 0700) < 0) {
		int r = -errno;

		snprintf(err, SQLDB_ERR_MAX, "cannot make it private (chmod 600): %s",
			 strerror(-r));
		return r;
	}
	return 0;
}

static void not_ours(const struct sqldb_schema *sc, char *err)
{
	snprintf(err, SQLDB_ERR_MAX, "not an SQLite database (is it tsgraphd's %s?)", sc->what);
}

int sqldb_identify(sqlite3 *db, const struct sqldb_schema *sc, int64_t *ret_app,
		   int64_t *ret_version, char err[static SQLDB_ERR_MAX])
{
	int64_t app = 0, version = 0, tables = 0;
	int r;

	r = sqldb_query_int(db, "PRAGMA application_id", NULL, &app);
	if (r == 0)
		r = sqldb_query_int(db, "PRAGMA user_version", NULL, &version);
	if (r == 0)
		r = sqldb_query_int(db, "SELECT count(*) FROM sqlite_schema", NULL, &tables);
	if (r == -EBADMSG) {
		not_ours(sc, err);
		return r;
	}
	if (r < 0) {
		snprintf(err, SQLDB_ERR_MAX, "cannot read the schema: %s", sqlite3_errmsg(db));
		return r;
	}
	if (app != sc->application_id && (app != 0 || tables > 0)) {
		snprintf(err, SQLDB_ERR_MAX,
			 "an SQLite database of another program (application_id %lld)",
			 (long long)app);
		return -EMEDIUMTYPE;
	}
	if (version > (int64_t)sc->n_migrations) {
		snprintf(err, SQLDB_ERR_MAX,
			 "schema version %lld is newer than this build's (%zu): upgrade tsgraphd",
			 (long long)version, sc->n_migrations);
		return -EPROTONOSUPPORT;
	}
	*ret_app = app;
	*ret_version = version;
	return 0;
}

int sqldb_migrate(sqlite3 *db, const struct sqldb_schema *sc, char err[static SQLDB_ERR_MAX])
{
	int64_t app = 0, version = 0;
	char pragma[64];
	int r;

	r = sqldb_exec(db, "BEGIN IMMEDIATE");
	if (r < 0) {
		if (r == -EBADMSG)
			not_ours(sc, err);
		else
			snprintf(err, SQLDB_ERR_MAX, "%s", sqlite3_errmsg(db));
		return r;
	}
	r = sqldb_identify(db, sc, &app, &version, err);
	if (r < 0)
		goto fail;
	for (size_t v = (size_t)version; r == 0 && v < sc->n_migrations; v++) {
		r = sqldb_exec(db, sc->migrations[v]);
		snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %zu", v + 1);
		if (r == 0)
			r = sqldb_exec(db, pragma);
	}
	if (r == 0 && app == 0) {
		snprintf(pragma, sizeof(pragma), "PRAGMA application_id = %" PRId32,
			 sc->application_id);
		r = sqldb_exec(db, pragma);
	}
	if (r == 0)
		r = sqldb_exec(db, "COMMIT");
	if (r == 0)
		return 0;
	/* SQLite's reason now: the ROLLBACK would reset it */
	snprintf(err, SQLDB_ERR_MAX, "migration failed: %s", sqlite3_errmsg(db));
fail:
	sqldb_exec(db, "ROLLBACK");
	return r;
}

int sqldb_set_journal(sqlite3 *db, bool synchronous_full, char err[static SQLDB_ERR_MAX])
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r;

	/* WAL lets readers (status, the receiver's checks) run beside a writer. */
	r = sqldb_prepare(db, "PRAGMA journal_mode = WAL", &st);
	if (r == 0 && sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_stricmp(sqldb_col_text(st, 0), "wal") != 0) {
		snprintf(err, SQLDB_ERR_MAX, "cannot use WAL journaling (got %s)",
			 sqldb_col_text(st, 0));
		return -EIO;
	}
	if (r == 0)
		r = sqldb_exec(db, synchronous_full ? "PRAGMA synchronous = FULL"
						    : "PRAGMA synchronous = NORMAL");
	if (r < 0)
		snprintf(err, SQLDB_ERR_MAX, "cannot set up: %s", sqlite3_errmsg(db));
	return r;
}
