/* config — the INI file, parsed through one static table.
 *
 * Each row of keys[] names a section, a key, how to parse it and where it lands; the parser
 * itself knows nothing about particular keys. [sink.NAME] sections land in the sink array
 * rather than the top-level struct, which is why rows carry a "sink" flag. After parsing,
 * validate() applies the rules that span keys (exclusive pairs, required keys, secrets from
 * files or systemd credentials). The first error wins and names file, line and key.
 *
 * The format: "[section]" lines, "key = value" lines, whole-line comments starting with '#'
 * or ';'. No inline comments (a secret may contain '#'); a value may be double-quoted to
 * keep leading or trailing blanks. Lines are at most 4096 bytes.
 */
#include "tsgraphd/config.h"
#include "tsgraphd/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define LINE_MAX_LEN  4096
#define ID_MAX	      128 /* a Threat Stack id (org_id, user_id) */
#define SINK_NAME_MAX CONFIG_SINK_NAME_MAX

enum kind {
	K_STRING, /* any printable text */
	K_ID,	  /* Threat Stack id: [A-Za-z0-9-], also valid inside a Hawk header */
	K_PATH,
	K_SECRET, /* inline secret */
	K_SECRET_FILE,
	K_URL,
	K_URL_PATH, /* a URL that may have a path and a query (a webhook's) */
	K_LISTEN,
	K_U32,
	K_DOUBLE,
	K_SIZE,
	K_LOGLEVEL,
	K_SYNCMODE,
	K_SINKTYPE,
	K_BOOL,
	K_FORMAT,   /* a webhook sink's format */
	K_SEVERITY, /* high, medium or low */
	K_EVENTS,   /* a comma list of webhook events */
};

struct key {
	const char *section;
	const char *name;
	enum kind kind;
	bool sink; /* offset is into struct config_sink */
	size_t offset;
	double min, max;
};

#define C(f) false, offsetof(struct config, f)
#define S(f) true, offsetof(struct config_sink, f)

/* Secret files are parsed into the scratch fields of struct parse and resolved later. */
enum { SCRATCH_API_KEY_FILE, SCRATCH_SECRET_FILE, SCRATCH_N };

static const struct key keys[] = {
	{ "log", "level", K_LOGLEVEL, C(log_level), 0, 0 },
	{ "threatstack", "org_name", K_STRING, C(ts.org_name), 0, 0 },
	{ "threatstack", "org_id", K_ID, C(ts.org_id), 0, 0 },
	{ "threatstack", "user_id", K_ID, C(ts.user_id), 0, 0 },
	{ "threatstack", "api_key", K_SECRET, C(ts.api_key), 0, 0 },
	{ "threatstack", "api_key_file", K_SECRET_FILE, false, SCRATCH_API_KEY_FILE, 0, 0 },
	{ "threatstack", "api_url", K_URL, C(ts.api_url), 0, 0 },
	{ "threatstack", "api_ca_file", K_PATH, C(ts.api_ca_file), 0, 0 },
	{ "threatstack", "rate_limit", K_U32, C(ts.rate_limit), 1, 6000 },
	{ "threatstack", "poll_interval", K_U32, C(ts.poll_interval), 10, 7 * 86400 },
	{ "threatstack", "alert_days", K_U32, C(ts.alert_days), 1, 365 },
	{ "threatstack", "timeout", K_U32, C(ts.timeout), 1, 600 },
	{ "threatstack", "max_response", K_SIZE, C(ts.max_response), CONFIG_SIZE_KEY_MIN,
	  CONFIG_SIZE_KEY_MAX },
	{ "threatstack", "max_pages", K_U32, C(ts.max_pages), 1, 1000000 },
	{ "store", "path", K_PATH, C(store.path), 0, 0 },
	{ "store", "synchronous", K_SYNCMODE, C(store.synchronous_full), 0, 0 },
	{ "store", "outbox_retention", K_U32, C(store.outbox_retention), 0, 3650u * 86400 },
	{ "sync", "max_delete_fraction", K_DOUBLE, C(sync.max_delete_fraction), 0, 1 },
	{ "webhook", "listen", K_LISTEN, C(webhook.listen), 0, 0 },
	{ "webhook", "tls_cert", K_PATH, C(webhook.tls_cert), 0, 0 },
	{ "webhook", "tls_key", K_PATH, C(webhook.tls_key), 0, 0 },
	{ "webhook", "secret", K_SECRET, C(webhook.secret), 0, 0 },
	{ "webhook", "secret_file", K_SECRET_FILE, false, SCRATCH_SECRET_FILE, 0, 0 },
	{ "webhook", "max_body", K_SIZE, C(webhook.max_body), CONFIG_SIZE_KEY_MIN,
	  CONFIG_SIZE_KEY_MAX },
	{ "webhook", "tls", K_BOOL, C(webhook.tls), 0, 0 },
	{ "webhook", "inbox", K_PATH, C(webhook.inbox), 0, 0 },
	{ "webhook", "inbox_max", K_U32, C(webhook.inbox_max), 1, 10000000 },
	{ "webhook", "confirm_window", K_U32, C(webhook.confirm_window), 10, 30u * 86400 },
	{ "webhook", "timeout", K_U32, C(webhook.timeout), 1, 600 },
	{ "webhook", "max_connections", K_U32, C(webhook.max_connections), 1, 100000 },
	{ "webhook", "max_connections_per_ip", K_U32, C(webhook.max_connections_per_ip), 1,
	  100000 },
	{ "webhook", "threads", K_U32, C(webhook.threads), 0, CONFIG_WEBHOOK_THREADS_MAX },
	{ "sink", "type", K_SINKTYPE, S(type), 0, 0 },
	{ "sink", "path", K_PATH, S(path), 0, 0 },
	{ "sink", "url", K_URL_PATH, S(url), 0, 0 },
	{ "sink", "ca_file", K_PATH, S(ca_file), 0, 0 },
	{ "sink", "timeout", K_U32, S(timeout), 1, 600 },
	{ "sink", "secret", K_SECRET, S(webhook.secret), 0, 0 },
	{ "sink", "secret_file", K_PATH, S(webhook.secret_file), 0, 0 },
	{ "sink", "format", K_FORMAT, S(webhook.format), 0, 0 },
	{ "sink", "events", K_EVENTS, S(webhook.events), 0, 0 },
	{ "sink", "min_severity", K_SEVERITY, S(webhook.min_severity), 0, 0 },
	{ "sink", "backfill", K_BOOL, S(webhook.backfill), 0, 0 },
	{ "sink", "account", K_ID, S(j1.account), 0, 0 },
	{ "sink", "token", K_SECRET, S(j1.token), 0, 0 },
	{ "sink", "token_file", K_PATH, S(j1.token_file), 0, 0 },
	{ "sink", "scope", K_STRING, S(j1.scope), 0, 0 },
	{ "sink", "batch_bytes", K_SIZE, S(j1.batch_bytes), CONFIG_SIZE_KEY_MIN,
	  CONFIG_J1_BATCH_BYTES_DEFAULT },
	{ "sink", "job_changes", K_U32, S(j1.job_changes), 1, 1000000 },
};

/* The keys each sink type takes (besides type); any other sink key is refused. */
static const char *const file_sink_keys[] = { "path", NULL };
static const char *const webhook_sink_keys[] = { "url",	   "ca_file",	   "timeout",
						 "secret", "secret_file",  "format",
						 "events", "min_severity", "backfill",
						 NULL };
static const char *const j1_sink_keys[] = { "url",	   "ca_file",	 "timeout", "account",
					    "token",	   "token_file", "scope",   "batch_bytes",
					    "job_changes", NULL };

struct parse {
	const char *name; /* file name for messages */
	const char *dir;  /* directory that relative paths are resolved against */
	struct config *c;
	char *error;
	int line;
	char section[128];
	struct config_sink *sink;   /* current [sink.NAME], or NULL */
	int seen[ARRAY_SIZE(keys)]; /* line where a top-level key was set */
	int sink_seen[CONFIG_SINKS_MAX][ARRAY_SIZE(keys)];
	int sink_line[CONFIG_SINKS_MAX];
	char *scratch[SCRATCH_N];
	int scratch_line[SCRATCH_N];
	bool inline_secret;
	int secret_url_line; /* a webhook url with a path or query (its token), or 0 */
	unsigned flags;	     /* enum config_flags */
};

static int fail(struct parse *p, int line, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Every part of a message may hold bytes from the file (a key name, a section name) or from
 * the command line (the file name): each goes through str_escape(), cut to a sane length.
 * Values of secret-bearing keys are never passed here at all. */
static int fail(struct parse *p, int line, const char *key, const char *fmt, ...)
{
	char raw[CONFIG_ERROR_MAX], msg[CONFIG_ERROR_MAX], name[256], k[ESCAPE_SHORT];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	str_escape(msg, sizeof(msg), raw, strlen(raw));
	str_escape(name, sizeof(name), p->name, strlen(p->name));
	if (key)
		str_escape(k, sizeof(k), key, strlen(key));
	if (line > 0 && key)
		snprintf(p->error, CONFIG_ERROR_MAX, "%s:%d: %s: %s", name, line, k, msg);
	else if (line > 0)
		snprintf(p->error, CONFIG_ERROR_MAX, "%s:%d: %s", name, line, msg);
	else if (key)
		snprintf(p->error, CONFIG_ERROR_MAX, "%s: %s: %s", name, k, msg);
	else
		snprintf(p->error, CONFIG_ERROR_MAX, "%s: %s", name, msg);
	return -EINVAL;
}

const char *config_sink_type_to_string(enum config_sink_type t)
{
	switch (t) {
	case SINK_FILE:
		return "file";
	case SINK_JUPITERONE:
		return "jupiterone";
	case SINK_WEBHOOK:
		return "webhook";
	}
	return "unknown";
}

/* Indexed by bit number of enum config_webhook_event. */
static const char *const webhook_events[] = {
	"agent.status",	  "agent.created", "agent.deleted", "agent.updated",
	"cve.identified", "cve.resolved",  "alert.created", "alert.dismissed",
};

const char *config_webhook_event_to_string(unsigned event)
{
	for (size_t i = 0; i < ARRAY_SIZE(webhook_events); i++)
		if (event == 1u << i)
			return webhook_events[i];
	return NULL;
}

const struct config *config_ref(const struct config *c)
{
	struct config *m = (struct config *)c; /* the count is the one mutable field */

	/* 0 is a config built by hand (a test): it counts as the one reference it has. */
	if (atomic_fetch_add(&m->refs, 1) == 0)
		atomic_fetch_add(&m->refs, 1);
	return c;
}

void config_free(const struct config *cc)
{
	struct config *c = (struct config *)cc;

	if (!c || atomic_fetch_sub(&c->refs, 1) > 1)
		return;
	free(c->file);
	free(c->ts.org_name);
	free(c->ts.org_id);
	free(c->ts.user_id);
	wipe_free(c->ts.api_key);
	free(c->ts.api_url);
	free(c->ts.api_ca_file);
	free(c->store.path);
	free(c->webhook.listen);
	free(c->webhook.tls_cert);
	free(c->webhook.tls_key);
	free(c->webhook.inbox);
	wipe_free(c->webhook.secret);
	for (size_t i = 0; i < c->n_sinks; i++) {
		free(c->sinks[i].name);
		free(c->sinks[i].path);
		wipe_free(c->sinks[i].url);
		free(c->sinks[i].ca_file);
		wipe_free(c->sinks[i].webhook.secret);
		free(c->sinks[i].webhook.secret_file);
		free(c->sinks[i].j1.account);
		wipe_free(c->sinks[i].j1.token);
		free(c->sinks[i].j1.token_file);
		free(c->sinks[i].j1.scope);
	}
	free(c);
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

static char *resolve_path(const struct parse *p, const char *v)
{
	char *out = NULL;

	if (v[0] == '/' || !p->dir)
		return strdup(v);
	if (asprintf(&out, "%s/%s", p->dir, v) < 0)
		return NULL;
	return out;
}

/* "host:port", "[v6]:port" or "*:port"; the port 1..65535. */
static int check_listen(const char *v)
{
	const char *colon;
	uint64_t port;

	if (v[0] == '[') {
		const char *end = strchr(v, ']');

		if (!end || end == v + 1 || end[1] != ':')
			return -EINVAL;
		colon = end + 1;
	} else {
		colon = strrchr(v, ':');
		if (!colon || colon == v || memchr(v, ':', (size_t)(colon - v)))
			return -EINVAL;
	}
	return parse_u64(colon + 1, 0, 65535, &port); /* 0: any free port (tests) */
}

static bool is_loopback_host(const char *host, size_t len)
{
	static const char *const names[] = { "127.0.0.1", "[::1]", "localhost" };

	for (size_t i = 0; i < ARRAY_SIZE(names); i++)
		if (len == strlen(names[i]) && strncasecmp(host, names[i], len) == 0)
			return true;
	return false;
}

bool config_listen_is_loopback(const char *listen)
{
	const char *colon = strrchr(listen, ':');
	size_t len = colon ? (size_t)(colon - listen) : strlen(listen);

	if (len > 4 && strncmp(listen, "127.", 4) == 0) {
		struct in_addr a;
		char host[INET_ADDRSTRLEN];

		if (len >= sizeof(host))
			return false;
		memcpy(host, listen, len);
		host[len] = '\0';
		return inet_pton(AF_INET, host, &a) == 1;
	}
	return is_loopback_host(listen, len);
}

/* https://host[:port] with no path, or with path true a path and query after it (a
 * webhook's); plain http only for loopback (the tests' fakes). The whole value is checked
 * here, so a bad port or an empty host is a config error (exit 2) rather than a failed
 * request later. The value itself is never quoted: a webhook URL may hold a token. */
static int check_url(const char *v, bool path, const char **why)
{
	const char *host, *end, *hend, *port = NULL;
	bool https = strncmp(v, "https://", 8) == 0;
	uint64_t num;

	if (!https && strncmp(v, "http://", 7) != 0) {
		*why = "must start with https://";
		return -EINVAL;
	}
	host = v + (https ? 8 : 7);
	end = host + strcspn(host, "/?#");
	if (!path && (end == host || (*end && strcmp(end, "/") != 0))) {
		*why = "must be an origin like https://api.threatstack.com (no path)";
		return -EINVAL;
	}
	if (path && end == host) {
		*why = "the host is empty";
		return -EINVAL;
	}
	/* Sent as it is: printable ASCII without blanks, quotes, brackets or a fragment. */
	for (const char *p = end; path && *p; p++) {
		if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f ||
		    strchr("\"<>\\^`{|}#", *p)) {
			*why = "the path and query must be printable ASCII without blanks, '#' or "
			       "any "
			       "of \"<>\\^`{|} (percent-encode them)";
			return -EINVAL;
		}
	}
	/* Only host[:port]: no user info ("http://localhost@elsewhere" names elsewhere). */
	for (const char *p = host; p < end; p++) {
		if (!isalnum((unsigned char)*p) && !strchr(".-:[]", *p)) {
			*why = "must be scheme://host[:port], without user, password or other "
			       "characters";
			return -EINVAL;
		}
	}
	if (host[0] == '[') {
		hend = memchr(host, ']', (size_t)(end - host));
		if (!hend || hend == host + 1 || memchr(host + 1, '[', (size_t)(hend - host - 1))) {
			*why = "an IPv6 address goes in brackets, like https://[2001:db8::1]:8443";
			return -EINVAL;
		}
		for (const char *p = host + 1; p < hend; p++) {
			if (!isxdigit((unsigned char)*p) && *p != ':' && *p != '.') {
				*why = "an IPv6 address goes in brackets, like "
				       "https://[2001:db8::1]:8443";
				return -EINVAL;
			}
		}
		hend++;
		if (hend < end && *hend != ':') {
			*why = "must be scheme://host[:port]";
			return -EINVAL;
		}
	} else {
		hend = memchr(host, ':', (size_t)(end - host));
		hend = hend ? hend : end;
		if (memchr(host, ']', (size_t)(end - host))) {
			*why = "must be scheme://host[:port]";
			return -EINVAL;
		}
	}
	if (hend == host) {
		*why = "the host is empty";
		return -EINVAL;
	}
	if (hend - host > 253) {
		*why = "the host is longer than 253 characters";
		return -EINVAL;
	}
	if (hend < end) {
		char digits[8];
		size_t n = (size_t)(end - hend - 1);

		port = hend + 1;
		if (n == 0 || n >= sizeof(digits) || strspn(port, "0123456789") < n) {
			*why = "the port must be a number from 1 to 65535";
			return -EINVAL;
		}
		memcpy(digits, port, n);
		digits[n] = '\0';
		if (parse_u64(digits, 1, 65535, &num) < 0) {
			*why = "the port must be a number from 1 to 65535";
			return -EINVAL;
		}
	}
	if (!https && !is_loopback_host(host, (size_t)(hend - host))) {
		*why = "plain http is only allowed to loopback; use https://";
		return -EINVAL;
	}
	return 0;
}

/* The text kinds: non-empty, printable, then the kind's own check; a path is resolved
 * against the file's directory and a URL loses its trailing slash. */
static int set_text(struct parse *p, const struct key *k, const char *v, char **field)
{
	const char *why = NULL;
	char *s;

	if (!*v)
		return fail(p, p->line, k->name, "empty value");
	if (!printable(v))
		return fail(p, p->line, k->name, "contains control characters");
	if (k->kind == K_ID) {
		for (const char *q = v; *q; q++)
			if (!isalnum((unsigned char)*q) && *q != '-')
				return fail(p, p->line, k->name,
					    "not an id (letters, digits and '-' only)");
		if (strlen(v) > ID_MAX)
			return fail(p, p->line, k->name, "longer than %d characters", ID_MAX);
	}
	if ((k->kind == K_URL || k->kind == K_URL_PATH) &&
	    check_url(v, k->kind == K_URL_PATH, &why) < 0)
		return fail(p, p->line, k->name, "%s", why);
	if (k->kind == K_LISTEN && check_listen(v) < 0)
		return fail(p, p->line, k->name,
			    "not an address:port (e.g. 0.0.0.0:8443 or [::]:8443)");
	if (k->kind == K_SECRET)
		p->inline_secret = true;
	s = k->kind == K_PATH ? resolve_path(p, v) : strdup(v);
	if (!s)
		return -ENOMEM;
	if (k->kind == K_URL && s[strlen(s) - 1] == '/')
		s[strlen(s) - 1] = '\0';
	*field = s;
	return 0;
}

/* A *_file key: only the resolved path and its line are kept; validate() reads the file. */
static int set_secret_file(struct parse *p, const struct key *k, const char *v)
{
	char *s;

	if (!*v)
		return fail(p, p->line, k->name, "empty value");
	s = resolve_path(p, v);
	if (!s)
		return -ENOMEM;
	p->scratch[k->offset] = s;
	p->scratch_line[k->offset] = p->line;
	return 0;
}

/* A bound of a size key as a person writes it: "1KiB", "5MiB", else bytes. */
static const char *size_words(uint64_t v, char out[static 24])
{
	if (v >= 1024 * 1024 && v % (1024 * 1024) == 0)
		snprintf(out, 24, "%" PRIu64 "MiB", v / (1024 * 1024));
	else if (v >= 1024 && v % 1024 == 0)
		snprintf(out, 24, "%" PRIu64 "KiB", v / 1024);
	else
		snprintf(out, 24, "%" PRIu64, v);
	return out;
}

/* The numeric kinds, bounded by the row's min and max. */
static int set_number(struct parse *p, const struct key *k, const char *v, void *field)
{
	uint64_t u;
	double d;
	int r;

	switch (k->kind) {
	case K_U32:
		r = parse_u64(v, (uint64_t)k->min, (uint64_t)k->max, &u);
		if (r == -ERANGE)
			return fail(p, p->line, k->name, "out of range (%.0f..%.0f)", k->min,
				    k->max);
		if (r < 0)
			return fail(p, p->line, k->name, "not a number");
		*(uint32_t *)field = (uint32_t)u;
		return 0;
	case K_DOUBLE:
		r = parse_double(v, k->min, k->max, &d);
		if (r == -ERANGE)
			return fail(p, p->line, k->name, "out of range (%g..%g)", k->min, k->max);
		if (r < 0)
			return fail(p, p->line, k->name, "not a number");
		*(double *)field = d;
		return 0;
	case K_SIZE:
		r = parse_size(v, (uint64_t)k->min, (uint64_t)k->max, &u);
		if (r == -ERANGE) {
			char lo[24], hi[24];

			return fail(p, p->line, k->name, "out of range (%s..%s)",
				    size_words((uint64_t)k->min, lo),
				    size_words((uint64_t)k->max, hi));
		}
		if (r < 0)
			return fail(p, p->line, k->name, "not a size (e.g. 1048576, 512KiB, 1MiB)");
		*(uint64_t *)field = u;
		return 0;
	default:
		return -EINVAL;
	}
}

/* The keyword kinds: one of a fixed list of words. */
static int set_keyword(struct parse *p, const struct key *k, const char *v, void *field)
{
	switch (k->kind) {
	case K_LOGLEVEL:
		if (log_level_from_string(v, (enum log_level *)field) < 0)
			return fail(p, p->line, k->name,
				    "not a level (error, warning, notice, info, debug)");
		return 0;
	case K_SYNCMODE:
		if (strcasecmp(v, "full") == 0)
			*(bool *)field = true;
		else if (strcasecmp(v, "normal") == 0)
			*(bool *)field = false;
		else
			return fail(p, p->line, k->name, "must be full or normal");
		return 0;
	case K_SINKTYPE:
		if (strcmp(v, "file") == 0)
			*(enum config_sink_type *)field = SINK_FILE;
		else if (strcmp(v, "jupiterone") == 0)
			*(enum config_sink_type *)field = SINK_JUPITERONE;
		else if (strcmp(v, "webhook") == 0)
			*(enum config_sink_type *)field = SINK_WEBHOOK;
		else
			return fail(p, p->line, k->name, "must be file, jupiterone or webhook");
		return 0;
	case K_BOOL:
		if (parse_bool(v, (bool *)field) < 0)
			return fail(p, p->line, k->name, "must be yes or no");
		return 0;
	case K_FORMAT:
		if (strcmp(v, "json") == 0)
			*(enum config_webhook_format *)field = WEBHOOK_FORMAT_JSON;
		else if (strcmp(v, "slack") == 0)
			*(enum config_webhook_format *)field = WEBHOOK_FORMAT_SLACK;
		else
			return fail(p, p->line, k->name, "must be json or slack");
		return 0;
	case K_SEVERITY:
		if (strcmp(v, "high") == 0)
			*(enum config_severity *)field = SEVERITY_HIGH;
		else if (strcmp(v, "medium") == 0)
			*(enum config_severity *)field = SEVERITY_MEDIUM;
		else if (strcmp(v, "low") == 0)
			*(enum config_severity *)field = SEVERITY_LOW;
		else
			return fail(p, p->line, k->name, "must be high, medium or low");
		return 0;
	default:
		return -EINVAL;
	}
}

/* A comma list of webhook event names (blanks around each allowed), as bits. */
static int set_events(struct parse *p, const struct key *k, const char *v, unsigned *field)
{
	unsigned mask = 0;

	for (const char *s = v; *s;) {
		size_t n, i;

		while (*s == ' ' || *s == '\t')
			s++;
		n = strcspn(s, ",");
		while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		for (i = 0; i < ARRAY_SIZE(webhook_events); i++)
			if (strlen(webhook_events[i]) == n && strncmp(s, webhook_events[i], n) == 0)
				break;
		if (n == 0)
			return fail(p, p->line, k->name, "an empty name in the list");
		if (i == ARRAY_SIZE(webhook_events))
			return fail(p, p->line, k->name,
				    "unknown event \"%.*s\" (agent.status, agent.created, "
				    "agent.deleted, agent.updated, cve.identified, cve.resolved, "
				    "alert.created, alert.dismissed)",
				    (int)(n < 64 ? n : 64), s);
		mask |= 1u << i;
		s += strcspn(s, ",");
		if (*s == ',' && !*++s)
			return fail(p, p->line, k->name, "an empty name in the list");
	}
	if (!mask)
		return fail(p, p->line, k->name, "empty value");
	*field = mask;
	return 0;
}

static int set_value(struct parse *p, const struct key *k, const char *v)
{
	char *base = k->sink ? (char *)p->sink : (char *)p->c;
	void *field = base + k->offset;

	switch (k->kind) {
	case K_STRING:
	case K_ID:
	case K_PATH:
	case K_SECRET:
	case K_URL:
	case K_URL_PATH:
	case K_LISTEN:
		return set_text(p, k, v, field);
	case K_SECRET_FILE:
		return set_secret_file(p, k, v);
	case K_U32:
	case K_DOUBLE:
	case K_SIZE:
		return set_number(p, k, v, field);
	case K_LOGLEVEL:
	case K_SYNCMODE:
	case K_SINKTYPE:
	case K_BOOL:
	case K_FORMAT:
	case K_SEVERITY:
		return set_keyword(p, k, v, field);
	case K_EVENTS:
		return set_events(p, k, v, field);
	}
	return -EINVAL;
}

static int open_section(struct parse *p, const char *raw)
{
	static const char *const plain[] = { "log", "threatstack", "store", "sync", "webhook" };
	char name[ESCAPE_SHORT]; /* for messages only: escaped and cut */

	str_escape(name, sizeof(name), raw, strlen(raw));
	p->sink = NULL;
	if (strncmp(raw, "sink.", 5) == 0) {
		const char *sname = raw + 5;
		struct config_sink *s;

		if (!*sname || strlen(sname) > SINK_NAME_MAX)
			return fail(p, p->line, NULL, "[%s]: a sink name is 1 to %d characters",
				    name, SINK_NAME_MAX);
		for (const char *q = sname; *q; q++)
			if (!isalnum((unsigned char)*q) && *q != '-' && *q != '_')
				return fail(p, p->line, NULL,
					    "[%s]: a sink name is letters, digits, '-' and '_'",
					    name);
		for (size_t i = 0; i < p->c->n_sinks; i++)
			if (strcmp(p->c->sinks[i].name, sname) == 0)
				return fail(p, p->line, NULL,
					    "[%s]: defined twice (first at line %d)", name,
					    p->sink_line[i]);
		if (p->c->n_sinks == CONFIG_SINKS_MAX)
			return fail(p, p->line, NULL, "more than %d sinks", CONFIG_SINKS_MAX);
		s = &p->c->sinks[p->c->n_sinks];
		*s = (struct config_sink){ .name = strdup(sname), .type = -1 };
		if (!s->name)
			return -ENOMEM;
		p->sink_line[p->c->n_sinks] = p->line;
		p->c->n_sinks++;
		p->sink = s;
		snprintf(p->section, sizeof(p->section), "sink");
		return 0;
	}
	for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
		if (strcmp(raw, plain[i]) == 0) {
			snprintf(p->section, sizeof(p->section), "%s", raw);
			return 0;
		}
	}
	return fail(p, p->line, NULL, "unknown section [%s]", name);
}

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int parse_line(struct parse *p, char *line)
{
	char *s = trim(line), *eq, *key, *val;
	size_t i;
	int *seen;

	if (!*s || *s == '#' || *s == ';')
		return 0;
	if (*s == '[') {
		char *end = strchr(s, ']');

		if (!end || *trim(end + 1))
			return fail(p, p->line, NULL, "malformed section header");
		*end = '\0';
		return open_section(p, trim(s + 1));
	}
	eq = strchr(s, '=');
	if (!eq)
		return fail(p, p->line, NULL, "expected \"key = value\"");
	*eq = '\0';
	key = trim(s);
	val = trim(eq + 1);
	if (!*key)
		return fail(p, p->line, NULL, "missing key before '='");
	if (!p->section[0])
		return fail(p, p->line, key, "outside any section");
	{
		size_t vlen = strlen(val);

		if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
			val[vlen - 1] = '\0';
			val++;
		}
	}
	for (i = 0; i < ARRAY_SIZE(keys); i++)
		if (strcmp(keys[i].section, p->section) == 0 && strcmp(keys[i].name, key) == 0)
			break;
	if (i == ARRAY_SIZE(keys))
		return fail(p, p->line, key, "unknown key in [%s]",
			    p->sink ? "sink.*" : p->section);
	seen = p->sink ? &p->sink_seen[p->sink - p->c->sinks][i] : &p->seen[i];
	if (*seen)
		return fail(p, p->line, key, "set twice (first at line %d)", *seen);
	*seen = p->line;
	return set_value(p, &keys[i], val);
}

/* The line where a top-level key was set, or 0. */
static int key_line(const struct parse *p, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(keys); i++)
		if (!keys[i].sink && strcmp(keys[i].name, name) == 0 && p->seen[i])
			return p->seen[i];
	return 0;
}

static bool blank(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Reads a secret file: a regular file (opened without blocking, so a FIFO is refused at once),
 * owner-only permissions, at most CONFIG_SECRET_MAX bytes, blanks and line ends dropped at
 * both ends, one line, no control characters. The value of the key names the file but is
 * never printed: a secret pasted where its file name belongs must not come back in an error
 * (or a log, or a terminal's scrollback). */
static int read_secret(struct parse *p, const char *path, int line, const char *key, char **ret)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	char *data = NULL, *start;
	size_t len = 0;
	int r;

	r = open_regular(path, &fd, &st);
	if (r == -EBADFD)
		return fail(p, line, key,
			    "the file it names is not a regular file (a FIFO, device or "
			    "directory?)");
	if (r < 0)
		return fail(p, line, key,
			    "cannot open the file it names: %s (the value is not shown: this key "
			    "takes a file name, not the secret)",
			    strerror(-r));
	if (st.st_mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH))
		return fail(p, line, key,
			    "the file is readable or writable by group or others (chmod 600 it)");
	if ((uint64_t)st.st_size > CONFIG_SECRET_MAX)
		r = -EFBIG;
	else
		r = read_fd_bounded(fd, CONFIG_SECRET_MAX, &data, &len);
	if (r == -EFBIG)
		return fail(p, line, key, "the file is larger than %d bytes", CONFIG_SECRET_MAX);
	if (r < 0)
		return fail(p, line, key, "cannot read the file: %s", strerror(-r));
	while (len > 0 && blank(data[len - 1]))
		data[--len] = '\0';
	for (start = data; blank(*start); start++)
		;
	len -= (size_t)(start - data);
	memmove(data, start, len + 1);
	if (len == 0)
		r = fail(p, line, key, "the file is empty");
	else if (memchr(data, '\n', len) || memchr(data, '\r', len))
		r = fail(p, line, key,
			 "the file holds more than one line (one secret, on one line)");
	else if (strlen(data) != len || !printable(data))
		r = fail(p, line, key, "the file holds control characters");
	if (r < 0) {
		explicit_bzero(data, len);
		free(data);
		return r;
	}
	*ret = data;
	return 0;
}

/* A file the daemon will read later (a CA bundle, a certificate, a key): it must be a regular
 * file no larger than max now, so a FIFO or a device is a config error (exit 2) instead of
 * a hang inside a TLS library. Private keys must be owner-only, like secret files. */
static int check_file(struct parse *p, int line, const char *key, const char *path, size_t max,
		      bool secret)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r = open_regular(path, &fd, &st);

	if (r == -EBADFD)
		return fail(p, line, key, "%s: not a regular file (a FIFO, device or directory?)",
			    path);
	if (r < 0)
		return fail(p, line, key, "cannot open %s: %s", path, strerror(-r));
	if ((uint64_t)st.st_size > max)
		return fail(p, line, key, "%s is larger than %zu KiB", path, max / 1024);
	if (secret && (st.st_mode & (S_IRGRP | S_IROTH | S_IWGRP | S_IWOTH)))
		return fail(p, line, key,
			    "%s is readable or writable by group or others (chmod 600 it)", path);
	return 0;
}

/* $CREDENTIALS_DIRECTORY/<credential> into *field when it exists (*field stays NULL when
 * not). */
static int read_credential(struct parse *p, const char *credential, char **field)
{
	const char *dir = getenv("CREDENTIALS_DIRECTORY");
	_cleanup_free_ char *path = NULL;

	if (!dir || !*dir)
		return 0;
	if (asprintf(&path, "%s/%s", dir, credential) < 0)
		return -ENOMEM;
	if (access(path, F_OK) < 0)
		return 0;
	return read_secret(p, path, 0, credential, field);
}

/* One secret from: inline value, *_file, or $CREDENTIALS_DIRECTORY/<credential>. */
static int resolve_secret(struct parse *p, char **field, int scratch, const char *inline_key,
			  const char *file_key, const char *credential, size_t min_len)
{
	int line_inline = key_line(p, inline_key);
	int r;

	if (*field && p->scratch[scratch])
		return fail(p, p->scratch_line[scratch], file_key,
			    "%s is set too (line %d); use one", inline_key, line_inline);
	if (p->flags & CONFIG_NO_SECRETS) {
		/* status and the like: the file is not opened, not even checked. */
	} else if (p->scratch[scratch]) {
		r = read_secret(p, p->scratch[scratch], p->scratch_line[scratch], file_key, field);
		if (r < 0)
			return r;
	} else if (!*field && credential) {
		r = read_credential(p, credential, field);
		if (r < 0)
			return r;
	}
	if (*field && strlen(*field) < min_len)
		return fail(p, line_inline ? line_inline : p->scratch_line[scratch], inline_key,
			    "shorter than %zu characters", min_len);
	return 0;
}

/* The line where sink i set a key, or 0. */
static int sink_key_line(const struct parse *p, size_t i, const char *name)
{
	for (size_t k = 0; k < ARRAY_SIZE(keys); k++)
		if (keys[k].sink && strcmp(keys[k].name, name) == 0)
			return p->sink_seen[i][k];
	return 0;
}

/* Refuses a key sink i set that its type does not take (allowed: NULL-terminated). */
static int check_sink_keys(struct parse *p, size_t i, const char *const *allowed)
{
	for (size_t k = 0; k < ARRAY_SIZE(keys); k++) {
		bool ok = strcmp(keys[k].name, "type") == 0;

		for (size_t a = 0; !ok && allowed[a]; a++)
			ok = strcmp(keys[k].name, allowed[a]) == 0;
		if (keys[k].sink && p->sink_seen[i][k] && !ok)
			return fail(p, p->sink_seen[i][k], keys[k].name, "not a key of a %s sink",
				    config_sink_type_to_string(p->c->sinks[i].type));
	}
	return 0;
}

/* Whether a URL checked by check_url has more than an origin: a webhook's path or query is a
 * credential (Slack and Teams carry their token there). */
static bool url_has_path(const char *url)
{
	const char *host = url + (strncmp(url, "https://", 8) == 0 ? 8 : 7);
	const char *rest = host + strcspn(host, "/?#");

	return *rest && strcmp(rest, "/") != 0;
}

/* [sink.NAME] type = webhook: the required url, defaults, and the optional secret (16
 * characters or more) from secret, secret_file, or the systemd credential sink-secret-NAME. */
static int validate_webhook(struct parse *p, size_t i, const char *section)
{
	struct config_sink *s = &p->c->sinks[i];
	char cred[sizeof("sink-secret-") + SINK_NAME_MAX];
	const char *from = "secret";
	int line = sink_key_line(p, i, "secret");
	int r = check_sink_keys(p, i, webhook_sink_keys);

	if (r < 0)
		return r;
	if (!s->url)
		return fail(p, p->sink_line[i], section, "a webhook sink needs url");
	if (url_has_path(s->url) && !p->secret_url_line)
		p->secret_url_line = sink_key_line(p, i, "url");
	if (!s->timeout)
		s->timeout = CONFIG_WEBHOOK_TIMEOUT_DEFAULT;
	if (!s->webhook.events)
		s->webhook.events = WEBHOOK_EVENTS_ALL;
	if (!s->webhook.min_severity)
		s->webhook.min_severity = SEVERITY_LOW;
	if (s->webhook.secret && s->webhook.secret_file)
		return fail(p, sink_key_line(p, i, "secret_file"), "secret_file",
			    "secret is set too (line %d); use one", line);
	if (!(p->flags & CONFIG_NO_SECRETS)) { /* status opens no secret and no CA file */
		snprintf(cred, sizeof(cred), "sink-secret-%s", s->name);
		if (s->webhook.secret_file) {
			line = sink_key_line(p, i, "secret_file");
			r = read_secret(p, s->webhook.secret_file, line, "secret_file",
					&s->webhook.secret);
		} else if (!s->webhook.secret) {
			from = cred;
			r = read_credential(p, cred, &s->webhook.secret);
		}
		if (r == 0 && s->ca_file)
			r = check_file(p, sink_key_line(p, i, "ca_file"), "ca_file", s->ca_file,
				       CONFIG_PEM_MAX, false);
	}
	if (r == 0 && s->webhook.secret && strlen(s->webhook.secret) < 16)
		r = fail(p, line, from, "shorter than 16 characters");
	return r;
}

/* [sink.NAME] type = jupiterone: defaults, the required account, and the token from token,
 * token_file, or the systemd credential jupiterone-token-NAME, else jupiterone-token. */
static int validate_jupiterone(struct parse *p, size_t i, const char *section)
{
	struct config_sink *s = &p->c->sinks[i];
	int r = check_sink_keys(p, i, j1_sink_keys);
	const char *why = NULL;
	size_t len;

	if (r < 0)
		return r;
	/* One url row for every sink type: JupiterOne's is an origin, without a path. */
	if (s->url && check_url(s->url, false, &why) < 0)
		return fail(p, sink_key_line(p, i, "url"), "url", "%s", why);
	if (s->url && (len = strlen(s->url)) > 0 && s->url[len - 1] == '/')
		s->url[len - 1] = '\0';
	if (!s->url && !(s->url = strdup(CONFIG_J1_URL_DEFAULT)))
		return -ENOMEM;
	if (!s->timeout)
		s->timeout = CONFIG_SINK_TIMEOUT_DEFAULT;
	if (!s->j1.batch_bytes)
		s->j1.batch_bytes = CONFIG_J1_BATCH_BYTES_DEFAULT;
	if (!s->j1.job_changes)
		s->j1.job_changes = CONFIG_J1_JOB_CHANGES_DEFAULT;
	if (!s->j1.scope) {
		s->j1.scope_default = true;
		if (asprintf(&s->j1.scope, "threatstack-%s", p->c->ts.org_id) < 0) {
			s->j1.scope = NULL;
			return -ENOMEM;
		}
	}
	if (!s->j1.account)
		return fail(p, p->sink_line[i], section, "a jupiterone sink needs account");
	if (s->j1.token && s->j1.token_file)
		return fail(p, sink_key_line(p, i, "token_file"), "token_file",
			    "token is set too (line %d); use one", sink_key_line(p, i, "token"));
	if (p->flags & CONFIG_NO_SECRETS)
		return 0; /* status: no secret, no CA file is opened */
	if (s->j1.token_file) {
		r = read_secret(p, s->j1.token_file, sink_key_line(p, i, "token_file"),
				"token_file", &s->j1.token);
	} else if (!s->j1.token) {
		char cred[sizeof("jupiterone-token-") + SINK_NAME_MAX];

		snprintf(cred, sizeof(cred), "jupiterone-token-%s", s->name);
		r = read_credential(p, cred, &s->j1.token);
		if (r == 0 && !s->j1.token)
			r = read_credential(p, "jupiterone-token", &s->j1.token);
		if (r == 0 && !s->j1.token)
			r = fail(p, p->sink_line[i], section,
				 "a jupiterone sink needs token_file (or token, or the systemd "
				 "credential %s or jupiterone-token)",
				 cred);
	}
	if (r == 0 && s->ca_file)
		r = check_file(p, sink_key_line(p, i, "ca_file"), "ca_file", s->ca_file,
			       CONFIG_PEM_MAX, false);
	return r;
}

static int validate(struct parse *p)
{
	struct config *c = p->c;
	static const struct {
		const char *key;
		size_t off;
	} required[] = {
		{ "org_name", offsetof(struct config, ts.org_name) },
		{ "org_id", offsetof(struct config, ts.org_id) },
		{ "user_id", offsetof(struct config, ts.user_id) },
	};
	int r;

	r = resolve_secret(p, &c->ts.api_key, SCRATCH_API_KEY_FILE, "api_key", "api_key_file",
			   "threatstack-api-key", 1);
	if (r < 0)
		return r;
	r = resolve_secret(p, &c->webhook.secret, SCRATCH_SECRET_FILE, "secret", "secret_file",
			   "webhook-secret", 16);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(required); i++)
		if (!*(char **)((char *)c + required[i].off))
			return fail(p, 0, required[i].key, "missing in [threatstack] (required)");
	if (!c->ts.api_key && !(p->flags & CONFIG_NO_SECRETS))
		return fail(p, 0, "api_key",
			    "missing: set api_key_file (or api_key, or the systemd credential "
			    "threatstack-api-key)");
	if ((c->webhook.tls_cert == NULL) != (c->webhook.tls_key == NULL))
		return fail(p, key_line(p, c->webhook.tls_cert ? "tls_cert" : "tls_key"),
			    c->webhook.tls_cert ? "tls_cert" : "tls_key",
			    "tls_cert and tls_key go together");
	if (!c->webhook.tls && !(c->webhook.listen && config_listen_is_loopback(c->webhook.listen)))
		return fail(
			p, key_line(p, "tls"), "tls",
			"off is only allowed when listen is a loopback address (127.0.0.1:PORT, "
			"[::1]:PORT or localhost:PORT)");
	if (c->webhook.threads > c->webhook.max_connections)
		return fail(p, key_line(p, "threads"), "threads",
			    "more event loops than max_connections: each needs a connection of its "
			    "own");
	if (!(p->flags & CONFIG_NO_SECRETS)) {
		if (c->ts.api_ca_file &&
		    (r = check_file(p, key_line(p, "api_ca_file"), "api_ca_file", c->ts.api_ca_file,
				    CONFIG_PEM_MAX, false)) < 0)
			return r;
		if (c->webhook.tls_cert &&
		    (r = check_file(p, key_line(p, "tls_cert"), "tls_cert", c->webhook.tls_cert,
				    CONFIG_PEM_MAX, false)) < 0)
			return r;
		if (c->webhook.tls_key &&
		    (r = check_file(p, key_line(p, "tls_key"), "tls_key", c->webhook.tls_key,
				    CONFIG_PEM_MAX, true)) < 0)
			return r;
	}
	for (size_t i = 0; i < c->n_sinks; i++) {
		struct config_sink *s = &c->sinks[i];
		char key[sizeof("[sink.]") + SINK_NAME_MAX];

		snprintf(key, sizeof(key), "[sink.%s]", s->name);
		if ((int)s->type == -1)
			return fail(p, p->sink_line[i], key,
				    "missing type (file, jupiterone or webhook)");
		switch (s->type) {
		case SINK_FILE:
			r = check_sink_keys(p, i, file_sink_keys);
			if (r == 0 && !s->path)
				r = fail(p, p->sink_line[i], key, "a file sink needs path");
			break;
		case SINK_WEBHOOK:
			r = validate_webhook(p, i, key);
			break;
		case SINK_JUPITERONE:
			r = validate_jupiterone(p, i, key);
			break;
		default:
			r = fail(p, p->sink_line[i], key,
				 "sink type %s is not supported by this version",
				 config_sink_type_to_string(s->type));
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static int set_defaults(struct config *c)
{
	c->log_level = LOG_LEVEL_INFO;
	c->ts.rate_limit = 150;
	c->ts.poll_interval = 600;
	c->ts.alert_days = 7;
	c->ts.timeout = 30;
	c->ts.max_response = CONFIG_MAX_RESPONSE_DEFAULT;
	c->ts.max_pages = CONFIG_MAX_PAGES_DEFAULT;
	c->store.synchronous_full = true;
	c->store.outbox_retention = CONFIG_OUTBOX_RETENTION_DEFAULT;
	c->sync.max_delete_fraction = 0.5;
	c->webhook.max_body = CONFIG_MAX_BODY_DEFAULT;
	c->webhook.tls = true;
	c->webhook.inbox_max = CONFIG_INBOX_MAX_DEFAULT;
	c->webhook.confirm_window = CONFIG_CONFIRM_WINDOW_DEFAULT;
	c->webhook.timeout = CONFIG_WEBHOOK_TIMEOUT_DEFAULT;
	c->webhook.max_connections = CONFIG_MAX_CONNECTIONS_DEFAULT;
	c->webhook.max_connections_per_ip = CONFIG_MAX_CONNECTIONS_PER_IP_DEFAULT;
	return 0;
}

static int fill_defaults(struct config *c)
{
	if (!c->ts.api_url && !(c->ts.api_url = strdup("https://api.threatstack.com")))
		return -ENOMEM;
	if (!c->store.path && !(c->store.path = strdup("/var/lib/tsgraphd/state.db")))
		return -ENOMEM;
	if (!c->webhook.listen && !(c->webhook.listen = strdup("0.0.0.0:8443")))
		return -ENOMEM;
	if (!c->webhook.inbox && asprintf(&c->webhook.inbox, "%s-inbox", c->store.path) < 0) {
		c->webhook.inbox = NULL;
		return -ENOMEM;
	}
	return 0;
}

static int parse_text(struct parse *p, const char *text, size_t len)
{
	const char *s = text, *end = text + len;
	char line[LINE_MAX_LEN + 1];
	int r;

	while (s < end) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		size_t n = (size_t)((nl ? nl : end) - s);

		p->line++;
		if (n > LINE_MAX_LEN)
			return fail(p, p->line, NULL, "line longer than %d bytes", LINE_MAX_LEN);
		if (memchr(s, '\0', n))
			return fail(p, p->line, NULL, "NUL byte in line");
		memcpy(line, s, n);
		line[n] = '\0';
		r = parse_line(p, line);
		explicit_bzero(line, n);
		if (r < 0)
			return r;
		s += n + 1;
	}
	return 0;
}

static int parse_common(struct parse *p, const char *text, size_t len, struct config **ret)
{
	struct config *c;
	int r;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	atomic_init(&c->refs, 1);
	p->c = c;
	set_defaults(c);
	r = parse_text(p, text, len);
	if (r == 0)
		r = validate(p);
	if (r == 0)
		r = fill_defaults(c);
	if (r == 0 && !(c->file = strdup(p->name)))
		r = -ENOMEM;
	for (size_t i = 0; i < SCRATCH_N; i++)
		free(p->scratch[i]);
	if (r == -ENOMEM)
		snprintf(p->error, CONFIG_ERROR_MAX, "%s: out of memory", p->name);
	if (r < 0) {
		config_free(c);
		return r;
	}
	*ret = c;
	return 0;
}

int config_parse(const char *name, const char *text, size_t len, struct config **ret,
		 char ret_error[static CONFIG_ERROR_MAX])
{
	struct parse p = { .name = name, .error = ret_error };

	ret_error[0] = '\0';
	return parse_common(&p, text, len, ret);
}

int config_load_flags(const char *path, unsigned flags, struct config **ret,
		      char ret_error[static CONFIG_ERROR_MAX])
{
	struct parse p = { .name = path, .error = ret_error, .flags = flags };
	_cleanup_free_ char *dir = NULL;
	_cleanup_close_ int fd = -1;
	char *text = NULL;
	size_t len = 0;
	struct stat st;
	struct config *c = NULL;
	int r;

	ret_error[0] = '\0';
	/* -c may name anything: open without blocking, then refuse what is not a file. */
	r = open_regular(path, &fd, &st);
	if (r == 0 && (uint64_t)st.st_size > CONFIG_FILE_MAX)
		r = -EFBIG;
	if (r == 0)
		r = read_fd_bounded(fd, CONFIG_FILE_MAX, &text, &len);
	if (r == -EFBIG) {
		fail(&p, 0, NULL, "larger than %d MiB", CONFIG_FILE_MAX / (1024 * 1024));
		goto out;
	}
	if (r < 0) {
		fail(&p, 0, NULL, "%s",
		     r == -EBADFD ? "not a regular file (a FIFO, device or directory?)"
				  : strerror(-r));
		if (r == -EBADFD)
			r = -EINVAL;
		goto out;
	}
	dir = strdup(path);
	if (!dir) {
		r = -ENOMEM;
		goto out;
	}
	{
		char *slash = strrchr(dir, '/');

		if (slash == dir)
			slash[1] = '\0';
		else if (slash)
			*slash = '\0';
		else
			dir[0] = '.', dir[1] = '\0'; /* path has at least one byte */
	}
	p.dir = dir;
	r = parse_common(&p, text, len, &c);
	if (r < 0)
		goto out;
	if (p.inline_secret && (st.st_mode & S_IROTH)) {
		fail(&p, 0, NULL,
		     "holds a secret but is readable by others (chmod o-r it, or move the secret "
		     "to a *_file)");
		r = -EPERM;
		goto out;
	}
	if (p.secret_url_line && (st.st_mode & S_IROTH)) {
		fail(&p, p.secret_url_line, "url",
		     "a webhook url with a path or query is a credential (Slack and Teams carry "
		     "their token in it), and this file is readable by others (chmod o-r it)");
		r = -EPERM;
		goto out;
	}
	*ret = c;
	c = NULL;
out:
	if (text) {
		explicit_bzero(text, len);
		free(text);
	}
	config_free(c);
	return r;
}

int config_load(const char *path, struct config **ret, char ret_error[static CONFIG_ERROR_MAX])
{
	return config_load_flags(path, 0, ret, ret_error);
}

int config_register_secrets(const struct config *const *cs, size_t n_cs)
{
	const char *secrets[CONFIG_SECRETS_IN_USE_MAX * (2 + 3 * CONFIG_SINKS_MAX)];
	size_t n = 0;

	if (n_cs > CONFIG_SECRETS_IN_USE_MAX)
		return -E2BIG;
	for (size_t k = 0; k < n_cs; k++) {
		const struct config *x = cs[k];
		bool seen = false;

		for (size_t j = 0; j < k; j++)
			seen = seen || cs[j] == x;
		if (!x || seen)
			continue;
		secrets[n++] = x->ts.api_key;
		secrets[n++] = x->webhook.secret;
		/* A webhook URL is a credential too: Slack's and Teams' carry their token in the
		 * path. */
		for (size_t i = 0; i < x->n_sinks; i++) {
			secrets[n++] = x->sinks[i].webhook.secret;
			secrets[n++] = x->sinks[i].type == SINK_WEBHOOK ? x->sinks[i].url : NULL;
			secrets[n++] = x->sinks[i].j1.token;
		}
	}
	return log_set_secrets(secrets, n);
}

static bool same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* *field = a copy of old (wiped first when secret); 0 or -ENOMEM. */
static int restore(char **field, const char *old, bool secret)
{
	char *copy = NULL;

	if (old && !(copy = strdup(old)))
		return -ENOMEM;
	if (secret)
		wipe_free(*field);
	else
		free(*field);
	*field = copy;
	return 0;
}

int config_keep_restart_only(struct config *next, const struct config *cur, config_restart_fn fn,
			     void *userdata)
{
	const struct {
		const char *key;
		size_t off;
	} strings[] = {
		{ "[threatstack] org_id", offsetof(struct config, ts.org_id) },
		{ "[threatstack] org_name", offsetof(struct config, ts.org_name) },
		{ "[store] path", offsetof(struct config, store.path) },
		{ "[webhook] listen", offsetof(struct config, webhook.listen) },
		{ "[webhook] inbox", offsetof(struct config, webhook.inbox) },
	};
	bool was_on = cur->webhook.secret != NULL, on = next->webhook.secret != NULL;

	for (size_t i = 0; i < ARRAY_SIZE(strings); i++) {
		char **f = (char **)((char *)next + strings[i].off);
		const char *old = *(char *const *)((const char *)cur + strings[i].off);

		if (same(*f, old))
			continue;
		if (restore(f, old, false) < 0)
			return -ENOMEM;
		fn(strings[i].key, userdata);
	}
	/* What follows a restart-only key follows its running value (the inbox's default path
	 * follows the store's, above, as a key of its own). */
	for (size_t i = 0; i < next->n_sinks; i++) {
		struct config_sink *s = &next->sinks[i];
		char *scope = NULL;

		if (s->type != SINK_JUPITERONE || !s->j1.scope_default)
			continue;
		if (asprintf(&scope, "threatstack-%s", next->ts.org_id) < 0)
			return -ENOMEM;
		free(s->j1.scope);
		s->j1.scope = scope;
	}
	if (next->store.synchronous_full != cur->store.synchronous_full) {
		next->store.synchronous_full = cur->store.synchronous_full;
		fn("[store] synchronous", userdata);
	}
	if (next->webhook.tls != cur->webhook.tls) {
		next->webhook.tls = cur->webhook.tls;
		fn("[webhook] tls", userdata);
	}
	if (next->webhook.inbox_max != cur->webhook.inbox_max) {
		next->webhook.inbox_max = cur->webhook.inbox_max;
		fn("[webhook] inbox_max", userdata);
	}
	/* The receiver is on exactly when a secret is set: turning it on or off is a restart. */
	if (was_on != on) {
		if (restore(&next->webhook.secret, cur->webhook.secret, true) < 0)
			return -ENOMEM;
		fn(was_on ? "[webhook] secret (removed: the receiver would stop)"
			  : "[webhook] secret (added: the receiver would start)",
		   userdata);
	}
	return 0;
}
