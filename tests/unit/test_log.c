/* Unit tests for log: redaction of registered secrets, levels, the journald prefix, and
 * neutralised control characters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "tsgraphd/config.h"
#include "tsgraphd/log.h"

/* Logs msg at level into a pipe and returns what came out (static buffer). */
static const char *capture(enum log_level level, const char *msg)
{
	static char out[4096];
	int p[2];
	ssize_t n;

	assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	log_init(p[1], LOG_LEVEL_INFO);
	log_msg(level, "%s", msg);
	n = read(p[0], out, sizeof(out) - 1);
	out[n > 0 ? n : 0] = '\0';
	close(p[0]);
	close(p[1]);
	log_init(STDERR_FILENO, LOG_LEVEL_INFO);
	return out;
}

static void test_redacts_registered_secrets(void **state)
{
	char line[256];

	(void)state;
	assert_int_equal(log_set_secrets((const char *const[]){ "hunter2-api-key" }, 1), 0);
	log_format(line, sizeof(line), "request failed: key=%s twice=%s end", "hunter2-api-key",
		   "xxhunter2-api-keyxx");
	assert_string_equal(line, "request failed: key=*** twice=xx***xx end");
	assert_null(strstr(capture(LOG_LEVEL_ERR, "auth hunter2-api-key"), "hunter2"));
	log_close();
	log_format(line, sizeof(line), "%s", "hunter2-api-key");
	assert_string_equal(line, "hunter2-api-key"); /* forgotten after log_close */
}

/* A reload replaces the set: the old key is no longer a secret, the new one is. */
static void test_secrets_replaced_whole(void **state)
{
	char line[256];

	(void)state;
	assert_int_equal(log_set_secrets((const char *const[]){ "old-key-1234", "hook-secret" }, 2),
			 0);
	assert_int_equal(log_set_secrets((const char *const[]){ "new-key-5678", NULL }, 2), 0);
	log_format(line, sizeof(line), "%s %s %s", "old-key-1234", "hook-secret", "new-key-5678");
	assert_string_equal(line, "old-key-1234 hook-secret ***");
	assert_int_equal(log_set_secrets(NULL, 193), -E2BIG); /* more than LOG_SECRETS_MAX */
	log_format(line, sizeof(line), "%s", "new-key-5678");
	assert_string_equal(line, "***"); /* a refused set leaves the current one */
	log_close();
}

static void test_config_secrets_never_logged(void **state)
{
	static const char text[] = "[threatstack]\norg_name=a\norg_id=b\nuser_id=c\n"
				   "api_key = TopSecretKeyValue\n"
				   "[webhook]\nsecret = 0123456789abcdefWEBHOOK\n";
	char err[CONFIG_ERROR_MAX], line[512];
	struct config *c = NULL;

	(void)state;
	assert_int_equal(config_parse("t.conf", text, sizeof(text) - 1, &c, err), 0);
	assert_int_equal(config_register_secrets((const struct config *[]){ c }, 1), 0);
	log_format(line, sizeof(line), "url=/v1/webhooks/threatstack/%s key=%s", c->webhook.secret,
		   c->ts.api_key);
	assert_string_equal(line, "url=/v1/webhooks/threatstack/*** key=***");
	config_free(c);
	log_close();
}

/* A reload registers the new configuration's secrets and keeps the old one's: threads move
 * to the new snapshot one by one, and Threat Stack may still post to the old secret's URL. */
static void test_reload_keeps_old_secrets(void **state)
{
	static const char old_text[] =
		"[threatstack]\norg_name=a\norg_id=b\nuser_id=c\n"
		"api_key = OldSecretKeyValue\n"
		"[webhook]\nsecret = 0123456789abcdefOLDHOOK\n"
		"[sink.w]\ntype = webhook\nurl = https://hooks.example/T0/OLDPATH\n";
	static const char new_text[] = "[threatstack]\norg_name=a\norg_id=b\nuser_id=c\n"
				       "api_key = NewSecretKeyValue\n"
				       "[webhook]\nsecret = 0123456789abcdefNEWHOOK\n";
	char err[CONFIG_ERROR_MAX], line[512];
	struct config *old = NULL, *c = NULL;

	(void)state;
	assert_int_equal(config_parse("o.conf", old_text, sizeof(old_text) - 1, &old, err), 0);
	assert_int_equal(config_parse("n.conf", new_text, sizeof(new_text) - 1, &c, err), 0);
	assert_int_equal(config_register_secrets((const struct config *[]){ old }, 1), 0);
	assert_int_equal(config_register_secrets((const struct config *[]){ c, old, old }, 3), 0);
	log_format(line, sizeof(line), "%s %s %s %s %s", "OldSecretKeyValue",
		   "0123456789abcdefOLDHOOK", "https://hooks.example/T0/OLDPATH",
		   "NewSecretKeyValue", "0123456789abcdefNEWHOOK");
	assert_string_equal(line, "*** *** *** *** ***");
	/* NULL entries and repeats are skipped; more configurations than can be in use are not */
	assert_int_equal(config_register_secrets((const struct config *[]){ c, NULL, old }, 3), 0);
	log_format(line, sizeof(line), "%s", "OldSecretKeyValue");
	assert_string_equal(line, "***");
	assert_int_equal(config_register_secrets((const struct config *[]){ c, old, c, old }, 4),
			 -E2BIG);
	/* the reload after: the first configuration's secrets are forgotten */
	assert_int_equal(config_register_secrets((const struct config *[]){ c }, 1), 0);
	log_format(line, sizeof(line), "%s", "OldSecretKeyValue");
	assert_string_equal(line, "OldSecretKeyValue");
	config_free(old);
	config_free(c);
	log_close();
}

static void test_short_secrets_ignored(void **state)
{
	char line[64];

	(void)state;
	assert_int_equal(log_set_secrets((const char *const[]){ "a", NULL }, 2), 0);
	log_format(line, sizeof(line), "a cat");
	assert_string_equal(line, "a cat");
	log_close();
}

static void test_levels_and_prefixes(void **state)
{
	const char *out;

	(void)state;
	unsetenv("JOURNAL_STREAM");
	out = capture(LOG_LEVEL_DEBUG, "hidden x");
	assert_string_equal(out, "");
	out = capture(LOG_LEVEL_WARNING, "disk full");
	assert_non_null(strstr(out, " tsgraphd["));
	assert_non_null(strstr(out, "]: warning: disk full\n"));
	assert_true(out[4] == '-' && out[10] == 'T'); /* ISO timestamp first */

	setenv("JOURNAL_STREAM", "8:1234", 1);
	out = capture(LOG_LEVEL_ERR, "sync failed: 401");
	assert_string_equal(out, "<3>sync failed: 401\n");
	out = capture(LOG_LEVEL_INFO, "multi\nline\x1b[31m");
	assert_string_equal(out, "<6>multi\\x0aline\\x1b[31m\n");
	unsetenv("JOURNAL_STREAM");
}

static void test_level_names(void **state)
{
	enum log_level l;

	(void)state;
	assert_int_equal(log_level_from_string("DEBUG", &l), 0);
	assert_int_equal(l, LOG_LEVEL_DEBUG);
	assert_int_equal(log_level_from_string("warn", &l), 0);
	assert_int_equal(l, LOG_LEVEL_WARNING);
	assert_int_equal(log_level_from_string("err", &l), 0);
	assert_int_equal(l, LOG_LEVEL_ERR);
	assert_int_equal(log_level_from_string("chatty", &l), -22);
	assert_string_equal(log_level_to_string(LOG_LEVEL_NOTICE), "notice");
}

static void test_long_line_cut_not_overflowed(void **state)
{
	char big[5000], line[100];
	size_t n;

	(void)state;
	memset(big, 'y', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	n = log_format(line, sizeof(line), "%s", big);
	assert_int_equal(n, sizeof(line) - 1);
	assert_int_equal(strlen(line), sizeof(line) - 1);
}

/* Whatever a caller passes (an API answer, a config value), the line that goes out holds no
 * raw control byte and no malformed UTF-8, and the escaping is the one str_escape() does. */
static void test_untrusted_bytes_escaped(void **state)
{
	char line[256];

	(void)state;
	log_format(line, sizeof(line), "agent %s: %s", "h\x1b]0;pwn\x07",
		   "caf\xc3\xa9 \xff\xc2\x9b");
	assert_string_equal(line, "agent h\\x1b]0;pwn\\x07: caf\xc3\xa9 \\xff\\xc2\\x9b");
	log_format(line, sizeof(line), "tab\there\r\n");
	assert_string_equal(line, "tab\\x09here\\x0d\\x0a");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_redacts_registered_secrets),
		cmocka_unit_test(test_secrets_replaced_whole),
		cmocka_unit_test(test_config_secrets_never_logged),
		cmocka_unit_test(test_reload_keeps_old_secrets),
		cmocka_unit_test(test_short_secrets_ignored),
		cmocka_unit_test(test_levels_and_prefixes),
		cmocka_unit_test(test_level_names),
		cmocka_unit_test(test_long_line_cut_not_overflowed),
		cmocka_unit_test(test_untrusted_bytes_escaped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
