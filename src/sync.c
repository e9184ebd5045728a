/* sync — one full sync of the organization.
 *
 * Listings run in order: the account (no request), agents online then offline, active
 * vulnerabilities (with their agents, or the per-CVE servers listing when the item has none),
 * alerts of the window (active and dismissed, so a dismissal is an update, not a deletion).
 * Each object goes straight through the graph builder into the store's snapshot: memory
 * holds one page, never the fleet. An agent listed both online and offline is staged twice
 * and the store keeps the newer one (graph rank = lastReportedAt).
 *
 * Each listing that completes marks its graph types complete; only complete types can lose
 * objects in the diff. A failed listing is logged once with its error class and the sync goes
 * on with the others, so one failing endpoint does not stall the whole graph.
 */
#include "tsgraphd/sync.h"
#include "tsgraphd/canon.h"
#include "tsgraphd/graph.h"
#include "tsgraphd/log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define OBJECT_JSON_MAX (4u * 1024 * 1024)
#define WEB_URL		"https://app.threatstack.com"

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

struct run {
	const struct config *c;
	struct store *s;
	struct tsapi *nested;
	struct graph_options gopt;
	struct buf json;
	int64_t staged;
	int store_error; /* a store failure ends the sync: nothing can be committed after it */
	int64_t skipped; /* objects the graph builder refused (say, a malformed CVE id) */
	struct tsapi_error nested_err;
	bool nested_failed;
	struct sync_report *report;
};

/* graph → canonical JSON + hash → snapshot. */
static int stage(const struct graph_object *o, void *ud)
{
	struct run *run = ud;
	char hash[CANON_HASH_HEX + 1];
	int r;

	buf_reset(&run->json);
	r = canon_serialize(o->obj, &run->json);
	if (r == 0)
		r = canon_sha256_hex(run->json.data, run->json.len, hash);
	if (r == 0)
		r = store_snapshot_put(run->s, o, run->json.data, hash);
	if (r < 0) {
		run->store_error = r;
		return r;
	}
	run->staged++;
	return 0;
}

/* A builder's -EINVAL means the object cannot be a graph object (a CVE id that is not one,
 * an empty id): skip it, say so, and go on with the listing rather than fail it. */
static int built(struct run *run, int r, const char *what, const char *id)
{
	if (r != -EINVAL || run->store_error)
		return r;
	if (++run->skipped <= 10)
		log_warning("sync: skipped %s %s: not valid as a graph object", what,
			    id ? id : "(without id)");
	return 0;
}

static int on_agent(struct ts_agent *a, void *ud)
{
	struct run *run = ud;

	return built(run, graph_agent(&run->gopt, a, stage, run), "agent", a->id);
}

struct vuln_ctx {
	struct run *run;
	const struct ts_vuln *v;
};

static int on_server(struct ts_server *srv, void *ud)
{
	struct vuln_ctx *vc = ud;

	if (!srv->agent_id)
		return 0;
	return built(vc->run,
		     graph_vuln_agent(&vc->run->gopt, vc->v, srv->agent_id, stage, vc->run),
		     "vulnerability", vc->v->cve);
}

static int on_vuln(struct ts_vuln *v, void *ud)
{
	struct run *run = ud;
	struct vuln_ctx vc = { .run = run, .v = v };
	int r;

	if (v->has_agents) {
		for (size_t i = 0; i < v->agent_ids.n; i++) {
			r = built(run,
				  graph_vuln_agent(&run->gopt, v, v->agent_ids.v[i], stage, run),
				  "vulnerability", v->cve);
			if (r != 0)
				return r;
		}
		return 0;
	}
	/* No "agents" member (older answers): ask the per-CVE listing, on the second client so
	 * the outer listing's page stays intact. */
	r = tsapi_list_cve_servers(run->nested, v->cve, on_server, &vc, &run->nested_err);
	if (r < 0 && !run->store_error)
		run->nested_failed = true;
	return r;
}

static int on_alert(struct ts_alert *al, void *ud)
{
	struct run *run = ud;

	return built(run, graph_alert(&run->gopt, al, stage, run), "alert", al->id);
}

static int mark_complete(struct run *run, const char *group, const char *const *types, size_t n)
{
	int r = store_snapshot_complete(run->s, group, types, n);

	if (r < 0)
		run->store_error = r;
	return r;
}

/* Notes a failed listing in the report (and the log), once per listing. */
static void listing_failed(struct run *run, const char *what, const struct tsapi_error *err)
{
	struct sync_report *rep = run->report;
	size_t used = strlen(rep->message);

	log_error("sync: %s incomplete, nothing of it will be deleted: %s: %s", what,
		  tsapi_strerror(err->code), err->message);
	snprintf(rep->message + used, sizeof(rep->message) - used, "%s%s: %s", used ? "; " : "",
		 what, tsapi_strerror(err->code));
	rep->failed_listings++;
}

static void fetch_all(struct run *run, struct tsapi *api)
{
	static const char *const statuses[] = { "online", "offline" };
	static const char *const alert_statuses[] = { "active", "dismissed" };
	struct tsapi_error err = { 0 };
	int64_t until = now_ms();
	int64_t from = until - (int64_t)run->c->ts.alert_days * 86400 * 1000;
	bool ok;
	int r;

	r = graph_account(&run->gopt, stage, run);
	if (r == 0)
		mark_complete(run, "account", account_types, ARRAY_SIZE(account_types));
	if (run->store_error)
		return;

	ok = true;
	for (size_t i = 0; i < ARRAY_SIZE(statuses) && ok; i++) {
		if (tsapi_list_agents(api, statuses[i], on_agent, run, &err) < 0) {
			if (run->store_error)
				return;
			listing_failed(run, "agents", &err);
			ok = false;
		}
	}
	if (ok && mark_complete(run, "agents", agent_types, ARRAY_SIZE(agent_types)) < 0)
		return;

	run->nested_failed = false;
	if (tsapi_list_vulns(api, on_vuln, run, &err) < 0) {
		if (run->store_error)
			return;
		listing_failed(run, "vulnerabilities",
			       run->nested_failed ? &run->nested_err : &err);
	} else if (mark_complete(run, "vulnerabilities", vuln_types, ARRAY_SIZE(vuln_types)) < 0) {
		return;
	}

	ok = true;
	for (size_t i = 0; i < ARRAY_SIZE(alert_statuses) && ok; i++) {
		if (tsapi_list_alerts(api, alert_statuses[i], from, until, on_alert, run, &err) <
		    0) {
			if (run->store_error)
				return;
			listing_failed(run, "alerts", &err);
			ok = false;
		}
	}
	if (ok)
		mark_complete(run, "alerts", alert_types, ARRAY_SIZE(alert_types));
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

/* The run's record, written in the diff's own transaction: it commits with the changes. */
static int record_run(struct store *s, const struct diff_result *d, void *ud)
{
	struct run *run = ud;
	struct sync_report *rep = run->report;
	char held[512];
	struct store_run sr = {
		.id = rep->run_id,
		.result = rep->failed_listings ? "partial"
			  : d->n_held	       ? "held"
					       : "ok",
		.finished = now_ms(),
		.created = d->created,
		.updated = d->updated,
		.deleted = d->deleted,
		.held_back = d->n_held ? held : NULL,
		.message = rep->message[0] ? rep->message : NULL,
	};

	held_summary(d, held, sizeof(held));
	return store_run_finish(s, &sr);
}

int sync_full(const struct config *c, struct store *s, struct tsapi *api, struct tsapi *api_nested,
	      const struct sync_options *opt, struct sync_report *report)
{
	struct sync_report rep = { 0 };
	struct run run = {
		.c = c,
		.s = s,
		.nested = api_nested,
		.gopt = { .org_id = c->ts.org_id, .org_name = c->ts.org_name, .web_url = WEB_URL },
		.report = &rep,
	};
	struct diff_options dopt = {
		.source = "poll",
		.max_delete_fraction = c->sync.max_delete_fraction,
		.allow_mass_delete = opt->allow_mass_delete,
		.dry_run = opt->dry_run,
		.on_change = opt->on_change,
		.userdata = opt->userdata,
		.before_commit = record_run,
		.commit_userdata = &run,
	};
	int64_t started = now_ms(), t0 = monotonic_ms();
	char held[512];
	int r;

	buf_init(&run.json, OBJECT_JSON_MAX);
	if (!opt->dry_run) {
		r = store_run_begin(s, "full", started, &rep.run_id);
		if (r < 0) {
			log_error("sync: cannot record the run in the store: %s", store_errmsg(s));
			goto out;
		}
	}
	log_info("sync: full sync started run=%" PRId64 "%s", rep.run_id,
		 opt->dry_run ? " (dry run)" : "");
	r = store_snapshot_reset(s);
	if (r < 0)
		run.store_error = r;
	else
		fetch_all(&run, api);
	if (!run.store_error) {
		rep.staged = run.staged;
		rep.skipped = run.skipped;
		dopt.run_id = rep.run_id;
		dopt.now = now_ms();
		r = diff_commit(s, &dopt, &rep.diff);
		if (r < 0)
			run.store_error = r;
	}
	if (run.store_error) {
		struct store_run sr = { .id = rep.run_id,
					.result = "failed",
					.finished = now_ms(),
					.message = rep.message };

		snprintf(rep.message, sizeof(rep.message), "store: %s (%s)", store_errmsg(s),
			 strerror(-run.store_error));
		log_error("sync: failed, nothing committed: %s", rep.message);
		if (!opt->dry_run && store_run_finish(s, &sr) < 0)
			log_warning("sync: cannot record the end of run %" PRId64 ": %s",
				    rep.run_id, store_errmsg(s));
		r = run.store_error;
		goto out;
	}
	held_summary(&rep.diff, held, sizeof(held));
	if (rep.diff.n_held)
		log_error("sync: mass-delete guard held back deletions of %s: more than %.0f%%; "
			  "run 'tsgraphd sync --allow-mass-delete' if this is intended",
			  held, c->sync.max_delete_fraction * 100);
	log_info("sync: %s run=%" PRId64 " staged=%" PRId64 " created=%" PRId64 " updated=%" PRId64
		 " deleted=%" PRId64 " held_back=%zu skipped=%" PRId64 " duration_ms=%" PRId64,
		 rep.failed_listings ? "partial" : "done", rep.run_id, rep.staged, rep.diff.created,
		 rep.diff.updated, rep.diff.deleted, rep.diff.n_held, rep.skipped,
		 monotonic_ms() - t0);
	r = rep.failed_listings ? -EAGAIN : 0;
out:
	buf_free(&run.json);
	*report = rep;
	return r;
}
