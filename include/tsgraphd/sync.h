/* sync — one full sync: enumerate the organization through the REST client, build the graph,
 * stage it, and let the diff commit state and outbox rows in one transaction.
 *
 * Completeness is tracked per listing: a listing that fails (after the client's retries)
 * leaves its types incomplete, so the diff deletes nothing of them, while what was fetched
 * still creates and updates. The run is recorded in the store with its counts and what the
 * mass-delete guard held back.
 *
 * Ownership: the caller owns the config, the store and the two clients (the second serves the
 * per-CVE listing nested inside the vulnerability listing). Threads: the sync thread, or a
 * one-shot command; the objects passed in must not be used elsewhere meanwhile. This module
 * logs (it orchestrates).
 */
#ifndef TSGRAPHD_SYNC_H
#define TSGRAPHD_SYNC_H

#include <stdbool.h>
#include <stdint.h>

#include "tsgraphd/config.h"
#include "tsgraphd/diff.h"
#include "tsgraphd/store.h"
#include "tsgraphd/tsapi.h"

#define SYNC_MSG_MAX 1024

struct sync_options {
	bool dry_run;		   /* compute and report the changes, then roll back */
	bool allow_mass_delete;	   /* override the max_delete_fraction guard for this run */
	store_outbox_fn on_change; /* each change the diff wrote (dry runs print them) */
	void *userdata;
};

struct sync_report {
	int64_t run_id;	 /* 0 for a dry run */
	int64_t staged;	 /* graph objects fetched and staged */
	int64_t skipped; /* API objects the graph builder refused (logged) */
	struct diff_result diff;
	unsigned failed_listings;
	char message[SYNC_MSG_MAX]; /* what failed, one line; empty when all went well */
};

/* 0 when every listing completed and the diff committed; -EAGAIN when some listing failed
 * (the rest committed; see report->message); another negative errno when nothing committed.
 * *report is filled in every case. */
int sync_full(const struct config *c, struct store *s, struct tsapi *api, struct tsapi *api_nested,
	      const struct sync_options *opt, struct sync_report *report);

#endif
