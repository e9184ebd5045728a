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

/* Reads at most max bytes; -EFBIG when the file is larger. */
int read_file_bounded(const char *path, size_t max, char **ret_data, size_t *ret_len);

int64_t now_ms(void);	    /* CLOCK_REALTIME, milliseconds since the epoch */
int64_t monotonic_ms(void); /* CLOCK_MONOTONIC, milliseconds */
/* ms since epoch → "2020-05-18T15:02:09.000Z" (UTC); out must hold 32 bytes. */
void format_iso8601_ms(int64_t ms, char out[static 32]);
/* "2020-05-18T15:02:09.000Z" / "...09Z" / "+00:00" → ms since epoch. */
int parse_iso8601_ms(const char *s, int64_t *ret);

/* Constant-time equality of two byte strings; lengths are compared too, but not their bytes'
 * timing. */
bool ct_equal(const void *a, size_t alen, const void *b, size_t blen);

char *xstrdup_or_null(const char *s);

#endif
