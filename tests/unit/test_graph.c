/* Unit tests for graph: every entity and relationship of jupiterone.md, each defect of the
 * earlier integration, property-name and flatness rules, and determinism. Input structs are
 * built by hand (string literals cast to char *: the builder never writes or frees them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "tsgraphd/canon.h"
#include "tsgraphd/graph.h"

#define S(x)	 ((char *)(x))
#define MAX_OBJS 16

struct got {
	size_t n;
	json_object *obj[MAX_OBJS];
	struct graph_object meta[MAX_OBJS];
	int stop_after; /* return 7 from the callback after this many objects, 0: never */
};

static int collect(const struct graph_object *o, void *userdata)
{
	struct got *g = userdata;

	assert_true(g->n < MAX_OBJS);
	g->obj[g->n] = json_object_get(o->obj);
	g->meta[g->n] = *o;
	/* The strings belong to the object; keep them only as long as it lives (we hold a
	 * reference), which is what the contract promises. */
	g->n++;
	if (g->stop_after && g->n >= (size_t)g->stop_after)
		return 7;
	return 0;
}

static void got_free(struct got *g)
{
	for (size_t i = 0; i < g->n; i++)
		json_object_put(g->obj[i]);
	memset(g, 0, sizeof(*g));
}

static const struct graph_options opt = {
	.org_id = "545d0293b620cd090d000023",
	.org_name = "Prod",
	.web_url = "https://app.threatstack.com/",
	.create_host_placeholder = false,
};

static char *ip_pub[] = { S("54.12.34.56") };
static char *ip_priv[] = { S("10.20.3.41"), S("10.20.3.42") };
static char *ip_ll[] = { S("fe80::8ff:2aff:fe11:2233") };
static struct ts_tag tags[] = {
	{ S("ec2"), S("Name"), S("api-prod-1") },
	{ NULL, S("env"), S("prod") },
};

static struct ts_agent ec2_agent(void)
{
	return (struct ts_agent){
		.id = S("3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02"),
		.instance_id = S("i-04c1d2e3f4a5b6c7d"),
		.status = S("online"),
		.name = S("api-prod-1"),
		.description = S(""),
		.hostname = S("ip-10-20-3-41.ec2.internal"),
		.version = S("2.5.0"),
		.agent_type = S("investigate"),
		.os_version = S("amzn 2018.03"),
		.kernel = S("4.14.114-83.126.amzn1.x86_64"),
		.created_at = 1588334403117,
		.last_reported_at = 1588495315902,
		.ip_private = { ip_priv, 2 },
		.ip_public = { ip_pub, 1 },
		.ip_link_local = { ip_ll, 1 },
		.tags = tags,
		.n_tags = 2,
		.healthy = 1,
	};
}

static struct ts_agent bare_agent(void)
{
	return (struct ts_agent){
		.id = S("5537c4284e9684df7e000014"),
		.created_at = TSJSON_TIME_UNKNOWN,
		.last_reported_at = TSJSON_TIME_UNKNOWN,
		.healthy = -1,
	};
}

static const char *str(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v))
		return NULL;
	assert_int_equal(json_object_get_type(v), json_type_string);
	return json_object_get_string(v);
}

static bool has(json_object *o, const char *k)
{
	return json_object_object_get_ex(o, k, NULL);
}

static char *canon_str(json_object *o)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	assert_int_equal(canon_serialize(o, &b), 0);
	return buf_steal(&b);
}

static void assert_canon(json_object *o, const char *want)
{
	char *got = canon_str(o);

	assert_string_equal(got, want);
	free(got);
}

/* ^(_|tag\.)?[A-Za-z0-9. -]+$ without a regex engine. */
static bool name_ok(const char *k)
{
	if (strncmp(k, "tag.", 4) == 0)
		k += 4;
	else if (*k == '_')
		k++;
	if (!*k)
		return false;
	for (; *k; k++)
		if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') ||
		      (*k >= '0' && *k <= '9') || *k == '.' || *k == ' ' || *k == '-'))
			return false;
	return true;
}

/* Every graph object: names match the pattern; values are flat primitives or arrays of
 * primitives (only _mapping is an object); null only where a test allows it. */
static void assert_flat(json_object *o, const char *const *nullable)
{
	json_object_object_foreach(o, k, v)
	{
		enum json_type t = json_object_get_type(v);

		assert_true(name_ok(k));
		if (strcmp(k, "_mapping") == 0) {
			assert_int_equal(t, json_type_object);
			continue;
		}
		if (t == json_type_null) {
			bool ok = false;

			for (size_t i = 0; nullable && nullable[i]; i++)
				ok |= strcmp(nullable[i], k) == 0;
			if (!ok)
				fail_msg("property %s is null", k);
			continue;
		}
		assert_int_not_equal(t, json_type_object);
		if (t == json_type_array)
			for (size_t i = 0; i < json_object_array_length(v); i++) {
				enum json_type et =
					json_object_get_type(json_object_array_get_idx(v, i));

				assert_true(et == json_type_string || et == json_type_int ||
					    et == json_type_double || et == json_type_boolean);
			}
	}
}

static void test_account(void **state)
{
	struct graph_options o2 = opt;
	struct got g = { 0 };

	(void)state;
	assert_int_equal(graph_account(&opt, collect, &g), 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.meta[0].kind, GRAPH_ENTITY);
	assert_string_equal(g.meta[0].key, "threatstack:account:545d0293b620cd090d000023");
	assert_string_equal(g.meta[0].type, "threatstack_account");
	assert_string_equal(g.meta[0].class, "Account");
	assert_int_equal(g.meta[0].rank, 0);
	assert_canon(
		g.obj[0],
		"{\"_class\":\"Account\",\"_key\":\"threatstack:account:545d0293b620cd090d000023\","
		"\"_type\":\"threatstack_account\",\"accountId\":\"545d0293b620cd090d000023\","
		"\"displayName\":\"Threat Stack - Prod\",\"name\":\"Prod\",\"vendor\":\"Threat "
		"Stack\",\"webLink\":\"https://app.threatstack.com\"}");
	got_free(&g);
	/* No org name: the id stands in, name is never null. No web URL: no webLink. */
	o2.org_name = NULL;
	o2.web_url = NULL;
	assert_int_equal(graph_account(&o2, collect, &g), 0);
	assert_string_equal(str(g.obj[0], "name"), "545d0293b620cd090d000023");
	assert_string_equal(str(g.obj[0], "displayName"),
			    "Threat Stack - 545d0293b620cd090d000023");
	assert_false(has(g.obj[0], "webLink"));
	got_free(&g);
	o2.org_id = NULL;
	assert_int_equal(graph_account(&o2, collect, &g), -EINVAL);
	assert_int_equal(g.n, 0);
}

static void test_agent_ec2(void **state)
{
	static const char *const nullable[] = { NULL };
	struct ts_agent a = ec2_agent();
	struct got g = { 0 };
	json_object *m;

	(void)state;
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 0);
	assert_int_equal(g.n, 3);
	/* The entity, with every property of the model. */
	assert_int_equal(g.meta[0].kind, GRAPH_ENTITY);
	assert_string_equal(g.meta[0].key,
			    "threatstack:agent:3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02");
	assert_int_equal(g.meta[0].rank, 1588495315902);
	assert_canon(
		g.obj[0],
		"{\"_class\":\"HostAgent\",\"_key\":\"threatstack:agent:3f9c2a10-8d1e-11ea-b1c4-"
		"0a58a9feac02\",\"_type\":\"threatstack_agent\",\"active\":true,\"agentType\":"
		"\"investigate\",\"createdAt\":1588334403117,\"createdOn\":1588334403117,"
		"\"description\":\"\",\"displayName\":\"api-prod-1\",\"function\":[\"FIM\","
		"\"activity-monitor\",\"vulnerability-detection\"],\"healthy\":true,\"hostname\":"
		"\"ip-10-20-3-41\",\"id\":\"3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02\",\"instanceId\":"
		"\"i-04c1d2e3f4a5b6c7d\",\"ipAddresses\":[\"54.12.34.56\",\"10.20.3.41\","
		"\"10.20.3.42\"],\"kernel\":\"4.14.114-83.126.amzn1.x86_64\",\"lastReportedAt\":"
		"1588495315902,\"lastSeenOn\":1588495315902,\"linkLocalIpAddress\":[\"fe80::8ff:"
		"2aff:fe11:2233\"],\"name\":\"api-prod-1\",\"osVersion\":\"amzn 2018.03\","
		"\"privateIpAddress\":[\"10.20.3.41\",\"10.20.3.42\"],\"publicIpAddress\":["
		"\"54.12.34.56\"],\"status\":\"online\",\"tag.Name\":\"api-prod-1\",\"tag.env\":"
		"\"prod\",\"version\":\"2.5.0\",\"webLink\":\"https://app.threatstack.com/servers/"
		"3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02\"}");
	/* Defect: link-local addresses were published as macAddress. */
	assert_false(has(g.obj[0], "macAddress"));
	assert_flat(g.obj[0], nullable);
	/* account HAS agent */
	assert_int_equal(g.meta[1].kind, GRAPH_RELATIONSHIP);
	assert_int_equal(g.meta[1].rank, 1588495315902);
	assert_string_equal(g.meta[1].from_key, "threatstack:account:545d0293b620cd090d000023");
	assert_string_equal(g.meta[1].to_key,
			    "threatstack:agent:3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02");
	assert_canon(
		g.obj[1],
		"{\"_class\":\"HAS\",\"_fromEntityKey\":\"threatstack:account:545d0293b620cd090d"
		"000023\",\"_key\":\"threatstack:account:545d0293b620cd090d000023|has|"
		"threatstack:agent:3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02\",\"_toEntityKey\":"
		"\"threatstack:agent:3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02\",\"_type\":"
		"\"threatstack_account_has_agent\",\"displayName\":\"HAS\"}");
	/* agent PROTECTS aws_instance (mapped, never creates the instance) */
	assert_string_equal(g.meta[2].type, "threatstack_agent_protects_aws_instance");
	assert_string_equal(g.meta[2].from_key,
			    "threatstack:agent:3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02");
	assert_null(g.meta[2].to_key);
	assert_int_equal(g.meta[2].rank, 1588495315902);
	assert_canon(
		g.obj[2],
		"{\"_class\":\"PROTECTS\",\"_key\":\"threatstack:agent:3f9c2a10-8d1e-11ea-b1c4-"
		"0a58a9feac02|protects|aws_instance:i-04c1d2e3f4a5b6c7d\",\"_mapping\":{"
		"\"relationshipDirection\":\"FORWARD\",\"skipTargetCreation\":true,"
		"\"sourceEntityKey\":\"threatstack:agent:3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02\","
		"\"targetEntity\":{\"_class\":\"Host\",\"_type\":\"aws_instance\",\"instanceId\":"
		"\"i-04c1d2e3f4a5b6c7d\"},\"targetFilterKeys\":[[\"_type\",\"instanceId\"]]},"
		"\"_type\":\"threatstack_agent_protects_aws_instance\",\"displayName\":"
		"\"PROTECTS\"}");
	assert_true(json_object_object_get_ex(g.obj[2], "_mapping", &m));
	assert_flat(g.obj[1], nullable);
	assert_flat(g.obj[2], nullable);
	got_free(&g);
}

static void test_agent_bare(void **state)
{
	static const char *const nullable[] = { "lastSeenOn", NULL };
	struct ts_agent a = bare_agent();
	struct got g = { 0 };
	json_object *v;

	(void)state;
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 0);
	/* No instanceId and no hostname: nothing to PROTECT. */
	assert_int_equal(g.n, 2);
	assert_int_equal(g.meta[0].rank, 0);
	assert_int_equal(g.meta[1].rank, 0);
	/* Defect: name could be null. With no name and no hostname, the id. */
	assert_string_equal(str(g.obj[0], "name"), "5537c4284e9684df7e000014");
	assert_string_equal(str(g.obj[0], "displayName"), "5537c4284e9684df7e000014");
	/* HostAgent requires lastSeenOn: null, not absent; everything unknown is absent. */
	assert_true(json_object_object_get_ex(g.obj[0], "lastSeenOn", &v));
	assert_null(v);
	assert_flat(g.obj[0], nullable);
	assert_canon(
		g.obj[0],
		"{\"_class\":\"HostAgent\",\"_key\":\"threatstack:agent:5537c4284e9684df7e000014"
		"\",\"_type\":\"threatstack_agent\",\"displayName\":\"5537c4284e9684df7e000014\","
		"\"function\":[\"FIM\",\"activity-monitor\",\"vulnerability-detection\"],\"id\":"
		"\"5537c4284e9684df7e000014\",\"lastSeenOn\":null,\"name\":"
		"\"5537c4284e9684df7e000014\",\"webLink\":\"https://app.threatstack.com/servers/"
		"5537c4284e9684df7e000014\"}");
	got_free(&g);
	/* No id: refused. */
	a.id = S("");
	assert_int_equal(graph_agent(&opt, &a, collect, &g), -EINVAL);
	a.id = NULL;
	assert_int_equal(graph_agent(&opt, &a, collect, &g), -EINVAL);
	assert_int_equal(g.n, 0);
}

static void test_agent_name_fallback(void **state)
{
	struct ts_agent a = bare_agent();
	struct got g = { 0 };

	(void)state;
	a.hostname = S("Web Server_01.corp.example.com");
	a.name = S(""); /* empty is as good as null */
	a.status = S("offline");
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 0);
	assert_string_equal(str(g.obj[0], "name"), "Web Server_01.corp.example.com");
	assert_string_equal(str(g.obj[0], "displayName"), "Web Server_01.corp.example.com");
	assert_string_equal(str(g.obj[0], "hostname"), "web-server01");
	assert_false(json_object_get_boolean(json_object_object_get(g.obj[0], "active")));
	assert_string_equal(str(g.obj[0], "status"), "offline");
	got_free(&g);
}

static void test_normalize_hostname(void **state)
{
	static const struct {
		const char *in, *want;
	} cases[] = {
		{ "ip-10-20-3-41.ec2.internal", "ip-10-20-3-41" },
		{ "WEB01.Example.COM", "web01" },
		{ "my host", "my-host" },
		/* Defect: [A-z] let [ \ ] ^ _ and ` through. */
		{ "a[b\\c]d^e_f`g.x", "abcdefg" },
		{ "caf\xc3\xa9-01", "caf-01" },
		{ "..", "" },
		{ "", "" },
		{ "-x-", "-x-" },
		{ "h@st!#$%&*()+=~", "hst" },
	};
	char *s;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		s = graph_normalize_hostname(cases[i].in);
		assert_non_null(s);
		assert_string_equal(s, cases[i].want);
		free(s);
	}
	assert_null(graph_normalize_hostname(NULL));
}

static void test_agent_server(void **state)
{
	struct graph_options o2 = opt;
	struct ts_agent a = bare_agent();
	struct got g = { 0 };
	json_object *m, *v;

	(void)state;
	a.hostname = S("DB_1.internal");
	a.instance_id = S(""); /* empty instanceId: off EC2 */
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 0);
	assert_int_equal(g.n, 3);
	assert_false(has(g.obj[0], "instanceId"));
	assert_string_equal(g.meta[2].type, "threatstack_agent_protects_server");
	assert_canon(
		g.obj[2],
		"{\"_class\":\"PROTECTS\",\"_key\":\"threatstack:agent:5537c4284e9684df7e000014|"
		"protects|host:db1\",\"_mapping\":{\"relationshipDirection\":\"FORWARD\","
		"\"skipTargetCreation\":true,\"sourceEntityKey\":\"threatstack:agent:"
		"5537c4284e9684df7e000014\",\"targetEntity\":{\"_class\":\"Host\",\"_type\":"
		"\"host\",\"displayName\":\"db1\",\"hostname\":\"db1\",\"name\":\"db1\"},"
		"\"targetFilterKeys\":[[\"_class\",\"hostname\"]]},\"_type\":"
		"\"threatstack_agent_protects_server\",\"displayName\":\"PROTECTS\"}");
	got_free(&g);
	/* Creating the placeholder Host is a configuration choice. */
	o2.create_host_placeholder = true;
	assert_int_equal(graph_agent(&o2, &a, collect, &g), 0);
	assert_true(json_object_object_get_ex(g.obj[2], "_mapping", &m));
	assert_true(json_object_object_get_ex(m, "skipTargetCreation", &v));
	assert_false(json_object_get_boolean(v));
	got_free(&g);
	/* A hostname that normalizes to nothing matches nothing: no PROTECTS. */
	a.hostname = S("___.example");
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_false(has(g.obj[0], "hostname"));
	assert_string_equal(str(g.obj[0], "name"), "___.example");
	got_free(&g);
}

static void test_agent_ip_strings(void **state)
{
	/* Defect: a string ipAddresses member was spread into characters. The parser turns a
	 * string member into a one-element list; the builder keeps each address whole. */
	static char *one[] = { S("10.0.0.7") };
	struct ts_agent a = bare_agent();
	struct got g = { 0 };

	(void)state;
	a.ip_private = (struct ts_strv){ one, 1 };
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 0);
	assert_canon(json_object_object_get(g.obj[0], "ipAddresses"), "[\"10.0.0.7\"]");
	assert_canon(json_object_object_get(g.obj[0], "privateIpAddress"), "[\"10.0.0.7\"]");
	assert_false(has(g.obj[0], "publicIpAddress"));
	assert_false(has(g.obj[0], "linkLocalIpAddress"));
	got_free(&g);
}

static void test_agent_tags(void **state)
{
	static struct ts_tag odd[] = {
		{ NULL, S("aws:cloudformation:stack-name"), S("stack") },
		{ NULL, S("Owner Team.v2"), S("sec") },
		{ NULL, S("\xd0\x9a\xd0\xbb\xd1\x8e\xd1\x87"), S("cyrillic") }, /* 4 letters */
		{ NULL, S("env"), S("first") },
		{ NULL, S("env"), S("second") },
		{ NULL, S("env?"), S("third") }, /* sanitises to env-; distinct */
		{ NULL, S("a_b"), S("x") },
		{ NULL, S("a/b"), S("y") }, /* same sanitised name as a_b: first wins */
		{ NULL, S("flag"), NULL },
		{ NULL, S(""), S("no key") },
		{ NULL, NULL, S("no key") },
		{ NULL, S("_under"), S("u") },
	};
	static const char *const nullable[] = { "lastSeenOn", NULL };
	struct ts_agent a = bare_agent();
	struct got g = { 0 };

	(void)state;
	a.tags = odd;
	a.n_tags = ARRAY_SIZE(odd);
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 0);
	assert_string_equal(str(g.obj[0], "tag.aws-cloudformation-stack-name"), "stack");
	assert_string_equal(str(g.obj[0], "tag.Owner Team.v2"), "sec");
	assert_string_equal(str(g.obj[0], "tag.----"), "cyrillic");
	assert_string_equal(str(g.obj[0], "tag.env"), "first");
	assert_string_equal(str(g.obj[0], "tag.env-"), "third");
	assert_string_equal(str(g.obj[0], "tag.a-b"), "x");
	assert_string_equal(str(g.obj[0], "tag.-under"), "u");
	assert_true(json_object_get_boolean(json_object_object_get(g.obj[0], "tag.flag")));
	assert_false(has(g.obj[0], "tag."));
	assert_flat(g.obj[0], nullable);
	got_free(&g);
}

static void test_agent_rank_dup(void **state)
{
	/* Defect: an agent in both listings was emitted twice. The builder gives both
	 * copies the same _key and ranks them by lastReportedAt so the caller keeps one. */
	struct ts_agent on = ec2_agent(), off = ec2_agent();
	struct got g1 = { 0 }, g2 = { 0 };

	(void)state;
	off.status = S("offline");
	off.last_reported_at = on.last_reported_at - 60000;
	assert_int_equal(graph_agent(&opt, &on, collect, &g1), 0);
	assert_int_equal(graph_agent(&opt, &off, collect, &g2), 0);
	assert_int_equal(g1.n, g2.n);
	for (size_t i = 0; i < g1.n; i++) {
		assert_string_equal(g1.meta[i].key, g2.meta[i].key);
		assert_true(g1.meta[i].rank > g2.meta[i].rank);
	}
	got_free(&g1);
	got_free(&g2);
}

static void test_determinism(void **state)
{
	struct ts_agent a = ec2_agent();
	struct got g1 = { 0 }, g2 = { 0 };

	(void)state;
	assert_int_equal(graph_agent(&opt, &a, collect, &g1), 0);
	assert_int_equal(graph_agent(&opt, &a, collect, &g2), 0);
	assert_int_equal(g1.n, g2.n);
	for (size_t i = 0; i < g1.n; i++) {
		/* Same members in the same order, not only the same canonical form. */
		assert_string_equal(
			json_object_to_json_string_ext(g1.obj[i], JSON_C_TO_STRING_PLAIN),
			json_object_to_json_string_ext(g2.obj[i], JSON_C_TO_STRING_PLAIN));
	}
	got_free(&g1);
	got_free(&g2);
}

static void test_emit_stops(void **state)
{
	struct ts_agent a = ec2_agent();
	struct got g = { .stop_after = 1 };

	(void)state;
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 7);
	assert_int_equal(g.n, 1);
	got_free(&g);
	g.stop_after = 2;
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 7);
	assert_int_equal(g.n, 2);
	got_free(&g);
}

static void test_weblink_encoding(void **state)
{
	struct ts_agent a = bare_agent();
	struct got g = { 0 };

	(void)state;
	a.id = S("a/../b?c#d e");
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 0);
	assert_string_equal(str(g.obj[0], "webLink"),
			    "https://app.threatstack.com/servers/a%2F..%2Fb%3Fc%23d%20e");
	got_free(&g);
}

static void test_vuln(void **state)
{
	static const char *const nullable[] = { NULL };
	struct ts_vuln v = {
		.cve = S("CVE-2019-11477"),
		.reported_package = S("kernel 4.14.114"),
		.system_package = S("kernel 4.14.114-83.126.amzn1.x86_64"),
		.vector_type = S("network"),
		.severity = S("high"),
		.suppressed = 0,
		.has_agents = true,
	};
	struct got g = { 0 };

	(void)state;
	assert_int_equal(graph_vuln_agent(&opt, &v, "3f9c2a10", collect, &g), 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.meta[0].kind, GRAPH_RELATIONSHIP);
	assert_string_equal(g.meta[0].key, "threatstack:agent:3f9c2a10|identified|cve-2019-11477");
	assert_string_equal(g.meta[0].from_key, "threatstack:agent:3f9c2a10");
	assert_string_equal(g.meta[0].to_key, "cve-2019-11477");
	assert_canon(
		g.obj[0],
		"{\"_class\":\"IDENTIFIED\",\"_key\":\"threatstack:agent:3f9c2a10|identified|"
		"cve-2019-11477\",\"_mapping\":{\"relationshipDirection\":\"FORWARD\","
		"\"sourceEntityKey\":\"threatstack:agent:3f9c2a10\",\"targetEntity\":{\"_class\":"
		"\"Vulnerability\",\"_key\":\"cve-2019-11477\",\"_type\":\"cve\",\"cveId\":"
		"\"CVE-2019-11477\",\"displayName\":\"CVE-2019-11477\",\"name\":\"CVE-2019-"
		"11477\",\"open\":true,\"severity\":\"high\",\"vector\":\"network\",\"webLink\":"
		"\"https://nvd.nist.gov/vuln/detail/CVE-2019-11477\"},\"targetFilterKeys\":[["
		"\"_type\",\"_key\"]]},\"_type\":\"threatstack_agent_identified_vulnerability\","
		"\"displayName\":\"IDENTIFIED\",\"finding\":\"kernel 4.14.114-83.126.amzn1.x86_64"
		"\",\"package\":\"kernel 4.14.114\",\"suppressed\":false}");
	assert_flat(g.obj[0], nullable);
	got_free(&g);
	/* Any case in, lower-case key, upper-case id; unknowns left out. */
	v.cve = S("cve-2021-44228");
	v.severity = v.vector_type = v.system_package = v.reported_package = NULL;
	v.suppressed = -1;
	assert_int_equal(graph_vuln_agent(&opt, &v, "x", collect, &g), 0);
	assert_canon(
		g.obj[0],
		"{\"_class\":\"IDENTIFIED\",\"_key\":\"threatstack:agent:x|identified|"
		"cve-2021-44228\",\"_mapping\":{\"relationshipDirection\":\"FORWARD\","
		"\"sourceEntityKey\":\"threatstack:agent:x\",\"targetEntity\":{\"_class\":"
		"\"Vulnerability\",\"_key\":\"cve-2021-44228\",\"_type\":\"cve\",\"cveId\":"
		"\"CVE-2021-44228\",\"displayName\":\"CVE-2021-44228\",\"name\":\"CVE-2021-"
		"44228\",\"open\":true,\"webLink\":\"https://nvd.nist.gov/vuln/detail/CVE-2021-"
		"44228\"},\"targetFilterKeys\":[[\"_type\",\"_key\"]]},\"_type\":\"threatstack_"
		"agent_identified_vulnerability\",\"displayName\":\"IDENTIFIED\"}");
	got_free(&g);
	/* Not a CVE id, or no agent: refused. */
	v.cve = S("CVE-19-1");
	assert_int_equal(graph_vuln_agent(&opt, &v, "x", collect, &g), -EINVAL);
	v.cve = S("CVE-2019-11477/../x");
	assert_int_equal(graph_vuln_agent(&opt, &v, "x", collect, &g), -EINVAL);
	v.cve = NULL;
	assert_int_equal(graph_vuln_agent(&opt, &v, "x", collect, &g), -EINVAL);
	v.cve = S("CVE-2019-11477");
	assert_int_equal(graph_vuln_agent(&opt, &v, "", collect, &g), -EINVAL);
	assert_int_equal(g.n, 0);
}

static struct ts_alert host_alert(void)
{
	return (struct ts_alert){
		.id = S("5ec2a7e1c9f3b200015a1b2c"),
		.title = S("User Activity: sudo executed by alice"),
		.data_source = S("host"),
		.agent_id = S("3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02"),
		.rule_id = S("7d0f4b62"),
		.ruleset_id = S("a1b2c3d4"),
		.created_at = 1589814129000,
		.dismissed_at = TSJSON_TIME_UNKNOWN,
		.severity = 2,
		.dismissed = 0,
	};
}

static void test_alert_host(void **state)
{
	static const char *const nullable[] = { NULL };
	struct ts_alert al = host_alert();
	struct got g = { 0 };

	(void)state;
	assert_int_equal(graph_alert(&opt, &al, collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_int_equal(g.meta[0].rank, 0); /* open: loses to a dismissed copy */
	assert_canon(
		g.obj[0],
		"{\"_class\":\"Finding\",\"_key\":\"threatstack:alert:5ec2a7e1c9f3b200015a1b2c\","
		"\"_type\":\"threatstack_alert\",\"agentId\":\"3f9c2a10-8d1e-11ea-b1c4-"
		"0a58a9feac02\",\"category\":\"host-intrusion\",\"createdOn\":1589814129000,"
		"\"dataSource\":\"host\",\"dismissed\":false,\"displayName\":\"User Activity: "
		"sudo executed by alice\",\"id\":\"5ec2a7e1c9f3b200015a1b2c\",\"name\":\"User "
		"Activity: sudo executed by alice\",\"numericSeverity\":2,\"open\":true,"
		"\"ruleId\":\"7d0f4b62\",\"rulesetId\":\"a1b2c3d4\",\"severity\":\"medium\","
		"\"webLink\":\"https://app.threatstack.com/alerts/5ec2a7e1c9f3b200015a1b2c\"}");
	assert_flat(g.obj[0], nullable);
	assert_canon(
		g.obj[1],
		"{\"_class\":\"IDENTIFIED\",\"_fromEntityKey\":\"threatstack:agent:3f9c2a10-"
		"8d1e-11ea-b1c4-0a58a9feac02\",\"_key\":\"threatstack:agent:3f9c2a10-8d1e-11ea-"
		"b1c4-0a58a9feac02|identified|threatstack:alert:5ec2a7e1c9f3b200015a1b2c\","
		"\"_toEntityKey\":\"threatstack:alert:5ec2a7e1c9f3b200015a1b2c\",\"_type\":"
		"\"threatstack_agent_identified_alert\",\"displayName\":\"IDENTIFIED\"}");
	got_free(&g);
}

static void test_alert_severity(void **state)
{
	static const struct {
		int in;
		const char *word;
	} cases[] = { { 1, "high" }, { 2, "medium" }, { 3, "low" } };
	static const char *const nullable[] = { "severity", "numericSeverity", NULL };
	struct ts_alert al = host_alert();
	struct got g = { 0 };
	json_object *v;

	(void)state;
	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		al.severity = cases[i].in;
		assert_int_equal(graph_alert(&opt, &al, collect, &g), 0);
		assert_string_equal(str(g.obj[0], "severity"), cases[i].word);
		assert_int_equal(
			json_object_get_int(json_object_object_get(g.obj[0], "numericSeverity")),
			cases[i].in);
		got_free(&g);
	}
	/* Finding requires both: null when unknown. */
	al.severity = 0;
	assert_int_equal(graph_alert(&opt, &al, collect, &g), 0);
	assert_true(json_object_object_get_ex(g.obj[0], "severity", &v));
	assert_null(v);
	assert_true(json_object_object_get_ex(g.obj[0], "numericSeverity", &v));
	assert_null(v);
	assert_flat(g.obj[0], nullable);
	got_free(&g);
}

static void test_alert_cloudtrail_dismissed(void **state)
{
	struct ts_alert al = host_alert();
	struct got g = { 0 };

	(void)state;
	al.agent_id = NULL;
	al.data_source = S("cloudtrail");
	al.title = NULL;
	al.dismissed = 1;
	al.dismissed_at = 1589900000000;
	al.dismiss_reason = S("BUSINESS_OP");
	al.dismiss_reason_text = S("expected");
	al.dismissed_by = S("alice");
	assert_int_equal(graph_alert(&opt, &al, collect, &g), 0);
	assert_int_equal(g.n, 2);
	assert_string_equal(str(g.obj[0], "category"), "cloudtrail");
	assert_string_equal(str(g.obj[0], "name"), "5ec2a7e1c9f3b200015a1b2c");
	assert_false(json_object_get_boolean(json_object_object_get(g.obj[0], "open")));
	assert_string_equal(str(g.obj[0], "dismissReason"), "BUSINESS_OP");
	assert_string_equal(str(g.obj[0], "dismissReasonText"), "expected");
	assert_string_equal(str(g.obj[0], "dismissedBy"), "alice");
	assert_int_equal(json_object_get_int64(json_object_object_get(g.obj[0], "dismissedOn")),
			 1589900000000);
	assert_false(has(g.obj[0], "agentId"));
	/* Listed as both active and dismissed: the dismissed copy wins the duplicate key. */
	assert_int_equal(g.meta[0].rank, 1);
	/* No agent: the account HAS the alert. */
	assert_string_equal(g.meta[1].type, "threatstack_account_has_alert");
	assert_string_equal(g.meta[1].key, "threatstack:account:545d0293b620cd090d000023|has|"
					   "threatstack:alert:5ec2a7e1c9f3b200015a1b2c");
	assert_string_equal(str(g.obj[1], "displayName"), "HAS");
	got_free(&g);
	/* Older data: no dataSource, no agent → CloudTrail; isDismissed absent but a
	 * dismissedAt → dismissed. */
	al.data_source = NULL;
	al.dismissed = -1;
	assert_int_equal(graph_alert(&opt, &al, collect, &g), 0);
	assert_string_equal(str(g.obj[0], "category"), "cloudtrail");
	assert_false(json_object_get_boolean(json_object_object_get(g.obj[0], "open")));
	got_free(&g);
	al.dismissed_at = TSJSON_TIME_UNKNOWN;
	al.agent_id = S("agent-1");
	assert_int_equal(graph_alert(&opt, &al, collect, &g), 0);
	assert_string_equal(str(g.obj[0], "category"), "host-intrusion");
	assert_true(json_object_get_boolean(json_object_object_get(g.obj[0], "open")));
	got_free(&g);
	al.id = NULL;
	assert_int_equal(graph_alert(&opt, &al, collect, &g), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_account),
		cmocka_unit_test(test_agent_ec2),
		cmocka_unit_test(test_agent_bare),
		cmocka_unit_test(test_agent_name_fallback),
		cmocka_unit_test(test_normalize_hostname),
		cmocka_unit_test(test_agent_server),
		cmocka_unit_test(test_agent_ip_strings),
		cmocka_unit_test(test_agent_tags),
		cmocka_unit_test(test_agent_rank_dup),
		cmocka_unit_test(test_determinism),
		cmocka_unit_test(test_emit_stops),
		cmocka_unit_test(test_weblink_encoding),
		cmocka_unit_test(test_vuln),
		cmocka_unit_test(test_alert_host),
		cmocka_unit_test(test_alert_severity),
		cmocka_unit_test(test_alert_cloudtrail_dismissed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
