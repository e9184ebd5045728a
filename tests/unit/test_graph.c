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
	json_object *obj[MAX_OBJS];	    /* o->json as json-c reads it */
	struct graph_object meta[MAX_OBJS]; /* its strings copied: the builder's are gone */
	int stop_after; /* return 7 from the callback after this many objects, 0: never */
};

/* json-c's reading of a canonical text, serialized again, is the text itself, byte for
 * byte: what the builder wrote is canonical (and so hashes as canon_serialize's would). */
static json_object *assert_canonical(const char *json, size_t len)
{
	json_object *o;
	struct buf b;

	assert_non_null(json);
	assert_int_equal(strlen(json), len);
	o = json_tokener_parse(json);
	if (!o)
		fail_msg("not JSON: %s", json);
	assert_int_equal(json_object_get_type(o), json_type_object);
	buf_init(&b, 1 << 24);
	assert_int_equal(canon_serialize(o, &b), 0);
	assert_int_equal(b.len, len);
	assert_memory_equal(b.data, json, len);
	buf_free(&b);
	return o;
}

static const char *copy(const char *s)
{
	char *c;

	if (!s)
		return NULL;
	c = strdup(s);
	assert_non_null(c);
	return c;
}

static int collect(const struct graph_object *o, void *userdata)
{
	struct got *g = userdata;
	struct graph_object *m = &g->meta[g->n];

	assert_true(g->n < MAX_OBJS);
	g->obj[g->n] = assert_canonical(o->json, o->json_len);
	/* The strings live only during the callback (the contract): keep copies. */
	*m = *o;
	m->json = copy(o->json);
	m->key = copy(o->key);
	m->type = copy(o->type);
	m->class = copy(o->class);
	m->from_key = copy(o->from_key);
	m->to_key = copy(o->to_key);
	m->owner = copy(o->owner);
	/* The flag says what the text says. */
	assert_int_equal(o->mapped,
			 json_object_object_get_ex(g->obj[g->n], "_mapping", NULL) ? 1 : 0);
	g->n++;
	if (g->stop_after && g->n >= (size_t)g->stop_after)
		return 7;
	return 0;
}

static void got_free(struct got *g)
{
	for (size_t i = 0; i < g->n; i++) {
		struct graph_object *m = &g->meta[i];

		json_object_put(g->obj[i]);
		free((char *)m->json);
		free((char *)m->key);
		free((char *)m->type);
		free((char *)m->class);
		free((char *)m->from_key);
		free((char *)m->to_key);
		free((char *)m->owner);
	}
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
		assert_int_equal(g1.meta[i].json_len, g2.meta[i].json_len);
		assert_memory_equal(g1.meta[i].json, g2.meta[i].json, g1.meta[i].json_len);
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

/* --- canonical text, many objects --- */

/* The value of member k is the string raw, as canon would write raw; absent when raw is
 * NULL. The graph_object's strings are the raw ones, the text's are repaired. */
static void assert_member_is(json_object *o, const char *k, const char *raw)
{
	json_object *v = NULL;
	struct buf a, b;

	if (!raw) {
		assert_false(json_object_object_get_ex(o, k, NULL));
		return;
	}
	assert_true(json_object_object_get_ex(o, k, &v));
	buf_init(&a, 1 << 20);
	buf_init(&b, 1 << 20);
	assert_int_equal(canon_serialize(v, &a), 0);
	assert_int_equal(canon_write_string(&b, raw, strlen(raw)), 0);
	assert_string_equal(a.data, b.data);
	buf_free(&a);
	buf_free(&b);
}

/* Every object: canonical text, and the members beside it say what the text says. */
static int check(const struct graph_object *o, void *userdata)
{
	size_t *n = userdata;
	json_object *obj = assert_canonical(o->json, o->json_len), *m = NULL;

	assert_member_is(obj, "_key", o->key);
	assert_member_is(obj, "_type", o->type);
	assert_member_is(obj, "_class", o->class);
	if (o->kind == GRAPH_ENTITY) {
		assert_null(o->from_key);
		assert_null(o->to_key);
		assert_false(o->mapped);
	} else if (o->mapped) {
		assert_true(json_object_object_get_ex(obj, "_mapping", &m));
		assert_member_is(m, "sourceEntityKey", o->from_key);
		assert_member_is(json_object_object_get(m, "targetEntity"), "_key", o->to_key);
	} else {
		assert_false(json_object_object_get_ex(obj, "_mapping", NULL));
		assert_member_is(obj, "_fromEntityKey", o->from_key);
		assert_member_is(obj, "_toEntityKey", o->to_key);
	}
	json_object_put(obj);
	(*n)++;
	return 0;
}

/* Deterministic input: pieces of awkward text (escapes, controls, DEL, valid UTF-8 of every
 * length, ill-formed sequences, surrogates, overlongs, truncated leads), now and then a long
 * run, and NULL. */
struct gen {
	uint64_t state;
	char pool[1 << 20];
	size_t used;
};

static uint64_t gen_next(struct gen *g)
{
	g->state ^= g->state << 13;
	g->state ^= g->state >> 7;
	g->state ^= g->state << 17;
	return g->state;
}

static char *gen_str(struct gen *g, unsigned max_pieces)
{
	static const char *const pieces[] = {
		"a",
		"Z",
		"9",
		".",
		" ",
		"-",
		"_",
		"/",
		"\"",
		"\\",
		"\n",
		"\t",
		"\b",
		"\f",
		"\r",
		"\x01",
		"\x1f",
		"\x7f",
		"%",
		"~",
		"=",
		"tag.",
		"online",
		"OnLine",
		"CVE",
		"\xc3\xa9",
		"\xe2\x82\xac",
		"\xf0\x9f\x98\x80",
		"\xef\xbf\xbd",
		"\x80",
		"\xbf",
		"\xc0\xaf",
		"\xc1\xbf",
		"\xed\xa0\x80",
		"\xed\xbf\xbf",
		"\xf4\x90\x80\x80",
		"\xe0\x80",
		"\xff",
		"\xfe",
		"\xc3",
		"\xf0\x9f",
		"\xe2\x82",
		"\xc2\x80\x80\x80",
		"\xf5\x80\x80\x80",
	};
	unsigned n;
	char *s;

	if (gen_next(g) % 8 == 0)
		return NULL;
	n = (unsigned)(gen_next(g) % (max_pieces + 1));
	if (gen_next(g) % 64 == 0)
		n = 600; /* a long one: up to 2400 bytes */
	if (g->used + 4 * n + 1 > sizeof(g->pool))
		g->used = 0; /* the strings of one iteration fit many times over */
	s = g->pool + g->used;
	for (unsigned i = 0; i < n; i++) {
		const char *p = pieces[gen_next(g) % ARRAY_SIZE(pieces)];
		size_t l = strlen(p);

		memcpy(g->pool + g->used, p, l);
		g->used += l;
	}
	g->pool[g->used++] = '\0';
	return s;
}

static int64_t gen_time(struct gen *g)
{
	switch (gen_next(g) % 6) {
	case 0:
		return TSJSON_TIME_UNKNOWN;
	case 1:
		return 0;
	case 2:
		return INT64_MAX;
	case 3:
		return -(int64_t)(gen_next(g) % 100000);
	case 4:
		return INT64_MIN + 1;
	}
	return (int64_t)(gen_next(g) % 4000000000000ULL);
}

/* A tag's name is bounded like every composed string (16 KiB and a bit): a longer one fails
 * the agent, as it always did; the bound is on the name, which is shorter than a key full of
 * multibyte characters. */
static void test_agent_tag_too_long(void **state)
{
	struct ts_agent a = bare_agent();
	struct ts_tag t = { NULL, NULL, S("v") };
	struct got g = { 0 };
	char *key = malloc(20001);

	(void)state;
	assert_non_null(key);
	memset(key, 'a', 20000);
	key[20000] = '\0';
	t.key = key;
	a.tags = &t;
	a.n_tags = 1;
	assert_int_equal(graph_agent(&opt, &a, collect, &g), -E2BIG);
	assert_int_equal(g.n, 0);
	for (size_t i = 0; i < 20000; i += 2)
		memcpy(key + i, "\xc3\xa9", 2); /* 10000 characters, a name of 10004 bytes */
	assert_int_equal(graph_agent(&opt, &a, collect, &g), 0);
	assert_int_equal(strlen(g.meta[0].json) > 10004, 1);
	got_free(&g);
	free(key);
}

static void test_canonical_many(void **state)
{
	static struct gen g = { .state = 88172645463325252ULL };
	struct ts_agent fixed[] = { ec2_agent(), bare_agent() };
	struct ts_alert host = host_alert();
	struct buf out;
	size_t n = 0;

	(void)state;
	buf_init(&out, 1 << 20);
	/* The hand-built objects of the tests above. */
	for (size_t i = 0; i < ARRAY_SIZE(fixed); i++)
		assert_int_equal(graph_agent(&opt, &fixed[i], check, &n), 0);
	assert_int_equal(graph_alert(&opt, &host, check, &n), 0);
	assert_int_equal(graph_account(&opt, check, &n), 0);
	for (int it = 0; it < 1500; it++) {
		struct graph_options o = { .org_id = gen_str(&g, 4),
					   .org_name = gen_str(&g, 4),
					   .web_url = gen_str(&g, 3),
					   .create_host_placeholder = gen_next(&g) & 1,
					   .out = it & 1 ? &out : NULL };
		struct ts_agent a = { 0 };
		struct ts_vuln v = { 0 };
		struct ts_alert al = { 0 };
		char *ips[3][6];
		struct ts_strv *lists[] = { &a.ip_private, &a.ip_public, &a.ip_link_local };
		struct ts_tag odd_tags[40];
		int r[4];

		if (!o.org_id || !*o.org_id || gen_next(&g) % 4 == 0)
			o.org_id = S("545d0293b620cd090d000023");
		a.id = gen_str(&g, 5);
		if (!a.id || !*a.id)
			a.id = S("3f9c2a10");
		a.instance_id = gen_str(&g, 3);
		a.status = gen_next(&g) % 3 ? (gen_next(&g) & 1 ? S("online") : S("offline"))
					    : gen_str(&g, 2);
		a.name = gen_str(&g, 6);
		a.description = gen_str(&g, 6);
		a.hostname = gen_str(&g, 8);
		a.version = gen_str(&g, 3);
		a.agent_type = gen_str(&g, 3);
		a.os_version = gen_str(&g, 3);
		a.kernel = gen_str(&g, 3);
		a.created_at = gen_time(&g);
		a.last_reported_at = gen_time(&g);
		for (size_t k = 0; k < ARRAY_SIZE(lists); k++) {
			lists[k]->v = ips[k];
			lists[k]->n = gen_next(&g) % 6;
			for (size_t i = 0; i < lists[k]->n; i++)
				ips[k][i] = gen_str(&g, 3); /* NULL entries too */
		}
		/* Many tags, some sanitising to the same name (first wins), odd keys and
		 * values, a tag without a value. */
		a.n_tags = gen_next(&g) % 5 == 0 ? ARRAY_SIZE(odd_tags) : gen_next(&g) % 8;
		for (size_t i = 0; i < a.n_tags; i++)
			odd_tags[i] = (struct ts_tag){ NULL, gen_str(&g, 3), gen_str(&g, 4) };
		a.tags = odd_tags;
		a.healthy = (int)(gen_next(&g) % 3) - 1;
		r[0] = graph_agent(&o, &a, check, &n);
		v.cve = gen_next(&g) % 2 ? S("CVE-2019-11477") : S("cve-2021-4422812");
		v.reported_package = gen_str(&g, 3);
		v.system_package = gen_str(&g, 3);
		v.vector_type = gen_str(&g, 2);
		v.severity = gen_str(&g, 2);
		v.suppressed = (int)(gen_next(&g) % 3) - 1;
		r[1] = graph_vuln_agent(&o, &v, a.id, check, &n);
		al.id = a.id;
		al.title = gen_str(&g, 6);
		al.data_source = gen_next(&g) % 3 ? (gen_next(&g) & 1 ? S("cloudtrail") : S("host"))
						  : gen_str(&g, 2);
		al.agent_id = gen_str(&g, 3);
		al.rule_id = gen_str(&g, 2);
		al.ruleset_id = gen_str(&g, 2);
		al.dismiss_reason = gen_str(&g, 2);
		al.dismiss_reason_text = gen_str(&g, 4);
		al.dismissed_by = gen_str(&g, 2);
		al.created_at = gen_time(&g);
		al.dismissed_at = gen_time(&g);
		al.severity = (int)(gen_next(&g) % 6) - 1;
		al.dismissed = (int)(gen_next(&g) % 3) - 1;
		r[2] = graph_alert(&o, &al, check, &n);
		r[3] = graph_account(&o, check, &n);
		/* Odd, not refused: every builder call makes its objects. */
		for (size_t i = 0; i < ARRAY_SIZE(r); i++)
			if (r[i] != 0)
				fail_msg("iteration %d, builder %zu: %d", it, i, r[i]);
	}
	buf_free(&out);
	assert_true(n > 10000);
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
		cmocka_unit_test(test_agent_tag_too_long),
		cmocka_unit_test(test_canonical_many),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
