/* fakesrv — shared plumbing of the fake servers (see fakesrv.h).
 *
 * The port file is written under a temporary name and renamed, so a test polling for it
 * never reads half a number; the loopback check is on the parsed address, not on the text,
 * so "127.1.2.3" passes and "0.0.0.0" or a routable name does not.
 */
#include "fakesrv.h"

#include <arpa/inet.h>
#include <errno.h>
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
