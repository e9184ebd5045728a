/* diff — the rules of a full sync's diff: which properties changed, which deletions the
 * mass-delete guard holds back, and the sequence that turns a staged snapshot into state
 * and outbox rows in one transaction.
 *
 * diff_changed_properties() and diff_should_hold() are pure. diff_commit() drives a
 * struct store the caller owns, from the thread that opened it.
 */
#ifndef TSGRAPHD_DIFF_H
#define TSGRAPHD_DIFF_H

#include <stdbool.h>
#include <stdint.h>

#include "tsgraphd/store.h"
#include "tsgraphd/util.h"

#define DIFF_HELD_MAX 16

struct diff_result;

struct diff_options {
	const char *source; /* "poll" | "webhook" */
	int64_t run_id;
	int64_t now;
	double max_delete_fraction;
	bool allow_mass_delete;
	bool dry_run; /* roll back instead of committing */
	/* Called for each outbox row the diff wrote (before commit or rollback); may be NULL. */
	store_outbox_fn on_change;
	/* Called last inside the transaction of a real run (say, to record the run with its
	 * counts, so the record commits with the changes); may be NULL. */
	int (*before_commit)(struct store *s, const struct diff_result *res, void *commit_userdata);
	void *userdata;	       /* for on_change */
	void *commit_userdata; /* for before_commit */
};

struct diff_result {
	int64_t created, updated, deleted;
	size_t n_held; /* listing groups whose deletes were held back, with their primary type */
	char held_group[DIFF_HELD_MAX][32];
	char held[DIFF_HELD_MAX][64];
	int64_t held_missing[DIFF_HELD_MAX];
	int64_t held_stored[DIFF_HELD_MAX];
};

/* Top-level properties whose canonical values differ between two JSON objects, as a sorted
 * JSON array ("[\"status\",\"tag.env\"]"), appended to out. */
int diff_changed_properties(const char *old_json, const char *new_json, struct buf *out);
/* True when deleting missing of stored objects exceeds the fraction (and it is not allowed).
 * The guard judges each listing group by its primary type (the agents, the alerts) and holds
 * the whole group: relationship types are too small and too derived to judge alone. */
bool diff_should_hold(int64_t stored, int64_t missing, double max_fraction, bool allow);
/* Plans and applies the staged snapshot in one transaction. */
int diff_commit(struct store *s, const struct diff_options *opt, struct diff_result *ret);

#endif
