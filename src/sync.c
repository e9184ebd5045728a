/* sync — the sync engine of one organization.
 *
 * A run is stage → plan → apply. Staging walks the API: for a full sync the account (no
 * request), agents online then offline, active vulnerabilities (with their agents inline, or
 * afterwards the per-CVE servers listing for items without them, on the same client), and
 * the alerts of the window (active and dismissed, so a dismissal is an update, not a
 * deletion); for a refresh, the named alerts and agents one GET each. Every object goes
 * through the graph builder, its canonical JSON and hash, into the store's snapshot, which
 * keeps only what differs from the stored graph: memory holds one page, never the fleet.
 *
 * An agent (or alert) in both status listings is settled by rank before any of its objects
 * is staged: the newer copy wins whole, entity and relationships together, and whatever the
 * older copy staged is taken back (store_snapshot_owner). Each listing that completes marks
 * its graph types complete; a refreshed agent marks itself. Only what is complete can lose
 * objects. A failed listing is logged once with its error class and the run goes on with
 * the others, so one failing endpoint does not stall the whole graph.
 *
 * The plan takes no write lock. The apply, and the run's record with it, is one write
 * transaction, taken only when the plan holds changes; a no-change run writes its record
 * alone. The cancel handle is checked by every wait in the client, between objects here
 * and once more before the apply commits: a cancelled run applies nothing and is recorded
 * "interrupted".
 *
 * Test builds (build/tsgraphd-test, see testhook.h) have two points here. "stage" crashes
 * after the Nth object staged. "apply" is inside the apply's transaction, every change and
 * the run's record written and nothing committed: the pause there logs "test hook: paused at
 * apply" and waits up to 30 s for the cancel handle, the crash kills the process there, so
 * that a signal or kill -9 test hits exactly that moment instead of guessing it with timers.
 */
#include "tsgraphd/sync.h"
#include "tsgraphd/canon.h"
#include "tsgraphd/graph.h"
#include "tsgraphd/log.h"
#include "tsgraphd/testhook.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OWNER_KEY_MAX	   512
#define HELD_TEXT_MAX	   512	  /* the held-back types, as one line for the run record */
#define DEFERRED_VULNS_MAX 100000 /* CVEs whose agents come from their servers listing */
#define PROGRESS_EVERY_MS  250
#define WEB_URL		   "https://app.threatstack.com"

static const char *const account_types[] = { "threatstack_account" };
static const char *const agent_types[] = {
	"threatstack_agent",
	"threatstack_account_has_agent",
	"threatstack_agent_protects_aws_instance",
	"threatstack_agent_protects_server",
};
static const char *const vuln_types[] = { "threatstack_agent_identified_vulnerability" };
static const char *const alert_types[] = {
	"threatstack_alert",
	"threatstack_agent_identified_alert",
	"threatstack_account_has_alert",
};

struct sync {
	const struct config *c;
	struct store *s;
	struct tsapi *api;
	struct cancel *cancel;
	struct graph_options gopt;
	struct buf json;
	struct canon_digest *digest;

	/* the run in progress */
	const struct sync_options *opt;
	struct sync_report *report;
	int store_error; /* a store failure ends the run: nothing can be committed after it */
	bool owner_settled, owner_take;
	char owner[OWNER_KEY_MAX]; /* the owner the builder is emitting, once settled */
	struct ts_vuln *deferred;  /* vulnerabilities to complete from their servers listing */
	size_t n_deferred;
	int64_t last_progress_ms;
	uint64_t requests_before; /* the client's count when the run began */

	/* A run whose end the store refused (failing as the run ended): written before the next
	 * run begins, so that no run stays "running" for as long as this process lives. */
	struct store_run unrecorded; /* id 0: none */
	char unrecorded_held[HELD_TEXT_MAX], unrecorded_message[SYNC_MSG_MAX];

	pthread_mutex_t lock; /* guards progress only */
	struct sync_progress progress;
};

int sync_new(const struct config *c, struct store *s, struct tsapi *api, struct cancel *cancel,
	     struct sync **ret)
{
	struct sync *sy;

	if (!c || !s || !api)
		return -EINVAL;
	sy = calloc(1, sizeof(*sy));
	if (!sy)
		return -ENOMEM;
	sy->c = c;
	sy->s = s;
	sy->api = api;
	sy->cancel = cancel;
	sy->gopt = (struct graph_options){ .org_id = c->ts.org_id,
					   .org_name = c->ts.org_name,
					   .web_url = WEB_URL,
					   .out = &sy->json };
	buf_init(&sy->json, CANON_OBJECT_MAX);
	pthread_mutex_init(&sy->lock, NULL);
	if (canon_digest_new(&sy->digest) < 0) {
		sync_free(sy);
		return -ENOMEM;
	}
	*ret = sy;
	return 0;
}

static void deferred_free(struct sync *sy)
{
	for (size_t i = 0; i < sy->n_deferred; i++)
		ts_vuln_free(&sy->deferred[i]);
	free(sy->deferred);
	sy->deferred = NULL;
	sy->n_deferred = 0;
}

void sync_take_unrecorded(struct sync *to, struct sync *from)
{
	if (!from || !from->unrecorded.id)
		return;
	to->unrecorded = from->unrecorded;
	memcpy(to->unrecorded_held, from->unrecorded_held, sizeof(to->unrecorded_held));
	memcpy(to->unrecorded_message, from->unrecorded_message, sizeof(to->unrecorded_message));
	to->unrecorded.held_back = from->unrecorded.held_back ? to->unrecorded_held : NULL;
	to->unrecorded.message = from->unrecorded.message ? to->unrecorded_message : NULL;
	from->unrecorded.id = 0;
}

void sync_free(struct sync *sy)
{
	if (!sy)
		return;
	deferred_free(sy);
	canon_digest_free(sy->digest);
	buf_free(&sy->json);
	pthread_mutex_destroy(&sy->lock);
	free(sy);
}

void sync_progress(struct sync *sy, struct sync_progress *ret)
{
	pthread_mutex_lock(&sy->lock);
	*ret = sy->progress;
	pthread_mutex_unlock(&sy->lock);
}

static void progress_emit(struct sync *sy, bool force)
{
	struct sync_progress p;
	int64_t now = monotonic_ms();

	if (!sy->opt->on_progress || (!force && now - sy->last_progress_ms < PROGRESS_EVERY_MS))
		return;
	sy->last_progress_ms = now;
	sync_progress(sy, &p);
	sy->opt->on_progress(&p, sy->opt->progress_userdata);
}

/* A new listing: expected is what the store held of its primary type. */
static void progress_listing(struct sync *sy, const char *listing, const char *type)
{
	int64_t expected = 0;

	if (type)
		store_type_count(sy->s, type, &expected);
	pthread_mutex_lock(&sy->lock);
	snprintf(sy->progress.listing, sizeof(sy->progress.listing), "%s", listing);
	sy->progress.objects = 0;
	sy->progress.expected = expected;
	sy->progress.listing_ms = monotonic_ms();
	pthread_mutex_unlock(&sy->lock);
	progress_emit(sy, true);
}

static void progress_object(struct sync *sy)
{
	struct tsapi_usage u = { 0 };
	bool usage = (sy->progress.total & 63) == 0; /* the client's figures now and then */

	if (usage)
		tsapi_usage(sy->api, &u);
	pthread_mutex_lock(&sy->lock);
	sy->progress.objects++;
	sy->progress.total++;
	if (usage) {
		sy->progress.requests = u.requests - sy->requests_before;
		sy->progress.per_minute = u.per_minute;
		sy->progress.left = u.left_this_minute;
	}
	pthread_mutex_unlock(&sy->lock);
	progress_emit(sy, false);
}

/* Notes a store failure with SQLite's own reason, read now: after the rollback it is gone. */
static int store_failed(struct sync *sy, int r, const char *what)
{
	if (!sy->store_error) {
		sy->store_error = r;
		snprintf(sy->report->message, sizeof(sy->report->message), "store: %s: %s (%s)",
			 what, store_errmsg(sy->s), strerror(-r));
	}
	return r;
}

/* graph (canonical JSON) → hash → snapshot. The first object of a builder call settles its
 * owner (see the top of this file); an owner that lost keeps none of its objects. */
static int stage(const struct graph_object *o, void *ud)
{
	struct sync *sy = ud;
	char hash[CANON_HASH_HEX + 1];
	int r;

	if (o->owner && !sy->owner_settled) {
		r = store_snapshot_owner(sy->s, o->owner, o->rank, &sy->owner_take);
		if (r < 0)
			return store_failed(sy, r, "staging");
		sy->owner_settled = true;
		snprintf(sy->owner, sizeof(sy->owner), "%s", o->owner);
	}
	if (o->owner && !sy->owner_take)
		return 0;
	/* The builder wrote the canonical text (into sy->json): hash it as it is. */
	r = canon_digest_hex(sy->digest, o->json, o->json_len, hash);
	if (r == 0)
		r = store_snapshot_put(sy->s, o, o->json, hash);
	if (r < 0)
		return store_failed(sy, r, "staging");
	sy->report->staged++;
	testhook_crash("stage", sy->report->staged);
	return 0;
}

/* Before each builder call: its owner is not settled yet. */
static void begin_owner(struct sync *sy)
{
	sy->owner_settled = false;
	sy->owner_take = false;
	sy->owner[0] = '\0';
}

/* A builder's -EINVAL means the object cannot be a graph object (a CVE id that is not one,
 * an empty id): skip it, say so, and go on with the listing rather than fail it. A fired
 * cancel handle stops the listing. */
static int built(struct sync *sy, int r, const char *what, const char *id)
{
	if (r == -EINVAL && !sy->store_error) {
		if (++sy->report->skipped <= 10)
			log_warning("sync: skipped %s %s: not valid as a graph object", what,
				    id ? id : "(without id)");
		r = 0;
	}
	if (r == 0 && cancel_fired(sy->cancel))
		return -ECANCELED;
	return r;
}

static int on_agent(struct ts_agent *a, void *ud)
{
	struct sync *sy = ud;

	progress_object(sy);
	begin_owner(sy);
	return built(sy, graph_agent(&sy->gopt, a, stage, sy), "agent", a->id);
}

struct vuln_ctx {
	struct sync *sy;
	const struct ts_vuln *v;
};

static int on_server(struct ts_server *srv, void *ud)
{
	struct vuln_ctx *vc = ud;

	progress_object(vc->sy);
	if (!srv->agent_id)
		return 0;
	return built(vc->sy, graph_vuln_agent(&vc->sy->gopt, vc->v, srv->agent_id, stage, vc->sy),
		     "vulnerability", vc->v->cve);
}

static int on_vuln(struct ts_vuln *v, void *ud)
{
	struct sync *sy = ud;
	struct ts_vuln *grown;
	int r = 0;

	progress_object(sy);
	if (v->has_agents) {
		for (size_t i = 0; r == 0 && i < v->agent_ids.n; i++)
			r = built(sy, graph_vuln_agent(&sy->gopt, v, v->agent_ids.v[i], stage, sy),
				  "vulnerability", v->cve);
		return r;
	}
	/* No "agents" member (older answers, or more than fit inline): its servers listing
	 * comes after this one, on the same client. The item is moved out of the page. */
	if (sy->n_deferred == DEFERRED_VULNS_MAX)
		return -E2BIG;
	grown = realloc(sy->deferred, (sy->n_deferred + 1) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	sy->deferred = grown;
	sy->deferred[sy->n_deferred++] = *v;
	memset(v, 0, sizeof(*v));
	return cancel_fired(sy->cancel) ? -ECANCELED : 0;
}

static int on_alert(struct ts_alert *al, void *ud)
{
	struct sync *sy = ud;

	progress_object(sy);
	begin_owner(sy);
	return built(sy, graph_alert(&sy->gopt, al, stage, sy), "alert", al->id);
}

static int mark_complete(struct sync *sy, const char *group, const char *const *types, size_t n)
{
	int r = store_snapshot_complete(sy->s, group, types, n);

	return r < 0 ? store_failed(sy, r, "staging") : 0;
}

/* Whether a listing's failure ends the run (store error, cancel) rather than the listing. */
static bool run_over(struct sync *sy)
{
	return sy->store_error || cancel_fired(sy->cancel);
}

/* Notes a failed listing in the report (and the log), once per listing. */
static void listing_failed(struct sync *sy, const char *what, const struct tsapi_error *err)
{
	struct sync_report *rep = sy->report;
	size_t used = strlen(rep->message);

	log_error("sync: %s incomplete, nothing of it will be deleted: %s: %s", what,
		  tsapi_strerror(err->code), err->message);
	snprintf(rep->message + used, sizeof(rep->message) - used, "%s%s: %s", used ? "; " : "",
		 what, tsapi_strerror(err->code));
	rep->failed_listings++;
}

static void log_listing(struct sync *sy, const char *what)
{
	struct sync_progress p;

	sync_progress(sy, &p);
	log_info("sync: %s listed objects=%" PRId64 " duration_ms=%" PRId64, what, p.objects,
		 monotonic_ms() - p.listing_ms);
}

/* A listing's end: complete, or failed (unless the run itself is over). */
static void listing_end(struct sync *sy, int r, const struct tsapi_error *err, const char *group,
			const char *const *types, size_t n)
{
	if (r < 0) {
		if (!run_over(sy))
			listing_failed(sy, group, err);
		return;
	}
	log_listing(sy, group);
	mark_complete(sy, group, types, n);
}

static void fetch_agents(struct sync *sy)
{
	static const char *const statuses[] = { "online", "offline" };
	struct tsapi_error err = { 0 };
	int r = 0;

	progress_listing(sy, "agents", agent_types[0]);
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(statuses); i++)
		r = tsapi_list_agents(sy->api, statuses[i], on_agent, sy, &err);
	listing_end(sy, r, &err, "agents", agent_types, ARRAY_SIZE(agent_types));
}

static void fetch_vulns(struct sync *sy)
{
	struct tsapi_error err = { 0 };
	int r;

	progress_listing(sy, "vulnerabilities", vuln_types[0]);
	r = tsapi_list_vulns(sy->api, on_vuln, sy, &err);
	for (size_t i = 0; r == 0 && i < sy->n_deferred; i++) {
		struct vuln_ctx vc = { .sy = sy, .v = &sy->deferred[i] };

		r = tsapi_list_cve_servers(sy->api, vc.v->cve, on_server, &vc, &err);
	}
	deferred_free(sy);
	listing_end(sy, r, &err, "vulnerabilities", vuln_types, ARRAY_SIZE(vuln_types));
}

static void fetch_alerts(struct sync *sy)
{
	static const char *const statuses[] = { "active", "dismissed" };
	struct tsapi_error err = { 0 };
	int64_t until = now_ms();
	int64_t from = until - (int64_t)sy->c->ts.alert_days * 86400 * 1000;
	int r = 0;

	progress_listing(sy, "alerts", alert_types[0]);
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(statuses); i++)
		r = tsapi_list_alerts(sy->api, statuses[i], from, until, on_alert, sy, &err);
	listing_end(sy, r, &err, "alerts", alert_types, ARRAY_SIZE(alert_types));
}

static void fetch_full(struct sync *sy, const void *arg)
{
	(void)arg;
	begin_owner(sy);
	if (graph_account(&sy->gopt, stage, sy) == 0)
		mark_complete(sy, "account", account_types, ARRAY_SIZE(account_types));
	if (!run_over(sy))
		fetch_agents(sy);
	if (!run_over(sy))
		fetch_vulns(sy);
	if (!run_over(sy))
		fetch_alerts(sy);
}

struct refresh_args {
	const char *const *alerts, *const *agents;
	size_t n_alerts, n_agents;
	char **done; /* agents refreshed in this run (copies), at most one per id named */
	size_t n_done;
};

/* Whether the agent was already refreshed in this run; if not, it is noted as being so
 * (when there is no memory for the note, it is simply refreshed again later). */
static bool agent_seen(struct refresh_args *ra, const char *id)
{
	for (size_t i = 0; i < ra->n_done; i++)
		if (strcmp(ra->done[i], id) == 0)
			return true;
	if (ra->done && (ra->done[ra->n_done] = strdup(id)) != NULL)
		ra->n_done++;
	return false;
}

/* One single-object GET made into its owner's objects, which it then replaces whole. */
static int refresh_done(struct sync *sy, int r)
{
	if (r == 0 && sy->owner_take && sy->owner[0]) {
		r = store_snapshot_complete_owner(sy->s, sy->owner);
		if (r < 0)
			return store_failed(sy, r, "staging");
	}
	return r;
}

static void refresh_failed(struct sync *sy, const char *what, const char *id,
			   const struct tsapi_error *err)
{
	if (err->code == TSAPI_E_NOT_FOUND) {
		log_warning("sync: %s %s is not known to Threat Stack (yet); left as it is", what,
			    id);
		return;
	}
	listing_failed(sy, what, err);
}

static void refresh_agent(struct sync *sy, const char *id)
{
	struct tsapi_error err = { 0 };
	struct ts_agent a = { 0 };

	if (tsapi_get_agent(sy->api, id, &a, &err) < 0) {
		if (!run_over(sy))
			refresh_failed(sy, "agent", id, &err);
		return;
	}
	progress_object(sy);
	begin_owner(sy);
	refresh_done(sy, built(sy, graph_agent(&sy->gopt, &a, stage, sy), "agent", a.id));
	ts_agent_free(&a);
}

static void alert_outcome(struct sync *sy, const char *id, int result)
{
	if (sy->opt->on_alert)
		sy->opt->on_alert(id, result, sy->opt->userdata);
}

static void fetch_refresh(struct sync *sy, const void *arg)
{
	struct refresh_args *ra = (struct refresh_args *)arg;
	size_t i;

	progress_listing(sy, "alerts", NULL);
	for (i = 0; i < ra->n_alerts && !run_over(sy); i++) {
		struct tsapi_error err = { 0 };
		struct ts_alert al = { 0 };
		int r;

		r = tsapi_get_alert(sy->api, ra->alerts[i], &al, &err);
		if (r < 0) {
			if (!run_over(sy))
				refresh_failed(sy, "alert", ra->alerts[i], &err);
			alert_outcome(sy, ra->alerts[i], run_over(sy) ? -ECANCELED : r);
			continue;
		}
		progress_object(sy);
		begin_owner(sy);
		r = refresh_done(sy,
				 built(sy, graph_alert(&sy->gopt, &al, stage, sy), "alert", al.id));
		alert_outcome(sy, ra->alerts[i], r);
		if (al.agent_id && !run_over(sy) && !agent_seen(ra, al.agent_id))
			refresh_agent(sy, al.agent_id);
		ts_alert_free(&al);
	}
	for (; i < ra->n_alerts; i++)
		alert_outcome(sy, ra->alerts[i], -ECANCELED);
	progress_listing(sy, "agents", NULL);
	for (i = 0; i < ra->n_agents && !run_over(sy); i++)
		if (!agent_seen(ra, ra->agents[i]))
			refresh_agent(sy, ra->agents[i]);
}

/* The pause point of test builds (testhook.h); nothing in others. */
static void test_pause(struct sync *sy, const char *point)
{
	if (!testhook_pause_at(point))
		return;
	log_notice("sync: test hook: paused at %s", point);
	(void)cancel_sleep(sy->cancel, 30000);
}

static void held_summary(const struct diff_result *d, char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	for (size_t i = 0; i < d->n_held && used < size; i++)
		used += (size_t)snprintf(out + used, size - used,
					 "%s%s (%" PRId64 " of %" PRId64 ")", i ? ", " : "",
					 d->held[i], d->held_missing[i], d->held_stored[i]);
}

static int record_run(struct sync *sy, const char *result)
{
	const struct sync_report *rep = sy->report;
	const struct diff_result *d = &rep->diff;
	char held[HELD_TEXT_MAX];
	int r;
	struct store_run sr = {
		.id = rep->run_id,
		.result = result,
		.finished = now_ms(),
		.created = d->created,
		.updated = d->updated,
		.deleted = d->deleted,
		.held_back = d->n_held ? held : NULL,
		.message = rep->message[0] ? rep->message : NULL,
	};

	held_summary(d, held, sizeof(held));
	r = store_run_finish(sy->s, &sr);
	if (r < 0) { /* kept for record_late(); result is a string constant */
		sy->unrecorded = sr;
		snprintf(sy->unrecorded_held, sizeof(sy->unrecorded_held), "%s", held);
		snprintf(sy->unrecorded_message, sizeof(sy->unrecorded_message), "%s",
			 sr.message ? sr.message : "");
		sy->unrecorded.held_back = sr.held_back ? sy->unrecorded_held : NULL;
		sy->unrecorded.message = sr.message ? sy->unrecorded_message : NULL;
	} else if (sy->unrecorded.id == sr.id) {
		sy->unrecorded.id = 0;
	}
	return r;
}

/* The end of an earlier run the store refused, written now (before a new run begins). */
static void record_late(struct sync *sy)
{
	if (!sy->unrecorded.id || store_run_finish(sy->s, &sy->unrecorded) < 0)
		return;
	log_info("sync: run %" PRId64 " recorded as %s, late: the store refused it as it ended",
		 sy->unrecorded.id, sy->unrecorded.result);
	sy->unrecorded.id = 0;
}

static const char *run_result(const struct sync_report *rep)
{
	return rep->failed_listings ? "partial" : rep->diff.n_held ? "held" : "ok";
}

/* The plan written with the run's record in one transaction; the record alone when the plan
 * is empty. A cancel that came while it was written rolls it back: -ECANCELED. */
static int apply(struct sync *sy, const struct diff_options *dopt)
{
	struct sync_report *rep = sy->report;
	int r;

	if (rep->diff.planned == 0) {
		r = record_run(sy, run_result(rep));
		return r < 0 ? store_failed(sy, r, "recording the run") : 0;
	}
	r = store_begin(sy->s);
	if (r < 0)
		return store_failed(sy, r, "beginning the apply");
	r = diff_apply(sy->s, dopt, &rep->diff);
	if (r == 0)
		r = record_run(sy, run_result(rep));
	test_pause(sy, "apply");
	testhook_crash("apply", TESTHOOK_UNCOUNTED);
	if (r == 0 && cancel_fired(sy->cancel))
		r = -ECANCELED;
	if (r == 0)
		r = store_commit(sy->s);
	if (r < 0) {
		if (r != -ECANCELED)
			store_failed(sy, r, "applying the changes");
		store_rollback(sy->s);
		rep->diff.created = rep->diff.updated = rep->diff.deleted = 0;
	}
	return r;
}

/* The cancel handle fired before anything committed: the run is recorded as such. */
static int interrupted(struct sync *sy)
{
	struct sync_report *rep = sy->report;
	struct diff_result none = { 0 };

	rep->interrupted = true;
	rep->diff = none;
	snprintf(rep->message, sizeof(rep->message), "interrupted: nothing applied");
	log_warning("sync: interrupted run=%" PRId64 ", nothing applied", rep->run_id);
	if (!sy->opt->dry_run && record_run(sy, "interrupted") < 0)
		log_warning("sync: cannot record the end of run %" PRId64 ": %s", rep->run_id,
			    store_errmsg(sy->s));
	return -ECANCELED;
}

static int run(struct sync *sy, const char *kind, void (*fetch)(struct sync *, const void *),
	       const void *arg, const struct sync_options *opt, struct sync_report *report)
{
	struct sync_report rep = { 0 };
	struct diff_options dopt = {
		.source = opt->source ? opt->source : "poll",
		.max_delete_fraction = sy->c->sync.max_delete_fraction,
		.allow_mass_delete = opt->allow_mass_delete,
		.on_change = opt->on_change,
		.userdata = opt->userdata,
	};
	int64_t started = now_ms(), t0 = monotonic_ms(), t_plan, t_apply;
	char held[HELD_TEXT_MAX];
	int r;

	sy->opt = opt;
	sy->report = &rep;
	sy->store_error = 0;
	{
		struct tsapi_usage u;

		tsapi_usage(sy->api, &u);
		sy->requests_before = u.requests;
	}
	pthread_mutex_lock(&sy->lock);
	sy->progress = (struct sync_progress){ .running = true, .started_ms = t0 };
	pthread_mutex_unlock(&sy->lock);
	if (!opt->dry_run) {
		r = store_run_begin(sy->s, kind, started, &rep.run_id);
		if (r < 0) {
			store_failed(sy, r, "recording the run");
			log_error("sync: cannot record the run: %s", rep.message);
			goto out;
		}
		record_late(sy); /* the store takes writes again */
	}
	log_info("sync: %s sync started run=%" PRId64 "%s", kind, rep.run_id,
		 opt->dry_run ? " (dry run)" : "");
	r = fetch == fetch_full ? store_snapshot_reset(sy->s) : store_snapshot_reset_owners(sy->s);
	if (r < 0)
		store_failed(sy, r, "staging");
	else
		fetch(sy, arg);
	deferred_free(sy);
	t_plan = monotonic_ms();
	if (!run_over(sy)) {
		progress_listing(sy, "plan", NULL);
		r = diff_plan(sy->s, &dopt, &rep.diff);
		if (r < 0)
			store_failed(sy, r, "planning");
	}
	r = store_snapshot_end(sy->s);
	if (r < 0)
		store_failed(sy, r, "staging");
	if (!sy->store_error && cancel_fired(sy->cancel)) {
		r = interrupted(sy);
		goto out;
	}
	t_apply = monotonic_ms();
	if (!sy->store_error) {
		progress_listing(sy, "apply", NULL);
		dopt.run_id = rep.run_id;
		dopt.now = now_ms();
		if (opt->dry_run)
			r = opt->on_change ? store_plan_each(sy->s, dopt.source, opt->on_change,
							     opt->userdata)
					   : 0;
		else
			r = apply(sy, &dopt);
		if (r == -ECANCELED) {
			r = interrupted(sy);
			goto out;
		}
		if (r < 0)
			store_failed(sy, r, "applying");
	}
	if (sy->store_error) {
		struct diff_result none = { 0 };

		log_error("sync: failed, nothing committed: %s", rep.message);
		rep.diff = none;
		if (!opt->dry_run && record_run(sy, "failed") < 0)
			log_warning("sync: cannot record the end of run %" PRId64 ": %s",
				    rep.run_id, store_errmsg(sy->s));
		r = sy->store_error;
		goto out;
	}
	held_summary(&rep.diff, held, sizeof(held));
	if (rep.diff.n_held)
		log_error("sync: mass-delete guard held back deletions of %s: more than %.0f%%; "
			  "run 'tsgraphd sync --allow-mass-delete' if this is intended",
			  held, sy->c->sync.max_delete_fraction * 100);
	log_info("sync: %s run=%" PRId64 " staged=%" PRId64 " planned=%" PRId64 " created=%" PRId64
		 " updated=%" PRId64 " deleted=%" PRId64 " held_back=%zu skipped=%" PRId64
		 " duration_ms=%" PRId64 " stage_ms=%" PRId64 " plan_ms=%" PRId64
		 " apply_ms=%" PRId64,
		 rep.failed_listings ? "partial" : "done", rep.run_id, rep.staged, rep.diff.planned,
		 rep.diff.created, rep.diff.updated, rep.diff.deleted, rep.diff.n_held, rep.skipped,
		 monotonic_ms() - t0, t_plan - t0, t_apply - t_plan, monotonic_ms() - t_apply);
	r = rep.failed_listings ? -EAGAIN : 0;
out:
	pthread_mutex_lock(&sy->lock);
	sy->progress.running = false;
	pthread_mutex_unlock(&sy->lock);
	progress_emit(sy, true);
	sy->report = NULL;
	sy->opt = NULL;
	*report = rep;
	return r;
}

int sync_full(struct sync *sy, const struct sync_options *opt, struct sync_report *report)
{
	return run(sy, "full", fetch_full, NULL, opt, report);
}

int sync_refresh(struct sync *sy, const char *const *alert_ids, size_t n_alerts,
		 const char *const *agent_ids, size_t n_agents, const struct sync_options *opt,
		 struct sync_report *report)
{
	struct refresh_args ra = {
		.alerts = alert_ids, .n_alerts = n_alerts, .agents = agent_ids, .n_agents = n_agents
	};
	int r;

	/* Without room to remember them, agents are simply refreshed once per alert. */
	ra.done = calloc(n_alerts + n_agents + 1, sizeof(*ra.done));
	r = run(sy, "refresh", fetch_refresh, &ra, opt, report);
	for (size_t i = 0; i < ra.n_done; i++)
		free(ra.done[i]);
	free(ra.done);
	return r;
}
