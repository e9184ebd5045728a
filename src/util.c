/* util — small shared helpers.
 *
 * The buffer grows geometrically but never past the maximum fixed at buf_init(): every
 * growable thing in tsgraphd has a bound from its creation, so hostile input hits -E2BIG
 * instead of exhausting memory. Number parsers accept the whole string or nothing. Files are
 * opened without blocking and type-checked before a byte is read, so a FIFO or a device named
 * where a file belongs is an error at once rather than a hang.
 */
#include "tsgraphd/util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

void buf_init(struct buf *b, size_t max)
{
	*b = (struct buf){ .max = max };
}

static int buf_reserve(struct buf *b, size_t extra)
{
	size_t need, cap;
	char *p;

	if (extra > b->max || b->len > b->max - extra)
		return -E2BIG;
	need = b->len + extra + 1;
	if (need <= b->cap)
		return 0;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > b->max + 1)
		cap = b->max + 1;
	p = realloc(b->data, cap);
	if (!p)
		return -ENOMEM;
	b->data = p;
	b->cap = cap;
	return 0;
}

int buf_append(struct buf *b, const void *data, size_t len)
{
	int r = buf_reserve(b, len);

	if (r < 0)
		return r;
	if (len)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int buf_cat(struct buf *b, ...)
{
	const char *s;
	va_list ap;
	int r = 0;

	va_start(ap, b);
	while (r == 0 && (s = va_arg(ap, const char *)))
		r = buf_puts(b, s);
	va_end(ap);
	return r;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n, r;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -EINVAL;
	r = buf_reserve(b, (size_t)n);
	if (r < 0)
		return r;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

char *buf_steal(struct buf *b)
{
	char *p = b->data;

	if (!p)
		p = strdup("");
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

void buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	char *end;

	if (!s || *s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s || *end != '\0')
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_i64(const char *s, int64_t min, int64_t max, int64_t *ret)
{
	long long v;
	char *end;

	if (!s || !(*s == '-' || (*s >= '0' && *s <= '9')))
		return -EINVAL;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;
	if (end == s || *end != '\0')
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_double(const char *s, double min, double max, double *ret)
{
	double v;
	char *end;

	if (!s || !*s || *s == ' ' || *s == '\t')
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (end == s || *end != '\0' || !isfinite(v))
		return -EINVAL;
	if (errno == ERANGE || v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

int parse_bool(const char *s, bool *ret)
{
	static const char *const yes[] = { "1", "yes", "true", "on" };
	static const char *const no[] = { "0", "no", "false", "off" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*ret = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*ret = false;
			return 0;
		}
	}
	return -EINVAL;
}

int parse_size(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	static const struct {
		const char *suffix;
		uint64_t mul;
	} units[] = {
		{ "", 1 },
		{ "B", 1 },
		{ "k", 1024 },
		{ "K", 1024 },
		{ "KiB", 1024 },
		{ "M", 1024 * 1024 },
		{ "MiB", 1024 * 1024 },
		{ "G", 1024ULL * 1024 * 1024 },
		{ "GiB", 1024ULL * 1024 * 1024 },
	};
	char num[32];
	size_t n = 0;
	uint64_t v;
	int r;

	if (!s)
		return -EINVAL;
	while (s[n] >= '0' && s[n] <= '9')
		n++;
	if (n == 0 || n >= sizeof(num))
		return n ? -ERANGE : -EINVAL;
	memcpy(num, s, n);
	num[n] = '\0';
	r = parse_u64(num, 0, UINT64_MAX, &v);
	if (r < 0)
		return r;
	for (size_t i = 0; i < ARRAY_SIZE(units); i++) {
		if (strcmp(s + n, units[i].suffix) != 0)
			continue;
		if (v > UINT64_MAX / units[i].mul)
			return -ERANGE;
		v *= units[i].mul;
		if (v < min || v > max)
			return -ERANGE;
		*ret = v;
		return 0;
	}
	return -EINVAL;
}

int open_regular(const char *path, int *ret_fd, struct stat *ret_st)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	int flags;

	fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EBADFD;
	/* Regular files never block; clear the flag anyway so reads behave as documented. */
	flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return -errno;
	if (ret_st)
		*ret_st = st;
	*ret_fd = fd;
	fd = -1;
	return 0;
}

int read_fd_bounded(int fd, size_t max, char **ret_data, size_t *ret_len)
{
	struct buf b;
	char chunk[4096];
	ssize_t n;
	int r;

	buf_init(&b, max);
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = -errno;
			goto fail;
		}
		if (n == 0)
			break;
		r = buf_append(&b, chunk, (size_t)n);
		if (r < 0) {
			r = r == -E2BIG ? -EFBIG : r;
			goto fail;
		}
	}
	if (ret_len)
		*ret_len = b.len;
	*ret_data = buf_steal(&b);
	return *ret_data ? 0 : -ENOMEM;
fail:
	if (b.data)
		explicit_bzero(b.data, b.len); /* secrets pass through here */
	buf_free(&b);
	return r;
}

int read_file_bounded(const char *path, size_t max, char **ret_data, size_t *ret_len)
{
	_cleanup_close_ int fd = -1;
	struct stat st;
	int r;

	r = open_regular(path, &fd, &st);
	if (r < 0)
		return r;
	if ((uint64_t)st.st_size > max)
		return -EFBIG;
	return read_fd_bounded(fd, max, ret_data, ret_len);
}

/* The length of the UTF-8 character at s (at most n bytes) when it may be shown as it is,
 * or 0 when its first byte must be escaped: malformed, overlong, a surrogate, a C1 control,
 * or a character that reorders or breaks lines on a terminal. */
static size_t utf8_showable(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	if (cp < 0xa0 || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0x200e || cp == 0x200f ||
	    (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069))
		return 0;
	return len;
}

/* Escapes in into out (NULL: only counts) until the output would pass limit; returns the
 * output length and in *ret_used how much input it covered. */
static size_t escape_some(char *out, size_t limit, const unsigned char *in, size_t len,
			  size_t *ret_used)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0, i = 0;

	while (i < len) {
		char unit[4];
		const char *src = unit;
		size_t ulen, n = 1;

		if (in[i] >= 0x20 && in[i] < 0x7f) {
			unit[0] = (char)in[i];
			ulen = 1;
		} else if (in[i] >= 0x80 && (n = utf8_showable(in + i, len - i)) > 0) {
			ulen = n;
			src = (const char *)in + i;
		} else {
			n = 1;
			unit[0] = '\\';
			unit[1] = 'x';
			unit[2] = hex[in[i] >> 4];
			unit[3] = hex[in[i] & 0xf];
			ulen = 4;
		}
		if (o + ulen > limit)
			break;
		if (out)
			memcpy(out + o, src, ulen);
		o += ulen;
		i += n;
	}
	*ret_used = i;
	return o;
}

size_t str_escape(char *out, size_t size, const void *in, size_t len)
{
	size_t used, o;

	if (size == 0)
		return 0;
	if (!in)
		len = 0;
	escape_some(NULL, size - 1, in, len, &used);
	if (used < len && size > 4) {
		o = escape_some(out, size - 4, in, len, &used);
		memcpy(out + o, "...", 3);
		o += 3;
	} else {
		o = escape_some(out, size - 1, in, len, &used);
	}
	out[o] = '\0';
	return o;
}

int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void format_iso8601_ms(int64_t ms, char out[static ISO8601_MS_MAX])
{
	time_t secs = (time_t)(ms / 1000);
	int frac = (int)(ms % 1000);
	struct tm tm;

	if (frac < 0) {
		frac += 1000;
		secs -= 1;
	}
	if (!gmtime_r(&secs, &tm)) {
		snprintf(out, ISO8601_MS_MAX, "1970-01-01T00:00:00.000Z");
		return;
	}
	snprintf(out, ISO8601_MS_MAX, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

static int digits(const char **p, int n, int *ret)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -EINVAL;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*ret = v;
	return 0;
}

int parse_iso8601_ms(const char *s, int64_t *ret)
{
	int y, mo, d, h, mi, sec, ms = 0, tzh = 0, tzm = 0, sign = 0;
	const char *p = s;
	struct tm tm = { 0 };
	time_t t;

	if (!s || strlen(s) > 40)
		return -EINVAL;
	if (digits(&p, 4, &y) < 0 || *p++ != '-' || digits(&p, 2, &mo) < 0 || *p++ != '-' ||
	    digits(&p, 2, &d) < 0 || (*p != 'T' && *p != ' ') || !*p++ || digits(&p, 2, &h) < 0 ||
	    *p++ != ':' || digits(&p, 2, &mi) < 0 || *p++ != ':' || digits(&p, 2, &sec) < 0)
		return -EINVAL;
	if (*p == '.') {
		int n = 0;

		p++;
		while (*p >= '0' && *p <= '9') {
			if (n < 3)
				ms = ms * 10 + (*p - '0');
			n++;
			p++;
		}
		if (n == 0 || n > 9)
			return -EINVAL;
		for (; n < 3; n++)
			ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '-' ? -1 : 1;
		if (digits(&p, 2, &tzh) < 0)
			return -EINVAL;
		if (*p == ':')
			p++;
		if (digits(&p, 2, &tzm) < 0)
			return -EINVAL;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return -EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	t = timegm(&tm);
	if (t == (time_t)-1 && !(y == 1969))
		return -EINVAL;
	*ret = ((int64_t)t - sign * (tzh * 3600 + tzm * 60)) * 1000 + ms;
	return 0;
}

bool ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	const volatile unsigned char *pa = a, *pb = b;
	unsigned char diff = alen == blen ? 0 : 1;
	size_t n = alen < blen ? alen : blen;

	/* Compare over the length of a (the secret-independent side is the attacker's input
	 * length, which the attacker knows anyway). */
	for (size_t i = 0; i < alen; i++)
		diff |= pa[i] ^ (i < n ? pb[i] : 0);
	return diff == 0;
}

char *xstrdup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}
