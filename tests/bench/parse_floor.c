/* parse_floor — the floor a sync's CPU is judged against: parsing every API body a sync
 * fetched with json-c and hashing every object in it with SHA-256, and nothing else (no
 * HTTP, no Hawk, no graph, no store). The bodies come from the fake Threat Stack's
 * --record file ("LENGTH\n" then the body, for each 2xx answer). Each object of a
 * listing's collection (the first array member of the answer) is serialized by json-c and
 * hashed; a single-object answer counts as one object. The best of three passes is kept,
 * so a busy neighbour does not flatter the ratio.
 *
 *   parse_floor RECORD_FILE   → objects=N bodies=N bytes=N cpu_us=N us_per_object=X
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#define RECORD_MAX (4ull * 1024 * 1024 * 1024)

static int64_t cpu_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One context and one fetched algorithm for every object: the cheapest way to hash many
 * small inputs with OpenSSL 3, as the sync does it. */
static EVP_MD *sha256;
static EVP_MD_CTX *ctx;

static void hash(const char *s, size_t len, unsigned char *md)
{
	unsigned int n = 0;

	EVP_DigestInit_ex2(ctx, sha256, NULL);
	EVP_DigestUpdate(ctx, s, len);
	EVP_DigestFinal_ex(ctx, md, &n);
}

/* One pass over every body: returns objects seen. */
static int64_t pass(const char *data, size_t size, int64_t *ret_bodies)
{
	json_tokener *tok = json_tokener_new();
	unsigned char md[EVP_MAX_MD_SIZE];
	int64_t objects = 0, bodies = 0;
	size_t off = 0;

	while (off < size) {
		char *end = NULL;
		unsigned long long len = strtoull(data + off, &end, 10);
		json_object *root, *items = NULL;

		if (!end || *end != '\n' || len > size - (size_t)(end + 1 - data))
			break;
		off = (size_t)(end + 1 - data);
		json_tokener_reset(tok);
		root = json_tokener_parse_ex(tok, data + off, (int)len);
		off += len;
		bodies++;
		if (!root)
			continue;
		json_object_object_foreach(root, k, v)
		{
			(void)k;
			if (json_object_is_type(v, json_type_array)) {
				items = v;
				break;
			}
		}
		if (items) {
			size_t n = json_object_array_length(items);

			for (size_t i = 0; i < n; i++) {
				size_t slen = 0;
				const char *s = json_object_to_json_string_length(
					json_object_array_get_idx(items, i), JSON_C_TO_STRING_PLAIN,
					&slen);

				hash(s, slen, md);
				objects++;
			}
		} else {
			size_t slen = 0;
			const char *s = json_object_to_json_string_length(
				root, JSON_C_TO_STRING_PLAIN, &slen);

			hash(s, slen, md);
			objects++;
		}
		json_object_put(root);
	}
	json_tokener_free(tok);
	*ret_bodies = bodies;
	return objects;
}

int main(int argc, char **argv)
{
	int64_t best = INT64_MAX, objects = 0, bodies = 0;
	FILE *fp;
	char *data;
	long size;

	if (argc != 2) {
		fprintf(stderr, "usage: parse_floor RECORD_FILE\n");
		return 2;
	}
	fp = fopen(argv[1], "rb");
	if (!fp || fseek(fp, 0, SEEK_END) < 0 || (size = ftell(fp)) < 0 ||
	    (unsigned long long)size > RECORD_MAX || fseek(fp, 0, SEEK_SET) < 0) {
		fprintf(stderr, "parse_floor: %s: %s\n", argv[1], strerror(errno));
		return 1;
	}
	data = malloc((size_t)size + 1);
	if (!data || fread(data, 1, (size_t)size, fp) != (size_t)size) {
		fprintf(stderr, "parse_floor: cannot read %s\n", argv[1]);
		return 1;
	}
	data[size] = '\0';
	fclose(fp);
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	ctx = EVP_MD_CTX_new();
	if (!sha256 || !ctx) {
		fprintf(stderr, "parse_floor: no SHA-256\n");
		return 1;
	}
	for (int i = 0; i < 3; i++) {
		int64_t t0 = cpu_us();

		objects = pass(data, (size_t)size, &bodies);
		if (cpu_us() - t0 < best)
			best = cpu_us() - t0;
	}
	printf("objects=%" PRId64 " bodies=%" PRId64 " bytes=%ld cpu_us=%" PRId64
	       " us_per_object=%.2f\n",
	       objects, bodies, size, best, objects ? (double)best / (double)objects : 0.0);
	free(data);
	EVP_MD_CTX_free(ctx);
	EVP_MD_free(sha256);
	return 0;
}
