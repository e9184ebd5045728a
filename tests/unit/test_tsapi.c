/* Unit tests for tsapi: the rate limiter's arithmetic on an injected clock, and the client
 * against build/fake_threatstack (spawned per test on an ephemeral loopback port, killed at
 * teardown) for listings, pagination, every fault the fake can inject, clock skew recovery
 * and the rate limit as the server measured it. A tiny in-process libmicrohttpd server
 * covers what the fake never does (a repeated pagination token, a redirect, Retry-After). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <microhttpd.h>

#include "tsgraphd/config.h"
#include "tsgraphd/tsapi.h"
#include "tsgraphd/util.h"

#include "fake.h"

static struct tsapi_limiter *fast_limiter;

static void make_config(struct config *c, const char *url, const char *key)
{
	memset(c, 0, sizeof(*c));
	c->file = "test";
	c->ts.org_id = FAKE_ORG_ID;
	c->ts.user_id = FAKE_USER_ID;
	c->ts.api_key = (char *)key;
	c->ts.api_url = (char *)url;
	c->ts.rate_limit = 6000;
	c->ts.timeout = 10;
}

/* A client with test-sized delays and a fast private limiter. */
static struct tsapi *client(const char *url, const char *key, struct tsapi_options *o)
{
	struct tsapi_options def = { 0 };
	struct tsapi_error err;
	struct tsapi *api = NULL;
	struct config c;

	make_config(&c, url, key);
	if (!o)
		o = &def;
	if (!o->limiter)
		o->limiter = fast_limiter;
	if (!o->backoff_base_ms)
		o->backoff_base_ms = 5;
	if (!o->backoff_max_ms)
		o->backoff_max_ms = 40;
	if (!o->reset_max_ms)
		o->reset_max_ms = 200;
	if (tsapi_new(&c, o, &api, &err) < 0)
		fail_msg("tsapi_new: %s", err.message);
	return api;
}

/* ---- collecting callbacks ---- */

struct idset {
	json_object *seen; /* id → count */
	size_t delivered;
	size_t dups;
	size_t stop_after; /* 0: never */
};

static int idset_add(struct idset *s, const char *id)
{
	json_object *v;

	s->delivered++;
	if (json_object_object_get_ex(s->seen, id, &v)) {
		s->dups++;
		json_object_set_int(v, json_object_get_int(v) + 1);
	} else {
		json_object_object_add(s->seen, id, json_object_new_int(1));
	}
	if (s->stop_after && s->delivered >= s->stop_after)
		return -EINTR;
	return 0;
}

static int on_agent(struct ts_agent *a, void *ud)
{
	assert_non_null(a->id);
	return idset_add(ud, a->id);
}

static int on_alert(struct ts_alert *a, void *ud)
{
	return idset_add(ud, a->id);
}

static int on_server(struct ts_server *s, void *ud)
{
	return idset_add(ud, s->agent_id);
}

struct vulns {
	struct idset ids;
	json_object *without_agents; /* cve → true */
};

static int on_vuln(struct ts_vuln *v, void *ud)
{
	struct vulns *vs = ud;

	if (!v->has_agents)
		json_object_object_add(vs->without_agents, v->cve, json_object_new_boolean(1));
	return idset_add(&vs->ids, v->cve);
}

static void idset_init(struct idset *s)
{
	memset(s, 0, sizeof(*s));
	s->seen = json_object_new_object();
}

static size_t idset_distinct(const struct idset *s)
{
	return (size_t)json_object_object_length(s->seen);
}

/* ---- limiter ---- */

/* Greedy senders against the limiter on a simulated clock: no 60 s window may hold more
 * than the rate, the first `burst` go at once, and the long-run rate is close to the
 * limit. Nothing sleeps. */
static void check_limiter(uint32_t rate, size_t n)
{
	struct tsapi_limiter *l;
	int64_t *t = calloc(n, sizeof(*t)), now = 1000000;
	size_t j = 0, immediate = 0;

	assert_non_null(t);
	assert_int_equal(tsapi_limiter_new(rate, 0, &l), 0);
	for (size_t i = 0; i < n; i++) {
		int64_t w = tsapi_limiter_reserve(l, now);

		assert_true(w >= 0);
		now += w;
		t[i] = now;
		now += (int64_t)(i % 7); /* some senders dawdle */
	}
	for (size_t i = 0; i < n; i++) {
		while (t[i] - t[j] >= 60000)
			j++;
		if (i - j + 1 > rate)
			fail_msg("rate %u: %zu sends within 60 s", rate, i - j + 1);
	}
	tsapi_limiter_free(l);
	/* the burst: a fresh limiter lets per_minute/10 (1..10) go at once, not one more */
	assert_int_equal(tsapi_limiter_new(rate, 0, &l), 0);
	while (tsapi_limiter_reserve(l, 5000) == 0)
		immediate++;
	assert_int_equal(immediate, rate / 10 < 1 ? 1 : rate / 10 > 10 ? 10 : rate / 10);
	/* throughput: at least 85% of the rate over the run (bursts and the margin cost some) */
	if (n > rate * 2)
		assert_true((double)n / ((double)(t[n - 1] - t[0]) / 60000.0) >= 0.85 * rate);
	tsapi_limiter_free(l);
	free(t);
}

static void test_limiter_math(void **state)
{
	struct tsapi_limiter *l;

	(void)state;
	check_limiter(1, 5);
	check_limiter(2, 10);
	check_limiter(7, 40);
	check_limiter(60, 400);
	check_limiter(200, 2000);
	check_limiter(6000, 30000);

	/* hold: after a 429 nobody sends before the reset, and no burst follows it */
	assert_int_equal(tsapi_limiter_new(200, 0, &l), 0);
	assert_int_equal(tsapi_limiter_reserve(l, 0), 0);
	tsapi_limiter_hold(l, 0, 5000);
	assert_true(tsapi_limiter_reserve(l, 10) >= 4990);
	assert_true(tsapi_limiter_reserve(l, 5000) > 0);
	/* reconfiguring keeps the schedule and changes the pace */
	assert_int_equal(tsapi_limiter_configure(l, 20, 1), 0);
	assert_true(tsapi_limiter_reserve(l, 100000) == 0);
	assert_true(tsapi_limiter_reserve(l, 100000) >= 3000);
	assert_int_equal(tsapi_limiter_configure(l, 0, 0), -EINVAL);
	tsapi_limiter_free(l);
	tsapi_limiter_free(NULL);
	assert_int_equal(tsapi_limiter_new(0, 0, &l), -EINVAL);

	/* What is left of the minute: the sends of the last 60 s count, older ones do not. */
	assert_int_equal(tsapi_limiter_new(60, 0, &l), 0);
	assert_int_equal(tsapi_limiter_left(l, 0), 60);
	for (int i = 0; i < 10; i++)
		(void)tsapi_limiter_reserve(l, 0);
	assert_int_equal(tsapi_limiter_left(l, 0), 50);
	assert_true(tsapi_limiter_left(l, 30000) >= 50);
	assert_int_equal(tsapi_limiter_left(l, 200000), 60);
	tsapi_limiter_free(l);
}

static void test_strerror(void **state)
{
	(void)state;
	for (int c = TSAPI_OK; c <= TSAPI_E_INTERNAL; c++) {
		assert_non_null(tsapi_strerror((enum tsapi_errc)c));
		assert_string_not_equal(tsapi_strerror((enum tsapi_errc)c), "unknown error");
	}
	assert_string_equal(tsapi_strerror((enum tsapi_errc)999), "unknown error");
}

/* ---- against the fake ---- */

static void test_agents_10000(void **state)
{
	static const char *const args[] = { "--agents", "10000", "--page-size", "100", NULL };
	struct tsapi_error err;
	struct fake f;
	struct idset s;
	struct tsapi *api;
	json_object *truth, *agents;

	(void)state;
	fake_start(&f, args);
	api = client(f.url, FAKE_API_KEY, &(struct tsapi_options){ .verify_responses = true });
	idset_init(&s);
	if (tsapi_list_agents(api, "online", on_agent, &s, &err) < 0)
		fail_msg("online: %s", err.message);
	if (tsapi_list_agents(api, "offline", on_agent, &s, &err) < 0)
		fail_msg("offline: %s", err.message);
	truth = fake_control(&f, "/_fake/fleet", NULL);
	assert_true(json_object_object_get_ex(truth, "agents", &agents));
	assert_int_equal(json_object_array_length(agents), 10000);
	assert_int_equal(idset_distinct(&s), 10000);
	for (size_t i = 0; i < 10000; i++) {
		json_object *id = NULL;

		assert_true(
			json_object_object_get_ex(json_object_array_get_idx(agents, i), "id", &id));
		assert_true(json_object_object_get_ex(s.seen, json_object_get_string(id), NULL));
	}
	/* the agents in both listings (~5%) are the only duplicates, each seen exactly twice */
	assert_true(s.dups > 0 && s.dups < 1000);
	assert_int_equal(s.delivered, 10000 + s.dups);
	/* one request a page: ceil(online/100) + ceil(offline/100), i.e. about 105 */
	assert_true(fake_stat(&f, "by_path", "/v2/agents") >= 100);
	assert_true(fake_stat(&f, "by_path", "/v2/agents") <= 110);
	assert_int_equal(fake_stat(&f, "auth_failures", NULL), 0);
	json_object_put(truth);
	json_object_put(s.seen);
	tsapi_free(api);
	fake_stop(&f);
}

static void test_vulns_and_servers(void **state)
{
	static const char *const args[] = { "--agents",	   "600", "--cves", "12",
					    "--page-size", "50",  NULL };
	struct tsapi_error err;
	struct fake f;
	struct vulns vs;
	struct tsapi *api;
	json_object *truth, *cves;
	size_t checked = 0;

	(void)state;
	fake_start(&f, args);
	api = client(f.url, FAKE_API_KEY, NULL);
	idset_init(&vs.ids);
	vs.without_agents = json_object_new_object();
	if (tsapi_list_vulns(api, on_vuln, &vs, &err) < 0)
		fail_msg("vulns: %s", err.message);
	truth = fake_control(&f, "/_fake/fleet", NULL);
	assert_true(json_object_object_get_ex(truth, "cves", &cves));
	assert_int_equal(idset_distinct(&vs.ids), json_object_array_length(cves));
	assert_int_equal(vs.ids.dups, 0);
	assert_true(json_object_object_length(vs.without_agents) > 0);
	for (size_t i = 0; i < json_object_array_length(cves); i++) {
		json_object *cv = json_object_array_get_idx(cves, i), *id, *ag;
		struct idset s;

		assert_true(json_object_object_get_ex(cv, "cveNumber", &id));
		if (!json_object_object_get_ex(vs.without_agents, json_object_get_string(id), NULL))
			continue;
		assert_true(json_object_object_get_ex(cv, "agents", &ag));
		idset_init(&s);
		if (tsapi_list_cve_servers(api, json_object_get_string(id), on_server, &s, &err) <
		    0)
			fail_msg("servers of %s: %s", json_object_get_string(id), err.message);
		assert_int_equal(idset_distinct(&s), json_object_array_length(ag));
		assert_int_equal(s.dups, 0);
		json_object_put(s.seen);
		checked++;
	}
	assert_true(checked > 0);
	/* one CVE affects every agent: its servers listing took several pages */
	assert_true(fake_stat(&f, "by_path", "/v2/vulnerabilities/{cve}/servers") >
		    (int64_t)checked);

	/* an unknown CVE: 404 is an empty listing, not an error */
	{
		struct idset s;

		idset_init(&s);
		assert_int_equal(tsapi_list_cve_servers(api, "CVE-2099-99999", on_server, &s, &err),
				 0);
		assert_int_equal(s.delivered, 0);
		assert_int_equal(err.code, TSAPI_OK);
		json_object_put(s.seen);
	}
	json_object_put(truth);
	json_object_put(vs.ids.seen);
	json_object_put(vs.without_agents);
	tsapi_free(api);
	fake_stop(&f);
}

static size_t truth_alerts(json_object *truth, bool dismissed, int64_t from, int64_t until)
{
	json_object *alerts;
	size_t n = 0;

	assert_true(json_object_object_get_ex(truth, "alerts", &alerts));
	for (size_t i = 0; i < json_object_array_length(alerts); i++) {
		json_object *a = json_object_array_get_idx(alerts, i), *v;
		int64_t t;

		assert_true(json_object_object_get_ex(a, "createdAt", &v));
		assert_int_equal(parse_iso8601_ms(json_object_get_string(v), &t), 0);
		assert_true(json_object_object_get_ex(a, "isDismissed", &v));
		if (json_object_get_boolean(v) == dismissed && t >= from && t < until)
			n++;
	}
	return n;
}

static void test_alerts_window_and_single_gets(void **state)
{
	static const char *const args[] = { "--alerts", "250", "--page-size", "20", NULL };
	struct tsapi_error err;
	struct fake f;
	struct idset s;
	struct tsapi *api;
	json_object *truth, *alerts, *agents, *v;
	int64_t now = now_ms();
	struct ts_agent ag;
	struct ts_alert al;

	(void)state;
	fake_start(&f, args);
	api = client(f.url, FAKE_API_KEY, NULL);
	truth = fake_control(&f, "/_fake/fleet", NULL);
	for (int dismissed = 0; dismissed <= 1; dismissed++) {
		int64_t from[] = { now - 4 * 86400000LL, now - 86400000LL, now - 3600000LL };

		for (size_t w = 0; w < ARRAY_SIZE(from); w++) {
			idset_init(&s);
			if (tsapi_list_alerts(api, dismissed ? "dismissed" : "active", from[w],
					      now + 60000, on_alert, &s, &err) < 0)
				fail_msg("alerts: %s", err.message);
			assert_int_equal(s.delivered,
					 truth_alerts(truth, dismissed, from[w], now + 60000));
			assert_int_equal(s.dups, 0);
			json_object_put(s.seen);
		}
	}

	/* single GETs */
	assert_true(json_object_object_get_ex(truth, "alerts", &alerts));
	assert_true(json_object_object_get_ex(json_object_array_get_idx(alerts, 3), "id", &v));
	if (tsapi_get_alert(api, json_object_get_string(v), &al, &err) < 0)
		fail_msg("get alert: %s", err.message);
	assert_string_equal(al.id, json_object_get_string(v));
	ts_alert_free(&al);
	assert_true(json_object_object_get_ex(truth, "agents", &agents));
	assert_true(json_object_object_get_ex(json_object_array_get_idx(agents, 5), "id", &v));
	if (tsapi_get_agent(api, json_object_get_string(v), &ag, &err) < 0)
		fail_msg("get agent: %s", err.message);
	assert_string_equal(ag.id, json_object_get_string(v));
	ts_agent_free(&ag);

	assert_int_equal(tsapi_get_agent(api, "no-such-agent", &ag, &err), -ENOENT);
	assert_int_equal(err.code, TSAPI_E_NOT_FOUND);
	assert_int_equal(err.http_status, 404);
	assert_int_equal(err.attempts, 1);
	assert_non_null(strstr(err.message, "GET /v2/agents/no-such-agent"));
	assert_int_equal(tsapi_get_alert(api, "no-such-alert", &al, &err), -ENOENT);
	/* characters that need escaping in a path are escaped, and still signed exactly */
	assert_int_equal(tsapi_get_agent(api, "a b/c?d", &ag, &err), -ENOENT);
	assert_non_null(strstr(err.message, "a%20b%2Fc%3Fd"));
	assert_int_equal(tsapi_get_agent(api, "", &ag, &err), -EINVAL);
	/* ".." would be squashed into another path than the one signed: refused, not sent */
	assert_int_equal(tsapi_get_agent(api, "..", &ag, &err), -EINVAL);
	assert_non_null(strstr(err.message, "not a usable id"));
	assert_int_equal(tsapi_get_alert(api, ".", &al, &err), -EINVAL);
	assert_int_equal(fake_stat(&f, "auth_failures", NULL), 0);
	json_object_put(truth);
	tsapi_free(api);
	fake_stop(&f);
}

/* Lists the default fleet's online agents; returns the listing's result. */
static int list_online(struct tsapi *api, struct tsapi_error *err, size_t *ret_n)
{
	struct idset s;
	int r;

	idset_init(&s);
	r = tsapi_list_agents(api, "online", on_agent, &s, err);
	*ret_n = s.delivered;
	json_object_put(s.seen);
	return r;
}

static void test_faults_recovered(void **state)
{
	static const char *const args[] = { "--agents", "120", "--page-size", "25", NULL };
	static const char *const faults[] = {
		"{\"kind\":\"429\",\"count\":2,\"ms\":30}",
		"{\"kind\":\"429\",\"count\":2}",
		"{\"kind\":\"500\",\"count\":3}",
		"{\"kind\":\"slow\",\"count\":1,\"ms\":1500}",
		"{\"kind\":\"500\",\"count\":1,\"path\":\"/v2/agents\"}",
	};
	struct tsapi_error err;
	struct fake f;
	struct tsapi *api;
	size_t n, base;

	(void)state;
	fake_start(&f, args);
	api = client(f.url, FAKE_API_KEY, &(struct tsapi_options){ .timeout_ms = 400 });
	assert_int_equal(list_online(api, &err, &base), 0);
	assert_true(base > 25); /* several pages */
	for (size_t i = 0; i < ARRAY_SIZE(faults); i++) {
		int64_t before = fake_stat(&f, "api_requests", NULL);

		fake_fault(&f, faults[i]);
		if (list_online(api, &err, &n) < 0)
			fail_msg("after fault %s: %s", faults[i], err.message);
		assert_int_equal(n, base);
		/* the faulty answers were retried: more requests than pages */
		assert_true(fake_stat(&f, "api_requests", NULL) - before > (int64_t)(base / 25));
	}
	tsapi_free(api);
	fake_stop(&f);
}

static struct tsapi_error last_err; /* expect_fail's, for checks on the message */

static void expect_fail(struct fake *f, struct tsapi *api, const char *fault_json,
			enum tsapi_errc code, int errno_ret, unsigned attempts)
{
	struct tsapi_error err;
	int64_t before = fake_stat(f, "api_requests", NULL);
	size_t n;

	if (fault_json)
		fake_fault(f, fault_json);
	assert_int_equal(list_online(api, &err, &n), errno_ret);
	if (err.code != code)
		fail_msg("fault %s: class %s, want %s (%s)", fault_json, tsapi_strerror(err.code),
			 tsapi_strerror(code), err.message);
	if (attempts && err.attempts != attempts)
		fail_msg("fault %s: %u tries, want %u", fault_json, err.attempts, attempts);
	/* the message names the request and never carries the key or the signature */
	assert_non_null(strstr(err.message, "GET /v2/agents?status=online"));
	assert_null(strstr(err.message, FAKE_API_KEY));
	assert_null(strstr(err.message, "mac="));
	assert_true(fake_stat(f, "api_requests", NULL) - before >= (attempts ? attempts : 1));
	json_object_put(fake_control(f, "/_fake/fault", "{\"kind\":\"clear\"}"));
	last_err = err;
}

/* A 200 that does not carry what was asked for fails, for listings and single GETs alike:
 * never an empty page, never an object without its id. Not retried. */
static void test_200_without_collection(void **state)
{
	static const char *const bodies[] = {
		"{\\\"errors\\\":[\\\"internal error\\\"]}",
		"{}",
		"{\\\"agents\\\":null}",
		"{\\\"agents\\\":[1,2]}",
		"{\\\"agents\\\":[{\\\"id\\\":\\\"a\\\"}],\\\"errors\\\":[\\\"partial\\\"]}",
	};
	static const char *const args[] = { "--agents", "30", "--alerts", "5", NULL };
	struct tsapi_error err;
	struct ts_agent ag;
	struct ts_alert al;
	struct fake f;
	struct tsapi *api;
	json_object *truth, *v, *arr;
	char spec[256];

	(void)state;
	fake_start(&f, args);
	api = client(f.url, FAKE_API_KEY, NULL);
	for (size_t i = 0; i < ARRAY_SIZE(bodies); i++) {
		snprintf(spec, sizeof(spec), "{\"kind\":\"body\",\"count\":1,\"body\":\"%s\"}",
			 bodies[i]);
		expect_fail(&f, api, spec, TSAPI_E_BAD_RESPONSE, -EBADMSG, 0);
	}
	truth = fake_control(&f, "/_fake/fleet", NULL);
	assert_true(json_object_object_get_ex(truth, "agents", &arr));
	assert_true(json_object_object_get_ex(json_object_array_get_idx(arr, 0), "id", &v));
	fake_fault(&f,
		   "{\"kind\":\"body\",\"body\":\"{\\\"errors\\\":[\\\"internal error\\\"]}\"}");
	assert_int_equal(tsapi_get_agent(api, json_object_get_string(v), &ag, &err), -EBADMSG);
	assert_int_equal(err.code, TSAPI_E_BAD_RESPONSE);
	assert_non_null(strstr(err.message, "carries \"errors\" (internal error)"));
	fake_fault(&f, "{\"kind\":\"body\",\"body\":\"{}\"}");
	assert_int_equal(tsapi_get_agent(api, json_object_get_string(v), &ag, &err), -EBADMSG);
	assert_non_null(strstr(err.message, "missing id"));
	assert_true(json_object_object_get_ex(truth, "alerts", &arr));
	assert_true(json_object_object_get_ex(json_object_array_get_idx(arr, 0), "id", &v));
	fake_fault(&f, "{\"kind\":\"body\",\"body\":\"{\\\"errors\\\":[\\\"gone\\\"],\\\"id\\\":"
		       "\\\"x\\\"}\"}");
	assert_int_equal(tsapi_get_alert(api, json_object_get_string(v), &al, &err), -EBADMSG);
	assert_non_null(strstr(err.message, "carries \"errors\" (gone)"));
	/* a dense single object names the limit too */
	fake_fault(&f, "{\"kind\":\"dense\",\"bytes\":3000000}");
	assert_int_equal(tsapi_get_alert(api, json_object_get_string(v), &al, &err), -EBADMSG);
	assert_non_null(strstr(err.message, "too dense"));
	assert_non_null(strstr(err.message, "twice max_response (8 MiB)"));
	json_object_put(truth);
	tsapi_free(api);
	fake_stop(&f);
}

static void test_faults_classified(void **state)
{
	static const char *const args[] = { "--agents", "60", "--page-size", "25", NULL };
	struct fake f;
	struct tsapi *api;

	(void)state;
	fake_start(&f, args);
	api = client(f.url, FAKE_API_KEY, &(struct tsapi_options){ .timeout_ms = 300 });
	/* not retried: each is one request */
	expect_fail(&f, api, "{\"kind\":\"401\",\"count\":1}", TSAPI_E_AUTH, -EACCES, 1);
	expect_fail(&f, api, "{\"kind\":\"403\",\"count\":1}", TSAPI_E_PERMISSION, -EPERM, 1);
	expect_fail(&f, api, "{\"kind\":\"truncate\",\"count\":1}", TSAPI_E_BAD_RESPONSE, -EBADMSG,
		    0);
	expect_fail(&f, api, "{\"kind\":\"badtype\",\"count\":1}", TSAPI_E_BAD_RESPONSE, -EBADMSG,
		    0);
	/* retried up to max_attempts, then classified */
	expect_fail(&f, api, "{\"kind\":\"500\",\"count\":5}", TSAPI_E_SERVER, -EIO, 5);
	expect_fail(&f, api, "{\"kind\":\"429\",\"count\":5,\"ms\":10}", TSAPI_E_RATE_LIMITED,
		    -EBUSY, 5);
	expect_fail(&f, api, "{\"kind\":\"slow\",\"count\":5,\"ms\":700}", TSAPI_E_TIMEOUT,
		    -ETIMEDOUT, 5);
	tsapi_free(api);
	/* a tiny response limit and page limit */
	api = client(f.url, FAKE_API_KEY, &(struct tsapi_options){ .max_response = 2000 });
	expect_fail(&f, api, NULL, TSAPI_E_BAD_RESPONSE, -EBADMSG, 1);
	assert_non_null(
		strstr(last_err.message, "response body larger than max_response (2000 bytes)"));
	tsapi_free(api);
	api = client(f.url, FAKE_API_KEY, &(struct tsapi_options){ .max_pages = 1 });
	expect_fail(&f, api, NULL, TSAPI_E_TOO_LONG, -E2BIG, 0);
	assert_string_equal(tsapi_strerror(TSAPI_E_TOO_LONG), "listing longer than max_pages");
	assert_non_null(strstr(last_err.message,
			       "GET /v2/agents?status=online: still more pages "
			       "after 1 (max_pages); listing stopped, incomplete"));
	tsapi_free(api);
	/* a wrong key: 401, not retried */
	api = client(f.url, "not-the-key", NULL);
	expect_fail(&f, api, NULL, TSAPI_E_AUTH, -EACCES, 1);
	tsapi_free(api);
	fake_stop(&f);
}

struct partial {
	struct fake *f;
	struct idset ids;
};

/* On the first agent of page 2, asks the fake to garble the next answer (page 3). */
static int on_agent_then_fault(struct ts_agent *a, void *ud)
{
	struct partial *p = ud;

	if (p->ids.delivered == 10)
		fake_fault(p->f, "{\"kind\":\"badtype\",\"count\":1}");
	return idset_add(&p->ids, a->id);
}

static void test_callback_abort_and_partial(void **state)
{
	static const char *const args[] = { "--agents", "100", "--page-size", "10", NULL };
	struct tsapi_error err;
	struct fake f;
	struct idset s;
	struct tsapi *api;

	(void)state;
	fake_start(&f, args);
	api = client(f.url, FAKE_API_KEY, NULL);
	idset_init(&s);
	s.stop_after = 15;
	assert_int_equal(tsapi_list_agents(api, "online", on_agent, &s, &err), -EINTR);
	assert_int_equal(err.code, TSAPI_E_ABORTED);
	assert_int_equal(s.delivered, 15);
	assert_int_equal(fake_stat(&f, "by_path", "/v2/agents"), 2);
	json_object_put(s.seen);

	/* page 3 is garbage: pages 1 and 2 stay delivered, then the listing fails */
	struct partial p = { .f = &f };

	idset_init(&p.ids);
	assert_int_equal(tsapi_list_agents(api, "online", on_agent_then_fault, &p, &err), -EBADMSG);
	assert_int_equal(err.code, TSAPI_E_BAD_RESPONSE);
	assert_non_null(strstr(err.message, "(page 3)"));
	assert_int_equal(p.ids.delivered, 20);
	json_object_put(p.ids.seen);
	tsapi_free(api);
	fake_stop(&f);
}

static void test_skew_recovery(void **state)
{
	static const char *const args[] = { "--skew-seconds", "300", NULL };
	struct tsapi_error err;
	struct fake f;
	struct tsapi *api;
	size_t n;

	struct tsapi_limiter *org = NULL, *other = NULL;
	struct tsapi_options o = { 0 }, o2 = { 0 };
	struct tsapi *api2;

	(void)state;
	fake_start(&f, args);
	/* The organization's limiter holds the offset: a second client of it needs no 401. */
	assert_int_equal(tsapi_limiter_new(6000, 0, &org), 0);
	o.limiter = o2.limiter = org;
	api = client(f.url, FAKE_API_KEY, &o);
	if (tsapi_self_test(api, &err) < 0)
		fail_msg("self-test with skew: %s", err.message);
	assert_true(tsapi_clock_offset(api) >= 298 && tsapi_clock_offset(api) <= 302);
	assert_int_equal(fake_stat(&f, "auth_failures", NULL), 1);
	/* later requests use the learnt offset: no more 401s */
	assert_int_equal(list_online(api, &err, &n), 0);
	assert_int_equal(fake_stat(&f, "auth_failures", NULL), 1);
	api2 = client(f.url, FAKE_API_KEY, &o2);
	assert_int_equal(tsapi_clock_offset(api2), tsapi_clock_offset(api));
	assert_int_equal(list_online(api2, &err, &n), 0);
	assert_int_equal(fake_stat(&f, "auth_failures", NULL), 1);
	tsapi_free(api2);
	/* the fake's clock jumps back: learnt again */
	json_object_put(fake_control(&f, "/_fake/fleet", "{\"op\":\"skew\",\"seconds\":-200}"));
	assert_int_equal(list_online(api, &err, &n), 0);
	assert_true(tsapi_clock_offset(api) >= -202 && tsapi_clock_offset(api) <= -198);
	tsapi_free(api);

	/* with a wrong key the tsm does not verify: no offset is learnt, no retry */
	assert_int_equal(tsapi_limiter_new(6000, 0, &other), 0);
	o = (struct tsapi_options){ .limiter = other };
	api = client(f.url, "not-the-key", &o);
	assert_int_equal(tsapi_self_test(api, &err), -EACCES);
	assert_int_equal(err.code, TSAPI_E_AUTH);
	assert_int_equal(err.attempts, 1);
	assert_int_equal(tsapi_clock_offset(api), 0);
	tsapi_free(api);
	tsapi_limiter_free(org);
	tsapi_limiter_free(other);
	fake_stop(&f);
}

static void test_rate_limit_live(void **state)
{
	static const char *const args[] = { "--agents", "40", "--page-size", "100", NULL };
	struct tsapi_limiter *lim;
	struct tsapi_error err;
	struct tsapi *a, *b;
	struct fake f;
	int64_t start;
	size_t n;

	(void)state;
	fake_start(&f, args);
	/* 60/min: a burst of 6, then one every 61/55 s; two clients share the limiter */
	assert_int_equal(tsapi_limiter_new(60, 0, &lim), 0);
	a = client(f.url, FAKE_API_KEY, &(struct tsapi_options){ .limiter = lim });
	b = client(f.url, FAKE_API_KEY, &(struct tsapi_options){ .limiter = lim });
	start = monotonic_ms();
	for (int i = 0; i < 9; i++)
		if (list_online(i % 2 ? a : b, &err, &n) < 0)
			fail_msg("listing %d: %s", i, err.message);
	/* a lower bound only: 3 requests beyond the burst cannot go faster than 3 intervals */
	assert_true(monotonic_ms() - start >= 3 * 1109 - 50);
	assert_int_equal(fake_stat(&f, "api_requests", NULL), 9);
	assert_true(fake_stat(&f, "max_per_minute", NULL) <= 60);
	tsapi_free(a);
	tsapi_free(b);
	tsapi_limiter_free(lim);
	fake_stop(&f);
}

static void test_self_test_and_verify(void **state)
{
	struct tsapi_error err;
	struct fake f;
	struct tsapi *api;
	struct config c;

	(void)state;
	fake_start(&f, NULL);
	api = client(f.url, FAKE_API_KEY, NULL);
	assert_int_equal(tsapi_self_test(api, &err), 0);
	assert_int_equal(tsapi_clock_offset(api), 0);
	tsapi_free(api);
	/* a trailing slash on the origin is tolerated */
	{
		char url[80];

		snprintf(url, sizeof(url), "%s/", f.url);
		api = client(url, FAKE_API_KEY, NULL);
		assert_int_equal(tsapi_self_test(api, &err), 0);
		tsapi_free(api);
	}
	/* nothing listens: transport error after retries */
	{
		char url[80];

		snprintf(url, sizeof(url), "http://127.0.0.1:%u", f.port);
		fake_stop(&f);
		api = client(url, FAKE_API_KEY, &(struct tsapi_options){ .max_attempts = 3 });
		assert_int_equal(tsapi_self_test(api, &err), -ECONNREFUSED);
		assert_int_equal(err.code, TSAPI_E_TRANSPORT);
		assert_int_equal(err.attempts, 3);
		tsapi_free(api);
	}
	/* bad arguments */
	make_config(&c, "http://127.0.0.1:1", FAKE_API_KEY);
	c.ts.user_id = NULL;
	assert_int_equal(tsapi_new(&c, NULL, &api, &err), -EINVAL);
	assert_int_equal(err.code, TSAPI_E_INTERNAL);
	tsapi_free(NULL);
}

/* ---- a scripted server for what the fake never does ---- */

struct script {
	unsigned hits;
	const char *mode;
};

static enum MHD_Result scripted(void *cls, struct MHD_Connection *c, const char *url,
				const char *method, const char *version, const char *upload,
				size_t *upload_size, void **con_cls)
{
	struct script *s = cls;
	const char *body = "{\"agents\":[{\"id\":\"a\"}],\"token\":\"same/token+\"}";
	unsigned status = 200;
	struct MHD_Response *resp;
	enum MHD_Result r;

	(void)url, (void)method, (void)version, (void)upload, (void)upload_size, (void)con_cls;
	s->hits++;
	if (strcmp(s->mode, "redirect") == 0) {
		status = 302;
		body = "";
	} else if (strcmp(s->mode, "retry-after") == 0 && s->hits == 1) {
		status = 429;
		body = "slow down";
	} else if (strcmp(s->mode, "retry-after") == 0 || strcmp(s->mode, "nosig") == 0) {
		body = "{\"agents\":[{\"id\":\"a\"}],\"token\":null}";
	} else if (strcmp(s->mode, "bad-request") == 0) {
		status = 400;
		body = "{\"errors\":[\"bad \\\"status\\\"\\n\"]}";
	} else if (strcmp(s->mode, "html-502") == 0) {
		status = 502;
		body = "<html>Bad Gateway</html>";
	} else if (strcmp(s->mode, "badsig") == 0) {
		body = "{\"status\":\"ok\"}";
	}
	resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(resp, "Content-Type", "application/json");
	if (status == 302)
		MHD_add_response_header(resp, "Location", "http://127.0.0.1:1/elsewhere");
	if (status == 429)
		MHD_add_response_header(resp, "Retry-After", "0");
	if (strcmp(s->mode, "badsig") == 0)
		MHD_add_response_header(
			resp, "Server-Authorization",
			"Hawk mac=\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"");
	r = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return r;
}

static void run_scripted(const char *mode, int want, enum tsapi_errc code, unsigned hits)
{
	struct script s = { .mode = mode };
	struct MHD_Daemon *d;
	const union MHD_DaemonInfo *info;
	struct tsapi_error err;
	struct tsapi *api;
	struct idset ids;
	char url[64];
	int r;

	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, scripted, &s,
			     MHD_OPTION_SOCK_ADDR, &sa, MHD_OPTION_END);
	assert_non_null(d);
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", info->port);
	api = client(url, FAKE_API_KEY, NULL);
	idset_init(&ids);
	if (strncmp(mode, "badsig", 6) == 0)
		r = tsapi_self_test(api, &err);
	else if (strcmp(mode, "nosig") == 0)
		r = tsapi_self_test(api, &err);
	else
		r = tsapi_list_agents(api, "online", on_agent, &ids, &err);
	if (r != want || (r < 0 && err.code != code))
		fail_msg("%s: r=%d class %s (%s)", mode, r, tsapi_strerror(err.code), err.message);
	if (strcmp(mode, "bad-request") == 0) /* the server's words, sanitised */
		assert_non_null(strstr(err.message, "HTTP 400 request rejected (server said: bad "
						    "?status?"
						    "?)"));
	assert_int_equal(s.hits, hits);
	json_object_put(ids.seen);
	tsapi_free(api);
	MHD_stop_daemon(d);
}

/* ---- a raw socket server for what libmicrohttpd cannot send: huge response headers ---- */

struct raw_server {
	int fd;
	unsigned port;
	size_t pad;	/* bytes of each X-Pad header */
	unsigned lines; /* how many X-Pad headers */
	pthread_t thread;
};

static void *raw_serve(void *ud)
{
	struct raw_server *rs = ud;
	char req[8192];
	int c;

	while ((c = accept(rs->fd, NULL, NULL)) >= 0) {
		size_t got = 0;
		ssize_t n;
		char *pad = malloc(rs->pad + 16);

		while (got < sizeof(req) - 1 &&
		       (n = read(c, req + got, sizeof(req) - 1 - got)) > 0) {
			got += (size_t)n;
			req[got] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		(void)!write(c, "HTTP/1.1 200 OK\r\n", 17);
		memset(pad, 'a', rs->pad);
		for (unsigned i = 0; pad && i < rs->lines; i++) {
			(void)!write(c, "X-Pad: ", 7);
			(void)!write(c, pad, rs->pad);
			(void)!write(c, "\r\n", 2);
		}
		static const char tail[] = "Content-Type: application/json\r\n"
					   "Content-Length: 13\r\n\r\n{\"agents\":[]}";

		(void)!write(c, tail, sizeof(tail) - 1);
		free(pad);
		close(c);
	}
	return NULL;
}

static void raw_start(struct raw_server *rs, size_t pad, unsigned lines)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
	socklen_t sl = sizeof(sa);

	rs->pad = pad;
	rs->lines = lines;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	rs->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(rs->fd >= 0);
	assert_int_equal(bind(rs->fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(rs->fd, 4), 0);
	assert_int_equal(getsockname(rs->fd, (struct sockaddr *)&sa, &sl), 0);
	rs->port = ntohs(sa.sin_port);
	assert_int_equal(pthread_create(&rs->thread, NULL, raw_serve, rs), 0);
}

static void raw_stop(struct raw_server *rs)
{
	shutdown(rs->fd, SHUT_RDWR);
	close(rs->fd);
	pthread_join(rs->thread, NULL);
}

/* A 300 KB header line is libcurl's "Out of memory"; the message says what was too big.
 * Many smaller header lines are held to TSAPI_HEADERS_MAX in all. Neither is retried. */
static void test_huge_headers(void **state)
{
	static const struct {
		size_t pad;
		unsigned lines;
		const char *why;
	} cases[] = {
		{ 300000, 1, "a response header line is too large" },
		{ 20000, 5, "response headers larger than 64 KiB" },
		{ 1000, 3, NULL },
	};
	struct tsapi_error err;
	struct idset ids;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		struct raw_server rs;
		struct tsapi *api;
		char url[64];
		int r;

		raw_start(&rs, cases[i].pad, cases[i].lines);
		snprintf(url, sizeof(url), "http://127.0.0.1:%u", rs.port);
		api = client(url, FAKE_API_KEY, NULL);
		idset_init(&ids);
		r = tsapi_list_agents(api, "online", on_agent, &ids, &err);
		if (!cases[i].why) {
			if (r != 0)
				fail_msg("small headers: %s", err.message);
		} else {
			assert_int_equal(r, -EBADMSG);
			if (err.code != TSAPI_E_BAD_RESPONSE || !strstr(err.message, cases[i].why))
				fail_msg("%zu x %u: %s (%s), want %s", cases[i].pad, cases[i].lines,
					 tsapi_strerror(err.code), err.message, cases[i].why);
			assert_null(strstr(err.message, "Out of memory"));
			assert_int_equal(err.attempts, 1);
		}
		json_object_put(ids.seen);
		tsapi_free(api);
		raw_stop(&rs);
	}
}

static void test_scripted_server(void **state)
{
	(void)state;
	run_scripted("loop", -EBADMSG, TSAPI_E_BAD_RESPONSE, 2);
	run_scripted("redirect", -EBADMSG, TSAPI_E_BAD_RESPONSE, 1);
	run_scripted("retry-after", 0, TSAPI_OK, 2);
	run_scripted("bad-request", -EINVAL, TSAPI_E_BAD_REQUEST, 1);
	run_scripted("html-502", -EIO, TSAPI_E_SERVER, 5);
	run_scripted("nosig", -EKEYREJECTED, TSAPI_E_VERIFY, 1);
	run_scripted("badsig", -EKEYREJECTED, TSAPI_E_VERIFY, 1);
}

/* The daemon's before_request hook (webhook refreshes ahead of a full sync's request) takes
 * nothing from the request's retry budget: after a 1.2 s hook, a retryable 500 is still
 * retried within a 1.5 s budget (the request itself takes a few ms). */
static int hook_calls;

static void slow_hook(void *ud)
{
	(void)ud;
	if (hook_calls++ == 0)
		nanosleep(&(struct timespec){ .tv_sec = 1, .tv_nsec = 200000000 }, NULL);
}

static void test_hook_time_not_in_retry_budget(void **state)
{
	static const char *const args[] = { "--agents", "10", NULL };
	struct tsapi_error err;
	struct fake f;
	struct tsapi *api;
	size_t n;

	(void)state;
	fake_start(&f, args);
	api = client(f.url, FAKE_API_KEY,
		     &(struct tsapi_options){ .timeout_ms = 400,
					      .retry_budget_ms = 1500,
					      .before_request = slow_hook });
	fake_fault(&f, "{\"kind\":\"500\",\"count\":1}");
	hook_calls = 0;
	if (list_online(api, &err, &n) < 0)
		fail_msg("not retried: %s (%u tries)\n", err.message, err.attempts);
	tsapi_free(api);
	fake_stop(&f);
}

static int setup(void **state)
{
	(void)state;
	return tsapi_limiter_new(6000, 0, &fast_limiter);
}

static int teardown(void **state)
{
	(void)state;
	tsapi_limiter_free(fast_limiter);
	return 0;
}

static void feed(struct tsapi_headers *h, const char *line)
{
	tsapi_header_line(h, line, strlen(line));
}

static void said_of(const char *body, char said[static TSAPI_SAID_MAX + 1])
{
	tsapi_server_said(body, strlen(body), said);
}

/* What the client keeps of an answer's header lines, fed as libcurl feeds them. */
static void test_header_lines(void **state)
{
	static const char *const lines[] = {
		"HTTP/1.1 100 Continue\r\n",
		"Retry-After: 5\r\n",
		"HTTP/1.1 429 Too Many Requests\r\n", /* a new answer: the 100's are gone */
		"Retry-After: 3\r\n",
		"x-rate-limit-reset: 15000\r\n", /* takes precedence over Retry-After */
		"Retry-After: 9\r\n",
		"content-type:  application/json; charset=utf-8 \r\n",
		"Server-Authorization: Hawk mac=\"abc\"\r\n",
		"WWW-Authenticate: Hawk ts=\"1\", tsm=\"x\"\r\n",
		"WWW-Authenticate-Extra: nope\r\n",
		"X-Server-Authorization: nope\r\n",
		"\r\n",
	};
	struct tsapi_headers h;
	char big[TSAPI_HEADER_VALUE_MAX + 64];
	size_t n;

	(void)state;
	tsapi_headers_reset(&h);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		feed(&h, lines[i]);
	assert_int_equal(h.reset_ms, 15000);
	assert_string_equal(h.content_type, "application/json; charset=utf-8");
	assert_string_equal(h.server_authorization, "Hawk mac=\"abc\"");
	assert_string_equal(h.www_authenticate, "Hawk ts=\"1\", tsm=\"x\"");

	/* Retry-After alone, in seconds; an HTTP-date or an out-of-range number is not taken */
	feed(&h, "HTTP/2 503\r\n");
	assert_int_equal(h.reset_ms, -1);
	assert_string_equal(h.server_authorization, "");
	feed(&h, "retry-after: Wed, 21 Oct 2015 07:28:00 GMT\r\n");
	feed(&h, "x-rate-limit-reset: 2147483648\r\n");
	assert_int_equal(h.reset_ms, -1);
	feed(&h, "Retry-After: 7\r\n");
	assert_int_equal(h.reset_ms, 7000);

	/* only len bytes are read; a value too long to keep is cut (it will not verify) */
	tsapi_header_line(&h, "Content-Type: text/htmlXXXX", 23); /* text/html */
	assert_string_equal(h.content_type, "text/html");
	n = (size_t)snprintf(big, sizeof(big), "Server-Authorization: ");
	memset(big + n, 'a', sizeof(big) - n);
	tsapi_header_line(&h, big, sizeof(big));
	assert_int_equal(strlen(h.server_authorization), TSAPI_HEADER_VALUE_MAX - 1);
	feed(&h, "Server-Authorization:");
	assert_string_equal(h.server_authorization, "");
}

/* The message quoted from an error body: printable, no quotes, bounded, never past len. */
static void test_server_said(void **state)
{
	static const char body[] = "{\"errors\":[\"Rate limit exceeded\"]}trailing";
	char said[TSAPI_SAID_MAX + 1], big[400];
	size_t n;

	(void)state;
	said_of(body, said);
	assert_string_equal(said, "Rate limit exceeded");
	tsapi_server_said(body, 20, said); /* cut short: not JSON */
	assert_string_equal(said, "");
	said_of("{\"errors\":[\"a\\\"b\\nc\\u0001d\"]}", said);
	assert_string_equal(said, "a?b?c?d");
	said_of("{\"errors\":[\"x\\u0000y\"]}", said);
	assert_string_equal(said, "x");
	said_of("{\"errors\":[{\"message\":\"x\"}]}", said);
	assert_string_equal(said, "");
	said_of("{\"errors\":\"x\"}", said);
	assert_string_equal(said, "");
	said_of("{\"errors\":[]}", said);
	assert_string_equal(said, "");
	tsapi_server_said("", 0, said);
	assert_string_equal(said, "");
	n = (size_t)snprintf(big, sizeof(big), "{\"errors\":[\"");
	memset(big + n, 'z', 300);
	n += 300;
	n += (size_t)snprintf(big + n, sizeof(big) - n, "\"]}");
	tsapi_server_said(big, n, said);
	assert_int_equal(strlen(said), TSAPI_SAID_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_limiter_math),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_agents_10000),
		cmocka_unit_test(test_vulns_and_servers),
		cmocka_unit_test(test_alerts_window_and_single_gets),
		cmocka_unit_test(test_faults_recovered),
		cmocka_unit_test(test_faults_classified),
		cmocka_unit_test(test_callback_abort_and_partial),
		cmocka_unit_test(test_skew_recovery),
		cmocka_unit_test(test_rate_limit_live),
		cmocka_unit_test(test_self_test_and_verify),
		cmocka_unit_test(test_hook_time_not_in_retry_budget),
		cmocka_unit_test(test_scripted_server),
		cmocka_unit_test(test_200_without_collection),
		cmocka_unit_test(test_huge_headers),
		cmocka_unit_test(test_header_lines),
		cmocka_unit_test(test_server_said),
	};
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
