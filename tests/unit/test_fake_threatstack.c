/* Tests of the fake Threat Stack server (build/fake_threatstack) end to end: the binary is
 * spawned on an ephemeral loopback port and driven with libcurl, signing every request with
 * the project's hawk module and verifying every answer's Server-Authorization. Covers the
 * 10,000-agent listing over 100+ pages, token encoding, the stale-timestamp handshake, nonce
 * replay, injected faults and the fleet control operations. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <time.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "tsgraphd/hawk.h"
#include "tsgraphd/util.h"

#include "fake.h"

struct answer {
	long status;
	struct buf body;
	char sa[1024];	    /* Server-Authorization */
	char www[1024];	    /* WWW-Authenticate */
	char reset[64];	    /* x-rate-limit-reset */
	char remaining[64]; /* x-rate-limit-remaining */
	char ctype[128];    /* Content-Type */
};

static size_t on_body(char *p, size_t size, size_t n, void *userdata)
{
	struct answer *a = userdata;

	return buf_append(&a->body, p, size * n) == 0 ? size * n : 0;
}

static void keep_header(const char *line, size_t len, const char *name, char *out, size_t size)
{
	size_t nl = strlen(name);

	if (len <= nl + 1 || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
		return;
	line += nl + 1;
	len -= nl + 1;
	while (len && (*line == ' ' || *line == '\t'))
		line++, len--;
	while (len && (line[len - 1] == '\r' || line[len - 1] == '\n'))
		len--;
	snprintf(out, size, "%.*s", (int)len, line);
}

static size_t on_header(char *p, size_t size, size_t n, void *userdata)
{
	struct answer *a = userdata;

	keep_header(p, size * n, "Server-Authorization", a->sa, sizeof(a->sa));
	keep_header(p, size * n, "WWW-Authenticate", a->www, sizeof(a->www));
	keep_header(p, size * n, "x-rate-limit-reset", a->reset, sizeof(a->reset));
	keep_header(p, size * n, "x-rate-limit-remaining", a->remaining, sizeof(a->remaining));
	keep_header(p, size * n, "Content-Type", a->ctype, sizeof(a->ctype));
	return size * n;
}

static void answer_init(struct answer *a)
{
	memset(a, 0, sizeof(*a));
	buf_init(&a->body, 64 << 20);
}

/* GET uri signed at now + ts_offset with nonce (NULL: a fresh one); the Server-Authorization
 * of the answer is verified, whatever its status. */
static void api_get(const struct fake *fk, const char *uri, int64_t ts_offset, const char *nonce,
		    struct answer *a)
{
	struct hawk_credentials cred = { FAKE_USER_ID, FAKE_API_KEY, FAKE_ORG_ID };
	struct hawk_request req = {
		.method = "GET", .uri = uri, .host = "127.0.0.1", .port = fk->port
	};
	struct hawk_artifacts art;
	char fresh[HAWK_NONCE_LEN + 1], url[4096], *auth = NULL, *hdr = NULL;
	struct curl_slist *hl = NULL;
	CURL *c = curl_easy_init();
	struct buf h;

	answer_init(a);
	assert_non_null(c);
	if (!nonce) {
		assert_int_equal(hawk_nonce(fresh), 0);
		nonce = fresh;
	}
	assert_int_equal(hawk_header(&cred, &req, now_ms() / 1000 + ts_offset, nonce, &auth, &art),
			 0);
	buf_init(&h, 4096);
	assert_int_equal(buf_printf(&h, "Authorization: %s", auth), 0);
	hdr = buf_steal(&h);
	hl = curl_slist_append(hl, hdr);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", fk->port, uri);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, a);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	assert_true(a->sa[0] != '\0');
	assert_int_equal(
		hawk_verify_response(&cred, &req, &art, a->sa, a->ctype, a->body.data, a->body.len),
		0);
	curl_slist_free_all(hl);
	curl_easy_cleanup(c);
	free(hdr);
	free(auth);
}

/* POST a control body (or GET when body is NULL); returns the status, fills a. */
static long control(const struct fake *fk, const char *path, const char *body, struct answer *a)
{
	char url[512];
	CURL *c = curl_easy_init();

	answer_init(a);
	assert_non_null(c);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", fk->port, path);
	curl_easy_setopt(c, CURLOPT_URL, url);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, a);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
	assert_int_equal(curl_easy_perform(c), CURLE_OK);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a->status);
	curl_easy_cleanup(c);
	return a->status;
}

static json_object *answer_json(const struct answer *a)
{
	json_object *o = json_tokener_parse(a->body.data ? a->body.data : "");

	assert_non_null(o);
	return o;
}

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
}

static char *url_encode(const char *s)
{
	CURL *c = curl_easy_init();
	char *e = curl_easy_escape(c, s, 0), *r = strdup(e);

	curl_free(e);
	curl_easy_cleanup(c);
	return r;
}

/* Walks a whole listing; returns the item count, adds ids to seen (an object used as a set). */
static size_t list_all(const struct fake *fk, const char *base, const char *collection,
		       const char *idkey, json_object *seen, size_t *ret_pages)
{
	char uri[1024];
	_cleanup_free_ char *tok = NULL;
	size_t total = 0, pages = 0;

	for (;;) {
		struct answer a;
		json_object *o, *arr, *t;
		_cleanup_free_ char *enc = tok ? url_encode(tok) : NULL;

		snprintf(uri, sizeof(uri), "%s%s%s%s", base,
			 tok ? (strchr(base, '?') ? "&" : "?") : "", tok ? "token=" : "",
			 enc ? enc : "");
		api_get(fk, uri, 0, NULL, &a);
		assert_int_equal(a.status, 200);
		o = answer_json(&a);
		assert_true(json_object_object_get_ex(o, collection, &arr));
		assert_true(json_object_is_type(arr, json_type_array));
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			const char *id = jstr(json_object_array_get_idx(arr, i), idkey);

			assert_non_null(id);
			json_object_object_add(seen, id, NULL);
		}
		total += json_object_array_length(arr);
		pages++;
		free(tok);
		tok = NULL;
		if (json_object_object_get_ex(o, "token", &t) &&
		    json_object_is_type(t, json_type_string))
			tok = strdup(json_object_get_string(t));
		json_object_put(o);
		buf_free(&a.body);
		if (!tok)
			break;
		assert_true(pages < 10000);
	}
	*ret_pages = pages;
	return total;
}

static void test_ten_thousand_agents(void **state)
{
	struct fake fk;
	json_object *seen = json_object_new_object();
	size_t on, off, pon, poff;
	struct answer a;
	json_object *truth, *agents;

	(void)state;
	fake_start(&fk, (const char *const[]){ "--agents", "10000", "--cves", "3", "--alerts", "5",
					       NULL });
	on = list_all(&fk, "/v2/agents?status=online", "agents", "id", seen, &pon);
	off = list_all(&fk, "/v2/agents?status=offline", "agents", "id", seen, &poff);
	assert_int_equal(json_object_object_length(seen), 10000);
	/* about 5% appear in both listings */
	assert_true(on + off > 10000 + 400 && on + off < 10000 + 600);
	assert_true(pon + poff >= 100);
	assert_int_equal(pon, (on + 99) / 100);

	assert_int_equal(control(&fk, "/_fake/fleet", NULL, &a), 200);
	truth = answer_json(&a);
	assert_true(json_object_object_get_ex(truth, "agents", &agents));
	assert_int_equal(json_object_array_length(agents), 10000);
	json_object_put(truth);
	buf_free(&a.body);
	json_object_put(seen);
	fake_stop(&fk);
}

static void test_tokens(void **state)
{
	struct fake *fk = *state;
	struct answer a;
	json_object *o;
	char uri[512];
	_cleanup_free_ char *tok = NULL, *enc = NULL;

	/* 50 agents at 10 a page: there is a next page */
	api_get(fk, "/v2/agents?status=online", 0, NULL, &a);
	assert_int_equal(a.status, 200);
	o = answer_json(&a);
	tok = strdup(jstr(o, "token"));
	json_object_put(o);
	buf_free(&a.body);
	assert_non_null(strchr(tok, '+')); /* must be URL-encoded to survive */
	enc = url_encode(tok);

	snprintf(uri, sizeof(uri), "/v2/agents?status=online&token=%s", enc);
	api_get(fk, uri, 0, NULL, &a);
	assert_int_equal(a.status, 200);
	buf_free(&a.body);
	snprintf(uri, sizeof(uri), "/v2/agents?status=online&token=%s", tok);
	api_get(fk, uri, 0, NULL, &a);
	assert_int_equal(a.status, 400);
	buf_free(&a.body);
	/* a token of one listing is no good for another */
	snprintf(uri, sizeof(uri), "/v2/agents?status=offline&token=%s", enc);
	api_get(fk, uri, 0, NULL, &a);
	assert_int_equal(a.status, 400);
	buf_free(&a.body);
	api_get(fk, "/v2/alerts?token=garbled", 0, NULL, &a);
	assert_int_equal(a.status, 400);
	o = answer_json(&a);
	assert_true(json_object_object_get_ex(o, "errors", NULL));
	json_object_put(o);
	buf_free(&a.body);
}

static void test_servers_span_pages(void **state)
{
	struct fake *fk = *state;
	json_object *seen = json_object_new_object(), *o, *cves;
	const char *big = NULL;
	struct answer a;
	size_t pages, n;
	char uri[256];

	api_get(fk, "/v2/vulnerabilities?status=active", 0, NULL, &a);
	assert_int_equal(a.status, 200);
	o = answer_json(&a);
	assert_true(json_object_object_get_ex(o, "cves", &cves));
	for (size_t i = 0; i < json_object_array_length(cves) && !big; i++) {
		json_object *c = json_object_array_get_idx(cves, i);

		if (!json_object_object_get_ex(c, "agents", NULL))
			big = jstr(c, "cveNumber");
	}
	assert_non_null(big);
	snprintf(uri, sizeof(uri), "/v2/vulnerabilities/%s/servers", big);
	n = list_all(fk, uri, "servers", "agentId", seen, &pages);
	assert_int_equal(n, 50);
	assert_true(pages > 1);
	json_object_put(o);
	json_object_put(seen);
	buf_free(&a.body);
	api_get(fk, "/v2/vulnerabilities/CVE-1999-0001/servers", 0, NULL, &a);
	assert_int_equal(a.status, 404);
	buf_free(&a.body);
}

static void test_stale_and_replay(void **state)
{
	struct fake *fk = *state;
	struct answer a;
	int64_t offset = 0;

	api_get(fk, "/help/hawk/self-test", -3600, NULL, &a);
	assert_int_equal(a.status, 401);
	assert_int_equal(hawk_verify_tsm(FAKE_API_KEY, a.www, now_ms() / 1000, &offset), 0);
	buf_free(&a.body);
	api_get(fk, "/help/hawk/self-test", 0, "replayme", &a);
	assert_int_equal(a.status, 200);
	buf_free(&a.body);
	api_get(fk, "/help/hawk/self-test", 0, "replayme", &a);
	assert_int_equal(a.status, 401);
	buf_free(&a.body);
}

static void test_faults(void **state)
{
	struct fake *fk = *state;
	struct answer a;
	json_object *o, *v;

	assert_int_equal(
		control(fk, "/_fake/fault",
			"{\"kind\":\"429\",\"count\":1,\"ms\":250,\"path\":\"/v2/alerts\"}", &a),
		200);
	buf_free(&a.body);
	api_get(fk, "/help/hawk/self-test", 0, NULL, &a); /* other path: untouched */
	assert_int_equal(a.status, 200);
	buf_free(&a.body);
	api_get(fk, "/v2/alerts?status=active", 0, NULL, &a);
	assert_int_equal(a.status, 429);
	assert_string_equal(a.reset, "250");
	buf_free(&a.body);

	assert_int_equal(control(fk, "/_fake/fault", "{\"kind\":\"badtype\",\"count\":1}", &a),
			 200);
	buf_free(&a.body);
	api_get(fk, "/v2/alerts?status=active", 0, NULL, &a);
	assert_int_equal(a.status, 200);
	o = answer_json(&a);
	assert_true(json_object_object_get_ex(o, "alerts", &v));
	assert_true(json_object_is_type(v, json_type_object));
	json_object_put(o);
	buf_free(&a.body);

	assert_int_equal(control(fk, "/_fake/fault", "{\"kind\":\"truncate\",\"count\":1}", &a),
			 200);
	buf_free(&a.body);
	api_get(fk, "/v2/alerts?status=active", 0, NULL, &a);
	assert_int_equal(a.status, 200);
	o = json_tokener_parse(a.body.data);
	assert_null(o);
	buf_free(&a.body);

	api_get(fk, "/v2/alerts?status=active", 0, NULL, &a); /* queue drained */
	assert_int_equal(a.status, 200);
	buf_free(&a.body);
	assert_int_equal(control(fk, "/_fake/fault", "{\"kind\":\"slow\"}", &a), 400);
	buf_free(&a.body);
}

static void test_fleet_ops(void **state)
{
	struct fake *fk = *state;
	struct answer a;
	json_object *o;
	char body[256], uri[256], id[64];

	assert_int_equal(control(fk, "/_fake/fleet", "{\"op\":\"agent_add\"}", &a), 200);
	o = answer_json(&a);
	snprintf(id, sizeof(id), "%s", jstr(o, "id"));
	json_object_put(o);
	buf_free(&a.body);

	snprintf(uri, sizeof(uri), "/v2/agents/%s", id);
	api_get(fk, uri, 0, NULL, &a);
	assert_int_equal(a.status, 200);
	o = answer_json(&a);
	assert_string_equal(jstr(o, "status"), "online");
	json_object_put(o);
	buf_free(&a.body);

	snprintf(body, sizeof(body),
		 "{\"op\":\"cve_add\",\"agent\":\"%s\",\"cve\":\"CVE-2099-0001\"}", id);
	assert_int_equal(control(fk, "/_fake/fleet", body, &a), 200);
	buf_free(&a.body);
	api_get(fk, "/v2/vulnerabilities/CVE-2099-0001/servers", 0, NULL, &a);
	assert_int_equal(a.status, 200);
	buf_free(&a.body);
	snprintf(body, sizeof(body), "{\"op\":\"agent_remove\",\"id\":\"%s\"}", id);
	assert_int_equal(control(fk, "/_fake/fleet", body, &a), 200);
	buf_free(&a.body);
	/* the CVE lost its last agent and is gone */
	api_get(fk, "/v2/vulnerabilities/CVE-2099-0001/servers", 0, NULL, &a);
	assert_int_equal(a.status, 404);
	buf_free(&a.body);
	api_get(fk, uri, 0, NULL, &a);
	assert_int_equal(a.status, 404);
	buf_free(&a.body);
	assert_int_equal(control(fk, "/_fake/fleet", body, &a), 404);
	buf_free(&a.body);
	assert_int_equal(control(fk, "/_fake/fleet", "{\"op\":\"warp\"}", &a), 400);
	buf_free(&a.body);

	assert_int_equal(control(fk, "/_fake/fleet", "{\"op\":\"alert_add\",\"agent\":null}", &a),
			 200);
	o = answer_json(&a);
	snprintf(uri, sizeof(uri), "/v2/alerts/%s", jstr(o, "id"));
	json_object_put(o);
	buf_free(&a.body);
	api_get(fk, uri, 0, NULL, &a);
	assert_int_equal(a.status, 200);
	o = answer_json(&a);
	assert_string_equal(jstr(o, "dataSource"), "cloudtrail");
	assert_false(json_object_object_get_ex(o, "agentId", NULL));
	json_object_put(o);
	buf_free(&a.body);

	assert_int_equal(control(fk, "/_fake/stats", NULL, &a), 200);
	o = answer_json(&a);
	assert_true(json_object_object_get_ex(o, "max_per_minute", NULL));
	json_object_put(o);
	buf_free(&a.body);
}

/* --rate-limit 3: three answers counting down x-rate-limit-remaining, then 429s with the
 * time until the first request leaves the window; a Hawk failure is a 401, not a 429; the
 * stats count the 429s. Without the option no answer carries the headers (the group's
 * fake). */
static void test_rate_limit(void **state)
{
	struct fake fk;
	struct answer a;
	json_object *o, *v;
	int64_t reset;

	api_get(*state, "/v2/alerts?status=active", 0, NULL, &a);
	assert_int_equal(a.status, 200);
	assert_string_equal(a.remaining, "");
	assert_string_equal(a.reset, "");
	buf_free(&a.body);

	fake_start(&fk, (const char *const[]){ "--agents", "5", "--rate-limit", "3", NULL });
	for (int i = 0; i < 3; i++) {
		char want[8];

		api_get(&fk, "/v2/alerts?status=active", 0, NULL, &a);
		assert_int_equal(a.status, 200);
		snprintf(want, sizeof(want), "%d", 2 - i);
		assert_string_equal(a.remaining, want);
		assert_int_equal(parse_i64(a.reset, 1, 60000, &reset), 0);
		buf_free(&a.body);
	}
	for (int i = 0; i < 2; i++) {
		api_get(&fk, "/v2/agents?status=online", 0, NULL, &a);
		assert_int_equal(a.status, 429);
		assert_string_equal(a.ctype, "text/plain");
		assert_string_equal(a.remaining, "0");
		assert_int_equal(parse_i64(a.reset, 1, 60000, &reset), 0);
		buf_free(&a.body);
	}
	api_get(&fk, "/v2/alerts?status=active", -3600, NULL, &a); /* stale: 401 first */
	assert_int_equal(a.status, 401);
	buf_free(&a.body);

	assert_int_equal(control(&fk, "/_fake/stats", NULL, &a), 200);
	o = answer_json(&a);
	assert_true(json_object_object_get_ex(o, "rate_limited", &v));
	assert_int_equal(json_object_get_int64(v), 2);
	assert_true(json_object_object_get_ex(o, "status_429", &v));
	assert_int_equal(json_object_get_int64(v), 2);
	assert_true(json_object_object_get_ex(o, "api_requests", &v));
	assert_int_equal(json_object_get_int64(v), 6);
	assert_true(json_object_object_get_ex(o, "span_ms", &v));
	assert_true(json_object_get_int64(v) >= 0 && json_object_get_int64(v) < 30000);
	json_object_put(o);
	buf_free(&a.body);
	fake_stop(&fk);
}

static int group_setup(void **state)
{
	static struct fake fk;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	fake_start(&fk, (const char *const[]){ "--agents", "50", "--page-size", "10", "--seed", "7",
					       NULL });
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
		cmocka_unit_test(test_tokens),		 cmocka_unit_test(test_servers_span_pages),
		cmocka_unit_test(test_stale_and_replay), cmocka_unit_test(test_faults),
		cmocka_unit_test(test_fleet_ops),	 cmocka_unit_test(test_ten_thousand_agents),
		cmocka_unit_test(test_rate_limit),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
