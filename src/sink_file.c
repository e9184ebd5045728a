/* sink_file — append changes to an NDJSON file, exactly once and without gaps.
 *
 * The file is the sink's own record of what it delivered: on open, the last complete line's
 * "seq" says how far the file got (found by reading backwards from the end only as far as
 * that line's start), and a last line without its newline (a crash mid-write) is cut off.
 * Draining first places the file against the sink's cursor in the store (plan_position):
 * a file ahead of the cursor had a crash after fsync; a file behind it lost lines, which are
 * written again from the outbox when it still holds every one of them, and otherwise the
 * sink refuses rather than leave a silent gap; an empty file is a new (rotated) log and
 * continues after the cursor. Then it takes outbox rows in batches, writes a batch with
 * write(2) in full, fsyncs, and only then moves the cursor. A crash anywhere repeats at most
 * the cursor update, never a line (test builds crash there on purpose: testhook.h's
 * "deliver"). Every string goes out through canon's string writer, so
 * each line is valid UTF-8 whatever bytes the store holds.
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

#include "tsgraphd/canon.h"
#include "tsgraphd/log.h"
#include "tsgraphd/testhook.h"

#define BATCH_ROWS	1000
#define BATCH_BYTES_MAX (256u * 1024 * 1024)
#define LINE_MAX_BYTES	(16u * 1024 * 1024) /* longest last line we look back over */
#define TAIL_FIRST	4096u		    /* the first look back; doubled until a line fits */
#define KEY_TEXT_MAX	(64u * 1024)	    /* a key as JSON text, for comparing */

struct sink_file {
	char *name;
	char *path;
	int fd;
	int64_t file_seq; /* seq of the last complete line in the file, 0 when none */
	char *file_key;	  /* and that line's key and op, to check the store agrees */
	char *file_op;
};

/* s as a JSON string, through canon's writer: valid UTF-8 whatever bytes s holds. */
static int append_json_string(struct buf *b, const char *s)
{
	return canon_write_string(b, s ? s : "", s ? strlen(s) : 0);
}

/* A key as the JSON text a line carries for it, malloc'd: how the file's keys and the
 * store's are compared, so a key the writer had to repair still matches its line. */
static int key_text(const char *key, char **ret)
{
	struct buf b;
	int r;

	buf_init(&b, KEY_TEXT_MAX);
	r = append_json_string(&b, key);
	if (r < 0) {
		buf_free(&b);
		return r;
	}
	*ret = buf_steal(&b);
	return *ret ? 0 : -ENOMEM;
}

int sink_file_format(const struct outbox_row *r, struct buf *out)
{
	static const char *const names[] = { ",\"op\":",   ",\"kind\":",  ",\"key\":",
					     ",\"type\":", ",\"class\":", ",\"source\":" };
	const char *values[] = { r->op, r->kind, r->key, r->type, r->class, r->source };
	char at[ISO8601_MS_MAX];
	int rc;

	format_iso8601_ms(r->created_at, at);
	rc = buf_puts(out, "{\"seq\":");
	if (rc == 0)
		rc = canon_write_int64(out, r->seq);
	for (size_t i = 0; rc == 0 && i < ARRAY_SIZE(names); i++) {
		rc = buf_puts(out, names[i]);
		if (rc == 0)
			rc = append_json_string(out, values[i]);
	}
	if (rc == 0)
		rc = buf_puts(out, ",\"at\":\"");
	if (rc == 0)
		rc = buf_puts(out, at);
	/* changed and object are JSON the store wrote itself (an array, a canonical object). */
	if (rc == 0 && r->changed) {
		rc = buf_puts(out, "\",\"changed\":");
		if (rc == 0)
			rc = buf_puts(out, r->changed);
	} else if (rc == 0) {
		rc = buf_puts(out, "\"");
	}
	if (rc == 0 && r->json) {
		rc = buf_puts(out, ",\"object\":");
		if (rc == 0)
			rc = buf_puts(out, r->json);
	}
	if (rc == 0)
		rc = buf_puts(out, "}\n");
	return rc;
}

/* Reads one change line: its seq, key (as JSON text) and op. -EBADMSG when it is not a
 * tsgraphd change. */
static int parse_line(struct sink_file *f, const char *line)
{
	json_object *o = json_tokener_parse(line), *seq, *key, *op;
	char *k = NULL, *p = NULL;
	int r = -EBADMSG;

	if (o && json_object_object_get_ex(o, "seq", &seq) &&
	    json_object_is_type(seq, json_type_int) && json_object_get_int64(seq) > 0 &&
	    json_object_object_get_ex(o, "key", &key) &&
	    json_object_is_type(key, json_type_string) && json_object_object_get_ex(o, "op", &op) &&
	    json_object_is_type(op, json_type_string)) {
		r = key_text(json_object_get_string(key), &k);
		if (r == 0 && !(p = strdup(json_object_get_string(op))))
			r = -ENOMEM;
		if (r == 0) {
			free(f->file_key);
			free(f->file_op);
			f->file_key = k;
			f->file_op = p;
			f->file_seq = json_object_get_int64(seq);
			k = p = NULL;
		}
	}
	free(k);
	free(p);
	json_object_put(o);
	return r;
}

/* The file's end: *ret_complete is how many bytes end with its last newline (what follows is
 * a torn line), and *ret_line its last complete line, NUL-terminated and malloc'd, or NULL
 * when the file holds no newline. Reads backwards from the end, doubling the look-back from
 * TAIL_FIRST, only until the newline before the last line is in view: a long log costs a
 * few KiB, not a tail of it. A last line (with any torn bytes after it) over LINE_MAX_BYTES
 * is -EFBIG; the first bytes of a file without a newline come back in head (up to 7 of
 * them) to tell whose it is. */
static int read_end(int fd, off_t size, off_t *ret_complete, char **ret_line, char head[8])
{
	_cleanup_free_ char *tail = NULL;
	size_t want = TAIL_FIRST;

	for (;;) {
		size_t len = (off_t)want < size ? want : (size_t)size;
		off_t start = size - (off_t)len;
		char *nl, *prev, *line, *grown;
		ssize_t n;

		grown = realloc(tail, len + 1);
		if (!grown)
			return -ENOMEM;
		tail = grown;
		n = pread(fd, tail, len, start);
		if (n != (ssize_t)len)
			return n < 0 ? -errno : -EIO;
		tail[len] = '\0';
		nl = memrchr(tail, '\n', len);
		if (nl) {
			prev = memrchr(tail, '\n', (size_t)(nl - tail));
			if (prev || start == 0) {
				line = prev ? prev + 1 : tail;
				*nl = '\0';
				*ret_complete = start + (nl - tail) + 1;
				*ret_line = strdup(line);
				return *ret_line ? 0 : -ENOMEM;
			}
		} else if (start == 0) {
			snprintf(head, 8, "%.7s", tail);
			*ret_complete = 0;
			*ret_line = NULL;
			return 0;
		}
		if (want >= LINE_MAX_BYTES)
			return -EFBIG;
		want = want * 2 < LINE_MAX_BYTES ? want * 2 : LINE_MAX_BYTES;
	}
}

/* Finds how far the file got (the seq of its last complete line) and cuts a torn last line
 * (a crash mid-write) — but only once the file is known to be a change log: a file that is
 * not ours is refused before anything in it is touched. With cut false (status), nothing is
 * cut. */
static int recover_tail(struct sink_file *f, bool cut, char *err)
{
	_cleanup_free_ char *line = NULL;
	char head[8] = "";
	off_t complete = 0;
	struct stat st;
	int r;

	if (fstat(f->fd, &st) < 0)
		return -errno;
	f->file_seq = 0;
	if (st.st_size == 0)
		return 0;
	r = read_end(f->fd, st.st_size, &complete, &line, head);
	if (r == -EFBIG) {
		snprintf(err, SINK_ERR_MAX, "%s: last line longer than %u bytes", f->path,
			 LINE_MAX_BYTES);
		return -EBADMSG;
	}
	if (r < 0)
		return r;
	if (line)
		r = line[0] ? parse_line(f, line) : -EBADMSG;
	else
		/* Only a torn first line: ours if it starts like one. */
		r = strcmp(head, "{\"seq\":") == 0 ? 0 : -EBADMSG;
	if (r == -EBADMSG)
		snprintf(err, SINK_ERR_MAX,
			 "%s: not a tsgraphd change log (its last line is not a change); refusing "
			 "to write to it",
			 f->path);
	if (r < 0 || complete == st.st_size || !cut)
		return r;
	if (ftruncate(f->fd, complete) < 0 || fsync(f->fd) < 0) {
		r = -errno;
		snprintf(err, SINK_ERR_MAX, "%s: cannot cut a torn last line: %s", f->path,
			 strerror(-r));
	}
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
		   char err[static SINK_ERR_MAX])
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
		snprintf(err, SINK_ERR_MAX, "%s: cannot open: %s", f->path, strerror(-r));
		goto fail;
	}
	/* One writer per change log, or two processes would append the same changes. */
	if (flock(f->fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EBUSY : -errno;
		snprintf(err, SINK_ERR_MAX, "%s: %s", f->path,
			 r == -EBUSY ? "another process is delivering to it" : strerror(-r));
		goto fail;
	}
	if (created && (r = fsync_parent(f->path)) < 0) {
		snprintf(err, SINK_ERR_MAX, "%s: cannot sync its directory: %s", f->path,
			 strerror(-r));
		goto fail;
	}
	r = recover_tail(f, true, err);
	if (r < 0) {
		if (!err[0])
			snprintf(err, SINK_ERR_MAX, "%s: cannot read: %s", f->path, strerror(-r));
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
	b->last_op = NULL;
	rc = key_text(r->key, &b->last_key);
	if (rc < 0) {
		b->last_key = NULL;
		return rc;
	}
	b->last_op = strdup(r->op);
	if (!b->last_op)
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
	const char *key, *op; /* key as JSON text (key_text) */
	bool found;
	int error;
};

static int row_matches(const struct outbox_row *r, void *ud)
{
	struct outbox_row_match *m = ud;
	_cleanup_free_ char *key = NULL;

	m->found = false;
	if (r->seq != m->seq || !m->key || !m->op || strcmp(r->op, m->op) != 0)
		return 0;
	m->error = key_text(r->key, &key);
	m->found = m->error == 0 && strcmp(key, m->key) == 0;
	return m->error;
}

/* Whether the store's outbox holds the very change the file's last line is (seq, key, op). */
static int store_has_file_seq(struct sink_file *f, struct store *s, bool *ret)
{
	struct outbox_row_match m = { .seq = f->file_seq, .key = f->file_key, .op = f->file_op };
	int r = store_outbox_each(s, f->file_seq - 1, 1, row_matches, &m);

	if (r < 0)
		return m.error < 0 ? m.error : r;
	*ret = m.found;
	return 0;
}

/* Where the file stands against the cursor, and so after which seq to deliver (*ret_after).
 * Writes nothing. -ESTALE with the reason in err when the sink must refuse; *ret_missing is
 * how many lines the file lost that will be written again (0 when none). */
static int plan_position(struct sink_file *f, struct store *s, int64_t cursor, int64_t *ret_after,
			 int64_t *ret_missing, char *err)
{
	int64_t held = 0;
	bool same = false;
	int r;

	*ret_missing = 0;
	if (f->file_seq == cursor || (f->file_seq == 0 && cursor > 0)) {
		/* In step, or an empty file: a new log (rotation) that continues after the cursor. */
		*ret_after = cursor;
		return 0;
	}
	r = store_has_file_seq(f, s, &same);
	if (r < 0)
		return r;
	if (f->file_seq > cursor) {
		/* The file got further than the cursor: a crash after fsync — provided the store
		 * holds that very change. Otherwise the store was restored or replaced and the
		 * file's numbers mean other changes: skipping to them would lose the new ones. */
		if (!same) {
			snprintf(err, SINK_ERR_MAX,
				 "%s: the change log is ahead of the store (its last change, seq "
				 "%" PRId64 ", is not the store's); the store was restored or "
				 "replaced: move the log aside to start a new one",
				 f->path, f->file_seq);
			return -ESTALE;
		}
		*ret_after = f->file_seq;
		return 0;
	}
	/* The file is behind the cursor: lines it had were lost (cut, restored from an older
	 * copy). Appending after the cursor would leave a silent gap; write them again, if the
	 * outbox holds this very last line and every change after it up to the cursor. */
	r = store_outbox_count(s, f->file_seq, cursor, &held);
	if (r < 0)
		return r;
	if (!same || held != cursor - f->file_seq) {
		snprintf(err, SINK_ERR_MAX,
			 "%s: the change log is behind its cursor: it ends at seq %" PRId64
			 " but changes up to seq %" PRId64 " were written to it, and the outbox "
			 "%s; refusing to leave a gap: restore the lost lines, or move the log "
			 "aside to start a new one after seq %" PRId64,
			 f->path, f->file_seq, cursor,
			 !same ? "does not hold its last change any more"
			       : "no longer holds all the lost changes",
			 cursor);
		return -ESTALE;
	}
	*ret_after = f->file_seq;
	*ret_missing = cursor - f->file_seq;
	return 0;
}

int sink_file_drain(struct sink_file *f, struct store *s, int64_t *ret_lines,
		    char err[static SINK_ERR_MAX])
{
	struct batch b = { 0 };
	int64_t cursor = 0, after = 0, missing = 0, lines = 0;
	int r;

	err[0] = '\0';
	r = store_cursor_get(s, f->name, &cursor);
	if (r < 0) {
		snprintf(err, SINK_ERR_MAX, "sink %s: cannot read its cursor: %s", f->name,
			 store_errmsg(s));
		return r;
	}
	r = plan_position(f, s, cursor, &after, &missing, err);
	if (r == -ESTALE)
		return r;
	if (r < 0)
		goto store_fail;
	if (missing > 0)
		log_warning("sink %s: %s ends at seq %" PRId64 ", behind its cursor at seq %" PRId64
			    ": %" PRId64 " line%s lost; writing them again from the outbox",
			    f->name, f->path, f->file_seq, cursor, missing,
			    missing == 1 ? "" : "s");
	if (after > cursor) {
		cursor = after;
		r = store_cursor_set(s, f->name, cursor);
		if (r < 0)
			goto store_fail;
	}
	buf_init(&b.buf, BATCH_BYTES_MAX);
	for (;;) {
		off_t before;

		buf_reset(&b.buf);
		b.rows = 0;
		r = store_outbox_each(s, after, BATCH_ROWS, batch_row, &b);
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
			snprintf(err, SINK_ERR_MAX, "%s: cannot append: %s", f->path, strerror(-r));
			goto out;
		}
		f->file_seq = b.last_seq;
		free(f->file_key);
		free(f->file_op);
		f->file_key = b.last_key;
		f->file_op = b.last_op;
		b.last_key = b.last_op = NULL;
		after = b.last_seq;
		lines += b.rows;
		/* Test builds: kill -9 here, the batch in the file and the cursor behind it. */
		testhook_crash("deliver", lines);
		/* Lines written again below the cursor leave it where it is. */
		if (after > cursor) {
			cursor = after;
			r = store_cursor_set(s, f->name, cursor);
			if (r < 0)
				goto store_fail;
		}
	}
	*ret_lines = lines;
	r = 0;
	goto out;
store_fail:
	snprintf(err, SINK_ERR_MAX, "sink %s: store: %s", f->name, store_errmsg(s));
out:
	buf_free(&b.buf);
	free(b.last_key);
	free(b.last_op);
	return r;
}

int sink_file_inspect(const struct config_sink *cfg, struct store *s,
		      char note[static SINK_ERR_MAX])
{
	struct sink_file f = { .name = cfg->name, .path = cfg->path, .fd = -1 };
	int64_t cursor = 0, after = 0, missing = 0;
	struct stat st;
	int r;

	note[0] = '\0';
	r = store_cursor_get(s, cfg->name, &cursor);
	if (r < 0)
		return r;
	f.fd = open(cfg->path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (f.fd < 0) {
		r = -errno;
		if (r == -ENOENT) {
			r = 0;
			if (cursor > 0)
				snprintf(note, SINK_ERR_MAX,
					 "%s: no such file: the next sync starts a new log after "
					 "seq %" PRId64,
					 cfg->path, cursor);
		} else {
			snprintf(note, SINK_ERR_MAX, "%s: cannot open: %s", cfg->path,
				 strerror(-r));
		}
		goto out;
	}
	if (fstat(f.fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = -EBADF;
		snprintf(note, SINK_ERR_MAX, "%s: not a regular file", cfg->path);
		goto out;
	}
	r = recover_tail(&f, false, note);
	if (r < 0) {
		if (!note[0])
			snprintf(note, SINK_ERR_MAX, "%s: cannot read: %s", cfg->path,
				 strerror(-r));
		goto out;
	}
	r = plan_position(&f, s, cursor, &after, &missing, note);
	if (r < 0)
		goto out;
	if (missing > 0)
		snprintf(note, SINK_ERR_MAX,
			 "%s: ends at seq %" PRId64 ", behind its cursor at seq %" PRId64
			 ": %" PRId64
			 " line%s lost; the next sync writes them again from the outbox",
			 cfg->path, f.file_seq, cursor, missing, missing == 1 ? "" : "s");
	else if (after > cursor)
		snprintf(note, SINK_ERR_MAX,
			 "%s: ends at seq %" PRId64
			 ", ahead of its cursor (a crash after writing); "
			 "the next sync catches the cursor up",
			 cfg->path, f.file_seq);
out:
	if (r < 0 && note[0])
		r = 0; /* a problem of the file, told in note */
	if (f.fd >= 0)
		close(f.fd);
	free(f.file_key);
	free(f.file_op);
	return r;
}

static int ops_open(const struct config *c, const struct config_sink *cfg, struct cancel *cancel,
		    void **ret, char err[static SINK_ERR_MAX])
{
	(void)c;
	(void)cancel; /* a local write never waits long */
	return sink_file_open(cfg, (struct sink_file **)ret, err);
}

static int ops_drain(void *impl, struct store *s, int64_t *ret_delivered,
		     char err[static SINK_ERR_MAX])
{
	return sink_file_drain(impl, s, ret_delivered, err);
}

static void ops_close(void *impl)
{
	sink_file_close(impl);
}

const struct sink_ops sink_file_ops = {
	.open = ops_open,
	.drain = ops_drain,
	.inspect = sink_file_inspect,
	.close = ops_close,
};
