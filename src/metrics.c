/* metrics — atomics, and their Prometheus text.
 *
 * Statuses are counted in arrays indexed by the status itself (0..599), so any status is
 * exact without a table of the expected ones; rendering prints the non-zero ones. Labels
 * carry only fixed words and the configured sink names (letters, digits, '-', '_'), so
 * nothing needs escaping.
 */
#include "tsgraphd/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define STATUS_N 600

static const char *const route_names[METRICS_ROUTE_N] = {
	[METRICS_ROUTE_WEBHOOK] = "webhook",
	[METRICS_ROUTE_HEALTHZ] = "healthz",
	[METRICS_ROUTE_METRICS] = "metrics",
	[METRICS_ROUTE_OTHER] = "other",
};

static const char *const kinds[] = { "full", "refresh" };
static const char *const sources[] = { "poll", "webhook" }; /* by kind */
static const char *const results[] = { "ok", "partial", "held", "failed", "interrupted" };
#define KINDS	ARRAY_SIZE(kinds)
#define RESULTS ARRAY_SIZE(results)

struct sink_figures {
	char name[CONFIG_SINK_NAME_MAX + 1];
	_Atomic uint64_t delivered, failures;
	_Atomic int64_t backlog;
};

struct metrics {
	_Atomic uint64_t requests[METRICS_ROUTE_N][STATUS_N];
	_Atomic int64_t in_flight;
	_Atomic uint64_t alerts_accepted, alerts_duplicated;
	_Atomic int64_t inbox_depth;
	_Atomic uint64_t inbox_commits, inbox_committed;
	_Atomic uint64_t settled_confirmed, settled_done, settled_unconfirmed;
	_Atomic uint64_t runs[KINDS][RESULTS];
	_Atomic uint64_t run_ms[KINDS], run_count[KINDS];
	_Atomic int64_t last_ok[KINDS];
	_Atomic uint64_t changes[KINDS][3]; /* created, updated, deleted */
	_Atomic uint64_t api[STATUS_N];
	pthread_mutex_t sinks_lock; /* guards sinks[] and n_sinks (a reload replaces them) */
	struct sink_figures sinks[CONFIG_SINKS_MAX];
	size_t n_sinks;
};

int metrics_new(const char *const *sink_names, size_t n, struct metrics **ret)
{
	struct metrics *m;

	if (n > CONFIG_SINKS_MAX)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	pthread_mutex_init(&m->sinks_lock, NULL);
	for (size_t i = 0; i < n; i++)
		snprintf(m->sinks[i].name, sizeof(m->sinks[i].name), "%s", sink_names[i]);
	m->n_sinks = n;
	*ret = m;
	return 0;
}

int metrics_set_sinks(struct metrics *m, const char *const *sink_names, size_t n)
{
	struct sink_figures next[CONFIG_SINKS_MAX];

	if (n > CONFIG_SINKS_MAX)
		return -EINVAL;
	pthread_mutex_lock(&m->sinks_lock);
	for (size_t i = 0; i < n; i++) {
		struct sink_figures *f = &next[i];

		snprintf(f->name, sizeof(f->name), "%s", sink_names[i]);
		atomic_init(&f->delivered, 0);
		atomic_init(&f->failures, 0);
		atomic_init(&f->backlog, 0);
		for (size_t j = 0; j < m->n_sinks; j++)
			if (strcmp(m->sinks[j].name, f->name) == 0) {
				atomic_store(&f->delivered, atomic_load(&m->sinks[j].delivered));
				atomic_store(&f->failures, atomic_load(&m->sinks[j].failures));
				atomic_store(&f->backlog, atomic_load(&m->sinks[j].backlog));
			}
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(m->sinks[i].name, sizeof(m->sinks[i].name), "%s", next[i].name);
		atomic_store(&m->sinks[i].delivered, atomic_load(&next[i].delivered));
		atomic_store(&m->sinks[i].failures, atomic_load(&next[i].failures));
		atomic_store(&m->sinks[i].backlog, atomic_load(&next[i].backlog));
	}
	m->n_sinks = n;
	pthread_mutex_unlock(&m->sinks_lock);
	return 0;
}

void metrics_free(struct metrics *m)
{
	if (!m)
		return;
	pthread_mutex_destroy(&m->sinks_lock);
	free(m);
}

static size_t index_of(const char *const *words, size_t n, const char *w)
{
	for (size_t i = 0; w && i < n; i++)
		if (strcmp(words[i], w) == 0)
			return i;
	return n;
}

void metrics_request(struct metrics *m, enum metrics_route route, unsigned status)
{
	if ((unsigned)route < METRICS_ROUTE_N && status < STATUS_N)
		atomic_fetch_add_explicit(&m->requests[route][status], 1, memory_order_relaxed);
}

void metrics_in_flight(struct metrics *m, int delta)
{
	atomic_fetch_add_explicit(&m->in_flight, delta, memory_order_relaxed);
}

void metrics_alerts(struct metrics *m, uint64_t accepted, uint64_t duplicated)
{
	atomic_fetch_add_explicit(&m->alerts_accepted, accepted, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->alerts_duplicated, duplicated, memory_order_relaxed);
}

void metrics_inbox_depth(struct metrics *m, int64_t depth)
{
	atomic_store_explicit(&m->inbox_depth, depth, memory_order_relaxed);
}

void metrics_inbox_commit(struct metrics *m, uint64_t n)
{
	atomic_fetch_add_explicit(&m->inbox_commits, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->inbox_committed, n, memory_order_relaxed);
}

void metrics_inbox_settled(struct metrics *m, uint64_t confirmed, uint64_t done,
			   uint64_t unconfirmed)
{
	atomic_fetch_add_explicit(&m->settled_confirmed, confirmed, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->settled_done, done, memory_order_relaxed);
	atomic_fetch_add_explicit(&m->settled_unconfirmed, unconfirmed, memory_order_relaxed);
}

void metrics_sync_run(struct metrics *m, const char *kind, const char *result, int64_t duration_ms,
		      int64_t created, int64_t updated, int64_t deleted, int64_t now_ms)
{
	size_t k = index_of(kinds, KINDS, kind), r = index_of(results, RESULTS, result);
	const int64_t ops[3] = { created, updated, deleted };

	if (k == KINDS || r == RESULTS)
		return;
	atomic_fetch_add(&m->runs[k][r], 1);
	atomic_fetch_add(&m->run_ms[k], (uint64_t)(duration_ms > 0 ? duration_ms : 0));
	atomic_fetch_add(&m->run_count[k], 1);
	for (size_t i = 0; i < 3; i++)
		atomic_fetch_add(&m->changes[k][i], (uint64_t)(ops[i] > 0 ? ops[i] : 0));
	if (r == 0 || r == 2) /* ok, held: every listing came whole */
		atomic_store(&m->last_ok[k], now_ms);
}

int64_t metrics_last_sync_ok(struct metrics *m, const char *kind)
{
	size_t k = index_of(kinds, KINDS, kind);

	return k == KINDS ? 0 : atomic_load(&m->last_ok[k]);
}

void metrics_api_response(struct metrics *m, long status)
{
	if (status < 0 || status >= STATUS_N)
		status = 0;
	atomic_fetch_add_explicit(&m->api[status], 1, memory_order_relaxed);
}

void metrics_sink(struct metrics *m, const char *sink, int64_t delivered, bool failed,
		  int64_t backlog)
{
	pthread_mutex_lock(&m->sinks_lock);
	for (size_t i = 0; i < m->n_sinks; i++) {
		struct sink_figures *s = &m->sinks[i];

		if (strcmp(s->name, sink) != 0)
			continue;
		atomic_fetch_add(&s->delivered, (uint64_t)(delivered > 0 ? delivered : 0));
		if (failed)
			atomic_fetch_add(&s->failures, 1);
		atomic_store(&s->backlog, backlog);
		break;
	}
	pthread_mutex_unlock(&m->sinks_lock);
}

#define LOAD(x) atomic_load_explicit(&(x), memory_order_relaxed)

static int header(struct buf *out, const char *name, const char *type, const char *help)
{
	return buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The per-sink figures: 0 backlog, 1 delivered, 2 failures. */
static int sink_figure(struct metrics *m, struct buf *out, size_t which)
{
	static const struct {
		const char *name, *type, *help;
	} figures[] = {
		{ "tsgraphd_sink_backlog", "gauge",
		  "Outbox changes a sink has not delivered yet." },
		{ "tsgraphd_sink_delivered_total", "counter", "Changes each sink delivered." },
		{ "tsgraphd_sink_failures_total", "counter",
		  "Delivery attempts that failed, by sink." },
	};
	int r = header(out, figures[which].name, figures[which].type, figures[which].help);

	pthread_mutex_lock(&m->sinks_lock);
	for (size_t i = 0; r == 0 && i < m->n_sinks; i++) {
		const struct sink_figures *s = &m->sinks[i];
		int64_t v = which == 0	 ? LOAD(s->backlog)
			    : which == 1 ? (int64_t)LOAD(s->delivered)
					 : (int64_t)LOAD(s->failures);

		r = buf_printf(out, "%s{sink=\"%s\"} %" PRId64 "\n", figures[which].name, s->name,
			       v);
	}
	pthread_mutex_unlock(&m->sinks_lock);
	return r;
}

int metrics_render(struct metrics *m, struct buf *out)
{
	static const char *const ops[] = { "create", "update", "delete" };
	int r;

	r = header(out, "tsgraphd_http_requests_total", "counter",
		   "Requests answered by the receiver, by route and HTTP status.");
	for (size_t rt = 0; r == 0 && rt < METRICS_ROUTE_N; rt++)
		for (unsigned st = 100; r == 0 && st < STATUS_N; st++)
			if (LOAD(m->requests[rt][st]))
				r = buf_printf(
					out,
					"tsgraphd_http_requests_total{route=\"%s\",code=\"%u\"}"
					" %" PRIu64 "\n",
					route_names[rt], st, LOAD(m->requests[rt][st]));
	if (r == 0)
		r = header(
			out, "tsgraphd_http_requests_in_flight", "gauge",
			"Requests the receiver has started and not completed (this one included).");
	if (r == 0)
		r = buf_printf(out, "tsgraphd_http_requests_in_flight %" PRId64 "\n",
			       LOAD(m->in_flight));
	if (r == 0)
		r = header(out, "tsgraphd_webhook_alerts_total", "counter",
			   "Alerts of accepted webhook requests: stored, or already stored.");
	if (r == 0)
		r = buf_printf(out,
			       "tsgraphd_webhook_alerts_total{result=\"accepted\"} %" PRIu64 "\n"
			       "tsgraphd_webhook_alerts_total{result=\"duplicate\"} %" PRIu64 "\n",
			       LOAD(m->alerts_accepted), LOAD(m->alerts_duplicated));
	if (r == 0)
		r = header(out, "tsgraphd_inbox_depth", "gauge",
			   "Webhook alerts in the inbox still to settle (new or unconfirmed).");
	if (r == 0)
		r = buf_printf(out, "tsgraphd_inbox_depth %" PRId64 "\n", LOAD(m->inbox_depth));
	if (r == 0)
		r = header(out, "tsgraphd_inbox_commits_total", "counter",
			   "Group commits of the inbox that stored new alerts (alerts stored per "
			   "commit: tsgraphd_inbox_alerts_committed_total over this).");
	if (r == 0)
		r = buf_printf(out, "tsgraphd_inbox_commits_total %" PRIu64 "\n",
			       LOAD(m->inbox_commits));
	if (r == 0)
		r = header(out, "tsgraphd_inbox_alerts_committed_total", "counter",
			   "New alerts stored by those commits.");
	if (r == 0)
		r = buf_printf(out, "tsgraphd_inbox_alerts_committed_total %" PRIu64 "\n",
			       LOAD(m->inbox_committed));
	if (r == 0)
		r = header(out, "tsgraphd_inbox_settled_total", "counter",
			   "Inbox alerts looked up: confirmed, given up, or left unconfirmed.");
	if (r == 0)
		r = buf_printf(out,
			       "tsgraphd_inbox_settled_total{state=\"confirmed\"} %" PRIu64 "\n"
			       "tsgraphd_inbox_settled_total{state=\"done\"} %" PRIu64 "\n"
			       "tsgraphd_inbox_settled_total{state=\"unconfirmed\"} %" PRIu64 "\n",
			       LOAD(m->settled_confirmed), LOAD(m->settled_done),
			       LOAD(m->settled_unconfirmed));
	if (r == 0)
		r = header(out, "tsgraphd_sync_runs_total", "counter",
			   "Sync runs by kind and result.");
	for (size_t k = 0; r == 0 && k < KINDS; k++)
		for (size_t x = 0; r == 0 && x < RESULTS; x++)
			r = buf_printf(
				out,
				"tsgraphd_sync_runs_total{kind=\"%s\",result=\"%s\"} %" PRIu64 "\n",
				kinds[k], results[x], LOAD(m->runs[k][x]));
	if (r == 0)
		r = header(out, "tsgraphd_sync_duration_seconds", "summary",
			   "Time spent in sync runs, by kind.");
	for (size_t k = 0; r == 0 && k < KINDS; k++)
		r = buf_printf(out,
			       "tsgraphd_sync_duration_seconds_sum{kind=\"%s\"} %.3f\n"
			       "tsgraphd_sync_duration_seconds_count{kind=\"%s\"} %" PRIu64 "\n",
			       kinds[k], (double)LOAD(m->run_ms[k]) / 1000.0, kinds[k],
			       LOAD(m->run_count[k]));
	if (r == 0)
		r = header(out, "tsgraphd_sync_last_success_timestamp_seconds", "gauge",
			   "When the last run of each kind committed (0: none yet).");
	for (size_t k = 0; r == 0 && k < KINDS; k++)
		r = buf_printf(out,
			       "tsgraphd_sync_last_success_timestamp_seconds{kind=\"%s\"} %.3f\n",
			       kinds[k], (double)LOAD(m->last_ok[k]) / 1000.0);
	if (r == 0)
		r = header(out, "tsgraphd_changes_total", "counter",
			   "Changes committed to the outbox, by operation and source.");
	for (size_t k = 0; r == 0 && k < KINDS; k++)
		for (size_t o = 0; r == 0 && o < ARRAY_SIZE(ops); o++)
			r = buf_printf(out,
				       "tsgraphd_changes_total{op=\"%s\",source=\"%s\"} %" PRIu64
				       "\n",
				       ops[o], sources[k], LOAD(m->changes[k][o]));
	if (r == 0)
		r = header(out, "tsgraphd_api_requests_total", "counter",
			   "Threat Stack API tries by HTTP status (code \"none\": no answer).");
	for (unsigned st = 0; r == 0 && st < STATUS_N; st++) {
		char code[8];

		if (!LOAD(m->api[st]))
			continue;
		if (st == 0)
			snprintf(code, sizeof(code), "none");
		else
			snprintf(code, sizeof(code), "%u", st);
		r = buf_printf(out, "tsgraphd_api_requests_total{code=\"%s\"} %" PRIu64 "\n", code,
			       LOAD(m->api[st]));
	}
	for (size_t f = 0; r == 0 && f < 3; f++)
		r = sink_figure(m, out, f);
	return r;
}
