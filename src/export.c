/* export — the stored graph, written out whole (contract: include/tsgraphd/export.h).
 *
 * There is no serializer here: the store holds every object as the canonical JSON graph.c
 * wrote (the bytes the JupiterOne sink uploads and the file sink writes), so the JSON export
 * is those texts in JupiterOne's two arrays, and the NDJSON export is sink_file_format() of a
 * "create" per object. Only DOT reads the objects: each is parsed (json-c) for its ends and
 * its name, one at a time.
 *
 * Consistency: everything is read in one read transaction, begun before the outbox's last seq
 * is read, so the objects are exactly the graph after that seq. A consumer that loads the
 * export then applies the change log's lines with a greater seq misses nothing and sees
 * nothing twice (docs/change-log.md).
 *
 * Order and memory: entities by _key, then relationships by _key, each pass one statement
 * streamed from the primary key's index; the distinct targets of mapped relationships (a CVE
 * named by thousands of agents is one node) are gathered by SQLite in its temp store. A
 * mapped target has no _key of ours: its DOT ID is the values of its first targetFilterKeys
 * list joined by ':' ("cve:cve-2021-44228", "aws_instance:i-0abc", "Host:web-01"), which is
 * what JupiterOne matches it by.
 */
#include "tsgraphd/export.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <json-c/json.h>

#include "tsgraphd/canon.h"
#include "tsgraphd/sink_file.h"
#include "tsgraphd/util.h"

/* One NDJSON line or DOT statement: an object's strings, each escaped at most 6-fold. */
#define EXPORT_LINE_MAX (8u * CANON_OBJECT_MAX)
#define EXPORT_DEPTH	64 /* JSON nesting of a stored object (canon's own limit) */
#define TEMP_NAME_TRIES 16

struct export
{
	FILE *out;
	const struct export_options *opt;
	struct export_counts n;
	struct buf line;
	struct buf id; /* a mapped target's DOT ID */
	struct buf scratch;
	json_tokener *tok;
	bool first; /* no item yet in the current JSON array */
	char *err;
};

int export_format_from_string(const char *s, enum export_format *ret)
{
	static const char *const names[] = { "json", "ndjson", "dot" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (strcmp(s, names[i]) == 0) {
			*ret = (enum export_format)i;
			return 0;
		}
	return -EINVAL;
}

const char *export_format_to_string(enum export_format f)
{
	return f == EXPORT_JSON ? "json" : f == EXPORT_NDJSON ? "ndjson" : "dot";
}

static int put(struct export *x, const char *p, size_t len)
{
	if (len > 0 && fwrite(p, 1, len, x->out) != len) {
		int r = errno > 0 ? -errno : -EIO;

		snprintf(x->err, EXPORT_ERR_MAX, "cannot write the export: %s", strerror(-r));
		return r;
	}
	return 0;
}

static int puts_(struct export *x, const char *s)
{
	return put(x, s, strlen(s));
}

static int stopped(const struct export *x)
{
	if (x->opt->stop && *x->opt->stop) {
		snprintf(x->err, EXPORT_ERR_MAX, "interrupted");
		return -ECANCELED;
	}
	return 0;
}

static void count(struct export *x, const struct store_row *r)
{
	if (strcmp(r->kind, "entity") == 0)
		x->n.entities++;
	else
		x->n.relationships++;
}

/* --- json and ndjson -------------------------------------------------------------------- */

static int json_row(const struct store_row *r, void *ud)
{
	struct export *x = ud;
	int rc = stopped(x);

	if (rc == 0)
		rc = puts_(x, x->first ? "\n" : ",\n");
	if (rc == 0)
		rc = puts_(x, r->json);
	x->first = false;
	count(x, r);
	return rc;
}

static int ndjson_row(const struct store_row *r, void *ud)
{
	struct export *x = ud;
	struct outbox_row o = {
		.seq = x->n.seq,
		.op = "create",
		.kind = r->kind,
		.key = r->key,
		.type = r->type,
		.class = r->class,
		.json = r->json,
		.source = "export",
		.created_at = x->opt->now,
	};
	int rc = stopped(x);

	buf_reset(&x->line);
	if (rc == 0)
		rc = sink_file_format(&o, &x->line);
	if (rc == 0)
		rc = put(x, x->line.data, x->line.len);
	count(x, r);
	return rc;
}

/* --- dot -------------------------------------------------------------------------------- */

/* s as a double-quoted DOT string (an ID or a label). */
static int dot_quoted(struct buf *b, const char *s)
{
	int r = buf_puts(b, "\"");

	for (const unsigned char *p = (const unsigned char *)s; r == 0 && *p; p++) {
		if (*p == '"')
			r = buf_puts(b, "\\\"");
		else if (*p == '\\')
			r = buf_puts(b, "\\\\");
		else if (*p == '\n')
			r = buf_puts(b, "\\n");
		else if (*p == '\r')
			r = buf_puts(b, "\\r");
		else if (*p < 0x20 || *p == 0x7f)
			r = buf_puts(b, " "); /* DOT has no escape for the other controls */
		else
			r = buf_append(b, p, 1);
	}
	return r == 0 ? buf_puts(b, "\"") : r;
}

static const char *str_member(json_object *o, const char *name)
{
	json_object *v;

	if (!json_object_object_get_ex(o, name, &v) || !json_object_is_type(v, json_type_string))
		return NULL;
	return json_object_get_string(v);
}

/* What a node is called: its displayName, else its name, else fallback. */
static const char *name_of(json_object *o, const char *fallback)
{
	const char *name = str_member(o, "displayName");

	if (!name)
		name = str_member(o, "name");
	return name ? name : fallback;
}

static int bad_object(struct export *x, const char *key, const char *why)
{
	char k[ESCAPE_LONG];

	str_escape(k, sizeof(k), key, strlen(key));
	snprintf(x->err, EXPORT_ERR_MAX, "stored object %s: %s", k, why);
	return -EBADMSG;
}

static int parse(struct export *x, const char *json, const char *key, json_object **ret)
{
	json_object *o;

	json_tokener_reset(x->tok);
	o = json_tokener_parse_ex(x->tok, json, (int)strlen(json));
	if (!o || json_tokener_get_error(x->tok) != json_tokener_success ||
	    !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return bad_object(x, key, "not a JSON object");
	}
	*ret = o;
	return 0;
}

/* A class's shape in the picture (every other class: the default rounded box). */
static const char *shape_of(const char *class)
{
	static const struct {
		const char *class, *shape;
	} shapes[] = {
		{ "Account", "house" },
		{ "Finding", "note" },
		{ "Vulnerability", "octagon" },
		{ "Host", "box3d" },
	};

	for (size_t i = 0; class && i < ARRAY_SIZE(shapes); i++)
		if (strcmp(class, shapes[i].class) == 0)
			return shapes[i].shape;
	return NULL;
}

/* One node statement: id [label="name\nclass", shape=...]; */
static int dot_node(struct export *x, const char *id, const char *name, const char *class)
{
	const char *shape = shape_of(class);
	int r;

	buf_reset(&x->line);
	buf_reset(&x->scratch);
	r = buf_cat(&x->scratch, name, "\n", class ? class : "", NULL);
	if (r == 0)
		r = buf_puts(&x->line, "\t");
	if (r == 0)
		r = dot_quoted(&x->line, id);
	if (r == 0)
		r = buf_puts(&x->line, " [label=");
	if (r == 0)
		r = dot_quoted(&x->line, x->scratch.data);
	if (r == 0 && shape)
		r = buf_cat(&x->line, ", shape=", shape, NULL);
	if (r == 0)
		r = buf_puts(&x->line, "];\n");
	return r < 0 ? r : put(x, x->line.data, x->line.len);
}

static int dot_entity(const struct store_row *r, void *ud)
{
	struct export *x = ud;
	json_object *o = NULL;
	const char *key;
	int rc = stopped(x);

	if (rc == 0)
		rc = parse(x, r->json, r->key, &o);
	if (rc < 0)
		return rc;
	/* The JSON's own _key: valid UTF-8 (canon repaired it), as the relationships name it. */
	key = str_member(o, "_key") ? str_member(o, "_key") : r->key;
	rc = dot_node(x, key, name_of(o, key), str_member(o, "_class"));
	json_object_put(o);
	count(x, r);
	return rc;
}

/* A mapped target's DOT ID, in x->id: the values of the first list of filter keys (a
 * string as it is, anything else as canonical JSON) joined by ':'; "mapped:" and the
 * target's canonical JSON when the filter names nothing the target has. */
static int target_id(struct export *x, json_object *filter_keys, json_object *target)
{
	json_object *keys = NULL;
	size_t n = 0;
	int r = 0;

	buf_reset(&x->id);
	if (json_object_is_type(filter_keys, json_type_array) &&
	    json_object_array_length(filter_keys) > 0)
		keys = json_object_array_get_idx(filter_keys, 0);
	if (json_object_is_type(keys, json_type_array))
		n = json_object_array_length(keys);
	for (size_t i = 0; r == 0 && i < n; i++) {
		json_object *k = json_object_array_get_idx(keys, i), *v;

		if (!json_object_is_type(k, json_type_string) ||
		    !json_object_object_get_ex(target, json_object_get_string(k), &v) || !v) {
			n = 0;
			break;
		}
		if (i > 0)
			r = buf_puts(&x->id, ":");
		if (r == 0 && json_object_is_type(v, json_type_string))
			r = buf_puts(&x->id, json_object_get_string(v));
		else if (r == 0)
			r = canon_serialize(v, &x->id);
	}
	if (r == 0 && n == 0) {
		buf_reset(&x->id);
		r = buf_puts(&x->id, "mapped:");
		if (r == 0)
			r = canon_serialize(target, &x->id);
	}
	return r;
}

static int dot_target(const char *filter_keys, const char *target, void *ud)
{
	struct export *x = ud;
	json_object *f = NULL, *t = NULL;
	int rc = stopped(x);

	if (rc == 0)
		rc = parse(x, target ? target : "", "(a mapped target)", &t);
	if (rc == 0 && filter_keys) {
		json_tokener_reset(x->tok);
		f = json_tokener_parse_ex(x->tok, filter_keys, (int)strlen(filter_keys));
	}
	if (rc == 0)
		rc = target_id(x, f, t);
	if (rc == 0) {
		rc = dot_node(x, x->id.data, name_of(t, x->id.data), str_member(t, "_class"));
		x->n.targets++;
	}
	json_object_put(f);
	json_object_put(t);
	return rc;
}

static int dot_edge(const struct store_row *r, void *ud)
{
	struct export *x = ud;
	json_object *o = NULL, *m, *fk = NULL, *target = NULL;
	const char *from = NULL, *to = NULL, *dir, *class;
	int rc = stopped(x);

	if (rc == 0)
		rc = parse(x, r->json, r->key, &o);
	if (rc < 0)
		return rc;
	if (json_object_object_get_ex(o, "_mapping", &m) &&
	    json_object_is_type(m, json_type_object)) {
		json_object_object_get_ex(m, "targetFilterKeys", &fk);
		if (!json_object_object_get_ex(m, "targetEntity", &target) ||
		    !json_object_is_type(target, json_type_object) ||
		    !(from = str_member(m, "sourceEntityKey"))) {
			rc = bad_object(x, r->key,
					"_mapping lacks sourceEntityKey or targetEntity");
			goto out;
		}
		rc = target_id(x, fk, target);
		to = x->id.data;
		dir = str_member(m, "relationshipDirection");
		if (dir && strcmp(dir, "REVERSE") == 0) {
			to = from;
			from = x->id.data;
		}
	} else {
		from = str_member(o, "_fromEntityKey");
		to = str_member(o, "_toEntityKey");
		if (!from || !to) {
			rc = bad_object(x, r->key, "a relationship without its two ends");
			goto out;
		}
	}
	class = str_member(o, "_class") ? str_member(o, "_class") : r->class;
	buf_reset(&x->line);
	if (rc == 0)
		rc = buf_puts(&x->line, "\t");
	if (rc == 0)
		rc = dot_quoted(&x->line, from);
	if (rc == 0)
		rc = buf_puts(&x->line, " -> ");
	if (rc == 0)
		rc = dot_quoted(&x->line, to);
	if (rc == 0)
		rc = buf_puts(&x->line, " [label=");
	if (rc == 0)
		rc = dot_quoted(&x->line, class);
	if (rc == 0)
		rc = buf_puts(&x->line, "];\n");
	if (rc == 0)
		rc = put(x, x->line.data, x->line.len);
out:
	json_object_put(o);
	count(x, r);
	return rc;
}

/* --- the passes ------------------------------------------------------------------------- */

static int write_all(struct export *x, struct store *s)
{
	char head[256];
	int r;

	switch (x->opt->format) {
	case EXPORT_JSON:
		x->first = true;
		r = puts_(x, "{\"entities\":[");
		if (r == 0)
			r = store_object_kind_each(s, "entity", json_row, x);
		if (r == 0)
			r = puts_(x, "\n],\"relationships\":[");
		x->first = true;
		if (r == 0)
			r = store_object_kind_each(s, "relationship", json_row, x);
		return r == 0 ? puts_(x, "\n]}\n") : r;
	case EXPORT_NDJSON:
		r = store_object_kind_each(s, "entity", ndjson_row, x);
		return r == 0 ? store_object_kind_each(s, "relationship", ndjson_row, x) : r;
	case EXPORT_DOT:
		snprintf(head, sizeof(head),
			 "// tsgraphd export: the stored graph at outbox seq %" PRId64 "\n"
			 "digraph \"tsgraphd\" {\n"
			 "\tgraph [rankdir=LR];\n"
			 "\tnode [shape=box, style=rounded];\n",
			 x->n.seq);
		r = puts_(x, head);
		if (r == 0)
			r = store_object_kind_each(s, "entity", dot_entity, x);
		if (r == 0)
			r = store_mapped_targets_each(s, dot_target, x);
		if (r == 0)
			r = store_object_kind_each(s, "relationship", dot_edge, x);
		return r == 0 ? puts_(x, "}\n") : r;
	}
	return -EINVAL;
}

int export_write(struct store *s, const struct export_options *opt, FILE *out,
		 struct export_counts *ret, char err[static EXPORT_ERR_MAX])
{
	struct export x = { .out = out, .opt = opt, .err = err };
	bool reading = false;
	int r;

	err[0] = '\0';
	buf_init(&x.line, EXPORT_LINE_MAX);
	buf_init(&x.id, EXPORT_LINE_MAX);
	buf_init(&x.scratch, EXPORT_LINE_MAX);
	x.tok = json_tokener_new_ex(EXPORT_DEPTH);
	if (!x.tok) {
		r = -ENOMEM;
		goto out;
	}
	r = store_read_begin(s);
	reading = r == 0;
	if (r == 0)
		r = store_outbox_max_seq(s, &x.n.seq);
	if (r == 0)
		r = write_all(&x, s);
	if (r == 0 && fflush(out) != 0) {
		r = errno > 0 ? -errno : -EIO;
		snprintf(err, EXPORT_ERR_MAX, "cannot write the export: %s", strerror(-r));
	}
	if (r < 0 && !err[0]) {
		if (r == -E2BIG)
			snprintf(err, EXPORT_ERR_MAX, "a stored object is too large to export");
		else if (r == -ENOMEM)
			snprintf(err, EXPORT_ERR_MAX, "out of memory");
		else
			snprintf(err, EXPORT_ERR_MAX, "cannot read the store: %s", store_errmsg(s));
	}
out:
	if (reading)
		store_rollback(s);
	if (r == 0 && ret)
		*ret = x.n;
	json_tokener_free(x.tok);
	buf_free(&x.line);
	buf_free(&x.id);
	buf_free(&x.scratch);
	return r;
}

/* Creates path.tmp-PID-N, exclusively, mode 0640 less the umask (the kernel applies it). */
static int create_temp(const char *path, char **ret_name, int *ret_fd)
{
	for (unsigned i = 0; i < TEMP_NAME_TRIES; i++) {
		char *name = NULL;
		int fd;

		if (asprintf(&name, "%s.tmp-%ld-%u", path, (long)getpid(), i) < 0)
			return -ENOMEM;
		fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY,
			  0640);
		if (fd >= 0) {
			*ret_name = name;
			*ret_fd = fd;
			return 0;
		}
		free(name);
		if (errno != EEXIST)
			return -errno;
	}
	return -EEXIST;
}

static int sync_dir_of(const char *path)
{
	_cleanup_free_ char *copy = strdup(path);
	_cleanup_close_ int fd = -1;

	if (!copy)
		return -ENOMEM;
	fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return -errno;
	return 0;
}

int export_to_file(struct store *s, const struct export_options *opt, const char *path,
		   struct export_counts *ret, char err[static EXPORT_ERR_MAX])
{
	_cleanup_free_ char *tmp = NULL;
	struct export_counts n;
	FILE *f = NULL;
	int fd = -1, r;

	err[0] = '\0';
	r = create_temp(path, &tmp, &fd);
	if (r < 0) {
		snprintf(err, EXPORT_ERR_MAX, "%s: cannot create a temporary file beside it: %s",
			 path, strerror(-r));
		return r;
	}
	f = fdopen(fd, "w");
	if (!f) {
		r = -errno;
		close(fd);
		snprintf(err, EXPORT_ERR_MAX, "%s: %s", tmp, strerror(-r));
		goto out;
	}
	r = export_write(s, opt, f, &n, err);
	if (r == 0 && fsync(fileno(f)) < 0) {
		r = -errno;
		snprintf(err, EXPORT_ERR_MAX, "%s: cannot sync: %s", tmp, strerror(-r));
	}
	if (fclose(f) != 0 && r == 0) {
		r = errno > 0 ? -errno : -EIO;
		snprintf(err, EXPORT_ERR_MAX, "%s: cannot close: %s", tmp, strerror(-r));
	}
	if (r == 0 && rename(tmp, path) < 0) {
		r = -errno;
		snprintf(err, EXPORT_ERR_MAX, "%s: cannot rename the export into place: %s", path,
			 strerror(-r));
	}
	if (r == 0) {
		int d = sync_dir_of(path);

		if (d < 0)
			snprintf(err, EXPORT_ERR_MAX,
				 "%s: written, but its directory could not be "
				 "synced: %s",
				 path, strerror(-d));
		r = d;
	}
out:
	if (r < 0 && tmp && access(tmp, F_OK) == 0)
		unlink(tmp);
	if (r == 0 && ret)
		*ret = n;
	return r;
}
