/* Unit tests for sink_file: the line format (valid UTF-8 whatever the store holds), delivery
 * with a durable cursor, recovery from the two crashes that can happen around an append
 * (after fsync but before the cursor moved; in the middle of a line), a log that lost lines
 * (written again, or refused), and reading only the log's last line. */
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
#include <sqlite3.h>

#include "tsgraphd/sink_file.h"
#include "tsgraphd/store.h"

#include "teststore.h"

struct fixture {
	char dir[TESTSTORE_DIR_MAX];
	char log[128];
	struct store *s;
	struct config_sink cfg;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || teststore_open(f->dir, &f->s) < 0)
		return -1;
	snprintf(f->log, sizeof(f->log), "%s/changes.ndjson", f->dir);
	f->cfg = (struct config_sink){ .name = "changes", .type = SINK_FILE, .path = f->log };
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	int r = teststore_remove(f->dir, f->s);

	free(f);
	return r;
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
	char err[SINK_ERR_MAX];
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

	teststore_sync_agents(f->s, 5, "online");
	assert_int_equal(drain(f), 5);
	assert_int_equal(drain(f), 0);
	teststore_sync_agents(f->s, 5, "offline");
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

	teststore_sync_agents(f->s, 3, "online");
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

	teststore_sync_agents(f->s, 2, "online");
	assert_int_equal(drain(f), 2);
	assert_int_equal(store_cursor_set(f->s, "changes", 1), 0);
	/* Line 2 half-written again after line 2 (a crash mid-append of a retry). */
	fd = open(f->log, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, "{\"seq\":3,\"op\":\"cre", 18), 18);
	close(fd);
	teststore_sync_agents(f->s, 2, "offline");
	assert_int_equal(drain(f), 2);
	assert_int_equal(count_lines(f->log, &last), 4);
	assert_int_equal(last, 4);
}

static void test_foreign_file_refused(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
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
	char err[SINK_ERR_MAX], *after;
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
	char err[SINK_ERR_MAX], serr[STORE_ERR_MAX], db[200], *before, *after;
	struct sink_file *sf = NULL;
	int64_t lines = -1;

	teststore_sync_agents(f->s, 4, "online");
	assert_int_equal(drain(f), 4);
	before = slurp(f->log);
	/* A new store: its seq 1, 2 are other changes than the log's. */
	store_close(f->s);
	snprintf(db, sizeof(db), "%s/other.db", f->dir);
	assert_int_equal(store_open(db, &so, &f->s, serr), 0);
	teststore_sync_agents(f->s, 2, "offline");
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
	char err[SINK_ERR_MAX];
	struct sink_file *a = NULL, *b = NULL;

	assert_int_equal(sink_file_open(&f->cfg, &a, err), 0);
	assert_int_equal(sink_file_open(&f->cfg, &b, err), -EBUSY);
	assert_non_null(strstr(err, "another process is delivering to it"));
	sink_file_close(a);
	assert_int_equal(sink_file_open(&f->cfg, &b, err), 0);
	sink_file_close(b);
}

/* Keeps the first n lines of the file (the others are "lost"). */
static void keep_lines(const char *path, int n)
{
	char *data = NULL, *p;

	assert_int_equal(read_file_bounded(path, 1 << 20, &data, NULL), 0);
	p = data;
	for (int i = 0; i < n; i++) {
		p = strchr(p, '\n');
		assert_non_null(p);
		p++;
	}
	assert_int_equal(truncate(path, p - data), 0);
	free(data);
}

/* Every line's seq, in order, is 1, 2, ... n: no gap, nothing twice. */
static void assert_seqs_dense(const char *path, int n)
{
	FILE *fp = fopen(path, "re");
	char line[4096];
	int64_t want = 1;

	assert_non_null(fp);
	while (fgets(line, sizeof(line), fp)) {
		json_object *o = json_tokener_parse(line), *seq;

		assert_non_null(o);
		assert_true(json_object_object_get_ex(o, "seq", &seq));
		assert_int_equal(json_object_get_int64(seq), want);
		want++;
		json_object_put(o);
	}
	fclose(fp);
	assert_int_equal(want - 1, n);
}

static void sql(struct fixture *f, const char *stmt)
{
	char db[160];
	sqlite3 *h = NULL;

	snprintf(db, sizeof(db), "%s/state.db", f->dir);
	assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
	assert_int_equal(sqlite3_exec(h, stmt, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(h);
}

/* issue 8 item 6: the last two lines of the log are deleted; the next drain writes them
 * again before the new changes, so the file has no gap, and they are the same lines. */
static void test_lost_lines_written_again(void **state)
{
	struct fixture *f = *state;
	char note[SINK_ERR_MAX], *whole, *after;
	int64_t last = 0;

	teststore_sync_agents(f->s, 5, "online");
	teststore_sync_agents(f->s, 5, "offline");
	assert_int_equal(drain(f), 10);
	whole = slurp(f->log);
	keep_lines(f->log, 8);
	/* status tells before the sync does it. */
	assert_int_equal(sink_file_inspect(&f->cfg, f->s, note), 0);
	assert_non_null(strstr(note, "ends at seq 8, behind its cursor at seq 10: 2 lines lost"));
	assert_int_equal(drain(f), 2);
	after = slurp(f->log);
	assert_string_equal(after, whole);
	assert_int_equal(sink_file_inspect(&f->cfg, f->s, note), 0);
	assert_string_equal(note, "");
	/* And new changes follow them. */
	teststore_sync_agents(f->s, 5, "online");
	keep_lines(f->log, 3);
	assert_int_equal(drain(f), 12);
	assert_seqs_dense(f->log, 15);
	assert_int_equal(count_lines(f->log, &last), 15);
	free(whole);
	free(after);
}

/* When the outbox no longer holds the lost changes, the sink refuses and touches nothing;
 * status shows why. */
static void test_lost_lines_refused_without_outbox(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX], note[SINK_ERR_MAX], *before, *after;
	struct sink_file *sf = NULL;
	int64_t lines = -1, cursor = 0;

	teststore_sync_agents(f->s, 5, "online");
	teststore_sync_agents(f->s, 5, "offline");
	assert_int_equal(drain(f), 10);
	teststore_sync_agents(f->s, 5, "online");
	keep_lines(f->log, 8);
	sql(f, "DELETE FROM outbox WHERE seq = 10");
	before = slurp(f->log);
	assert_int_equal(sink_file_open(&f->cfg, &sf, err), 0);
	assert_int_equal(sink_file_drain(sf, f->s, &lines, err), -ESTALE);
	sink_file_close(sf);
	assert_non_null(strstr(err, "the change log is behind its cursor: it ends at seq 8 but "
				    "changes up to seq 10 were written to it, and the outbox no "
				    "longer holds all the lost changes; refusing to leave a gap"));
	after = slurp(f->log);
	assert_string_equal(after, before);
	assert_int_equal(store_cursor_get(f->s, "changes", &cursor), 0);
	assert_int_equal(cursor, 10);
	assert_int_equal(sink_file_inspect(&f->cfg, f->s, note), 0);
	assert_string_equal(note, err);
	/* The file's own last change gone from the outbox is refused too. */
	sql(f, "DELETE FROM outbox WHERE seq = 8");
	assert_int_equal(sink_file_open(&f->cfg, &sf, err), 0);
	assert_int_equal(sink_file_drain(sf, f->s, &lines, err), -ESTALE);
	sink_file_close(sf);
	assert_non_null(strstr(err, "does not hold its last change any more"));
	/* Moved aside, a new log continues after the cursor. */
	assert_int_equal(unlink(f->log), 0);
	assert_int_equal(drain(f), 5);
	free(before);
	free(after);
}

/* A behind log whose last line is another store's change (an old log, a new store) is not
 * "filled in" with this store's numbers. */
static void test_behind_log_of_other_store_refused(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	struct sink_file *sf = NULL;
	int64_t lines = -1;

	teststore_sync_agents(f->s, 3, "online");
	assert_int_equal(drain(f), 3);
	/* Seq 3 in the store becomes another key: the file's seq 3 is not the store's. */
	sql(f, "UPDATE outbox SET key = 'other' WHERE seq = 3");
	assert_int_equal(store_cursor_set(f->s, "changes", 3), 0);
	teststore_sync_agents(f->s, 3, "offline");
	assert_int_equal(store_cursor_set(f->s, "changes", 5), 0);
	assert_int_equal(sink_file_open(&f->cfg, &sf, err), 0);
	assert_int_equal(sink_file_drain(sf, f->s, &lines, err), -ESTALE);
	assert_non_null(strstr(err, "does not hold its last change any more"));
	sink_file_close(sf);
}

/* An emptied file (copytruncate rotation) is a new log: it continues after the cursor and
 * does not get the whole history again. */
static void test_emptied_log_continues_after_cursor(void **state)
{
	struct fixture *f = *state;
	char note[SINK_ERR_MAX];
	int64_t last = 0;

	teststore_sync_agents(f->s, 4, "online");
	assert_int_equal(drain(f), 4);
	assert_int_equal(truncate(f->log, 0), 0);
	assert_int_equal(sink_file_inspect(&f->cfg, f->s, note), 0);
	assert_string_equal(note, "");
	teststore_sync_agents(f->s, 4, "offline");
	assert_int_equal(drain(f), 4);
	assert_int_equal(count_lines(f->log, &last), 4);
	assert_int_equal(last, 8);
}

static int64_t bytes_read_so_far(void)
{
	FILE *fp = fopen("/proc/self/io", "re");
	long long v = -1;

	assert_non_null(fp);
	assert_int_equal(fscanf(fp, "rchar: %lld", &v), 1);
	fclose(fp);
	return v;
}

/* issue 9 item 5: opening a long log reads its last line, not a 16 MiB tail. The log is a
 * 64 MiB hole (sparse, no disk) followed by two change lines. */
static void test_reads_only_last_line(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	struct sink_file *sf = NULL;
	int64_t before, lines = -1;
	char *data = NULL, *rest;
	size_t rest_len;
	int fd;

	teststore_sync_agents(f->s, 3, "online");
	assert_int_equal(drain(f), 3);
	assert_int_equal(read_file_bounded(f->log, 1 << 20, &data, NULL), 0);
	rest = strchr(data, '\n') + 1;
	rest_len = strlen(rest);
	fd = open(f->log, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 0), 0);
	assert_int_equal(pwrite(fd, "\n", 1, 64 << 20), 1);
	/* The last two lines after the hole. */
	assert_int_equal(pwrite(fd, rest, rest_len, (64 << 20) + 1), (ssize_t)rest_len);
	free(data);
	close(fd);
	before = bytes_read_so_far();
	assert_int_equal(sink_file_open(&f->cfg, &sf, err), 0);
	assert_true(bytes_read_so_far() - before < 64 * 1024);
	assert_int_equal(sink_file_drain(sf, f->s, &lines, err), 0);
	assert_int_equal(lines, 0);
	sink_file_close(sf);
}

/* A last line longer than the look-back limit is refused, not read whole. */
static void test_overlong_last_line_refused(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	struct sink_file *sf = NULL;
	int fd = open(f->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "{\"seq\":1}\n{\"seq\":2,", 19), 19);
	assert_int_equal(pwrite(fd, "\n", 1, 40 << 20), 1);
	close(fd);
	assert_int_equal(sink_file_open(&f->cfg, &sf, err), -EBADMSG);
	assert_non_null(strstr(err, "last line longer than"));
	assert_null(sf);
}

static bool utf8_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	/* Enough for this test: no byte that never appears in UTF-8, and no lone continuation. */
	for (; *p; p++) {
		if (*p == 0xc0 || *p == 0xc1 || *p >= 0xf5)
			return false;
		if (*p >= 0x80 && *p < 0xc0)
			return false;
		if (*p >= 0xc2)
			p += *p >= 0xf0 ? 3 : *p >= 0xe0 ? 2 : 1;
	}
	return true;
}

/* issue 8 item 7: members the sink writes itself (key, type, class) are valid UTF-8 too,
 * repaired like canon repairs objects; and a log whose keys were repaired is still
 * recognised as the store's (no false "ahead of the store" after a crash). */
static void test_line_is_valid_utf8(void **state)
{
	struct fixture *f = *state;
	struct outbox_row r = {
		.seq = 1,
		.op = "create",
		.kind = "entity",
		.key = "host\xff\xc0\xaf:\xe2\x82",
		.type = "t\xed\xa0\x80",
		.class = "C",
		.json = "{}",
		.source = "poll",
		.created_at = 1589814129000LL,
	};
	struct buf b;
	int64_t last = 0;

	buf_init(&b, 4096);
	assert_int_equal(sink_file_format(&r, &b), 0);
	assert_true(utf8_valid(b.data));
	assert_non_null(strstr(b.data, "\"key\":\"host\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd:"
				       "\xef\xbf\xbd\""));
	buf_free(&b);

	sql(f, "INSERT INTO outbox (op, kind, key, type, class, json, source, created_at) "
	       "VALUES ('create', 'entity', 'a\xff', 'threatstack_agent', 'HostAgent', "
	       "'{\"_key\":\"a\xef\xbf\xbd\"}', 'poll', 1)");
	assert_int_equal(drain(f), 1);
	/* The cursor update was lost: the repaired line must still count as the change. */
	assert_int_equal(store_cursor_set(f->s, "changes", 0), 0);
	assert_int_equal(drain(f), 0);
	assert_int_equal(count_lines(f->log, &last), 1);
	{
		char *data = slurp(f->log);

		assert_true(utf8_valid(data));
		free(data);
	}
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
		cmocka_unit_test_setup_teardown(test_lost_lines_written_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lost_lines_refused_without_outbox, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_behind_log_of_other_store_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_emptied_log_continues_after_cursor, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reads_only_last_line, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlong_last_line_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_line_is_valid_utf8, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
