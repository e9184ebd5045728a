/* libFuzzer target: the configuration parser on arbitrary bytes. Must never crash, leak or
 * read out of bounds; every input either parses or yields a one-line error in which every
 * byte from the input was escaped (no control byte, no DEL reaches a terminal). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tsgraphd/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[CONFIG_ERROR_MAX];
	struct config *c = NULL;

	if (config_parse("fuzz.conf", (const char *)data, size, &c, err) == 0)
		config_free(c);
	else if (strlen(err) == 0 || strchr(err, '\n'))
		__builtin_trap(); /* errors are exactly one non-empty line */
	else
		for (const char *p = err; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				__builtin_trap(); /* raw control bytes are escaped */
	return 0;
}
