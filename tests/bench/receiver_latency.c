/* receiver_latency — the time from a webhook's 2xx to the alert's change line in the file
 * sink. For each alert id read from stdin (one a line, alerts the fake Threat Stack knows),
 * one at a time: note the change log's size, POST a Threat Stack alert webhook for the id
 * over TLS (one libcurl handle, so the connection is kept alive as Threat Stack's would be),
 * take CLOCK_MONOTONIC when the 2xx is in, then read the change log from the noted size
 * every 0.5 ms until the line `"key":"threatstack:alert:ID"` is there and take the clock
 * again. A line already there when the 2xx arrives counts as 0 ms. Prints one line per
 * alert on stderr with --verbose, and the summary on stdout.
 *
 *   receiver_latency URL CACERT CHANGE_LOG ORG_ID < ids
 *     → alerts=N ack_p50_ms=X ack_p99_ms=X p50_ms=X p99_ms=X max_ms=X
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#define MAX_ALERTS 10000
#define WAIT_NS	   (10ll * 1000000000)
#define SCAN_MAX   (64 * 1024 * 1024)

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
	(void)p;
	(void)u;
	return size * n;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return (x > y) - (x < y);
}

/* nearest-rank percentile of a sorted array, in ms */
static double pct_ms(const long long *v, size_t n, double p)
{
	size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)v[rank - 1] / 1e6;
}

/* whether the change log holds NEEDLE after offset FROM */
static int has_line(int fd, off_t from, const char *needle, char *buf)
{
	struct stat st;
	ssize_t got;
	size_t len;

	if (fstat(fd, &st) < 0 || st.st_size <= from)
		return 0;
	len = (size_t)(st.st_size - from);
	if (len > SCAN_MAX) {
		from = st.st_size - SCAN_MAX;
		len = SCAN_MAX;
	}
	got = pread(fd, buf, len, from);
	if (got <= 0)
		return 0;
	buf[got] = '\0';
	return strstr(buf, needle) != NULL;
}

int main(int argc, char **argv)
{
	static long long lat[MAX_ALERTS], ack[MAX_ALERTS];
	char id[160], needle[256], body[1024];
	const struct timespec tick = { 0, 500000 };
	int verbose = argc > 1 && strcmp(argv[1], "--verbose") == 0;
	size_t n = 0;
	char *buf;
	CURL *c;
	int fd;

	if (argc - verbose != 5) {
		fprintf(stderr,
			"usage: receiver_latency [--verbose] URL CACERT CHANGE_LOG ORG_ID < ids\n");
		return 2;
	}
	argv += verbose;
	buf = malloc(SCAN_MAX + 1);
	c = curl_easy_init();
	if (!buf || !c)
		return 1;
	fd = open(argv[3], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "receiver_latency: %s: %s\n", argv[3], strerror(errno));
		return 1;
	}
	curl_easy_setopt(c, CURLOPT_URL, argv[1]);
	curl_easy_setopt(c, CURLOPT_CAINFO, argv[2]);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
	while (n < MAX_ALERTS && fgets(id, sizeof(id), stdin)) {
		long long t_ack, t0;
		long code = 0;
		struct stat st;
		CURLcode rc;

		id[strcspn(id, "\r\n")] = '\0';
		if (!*id)
			continue;
		snprintf(body, sizeof(body),
			 "{\"alerts\":[{\"id\":\"%s\",\"title\":\"Threat Intelligence Activity: "
			 "Communication to openbl by "
			 "185.110.132.54\",\"created_at\":%lld,\"severity\":1,"
			 "\"organization_id\":\"%s\",\"organization_Name\":\"Fake Org\","
			 "\"server_or_region\":\"ip-10-20-3-41\",\"source\":\"Host\"}]}",
			 id, (long long)time(NULL) * 1000, argv[4]);
		snprintf(needle, sizeof(needle), "\"key\":\"threatstack:alert:%s\"", id);
		if (fstat(fd, &st) < 0)
			return 1;
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		t0 = now_ns();
		rc = curl_easy_perform(c);
		t_ack = now_ns();
		curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
		if (rc != CURLE_OK || code < 200 || code > 299) {
			fprintf(stderr, "receiver_latency: %s: %s, HTTP %ld\n", id,
				curl_easy_strerror(rc), code);
			return 1;
		}
		while (!has_line(fd, st.st_size, needle, buf)) {
			if (now_ns() - t_ack > WAIT_NS) {
				fprintf(stderr,
					"receiver_latency: %s: no change line within 10 s\n", id);
				return 1;
			}
			nanosleep(&tick, NULL);
		}
		lat[n] = now_ns() - t_ack;
		ack[n] = t_ack - t0;
		if (verbose)
			fprintf(stderr, "%s ack=%.2fms line=%.2fms\n", id, ack[n] / 1e6,
				lat[n] / 1e6);
		n++;
	}
	if (n == 0)
		return 1;
	qsort(lat, n, sizeof(*lat), cmp_ll);
	qsort(ack, n, sizeof(*ack), cmp_ll);
	printf("alerts=%zu ack_p50_ms=%.2f ack_p99_ms=%.2f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
	       n, pct_ms(ack, n, 50), pct_ms(ack, n, 99), pct_ms(lat, n, 50), pct_ms(lat, n, 99),
	       pct_ms(lat, n, 100));
	curl_easy_cleanup(c);
	close(fd);
	free(buf);
	return 0;
}
