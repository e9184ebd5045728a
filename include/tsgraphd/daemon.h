/* daemon — `tsgraphd run`: the webhook receiver, the sync thread and sink delivery in one
 * process, until SIGTERM or SIGINT stops it in order (docs/receiver.md); SIGHUP reloads the
 * configuration (docs/configuration.md).
 *
 * Threads: the caller's (signals through a signalfd, start and stop), libmicrohttpd's for the
 * receiver, the inbox writer, and one sync thread. The sync thread runs a full sync at start
 * and every poll_interval, and in between takes the inbox's due alerts in batches: one
 * targeted refresh (sync_refresh, source "webhook") per batch, then delivery to every sink.
 * Each thread has its own SQLite connections; they share the config, the metrics, the
 * cancel handle and a wake-up eventfd.
 *
 * Ownership: the daemon takes a reference to the config (config_ref) and drops it at the
 * end; a reload loads a new snapshot from c->file, and the caller's c stays as it was (it
 * still frees it). Threads: call from the main thread, once; SIGINT, SIGTERM and SIGHUP are
 * blocked in it (and so in every thread it starts) and read from a signalfd. This module
 * logs (it orchestrates).
 */
#ifndef TSGRAPHD_DAEMON_H
#define TSGRAPHD_DAEMON_H

#include <stdint.h>

#include "tsgraphd/config.h"

#define DAEMON_DRAIN_MS		 10000 /* the receiver's requests in flight, at a stop */
#define DAEMON_REFRESH_BATCH	 64    /* inbox alerts per targeted refresh */
#define DAEMON_YIELD_BATCHES	 4     /* refresh batches a full sync lets go first, per request */
#define DAEMON_RETRY_MIN_MS	 10000 /* first retry of an alert not confirmed (yet) */
#define DAEMON_RETRY_MAX_MS	 600000
#define DAEMON_FULL_RETRY_MIN_MS 60000 /* a failed full sync: the first try again */
#define DAEMON_INBOX_KEEP_DAYS	 7     /* settled alerts kept, to recognise a resent one */
#define DAEMON_INBOX_BUSY_MS	 4000  /* the inbox writer's wait for a lock */

/* Runs until SIGTERM or SIGINT (SIGHUP reloads): 0 after an orderly stop; -EINVAL when the
 * configuration cannot run (the receiver's certificate, socket or secret: exit 2); another
 * negative errno when something failed to start or the sync thread could not go on (exit
 * 1). Each failure is logged once, here; a refused reload is logged and not a failure. */
int daemon_run(const struct config *c);

#endif
