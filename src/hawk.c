/* hawk — Hawk 1 header authentication with sha256.
 *
 * The normalized string is built into a bounded buffer and MAC'd with HMAC-SHA256; every
 * comparison of a MAC or hash goes through CRYPTO_memcmp after a length check, so timing
 * tells an attacker nothing about how much of a MAC matched. Attribute values are held to
 * Hawk's own character set both ways: we never emit a header a server would reject, and a
 * peer's header with a quote or backslash in it does not parse.
 */
#include "tsgraphd/hawk.h"
#include "tsgraphd/util.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define NORMALIZED_MAX 8192
#define HEADER_MAX     4096 /* the Authorization header hawk_header() builds */

int hawk_valid_value(const char *s)
{
	static const char extra[] = " !#$%&'()*+,-./:;<=>?@[]^_`{|}~";

	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && !strchr(extra, *s))
			return 0;
	return 1;
}

static void b64(const unsigned char *in, size_t len, char *out)
{
	EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

int hawk_nonce(char out[static HAWK_NONCE_LEN + 1])
{
	static const char alphabet[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	unsigned char raw[HAWK_NONCE_LEN];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -EIO;
	for (size_t i = 0; i < HAWK_NONCE_LEN; i++)
		out[i] = alphabet[raw[i] & 63];
	out[HAWK_NONCE_LEN] = '\0';
	return 0;
}

int hawk_payload_hash(const char *content_type, const void *payload, size_t len,
		      char out[static HAWK_B64_SHA256_LEN + 1])
{
	unsigned char md[32];
	char mime[HAWK_MEDIA_TYPE_MAX];
	size_t n = 0;
	EVP_MD_CTX *ctx;
	int ok;

	/* Only the media type counts: lower case, parameters and surrounding blanks dropped. */
	if (content_type) {
		while (*content_type == ' ' || *content_type == '\t')
			content_type++;
		for (; content_type[n] && content_type[n] != ';' && n < sizeof(mime) - 1; n++)
			mime[n] = (char)tolower((unsigned char)content_type[n]);
		while (n > 0 && (mime[n - 1] == ' ' || mime[n - 1] == '\t'))
			n--;
	}
	mime[n] = '\0';

	ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -ENOMEM;
	ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
	     EVP_DigestUpdate(ctx, "hawk.1.payload\n", 15) && EVP_DigestUpdate(ctx, mime, n) &&
	     EVP_DigestUpdate(ctx, "\n", 1) && (len == 0 || EVP_DigestUpdate(ctx, payload, len)) &&
	     EVP_DigestUpdate(ctx, "\n", 1) && EVP_DigestFinal_ex(ctx, md, NULL);
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -EIO;
	b64(md, sizeof(md), out);
	return 0;
}

static int hmac_b64(const char *key, const char *data, size_t len,
		    char out[static HAWK_B64_SHA256_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (!HMAC(EVP_sha256(), key, (int)strlen(key), (const unsigned char *)data, len, md,
		  &mdlen))
		return -EIO;
	b64(md, mdlen, out);
	explicit_bzero(md, sizeof(md));
	return 0;
}

/* ext escaping per Hawk: backslash doubled, newline as "\n". */
static int append_escaped(struct buf *b, const char *s)
{
	int r = 0;

	for (; *s && r == 0; s++) {
		if (*s == '\\')
			r = buf_puts(b, "\\\\");
		else if (*s == '\n')
			r = buf_puts(b, "\\n");
		else
			r = buf_append(b, s, 1);
	}
	return r;
}

int hawk_mac(const char *key, const char *type, int64_t ts, const char *nonce,
	     const struct hawk_request *req, const char *hash, const char *ext,
	     char out[static HAWK_B64_SHA256_LEN + 1])
{
	struct buf b;
	int r;

	if (!key || !type || !nonce || !req || !req->method || !req->uri || !req->host)
		return -EINVAL;
	buf_init(&b, NORMALIZED_MAX);
	r = buf_printf(&b, "hawk.1.%s\n%" PRId64 "\n%s\n", type, ts, nonce);
	for (const char *m = req->method; r == 0 && *m; m++) {
		char c = (char)toupper((unsigned char)*m);
		r = buf_append(&b, &c, 1);
	}
	if (r == 0)
		r = buf_printf(&b, "\n%s\n", req->uri);
	for (const char *h = req->host; r == 0 && *h; h++) {
		char c = (char)tolower((unsigned char)*h);
		r = buf_append(&b, &c, 1);
	}
	if (r == 0)
		r = buf_printf(&b, "\n%u\n%s\n", req->port, hash ? hash : "");
	if (r == 0)
		r = append_escaped(&b, ext ? ext : "");
	if (r == 0)
		r = buf_puts(&b, "\n");
	if (r == 0)
		r = hmac_b64(key, b.data, b.len, out);
	if (b.data)
		explicit_bzero(b.data, b.len);
	buf_free(&b);
	return r;
}

int hawk_tsm(const char *key, int64_t ts, char out[static HAWK_B64_SHA256_LEN + 1])
{
	char data[64];
	int n = snprintf(data, sizeof(data), "hawk.1.ts\n%" PRId64 "\n", ts);

	if (!key || n < 0 || (size_t)n >= sizeof(data))
		return -EINVAL;
	return hmac_b64(key, data, (size_t)n, out);
}

int hawk_header(const struct hawk_credentials *cred, const struct hawk_request *req, int64_t ts,
		const char *nonce, char **ret_header, struct hawk_artifacts *ret_artifacts)
{
	char hash[HAWK_B64_SHA256_LEN + 1] = "", mac[HAWK_B64_SHA256_LEN + 1];
	const char *ext = cred->ext ? cred->ext : "";
	bool has_payload = req->content_type && *req->content_type;
	struct buf b;
	int r;

	if (!cred->id || !*cred->id || !cred->key || !*cred->key || !nonce || !*nonce)
		return -EINVAL;
	if (!hawk_valid_value(cred->id) || !hawk_valid_value(ext) || !hawk_valid_value(nonce) ||
	    strlen(nonce) > HAWK_ATTR_MAX || strlen(ext) > HAWK_ATTR_MAX)
		return -EINVAL;
	if (has_payload) {
		r = hawk_payload_hash(req->content_type, req->payload, req->payload_len, hash);
		if (r < 0)
			return r;
	}
	r = hawk_mac(cred->key, "header", ts, nonce, req, hash, ext, mac);
	if (r < 0)
		return r;

	buf_init(&b, HEADER_MAX);
	r = buf_printf(&b, "Hawk id=\"%s\", ts=\"%" PRId64 "\", nonce=\"%s\"", cred->id, ts, nonce);
	if (r == 0 && has_payload)
		r = buf_printf(&b, ", hash=\"%s\"", hash);
	if (r == 0 && *ext)
		r = buf_printf(&b, ", ext=\"%s\"", ext);
	if (r == 0)
		r = buf_printf(&b, ", mac=\"%s\"", mac);
	if (r < 0) {
		buf_free(&b);
		return r;
	}
	if (ret_artifacts) {
		ret_artifacts->ts = ts;
		snprintf(ret_artifacts->nonce, sizeof(ret_artifacts->nonce), "%s", nonce);
		snprintf(ret_artifacts->hash, sizeof(ret_artifacts->hash), "%s", hash);
	}
	*ret_header = buf_steal(&b);
	return *ret_header ? 0 : -ENOMEM;
}

static bool b64_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	return la == lb && la > 0 && CRYPTO_memcmp(a, b, la) == 0;
}

int hawk_parse(const char *header, struct hawk_attrs *ret)
{
	struct hawk_attrs a;
	const char *p = header;
	unsigned seen = 0;

	memset(&a, 0, sizeof(a));
	if (!header || strncasecmp(p, "Hawk", 4) != 0 || (p[4] != ' ' && p[4] != '\0'))
		return -EBADMSG;
	p += 4;
	for (;;) {
		static const struct {
			const char *name;
			size_t off, size;
		} fields[] = {
#define F(n) { #n, offsetof(struct hawk_attrs, n), sizeof(((struct hawk_attrs *)0)->n) }
			F(id), F(ts), F(nonce), F(hash), F(ext), F(mac), F(tsm), F(error),
#undef F
		};
		char name[16];
		size_t n = 0, i, vlen;
		const char *v;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		if (!*p)
			break;
		while (isalpha((unsigned char)p[n]) && n < sizeof(name) - 1) {
			name[n] = p[n];
			n++;
		}
		name[n] = '\0';
		p += n;
		if (n == 0 || p[0] != '=' || p[1] != '"')
			return -EBADMSG;
		v = p + 2;
		p = strchr(v, '"');
		if (!p)
			return -EBADMSG;
		vlen = (size_t)(p - v);
		p++;
		for (i = 0; i < ARRAY_SIZE(fields); i++)
			if (strcmp(name, fields[i].name) == 0)
				break;
		if (i == ARRAY_SIZE(fields) || (seen & (1u << i)) || vlen >= fields[i].size)
			return -EBADMSG;
		seen |= 1u << i;
		memcpy((char *)&a + fields[i].off, v, vlen);
		((char *)&a + fields[i].off)[vlen] = '\0';
		if (!hawk_valid_value((char *)&a + fields[i].off))
			return -EBADMSG;
		if (*p && *p != ',' && *p != ' ')
			return -EBADMSG;
	}
	*ret = a;
	return 0;
}

int hawk_verify_response(const struct hawk_credentials *cred, const struct hawk_request *req,
			 const struct hawk_artifacts *art, const char *server_authorization,
			 const char *content_type, const void *body, size_t body_len)
{
	char mac[HAWK_B64_SHA256_LEN + 1], hash[HAWK_B64_SHA256_LEN + 1];
	struct hawk_attrs a;
	int r;

	r = hawk_parse(server_authorization, &a);
	if (r < 0)
		return r;
	if (!*a.mac)
		return -EBADMSG;
	r = hawk_mac(cred->key, "response", art->ts, art->nonce, req, a.hash, a.ext, mac);
	if (r < 0)
		return r;
	if (!b64_equal(a.mac, mac))
		return -EACCES;
	if (!*a.hash)
		return 0;
	r = hawk_payload_hash(content_type, body, body_len, hash);
	if (r < 0)
		return r;
	return b64_equal(a.hash, hash) ? 0 : -EACCES;
}

int hawk_verify_tsm(const char *key, const char *www_authenticate, int64_t now_sec,
		    int64_t *ret_offset)
{
	char tsm[HAWK_B64_SHA256_LEN + 1];
	struct hawk_attrs a;
	int64_t ts;
	int r;

	r = hawk_parse(www_authenticate, &a);
	if (r < 0)
		return r;
	if (!*a.ts || !*a.tsm)
		return -ENOENT;
	r = parse_i64(a.ts, 0, INT64_MAX / 1000, &ts);
	if (r < 0)
		return -EBADMSG;
	r = hawk_tsm(key, ts, tsm);
	if (r < 0)
		return r;
	if (!b64_equal(a.tsm, tsm))
		return -EACCES;
	*ret_offset = ts - now_sec;
	return 0;
}
