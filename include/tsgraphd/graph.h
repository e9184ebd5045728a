/* graph — Threat Stack objects → JupiterOne graph objects (entities and relationships).
 *
 * Keys, types, classes and properties follow ../shared/reference/jupiterone.md exactly, so
 * an existing JupiterOne account keeps its history. Each builder hands every graph object
 * it makes to an emit callback, one at a time, as its canonical JSON text (canon.h: the
 * bytes canon_serialize would write for the same object, so the text is hashed as it is)
 * with the members the store indexes beside it. The text lives in opt->out (or a buffer of
 * the builder's own) and every string of the graph_object in the builder's memory: all are
 * valid only during the callback, which copies what it keeps. A non-zero return from the
 * callback stops the builder and is returned.
 *
 * Pure: no I/O, no logging, any thread.
 */
#ifndef TSGRAPHD_GRAPH_H
#define TSGRAPHD_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include "tsgraphd/tsjson.h"
#include "tsgraphd/util.h"

/* Room for a _type name with its NUL: those graph.c emits are at most 42 bytes. */
#define GRAPH_TYPE_MAX 64

/* How an agent's and an alert's _key begin (the id follows). */
#define GRAPH_AGENT_KEY_PREFIX "threatstack:agent:"
#define GRAPH_ALERT_KEY_PREFIX "threatstack:alert:"

enum graph_kind {
	GRAPH_ENTITY,
	GRAPH_RELATIONSHIP,
};

struct graph_object {
	enum graph_kind kind;
	const char *json; /* canonical JSON of the object, NUL-terminated */
	size_t json_len;
	const char *key;      /* _key */
	const char *type;     /* _type */
	const char *class;    /* _class */
	const char *from_key; /* relationships: _fromEntityKey or _mapping.sourceEntityKey */
	const char *to_key; /* explicit relationships: _toEntityKey; mapped: target _key or NULL */
	bool mapped;	    /* a mapped relationship ("_mapping"): its target is not ours */
	/* The agent or alert entity this object belongs to (its own key for the entity), NULL
	 * for the account and vulnerability findings: a refresh of that agent or alert replaces
	 * exactly the objects it owns. A builder emits the owner entity first. */
	const char *owner;
	/* When one snapshot yields the same _key twice, the object with the larger rank wins:
	 * an agent in both the online and the offline listing ranks by lastReportedAt, an alert
	 * in both the active and the dismissed listing ranks 1 when dismissed, 0 when open. */
	int64_t rank;
};

typedef int (*graph_emit_fn)(const struct graph_object *o, void *userdata);

struct graph_options {
	const char *org_id;
	const char *org_name;
	const char *web_url;	      /* for webLink, e.g. "https://app.threatstack.com" */
	bool create_host_placeholder; /* PROTECTS a Host by hostname: create it when no match */
	/* Where the canonical text is written, reused from object to object (its maximum bounds
	 * an object: -E2BIG); NULL: each builder call uses a buffer of its own. */
	struct buf *out;
};

/* The threatstack_account entity. */
int graph_account(const struct graph_options *opt, graph_emit_fn emit, void *userdata);
/* threatstack_agent, account HAS agent, and agent PROTECTS aws_instance | Host. */
int graph_agent(const struct graph_options *opt, const struct ts_agent *a, graph_emit_fn emit,
		void *userdata);
/* agent IDENTIFIED cve (mapped) for one agent of a vulnerability. */
int graph_vuln_agent(const struct graph_options *opt, const struct ts_vuln *v, const char *agent_id,
		     graph_emit_fn emit, void *userdata);
/* threatstack_alert, and agent IDENTIFIED alert (or account HAS alert when it has no agent). */
int graph_alert(const struct graph_options *opt, const struct ts_alert *al, graph_emit_fn emit,
		void *userdata);
/* First DNS label, lower case, spaces → '-', then only [a-z0-9-] kept. Caller frees. */
char *graph_normalize_hostname(const char *hostname);

#endif
