/* fuzz_tsjson — libFuzzer target for the parsers that see the Threat Stack API's bytes.
 *
 * The input is treated as one listing page (tsjson_page, for each collection name the
 * client uses); every item of the page goes through the matching object parser, and the
 * whole document through all four parsers, so each parser sees objects, arrays and scalars
 * of any shape. Parsed structs are freed; ASan/UBSan and the leak checker do the judging.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
 *       $(pkg-config --cflags json-c) tests/fuzz/fuzz_tsjson.c src/tsjson.c src/util.c \
 *       $(pkg-config --libs json-c) -o build/fuzz_tsjson
 *   build/fuzz_tsjson -max_total_time=60 -max_len=65536
 */
#include "tsgraphd/tsjson.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void all_parsers(json_object *o)
{
	char err[TSJSON_ERR_MAX];
	struct ts_agent ag;
	struct ts_vuln v;
	struct ts_server s;
	struct ts_alert al;

	if (tsjson_agent(o, &ag, err) == 0)
		ts_agent_free(&ag);
	if (tsjson_vuln(o, &v, err) == 0)
		ts_vuln_free(&v);
	if (tsjson_server(o, &s, err) == 0)
		ts_server_free(&s);
	if (tsjson_alert(o, &al, err) == 0)
		ts_alert_free(&al);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const collections[] = { "agents", "cves", "servers", "alerts" };
	char err[TSJSON_ERR_MAX];

	for (size_t c = 0; c < sizeof(collections) / sizeof(collections[0]); c++) {
		json_object *root = NULL, *items = NULL;
		const char *token = NULL;

		/* a small budget, so that the fuzzer reaches the refusal as well as the parse */
		if (tsjson_page((const char *)data, size, 64 * 1024, collections[c], &root, &items,
				&token, err) < 0)
			continue;
		if (c == 0)
			all_parsers(root);
		for (size_t i = 0; items && i < json_object_array_length(items); i++)
			all_parsers(json_object_array_get_idx(items, i));
		json_object_put(root);
	}
	return 0;
}
