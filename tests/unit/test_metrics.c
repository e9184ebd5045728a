/* Unit tests for metrics: every figure lands under its name and labels in the Prometheus
 * text, statuses out of range are ignored, the last successful run is only an ok or held
 * one, and concurrent bumps from many threads are all counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "tsgraphd/metrics.h"

static char *render(struct metrics *m, struct buf *b)
{
	buf_init(b, METRICS_TEXT_MAX);
	assert_int_equal(metrics_render(m, b), 0);
	return b->data;
}

static void has_line(const char *text, const char *line)
{
	char want[512];

	snprintf(want, sizeof(want), "\n%s\n", line);
	if (!strstr(text, want))
		fail_msg("no line '%s' in:\n%s", line, text);
}

static void test_render(void **state)
{
	const char *const sinks[] = { "changes", "j1" };
	struct metrics *m = NULL;
	struct buf b;
	char *t;

	(void)state;
	assert_int_equal(metrics_new(sinks, 2, &m), 0);
	metrics_request(m, METRICS_ROUTE_WEBHOOK, 200);
	metrics_request(m, METRICS_ROUTE_WEBHOOK, 200);
	metrics_request(m, METRICS_ROUTE_WEBHOOK, 401);
	metrics_request(m, METRICS_ROUTE_HEALTHZ, 503);
	metrics_request(m, METRICS_ROUTE_OTHER, 999); /* ignored */
	metrics_in_flight(m, 1);
	metrics_alerts(m, 3, 1);
	metrics_inbox_depth(m, 7);
	metrics_inbox_commit(m, 5);
	metrics_inbox_commit(m, 3);
	metrics_inbox_settled(m, 2, 1, 4);
	metrics_sync_run(m, "full", "ok", 1500, 10, 2, 1, 1000000);
	metrics_sync_run(m, "full", "partial", 500, 0, 1, 0, 2000000);
	metrics_sync_run(m, "refresh", "ok", 20, 1, 1, 0, 3000000);
	metrics_sync_run(m, "nonsense", "ok", 20, 1, 1, 0, 3000000); /* ignored */
	metrics_api_response(m, 200);
	metrics_api_response(m, 0);
	metrics_api_response(m, 429);
	metrics_sink(m, "changes", 12, false, 3);
	metrics_sink(m, "j1", 0, true, 40);
	metrics_sink(m, "gone", 0, true, 40); /* no such sink */
	t = render(m, &b);
	has_line(t, "tsgraphd_http_requests_total{route=\"webhook\",code=\"200\"} 2");
	has_line(t, "tsgraphd_http_requests_total{route=\"webhook\",code=\"401\"} 1");
	has_line(t, "tsgraphd_http_requests_total{route=\"healthz\",code=\"503\"} 1");
	assert_null(strstr(t, "999"));
	has_line(t, "tsgraphd_http_requests_in_flight 1");
	has_line(t, "tsgraphd_webhook_alerts_total{result=\"accepted\"} 3");
	has_line(t, "tsgraphd_webhook_alerts_total{result=\"duplicate\"} 1");
	has_line(t, "tsgraphd_inbox_depth 7");
	has_line(t, "tsgraphd_inbox_commits_total 2");
	has_line(t, "tsgraphd_inbox_alerts_committed_total 8");
	has_line(t, "tsgraphd_inbox_settled_total{state=\"unconfirmed\"} 4");
	has_line(t, "tsgraphd_sync_runs_total{kind=\"full\",result=\"ok\"} 1");
	has_line(t, "tsgraphd_sync_runs_total{kind=\"full\",result=\"partial\"} 1");
	has_line(t, "tsgraphd_sync_duration_seconds_sum{kind=\"full\"} 2.000");
	has_line(t, "tsgraphd_sync_duration_seconds_count{kind=\"full\"} 2");
	has_line(t, "tsgraphd_sync_last_success_timestamp_seconds{kind=\"full\"} 1000.000");
	has_line(t, "tsgraphd_changes_total{op=\"create\",source=\"poll\"} 10");
	has_line(t, "tsgraphd_changes_total{op=\"update\",source=\"webhook\"} 1");
	has_line(t, "tsgraphd_api_requests_total{code=\"none\"} 1");
	has_line(t, "tsgraphd_api_requests_total{code=\"429\"} 1");
	has_line(t, "tsgraphd_sink_backlog{sink=\"j1\"} 40");
	has_line(t, "tsgraphd_sink_delivered_total{sink=\"changes\"} 12");
	has_line(t, "tsgraphd_sink_failures_total{sink=\"j1\"} 1");
	has_line(t, "# TYPE tsgraphd_inbox_depth gauge");
	/* the partial run did not move the last success */
	assert_int_equal(metrics_last_sync_ok(m, "full"), 1000000);
	metrics_sync_run(m, "full", "held", 1, 0, 0, 0, 4000000);
	assert_int_equal(metrics_last_sync_ok(m, "full"), 4000000);
	buf_free(&b);
	metrics_free(m);
	assert_int_equal(metrics_new(sinks, CONFIG_SINKS_MAX + 1, &m), -EINVAL);
}

static void *bump(void *arg)
{
	for (int i = 0; i < 10000; i++)
		metrics_request(arg, METRICS_ROUTE_WEBHOOK, 200);
	return NULL;
}

static void test_concurrent(void **state)
{
	struct metrics *m = NULL;
	pthread_t th[4];
	struct buf b;

	(void)state;
	assert_int_equal(metrics_new(NULL, 0, &m), 0);
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&th[i], NULL, bump, m), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	has_line(render(m, &b),
		 "tsgraphd_http_requests_total{route=\"webhook\",code=\"200\"} 40000");
	buf_free(&b);
	metrics_free(m);
}

/* A reload's sinks: a kept name keeps its figures, a new one starts at 0, one gone goes. */
static void test_set_sinks(void **state)
{
	const char *const before[] = { "changes", "j1" }, *const after[] = { "hook", "changes" };
	struct metrics *m = NULL;
	struct buf b;
	char *t;

	(void)state;
	assert_int_equal(metrics_new(before, 2, &m), 0);
	metrics_sink(m, "changes", 5, true, 2);
	metrics_sink(m, "j1", 7, false, 1);
	assert_int_equal(metrics_set_sinks(m, after, 2), 0);
	metrics_sink(m, "j1", 1, false, 1); /* gone: ignored */
	metrics_sink(m, "hook", 3, false, 0);
	t = render(m, &b);
	has_line(t, "tsgraphd_sink_delivered_total{sink=\"changes\"} 5");
	has_line(t, "tsgraphd_sink_failures_total{sink=\"changes\"} 1");
	has_line(t, "tsgraphd_sink_backlog{sink=\"changes\"} 2");
	has_line(t, "tsgraphd_sink_delivered_total{sink=\"hook\"} 3");
	assert_null(strstr(t, "sink=\"j1\""));
	buf_free(&b);
	assert_int_equal(metrics_set_sinks(m, after, CONFIG_SINKS_MAX + 1), -EINVAL);
	metrics_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_set_sinks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
