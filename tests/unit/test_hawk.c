/* Unit tests for hawk: the published vectors of the Hawk specification, a response vector
 * and a tsm vector computed with the reference implementation (node hawk 9), and the ways a
 * header can be malformed or forged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tsgraphd/hawk.h"

#define KEY "werxhqb98rpaxn39848xrunpaw3489ruxnpa98w4rxn"

static const struct hawk_credentials cred = {
	.id = "dh37fgj492je",
	.key = KEY,
	.ext = "some-app-ext-data",
};

static const struct hawk_request req = {
	.method = "GET",
	.uri = "/resource/1?b=1&a=2",
	.host = "example.com",
	.port = 8000,
};

static void test_spec_header_vector(void **state)
{
	struct hawk_artifacts art;
	char *h = NULL;

	(void)state;
	assert_int_equal(hawk_header(&cred, &req, 1353832234, "j4h3g2", &h, &art), 0);
	assert_string_equal(h, "Hawk id=\"dh37fgj492je\", ts=\"1353832234\", nonce=\"j4h3g2\", "
			       "ext=\"some-app-ext-data\", "
			       "mac=\"6R4rV5iE+NPoym+WwjeHzjAGXUtLNIxmo1vpMofpLAE=\"");
	assert_int_equal(art.ts, 1353832234);
	assert_string_equal(art.nonce, "j4h3g2");
	assert_string_equal(art.hash, "");
	free(h);
}

static void test_spec_payload_vector(void **state)
{
	char hash[HAWK_B64_SHA256_LEN + 1];
	const char *body = "Thank you for flying Hawk";

	(void)state;
	assert_int_equal(hawk_payload_hash("text/plain", body, strlen(body), hash), 0);
	assert_string_equal(hash, "Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY=");
	/* Parameters and case of the content type do not count. */
	assert_int_equal(hawk_payload_hash(" Text/Plain; charset=utf-8", body, strlen(body), hash), 0);
	assert_string_equal(hash, "Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY=");
}

static void test_header_with_payload_carries_hash(void **state)
{
	struct hawk_request post = req;
	struct hawk_artifacts art;
	char *h = NULL;

	(void)state;
	post.method = "post";
	post.content_type = "text/plain";
	post.payload = "Thank you for flying Hawk";
	post.payload_len = strlen(post.payload);
	assert_int_equal(hawk_header(&cred, &post, 1353832234, "j4h3g2", &h, &art), 0);
	assert_non_null(strstr(h, "hash=\"Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY=\""));
	assert_string_equal(art.hash, "Yi9LfIIFRtBEPt74PVmbTF/xVAwPn7ub15ePICfgnuY=");
	free(h);
}

static const struct hawk_artifacts art_vec = { .ts = 1353832234, .nonce = "j4h3g2" };
#define BODY "{\"status\":\"ok\"}"
/* From node hawk 9.0.1: crypto.calculateMac('response', …) over the spec request. */
#define RESP_HASH "aiy+1zw8PBgzNkEgAi27IbMd07w4Hr5HQ2NuXoMlCTI="
#define RESP_MAC_EXT "1y4JMEx9q6zZoJ1WogHUIkzcCOZ2m98d594+ECSrsLY="
#define RESP_MAC "+mxxzQoYyovX2vs9xw+mAa+ajRSY3vKlFO9t8yiQZBg="

static void test_response_vector(void **state)
{
	(void)state;
	assert_int_equal(hawk_verify_response(&cred, &req, &art_vec,
					      "Hawk mac=\"" RESP_MAC_EXT "\", hash=\"" RESP_HASH
					      "\", ext=\"response-ext\"",
					      "application/json", BODY, strlen(BODY)),
			 0);
	assert_int_equal(hawk_verify_response(&cred, &req, &art_vec,
					      "Hawk mac=\"" RESP_MAC "\", hash=\"" RESP_HASH "\"",
					      "application/json; charset=utf-8", BODY, strlen(BODY)),
			 0);
}

static void test_response_forgeries(void **state)
{
	struct hawk_artifacts other = art_vec;
	struct hawk_credentials wrong = cred;

	(void)state;
	/* Body changed after signing. */
	assert_int_equal(hawk_verify_response(&cred, &req, &art_vec,
					      "Hawk mac=\"" RESP_MAC "\", hash=\"" RESP_HASH "\"",
					      "application/json", "{\"status\":\"no\"}", 15),
			 -EACCES);
	/* Answer to another request (other nonce). */
	snprintf(other.nonce, sizeof(other.nonce), "zzzzzz");
	assert_int_equal(hawk_verify_response(&cred, &req, &other,
					      "Hawk mac=\"" RESP_MAC "\", hash=\"" RESP_HASH "\"",
					      "application/json", BODY, strlen(BODY)),
			 -EACCES);
	/* Wrong key. */
	wrong.key = "not-the-key";
	assert_int_equal(hawk_verify_response(&wrong, &req, &art_vec,
					      "Hawk mac=\"" RESP_MAC "\", hash=\"" RESP_HASH "\"",
					      "application/json", BODY, strlen(BODY)),
			 -EACCES);
	/* A truncated MAC of the right prefix. */
	assert_int_equal(hawk_verify_response(&cred, &req, &art_vec,
					      "Hawk mac=\"+mxxzQoYyovX2vs9\", hash=\"" RESP_HASH "\"",
					      "application/json", BODY, strlen(BODY)),
			 -EACCES);
	/* Missing mac, garbage headers. */
	assert_int_equal(hawk_verify_response(&cred, &req, &art_vec, "Hawk hash=\"" RESP_HASH "\"",
					      "application/json", BODY, strlen(BODY)),
			 -EBADMSG);
	assert_int_equal(hawk_verify_response(&cred, &req, &art_vec, "Basic Zm9vOmJhcg==",
					      "application/json", BODY, strlen(BODY)),
			 -EBADMSG);
	assert_int_equal(hawk_verify_response(&cred, &req, &art_vec, NULL, "application/json", BODY,
					      strlen(BODY)),
			 -EBADMSG);
}

static void test_tsm(void **state)
{
	char tsm[HAWK_B64_SHA256_LEN + 1];
	int64_t offset = 0;

	(void)state;
	assert_int_equal(hawk_tsm(KEY, 1353832234, tsm), 0);
	assert_string_equal(tsm, "2mw1eh/qXzl0wJZ/E6XvBhRMEJN7L3j8AyMA8eItEb0=");
	assert_int_equal(hawk_verify_tsm(KEY,
					 "Hawk ts=\"1353832234\", "
					 "tsm=\"2mw1eh/qXzl0wJZ/E6XvBhRMEJN7L3j8AyMA8eItEb0=\", "
					 "error=\"Stale timestamp\"",
					 1353832000, &offset),
			 0);
	assert_int_equal(offset, 234);
	/* A forged server time does not move our clock. */
	offset = 7;
	assert_int_equal(hawk_verify_tsm(KEY,
					 "Hawk ts=\"1353832999\", "
					 "tsm=\"2mw1eh/qXzl0wJZ/E6XvBhRMEJN7L3j8AyMA8eItEb0=\"",
					 1353832000, &offset),
			 -EACCES);
	assert_int_equal(offset, 7);
	assert_int_equal(hawk_verify_tsm(KEY, "Hawk error=\"Bad mac\"", 0, &offset), -ENOENT);
	assert_int_equal(hawk_verify_tsm(KEY, "Hawk ts=\"-5\", tsm=\"x\"", 0, &offset), -EBADMSG);
}

static void test_parse(void **state)
{
	struct hawk_attrs a;
	char big[700];

	(void)state;
	assert_int_equal(hawk_parse("hawk id=\"a\",ts=\"1\",  nonce=\"n\", mac=\"m\"", &a), 0);
	assert_string_equal(a.id, "a");
	assert_string_equal(a.ts, "1");
	assert_string_equal(a.mac, "m");
	assert_string_equal(a.ext, "");
	assert_int_equal(hawk_parse("Hawk id=\"a\", id=\"b\"", &a), -EBADMSG);       /* repeated */
	assert_int_equal(hawk_parse("Hawk foo=\"a\"", &a), -EBADMSG);                /* unknown */
	assert_int_equal(hawk_parse("Hawk id=\"a", &a), -EBADMSG);                   /* unterminated */
	assert_int_equal(hawk_parse("Hawk id=a", &a), -EBADMSG);                     /* unquoted */
	assert_int_equal(hawk_parse("Hawk id=\"a\\\"", &a), -EBADMSG);               /* backslash */
	assert_int_equal(hawk_parse("Hawkid=\"a\"", &a), -EBADMSG);                  /* scheme */
	assert_int_equal(hawk_parse("Hawk ts=\"123456789012345678901234567890123\"", &a), -EBADMSG);
	memset(big, 'x', sizeof(big));
	memcpy(big, "Hawk id=\"", 9);
	big[sizeof(big) - 2] = '"';
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(hawk_parse(big, &a), -EBADMSG); /* longer than the field */
}

static void test_refuses_unsafe_values(void **state)
{
	struct hawk_credentials bad = cred;
	char *h = NULL;

	(void)state;
	bad.ext = "org\"id";
	assert_int_equal(hawk_header(&bad, &req, 1, "nonce", &h, NULL), -EINVAL);
	bad.ext = "org\\id";
	assert_int_equal(hawk_header(&bad, &req, 1, "nonce", &h, NULL), -EINVAL);
	bad = cred;
	bad.id = "";
	assert_int_equal(hawk_header(&bad, &req, 1, "nonce", &h, NULL), -EINVAL);
	assert_int_equal(hawk_header(&cred, &req, 1, "no\"nce", &h, NULL), -EINVAL);
	assert_null(h);
}

static void test_mac_escapes_ext(void **state)
{
	char m1[HAWK_B64_SHA256_LEN + 1], m2[HAWK_B64_SHA256_LEN + 1];

	(void)state;
	/* A newline in ext is written as backslash-n and a backslash is doubled, so a real
	 * newline, a literal backslash-n and a doubled backslash all sign differently. */
	assert_int_equal(hawk_mac(KEY, "header", 1, "n", &req, "", "a\nb", m1), 0);
	assert_int_equal(hawk_mac(KEY, "header", 1, "n", &req, "", "a\\nb", m2), 0);
	assert_string_not_equal(m1, m2);
	assert_int_equal(hawk_mac(KEY, "header", 1, "n", &req, "", "a\\\\nb", m2), 0);
	assert_string_not_equal(m1, m2);
}

static void test_nonce(void **state)
{
	char a[HAWK_NONCE_LEN + 1], b[HAWK_NONCE_LEN + 1];

	(void)state;
	assert_int_equal(hawk_nonce(a), 0);
	assert_int_equal(hawk_nonce(b), 0);
	assert_int_equal(strlen(a), HAWK_NONCE_LEN);
	assert_true(hawk_valid_value(a));
	assert_string_not_equal(a, b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spec_header_vector),
		cmocka_unit_test(test_spec_payload_vector),
		cmocka_unit_test(test_header_with_payload_carries_hash),
		cmocka_unit_test(test_response_vector),
		cmocka_unit_test(test_response_forgeries),
		cmocka_unit_test(test_tsm),
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_refuses_unsafe_values),
		cmocka_unit_test(test_mac_escapes_ext),
		cmocka_unit_test(test_nonce),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
