/* Unit tests for store and diff: the SQL diff (creates, updates with changed properties,
 * deletes only for complete types, cascades, dangling relationships, duplicate keys by rank),
 * the mass-delete guard, dry runs, and refusing files that are not ours. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tsgraphd/canon.h"
#include "tsgraphd/diff.h"
#include "tsgraphd/store.h"

struct fixture {
	char dir[64];
	char path[128];
	struct store *s;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct store_options so = { .synchronous_full = true };
	char err[STORE_ERR_MAX];

	snprintf(f->dir, sizeof(f->dir), "/tmp/tsgraphd-store-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/state.db", f->dir);
	if (store_open(f->path, &so, &f->s, err) < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

/* The first column of the first row sql gives on the store file at path, -1 without one. */
static int64_t file_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *st = NULL;
	int64_t n = -1;

	if (sqlite3_open(path, &db) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		n = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	sqlite3_close(db);
	return n;
}

/* The per-type counts the apply keeps (type_count) against the graph itself: 0 when every
 * type's count is exact. */
#define TYPE_COUNTS_OFF                                              \
	"SELECT (SELECT count(*) FROM type_count t WHERE t.n !="     \
	"  (SELECT count(*) FROM object o WHERE o.type = t.type)) +" \
	" (SELECT count(*) FROM (SELECT DISTINCT type FROM object)"  \
	"  WHERE type NOT IN (SELECT type FROM type_count))"
/* How many stored relationships name an end entity that is not stored. */
#define DANGLING                                                             \
	"SELECT count(*) FROM object r WHERE r.kind = 'relationship'"        \
	" AND (NOT EXISTS (SELECT 1 FROM object e WHERE e.key = r.from_key)" \
	"  OR (r.to_key IS NOT NULL AND NOT EXISTS"                          \
	"   (SELECT 1 FROM object e WHERE e.key = r.to_key)))"

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];
	int64_t off;

	store_close(f->s);
	off = file_int(f->path, TYPE_COUNTS_OFF);
	if (off != 0) {
		fprintf(stderr, "type_count differs from the graph for %" PRId64 " types\n", off);
		return -1;
	}
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* Stages an entity {_key,_type,_class,status}, an explicit relationship (from and to) or a
 * mapped one (from only). */
static const char *rel_owner; /* the owner of the relationships put() stages; NULL: none */

static void put(struct store *s, const char *key, const char *type, const char *status,
		const char *from, const char *to, int64_t rank)
{
	json_object *o = json_object_new_object();
	struct graph_object g = {
		.kind = from ? GRAPH_RELATIONSHIP : GRAPH_ENTITY,
		.key = key,
		.type = type,
		.class = from ? "HAS" : "HostAgent",
		.from_key = from,
		.to_key = to,
		.mapped = from && !to,
		.owner = from ? rel_owner : key, /* entities own themselves, as agents do */
		.rank = rank,
	};
	char hash[CANON_HASH_HEX + 1];
	bool take = true;
	struct buf b;

	if (g.owner && !from)
		assert_int_equal(store_snapshot_owner(s, key, rank, &take), 0);
	if (!take) {
		json_object_put(o);
		return;
	}

	json_object_object_add(o, "_key", json_object_new_string(key));
	json_object_object_add(o, "_type", json_object_new_string(type));
	json_object_object_add(o, "_class", json_object_new_string(g.class));
	if (status)
		json_object_object_add(o, "status", json_object_new_string(status));
	if (from && to) {
		json_object_object_add(o, "_fromEntityKey", json_object_new_string(from));
		json_object_object_add(o, "_toEntityKey", json_object_new_string(to));
	} else if (from) { /* mapped: the target is matched elsewhere */
		json_object *m = json_object_new_object();

		json_object_object_add(m, "sourceEntityKey", json_object_new_string(from));
		json_object_object_add(o, "_mapping", m);
	}
	buf_init(&b, 1 << 20);
	assert_int_equal(canon_serialize(o, &b), 0);
	assert_int_equal(canon_hash(o, hash), 0);
	g.json = b.data;
	g.json_len = b.len;
	assert_int_equal(store_snapshot_put(s, &g, b.data, hash), 0);
	buf_free(&b);
	json_object_put(o);
}

struct changes {
	void *ud;
	int n;
	char lines[64][256];
};

static int collect(const struct outbox_row *r, void *ud)
{
	struct changes *c = ud;

	if (c->n < 64)
		snprintf(c->lines[c->n++], sizeof(c->lines[0]), "%s %s %s%s%s", r->op, r->kind,
			 r->key, r->changed ? " " : "", r->changed ? r->changed : "");
	return 0;
}

/* A fleet of agents a1..an, each with an account HAS agent relationship. */
static void stage_fleet(struct store *s, int n, const char *status_of_a1)
{
	assert_int_equal(store_snapshot_reset(s), 0);
	put(s, "acct:1", "threatstack_account", NULL, NULL, NULL, 0);
	for (int i = 1; i <= n; i++) {
		char key[32], rel[64];

		snprintf(key, sizeof(key), "agent:%d", i);
		snprintf(rel, sizeof(rel), "acct:1|has|agent:%d", i);
		put(s, key, "threatstack_agent", i == 1 ? status_of_a1 : "online", NULL, NULL, 0);
		put(s, rel, "threatstack_account_has_agent", NULL, "acct:1", key, 0);
	}
}

static const char *const account_group[] = { "threatstack_account" };
static const char *const agent_group[] = { "threatstack_agent", "threatstack_account_has_agent",
					   "threatstack_agent_protects_server" };

static void complete_account(struct store *s)
{
	assert_int_equal(store_snapshot_complete(s, "account", account_group, 1), 0);
}

static void complete_all(struct store *s)
{
	complete_account(s);
	assert_int_equal(store_snapshot_complete(s, "agents", agent_group, 3), 0);
}

/* A dry run lists the plan; a real one applies it in its own transaction. */
static int count_dry(const struct outbox_row *r, void *ud)
{
	struct changes *c = ud;
	struct diff_result *res = (struct diff_result *)c->ud;

	if (strcmp(r->op, "create") == 0)
		res->created++;
	return collect(r, ud);
}

static struct diff_result commit(struct store *s, struct changes *c, bool dry, bool allow)
{
	struct changes none = { 0 };
	struct diff_options o = {
		.source = "poll",
		.run_id = 1,
		.now = 1000,
		.max_delete_fraction = 0.5,
		.allow_mass_delete = allow,
		.on_change = c ? collect : NULL,
		.userdata = c,
	};
	struct diff_result res;

	assert_int_equal(diff_plan(s, &o, &res), 0);
	assert_int_equal(store_snapshot_end(s), 0);
	if (dry) {
		c = c ? c : &none;
		c->ud = &res;
		assert_int_equal(store_plan_each(s, "poll", count_dry, c), 0);
		return res;
	}
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(diff_apply(s, &o, &res), 0);
	assert_int_equal(store_commit(s), 0);
	return res;
}

static void test_first_sync_creates_then_nothing(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;
	int64_t seq = -1;

	stage_fleet(f->s, 3, "online");
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.created, 7);
	assert_int_equal(res.updated + res.deleted, 0);
	assert_int_equal(c.n, 7);
	/* Entities first (by key), then relationships. */
	assert_string_equal(c.lines[0], "create entity acct:1");
	assert_string_equal(c.lines[1], "create entity agent:1");
	assert_string_equal(c.lines[4], "create relationship acct:1|has|agent:1");

	memset(&c, 0, sizeof(c));
	stage_fleet(f->s, 3, "online");
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.created + res.updated + res.deleted, 0);
	assert_int_equal(c.n, 0);
	assert_int_equal(store_outbox_max_seq(f->s, &seq), 0);
	assert_int_equal(seq, 7); /* no outbox row for a no-change sync */
}

static void test_update_names_changed_properties(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;

	stage_fleet(f->s, 2, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);
	stage_fleet(f->s, 2, "offline");
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.updated, 1);
	assert_int_equal(res.created + res.deleted, 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.lines[0], "update entity agent:1 [\"status\"]");
}

static void test_delete_cascades_and_incomplete_keeps(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;

	stage_fleet(f->s, 4, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);

	/* agent:4 gone, but the agent listing failed: nothing deleted. */
	stage_fleet(f->s, 3, "online");
	complete_account(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.deleted, 0);
	assert_int_equal(c.n, 0);

	/* Now complete: the agent and its relationship go, relationship first. */
	stage_fleet(f->s, 3, "online");
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.deleted, 2);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.lines[0], "delete relationship acct:1|has|agent:4");
	assert_string_equal(c.lines[1], "delete entity agent:4");
}

static void test_cascade_reaches_incomplete_relationship_types(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;

	stage_fleet(f->s, 4, "online");
	put(f->s, "agent:4|identified|alert:1", "threatstack_agent_identified_alert", NULL,
	    "agent:4", "alert:1", 0);
	put(f->s, "alert:1", "threatstack_alert", NULL, NULL, NULL, 0);
	complete_all(f->s);
	commit(f->s, NULL, false, false);

	/* agent:4 removed; the alert listing failed (its types incomplete): the alert stays,
	 * but the relationship from the deleted agent goes with it. */
	stage_fleet(f->s, 3, "online");
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.deleted, 3);
	assert_string_equal(c.lines[0], "delete relationship acct:1|has|agent:4");
	assert_string_equal(c.lines[1], "delete relationship agent:4|identified|alert:1");
	assert_string_equal(c.lines[2], "delete entity agent:4");
}

static void test_dangling_relationship_dropped(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;

	stage_fleet(f->s, 1, "online");
	/* Points at an agent neither staged nor stored. */
	put(f->s, "agent:9|identified|alert:1", "threatstack_agent_identified_alert", NULL,
	    "agent:9", "alert:1", 0);
	put(f->s, "alert:1", "threatstack_alert", NULL, NULL, NULL, 0);
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.created, 4);
	for (int i = 0; i < c.n; i++)
		assert_null(strstr(c.lines[i], "agent:9"));
}

static void test_mass_delete_guard(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;

	stage_fleet(f->s, 10, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);

	/* 6 of 10 agents gone: over 0.5, the agents group is held back (relationships too). */
	stage_fleet(f->s, 4, "online");
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.deleted, 0);
	assert_int_equal(res.n_held, 1);
	assert_string_equal(res.held_group[0], "agents");
	assert_string_equal(res.held[0], "threatstack_agent");
	assert_int_equal(res.held_missing[0], 6);
	assert_int_equal(res.held_stored[0], 10);
	assert_int_equal(c.n, 0);

	/* Allowed: all 12 deletions go through. */
	stage_fleet(f->s, 4, "online");
	complete_all(f->s);
	res = commit(f->s, &c, false, true);
	assert_int_equal(res.deleted, 12);
	assert_int_equal(res.n_held, 0);
}

/* The guard judges a group by its primary type: 2 of 4 agents is not over half, so their
 * relationships go too, even a relationship type that loses all its objects. */
static void test_mass_delete_guard_judges_the_group(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;

	stage_fleet(f->s, 4, "online");
	put(f->s, "agent:3|protects|host:a", "threatstack_agent_protects_server", NULL, "agent:3",
	    NULL, 0);
	put(f->s, "agent:4|protects|host:b", "threatstack_agent_protects_server", NULL, "agent:4",
	    NULL, 0);
	complete_all(f->s);
	commit(f->s, NULL, false, false);

	stage_fleet(f->s, 2, "online");
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.n_held, 0);
	assert_int_equal(res.deleted, 6);
	assert_string_equal(c.lines[2], "delete relationship agent:3|protects|host:a");
}

static void test_duplicate_key_keeps_higher_rank(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };

	assert_int_equal(store_snapshot_reset(f->s), 0);
	put(f->s, "agent:1", "threatstack_agent", "offline", NULL, NULL, 200);
	put(f->s, "agent:1", "threatstack_agent", "online", NULL, NULL, 100); /* older */
	put(f->s, "agent:2", "threatstack_agent", "online", NULL, NULL, 100);
	put(f->s, "agent:2", "threatstack_agent", "offline", NULL, NULL, 300); /* newer */
	commit(f->s, NULL, false, false);

	stage_fleet(f->s, 0, NULL);
	put(f->s, "agent:1", "threatstack_agent", "offline", NULL, NULL, 0);
	put(f->s, "agent:2", "threatstack_agent", "offline", NULL, NULL, 0);
	commit(f->s, &c, false, false);
	assert_int_equal(c.n, 1); /* only the account is new: both agents were stored offline */
	assert_string_equal(c.lines[0], "create entity acct:1");
}

/* Two keys with the same 64-bit key hash (FNV-1a: "cf3b407479f245ff" and "6109ebe5d392eff8"):
 * the key index must not take the new one for the stored one, whichever comes first. */
static void test_key_hash_collision(void **state)
{
	static const char *const a = "cf3b407479f245ff", *const b = "6109ebe5d392eff8";
	static const char *const types[] = { "threatstack_agent_protects_server" };
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;

	assert_int_equal(store_snapshot_reset(f->s), 0);
	put(f->s, "acct:1", "threatstack_account", NULL, NULL, NULL, 0);
	put(f->s, a, types[0], NULL, "acct:1", NULL, 0);
	complete_account(f->s);
	res = commit(f->s, NULL, false, false);
	assert_int_equal(res.created, 2);

	/* The stored key first, then the new one with its hash. */
	assert_int_equal(store_snapshot_reset(f->s), 0);
	put(f->s, "acct:1", "threatstack_account", NULL, NULL, NULL, 0);
	put(f->s, a, types[0], NULL, "acct:1", NULL, 0);
	put(f->s, b, types[0], NULL, "acct:1", NULL, 0);
	complete_account(f->s);
	assert_int_equal(store_snapshot_complete(f->s, "protects", types, 1), 0);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.created, 1);
	assert_int_equal(res.updated + res.deleted, 0);
	assert_int_equal(c.n, 1);
	assert_string_equal(c.lines[0], "create relationship 6109ebe5d392eff8");

	/* Both stored now: each is found as itself, and an unchanged sync changes nothing. */
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_snapshot_reset(f->s), 0);
	put(f->s, "acct:1", "threatstack_account", NULL, NULL, NULL, 0);
	put(f->s, b, types[0], NULL, "acct:1", NULL, 0);
	put(f->s, a, types[0], NULL, "acct:1", NULL, 0);
	complete_account(f->s);
	assert_int_equal(store_snapshot_complete(f->s, "protects", types, 1), 0);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.created + res.updated + res.deleted, 0);
}

/* Two new keys with one 64-bit hash in the same snapshot: the staged set confirms a hit
 * against the staged row, so both are created, and a key listed twice is still one. */
static void test_key_hash_collision_staged(void **state)
{
	static const char *const a = "cf3b407479f245ff", *const b = "6109ebe5d392eff8";
	static const char *const types[] = { "threatstack_agent_protects_server" };
	struct fixture *f = *state;
	struct diff_result res;

	assert_int_equal(store_snapshot_reset(f->s), 0);
	put(f->s, "acct:1", "threatstack_account", NULL, NULL, NULL, 0);
	put(f->s, a, types[0], NULL, "acct:1", NULL, 0);
	put(f->s, b, types[0], NULL, "acct:1", NULL, 0);
	put(f->s, b, types[0], NULL, "acct:1", NULL, 0);
	put(f->s, a, types[0], NULL, "acct:1", NULL, 0);
	complete_account(f->s);
	assert_int_equal(store_snapshot_complete(f->s, "protects", types, 1), 0);
	res = commit(f->s, NULL, false, false);
	assert_int_equal(res.created, 3);
	assert_int_equal(res.updated + res.deleted, 0);
}

static void test_dry_run_changes_nothing(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;
	int64_t seq = -1;

	stage_fleet(f->s, 2, "online");
	complete_all(f->s);
	res = commit(f->s, &c, true, false);
	assert_int_equal(res.created, 5);
	assert_int_equal(c.n, 5);
	assert_int_equal(store_outbox_max_seq(f->s, &seq), 0);
	assert_int_equal(seq, 0);
	memset(&c, 0, sizeof(c));
	res = commit(f->s, &c, false, false); /* the same snapshot, for real */
	assert_int_equal(res.created, 5);
}

static void test_changed_properties(void **state)
{
	struct buf b;

	(void)state;
	buf_init(&b, 4096);
	assert_int_equal(
		canon_changed_properties("{\"a\":1,\"b\":{\"x\":1,\"y\":2},\"c\":3}",
					 "{\"c\":3,\"b\":{\"y\":2,\"x\":1},\"d\":4,\"a\":2}", &b),
		0);
	assert_string_equal(b.data, "[\"a\",\"d\"]");
	buf_reset(&b);
	assert_int_equal(canon_changed_properties("{\"z\":1,\"tag.env\":\"prod\"}", "{}", &b), 0);
	assert_string_equal(b.data, "[\"tag.env\",\"z\"]");
	buf_reset(&b);
	assert_int_equal(canon_changed_properties("[1]", "{}", &b), -EINVAL);
	assert_int_equal(canon_changed_properties("{", "{}", &b), -EINVAL);
	buf_free(&b);
	assert_true(diff_should_hold(10, 6, 0.5, false));
	assert_false(diff_should_hold(10, 5, 0.5, false));
	assert_false(diff_should_hold(10, 6, 0.5, true));
	assert_false(diff_should_hold(0, 0, 0.5, false));
	assert_true(diff_should_hold(1, 1, 0.5, false));
}

static void test_refuses_foreign_and_newer_files(void **state)
{
	struct fixture *f = *state;
	struct store_options so = { 0 };
	char err[STORE_ERR_MAX], path[160];
	struct store *s = NULL;
	struct stat st;
	sqlite3 *db;
	int fd;

	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);

	snprintf(path, sizeof(path), "%s/junk.db", f->dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_int_equal(write(fd, "this is not a database, it is a text file padded out....", 56),
			 56);
	for (int i = 0; i < 100; i++)
		assert_int_equal(write(fd, "xxxxxxxxxx", 10), 10);
	close(fd);
	assert_int_equal(store_open(path, &so, &s, err), -EBADMSG);
	assert_non_null(strstr(err, "not an SQLite database"));

	snprintf(path, sizeof(path), "%s/other.db", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE t(x)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(path, &so, &s, err), -EMEDIUMTYPE);
	assert_non_null(strstr(err, "another program"));

	store_close(f->s);
	f->s = NULL;
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(f->path, &so, &s, err), -EPROTONOSUPPORT);
	assert_non_null(strstr(err, "schema version 99 is newer than this build's (7)"));
	assert_null(s);

	so.must_exist = true;
	snprintf(path, sizeof(path), "%s/none.db", f->dir);
	assert_int_equal(store_open(path, &so, &s, err), -ENOENT);
	assert_non_null(strstr(err, "no store yet"));
	assert_int_equal(access(path, F_OK), -1);
}

/* A refresh's snapshot (no key index: each lookup reads the table) compares as a full one:
 * an owner staged unchanged changes nothing, a changed one is an update, what a completed
 * owner no longer has goes; other owners stay. */
static void test_owners_snapshot(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;
	int64_t n = -1;

	stage_fleet(f->s, 3, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);

	assert_int_equal(store_snapshot_reset_owners(f->s), 0);
	put(f->s, "agent:1", "threatstack_agent", "online", NULL, NULL, 0);
	assert_int_equal(store_snapshot_complete_owner(f->s, "agent:1"), 0);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.created + res.updated + res.deleted, 0);

	assert_int_equal(store_snapshot_reset_owners(f->s), 0);
	put(f->s, "agent:2", "threatstack_agent", "offline", NULL, NULL, 0);
	assert_int_equal(store_snapshot_complete_owner(f->s, "agent:2"), 0);
	assert_int_equal(store_snapshot_complete_owner(f->s, "agent:3"), 0); /* gone */
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.updated, 1);
	assert_int_equal(res.deleted, 2); /* agent:3 and its relationship */
	assert_int_equal(c.n, 3);
	assert_string_equal(c.lines[0], "update entity agent:2 [\"status\"]");
	assert_string_equal(c.lines[1], "delete relationship acct:1|has|agent:3");
	assert_string_equal(c.lines[2], "delete entity agent:3");
	assert_int_equal(store_type_count(f->s, "threatstack_agent", &n), 0);
	assert_int_equal(n, 2);
}

/* Rowids past 32 bits leave the key index out (lookups read the table); the per-type counts
 * then come from type_count: a missing agent is still found and deleted, nothing else. */
static void test_no_index_counts(void **state)
{
	struct fixture *f = *state;
	struct changes c = { 0 };
	struct diff_result res;
	sqlite3 *db;

	stage_fleet(f->s, 4, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db,
				      "UPDATE object SET rowid = 5000000000 WHERE key = 'agent:2';"
				      "UPDATE object_digest SET id = 5000000000 WHERE id ="
				      " (SELECT max(id) FROM object_digest d WHERE NOT EXISTS"
				      "  (SELECT 1 FROM object o WHERE o.rowid = d.id));",
				      NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);

	stage_fleet(f->s, 3, "online"); /* agent:4 gone */
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(res.created + res.updated, 0);
	assert_int_equal(res.deleted, 2);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.lines[0], "delete relationship acct:1|has|agent:4");
	assert_string_equal(c.lines[1], "delete entity agent:4");
}

/* What the file holds for a key: its status, "(none)" without one, NULL when not stored. */
static char *stored_status(const char *path, const char *key)
{
	sqlite3 *db;
	sqlite3_stmt *st;
	char *v = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db,
					    "SELECT coalesce(json_extract(json, '$.status'),"
					    " '(none)') FROM object WHERE key = ?1",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
	if (sqlite3_step(st) == SQLITE_ROW)
		v = strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	sqlite3_close(db);
	return v;
}

static void assert_status(const char *path, const char *key, const char *want)
{
	char *v = stored_status(path, key);

	if (!want) {
		assert_null(v);
		return;
	}
	assert_non_null(v);
	assert_string_equal(v, want);
	free(v);
}

/* A second connection (the daemon's webhook refreshes) writes while a full sync stages on the
 * first: what it changed stays as it left it; the full sync applies the rest, without a
 * conflict on a key both created, and without a relationship to an entity now gone. */
static void test_other_writer_wins(void **state)
{
	struct fixture *f = *state;
	struct store_options so = { 0 };
	char err[STORE_ERR_MAX];
	struct changes c = { 0 };
	struct diff_result res;
	struct store *b = NULL;

	stage_fleet(f->s, 3, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);

	/* The full sync's listing: agent:1 offline, agent:3 gone, agent:4 new. */
	stage_fleet(f->s, 2, "offline");
	put(f->s, "agent:4", "threatstack_agent", "listed", NULL, NULL, 0);
	put(f->s, "acct:1|has|agent:4", "threatstack_account_has_agent", NULL, "acct:1", "agent:4",
	    0);

	/* Meanwhile a refresh: agent:1 degraded, agent:3 still there, agent:4 created first,
	 * agent:2 gone (with its relationship). */
	assert_int_equal(store_open(f->path, &so, &b, err), 0);
	assert_int_equal(store_snapshot_reset(b), 0);
	put(b, "agent:1", "threatstack_agent", "degraded", NULL, NULL, 0);
	put(b, "agent:3", "threatstack_agent", "refreshed", NULL, NULL, 0);
	put(b, "agent:4", "threatstack_agent", "fresh", NULL, NULL, 0);
	put(b, "acct:1|has|agent:4", "threatstack_account_has_agent", NULL, "acct:1", "agent:4", 0);
	assert_int_equal(store_snapshot_complete_owner(b, "agent:2"), 0);
	res = commit(b, NULL, false, false);
	assert_int_equal(res.created, 2);
	assert_int_equal(res.updated, 2);
	assert_int_equal(res.deleted, 2);
	store_close(b);

	/* The full sync goes on: an alert identified by agent:2, which the refresh deleted. */
	put(f->s, "alert:7", "threatstack_alert", "open", NULL, NULL, 0);
	put(f->s, "agent:2|identified|alert:7", "threatstack_agent_identified_alert", NULL,
	    "agent:2", "alert:7", 0);
	complete_all(f->s);
	res = commit(f->s, &c, false, false);
	assert_int_equal(c.n, 2);
	assert_string_equal(c.lines[0], "create entity alert:7");
	assert_string_equal(c.lines[1], "delete relationship acct:1|has|agent:3");
	assert_int_equal(res.created, 1);
	assert_int_equal(res.updated, 0);
	assert_int_equal(res.deleted, 1);

	assert_status(f->path, "agent:1", "degraded");
	assert_status(f->path, "agent:2", NULL);
	assert_status(f->path, "agent:3", "refreshed");
	assert_status(f->path, "agent:4", "fresh");
	assert_status(f->path, "acct:1|has|agent:4", "(none)");
	assert_status(f->path, "alert:7", "open");
	assert_status(f->path, "agent:2|identified|alert:7", NULL);

	/* The next full sync settles everything against the listing again (past the
	 * mass-delete guard: half the agents go). */
	memset(&c, 0, sizeof(c));
	stage_fleet(f->s, 2, "offline");
	complete_all(f->s);
	res = commit(f->s, &c, false, true);
	assert_int_equal(res.created, 2); /* agent:2 and its relationship */
	assert_int_equal(res.updated, 1); /* agent:1 */
	assert_int_equal(res.deleted, 3); /* agent:3, agent:4 and its relationship */
}

/* The full listing missed agent:3 (a pagination race); a webhook refresh meanwhile found it
 * (status changed, its relationship unchanged, owner agent:3). A refresh replaces an owner
 * whole: the full sync's apply keeps agent:3 and its relationship. */
static void test_other_writer_keeps_owner_whole(void **state)
{
	struct fixture *f = *state;
	struct store_options so = { 0 };
	char err[STORE_ERR_MAX];
	struct store *b = NULL;

	/* as the graph builder does: an agent owns its relationships */
	assert_int_equal(store_snapshot_reset(f->s), 0);
	put(f->s, "acct:1", "threatstack_account", NULL, NULL, NULL, 0);
	for (int i = 1; i <= 3; i++) {
		char key[32], rel[64];

		snprintf(key, sizeof(key), "agent:%d", i);
		snprintf(rel, sizeof(rel), "acct:1|has|agent:%d", i);
		put(f->s, key, "threatstack_agent", "online", NULL, NULL, 0);
		rel_owner = key;
		put(f->s, rel, "threatstack_account_has_agent", NULL, "acct:1", key, 0);
		rel_owner = NULL;
	}
	complete_all(f->s);
	commit(f->s, NULL, false, false);

	stage_fleet(f->s, 2, "online");

	assert_int_equal(store_open(f->path, &so, &b, err), 0);
	assert_int_equal(store_snapshot_reset(b), 0);
	put(b, "agent:3", "threatstack_agent", "offline", NULL, NULL, 0);
	rel_owner = "agent:3";
	put(b, "acct:1|has|agent:3", "threatstack_account_has_agent", NULL, "acct:1", "agent:3", 0);
	rel_owner = NULL;
	assert_int_equal(store_snapshot_complete_owner(b, "agent:3"), 0);
	assert_int_equal(commit(b, NULL, false, false).updated, 1);
	store_close(b);

	complete_all(f->s);
	commit(f->s, NULL, false, false);
	assert_status(f->path, "agent:3", "offline");
	assert_status(f->path, "acct:1|has|agent:3", "(none)"); /* fails: deleted */
	assert_int_equal(file_int(f->path, DANGLING), 0);
}

/* The full listing staged an older relationship of agent:1 (owner agent:1); the refresh
 * replaced agent:1 whole without it: the full sync's apply does not create it. */
static void test_other_writer_owner_not_mixed(void **state)
{
	struct fixture *f = *state;
	struct store_options so = { 0 };
	char err[STORE_ERR_MAX];
	struct store *b = NULL;

	stage_fleet(f->s, 2, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);

	stage_fleet(f->s, 2, "online");
	rel_owner = "agent:1";
	put(f->s, "agent:1|protects|old-host", "threatstack_agent_protects_server", NULL, "agent:1",
	    NULL, 0);

	assert_int_equal(store_open(f->path, &so, &b, err), 0);
	assert_int_equal(store_snapshot_reset(b), 0);
	put(b, "agent:1", "threatstack_agent", "moved", NULL, NULL, 0);
	put(b, "acct:1|has|agent:1", "threatstack_account_has_agent", NULL, "acct:1", "agent:1", 0);
	rel_owner = NULL;
	assert_int_equal(store_snapshot_complete_owner(b, "agent:1"), 0);
	assert_int_equal(commit(b, NULL, false, false).updated, 1);
	store_close(b);

	complete_all(f->s);
	commit(f->s, NULL, false, false);
	assert_status(f->path, "agent:1", "moved");
	assert_status(f->path, "agent:1|protects|old-host", NULL); /* fails: created */
}

/* agent:3 is gone from the API (the full sync deletes it); an alert for it came by webhook
 * meanwhile, with its relationship from agent:3 (stored then). The full sync's cascade ran at
 * plan time, before that relationship existed: the apply cascades again, none dangles. */
static void test_other_writer_no_dangling(void **state)
{
	struct fixture *f = *state;
	struct store_options so = { 0 };
	char err[STORE_ERR_MAX];
	struct store *b = NULL;

	stage_fleet(f->s, 3, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);

	stage_fleet(f->s, 2, "online");
	complete_all(f->s);

	assert_int_equal(store_open(f->path, &so, &b, err), 0);
	assert_int_equal(store_snapshot_reset(b), 0);
	put(b, "alert:9", "threatstack_alert", "open", NULL, NULL, 0);
	rel_owner = "alert:9";
	put(b, "agent:3|identified|alert:9", "threatstack_agent_identified_alert", NULL, "agent:3",
	    "alert:9", 0);
	rel_owner = NULL;
	assert_int_equal(store_snapshot_complete_owner(b, "alert:9"), 0);
	assert_int_equal(commit(b, NULL, false, false).created, 2);
	store_close(b);

	commit(f->s, NULL, false, false);
	assert_status(f->path, "agent:3", NULL);
	assert_int_equal(file_int(f->path, DANGLING), 0); /* the relationship went with agent:3 */
}

/* The daemon's STATUS= counts agents on the refresh connection: after a refresh that changed
 * nothing, the counts still see a full sync's apply on the other connection (the snapshot's
 * cached counts end with it). */
static void test_type_count_after_other_connection(void **state)
{
	struct fixture *f = *state;
	struct store_options so = { 0 };
	char err[STORE_ERR_MAX];
	struct store *b = NULL;
	int64_t n = -1;

	stage_fleet(f->s, 2, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);
	assert_int_equal(store_open(f->path, &so, &b, err), 0);
	assert_int_equal(store_snapshot_reset(b), 0); /* a refresh with nothing to apply */
	assert_int_equal(store_snapshot_end(b), 0);

	stage_fleet(f->s, 5, "online");
	complete_all(f->s);
	commit(f->s, NULL, false, false);
	assert_int_equal(store_type_count(b, "threatstack_agent", &n), 0);
	store_close(b);
	assert_int_equal(n, 5); /* fails: 2 */
}

/* A new store gets 16 KiB pages; one created with SQLite's default 4 KiB keeps them. */
static void test_page_size(void **state)
{
	struct fixture *f = *state;
	struct store_options so = { 0 };
	char err[STORE_ERR_MAX], path[160];
	struct store *s = NULL;
	sqlite3 *db;

	assert_int_equal(file_int(f->path, "PRAGMA page_size"), 16384);
	snprintf(path, sizeof(path), "%s/old.db", f->dir);
	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA page_size = 4096; VACUUM", NULL, NULL, NULL),
			 SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(store_open(path, &so, &s, err), 0);
	assert_non_null(s);
	store_close(s);
	assert_int_equal(file_int(path, "PRAGMA page_size"), 4096);
}

/* Processes opening a new store at the same moment: every one succeeds (the ownership checks
 * and the migration run inside one write transaction). */
static void test_concurrent_first_open(void **state)
{
	struct fixture *f = *state;

	for (int round = 0; round < 20; round++) {
		char path[160];
		pid_t kids[3];

		snprintf(path, sizeof(path), "%s/race-%d.db", f->dir, round);
		for (int k = 0; k < 3; k++) {
			kids[k] = fork();
			assert_true(kids[k] >= 0);
			if (kids[k] == 0) {
				struct store_options so = { .synchronous_full = true };
				char err[STORE_ERR_MAX];
				struct store *s = NULL;
				int r = store_open(path, &so, &s, err);

				if (r < 0)
					fprintf(stderr, "child: %s\n", err);
				store_close(s);
				_exit(r < 0 ? 1 : 0);
			}
		}
		for (int k = 0; k < 3; k++) {
			int status = 0;

			assert_int_equal(waitpid(kids[k], &status, 0), kids[k]);
			assert_true(WIFEXITED(status));
			assert_int_equal(WEXITSTATUS(status), 0);
		}
	}
}

/* Appends each run's result and a space (newest first). */
static int run_results(const struct store_run *r, void *ud)
{
	char *out = ud;

	strncat(out, r->result, 63 - strlen(out));
	strncat(out, " ", 63 - strlen(out));
	return 0;
}

static void test_runs_and_cursors(void **state)
{
	struct fixture *f = *state;
	int64_t id = 0, seq = -1;
	struct store_run run = { 0 };

	char results[64] = "";

	assert_int_equal(store_run_begin(f->s, "full", 1000, &id), 0);
	assert_int_equal(id, 1);
	/* A run begun beside it (a refresh during a full sync) leaves it running. */
	assert_int_equal(store_run_begin(f->s, "refresh", 2000, &id), 0);
	run.id = id;
	run.result = "ok";
	run.finished = 2500;
	run.created = 3;
	assert_int_equal(store_run_finish(f->s, &run), 0);
	assert_int_equal(store_runs_each(f->s, 10, run_results, results), 0);
	assert_string_equal(results, "ok running ");
	/* The next process's sweep: the first was never finished, its process died. */
	results[0] = '\0';
	assert_int_equal(store_runs_sweep(f->s), 0);
	assert_int_equal(store_runs_each(f->s, 10, run_results, results), 0);
	assert_string_equal(results, "ok interrupted ");
	assert_int_equal(store_cursor_get(f->s, "changes", &seq), 0);
	assert_int_equal(seq, 0);
	assert_int_equal(store_cursor_set(f->s, "changes", 42), 0);
	assert_int_equal(store_cursor_get(f->s, "changes", &seq), 0);
	assert_int_equal(seq, 42);
}

/* A sink's record: failures count up and keep the last error until a success resets the
 * count (the error text stays for the record); the cursor is untouched either way. */
static void test_sink_report(void **state)
{
	struct fixture *f = *state;
	struct store_sink_state st;

	assert_int_equal(store_sink_state_get(f->s, "j1", &st), 0);
	assert_int_equal(st.last_ok + st.failures + st.cursor, 0);
	assert_string_equal(st.last_error, "");
	assert_int_equal(store_sink_report(f->s, "j1", 1000, "HTTP 503"), 0);
	assert_int_equal(store_sink_report(f->s, "j1", 2000, "timed out"), 0);
	assert_int_equal(store_sink_state_get(f->s, "j1", &st), 0);
	assert_int_equal(st.failures, 2);
	assert_int_equal(st.last_error_at, 2000);
	assert_string_equal(st.last_error, "timed out");
	assert_int_equal(st.last_ok, 0);
	assert_int_equal(store_cursor_set(f->s, "j1", 7), 0);
	assert_int_equal(store_sink_report(f->s, "j1", 3000, NULL), 0);
	assert_int_equal(store_sink_state_get(f->s, "j1", &st), 0);
	assert_int_equal(st.failures, 0);
	assert_int_equal(st.last_ok, 3000);
	assert_int_equal(st.cursor, 7);
	assert_int_equal(st.last_error_at, 2000);
}

/* The job a sink has open: none at first, named until set again or the cursor moves; a name
 * longer than the caller's buffer is refused, not cut. */
static void test_sink_job(void **state)
{
	struct fixture *f = *state;
	char job[16];
	int64_t cursor = -1;

	assert_int_equal(store_sink_job_get(f->s, "j1", job, sizeof(job)), 0);
	assert_string_equal(job, "");
	assert_int_equal(store_sink_job_set(f->s, "j1", "job-1"), 0);
	assert_int_equal(store_cursor_get(f->s, "j1", &cursor), 0);
	assert_int_equal(cursor, 0); /* a row made for the job alone starts at seq 0 */
	assert_int_equal(store_sink_job_get(f->s, "j1", job, sizeof(job)), 0);
	assert_string_equal(job, "job-1");
	assert_int_equal(store_sink_job_get(f->s, "other", job, sizeof(job)), 0);
	assert_string_equal(job, "");
	assert_int_equal(store_sink_job_get(f->s, "j1", job, 5), -ENAMETOOLONG);
	assert_int_equal(store_cursor_set(f->s, "j1", 3), 0);
	assert_int_equal(store_sink_job_get(f->s, "j1", job, sizeof(job)), 0);
	assert_string_equal(job, "");
	assert_int_equal(store_sink_job_set(f->s, "j1", "job-2"), 0);
	assert_int_equal(store_sink_job_set(f->s, "j1", NULL), 0);
	assert_int_equal(store_sink_job_get(f->s, "j1", job, sizeof(job)), 0);
	assert_string_equal(job, "");
	assert_int_equal(store_cursor_get(f->s, "j1", &cursor), 0);
	assert_int_equal(cursor, 3);
}

static int count_runs(const struct store_run *r, void *ud)
{
	(void)r;
	(*(int64_t *)ud)++;
	return 0;
}

/* Refresh records older than the cut go, the latest of the kind and other kinds stay. */
static void test_runs_prune(void **state)
{
	struct fixture *f = *state;
	int64_t id, deleted = -1, n = 0;

	for (int i = 1; i <= 3; i++) {
		struct store_run r = { .result = "ok", .finished = i * 1000 };

		assert_int_equal(store_run_begin(f->s, "refresh", i * 1000 - 10, &id), 0);
		r.id = id;
		assert_int_equal(store_run_finish(f->s, &r), 0);
	}
	assert_int_equal(store_run_begin(f->s, "full", 10, &id), 0);
	{
		struct store_run r = { .id = id, .result = "ok", .finished = 20 };

		assert_int_equal(store_run_finish(f->s, &r), 0);
	}
	assert_int_equal(store_runs_prune(f->s, "refresh", 2500, &deleted), 0);
	assert_int_equal(deleted, 2);
	assert_int_equal(store_runs_prune(f->s, "refresh", 999999, &deleted), 0);
	assert_int_equal(deleted, 0); /* the latest refresh stays */
	assert_int_equal(store_runs_each(f->s, 10, count_runs, &n), 0);
	assert_int_equal(n, 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_sync_creates_then_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_update_names_changed_properties, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_delete_cascades_and_incomplete_keeps, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cascade_reaches_incomplete_relationship_types,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_dangling_relationship_dropped, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_mass_delete_guard, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mass_delete_guard_judges_the_group, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_duplicate_key_keeps_higher_rank, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_key_hash_collision, setup, teardown),
		cmocka_unit_test_setup_teardown(test_key_hash_collision_staged, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dry_run_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_changed_properties, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refuses_foreign_and_newer_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_owners_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_index_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_writer_wins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_writer_keeps_owner_whole, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_other_writer_owner_not_mixed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_writer_no_dangling, setup, teardown),
		cmocka_unit_test_setup_teardown(test_type_count_after_other_connection, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_page_size, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_first_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runs_and_cursors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sink_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sink_report, setup, teardown),
		cmocka_unit_test_setup_teardown(test_runs_prune, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
