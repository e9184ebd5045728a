/* canon — canonical JSON and its SHA-256.
 *
 * One recursive writer feeds a sink that is either a bounded struct buf (canon_serialize)
 * or an OpenSSL digest context (canon_hash), so hashing never materialises the text and
 * has no size limit of its own. Object members are sorted with strcmp, which compares as
 * unsigned char: bytewise UTF-8 order. Numbers: json-c integers print in plain decimal
 * (uint64 values above INT64_MAX included); doubles print with the fewest significant
 * digits ("%.*g", 1..17) that strtod reads back to the same value, so 0.1 is "0.1" and
 * 1e21 is "1e+21"; an integral double up to 2^53 prints as the integer it is (3.0 is "3",
 * the same text as the integer 3: equal numbers hash equal). -0.0 is written "0" for the
 * same reason. NaN and infinities have no JSON form: -EINVAL. Nesting deeper
 * than CANON_DEPTH_MAX is -ELOOP, so hostile input cannot exhaust the stack. Strings come
 * out as valid UTF-8 whatever bytes the API or the config put in them: each ill-formed
 * sequence and each NUL is replaced with U+FFFD by one fixed rule (write_string), so the
 * repaired text, and so the hash, is the same every time.
 */
#include "tsgraphd/canon.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#define CANON_DEPTH_MAX	 64
#define MEMBERS_ON_STACK 64

struct sink {
	struct buf *b;
	EVP_MD_CTX *md;
};

/* Called for every token and run of text: the common case (room in the buffer) is a copy. */
static int put(struct sink *s, const void *p, size_t len)
{
	struct buf *b = s->b;

	if (b && b->cap - b->len > len) { /* room for len bytes and the NUL */
		memcpy(b->data + b->len, p, len);
		b->len += len;
		b->data[b->len] = '\0';
		return 0;
	}
	if (b)
		return buf_append(b, p, len);
	return EVP_DigestUpdate(s->md, p, len) == 1 ? 0 : -EIO;
}

/* Bytes a string cannot carry as they are: controls, '"', '\\' and every non-ASCII byte
 * (checked as UTF-8). Plain ASCII text, most of what is written, skips in a tight loop. */
static const bool special[256] = {
	[0x00 ... 0x1f] = true,
	['"'] = true,
	['\\'] = true,
	[0x80 ... 0xff] = true,
};

static int puts_(struct sink *s, const char *p)
{
	return put(s, p, strlen(p));
}

/* The length of the UTF-8 sequence at p[0..avail), and whether it is well formed (Unicode
 * 3.9, table 3-7: no overlongs, no surrogates, nothing above U+10FFFF). An ill-formed one is
 * its maximal subpart — the lead byte and the continuation bytes that could still have
 * completed it — or one byte, so a repair replaces each maximal subpart with one U+FFFD:
 * what the Unicode standard recommends and what most decoders do, hence stable. */
static size_t utf8_sequence(const unsigned char *p, size_t avail, bool *ret_valid)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t need;

	*ret_valid = true;
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		need = 1;
	} else if (c >= 0xe0 && c <= 0xef) {
		need = 2;
		if (c == 0xe0)
			lo = 0xa0; /* else overlong */
		else if (c == 0xed)
			hi = 0x9f; /* else a UTF-16 surrogate, U+D800..U+DFFF */
	} else if (c >= 0xf0 && c <= 0xf4) {
		need = 3;
		if (c == 0xf0)
			lo = 0x90; /* else overlong */
		else if (c == 0xf4)
			hi = 0x8f; /* else above U+10FFFF */
	} else {
		*ret_valid = false; /* a continuation byte, C0, C1 or F5..FF */
		return 1;
	}
	for (size_t i = 1; i <= need; i++) {
		if (i >= avail || p[i] < lo || p[i] > hi) {
			*ret_valid = false;
			return i;
		}
		lo = 0x80;
		hi = 0xbf;
	}
	return need + 1;
}

/* Writes p[0..len) as a JSON string that is valid UTF-8 whatever p holds: well-formed UTF-8
 * passes through raw, each ill-formed sequence (see utf8_sequence) and each NUL becomes
 * U+FFFD (a NUL would cut the string short in any C consumer), and only the escapes JSON
 * requires are written. json-c (0.16, Debian 12) reads a lone "\ud800" escape as U+FFFD
 * itself; the raw bytes of a surrogate (ED A0 80) are three ill-formed bytes here. */
static int write_string(struct sink *s, const char *p, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
	const unsigned char *u = (const unsigned char *)p;
	size_t run = 0, i = 0;
	int r;

	if ((r = put(s, "\"", 1)) < 0)
		return r;
	while (i < len) {
		unsigned char c;
		const char *esc;
		char tmp[7];
		size_t n = 2, skip = 1;
		bool valid;

		while (i < len && !special[u[i]])
			i++;
		if (i == len)
			break;
		c = u[i];
		if (c >= 0x80) {
			skip = utf8_sequence(u + i, len - i, &valid);
			if (valid) {
				i += skip;
				continue;
			}
			esc = replacement;
			n = sizeof(replacement) - 1;
		} else if (c == 0) {
			esc = replacement;
			n = sizeof(replacement) - 1;
		} else {
			tmp[0] = '\\';
			switch (c) {
			case '"':
			case '\\':
				tmp[1] = (char)c;
				break;
			case '\b':
				tmp[1] = 'b';
				break;
			case '\f':
				tmp[1] = 'f';
				break;
			case '\n':
				tmp[1] = 'n';
				break;
			case '\r':
				tmp[1] = 'r';
				break;
			case '\t':
				tmp[1] = 't';
				break;
			default:
				memcpy(tmp + 1, "u00", 3);
				tmp[4] = hex[c >> 4];
				tmp[5] = hex[c & 15];
				n = 6;
			}
			esc = tmp;
		}
		if ((r = put(s, p + run, i - run)) < 0 || (r = put(s, esc, n)) < 0)
			return r;
		i += skip;
		run = i;
	}
	if ((r = put(s, p + run, len - run)) < 0)
		return r;
	return put(s, "\"", 1);
}

/* Plain decimal, as "%" PRId64 prints it, without the cost of printf. */
static int write_int64(struct sink *s, int64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;

	do {
		tmp[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		tmp[--i] = '-';
	return put(s, tmp + i, sizeof(tmp) - i);
}

static int write_double(struct sink *s, double d)
{
	char tmp[40];

	if (!isfinite(d))
		return -EINVAL;
	if (d == 0)
		return put(s, "0", 1); /* -0.0 too */
	if (fabs(d) <= 9007199254740992.0 && d == trunc(d)) {
		/* Integral and exact: the same text as the integer, so 3.0 and 3 agree. */
		snprintf(tmp, sizeof(tmp), "%.0f", d);
		return puts_(s, tmp);
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, d);
		if (strtod(tmp, NULL) == d)
			break;
	}
	return puts_(s, tmp);
}

struct member {
	const char *key;
	json_object *val;
};

static int cmp_member(const void *a, const void *b)
{
	return strcmp(((const struct member *)a)->key, ((const struct member *)b)->key);
}

static int write_value(struct sink *s, json_object *o, int depth);

/* Members sorted by key. Graph objects have a few dozen members, mostly in order already:
 * they sit on the stack and an insertion sort costs about one compare each; bigger objects
 * (from outside) take the heap and qsort. */
static int write_object(struct sink *s, json_object *o, int depth)
{
	struct member small[MEMBERS_ON_STACK], *m = small;
	size_t n = (size_t)json_object_object_length(o), i = 0;
	int r;

	if (n > MEMBERS_ON_STACK && !(m = calloc(n, sizeof(*m))))
		return -ENOMEM;
	json_object_object_foreach(o, k, v)
	{
		if (i == n)
			break;
		m[i++] = (struct member){ k, v };
	}
	n = i;
	if (m != small) {
		qsort(m, n, sizeof(*m), cmp_member);
	} else {
		for (i = 1; i < n; i++) {
			struct member x = m[i];
			size_t j = i;

			for (; j > 0 && strcmp(m[j - 1].key, x.key) > 0; j--)
				m[j] = m[j - 1];
			m[j] = x;
		}
	}
	if ((r = put(s, "{", 1)) < 0)
		goto out;
	for (i = 0; i < n; i++) {
		if (i && (r = put(s, ",", 1)) < 0)
			goto out;
		if ((r = write_string(s, m[i].key, strlen(m[i].key))) < 0 ||
		    (r = put(s, ":", 1)) < 0)
			goto out;
		if ((r = write_value(s, m[i].val, depth + 1)) < 0)
			goto out;
	}
	r = put(s, "}", 1);
out:
	if (m != small)
		free(m);
	return r;
}

static int write_value(struct sink *s, json_object *o, int depth)
{
	char tmp[32];
	int r;

	if (depth > CANON_DEPTH_MAX)
		return -ELOOP;
	switch (json_object_get_type(o)) {
	case json_type_null:
		return put(s, "null", 4);
	case json_type_boolean:
		return puts_(s, json_object_get_boolean(o) ? "true" : "false");
	case json_type_int: {
		int64_t v = json_object_get_int64(o);

		if (v == INT64_MAX) {
			snprintf(tmp, sizeof(tmp), "%" PRIu64, json_object_get_uint64(o));
			return puts_(s, tmp);
		}
		return write_int64(s, v);
	}
	case json_type_double:
		return write_double(s, json_object_get_double(o));
	case json_type_string:
		return write_string(s, json_object_get_string(o),
				    (size_t)json_object_get_string_len(o));
	case json_type_array: {
		size_t n = json_object_array_length(o);

		if ((r = put(s, "[", 1)) < 0)
			return r;
		for (size_t i = 0; i < n; i++) {
			if (i && (r = put(s, ",", 1)) < 0)
				return r;
			if ((r = write_value(s, json_object_array_get_idx(o, i), depth + 1)) < 0)
				return r;
		}
		return put(s, "]", 1);
	}
	case json_type_object:
		return write_object(s, o, depth);
	}
	return -EINVAL;
}

int canon_write_string(struct buf *out, const char *s, size_t len)
{
	struct sink k = { .b = out };

	return write_string(&k, s, len);
}

int canon_write_int64(struct buf *out, int64_t v)
{
	struct sink k = { .b = out };

	return write_int64(&k, v);
}

int canon_serialize(json_object *o, struct buf *out)
{
	struct sink s = { .b = out };
	size_t start = out->len;
	int r;

	r = write_value(&s, o, 0);
	if (r < 0) {
		/* Leave out as it was: a partial canonical form is worse than none. */
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
	}
	return r;
}

static void to_hex(const unsigned char *md, unsigned int len, char out[static CANON_HASH_HEX + 1])
{
	static const char hex[] = "0123456789abcdef";

	for (unsigned int i = 0; i < len; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 15];
	}
	out[CANON_HASH_HEX] = '\0';
}

struct canon_digest {
	EVP_MD *md; /* fetched once: an implicit fetch per digest costs more than the digest */
	EVP_MD_CTX *ctx;
};

int canon_digest_new(struct canon_digest **ret)
{
	struct canon_digest *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	d->md = EVP_MD_fetch(NULL, "SHA256", NULL);
	d->ctx = EVP_MD_CTX_new();
	if (!d->md || !d->ctx) {
		canon_digest_free(d);
		return -ENOMEM;
	}
	*ret = d;
	return 0;
}

void canon_digest_free(struct canon_digest *d)
{
	if (!d)
		return;
	EVP_MD_CTX_free(d->ctx);
	EVP_MD_free(d->md);
	free(d);
}

int canon_digest_hex(struct canon_digest *d, const void *data, size_t len,
		     char out[static CANON_HASH_HEX + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_DigestInit_ex2(d->ctx, d->md, NULL) != 1 ||
	    EVP_DigestUpdate(d->ctx, data, len) != 1 ||
	    EVP_DigestFinal_ex(d->ctx, md, &mdlen) != 1 || mdlen != CANON_HASH_HEX / 2)
		return -EIO;
	to_hex(md, mdlen, out);
	return 0;
}

int canon_sha256_hex(const void *data, size_t len, char out[static CANON_HASH_HEX + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 ||
	    mdlen != CANON_HASH_HEX / 2)
		return -EIO;
	to_hex(md, mdlen, out);
	return 0;
}

int canon_hash(json_object *o, char out[static CANON_HASH_HEX + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	struct sink s = { 0 };
	int r;

	s.md = EVP_MD_CTX_new();
	if (!s.md)
		return -ENOMEM;
	if (EVP_DigestInit_ex(s.md, EVP_sha256(), NULL) != 1) {
		r = -EIO;
		goto out;
	}
	if ((r = write_value(&s, o, 0)) < 0)
		goto out;
	if (EVP_DigestFinal_ex(s.md, md, &mdlen) != 1 || mdlen != CANON_HASH_HEX / 2) {
		r = -EIO;
		goto out;
	}
	to_hex(md, mdlen, out);
	r = 0;
out:
	EVP_MD_CTX_free(s.md);
	return r;
}

/* --- changed properties --- */

#define CHANGED_MAX 4096 /* properties compared per object */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Whether two JSON values have the same canonical form. */
static int same_value(json_object *a, json_object *b, bool *ret)
{
	struct buf ba, bb;
	int r;

	/* A member's value is part of a stored object, itself at most CANON_OBJECT_MAX. */
	buf_init(&ba, CANON_OBJECT_MAX);
	buf_init(&bb, CANON_OBJECT_MAX);
	r = canon_serialize(a, &ba);
	if (r == 0)
		r = canon_serialize(b, &bb);
	if (r == 0)
		*ret = ba.len == bb.len && (ba.len == 0 || memcmp(ba.data, bb.data, ba.len) == 0);
	buf_free(&ba);
	buf_free(&bb);
	return r;
}

int canon_changed_properties(const char *old_json, const char *new_json, struct buf *out)
{
	json_object *old = NULL, *new = NULL, *arr = NULL;
	const char **names = NULL;
	size_t n = 0;
	int r = -EINVAL;

	if (!old_json || !new_json)
		goto out;
	old = json_tokener_parse(old_json);
	new = json_tokener_parse(new_json);
	if (!json_object_is_type(old, json_type_object) ||
	    !json_object_is_type(new, json_type_object))
		goto out;
	names = calloc(CHANGED_MAX, sizeof(*names));
	if (!names) {
		r = -ENOMEM;
		goto out;
	}
	/* Members of new that are absent from old or differ, then members only old has. */
	json_object_object_foreach(new, key, val)
	{
		json_object *before = NULL;
		bool same = false;

		if (json_object_object_get_ex(old, key, &before)) {
			r = same_value(before, val, &same);
			if (r < 0)
				goto out;
		}
		if (!same) {
			if (n == CHANGED_MAX) {
				r = -E2BIG;
				goto out;
			}
			names[n++] = key;
		}
	}
	json_object_object_foreach(old, okey, oval)
	{
		(void)oval;
		if (!json_object_object_get_ex(new, okey, NULL)) {
			if (n == CHANGED_MAX) {
				r = -E2BIG;
				goto out;
			}
			names[n++] = okey;
		}
	}
	qsort(names, n, sizeof(*names), cmp_str);
	arr = json_object_new_array_ext((int)n);
	if (!arr) {
		r = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		json_object *s = json_object_new_string(names[i]);

		if (!s || json_object_array_add(arr, s) < 0) {
			json_object_put(s);
			r = -ENOMEM;
			goto out;
		}
	}
	r = buf_puts(out, json_object_to_json_string_ext(
				  arr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
out:
	json_object_put(arr);
	free(names);
	json_object_put(old);
	json_object_put(new);
	return r;
}
