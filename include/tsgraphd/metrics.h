/* metrics — the daemon's counters and gauges, rendered as Prometheus text for GET /metrics.
 *
 * Every figure is an atomic in one struct metrics: the receiver's handler threads, the inbox
 * writer, the sync thread and the API client bump them without a lock, and a scrape reads
 * them as they are (each figure is exact; the set is not one instant).
 *
 * Ownership: the daemon creates one and frees it after every thread that uses it has
 * stopped. It copies the sink names it is given; a reload replaces them (metrics_set_sinks),
 * and the sinks' figures, kept by name under a lock, follow. Threads: any, for every
 * function but metrics_new() and metrics_free(). Pure: no logging.
 */
#ifndef TSGRAPHD_METRICS_H
#define TSGRAPHD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsgraphd/config.h"
#include "tsgraphd/util.h"

#define METRICS_TEXT_MAX (256u * 1024) /* the rendered page */

enum metrics_route {
	METRICS_ROUTE_WEBHOOK,
	METRICS_ROUTE_HEALTHZ,
	METRICS_ROUTE_METRICS,
	METRICS_ROUTE_OTHER,
	METRICS_ROUTE_N,
};

struct metrics;

/* The configured sinks' names; n at most CONFIG_SINKS_MAX. */
int metrics_new(const char *const *sink_names, size_t n, struct metrics **ret);
/* A reload's sinks: a name kept keeps its figures, a new one starts at 0, one gone is no
 * longer rendered. -EINVAL for more than CONFIG_SINKS_MAX. */
int metrics_set_sinks(struct metrics *m, const char *const *sink_names, size_t n);
void metrics_free(struct metrics *m);

/* One answered request: its route and HTTP status (100..599). */
void metrics_request(struct metrics *m, enum metrics_route route, unsigned status);
/* A request started (+1) or completed (-1), answered or not. */
void metrics_in_flight(struct metrics *m, int delta);
/* Alerts of accepted requests: stored for the first time, and already stored. */
void metrics_alerts(struct metrics *m, uint64_t accepted, uint64_t duplicated);
void metrics_inbox_depth(struct metrics *m, int64_t depth);
/* One group commit of the inbox that stored n new alerts. */
void metrics_inbox_commit(struct metrics *m, uint64_t n);
/* Alerts the sync thread settled: confirmed, given up (done), left unconfirmed. */
void metrics_inbox_settled(struct metrics *m, uint64_t confirmed, uint64_t done,
			   uint64_t unconfirmed);
/* One sync run. kind "full" | "refresh"; result "ok" | "partial" | "held" | "failed" |
 * "interrupted"; the changes it committed; now_ms the wall clock at its end. */
void metrics_sync_run(struct metrics *m, const char *kind, const char *result, int64_t duration_ms,
		      int64_t created, int64_t updated, int64_t deleted, int64_t now_ms);
/* The wall-clock ms of the last run of kind ("full") that succeeded (ok, or held by the
 * mass-delete guard: every listing came whole); 0 before the first. */
int64_t metrics_last_sync_ok(struct metrics *m, const char *kind);
/* One try of an API request: its HTTP status, or 0 when no answer came. */
void metrics_api_response(struct metrics *m, long status);
/* A sink's delivery attempt: what it delivered, whether it failed, its backlog after it. */
/* A sink that is not configured (any more) is ignored. */
void metrics_sink(struct metrics *m, const char *sink, int64_t delivered, bool failed,
		  int64_t backlog);

/* The whole page, Prometheus text format 0.0.4, into out (initialised with a max of at least
 * METRICS_TEXT_MAX). */
int metrics_render(struct metrics *m, struct buf *out);

#endif
