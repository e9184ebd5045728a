/* cancel — a cancel handle: one eventfd that any thread, or a signal handler, fires once,
 * and that every wait of the sync engine (rate limit, backoff, a transfer) watches, so a
 * stop request ends any step within a second.
 *
 * Ownership: the creator (the CLI command, the daemon) owns the handle and frees it after
 * every user is gone. Threads: cancel_fire() is async-signal-safe and may be called from any
 * thread; the rest from any thread too.
 */
#ifndef TSGRAPHD_CANCEL_H
#define TSGRAPHD_CANCEL_H

#include <stdbool.h>
#include <stdint.h>

struct cancel;

int cancel_new(struct cancel **ret);
void cancel_free(struct cancel *c);
/* Fires the handle; later calls do nothing more. Async-signal-safe. NULL is ignored. */
void cancel_fire(struct cancel *c);
/* Whether the handle has fired (false for NULL). */
bool cancel_fired(const struct cancel *c);
/* Waits ms milliseconds or until the handle fires: 0 after the full wait, -ECANCELED when
 * fired (at once when it already had). A NULL handle just sleeps. */
int cancel_sleep(struct cancel *c, int64_t ms);
/* Liveness for a watchdog: the thread that watches the handle shows it is not hung — it is
 * in cancel_sleep() (which notes it at least once a second) or got an answer
 * (cancel_alive(), from http.c). A transfer that stalls notes nothing. NULL is ignored. */
void cancel_alive(struct cancel *c);
/* The monotonic ms of the latest such note; 0 before any (or for NULL). */
int64_t cancel_alive_ms(const struct cancel *c);
/* The eventfd, readable once fired, for callers that poll other fds too; -1 for NULL. */
int cancel_fd(const struct cancel *c);

#endif
