/* tsjson — parsers for the Threat Stack API's JSON objects (untrusted input).
 *
 * Each parser takes one json-c object as the API returned it and fills a plain C struct.
 * Tolerant of what real data does: missing and null members, numbers sent as strings,
 * ipAddresses members that are a string or an array, legacy member names. Strict about
 * structure: a member of the wrong JSON type, a missing id, or a string over TSJSON_STR_MAX
 * is -EBADMSG with a one-line reason in err (never containing the offending bytes beyond a
 * short, sanitised excerpt).
 *
 * Ownership: every struct owns its strings; the matching *_free() releases them and
 * accepts a zeroed or half-filled struct. Threads: pure functions, any thread.
 */
#ifndef TSGRAPHD_TSJSON_H
#define TSGRAPHD_TSJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define TSJSON_ERR_MAX	    256
#define TSJSON_STR_MAX	    4096 /* longest string member kept */
#define TSJSON_LIST_MAX	    1024 /* most items in an array member (ips, tags, agents of a CVE) */
#define TSJSON_PARSE_MAX    (16u * 1024 * 1024) /* default parse budget, bytes */
#define TSJSON_TIME_UNKNOWN INT64_MIN

struct ts_strv {
	char **v;
	size_t n;
};

struct ts_tag {
	char *source; /* may be NULL */
	char *key;
	char *value; /* may be NULL */
};

struct ts_agent {
	char *id;
	char *instance_id; /* NULL off EC2 */
	char *status;	   /* "online" | "offline" | other, NULL when absent */
	char *name;
	char *description;
	char *hostname;
	char *version;
	char *agent_type;
	char *os_version;
	char *kernel;
	int64_t created_at;	   /* ms since epoch, TSJSON_TIME_UNKNOWN when absent */
	int64_t last_reported_at;  /* ditto */
	struct ts_strv ip_private; /* "/prefix" stripped */
	struct ts_strv ip_public;
	struct ts_strv ip_link_local;
	struct ts_tag *tags;
	size_t n_tags;
	int healthy; /* agentModuleHealth.isHealthy: 1, 0, or -1 when absent */
};

struct ts_vuln {
	char *cve; /* "CVE-2019-11477" as sent */
	char *reported_package;
	char *system_package;
	char *vector_type;
	char *severity;	 /* word as sent, lower-cased */
	int suppressed;	 /* 1, 0, -1 when absent */
	bool has_agents; /* false: the listing had no "agents" member; ask /servers */
	struct ts_strv agent_ids;
};

struct ts_server {
	char *agent_id;
	char *hostname;
};

struct ts_alert {
	char *id;
	char *title;
	char *data_source;
	char *agent_id; /* NULL for CloudTrail alerts */
	char *rule_id;
	char *ruleset_id;
	char *dismiss_reason; /* dismissReason, or the older dismissedReason */
	char *dismiss_reason_text;
	char *dismissed_by;
	int64_t created_at;   /* ms, TSJSON_TIME_UNKNOWN when absent */
	int64_t dismissed_at; /* ms, TSJSON_TIME_UNKNOWN when absent */
	int severity;	      /* 1..3, 0 when absent or out of range */
	int dismissed;	      /* isDismissed: 1, 0, -1 when absent */
};

/* One alert of a webhook body (reference: Alert webhooks). */
struct ts_webhook_alert {
	char *id;
	char *title;
	char *organization_id;	 /* NULL when absent */
	char *organization_name; /* organization_Name, in any case */
	char *server_or_region;
	char *source;	    /* "Host" | "CloudTrail" as sent */
	int64_t created_at; /* ms, TSJSON_TIME_UNKNOWN when absent */
	int severity;	    /* 1..3, 0 when absent or out of range */
	char *json;	    /* the alert object as received, re-serialized without whitespace */
};

/* The alerts of one webhook request. */
struct ts_webhook {
	struct ts_webhook_alert *alerts;
	size_t n;
};

#define TSJSON_WEBHOOK_ID_MAX	  128		     /* bytes of an alert id */
#define TSJSON_WEBHOOK_ALERTS_MAX 1000		     /* alerts in one request */
#define TSJSON_WEBHOOK_ALERT_MAX  (64u * 1024)	     /* one alert's JSON */
#define TSJSON_WEBHOOK_PARSE_MAX  (4u * 1024 * 1024) /* parse budget of one body */

int tsjson_agent(json_object *o, struct ts_agent *ret, char err[static TSJSON_ERR_MAX]);
int tsjson_vuln(json_object *o, struct ts_vuln *ret, char err[static TSJSON_ERR_MAX]);
int tsjson_server(json_object *o, struct ts_server *ret, char err[static TSJSON_ERR_MAX]);
int tsjson_alert(json_object *o, struct ts_alert *ret, char err[static TSJSON_ERR_MAX]);

/* Parses one answer: a single JSON object, nothing after it. Before parsing, the bytes are
 * scanned once to estimate what json-c will allocate for them (objects, arrays, scalars,
 * strings, members, each at its measured cost); over max_parse bytes (0: TSJSON_PARSE_MAX)
 * the body is refused with -E2BIG and a message giving the JSON values and the limit, so a
 * small dense body cannot cost gigabytes. Not JSON, truncated, trailing bytes or not an
 * object: -EBADMSG. The caller owns *ret_root. */
int tsjson_document(const char *body, size_t len, size_t max_parse, json_object **ret_root,
		    char err[static TSJSON_ERR_MAX]);
/* -EBADMSG when the document carries a non-empty "errors" member (the API's error shape),
 * with the first message sanitised in err; 0 otherwise. */
int tsjson_errors(json_object *root, char err[static TSJSON_ERR_MAX]);
/* Splits one listing page {"<collection>":[{...},...], "token":...|null} (also
 * "paginationToken"). The collection must be present and an array of objects, and the page
 * must carry no "errors": a page without its items is a failure, never an empty page.
 * *ret_root is the parsed document, owned by the caller (json_object_put); *ret_items is
 * borrowed from it; *ret_token is borrowed, NULL on the last page (token null, absent or
 * empty). Budget and -E2BIG as tsjson_document(); every other fault -EBADMSG. */
int tsjson_page(const char *body, size_t len, size_t max_parse, const char *collection,
		json_object **ret_root, json_object **ret_items, const char **ret_token,
		char err[static TSJSON_ERR_MAX]);

/* Parses an alert webhook's body: {"alerts":[{...},...]} (1 to TSJSON_WEBHOOK_ALERTS_MAX
 * alerts) or one bare alert object. Numbers may come as numeric strings, organization_Name
 * in any case, unknown members are ignored. Each alert needs an id (a string, or an integer)
 * of at most TSJSON_WEBHOOK_ID_MAX bytes of [A-Za-z0-9._:-], so it can name the alert in a
 * URL and a log line as it is. Errors, each with one line in err naming the member:
 * -EBADMSG not JSON, not an object, a member of the wrong type, a missing or bad id;
 * -EPERM an organization_id other than org_id (org_id NULL checks nothing); -E2BIG more
 * alerts than allowed, an alert's JSON over TSJSON_WEBHOOK_ALERT_MAX, or a body that would
 * take over TSJSON_WEBHOOK_PARSE_MAX to parse. ret is filled only on success. */
int tsjson_webhook(const char *body, size_t len, const char *org_id, struct ts_webhook *ret,
		   char err[static TSJSON_ERR_MAX]);
void ts_webhook_free(struct ts_webhook *w);

void ts_agent_free(struct ts_agent *a);
void ts_vuln_free(struct ts_vuln *v);
void ts_server_free(struct ts_server *s);
void ts_alert_free(struct ts_alert *a);
void ts_strv_free(struct ts_strv *v);

#endif
