/* inbox — the webhook alerts the receiver accepted, kept durably until the sync thread has
 * settled them, in an SQLite file of their own beside the store ([webhook] inbox, default
 * "<store path>-inbox"), so that an inbox write never waits behind a sync's apply.
 *
 * One row per alert id: the alert's JSON as received (bounded by the parser), when it came,
 * and where it stands:
 *   new          accepted, not yet looked up
 *   unconfirmed  Threat Stack did not know it (yet) when asked: tried again at next_try
 *   confirmed    Threat Stack knew it and its refresh is committed to the store (final)
 *   done         given up: never confirmed within the confirmation window (final); it was
 *                never pushed as a confirmed fact
 * An id seen again is stored once: the row stays as it is, whatever its state.
 *
 * Two ways in:
 *   struct inbox         one SQLite connection for one thread: the sync thread reads the due
 *                        alerts with it; tests and tools may also write through it.
 *   struct inbox_writer  the one writer of a running daemon (group commit). Handler threads
 *                        submit a request's alerts, the sync thread its settlements and
 *                        prunes; each gets a ticket to wait on. One writer thread takes
 *                        everything pending, writes it in one transaction (one fsync) and
 *                        only then answers the tickets, so a handler answers 2xx only after
 *                        its alerts are durable. It enforces inbox_max (new + unconfirmed
 *                        alerts): a request that would go over stores nothing and its
 *                        ticket says -EDQUOT.
 *
 * Ownership: the caller owns what open/new return and frees it with the matching close/free
 * (NULL accepted). Alerts given to inbox_put() and inbox_writer_submit() are copied.
 * Threads: a struct inbox is used by one thread at a time; the inbox_writer_* functions but
 * new and free, and inbox_ticket_wait(), from any thread. Pure: no logging.
 */
#ifndef TSGRAPHD_INBOX_H
#define TSGRAPHD_INBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define INBOX_ERR_MAX	     512
#define INBOX_APPLICATION_ID 0x54534749 /* "TSGI" */
#define INBOX_ID_MAX	     128	/* bytes of an alert id */
#define INBOX_NOTE_MAX	     256	/* the last reason stored with an alert */
#define INBOX_QUEUE_MAX	     4096	/* alerts waiting for the writer; more is -EAGAIN */

enum inbox_state {
	INBOX_NEW,
	INBOX_UNCONFIRMED,
	INBOX_CONFIRMED,
	INBOX_DONE,
};

struct inbox_options {
	bool synchronous_full;
	int busy_timeout_ms; /* 0: 30 s */
};

/* One alert to store. */
struct inbox_alert {
	const char *id;
	const char *body;    /* its JSON */
	int64_t received_at; /* ms since the epoch */
};

/* One alert as stored, handed to callbacks (valid during the call only). */
struct inbox_item {
	const char *id;
	const char *body;
	int64_t received_at;
	enum inbox_state state;
	int64_t attempts;
	int64_t next_try;
};

/* How one alert was settled by the sync thread. */
struct inbox_settlement {
	const char *id;
	enum inbox_state state;
	int64_t next_try; /* ms, for new and unconfirmed */
	const char *note; /* why, or NULL */
};

typedef int (*inbox_item_fn)(const struct inbox_item *it, void *userdata);

const char *inbox_state_to_string(enum inbox_state s);

struct inbox;

int inbox_open(const char *path, const struct inbox_options *opt, struct inbox **ret,
	       char err[static INBOX_ERR_MAX]);
void inbox_close(struct inbox *ib);
const char *inbox_errmsg(struct inbox *ib);
/* Stores the alerts in one transaction; an id already stored (or repeated in a) is left as
 * it is. ret_new (may be NULL) gets how many were new. */
int inbox_put(struct inbox *ib, const struct inbox_alert *a, size_t n, size_t *ret_new);
/* The alerts due at now (new or unconfirmed, next_try <= now), at most max: new alerts
 * first (next_try 0), oldest first, then the retries by the time they fell due. The order
 * is the pending index's, so the query reads max rows however many are due. */
int inbox_due(struct inbox *ib, int64_t now, size_t max, inbox_item_fn fn, void *userdata);
/* Every stored alert, oldest first (tests, status). */
int inbox_each(struct inbox *ib, inbox_item_fn fn, void *userdata);
/* One stored alert by id; -ENOENT when it is not there. */
int inbox_get(struct inbox *ib, const char *id, inbox_item_fn fn, void *userdata);
/* Settles alerts in one transaction; each settled one counts an attempt. ret_final (may be
 * NULL) gets how many left new/unconfirmed for confirmed/done. */
int inbox_settle(struct inbox *ib, const struct inbox_settlement *s, size_t n, size_t *ret_final);
/* Alerts still to settle (new + unconfirmed). */
int inbox_depth(struct inbox *ib, int64_t *ret);
/* The earliest next_try of the alerts still to settle; -ENOENT when there are none. */
int inbox_next_due(struct inbox *ib, int64_t *ret);
/* Deletes settled alerts received before before_ms (their ids no longer deduplicate). */
int inbox_prune(struct inbox *ib, int64_t before_ms, int64_t *ret_deleted);

struct inbox_writer;
struct inbox_ticket;

struct inbox_writer_options {
	struct inbox_options inbox;
	uint64_t max_depth; /* inbox_max: new + unconfirmed alerts; 0 is no limit */
	/* Called by the writer thread after each commit that stored new alerts (say, to wake the
	 * sync thread). May be NULL. */
	void (*on_commit)(size_t n_new, void *userdata);
	void *userdata;
	/* The watchdog: an idle writer wakes at least this often to show it is alive
	 * (inbox_writer_beat); 0 never wakes while idle. */
	int64_t beat_ms;
};

/* Opens its own connection to path and starts the writer thread. */
int inbox_writer_new(const char *path, const struct inbox_writer_options *opt,
		     struct inbox_writer **ret, char err[static INBOX_ERR_MAX]);
/* Commits everything submitted so far, answers every ticket, stops the thread, closes. */
void inbox_writer_free(struct inbox_writer *w);
/* The monotonic ms of the writer thread's last sign of life: each turn of its loop, and each
 * beat_ms while idle. A writer stuck in a commit does not move it. */
int64_t inbox_writer_beat(struct inbox_writer *w);
/* Queues a request's alerts (copied) for the next commit; *ret is the ticket to wait on, which
 * must be waited on or released (either frees it) before the writer is freed. -EAGAIN at once when the
 * queue holds INBOX_QUEUE_MAX alerts; -ESHUTDOWN once stopping. */
int inbox_writer_submit(struct inbox_writer *w, const struct inbox_alert *a, size_t n,
			struct inbox_ticket **ret);
/* Queues settlements (copied; as inbox_settle()) for the next commit. */
int inbox_writer_settle(struct inbox_writer *w, const struct inbox_settlement *s, size_t n,
			struct inbox_ticket **ret);
/* Queues a prune (as inbox_prune()) for the next commit. */
int inbox_writer_prune(struct inbox_writer *w, int64_t before_ms, struct inbox_ticket **ret);
/* Waits for the ticket's commit and frees the ticket: 0 when it is committed, *ret_count (may
 * be NULL) saying how many alerts were newly stored, settled to a final state, or pruned;
 * -EDQUOT when a request's alerts would take the inbox over max_depth (nothing of them
 * stored); -ETIMEDOUT after timeout_ms (it may still be committed); another negative errno
 * when the commit failed (nothing of it stored). */
int inbox_ticket_wait(struct inbox_ticket *t, int64_t timeout_ms, size_t *ret_count);
/* Called by the writer thread, with the writer's lock held, once the ticket is answered (so
 * inbox_ticket_wait() returns at once): it must be quick and must not call into the writer
 * (an event loop's wake-up, say). */
typedef void (*inbox_answered_fn)(void *userdata);
/* Asks for fn(userdata) when the ticket is answered; 1 when it is answered already (fn is
 * not called), else 0. The ticket is still the caller's, to wait on or to release. */
int inbox_ticket_notify(struct inbox_ticket *t, inbox_answered_fn fn, void *userdata);
/* Cancels the notification: 1 when the ticket was answered already (the notification, if
 * one was asked for, has been made), else 0 and none will be. The ticket stays the caller's,
 * to wait on (-ETIMEDOUT at once while unanswered) or to release. */
int inbox_ticket_detach(struct inbox_ticket *t);
/* Gives the ticket up without waiting (its commit goes on): no notification reaches the
 * caller after this returns. NULL is a no-op. */
void inbox_ticket_release(struct inbox_ticket *t);
/* Alerts still to settle, as the writer counts them. */
int64_t inbox_writer_depth(struct inbox_writer *w);
/* 0 when the last commit succeeded (or none was tried), else its negative errno with
 * SQLite's reason in msg. */
int inbox_writer_health(struct inbox_writer *w, char msg[static INBOX_ERR_MAX]);

#endif
