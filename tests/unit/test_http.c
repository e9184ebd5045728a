/* Tests of the sinks' HTTP client (src/http.c) against the fake Threat Stack's control
 * endpoints on loopback: answers of any status come back as answers, transport failures as
 * errno values, an answer over max_response is refused (or cut, when asked), a fired cancel handle stops a
 * request and a wait, and the retry policy's bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

#include "tsgraphd/cancel.h"
#include "tsgraphd/http.h"

#include "fake.h"

static struct fake fk;

static int setup(void **state)
{
	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	fake_start(&fk, NULL);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fake_stop(&fk);
	curl_global_cleanup();
	return 0;
}

static void test_answers_of_any_status(void **state)
{
	struct http_options o = { .timeout_s = 5, .max_response = 1 << 20 };
	const char *const hdrs[] = { "Content-Type: application/json", NULL };
	struct http_response resp;
	struct http *h = NULL;
	char url[128], err[HTTP_ERR_MAX];

	(void)state;
	assert_int_equal(http_new(&o, &h), 0);
	snprintf(url, sizeof(url), "%s/_fake/stats", fk.url);
	assert_int_equal(http_request(h, "GET", url, NULL, NULL, 0, &resp, err), 0);
	assert_int_equal(resp.status, 200);
	assert_non_null(strstr(resp.body, "\"api_requests\""));
	assert_int_equal(strlen(resp.body), resp.body_len);
	/* An API path without Hawk: a 401 is an answer, not a failure. */
	snprintf(url, sizeof(url), "%s/v2/agents", fk.url);
	assert_int_equal(http_request(h, "GET", url, hdrs, NULL, 0, &resp, err), 0);
	assert_int_equal(resp.status, 401);
	assert_int_equal(resp.retry_after_ms, -1);
	/* A POST with a body the fake refuses. */
	snprintf(url, sizeof(url), "%s/_fake/fleet", fk.url);
	assert_int_equal(http_request(h, "POST", url, hdrs, "{", 1, &resp, err), 0);
	assert_int_equal(resp.status, 400);
	http_free(h);
}

static void test_answer_over_max_response(void **state)
{
	struct http_options o = { .timeout_s = 5, .max_response = 8 };
	struct http_response resp;
	struct http *h = NULL;
	char url[128], err[HTTP_ERR_MAX];

	(void)state;
	assert_int_equal(http_new(&o, &h), 0);
	snprintf(url, sizeof(url), "%s/_fake/stats", fk.url);
	assert_int_equal(http_request(h, "GET", url, NULL, NULL, 0, &resp, err), -EMSGSIZE);
	assert_non_null(strstr(err, "larger than 8 bytes"));
	http_free(h);
}

/* With discard_body_over_max, the same answer is an answer: its start kept, the rest
 * dropped (a webhook receiver's 200 with a big page must not make the change go again). */
static void test_answer_over_max_response_discarded(void **state)
{
	struct http_options o = { .timeout_s = 5,
				  .max_response = 8,
				  .discard_body_over_max = true };
	struct http_response resp;
	struct http *h = NULL;
	char url[128], err[HTTP_ERR_MAX];

	(void)state;
	assert_int_equal(http_new(&o, &h), 0);
	snprintf(url, sizeof(url), "%s/_fake/stats", fk.url);
	assert_int_equal(http_request(h, "GET", url, NULL, NULL, 0, &resp, err), 0);
	assert_int_equal(resp.status, 200);
	assert_int_equal(resp.body_len, 7);
	assert_int_equal(strlen(resp.body), 7);
	assert_memory_equal(resp.body, "{\"reque", 7);
	assert_true(resp.body_cut);
	/* A small answer is whole, and not marked. */
	o.max_response = 1 << 20;
	http_free(h);
	assert_int_equal(http_new(&o, &h), 0);
	assert_int_equal(http_request(h, "GET", url, NULL, NULL, 0, &resp, err), 0);
	assert_false(resp.body_cut);
	assert_non_null(strstr(resp.body, "\"api_requests\""));
	http_free(h);
}

static void test_refused_connection(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct http_options o = { .timeout_s = 5, .max_response = 1024 };
	socklen_t alen = sizeof(a);
	struct http_response resp;
	struct http *h = NULL;
	char url[128], err[HTTP_ERR_MAX];
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	(void)state;
	/* A port that was free a moment ago and has no listener. */
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", ntohs(a.sin_port));
	assert_int_equal(http_new(&o, &h), 0);
	assert_int_equal(http_request(h, "GET", url, NULL, NULL, 0, &resp, err), -ECONNREFUSED);
	assert_non_null(strstr(err, "cannot connect"));
	http_free(h);
}

static void test_cancel_stops_requests(void **state)
{
	struct http_options o = { .timeout_s = 30, .max_response = 1024 };
	struct http_response resp;
	struct cancel *c = NULL;
	struct http *h = NULL;
	char url[128], err[HTTP_ERR_MAX];

	(void)state;
	assert_int_equal(cancel_new(&c), 0);
	o.cancel = c;
	assert_int_equal(http_new(&o, &h), 0);
	assert_int_equal(http_wait(h, 1), 0);
	cancel_fire(c);
	snprintf(url, sizeof(url), "%s/_fake/stats", fk.url);
	assert_int_equal(http_request(h, "GET", url, NULL, NULL, 0, &resp, err), -ECANCELED);
	assert_int_equal(http_wait(h, 60000), -ECANCELED);
	http_free(h);
	cancel_free(c);
}

static void test_retry_policy(void **state)
{
	struct http_options o = { .timeout_s = 5 };
	struct http *h = NULL;

	(void)state;
	assert_true(http_retryable(429));
	assert_true(http_retryable(503));
	assert_true(http_retryable(408));
	assert_false(http_retryable(400));
	assert_false(http_retryable(401));
	assert_false(http_retryable(200));
	assert_int_equal(http_new(&o, &h), 0);
	for (unsigned a = 1; a <= 40; a++) {
		int64_t d = http_backoff_ms(h, a, -1);
		int64_t top = HTTP_BACKOFF_BASE;

		for (unsigned i = 1; i < a && top < HTTP_BACKOFF_CAP; i++)
			top *= 2;
		if (top > HTTP_BACKOFF_CAP)
			top = HTTP_BACKOFF_CAP;
		assert_true(d >= top / 2 && d <= top);
	}
	assert_int_equal(http_backoff_ms(h, 1, 7000), 7000);
	assert_int_equal(http_backoff_ms(h, 1, 3600 * 1000), HTTP_BACKOFF_CAP);
	/* A Retry-After below this try's lower bound (0 included) waits the lower bound. */
	assert_int_equal(http_backoff_ms(h, 1, 0), HTTP_BACKOFF_BASE / 2);
	assert_int_equal(http_backoff_ms(h, 3, 0), HTTP_BACKOFF_BASE * 2);
	assert_int_equal(http_backoff_ms(h, 3, 100), HTTP_BACKOFF_BASE * 2);
	assert_int_equal(http_backoff_ms(h, 3, 5000), 5000);
	assert_int_equal(http_backoff_ms(h, 40, 0), HTTP_BACKOFF_CAP / 2);
	http_free(h);
}

static int retry_after(const char *line, int64_t *ret_ms)
{
	return http_retry_after(line, strlen(line), ret_ms);
}

/* The Retry-After line parser the header callback uses: exact bytes, any case, seconds only. */
static void test_retry_after_lines(void **state)
{
	static const char cut[] = "Retry-After: 12345"; /* no NUL within the length given */
	int64_t ms = -7;

	(void)state;
	assert_int_equal(retry_after("Retry-After: 120\r\n", &ms), 0);
	assert_int_equal(ms, 120000);
	assert_int_equal(retry_after("retry-after:0", &ms), 0);
	assert_int_equal(ms, 0);
	assert_int_equal(retry_after("RETRY-AFTER: \t 86400 \r\n", &ms), 0);
	assert_int_equal(ms, 86400000);
	assert_int_equal(http_retry_after(cut, 15, &ms), 0); /* "Retry-After: 12" */
	assert_int_equal(ms, 12000);
	ms = -7;
	assert_int_equal(retry_after("Retry-After: 86401\r\n", &ms), -EBADMSG);
	assert_int_equal(retry_after("Retry-After: -1\r\n", &ms), -EBADMSG);
	assert_int_equal(retry_after("Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n", &ms),
			 -EBADMSG);
	assert_int_equal(retry_after("Retry-After:\r\n", &ms), -EBADMSG);
	assert_int_equal(retry_after("Retry-After:", &ms), -EBADMSG);
	assert_int_equal(retry_after("Retry-After: 0000000000000000000000000000000001\r\n", &ms),
			 -EBADMSG); /* longer than any number we take */
	assert_int_equal(retry_after("Retry-After", &ms), -ENOENT);
	assert_int_equal(retry_after("Retry-Afterx: 1\r\n", &ms), -ENOENT);
	assert_int_equal(retry_after("Content-Type: text/plain\r\n", &ms), -ENOENT);
	assert_int_equal(retry_after("", &ms), -ENOENT);
	assert_int_equal(ms, -7); /* untouched by every refusal */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_answers_of_any_status),
		cmocka_unit_test(test_answer_over_max_response),
		cmocka_unit_test(test_answer_over_max_response_discarded),
		cmocka_unit_test(test_refused_connection),
		cmocka_unit_test(test_cancel_stops_requests),
		cmocka_unit_test(test_retry_policy),
		cmocka_unit_test(test_retry_after_lines),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
