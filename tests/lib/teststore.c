/* teststore — a temporary store and generated agents in it (see teststore.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "teststore.h"
#include "tsgraphd/canon.h"
#include "tsgraphd/diff.h"

int teststore_open(char dir[static TESTSTORE_DIR_MAX], struct store **ret)
{
	struct store_options so = { .synchronous_full = true };
	char err[STORE_ERR_MAX], db[TESTSTORE_DIR_MAX + 16];

	snprintf(dir, TESTSTORE_DIR_MAX, "/tmp/tsgraphd-store-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(db, sizeof(db), "%s/state.db", dir);
	return store_open(db, &so, ret, err) < 0 ? -1 : 0;
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st, (void)flag, (void)ftw;
	return remove(path);
}

int teststore_remove(const char *dir, struct store *s)
{
	store_close(s);
	/* Depth first, so each directory is empty when its turn comes. */
	return nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : -1;
}

void teststore_sync_agents(struct store *s, int n, const char *status)
{
	struct diff_options o = {
		.source = "poll", .run_id = 1, .now = 1589814129000LL, .max_delete_fraction = 1
	};

	assert_int_equal(store_snapshot_reset(s), 0);
	for (int i = 1; i <= n; i++) {
		char key[64], name[32], hash[CANON_HASH_HEX + 1];
		json_object *obj = json_object_new_object();
		struct graph_object g = { .kind = GRAPH_ENTITY,
					  .key = key,
					  .type = "threatstack_agent",
					  .class = "HostAgent" };
		struct buf b;

		snprintf(key, sizeof(key), "threatstack:agent:a%d", i);
		snprintf(name, sizeof(name), "host-%d", i);
		json_object_object_add(obj, "_key", json_object_new_string(key));
		json_object_object_add(obj, "name", json_object_new_string(name));
		json_object_object_add(obj, "status", json_object_new_string(status));
		json_object_object_add(obj, "active",
				       json_object_new_boolean(strcmp(status, "online") == 0));
		buf_init(&b, 4096);
		assert_int_equal(canon_serialize(obj, &b), 0);
		g.json = b.data;
		g.json_len = b.len;
		assert_int_equal(canon_hash(obj, hash), 0);
		assert_int_equal(store_snapshot_put(s, &g, b.data, hash), 0);
		buf_free(&b);
		json_object_put(obj);
	}
	teststore_apply_agents(s, &o);
}

void teststore_apply_agents(struct store *s, const struct diff_options *o)
{
	struct diff_result res;

	assert_int_equal(store_snapshot_complete(s, "agents",
						 (const char *const[]){ "threatstack_agent" }, 1),
			 0);
	assert_int_equal(diff_plan(s, o, &res), 0);
	assert_int_equal(store_snapshot_end(s), 0);
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(diff_apply(s, o, &res), 0);
	assert_int_equal(store_commit(s), 0);
}
