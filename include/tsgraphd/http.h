/* http — outbound HTTP(S) for the sinks: one libcurl easy handle (connections kept alive)
 * with the hardening tsapi uses (TLS 1.2 or newer, peer and host verified, an optional CA
 * file, no redirects, https only except to loopback by the config's rule), a bounded
 * answer, and transfers and waits that end when the cancel handle fires.
 *
 * A request either gets an HTTP answer (any status: 0, with resp filled) or fails (a negative
 * errno, and always one line in err: -ETIMEDOUT, -ECONNREFUSED for a refused or unreachable
 * peer, -EPROTO for TLS, -EMSGSIZE for an answer over max_response or headers over
 * HTTP_HEADERS_MAX unless discard_body_over_max, -ENOMEM, -ECANCELED when the handle fired). Whether to retry is the caller's policy;
 * http_retryable() and http_backoff_ms() are the usual one.
 *
 * Ownership: struct http owns its curl handle and the last answer's body; http_free()
 * accepts NULL. It borrows the cancel handle. curl_global_init() is main's (tsapi_global_init).
 * Threads: one struct http per thread.
 */
#ifndef TSGRAPHD_HTTP_H
#define TSGRAPHD_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsgraphd/cancel.h"
#include "tsgraphd/util.h"

#define HTTP_ERR_MAX	  256
#define HTTP_HEADERS_MAX  (64u * 1024) /* all header lines of one answer */
#define HTTP_BACKOFF_BASE 500	       /* ms before the first retry */
#define HTTP_BACKOFF_CAP  60000	       /* ms, the longest wait between two tries */

struct http_options {
	const char *ca_file;	/* NULL: the system's CAs */
	uint32_t timeout_s;	/* one whole request, connect included */
	size_t max_response;	/* bytes of one answer's body */
	struct cancel *cancel;	/* may be NULL */
	const char *user_agent; /* NULL: tsgraphd/VERSION */
	/* An answer whose body is over max_response (or whose headers are over
	 * HTTP_HEADERS_MAX) is still an answer: the body's first max_response - 1 bytes are
	 * kept (body_cut set), the rest is read and dropped, header lines past the bound are
	 * not looked at. For callers that need only the status (a webhook receiver's 200 with
	 * a big page must not make the change go again). */
	bool discard_body_over_max;
};

struct http_response {
	long status;
	int64_t retry_after_ms; /* Retry-After in ms, -1 when absent */
	const char *body;	/* NUL-terminated, valid until the next request or http_free */
	size_t body_len;
	bool body_cut; /* discard_body_over_max dropped the body's tail */
};

struct http;

int http_new(const struct http_options *opt, struct http **ret);
void http_free(struct http *h);
/* method "GET" or "POST" (then body/len are sent); headers: NULL-terminated "Name: value"
 * lines, or NULL. */
int http_request(struct http *h, const char *method, const char *url, const char *const *headers,
		 const char *body, size_t len, struct http_response *resp,
		 char err[static HTTP_ERR_MAX]);
/* 408, 425, 429 and every 5xx: worth another try. */
bool http_retryable(long status);
/* The wait before try attempt + 1 (attempt counts from 1): d = base * 2^(attempt-1) capped,
 * a random point in [d/2, d]; or Retry-After when the server gave one, at least d/2 and at
 * most HTTP_BACKOFF_CAP. */
int64_t http_backoff_ms(struct http *h, unsigned attempt, int64_t retry_after_ms);
/* Reads one answer header line as libcurl hands it over (len bytes of anything, not
 * NUL-terminated, CRLF included): a "Retry-After:" (any case) of 0 to 86400 seconds is 0 with
 * *ret_ms its milliseconds; one without such a value (an HTTP-date included) -EBADMSG; any
 * other line -ENOENT. Never reads past line + len. */
int http_retry_after(const char *line, size_t len, int64_t *ret_ms);
/* cancel_sleep on the handle's cancel: 0, or -ECANCELED. */
int http_wait(struct http *h, int64_t ms);

#endif
