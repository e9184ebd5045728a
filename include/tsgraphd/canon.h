/* canon — canonical JSON of a graph object and its SHA-256, so equal objects hash equal
 * whatever order or spelling the API used.
 *
 * Canonical form: object members sorted by key (bytewise, UTF-8), no insignificant
 * whitespace, strings with only the escapes JSON requires (\" \\ and \u00XX for control
 * characters, the short forms \b \f \n \r \t where they exist), integers in plain decimal,
 * other numbers in the shortest form that reads back to the same double, true/false/null.
 * The output is valid UTF-8 whatever the input: each ill-formed UTF-8 sequence (its maximal
 * subpart) and each NUL in a string or key is written as U+FFFD.
 *
 * Pure; any thread (a struct canon_digest belongs to one thread at a time). The output
 * buffer belongs to the caller.
 */
#ifndef TSGRAPHD_CANON_H
#define TSGRAPHD_CANON_H

#include <stdint.h>

#include <json-c/json.h>

#include "tsgraphd/util.h"

#define CANON_HASH_HEX	 64
#define CANON_OBJECT_MAX (4u * 1024 * 1024) /* canonical form of one graph object, bytes */

/* Appends the canonical form of o to out; -E2BIG when out's maximum is reached. */
int canon_serialize(json_object *o, struct buf *out);
/* The writers canon_serialize uses, for code that writes canonical JSON without a json-c
 * tree (graph.c): a string (s[0..len), repaired as above) with its quotes, and an integer.
 * They append to out; on -E2BIG out may hold part of the value. */
int canon_write_string(struct buf *out, const char *s, size_t len);
int canon_write_int64(struct buf *out, int64_t v);
/* Hex SHA-256 of the canonical form, NUL-terminated. */
int canon_hash(json_object *o, char out[static CANON_HASH_HEX + 1]);
/* A reusable SHA-256 context for hashing many objects on one thread (the sync stages tens of
 * thousands): the algorithm is fetched once instead of at every digest. */
struct canon_digest;
int canon_digest_new(struct canon_digest **ret);
void canon_digest_free(struct canon_digest *d);
int canon_digest_hex(struct canon_digest *d, const void *data, size_t len,
		     char out[static CANON_HASH_HEX + 1]);
/* Hex SHA-256 of bytes already in canonical form (saves serializing twice). */
int canon_sha256_hex(const void *data, size_t len, char out[static CANON_HASH_HEX + 1]);

/* Top-level properties whose canonical values differ between two JSON objects, as a sorted
 * JSON array ("[\"status\",\"tag.env\"]"), appended to out. */
int canon_changed_properties(const char *old_json, const char *new_json, struct buf *out);

#endif
