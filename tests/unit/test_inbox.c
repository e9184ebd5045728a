/* Unit tests for the inbox: the file (private, ours, refuses others), alerts stored once,
 * due/settle/depth/prune, and the writer's group commit: many concurrent submitters, batches
 * that form while a commit waits, inbox_max (exact even when the count is stale), a
 * duplicate accepted when full, a ticket that times out, a failing commit reported in
 * health and to every ticket of its batch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "tsgraphd/inbox.h"
#include "tsgraphd/store.h"

struct fixture {
	char dir[64];
	char path[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/tsgraphd-inbox-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/state.db-inbox", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

static const struct inbox_options opts = { .synchronous_full = true };

static struct inbox *open_inbox(const char *path)
{
	char err[INBOX_ERR_MAX];
	struct inbox *ib = NULL;
	int r = inbox_open(path, &opts, &ib, err);

	if (r < 0)
		fail_msg("%s", err);
	return ib;
}

static int64_t depth(struct inbox *ib)
{
	int64_t d = -1;

	assert_int_equal(inbox_depth(ib, &d), 0);
	return d;
}

struct seen {
	char ids[16][32];
	enum inbox_state states[16];
	int64_t attempts[16];
	size_t n;
};

static int collect(const struct inbox_item *it, void *ud)
{
	struct seen *s = ud;

	if (s->n < 16) {
		snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", it->id);
		s->states[s->n] = it->state;
		s->attempts[s->n] = it->attempts;
		s->n++;
	}
	return 0;
}

static void test_file_private_and_ours(void **state)
{
	struct fixture *f = *state;
	struct store_options so = { .synchronous_full = true };
	char err[INBOX_ERR_MAX], other[160];
	struct inbox *ib = open_inbox(f->path);
	struct store *s = NULL;
	struct stat st;
	sqlite3 *db;
	int64_t app = 0;

	inbox_close(ib);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
	{
		sqlite3_stmt *q;

		assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA application_id", -1, &q, NULL),
				 SQLITE_OK);
		assert_int_equal(sqlite3_step(q), SQLITE_ROW);
		app = sqlite3_column_int64(q, 0);
		sqlite3_finalize(q);
	}
	sqlite3_close(db);
	assert_int_equal(app, INBOX_APPLICATION_ID);

	/* the store is not an inbox, and an inbox is not a store */
	snprintf(other, sizeof(other), "%s/state.db", f->dir);
	assert_int_equal(store_open(other, &so, &s, err), 0);
	store_close(s);
	assert_int_equal(inbox_open(other, &opts, &ib, err), -EMEDIUMTYPE);
	assert_non_null(strstr(err, "another program"));
	assert_int_equal(store_open(f->path, &so, &s, err), -EMEDIUMTYPE);

	/* a file that is not SQLite */
	snprintf(other, sizeof(other), "%s/text", f->dir);
	{
		FILE *fp = fopen(other, "w");

		assert_non_null(fp);
		fputs("this is not a database, not at all, and it is long enough to tell\n", fp);
		fclose(fp);
	}
	assert_int_equal(inbox_open(other, &opts, &ib, err), -EBADMSG);
	assert_non_null(strstr(err, "is it tsgraphd's inbox?"));
}

static void test_put_once_due_settle_prune(void **state)
{
	struct fixture *f = *state;
	struct inbox *ib = open_inbox(f->path);
	const struct inbox_alert a[] = {
		{ .id = "a1", .body = "{\"id\":\"a1\"}", .received_at = 1000 },
		{ .id = "a2", .body = "{\"id\":\"a2\"}", .received_at = 2000 },
		{ .id = "a1", .body = "{\"id\":\"a1\",\"again\":1}", .received_at = 3000 },
	};
	struct seen s = { 0 };
	size_t fresh = 99, final = 99;
	int64_t next = 0, deleted = -1;

	assert_int_equal(inbox_put(ib, a, 3, &fresh), 0);
	assert_int_equal(fresh, 2);
	assert_int_equal(inbox_put(ib, a, 2, &fresh), 0);
	assert_int_equal(fresh, 0);
	assert_int_equal(depth(ib), 2);
	assert_int_equal(inbox_next_due(ib, &next), 0);
	assert_int_equal(next, 0);

	assert_int_equal(inbox_due(ib, 5000, 10, collect, &s), 0);
	assert_int_equal(s.n, 2);
	assert_string_equal(s.ids[0], "a1");
	assert_string_equal(s.ids[1], "a2");
	assert_int_equal(s.states[0], INBOX_NEW);

	/* a1 confirmed; a2 unknown to the API: retried at 9000 */
	{
		const struct inbox_settlement st[] = {
			{ .id = "a1", .state = INBOX_CONFIRMED },
			{ .id = "a2",
			  .state = INBOX_UNCONFIRMED,
			  .next_try = 9000,
			  .note = "not known to Threat Stack" },
		};

		assert_int_equal(inbox_settle(ib, st, 2, &final), 0);
		assert_int_equal(final, 1);
	}
	assert_int_equal(depth(ib), 1);
	assert_int_equal(inbox_next_due(ib, &next), 0);
	assert_int_equal(next, 9000);
	memset(&s, 0, sizeof(s));
	assert_int_equal(inbox_due(ib, 5000, 10, collect, &s), 0);
	assert_int_equal(s.n, 0);
	assert_int_equal(inbox_due(ib, 9000, 10, collect, &s), 0);
	assert_int_equal(s.n, 1);
	assert_int_equal(s.states[0], INBOX_UNCONFIRMED);
	assert_int_equal(s.attempts[0], 1);

	/* a final alert is not settled again; a2 given up */
	{
		const struct inbox_settlement st[] = {
			{ .id = "a1", .state = INBOX_UNCONFIRMED, .next_try = 1 },
			{ .id = "a2", .state = INBOX_DONE, .note = "never confirmed" },
		};

		assert_int_equal(inbox_settle(ib, st, 2, &final), 0);
		assert_int_equal(final, 1);
	}
	assert_int_equal(depth(ib), 0);
	assert_int_equal(inbox_next_due(ib, &next), -ENOENT);
	memset(&s, 0, sizeof(s));
	assert_int_equal(inbox_get(ib, "a1", collect, &s), 0);
	assert_int_equal(s.states[0], INBOX_CONFIRMED);
	assert_int_equal(inbox_get(ib, "zz", collect, &s), -ENOENT);

	/* a settled id still deduplicates until it is pruned */
	assert_int_equal(inbox_put(ib, a, 1, &fresh), 0);
	assert_int_equal(fresh, 0);
	assert_int_equal(inbox_prune(ib, 1500, &deleted), 0);
	assert_int_equal(deleted, 1);
	assert_int_equal(inbox_put(ib, a, 1, &fresh), 0);
	assert_int_equal(fresh, 1);

	/* ids are bounded */
	{
		char id[INBOX_ID_MAX + 2];
		struct inbox_alert big = { .id = id, .body = "{}" };

		memset(id, 'x', sizeof(id) - 1);
		id[sizeof(id) - 1] = '\0';
		assert_int_equal(inbox_put(ib, &big, 1, NULL), -EINVAL);
	}
	inbox_close(ib);
}

static struct inbox_writer *new_writer(const char *path, uint64_t max, int busy_ms,
				       void (*on_commit)(size_t, void *), void *ud)
{
	struct inbox_writer_options wo = {
		.inbox = { .synchronous_full = true, .busy_timeout_ms = busy_ms },
		.max_depth = max,
		.on_commit = on_commit,
		.userdata = ud,
	};
	struct inbox_writer *w = NULL;
	char err[INBOX_ERR_MAX];

	if (inbox_writer_new(path, &wo, &w, err) < 0)
		fail_msg("%s", err);
	return w;
}

static int submit_wait(struct inbox_writer *w, const char *id, size_t *ret_new)
{
	struct inbox_alert a = { .id = id, .body = "{}", .received_at = 1 };
	struct inbox_ticket *t = NULL;
	int r = inbox_writer_submit(w, &a, 1, &t);

	return r < 0 ? r : inbox_ticket_wait(t, 10000, ret_new);
}

struct commits {
	atomic_int calls;
	atomic_size_t alerts;
};

static void count_commit(size_t n, void *ud)
{
	struct commits *c = ud;

	atomic_fetch_add(&c->calls, 1);
	atomic_fetch_add(&c->alerts, n);
}

struct submitter {
	struct inbox_writer *w;
	int index;
	int failures;
};

#define SUBMITTERS 8
#define PER_THREAD 100

static void *submit_many(void *arg)
{
	struct submitter *s = arg;

	for (int i = 0; i < PER_THREAD; i++) {
		char id[32];
		size_t fresh = 0;

		/* every id twice: once by this thread, once by the next one */
		snprintf(id, sizeof(id), "t%d-%d", s->index, i);
		if (submit_wait(s->w, id, &fresh) < 0)
			s->failures++;
		snprintf(id, sizeof(id), "t%d-%d", (s->index + 1) % SUBMITTERS, i);
		if (submit_wait(s->w, id, &fresh) < 0)
			s->failures++;
	}
	return NULL;
}

/* New alerts come first, oldest first; then the retries, by the time they fell due. */
static void test_due_order(void **state)
{
	struct fixture *f = *state;
	struct inbox *ib = open_inbox(f->path);
	const struct inbox_alert a[] = {
		{ .id = "r1", .body = "{}", .received_at = 1000 },
		{ .id = "r2", .body = "{}", .received_at = 1100 },
		{ .id = "n2", .body = "{}", .received_at = 3000 },
		{ .id = "n1", .body = "{}", .received_at = 2000 },
	};
	const struct inbox_settlement st[] = {
		{ .id = "r1", .state = INBOX_UNCONFIRMED, .next_try = 400 },
		{ .id = "r2", .state = INBOX_UNCONFIRMED, .next_try = 300 },
	};
	struct seen s = { 0 };

	assert_int_equal(inbox_put(ib, a, 4, NULL), 0);
	assert_int_equal(inbox_settle(ib, st, 2, NULL), 0);
	assert_int_equal(inbox_due(ib, 5000, 10, collect, &s), 0);
	assert_int_equal(s.n, 4);
	assert_string_equal(s.ids[0], "n1");
	assert_string_equal(s.ids[1], "n2");
	assert_string_equal(s.ids[2], "r2");
	assert_string_equal(s.ids[3], "r1");
	memset(&s, 0, sizeof(s));
	assert_int_equal(inbox_due(ib, 5000, 3, collect, &s), 0);
	assert_int_equal(s.n, 3);
	assert_string_equal(s.ids[2], "r2");
	inbox_close(ib);
}

static void test_writer_concurrent(void **state)
{
	struct fixture *f = *state;
	struct commits c = { 0 };
	struct inbox_writer *w = new_writer(f->path, 0, 0, count_commit, &c);
	struct submitter s[SUBMITTERS];
	pthread_t th[SUBMITTERS];
	struct inbox *ib;
	char msg[INBOX_ERR_MAX];

	for (int i = 0; i < SUBMITTERS; i++) {
		s[i] = (struct submitter){ .w = w, .index = i };
		assert_int_equal(pthread_create(&th[i], NULL, submit_many, &s[i]), 0);
	}
	for (int i = 0; i < SUBMITTERS; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(s[i].failures, 0);
	}
	assert_int_equal(atomic_load(&c.alerts), SUBMITTERS * PER_THREAD);
	assert_true(atomic_load(&c.calls) <= SUBMITTERS * PER_THREAD);
	assert_int_equal(inbox_writer_depth(w), SUBMITTERS * PER_THREAD);
	assert_int_equal(inbox_writer_health(w, msg), 0);
	inbox_writer_free(w);
	ib = open_inbox(f->path);
	assert_int_equal(depth(ib), SUBMITTERS * PER_THREAD);
	inbox_close(ib);
}

/* Holds the inbox's write lock from another connection, so the writer's BEGIN waits. */
static sqlite3 *hold_lock(const char *path)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	return db;
}

static void release_lock(sqlite3 *db)
{
	assert_int_equal(sqlite3_exec(db, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

static void test_writer_batches_while_it_waits(void **state)
{
	struct fixture *f = *state;
	struct commits c = { 0 };
	struct inbox_writer *w = new_writer(f->path, 0, 0, count_commit, &c);
	struct inbox_ticket *t[10];
	sqlite3 *lock = hold_lock(f->path);

	for (int i = 0; i < 10; i++) {
		char id[16];
		struct inbox_alert a = { .id = id, .body = "{}", .received_at = i };

		snprintf(id, sizeof(id), "b%d", i);
		assert_int_equal(inbox_writer_submit(w, &a, 1, &t[i]), 0);
		usleep(5000); /* the first ticket is in the writer's hands, waiting for the lock */
	}
	/* nothing can be answered while the file is locked */
	assert_int_equal(inbox_ticket_wait(t[0], 50, NULL), -ETIMEDOUT);
	release_lock(lock);
	for (int i = 1; i < 10; i++)
		assert_int_equal(inbox_ticket_wait(t[i], 10000, NULL), 0);
	inbox_writer_free(w);
	/* the first ticket alone, then the nine that queued behind it: two commits (one, if
	 * the writer was slower to take the first than the test to queue them all) */
	assert_int_equal(atomic_load(&c.alerts), 10);
	assert_true(atomic_load(&c.calls) <= 2);
}

static void on_answered(void *ud)
{
	atomic_fetch_add((_Atomic int *)ud, 1);
}

/* Bounded: until *n is at least want, or 10 s. */
static void wait_for(_Atomic int *n, int want)
{
	for (int i = 0; i < 10000 && atomic_load(n) < want; i++)
		usleep(1000);
	assert_true(atomic_load(n) >= want);
}

/* A notification once the ticket is answered (the receiver's resume), none after release. */
static void test_writer_notify_and_release(void **state)
{
	struct fixture *f = *state;
	struct inbox_writer *w = new_writer(f->path, 0, 0, NULL, NULL);
	struct inbox_alert a1 = { .id = "n1", .body = "{}", .received_at = 1 };
	struct inbox_alert a2 = { .id = "n2", .body = "{}", .received_at = 2 };
	struct inbox_ticket *t1, *t2;
	_Atomic int n1 = 0, n2 = 0;
	sqlite3 *lock = hold_lock(f->path);
	size_t fresh = 0;
	struct inbox *ib;

	assert_int_equal(inbox_writer_submit(w, &a1, 1, &t1), 0);
	assert_int_equal(inbox_writer_submit(w, &a2, 1, &t2), 0);
	assert_int_equal(inbox_ticket_notify(t1, on_answered, &n1), 0);
	assert_int_equal(inbox_ticket_notify(t2, on_answered, &n2), 0);
	inbox_ticket_release(t2); /* given up: its commit goes on, unseen */
	release_lock(lock);
	wait_for(&n1, 1);
	assert_int_equal(inbox_ticket_notify(t1, on_answered, &n1), 1); /* answered already */
	assert_int_equal(inbox_ticket_wait(t1, 0, &fresh), 0);
	assert_int_equal(fresh, 1);
	inbox_writer_free(w);
	assert_int_equal(atomic_load(&n1), 1);
	assert_int_equal(atomic_load(&n2), 0);
	ib = open_inbox(f->path);
	assert_int_equal(depth(ib), 2);
	inbox_close(ib);
}

static void test_writer_max_depth(void **state)
{
	struct fixture *f = *state;
	struct inbox_writer *w = new_writer(f->path, 3, 0, NULL, NULL);
	struct inbox *ib;
	size_t fresh = 9;

	assert_int_equal(submit_wait(w, "m1", &fresh), 0);
	assert_int_equal(fresh, 1);
	assert_int_equal(submit_wait(w, "m2", NULL), 0);
	assert_int_equal(submit_wait(w, "m3", NULL), 0);
	assert_int_equal(submit_wait(w, "m4", NULL), -EDQUOT);
	/* a request that would go over stores none of its alerts */
	{
		struct inbox_alert a[] = { { .id = "m2", .body = "{}" },
					   { .id = "m5", .body = "{}" } };
		struct inbox_ticket *t;

		assert_int_equal(inbox_writer_submit(w, a, 2, &t), 0);
		assert_int_equal(inbox_ticket_wait(t, 10000, NULL), -EDQUOT);
	}
	/* a duplicate is still accepted when full */
	assert_int_equal(submit_wait(w, "m1", &fresh), 0);
	assert_int_equal(fresh, 0);
	assert_int_equal(inbox_writer_depth(w), 3);

	/* settled through another connection, without telling the writer: its count is stale,
	 * and the file is counted again before a refusal */
	ib = open_inbox(f->path);
	{
		const struct inbox_settlement st = { .id = "m1", .state = INBOX_CONFIRMED };

		assert_int_equal(inbox_settle(ib, &st, 1, NULL), 0);
	}
	assert_int_equal(submit_wait(w, "m4", &fresh), 0);
	assert_int_equal(fresh, 1);
	assert_int_equal(submit_wait(w, "m6", NULL), -EDQUOT);
	/* settled through the writer: its count drops at once */
	{
		const struct inbox_settlement st[] = {
			{ .id = "m2", .state = INBOX_DONE, .note = "given up" },
			{ .id = "m3", .state = INBOX_UNCONFIRMED, .next_try = 5 },
			{ .id = "zz", .state = INBOX_CONFIRMED },
		};
		struct inbox_ticket *t;
		size_t final = 9;

		assert_int_equal(inbox_writer_settle(w, st, 3, &t), 0);
		assert_int_equal(inbox_ticket_wait(t, 10000, &final), 0);
		assert_int_equal(final, 1);
	}
	assert_int_equal(inbox_writer_depth(w), 2);
	assert_int_equal(submit_wait(w, "m6", NULL), 0);
	assert_int_equal(depth(ib), 3);
	{
		struct seen s = { 0 };

		assert_int_equal(inbox_get(ib, "m5", collect, &s), -ENOENT);
	}
	/* a prune through the writer */
	{
		struct inbox_ticket *t;
		size_t pruned = 9;

		assert_int_equal(inbox_writer_prune(w, INT64_MAX, &t), 0);
		assert_int_equal(inbox_ticket_wait(t, 10000, &pruned), 0);
		assert_int_equal(pruned, 2); /* m1 confirmed, m2 done */
	}
	assert_int_equal(depth(ib), 3);
	inbox_close(ib);
	inbox_writer_free(w);
}

static void test_writer_failed_commit(void **state)
{
	struct fixture *f = *state;
	struct inbox_writer *w = new_writer(f->path, 0, 100, NULL, NULL);
	char msg[INBOX_ERR_MAX];
	sqlite3 *lock = hold_lock(f->path);
	struct inbox *ib;

	/* the lock outlasts the busy timeout: the commit fails, the ticket says so */
	assert_int_equal(submit_wait(w, "f1", NULL), -EBUSY);
	assert_int_equal(inbox_writer_health(w, msg), -EBUSY);
	assert_non_null(strstr(msg, "locked"));
	release_lock(lock);
	assert_int_equal(submit_wait(w, "f2", NULL), 0);
	assert_int_equal(inbox_writer_health(w, msg), 0);
	assert_int_equal(inbox_writer_depth(w), 1);
	inbox_writer_free(w);
	ib = open_inbox(f->path);
	assert_int_equal(depth(ib), 1);
	inbox_close(ib);
}

static void test_writer_stop_commits_the_queue(void **state)
{
	struct fixture *f = *state;
	struct inbox_writer *w = new_writer(f->path, 0, 0, NULL, NULL);
	struct inbox_alert a = { .id = "s1", .body = "{}" };
	struct inbox_ticket *t;
	struct inbox *ib;

	assert_int_equal(inbox_writer_submit(w, &a, 1, &t), 0);
	assert_int_equal(inbox_ticket_wait(t, 10000, NULL), 0);
	/* wrong arguments */
	assert_int_equal(inbox_writer_submit(w, &a, 0, &t), -EINVAL);
	a.body = NULL;
	assert_int_equal(inbox_writer_submit(w, &a, 1, &t), -EINVAL);
	inbox_writer_free(w);
	ib = open_inbox(f->path);
	assert_int_equal(depth(ib), 1);
	inbox_close(ib);
}

/* Another process's count of the alerts, through its own connection: the sqlite3 program
 * (not a fork: SQLite's lock bookkeeping must not be inherited). */
static int count_elsewhere(const char *path)
{
	char cmd[256], out[32] = "";
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "sqlite3 '%s' 'SELECT count(*) FROM alert'", path);
	p = popen(cmd, "r");
	assert_non_null(p);
	if (fgets(out, sizeof(out), p))
		n = (int)strtol(out, NULL, 10);
	assert_int_equal(pclose(p), 0);
	return n;
}

/* A second connection of this process (the sync thread's) must not drop the locks of the
 * first (the writer's): a close() of any descriptor of the file would, and another process
 * closing its connection would then checkpoint and delete the WAL the writer still uses,
 * losing what it commits next. */
static void test_second_connection_keeps_the_locks(void **state)
{
	struct fixture *f = *state;
	struct inbox_writer *w = new_writer(f->path, 0, 0, NULL, NULL);
	struct inbox *ib = open_inbox(f->path);

	assert_int_equal(count_elsewhere(f->path), 0);
	assert_int_equal(submit_wait(w, "l1", NULL), 0);
	assert_int_equal(count_elsewhere(f->path), 1);
	assert_int_equal(submit_wait(w, "l2", NULL), 0);
	inbox_close(ib);
	inbox_writer_free(w);
	assert_int_equal(count_elsewhere(f->path), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_file_private_and_ours, setup, teardown),
		cmocka_unit_test_setup_teardown(test_put_once_due_settle_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_due_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_batches_while_it_waits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_writer_notify_and_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_max_depth, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_failed_commit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writer_stop_commits_the_queue, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_second_connection_keeps_the_locks, setup,
						teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
