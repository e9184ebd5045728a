/* sink — dispatch to the sink types, and the record of every delivery attempt. */
#include "tsgraphd/sink.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsgraphd/log.h"
#include "tsgraphd/sink_file.h"
#include "tsgraphd/sink_jupiterone.h"
#include "tsgraphd/sink_webhook.h"
#include "tsgraphd/util.h"

struct sink {
	const struct sink_ops *ops;
	const struct config_sink *cfg;
	void *impl;
};

static const struct sink_ops *ops_of(enum config_sink_type t)
{
	switch (t) {
	case SINK_FILE:
		return &sink_file_ops;
	case SINK_JUPITERONE:
		return &sink_jupiterone_ops;
	case SINK_WEBHOOK:
		return &sink_webhook_ops;
	}
	return NULL;
}

int sink_open(const struct config *c, const struct config_sink *cfg, struct cancel *cancel,
	      struct sink **ret, char err[static SINK_ERR_MAX])
{
	const struct sink_ops *ops = ops_of(cfg->type);
	struct sink *k;
	int r;

	err[0] = '\0';
	if (!ops) {
		snprintf(err, SINK_ERR_MAX, "sink type %s is not supported by this version",
			 config_sink_type_to_string(cfg->type));
		return -EOPNOTSUPP;
	}
	k = calloc(1, sizeof(*k));
	if (!k) {
		snprintf(err, SINK_ERR_MAX, "out of memory");
		return -ENOMEM;
	}
	k->ops = ops;
	k->cfg = cfg;
	r = ops->open(c, cfg, cancel, &k->impl, err);
	if (r < 0) {
		if (!err[0])
			snprintf(err, SINK_ERR_MAX, "%s", strerror(-r));
		free(k);
		return r;
	}
	*ret = k;
	return 0;
}

void sink_close(struct sink *k)
{
	if (!k)
		return;
	k->ops->close(k->impl);
	free(k);
}

int sink_drain(struct sink *k, struct store *s, int64_t *ret_delivered,
	       char err[static SINK_ERR_MAX])
{
	int r, rr;

	err[0] = '\0';
	*ret_delivered = 0;
	r = k->ops->drain(k->impl, s, ret_delivered, err);
	if (r == -ECANCELED) /* stopped, not failed */
		return r;
	if (r < 0 && !err[0]) /* never an empty error in status: a sink path forgot its line */
		snprintf(err, SINK_ERR_MAX, "%s", strerror(-r));
	rr = store_sink_report(s, k->cfg->name, now_ms(), r < 0 ? err : NULL);
	if (rr < 0)
		log_warning("sink %s: cannot record the delivery: %s", k->cfg->name,
			    store_errmsg(s));
	return r;
}

int sink_check_gap(struct store *s, int64_t cursor, const char *then, char err[static SINK_ERR_MAX])
{
	int64_t first = 0, last = 0;
	int r = store_outbox_gap(s, cursor, &first, &last);

	if (r < 0 || first == 0)
		return r;
	snprintf(err, SINK_ERR_MAX,
		 "changes %" PRId64 "..%" PRId64 " were pruned before this sink delivered them: %s",
		 first, last, then);
	return -ESTALE;
}

int sink_inspect(const struct config_sink *cfg, struct store *s, char note[static SINK_ERR_MAX])
{
	const struct sink_ops *ops = ops_of(cfg->type);

	note[0] = '\0';
	return ops && ops->inspect ? ops->inspect(cfg, s, note) : 0;
}

int sink_drain_all(const struct config *c, struct store *s, struct cancel *cancel, bool log_idle,
		   sink_report_fn fn, void *userdata)
{
	int failed = 0;

	for (size_t i = 0; i < c->n_sinks; i++) {
		const struct config_sink *cfg = &c->sinks[i];
		char err[SINK_ERR_MAX];
		struct sink *k = NULL;
		int64_t n = 0;
		int r;

		if (cancel_fired(cancel))
			return -ECANCELED;
		r = sink_open(c, cfg, cancel, &k, err);
		if (r == 0)
			r = sink_drain(k, s, &n, err);
		sink_close(k);
		if (fn)
			fn(i, n, r, userdata);
		if (r == -ECANCELED)
			return r;
		if (r < 0) {
			log_error("sink %s: delivery failed, changes stay in the outbox: %s",
				  cfg->name, err);
			failed++;
			continue;
		}
		if (n > 0 || log_idle)
			log_info("sink %s: delivered %" PRId64 " change%s", cfg->name, n,
				 n == 1 ? "" : "s");
	}
	return failed ? -EIO : 0;
}

void sink_prune_outbox(const struct config *c, struct store *s)
{
	const char *names[CONFIG_SINKS_MAX];
	int64_t pruned = 0;
	int r;

	for (size_t i = 0; i < c->n_sinks; i++)
		names[i] = c->sinks[i].name;
	r = store_outbox_prune(s, names, c->n_sinks,
			       now_ms() - (int64_t)c->store.outbox_retention * 1000, &pruned);
	if (r < 0)
		log_warning("store: cannot prune the outbox: %s", store_errmsg(s));
	else if (pruned > 0)
		log_info("store: pruned %" PRId64 " delivered change%s older than %" PRIu32 " s",
			 pruned, pruned == 1 ? "" : "s", c->store.outbox_retention);
}
