/* webhook — the HTTPS receiver of Threat Stack's alert webhooks, and the daemon's /healthz and
 * /metrics (docs/receiver.md).
 *
 *   POST /v1/webhooks/threatstack/<secret>   (or .../threatstack with Authorization: Bearer)
 *        401 wrong or no secret (compared in constant time), 405 another method, 413 a body
 *        over max_body (before reading more of it), 400 no body / not an alert (one line of
 *        JSON error), 403 another organization's alert, 503 (Retry-After) when the inbox is
 *        full, stopping or cannot commit; 200 only once every alert of the body is committed
 *        to the inbox (a repeated alert id included: stored once, still 200).
 *   GET  /healthz   200, or 503 with the reason the health callback gives
 *   GET  /metrics   Prometheus text (metrics.h)
 *
 * libmicrohttpd with GnuTLS: TLS 1.2 and 1.3 only, AEAD ciphers only; plain HTTP only when
 * the config says tls = off and the socket is bound to a loopback address. The listen
 * socket is the receiver's own (bound from [webhook] listen) or one handed over by systemd
 * socket activation. One or a few event-loop threads (epoll; [webhook] threads); connection
 * timeout, total and per-IP connection limits and a per-connection memory limit are
 * libmicrohttpd's.
 *
 * A reload (webhook_reload) serves a new config snapshot: its secret, a certificate and key
 * read again from their files, max_body, timeout and the connection limits, on the same
 * listen socket, without refusing or cutting a connection (webhook.c says how).
 *
 * Ownership: webhook_start() returns a receiver the caller stops with webhook_stop(), which
 * frees it. It takes a reference to each config it serves (config_ref) and drops it once no
 * request can read it. The inbox writer, metrics and health callback are borrowed and must
 * outlive it. Threads: start, reload, stuck_ms and stop from one thread; the health
 * callback is called from the receiver's threads. This module logs (it orchestrates
 * requests).
 */
#ifndef TSGRAPHD_WEBHOOK_H
#define TSGRAPHD_WEBHOOK_H

#include <stdint.h>

#include "tsgraphd/config.h"
#include "tsgraphd/inbox.h"
#include "tsgraphd/metrics.h"

#define WEBHOOK_ERR_MAX		      512
#define WEBHOOK_PATH		      "/v1/webhooks/threatstack"
#define WEBHOOK_COMMIT_TIMEOUT_MS     10000 /* a request's wait for its inbox commit: 503 after */
#define WEBHOOK_CONNECTION_MEMORY_MAX (64u * 1024) /* libmicrohttpd's pool per connection */
#define WEBHOOK_RETIRE_MS	      10000	   /* a reloaded listener's connections, at most */
/* GnuTLS priorities: TLS 1.3 and 1.2, AEAD ciphers with forward secrecy, nothing else. */
#define WEBHOOK_TLS_PRIORITIES                                                              \
	"SECURE:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:" \
	"+CHACHA20-POLY1305:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-RSA:+ECDHE-ECDSA:%SERVER_PRECEDENCE"

/* 0 when healthy; a negative errno and one line for a person in reason otherwise. */
typedef int (*webhook_health_fn)(char *reason, size_t size, void *userdata);

struct webhook_options {
	const struct config *c;
	struct inbox_writer *inbox;
	struct metrics *metrics;
	int listen_fd; /* a listening socket handed over (socket activation), or -1 to bind */
	webhook_health_fn health;
	void *userdata;
};

struct webhook;

/* Reads the certificate and key, makes (or checks) the listen socket and starts serving.
 * Failures are one line in err: -EINVAL for what the configuration must fix (no
 * certificate with tls on, plain HTTP off loopback, a socket that is not a listening TCP
 * socket), another negative errno otherwise. */
int webhook_start(const struct webhook_options *opt, struct webhook **ret,
		  char err[static WEBHOOK_ERR_MAX]);
/* Serves c from now on (the listen address and tls stay those of the start). On failure
 * (a certificate or key that cannot be read, is not PEM, does not pair, or that GnuTLS
 * refuses: one line in err) the receiver goes on with what it served, untouched. */
int webhook_reload(struct webhook *w, const struct config *c, char err[static WEBHOOK_ERR_MAX]);
/* The port it listens on (the one picked when listen asked for port 0). */
unsigned webhook_port(const struct webhook *w);
/* Answers 503 "inbox commit timed out" to every request suspended on its inbox commit for
 * WEBHOOK_COMMIT_TIMEOUT_MS or more by now_mono_ms; returns how many. Called about once a
 * second by the daemon's main thread (libmicrohttpd has no timer for suspended requests). */
unsigned webhook_expire(struct webhook *w, int64_t now_mono_ms);
/* How long the longest-running call into the receiver's request handling has been running
 * (ms, against the monotonic now given); 0 when no handler thread is in one. */
int64_t webhook_stuck_ms(struct webhook *w, int64_t now_mono_ms);
/* The orderly stop: stops accepting connections, answers new requests on open connections
 * 503 (Connection: close), lets the requests in flight finish (each is either stored and
 * answered, or not stored) for at most drain_ms, then closes everything and frees w. */
void webhook_stop(struct webhook *w, int64_t drain_ms);

#endif
