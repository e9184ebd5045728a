/* fake — a fake server (build/fake_threatstack, build/fake_jupiterone) as a child process of
 * a C test.
 *
 * fake_start() runs $BUILD/fake_threatstack (BUILD from the environment, default "build"),
 * fake_start_named() any fake server of tests/server/ by name, with --listen 127.0.0.1:0 and
 * a --port-file in a private directory under /tmp, stdout to /dev/null, and returns once the
 * port file names the port (at most 20 s: a 10,000-agent fleet under ASan); the child gets
 * SIGTERM if the test dies first. fake_stop() sends SIGTERM and asserts the fake exits 0
 * within 5 s (it frees everything: under ASan, no leak), even with a slow answer pending,
 * then removes the directory. The control helpers talk to the /_fake/ endpoints (no
 * authentication; both fakes have /_fake/fault and /_fake/stats) and fail the test unless
 * the answer is HTTP 200 with JSON.
 *
 * Every failure is a cmocka assertion. Ownership: struct fake is the caller's; fake_control()
 * returns a json-c object the caller puts. Threads: the control helpers may be called from
 * any thread; start and stop from the test's.
 */
#ifndef TSGRAPHD_TESTS_FAKE_H
#define TSGRAPHD_TESTS_FAKE_H

#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

/* The credentials the fake accepts by default. */
#define FAKE_ORG_ID  "545d0293b620cd090d000023"
#define FAKE_USER_ID "5537c4284e9684df7e000014"
#define FAKE_API_KEY "fake-api-key-0123456789abcdef"
/* ... and those the fake JupiterOne accepts by default. */
#define FAKE_J1_TOKEN	"fake-j1-token-0123456789"
#define FAKE_J1_ACCOUNT "fake-account"

struct fake {
	pid_t pid;
	unsigned port;
	char dir[64];
	char url[64]; /* http://127.0.0.1:PORT */
};

/* extra: more options for the fake (NULL-terminated), or NULL. */
void fake_start(struct fake *f, const char *const *extra);
/* The same for $BUILD/<name>: "fake_jupiterone". */
void fake_start_named(struct fake *f, const char *name, const char *const *extra);
void fake_stop(struct fake *f);
/* GET path, or POST post (a JSON body) when it is not NULL: the parsed answer. */
json_object *fake_control(const struct fake *f, const char *path, const char *post);
/* POST /_fake/fleet with the formatted body (the fake Threat Stack). */
void fake_fleet(const struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* POST /_fake/fault with json. */
void fake_fault(const struct fake *f, const char *json);
/* A figure of /_fake/stats: stats[key], or stats[key][sub] when sub is not NULL. */
int64_t fake_stat(const struct fake *f, const char *key, const char *sub);
/* Sleeps ms milliseconds (a poll interval, never a synchronization). */
void fake_sleep_ms(long ms);

#endif
