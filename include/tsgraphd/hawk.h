/* hawk — Hawk HTTP authentication (sha256): request signing, response verification and the
 * stale-timestamp (tsm) handshake, as the Threat Stack API uses them.
 *
 * Pure functions over caller-owned strings: nothing is kept between calls, nothing logs.
 * Secrets pass through as const pointers and are never copied except into stack buffers
 * that are wiped before return. hawk_header() returns a malloc'd header value the caller
 * frees. Any thread may call anything here.
 *
 * Errors: -EINVAL for arguments outside Hawk's grammar (e.g. an ext with '"' in it),
 * -EBADMSG for a header that does not parse, -EACCES for a MAC or hash that does not match.
 */
#ifndef TSGRAPHD_HAWK_H
#define TSGRAPHD_HAWK_H

#include <stddef.h>
#include <stdint.h>

#define HAWK_B64_SHA256_LEN 44 /* base64 of 32 bytes */
#define HAWK_NONCE_LEN	    16
#define HAWK_ATTR_MAX	    512 /* longest attribute value we accept */
#define HAWK_MEDIA_TYPE_MAX 256 /* a Content-Type is hashed on at most this - 1 bytes */

struct hawk_credentials {
	const char *id;
	const char *key;
	const char *ext; /* Threat Stack: the organization id; may be NULL */
};

/* What a request signature covers. uri is the path and query exactly as sent. */
struct hawk_request {
	const char *method;
	const char *uri;
	const char *host;
	unsigned port;
	const char *content_type; /* NULL or "" with no payload: no hash line */
	const void *payload;
	size_t payload_len;
};

/* What a client keeps of its own request to verify the server's answer. */
struct hawk_artifacts {
	int64_t ts;
	char nonce[HAWK_ATTR_MAX + 1];
	char hash[HAWK_B64_SHA256_LEN + 1]; /* empty when the request had no payload */
};

/* A parsed "Hawk k="v", ..." header; absent attributes are empty strings. */
struct hawk_attrs {
	char id[HAWK_ATTR_MAX + 1];
	char ts[32];
	char nonce[HAWK_ATTR_MAX + 1];
	char hash[HAWK_ATTR_MAX + 1];
	char ext[HAWK_ATTR_MAX + 1];
	char mac[HAWK_ATTR_MAX + 1];
	char tsm[HAWK_ATTR_MAX + 1];
	char error[HAWK_ATTR_MAX + 1];
};

/* A fresh random nonce from the CSPRNG, HAWK_NONCE_LEN url-safe characters. */
int hawk_nonce(char out[static HAWK_NONCE_LEN + 1]);
/* base64(SHA256("hawk.1.payload\n" + mime type, lower case, no parameters + "\n" + body + "\n")) */
int hawk_payload_hash(const char *content_type, const void *payload, size_t len,
		      char out[static HAWK_B64_SHA256_LEN + 1]);
/* The MAC over Hawk's normalized string; type is "header" or "response". */
int hawk_mac(const char *key, const char *type, int64_t ts, const char *nonce,
	     const struct hawk_request *req, const char *hash, const char *ext,
	     char out[static HAWK_B64_SHA256_LEN + 1]);
/* base64(HMAC-SHA256(key, "hawk.1.ts\n" + ts + "\n")) */
int hawk_tsm(const char *key, int64_t ts, char out[static HAWK_B64_SHA256_LEN + 1]);
/* The Authorization header value for req, signed at ts with nonce. */
int hawk_header(const struct hawk_credentials *cred, const struct hawk_request *req, int64_t ts,
		const char *nonce, char **ret_header, struct hawk_artifacts *ret_artifacts);
/* Checks a Server-Authorization value against the request it answers and, when the header
 * carries a hash, against the response body. */
int hawk_verify_response(const struct hawk_credentials *cred, const struct hawk_request *req,
			 const struct hawk_artifacts *art, const char *server_authorization,
			 const char *content_type, const void *body, size_t body_len);
/* Checks a 401's WWW-Authenticate ts/tsm; on success *ret_offset = server ts - now_sec. */
int hawk_verify_tsm(const char *key, const char *www_authenticate, int64_t now_sec,
		    int64_t *ret_offset);
/* Parses "Hawk k="v", ..." (scheme case-insensitive); unknown or repeated attributes,
 * values outside Hawk's character set or longer than the fields are -EBADMSG. */
int hawk_parse(const char *header, struct hawk_attrs *ret);
/* true when every byte of s is allowed inside a Hawk attribute value. */
int hawk_valid_value(const char *s);

#endif
