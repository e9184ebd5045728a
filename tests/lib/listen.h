/* listen — what the fake servers in tests/server/ share: a loopback-only --listen address
 * and the port file a test waits on.
 *
 * Pure helpers, no state; any thread.
 */
#ifndef TSGRAPHD_TESTS_LISTEN_H
#define TSGRAPHD_TESTS_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <sys/socket.h>

/* "127.0.0.1:0", "[::1]:8080", "localhost:0" → a loopback socket address (port 0:
 * ephemeral); anything else, or a host that is not loopback, is -EINVAL. */
int listen_parse(const char *s, struct sockaddr_storage *ss, bool *ret_v6);
/* The address of ss as text, into out; "?" when it cannot be shown. */
const char *listen_addr_text(const struct sockaddr_storage *ss, char *out, size_t size);
/* Writes "PORT\n" to path.tmp.PID and renames it to path, so a reader never sees half. */
int listen_write_port_file(const char *path, unsigned port);
/* Blocks SIGTERM and SIGINT (into *ret_set, for sigwait) and ignores SIGPIPE. Call it before
 * libmicrohttpd starts its threads, so they inherit the mask and only sigwait() sees the
 * stop signals. */
void listen_block_stop_signals(sigset_t *ret_set);

#endif
