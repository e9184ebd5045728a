/* graph — Threat Stack objects → JupiterOne graph objects.
 *
 * Each builder collects one object's members at a time and writes its canonical JSON text
 * straight into one reusable buffer, then hands it to the emit callback: no json-c tree, no
 * allocation per member, and memory stays at one object whatever the fleet size. A member
 * is {name, kind, value}, kept in a small array on the stack (the heap only past
 * MEMBERS_ON_STACK members, an agent with many tags), inserted in bytewise name order as it
 * comes, so the text comes out sorted as canon_serialize would sort it; strings are
 * referenced, not copied, so each one must outlive the write (a builder keeps one buffer per
 * string it composes). Strings and integers go through canon's own writers: the bytes, and
 * so the stored hashes, are exactly those of canon_serialize on the equivalent json-c object
 * (tests/e2e/graph_dump.ndjson pins them; test_graph checks that every text reads back to
 * itself). Members are added only from the input struct, so the same input yields
 * byte-identical objects in the same order. A value the input does not know (NULL string,
 * TSJSON_TIME_UNKNOWN, -1 tri-state) is left out rather than written as null, except where
 * the data model requires the property: HostAgent.lastSeenOn and Finding's severity and
 * numericSeverity are null when unknown. Property names are fixed here, except tag keys,
 * which come from users: a tag's name is "tag." + its key with each byte outside
 * [A-Za-z0-9. -] (each UTF-8 sequence as a whole) mapped to '-', computed as it is compared
 * or written, so every name matches ^(_|tag\.)?[A-Za-z0-9. -]+$ and needs no escape. The
 * first tag wins when two keys sanitise to the same name. Defects of the earlier
 * integration that this file must not repeat are noted where they would creep back in.
 */
#include "tsgraphd/graph.h"
#include "tsgraphd/canon.h"
#include "tsgraphd/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ACCT_KEY_PREFIX	 "threatstack:account:"
#define NVD_LINK	 "https://nvd.nist.gov/vuln/detail/"
#define GRAPH_STR_MAX	 (4 * TSJSON_STR_MAX + 256)
#define GRAPH_JSON_MAX	 (4u * 1024 * 1024) /* one object's text, without opt->out */
#define MEMBERS_ON_STACK 40		    /* an agent with a dozen tags */
#define MEMBERS_MAX	 65536		    /* members of one object (tags): -E2BIG past it */
#define _cleanup_buf_	 __attribute__((cleanup(buf_free)))
#define _cleanup_obj_	 __attribute__((cleanup(obj_free)))
#define TAG_PREFIX	 "tag."

static bool empty(const char *s)
{
	return !s || !*s;
}

/* Not isalnum(): that one follows the locale, and these decisions must not. */
static bool ascii_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Empty or only white space: no use as a name. */
static bool blank(const char *s)
{
	if (s)
		for (; *s; s++)
			if (!isspace((unsigned char)*s))
				return false;
	return true;
}

/* --- the canonical writer --- */

enum value_kind {
	V_STR,	 /* s */
	V_INT,	 /* i */
	V_BOOL,	 /* b */
	V_NULL,	 /* null */
	V_LIST,	 /* list: the strings of two lists, NULL entries skipped, as one array */
	V_PAIRS, /* pair: [[pair[0], pair[1]]] */
	V_OBJ,	 /* obj */
};

struct list {
	char *const *v;
	size_t n;
};

struct member {
	const char *name; /* the name; for a tag, the user's key it is made from */
	bool tag;
	enum value_kind kind;
	union {
		const char *s;
		int64_t i;
		bool b;
		struct list list[2];
		const char *pair[2];
		const struct obj *obj;
	} u;
};

/* Members in name order. */
struct obj {
	struct member *m;
	size_t n, cap;
	struct member small[MEMBERS_ON_STACK];
};

static void obj_init(struct obj *o)
{
	o->m = o->small;
	o->n = 0;
	o->cap = MEMBERS_ON_STACK;
}

static void obj_free(struct obj *o)
{
	if (o->m != o->small)
		free(o->m);
	o->m = o->small;
}

/* The next byte of a member's name, -1 at its end. A tag's name is TAG_PREFIX and then the
 * key with each byte outside [A-Za-z0-9. -] replaced by '-', one '-' per UTF-8 sequence
 * (a lead byte takes the continuation bytes after it). */
struct name_iter {
	const char *prefix;
	const unsigned char *p;
	bool tag;
};

static int name_next(struct name_iter *it)
{
	unsigned char c;

	if (*it->prefix)
		return (unsigned char)*it->prefix++;
	c = *it->p;
	if (!c)
		return -1;
	if (it->tag && !ascii_alnum(c) && c != '.' && c != ' ' && c != '-') {
		if (c >= 0xc0)
			while ((it->p[1] & 0xc0) == 0x80)
				it->p++;
		c = '-';
	}
	it->p++;
	return c;
}

static struct name_iter name_of(const struct member *m)
{
	return (struct name_iter){ m->tag ? TAG_PREFIX : "", (const unsigned char *)m->name,
				   m->tag };
}

/* Bytewise, as strcmp (canon sorts with it). */
static int cmp_name(const struct member *a, const struct member *b)
{
	struct name_iter x, y;
	int ca, cb;

	if (!a->tag && !b->tag)
		return strcmp(a->name, b->name);
	x = name_of(a);
	y = name_of(b);
	do {
		ca = name_next(&x);
		cb = name_next(&y);
	} while (ca == cb && ca >= 0);
	return ca - cb;
}

/* Inserts m in name order. A name already there keeps its value: names are fixed and
 * distinct here except tags, where the first one wins. */
static int put(struct obj *o, struct member m)
{
	size_t lo = 0, hi = o->n;

	if (o->n && cmp_name(&o->m[o->n - 1], &m) < 0) {
		lo = o->n; /* in order already: the common case */
	} else {
		while (lo < hi) {
			size_t mid = lo + (hi - lo) / 2;
			int c = cmp_name(&o->m[mid], &m);

			if (c == 0)
				return 0;
			if (c < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
	}
	if (o->n == o->cap) {
		size_t cap = o->cap * 2;
		struct member *p;

		if (o->n >= MEMBERS_MAX)
			return -E2BIG;
		p = o->m == o->small ? malloc(cap * sizeof(*p)) : realloc(o->m, cap * sizeof(*p));
		if (!p)
			return -ENOMEM;
		if (o->m == o->small)
			memcpy(p, o->small, o->n * sizeof(*p));
		o->m = p;
		o->cap = cap;
	}
	memmove(o->m + lo + 1, o->m + lo, (o->n - lo) * sizeof(*o->m));
	o->m[lo] = m;
	o->n++;
	return 0;
}

static int add_str(struct obj *o, const char *k, const char *v)
{
	return v ? put(o, (struct member){ .name = k, .kind = V_STR, .u.s = v }) : 0;
}

static int add_int(struct obj *o, const char *k, int64_t v)
{
	return put(o, (struct member){ .name = k, .kind = V_INT, .u.i = v });
}

static int add_bool(struct obj *o, const char *k, bool v)
{
	return put(o, (struct member){ .name = k, .kind = V_BOOL, .u.b = v });
}

static int add_null(struct obj *o, const char *k)
{
	return put(o, (struct member){ .name = k, .kind = V_NULL });
}

static int add_time(struct obj *o, const char *k, int64_t ms)
{
	return ms != TSJSON_TIME_UNKNOWN ? add_int(o, k, ms) : 0;
}

static int add_obj(struct obj *o, const char *k, const struct obj *v)
{
	return put(o, (struct member){ .name = k, .kind = V_OBJ, .u.obj = v });
}

static int write_obj(struct buf *out, const struct obj *o);

static int write_strings(struct buf *out, const struct list *l, size_t n_lists)
{
	bool first = true;
	int r;

	if ((r = buf_append(out, "[", 1)) < 0)
		return r;
	for (size_t k = 0; k < n_lists; k++)
		for (size_t i = 0; i < l[k].n; i++) {
			if (!l[k].v[i])
				continue;
			if ((!first && (r = buf_append(out, ",", 1)) < 0) ||
			    (r = canon_write_string(out, l[k].v[i], strlen(l[k].v[i]))) < 0)
				return r;
			first = false;
		}
	return buf_append(out, "]", 1);
}

static int write_value(struct buf *out, const struct member *m)
{
	switch (m->kind) {
	case V_STR:
		return canon_write_string(out, m->u.s, strlen(m->u.s));
	case V_INT:
		return canon_write_int64(out, m->u.i);
	case V_BOOL:
		return buf_puts(out, m->u.b ? "true" : "false");
	case V_NULL:
		return buf_append(out, "null", 4);
	case V_LIST:
		return write_strings(out, m->u.list, 2);
	case V_PAIRS: {
		char *pair[2] = { (char *)m->u.pair[0], (char *)m->u.pair[1] };
		struct list l = { pair, 2 };
		int r;

		if ((r = buf_append(out, "[", 1)) < 0 || (r = write_strings(out, &l, 1)) < 0)
			return r;
		return buf_append(out, "]", 1);
	}
	case V_OBJ:
		return write_obj(out, m->u.obj);
	}
	return -EINVAL;
}

/* A name as canon writes it: plain names through its string writer; a tag's name holds only
 * [A-Za-z0-9. -], which needs no escape. */
static int write_name(struct buf *out, const struct member *m)
{
	struct name_iter it = name_of(m);
	int c, r;

	if (!m->tag)
		return canon_write_string(out, m->name, strlen(m->name));
	if ((r = buf_append(out, "\"", 1)) < 0)
		return r;
	while ((c = name_next(&it)) >= 0) {
		char ch = (char)c;

		if ((r = buf_append(out, &ch, 1)) < 0)
			return r;
	}
	return buf_append(out, "\"", 1);
}

static int write_obj(struct buf *out, const struct obj *o)
{
	int r;

	if ((r = buf_append(out, "{", 1)) < 0)
		return r;
	for (size_t i = 0; i < o->n; i++) {
		if ((i && (r = buf_append(out, ",", 1)) < 0) ||
		    (r = write_name(out, &o->m[i])) < 0 || (r = buf_append(out, ":", 1)) < 0 ||
		    (r = write_value(out, &o->m[i])) < 0)
			return r;
	}
	return buf_append(out, "}", 1);
}

/* One builder call's output: opt->out, or a buffer of its own. */
struct sink {
	graph_emit_fn emit;
	void *userdata;
	struct buf *out;
	struct buf own;
};

static void sink_init(struct sink *k, const struct graph_options *opt, graph_emit_fn emit,
		      void *userdata)
{
	k->emit = emit;
	k->userdata = userdata;
	buf_init(&k->own, GRAPH_JSON_MAX);
	k->out = opt && opt->out ? opt->out : &k->own;
}

static void sink_free(struct sink *k)
{
	buf_free(&k->own);
}

#define _cleanup_sink_ __attribute__((cleanup(sink_free)))

/* Writes o's text and emits it with g's members. */
static int emit_obj(struct sink *k, struct graph_object *g, const struct obj *o)
{
	int r;

	buf_reset(k->out);
	if ((r = write_obj(k->out, o)) < 0)
		return r;
	g->json = k->out->data;
	g->json_len = k->out->len;
	return k->emit(g, k->userdata);
}

/* b = a followed by c. */
static int join(struct buf *b, const char *a, const char *c)
{
	int r;

	buf_reset(b);
	if ((r = buf_puts(b, a)) < 0 || (r = buf_puts(b, c)) < 0)
		return r;
	return 0;
}

/* Percent-encodes everything outside RFC 3986's unreserved set, so an id from the API
 * cannot change the shape of a webLink. */
static int append_pct(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	int r = 0;

	for (; *s && r == 0; s++) {
		unsigned char c = (unsigned char)*s;

		if (ascii_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
			r = buf_append(b, s, 1);
		} else {
			char e[3] = { '%', hex[c >> 4], hex[c & 15] };

			r = buf_append(b, e, 3);
		}
	}
	return r;
}

/* webLink, composed in b, which must outlive the write. */
static int add_weblink(struct obj *o, const struct graph_options *opt, const char *path,
		       const char *id, struct buf *b)
{
	size_t n;
	int r;

	buf_reset(b);
	if (empty(opt->web_url))
		return 0;
	n = strlen(opt->web_url);
	while (n && opt->web_url[n - 1] == '/')
		n--;
	if ((r = buf_append(b, opt->web_url, n)) < 0)
		return r;
	if (path && ((r = buf_puts(b, path)) < 0 || (r = append_pct(b, id)) < 0))
		return r;
	return add_str(o, "webLink", b->data);
}

static int new_object(struct obj *o, const char *key, const char *type, const char *class)
{
	int r;

	if ((r = add_str(o, "_key", key)) < 0 || (r = add_str(o, "_type", type)) < 0 ||
	    (r = add_str(o, "_class", class)) < 0)
		return r;
	return 0;
}

static void lower_ascii(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* An explicit relationship: both ends are ours. */
static int emit_explicit(struct sink *k, const char *type, const char *class, const char *from,
			 const char *to, const char *owner, int64_t rank)
{
	_cleanup_obj_ struct obj o;
	_cleanup_buf_ struct buf key;
	struct graph_object g;
	char cl[32];
	int r;

	obj_init(&o);
	buf_init(&key, GRAPH_STR_MAX);
	snprintf(cl, sizeof(cl), "%s", class);
	lower_ascii(cl);
	if ((r = buf_cat(&key, from, "|", cl, "|", to, NULL)) < 0)
		return r;
	if ((r = new_object(&o, key.data, type, class)) < 0 ||
	    (r = add_str(&o, "_fromEntityKey", from)) < 0 ||
	    (r = add_str(&o, "_toEntityKey", to)) < 0 ||
	    (r = add_str(&o, "displayName", class)) < 0)
		return r;
	g = (struct graph_object){ .kind = GRAPH_RELATIONSHIP,
				   .key = key.data,
				   .type = type,
				   .class = class,
				   .from_key = from,
				   .to_key = to,
				   .owner = owner,
				   .rank = rank };
	return emit_obj(k, &g, &o);
}

/* The "_mapping" member of a mapped relationship, built in m (which must outlive the write)
 * around target. skip_creation < 0 leaves skipTargetCreation out. */
static int add_mapping(struct obj *o, struct obj *m, const char *source_key, const char *filter_a,
		       const char *filter_b, const struct obj *target, int skip_creation)
{
	int r;

	if ((r = add_str(m, "relationshipDirection", "FORWARD")) < 0 ||
	    (r = add_str(m, "sourceEntityKey", source_key)) < 0 ||
	    (r = put(m, (struct member){ .name = "targetFilterKeys",
					 .kind = V_PAIRS,
					 .u.pair = { filter_a, filter_b } })) < 0 ||
	    (r = add_obj(m, "targetEntity", target)) < 0)
		return r;
	if (skip_creation >= 0 && (r = add_bool(m, "skipTargetCreation", skip_creation)) < 0)
		return r;
	return add_obj(o, "_mapping", m);
}

char *graph_normalize_hostname(const char *hostname)
{
	size_t n = 0;
	char *out;

	if (!hostname)
		return NULL;
	out = malloc(strcspn(hostname, ".") + 1);
	if (!out)
		return NULL;
	/* The earlier integration used the range [A-z], which lets [ \ ] ^ _ and ` through:
	 * only a-z, 0-9 and '-' survive here. */
	for (const char *p = hostname; *p && *p != '.'; p++) {
		char c = *p;

		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		else if (c == ' ')
			c = '-';
		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')
			out[n++] = c;
	}
	out[n] = '\0';
	return out;
}

int graph_account(const struct graph_options *opt, graph_emit_fn emit, void *userdata)
{
	_cleanup_sink_ struct sink k;
	_cleanup_obj_ struct obj o;
	_cleanup_buf_ struct buf key;
	_cleanup_buf_ struct buf display;
	_cleanup_buf_ struct buf link;
	struct graph_object g;
	const char *org_name;
	int r;

	sink_init(&k, opt, emit, userdata);
	obj_init(&o);
	buf_init(&key, GRAPH_STR_MAX);
	buf_init(&display, GRAPH_STR_MAX);
	buf_init(&link, GRAPH_STR_MAX);
	if (!opt || empty(opt->org_id) || !emit)
		return -EINVAL;
	org_name = blank(opt->org_name) ? opt->org_id : opt->org_name;
	if ((r = join(&key, ACCT_KEY_PREFIX, opt->org_id)) < 0 ||
	    (r = new_object(&o, key.data, "threatstack_account", "Account")) < 0 ||
	    (r = join(&display, "Threat Stack - ", org_name)) < 0)
		return r;
	if ((r = add_str(&o, "accountId", opt->org_id)) < 0 ||
	    (r = add_str(&o, "name", org_name)) < 0 ||
	    (r = add_str(&o, "displayName", display.data)) < 0 ||
	    (r = add_str(&o, "vendor", "Threat Stack")) < 0 ||
	    (r = add_weblink(&o, opt, NULL, NULL, &link)) < 0)
		return r;
	g = (struct graph_object){ .kind = GRAPH_ENTITY,
				   .key = key.data,
				   .type = "threatstack_account",
				   .class = "Account" };
	return emit_obj(&k, &g, &o);
}

static int add_strv(struct obj *o, const char *k, const struct ts_strv *a, const struct ts_strv *b)
{
	struct member m = { .name = k, .kind = V_LIST };

	if (a)
		m.u.list[0] = (struct list){ a->v, a->n };
	if (b)
		m.u.list[1] = (struct list){ b->v, b->n };
	if (m.u.list[0].n + m.u.list[1].n == 0)
		return 0;
	return put(o, m);
}

/* A tag's name is bounded as every composed string is (GRAPH_STR_MAX): -E2BIG past it. */
static int tag_name_fits(const char *key)
{
	struct member m = { .name = key, .tag = true };
	struct name_iter it;
	size_t n = 0;

	if (strlen(key) + strlen(TAG_PREFIX) <= GRAPH_STR_MAX)
		return 0; /* a name is never longer than its key and the prefix */
	it = name_of(&m);
	while (name_next(&it) >= 0)
		n++;
	return n <= GRAPH_STR_MAX ? 0 : -E2BIG;
}

static int add_tags(struct obj *o, const struct ts_agent *a)
{
	int r;

	for (size_t i = 0; i < a->n_tags; i++) {
		const struct ts_tag *t = &a->tags[i];
		struct member m = { .name = t->key, .tag = true };

		if (empty(t->key))
			continue;
		if ((r = tag_name_fits(t->key)) < 0)
			return r;
		/* A tag without a value is still a fact: "present". */
		if (t->value) {
			m.kind = V_STR;
			m.u.s = t->value;
		} else {
			m.kind = V_BOOL;
			m.u.b = true;
		}
		/* A name already there stays: the key order of the input decides. */
		if ((r = put(o, m)) < 0)
			return r;
	}
	return 0;
}

static int add_functions(struct obj *o)
{
	/* HostAgent's enum; the earlier integration wrote "vulnerability-scan", not in it. */
	static char *const fn[] = { "FIM", "activity-monitor", "vulnerability-detection" };

	return put(o, (struct member){ .name = "function",
				       .kind = V_LIST,
				       .u.list = { { fn, ARRAY_SIZE(fn) } } });
}

/* The agent entity in o; link holds its webLink. */
static int agent_entity(const struct graph_options *opt, const struct ts_agent *a, const char *key,
			const char *hostname, struct obj *o, struct buf *link)
{
	const char *name;
	int r;

	/* name is never null: name, else the hostname as reported, else the id. */
	name = !blank(a->name) ? a->name : !blank(a->hostname) ? a->hostname : a->id;
	if ((r = new_object(o, key, "threatstack_agent", "HostAgent")) < 0)
		return r;
	if ((r = add_str(o, "id", a->id)) < 0 || (r = add_str(o, "name", name)) < 0 ||
	    (r = add_str(o, "displayName", name)) < 0 ||
	    (r = add_str(o, "instanceId", empty(a->instance_id) ? NULL : a->instance_id)) < 0 ||
	    (r = add_str(o, "hostname", empty(hostname) ? NULL : hostname)) < 0 ||
	    (r = add_str(o, "status", a->status)) < 0)
		return r;
	if (a->status && (r = add_bool(o, "active", strcasecmp(a->status, "online") == 0)) < 0)
		return r;
	if ((r = add_str(o, "version", a->version)) < 0 ||
	    (r = add_str(o, "agentType", a->agent_type)) < 0 ||
	    (r = add_str(o, "kernel", a->kernel)) < 0 ||
	    (r = add_str(o, "osVersion", a->os_version)) < 0 ||
	    (r = add_str(o, "description", a->description)) < 0)
		return r;
	/* Arrays of strings from the parser: a string member was never spread into characters
	 * (the earlier integration's defect), and link-local addresses are not MAC addresses. */
	if ((r = add_strv(o, "ipAddresses", &a->ip_public, &a->ip_private)) < 0 ||
	    (r = add_strv(o, "publicIpAddress", &a->ip_public, NULL)) < 0 ||
	    (r = add_strv(o, "privateIpAddress", &a->ip_private, NULL)) < 0 ||
	    (r = add_strv(o, "linkLocalIpAddress", &a->ip_link_local, NULL)) < 0)
		return r;
	if ((r = add_time(o, "createdOn", a->created_at)) < 0 ||
	    (r = add_time(o, "createdAt", a->created_at)) < 0 ||
	    (r = add_time(o, "lastReportedAt", a->last_reported_at)) < 0)
		return r;
	/* HostAgent requires lastSeenOn: null when the agent never reported. */
	if (a->last_reported_at != TSJSON_TIME_UNKNOWN)
		r = add_time(o, "lastSeenOn", a->last_reported_at);
	else
		r = add_null(o, "lastSeenOn");
	if (r < 0 || (r = add_functions(o)) < 0)
		return r;
	if (a->healthy >= 0 && (r = add_bool(o, "healthy", a->healthy)) < 0)
		return r;
	if ((r = add_tags(o, a)) < 0 || (r = add_weblink(o, opt, "/servers/", a->id, link)) < 0)
		return r;
	return 0;
}

static int agent_protects(struct sink *k, const struct graph_options *opt, const struct ts_agent *a,
			  const char *agent_key, const char *hostname, int64_t rank)
{
	_cleanup_obj_ struct obj o;
	_cleanup_obj_ struct obj m;
	_cleanup_obj_ struct obj t;
	_cleanup_buf_ struct buf key;
	struct graph_object g;
	bool ec2 = !empty(a->instance_id);
	const char *type = ec2 ? "threatstack_agent_protects_aws_instance"
			       : "threatstack_agent_protects_server";
	int r;

	obj_init(&o);
	obj_init(&m);
	obj_init(&t);
	buf_init(&key, GRAPH_STR_MAX);
	if (!ec2 && empty(hostname))
		return 0; /* nothing to match a Host by */
	r = ec2 ? buf_cat(&key, agent_key, "|protects|aws_instance:", a->instance_id, NULL)
		: buf_cat(&key, agent_key, "|protects|host:", hostname, NULL);
	if (r < 0)
		return r;
	if ((r = new_object(&o, key.data, type, "PROTECTS")) < 0 ||
	    (r = add_str(&o, "displayName", "PROTECTS")) < 0)
		return r;
	if (ec2) {
		if ((r = add_str(&t, "_type", "aws_instance")) < 0 ||
		    (r = add_str(&t, "_class", "Host")) < 0 ||
		    (r = add_str(&t, "instanceId", a->instance_id)) < 0)
			return r;
		r = add_mapping(&o, &m, agent_key, "_type", "instanceId", &t, 1);
	} else {
		if ((r = add_str(&t, "_class", "Host")) < 0 ||
		    (r = add_str(&t, "_type", "host")) < 0 ||
		    (r = add_str(&t, "hostname", hostname)) < 0 ||
		    (r = add_str(&t, "name", hostname)) < 0 ||
		    (r = add_str(&t, "displayName", hostname)) < 0)
			return r;
		r = add_mapping(&o, &m, agent_key, "_class", "hostname", &t,
				!opt->create_host_placeholder);
	}
	if (r < 0)
		return r;
	/* The target has no _key: it is matched by the filter keys. */
	g = (struct graph_object){ .kind = GRAPH_RELATIONSHIP,
				   .key = key.data,
				   .type = type,
				   .class = "PROTECTS",
				   .from_key = agent_key,
				   .mapped = true,
				   .owner = agent_key,
				   .rank = rank };
	return emit_obj(k, &g, &o);
}

int graph_agent(const struct graph_options *opt, const struct ts_agent *a, graph_emit_fn emit,
		void *userdata)
{
	_cleanup_sink_ struct sink k;
	_cleanup_obj_ struct obj ent;
	_cleanup_buf_ struct buf key;
	_cleanup_buf_ struct buf acct;
	_cleanup_buf_ struct buf link;
	_cleanup_free_ char *hostname = NULL;
	struct graph_object g;
	int64_t rank;
	int r;

	sink_init(&k, opt, emit, userdata);
	obj_init(&ent);
	buf_init(&key, GRAPH_STR_MAX);
	buf_init(&acct, GRAPH_STR_MAX);
	buf_init(&link, GRAPH_STR_MAX);
	if (!opt || empty(opt->org_id) || !a || empty(a->id) || !emit)
		return -EINVAL;
	rank = a->last_reported_at != TSJSON_TIME_UNKNOWN ? a->last_reported_at : 0;
	if (a->hostname && !(hostname = graph_normalize_hostname(a->hostname)))
		return -ENOMEM;
	if ((r = join(&key, GRAPH_AGENT_KEY_PREFIX, a->id)) < 0 ||
	    (r = join(&acct, ACCT_KEY_PREFIX, opt->org_id)) < 0)
		return r;
	if ((r = agent_entity(opt, a, key.data, hostname, &ent, &link)) < 0)
		return r;
	g = (struct graph_object){ .kind = GRAPH_ENTITY,
				   .key = key.data,
				   .type = "threatstack_agent",
				   .class = "HostAgent",
				   .owner = key.data,
				   .rank = rank };
	if ((r = emit_obj(&k, &g, &ent)) != 0)
		return r;
	if ((r = emit_explicit(&k, "threatstack_account_has_agent", "HAS", acct.data, key.data,
			       key.data, rank)) != 0)
		return r;
	return agent_protects(&k, opt, a, key.data, hostname, rank);
}

/* "CVE-2019-11477", any case, is valid when it matches ^CVE-\d{4}-\d{4,}$ upper-cased. */
static bool valid_cve(const char *s)
{
	size_t n;

	if (!s || strncasecmp(s, "CVE-", 4) != 0)
		return false;
	s += 4;
	for (n = 0; (s[n] >= '0' && s[n] <= '9'); n++)
		;
	if (n != 4 || s[n] != '-')
		return false;
	s += 5;
	for (n = 0; (s[n] >= '0' && s[n] <= '9'); n++)
		;
	return n >= 4 && s[n] == '\0';
}

int graph_vuln_agent(const struct graph_options *opt, const struct ts_vuln *v, const char *agent_id,
		     graph_emit_fn emit, void *userdata)
{
	_cleanup_sink_ struct sink k;
	_cleanup_obj_ struct obj o;
	_cleanup_obj_ struct obj m;
	_cleanup_obj_ struct obj t;
	_cleanup_buf_ struct buf key;
	_cleanup_buf_ struct buf link;
	_cleanup_buf_ struct buf from;
	_cleanup_free_ char *upper = NULL, *lower = NULL;
	struct graph_object g;
	int r;

	sink_init(&k, opt, emit, userdata);
	obj_init(&o);
	obj_init(&m);
	obj_init(&t);
	buf_init(&key, GRAPH_STR_MAX);
	buf_init(&link, GRAPH_STR_MAX);
	buf_init(&from, GRAPH_STR_MAX);
	if (!opt || !v || empty(agent_id) || !emit || !valid_cve(v->cve))
		return -EINVAL;
	if (!(upper = strdup(v->cve)) || !(lower = strdup(v->cve)))
		return -ENOMEM;
	for (char *p = upper; *p; p++) /* ASCII only, whatever the locale */
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	lower_ascii(lower);
	if ((r = buf_cat(&key, GRAPH_AGENT_KEY_PREFIX, agent_id, "|identified|", lower, NULL)) < 0)
		return r;
	if ((r = new_object(&o, key.data, "threatstack_agent_identified_vulnerability",
			    "IDENTIFIED")) < 0 ||
	    (r = add_str(&o, "displayName", "IDENTIFIED")) < 0 ||
	    (r = add_str(&o, "finding", v->system_package)) < 0 ||
	    (r = add_str(&o, "package", v->reported_package)) < 0)
		return r;
	if (v->suppressed >= 0 && (r = add_bool(&o, "suppressed", v->suppressed)) < 0)
		return r;
	if ((r = join(&link, NVD_LINK, upper)) < 0)
		return r;
	/* open: Vulnerability requires it; a CVE Threat Stack lists as active is open. */
	if ((r = add_str(&t, "_type", "cve")) < 0 ||
	    (r = add_str(&t, "_class", "Vulnerability")) < 0 ||
	    (r = add_str(&t, "_key", lower)) < 0 || (r = add_str(&t, "name", upper)) < 0 ||
	    (r = add_str(&t, "displayName", upper)) < 0 || (r = add_str(&t, "cveId", upper)) < 0 ||
	    (r = add_str(&t, "webLink", link.data)) < 0 ||
	    (r = add_str(&t, "severity", v->severity)) < 0 ||
	    (r = add_str(&t, "vector", v->vector_type)) < 0 || (r = add_bool(&t, "open", true)) < 0)
		return r;
	if ((r = join(&from, GRAPH_AGENT_KEY_PREFIX, agent_id)) < 0 ||
	    (r = add_mapping(&o, &m, from.data, "_type", "_key", &t, -1)) < 0)
		return r;
	g = (struct graph_object){ .kind = GRAPH_RELATIONSHIP,
				   .key = key.data,
				   .type = "threatstack_agent_identified_vulnerability",
				   .class = "IDENTIFIED",
				   .from_key = from.data,
				   .to_key = lower,
				   .mapped = true };
	return emit_obj(&k, &g, &o);
}

static const char *severity_word(int s)
{
	switch (s) {
	case 1:
		return "high";
	case 2:
		return "medium";
	case 3:
		return "low";
	}
	return NULL;
}

int graph_alert(const struct graph_options *opt, const struct ts_alert *al, graph_emit_fn emit,
		void *userdata)
{
	_cleanup_sink_ struct sink k;
	_cleanup_obj_ struct obj o;
	_cleanup_buf_ struct buf key;
	_cleanup_buf_ struct buf from;
	_cleanup_buf_ struct buf link;
	struct graph_object g;
	const char *name, *category, *sev;
	bool cloudtrail, dismissed;
	int r;

	sink_init(&k, opt, emit, userdata);
	obj_init(&o);
	buf_init(&key, GRAPH_STR_MAX);
	buf_init(&from, GRAPH_STR_MAX);
	buf_init(&link, GRAPH_STR_MAX);
	if (!opt || empty(opt->org_id) || !al || empty(al->id) || !emit)
		return -EINVAL;
	if ((r = join(&key, GRAPH_ALERT_KEY_PREFIX, al->id)) < 0)
		return r;
	name = !blank(al->title) ? al->title : al->id;
	/* CloudTrail alerts say so in dataSource, or (older data) only by having no agent. */
	cloudtrail = al->data_source ? strcasecmp(al->data_source, "cloudtrail") == 0
				     : empty(al->agent_id);
	category = cloudtrail ? "cloudtrail" : "host-intrusion";
	dismissed = al->dismissed == 1 ||
		    (al->dismissed < 0 && al->dismissed_at != TSJSON_TIME_UNKNOWN);
	sev = severity_word(al->severity);
	if ((r = new_object(&o, key.data, "threatstack_alert", "Finding")) < 0)
		return r;
	if ((r = add_str(&o, "id", al->id)) < 0 || (r = add_str(&o, "name", name)) < 0 ||
	    (r = add_str(&o, "displayName", name)) < 0 ||
	    (r = add_str(&o, "category", category)) < 0)
		return r;
	/* Finding requires severity and numericSeverity: null when the alert has none. */
	if ((r = sev ? add_str(&o, "severity", sev) : add_null(&o, "severity")) < 0 ||
	    (r = sev ? add_int(&o, "numericSeverity", al->severity)
		     : add_null(&o, "numericSeverity")) < 0)
		return r;
	if ((r = add_bool(&o, "open", !dismissed)) < 0 ||
	    (r = add_bool(&o, "dismissed", dismissed)) < 0 ||
	    (r = add_time(&o, "createdOn", al->created_at)) < 0 ||
	    (r = add_str(&o, "dataSource", al->data_source)) < 0 ||
	    (r = add_str(&o, "agentId", empty(al->agent_id) ? NULL : al->agent_id)) < 0 ||
	    (r = add_str(&o, "ruleId", al->rule_id)) < 0 ||
	    (r = add_str(&o, "rulesetId", al->ruleset_id)) < 0 ||
	    (r = add_str(&o, "dismissReason", al->dismiss_reason)) < 0 ||
	    (r = add_str(&o, "dismissReasonText", al->dismiss_reason_text)) < 0 ||
	    (r = add_str(&o, "dismissedBy", al->dismissed_by)) < 0 ||
	    (r = add_time(&o, "dismissedOn", al->dismissed_at)) < 0 ||
	    (r = add_weblink(&o, opt, "/alerts/", al->id, &link)) < 0)
		return r;
	/* An alert dismissed between the active and the dismissed listing shows up in both:
	 * the dismissed one is the newer news, so it ranks higher. */
	g = (struct graph_object){ .kind = GRAPH_ENTITY,
				   .key = key.data,
				   .type = "threatstack_alert",
				   .class = "Finding",
				   .owner = key.data,
				   .rank = dismissed ? 1 : 0 };
	if ((r = emit_obj(&k, &g, &o)) != 0)
		return r;
	if (empty(al->agent_id)) {
		if ((r = join(&from, ACCT_KEY_PREFIX, opt->org_id)) < 0)
			return r;
		return emit_explicit(&k, "threatstack_account_has_alert", "HAS", from.data,
				     key.data, key.data, 0);
	}
	if ((r = join(&from, GRAPH_AGENT_KEY_PREFIX, al->agent_id)) < 0)
		return r;
	return emit_explicit(&k, "threatstack_agent_identified_alert", "IDENTIFIED", from.data,
			     key.data, key.data, 0);
}
