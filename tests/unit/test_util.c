/* Unit tests for util: checked parsers, the bounded buffer, ISO-8601, ct_equal. */
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
#include <sys/stat.h>
#include <unistd.h>

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

	/* buf_cat: every part, up to the bound */
	buf_init(&b, 12);
	assert_int_equal(buf_cat(&b, "a:", "b", "|", "", "cd", NULL), 0);
	assert_string_equal(b.data, "a:b|cd");
	assert_int_equal(buf_cat(&b, "xyz", "0123456789", NULL), -E2BIG);
	assert_int_equal(strncmp(b.data, "a:b|cdxyz", 9), 0);
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

static void check_escape(size_t size, const char *in, size_t len, const char *want)
{
	char out[256];

	assert_true(size <= sizeof(out));
	assert_int_equal(str_escape(out, size, in, len), strlen(want));
	assert_string_equal(out, want);
}

static void test_str_escape(void **state)
{
	(void)state;
	check_escape(64, "plain ascii \\ ok", 16, "plain ascii \\ ok");
	check_escape(64, "\x1b[31mred", 8, "\\x1b[31mred");
	check_escape(64, "a\nb\tc\rd\x7f", 8, "a\\x0ab\\x09c\\x0dd\\x7f");
	check_escape(64, "nul\0x", 5, "nul\\x00x");
	/* well-formed UTF-8 passes; C1 controls, overlongs, surrogates, bidi overrides and
	 * truncated sequences do not */
	check_escape(64, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9b", 14,
		     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x90\x9b");
	check_escape(64, "\xc2\x9b", 2, "\\xc2\\x9b");
	check_escape(64, "\xc0\xaf", 2, "\\xc0\\xaf");
	check_escape(64, "\xed\xa0\x80", 3, "\\xed\\xa0\\x80");
	check_escape(64, "\xe2\x80\xae", 3, "\\xe2\\x80\\xae");
	check_escape(64, "\xe2\x82", 2, "\\xe2\\x82");
	check_escape(64, "\xff\xfe", 2, "\\xff\\xfe");
	/* escaping twice changes nothing */
	check_escape(64, "\\x1b[31mred", 11, "\\x1b[31mred");
	/* cut to the buffer, never inside an escape or a character, marked with "..." */
	check_escape(8, "abcdefghij", 10, "abcd...");
	check_escape(8, "abcdefg", 7, "abcdefg");
	check_escape(10, "ab\x1b\x1b\x1b", 5, "ab\\x1b...");
	check_escape(8, "ab\x1b\x1b\x1b", 5, "ab...");
	check_escape(8, "ab\xc3\xa9\xc3\xa9\xc3\xa9", 8, "ab\xc3\xa9...");
	check_escape(3, "abcdef", 6, "ab");
	check_escape(1, "abc", 3, "");
	check_escape(64, NULL, 0, "");
}

/* A FIFO, a directory or a device named where a file belongs is refused at once, not read
 * (a FIFO without a writer would block forever); a regular file too big is -EFBIG before a
 * byte is read. */
static void test_read_file_refuses_non_regular(void **state)
{
	char dir[] = "/tmp/tsgraphd-util-XXXXXX", path[64];
	char *data = NULL;
	size_t len = 0;
	int fd = -1;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/fifo", dir);
	assert_int_equal(mkfifo(path, 0600), 0);
	alarm(10); /* a hang fails the test instead of the suite's timeout */
	assert_int_equal(read_file_bounded(path, 100, &data, &len), -EBADFD);
	assert_int_equal(open_regular(path, &fd, NULL), -EBADFD);
	assert_int_equal(fd, -1);
	assert_int_equal(read_file_bounded(dir, 100, &data, &len), -EBADFD);
	assert_int_equal(read_file_bounded("/dev/zero", 100, &data, &len), -EBADFD);
	alarm(0);
	unlink(path);

	snprintf(path, sizeof(path), "%s/file", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "0123456789", 10), 10);
	close(fd);
	assert_int_equal(read_file_bounded(path, 9, &data, &len), -EFBIG);
	assert_null(data);
	assert_int_equal(read_file_bounded(path, 10, &data, &len), 0);
	assert_int_equal(len, 10);
	assert_string_equal(data, "0123456789");
	free(data);
	assert_int_equal(read_file_bounded("/nonexistent/x", 10, &data, &len), -ENOENT);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_u64),
		cmocka_unit_test(test_parse_double_size_bool),
		cmocka_unit_test(test_buf_bounded),
		cmocka_unit_test(test_iso8601),
		cmocka_unit_test(test_ct_equal),
		cmocka_unit_test(test_str_escape),
		cmocka_unit_test(test_read_file_refuses_non_regular),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
