/* testhook — the pause and crash points of test builds (see the header).
 *
 * Compiled empty unless TSGRAPHD_TEST_HOOKS: build/tsgraphd holds none of this. The
 * environment is read once (pthread_once), so a counted point costs a compare per call. A
 * crash is raise(SIGKILL): no handler, no atexit, no SQLite rollback, no buffered write gets
 * a chance to run, exactly like kill -9 from outside, but at a moment the test chose. A
 * TSGRAPHD_TEST_CRASH_AFTER that is not a count disarms the crash points and says so, so the
 * test fails on "the process was not killed" rather than on a crash somewhere else.
 */
#include "tsgraphd/testhook.h"

#ifdef TSGRAPHD_TEST_HOOKS

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

#include "tsgraphd/log.h"
#include "tsgraphd/util.h"

#define CRASH_AFTER_DEFAULT 1000

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static const char *pause_at, *crash_at;
static int64_t crash_after = CRASH_AFTER_DEFAULT;

static void read_env(void)
{
	const char *n = getenv("TSGRAPHD_TEST_CRASH_AFTER");

	pause_at = getenv("TSGRAPHD_TEST_PAUSE_AT");
	crash_at = getenv("TSGRAPHD_TEST_CRASH_AT");
	if (n && parse_i64(n, 1, INT64_MAX, &crash_after) < 0) {
		log_error("test hook: TSGRAPHD_TEST_CRASH_AFTER is not a count from 1; no crash "
			  "point is armed");
		crash_at = NULL;
	}
}

bool testhook_pause_at(const char *point)
{
	pthread_once(&env_once, read_env);
	return pause_at && strcmp(pause_at, point) == 0;
}

void testhook_stall(const char *point, unsigned seconds)
{
	if (!testhook_pause_at(point))
		return;
	log_notice("test hook: stalled at %s for %u s", point, seconds);
	nanosleep(&(struct timespec){ .tv_sec = seconds }, NULL);
}

void testhook_crash(const char *point, int64_t count)
{
	pthread_once(&env_once, read_env);
	if (!crash_at || strcmp(crash_at, point) != 0)
		return;
	if (count == TESTHOOK_UNCOUNTED) {
		log_notice("test hook: crash at %s", point);
	} else {
		if (count < crash_after)
			return;
		log_notice("test hook: crash at %s after %" PRId64, point, count);
	}
	raise(SIGKILL);
}

#endif
