/* Unit tests for sink_file: the line format, delivery with a durable cursor, and recovery
 * from the two crashes that can happen around an append (after fsync but before the cursor
 * moved; in the middle of a line). */
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
#include <unistd.h>

#include <json-c/json.h>

#include "tsgraphd/canon.h"
#include "tsgraphd/diff.h"
#include "tsgraphd/sink_file.h"
#include "tsgraphd/store.h"

struct fixture {
	char dir[64];
	char log[128];
	struct store *s;
	struct config_sink cfg;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct store_options so = { .synchronous_full = true };
	char err[STORE_ERR_MAX], db[160];

	snprintf(f->dir, sizeof(f->dir), "/tmp/tsgraphd-sink-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(db, sizeof(db), "%s/state.db", f->dir);
	snprintf(f->log, sizeof(f->log), "%s/changes.ndjson", f->dir);
	if (store_open(db, &so, &f->s, err) < 0)
		return -1;
	f->cfg = (struct config_sink){ .name = "changes", .type = SINK_FILE, .path = f->log };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	store_close(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* Commits n entities e1..en (status st) as one sync. */
static void sync_entities(struct store *s, int n, const char *st)
{
	struct diff_options o = {
		.source = "poll", .run_id = 1, .now = 1589814129000LL, .max_delete_fraction = 1
	};
	struct diff_result res;

	assert_int_equal(store_snapshot_reset(s), 0);
	for (int i = 1; i <= n; i++) {
		char key[32], hash[CANON_HASH_HEX + 1];
		json_object *obj = json_object_new_object();
		struct graph_object g = { .kind = GRAPH_ENTITY,
					  .obj = obj,
					  .key = key,
					  .type = "threatstack_agent",
					  .class = "HostAgent" };
		struct buf b;

		snprintf(key, sizeof(key), "e%d", i);
		json_object_object_add(obj, "_key", json_object_new_string(key));
		json_object_object_add(obj, "status", json_object_new_string(st));
		buf_init(&b, 4096);
		assert_int_equal(canon_serialize(obj, &b), 0);
		assert_int_equal(canon_hash(obj, hash), 0);
		assert_int_equal(store_snapshot_put(s, &g, b.data, hash), 0);
		buf_free(&b);
		json_object_put(obj);
	}
	assert_int_equal(store_snapshot_complete(s, "agents",
						 (const char *const[]){ "threatstack_agent" }, 1),
			 0);
	assert_int_equal(diff_plan(s, &o, &res), 0);
	assert_int_equal(store_snapshot_end(s), 0);
	assert_int_equal(store_begin(s), 0);
	assert_int_equal(diff_apply(s, &o, &res), 0);
	assert_int_equal(store_commit(s), 0);
}

static int count_lines(const char *path, int64_t *last_seq)
{
	FILE *fp = fopen(path, "re");
	char line[4096];
	int n = 0;

	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp)) {
		json_object *o = json_tokener_parse(line), *seq;

		assert_non_null(o); /* every line is a JSON object */
		assert_true(json_object_object_get_ex(o, "seq", &seq));
		*last_seq = json_object_get_int64(seq);
		json_object_put(o);
		n++;
	}
	fclose(fp);
	return n;
}

static int64_t drain(struct fixture *f)
{
	char err[SINK_FILE_ERR_MAX];
	struct sink_file *sf = NULL;
	int64_t lines = -1;

	assert_int_equal(sink_file_open(&f->cfg, &sf, err), 0);
	assert_int_equal(sink_file_drain(sf, f->s, &lines, err), 0);
	sink_file_close(sf);
	return lines;
}

static void test_format(void **state)
{
	struct outbox_row r = {
		.seq = 7,
		.op = "update",
		.kind = "entity",
		.key = "threatstack:agent:\"x\"",
		.type = "threatstack_agent",
		.class = "HostAgent",
		.json = "{\"_key\":\"k\"}",
		.changed = "[\"status\"]",
		.source = "poll",
		.created_at = 1589814129000LL,
	};
	struct buf b;

	(void)state;
	buf_init(&b, 4096);
	assert_int_equal(sink_file_format(&r, &b), 0);
	assert_string_equal(
		b.data, "{\"seq\":7,\"op\":\"update\",\"kind\":\"entity\","
			"\"key\":\"threatstack:agent:\\\"x\\\"\",\"type\":\"threatstack_agent\","
			"\"class\":\"HostAgent\",\"source\":\"poll\","
			"\"at\":\"2020-05-18T15:02:09.000Z\",\"changed\":[\"status\"],"
			"\"object\":{\"_key\":\"k\"}}\n");
	buf_reset(&b);
	r.op = "delete";
	r.json = NULL;
	r.changed = NULL;
	assert_int_equal(sink_file_format(&r, &b), 0);
	assert_null(strstr(b.data, "object"));
	assert_null(strstr(b.data, "changed"));
	buf_free(&b);
}

static void test_delivers_each_change_once(void **state)
{
	struct fixture *f = *state;
	int64_t last = 0, cursor = 0;

	sync_entities(f->s, 5, "online");
	assert_int_equal(drain(f), 5);
	assert_int_equal(drain(f), 0);
	sync_entities(f->s, 5, "offline");
	assert_int_equal(drain(f), 5);
	assert_int_equal(count_lines(f->log, &last), 10);
	assert_int_equal(last, 10);
	assert_int_equal(store_cursor_get(f->s, "changes", &cursor), 0);
	assert_int_equal(cursor, 10);
}

static void test_crash_after_fsync_before_cursor(void **state)
{
	struct fixture *f = *state;
	int64_t last = 0;

	sync_entities(f->s, 3, "online");
	assert_int_equal(drain(f), 3);
	/* The cursor update was lost: the file must not get the lines again. */
	assert_int_equal(store_cursor_set(f->s, "changes", 1), 0);
	assert_int_equal(drain(f), 0);
	assert_int_equal(count_lines(f->log, &last), 3);
	assert_int_equal(last, 3);
}

static void test_torn_last_line_is_cut(void **state)
{
	struct fixture *f = *state;
	int64_t last = 0;
	int fd;

	sync_entities(f->s, 2, "online");
	assert_int_equal(drain(f), 2);
	assert_int_equal(store_cursor_set(f->s, "changes", 1), 0);
	/* Line 2 half-written again after line 2 (a crash mid-append of a retry). */
	fd = open(f->log, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "{\"seq\":3,\"op\":\"cre", 18), 18);
	close(fd);
	sync_entities(f->s, 2, "offline");
	assert_int_equal(drain(f), 2);
	assert_int_equal(count_lines(f->log, &last), 4);
	assert_int_equal(last, 4);
}

static void test_foreign_file_refused(void **state)
{
	struct fixture *f = *state;
	char err[SINK_FILE_ERR_MAX];
	struct sink_file *sf = NULL;
	int fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_int_equal(write(fd, "hello world\n", 12), 12);
	close(fd);
	assert_int_equal(sink_file_open(&f->cfg, &sf, err), -EBADMSG);
	assert_non_null(strstr(err, "not a tsgraphd change"));
	assert_null(sf);
}

static char *slurp(const char *path)
{
	char *data = NULL;

	assert_int_equal(read_file_bounded(path, 1 << 20, &data, NULL), 0);
	return data;
}

/* A file that is not a change log is refused before anything in it is touched, even when
 * its last line has no newline (which, in a change log, would be cut as torn). */
static void test_foreign_file_untouched(void **state)
{
	static const char text[] = "precious line 1\nprecious line 2 without newline";
	struct fixture *f = *state;
	char err[SINK_FILE_ERR_MAX], *after;
	struct sink_file *sf = NULL;
	int fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	assert_int_equal(write(fd, text, sizeof(text) - 1), (ssize_t)sizeof(text) - 1);
	close(fd);
	assert_int_equal(sink_file_open(&f->cfg, &sf, err), -EBADMSG);
	after = slurp(f->log);
	assert_string_equal(after, text);
	free(after);
}

/* A log that got further than the store (the store was restored from a backup) is
 * refused: skipping to its seq would lose the store's new changes under old numbers. */
static void test_log_ahead_of_store_refused(void **state)
{
	struct fixture *f = *state;
	struct store_options so = { .synchronous_full = true };
	char err[SINK_FILE_ERR_MAX], serr[STORE_ERR_MAX], db[200], *before, *after;
	struct sink_file *sf = NULL;
	int64_t lines = -1;

	sync_entities(f->s, 4, "online");
	assert_int_equal(drain(f), 4);
	before = slurp(f->log);
	/* A new store: its seq 1, 2 are other changes than the log's. */
	store_close(f->s);
	snprintf(db, sizeof(db), "%s/other.db", f->dir);
	assert_int_equal(store_open(db, &so, &f->s, serr), 0);
	sync_entities(f->s, 2, "offline");
	assert_int_equal(sink_file_open(&f->cfg, &sf, err), 0);
	assert_int_equal(sink_file_drain(sf, f->s, &lines, err), -ESTALE);
	assert_non_null(strstr(err, "ahead of the store"));
	sink_file_close(sf);
	after = slurp(f->log);
	assert_string_equal(after, before);
	free(before);
	free(after);
}

/* One writer per change log. */
static void test_second_writer_refused(void **state)
{
	struct fixture *f = *state;
	char err[SINK_FILE_ERR_MAX];
	struct sink_file *a = NULL, *b = NULL;

	assert_int_equal(sink_file_open(&f->cfg, &a, err), 0);
	assert_int_equal(sink_file_open(&f->cfg, &b, err), -EBUSY);
	assert_non_null(strstr(err, "another process is delivering to it"));
	sink_file_close(a);
	assert_int_equal(sink_file_open(&f->cfg, &b, err), 0);
	sink_file_close(b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_format),
		cmocka_unit_test_setup_teardown(test_delivers_each_change_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crash_after_fsync_before_cursor, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_torn_last_line_is_cut, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_file_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_file_untouched, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_ahead_of_store_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_second_writer_refused, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
