/* fuzz_hawk — libFuzzer target for the Hawk header parsers: hawk_parse(), and what reads a
 * Threat Stack answer's Server-Authorization (hawk_verify_response()) and a 401's
 * WWW-Authenticate (hawk_verify_tsm()), all with a fixed key and request.
 *
 * Input: the header value, '\n', the answer's Content-Type, '\n', the answer's body (missing
 * parts are empty). The header is copied to an exact-size NUL-terminated buffer, so ASan
 * sees any read past it. A parse must give NUL-terminated attributes of Hawk's character
 * set; the verifiers may only answer 0, -EBADMSG, -EACCES or -ENOENT, and a verified tsm
 * only an offset from the header's own ts. The corpus holds headers that verify (made with
 * hawk_mac()/hawk_tsm() for the values below), so mutations reach the hash and tsm compares.
 * Run with `make fuzz FUZZ_TARGETS=hawk`.
 */
#include "tsgraphd/hawk.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY "werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn"
#define NOW 1353832234

static const struct hawk_credentials cred = { .id = "dh37fgj492je", .key = KEY, .ext = "org" };
static const struct hawk_request req = {
	.method = "GET",
	.uri = "/v2/agents?status=online",
	.host = "api.threatstack.com",
	.port = 443,
};
static const struct hawk_artifacts art = { .ts = NOW, .nonce = "j4h3g2", .hash = "" };

/* The next '\n'-ended part of [*p, end) as a malloc'd string; *p moves past it. */
static char *part(const uint8_t **p, const uint8_t *end)
{
	const uint8_t *nl = memchr(*p, '\n', (size_t)(end - *p));
	size_t n = nl ? (size_t)(nl - *p) : (size_t)(end - *p);
	char *s = malloc(n + 1);

	if (!s)
		abort();
	memcpy(s, *p, n);
	s[n] = '\0';
	*p += nl ? n + 1 : n;
	return s;
}

static void check_attr(const char *v, size_t size)
{
	size_t n = strnlen(v, size);

	if (n >= size || !hawk_valid_value(v))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	char *header = part(&p, end), *content_type = part(&p, end);
	struct hawk_attrs a;
	int64_t offset = 0;
	int r;

	if (hawk_parse(header, &a) == 0) {
		check_attr(a.id, sizeof(a.id));
		check_attr(a.ts, sizeof(a.ts));
		check_attr(a.nonce, sizeof(a.nonce));
		check_attr(a.hash, sizeof(a.hash));
		check_attr(a.ext, sizeof(a.ext));
		check_attr(a.mac, sizeof(a.mac));
		check_attr(a.tsm, sizeof(a.tsm));
		check_attr(a.error, sizeof(a.error));
	}
	/* the body is the input's tail, so a read past it is past the fuzzer's buffer */
	r = hawk_verify_response(&cred, &req, &art, header, content_type, p, (size_t)(end - p));
	if (r != 0 && r != -EBADMSG && r != -EACCES)
		abort();
	r = hawk_verify_tsm(KEY, header, NOW, &offset);
	if (r == 0 && (hawk_parse(header, &a) != 0 || offset != strtoll(a.ts, NULL, 10) - NOW))
		abort();
	if (r != 0 && r != -EBADMSG && r != -EACCES && r != -ENOENT)
		abort();
	free(header);
	free(content_type);
	return 0;
}
