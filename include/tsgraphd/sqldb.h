/* sqldb — what every SQLite file of tsgraphd shares: a private (0600) regular file, WAL with
 * the configured synchronous mode, an application_id that says the file is ours, a
 * user_version migrated forward in one transaction and never backward, and the few statement
 * helpers every module that speaks SQL would otherwise write again.
 *
 * The store (store.c) and the webhook inbox (inbox.c) are two files with two schemas; each
 * describes its schema with a struct sqldb_schema and calls these.
 *
 * Ownership: the sqlite3 handles are the caller's. Threads: reentrant; a connection is used
 * by one thread at a time (SQLITE_OPEN_NOMUTEX). Pure: no logging; errors are negative errno
 * values, with one line for a person in err where one is asked for.
 */
#ifndef TSGRAPHD_SQLDB_H
#define TSGRAPHD_SQLDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#define SQLDB_ERR_MAX 512

/* One file's schema: migrations[v] brings user_version v to v + 1. */
struct sqldb_schema {
	const char *what; /* "store", "inbox": named in "is it tsgraphd's store?" */
	int32_t application_id;
	const char *const *migrations;
	size_t n_migrations;
};

/* SQLite result code → 0 or a negative errno (BUSY/LOCKED -EBUSY, FULL -ENOSPC, NOTADB and
 * CORRUPT -EBADMSG, CONSTRAINT -EEXIST, READONLY -EACCES, ...). */
int sqldb_errno(int rc);
int sqldb_exec(sqlite3 *db, const char *sql);
int sqldb_prepare(sqlite3 *db, const char *sql, sqlite3_stmt **ret);
/* Ends the transaction the caller began: COMMIT when r is 0, ROLLBACK otherwise or when the
 * commit fails. Returns r, or the commit's error. SQLite's message does not survive the
 * ROLLBACK: a caller that wants it does not use this. */
int sqldb_finish(sqlite3 *db, int r);
/* Binds v, or NULL when v is NULL. */
int sqldb_bind_text(sqlite3_stmt *st, int i, const char *v);
/* Steps a statement that returns no rows (-EPROTO when it does). */
int sqldb_step_done(sqlite3_stmt *st);
/* The first column of the first row (-ENOENT when there is none); ?1 is arg when not NULL. */
int sqldb_query_int(sqlite3 *db, const char *sql, const char *arg, int64_t *ret);
const char *sqldb_col_text(sqlite3_stmt *st, int i);

static inline void sqldb_finalizep(sqlite3_stmt **st)
{
	sqlite3_finalize(*st);
}
#define _cleanup_stmt_ __attribute__((cleanup(sqldb_finalizep)))

/* Before opening path read-write: creates it 0600 when missing (O_NOFOLLOW) and takes group
 * and other bits off an existing file; anything but a regular file is refused. An existing
 * file is not opened (a close() would drop the POSIX locks of this process's connections to
 * it), so this is safe while other threads have it open. A missing
 * file sets *ret_memory (and creates nothing) when memory_if_missing, and is -ENOENT when
 * must_exist. */
int sqldb_prepare_file(const char *path, bool memory_if_missing, bool must_exist, bool *ret_memory,
		       char err[static SQLDB_ERR_MAX]);
/* Reads the file's identity: 0 with *ret_app 0 for a new, empty file; -EBADMSG for a file
 * that is not SQLite, -EMEDIUMTYPE for another program's, -EPROTONOSUPPORT for a schema
 * newer than this build's. */
int sqldb_identify(sqlite3 *db, const struct sqldb_schema *sc, int64_t *ret_app,
		   int64_t *ret_version, char err[static SQLDB_ERR_MAX]);
/* identify, then every missing migration and the application_id, in one write transaction
 * (two processes opening a new file at once do not both migrate). */
int sqldb_migrate(sqlite3 *db, const struct sqldb_schema *sc, char err[static SQLDB_ERR_MAX]);
/* WAL journaling (refused if SQLite cannot) and PRAGMA synchronous FULL or NORMAL. */
int sqldb_set_journal(sqlite3 *db, bool synchronous_full, char err[static SQLDB_ERR_MAX]);

#endif
