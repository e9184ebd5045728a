/* log — the process-wide logger.
 *
 * One line per event, printf-checked. Under systemd (JOURNAL_STREAM set) each line starts
 * with a "<N>" syslog priority so journald keeps the level; on a terminal or file a UTC
 * timestamp and the level name lead the line instead.
 *
 * Redaction: the secrets the daemon holds are registered with log_set_secrets(); any
 * formatted line containing one has it replaced by "***" before it is written. This is a
 * second line of defence: callers still never pass secrets to the logger.
 *
 * Threads: all functions may be called from any thread; each line is written with a single
 * write(2). log_set_secrets() copies the secrets and replaces the whole set (a reload drops
 * the old ones); log_close() wipes the copies.
 */
#ifndef TSGRAPHD_LOG_H
#define TSGRAPHD_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level {
	LOG_LEVEL_ERR = 3,
	LOG_LEVEL_WARNING = 4,
	LOG_LEVEL_NOTICE = 5,
	LOG_LEVEL_INFO = 6,
	LOG_LEVEL_DEBUG = 7,
};

void log_init(int fd, enum log_level max_level);
void log_set_level(enum log_level max_level);
enum log_level log_get_level(void);
int log_level_from_string(const char *s, enum log_level *ret);
const char *log_level_to_string(enum log_level level);
/* The set of secrets to redact, replacing the previous set; NULL entries and secrets shorter
 * than 4 bytes are skipped (they would redact ordinary words). */
int log_set_secrets(const char *const *secrets, size_t n);
void log_close(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Formats a line as log_msg would write it, without the prefix, into out (for tests). */
size_t log_format(char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_error(...)	 log_msg(LOG_LEVEL_ERR, __VA_ARGS__)
#define log_warning(...) log_msg(LOG_LEVEL_WARNING, __VA_ARGS__)
#define log_notice(...)	 log_msg(LOG_LEVEL_NOTICE, __VA_ARGS__)
#define log_info(...)	 log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...)	 log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__)

#endif
