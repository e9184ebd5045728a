/* Unit tests for canon: key order, escapes, UTF-8, numbers, nesting, bounds and the hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "tsgraphd/canon.h"
#include "tsgraphd/graph.h"
#include "tsgraphd/tsjson.h"

/* Canonical form of o as a malloc'd string; fails the test on error. */
static char *canon(json_object *o)
{
	struct buf b;

	buf_init(&b, 1 << 20);
	assert_int_equal(canon_serialize(o, &b), 0);
	return buf_steal(&b);
}

static void assert_canon_text(const char *json, const char *want)
{
	json_object *o = json_tokener_parse(json);
	char *got;

	assert_non_null(o);
	got = canon(o);
	assert_string_equal(got, want);
	free(got);
	json_object_put(o);
}

static void assert_canon_obj(json_object *o, const char *want)
{
	char *got = canon(o);

	assert_string_equal(got, want);
	free(got);
	json_object_put(o);
}

static void test_key_order(void **state)
{
	json_object *a = json_tokener_parse("{\"b\":1,\"a\":{\"d\":[1,2],\"c\":null},\"B\":2}");
	json_object *b =
		json_tokener_parse("{ \"a\" : {\"c\":null,\"d\":[1, 2]}, \"B\":2, \"b\":1 }");
	char ha[CANON_HASH_HEX + 1], hb[CANON_HASH_HEX + 1];
	char *sa, *sb;

	(void)state;
	sa = canon(a);
	sb = canon(b);
	/* Bytewise: 'B' (0x42) before 'a' (0x61) before 'b'. */
	assert_string_equal(sa, "{\"B\":2,\"a\":{\"c\":null,\"d\":[1,2]},\"b\":1}");
	assert_string_equal(sa, sb);
	assert_int_equal(canon_hash(a, ha), 0);
	assert_int_equal(canon_hash(b, hb), 0);
	assert_string_equal(ha, hb);
	/* Hashing the canonical bytes gives the same digest as hashing the object. */
	assert_int_equal(canon_sha256_hex(sa, strlen(sa), hb), 0);
	assert_string_equal(ha, hb);
	assert_int_equal(canon_sha256_hex("", 0, hb), 0);
	assert_string_equal(hb, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	free(sa);
	free(sb);
	json_object_put(a);
	json_object_put(b);
	/* Bytewise UTF-8 order: "é" (0xc3 0xa9) sorts after "z". */
	assert_canon_text("{\"\\u00e9\":1,\"z\":2,\"aa\":3,\"a\":4}",
			  "{\"a\":4,\"aa\":3,\"z\":2,\"\xc3\xa9\":1}");
}

static void test_escapes(void **state)
{
	(void)state;
	assert_canon_text("\"q\\\"b\\\\s\\/n\\nt\\tr\\rb\\bf\\f\\u0001\\u001f\\u007f\"",
			  "\"q\\\"b\\\\s/n\\nt\\tr\\rb\\bf\\f\\u0001\\u001f\x7f\"");
	/* An embedded NUL becomes U+FFFD rather than cutting the string (see test_utf8_repair). */
	assert_canon_obj(json_object_new_string_len("a\0b", 3), "\"a\xef\xbf\xbd"
								"b\"");
	assert_canon_obj(json_object_new_string(""), "\"\"");
	/* Keys are escaped like values. */
	assert_canon_text("{\"k\\n\\\"\":\"v\"}", "{\"k\\n\\\"\":\"v\"}");
}

static void test_unicode_passthrough(void **state)
{
	(void)state;
	/* \u escapes of non-ASCII become raw UTF-8; raw UTF-8 stays as it is. */
	assert_canon_text("\"\\u00e9\\u20ac\\ud83d\\ude00\"",
			  "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
	assert_canon_text("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
			  "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
}

#define FFFD "\xef\xbf\xbd"

/* Canonical form of the string made of len raw bytes. */
static void assert_canon_bytes(const char *p, size_t len, const char *want)
{
	assert_canon_obj(json_object_new_string_len(p, (int)len), want);
}

/* An independent check of well-formed UTF-8: decode each code point and test its range. */
static bool utf8_ok(const unsigned char *p, size_t len)
{
	size_t i = 0;

	while (i < len) {
		unsigned char c = p[i];
		uint32_t cp, min;
		size_t n;

		if (c < 0x80) {
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0)
			n = 2, cp = c & 0x1f, min = 0x80;
		else if ((c & 0xf0) == 0xe0)
			n = 3, cp = c & 0x0f, min = 0x800;
		else if ((c & 0xf8) == 0xf0)
			n = 4, cp = c & 0x07, min = 0x10000;
		else
			return false;
		if (i + n > len)
			return false;
		for (size_t k = 1; k < n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += n;
	}
	return true;
}

/* Each kind of bad input is repaired to U+FFFD, one per maximal ill-formed subpart. */
static void test_utf8_repair(void **state)
{
	(void)state;
	/* A raw 0xff, and every byte that can never start a sequence. */
	assert_canon_bytes("a\xff"
			   "b",
			   3, "\"a" FFFD "b\"");
	assert_canon_bytes("\x80\xbf\xc0\xc1\xf5\xfe", 6, "\"" FFFD FFFD FFFD FFFD FFFD FFFD "\"");
	/* Truncated sequences: at the end, and followed by ASCII or another lead. */
	assert_canon_bytes("x\xe2\x82", 3, "\"x" FFFD "\"");
	assert_canon_bytes("\xe2\x82y", 3, "\"" FFFD "y\"");
	assert_canon_bytes("\xf0\x9f\x98\xc3\xa9", 5, "\"" FFFD "\xc3\xa9\"");
	assert_canon_bytes("\xc3", 1, "\"" FFFD "\"");
	/* Overlongs ('/' as C0 AF, E0 80 AF, F0 80 80 AF): every byte is its own subpart. */
	assert_canon_bytes("\xc0\xaf", 2, "\"" FFFD FFFD "\"");
	assert_canon_bytes("\xe0\x80\xaf", 3, "\"" FFFD FFFD FFFD "\"");
	assert_canon_bytes("\xf0\x80\x80\xaf", 4, "\"" FFFD FFFD FFFD FFFD "\"");
	/* Surrogates as raw bytes (CESU-8) and code points above U+10FFFF. */
	assert_canon_bytes("\xed\xa0\x80", 3, "\"" FFFD FFFD FFFD "\"");
	assert_canon_bytes("\xf4\x90\x80\x80", 4, "\"" FFFD FFFD FFFD FFFD "\"");
	/* The largest and the edges of the valid ranges pass untouched. */
	assert_canon_bytes("\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80\xe0\xa0\x80", 13,
			   "\"\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80\xe0\xa0\x80\"");
	/* NULs, also several and at the ends. */
	assert_canon_bytes("\0a\0\0", 4, "\"" FFFD "a" FFFD FFFD "\"");
	/* Lone surrogate escapes in API JSON, high, low, high before a non-surrogate, reversed. */
	assert_canon_text("\"\\ud800\"", "\"" FFFD "\"");
	assert_canon_text("\"\\udc00x\"", "\"" FFFD "x\"");
	assert_canon_text("\"\\ud800\\u0041\"", "\"" FFFD "A\"");
	assert_canon_text("\"\\ude00\\ud83d\"", "\"" FFFD FFFD "\"");
	/* \u0000 in API JSON. */
	assert_canon_text("{\"k\":\"a\\u0000b\"}", "{\"k\":\"a" FFFD "b\"}");
	/* Raw bad bytes inside API JSON text, in a value and in a key. */
	assert_canon_text("{\"h\xff\":\"\xc0\xaf\xe2\x82\"}",
			  "{\"h" FFFD "\":\"" FFFD FFFD FFFD "\"}");
}

/* The repair is a fixed function: the same bytes hash the same every time, and repairing
 * the repaired text changes nothing (so a stored object re-read hashes as it did). */
static void test_utf8_repair_stable(void **state)
{
	static const char bad[] = "\xff\xe2\x82\x00\xed\xa0\x80\xc0\xaf\xf4\x90ok\xc3\xa9";
	char h1[CANON_HASH_HEX + 1], h2[CANON_HASH_HEX + 1], h3[CANON_HASH_HEX + 1];
	json_object *a = json_object_new_object(), *b = json_object_new_object(), *again;
	char *text;

	(void)state;
	json_object_object_add(a, "v", json_object_new_string_len(bad, sizeof(bad) - 1));
	json_object_object_add(b, "v", json_object_new_string_len(bad, sizeof(bad) - 1));
	assert_int_equal(canon_hash(a, h1), 0);
	assert_int_equal(canon_hash(b, h2), 0);
	assert_string_equal(h1, h2);
	text = canon(a);
	assert_true(utf8_ok((const unsigned char *)text, strlen(text)));
	again = json_tokener_parse(text);
	assert_non_null(again);
	assert_int_equal(canon_hash(again, h3), 0);
	assert_string_equal(h1, h3);
	free(text);
	text = canon(again);
	assert_int_equal(canon_sha256_hex(text, strlen(text), h3), 0);
	assert_string_equal(h1, h3);
	free(text);
	json_object_put(again);
	json_object_put(a);
	json_object_put(b);
}

/* Whatever the bytes, the output is valid UTF-8: every string of one to three bytes drawn
 * from the bytes that matter, and pseudo-random longer ones. */
static void test_utf8_always_valid(void **state)
{
	static const unsigned char pick[] = { 0x00, 0x01, 0x22, 0x41, 0x5c, 0x7f, 0x80, 0x8f,
					      0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf,
					      0xe0, 0xed, 0xee, 0xef, 0xf0, 0xf4, 0xf5, 0xff };
	const size_t np = sizeof(pick);
	unsigned char in[64];
	uint32_t seed = 12345;
	struct buf b;

	(void)state;
	buf_init(&b, 1 << 16);
	for (size_t n = 0; n < np * np * np + 20000; n++) {
		size_t len;
		json_object *o;

		if (n < np * np * np) {
			in[0] = pick[n % np];
			in[1] = pick[n / np % np];
			in[2] = pick[n / np / np];
			len = 3;
		} else {
			len = 1 + (seed >> 24) % sizeof(in);
			for (size_t k = 0; k < len; k++) {
				seed = seed * 1103515245u + 12345u;
				in[k] = (unsigned char)(seed >> 16);
			}
		}
		o = json_object_new_string_len((const char *)in, (int)len);
		buf_reset(&b);
		assert_int_equal(canon_serialize(o, &b), 0);
		if (!utf8_ok((const unsigned char *)b.data, b.len))
			fail_msg("invalid UTF-8 out for input #%zu", n);
		assert_null(memchr(b.data, 0, b.len));
		json_object_put(o);
	}
	buf_free(&b);
}

/* Canonical form and hash of each graph object, appended to a buffer; every one must be
 * valid UTF-8 without a NUL. */
struct emitted {
	struct buf text;
	size_t n;
};

static int emit_canon(const struct graph_object *o, void *userdata)
{
	struct emitted *e = userdata;
	char hash[CANON_HASH_HEX + 1], again[CANON_HASH_HEX + 1];
	size_t start = e->text.len;
	json_object *parsed;

	/* The builder's text is canonical: json-c's reading of it hashes to the same. */
	assert_int_equal(buf_append(&e->text, o->json, o->json_len), 0);
	assert_true(utf8_ok((const unsigned char *)e->text.data + start, e->text.len - start));
	assert_null(memchr(e->text.data + start, 0, e->text.len - start));
	assert_int_equal(canon_sha256_hex(o->json, o->json_len, hash), 0);
	assert_non_null(parsed = json_tokener_parse(o->json));
	assert_int_equal(canon_hash(parsed, again), 0);
	assert_string_equal(hash, again);
	json_object_put(parsed);
	assert_int_equal(buf_printf(&e->text, " %s\n", hash), 0);
	e->n++;
	return 0;
}

/* One agents page as the client reads it, with every kind of bad string, through tsjson and
 * graph to canon. */
static void page_to_canon(const char *body, struct emitted *e)
{
	static const struct graph_options gopt = {
		.org_id = "545d0293b620cd090d000023",
		.org_name = "Acme \xff Corp \xc0\xaf", /* from the config */
		.web_url = "https://app.threatstack.com/",
	};
	char err[TSJSON_ERR_MAX];
	json_object *root = NULL, *items = NULL;
	const char *token = NULL;

	assert_int_equal(
		tsjson_page(body, strlen(body), 1 << 20, "agents", &root, &items, &token, err), 0);
	assert_int_equal(graph_account(&gopt, emit_canon, e), 0);
	for (size_t i = 0; i < json_object_array_length(items); i++) {
		struct ts_agent a = { 0 };

		if (tsjson_agent(json_object_array_get_idx(items, i), &a, err) != 0)
			fail_msg("%s", err);
		assert_int_equal(graph_agent(&gopt, &a, emit_canon, e), 0);
		ts_agent_free(&a);
	}
	json_object_put(root);
}

/* issue 8 item 7, from the API and the config: lone surrogate escapes, raw 0xff, truncated
 * and overlong sequences and surrogate bytes in an agents page and a raw 0xff in org_name
 * come out of canon as valid UTF-8, and the same input gives the same text and hashes every
 * time. A NUL from the API never gets this far: tsjson refuses the object that has one. */
static void test_utf8_from_api_and_config(void **state)
{
	static const char body[] =
		"{\"agents\":[{\"id\":\"3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02\",\"status\":"
		"\"online\","
		"\"hostname\":\"web\\ud800.example.com\",\"name\":\"n\\udfffx\","
		"\"description\":\"d\xff\\udc00\",\"version\":\"v\xe2\x82\",\"kernel\":"
		"\"\xc0\xaf\","
		"\"instanceId\":\"i-0abc\\ud83d\",\"tags\":[{\"source\":null,\"key\":\"k\xff\","
		"\"value\":\"\xed\xa0\x80\"}]}],\"token\":null}";
	struct emitted a = { 0 }, b = { 0 };

	(void)state;
	buf_init(&a.text, 1 << 20);
	buf_init(&b.text, 1 << 20);
	page_to_canon(body, &a);
	page_to_canon(body, &b);
	assert_true(a.n >= 3);
	assert_int_equal(a.n, b.n);
	assert_string_equal(a.text.data, b.text.data);
	/* Each kind, repaired to U+FFFD where it stood. */
	assert_non_null(strstr(a.text.data, "\"name\":\"Acme " FFFD " Corp " FFFD FFFD "\""));
	assert_non_null(strstr(a.text.data, "\"description\":\"d" FFFD FFFD "\""));
	assert_non_null(strstr(a.text.data, "\"name\":\"n" FFFD "x\""));
	assert_non_null(strstr(a.text.data, "\"version\":\"v" FFFD "\""));
	assert_non_null(strstr(a.text.data, "\"kernel\":\"" FFFD FFFD "\""));
	assert_non_null(strstr(a.text.data, "\"instanceId\":\"i-0abc" FFFD "\""));
	assert_non_null(strstr(a.text.data, "\"tag.k-\":\"" FFFD FFFD FFFD "\""));
	assert_non_null(strstr(a.text.data, "|aws_instance:i-0abc" FFFD "\""));
	buf_free(&a.text);
	buf_free(&b.text);
}

static void test_api_nul_refused_by_parser(void **state)
{
	json_object *o = json_tokener_parse("{\"id\":\"3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02\","
					    "\"hostname\":\"h\\u0000x\"}");
	char err[TSJSON_ERR_MAX];
	struct ts_agent a = { 0 };

	(void)state;
	assert_non_null(o);
	assert_true(tsjson_agent(o, &a, err) < 0);
	assert_non_null(strstr(err, "contains a NUL byte"));
	ts_agent_free(&a);
	json_object_put(o);
}

static void test_nested(void **state)
{
	(void)state;
	assert_canon_text("{\"z\":[{\"b\":[],\"a\":{}},[[true,false,null]]],\"a\":[]}",
			  "{\"a\":[],\"z\":[{\"a\":{},\"b\":[]},[[true,false,null]]]}");
	assert_canon_text("[]", "[]");
	assert_canon_text("{}", "{}");
	/* json-c's null is the NULL pointer. */
	assert_canon_obj(NULL, "null");
}

static void test_depth_limit(void **state)
{
	json_object *root = json_object_new_array(), *cur = root;
	struct buf b;

	(void)state;
	for (int i = 0; i < 200; i++) {
		json_object *next = json_object_new_array();

		json_object_array_add(cur, next);
		cur = next;
	}
	buf_init(&b, 1 << 20);
	assert_int_equal(canon_serialize(root, &b), -ELOOP);
	assert_int_equal(b.len, 0);
	buf_free(&b);
	json_object_put(root);
}

static void test_numbers(void **state)
{
	(void)state;
	assert_canon_obj(json_object_new_int64(INT64_MIN), "-9223372036854775808");
	assert_canon_obj(json_object_new_int64(INT64_MAX), "9223372036854775807");
	assert_canon_obj(json_object_new_uint64(UINT64_MAX), "18446744073709551615");
	assert_canon_obj(json_object_new_int64(0), "0");
	assert_canon_obj(json_object_new_int64(-42), "-42");
	assert_canon_obj(json_object_new_double(0.1), "0.1");
	assert_canon_obj(json_object_new_double(1e21), "1e+21");
	assert_canon_obj(json_object_new_double(-0.0), "0");
	assert_canon_obj(json_object_new_double(3.0), "3");
	assert_canon_obj(json_object_new_double(-2.5), "-2.5");
	assert_canon_obj(json_object_new_double(1.5e-7), "1.5e-07");
	assert_canon_obj(json_object_new_double(0.1 + 0.2), "0.30000000000000004");
	assert_canon_obj(json_object_new_double(1589814129000.0), "1589814129000");
	assert_canon_obj(json_object_new_double(9007199254740992.0), "9007199254740992");
	assert_canon_obj(json_object_new_double(-9007199254740992.0), "-9007199254740992");
	assert_canon_obj(json_object_new_double(18014398509481984.0), "18014398509481984");
	assert_canon_obj(json_object_new_double(5e-324), "5e-324");
	/* Spellings of the same number in the input agree. */
	assert_canon_text("[1.0,1e0,10E-1,0.10e1,-0.0]", "[1,1,1,1,0]");
	assert_canon_text("[1.2345678901234567e22]", "[1.2345678901234568e+22]");
}

static void test_nan_inf_rejected(void **state)
{
	json_object *o = json_object_new_object();
	char h[CANON_HASH_HEX + 1];
	struct buf b;

	(void)state;
	json_object_object_add(o, "a", json_object_new_int(1));
	json_object_object_add(o, "n", json_object_new_double(NAN));
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_puts(&b, "keep"), 0);
	assert_int_equal(canon_serialize(o, &b), -EINVAL);
	/* Nothing half-written is left behind. */
	assert_string_equal(b.data, "keep");
	assert_int_equal(canon_hash(o, h), -EINVAL);
	json_object_object_add(o, "n", json_object_new_double(-INFINITY));
	assert_int_equal(canon_serialize(o, &b), -EINVAL);
	json_object_object_add(o, "n", json_object_new_double(INFINITY));
	assert_int_equal(canon_serialize(o, &b), -EINVAL);
	assert_string_equal(b.data, "keep");
	buf_free(&b);
	json_object_put(o);
}

static void test_bounded(void **state)
{
	json_object *o = json_tokener_parse("{\"key\":\"0123456789abcdef\"}");
	struct buf b;

	(void)state;
	buf_init(&b, 16);
	assert_int_equal(buf_puts(&b, "ab"), 0);
	assert_int_equal(canon_serialize(o, &b), -E2BIG);
	assert_int_equal(b.len, 2);
	assert_string_equal(b.data, "ab");
	buf_free(&b);
	/* Exactly at the bound fits: {"key":"0123456789abcdef"} is 26 bytes. */
	buf_init(&b, 26);
	assert_int_equal(canon_serialize(o, &b), 0);
	assert_int_equal(b.len, 26);
	/* And appending to what is there is what canon_serialize does. */
	buf_free(&b);
	buf_init(&b, 27);
	assert_int_equal(buf_puts(&b, "x"), 0);
	assert_int_equal(canon_serialize(o, &b), 0);
	assert_string_equal(b.data, "x{\"key\":\"0123456789abcdef\"}");
	buf_free(&b);
	json_object_put(o);
}

static void test_hash(void **state)
{
	json_object *e = json_object_new_object();
	json_object *o = json_tokener_parse("{\"b\":true, \"a\":[1,\"x\"]}");
	char h[CANON_HASH_HEX + 1];

	(void)state;
	assert_int_equal(canon_hash(e, h), 0);
	assert_string_equal(h, "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
	assert_int_equal(canon_hash(o, h), 0);
	/* sha256 of {"a":[1,"x"],"b":true} */
	assert_string_equal(h, "c817ea2211dc960ff318c03b8414e1c9f63f6010af61d11cca0cf7f920ac9dae");
	assert_int_equal(strlen(h), CANON_HASH_HEX);
	/* A change of value changes the hash. */
	json_object_object_add(o, "b", json_object_new_boolean(0));
	assert_int_equal(canon_hash(o, h), 0);
	assert_string_not_equal(h,
				"c817ea2211dc960ff318c03b8414e1c9f63f6010af61d11cca0cf7f920ac9dae");
	json_object_put(e);
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_key_order),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_unicode_passthrough),
		cmocka_unit_test(test_utf8_repair),
		cmocka_unit_test(test_utf8_repair_stable),
		cmocka_unit_test(test_utf8_always_valid),
		cmocka_unit_test(test_utf8_from_api_and_config),
		cmocka_unit_test(test_api_nul_refused_by_parser),
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_nan_inf_rejected),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
