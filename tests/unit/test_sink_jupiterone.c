/* Unit tests for sink_jupiterone: how a window of the outbox is coalesced (one change per
 * kind and _key, the last one), how its changes are split into request bodies (never over
 * batch_bytes, packed greedily, in the order entity upserts, relationship upserts,
 * relationship deletes, entity deletes; an object too large for any body is a clear
 * error), and the drain against a scripted JupiterOne stand-in on loopback (libmicrohttpd,
 * in this file): the requests and their headers, the cursor moving only after FINISHED,
 * several jobs for a large backlog, retries on 429/5xx, a finalize that waits for a busy
 * scope, aborts, failed jobs retried whole in a new job, refused tokens, an unreachable
 * server, and a cancel. The JupiterOne sink's configuration is tested in test_config.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <sqlite3.h>

#include "tsgraphd/cancel.h"
#include "tsgraphd/sink.h"
#include "tsgraphd/sink_jupiterone.h"
#include "tsgraphd/store.h"

/* --- the JupiterOne stand-in ------------------------------------------------------------- */

#define STUB_REQS   512
#define STUB_FAULTS 8
#define STUB_JOBS   64
#define JOBS	    "/persister/synchronization/jobs"

struct stub_req {
	char method[8];
	char route[16]; /* create, get, entities, relationships, upload, finalize, abort */
	int job;	/* the job's number, 0 for create */
	char auth[160], account[96], ctype[64];
	char *body;
	size_t len;
};

struct stub_fault {
	const char *route; /* or "any" */
	int status, count, retry_after;
};

static struct stub {
	struct MHD_Daemon *d;
	char url[64];
	pthread_mutex_t mu;
	struct stub_req req[STUB_REQS];
	int n, jobs;
	struct stub_fault faults[STUB_FAULTS];
	int n_faults;
	const char *final_status; /* what a finalized job ends as */
	int pending_polls;	  /* GETs of a finalized job answered FINALIZE_PENDING first */
	int busy_finalize;	  /* finalizes answered 400 (another job of the scope) */
	const char *job_status;	  /* when set, what every GET of a job answers */
	int lost_finalize;	  /* finalizes that finalize but answer 400 (a retry after a
				   * lost answer) */
	bool finalized[STUB_JOBS];
	struct cancel *fire_on_fault; /* fired as an injected fault is answered */
} stub;

struct upload_acc {
	char *data;
	size_t len;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
			     int retry_after)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;
	char n[16];

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	if (retry_after >= 0) {
		snprintf(n, sizeof(n), "%d", retry_after);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, n);
	}
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static void copy_header(struct MHD_Connection *c, const char *name, char *out, size_t size)
{
	const char *v = MHD_lookup_connection_value(c, MHD_HEADER_KIND, name);

	snprintf(out, size, "%s", v ? v : "");
}

/* Under the mutex: the answer to a whole request. */
static enum MHD_Result answer(struct MHD_Connection *c, struct stub_req *q)
{
	char body[256];

	for (int i = 0; i < stub.n_faults; i++) {
		struct stub_fault *f = &stub.faults[i];

		if (f->count > 0 &&
		    (strcmp(f->route, "any") == 0 || strcmp(f->route, q->route) == 0)) {
			f->count--;
			if (stub.fire_on_fault)
				cancel_fire(stub.fire_on_fault);
			return reply(c, (unsigned)f->status, "{\"error\":\"injected\"}",
				     f->retry_after);
		}
	}
	if (strcmp(q->route, "create") == 0) {
		stub.jobs++;
		snprintf(body, sizeof(body),
			 "{\"job\":{\"id\":\"job-%d\",\"status\":\"AWAITING_UPLOADS\"}}",
			 stub.jobs);
		return reply(c, 200, body, -1);
	}
	if (q->job < 1 || q->job >= STUB_JOBS)
		return reply(c, 404, "{\"error\":\"no such job\"}", -1);
	if (strcmp(q->route, "get") == 0) {
		const char *status = stub.final_status;

		if (stub.job_status)
			status = stub.job_status;
		else if (!stub.finalized[q->job])
			status = "AWAITING_UPLOADS";
		else if (stub.pending_polls > 0 && stub.pending_polls--)
			status = "FINALIZE_PENDING";
		snprintf(body, sizeof(body), "{\"job\":{\"id\":\"job-%d\",\"status\":\"%s\"}}",
			 q->job, status);
		return reply(c, 200, body, -1);
	}
	if (strcmp(q->route, "finalize") == 0) {
		if (stub.lost_finalize > 0) {
			stub.lost_finalize--;
			stub.finalized[q->job] = true;
			return reply(c, 400, "{\"error\":\"job is not awaiting uploads\"}", -1);
		}
		if (stub.busy_finalize > 0) {
			stub.busy_finalize--;
			return reply(c, 400, "{\"error\":\"another job is finalizing\"}", -1);
		}
		stub.finalized[q->job] = true;
		return reply(c, 200, "{\"job\":{\"status\":\"FINALIZE_PENDING\"}}", -1);
	}
	return reply(c, 200, "{}", -1);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *data_size, void **con_cls)
{
	struct upload_acc *acc = *con_cls;
	struct stub_req q = { 0 };
	const char *rest;
	enum MHD_Result ret;

	(void)cls, (void)version;
	if (!acc) {
		*con_cls = acc = calloc(1, sizeof(*acc));
		return acc ? MHD_YES : MHD_NO;
	}
	if (*data_size > 0) {
		char *grown = realloc(acc->data, acc->len + *data_size + 1);

		if (!grown)
			return MHD_NO;
		acc->data = grown;
		memcpy(acc->data + acc->len, data, *data_size);
		acc->len += *data_size;
		acc->data[acc->len] = '\0';
		*data_size = 0;
		return MHD_YES;
	}
	snprintf(q.method, sizeof(q.method), "%s", method);
	copy_header(c, "Authorization", q.auth, sizeof(q.auth));
	copy_header(c, "JupiterOne-Account", q.account, sizeof(q.account));
	copy_header(c, "Content-Type", q.ctype, sizeof(q.ctype));
	if (strncmp(url, JOBS, strlen(JOBS)) != 0)
		return reply(c, 404, "{}", -1);
	rest = url + strlen(JOBS);
	if (!*rest) {
		snprintf(q.route, sizeof(q.route), "create");
	} else {
		const char *slash;

		if (sscanf(rest, "/job-%d", &q.job) != 1)
			return reply(c, 404, "{}", -1);
		slash = strchr(rest + 1, '/');
		snprintf(q.route, sizeof(q.route), "%s", slash ? slash + 1 : "get");
	}
	q.body = acc->data ? acc->data : strdup("");
	q.len = acc->len;
	acc->data = NULL;
	pthread_mutex_lock(&stub.mu);
	if (stub.n < STUB_REQS)
		stub.req[stub.n++] = q;
	else
		free(q.body);
	ret = answer(c, &q);
	pthread_mutex_unlock(&stub.mu);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct upload_acc *acc = *con_cls;

	(void)cls, (void)c, (void)toe;
	if (acc) {
		free(acc->data);
		free(acc);
	}
	*con_cls = NULL;
}

static void stub_reset(void)
{
	pthread_mutex_lock(&stub.mu);
	for (int i = 0; i < stub.n; i++)
		free(stub.req[i].body);
	stub.n = stub.n_faults = stub.pending_polls = stub.busy_finalize = stub.lost_finalize = 0;
	stub.final_status = "FINISHED";
	stub.job_status = NULL;
	stub.fire_on_fault = NULL;
	memset(stub.finalized, 0, sizeof(stub.finalized));
	pthread_mutex_unlock(&stub.mu);
}

static void stub_fault(const char *route, int status, int count, int retry_after)
{
	pthread_mutex_lock(&stub.mu);
	stub.faults[stub.n_faults++] = (struct stub_fault){
		.route = route, .status = status, .count = count, .retry_after = retry_after
	};
	pthread_mutex_unlock(&stub.mu);
}

static int count_route(const char *route)
{
	int n = 0;

	for (int i = 0; i < stub.n; i++)
		n += strcmp(stub.req[i].route, route) == 0;
	return n;
}

static int group_setup(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	const union MHD_DaemonInfo *info;

	(void)state;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	pthread_mutex_init(&stub.mu, NULL);
	stub.d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
				  0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, &a,
				  MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_END);
	if (!stub.d)
		return -1;
	info = MHD_get_daemon_info(stub.d, MHD_DAEMON_INFO_BIND_PORT);
	snprintf(stub.url, sizeof(stub.url), "http://127.0.0.1:%u", (unsigned)info->port);
	stub_reset();
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	stub_reset();
	MHD_stop_daemon(stub.d);
	curl_global_cleanup();
	return 0;
}

/* --- the store ------------------------------------------------------------------------- */

struct fixture {
	char dir[64];
	struct store *s;
	sqlite3 *db; /* a second connection, to write outbox rows as they come */
	struct config_sink cfg;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct store_options so = { .synchronous_full = false };
	char err[STORE_ERR_MAX], db[160];

	snprintf(f->dir, sizeof(f->dir), "/tmp/tsgraphd-j1-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(db, sizeof(db), "%s/state.db", f->dir);
	if (store_open(db, &so, &f->s, err) < 0 || sqlite3_open(db, &f->db) != SQLITE_OK)
		return -1;
	sqlite3_busy_timeout(f->db, 5000);
	f->cfg = (struct config_sink){
		.name = "j1",
		.type = SINK_JUPITERONE,
		.url = stub.url,
		.timeout = 5,
		.j1 = { .account = "acct-1",
			.token = "tok-0123456789",
			.scope = "threatstack-org",
			.batch_bytes = 4096,
			.job_changes = 1000 },
	};
	stub_reset();
	stub.jobs = 0; /* job-1 is each test's first */
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	sqlite3_close(f->db);
	store_close(f->s);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	if (system(cmd) != 0)
		return -1;
	free(f);
	return 0;
}

/* Appends one outbox row. An entity's JSON is {"_key":KEY,"v":V}; a relationship's has
 * _fromEntityKey too. pad makes the JSON that many bytes longer. */
static void add(struct fixture *f, const char *op, const char *kind, const char *key, int v,
		size_t pad)
{
	sqlite3_stmt *st = NULL;
	char *json = NULL;
	bool del = strcmp(op, "delete") == 0;

	if (!del) {
		char *p = calloc(1, pad + 1);

		assert_non_null(p);
		memset(p, 'x', pad);
		assert_true(asprintf(&json, "{\"_key\":\"%s\",\"pad\":\"%s\",\"v\":%d}", key, p,
				     v) > 0);
		free(p);
	}
	assert_int_equal(sqlite3_prepare_v2(f->db,
					    "INSERT INTO outbox (op, kind, key, type, class, json,"
					    " source, created_at) VALUES (?1, ?2, ?3, 't', 'C', ?4,"
					    " 'poll', 1)",
					    -1, &st, NULL),
			 SQLITE_OK);
	sqlite3_bind_text(st, 1, op, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, kind, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, key, -1, SQLITE_STATIC);
	if (json)
		sqlite3_bind_text(st, 4, json, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(st, 4);
	assert_int_equal(sqlite3_step(st), SQLITE_DONE);
	sqlite3_finalize(st);
	free(json);
}

static int64_t cursor(struct fixture *f)
{
	int64_t c = -1;

	assert_int_equal(store_cursor_get(f->s, "j1", &c), 0);
	return c;
}

/* --- bodies, recorded ------------------------------------------------------------------ */

#define BODIES_MAX 256

struct bodies {
	int n;
	enum sink_j1_upload what[BODIES_MAX];
	json_object *body[BODIES_MAX];
	size_t len[BODIES_MAX];
};

static int record(enum sink_j1_upload what, const char *body, size_t len, void *ud)
{
	struct bodies *b = ud;

	assert_true(b->n < BODIES_MAX);
	assert_int_equal(strlen(body), len);
	b->what[b->n] = what;
	b->len[b->n] = len;
	b->body[b->n] = json_tokener_parse(body);
	assert_non_null(b->body[b->n]); /* every body is one JSON object */
	b->n++;
	return 0;
}

static void bodies_free(struct bodies *b)
{
	for (int i = 0; i < b->n; i++)
		json_object_put(b->body[i]);
	b->n = 0;
}

/* Every _key of member in body i, in order, as one "k1 k2 ..." string; each object's v is
 * appended as "k=v" when with_v. */
static void keys_of(json_object *body, const char *member, bool with_v, char *out, size_t size)
{
	json_object *arr;
	size_t n = 0;

	out[0] = '\0';
	if (!json_object_object_get_ex(body, member, &arr))
		return;
	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		json_object *o = json_object_array_get_idx(arr, i), *k, *v;

		assert_true(json_object_object_get_ex(o, "_key", &k));
		n += (size_t)snprintf(out + n, size - n, "%s%s", n ? " " : "",
				      json_object_get_string(k));
		if (with_v && json_object_object_get_ex(o, "v", &v))
			n += (size_t)snprintf(out + n, size - n, "=%d", json_object_get_int(v));
	}
}

static void window_and_bodies(struct fixture *f, int64_t after, int64_t limit, size_t batch,
			      struct sink_j1_window *w, struct bodies *b)
{
	char err[SINK_ERR_MAX];

	assert_int_equal(sink_jupiterone_window(f->s, after, limit, batch, w, err), 0);
	assert_int_equal(sink_jupiterone_bodies(f->s, w, batch, record, b, err), 0);
}

/* --- coalescing and bodies -------------------------------------------------------------- */

static void test_coalescing(void **state)
{
	struct fixture *f = *state;
	struct sink_j1_window w;
	struct bodies b = { 0 };
	char keys[1024];

	add(f, "create", "entity", "e1", 1, 0); /* 1 */
	add(f, "update", "entity", "e1", 2, 0); /* 2: create then update: one upsert, v2 */
	add(f, "create", "entity", "e2", 1, 0); /* 3 */
	add(f, "delete", "entity", "e2", 0, 0); /* 4: create then delete: a delete */
	add(f, "delete", "entity", "e3", 0, 0); /* 5 */
	add(f, "create", "entity", "e3", 3, 0); /* 6: delete then create: an upsert */
	add(f, "update", "entity", "e4", 1, 0); /* 7 */
	add(f, "update", "entity", "e4", 2, 0); /* 8 */
	add(f, "update", "entity", "e4", 3, 0); /* 9: the last of three updates */
	add(f, "create", "relationship", "e1|has|e3", 1, 0); /* 10 */
	add(f, "delete", "relationship", "e2|has|e1", 0, 0); /* 11 */
	add(f, "delete", "entity", "e5", 0, 0);		     /* 12 */
	add(f, "update", "entity", "e1", 7, 0);		     /* 13: e1 again, later */
	/* Same key text, other kind: a different object. */
	add(f, "create", "relationship", "e4", 1, 0); /* 14 */

	window_and_bodies(f, 0, 1000, 4096, &w, &b);
	assert_int_equal(w.after_seq, 0);
	assert_int_equal(w.upto_seq, 14);
	assert_int_equal(w.rows, 14);
	assert_int_equal(w.entities, 3);
	assert_int_equal(w.relationships, 2);
	assert_int_equal(w.delete_relationships, 1);
	assert_int_equal(w.delete_entities, 2);
	/* One body per part, in the order entities, relationships, deletes. */
	assert_int_equal(b.n, 3);
	assert_int_equal(b.what[0], SINK_J1_ENTITIES);
	assert_int_equal(b.what[1], SINK_J1_RELATIONSHIPS);
	assert_int_equal(b.what[2], SINK_J1_DELETES);
	/* Each the last change of its key, in the order of those last changes. */
	keys_of(b.body[0], "entities", true, keys, sizeof(keys));
	assert_string_equal(keys, "e3=3 e4=3 e1=7");
	keys_of(b.body[1], "relationships", true, keys, sizeof(keys));
	assert_string_equal(keys, "e1|has|e3=1 e4=1");
	keys_of(b.body[2], "deleteRelationships", false, keys, sizeof(keys));
	assert_string_equal(keys, "e2|has|e1");
	keys_of(b.body[2], "deleteEntities", false, keys, sizeof(keys));
	assert_string_equal(keys, "e2 e5");
	assert_int_equal(json_object_object_length(b.body[0]), 1);
	assert_int_equal(json_object_object_length(b.body[2]), 2);
	bodies_free(&b);

	/* The next window starts after this one: nothing. */
	window_and_bodies(f, 14, 1000, 4096, &w, &b);
	assert_int_equal(w.rows, 0);
	assert_int_equal(w.upto_seq, 14);
	assert_int_equal(b.n, 0);
}

static void test_window_limit(void **state)
{
	struct fixture *f = *state;
	struct sink_j1_window w;
	struct bodies b = { 0 };
	char keys[256];

	add(f, "create", "entity", "e1", 1, 0); /* 1 */
	add(f, "create", "entity", "e2", 1, 0); /* 2 */
	add(f, "create", "entity", "e3", 1, 0); /* 3 */
	add(f, "update", "entity", "e1", 2, 0); /* 4 */
	add(f, "delete", "entity", "e2", 0, 0); /* 5 */

	/* Coalescing stays inside the window: the first three rows as they were. */
	window_and_bodies(f, 0, 3, 4096, &w, &b);
	assert_int_equal(w.upto_seq, 3);
	assert_int_equal(w.rows, 3);
	assert_int_equal(b.n, 1);
	keys_of(b.body[0], "entities", true, keys, sizeof(keys));
	assert_string_equal(keys, "e1=1 e2=1 e3=1");
	bodies_free(&b);
	window_and_bodies(f, 3, 3, 4096, &w, &b);
	assert_int_equal(w.upto_seq, 5);
	assert_int_equal(w.rows, 2);
	assert_int_equal(b.n, 2);
	keys_of(b.body[0], "entities", true, keys, sizeof(keys));
	assert_string_equal(keys, "e1=2");
	keys_of(b.body[1], "deleteEntities", false, keys, sizeof(keys));
	assert_string_equal(keys, "e2");
	bodies_free(&b);
	/* Rows appended after a window was taken do not join it. */
	assert_int_equal(sink_jupiterone_window(f->s, 3, 10, 4096, &w, (char[SINK_ERR_MAX]){ 0 }),
			 0);
	add(f, "create", "entity", "e9", 1, 0);
	assert_int_equal(
		sink_jupiterone_bodies(f->s, &w, 4096, record, &b, (char[SINK_ERR_MAX]){ 0 }), 0);
	keys_of(b.body[0], "entities", true, keys, sizeof(keys));
	assert_string_equal(keys, "e1=2");
	bodies_free(&b);
}

/* The first _key of body i's array member. */
static size_t first_item_len(json_object *body, const char *member)
{
	json_object *arr;

	assert_true(json_object_object_get_ex(body, member, &arr));
	return strlen(json_object_to_json_string_ext(json_object_array_get_idx(arr, 0),
						     JSON_C_TO_STRING_PLAIN));
}

static void test_batch_split_by_bytes(void **state)
{
	struct fixture *f = *state;
	const size_t batch = 1024;
	struct sink_j1_window w;
	struct bodies b = { 0 };
	char key[32], keys[8192], want[8192];
	size_t n = 0;
	int e = 0, r = 0, dr = 0, de = 0;

	for (int i = 0; i < 60; i++) {
		snprintf(key, sizeof(key), "entity-%02d", i);
		add(f, "create", "entity", key, i, (size_t)(i * 7 % 90)); /* 30..120 bytes */
		n += (size_t)snprintf(want + n, sizeof(want) - n, "%s%s", i ? " " : "", key);
	}
	for (int i = 0; i < 40; i++) {
		snprintf(key, sizeof(key), "rel-%02d", i);
		add(f, "create", "relationship", key, i, 60);
	}
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "gone-rel-%02d", i);
		add(f, "delete", "relationship", key, 0, 0);
	}
	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof(key), "gone-ent-%02d", i);
		add(f, "delete", "entity", key, 0, 0);
	}
	window_and_bodies(f, 0, 1000, batch, &w, &b);
	assert_true(b.n > 6);
	n = 0;
	keys[0] = '\0';
	for (int i = 0; i < b.n; i++) {
		const char *member = b.what[i] == SINK_J1_ENTITIES	  ? "entities"
				     : b.what[i] == SINK_J1_RELATIONSHIPS ? "relationships"
									  : NULL;
		json_object *arr;

		/* never over batch_bytes */
		assert_true(b.len[i] <= batch);
		/* parts in order, never mixed except the two kinds of deletes */
		assert_true(i == 0 || b.what[i] >= b.what[i - 1]);
		if (b.what[i] == SINK_J1_ENTITIES) {
			char part[4096];

			e++;
			keys_of(b.body[i], "entities", false, part, sizeof(part));
			n += (size_t)snprintf(keys + n, sizeof(keys) - n, "%s%s", n ? " " : "",
					      part);
		} else if (b.what[i] == SINK_J1_RELATIONSHIPS) {
			r++;
		} else {
			/* relationships deletes all before any entity delete */
			if (json_object_object_get_ex(b.body[i], "deleteRelationships", &arr)) {
				assert_int_equal(de, 0);
				dr++;
			}
			if (json_object_object_get_ex(b.body[i], "deleteEntities", &arr))
				de++;
		}
		/* packed greedily: the next body's first item would not have fitted */
		if (member && i + 1 < b.n && b.what[i + 1] == b.what[i])
			assert_true(b.len[i] + 1 + first_item_len(b.body[i + 1], member) > batch);
	}
	/* every entity once, in order */
	assert_string_equal(keys, want);
	assert_true(e >= 3 && r >= 2 && dr >= 1 && de >= 1);
	bodies_free(&b);
}

static void test_object_larger_than_batch(void **state)
{
	struct fixture *f = *state;
	struct sink_j1_window w;
	struct bodies b = { 0 };
	char err[SINK_ERR_MAX];
	/* {"_key":"e1","pad":"","v":1} is 28 bytes; {"entities":[ ]} wraps it in 15 more */
	const size_t exact = 28 + 100 + 15;

	add(f, "create", "entity", "e1", 1, 100);
	/* exactly batch_bytes: fits */
	window_and_bodies(f, 0, 10, exact, &w, &b);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.len[0], exact);
	bodies_free(&b);
	/* one byte less: the window is refused with a clear error, before any request */
	assert_int_equal(sink_jupiterone_window(f->s, 0, 10, exact - 1, &w, err), -EMSGSIZE);
	assert_non_null(strstr(err, "entity e1 is 128 bytes: over batch_bytes (142)"));
	assert_non_null(strstr(err, "raise batch_bytes"));
	/* and so are the bodies */
	w = (struct sink_j1_window){ .after_seq = 0, .upto_seq = 1, .rows = 1, .entities = 1 };
	assert_int_equal(sink_jupiterone_bodies(f->s, &w, exact - 1, record, &b, err), -EMSGSIZE);
	assert_non_null(strstr(err, "e1 is 128 bytes: over batch_bytes (142)"));
	assert_int_equal(b.n, 0);
}

/* Two 28-byte entities make {"entities":[A,B]}: 13 + 28 + 1 + 28 + 2 = 72 bytes. */
static void test_batch_boundary(void **state)
{
	struct fixture *f = *state;
	struct sink_j1_window w;
	struct bodies b = { 0 };

	add(f, "create", "entity", "e1", 1, 0);
	add(f, "create", "entity", "e2", 2, 0);
	window_and_bodies(f, 0, 10, 72, &w, &b);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.len[0], 72);
	bodies_free(&b);
	window_and_bodies(f, 0, 10, 71, &w, &b);
	assert_int_equal(b.n, 2);
	assert_int_equal(b.len[0], 43);
	assert_int_equal(b.len[1], 43);
	bodies_free(&b);
	/* the same at the switch from relationship to entity deletes: {"deleteRelationships":
	 * [{"_key":"r1"}],"deleteEntities":[{"_key":"e3"}]} is 24 + 13 + 20 + 13 + 2 = 72 */
	add(f, "delete", "relationship", "r1", 0, 0);
	add(f, "delete", "entity", "e3", 0, 0);
	window_and_bodies(f, 2, 10, 72, &w, &b);
	assert_int_equal(b.n, 1);
	assert_int_equal(b.len[0], 72);
	bodies_free(&b);
	window_and_bodies(f, 2, 10, 71, &w, &b);
	assert_int_equal(b.n, 2);
	assert_int_equal(b.len[0], 39); /* {"deleteRelationships":[{"_key":"r1"}]} */
	assert_int_equal(b.len[1], 34);
	bodies_free(&b);
}

static void test_job_body(void **state)
{
	struct buf out;
	json_object *o, *v;

	(void)state;
	buf_init(&out, 1024);
	assert_int_equal(sink_jupiterone_job_body("threatstack-\"x\"\\y", &out), 0);
	o = json_tokener_parse(out.data);
	assert_non_null(o);
	assert_true(json_object_object_get_ex(o, "scope", &v));
	assert_string_equal(json_object_get_string(v), "threatstack-\"x\"\\y");
	assert_true(json_object_object_get_ex(o, "syncMode", &v));
	assert_string_equal(json_object_get_string(v), "CREATE_OR_UPDATE");
	assert_true(json_object_object_get_ex(o, "source", &v));
	assert_string_equal(json_object_get_string(v), "api");
	assert_int_equal(json_object_object_length(o), 3);
	json_object_put(o);
	buf_free(&out);
}

/* JupiterOne's answer about a job: the id must be safe in a URL, outputs only on success. */
static void test_parse_job(void **state)
{
	static const char created[] =
		"{\"job\":{\"id\":\"f1ee4c3a-0a6b_4e4c\",\"status\":\"AWAITING_UPLOADS\"}}";
	char id[SINK_J1_JOB_ID_MAX + 1], status[8], long_id[SINK_J1_JOB_ID_MAX + 40];
	int n;

	(void)state;
	assert_int_equal(sink_jupiterone_parse_job(created, strlen(created), id, NULL, 0), 0);
	assert_string_equal(id, "f1ee4c3a-0a6b_4e4c");
	assert_int_equal(
		sink_jupiterone_parse_job(created, strlen(created), NULL, status, sizeof(status)),
		0);
	assert_string_equal(status, "AWAITIN"); /* cut to the buffer */
	/* only len bytes are read: the same answer cut short is not JSON */
	snprintf(id, sizeof(id), "kept");
	assert_int_equal(sink_jupiterone_parse_job(created, 30, id, NULL, 0), -EBADMSG);
	assert_string_equal(id, "kept");
#define REFUSED(json)                                                                      \
	assert_int_equal(                                                                  \
		sink_jupiterone_parse_job(json, strlen(json), id, status, sizeof(status)), \
		-EBADMSG)
	REFUSED("{\"job\":{\"id\":\"a/b\",\"status\":\"FINISHED\"}}");
	REFUSED("{\"job\":{\"id\":\"a\\u0000b\",\"status\":\"FINISHED\"}}"); /* not job "a" */
	REFUSED("{\"job\":{\"id\":\"ok\",\"status\":\"FINISHED\\u0000x\"}}");
	REFUSED("{\"job\":{\"id\":\"\",\"status\":\"FINISHED\"}}");
	REFUSED("{\"job\":{\"id\":7,\"status\":\"FINISHED\"}}");
	REFUSED("{\"job\":{\"id\":\"ok\",\"status\":null}}");
	REFUSED("{\"job\":[]}");
	REFUSED("{\"error\":\"unauthorized\"}");
	REFUSED("[[[[[[[[[[[[[[[[[[[[{\"job\":{}}]]]]]]]]]]]]]]]]]]]]"); /* deeper than 16 */
	REFUSED("");
#undef REFUSED
	assert_string_equal(id, "kept"); /* nothing written by a refusal */
	n = snprintf(long_id, sizeof(long_id), "{\"job\":{\"id\":\"");
	memset(long_id + n, 'a', SINK_J1_JOB_ID_MAX + 1);
	snprintf(long_id + n + SINK_J1_JOB_ID_MAX + 1,
		 sizeof(long_id) - (size_t)n - SINK_J1_JOB_ID_MAX - 1, "\"}}");
	assert_int_equal(sink_jupiterone_parse_job(long_id, strlen(long_id), id, NULL, 0),
			 -EBADMSG);
}

/* --- the drain against the stand-in ------------------------------------------------------- */

static int drain_with(struct fixture *f, struct cancel *c, int64_t *ret_n, char *err)
{
	struct sink_jupiterone *j = NULL;
	int r;

	assert_int_equal(sink_jupiterone_open(&f->cfg, c, &j, err), 0);
	r = sink_jupiterone_drain(j, f->s, ret_n, err);
	sink_jupiterone_close(j);
	return r;
}

static int drain(struct fixture *f, int64_t *ret_n, char *err)
{
	return drain_with(f, NULL, ret_n, err);
}

static void test_drain_one_job(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX], keys[256];
	int64_t n = -1;
	const char *want[] = { "POST create", "POST entities", "POST relationships",
			       "POST upload", "POST finalize", "GET get",
			       "GET get",     "GET get" };
	json_object *o;

	add(f, "create", "entity", "e1", 1, 0);
	add(f, "update", "entity", "e1", 2, 0);
	add(f, "create", "relationship", "e1|has|e2", 1, 0);
	add(f, "delete", "entity", "e9", 0, 0);
	stub.pending_polls = 2;
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(n, 4);
	assert_int_equal(cursor(f), 4);
	assert_int_equal(stub.n, (int)ARRAY_SIZE(want));
	for (int i = 0; i < stub.n; i++) {
		char got[32];

		snprintf(got, sizeof(got), "%s %s", stub.req[i].method, stub.req[i].route);
		assert_string_equal(got, want[i]);
		assert_string_equal(stub.req[i].auth, "Bearer tok-0123456789");
		assert_string_equal(stub.req[i].account, "acct-1");
		if (strcmp(stub.req[i].method, "POST") == 0)
			assert_string_equal(stub.req[i].ctype, "application/json");
		if (i > 0)
			assert_int_equal(stub.req[i].job, 1);
	}
	o = json_tokener_parse(stub.req[0].body);
	assert_non_null(o);
	assert_string_equal(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN),
			    "{\"scope\":\"threatstack-org\",\"source\":\"api\","
			    "\"syncMode\":\"CREATE_OR_UPDATE\"}");
	json_object_put(o);
	/* uploaded as stored: the row's JSON byte for byte */
	assert_string_equal(stub.req[1].body,
			    "{\"entities\":[{\"_key\":\"e1\",\"pad\":\"\",\"v\":2}]}");
	o = json_tokener_parse(stub.req[3].body);
	keys_of(o, "deleteEntities", false, keys, sizeof(keys));
	assert_string_equal(keys, "e9");
	json_object_put(o);
	assert_string_equal(stub.req[4].body, "{}");

	/* Nothing new: no request at all. */
	stub_reset();
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(n, 0);
	assert_int_equal(stub.n, 0);
}

static void test_drain_several_jobs(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX], key[16];
	int64_t n = -1;

	for (int i = 0; i < 7; i++) {
		snprintf(key, sizeof(key), "e%d", i);
		add(f, "create", "entity", key, i, 0);
	}
	f->cfg.j1.job_changes = 3;
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(n, 7);
	assert_int_equal(cursor(f), 7);
	assert_int_equal(count_route("create"), 3);
	assert_int_equal(count_route("finalize"), 3);
	assert_int_equal(count_route("entities"), 3);
	/* each job finished before the next was created */
	for (int i = 0, last_job = 0; i < stub.n; i++) {
		if (strcmp(stub.req[i].route, "create") == 0)
			assert_true(i == 0 || strcmp(stub.req[i - 1].route, "get") == 0);
		else
			assert_true(stub.req[i].job >= last_job);
		last_job = stub.req[i].job ? stub.req[i].job : last_job;
	}
}

/* Outbox rows pruned before the sink delivered them (it was left out of the config that
 * pruned, renamed, or added after): the drain refuses with the range, sends nothing, and
 * the error is what status shows. A sink added to a pruned store too. */
static void test_pruned_changes_refused(void **state)
{
	struct fixture *f = *state;
	struct store_sink_state st;
	char err[SINK_ERR_MAX];
	int64_t n = -1, pruned = 0;
	struct sink *k = NULL;
	struct config c = { 0 };

	add(f, "create", "entity", "e1", 1, 0);
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(cursor(f), 1);
	add(f, "create", "entity", "e2", 1, 0);
	add(f, "create", "entity", "e3", 1, 0);
	/* a prune by a config without this sink */
	assert_int_equal(store_outbox_prune(f->s, NULL, 0, INT64_MAX, &pruned), 0);
	assert_int_equal(pruned, 3);
	stub_reset();
	assert_int_equal(drain(f, &n, err), -ESTALE);
	assert_non_null(strstr(err, "changes 2..3 were pruned before this sink delivered them: "
				    "JupiterOne misses them"));
	assert_int_equal(stub.n, 0);
	assert_int_equal(cursor(f), 1);
	/* still, once newer changes arrive, and recorded for status */
	add(f, "update", "entity", "e1", 2, 0);
	assert_int_equal(sink_open(&c, &f->cfg, NULL, &k, err), 0);
	assert_int_equal(sink_drain(k, f->s, &n, err), -ESTALE);
	sink_close(k);
	assert_non_null(strstr(err, "changes 2..3 were pruned"));
	assert_int_equal(store_sink_state_get(f->s, "j1", &st), 0);
	assert_int_equal(st.failures, 1);
	assert_string_equal(st.last_error, err);
	assert_int_equal(stub.n, 0);
	/* a sink new to this store: its first change is gone too */
	f->cfg.name = "j1-new";
	assert_int_equal(drain(f, &n, err), -ESTALE);
	assert_non_null(strstr(err, "changes 1..3 were pruned"));
	assert_int_equal(stub.n, 0);
}

static void test_retries_429_and_5xx(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	int64_t n = -1;

	add(f, "create", "entity", "e1", 1, 0);
	add(f, "create", "relationship", "r1", 1, 0);
	stub_fault("create", 503, 1, -1);
	stub_fault("entities", 429, 1, 0); /* Retry-After: 0 */
	stub_fault("relationships", 500, 2, -1);
	stub_fault("get", 502, 1, -1);
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(cursor(f), 2);
	assert_int_equal(count_route("create"), 2);
	assert_int_equal(count_route("entities"), 2);
	assert_int_equal(count_route("relationships"), 3);
	assert_int_equal(count_route("abort"), 0);
	/* the retried upload is the same body */
	for (int i = 0, first = -1; i < stub.n; i++) {
		if (strcmp(stub.req[i].route, "relationships") != 0)
			continue;
		if (first < 0)
			first = i;
		assert_string_equal(stub.req[i].body, stub.req[first].body);
	}
}

static void test_failed_upload_aborts_and_next_drain_resends(void **state)
{
	struct fixture *f = *state;
	struct store_sink_state st;
	struct sink *k = NULL;
	char err[SINK_ERR_MAX], first[256];
	int64_t n = -1;

	add(f, "create", "entity", "e1", 1, 0);
	add(f, "create", "relationship", "r1", 1, 0);
	/* retries exhausted on the relationships upload */
	stub_fault("relationships", 503, 5, -1);
	assert_int_equal(sink_open(NULL, &f->cfg, NULL, &k, err), 0);
	assert_int_equal(sink_drain(k, f->s, &n, err), -EAGAIN);
	assert_non_null(strstr(err, "HTTP 503 after 5 tries"));
	assert_int_equal(count_route("relationships"), 5);
	assert_int_equal(count_route("finalize"), 0);
	assert_int_equal(count_route("abort"), 1);
	assert_int_equal(stub.req[stub.n - 1].job, 1);
	assert_non_null(strstr(stub.req[stub.n - 1].body, "\"reason\""));
	assert_int_equal(cursor(f), 0);
	/* status shows the failure */
	assert_int_equal(store_sink_state_get(f->s, "j1", &st), 0);
	assert_int_equal(st.failures, 1);
	assert_non_null(strstr(st.last_error, "HTTP 503"));
	snprintf(first, sizeof(first), "%s", stub.req[1].body);

	/* The next drain: a new job with the same changes. */
	stub_reset();
	assert_int_equal(sink_drain(k, f->s, &n, err), 0);
	sink_close(k);
	assert_int_equal(n, 2);
	assert_int_equal(cursor(f), 2);
	assert_int_equal(stub.req[1].job, 2);
	assert_string_equal(stub.req[1].body, first);
	assert_int_equal(store_sink_state_get(f->s, "j1", &st), 0);
	assert_int_equal(st.failures, 0);
	assert_true(st.last_ok > 0);
}

static void test_job_ending_in_error(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	int64_t n = -1;

	add(f, "create", "entity", "e1", 1, 0);
	stub.final_status = "ERROR_BAD_DATA";
	assert_int_equal(drain(f, &n, err), -EPROTO);
	assert_non_null(strstr(err, "job job-1 ended ERROR_BAD_DATA"));
	assert_int_equal(cursor(f), 0);
	assert_int_equal(count_route("abort"), 0); /* over already */
	stub_reset();
	stub.final_status = "ABORTED";
	assert_int_equal(drain(f, &n, err), -EPROTO);
	assert_non_null(strstr(err, "ended ABORTED"));
	assert_int_equal(cursor(f), 0);
}

static void test_finalize_waits_for_busy_scope(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	int64_t n = -1;

	add(f, "create", "entity", "e1", 1, 0);
	stub.busy_finalize = 2;
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(cursor(f), 1);
	assert_int_equal(count_route("finalize"), 3);
	assert_int_equal(count_route("abort"), 0);
	assert_int_equal(count_route("create"), 1);
}

static void test_bad_request_fails_without_retry(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	int64_t n = -1;

	add(f, "create", "entity", "e1", 1, 0);
	stub_fault("entities", 400, 1, -1);
	assert_int_equal(drain(f, &n, err), -EPROTO);
	assert_non_null(strstr(err, "uploading entities: HTTP 400: {\"error\":\"injected\"}"));
	assert_int_equal(count_route("entities"), 1);
	assert_int_equal(count_route("abort"), 1);
	assert_int_equal(cursor(f), 0);
	/* finalize refused and the job failed: no wait loop */
	stub_reset();
	stub_fault("finalize", 400, 1, -1);
	stub.job_status = "ERROR_BAD_DATA";
	assert_int_equal(drain(f, &n, err), -EPROTO);
	assert_non_null(strstr(err, "finalizing the job: HTTP 400"));
	assert_int_equal(count_route("finalize"), 1);
	assert_int_equal(cursor(f), 0);
}

static void test_finalize_answer_lost(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	int64_t n = -1;

	/* A finalize that got through but whose answer was lost: the retry is answered 400, the
	 * job is on its way; follow it rather than fail or wait. */
	add(f, "create", "entity", "e1", 1, 0);
	stub.lost_finalize = 1;
	stub.pending_polls = 1;
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(cursor(f), 1);
	assert_int_equal(count_route("finalize"), 1);
	assert_int_equal(count_route("abort"), 0);
}

static void test_token_refused(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX];
	int64_t n = -1;

	add(f, "create", "entity", "e1", 1, 0);
	stub_fault("create", 401, 1, -1);
	assert_int_equal(drain(f, &n, err), -EACCES);
	assert_non_null(
		strstr(err, "JupiterOne refused the token or the account acct-1 (HTTP 401)"));
	assert_null(strstr(err, "tok-0123456789"));
	assert_int_equal(stub.n, 1);
	assert_int_equal(cursor(f), 0);
}

static void test_unreachable(void **state)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct fixture *f = *state;
	socklen_t alen = sizeof(a);
	char err[SINK_ERR_MAX], url[64];
	int64_t n = -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	/* a port that was free a moment ago and has no listener */
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u", ntohs(a.sin_port));
	f->cfg.url = url;
	add(f, "create", "entity", "e1", 1, 0);
	assert_int_equal(drain(f, &n, err), -ECONNREFUSED);
	assert_non_null(strstr(err, "cannot connect"));
	assert_non_null(strstr(err, "the last of its tries"));
	assert_int_equal(cursor(f), 0);
}

static void *fire_later(void *c)
{
	usleep(300 * 1000);
	cancel_fire(c);
	return NULL;
}

static void test_cancel_while_waiting(void **state)
{
	struct fixture *f = *state;
	struct cancel *c = NULL;
	char err[SINK_ERR_MAX];
	int64_t n = -1, t0;
	pthread_t th;

	add(f, "create", "entity", "e1", 1, 0);
	stub_fault("entities", 429, 1, 60); /* Retry-After: 60 s */
	assert_int_equal(cancel_new(&c), 0);
	assert_int_equal(pthread_create(&th, NULL, fire_later, c), 0);
	t0 = monotonic_ms();
	assert_int_equal(drain_with(f, c, &n, err), -ECANCELED);
	assert_true(monotonic_ms() - t0 < 5000);
	pthread_join(th, NULL);
	cancel_free(c);
	assert_int_equal(cursor(f), 0);
}

/* A drain stopped mid-job leaves the job open and named in the store; the next drain
 * aborts it (it still awaits uploads) before sending the window again in a new job, and
 * forgets it once the cursor moves. */
static void test_job_left_open_is_aborted(void **state)
{
	struct fixture *f = *state;
	struct cancel *c = NULL;
	char err[SINK_ERR_MAX], job[SINK_J1_JOB_ID_MAX + 1];
	int64_t n = -1;
	int aborts = 0;

	add(f, "create", "entity", "e1", 1, 0);
	stub_fault("entities", 429, 1, 60); /* Retry-After: 60 s, cancelled as it is answered */
	assert_int_equal(cancel_new(&c), 0);
	stub.fire_on_fault = c;
	assert_int_equal(drain_with(f, c, &n, err), -ECANCELED);
	stub.fire_on_fault = NULL;
	cancel_free(c);
	assert_int_equal(count_route("abort"), 0);
	assert_int_equal(store_sink_job_get(f->s, "j1", job, sizeof(job)), 0);
	assert_string_equal(job, "job-1");

	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(n, 1);
	assert_int_equal(cursor(f), 1);
	for (int i = 0; i < stub.n; i++) {
		if (strcmp(stub.req[i].route, "abort") != 0)
			continue;
		aborts++;
		assert_int_equal(stub.req[i].job, 1);
		assert_non_null(strstr(stub.req[i].body, "left open"));
	}
	assert_int_equal(aborts, 1);
	assert_int_equal(count_route("finalize"), 1); /* job 2's */
	assert_int_equal(store_sink_job_get(f->s, "j1", job, sizeof(job)), 0);
	assert_string_equal(job, "");
	/* a later drain has nothing to abort */
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(count_route("abort"), 1);
}

/* A job finalizing when its process died is left to finish: not aborted, only forgotten. */
static void test_job_left_finalizing_is_forgotten(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX], job[SINK_J1_JOB_ID_MAX + 1];
	int64_t n = -1;

	add(f, "create", "entity", "e1", 1, 0);
	assert_int_equal(store_sink_job_set(f->s, "j1", "job-7"), 0);
	stub.jobs = 7;		  /* the next job created is job-8 */
	stub.finalized[7] = true; /* job-7 was finalized... */
	stub.pending_polls = 1;	  /* ...and is still FINALIZE_PENDING when read */
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(count_route("abort"), 0);
	assert_int_equal(count_route("finalize"), 1); /* job-8's */
	assert_int_equal(store_sink_job_get(f->s, "j1", job, sizeof(job)), 0);
	assert_string_equal(job, "");
	assert_int_equal(cursor(f), 1);
}

/* A job left open that JupiterOne cannot be asked about (503 after every try) stays named
 * and the drain fails; one it no longer knows (404), or an id that is none, is forgotten and
 * the drain goes on. */
static void test_job_left_open_unreadable(void **state)
{
	struct fixture *f = *state;
	char err[SINK_ERR_MAX], job[SINK_J1_JOB_ID_MAX + 1];
	int64_t n = -1;

	add(f, "create", "entity", "e1", 1, 0);
	assert_int_equal(store_sink_job_set(f->s, "j1", "job-9"), 0);
	stub_fault("get", 503, 5, -1);
	assert_true(drain(f, &n, err) < 0);
	assert_non_null(strstr(err, "HTTP 503"));
	assert_int_equal(count_route("get"), 5);
	assert_int_equal(count_route("create"), 0);
	assert_int_equal(store_sink_job_get(f->s, "j1", job, sizeof(job)), 0);
	assert_string_equal(job, "job-9");
	assert_int_equal(cursor(f), 0);

	assert_int_equal(store_sink_job_set(f->s, "j1", "job-99"), 0); /* 404: unknown */
	assert_int_equal(drain(f, &n, err), 0);
	assert_int_equal(count_route("abort"), 0);
	assert_int_equal(cursor(f), 1);
	assert_int_equal(store_sink_job_get(f->s, "j1", job, sizeof(job)), 0);
	assert_string_equal(job, "");

	add(f, "update", "entity", "e1", 2, 0);
	assert_int_equal(store_sink_job_set(f->s, "j1", "job/../x"), 0); /* not an id */
	stub_reset();
	assert_int_equal(drain(f, &n, err), 0);
	for (int i = 0; i < stub.n; i++) /* nothing asked of the id that is none */
		if (strcmp(stub.req[i].route, "get") == 0)
			assert_int_equal(stub.req[i].job, stub.jobs);
	assert_int_equal(count_route("abort"), 0);
	assert_int_equal(cursor(f), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_coalescing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_window_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_split_by_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_object_larger_than_batch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batch_boundary, setup, teardown),
		cmocka_unit_test(test_job_body),
		cmocka_unit_test(test_parse_job),
		cmocka_unit_test_setup_teardown(test_drain_one_job, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_several_jobs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pruned_changes_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retries_429_and_5xx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_left_open_is_aborted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_left_finalizing_is_forgotten, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_job_left_open_unreadable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_upload_aborts_and_next_drain_resends,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_job_ending_in_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_finalize_waits_for_busy_scope, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_bad_request_fails_without_retry, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_finalize_answer_lost, setup, teardown),
		cmocka_unit_test_setup_teardown(test_token_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_while_waiting, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
