/* listen — the fake servers' loopback-only --listen address and port file (see listen.h). */
#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tsgraphd/util.h"

int listen_parse(const char *s, struct sockaddr_storage *ss, bool *ret_v6)
{
	const char *colon = strrchr(s, ':');
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
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

	if (inet_pton(AF_INET, host, &s4->sin_addr) != 1 ||
	    (ntohl(s4->sin_addr.s_addr) >> 24) != 127)
		return -EINVAL;
	s4->sin_family = AF_INET;
	s4->sin_port = htons((uint16_t)port);
	*ret_v6 = false;
	return 0;
}

const char *listen_addr_text(const struct sockaddr_storage *ss, char *out, size_t size)
{
	const void *a = ss->ss_family == AF_INET6
				? (const void *)&((const struct sockaddr_in6 *)ss)->sin6_addr
				: (const void *)&((const struct sockaddr_in *)ss)->sin_addr;

	return inet_ntop(ss->ss_family, a, out, (socklen_t)size) ? out : "?";
}

int listen_write_port_file(const char *path, unsigned port)
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

void listen_block_stop_signals(sigset_t *ret_set)
{
	sigemptyset(ret_set);
	sigaddset(ret_set, SIGTERM);
	sigaddset(ret_set, SIGINT);
	pthread_sigmask(SIG_BLOCK, ret_set, NULL);
	signal(SIGPIPE, SIG_IGN);
}
