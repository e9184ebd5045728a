/* graph — Threat Stack objects → JupiterOne graph objects (entities and relationships).
 *
 * Keys, types, classes and properties follow ../shared/reference/jupiterone.md exactly, so
 * an existing JupiterOne account keeps its history. Each builder hands every graph object
 * it makes to an emit callback, one at a time; the object (a json-c object with flat
 * primitive properties, plus "_mapping" for mapped relationships) belongs to the builder
 * and is valid only during the callback: a callback that keeps it takes a reference
 * (json_object_get). A non-zero return from the callback stops the builder and is
 * returned.
 *
 * Pure: no I/O, no logging, any thread.
 */
#ifndef TSGRAPHD_GRAPH_H
#define TSGRAPHD_GRAPH_H

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "tsgraphd/tsjson.h"

/* Room for a _type name with its NUL: those graph.c emits are at most 42 bytes. */
#define GRAPH_TYPE_MAX 64

enum graph_kind {
	GRAPH_ENTITY,
	GRAPH_RELATIONSHIP,
};

struct graph_object {
	enum graph_kind kind;
	json_object *obj;
	const char *key;      /* _key */
	const char *type;     /* _type */
	const char *class;    /* _class */
	const char *from_key; /* relationships: _fromEntityKey or _mapping.sourceEntityKey */
	const char *to_key; /* explicit relationships: _toEntityKey; mapped: target _key or NULL */
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
