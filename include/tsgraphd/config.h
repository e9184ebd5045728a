/* config — the INI configuration file, parsed into one immutable snapshot.
 *
 * config_load() reads the file through a static table of {section, key, parser, bounds},
 * applies defaults, resolves secrets (inline, *_file, or the systemd credential in
 * $CREDENTIALS_DIRECTORY) and validates the whole. Any error is one line naming the file,
 * line and key ("tsgraphd.conf:12: rate_limit: not a number"), written to ret_error.
 *
 * Ownership: the caller owns the returned struct config (one reference) and drops it with
 * config_free(); config_ref() takes another reference, and the last config_free() frees the
 * snapshot and wipes its secrets. Threads: a loaded config is read-only and may be shared by
 * every thread; a reload (SIGHUP) builds a new snapshot, and each thread moves to it at a
 * safe point of its own while the old one lives on until its last reference is dropped.
 */
#ifndef TSGRAPHD_CONFIG_H
#define TSGRAPHD_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tsgraphd/log.h"

#define CONFIG_DEFAULT_PATH  "/etc/tsgraphd/tsgraphd.conf"
#define CONFIG_ERROR_MAX     512
#define CONFIG_SINKS_MAX     16
#define CONFIG_SINK_NAME_MAX 64 /* the NAME of [sink.NAME] */
#define CONFIG_FILE_MAX	     (1024 * 1024)
#define CONFIG_SECRET_MAX    4096
#define CONFIG_PEM_MAX	     (4 * 1024 * 1024) /* api_ca_file, tls_cert, tls_key */

enum config_flags {
	/* Load only what reading the store needs (status): secret files, credentials and the
	 * files named by api_ca_file/tls_* are not opened, and api_key is not required. */
	CONFIG_NO_SECRETS = 1 << 0,
};

enum config_sink_type {
	SINK_FILE,
	SINK_JUPITERONE,
	SINK_WEBHOOK,
};

/* The changes a webhook sink can send (docs/change-alerts.md), as bits of its events mask. */
enum config_webhook_event {
	WEBHOOK_AGENT_STATUS = 1 << 0,
	WEBHOOK_AGENT_CREATED = 1 << 1,
	WEBHOOK_AGENT_DELETED = 1 << 2,
	WEBHOOK_AGENT_UPDATED = 1 << 3,
	WEBHOOK_CVE_IDENTIFIED = 1 << 4,
	WEBHOOK_CVE_RESOLVED = 1 << 5,
	WEBHOOK_ALERT_CREATED = 1 << 6,
	WEBHOOK_ALERT_DISMISSED = 1 << 7,
	WEBHOOK_EVENTS_ALL = (1 << 8) - 1,
};

enum config_webhook_format {
	WEBHOOK_FORMAT_JSON,  /* the change object of docs/change-log.md */
	WEBHOOK_FORMAT_SLACK, /* {"text": "..."} for Slack and Teams incoming webhooks */
};

/* Threat Stack's alert severities: 1 is the most severe. */
enum config_severity {
	SEVERITY_HIGH = 1,
	SEVERITY_MEDIUM = 2,
	SEVERITY_LOW = 3,
};

#define CONFIG_WEBHOOK_TIMEOUT_DEFAULT 10u /* seconds */

struct config_sink {
	char *name; /* the NAME of [sink.NAME] */
	enum config_sink_type type;
	char *path; /* file: the NDJSON change log */
	/* Sinks that speak HTTP: where (a webhook URL may hold a token: a secret), a CA bundle
	 * (NULL: the system's), seconds for one request. */
	char *url;
	char *ca_file;
	uint32_t timeout;
	struct {
		char *secret;	   /* secret: HMAC key of the signature header, or NULL */
		char *secret_file; /* its file, resolved into secret by config_load */
		unsigned events;   /* enum config_webhook_event bits */
		enum config_webhook_format format;
		enum config_severity min_severity; /* alert events less severe are not sent */
		bool backfill; /* a new sink sends what the outbox holds, not only later changes */
	} webhook;
	struct {
		char *account;
		char *token;	  /* secret: inline, token_file or a systemd credential */
		char *token_file; /* the file token was read from, or NULL */
		char *scope;
		bool scope_default;   /* scope is "threatstack-<org_id>": it follows org_id */
		uint64_t batch_bytes; /* largest request body */
		uint32_t job_changes; /* outbox rows one synchronization job covers */
	} j1;			      /* jupiterone */
};

#define CONFIG_J1_URL_DEFAULT	      "https://api.us.jupiterone.io"
#define CONFIG_J1_BATCH_BYTES_DEFAULT (5u * 1024 * 1024) /* and the most: JupiterOne caps 6 MB */
#define CONFIG_J1_JOB_CHANGES_DEFAULT 50000u
#define CONFIG_SINK_TIMEOUT_DEFAULT   30u

#define CONFIG_OUTBOX_RETENTION_DEFAULT	      (7u * 86400)
#define CONFIG_MAX_RESPONSE_DEFAULT	      (8u * 1024 * 1024) /* [threatstack] max_response */
#define CONFIG_MAX_PAGES_DEFAULT	      10000u		 /* [threatstack] max_pages */
#define CONFIG_MAX_BODY_DEFAULT		      (1024u * 1024)	 /* [webhook] max_body */
#define CONFIG_INBOX_MAX_DEFAULT	      100000u		 /* [webhook] inbox_max */
#define CONFIG_CONFIRM_WINDOW_DEFAULT	      86400u		 /* [webhook] confirm_window, s */
#define CONFIG_WEBHOOK_TIMEOUT_DEFAULT	      10u		 /* [webhook] timeout, s */
#define CONFIG_MAX_CONNECTIONS_DEFAULT	      256u		 /* [webhook] max_connections */
#define CONFIG_MAX_CONNECTIONS_PER_IP_DEFAULT 16u   /* [webhook] max_connections_per_ip */
#define CONFIG_WEBHOOK_THREADS_MAX	      64u   /* [webhook] threads */
#define CONFIG_SIZE_KEY_MIN		      1024u /* bounds of every size key */
#define CONFIG_SIZE_KEY_MAX		      (64u * 1024 * 1024)

struct config {
	atomic_int refs; /* config_ref(), config_free(); 0 counts as 1 */
	char *file;	 /* the path it was loaded from */
	enum log_level log_level;

	struct {
		char *org_name;
		char *org_id;
		char *user_id;
		char *api_key; /* secret */
		char *api_url; /* origin, no trailing slash, no /v2 */
		char *api_ca_file;
		uint32_t rate_limit;	/* requests per minute */
		uint32_t poll_interval; /* seconds */
		uint32_t alert_days;
		uint32_t timeout; /* seconds for one request */

		/* Bounds on what the API may send: bytes of one answer, pages of one listing. */
		uint64_t max_response;
		uint32_t max_pages;
	} ts;

	struct {
		char *path;
		bool synchronous_full;
		uint32_t outbox_retention; /* seconds a delivered change stays in the outbox */
	} store;

	struct {
		double max_delete_fraction;
	} sync;

	struct {
		char *listen;
		char *tls_cert;
		char *tls_key;
		char *secret; /* secret */
		uint64_t max_body;
		bool tls;		 /* off: plain HTTP, only with a loopback listen */
		char *inbox;		 /* the inbox file; default "<store path>-inbox" */
		uint32_t inbox_max;	 /* alerts waiting to be settled before 503 */
		uint32_t confirm_window; /* s an alert Threat Stack does not know is retried */
		uint32_t timeout;	 /* s a connection may stay idle */
		uint32_t max_connections;
		uint32_t max_connections_per_ip;
		uint32_t threads; /* event loops; 0: one per CPU but one, at most 4 */
	} webhook;

	struct config_sink sinks[CONFIG_SINKS_MAX];
	size_t n_sinks;
};

/* Loads and validates path. On failure returns -errno-style code and a one-line message,
 * "file:line: key: reason", with every byte from the file or the command line escaped
 * (str_escape) and never the value of a secret-bearing key. Every file (path itself, secret
 * files, api_ca_file, tls_*) is opened without blocking and must be a regular file of
 * bounded size: a FIFO is an error at once. -ENOMEM is the only error that is not the
 * configuration's fault. */
int config_load(const char *path, struct config **ret, char ret_error[static CONFIG_ERROR_MAX]);
/* The same with enum config_flags. */
int config_load_flags(const char *path, unsigned flags, struct config **ret,
		      char ret_error[static CONFIG_ERROR_MAX]);
/* Same, from a buffer (name is used in messages only): for tests and fuzzing. Secret files
 * are still read from disk. */
int config_parse(const char *name, const char *text, size_t len, struct config **ret,
		 char ret_error[static CONFIG_ERROR_MAX]);
/* Another reference to c, dropped with config_free(). Any thread. */
const struct config *config_ref(const struct config *c);
/* Drops a reference (NULL accepted); the last one frees c and wipes its secrets. */
void config_free(const struct config *c);
/* A reload: the keys of next that a running daemon cannot take (docs/configuration.md: the
 * organization, the store, the inbox, the receiver's listen address, tls and whether it
 * runs at all) and that differ from cur get cur's value back, each reported to fn with the
 * key's name ("[store] path"), so next is what would run. -ENOMEM (next half-restored: free
 * it) is the only error. Pure: no logging. */
typedef void (*config_restart_fn)(const char *key, void *userdata);
int config_keep_restart_only(struct config *next, const struct config *cur, config_restart_fn fn,
			     void *userdata);
const char *config_sink_type_to_string(enum config_sink_type t);
/* Whether a listen value ("host:port") names a loopback address: 127.0.0.0/8, [::1] or
 * localhost. */
bool config_listen_is_loopback(const char *listen);
/* "agent.status" for WEBHOOK_AGENT_STATUS...; NULL for anything but one known bit. */
const char *config_webhook_event_to_string(unsigned event);
/* Registers every secret of the configurations cs (NULL entries and repeats skipped; at most
 * CONFIG_SECRETS_IN_USE_MAX) as the logger's redaction list, replacing it. A reload passes
 * the new configuration, the one it replaces (a sender may go on using an old webhook
 * secret in its URLs) and the one the sync thread still runs on. */
#define CONFIG_SECRETS_IN_USE_MAX 3
int config_register_secrets(const struct config *const *cs, size_t n_cs);

#endif
