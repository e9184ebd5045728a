/* fuzz_tsapi_answer — libFuzzer target for the rest of a Threat Stack answer the client
 * reads: its header lines (tsapi_header_line(), and the sinks' http_retry_after()), the Hawk
 * headers found there as tsapi checks them, and an error body's message
 * (tsapi_server_said()).
 *
 * Input: an HTTP answer as libcurl hands it over: header lines, each ending in '\n' (a CR
 * before it is kept), up to an empty line; the rest is the body. Each line is passed in an
 * exact-size copy, so ASan sees any read past it. What is kept must fit its field with a
 * NUL; a reset is -1 or a parsed number in range; the quoted message is at most
 * TSAPI_SAID_MAX printable characters without '"'. A Server-Authorization found is verified
 * against the body with the Content-Type found, a WWW-Authenticate's tsm with the fixed key
 * (results judged by fuzz_hawk). Run with `make fuzz FUZZ_TARGETS=tsapi_answer`.
 */
#include "tsgraphd/hawk.h"
#include "tsgraphd/http.h"
#include "tsgraphd/tsapi.h"

#include <ctype.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY "werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn"
#define NOW 1353832234

static void check_field(const char *v, size_t size)
{
	if (!memchr(v, '\0', size))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct hawk_credentials cred = { .id = "dh37fgj492je", .key = KEY };
	static const struct hawk_request req = {
		.method = "GET", .uri = "/help/hawk/self-test", .host = "127.0.0.1", .port = 8443
	};
	static const struct hawk_artifacts art = { .ts = NOW, .nonce = "j4h3g2" };
	const uint8_t *p = data, *end = data + size;
	char said[TSAPI_SAID_MAX + 1];
	struct tsapi_headers h;
	int64_t ms, offset;
	size_t n;

	tsapi_headers_reset(&h);
	while (p < end) {
		const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
		size_t len = nl ? (size_t)(nl - p) + 1 : (size_t)(end - p);
		char *line;
		int r;

		if (len == 1 || (len == 2 && p[0] == '\r')) { /* the empty line: the body follows */
			p += len;
			break;
		}
		line = malloc(len);
		if (!line)
			abort();
		memcpy(line, p, len);
		tsapi_header_line(&h, line, len);
		ms = -2;
		r = http_retry_after(line, len, &ms);
		if ((r == 0 && (ms < 0 || ms > 86400 * 1000)) || (r != 0 && ms != -2) ||
		    (r != 0 && r != -ENOENT && r != -EBADMSG))
			abort();
		free(line);
		p += len;
	}
	check_field(h.www_authenticate, sizeof(h.www_authenticate));
	check_field(h.server_authorization, sizeof(h.server_authorization));
	check_field(h.content_type, sizeof(h.content_type));
	if (h.reset_ms < -1 || h.reset_ms > (int64_t)INT32_MAX)
		abort();
	if (h.server_authorization[0])
		(void)hawk_verify_response(&cred, &req, &art, h.server_authorization,
					   h.content_type, p, (size_t)(end - p));
	if (h.www_authenticate[0])
		(void)hawk_verify_tsm(KEY, h.www_authenticate, NOW, &offset);

	tsapi_server_said((const char *)p, (size_t)(end - p), said);
	n = strnlen(said, sizeof(said));
	if (n > TSAPI_SAID_MAX)
		abort();
	for (size_t i = 0; i < n; i++)
		if (!isprint((unsigned char)said[i]) || said[i] == '"')
			abort();
	return 0;
}
