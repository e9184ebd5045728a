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
 * Threads: one thread per sink, with its own struct store.
 */
#ifndef TSGRAPHD_SINK_H
#define TSGRAPHD_SINK_H

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
/* note is empty when there is nothing to add to the recorded state. */
int sink_inspect(const struct config_sink *cfg, struct store *s, char note[static SINK_ERR_MAX]);

#endif
