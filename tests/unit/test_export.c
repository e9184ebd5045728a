/* Unit tests for export: the exact output of each format on a small graph with hostile strings
 * (quotes, backslashes, newlines, control bytes, non-ASCII UTF-8 in keys and names), read
 * through a read-only connection as `tsgraphd export` does; one consistent snapshot while a
 * writer commits in the middle of an export; the seq it carries; -o's temporary file, mode,
 * and a target left untouched on failure; write errors; objects that are not graph.c's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <json-c/json.h>

#include "tsgraphd/canon.h"
#include "tsgraphd/diff.h"
#include "tsgraphd/export.h"
#include "tsgraphd/store.h"

#include "teststore.h"

#define NOW 1589814129000LL /* 2020-05-18T15:02:09.000Z */
#define AT  "2020-05-18T15:02:09.000Z"

/* The graph, as canonical JSON (the test checks each is canonical). Agent a's key is
 * threatstack:agent:a"1\ (a quote and a backslash). */
#define KEY_A	     "threatstack:agent:a\"1\\"
#define KEY_A_JSON   "threatstack:agent:a\\\"1\\\\"
#define ACCOUNT_JSON                                                                     \
	"{\"_class\":\"Account\",\"_key\":\"threatstack:account:o1\",\"_type\":"          \
	"\"threatstack_account\",\"displayName\":\"Acme \\\"Q\\\" \\\\ Corp\\n\xe2\x98\x83 " \
	"Ltd\",\"name\":\"Acme\"}"
#define AGENT_A_JSON                                                                         \
	"{\"_class\":\"HostAgent\",\"_key\":\"" KEY_A_JSON "\",\"_type\":\"threatstack_agent\"," \
	"\"displayName\":\"web\\r01\\tx\"}"
#define AGENT_B_JSON                                                                   \
	"{\"_class\":\"HostAgent\",\"_key\":\"threatstack:agent:b\",\"_type\":"         \
	"\"threatstack_agent\",\"name\":\"b-host\"}"
#define AGENT_GONE_JSON                                                                \
	"{\"_class\":\"HostAgent\",\"_key\":\"threatstack:agent:gone\",\"_type\":"      \
	"\"threatstack_agent\",\"name\":\"gone\"}"
#define ALERT_JSON                                                                     \
	"{\"_class\":\"Finding\",\"_key\":\"threatstack:alert:x1\",\"_type\":"          \
	"\"threatstack_alert\",\"name\":\"Alert <b>&\"}"
#define HAS_JSON                                                                             \
	"{\"_class\":\"HAS\",\"_fromEntityKey\":\"threatstack:account:o1\",\"_key\":"        \
	"\"threatstack:account:o1|has|" KEY_A_JSON "\",\"_toEntityKey\":\"" KEY_A_JSON "\"," \
	"\"_type\":\"threatstack_account_has_agent\",\"displayName\":\"HAS\"}"
#define IDENT_ALERT_JSON                                                                       \
	"{\"_class\":\"IDENTIFIED\",\"_fromEntityKey\":\"" KEY_A_JSON "\",\"_key\":\"" KEY_A_JSON \
	"|identified|threatstack:alert:x1\",\"_toEntityKey\":\"threatstack:alert:x1\",\"_type\":" \
	"\"threatstack_agent_identified_alert\",\"displayName\":\"IDENTIFIED\"}"
#define CVE_TARGET                                                                     \
	"{\"_class\":\"Vulnerability\",\"_key\":\"cve-2021-44228\",\"_type\":\"cve\","    \
	"\"displayName\":\"CVE-2021-44228\"}"
#define IDENT_CVE_A_JSON                                                                     \
	"{\"_class\":\"IDENTIFIED\",\"_key\":\"" KEY_A_JSON "|identified|cve-2021-44228\","  \
	"\"_mapping\":{\"relationshipDirection\":\"FORWARD\",\"sourceEntityKey\":\"" KEY_A_JSON \
	"\",\"targetEntity\":" CVE_TARGET ",\"targetFilterKeys\":[[\"_type\",\"_key\"]]},"     \
	"\"_type\":\"threatstack_agent_identified_vulnerability\",\"displayName\":"            \
	"\"IDENTIFIED\"}"
#define IDENT_CVE_B_JSON                                                                     \
	"{\"_class\":\"IDENTIFIED\",\"_key\":\"threatstack:agent:b|identified|cve-2021-44228\"," \
	"\"_mapping\":{\"relationshipDirection\":\"FORWARD\",\"sourceEntityKey\":"             \
	"\"threatstack:agent:b\",\"targetEntity\":" CVE_TARGET ",\"targetFilterKeys\":"        \
	"[[\"_type\",\"_key\"]]},\"_type\":\"threatstack_agent_identified_vulnerability\","    \
	"\"displayName\":\"IDENTIFIED\"}"
#define PROTECTS_JSON                                                                        \
	"{\"_class\":\"PROTECTS\",\"_key\":\"" KEY_A_JSON "|protects|host:web-01\","         \
	"\"_mapping\":{\"relationshipDirection\":\"FORWARD\",\"skipTargetCreation\":true,"    \
	"\"sourceEntityKey\":\"" KEY_A_JSON "\",\"targetEntity\":{\"_class\":\"Host\","       \
	"\"_type\":\"host\",\"hostname\":\"web \\\"01\\\"\"},\"targetFilterKeys\":"          \
	"[[\"_class\",\"hostname\"]]},\"_type\":\"threatstack_agent_protects_server\","      \
	"\"displayName\":\"PROTECTS\"}"

struct object {
	enum graph_kind kind;
	const char *key, *type, *class, *from, *to;
	bool mapped;
	const char *json;
};

static const struct object entities[] = {
	{ GRAPH_ENTITY, "threatstack:account:o1", "threatstack_account", "Account", NULL, NULL,
	  false, ACCOUNT_JSON },
	{ GRAPH_ENTITY, KEY_A, "threatstack_agent", "HostAgent", NULL, NULL, false, AGENT_A_JSON },
	{ GRAPH_ENTITY, "threatstack:agent:b", "threatstack_agent", "HostAgent", NULL, NULL, false,
	  AGENT_B_JSON },
	{ GRAPH_ENTITY, "threatstack:alert:x1", "threatstack_alert", "Finding", NULL, NULL, false,
	  ALERT_JSON },
};
static const struct object gone = { GRAPH_ENTITY,	  "threatstack:agent:gone",
				    "threatstack_agent", "HostAgent",
				    NULL,		  NULL,
				    false,		  AGENT_GONE_JSON };
static const struct object relationships[] = {
	{ GRAPH_RELATIONSHIP, "threatstack:account:o1|has|" KEY_A, "threatstack_account_has_agent",
	  "HAS", "threatstack:account:o1", KEY_A, false, HAS_JSON },
	{ GRAPH_RELATIONSHIP, KEY_A "|identified|cve-2021-44228",
	  "threatstack_agent_identified_vulnerability", "IDENTIFIED", KEY_A, "cve-2021-44228", true,
	  IDENT_CVE_A_JSON },
	{ GRAPH_RELATIONSHIP, KEY_A "|identified|threatstack:alert:x1",
	  "threatstack_agent_identified_alert", "IDENTIFIED", KEY_A, "threatstack:alert:x1", false,
	  IDENT_ALERT_JSON },
	{ GRAPH_RELATIONSHIP, KEY_A "|protects|host:web-01", "threatstack_agent_protects_server",
	  "PROTECTS", KEY_A, NULL, true, PROTECTS_JSON },
	{ GRAPH_RELATIONSHIP, "threatstack:agent:b|identified|cve-2021-44228",
	  "threatstack_agent_identified_vulnerability", "IDENTIFIED", "threatstack:agent:b",
	  "cve-2021-44228", true, IDENT_CVE_B_JSON },
};

struct fixture {
	char dir[TESTSTORE_DIR_MAX];
	char path[TESTSTORE_DIR_MAX + 16];
	struct store *w; /* the writer (a sync) */
	struct store *r; /* the export's read-only connection */
};

static void stage(struct store *s, const struct object *o)
{
	struct graph_object g = { .kind = o->kind,
				  .key = o->key,
				  .type = o->type,
				  .class = o->class,
				  .from_key = o->from,
				  .to_key = o->to,
				  .mapped = o->mapped,
				  .json = o->json,
				  .json_len = strlen(o->json) };
	char hash[CANON_HASH_HEX + 1];
	json_object *parsed = json_tokener_parse(o->json);
	struct buf b;

	/* The fixture is what the store holds: canonical JSON. */
	assert_non_null(parsed);
	buf_init(&b, 65536);
	assert_int_equal(canon_serialize(parsed, &b), 0);
	assert_string_equal(b.data, o->json);
	buf_free(&b);
	json_object_put(parsed);
	assert_int_equal(canon_sha256_hex(o->json, strlen(o->json), hash), 0);
	assert_int_equal(store_snapshot_put(s, &g, o->json, hash), 0);
}

/* One complete sync of the agents: every entity and relationship whose agent is kept. */
static void sync_graph(struct store *s, bool with_gone, bool with_b)
{
	struct diff_options o = {
		.source = "poll", .run_id = 1, .now = NOW, .max_delete_fraction = 1
	};

	assert_int_equal(store_snapshot_reset(s), 0);
	for (size_t i = 0; i < ARRAY_SIZE(entities); i++)
		if (with_b || strcmp(entities[i].key, "threatstack:agent:b") != 0)
			stage(s, &entities[i]);
	if (with_gone)
		stage(s, &gone);
	for (size_t i = 0; i < ARRAY_SIZE(relationships); i++)
		if (with_b || strcmp(relationships[i].from, "threatstack:agent:b") != 0)
			stage(s, &relationships[i]);
	teststore_apply_agents(s, &o);
}

static int open_reader(struct fixture *f)
{
	struct store_options so = { .must_exist = true, .read_only = true };
	char err[STORE_ERR_MAX];

	return store_open(f->path, &so, &f->r, err);
}

/* The graph: 10 changes (5 entities, 5 relationships), then "gone" deleted: seq 11. */
static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || teststore_open(f->dir, &f->w) < 0)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
	sync_graph(f->w, true, true);
	sync_graph(f->w, false, true);
	if (open_reader(f) < 0)
		return -1;
	*state = f;
	return 0;
}

/* An empty store: created and migrated, nothing synced. */
static int setup_empty(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || teststore_open(f->dir, &f->w) < 0)
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
	if (open_reader(f) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int r;

	store_close(f->r);
	r = teststore_remove(f->dir, f->w);
	free(f);
	return r;
}

/* The export of format into a malloc'd string. */
static char *export_string(struct store *s, enum export_format format, struct export_counts *n)
{
	struct export_options opt = { .format = format, .now = NOW };
	char err[EXPORT_ERR_MAX], *data = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&data, &len);
	int r;

	assert_non_null(out);
	r = export_write(s, &opt, out, n, err);
	if (r < 0)
		fail_msg("export_write: %d: %s", r, err);
	assert_int_equal(fclose(out), 0);
	return data;
}

static void test_format_names(void **state)
{
	enum export_format f;

	(void)state;
	assert_int_equal(export_format_from_string("json", &f), 0);
	assert_int_equal(f, EXPORT_JSON);
	assert_int_equal(export_format_from_string("ndjson", &f), 0);
	assert_int_equal(f, EXPORT_NDJSON);
	assert_int_equal(export_format_from_string("dot", &f), 0);
	assert_int_equal(f, EXPORT_DOT);
	assert_int_equal(export_format_from_string("DOT", &f), -EINVAL);
	assert_int_equal(export_format_from_string("", &f), -EINVAL);
	assert_string_equal(export_format_to_string(EXPORT_NDJSON), "ndjson");
}

static const char want_json[] = "{\"entities\":[\n" ACCOUNT_JSON ",\n" AGENT_A_JSON
				",\n" AGENT_B_JSON ",\n" ALERT_JSON
				"\n],\"relationships\":[\n" HAS_JSON ",\n" IDENT_CVE_A_JSON
				",\n" IDENT_ALERT_JSON ",\n" PROTECTS_JSON ",\n" IDENT_CVE_B_JSON
				"\n]}\n";

static void test_json(void **state)
{
	struct fixture *f = *state;
	struct export_counts n;
	char *got = export_string(f->r, EXPORT_JSON, &n);
	json_object *o = json_tokener_parse(got);

	assert_string_equal(got, want_json);
	assert_non_null(o); /* one JSON document */
	json_object_put(o);
	assert_int_equal(n.seq, 11);
	assert_int_equal(n.entities, 4);
	assert_int_equal(n.relationships, 5);
	free(got);
}

#define LINE(kind, key, type, class, json)                                                    \
	"{\"seq\":11,\"op\":\"create\",\"kind\":\"" kind "\",\"key\":\"" key "\",\"type\":\"" type \
	"\",\"class\":\"" class "\",\"source\":\"export\",\"at\":\"" AT "\",\"object\":" json   \
	"}\n"

static const char want_ndjson[] =
	LINE("entity", "threatstack:account:o1", "threatstack_account", "Account", ACCOUNT_JSON)
	LINE("entity", KEY_A_JSON, "threatstack_agent", "HostAgent", AGENT_A_JSON)
	LINE("entity", "threatstack:agent:b", "threatstack_agent", "HostAgent", AGENT_B_JSON)
	LINE("entity", "threatstack:alert:x1", "threatstack_alert", "Finding", ALERT_JSON)
	LINE("relationship", "threatstack:account:o1|has|" KEY_A_JSON,
	     "threatstack_account_has_agent", "HAS", HAS_JSON)
	LINE("relationship", KEY_A_JSON "|identified|cve-2021-44228",
	     "threatstack_agent_identified_vulnerability", "IDENTIFIED", IDENT_CVE_A_JSON)
	LINE("relationship", KEY_A_JSON "|identified|threatstack:alert:x1",
	     "threatstack_agent_identified_alert", "IDENTIFIED", IDENT_ALERT_JSON)
	LINE("relationship", KEY_A_JSON "|protects|host:web-01",
	     "threatstack_agent_protects_server", "PROTECTS", PROTECTS_JSON)
	LINE("relationship", "threatstack:agent:b|identified|cve-2021-44228",
	     "threatstack_agent_identified_vulnerability", "IDENTIFIED", IDENT_CVE_B_JSON);

static void test_ndjson(void **state)
{
	struct fixture *f = *state;
	struct export_counts n;
	char *got = export_string(f->r, EXPORT_NDJSON, &n);

	assert_string_equal(got, want_ndjson);
	assert_int_equal(n.seq, 11);
	free(got);
}

static const char want_dot[] =
	"// tsgraphd export: the stored graph at outbox seq 11\n"
	"digraph \"tsgraphd\" {\n"
	"\tgraph [rankdir=LR];\n"
	"\tnode [shape=box, style=rounded];\n"
	"\t\"threatstack:account:o1\" [label=\"Acme \\\"Q\\\" \\\\ Corp\\n\xe2\x98\x83 "
	"Ltd\\nAccount\", shape=house];\n"
	"\t\"threatstack:agent:a\\\"1\\\\\" [label=\"web\\r01 x\\nHostAgent\"];\n"
	"\t\"threatstack:agent:b\" [label=\"b-host\\nHostAgent\"];\n"
	"\t\"threatstack:alert:x1\" [label=\"Alert <b>&\\nFinding\", shape=note];\n"
	"\t\"Host:web \\\"01\\\"\" [label=\"Host:web \\\"01\\\"\\nHost\", shape=box3d];\n"
	"\t\"cve:cve-2021-44228\" [label=\"CVE-2021-44228\\nVulnerability\", shape=octagon];\n"
	"\t\"threatstack:account:o1\" -> \"threatstack:agent:a\\\"1\\\\\" [label=\"HAS\"];\n"
	"\t\"threatstack:agent:a\\\"1\\\\\" -> \"cve:cve-2021-44228\" [label=\"IDENTIFIED\"];\n"
	"\t\"threatstack:agent:a\\\"1\\\\\" -> \"threatstack:alert:x1\" [label=\"IDENTIFIED\"];\n"
	"\t\"threatstack:agent:a\\\"1\\\\\" -> \"Host:web \\\"01\\\"\" [label=\"PROTECTS\"];\n"
	"\t\"threatstack:agent:b\" -> \"cve:cve-2021-44228\" [label=\"IDENTIFIED\"];\n"
	"}\n";

static void test_dot(void **state)
{
	struct fixture *f = *state;
	struct export_counts n;
	char *got = export_string(f->r, EXPORT_DOT, &n);

	assert_string_equal(got, want_dot);
	assert_int_equal(n.entities, 4);
	assert_int_equal(n.relationships, 5);
	assert_int_equal(n.targets, 2); /* the CVE both agents identified is one node */
	free(got);
}

static void test_empty_store(void **state)
{
	struct fixture *f = *state;
	struct export_counts n;
	char *got = export_string(f->r, EXPORT_JSON, &n);

	assert_string_equal(got, "{\"entities\":[\n],\"relationships\":[\n]}\n");
	assert_int_equal(n.seq, 0);
	free(got);
	got = export_string(f->r, EXPORT_NDJSON, &n);
	assert_string_equal(got, "");
	free(got);
	got = export_string(f->r, EXPORT_DOT, &n);
	assert_string_equal(got, "// tsgraphd export: the stored graph at outbox seq 0\n"
				 "digraph \"tsgraphd\" {\n"
				 "\tgraph [rankdir=LR];\n"
				 "\tnode [shape=box, style=rounded];\n"
				 "}\n");
	free(got);
}

/* A stream that, at its first write, lets the writer commit a sync that drops agent b. */
struct racing {
	struct store *writer;
	int writes;
	struct buf out;
};

static ssize_t racing_write(void *cookie, const char *p, size_t len)
{
	struct racing *rc = cookie;

	if (rc->writes++ == 0)
		sync_graph(rc->writer, false, false);
	return buf_append(&rc->out, p, len) == 0 ? (ssize_t)len : -1;
}

static void test_one_snapshot_while_a_writer_commits(void **state)
{
	struct fixture *f = *state;
	struct racing rc = { .writer = f->w };
	struct export_options opt = { .format = EXPORT_NDJSON, .now = NOW };
	struct export_counts n;
	char err[EXPORT_ERR_MAX];
	FILE *out;
	char *again;

	buf_init(&rc.out, 1u << 20);
	out = fopencookie(&rc, "w", (cookie_io_functions_t){ .write = racing_write });
	assert_non_null(out);
	setvbuf(out, NULL, _IONBF, 0); /* every line reaches racing_write as it is written */
	assert_int_equal(export_write(f->r, &opt, out, &n, err), 0);
	assert_int_equal(fclose(out), 0);
	assert_true(rc.writes > 1);
	/* The writer committed (seq 12 and 13: b's relationship and b) after the first line;
	 * the export is still the graph at seq 11, b and all. */
	assert_string_equal(rc.out.data, want_ndjson);
	assert_int_equal(n.seq, 11);
	buf_free(&rc.out);

	again = export_string(f->r, EXPORT_NDJSON, &n);
	assert_int_equal(n.seq, 13);
	assert_int_equal(n.entities, 3);
	assert_int_equal(n.relationships, 4);
	assert_null(strstr(again, "threatstack:agent:b"));
	assert_non_null(strstr(again, "{\"seq\":13,\"op\":\"create\""));
	free(again);
}

static ssize_t full_write(void *cookie, const char *p, size_t len)
{
	(void)cookie, (void)p, (void)len;
	errno = ENOSPC;
	return -1;
}

static void test_write_error(void **state)
{
	struct fixture *f = *state;
	struct export_options opt = { .format = EXPORT_JSON, .now = NOW };
	char err[EXPORT_ERR_MAX];
	FILE *out = fopencookie(NULL, "w", (cookie_io_functions_t){ .write = full_write });

	assert_non_null(out);
	assert_int_equal(export_write(f->r, &opt, out, NULL, err), -ENOSPC);
	assert_string_equal(err, "cannot write the export: No space left on device");
	fclose(out);
	/* The read transaction was ended: the connection reads again. */
	free(export_string(f->r, EXPORT_DOT, NULL));
}

static void test_stop(void **state)
{
	struct fixture *f = *state;
	volatile sig_atomic_t stop = SIGINT;
	struct export_options opt = { .format = EXPORT_DOT, .now = NOW, .stop = &stop };
	char err[EXPORT_ERR_MAX], *data = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&data, &len);

	assert_int_equal(export_write(f->r, &opt, out, NULL, err), -ECANCELED);
	assert_string_equal(err, "interrupted");
	fclose(out);
	free(data);
}

static int entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

static char *slurp(const char *path)
{
	FILE *fp = fopen(path, "re");
	char *data = NULL;
	size_t cap = 0;
	ssize_t n;

	assert_non_null(fp);
	n = getdelim(&data, &cap, '\0', fp);
	assert_true(n >= 0);
	fclose(fp);
	return data;
}

static void test_to_file(void **state)
{
	struct fixture *f = *state;
	struct export_options opt = { .format = EXPORT_DOT, .now = NOW };
	volatile sig_atomic_t stop = 0;
	struct export_counts n;
	char err[EXPORT_ERR_MAX], out[TESTSTORE_DIR_MAX + 32], missing[TESTSTORE_DIR_MAX + 32];
	struct stat st;
	int before;
	mode_t old;
	char *got;

	snprintf(out, sizeof(out), "%s/graph.dot", f->dir);
	before = entries(f->dir);
	old = umask(022);
	assert_int_equal(export_to_file(f->r, &opt, out, &n, err), 0);
	assert_int_equal(stat(out, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	got = slurp(out);
	assert_string_equal(got, want_dot);
	free(got);
	assert_int_equal(n.seq, 11);
	assert_int_equal(entries(f->dir), before + 1); /* no temporary file left */

	/* Again over it, under umask 077: replaced, 0600. */
	umask(077);
	opt.format = EXPORT_JSON;
	assert_int_equal(export_to_file(f->r, &opt, out, NULL, err), 0);
	assert_int_equal(stat(out, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	got = slurp(out);
	assert_string_equal(got, want_json);
	free(got);

	/* Interrupted: the file stays as it was, and nothing is left beside it. */
	stop = SIGTERM;
	opt.stop = &stop;
	opt.format = EXPORT_NDJSON;
	assert_int_equal(export_to_file(f->r, &opt, out, NULL, err), -ECANCELED);
	got = slurp(out);
	assert_string_equal(got, want_json);
	free(got);
	assert_int_equal(entries(f->dir), before + 1);
	opt.stop = NULL;

	/* A directory that does not exist. */
	snprintf(missing, sizeof(missing), "%s/no/such.json", f->dir);
	assert_int_equal(export_to_file(f->r, &opt, missing, NULL, err), -ENOENT);
	assert_non_null(strstr(err, "cannot create a temporary file beside it"));
	umask(old);
}

/* Stored objects that are not what graph.c writes fail the DOT export with their key. */
static void test_bad_relationship(void **state)
{
	struct fixture *f = *state;
	static const struct object bad = {
		GRAPH_RELATIONSHIP,
		"threatstack:account:o1|has|x",
		"threatstack_account_has_agent",
		"HAS",
		"threatstack:account:o1",
		"threatstack:account:o1",
		false,
		"{\"_class\":\"HAS\",\"_key\":\"threatstack:account:o1|has|x\",\"_type\":"
		"\"threatstack_account_has_agent\"}",
	};
	struct diff_options o = { .source = "poll", .run_id = 2, .now = NOW };
	struct export_options opt = { .format = EXPORT_DOT, .now = NOW };
	struct diff_result res;
	char err[EXPORT_ERR_MAX], *data = NULL;
	size_t len = 0;
	FILE *out;

	assert_int_equal(store_snapshot_reset(f->w), 0);
	stage(f->w, &entities[0]);
	stage(f->w, &bad);
	assert_int_equal(diff_plan(f->w, &o, &res), 0);
	assert_int_equal(store_snapshot_end(f->w), 0);
	assert_int_equal(store_begin(f->w), 0);
	assert_int_equal(diff_apply(f->w, &o, &res), 0);
	assert_int_equal(store_commit(f->w), 0);

	out = open_memstream(&data, &len);
	assert_int_equal(export_write(f->r, &opt, out, NULL, err), -EBADMSG);
	assert_string_equal(
		err, "stored object threatstack:account:o1|has|x: a relationship without its two ends");
	fclose(out);
	free(data);
	/* JSON and NDJSON pass stored objects through as they are. */
	free(export_string(f->r, EXPORT_JSON, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format_names),
		cmocka_unit_test_setup_teardown(test_json, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ndjson, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_store, setup_empty, teardown),
		cmocka_unit_test_setup_teardown(test_one_snapshot_while_a_writer_commits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_to_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_relationship, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
