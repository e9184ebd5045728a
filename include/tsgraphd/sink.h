/* sink — one destination of the outbox behind one interface: the NDJSON change log
 * (sink_file), JupiterOne's synchronization API (sink_jupiterone) and change-alert webhooks
 * (sink_webhook).
 *
 * Each sink keeps its own cursor in the store and delivers, in seq order, every outbox row
 * after it; the cursor moves only past what the destination has durably taken. sink_drain()
 * also records the attempt (success, or the error and how many attempts in a row failed)
 * for `status`, /healthz and /metrics.
 *
 * Ownership: sink_open() returns a struct sink the caller frees with sink_close() (NULL is
 * accepted); it borrows the config and the cancel handle, which must outlive it.
 * Threads: a struct sink is used by one thread at a time (today the sync thread delivers
 * every sink in turn), with that thread's struct store.
 */
#ifndef TSGRAPHD_SINK_H
#define TSGRAPHD_SINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsgraphd/cancel.h"
#include "tsgraphd/config.h"
#include "tsgraphd/store.h"

#define SINK_ERR_MAX 512

/* What one type of sink implements. inspect may be NULL. Errors are negative errno values
 * with one line for a person in err; -ECANCELED when the cancel handle fired. */
struct sink_ops {
	int (*open)(const struct config *c, const struct config_sink *cfg, struct cancel *cancel,
		    void **ret, char err[static SINK_ERR_MAX]);
	/* Delivers every row after the sink's cursor; *ret_delivered is how many. */
	int (*drain)(void *impl, struct store *s, int64_t *ret_delivered,
		     char err[static SINK_ERR_MAX]);
	/* For `status`: one line when something is wrong beyond the recorded error, read-only. */
	int (*inspect)(const struct config_sink *cfg, struct store *s,
		       char note[static SINK_ERR_MAX]);
	void (*close)(void *impl);
};

struct sink;

int sink_open(const struct config *c, const struct config_sink *cfg, struct cancel *cancel,
	      struct sink **ret, char err[static SINK_ERR_MAX]);
void sink_close(struct sink *k);
/* Delivers the backlog and records the attempt in the store (a failure to record is logged,
 * the delivery's result stands). */
int sink_drain(struct sink *k, struct store *s, int64_t *ret_delivered,
	       char err[static SINK_ERR_MAX]);
/* Changes right after cursor that the outbox no longer holds (pruned while the sink was not
 * in the configuration that pruned): -ESTALE with "changes N..M were pruned before this
 * sink delivered them: <then>" in err. 0 when there are none; a store error as is, err
 * untouched. */
int sink_check_gap(struct store *s, int64_t cursor, const char *then,
		   char err[static SINK_ERR_MAX]);
/* After each sink of sink_drain_all(): its index in c->sinks, what it delivered, and 0, or
 * its negative errno. */
typedef void (*sink_report_fn)(size_t index, int64_t delivered, int result, void *userdata);
/* Delivers the outbox to every configured sink in turn, each on its own: one that fails
 * keeps its changes in the outbox for the next attempt and does not stop the others. Logs
 * one line per sink that failed (error) or delivered something (info; with log_idle, also
 * when it had nothing to deliver). -EIO when any failed, -ECANCELED when the cancel handle
 * fired first. fn may be NULL. */
int sink_drain_all(const struct config *c, struct store *s, struct cancel *cancel, bool log_idle,
		   sink_report_fn fn, void *userdata);
/* Drops the outbox rows every configured sink has delivered once outbox_retention has
 * passed. A failure costs only space: it is logged, nothing else. */
void sink_prune_outbox(const struct config *c, struct store *s);
/* note is empty when there is nothing to add to the recorded state. */
int sink_inspect(const struct config_sink *cfg, struct store *s, char note[static SINK_ERR_MAX]);

#endif
