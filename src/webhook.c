/* webhook — the receiver: routes, authentication, limits, and the inbox before the answer.
 *
 * libmicrohttpd runs a small pool of event-loop threads (epoll), each serving many
 * connections. A request whose alerts are submitted to the inbox is suspended: the inbox
 * writer commits whatever every request submitted meanwhile in one transaction (inbox.h)
 * and, once that commit is done, resumes the request (inbox_ticket_notify), which is then
 * answered 200. No thread waits for a commit, and a slow client holds no thread.
 * Everything that can be refused is refused as early as it can be: the route, the method and
 * the secret when the headers are in (nothing of the body is read), a Content-Length over
 * max_body then too, a body that grows past max_body as soon as it does.
 *
 * The secret. A request carries it in the path or as a bearer token; both the configured
 * secret and what came are hashed with SHA-256 and the digests compared with CRYPTO_memcmp,
 * so the time taken says nothing about the secret, not even its length. The path holds the
 * secret, so no URL is ever logged.
 *
 * Stopping. A stop flag makes every new request (on a connection already open) a 503 with
 * Connection: close; libmicrohttpd is quiesced (no new connections); requests in flight,
 * counted from their first header callback to their completion callback, are waited for;
 * then the daemon is stopped, which closes the idle keep-alive connections.
 */
#include "tsgraphd/webhook.h"
#include "tsgraphd/log.h"
#include "tsgraphd/tsjson.h"
#include "tsgraphd/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#define LISTEN_BACKLOG	  128
#define THREAD_STACK_SIZE (512u * 1024)
#define POOL_THREADS_MAX  4  /* the event loops: one per CPU, at most this many */
#define RETRY_FULL_S	  60 /* Retry-After when the inbox is full */
#define RETRY_BUSY_S	  5  /* ... when it is busy, stopping or failing */
#define ADDRESS_MAX	  64 /* a peer's address in a log line */
#define MESSAGE_MAX	  512

struct webhook {
	const struct config *c;
	struct inbox_writer *inbox;
	struct metrics *metrics;
	webhook_health_fn health;
	void *userdata;
	struct MHD_Daemon *d;
	int fd; /* the listen socket until the daemon has it */
	unsigned port;
	unsigned char secret[SHA256_DIGEST_LENGTH];
	char *cert, *key;
	size_t cert_len, key_len;
	atomic_bool stopping;
	atomic_int in_flight;
};

struct request {
	enum metrics_route route;
	struct buf body;
	bool body_allowed; /* an authorized POST to the webhook */
	bool too_big;
	int64_t started_ms;
	struct MHD_Connection *conn;
	struct inbox_ticket *ticket; /* submitted, the connection suspended until its commit */
	size_t alerts;		     /* in the body */
};

static bool is_webhook_path(const char *url, const char **ret_token)
{
	size_t n = strlen(WEBHOOK_PATH);

	if (strncmp(url, WEBHOOK_PATH, n) != 0)
		return false;
	if (url[n] == '\0') {
		*ret_token = NULL;
		return true;
	}
	if (url[n] != '/')
		return false;
	*ret_token = url[n + 1] ? url + n + 1 : NULL;
	return true;
}

static enum metrics_route route_of(const char *url)
{
	const char *token;

	if (is_webhook_path(url, &token))
		return METRICS_ROUTE_WEBHOOK;
	if (strcmp(url, "/healthz") == 0)
		return METRICS_ROUTE_HEALTHZ;
	if (strcmp(url, "/metrics") == 0)
		return METRICS_ROUTE_METRICS;
	return METRICS_ROUTE_OTHER;
}

static void peer(struct MHD_Connection *conn, char out[static ADDRESS_MAX])
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci ? ci->client_addr : NULL;

	snprintf(out, ADDRESS_MAX, "?");
	if (sa && sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, ADDRESS_MAX);
	else if (sa && sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out,
			  ADDRESS_MAX);
}

/* Queues an answer whose body (malloc'd, or NULL) libmicrohttpd frees. */
static enum MHD_Result answer(struct webhook *w, struct MHD_Connection *conn, struct request *rq,
			      unsigned status, const char *type, char *body, unsigned retry_after,
			      bool close)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char retry[16];

	resp = MHD_create_response_from_buffer(body ? strlen(body) : 0, body,
					       body ? MHD_RESPMEM_MUST_FREE
						    : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(body);
		return MHD_NO;
	}
	if (type)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	if (retry_after) {
		snprintf(retry, sizeof(retry), "%u", retry_after);
		MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, retry);
	}
	if (status == MHD_HTTP_UNAUTHORIZED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
					"Bearer realm=\"tsgraphd\"");
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW,
					rq->route == METRICS_ROUTE_WEBHOOK ? "POST" : "GET, HEAD");
	if (close)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		metrics_request(w->metrics, rq->route, status);
	return ret;
}

/* {"error":"<message>"} and a newline: one line, escaped by json-c. */
static enum MHD_Result answer_error(struct webhook *w, struct MHD_Connection *conn,
				    struct request *rq, unsigned status, const char *message,
				    unsigned retry_after)
{
	json_object *o = json_object_new_object();
	char *body = NULL;

	if (o && json_object_object_add(o, "error", json_object_new_string(message)) == 0) {
		const char *s = json_object_to_json_string_ext(
			o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);

		if (s && asprintf(&body, "%s\n", s) < 0)
			body = NULL;
	}
	json_object_put(o);
	/* A refused body may still be on the wire: the connection closes after the answer. */
	return answer(w, conn, rq, status, "application/json", body, retry_after,
		      status >= 400 && status != MHD_HTTP_NOT_FOUND);
}

static bool authorized(struct webhook *w, struct MHD_Connection *conn, const char *token)
{
	unsigned char got[SHA256_DIGEST_LENGTH];
	const char *auth;

	if (!token) {
		auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						   MHD_HTTP_HEADER_AUTHORIZATION);
		if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
			return false;
		for (token = auth + 7; *token == ' '; token++)
			;
	}
	SHA256((const unsigned char *)token, strlen(token), got);
	return CRYPTO_memcmp(got, w->secret, sizeof(got)) == 0;
}

static enum MHD_Result answer_health(struct webhook *w, struct MHD_Connection *conn,
				     struct request *rq)
{
	char reason[MESSAGE_MAX] = "", *body = NULL;
	json_object *o;
	int r = w->health ? w->health(reason, sizeof(reason), w->userdata) : 0;

	if (r == 0)
		return answer(w, conn, rq, MHD_HTTP_OK, "application/json",
			      strdup("{\"status\":\"ok\"}\n"), 0, false);
	o = json_object_new_object();
	if (o && json_object_object_add(o, "status", json_object_new_string("unhealthy")) == 0 &&
	    json_object_object_add(o, "reason", json_object_new_string(reason)) == 0 &&
	    asprintf(&body, "%s\n",
		     json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							       JSON_C_TO_STRING_NOSLASHESCAPE)) < 0)
		body = NULL;
	json_object_put(o);
	return answer(w, conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body, 0,
		      false);
}

static enum MHD_Result answer_metrics(struct webhook *w, struct MHD_Connection *conn,
				      struct request *rq)
{
	struct buf b;

	if (w->inbox)
		metrics_inbox_depth(w->metrics, inbox_writer_depth(w->inbox));
	buf_init(&b, METRICS_TEXT_MAX);
	if (metrics_render(w->metrics, &b) < 0) {
		buf_free(&b);
		return answer_error(w, conn, rq, MHD_HTTP_INTERNAL_SERVER_ERROR,
				    "cannot render the metrics", 0);
	}
	return answer(w, conn, rq, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
		      buf_steal(&b), 0, false);
}

/* The headers are in: everything that does not need the body is decided here. */
static enum MHD_Result on_headers(struct webhook *w, struct MHD_Connection *conn,
				  struct request *rq, const char *url, const char *method)
{
	const char *token = NULL, *cl;
	uint64_t length;
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		   strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

	if (atomic_load(&w->stopping))
		return answer_error(w, conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping",
				    RETRY_BUSY_S);
	switch (rq->route) {
	case METRICS_ROUTE_HEALTHZ:
		return get ? answer_health(w, conn, rq)
			   : answer_error(w, conn, rq, MHD_HTTP_METHOD_NOT_ALLOWED,
					  "method not allowed", 0);
	case METRICS_ROUTE_METRICS:
		return get ? answer_metrics(w, conn, rq)
			   : answer_error(w, conn, rq, MHD_HTTP_METHOD_NOT_ALLOWED,
					  "method not allowed", 0);
	case METRICS_ROUTE_OTHER:
	case METRICS_ROUTE_N:
		return answer_error(w, conn, rq, MHD_HTTP_NOT_FOUND, "not found", 0);
	case METRICS_ROUTE_WEBHOOK:
		break;
	}
	is_webhook_path(url, &token);
	if (!authorized(w, conn, token)) {
		char from[ADDRESS_MAX];

		peer(conn, from);
		log_debug("webhook: 401 from=%s: no or wrong secret", from);
		return answer_error(w, conn, rq, MHD_HTTP_UNAUTHORIZED, "unauthorized", 0);
	}
	if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
		return answer_error(w, conn, rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
				    0);
	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl && parse_u64(cl, 0, UINT64_MAX, &length) == 0 && length > w->c->webhook.max_body)
		return answer_error(w, conn, rq, MHD_HTTP_CONTENT_TOO_LARGE,
				    "body larger than max_body", 0);
	buf_init(&rq->body, (size_t)w->c->webhook.max_body);
	rq->body_allowed = true;
	return MHD_YES;
}

/* The writer answered the request's ticket (its thread, the inbox's lock held). */
static void resume_request(void *userdata)
{
	struct request *rq = userdata;

	MHD_resume_connection(rq->conn);
}

/* The answer to alerts handed to the inbox: r and fresh as inbox_ticket_wait() says. */
static enum MHD_Result answer_stored(struct webhook *w, struct MHD_Connection *conn,
				     struct request *rq, int r, size_t fresh)
{
	char msg[MESSAGE_MAX], from[ADDRESS_MAX];

	if (r < 0) {
		const char *why = r == -EDQUOT	    ? "inbox full (inbox_max)"
				  : r == -EAGAIN    ? "inbox busy"
				  : r == -ESHUTDOWN ? "stopping"
				  : r == -ETIMEDOUT ? "inbox commit timed out"
						    : "inbox not writable";
		bool plain = r == -EDQUOT || r == -EAGAIN || r == -ESHUTDOWN;

		peer(conn, from);
		log_warning("webhook: 503 from=%s alerts=%zu: %s%s%s", from, rq->alerts, why,
			    plain ? "" : ": ", plain ? "" : strerror(-r));
		return answer_error(w, conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, why,
				    r == -EDQUOT ? RETRY_FULL_S : RETRY_BUSY_S);
	}
	metrics_alerts(w->metrics, fresh, rq->alerts - fresh);
	if (log_get_level() >= LOG_LEVEL_DEBUG) {
		peer(conn, from);
		log_debug("webhook: 200 from=%s alerts=%zu new=%zu ms=%" PRId64, from, rq->alerts,
			  fresh, monotonic_ms() - rq->started_ms);
	}
	snprintf(msg, sizeof(msg),
		 "{\"status\":\"ok\",\"alerts\":%zu,\"new\":%zu,\"duplicates\":%zu}\n", rq->alerts,
		 fresh, rq->alerts - fresh);
	return answer(w, conn, rq, MHD_HTTP_OK, "application/json", strdup(msg), 0, false);
}

/* The body is in: parse, store, answer. */
static enum MHD_Result on_body(struct webhook *w, struct MHD_Connection *conn, struct request *rq)
{
	struct inbox_alert alerts[TSJSON_WEBHOOK_ALERTS_MAX];
	struct inbox_ticket *ticket = NULL;
	struct ts_webhook wh = { 0 };
	char err[TSJSON_ERR_MAX], from[ADDRESS_MAX];
	int64_t received = now_ms();
	unsigned status;
	int r;

	if (rq->body.len == 0)
		return answer_error(w, conn, rq, MHD_HTTP_BAD_REQUEST, "no body", 0);
	r = tsjson_webhook(rq->body.data, rq->body.len, w->c->ts.org_id, &wh, err);
	buf_free(&rq->body);
	if (r < 0) {
		peer(conn, from);
		status = r == -EPERM	? MHD_HTTP_FORBIDDEN
			 : r == -E2BIG	? MHD_HTTP_CONTENT_TOO_LARGE
			 : r == -ENOMEM ? MHD_HTTP_SERVICE_UNAVAILABLE
					: MHD_HTTP_BAD_REQUEST;
		log_debug("webhook: %u from=%s: %s", status, from, err);
		return answer_error(w, conn, rq, status, err,
				    status == MHD_HTTP_SERVICE_UNAVAILABLE ? RETRY_BUSY_S : 0);
	}
	for (size_t i = 0; i < wh.n; i++)
		alerts[i] = (struct inbox_alert){ .id = wh.alerts[i].id,
						  .body = wh.alerts[i].json,
						  .received_at = received };
	rq->alerts = wh.n;
	r = w->inbox ? inbox_writer_submit(w->inbox, alerts, wh.n, &ticket) : -ENODEV;
	ts_webhook_free(&wh);
	if (r < 0)
		return answer_stored(w, conn, rq, r, 0);
	/* Suspended first: the writer may answer the ticket at any moment from now on. */
	rq->ticket = ticket;
	rq->conn = conn;
	MHD_suspend_connection(conn);
	if (inbox_ticket_notify(ticket, resume_request, rq) > 0)
		MHD_resume_connection(conn);
	return MHD_YES;
}

/* The request's commit is done (resumed): answer it. */
static enum MHD_Result on_committed(struct webhook *w, struct MHD_Connection *conn,
				    struct request *rq)
{
	struct inbox_ticket *ticket = rq->ticket;
	size_t fresh = 0;
	int r;

	rq->ticket = NULL;
	r = inbox_ticket_wait(ticket, 0, &fresh); /* answered: at once */
	return answer_stored(w, conn, rq, r, fresh);
}
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct webhook *w = cls;
	struct request *rq = *req_cls;

	(void)version;
	if (rq && rq->ticket)
		return on_committed(w, conn, rq);
	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*req_cls = rq;
		atomic_fetch_add(&w->in_flight, 1);
		metrics_in_flight(w->metrics, 1);
		rq->route = route_of(url);
		rq->started_ms = monotonic_ms();
		return on_headers(w, conn, rq, url, method);
	}
	if (*upload_data_size > 0) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (!rq->body_allowed || rq->too_big)
			return MHD_YES;
		if (rq->body.len + n > rq->body.max) {
			/* Stop here: answer now, and close the connection without reading the rest.
			 * If libmicrohttpd cannot answer mid-body, the connection is dropped. */
			rq->too_big = true;
			buf_free(&rq->body);
			return answer_error(w, conn, rq, MHD_HTTP_CONTENT_TOO_LARGE,
					    "body larger than max_body", 0);
		}
		return buf_append(&rq->body, upload_data, n) == 0 ? MHD_YES : MHD_NO;
	}
	if (!rq->body_allowed || rq->too_big)
		return MHD_YES;
	rq->body_allowed = false;
	return on_body(w, conn, rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct webhook *w = cls;
	struct request *rq = *req_cls;

	(void)conn, (void)toe;
	if (!rq)
		return;
	inbox_ticket_release(rq->ticket); /* closed while suspended (a stop) */
	buf_free(&rq->body);
	free(rq);
	*req_cls = NULL;
	atomic_fetch_sub(&w->in_flight, 1);
	metrics_in_flight(w->metrics, -1);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[MESSAGE_MAX];
	size_t n;

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	log_debug("webhook: libmicrohttpd: %s", line);
}

/* Whether a bound address is loopback: 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104. */
static bool loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)ss)->sin_addr.s_addr) >> 24) == 127;
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

/* "host:port", "[v6]:port", "*:port" → a bound, listening, non-blocking socket. */
static int bind_listen(const char *listen_on, int *ret_fd, char *err)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV },
			*res = NULL;
	char host[256];
	const char *colon = strrchr(listen_on, ':'), *h = listen_on;
	size_t hl;
	int fd = -1, one = 1, zero = 0, r;

	if (!colon) {
		snprintf(err, WEBHOOK_ERR_MAX, "listen %s: not host:port", listen_on);
		return -EINVAL;
	}
	hl = (size_t)(colon - listen_on);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= sizeof(host)) {
		snprintf(err, WEBHOOK_ERR_MAX, "listen: the host is too long");
		return -EINVAL;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	r = getaddrinfo(strcmp(host, "*") == 0 ? NULL : host, colon + 1, &hints, &res);
	if (r != 0) {
		snprintf(err, WEBHOOK_ERR_MAX, "listen %s: %s", listen_on, gai_strerror(r));
		return -EINVAL;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		r = -errno;
		goto out;
	}
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (res->ai_family == AF_INET6) /* [::] takes IPv4 as well */
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		r = -errno;
		goto out;
	}
	*ret_fd = fd;
	fd = -1;
	r = 0;
out:
	if (r < 0)
		snprintf(err, WEBHOOK_ERR_MAX, "listen %s: %s", listen_on, strerror(-r));
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return r;
}

/* The socket must be a listening TCP socket; plain HTTP only on loopback. Sets w->port. */
static int check_socket(struct webhook *w, int fd, char *err)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int type = 0, acc = 0;
	socklen_t tl = sizeof(type), al = sizeof(acc);

	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) < 0 || type != SOCK_STREAM ||
	    !acc || (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)) {
		snprintf(err, WEBHOOK_ERR_MAX,
			 "the listen socket is not a listening TCP socket (IPv4 or IPv6)");
		return -EINVAL;
	}
	if (!w->c->webhook.tls && !loopback(&ss)) {
		snprintf(err, WEBHOOK_ERR_MAX,
			 "tls = off, but the listen socket is not bound to a loopback address: "
			 "refusing plain HTTP");
		return -EINVAL;
	}
	w->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						: ((struct sockaddr_in6 *)&ss)->sin6_port);
	return 0;
}

static void wipe(char *p, size_t len)
{
	if (p) {
		explicit_bzero(p, len);
		free(p);
	}
}

static void webhook_free(struct webhook *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	wipe(w->cert, w->cert_len);
	wipe(w->key, w->key_len);
	explicit_bzero(w->secret, sizeof(w->secret));
	free(w);
}

int webhook_start(const struct webhook_options *opt, struct webhook **ret,
		  char err[static WEBHOOK_ERR_MAX])
{
	const struct config *c = opt->c;
	struct webhook *w;
	unsigned flags =
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	unsigned pool = cpus < 1 ? 1 : cpus > POOL_THREADS_MAX ? POOL_THREADS_MAX : (unsigned)cpus;
	int r;

	err[0] = '\0';
	if (!c->webhook.secret) {
		snprintf(err, WEBHOOK_ERR_MAX, "[webhook] secret (or secret_file) is not set");
		return -EINVAL;
	}
	if (c->webhook.tls && (!c->webhook.tls_cert || !c->webhook.tls_key)) {
		snprintf(err, WEBHOOK_ERR_MAX,
			 "[webhook] needs tls_cert and tls_key (or tls = off with a loopback "
			 "listen, for tests)");
		return -EINVAL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	w->c = c;
	w->inbox = opt->inbox;
	w->metrics = opt->metrics;
	w->health = opt->health;
	w->userdata = opt->userdata;
	w->fd = -1;
	SHA256((const unsigned char *)c->webhook.secret, strlen(c->webhook.secret), w->secret);
	if (c->webhook.tls) {
		r = read_file_bounded(c->webhook.tls_cert, CONFIG_PEM_MAX, &w->cert, &w->cert_len);
		if (r < 0) {
			snprintf(err, WEBHOOK_ERR_MAX, "tls_cert %s: %s", c->webhook.tls_cert,
				 strerror(-r));
			goto fail;
		}
		r = read_file_bounded(c->webhook.tls_key, CONFIG_PEM_MAX, &w->key, &w->key_len);
		if (r < 0) {
			snprintf(err, WEBHOOK_ERR_MAX, "tls_key %s: %s", c->webhook.tls_key,
				 strerror(-r));
			goto fail;
		}
		flags |= MHD_USE_TLS;
	}
	if (opt->listen_fd >= 0)
		w->fd = opt->listen_fd;
	else if ((r = bind_listen(c->webhook.listen, &w->fd, err)) < 0)
		goto fail;
	r = check_socket(w, w->fd, err);
	if (r < 0)
		goto fail;
	/* The logger first, so that libmicrohttpd's own messages about later options reach it. */
	w->d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, w, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
		MHD_OPTION_LISTEN_SOCKET, w->fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, w,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->webhook.timeout,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->webhook.max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->webhook.max_connections_per_ip,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEBHOOK_CONNECTION_MEMORY_MAX,
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK_SIZE,
		MHD_OPTION_THREAD_POOL_SIZE, pool, MHD_OPTION_STRICT_FOR_CLIENT, (int)1,
		c->webhook.tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, w->cert,
		MHD_OPTION_HTTPS_MEM_KEY, w->key, MHD_OPTION_HTTPS_PRIORITIES,
		WEBHOOK_TLS_PRIORITIES, MHD_OPTION_END);
	if (!w->d) {
		snprintf(err, WEBHOOK_ERR_MAX,
			 "cannot start the HTTP%s server (see the debug log: a bad certificate or "
			 "key?)",
			 c->webhook.tls ? "S" : "");
		r = -EINVAL;
		goto fail;
	}
	w->fd = -1; /* libmicrohttpd's until quiesced */
	*ret = w;
	return 0;
fail:
	if (opt->listen_fd >= 0 && w->fd == opt->listen_fd)
		w->fd = -1; /* the caller's */
	webhook_free(w);
	return r;
}

unsigned webhook_port(const struct webhook *w)
{
	return w->port;
}

void webhook_stop(struct webhook *w, int64_t drain_ms)
{
	int64_t until;
	int fd, left;

	if (!w)
		return;
	atomic_store(&w->stopping, true);
	fd = MHD_quiesce_daemon(w->d);
	if (fd >= 0)
		close(fd);
	until = monotonic_ms() + drain_ms;
	while ((left = atomic_load(&w->in_flight)) > 0 && monotonic_ms() < until)
		usleep(10 * 1000);
	if (left > 0)
		log_warning("webhook: %d request%s still in flight after %" PRId64
			    " ms: closing them (not answered, and stored only if committed)",
			    left, left == 1 ? "" : "s", drain_ms);
	MHD_stop_daemon(w->d);
	webhook_free(w);
}
