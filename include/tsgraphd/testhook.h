/* testhook — pause and crash points for the tests, in test builds only.
 *
 * $(BUILD)/tsgraphd-test is the daemon with every module compiled with -DTSGRAPHD_TEST_HOOKS
 * (never installed). In every other build these calls are empty inlines: nothing is read from
 * the environment and nothing can stop or kill the process. A test names a point:
 *
 *   TSGRAPHD_TEST_PAUSE_AT=POINT   testhook_pause_at(POINT) is true; the caller then waits there
 *                                  on its own cancel handle (the hook knows no context)
 *   TSGRAPHD_TEST_CRASH_AT=POINT   the process raises SIGKILL on itself at POINT: at once, or at
 *                                  a counted point once its count reaches
 *   TSGRAPHD_TEST_CRASH_AFTER=N    (default 1000)
 *
 * Points: "stage" (sync.c, counted: objects staged in the run), "apply" (sync.c, inside the
 * apply's write transaction, every change and the run's record written, before the commit),
 * "deliver" (sink_file.c, counted: lines appended and fsync'd, after a batch and before the
 * sink's cursor moves past it), "post" (sink_webhook.c, counted: changes a receiver accepted,
 * after the 2xx and before the sink's cursor moves past it); in sink_jupiterone.c, for each
 * job: "jupiterone-created" (the job created, nothing uploaded), "jupiterone-upload"
 * (counted: upload requests of the job accepted), "jupiterone-finalize" (every upload
 * accepted, before finalize), "jupiterone-finalized" (finalize accepted, the job not followed
 * yet) and "jupiterone-finished" (the job FINISHED, before the sink's cursor moves); "inbox"
 * (inbox.c, counted: new alerts committed by the inbox writer, after a commit and before any
 * of its requests is answered). Stall points (testhook_stall(), the pause point's name, once
 * a process): "inbox-commit" (inbox.c: the first commit of a request's alerts sleeps 15 s, a
 * disk that does not answer). A flag point (testhook_pause_at() alone): "full-retry-1s"
 * (daemon.c: a failed full sync is tried again after 1 s, not 1 min). Each logs "test hook: ..." at notice before it acts, so a
 * test can wait for the line instead of guessing the moment.
 *
 * Threads: any; the environment is read once, on the first call.
 */
#ifndef TSGRAPHD_TESTHOOK_H
#define TSGRAPHD_TESTHOOK_H

#include <stdbool.h>
#include <stdint.h>

#define TESTHOOK_UNCOUNTED (-1) /* the count of a point that is not counted */

#ifdef TSGRAPHD_TEST_HOOKS
bool testhook_pause_at(const char *point);
void testhook_crash(const char *point, int64_t count);
/* With TSGRAPHD_TEST_PAUSE_AT=point: logs "test hook: stalled at POINT" and sleeps seconds. */
void testhook_stall(const char *point, unsigned seconds);
#else
static inline void testhook_stall(const char *point, unsigned seconds)
{
	(void)point, (void)seconds;
}
static inline bool testhook_pause_at(const char *point)
{
	(void)point;
	return false;
}
static inline void testhook_crash(const char *point, int64_t count)
{
	(void)point, (void)count;
}
#endif

#endif
