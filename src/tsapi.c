/* tsapi — the Threat Stack REST client.
 *
 * One request goes through request(): take a slot from the rate limiter, sign the exact
 * URI string that is handed to libcurl with a fresh Hawk ts (local clock plus the learnt
 * offset) and nonce, perform, then classify the outcome into done / retry after a delay /
 * fail with a class. Retried: 429 (after x-rate-limit-reset, or Retry-After, capped; the
 * organization's limiter is held back too so that its other clients do not hammer it), 5xx, timeouts and transport errors, with exponential backoff and jitter,
 * a bounded number of tries and a bounded total time. A 401 whose WWW-Authenticate carries
 * a tsm that verifies with our key teaches us the server's clock: the offset is stored in
 * the limiter (for every client of the organization) and the request retried once. Nothing
 * else in 4xx is retried. Every wait is a cancel_sleep() and libcurl's progress callback
 * watches the same handle, so a stop request ends any request within a second.
 *
 * Listings run list_pages(): one page in memory, each item parsed by tsjson and lent to
 * the caller's callback before the next page is fetched. The continuation token is sent
 * URL-encoded; a token seen before in the same listing (64-bit hashes kept in a small open
 * addressing set) ends the listing with BAD_RESPONSE, more than max_pages pages with
 * TOO_LONG, instead of looping forever.
 *
 * The rate limiter is GCRA, i.e. a token bucket expressed as a "theoretical arrival time":
 * with burst B and interval T, n sends within less than W of each other need
 * (n - B) * T < W, i.e. n < B + W/T. T = 61 s / (rate + 1 - B) therefore keeps every 60 s
 * window at or below the rate, with a second of slack for network jitter. Reservation is pure arithmetic over a caller-given clock;
 * only the client sleeps.
 */
#include "tsgraphd/tsapi.h"
#include "tsgraphd/cancel.h"
#include "tsgraphd/hawk.h"
#include "tsgraphd/util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>

#define TOKEN_MAX	     TSJSON_STR_MAX
#define LABEL_MAX	     200
#define SERVER_SAID_BODY_MAX (64 * 1024) /* an error body parsed for its message */
#define SIZE_TEXT_MAX	     32		 /* format_size()'s "8 MiB" */
#define LIMITER_RING	     6000	 /* the most requests a minute rate_limit allows */

/* The organization's: its request budget and, beside it, the clock offset any client of it
 * learnt from a 401 tsm (every client signs with the same clock). */
struct tsapi_limiter {
	pthread_mutex_t lock;
	int64_t interval_us;
	int64_t tolerance_us;
	int64_t tat_us;
	bool started;
	int64_t clock_offset; /* seconds */
	uint32_t per_minute;
	/* When the requests of the last minute were (or will be) sent, oldest first: what is
	 * left of the minute's budget, for progress lines and STATUS=. */
	int64_t sent_ms[LIMITER_RING];
	size_t head, n;
};

struct response {
	long status;
	struct tsapi_headers h;
	bool too_large;
	bool headers_too_large;
	size_t header_bytes;
	struct buf body;
};

struct tsapi {
	CURL *curl;
	char *base; /* scheme://host[:port], no trailing slash */
	char *host;
	unsigned port;
	char *user_id;
	char *org_id;
	char *key;
	uint64_t rng;
	struct tsapi_limiter *limiter;
	struct tsapi_limiter *own_limiter; /* when the options named none */
	uint64_t requests;		   /* attempts sent, retries included */
	struct tsapi_options opt;
	uint32_t timeout_ms;
	struct response resp;
	char curl_error[CURL_ERROR_SIZE];
};

/* The attempt's verdict. */
enum verdict {
	V_DONE,
	V_RETRY,
	V_FAIL,
};

static void seterr(struct tsapi_error *err, enum tsapi_errc code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void seterr(struct tsapi_error *err, enum tsapi_errc code, const char *fmt, ...)
{
	va_list ap;

	if (!err)
		return;
	err->code = code;
	va_start(ap, fmt);
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
}

const char *tsapi_strerror(enum tsapi_errc code)
{
	switch (code) {
	case TSAPI_OK:
		return "success";
	case TSAPI_E_AUTH:
		return "authentication failed";
	case TSAPI_E_PERMISSION:
		return "permission denied";
	case TSAPI_E_NOT_FOUND:
		return "not found";
	case TSAPI_E_BAD_REQUEST:
		return "request rejected";
	case TSAPI_E_RATE_LIMITED:
		return "rate limited";
	case TSAPI_E_SERVER:
		return "server error";
	case TSAPI_E_TIMEOUT:
		return "timed out";
	case TSAPI_E_TRANSPORT:
		return "connection failed";
	case TSAPI_E_TLS:
		return "TLS failure";
	case TSAPI_E_BAD_RESPONSE:
		return "malformed response";
	case TSAPI_E_VERIFY:
		return "response signature did not verify";
	case TSAPI_E_ABORTED:
		return "stopped by the caller";
	case TSAPI_E_INTERNAL:
		return "internal error";
	case TSAPI_E_CANCELED:
		return "cancelled";
	case TSAPI_E_TOO_LONG:
		return "listing longer than max_pages";
	}
	return "unknown error";
}

static int errc_to_errno(enum tsapi_errc code)
{
	switch (code) {
	case TSAPI_OK:
		return 0;
	case TSAPI_E_AUTH:
		return -EACCES;
	case TSAPI_E_PERMISSION:
		return -EPERM;
	case TSAPI_E_NOT_FOUND:
		return -ENOENT;
	case TSAPI_E_BAD_REQUEST:
		return -EINVAL;
	case TSAPI_E_RATE_LIMITED:
		return -EBUSY;
	case TSAPI_E_SERVER:
		return -EIO;
	case TSAPI_E_TIMEOUT:
		return -ETIMEDOUT;
	case TSAPI_E_TRANSPORT:
		return -ECONNREFUSED;
	case TSAPI_E_TLS:
		return -EPROTO;
	case TSAPI_E_BAD_RESPONSE:
		return -EBADMSG;
	case TSAPI_E_VERIFY:
		return -EKEYREJECTED;
	case TSAPI_E_ABORTED:
		return -ECANCELED;
	case TSAPI_E_INTERNAL:
		return -ENOMEM;
	case TSAPI_E_CANCELED:
		return -ECANCELED;
	case TSAPI_E_TOO_LONG:
		return -E2BIG;
	}
	return -EIO;
}

/* ---- rate limiter ---------------------------------------------------------------------- */

static void limiter_set(struct tsapi_limiter *l, uint32_t per_minute, uint32_t burst)
{
	uint32_t b = burst ? burst : per_minute / 10;

	if (b < 1)
		b = 1;
	if (!burst && b > 10)
		b = 10;
	if (b > per_minute)
		b = per_minute;
	l->per_minute = per_minute;
	l->interval_us = 61000000LL / (per_minute + 1 - b);
	l->tolerance_us = (int64_t)(b - 1) * l->interval_us;
}

int tsapi_limiter_new(uint32_t per_minute, uint32_t burst, struct tsapi_limiter **ret)
{
	struct tsapi_limiter *l;

	if (per_minute == 0)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	if (pthread_mutex_init(&l->lock, NULL) != 0) {
		free(l);
		return -ENOMEM;
	}
	limiter_set(l, per_minute, burst);
	*ret = l;
	return 0;
}

void tsapi_limiter_free(struct tsapi_limiter *l)
{
	if (!l)
		return;
	pthread_mutex_destroy(&l->lock);
	free(l);
}

int tsapi_limiter_configure(struct tsapi_limiter *l, uint32_t per_minute, uint32_t burst)
{
	if (!l || per_minute == 0)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	limiter_set(l, per_minute, burst);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

static int64_t limiter_clock_offset(struct tsapi_limiter *l)
{
	int64_t v;

	pthread_mutex_lock(&l->lock);
	v = l->clock_offset;
	pthread_mutex_unlock(&l->lock);
	return v;
}

static void limiter_set_clock_offset(struct tsapi_limiter *l, int64_t seconds)
{
	pthread_mutex_lock(&l->lock);
	l->clock_offset = seconds;
	pthread_mutex_unlock(&l->lock);
}

int64_t tsapi_limiter_reserve(struct tsapi_limiter *l, int64_t now_ms)
{
	int64_t now = now_ms * 1000, send;

	pthread_mutex_lock(&l->lock);
	if (!l->started || l->tat_us < now)
		l->tat_us = now;
	l->started = true;
	send = l->tat_us - l->tolerance_us;
	if (send < now)
		send = now;
	l->tat_us += l->interval_us;
	if (l->n == LIMITER_RING) {
		l->head = (l->head + 1) % LIMITER_RING;
		l->n--;
	}
	l->sent_ms[(l->head + l->n++) % LIMITER_RING] = send / 1000;
	pthread_mutex_unlock(&l->lock);
	return (send - now + 999) / 1000;
}

uint32_t tsapi_limiter_left(struct tsapi_limiter *l, int64_t now_ms)
{
	uint32_t left;

	pthread_mutex_lock(&l->lock);
	while (l->n && l->sent_ms[l->head] <= now_ms - 60000) {
		l->head = (l->head + 1) % LIMITER_RING;
		l->n--;
	}
	left = l->n < l->per_minute ? l->per_minute - (uint32_t)l->n : 0;
	pthread_mutex_unlock(&l->lock);
	return left;
}

void tsapi_limiter_hold(struct tsapi_limiter *l, int64_t now_ms, int64_t ms)
{
	int64_t until;

	if (ms <= 0)
		return;
	pthread_mutex_lock(&l->lock);
	until = (now_ms + ms) * 1000 + l->tolerance_us;
	if (!l->started || l->tat_us < until)
		l->tat_us = until;
	l->started = true;
	pthread_mutex_unlock(&l->lock);
}

/* ---- client ---------------------------------------------------------------------------- */

/* Every wait watches the cancel handle. */
static int wait_ms(struct tsapi *api, int64_t ms)
{
	return cancel_sleep(api->opt.cancel, ms);
}

/* libcurl asks several times a second while a transfer runs: a fired handle aborts it. */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return cancel_fired(ud) ? 1 : 0;
}

static uint64_t rng_next(struct tsapi *api)
{
	uint64_t x = api->rng; /* xorshift64*: jitter only, not security */

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	api->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

int tsapi_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void tsapi_global_cleanup(void)
{
	curl_global_cleanup();
}

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	struct response *resp = ud;

	if (buf_append(&resp->body, data, size * n) < 0) {
		resp->too_large = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	return size * n;
}

static void copy_value(char *out, size_t size, const char *v, size_t len)
{
	while (len > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		len--;
	}
	while (len > 0 && (v[len - 1] == '\r' || v[len - 1] == '\n' || v[len - 1] == ' '))
		len--;
	if (len >= size)
		len = size - 1; /* too long to be valid: truncated, it will not verify */
	memcpy(out, v, len);
	out[len] = '\0';
}

static bool header_is(const char *line, size_t len, const char *name, const char **ret_value,
		      size_t *ret_len)
{
	size_t n = strlen(name);

	if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
		return false;
	*ret_value = line + n + 1;
	*ret_len = len - n - 1;
	return true;
}

void tsapi_headers_reset(struct tsapi_headers *h)
{
	h->reset_ms = -1;
	h->www_authenticate[0] = h->server_authorization[0] = '\0';
	h->content_type[0] = '\0';
}

void tsapi_header_line(struct tsapi_headers *h, const char *line, size_t len)
{
	size_t vlen;
	const char *v;
	char tmp[64];
	uint64_t u;

	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0) { /* a new response (e.g. after 100) */
		tsapi_headers_reset(h);
	} else if (header_is(line, len, "WWW-Authenticate", &v, &vlen)) {
		copy_value(h->www_authenticate, sizeof(h->www_authenticate), v, vlen);
	} else if (header_is(line, len, "Server-Authorization", &v, &vlen)) {
		copy_value(h->server_authorization, sizeof(h->server_authorization), v, vlen);
	} else if (header_is(line, len, "Content-Type", &v, &vlen)) {
		copy_value(h->content_type, sizeof(h->content_type), v, vlen);
	} else if (header_is(line, len, "x-rate-limit-reset", &v, &vlen)) {
		copy_value(tmp, sizeof(tmp), v, vlen);
		if (parse_u64(tmp, 0, INT32_MAX, &u) == 0)
			h->reset_ms = (int64_t)u;
	} else if (header_is(line, len, "Retry-After", &v, &vlen) && h->reset_ms < 0) {
		copy_value(tmp, sizeof(tmp), v, vlen);
		if (parse_u64(tmp, 0, 86400, &u) == 0)
			h->reset_ms = (int64_t)u * 1000;
	}
}

static size_t on_header(char *line, size_t size, size_t n, void *ud)
{
	struct response *resp = ud;
	size_t len = size * n;

	resp->header_bytes += len;
	if (resp->header_bytes > TSAPI_HEADERS_MAX) {
		resp->headers_too_large = true;
		return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
	}
	tsapi_header_line(&resp->h, line, len);
	return len;
}

/* Splits the configured origin into what Hawk signs: host (as in the URL) and port. */
static int parse_origin(struct tsapi *api, const char *url, struct tsapi_error *err)
{
	CURLU *u = curl_url();
	char *host = NULL, *port = NULL;
	uint64_t p;
	int r = -EINVAL;

	if (!u) {
		seterr(err, TSAPI_E_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
	    parse_u64(port, 1, 65535, &p) < 0) {
		seterr(err, TSAPI_E_INTERNAL, "api_url %s: cannot parse host and port", url);
		goto out;
	}
	api->host = strdup(host);
	if (!api->host) {
		seterr(err, TSAPI_E_INTERNAL, "out of memory");
		r = -ENOMEM;
		goto out;
	}
	api->port = (unsigned)p;
	r = 0;
out:
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
	return r;
}

static int setup_curl(struct tsapi *api, const struct config *c)
{
	long timeout = (long)api->timeout_ms;
	long connect = timeout < 10000 ? timeout : 10000;
	CURL *h = api->curl;

	if (curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_REDIR_PROTOCOLS_STR, "https") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    /* Send the path exactly as signed: no dot-segment squashing. */
	    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)api->opt.max_response) !=
		    CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_USERAGENT, "tsgraphd/" TSGRAPHD_VERSION) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEDATA, &api->resp) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HEADERDATA, &api->resp) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_NOPROGRESS, api->opt.cancel ? 0L : 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_XFERINFODATA, api->opt.cancel) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, api->curl_error) != CURLE_OK)
		return -EINVAL;
	/* A private CA replaces the system store rather than joining it. */
	if (c->ts.api_ca_file &&
	    (curl_easy_setopt(h, CURLOPT_CAINFO, c->ts.api_ca_file) != CURLE_OK ||
	     curl_easy_setopt(h, CURLOPT_CAPATH, NULL) != CURLE_OK))
		return -EINVAL;
	return 0;
}

int tsapi_new(const struct config *c, const struct tsapi_options *opt, struct tsapi **ret,
	      struct tsapi_error *err)
{
	struct tsapi *api = NULL;
	size_t len;
	int r;

	if (err)
		memset(err, 0, sizeof(*err));
	if (!c || !c->ts.api_url || !c->ts.user_id || !c->ts.api_key || !c->ts.rate_limit) {
		seterr(err, TSAPI_E_INTERNAL, "incomplete [threatstack] configuration");
		return -EINVAL;
	}
	api = calloc(1, sizeof(*api));
	if (!api)
		goto nomem;
	if (opt)
		api->opt = *opt;
	if (!api->opt.max_attempts)
		api->opt.max_attempts = 5;
	if (!api->opt.backoff_base_ms)
		api->opt.backoff_base_ms = 500;
	if (!api->opt.backoff_max_ms)
		api->opt.backoff_max_ms = 30000;
	if (!api->opt.reset_max_ms)
		api->opt.reset_max_ms = 60000;
	if (!api->opt.retry_budget_ms)
		api->opt.retry_budget_ms = 300000;
	if (!api->opt.max_response)
		api->opt.max_response =
			c->ts.max_response ? (size_t)c->ts.max_response : TSAPI_MAX_RESPONSE;
	if (!api->opt.max_pages)
		api->opt.max_pages = c->ts.max_pages ? c->ts.max_pages : TSAPI_MAX_PAGES;
	api->timeout_ms = api->opt.timeout_ms ? api->opt.timeout_ms
			  : c->ts.timeout     ? c->ts.timeout * 1000u
					      : 30000u;
	/* No limiter named (a one-shot check): one of its own, from the configuration. */
	if (!api->opt.limiter && tsapi_limiter_new(c->ts.rate_limit, 0, &api->own_limiter) < 0)
		goto nomem;
	api->limiter = api->opt.limiter ? api->opt.limiter : api->own_limiter;
	buf_init(&api->resp.body, api->opt.max_response);
	if (getrandom(&api->rng, sizeof(api->rng), 0) != sizeof(api->rng))
		api->rng = (uint64_t)monotonic_ms();
	api->rng |= 1;

	api->base = strdup(c->ts.api_url);
	api->user_id = strdup(c->ts.user_id);
	api->org_id = xstrdup_or_null(c->ts.org_id);
	api->key = strdup(c->ts.api_key);
	if (!api->base || !api->user_id || (c->ts.org_id && !api->org_id) || !api->key)
		goto nomem;
	len = strlen(api->base);
	while (len > 0 && api->base[len - 1] == '/')
		api->base[--len] = '\0';
	r = parse_origin(api, api->base, err);
	if (r < 0)
		goto fail;
	api->curl = curl_easy_init();
	if (!api->curl)
		goto nomem;
	r = setup_curl(api, c);
	if (r < 0) {
		seterr(err, TSAPI_E_INTERNAL, "libcurl refused an option (too old?)");
		goto fail;
	}
	*ret = api;
	return 0;
nomem:
	r = -ENOMEM;
	seterr(err, TSAPI_E_INTERNAL, "out of memory");
fail:
	tsapi_free(api);
	return r;
}

void tsapi_free(struct tsapi *api)
{
	if (!api)
		return;
	if (api->curl)
		curl_easy_cleanup(api->curl);
	if (api->key) {
		explicit_bzero(api->key, strlen(api->key));
		free(api->key);
	}
	free(api->base);
	free(api->host);
	free(api->user_id);
	free(api->org_id);
	buf_free(&api->resp.body);
	tsapi_limiter_free(api->own_limiter);
	free(api);
}

void tsapi_usage(struct tsapi *api, struct tsapi_usage *ret)
{
	*ret = (struct tsapi_usage){
		.requests = api->requests,
		.per_minute = api->limiter->per_minute,
		.left_this_minute = tsapi_limiter_left(api->limiter, monotonic_ms()),
	};
}

int64_t tsapi_clock_offset(const struct tsapi *api)
{
	return limiter_clock_offset(api->limiter);
}

void tsapi_server_said(const char *body, size_t len, char out[static TSAPI_SAID_MAX + 1])
{
	json_tokener *tok = NULL;
	json_object *root = NULL, *errors, *first;
	const char *s = NULL;
	size_t i;

	out[0] = '\0';
	if (len > 0 && len < SERVER_SAID_BODY_MAX && (tok = json_tokener_new()))
		root = json_tokener_parse_ex(tok, body, (int)len);
	if (root && json_object_object_get_ex(root, "errors", &errors) &&
	    json_object_is_type(errors, json_type_array) &&
	    (first = json_object_array_get_idx(errors, 0)) &&
	    json_object_is_type(first, json_type_string))
		s = json_object_get_string(first);
	for (i = 0; s && s[i] && i < TSAPI_SAID_MAX; i++)
		out[i] = isprint((unsigned char)s[i]) && s[i] != '"' ? s[i] : '?';
	out[i] = '\0';
	json_object_put(root);
	if (tok)
		json_tokener_free(tok);
}

/* "8 MiB", "512 KiB" or "1000 bytes": a limit as the configuration would spell it. */
static void format_size(size_t n, char out[static SIZE_TEXT_MAX])
{
	if (n >= 1024 * 1024 && n % (1024 * 1024) == 0)
		snprintf(out, SIZE_TEXT_MAX, "%zu MiB", n / (1024 * 1024));
	else if (n >= 1024 && n % 1024 == 0)
		snprintf(out, SIZE_TEXT_MAX, "%zu KiB", n / 1024);
	else
		snprintf(out, SIZE_TEXT_MAX, "%zu bytes", n);
}

static enum verdict classify_curl(const struct tsapi *api, CURLcode cc, enum tsapi_errc *code,
				  const char **why, char *whybuf, size_t whysize)
{
	const struct response *resp = &api->resp;
	char size[SIZE_TEXT_MAX];

	*why = curl_easy_strerror(cc);
	switch (cc) {
	case CURLE_OPERATION_TIMEDOUT:
		*code = TSAPI_E_TIMEOUT;
		return V_RETRY;
	case CURLE_SSL_CONNECT_ERROR:
		*code = TSAPI_E_TLS;
		return V_RETRY;
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_USE_SSL_FAILED:
		*code = TSAPI_E_TLS;
		return V_FAIL;
	case CURLE_WRITE_ERROR:
	case CURLE_FILESIZE_EXCEEDED:
		if (resp->headers_too_large) {
			*code = TSAPI_E_BAD_RESPONSE;
			format_size(TSAPI_HEADERS_MAX, size);
			snprintf(whybuf, whysize, "response headers larger than %s", size);
			*why = whybuf;
			return V_FAIL;
		}
		if (resp->too_large || cc == CURLE_FILESIZE_EXCEEDED) {
			*code = TSAPI_E_BAD_RESPONSE;
			format_size(api->opt.max_response, size);
			snprintf(whybuf, whysize, "response body larger than max_response (%s)",
				 size);
			*why = whybuf;
			return V_FAIL;
		}
		*code = TSAPI_E_INTERNAL;
		return V_FAIL;
	case CURLE_OUT_OF_MEMORY:
		/* libcurl reports a single header line over its own 100 KB limit as "out of
		 * memory"; once a status line arrived, that is what it was. */
		if (resp->header_bytes > 0 || strstr(api->curl_error, "header")) {
			*code = TSAPI_E_BAD_RESPONSE;
			*why = "a response header line is too large (libcurl refuses lines over "
			       "100 "
			       "KB)";
			return V_FAIL;
		}
		*code = TSAPI_E_INTERNAL;
		return V_FAIL;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_BAD_FUNCTION_ARGUMENT:
		*code = TSAPI_E_INTERNAL;
		return V_FAIL;
	default:
		*code = TSAPI_E_TRANSPORT;
		return V_RETRY;
	}
}

/* The delay before try number `attempt` + 1: min(max, base * 2^(attempt-1)), then a
 * uniformly random point in its upper half. */
static int64_t backoff(struct tsapi *api, unsigned attempt)
{
	int64_t d = api->opt.backoff_base_ms;

	for (unsigned i = 1; i < attempt && d < api->opt.backoff_max_ms; i++)
		d *= 2;
	if (d > api->opt.backoff_max_ms)
		d = api->opt.backoff_max_ms;
	return d / 2 + (int64_t)(rng_next(api) % (uint64_t)(d / 2 + 1));
}

struct req {
	const char *uri;   /* path?query as signed and sent */
	const char *label; /* "GET /v2/agents?status=online (page 2)" for messages */
	bool verify;	   /* require a verifying Server-Authorization */
};

/* One try: sign, send, collect. Returns the curl code; fills api->resp. */
static int perform(struct tsapi *api, const struct req *rq, const struct hawk_credentials *cred,
		   struct hawk_artifacts *art, CURLcode *ret_cc)
{
	struct hawk_request hr = {
		.method = "GET", .uri = rq->uri, .host = api->host, .port = api->port
	};
	char nonce[HAWK_NONCE_LEN + 1];
	struct curl_slist *headers = NULL, *tmp;
	_cleanup_free_ char *auth = NULL, *line = NULL, *url = NULL;
	int64_t ts;
	int r;

	r = hawk_nonce(nonce);
	if (r < 0)
		return r;
	ts = now_ms() / 1000 + limiter_clock_offset(api->limiter);
	r = hawk_header(cred, &hr, ts, nonce, &auth, art);
	if (r < 0)
		return r;
	if (asprintf(&line, "Authorization: %s", auth) < 0) {
		line = NULL;
		return -ENOMEM;
	}
	if (asprintf(&url, "%s%s", api->base, rq->uri) < 0) {
		url = NULL;
		return -ENOMEM;
	}
	headers = curl_slist_append(NULL, line);
	if (!headers)
		return -ENOMEM;
	tmp = curl_slist_append(headers, "Accept: application/json");
	if (!tmp) {
		r = -ENOMEM;
		goto out;
	}
	headers = tmp;

	buf_reset(&api->resp.body);
	api->resp.status = 0;
	api->resp.too_large = false;
	api->resp.headers_too_large = false;
	api->resp.header_bytes = 0;
	api->curl_error[0] = '\0';
	tsapi_headers_reset(&api->resp.h);
	if (curl_easy_setopt(api->curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(api->curl, CURLOPT_HTTPHEADER, headers) != CURLE_OK) {
		r = -EINVAL;
		goto out;
	}
	api->requests++;
	*ret_cc = curl_easy_perform(api->curl);
	curl_easy_getinfo(api->curl, CURLINFO_RESPONSE_CODE, &api->resp.status);
	curl_easy_setopt(api->curl, CURLOPT_HTTPHEADER, NULL);
	r = 0;
out:
	curl_slist_free_all(headers);
	return r;
}

/* What one try came to. */
struct outcome {
	enum verdict v;
	enum tsapi_errc code;
	const char *why; /* a reason to add to the message, or NULL */
	int64_t delay;	 /* ms before a retry; 0: the usual backoff */
	char whybuf[160];
};

/* An HTTP status (after a complete transfer) to a verdict. */
static void classify_status(struct tsapi *api, long st, unsigned attempt, struct outcome *o)
{
	o->v = V_FAIL;
	if (st >= 200 && st < 300) {
		o->v = V_DONE;
	} else if (st == 401) {
		o->code = TSAPI_E_AUTH;
	} else if (st == 403) {
		o->code = TSAPI_E_PERMISSION;
	} else if (st == 404) {
		o->code = TSAPI_E_NOT_FOUND;
	} else if (st == 429) {
		o->code = TSAPI_E_RATE_LIMITED;
		o->v = V_RETRY;
		/* The budget is the organization's: every client waits, not only us. */
		o->delay = api->resp.h.reset_ms < 0			  ? backoff(api, attempt)
			   : api->resp.h.reset_ms < api->opt.reset_max_ms ? api->resp.h.reset_ms
									  : api->opt.reset_max_ms;
		tsapi_limiter_hold(api->limiter, monotonic_ms(), o->delay);
	} else if (st >= 500 && st < 600) {
		o->code = TSAPI_E_SERVER;
		o->v = V_RETRY;
	} else if (st >= 300 && st < 400) {
		o->code = TSAPI_E_BAD_RESPONSE;
		o->why = "redirect not followed";
	} else if (st >= 400 && st < 500) {
		o->code = TSAPI_E_BAD_REQUEST;
	} else {
		o->code = TSAPI_E_BAD_RESPONSE;
		o->why = "unexpected HTTP status";
	}
}

/* A 2xx must carry a Server-Authorization that verifies when the request asks for it. */
static void verify_answer(struct tsapi *api, const struct req *rq,
			  const struct hawk_credentials *cred, const struct hawk_artifacts *art,
			  struct outcome *o)
{
	struct hawk_request hr = {
		.method = "GET", .uri = rq->uri, .host = api->host, .port = api->port
	};
	int r;

	if (!rq->verify && !api->opt.verify_responses)
		return;
	o->code = TSAPI_E_VERIFY;
	o->v = V_FAIL;
	if (!api->resp.h.server_authorization[0]) {
		o->why = "the answer carries no Server-Authorization header";
		return;
	}
	r = hawk_verify_response(cred, &hr, art, api->resp.h.server_authorization,
				 api->resp.h.content_type, api->resp.body.data, api->resp.body.len);
	if (r == 0) {
		o->code = TSAPI_OK;
		o->v = V_DONE;
		return;
	}
	snprintf(o->whybuf, sizeof(o->whybuf), "Server-Authorization does not verify (%s)",
		 r == -EACCES ? "wrong mac or hash" : "malformed header");
	o->why = o->whybuf;
}

/* The one-line message of a request that failed for good. */
static void describe_failure(const struct tsapi *api, const struct req *rq, const struct outcome *o,
			     const char *said, unsigned tries, struct tsapi_error *err)
{
	struct buf m;

	if (!err)
		return;
	buf_init(&m, sizeof(err->message) - 1);
	(void)buf_printf(&m, "%s: ", rq->label);
	if (api->resp.status > 0 && !o->why)
		(void)buf_printf(&m, "HTTP %ld ", api->resp.status);
	(void)buf_puts(&m, tsapi_strerror(o->code));
	if (o->why)
		(void)buf_printf(&m, ": %s", o->why);
	if (said[0])
		(void)buf_printf(&m, " (server said: %s)", said);
	if (tries > 1)
		(void)buf_printf(&m, " after %u tries", tries);
	seterr(err, o->code, "%s", m.data ? m.data : tsapi_strerror(o->code));
	buf_free(&m);
	err->http_status = api->resp.status;
	err->attempts = tries;
}

/* A 401 whose tsm verifies with our key: the server told us its time. */
static bool learn_clock(struct tsapi *api)
{
	int64_t offset;

	if (api->resp.status != 401 || !api->resp.h.www_authenticate[0] ||
	    hawk_verify_tsm(api->key, api->resp.h.www_authenticate, now_ms() / 1000, &offset) < 0)
		return false;
	limiter_set_clock_offset(api->limiter, offset);
	return true;
}

/* Runs one request with limiter, retries and classification. On success the answer is in
 * api->resp (status 2xx). */
static int request(struct tsapi *api, const struct req *rq, struct tsapi_error *err)
{
	struct hawk_credentials cred = { .id = api->user_id, .key = api->key, .ext = api->org_id };
	int64_t start = monotonic_ms();
	bool skew_retried = false;
	char said[TSAPI_SAID_MAX + 1] = "";
	unsigned attempt = 0, tries = 0;
	struct outcome o;
	int r;

	for (;;) {
		struct hawk_artifacts art;
		CURLcode cc = CURLE_OK;

		attempt++;
		tries++;
		if (api->opt.before_request) {
			int64_t t0 = monotonic_ms();

			api->opt.before_request(api->opt.before_request_userdata);
			start += monotonic_ms() - t0; /* the hook's time is not this request's */
		}
		r = wait_ms(api, tsapi_limiter_reserve(api->limiter, monotonic_ms()));
		if (r == 0)
			r = perform(api, rq, &cred, &art, &cc);
		if (r == 0 && cc == CURLE_ABORTED_BY_CALLBACK)
			r = -ECANCELED;
		if (r < 0)
			break;
		if (api->opt.on_response)
			api->opt.on_response(cc == CURLE_OK ? api->resp.status : 0,
					     api->opt.response_userdata);
		o = (struct outcome){ .code = TSAPI_OK };
		said[0] = '\0';
		if (cc != CURLE_OK)
			o.v = classify_curl(api, cc, &o.code, &o.why, o.whybuf, sizeof(o.whybuf));
		else
			classify_status(api, api->resp.status, attempt, &o);
		if (cc == CURLE_OK && api->resp.status >= 400)
			tsapi_server_said(api->resp.body.data, api->resp.body.len, said);
		if (o.code == TSAPI_E_AUTH && !skew_retried && learn_clock(api)) {
			skew_retried = true;
			attempt--; /* a free retry: it does not count against the budget */
			continue;
		}
		if (o.v == V_DONE)
			verify_answer(api, rq, &cred, &art, &o);
		if (o.v == V_DONE)
			return 0;
		if (o.v != V_RETRY || attempt >= api->opt.max_attempts)
			break;
		if (o.delay == 0)
			o.delay = backoff(api, attempt);
		/* The next try must be able to finish inside the budget, not just start. */
		if (monotonic_ms() + o.delay + (int64_t)api->timeout_ms - start >
		    (int64_t)api->opt.retry_budget_ms)
			break;
		r = wait_ms(api, o.delay);
		if (r < 0)
			break;
	}
	if (r == -ECANCELED) {
		seterr(err, TSAPI_E_CANCELED, "%s: cancelled", rq->label);
	} else if (r < 0) {
		seterr(err, TSAPI_E_INTERNAL, "%s: cannot build the request: %s", rq->label,
		       strerror(-r));
	} else {
		describe_failure(api, rq, &o, said, tries, err);
		return errc_to_errno(o.code);
	}
	if (err)
		err->attempts = tries;
	return r;
}

int tsapi_self_test(struct tsapi *api, struct tsapi_error *err)
{
	struct req rq = { .uri = "/help/hawk/self-test",
			  .label = "GET /help/hawk/self-test",
			  .verify = true };

	if (err)
		memset(err, 0, sizeof(*err));
	return request(api, &rq, err);
}

/* ---- listings -------------------------------------------------------------------------- */

/* What parsing one answer may cost: twice the body it came from (tsjson's estimate). */
static size_t parse_budget(const struct tsapi *api)
{
	return api->opt.max_response * 2;
}

/* A body tsjson refused: BAD_RESPONSE (out of memory: INTERNAL), -EBADMSG to the caller. A
 * body too dense for the parse budget says which setting sets it. */
static int parse_failed(const struct tsapi *api, struct tsapi_error *err, int r, const char *label,
			const char *perr)
{
	char size[SIZE_TEXT_MAX];

	if (r == -ENOMEM) {
		seterr(err, TSAPI_E_INTERNAL, "%s: %s", label, perr[0] ? perr : "out of memory");
		return r;
	}
	if (r == -E2BIG) {
		format_size(api->opt.max_response, size);
		seterr(err, TSAPI_E_BAD_RESPONSE, "%s: %s, i.e. twice max_response (%s)", label,
		       perr, size);
	} else {
		seterr(err, TSAPI_E_BAD_RESPONSE, "%s: %s", label, perr);
	}
	return -EBADMSG;
}

struct tokset {
	uint64_t *v;
	size_t cap, n;
};

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
	return h ? h : 1;
}

/* 1 when h was already present, 0 when added. */
static int tokset_add(struct tokset *t, uint64_t h)
{
	size_t i;

	if ((t->n + 1) * 2 > t->cap) {
		size_t ncap = t->cap ? t->cap * 2 : 64;
		uint64_t *nv = calloc(ncap, sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		for (size_t j = 0; j < t->cap; j++) {
			if (!t->v[j])
				continue;
			for (i = t->v[j] & (ncap - 1); nv[i]; i = (i + 1) & (ncap - 1))
				;
			nv[i] = t->v[j];
		}
		free(t->v);
		t->v = nv;
		t->cap = ncap;
	}
	for (i = h & (t->cap - 1); t->v[i]; i = (i + 1) & (t->cap - 1))
		if (t->v[i] == h)
			return 1;
	t->v[i] = h;
	t->n++;
	return 0;
}

/* Parses one item and lends it to the caller; returns 0, -EBADMSG (err in perr) or what the
 * callback returned. */
typedef int (*item_fn)(json_object *item, void *ctx, char perr[static TSJSON_ERR_MAX]);

struct listing {
	const char *path_query; /* "/v2/agents?status=online", escaped */
	const char *collection;
	bool not_found_is_empty;
	item_fn item;
	void *ctx;
};

/* The path of a page: the listing's, with the continuation token (escaped) after the first. */
static char *page_uri(struct tsapi *api, const struct listing *ls, const char *token)
{
	char *uri = NULL, *esc;

	if (!token)
		return strdup(ls->path_query);
	esc = curl_easy_escape(api->curl, token, 0);
	if (!esc || asprintf(&uri, "%s%stoken=%s", ls->path_query,
			     strchr(ls->path_query, '?') ? "&" : "?", esc) < 0)
		uri = NULL;
	curl_free(esc);
	return uri;
}

/* Each item of a page, parsed and lent to the listing's callback. */
static int deliver_items(const struct listing *ls, json_object *items, const char *label,
			 struct tsapi_error *err)
{
	size_t n = items ? json_object_array_length(items) : 0;
	char perr[TSJSON_ERR_MAX];

	for (size_t i = 0; i < n; i++) {
		int r = ls->item(json_object_array_get_idx(items, i), ls->ctx, perr);

		if (r == -EBADMSG && perr[0]) {
			seterr(err, TSAPI_E_BAD_RESPONSE, "%s: item %zu: %s", label, i, perr);
			return r;
		}
		if (r < 0) {
			seterr(err, r == -ENOMEM ? TSAPI_E_INTERNAL : TSAPI_E_ABORTED, "%s: %s",
			       label, r == -ENOMEM ? "out of memory" : "stopped by the callback");
			return r;
		}
	}
	return 0;
}

static int list_pages(struct tsapi *api, const struct listing *ls, struct tsapi_error *err)
{
	_cleanup_free_ char *token = NULL;
	struct tokset seen = { 0 };
	char perr[TSJSON_ERR_MAX];
	json_object *root = NULL;
	unsigned page;
	int r = 0;

	if (err)
		memset(err, 0, sizeof(*err));
	for (page = 1;; page++) {
		_cleanup_free_ char *uri = NULL;
		char label[LABEL_MAX];
		json_object *items = NULL;
		const char *next = NULL;

		if (page > api->opt.max_pages) {
			seterr(err, TSAPI_E_TOO_LONG,
			       "GET %s: still more pages after %u (max_pages); listing stopped, "
			       "incomplete",
			       ls->path_query, api->opt.max_pages);
			r = -E2BIG;
			goto out;
		}
		if (!(uri = page_uri(api, ls, token))) {
			seterr(err, TSAPI_E_INTERNAL, "GET %s: out of memory", ls->path_query);
			r = -ENOMEM;
			goto out;
		}
		snprintf(label, sizeof(label), "GET %s (page %u)", ls->path_query, page);
		r = request(api, &(struct req){ .uri = uri, .label = label }, err);
		if (r == -ENOENT && ls->not_found_is_empty && page == 1) {
			if (err)
				memset(err, 0, sizeof(*err));
			r = 0;
			goto out;
		}
		if (r < 0)
			goto out;
		r = tsjson_page(api->resp.body.data, api->resp.body.len, parse_budget(api),
				ls->collection, &root, &items, &next, perr);
		if (r < 0) {
			r = parse_failed(api, err, r, label, perr);
			goto out;
		}
		r = deliver_items(ls, items, label, err);
		if (r < 0 || !next)
			goto out;
		r = tokset_add(&seen, fnv1a(next));
		if (r != 0) {
			seterr(err, r < 0 ? TSAPI_E_INTERNAL : TSAPI_E_BAD_RESPONSE, "%s: %s",
			       label, r < 0 ? "out of memory" : "pagination token repeated (loop)");
			r = r < 0 ? r : -EBADMSG;
			goto out;
		}
		free(token);
		token = strdup(next);
		json_object_put(root);
		root = NULL;
		if (!token) {
			seterr(err, TSAPI_E_INTERNAL, "%s: out of memory", label);
			r = -ENOMEM;
			goto out;
		}
	}
out:
	json_object_put(root);
	free(seen.v);
	return r;
}

/* Typed adapters between list_pages and the caller's callback, one per object kind: parse
 * the item, lend it to the callback, free what the callback left. A negative return from
 * the caller's callback stops the listing; perr is cleared first so list_pages tells it
 * apart from a parse error. */
#define ITEM_ADAPTER(kind, type, parse, release)                                            \
	struct kind##_ctx {                                                                 \
		int (*cb)(struct type *, void *);                                           \
		void *ud;                                                                   \
	};                                                                                  \
	static int kind##_item(json_object *o, void *ctx, char perr[static TSJSON_ERR_MAX]) \
	{                                                                                   \
		struct kind##_ctx *c = ctx;                                                 \
		struct type item;                                                           \
		int r = parse(o, &item, perr);                                              \
                                                                                            \
		if (r < 0)                                                                  \
			return r;                                                           \
		perr[0] = '\0';                                                             \
		r = c->cb(&item, c->ud);                                                    \
		release(&item);                                                             \
		return r < 0 ? r : 0;                                                       \
	}

ITEM_ADAPTER(agent, ts_agent, tsjson_agent, ts_agent_free)
ITEM_ADAPTER(vuln, ts_vuln, tsjson_vuln, ts_vuln_free)
ITEM_ADAPTER(server, ts_server, tsjson_server, ts_server_free)
ITEM_ADAPTER(alert, ts_alert, tsjson_alert, ts_alert_free)

/* "prefix" + escaped(arg) + "suffix", malloc'd. */
static char *build_path(struct tsapi *api, const char *prefix, const char *arg, const char *suffix)
{
	char *esc, *out = NULL;

	/* "." and ".." survive escaping and would name another resource than the one asked. */
	if (strcmp(arg, ".") == 0 || strcmp(arg, "..") == 0)
		return NULL;
	esc = curl_easy_escape(api->curl, arg, 0);

	if (esc && asprintf(&out, "%s%s%s", prefix, esc, suffix) < 0)
		out = NULL;
	curl_free(esc);
	return out;
}

static int bad_arg(struct tsapi_error *err, const char *what)
{
	if (err) {
		memset(err, 0, sizeof(*err));
		seterr(err, TSAPI_E_INTERNAL, "%s", what);
	}
	return -EINVAL;
}

int tsapi_list_agents(struct tsapi *api, const char *status,
		      int (*cb)(struct ts_agent *a, void *ud), void *ud, struct tsapi_error *err)
{
	struct agent_ctx c = { cb, ud };
	_cleanup_free_ char *pq = NULL;

	if (!status || !*status || !cb)
		return bad_arg(err, "list agents: status and callback are required");
	pq = build_path(api, "/v2/agents?status=", status, "");
	if (!pq)
		return bad_arg(err, "list agents: out of memory");
	return list_pages(
		api,
		&(struct listing){
			.path_query = pq, .collection = "agents", .item = agent_item, .ctx = &c },
		err);
}

int tsapi_list_vulns(struct tsapi *api, int (*cb)(struct ts_vuln *v, void *ud), void *ud,
		     struct tsapi_error *err)
{
	struct vuln_ctx c = { cb, ud };

	if (!cb)
		return bad_arg(err, "list vulnerabilities: callback required");
	return list_pages(api,
			  &(struct listing){ .path_query = "/v2/vulnerabilities?status=active",
					     .collection = "cves",
					     .item = vuln_item,
					     .ctx = &c },
			  err);
}

int tsapi_list_cve_servers(struct tsapi *api, const char *cve,
			   int (*cb)(struct ts_server *s, void *ud), void *ud,
			   struct tsapi_error *err)
{
	struct server_ctx c = { cb, ud };
	_cleanup_free_ char *pq = NULL;

	if (!cve || !*cve || !cb)
		return bad_arg(err, "list CVE servers: CVE and callback are required");
	pq = build_path(api, "/v2/vulnerabilities/", cve, "/servers");
	if (!pq)
		return bad_arg(err, "list CVE servers: not a usable CVE id (or out of memory)");
	return list_pages(api,
			  &(struct listing){ .path_query = pq,
					     .collection = "servers",
					     .not_found_is_empty = true,
					     .item = server_item,
					     .ctx = &c },
			  err);
}

int tsapi_list_alerts(struct tsapi *api, const char *status, int64_t from_ms, int64_t until_ms,
		      int (*cb)(struct ts_alert *a, void *ud), void *ud, struct tsapi_error *err)
{
	struct alert_ctx c = { cb, ud };
	char from[ISO8601_MS_MAX], until[ISO8601_MS_MAX], *st = NULL, *f = NULL, *u = NULL;
	_cleanup_free_ char *pq = NULL;

	if (!status || !*status || !cb || from_ms < 0 || until_ms < from_ms)
		return bad_arg(err, "list alerts: status, a window and a callback are required");
	format_iso8601_ms(from_ms, from);
	format_iso8601_ms(until_ms, until);
	st = curl_easy_escape(api->curl, status, 0);
	f = curl_easy_escape(api->curl, from, 0);
	u = curl_easy_escape(api->curl, until, 0);
	if (!st || !f || !u || asprintf(&pq, "/v2/alerts?status=%s&from=%s&until=%s", st, f, u) < 0)
		pq = NULL;
	curl_free(st);
	curl_free(f);
	curl_free(u);
	if (!pq)
		return bad_arg(err, "list alerts: out of memory");
	return list_pages(
		api,
		&(struct listing){
			.path_query = pq, .collection = "alerts", .item = alert_item, .ctx = &c },
		err);
}

/* GET prefix + escaped(id) and parse the whole body as one JSON object. *ret_label names the
 * request for the caller's own error messages (parsing the object). */
static int get_one(struct tsapi *api, const char *what, const char *prefix, const char *id,
		   json_object **ret_root, char ret_label[static LABEL_MAX],
		   struct tsapi_error *err)
{
	_cleanup_free_ char *pq = NULL;
	char perr[TSJSON_ERR_MAX], msg[64];
	json_object *root = NULL;
	int r;

	if (!id || !*id) {
		snprintf(msg, sizeof(msg), "get %s: id required", what);
		return bad_arg(err, msg);
	}
	pq = build_path(api, prefix, id, "");
	if (!pq) {
		snprintf(msg, sizeof(msg), "get %s: not a usable id (or out of memory)", what);
		return bad_arg(err, msg);
	}
	if (err)
		memset(err, 0, sizeof(*err));
	snprintf(ret_label, LABEL_MAX, "GET %s", pq);
	r = request(api, &(struct req){ .uri = pq, .label = ret_label }, err);
	if (r < 0)
		return r;
	r = tsjson_document(api->resp.body.data, api->resp.body.len, parse_budget(api), &root,
			    perr);
	if (r == 0)
		r = tsjson_errors(root, perr);
	if (r < 0) {
		json_object_put(root);
		return parse_failed(api, err, r, ret_label, perr);
	}
	*ret_root = root;
	return 0;
}

int tsapi_get_agent(struct tsapi *api, const char *id, struct ts_agent *ret,
		    struct tsapi_error *err)
{
	char label[LABEL_MAX], perr[TSJSON_ERR_MAX];
	json_object *root = NULL;
	int r = get_one(api, "agent", "/v2/agents/", id, &root, label, err);

	if (r < 0)
		return r;
	r = tsjson_agent(root, ret, perr);
	json_object_put(root);
	return r < 0 ? parse_failed(api, err, r, label, perr) : 0;
}

int tsapi_get_alert(struct tsapi *api, const char *id, struct ts_alert *ret,
		    struct tsapi_error *err)
{
	char label[LABEL_MAX], perr[TSJSON_ERR_MAX];
	json_object *root = NULL;
	int r = get_one(api, "alert", "/v2/alerts/", id, &root, label, err);

	if (r < 0)
		return r;
	r = tsjson_alert(root, ret, perr);
	json_object_put(root);
	return r < 0 ? parse_failed(api, err, r, label, perr) : 0;
}
