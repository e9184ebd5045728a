/* tsapi — the Threat Stack REST API v2 client: Hawk-signed GETs, pagination, rate limit,
 * retries, and the credential self-test.
 *
 * A struct tsapi owns one libcurl easy handle (connections are reused) and a copy of the
 * credentials it was created with; it is used by ONE thread at a time. Listings hand each
 * parsed object to a callback, one page in memory at a time. The object is lent to the
 * callback: it may move members out (setting them to NULL) and the rest is freed when the
 * callback returns. A callback returning a negative errno stops the listing, which then
 * returns that value with TSAPI_E_ABORTED.
 *
 * Memory: one answer's body is at most max_response bytes, and its parsed form is held to an
 * estimated 2 * max_response (tsjson_document's budget), so a client's peak is about three
 * times max_response whatever the server sends. A 200 page without its collection (or with
 * non-objects in it, or an "errors" member) is a malformed page, as is a single object
 * without its id.
 *
 * A listing that fails half-way (a malformed page, an error after retries, more than
 * max_pages pages) returns the error, but objects delivered for earlier pages stay delivered: a caller that needs a
 * complete enumeration (e.g. to derive deletions) must treat any failure as "incomplete".
 *
 * Rate limit: every request attempt (retries included) first takes a slot from a
 * struct tsapi_limiter, a token bucket that keeps any sliding 60 s window at or below the
 * configured requests per minute. The budget is the organization's: its owner (the sync
 * command, the daemon) creates one limiter from the config and names it in the options of
 * every client of that organization; a client given none makes a private one from the
 * config. The limiter also holds the clock offset. Limiter functions are thread-safe.
 * Every wait (the limiter, backoff, a reset) and every transfer watches the options'
 * cancel handle: a fired handle ends the request with TSAPI_E_CANCELED within a second.
 *
 * Errors: functions return 0 or a negative errno and, on failure, fill a struct tsapi_error
 * with a class (enum tsapi_errc) and a one-line message naming the request (method and
 * path), never credentials or the Authorization header.
 */
#ifndef TSGRAPHD_TSAPI_H
#define TSGRAPHD_TSAPI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsgraphd/cancel.h"
#include "tsgraphd/config.h"
#include "tsgraphd/hawk.h"
#include "tsgraphd/tsjson.h"

#define TSAPI_ERR_MAX	   512
#define TSAPI_MAX_RESPONSE CONFIG_MAX_RESPONSE_DEFAULT /* when neither options nor config say */
#define TSAPI_MAX_PAGES	   CONFIG_MAX_PAGES_DEFAULT
#define TSAPI_HEADERS_MAX  (64u * 1024) /* bytes of one answer's headers */

enum tsapi_errc {
	TSAPI_OK = 0,
	TSAPI_E_AUTH,	      /* 401: bad credentials or clock */
	TSAPI_E_PERMISSION,   /* 403 */
	TSAPI_E_NOT_FOUND,    /* 404 */
	TSAPI_E_BAD_REQUEST,  /* 400, 409 and other 4xx */
	TSAPI_E_RATE_LIMITED, /* 429, retries exhausted */
	TSAPI_E_SERVER,	      /* 5xx, retries exhausted */
	TSAPI_E_TIMEOUT,      /* no answer in time, retries exhausted */
	TSAPI_E_TRANSPORT,    /* connection refused/reset, DNS, retries exhausted */
	TSAPI_E_TLS,	      /* certificate or handshake failure (not retried) */
	TSAPI_E_BAD_RESPONSE, /* not JSON, wrong shape, too large, redirect, pagination loop */
	TSAPI_E_VERIFY,	      /* Server-Authorization missing or not verifying */
	TSAPI_E_ABORTED,      /* the callback stopped the listing */
	TSAPI_E_INTERNAL,     /* out of memory, bad arguments */
	TSAPI_E_CANCELED,     /* the cancel handle fired */
	TSAPI_E_TOO_LONG,     /* a listing still paging after max_pages pages */
};

struct tsapi_error {
	enum tsapi_errc code;
	long http_status; /* last HTTP status seen, 0 when none */
	unsigned attempts;
	char message[TSAPI_ERR_MAX];
};

struct tsapi;
struct tsapi_limiter;

/* Tuning; zero fields take the defaults in brackets. Tests shrink the delays. */
struct tsapi_options {
	struct tsapi_limiter *limiter; /* [a private one from the config] not owned */
	struct cancel *cancel;	       /* [none] every wait and transfer stops when it fires */
	unsigned max_attempts;	       /* [5] tries per request, the first included */
	uint32_t backoff_base_ms;      /* [500] first backoff; doubles, with jitter */
	uint32_t backoff_max_ms;       /* [30000] longest single backoff */
	uint32_t reset_max_ms;	       /* [60000] cap on an x-rate-limit-reset wait */
	uint32_t retry_budget_ms;      /* [300000] total time one request may take, retries in */
	uint32_t timeout_ms;	       /* [config ts.timeout] total time of one try */
	size_t max_response;	       /* [config max_response] bytes of one answer's body */
	unsigned max_pages;	       /* [config max_pages] pages of one listing */
	bool verify_responses;	       /* [false] require a valid Server-Authorization on all */
	/* [none] after every try that got an answer (its HTTP status) or none (0: timeout,
	 * refused, TLS...), from the thread using the client: the daemon's metrics. */
	void (*on_response)(long http_status, void *userdata);
	void *response_userdata;
	/* [none] before each try takes its turn at the limiter, from the thread using the
	 * client: the daemon runs webhook refreshes (through another client of the same
	 * limiter) ahead of a full sync's next request. It must not use this client. */
	void (*before_request)(void *userdata);
	void *before_request_userdata;
};

const char *tsapi_strerror(enum tsapi_errc code);

/* The limiter: a token bucket of `burst` requests refilled so that no sliding 60 s window
 * sees more than per_minute requests (a second of margin is kept). burst 0: a default of
 * per_minute/10 clamped to 1..10. */
int tsapi_limiter_new(uint32_t per_minute, uint32_t burst, struct tsapi_limiter **ret);
void tsapi_limiter_free(struct tsapi_limiter *l);
int tsapi_limiter_configure(struct tsapi_limiter *l, uint32_t per_minute, uint32_t burst);
/* Takes the next slot at time now_ms (any monotonic clock) and returns how many ms the
 * caller must wait before sending. Pure bookkeeping: nothing sleeps. */
int64_t tsapi_limiter_reserve(struct tsapi_limiter *l, int64_t now_ms);
/* What is left of the last 60 s's budget at now_ms (the clock reserve() is given). */
uint32_t tsapi_limiter_left(struct tsapi_limiter *l, int64_t now_ms);
/* Holds every later slot back until now_ms + ms (after a 429 with a reset). */
void tsapi_limiter_hold(struct tsapi_limiter *l, int64_t now_ms, int64_t ms);

/* libcurl's global set-up and tear-down: main calls them once, before and after any thread
 * (curl_global_init is not thread-safe). */
int tsapi_global_init(void);
void tsapi_global_cleanup(void);

/* c must outlive nothing: what the client needs is copied. opt may be NULL. */
int tsapi_new(const struct config *c, const struct tsapi_options *opt, struct tsapi **ret,
	      struct tsapi_error *err);
void tsapi_free(struct tsapi *api);
/* For progress lines: requests this client sent (retries included) and its organization's
 * budget, per minute and what is left of the current minute. */
struct tsapi_usage {
	uint64_t requests;
	uint32_t per_minute;
	uint32_t left_this_minute;
};
void tsapi_usage(struct tsapi *api, struct tsapi_usage *ret);
/* Seconds added to the local clock for Hawk timestamps (learnt from a 401 tsm); kept in the
 * limiter, so every client of the organization signs with it. */
int64_t tsapi_clock_offset(const struct tsapi *api);

/* GET /help/hawk/self-test, requiring a Server-Authorization that verifies. */
int tsapi_self_test(struct tsapi *api, struct tsapi_error *err);

int tsapi_list_agents(struct tsapi *api, const char *status,
		      int (*cb)(struct ts_agent *a, void *ud), void *ud, struct tsapi_error *err);
/* GET /v2/vulnerabilities?status=active */
int tsapi_list_vulns(struct tsapi *api, int (*cb)(struct ts_vuln *v, void *ud), void *ud,
		     struct tsapi_error *err);
/* GET /v2/vulnerabilities/{cve}/servers; a 404 is an empty listing. */
int tsapi_list_cve_servers(struct tsapi *api, const char *cve,
			   int (*cb)(struct ts_server *s, void *ud), void *ud,
			   struct tsapi_error *err);
/* GET /v2/alerts?status=...&from=...&until=... (ms since the epoch, sent as ISO-8601 UTC). */
int tsapi_list_alerts(struct tsapi *api, const char *status, int64_t from_ms, int64_t until_ms,
		      int (*cb)(struct ts_alert *a, void *ud), void *ud, struct tsapi_error *err);
/* Single objects; *ret is filled only on success and freed with ts_*_free(). */
int tsapi_get_agent(struct tsapi *api, const char *id, struct ts_agent *ret,
		    struct tsapi_error *err);
int tsapi_get_alert(struct tsapi *api, const char *id, struct ts_alert *ret,
		    struct tsapi_error *err);

/* --- one answer's headers and error body, without HTTP (the client uses these; so do the
 * unit tests and tests/fuzz/fuzz_tsapi_answer.c). Both read untrusted bytes. --- */

#define TSAPI_HEADER_VALUE_MAX 1024 /* a kept header value, its NUL included */
#define TSAPI_SAID_MAX	       120  /* characters of an error message quoted from a body */

/* What the client keeps of an answer's headers: what Hawk checks, and when to retry. */
struct tsapi_headers {
	int64_t reset_ms; /* x-rate-limit-reset (ms), else Retry-After (s, in ms); -1: absent */
	char www_authenticate[TSAPI_HEADER_VALUE_MAX];	   /* "" when absent */
	char server_authorization[TSAPI_HEADER_VALUE_MAX]; /* "" when absent */
	char content_type[HAWK_MEDIA_TYPE_MAX];		   /* what hawk_payload_hash() reads */
};

/* No header seen yet. */
void tsapi_headers_reset(struct tsapi_headers *h);
/* Reads one header line as libcurl hands it over: len bytes of anything, not NUL-terminated,
 * CRLF included. A status line ("HTTP/...") starts a new answer (h reset); the headers of
 * struct tsapi_headers are kept, their values trimmed of blanks and CRLF and cut to fit (a
 * cut Hawk header does not verify); a number that does not parse (an HTTP-date Retry-After
 * included) is ignored; any other line is ignored. Never reads past line + len. */
void tsapi_header_line(struct tsapi_headers *h, const char *line, size_t len);
/* The first string of an {"errors":["...",...]} body of 1 byte to 64 KiB, for an error
 * message: at most TSAPI_SAID_MAX characters, each printable ASCII other than '"' (anything
 * else is '?'); "" when the body is not that shape. body need not be NUL-terminated. */
void tsapi_server_said(const char *body, size_t len, char out[static TSAPI_SAID_MAX + 1]);

#endif
