/* fake_jupiterone — a loopback stand-in for JupiterOne's synchronization API, for tests.
 *
 * Design. One process, libmicrohttpd with a thread per connection, and one mutex around all
 * mutable state (scopes, jobs, the fault queue, the outage switch and the statistics). A
 * request's body is read (bounded by --max-request), inflated when gzip'd (bounded too) and
 * parsed outside the lock; then the request takes the lock, lets any job whose finalizing
 * time has come finish, counts itself, passes the gates (outage, token, account, size,
 * encoding) and the fault queue, runs its route and serializes its answer. Only an injected
 * delay and the socket write happen after the lock is released.
 *
 * A job keeps what was uploaded to it in four json-c objects used as hash maps keyed by
 * _key: entities, relationships, deleted entity keys, deleted relationship keys. A key seen
 * twice in one job (entity and deleted-entity keys are one namespace, relationship and
 * deleted-relationship keys another) fails the job with ERROR_BAD_DATA, as the real service
 * does; so does an object that breaks the graph rules. Nothing reaches a scope's graph
 * before finalize: then upserts are applied in upload order, then relationship deletes, then
 * entity deletes with one pass over the scope's relationships for the cascade (explicit
 * ones by _fromEntityKey/_toEntityKey, mapped ones by _mapping.sourceEntityKey), then, in
 * DIFF mode, everything of the scope the job did not upload. --finalize-ms keeps a job in
 * FINALIZE_PENDING that long; it is applied by the first request (any, /_fake/ included)
 * that arrives after its time, which is exactly when anyone could observe the difference.
 *
 * An oversized body is never buffered past the bound: when the client asked for
 * "100-continue" (curl does above 1 MiB) the 413 is answered before the body is sent;
 * otherwise the rest is read and dropped (up to DRAIN_MAX, then the connection is closed),
 * because answering early while the client is still sending makes the kernel reset the
 * connection and lose the answer. docs/testing.md is the user's guide.
 */
#include "tsgraphd/util.h"

#include "fakesrv.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>
#include <microhttpd.h>
#include <zlib.h>

#define DEFAULT_TOKEN	    "fake-j1-token-0123456789"
#define DEFAULT_ACCOUNT	    "fake-account"
#define DEFAULT_MAX_REQUEST 6000000
#define MAX_REQUEST_MAX	    (128u << 20) /* x INFLATE_RATIO stays below INT_MAX */
#define DEFAULT_MAX_OBJECTS 2000000
#define MAX_JOBS	    1000000
#define MAX_FAULTS	    64
#define CONTROL_BODY_MAX    65536
#define DRAIN_MAX	    (64u << 20) /* an oversized body read and dropped, at most */
#define INFLATE_RATIO	    8		/* inflated gzip bodies: at most 8 x --max-request */
#define SLOW_MAX_MS	    120000
#define FINALIZE_MAX_MS	    600000
#define JSON_DEPTH	    16
#define SCOPE_MAX	    256
#define REASON_MAX	    1024
#define ERR_MAX		    768
#define JOB_ID_PREFIX	    "fa7e0000-0000-4000-8000-"
#define JOB_ID_LEN	    36
#define STATUS_MIN	    400
#define STATUS_SPAN	    200 /* rejected answers are counted by status 400..599 */
#define PERSISTER	    "/persister/synchronization/jobs"
#define PROP_RULE	    "^(_|tag\\.)?[A-Za-z0-9. -]+$"

/* ---------------------------------------------------------------------------------------
 * State
 */

enum route {
	R_CREATE_JOB,
	R_ENTITIES,
	R_RELATIONSHIPS,
	R_UPLOAD,
	R_FINALIZE,
	R_ABORT,
	R_GET_JOB,
	R_OTHER,
	R__COUNT
};

static const char *const route_names[R__COUNT] = {
	[R_CREATE_JOB] = "create_job",
	[R_ENTITIES] = "entities",
	[R_RELATIONSHIPS] = "relationships",
	[R_UPLOAD] = "upload",
	[R_FINALIZE] = "finalize",
	[R_ABORT] = "abort",
	[R_GET_JOB] = "get_job",
	[R_OTHER] = "other",
};

/* A fault's route: a route, or one of these. */
#define ROUTE_ANY     -1
#define ROUTE_UPLOADS -2 /* entities, relationships and upload */

enum job_status { J_AWAITING, J_FINALIZE_PENDING, J_FINISHED, J_ABORTED, J_BAD_DATA };

static const char *const job_status_names[] = {
	[J_AWAITING] = "AWAITING_UPLOADS", [J_FINALIZE_PENDING] = "FINALIZE_PENDING",
	[J_FINISHED] = "FINISHED",	   [J_ABORTED] = "ABORTED",
	[J_BAD_DATA] = "ERROR_BAD_DATA",
};

/* The four lists an upload may carry; the first two hold objects, the others keys. */
enum list { L_ENTITIES, L_RELATIONSHIPS, L_DELETE_ENTITIES, L_DELETE_RELATIONSHIPS, L__COUNT };

static const char *const list_names[L__COUNT] = {
	[L_ENTITIES] = "entities",
	[L_RELATIONSHIPS] = "relationships",
	[L_DELETE_ENTITIES] = "deleteEntities",
	[L_DELETE_RELATIONSHIPS] = "deleteRelationships",
};

/* One graph. The maps are json-c objects keyed by _key. */
struct scope {
	char *name;
	json_object *entities;
	json_object *relationships;
	json_object *target_bytes; /* mapped relationship _key → size of its targetEntity */
	struct job *finalizing;	   /* the job in FINALIZE_PENDING, if any */
};

struct counts {
	uint64_t created, updated, deleted;
};

struct job {
	char id[JOB_ID_LEN + 1];
	struct scope *scope;
	bool diff;
	enum job_status status;
	int64_t due_ms;		      /* FINALIZE_PENDING: when it becomes FINISHED (monotonic) */
	json_object *lists[L__COUNT]; /* NULL once the job is over */
	uint64_t pending;	      /* objects and keys held in lists, part of fake.held */
	uint64_t uploaded[L__COUNT];
	struct counts ent, rel;
	char *error;
	char *abort_reason;
};

enum fault_kind { FAULT_STATUS, FAULT_SLOW };

struct fault {
	enum fault_kind kind;
	unsigned status;
	uint64_t count;
	int64_t ms;
	int route;
};

struct stats {
	uint64_t requests;
	uint64_t by_route[R__COUNT];
	uint64_t upload_requests, upload_bytes, max_upload_bytes;
	uint64_t jobs_created, jobs_finished, jobs_aborted, jobs_failed;
	uint64_t objects_uploaded, deletes_uploaded;
	uint64_t max_target_entity_bytes;
	uint64_t rejected[STATUS_SPAN];
};

struct fake {
	pthread_mutex_t lock;
	struct scope **scopes;
	size_t nscopes, cap_scopes;
	struct job **jobs;
	size_t njobs, cap_jobs;
	struct fault faults[MAX_FAULTS];
	size_t nfaults;
	bool down;
	struct stats stats;
	uint64_t held; /* objects in every graph plus objects and keys pending in jobs */
	uint64_t max_objects;
	size_t max_request;
	int64_t finalize_ms;
	bool verbose;
	atomic_bool stopping;
	char *token;
	char *account;
};

enum area { A_PERSISTER, A_CONTROL, A_OTHER };

/* One HTTP request, from its first call to MHD's completion callback. */
struct request {
	bool answered; /* refused before its body was sent */
	enum area area;
	bool too_big;
	bool oom;
	uint64_t drained;
	struct buf body;
};

/* An answer before it becomes an MHD response. */
struct reply {
	unsigned status;
	char *body;
	size_t len;
	int64_t slow_ms;
};

/* ---------------------------------------------------------------------------------------
 * Small helpers
 */

static void set(json_object *o, const char *k, json_object *v)
{
	json_object_object_add(o, k, v);
}

static json_object *jint(uint64_t n)
{
	return json_object_new_int64((int64_t)n);
}

static const char *jget_str(json_object *o, const char *k)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

static bool jget_int(json_object *o, const char *k, int64_t *ret)
{
	json_object *v;

	if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
		return false;
	*ret = json_object_get_int64(v);
	return true;
}

static void jput(json_object **o)
{
	json_object_put(*o);
	*o = NULL;
}

static int reply_json(struct reply *rp, unsigned status, json_object *o)
{
	const char *s = o ? json_object_to_json_string_ext(
				    o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)
			  : NULL;

	free(rp->body);
	rp->status = status;
	rp->body = s ? strdup(s) : NULL;
	rp->len = rp->body ? strlen(rp->body) : 0;
	json_object_put(o);
	return rp->body ? 0 : -ENOMEM;
}

/* {"error":msg} */
static int reply_error(struct reply *rp, unsigned status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int reply_error(struct reply *rp, unsigned status, const char *fmt, ...)
{
	char msg[ERR_MAX];
	json_object *o = json_object_new_object();
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (o)
		set(o, "error", json_object_new_string(msg));
	return reply_json(rp, status, o);
}

static int reply_ok(struct reply *rp)
{
	json_object *o = json_object_new_object();

	if (o)
		set(o, "ok", json_object_new_boolean(true));
	return reply_json(rp, 200, o);
}

/* A value from outside, fit for a message. */
static const char *esc(char out[static ESCAPE_SHORT], const char *s)
{
	str_escape(out, ESCAPE_SHORT, s, strlen(s));
	return out;
}

/* ---------------------------------------------------------------------------------------
 * Graph object rules
 */

/* ^(_|tag\.)?[A-Za-z0-9. -]+$ : "tag." is made of allowed characters, so only a leading
 * underscore is special. */
static bool prop_name_ok(const char *k)
{
	if (*k == '_')
		k++;
	if (!*k)
		return false;
	for (; *k; k++)
		if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') ||
		      (*k >= '0' && *k <= '9') || *k == '.' || *k == ' ' || *k == '-'))
			return false;
	return true;
}

static bool primitive(json_object *v)
{
	switch (json_object_get_type(v)) {
	case json_type_null:
	case json_type_boolean:
	case json_type_int:
	case json_type_double:
	case json_type_string:
		return true;
	default:
		return false;
	}
}

static bool value_ok(json_object *v)
{
	if (!json_object_is_type(v, json_type_array))
		return primitive(v);
	for (size_t i = 0; i < json_object_array_length(v); i++)
		if (!primitive(json_object_array_get_idx(v, i)))
			return false;
	return true;
}

static bool nonempty_string(json_object *v)
{
	return json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0;
}

static bool class_ok(json_object *v)
{
	size_t n;

	if (json_object_is_type(v, json_type_string))
		return nonempty_string(v);
	if (!json_object_is_type(v, json_type_array) || (n = json_object_array_length(v)) == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!nonempty_string(json_object_array_get_idx(v, i)))
			return false;
	return true;
}

/* Builds "entities[3] (_key "…")" for messages. */
static void where_of(char *out, size_t size, enum list l, size_t i, json_object *o)
{
	const char *key = json_object_is_type(o, json_type_object) ? jget_str(o, "_key") : NULL;
	char e[ESCAPE_SHORT];

	if (key)
		snprintf(out, size, "%s[%zu] (_key \"%s\")", list_names[l], i, esc(e, key));
	else
		snprintf(out, size, "%s[%zu]", list_names[l], i);
}

static int fail(char err[static ERR_MAX], const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int fail(char err[static ERR_MAX], const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, ERR_MAX, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

/* Every property name follows the rule and every value is a primitive or an array of them
 * (a relationship's _mapping aside). */
static int check_props(json_object *o, const char *where, bool mapping_ok, char err[static ERR_MAX])
{
	char e[ESCAPE_SHORT];

	json_object_object_foreach(o, k, v)
	{
		if (mapping_ok && strcmp(k, "_mapping") == 0)
			continue;
		if (!prop_name_ok(k))
			return fail(err, "%s: property name \"%s\" does not match %s", where,
				    esc(e, k), PROP_RULE);
		if (!value_ok(v))
			return fail(
				err,
				"%s: property \"%s\" must be a string, number, boolean, null or "
				"an array of those (objects only in a relationship's _mapping)",
				where, esc(e, k));
	}
	return 0;
}

static int check_mapping(json_object *m, const char *where, char err[static ERR_MAX])
{
	static const char *const known[] = { "relationshipDirection", "sourceEntityKey",
					     "targetFilterKeys", "targetEntity",
					     "skipTargetCreation" };
	const char *dir = jget_str(m, "relationshipDirection");
	json_object *tfk = NULL, *te = NULL, *v;
	char w[ERR_MAX / 2], e[ESCAPE_SHORT];
	size_t n;

	if (!json_object_is_type(m, json_type_object))
		return fail(err, "%s: _mapping must be an object", where);
	json_object_object_foreach(m, k, val)
	{
		bool ok = false;

		(void)val;
		for (size_t i = 0; i < ARRAY_SIZE(known); i++)
			ok = ok || strcmp(k, known[i]) == 0;
		if (!ok)
			return fail(err, "%s: unknown _mapping member \"%s\"", where, esc(e, k));
	}
	if (!dir || (strcmp(dir, "FORWARD") != 0 && strcmp(dir, "REVERSE") != 0))
		return fail(err, "%s: _mapping.relationshipDirection must be FORWARD or REVERSE",
			    where);
	if (!json_object_object_get_ex(m, "sourceEntityKey", &v) || !nonempty_string(v))
		return fail(err, "%s: _mapping.sourceEntityKey must be a non-empty string", where);
	if (json_object_object_get_ex(m, "skipTargetCreation", &v) &&
	    !json_object_is_type(v, json_type_boolean))
		return fail(err, "%s: _mapping.skipTargetCreation must be a boolean", where);
	if (!json_object_object_get_ex(m, "targetEntity", &te) ||
	    !json_object_is_type(te, json_type_object))
		return fail(err, "%s: _mapping.targetEntity must be an object", where);
	snprintf(w, sizeof(w), "%s _mapping.targetEntity", where);
	if (check_props(te, w, false, err) < 0)
		return -EINVAL;
	if (json_object_object_get_ex(te, "_class", &v) && !class_ok(v))
		return fail(err, "%s: _class must be a string or an array of strings", w);
	if (!json_object_object_get_ex(m, "targetFilterKeys", &tfk) ||
	    !json_object_is_type(tfk, json_type_array) || (n = json_object_array_length(tfk)) == 0)
		return fail(err, "%s: _mapping.targetFilterKeys must be a non-empty array", where);
	for (size_t i = 0; i < n; i++) {
		json_object *fk = json_object_array_get_idx(tfk, i);
		bool single = json_object_is_type(fk, json_type_string);
		size_t kn = single ? 1
			    : json_object_is_type(fk, json_type_array)
				    ? json_object_array_length(fk)
				    : 0;

		if (kn == 0)
			return fail(err,
				    "%s: _mapping.targetFilterKeys[%zu] must be a string or a "
				    "non-empty array of strings",
				    where, i);
		for (size_t j = 0; j < kn; j++) {
			json_object *name = single ? fk : json_object_array_get_idx(fk, j);

			if (!nonempty_string(name))
				return fail(err,
					    "%s: _mapping.targetFilterKeys[%zu] holds a non-string",
					    where, i);
			if (!json_object_object_get_ex(te, json_object_get_string(name), &v) || !v)
				return fail(
					err,
					"%s: filter key \"%s\" of _mapping.targetFilterKeys is not "
					"a property of targetEntity",
					where, esc(e, json_object_get_string(name)));
		}
	}
	return 0;
}

/* One item of an upload list. */
static int check_item(enum list l, size_t i, json_object *o, char err[static ERR_MAX])
{
	char where[ERR_MAX / 2];
	json_object *v, *m;

	where_of(where, sizeof(where), l, i, o);
	if (!json_object_is_type(o, json_type_object))
		return fail(err, "%s: must be an object", where);
	if (!json_object_object_get_ex(o, "_key", &v) || !nonempty_string(v))
		return fail(err, "%s: _key must be a non-empty string", where);
	if (l == L_DELETE_ENTITIES || l == L_DELETE_RELATIONSHIPS)
		return 0;
	if (l == L_ENTITIES && json_object_get_string_len(v) < 10)
		return fail(err, "%s: an entity's _key must be at least 10 characters", where);
	if (!json_object_object_get_ex(o, "_type", &v) || !nonempty_string(v))
		return fail(err, "%s: _type must be a non-empty string", where);
	if (!json_object_object_get_ex(o, "_class", &v) || !class_ok(v))
		return fail(err, "%s: _class must be a string or a non-empty array of strings",
			    where);
	if (check_props(o, where, l == L_RELATIONSHIPS, err) < 0)
		return -EINVAL;
	if (l == L_ENTITIES)
		return 0;
	if (json_object_object_get_ex(o, "_mapping", &m))
		return check_mapping(m, where, err);
	if (!json_object_object_get_ex(o, "_fromEntityKey", &v) || !nonempty_string(v) ||
	    !json_object_object_get_ex(o, "_toEntityKey", &v) || !nonempty_string(v))
		return fail(err,
			    "%s: an explicit relationship needs _fromEntityKey and _toEntityKey "
			    "(non-empty strings)",
			    where);
	return 0;
}

/* The serialized size of a mapped relationship's targetEntity, 0 for an explicit one. */
static uint64_t target_bytes(json_object *rel)
{
	json_object *m, *te;
	const char *s;

	if (!json_object_object_get_ex(rel, "_mapping", &m) ||
	    !json_object_object_get_ex(m, "targetEntity", &te))
		return 0;
	s = json_object_to_json_string_ext(te,
					   JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	return s ? strlen(s) : 0;
}

/* ---------------------------------------------------------------------------------------
 * Scopes and jobs
 */

static void scope_free(struct scope *s)
{
	if (!s)
		return;
	free(s->name);
	json_object_put(s->entities);
	json_object_put(s->relationships);
	json_object_put(s->target_bytes);
	free(s);
}

static struct scope *scope_find(struct fake *f, const char *name)
{
	for (size_t i = 0; i < f->nscopes; i++)
		if (strcmp(f->scopes[i]->name, name) == 0)
			return f->scopes[i];
	return NULL;
}

static struct scope *scope_get(struct fake *f, const char *name)
{
	struct scope *s = scope_find(f, name);

	if (s)
		return s;
	if (fakesrv_grow((void **)&f->scopes, &f->cap_scopes, f->nscopes, sizeof(*f->scopes)) < 0)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->name = strdup(name);
	s->entities = json_object_new_object();
	s->relationships = json_object_new_object();
	s->target_bytes = json_object_new_object();
	if (!s->name || !s->entities || !s->relationships || !s->target_bytes) {
		scope_free(s);
		return NULL;
	}
	f->scopes[f->nscopes++] = s;
	return s;
}

static uint64_t scope_size(const struct scope *s)
{
	return (uint64_t)json_object_object_length(s->entities) +
	       (uint64_t)json_object_object_length(s->relationships);
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	for (size_t l = 0; l < L__COUNT; l++)
		json_object_put(j->lists[l]);
	free(j->error);
	free(j->abort_reason);
	free(j);
}

/* The job's uploads are dropped (it is over); its objects no longer count as held. */
static void job_release(struct fake *f, struct job *j)
{
	for (size_t l = 0; l < L__COUNT; l++)
		jput(&j->lists[l]);
	f->held -= j->pending;
	j->pending = 0;
	if (j->scope->finalizing == j)
		j->scope->finalizing = NULL;
}

static void job_fail(struct fake *f, struct job *j, const char *msg)
{
	j->status = J_BAD_DATA;
	free(j->error);
	j->error = strdup(msg);
	job_release(f, j);
	f->stats.jobs_failed++;
}

static int job_new(struct fake *f, struct scope *s, bool diff, struct job **ret)
{
	struct job *j;

	if (fakesrv_grow((void **)&f->jobs, &f->cap_jobs, f->njobs, sizeof(*f->jobs)) < 0)
		return -ENOMEM;
	j = calloc(1, sizeof(*j));
	if (!j)
		return -ENOMEM;
	snprintf(j->id, sizeof(j->id), JOB_ID_PREFIX "%012zx", f->njobs + 1);
	j->scope = s;
	j->diff = diff;
	for (size_t l = 0; l < L__COUNT; l++)
		if (!(j->lists[l] = json_object_new_object())) {
			job_free(j);
			return -ENOMEM;
		}
	f->jobs[f->njobs++] = j;
	*ret = j;
	return 0;
}

static struct job *job_find(struct fake *f, const char *id)
{
	uint64_t n;

	if (strlen(id) != JOB_ID_LEN || strncmp(id, JOB_ID_PREFIX, strlen(JOB_ID_PREFIX)) != 0)
		return NULL;
	id += strlen(JOB_ID_PREFIX);
	n = 0;
	for (; *id; id++) {
		int d = *id >= '0' && *id <= '9'   ? *id - '0'
			: *id >= 'a' && *id <= 'f' ? *id - 'a' + 10
						   : -1;

		if (d < 0)
			return NULL;
		n = n * 16 + (uint64_t)d;
	}
	return n >= 1 && n <= f->njobs ? f->jobs[n - 1] : NULL;
}

static json_object *job_json(const struct job *j, bool control)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	set(o, "id", json_object_new_string(j->id));
	set(o, "status", json_object_new_string(job_status_names[j->status]));
	set(o, "scope", json_object_new_string(j->scope->name));
	set(o, "syncMode", json_object_new_string(j->diff ? "DIFF" : "CREATE_OR_UPDATE"));
	set(o, "numEntitiesUploaded", jint(j->uploaded[L_ENTITIES]));
	set(o, "numRelationshipsUploaded", jint(j->uploaded[L_RELATIONSHIPS]));
	set(o, "numEntitiesCreated", jint(j->ent.created));
	set(o, "numEntitiesUpdated", jint(j->ent.updated));
	set(o, "numEntitiesDeleted", jint(j->ent.deleted));
	set(o, "numRelationshipsCreated", jint(j->rel.created));
	set(o, "numRelationshipsUpdated", jint(j->rel.updated));
	set(o, "numRelationshipsDeleted", jint(j->rel.deleted));
	if (!control)
		return o;
	set(o, "numEntityDeletesUploaded", jint(j->uploaded[L_DELETE_ENTITIES]));
	set(o, "numRelationshipDeletesUploaded", jint(j->uploaded[L_DELETE_RELATIONSHIPS]));
	set(o, "error", j->error ? json_object_new_string(j->error) : NULL);
	set(o, "abortReason", j->abort_reason ? json_object_new_string(j->abort_reason) : NULL);
	return o;
}

/* {"job":{…}} */
static int reply_job(struct reply *rp, const struct job *j)
{
	json_object *o = json_object_new_object(), *jo = job_json(j, false);

	if (!o || !jo) {
		json_object_put(o);
		json_object_put(jo);
		return -ENOMEM;
	}
	set(o, "job", jo);
	return reply_json(rp, 200, o);
}

/* The keys of a map, copied: maps are not changed while they are walked. */
struct keys {
	char **v;
	size_t n, cap;
};

static void keys_free(struct keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i]);
	free(k->v);
	*k = (struct keys){ 0 };
}

static int keys_add(struct keys *k, const char *key)
{
	char *c;

	if (fakesrv_grow((void **)&k->v, &k->cap, k->n, sizeof(*k->v)) < 0 || !(c = strdup(key)))
		return -ENOMEM;
	k->v[k->n++] = c;
	return 0;
}

/* Removes a relationship from a scope's graph; true when it was there. */
static bool scope_drop_rel(struct scope *s, const char *key)
{
	if (!json_object_object_get_ex(s->relationships, key, NULL))
		return false;
	json_object_object_del(s->relationships, key);
	json_object_object_del(s->target_bytes, key);
	return true;
}

static void upsert(json_object *graph, const char *key, json_object *v, struct counts *c)
{
	json_object *old;

	if (!json_object_object_get_ex(graph, key, &old))
		c->created++;
	else if (!json_object_equal(old, v))
		c->updated++;
	json_object_object_add(graph, key, json_object_get(v));
}

/* Does this relationship hang on an entity in gone (explicitly or by its mapping source)? */
static bool rel_touches(json_object *rel, json_object *gone)
{
	const char *ends[] = { jget_str(rel, "_fromEntityKey"), jget_str(rel, "_toEntityKey"),
			       NULL };
	json_object *m;

	if (json_object_object_get_ex(rel, "_mapping", &m))
		ends[2] = jget_str(m, "sourceEntityKey");
	for (size_t i = 0; i < ARRAY_SIZE(ends); i++)
		if (ends[i] && json_object_object_get_ex(gone, ends[i], NULL))
			return true;
	return false;
}

/* Finalize's effect on the scope's graph (see the top of the file for the order). */
static int job_apply(struct fake *f, struct job *j)
{
	struct scope *s = j->scope;
	json_object *gone = json_object_new_object();
	struct keys drop = { 0 };
	uint64_t before = scope_size(s);
	int r = -ENOMEM;

	if (!gone)
		return -ENOMEM;
	json_object_object_foreach(j->lists[L_ENTITIES], ek, ev)
	{
		upsert(s->entities, ek, ev, &j->ent);
	}
	json_object_object_foreach(j->lists[L_RELATIONSHIPS], rk, rv)
	{
		uint64_t tb = target_bytes(rv);

		upsert(s->relationships, rk, rv, &j->rel);
		if (tb)
			set(s->target_bytes, rk, jint(tb));
		else
			json_object_object_del(s->target_bytes, rk);
	}
	json_object_object_foreach(j->lists[L_DELETE_RELATIONSHIPS], dk, dv)
	{
		(void)dv;
		j->rel.deleted += scope_drop_rel(s, dk);
	}
	json_object_object_foreach(j->lists[L_DELETE_ENTITIES], gk, gv)
	{
		(void)gv;
		if (json_object_object_get_ex(s->entities, gk, NULL)) {
			json_object_object_del(s->entities, gk);
			j->ent.deleted++;
		}
		set(gone, gk, NULL);
	}
	if (j->diff) {
		json_object_object_foreach(s->entities, sk, sv)
		{
			(void)sv;
			if (!json_object_object_get_ex(j->lists[L_ENTITIES], sk, NULL) &&
			    keys_add(&drop, sk) < 0)
				goto out;
		}
		for (size_t i = 0; i < drop.n; i++) {
			json_object_object_del(s->entities, drop.v[i]);
			set(gone, drop.v[i], NULL);
			j->ent.deleted++;
		}
		keys_free(&drop);
	}
	json_object_object_foreach(s->relationships, xk, xv)
	{
		if (((j->diff && !json_object_object_get_ex(j->lists[L_RELATIONSHIPS], xk, NULL)) ||
		     (json_object_object_length(gone) > 0 && rel_touches(xv, gone))) &&
		    keys_add(&drop, xk) < 0)
			goto out;
	}
	for (size_t i = 0; i < drop.n; i++)
		j->rel.deleted += scope_drop_rel(s, drop.v[i]);
	j->status = J_FINISHED;
	f->held += scope_size(s);
	f->held -= before;
	job_release(f, j);
	f->stats.jobs_finished++;
	r = 0;
out:
	keys_free(&drop);
	json_object_put(gone);
	return r;
}

/* Finishes every job whose finalizing time has come. */
static void jobs_advance(struct fake *f)
{
	int64_t now = monotonic_ms();

	for (size_t i = 0; i < f->nscopes; i++) {
		struct job *j = f->scopes[i]->finalizing;

		if (j && j->due_ms <= now && job_apply(f, j) < 0) {
			/* out of memory: give up on the job rather than retry forever */
			job_fail(f, j, "fake: out of memory applying the job");
		}
	}
}

/* ---------------------------------------------------------------------------------------
 * Faults
 */

static int route_parse(const char *s, int *ret)
{
	if (strcmp(s, "any") == 0) {
		*ret = ROUTE_ANY;
		return 0;
	}
	if (strcmp(s, "uploads") == 0) {
		*ret = ROUTE_UPLOADS;
		return 0;
	}
	for (int i = 0; i < R_OTHER; i++)
		if (strcmp(s, route_names[i]) == 0) {
			*ret = i;
			return 0;
		}
	return -EINVAL;
}

static bool fault_status_ok(uint64_t st)
{
	static const unsigned ok[] = { 400, 401, 403, 404, 409, 429, 500, 502, 503, 504 };

	for (size_t i = 0; i < ARRAY_SIZE(ok); i++)
		if (st == ok[i])
			return true;
	return false;
}

static int fault_push(struct fake *f, enum fault_kind kind, unsigned status, uint64_t count,
		      int64_t ms, int route)
{
	if (f->nfaults == MAX_FAULTS)
		return -ENOSPC;
	f->faults[f->nfaults++] = (struct fault){
		.kind = kind, .status = status, .count = count, .ms = ms, .route = route
	};
	return 0;
}

/* "STATUS:N[@ROUTE]", "slow:N:MS[@ROUTE]" or "down". */
static int fault_parse_spec(struct fake *f, const char *spec)
{
	_cleanup_free_ char *copy = strdup(spec);
	char *at, *c1, *c2;
	uint64_t count, st = 0, ms = 0;
	int route = ROUTE_ANY;
	bool slow;

	if (!copy)
		return -ENOMEM;
	if (strcmp(copy, "down") == 0) {
		f->down = true;
		return 0;
	}
	at = strchr(copy, '@');
	if (at) {
		*at++ = '\0';
		if (route_parse(at, &route) < 0)
			return -EINVAL;
	}
	c1 = strchr(copy, ':');
	if (!c1)
		return -EINVAL;
	*c1++ = '\0';
	c2 = strchr(c1, ':');
	if (c2)
		*c2++ = '\0';
	slow = strcmp(copy, "slow") == 0;
	if (parse_u64(c1, 1, 1000000, &count) < 0 || slow != (c2 != NULL))
		return -EINVAL;
	if (slow) {
		if (parse_u64(c2, 0, SLOW_MAX_MS, &ms) < 0)
			return -EINVAL;
		return fault_push(f, FAULT_SLOW, 0, count, (int64_t)ms, route);
	}
	if (parse_u64(copy, 100, 599, &st) < 0 || !fault_status_ok(st))
		return -EINVAL;
	return fault_push(f, FAULT_STATUS, (unsigned)st, count, 0, route);
}

static bool route_matches(int want, enum route r)
{
	return want == ROUTE_ANY || (int)r == want ||
	       (want == ROUTE_UPLOADS &&
		(r == R_ENTITIES || r == R_RELATIONSHIPS || r == R_UPLOAD));
}

/* Draws this request's faults: at most one status and one delay, oldest first; a count
 * that reaches zero leaves the queue. Returns the status, or 0. */
static unsigned faults_take(struct fake *f, enum route r, int64_t *ret_slow_ms)
{
	unsigned status = 0;
	size_t o = 0;

	*ret_slow_ms = 0;
	for (size_t i = 0; i < f->nfaults; i++) {
		struct fault *ft = &f->faults[i];

		if (!route_matches(ft->route, r))
			continue;
		if (ft->kind == FAULT_STATUS && !status) {
			status = ft->status;
			ft->count--;
		} else if (ft->kind == FAULT_SLOW && !*ret_slow_ms) {
			*ret_slow_ms = ft->ms > 0 ? ft->ms : 1;
			ft->count--;
		}
	}
	for (size_t i = 0; i < f->nfaults; i++)
		if (f->faults[i].count > 0)
			f->faults[o++] = f->faults[i];
	f->nfaults = o;
	return status;
}

/* ---------------------------------------------------------------------------------------
 * Statistics
 */

static bool upload_route(enum route r)
{
	return r == R_ENTITIES || r == R_RELATIONSHIPS || r == R_UPLOAD;
}

static void count_request(struct fake *f, enum route r)
{
	f->stats.requests++;
	f->stats.by_route[r]++;
	if (upload_route(r))
		f->stats.upload_requests++;
}

static void count_answer(struct fake *f, unsigned status)
{
	if (status >= STATUS_MIN && status < STATUS_MIN + STATUS_SPAN)
		f->stats.rejected[status - STATUS_MIN]++;
}

static json_object *stats_json(const struct fake *f)
{
	static const unsigned always[] = { 400, 401, 403, 404, 405, 413, 415, 429, 500, 503, 507 };
	const struct stats *st = &f->stats;
	json_object *o = json_object_new_object(), *br = json_object_new_object(),
		    *rej = json_object_new_object();
	char k[8];

	if (!o || !br || !rej) {
		json_object_put(o);
		json_object_put(br);
		json_object_put(rej);
		return NULL;
	}
	set(o, "requests", jint(st->requests));
	for (size_t i = 0; i < R__COUNT; i++)
		set(br, route_names[i], jint(st->by_route[i]));
	set(o, "requests_by_route", br);
	set(o, "upload_requests", jint(st->upload_requests));
	set(o, "upload_bytes", jint(st->upload_bytes));
	set(o, "max_upload_bytes", jint(st->max_upload_bytes));
	set(o, "jobs_created", jint(st->jobs_created));
	set(o, "jobs_finished", jint(st->jobs_finished));
	set(o, "jobs_aborted", jint(st->jobs_aborted));
	set(o, "jobs_failed", jint(st->jobs_failed));
	set(o, "objects_uploaded", jint(st->objects_uploaded));
	set(o, "deletes_uploaded", jint(st->deletes_uploaded));
	set(o, "objects_held", jint(f->held));
	set(o, "max_target_entity_bytes", jint(st->max_target_entity_bytes));
	for (size_t i = 0; i < ARRAY_SIZE(always); i++) {
		snprintf(k, sizeof(k), "%u", always[i]);
		set(rej, k, jint(st->rejected[always[i] - STATUS_MIN]));
	}
	for (unsigned i = 0; i < STATUS_SPAN; i++) {
		snprintf(k, sizeof(k), "%u", STATUS_MIN + i);
		if (st->rejected[i] && !json_object_object_get_ex(rej, k, NULL))
			set(rej, k, jint(st->rejected[i]));
	}
	set(o, "rejected", rej);
	return o;
}

/* ---------------------------------------------------------------------------------------
 * The synchronization API
 */

/* Which route a path is; *ret_id points into path at the job id (NUL-terminated copy in
 * id). Methods are checked by the handlers. */
static enum route classify(const char *path, char id[static JOB_ID_LEN + 2])
{
	const char *p, *slash;
	size_t n;

	id[0] = '\0';
	if (strcmp(path, PERSISTER) == 0)
		return R_CREATE_JOB;
	if (strncmp(path, PERSISTER "/", strlen(PERSISTER) + 1) != 0)
		return R_OTHER;
	p = path + strlen(PERSISTER) + 1;
	slash = strchr(p, '/');
	n = slash ? (size_t)(slash - p) : strlen(p);
	if (n == 0 || n > JOB_ID_LEN)
		return R_OTHER;
	memcpy(id, p, n);
	id[n] = '\0';
	if (!slash)
		return R_GET_JOB;
	slash++;
	for (int r = R_ENTITIES; r <= R_ABORT; r++)
		if (strcmp(slash, route_names[r]) == 0)
			return (enum route)r;
	return R_OTHER;
}

static int api_create_job(struct fake *f, json_object *in, struct reply *rp)
{
	const char *source = jget_str(in, "source"), *scope = jget_str(in, "scope");
	const char *mode = jget_str(in, "syncMode");
	json_object *v;
	struct scope *s;
	struct job *j;

	if (!source || strcmp(source, "api") != 0)
		return reply_error(rp, 400, "source must be \"api\"");
	if (!scope || !*scope || strlen(scope) > SCOPE_MAX)
		return reply_error(rp, 400, "scope must be a non-empty string of at most %d bytes",
				   SCOPE_MAX);
	if ((json_object_object_get_ex(in, "syncMode", &v) && !mode) ||
	    (mode && strcmp(mode, "DIFF") != 0 && strcmp(mode, "CREATE_OR_UPDATE") != 0))
		return reply_error(rp, 400, "syncMode must be DIFF or CREATE_OR_UPDATE");
	if (f->njobs >= MAX_JOBS)
		return reply_error(rp, 507, "the fake holds %d jobs already", MAX_JOBS);
	s = scope_get(f, scope);
	if (!s || job_new(f, s, !mode || strcmp(mode, "DIFF") == 0, &j) < 0)
		return -ENOMEM;
	f->stats.jobs_created++;
	return reply_job(rp, j);
}

/* entities, relationships and upload: validate everything, then take it or fail the job. */
static int api_upload(struct fake *f, struct job *j, enum route r, json_object *in,
		      struct reply *rp)
{
	json_object *lists[L__COUNT] = { 0 };
	char err[ERR_MAX], e[ESCAPE_SHORT];
	uint64_t n = 0, ntarget;

	if (j->status != J_AWAITING)
		return reply_error(rp, 400, "job %s is %s, not AWAITING_UPLOADS", j->id,
				   job_status_names[j->status]);
	json_object_object_foreach(in, k, v)
	{
		size_t l;

		for (l = 0; l < L__COUNT; l++)
			if (strcmp(k, list_names[l]) == 0)
				break;
		if (l == L__COUNT || (r == R_ENTITIES && l != L_ENTITIES) ||
		    (r == R_RELATIONSHIPS && l != L_RELATIONSHIPS))
			return reply_error(rp, 400, "unexpected member \"%s\" in the %s body",
					   esc(e, k), route_names[r]);
		if (!json_object_is_type(v, json_type_array))
			return reply_error(rp, 400, "%s must be an array", list_names[l]);
		lists[l] = v;
		n += json_object_array_length(v);
	}
	if ((r == R_ENTITIES && !lists[L_ENTITIES]) ||
	    (r == R_RELATIONSHIPS && !lists[L_RELATIONSHIPS]))
		return reply_error(rp, 400, "the body needs \"%s\"", route_names[r]);
	for (size_t l = 0; l < L__COUNT; l++)
		for (size_t i = 0; lists[l] && i < json_object_array_length(lists[l]); i++)
			if (check_item(l, i, json_object_array_get_idx(lists[l], i), err) < 0) {
				job_fail(f, j, err);
				return reply_error(rp, 400, "%s", err);
			}
	if (f->held + n > f->max_objects)
		return reply_error(rp, 507, "the fake holds %" PRIu64 " objects, at most %" PRIu64,
				   f->held, f->max_objects);
	for (size_t l = 0; l < L__COUNT; l++) {
		/* entity keys and deleted entity keys are one namespace; so are relationships' */
		size_t other = l ^ 2;

		for (size_t i = 0; lists[l] && i < json_object_array_length(lists[l]); i++) {
			json_object *o = json_object_array_get_idx(lists[l], i);
			const char *key = jget_str(o, "_key");

			if (json_object_object_get_ex(j->lists[l], key, NULL) ||
			    json_object_object_get_ex(j->lists[other], key, NULL)) {
				snprintf(err, sizeof(err),
					 "duplicate _key \"%s\" in job %s (%s[%zu]; already in %s)",
					 esc(e, key), j->id, list_names[l], i,
					 json_object_object_get_ex(j->lists[l], key, NULL)
						 ? list_names[l]
						 : list_names[other]);
				job_fail(f, j, err);
				return reply_error(rp, 400, "%s", err);
			}
			if (json_object_object_add(j->lists[l], key,
						   l < L_DELETE_ENTITIES ? json_object_get(o)
									 : NULL) < 0)
				return -ENOMEM;
			j->uploaded[l]++;
			j->pending++;
			f->held++;
			if (l == L_RELATIONSHIPS &&
			    (ntarget = target_bytes(o)) > f->stats.max_target_entity_bytes)
				f->stats.max_target_entity_bytes = ntarget;
			if (l < L_DELETE_ENTITIES)
				f->stats.objects_uploaded++;
			else
				f->stats.deletes_uploaded++;
		}
	}
	return reply_job(rp, j);
}

static int api_finalize(struct fake *f, struct job *j, struct reply *rp)
{
	int r;

	if (j->status != J_AWAITING)
		return reply_error(rp, 400, "job %s is %s, not AWAITING_UPLOADS", j->id,
				   job_status_names[j->status]);
	if (j->scope->finalizing)
		return reply_error(rp, 400,
				   "job %s of scope \"%s\" is finalizing; one at a time per scope",
				   j->scope->finalizing->id, j->scope->name);
	j->status = J_FINALIZE_PENDING;
	j->due_ms = monotonic_ms() + f->finalize_ms;
	j->scope->finalizing = j;
	r = reply_job(rp, j);
	if (r == 0 && f->finalize_ms == 0 && job_apply(f, j) < 0)
		job_fail(f, j, "fake: out of memory applying the job");
	return r;
}

static int api_abort(struct fake *f, struct job *j, json_object *in, struct reply *rp)
{
	const char *reason = in ? jget_str(in, "reason") : NULL;

	if (j->status == J_FINALIZE_PENDING || j->status == J_FINISHED)
		return reply_error(rp, 400, "job %s is %s and cannot be aborted", j->id,
				   job_status_names[j->status]);
	if (j->status != J_ABORTED) {
		j->status = J_ABORTED;
		job_release(f, j);
		f->stats.jobs_aborted++;
		if (reason)
			j->abort_reason = strndup(reason, REASON_MAX);
	}
	return reply_job(rp, j);
}

/* A request under /persister/ that passed the gates. in: the parsed body, or NULL. */
static int api_route(struct fake *f, enum route r, const char *id, const char *method,
		     json_object *in, struct reply *rp)
{
	const char *want = r == R_GET_JOB ? "GET" : "POST";
	char e[ESCAPE_SHORT];
	struct job *j;

	if (r == R_OTHER)
		return reply_error(rp, 404, "no such endpoint");
	if (strcmp(method, want) != 0)
		return reply_error(rp, 405, "method %s not allowed here (%s)", esc(e, method),
				   want);
	if (!in && (r == R_CREATE_JOB || upload_route(r)))
		return reply_error(rp, 400, "body must be a JSON object");
	if (r == R_CREATE_JOB)
		return api_create_job(f, in, rp);
	j = job_find(f, id);
	if (!j)
		return reply_error(rp, 404, "no job with that id");
	switch (r) {
	case R_GET_JOB:
		return reply_job(rp, j);
	case R_FINALIZE:
		return api_finalize(f, j, rp);
	case R_ABORT:
		return api_abort(f, j, in, rp);
	default:
		return api_upload(f, j, r, in, rp);
	}
}

static bool header_is(const char *v, const char *want)
{
	return v && strcasecmp(v, want) == 0;
}

/* The checks a request must pass before its body matters: outage, token, account, size,
 * encoding. Returns true when it is refused (rp filled). Called locked. */
static bool api_gate(struct fake *f, struct MHD_Connection *c, const struct request *rq,
		     struct reply *rp, int *ret)
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *account = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "JupiterOne-Account");
	const char *enc = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Encoding");

	if (f->down)
		*ret = reply_error(rp, 503, "service unavailable (the fake's outage is on)");
	else if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
		*ret = reply_error(rp, 401, "missing Authorization: Bearer token");
	else if (!ct_equal(auth + 7, strlen(auth + 7), f->token, strlen(f->token)))
		*ret = reply_error(rp, 401, "invalid token");
	else if (!account || !*account)
		*ret = reply_error(rp, 401, "missing JupiterOne-Account header");
	else if (strcmp(account, f->account) != 0)
		*ret = reply_error(rp, 403, "the token does not belong to that account");
	else if (rq->too_big)
		*ret = reply_error(rp, 413, "request body larger than %zu bytes", f->max_request);
	else if (enc && !header_is(enc, "gzip") && !header_is(enc, "identity"))
		*ret = reply_error(rp, 415, "Content-Encoding must be gzip or identity");
	else
		return false;
	return true;
}

/* ---------------------------------------------------------------------------------------
 * Control endpoints (/_fake/...)
 */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* A map's values as an array sorted by key. */
static json_object *sorted_values(json_object *map)
{
	json_object *arr = json_object_new_array();
	struct keys k = { 0 };
	json_object *v;

	if (!arr)
		return NULL;
	json_object_object_foreach(map, key, val)
	{
		(void)val;
		if (keys_add(&k, key) < 0) {
			keys_free(&k);
			json_object_put(arr);
			return NULL;
		}
	}
	if (k.n)
		qsort(k.v, k.n, sizeof(*k.v), cmp_str);
	for (size_t i = 0; i < k.n; i++) {
		json_object_object_get_ex(map, k.v[i], &v);
		json_object_array_add(arr, json_object_get(v));
	}
	keys_free(&k);
	return arr;
}

static json_object *scope_json(const struct scope *s)
{
	json_object *o = json_object_new_object(), *tb = NULL;

	if (!o)
		return NULL;
	set(o, "entities", s ? sorted_values(s->entities) : json_object_new_array());
	set(o, "relationships", s ? sorted_values(s->relationships) : json_object_new_array());
	if (s)
		tb = json_object_get(s->target_bytes);
	set(o, "target_entity_bytes", tb ? tb : json_object_new_object());
	return o;
}

static json_object *graph_json(struct fake *f, const char *scope)
{
	json_object *o, *all;

	if (scope)
		return scope_json(scope_find(f, scope));
	o = json_object_new_object();
	all = json_object_new_object();
	if (!o || !all) {
		json_object_put(o);
		json_object_put(all);
		return NULL;
	}
	for (size_t i = 0; i < f->nscopes; i++)
		set(all, f->scopes[i]->name, scope_json(f->scopes[i]));
	set(o, "scopes", all);
	return o;
}

static json_object *jobs_json(struct fake *f)
{
	json_object *o = json_object_new_object(), *arr = json_object_new_array();

	if (!o || !arr) {
		json_object_put(o);
		json_object_put(arr);
		return NULL;
	}
	for (size_t i = 0; i < f->njobs; i++)
		json_object_array_add(arr, job_json(f->jobs[i], true));
	set(o, "jobs", arr);
	return o;
}

/* {"status":S,"count":N,"route":R} | {"kind":"slow","ms":M,"count":N,"route":R} |
 * {"kind":"down","on":B} | {"kind":"clear"} */
static int control_fault(struct fake *f, json_object *in, struct reply *rp)
{
	const char *kind = jget_str(in, "kind"), *route = jget_str(in, "route");
	int64_t count = 1, ms = -1, st = 0;
	int rt = ROUTE_ANY, r;
	json_object *v;

	if (kind && strcmp(kind, "clear") == 0) {
		f->nfaults = 0;
		return reply_ok(rp);
	}
	if (kind && strcmp(kind, "down") == 0) {
		if (!json_object_object_get_ex(in, "on", &v) ||
		    !json_object_is_type(v, json_type_boolean))
			return reply_error(rp, 400, "down needs \"on\": true or false");
		f->down = json_object_get_boolean(v);
		return reply_ok(rp);
	}
	if (kind && strcmp(kind, "slow") != 0 && strcmp(kind, "status") != 0)
		return reply_error(rp, 400, "kind must be status, slow, down or clear");
	if ((json_object_object_get_ex(in, "count", &v) && !jget_int(in, "count", &count)) ||
	    (json_object_object_get_ex(in, "ms", &v) && !jget_int(in, "ms", &ms)) ||
	    (json_object_object_get_ex(in, "status", &v) && !jget_int(in, "status", &st)) ||
	    (json_object_object_get_ex(in, "route", &v) && !route))
		return reply_error(rp, 400,
				   "count, ms and status must be integers, route a string");
	if (route && route_parse(route, &rt) < 0)
		return reply_error(rp, 400,
				   "route must be any, uploads, create_job, entities, "
				   "relationships, upload, finalize, abort or get_job");
	if (count < 1 || count > 1000000)
		return reply_error(rp, 400, "count must be 1..1000000");
	if (kind && strcmp(kind, "slow") == 0) {
		if (ms < 0 || ms > SLOW_MAX_MS)
			return reply_error(rp, 400, "slow needs ms 0..%d", SLOW_MAX_MS);
		r = fault_push(f, FAULT_SLOW, 0, (uint64_t)count, ms, rt);
	} else {
		if (!fault_status_ok((uint64_t)st))
			return reply_error(rp, 400,
					   "status must be 400, 401, 403, 404, 409, 429, 500, 502, "
					   "503 or 504");
		r = fault_push(f, FAULT_STATUS, (unsigned)st, (uint64_t)count, 0, rt);
	}
	if (r == -ENOSPC)
		return reply_error(rp, 409, "too many pending faults (at most %d)", MAX_FAULTS);
	return r < 0 ? r : reply_ok(rp);
}

static int handle_control(struct fake *f, struct MHD_Connection *c, const struct request *rq,
			  const char *path, const char *method, struct reply *rp)
{
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	json_object *in = NULL;
	int r;

	if (get && strcmp(path, "/_fake/graph") == 0) {
		json_object *o = graph_json(
			f, MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "scope"));

		return o ? reply_json(rp, 200, o) : -ENOMEM;
	}
	if (get && strcmp(path, "/_fake/stats") == 0) {
		json_object *o = stats_json(f);

		return o ? reply_json(rp, 200, o) : -ENOMEM;
	}
	if (get && strcmp(path, "/_fake/jobs") == 0) {
		json_object *o = jobs_json(f);

		return o ? reply_json(rp, 200, o) : -ENOMEM;
	}
	if (post && strcmp(path, "/_fake/reset-stats") == 0) {
		memset(&f->stats, 0, sizeof(f->stats));
		return reply_ok(rp);
	}
	if (!post || strcmp(path, "/_fake/fault") != 0)
		return reply_error(rp, 404, "no such control endpoint");
	if (rq->too_big)
		return reply_error(rp, 413, "control bodies are at most %d bytes",
				   CONTROL_BODY_MAX);
	in = rq->body.len ? json_tokener_parse(rq->body.data) : NULL;
	if (!json_object_is_type(in, json_type_object)) {
		json_object_put(in);
		return reply_error(rp, 400, "body must be a JSON object");
	}
	r = control_fault(f, in, rp);
	json_object_put(in);
	return r;
}

/* ---------------------------------------------------------------------------------------
 * Request bodies
 */

/* Inflates a gzip body into out (bounded by out's maximum): -EINVAL when it is not gzip or
 * has bytes after its end, -E2BIG when it inflates past the bound. */
static int gunzip(const char *in, size_t len, struct buf *out)
{
	z_stream zs = { 0 };
	unsigned char chunk[16384];
	int zr, r = 0;

	if (inflateInit2(&zs, 15 + 16) != Z_OK)
		return -ENOMEM;
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)len;
	do {
		zs.next_out = chunk;
		zs.avail_out = sizeof(chunk);
		zr = inflate(&zs, Z_NO_FLUSH);
		if (zr != Z_OK && zr != Z_STREAM_END) {
			r = zr == Z_MEM_ERROR ? -ENOMEM : -EINVAL;
			break;
		}
		r = buf_append(out, chunk, sizeof(chunk) - zs.avail_out);
	} while (r == 0 && zr != Z_STREAM_END);
	if (r == 0 && zs.avail_in != 0)
		r = -EINVAL;
	inflateEnd(&zs);
	return r;
}

/* The body as a JSON object (NULL with *ret_status and err when it is not one; an empty body
 * is NULL with status 0). Runs without the lock. */
static json_object *parse_body(struct fake *f, struct MHD_Connection *c, const struct request *rq,
			       unsigned *ret_status, char err[static ERR_MAX])
{
	const char *enc = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Encoding");
	const char *data = rq->body.data;
	size_t len = rq->body.len;
	struct json_tokener *tok = NULL;
	json_object *o = NULL;
	struct buf plain;
	int r;

	*ret_status = 0;
	buf_init(&plain, f->max_request * INFLATE_RATIO);
	if (len > 0 && header_is(enc, "gzip")) {
		r = gunzip(data, len, &plain);
		if (r < 0) {
			*ret_status = r == -E2BIG ? 413 : r == -ENOMEM ? 500 : 400;
			snprintf(err, ERR_MAX, "%s",
				 r == -E2BIG ? "gzip body inflates past the bound"
					     : "gzip body does not inflate");
			goto out;
		}
		data = plain.data;
		len = plain.len;
	}
	if (len == 0)
		goto out;
	tok = json_tokener_new_ex(JSON_DEPTH);
	if (!tok) {
		*ret_status = 500;
		snprintf(err, ERR_MAX, "fake: out of memory");
		goto out;
	}
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	o = json_tokener_parse_ex(tok, data, (int)len);
	if (!o || json_tokener_get_parse_end(tok) != len ||
	    !json_object_is_type(o, json_type_object)) {
		*ret_status = 400;
		snprintf(err, ERR_MAX, "body is not a JSON object (%s)",
			 o ? "wrong type or trailing bytes"
			   : json_tokener_error_desc(json_tokener_get_error(tok)));
		jput(&o);
	}
out:
	if (tok)
		json_tokener_free(tok);
	buf_free(&plain);
	return o;
}

/* A /persister/ request whose body is all in. Called locked. */
static int handle_api(struct fake *f, struct MHD_Connection *c, const struct request *rq,
		      const char *path, const char *method, json_object *in, unsigned body_status,
		      const char *body_err, struct reply *rp)
{
	char id[JOB_ID_LEN + 2];
	enum route r = classify(path, id);
	unsigned st;
	int ret = 0;

	count_request(f, r);
	if (upload_route(r) && !rq->too_big) {
		f->stats.upload_bytes += rq->body.len;
		if (rq->body.len > f->stats.max_upload_bytes)
			f->stats.max_upload_bytes = rq->body.len;
	}
	if (api_gate(f, c, rq, rp, &ret))
		return ret;
	st = faults_take(f, r, &rp->slow_ms);
	if (st)
		return reply_error(rp, st, "injected fault: HTTP %u", st);
	if (body_status)
		return reply_error(rp, body_status, "%s", body_err);
	return api_route(f, r, id, method, in, rp);
}

/* ---------------------------------------------------------------------------------------
 * libmicrohttpd glue
 */

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (rq) {
		buf_free(&rq->body);
		free(rq);
	}
	*con_cls = NULL;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, const struct reply *rp)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(rp->len, rp->body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
	ret = MHD_queue_response(c, rp->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result finish(struct fake *f, struct MHD_Connection *c, const char *method,
			      const char *url, struct reply *rp, int r)
{
	enum MHD_Result ret;

	if (r < 0 || !rp->body) {
		int64_t slow = rp->slow_ms;

		free(rp->body);
		*rp = (struct reply){ .slow_ms = slow };
		if (reply_error(rp, 500, "fake: out of memory") < 0)
			return MHD_NO;
	}
	if (f->verbose)
		fprintf(stderr, "fake_jupiterone: %s %s -> %u%s\n", method, url, rp->status,
			rp->slow_ms ? " (slow)" : "");
	if (rp->slow_ms > 0)
		fakesrv_sleep_ms(&f->stopping, rp->slow_ms);
	ret = send_reply(c, rp);
	free(rp->body);
	return ret;
}

/* The first call: the headers are in, the body is not. A refusal that does not depend on
 * the body is answered now when the client waits for "100 Continue" (it has sent nothing
 * yet) or announced more than we would ever drain. */
static enum MHD_Result on_headers(struct fake *f, struct MHD_Connection *c, struct request *rq,
				  const char *url, const char *method)
{
	const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
	const char *expect = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Expect");
	struct reply rp = { 0 };
	uint64_t announced = 0;
	bool early;
	int r = 0;

	rq->area = strncmp(url, "/persister/", 11) == 0 ? A_PERSISTER
		   : strncmp(url, "/_fake/", 7) == 0	? A_CONTROL
							: A_OTHER;
	buf_init(&rq->body, rq->area == A_PERSISTER ? f->max_request : CONTROL_BODY_MAX);
	if (cl && parse_u64(cl, 0, UINT64_MAX, &announced) == 0 && announced > rq->body.max)
		rq->too_big = true;
	early = header_is(expect, "100-continue") || announced > DRAIN_MAX;
	if (rq->area != A_PERSISTER || !early)
		return MHD_YES;

	pthread_mutex_lock(&f->lock);
	jobs_advance(f);
	if (api_gate(f, c, rq, &rp, &r)) {
		char id[JOB_ID_LEN + 2];

		count_request(f, classify(url, id));
		count_answer(f, rp.status);
		rq->answered = true;
	}
	pthread_mutex_unlock(&f->lock);
	if (!rq->answered)
		return MHD_YES;
	return finish(f, c, method, url, &rp, r);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct fake *f = cls;
	struct request *rq = *con_cls;
	struct reply rp = { 0 };
	json_object *in = NULL;
	unsigned body_status = 0;
	char err[ERR_MAX] = "";
	int r;

	(void)version;
	if (!rq) {
		rq = calloc(1, sizeof(*rq));
		if (!rq)
			return MHD_NO;
		*con_cls = rq;
		return on_headers(f, c, rq, url, method);
	}
	if (rq->answered) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		if (rq->too_big) {
			rq->drained += *upload_size;
			if (rq->drained > DRAIN_MAX)
				return MHD_NO; /* close: the client will not stop */
		} else if ((r = buf_append(&rq->body, upload, *upload_size)) < 0) {
			if (r == -ENOMEM)
				rq->oom = true;
			else
				rq->too_big = true;
			rq->drained = rq->body.len + *upload_size;
			buf_free(&rq->body);
			buf_init(&rq->body, 0);
		}
		*upload_size = 0;
		return MHD_YES;
	}

	if (rq->area == A_PERSISTER && !rq->too_big && !rq->oom)
		in = parse_body(f, c, rq, &body_status, err);
	pthread_mutex_lock(&f->lock);
	jobs_advance(f);
	if (rq->oom)
		r = -ENOMEM;
	else if (rq->area == A_PERSISTER)
		r = handle_api(f, c, rq, url, method, in, body_status, err, &rp);
	else if (rq->area == A_CONTROL)
		r = handle_control(f, c, rq, url, method, &rp);
	else
		r = reply_error(&rp, 404, "not found");
	if (rq->area == A_PERSISTER)
		count_answer(f, r < 0 ? 500 : rp.status);
	else if (rq->area == A_OTHER)
		f->stats.requests++;
	/* json-c's reference counts are not atomic: the body's objects, some now in a job, are
	 * let go of under the lock like every other shared object */
	json_object_put(in);
	pthread_mutex_unlock(&f->lock);
	return finish(f, c, method, url, &rp, r);
}

/* ---------------------------------------------------------------------------------------
 * Set-up
 */

struct options {
	const char *listen, *port_file, *token, *token_file, *account, *tls_cert, *tls_key;
	uint64_t max_request, max_objects, finalize_ms;
	bool verbose;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: fake_jupiterone [--listen 127.0.0.1:0] [--port-file FILE]\n"
		"         [--token TOKEN | --token-file FILE] [--account ACCOUNT]\n"
		"         [--max-request 6000000] [--max-objects 2000000] [--finalize-ms 0]\n"
		"         [--fault STATUS:N[@ROUTE] | slow:N:MS[@ROUTE] | down]... [--verbose]\n"
		"         [--tls-cert PEM --tls-key PEM]   (serve HTTPS instead of HTTP)\n");
}

static void fake_free(struct fake *f)
{
	if (!f)
		return;
	for (size_t i = 0; i < f->njobs; i++)
		job_free(f->jobs[i]);
	free(f->jobs);
	for (size_t i = 0; i < f->nscopes; i++)
		scope_free(f->scopes[i]);
	free(f->scopes);
	if (f->token) {
		explicit_bzero(f->token, strlen(f->token));
		free(f->token);
	}
	free(f->account);
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static int parse_args(int argc, char **argv, struct options *o, struct fake *f)
{
	enum {
		O_LISTEN = 256,
		O_PORTFILE,
		O_TOKEN,
		O_TOKEN_FILE,
		O_ACCOUNT,
		O_MAX_REQUEST,
		O_MAX_OBJECTS,
		O_FINALIZE_MS,
		O_FAULT,
		O_VERBOSE,
		O_HELP,
		O_TLS_CERT,
		O_TLS_KEY
	};
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "port-file", required_argument, NULL, O_PORTFILE },
		{ "token", required_argument, NULL, O_TOKEN },
		{ "token-file", required_argument, NULL, O_TOKEN_FILE },
		{ "account", required_argument, NULL, O_ACCOUNT },
		{ "max-request", required_argument, NULL, O_MAX_REQUEST },
		{ "max-objects", required_argument, NULL, O_MAX_OBJECTS },
		{ "finalize-ms", required_argument, NULL, O_FINALIZE_MS },
		{ "fault", required_argument, NULL, O_FAULT },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "help", no_argument, NULL, O_HELP },
		{ "tls-cert", required_argument, NULL, O_TLS_CERT },
		{ "tls-key", required_argument, NULL, O_TLS_KEY },
		{ NULL, 0, NULL, 0 },
	};
	int c, r = 0;

	while (r == 0 && (c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case O_LISTEN:
			o->listen = optarg;
			break;
		case O_PORTFILE:
			o->port_file = optarg;
			break;
		case O_TOKEN:
			o->token = optarg;
			break;
		case O_TOKEN_FILE:
			o->token_file = optarg;
			break;
		case O_ACCOUNT:
			o->account = optarg;
			break;
		case O_MAX_REQUEST:
			r = parse_u64(optarg, 64, MAX_REQUEST_MAX, &o->max_request);
			break;
		case O_MAX_OBJECTS:
			r = parse_u64(optarg, 1, UINT32_MAX, &o->max_objects);
			break;
		case O_FINALIZE_MS:
			r = parse_u64(optarg, 0, FINALIZE_MAX_MS, &o->finalize_ms);
			break;
		case O_FAULT:
			r = fault_parse_spec(f, optarg);
			if (r < 0)
				fprintf(stderr, "fake_jupiterone: bad --fault %s\n", optarg);
			break;
		case O_VERBOSE:
			o->verbose = true;
			break;
		case O_TLS_CERT:
			o->tls_cert = optarg;
			break;
		case O_TLS_KEY:
			o->tls_key = optarg;
			break;
		case O_HELP:
			usage(stdout);
			return 1;
		default:
			r = -EINVAL;
		}
	}
	if (r == 0 && (optind != argc || !o->tls_cert != !o->tls_key ||
		       (o->token && o->token_file) || !*o->account || (o->token && !*o->token)))
		r = -EINVAL;
	return r;
}

int main(int argc, char **argv)
{
	struct options o = { .listen = "127.0.0.1:0",
			     .account = DEFAULT_ACCOUNT,
			     .max_request = DEFAULT_MAX_REQUEST,
			     .max_objects = DEFAULT_MAX_OBJECTS };
	struct fake *f = NULL;
	int ret = 1, r;
	struct MHD_OptionItem extra[] = {
		{ MHD_OPTION_NOTIFY_COMPLETED, (intptr_t)on_completed, NULL },
		{ MHD_OPTION_END, 0, NULL },
	};

	f = calloc(1, sizeof(*f));
	if (!f || pthread_mutex_init(&f->lock, NULL) != 0) {
		free(f);
		return 1;
	}
	r = parse_args(argc, argv, &o, f);
	if (r != 0) {
		if (r < 0)
			usage(stderr);
		ret = r < 0 ? 2 : 0;
		goto out;
	}
	if (o.token_file) {
		r = fakesrv_read_secret(o.token_file, &f->token);
		if (r < 0) {
			fprintf(stderr, "fake_jupiterone: cannot read --token-file: %s\n",
				strerror(-r));
			ret = 2;
			goto out;
		}
	} else if (!(f->token = strdup(o.token ? o.token : DEFAULT_TOKEN))) {
		goto out;
	}
	f->account = strdup(o.account);
	if (!f->account)
		goto out;
	f->max_request = (size_t)o.max_request;
	f->max_objects = o.max_objects;
	f->finalize_ms = (int64_t)o.finalize_ms;
	f->verbose = o.verbose;
	extra[0].ptr_value = f;
	ret = fakesrv_serve(&(struct fakesrv_serve){ .name = "fake_jupiterone",
						     .listen = o.listen,
						     .port_file = o.port_file,
						     .tls_cert = o.tls_cert,
						     .tls_key = o.tls_key,
						     .verbose = o.verbose,
						     .handler = on_request,
						     .cls = f,
						     .extra = extra },
			    &f->stopping);
out:
	fake_free(f);
	return ret;
}
