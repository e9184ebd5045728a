/* webhook — the receiver: routes, authentication, limits, and the inbox before the answer.
 *
 * libmicrohttpd runs one or a few event-loop threads (epoll), each serving many
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
 *
 * Reloading. What a request reads from the configuration (the certificate, max_body, the
 * organization, the connection limits) belongs to a listener: one libmicrohttpd daemon with
 * a reference to one config snapshot. The secret is the receiver's, one for every listener
 * (its digest under the lock): the old one is refused everywhere once a reload is done. The
 * receiver keeps the listen socket itself and gives each listener a dup of it. A reload
 * starts a new listener on a new dup first (a certificate or key that is refused fails the
 * reload here, the old listener untouched), then quiesces the old one: from then on the
 * kernel hands every new connection to the new listener, and no connection waits or is
 * refused. The old one retires on a thread of its own: requests on its open connections are
 * still served (answered with Connection: close, so the client comes back to the new one),
 * a suspended one resumed by its commit as usual, until none is in flight and none is
 * open, or WEBHOOK_RETIRE_MS passed; then it is stopped, and its config reference dropped.
 *
 * The watchdog. Each request is on a list while it lives; the time one has spent inside
 * one of our callbacks (webhook_stuck_ms) tells an event-loop thread stuck in a call.
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
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#define LISTEN_BACKLOG	  128
#define THREAD_STACK_SIZE (512u * 1024)
#define POOL_THREADS_AUTO 4  /* [webhook] threads = 0: one per CPU but one, at most this */
#define RETRY_FULL_S	  60 /* Retry-After when the inbox is full */
#define RETRY_BUSY_S	  5  /* ... when it is busy, stopping or failing */
#define ADDRESS_MAX	  64 /* a peer's address in a log line */
#define MESSAGE_MAX	  512

struct request;

/* One libmicrohttpd daemon, with what a reload may change. */
struct listener {
	struct webhook *w;
	const struct config *c; /* a reference */
	struct MHD_Daemon *d;
	int fd; /* its dup of the listen socket, until the daemon has it */
	char *cert, *key;
	size_t cert_len, key_len;
	atomic_bool retiring; /* a newer listener took over: answers close the connection */
	atomic_int in_flight;
	pthread_t thread; /* its retirement */
	bool thread_started;
	atomic_bool retired; /* stopped: the thread may be joined */
	struct listener *next;
};

struct webhook {
	struct inbox_writer *inbox;
	struct metrics *metrics;
	webhook_health_fn health;
	void *userdata;
	int fd;		/* the listen socket, for the receiver's life; each listener has a dup */
	bool activated; /* fd came from systemd (socket activation) */
	unsigned port;
	atomic_bool stopping;
	struct listener *cur;	   /* the one accepting connections */
	struct listener *retiring; /* older ones, until joined */
	pthread_mutex_t lock;	   /* guards requests and secret */
	struct request *requests;
	unsigned char secret[SHA256_DIGEST_LENGTH]; /* the digest of [webhook] secret */
};

struct request {
	struct listener *l;
	enum metrics_route route;
	struct buf body;
	bool body_allowed; /* an authorized POST to the webhook */
	bool too_big;
	int64_t started_ms;
	struct MHD_Connection *conn;
	struct inbox_ticket *ticket; /* submitted, the connection suspended until its commit */
	int64_t suspended_ms;	     /* monotonic, under w->lock: suspended since; 0: not */
	size_t alerts;		     /* in the body */
	_Atomic int64_t call_ms;     /* monotonic: inside one of our callbacks since; 0 outside */
	struct request *prev, *next;
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
static enum MHD_Result answer(struct listener *l, struct MHD_Connection *conn, struct request *rq,
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
	if (close || atomic_load(&l->retiring))
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	ret = MHD_queue_response(conn, status, resp);
	MHD_destroy_response(resp);
	if (ret == MHD_YES)
		metrics_request(l->w->metrics, rq->route, status);
	return ret;
}

/* {"error":"<message>"} and a newline: one line, escaped by json-c. */
static enum MHD_Result answer_error(struct listener *l, struct MHD_Connection *conn,
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
	return answer(l, conn, rq, status, "application/json", body, retry_after,
		      status >= 400 && status != MHD_HTTP_NOT_FOUND);
}

static bool authorized(struct listener *l, struct MHD_Connection *conn, const char *token)
{
	unsigned char got[SHA256_DIGEST_LENGTH];
	const char *auth;
	bool ok;

	if (!token) {
		auth = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						   MHD_HTTP_HEADER_AUTHORIZATION);
		if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
			return false;
		for (token = auth + 7; *token == ' '; token++)
			;
	}
	SHA256((const unsigned char *)token, strlen(token), got);
	pthread_mutex_lock(&l->w->lock);
	ok = CRYPTO_memcmp(got, l->w->secret, sizeof(got)) == 0;
	pthread_mutex_unlock(&l->w->lock);
	return ok;
}

static enum MHD_Result answer_health(struct listener *l, struct MHD_Connection *conn,
				     struct request *rq)
{
	struct webhook *w = l->w;
	char reason[MESSAGE_MAX] = "", *body = NULL;
	json_object *o;
	int r = w->health ? w->health(reason, sizeof(reason), w->userdata) : 0;

	if (r == 0)
		return answer(l, conn, rq, MHD_HTTP_OK, "application/json",
			      strdup("{\"status\":\"ok\"}\n"), 0, false);
	o = json_object_new_object();
	if (o && json_object_object_add(o, "status", json_object_new_string("unhealthy")) == 0 &&
	    json_object_object_add(o, "reason", json_object_new_string(reason)) == 0 &&
	    asprintf(&body, "%s\n",
		     json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
							       JSON_C_TO_STRING_NOSLASHESCAPE)) < 0)
		body = NULL;
	json_object_put(o);
	return answer(l, conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body, 0,
		      false);
}

static enum MHD_Result answer_metrics(struct listener *l, struct MHD_Connection *conn,
				      struct request *rq)
{
	struct webhook *w = l->w;
	struct buf b;

	if (w->inbox)
		metrics_inbox_depth(w->metrics, inbox_writer_depth(w->inbox));
	buf_init(&b, METRICS_TEXT_MAX);
	if (metrics_render(w->metrics, &b) < 0) {
		buf_free(&b);
		return answer_error(l, conn, rq, MHD_HTTP_INTERNAL_SERVER_ERROR,
				    "cannot render the metrics", 0);
	}
	return answer(l, conn, rq, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
		      buf_steal(&b), 0, false);
}

/* The headers are in: everything that does not need the body is decided here. */
static enum MHD_Result on_headers(struct listener *l, struct MHD_Connection *conn,
				  struct request *rq, const char *url, const char *method)
{
	const char *token = NULL, *cl;
	uint64_t length;
	bool get = strcmp(method, MHD_HTTP_METHOD_GET) == 0 ||
		   strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;

	if (atomic_load(&l->w->stopping))
		return answer_error(l, conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping",
				    RETRY_BUSY_S);
	switch (rq->route) {
	case METRICS_ROUTE_HEALTHZ:
		return get ? answer_health(l, conn, rq)
			   : answer_error(l, conn, rq, MHD_HTTP_METHOD_NOT_ALLOWED,
					  "method not allowed", 0);
	case METRICS_ROUTE_METRICS:
		return get ? answer_metrics(l, conn, rq)
			   : answer_error(l, conn, rq, MHD_HTTP_METHOD_NOT_ALLOWED,
					  "method not allowed", 0);
	case METRICS_ROUTE_OTHER:
	case METRICS_ROUTE_N:
		return answer_error(l, conn, rq, MHD_HTTP_NOT_FOUND, "not found", 0);
	case METRICS_ROUTE_WEBHOOK:
		break;
	}
	is_webhook_path(url, &token);
	if (!authorized(l, conn, token)) {
		char from[ADDRESS_MAX];

		peer(conn, from);
		log_debug("webhook: 401 from=%s: no or wrong secret", from);
		return answer_error(l, conn, rq, MHD_HTTP_UNAUTHORIZED, "unauthorized", 0);
	}
	if (strcmp(method, MHD_HTTP_METHOD_POST) != 0)
		return answer_error(l, conn, rq, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed",
				    0);
	cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (cl && parse_u64(cl, 0, UINT64_MAX, &length) == 0 && length > l->c->webhook.max_body)
		return answer_error(l, conn, rq, MHD_HTTP_CONTENT_TOO_LARGE,
				    "body larger than max_body", 0);
	buf_init(&rq->body, (size_t)l->c->webhook.max_body);
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
static enum MHD_Result answer_stored(struct listener *l, struct MHD_Connection *conn,
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
		return answer_error(l, conn, rq, MHD_HTTP_SERVICE_UNAVAILABLE, why,
				    r == -EDQUOT ? RETRY_FULL_S : RETRY_BUSY_S);
	}
	metrics_alerts(l->w->metrics, fresh, rq->alerts - fresh);
	if (log_get_level() >= LOG_LEVEL_DEBUG) {
		peer(conn, from);
		log_debug("webhook: 200 from=%s alerts=%zu new=%zu ms=%" PRId64, from, rq->alerts,
			  fresh, monotonic_ms() - rq->started_ms);
	}
	snprintf(msg, sizeof(msg),
		 "{\"status\":\"ok\",\"alerts\":%zu,\"new\":%zu,\"duplicates\":%zu}\n", rq->alerts,
		 fresh, rq->alerts - fresh);
	return answer(l, conn, rq, MHD_HTTP_OK, "application/json", strdup(msg), 0, false);
}

/* The body is in: parse, store, answer. */
static enum MHD_Result on_body(struct listener *l, struct MHD_Connection *conn, struct request *rq)
{
	struct inbox_alert alerts[TSJSON_WEBHOOK_ALERTS_MAX];
	struct inbox_ticket *ticket = NULL;
	struct ts_webhook wh = { 0 };
	char err[TSJSON_ERR_MAX], from[ADDRESS_MAX];
	int64_t received = now_ms();
	unsigned status;
	int r;

	if (rq->body.len == 0)
		return answer_error(l, conn, rq, MHD_HTTP_BAD_REQUEST, "no body", 0);
	r = tsjson_webhook(rq->body.data, rq->body.len, l->c->ts.org_id, &wh, err);
	buf_free(&rq->body);
	if (r < 0) {
		peer(conn, from);
		status = r == -EPERM	? MHD_HTTP_FORBIDDEN
			 : r == -E2BIG	? MHD_HTTP_CONTENT_TOO_LARGE
			 : r == -ENOMEM ? MHD_HTTP_SERVICE_UNAVAILABLE
					: MHD_HTTP_BAD_REQUEST;
		log_debug("webhook: %u from=%s: %s", status, from, err);
		return answer_error(l, conn, rq, status, err,
				    status == MHD_HTTP_SERVICE_UNAVAILABLE ? RETRY_BUSY_S : 0);
	}
	for (size_t i = 0; i < wh.n; i++)
		alerts[i] = (struct inbox_alert){ .id = wh.alerts[i].id,
						  .body = wh.alerts[i].json,
						  .received_at = received };
	rq->alerts = wh.n;
	r = l->w->inbox ? inbox_writer_submit(l->w->inbox, alerts, wh.n, &ticket) : -ENODEV;
	ts_webhook_free(&wh);
	if (r < 0)
		return answer_stored(l, conn, rq, r, 0);
	/* Suspended first: the writer may answer the ticket at any moment from now on. Under
	 * w->lock, so that expire() sees either no ticket or a suspended request whose
	 * notification is asked for (lock order: w->lock, the inbox's, libmicrohttpd's). */
	rq->ticket = ticket;
	rq->conn = conn;
	pthread_mutex_lock(&l->w->lock);
	rq->suspended_ms = monotonic_ms();
	MHD_suspend_connection(conn);
	if (inbox_ticket_notify(ticket, resume_request, rq) > 0) {
		rq->suspended_ms = 0;
		MHD_resume_connection(conn);
	}
	pthread_mutex_unlock(&l->w->lock);
	return MHD_YES;
}

/* Resumes the suspended requests (of listener l, or of all with NULL) suspended at or before
 * before_ms whose commit has not answered them: each is answered 503 "inbox commit timed
 * out" (its alerts may still be committed: a retry is a duplicate). Before a listener stops
 * (libmicrohttpd must not be stopped with a connection suspended) and when a commit takes
 * longer than WEBHOOK_COMMIT_TIMEOUT_MS. */
static unsigned expire(struct webhook *w, const struct listener *l, int64_t before_ms)
{
	unsigned n = 0;

	pthread_mutex_lock(&w->lock);
	for (struct request *rq = w->requests; rq; rq = rq->next) {
		if (!rq->ticket || !rq->suspended_ms || rq->suspended_ms > before_ms ||
		    (l && rq->l != l))
			continue;
		rq->suspended_ms = 0;
		if (inbox_ticket_detach(rq->ticket) == 0) {
			MHD_resume_connection(rq->conn);
			n++;
		}
	}
	pthread_mutex_unlock(&w->lock);
	return n;
}

/* The request's commit is done (resumed): answer it. */
static enum MHD_Result on_committed(struct listener *l, struct MHD_Connection *conn,
				    struct request *rq)
{
	struct inbox_ticket *ticket = rq->ticket;
	size_t fresh = 0;
	int r;

	pthread_mutex_lock(&l->w->lock);
	rq->ticket = NULL;
	rq->suspended_ms = 0;
	pthread_mutex_unlock(&l->w->lock);
	r = inbox_ticket_wait(ticket, 0, &fresh); /* answered, or expired: at once */
	return answer_stored(l, conn, rq, r, fresh);
}
static enum MHD_Result handle(struct listener *l, struct MHD_Connection *conn, struct request *rq,
			      const char *url, const char *method, const char *upload_data,
			      size_t *upload_data_size, bool first)
{
	if (rq->ticket)
		return on_committed(l, conn, rq);
	if (first)
		return on_headers(l, conn, rq, url, method);
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
			return answer_error(l, conn, rq, MHD_HTTP_CONTENT_TOO_LARGE,
					    "body larger than max_body", 0);
		}
		return buf_append(&rq->body, upload_data, n) == 0 ? MHD_YES : MHD_NO;
	}
	if (!rq->body_allowed || rq->too_big)
		return MHD_YES;
	rq->body_allowed = false;
	return on_body(l, conn, rq);
}

/* Every call of libmicrohttpd's: the request's time inside it is watched (webhook_stuck_ms). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **req_cls)
{
	struct listener *l = cls;
	struct webhook *w = l->w;
	struct request *rq = *req_cls;
	bool first = !rq;
	enum MHD_Result ret;

	(void)version;
	if (first) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*req_cls = rq;
		rq->l = l;
		atomic_fetch_add(&l->in_flight, 1);
		metrics_in_flight(w->metrics, 1);
		rq->route = route_of(url);
		rq->started_ms = monotonic_ms();
		pthread_mutex_lock(&w->lock);
		rq->next = w->requests;
		if (rq->next)
			rq->next->prev = rq;
		w->requests = rq;
		pthread_mutex_unlock(&w->lock);
	}
	atomic_store(&rq->call_ms, monotonic_ms());
	ret = handle(l, conn, rq, url, method, upload_data, upload_data_size, first);
	atomic_store(&rq->call_ms, 0);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct listener *l = cls;
	struct webhook *w = l->w;
	struct request *rq = *req_cls;

	(void)conn, (void)toe;
	if (!rq)
		return;
	pthread_mutex_lock(&w->lock);
	if (rq->prev)
		rq->prev->next = rq->next;
	else
		w->requests = rq->next;
	if (rq->next)
		rq->next->prev = rq->prev;
	pthread_mutex_unlock(&w->lock);
	inbox_ticket_release(rq->ticket); /* closed while suspended (a stop) */
	buf_free(&rq->body);
	free(rq);
	*req_cls = NULL;
	atomic_fetch_sub(&l->in_flight, 1);
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
static int check_socket(struct webhook *w, int fd, bool tls, char *err)
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
	if (!tls && !loopback(&ss)) {
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

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf, (void)size, (void)rwflag, (void)u;
	return 0; /* an encrypted key is refused, never prompted for */
}

/* OpenSSL reads the pair before GnuTLS does: one clear line for a file that holds no PEM
 * certificate or key, or a key that is not the certificate's, where libmicrohttpd would
 * only fail to start (and GnuTLS leaks a little on some of these paths). */
static int check_pair(const struct listener *l, const struct config *c, char *err)
{
	BIO *cb = BIO_new_mem_buf(l->cert, (int)l->cert_len);
	BIO *kb = BIO_new_mem_buf(l->key, (int)l->key_len);
	X509 *x = cb ? PEM_read_bio_X509(cb, NULL, no_passphrase, NULL) : NULL;
	EVP_PKEY *k = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL) : NULL;
	int r = -EINVAL;

	if (!x)
		snprintf(err, WEBHOOK_ERR_MAX, "tls_cert %s: no PEM certificate in it",
			 c->webhook.tls_cert);
	else if (!k)
		snprintf(err, WEBHOOK_ERR_MAX,
			 "tls_key %s: no PEM private key in it (or one with a passphrase)",
			 c->webhook.tls_key);
	else if (X509_check_private_key(x, k) != 1)
		snprintf(err, WEBHOOK_ERR_MAX, "tls_key %s is not the key of tls_cert %s",
			 c->webhook.tls_key, c->webhook.tls_cert);
	else
		r = 0;
	ERR_clear_error();
	EVP_PKEY_free(k);
	X509_free(x);
	BIO_free(kb);
	BIO_free(cb);
	return r;
}

/* Frees a listener whose daemon is stopped (or never started) and whose thread is joined. */
static void listener_free(struct listener *l)
{
	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	wipe(l->cert, l->cert_len);
	wipe(l->key, l->key_len);
	config_free(l->c);
	free(l);
}

/* The event loops for [webhook] threads = 0: one per CPU this process may run on (its
 * affinity, not the machine's count) but one, which is left to the inbox writer that every
 * stored request waits for; at least one, at most POOL_THREADS_AUTO. On 2 CPUs, one loop
 * served more requests a second at less CPU each than two (docs/benchmarks.md). */
static unsigned auto_threads(void)
{
	cpu_set_t set;
	long cpus = sched_getaffinity(0, sizeof(set), &set) == 0 ? CPU_COUNT(&set)
								 : sysconf(_SC_NPROCESSORS_ONLN);

	if (cpus < 2)
		return 1;
	return cpus - 1 > POOL_THREADS_AUTO ? POOL_THREADS_AUTO : (unsigned)(cpus - 1);
}

/* A listener for c on a dup of the listen socket, serving once this returns. */
static int listener_new(struct webhook *w, const struct config *c, struct listener **ret,
			char err[static WEBHOOK_ERR_MAX])
{
	unsigned flags =
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	unsigned threads = c->webhook.threads ? c->webhook.threads : auto_threads();
	struct MHD_OptionItem opts[5]; /* TLS (3), the pool (1), the end */
	size_t n = 0;
	struct listener *l;
	int r;

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
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->w = w;
	l->c = config_ref(c);
	l->fd = -1;
	if (c->webhook.tls) {
		r = read_file_bounded(c->webhook.tls_cert, CONFIG_PEM_MAX, &l->cert, &l->cert_len);
		if (r < 0) {
			snprintf(err, WEBHOOK_ERR_MAX, "tls_cert %s: %s", c->webhook.tls_cert,
				 strerror(-r));
			goto fail;
		}
		r = read_file_bounded(c->webhook.tls_key, CONFIG_PEM_MAX, &l->key, &l->key_len);
		if (r < 0) {
			snprintf(err, WEBHOOK_ERR_MAX, "tls_key %s: %s", c->webhook.tls_key,
				 strerror(-r));
			goto fail;
		}
		r = check_pair(l, c, err);
		if (r < 0)
			goto fail;
		flags |= MHD_USE_TLS;
	}
	l->fd = fcntl(w->fd, F_DUPFD_CLOEXEC, 3);
	if (l->fd < 0) {
		r = -errno;
		snprintf(err, WEBHOOK_ERR_MAX, "cannot duplicate the listen socket: %s",
			 strerror(-r));
		goto fail;
	}
	if (c->webhook.tls) {
		opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, l->cert };
		opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, l->key };
		opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_PRIORITIES, 0,
						     (void *)WEBHOOK_TLS_PRIORITIES };
	}
	/* A pool of one is no pool: libmicrohttpd warns of it, so it is not asked for. */
	if (threads > 1)
		opts[n++] = (struct MHD_OptionItem){ MHD_OPTION_THREAD_POOL_SIZE, (intptr_t)threads,
						     NULL };
	opts[n] = (struct MHD_OptionItem){ MHD_OPTION_END, 0, NULL };
	/* The logger first, so that libmicrohttpd's own messages about later options reach it. */
	l->d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_request, l, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
		MHD_OPTION_LISTEN_SOCKET, l->fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, l,
		MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)c->webhook.timeout,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)c->webhook.max_connections,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)c->webhook.max_connections_per_ip,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEBHOOK_CONNECTION_MEMORY_MAX,
		MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK_SIZE,
		MHD_OPTION_STRICT_FOR_CLIENT, (int)1, MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
	l->fd = -1; /* libmicrohttpd's, until quiesced; closed by it when the start fails */
	if (!l->d) {
		snprintf(err, WEBHOOK_ERR_MAX,
			 "cannot start the HTTP%s server (see the debug log: a bad certificate or "
			 "key?)",
			 c->webhook.tls ? "S" : "");
		r = -EINVAL;
		goto fail;
	}
	*ret = l;
	return 0;
fail:
	listener_free(l);
	return r;
}

/* Stops accepting: the kernel gives new connections to the other listeners of the socket. */
static void listener_quiesce(struct listener *l)
{
	/* Closed by listener_free(), after MHD_stop_daemon(): its threads may still be about to
	 * accept() on it until then. */
	l->fd = MHD_quiesce_daemon(l->d);
}

static unsigned listener_connections(struct listener *l)
{
	const union MHD_DaemonInfo *di =
		MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);

	return di ? di->num_connections : 0;
}

/* A quiesced listener's last moments: its connections served, then it stops. */
static void *retire_main(void *arg)
{
	struct listener *l = arg;
	int64_t until = monotonic_ms() + WEBHOOK_RETIRE_MS;
	int left;

	while (((left = atomic_load(&l->in_flight)) > 0 || listener_connections(l) > 0) &&
	       monotonic_ms() < until)
		usleep(10 * 1000);
	if (left > 0)
		log_warning("webhook: %d request%s on the previous listener still in flight after "
			    "%d ms: closing them (not answered, and stored only if committed)",
			    left, left == 1 ? "" : "s", WEBHOOK_RETIRE_MS);
	expire(l->w, l, INT64_MAX); /* none may stay suspended through the stop */
	MHD_stop_daemon(l->d);
	l->d = NULL;
	log_debug("webhook: the previous listener stopped");
	atomic_store(&l->retired, true);
	return NULL;
}

/* Joins and frees the retired listeners (all of them with wait, else those done). */
static void reap(struct webhook *w, bool wait)
{
	struct listener **p = &w->retiring;

	while (*p) {
		struct listener *l = *p;

		if (!wait && !atomic_load(&l->retired)) {
			p = &l->next;
			continue;
		}
		if (l->thread_started)
			pthread_join(l->thread, NULL);
		*p = l->next;
		listener_free(l);
	}
}

static void webhook_free(struct webhook *w)
{
	if (!w)
		return;
	if (w->fd >= 0)
		close(w->fd);
	explicit_bzero(w->secret, sizeof(w->secret));
	pthread_mutex_destroy(&w->lock);
	free(w);
}

int webhook_start(const struct webhook_options *opt, struct webhook **ret,
		  char err[static WEBHOOK_ERR_MAX])
{
	const struct config *c = opt->c;
	struct webhook *w;
	int r;

	err[0] = '\0';
	if (!c->webhook.secret) {
		snprintf(err, WEBHOOK_ERR_MAX, "[webhook] secret (or secret_file) is not set");
		return -EINVAL;
	}
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	pthread_mutex_init(&w->lock, NULL);
	w->inbox = opt->inbox;
	w->metrics = opt->metrics;
	w->health = opt->health;
	w->userdata = opt->userdata;
	w->fd = -1;
	SHA256((const unsigned char *)c->webhook.secret, strlen(c->webhook.secret), w->secret);
	w->activated = opt->listen_fd >= 0;
	if (opt->listen_fd >= 0)
		w->fd = opt->listen_fd;
	else if ((r = bind_listen(c->webhook.listen, &w->fd, err)) < 0)
		goto fail;
	r = check_socket(w, w->fd, c->webhook.tls, err);
	if (r == 0)
		r = listener_new(w, c, &w->cur, err);
	if (r < 0)
		goto fail;
	*ret = w;
	return 0;
fail:
	if (opt->listen_fd >= 0 && w->fd == opt->listen_fd)
		w->fd = -1; /* the caller's */
	webhook_free(w);
	return r;
}

int webhook_reload(struct webhook *w, const struct config *c, char err[static WEBHOOK_ERR_MAX])
{
	struct listener *l = NULL, *old = w->cur;
	unsigned char secret[SHA256_DIGEST_LENGTH];
	int r;

	err[0] = '\0';
	reap(w, false);
	r = listener_new(w, c, &l, err);
	if (r < 0)
		return r;
	/* From here on the old secret is refused, on the old listener's connections too. */
	SHA256((const unsigned char *)c->webhook.secret, strlen(c->webhook.secret), secret);
	pthread_mutex_lock(&w->lock);
	memcpy(w->secret, secret, sizeof(secret));
	pthread_mutex_unlock(&w->lock);
	explicit_bzero(secret, sizeof(secret));
	atomic_store(&old->retiring, true);
	listener_quiesce(old);
	w->cur = l;
	old->next = w->retiring;
	w->retiring = old;
	r = -pthread_create(&old->thread, NULL, retire_main, old);
	if (r == 0)
		old->thread_started = true;
	else
		retire_main(old); /* no thread: retire it here, at most WEBHOOK_RETIRE_MS */
	return 0;
}

unsigned webhook_port(const struct webhook *w)
{
	return w->port;
}

unsigned webhook_expire(struct webhook *w, int64_t now_mono_ms)
{
	unsigned n = expire(w, NULL, now_mono_ms - WEBHOOK_COMMIT_TIMEOUT_MS);

	if (n > 0)
		log_warning("webhook: %u request%s waited %d s for the inbox commit: answered 503",
			    n, n == 1 ? "" : "s", WEBHOOK_COMMIT_TIMEOUT_MS / 1000);
	return n;
}

int64_t webhook_stuck_ms(struct webhook *w, int64_t now_mono_ms)
{
	int64_t worst = 0;

	pthread_mutex_lock(&w->lock);
	for (struct request *rq = w->requests; rq; rq = rq->next) {
		int64_t since = atomic_load(&rq->call_ms);

		if (since && now_mono_ms - since > worst)
			worst = now_mono_ms - since;
	}
	pthread_mutex_unlock(&w->lock);
	return worst;
}

void webhook_stop(struct webhook *w, int64_t drain_ms)
{
	int64_t until;
	int left;

	if (!w)
		return;
	atomic_store(&w->stopping, true);
	listener_quiesce(w->cur);
	/* New connections are refused at once (the socket's dups stay open until the stop: a
	 * quiesced libmicrohttpd may still touch its fd). A socket systemd passed keeps
	 * listening: systemd holds it, and what comes meanwhile waits for the next start. */
	if (!w->activated && w->fd >= 0)
		shutdown(w->fd, SHUT_RDWR);
	until = monotonic_ms() + drain_ms;
	while ((left = atomic_load(&w->cur->in_flight)) > 0 && monotonic_ms() < until)
		usleep(10 * 1000);
	if (left > 0)
		log_warning("webhook: %d request%s still in flight after %" PRId64
			    " ms: closing them (not answered, and stored only if committed)",
			    left, left == 1 ? "" : "s", drain_ms);
	expire(w, w->cur, INT64_MAX); /* none may stay suspended through the stop */
	MHD_stop_daemon(w->cur->d);
	listener_free(w->cur);
	reap(w, true); /* each retires within WEBHOOK_RETIRE_MS of its reload */
	webhook_free(w);
}
