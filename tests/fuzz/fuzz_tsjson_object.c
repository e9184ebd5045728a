/* fuzz_tsjson_object — libFuzzer target for a Threat Stack answer that is one object
 * (GET /v2/agents/{id}, GET /v2/alerts/{id}), read as tsapi reads it: tsjson_document()
 * with a small parse budget (so the density refusal is reached as well as the parse), then
 * tsjson_errors(), then the object parsers (tsjson_agent, tsjson_vuln, tsjson_server,
 * tsjson_alert) on the root and on every object one level down, so each parser also sees
 * the shapes that sit in listings.
 *
 * A refusal must come with exactly one non-empty line of printable bytes in err (it goes
 * into a log line); parsed structs are freed; ASan/UBSan and the leak checker judge the
 * rest. Listing pages are fuzz_tsjson's. Run with `make fuzz FUZZ_TARGETS=tsjson_object`.
 */
#include "tsgraphd/tsjson.h"
#include "tsjson_checks.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[TSJSON_ERR_MAX];
	json_object *root = NULL;
	int r;

	r = tsjson_document((const char *)data, size, 64 * 1024, &root, err);
	check_err(r, err);
	if (r < 0)
		return 0;
	if (r != 0 || !json_object_is_type(root, json_type_object))
		abort(); /* the contract: an object, or an error */
	r = tsjson_errors(root, err);
	check_err(r, err);
	if (r != 0 && r != -EBADMSG)
		abort();
	all_parsers(root);
	json_object_object_foreach(root, key, val)
	{
		(void)key;
		if (json_object_is_type(val, json_type_object))
			all_parsers(val);
	}
	json_object_put(root);
	return 0;
}
