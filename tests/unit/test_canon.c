/* Unit tests for canon: key order, escapes, UTF-8, numbers, nesting, bounds and the hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <math.h>
#include <string.h>

#include "tsgraphd/canon.h"

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
	/* An embedded NUL survives as \u0000 rather than cutting the string. */
	assert_canon_obj(json_object_new_string_len("a\0b", 3), "\"a\\u0000b\"");
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
		cmocka_unit_test(test_nested),
		cmocka_unit_test(test_depth_limit),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_nan_inf_rejected),
		cmocka_unit_test(test_bounded),
		cmocka_unit_test(test_hash),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
