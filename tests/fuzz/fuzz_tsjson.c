/* fuzz_tsjson — libFuzzer target for the parsers that see the Threat Stack API's bytes.
 *
 * The input is treated as one listing page (tsjson_page, for each collection name the
 * client uses); every item of the page goes through the matching object parser, and the
 * whole document through all four parsers, so each parser sees objects, arrays and scalars
 * of any shape. A refusal must come with one non-empty line of printable bytes in err (it
 * goes into a log line). Parsed structs are freed; ASan/UBSan and the leak checker judge
 * the rest. Single-object answers are fuzz_tsjson_object's.
 *
 * Run with `make fuzz FUZZ_TARGETS=tsjson`.
 */
#include "tsgraphd/tsjson.h"
#include "tsjson_checks.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const collections[] = { "agents", "cves", "servers", "alerts" };
	char err[TSJSON_ERR_MAX];

	for (size_t c = 0; c < sizeof(collections) / sizeof(collections[0]); c++) {
		json_object *root = NULL, *items = NULL;
		const char *token = NULL;
		int r;

		/* a small budget, so that the fuzzer reaches the refusal as well as the parse */
		r = tsjson_page((const char *)data, size, 64 * 1024, collections[c], &root, &items,
				&token, err);
		check_err(r, err);
		if (r < 0)
			continue;
		if (!items || !json_object_is_type(items, json_type_array) || (token && !*token))
			abort(); /* the contract: the items, and a token only when non-empty */
		if (c == 0)
			all_parsers(root);
		for (size_t i = 0; items && i < json_object_array_length(items); i++)
			all_parsers(json_object_array_get_idx(items, i));
		json_object_put(root);
	}
	return 0;
}
