/* Unit tests for sink_webhook: which event each kind of outbox row is, the sentence of every
 * event, filtering by events and min_severity, the json and slack bodies, the signature
 * against a vector computed with `openssl dgst -sha256 -hmac`, the webhook keys' config
 * errors, and delivery against build/webhook_catcher: a new sink starts after the outbox's
 * end, 5xx are retried in order, a 4xx stops the drain with the cursor before the refused
 * change, a fired cancel handle ends a wait. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "tsgraphd/config.h"
#include "tsgraphd/sink.h"
#include "tsgraphd/sink_file.h"
#include "tsgraphd/sink_webhook.h"
#include "tsgraphd/store.h"

#include "teststore.h"
#include "fake.h"

#define AGENT_ID  "3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02"
#define AGENT_KEY "threatstack:agent:" AGENT_ID
#define VULN_KEY  AGENT_KEY "|identified|cve-2019-11477"
#define SECRET	  "whsec-test-0123456789abcdef"

/* --- rows as the store hands them out -------------------------------------------------------- */

static struct outbox_row row(const char *op, const char *type, const char *key, const char *json,
			     const char *changed)
{
	return (struct outbox_row){
		.seq = 42,
		.op = op,
		.kind = strstr(type, "_identified_") ? "relationship" : "entity",
		.key = key,
		.type = type,
		.class = "X",
		.json = json,
		.changed = changed,
		.source = "poll",
		.created_at = 1589814129000LL,
	};
}

static const char agent_offline[] =
	"{\"_key\":\"" AGENT_KEY "\",\"active\":false,\"id\":\"" AGENT_ID
	"\",\"name\":\"api-prod-1\",\"status\":\"offline\"}";
static const char agent_online[] = "{\"_key\":\"" AGENT_KEY "\",\"active\":true,\"id\":\"" AGENT_ID
				   "\",\"name\":\"api-prod-1\",\"status\":\"online\"}";
static const char vuln[] =
	"{\"_key\":\"" VULN_KEY "\",\"_mapping\":{\"sourceEntityKey\":\"" AGENT_KEY
	"\",\"targetEntity\":{\"cveId\":\"CVE-2019-11477\"}}}";
static const char alert_high[] = "{\"_key\":\"threatstack:alert:a1\",\"agentId\":\"" AGENT_ID
				 "\",\"category\":\"host-intrusion\",\"dismissed\":false,"
				 "\"id\":\"a1\",\"name\":\"Root login <!channel> & more\","
				 "\"numericSeverity\":1,\"severity\":\"high\"}";
static const char alert_dismissed[] = "{\"_key\":\"threatstack:alert:a2\",\"agentId\":\"" AGENT_ID
				      "\",\"dismissed\":true,\"id\":\"a2\",\"name\":\"Odd "
				      "process\",\"numericSeverity\":3,\"severity\":\"low\"}";
static const char alert_cloudtrail[] =
	"{\"_key\":\"threatstack:alert:a3\",\"category\":\"cloudtrail\",\"dismissed\":false,"
	"\"id\":\"a3\",\"name\":\"Console login without MFA\",\"numericSeverity\":2,"
	"\"severity\":\"medium\"}";
static const char alert_nosev[] = "{\"_key\":\"threatstack:alert:a4\",\"agentId\":\"gone-agent\","
				  "\"dismissed\":false,\"id\":\"a4\",\"name\":\"Something\","
				  "\"numericSeverity\":null,\"severity\":null}";

/* The graph the name callback knows: one agent. */
static int names(const char *key, char **ret, void *ud)
{
	(void)ud;
	if (strcmp(key, AGENT_KEY) != 0)
		return -ENOENT;
	*ret = strdup("api-prod-1");
	return *ret ? 0 : -ENOMEM;
}

static unsigned event_of(struct outbox_row r, enum config_severity *ret_sev)
{
	struct sink_webhook_event e;

	assert_int_equal(sink_webhook_classify(&r, &e), 0);
	if (ret_sev)
		*ret_sev = e.severity;
	return e.event;
}

static void test_classify(void **state)
{
	enum config_severity sev = 0;

	(void)state;
	assert_int_equal(event_of(row("update", "threatstack_agent", AGENT_KEY, agent_offline,
				      "[\"active\",\"lastReportedAt\",\"status\"]"),
				  NULL),
			 WEBHOOK_AGENT_STATUS);
	assert_int_equal(event_of(row("update", "threatstack_agent", AGENT_KEY, agent_online,
				      "[\"active\"]"),
				  NULL),
			 WEBHOOK_AGENT_STATUS);
	assert_int_equal(
		event_of(row("create", "threatstack_agent", AGENT_KEY, agent_online, NULL), NULL),
		WEBHOOK_AGENT_CREATED);
	assert_int_equal(event_of(row("delete", "threatstack_agent", AGENT_KEY, NULL, NULL), NULL),
			 WEBHOOK_AGENT_DELETED);
	assert_int_equal(event_of(row("update", "threatstack_agent", AGENT_KEY, agent_online,
				      "[\"lastReportedAt\",\"tag.owner\"]"),
				  NULL),
			 WEBHOOK_AGENT_UPDATED);
	/* A heartbeat alone is no event. */
	assert_int_equal(event_of(row("update", "threatstack_agent", AGENT_KEY, agent_online,
				      "[\"lastReportedAt\",\"lastSeenOn\"]"),
				  NULL),
			 0);
	assert_int_equal(event_of(row("create", "threatstack_agent_identified_vulnerability",
				      VULN_KEY, vuln, NULL),
				  NULL),
			 WEBHOOK_CVE_IDENTIFIED);
	assert_int_equal(event_of(row("delete", "threatstack_agent_identified_vulnerability",
				      VULN_KEY, NULL, NULL),
				  NULL),
			 WEBHOOK_CVE_RESOLVED);
	assert_int_equal(event_of(row("update", "threatstack_agent_identified_vulnerability",
				      VULN_KEY, vuln, "[\"package\"]"),
				  NULL),
			 0);
	assert_int_equal(event_of(row("create", "threatstack_alert", "threatstack:alert:a1",
				      alert_high, NULL),
				  &sev),
			 WEBHOOK_ALERT_CREATED);
	assert_int_equal(sev, SEVERITY_HIGH);
	assert_int_equal(
		event_of(row("update", "threatstack_alert", "threatstack:alert:a2", alert_dismissed,
			     "[\"dismissReason\",\"dismissed\",\"dismissedOn\",\"open\"]"),
			 &sev),
		WEBHOOK_ALERT_DISMISSED);
	assert_int_equal(sev, SEVERITY_LOW);
	assert_int_equal(event_of(row("create", "threatstack_alert", "threatstack:alert:a4",
				      alert_nosev, NULL),
				  &sev),
			 WEBHOOK_ALERT_CREATED);
	assert_int_equal(sev, SEVERITY_LOW); /* no severity counts as low */
	/* Not events: another alert update, an alert leaving the window, other types. */
	assert_int_equal(event_of(row("update", "threatstack_alert", "threatstack:alert:a2",
				      alert_dismissed, "[\"name\"]"),
				  NULL),
			 0);
	assert_int_equal(
		event_of(row("delete", "threatstack_alert", "threatstack:alert:a2", NULL, NULL),
			 NULL),
		0);
	assert_int_equal(
		event_of(row("create", "threatstack_account", "threatstack:account:o", "{}", NULL),
			 NULL),
		0);
	assert_int_equal(
		event_of(row("create", "threatstack_account_has_agent", "k", "{}", NULL), NULL), 0);
	assert_int_equal(
		event_of(row("create", "threatstack_agent_protects_server", "k", "{}", NULL), NULL),
		0);
	/* What the store wrote must read back; if not, it is an error, not a silent skip. */
	{
		struct outbox_row r =
			row("update", "threatstack_agent", AGENT_KEY, agent_online, "[\"status\"");
		struct sink_webhook_event e;

		assert_int_equal(sink_webhook_classify(&r, &e), -EBADMSG);
		assert_int_equal(e.event, 0);
	}
}

/* The sentence for r as event, with the one-agent graph (or none). */
static void expect_text(struct outbox_row r, sink_webhook_name_fn fn, const char *want)
{
	struct sink_webhook_event e;
	struct buf b;

	assert_int_equal(sink_webhook_classify(&r, &e), 0);
	assert_int_not_equal(e.event, 0);
	buf_init(&b, 4096);
	assert_int_equal(sink_webhook_text(&r, e.event, fn, NULL, &b), 0);
	assert_string_equal(b.data, want);
	buf_free(&b);
}

static void test_texts(void **state)
{
	(void)state;
	expect_text(row("update", "threatstack_agent", AGENT_KEY, agent_offline,
			"[\"active\",\"status\"]"),
		    names, "agent api-prod-1 went offline");
	expect_text(row("update", "threatstack_agent", AGENT_KEY, agent_online,
			"[\"active\",\"status\"]"),
		    names, "agent api-prod-1 is back online");
	expect_text(row("update", "threatstack_agent", AGENT_KEY,
			"{\"name\":\"db-1\",\"status\":\"decommissioned\"}", "[\"status\"]"),
		    names, "agent db-1 is now decommissioned");
	expect_text(row("create", "threatstack_agent", AGENT_KEY, agent_online, NULL), names,
		    "new agent api-prod-1");
	/* A delete carries no JSON and the graph no longer has the agent: its id. */
	expect_text(row("delete", "threatstack_agent", AGENT_KEY, NULL, NULL), NULL,
		    "agent " AGENT_ID " removed");
	expect_text(row("update", "threatstack_agent", AGENT_KEY, agent_online,
			"[\"hostname\",\"lastReportedAt\",\"tag.owner\"]"),
		    names, "agent api-prod-1 changed: hostname, tag.owner");
	expect_text(
		row("create", "threatstack_agent_identified_vulnerability", VULN_KEY, vuln, NULL),
		names, "CVE-2019-11477 identified on api-prod-1");
	expect_text(
		row("delete", "threatstack_agent_identified_vulnerability", VULN_KEY, NULL, NULL),
		names, "CVE-2019-11477 resolved on api-prod-1");
	/* The agent left the graph: its CVEs went with it. */
	expect_text(
		row("delete", "threatstack_agent_identified_vulnerability", VULN_KEY, NULL, NULL),
		NULL,
		"CVE-2019-11477 no longer reported on agent " AGENT_ID ": the agent was removed");
	expect_text(row("create", "threatstack_alert", "threatstack:alert:a1", alert_high, NULL),
		    names, "new high-severity alert on api-prod-1: Root login <!channel> & more");
	expect_text(row("update", "threatstack_alert", "threatstack:alert:a2", alert_dismissed,
			"[\"dismissed\",\"open\"]"),
		    names, "alert Odd process dismissed");
	expect_text(
		row("create", "threatstack_alert", "threatstack:alert:a3", alert_cloudtrail, NULL),
		names, "new medium-severity CloudTrail alert: Console login without MFA");
	expect_text(row("create", "threatstack_alert", "threatstack:alert:a4", alert_nosev, NULL),
		    names, "new alert on gone-agent: Something");
}

static void test_long_names_are_cut(void **state)
{
	char json[1024], want[512];
	struct buf b;

	(void)state;
	/* 190 ASCII bytes, then "é" (2 bytes) repeated: the cut lands inside one. */
	snprintf(json, sizeof(json), "{\"name\":\"%0190d%s\",\"status\":\"offline\"}", 0,
		 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
	snprintf(want, sizeof(want), "agent %0190d%s\xe2\x80\xa6 went offline", 0,
		 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
	buf_init(&b, 4096);
	{
		struct outbox_row r =
			row("update", "threatstack_agent", AGENT_KEY, json, "[\"status\"]");

		assert_int_equal(sink_webhook_text(&r, WEBHOOK_AGENT_STATUS, NULL, NULL, &b), 0);
	}
	assert_string_equal(b.data, want);
	buf_free(&b);
}

/* An update of many tags (an AWS tagging sweep) names the first few and counts the rest: its
 * sentence stays far below TEXT_MAX instead of failing the render, which stopped the drain at
 * that row for good. */
static void test_many_changed_properties(void **state)
{
	struct config_sink cfg = { .webhook = { .format = WEBHOOK_FORMAT_SLACK } };
	struct buf changed, b;
	struct outbox_row r;
	char want[64];

	(void)state;
	buf_init(&changed, 1 << 20);
	buf_init(&b, 1 << 20);
	assert_int_equal(buf_puts(&changed, "[\"lastReportedAt\""), 0);
	for (int i = 0; i < 300; i++)
		assert_int_equal(buf_printf(&changed, ",\"tag.cost-center-%04d\"", i), 0);
	assert_int_equal(buf_puts(&changed, "]"), 0);
	r = row("update", "threatstack_agent", AGENT_KEY, agent_online, changed.data);
	assert_int_equal(sink_webhook_body(&cfg, &r, WEBHOOK_AGENT_UPDATED, names, NULL, &b), 0);
	assert_true(b.len < 2048);
	assert_non_null(strstr(b.data, "agent api-prod-1 changed: tag.cost-center-0000, "
				       "tag.cost-center-0001, "));
	assert_null(strstr(b.data, "lastReportedAt"));
	/* Every property is either named or counted. */
	{
		const char *more = strstr(b.data, " and ");
		unsigned named = 0, rest = 0;

		assert_non_null(more);
		for (const char *p = b.data; (p = strstr(p, "tag.")) && p < more; p++)
			named++;
		assert_int_equal(sscanf(more, " and %u more", &rest), 1);
		assert_int_equal(named + rest, 300);
		snprintf(want, sizeof(want), " and %u more\"}", rest);
		assert_string_equal(more, want);
	}
	buf_free(&changed);
	buf_free(&b);
}

static void test_selected(void **state)
{
	struct config_sink cfg = { .webhook = { .events = WEBHOOK_EVENTS_ALL,
						.min_severity = SEVERITY_LOW } };
	struct sink_webhook_event status = { WEBHOOK_AGENT_STATUS, SEVERITY_LOW };
	struct sink_webhook_event high = { WEBHOOK_ALERT_CREATED, SEVERITY_HIGH };
	struct sink_webhook_event medium = { WEBHOOK_ALERT_CREATED, SEVERITY_MEDIUM };
	struct sink_webhook_event low_dismissed = { WEBHOOK_ALERT_DISMISSED, SEVERITY_LOW };
	struct sink_webhook_event none = { 0, SEVERITY_LOW };

	(void)state;
	assert_true(sink_webhook_selected(&cfg, &status));
	assert_true(sink_webhook_selected(&cfg, &medium));
	assert_true(sink_webhook_selected(&cfg, &low_dismissed));
	assert_false(sink_webhook_selected(&cfg, &none));
	cfg.webhook.min_severity = SEVERITY_MEDIUM;
	assert_true(sink_webhook_selected(&cfg, &high));
	assert_true(sink_webhook_selected(&cfg, &medium));
	assert_false(sink_webhook_selected(&cfg, &low_dismissed));
	assert_true(sink_webhook_selected(&cfg, &status)); /* not an alert: no severity */
	cfg.webhook.min_severity = SEVERITY_HIGH;
	assert_false(sink_webhook_selected(&cfg, &medium));
	cfg.webhook.events = WEBHOOK_ALERT_CREATED | WEBHOOK_CVE_IDENTIFIED;
	assert_true(sink_webhook_selected(&cfg, &high));
	assert_false(sink_webhook_selected(&cfg, &status));
}

static void test_bodies(void **state)
{
	struct config_sink cfg = { .webhook = { .format = WEBHOOK_FORMAT_JSON } };
	struct outbox_row r =
		row("create", "threatstack_alert", "threatstack:alert:a1", alert_high, NULL);
	struct buf b, line;
	json_object *o, *text;

	(void)state;
	buf_init(&b, 1 << 20);
	buf_init(&line, 1 << 20);
	/* json: exactly the change log's line, without its newline. */
	assert_int_equal(sink_webhook_body(&cfg, &r, WEBHOOK_ALERT_CREATED, names, NULL, &b), 0);
	assert_int_equal(sink_file_format(&r, &line), 0);
	assert_int_equal(b.len + 1, line.len);
	assert_memory_equal(b.data, line.data, b.len);
	assert_int_equal(line.data[b.len], '\n');
	/* slack: one text member, with &, < and > escaped the way Slack asks. */
	buf_reset(&b);
	cfg.webhook.format = WEBHOOK_FORMAT_SLACK;
	assert_int_equal(sink_webhook_body(&cfg, &r, WEBHOOK_ALERT_CREATED, names, NULL, &b), 0);
	assert_string_equal(b.data, "{\"text\":\"new high-severity alert on api-prod-1: Root "
				    "login &lt;!channel&gt; &amp; more\"}");
	o = json_tokener_parse(b.data);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "text", &text));
	assert_int_equal(json_object_object_length(o), 1);
	json_object_put(o);
	/* Quotes and control bytes in a name stay inside the JSON string. */
	buf_reset(&b);
	r = row("update", "threatstack_agent", AGENT_KEY,
		"{\"name\":\"a\\\"b\\nc\",\"status\":\"offline\"}", "[\"status\"]");
	assert_int_equal(sink_webhook_body(&cfg, &r, WEBHOOK_AGENT_STATUS, NULL, NULL, &b), 0);
	assert_string_equal(b.data, "{\"text\":\"agent a\\\"b\\nc went offline\"}");
	buf_free(&b);
	buf_free(&line);
}

/* printf '%s' '1700000000.{"text":"agent api-prod-1 went offline"}' |
 *   openssl dgst -sha256 -hmac 'whsec-test-0123456789abcdef' */
static void test_signature_vector(void **state)
{
	static const char body[] = "{\"text\":\"agent api-prod-1 went offline\"}";
	char sig[SINK_WEBHOOK_SIGNATURE_MAX];

	(void)state;
	assert_int_equal(sink_webhook_signature(SECRET, 1700000000, body, strlen(body), sig), 0);
	assert_string_equal(sig, "sha256=f5bfdbb6451f0907004a7407fb7c0624e222959e7ce02d7f1ac2bb58"
				 "2be536b3");
	/* The timestamp is signed: another one gives another signature. */
	assert_int_equal(sink_webhook_signature(SECRET, 1700000001, body, strlen(body), sig), 0);
	assert_string_not_equal(sig, "sha256=f5bfdbb6451f0907004a7407fb7c0624e222959e7ce02d7f1ac2b"
				     "b582be536b3");
}

/* --- configuration ------------------------------------------------------------------------- */

#define BASE                                   \
	"[threatstack]\n"                      \
	"org_name = Prod\n"                    \
	"org_id = 545d0293b620cd090d000023\n"  \
	"user_id = 5537c4284e9684df7e000014\n" \
	"api_key = k3y-s3cr3t-value\n"         \
	"[sink.alerts]\n"                      \
	"type = webhook\n"

static void refuse(const char *text, const char *want)
{
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;

	assert_int_equal(config_parse("t.conf", text, strlen(text), &c, err), -EINVAL);
	assert_null(c);
	assert_string_equal(err, want);
}

static void test_config(void **state)
{
	static const char full[] = BASE "url = https://hooks.example.com/services/T0/B0/x?y=1\n"
					"format = slack\n"
					"events = agent.status , cve.identified,alert.created\n"
					"min_severity = medium\n"
					"secret = " SECRET "\n"
					"timeout = 3\n"
					"backfill = yes\n";
	static const char minimal[] = BASE "url = http://127.0.0.1:9/hook\n";
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;

	(void)state;
	assert_int_equal(config_parse("t.conf", full, strlen(full), &c, err), 0);
	assert_string_equal(c->sinks[0].url, "https://hooks.example.com/services/T0/B0/x?y=1");
	assert_int_equal(c->sinks[0].webhook.format, WEBHOOK_FORMAT_SLACK);
	assert_int_equal(c->sinks[0].webhook.events,
			 WEBHOOK_AGENT_STATUS | WEBHOOK_CVE_IDENTIFIED | WEBHOOK_ALERT_CREATED);
	assert_int_equal(c->sinks[0].webhook.min_severity, SEVERITY_MEDIUM);
	assert_string_equal(c->sinks[0].webhook.secret, SECRET);
	assert_int_equal(c->sinks[0].timeout, 3);
	assert_true(c->sinks[0].webhook.backfill);
	config_free(c);
	c = NULL;
	assert_int_equal(config_parse("t.conf", minimal, strlen(minimal), &c, err), 0);
	assert_int_equal(c->sinks[0].webhook.format, WEBHOOK_FORMAT_JSON);
	assert_int_equal(c->sinks[0].webhook.events, WEBHOOK_EVENTS_ALL);
	assert_int_equal(c->sinks[0].webhook.min_severity, SEVERITY_LOW);
	assert_int_equal(c->sinks[0].timeout, CONFIG_WEBHOOK_TIMEOUT_DEFAULT);
	assert_null(c->sinks[0].webhook.secret);
	assert_false(c->sinks[0].webhook.backfill);
	config_free(c);

	refuse(BASE, "t.conf:6: [sink.alerts]: a webhook sink needs url");
	refuse(BASE "url = https://x.example/h\npath = /tmp/x\n",
	       "t.conf:9: path: not a key of a webhook sink");
	refuse(BASE "url = ftp://x.example/h\n", "t.conf:8: url: must start with https://");
	refuse(BASE "url = http://hooks.example.com/h\n",
	       "t.conf:8: url: plain http is only allowed to loopback; use https://");
	refuse(BASE "url = https://x.example/a b\n",
	       "t.conf:8: url: the path and query must be printable ASCII without blanks, '#' or "
	       "any of \"<>\\^`{|} (percent-encode them)");
	refuse(BASE "url = https://x.example/h#frag\n",
	       "t.conf:8: url: the path and query must be printable ASCII without blanks, '#' or "
	       "any of \"<>\\^`{|} (percent-encode them)");
	refuse(BASE "url = https:///h\n", "t.conf:8: url: the host is empty");
	refuse(BASE "url = https://u:p@x.example/h\n",
	       "t.conf:8: url: must be scheme://host[:port], without user, password or other "
	       "characters");
	refuse(BASE "url = https://x.example/h\nevents = agent.status, agent.exploded\n",
	       "t.conf:9: events: unknown event \"agent.exploded\" (agent.status, agent.created, "
	       "agent.deleted, agent.updated, cve.identified, cve.resolved, alert.created, "
	       "alert.dismissed)");
	refuse(BASE "url = https://x.example/h\nevents = agent.status,,cve.resolved\n",
	       "t.conf:9: events: an empty name in the list");
	refuse(BASE "url = https://x.example/h\nevents = agent.status,\n",
	       "t.conf:9: events: an empty name in the list");
	refuse(BASE "url = https://x.example/h\nformat = xml\n",
	       "t.conf:9: format: must be json or slack");
	refuse(BASE "url = https://x.example/h\nmin_severity = critical\n",
	       "t.conf:9: min_severity: must be high, medium or low");
	refuse(BASE "url = https://x.example/h\nbackfill = maybe\n",
	       "t.conf:9: backfill: must be yes or no");
	refuse(BASE "url = https://x.example/h\ntimeout = 0\n",
	       "t.conf:9: timeout: out of range (1..600)");
	refuse(BASE "url = https://x.example/h\nsecret = short\n",
	       "t.conf:9: secret: shorter than 16 characters");
	refuse(BASE "url = https://x.example/h\nsecret = " SECRET "\nsecret_file = /nonexistent\n",
	       "t.conf:10: secret_file: secret is set too (line 9); use one");
	/* The value of secret_file is a file name, never shown: a pasted secret stays hidden. */
	refuse(BASE "url = https://x.example/h\nsecret_file = /" SECRET "\n",
	       "t.conf:9: secret_file: cannot open the file it names: No such file or directory "
	       "(the value is not shown: this key takes a file name, not the secret)");
	refuse(BASE "url = https://x.example/h\nca_file = /nonexistent/ca.pem\n",
	       "t.conf:9: ca_file: cannot open /nonexistent/ca.pem: No such file or directory");
	/* The webhook keys belong to webhook sinks. */
	refuse("[threatstack]\norg_name = P\norg_id = o\nuser_id = u\napi_key = k\n"
	       "[sink.log]\ntype = file\npath = /tmp/x\nevents = agent.status\n",
	       "t.conf:9: events: not a key of a file sink");
}

/* The secret from secret_file, or from the credential sink-secret-NAME. */
static void test_config_secret_sources(void **state)
{
	char dir[] = "/tmp/tsgraphd-whsecret-XXXXXX", path[128], text[512], cmd[128];
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;
	FILE *fp;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/sink-secret-alerts", dir);
	fp = fopen(path, "we");
	assert_non_null(fp);
	fputs("  " SECRET "\n", fp);
	fclose(fp);
	assert_int_equal(chmod(path, 0600), 0);
	snprintf(text, sizeof(text), BASE "url = https://x.example/h\nsecret_file = %s\n", path);
	assert_int_equal(config_parse("t.conf", text, strlen(text), &c, err), 0);
	assert_string_equal(c->sinks[0].webhook.secret, SECRET);
	config_free(c);
	c = NULL;
	/* Group-readable: refused, like every secret file. */
	assert_int_equal(chmod(path, 0640), 0);
	refuse(text, "t.conf:9: secret_file: the file is readable or writable by group or others "
		     "(chmod 600 it)");
	assert_int_equal(chmod(path, 0600), 0);
	/* No secret key at all: the systemd credential of this sink's name. */
	setenv("CREDENTIALS_DIRECTORY", dir, 1);
	snprintf(text, sizeof(text), BASE "url = https://x.example/h\n");
	assert_int_equal(config_parse("t.conf", text, strlen(text), &c, err), 0);
	assert_string_equal(c->sinks[0].webhook.secret, SECRET);
	config_free(c);
	c = NULL;
	fp = fopen(path, "we");
	assert_non_null(fp);
	fputs("short\n", fp);
	fclose(fp);
	refuse(text, "t.conf: sink-secret-alerts: shorter than 16 characters");
	unsetenv("CREDENTIALS_DIRECTORY");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* --- delivery against the catcher -------------------------------------------------------------- */

struct fixture {
	char dir[TESTSTORE_DIR_MAX];
	struct store *s;
	struct fake catcher;
	struct config c;
	struct config_sink cfg;
	char url[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || teststore_open(f->dir, &f->s) < 0)
		return -1;
	fake_start_named(&f->catcher, "webhook_catcher", NULL);
	snprintf(f->url, sizeof(f->url), "%s/hooks/tsgraphd", f->catcher.url);
	f->cfg = (struct config_sink){
		.name = "alerts",
		.type = SINK_WEBHOOK,
		.url = f->url,
		.timeout = 5,
		.webhook = { .secret = SECRET,
			     .events = WEBHOOK_EVENTS_ALL,
			     .min_severity = SEVERITY_LOW },
	};
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int r;

	fake_stop(&f->catcher);
	r = teststore_remove(f->dir, f->s);
	free(f);
	return r;
}

/* One drain with a fresh sink; *ret_delivered and the result. */
static int drain(struct fixture *f, struct cancel *cancel, int64_t *ret_delivered, char *err)
{
	struct sink *k = NULL;
	int r;

	*ret_delivered = -1;
	assert_int_equal(sink_open(&f->c, &f->cfg, cancel, &k, err), 0);
	r = sink_drain(k, f->s, ret_delivered, err);
	sink_close(k);
	return r;
}

static int64_t cursor_of(struct fixture *f)
{
	int64_t c = -1;

	assert_int_equal(store_cursor_get(f->s, "alerts", &c), 0);
	return c;
}

static json_object *caught(struct fixture *f)
{
	return fake_control(&f->catcher, "/_catcher/requests", NULL);
}

static void catcher_fault(struct fixture *f, const char *json)
{
	json_object_put(fake_control(&f->catcher, "/_catcher/fault", json));
}

static int64_t catcher_stat(struct fixture *f, const char *name)
{
	json_object *o = fake_control(&f->catcher, "/_catcher/stats", NULL), *v;
	int64_t n;

	assert_true(json_object_object_get_ex(o, name, &v));
	n = json_object_get_int64(v);
	json_object_put(o);
	return n;
}

static const char *member(json_object *o, const char *name)
{
	json_object *v;

	return json_object_object_get_ex(o, name, &v) ? json_object_get_string(v) : NULL;
}

static void test_new_sink_starts_after_the_outbox(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX], sig[SINK_WEBHOOK_SIGNATURE_MAX];
	int64_t n = 0, ts = 0;
	json_object *a, *first;
	const char *body;

	teststore_sync_agents(f->s, 3, "online"); /* the first sync: three agents created */
	assert_int_equal(drain(f, NULL, &n, err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(cursor_of(f), 3);
	teststore_sync_agents(f->s, 3, "offline");
	assert_int_equal(drain(f, NULL, &n, err), 0);
	assert_int_equal(n, 3);
	assert_int_equal(cursor_of(f), 6);
	assert_int_equal(drain(f, NULL, &n, err), 0); /* nothing new, nothing sent */
	assert_int_equal(n, 0);
	a = caught(f);
	assert_int_equal(json_object_array_length(a), 3);
	for (size_t i = 0; i < 3; i++) {
		json_object *r = json_object_array_get_idx(a, i), *o, *seq;
		char want[16];

		snprintf(want, sizeof(want), "%zu", i + 4);
		assert_string_equal(member(r, "path"), "/hooks/tsgraphd");
		assert_string_equal(member(r, "event"), "agent.status");
		assert_string_equal(member(r, "seq"), want); /* in order */
		assert_string_equal(member(r, "content_type"), "application/json");
		o = json_tokener_parse(member(r, "body"));
		assert_non_null(o);
		assert_true(json_object_object_get_ex(o, "seq", &seq));
		assert_int_equal(json_object_get_int64(seq), (int64_t)i + 4);
		json_object_put(o);
	}
	/* The signature verifies against the body as received. */
	first = json_object_array_get_idx(a, 0);
	body = member(first, "body");
	assert_int_equal(parse_i64(member(first, "timestamp"), 1, INT64_MAX, &ts), 0);
	assert_int_equal(sink_webhook_signature(SECRET, ts, body, strlen(body), sig), 0);
	assert_string_equal(member(first, "signature"), sig);
	json_object_put(a);
	/* No store report of a failure. */
	{
		struct store_sink_state st;

		assert_int_equal(store_sink_state_get(f->s, "alerts", &st), 0);
		assert_int_equal(st.failures, 0);
		assert_true(st.last_ok > 0);
	}
}

static void test_backfill_and_filters(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	int64_t n = 0;
	json_object *a;

	f->cfg.webhook.backfill = true;
	f->cfg.webhook.format = WEBHOOK_FORMAT_SLACK;
	f->cfg.webhook.secret = NULL;
	teststore_sync_agents(f->s, 2, "online");
	assert_int_equal(drain(f, NULL, &n, err), 0);
	assert_int_equal(n, 2);
	a = caught(f);
	assert_int_equal(json_object_array_length(a), 2);
	assert_string_equal(member(json_object_array_get_idx(a, 0), "body"),
			    "{\"text\":\"new agent host-1\"}");
	assert_string_equal(member(json_object_array_get_idx(a, 1), "event"), "agent.created");
	assert_null(member(json_object_array_get_idx(a, 0), "signature")); /* no secret */
	assert_null(member(json_object_array_get_idx(a, 0), "timestamp"));
	json_object_put(a);
	/* Rows no selected event is: passed over, the cursor still moves. */
	f->cfg.webhook.events = WEBHOOK_AGENT_DELETED;
	teststore_sync_agents(f->s, 2, "offline");
	assert_int_equal(drain(f, NULL, &n, err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(cursor_of(f), 4);
	assert_int_equal(catcher_stat(f, "accepted"), 2);
}

static void test_5xx_retried_in_order(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	int64_t n = 0;
	json_object *a;

	teststore_sync_agents(f->s, 2, "online");
	assert_int_equal(drain(f, NULL, &n, err), 0);
	teststore_sync_agents(f->s, 2, "offline");
	/* Two refusals, with Retry-After: 0 so the test does not wait. */
	catcher_fault(f, "{\"status\":503,\"count\":2,\"retry_after\":0}");
	assert_int_equal(drain(f, NULL, &n, err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(catcher_stat(f, "refused"), 2);
	a = caught(f);
	assert_int_equal(json_object_array_length(a), 2);
	assert_string_equal(member(json_object_array_get_idx(a, 0), "seq"), "3");
	assert_string_equal(member(json_object_array_get_idx(a, 1), "seq"), "4");
	json_object_put(a);
	/* Down for longer than a drain tries: it fails, the cursor stays, nothing is lost. */
	teststore_sync_agents(f->s, 2, "online");
	catcher_fault(f, "{\"status\":500,\"count\":100,\"retry_after\":0}");
	assert_int_equal(drain(f, NULL, &n, err), -EAGAIN);
	assert_non_null(strstr(err, "the change at seq 5 (agent.status) failed 5 times, the last "
				    "with HTTP 500"));
	assert_int_equal(cursor_of(f), 4);
	assert_int_equal(catcher_stat(f, "refused"), 2 + SINK_WEBHOOK_ATTEMPTS);
	{
		struct store_sink_state st;

		assert_int_equal(store_sink_state_get(f->s, "alerts", &st), 0);
		assert_int_equal(st.failures, 1);
		assert_non_null(strstr(st.last_error, "failed 5 times"));
	}
	catcher_fault(f, "{\"status\":0}");
	assert_int_equal(drain(f, NULL, &n, err), 0);
	assert_int_equal(n, 2);
	a = caught(f);
	assert_int_equal(json_object_array_length(a), 4);
	assert_string_equal(member(json_object_array_get_idx(a, 2), "seq"), "5");
	assert_string_equal(member(json_object_array_get_idx(a, 3), "seq"), "6");
	json_object_put(a);
}

static void test_4xx_stops_the_drain(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	int64_t n = 0;

	teststore_sync_agents(f->s, 2, "online");
	assert_int_equal(drain(f, NULL, &n, err), 0);
	teststore_sync_agents(f->s, 2, "offline");
	catcher_fault(f, "{\"status\":404,\"count\":1}");
	assert_int_equal(drain(f, NULL, &n, err), -EREMOTEIO);
	assert_non_null(strstr(err, "the receiver refused the change at seq 3 (agent.status) with "
				    "HTTP 404: {\"error\":\"injected fault\"}"));
	assert_int_equal(catcher_stat(f, "refused"), 1); /* not retried */
	assert_int_equal(catcher_stat(f, "accepted"), 0);
	assert_int_equal(cursor_of(f), 2);
	/* Once the receiver takes it, the next drain goes on from the refused change. */
	assert_int_equal(drain(f, NULL, &n, err), 0);
	assert_int_equal(n, 2);
	assert_int_equal(cursor_of(f), 4);
}

static void *fire_later(void *c)
{
	fake_sleep_ms(200);
	cancel_fire(c);
	return NULL;
}

static void test_cancel_ends_a_wait(void **state)
{
	struct fixture *f = *state;
	struct cancel *cancel = NULL;
	char err[SINK_ERR_MAX];
	int64_t n = 0, start;
	pthread_t t;

	teststore_sync_agents(f->s, 1, "online");
	assert_int_equal(drain(f, NULL, &n, err), 0);
	teststore_sync_agents(f->s, 1, "offline");
	/* Retry-After: 30 s; the cancel handle fires after 0.2 s. */
	catcher_fault(f, "{\"status\":429,\"count\":1,\"retry_after\":30}");
	assert_int_equal(cancel_new(&cancel), 0);
	assert_int_equal(pthread_create(&t, NULL, fire_later, cancel), 0);
	start = monotonic_ms();
	assert_int_equal(drain(f, cancel, &n, err), -ECANCELED);
	assert_true(monotonic_ms() - start < 5000);
	pthread_join(t, NULL);
	cancel_free(cancel);
	assert_int_equal(cursor_of(f), 1);
	{
		struct store_sink_state st;

		assert_int_equal(store_sink_state_get(f->s, "alerts", &st), 0);
		assert_int_equal(st.failures, 0); /* stopped, not failed */
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_classify),
		cmocka_unit_test(test_texts),
		cmocka_unit_test(test_long_names_are_cut),
		cmocka_unit_test(test_many_changed_properties),
		cmocka_unit_test(test_selected),
		cmocka_unit_test(test_bodies),
		cmocka_unit_test(test_signature_vector),
		cmocka_unit_test(test_config),
		cmocka_unit_test(test_config_secret_sources),
		cmocka_unit_test_setup_teardown(test_new_sink_starts_after_the_outbox, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_backfill_and_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_5xx_retried_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_4xx_stops_the_drain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_ends_a_wait, setup, teardown),
	};
	int r;

	curl_global_init(CURL_GLOBAL_DEFAULT);
	r = cmocka_run_group_tests(tests, NULL, NULL);
	curl_global_cleanup();
	return r;
}
