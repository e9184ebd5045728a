/* Unit tests for util: checked parsers, the bounded buffer, ISO-8601, ct_equal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "tsgraphd/util.h"

static void test_parse_u64(void **state)
{
	uint64_t v = 0;

	(void)state;
	assert_int_equal(parse_u64("150", 1, 1000, &v), 0);
	assert_int_equal(v, 150);
	assert_int_equal(parse_u64("0", 1, 1000, &v), -ERANGE);
	assert_int_equal(parse_u64("1001", 1, 1000, &v), -ERANGE);
	assert_int_equal(parse_u64("12x", 0, 1000, &v), -EINVAL);
	assert_int_equal(parse_u64("", 0, 1000, &v), -EINVAL);
	assert_int_equal(parse_u64("-1", 0, 1000, &v), -EINVAL);
	assert_int_equal(parse_u64(" 1", 0, 1000, &v), -EINVAL);
	assert_int_equal(parse_u64("99999999999999999999999", 0, UINT64_MAX, &v), -ERANGE);
}

static void test_parse_double_size_bool(void **state)
{
	double d;
	uint64_t s;
	bool b;

	(void)state;
	assert_int_equal(parse_double("0.25", 0, 1, &d), 0);
	assert_true(d == 0.25);
	assert_int_equal(parse_double("1.5", 0, 1, &d), -ERANGE);
	assert_int_equal(parse_double("nan", 0, 1, &d), -EINVAL);
	assert_int_equal(parse_double("0.5x", 0, 1, &d), -EINVAL);
	assert_int_equal(parse_size("1MiB", 0, UINT64_MAX, &s), 0);
	assert_int_equal(s, 1048576);
	assert_int_equal(parse_size("512k", 0, UINT64_MAX, &s), 0);
	assert_int_equal(s, 524288);
	assert_int_equal(parse_size("12parsecs", 0, UINT64_MAX, &s), -EINVAL);
	assert_int_equal(parse_size("99999999999G", 0, UINT64_MAX, &s), -ERANGE);
	assert_int_equal(parse_bool("Yes", &b), 0);
	assert_true(b);
	assert_int_equal(parse_bool("off", &b), 0);
	assert_false(b);
	assert_int_equal(parse_bool("maybe", &b), -EINVAL);
}

static void test_buf_bounded(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 10);
	assert_int_equal(buf_puts(&b, "hello"), 0);
	assert_int_equal(buf_printf(&b, "%d", 1234), 0);
	assert_string_equal(b.data, "hello1234");
	assert_int_equal(buf_puts(&b, "ab"), -E2BIG);
	assert_string_equal(b.data, "hello1234");
	assert_int_equal(buf_puts(&b, "a"), 0);
	assert_int_equal(b.len, 10);
	buf_free(&b);
}

static void test_iso8601(void **state)
{
	char out[32];
	int64_t ms;

	(void)state;
	assert_int_equal(parse_iso8601_ms("2020-05-18T15:02:09.000Z", &ms), 0);
	assert_int_equal(ms, 1589814129000LL);
	format_iso8601_ms(ms, out);
	assert_string_equal(out, "2020-05-18T15:02:09.000Z");
	assert_int_equal(parse_iso8601_ms("2020-05-03T08:41:55.902Z", &ms), 0);
	assert_int_equal(ms % 1000, 902);
	assert_int_equal(parse_iso8601_ms("2020-05-18T17:02:09+02:00", &ms), 0);
	assert_int_equal(ms, 1589814129000LL);
	assert_int_equal(parse_iso8601_ms("2020-05-18", &ms), -EINVAL);
	assert_int_equal(parse_iso8601_ms("2020-13-18T15:02:09Z", &ms), -EINVAL);
	assert_int_equal(parse_iso8601_ms("2020-05-18T15:02:09Zjunk", &ms), -EINVAL);
}

static void test_ct_equal(void **state)
{
	(void)state;
	assert_true(ct_equal("secret", 6, "secret", 6));
	assert_false(ct_equal("secreT", 6, "secret", 6));
	assert_false(ct_equal("secret", 6, "secret1", 7));
	assert_false(ct_equal("", 0, "s", 1));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_u64),      cmocka_unit_test(test_parse_double_size_bool),
		cmocka_unit_test(test_buf_bounded),    cmocka_unit_test(test_iso8601),
		cmocka_unit_test(test_ct_equal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
