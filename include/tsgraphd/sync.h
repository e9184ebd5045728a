/* sync — the sync engine: a full sync of the organization, or a targeted refresh of named
 * alerts and agents, each as stage → plan → apply.
 *
 * A struct sync is the engine of one organization: its creator (the CLI command now, the
 * daemon's sync thread later) makes it from the config, a store, a REST client and a cancel
 * handle it keeps owning, and reuses it for every run. Staging compares each object with
 * the stored graph as it arrives (store.h); the plan reads only; the apply runs in one short
 * write transaction with the run's record, and only when something changed.
 *
 * Completeness is tracked per listing and per refreshed owner: a listing that fails (after
 * the client's retries) leaves its types incomplete, so nothing of them is deleted, while
 * what was fetched still creates and updates; a refreshed agent replaces exactly the
 * objects it owns. Every run is recorded in the store with its counts.
 *
 * Threads: one thread drives a struct sync; sync_progress() may be read from any thread.
 * This module logs (it orchestrates).
 */
#ifndef TSGRAPHD_SYNC_H
#define TSGRAPHD_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsgraphd/cancel.h"
#include "tsgraphd/config.h"
#include "tsgraphd/diff.h"
#include "tsgraphd/store.h"
#include "tsgraphd/tsapi.h"

#define SYNC_MSG_MAX 1024

struct sync;

/* Where a run stands; copied out by sync_progress(). */
struct sync_progress {
	bool running;
	char listing[32];    /* "agents", "vulnerabilities", "alerts", "apply", ... */
	int64_t objects;     /* API objects handled in this listing */
	int64_t expected;    /* what the store held for it last time (0: unknown) */
	int64_t total;	     /* API objects handled in this run */
	uint64_t requests;   /* API requests sent in this run */
	uint32_t per_minute; /* the organization's rate limit */
	uint32_t left;	     /* requests left in the current minute */
	int64_t started_ms;  /* monotonic */
	int64_t listing_ms;  /* monotonic, when this listing started */
};

typedef void (*sync_progress_fn)(const struct sync_progress *p, void *userdata);

struct sync_options {
	bool dry_run;		   /* compute and report the changes, write nothing */
	bool allow_mass_delete;	   /* override the max_delete_fraction guard for this run */
	const char *source;	   /* [poll] what outbox rows say caused them: "poll" | "webhook" */
	store_outbox_fn on_change; /* each change written (dry runs: each change planned) */
	void *userdata;
	sync_progress_fn on_progress; /* now and then during a run (say, a terminal line) */
	void *progress_userdata;
	/* A refresh: each named alert once its GET is done: 0 fetched and staged (committed if
	 * the run commits), -ENOENT unknown to the API, another negative errno when the fetch
	 * failed (after the client's retries) or the run was cancelled. userdata as above. */
	void (*on_alert)(const char *id, int result, void *userdata);
};

struct sync_report {
	int64_t run_id;	 /* 0 for a dry run */
	int64_t staged;	 /* graph objects fetched and staged */
	int64_t skipped; /* API objects the graph builder refused (logged) */
	struct diff_result diff;
	unsigned failed_listings;
	bool interrupted;	    /* the cancel handle fired: nothing was applied */
	char message[SYNC_MSG_MAX]; /* what failed, one line; empty when all went well */
};

/* c, s, api and cancel (which may be NULL) stay the caller's and must outlive the engine. */
int sync_new(const struct config *c, struct store *s, struct tsapi *api, struct cancel *cancel,
	     struct sync **ret);
void sync_free(struct sync *sy);
/* Hands the end of a run the store refused, still to be written at from's next run, to the
 * context that replaces from (a reload builds new ones on the same store). */
void sync_take_unrecorded(struct sync *to, struct sync *from);

/* Every listing. 0 when every listing completed and the changes committed; -EAGAIN when some
 * listing failed (the rest committed; see report->message); -ECANCELED when the cancel
 * handle fired (nothing applied, the run recorded "interrupted"); another negative errno
 * when nothing committed. *report is filled in every case. */
int sync_full(struct sync *sy, const struct sync_options *opt, struct sync_report *report);
/* Only the named alerts (GET /v2/alerts/{id}; each alert's agent is refreshed too) and
 * agents (GET /v2/agents/{id}): each one fetched replaces what it owns. An agent is fetched
 * once per run however many alerts name it (a linear search: callers pass batches of tens).
 * An id the API does not know is left alone (the next full sync decides). Returns as
 * sync_full(). */
int sync_refresh(struct sync *sy, const char *const *alert_ids, size_t n_alerts,
		 const char *const *agent_ids, size_t n_agents, const struct sync_options *opt,
		 struct sync_report *report);
/* A copy of where the current (or last) run stands. Any thread. */
void sync_progress(struct sync *sy, struct sync_progress *ret);

#endif
