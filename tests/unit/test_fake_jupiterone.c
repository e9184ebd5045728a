/* Tests of the fake JupiterOne synchronization API (build/fake_jupiterone) end to end: the
 * binary is spawned on an ephemeral loopback port and driven with libcurl. Covers the token
 * and account checks, the request size bound (with and without "Expect: 100-continue"), the
 * object bound, the graph rules (a data-driven table of objects the fake must refuse and of
 * objects it must take), duplicate keys failing the job, finalize applying creates, updates,
 * deletes and the entity-delete cascade, DIFF mode, one finalizing job per scope, abort, and
 * the faults (counted statuses by route, --fault at start, slow answers, the outage). Every
 * fake must stop with exit status 0 on SIGTERM (under ASan: no leak).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "tsgraphd/util.h"

#include "fake.h"

#define JOBS "/persister/synchronization/jobs"

struct answer {
	long status;
	struct buf body;
};

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
	struct answer *a = userdata;

	return buf_append(&a->body, p, size * n) == 0 ? size * n : 0;
}

/* The default credentials; a test that wants others passes its own header list. */
static const char *const auth_ok[] = { "Authorization: Bearer " FAKE_J1_TOKEN,
				       "JupiterOne-Account: " FAKE_J1_ACCOUNT, NULL };

/* METHOD path with body (NULL: none) and the headers hdrs (NULL: auth_ok); returns the status,
 * the answer in a (the caller frees a->body). */
static long req(const struct fake *fk, const char *method, const char *path, const char *body,
		size_t len, const char *const *hdrs, struct answer *a)
{
	CURL *c = curl_easy_init();
	struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
	char url[512];

	memset(a, 0, sizeof(*a));
	buf_init(&a->body, 64 << 20);
	assert_non_null(c);
	for (const char *const *h = hdrs ? hdrs : auth_ok; *h; h++)
		hl = curl_slist_append(hl, *h);
	snprintf(url, sizeof(url), "%s%s", fk->url, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	if (body) {
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	}
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	return a->status;
}

/* POST path body with the default credentials; the status, the answer dropped. */
static long post(const struct fake *fk, const char *path, const char *body)
{
	struct answer a;
	long st = req(fk, "POST", path, body, strlen(body), NULL, &a);

	buf_free(&a.body);
	return st;
}

/* Does the answer hold want, as sent or in its decoded "error" message? */
static bool answer_has(const struct answer *a, const char *want)
{
	json_object *o, *e;
	bool found;

	if (!a->body.data)
		return false;
	if (strstr(a->body.data, want))
		return true;
	o = json_tokener_parse(a->body.data);
	found = json_object_object_get_ex(o, "error", &e) &&
		strstr(json_object_get_string(e), want) != NULL;
	json_object_put(o);
	return found;
}

/* POST .../jobs/{id}/{op} body; the status. With want, the answer must contain it. */
static long job_post(const struct fake *fk, const char *id, const char *op, const char *body,
		     const char *want)
{
	char path[256];
	struct answer a;
	long st;

	snprintf(path, sizeof(path), JOBS "/%s/%s", id, op);
	st = req(fk, "POST", path, body, strlen(body), NULL, &a);
	if (want && !answer_has(&a, want))
		fail_msg("%s %s: answer %ld %s lacks \"%s\"", op, body, st,
			 a.body.data ? a.body.data : "", want);
	buf_free(&a.body);
	return st;
}

static void create_job(const struct fake *fk, const char *scope, const char *mode,
		       char id[static 64])
{
	char body[256];
	struct answer a;
	json_object *o, *job, *v;

	if (mode)
		snprintf(body, sizeof(body),
			 "{\"source\":\"api\",\"scope\":\"%s\",\"syncMode\":\"%s\"}", scope, mode);
	else
		snprintf(body, sizeof(body), "{\"source\":\"api\",\"scope\":\"%s\"}", scope);
	assert_int_equal(req(fk, "POST", JOBS, body, strlen(body), NULL, &a), 200);
	o = json_tokener_parse(a.body.data);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "job", &job));
	assert_true(json_object_object_get_ex(job, "status", &v));
	assert_string_equal(json_object_get_string(v), "AWAITING_UPLOADS");
	assert_true(json_object_object_get_ex(job, "syncMode", &v));
	assert_string_equal(json_object_get_string(v), mode ? mode : "DIFF");
	assert_true(json_object_object_get_ex(job, "id", &v));
	snprintf(id, 64, "%s", json_object_get_string(v));
	json_object_put(o);
	buf_free(&a.body);
}

/* GET the job: its "job" object (the caller puts it), asserting 200. */
static json_object *get_job(const struct fake *fk, const char *id)
{
	char path[256];
	struct answer a;
	json_object *o, *job;

	snprintf(path, sizeof(path), JOBS "/%s", id);
	assert_int_equal(req(fk, "GET", path, NULL, 0, NULL, &a), 200);
	o = json_tokener_parse(a.body.data);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "job", &job));
	json_object_get(job);
	json_object_put(o);
	buf_free(&a.body);
	return job;
}

static int64_t job_num(const struct fake *fk, const char *id, const char *key)
{
	json_object *job = get_job(fk, id), *v;
	int64_t n;

	assert_true(json_object_object_get_ex(job, key, &v));
	n = json_object_get_int64(v);
	json_object_put(job);
	return n;
}

static void assert_job_status(const struct fake *fk, const char *id, const char *want)
{
	json_object *job = get_job(fk, id), *v;

	assert_true(json_object_object_get_ex(job, "status", &v));
	if (strcmp(json_object_get_string(v), want) != 0)
		fail_msg("job %s is %s, want %s", id, json_object_get_string(v), want);
	json_object_put(job);
}

/* The scope's graph: its entity and relationship keys, sorted, joined by spaces. */
static void graph_keys(const struct fake *fk, const char *scope, char *ents, char *rels,
		       size_t size)
{
	char path[256];
	json_object *g, *arr;

	snprintf(path, sizeof(path), "/_fake/graph?scope=%s", scope);
	g = fake_control(fk, path, NULL);
	for (int k = 0; k < 2; k++) {
		char *out = k ? rels : ents;

		out[0] = '\0';
		assert_true(json_object_object_get_ex(g, k ? "relationships" : "entities", &arr));
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			json_object *key;

			assert_true(json_object_object_get_ex(json_object_array_get_idx(arr, i),
							      "_key", &key));
			snprintf(out + strlen(out), size - strlen(out), "%s%s", i ? " " : "",
				 json_object_get_string(key));
		}
	}
	json_object_put(g);
}

static void assert_graph(const struct fake *fk, const char *scope, const char *want_ents,
			 const char *want_rels)
{
	char ents[4096], rels[4096];

	graph_keys(fk, scope, ents, rels, sizeof(ents));
	assert_string_equal(ents, want_ents);
	assert_string_equal(rels, want_rels);
}

#define ENT(key, extra) "{\"_key\":\"" key "\",\"_type\":\"t_node\",\"_class\":\"Host\"" extra "}"
#define REL(key, from, to)                                                                        \
	"{\"_key\":\"" key "\",\"_type\":\"t_has\",\"_class\":\"HAS\",\"_fromEntityKey\":\"" from \
	"\",\"_toEntityKey\":\"" to "\"}"
#define MAPPED(key, src, extra)                                                                \
	"{\"_key\":\"" key "\",\"_type\":\"t_identified_cve\",\"_class\":\"IDENTIFIED\","      \
	"\"_mapping\":{\"relationshipDirection\":\"FORWARD\",\"sourceEntityKey\":\"" src "\"," \
	"\"targetFilterKeys\":[[\"_type\",\"_key\"]],\"targetEntity\":{\"_type\":\"cve\","     \
	"\"_class\":\"Vulnerability\",\"_key\":\"cve-2019-11477\"" extra "}}}"

static void test_auth(void **state)
{
	struct fake *fk = *state;
	static const char *const no_auth[] = { "JupiterOne-Account: " FAKE_J1_ACCOUNT, NULL };
	static const char *const bad_token[] = { "Authorization: Bearer nope",
						 "JupiterOne-Account: " FAKE_J1_ACCOUNT, NULL };
	static const char *const basic[] = { "Authorization: Basic " FAKE_J1_TOKEN,
					     "JupiterOne-Account: " FAKE_J1_ACCOUNT, NULL };
	static const char *const no_account[] = { "Authorization: Bearer " FAKE_J1_TOKEN, NULL };
	static const char *const other_account[] = { "Authorization: Bearer " FAKE_J1_TOKEN,
						     "JupiterOne-Account: someone-else", NULL };
	const char *body = "{\"source\":\"api\",\"scope\":\"auth\"}";
	struct answer a;

	json_object_put(fake_control(fk, "/_fake/reset-stats", "{}"));
	assert_int_equal(req(fk, "POST", JOBS, body, strlen(body), no_auth, &a), 401);
	assert_non_null(strstr(a.body.data, "\"error\""));
	buf_free(&a.body);
	assert_int_equal(req(fk, "POST", JOBS, body, strlen(body), bad_token, &a), 401);
	buf_free(&a.body);
	assert_int_equal(req(fk, "POST", JOBS, body, strlen(body), basic, &a), 401);
	buf_free(&a.body);
	assert_int_equal(req(fk, "POST", JOBS, body, strlen(body), no_account, &a), 401);
	buf_free(&a.body);
	assert_int_equal(req(fk, "POST", JOBS, body, strlen(body), other_account, &a), 403);
	buf_free(&a.body);
	assert_int_equal(
		req(fk, "GET", JOBS "/fa7e0000-0000-4000-8000-000000000001", NULL, 0, no_auth, &a),
		401);
	buf_free(&a.body);
	assert_int_equal(fake_stat(fk, "rejected", "401"), 5);
	assert_int_equal(fake_stat(fk, "rejected", "403"), 1);
	assert_int_equal(fake_stat(fk, "jobs_created", NULL), 0);
	assert_int_equal(fake_stat(fk, "requests", NULL), 6);
	assert_int_equal(fake_stat(fk, "requests_by_route", "create_job"), 5);
	/* an authenticated request to an unknown job or path */
	assert_int_equal(
		req(fk, "GET", JOBS "/fa7e0000-0000-4000-8000-00000000ffff", NULL, 0, NULL, &a),
		404);
	buf_free(&a.body);
	assert_int_equal(post(fk, "/persister/elsewhere", "{}"), 404);
	assert_int_equal(req(fk, "GET", JOBS, NULL, 0, NULL, &a), 405);
	buf_free(&a.body);
	/* job creation needs source api and a scope; syncMode is one of two */
	assert_int_equal(post(fk, JOBS, "{\"source\":\"api\"}"), 400);
	assert_int_equal(post(fk, JOBS, "{\"source\":\"api\",\"scope\":\"\"}"), 400);
	assert_int_equal(post(fk, JOBS, "{\"scope\":\"x\"}"), 400);
	assert_int_equal(
		post(fk, JOBS, "{\"source\":\"api\",\"scope\":\"x\",\"syncMode\":\"ALL\"}"), 400);
	assert_int_equal(post(fk, JOBS, "not json"), 400);
	assert_int_equal(fake_stat(fk, "jobs_created", NULL), 0);
}

/* A body of n bytes of valid JSON: {"entities":[],"pad":"xxx…"}. */
static char *padded_body(size_t n)
{
	const char *head = "{\"entities\":[],\"pad\":\"";
	char *b = malloc(n + 1);

	assert_non_null(b);
	memset(b, 'x', n);
	memcpy(b, head, strlen(head));
	memcpy(b + n - 2, "\"}", 2);
	b[n] = '\0';
	return b;
}

static void test_request_bounds(void **state)
{
	static const char *const expect[] = { "Authorization: Bearer " FAKE_J1_TOKEN,
					      "JupiterOne-Account: " FAKE_J1_ACCOUNT,
					      "Expect: 100-continue", NULL };
	static const char *const no_expect[] = { "Authorization: Bearer " FAKE_J1_TOKEN,
						 "JupiterOne-Account: " FAKE_J1_ACCOUNT,
						 "Expect:", NULL };
	struct fake fk;
	char id[64], path[256];
	_cleanup_free_ char *big = padded_body(20000);
	struct answer a;

	(void)state;
	fake_start_named(&fk, "fake_jupiterone",
			 (const char *const[]){ "--max-request", "10000", "--max-objects", "5",
						"--fault", "500:1@finalize", NULL });
	create_job(&fk, "bounds", "CREATE_OR_UPDATE", id);
	snprintf(path, sizeof(path), JOBS "/%s/upload", id);
	/* refused before the body is sent, and after it was read and dropped */
	assert_int_equal(req(&fk, "POST", path, big, strlen(big), expect, &a), 413);
	buf_free(&a.body);
	assert_int_equal(req(&fk, "POST", path, big, strlen(big), no_expect, &a), 413);
	buf_free(&a.body);
	assert_int_equal(fake_stat(&fk, "rejected", "413"), 2);
	/* the job is untouched: just under the bound passes ("pad" is no list: 400) */
	big[9990 - 2] = '"';
	big[9990 - 1] = '}';
	big[9990] = '\0';
	assert_int_equal(job_post(&fk, id, "upload", big, "unexpected member \"pad\""), 400);
	assert_job_status(&fk, id, "AWAITING_UPLOADS");
	/* at most 5 objects held: 4 pass, 2 more are 507 and the job stays usable */
	assert_int_equal(job_post(&fk, id, "entities",
				  "{\"entities\":[" ENT("bound-key-01", ) "," ENT(
					  "bound-key-02", ) "," ENT("bound-key-03", ) "]}",
				  NULL),
			 200);
	assert_int_equal(job_post(&fk, id, "upload",
				  "{\"deleteEntities\":[{\"_key\":\"bound-key-04\"}]}", NULL),
			 200);
	assert_int_equal(
		job_post(&fk, id, "entities",
			 "{\"entities\":[" ENT("bound-key-05", ) "," ENT("bound-key-06", ) "]}",
			 NULL),
		507);
	assert_job_status(&fk, id, "AWAITING_UPLOADS");
	assert_int_equal(fake_stat(&fk, "objects_held", NULL), 4);
	assert_int_equal(
		job_post(&fk, id, "entities", "{\"entities\":[" ENT("bound-key-05", ) "]}", NULL),
		200);
	/* --fault 500:1@finalize: the first finalize fails, the second goes through */
	assert_int_equal(job_post(&fk, id, "finalize", "{}", "injected"), 500);
	assert_job_status(&fk, id, "AWAITING_UPLOADS");
	assert_int_equal(job_post(&fk, id, "finalize", "{}", NULL), 200);
	assert_job_status(&fk, id, "FINISHED");
	assert_graph(&fk, "bounds", "bound-key-01 bound-key-02 bound-key-03 bound-key-05", "");
	assert_int_equal(fake_stat(&fk, "objects_held", NULL), 4);
	fake_stop(&fk);
}

/* Objects the fake must refuse: each fails its own job with a message naming the rule. */
static const struct bad_case {
	const char *op, *body, *err;
} bad_cases[] = {
	{ "entities", "{\"entities\":[" ENT("good-key-01", ",\"bad_name\":1") "]}",
	  "property name \"bad_name\" does not match ^(_|tag\\.)?[A-Za-z0-9. -]+$" },
	{ "entities", "{\"entities\":[" ENT("good-key-01", ",\"__x\":1") "]}", "\"__x\"" },
	{ "entities", "{\"entities\":[" ENT("good-key-01", ",\"tag.\\u00e9\":1") "]}",
	  "does not match" },
	{ "entities", "{\"entities\":[" ENT("good-key-01", ",\"nested\":{\"a\":1}") "]}",
	  "(_key \"good-key-01\"): property \"nested\" must be a string" },
	{ "entities", "{\"entities\":[" ENT("good-key-01", ",\"arr\":[[1]]") "]}",
	  "property \"arr\"" },
	{ "entities", "{\"entities\":[" ENT("good-key-01", ",\"arr\":[{}]") "]}",
	  "property \"arr\"" },
	{ "entities", "{\"entities\":[" ENT("short", ) "]}", "at least 10 characters" },
	{ "entities", "{\"entities\":[{\"_type\":\"t\",\"_class\":\"C\"}]}",
	  "entities[0]: _key must be a non-empty string" },
	{ "entities", "{\"entities\":[{\"_key\":\"good-key-01\",\"_class\":\"C\"}]}", "_type" },
	{ "entities", "{\"entities\":[{\"_key\":\"good-key-01\",\"_type\":\"t\"}]}", "_class" },
	{ "entities", "{\"entities\":[{\"_key\":\"good-key-01\",\"_type\":\"t\",\"_class\":[1]}]}",
	  "_class" },
	{ "entities", "{\"entities\":[{\"_key\":\"good-key-01\",\"_type\":\"t\",\"_class\":[]}]}",
	  "_class" },
	{ "entities", "{\"entities\":[" ENT("good-key-01", ) ",7]}",
	  "entities[1]: must be an object" },
	{ "entities", "{\"entities\":[" ENT("good-key-01", ",\"_mapping\":{}") "]}",
	  "property \"_mapping\"" },
	{ "relationships",
	  "{\"relationships\":[{\"_key\":\"r1\",\"_type\":\"t\",\"_class\":\"HAS\","
	  "\"_fromEntityKey\":\"a-long-key\"}]}",
	  "_fromEntityKey and _toEntityKey" },
	{ "relationships", "{\"relationships\":[" MAPPED("m1", "src-key-01", ",\"obj\":{}") "]}",
	  "targetEntity: property \"obj\"" },
	{ "relationships",
	  "{\"relationships\":[" MAPPED("m1", "src-key-01", ",\"bad_name\":1") "]}",
	  "targetEntity: property name \"bad_name\"" },
	{ "relationships",
	  "{\"relationships\":[{\"_key\":\"m1\",\"_type\":\"t\",\"_class\":\"X\",\"_mapping\":{"
	  "\"relationshipDirection\":\"FORWARD\",\"sourceEntityKey\":\"s\","
	  "\"targetEntity\":{\"_type\":\"cve\",\"_key\":\"k\"}}}]}",
	  "targetFilterKeys" },
	{ "relationships",
	  "{\"relationships\":[{\"_key\":\"m1\",\"_type\":\"t\",\"_class\":\"X\",\"_mapping\":{"
	  "\"relationshipDirection\":\"FORWARD\",\"targetFilterKeys\":[[\"_type\"]],"
	  "\"targetEntity\":{\"_type\":\"cve\"}}}]}",
	  "sourceEntityKey" },
	{ "relationships",
	  "{\"relationships\":[{\"_key\":\"m1\",\"_type\":\"t\",\"_class\":\"X\",\"_mapping\":{"
	  "\"sourceEntityKey\":\"s\",\"targetFilterKeys\":[[\"_type\"]],"
	  "\"targetEntity\":{\"_type\":\"cve\"}}}]}",
	  "relationshipDirection" },
	{ "relationships",
	  "{\"relationships\":[{\"_key\":\"m1\",\"_type\":\"t\",\"_class\":\"X\",\"_mapping\":{"
	  "\"relationshipDirection\":\"FORWARD\",\"sourceEntityKey\":\"s\","
	  "\"targetFilterKeys\":[[\"_type\",\"hostname\"]],\"targetEntity\":{\"_type\":\"h\"}}}]}",
	  "filter key \"hostname\"" },
	{ "relationships",
	  "{\"relationships\":[{\"_key\":\"m1\",\"_type\":\"t\",\"_class\":\"X\",\"_mapping\":{"
	  "\"relationshipDirection\":\"FORWARD\",\"sourceEntityKey\":\"s\","
	  "\"targetFilterKeys\":[[\"_type\"]],\"targetEntity\":{\"_type\":\"h\"},\"extra\":1}}]}",
	  "unknown _mapping member \"extra\"" },
	{ "upload", "{\"deleteEntities\":[{\"id\":\"x\"}]}", "deleteEntities[0]: _key" },
	{ "upload", "{\"deleteRelationships\":[\"k\"]}",
	  "deleteRelationships[0]: must be an object" },
};

/* Objects the fake must take. */
static const struct good_case {
	const char *op, *body;
} good_cases[] = {
	{ "entities",
	  "{\"entities\":[" ENT("good-key-01",
				",\"tag.Name\":\"web\",\"tag.env-x\":null,"
				"\"ipAddresses\":[\"10.0.0.1\",\"::1\"],"
				"\"n\":1.5,\"b\":true,\"a.b c-d\":[1,\"x\",null]") "]}" },
	{ "entities", "{\"entities\":[{\"_key\":\"good-key-02\",\"_type\":\"t\",\"_class\":["
		      "\"Host\",\"Device\"]}]}" },
	{ "relationships",
	  "{\"relationships\":[" REL("r1", "good-key-01", "good-key-02") "," MAPPED(
		  "m1", "good-key-01", ",\"tag.x\":[\"a\"]") "]}" },
	{ "relationships",
	  "{\"relationships\":[{\"_key\":\"m2\",\"_type\":\"t\",\"_class\":\"PROTECTS\",\"_"
	  "mapping\":{"
	  "\"relationshipDirection\":\"REVERSE\",\"sourceEntityKey\":\"good-key-01\","
	  "\"targetFilterKeys\":[[\"_type\",\"instanceId\"],\"_type\"],\"skipTargetCreation\":true,"
	  "\"targetEntity\":{\"_type\":\"aws_instance\",\"instanceId\":\"i-1\"}}}]}" },
	{ "upload", "{}" },
	{ "upload", "{\"deleteEntities\":[{\"_key\":\"gone-key-01\"}],"
		    "\"deleteRelationships\":[{\"_key\":\"gone-rel\"}]}" },
};

static void test_graph_rules(void **state)
{
	struct fake *fk = *state;
	char id[64];

	for (size_t i = 0; i < ARRAY_SIZE(bad_cases); i++) {
		create_job(fk, "rules", "CREATE_OR_UPDATE", id);
		if (job_post(fk, id, bad_cases[i].op, bad_cases[i].body, bad_cases[i].err) != 400)
			fail_msg("bad case %zu was taken: %s", i, bad_cases[i].body);
		assert_job_status(fk, id, "ERROR_BAD_DATA");
		/* a failed job takes nothing more and cannot be finalized */
		assert_int_equal(job_post(fk, id, "entities",
					  "{\"entities\":[" ENT("after-key-01", ) "]}",
					  "ERROR_BAD_DATA"),
				 400);
		assert_int_equal(job_post(fk, id, "finalize", "{}", NULL), 400);
	}
	create_job(fk, "rules", "CREATE_OR_UPDATE", id);
	for (size_t i = 0; i < ARRAY_SIZE(good_cases); i++)
		if (job_post(fk, id, good_cases[i].op, good_cases[i].body, NULL) != 200)
			fail_msg("good case %zu was refused: %s", i, good_cases[i].body);
	/* not graph data: 400, and the job goes on */
	assert_int_equal(job_post(fk, id, "entities", "{\"entities\":{}}", "must be an array"),
			 400);
	assert_int_equal(job_post(fk, id, "entities", "{\"relationships\":[]}", "unexpected"), 400);
	assert_int_equal(job_post(fk, id, "entities", "{\"entities\":[]", "not a JSON object"),
			 400);
	assert_int_equal(job_post(fk, id, "relationships", "[]", "not a JSON object"), 400);
	assert_job_status(fk, id, "AWAITING_UPLOADS");
	assert_int_equal(job_post(fk, id, "finalize", "{}", NULL), 200);
	assert_job_status(fk, id, "FINISHED");
	assert_graph(fk, "rules", "good-key-01 good-key-02", "m1 m2 r1");
	assert_true(fake_stat(fk, "jobs_failed", NULL) >= (int64_t)ARRAY_SIZE(bad_cases));
}

static void test_duplicate_key(void **state)
{
	struct fake *fk = *state;
	char id[64];

	/* across two uploads of one job */
	create_job(fk, "dup", "CREATE_OR_UPDATE", id);
	assert_int_equal(
		job_post(fk, id, "entities",
			 "{\"entities\":[" ENT("dup-key-001", ) "," ENT("dup-key-002", ) "]}",
			 NULL),
		200);
	assert_int_equal(job_post(fk, id, "entities", "{\"entities\":[" ENT("dup-key-002", ) "]}",
				  "duplicate _key \"dup-key-002\""),
			 400);
	assert_job_status(fk, id, "ERROR_BAD_DATA");
	assert_int_equal(job_post(fk, id, "finalize", "{}", "ERROR_BAD_DATA"), 400);
	assert_graph(fk, "dup", "", "");

	/* within one request */
	create_job(fk, "dup", "CREATE_OR_UPDATE", id);
	assert_int_equal(
		job_post(fk, id, "upload",
			 "{\"relationships\":[" REL("r", "dup-key-001", "dup-key-002") "," REL(
				 "r", "dup-key-001", "dup-key-002") "]}",
			 "duplicate _key \"r\""),
		400);
	assert_job_status(fk, id, "ERROR_BAD_DATA");

	/* an uploaded entity deleted in the same job */
	create_job(fk, "dup", "CREATE_OR_UPDATE", id);
	assert_int_equal(
		job_post(fk, id, "entities", "{\"entities\":[" ENT("dup-key-001", ) "]}", NULL),
		200);
	assert_int_equal(job_post(fk, id, "upload",
				  "{\"deleteEntities\":[{\"_key\":\"dup-key-001\"}]}", "duplicate"),
			 400);
	assert_job_status(fk, id, "ERROR_BAD_DATA");

	/* the same key as an entity and as a relationship is fine */
	create_job(fk, "dup", "CREATE_OR_UPDATE", id);
	assert_int_equal(
		job_post(fk, id, "upload",
			 "{\"entities\":[" ENT("dup-key-001", ) "," ENT(
				 "dup-key-002", ) "],\"relationships\":[" REL("dup-key-001",
									      "dup-key-001",
									      "dup-key-002") "]}",
			 NULL),
		200);
	assert_int_equal(job_post(fk, id, "finalize", "{}", NULL), 200);
	assert_job_status(fk, id, "FINISHED");
	assert_graph(fk, "dup", "dup-key-001 dup-key-002", "dup-key-001");
}

static void test_apply_and_cascade(void **state)
{
	static const char ents[] = "{\"entities\":[" ENT("apply-a-001", ",\"v\":1") "," ENT(
		"apply-b-001", ) "," ENT("apply-c-001", ) "," ENT("apply-d-001", ) "]}";
	static const char rels[] =
		"{\"relationships\":[" REL("a|has|b", "apply-a-001", "apply-b-001") "," REL(
			"b|has|d", "apply-b-001", "apply-d-001") "," REL("d|has|a", "apply-d-001",
									 "apply-a-001") "]}";
	static const char mapped[] = "{\"relationships\":[" MAPPED(
		"c|identified|cve", "apply-c-001", ",\"pad\":\"0123456789\"") "]}";
	struct fake *fk = *state;
	char id[64], stored[256];
	json_object *g, *o;

	json_object_put(fake_control(fk, "/_fake/reset-stats", "{}"));
	create_job(fk, "apply", "CREATE_OR_UPDATE", id);
	assert_int_equal(job_post(fk, id, "entities", ents, NULL), 200);
	assert_int_equal(job_post(fk, id, "relationships", rels, NULL), 200);
	assert_int_equal(job_post(fk, id, "upload", mapped, NULL), 200);
	assert_graph(fk, "apply", "", ""); /* nothing before finalize */
	assert_int_equal(job_num(fk, id, "numEntitiesUploaded"), 4);
	assert_int_equal(job_num(fk, id, "numRelationshipsUploaded"), 4);
	assert_int_equal(job_post(fk, id, "finalize", "{}", "FINALIZE_PENDING"), 200);
	assert_job_status(fk, id, "FINISHED");
	assert_int_equal(job_num(fk, id, "numEntitiesCreated"), 4);
	assert_int_equal(job_num(fk, id, "numRelationshipsCreated"), 4);
	assert_graph(fk, "apply", "apply-a-001 apply-b-001 apply-c-001 apply-d-001",
		     "a|has|b b|has|d c|identified|cve d|has|a");
	assert_int_equal(fake_stat(fk, "upload_requests", NULL), 3);
	assert_int_equal(fake_stat(fk, "objects_uploaded", NULL), 8);
	assert_int_equal(fake_stat(fk, "upload_bytes", NULL),
			 strlen(ents) + strlen(rels) + strlen(mapped));
	assert_int_equal(fake_stat(fk, "max_upload_bytes", NULL), strlen(rels));
	/* {"_type":"cve","_class":"Vulnerability","_key":"cve-2019-11477","pad":"0123456789"} */
	assert_int_equal(fake_stat(fk, "max_target_entity_bytes", NULL), 83);

	/* update a, re-upload b unchanged, delete a relationship explicitly, delete entities c
	 * (the mapped relationship's source) and d (an end of two explicit relationships), and
	 * a key that does not exist */
	create_job(fk, "apply", "CREATE_OR_UPDATE", id);
	assert_int_equal(
		job_post(fk, id, "upload",
			 "{\"entities\":[" ENT("apply-a-001", ",\"v\":2") "," ENT(
				 "apply-b-001", ) "],"
						  "\"deleteRelationships\":[{\"_key\":\"a|has|b\"}"
						  ",{\"_key\":\"no|such|rel\"}],"
						  "\"deleteEntities\":[{\"_key\":\"apply-c-001\"},"
						  "{\"_key\":\"apply-d-001\"},{\"_key\":\"no-such-"
						  "key\"}]}",
			 NULL),
		200);
	assert_int_equal(job_post(fk, id, "finalize", "{}", NULL), 200);
	assert_job_status(fk, id, "FINISHED");
	assert_int_equal(job_num(fk, id, "numEntitiesCreated"), 0);
	assert_int_equal(job_num(fk, id, "numEntitiesUpdated"), 1);
	assert_int_equal(job_num(fk, id, "numEntitiesDeleted"), 2);
	assert_int_equal(job_num(fk, id, "numRelationshipsDeleted"), 4);
	assert_graph(fk, "apply", "apply-a-001 apply-b-001", "");

	/* the stored object is the last one uploaded, as uploaded */
	g = fake_control(fk, "/_fake/graph?scope=apply", NULL);
	assert_true(json_object_object_get_ex(g, "entities", &o));
	o = json_object_array_get_idx(o, 0);
	snprintf(stored, sizeof(stored), "%s",
		 json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
	assert_string_equal(stored, ENT("apply-a-001", ",\"v\":2"));
	json_object_put(g);
	/* every scope at once */
	g = fake_control(fk, "/_fake/graph", NULL);
	assert_true(json_object_object_get_ex(g, "scopes", &o));
	assert_true(json_object_object_get_ex(o, "apply", NULL));
	json_object_put(g);
	/* finalize is for AWAITING_UPLOADS jobs only */
	assert_int_equal(job_post(fk, id, "finalize", "{}", "FINISHED"), 400);
	assert_int_equal(job_post(fk, id, "entities", "{\"entities\":[]}", "FINISHED"), 400);
}

static void test_diff(void **state)
{
	struct fake *fk = *state;
	char id[64];

	create_job(fk, "diff", "CREATE_OR_UPDATE", id);
	assert_int_equal(
		job_post(
			fk, id, "upload",
			"{\"entities\":[" ENT("diff-a-0001", ) "," ENT("diff-b-0001", ) "," ENT(
				"diff-c-0001", ) "],\"relationships\":[" REL("a|b", "diff-a-0001",
									     "diff-b-0001") "," REL("b|c",
												    "diff-b-0001",
												    "diff-c-0001") "]}",
			NULL),
		200);
	assert_int_equal(job_post(fk, id, "finalize", "{}", NULL), 200);
	assert_graph(fk, "diff", "diff-a-0001 diff-b-0001 diff-c-0001", "a|b b|c");

	/* syncMode defaults to DIFF: whatever this job did not upload goes */
	create_job(fk, "diff", NULL, id);
	assert_int_equal(
		job_post(fk, id, "upload",
			 "{\"entities\":[" ENT("diff-a-0001", ",\"new\":true") "," ENT(
				 "diff-b-0001", ) "],\"relationships\":[" REL("a|b", "diff-a-0001",
									      "diff-b-0001") "]}",
			 NULL),
		200);
	assert_int_equal(job_post(fk, id, "finalize", "{}", NULL), 200);
	assert_job_status(fk, id, "FINISHED");
	assert_int_equal(job_num(fk, id, "numEntitiesUpdated"), 1);
	assert_int_equal(job_num(fk, id, "numEntitiesDeleted"), 1);
	assert_int_equal(job_num(fk, id, "numRelationshipsDeleted"), 1);
	assert_graph(fk, "diff", "diff-a-0001 diff-b-0001", "a|b");
	/* other scopes are not touched by a DIFF job */
	create_job(fk, "diff-other", NULL, id);
	assert_int_equal(job_post(fk, id, "finalize", "{}", NULL), 200);
	assert_graph(fk, "diff", "diff-a-0001 diff-b-0001", "a|b");
	assert_graph(fk, "diff-other", "", "");
}

static void test_abort(void **state)
{
	struct fake *fk = *state;
	char id[64], done[64];
	json_object *jobs, *arr, *job = NULL, *v;

	create_job(fk, "abort", "CREATE_OR_UPDATE", done);
	assert_int_equal(job_post(fk, done, "finalize", "{}", NULL), 200);
	create_job(fk, "abort", "CREATE_OR_UPDATE", id);
	assert_int_equal(
		job_post(fk, id, "entities", "{\"entities\":[" ENT("abort-key-1", ) "]}", NULL),
		200);
	assert_int_equal(job_post(fk, id, "abort", "{\"reason\":\"sink stopping\"}", "ABORTED"),
			 200);
	assert_job_status(fk, id, "ABORTED");
	assert_int_equal(job_post(fk, id, "abort", "{}", NULL), 200); /* again: no change */
	assert_int_equal(job_post(fk, id, "entities", "{\"entities\":[]}", "ABORTED"), 400);
	assert_int_equal(job_post(fk, id, "finalize", "{}", "ABORTED"), 400);
	assert_graph(fk, "abort", "", "");
	assert_int_equal(job_post(fk, done, "abort", "{}", "cannot be aborted"), 400);

	jobs = fake_control(fk, "/_fake/jobs", NULL);
	assert_true(json_object_object_get_ex(jobs, "jobs", &arr));
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *j = json_object_array_get_idx(arr, i);

		if (json_object_object_get_ex(j, "id", &v) &&
		    strcmp(json_object_get_string(v), id) == 0)
			job = j;
	}
	assert_non_null(job);
	assert_true(json_object_object_get_ex(job, "status", &v));
	assert_string_equal(json_object_get_string(v), "ABORTED");
	assert_true(json_object_object_get_ex(job, "abortReason", &v));
	assert_string_equal(json_object_get_string(v), "sink stopping");
	json_object_put(jobs);

	/* a job failed by bad data can be aborted too; its error stays */
	create_job(fk, "abort", "CREATE_OR_UPDATE", id);
	assert_int_equal(job_post(fk, id, "entities", "{\"entities\":[" ENT("short", ) "]}", NULL),
			 400);
	assert_int_equal(job_post(fk, id, "abort", "{\"reason\":\"bad data\"}", NULL), 200);
	assert_job_status(fk, id, "ABORTED");
}

static void test_one_finalizing_per_scope(void **state)
{
	struct fake fk;
	char a[64], b[64], other[64];
	int i;

	(void)state;
	fake_start_named(&fk, "fake_jupiterone",
			 (const char *const[]){ "--finalize-ms", "1500", NULL });
	create_job(&fk, "busy", "CREATE_OR_UPDATE", a);
	create_job(&fk, "busy", "CREATE_OR_UPDATE", b);
	create_job(&fk, "quiet", "CREATE_OR_UPDATE", other);
	assert_int_equal(
		job_post(&fk, a, "entities", "{\"entities\":[" ENT("busy-key-01", ) "]}", NULL),
		200);
	assert_int_equal(
		job_post(&fk, b, "entities", "{\"entities\":[" ENT("busy-key-02", ) "]}", NULL),
		200);
	assert_int_equal(job_post(&fk, a, "finalize", "{}", "FINALIZE_PENDING"), 200);
	assert_job_status(&fk, a, "FINALIZE_PENDING");
	assert_graph(&fk, "busy", "", ""); /* applied when it finishes, not before */
	assert_int_equal(job_post(&fk, b, "finalize", "{}", "is finalizing"), 400);
	assert_job_status(&fk, b, "AWAITING_UPLOADS"); /* the refusal does not hurt it */
	assert_int_equal(job_post(&fk, a, "abort", "{}", "cannot be aborted"), 400);
	assert_int_equal(job_post(&fk, other, "finalize", "{}", NULL), 200); /* another scope */
	for (i = 0; i < 500; i++) {
		json_object *job = get_job(&fk, a), *v;
		bool done;

		assert_true(json_object_object_get_ex(job, "status", &v));
		done = strcmp(json_object_get_string(v), "FINISHED") == 0;
		json_object_put(job);
		if (done)
			break;
		fake_sleep_ms(20);
	}
	assert_true(i < 500);
	assert_graph(&fk, "busy", "busy-key-01", "");
	assert_int_equal(job_post(&fk, b, "finalize", "{}", NULL), 200);
	fake_stop(&fk);
}

static void test_faults(void **state)
{
	struct fake *fk = *state;
	char id[64], path[256];
	struct answer a;
	int64_t t0;

	json_object_put(fake_control(fk, "/_fake/reset-stats", "{}"));
	fake_fault(fk, "{\"status\":429,\"count\":2,\"route\":\"create_job\"}");
	assert_int_equal(post(fk, JOBS, "{\"source\":\"api\",\"scope\":\"faults\"}"), 429);
	assert_int_equal(post(fk, JOBS, "{\"source\":\"api\",\"scope\":\"faults\"}"), 429);
	create_job(fk, "faults", "CREATE_OR_UPDATE", id);
	assert_int_equal(fake_stat(fk, "rejected", "429"), 2);
	assert_int_equal(fake_stat(fk, "jobs_created", NULL), 1);

	/* a fault for one route leaves the others alone */
	fake_fault(fk, "{\"status\":503,\"count\":1,\"route\":\"uploads\"}");
	assert_job_status(fk, id, "AWAITING_UPLOADS");
	assert_int_equal(job_post(fk, id, "relationships", "{\"relationships\":[]}", "injected"),
			 503);
	assert_int_equal(job_post(fk, id, "relationships", "{\"relationships\":[]}", NULL), 200);
	fake_fault(fk, "{\"status\":500,\"route\":\"any\"}");
	assert_int_equal(job_post(fk, id, "upload", "{}", NULL), 500);
	assert_int_equal(job_post(fk, id, "upload", "{}", NULL), 200);

	/* a slow answer */
	fake_fault(fk, "{\"kind\":\"slow\",\"ms\":300,\"route\":\"get_job\"}");
	t0 = monotonic_ms();
	assert_job_status(fk, id, "AWAITING_UPLOADS");
	assert_true(monotonic_ms() - t0 >= 300);

	/* the outage: every API request is 503, authenticated or not; control still works */
	fake_fault(fk, "{\"kind\":\"down\",\"on\":true}");
	assert_int_equal(post(fk, JOBS, "{\"source\":\"api\",\"scope\":\"faults\"}"), 503);
	assert_int_equal(req(fk, "GET", JOBS "/x", NULL, 0, (const char *const[]){ NULL }, &a),
			 503);
	buf_free(&a.body);
	assert_int_equal(job_post(fk, id, "finalize", "{}", "unavailable"), 503);
	snprintf(path, sizeof(path), JOBS "/%s", id);
	assert_int_equal(req(fk, "GET", path, NULL, 0, NULL, &a), 503);
	buf_free(&a.body);
	fake_fault(fk, "{\"kind\":\"down\",\"on\":false}");
	assert_int_equal(job_post(fk, id, "finalize", "{}", NULL), 200);
	assert_job_status(fk, id, "FINISHED");
	assert_true(fake_stat(fk, "rejected", "503") >= 4);
	assert_int_equal(fake_stat(fk, "rejected", "500"), 1);
}

static int group_setup(void **state)
{
	static struct fake fk;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	fake_start_named(&fk, "fake_jupiterone", NULL);
	*state = &fk;
	return 0;
}

static int group_teardown(void **state)
{
	fake_stop(*state);
	curl_global_cleanup();
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_request_bounds),
		cmocka_unit_test(test_graph_rules),
		cmocka_unit_test(test_duplicate_key),
		cmocka_unit_test(test_apply_and_cascade),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_abort),
		cmocka_unit_test(test_one_finalizing_per_scope),
		cmocka_unit_test(test_faults),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
