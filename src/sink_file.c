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
#include <sys/file.h>
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
	char *file_key;	  /* and that line's key and op, to check the store agrees */
	char *file_op;
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

/* Reads one change line: its seq, key and op. -EBADMSG when it is not a tsgraphd change. */
static int parse_line(struct sink_file *f, const char *line)
{
	json_object *o = json_tokener_parse(line), *seq, *key, *op;
	int r = -EBADMSG;

	if (o && json_object_object_get_ex(o, "seq", &seq) &&
	    json_object_is_type(seq, json_type_int) && json_object_get_int64(seq) > 0 &&
	    json_object_object_get_ex(o, "key", &key) &&
	    json_object_is_type(key, json_type_string) && json_object_object_get_ex(o, "op", &op) &&
	    json_object_is_type(op, json_type_string)) {
		free(f->file_key);
		free(f->file_op);
		f->file_key = strdup(json_object_get_string(key));
		f->file_op = strdup(json_object_get_string(op));
		f->file_seq = json_object_get_int64(seq);
		r = f->file_key && f->file_op ? 0 : -ENOMEM;
	}
	json_object_put(o);
	return r;
}

/* Finds how far the file got (the seq of its last complete line) and cuts a torn last line
 * (a crash mid-write) — but only once the file is known to be a change log: a file that is
 * not ours is refused before anything in it is touched. */
static int recover_tail(struct sink_file *f, char *err)
{
	struct stat st;
	char *tail = NULL, *nl, *line;
	size_t len, complete;
	off_t start;
	ssize_t n;
	int r = 0;

	if (fstat(f->fd, &st) < 0)
		return -errno;
	f->file_seq = 0;
	if (st.st_size == 0)
		return 0;
	len = (size_t)(st.st_size < (off_t)TAIL_MAX ? st.st_size : (off_t)TAIL_MAX);
	start = st.st_size - (off_t)len;
	tail = malloc(len + 1);
	if (!tail)
		return -ENOMEM;
	n = pread(f->fd, tail, len, start);
	if (n != (ssize_t)len) {
		r = n < 0 ? -errno : -EIO;
		goto out;
	}
	tail[len] = '\0';
	/* complete: the bytes up to and including the last newline. */
	nl = memrchr(tail, '\n', len);
	complete = nl ? (size_t)(nl - tail) + 1 : 0;
	if (complete > 0) {
		tail[complete - 1] = '\0';
		line = memrchr(tail, '\n', complete - 1);
		line = line ? line + 1 : tail;
		if (!line[0] || (line == tail && start > 0)) {
			snprintf(err, SINK_FILE_ERR_MAX,
				 "%s: last line empty or longer than %u bytes", f->path, TAIL_MAX);
			r = -EBADMSG;
			goto out;
		}
		r = parse_line(f, line);
	} else {
		/* Only a torn first line: ours if it starts like one. */
		r = start == 0 && strncmp(tail, "{\"seq\":", 7) == 0 ? 0 : -EBADMSG;
	}
	if (r == -EBADMSG)
		snprintf(err, SINK_FILE_ERR_MAX,
			 "%s: not a tsgraphd change log (its last line is not a change); refusing "
			 "to write to it",
			 f->path);
	if (r < 0 || complete == len)
		goto out;
	if (ftruncate(f->fd, start + (off_t)complete) < 0 || fsync(f->fd) < 0) {
		r = -errno;
		snprintf(err, SINK_FILE_ERR_MAX, "%s: cannot cut a torn last line: %s", f->path,
			 strerror(-r));
	}
out:
	free(tail);
	return r;
}

/* Makes a newly created file's directory entry durable. */
static int fsync_parent(const char *path)
{
	_cleanup_free_ char *dir = strdup(path);
	_cleanup_close_ int fd = -1;
	char *slash;

	if (!dir)
		return -ENOMEM;
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	fd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		return -errno;
	return 0;
}

int sink_file_open(const struct config_sink *cfg, struct sink_file **ret,
		   char err[static SINK_FILE_ERR_MAX])
{
	struct sink_file *f;
	bool created;
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
	created = access(f->path, F_OK) < 0;
	f->fd = open(f->path, O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	if (f->fd < 0) {
		r = -errno;
		snprintf(err, SINK_FILE_ERR_MAX, "%s: cannot open: %s", f->path, strerror(-r));
		goto fail;
	}
	/* One writer per change log, or two processes would append the same changes. */
	if (flock(f->fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(err, SINK_FILE_ERR_MAX, "%s: %s", f->path,
			 r == -EBUSY ? "another process is delivering to it" : strerror(-r));
		goto fail;
	}
	if (created && (r = fsync_parent(f->path)) < 0) {
		snprintf(err, SINK_FILE_ERR_MAX, "%s: cannot sync its directory: %s", f->path,
			 strerror(-r));
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
	free(f->file_key);
	free(f->file_op);
	free(f);
}

struct batch {
	struct buf buf;
	int64_t last_seq;
	char *last_key, *last_op;
	int64_t rows;
};

static int batch_row(const struct outbox_row *r, void *ud)
{
	struct batch *b = ud;
	int rc = sink_file_format(r, &b->buf);

	if (rc < 0)
		return rc;
	free(b->last_key);
	free(b->last_op);
	b->last_key = strdup(r->key);
	b->last_op = strdup(r->op);
	if (!b->last_key || !b->last_op)
		return -ENOMEM;
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

struct outbox_row_match {
	int64_t seq;
	const char *key, *op;
	bool found;
};

static int row_matches(const struct outbox_row *r, void *ud)
{
	struct outbox_row_match *m = ud;

	m->found = r->seq == m->seq && m->key && m->op && strcmp(r->key, m->key) == 0 &&
		   strcmp(r->op, m->op) == 0;
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
		/* The file got further than the cursor: a crash after fsync — provided the store
		 * holds that very change. Otherwise the store was restored or replaced and the
		 * file's numbers mean other changes: skipping to them would lose the new ones. */
		struct outbox_row_match m = { .seq = f->file_seq,
					      .key = f->file_key,
					      .op = f->file_op };

		r = store_outbox_each(s, f->file_seq - 1, 1, row_matches, &m);
		if (r < 0)
			goto store_fail;
		if (!m.found) {
			snprintf(err, SINK_FILE_ERR_MAX,
				 "%s: the change log is ahead of the store (its last change, seq "
				 "%" PRId64 ", is not the store's); the store was restored or "
				 "replaced: move the "
				 "log aside to start a new one",
				 f->path, f->file_seq);
			r = -ESTALE;
			goto out;
		}
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
		free(f->file_key);
		free(f->file_op);
		f->file_key = b.last_key;
		f->file_op = b.last_op;
		b.last_key = b.last_op = NULL;
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
	free(b.last_key);
	free(b.last_op);
	return r;
}
