/* inbox — the webhook alerts, durable before they are acknowledged.
 *
 * The file is its own SQLite database (sqldb.h: 0600, WAL, synchronous from [store],
 * application_id "TSGI", user_version migrations), never the store: a sync's apply holds
 * the store's write lock for as long as it writes, and the receiver must not wait on it.
 *
 * Group commit. Every accepted request becomes a ticket holding a copy of its alerts; the
 * writer thread takes all queued tickets at once, writes them in one transaction (each
 * ticket inside a SAVEPOINT, so a ticket that would take the inbox over max_depth is taken
 * back alone) and commits: one fsync for the whole batch, however many requests it holds.
 * Only then are the tickets answered, so a handler that answers 2xx after its ticket says 0
 * never acknowledges what a crash could lose. While the writer commits, new tickets queue
 * up for the next batch: the busier the receiver, the bigger the batches. The writer does
 * not wait for a batch to grow: an idle writer is woken by the first ticket and commits at
 * once; a busy one takes the whole queue when its commit is done, woken by nobody. Each
 * ticket has a semaphore of its own: a commit wakes exactly the threads whose tickets it
 * answered (a broadcast would wake every waiting handler for every batch, most of them to
 * sleep again).
 *
 * The writer is the inbox's only writer: the sync thread's settlements and prunes are tickets
 * too, committed in the same batches, so the receiver never waits on SQLite's lock (whose
 * busy handler sleeps in steps of up to 100 ms) behind another connection. The sync thread
 * reads through a connection of its own (WAL: readers never block the writer).
 *
 * The depth (new + unconfirmed) is counted in memory: set from the file when the writer
 * starts, raised by each commit of new alerts, lowered by each settlement; before a request
 * is refused for it, the file is counted again, so a stale count only costs a query.
 */
#include "tsgraphd/inbox.h"
#include "tsgraphd/sqldb.h"
#include "tsgraphd/testhook.h"
#include "tsgraphd/util.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BUSY_TIMEOUT_DEFAULT_MS 30000

static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE alert ("
	"  id TEXT PRIMARY KEY,"
	"  received_at INTEGER NOT NULL,"
	"  body TEXT NOT NULL,"
	"  state TEXT NOT NULL DEFAULT 'new'"
	"    CHECK (state IN ('new','unconfirmed','confirmed','done')),"
	"  attempts INTEGER NOT NULL DEFAULT 0,"
	"  next_try INTEGER NOT NULL DEFAULT 0,"
	"  settled_at INTEGER NOT NULL DEFAULT 0,"
	"  note TEXT"
	");"
	"CREATE INDEX alert_pending ON alert(next_try, received_at)"
	"  WHERE state IN ('new','unconfirmed');"
	"CREATE INDEX alert_settled ON alert(received_at) WHERE state IN ('confirmed','done');",
};

static const struct sqldb_schema schema = {
	.what = "inbox",
	.application_id = INBOX_APPLICATION_ID,
	.migrations = migrations,
	.n_migrations = ARRAY_SIZE(migrations),
};

static const char *const state_names[] = {
	[INBOX_NEW] = "new",
	[INBOX_UNCONFIRMED] = "unconfirmed",
	[INBOX_CONFIRMED] = "confirmed",
	[INBOX_DONE] = "done",
};

struct inbox {
	sqlite3 *db;
	sqlite3_stmt *insert;
};

const char *inbox_state_to_string(enum inbox_state s)
{
	return (unsigned)s < ARRAY_SIZE(state_names) ? state_names[s] : "unknown";
}

static int state_from_string(const char *s, enum inbox_state *ret)
{
	for (size_t i = 0; s && i < ARRAY_SIZE(state_names); i++) {
		if (strcmp(s, state_names[i]) == 0) {
			*ret = (enum inbox_state)i;
			return 0;
		}
	}
	return -EBADMSG;
}

const char *inbox_errmsg(struct inbox *ib)
{
	return ib && ib->db ? sqlite3_errmsg(ib->db) : "no inbox";
}

void inbox_close(struct inbox *ib)
{
	if (!ib)
		return;
	sqlite3_finalize(ib->insert);
	sqlite3_close(ib->db);
	free(ib);
}

int inbox_open(const char *path, const struct inbox_options *opt, struct inbox **ret,
	       char err[static INBOX_ERR_MAX])
{
	struct inbox *ib = NULL;
	char msg[SQLDB_ERR_MAX] = "";
	bool memory = false;
	int r;

	err[0] = '\0';
	r = sqldb_prepare_file(path, false, false, &memory, msg);
	if (r < 0)
		goto out;
	ib = calloc(1, sizeof(*ib));
	if (!ib) {
		r = -ENOMEM;
		goto out;
	}
	r = sqldb_errno(sqlite3_open_v2(
		path, &ib->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
		NULL));
	if (r < 0) {
		snprintf(msg, sizeof(msg), "cannot open: %s",
			 ib->db ? sqlite3_errmsg(ib->db) : "out of memory");
		goto out;
	}
	sqlite3_extended_result_codes(ib->db, 1);
	sqlite3_busy_timeout(ib->db, opt->busy_timeout_ms > 0 ? opt->busy_timeout_ms
							      : BUSY_TIMEOUT_DEFAULT_MS);
	r = sqldb_migrate(ib->db, &schema, msg);
	if (r == 0)
		r = sqldb_set_journal(ib->db, opt->synchronous_full, msg);
	if (r == 0)
		r = sqldb_prepare(ib->db,
				  "INSERT INTO alert (id, received_at, body) VALUES (?1, ?2, ?3)"
				  " ON CONFLICT (id) DO NOTHING",
				  &ib->insert);
	if (r < 0) {
		if (!msg[0])
			snprintf(msg, sizeof(msg), "cannot set up: %s", sqlite3_errmsg(ib->db));
		goto out;
	}
	*ret = ib;
	ib = NULL;
out:
	if (r < 0)
		snprintf(err, INBOX_ERR_MAX, "%s: %s", path, msg[0] ? msg : strerror(-r));
	inbox_close(ib);
	return r;
}

/* Inside the caller's transaction. */
static int insert(struct inbox *ib, const struct inbox_alert *a, size_t n, size_t *ret_new)
{
	size_t fresh = 0;
	int r = 0;

	for (size_t i = 0; r == 0 && i < n; i++) {
		if (!a[i].id || !a[i].id[0] || strlen(a[i].id) > INBOX_ID_MAX || !a[i].body)
			return -EINVAL;
		sqlite3_reset(ib->insert);
		r = sqldb_bind_text(ib->insert, 1, a[i].id);
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(ib->insert, 2, a[i].received_at));
		if (r == 0)
			r = sqldb_bind_text(ib->insert, 3, a[i].body);
		if (r == 0)
			r = sqldb_step_done(ib->insert);
		if (r == 0)
			fresh += (size_t)sqlite3_changes(ib->db);
	}
	sqlite3_reset(ib->insert);
	sqlite3_clear_bindings(ib->insert);
	if (r == 0)
		*ret_new = fresh;
	return r;
}

int inbox_put(struct inbox *ib, const struct inbox_alert *a, size_t n, size_t *ret_new)
{
	size_t fresh = 0;
	int r;

	r = sqldb_exec(ib->db, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	r = sqldb_finish(ib->db, insert(ib, a, n, &fresh));
	if (r < 0)
		return r;
	if (ret_new)
		*ret_new = fresh;
	return 0;
}

static int each_row(sqlite3_stmt *st, inbox_item_fn fn, void *ud)
{
	int rc, r;

	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct inbox_item it = {
			.id = sqldb_col_text(st, 0),
			.body = sqldb_col_text(st, 1),
			.received_at = sqlite3_column_int64(st, 2),
			.attempts = sqlite3_column_int64(st, 4),
			.next_try = sqlite3_column_int64(st, 5),
		};

		r = state_from_string(sqldb_col_text(st, 3), &it.state);
		if (r == 0)
			r = fn(&it, ud);
		if (r < 0)
			return r;
	}
	return rc == SQLITE_DONE ? 0 : sqldb_errno(rc);
}

#define ITEM_COLUMNS "SELECT id, body, received_at, state, attempts, next_try FROM alert"

int inbox_due(struct inbox *ib, int64_t now, size_t max, inbox_item_fn fn, void *userdata)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r;

	r = sqldb_prepare(ib->db,
			  ITEM_COLUMNS " WHERE state IN ('new','unconfirmed') AND next_try <= ?1"
				       " ORDER BY next_try, received_at LIMIT ?2",
			  &st);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 1, now));
	if (r == 0)
		r = sqldb_errno(
			sqlite3_bind_int64(st, 2, (int64_t)(max > INT64_MAX ? INT64_MAX : max)));
	return r < 0 ? r : each_row(st, fn, userdata);
}

int inbox_each(struct inbox *ib, inbox_item_fn fn, void *userdata)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r = sqldb_prepare(ib->db, ITEM_COLUMNS " ORDER BY received_at, id", &st);

	return r < 0 ? r : each_row(st, fn, userdata);
}

struct found {
	inbox_item_fn fn;
	void *ud;
	bool any;
};

static int found_one(const struct inbox_item *it, void *ud)
{
	struct found *f = ud;

	f->any = true;
	return f->fn(it, f->ud);
}

int inbox_get(struct inbox *ib, const char *id, inbox_item_fn fn, void *userdata)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	struct found f = { .fn = fn, .ud = userdata };
	int r = sqldb_prepare(ib->db, ITEM_COLUMNS " WHERE id = ?1", &st);

	if (r == 0)
		r = sqldb_bind_text(st, 1, id);
	if (r == 0)
		r = each_row(st, found_one, &f);
	if (r == 0 && !f.any)
		r = -ENOENT;
	return r;
}

/* Inside the caller's transaction. */
static int settle_rows(struct inbox *ib, const struct inbox_settlement *s, size_t n,
		       size_t *ret_final)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int64_t now = now_ms();
	size_t final = 0;
	int r;

	r = sqldb_prepare(ib->db,
			  "UPDATE alert SET state = ?2, next_try = ?3, note = ?4,"
			  " attempts = attempts + 1,"
			  " settled_at = CASE WHEN ?2 IN ('confirmed','done') THEN ?5 ELSE 0 END"
			  " WHERE id = ?1 AND state IN ('new','unconfirmed')",
			  &st);
	for (size_t i = 0; r == 0 && i < n; i++) {
		char note[INBOX_NOTE_MAX];

		snprintf(note, sizeof(note), "%s", s[i].note ? s[i].note : "");
		sqlite3_reset(st);
		r = sqldb_bind_text(st, 1, s[i].id);
		if (r == 0)
			r = sqldb_bind_text(st, 2, inbox_state_to_string(s[i].state));
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(st, 3, s[i].next_try));
		if (r == 0)
			r = sqldb_bind_text(st, 4, s[i].note ? note : NULL);
		if (r == 0)
			r = sqldb_errno(sqlite3_bind_int64(st, 5, now));
		if (r == 0)
			r = sqldb_step_done(st);
		if (r == 0 && sqlite3_changes(ib->db) > 0 &&
		    (s[i].state == INBOX_CONFIRMED || s[i].state == INBOX_DONE))
			final++;
	}
	if (r == 0)
		*ret_final = final;
	return r;
}

int inbox_settle(struct inbox *ib, const struct inbox_settlement *s, size_t n, size_t *ret_final)
{
	size_t final = 0;
	int r;

	r = sqldb_exec(ib->db, "BEGIN IMMEDIATE");
	if (r < 0)
		return r;
	r = sqldb_finish(ib->db, settle_rows(ib, s, n, &final));
	if (r < 0)
		return r;
	if (ret_final)
		*ret_final = final;
	return 0;
}

int inbox_depth(struct inbox *ib, int64_t *ret)
{
	return sqldb_query_int(ib->db,
			       "SELECT count(*) FROM alert WHERE state IN ('new','unconfirmed')",
			       NULL, ret);
}

int inbox_next_due(struct inbox *ib, int64_t *ret)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r, rc;

	r = sqldb_prepare(ib->db,
			  "SELECT min(next_try) FROM alert WHERE state IN ('new','unconfirmed')",
			  &st);
	if (r < 0)
		return r;
	rc = sqlite3_step(st);
	if (rc != SQLITE_ROW)
		return sqldb_errno(rc) < 0 ? sqldb_errno(rc) : -ENOENT;
	if (sqlite3_column_type(st, 0) == SQLITE_NULL)
		return -ENOENT;
	*ret = sqlite3_column_int64(st, 0);
	return 0;
}

int inbox_prune(struct inbox *ib, int64_t before_ms, int64_t *ret_deleted)
{
	_cleanup_stmt_ sqlite3_stmt *st = NULL;
	int r;

	r = sqldb_prepare(ib->db,
			  "DELETE FROM alert WHERE state IN ('confirmed','done')"
			  " AND received_at < ?1",
			  &st);
	if (r == 0)
		r = sqldb_errno(sqlite3_bind_int64(st, 1, before_ms));
	if (r == 0)
		r = sqldb_step_done(st);
	if (r == 0 && ret_deleted)
		*ret_deleted = sqlite3_changes(ib->db);
	return r;
}

/* --- the group commit ------------------------------------------------------------------- */

enum ticket_kind {
	TICKET_ALERTS, /* a request's alerts to store */
	TICKET_SETTLE, /* the sync thread's settlements */
	TICKET_PRUNE,
};

struct inbox_ticket {
	struct inbox_ticket *next;
	struct inbox_writer *w;
	_Atomic unsigned refs;	  /* the writer's and the waiter's */
	sem_t done;		  /* posted once, when the ticket is answered */
	_Atomic bool answered;	  /* result and count are set (release/acquire) */
	inbox_answered_fn notify; /* under w->lock: called once answered, unless released */
	void *notify_ud;
	int result;
	size_t count; /* alerts newly stored, settled to a final state, or pruned */
	enum ticket_kind kind;
	size_t n;
	struct inbox_alert *alerts;	 /* copies, in one allocation with the ticket */
	struct inbox_settlement *settle; /* ditto */
	int64_t before_ms;		 /* prune */
};

struct inbox_writer {
	struct inbox *ib;
	struct inbox_writer_options opt;
	pthread_t thread;
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t work; /* tickets queued, or stopping */
	struct inbox_ticket *head, *tail;
	size_t queued; /* alerts in the queue */
	bool idle;     /* the writer waits for a ticket: the next one wakes it */
	bool stopping;
	int health;
	char health_msg[INBOX_ERR_MAX];

	_Atomic int64_t depth;
	_Atomic int64_t beat_ms; /* monotonic: the writer thread's last turn or idle wake-up */
};

static void ticket_unref(struct inbox_ticket *t)
{
	if (atomic_fetch_sub(&t->refs, 1) == 1) {
		sem_destroy(&t->done);
		free(t);
	}
}

/* One ticket inside the batch's transaction, in a savepoint of its own. */
static int write_ticket(struct inbox_writer *w, struct inbox_ticket *t)
{
	sqlite3 *db = w->ib->db;
	size_t fresh = 0;
	int64_t depth, pruned = 0;
	int r;

	r = sqldb_exec(db, "SAVEPOINT ticket");
	if (r < 0)
		return r;
	if (t->kind != TICKET_ALERTS) {
		r = t->kind == TICKET_SETTLE ? settle_rows(w->ib, t->settle, t->n, &t->count)
					     : inbox_prune(w->ib, t->before_ms, &pruned);
		if (t->kind == TICKET_PRUNE)
			t->count = (size_t)pruned;
		if (r < 0) {
			sqldb_exec(db, "ROLLBACK TO ticket");
			sqldb_exec(db, "RELEASE ticket");
			return r;
		}
		r = sqldb_exec(db, "RELEASE ticket");
		if (r == 0 && t->kind == TICKET_SETTLE)
			atomic_fetch_sub(&w->depth, (int64_t)t->count);
		return r;
	}
	r = insert(w->ib, t->alerts, t->n, &fresh);
	depth = atomic_load(&w->depth);
	if (r == 0 && fresh > 0 && w->opt.max_depth && (uint64_t)depth + fresh > w->opt.max_depth) {
		/* The count may be stale (the sync thread settled some): count the file, this
		 * ticket's rows included. */
		int64_t exact = 0;

		r = inbox_depth(w->ib, &exact);
		if (r == 0) {
			atomic_store(&w->depth, exact - (int64_t)fresh);
			if ((uint64_t)exact > w->opt.max_depth)
				r = -EDQUOT;
		}
	}
	if (r < 0) {
		sqldb_exec(db, "ROLLBACK TO ticket");
		sqldb_exec(db, "RELEASE ticket");
		return r;
	}
	r = sqldb_exec(db, "RELEASE ticket");
	if (r == 0) {
		t->count = fresh;
		atomic_fetch_add(&w->depth, (int64_t)fresh);
	}
	return r;
}

static void set_health(struct inbox_writer *w, int r)
{
	pthread_mutex_lock(&w->lock);
	w->health = r;
	if (r < 0)
		snprintf(w->health_msg, sizeof(w->health_msg), "%s (%s)", sqlite3_errmsg(w->ib->db),
			 strerror(-r));
	else
		w->health_msg[0] = '\0';
	pthread_mutex_unlock(&w->lock);
}

/* Writes a batch and sets every ticket's result; returns the alerts newly stored. */
static size_t write_batch(struct inbox_writer *w, struct inbox_ticket *batch)
{
	size_t fresh = 0, settled = 0;
	int r;

	r = sqldb_exec(w->ib->db, "BEGIN IMMEDIATE");
	for (struct inbox_ticket *t = batch; t; t = t->next) {
		t->result = r < 0 ? r : write_ticket(w, t);
		if (t->result == 0 && t->kind == TICKET_ALERTS)
			fresh += t->count;
		else if (t->result == 0 && t->kind == TICKET_SETTLE)
			settled += t->count;
		else if (t->result < 0 && t->result != -EDQUOT && t->result != -EINVAL && r == 0)
			r = t->result; /* the file failed: nothing of the batch commits */
	}
	if (r == 0)
		r = sqldb_exec(w->ib->db, "COMMIT");
	set_health(w, r); /* SQLite's reason, before the ROLLBACK resets it */
	if (r < 0) {
		sqldb_exec(w->ib->db, "ROLLBACK");
		for (struct inbox_ticket *t = batch; t; t = t->next)
			if (t->result == 0 || t->result == -EDQUOT)
				t->result = r;
		atomic_fetch_sub(&w->depth, (int64_t)fresh - (int64_t)settled);
		return 0;
	}
	return fresh;
}

static void *writer_main(void *arg)
{
	struct inbox_writer *w = arg;
	int64_t committed = 0; /* new alerts committed by this writer */
	bool stalled = false;  /* the inbox-commit test hook, once */

	for (;;) {
		struct inbox_ticket *batch, *next;
		size_t fresh;

		pthread_mutex_lock(&w->lock);
		atomic_store(&w->beat_ms, monotonic_ms());
		while (!w->head && !w->stopping) {
			w->idle = true;
			if (w->opt.beat_ms > 0) {
				struct timespec until;

				clock_gettime(CLOCK_MONOTONIC, &until);
				until.tv_sec += w->opt.beat_ms / 1000;
				until.tv_nsec += (w->opt.beat_ms % 1000) * 1000000;
				if (until.tv_nsec >= 1000000000) {
					until.tv_sec++;
					until.tv_nsec -= 1000000000;
				}
				pthread_cond_timedwait(&w->work, &w->lock, &until);
			} else {
				pthread_cond_wait(&w->work, &w->lock);
			}
			atomic_store(&w->beat_ms, monotonic_ms());
		}
		w->idle = false;
		batch = w->head;
		w->head = w->tail = NULL;
		w->queued = 0;
		pthread_mutex_unlock(&w->lock);
		if (!batch)
			break; /* stopping, and nothing left */
		/* Test builds: the first commit of a request's alerts stalls 15 s, as on a disk
		 * that does not answer (tests/e2e/106-receiver-stalled-commit.sh). */
		if (!stalled && batch->kind == TICKET_ALERTS) {
			stalled = true;
			testhook_stall("inbox-commit", 15);
		}
		fresh = write_batch(w, batch);
		committed += fresh;
		/* Test builds: killed here, the batch is committed and no ticket answered. */
		if (fresh > 0)
			testhook_crash("inbox", committed);
		/* Under the lock: a ticket's notification and its release never cross. */
		pthread_mutex_lock(&w->lock);
		for (struct inbox_ticket *t = batch; t; t = next) {
			next = t->next;
			atomic_store_explicit(&t->answered, true, memory_order_release);
			sem_post(&t->done);
			if (t->notify)
				t->notify(t->notify_ud);
			ticket_unref(t);
		}
		pthread_mutex_unlock(&w->lock);
		if (fresh > 0 && w->opt.on_commit)
			w->opt.on_commit(fresh, w->opt.userdata);
	}
	return NULL;
}

int inbox_writer_new(const char *path, const struct inbox_writer_options *opt,
		     struct inbox_writer **ret, char err[static INBOX_ERR_MAX])
{
	struct inbox_writer *w;
	pthread_condattr_t ca;
	int64_t depth = 0;
	int r;

	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->opt = *opt;
	atomic_init(&w->beat_ms, monotonic_ms());
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->work, &ca);
	pthread_condattr_destroy(&ca);
	r = inbox_open(path, &opt->inbox, &w->ib, err);
	if (r == 0) {
		r = inbox_depth(w->ib, &depth);
		if (r < 0)
			snprintf(err, INBOX_ERR_MAX, "%s: cannot count the alerts: %s", path,
				 inbox_errmsg(w->ib));
	}
	if (r == 0) {
		atomic_store(&w->depth, depth);
		r = -pthread_create(&w->thread, NULL, writer_main, w);
		if (r < 0)
			snprintf(err, INBOX_ERR_MAX, "cannot start the inbox writer: %s",
				 strerror(-r));
	}
	if (r < 0) {
		inbox_writer_free(w);
		return r;
	}
	w->started = true;
	*ret = w;
	return 0;
}

int64_t inbox_writer_beat(struct inbox_writer *w)
{
	return atomic_load(&w->beat_ms);
}

void inbox_writer_free(struct inbox_writer *w)
{
	if (!w)
		return;
	if (w->started) {
		pthread_mutex_lock(&w->lock);
		w->stopping = true;
		pthread_cond_signal(&w->work);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	inbox_close(w->ib);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->lock);
	free(w);
}

/* Queues a ticket the caller filled; frees it when it cannot be queued. */
static int enqueue(struct inbox_writer *w, struct inbox_ticket *t, struct inbox_ticket **ret)
{
	int r = 0;

	t->w = w;
	atomic_init(&t->refs, 2);
	atomic_init(&t->answered, false);
	if (sem_init(&t->done, 0, 0) < 0) {
		free(t);
		return -errno;
	}
	pthread_mutex_lock(&w->lock);
	if (w->stopping)
		r = -ESHUTDOWN;
	else if (t->kind == TICKET_ALERTS && w->queued + t->n > INBOX_QUEUE_MAX)
		r = -EAGAIN;
	if (r == 0) {
		if (w->tail)
			w->tail->next = t;
		else
			w->head = t;
		w->tail = t;
		if (t->kind == TICKET_ALERTS)
			w->queued += t->n;
		/* A busy writer takes the whole queue when its commit is done: only an idle
		 * one is woken, once (a wake-up is a context switch: one per request would
		 * cost more than the request itself). */
		if (w->idle) {
			w->idle = false;
			pthread_cond_signal(&w->work);
		}
	}
	pthread_mutex_unlock(&w->lock);
	if (r < 0) {
		sem_destroy(&t->done);
		free(t);
		return r;
	}
	*ret = t;
	return 0;
}

int inbox_writer_submit(struct inbox_writer *w, const struct inbox_alert *a, size_t n,
			struct inbox_ticket **ret)
{
	struct inbox_ticket *t;
	size_t size = sizeof(*t) + n * sizeof(*a);
	char *p;

	if (n == 0 || n > INBOX_QUEUE_MAX)
		return n == 0 ? -EINVAL : -EAGAIN;
	for (size_t i = 0; i < n; i++) {
		if (!a[i].id || !a[i].body)
			return -EINVAL;
		size += strlen(a[i].id) + strlen(a[i].body) + 2;
	}
	t = calloc(1, size);
	if (!t)
		return -ENOMEM;
	t->kind = TICKET_ALERTS;
	t->n = n;
	t->alerts = (struct inbox_alert *)(t + 1);
	p = (char *)(t->alerts + n);
	for (size_t i = 0; i < n; i++) {
		size_t li = strlen(a[i].id) + 1, lb = strlen(a[i].body) + 1;

		t->alerts[i] = (struct inbox_alert){ .id = p,
						     .body = p + li,
						     .received_at = a[i].received_at };
		memcpy(p, a[i].id, li);
		memcpy(p + li, a[i].body, lb);
		p += li + lb;
	}
	return enqueue(w, t, ret);
}

int inbox_writer_settle(struct inbox_writer *w, const struct inbox_settlement *s, size_t n,
			struct inbox_ticket **ret)
{
	struct inbox_ticket *t;
	size_t size = sizeof(*t) + n * sizeof(*s);
	char *p;

	for (size_t i = 0; i < n; i++) {
		if (!s[i].id)
			return -EINVAL;
		size += strlen(s[i].id) + 1 + (s[i].note ? strlen(s[i].note) + 1 : 0);
	}
	t = calloc(1, size);
	if (!t)
		return -ENOMEM;
	t->kind = TICKET_SETTLE;
	t->n = n;
	t->settle = (struct inbox_settlement *)(t + 1);
	p = (char *)(t->settle + n);
	for (size_t i = 0; i < n; i++) {
		size_t li = strlen(s[i].id) + 1;

		t->settle[i] = s[i];
		t->settle[i].id = memcpy(p, s[i].id, li);
		p += li;
		if (s[i].note) {
			size_t ln = strlen(s[i].note) + 1;

			t->settle[i].note = memcpy(p, s[i].note, ln);
			p += ln;
		}
	}
	return enqueue(w, t, ret);
}

int inbox_writer_prune(struct inbox_writer *w, int64_t before_ms, struct inbox_ticket **ret)
{
	struct inbox_ticket *t = calloc(1, sizeof(*t));

	if (!t)
		return -ENOMEM;
	t->kind = TICKET_PRUNE;
	t->before_ms = before_ms;
	return enqueue(w, t, ret);
}

int inbox_ticket_wait(struct inbox_ticket *t, int64_t timeout_ms, size_t *ret_count)
{
	struct timespec until;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	while (sem_clockwait(&t->done, CLOCK_MONOTONIC, &until) < 0 && errno == EINTR)
		;
	/* Answered even if the wait timed out just as the writer posted. */
	if (!atomic_load_explicit(&t->answered, memory_order_acquire))
		r = -ETIMEDOUT;
	else {
		r = t->result;
		if (r == 0 && ret_count)
			*ret_count = t->count;
	}
	ticket_unref(t);
	return r;
}

int inbox_ticket_notify(struct inbox_ticket *t, inbox_answered_fn fn, void *userdata)
{
	struct inbox_writer *w = t->w;
	bool answered;

	pthread_mutex_lock(&w->lock);
	answered = atomic_load_explicit(&t->answered, memory_order_acquire);
	if (!answered) {
		t->notify = fn;
		t->notify_ud = userdata;
	}
	pthread_mutex_unlock(&w->lock);
	return answered ? 1 : 0;
}

int inbox_ticket_detach(struct inbox_ticket *t)
{
	struct inbox_writer *w = t->w;
	bool answered;

	pthread_mutex_lock(&w->lock);
	answered = atomic_load_explicit(&t->answered, memory_order_acquire);
	if (!answered)
		t->notify = NULL;
	pthread_mutex_unlock(&w->lock);
	return answered ? 1 : 0;
}

void inbox_ticket_release(struct inbox_ticket *t)
{
	struct inbox_writer *w;

	if (!t)
		return;
	w = t->w;
	pthread_mutex_lock(&w->lock);
	t->notify = NULL;
	pthread_mutex_unlock(&w->lock);
	ticket_unref(t);
}

int64_t inbox_writer_depth(struct inbox_writer *w)
{
	return atomic_load(&w->depth);
}

int inbox_writer_health(struct inbox_writer *w, char msg[static INBOX_ERR_MAX])
{
	int r;

	pthread_mutex_lock(&w->lock);
	r = w->health;
	snprintf(msg, INBOX_ERR_MAX, "%s", w->health_msg);
	pthread_mutex_unlock(&w->lock);
	return r;
}
