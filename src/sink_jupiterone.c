/* sink_jupiterone — deliver the outbox to JupiterOne in synchronization jobs.
 *
 * tsgraphd pushes changes, not the graph, so a job runs with syncMode CREATE_OR_UPDATE (the
 * default, DIFF, would delete everything in scope it was not given) and deletes travel
 * explicitly as deleteEntities / deleteRelationships by _key.
 *
 * A drain works in windows: the first job_changes outbox rows after the cursor. The window
 * is coalesced by store_outbox_latest_each() to the last change of each (kind, _key): a
 * create then an update is one upsert of the later object, anything then a delete is a
 * delete, a delete then a create is an upsert. So a job never names a _key twice (JupiterOne
 * fails such a job), and the graph after the job is the store's graph at the window's last
 * seq. A delete is sent even when the window also created the object: after a crash between
 * a finished job and the cursor update, the window is sent again and JupiterOne may hold
 * what the first job created.
 *
 * Order within the job is the outbox's own apply order: entity upserts, relationship
 * upserts, relationship deletes, entity deletes. Entities go first so a relationship's ends
 * exist when it arrives; a relationship is deleted explicitly before its entity, so the
 * delete never names something JupiterOne already removed with the entity (deleting an
 * entity deletes its relationships), and no relationship is left pointing at a deleted
 * entity whatever JupiterOne applies first. When relationship and entity deletes share one
 * /upload body, the relationships are listed first.
 *
 * Every request is retried on transport errors, 408/425/429 and 5xx with http_backoff_ms()
 * (Retry-After honoured), at most CALL_ATTEMPTS tries, each wait woken by the cancel handle.
 * A finalize answered 400 while our job is still AWAITING_UPLOADS means another job of the
 * scope is finalizing (one at a time per scope): wait and finalize again. Then the job is
 * polled until FINISHED; ABORTED or ERROR_* fails it. Only a FINISHED job moves the cursor.
 * A job that fails before it is known to be over is aborted (once, best effort) and the
 * drain fails: the cursor stays, sink_drain() records the error for `status`, and the next
 * drain sends the same window in a new job. Test builds can be killed at each step of a job
 * (testhook.h's jupiterone-* points).
 *
 * The store names the job the sink has open from its creation until the cursor moves past
 * its window (or an abort was tried). A job a stopped or killed process left open is found
 * there by the next drain and aborted if it still awaits uploads (one finalizing finishes on
 * its own; its window is sent again either way), instead of staying open until JupiterOne
 * expires it.
 *
 * Changes after the cursor that are gone from the outbox (pruned while the sink was not in
 * the config that pruned, or before a new sink first ran) fail the drain with -ESTALE: the
 * sink sends only changes, so JupiterOne would miss those objects for good.
 */
#include "tsgraphd/sink_jupiterone.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "tsgraphd/canon.h"
#include "tsgraphd/http.h"
#include "tsgraphd/log.h"
#include "tsgraphd/testhook.h"
#include "tsgraphd/util.h"

#define JOBS_PATH	   "/persister/synchronization/jobs"
#define CALL_ATTEMPTS	   5			/* tries of one request */
#define FINALIZE_ATTEMPTS  30			/* finalize tries while the scope is busy */
#define POLL_FIRST_MS	   200			/* first wait for a finalizing job */
#define POLL_CAP_MS	   5000			/* longest wait between two polls */
#define JOB_WAIT_MAX_MS	   (30 * 60 * 1000)	/* a finalizing job may take this long */
#define ANSWER_MAX	   (1024u * 1024)	/* one JupiterOne answer */
#define ANSWER_DEPTH	   16			/* JSON nesting of an answer */
#define URL_MAX		   1024			/* origin, path and job id */
#define KEY_ITEM_MAX	   (64u * 1024)		/* {"_key":...} of one delete */
#define SNIPPET_MAX	   200			/* bytes of an answer quoted in an error */
#define BATCH_WRAP(member) (strlen(member) + 7) /* {"member":[ ... ]} */

struct sink_jupiterone {
	const struct config_sink *cfg;
	struct http *http;
	char *auth;    /* "Authorization: Bearer <token>", wiped on close */
	char *account; /* "JupiterOne-Account: <account>" */
	const char *headers[5];
	char job[SINK_J1_JOB_ID_MAX + 1];
	int64_t requests, bytes; /* of the current job, for its log line */
	int64_t uploads;	 /* upload requests of the current job */
};

/* --- request bodies ------------------------------------------------------------------- */

/* Whether one item of len bytes fits a body of its own. */
static bool item_fits(const char *member, size_t len, size_t batch_bytes)
{
	return len <= batch_bytes && BATCH_WRAP(member) <= batch_bytes - len;
}

static const char *upload_name(enum sink_j1_upload what)
{
	return what == SINK_J1_ENTITIES	       ? "entities"
	       : what == SINK_J1_RELATIONSHIPS ? "relationships"
					       : "upload";
}

/* An item of member that no body of batch_bytes can hold: -EMSGSIZE, and why in err. */
static int too_large(const char *member, const char *key, size_t len, size_t batch_bytes, char *err)
{
	char k[ESCAPE_LONG];

	str_escape(k, sizeof(k), key, strlen(key));
	snprintf(
		err, SINK_ERR_MAX,
		"%s %s is %zu bytes: over batch_bytes (%zu) with its request's wrapping; it cannot "
		"be sent (raise batch_bytes, at most %u)",
		strcmp(member, "entities") == 0 || strcmp(member, "deleteEntities") == 0
			? "entity"
			: "relationship",
		k, len, batch_bytes, CONFIG_J1_BATCH_BYTES_DEFAULT);
	return -EMSGSIZE;
}

/* Fills request bodies item by item and hands each full one to fn. */
struct batcher {
	struct buf *body;
	size_t limit;
	enum sink_j1_upload what;
	const char *member; /* the array open in body; NULL while body is empty */
	sink_j1_body_fn fn;
	void *ud;
	char *err;
};

static int batch_flush(struct batcher *b)
{
	int r;

	if (!b->member)
		return 0;
	r = buf_puts(b->body, "]}");
	if (r == 0)
		r = b->fn(b->what, b->body->data, b->body->len, b->ud);
	buf_reset(b->body);
	b->member = NULL;
	return r;
}

static int batch_add(struct batcher *b, const char *member, const char *item, size_t len,
		     const char *key)
{
	size_t need;
	int r;

	if (!item_fits(member, len, b->limit))
		return too_large(member, key, len, b->limit, b->err);
	/* What goes before the item: "," in the same array, "],"member":[" after another
	 * array, "{"member":[" in an empty body; and "]}" must still fit after it. */
	need = !b->member			? strlen(member) + 5
	       : strcmp(b->member, member) != 0 ? strlen(member) + 6
						: 1;
	if (b->body->len + need + len + 2 > b->limit) {
		r = batch_flush(b);
		if (r != 0)
			return r;
	}
	if (!b->member)
		r = buf_printf(b->body, "{\"%s\":[", member);
	else if (strcmp(b->member, member) != 0)
		r = buf_printf(b->body, "],\"%s\":[", member);
	else
		r = buf_puts(b->body, ",");
	if (r == 0)
		r = buf_append(b->body, item, len);
	if (r < 0)
		return r;
	b->member = member;
	return 0;
}

int sink_jupiterone_job_body(const char *scope, struct buf *out)
{
	int r = buf_puts(out, "{\"scope\":");

	if (r == 0)
		r = canon_write_string(out, scope, strlen(scope));
	if (r == 0)
		r = buf_puts(out, ",\"source\":\"api\",\"syncMode\":\"CREATE_OR_UPDATE\"}");
	return r;
}

static bool is_entity(const struct outbox_row *r)
{
	return strcmp(r->kind, "entity") == 0;
}

static bool is_delete(const struct outbox_row *r)
{
	return strcmp(r->op, "delete") == 0;
}

static int no_object(const struct outbox_row *r, char *err)
{
	char k[ESCAPE_LONG];

	str_escape(k, sizeof(k), r->key, strlen(r->key));
	snprintf(err, SINK_ERR_MAX, "outbox seq %" PRId64 " (%s %s) holds no object", r->seq, r->op,
		 k);
	return -EBADMSG;
}

struct window_scan {
	struct sink_j1_window *w;
	size_t batch_bytes;
	char *err;
};

static int window_row(const struct outbox_row *r, void *ud)
{
	struct window_scan *ws = ud;
	struct sink_j1_window *w = ws->w;
	bool entity = is_entity(r);

	w->upto_seq = r->seq > w->upto_seq ? r->seq : w->upto_seq;
	if (is_delete(r)) {
		if (entity)
			w->delete_entities++;
		else
			w->delete_relationships++;
		return 0;
	}
	if (!r->json)
		return no_object(r, ws->err);
	if (!item_fits(entity ? "entities" : "relationships", strlen(r->json), ws->batch_bytes))
		return too_large(entity ? "entities" : "relationships", r->key, strlen(r->json),
				 ws->batch_bytes, ws->err);
	if (entity)
		w->entities++;
	else
		w->relationships++;
	return 0;
}

int sink_jupiterone_window(struct store *s, int64_t after_seq, int64_t limit, size_t batch_bytes,
			   struct sink_j1_window *ret, char err[static SINK_ERR_MAX])
{
	struct sink_j1_window w = { .after_seq = after_seq, .upto_seq = after_seq };
	struct window_scan ws = { .w = &w, .batch_bytes = batch_bytes, .err = err };
	int r;

	err[0] = '\0';
	r = store_outbox_latest_each(s, after_seq, INT64_MAX, limit, window_row, &ws);
	if (r == 0 && w.upto_seq > after_seq)
		r = store_outbox_count(s, after_seq, w.upto_seq, &w.rows);
	if (r < 0)
		return r;
	*ret = w;
	return 0;
}

/* One pass over the window for one part of the job. */
struct body_pass {
	struct batcher *b;
	bool entity, deletes;
	struct buf item;
};

static int body_row(const struct outbox_row *r, void *ud)
{
	struct body_pass *p = ud;
	int rc;

	if (is_entity(r) != p->entity || is_delete(r) != p->deletes)
		return 0;
	if (!p->deletes) {
		if (!r->json)
			return no_object(r, p->b->err);
		return batch_add(p->b, p->entity ? "entities" : "relationships", r->json,
				 strlen(r->json), r->key);
	}
	buf_reset(&p->item);
	rc = buf_puts(&p->item, "{\"_key\":");
	if (rc == 0)
		rc = canon_write_string(&p->item, r->key, strlen(r->key));
	if (rc == 0)
		rc = buf_puts(&p->item, "}");
	if (rc < 0)
		return rc;
	return batch_add(p->b, p->entity ? "deleteEntities" : "deleteRelationships", p->item.data,
			 p->item.len, r->key);
}

int sink_jupiterone_bodies(struct store *s, const struct sink_j1_window *w, size_t batch_bytes,
			   sink_j1_body_fn fn, void *userdata, char err[static SINK_ERR_MAX])
{
	/* entity upserts, relationship upserts, relationship deletes, entity deletes */
	static const struct {
		enum sink_j1_upload what;
		bool entity, deletes;
	} passes[] = {
		{ SINK_J1_ENTITIES, true, false },
		{ SINK_J1_RELATIONSHIPS, false, false },
		{ SINK_J1_DELETES, false, true },
		{ SINK_J1_DELETES, true, true },
	};
	struct buf body;
	struct batcher b = {
		.body = &body, .limit = batch_bytes, .fn = fn, .ud = userdata, .err = err
	};
	struct body_pass p = { .b = &b };
	int r = 0;

	err[0] = '\0';
	buf_init(&body, batch_bytes);
	buf_init(&p.item, KEY_ITEM_MAX);
	for (size_t i = 0; r == 0 && i < ARRAY_SIZE(passes); i++) {
		if (passes[i].what != b.what)
			r = batch_flush(&b);
		b.what = passes[i].what;
		p.entity = passes[i].entity;
		p.deletes = passes[i].deletes;
		if (r == 0 && w->rows > 0)
			r = store_outbox_latest_each(s, w->after_seq, w->upto_seq, w->rows,
						     body_row, &p);
	}
	if (r == 0)
		r = batch_flush(&b);
	if (r == -E2BIG && !err[0])
		snprintf(err, SINK_ERR_MAX, "a request body outgrew batch_bytes (%zu)",
			 batch_bytes);
	buf_free(&body);
	buf_free(&p.item);
	return r;
}

/* --- HTTP ------------------------------------------------------------------------------ */

/* Quotes the start of an answer, escaped, for an error message. */
static const char *snippet(const struct http_response *resp, char out[static ESCAPE_LONG])
{
	size_t n = resp->body_len < SNIPPET_MAX ? resp->body_len : SNIPPET_MAX;

	str_escape(out, ESCAPE_LONG, resp->body ? resp->body : "", resp->body ? n : 0);
	return out;
}

/* Transport failures worth another try: a timeout, a refused or reset connection. */
static bool transport_retryable(int r)
{
	return r == -ETIMEDOUT || r == -ECONNREFUSED || r == -EIO;
}

/* One call: POST (body non-NULL) or GET of JOBS_PATH + path, retried as the file comment
 * says. Returns 0 with the answer for any status that is not worth retrying (the caller
 * judges it); a negative errno with err when every try failed or the handle fired. */
static int call(struct sink_jupiterone *j, const char *path, const char *body, size_t len,
		struct http_response *resp, char err[static SINK_ERR_MAX])
{
	const char *method = body ? "POST" : "GET";
	char url[URL_MAX], herr[HTTP_ERR_MAX], snip[ESCAPE_LONG];
	int r = 0;

	if ((size_t)snprintf(url, sizeof(url), "%s" JOBS_PATH "%s", j->cfg->url, path) >=
	    sizeof(url)) {
		snprintf(err, SINK_ERR_MAX, "URL longer than %d bytes", URL_MAX);
		return -ENAMETOOLONG;
	}
	for (unsigned attempt = 1;; attempt++) {
		j->requests++;
		j->bytes += (int64_t)len;
		r = http_request(j->http, method, url, j->headers, body, len, resp, herr);
		if (r == 0 && !http_retryable(resp->status))
			return 0;
		if (r == -ECANCELED || (r < 0 && !transport_retryable(r)) ||
		    attempt == CALL_ATTEMPTS) {
			if (r < 0)
				snprintf(err, SINK_ERR_MAX, "%s %s" JOBS_PATH "%s: %s%s", method,
					 j->cfg->url, path, herr,
					 transport_retryable(r) ? " (the last of its tries)" : "");
			else
				snprintf(err, SINK_ERR_MAX,
					 "%s %s" JOBS_PATH "%s: HTTP %ld after %d tries: %s",
					 method, j->cfg->url, path, resp->status, CALL_ATTEMPTS,
					 snippet(resp, snip));
			return r < 0 ? r : -EAGAIN;
		}
		log_debug("sink %s: %s %s: %s; try %u of %d", j->cfg->name, method, path,
			  r < 0 ? herr : "retryable answer", attempt + 1, CALL_ATTEMPTS);
		r = http_wait(j->http,
			      http_backoff_ms(j->http, attempt, r < 0 ? -1 : resp->retry_after_ms));
		if (r < 0) {
			snprintf(err, SINK_ERR_MAX, "stopped");
			return r;
		}
	}
}

/* An answer that is not a success, as an error. */
static int refused(struct sink_jupiterone *j, const char *what, const struct http_response *resp,
		   char err[static SINK_ERR_MAX])
{
	char snip[ESCAPE_LONG];

	if (resp->status == 401 || resp->status == 403) {
		snprintf(err, SINK_ERR_MAX,
			 "%s: JupiterOne refused the token or the account %s (HTTP %ld): %s", what,
			 j->cfg->j1.account, resp->status, snippet(resp, snip));
		return -EACCES;
	}
	snprintf(err, SINK_ERR_MAX, "%s: HTTP %ld: %s", what, resp->status, snippet(resp, snip));
	return resp->status == 413 ? -EMSGSIZE : -EPROTO;
}

int sink_jupiterone_parse_job(const char *body, size_t len, char *ret_id, char *ret_status,
			      size_t status_size)
{
	static const char id_chars[] =
		"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
	json_tokener *tok = NULL;
	json_object *root = NULL, *job, *v;
	const char *id = NULL, *status = NULL;
	int r = -EBADMSG;

	if (len > INT_MAX)
		return -EBADMSG;
	tok = json_tokener_new_ex(ANSWER_DEPTH);
	if (!tok)
		return -ENOMEM;
	root = json_tokener_parse_ex(tok, body, (int)len);
	if (!root || json_tokener_get_error(tok) != json_tokener_success ||
	    !json_object_object_get_ex(root, "job", &job) ||
	    !json_object_is_type(job, json_type_object))
		goto out;
	if (ret_id) {
		if (!json_object_object_get_ex(job, "id", &v) ||
		    !json_object_is_type(v, json_type_string))
			goto out;
		id = json_object_get_string(v);
		/* the JSON string's own length: "a\u0000b" is not the job "a" */
		if (!*id || (size_t)json_object_get_string_len(v) > SINK_J1_JOB_ID_MAX ||
		    strspn(id, id_chars) != (size_t)json_object_get_string_len(v))
			goto out;
	}
	if (ret_status) {
		if (!json_object_object_get_ex(job, "status", &v) ||
		    !json_object_is_type(v, json_type_string))
			goto out;
		status = json_object_get_string(v);
		if (strlen(status) != (size_t)json_object_get_string_len(v))
			goto out;
	}
	if (id)
		snprintf(ret_id, SINK_J1_JOB_ID_MAX + 1, "%s", id);
	if (status)
		snprintf(ret_status, status_size, "%s", status);
	r = 0;
out:
	json_object_put(root);
	json_tokener_free(tok);
	return r;
}

static int bad_answer(const char *what, const struct http_response *resp,
		      char err[static SINK_ERR_MAX])
{
	char snip[ESCAPE_LONG];

	snprintf(err, SINK_ERR_MAX, "%s: not the job JupiterOne answers: %s", what,
		 snippet(resp, snip));
	return -EBADMSG;
}

static int create_job(struct sink_jupiterone *j, char err[static SINK_ERR_MAX])
{
	struct http_response resp;
	struct buf body;
	int r;

	buf_init(&body, KEY_ITEM_MAX);
	r = sink_jupiterone_job_body(j->cfg->j1.scope, &body);
	if (r == 0)
		r = call(j, "", body.data, body.len, &resp, err);
	buf_free(&body);
	if (r < 0)
		return r;
	if (resp.status / 100 != 2)
		return refused(j, "creating a synchronization job", &resp, err);
	if (sink_jupiterone_parse_job(resp.body, resp.body_len, j->job, NULL, 0) < 0)
		return bad_answer("creating a synchronization job", &resp, err);
	return 0;
}

/* The job's status into status; -EBADMSG when the answer holds none. */
static int job_status(struct sink_jupiterone *j, char *status, size_t size,
		      char err[static SINK_ERR_MAX])
{
	struct http_response resp;
	char path[SINK_J1_JOB_ID_MAX + 2];
	int r;

	snprintf(path, sizeof(path), "/%s", j->job);
	r = call(j, path, NULL, 0, &resp, err);
	if (r < 0)
		return r;
	if (resp.status / 100 != 2)
		return refused(j, "reading the job", &resp, err);
	if (sink_jupiterone_parse_job(resp.body, resp.body_len, NULL, status, size) < 0)
		return bad_answer("reading the job", &resp, err);
	return 0;
}

static bool status_failed(const char *status)
{
	return strcmp(status, "ABORTED") == 0 || strncmp(status, "ERROR", 5) == 0;
}

/* POST .../{job}/<what>; the answer must be a success. */
static int post_job(struct sink_jupiterone *j, const char *what, const char *body, size_t len,
		    struct http_response *resp, char err[static SINK_ERR_MAX])
{
	char path[SINK_J1_JOB_ID_MAX + 32];

	snprintf(path, sizeof(path), "/%s/%s", j->job, what);
	return call(j, path, body, len, resp, err);
}

struct upload_ctx {
	struct sink_jupiterone *j;
	char *err;
};

static int upload(enum sink_j1_upload what, const char *body, size_t len, void *ud)
{
	struct sink_jupiterone *j = ((struct upload_ctx *)ud)->j;
	char *err = ((struct upload_ctx *)ud)->err;
	struct http_response resp;
	char where[64];
	int r;

	r = post_job(j, upload_name(what), body, len, &resp, err);
	if (r < 0)
		return r;
	if (resp.status / 100 != 2) {
		snprintf(where, sizeof(where), "uploading %s", upload_name(what));
		return refused(j, where, &resp, err);
	}
	j->uploads++;
	/* Test builds: kill -9 here, after the job's Nth upload. */
	testhook_crash("jupiterone-upload", j->uploads);
	return 0;
}

/* Finalizes the job, waiting while another job of the scope finalizes. */
static int finalize(struct sink_jupiterone *j, char err[static SINK_ERR_MAX])
{
	struct http_response resp;
	char status[64];
	int r;

	for (unsigned attempt = 1;; attempt++) {
		r = post_job(j, "finalize", "{}", 2, &resp, err);
		if (r < 0)
			return r;
		if (resp.status / 100 == 2)
			return 0;
		if (resp.status != 400 || attempt == FINALIZE_ATTEMPTS)
			return refused(j, "finalizing the job", &resp, err);
		/* A 400: is our job still waiting (the scope is busy), or over already (an
		 * earlier finalize got through and its answer was lost)? */
		r = job_status(j, status, sizeof(status), err);
		if (r < 0)
			return r;
		if (strcmp(status, "AWAITING_UPLOADS") != 0)
			return status_failed(status) ? refused(j, "finalizing the job", &resp, err)
						     : 0;
		log_info("sink %s: job %s: another job of scope %s is finalizing; waiting",
			 j->cfg->name, j->job, j->cfg->j1.scope);
		r = http_wait(j->http, http_backoff_ms(j->http, attempt, -1));
		if (r < 0) {
			snprintf(err, SINK_ERR_MAX, "stopped");
			return r;
		}
	}
}

/* Follows the finalized job to FINISHED. *ret_over is true once it reached a final status,
 * FINISHED or not. */
static int await_job(struct sink_jupiterone *j, bool *ret_over, char err[static SINK_ERR_MAX])
{
	int64_t wait = POLL_FIRST_MS, deadline = monotonic_ms() + JOB_WAIT_MAX_MS;
	char status[64];
	int r;

	for (;;) {
		r = job_status(j, status, sizeof(status), err);
		if (r < 0)
			return r;
		if (strcmp(status, "FINISHED") == 0) {
			*ret_over = true;
			return 0;
		}
		if (status_failed(status)) {
			char e[ESCAPE_SHORT];

			*ret_over = true;
			snprintf(err, SINK_ERR_MAX, "job %s ended %s", j->job,
				 (str_escape(e, sizeof(e), status, strlen(status)), e));
			return -EPROTO;
		}
		if (monotonic_ms() > deadline) {
			snprintf(err, SINK_ERR_MAX, "job %s still %s after %d s", j->job, status,
				 JOB_WAIT_MAX_MS / 1000);
			return -ETIMEDOUT;
		}
		r = http_wait(j->http, wait);
		if (r < 0) {
			snprintf(err, SINK_ERR_MAX, "stopped");
			return r;
		}
		wait = wait * 2 < POLL_CAP_MS ? wait * 2 : POLL_CAP_MS;
	}
}

/* Best effort: the job will not be finalized; JupiterOne drops what it holds. */
static void abort_job(struct sink_jupiterone *j, const char *why)
{
	struct http_response resp;
	char err[SINK_ERR_MAX], path[SINK_J1_JOB_ID_MAX + 16], herr[HTTP_ERR_MAX], url[URL_MAX];
	struct buf body;
	int r;

	buf_init(&body, SINK_ERR_MAX * 2);
	r = buf_puts(&body, "{\"reason\":");
	if (r == 0)
		r = canon_write_string(&body, why, strlen(why));
	if (r == 0)
		r = buf_puts(&body, "}");
	snprintf(path, sizeof(path), "/%s/abort", j->job);
	snprintf(url, sizeof(url), "%s" JOBS_PATH "%s", j->cfg->url, path);
	/* One try: the job is failing already, and it expires on its own. */
	if (r == 0)
		r = http_request(j->http, "POST", url, j->headers, body.data, body.len, &resp,
				 herr);
	if (r == 0 && resp.status / 100 == 2)
		log_info("sink %s: job %s aborted", j->cfg->name, j->job);
	else
		log_warning("sink %s: job %s: could not abort it (%s); JupiterOne expires it",
			    j->cfg->name, j->job,
			    r < 0 ? (r == -ENOMEM ? "out of memory" : herr)
				  : (snprintf(err, sizeof(err), "HTTP %ld", resp.status), err));
	buf_free(&body);
}

static int store_failed(struct sink_jupiterone *j, struct store *s, int r,
			char err[static SINK_ERR_MAX])
{
	snprintf(err, SINK_ERR_MAX, "sink %s: store: %s", j->cfg->name, store_errmsg(s));
	return r;
}

/* A job id as JupiterOne gives them (sink_jupiterone_parse_job()), fit for a URL path. */
static bool job_id_valid(const char *id)
{
	size_t n = strspn(id, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-");

	return n > 0 && n <= SINK_J1_JOB_ID_MAX && id[n] == '\0';
}

/* The job a stopped or killed process left open (the store names it): aborted while it
 * still awaits uploads, then forgotten. When JupiterOne cannot be asked (unreachable,
 * failing, or the drain stopped) it stays named and the drain fails: the next asks again. */
static int abandoned_job(struct sink_jupiterone *j, struct store *s, char err[static SINK_ERR_MAX])
{
	struct http_response resp;
	char path[SINK_J1_JOB_ID_MAX + 2], status[32] = "";
	int r = store_sink_job_get(s, j->cfg->name, j->job, sizeof(j->job));

	if (r < 0 && r != -ENAMETOOLONG)
		return store_failed(j, s, r, err);
	if (r == 0 && !j->job[0])
		return 0;
	if (r == 0 && job_id_valid(j->job)) {
		snprintf(path, sizeof(path), "/%s", j->job);
		r = call(j, path, NULL, 0, &resp, err);
		if (r < 0)
			return r;
		if (resp.status / 100 == 2 &&
		    sink_jupiterone_parse_job(resp.body, resp.body_len, NULL, status,
					      sizeof(status)) == 0 &&
		    strcmp(status, "AWAITING_UPLOADS") == 0) {
			log_info("sink %s: job %s was left open by a run that stopped before it "
				 "ended",
				 j->cfg->name, j->job);
			abort_job(j, "left open by a tsgraphd run that stopped before it ended");
		} else if (resp.status / 100 != 2) {
			log_warning("sink %s: job %s, left open by a run that stopped: JupiterOne "
				    "answers HTTP %ld when asked; forgotten",
				    j->cfg->name, j->job, resp.status);
		}
	} else {
		log_warning("sink %s: the store names an open job that is no JupiterOne job id; "
			    "forgotten",
			    j->cfg->name);
	}
	r = store_sink_job_set(s, j->cfg->name, NULL);
	return r < 0 ? store_failed(j, s, r, err) : 0;
}

/* One window as one job, to FINISHED. */
static int run_job(struct sink_jupiterone *j, struct store *s, const struct sink_j1_window *w,
		   char err[static SINK_ERR_MAX])
{
	struct upload_ctx ud = { j, err };
	bool over = false;
	int r;

	j->requests = j->bytes = j->uploads = 0;
	r = create_job(j, err);
	if (r < 0)
		return r;
	r = store_sink_job_set(s, j->cfg->name, j->job);
	if (r < 0) {
		store_failed(j, s, r, err);
		abort_job(j, err);
		return r;
	}
	log_debug("sink %s: job %s created for outbox seq %" PRId64 "..%" PRId64, j->cfg->name,
		  j->job, w->after_seq + 1, w->upto_seq);
	testhook_crash("jupiterone-created", TESTHOOK_UNCOUNTED);
	r = sink_jupiterone_bodies(s, w, j->cfg->j1.batch_bytes, upload, &ud, err);
	if (r == 0) {
		testhook_crash("jupiterone-finalize", TESTHOOK_UNCOUNTED);
		r = finalize(j, err);
	}
	if (r == 0) {
		testhook_crash("jupiterone-finalized", TESTHOOK_UNCOUNTED);
		r = await_job(j, &over, err);
	}
	if (r < 0) {
		/* Stopped: the job stays open and named, for the next drain to abort. */
		if (r == -ECANCELED)
			return r;
		if (!over)
			abort_job(j, err);
		(void)store_sink_job_set(s, j->cfg->name, NULL); /* tried: JupiterOne expires it */
		return r;
	}
	testhook_crash("jupiterone-finished", TESTHOOK_UNCOUNTED);
	log_info("sink %s: job %s finished: %" PRId64 " entities and %" PRId64
		 " relationships upserted, %" PRId64 " relationships and %" PRId64
		 " entities deleted (outbox seq %" PRId64 "..%" PRId64 ", %" PRId64
		 " changes); %" PRId64 " requests, %" PRId64 " bytes sent",
		 j->cfg->name, j->job, w->entities, w->relationships, w->delete_relationships,
		 w->delete_entities, w->after_seq + 1, w->upto_seq, w->rows, j->requests, j->bytes);
	return 0;
}

int sink_jupiterone_drain(struct sink_jupiterone *j, struct store *s, int64_t *ret_delivered,
			  char err[static SINK_ERR_MAX])
{
	int64_t cursor = 0, delivered = 0;
	int r;

	err[0] = '\0';
	r = store_cursor_get(s, j->cfg->name, &cursor);
	if (r < 0)
		goto store_fail;
	r = abandoned_job(j, s, err);
	if (r < 0)
		return r;
	for (;;) {
		struct sink_j1_window w;

		/* Changes after the cursor pruned (the sink left out of a config that pruned,
		 * renamed, or added to a store whose outbox no longer starts at seq 1): JupiterOne
		 * would miss them for good, silently. Even at cursor 0: the store's graph is
		 * only ever sent as its changes. */
		r = sink_check_gap(s, cursor,
				   "JupiterOne misses them; a full upload from a new store is "
				   "needed (docs/jupiterone.md, \"Lost changes\")",
				   err);
		if (r == -ESTALE)
			return r;
		if (r < 0)
			goto store_fail;
		r = sink_jupiterone_window(s, cursor, j->cfg->j1.job_changes,
					   j->cfg->j1.batch_bytes, &w, err);
		if (r < 0 && err[0])
			return r;
		if (r < 0)
			goto store_fail;
		if (w.rows == 0)
			break;
		r = run_job(j, s, &w, err);
		if (r < 0)
			return r;
		r = store_cursor_set(s, j->cfg->name, w.upto_seq);
		if (r < 0)
			goto store_fail;
		cursor = w.upto_seq;
		delivered += w.rows;
	}
	*ret_delivered = delivered;
	return 0;
store_fail:
	return store_failed(j, s, r, err);
}

int sink_jupiterone_open(const struct config_sink *cfg, struct cancel *cancel,
			 struct sink_jupiterone **ret, char err[static SINK_ERR_MAX])
{
	struct http_options o = {
		.ca_file = cfg->ca_file,
		.timeout_s = cfg->timeout,
		.max_response = ANSWER_MAX,
		.cancel = cancel,
	};
	struct sink_jupiterone *j;
	char *auth = NULL, *account = NULL;
	int r;

	err[0] = '\0';
	if (!cfg->j1.token || !cfg->j1.account || !cfg->j1.scope || !cfg->url) {
		snprintf(err, SINK_ERR_MAX, "no token, account, scope or url");
		return -EINVAL;
	}
	j = calloc(1, sizeof(*j));
	if (!j) {
		snprintf(err, SINK_ERR_MAX, "out of memory");
		return -ENOMEM;
	}
	j->cfg = cfg;
	/* asprintf leaves its pointer undefined on failure: temporaries, and the one holding
	 * the token wiped if the other fails. */
	if (asprintf(&auth, "Authorization: Bearer %s", cfg->j1.token) < 0)
		auth = NULL;
	if (asprintf(&account, "JupiterOne-Account: %s", cfg->j1.account) < 0)
		account = NULL;
	if (!auth || !account) {
		wipe_free(auth);
		free(account);
		snprintf(err, SINK_ERR_MAX, "out of memory");
		r = -ENOMEM;
		goto fail;
	}
	j->auth = auth;
	j->account = account;
	j->headers[0] = j->auth;
	j->headers[1] = j->account;
	j->headers[2] = "Content-Type: application/json";
	j->headers[3] = "Accept: application/json";
	r = http_new(&o, &j->http);
	if (r < 0) {
		snprintf(err, SINK_ERR_MAX, "cannot set up HTTP: %s", strerror(-r));
		goto fail;
	}
	*ret = j;
	return 0;
fail:
	sink_jupiterone_close(j);
	return r;
}

void sink_jupiterone_close(struct sink_jupiterone *j)
{
	if (!j)
		return;
	http_free(j->http);
	wipe_free(j->auth);
	free(j->account);
	free(j);
}

static int ops_open(const struct config *c, const struct config_sink *cfg, struct cancel *cancel,
		    void **ret, char err[static SINK_ERR_MAX])
{
	(void)c;
	return sink_jupiterone_open(cfg, cancel, (struct sink_jupiterone **)ret, err);
}

static int ops_drain(void *impl, struct store *s, int64_t *ret_delivered,
		     char err[static SINK_ERR_MAX])
{
	return sink_jupiterone_drain(impl, s, ret_delivered, err);
}

static void ops_close(void *impl)
{
	sink_jupiterone_close(impl);
}

const struct sink_ops sink_jupiterone_ops = {
	.open = ops_open,
	.drain = ops_drain,
	.close = ops_close,
};
