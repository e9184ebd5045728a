/* sink_webhook — change alerts POSTed to a URL, one change per request, at least once and in
 * order.
 *
 * A drain reads the outbox after the sink's cursor in scans of SCAN_ROWS rows. Each row is
 * classified (an agent's status changed, a CVE was identified...) from its type, op and
 * changed list, looking into its JSON only for the rows that may be events; rows that are no
 * event the sink selects are passed over. The bodies of up to BATCH_MESSAGES selected rows
 * are rendered while the scan's statement is open (the names of agents come from the stored
 * graph then), and POSTed after it is finished, so no read transaction stays open across
 * the network. The cursor moves after each accepted POST: a crash repeats at most the
 * change whose answer was not yet recorded (test builds crash exactly there: "post"),
 * and one fsync per alert costs little beside its round trip. Rows passed over at the end of
 * a scan move the cursor once.
 *
 * A failed POST is retried in place (nothing after it goes first) when the failure may pass:
 * 408, 425, 429, 5xx, a transport error. After SINK_WEBHOOK_ATTEMPTS tries, or at once for
 * any other answer (a 4xx: a wrong URL or secret that retrying cannot fix; a 3xx: redirects
 * are not followed), the drain fails with the reason and the row stays first in line. Waits
 * end on the cancel handle.
 *
 * A sink with no cursor yet (it never delivered, and the outbox was never empty at its
 * start) begins after the outbox's last change unless backfill is set: the first sync of a
 * new store creates every agent, CVE and alert, which is the baseline, not news.
 */
#include "tsgraphd/sink_webhook.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "tsgraphd/canon.h"
#include "tsgraphd/graph.h"
#include "tsgraphd/http.h"
#include "tsgraphd/log.h"
#include "tsgraphd/sink_file.h"
#include "tsgraphd/testhook.h"

#define SCAN_ROWS	 1000		    /* outbox rows read by one scan */
#define BATCH_MESSAGES	 100		    /* bodies rendered by one scan */
#define BATCH_BYTES	 (8u * 1024 * 1024) /* and their bytes, past which the scan stops */
#define BODY_MAX	 (CANON_OBJECT_MAX + 64u * 1024) /* one change line and its members */
#define TEXT_MAX	 4096u				 /* one sentence */
#define NAME_SHOWN_MAX	 200u		/* bytes of a name or title in a sentence */
#define LIST_SHOWN_MAX	 1024u		/* bytes of changed property names in a sentence */
#define ANSWER_MAX	 (1024u * 1024) /* a receiver's answer, read and ignored */
#define ANSWER_SHOWN_MAX 120u		/* bytes of a refusal's answer in the error */
#define IDENTIFIED_INFIX "|identified|"

struct sink_webhook {
	const struct config_sink *cfg;
	struct http *http;
};

/* --- which event a row is ---------------------------------------------------------------- */

static bool json_string_is(json_object *o, const char *member, const char *want)
{
	json_object *v;

	return json_object_object_get_ex(o, member, &v) &&
	       json_object_is_type(v, json_type_string) &&
	       strcmp(json_object_get_string(v), want) == 0;
}

static const char *json_string_of(json_object *o, const char *member)
{
	json_object *v;

	return json_object_object_get_ex(o, member, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

/* Parses the changed list: *ret_status when status or active is in it, *ret_other when a
 * property beyond the agent's heartbeat (lastReportedAt, lastSeenOn) is, *ret_dismissed for
 * dismissed. */
static int read_changed(const char *changed, bool *ret_status, bool *ret_other, bool *ret_dismissed)
{
	json_object *a = changed ? json_tokener_parse(changed) : NULL;
	int r = 0;

	*ret_status = *ret_other = *ret_dismissed = false;
	if (!a || !json_object_is_type(a, json_type_array)) {
		r = -EBADMSG;
		goto out;
	}
	for (size_t i = 0; i < json_object_array_length(a); i++) {
		const char *p = json_object_get_string(json_object_array_get_idx(a, i));

		if (!p)
			continue;
		if (strcmp(p, "status") == 0 || strcmp(p, "active") == 0)
			*ret_status = true;
		else if (strcmp(p, "lastReportedAt") != 0 && strcmp(p, "lastSeenOn") != 0)
			*ret_other = true;
		if (strcmp(p, "dismissed") == 0)
			*ret_dismissed = true;
	}
out:
	json_object_put(a);
	return r;
}

static bool op_is(const struct outbox_row *r, const char *op)
{
	return strcmp(r->op, op) == 0;
}

int sink_webhook_classify(const struct outbox_row *r, struct sink_webhook_event *ret)
{
	bool status = false, other = false, dismissed = false;
	json_object *o = NULL, *v;
	int rc = 0;

	*ret = (struct sink_webhook_event){ 0, SEVERITY_LOW };
	if (strcmp(r->type, "threatstack_agent") == 0) {
		if (op_is(r, "create"))
			ret->event = WEBHOOK_AGENT_CREATED;
		else if (op_is(r, "delete"))
			ret->event = WEBHOOK_AGENT_DELETED;
		else if ((rc = read_changed(r->changed, &status, &other, &dismissed)) == 0)
			ret->event = status  ? WEBHOOK_AGENT_STATUS
				     : other ? WEBHOOK_AGENT_UPDATED
					     : 0;
	} else if (strcmp(r->type, "threatstack_agent_identified_vulnerability") == 0) {
		ret->event = op_is(r, "create")	  ? WEBHOOK_CVE_IDENTIFIED
			     : op_is(r, "delete") ? WEBHOOK_CVE_RESOLVED
						  : 0;
	} else if (strcmp(r->type, "threatstack_alert") == 0 && !op_is(r, "delete")) {
		if (!r->json || !(o = json_tokener_parse(r->json)))
			return -EBADMSG;
		if (op_is(r, "create"))
			ret->event = WEBHOOK_ALERT_CREATED;
		else if ((rc = read_changed(r->changed, &status, &other, &dismissed)) == 0 &&
			 dismissed && json_object_object_get_ex(o, "dismissed", &v) &&
			 json_object_get_boolean(v))
			ret->event = WEBHOOK_ALERT_DISMISSED;
		if (json_object_object_get_ex(o, "numericSeverity", &v) &&
		    json_object_is_type(v, json_type_int) &&
		    json_object_get_int(v) >= SEVERITY_HIGH &&
		    json_object_get_int(v) <= SEVERITY_LOW)
			ret->severity = (enum config_severity)json_object_get_int(v);
		json_object_put(o);
	}
	if (rc < 0)
		ret->event = 0;
	return rc;
}

bool sink_webhook_selected(const struct config_sink *cfg, const struct sink_webhook_event *e)
{
	bool alert = e->event & (WEBHOOK_ALERT_CREATED | WEBHOOK_ALERT_DISMISSED);

	return (cfg->webhook.events & e->event) &&
	       (!alert || e->severity <= cfg->webhook.min_severity);
}

/* --- the sentence -------------------------------------------------------------------------- */

/* s, cut to NAME_SHOWN_MAX bytes at a character boundary with "…" after it. */
static int put_name(struct buf *out, const char *s)
{
	size_t n = strlen(s);

	if (n <= NAME_SHOWN_MAX)
		return buf_append(out, s, n);
	n = NAME_SHOWN_MAX;
	while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) /* not inside a UTF-8 sequence */
		n--;
	return buf_append(out, s, n) < 0 ? -E2BIG : buf_puts(out, "\xe2\x80\xa6"); /* … */
}

/* An agent's name from the graph, when name can tell (*ret_gone false); else its id, the
 * key's tail (*ret_gone true: the agent is not in the graph). */
static int agent_label(const char *agent_key, sink_webhook_name_fn name, void *ud, char **ret,
		       bool *ret_gone)
{
	size_t plen = strlen(GRAPH_AGENT_KEY_PREFIX);
	int r = name ? name(agent_key, ret, ud) : -ENOENT;

	*ret_gone = r == -ENOENT;
	if (r != -ENOENT)
		return r;
	*ret = strdup(strncmp(agent_key, GRAPH_AGENT_KEY_PREFIX, plen) == 0 ? agent_key + plen
									    : agent_key);
	return *ret ? 0 : -ENOMEM;
}

static int put_agent(struct buf *out, const char *agent_key, sink_webhook_name_fn name, void *ud)
{
	_cleanup_free_ char *label = NULL;
	bool gone;
	int r = agent_label(agent_key, name, ud, &label, &gone);

	return r < 0 ? r : put_name(out, label);
}

/* The agent key and the upper-case CVE id of a vulnerability relationship's key,
 * "threatstack:agent:<id>|identified|<cve>". */
static int split_vuln_key(const char *key, char **ret_agent, char **ret_cve)
{
	const char *mid = strstr(key, IDENTIFIED_INFIX);

	if (!mid)
		return -EBADMSG;
	*ret_agent = strndup(key, (size_t)(mid - key));
	*ret_cve = strdup(mid + strlen(IDENTIFIED_INFIX));
	if (!*ret_agent || !*ret_cve) {
		free(*ret_agent);
		free(*ret_cve);
		return -ENOMEM;
	}
	for (char *p = *ret_cve; *p; p++) /* ASCII only, whatever the locale */
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	return 0;
}

static int text_agent(const struct outbox_row *r, unsigned event, json_object *o,
		      sink_webhook_name_fn name, void *ud, struct buf *out)
{
	const char *shown = o ? json_string_of(o, "name") : NULL, *status;
	json_object *v;
	int rc;

	rc = buf_puts(out, event == WEBHOOK_AGENT_CREATED ? "new agent " : "agent ");
	if (rc == 0)
		rc = shown ? put_name(out, shown) : put_agent(out, r->key, name, ud);
	if (rc < 0)
		return rc;
	switch (event) {
	case WEBHOOK_AGENT_DELETED:
		return buf_puts(out, " removed");
	case WEBHOOK_AGENT_STATUS:
		status = o ? json_string_of(o, "status") : NULL;
		if (status && strcasecmp(status, "offline") == 0)
			return buf_puts(out, " went offline");
		if (status && strcasecmp(status, "online") == 0)
			return buf_puts(out, " is back online");
		if (status)
			return (rc = buf_puts(out, " is now ")) < 0 ? rc : put_name(out, status);
		if (o && json_object_object_get_ex(o, "active", &v))
			return buf_puts(out, json_object_get_boolean(v) ? " is back online"
									: " went offline");
		return buf_puts(out, " changed status");
	case WEBHOOK_AGENT_UPDATED: {
		/* An update may change any number of tags: the names shown stop at
		 * LIST_SHOWN_MAX bytes and the rest are counted, so the sentence stays within
		 * TEXT_MAX (past it the render failed, and the drain with it, at every try). */
		json_object *a = json_tokener_parse(r->changed ? r->changed : "");
		const char *sep = " changed: ";
		size_t start = out->len, more = 0;

		for (size_t i = 0; rc == 0 && a && i < json_object_array_length(a); i++) {
			const char *p = json_object_get_string(json_object_array_get_idx(a, i));

			if (!p || strcmp(p, "lastReportedAt") == 0 || strcmp(p, "lastSeenOn") == 0)
				continue;
			if (out->len - start >= LIST_SHOWN_MAX) {
				more++;
				continue;
			}
			rc = buf_puts(out, sep);
			if (rc == 0)
				rc = put_name(out, p);
			sep = ", ";
		}
		json_object_put(a);
		if (rc == 0 && more > 0)
			rc = buf_printf(out, " and %zu more", more);
		return rc;
	}
	default:
		return 0;
	}
}

static int text_cve(const struct outbox_row *r, unsigned event, sink_webhook_name_fn name, void *ud,
		    struct buf *out)
{
	_cleanup_free_ char *agent = NULL, *cve = NULL, *label = NULL;
	bool gone = false;
	int rc = split_vuln_key(r->key, &agent, &cve);

	if (rc == 0)
		rc = agent_label(agent, name, ud, &label, &gone);
	if (rc == 0)
		rc = put_name(out, cve);
	if (rc < 0)
		return rc;
	if (event == WEBHOOK_CVE_IDENTIFIED)
		rc = buf_puts(out, " identified on ");
	else if (!gone)
		rc = buf_puts(out, " resolved on ");
	else /* the agent left the graph: its CVEs went with it, nothing was fixed */
		rc = buf_puts(out, " no longer reported on agent ");
	if (rc == 0)
		rc = put_name(out, label);
	if (rc == 0 && event == WEBHOOK_CVE_RESOLVED && gone)
		rc = buf_puts(out, ": the agent was removed");
	return rc;
}

static int text_alert(unsigned event, json_object *o, sink_webhook_name_fn name, void *ud,
		      struct buf *out)
{
	const char *title = json_string_of(o, "name"), *sev = json_string_of(o, "severity");
	const char *agent_id = json_string_of(o, "agentId");
	int rc;

	if (!title)
		title = json_string_of(o, "id") ? json_string_of(o, "id") : "(untitled)";
	if (event == WEBHOOK_ALERT_DISMISSED) {
		rc = buf_puts(out, "alert ");
		if (rc == 0)
			rc = put_name(out, title);
		return rc < 0 ? rc : buf_puts(out, " dismissed");
	}
	rc = buf_puts(out, "new ");
	if (rc == 0 && sev)
		rc = (rc = put_name(out, sev)) < 0 ? rc : buf_puts(out, "-severity ");
	if (rc == 0 && !agent_id && json_string_is(o, "category", "cloudtrail"))
		rc = buf_puts(out, "CloudTrail ");
	if (rc == 0)
		rc = buf_puts(out, "alert");
	if (rc == 0 && agent_id) {
		_cleanup_free_ char *key = NULL;

		if (asprintf(&key, "%s%s", GRAPH_AGENT_KEY_PREFIX, agent_id) < 0)
			return -ENOMEM;
		rc = buf_puts(out, " on ");
		if (rc == 0)
			rc = put_agent(out, key, name, ud);
	}
	if (rc == 0)
		rc = buf_puts(out, ": ");
	return rc < 0 ? rc : put_name(out, title);
}

int sink_webhook_text(const struct outbox_row *r, unsigned event, sink_webhook_name_fn name,
		      void *userdata, struct buf *out)
{
	json_object *o = NULL;
	int rc;

	if (r->json && !(o = json_tokener_parse(r->json)))
		return -EBADMSG;
	switch (event) {
	case WEBHOOK_AGENT_STATUS:
	case WEBHOOK_AGENT_CREATED:
	case WEBHOOK_AGENT_DELETED:
	case WEBHOOK_AGENT_UPDATED:
		rc = text_agent(r, event, o, name, userdata, out);
		break;
	case WEBHOOK_CVE_IDENTIFIED:
	case WEBHOOK_CVE_RESOLVED:
		rc = text_cve(r, event, name, userdata, out);
		break;
	case WEBHOOK_ALERT_CREATED:
	case WEBHOOK_ALERT_DISMISSED:
		rc = o ? text_alert(event, o, name, userdata, out) : -EBADMSG;
		break;
	default:
		rc = -EINVAL;
	}
	json_object_put(o);
	return rc;
}

/* --- the body and its signature ------------------------------------------------------------ */

/* {"text":"..."} with &, < and > escaped as Slack asks: a name or title cannot become a
 * link or an @channel mention. */
static int slack_body(const char *text, struct buf *out)
{
	struct buf esc;
	int rc = 0;

	buf_init(&esc, TEXT_MAX * 5);
	for (const char *p = text; rc == 0 && *p; p++)
		rc = *p == '&'	 ? buf_puts(&esc, "&amp;")
		     : *p == '<' ? buf_puts(&esc, "&lt;")
		     : *p == '>' ? buf_puts(&esc, "&gt;")
				 : buf_append(&esc, p, 1);
	if (rc == 0)
		rc = buf_puts(out, "{\"text\":");
	if (rc == 0)
		rc = canon_write_string(out, esc.data ? esc.data : "", esc.len);
	if (rc == 0)
		rc = buf_puts(out, "}");
	buf_free(&esc);
	return rc;
}

int sink_webhook_body(const struct config_sink *cfg, const struct outbox_row *r, unsigned event,
		      sink_webhook_name_fn name, void *userdata, struct buf *out)
{
	struct buf text;
	int rc;

	if (cfg->webhook.format == WEBHOOK_FORMAT_JSON) {
		rc = sink_file_format(r, out);
		if (rc == 0 && out->len > 0 && out->data[out->len - 1] == '\n')
			out->data[--out->len] = '\0'; /* one JSON object, not an NDJSON line */
		return rc;
	}
	buf_init(&text, TEXT_MAX);
	rc = sink_webhook_text(r, event, name, userdata, &text);
	if (rc == 0)
		rc = slack_body(text.data ? text.data : "", out);
	buf_free(&text);
	return rc;
}

int sink_webhook_signature(const char *secret, int64_t timestamp, const char *body, size_t len,
			   char out[static SINK_WEBHOOK_SIGNATURE_MAX])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct buf signed_text;
	int rc;

	/* The timestamp is signed with the body, so a captured request cannot be replayed
	 * later with a fresh timestamp. */
	buf_init(&signed_text, len + 32);
	rc = buf_printf(&signed_text, "%" PRId64 ".", timestamp);
	if (rc == 0)
		rc = buf_append(&signed_text, body, len);
	if (rc == 0 && !HMAC(EVP_sha256(), secret, (int)strlen(secret),
			     (const unsigned char *)signed_text.data, signed_text.len, md, &mdlen))
		rc = -EIO;
	buf_free(&signed_text);
	if (rc < 0)
		return rc;
	memcpy(out, "sha256=", 7);
	for (unsigned i = 0; i < mdlen && i < 32; i++) {
		out[7 + 2 * i] = hex[md[i] >> 4];
		out[7 + 2 * i + 1] = hex[md[i] & 15];
	}
	out[7 + 2 * mdlen] = '\0';
	explicit_bzero(md, sizeof(md));
	return 0;
}

/* --- delivery ------------------------------------------------------------------------------ */

struct message {
	int64_t seq;
	unsigned event;
	char *body;
	size_t len;
};

struct scan {
	const struct config_sink *cfg;
	struct store *s;
	struct message msg[BATCH_MESSAGES];
	size_t n, bytes;
	int64_t last_seq; /* the last row the scan took, sent or passed over */
	int error;
};

static int name_from_store(const char *key, char **ret, void *ud)
{
	return store_object_name(ud, key, ret);
}

static void scan_reset(struct scan *sc)
{
	for (size_t i = 0; i < sc->n; i++)
		free(sc->msg[i].body);
	sc->n = sc->bytes = 0;
}

static int scan_row(const struct outbox_row *r, void *ud)
{
	struct scan *sc = ud;
	struct sink_webhook_event e;
	struct buf body;
	char *text;
	size_t len;
	int rc;

	if (sc->n == BATCH_MESSAGES || sc->bytes >= BATCH_BYTES)
		return 1; /* stop here: this row is the next scan's first */
	rc = sink_webhook_classify(r, &e);
	if (rc == 0 && !sink_webhook_selected(sc->cfg, &e)) {
		sc->last_seq = r->seq;
		return 0;
	}
	buf_init(&body, BODY_MAX);
	if (rc == 0)
		rc = sink_webhook_body(sc->cfg, r, e.event, name_from_store, sc->s, &body);
	if (rc < 0) {
		/* A row the store wrote itself that does not read back: stop before it. */
		buf_free(&body);
		sc->error = rc;
		return rc;
	}
	len = body.len;
	text = buf_steal(&body);
	if (!text) {
		sc->error = -ENOMEM;
		return -ENOMEM;
	}
	sc->msg[sc->n++] = (struct message){ r->seq, e.event, text, len };
	sc->bytes += len;
	sc->last_seq = r->seq;
	return 0;
}

/* "HTTP 503: <the answer's start>", or the transport error. */
static void describe(int r, const struct http_response *resp, const char *herr, char *out,
		     size_t size)
{
	char shown[ANSWER_SHOWN_MAX + 8];

	if (r < 0) {
		snprintf(out, size, "%s", herr);
		return;
	}
	str_escape(shown, sizeof(shown), resp->body ? resp->body : "",
		   resp->body_len < ANSWER_SHOWN_MAX ? resp->body_len : ANSWER_SHOWN_MAX);
	snprintf(out, size, "HTTP %ld%s%s", resp->status, shown[0] ? ": " : "", shown);
}

/* POSTs one change until the receiver takes it, or the failure is final for this drain. */
static int post(struct sink_webhook *w, const struct message *m, char err[static SINK_ERR_MAX])
{
	const char *event = config_webhook_event_to_string(m->event);
	char h_event[64], h_seq[48], h_ts[48], h_sig[32 + SINK_WEBHOOK_SIGNATURE_MAX];
	char sig[SINK_WEBHOOK_SIGNATURE_MAX], herr[HTTP_ERR_MAX], what[HTTP_ERR_MAX + 160];
	const char *headers[6];
	struct http_response resp;
	int r;

	snprintf(h_event, sizeof(h_event), "X-Tsgraphd-Event: %s", event ? event : "");
	snprintf(h_seq, sizeof(h_seq), "X-Tsgraphd-Seq: %" PRId64, m->seq);
	for (unsigned attempt = 1;; attempt++) {
		size_t n = 0;
		int64_t wait;

		headers[n++] = "Content-Type: application/json";
		headers[n++] = h_event;
		headers[n++] = h_seq;
		if (w->cfg->webhook.secret) {
			int64_t ts = (int64_t)time(NULL); /* a new one for every try */

			r = sink_webhook_signature(w->cfg->webhook.secret, ts, m->body, m->len,
						   sig);
			if (r < 0) {
				snprintf(err, SINK_ERR_MAX, "cannot sign: %s", strerror(-r));
				return r;
			}
			snprintf(h_ts, sizeof(h_ts), "X-Tsgraphd-Timestamp: %" PRId64, ts);
			snprintf(h_sig, sizeof(h_sig), "X-Tsgraphd-Signature: %s", sig);
			headers[n++] = h_ts;
			headers[n++] = h_sig;
		}
		headers[n] = NULL;
		r = http_request(w->http, "POST", w->cfg->url, headers, m->body, m->len, &resp,
				 herr);
		if (r == -ECANCELED)
			return r;
		if (r == 0 && resp.status >= 200 && resp.status <= 299)
			return 0;
		describe(r, &resp, herr, what, sizeof(what));
		if (r == 0 && !http_retryable(resp.status)) {
			snprintf(err, SINK_ERR_MAX,
				 "the receiver refused the change at seq %" PRId64
				 " (%s) with %s; it and every later change wait until it is "
				 "accepted (check url, secret and the receiver)",
				 m->seq, event, what);
			return -EREMOTEIO;
		}
		if (attempt == SINK_WEBHOOK_ATTEMPTS) {
			snprintf(err, SINK_ERR_MAX,
				 "the change at seq %" PRId64
				 " (%s) failed %u times, the last with "
				 "%s; the next delivery tries again",
				 m->seq, event, attempt, what);
			return r < 0 ? r : -EAGAIN;
		}
		wait = http_backoff_ms(w->http, attempt, r == 0 ? resp.retry_after_ms : -1);
		log_warning("sink %s: seq %" PRId64 " (%s): %s; try %u of %d in %.1f s",
			    w->cfg->name, m->seq, event, what, attempt + 1, SINK_WEBHOOK_ATTEMPTS,
			    (double)wait / 1000.0);
		r = http_wait(w->http, wait);
		if (r < 0)
			return r;
	}
}

/* A sink without a cursor starts after the outbox's last change, unless backfill. */
static int start_position(struct sink_webhook *w, struct store *s, int64_t *cursor)
{
	int64_t last = 0;
	int r;

	if (*cursor > 0 || w->cfg->webhook.backfill)
		return 0;
	r = store_outbox_max_seq(s, &last);
	if (r < 0 || last == 0)
		return r;
	r = store_cursor_set(s, w->cfg->name, last);
	if (r < 0)
		return r;
	log_info("sink %s: new webhook sink: starting after seq %" PRId64
		 "; earlier changes are not sent (backfill = yes would send them)",
		 w->cfg->name, last);
	*cursor = last;
	return 0;
}

static int drain(void *impl, struct store *s, int64_t *ret_delivered, char err[static SINK_ERR_MAX])
{
	struct sink_webhook *w = impl;
	struct scan sc = { .cfg = w->cfg, .s = s };
	int64_t cursor = 0, delivered = 0;
	int r;

	r = store_cursor_get(s, w->cfg->name, &cursor);
	if (r == 0)
		r = start_position(w, s, &cursor);
	if (r < 0)
		goto store_fail;
	for (;;) {
		scan_reset(&sc);
		sc.last_seq = cursor;
		r = store_outbox_each(s, cursor, SCAN_ROWS, scan_row, &sc);
		if (sc.error < 0) {
			r = sc.error;
			snprintf(err, SINK_ERR_MAX,
				 "the change after seq %" PRId64 " cannot be rendered: %s",
				 sc.last_seq, strerror(-r));
			goto out;
		}
		if (r < 0)
			goto store_fail;
		if (sc.last_seq == cursor)
			break;
		for (size_t i = 0; i < sc.n; i++) {
			r = post(w, &sc.msg[i], err);
			if (r == -ECANCELED)
				snprintf(err, SINK_ERR_MAX,
					 "stopped; the change at seq %" PRId64 " is sent next time",
					 sc.msg[i].seq);
			if (r < 0)
				goto out;
			delivered++;
			/* Test builds: kill -9 here, the change accepted and the cursor before it. */
			testhook_crash("post", delivered);
			cursor = sc.msg[i].seq;
			r = store_cursor_set(s, w->cfg->name, cursor);
			if (r < 0)
				goto store_fail;
		}
		if (sc.last_seq > cursor) { /* rows passed over after the last message */
			cursor = sc.last_seq;
			r = store_cursor_set(s, w->cfg->name, cursor);
			if (r < 0)
				goto store_fail;
		}
	}
	*ret_delivered = delivered;
	r = 0;
	goto out;
store_fail:
	snprintf(err, SINK_ERR_MAX, "store: %s", store_errmsg(s));
out:
	scan_reset(&sc);
	return r;
}

static void sink_webhook_free(struct sink_webhook *w)
{
	if (!w)
		return;
	http_free(w->http);
	free(w);
}

static int open_webhook(const struct config *c, const struct config_sink *cfg,
			struct cancel *cancel, void **ret, char err[static SINK_ERR_MAX])
{
	struct http_options o = {
		.ca_file = cfg->ca_file,
		.timeout_s = cfg->timeout ? cfg->timeout : CONFIG_WEBHOOK_TIMEOUT_DEFAULT,
		.max_response = ANSWER_MAX,
		.cancel = cancel,
	};
	struct sink_webhook *w;
	int r;

	(void)c;
	if (!cfg->url) {
		snprintf(err, SINK_ERR_MAX, "no url");
		return -EINVAL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->cfg = cfg;
	r = http_new(&o, &w->http);
	if (r < 0) {
		snprintf(err, SINK_ERR_MAX, "cannot set up the HTTP client: %s", strerror(-r));
		sink_webhook_free(w);
		return r;
	}
	*ret = w;
	return 0;
}

static void close_webhook(void *impl)
{
	sink_webhook_free(impl);
}

const struct sink_ops sink_webhook_ops = {
	.open = open_webhook,
	.drain = drain,
	.inspect = NULL,
	.close = close_webhook,
};
