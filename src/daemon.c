/* daemon — `tsgraphd run`.
 *
 * Bring-up, in dependency order: signals (SIGINT/SIGTERM/SIGHUP blocked and read from a signalfd,
 * SIGPIPE ignored), the store's writer lock (one writer process per store: a `tsgraphd sync`
 * beside the daemon is refused), metrics, the cancel handle, the inbox writer, the sync
 * thread, then the receiver, on its own socket or on the one systemd passed (LISTEN_FDS).
 * The main thread then waits for a signal, or for the sync thread to give up. Take-down, in
 * reverse: the cancel handle fires (every wait of the sync thread ends within a second, a
 * run in progress applies nothing), the receiver stops accepting and lets its requests in
 * flight finish, the sync thread is joined, the inbox writer commits what it still holds.
 *
 * The sync thread owns the store, the API client and an inbox connection of its own. Its
 * loop: a full sync when one is due; the inbox's due alerts in batches of
 * DAEMON_REFRESH_BATCH, each one sync_refresh() whose per-alert outcome settles the alerts
 * (confirmed; unconfirmed and retried with a doubling delay; given up as done once
 * confirm_window has passed since it came); delivery to every sink after every run that
 * changed something; then it sleeps until the next full sync, the next retry, the inbox
 * writer's wake-up (an eventfd written after each commit with new alerts) or the cancel
 * handle. A refresh waits while a full sync runs (one engine, one store connection).
 *
 * The alert's state is settled after the store committed its refresh: a crash in between
 * leaves it new, and it is refreshed again (the second time changes nothing). An alert is
 * acknowledged by the receiver only once in the inbox, so nothing acknowledged is lost.
 *
 * systemd (sd_notify; every call is a no-op without NOTIFY_SOCKET): READY=1 once the receiver
 * listens and the sync thread has begun its first full sync; STATUS= one line (the last run,
 * the stored agents, the sinks' total backlog), sent by the sync thread after each step;
 * STOPPING=1 as the first line of the stop; RELOADING=1 (with MONOTONIC_USEC=) and then
 * READY=1 around a reload.
 *
 * The watchdog (WATCHDOG_USEC) is pinged by the main thread at half its interval, but only
 * while every thread shows progress: the sync thread's heartbeat (beat_ms, bumped at each
 * turn of its loop, after each API answer and sink delivery, and at least every quarter
 * interval while it sleeps; it delivers to the sinks itself, so a stuck sink is a stuck sync
 * thread) younger than the interval; the inbox writer's (each turn of its loop, and every
 * quarter interval while idle) too, though never before WRITER_STUCK_MIN_MS (it may wait
 * that long for a locked inbox by design); and no receiver event-loop thread inside one
 * call of a request's handling for longer than the interval. One stuck thread stops the
 * pings, with one line naming it (and the sync thread's step), and
 * systemd restarts the service.
 *
 * Reload (SIGHUP, docs/configuration.md). The main thread reads the configuration file
 * again, with its secrets, into a new snapshot; keys that need a restart (the organization,
 * the store, the inbox, the receiver's listen address and tls, the receiver on or off) keep
 * their running values, with a warning each; the receiver starts serving the new snapshot
 * (the certificate and key read again) on the same socket; only then is the snapshot
 * swapped in, under the lock, with the log's redaction set replaced by its secrets and its
 * log level. Anything that fails before the swap (a parse error, an unreadable secret, a
 * certificate or key that is refused) leaves the running configuration whole, with one
 * line why.
 * Ownership: the snapshot is reference-counted (config_ref); the daemon holds the current
 * one, the sync thread a reference of its own that it trades for the current one at the
 * top of its loop, between two steps (a new API client and engine, the rate limiter told
 * the new budget, the sinks opened from it at their next delivery), and each receiver
 * listener one for the requests it serves. The old snapshot is freed, its secrets wiped,
 * with its last reference.
 */
#include "tsgraphd/daemon.h"
#include "tsgraphd/cancel.h"
#include "tsgraphd/inbox.h"
#include "tsgraphd/log.h"
#include "tsgraphd/metrics.h"
#include "tsgraphd/sink.h"
#include "tsgraphd/store.h"
#include "tsgraphd/sync.h"
#include "tsgraphd/testhook.h"
#include "tsgraphd/tsapi.h"
#include "tsgraphd/util.h"
#include "tsgraphd/webhook.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#define HEALTH_POLL_FACTOR 3 /* /healthz: a full sync older than this many poll_intervals */
#define PRUNE_EVERY_MS	   (3600 * 1000)
#define NOTE_MAX	   256
#define INBOX_WAIT_MS	   60000 /* the sync thread's wait for a settlement's commit */
#define READY_POLL_MS	   20	 /* the main thread's look for the sync thread's first beat */
#define EXPIRE_EVERY_MS	   1000	 /* webhook_expire(): requests too long on their commit */
#define AGENT_TYPE	   "threatstack_agent"
/* The inbox writer may wait this long for a locked inbox by design (twice its busy wait). */
#define WRITER_STUCK_MIN_MS (2 * DAEMON_INBOX_BUSY_MS)

struct daemon {
	const struct config *c; /* the current snapshot: the main thread swaps it under lock */
	struct metrics *metrics;
	struct cancel *cancel;
	struct inbox_writer *writer;
	struct webhook *webhook;
	int wake_fd;	    /* eventfd: new alerts in the inbox */
	int sync_end_fd;    /* eventfd: the sync thread ended on its own */
	int64_t started_ms; /* wall clock */
	pthread_t sync_thread;
	bool sync_started;
	atomic_int sync_result;	 /* the sync thread's end: 0, or why it gave up */
	int64_t watchdog_ms;	 /* WATCHDOG_USEC in ms; 0 without a watchdog */
	_Atomic int64_t beat_ms; /* monotonic: the sync thread's last sign of progress; 0 before */
	_Atomic(const char *) doing; /* the sync thread's step, for the watchdog's line */

	const struct config *sync_c; /* the snapshot the sync thread runs on (its reference) */
	pthread_mutex_t lock;	     /* guards c, sync_c and store_error */
	char store_error[SYNC_MSG_MAX];
};

/* A store connection, an API client and the sync context on them. */
struct engine {
	struct store *s;
	struct tsapi *api;
	struct sync *sy;
};

/* The sync thread's own state. Full syncs run on one engine; webhook refreshes, deliveries
 * and pruning on another (its own connection, so its own staging and key index), so that a
 * refresh can run while a full sync waits between two requests. Both clients share one
 * limiter: the refresh's requests take the next turns. */
struct worker {
	struct daemon *d;
	const struct config *c; /* its reference: the current snapshot when its turn began */
	struct tsapi_limiter *limiter;
	struct engine full, fast;
	struct inbox *ib;
	bool in_full_sync, yielding;
	int64_t full_retry_ms;	      /* after a full sync that failed: when the next one is due */
	const struct config *refused; /* a reloaded snapshot this thread could not take (ref) */
	/* for STATUS= */
	bool full_done;			     /* a full sync committed in this process */
	const char *last_kind, *last_result; /* NULL before the first run ended */
	int64_t last_at;		     /* wall clock */
	int64_t backlog;		     /* changes not yet delivered, all sinks */
};

static void beat(struct daemon *d)
{
	atomic_store(&d->beat_ms, monotonic_ms());
}

/* The sync thread's step, for the watchdog's line; and a beat. */
static void step(struct daemon *d, const char *doing)
{
	atomic_store(&d->doing, doing);
	beat(d);
}

/* A reference to the current snapshot, dropped with config_free(). Any thread. */
static const struct config *config_get(struct daemon *d)
{
	const struct config *c;

	pthread_mutex_lock(&d->lock);
	c = config_ref(d->c);
	pthread_mutex_unlock(&d->lock);
	return c;
}

/* STATUS=: one line for `systemctl status`; a running full sync first (refreshes end while
 * it runs: "last refresh sync ok" alone would read as if the first one were done). */
static void notify_status(struct worker *wk)
{
	const char *running = !wk->in_full_sync ? ""
			      : wk->full_done	? "full sync running; "
						: "first full sync running; ";
	char when[32] = "";
	int64_t agents = -1;
	time_t t = (time_t)(wk->last_at / 1000);
	struct tm tm;

	if (wk->fast.s && store_type_count(wk->fast.s, AGENT_TYPE, &agents) < 0)
		agents = -1;
	if (!wk->last_kind) {
		(void)sd_notifyf(0, "STATUS=first full sync running; %" PRId64 " agents stored",
				 agents);
		return;
	}
	if (gmtime_r(&t, &tm))
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	(void)sd_notifyf(0,
			 "STATUS=%slast %s sync %s at %s; %" PRId64 " agents; backlog %" PRId64
			 " change%s",
			 running, wk->last_kind, wk->last_result, when, agents, wk->backlog,
			 wk->backlog == 1 ? "" : "s");
}

static void wake(int fd)
{
	uint64_t one = 1;

	if (fd >= 0 && write(fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_debug("daemon: cannot write a wake-up: %s", strerror(errno));
}

static void drain_fd(int fd)
{
	uint64_t n;

	while (fd >= 0 && read(fd, &n, sizeof(n)) > 0)
		;
}

static void on_inbox_commit(size_t n_new, void *ud)
{
	struct daemon *d = ud;

	metrics_inbox_depth(d->metrics, inbox_writer_depth(d->writer));
	metrics_inbox_commit(d->metrics, n_new);
	wake(d->wake_fd);
}

static void on_api_response(long status, void *ud)
{
	struct daemon *d = ud;

	beat(d);
	metrics_api_response(d->metrics, status);
}

/* /healthz, from the receiver's threads. */
static int health(char *reason, size_t size, void *ud)
{
	struct daemon *d = ud;
	const struct config *c = config_get(d);
	char msg[INBOX_ERR_MAX];
	int64_t last, since, limit = (int64_t)c->ts.poll_interval * HEALTH_POLL_FACTOR * 1000;
	int r;

	config_free(c);
	if (d->writer && (r = inbox_writer_health(d->writer, msg)) < 0) {
		snprintf(reason, size, "inbox not writable: %s", msg);
		return r;
	}
	pthread_mutex_lock(&d->lock);
	if (d->store_error[0]) {
		snprintf(reason, size, "store not writable: %s", d->store_error);
		pthread_mutex_unlock(&d->lock);
		return -EIO;
	}
	pthread_mutex_unlock(&d->lock);
	last = metrics_last_sync_ok(d->metrics, "full");
	since = last ? last : d->started_ms;
	if (now_ms() - since > limit) {
		if (last)
			snprintf(reason, size,
				 "the last successful full sync was %" PRId64
				 " s ago (more than %d x poll_interval)",
				 (now_ms() - last) / 1000, HEALTH_POLL_FACTOR);
		else
			snprintf(reason, size,
				 "no successful full sync in the %" PRId64
				 " s since start (more than %d x poll_interval)",
				 (now_ms() - d->started_ms) / 1000, HEALTH_POLL_FACTOR);
		return -ETIME;
	}
	return 0;
}

/* A run's end: metrics, and the store's health (a run that could not commit). */
static void note_run(struct worker *wk, const char *kind, int r, const struct sync_report *rep,
		     int64_t duration_ms)
{
	struct daemon *d = wk->d;
	const char *result = r == -ECANCELED		  ? "interrupted"
			     : r == 0 && rep->diff.n_held ? "held"
			     : r == 0			  ? "ok"
			     : r == -EAGAIN		  ? "partial"
							  : "failed";

	metrics_sync_run(d->metrics, kind, result, duration_ms, rep->diff.created,
			 rep->diff.updated, rep->diff.deleted, now_ms());
	if (r == -ECANCELED)
		return;
	wk->last_kind = kind;
	wk->last_result = result;
	wk->last_at = now_ms();
	pthread_mutex_lock(&d->lock);
	if (r == 0 || r == -EAGAIN)
		d->store_error[0] = '\0';
	else
		snprintf(d->store_error, sizeof(d->store_error), "%s",
			 rep->message[0] ? rep->message : strerror(-r));
	pthread_mutex_unlock(&d->lock);
}

struct backlog_ctx {
	struct worker *wk;
	int64_t max_seq;
	int64_t total; /* the backlog summed over the sinks */
};

static void on_sink(size_t index, int64_t delivered, int result, void *ud)
{
	struct backlog_ctx *b = ud;
	int64_t cursor = 0;

	const char *name = b->wk->c->sinks[index].name;

	beat(b->wk->d);
	if (store_cursor_get(b->wk->fast.s, name, &cursor) < 0)
		cursor = 0;
	b->total += b->max_seq - cursor;
	metrics_sink(b->wk->d->metrics, name, delivered, result < 0 && result != -ECANCELED,
		     b->max_seq - cursor);
}

static void deliver(struct worker *wk)
{
	struct backlog_ctx b = { .wk = wk };

	step(wk->d, "delivering to the sinks");
	if (store_outbox_max_seq(wk->fast.s, &b.max_seq) < 0)
		b.max_seq = 0;
	(void)sink_drain_all(wk->c, wk->fast.s, wk->d->cancel, false, on_sink, &b);
	wk->backlog = b.total;
}

/* A test build's point "full-retry-1s" makes the first try again come after 1 s. */
static int64_t full_retry_first(void)
{
	return testhook_pause_at("full-retry-1s") ? 1000 : DAEMON_FULL_RETRY_MIN_MS;
}

static void full_sync(struct worker *wk)
{
	struct sync_options so = { .source = "poll" };
	struct sync_report rep = { 0 };
	int64_t t0 = monotonic_ms(), poll_ms = (int64_t)wk->c->ts.poll_interval * 1000;
	int r;

	step(wk->d, "in a full sync");
	wk->in_full_sync = true;
	r = sync_full(wk->full.sy, &so, &rep);
	wk->in_full_sync = false;
	note_run(wk, "full", r, &rep, monotonic_ms() - t0);
	if (r == -ECANCELED)
		return;
	if (r == 0 || r == -EAGAIN)
		wk->full_done = true;
	/* One that failed, or left a listing incomplete, is tried again sooner than the next
	 * poll: after DAEMON_FULL_RETRY_MIN_MS, doubling up to poll_interval. */
	wk->full_retry_ms = r == 0			      ? 0
			    : wk->full_retry_ms == 0	      ? full_retry_first()
			    : wk->full_retry_ms < poll_ms / 2 ? wk->full_retry_ms * 2
							      : poll_ms;
	if (wk->full_retry_ms > poll_ms)
		wk->full_retry_ms = poll_ms;
	if (r < 0 && r != -EAGAIN)
		log_error("daemon: full sync failed, next try in %" PRId64 " s: %s",
			  wk->full_retry_ms / 1000, rep.message);
	else if (r == -EAGAIN)
		log_warning("daemon: full sync incomplete (a listing failed), next try in %" PRId64
			    " s",
			    wk->full_retry_ms / 1000);
	deliver(wk);
	sink_prune_outbox(wk->c, wk->fast.s);
	notify_status(wk);
}

/* --- the inbox's alerts ------------------------------------------------------------------ */

struct pending {
	char id[INBOX_ID_MAX + 1];
	int64_t received_at, attempts;
	enum inbox_state state;
	int result; /* the refresh's outcome; 1 while none came */
};

struct batch {
	struct pending items[DAEMON_REFRESH_BATCH];
	size_t n;
};

static int take_due(const struct inbox_item *it, void *ud)
{
	struct batch *b = ud;
	struct pending *p;

	if (b->n == DAEMON_REFRESH_BATCH)
		return 0;
	p = &b->items[b->n++];
	snprintf(p->id, sizeof(p->id), "%s", it->id);
	p->received_at = it->received_at;
	p->attempts = it->attempts;
	p->state = it->state;
	p->result = 1;
	return 0;
}

static void on_alert(const char *id, int result, void *ud)
{
	struct batch *b = ud;

	for (size_t i = 0; i < b->n; i++)
		if (b->items[i].result == 1 && strcmp(b->items[i].id, id) == 0) {
			b->items[i].result = result;
			return;
		}
}

static int64_t retry_delay(int64_t attempts)
{
	int64_t ms = DAEMON_RETRY_MIN_MS;

	for (int64_t i = 0; i < attempts && ms < DAEMON_RETRY_MAX_MS; i++)
		ms *= 2;
	return ms < DAEMON_RETRY_MAX_MS ? ms : DAEMON_RETRY_MAX_MS;
}

/* How a batch's alerts are settled once their refresh ran (r: its result). */
static void settle(struct worker *wk, struct batch *b, const bool *expired, int r,
		   const struct sync_report *rep)
{
	struct daemon *d = wk->d;
	struct inbox_settlement st[DAEMON_REFRESH_BATCH];
	char notes[DAEMON_REFRESH_BATCH][NOTE_MAX];
	uint64_t confirmed = 0, done = 0, unconfirmed = 0;
	struct inbox_ticket *ticket = NULL;
	bool committed = r == 0 || r == -EAGAIN;
	int64_t now = now_ms();
	size_t final = 0, n = 0;
	int rr;

	for (size_t i = 0; i < b->n; i++) {
		struct pending *p = &b->items[i];
		struct inbox_settlement *s = &st[n++];

		*s = (struct inbox_settlement){ .id = p->id, .note = notes[i] };
		if (expired[i]) {
			s->state = INBOX_DONE;
			snprintf(notes[i], NOTE_MAX,
				 "not confirmed by Threat Stack within confirm_window (%" PRIu32
				 " s): given up",
				 wk->c->webhook.confirm_window);
			log_warning("daemon: alert %s %s", p->id, notes[i]);
			done++;
		} else if (committed && p->result == 0) {
			s->state = INBOX_CONFIRMED;
			s->note = NULL;
			confirmed++;
		} else if (committed && p->result == -ENOENT) {
			s->state = INBOX_UNCONFIRMED;
			s->next_try = now + retry_delay(p->attempts);
			snprintf(notes[i], NOTE_MAX, "not known to Threat Stack (yet)");
			unconfirmed++;
		} else {
			/* The fetch or the store failed: the same state, tried again later. */
			s->state = p->state;
			s->next_try = now + retry_delay(p->attempts);
			snprintf(notes[i], NOTE_MAX, "%s",
				 !committed && rep->message[0] ? rep->message
				 : p->result < 0	       ? strerror(-p->result)
							       : "not refreshed");
		}
	}
	rr = inbox_writer_settle(d->writer, st, n, &ticket);
	if (rr == 0)
		rr = inbox_ticket_wait(ticket, INBOX_WAIT_MS, &final);
	if (rr < 0) {
		log_error("daemon: cannot settle %zu inbox alert%s (they will be refreshed again): "
			  "%s",
			  n, n == 1 ? "" : "s", strerror(-rr));
		return;
	}
	metrics_inbox_settled(d->metrics, confirmed, done, unconfirmed);
	metrics_inbox_depth(d->metrics, inbox_writer_depth(d->writer));
}

/* One batch of due alerts; false when there was none. */
static bool refresh_batch(struct worker *wk)
{
	struct daemon *d = wk->d;
	struct batch b = { 0 };
	struct sync_options so = { .source = "webhook", .on_alert = on_alert, .userdata = &b };
	struct sync_report rep = { 0 };
	const char *ids[DAEMON_REFRESH_BATCH];
	bool expired[DAEMON_REFRESH_BATCH] = { false };
	int64_t now = now_ms(), window = (int64_t)wk->c->webhook.confirm_window * 1000, t0;
	size_t n_ids = 0;
	int r = 0;

	r = inbox_due(wk->ib, now, DAEMON_REFRESH_BATCH, take_due, &b);
	if (r < 0) {
		log_error("daemon: cannot read the inbox: %s", inbox_errmsg(wk->ib));
		return false;
	}
	if (b.n == 0)
		return false;
	for (size_t i = 0; i < b.n; i++) {
		expired[i] = b.items[i].attempts > 0 && now - b.items[i].received_at >= window;
		if (!expired[i])
			ids[n_ids++] = b.items[i].id;
	}
	t0 = monotonic_ms();
	if (n_ids > 0) {
		step(d, "in a refresh");
		r = sync_refresh(wk->fast.sy, ids, n_ids, NULL, 0, &so, &rep);
		note_run(wk, "refresh", r, &rep, monotonic_ms() - t0);
		if (r == -ECANCELED)
			return false;
	}
	settle(wk, &b, expired, r, &rep);
	if ((r == 0 || r == -EAGAIN) && rep.diff.created + rep.diff.updated + rep.diff.deleted > 0)
		deliver(wk);
	if (n_ids > 0)
		notify_status(wk);
	return b.n == DAEMON_REFRESH_BATCH;
}

/* Before each request of a full sync (its client's hook): webhook alerts due now are
 * refreshed first, on the other engine, and delivered, at most DAEMON_YIELD_BATCHES batches
 * at a time, so that an alert storm slows a full sync down without stopping it. What they
 * change, the full sync's apply leaves as they left it (store_apply_plan). */
static void refresh_before_full_request(void *ud)
{
	struct worker *wk = ud;
	int64_t next_due = 0;

	if (wk->yielding || !wk->in_full_sync || cancel_fired(wk->d->cancel))
		return;
	if (inbox_next_due(wk->ib, &next_due) < 0 || next_due > now_ms())
		return;
	wk->yielding = true;
	for (int i = 0; i < DAEMON_YIELD_BATCHES && refresh_batch(wk); i++)
		;
	wk->yielding = false;
	step(wk->d, "in a full sync");
}

/* Sleeps until timeout_ms, a wake-up or the cancel handle. */
static void wait_for_work(struct daemon *d, int64_t timeout_ms)
{
	struct pollfd p[2] = {
		{ .fd = cancel_fd(d->cancel), .events = POLLIN },
		{ .fd = d->wake_fd, .events = POLLIN },
	};

	if (timeout_ms < 0)
		timeout_ms = 0;
	if (timeout_ms > INT32_MAX)
		timeout_ms = INT32_MAX;
	if (poll(p, d->wake_fd >= 0 ? 2 : 1, (int)timeout_ms) > 0 && (p[1].revents & POLLIN))
		drain_fd(d->wake_fd);
}

/* Settled alerts older than DAEMON_INBOX_KEEP_DAYS no longer need to recognise a resend. */
static void prune_inbox(struct daemon *d)
{
	struct inbox_ticket *ticket = NULL;
	size_t pruned = 0;
	int r;

	r = inbox_writer_prune(d->writer, now_ms() - (int64_t)DAEMON_INBOX_KEEP_DAYS * 86400000,
			       &ticket);
	if (r == 0)
		r = inbox_ticket_wait(ticket, INBOX_WAIT_MS, &pruned);
	if (r < 0)
		log_warning("inbox: cannot prune settled alerts: %s", strerror(-r));
	else if (pruned > 0)
		log_info("inbox: pruned %zu settled alert%s", pruned, pruned == 1 ? "" : "s");
}

/* The record of each refresh run (one a webhook batch) is kept as long as settled alerts. */
static void prune_runs(struct worker *wk)
{
	int64_t pruned = 0;

	if (store_runs_prune(wk->fast.s, "refresh",
			     now_ms() - (int64_t)DAEMON_INBOX_KEEP_DAYS * 86400000, &pruned) < 0)
		log_warning("store: cannot prune the records of refresh runs: %s",
			    store_errmsg(wk->fast.s));
	else if (pruned > 0)
		log_info("store: pruned %" PRId64 " record%s of refresh runs", pruned,
			 pruned == 1 ? "" : "s");
}

static void refresh_before_full_request(void *ud);

/* An engine's client and sync context from config c, on its store s; the full sync's client
 * lets due webhook refreshes run before each of its requests. */
static int engine_make(struct worker *wk, const struct config *c, struct store *s, bool full,
		       struct tsapi **ret_api, struct sync **ret_sy, struct tsapi_error *err)
{
	struct tsapi_options ao = { .cancel = wk->d->cancel,
				    .limiter = wk->limiter,
				    .on_response = on_api_response,
				    .response_userdata = wk->d };
	int r;

	if (full && wk->ib) {
		ao.before_request = refresh_before_full_request;
		ao.before_request_userdata = wk;
	}
	r = tsapi_new(c, &ao, ret_api, err);
	if (r == 0 && (r = sync_new(c, s, *ret_api, wk->d->cancel, ret_sy)) < 0)
		snprintf(err->message, sizeof(err->message), "sync: %s", strerror(-r));
	if (r < 0) {
		tsapi_free(*ret_api);
		*ret_api = NULL;
	}
	return r;
}

static void engine_free(struct engine *e)
{
	sync_free(e->sy);
	tsapi_free(e->api);
	store_close(e->s);
}

static int worker_open(struct worker *wk)
{
	const struct config *c = wk->c;
	struct store_options so = { .synchronous_full = c->store.synchronous_full };
	struct inbox_options io = { .synchronous_full = c->store.synchronous_full };
	struct tsapi_error err = { 0 };
	char msg[STORE_ERR_MAX];
	int r;

	r = store_open(c->store.path, &so, &wk->full.s, msg);
	if (r == 0)
		r = store_open(c->store.path, &so, &wk->fast.s, msg);
	if (r < 0) {
		log_error("store: %s", msg);
		return r;
	}
	if (store_runs_sweep(wk->full.s) < 0)
		log_warning("store: cannot mark the runs of a dead process interrupted: %s",
			    store_errmsg(wk->full.s));
	if (wk->d->writer) {
		char ierr[INBOX_ERR_MAX];

		r = inbox_open(c->webhook.inbox, &io, &wk->ib, ierr);
		if (r < 0) {
			log_error("inbox: %s", ierr);
			return r;
		}
	}
	r = tsapi_limiter_new(c->ts.rate_limit, 0, &wk->limiter);
	if (r < 0) {
		log_error("daemon: cannot make the rate limiter: %s", strerror(-r));
		return r;
	}
	r = engine_make(wk, c, wk->full.s, true, &wk->full.api, &wk->full.sy, &err);
	if (r == 0)
		r = engine_make(wk, c, wk->fast.s, false, &wk->fast.api, &wk->fast.sy, &err);
	if (r < 0)
		log_error("threatstack client: %s", err.message);
	return r;
}

/* Which snapshot the sync thread runs on (its own reference; NULL when it ends): a reload
 * keeps that one's secrets redacted. Set before the thread drops the previous one. */
static void set_sync_config(struct daemon *d, const struct config *c)
{
	pthread_mutex_lock(&d->lock);
	d->sync_c = c;
	pthread_mutex_unlock(&d->lock);
}

static void worker_close(struct worker *wk)
{
	inbox_close(wk->ib);
	engine_free(&wk->full);
	engine_free(&wk->fast);
	tsapi_limiter_free(wk->limiter);
	config_free(wk->refused);
	set_sync_config(wk->d, NULL);
	config_free(wk->c);
}

/* Between two steps: moves to the current snapshot when a reload swapped one in. The API
 * clients and the engines are made again from it (the key, the URL, the bounds), the limiter
 * keeps its state and takes the new budget; the sinks read it at their next delivery. */
static void worker_take_config(struct worker *wk)
{
	const struct config *c = config_get(wk->d);
	struct tsapi_error err = { 0 };
	struct tsapi *api[2] = { NULL, NULL };
	struct sync *sy[2] = { NULL, NULL };
	int r;

	if (c == wk->c || c == wk->refused) { /* said once: tried again at the next reload */
		config_free(c);
		return;
	}
	r = engine_make(wk, c, wk->full.s, true, &api[0], &sy[0], &err);
	if (r == 0 && (r = engine_make(wk, c, wk->fast.s, false, &api[1], &sy[1], &err)) < 0) {
		sync_free(sy[0]);
		tsapi_free(api[0]);
	}
	if (r < 0) {
		log_error("daemon: the sync thread goes on with the previous configuration: %s",
			  err.message);
		config_free(wk->refused);
		wk->refused = c;
		return;
	}
	(void)tsapi_limiter_configure(wk->limiter, c->ts.rate_limit, 0);
	sync_take_unrecorded(sy[0], wk->full.sy);
	sync_take_unrecorded(sy[1], wk->fast.sy);
	sync_free(wk->full.sy);
	tsapi_free(wk->full.api);
	sync_free(wk->fast.sy);
	tsapi_free(wk->fast.api);
	set_sync_config(wk->d, c);
	config_free(wk->c);
	wk->full.sy = sy[0];
	wk->full.api = api[0];
	wk->fast.sy = sy[1];
	wk->fast.api = api[1];
	wk->c = c;
	config_free(wk->refused);
	wk->refused = NULL;
	log_info("daemon: the sync thread runs with the reloaded configuration: rate_limit %" PRIu32
		 "/min, poll_interval %" PRIu32 " s, %zu sink%s",
		 c->ts.rate_limit, c->ts.poll_interval, c->n_sinks, c->n_sinks == 1 ? "" : "s");
}

static void *sync_main(void *arg)
{
	struct daemon *d = arg;
	struct worker wk = { .d = d, .c = config_get(d) };
	int64_t last_full = 0, next_prune = 0;
	bool first = true;
	int r;

	set_sync_config(d, wk.c);
	r = worker_open(&wk);
	if (r < 0)
		goto out;
	notify_status(&wk);
	while (!cancel_fired(d->cancel)) {
		int64_t now = monotonic_ms(), next_due = -1, wait_ms, next_full;

		step(d, "between steps"); /* the first beat tells the main thread the sync begins */
		worker_take_config(&wk);
		next_full = last_full + (wk.full_retry_ms ? wk.full_retry_ms
							  : (int64_t)wk.c->ts.poll_interval * 1000);
		if (first || now >= next_full) {
			first = false;
			last_full = now;
			full_sync(&wk);
			if (wk.full_retry_ms)
				last_full =
					monotonic_ms(); /* the next try waits from this one's end */
			continue;
		}
		if (wk.ib && refresh_batch(&wk))
			continue; /* a full batch: more may be due */
		if (now >= next_prune) {
			next_prune = now + PRUNE_EVERY_MS;
			step(d, "pruning");
			if (wk.ib)
				prune_inbox(d);
			prune_runs(&wk);
		}
		wait_ms = next_full - monotonic_ms();
		if (wk.ib && inbox_next_due(wk.ib, &next_due) == 0 && next_due - now_ms() < wait_ms)
			wait_ms = next_due - now_ms();
		if (d->watchdog_ms > 0 && wait_ms > d->watchdog_ms / 4)
			wait_ms = d->watchdog_ms / 4; /* a beat while idle */
		step(d, "waiting for work");
		wait_for_work(d, wait_ms);
	}
out:
	worker_close(&wk);
	atomic_store(&d->sync_result, r);
	wake(d->sync_end_fd);
	return NULL;
}

/* --- bring-up and take-down ------------------------------------------------------------- */

/* The socket systemd passed, or -1; more than one is a configuration error. */
static int activated_socket(int *ret_fd)
{
	int n = sd_listen_fds(1);

	*ret_fd = -1;
	if (n < 0) {
		log_error("daemon: socket activation: %s", strerror(-n));
		return n;
	}
	if (n == 0)
		return 0;
	if (n > 1) {
		log_error("daemon: socket activation passed %d sockets; tsgraphd listens on one",
			  n);
		return -EINVAL;
	}
	if (sd_is_socket(SD_LISTEN_FDS_START, AF_UNSPEC, SOCK_STREAM, 1) <= 0) {
		log_error("daemon: socket activation: fd %d is not a listening stream socket",
			  SD_LISTEN_FDS_START);
		return -EINVAL;
	}
	*ret_fd = SD_LISTEN_FDS_START;
	return 0;
}

static int start_receiver(struct daemon *d, int listen_fd)
{
	const struct config *c = d->c; /* the main thread's: no swap meanwhile */
	struct webhook_options wo = { .c = c,
				      .inbox = d->writer,
				      .metrics = d->metrics,
				      .listen_fd = listen_fd,
				      .health = health,
				      .userdata = d };
	char err[WEBHOOK_ERR_MAX];
	int r;

	r = webhook_start(&wo, &d->webhook, err);
	if (r < 0) {
		log_error("webhook: %s", err);
		if (listen_fd >= 0)
			close(listen_fd);
		return r;
	}
	if (listen_fd >= 0)
		log_info("webhook: listening on the socket systemd passed, port %u (%s)",
			 webhook_port(d->webhook),
			 c->webhook.tls ? "TLS 1.2 and 1.3" : "plain HTTP");
	else
		log_info("webhook: listening on %s://%.*s:%u (%s)",
			 c->webhook.tls ? "https" : "http",
			 (int)(strrchr(c->webhook.listen, ':') - c->webhook.listen),
			 c->webhook.listen, webhook_port(d->webhook),
			 c->webhook.tls ? "TLS 1.2 and 1.3" : "plain HTTP on loopback");
	return 0;
}

static int start_writer(struct daemon *d)
{
	const struct config *c = d->c;
	struct inbox_writer_options wo = {
		/* Shorter than the receiver's wait for a commit: a locked inbox is a 503 that
		 * says why, not a timeout. */
		.inbox = { .synchronous_full = c->store.synchronous_full,
			   .busy_timeout_ms = DAEMON_INBOX_BUSY_MS },
		.max_depth = c->webhook.inbox_max,
		.on_commit = on_inbox_commit,
		.userdata = d,
		.beat_ms = d->watchdog_ms / 4,
	};
	char err[INBOX_ERR_MAX];
	int r = inbox_writer_new(c->webhook.inbox, &wo, &d->writer, err);

	if (r < 0)
		log_error("inbox: %s", err);
	else
		metrics_inbox_depth(d->metrics, inbox_writer_depth(d->writer));
	return r;
}

/* The first thread that shows no progress for too long, named in what; false when none. */
static bool find_stuck(struct daemon *d, int64_t now, char *what, size_t size, int64_t *ret_age)
{
	/* The sync thread: its beats, and its sinks' answers and waits on the cancel handle (a
	 * JupiterOne job followed for minutes, a backoff: alive; one stalled transfer: not). */
	int64_t seen = atomic_load(&d->beat_ms), alive = cancel_alive_ms(d->cancel);
	int64_t age = now - (alive > seen ? alive : seen);
	int64_t limit = d->watchdog_ms > WRITER_STUCK_MIN_MS ? d->watchdog_ms : WRITER_STUCK_MIN_MS;

	if (age > d->watchdog_ms) {
		const char *doing = atomic_load(&d->doing);

		snprintf(what, size, "the sync thread (%s)", doing ? doing : "starting");
		*ret_age = age;
		return true;
	}
	if (d->writer && (age = now - inbox_writer_beat(d->writer)) > limit) {
		snprintf(what, size, "the inbox writer thread (in a commit to %s)",
			 d->c->webhook.inbox);
		*ret_age = age;
		return true;
	}
	if (d->webhook && (age = webhook_stuck_ms(d->webhook, now)) > d->watchdog_ms) {
		snprintf(what, size, "a receiver thread (in a request's handling)");
		*ret_age = age;
		return true;
	}
	return false;
}

/* The watchdog's ping, only while every thread shows progress. */
static void watchdog(struct daemon *d, int64_t *last_ping, bool *stale)
{
	int64_t now = monotonic_ms(), age = 0;
	char what[256];

	if (d->watchdog_ms == 0 || now - *last_ping < d->watchdog_ms / 2)
		return;
	if (find_stuck(d, now, what, sizeof(what), &age)) {
		if (!*stale)
			log_warning("daemon: %s shows no progress for %" PRId64
				    " s: the watchdog is no longer pinged",
				    what, age / 1000);
		*stale = true;
		return;
	}
	if (*stale)
		log_info("daemon: every thread makes progress again: the watchdog is pinged");
	*stale = false;
	*last_ping = now;
	(void)sd_notify(0, "WATCHDOG=1");
}

static void warn_restart(const char *key, void *ud)
{
	(void)ud;
	log_warning("daemon: reload: %s changed, which needs a restart: it keeps its running value "
		    "until then",
		    key);
}

/* SIGHUP: the configuration file again, all of it or nothing (see the top of this file). */
static void reload(struct daemon *d)
{
	const struct config *cur = d->c, *old; /* the main thread is the only one to swap it */
	const struct config *in_use; /* the sync thread's, whose secrets stay redacted too */
	struct config *next = NULL;
	const char *names[CONFIG_SINKS_MAX];
	char err[CONFIG_ERROR_MAX], werr[WEBHOOK_ERR_MAX];
	struct timespec ts;
	int r;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	(void)sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%" PRIu64 "\nSTATUS=reloading %s",
			 (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000, cur->file);
	log_info("daemon: SIGHUP: reloading %s", cur->file);
	r = config_load(cur->file, &next, err);
	if (r == 0) {
		r = config_keep_restart_only(next, cur, warn_restart, NULL);
		if (r < 0)
			snprintf(err, sizeof(err), "%s", strerror(-r));
	}
	pthread_mutex_lock(&d->lock);
	in_use = d->sync_c ? config_ref(d->sync_c) : NULL;
	pthread_mutex_unlock(&d->lock);
	if (r == 0 &&
	    (r = config_register_secrets((const struct config *[]){ next, cur, in_use }, 3)) < 0)
		snprintf(err, sizeof(err), "cannot register its secrets for redaction: %s",
			 strerror(-r));
	if (r == 0 && d->webhook && (r = webhook_reload(d->webhook, next, werr)) < 0) {
		snprintf(err, sizeof(err), "webhook: %s", werr);
		(void)config_register_secrets((const struct config *[]){ cur, in_use }, 2);
	}
	if (r < 0) {
		log_error("daemon: reload refused, the running configuration stays: %s", err);
		(void)sd_notify(0,
				"READY=1\nSTATUS=reload refused: the running configuration stays "
				"(see the log)");
		config_free(next);
		config_free(in_use);
		return;
	}
	log_set_level(next->log_level);
	for (size_t i = 0; i < next->n_sinks; i++)
		names[i] = next->sinks[i].name;
	(void)metrics_set_sinks(d->metrics, names, next->n_sinks);
	log_info("daemon: configuration reloaded from %s: rate_limit %" PRIu32 "/min, %zu sink%s%s",
		 next->file, next->ts.rate_limit, next->n_sinks, next->n_sinks == 1 ? "" : "s",
		 d->webhook ? ", the receiver serves it (certificate read again)" : "");
	pthread_mutex_lock(&d->lock);
	old = d->c;
	d->c = next;
	pthread_mutex_unlock(&d->lock);
	config_free(old);
	wake(d->wake_fd); /* the sync thread takes it now, not after its sleep */
	(void)sd_notify(0, "READY=1\nSTATUS=configuration reloaded");
	config_free(in_use);
}

/* Waits for SIGINT/SIGTERM, or for the sync thread to end on its own; SIGHUP reloads. Sends
 * READY=1 once the sync thread began (its first beat), and pings the watchdog. */
static int wait_for_stop(struct daemon *d, int sfd)
{
	int64_t last_ping = 0;
	bool ready = false, stale = false;

	for (;;) {
		struct pollfd p[2] = { { .fd = sfd, .events = POLLIN },
				       { .fd = d->sync_end_fd, .events = POLLIN } };
		struct signalfd_siginfo si;
		int timeout = -1;

		if (!ready && atomic_load(&d->beat_ms) != 0) {
			(void)sd_notify(0, "READY=1");
			log_debug("daemon: READY=1 sent");
			ready = true;
		}
		if (ready)
			watchdog(d, &last_ping, &stale);
		if (d->webhook)
			webhook_expire(d->webhook, monotonic_ms());
		if (!ready)
			timeout = READY_POLL_MS;
		else if (d->watchdog_ms > 0)
			timeout = (int)(d->watchdog_ms / 4 > 0 ? d->watchdog_ms / 4 : 1);
		if (d->webhook && (timeout < 0 || timeout > EXPIRE_EVERY_MS))
			timeout = EXPIRE_EVERY_MS;
		if (poll(p, 2, timeout) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (p[1].revents & POLLIN) {
			log_error("daemon: the sync thread stopped; stopping");
			return atomic_load(&d->sync_result) < 0 ? atomic_load(&d->sync_result)
								: -EIO;
		}
		if (!(p[0].revents & POLLIN) || read(sfd, &si, sizeof(si)) != sizeof(si))
			continue;
		if (si.ssi_signo == SIGHUP) {
			/* Before READY=1 the daemon is still starting: the reload waits for it. */
			while (!ready && atomic_load(&d->beat_ms) == 0 &&
			       poll(&p[1], 1, READY_POLL_MS) == 0)
				;
			reload(d);
			continue;
		}
		log_info("daemon: %s: stopping", strsignal((int)si.ssi_signo));
		return 0;
	}
}

int daemon_run(const struct config *c)
{
	struct daemon d = {
		.c = config_ref(c), .wake_fd = -1, .sync_end_fd = -1, .started_ms = now_ms()
	};
	const char *names[CONFIG_SINKS_MAX];
	sigset_t mask;
	int r, sfd = -1, lock_fd = -1, listen_fd = -1;
	bool receiver = c->webhook.secret != NULL;
	uint64_t watchdog_usec = 0;

	pthread_mutex_init(&d.lock, NULL);
	if (sd_watchdog_enabled(0, &watchdog_usec) > 0)
		d.watchdog_ms =
			(int64_t)(watchdog_usec / 1000) > 0 ? (int64_t)(watchdog_usec / 1000) : 1;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	signal(SIGPIPE, SIG_IGN);
	r = -pthread_sigmask(SIG_BLOCK, &mask, NULL);
	if (r == 0 && (sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) < 0)
		r = -errno;
	if (r < 0) {
		log_error("daemon: cannot set up signal handling: %s", strerror(-r));
		goto out;
	}
	r = activated_socket(&listen_fd);
	if (r < 0)
		goto out;
	if (listen_fd >= 0 && !receiver) {
		log_error("daemon: systemd passed a socket, but [webhook] secret is not set");
		r = -EINVAL;
		goto out;
	}
	r = store_lock(c->store.path, &lock_fd);
	if (r < 0) {
		log_error("store: %s: %s", c->store.path, store_lock_strerror(r));
		goto out;
	}
	for (size_t i = 0; i < c->n_sinks; i++)
		names[i] = c->sinks[i].name;
	r = metrics_new(names, c->n_sinks, &d.metrics);
	if (r == 0)
		r = cancel_new(&d.cancel);
	if (r == 0 && ((d.wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0 ||
		       (d.sync_end_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0))
		r = -errno;
	if (r < 0) {
		log_error("daemon: cannot start: %s", strerror(-r));
		goto out;
	}
	if (receiver && (r = start_writer(&d)) < 0)
		goto out;
	r = -pthread_create(&d.sync_thread, NULL, sync_main, &d);
	if (r < 0) {
		log_error("daemon: cannot start the sync thread: %s", strerror(-r));
		goto out;
	}
	d.sync_started = true;
	if (receiver) {
		r = start_receiver(&d, listen_fd);
		listen_fd = -1; /* the receiver's now, or closed */
		if (r < 0)
			goto out;
	} else {
		log_notice("webhook: receiver off ([webhook] secret not set): polling only");
	}
	log_info("daemon: running: full sync every %" PRIu32 " s, %zu sink%s", c->ts.poll_interval,
		 c->n_sinks, c->n_sinks == 1 ? "" : "s");
	r = wait_for_stop(&d, sfd);
out:
	(void)sd_notify(0, "STOPPING=1\nSTATUS=stopping");
	cancel_fire(d.cancel);
	if (d.webhook)
		webhook_stop(d.webhook, DAEMON_DRAIN_MS);
	if (d.sync_started)
		pthread_join(d.sync_thread, NULL);
	inbox_writer_free(d.writer);
	if (r == 0)
		log_info("daemon: stopped");
	cancel_free(d.cancel);
	metrics_free(d.metrics);
	if (listen_fd >= 0)
		close(listen_fd);
	if (d.wake_fd >= 0)
		close(d.wake_fd);
	if (d.sync_end_fd >= 0)
		close(d.sync_end_fd);
	if (lock_fd >= 0)
		close(lock_fd);
	if (sfd >= 0)
		close(sfd);
	pthread_sigmask(SIG_UNBLOCK, &mask, NULL);
	pthread_mutex_destroy(&d.lock);
	config_free(d.c);
	return r;
}
