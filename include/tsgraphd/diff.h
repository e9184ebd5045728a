/* diff — the rules of a sync's diff: which deletions the mass-delete guard holds back, the
 * plan (read-only), and its apply inside the caller's transaction.
 *
 * diff_should_hold() is pure. diff_plan() and diff_apply() drive a struct store the caller
 * owns, from the thread that opened it.
 */
#ifndef TSGRAPHD_DIFF_H
#define TSGRAPHD_DIFF_H

#include <stdbool.h>
#include <stdint.h>

#include "tsgraphd/store.h"

#define DIFF_HELD_MAX 16

struct diff_result;

struct diff_options {
	const char *source; /* "poll" | "webhook" */
	int64_t run_id;
	int64_t now;
	double max_delete_fraction;
	bool allow_mass_delete;
	/* Called for each outbox row the apply wrote (before the caller commits); may be NULL. */
	store_outbox_fn on_change;
	void *userdata;
};

struct diff_result {
	int64_t planned; /* changes in the plan: 0 means nothing to apply */
	int64_t created, updated, deleted;
	size_t n_held; /* listing groups whose deletes were held back, with their primary type */
	char held_group[DIFF_HELD_MAX][32];
	char held[DIFF_HELD_MAX][GRAPH_TYPE_MAX]; /* primary type */
	int64_t held_missing[DIFF_HELD_MAX];
	int64_t held_stored[DIFF_HELD_MAX];
};

/* True when deleting missing of stored objects exceeds the fraction (and it is not allowed).
 * The guard judges each listing group by its primary type (the agents, the alerts) and holds
 * the whole group: relationship types are too small and too derived to judge alone. */
bool diff_should_hold(int64_t stored, int64_t missing, double max_fraction, bool allow);
/* Settles the staged snapshot into a plan: the guard, the deletions, the cascade. Takes no
 * write lock. */
int diff_plan(struct store *s, const struct diff_options *opt, struct diff_result *ret);
/* Applies the plan inside the caller's transaction; fills res's created/updated/deleted. */
int diff_apply(struct store *s, const struct diff_options *opt, struct diff_result *res);

#endif
