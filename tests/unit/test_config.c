/* Unit tests for config: defaults, every key, and every error path, each error checked for
 * the file, line and key it names. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tsgraphd/config.h"

#define BASE                                                                                       \
	"[threatstack]\n"                                                                          \
	"org_name = Prod\n"                                                                        \
	"org_id = 545d0293b620cd090d000023\n"                                                      \
	"user_id = 5537c4284e9684df7e000014\n"                                                     \
	"api_key = k3y-s3cr3t-value\n"

static char tmpdir[64];

static int setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/tsgraphd-config-XXXXXX");
	if (!mkdtemp(tmpdir))
		return -1;
	unsetenv("CREDENTIALS_DIRECTORY");
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *name, const char *text, mode_t mode)
{
	char path[256];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	assert_int_equal(fchmod(fd, mode), 0);
	close(fd);
}

static int parse(const char *text, struct config **c, char *err)
{
	return config_parse("t.conf", text, strlen(text), c, err);
}

/* text must be refused with exactly the message want. */
static void refuse(const char *text, const char *want)
{
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;

	assert_int_equal(parse(text, &c, err), -EINVAL);
	assert_null(c);
	assert_string_equal(err, want);
}

static void test_defaults(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;

	(void)state;
	assert_int_equal(parse(BASE, &c, err), 0);
	assert_string_equal(c->ts.org_name, "Prod");
	assert_string_equal(c->ts.api_key, "k3y-s3cr3t-value");
	assert_string_equal(c->ts.api_url, "https://api.threatstack.com");
	assert_null(c->ts.api_ca_file);
	assert_int_equal(c->ts.rate_limit, 150);
	assert_int_equal(c->ts.poll_interval, 600);
	assert_int_equal(c->ts.alert_days, 7);
	assert_int_equal(c->ts.timeout, 30);
	assert_string_equal(c->store.path, "/var/lib/tsgraphd/state.db");
	assert_true(c->store.synchronous_full);
	assert_true(c->sync.max_delete_fraction == 0.5);
	assert_string_equal(c->webhook.listen, "0.0.0.0:8443");
	assert_int_equal(c->webhook.max_body, 1024 * 1024);
	assert_null(c->webhook.secret);
	assert_int_equal(c->n_sinks, 0);
	assert_int_equal(c->log_level, LOG_LEVEL_INFO);
	config_free(c);
}

static void test_every_key(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;
	const char *text = "# comment\n"
			   "; another\n"
			   "[log]\nlevel = debug\n"
			   "\n" BASE "api_url = http://127.0.0.1:8080/\n"
			   "api_ca_file = /etc/ssl/ca.pem\n"
			   "rate_limit = 60\n"
			   "poll_interval = 30\n"
			   "alert_days = 2\n"
			   "timeout = 5\n"
			   "[store]\npath = /tmp/x.db\nsynchronous = normal\n"
			   "[sync]\nmax_delete_fraction = 0.25\n"
			   "[webhook]\n  listen = [::]:9443  \n"
			   "tls_cert = /etc/c.pem\ntls_key = /etc/k.pem\n"
			   "secret = \"0123456789abcdef0123\"\n"
			   "max_body = 512KiB\n"
			   "[sink.changes]\ntype = file\npath = /var/log/changes.ndjson\n"
			   "[sink.b-2]\ntype=file\npath=/tmp/b\n";

	(void)state;
	assert_int_equal(parse(text, &c, err), 0);
	assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
	assert_string_equal(c->ts.api_url, "http://127.0.0.1:8080");
	assert_string_equal(c->ts.api_ca_file, "/etc/ssl/ca.pem");
	assert_int_equal(c->ts.rate_limit, 60);
	assert_int_equal(c->ts.poll_interval, 30);
	assert_int_equal(c->ts.alert_days, 2);
	assert_int_equal(c->ts.timeout, 5);
	assert_string_equal(c->store.path, "/tmp/x.db");
	assert_false(c->store.synchronous_full);
	assert_true(c->sync.max_delete_fraction == 0.25);
	assert_string_equal(c->webhook.listen, "[::]:9443");
	assert_string_equal(c->webhook.secret, "0123456789abcdef0123");
	assert_int_equal(c->webhook.max_body, 512 * 1024);
	assert_int_equal(c->n_sinks, 2);
	assert_string_equal(c->sinks[0].name, "changes");
	assert_int_equal(c->sinks[0].type, SINK_FILE);
	assert_string_equal(c->sinks[0].path, "/var/log/changes.ndjson");
	assert_string_equal(c->sinks[1].name, "b-2");
	config_free(c);
}

static void test_syntax_errors(void **state)
{
	(void)state;
	refuse("[nope]\n", "t.conf:1: unknown section [nope]");
	refuse("[threatstack\n", "t.conf:1: malformed section header");
	refuse("[threatstack] x\n", "t.conf:1: malformed section header");
	refuse("org_id = 1\n", "t.conf:1: org_id: outside any section");
	refuse("[threatstack]\njust words\n", "t.conf:2: expected \"key = value\"");
	refuse("[threatstack]\n = 5\n", "t.conf:2: missing key before '='");
	refuse(BASE "bogus = 1\n", "t.conf:6: bogus: unknown key in [threatstack]");
	refuse(BASE "org_id = 1\n", "t.conf:6: org_id: set twice (first at line 3)");
	refuse("[threatstack]\norg_name =\n", "t.conf:2: org_name: empty value");
	refuse("[threatstack]\napi_key_file =\n", "t.conf:2: api_key_file: empty value"); /* leaked once */
	refuse("[threatstack]\norg_name = a\tb\x01\n",
	       "t.conf:2: org_name: contains control characters");
	{
		static const char nul[] = "[store]\npath=a\0b\n";
		char err[CONFIG_ERROR_MAX];
		struct config *c = NULL;

		assert_int_equal(config_parse("t.conf", nul, sizeof(nul) - 1, &c, err), -EINVAL);
		assert_string_equal(err, "t.conf:2: NUL byte in line");
	}
}

static void test_value_errors(void **state)
{
	(void)state;
	refuse(BASE "rate_limit = 15O\n", "t.conf:6: rate_limit: not a number");
	refuse(BASE "rate_limit = 0\n", "t.conf:6: rate_limit: out of range (1..6000)");
	refuse(BASE "rate_limit = -5\n", "t.conf:6: rate_limit: not a number");
	refuse(BASE "poll_interval = 99999999999999999999\n",
	       "t.conf:6: poll_interval: out of range (10..604800)");
	refuse(BASE "alert_days = 400\n", "t.conf:6: alert_days: out of range (1..365)");
	refuse("[sync]\nmax_delete_fraction = 1.5\n",
	       "t.conf:2: max_delete_fraction: out of range (0..1)");
	refuse("[sync]\nmax_delete_fraction = half\n", "t.conf:2: max_delete_fraction: not a number");
	refuse("[webhook]\nmax_body = 10\n", "t.conf:2: max_body: out of range (1KiB..64MiB)");
	refuse("[webhook]\nmax_body = lots\n",
	       "t.conf:2: max_body: not a size (e.g. 1048576, 512KiB, 1MiB)");
	refuse("[webhook]\nlisten = 8443\n",
	       "t.conf:2: listen: not an address:port (e.g. 0.0.0.0:8443 or [::]:8443)");
	refuse("[webhook]\nlisten = [::]:99999\n",
	       "t.conf:2: listen: not an address:port (e.g. 0.0.0.0:8443 or [::]:8443)");
	refuse("[log]\nlevel = loud\n",
	       "t.conf:2: level: not a level (error, warning, notice, info, debug)");
	refuse("[store]\nsynchronous = sometimes\n", "t.conf:2: synchronous: must be full or normal");
	refuse("[threatstack]\norg_id = 545d/0293\n",
	       "t.conf:2: org_id: not an id (letters, digits and '-' only)");
	refuse("[threatstack]\napi_url = ftp://x\n", "t.conf:2: api_url: must start with https://");
	refuse("[threatstack]\napi_url = https://api.threatstack.com/v2\n",
	       "t.conf:2: api_url: must be an origin like https://api.threatstack.com (no path)");
	refuse("[threatstack]\napi_url = http://api.threatstack.com\n",
	       "t.conf:2: api_url: plain http is only allowed to loopback; use https://");
	refuse("[threatstack]\napi_url = http://127.0.0.1.evil.com:80\n",
	       "t.conf:2: api_url: plain http is only allowed to loopback; use https://");
	refuse("[threatstack]\napi_url = http://localhost:80@example.com\n",
	       "t.conf:2: api_url: must be scheme://host[:port], without user, password or other "
	       "characters");
	refuse("[threatstack]\napi_url = https://user:pw@api.threatstack.com\n",
	       "t.conf:2: api_url: must be scheme://host[:port], without user, password or other "
	       "characters");
}

static void test_sink_errors(void **state)
{
	char text[4096];
	size_t n = 0;

	(void)state;
	refuse(BASE "[sink.]\n", "t.conf:6: [sink.]: a sink name is 1 to 64 characters");
	refuse(BASE "[sink.a b]\n", "t.conf:6: [sink.a b]: a sink name is letters, digits, '-' and '_'");
	refuse(BASE "[sink.a]\ntype=file\npath=/x\n[sink.a]\n",
	       "t.conf:9: [sink.a]: defined twice (first at line 6)");
	refuse(BASE "[sink.a]\ntype = carrier-pigeon\n",
	       "t.conf:7: type: must be file, jupiterone or webhook");
	refuse(BASE "[sink.a]\npath = /x\n",
	       "t.conf:6: [sink.a]: missing type (file, jupiterone or webhook)");
	refuse(BASE "[sink.a]\ntype = file\n", "t.conf:6: [sink.a]: a file sink needs path");
	refuse(BASE "[sink.a]\ntype = file\npath=/x\npath=/y\n",
	       "t.conf:9: path: set twice (first at line 8)");
	refuse(BASE "[sink.a]\ntype = jupiterone\n",
	       "t.conf:6: [sink.a]: sink type jupiterone is not supported by this version");
	refuse(BASE "[sink.a]\nbogus = 1\n", "t.conf:7: bogus: unknown key in [sink.*]");

	n = (size_t)snprintf(text, sizeof(text), "%s", BASE);
	for (int i = 0; i <= CONFIG_SINKS_MAX; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n, "[sink.s%d]\ntype=file\npath=/x\n", i);
	refuse(text, "t.conf:54: more than 16 sinks");
}

static void test_required_and_combinations(void **state)
{
	(void)state;
	refuse("[threatstack]\norg_id = a\nuser_id = b\napi_key = c\n",
	       "t.conf: org_name: missing in [threatstack] (required)");
	refuse("[threatstack]\norg_name = a\nuser_id = b\napi_key = c\n",
	       "t.conf: org_id: missing in [threatstack] (required)");
	refuse("[threatstack]\norg_name = a\norg_id = b\napi_key = c\n",
	       "t.conf: user_id: missing in [threatstack] (required)");
	refuse("[threatstack]\norg_name = a\norg_id = b\nuser_id = c\n",
	       "t.conf: api_key: missing: set api_key_file (or api_key, or the systemd credential "
	       "threatstack-api-key)");
	refuse(BASE "api_key_file = /nonexistent\n",
	       "t.conf:6: api_key_file: api_key is set too (line 5); use one");
	refuse(BASE "[webhook]\nsecret = short\n", "t.conf:7: secret: shorter than 16 characters");
	refuse(BASE "[webhook]\ntls_cert = /c.pem\n",
	       "t.conf:7: tls_cert: tls_cert and tls_key go together");
}

static void test_line_limits(void **state)
{
	char *text = malloc(8192);

	(void)state;
	memset(text, 'x', 8191);
	text[8191] = '\0';
	memcpy(text, "[threatstack]\n", 14);
	refuse(text, "t.conf:2: line longer than 4096 bytes");
	free(text);
}

static void test_secret_files(void **state)
{
	char err[CONFIG_ERROR_MAX], text[1024], path[256], want[512];
	struct config *c = NULL;
	char big[CONFIG_SECRET_MAX + 10];

	(void)state;
	write_file("key", "file-secret-key\n", 0600);
	write_file("whsecret", "0123456789abcdef0123456789abcdef", 0400);
	write_file("t.conf",
		   "[threatstack]\norg_name=a\norg_id=b\nuser_id=c\napi_key_file = key\n"
		   "[webhook]\nsecret_file=whsecret\n",
		   0644);
	snprintf(path, sizeof(path), "%s/t.conf", tmpdir);
	assert_int_equal(config_load(path, &c, err), 0);
	assert_string_equal(c->ts.api_key, "file-secret-key");
	assert_string_equal(c->webhook.secret, "0123456789abcdef0123456789abcdef");
	config_free(c);
	c = NULL;

	/* Group-readable secret file: refused, naming the line and key. */
	write_file("key", "file-secret-key\n", 0640);
	assert_int_equal(config_load(path, &c, err), -EINVAL);
	snprintf(want, sizeof(want),
		 "%s:5: api_key_file: %s/key is readable or writable by group or others (chmod 600 "
		 "it)",
		 path, tmpdir);
	assert_string_equal(err, want);

	write_file("key", "\n", 0600);
	assert_int_equal(config_load(path, &c, err), -EINVAL);
	assert_non_null(strstr(err, "is empty or holds control characters"));

	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_file("key", big, 0600);
	assert_int_equal(config_load(path, &c, err), -EINVAL);
	assert_non_null(strstr(err, "is larger than 4096 bytes"));

	unlink(strrchr(path, '/') ? path : path); /* t.conf gone: a clear error */
	assert_int_equal(config_load(path, &c, err), -ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err, want);

	/* A missing secret file. */
	snprintf(text, sizeof(text),
		 "[threatstack]\norg_name=a\norg_id=b\nuser_id=c\napi_key_file=%s/none\n", tmpdir);
	assert_int_equal(parse(text, &c, err), -EINVAL);
	snprintf(want, sizeof(want), "t.conf:5: api_key_file: cannot open %s/none: No such file or directory",
		 tmpdir);
	assert_string_equal(err, want);
	assert_null(c);
}

static void test_credentials_directory(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;
	const char *text = "[threatstack]\norg_name=a\norg_id=b\nuser_id=c\n";

	(void)state;
	write_file("threatstack-api-key", "cred-api-key\n", 0400);
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	assert_int_equal(parse(text, &c, err), 0);
	assert_string_equal(c->ts.api_key, "cred-api-key");
	config_free(c);
	unsetenv("CREDENTIALS_DIRECTORY");
}

static void test_world_readable_inline_secret(void **state)
{
	char err[CONFIG_ERROR_MAX], path[256], want[512];
	struct config *c = NULL;

	(void)state;
	write_file("inline.conf", BASE, 0644);
	snprintf(path, sizeof(path), "%s/inline.conf", tmpdir);
	assert_int_equal(config_load(path, &c, err), -EPERM);
	snprintf(want, sizeof(want),
		 "%s: holds a secret but is readable by others (chmod o-r it, or move the secret "
		 "to a *_file)",
		 path);
	assert_string_equal(err, want);
	assert_null(c);
	write_file("inline.conf", BASE, 0640);
	assert_int_equal(config_load(path, &c, err), 0);
	assert_string_equal(c->file, path);
	config_free(c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_value_errors),
		cmocka_unit_test(test_sink_errors),
		cmocka_unit_test(test_required_and_combinations),
		cmocka_unit_test(test_line_limits),
		cmocka_unit_test(test_secret_files),
		cmocka_unit_test(test_credentials_directory),
		cmocka_unit_test(test_world_readable_inline_secret),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
