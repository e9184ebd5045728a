/* diff — from a staged snapshot to state and outbox rows.
 *
 * Two steps. diff_plan() reads only: it counts, per completely-enumerated listing, how many
 * stored objects of its primary type the snapshot lacks; holds back the deletions of any
 * listing where that exceeds max_delete_fraction (unless allowed); and marks the rest for
 * deletion with the relationships hanging from them. diff_apply() then writes every change
 * to the outbox and to the stored graph inside the transaction its caller began, so the
 * write lock covers only what changed and the caller decides what commits with it (the
 * run's record, an inbox row). A dry run lists the plan with store_plan_each() instead.
 */
#include "tsgraphd/diff.h"
#include "tsgraphd/canon.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

bool diff_should_hold(int64_t stored, int64_t missing, double max_fraction, bool allow)
{
	if (allow || stored <= 0 || missing <= 0)
		return false;
	return (double)missing > max_fraction * (double)stored;
}

struct hold_ctx {
	const struct diff_options *opt;
	struct diff_result *res;
};

static int hold_check(const char *group, const char *type, int64_t stored, int64_t missing,
		      void *ud)
{
	struct hold_ctx *h = ud;
	struct diff_result *res = h->res;

	if (!diff_should_hold(stored, missing, h->opt->max_delete_fraction,
			      h->opt->allow_mass_delete))
		return 0;
	if (res->n_held == DIFF_HELD_MAX || strlen(type) >= sizeof(res->held[0]) ||
	    strlen(group) >= sizeof(res->held_group[0]))
		return -E2BIG;
	snprintf(res->held[res->n_held], sizeof(res->held[0]), "%s", type);
	snprintf(res->held_group[res->n_held], sizeof(res->held_group[0]), "%s", group);
	res->held_stored[res->n_held] = stored;
	res->held_missing[res->n_held] = missing;
	res->n_held++;
	return 0;
}

int diff_plan(struct store *s, const struct diff_options *opt, struct diff_result *ret)
{
	struct diff_result res = { 0 };
	struct hold_ctx h = { .opt = opt, .res = &res };
	int r;

	r = store_missing_counts(s, hold_check, &h);
	/* A held group is treated as if its listing had not completed: nothing of it goes. */
	for (size_t i = 0; r == 0 && i < res.n_held; i++)
		r = store_snapshot_incomplete(s, res.held_group[i]);
	if (r == 0)
		r = store_plan_deletes(s);
	if (r == 0)
		r = store_plan_size(s, &res.planned);
	if (r < 0)
		return r;
	*ret = res;
	return 0;
}

int diff_apply(struct store *s, const struct diff_options *opt, struct diff_result *res)
{
	int64_t before = 0;
	int r;

	r = store_outbox_max_seq(s, &before);
	if (r == 0)
		r = store_apply_plan(s, opt->source, opt->run_id, opt->now, &res->created,
				     &res->updated, &res->deleted);
	if (r == 0 && opt->on_change)
		r = store_outbox_each(s, before, INT64_MAX, opt->on_change, opt->userdata);
	return r;
}
