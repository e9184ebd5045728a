/* Unit tests for tsjson: the API object parsers and the listing page splitter, on good,
 * odd-but-legal and malformed input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <valgrind/valgrind.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>

#include "tsgraphd/tsjson.h"
#include "tsgraphd/util.h"

static json_object *parse(const char *s)
{
	json_object *o = json_tokener_parse(s);

	assert_non_null(o);
	return o;
}

static int agent_from(const char *s, struct ts_agent *a, char *err)
{
	json_object *o = parse(s);
	int r = tsjson_agent(o, a, err);

	json_object_put(o);
	return r;
}

static int alert_from(const char *s, struct ts_alert *a, char *err)
{
	json_object *o = parse(s);
	int r = tsjson_alert(o, a, err);

	json_object_put(o);
	return r;
}

static int vuln_from(const char *s, struct ts_vuln *v, char *err)
{
	json_object *o = parse(s);
	int r = tsjson_vuln(o, v, err);

	json_object_put(o);
	return r;
}

static void test_agent_full(void **state)
{
	struct ts_agent a;
	char err[TSJSON_ERR_MAX];

	(void)state;
	assert_int_equal(
		agent_from(
			"{\"id\":\"3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02\",\"instanceId\":\"i-"
			"04c1\","
			"\"status\":\"online\",\"createdAt\":\"2020-05-01T12:00:03.117Z\","
			"\"lastReportedAt\":\"2020-05-03T08:41:55.902Z\",\"version\":\"2.5.0\","
			"\"name\":\"api-prod-1\",\"description\":\"\",\"hostname\":\"Ip_10 20.X\","
			"\"ipAddresses\":{\"private\":[\"10.20.3.41/"
			"24\"],\"public\":\"54.12.34.56\","
			"\"link_local\":[\"fe80::8ff:2aff:fe11:2233/64\",null,\"\"]},"
			"\"tags\":[{\"source\":\"ec2\",\"key\":\"Name\",\"value\":\"api\"},"
			"{\"source\":null,\"key\":\"env\",\"value\":\"prod\"},{\"key\":null}],"
			"\"agentType\":\"investigate\",\"osVersion\":\"amzn\",\"kernel\":\"4.14\","
			"\"agentModuleHealth\":{\"isHealthy\":true}}",
			&a, err),
		0);
	assert_string_equal(a.id, "3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02");
	assert_string_equal(a.instance_id, "i-04c1");
	assert_string_equal(a.status, "online");
	assert_string_equal(a.hostname, "Ip_10 20.X");
	assert_string_equal(a.description, "");
	assert_int_equal(a.created_at, 1588334403117LL);
	assert_int_equal(a.ip_private.n, 1);
	assert_string_equal(a.ip_private.v[0], "10.20.3.41");
	assert_int_equal(a.ip_public.n, 1);
	assert_string_equal(a.ip_public.v[0], "54.12.34.56");
	assert_int_equal(a.ip_link_local.n, 1);
	assert_string_equal(a.ip_link_local.v[0], "fe80::8ff:2aff:fe11:2233");
	assert_int_equal(a.n_tags, 2);
	assert_string_equal(a.tags[0].source, "ec2");
	assert_null(a.tags[1].source);
	assert_string_equal(a.tags[1].value, "prod");
	assert_int_equal(a.healthy, 1);
	ts_agent_free(&a);
	ts_agent_free(&a); /* idempotent on a freed struct */
	ts_agent_free(NULL);
}

static void test_agent_minimal_and_nulls(void **state)
{
	struct ts_agent a;
	char err[TSJSON_ERR_MAX];

	(void)state;
	assert_int_equal(agent_from("{\"id\":\"0123456789abcdef01234567\",\"name\":null,"
				    "\"instanceId\":null,\"ipAddresses\":null,\"tags\":null,"
				    "\"createdAt\":\"1588334403117\",\"lastReportedAt\":12345,"
				    "\"agentModuleHealth\":{\"isHealthy\":\"false\"}}",
				    &a, err),
			 0);
	assert_null(a.name);
	assert_null(a.instance_id);
	assert_null(a.status);
	assert_int_equal(a.ip_private.n, 0);
	assert_int_equal(a.n_tags, 0);
	assert_int_equal(a.created_at, 1588334403117LL); /* numeric string: ms */
	assert_int_equal(a.last_reported_at, 12345);
	assert_int_equal(a.healthy, 0);
	ts_agent_free(&a);

	assert_int_equal(agent_from("{\"id\":\"x\",\"createdAt\":\"last tuesday\"}", &a, err), 0);
	assert_int_equal(a.created_at, TSJSON_TIME_UNKNOWN);
	assert_int_equal(a.last_reported_at, TSJSON_TIME_UNKNOWN);
	assert_int_equal(a.healthy, -1);
	ts_agent_free(&a);

	/* a bare string ipAddresses is one private address */
	assert_int_equal(agent_from("{\"id\":\"x\",\"ipAddresses\":\"10.0.0.1/8\"}", &a, err), 0);
	assert_int_equal(a.ip_private.n, 1);
	assert_string_equal(a.ip_private.v[0], "10.0.0.1");
	ts_agent_free(&a);
}

static void expect_agent_bad(const char *json, const char *needle)
{
	struct ts_agent a;
	char err[TSJSON_ERR_MAX];

	memset(&a, 0x5a, sizeof(a)); /* ret must be untouched on failure */
	assert_int_equal(agent_from(json, &a, err), -EBADMSG);
	if (!strstr(err, needle))
		fail_msg("error '%s' lacks '%s' for %s", err, needle, json);
	assert_true(a.id == (char *)0x5a5a5a5a5a5a5a5aULL);
}

static void test_agent_malformed(void **state)
{
	(void)state;
	expect_agent_bad("{}", "missing id");
	expect_agent_bad("{\"id\":null}", "missing id");
	expect_agent_bad("{\"id\":\"\"}", "missing id");
	expect_agent_bad("{\"id\":12345}", "id: not a string");
	expect_agent_bad("[]", "not an object");
	expect_agent_bad("\"agent\"", "not an object");
	expect_agent_bad("{\"id\":\"a\",\"name\":[\"x\"]}", "name: not a string");
	expect_agent_bad("{\"id\":\"a\",\"hostname\":{\"a\":{\"b\":[1,2,{}]}}}", "hostname");
	expect_agent_bad("{\"id\":\"a\",\"createdAt\":true}", "createdAt: not a time");
	expect_agent_bad("{\"id\":\"a\",\"ipAddresses\":[\"1.2.3.4\"]}", "ipAddresses");
	expect_agent_bad("{\"id\":\"a\",\"ipAddresses\":{\"private\":[1]}}", "ipAddresses.private");
	expect_agent_bad("{\"id\":\"a\",\"ipAddresses\":{\"public\":7}}", "ipAddresses.public");
	expect_agent_bad("{\"id\":\"a\",\"tags\":{}}", "tags: not an array");
	expect_agent_bad("{\"id\":\"a\",\"tags\":[\"k=v\"]}", "tags[0]: not an object");
	expect_agent_bad("{\"id\":\"a\",\"tags\":[{\"key\":\"k\",\"value\":3}]}", "value");
	expect_agent_bad("{\"id\":\"a\",\"agentModuleHealth\":{\"isHealthy\":\"maybe\"}}",
			 "isHealthy: not a boolean");
	expect_agent_bad("{\"id\":\"a\",\"agentModuleHealth\":true}", "agentModuleHealth");
	expect_agent_bad("{\"id\":\"a\\u0000b\"}", "NUL");
	/* the error names the agent with a sanitised excerpt, not raw bytes */
	expect_agent_bad("{\"id\":\"evil\\nid\\\"x\",\"name\":5}", "agent evil?id?x: name");
}

static void test_agent_bounds(void **state)
{
	struct ts_agent a;
	char err[TSJSON_ERR_MAX];
	struct buf b;

	(void)state;
	/* a string one byte over the limit fails; at the limit it is kept */
	for (int over = 0; over <= 1; over++) {
		buf_init(&b, 1 << 20);
		assert_int_equal(buf_puts(&b, "{\"id\":\"a\",\"kernel\":\""), 0);
		for (int i = 0; i < TSJSON_STR_MAX + over; i++)
			assert_int_equal(buf_puts(&b, "k"), 0);
		assert_int_equal(buf_puts(&b, "\"}"), 0);
		if (over) {
			assert_int_equal(agent_from(b.data, &a, err), -EBADMSG);
			assert_non_null(strstr(err, "kernel: longer than"));
			assert_null(strstr(err, "kkkk"));
		} else {
			assert_int_equal(agent_from(b.data, &a, err), 0);
			assert_int_equal(strlen(a.kernel), TSJSON_STR_MAX);
			ts_agent_free(&a);
		}
		buf_free(&b);
	}
	/* more addresses than TSJSON_LIST_MAX */
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_puts(&b, "{\"id\":\"a\",\"ipAddresses\":{\"private\":["), 0);
	for (int i = 0; i <= TSJSON_LIST_MAX; i++)
		assert_int_equal(buf_printf(&b, "%s\"10.0.%d.%d\"", i ? "," : "", i / 256, i % 256),
				 0);
	assert_int_equal(buf_puts(&b, "]}}"), 0);
	assert_int_equal(agent_from(b.data, &a, err), -EBADMSG);
	assert_non_null(strstr(err, "more than"));
	buf_free(&b);
}

static void test_vuln(void **state)
{
	struct ts_vuln v;
	char err[TSJSON_ERR_MAX];
	struct buf b;

	(void)state;
	assert_int_equal(
		vuln_from("{\"cveNumber\":\"CVE-2019-11477\",\"reportedPackage\":\"kernel\","
			  "\"severity\":\"HIGH\",\"isSuppressed\":false,"
			  "\"securityNotices\":[],\"agents\":[{\"agentId\":\"a1\"},"
			  "{\"agentId\":null},\"a2\",null]}",
			  &v, err),
		0);
	assert_string_equal(v.cve, "CVE-2019-11477");
	assert_string_equal(v.severity, "high");
	assert_int_equal(v.suppressed, 0);
	assert_true(v.has_agents);
	assert_int_equal(v.agent_ids.n, 2);
	assert_string_equal(v.agent_ids.v[0], "a1");
	assert_string_equal(v.agent_ids.v[1], "a2");
	ts_vuln_free(&v);

	/* no agents member: ask /servers */
	assert_int_equal(vuln_from("{\"cveNumber\":\"CVE-1\"}", &v, err), 0);
	assert_false(v.has_agents);
	assert_int_equal(v.suppressed, -1);
	ts_vuln_free(&v);

	/* more agents than a list holds: dropped, has_agents false, so /servers is asked */
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_puts(&b, "{\"cveNumber\":\"CVE-2\",\"agents\":["), 0);
	for (int i = 0; i <= TSJSON_LIST_MAX; i++)
		assert_int_equal(buf_printf(&b, "%s{\"agentId\":\"a%d\"}", i ? "," : "", i), 0);
	assert_int_equal(buf_puts(&b, "]}"), 0);
	assert_int_equal(vuln_from(b.data, &v, err), 0);
	assert_false(v.has_agents);
	assert_int_equal(v.agent_ids.n, 0);
	ts_vuln_free(&v);
	buf_free(&b);

	assert_int_equal(vuln_from("{\"severity\":\"high\"}", &v, err), -EBADMSG);
	assert_non_null(strstr(err, "missing cveNumber"));
	assert_int_equal(vuln_from("{\"cveNumber\":\"CVE-3\",\"agents\":{}}", &v, err), -EBADMSG);
	assert_int_equal(
		vuln_from("{\"cveNumber\":\"CVE-3\",\"agents\":[{\"agentId\":5}]}", &v, err),
		-EBADMSG);
	assert_non_null(strstr(err, "vulnerability CVE-3: agents[0].agentId"));
	assert_int_equal(vuln_from("{\"cveNumber\":\"CVE-3\",\"isSuppressed\":[]}", &v, err),
			 -EBADMSG);
}

static void test_server(void **state)
{
	struct ts_server s;
	char err[TSJSON_ERR_MAX];
	json_object *o;

	(void)state;
	o = parse("{\"agentId\":\"a1\",\"hostname\":\"web 1\"}");
	assert_int_equal(tsjson_server(o, &s, err), 0);
	assert_string_equal(s.agent_id, "a1");
	assert_string_equal(s.hostname, "web 1");
	ts_server_free(&s);
	json_object_put(o);
	o = parse("{\"hostname\":\"web 1\"}");
	assert_int_equal(tsjson_server(o, &s, err), -EBADMSG);
	json_object_put(o);
	o = parse("{\"agentId\":1}");
	assert_int_equal(tsjson_server(o, &s, err), -EBADMSG);
	json_object_put(o);
	assert_int_equal(tsjson_server(NULL, &s, err), -EBADMSG);
}

static void test_alert(void **state)
{
	struct ts_alert a;
	char err[TSJSON_ERR_MAX];

	(void)state;
	assert_int_equal(
		alert_from("{\"id\":\"5ec2a7e1c9f3b200015a1b2c\",\"title\":\"sudo\","
			   "\"dataSource\":\"host\",\"createdAt\":\"2020-05-18T15:02:09.000Z\","
			   "\"isDismissed\":true,\"dismissedAt\":\"2020-05-19T00:00:00Z\","
			   "\"dismissReason\":\"MAINTENANCE\",\"dismissReasonText\":null,"
			   "\"dismissedBy\":\"alice\",\"severity\":2,\"agentId\":\"a1\","
			   "\"ruleId\":\"r\",\"rulesetId\":\"rs\"}",
			   &a, err),
		0);
	assert_string_equal(a.id, "5ec2a7e1c9f3b200015a1b2c");
	assert_int_equal(a.created_at, 1589814129000LL);
	assert_int_equal(a.dismissed_at, 1589846400000LL);
	assert_int_equal(a.severity, 2);
	assert_int_equal(a.dismissed, 1);
	assert_string_equal(a.dismiss_reason, "MAINTENANCE");
	assert_null(a.dismiss_reason_text);
	ts_alert_free(&a);

	/* legacy dismissedReason, numeric-string severity, CloudTrail without agentId */
	assert_int_equal(
		alert_from("{\"id\":\"b\",\"dismissedReason\":\"OTHER\",\"severity\":\"3\","
			   "\"dataSource\":\"cloudtrail\",\"createdAt\":1589814129000}",
			   &a, err),
		0);
	assert_string_equal(a.dismiss_reason, "OTHER");
	assert_int_equal(a.severity, 3);
	assert_null(a.agent_id);
	assert_int_equal(a.created_at, 1589814129000LL);
	assert_int_equal(a.dismissed, -1);
	ts_alert_free(&a);

	/* both names: the current one wins; out-of-range severity is 0 */
	assert_int_equal(
		alert_from("{\"id\":\"c\",\"dismissedReason\":\"OTHER\","
			   "\"dismissReason\":\"BUSINESS_OP\",\"severity\":9,\"agentId\":\"\"}",
			   &a, err),
		0);
	assert_string_equal(a.dismiss_reason, "BUSINESS_OP");
	assert_int_equal(a.severity, 0);
	assert_null(a.agent_id);
	ts_alert_free(&a);

	assert_int_equal(alert_from("{\"id\":\"d\",\"severity\":\"high\"}", &a, err), 0);
	assert_int_equal(a.severity, 0);
	ts_alert_free(&a);

	assert_int_equal(alert_from("{\"title\":\"x\"}", &a, err), -EBADMSG);
	assert_non_null(strstr(err, "missing id"));
	assert_int_equal(alert_from("{\"id\":\"e\",\"severity\":[1]}", &a, err), -EBADMSG);
	assert_int_equal(alert_from("{\"id\":\"e\",\"isDismissed\":1}", &a, err), -EBADMSG);
	assert_int_equal(alert_from("{\"id\":\"e\",\"title\":{}}", &a, err), -EBADMSG);
	assert_int_equal(alert_from("{\"id\":7}", &a, err), -EBADMSG);
}

static int page(const char *body, const char *coll, size_t *ret_n, char **ret_token, char *err)
{
	json_object *root = NULL, *items = NULL;
	const char *tok = NULL;
	int r = tsjson_page(body, strlen(body), 0, coll, &root, &items, &tok, err);

	if (r == 0) {
		*ret_n = items ? json_object_array_length(items) : 0;
		*ret_token = tok ? strdup(tok) : NULL;
		json_object_put(root);
	}
	return r;
}

/* A 200 page that does not carry its collection as an array of objects is a failed page,
 * never an empty one: read as "no agents", it would delete every agent of the listing. */
static void test_page_without_collection(void **state)
{
	static const struct {
		const char *body, *why;
	} cases[] = {
		{ "{\"errors\":[\"internal error\"]}", "carries \"errors\" (internal error)" },
		{ "{\"errors\":\"boom\"}", "carries \"errors\" (boom)" },
		{ "{\"agents\":[{\"id\":\"a\"}],\"errors\":[\"partial\"]}", "\"errors\"" },
		{ "{\"errors\":[\"\\u001b[31mred\"]}", "(?[31mred)" },
		{ "{}", "no \"agents\" member" },
		{ "{\"token\":null}", "no \"agents\" member" },
		{ "{\"cves\":[{}]}", "no \"agents\" member" },
		{ "{\"agents\":null}", "\"agents\" is null, not an array" },
		{ "{\"agents\":\"none\"}", "\"agents\" is string, not an array" },
		{ "{\"agents\":[1,2]}", "\"agents\"[0] is int, not an object" },
		{ "{\"agents\":[{\"id\":\"a\"},null]}", "\"agents\"[1] is null, not an object" },
		{ "{\"agents\":[{\"id\":\"a\"},[]]}", "\"agents\"[1] is array, not an object" },
	};
	char err[TSJSON_ERR_MAX], *tok = NULL;
	size_t n;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = page(cases[i].body, "agents", &n, &tok, err);

		if (r != -EBADMSG || !strstr(err, cases[i].why))
			fail_msg("%s: r=%d err=%s, want %s", cases[i].body, r, err, cases[i].why);
		assert_null(strchr(err, '\x1b'));
	}
	/* the same for a single object: tsjson_errors() flags the API's error shape */
	{
		json_object *root = NULL;

		assert_int_equal(tsjson_document("{\"errors\":[\"nope\"]}", 19, 0, &root, err), 0);
		assert_int_equal(tsjson_errors(root, err), -EBADMSG);
		assert_non_null(strstr(err, "(nope)"));
		json_object_put(root);
		assert_int_equal(tsjson_document("{\"id\":\"x\",\"errors\":[]}", 22, 0, &root, err),
				 0);
		assert_int_equal(tsjson_errors(root, err), 0);
		json_object_put(root);
	}
}

static void test_page(void **state)
{
	char err[TSJSON_ERR_MAX], *tok = NULL;
	size_t n = 99;

	(void)state;
	assert_int_equal(page("{\"agents\":[{},{}],\"token\":\"abc\"}", "agents", &n, &tok, err),
			 0);
	assert_int_equal(n, 2);
	assert_string_equal(tok, "abc");
	free(tok);
	assert_int_equal(page("{\"agents\":[],\"paginationToken\":\"p\"}", "agents", &n, &tok, err),
			 0);
	assert_string_equal(tok, "p");
	free(tok);
	assert_int_equal(page("{\"agents\":[{}],\"token\":null} \n", "agents", &n, &tok, err), 0);
	assert_null(tok);
	assert_int_equal(page("{\"agents\":[{}],\"token\":\"\"}", "agents", &n, &tok, err), 0);
	assert_null(tok);
	assert_int_equal(page("{\"agents\":[],\"errors\":[]}", "agents", &n, &tok, err), 0);
	assert_int_equal(n, 0);
	assert_null(tok);

	assert_int_equal(page("{\"agents\":{\"a\":1}}", "agents", &n, &tok, err), -EBADMSG);
	assert_non_null(strstr(err, "not an array"));
	assert_int_equal(page("{\"agents\":[{}],\"token\":5}", "agents", &n, &tok, err), -EBADMSG);
	assert_int_equal(page("{\"agents\":[{\"id\":\"a\"},{\"id\":\"b", "agents", &n, &tok, err),
			 -EBADMSG);
	assert_non_null(strstr(err, "truncated"));
	assert_int_equal(page("<html>502</html>", "agents", &n, &tok, err), -EBADMSG);
	assert_int_equal(page("[1,2]", "agents", &n, &tok, err), -EBADMSG);
	assert_int_equal(page("{\"agents\":[]} {\"x\":1}", "agents", &n, &tok, err), -EBADMSG);
	assert_non_null(strstr(err, "trailing"));
	assert_int_equal(page("", "agents", &n, &tok, err), -EBADMSG);
	/* nesting deeper than the tokenizer allows */
	{
		char deep[2 * 200 + 1];
		for (int i = 0; i < 200; i++) {
			deep[i] = '[';
			deep[200 + i] = ']';
		}
		deep[400] = '\0';
		assert_int_equal(page(deep, "agents", &n, &tok, err), -EBADMSG);
	}
}

static char *repeat(const char *head, const char *item, size_t n, const char *tail, size_t *ret_len)
{
	size_t hl = strlen(head), il = strlen(item), tl = strlen(tail), len = 0;
	char *b = malloc(hl + n * (il + 1) + tl + 1);

	assert_non_null(b);
	memcpy(b, head, hl);
	len = hl;
	for (size_t i = 0; i < n; i++) {
		if (i)
			b[len++] = ',';
		memcpy(b + len, item, il);
		len += il;
	}
	memcpy(b + len, tail, tl + 1);
	*ret_len = len + tl;
	return b;
}

/* A small body of empty objects, or a larger one of bare scalars, would cost json-c
 * hundreds of megabytes: refused before parsing, with a message that names the limit.
 * (Before: only objects and arrays were counted, so 4 million scalars parsed into 300 MB.) */
static void test_document_density(void **state)
{
	char err[TSJSON_ERR_MAX], *b;
	json_object *root = NULL;
	size_t len;

	(void)state;
	b = repeat("{\"agents\":[", "{}", 131072, "]}", &len);
	assert_int_equal(tsjson_document(b, len, 0, &root, err), -E2BIG);
	assert_non_null(strstr(err, "too dense"));
	assert_non_null(strstr(err, "(limit 16 MiB)"));
	assert_null(root);
	free(b);

	b = repeat("{\"agents\":[],\"x\":[", "0", 4u << 20, "]}", &len); /* 8 MiB, 4 Mi values */
	assert_int_equal(tsjson_document(b, len, 0, &root, err), -E2BIG);
	assert_non_null(strstr(err, "JSON values or more"));
	assert_null(root);
	free(b);

	/* the same shape, a little of it, is fine; a budget is the caller's to set */
	b = repeat("{\"agents\":[],\"x\":[", "0", 1000, "]}", &len);
	assert_int_equal(tsjson_document(b, len, 0, &root, err), 0);
	json_object_put(root);
	root = NULL;
	assert_int_equal(tsjson_document(b, len, 4096, &root, err), -E2BIG);
	assert_non_null(strstr(err, "(limit 4 KiB)"));
	free(b);

	/* braces and digits inside strings are string bytes, not values */
	len = 0;
	b = malloc(300000);
	len = (size_t)snprintf(b, 300000, "{\"title\":\"");
	for (int i = 0; i < 200000; i++)
		b[len++] = i % 3 ? '{' : '0';
	memcpy(b + len, "\\\"\"}", 5); /* an escaped quote, then the real end */
	len += 4;
	assert_int_equal(tsjson_document(b, len, 0, &root, err), 0);
	json_object_put(root);
	free(b);
}

/* The estimate is an upper bound of what json-c really allocates: for every shape, a body
 * the budget accepts costs at most the budget (measured with mallinfo2; 0 under ASan). */
static void test_document_budget_holds(void **state)
{
	static const char *const shapes[] = {
		"0",
		"\"abcdefgh\"",
		"{}",
		"[]",
		"{\"agentId\":\"3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02\"}",
		"{\"a\":0,\"b\":0,\"c\":0,\"d\":0,\"e\":0,\"f\":0,\"g\":0,\"h\":0,\"i\":0,\"j\":0,"
		"\"k\":0,\"l\":0,\"m\":0,\"n\":0,\"o\":0,\"p\":0,\"q\":0}",
		"[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]",
		"{\"id\":\"3f9c2a10\",\"ipAddresses\":{\"private\":[\"10.0.0.1/"
		"24\"],\"public\":[]},"
		"\"tags\":[{\"source\":null,\"key\":\"env\",\"value\":\"prod\"}],\"x\":true}",
	};
	const size_t budget = 1u << 20;
	char err[TSJSON_ERR_MAX];

	(void)state;
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
		bool accepted = false, refused = false;

		for (size_t n = 64; n <= 65536; n *= 2) {
			json_object *root = NULL;
			size_t len, before, after;
			char *b = repeat("{\"agents\":[", shapes[s], n, "]}", &len);
			int r;

			before = mallinfo2().uordblks;
			r = tsjson_document(b, len, budget, &root, err);
			after = mallinfo2().uordblks;
			free(b);
			if (r == -E2BIG) {
				refused = true;
				continue;
			}
			assert_int_equal(r, 0);
			accepted = true;
			/* mallinfo2 sees glibc's heap only: not ASan's, not valgrind's. */
#ifndef __SANITIZE_ADDRESS__
			if (!RUNNING_ON_VALGRIND)
				assert_true(after > before); /* the measure measures */
#endif
			if (after > before && after - before > budget)
				fail_msg("%s x %zu: %zu bytes parsed, budget %zu", shapes[s], n,
					 after - before, budget);
			json_object_put(root);
		}
		assert_true(accepted);
		assert_true(refused);
	}
}

/* --- the alert webhook's body ----------------------------------------------------------- */

#define ORG "545d0293b620cd090d000023"

static int webhook(const char *body, struct ts_webhook *w, char *err)
{
	return tsjson_webhook(body, strlen(body), ORG, w, err);
}

static void webhook_refused(const char *body, int want, const char *want_err)
{
	struct ts_webhook w = { 0 };
	char err[TSJSON_ERR_MAX];

	assert_int_equal(webhook(body, &w, err), want);
	assert_string_equal(err, want_err);
	assert_null(strchr(err, '\n'));
	assert_int_equal(w.n, 0);
}

static void test_webhook_shapes(void **state)
{
	struct ts_webhook w = { 0 };
	char err[TSJSON_ERR_MAX];

	(void)state;
	/* the reference's example, wrapped */
	assert_int_equal(
		webhook("{\"alerts\":[{\"id\":\"5ec2a7e1c9f3b200015a1b2c\","
			"\"title\":\"Threat Intelligence Activity: Communication to openbl by "
			"185.110.132.54\",\"created_at\":1589814129000,\"severity\":1,"
			"\"organization_id\":\"" ORG "\",\"organization_Name\":\"Prod\","
			"\"server_or_region\":\"ip-10-20-3-41\",\"source\":\"Host\"}]}",
			&w, err),
		0);
	assert_int_equal(w.n, 1);
	assert_string_equal(w.alerts[0].id, "5ec2a7e1c9f3b200015a1b2c");
	assert_int_equal(w.alerts[0].created_at, 1589814129000);
	assert_int_equal(w.alerts[0].severity, 1);
	assert_string_equal(w.alerts[0].organization_name, "Prod");
	assert_string_equal(w.alerts[0].server_or_region, "ip-10-20-3-41");
	assert_string_equal(w.alerts[0].source, "Host");
	assert_non_null(strstr(w.alerts[0].json, "\"id\":\"5ec2a7e1c9f3b200015a1b2c\""));
	assert_null(strchr(w.alerts[0].json, '\n'));
	ts_webhook_free(&w);

	/* bare, numbers as strings, the name in another case, unknown members, no org id */
	assert_int_equal(webhook(" {\"id\":\"a-1\",\"created_at\":\"1459447024000\",\"severity\":"
				 "\"3\",\"ORGANIZATION_NAME\":\"x\",\"extra\":{\"deep\":[1,2]}}\n",
				 &w, err),
			 0);
	assert_int_equal(w.n, 1);
	assert_int_equal(w.alerts[0].created_at, 1459447024000);
	assert_int_equal(w.alerts[0].severity, 3);
	assert_string_equal(w.alerts[0].organization_name, "x");
	assert_null(w.alerts[0].organization_id);
	ts_webhook_free(&w);

	/* several alerts in one call; an integer id; out-of-range severity is unknown */
	assert_int_equal(webhook("{\"alerts\":[{\"id\":\"a\"},{\"id\":12345,\"severity\":9},"
				 "{\"id\":\"a\"}]}",
				 &w, err),
			 0);
	assert_int_equal(w.n, 3);
	assert_string_equal(w.alerts[1].id, "12345");
	assert_int_equal(w.alerts[1].severity, 0);
	ts_webhook_free(&w);
}

static void test_webhook_refusals(void **state)
{
	char big[300];

	(void)state;
	webhook_refused("", -EBADMSG, "empty body");
	webhook_refused("{\"id\":", -EBADMSG, "not JSON (truncated)");
	webhook_refused("[{\"id\":\"a\"}]", -EBADMSG, "not a JSON object");
	webhook_refused("{\"id\":\"a\"} x", -EBADMSG, "trailing bytes after the JSON document");
	webhook_refused("{\"title\":\"no id\"}", -EBADMSG, "missing id");
	webhook_refused("{\"id\":null}", -EBADMSG, "missing id");
	webhook_refused("{\"id\":\"\"}", -EBADMSG, "id: empty");
	webhook_refused("{\"id\":true}", -EBADMSG, "id: not a string");
	webhook_refused("{\"id\":\"a/../b\"}", -EBADMSG,
			"id: not an alert id (letters, digits, '.', '_', ':', '-')");
	webhook_refused("{\"id\":\"a\\u0000b\"}", -EBADMSG,
			"id: longer than 128 bytes or with a NUL byte");
	memset(big, 'a', sizeof(big));
	memcpy(big, "{\"id\":\"", 7);
	memcpy(big + sizeof(big) - 3, "\"}", 3);
	webhook_refused(big, -EBADMSG, "id: longer than 128 bytes or with a NUL byte");
	webhook_refused("{\"id\":\"a\",\"severity\":[1]}", -EBADMSG, "severity: not a number");
	webhook_refused("{\"id\":\"a\",\"created_at\":{}}", -EBADMSG, "created_at: not a time");
	webhook_refused("{\"id\":\"a\",\"title\":7}", -EBADMSG, "title: not a string");
	webhook_refused("{\"id\":\"a\",\"organization_name\":7}", -EBADMSG,
			"organization_Name: not a string");
	webhook_refused("{\"alerts\":{}}", -EBADMSG, "alerts: not an array");
	webhook_refused("{\"alerts\":null}", -EBADMSG, "alerts: not an array");
	webhook_refused("{\"alerts\":[]}", -EBADMSG, "alerts: empty");
	webhook_refused("{\"alerts\":[{\"id\":\"a\"},3]}", -EBADMSG,
			"alerts[1]: alert: not an object");
	webhook_refused("{\"alerts\":[{\"id\":\"a\"},{\"severity\":1}]}", -EBADMSG,
			"alerts[1]: missing id");
	/* another organization's alert: 403, even beside ours */
	webhook_refused("{\"alerts\":[{\"id\":\"a\",\"organization_id\":\"" ORG "\"},"
			"{\"id\":\"b\",\"organization_id\":\"someone-else\"}]}",
			-EPERM, "alerts[1]: organization_id: not this organization's");
	webhook_refused("{\"id\":\"a\",\"organization_id\":7}", -EBADMSG,
			"organization_id: not a string");
}

static void test_webhook_bounds(void **state)
{
	struct ts_webhook w = { 0 };
	char err[TSJSON_ERR_MAX];
	struct buf b;

	(void)state;
	/* the most alerts one request may carry, and one more */
	buf_init(&b, 64 * 1024);
	assert_int_equal(buf_puts(&b, "{\"alerts\":["), 0);
	for (int i = 0; i < TSJSON_WEBHOOK_ALERTS_MAX; i++)
		assert_int_equal(buf_printf(&b, "%s{\"id\":\"%d\"}", i ? "," : "", i), 0);
	assert_int_equal(buf_puts(&b, "]}"), 0);
	assert_int_equal(tsjson_webhook(b.data, b.len, ORG, &w, err), 0);
	assert_int_equal(w.n, TSJSON_WEBHOOK_ALERTS_MAX);
	ts_webhook_free(&w);
	b.len -= 2;
	assert_int_equal(buf_puts(&b, ",{\"id\":\"x\"}]}"), 0);
	assert_int_equal(tsjson_webhook(b.data, b.len, ORG, &w, err), -E2BIG);
	assert_string_equal(err, "alerts: more than 1000 in one request");
	buf_free(&b);

	/* one alert's JSON over its cap */
	buf_init(&b, 128 * 1024);
	assert_int_equal(buf_puts(&b, "{\"id\":\"a\",\"x\":["), 0);
	for (int i = 0; i < 20000; i++)
		assert_int_equal(buf_puts(&b, i ? ",\"abc\"" : "\"abc\""), 0);
	assert_int_equal(buf_puts(&b, "]}"), 0);
	assert_int_equal(tsjson_webhook(b.data, b.len, ORG, &w, err), -E2BIG);
	assert_string_equal(err, "larger than 64 KiB");
	buf_free(&b);

	/* dense: refused before json-c allocates for it */
	buf_init(&b, 2 * 1024 * 1024);
	assert_int_equal(buf_puts(&b, "{\"id\":\"a\",\"x\":["), 0);
	for (int i = 0; i < 300000; i++)
		assert_int_equal(buf_puts(&b, i ? ",{}" : "{}"), 0);
	assert_int_equal(buf_puts(&b, "]}"), 0);
	assert_int_equal(tsjson_webhook(b.data, b.len, ORG, &w, err), -E2BIG);
	assert_non_null(strstr(err, "too dense"));
	buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_document_density),
		cmocka_unit_test(test_document_budget_holds),
		cmocka_unit_test(test_page_without_collection),
		cmocka_unit_test(test_agent_full),
		cmocka_unit_test(test_agent_minimal_and_nulls),
		cmocka_unit_test(test_agent_malformed),
		cmocka_unit_test(test_agent_bounds),
		cmocka_unit_test(test_vuln),
		cmocka_unit_test(test_server),
		cmocka_unit_test(test_alert),
		cmocka_unit_test(test_page),
		cmocka_unit_test(test_webhook_shapes),
		cmocka_unit_test(test_webhook_refusals),
		cmocka_unit_test(test_webhook_bounds),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
