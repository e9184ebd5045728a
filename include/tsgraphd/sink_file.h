/* sink_file — the NDJSON change log: each outbox row as one line, appended and fsync'd,
 * with the sink's cursor kept in the store.
 *
 * Delivery is exactly-once into the file: before writing, the sink reads the seq of the
 * file's last complete line and skips what the file already holds (a crash between fsync
 * and the cursor update), and cuts off a torn last line (a crash mid-write). The line format
 * is documented in docs/change-log.md.
 *
 * Ownership: a struct sink_file owns its file descriptor; sink_file_close() accepts NULL.
 * Threads: one thread per sink, with its own struct store.
 */
#ifndef TSGRAPHD_SINK_FILE_H
#define TSGRAPHD_SINK_FILE_H

#include <stdint.h>

#include "tsgraphd/config.h"
#include "tsgraphd/store.h"
#include "tsgraphd/util.h"

#define SINK_FILE_ERR_MAX 512

struct sink_file;

int sink_file_open(const struct config_sink *cfg, struct sink_file **ret,
		   char err[static SINK_FILE_ERR_MAX]);
void sink_file_close(struct sink_file *f);
/* Delivers every outbox row after the sink's cursor; *ret_lines is how many it appended. */
int sink_file_drain(struct sink_file *f, struct store *s, int64_t *ret_lines,
		    char err[static SINK_FILE_ERR_MAX]);
/* One change as its NDJSON line, newline included, appended to out. */
int sink_file_format(const struct outbox_row *r, struct buf *out);

#endif
