/* tsjson — parsers for the Threat Stack API's JSON objects.
 *
 * Every member goes through one of a handful of typed getters (get_str, get_time, get_tri,
 * get_ips, ...) that share the same rule: absent or null is "unknown" and fine, the expected
 * JSON type is taken, a documented alternative spelling is taken (numbers as numeric
 * strings, an ipAddresses member as a bare string, isHealthy as "true"), and anything else
 * is -EBADMSG with a reason naming the member, never quoting its content. Strings are held
 * to TSJSON_STR_MAX and may not contain NUL bytes, so a C string always means what the JSON
 * meant. Arrays are held to TSJSON_LIST_MAX, except a CVE's "agents": a longer one is
 * dropped and has_agents cleared, which sends the caller to the paginated /servers listing
 * instead of failing the whole vulnerability listing on a big fleet.
 *
 * A time that is a string but not ISO-8601 (or integer milliseconds) is kept as
 * TSJSON_TIME_UNKNOWN rather than failing: it is content, not structure.
 *
 * tsjson_webhook() reads the alert webhook's body, the one input that comes from anyone who
 * can reach the receiver: the same getters, an id restricted to the characters Threat
 * Stack's ids use (so it is safe in a URL path and a log line as it is), the organization
 * checked, each alert kept as its own JSON for the inbox.
 *
 * tsjson_page() splits one listing page into its items and its continuation token; it is
 * the piece tsapi hands untrusted bytes to, and what the fuzz target exercises. A page must
 * carry its collection as an array of objects and no "errors": anything else is a failed
 * page, because an answer read as "no items" would make the caller delete what it lists.
 * Before any parsing, tsjson_document() scans the bytes once and estimates what json-c
 * will allocate for them (see estimate()); a body over the caller's budget is refused with
 * -E2BIG, so memory follows the budget, not the density of the input.
 */
#include "tsgraphd/tsjson.h"
#include "tsgraphd/util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>

#define EXCERPT_MAX   40
#define SIZE_TEXT_MAX 32 /* format_size()'s "1.5 MiB" */

static void seterr(char *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void seterr(char *err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, TSJSON_ERR_MAX, fmt, ap);
	va_end(ap);
}

/* A short excerpt that is safe in a log line: [A-Za-z0-9._-] kept, the rest as '?'. */
static void excerpt(const char *s, char out[static EXCERPT_MAX + 4])
{
	size_t i;

	for (i = 0; s && s[i] && i < EXCERPT_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		out[i] = (char)((isalnum(c) || c == '-' || c == '_' || c == '.') ? c : '?');
	}
	if (s && s[i]) {
		memcpy(out + i, "...", 3);
		i += 3;
	}
	out[i] = '\0';
}

static json_object *member(json_object *o, const char *name)
{
	json_object *v = NULL;

	if (!json_object_object_get_ex(o, name, &v))
		return NULL;
	return v; /* NULL for JSON null as well */
}

static int check_string(json_object *v, const char *what, char *err)
{
	const char *s = json_object_get_string(v);
	size_t len = (size_t)json_object_get_string_len(v);

	if (len > TSJSON_STR_MAX) {
		seterr(err, "%s: longer than %d bytes", what, TSJSON_STR_MAX);
		return -EBADMSG;
	}
	if (memchr(s, '\0', len)) {
		seterr(err, "%s: contains a NUL byte", what);
		return -EBADMSG;
	}
	return 0;
}

/* A string member: absent/null leaves *ret NULL. */
static int get_str(json_object *o, const char *name, char **ret, char *err)
{
	json_object *v = member(o, name);
	int r;

	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_string)) {
		seterr(err, "%s: not a string", name);
		return -EBADMSG;
	}
	r = check_string(v, name, err);
	if (r < 0)
		return r;
	free(*ret);
	*ret = strdup(json_object_get_string(v));
	return *ret ? 0 : -ENOMEM;
}

static int get_id(json_object *o, const char *name, char **ret, char *err)
{
	int r = get_str(o, name, ret, err);

	if (r < 0)
		return r;
	if (!*ret || !**ret) {
		seterr(err, "missing %s", name);
		return -EBADMSG;
	}
	return 0;
}

/* ISO-8601 string, integer milliseconds, or a numeric string of them. */
static int get_time(json_object *o, const char *name, int64_t *ret, char *err)
{
	json_object *v = member(o, name);
	int64_t t;
	int r;

	*ret = TSJSON_TIME_UNKNOWN;
	if (!v)
		return 0;
	if (json_object_is_type(v, json_type_int)) {
		t = json_object_get_int64(v);
		if (t > 0)
			*ret = t;
		return 0;
	}
	if (!json_object_is_type(v, json_type_string)) {
		seterr(err, "%s: not a time", name);
		return -EBADMSG;
	}
	r = check_string(v, name, err);
	if (r < 0)
		return r;
	if (parse_iso8601_ms(json_object_get_string(v), &t) == 0 ||
	    parse_i64(json_object_get_string(v), 1, INT64_MAX, &t) == 0)
		*ret = t;
	return 0;
}

/* true/false, or "true"/"false": 1, 0; absent or null: -1. */
static int get_tri(json_object *o, const char *name, int *ret, char *err)
{
	json_object *v = member(o, name);
	bool b;

	*ret = -1;
	if (!v)
		return 0;
	if (json_object_is_type(v, json_type_boolean)) {
		*ret = json_object_get_boolean(v) ? 1 : 0;
		return 0;
	}
	if (json_object_is_type(v, json_type_string) &&
	    parse_bool(json_object_get_string(v), &b) == 0) {
		*ret = b ? 1 : 0;
		return 0;
	}
	seterr(err, "%s: not a boolean", name);
	return -EBADMSG;
}

static int strv_push(struct ts_strv *v, const char *s, size_t len, const char *what, char *err)
{
	char **nv;

	if (v->n >= TSJSON_LIST_MAX) {
		seterr(err, "%s: more than %d items", what, TSJSON_LIST_MAX);
		return -EBADMSG;
	}
	nv = realloc(v->v, (v->n + 1) * sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	v->v = nv;
	v->v[v->n] = strndup(s, len);
	if (!v->v[v->n])
		return -ENOMEM;
	v->n++;
	return 0;
}

/* One address, "/prefix" dropped; blanks around it ignored, empty ones skipped. */
static int push_ip(struct ts_strv *v, json_object *s, const char *what, char *err)
{
	const char *p;
	size_t len;
	int r;

	if (!json_object_is_type(s, json_type_string)) {
		seterr(err, "%s: not a string", what);
		return -EBADMSG;
	}
	r = check_string(s, what, err);
	if (r < 0)
		return r;
	p = json_object_get_string(s);
	while (isspace((unsigned char)*p))
		p++;
	len = strcspn(p, "/");
	while (len > 0 && isspace((unsigned char)p[len - 1]))
		len--;
	if (len == 0)
		return 0;
	return strv_push(v, p, len, what, err);
}

static int get_ips(json_object *ips, const char *name, struct ts_strv *ret, char *err)
{
	json_object *v = member(ips, name);
	char what[64];
	int r;

	snprintf(what, sizeof(what), "ipAddresses.%s", name);
	if (!v)
		return 0;
	if (json_object_is_type(v, json_type_string))
		return push_ip(ret, v, what, err);
	if (!json_object_is_type(v, json_type_array)) {
		seterr(err, "%s: not a string or an array", what);
		return -EBADMSG;
	}
	for (size_t i = 0; i < json_object_array_length(v); i++) {
		json_object *item = json_object_array_get_idx(v, i);

		if (!item)
			continue;
		r = push_ip(ret, item, what, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int get_tags(json_object *o, struct ts_agent *a, char *err)
{
	json_object *v = member(o, "tags");
	size_t n;
	int r;

	if (!v)
		return 0;
	if (!json_object_is_type(v, json_type_array)) {
		seterr(err, "tags: not an array");
		return -EBADMSG;
	}
	n = json_object_array_length(v);
	if (n > TSJSON_LIST_MAX) {
		seterr(err, "tags: more than %d items", TSJSON_LIST_MAX);
		return -EBADMSG;
	}
	if (n == 0)
		return 0;
	a->tags = calloc(n, sizeof(*a->tags));
	if (!a->tags)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_object *t = json_object_array_get_idx(v, i);
		struct ts_tag *tag = &a->tags[a->n_tags];

		if (!t)
			continue;
		if (!json_object_is_type(t, json_type_object)) {
			seterr(err, "tags[%zu]: not an object", i);
			return -EBADMSG;
		}
		a->n_tags++; /* counted first so that a failure below still frees it */
		r = get_str(t, "source", &tag->source, err);
		if (r == 0)
			r = get_str(t, "key", &tag->key, err);
		if (r == 0)
			r = get_str(t, "value", &tag->value, err);
		if (r < 0)
			return r;
		if (!tag->key) { /* a tag without a key names nothing: skip it */
			free(tag->source);
			free(tag->value);
			memset(tag, 0, sizeof(*tag));
			a->n_tags--;
		}
	}
	return 0;
}

static int need_object(json_object *o, const char *what, char *err)
{
	if (!o || !json_object_is_type(o, json_type_object)) {
		seterr(err, "%s: not an object", what);
		return -EBADMSG;
	}
	return 0;
}

/* Prefixes err with "<what> <id>: " once the id is known. */
static void tag_err(char *err, const char *what, const char *id)
{
	char ex[EXCERPT_MAX + 4], tmp[TSJSON_ERR_MAX];

	if (!id)
		return;
	excerpt(id, ex);
	snprintf(tmp, sizeof(tmp), "%s", err);
	seterr(err, "%s %s: %s", what, ex, tmp);
}

int tsjson_agent(json_object *o, struct ts_agent *ret, char err[static TSJSON_ERR_MAX])
{
	static const struct {
		const char *name;
		size_t off;
	} strs[] = {
#define S(n, f) { n, offsetof(struct ts_agent, f) }
		S("instanceId", instance_id),  S("status", status),	   S("name", name),
		S("description", description), S("hostname", hostname),	   S("version", version),
		S("agentType", agent_type),    S("osVersion", os_version), S("kernel", kernel),
#undef S
	};
	struct ts_agent a = { .created_at = TSJSON_TIME_UNKNOWN,
			      .last_reported_at = TSJSON_TIME_UNKNOWN,
			      .healthy = -1 };
	json_object *v;
	int r;

	err[0] = '\0';
	r = need_object(o, "agent", err);
	if (r < 0)
		return r;
	r = get_id(o, "id", &a.id, err);
	if (r < 0)
		goto out;
	for (size_t i = 0; i < ARRAY_SIZE(strs) && r == 0; i++)
		r = get_str(o, strs[i].name, (char **)((char *)&a + strs[i].off), err);
	if (r == 0)
		r = get_time(o, "createdAt", &a.created_at, err);
	if (r == 0)
		r = get_time(o, "lastReportedAt", &a.last_reported_at, err);
	if (r < 0)
		goto out;
	v = member(o, "ipAddresses");
	if (v) {
		if (json_object_is_type(v, json_type_string)) {
			/* Seen in the wild as one bare address: treat it as private. */
			r = push_ip(&a.ip_private, v, "ipAddresses", err);
		} else {
			r = need_object(v, "ipAddresses", err);
			if (r == 0)
				r = get_ips(v, "private", &a.ip_private, err);
			if (r == 0)
				r = get_ips(v, "public", &a.ip_public, err);
			if (r == 0)
				r = get_ips(v, "link_local", &a.ip_link_local, err);
		}
		if (r < 0)
			goto out;
	}
	r = get_tags(o, &a, err);
	if (r < 0)
		goto out;
	v = member(o, "agentModuleHealth");
	if (v) {
		r = need_object(v, "agentModuleHealth", err);
		if (r == 0)
			r = get_tri(v, "isHealthy", &a.healthy, err);
		if (r < 0)
			goto out;
	}
	*ret = a;
	return 0;
out:
	if (r != -ENOMEM)
		tag_err(err, "agent", a.id);
	else
		seterr(err, "agent: out of memory");
	ts_agent_free(&a);
	return r;
}

static void lower(char *s)
{
	for (; s && *s; s++)
		*s = (char)tolower((unsigned char)*s);
}

static int get_vuln_agents(json_object *o, struct ts_vuln *vu, char *err)
{
	json_object *v = member(o, "agents");
	size_t n;
	int r;

	if (!v)
		return 0; /* has_agents stays false: ask /servers */
	if (!json_object_is_type(v, json_type_array)) {
		seterr(err, "agents: not an array");
		return -EBADMSG;
	}
	n = json_object_array_length(v);
	if (n > TSJSON_LIST_MAX)
		return 0; /* too many to carry here: the paginated /servers listing has them */
	for (size_t i = 0; i < n; i++) {
		json_object *it = json_object_array_get_idx(v, i), *id = it;

		if (!it)
			continue;
		if (json_object_is_type(it, json_type_object))
			id = member(it, "agentId");
		if (!id)
			continue;
		if (!json_object_is_type(id, json_type_string)) {
			seterr(err, "agents[%zu].agentId: not a string", i);
			return -EBADMSG;
		}
		r = check_string(id, "agents[].agentId", err);
		if (r < 0)
			return r;
		if (json_object_get_string_len(id) == 0)
			continue;
		r = strv_push(&vu->agent_ids, json_object_get_string(id),
			      (size_t)json_object_get_string_len(id), "agents", err);
		if (r < 0)
			return r;
	}
	vu->has_agents = true;
	return 0;
}

int tsjson_vuln(json_object *o, struct ts_vuln *ret, char err[static TSJSON_ERR_MAX])
{
	struct ts_vuln vu = { .suppressed = -1 };
	int r;

	err[0] = '\0';
	r = need_object(o, "vulnerability", err);
	if (r < 0)
		return r;
	r = get_id(o, "cveNumber", &vu.cve, err);
	if (r == 0)
		r = get_str(o, "reportedPackage", &vu.reported_package, err);
	if (r == 0)
		r = get_str(o, "systemPackage", &vu.system_package, err);
	if (r == 0)
		r = get_str(o, "vectorType", &vu.vector_type, err);
	if (r == 0)
		r = get_str(o, "severity", &vu.severity, err);
	if (r == 0)
		r = get_tri(o, "isSuppressed", &vu.suppressed, err);
	if (r == 0)
		r = get_vuln_agents(o, &vu, err);
	if (r < 0) {
		if (r != -ENOMEM)
			tag_err(err, "vulnerability", vu.cve);
		ts_vuln_free(&vu);
		return r;
	}
	lower(vu.severity);
	*ret = vu;
	return 0;
}

int tsjson_server(json_object *o, struct ts_server *ret, char err[static TSJSON_ERR_MAX])
{
	struct ts_server s = { 0 };
	int r;

	err[0] = '\0';
	r = need_object(o, "server", err);
	if (r < 0)
		return r;
	r = get_id(o, "agentId", &s.agent_id, err);
	if (r == 0)
		r = get_str(o, "hostname", &s.hostname, err);
	if (r < 0) {
		if (r != -ENOMEM)
			tag_err(err, "server", s.agent_id);
		ts_server_free(&s);
		return r;
	}
	*ret = s;
	return 0;
}

/* severity: 1..3 as a number or a numeric string; anything else in range of "a number" is 0. */
static int get_severity(json_object *o, int *ret, char *err)
{
	json_object *v = member(o, "severity");
	int64_t n = 0;

	*ret = 0;
	if (!v)
		return 0;
	if (json_object_is_type(v, json_type_int))
		n = json_object_get_int64(v);
	else if (json_object_is_type(v, json_type_string)) {
		if (parse_i64(json_object_get_string(v), INT64_MIN, INT64_MAX, &n) < 0)
			n = 0;
	} else if (json_object_is_type(v, json_type_double)) {
		double d = json_object_get_double(v);
		n = d >= 1 && d <= 3 && d == (double)(int)d ? (int)d : 0;
	} else {
		seterr(err, "severity: not a number");
		return -EBADMSG;
	}
	*ret = n >= 1 && n <= 3 ? (int)n : 0;
	return 0;
}

int tsjson_alert(json_object *o, struct ts_alert *ret, char err[static TSJSON_ERR_MAX])
{
	struct ts_alert a = { .created_at = TSJSON_TIME_UNKNOWN,
			      .dismissed_at = TSJSON_TIME_UNKNOWN,
			      .dismissed = -1 };
	int r;

	err[0] = '\0';
	r = need_object(o, "alert", err);
	if (r < 0)
		return r;
	r = get_id(o, "id", &a.id, err);
	if (r == 0)
		r = get_str(o, "title", &a.title, err);
	if (r == 0)
		r = get_str(o, "dataSource", &a.data_source, err);
	if (r == 0)
		r = get_str(o, "agentId", &a.agent_id, err);
	if (r == 0)
		r = get_str(o, "ruleId", &a.rule_id, err);
	if (r == 0)
		r = get_str(o, "rulesetId", &a.ruleset_id, err);
	if (r == 0)
		r = get_str(o, "dismissedReason", &a.dismiss_reason, err);
	if (r == 0) /* the current name wins when both are present */
		r = get_str(o, "dismissReason", &a.dismiss_reason, err);
	if (r == 0)
		r = get_str(o, "dismissReasonText", &a.dismiss_reason_text, err);
	if (r == 0)
		r = get_str(o, "dismissedBy", &a.dismissed_by, err);
	if (r == 0)
		r = get_time(o, "createdAt", &a.created_at, err);
	if (r == 0)
		r = get_time(o, "dismissedAt", &a.dismissed_at, err);
	if (r == 0)
		r = get_severity(o, &a.severity, err);
	if (r == 0)
		r = get_tri(o, "isDismissed", &a.dismissed, err);
	if (r < 0) {
		if (r != -ENOMEM)
			tag_err(err, "alert", a.id);
		ts_alert_free(&a);
		return r;
	}
	if (a.agent_id && !*a.agent_id) {
		free(a.agent_id);
		a.agent_id = NULL;
	}
	*ret = a;
	return 0;
}

/* A webhook alert's id: a string, or an integer as webhooks sometimes send numbers; at most
 * TSJSON_WEBHOOK_ID_MAX bytes of [A-Za-z0-9._:-]. */
static int get_webhook_id(json_object *o, char **ret, char *err)
{
	json_object *v = member(o, "id");
	char num[32];
	const char *s;
	size_t len;

	if (!v) {
		seterr(err, "missing id");
		return -EBADMSG;
	}
	if (json_object_is_type(v, json_type_int)) {
		snprintf(num, sizeof(num), "%" PRId64, json_object_get_int64(v));
		s = num;
	} else if (json_object_is_type(v, json_type_string)) {
		s = json_object_get_string(v);
	} else {
		seterr(err, "id: not a string");
		return -EBADMSG;
	}
	len = strlen(s);
	if (len == 0) {
		seterr(err, "id: empty");
		return -EBADMSG;
	}
	if (len > TSJSON_WEBHOOK_ID_MAX || (json_object_is_type(v, json_type_string) &&
					    (size_t)json_object_get_string_len(v) != len)) {
		seterr(err, "id: longer than %d bytes or with a NUL byte", TSJSON_WEBHOOK_ID_MAX);
		return -EBADMSG;
	}
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!isalnum(c) && c != '.' && c != '_' && c != ':' && c != '-') {
			seterr(err, "id: not an alert id (letters, digits, '.', '_', ':', '-')");
			return -EBADMSG;
		}
	}
	*ret = strdup(s);
	return *ret ? 0 : -ENOMEM;
}

/* organization_Name is spelled so in the vendor's page; any case is taken. */
static json_object *member_any_case(json_object *o, const char *name)
{
	json_object_object_foreach(o, key, val)
	{
		if (strcasecmp(key, name) == 0)
			return val;
	}
	return NULL;
}

static void webhook_alert_free(struct ts_webhook_alert *a)
{
	free(a->id);
	free(a->title);
	free(a->organization_id);
	free(a->organization_name);
	free(a->server_or_region);
	free(a->source);
	free(a->json);
	memset(a, 0, sizeof(*a));
}

static int webhook_alert(json_object *o, const char *org_id, struct ts_webhook_alert *a, char *err)
{
	json_object *name;
	const char *json;
	size_t len;
	int r;

	*a = (struct ts_webhook_alert){ .created_at = TSJSON_TIME_UNKNOWN };
	r = need_object(o, "alert", err);
	if (r == 0)
		r = get_webhook_id(o, &a->id, err);
	if (r == 0)
		r = get_str(o, "title", &a->title, err);
	if (r == 0)
		r = get_str(o, "organization_id", &a->organization_id, err);
	if (r == 0)
		r = get_str(o, "server_or_region", &a->server_or_region, err);
	if (r == 0)
		r = get_str(o, "source", &a->source, err);
	if (r == 0)
		r = get_time(o, "created_at", &a->created_at, err);
	if (r == 0)
		r = get_severity(o, &a->severity, err);
	if (r == 0 && (name = member_any_case(o, "organization_name")) != NULL) {
		if (!json_object_is_type(name, json_type_string)) {
			seterr(err, "organization_Name: not a string");
			r = -EBADMSG;
		} else {
			r = check_string(name, "organization_Name", err);
			if (r == 0 &&
			    !(a->organization_name = strdup(json_object_get_string(name))))
				r = -ENOMEM;
		}
	}
	if (r == 0 && org_id && a->organization_id && strcmp(a->organization_id, org_id) != 0) {
		seterr(err, "organization_id: not this organization's");
		r = -EPERM;
	}
	if (r == 0) {
		json = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE);
		len = json ? strlen(json) : 0;
		if (len > TSJSON_WEBHOOK_ALERT_MAX) {
			seterr(err, "larger than %u KiB", TSJSON_WEBHOOK_ALERT_MAX / 1024);
			r = -E2BIG;
		} else if (!json || !(a->json = strdup(json))) {
			r = -ENOMEM;
		}
	}
	if (r < 0)
		webhook_alert_free(a);
	return r;
}

void ts_webhook_free(struct ts_webhook *w)
{
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		webhook_alert_free(&w->alerts[i]);
	free(w->alerts);
	w->alerts = NULL;
	w->n = 0;
}

/* Prefixes err with where the alert sits: "alerts[3]: " in a wrapped body. */
static void where_err(char *err, bool wrapped, size_t i)
{
	char tmp[TSJSON_ERR_MAX];

	if (!wrapped)
		return;
	snprintf(tmp, sizeof(tmp), "%s", err);
	seterr(err, "alerts[%zu]: %s", i, tmp);
}

int tsjson_webhook(const char *body, size_t len, const char *org_id, struct ts_webhook *ret,
		   char err[static TSJSON_ERR_MAX])
{
	struct ts_webhook w = { 0 };
	json_object *root = NULL, *list = NULL;
	bool wrapped;
	size_t n = 1;
	int r;

	err[0] = '\0';
	r = tsjson_document(body, len, TSJSON_WEBHOOK_PARSE_MAX, &root, err);
	if (r < 0)
		return r;
	wrapped = json_object_object_get_ex(root, "alerts", &list);
	if (wrapped) {
		if (!list || !json_object_is_type(list, json_type_array)) {
			seterr(err, "alerts: not an array");
			r = -EBADMSG;
			goto out;
		}
		n = json_object_array_length(list);
		if (n == 0) {
			seterr(err, "alerts: empty");
			r = -EBADMSG;
			goto out;
		}
		if (n > TSJSON_WEBHOOK_ALERTS_MAX) {
			seterr(err, "alerts: more than %d in one request",
			       TSJSON_WEBHOOK_ALERTS_MAX);
			r = -E2BIG;
			goto out;
		}
	}
	w.alerts = calloc(n, sizeof(*w.alerts));
	if (!w.alerts) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		r = webhook_alert(wrapped ? json_object_array_get_idx(list, i) : root, org_id,
				  &w.alerts[i], err);
		if (r < 0) {
			if (r == -ENOMEM)
				seterr(err, "out of memory");
			else
				where_err(err, wrapped, i);
			goto out;
		}
		w.n++;
	}
	*ret = w;
	w = (struct ts_webhook){ 0 };
out:
	ts_webhook_free(&w);
	json_object_put(root);
	return r;
}

/* What json-c will spend on a document, estimated before parsing, from figures measured on
 * json-c 0.16 (x86-64) and rounded up: an object's hash table starts at 16 entries (~790
 * bytes even when empty), an array's at 32 slots (~150), any scalar ~64 and a string ~64
 * plus its bytes; an object member adds its table entry and key copy, a comma the slot
 * growth. Each is a JSON value in the count; the cost, not the count, is what is bounded,
 * because `[{},{},...]` and `[0,0,...]` differ twelvefold per byte. */
#define COST_OBJECT 800
#define COST_ARRAY  160
#define COST_SCALAR 64
#define COST_STRING 80
#define COST_MEMBER 48
#define COST_COMMA  16

struct density {
	size_t values;
	size_t cost;
};

static void estimate(const char *body, size_t len, size_t stop_at, struct density *ret)
{
	bool in_string = false, in_scalar = false;
	size_t values = 0, cost = 0, start = 0;

	for (size_t i = 0; i < len && cost <= stop_at; i++) {
		char c = body[i];

		if (in_string) {
			if (c == '\\') {
				i++;
			} else if (c == '"') {
				in_string = false;
				cost += COST_STRING + (i - start);
			}
			continue;
		}
		if (isalnum((unsigned char)c) || c == '-' || c == '+' || c == '.') {
			if (!in_scalar) {
				values++;
				cost += COST_SCALAR;
			}
			in_scalar = true;
			continue;
		}
		in_scalar = false;
		switch (c) {
		case '"':
			in_string = true;
			start = i;
			values++;
			break;
		case '{':
			values++;
			cost += COST_OBJECT;
			break;
		case '[':
			values++;
			cost += COST_ARRAY;
			break;
		case ':':
			if (values > 0)
				values--; /* the string before it was a key, not a value */
			cost += COST_MEMBER;
			break;
		case ',':
			cost += COST_COMMA;
			break;
		default:
			break;
		}
	}
	ret->values = values;
	ret->cost = cost;
}

/* "16 MiB", "1.5 MiB" or "512 KiB", rounded up: sizes in messages. */
static void format_size(size_t n, char out[static SIZE_TEXT_MAX])
{
	size_t tenths = (n * 10 + (1u << 20) - 1) >> 20;

	if (n < (1u << 20))
		snprintf(out, SIZE_TEXT_MAX, "%zu KiB", (n + 1023) / 1024);
	else if (tenths % 10)
		snprintf(out, SIZE_TEXT_MAX, "%zu.%zu MiB", tenths / 10, tenths % 10);
	else
		snprintf(out, SIZE_TEXT_MAX, "%zu MiB", tenths / 10);
}

int tsjson_document(const char *body, size_t len, size_t max_parse, json_object **ret_root,
		    char err[static TSJSON_ERR_MAX])
{
	json_tokener *tok = NULL;
	json_object *root = NULL;
	struct density d;
	int r = -EBADMSG;

	err[0] = '\0';
	if (!max_parse)
		max_parse = TSJSON_PARSE_MAX;
	if (len == 0) {
		seterr(err, "empty body");
		goto out;
	}
	if (len > INT32_MAX) {
		seterr(err, "body larger than 2 GiB");
		r = -E2BIG;
		goto out;
	}
	estimate(body, len, max_parse, &d);
	if (d.cost > max_parse) {
		char cost[SIZE_TEXT_MAX], limit[SIZE_TEXT_MAX];

		format_size(d.cost, cost);
		format_size(max_parse, limit);
		seterr(err,
		       "too dense: %zu JSON values or more would take over %s to parse (limit %s)",
		       d.values, cost, limit);
		r = -E2BIG;
		goto out;
	}
	tok = json_tokener_new();
	if (!tok) {
		r = -ENOMEM;
		goto out;
	}
	root = json_tokener_parse_ex(tok, body, (int)len);
	if (!root) {
		enum json_tokener_error e = json_tokener_get_error(tok);
		seterr(err, "not JSON (%s)",
		       e == json_tokener_continue ? "truncated" : json_tokener_error_desc(e));
		goto out;
	}
	for (size_t i = (size_t)json_tokener_get_parse_end(tok); i < len; i++)
		if (!isspace((unsigned char)body[i])) {
			seterr(err, "trailing bytes after the JSON document");
			goto out;
		}
	if (!json_object_is_type(root, json_type_object)) {
		seterr(err, "not a JSON object");
		goto out;
	}
	*ret_root = root;
	root = NULL;
	r = 0;
out:
	json_object_put(root);
	if (tok)
		json_tokener_free(tok);
	return r;
}

int tsjson_errors(json_object *root, char err[static TSJSON_ERR_MAX])
{
	json_object *v = member(root, "errors"), *first = NULL;
	char said[EXCERPT_MAX + 4] = "";
	const char *s = NULL;
	size_t i;

	if (!v || (json_object_is_type(v, json_type_array) && json_object_array_length(v) == 0))
		return 0;
	if (json_object_is_type(v, json_type_array))
		first = json_object_array_get_idx(v, 0);
	else
		first = v;
	if (first && json_object_is_type(first, json_type_string))
		s = json_object_get_string(first);
	/* The server's words, printable ASCII only, cut short. */
	for (i = 0; s && s[i] && i < EXCERPT_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		said[i] = (char)(c >= 0x20 && c < 0x7f && c != '"' && c != '\\' ? c : '?');
	}
	said[i] = '\0';
	if (said[0])
		seterr(err, "the answer carries \"errors\" (%s)", said);
	else
		seterr(err, "the answer carries \"errors\"");
	return -EBADMSG;
}

int tsjson_page(const char *body, size_t len, size_t max_parse, const char *collection,
		json_object **ret_root, json_object **ret_items, const char **ret_token,
		char err[static TSJSON_ERR_MAX])
{
	json_object *root = NULL, *items, *token;
	const char *t = NULL;
	size_t n;
	int r;

	r = tsjson_document(body, len, max_parse, &root, err);
	if (r < 0)
		return r;
	r = tsjson_errors(root, err);
	if (r < 0)
		goto out;
	r = -EBADMSG;
	/* An answer without its collection is a failure, never an empty page: reading it as
	 * "none" would delete everything the listing covers. */
	if (!json_object_object_get_ex(root, collection, &items)) {
		seterr(err, "no \"%s\" member in the answer", collection);
		goto out;
	}
	if (!items || !json_object_is_type(items, json_type_array)) {
		seterr(err, "\"%s\" is %s, not an array", collection,
		       items ? json_type_to_name(json_object_get_type(items)) : "null");
		goto out;
	}
	n = json_object_array_length(items);
	for (size_t i = 0; i < n; i++) {
		json_object *it = json_object_array_get_idx(items, i);

		if (!it || !json_object_is_type(it, json_type_object)) {
			seterr(err, "\"%s\"[%zu] is %s, not an object", collection, i,
			       it ? json_type_to_name(json_object_get_type(it)) : "null");
			goto out;
		}
	}
	token = member(root, "token");
	if (!token)
		token = member(root, "paginationToken");
	if (token) {
		if (!json_object_is_type(token, json_type_string)) {
			seterr(err, "token: not a string");
			goto out;
		}
		if (check_string(token, "token", err) < 0)
			goto out;
		t = json_object_get_string(token);
		if (!*t)
			t = NULL;
	}
	*ret_root = root;
	*ret_items = items;
	*ret_token = t;
	root = NULL;
	r = 0;
out:
	json_object_put(root);
	return r;
}

void ts_strv_free(struct ts_strv *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++)
		free(v->v[i]);
	free(v->v);
	v->v = NULL;
	v->n = 0;
}

void ts_agent_free(struct ts_agent *a)
{
	if (!a)
		return;
	free(a->id);
	free(a->instance_id);
	free(a->status);
	free(a->name);
	free(a->description);
	free(a->hostname);
	free(a->version);
	free(a->agent_type);
	free(a->os_version);
	free(a->kernel);
	ts_strv_free(&a->ip_private);
	ts_strv_free(&a->ip_public);
	ts_strv_free(&a->ip_link_local);
	for (size_t i = 0; i < a->n_tags; i++) {
		free(a->tags[i].source);
		free(a->tags[i].key);
		free(a->tags[i].value);
	}
	free(a->tags);
	memset(a, 0, sizeof(*a));
}

void ts_vuln_free(struct ts_vuln *v)
{
	if (!v)
		return;
	free(v->cve);
	free(v->reported_package);
	free(v->system_package);
	free(v->vector_type);
	free(v->severity);
	ts_strv_free(&v->agent_ids);
	memset(v, 0, sizeof(*v));
}

void ts_server_free(struct ts_server *s)
{
	if (!s)
		return;
	free(s->agent_id);
	free(s->hostname);
	memset(s, 0, sizeof(*s));
}

void ts_alert_free(struct ts_alert *a)
{
	if (!a)
		return;
	free(a->id);
	free(a->title);
	free(a->data_source);
	free(a->agent_id);
	free(a->rule_id);
	free(a->ruleset_id);
	free(a->dismiss_reason);
	free(a->dismiss_reason_text);
	free(a->dismissed_by);
	memset(a, 0, sizeof(*a));
}
