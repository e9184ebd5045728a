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
#include "tsgraphd/util.h"

#define BASE                                   \
	"[threatstack]\n"                      \
	"org_name = Prod\n"                    \
	"org_id = 545d0293b620cd090d000023\n"  \
	"user_id = 5537c4284e9684df7e000014\n" \
	"api_key = k3y-s3cr3t-value\n"

/* The [threatstack] lines without a key: line 5 is the next. */
#define BASE_NOKEY                            \
	"[threatstack]\n"                     \
	"org_name = Prod\n"                   \
	"org_id = 545d0293b620cd090d000023\n" \
	"user_id = 5537c4284e9684df7e000014\n"

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
	assert_true(c->webhook.tls);
	assert_string_equal(c->webhook.inbox, "/var/lib/tsgraphd/state.db-inbox");
	assert_int_equal(c->webhook.inbox_max, 100000);
	assert_int_equal(c->webhook.confirm_window, 86400);
	assert_int_equal(c->webhook.timeout, 10);
	assert_int_equal(c->webhook.max_connections, 256);
	assert_int_equal(c->webhook.max_connections_per_ip, 16);
	assert_int_equal(c->n_sinks, 0);
	assert_int_equal(c->log_level, LOG_LEVEL_INFO);
	config_free(c);
}

#define EVERY_KEY                                                       \
	"# comment\n"                                                   \
	"; another\n"                                                   \
	"[log]\nlevel = debug\n"                                        \
	"\n" BASE "api_url = http://127.0.0.1:8080/\n"                  \
	"api_ca_file = %s/ca.pem\n"                                     \
	"rate_limit = 60\n"                                             \
	"poll_interval = 30\n"                                          \
	"alert_days = 2\n"                                              \
	"timeout = 5\n"                                                 \
	"[store]\npath = /tmp/x.db\nsynchronous = normal\n"             \
	"[sync]\nmax_delete_fraction = 0.25\n"                          \
	"[webhook]\n  listen = [::]:9443  \n"                           \
	"tls_cert = %s/c.pem\ntls_key = %s/k.pem\n"                     \
	"secret = \"0123456789abcdef0123\"\n"                           \
	"max_body = 512KiB\n"                                           \
	"[sink.changes]\ntype = file\npath = /var/log/changes.ndjson\n" \
	"[sink.b-2]\ntype=file\npath=/tmp/b\n"

static void test_every_key(void **state)
{
	char err[CONFIG_ERROR_MAX], text[2048], want[256];
	struct config *c = NULL;

	(void)state;
	/* The files api_ca_file and tls_* name must exist: they are checked at load. */
	write_file("ca.pem", "ca\n", 0644);
	write_file("c.pem", "cert\n", 0644);
	write_file("k.pem", "key\n", 0600);
	snprintf(text, sizeof(text), EVERY_KEY, tmpdir, tmpdir, tmpdir);
	assert_int_equal(parse(text, &c, err), 0);
	assert_int_equal(c->log_level, LOG_LEVEL_DEBUG);
	assert_string_equal(c->ts.api_url, "http://127.0.0.1:8080");
	snprintf(want, sizeof(want), "%s/ca.pem", tmpdir);
	assert_string_equal(c->ts.api_ca_file, want);
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
	refuse("[threatstack]\napi_key_file =\n",
	       "t.conf:2: api_key_file: empty value"); /* leaked once */
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
	refuse("[sync]\nmax_delete_fraction = half\n",
	       "t.conf:2: max_delete_fraction: not a number");
	refuse("[webhook]\nmax_body = 10\n", "t.conf:2: max_body: out of range (1KiB..64MiB)");
	refuse("[webhook]\nmax_body = lots\n",
	       "t.conf:2: max_body: not a size (e.g. 1048576, 512KiB, 1MiB)");
	refuse("[webhook]\nlisten = 8443\n",
	       "t.conf:2: listen: not an address:port (e.g. 0.0.0.0:8443 or [::]:8443)");
	refuse("[webhook]\nlisten = [::]:99999\n",
	       "t.conf:2: listen: not an address:port (e.g. 0.0.0.0:8443 or [::]:8443)");
	refuse("[log]\nlevel = loud\n",
	       "t.conf:2: level: not a level (error, warning, notice, info, debug)");
	refuse("[store]\nsynchronous = sometimes\n",
	       "t.conf:2: synchronous: must be full or normal");
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
	refuse(BASE "[sink.a b]\n",
	       "t.conf:6: [sink.a b]: a sink name is letters, digits, '-' and '_'");
	refuse(BASE "[sink.a]\ntype=file\npath=/x\n[sink.a]\n",
	       "t.conf:9: [sink.a]: defined twice (first at line 6)");
	refuse(BASE "[sink.a]\ntype = carrier-pigeon\n",
	       "t.conf:7: type: must be file, jupiterone or webhook");
	refuse(BASE "[sink.a]\npath = /x\n",
	       "t.conf:6: [sink.a]: missing type (file, jupiterone or webhook)");
	refuse(BASE "[sink.a]\ntype = file\n", "t.conf:6: [sink.a]: a file sink needs path");
	refuse(BASE "[sink.a]\ntype = file\npath=/x\npath=/y\n",
	       "t.conf:9: path: set twice (first at line 8)");
	refuse(BASE "[sink.a]\ntype = webhook\n", "t.conf:6: [sink.a]: a webhook sink needs url");
	/* keys of another sink type */
	refuse(BASE "[sink.a]\ntype = file\npath = /x\nurl = https://example.com\n",
	       "t.conf:9: url: not a key of a file sink");
	refuse(BASE "[sink.a]\nbogus = 1\n", "t.conf:7: bogus: unknown key in [sink.*]");

	n = (size_t)snprintf(text, sizeof(text), "%s", BASE);
	for (int i = 0; i <= CONFIG_SINKS_MAX; i++)
		n += (size_t)snprintf(text + n, sizeof(text) - n,
				      "[sink.s%d]\ntype=file\npath=/x\n", i);
	refuse(text, "t.conf:54: more than 16 sinks");
}

/* A JupiterOne sink with the fewest keys: the token inline. */
#define J1_MIN "[sink.j1]\ntype = jupiterone\naccount = acct-1\ntoken = j1-t0ken-value\n"

static void test_jupiterone_sink(void **state)
{
	char err[CONFIG_ERROR_MAX], text[2048], want[512];
	struct config *c = NULL;
	const struct config_sink *s;

	(void)state;
	assert_int_equal(parse(BASE J1_MIN, &c, err), 0);
	s = &c->sinks[0];
	assert_int_equal(s->type, SINK_JUPITERONE);
	assert_string_equal(s->url, "https://api.us.jupiterone.io");
	assert_string_equal(s->j1.account, "acct-1");
	assert_string_equal(s->j1.token, "j1-t0ken-value");
	assert_string_equal(s->j1.scope, "threatstack-545d0293b620cd090d000023");
	assert_null(s->ca_file);
	assert_int_equal(s->j1.batch_bytes, 5 * 1024 * 1024);
	assert_int_equal(s->j1.job_changes, 50000);
	assert_int_equal(s->timeout, 30);
	config_free(c);
	c = NULL;

	/* every key */
	write_file("j1.pem", "ca\n", 0644);
	write_file("j1.token", "file-t0ken\n", 0600);
	snprintf(text, sizeof(text),
		 BASE "[sink.j1]\ntype = jupiterone\nurl = http://127.0.0.1:9/\naccount = acct-2\n"
		      "token_file = %s/j1.token\nscope = my scope\nca_file = %s/j1.pem\n"
		      "batch_bytes = 64KiB\ntimeout = 7\njob_changes = 500\n",
		 tmpdir, tmpdir);
	assert_int_equal(parse(text, &c, err), 0);
	s = &c->sinks[0];
	assert_string_equal(s->url, "http://127.0.0.1:9");
	assert_string_equal(s->j1.token, "file-t0ken");
	assert_string_equal(s->j1.scope, "my scope");
	snprintf(want, sizeof(want), "%s/j1.pem", tmpdir);
	assert_string_equal(s->ca_file, want);
	assert_int_equal(s->j1.batch_bytes, 64 * 1024);
	assert_int_equal(s->timeout, 7);
	assert_int_equal(s->j1.job_changes, 500);
	config_free(c);
	c = NULL;

	/* errors, each naming its line and key */
	refuse(BASE "[sink.j1]\ntype = jupiterone\ntoken = j1-t0ken-value\n",
	       "t.conf:6: [sink.j1]: a jupiterone sink needs account");
	refuse(BASE "[sink.j1]\ntype = jupiterone\naccount = acct-1\n",
	       "t.conf:6: [sink.j1]: a jupiterone sink needs token_file (or token, or the systemd "
	       "credential jupiterone-token-j1 or jupiterone-token)");
	refuse(BASE J1_MIN "token_file = /nonexistent\n",
	       "t.conf:10: token_file: token is set too (line 9); use one");
	refuse(BASE J1_MIN "path = /x\n", "t.conf:10: path: not a key of a jupiterone sink");
	refuse(BASE J1_MIN "batch_bytes = 6MiB\n",
	       "t.conf:10: batch_bytes: out of range (1KiB..5MiB)");
	refuse(BASE J1_MIN "batch_bytes = 100\n",
	       "t.conf:10: batch_bytes: out of range (1KiB..5MiB)");
	refuse(BASE J1_MIN "job_changes = 0\n",
	       "t.conf:10: job_changes: out of range (1..1000000)");
	refuse(BASE J1_MIN "timeout = 601\n", "t.conf:10: timeout: out of range (1..600)");
	refuse(BASE J1_MIN "url = http://j1.example.com\n",
	       "t.conf:10: url: plain http is only allowed to loopback; use https://");
	/* one url row for every sink type: a webhook's may have a path, JupiterOne's not */
	refuse(BASE J1_MIN "url = https://j1.example.com/persister\n",
	       "t.conf:10: url: must be an origin like https://api.threatstack.com (no path)");
	refuse(BASE J1_MIN "account = acct 1\n", "t.conf:10: account: set twice (first at line 8)");
	refuse(BASE "[sink.j1]\ntype = jupiterone\naccount = acct/1\n",
	       "t.conf:8: account: not an id (letters, digits and '-' only)");
	refuse(BASE J1_MIN "ca_file = /nonexistent/ca.pem\n",
	       "t.conf:10: ca_file: cannot open /nonexistent/ca.pem: No such file or directory");
	/* a token file must be owner-only, and its value is never echoed */
	write_file("j1.token", "file-t0ken\n", 0644);
	snprintf(text, sizeof(text),
		 BASE "[sink.j1]\ntype = jupiterone\naccount = a\ntoken_file = %s/j1.token\n",
		 tmpdir);
	refuse(text, "t.conf:9: token_file: the file is readable or writable by group or others "
		     "(chmod 600 it)");
	refuse(BASE "[sink.j1]\ntype = jupiterone\naccount = a\ntoken_file = s3cr3t-t0ken\n",
	       "t.conf:9: token_file: cannot open the file it names: No such file or directory "
	       "(the "
	       "value is not shown: this key takes a file name, not the secret)");
}

static void test_jupiterone_token_credential(void **state)
{
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;
	const char *text = BASE "[sink.j1]\ntype = jupiterone\naccount = a\n"
				"[sink.other]\ntype = jupiterone\naccount = b\n";

	(void)state;
	/* the sink's own credential first, then the shared one */
	write_file("jupiterone-token-j1", "cred-for-j1\n", 0400);
	write_file("jupiterone-token", "cred-shared\n", 0400);
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	assert_int_equal(parse(text, &c, err), 0);
	assert_string_equal(c->sinks[0].j1.token, "cred-for-j1");
	assert_string_equal(c->sinks[1].j1.token, "cred-shared");
	assert_int_equal(config_register_secrets((const struct config *[]){ c }, 1), 0);
	config_free(c);
	c = NULL;
	/* status reads no secret and needs none */
	unsetenv("CREDENTIALS_DIRECTORY");
	write_file("ns.conf",
		   BASE_NOKEY "[sink.j1]\ntype = jupiterone\naccount = a\n"
			      "token_file = /nonexistent\nca_file = /nonexistent\n",
		   0644);
	{
		char path[256];

		snprintf(path, sizeof(path), "%s/ns.conf", tmpdir);
		assert_int_equal(config_load_flags(path, CONFIG_NO_SECRETS, &c, err), 0);
		assert_null(c->sinks[0].j1.token);
		assert_string_equal(c->sinks[0].j1.scope, "threatstack-545d0293b620cd090d000023");
		config_free(c);
		c = NULL;
		assert_int_equal(config_load(path, &c, err), -EINVAL);
	}
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
	refuse(BASE "[webhook]\ntls = maybe\n", "t.conf:7: tls: must be yes or no");
	refuse(BASE "[webhook]\ninbox_max = 0\n",
	       "t.conf:7: inbox_max: out of range (1..10000000)");
	refuse(BASE "[webhook]\nconfirm_window = 5\n",
	       "t.conf:7: confirm_window: out of range (10..2592000)");
	refuse(BASE "[webhook]\nthreads = 65\n", "t.conf:7: threads: out of range (0..64)");
	refuse(BASE "[webhook]\nmax_connections = 2\nthreads = 3\n",
	       "t.conf:8: threads: more event loops than max_connections: each needs a "
	       "connection of its own");
	/* plain HTTP only on loopback */
	refuse(BASE "[webhook]\ntls = off\n",
	       "t.conf:7: tls: off is only allowed when listen is a loopback address "
	       "(127.0.0.1:PORT, [::1]:PORT or localhost:PORT)");
	refuse(BASE "[webhook]\ntls = off\nlisten = 127.0.0.1.example.com:80\n",
	       "t.conf:7: tls: off is only allowed when listen is a loopback address "
	       "(127.0.0.1:PORT, [::1]:PORT or localhost:PORT)");
	refuse(BASE "[webhook]\ntls = off\nlisten = [::]:80\n",
	       "t.conf:7: tls: off is only allowed when listen is a loopback address "
	       "(127.0.0.1:PORT, [::1]:PORT or localhost:PORT)");
}

static void test_webhook_keys(void **state)
{
	static const char *const loopback[] = { "127.0.0.1:8080", "127.3.2.1:1", "[::1]:443",
						"localhost:9000" };
	char err[CONFIG_ERROR_MAX], text[1024];
	struct config *c = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
		snprintf(text, sizeof(text), BASE "[webhook]\ntls = off\nlisten = %s\n",
			 loopback[i]);
		assert_int_equal(parse(text, &c, err), 0);
		assert_false(c->webhook.tls);
		config_free(c);
	}
	assert_int_equal(parse(BASE "[store]\npath = /s/x.db\n[webhook]\ninbox_max = 7\n"
				    "confirm_window = 3600\ntimeout = 3\nmax_connections = 9\n"
				    "max_connections_per_ip = 2\n",
			       &c, err),
			 0);
	assert_string_equal(c->webhook.inbox, "/s/x.db-inbox");
	assert_int_equal(c->webhook.inbox_max, 7);
	assert_int_equal(c->webhook.confirm_window, 3600);
	assert_int_equal(c->webhook.timeout, 3);
	assert_int_equal(c->webhook.max_connections, 9);
	assert_int_equal(c->webhook.max_connections_per_ip, 2);
	config_free(c);
	assert_int_equal(parse(BASE "[webhook]\ninbox = /elsewhere/inbox.db\n", &c, err), 0);
	assert_string_equal(c->webhook.inbox, "/elsewhere/inbox.db");
	config_free(c);
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
		 "%s:5: api_key_file: the file is readable or writable by group or others (chmod "
		 "600 it)",
		 path);
	assert_string_equal(err, want);

	write_file("key", "\n", 0600);
	assert_int_equal(config_load(path, &c, err), -EINVAL);
	assert_non_null(strstr(err, "api_key_file: the file is empty"));
	write_file("key", "file-\x01secret-key\n", 0600);
	assert_int_equal(config_load(path, &c, err), -EINVAL);
	assert_non_null(strstr(err, "api_key_file: the file holds control characters"));

	memset(big, 'k', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	write_file("key", big, 0600);
	assert_int_equal(config_load(path, &c, err), -EINVAL);
	assert_non_null(strstr(err, "api_key_file: the file is larger than 4096 bytes"));

	unlink(strrchr(path, '/') ? path : path); /* t.conf gone: a clear error */
	assert_int_equal(config_load(path, &c, err), -ENOENT);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err, want);

	/* A missing secret file. */
	snprintf(text, sizeof(text),
		 "[threatstack]\norg_name=a\norg_id=b\nuser_id=c\napi_key_file=%s/none\n", tmpdir);
	assert_int_equal(parse(text, &c, err), -EINVAL);
	assert_string_equal(err, "t.conf:5: api_key_file: cannot open the file it names: No such "
				 "file or directory (the value is not shown: this key takes a file "
				 "name, not the secret)");
	assert_null(c);
}

/* A webhook URL with a path or query carries a token (Slack, Teams): like an inline secret,
 * a file others can read is refused; an origin alone is not a credential. */
static void test_world_readable_webhook_url(void **state)
{
	char err[CONFIG_ERROR_MAX], path[256], want[512], text[1024];
	struct config *c = NULL;

	(void)state;
	write_file("key", "k3y-s3cr3t-value\n", 0600);
	snprintf(path, sizeof(path), "%s/url.conf", tmpdir);
	snprintf(text, sizeof(text),
		 BASE_NOKEY "api_key_file = %s/key\n[sink.chat]\ntype = webhook\n"
			    "url = https://hooks.example.com/services/T000/B000/XXXX\n",
		 tmpdir);
	write_file("url.conf", text, 0644);
	assert_int_equal(config_load(path, &c, err), -EPERM);
	snprintf(want, sizeof(want),
		 "%s:8: url: a webhook url with a path or query is a credential (Slack and Teams "
		 "carry their token in it), and this file is readable by others (chmod o-r it)",
		 path);
	assert_string_equal(err, want);
	assert_null(c);
	write_file("url.conf", text, 0640);
	assert_int_equal(config_load(path, &c, err), 0);
	config_free(c);
	/* a query alone counts too */
	snprintf(text, sizeof(text),
		 BASE_NOKEY "api_key_file = %s/key\n[sink.chat]\ntype = webhook\n"
			    "url = https://hooks.example.com?token=abc\n",
		 tmpdir);
	write_file("url.conf", text, 0644);
	assert_int_equal(config_load(path, &c, err), -EPERM);
	/* an origin is not a credential */
	snprintf(text, sizeof(text),
		 BASE_NOKEY "api_key_file = %s/key\n[sink.chat]\ntype = webhook\n"
			    "url = https://hooks.example.com/\n",
		 tmpdir);
	write_file("url.conf", text, 0644);
	assert_int_equal(config_load(path, &c, err), 0);
	config_free(c);
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

/* Item 3: a FIFO named where a file belongs (the config itself, a secret file, a file for a
 * TLS library) is refused at once: before, open() blocked forever waiting for a writer. */
static void test_fifo_refused_at_once(void **state)
{
	char err[CONFIG_ERROR_MAX], text[1024], fifo[256], want[512];
	struct config *c = NULL;

	(void)state;
	snprintf(fifo, sizeof(fifo), "%s/fifo", tmpdir);
	unlink(fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	alarm(10); /* a hang fails here, not at the suite's timeout */

	assert_int_equal(config_load(fifo, &c, err), -EINVAL);
	snprintf(want, sizeof(want), "%s: not a regular file (a FIFO, device or directory?)", fifo);
	assert_string_equal(err, want);
	assert_int_equal(config_load(tmpdir, &c, err), -EINVAL);
	assert_int_equal(config_load("/dev/zero", &c, err), -EINVAL);

	snprintf(text, sizeof(text), BASE_NOKEY "api_key_file = %s\n", fifo);
	refuse(text, "t.conf:5: api_key_file: the file it names is not a regular file (a FIFO, "
		     "device or directory?)");
	snprintf(text, sizeof(text), BASE "[webhook]\nsecret_file = %s\n", fifo);
	refuse(text, "t.conf:7: secret_file: the file it names is not a regular file (a FIFO, "
		     "device or directory?)");
	snprintf(text, sizeof(text), BASE "api_ca_file = %s\n", fifo);
	snprintf(want, sizeof(want),
		 "t.conf:6: api_ca_file: %s: not a regular file (a FIFO, device or directory?)",
		 fifo);
	refuse(text, want);
	write_file("k.pem", "key\n", 0600);
	snprintf(text, sizeof(text), BASE "[webhook]\ntls_cert = %s\ntls_key = %s/k.pem\n", fifo,
		 tmpdir);
	snprintf(want, sizeof(want),
		 "t.conf:7: tls_cert: %s: not a regular file (a FIFO, device or directory?)", fifo);
	refuse(text, want);
	snprintf(text, sizeof(text), BASE "[webhook]\ntls_cert = %s/k.pem\ntls_key = %s\n", tmpdir,
		 fifo);
	snprintf(want, sizeof(want),
		 "t.conf:8: tls_key: %s: not a regular file (a FIFO, device or directory?)", fifo);
	refuse(text, want);

	/* the systemd credential too */
	unlink(fifo);
	snprintf(fifo, sizeof(fifo), "%s/threatstack-api-key", tmpdir);
	unlink(fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
	refuse(BASE_NOKEY, "t.conf: threatstack-api-key: the file it names is not a regular file "
			   "(a FIFO, device or directory?)");
	unsetenv("CREDENTIALS_DIRECTORY");
	unlink(fifo);
	alarm(0);

	/* a private key readable by others, a CA file too large */
	write_file("k.pem", "key\n", 0644);
	snprintf(text, sizeof(text), BASE "[webhook]\ntls_cert = %s/k.pem\ntls_key = %s/k.pem\n",
		 tmpdir, tmpdir);
	snprintf(want, sizeof(want),
		 "t.conf:8: tls_key: %s/k.pem is readable or writable by group or others (chmod "
		 "600 it)",
		 tmpdir);
	refuse(text, want);
	snprintf(fifo, sizeof(fifo), "%s/big.pem", tmpdir);
	{
		int fd = open(fifo, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

		assert_true(fd >= 0);
		assert_int_equal(ftruncate(fd, CONFIG_PEM_MAX + 1), 0);
		close(fd);
	}
	snprintf(text, sizeof(text), BASE "api_ca_file = %s\n", fifo);
	snprintf(want, sizeof(want), "t.conf:6: api_ca_file: %s is larger than 4096 KiB", fifo);
	refuse(text, want);
}

/* Item 4: api_url is validated whole, so a bad port is a config error naming the line. */
static void test_api_url_whole(void **state)
{
	static const struct {
		const char *url, *why;
	} bad[] = {
		{ "https://api.threatstack.com:99999",
		  "the port must be a number from 1 to 65535" },
		{ "https://api.threatstack.com:0", "the port must be a number from 1 to 65535" },
		{ "https://api.threatstack.com:", "the port must be a number from 1 to 65535" },
		{ "https://api.threatstack.com:-1", "the port must be a number from 1 to 65535" },
		{ "https://api.threatstack.com:00000443",
		  "the port must be a number from 1 to 65535" },
		{ "https://h:1:2", "the port must be a number from 1 to 65535" },
		{ "https://:443", "the host is empty" },
		{ "https://[]:443",
		  "an IPv6 address goes in brackets, like https://[2001:db8::1]:8443" },
		{ "https://[::1",
		  "an IPv6 address goes in brackets, like https://[2001:db8::1]:8443" },
		{ "https://[zz::1]",
		  "an IPv6 address goes in brackets, like https://[2001:db8::1]:8443" },
		{ "https://[::1]x", "must be scheme://host[:port]" },
		{ "https://h]:1", "must be scheme://host[:port]" },
		{ "http://127.0.0.1.evil:80",
		  "plain http is only allowed to loopback; use https://" },
		{ "http://10.0.0.1:8080", "plain http is only allowed to loopback; use https://" },
		{ "ftp://h", "must start with https://" },
	};
	static const char *const good[] = {
		"https://api.threatstack.com:65535",
		"https://api.threatstack.com:1",
		"https://[2001:db8::1]:8443",
		"http://[::1]:8080",
		"http://localhost",
		"http://127.0.0.1:1/",
	};
	char err[CONFIG_ERROR_MAX], text[1024], want[512];
	struct config *c = NULL;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), BASE "api_url = %s\n", bad[i].url);
		snprintf(want, sizeof(want), "t.conf:6: api_url: %s", bad[i].why);
		refuse(text, want);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), BASE "api_url = %s\n", good[i]);
		assert_int_equal(parse(text, &c, err), 0);
		config_free(c);
		c = NULL;
	}
}

/* Item 5: bytes from the file reach the message escaped and cut; a secret never does. */
static void test_errors_escape_untrusted_bytes(void **state)
{
	char text[6000], want[512], key[300];

	(void)state;
	refuse("[threatstack]\nor\x1b[2Jg = x\n",
	       "t.conf:2: or\\x1b[2Jg: unknown key in [threatstack]");
	refuse("[ev\x1b[0;31m\x07il]\n", "t.conf:1: unknown section [ev\\x1b[0;31m\\x07il]");
	refuse("[sink.a\xff]\n",
	       "t.conf:1: [sink.a\\xff]: a sink name is letters, digits, '-' and '_'");
	refuse("[threatstack]\n\xc2\x9b = 1\n",
	       "t.conf:2: \\xc2\\x9b: unknown key in [threatstack]");
	/* a long key name is cut */
	memset(key, 'K', sizeof(key) - 1);
	key[sizeof(key) - 1] = '\0';
	snprintf(text, sizeof(text), "[threatstack]\n%s = 1\n", key);
	snprintf(want, sizeof(want), "t.conf:2: %.*s...: unknown key in [threatstack]",
		 ESCAPE_SHORT - 4, key);
	refuse(text, want);
}

static void refuse_without(const char *text, const char *secret, const char *want_part)
{
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;

	assert_true(parse(text, &c, err) < 0);
	assert_null(c);
	assert_null(strstr(err, secret));
	assert_non_null(strstr(err, want_part));
}

/* Item 5: a key pasted where its file name belongs is not printed back. */
static void test_secret_value_never_echoed(void **state)
{
	const char *key = "AbCdEf0123456789PastedApiKeyValue";
	char text[1024];

	(void)state;
	snprintf(text, sizeof(text), BASE_NOKEY "api_key_file = %s\n", key);
	refuse_without(text, key, "t.conf:5: api_key_file: cannot open the file it names: No such");
	snprintf(text, sizeof(text), BASE_NOKEY "api_key_file = /%s\n", key);
	refuse_without(text, key, "t.conf:5: api_key_file: cannot open the file it names");
	snprintf(text, sizeof(text), BASE "[webhook]\nsecret_file = %s\n", key);
	refuse_without(text, key, "t.conf:7: secret_file: cannot open the file it names");
	snprintf(text, sizeof(text), BASE_NOKEY "api_key = %s\x1b\n", key);
	refuse_without(text, key, "t.conf:5: api_key: contains control characters");
	snprintf(text, sizeof(text), BASE "[webhook]\nsecret = %.10s\n", key);
	refuse_without(text, "AbCdEf0123", "t.conf:7: secret: shorter than 16 characters");
	snprintf(text, sizeof(text), BASE "api_key_file = %s\n", key);
	refuse_without(text, key, "t.conf:6: api_key_file: api_key is set too (line 5); use one");
}

/* Item 10: blanks around the key are dropped at both ends; a second line is refused. */
static void test_key_file_blanks(void **state)
{
	char err[CONFIG_ERROR_MAX], text[1024];
	struct config *c = NULL;

	(void)state;
	snprintf(text, sizeof(text), BASE_NOKEY "api_key_file = %s/key\n", tmpdir);
	write_file("key", "  \t spaced-key-value \t\r\n\n", 0600);
	assert_int_equal(parse(text, &c, err), 0);
	assert_string_equal(c->ts.api_key, "spaced-key-value");
	config_free(c);
	c = NULL;
	write_file("key", "\n\nkey-after-blank-lines", 0600);
	assert_int_equal(parse(text, &c, err), 0);
	assert_string_equal(c->ts.api_key, "key-after-blank-lines");
	config_free(c);
	c = NULL;
	write_file("key", "first-key\nsecond-key\n", 0600);
	refuse(text, "t.conf:5: api_key_file: the file holds more than one line (one secret, on "
		     "one line)");
	write_file("key", "first-key\r\nsecond-key\r\n", 0600);
	refuse(text, "t.conf:5: api_key_file: the file holds more than one line (one secret, on "
		     "one line)");
	write_file("key", "inner key with spaces", 0600);
	assert_int_equal(parse(text, &c, err), 0);
	assert_string_equal(c->ts.api_key, "inner key with spaces");
	config_free(c);
}

/* Item 9: status loads the config without opening any secret or TLS file. */
static void test_no_secrets_flag(void **state)
{
	char err[CONFIG_ERROR_MAX], path[256], fifo[256], text[1024];
	struct config *c = NULL;

	(void)state;
	snprintf(fifo, sizeof(fifo), "%s/fifo2", tmpdir);
	unlink(fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	snprintf(text, sizeof(text),
		 BASE_NOKEY "api_key_file = %s/missing-key\napi_ca_file = %s\n"
			    "[webhook]\nsecret_file = %s\n[store]\npath = /tmp/s.db\n",
		 tmpdir, fifo, fifo);
	write_file("ns.conf", text, 0644);
	snprintf(path, sizeof(path), "%s/ns.conf", tmpdir);
	alarm(10);
	assert_int_equal(config_load(path, &c, err), -EINVAL);
	assert_non_null(strstr(err, "api_key_file: cannot open the file it names"));
	assert_int_equal(config_load_flags(path, CONFIG_NO_SECRETS, &c, err), 0);
	alarm(0);
	assert_null(c->ts.api_key);
	assert_null(c->webhook.secret);
	assert_string_equal(c->store.path, "/tmp/s.db");
	config_free(c);
	c = NULL;
	/* no key at all is fine too; an unreadable (missing) config is not */
	write_file("ns.conf", BASE_NOKEY, 0644);
	assert_int_equal(config_load_flags(path, CONFIG_NO_SECRETS, &c, err), 0);
	config_free(c);
	c = NULL;
	unlink(path);
	assert_int_equal(config_load_flags(path, CONFIG_NO_SECRETS, &c, err), -ENOENT);
	unlink(fifo);
}

/* The keys collected by keep_restart_only, one string. */
static void collect(const char *key, void *ud)
{
	char *out = ud;
	size_t n = strlen(out);

	snprintf(out + n, 1024 - n, "%s;", key);
}

/* A reload: reloadable keys take their new values, restart-only keys keep the running ones
 * (each reported), and the result is what would run. */
static void test_keep_restart_only(void **state)
{
	static const char cur_text[] =
		"[threatstack]\norg_name = A\norg_id = org-a\nuser_id = u1\napi_key = k1k1k1\n"
		"rate_limit = 100\n[store]\npath = /tmp/a.db\n[webhook]\nlisten = 127.0.0.1:8443\n"
		"tls = off\nsecret = 0123456789abcdef0000\n";
	static const char next_text[] =
		"[threatstack]\norg_name = B\norg_id = org-b\nuser_id = u2\napi_key = k2k2k2\n"
		"rate_limit = 7\n[store]\npath = /tmp/b.db\nsynchronous = normal\n"
		"[webhook]\nlisten = 127.0.0.1:9443\ntls = off\nsecret = 0123456789abcdef1111\n"
		"inbox_max = 5\nmax_body = 2048\n[sink.x]\ntype = file\npath = /tmp/x\n"
		"[sink.j]\ntype = jupiterone\naccount = acme\ntoken = j1-token-123456\n";
	static const char off_text[] =
		"[threatstack]\norg_name = A\norg_id = org-a\nuser_id = u1\napi_key = k1k1k1\n"
		"[store]\npath = /tmp/a.db\n[webhook]\nlisten = 127.0.0.1:8443\ntls = off\n";
	char err[CONFIG_ERROR_MAX], keys[1024] = "";
	struct config *cur = NULL, *next = NULL, *off = NULL;

	(void)state;
	assert_int_equal(parse(cur_text, &cur, err), 0);
	assert_int_equal(parse(next_text, &next, err), 0);
	assert_int_equal(config_keep_restart_only(next, cur, collect, keys), 0);
	assert_string_equal(keys, "[threatstack] org_id;[threatstack] org_name;[store] path;"
				  "[webhook] listen;[webhook] inbox;[store] synchronous;"
				  "[webhook] inbox_max;");
	assert_string_equal(next->ts.org_id, "org-a");
	assert_string_equal(next->ts.org_name, "A");
	assert_string_equal(next->store.path, "/tmp/a.db");
	assert_string_equal(next->webhook.inbox, "/tmp/a.db-inbox");
	assert_string_equal(next->webhook.listen, "127.0.0.1:8443");
	assert_true(next->store.synchronous_full);
	assert_int_equal(next->webhook.inbox_max, cur->webhook.inbox_max);
	/* what reloads */
	assert_string_equal(next->ts.user_id, "u2");
	assert_string_equal(next->ts.api_key, "k2k2k2");
	assert_int_equal(next->ts.rate_limit, 7);
	assert_string_equal(next->webhook.secret, "0123456789abcdef1111");
	assert_int_equal(next->webhook.max_body, 2048);
	assert_int_equal(next->n_sinks, 2);
	/* the JupiterOne scope derived from org_id follows the org_id kept */
	assert_string_equal(next->sinks[1].j1.scope, "threatstack-org-a");
	/* the same again: nothing left to report */
	keys[0] = '\0';
	assert_int_equal(config_keep_restart_only(next, cur, collect, keys), 0);
	assert_string_equal(keys, "");

	/* the receiver on or off is a restart: off stays off, on stays on */
	assert_int_equal(parse(off_text, &off, err), 0);
	assert_int_equal(config_keep_restart_only(off, cur, collect, keys), 0);
	assert_string_equal(keys, "[webhook] secret (removed: the receiver would stop);");
	assert_string_equal(off->webhook.secret, cur->webhook.secret);
	keys[0] = '\0';
	config_free(off);
	off = NULL;
	assert_int_equal(parse(off_text, &off, err), 0);
	assert_int_equal(config_keep_restart_only(next, off, collect, keys), 0);
	assert_null(next->webhook.secret);
	assert_true(strstr(keys, "[webhook] secret (added: the receiver would start);") != NULL);
	config_free(off);
	config_free(next);
	config_free(cur);
}

/* References: the snapshot lives until the last config_free(). */
static void test_ref(void **state)
{
	static const char text[] = "[threatstack]\norg_name = A\norg_id = a\nuser_id = u\n"
				   "api_key = kkkk\n";
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;
	const struct config *r;

	(void)state;
	assert_int_equal(parse(text, &c, err), 0);
	r = config_ref(c);
	assert_ptr_equal(r, c);
	config_free(c);
	assert_string_equal(r->ts.api_key, "kkkk"); /* still alive: ASan would say otherwise */
	config_free(r);
	config_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_every_key),
		cmocka_unit_test(test_syntax_errors),
		cmocka_unit_test(test_value_errors),
		cmocka_unit_test(test_sink_errors),
		cmocka_unit_test(test_jupiterone_sink),
		cmocka_unit_test(test_jupiterone_token_credential),
		cmocka_unit_test(test_required_and_combinations),
		cmocka_unit_test(test_webhook_keys),
		cmocka_unit_test(test_line_limits),
		cmocka_unit_test(test_secret_files),
		cmocka_unit_test(test_credentials_directory),
		cmocka_unit_test(test_world_readable_inline_secret),
		cmocka_unit_test(test_world_readable_webhook_url),
		cmocka_unit_test(test_fifo_refused_at_once),
		cmocka_unit_test(test_api_url_whole),
		cmocka_unit_test(test_errors_escape_untrusted_bytes),
		cmocka_unit_test(test_secret_value_never_echoed),
		cmocka_unit_test(test_key_file_blanks),
		cmocka_unit_test(test_no_secrets_flag),
		cmocka_unit_test(test_keep_restart_only),
		cmocka_unit_test(test_ref),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
