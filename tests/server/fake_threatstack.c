/* fake_threatstack — a loopback stand-in for the Threat Stack REST API v2, for tests.
 *
 * Design. One process, libmicrohttpd with a thread per connection, and one mutex around
 * all mutable state (the fleet, the fault queue, the nonce cache and the statistics): a
 * request takes the lock, authenticates, counts itself, picks its faults, builds and
 * serializes its answer, and lets go; only the Hawk signature of the answer, an injected
 * delay and the socket write happen outside it. The fleet is generated once from --seed
 * (each agent, CVE and alert from its own PRNG stream keyed by its index, so one knob never
 * reshuffles the rest) and kept as json-c objects in API shape, so a page is a handful of
 * reference-counted pointers and the truth served under /_fake/fleet is the same data.
 * Hawk is checked with the project's own hawk module against the raw request URI (taken
 * from MHD's URI log callback, before any decoding), because a client that re-encodes its
 * query after signing must fail here as it would against the real service. Pagination
 * tokens are base64 of a binary (offset, listing tag) record whose first bytes encode to
 * "++": a client that does not URL-encode the token sends spaces and gets 400. Faults are a
 * small ordered queue of {kind, count, ms, path prefix}; a request consumes at most one
 * answer-replacing fault (429/500/401/403), one delay, and, when it is answered normally,
 * one body fault (truncate/badtype), and one replacement of a 200 body (body: a given string;
 * dense: {"<collection>":[],"pad":[0,0,...]} of a given size; control endpoint only). A
 * fault path with a '?' matches the raw path?query, so one listing can be aimed at
 * ("/v2/agents?status=offline"). POST /_fake/fleet {"op":"cve_add_all","cve":ID} makes a
 * CVE (agents inline) that affects every agent. Control endpoints under /_fake/ need no Hawk.
 * Per-CVE servers pages hold page-size/5 entries, so that with the default fleet (50 agents,
 * 100 a page) the CVE that affects every agent still spans several servers pages.
 * --rate-limit N enforces the organization's budget as the strictest reading of the
 * reference allows: at most N accepted API requests in any sliding 60-second window (a ring
 * of their arrival times), the rest answered 429; with it on, every authenticated answer
 * carries x-rate-limit-remaining and x-rate-limit-reset (ms until a slot frees).
 * docs/testing.md is the user's guide; this file's sections follow the same order.
 */
#include "tsgraphd/hawk.h"
#include "tsgraphd/util.h"

#include "fakesrv.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <json-c/json.h>
#include <microhttpd.h>
#include <openssl/evp.h>

#define DEFAULT_KEY	   "fake-api-key-0123456789abcdef"
#define DEFAULT_ORG	   "545d0293b620cd090d000023"
#define DEFAULT_USER	   "5537c4284e9684df7e000014"
#define TS_WINDOW_S	   60
#define NONCE_TTL_MS	   (2 * (TS_WINDOW_S + 5) * 1000)
#define NONCE_MAX	   200000
#define MAX_FAULTS	   64
#define MAX_QUERY_PARAMS   16
#define CONTROL_BODY_MAX   65536
#define SLOW_MAX_MS	   120000
#define DENSE_MAX	   (256LL * 1024 * 1024)
#define RESET_MAX_MS	   3600000 /* x-rate-limit-reset of an injected 429 */
#define RATE_RING_MAX	   (1u << 20)
#define RATE_LIMIT_MAX	   100000 /* --rate-limit, requests a minute */
#define RATE_WINDOW_MS	   60000
#define ID_MAX		   48
#define DAY_MS		   (24LL * 3600 * 1000)
#define TOKEN_RAW_LEN	   11
#define TOKEN_B64_LEN	   16
#define TOKEN_MAGIC0	   0xfb
#define TOKEN_MAGIC1	   0xef
#define SERVERS_PAGE_RATIO 5
#define RESUME_SLOTS	   16

/* ---------------------------------------------------------------------------------------
 * State
 */

struct agent {
	char id[ID_MAX];
	bool online;
	bool dual; /* also listed under the other status, with an older lastReportedAt */
	json_object *obj;
	json_object *stale; /* NULL, or what the other status's listing shows (agent_set) */
};

struct cve {
	char id[ID_MAX];
	bool carries_agents; /* list items include "agents"; else clients must ask /servers */
	json_object *obj;    /* list item without "agents" */
	json_object *agents; /* array of agent id strings */
};

struct alert {
	char id[ID_MAX];
	int64_t created_ms;
	bool dismissed;
	json_object *obj;
};

struct fleet {
	uint64_t seed;
	struct agent *agents;
	size_t nagents, cap_agents;
	struct cve *cves;
	size_t ncves, cap_cves;
	struct alert *alerts;
	size_t nalerts, cap_alerts;
	uint64_t next_agent, next_alert; /* generator indexes for runtime additions */
	unsigned wide_cves;		 /* CVEs #1..#wide_cves affect every agent */
	uint64_t generation;		 /* bumped by every change: resume points expire */
};

enum fault_kind {
	FAULT_429,
	FAULT_500,
	FAULT_401,
	FAULT_403,
	FAULT_SLOW,
	FAULT_TRUNCATE,
	FAULT_BADTYPE,
	FAULT_BODY,
	FAULT_DENSE
};

static const char *const fault_names[] = {
	[FAULT_429] = "429",	     [FAULT_500] = "500",   [FAULT_401] = "401",
	[FAULT_403] = "403",	     [FAULT_SLOW] = "slow", [FAULT_TRUNCATE] = "truncate",
	[FAULT_BADTYPE] = "badtype", [FAULT_BODY] = "body", [FAULT_DENSE] = "dense",
};

struct fault {
	enum fault_kind kind;
	uint64_t count;
	int64_t ms; /* slow: delay; 429: x-rate-limit-reset (-1: no header) */
	char path[256];
	char *body;	/* body: the 200 answer's replacement, owned */
	uint64_t bytes; /* dense: size of the generated answer */
};

/* What one request drew from the fault queue. */
struct fault_hit {
	int answer; /* -1 or FAULT_429/500/401/403 */
	int64_t reset_ms;
	int64_t slow_ms;
	bool truncate;
	bool badtype;
	char *body; /* owned copy */
	uint64_t dense_bytes;
};

struct nonce_entry {
	char *nonce;
	int64_t expires_ms;
};

enum path_kind {
	P_AGENTS,
	P_AGENT,
	P_VULNS,
	P_VULN_SERVERS,
	P_ALERTS,
	P_ALERT,
	P_SELFTEST,
	P_OTHER,
	P__COUNT
};

static const char *const path_names[P__COUNT] = {
	[P_AGENTS] = "/v2/agents",
	[P_AGENT] = "/v2/agents/{id}",
	[P_VULNS] = "/v2/vulnerabilities",
	[P_VULN_SERVERS] = "/v2/vulnerabilities/{cve}/servers",
	[P_ALERTS] = "/v2/alerts",
	[P_ALERT] = "/v2/alerts/{id}",
	[P_SELFTEST] = "/help/hawk/self-test",
	[P_OTHER] = "other",
};

struct stats {
	uint64_t requests, api_requests, auth_failures, max_per_minute;
	uint64_t rate_limited;	   /* 429s of --rate-limit */
	uint64_t status_429;	   /* every 429 answered, injected ones included */
	int64_t first_ms, last_ms; /* monotonic ms of the first and last API request, 0: none */
	uint64_t by_path[P__COUNT];
	int64_t *ring; /* monotonic ms of recent API requests, oldest at head */
	size_t head, len, cap;
};

struct fake {
	pthread_mutex_t lock;
	struct fleet fleet;
	struct fault faults[MAX_FAULTS];
	size_t nfaults;
	struct nonce_entry *nonces;
	size_t nnonces, cap_nonces;
	struct stats stats;
	/* --rate-limit: not statistics, so /_fake/reset-stats leaves it alone */
	struct {
		uint32_t per_minute; /* 0: off */
		int64_t *ring;	     /* monotonic ms of the accepted requests, oldest at head */
		size_t head, len;    /* the ring holds per_minute entries */
	} rate;
	int64_t skew_s;
	unsigned page_size;
	unsigned servers_page_size; /* 0: page_size / SERVERS_PAGE_RATIO */
	FILE *record;		    /* every 2xx API body, for the benchmark's parse floor */
	bool verbose;
	atomic_bool stopping; /* SIGTERM came: slow answers stop waiting */
	char *key;
	char org_id[HAWK_ATTR_MAX + 1];
	char user_id[HAWK_ATTR_MAX + 1];
};

/* One HTTP request, from the URI log callback to MHD's completion callback. */
struct request {
	char *uri; /* as received: path?query, undecoded */
	char *path;
	struct {
		char *key, *value;
	} query[MAX_QUERY_PARAMS];
	size_t nquery;
	bool bad_query;
	bool started;
	bool body_too_big;
	struct buf body;
};

/* An answer before it becomes an MHD response. */
struct reply {
	unsigned status;
	char *body;
	size_t len;
	const char *ctype;
	char *www_auth;
	int64_t reset_ms;
	int64_t remaining; /* x-rate-limit-remaining, -1: none */
	int64_t slow_ms;
};

/* ---------------------------------------------------------------------------------------
 * Small helpers
 */

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	return z ^ (z >> 31);
}

/* An independent stream per (seed, kind, index). */
static uint64_t rng_for(uint64_t seed, uint64_t salt, uint64_t idx)
{
	uint64_t s = seed * 0xD1342543DE82EF95ULL + salt * 0x9E3779B97F4A7C15ULL + idx;

	splitmix64(&s);
	return s;
}

static void iso(int64_t ms, char out[static 32])
{
	format_iso8601_ms(ms, out);
}

static int64_t fake_now_ms(const struct fake *f)
{
	return now_ms() + f->skew_s * 1000;
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* %XX-decodes s[0..n); '+' is a space in a query. A NUL byte or a bad escape is -EINVAL. */
static int pct_decode(const char *s, size_t n, bool plus_space, char **ret)
{
	char *out = malloc(n + 1);
	size_t o = 0;

	if (!out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '%') {
			int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
			int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;

			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return -EINVAL;
			}
			out[o++] = (char)(hi * 16 + lo);
			i += 2;
		} else if (s[i] == '+' && plus_space) {
			out[o++] = ' ';
		} else {
			out[o++] = s[i];
		}
	}
	out[o] = '\0';
	*ret = out;
	return 0;
}

static void request_free(struct request *rq)
{
	if (!rq)
		return;
	free(rq->uri);
	free(rq->path);
	for (size_t i = 0; i < rq->nquery; i++) {
		free(rq->query[i].key);
		free(rq->query[i].value);
	}
	buf_free(&rq->body);
	free(rq);
}

/* Splits the raw URI into a decoded path and decoded query parameters. */
static struct request *request_new(const char *uri)
{
	struct request *rq = calloc(1, sizeof(*rq));
	const char *q, *p;

	if (!rq)
		return NULL;
	buf_init(&rq->body, CONTROL_BODY_MAX);
	rq->uri = strdup(uri ? uri : "/");
	if (!rq->uri)
		goto fail;
	q = strchr(rq->uri, '?');
	if (pct_decode(rq->uri, q ? (size_t)(q - rq->uri) : strlen(rq->uri), false, &rq->path) <
	    0) {
		rq->bad_query = true;
		rq->path = strdup("");
		if (!rq->path)
			goto fail;
	}
	for (p = q ? q + 1 : NULL; p && *p;) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		const char *eq = memchr(p, '=', (size_t)(end - p));
		char *k = NULL, *v = NULL;

		if (end > p) {
			if (rq->nquery == MAX_QUERY_PARAMS || !eq ||
			    pct_decode(p, (size_t)(eq - p), true, &k) < 0 ||
			    pct_decode(eq + 1, (size_t)(end - eq - 1), true, &v) < 0) {
				free(k);
				rq->bad_query = true;
				break;
			}
			rq->query[rq->nquery].key = k;
			rq->query[rq->nquery].value = v;
			rq->nquery++;
		}
		p = amp ? amp + 1 : NULL;
	}
	return rq;
fail:
	request_free(rq);
	return NULL;
}

static const char *query_get(const struct request *rq, const char *key)
{
	for (size_t i = 0; i < rq->nquery; i++)
		if (strcmp(rq->query[i].key, key) == 0)
			return rq->query[i].value;
	return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Fleet generator. Everything derives from (seed, index); the odd cases are spread over
 * fixed residues of the index so that every fleet of a few dozen agents has all of them.
 */

static void gen_uuid(uint64_t *s, char out[static ID_MAX])
{
	uint64_t a = splitmix64(s), b = splitmix64(s);

	snprintf(out, ID_MAX,
		 "%08" PRIx64 "-%04" PRIx64 "-4%03" PRIx64 "-%04" PRIx64 "-%012" PRIx64, a >> 32,
		 (a >> 16) & 0xffff, a & 0xfff, 0x8000 | ((b >> 48) & 0x3fff),
		 (uint64_t)(b & 0xffffffffffffULL));
}

static void gen_hex24(uint64_t *s, char out[static ID_MAX])
{
	uint64_t a = splitmix64(s), b = splitmix64(s);

	snprintf(out, ID_MAX, "%016" PRIx64 "%08" PRIx64, a, (uint64_t)(b & 0xffffffffULL));
}

static json_object *jstr(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

static void set(json_object *o, const char *k, json_object *v)
{
	json_object_object_add(o, k, v);
}

/* One address member: usually an array, sometimes a bare string. */
static json_object *addr_member(const char *addr, bool as_string)
{
	json_object *a;

	if (as_string)
		return json_object_new_string(addr);
	a = json_object_new_array();
	if (*addr)
		json_object_array_add(a, json_object_new_string(addr));
	return a;
}

static json_object *gen_agent_obj(const char *id, uint64_t idx, uint64_t *s, bool online,
				  int64_t now)
{
	static const char *const os[] = { "amzn 2018.03", "ubuntu 20.04", "centos 7.9",
					  "debian 11" };
	json_object *o = json_object_new_object(), *ips, *tags, *t, *health;
	bool ec2 = idx % 7 != 2;
	unsigned a = (unsigned)(splitmix64(s) % 250) + 1, b = (unsigned)(splitmix64(s) % 250) + 1;
	char host[128], name[64], priv[64], pub[64], ll[64], inst[32], c[32], r[32];
	int64_t created = now - 30 * DAY_MS - (int64_t)(splitmix64(s) % (uint64_t)(60 * DAY_MS));
	int64_t reported =
		online ? now - (int64_t)(splitmix64(s) % 300000)
		       : now - 3600000 - (int64_t)(splitmix64(s) % (uint64_t)(3 * DAY_MS));

	switch (idx % 6) {
	case 3:
		snprintf(host, sizeof(host), "Web_Server %04" PRIu64 ".Example.COM", idx);
		break;
	case 4:
		snprintf(host, sizeof(host), "DB_node.%" PRIu64 ".corp.Internal", idx);
		break;
	default:
		if (ec2)
			snprintf(host, sizeof(host), "ip-10-%u-%u-%" PRIu64 ".ec2.internal", a, b,
				 idx % 250);
		else
			snprintf(host, sizeof(host), "srv-%" PRIu64 ".local", idx);
	}
	snprintf(name, sizeof(name), "%s-%" PRIu64, idx % 2 ? "api-prod" : "worker", idx);
	snprintf(priv, sizeof(priv), "10.%u.%u.%" PRIu64 "%s", a, b, idx % 250,
		 idx % 6 == 1 ? "/24" : "");
	snprintf(pub, sizeof(pub), "%s", ec2 && idx % 3 == 0 ? "54.12.34.56" : "");
	if (*pub)
		snprintf(pub, sizeof(pub), "54.%u.%u.%" PRIu64, b, a, idx % 250);
	snprintf(ll, sizeof(ll), "fe80::8ff:%x:fe11:%" PRIx64 "%s", a, idx & 0xffff,
		 idx % 5 == 2 ? "/64" : "");
	snprintf(inst, sizeof(inst), "i-%017" PRIx64,
		 (uint64_t)(splitmix64(s) & 0xfffffffffffffffULL));
	iso(created, c);
	iso(reported, r);

	set(o, "id", jstr(id));
	set(o, "instanceId", ec2 ? jstr(inst) : NULL);
	set(o, "status", jstr(online ? "online" : "offline"));
	set(o, "createdAt", jstr(c));
	set(o, "lastReportedAt", jstr(r));
	set(o, "version", jstr(idx % 3 ? "2.5.0" : "3.1.2"));
	set(o, "name", idx % 11 == 7 ? NULL : jstr(name));
	set(o, "description", jstr(""));
	set(o, "hostname", jstr(host));
	ips = json_object_new_object();
	set(ips, "private", addr_member(priv, idx % 9 == 4));
	set(ips, "public", addr_member(pub, false));
	set(ips, "link_local", addr_member(ll, idx % 13 == 6));
	set(o, "ipAddresses", ips);
	tags = json_object_new_array();
	if (ec2) {
		t = json_object_new_object();
		set(t, "source", jstr("ec2"));
		set(t, "key", jstr("Name"));
		set(t, "value", jstr(name));
		json_object_array_add(tags, t);
	}
	if (idx % 3 == 1) {
		t = json_object_new_object();
		set(t, "source", NULL);
		set(t, "key", jstr("env"));
		set(t, "value", jstr(idx % 2 ? "prod" : "staging"));
		json_object_array_add(tags, t);
	}
	set(o, "tags", tags);
	set(o, "agentType", jstr(idx % 4 == 0 ? "monitor" : "investigate"));
	set(o, "osVersion", jstr(os[idx % ARRAY_SIZE(os)]));
	set(o, "kernel", jstr(idx % 2 ? "4.14.114-83.126.amzn1.x86_64" : "5.10.0-21-amd64"));
	health = json_object_new_object();
	set(health, "isHealthy", json_object_new_boolean(idx % 10 != 8));
	set(o, "agentModuleHealth", health);
	return o;
}

static int fleet_add_agent(struct fleet *fl, int64_t now, bool initial, struct agent **ret)
{
	uint64_t idx = fl->next_agent, s = rng_for(fl->seed, 1, idx);
	struct agent *ag;

	if (fakesrv_grow((void **)&fl->agents, &fl->cap_agents, fl->nagents, sizeof(*ag)) < 0)
		return -ENOMEM;
	ag = &fl->agents[fl->nagents];
	memset(ag, 0, sizeof(*ag));
	if (idx % 17 == 5)
		gen_hex24(&s, ag->id);
	else
		gen_uuid(&s, ag->id);
	ag->online = initial ? splitmix64(&s) % 10 < 7 : true;
	ag->dual = initial && idx % 20 == 3;
	ag->obj = gen_agent_obj(ag->id, idx, &s, ag->online, now);
	if (!ag->obj)
		return -ENOMEM;
	fl->nagents++;
	fl->next_agent++;
	if (ret)
		*ret = ag;
	return 0;
}

static struct cve *fleet_new_cve(struct fleet *fl, const char *id, bool carries, uint64_t *s)
{
	static const char *const sev[] = { "low", "medium", "high", "critical" };
	static const char *const vec[] = { "network", "local", "adjacent_network" };
	static const char *const pkg[] = { "openssl 1.0.2k", "kernel 4.14.114", "sudo 1.8.23",
					   "glibc 2.17", "curl 7.61.1" };
	struct cve *cv;
	uint64_t r = splitmix64(s);
	char sys[96];

	if (fakesrv_grow((void **)&fl->cves, &fl->cap_cves, fl->ncves, sizeof(*cv)) < 0)
		return NULL;
	cv = &fl->cves[fl->ncves];
	memset(cv, 0, sizeof(*cv));
	snprintf(cv->id, sizeof(cv->id), "%s", id);
	cv->carries_agents = carries;
	cv->obj = json_object_new_object();
	cv->agents = json_object_new_array();
	if (!cv->obj || !cv->agents) {
		json_object_put(cv->obj);
		json_object_put(cv->agents);
		return NULL;
	}
	snprintf(sys, sizeof(sys), "%s-%" PRIu64 ".el7.x86_64", pkg[r % ARRAY_SIZE(pkg)], r % 40);
	set(cv->obj, "cveNumber", jstr(id));
	set(cv->obj, "reportedPackage", jstr(pkg[r % ARRAY_SIZE(pkg)]));
	set(cv->obj, "systemPackage", jstr(sys));
	set(cv->obj, "vectorType", jstr(vec[(r >> 8) % ARRAY_SIZE(vec)]));
	set(cv->obj, "severity", jstr(sev[(r >> 16) % ARRAY_SIZE(sev)]));
	set(cv->obj, "isSuppressed", json_object_new_boolean(false));
	set(cv->obj, "securityNotices", json_object_new_array());
	fl->ncves++;
	return cv;
}

static bool cve_has_agent(const struct cve *cv, const char *id)
{
	size_t n = json_object_array_length(cv->agents);

	for (size_t i = 0; i < n; i++)
		if (strcmp(json_object_get_string(json_object_array_get_idx(cv->agents, i)), id) ==
		    0)
			return true;
	return false;
}

static int cve_add_agent(struct cve *cv, const char *id)
{
	if (cve_has_agent(cv, id))
		return 0;
	return json_object_array_add(cv->agents, json_object_new_string(id)) < 0 ? -ENOMEM : 0;
}

/* CVE #1 (and up to #wide_cves) carries no "agents" and affects every agent: its servers
 * listing spans several pages. Every third CVE omits "agents"; the rest affect 1-5 agents.
 * The agents of a wide CVE are added without the duplicate check: they are distinct, and
 * the check would make generation quadratic in the fleet. */
static int fleet_gen_cves(struct fleet *fl, unsigned n)
{
	for (unsigned j = 0; j < n && fl->nagents > 0; j++) {
		uint64_t s = rng_for(fl->seed, 2, j);
		char id[ID_MAX];
		struct cve *cv;
		unsigned k;

		snprintf(id, sizeof(id), "CVE-%u-%u", 2015 + (unsigned)(splitmix64(&s) % 9),
			 10001 + j);
		cv = fleet_new_cve(fl, id, j % 3 != 1 && (j < 1 || j > fl->wide_cves), &s);
		if (!cv)
			return -ENOMEM;
		if (j >= 1 && j <= (fl->wide_cves ? fl->wide_cves : 1)) {
			for (size_t i = 0; i < fl->nagents; i++)
				if (json_object_array_add(
					    cv->agents, json_object_new_string(fl->agents[i].id)) <
				    0)
					return -ENOMEM;
			continue;
		}
		k = 1 + (unsigned)(splitmix64(&s) % 5);
		for (unsigned i = 0; i < k; i++)
			if (cve_add_agent(cv, fl->agents[splitmix64(&s) % fl->nagents].id) < 0)
				return -ENOMEM;
	}
	return 0;
}

static int fleet_add_alert(struct fleet *fl, const char *agent_id, bool cloudtrail, int64_t created,
			   bool dismissed, struct alert **ret)
{
	static const char *const titles[] = {
		"User Activity: sudo executed by alice",
		"Threat Intelligence Activity: Communication to openbl by 185.110.132.54",
		"Network Activity: outbound connection to port 4444",
		"File Integrity: /etc/passwd modified",
		"Process Activity: nc -l started",
	};
	static const char *const reasons[] = { "BUSINESS_OP", "COMPANY_POLICY", "MAINTENANCE",
					       "OTHER" };
	uint64_t idx = fl->next_alert, s = rng_for(fl->seed, 3, idx);
	struct alert *al;
	json_object *o;
	char c[32], d[32], rule[ID_MAX], rs[ID_MAX];

	if (fakesrv_grow((void **)&fl->alerts, &fl->cap_alerts, fl->nalerts, sizeof(*al)) < 0)
		return -ENOMEM;
	al = &fl->alerts[fl->nalerts];
	memset(al, 0, sizeof(*al));
	gen_hex24(&s, al->id);
	gen_uuid(&s, rule);
	gen_uuid(&s, rs);
	al->created_ms = created;
	al->dismissed = dismissed;
	iso(created, c);
	iso(created + 3600000, d);
	o = al->obj = json_object_new_object();
	if (!o)
		return -ENOMEM;
	set(o, "id", jstr(al->id));
	set(o, "title",
	    jstr(cloudtrail ? "CloudTrail Activity: ConsoleLogin without MFA"
			    : titles[idx % ARRAY_SIZE(titles)]));
	set(o, "dataSource", jstr(cloudtrail ? "cloudtrail" : "host"));
	set(o, "createdAt", jstr(c));
	set(o, "isDismissed", json_object_new_boolean(dismissed));
	set(o, "dismissedAt", dismissed ? jstr(d) : NULL);
	set(o, "dismissReason", dismissed ? jstr(reasons[idx % ARRAY_SIZE(reasons)]) : NULL);
	set(o, "dismissReasonText", dismissed ? jstr("generated by the fake") : NULL);
	set(o, "dismissedBy", dismissed ? jstr("ops@example.com") : NULL);
	set(o, "severity", json_object_new_int(1 + (int)(splitmix64(&s) % 3)));
	if (!cloudtrail)
		set(o, "agentId", jstr(agent_id));
	set(o, "ruleId", jstr(rule));
	set(o, "rulesetId", jstr(rs));
	fl->nalerts++;
	fl->next_alert++;
	if (ret)
		*ret = al;
	return 0;
}

/* Alerts spread over the last 3 days; every 4th dismissed; every 10th from CloudTrail. */
static int fleet_gen_alerts(struct fleet *fl, unsigned n, int64_t now)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t s = rng_for(fl->seed, 4, i);
		bool ct = i % 10 == 9 || fl->nagents == 0;
		int64_t created =
			now - 60000 - (int64_t)(splitmix64(&s) % (uint64_t)(3 * DAY_MS - 120000));
		const char *agent = ct ? NULL : fl->agents[splitmix64(&s) % fl->nagents].id;

		if (fleet_add_alert(fl, agent, ct, created, i % 4 == 3, NULL) < 0)
			return -ENOMEM;
	}
	return 0;
}

static void fleet_free(struct fleet *fl)
{
	for (size_t i = 0; i < fl->nagents; i++) {
		json_object_put(fl->agents[i].obj);
		json_object_put(fl->agents[i].stale);
	}
	for (size_t i = 0; i < fl->ncves; i++) {
		json_object_put(fl->cves[i].obj);
		json_object_put(fl->cves[i].agents);
	}
	for (size_t i = 0; i < fl->nalerts; i++)
		json_object_put(fl->alerts[i].obj);
	free(fl->agents);
	free(fl->cves);
	free(fl->alerts);
	memset(fl, 0, sizeof(*fl));
}

static int fleet_generate(struct fleet *fl, uint64_t seed, unsigned agents, unsigned cves,
			  unsigned wide_cves, unsigned alerts, int64_t now)
{
	memset(fl, 0, sizeof(*fl));
	fl->seed = seed;
	fl->wide_cves = wide_cves;
	for (unsigned i = 0; i < agents; i++)
		if (fleet_add_agent(fl, now, true, NULL) < 0)
			return -ENOMEM;
	if (fleet_gen_cves(fl, cves) < 0 || fleet_gen_alerts(fl, alerts, now) < 0)
		return -ENOMEM;
	return 0;
}

static struct agent *find_agent(struct fleet *fl, const char *id)
{
	for (size_t i = 0; i < fl->nagents; i++)
		if (strcmp(fl->agents[i].id, id) == 0)
			return &fl->agents[i];
	return NULL;
}

static struct cve *find_cve(struct fleet *fl, const char *id)
{
	for (size_t i = 0; i < fl->ncves; i++)
		if (strcmp(fl->cves[i].id, id) == 0)
			return &fl->cves[i];
	return NULL;
}

static struct alert *find_alert(struct fleet *fl, const char *id)
{
	for (size_t i = 0; i < fl->nalerts; i++)
		if (strcmp(fl->alerts[i].id, id) == 0)
			return &fl->alerts[i];
	return NULL;
}

static void fleet_remove_cve_at(struct fleet *fl, size_t i)
{
	json_object_put(fl->cves[i].obj);
	json_object_put(fl->cves[i].agents);
	memmove(&fl->cves[i], &fl->cves[i + 1], (fl->ncves - i - 1) * sizeof(fl->cves[0]));
	fl->ncves--;
}

/* Drops agent id from one CVE; the CVE goes when nobody is left. true when it was there. */
static bool fleet_cve_drop_agent(struct fleet *fl, size_t ci, const char *id)
{
	struct cve *cv = &fl->cves[ci];
	size_t n = json_object_array_length(cv->agents);

	for (size_t i = 0; i < n; i++) {
		if (strcmp(json_object_get_string(json_object_array_get_idx(cv->agents, i)), id))
			continue;
		json_object_array_del_idx(cv->agents, i, 1);
		if (json_object_array_length(cv->agents) == 0)
			fleet_remove_cve_at(fl, ci);
		return true;
	}
	return false;
}

static void fleet_remove_agent(struct fleet *fl, struct agent *ag)
{
	size_t i = (size_t)(ag - fl->agents);
	char id[ID_MAX];

	snprintf(id, sizeof(id), "%s", ag->id);
	json_object_put(ag->obj);
	json_object_put(ag->stale);
	memmove(&fl->agents[i], &fl->agents[i + 1], (fl->nagents - i - 1) * sizeof(*ag));
	fl->nagents--;
	for (size_t c = fl->ncves; c-- > 0;)
		fleet_cve_drop_agent(fl, c, id);
}

/* The same agent as the other status's listing shows it: that status, reported earlier; the
 * copy from before an agent_set when it kept one. */
static json_object *agent_other_view(const struct agent *ag)
{
	json_object *copy = NULL, *lr;
	int64_t ms = 0;
	char r[32];

	if (json_object_deep_copy(ag->stale ? ag->stale : ag->obj, &copy, NULL) < 0)
		return NULL;
	if (json_object_object_get_ex(ag->obj, "lastReportedAt", &lr))
		parse_iso8601_ms(json_object_get_string(lr), &ms);
	iso(ms - 2 * 3600000, r);
	set(copy, "status", jstr(ag->online ? "offline" : "online"));
	set(copy, "lastReportedAt", jstr(r));
	return copy;
}

/* A vulnerability list item; with_agents adds the "agents" member. */
static json_object *cve_item(const struct cve *cv, bool with_agents)
{
	json_object *o = json_object_new_object(), *arr;
	size_t n;

	if (!o)
		return NULL;
	json_object_object_foreach(cv->obj, k, v)
	{
		set(o, k, json_object_get(v));
	}
	if (!with_agents)
		return o;
	arr = json_object_new_array();
	n = json_object_array_length(cv->agents);
	for (size_t i = 0; i < n; i++) {
		json_object *e = json_object_new_object();

		set(e, "agentId", json_object_get(json_object_array_get_idx(cv->agents, i)));
		json_object_array_add(arr, e);
	}
	set(o, "agents", arr);
	return o;
}

/* ---------------------------------------------------------------------------------------
 * Fault injection
 */

static int fault_kind_parse(const char *s, enum fault_kind *ret)
{
	for (size_t i = 0; i < ARRAY_SIZE(fault_names); i++)
		if (strcmp(s, fault_names[i]) == 0) {
			*ret = (enum fault_kind)i;
			return 0;
		}
	return -EINVAL;
}

static int fault_push(struct fake *f, enum fault_kind kind, uint64_t count, int64_t ms,
		      const char *path, const char *body, uint64_t bytes)
{
	struct fault *ft;
	char *copy = NULL;

	if (count == 0)
		return 0;
	if (f->nfaults == MAX_FAULTS)
		return -ENOSPC;
	if (kind == FAULT_SLOW && (ms < 0 || ms > SLOW_MAX_MS))
		return -EINVAL;
	if (path && (*path != '/' || strlen(path) >= sizeof(ft->path)))
		return -EINVAL;
	if ((kind == FAULT_BODY) != (body != NULL) || (kind == FAULT_DENSE) != (bytes > 0))
		return -EINVAL;
	if (body && !(copy = strdup(body)))
		return -ENOMEM;
	ft = &f->faults[f->nfaults++];
	ft->body = copy;
	ft->bytes = bytes;
	ft->kind = kind;
	ft->count = count;
	ft->ms = ms;
	snprintf(ft->path, sizeof(ft->path), "%s", path ? path : "");
	return 0;
}

/* "KIND:N[:MS][@PATHPREFIX]" */
static int fault_parse_spec(struct fake *f, const char *spec)
{
	_cleanup_free_ char *copy = strdup(spec);
	char *at, *c1, *c2 = NULL;
	enum fault_kind kind;
	uint64_t count, ms = 0;
	bool has_ms;

	if (!copy)
		return -ENOMEM;
	at = strchr(copy, '@');
	if (at)
		*at++ = '\0';
	c1 = strchr(copy, ':');
	if (!c1)
		return -EINVAL;
	*c1++ = '\0';
	c2 = strchr(c1, ':');
	if (c2)
		*c2++ = '\0';
	has_ms = c2 != NULL;
	if (fault_kind_parse(copy, &kind) < 0 || parse_u64(c1, 1, 1000000, &count) < 0 ||
	    (has_ms && parse_u64(c2, 0, kind == FAULT_429 ? RESET_MAX_MS : SLOW_MAX_MS, &ms) < 0))
		return -EINVAL;
	if ((kind == FAULT_SLOW) != has_ms && !(kind == FAULT_429 && has_ms))
		return -EINVAL;
	if (kind == FAULT_BODY || kind == FAULT_DENSE)
		return -EINVAL; /* control endpoint only */
	return fault_push(f, kind, count, has_ms ? (int64_t)ms : -1, at, NULL, 0);
}

static bool answer_kind(enum fault_kind k)
{
	return k == FAULT_429 || k == FAULT_500 || k == FAULT_401 || k == FAULT_403;
}

/* Draws this request's faults; a count that reaches zero leaves the queue. */
static void faults_take(struct fake *f, const char *path, const char *uri, struct fault_hit *hit)
{
	size_t o = 0;

	*hit = (struct fault_hit){ .answer = -1, .reset_ms = -1 };
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < f->nfaults; i++) {
			struct fault *ft = &f->faults[i];
			/* a prefix with a query matches the raw path?query as sent */
			const char *subject = strchr(ft->path, '?') ? uri : path;
			bool take = false;

			if (ft->count == 0 || strncmp(subject, ft->path, strlen(ft->path)) != 0)
				continue;
			if (pass == 0 && answer_kind(ft->kind) && hit->answer < 0) {
				hit->answer = (int)ft->kind;
				hit->reset_ms = ft->ms;
				take = true;
			} else if (pass == 0 && ft->kind == FAULT_SLOW && hit->slow_ms == 0) {
				hit->slow_ms = ft->ms > 0 ? ft->ms : 1;
				take = true;
			} else if (pass == 1 && hit->answer < 0 && ft->kind == FAULT_TRUNCATE &&
				   !hit->truncate) {
				hit->truncate = take = true;
			} else if (pass == 1 && hit->answer < 0 && ft->kind == FAULT_BADTYPE &&
				   !hit->badtype) {
				hit->badtype = take = true;
			} else if (pass == 1 && hit->answer < 0 && ft->kind == FAULT_BODY &&
				   !hit->body && !hit->dense_bytes) {
				hit->body = strdup(ft->body);
				take = hit->body != NULL;
			} else if (pass == 1 && hit->answer < 0 && ft->kind == FAULT_DENSE &&
				   !hit->body && !hit->dense_bytes) {
				hit->dense_bytes = ft->bytes;
				take = true;
			}
			if (take)
				ft->count--;
		}
	}
	for (size_t i = 0; i < f->nfaults; i++) {
		if (f->faults[i].count > 0)
			f->faults[o++] = f->faults[i];
		else
			free(f->faults[i].body);
	}
	f->nfaults = o;
}

static void faults_clear(struct fake *f)
{
	for (size_t i = 0; i < f->nfaults; i++)
		free(f->faults[i].body);
	f->nfaults = 0;
}

/* dense: {"<collection>":[],"pad":[0,0,...]} of about `bytes` bytes: a page that carries
 * its collection but is nothing but JSON values. */
static char *dense_body(const char *collection, uint64_t bytes, size_t *ret_len)
{
	char head[128];
	size_t hl, n, len;
	char *out;

	hl = (size_t)snprintf(head, sizeof(head), "{\"%s\":[],\"pad\":[0",
			      collection ? collection : "x");
	n = hl + 2 < bytes ? (size_t)(bytes - hl - 2) / 2 : 0;
	out = malloc(hl + 2 * n + 3);
	if (!out)
		return NULL;
	memcpy(out, head, hl);
	len = hl;
	for (size_t i = 0; i < n; i++) {
		out[len++] = ',';
		out[len++] = '0';
	}
	memcpy(out + len, "]}", 3);
	*ret_len = len + 2;
	return out;
}

/* badtype: a list's collection becomes an object keyed "0", "1", ...; a single object's
 * id becomes a number. Returns the (possibly new) object to serialize. */
static json_object *apply_badtype(json_object *o, const char *collection)
{
	json_object *arr, *obj, *copy = NULL;

	if (collection && json_object_object_get_ex(o, collection, &arr) &&
	    json_object_is_type(arr, json_type_array)) {
		obj = json_object_new_object();
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			char k[24];

			snprintf(k, sizeof(k), "%zu", i);
			set(obj, k, json_object_get(json_object_array_get_idx(arr, i)));
		}
		set(o, collection, obj);
		return o;
	}
	if (json_object_deep_copy(o, &copy, NULL) < 0)
		return o;
	json_object_put(o);
	set(copy, "id", json_object_new_int64(123456789));
	return copy;
}

/* ---------------------------------------------------------------------------------------
 * Statistics
 */

static void stats_api_request(struct stats *st, enum path_kind pk)
{
	int64_t now = monotonic_ms();

	st->api_requests++;
	st->by_path[pk]++;
	if (!st->first_ms)
		st->first_ms = now;
	st->last_ms = now;
	while (st->len > 0 && st->ring[st->head] <= now - 60000) {
		st->head = (st->head + 1) % st->cap;
		st->len--;
	}
	if (st->len == st->cap && st->cap < RATE_RING_MAX) {
		size_t nc = st->cap ? st->cap * 2 : 1024;
		int64_t *n = malloc(nc * sizeof(*n));

		if (n) {
			for (size_t i = 0; i < st->len; i++)
				n[i] = st->ring[(st->head + i) % st->cap];
			free(st->ring);
			st->ring = n;
			st->cap = nc;
			st->head = 0;
		}
	}
	if (st->cap == 0)
		return;
	if (st->len == st->cap) { /* saturated: forget the oldest */
		st->head = (st->head + 1) % st->cap;
		st->len--;
	}
	st->ring[(st->head + st->len) % st->cap] = now;
	st->len++;
	if (st->len > st->max_per_minute)
		st->max_per_minute = st->len;
}

static void stats_reset(struct stats *st)
{
	free(st->ring);
	memset(st, 0, sizeof(*st));
}

static json_object *stats_json(const struct stats *st)
{
	json_object *o = json_object_new_object(), *bp = json_object_new_object();

	set(o, "requests", json_object_new_int64((int64_t)st->requests));
	set(o, "api_requests", json_object_new_int64((int64_t)st->api_requests));
	set(o, "auth_failures", json_object_new_int64((int64_t)st->auth_failures));
	set(o, "max_per_minute", json_object_new_int64((int64_t)st->max_per_minute));
	set(o, "rate_limited", json_object_new_int64((int64_t)st->rate_limited));
	set(o, "status_429", json_object_new_int64((int64_t)st->status_429));
	set(o, "span_ms", json_object_new_int64(st->last_ms - st->first_ms));
	for (size_t i = 0; i < P__COUNT; i++)
		set(bp, path_names[i], json_object_new_int64((int64_t)st->by_path[i]));
	set(o, "by_path", bp);
	return o;
}

/* Whether an authenticated API request fits the --rate-limit budget; it is counted when it
 * does (a refused one is not). Sets the answer's x-rate-limit-remaining and
 * x-rate-limit-reset: the ms until the oldest request of the window leaves it. Called
 * locked; always true when the limit is off. */
static bool rate_admit(struct fake *f, struct reply *rp)
{
	int64_t now = monotonic_ms();
	size_t cap = f->rate.per_minute;
	bool ok;

	if (!cap)
		return true;
	while (f->rate.len > 0 && f->rate.ring[f->rate.head] <= now - RATE_WINDOW_MS) {
		f->rate.head = (f->rate.head + 1) % cap;
		f->rate.len--;
	}
	ok = f->rate.len < cap;
	if (ok)
		f->rate.ring[(f->rate.head + f->rate.len++) % cap] = now;
	rp->remaining = (int64_t)(cap - f->rate.len);
	rp->reset_ms = f->rate.ring[f->rate.head] + RATE_WINDOW_MS - now;
	return ok;
}

/* ---------------------------------------------------------------------------------------
 * Hawk checking
 */

/* Remembers nonce; -EEXIST when it was seen within its lifetime. */
static int nonce_remember(struct fake *f, const char *nonce)
{
	int64_t now = monotonic_ms();
	size_t o = 0;

	for (size_t i = 0; i < f->nnonces; i++) {
		if (f->nonces[i].expires_ms <= now) {
			free(f->nonces[i].nonce);
			continue;
		}
		f->nonces[o++] = f->nonces[i];
	}
	f->nnonces = o;
	for (size_t i = 0; i < f->nnonces; i++)
		if (strcmp(f->nonces[i].nonce, nonce) == 0)
			return -EEXIST;
	if (f->nnonces >= NONCE_MAX)
		return -ENOSPC;
	if (fakesrv_grow((void **)&f->nonces, &f->cap_nonces, f->nnonces, sizeof(f->nonces[0])) < 0)
		return -ENOMEM;
	f->nonces[f->nnonces].nonce = strdup(nonce);
	if (!f->nonces[f->nnonces].nonce)
		return -ENOMEM;
	f->nonces[f->nnonces++].expires_ms = now + NONCE_TTL_MS;
	return 0;
}

/* Host header → host and port as the client signed them ("[::1]" keeps its brackets). */
static int split_host(const char *h, char *host, size_t size, unsigned *ret_port)
{
	const char *colon;
	uint64_t port = 80;
	size_t n;

	if (!h || !*h)
		return -EINVAL;
	colon = h[0] == '[' ? strchr(h, ']') : h;
	if (!colon)
		return -EINVAL;
	colon = strchr(colon, ':');
	n = colon ? (size_t)(colon - h) : strlen(h);
	if (n == 0 || n >= size || (colon && parse_u64(colon + 1, 1, 65535, &port) < 0))
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	*ret_port = (unsigned)port;
	return 0;
}

enum auth { AUTH_OK, AUTH_BAD, AUTH_STALE };

/* Checks the request's Authorization header; on failure *ret_why says why. Called locked
 * (the nonce cache and the skew are shared). */
static enum auth hawk_check(struct fake *f, const char *auth, const struct hawk_request *hreq,
			    const struct hawk_attrs *a, bool parsed, const char **ret_why)
{
	char mac[HAWK_B64_SHA256_LEN + 1];
	int64_t ts;
	int r;

	if (!auth) {
		*ret_why = "missing Hawk Authorization header";
		return AUTH_BAD;
	}
	if (!parsed) {
		*ret_why = "malformed Hawk Authorization header";
		return AUTH_BAD;
	}
	if (!*a->id || !*a->ts || !*a->nonce || !*a->mac) {
		*ret_why = "Hawk header lacks id, ts, nonce or mac";
		return AUTH_BAD;
	}
	if (!ct_equal(a->id, strlen(a->id), f->user_id, strlen(f->user_id))) {
		*ret_why = "unknown credentials";
		return AUTH_BAD;
	}
	if (strcmp(a->ext, f->org_id) != 0) {
		*ret_why = "ext does not name this organization";
		return AUTH_BAD;
	}
	if (parse_i64(a->ts, 0, INT64_MAX / 1000, &ts) < 0) {
		*ret_why = "bad ts";
		return AUTH_BAD;
	}
	if (!hreq->host) {
		*ret_why = "missing or bad Host header";
		return AUTH_BAD;
	}
	r = hawk_mac(f->key, "header", ts, a->nonce, hreq, a->hash, a->ext, mac);
	if (r < 0 || !ct_equal(mac, strlen(mac), a->mac, strlen(a->mac))) {
		*ret_why = "bad mac";
		return AUTH_BAD;
	}
	if (llabs(ts - fake_now_ms(f) / 1000) > TS_WINDOW_S) {
		*ret_why = "Stale timestamp";
		return AUTH_STALE;
	}
	r = nonce_remember(f, a->nonce);
	if (r < 0) {
		*ret_why = r == -EEXIST ? "replayed nonce" : "nonce cache full";
		return AUTH_BAD;
	}
	return AUTH_OK;
}

/* Server-Authorization for an answer: type "response" over the request's ts and nonce. */
static char *sign_response(const struct fake *f, const struct hawk_attrs *a,
			   const struct hawk_request *hreq, const struct reply *rp)
{
	char hash[HAWK_B64_SHA256_LEN + 1], mac[HAWK_B64_SHA256_LEN + 1];
	struct hawk_request req = *hreq;
	int64_t ts = 0;
	struct buf b;

	if (!req.host)
		req.host = "";
	parse_i64(a->ts, 0, INT64_MAX / 1000, &ts);
	if (hawk_payload_hash(rp->ctype, rp->body, rp->len, hash) < 0 ||
	    hawk_mac(f->key, "response", ts, a->nonce, &req, hash, NULL, mac) < 0)
		return NULL;
	buf_init(&b, 256);
	if (buf_printf(&b, "Hawk mac=\"%s\", hash=\"%s\"", mac, hash) < 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b);
}

/* ---------------------------------------------------------------------------------------
 * Pagination tokens: base64 of {0xfb, 0xef, offset (BE32), listing tag (BE32), check}.
 */

static uint32_t listing_tag(const char *path, const struct request *rq)
{
	static const char *const keys[] = { "status", "from", "until" };
	uint32_t h = 2166136261u;

	for (size_t k = 0; k <= ARRAY_SIZE(keys); k++) {
		const char *s = k == 0 ? path : query_get(rq, keys[k - 1]);

		for (s = s ? s : ""; *s; s++)
			h = (h ^ (unsigned char)*s) * 16777619u;
		h = (h ^ '|') * 16777619u;
	}
	return h;
}

static void token_encode(uint32_t offset, uint32_t tag, char out[static TOKEN_B64_LEN + 1])
{
	unsigned char raw[TOKEN_RAW_LEN] = { TOKEN_MAGIC0, TOKEN_MAGIC1 };

	for (int i = 0; i < 4; i++) {
		raw[2 + i] = (unsigned char)(offset >> (24 - 8 * i));
		raw[6 + i] = (unsigned char)(tag >> (24 - 8 * i));
	}
	for (int i = 0; i < TOKEN_RAW_LEN - 1; i++)
		raw[TOKEN_RAW_LEN - 1] ^= (unsigned char)(raw[i] + i);
	EVP_EncodeBlock((unsigned char *)out, raw, TOKEN_RAW_LEN);
}

static int token_decode(const char *tok, uint32_t tag, uint32_t *ret_offset)
{
	unsigned char raw[TOKEN_RAW_LEN + 2], check = 0;
	uint32_t off = 0, t = 0;

	if (strlen(tok) != TOKEN_B64_LEN ||
	    EVP_DecodeBlock(raw, (const unsigned char *)tok, TOKEN_B64_LEN) != TOKEN_RAW_LEN + 1)
		return -EINVAL;
	for (int i = 0; i < TOKEN_RAW_LEN - 1; i++)
		check ^= (unsigned char)(raw[i] + i);
	for (int i = 0; i < 4; i++) {
		off = off << 8 | raw[2 + i];
		t = t << 8 | raw[6 + i];
	}
	if (raw[0] != TOKEN_MAGIC0 || raw[1] != TOKEN_MAGIC1 || check != raw[TOKEN_RAW_LEN - 1] ||
	    t != tag || off == 0)
		return -EINVAL;
	*ret_offset = off;
	return 0;
}

/* ---------------------------------------------------------------------------------------
 * API handlers. Each fills *ret_json (owned) and *ret_collection, or answers an error.
 */

struct api_answer {
	unsigned status;
	json_object *json;
	const char *collection;
};

static int api_error(struct api_answer *ans, unsigned status, const char *msg)
{
	json_object *errs = json_object_new_array();

	json_object_array_add(errs, json_object_new_string(msg));
	ans->status = status;
	ans->json = json_object_new_object();
	set(ans->json, "errors", errs);
	ans->collection = NULL;
	return 0;
}

/* Iterates a filtered listing: match(i) says whether item i is in it, view(i) gives its
 * JSON (a new reference). Pages hold page_size items; the token carries the offset. */
typedef bool (*match_fn)(struct fake *f, const struct request *rq, size_t i);
typedef json_object *(*view_fn)(struct fake *f, const struct request *rq, size_t i);

/* Where the next page of a listing starts in the fleet's arrays, remembered per listing so
 * that walking a listing costs its length, not its length squared (which at 100,000 agents
 * made the fake, not the client, the bottleneck). Valid only for the fleet generation it
 * was taken in. */
static struct resume {
	uint32_t tag, off;
	uint64_t generation;
	size_t index;
	bool used;
} resumes[RESUME_SLOTS];
static size_t resume_next;

static size_t resume_find(const struct fake *f, uint32_t tag, uint32_t off)
{
	for (size_t k = 0; k < RESUME_SLOTS; k++)
		if (resumes[k].used && resumes[k].tag == tag && resumes[k].off == off &&
		    resumes[k].generation == f->fleet.generation)
			return resumes[k].index;
	return 0;
}

static void resume_keep(const struct fake *f, uint32_t tag, uint32_t off, size_t index)
{
	resumes[resume_next] = (struct resume){ .tag = tag,
						.off = off,
						.generation = f->fleet.generation,
						.index = index,
						.used = true };
	resume_next = (resume_next + 1) % RESUME_SLOTS;
}

static int api_paginate(struct fake *f, const struct request *rq, const char *collection, size_t n,
			size_t page, match_fn match, view_fn view, struct api_answer *ans)
{
	uint32_t tag = listing_tag(rq->path, rq), off = 0, seen = 0;
	const char *tok = query_get(rq, "token");
	json_object *arr, *o;
	bool more = false;
	char next[TOKEN_B64_LEN + 1];
	size_t start = 0;

	if (tok && *tok && token_decode(tok, tag, &off) < 0)
		return api_error(ans, 400, "unknown or garbled pagination token");
	if (off > 0 && (start = resume_find(f, tag, off)) > 0)
		seen = off;
	arr = json_object_new_array();
	for (size_t i = start; i < n; i++) {
		if (!match(f, rq, i))
			continue;
		if (seen >= off && seen < (uint64_t)off + page) {
			json_object *v = view(f, rq, i);

			if (v)
				json_object_array_add(arr, v);
		} else if (seen >= (uint64_t)off + page) {
			more = true;
			resume_keep(f, tag, off + (uint32_t)page, i);
			break;
		}
		seen++;
	}
	if (!more && off > seen) { /* the listing shrank under the client */
		json_object_put(arr);
		return api_error(ans, 400, "pagination token past the end of the listing");
	}
	o = json_object_new_object();
	set(o, collection, arr);
	if (more) {
		token_encode(off + (uint32_t)page, tag, next);
		set(o, "token", jstr(next));
	} else {
		set(o, "token", NULL);
	}
	ans->status = 200;
	ans->json = o;
	ans->collection = collection;
	return 0;
}

/* agents listing: status=online shows online agents and the dual ones' other view. */
static bool agent_match(struct fake *f, const struct request *rq, size_t i)
{
	const char *st = query_get(rq, "status");
	const struct agent *ag = &f->fleet.agents[i];

	if (!st)
		return true;
	return ag->dual || ag->online == (strcmp(st, "online") == 0);
}

static json_object *agent_view(struct fake *f, const struct request *rq, size_t i)
{
	const char *st = query_get(rq, "status");
	const struct agent *ag = &f->fleet.agents[i];

	if (st && ag->dual && ag->online != (strcmp(st, "online") == 0))
		return agent_other_view(ag);
	return json_object_get(ag->obj);
}

static bool cve_match(struct fake *f, const struct request *rq, size_t i)
{
	(void)f;
	(void)rq;
	(void)i;
	return true;
}

static json_object *cve_view(struct fake *f, const struct request *rq, size_t i)
{
	(void)rq;
	return cve_item(&f->fleet.cves[i], f->fleet.cves[i].carries_agents);
}

/* The servers listing walks one CVE's agents; the CVE is found by the path. */
static struct cve *servers_cve(struct fake *f, const struct request *rq)
{
	char id[ID_MAX];
	const char *p = rq->path + strlen("/v2/vulnerabilities/");
	const char *slash = strchr(p, '/');

	if (!slash || (size_t)(slash - p) >= sizeof(id))
		return NULL;
	memcpy(id, p, (size_t)(slash - p));
	id[slash - p] = '\0';
	return find_cve(&f->fleet, id);
}

static bool server_match(struct fake *f, const struct request *rq, size_t i)
{
	(void)f;
	(void)rq;
	(void)i;
	return true;
}

static json_object *server_view(struct fake *f, const struct request *rq, size_t i)
{
	struct cve *cv = servers_cve(f, rq);
	const char *id = json_object_get_string(json_object_array_get_idx(cv->agents, i));
	struct agent *ag = find_agent(&f->fleet, id);
	json_object *o = json_object_new_object(), *h = NULL;

	set(o, "agentId", jstr(id));
	if (ag && json_object_object_get_ex(ag->obj, "hostname", &h))
		json_object_get(h);
	set(o, "hostname", h);
	return o;
}

static int alert_window(const struct request *rq, int64_t *from, int64_t *until)
{
	const char *s;

	*from = INT64_MIN;
	*until = INT64_MAX;
	s = query_get(rq, "from");
	if (s && parse_iso8601_ms(s, from) < 0)
		return -EINVAL;
	s = query_get(rq, "until");
	if (s && parse_iso8601_ms(s, until) < 0)
		return -EINVAL;
	return 0;
}

static bool alert_match(struct fake *f, const struct request *rq, size_t i)
{
	const struct alert *al = &f->fleet.alerts[i];
	const char *st = query_get(rq, "status");
	int64_t from, until;

	alert_window(rq, &from, &until);
	if (st && al->dismissed != (strcmp(st, "dismissed") == 0))
		return false;
	return al->created_ms >= from && al->created_ms < until;
}

static json_object *alert_view(struct fake *f, const struct request *rq, size_t i)
{
	(void)rq;
	return json_object_get(f->fleet.alerts[i].obj);
}

static bool status_ok(const char *st, const char *a, const char *b)
{
	return !st || strcmp(st, a) == 0 || (b && strcmp(st, b) == 0);
}

static enum path_kind classify(const char *path)
{
	size_t n;

	if (strcmp(path, "/v2/agents") == 0)
		return P_AGENTS;
	if (strncmp(path, "/v2/agents/", 11) == 0 && path[11] && !strchr(path + 11, '/'))
		return P_AGENT;
	if (strcmp(path, "/v2/vulnerabilities") == 0)
		return P_VULNS;
	n = strlen(path);
	if (strncmp(path, "/v2/vulnerabilities/", 20) == 0 && n > 28 &&
	    strcmp(path + n - 8, "/servers") == 0 && !memchr(path + 20, '/', n - 28))
		return P_VULN_SERVERS;
	if (strcmp(path, "/v2/alerts") == 0)
		return P_ALERTS;
	if (strncmp(path, "/v2/alerts/", 11) == 0 && path[11] && !strchr(path + 11, '/'))
		return P_ALERT;
	if (strcmp(path, "/help/hawk/self-test") == 0)
		return P_SELFTEST;
	return P_OTHER;
}

/* The request router for authenticated API requests. */
static int api_route(struct fake *f, const struct request *rq, const char *method,
		     enum path_kind pk, struct api_answer *ans)
{
	const char *st = query_get(rq, "status");
	struct fleet *fl = &f->fleet;
	size_t page = f->page_size;
	int64_t from, until;

	if (rq->bad_query)
		return api_error(ans, 400, "malformed query string");
	if (strcmp(method, "GET") != 0)
		return api_error(ans, pk == P_OTHER ? 404 : 405, "method not allowed");
	switch (pk) {
	case P_AGENTS:
		if (!status_ok(st, "online", "offline"))
			return api_error(ans, 400, "status must be online or offline");
		return api_paginate(f, rq, "agents", fl->nagents, page, agent_match, agent_view,
				    ans);
	case P_AGENT: {
		struct agent *ag = find_agent(fl, rq->path + 11);

		if (!ag)
			return api_error(ans, 404, "agent not found");
		*ans = (struct api_answer){ 200, json_object_get(ag->obj), NULL };
		return 0;
	}
	case P_VULNS:
		if (!status_ok(st, "active", NULL))
			return api_error(ans, 400, "status must be active");
		return api_paginate(f, rq, "cves", fl->ncves, page, cve_match, cve_view, ans);
	case P_VULN_SERVERS: {
		struct cve *cv = servers_cve(f, rq);

		if (!cv || json_object_array_length(cv->agents) == 0)
			return api_error(ans, 404, "no servers for this vulnerability");
		page = f->servers_page_size	   ? f->servers_page_size
		       : page / SERVERS_PAGE_RATIO ? page / SERVERS_PAGE_RATIO
						   : 1;
		return api_paginate(f, rq, "servers", json_object_array_length(cv->agents), page,
				    server_match, server_view, ans);
	}
	case P_ALERTS:
		if (!status_ok(st, "active", "dismissed"))
			return api_error(ans, 400, "status must be active or dismissed");
		if (alert_window(rq, &from, &until) < 0)
			return api_error(ans, 400, "from/until must be ISO-8601");
		return api_paginate(f, rq, "alerts", fl->nalerts, page, alert_match, alert_view,
				    ans);
	case P_ALERT: {
		struct alert *al = find_alert(fl, rq->path + 11);

		if (!al)
			return api_error(ans, 404, "alert not found");
		*ans = (struct api_answer){ 200, json_object_get(al->obj), NULL };
		return 0;
	}
	case P_SELFTEST:
		ans->status = 200;
		ans->json = json_object_new_object();
		ans->collection = NULL;
		set(ans->json, "status", jstr("ok"));
		set(ans->json, "organizationId", jstr(f->org_id));
		set(ans->json, "userId", jstr(f->user_id));
		return 0;
	default:
		return api_error(ans, 404, "no such endpoint");
	}
}

static int reply_take_json(struct reply *rp, unsigned status, json_object *o)
{
	const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								  JSON_C_TO_STRING_NOSLASHESCAPE);

	rp->status = status;
	rp->ctype = "application/json";
	rp->body = s ? strdup(s) : NULL;
	rp->len = rp->body ? strlen(rp->body) : 0;
	json_object_put(o);
	return rp->body ? 0 : -ENOMEM;
}

static int reply_error(struct reply *rp, unsigned status, const char *msg)
{
	struct api_answer ans;

	api_error(&ans, status, msg);
	return reply_take_json(rp, status, ans.json);
}

/* The 429 body is not JSON, as the reference warns. */
static int reply_429(struct reply *rp)
{
	rp->status = 429;
	rp->ctype = "text/plain";
	rp->body = strdup("Too Many Requests\n");
	rp->len = rp->body ? strlen(rp->body) : 0;
	return rp->body ? 0 : -ENOMEM;
}

/* An authenticated-API request: Hawk, stats, rate limit, faults, route, serialize. Called
 * locked. */
static int handle_api(struct fake *f, const struct request *rq, const char *method,
		      const char *auth, const struct hawk_request *hreq, const struct hawk_attrs *a,
		      bool parsed, struct reply *rp)
{
	enum path_kind pk = classify(rq->path);
	struct api_answer ans = { 0 };
	struct fault_hit hit;
	const char *why = NULL;
	enum auth au;

	stats_api_request(&f->stats, pk);
	au = hawk_check(f, auth, hreq, a, parsed, &why);
	if (au != AUTH_OK) {
		f->stats.auth_failures++;
		if (au == AUTH_STALE) {
			char tsm[HAWK_B64_SHA256_LEN + 1];
			int64_t now = fake_now_ms(f) / 1000;
			struct buf b;

			buf_init(&b, 512);
			if (hawk_tsm(f->key, now, tsm) == 0 &&
			    buf_printf(&b,
				       "Hawk ts=\"%" PRId64
				       "\", tsm=\"%s\", error=\"Stale timestamp\"",
				       now, tsm) == 0)
				rp->www_auth = buf_steal(&b);
			buf_free(&b);
		}
		return reply_error(rp, 401, why);
	}
	if (!rate_admit(f, rp)) {
		f->stats.rate_limited++;
		f->stats.status_429++;
		return reply_429(rp);
	}
	faults_take(f, rq->path, rq->uri, &hit);
	rp->slow_ms = hit.slow_ms;
	switch (hit.answer) {
	case FAULT_429:
		f->stats.status_429++;
		rp->reset_ms = hit.reset_ms;
		return reply_429(rp);
	case FAULT_500:
		return reply_error(rp, 500, "injected internal server error");
	case FAULT_401:
		return reply_error(rp, 401, "injected authentication failure");
	case FAULT_403:
		return reply_error(rp, 403, "injected permission failure");
	default:
		break;
	}
	api_route(f, rq, method, pk, &ans);
	if (hit.badtype && ans.status == 200)
		ans.json = apply_badtype(ans.json, ans.collection);
	if ((hit.body || hit.dense_bytes) && ans.status == 200) {
		json_object_put(ans.json);
		rp->status = 200;
		rp->ctype = "application/json";
		if (hit.body) {
			rp->body = hit.body;
			rp->len = strlen(hit.body);
			hit.body = NULL;
		} else {
			rp->body = dense_body(ans.collection, hit.dense_bytes, &rp->len);
		}
		if (!rp->body)
			return -ENOMEM;
	} else if (reply_take_json(rp, ans.status, ans.json) < 0) {
		free(hit.body);
		return -ENOMEM;
	}
	free(hit.body);
	if (hit.truncate)
		rp->len /= 2;
	return 0;
}

/* ---------------------------------------------------------------------------------------
 * Control endpoints (/_fake/...)
 */

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

static json_object *ok_json(void)
{
	json_object *o = json_object_new_object();

	set(o, "ok", json_object_new_boolean(true));
	return o;
}

static json_object *id_json(const char *id)
{
	json_object *o = json_object_new_object();

	set(o, "id", jstr(id));
	return o;
}

static int control_fault(struct fake *f, json_object *in, struct reply *rp)
{
	const char *kind = jget_str(in, "kind"), *path = jget_str(in, "path");
	const char *body = jget_str(in, "body");
	int64_t count = 1, ms = -1, bytes = 0;
	json_object *v;
	enum fault_kind k;
	int r;

	if (kind && strcmp(kind, "clear") == 0) {
		faults_clear(f);
		return reply_take_json(rp, 200, ok_json());
	}
	if (!kind || fault_kind_parse(kind, &k) < 0)
		return reply_error(rp, 400,
				   "kind must be 429|500|slow|truncate|badtype|body|dense|401|403");
	if ((json_object_object_get_ex(in, "count", &v) && !jget_int(in, "count", &count)) ||
	    (json_object_object_get_ex(in, "ms", &v) && !jget_int(in, "ms", &ms)) ||
	    (json_object_object_get_ex(in, "bytes", &v) && !jget_int(in, "bytes", &bytes)) ||
	    (json_object_object_get_ex(in, "path", &v) && !json_object_is_type(v, json_type_null) &&
	     !path))
		return reply_error(rp, 400, "count and ms must be integers, path a string");
	if (count < 1 || count > 1000000 || ms < -1 ||
	    ms > (k == FAULT_429 ? RESET_MAX_MS : SLOW_MAX_MS) || (k == FAULT_SLOW && ms < 0))
		return reply_error(rp, 400, "count or ms out of range (slow needs ms)");
	if ((k == FAULT_BODY && !body) || (k == FAULT_DENSE && (bytes < 16 || bytes > DENSE_MAX)))
		return reply_error(rp, 400,
				   "body needs a \"body\" string, dense \"bytes\" 16..256 MiB");
	r = fault_push(f, k, (uint64_t)count, ms, path, k == FAULT_BODY ? body : NULL,
		       k == FAULT_DENSE ? (uint64_t)bytes : 0);
	if (r == -ENOSPC)
		return reply_error(rp, 409, "too many pending faults");
	if (r < 0)
		return reply_error(rp, 400, "path must start with /");
	return reply_take_json(rp, 200, ok_json());
}

static void agent_set_status(struct fake *f, struct agent *ag, bool online)
{
	char r[32];

	iso(fake_now_ms(f), r);
	ag->online = online;
	ag->dual = false;
	json_object_put(ag->stale);
	ag->stale = NULL;
	set(ag->obj, "status", jstr(online ? "online" : "offline"));
	set(ag->obj, "lastReportedAt", jstr(r));
}

static int tag_set(struct agent *ag, const char *key, const char *value)
{
	json_object *tags, *t;

	if (!json_object_object_get_ex(ag->obj, "tags", &tags) ||
	    !json_object_is_type(tags, json_type_array)) {
		tags = json_object_new_array();
		set(ag->obj, "tags", tags);
	}
	for (size_t i = 0; i < json_object_array_length(tags); i++) {
		t = json_object_array_get_idx(tags, i);
		if (jget_str(t, "key") && strcmp(jget_str(t, "key"), key) == 0) {
			set(t, "value", jstr(value));
			return 0;
		}
	}
	t = json_object_new_object();
	set(t, "source", NULL);
	set(t, "key", jstr(key));
	set(t, "value", jstr(value));
	return json_object_array_add(tags, t) < 0 ? -ENOMEM : 0;
}

/* {"op":"agent_set","id":ID[,"hostname":H][,"instanceId":I|null][,"dual":true]}: a moved
 * agent reports again now; with dual, the other status's listing keeps showing its copy from
 * before the change (reported two hours earlier), as the API does for a while. */
static int agent_set(struct fake *f, json_object *in, struct reply *rp)
{
	const char *id = jget_str(in, "id"), *host = jget_str(in, "hostname");
	json_object *inst = NULL, *dual = NULL, *before = NULL;
	bool has_inst = json_object_object_get_ex(in, "instanceId", &inst);
	struct agent *ag;
	char r[32];

	if (!id)
		return reply_error(rp, 400, "missing id");
	if (has_inst && inst && !json_object_is_type(inst, json_type_string))
		return reply_error(rp, 400, "instanceId must be a string or null");
	ag = find_agent(&f->fleet, id);
	if (!ag)
		return reply_error(rp, 404, "unknown agent");
	if (json_object_object_get_ex(in, "dual", &dual) && json_object_get_boolean(dual)) {
		if (json_object_deep_copy(ag->obj, &before, NULL) < 0)
			return -ENOMEM;
		json_object_put(ag->stale);
		ag->stale = before;
		ag->dual = true;
	}
	if (host)
		set(ag->obj, "hostname", jstr(host));
	if (has_inst)
		set(ag->obj, "instanceId", inst ? jstr(json_object_get_string(inst)) : NULL);
	iso(fake_now_ms(f), r);
	set(ag->obj, "lastReportedAt", jstr(r));
	return reply_take_json(rp, 200, ok_json());
}

static bool valid_cve_id(const char *s)
{
	size_t n = strlen(s);

	if (n < 5 || n >= ID_MAX)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '-' && *s != '.' && *s != '_')
			return false;
	return true;
}

static int control_fleet(struct fake *f, json_object *in, struct reply *rp)
{
	f->fleet.generation++;
	const char *op = jget_str(in, "op"), *id = jget_str(in, "id");
	const char *agent_id = jget_str(in, "agent"), *cve_id = jget_str(in, "cve");
	struct fleet *fl = &f->fleet;
	struct agent *ag;
	struct cve *cv;
	struct alert *al;
	int64_t n;

	if (!op)
		return reply_error(rp, 400, "missing op");
	if (strcmp(op, "agent_offline") == 0 || strcmp(op, "agent_online") == 0 ||
	    strcmp(op, "agent_remove") == 0 || strcmp(op, "tag_set") == 0) {
		const char *k = jget_str(in, "key"), *v = jget_str(in, "value");

		if (!id || (op[0] == 't' && (!k || !v)))
			return reply_error(rp, 400, "missing id (or key/value)");
		ag = find_agent(fl, id);
		if (!ag)
			return reply_error(rp, 404, "unknown agent");
		if (strcmp(op, "agent_remove") == 0)
			fleet_remove_agent(fl, ag);
		else if (op[0] == 't')
			tag_set(ag, k, v);
		else
			agent_set_status(f, ag, strcmp(op, "agent_online") == 0);
		return reply_take_json(rp, 200, ok_json());
	}
	if (strcmp(op, "agent_set") == 0)
		return agent_set(f, in, rp);
	if (strcmp(op, "agent_add") == 0) {
		if (fleet_add_agent(fl, fake_now_ms(f), false, &ag) < 0)
			return -ENOMEM;
		return reply_take_json(rp, 200, id_json(ag->id));
	}
	if (strcmp(op, "cve_add_all") == 0) {
		if (!cve_id || !valid_cve_id(cve_id))
			return reply_error(rp, 400, "need a CVE id");
		cv = find_cve(fl, cve_id);
		if (!cv) {
			uint64_t s = rng_for(fl->seed, 5, fl->ncves);

			cv = fleet_new_cve(fl, cve_id, true, &s);
			if (!cv)
				return -ENOMEM;
		}
		for (size_t i = 0; i < fl->nagents; i++)
			if (cve_add_agent(cv, fl->agents[i].id) < 0)
				return -ENOMEM;
		return reply_take_json(rp, 200, ok_json());
	}
	if (strcmp(op, "cve_add") == 0 || strcmp(op, "cve_remove") == 0) {
		if (!agent_id || !cve_id || !valid_cve_id(cve_id))
			return reply_error(rp, 400, "need agent and a CVE id");
		if (!find_agent(fl, agent_id))
			return reply_error(rp, 404, "unknown agent");
		cv = find_cve(fl, cve_id);
		if (op[4] == 'r') {
			if (!cv || !fleet_cve_drop_agent(fl, (size_t)(cv - fl->cves), agent_id))
				return reply_error(rp, 404, "agent not affected by that CVE");
			return reply_take_json(rp, 200, ok_json());
		}
		if (!cv) {
			uint64_t s = rng_for(fl->seed, 5, fl->ncves);

			cv = fleet_new_cve(fl, cve_id, true, &s);
			if (!cv)
				return -ENOMEM;
		}
		if (cve_add_agent(cv, agent_id) < 0)
			return -ENOMEM;
		return reply_take_json(rp, 200, ok_json());
	}
	if (strcmp(op, "alert_add") == 0) {
		json_object *v = NULL;

		if (!json_object_object_get_ex(in, "agent", &v))
			return reply_error(rp, 400, "missing agent (an id or null)");
		if (v && !agent_id)
			return reply_error(rp, 400, "agent must be a string or null");
		if (agent_id && !find_agent(fl, agent_id))
			return reply_error(rp, 404, "unknown agent");
		if (fleet_add_alert(fl, agent_id, !agent_id, fake_now_ms(f), false, &al) < 0)
			return -ENOMEM;
		return reply_take_json(rp, 200, id_json(al->id));
	}
	if (strcmp(op, "alert_dismiss") == 0) {
		const char *reason = jget_str(in, "reason");
		char d[32];

		if (!id)
			return reply_error(rp, 400, "missing id");
		al = find_alert(fl, id);
		if (!al)
			return reply_error(rp, 404, "unknown alert");
		iso(fake_now_ms(f), d);
		al->dismissed = true;
		set(al->obj, "isDismissed", json_object_new_boolean(true));
		set(al->obj, "dismissedAt", jstr(d));
		set(al->obj, "dismissReason", jstr(reason ? reason : "OTHER"));
		set(al->obj, "dismissedBy", jstr("ops@example.com"));
		return reply_take_json(rp, 200, ok_json());
	}
	if (strcmp(op, "skew") == 0) {
		if (!jget_int(in, "seconds", &n) || n < -10 * 365 * 86400LL ||
		    n > 10 * 365 * 86400LL)
			return reply_error(rp, 400, "seconds must be an integer");
		f->skew_s = n;
		return reply_take_json(rp, 200, ok_json());
	}
	return reply_error(rp, 400, "unknown op");
}

/* The truth: each agent once (its own status), every CVE with its agents, every alert. */
static json_object *fleet_truth(const struct fleet *fl)
{
	json_object *o = json_object_new_object(), *ag = json_object_new_array(),
		    *cv = json_object_new_array(), *al = json_object_new_array();

	for (size_t i = 0; i < fl->nagents; i++)
		json_object_array_add(ag, json_object_get(fl->agents[i].obj));
	for (size_t i = 0; i < fl->ncves; i++)
		json_object_array_add(cv, cve_item(&fl->cves[i], true));
	for (size_t i = 0; i < fl->nalerts; i++)
		json_object_array_add(al, json_object_get(fl->alerts[i].obj));
	set(o, "agents", ag);
	set(o, "cves", cv);
	set(o, "alerts", al);
	return o;
}

/* The control router. Called locked. */
static int handle_control(struct fake *f, const struct request *rq, const char *method,
			  struct reply *rp)
{
	bool get = strcmp(method, "GET") == 0, post = strcmp(method, "POST") == 0;
	json_object *in = NULL;
	int r;

	if (get && strcmp(rq->path, "/_fake/fleet") == 0)
		return reply_take_json(rp, 200, fleet_truth(&f->fleet));
	if (get && strcmp(rq->path, "/_fake/stats") == 0)
		return reply_take_json(rp, 200, stats_json(&f->stats));
	if (post && strcmp(rq->path, "/_fake/reset-stats") == 0) {
		stats_reset(&f->stats);
		return reply_take_json(rp, 200, ok_json());
	}
	if (!post || (strcmp(rq->path, "/_fake/fault") && strcmp(rq->path, "/_fake/fleet")))
		return reply_error(rp, 404, "no such control endpoint");
	if (rq->body_too_big)
		return reply_error(rp, 413, "body too large");
	in = rq->body.len ? json_tokener_parse(rq->body.data) : NULL;
	if (!in || !json_object_is_type(in, json_type_object)) {
		json_object_put(in);
		return reply_error(rp, 400, "body must be a JSON object");
	}
	r = strcmp(rq->path, "/_fake/fault") == 0 ? control_fault(f, in, rp)
						  : control_fleet(f, in, rp);
	json_object_put(in);
	return r;
}

/* ---------------------------------------------------------------------------------------
 * libmicrohttpd glue
 */

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	(void)cls;
	(void)c;
	return request_new(uri);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)cls;
	(void)c;
	(void)toe;
	request_free(*con_cls);
	*con_cls = NULL;
}

static bool is_hawk_path(const char *path)
{
	return strcmp(path, "/v2") == 0 || strncmp(path, "/v2/", 4) == 0 ||
	       strncmp(path, "/help/", 6) == 0;
}

static enum MHD_Result send_reply(struct MHD_Connection *c, struct reply *rp, const char *sa)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char num[32];

	resp = MHD_create_response_from_buffer(rp->len, rp->body, MHD_RESPMEM_MUST_COPY);
	if (!resp)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, rp->ctype);
	if (sa)
		MHD_add_response_header(resp, "Server-Authorization", sa);
	if (rp->www_auth)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, rp->www_auth);
	if (rp->reset_ms >= 0) {
		snprintf(num, sizeof(num), "%" PRId64, rp->reset_ms);
		MHD_add_response_header(resp, "x-rate-limit-reset", num);
	}
	if (rp->remaining >= 0) {
		snprintf(num, sizeof(num), "%" PRId64, rp->remaining);
		MHD_add_response_header(resp, "x-rate-limit-remaining", num);
	}
	ret = MHD_queue_response(c, rp->status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct fake *f = cls;
	struct request *rq = *con_cls;
	struct reply rp = { .reset_ms = -1, .remaining = -1, .ctype = "application/json" };
	struct hawk_attrs attrs;
	struct hawk_request hreq = { .method = method };
	const char *auth, *host_hdr;
	char host[256];
	_cleanup_free_ char *sa = NULL;
	bool hawk, parsed = false;
	enum MHD_Result ret;
	int r;

	(void)url;
	(void)version;
	if (!rq)
		return MHD_NO;
	if (!rq->started) {
		rq->started = true;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rq->body_too_big && buf_append(&rq->body, upload, *upload_size) < 0)
			rq->body_too_big = true;
		*upload_size = 0;
		return MHD_YES;
	}

	memset(&attrs, 0, sizeof(attrs));
	hawk = is_hawk_path(rq->path);
	auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	host_hdr = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_HOST);
	if (hawk) {
		parsed = auth && hawk_parse(auth, &attrs) == 0;
		if (!parsed)
			memset(&attrs, 0, sizeof(attrs));
		hreq.uri = rq->uri;
		if (split_host(host_hdr, host, sizeof(host), &hreq.port) == 0)
			hreq.host = host;
	}

	pthread_mutex_lock(&f->lock);
	if (strncmp(rq->path, "/_fake/", 7) != 0)
		f->stats.requests++;
	if (hawk) {
		r = handle_api(f, rq, method, auth, &hreq, &attrs, parsed, &rp);
		if (r == 0 && f->record && rp.status / 100 == 2 &&
		    strncmp(rq->path, "/v2/", 4) == 0) {
			fprintf(f->record, "%zu\n", rp.len);
			fwrite(rp.body, 1, rp.len, f->record);
			fflush(f->record); /* the fake is stopped by a signal */
		}
	} else if (strncmp(rq->path, "/_fake/", 7) == 0)
		r = handle_control(f, rq, method, &rp);
	else
		r = reply_error(&rp, 404, "not found");
	pthread_mutex_unlock(&f->lock);

	if (r < 0) {
		free(rp.body);
		free(rp.www_auth);
		rp = (struct reply){ .reset_ms = -1, .remaining = -1, .ctype = "application/json" };
		if (reply_error(&rp, 500, "fake: out of memory") < 0)
			return MHD_NO;
	}
	if (hawk)
		sa = sign_response(f, &attrs, &hreq, &rp);
	if (f->verbose)
		fprintf(stderr, "fake_threatstack: %s %s -> %u%s\n", method, rq->uri, rp.status,
			rp.slow_ms ? " (slow)" : "");
	if (rp.slow_ms > 0)
		fakesrv_sleep_ms(&f->stopping, rp.slow_ms);
	ret = send_reply(c, &rp, sa);
	free(rp.body);
	free(rp.www_auth);
	return ret;
}

/* ---------------------------------------------------------------------------------------
 * Set-up
 */

struct options {
	const char *listen, *port_file, *org_id, *user_id, *key_file, *tls_cert, *tls_key, *record;
	uint64_t agents, cves, alerts, seed, page_size, wide_cves, servers_page_size, rate_limit;
	int64_t skew;
	bool verbose;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: fake_threatstack [--listen 127.0.0.1:0] [--port-file FILE]\n"
		"         [--org-id ID] [--user-id ID] [--key-file FILE]\n"
		"         [--agents 50] [--cves 20] [--alerts 30] [--seed 1] [--page-size 100]\n"
		"         [--skew-seconds N] [--fault KIND:N[:MS][@PATH]]... [--verbose]\n"
		"         [--tls-cert PEM --tls-key PEM]   (serve HTTPS instead of HTTP)\n"
		"         [--wide-cves 1] [--servers-page-size N] [--record FILE]\n"
		"         [--rate-limit N]   (N API requests in any 60 s, then 429; 0: off)\n");
}

static int load_key(const char *path, char **ret)
{
	if (!path) {
		*ret = strdup(DEFAULT_KEY);
		return *ret ? 0 : -ENOMEM;
	}
	return fakesrv_read_secret(path, ret);
}

static void fake_free(struct fake *f)
{
	if (!f)
		return;
	fleet_free(&f->fleet);
	faults_clear(f);
	for (size_t i = 0; i < f->nnonces; i++)
		free(f->nonces[i].nonce);
	free(f->nonces);
	stats_reset(&f->stats);
	free(f->rate.ring);
	if (f->key) {
		explicit_bzero(f->key, strlen(f->key));
		free(f->key);
	}
	pthread_mutex_destroy(&f->lock);
	free(f);
}

static int parse_args(int argc, char **argv, struct options *o, struct fake *f)
{
	enum {
		O_LISTEN = 256,
		O_PORTFILE,
		O_ORG,
		O_USER,
		O_KEY,
		O_AGENTS,
		O_CVES,
		O_ALERTS,
		O_SEED,
		O_PAGE,
		O_SKEW,
		O_FAULT,
		O_VERBOSE,
		O_HELP,
		O_TLS_CERT,
		O_TLS_KEY,
		O_WIDE,
		O_SERVERS_PAGE,
		O_RECORD,
		O_RATE_LIMIT
	};
	static const struct option longopts[] = {
		{ "listen", required_argument, NULL, O_LISTEN },
		{ "port-file", required_argument, NULL, O_PORTFILE },
		{ "org-id", required_argument, NULL, O_ORG },
		{ "user-id", required_argument, NULL, O_USER },
		{ "key-file", required_argument, NULL, O_KEY },
		{ "agents", required_argument, NULL, O_AGENTS },
		{ "cves", required_argument, NULL, O_CVES },
		{ "alerts", required_argument, NULL, O_ALERTS },
		{ "seed", required_argument, NULL, O_SEED },
		{ "page-size", required_argument, NULL, O_PAGE },
		{ "skew-seconds", required_argument, NULL, O_SKEW },
		{ "fault", required_argument, NULL, O_FAULT },
		{ "verbose", no_argument, NULL, O_VERBOSE },
		{ "help", no_argument, NULL, O_HELP },
		{ "tls-cert", required_argument, NULL, O_TLS_CERT },
		{ "tls-key", required_argument, NULL, O_TLS_KEY },
		{ "wide-cves", required_argument, NULL, O_WIDE },
		{ "servers-page-size", required_argument, NULL, O_SERVERS_PAGE },
		{ "record", required_argument, NULL, O_RECORD },
		{ "rate-limit", required_argument, NULL, O_RATE_LIMIT },
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
		case O_ORG:
			o->org_id = optarg;
			break;
		case O_USER:
			o->user_id = optarg;
			break;
		case O_KEY:
			o->key_file = optarg;
			break;
		case O_AGENTS:
			r = parse_u64(optarg, 0, 1000000, &o->agents);
			break;
		case O_CVES:
			r = parse_u64(optarg, 0, 100000, &o->cves);
			break;
		case O_ALERTS:
			r = parse_u64(optarg, 0, 1000000, &o->alerts);
			break;
		case O_SEED:
			r = parse_u64(optarg, 0, UINT64_MAX, &o->seed);
			break;
		case O_PAGE:
			r = parse_u64(optarg, 1, 100000, &o->page_size);
			break;
		case O_SKEW:
			r = parse_i64(optarg, -315360000, 315360000, &o->skew);
			break;
		case O_FAULT:
			r = fault_parse_spec(f, optarg);
			if (r < 0)
				fprintf(stderr, "fake_threatstack: bad --fault %s\n", optarg);
			break;
		case O_VERBOSE:
			o->verbose = true;
			break;
		case O_TLS_CERT:
			o->tls_cert = optarg;
			break;
		case O_WIDE:
			r = parse_u64(optarg, 0, 100000, &o->wide_cves);
			break;
		case O_SERVERS_PAGE:
			r = parse_u64(optarg, 1, 100000, &o->servers_page_size);
			break;
		case O_RECORD:
			o->record = optarg;
			break;
		case O_RATE_LIMIT:
			r = parse_u64(optarg, 0, RATE_LIMIT_MAX, &o->rate_limit);
			break;
		case O_TLS_KEY:
			o->tls_key = optarg;
			break;
		case O_HELP:
			usage(stdout);
			exit(0);
		default:
			r = -EINVAL;
		}
	}
	if (r == 0 && (optind != argc || !o->tls_cert != !o->tls_key))
		r = -EINVAL;
	if (r == 0 && (strlen(o->org_id) > HAWK_ATTR_MAX || strlen(o->user_id) > HAWK_ATTR_MAX ||
		       !*o->org_id || !*o->user_id || !hawk_valid_value(o->org_id) ||
		       !hawk_valid_value(o->user_id)))
		r = -EINVAL;
	return r;
}

int main(int argc, char **argv)
{
	struct options o = { .listen = "127.0.0.1:0",
			     .org_id = DEFAULT_ORG,
			     .user_id = DEFAULT_USER,
			     .agents = 50,
			     .cves = 20,
			     .alerts = 30,
			     .seed = 1,
			     .page_size = 100 };
	struct fake *f = NULL;
	int ret = 1, r;
	struct MHD_OptionItem extra[] = {
		{ MHD_OPTION_URI_LOG_CALLBACK, (intptr_t)on_uri, NULL },
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
	r = load_key(o.key_file, &f->key);
	if (r < 0) {
		fprintf(stderr, "fake_threatstack: cannot read key file: %s\n", strerror(-r));
		ret = 2;
		goto out;
	}
	snprintf(f->org_id, sizeof(f->org_id), "%s", o.org_id);
	snprintf(f->user_id, sizeof(f->user_id), "%s", o.user_id);
	f->page_size = (unsigned)o.page_size;
	f->skew_s = o.skew;
	f->verbose = o.verbose;
	f->servers_page_size = (unsigned)o.servers_page_size;
	if (o.record && !(f->record = fopen(o.record, "ae"))) {
		fprintf(stderr, "fake_threatstack: --record %s: %s\n", o.record, strerror(errno));
		goto out;
	}
	if (o.rate_limit) {
		f->rate.ring = calloc(o.rate_limit, sizeof(*f->rate.ring));
		if (!f->rate.ring) {
			fprintf(stderr, "fake_threatstack: out of memory for --rate-limit\n");
			goto out;
		}
		f->rate.per_minute = (uint32_t)o.rate_limit;
	}
	if (fleet_generate(&f->fleet, o.seed, (unsigned)o.agents, (unsigned)o.cves,
			   (unsigned)o.wide_cves, (unsigned)o.alerts, fake_now_ms(f)) < 0) {
		fprintf(stderr, "fake_threatstack: out of memory generating the fleet\n");
		goto out;
	}

	/* HTTPS (TLS 1.2 and newer only) when a certificate is given: tests of the client's
	 * certificate checks and api_ca_file. */
	extra[0].ptr_value = f;
	extra[1].ptr_value = f;
	ret = fakesrv_serve(&(struct fakesrv_serve){ .name = "fake_threatstack",
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
	if (f && f->record)
		fclose(f->record);
	fake_free(f);
	return ret;
}
