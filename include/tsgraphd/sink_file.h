/* sink_file — the NDJSON change log: each outbox row as one line, appended and fsync'd,
 * with the sink's cursor kept in the store.
 *
 * Delivery is exactly-once into the file, without gaps: before writing, the sink reads the
 * seq of the file's last complete line and skips what the file already holds (a crash
 * between fsync and the cursor update), cuts off a torn last line (a crash mid-write), and
 * writes again the lines a file behind its cursor lost, from the outbox — or refuses
 * (-ESTALE) when the outbox no longer holds them. Every line is valid UTF-8. The line format
 * and these rules are documented in docs/change-log.md.
 *
 * Ownership: a struct sink_file owns its file descriptor; sink_file_close() accepts NULL.
 * Threads: one thread per sink, with its own struct store.
 */
#ifndef TSGRAPHD_SINK_FILE_H
#define TSGRAPHD_SINK_FILE_H

#include <stdint.h>

#include "tsgraphd/config.h"
#include "tsgraphd/sink.h"
#include "tsgraphd/store.h"
#include "tsgraphd/util.h"

struct sink_file;

/* The file sink behind sink.h. */
extern const struct sink_ops sink_file_ops;

int sink_file_open(const struct config_sink *cfg, struct sink_file **ret,
		   char err[static SINK_ERR_MAX]);
void sink_file_close(struct sink_file *f);
/* Delivers every outbox row after the sink's cursor; *ret_lines is how many it appended. */
int sink_file_drain(struct sink_file *f, struct store *s, int64_t *ret_lines,
		    char err[static SINK_ERR_MAX]);
/* For `status`: where the file stands against the sink's cursor, read-only (no lock, nothing
 * cut or written). note is empty when all is well, else one line for a person: lines lost
 * (and whether the next sync can write them again), a crash to catch up on, a file that is
 * not a change log. Returns a negative errno only when the store cannot be read. */
int sink_file_inspect(const struct config_sink *cfg, struct store *s,
		      char note[static SINK_ERR_MAX]);
/* One change as its NDJSON line, newline included, appended to out. */
int sink_file_format(const struct outbox_row *r, struct buf *out);

#endif
