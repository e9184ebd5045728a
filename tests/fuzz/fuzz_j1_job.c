/* fuzz_j1_job — libFuzzer target for JupiterOne's answers about a synchronization job
 * (sink_jupiterone_parse_job()): the body of a job creation, and of a job's status poll.
 *
 * Every input is read as both, and as both at once, with a small status buffer so that the
 * cut is reached. An accepted id must be 1 to SINK_J1_JOB_ID_MAX characters of
 * [A-Za-z0-9_-] (it goes into a URL as it is); a refused answer must leave the outputs as
 * they were. ASan/UBSan and the leak checker judge the rest. Run with
 * `make fuzz FUZZ_TARGETS=j1_job`.
 */
#include "tsgraphd/sink_jupiterone.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_id(const char *id)
{
	size_t n = strlen(id);

	if (n == 0 || n > SINK_J1_JOB_ID_MAX ||
	    strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_") != n)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *body = (const char *)data;
	char id[SINK_J1_JOB_ID_MAX + 1], status[16];
	int r;

	memset(id, 'x', sizeof(id));
	r = sink_jupiterone_parse_job(body, size, id, NULL, 0);
	if (r == 0)
		check_id(id);
	else if (r != -EBADMSG || id[0] != 'x')
		abort();

	memset(status, 'x', sizeof(status));
	r = sink_jupiterone_parse_job(body, size, NULL, status, sizeof(status));
	if (r == 0 && !memchr(status, '\0', sizeof(status)))
		abort();
	if (r != 0 && (r != -EBADMSG || status[0] != 'x'))
		abort();

	memset(id, 'x', sizeof(id));
	memset(status, 'x', sizeof(status));
	r = sink_jupiterone_parse_job(body, size, id, status, sizeof(status));
	if (r == 0)
		check_id(id);
	else if (r != -EBADMSG || id[0] != 'x' || status[0] != 'x')
		abort();
	return 0;
}
