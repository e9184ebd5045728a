/* teststore — a store in a directory of its own under /tmp, filled with agents as a sync
 * would commit them, for the sinks' tests.
 *
 * teststore_open() makes the directory (dir: "/tmp/tsgraphd-store-XXXXXX" filled in) and
 * opens dir/state.db (synchronous=FULL); teststore_remove() closes the store (NULL is fine)
 * and removes the directory with all it holds. Both return -1 on failure, for cmocka's setup
 * and teardown.
 *
 * teststore_sync_agents() runs one whole sync of n agents through diff_plan()/diff_apply():
 * agent i (1..n) is a threatstack_agent entity with _key "threatstack:agent:a<i>", name
 * "host-<i>", the given status and active (status is "online"). The listing is complete, so
 * agents above n that an earlier call stored are deleted; a status that differs from the
 * stored one is an update of status and active. Every failure is a cmocka assertion.
 *
 * Threads: the caller's, which owns the store.
 */
#ifndef TSGRAPHD_TESTS_TESTSTORE_H
#define TSGRAPHD_TESTS_TESTSTORE_H

#include "tsgraphd/diff.h"
#include "tsgraphd/store.h"

#define TESTSTORE_DIR_MAX 64

int teststore_open(char dir[static TESTSTORE_DIR_MAX], struct store **ret);
int teststore_remove(const char *dir, struct store *s);
void teststore_sync_agents(struct store *s, int n, const char *status);
/* The end of a sync whose agents are staged (the listing "agents" complete): plan, apply
 * with o and commit, each step a cmocka assertion. */
void teststore_apply_agents(struct store *s, const struct diff_options *o);

#endif
