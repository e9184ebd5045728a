/* sink_webhook — change alerts: the outbox rows that are events a sink selects (an agent
 * went offline, a CVE was identified on an agent, a new high-severity alert...), each POSTed
 * to a URL as the change object of docs/change-log.md (format json) or as one sentence for
 * a Slack or Teams channel (format slack), signed with HMAC-SHA256 when the sink has a
 * secret. docs/change-alerts.md is the user's guide.
 *
 * Delivery is at least once and in order, one change per request: the sink's cursor moves
 * past a row once its POST was answered 2xx, or when the row is no event the sink sends.
 * 408, 425, 429, 5xx and transport failures are retried with backoff (Retry-After
 * honoured) up to SINK_WEBHOOK_ATTEMPTS tries in one drain; any other answer stops the drain
 * at that row, which stays in the outbox for the next one. A new sink starts after the
 * outbox's last change unless it is configured with backfill.
 *
 * The pure steps (which event a row is, whether a sink sends it, its text, its body, the
 * signature) are exported for the tests; they take the entity names they need from a
 * callback instead of the store.
 *
 * Ownership: the sink borrows its struct config_sink and the cancel handle (sink.h); a body
 * or text is appended to the caller's buffer. Threads: one thread per sink, with its own
 * struct store; the pure functions from any thread.
 */
#ifndef TSGRAPHD_SINK_WEBHOOK_H
#define TSGRAPHD_SINK_WEBHOOK_H

#include <stdbool.h>
#include <stdint.h>

#include "tsgraphd/config.h"
#include "tsgraphd/sink.h"
#include "tsgraphd/store.h"
#include "tsgraphd/util.h"

#define SINK_WEBHOOK_ATTEMPTS	   5 /* tries of one POST in one drain */
#define SINK_WEBHOOK_SIGNATURE_MAX (sizeof("sha256=") + 64)

/* The webhook sink behind sink.h. */
extern const struct sink_ops sink_webhook_ops;

/* What an outbox row is to a webhook sink. */
struct sink_webhook_event {
	unsigned event; /* one enum config_webhook_event bit; 0 when it is none of them */
	enum config_severity severity; /* alert events: the alert's (low when it has none) */
};

/* The name of the entity key into *ret (malloc'd), -ENOENT when it is not in the graph. */
typedef int (*sink_webhook_name_fn)(const char *key, char **ret, void *userdata);

/* Which event r is. -EBADMSG when its JSON or changed list does not parse. */
int sink_webhook_classify(const struct outbox_row *r, struct sink_webhook_event *ret);
/* Whether the sink cfg sends e (its events and min_severity). */
bool sink_webhook_selected(const struct config_sink *cfg, const struct sink_webhook_event *e);
/* The sentence for a person ("agent api-prod-1 went offline"), as UTF-8 text appended to
 * out; name may be NULL (ids stand in for names). */
int sink_webhook_text(const struct outbox_row *r, unsigned event, sink_webhook_name_fn name,
		      void *userdata, struct buf *out);
/* The body POSTed for r in cfg's format, appended to out. */
int sink_webhook_body(const struct config_sink *cfg, const struct outbox_row *r, unsigned event,
		      sink_webhook_name_fn name, void *userdata, struct buf *out);
/* "sha256=" and the hex HMAC-SHA256, keyed with secret, of "<timestamp>.<body>". */
int sink_webhook_signature(const char *secret, int64_t timestamp, const char *body, size_t len,
			   char out[static SINK_WEBHOOK_SIGNATURE_MAX]);

#endif
