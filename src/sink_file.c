/* sink_file — append changes to an NDJSON file, exactly once.
 *
 * The file is the sink's own record of what it delivered: on open, the last complete line's
 * "seq" says how far the file got, and a last line without its newline (a crash mid-write)
 * is cut off. Draining takes outbox rows after max(cursor, file's last seq) in batches,
 * writes a batch with write(2) in full, fsyncs, and only then moves the cursor in the store.
 * A crash anywhere repeats at most the cursor update, never a line.
 */
#include "tsgraphd/sink_file.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#define BATCH_ROWS	1000
#define BATCH_BYTES_MAX (256u * 1024 * 1024)
#define TAIL_MAX	(16u * 1024 * 1024) /* longest last line we look back over */

struct sink_file {
	char *name;
	char *path;
	int fd;
	int64_t file_seq; /* seq of the last complete line in the file, 0 when none */
};

static int append_json_string(struct buf *b, const char *s)
{
	json_object *o = json_object_new_string(s ? s : "");
	int r;

	if (!o)
		return -ENOMEM;
	r = buf_puts(b, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN |
								  JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return r;
}

int sink_file_format(const struct outbox_row *r, struct buf *out)
{
	static const char *const names[] = { "op", "kind", "key", "type", "class", "source" };
	const char *values[] = { r->op, r->kind, r->key, r->type, r->class, r->source };
	char at[32];
	int rc;

	format_iso8601_ms(r->created_at, at);
	rc = buf_printf(out, "{\"seq\":%" PRId64, r->seq);
	for (size_t i = 0; rc == 0 && i < ARRAY_SIZE(names); i++) {
		rc = buf_printf(out, ",\"%s\":", names[i]);
		if (rc == 0)
			rc = append_json_string(out, values[i]);
	}
	if (rc == 0)
		rc = buf_printf(out, ",\"at\":\"%s\"", at);
	/* changed and object are JSON the store wrote itself (an array, a canonical object). */
	if (rc == 0 && r->changed)
		rc = buf_printf(out, ",\"changed\":%s", r->changed);
	if (rc == 0 && r->json)
		rc = buf_printf(out, ",\"object\":%s", r->json);
	if (rc == 0)
		rc = buf_puts(out, "}\n");
	return rc;
}

/* Reads the seq of the last complete line and truncates a torn tail. */
static int recover_tail(struct sink_file *f, char *err)
{
	struct stat st;
	char *tail = NULL;
	off_t size, start;
	size_t len;
	ssize_t n;
	int r = 0;

	if (fstat(f->fd, &st) < 0)
		return -errno;
	size = st.st_size;
	f->file_seq = 0;
	if (size == 0)
		return 0;
	len = (size_t)(size < (off_t)TAIL_MAX ? size : (off_t)TAIL_MAX);
	start = size - (off_t)len;
	tail = malloc(len + 1);
	if (!tail)
		return -ENOMEM;
	n = pread(f->fd, tail, len, start);
	if (n != (ssize_t)len) {
		r = n < 0 ? -errno : -EIO;
		goto out;
	}
	tail[len] = '\0';
	if (tail[len - 1] != '\n') {
		char *nl = memrchr(tail, '\n', len);
		off_t keep = nl ? start + (nl - tail) + 1 : start;

		if (!nl && start > 0) {
			snprintf(err, SINK_FILE_ERR_MAX, "%s: last line longer than %u bytes",
				 f->path, TAIL_MAX);
			r = -EFBIG;
			goto out;
		}
		if (ftruncate(f->fd, keep) < 0 || fsync(f->fd) < 0) {
			r = -errno;
			snprintf(err, SINK_FILE_ERR_MAX, "%s: cannot cut a torn last line: %s",
				 f->path, strerror(-r));
			goto out;
		}
		len = (size_t)(keep - start);
		tail[len] = '\0';
	}
	if (len > 0) {
		char *line, *end = tail + len - 1; /* the final '\n' */
		json_object *o = NULL, *seq = NULL;

		*end = '\0';
		line = memrchr(tail, '\n', (size_t)(end - tail));
		line = line ? line + 1 : tail;
		o = json_tokener_parse(line);
		if (o && json_object_object_get_ex(o, "seq", &seq) &&
		    json_object_is_type(seq, json_type_int))
			f->file_seq = json_object_get_int64(seq);
		json_object_put(o);
		if (f->file_seq <= 0) {
			snprintf(err, SINK_FILE_ERR_MAX,
				 "%s: the last line is not a tsgraphd change (no \"seq\")",
				 f->path);
			r = -EBADMSG;
		}
	}
out:
	free(tail);
	return r;
}

int sink_file_open(const struct config_sink *cfg, struct sink_file **ret,
		   char err[static SINK_FILE_ERR_MAX])
{
	struct sink_file *f;
	int r;

	err[0] = '\0';
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->fd = -1;
	f->name = strdup(cfg->name);
	f->path = strdup(cfg->path);
	if (!f->name || !f->path) {
		r = -ENOMEM;
		goto fail;
	}
	f->fd = open(f->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (f->fd < 0) {
		r = -errno;
		snprintf(err, SINK_FILE_ERR_MAX, "%s: cannot open: %s", f->path, strerror(-r));
		goto fail;
	}
	r = recover_tail(f, err);
	if (r < 0) {
		if (!err[0])
			snprintf(err, SINK_FILE_ERR_MAX, "%s: cannot read: %s", f->path,
				 strerror(-r));
		goto fail;
	}
	*ret = f;
	return 0;
fail:
	sink_file_close(f);
	return r;
}

void sink_file_close(struct sink_file *f)
{
	if (!f)
		return;
	if (f->fd >= 0)
		close(f->fd);
	free(f->name);
	free(f->path);
	free(f);
}

struct batch {
	struct buf buf;
	int64_t last_seq;
	int64_t rows;
};

static int batch_row(const struct outbox_row *r, void *ud)
{
	struct batch *b = ud;
	int rc = sink_file_format(r, &b->buf);

	if (rc < 0)
		return rc;
	b->last_seq = r->seq;
	b->rows++;
	return 0;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int sink_file_drain(struct sink_file *f, struct store *s, int64_t *ret_lines,
		    char err[static SINK_FILE_ERR_MAX])
{
	struct batch b = { 0 };
	int64_t cursor = 0, lines = 0;
	int r;

	err[0] = '\0';
	r = store_cursor_get(s, f->name, &cursor);
	if (r < 0) {
		snprintf(err, SINK_FILE_ERR_MAX, "sink %s: cannot read its cursor: %s", f->name,
			 store_errmsg(s));
		return r;
	}
	if (f->file_seq > cursor) {
		/* The file got further than the cursor: a crash after fsync. */
		cursor = f->file_seq;
		r = store_cursor_set(s, f->name, cursor);
		if (r < 0)
			goto store_fail;
	}
	buf_init(&b.buf, BATCH_BYTES_MAX);
	for (;;) {
		off_t before;

		buf_reset(&b.buf);
		b.rows = 0;
		r = store_outbox_each(s, cursor, BATCH_ROWS, batch_row, &b);
		if (r < 0)
			goto store_fail;
		if (b.rows == 0)
			break;
		before = lseek(f->fd, 0, SEEK_END);
		r = write_all(f->fd, b.buf.data, b.buf.len);
		if (r == 0 && fsync(f->fd) < 0)
			r = -errno;
		if (r < 0) {
			/* Leave no partial line behind for the next attempt to stumble on. */
			if (before >= 0 && ftruncate(f->fd, before) == 0)
				(void)fsync(f->fd);
			snprintf(err, SINK_FILE_ERR_MAX, "%s: cannot append: %s", f->path,
				 strerror(-r));
			goto out;
		}
		f->file_seq = b.last_seq;
		cursor = b.last_seq;
		lines += b.rows;
		r = store_cursor_set(s, f->name, cursor);
		if (r < 0)
			goto store_fail;
	}
	*ret_lines = lines;
	r = 0;
	goto out;
store_fail:
	snprintf(err, SINK_FILE_ERR_MAX, "sink %s: store: %s", f->name, store_errmsg(s));
out:
	buf_free(&b.buf);
	return r;
}
