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

#define BODY_MAX	 (1024u * 1024)
#define CONTROL_PREFIX	 "/_catcher/"
#define RETRY_AFTER_MAX	 3600
#define RECORDED_MAX	 100000 /* POSTs kept; later ones are counted but not kept */
#define CONTROL_BODY_MAX 4096

struct catcher {
	pthread_mutex_t lock;
	json_object *requests; /* array */
	long fault_status;
	uint64_t fault_count, accepted, refused;
	int64_t retry_after; /* seconds, -1: no Retry-After */
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

/* A POST outside /_catcher/: the fault's answer, or recorded and 200. */
static enum MHD_Result catch_post(struct catcher *k, struct MHD_Connection *conn, const char *url,
				  struct upload *up)
{
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
	pthread_mutex_unlock(&k->lock);
	if (k->verbose)
		fprintf(stderr, "webhook_catcher: POST %s -> 200\n", url);
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
	const union MHD_DaemonInfo *info;
	struct MHD_Daemon *d = NULL;
	struct sockaddr_storage ss;
	char shown[64];
	bool v6 = false;
	int c, sig, r, ret = 1;
	unsigned port;
	sigset_t set;

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
	if (fakesrv_parse_listen(listen_at, &ss, &v6) < 0) {
		fprintf(stderr, "webhook_catcher: --listen must be a loopback HOST:PORT\n");
		return 2;
	}
	if (pthread_mutex_init(&k.lock, NULL) != 0 || !(k.requests = json_object_new_array()))
		return 1;

	fakesrv_block_stop_signals(&set);

	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
				     (v6 ? MHD_USE_IPv6 : 0) | (k.verbose ? MHD_USE_ERROR_LOG : 0),
			     0, NULL, NULL, on_request, &k, MHD_OPTION_SOCK_ADDR, &ss,
			     MHD_OPTION_URI_LOG_CALLBACK, on_uri, &k, MHD_OPTION_NOTIFY_COMPLETED,
			     on_completed, &k, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "webhook_catcher: cannot listen on %s\n", listen_at);
		goto out;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	port = info ? info->port : 0;
	if (port_file && (r = fakesrv_write_port_file(port_file, port)) < 0) {
		fprintf(stderr, "webhook_catcher: cannot write %s: %s\n", port_file, strerror(-r));
		goto out;
	}
	printf("listening on %s%s%s:%u\n", v6 ? "[" : "",
	       fakesrv_addr_text(&ss, shown, sizeof(shown)), v6 ? "]" : "", port);
	fflush(stdout);
	while (sigwait(&set, &sig) != 0)
		;
	ret = 0;
out:
	if (d)
		MHD_stop_daemon(d);
	json_object_put(k.requests);
	pthread_mutex_destroy(&k.lock);
	return ret;
}
