/* graph_dump — prints, one per line (NDJSON), every graph object the builder makes from a
 * built-in fixture full of awkward cases, for tests/e2e/030-data-model.sh to validate
 * against the JupiterOne data model.
 *
 *   graph_dump [--placeholder]     (--placeholder: create_host_placeholder = true)
 *
 * The fixture is C structs, as the parser would fill them, so this test does not depend on
 * the parser: null names, string-valued ipAddresses (one-element lists after parsing),
 * agents on and off EC2, odd hostnames and tag keys, CloudTrail, dismissed and
 * severity-less alerts, CVE ids in either case. Each line is the object's canonical JSON
 * (include/tsgraphd/canon.h): the bytes the sync hashes and stores, so
 * tests/e2e/graph_dump.ndjson (and graph_dump-placeholder.ndjson), recorded from this
 * program, pin them: a change to the builder that would change a stored hash fails 030.
 * Exit status 0, or 1 when the builder failed.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tsgraphd/graph.h"
#include "tsgraphd/util.h"

#define S(x) ((char *)(x))

static char *pub1[] = { S("54.12.34.56") };
static char *priv1[] = { S("10.20.3.41") };
static char *ll1[] = { S("fe80::8ff:2aff:fe11:2233") };
static char *priv6[] = { S("fd00::12"), S("10.1.2.3") };
static struct ts_tag tags1[] = {
	{ S("ec2"), S("Name"), S("api-prod-1") },
	{ NULL, S("env"), S("prod") },
	{ S("ec2"), S("aws:autoscaling:groupName"), S("api-asg") },
};
static struct ts_tag tags2[] = {
	{ NULL, S("Owner_Team"), S("sec") }, { NULL, S("\xc3\xa9quipe/\xe2\x82\xac"), S("ops") },
	{ NULL, S("flag"), NULL },	     { NULL, S("x=y"), S("1") },
	{ NULL, S(""), S("dropped") },
};

static struct ts_agent agents[] = {
	{
		/* Full EC2 agent; its ipAddresses arrived as strings. */
		.id = S("3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02"),
		.instance_id = S("i-04c1d2e3f4a5b6c7d"),
		.status = S("online"),
		.name = S("api-prod-1"),
		.description = S(""),
		.hostname = S("ip-10-20-3-41.ec2.internal"),
		.version = S("2.5.0"),
		.agent_type = S("investigate"),
		.os_version = S("amzn 2018.03"),
		.kernel = S("4.14.114-83.126.amzn1.x86_64"),
		.created_at = 1588334403117,
		.last_reported_at = 1588495315902,
		.ip_private = { priv1, 1 },
		.ip_public = { pub1, 1 },
		.ip_link_local = { ll1, 1 },
		.tags = tags1,
		.n_tags = 3,
		.healthy = 1,
	},
	{
		/* Off EC2, null name, an odd hostname, odd tag keys, offline. */
		.id = S("5537c4284e9684df7e000014"),
		.status = S("offline"),
		.hostname = S("Web_Server [01]^`.corp.example.com"),
		.agent_type = S("monitor"),
		.created_at = 1500000000000,
		.last_reported_at = 1500000360000,
		.ip_private = { priv6, 2 },
		.tags = tags2,
		.n_tags = 5,
		.healthy = 0,
	},
	{
		/* Nothing known but the id. */
		.id = S("00000000-0000-4000-8000-000000000001"),
		.created_at = TSJSON_TIME_UNKNOWN,
		.last_reported_at = TSJSON_TIME_UNKNOWN,
		.healthy = -1,
	},
	{
		/* A status that is neither online nor offline; a hostname that normalizes to
		 * nothing. */
		.id = S("00000000-0000-4000-8000-000000000002"),
		.status = S("pending"),
		.name = S("  "),
		.hostname = S("___"),
		.created_at = 0,
		.last_reported_at = TSJSON_TIME_UNKNOWN,
		.healthy = -1,
	},
};

static struct ts_vuln vulns[] = {
	{
		.cve = S("CVE-2019-11477"),
		.reported_package = S("kernel 4.14.114"),
		.system_package = S("kernel 4.14.114-83.126.amzn1.x86_64"),
		.vector_type = S("network"),
		.severity = S("high"),
		.suppressed = 0,
	},
	{
		.cve = S("cve-2021-44228"),
		.suppressed = -1,
	},
	{
		.cve = S("CVE-2020-1234567"),
		.severity = S("low"),
		.suppressed = 1,
	},
};

static struct ts_alert alerts[] = {
	{
		.id = S("5ec2a7e1c9f3b200015a1b2c"),
		.title = S("User Activity: sudo executed by alice"),
		.data_source = S("host"),
		.agent_id = S("3f9c2a10-8d1e-11ea-b1c4-0a58a9feac02"),
		.rule_id = S("7d0f4b62-1a2b-4c3d-8e9f-001122334455"),
		.ruleset_id = S("a1b2c3d4-5e6f-4a7b-8c9d-aabbccddeeff"),
		.created_at = 1589814129000,
		.dismissed_at = TSJSON_TIME_UNKNOWN,
		.severity = 1,
		.dismissed = 0,
	},
	{
		/* CloudTrail: no agent. */
		.id = S("5ec2a7e1c9f3b200015a1b2d"),
		.title = S("CloudTrail: ConsoleLogin without MFA"),
		.data_source = S("cloudtrail"),
		.created_at = 1589814130000,
		.dismissed_at = TSJSON_TIME_UNKNOWN,
		.severity = 3,
		.dismissed = 0,
	},
	{
		/* Dismissed, with the older spelling already mapped by the parser. */
		.id = S("5ec2a7e1c9f3b200015a1b2e"),
		.title = S("File Integrity: /etc/passwd modified"),
		.data_source = S("host"),
		.agent_id = S("5537c4284e9684df7e000014"),
		.dismiss_reason = S("MAINTENANCE"),
		.dismiss_reason_text = S("patching window"),
		.dismissed_by = S("bob@example.com"),
		.created_at = 1589814131000,
		.dismissed_at = 1589900000000,
		.severity = 2,
		.dismissed = 1,
	},
	{
		/* No title, no severity, nothing else. */
		.id = S("5ec2a7e1c9f3b200015a1b2f"),
		.created_at = TSJSON_TIME_UNKNOWN,
		.dismissed_at = TSJSON_TIME_UNKNOWN,
		.severity = 0,
		.dismissed = -1,
	},
};

static int print_obj(const struct graph_object *o, void *userdata)
{
	(void)userdata;
	if (fwrite(o->json, 1, o->json_len, stdout) != o->json_len || putchar('\n') == EOF)
		return -EIO;
	return 0;
}

int main(int argc, char **argv)
{
	struct graph_options opt = {
		.org_id = "545d0293b620cd090d000023",
		.org_name = "Prod Org",
		.web_url = "https://app.threatstack.com",
	};
	int r;

	if (argc == 2 && strcmp(argv[1], "--placeholder") == 0) {
		opt.create_host_placeholder = true;
	} else if (argc != 1) {
		fprintf(stderr, "usage: %s [--placeholder]\n", argv[0]);
		return 2;
	}
	if ((r = graph_account(&opt, print_obj, NULL)) < 0)
		goto out;
	for (size_t i = 0; i < ARRAY_SIZE(agents); i++)
		if ((r = graph_agent(&opt, &agents[i], print_obj, NULL)) < 0)
			goto out;
	for (size_t i = 0; i < ARRAY_SIZE(vulns); i++)
		for (size_t j = 0; j < 2; j++)
			if ((r = graph_vuln_agent(&opt, &vulns[i], agents[j].id, print_obj, NULL)) <
			    0)
				goto out;
	for (size_t i = 0; i < ARRAY_SIZE(alerts); i++)
		if ((r = graph_alert(&opt, &alerts[i], print_obj, NULL)) < 0)
			goto out;
	r = fflush(stdout) == 0 ? 0 : -EIO;
out:
	if (r < 0)
		fprintf(stderr, "graph_dump: %s\n", strerror(-r));
	return r < 0 ? 1 : 0;
}
