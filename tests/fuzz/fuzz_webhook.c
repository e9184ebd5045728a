/* fuzz_webhook — libFuzzer target for the alert webhook's body (tsjson_webhook), the bytes
 * anyone who reaches the receiver can send.
 *
 * Every input is parsed with and without an organization to check. A refusal must come with
 * exactly one non-empty line of error; an acceptance must give 1..TSJSON_WEBHOOK_ALERTS_MAX
 * alerts, each with an id of the allowed characters and its JSON within the cap. ASan/UBSan
 * and the leak checker judge the rest. Run with `make fuzz FUZZ_TARGETS=webhook`.
 */
#include "tsgraphd/tsjson.h"

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const char *body, size_t size, const char *org)
{
	struct ts_webhook w = { 0 };
	char err[TSJSON_ERR_MAX];
	int r = tsjson_webhook(body, size, org, &w, err);

	if (r < 0) {
		if (!err[0] || strchr(err, '\n') || w.n != 0)
			abort();
		return;
	}
	if (w.n == 0 || w.n > TSJSON_WEBHOOK_ALERTS_MAX)
		abort();
	for (size_t i = 0; i < w.n; i++) {
		const char *id = w.alerts[i].id;

		if (!id || !*id || strlen(id) > TSJSON_WEBHOOK_ID_MAX || !w.alerts[i].json ||
		    strlen(w.alerts[i].json) > TSJSON_WEBHOOK_ALERT_MAX)
			abort();
		for (; *id; id++)
			if (!isalnum((unsigned char)*id) && !strchr("._:-", *id))
				abort();
		if (org && w.alerts[i].organization_id && strcmp(w.alerts[i].organization_id, org))
			abort();
	}
	ts_webhook_free(&w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check((const char *)data, size, NULL);
	check((const char *)data, size, "545d0293b620cd090d000023");
	return 0;
}
