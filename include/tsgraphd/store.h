/* store — the SQLite state: the stored graph, the snapshot of a sync in progress, the
 * outbox of changes, each sink's cursor into it, and the record of sync runs.
 *
 * One struct store wraps one SQLite connection (WAL, busy timeout, foreign keys); a thread
 * opens its own. The snapshot lives in TEMP tables of that connection, so a crash forgets a
 * half-fetched sync and the stored graph stays as the last commit left it. Writes that must
 * be atomic together (state and outbox rows) go between store_begin() and store_commit().
 *
 * Ownership: rows handed to callbacks point into SQLite's memory and are valid only during
 * the callback. store_close() accepts NULL. Pure: no logging; errors come back as negative
 * errno values with a message in the caller's buffer where a human needs one.
 */
#ifndef TSGRAPHD_STORE_H
#define TSGRAPHD_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsgraphd/graph.h"

#define STORE_ERR_MAX	     512
#define STORE_TYPES_MAX	     32		/* graph types one snapshot can count */
#define STORE_APPLICATION_ID 0x54534744 /* "TSGD" */
/* An update's changed list (outbox_row.changed): a JSON array of property names, bytes. */
#define STORE_CHANGED_LIST_MAX (1024u * 1024)

struct store;

struct store_options {
	bool synchronous_full;
	bool memory_if_missing; /* a missing file opens an empty in-memory store (dry runs) */
	bool must_exist;	/* a missing file is -ENOENT instead of a new store */
	/* The file is only read (status, dry runs): opened read-only, never created, chmodded,
	 * locked or migrated, and nothing is created beside it when no writer is running; the
	 * schema must be this build's. Works while a sync writes (WAL). */
	bool read_only;
	int busy_timeout_ms;
};

/* One stored or staged graph object. kind is "entity" or "relationship". */
struct store_row {
	const char *kind;
	const char *key;
	const char *type;
	const char *class;
	const char *json;
};

struct outbox_row {
	int64_t seq;
	const char *op; /* "create" | "update" | "delete" */
	const char *kind;
	const char *key;
	const char *type;
	const char *class;
	const char *json;    /* the whole object; NULL for deletes */
	const char *changed; /* JSON array of property names; NULL unless update */
	const char *source;  /* "poll" | "webhook" */
	int64_t created_at;  /* ms */
};

struct store_run {
	int64_t id;
	const char *kind; /* "full", ... */
	/* "running" | "ok" | "partial" (a listing failed) | "held" (the mass-delete guard held
	 * deletions back) | "failed" (nothing committed) | "interrupted" (the process died) */
	const char *result;
	int64_t started, finished; /* ms; finished 0 while running */
	int64_t created, updated, deleted;
	const char *held_back; /* types whose deletes the guard held back, or NULL */
	const char *message;
};

typedef int (*store_outbox_fn)(const struct outbox_row *r, void *userdata);
typedef int (*store_run_fn)(const struct store_run *r, void *userdata);
typedef int (*store_count_fn)(const char *type, int64_t count, void *userdata);
typedef int (*store_missing_fn)(const char *group, const char *type, int64_t stored,
				int64_t missing, void *userdata);

int store_open(const char *path, const struct store_options *opt, struct store **ret,
	       char err[static STORE_ERR_MAX]);
void store_close(struct store *s);
/* Takes the advisory lock PATH.lock that makes one writer process per store (a sync, later
 * the daemon); -EBUSY when another holds it. The lock lives as long as *ret_fd is open. */
int store_lock(const char *path, int *ret_fd);
/* What a store_lock() failure means, for a message: -EBUSY is another process. */
const char *store_lock_strerror(int r);
/* The last SQLite error text of this connection, for messages. */
const char *store_errmsg(struct store *s);

int store_begin(struct store *s); /* BEGIN IMMEDIATE */
int store_commit(struct store *s);
int store_rollback(struct store *s);

/* --- the snapshot of one sync ---
 * Staging compares as it goes: each object is looked up by key in the stored graph; one
 * that is stored with the same hash only marks the stored row as seen (a bit in memory),
 * and only new and changed objects are written, to a TEMP table of this connection. No
 * write lock is taken before store_apply_plan(). */
/* Starts an empty snapshot, in a deferred (read) transaction of its own: of the whole graph
 * (a full sync: the key index is loaded, every object compared in memory), or, _owners, for
 * a targeted refresh of a few owners (no key index: each lookup reads the table, so a
 * refresh of one agent costs the same on a large store as on a small one). */
int store_snapshot_reset(struct store *s);
int store_snapshot_reset_owners(struct store *s);
/* Ends the snapshot's own read transaction (before the apply, or when giving up). */
int store_snapshot_end(struct store *s);
/* Stages o (o->owner, o->rank used) with its canonical json and hash. A key staged twice
 * keeps its first copy. */
int store_snapshot_put(struct store *s, const struct graph_object *o, const char *json,
		       const char *hash);
/* Settles an owner (an agent or alert key) seen in two listings before its objects are put:
 * *ret_take is false when a copy of the same or higher rank is already in the snapshot;
 * when the new copy ranks higher, everything the older one put is taken back. */
int store_snapshot_owner(struct store *s, const char *owner, int64_t rank, bool *ret_take);
/* Marks the types a listing produces as completely enumerated in this snapshot, as one
 * group (say "agents"); types[0] is the group's primary type, the one the mass-delete guard
 * judges. Only complete types lose objects. */
int store_snapshot_complete(struct store *s, const char *group, const char *const *types, size_t n);
/* Marks one owner as completely enumerated (a refreshed agent): the objects it owns that
 * the snapshot lacks are deleted. */
int store_snapshot_complete_owner(struct store *s, const char *owner);
/* Takes a group's completeness back (the guard held its deletions). */
int store_snapshot_incomplete(struct store *s, const char *group);
/* Staged new and changed objects. */
int store_snapshot_count(struct store *s, int64_t *ret);

/* --- the plan and its apply (diff.c sequences these) --- */
/* For each complete group, its primary type: how many objects are stored and how many of
 * them the snapshot lacks. */
int store_missing_counts(struct store *s, store_missing_fn fn, void *ud);
/* Marks for deletion the unseen objects of complete types and owners, then every
 * relationship touching a marked entity; drops staged relationships whose own ends are
 * neither staged nor stored (or are being deleted). Reads the stored graph only. */
int store_plan_deletes(struct store *s);
/* Changes in the plan (staged plus marked for deletion); 0 means nothing to apply. */
int store_plan_size(struct store *s, int64_t *ret);
/* The outbox rows the apply would write, in its order, without writing (seq 0). */
int store_plan_each(struct store *s, const char *source, store_outbox_fn fn, void *userdata);
/* Inside the caller's transaction: appends the outbox rows of the plan (entities created
 * and updated, relationships created and updated, relationships deleted, entities deleted;
 * each by key) and applies them to the stored graph. Counts come back per op. Objects
 * another connection changed after the snapshot began (their outbox rows say so: a webhook
 * refresh while a full sync fetched) are left as that writer left them, and so are the
 * relationships that would then hang from nothing. The snapshot must be reset before it is
 * used again. */
int store_apply_plan(struct store *s, const char *source, int64_t run_id, int64_t now,
		     int64_t *ret_created, int64_t *ret_updated, int64_t *ret_deleted);

/* --- the outbox and sink cursors --- */
int store_outbox_each(struct store *s, int64_t after_seq, int64_t limit, store_outbox_fn fn,
		      void *userdata);
/* The window of the first limit rows with after_seq < seq <= upto_seq, coalesced: only the
 * last change of each (kind, key) in it, in seq order. The window's last row is always
 * among them. */
int store_outbox_latest_each(struct store *s, int64_t after_seq, int64_t upto_seq, int64_t limit,
			     store_outbox_fn fn, void *userdata);
/* The last seq given to a change (0 before the first), pruned or not. */
int store_outbox_max_seq(struct store *s, int64_t *ret);
/* Deletes the outbox rows every named sink has delivered (at or below the smallest of their
 * cursors; a sink without one has delivered nothing) that are older than before_ms. With
 * no sink named, no row is needed by anyone. The seq never goes back (AUTOINCREMENT). */
int store_outbox_prune(struct store *s, const char *const *sinks, size_t n, int64_t before_ms,
		       int64_t *ret_deleted);
int store_cursor_get(struct store *s, const char *sink, int64_t *ret);
/* Moves the sink's cursor to seq; the job it had open (store_sink_job_set) is over then. */
int store_cursor_set(struct store *s, const char *sink, int64_t seq);
/* The JupiterOne job the sink has open (job NULL: none); remembered until the cursor moves
 * or it is set again. _get copies it into ret ("" when none); -ENAMETOOLONG when it does
 * not fit in size bytes. */
int store_sink_job_set(struct store *s, const char *sink, const char *job);
int store_sink_job_get(struct store *s, const char *sink, char *ret, size_t size);
/* A sink's delivery record: when it last delivered everything it was given (ms), its last
 * error, when that was, and how many attempts in a row have failed since the last success. */
#define STORE_SINK_ERROR_MAX 512
struct store_sink_state {
	int64_t cursor;
	int64_t last_ok;
	char last_error[STORE_SINK_ERROR_MAX]; /* empty when none was ever recorded */
	int64_t last_error_at;
	int64_t failures;
};
/* Records one attempt of sink at now (ms): a success when error is NULL, else the error. */
int store_sink_report(struct store *s, const char *sink, int64_t now, const char *error);
/* All zero for a sink that never ran. */
int store_sink_state_get(struct store *s, const char *sink, struct store_sink_state *ret);
/* How many outbox rows have after_seq < seq <= upto_seq. */
int store_outbox_count(struct store *s, int64_t after_seq, int64_t upto_seq, int64_t *ret);
/* The changes right after after_seq that were given a seq but are no longer in the outbox
 * (pruned before a sink at after_seq delivered them): first..last, or 0, 0 when the next
 * change is there or was never given. */
int store_outbox_gap(struct store *s, int64_t after_seq, int64_t *ret_first, int64_t *ret_last);

/* --- the stored graph --- */
/* Opens a read transaction (BEGIN DEFERRED) and takes its snapshot at once: every read
 * until store_rollback() sees the store as it was at this call, whatever a writer commits
 * meanwhile. Takes no write lock; works on a read-only store. */
int store_read_begin(struct store *s);
/* Every stored object, by key. */
int store_object_each(struct store *s, int (*fn)(const struct store_row *r, void *ud), void *ud);
/* The stored objects of one kind ("entity" or "relationship"), by key, streamed (no sort). */
int store_object_kind_each(struct store *s, const char *kind,
			   int (*fn)(const struct store_row *r, void *ud), void *ud);
/* The targets of the stored mapped relationships, each distinct pair once, ordered by
 * target: _mapping.targetFilterKeys and _mapping.targetEntity as JSON text (filter_keys
 * NULL when the mapping has none). */
typedef int (*store_target_fn)(const char *filter_keys, const char *target, void *userdata);
int store_mapped_targets_each(struct store *s, store_target_fn fn, void *userdata);
int store_type_counts(struct store *s, store_count_fn fn, void *userdata);
/* The "name" property of the stored object key, malloc'd; -ENOENT when there is no such
 * object or it has no name (for messages about an object a change only names by key). */
int store_object_name(struct store *s, const char *key, char **ret);
int store_type_count(struct store *s, const char *type, int64_t *ret);

/* --- sync runs --- */
/* Once a process holds store_lock(), before its first run: a run still "running" belongs to
 * a process that died, and is marked "interrupted". (Not at each run: the daemon's refreshes
 * begin runs while its full sync's run is running.) */
int store_runs_sweep(struct store *s);
int store_run_begin(struct store *s, const char *kind, int64_t now, int64_t *ret_id);
int store_run_finish(struct store *s, const struct store_run *r);
int store_runs_each(struct store *s, int64_t limit, store_run_fn fn, void *userdata);
/* Deletes the records of finished runs of kind (the daemon's "refresh", one per webhook
 * batch) that ended before before_ms, the latest one of that kind always kept. */
int store_runs_prune(struct store *s, const char *kind, int64_t before_ms, int64_t *ret_deleted);

#endif
