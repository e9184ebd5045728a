/* export — the stored graph, written out whole: as JupiterOne-shaped JSON, as change-log lines
 * a fresh consumer starts from, or as Graphviz DOT for a picture.
 *
 * Every format is read in one read transaction of the caller's store (store_read_begin()), so
 * it is one consistent graph even while `tsgraphd run` commits beside it, and it is the graph
 * as of one outbox seq (*ret_seq): every change up to it is in the export, none after it. It
 * takes no write lock and writes nothing to the store; a read-only store is enough.
 *
 * Formats (docs/graph-model.md, docs/change-log.md):
 *   EXPORT_JSON    {"entities":[...],"relationships":[...]}, one object a line, each byte for
 *                  byte the stored canonical JSON the JupiterOne sink uploads; entities by
 *                  _key, then relationships by _key.
 *   EXPORT_NDJSON  one change-log line (sink_file_format()) per object, op "create", source
 *                  "export", every line with seq = *ret_seq and at = opt->now; entities then
 *                  relationships, each by _key (the order the file sink writes creates in).
 *   EXPORT_DOT     a digraph: one node per entity and per distinct target of a mapped
 *                  relationship (CVE, EC2 instance, host), labelled "<displayName>\n<_class>";
 *                  one edge per relationship, labelled by its _class. Every ID and label is a
 *                  double-quoted DOT string: '"' and '\' are escaped, a newline is "\n", a
 *                  carriage return "\r", other control bytes "\u00XX"; UTF-8 passes as it is.
 *
 * Memory is bounded by one object, not the graph: rows are streamed from SQLite statements and
 * written to out as they come (the distinct mapped targets are gathered in SQLite's temp
 * store).
 *
 * Errors: a negative errno with one line for a person in err: -EBADMSG for a stored object that
 * is not what graph.c writes, the store's errno, the stream's errno (-EIO when it has none),
 * -ECANCELED when *opt->stop became non-zero (checked once an object).
 *
 * Ownership: out, the store and opt are the caller's. Threads: the caller's, which owns the
 * store. Pure: no logging.
 */
#ifndef TSGRAPHD_EXPORT_H
#define TSGRAPHD_EXPORT_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "tsgraphd/store.h"

#define EXPORT_ERR_MAX 512

enum export_format {
	EXPORT_JSON,
	EXPORT_NDJSON,
	EXPORT_DOT,
};

struct export_options {
	enum export_format format;
	int64_t now;		     /* ms: the "at" of ndjson lines */
	volatile sig_atomic_t *stop; /* may be NULL; non-zero stops the export (-ECANCELED) */
};

struct export_counts {
	int64_t seq; /* the last outbox seq the export includes (0 before the first change) */
	int64_t entities, relationships;
	int64_t targets; /* DOT: nodes of mapped relationships' targets */
};

/* "json" | "ndjson" | "dot" → the format; -EINVAL otherwise. */
int export_format_from_string(const char *s, enum export_format *ret);
const char *export_format_to_string(enum export_format f);
/* Writes the stored graph to out (flushed; not closed). ret may be NULL. */
int export_write(struct store *s, const struct export_options *opt, FILE *out,
		 struct export_counts *ret, char err[static EXPORT_ERR_MAX]);
/* export_write() into path, never half-written: into a temporary file beside it (mode 0640
 * less the umask), fsync'd, renamed over path, its directory fsync'd. On a failure before the
 * rename path is untouched and the temporary file removed; a failure to sync the directory
 * after it is reported, with the new file in place. */
int export_to_file(struct store *s, const struct export_options *opt, const char *path,
		   struct export_counts *ret, char err[static EXPORT_ERR_MAX]);

#endif
