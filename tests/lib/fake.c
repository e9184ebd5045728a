/* fake — a fake server as a child process of a C test (see fake.h).
 *
 * Readiness is the port file: the fake writes it (to a temporary name, then renamed) only
 * once it listens, so a test never races the bind. The child is polled with waitpid while
 * waiting, so a fake that dies at start fails the test at once instead of after the bound.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "fake.h"
#include "tsgraphd/util.h"

#define START_MAX_MS	 20000 /* a 10,000-agent fleet under ASan */
#define STOP_MAX_MS	 5000
#define POLL_MS		 20
#define ARGS_MAX	 64
#define CONTROL_BODY_MAX (64u << 20)
#define CONTROL_TIMEOUT	 30L /* seconds */

void fake_sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

void fake_start(struct fake *f, const char *const *extra)
{
	fake_start_named(f, "fake_threatstack", extra);
}

void fake_start_named(struct fake *f, const char *name, const char *const *extra)
{
	const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
	char bin[512], portfile[128], *argv[ARGS_MAX];
	size_t n = 0;

	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/tsgraphd-fake.XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(bin, sizeof(bin), "%s/%s", build, name);
	snprintf(portfile, sizeof(portfile), "%s/port", f->dir);
	argv[n++] = bin;
	argv[n++] = "--listen";
	argv[n++] = "127.0.0.1:0";
	argv[n++] = "--port-file";
	argv[n++] = portfile;
	for (; extra && *extra && n < ARGS_MAX - 2; extra++)
		argv[n++] = (char *)*extra;
	argv[n] = NULL;
	f->pid = fork();
	assert_true(f->pid >= 0);
	if (f->pid == 0) {
		int fd = open("/dev/null", O_WRONLY);

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (fd >= 0) {
			dup2(fd, STDOUT_FILENO);
			close(fd);
		}
		execv(bin, argv);
		_exit(127);
	}
	for (int i = 0; i < START_MAX_MS / POLL_MS; i++) {
		char *data = NULL;
		size_t len;
		uint64_t port;

		if (read_file_bounded(portfile, 64, &data, &len) == 0) {
			if (len > 0 && data[len - 1] == '\n')
				data[len - 1] = '\0';
			if (parse_u64(data, 1, 65535, &port) == 0) {
				free(data);
				f->port = (unsigned)port;
				snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%u", f->port);
				return;
			}
		}
		free(data);
		if (waitpid(f->pid, NULL, WNOHANG) == f->pid)
			fail_msg("%s exited before listening", bin);
		fake_sleep_ms(POLL_MS);
	}
	fail_msg("%s did not write its port file", bin);
}

void fake_stop(struct fake *f)
{
	char path[128];
	int status = 0, i;

	if (f->pid > 0) {
		kill(f->pid, SIGTERM);
		for (i = 0; i < STOP_MAX_MS / 10 && waitpid(f->pid, &status, WNOHANG) == 0; i++)
			fake_sleep_ms(10);
		if (i == STOP_MAX_MS / 10) {
			kill(f->pid, SIGKILL);
			waitpid(f->pid, &status, 0);
			fail_msg("the fake did not stop within 5 s of SIGTERM");
		}
		f->pid = 0;
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	snprintf(path, sizeof(path), "%s/port", f->dir);
	unlink(path);
	rmdir(f->dir);
}

static size_t collect(char *d, size_t s, size_t n, void *ud)
{
	return buf_append(ud, d, s * n) == 0 ? s * n : 0;
}

json_object *fake_control(const struct fake *f, const char *path, const char *post)
{
	CURL *h = curl_easy_init();
	struct curl_slist *hd = curl_slist_append(NULL, "Content-Type: application/json");
	char url[256];
	struct buf b;
	long st = 0;
	json_object *o;

	assert_non_null(h);
	buf_init(&b, CONTROL_BODY_MAX);
	snprintf(url, sizeof(url), "%s%s", f->url, path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, collect);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &b);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, CONTROL_TIMEOUT);
	if (post) {
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hd);
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, post);
	}
	assert_int_equal(curl_easy_perform(h), CURLE_OK);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &st);
	curl_slist_free_all(hd);
	curl_easy_cleanup(h);
	if (st != 200)
		fail_msg("%s %s: HTTP %ld %s", post ? "POST" : "GET", path, st,
			 b.data ? b.data : "");
	o = json_tokener_parse(b.data);
	assert_non_null(o);
	buf_free(&b);
	return o;
}

void fake_fleet(const struct fake *f, const char *fmt, ...)
{
	char body[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(body, sizeof(body), fmt, ap);
	va_end(ap);
	json_object_put(fake_control(f, "/_fake/fleet", body));
}

void fake_fault(const struct fake *f, const char *json)
{
	json_object_put(fake_control(f, "/_fake/fault", json));
}

int64_t fake_stat(const struct fake *f, const char *key, const char *sub)
{
	json_object *o = fake_control(f, "/_fake/stats", NULL), *v = NULL, *w = NULL;
	int64_t n;

	assert_true(json_object_object_get_ex(o, key, &v));
	if (sub) {
		assert_true(json_object_object_get_ex(v, sub, &w));
		v = w;
	}
	n = json_object_get_int64(v);
	json_object_put(o);
	return n;
}
