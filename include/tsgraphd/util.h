/* util — small helpers every module shares: checked number parsing, a bounded growable
 * buffer, bounded file reads, time, and cleanup attributes for locals.
 *
 * Ownership: a struct buf owns its data until buf_steal() hands it to the caller;
 * read_file_bounded() returns a malloc'd, NUL-terminated copy the caller frees.
 * Threads: everything here is reentrant; nothing keeps state.
 */
#ifndef TSGRAPHD_UTIL_H
#define TSGRAPHD_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

static inline void freep(void *p)
{
	free(*(void **)p);
}
static inline void closep(int *fd)
{
	if (*fd >= 0)
		close(*fd);
}
static inline void fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}
#define _cleanup_free_	 __attribute__((cleanup(freep)))
#define _cleanup_close_	 __attribute__((cleanup(closep)))
#define _cleanup_fclose_ __attribute__((cleanup(fclosep)))

/* A growable byte buffer with a hard maximum fixed at creation. Always NUL-terminated. */
struct buf {
	char *data;
	size_t len;
	size_t cap;
	size_t max;
};

void buf_init(struct buf *b, size_t max);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends each string up to the terminating NULL: a printf of "%s%s…" without the format. */
int buf_cat(struct buf *b, ...) __attribute__((sentinel));
char *buf_steal(struct buf *b);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* Checked parsers: the whole string must be a number in [min, max]; -EINVAL / -ERANGE. */
int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
int parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret);
int parse_double(const char *s, double min, double max, double *ret);
int parse_bool(const char *s, bool *ret);
/* "1MiB", "512k", "1048576": a byte size with an optional binary suffix. */
int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

/* Opens path read-only without ever blocking (O_NONBLOCK|O_NOCTTY|O_CLOEXEC, so a FIFO or a
 * tty cannot hang the caller), fstat()s it and refuses anything but a regular file with
 * -EBADFD. On success *ret_fd is blocking again and ret_st (may be NULL) holds its stat. */
int open_regular(const char *path, int *ret_fd, struct stat *ret_st);
/* Reads the whole of fd, at most max bytes; -EFBIG when there is more. */
int read_fd_bounded(int fd, size_t max, char **ret_data, size_t *ret_len);
/* open_regular() + read_fd_bounded(): -EBADFD for a FIFO, device or directory. */
int read_file_bounded(const char *path, size_t max, char **ret_data, size_t *ret_len);

/* The one way untrusted bytes (config values, key names, API answers, webhook bodies) reach a
 * human: printable ASCII and well-formed UTF-8 pass, every other byte (controls, ESC, DEL, C1
 * controls, bidi overrides, line separators, malformed UTF-8) becomes "\xNN". Backslashes
 * pass as they are, so escaping twice changes nothing (the logger escapes every line again).
 * At most size - 1 bytes are written and out is always NUL-terminated; input that does not
 * fit is cut at a character boundary and ends in "...". Returns strlen(out). */
size_t str_escape(char *out, size_t size, const void *in, size_t len);
/* Sizes for str_escape() buffers: a short value (key names, ids) and a message. */
#define ESCAPE_SHORT 96
#define ESCAPE_LONG  512

int64_t now_ms(void);	    /* CLOCK_REALTIME, milliseconds since the epoch */
int64_t monotonic_ms(void); /* CLOCK_MONOTONIC, milliseconds */
/* ms since epoch → "2020-05-18T15:02:09.000Z" (UTC); out must hold ISO8601_MS_MAX bytes. */
#define ISO8601_MS_MAX 32
void format_iso8601_ms(int64_t ms, char out[static ISO8601_MS_MAX]);
/* "2020-05-18T15:02:09.000Z" / "...09Z" / "+00:00" → ms since epoch. */
int parse_iso8601_ms(const char *s, int64_t *ret);

/* Constant-time equality of two byte strings; lengths are compared too, but not their bytes'
 * timing. */
bool ct_equal(const void *a, size_t alen, const void *b, size_t blen);

char *xstrdup_or_null(const char *s);

#endif
