/* log — one line per event, with journald priorities and secret redaction.
 *
 * Lines are formatted into a fixed stack buffer (long messages are cut, never allocated),
 * secrets are replaced in place, then str_escape() turns control characters and malformed
 * UTF-8 into "\xNN" (cutting the line with "..." if that makes it too long), and the
 * result goes out in one write(2) so lines from different threads never interleave.
 */
#include "tsgraphd/log.h"
#include "tsgraphd/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX	2048
#define LOG_SECRETS_MAX 192 /* a sanity bound: three configs' secrets, a reload's */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_fd = 2;
static enum log_level log_max = LOG_LEVEL_INFO;
static bool log_journal;
static char **log_secrets; /* replaced whole by log_set_secrets(), under log_lock */
static size_t log_n_secrets;

static const char *const level_names[] = {
	[LOG_LEVEL_ERR] = "error", [LOG_LEVEL_WARNING] = "warning", [LOG_LEVEL_NOTICE] = "notice",
	[LOG_LEVEL_INFO] = "info", [LOG_LEVEL_DEBUG] = "debug",
};

void log_init(int fd, enum log_level max_level)
{
	const char *js = getenv("JOURNAL_STREAM");

	pthread_mutex_lock(&log_lock);
	log_fd = fd;
	log_max = max_level;
	log_journal = js && *js;
	pthread_mutex_unlock(&log_lock);
}

void log_set_level(enum log_level max_level)
{
	pthread_mutex_lock(&log_lock);
	log_max = max_level;
	pthread_mutex_unlock(&log_lock);
}

enum log_level log_get_level(void)
{
	enum log_level l;

	pthread_mutex_lock(&log_lock);
	l = log_max;
	pthread_mutex_unlock(&log_lock);
	return l;
}

int log_level_from_string(const char *s, enum log_level *ret)
{
	for (int i = LOG_LEVEL_ERR; i <= LOG_LEVEL_DEBUG; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*ret = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "err") == 0 || strcasecmp(s, "warn") == 0) {
		*ret = s[0] == 'e' || s[0] == 'E' ? LOG_LEVEL_ERR : LOG_LEVEL_WARNING;
		return 0;
	}
	return -EINVAL;
}

const char *log_level_to_string(enum log_level level)
{
	if (level < LOG_LEVEL_ERR || level > LOG_LEVEL_DEBUG)
		return "unknown";
	return level_names[level];
}

static void wipe_secrets(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		explicit_bzero(v[i], strlen(v[i]));
		free(v[i]);
	}
	free(v);
}

int log_set_secrets(const char *const *secrets, size_t n)
{
	char **v = NULL, **old;
	size_t k = 0, n_old;

	if (n > LOG_SECRETS_MAX)
		return -E2BIG;
	if (n && !(v = calloc(n, sizeof(*v))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!secrets[i] || strlen(secrets[i]) < 4)
			continue;
		if (!(v[k] = strdup(secrets[i]))) {
			wipe_secrets(v, k);
			return -ENOMEM;
		}
		k++;
	}
	pthread_mutex_lock(&log_lock);
	old = log_secrets;
	n_old = log_n_secrets;
	log_secrets = v;
	log_n_secrets = k;
	pthread_mutex_unlock(&log_lock);
	wipe_secrets(old, n_old);
	return 0;
}

void log_close(void)
{
	log_set_secrets(NULL, 0);
}

/* Replaces every registered secret in line with "***". Called with log_lock held. */
static size_t redact(char *line, size_t len)
{
	for (size_t s = 0; s < log_n_secrets; s++) {
		const char *secret = log_secrets[s];
		size_t slen = strlen(secret);
		char *p = line;

		while ((p = memmem(p, len - (size_t)(p - line), secret, slen))) {
			size_t tail = len - (size_t)(p - line) - slen;

			memcpy(p, "***", 3);
			memmove(p + 3, p + slen, tail);
			len -= slen - 3;
			p += 3;
		}
	}
	line[len] = '\0';
	return len;
}

/* Formats, redacts, then escapes: whatever a caller passed in (an API answer, a config
 * value), no raw control byte or malformed UTF-8 reaches the terminal or the journal. */
static __attribute__((format(printf, 3, 0))) size_t vformat(char *out, size_t size, const char *fmt,
							    va_list ap)
{
	char raw[LOG_LINE_MAX];
	int n = vsnprintf(raw, sizeof(raw), fmt, ap);
	size_t len;

	if (n < 0) {
		out[0] = '\0';
		return 0;
	}
	len = (size_t)n < sizeof(raw) ? (size_t)n : sizeof(raw) - 1;
	pthread_mutex_lock(&log_lock);
	len = redact(raw, len);
	pthread_mutex_unlock(&log_lock);
	len = str_escape(out, size, raw, len);
	explicit_bzero(raw, sizeof(raw));
	return len;
}

size_t log_format(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (size == 0)
		return 0;
	va_start(ap, fmt);
	n = vformat(out, size, fmt, ap);
	va_end(ap);
	return n;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char msg[LOG_LINE_MAX], line[LOG_LINE_MAX + 64];
	int saved_errno = errno, n;
	bool journal;
	int fd;
	va_list ap;

	pthread_mutex_lock(&log_lock);
	if (level > log_max) {
		pthread_mutex_unlock(&log_lock);
		errno = saved_errno;
		return;
	}
	journal = log_journal;
	fd = log_fd;
	pthread_mutex_unlock(&log_lock);

	va_start(ap, fmt);
	vformat(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (journal) {
		n = snprintf(line, sizeof(line), "<%d>%s\n", (int)level, msg);
	} else {
		struct timespec ts;
		struct tm tm;
		char when[ISO8601_MS_MAX] = "";

		clock_gettime(CLOCK_REALTIME, &ts);
		if (gmtime_r(&ts.tv_sec, &tm))
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		n = snprintf(line, sizeof(line), "%s tsgraphd[%d]: %s: %s\n", when, (int)getpid(),
			     log_level_to_string(level), msg);
	}
	if (n > 0) {
		size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;

		if (len == sizeof(line) - 1)
			line[len - 1] = '\n';
		/* A failing log write has nowhere to be reported. */
		while (write(fd, line, len) < 0 && errno == EINTR)
			;
	}
	errno = saved_errno;
}
