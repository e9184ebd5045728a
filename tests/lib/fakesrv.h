/* fakesrv — what every fake server in tests/server/ does the same way: refuse to listen
 * anywhere but loopback, publish the bound port through a file that appears only once it is
 * complete, read a secret from a file, and wait without holding up a stop.
 *
 * Ownership: fakesrv_read_secret() returns a malloc'd string the caller wipes and frees.
 * Threads: everything here is reentrant; nothing keeps state.
 */
#ifndef TSGRAPHD_TESTS_FAKESRV_H
#define TSGRAPHD_TESTS_FAKESRV_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/socket.h>

#include <microhttpd.h>

/* "127.0.0.1:0", "[::1]:8080", "localhost:0" → a loopback socket address; anything else,
 * or a host that is not loopback, is -EINVAL. */
int fakesrv_parse_listen(const char *s, struct sockaddr_storage *ss, bool *ret_v6);
/* The address part of ss as text ("?" when it cannot be shown). */
const char *fakesrv_addr_text(const struct sockaddr_storage *ss, char *out, size_t size);
/* Writes "PORT\n" to path.tmp.PID and renames it to path. */
int fakesrv_write_port_file(const char *path, unsigned port);
/* The first line-ish of a file of at most 4 KiB, trailing CR/LF stripped; -EINVAL if empty. */
int fakesrv_read_secret(const char *path, char **ret);
/* Blocks SIGTERM and SIGINT (into *ret_set, for sigwait) and ignores SIGPIPE. Call it before
 * libmicrohttpd starts its threads, so they inherit the mask and only sigwait() sees the
 * stop signals. */
void fakesrv_block_stop_signals(sigset_t *ret_set);
/* How a fake serves: where (--listen, loopback only), the port file (or NULL), HTTPS when
 * tls_cert and tls_key name PEM files (TLS 1.2 and newer only), the request handler, and
 * more libmicrohttpd options (an array ending with MHD_OPTION_END, or NULL). */
struct fakesrv_serve {
	const char *name; /* for messages: "fake_jupiterone" */
	const char *listen;
	const char *port_file;
	const char *tls_cert, *tls_key;
	bool verbose;
	MHD_AccessHandlerCallback handler;
	void *cls;
	const struct MHD_OptionItem *extra;
};
/* Listens (one thread per connection), publishes the port, prints "listening on ADDR:PORT",
 * then waits for SIGTERM or SIGINT; sets *stopping (may be NULL) and stops the server, so
 * every request in flight has ended when it returns. 0 after a stop, 2 for a bad --listen or
 * unreadable TLS files, 1 when it cannot listen. */
int fakesrv_serve(const struct fakesrv_serve *c, atomic_bool *stopping);
/* Makes room in *arr (*cap elements of elem bytes) for element n: doubled, 16 at first;
 * -ENOMEM leaves *arr as it was. */
int fakesrv_grow(void **arr, size_t *cap, size_t n, size_t elem);
/* Sleeps ms milliseconds in 50 ms slices, returning early once *stopping is set. */
void fakesrv_sleep_ms(const atomic_bool *stopping, int64_t ms);

#endif
