/* fakesrv — shared plumbing of the fake servers (see fakesrv.h).
 *
 * The port file is written under a temporary name and renamed, so a test polling for it
 * never reads half a number; the loopback check is on the parsed address, not on the text,
 * so "127.1.2.3" passes and "0.0.0.0" or a routable name does not.
 */
#include "fakesrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tsgraphd/util.h"

int fakesrv_parse_listen(const char *s, struct sockaddr_storage *ss, bool *ret_v6)
{
	const char *colon = strrchr(s, ':');
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	char host[64];
	uint64_t port;
	size_t n;

	if (!colon || parse_u64(colon + 1, 0, 65535, &port) < 0)
		return -EINVAL;
	n = (size_t)(colon - s);
	if (n >= sizeof(host))
		return -EINVAL;
	memcpy(host, s, n);
	host[n] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (strcmp(host, "localhost") == 0)
		snprintf(host, sizeof(host), "127.0.0.1");
	if (host[0] == '[' && n > 2 && host[n - 1] == ']') {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		host[n - 1] = '\0';
		if (inet_pton(AF_INET6, host + 1, &s6->sin6_addr) != 1 ||
		    !IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			return -EINVAL;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*ret_v6 = true;
		return 0;
	}
	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1 ||
	    (ntohl(s4->sin_addr.s_addr) >> 24) != 127)
		return -EINVAL;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	*ret_v6 = false;
	return 0;
}

const char *fakesrv_addr_text(const struct sockaddr_storage *ss, char *out, size_t size)
{
	const void *a = ss->ss_family == AF_INET6
				? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
				: (const void *)&((const struct sockaddr_in *)ss)->sin_addr;

	return inet_ntop(ss->ss_family, a, out, (socklen_t)size) ? out : "?";
}

int fakesrv_write_port_file(const char *path, unsigned port)
{
	_cleanup_free_ char *tmp = NULL;
	struct buf b;
	FILE *fp;
	int r = 0;

	buf_init(&b, 4096);
	if (buf_printf(&b, "%s.tmp.%ld", path, (long)getpid()) < 0)
		return -ENAMETOOLONG;
	tmp = buf_steal(&b);
	if (!tmp)
		return -ENOMEM;
	fp = fopen(tmp, "we");
	if (!fp)
		return -errno;
	if (fprintf(fp, "%u\n", port) < 0)
		r = -EIO;
	if (fclose(fp) != 0 && r == 0)
		r = -EIO;
	if (r == 0 && rename(tmp, path) < 0)
		r = -errno;
	if (r < 0)
		unlink(tmp);
	return r;
}

int fakesrv_read_secret(const char *path, char **ret)
{
	char *data = NULL;
	size_t len = 0;
	int r;

	r = read_file_bounded(path, 4096, &data, &len);
	if (r < 0)
		return r;
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == '\r'))
		data[--len] = '\0';
	if (len == 0) {
		free(data);
		return -EINVAL;
	}
	*ret = data;
	return 0;
}

void fakesrv_sleep_ms(const atomic_bool *stopping, int64_t ms)
{
	while (ms > 0 && !atomic_load(stopping)) {
		int64_t slice = ms < 50 ? ms : 50;
		struct timespec ts = { .tv_sec = 0, .tv_nsec = slice * 1000000 };

		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		ms -= slice;
	}
}

void fakesrv_block_stop_signals(sigset_t *ret_set)
{
	sigemptyset(ret_set);
	sigaddset(ret_set, SIGTERM);
	sigaddset(ret_set, SIGINT);
	pthread_sigmask(SIG_BLOCK, ret_set, NULL);
	signal(SIGPIPE, SIG_IGN);
}

int fakesrv_serve(const struct fakesrv_serve *c, atomic_bool *stopping)
{
	static const struct MHD_OptionItem none[] = { { MHD_OPTION_END, 0, NULL } };
	struct MHD_OptionItem tls[4] = { { MHD_OPTION_END, 0, NULL } };
	char *cert = NULL, *key = NULL, shown[INET6_ADDRSTRLEN];
	const union MHD_DaemonInfo *info;
	struct MHD_Daemon *d = NULL;
	struct sockaddr_storage ss;
	bool v6 = false;
	int sig, ret = 1, r;
	unsigned port;
	sigset_t set;

	if (fakesrv_parse_listen(c->listen, &ss, &v6) < 0) {
		fprintf(stderr, "%s: --listen must be a loopback HOST:PORT\n", c->name);
		return 2;
	}
	if (c->tls_cert) {
		if (!c->tls_key || read_file_bounded(c->tls_cert, 1 << 20, &cert, NULL) < 0 ||
		    read_file_bounded(c->tls_key, 1 << 20, &key, NULL) < 0) {
			fprintf(stderr, "%s: cannot read --tls-cert/--tls-key\n", c->name);
			ret = 2;
			goto out;
		}
		tls[0] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_CERT, 0, cert };
		tls[1] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_MEM_KEY, 0, key };
		tls[2] = (struct MHD_OptionItem){ MHD_OPTION_HTTPS_PRIORITIES, 0,
						  (void *)"NORMAL:-VERS-TLS1.0:-VERS-TLS1.1" };
	}
	/* Before MHD starts its threads, so they inherit the mask and only sigwait() below
	 * sees the stop signals. */
	fakesrv_block_stop_signals(&set);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
				     (v6 ? MHD_USE_IPv6 : 0) |
				     (c->verbose ? MHD_USE_ERROR_LOG : 0) |
				     (cert ? MHD_USE_TLS : 0),
			     0, NULL, NULL, c->handler, c->cls, MHD_OPTION_SOCK_ADDR, &ss,
			     MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_ARRAY, tls,
			     MHD_OPTION_ARRAY, c->extra ? c->extra : none, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "%s: cannot listen on %s\n", c->name, c->listen);
		goto out;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	port = info ? info->port : 0;
	if (c->port_file && (r = fakesrv_write_port_file(c->port_file, port)) < 0) {
		fprintf(stderr, "%s: cannot write %s: %s\n", c->name, c->port_file, strerror(-r));
		goto out;
	}
	printf("listening on %s%s%s:%u\n", v6 ? "[" : "",
	       fakesrv_addr_text(&ss, shown, sizeof(shown)), v6 ? "]" : "", port);
	fflush(stdout);
	while (sigwait(&set, &sig) != 0)
		;
	if (stopping)
		atomic_store(stopping, true);
	ret = 0;
out:
	if (d)
		MHD_stop_daemon(d);
	free(cert);
	free(key);
	return ret;
}

int fakesrv_grow(void **arr, size_t *cap, size_t n, size_t elem)
{
	size_t c;
	void *p;

	if (n < *cap)
		return 0;
	c = *cap ? *cap * 2 : 16;
	p = realloc(*arr, c * elem);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = c;
	return 0;
}
