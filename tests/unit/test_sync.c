/* Unit tests for sync: the engine against build/fake_threatstack (spawned per test on an
 * ephemeral loopback port), asserting through the store what each run wrote: the first sync
 * creates, a no-change sync writes no outbox row, one changed agent is one update, a failed
 * listing deletes nothing of its types, an agent in both status listings counts once from
 * its newer copy, a targeted refresh replaces exactly what its agent owns, an unknown id
 * changes nothing, the cancel handle (before, while listing, in a stalled answer, in a
 * 429 wait, while the apply is written) applies nothing and records "interrupted", and the
 * progress figures match what the API listed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <sqlite3.h>

#include "tsgraphd/cancel.h"
#include "tsgraphd/config.h"
#include "tsgraphd/log.h"
#include "tsgraphd/store.h"
#include "tsgraphd/sync.h"
#include "tsgraphd/tsapi.h"
#include "tsgraphd/util.h"

#include "fake.h"

#define AGENT_KEY   "threatstack:agent:"
#define ALERT_KEY   "threatstack:alert:"
#define WAIT_MAX_MS 10000 /* any wait for the fake or another thread */

static const char *const agent_types[] = {
	"threatstack_agent",
	"threatstack_account_has_agent",
	"threatstack_agent_protects_aws_instance",
	"threatstack_agent_protects_server",
};

static const char *jstr(json_object *o, const char *k)
{
	json_object *v;

	return json_object_object_get_ex(o, k, &v) && json_object_is_type(v, json_type_string)
		       ? json_object_get_string(v)
		       : NULL;
}

/* ---- the engine under test ------------------------------------------------------------- */

struct fx {
	struct fake fake;
	char dir[64];
	struct config c;
	struct store *s;
	struct cancel *cancel;
	struct tsapi_limiter *limiter;
	struct tsapi *api;
	struct sync *sy;
};

static const char *const default_fleet[] = { "--agents",    "50", "--cves", "20", "--alerts", "30",
					     "--page-size", "20", "--seed", "3",  NULL };

static int fx_busy_timeout_ms; /* the next fx_open()'s store: 0 is the default */

/* A fake with extra options, a file store, a client with short delays (reset_max_ms: the
 * longest x-rate-limit-reset wait) and the engine. */
static struct fx *fx_open(const char *const *fleet, uint32_t reset_max_ms)
{
	struct fx *x = calloc(1, sizeof(*x));
	struct store_options so = { .busy_timeout_ms = fx_busy_timeout_ms };
	struct tsapi_options ao = { 0 };
	struct tsapi_error err = { 0 };
	char err_store[STORE_ERR_MAX], path[128];

	assert_non_null(x);
	fake_start(&x->fake, fleet ? fleet : default_fleet);
	snprintf(x->dir, sizeof(x->dir), "/tmp/test_sync_store.XXXXXX");
	assert_non_null(mkdtemp(x->dir));
	snprintf(path, sizeof(path), "%s/state.db", x->dir);
	if (store_open(path, &so, &x->s, err_store) < 0)
		fail_msg("store_open: %s", err_store);
	x->c.file = "test";
	x->c.ts.org_id = FAKE_ORG_ID;
	x->c.ts.org_name = "Fake Org";
	x->c.ts.user_id = FAKE_USER_ID;
	x->c.ts.api_key = FAKE_API_KEY;
	x->c.ts.api_url = x->fake.url;
	x->c.ts.rate_limit = 6000;
	x->c.ts.timeout = 10;
	x->c.ts.alert_days = 7;
	x->c.sync.max_delete_fraction = 0.5;
	assert_int_equal(cancel_new(&x->cancel), 0);
	assert_int_equal(tsapi_limiter_new(6000, 0, &x->limiter), 0);
	ao.limiter = x->limiter;
	ao.cancel = x->cancel;
	ao.max_attempts = 2;
	ao.backoff_base_ms = 5;
	ao.backoff_max_ms = 20;
	ao.reset_max_ms = reset_max_ms ? reset_max_ms : 100;
	if (tsapi_new(&x->c, &ao, &x->api, &err) < 0)
		fail_msg("tsapi_new: %s", err.message);
	assert_int_equal(sync_new(&x->c, x->s, x->api, x->cancel, &x->sy), 0);
	return x;
}

static void fx_close(struct fx *x)
{
	char cmd[128];

	sync_free(x->sy);
	tsapi_free(x->api);
	tsapi_limiter_free(x->limiter);
	cancel_free(x->cancel);
	store_close(x->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", x->dir);
	assert_int_equal(system(cmd), 0);
	fake_stop(&x->fake);
	free(x);
}

static int full(struct fx *x, struct sync_report *rep)
{
	struct sync_options o = { .source = "poll" };

	return sync_full(x->sy, &o, rep);
}

/* ---- what the store holds -------------------------------------------------------------- */

struct row {
	char *op, *key, *type, *source, *changed;
};

struct rows {
	struct row *v;
	size_t n;
};

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static int add_row(const struct outbox_row *r, void *ud)
{
	struct rows *rs = ud;
	struct row *grown = realloc(rs->v, (rs->n + 1) * sizeof(*grown));

	assert_non_null(grown);
	rs->v = grown;
	rs->v[rs->n++] = (struct row){ strdup(r->op), strdup(r->key), strdup(r->type),
				       dup_or_null(r->source), dup_or_null(r->changed) };
	return 0;
}

static void rows_free(struct rows *rs)
{
	for (size_t i = 0; i < rs->n; i++) {
		free(rs->v[i].op);
		free(rs->v[i].key);
		free(rs->v[i].type);
		free(rs->v[i].source);
		free(rs->v[i].changed);
	}
	free(rs->v);
	rs->v = NULL;
	rs->n = 0;
}

/* Outbox rows after seq `after`. */
static void rows_since(struct fx *x, int64_t after, struct rows *rs)
{
	memset(rs, 0, sizeof(*rs));
	assert_int_equal(store_outbox_each(x->s, after, INT64_MAX, add_row, rs), 0);
}

static const struct row *row_find(const struct rows *rs, const char *op, const char *key)
{
	for (size_t i = 0; i < rs->n; i++)
		if (strcmp(rs->v[i].op, op) == 0 && strcmp(rs->v[i].key, key) == 0)
			return &rs->v[i];
	return NULL;
}

static void dump_rows(const struct rows *rs)
{
	for (size_t i = 0; i < rs->n; i++)
		print_message("  %s %s %s %s\n", rs->v[i].op, rs->v[i].type, rs->v[i].key,
			      rs->v[i].changed ? rs->v[i].changed : "");
}

static void expect_row(const struct rows *rs, const char *op, const char *key)
{
	if (!row_find(rs, op, key)) {
		dump_rows(rs);
		fail_msg("no outbox row %s %s", op, key);
	}
}

static void expect_rows(const struct rows *rs, size_t n)
{
	if (rs->n != n) {
		dump_rows(rs);
		fail_msg("%zu outbox rows, want %zu", rs->n, n);
	}
}

static int64_t max_seq(struct fx *x)
{
	int64_t seq = -1;

	assert_int_equal(store_outbox_max_seq(x->s, &seq), 0);
	return seq;
}

/* The stored graph: _key → the object. */
static int add_object(const struct store_row *r, void *ud)
{
	json_object *o = json_tokener_parse(r->json);

	assert_non_null(o);
	json_object_object_add(ud, r->key, o);
	return 0;
}

static json_object *stored(struct fx *x)
{
	json_object *all = json_object_new_object();

	assert_int_equal(store_object_each(x->s, add_object, all), 0);
	return all;
}

/* How many stored keys start with prefix; the last one found in *ret_key (may be NULL). */
static size_t count_prefix(json_object *all, const char *prefix, const char **ret_key)
{
	size_t n = 0, len = strlen(prefix);

	json_object_object_foreach(all, k, v)
	{
		(void)v;
		if (strncmp(k, prefix, len) == 0) {
			n++;
			if (ret_key)
				*ret_key = k;
		}
	}
	return n;
}

static size_t count_type(json_object *all, const char *type)
{
	size_t n = 0;

	json_object_object_foreach(all, k, v)
	{
		const char *t = jstr(v, "_type");

		(void)k;
		n += t && strcmp(t, type) == 0;
	}
	return n;
}

static json_object *agent_obj(json_object *all, const char *id)
{
	char key[256];
	json_object *v = NULL;

	snprintf(key, sizeof(key), AGENT_KEY "%s", id);
	return json_object_object_get_ex(all, key, &v) ? v : NULL;
}

struct run_copy {
	int64_t id;
	char kind[16], result[16], message[SYNC_MSG_MAX];
	int64_t created, updated, deleted, finished;
};

static int copy_run(const struct store_run *r, void *ud)
{
	struct run_copy *rc = ud;

	rc->id = r->id;
	snprintf(rc->kind, sizeof(rc->kind), "%s", r->kind);
	snprintf(rc->result, sizeof(rc->result), "%s", r->result);
	snprintf(rc->message, sizeof(rc->message), "%s", r->message ? r->message : "");
	rc->created = r->created;
	rc->updated = r->updated;
	rc->deleted = r->deleted;
	rc->finished = r->finished;
	return 0;
}

static struct run_copy last_run(struct fx *x)
{
	struct run_copy rc = { 0 };

	assert_int_equal(store_runs_each(x->s, 1, copy_run, &rc), 0);
	assert_true(rc.id > 0);
	return rc;
}

/* The run with this id, as the store has it. */
static int copy_run_id(const struct store_run *r, void *ud)
{
	struct run_copy *rc = ud;

	return r->id == rc->id ? copy_run(r, rc) : 0;
}

static struct run_copy run_by_id(struct fx *x, int64_t id)
{
	struct run_copy rc = { .id = id };

	assert_int_equal(store_runs_each(x->s, 100, copy_run_id, &rc), 0);
	assert_true(rc.kind[0] != '\0');
	return rc;
}

static void expect_run(struct fx *x, const char *kind, const char *result, int64_t created,
		       int64_t updated, int64_t deleted)
{
	struct run_copy rc = last_run(x);

	assert_string_equal(rc.kind, kind);
	assert_string_equal(rc.result, result);
	assert_true(rc.finished > 0);
	assert_int_equal(rc.created, created);
	assert_int_equal(rc.updated, updated);
	assert_int_equal(rc.deleted, deleted);
}

/* ---- what the API lists, through the (separately tested) client ------------------------ */

struct listed {
	json_object *seen; /* agent id → times listed */
	int64_t agents, vulns, servers, alerts;
};

static int count_agent(struct ts_agent *a, void *ud)
{
	struct listed *l = ud;
	json_object *v;

	l->agents++;
	if (json_object_object_get_ex(l->seen, a->id, &v))
		json_object_set_int(v, json_object_get_int(v) + 1);
	else
		json_object_object_add(l->seen, a->id, json_object_new_int(1));
	return 0;
}

static int count_server(struct ts_server *s, void *ud)
{
	(void)s;
	((struct listed *)ud)->servers++;
	return 0;
}

struct vuln_list {
	struct listed *l;
	json_object *deferred; /* CVEs without "agents" */
};

static int count_vuln(struct ts_vuln *v, void *ud)
{
	struct vuln_list *vl = ud;

	vl->l->vulns++;
	if (!v->has_agents)
		json_object_array_add(vl->deferred, json_object_new_string(v->cve));
	return 0;
}

static int count_alert(struct ts_alert *a, void *ud)
{
	(void)a;
	((struct listed *)ud)->alerts++;
	return 0;
}

static void list_api(struct fx *x, struct listed *l)
{
	struct tsapi_error err = { 0 };
	struct vuln_list vl = { .l = l, .deferred = json_object_new_array() };
	int64_t until = now_ms(), from = until - 7 * 86400000LL;

	memset(l, 0, sizeof(*l));
	l->seen = json_object_new_object();
	vl.l = l;
	assert_int_equal(tsapi_list_agents(x->api, "online", count_agent, l, &err), 0);
	assert_int_equal(tsapi_list_agents(x->api, "offline", count_agent, l, &err), 0);
	assert_int_equal(tsapi_list_vulns(x->api, count_vuln, &vl, &err), 0);
	for (size_t i = 0; i < json_object_array_length(vl.deferred); i++)
		assert_int_equal(
			tsapi_list_cve_servers(
				x->api,
				json_object_get_string(json_object_array_get_idx(vl.deferred, i)),
				count_server, l, &err),
			0);
	assert_int_equal(tsapi_list_alerts(x->api, "active", from, until, count_alert, l, &err), 0);
	assert_int_equal(tsapi_list_alerts(x->api, "dismissed", from, until, count_alert, l, &err),
			 0);
	json_object_put(vl.deferred);
}

static bool listed_twice(const struct listed *l, const char *id)
{
	json_object *v;

	return json_object_object_get_ex(l->seen, id, &v) && json_object_get_int(v) == 2;
}

/* The first agent of the truth with the given status (NULL: any), on EC2 or not, listed
 * once, and not `other`. */
static const char *pick_agent(json_object *truth, const struct listed *l, const char *status,
			      bool ec2, const char *other)
{
	json_object *agents = NULL;

	assert_true(json_object_object_get_ex(truth, "agents", &agents));
	for (size_t i = 0; i < json_object_array_length(agents); i++) {
		json_object *a = json_object_array_get_idx(agents, i);
		const char *id = jstr(a, "id"), *st = jstr(a, "status");

		if ((status && strcmp(st, status) != 0) || (jstr(a, "instanceId") != NULL) != ec2 ||
		    listed_twice(l, id) || (other && strcmp(id, other) == 0))
			continue;
		return id;
	}
	fail_msg("no %s agent%s in the fleet", status ? status : "", ec2 ? " on EC2" : "");
	return NULL;
}

/* The one PROTECTS key stored for an agent (asserting there is exactly one). */
static char *protects_key(json_object *all, const char *id)
{
	char prefix[256];
	const char *key = NULL;
	size_t n;

	snprintf(prefix, sizeof(prefix), AGENT_KEY "%s|protects|", id);
	n = count_prefix(all, prefix, &key);
	if (n != 1)
		fail_msg("agent %s has %zu PROTECTS relationships, want 1", id, n);
	return strdup(key);
}

/* ---- tests ----------------------------------------------------------------------------- */

/* The first sync creates the whole graph, one outbox row per object; a second sync of the
 * same fleet stages nothing, plans nothing and writes no outbox row. */
static void test_first_then_noop(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_report rep;
	struct listed l;
	struct rows rs;
	json_object *all, *truth;
	int64_t seq, staged = -1;

	(void)state;
	assert_int_equal(full(x, &rep), 0);
	assert_true(rep.run_id > 0);
	assert_false(rep.interrupted);
	assert_int_equal(rep.failed_listings, 0);
	assert_string_equal(rep.message, "");
	assert_true(rep.diff.created > 50);
	assert_int_equal(rep.diff.updated, 0);
	assert_int_equal(rep.diff.deleted, 0);
	rows_since(x, 0, &rs);
	assert_int_equal((int64_t)rs.n, rep.diff.created);
	for (size_t i = 0; i < rs.n; i++) {
		assert_string_equal(rs.v[i].op, "create");
		assert_string_equal(rs.v[i].source, "poll");
	}
	all = stored(x);
	assert_int_equal((int64_t)json_object_object_length(all), rep.diff.created);
	truth = fake_control(&x->fake, "/_fake/fleet", NULL);
	list_api(x, &l);
	/* every agent once, each with its HAS and at most one PROTECTS */
	assert_int_equal(count_type(all, "threatstack_agent"), json_object_object_length(l.seen));
	assert_int_equal(count_type(all, "threatstack_account_has_agent"),
			 json_object_object_length(l.seen));
	assert_int_equal(count_type(all, "threatstack_agent_protects_aws_instance") +
				 count_type(all, "threatstack_agent_protects_server"),
			 json_object_object_length(l.seen));
	assert_int_equal(count_type(all, "threatstack_alert"), l.alerts);
	assert_int_equal(count_type(all, "threatstack_account"), 1);
	expect_run(x, "full", "ok", rep.diff.created, 0, 0);
	rows_free(&rs);
	json_object_put(all);

	seq = max_seq(x);
	assert_int_equal(full(x, &rep), 0);
	assert_int_equal(rep.diff.planned, 0);
	assert_int_equal(rep.diff.created + rep.diff.updated + rep.diff.deleted, 0);
	assert_int_equal(store_snapshot_count(x->s, &staged), 0);
	assert_int_equal(staged, 0); /* nothing differed, nothing written to the snapshot */
	assert_int_equal(max_seq(x), seq);
	expect_run(x, "full", "ok", 0, 0, 0);
	json_object_put(truth);
	json_object_put(l.seen);
	fx_close(x);
}

/* One agent changed in the fleet (a tag, then its status) is exactly one update each time,
 * naming what changed. */
static void test_agent_changed(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_report rep;
	struct listed l;
	struct rows rs;
	json_object *truth;
	const char *id;
	char key[256];
	int64_t seq;

	(void)state;
	assert_int_equal(full(x, &rep), 0);
	truth = fake_control(&x->fake, "/_fake/fleet", NULL);
	list_api(x, &l);
	id = pick_agent(truth, &l, "online", true, NULL);
	snprintf(key, sizeof(key), AGENT_KEY "%s", id);

	seq = max_seq(x);
	fake_fleet(&x->fake,
		   "{\"op\":\"tag_set\",\"id\":\"%s\",\"key\":\"team\",\"value\":\"blue\"}", id);
	assert_int_equal(full(x, &rep), 0);
	rows_since(x, seq, &rs);
	expect_rows(&rs, 1);
	expect_row(&rs, "update", key);
	assert_non_null(rs.v[0].changed);
	assert_non_null(strstr(rs.v[0].changed, "team"));
	expect_run(x, "full", "ok", 0, 1, 0);
	rows_free(&rs);

	seq = max_seq(x);
	fake_fleet(&x->fake, "{\"op\":\"agent_offline\",\"id\":\"%s\"}", id);
	assert_int_equal(full(x, &rep), 0);
	rows_since(x, seq, &rs);
	expect_rows(&rs, 1);
	expect_row(&rs, "update", key);
	assert_non_null(strstr(rs.v[0].changed, "\"status\""));
	assert_non_null(strstr(rs.v[0].changed, "\"active\""));
	rows_free(&rs);
	json_object_put(truth);
	json_object_put(l.seen);
	fx_close(x);
}

/* The agents listing fails after its retries: nothing of the agent types is deleted (the
 * removed agent stays), the other listings still commit (a new alert), the run is "partial"
 * and sync_full says -EAGAIN. */
static void test_failed_listing(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_report rep;
	struct listed l;
	struct rows rs;
	json_object *truth, *added, *all;
	const char *gone;
	char key[256], alert_key[256];
	int64_t seq;

	(void)state;
	assert_int_equal(full(x, &rep), 0);
	truth = fake_control(&x->fake, "/_fake/fleet", NULL);
	list_api(x, &l);
	gone = pick_agent(truth, &l, "offline", true, NULL);
	snprintf(key, sizeof(key), AGENT_KEY "%s", gone);
	fake_fleet(&x->fake, "{\"op\":\"agent_remove\",\"id\":\"%s\"}", gone);
	added = fake_control(&x->fake, "/_fake/fleet", "{\"op\":\"alert_add\",\"agent\":null}");
	snprintf(alert_key, sizeof(alert_key), ALERT_KEY "%s", jstr(added, "id"));
	/* every try of the agents listing fails */
	fake_fault(&x->fake, "{\"kind\":\"500\",\"count\":10,\"path\":\"/v2/agents\"}");

	seq = max_seq(x);
	assert_int_equal(full(x, &rep), -EAGAIN);
	assert_int_equal(rep.failed_listings, 1);
	assert_non_null(strstr(rep.message, "agents"));
	assert_false(rep.interrupted);
	rows_since(x, seq, &rs);
	for (size_t i = 0; i < rs.n; i++)
		for (size_t t = 0; t < ARRAY_SIZE(agent_types); t++)
			if (strcmp(rs.v[i].op, "delete") == 0 &&
			    strcmp(rs.v[i].type, agent_types[t]) == 0)
				fail_msg("a failed agents listing deleted %s", rs.v[i].key);
	expect_row(&rs, "create", alert_key);
	all = stored(x);
	assert_non_null(agent_obj(all, gone));
	{
		struct run_copy rc = last_run(x);

		assert_string_equal(rc.result, "partial");
		assert_non_null(strstr(rc.message, "agents"));
		assert_true(rc.created >= 1);
	}
	rows_free(&rs);
	json_object_put(all);

	/* the listing back: the removed agent goes, with what it owned */
	seq = max_seq(x);
	json_object_put(fake_control(&x->fake, "/_fake/fault", "{\"kind\":\"clear\"}"));
	assert_int_equal(full(x, &rep), 0);
	rows_since(x, seq, &rs);
	expect_row(&rs, "delete", key);
	assert_int_equal(rep.diff.created, 0);
	assert_int_equal(rep.diff.updated, 0);
	rows_free(&rs);
	json_object_put(added);
	json_object_put(truth);
	json_object_put(l.seen);
	fx_close(x);
}

/* The fake lists some agents under both statuses (the other copy two hours older): each is
 * one agent entity with the newer copy's status and one set of relationships. When the
 * copies differ in instanceId or hostname (an agent that moved, still listed with its old
 * copy), only the newer copy's PROTECTS is kept, whichever listing comes first. */
static void test_dual_agents(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_report rep;
	struct listed l;
	struct rows rs;
	json_object *truth, *agents, *all;
	const char *on, *off;
	char *on_old, *off_old, key[256];
	size_t duals = 0;
	int64_t seq;

	(void)state;
	assert_int_equal(full(x, &rep), 0);
	truth = fake_control(&x->fake, "/_fake/fleet", NULL);
	list_api(x, &l);
	all = stored(x);
	assert_true(json_object_object_get_ex(truth, "agents", &agents));
	for (size_t i = 0; i < json_object_array_length(agents); i++) {
		json_object *a = json_object_array_get_idx(agents, i), *ent;
		const char *id = jstr(a, "id");

		if (!listed_twice(&l, id))
			continue;
		duals++;
		ent = agent_obj(all, id);
		assert_non_null(ent);
		assert_string_equal(jstr(ent, "status"), jstr(a, "status"));
		{
			json_object *lr = NULL;
			int64_t ms = 0;

			assert_int_equal(parse_iso8601_ms(jstr(a, "lastReportedAt"), &ms), 0);
			assert_true(json_object_object_get_ex(ent, "lastReportedAt", &lr));
			assert_int_equal(json_object_get_int64(lr), ms);
		}
		free(protects_key(all, id));
	}
	assert_true(duals >= 2); /* the fleet has them: the test means something */
	json_object_put(all);

	/* two agents move to new instances; the other status keeps listing the old copy */
	on = pick_agent(truth, &l, "online", true, NULL);
	off = pick_agent(truth, &l, "offline", true, NULL);
	all = stored(x);
	on_old = protects_key(all, on);
	off_old = protects_key(all, off);
	json_object_put(all);
	fake_fleet(&x->fake,
		   "{\"op\":\"agent_set\",\"id\":\"%s\",\"instanceId\":\"i-0aaaaaaaaaaaaaaa1\","
		   "\"dual\":true}",
		   on);
	fake_fleet(&x->fake,
		   "{\"op\":\"agent_set\",\"id\":\"%s\",\"instanceId\":\"i-0bbbbbbbbbbbbbbb2\","
		   "\"dual\":true}",
		   off);
	seq = max_seq(x);
	assert_int_equal(full(x, &rep), 0);
	rows_since(x, seq, &rs);
	expect_rows(&rs, 6);
	snprintf(key, sizeof(key), AGENT_KEY "%s", on);
	expect_row(&rs, "update", key);
	snprintf(key, sizeof(key), AGENT_KEY "%s|protects|aws_instance:i-0aaaaaaaaaaaaaaa1", on);
	expect_row(&rs, "create", key);
	expect_row(&rs, "delete", on_old);
	snprintf(key, sizeof(key), AGENT_KEY "%s", off);
	expect_row(&rs, "update", key);
	snprintf(key, sizeof(key), AGENT_KEY "%s|protects|aws_instance:i-0bbbbbbbbbbbbbbb2", off);
	expect_row(&rs, "create", key);
	expect_row(&rs, "delete", off_old);
	rows_free(&rs);
	all = stored(x);
	assert_string_equal(jstr(agent_obj(all, on), "status"), "online");
	assert_string_equal(jstr(agent_obj(all, off), "status"), "offline");
	assert_string_equal(jstr(agent_obj(all, off), "instanceId"), "i-0bbbbbbbbbbbbbbb2");
	free(protects_key(all, on));
	free(protects_key(all, off));
	json_object_put(all);

	/* and it stays settled: the same listings again change nothing */
	seq = max_seq(x);
	assert_int_equal(full(x, &rep), 0);
	assert_int_equal(max_seq(x), seq);
	free(on_old);
	free(off_old);
	json_object_put(truth);
	json_object_put(l.seen);
	fx_close(x);
}

static int refresh(struct fx *x, const char *alert, const char *a1, const char *a2,
		   struct sync_report *rep)
{
	struct sync_options o = { .source = "webhook" };
	const char *agents[2] = { a1, a2 };

	return sync_refresh(x->sy, alert ? &alert : NULL, alert ? 1 : 0, agents,
			    a2	 ? 2
			    : a1 ? 1
				 : 0,
			    &o, rep);
}

/* A refresh of two agents, one moved to another instance and one renamed (off EC2): each
 * old PROTECTS goes, each new one comes, the agents update, and nothing else is touched
 * (another agent changed in the fleet meanwhile waits for the next full sync). */
static void test_refresh_agent_moved(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_report rep;
	struct listed l;
	struct rows rs;
	json_object *truth, *all;
	const char *ec2, *host, *other;
	char *ec2_old, *host_old, key[256];
	int64_t seq, listings;

	(void)state;
	assert_int_equal(full(x, &rep), 0);
	truth = fake_control(&x->fake, "/_fake/fleet", NULL);
	list_api(x, &l);
	ec2 = pick_agent(truth, &l, NULL, true, NULL);
	host = pick_agent(truth, &l, NULL, false, NULL);
	other = pick_agent(truth, &l, "online", true, ec2);
	all = stored(x);
	ec2_old = protects_key(all, ec2);
	host_old = protects_key(all, host);
	json_object_put(all);
	fake_fleet(&x->fake,
		   "{\"op\":\"agent_set\",\"id\":\"%s\",\"instanceId\":\"i-0ccccccccccccccc3\"}",
		   ec2);
	fake_fleet(&x->fake,
		   "{\"op\":\"agent_set\",\"id\":\"%s\",\"hostname\":\"Renamed.Example.COM\"}",
		   host);
	fake_fleet(&x->fake,
		   "{\"op\":\"tag_set\",\"id\":\"%s\",\"key\":\"team\",\"value\":\"red\"}", other);

	seq = max_seq(x);
	listings = fake_stat(&x->fake, "by_path", "/v2/agents");
	assert_int_equal(refresh(x, NULL, ec2, host, &rep), 0);
	assert_int_equal(fake_stat(&x->fake, "by_path", "/v2/agents"), listings); /* GETs only */
	rows_since(x, seq, &rs);
	expect_rows(&rs, 6);
	for (size_t i = 0; i < rs.n; i++)
		assert_string_equal(rs.v[i].source, "webhook");
	snprintf(key, sizeof(key), AGENT_KEY "%s", ec2);
	expect_row(&rs, "update", key);
	snprintf(key, sizeof(key), AGENT_KEY "%s|protects|aws_instance:i-0ccccccccccccccc3", ec2);
	expect_row(&rs, "create", key);
	expect_row(&rs, "delete", ec2_old);
	snprintf(key, sizeof(key), AGENT_KEY "%s", host);
	expect_row(&rs, "update", key);
	snprintf(key, sizeof(key), AGENT_KEY "%s|protects|host:renamed", host);
	expect_row(&rs, "create", key);
	expect_row(&rs, "delete", host_old);
	expect_run(x, "refresh", "ok", 2, 2, 2);
	rows_free(&rs);
	all = stored(x);
	free(protects_key(all, ec2));
	free(protects_key(all, host));
	json_object_put(all);

	/* the untouched agent's change is the next full sync's: exactly it */
	seq = max_seq(x);
	assert_int_equal(full(x, &rep), 0);
	rows_since(x, seq, &rs);
	expect_rows(&rs, 1);
	snprintf(key, sizeof(key), AGENT_KEY "%s", other);
	expect_row(&rs, "update", key);
	rows_free(&rs);
	free(ec2_old);
	free(host_old);
	json_object_put(truth);
	json_object_put(l.seen);
	fx_close(x);
}

/* A refresh of an alert id confirms the alert (new here) and refreshes its agent (changed
 * here): the alert, its IDENTIFIED relationship and the agent's update, and nothing else;
 * then a dismissal of a known alert is one update. */
static void test_refresh_alert(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_report rep;
	struct listed l;
	struct rows rs;
	json_object *truth, *added, *alerts;
	const char *agent, *old_alert = NULL;
	char key[256], alert_key[256];
	int64_t seq, gets;

	(void)state;
	assert_int_equal(full(x, &rep), 0);
	truth = fake_control(&x->fake, "/_fake/fleet", NULL);
	list_api(x, &l);
	agent = pick_agent(truth, &l, "online", true, NULL);
	{
		char body[256];

		snprintf(body, sizeof(body), "{\"op\":\"alert_add\",\"agent\":\"%s\"}", agent);
		added = fake_control(&x->fake, "/_fake/fleet", body);
	}
	fake_fleet(&x->fake,
		   "{\"op\":\"tag_set\",\"id\":\"%s\",\"key\":\"team\",\"value\":\"green\"}",
		   agent);
	snprintf(alert_key, sizeof(alert_key), ALERT_KEY "%s", jstr(added, "id"));

	seq = max_seq(x);
	gets = fake_stat(&x->fake, "by_path", "/v2/agents/{id}");
	assert_int_equal(refresh(x, jstr(added, "id"), NULL, NULL, &rep), 0);
	assert_int_equal(fake_stat(&x->fake, "by_path", "/v2/agents/{id}"), gets + 1);
	rows_since(x, seq, &rs);
	expect_rows(&rs, 3);
	expect_row(&rs, "create", alert_key);
	snprintf(key, sizeof(key), AGENT_KEY "%s", agent);
	expect_row(&rs, "update", key);
	assert_non_null(strstr(row_find(&rs, "update", key)->changed, "team"));
	assert_int_equal(rs.v[0].source[0], 'w');
	expect_run(x, "refresh", "ok", 2, 1, 0);
	rows_free(&rs);

	/* a known alert, dismissed: one update */
	assert_true(json_object_object_get_ex(truth, "alerts", &alerts));
	for (size_t i = 0; i < json_object_array_length(alerts) && !old_alert; i++) {
		json_object *a = json_object_array_get_idx(alerts, i), *d = NULL;

		if (!json_object_object_get_ex(a, "isDismissed", &d) || !json_object_get_boolean(d))
			old_alert = jstr(a, "id");
	}
	assert_non_null(old_alert);
	snprintf(alert_key, sizeof(alert_key), ALERT_KEY "%s", old_alert);
	fake_fleet(&x->fake, "{\"op\":\"alert_dismiss\",\"id\":\"%s\"}", old_alert);
	seq = max_seq(x);
	assert_int_equal(refresh(x, old_alert, NULL, NULL, &rep), 0);
	rows_since(x, seq, &rs);
	expect_rows(&rs, 1);
	expect_row(&rs, "update", alert_key);
	assert_non_null(strstr(rs.v[0].changed, "dismissed"));
	rows_free(&rs);
	json_object_put(added);
	json_object_put(truth);
	json_object_put(l.seen);
	fx_close(x);
}

/* Ids Threat Stack does not know (404), even one that is stored (an agent removed since):
 * nothing changes, the stored agent stays for the next full sync to judge. */
static void test_refresh_unknown(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_report rep;
	struct listed l;
	json_object *truth, *before, *after;
	const char *gone;
	int64_t seq;

	(void)state;
	assert_int_equal(full(x, &rep), 0);
	truth = fake_control(&x->fake, "/_fake/fleet", NULL);
	list_api(x, &l);
	gone = pick_agent(truth, &l, "online", true, NULL);
	fake_fleet(&x->fake, "{\"op\":\"agent_remove\",\"id\":\"%s\"}", gone);
	before = stored(x);
	seq = max_seq(x);
	assert_int_equal(refresh(x, "no-such-alert", "no-such-agent", gone, &rep), 0);
	assert_int_equal(rep.failed_listings, 0);
	assert_int_equal(rep.diff.planned, 0);
	assert_int_equal(max_seq(x), seq);
	after = stored(x);
	assert_true(json_object_equal(before, after));
	assert_non_null(agent_obj(after, gone));
	expect_run(x, "refresh", "ok", 0, 0, 0);
	json_object_put(before);
	json_object_put(after);
	json_object_put(truth);
	json_object_put(l.seen);
	fx_close(x);
}

struct outcomes {
	char id[8][64];
	int result[8];
	size_t n;
};

static void note_outcome(const char *id, int result, void *ud)
{
	struct outcomes *o = ud;

	if (o->n < 8) {
		snprintf(o->id[o->n], sizeof(o->id[0]), "%s", id);
		o->result[o->n++] = result;
	}
}

/* Each named alert's outcome is reported (fetched, unknown, failed), and an agent that
 * several alerts of the run name is fetched once. */
static void test_refresh_outcomes(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct outcomes out = { 0 };
	struct sync_options o = { .source = "webhook", .on_alert = note_outcome, .userdata = &out };
	struct sync_report rep;
	struct listed l;
	json_object *truth, *a1, *a2, *a3;
	const char *agent, *ids[4];
	char body[256], fault[256];
	int64_t gets;

	(void)state;
	assert_int_equal(full(x, &rep), 0);
	truth = fake_control(&x->fake, "/_fake/fleet", NULL);
	list_api(x, &l);
	agent = pick_agent(truth, &l, "online", true, NULL);
	snprintf(body, sizeof(body), "{\"op\":\"alert_add\",\"agent\":\"%s\"}", agent);
	a1 = fake_control(&x->fake, "/_fake/fleet", body);
	a2 = fake_control(&x->fake, "/_fake/fleet", body);
	a3 = fake_control(&x->fake, "/_fake/fleet", body);
	ids[0] = jstr(a1, "id");
	ids[1] = "no-such-alert";
	ids[2] = jstr(a2, "id");
	ids[3] = jstr(a3, "id");
	snprintf(fault, sizeof(fault), "{\"kind\":\"500\",\"count\":2,\"path\":\"/v2/alerts/%s\"}",
		 ids[3]);
	fake_fault(&x->fake, fault);
	gets = fake_stat(&x->fake, "by_path", "/v2/agents/{id}");
	assert_int_equal(sync_refresh(x->sy, ids, 4, &agent, 1, &o, &rep), -EAGAIN);
	assert_int_equal(fake_stat(&x->fake, "by_path", "/v2/agents/{id}"), gets + 1);
	assert_int_equal(out.n, 4);
	for (size_t i = 0; i < 4; i++)
		assert_string_equal(out.id[i], ids[i]);
	assert_int_equal(out.result[0], 0);
	assert_int_equal(out.result[1], -ENOENT);
	assert_int_equal(out.result[2], 0);
	assert_int_equal(out.result[3], -EIO);
	assert_int_equal(rep.diff.created, 4); /* two alerts, two IDENTIFIED */
	json_object_put(a1);
	json_object_put(a2);
	json_object_put(a3);
	json_object_put(truth);
	json_object_put(l.seen);
	fx_close(x);
}

/* Nothing applied and the run "interrupted": the store as `objects` and `seq` say. */
static void expect_interrupted(struct fx *x, int r, const struct sync_report *rep, size_t objects,
			       int64_t seq)
{
	json_object *all = stored(x);

	assert_int_equal(r, -ECANCELED);
	assert_true(rep->interrupted);
	assert_int_equal(rep->diff.created + rep->diff.updated + rep->diff.deleted, 0);
	assert_int_equal(json_object_object_length(all), objects);
	assert_int_equal(max_seq(x), seq);
	expect_run(x, "full", "interrupted", 0, 0, 0);
	json_object_put(all);
}

/* Fired before the run: not one API request, nothing applied. */
static void test_cancel_before(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_report rep;

	(void)state;
	cancel_fire(x->cancel);
	expect_interrupted(x, full(x, &rep), &rep, 0, 0);
	assert_int_equal(fake_stat(&x->fake, "by_path", "/v2/agents"), 0);
	fx_close(x);
}

static void fire_at_vulns(const struct sync_progress *p, void *ud)
{
	struct fx *x = ud;

	if (strcmp(p->listing, "vulnerabilities") == 0)
		cancel_fire(x->cancel);
}

/* Fired while listing (the agents staged, a change to every one of them): nothing applied. */
static void test_cancel_while_listing(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_options o = { .on_progress = fire_at_vulns };
	struct sync_report rep;
	size_t objects;
	int64_t seq, alerts;

	(void)state;
	assert_int_equal(full(x, &rep), 0);
	alerts = fake_stat(&x->fake, "by_path", "/v2/alerts");
	{
		json_object *all = stored(x);

		objects = json_object_object_length(all);
		json_object_put(all);
	}
	seq = max_seq(x);
	fake_fleet(&x->fake, "{\"op\":\"agent_add\"}");
	o.progress_userdata = x;
	expect_interrupted(x, sync_full(x->sy, &o, &rep), &rep, objects, seq);
	assert_non_null(strstr(rep.message, "interrupted"));
	assert_int_equal(fake_stat(&x->fake, "by_path", "/v2/alerts"),
			 alerts); /* it stopped listing */
	fx_close(x);
}

/* A thread that fires the handle once the fake has received `count` requests to `path`. */
struct firer {
	struct fx *x;
	const char *path;
	int64_t count;
	int64_t fired_ms;
	pthread_t thread;
};

static void *fire_when(void *ud)
{
	struct firer *f = ud;

	for (int i = 0; i < WAIT_MAX_MS / 10; i++) {
		if (fake_stat(&f->x->fake, "by_path", f->path) >= f->count) {
			fake_sleep_ms(50); /* let the answer reach the client: the wait begins */
			f->fired_ms = monotonic_ms();
			cancel_fire(f->x->cancel);
			return NULL;
		}
		fake_sleep_ms(10);
	}
	f->fired_ms = monotonic_ms();
	cancel_fire(f->x->cancel); /* the sync will not pass the check below */
	return NULL;
}

/* Fired from another thread while the engine waits, in a first sync: the sync returns
 * within a second or so, not after the server's minute. */
static void cancel_in_wait(const char *fault_json, const char *path, uint32_t reset_max_ms)
{
	struct fx *x = fx_open(NULL, reset_max_ms);
	struct firer f = { .x = x, .path = path, .count = 1 };
	struct sync_report rep;
	int64_t returned;
	int r;

	fake_fault(&x->fake, fault_json);
	assert_int_equal(pthread_create(&f.thread, NULL, fire_when, &f), 0);
	r = full(x, &rep);
	returned = monotonic_ms();
	assert_int_equal(pthread_join(f.thread, NULL), 0);
	if (returned - f.fired_ms > 1500)
		fail_msg("sync_full returned %" PRId64 " ms after the cancel",
			 returned - f.fired_ms);
	expect_interrupted(x, r, &rep, 0, 0);
	assert_int_equal(fake_stat(&x->fake, "by_path", path), 1); /* no retry after the cancel */
	fx_close(x);
}

static void test_cancel_in_stalled_answer(void **state)
{
	(void)state;
	cancel_in_wait("{\"kind\":\"slow\",\"ms\":60000,\"path\":\"/v2/vulnerabilities\"}",
		       "/v2/vulnerabilities", 0);
}

static void test_cancel_in_429_wait(void **state)
{
	(void)state;
	cancel_in_wait("{\"kind\":\"429\",\"ms\":300000,\"path\":\"/v2/agents\"}", "/v2/agents",
		       300000);
}

static int fire_on_change(const struct outbox_row *r, void *ud)
{
	(void)r;
	cancel_fire(ud);
	return 0;
}

/* Fired while the apply is written (the changes in the transaction, not committed): it
 * rolls back and nothing is applied. */
static void test_cancel_during_apply(void **state)
{
	struct fx *x = fx_open(NULL, 0);
	struct sync_options o = { .on_change = fire_on_change };
	struct sync_report rep;

	(void)state;
	o.userdata = x->cancel;
	expect_interrupted(x, sync_full(x->sy, &o, &rep), &rep, 0, 0);
	fx_close(x);
}

/* When the apply begins, another connection takes the store's write lock (and keeps it). */
static void lock_at_apply(const struct sync_progress *p, void *ud)
{
	sqlite3 *db = ud;

	if (p->running && strcmp(p->listing, "apply") == 0 && sqlite3_get_autocommit(db))
		assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
}

/* The store refuses a run's end (another connection holds the write lock past the busy
 * timeout): the run is not left "running" for the process's life; its end is written when
 * the next run begins, by the context that replaced this one (a reload). */
static void test_run_recorded_late(void **state)
{
	struct sync_options o = { .on_progress = lock_at_apply };
	struct sync_report rep;
	struct run_copy refused, after;
	struct sync *next = NULL;
	char path[128];
	sqlite3 *db = NULL;
	struct fx *x;

	(void)state;
	fx_busy_timeout_ms = 100;
	x = fx_open(NULL, 0);
	fx_busy_timeout_ms = 0;
	assert_int_equal(full(x, &rep), 0);
	snprintf(path, sizeof(path), "%s/state.db", x->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	o.progress_userdata = db;
	assert_true(sync_full(x->sy, &o, &rep) < 0);
	refused = run_by_id(x, rep.run_id);
	assert_string_equal(refused.result, "running"); /* the store refused its end */
	assert_int_equal(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	/* a reload builds a new context on the same store: the pending end goes with it */
	assert_int_equal(sync_new(&x->c, x->s, x->api, x->cancel, &next), 0);
	sync_take_unrecorded(next, x->sy);
	sync_free(x->sy);
	x->sy = next;

	assert_int_equal(full(x, &rep), 0);
	after = run_by_id(x, refused.id);
	assert_string_equal(after.result, "failed");
	assert_true(after.finished > 0);
	assert_non_null(strstr(after.message, "store"));
	expect_run(x, "full", "ok", 0, 0, 0);
	fx_close(x);
}

struct seen_listing {
	char listing[32];
	int64_t expected, total;
};

struct progress_log {
	struct seen_listing v[16];
	size_t n;
};

/* Keeps the figures at the start of each listing. */
static void log_progress(const struct sync_progress *p, void *ud)
{
	struct progress_log *pl = ud;

	if (!p->running || (pl->n && strcmp(pl->v[pl->n - 1].listing, p->listing) == 0))
		return;
	assert_true(pl->n < ARRAY_SIZE(pl->v));
	snprintf(pl->v[pl->n].listing, sizeof(pl->v[0].listing), "%s", p->listing);
	pl->v[pl->n].expected = p->expected;
	pl->v[pl->n].total = p->total;
	assert_int_equal(p->objects, 0);
	pl->n++;
}

/* The listings in order, what the store expected of each, and the objects counted match
 * what the API lists: agents with their duplicates, CVEs, servers, alerts. */
static void test_progress(void **state)
{
	static const char *const order[] = { "agents", "vulnerabilities", "alerts", "plan",
					     "apply" };
	struct fx *x = fx_open(NULL, 0);
	struct progress_log pl = { 0 };
	struct sync_options o = { .on_progress = log_progress, .progress_userdata = &pl };
	struct sync_progress p;
	struct sync_report rep;
	struct listed l;

	(void)state;
	sync_progress(x->sy, &p);
	assert_false(p.running);
	list_api(x, &l);
	for (int round = 0; round < 2; round++) {
		memset(&pl, 0, sizeof(pl));
		assert_int_equal(sync_full(x->sy, &o, &rep), 0);
		assert_int_equal(pl.n, ARRAY_SIZE(order));
		for (size_t i = 0; i < pl.n; i++)
			assert_string_equal(pl.v[i].listing, order[i]);
		/* the store's count of the listing's type: nothing, then every agent */
		assert_int_equal(pl.v[0].expected,
				 round ? (int64_t)json_object_object_length(l.seen) : 0);
		assert_int_equal(pl.v[0].total, 0);
		assert_int_equal(pl.v[1].total, l.agents);
		assert_int_equal(pl.v[2].total, l.agents + l.vulns + l.servers);
		assert_int_equal(pl.v[3].total, l.agents + l.vulns + l.servers + l.alerts);
		sync_progress(x->sy, &p);
		assert_false(p.running);
		assert_string_equal(p.listing, "apply");
		assert_int_equal(p.total, l.agents + l.vulns + l.servers + l.alerts);
		assert_true(p.started_ms > 0 && p.listing_ms >= p.started_ms);
	}
	assert_true(l.agents > (int64_t)json_object_object_length(l.seen)); /* duplicates */
	assert_true(l.servers > 0);
	json_object_put(l.seen);
	fx_close(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_then_noop),
		cmocka_unit_test(test_agent_changed),
		cmocka_unit_test(test_failed_listing),
		cmocka_unit_test(test_dual_agents),
		cmocka_unit_test(test_refresh_agent_moved),
		cmocka_unit_test(test_refresh_alert),
		cmocka_unit_test(test_refresh_unknown),
		cmocka_unit_test(test_refresh_outcomes),
		cmocka_unit_test(test_cancel_before),
		cmocka_unit_test(test_cancel_while_listing),
		cmocka_unit_test(test_cancel_in_stalled_answer),
		cmocka_unit_test(test_cancel_in_429_wait),
		cmocka_unit_test(test_cancel_during_apply),
		cmocka_unit_test(test_progress),
		cmocka_unit_test(test_run_recorded_late),
	};

	signal(SIGPIPE, SIG_IGN);
	log_init(STDERR_FILENO, LOG_LEVEL_WARNING);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
