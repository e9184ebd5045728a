/* sink_jupiterone — the outbox to JupiterOne's synchronization API, in jobs of syncMode
 * CREATE_OR_UPDATE with explicit deletes (docs/jupiterone.md).
 *
 * A drain takes the outbox after the sink's cursor in windows of at most job_changes rows.
 * Each window is coalesced to the last change of each (kind, _key), so one job never
 * carries a _key twice, and becomes one job: create it, upload entities, then
 * relationships, then the deletes (relationships before entities), every request body at
 * most batch_bytes; finalize; follow the job until FINISHED. Only then does the cursor move
 * to the window's last seq. A failed call is retried with backoff; a job that fails is
 * aborted and the drain fails with the cursor where it was, so the next drain sends the same
 * changes again in a new job (upserts and deletes by _key are idempotent).
 *
 * Memory: one request body (batch_bytes) and one answer (1 MiB); the coalescing of a window
 * runs in SQLite's temp store, not in memory.
 *
 * Ownership: sink_jupiterone_open() returns a struct sink_jupiterone that owns its HTTP
 * handle and a copy of the token (wiped on close); it borrows cfg and cancel, which must
 * outlive it. sink_jupiterone_close() accepts NULL. Threads: one thread per sink, with its
 * own struct store.
 */
#ifndef TSGRAPHD_SINK_JUPITERONE_H
#define TSGRAPHD_SINK_JUPITERONE_H

#include <stddef.h>
#include <stdint.h>

#include "tsgraphd/cancel.h"
#include "tsgraphd/config.h"
#include "tsgraphd/sink.h"
#include "tsgraphd/store.h"

struct sink_jupiterone;

/* The JupiterOne sink behind sink.h. */
extern const struct sink_ops sink_jupiterone_ops;

int sink_jupiterone_open(const struct config_sink *cfg, struct cancel *cancel,
			 struct sink_jupiterone **ret, char err[static SINK_ERR_MAX]);
void sink_jupiterone_close(struct sink_jupiterone *j);
/* Delivers every outbox row after the sink's cursor; *ret_delivered is how many rows the
 * finished jobs covered (before coalescing). */
int sink_jupiterone_drain(struct sink_jupiterone *j, struct store *s, int64_t *ret_delivered,
			  char err[static SINK_ERR_MAX]);

/* --- one job's content, without HTTP (the drain uses these; so do the tests) --- */

/* A window of the outbox: rows after_seq < seq <= upto_seq (rows of them), and what its
 * coalesced changes are. */
struct sink_j1_window {
	int64_t after_seq, upto_seq, rows;
	int64_t entities, relationships;	       /* upserts */
	int64_t delete_relationships, delete_entities; /* deletes */
};

/* The three upload requests of a job. */
enum sink_j1_upload {
	SINK_J1_ENTITIES,      /* POST .../jobs/{id}/entities {"entities":[...]} */
	SINK_J1_RELATIONSHIPS, /* POST .../jobs/{id}/relationships {"relationships":[...]} */
	SINK_J1_DELETES,       /* POST .../jobs/{id}/upload {"deleteRelationships":[...],
				* "deleteEntities":[...]} */
};
typedef int (*sink_j1_body_fn)(enum sink_j1_upload what, const char *body, size_t len,
			       void *userdata);

/* Finds the window of the first `limit` rows after after_seq and counts its changes;
 * upto_seq == after_seq when there are none. An object that cannot fit in a request of
 * batch_bytes is -EMSGSIZE with its key and size in err. */
int sink_jupiterone_window(struct store *s, int64_t after_seq, int64_t limit, size_t batch_bytes,
			   struct sink_j1_window *ret, char err[static SINK_ERR_MAX]);
/* The window's request bodies in the order they are sent: entity upserts, relationship
 * upserts, then relationship deletes and entity deletes; each at most batch_bytes. A
 * non-zero return of fn stops and is returned. */
int sink_jupiterone_bodies(struct store *s, const struct sink_j1_window *w, size_t batch_bytes,
			   sink_j1_body_fn fn, void *userdata, char err[static SINK_ERR_MAX]);
/* The body that creates a job for scope, appended to out. */
int sink_jupiterone_job_body(const char *scope, struct buf *out);

#define SINK_J1_JOB_ID_MAX 128 /* characters of a job id */

/* Reads JupiterOne's answer about a job, {"job":{"id":"...","status":"...",...},...}: len
 * bytes of anything (untrusted; need not be NUL-terminated), JSON nested at most 16 deep.
 * When ret_id is non-NULL, the job's id (1 to SINK_J1_JOB_ID_MAX of [A-Za-z0-9_-]) goes
 * there (SINK_J1_JOB_ID_MAX + 1 bytes); when ret_status is non-NULL, its status, cut to
 * status_size - 1 bytes (status_size > 0). A NUL byte (\u0000) in either is refused, so
 * neither can be read as a shorter one. Both are written only on success. -EBADMSG when the
 * answer is not that shape, -ENOMEM. */
int sink_jupiterone_parse_job(const char *body, size_t len, char *ret_id, char *ret_status,
			      size_t status_size);

#endif
