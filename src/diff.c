/* diff — from a staged snapshot to state and outbox rows, in one transaction.
 *
 * The sequence: count, per completely-enumerated type, how many stored objects the snapshot
 * lacks; hold back the deletions of any type where that exceeds max_delete_fraction (unless
 * allowed); mark the rest for deletion with the relationships hanging from them; then write
 * every change to the outbox and to the stored graph together. A dry run takes the same path
 * and rolls back, so what it prints is exactly what a real run would write.
 *
 * Changed properties compare canonical forms member by member, so a property that only
 * moved inside the object, or was re-spelled by the API, is not a change.
 */
#include "tsgraphd/diff.h"
#include "tsgraphd/canon.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#define CHANGED_MAX 4096 /* properties compared per object */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether two JSON values have the same canonical form. */
static int same_value(json_object *a, json_object *b, bool *ret)
{
	struct buf ba, bb;
	int r;

	buf_init(&ba, 16 * 1024 * 1024);
	buf_init(&bb, 16 * 1024 * 1024);
	r = canon_serialize(a, &ba);
	if (r == 0)
		r = canon_serialize(b, &bb);
	if (r == 0)
		*ret = ba.len == bb.len && (ba.len == 0 || memcmp(ba.data, bb.data, ba.len) == 0);
	buf_free(&ba);
	buf_free(&bb);
	return r;
}

int diff_changed_properties(const char *old_json, const char *new_json, struct buf *out)
{
	json_object *old = NULL, *new = NULL, *arr = NULL;
	const char **names = NULL;
	size_t n = 0;
	int r = -EINVAL;

	if (!old_json || !new_json)
		goto out;
	old = json_tokener_parse(old_json);
	new = json_tokener_parse(new_json);
	if (!json_object_is_type(old, json_type_object) ||
	    !json_object_is_type(new, json_type_object))
		goto out;
	names = calloc(CHANGED_MAX, sizeof(*names));
	if (!names) {
		r = -ENOMEM;
		goto out;
	}
	/* Members of new that are absent from old or differ, then members only old has. */
	json_object_object_foreach(new, key, val)
	{
		json_object *before = NULL;
		bool same = false;

		if (json_object_object_get_ex(old, key, &before)) {
			r = same_value(before, val, &same);
			if (r < 0)
				goto out;
		}
		if (!same) {
			if (n == CHANGED_MAX) {
				r = -E2BIG;
				goto out;
			}
			names[n++] = key;
		}
	}
	json_object_object_foreach(old, okey, oval)
	{
		(void)oval;
		if (!json_object_object_get_ex(new, okey, NULL)) {
			if (n == CHANGED_MAX) {
				r = -E2BIG;
				goto out;
			}
			names[n++] = okey;
		}
	}
	qsort(names, n, sizeof(*names), cmp_str);
	arr = json_object_new_array_ext((int)n);
	if (!arr) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_new_string(names[i]);

		if (!s || json_object_array_add(arr, s) < 0) {
			json_object_put(s);
			r = -ENOMEM;
			goto out;
		}
	}
	r = buf_puts(out, json_object_to_json_string_ext(
				  arr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
out:
	json_object_put(arr);
	free(names);
	json_object_put(old);
	json_object_put(new);
	return r;
}

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

int diff_commit(struct store *s, const struct diff_options *opt, struct diff_result *ret)
{
	struct diff_result res = { 0 };
	struct hold_ctx h = { .opt = opt, .res = &res };
	int64_t before = 0;
	int r;

	r = store_begin(s);
	if (r < 0)
		return r;
	r = store_outbox_max_seq(s, &before);
	if (r == 0)
		r = store_missing_counts(s, hold_check, &h);
	/* A held group is treated as if its listing had not completed: nothing of it goes. */
	for (size_t i = 0; r == 0 && i < res.n_held; i++)
		r = store_snapshot_incomplete(s, res.held_group[i]);
	if (r == 0)
		r = store_plan_deletes(s);
	if (r == 0)
		r = store_apply_plan(s, opt->source, opt->run_id, opt->now, &res.created,
				     &res.updated, &res.deleted);
	if (r == 0 && opt->on_change)
		r = store_outbox_each(s, before, INT64_MAX, opt->on_change, opt->userdata);
	if (r == 0 && opt->before_commit && !opt->dry_run)
		r = opt->before_commit(s, &res, opt->commit_userdata);
	if (r == 0 && !opt->dry_run)
		r = store_commit(s);
	if (r < 0 || opt->dry_run)
		store_rollback(s);
	if (r < 0)
		return r;
	*ret = res;
	return 0;
}
