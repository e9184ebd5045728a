/* webhook_catcher — a loopback receiver for the webhook sink's tests: it records every POST
 * and answers 200, or the status a test queued.
 *
 * One process, libmicrohttpd with a thread per connection, one mutex around the record and
 * the fault. A POST to any path outside /_catcher/ is recorded — its path and query as sent, the headers the
 * sink sends (X-Tsgraphd-Timestamp, X-Tsgraphd-Signature, X-Tsgraphd-Event, X-Tsgraphd-Seq,
 * Content-Type) and its body, in arrival order — and answered 200 "ok", unless a fault is
 * queued: then it is answered with the fault's status (and Retry-After, when given) and only
 * counted. Bodies over 1 MiB are 413. Control endpoints (docs/testing.md):
 *
 *   GET  /_catcher/requests  [{"path","timestamp","signature","event","seq","content_type",
 *                              "body"}...]: the accepted POSTs; absent headers are null
 *   GET  /_catcher/stats     {"accepted":N,"refused":N}
 *   POST /_catcher/fault     {"status":503,"count":N,"retry_after":S}: the next N POSTs get
 *                            that status (count defaults to 1), with Retry-After: S when S
 *                            is given (0..3600); {"status":0} clears it
 *   POST /_catcher/answer    {"body_bytes":N,"header_bytes":M}: accepted POSTs are answered
 *                            200 with N bytes of body and M bytes of extra header lines
 *                            (X-Catcher-Pad-I: ...) instead of "ok"; {} goes back to "ok"
 *   POST /_catcher/reset     forgets the requests and zeroes the counts
 *
 * SIGTERM or SIGINT stops it cleanly (exit 0, everything freed).
 */
#include "tsgraphd/util.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>

#include <json-c/json.h>
#include <microhttpd.h>

#include "fakesrv.h"

#define BODY_MAX	  (1024u * 1024)
#define CONTROL_PREFIX	  "/_catcher/"
#define RETRY_AFTER_MAX	  3600
#define RECORDED_MAX	  100000 /* POSTs kept; later ones are counted but not kept */
#define CONTROL_BODY_MAX  4096
#define ANSWER_BODY_MAX	  (64u * 1024 * 1024) /* a big answer's body */
#define ANSWER_HEADER_MAX (1024u * 1024)      /* and its extra header bytes */
#define PAD_LINE_MAX	  (8u * 1024)	      /* bytes of one padding header line */

struct catcher {
	pthread_mutex_t lock;
	json_object *requests; /* array */
	long fault_status;
	uint64_t fault_count, accepted, refused;
	int64_t retry_after;		    /* seconds, -1: no Retry-After */
	size_t answer_body, answer_headers; /* 0, 0: the answer is "ok" */
	bool verbose;
};

struct upload {
	char *uri; /* as received: path and query */
	struct buf body;
	bool started, too_large;
};

static enum MHD_Result answer(struct MHD_Connection *conn, unsigned status, const char *type,
			      const char *body, int64_t retry_after)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result r;
	char ra[24];

	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type", type);
	if (retry_after >= 0) {
		snprintf(ra, sizeof(ra), "%" PRId64, retry_after);
		MHD_add_response_header(resp, "Retry-After", ra);
	}
	r = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static enum MHD_Result answer_json(struct MHD_Connection *conn, unsigned status, const char *body)
{
	return answer(conn, status, "application/json", body, -1);
}

static json_object *header(struct MHD_Connection *conn, const char *name)
{
	const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);

	return v ? json_object_new_string(v) : NULL;
}

/* 200 with body_bytes of body and header_bytes of padding header lines. */
static enum MHD_Result answer_big(struct MHD_Connection *conn, size_t body_bytes,
				  size_t header_bytes)
{
	struct MHD_Response *resp;
	enum MHD_Result r;
	char *body = malloc(body_bytes ? body_bytes : 1), *pad = NULL;
	char name[32];

	if (!body)
		return MHD_NO;
	memset(body, 'x', body_bytes);
	resp = MHD_create_response_from_buffer(body_bytes, body, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "text/plain");
	if (header_bytes > 0 && !(pad = malloc(PAD_LINE_MAX + 1))) {
		MHD_destroy_response(resp);
		return MHD_NO;
	}
	for (unsigned i = 0; header_bytes > 0; i++) {
		/* "Name: value\r\n": at least header_bytes in all */
		size_t line = snprintf(name, sizeof(name), "X-Catcher-Pad-%u", i) + 4u;
		size_t v = header_bytes < PAD_LINE_MAX ? header_bytes : PAD_LINE_MAX;

		memset(pad, 'p', v);
		pad[v] = '\0';
		if (MHD_add_response_header(resp, name, pad) != MHD_YES)
			break;
		header_bytes -= header_bytes < v + line ? header_bytes : v + line;
	}
	free(pad);
	r = MHD_queue_response(conn, MHD_HTTP_OK, resp);
	MHD_destroy_response(resp);
	return r;
}

/* A POST outside /_catcher/: the fault's answer, or recorded and 200. */
static enum MHD_Result catch_post(struct catcher *k, struct MHD_Connection *conn, const char *url,
				  struct upload *up)
{
	size_t body_bytes, header_bytes;
	json_object *o;
	int64_t retry_after;
	long status;

	if (up->too_large) {
		pthread_mutex_lock(&k->lock);
		k->refused++;
		pthread_mutex_unlock(&k->lock);
		return answer_json(conn, MHD_HTTP_CONTENT_TOO_LARGE, "{\"error\":\"too large\"}");
	}
	pthread_mutex_lock(&k->lock);
	if (k->fault_count > 0) {
		k->fault_count--;
		k->refused++;
		status = k->fault_status;
		retry_after = k->retry_after;
		pthread_mutex_unlock(&k->lock);
		if (k->verbose)
			fprintf(stderr, "webhook_catcher: POST %s -> %ld (fault)\n", url, status);
		return answer(conn, (unsigned)status, "application/json",
			      "{\"error\":\"injected fault\"}", retry_after);
	}
	k->accepted++;
	if (json_object_array_length(k->requests) < RECORDED_MAX &&
	    (o = json_object_new_object())) {
		json_object_object_add(o, "path", json_object_new_string(up->uri));
		json_object_object_add(o, "timestamp", header(conn, "X-Tsgraphd-Timestamp"));
		json_object_object_add(o, "signature", header(conn, "X-Tsgraphd-Signature"));
		json_object_object_add(o, "event", header(conn, "X-Tsgraphd-Event"));
		json_object_object_add(o, "seq", header(conn, "X-Tsgraphd-Seq"));
		json_object_object_add(o, "content_type", header(conn, "Content-Type"));
		json_object_object_add(
			o, "body",
			json_object_new_string_len(up->body.data ? up->body.data : "",
						   (int)up->body.len));
		json_object_array_add(k->requests, o);
	}
	body_bytes = k->answer_body;
	header_bytes = k->answer_headers;
	pthread_mutex_unlock(&k->lock);
	if (k->verbose)
		fprintf(stderr, "webhook_catcher: POST %s -> 200\n", url);
	if (body_bytes || header_bytes)
		return answer_big(conn, body_bytes, header_bytes);
	return answer(conn, MHD_HTTP_OK, "text/plain", "ok", -1);
}

/* POST /_catcher/fault {"status":S,"count":N,"retry_after":R}. */
static enum MHD_Result set_fault(struct catcher *k, struct MHD_Connection *conn,
				 const struct upload *up)
{
	json_object *o = up->body.data ? json_tokener_parse(up->body.data) : NULL, *v;
	int64_t status = -1, count = 1, retry_after = -1;

	if (o && json_object_object_get_ex(o, "status", &v) &&
	    json_object_is_type(v, json_type_int))
		status = json_object_get_int64(v);
	if (o && json_object_object_get_ex(o, "count", &v))
		count = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
	if (o && json_object_object_get_ex(o, "retry_after", &v))
		retry_after = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -2;
	json_object_put(o);
	if ((status != 0 && (status < 100 || status > 599)) || count < 0 || retry_after < -1 ||
	    retry_after > RETRY_AFTER_MAX)
		return answer_json(
			conn, MHD_HTTP_BAD_REQUEST,
			"{\"error\":\"want {\\\"status\\\":100..599 or 0,\\\"count\\\":N,"
			"\\\"retry_after\\\":0..3600}\"}");
	pthread_mutex_lock(&k->lock);
	k->fault_status = (long)status;
	k->fault_count = status ? (uint64_t)count : 0;
	k->retry_after = retry_after;
	pthread_mutex_unlock(&k->lock);
	return answer_json(conn, MHD_HTTP_OK, "{\"ok\":true}");
}

/* POST /_catcher/answer {"body_bytes":N,"header_bytes":M}. */
static enum MHD_Result set_answer(struct catcher *k, struct MHD_Connection *conn,
				  const struct upload *up)
{
	json_object *o = up->body.data ? json_tokener_parse(up->body.data) : NULL, *v;
	int64_t body = 0, headers = 0;

	if (o && json_object_object_get_ex(o, "body_bytes", &v))
		body = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
	if (o && json_object_object_get_ex(o, "header_bytes", &v))
		headers = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
	if (!o || body < 0 || body > (int64_t)ANSWER_BODY_MAX || headers < 0 ||
	    headers > (int64_t)ANSWER_HEADER_MAX) {
		json_object_put(o);
		return answer_json(conn, MHD_HTTP_BAD_REQUEST,
				   "{\"error\":\"want {\\\"body_bytes\\\":0..67108864,"
				   "\\\"header_bytes\\\":0..1048576}\"}");
	}
	json_object_put(o);
	pthread_mutex_lock(&k->lock);
	k->answer_body = (size_t)body;
	k->answer_headers = (size_t)headers;
	pthread_mutex_unlock(&k->lock);
	return answer_json(conn, MHD_HTTP_OK, "{\"ok\":true}");
}

static enum MHD_Result control(struct catcher *k, struct MHD_Connection *conn, const char *url,
			       bool post, const struct upload *up)
{
	const char *what = url + strlen(CONTROL_PREFIX);
	enum MHD_Result r;
	char stats[96];

	if (!post && strcmp(what, "requests") == 0) {
		pthread_mutex_lock(&k->lock);
		r = answer_json(conn, MHD_HTTP_OK,
				json_object_to_json_string_ext(
					k->requests,
					JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
		pthread_mutex_unlock(&k->lock);
		return r;
	}
	if (!post && strcmp(what, "stats") == 0) {
		pthread_mutex_lock(&k->lock);
		snprintf(stats, sizeof(stats), "{\"accepted\":%" PRIu64 ",\"refused\":%" PRIu64 "}",
			 k->accepted, k->refused);
		pthread_mutex_unlock(&k->lock);
		return answer_json(conn, MHD_HTTP_OK, stats);
	}
	if (post && strcmp(what, "fault") == 0)
		return up->too_large ? answer_json(conn, MHD_HTTP_CONTENT_TOO_LARGE, "{}")
				     : set_fault(k, conn, up);
	if (post && strcmp(what, "answer") == 0)
		return up->too_large ? answer_json(conn, MHD_HTTP_CONTENT_TOO_LARGE, "{}")
				     : set_answer(k, conn, up);
	if (post && strcmp(what, "reset") == 0) {
		json_object *fresh = json_object_new_array();

		if (!fresh)
			return MHD_NO;
		pthread_mutex_lock(&k->lock);
		json_object_put(k->requests);
		k->requests = fresh;
		k->accepted = k->refused = 0;
		pthread_mutex_unlock(&k->lock);
		return answer_json(conn, MHD_HTTP_OK, "{\"ok\":true}");
	}
	return answer_json(conn, MHD_HTTP_NOT_FOUND, "{\"error\":\"unknown control endpoint\"}");
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *data_size, void **con_cls)
{
	struct catcher *k = cls;
	struct upload *up = *con_cls;
	bool post = strcmp(method, "POST") == 0;
	bool ctl = strncmp(url, CONTROL_PREFIX, strlen(CONTROL_PREFIX)) == 0;

	(void)version;
	if (!up)
		return MHD_NO;
	if (!up->started) { /* the headers: the body, if any, comes in the next calls */
		up->started = true;
		buf_init(&up->body, ctl ? CONTROL_BODY_MAX : BODY_MAX);
		return MHD_YES;
	}
	if (*data_size > 0) {
		if (!up->too_large && buf_append(&up->body, data, *data_size) < 0)
			up->too_large = true;
		*data_size = 0;
		return MHD_YES;
	}
	if (ctl)
		return control(k, conn, url, post, up);
	if (!post)
		return answer_json(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "{\"error\":\"POST only\"}");
	return catch_post(k, conn, url, up);
}

/* Every request starts here, with its URI before any decoding: the recorded path. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
	struct upload *up = calloc(1, sizeof(*up));

	(void)cls, (void)conn;
	if (up && !(up->uri = strdup(uri))) {
		free(up);
		return NULL;
	}
	return up;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct upload *up = *con_cls;

	(void)cls, (void)conn, (void)toe;
	if (up) {
		buf_free(&up->body);
		free(up->uri);
		free(up);
		*con_cls = NULL;
	}
}

static void usage(FILE *out)
{
	fprintf(out, "usage: webhook_catcher [--listen 127.0.0.1:0] [--port-file FILE] "
		     "[--verbose]\n");
}

int main(int argc, char **argv)
{
	enum { O_LISTEN = 256, O_PORTFILE, O_VERBOSE, O_HELP };
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "port-file", required_argument, NULL, O_PORTFILE },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	const char *listen_at = "127.0.0.1:0", *port_file = NULL;
	struct catcher k = { .fault_status = 0 };
	int c, ret;
	/* room for /_catcher/answer's header lines */
	struct MHD_OptionItem extra[] = {
		{ MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, NULL },
		{ MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL },
		{ MHD_OPTION_CONNECTION_MEMORY_LIMIT, (intptr_t)(2 * ANSWER_HEADER_MAX), NULL },
		{ MHD_OPTION_END, 0, NULL },
	};

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN:
			listen_at = optarg;
			break;
		case O_PORTFILE:
			port_file = optarg;
			break;
		case O_VERBOSE:
			k.verbose = true;
			break;
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (pthread_mutex_init(&k.lock, NULL) != 0 || !(k.requests = json_object_new_array()))
		return 1;
	extra[0].ptr_value = &k;
	extra[1].ptr_value = &k;
	ret = fakesrv_serve(&(struct fakesrv_serve){ .name = "webhook_catcher",
						     .listen = listen_at,
						     .port_file = port_file,
						     .verbose = k.verbose,
						     .handler = on_request,
						     .cls = &k,
						     .extra = extra },
			    NULL);
	json_object_put(k.requests);
	pthread_mutex_destroy(&k.lock);
	return ret;
}
