/* graph — Threat Stack objects → JupiterOne graph objects.
 *
 * Each builder makes one json-c object at a time, hands it to the emit callback and drops
 * its reference, so memory stays at one object whatever the fleet size. Members are added
 * in a fixed order and only from the input struct, so the same input yields byte-identical
 * objects in the same order. A value the input does not know (NULL string,
 * TSJSON_TIME_UNKNOWN, -1 tri-state) is left out rather than written as null, except where
 * the data model requires the property: HostAgent.lastSeenOn and Finding's severity and
 * numericSeverity are null when unknown. Property names are fixed here, except tag keys,
 * which come from users: sanitize_tag_key() maps each byte outside [A-Za-z0-9. -] (each
 * UTF-8 sequence as a whole) to '-', so every name matches ^(_|tag\.)?[A-Za-z0-9. -]+$.
 * The first tag wins when two keys sanitise to the same name. Defects of the earlier
 * integration that this file must not repeat are noted where they would creep back in.
 */
#include "tsgraphd/graph.h"
#include "tsgraphd/util.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

#define AGENT_KEY_PREFIX "threatstack:agent:"
#define ALERT_KEY_PREFIX "threatstack:alert:"
#define ACCT_KEY_PREFIX	 "threatstack:account:"
#define NVD_LINK	 "https://nvd.nist.gov/vuln/detail/"
#define GRAPH_STR_MAX	 (4 * TSJSON_STR_MAX + 256)
#define _cleanup_json_	 __attribute__((cleanup(json_putp)))
#define _cleanup_buf_	 __attribute__((cleanup(buf_free)))
#define TAG_PREFIX	 "tag."

static void json_putp(json_object **o)
{
	json_object_put(*o);
}

/* Hands a _cleanup_json_ local to a callee that takes ownership (add_mapping). */
static json_object *json_take(json_object **o)
{
	json_object *t = *o;

	*o = NULL;
	return t;
}

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

/* Takes ownership of v, also on failure. */
static int add(json_object *o, const char *k, json_object *v)
{
	if (!v)
		return -ENOMEM;
	if (json_object_object_add(o, k, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

static int add_str(json_object *o, const char *k, const char *v)
{
	return v ? add(o, k, json_object_new_string(v)) : 0;
}

static int add_time(json_object *o, const char *k, int64_t ms)
{
	return ms != TSJSON_TIME_UNKNOWN ? add(o, k, json_object_new_int64(ms)) : 0;
}

static int add_null(json_object *o, const char *k)
{
	/* json-c's null is the NULL pointer; add() would take it for a failed allocation. */
	return json_object_object_add(o, k, NULL) < 0 ? -ENOMEM : 0;
}

static const char *get_str(json_object *o, const char *k)
{
	json_object *v = NULL;

	return json_object_object_get_ex(o, k, &v) ? json_object_get_string(v) : NULL;
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

static int add_weblink(json_object *o, const struct graph_options *opt, const char *path,
		       const char *id)
{
	_cleanup_buf_ struct buf b;
	size_t n;
	int r;

	buf_init(&b, GRAPH_STR_MAX);
	if (empty(opt->web_url))
		return 0;
	n = strlen(opt->web_url);
	while (n && opt->web_url[n - 1] == '/')
		n--;
	if ((r = buf_append(&b, opt->web_url, n)) < 0)
		return r;
	if (path && ((r = buf_puts(&b, path)) < 0 || (r = append_pct(&b, id)) < 0))
		return r;
	return add_str(o, "webLink", b.data);
}

/* Every string of the graph_object points into o, so a callback that keeps a reference to
 * o keeps them too. */
static int emit_obj(graph_emit_fn emit, void *userdata, enum graph_kind kind, json_object *o,
		    const char *owner, int64_t rank)
{
	json_object *m = json_object_object_get(o, "_mapping");
	struct graph_object g = {
		.kind = kind,
		.obj = o,
		.key = get_str(o, "_key"),
		.type = get_str(o, "_type"),
		.class = get_str(o, "_class"),
		.owner = owner,
		.rank = rank,
	};

	if (kind == GRAPH_RELATIONSHIP && m) {
		g.from_key = get_str(m, "sourceEntityKey");
		g.to_key = get_str(json_object_object_get(m, "targetEntity"), "_key");
	} else if (kind == GRAPH_RELATIONSHIP) {
		g.from_key = get_str(o, "_fromEntityKey");
		g.to_key = get_str(o, "_toEntityKey");
	}
	return emit(&g, userdata);
}

static json_object *new_object(const char *key, const char *type, const char *class)
{
	json_object *o = json_object_new_object();

	if (!o)
		return NULL;
	if (add_str(o, "_key", key) < 0 || add_str(o, "_type", type) < 0 ||
	    add_str(o, "_class", class) < 0) {
		json_object_put(o);
		return NULL;
	}
	return o;
}

static void lower_ascii(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* An explicit relationship: both ends are ours. */
static int emit_explicit(graph_emit_fn emit, void *userdata, const char *type, const char *class,
			 const char *from, const char *to, const char *owner, int64_t rank)
{
	_cleanup_json_ json_object *o = NULL;
	_cleanup_buf_ struct buf key;
	char cl[32];
	int r;

	buf_init(&key, GRAPH_STR_MAX);
	snprintf(cl, sizeof(cl), "%s", class);
	lower_ascii(cl);
	if ((r = buf_printf(&key, "%s|%s|%s", from, cl, to)) < 0)
		return r;
	if (!(o = new_object(key.data, type, class)))
		return -ENOMEM;
	if ((r = add_str(o, "_fromEntityKey", from)) < 0 ||
	    (r = add_str(o, "_toEntityKey", to)) < 0 || (r = add_str(o, "displayName", class)) < 0)
		return r;
	return emit_obj(emit, userdata, GRAPH_RELATIONSHIP, o, owner, rank);
}

static int arr_add_str(json_object *arr, const char *s)
{
	json_object *v = json_object_new_string(s);

	if (!v || json_object_array_add(arr, v) < 0) {
		json_object_put(v);
		return -ENOMEM;
	}
	return 0;
}

/* The "_mapping" member of a mapped relationship; takes ownership of target, also on
 * failure. skip_creation < 0 leaves skipTargetCreation out. */
static int add_mapping(json_object *o, const char *source_key, const char *filter_a,
		       const char *filter_b, json_object *target, int skip_creation)
{
	json_object *m = NULL, *keys = NULL, *pair = NULL;
	int r = -ENOMEM;

	if (!target)
		goto out;
	if ((r = add(o, "_mapping", m = json_object_new_object())) < 0 ||
	    (r = add_str(m, "relationshipDirection", "FORWARD")) < 0 ||
	    (r = add_str(m, "sourceEntityKey", source_key)) < 0 ||
	    (r = add(m, "targetFilterKeys", keys = json_object_new_array())) < 0)
		goto out;
	if (!(pair = json_object_new_array()) || json_object_array_add(keys, pair) < 0) {
		json_object_put(pair);
		r = -ENOMEM;
		goto out;
	}
	if ((r = arr_add_str(pair, filter_a)) < 0 || (r = arr_add_str(pair, filter_b)) < 0)
		goto out;
	r = add(m, "targetEntity", target);
	target = NULL; /* add() took it, whatever it returned */
	if (r < 0)
		goto out;
	if (skip_creation >= 0)
		r = add(m, "skipTargetCreation", json_object_new_boolean(skip_creation));
out:
	json_object_put(target);
	return r;
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
	_cleanup_json_ json_object *o = NULL;
	_cleanup_buf_ struct buf b;
	const char *org_name;
	int r;

	buf_init(&b, GRAPH_STR_MAX);
	if (!opt || empty(opt->org_id) || !emit)
		return -EINVAL;
	org_name = blank(opt->org_name) ? opt->org_id : opt->org_name;
	if ((r = join(&b, ACCT_KEY_PREFIX, opt->org_id)) < 0)
		return r;
	if (!(o = new_object(b.data, "threatstack_account", "Account")))
		return -ENOMEM;
	if ((r = join(&b, "Threat Stack - ", org_name)) < 0)
		return r;
	if ((r = add_str(o, "accountId", opt->org_id)) < 0 ||
	    (r = add_str(o, "name", org_name)) < 0 || (r = add_str(o, "displayName", b.data)) < 0 ||
	    (r = add_str(o, "vendor", "Threat Stack")) < 0 ||
	    (r = add_weblink(o, opt, NULL, NULL)) < 0)
		return r;
	return emit_obj(emit, userdata, GRAPH_ENTITY, o, NULL, 0);
}

static int add_strv(json_object *o, const char *k, const struct ts_strv *a, const struct ts_strv *b)
{
	json_object *arr;
	size_t n = (a ? a->n : 0) + (b ? b->n : 0);
	int r;

	if (n == 0)
		return 0;
	if (!(arr = json_object_new_array_ext((int)n)))
		return -ENOMEM;
	if ((r = add(o, k, arr)) < 0)
		return r;
	for (int pass = 0; pass < 2; pass++) {
		const struct ts_strv *v = pass ? b : a;

		for (size_t i = 0; v && i < v->n; i++)
			if (v->v[i] && (r = arr_add_str(arr, v->v[i])) < 0)
				return r;
	}
	return 0;
}

/* "tag." + key with every byte outside [A-Za-z0-9. -] replaced by '-', one '-' per UTF-8
 * sequence. Empty when the key is empty. */
static int sanitize_tag_key(const char *key, struct buf *b)
{
	int r;

	buf_reset(b);
	if ((r = buf_puts(b, TAG_PREFIX)) < 0)
		return r;
	for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
		char c = (char)*p;

		if (!ascii_alnum(*p) && c != '.' && c != ' ' && c != '-') {
			c = '-';
			if (*p >= 0xc0) /* lead byte: skip its continuation bytes */
				while ((p[1] & 0xc0) == 0x80)
					p++;
		}
		if ((r = buf_append(b, &c, 1)) < 0)
			return r;
	}
	return 0;
}

static int add_tags(json_object *o, const struct ts_agent *a)
{
	_cleanup_buf_ struct buf k;
	int r;

	buf_init(&k, GRAPH_STR_MAX);
	for (size_t i = 0; i < a->n_tags; i++) {
		const struct ts_tag *t = &a->tags[i];

		if (empty(t->key))
			continue;
		if ((r = sanitize_tag_key(t->key, &k)) < 0)
			return r;
		if (json_object_object_get_ex(o, k.data, NULL))
			continue; /* first wins: the key order of the input decides */
		/* A tag without a value is still a fact: "present". */
		if (t->value)
			r = add_str(o, k.data, t->value);
		else
			r = add(o, k.data, json_object_new_boolean(1));
		if (r < 0)
			return r;
	}
	return 0;
}

static int add_functions(json_object *o)
{
	/* HostAgent's enum; the earlier integration wrote "vulnerability-scan", not in it. */
	static const char *const fn[] = { "FIM", "activity-monitor", "vulnerability-detection" };
	json_object *arr = json_object_new_array_ext((int)ARRAY_SIZE(fn));
	int r;

	if ((r = add(o, "function", arr)) < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(fn); i++)
		if ((r = arr_add_str(arr, fn[i])) < 0)
			return r;
	return 0;
}

static int agent_entity(const struct graph_options *opt, const struct ts_agent *a, const char *key,
			const char *hostname, json_object **ret)
{
	_cleanup_json_ json_object *o = NULL;
	const char *name;
	int r;

	/* name is never null: name, else the hostname as reported, else the id. */
	name = !blank(a->name) ? a->name : !blank(a->hostname) ? a->hostname : a->id;
	if (!(o = new_object(key, "threatstack_agent", "HostAgent")))
		return -ENOMEM;
	if ((r = add_str(o, "id", a->id)) < 0 || (r = add_str(o, "name", name)) < 0 ||
	    (r = add_str(o, "displayName", name)) < 0 ||
	    (r = add_str(o, "instanceId", empty(a->instance_id) ? NULL : a->instance_id)) < 0 ||
	    (r = add_str(o, "hostname", empty(hostname) ? NULL : hostname)) < 0 ||
	    (r = add_str(o, "status", a->status)) < 0)
		return r;
	if (a->status &&
	    (r = add(o, "active", json_object_new_boolean(strcasecmp(a->status, "online") == 0))) <
		    0)
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
	if (a->healthy >= 0 && (r = add(o, "healthy", json_object_new_boolean(a->healthy))) < 0)
		return r;
	if ((r = add_tags(o, a)) < 0 || (r = add_weblink(o, opt, "/servers/", a->id)) < 0)
		return r;
	*ret = o;
	o = NULL;
	return 0;
}

static int agent_protects(const struct graph_options *opt, const struct ts_agent *a,
			  const char *agent_key, const char *hostname, int64_t rank,
			  graph_emit_fn emit, void *userdata)
{
	_cleanup_json_ json_object *o = NULL;
	_cleanup_buf_ struct buf key;
	_cleanup_json_ json_object *t = NULL;
	bool ec2 = !empty(a->instance_id);
	int r;

	buf_init(&key, GRAPH_STR_MAX);
	if (!ec2 && empty(hostname))
		return 0; /* nothing to match a Host by */
	r = ec2 ? buf_printf(&key, "%s|protects|aws_instance:%s", agent_key, a->instance_id)
		: buf_printf(&key, "%s|protects|host:%s", agent_key, hostname);
	if (r < 0)
		return r;
	if (!(o = new_object(key.data,
			     ec2 ? "threatstack_agent_protects_aws_instance"
				 : "threatstack_agent_protects_server",
			     "PROTECTS")))
		return -ENOMEM;
	if ((r = add_str(o, "displayName", "PROTECTS")) < 0)
		return r;
	if (!(t = json_object_new_object()))
		return -ENOMEM;
	if (ec2) {
		if ((r = add_str(t, "_type", "aws_instance")) < 0 ||
		    (r = add_str(t, "_class", "Host")) < 0 ||
		    (r = add_str(t, "instanceId", a->instance_id)) < 0)
			return r;
		r = add_mapping(o, agent_key, "_type", "instanceId", json_take(&t), 1);
	} else {
		if ((r = add_str(t, "_class", "Host")) < 0 ||
		    (r = add_str(t, "_type", "host")) < 0 ||
		    (r = add_str(t, "hostname", hostname)) < 0 ||
		    (r = add_str(t, "name", hostname)) < 0 ||
		    (r = add_str(t, "displayName", hostname)) < 0)
			return r;
		r = add_mapping(o, agent_key, "_class", "hostname", json_take(&t),
				!opt->create_host_placeholder);
	}
	if (r < 0)
		return r;
	return emit_obj(emit, userdata, GRAPH_RELATIONSHIP, o, agent_key, rank);
}

int graph_agent(const struct graph_options *opt, const struct ts_agent *a, graph_emit_fn emit,
		void *userdata)
{
	_cleanup_json_ json_object *ent = NULL;
	_cleanup_buf_ struct buf key;
	_cleanup_buf_ struct buf acct;
	_cleanup_free_ char *hostname = NULL;
	int64_t rank;
	int r;

	buf_init(&key, GRAPH_STR_MAX);
	buf_init(&acct, GRAPH_STR_MAX);
	if (!opt || empty(opt->org_id) || !a || empty(a->id) || !emit)
		return -EINVAL;
	rank = a->last_reported_at != TSJSON_TIME_UNKNOWN ? a->last_reported_at : 0;
	if (a->hostname && !(hostname = graph_normalize_hostname(a->hostname)))
		return -ENOMEM;
	if ((r = join(&key, AGENT_KEY_PREFIX, a->id)) < 0 ||
	    (r = join(&acct, ACCT_KEY_PREFIX, opt->org_id)) < 0)
		return r;
	if ((r = agent_entity(opt, a, key.data, hostname, &ent)) < 0)
		return r;
	if ((r = emit_obj(emit, userdata, GRAPH_ENTITY, ent, key.data, rank)) != 0)
		return r;
	if ((r = emit_explicit(emit, userdata, "threatstack_account_has_agent", "HAS", acct.data,
			       key.data, key.data, rank)) != 0)
		return r;
	return agent_protects(opt, a, key.data, hostname, rank, emit, userdata);
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
	_cleanup_json_ json_object *o = NULL;
	_cleanup_buf_ struct buf b;
	_cleanup_free_ char *upper = NULL, *lower = NULL;
	_cleanup_json_ json_object *t = NULL;
	int r;

	buf_init(&b, GRAPH_STR_MAX);
	if (!opt || !v || empty(agent_id) || !emit || !valid_cve(v->cve))
		return -EINVAL;
	if (!(upper = strdup(v->cve)) || !(lower = strdup(v->cve)))
		return -ENOMEM;
	for (char *p = upper; *p; p++) /* ASCII only, whatever the locale */
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	lower_ascii(lower);
	if ((r = buf_printf(&b, "%s%s|identified|%s", AGENT_KEY_PREFIX, agent_id, lower)) < 0)
		return r;
	if (!(o = new_object(b.data, "threatstack_agent_identified_vulnerability", "IDENTIFIED")))
		return -ENOMEM;
	if ((r = add_str(o, "displayName", "IDENTIFIED")) < 0 ||
	    (r = add_str(o, "finding", v->system_package)) < 0 ||
	    (r = add_str(o, "package", v->reported_package)) < 0)
		return r;
	if (v->suppressed >= 0 &&
	    (r = add(o, "suppressed", json_object_new_boolean(v->suppressed))) < 0)
		return r;
	if ((r = join(&b, NVD_LINK, upper)) < 0)
		return r;
	if (!(t = json_object_new_object()))
		return -ENOMEM;
	/* open: Vulnerability requires it; a CVE Threat Stack lists as active is open. */
	if ((r = add_str(t, "_type", "cve")) < 0 ||
	    (r = add_str(t, "_class", "Vulnerability")) < 0 ||
	    (r = add_str(t, "_key", lower)) < 0 || (r = add_str(t, "name", upper)) < 0 ||
	    (r = add_str(t, "displayName", upper)) < 0 || (r = add_str(t, "cveId", upper)) < 0 ||
	    (r = add_str(t, "webLink", b.data)) < 0 ||
	    (r = add_str(t, "severity", v->severity)) < 0 ||
	    (r = add_str(t, "vector", v->vector_type)) < 0 ||
	    (r = add(t, "open", json_object_new_boolean(1))) < 0)
		return r;
	if ((r = join(&b, AGENT_KEY_PREFIX, agent_id)) < 0)
		return r;
	if ((r = add_mapping(o, b.data, "_type", "_key", json_take(&t), -1)) < 0)
		return r;
	return emit_obj(emit, userdata, GRAPH_RELATIONSHIP, o, NULL, 0);
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
	_cleanup_json_ json_object *o = NULL;
	_cleanup_buf_ struct buf key;
	_cleanup_buf_ struct buf from;
	const char *name, *category, *sev;
	bool cloudtrail, dismissed;
	int r;

	buf_init(&key, GRAPH_STR_MAX);
	buf_init(&from, GRAPH_STR_MAX);
	if (!opt || empty(opt->org_id) || !al || empty(al->id) || !emit)
		return -EINVAL;
	if ((r = join(&key, ALERT_KEY_PREFIX, al->id)) < 0)
		return r;
	name = !blank(al->title) ? al->title : al->id;
	/* CloudTrail alerts say so in dataSource, or (older data) only by having no agent. */
	cloudtrail = al->data_source ? strcasecmp(al->data_source, "cloudtrail") == 0
				     : empty(al->agent_id);
	category = cloudtrail ? "cloudtrail" : "host-intrusion";
	dismissed = al->dismissed == 1 ||
		    (al->dismissed < 0 && al->dismissed_at != TSJSON_TIME_UNKNOWN);
	sev = severity_word(al->severity);
	if (!(o = new_object(key.data, "threatstack_alert", "Finding")))
		return -ENOMEM;
	if ((r = add_str(o, "id", al->id)) < 0 || (r = add_str(o, "name", name)) < 0 ||
	    (r = add_str(o, "displayName", name)) < 0 || (r = add_str(o, "category", category)) < 0)
		return r;
	/* Finding requires severity and numericSeverity: null when the alert has none. */
	if ((r = sev ? add_str(o, "severity", sev) : add_null(o, "severity")) < 0 ||
	    (r = sev ? add(o, "numericSeverity", json_object_new_int(al->severity))
		     : add_null(o, "numericSeverity")) < 0)
		return r;
	if ((r = add(o, "open", json_object_new_boolean(!dismissed))) < 0 ||
	    (r = add(o, "dismissed", json_object_new_boolean(dismissed))) < 0 ||
	    (r = add_time(o, "createdOn", al->created_at)) < 0 ||
	    (r = add_str(o, "dataSource", al->data_source)) < 0 ||
	    (r = add_str(o, "agentId", empty(al->agent_id) ? NULL : al->agent_id)) < 0 ||
	    (r = add_str(o, "ruleId", al->rule_id)) < 0 ||
	    (r = add_str(o, "rulesetId", al->ruleset_id)) < 0 ||
	    (r = add_str(o, "dismissReason", al->dismiss_reason)) < 0 ||
	    (r = add_str(o, "dismissReasonText", al->dismiss_reason_text)) < 0 ||
	    (r = add_str(o, "dismissedBy", al->dismissed_by)) < 0 ||
	    (r = add_time(o, "dismissedOn", al->dismissed_at)) < 0 ||
	    (r = add_weblink(o, opt, "/alerts/", al->id)) < 0)
		return r;
	/* An alert dismissed between the active and the dismissed listing shows up in both:
	 * the dismissed one is the newer news, so it ranks higher. */
	if ((r = emit_obj(emit, userdata, GRAPH_ENTITY, o, key.data, dismissed ? 1 : 0)) != 0)
		return r;
	if (empty(al->agent_id)) {
		if ((r = join(&from, ACCT_KEY_PREFIX, opt->org_id)) < 0)
			return r;
		return emit_explicit(emit, userdata, "threatstack_account_has_alert", "HAS",
				     from.data, key.data, key.data, 0);
	}
	if ((r = join(&from, AGENT_KEY_PREFIX, al->agent_id)) < 0)
		return r;
	return emit_explicit(emit, userdata, "threatstack_agent_identified_alert", "IDENTIFIED",
			     from.data, key.data, key.data, 0);
}
