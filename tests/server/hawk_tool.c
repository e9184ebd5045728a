/* hawk_tool — exposes the project's Hawk module on the command line so that an independent
 * implementation (tests/hawk-interop.js, using the node hawk package) can check it both
 * ways. Credentials come from the environment (HAWK_ID, HAWK_KEY, HAWK_EXT), never argv.
 *
 *   hawk_tool sign METHOD URI HOST PORT TS NONCE [CONTENT_TYPE PAYLOAD]   → header
 *   hawk_tool verify-request METHOD URI HOST PORT HEADER [CONTENT_TYPE PAYLOAD]
 *   hawk_tool verify-response METHOD URI HOST PORT TS NONCE SERVER_AUTH CONTENT_TYPE BODY
 *   hawk_tool verify-tsm WWW_AUTHENTICATE NOW_SEC                          → offset
 *   hawk_tool tsm TS                                                       → tsm
 *
 * Exit status: 0 verified / printed, 1 rejected, 2 usage.
 */
#include "tsgraphd/hawk.h"
#include "tsgraphd/util.h"

#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

static int usage(void)
{
	fprintf(stderr,
		"usage: hawk_tool sign|verify-request|verify-response|verify-tsm|tsm ...\n");
	return 2;
}

static int request_from(char **argv, struct hawk_request *req)
{
	uint64_t port;

	if (parse_u64(argv[3], 1, 65535, &port) < 0)
		return -1;
	*req = (struct hawk_request){ .method = argv[0], .uri = argv[1], .host = argv[2] };
	req->port = (unsigned)port;
	(void)argv;
	return 0;
}

static bool same(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	return la == lb && la > 0 && CRYPTO_memcmp(a, b, la) == 0;
}

int main(int argc, char **argv)
{
	struct hawk_credentials cred = { .id = getenv("HAWK_ID"),
					 .key = getenv("HAWK_KEY"),
					 .ext = getenv("HAWK_EXT") };
	struct hawk_request req;
	struct hawk_artifacts art = { 0 };
	int64_t ts;

	if (argc < 2 || !cred.key)
		return usage();
	if (strcmp(argv[1], "sign") == 0 && (argc == 8 || argc == 10)) {
		char *header = NULL;

		if (request_from(argv + 2, &req) < 0 || parse_i64(argv[6], 0, INT64_MAX, &ts) < 0)
			return usage();
		if (argc == 10) {
			req.content_type = argv[8];
			req.payload = argv[9];
			req.payload_len = strlen(argv[9]);
		}
		if (!cred.id || hawk_header(&cred, &req, ts, argv[7], &header, &art) < 0)
			return 1;
		printf("%s\n", header);
		free(header);
		return 0;
	}
	if (strcmp(argv[1], "verify-request") == 0 && (argc == 7 || argc == 9)) {
		char mac[HAWK_B64_SHA256_LEN + 1], hash[HAWK_B64_SHA256_LEN + 1];
		struct hawk_attrs a;

		if (request_from(argv + 2, &req) < 0)
			return usage();
		if (hawk_parse(argv[6], &a) < 0 || !*a.mac || !*a.ts || !*a.nonce ||
		    parse_i64(a.ts, 0, INT64_MAX, &ts) < 0) {
			fprintf(stderr, "header does not parse\n");
			return 1;
		}
		if (!cred.id || strcmp(a.id, cred.id) != 0) {
			fprintf(stderr, "wrong id\n");
			return 1;
		}
		if (argc == 9) {
			if (hawk_payload_hash(argv[7], argv[8], strlen(argv[8]), hash) < 0 ||
			    !same(hash, a.hash)) {
				fprintf(stderr, "payload hash mismatch\n");
				return 1;
			}
		}
		if (hawk_mac(cred.key, "header", ts, a.nonce, &req, a.hash, a.ext, mac) < 0 ||
		    !same(mac, a.mac)) {
			fprintf(stderr, "mac mismatch\n");
			return 1;
		}
		return 0;
	}
	if (strcmp(argv[1], "verify-response") == 0 && argc == 11) {
		if (request_from(argv + 2, &req) < 0 || parse_i64(argv[6], 0, INT64_MAX, &ts) < 0 ||
		    strlen(argv[7]) > HAWK_ATTR_MAX)
			return usage();
		art.ts = ts;
		memcpy(art.nonce, argv[7], strlen(argv[7]) + 1);
		if (hawk_verify_response(&cred, &req, &art, argv[8], argv[9], argv[10],
					 strlen(argv[10])) < 0) {
			fprintf(stderr, "response does not verify\n");
			return 1;
		}
		return 0;
	}
	if (strcmp(argv[1], "verify-tsm") == 0 && argc == 4) {
		int64_t now, offset;

		if (parse_i64(argv[3], 0, INT64_MAX, &now) < 0)
			return usage();
		if (hawk_verify_tsm(cred.key, argv[2], now, &offset) < 0) {
			fprintf(stderr, "tsm does not verify\n");
			return 1;
		}
		printf("%" PRId64 "\n", offset);
		return 0;
	}
	if (strcmp(argv[1], "tsm") == 0 && argc == 3) {
		char tsm[HAWK_B64_SHA256_LEN + 1];

		if (parse_i64(argv[2], 0, INT64_MAX, &ts) < 0 || hawk_tsm(cred.key, ts, tsm) < 0)
			return usage();
		printf("%s\n", tsm);
		return 0;
	}
	return usage();
}
